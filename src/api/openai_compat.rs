//! An OpenAI-compatible front door: `model` names an agent, so OpenAI SDKs
//! and chat UIs can talk to Caxton agents unchanged. Each completion is an
//! ordinary durable message to that agent; earlier turns sent by the client
//! become the agent's history.

use std::convert::Infallible;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::problem::Problem;
use super::Ctx;
use crate::auth::Principal;
use crate::llm::{ChatMessage, Role};
use crate::messaging::{AnswerEvent, MessageKind, SendOutcome, SendRequest, Target, MAX_ANSWER_WAIT};

#[derive(Debug, Deserialize, ToSchema)]
pub struct WireMessage {
    pub role: String,
    /// A string, or OpenAI's array of `{type: "text", text}` parts.
    #[schema(value_type = Object)]
    pub content: serde_json::Value,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ChatCompletionRequest {
    /// The agent to talk to.
    pub model: String,
    pub messages: Vec<WireMessage>,
    #[serde(default)]
    pub stream: bool,
    /// Accepted for compatibility; the agent's own settings apply.
    #[schema(value_type = Option<Object>)]
    #[serde(flatten)]
    pub _other: serde_json::Map<String, serde_json::Value>,
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
    (code, Json(json!({"error": {"message": message, "type": kind, "code": kind}}))).into_response()
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
                "choices": [{"index": 0, "message": {"role": "assistant", "content": reply.content}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
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
    let chunk = move |delta: serde_json::Value, finish: Option<&str>| {
        Event::default().data(
            json!({
                "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]
            })
            .to_string(),
        )
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
                    // Tokens past the replay buffer's limit arrive only in the reply.
                    if let Some(rest) = reply.content.strip_prefix(streamed.as_str()).filter(|r| !r.is_empty()) {
                        yield Ok(chunk(json!({"content": rest}), None));
                    } else if !reply.content.starts_with(streamed.as_str()) {
                        // A request processed again after a crash answered
                        // differently: the committed reply is the answer.
                        yield Ok(chunk(json!({"content": reply.content}), None));
                    }
                    yield Ok(chunk(json!({}), Some("stop")));
                }
                AnswerEvent::Reply(reply) => yield Ok(Event::default()
                    .data(json!({"error": {"message": reply.content, "type": "agent_error"}}).to_string())),
                AnswerEvent::Failed(why) => yield Ok(Event::default()
                    .data(json!({"error": {"message": why, "type": "timeout"}}).to_string())),
            }
        }
        yield Ok(Event::default().data("[DONE]"));
    };
    Sse::new(Box::pin(s) as std::pin::Pin<Box<dyn Stream<Item = Result<Event, Infallible>> + Send>>)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// Agents, listed as OpenAI models.
#[utoipa::path(get, path = "/v1/models", tag = "openai", responses((status = 200, body = ModelList)))]
pub async fn models(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Principal>,
) -> Result<Json<ModelList>, Problem> {
    let data = ctx
        .registry
        .queries()
        .all_agents()
        .await?
        .into_iter()
        .filter(|a| super::access::sees_record(&caller, a))
        .map(|a| json!({"id": a.name, "object": "model", "created": a.created_at_ms / 1000, "owned_by": "caxton"}))
        .collect();
    Ok(Json(ModelList { object: "list", data }))
}
