//! The MCP JSON-RPC messages the host sends and the answers it reads,
//! shared by fresh sessions and warm ones.

use serde_json::{json, Value};

use super::errors::ToolError;

const PROTOCOL_VERSION: &str = "2025-06-18";

pub(super) fn initialize_request() -> Value {
    json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": PROTOCOL_VERSION, "capabilities": {}, "clientInfo": {"name": "caxton", "version": env!("CARGO_PKG_VERSION")}
    }})
}

pub(super) fn initialized_notification() -> Value {
    json!({"jsonrpc": "2.0", "method": "notifications/initialized"})
}

/// The `result` of request `id`, after checking the handshake was answered.
pub(super) fn answer(answers: Vec<Value>, id: i64) -> Result<Value, ToolError> {
    if !answers.iter().any(|a| a["id"] == 0 && a.get("result").is_some()) {
        return Err(ToolError::NoInitialize);
    }
    let a = answers
        .into_iter()
        .find(|a| a["id"] == id)
        .ok_or_else(|| ToolError::Protocol(format!("no answer to request {id}")))?;
    result_of(a)
}

/// A JSON-RPC answer's `result`, or its `error` as [`ToolError::Rpc`].
/// Taken by value: the result is moved out, not copied.
pub(super) fn result_of(mut a: Value) -> Result<Value, ToolError> {
    if let Some(err) = a.get("error") {
        return Err(ToolError::Rpc {
            code: err["code"].as_i64().unwrap_or(0),
            message: err["message"].as_str().unwrap_or("").to_owned(),
        });
    }
    Ok(a.get_mut("result").map(Value::take).unwrap_or(Value::Null))
}
