//! MCP servers reached over Streamable HTTP, registered by the operator
//! (`[tools.remote.NAME]`): a session opened on first use (and again when
//! the server forgets it), answers read as JSON or as SSE, each bounded by
//! the server's timeout and output cap. Their tool lists are cached; a
//! server that stops answering keeps its tools listed, and every call to
//! them fails with an error naming the server until it answers again.

use std::time::{Duration, Instant};

use futures::StreamExt;
use parking_lot::Mutex;
use serde_json::{json, Value};

use super::errors::ToolError;
use super::host::ToolInfo;
use crate::config::RemoteMcpServer;
use crate::sse::SseDecoder;

/// The MCP revision offered; the server's answer is used from then on.
const PROTOCOL_VERSION: &str = "2025-06-18";
/// How long a tool list is trusted before it is asked for again.
const LIST_TTL: Duration = Duration::from_secs(30);
/// A listing made while a turn waits is cut short after this.
const LIST_TIMEOUT: Duration = Duration::from_secs(5);

/// The session a server gave us.
#[derive(Debug, Clone, Default)]
struct Session {
    id: Option<String>,
    version: String,
}

/// Whether the server answered its last request.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct Reachability {
    pub available: bool,
    /// Why not, when it is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

pub struct RemoteServer {
    pub name: String,
    config: RemoteMcpServer,
    bearer: Option<String>,
    http: reqwest::Client,
    session: tokio::sync::Mutex<Option<Session>>,
    tools: Mutex<Option<(Instant, Vec<ToolInfo>)>>,
    reach: Mutex<Reachability>,
}

/// A failure talking to the server, before any tool ran.
fn unavailable(server: &str, why: impl std::fmt::Display) -> ToolError {
    ToolError::Remote(format!("tool server `{server}` is unavailable: {why}"))
}

impl RemoteServer {
    pub fn new(name: &str, config: RemoteMcpServer) -> Self {
        let bearer = (!config.bearer_token_env.is_empty())
            .then(|| std::env::var(&config.bearer_token_env).ok())
            .flatten()
            .filter(|t| !t.is_empty());
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            // A redirect could carry the bearer token elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("HTTP client with static settings");
        Self {
            name: name.to_owned(),
            config,
            bearer,
            http,
            session: tokio::sync::Mutex::new(None),
            tools: Mutex::new(None),
            reach: Mutex::new(Reachability { available: true, error: None }),
        }
    }

    pub fn url(&self) -> &str {
        &self.config.url
    }

    pub fn reachability(&self) -> Reachability {
        self.reach.lock().clone()
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.config.timeout_ms)
    }

    fn noted<T>(&self, result: Result<T, ToolError>) -> Result<T, ToolError> {
        let mut reach = self.reach.lock();
        match &result {
            Ok(_) => *reach = Reachability { available: true, error: None },
            Err(ToolError::Remote(why)) => *reach = Reachability { available: false, error: Some(why.clone()) },
            Err(_) => {}
        }
        result
    }

    /// One POST; the JSON-RPC answer to `id` (None for a notification).
    async fn post(&self, session: &Session, body: &Value, id: Option<u64>) -> Result<Post, ToolError> {
        let mut req = self
            .http
            .post(&self.config.url)
            .timeout(self.timeout())
            .header("accept", "application/json, text/event-stream")
            .json(body);
        if let Some(token) = &self.bearer {
            req = req.bearer_auth(token);
        }
        for (k, v) in &self.config.headers {
            req = req.header(k, v);
        }
        if let Some(sid) = &session.id {
            req = req.header("mcp-session-id", sid);
        }
        if !session.version.is_empty() {
            req = req.header("mcp-protocol-version", &session.version);
        }
        let resp = req.send().await.map_err(|e| unavailable(&self.name, e))?;
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_FOUND && session.id.is_some() {
            return Ok(Post::SessionGone);
        }
        if !status.is_success() {
            let text = resp.text().await.unwrap_or_default();
            let text: String = text.chars().take(300).collect();
            return Err(unavailable(&self.name, format!("HTTP {status}: {text}")));
        }
        let session_id = resp.headers().get("mcp-session-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let Some(id) = id else { return Ok(Post::Answer(Value::Null, session_id)) };
        let is_sse = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        let limit = self.config.max_output_bytes as usize;
        let answer = if is_sse { self.read_sse(resp, id, limit).await? } else { self.read_json(resp, limit).await? };
        Ok(Post::Answer(answer, session_id))
    }

    async fn read_json(&self, resp: reqwest::Response, limit: usize) -> Result<Value, ToolError> {
        let mut body = Vec::new();
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| unavailable(&self.name, e))?;
            if body.len() + chunk.len() > limit {
                return Err(ToolError::OutputLimit { limit });
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|e| ToolError::Protocol(format!("{}: {e}", self.name)))
    }

    /// The SSE answer: skips the server's notifications and requests, stops
    /// at the response to `id`.
    async fn read_sse(&self, resp: reqwest::Response, id: u64, limit: usize) -> Result<Value, ToolError> {
        let mut decoder = SseDecoder::with_limit(limit);
        let mut read = 0usize;
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| unavailable(&self.name, e))?;
            read += chunk.len();
            if read > limit || decoder.overflowed() {
                return Err(ToolError::OutputLimit { limit });
            }
            for event in decoder.feed(&chunk) {
                let Ok(message) = serde_json::from_str::<Value>(&event.data) else { continue };
                if message.get("method").is_none() && message["id"] == json!(id) {
                    return Ok(message);
                }
            }
        }
        Err(unavailable(&self.name, "the answer stream ended before the response"))
    }

    async fn initialize(&self) -> Result<Session, ToolError> {
        let hello = json!({
            "jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": PROTOCOL_VERSION, "capabilities": {},
                       "clientInfo": {"name": "caxton", "version": env!("CARGO_PKG_VERSION")}}
        });
        let Post::Answer(answer, sid) = self.post(&Session::default(), &hello, Some(0)).await? else {
            return Err(unavailable(&self.name, "initialize was refused"));
        };
        let version = answer["result"]["protocolVersion"].as_str().unwrap_or(PROTOCOL_VERSION).to_owned();
        if answer.get("error").is_some() {
            return Err(ToolError::NoInitialize);
        }
        let session = Session { id: sid, version };
        let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        self.post(&session, &initialized, None).await?;
        Ok(session)
    }

    /// One request in the session (opened, or opened again, as needed).
    async fn request(&self, method: &str, params: Value) -> Result<Value, ToolError> {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        for _ in 0..2 {
            let session = {
                let mut held = self.session.lock().await;
                match held.as_ref() {
                    Some(s) => s.clone(),
                    None => {
                        let s = self.initialize().await?;
                        *held = Some(s.clone());
                        s
                    }
                }
            };
            match self.post(&session, &body, Some(1)).await? {
                Post::SessionGone => *self.session.lock().await = None,
                Post::Answer(answer, _) => {
                    if let Some(e) = answer.get("error") {
                        return Err(ToolError::Rpc {
                            code: e["code"].as_i64().unwrap_or(0),
                            message: e["message"].as_str().unwrap_or("").to_owned(),
                        });
                    }
                    return Ok(answer["result"].clone());
                }
            }
        }
        Err(unavailable(&self.name, "the server keeps forgetting its session"))
    }

    async fn fetch_tools(&self) -> Result<Vec<ToolInfo>, ToolError> {
        let mut tools = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let params = match &cursor {
                Some(c) => json!({"cursor": c}),
                None => json!({}),
            };
            let page = self.request("tools/list", params).await?;
            let listed: Vec<ToolInfo> = serde_json::from_value(page["tools"].clone())
                .map_err(|e| ToolError::Protocol(format!("{}: tools/list: {e}", self.name)))?;
            tools.extend(listed.into_iter().filter(|t| self.exposes(&t.name)));
            match page["nextCursor"].as_str().filter(|c| !c.is_empty()) {
                Some(c) if tools.len() < 10_000 => cursor = Some(c.to_owned()),
                _ => return Ok(tools),
            }
        }
    }

    /// The operator's allowlist of this server's tools (empty: all).
    fn exposes(&self, tool: &str) -> bool {
        self.config.tools.is_empty() || self.config.tools.iter().any(|t| t == tool)
    }

    /// The server's tools, from the cache while it is fresh. A server that
    /// cannot be listed keeps the tools it listed last (calls to them say
    /// why they fail); one never listed has none.
    pub async fn tools(&self) -> Vec<ToolInfo> {
        if let Some((at, tools)) = self.tools.lock().as_ref() {
            if at.elapsed() < LIST_TTL {
                return tools.clone();
            }
        }
        let fetched = tokio::time::timeout(LIST_TIMEOUT.min(self.timeout()), self.fetch_tools())
            .await
            .unwrap_or_else(|_| Err(unavailable(&self.name, "tools/list timed out")));
        match self.noted(fetched) {
            Ok(tools) => {
                *self.tools.lock() = Some((Instant::now(), tools.clone()));
                tools
            }
            Err(e) => {
                tracing::warn!(server = %self.name, error = %e, "remote MCP server not listed");
                let mut cached = self.tools.lock();
                // Asked again after the TTL, not at every turn.
                let last = cached.as_ref().map(|(_, t)| t.clone()).unwrap_or_default();
                *cached = Some((Instant::now(), last.clone()));
                last
            }
        }
    }

    /// Calls one of its tools; the MCP result (`content`, `isError`, ...).
    pub async fn call_tool(&self, tool: &str, arguments: Value) -> Result<Value, ToolError> {
        if !self.exposes(tool) {
            return Err(ToolError::Rpc { code: -32602, message: format!("tool `{tool}` is not exposed") });
        }
        let call = self.request("tools/call", json!({"name": tool, "arguments": arguments}));
        let result = tokio::time::timeout(self.timeout(), call)
            .await
            .unwrap_or(Err(ToolError::Timeout { timeout_ms: self.config.timeout_ms }));
        self.noted(result)
    }
}

enum Post {
    Answer(Value, Option<String>),
    /// The server no longer knows our session: open another.
    SessionGone,
}
