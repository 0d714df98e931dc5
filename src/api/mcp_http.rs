//! The deployed tools over MCP's Streamable HTTP transport at `/mcp`, so any
//! MCP client can use them: `initialize` opens a session (`Mcp-Session-Id`),
//! then `tools/list` and `tools/call`; notifications are accepted with 202;
//! `DELETE /mcp` ends the session. Answers are plain JSON (no server push).

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{json, Value};

use super::Ctx;
use crate::auth::Principal;

pub const SESSION_HEADER: &str = "mcp-session-id";
const PROTOCOL_VERSION: &str = "2025-06-18";
/// Messages one batch may carry (each may run a tool).
pub const MAX_BATCH: usize = 32;

struct Session {
    /// The key that opened it: only that key may use it.
    key: Arc<str>,
    last_used: Instant,
}

/// Open sessions (node-local: a client talks to one node). Bounded: idle
/// sessions expire, and past `max` the least recently used is dropped.
pub struct Sessions {
    open: Mutex<HashMap<String, Session>>,
    idle: Duration,
    max: usize,
}

impl Sessions {
    pub fn new(idle: Duration, max: usize) -> Self {
        Self { open: Mutex::new(HashMap::new()), idle, max: max.max(1) }
    }

    /// Sessions one key may hold: a sixteenth of all (at least 8).
    fn per_key(&self) -> usize {
        (self.max / 16).max(8)
    }

    fn open(&self, key: &Arc<str>, now: Instant) -> String {
        let id = uuid::Uuid::new_v4().to_string();
        let mut open = self.open.lock();
        open.retain(|_, s| now.saturating_duration_since(s.last_used) < self.idle);
        // A key past its share makes room among its own sessions, so one
        // key opening sessions in a loop cannot evict everyone else's.
        loop {
            let mine = open.iter().filter(|(_, s)| s.key == *key);
            if mine.clone().count() < self.per_key() {
                break;
            }
            let Some(oldest) = mine.min_by_key(|(_, s)| s.last_used).map(|(id, _)| id.clone()) else { break };
            open.remove(&oldest);
        }
        while open.len() >= self.max {
            let Some(oldest) = open.iter().min_by_key(|(_, s)| s.last_used).map(|(id, _)| id.clone()) else { break };
            open.remove(&oldest);
        }
        open.insert(id.clone(), Session { key: key.clone(), last_used: now });
        id
    }

    /// Marks the session used, if it is open, fresh, and `key`'s.
    fn touch(&self, id: &str, key: &str, now: Instant) -> bool {
        let mut open = self.open.lock();
        match open.get_mut(id) {
            Some(s) if now.saturating_duration_since(s.last_used) >= self.idle => {
                open.remove(id);
                false
            }
            Some(s) if &*s.key == key => {
                s.last_used = now;
                true
            }
            _ => false,
        }
    }

    fn close(&self, id: &str, key: &str) -> bool {
        let mut open = self.open.lock();
        if open.get(id).is_some_and(|s| &*s.key == key) {
            open.remove(id);
            return true;
        }
        false
    }

    pub fn len(&self) -> usize {
        self.open.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn rpc_error(id: &Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

fn session_of(headers: &HeaderMap) -> Option<String> {
    headers.get(SESSION_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

async fn handle(ctx: &Ctx, granted: Option<&[String]>, msg: &Value) -> Option<Value> {
    let id = msg.get("id")?.clone();
    let method = msg["method"].as_str().unwrap_or("");
    Some(match method {
        "ping" => json!({"jsonrpc": "2.0", "id": id, "result": {}}),
        "tools/list" => {
            match ctx.mcp.tools_within(granted).await {
                Ok(tools) => {
                    let list: Vec<Value> = tools.into_iter().map(|(t, _)| json!({"name": t.name, "description": t.description, "inputSchema": t.input_schema})).collect();
                    json!({"jsonrpc": "2.0", "id": id, "result": {"tools": list}})
                }
                Err(e) => rpc_error(&id, -32603, &e.to_string()),
            }
        }
        "tools/call" => {
            let name = msg["params"]["name"].as_str().unwrap_or("");
            match ctx.mcp.call_within(name, msg["params"]["arguments"].clone(), granted).await {
                Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
                Err(crate::mcp::McpError::UnknownTool { .. } | crate::mcp::McpError::NotGranted(_)) => {
                    rpc_error(&id, -32602, &format!("unknown tool `{name}`"))
                }
                // A limit or a crash is the tool's failure: an error result the client shows.
                Err(e) => {
                    json!({"jsonrpc": "2.0", "id": id, "result": {"content": [{"type": "text", "text": e.to_string()}], "isError": true}})
                }
            }
        }
        other => rpc_error(&id, -32601, &format!("method `{other}` not found")),
    })
}

/// MCP Streamable HTTP: one JSON-RPC message (or a batch) per POST.
#[utoipa::path(post, path = "/mcp", tag = "tools", request_body(content = Object, description = "JSON-RPC 2.0 message"),
    responses((status = 200, description = "JSON-RPC response"), (status = 202, description = "Notification accepted"), (status = 404, description = "Unknown session")))]
pub async fn post(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Principal>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if body["method"] == "initialize" {
        let id = ctx.mcp_sessions.open(&caller.name, Instant::now());
        let result = json!({"jsonrpc": "2.0", "id": body["id"], "result": {
            "protocolVersion": body["params"]["protocolVersion"].as_str().unwrap_or(PROTOCOL_VERSION),
            "capabilities": {"tools": {"listChanged": false}},
            "serverInfo": {"name": "caxton", "version": env!("CARGO_PKG_VERSION")}
        }});
        let mut resp = Json(result).into_response();
        if let Ok(v) = HeaderValue::from_str(&id) {
            resp.headers_mut().insert(SESSION_HEADER, v);
        }
        return resp;
    }
    let known = session_of(&headers).is_some_and(|s| ctx.mcp_sessions.touch(&s, &caller.name, Instant::now()));
    if !known {
        return (
            StatusCode::NOT_FOUND,
            Json(rpc_error(&body["id"], -32001, "unknown, expired or missing Mcp-Session-Id: send initialize first")),
        )
            .into_response();
    }
    let messages: Vec<Value> = match body {
        Value::Array(batch) => batch,
        single => vec![single],
    };
    if messages.len() > MAX_BATCH {
        let why = format!("a batch of {} messages; at most {MAX_BATCH} are accepted", messages.len());
        return (StatusCode::BAD_REQUEST, Json(rpc_error(&Value::Null, -32600, &why))).into_response();
    }
    let granted = match super::access::tools_granted(&caller, ctx.registry.queries()).await {
        Ok(g) => g,
        Err(problem) => return problem.into_response(),
    };
    let mut answers = Vec::new();
    for m in &messages {
        if let Some(a) = handle(&ctx, granted.as_deref(), m).await {
            answers.push(a);
        }
    }
    match answers.len() {
        0 => StatusCode::ACCEPTED.into_response(),
        1 if messages.len() == 1 => Json(answers.remove(0)).into_response(),
        _ => Json(Value::Array(answers)).into_response(),
    }
}

/// Ends an MCP session.
#[utoipa::path(delete, path = "/mcp", tag = "tools", responses((status = 204), (status = 404)))]
pub async fn delete(State(ctx): State<Ctx>, Extension(caller): Extension<Principal>, headers: HeaderMap) -> StatusCode {
    match session_of(&headers) {
        Some(s) if ctx.mcp_sessions.close(&s, &caller.name) => StatusCode::NO_CONTENT,
        _ => StatusCode::NOT_FOUND,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_are_capped_and_belong_to_their_key() {
        let sessions = Sessions::new(Duration::from_secs(60), 2);
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        let t0 = Instant::now();
        let first = sessions.open(&a, t0);
        assert!(sessions.touch(&first, "a", t0 + Duration::from_secs(30)));
        assert!(!sessions.touch(&first, "b", t0), "another key cannot use it");
        assert!(!sessions.touch(&first, "a", t0 + Duration::from_secs(91)), "idle past 60s: gone");
        let s1 = sessions.open(&a, t0);
        let s2 = sessions.open(&b, t0 + Duration::from_secs(1));
        let s3 = sessions.open(&b, t0 + Duration::from_secs(2));
        assert_eq!(sessions.len(), 2);
        assert!(!sessions.touch(&s1, "a", t0 + Duration::from_secs(3)), "the least recently used went first");
        assert!(
            sessions.touch(&s2, "b", t0 + Duration::from_secs(3))
                && sessions.touch(&s3, "b", t0 + Duration::from_secs(3))
        );
        assert!(!sessions.close(&s2, "a") && sessions.close(&s2, "b"));
    }

    #[test]
    fn one_key_opening_sessions_in_a_loop_evicts_only_its_own() {
        let sessions = Sessions::new(Duration::from_secs(600), 1024);
        let (victim, greedy): (Arc<str>, Arc<str>) = ("victim".into(), "greedy".into());
        let t0 = Instant::now();
        let kept = sessions.open(&victim, t0);
        for i in 0..5000 {
            sessions.open(&greedy, t0 + Duration::from_millis(i));
        }
        assert!(sessions.touch(&kept, "victim", t0 + Duration::from_secs(10)), "the other key's session stays");
        assert_eq!(sessions.len(), 1 + 1024 / 16);
    }
}
