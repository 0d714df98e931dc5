//! The deployed tools over MCP's Streamable HTTP transport at `/mcp`, so any
//! MCP client can use them: `initialize` opens a session (`Mcp-Session-Id`),
//! then `tools/list` and `tools/call`; notifications are accepted with 202;
//! `DELETE /mcp` ends the session. Answers are plain JSON (no server push).

use std::collections::HashMap;
use std::sync::Mutex;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::Ctx;

pub const SESSION_HEADER: &str = "mcp-session-id";
const PROTOCOL_VERSION: &str = "2025-06-18";

/// Open sessions (node-local: a client talks to one node).
#[derive(Default)]
pub struct Sessions {
    open: Mutex<HashMap<String, i64>>,
}

fn rpc_error(id: &Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

fn session_of(headers: &HeaderMap) -> Option<String> {
    headers.get(SESSION_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

async fn handle(ctx: &Ctx, msg: &Value) -> Option<Value> {
    let id = msg.get("id")?.clone();
    let method = msg["method"].as_str().unwrap_or("");
    Some(match method {
        "ping" => json!({"jsonrpc": "2.0", "id": id, "result": {}}),
        "tools/list" => {
            match ctx.mcp.tools().await {
                Ok(tools) => {
                    let list: Vec<Value> = tools.into_iter().map(|(t, _)| json!({"name": t.name, "description": t.description, "inputSchema": t.input_schema})).collect();
                    json!({"jsonrpc": "2.0", "id": id, "result": {"tools": list}})
                }
                Err(e) => rpc_error(&id, -32603, &e.to_string()),
            }
        }
        "tools/call" => {
            let name = msg["params"]["name"].as_str().unwrap_or("");
            match ctx.mcp.call(name, msg["params"]["arguments"].clone()).await {
                Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
                Err(crate::mcp::McpError::UnknownTool { .. }) => {
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
pub async fn post(State(ctx): State<Ctx>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    if body["method"] == "initialize" {
        let id = uuid::Uuid::new_v4().to_string();
        ctx.mcp_sessions
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.clone(), chrono::Utc::now().timestamp_millis());
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
    let known = session_of(&headers)
        .is_some_and(|s| ctx.mcp_sessions.open.lock().unwrap_or_else(|p| p.into_inner()).contains_key(&s));
    if !known {
        return (
            StatusCode::NOT_FOUND,
            Json(rpc_error(&body["id"], -32001, "unknown or missing Mcp-Session-Id: send initialize first")),
        )
            .into_response();
    }
    let messages: Vec<Value> = match body {
        Value::Array(batch) => batch,
        single => vec![single],
    };
    let mut answers = Vec::new();
    for m in &messages {
        if let Some(a) = handle(&ctx, m).await {
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
pub async fn delete(State(ctx): State<Ctx>, headers: HeaderMap) -> StatusCode {
    match session_of(&headers) {
        Some(s) if ctx.mcp_sessions.open.lock().unwrap_or_else(|p| p.into_inner()).remove(&s).is_some() => {
            StatusCode::NO_CONTENT
        }
        _ => StatusCode::NOT_FOUND,
    }
}
