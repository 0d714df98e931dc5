//! An OpenAI-compatible front door: `model` names an agent, so OpenAI SDKs
//! and chat UIs can talk to Caxton agents unchanged. Each completion is an
//! ordinary durable message to that agent; earlier turns sent by the client
//! become the agent's history.

use std::convert::Infallible;

use axum::extract::State;
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::problem::Problem;
use super::Ctx;
use crate::auth::Principal;
use crate::llm::{ChatMessage, Role};
use crate::messaging::{
    unstreamed, AnswerEvent, MessageKind, SendOutcome, SendRequest, Target, Unstreamed, MAX_ANSWER_WAIT,
};

#[derive(Debug, Deserialize, ToSchema)]
pub struct WireMessage {
    pub role: String,
    /// A string, or OpenAI's array of `{type: "text", text}` parts.
    #[schema(value_type = Object)]
    pub content: serde_json::Value,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ChatCompletionRequest {
    /// The agent to talk to (`NAME` or `NAME@REVISION`).
    pub model: String,
    pub messages: Vec<WireMessage>,
    #[serde(default)]
    pub stream: bool,
    /// `include_usage`: a last chunk carries the request's usage.
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    /// Per model call of the agent's turn.
    pub max_tokens: Option<u32>,
    /// Takes precedence over `max_tokens`.
    pub max_completion_tokens: Option<u32>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    /// A string, or up to four strings.
    #[schema(value_type = Option<Object>)]
    pub stop: Option<serde_json::Value>,
    pub seed: Option<i64>,
    /// Only 1: an agent gives one answer.
    pub n: Option<u32>,
    /// Everything else: features Caxton refuses when they are asked for
    /// (`tools`, `response_format`, `logprobs`, ...) and hints it ignores.
    #[schema(value_type = Option<Object>)]
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

/// A request the door cannot honour: OpenAI's 400, naming the parameter.
struct Refused {
    param: &'static str,
    message: String,
}

fn refuse(param: &'static str, message: impl Into<String>) -> Refused {
    Refused { param, message: message.into() }
}

/// Features an agent's turn cannot give a client, by the parameter that
/// asks for them; an absent, null, false or empty value asks for nothing.
const REFUSED_FEATURES: &[(&str, &str)] = &[
    ("tools", "client-side tools: an agent calls its own tools (set them in its definition)"),
    ("functions", "client-side functions: an agent calls its own tools"),
    ("tool_choice", "tool_choice: an agent chooses its own tools"),
    ("function_call", "function_call: an agent chooses its own tools"),
    ("logprobs", "log probabilities"),
    ("top_logprobs", "log probabilities"),
    ("audio", "audio output"),
    ("prediction", "predicted outputs"),
    ("logit_bias", "logit bias"),
];

fn asks_for(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Null | serde_json::Value::Bool(false) => false,
        serde_json::Value::Array(a) => !a.is_empty(),
        serde_json::Value::Object(o) => !o.is_empty(),
        serde_json::Value::String(s) => !s.is_empty() && s != "none",
        _ => true,
    }
}

impl ChatCompletionRequest {
    /// The sampling the client asked for, or why it cannot be honoured.
    fn sampling(&self) -> Result<crate::llm::Sampling, Refused> {
        if let Some(n) = self.n.filter(|n| *n != 1) {
            return Err(refuse("n", format!("n = {n}: an agent gives one answer per request; use n = 1")));
        }
        for (param, what) in REFUSED_FEATURES {
            if self.other.get(*param).is_some_and(asks_for) {
                return Err(refuse(param, format!("`{param}` is not supported: Caxton does not offer {what}")));
            }
        }
        if let Some(format) = self.other.get("response_format").filter(|f| asks_for(f)) {
            if format["type"].as_str() != Some("text") {
                return Err(refuse("response_format", "only response_format {\"type\": \"text\"} is supported"));
            }
        }
        if let Some(m) = self.other.get("modalities").and_then(|m| m.as_array()) {
            if m.iter().any(|m| m.as_str() != Some("text")) {
                return Err(refuse("modalities", "only the text modality is supported"));
            }
        }
        let max_tokens = self.max_completion_tokens.or(self.max_tokens);
        if max_tokens == Some(0) {
            let param = if self.max_completion_tokens.is_some() { "max_completion_tokens" } else { "max_tokens" };
            return Err(refuse(param, format!("{param} must be at least 1")));
        }
        if let Some(t) = self.temperature.filter(|t| !(0.0..=2.0).contains(t)) {
            return Err(refuse("temperature", format!("temperature {t} is outside 0..2")));
        }
        if let Some(p) = self.top_p.filter(|p| !(*p > 0.0 && *p <= 1.0)) {
            return Err(refuse("top_p", format!("top_p {p} is outside (0, 1]")));
        }
        let stop = match &self.stop {
            None | Some(serde_json::Value::Null) => vec![],
            Some(serde_json::Value::String(s)) => vec![s.clone()],
            Some(serde_json::Value::Array(a)) if a.len() <= 4 && a.iter().all(|s| s.is_string()) => {
                a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect()
            }
            Some(_) => return Err(refuse("stop", "stop must be a string or an array of at most 4 strings")),
        };
        Ok(crate::llm::Sampling {
            max_tokens,
            temperature: self.temperature,
            top_p: self.top_p,
            stop,
            // OpenAI's seed is any integer; its bits seed the sampler.
            seed: self.seed.map(|s| s as u64),
        })
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ModelList {
    pub object: &'static str,
    #[schema(value_type = Vec<Object>)]
    pub data: Vec<serde_json::Value>,
}

fn text_of(content: &serde_json::Value) -> String {
    match content {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(parts) => parts.iter().filter_map(|p| p["text"].as_str()).collect::<Vec<_>>().join(""),
        _ => String::new(),
    }
}

/// OpenAI-style error body, which SDKs know how to surface.
fn openai_error(status: u16, message: String, kind: &str) -> Response {
    let code = axum::http::StatusCode::from_u16(status).unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
    (code, Json(json!({"error": {"message": message, "type": kind, "param": null, "code": kind}}))).into_response()
}

fn refused(r: Refused) -> Response {
    let body = json!({"error": {"message": r.message, "type": "invalid_request_error", "param": r.param, "code": "unsupported_parameter"}});
    (axum::http::StatusCode::BAD_REQUEST, Json(body)).into_response()
}

/// OpenAI's `usage` from what the agent's turn used.
fn usage_of(reply: &crate::state::Message) -> serde_json::Value {
    let u = reply.usage.unwrap_or_default();
    json!({"prompt_tokens": u.input_tokens, "completion_tokens": u.output_tokens, "total_tokens": u.input_tokens + u.output_tokens})
}

/// How the answer ended, as OpenAI names it. Agents run their own tools, so
/// an answer never ends asking the client to (`tool_calls`).
fn finish_reason(reply: &crate::state::Message) -> &'static str {
    if reply.usage.is_some_and(|u| u.truncated) {
        "length"
    } else {
        "stop"
    }
}

fn from_problem(p: Problem) -> Response {
    let kind = p.kind.rsplit('/').next().unwrap_or("error").to_owned();
    openai_error(p.status, p.detail, &kind)
}

/// Chat with an agent, OpenAI-style (plain or `stream: true`).
#[utoipa::path(post, path = "/v1/chat/completions", tag = "openai", request_body = ChatCompletionRequest,
    responses((status = 200, description = "chat.completion, or text/event-stream of chat.completion.chunk")))]
pub async fn chat_completions(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Principal>,
    Json(req): Json<ChatCompletionRequest>,
) -> Response {
    let sampling = match req.sampling() {
        Ok(sampling) => sampling,
        Err(r) => return refused(r),
    };
    match super::access::sees_agent_named(&caller, ctx.registry.queries(), &req.model).await {
        Ok(true) => {}
        Ok(false) => return from_problem(crate::messaging::MessageError::UnknownAgent(req.model.clone()).into()),
        Err(p) => return from_problem(p),
    }
    let mut turns: Vec<ChatMessage> = Vec::new();
    for m in &req.messages {
        let text = text_of(&m.content);
        match m.role.as_str() {
            "user" => turns.push(ChatMessage::user(text)),
            "assistant" => turns.push(ChatMessage::assistant(text, vec![])),
            // The agent's own system prompt governs; a client system message is context.
            "system" | "developer" => turns.push(ChatMessage { role: Role::System, ..ChatMessage::user(text) }),
            other => {
                return openai_error(400, format!("message role `{other}` is not supported"), "invalid_request_error")
            }
        }
    }
    let Some(last) = turns.iter().rposition(|m| m.role == Role::User) else {
        return openai_error(400, "messages must contain a user message".into(), "invalid_request_error");
    };
    let content = turns[last].content.clone();
    let context =
        turns.iter().filter(|m| m.role == Role::System).map(|m| m.content.clone()).collect::<Vec<_>>().join("\n");
    let history: Vec<ChatMessage> = turns[..last].iter().filter(|m| m.role != Role::System).cloned().collect();
    let send = SendRequest {
        sender: "openai-client".into(),
        history,
        context: (!context.is_empty()).then_some(context),
        sampling: Some(sampling),
        sent_by: Some(caller.name.to_string()),
        ..SendRequest::request(Target::Agent(req.model.clone()), content)
    };
    let created = chrono::Utc::now().timestamp();
    if !req.stream {
        return match ctx.messages.send(send, Some(MAX_ANSWER_WAIT)).await {
            Ok(SendOutcome::Answered { request, reply }) if reply.kind == MessageKind::Response => Json(json!({
                "id": format!("chatcmpl-{}", request.id),
                "object": "chat.completion",
                "created": created,
                "model": req.model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": reply.content}, "finish_reason": finish_reason(&reply)}],
                "usage": usage_of(&reply)
            }))
            .into_response(),
            Ok(SendOutcome::Answered { reply, .. }) => openai_error(502, reply.content, "agent_error"),
            Ok(SendOutcome::Accepted(m)) => openai_error(504, format!("no answer yet for {}", m.id), "timeout"),
            Err(e) => from_problem(e.into()),
        };
    }
    let message = match ctx.messages.send(send, None).await {
        Ok(SendOutcome::Accepted(m)) | Ok(SendOutcome::Answered { request: m, .. }) => m,
        Err(e) => return from_problem(e.into()),
    };
    let answer = match ctx.messages.answer_stream(&message.id, crate::messaging::Relay::Allowed).await {
        Ok(answer) => answer,
        Err(e) => return from_problem(e.into()),
    };
    let (id, model) = (format!("chatcmpl-{}", message.id), req.model.clone());
    let include_usage = req.stream_options.as_ref().is_some_and(|o| o.include_usage);
    let frame = move |choices: serde_json::Value, usage: Option<serde_json::Value>| {
        let mut body = json!({
            "id": id, "object": "chat.completion.chunk", "created": created, "model": model, "choices": choices
        });
        if include_usage {
            // OpenAI: every chunk carries `usage`, null until the last.
            body["usage"] = usage.unwrap_or(serde_json::Value::Null);
        }
        Event::default().data(body.to_string())
    };
    let chunk = {
        let frame = frame.clone();
        move |delta: serde_json::Value, finish: Option<&str>| {
            frame(json!([{"index": 0, "delta": delta, "finish_reason": finish}]), None)
        }
    };
    let s = async_stream::stream! {
        yield Ok::<_, Infallible>(chunk(json!({"role": "assistant", "content": ""}), None));
        let mut streamed = String::new();
        let mut answer = answer;
        while let Some(event) = answer.next().await {
            match event {
                AnswerEvent::Token(t) => {
                    streamed.push_str(&t);
                    yield Ok(chunk(json!({"content": t}), None));
                }
                AnswerEvent::Reply(reply) if reply.kind == MessageKind::Response => {
                    match unstreamed(&reply.content, &streamed) {
                        Unstreamed::Rest("") => {}
                        Unstreamed::Rest(text) | Unstreamed::Whole(text) => {
                            yield Ok(chunk(json!({"content": text}), None));
                        }
                    }
                    yield Ok(chunk(json!({}), Some(finish_reason(&reply))));
                    if include_usage {
                        yield Ok(frame(json!([]), Some(usage_of(&reply))));
                    }
                }
                AnswerEvent::Reply(reply) => yield Ok(Event::default()
                    .data(json!({"error": {"message": reply.content, "type": "agent_error"}}).to_string())),
                AnswerEvent::Failed(why) => yield Ok(Event::default()
                    .data(json!({"error": {"message": why, "type": "timeout"}}).to_string())),
            }
        }
        yield Ok(Event::default().data("[DONE]"));
    };
    super::event_stream(s)
}

/// Agents, listed as OpenAI models.
#[utoipa::path(get, path = "/v1/models", tag = "openai", responses((status = 200, body = ModelList)))]
pub async fn models(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Principal>,
) -> Result<Json<ModelList>, Problem> {
    let data = super::access::visible_agents(&caller, ctx.registry.queries())
        .await?
        .into_iter()
        .map(|a| {
            json!({
                "id": a.name, "object": "model", "created": a.created_at_ms / 1000, "owned_by": "caxton",
                "revision": a.revision, "version": a.version
            })
        })
        .collect();
    Ok(Json(ModelList { object: "list", data }))
}

/// The embedding model memory uses, by the names clients know it by.
const EMBEDDING_MODEL: &str = "all-minilm-l6-v2";
const EMBEDDING_ALIASES: &[&str] = &[EMBEDDING_MODEL, "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"];
/// Texts one request may embed (OpenAI's own limit).
const MAX_EMBEDDING_INPUTS: usize = 2048;

#[derive(Debug, Deserialize, ToSchema)]
pub struct EmbeddingRequest {
    /// `all-minilm-l6-v2`: the model Caxton's memory embeds with.
    pub model: String,
    /// A string or an array of strings (token arrays are not accepted).
    #[schema(value_type = Object)]
    pub input: serde_json::Value,
    /// `float` (the default) or `base64` (little-endian f32).
    pub encoding_format: Option<String>,
    /// Only 384, the model's size.
    pub dimensions: Option<u32>,
    #[schema(value_type = Option<Object>)]
    #[serde(flatten)]
    pub _other: serde_json::Map<String, serde_json::Value>,
}

impl EmbeddingRequest {
    fn texts(&self) -> Result<Vec<String>, Refused> {
        let texts: Vec<String> = match &self.input {
            serde_json::Value::String(s) => vec![s.clone()],
            serde_json::Value::Array(a) if a.iter().all(|v| v.is_string()) => {
                a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect()
            }
            _ => {
                return Err(refuse(
                    "input",
                    "input must be a string or an array of strings (token arrays are not accepted)",
                ))
            }
        };
        if texts.is_empty() || texts.len() > MAX_EMBEDDING_INPUTS {
            return Err(refuse(
                "input",
                format!("input must hold 1 to {MAX_EMBEDDING_INPUTS} texts, not {}", texts.len()),
            ));
        }
        if let Some(i) = texts.iter().position(|t| t.is_empty()) {
            return Err(refuse("input", format!("input[{i}] is empty")));
        }
        if let Some(d) = self.dimensions.filter(|d| *d as usize != crate::memory::DIMENSIONS) {
            return Err(refuse(
                "dimensions",
                format!("{EMBEDDING_MODEL} has {} dimensions, not {d}", crate::memory::DIMENSIONS),
            ));
        }
        Ok(texts)
    }
}

/// Embed texts with the node's MiniLM model, OpenAI-style.
#[utoipa::path(post, path = "/v1/embeddings", tag = "openai", request_body = EmbeddingRequest,
    responses((status = 200, description = "a list of embeddings")))]
pub async fn embeddings(State(ctx): State<Ctx>, Json(req): Json<EmbeddingRequest>) -> Response {
    if !EMBEDDING_ALIASES.iter().any(|m| m.eq_ignore_ascii_case(&req.model)) {
        let message = format!("The model `{}` does not exist: the embedding model is `{EMBEDDING_MODEL}`", req.model);
        let body = json!({"error": {"message": message, "type": "invalid_request_error", "param": "model", "code": "model_not_found"}});
        return (axum::http::StatusCode::NOT_FOUND, Json(body)).into_response();
    }
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return refused(refuse("encoding_format", format!("encoding_format `{other}`: use float or base64")))
        }
    };
    let texts = match req.texts() {
        Ok(texts) => texts,
        Err(r) => return refused(r),
    };
    let embedded = match ctx.memory.embeddings(texts).await {
        Ok(e) => e,
        Err(e) => return from_problem(e.into()),
    };
    let tokens: u64 = embedded.iter().map(|(_, n)| u64::from(*n)).sum();
    let data: Vec<serde_json::Value> = embedded
        .into_iter()
        .enumerate()
        .map(|(index, (vector, _))| {
            let embedding = if base64 {
                use base64::Engine;
                let bytes: Vec<u8> = vector.iter().flat_map(|f| f.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(vector)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    Json(json!({
        "object": "list", "data": data, "model": EMBEDDING_MODEL,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens}
    }))
    .into_response()
}
