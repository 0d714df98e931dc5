//! Calling remote A2A agents (an agent's `[[a2a]]` tools): the card is
//! read, the message streamed with `SendStreamingMessage` (or sent with
//! `SendMessage` when the card offers no streaming) over JSON-RPC, and the
//! answer's text returned. Only hosts the operator allowlists are called,
//! with the credentials the operator configured for them; each call is
//! bounded by the node's timeout and size cap and the turn's deadline, and
//! traced as an A2A client span.

use std::time::Duration;

use futures::StreamExt;
use parking_lot::RwLock;
use serde_json::{json, Value};
use tracing::Instrument;

use super::wire::{Part, StreamResponse, Task, TaskState, VERSION};
use crate::config::{A2aRemote, A2aSection};
use crate::sse::SseDecoder;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum A2aCallError {
    #[error("host `{host}` is not in this node's a2a.allowed_hosts; the operator must allow it")]
    NotAllowed { host: String },
    #[error("the remote agent `{name}` cannot be reached: {why}")]
    Unreachable { name: String, why: String },
    #[error("the remote agent `{name}` answered something that is not A2A: {why}")]
    Protocol { name: String, why: String },
    #[error("the remote agent `{name}` refused the message ({code}): {message}")]
    Refused { name: String, code: i64, message: String },
    #[error("the remote agent `{name}` ended its task {state}: {text}")]
    Ended { name: String, state: String, text: String },
    #[error("the remote agent `{name}` answered more than {limit} bytes (a2a.max_response_bytes)")]
    TooLarge { name: String, limit: u64 },
    #[error("the remote agent `{name}` did not answer within {ms} ms")]
    Timeout { name: String, ms: u64 },
}

/// The node's A2A client; its settings follow config reloads.
#[derive(Debug)]
pub struct A2aClient {
    settings: RwLock<A2aSection>,
    http: reqwest::Client,
}

impl A2aClient {
    pub fn new(settings: A2aSection) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            // A redirect could carry the credential to a host nobody allowed.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("HTTP client with static settings");
        Self { settings: RwLock::new(settings), http }
    }

    pub fn set_settings(&self, settings: A2aSection) {
        *self.settings.write() = settings;
    }

    /// Sends `text` to the remote agent and returns its answer, within
    /// `deadline` (the turn's) and the node's own timeout.
    pub async fn call(
        &self,
        remote: &A2aRemote,
        text: &str,
        context_id: &str,
        deadline: Duration,
    ) -> Result<String, A2aCallError> {
        let settings = self.settings.read().clone();
        let card_url = reqwest::Url::parse(&remote.card).map_err(|e| self.unreachable(remote, e))?;
        if !settings.allows(&card_url) {
            return Err(A2aCallError::NotAllowed { host: host_of(&card_url) });
        }
        let budget = Duration::from_millis(settings.timeout_ms).min(deadline);
        let span = tracing::info_span!(
            "a2a",
            otel.name = tracing::field::Empty,
            otel.kind = "client",
            a2a.method.name = tracing::field::Empty,
            a2a.protocol.version = VERSION,
            a2a.task.id = tracing::field::Empty,
            a2a.task.state = tracing::field::Empty,
            gen_ai.conversation.id = tracing::field::Empty,
            gen_ai.agent.name = %remote.name,
            server.address = %card_url.host_str().unwrap_or_default(),
            server.port = card_url.port_or_known_default().unwrap_or_default(),
            error.type = tracing::field::Empty
        );
        let exchange = self.exchange(&settings, remote, &card_url, text, context_id);
        let result = match tokio::time::timeout(budget, exchange.instrument(span.clone())).await {
            Ok(r) => r,
            Err(_) => Err(A2aCallError::Timeout { name: remote.name.clone(), ms: budget.as_millis() as u64 }),
        };
        if let Err(e) = &result {
            span.record("error.type", error_type(e));
        }
        result
    }

    fn unreachable(&self, remote: &A2aRemote, why: impl std::fmt::Display) -> A2aCallError {
        A2aCallError::Unreachable { name: remote.name.clone(), why: why.to_string() }
    }

    fn request(&self, settings: &A2aSection, method: reqwest::Method, url: &reqwest::Url) -> reqwest::RequestBuilder {
        let mut req = self.http.request(method, url.clone()).header("a2a-version", VERSION);
        if let Some(cred) = settings.credential(url) {
            if let Some(token) = std::env::var(&cred.bearer_token_env).ok().filter(|t| !t.is_empty()) {
                req = req.bearer_auth(token);
            }
            for (k, v) in &cred.headers {
                req = req.header(k, v);
            }
        }
        req
    }

    async fn exchange(
        &self,
        settings: &A2aSection,
        remote: &A2aRemote,
        card_url: &reqwest::Url,
        text: &str,
        context_id: &str,
    ) -> Result<String, A2aCallError> {
        let limit = settings.max_response_bytes;
        let card = self.request(settings, reqwest::Method::GET, card_url).send().await;
        let card = card.map_err(|e| self.unreachable(remote, e))?;
        if !card.status().is_success() {
            return Err(self.unreachable(remote, format!("its card answered HTTP {}", card.status())));
        }
        let card: Value = serde_json::from_slice(&read_capped(card, remote, limit).await?)
            .map_err(|e| A2aCallError::Protocol { name: remote.name.clone(), why: format!("card: {e}") })?;
        let endpoint = jsonrpc_endpoint(&card).ok_or_else(|| A2aCallError::Protocol {
            name: remote.name.clone(),
            why: "its card offers no JSON-RPC interface of A2A 1.x".into(),
        })?;
        let endpoint = reqwest::Url::parse(&endpoint).map_err(|e| self.unreachable(remote, e))?;
        // The card may name another host: it must be allowed too.
        if !settings.allows(&endpoint) {
            return Err(A2aCallError::NotAllowed { host: host_of(&endpoint) });
        }
        let streaming = card["capabilities"]["streaming"] == true;
        let method = if streaming { "SendStreamingMessage" } else { "SendMessage" };
        let span = tracing::Span::current();
        span.record("otel.name", method);
        span.record("a2a.method.name", method);
        let message = super::wire::Message {
            message_id: uuid::Uuid::new_v4().to_string(),
            context_id: None,
            task_id: None,
            role: super::wire::Role::User,
            parts: vec![Part::text(text)],
            metadata: Some(json!({"caxtonConversation": context_id})),
            extensions: vec![],
            reference_task_ids: vec![],
        };
        let body = json!({
            "jsonrpc": "2.0", "id": 1, "method": method,
            "params": {"message": message, "configuration": {"acceptedOutputModes": ["text/plain"]}}
        });
        let mut req = self.request(settings, reqwest::Method::POST, &endpoint).json(&body);
        if streaming {
            req = req.header("accept", "text/event-stream");
        }
        let resp = req.send().await.map_err(|e| self.unreachable(remote, e))?;
        if !resp.status().is_success() {
            return Err(self.unreachable(remote, format!("HTTP {}", resp.status())));
        }
        let is_sse = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        let mut answer = Answer::default();
        if is_sse {
            let mut decoder = SseDecoder::with_limit(limit as usize);
            let (mut read, mut stream) = (0u64, resp.bytes_stream());
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| self.unreachable(remote, e))?;
                read += chunk.len() as u64;
                if read > limit || decoder.overflowed() {
                    return Err(A2aCallError::TooLarge { name: remote.name.clone(), limit });
                }
                for event in decoder.feed(&chunk) {
                    let frame: Value = serde_json::from_str(&event.data).map_err(|e| A2aCallError::Protocol {
                        name: remote.name.clone(),
                        why: format!("stream event: {e}"),
                    })?;
                    answer.take(remote, &frame)?;
                }
            }
        } else {
            let frame: Value = serde_json::from_slice(&read_capped(resp, remote, limit).await?)
                .map_err(|e| A2aCallError::Protocol { name: remote.name.clone(), why: e.to_string() })?;
            answer.take(remote, &frame)?;
        }
        if let Some(id) = &answer.task_id {
            span.record("a2a.task.id", id.as_str());
        }
        if let Some(ctx) = &answer.context_id {
            span.record("gen_ai.conversation.id", ctx.as_str());
        }
        if let Some(state) = answer.state {
            span.record("a2a.task.state", format!("{state:?}").to_ascii_lowercase().as_str());
        }
        answer.finish(remote)
    }
}

fn host_of(url: &reqwest::Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_owned(),
        _ => url.to_string(),
    }
}

fn error_type(e: &A2aCallError) -> &'static str {
    match e {
        A2aCallError::NotAllowed { .. } => "not_allowed",
        A2aCallError::Unreachable { .. } => "unreachable",
        A2aCallError::Protocol { .. } => "protocol",
        A2aCallError::Refused { .. } => "refused",
        A2aCallError::Ended { .. } => "task_failed",
        A2aCallError::TooLarge { .. } => "too_large",
        A2aCallError::Timeout { .. } => "timeout",
    }
}

async fn read_capped(resp: reqwest::Response, remote: &A2aRemote, limit: u64) -> Result<Vec<u8>, A2aCallError> {
    let mut body = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| A2aCallError::Unreachable { name: remote.name.clone(), why: e.to_string() })?;
        if (body.len() + chunk.len()) as u64 > limit {
            return Err(A2aCallError::TooLarge { name: remote.name.clone(), limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The card's JSON-RPC interface of protocol 1.x.
fn jsonrpc_endpoint(card: &Value) -> Option<String> {
    card["supportedInterfaces"].as_array()?.iter().find_map(|i| {
        let v = i["protocolVersion"].as_str().unwrap_or("1.0");
        (i["protocolBinding"] == "JSONRPC" && (v == "1" || v.starts_with("1.")))
            .then(|| i["url"].as_str())?
            .map(str::to_owned)
    })
}

fn text_of(parts: &[Part]) -> String {
    parts
        .iter()
        .filter_map(|p| p.text.clone().or_else(|| p.data.as_ref().map(|d| d.to_string())))
        .collect::<Vec<_>>()
        .join("\n")
}

/// What the remote agent said, gathered from its events.
#[derive(Default)]
struct Answer {
    task_id: Option<String>,
    context_id: Option<String>,
    state: Option<TaskState>,
    /// Artifact text, by artifact id, in arrival order.
    artifacts: Vec<(String, String)>,
    status_text: Option<String>,
    message: Option<String>,
}

impl Answer {
    fn take(&mut self, remote: &A2aRemote, frame: &Value) -> Result<(), A2aCallError> {
        if let Some(e) = frame.get("error") {
            return Err(A2aCallError::Refused {
                name: remote.name.clone(),
                code: e["code"].as_i64().unwrap_or(0),
                message: e["message"].as_str().unwrap_or("").to_owned(),
            });
        }
        let event: StreamResponse = serde_json::from_value(frame["result"].clone())
            .map_err(|e| A2aCallError::Protocol { name: remote.name.clone(), why: e.to_string() })?;
        match event {
            StreamResponse::Message(m) => self.message = Some(text_of(&m.parts)),
            StreamResponse::Task(task) => self.task(task),
            StreamResponse::StatusUpdate(u) => {
                self.state = Some(u.status.state);
                if let Some(m) = u.status.message {
                    self.status_text = Some(text_of(&m.parts));
                }
            }
            StreamResponse::ArtifactUpdate(u) => {
                let text = text_of(&u.artifact.parts);
                self.artifact(u.artifact.artifact_id, text, u.append);
            }
        }
        Ok(())
    }

    fn task(&mut self, task: Task) {
        self.task_id = Some(task.id);
        self.context_id = Some(task.context_id);
        self.state = Some(task.status.state);
        if let Some(m) = task.status.message {
            self.status_text = Some(text_of(&m.parts));
        }
        for a in task.artifacts {
            let text = text_of(&a.parts);
            self.artifact(a.artifact_id, text, false);
        }
    }

    /// An artifact's text: new, appended to, or replaced.
    fn artifact(&mut self, id: String, text: String, append: bool) {
        match self.artifacts.iter_mut().find(|(have_id, _)| *have_id == id) {
            Some((_, have)) if append => have.push_str(&text),
            Some((_, have)) => *have = text,
            None => self.artifacts.push((id, text)),
        }
    }

    fn finish(self, remote: &A2aRemote) -> Result<String, A2aCallError> {
        if let Some(message) = self.message {
            return Ok(message);
        }
        let artifacts: Vec<String> = self.artifacts.into_iter().map(|(_, t)| t).collect();
        let text = if artifacts.is_empty() { self.status_text.unwrap_or_default() } else { artifacts.join("\n") };
        match self.state {
            Some(TaskState::Completed) => Ok(text),
            Some(state)
                if state.is_terminal() || state == TaskState::InputRequired || state == TaskState::AuthRequired =>
            {
                Err(A2aCallError::Ended { name: remote.name.clone(), state: format!("{state:?}"), text })
            }
            // The stream ended early, or a non-blocking answer: what there is.
            _ if !text.is_empty() => Ok(text),
            _ => Err(A2aCallError::Protocol { name: remote.name.clone(), why: "no answer in its response".into() }),
        }
    }
}
