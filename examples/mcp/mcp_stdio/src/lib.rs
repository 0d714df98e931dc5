//! The MCP stdio transport for tool servers: JSON-RPC 2.0, one message per
//! line on stdin, answers on stdout. A server declares its tools and a
//! handler; this crate does `initialize`, `tools/list`, `tools/call` and
//! proper JSON-RPC errors.

use std::io::{BufRead, Write};

use serde_json::{json, Value};

pub struct Tool {
    pub name: &'static str,
    pub description: &'static str,
    pub input_schema: Value,
}

/// A tool's failure, shown to the caller as an `isError` result.
pub struct ToolFailure(pub String);

impl<E: std::fmt::Display> From<E> for ToolFailure {
    fn from(e: E) -> Self {
        ToolFailure(e.to_string())
    }
}

fn error(id: &Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

/// Serves until stdin closes.
pub fn serve(name: &str, tools: Vec<Tool>, handler: impl Fn(&str, &Value) -> Result<Value, ToolFailure>) {
    let stdin = std::io::stdin();
    let mut out = std::io::stdout().lock();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        if line.trim().is_empty() {
            continue;
        }
        let msg: Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(e) => {
                let _ = writeln!(out, "{}", error(&Value::Null, -32700, &format!("parse error: {e}")));
                continue;
            }
        };
        let id = msg.get("id").cloned();
        let method = msg["method"].as_str().unwrap_or("");
        let Some(id) = id else { continue }; // a notification: no answer
        let reply = match method {
            "initialize" => json!({"jsonrpc": "2.0", "id": id, "result": {
                "protocolVersion": msg["params"]["protocolVersion"].as_str().unwrap_or("2025-06-18"),
                "capabilities": {"tools": {}},
                "serverInfo": {"name": name, "version": "0.1.0"}
            }}),
            "tools/list" => {
                let list: Vec<Value> = tools
                    .iter()
                    .map(|t| json!({"name": t.name, "description": t.description, "inputSchema": t.input_schema}))
                    .collect();
                json!({"jsonrpc": "2.0", "id": id, "result": {"tools": list}})
            }
            "tools/call" => {
                let tool = msg["params"]["name"].as_str().unwrap_or("");
                if !tools.iter().any(|t| t.name == tool) {
                    error(&id, -32602, &format!("unknown tool `{tool}`"))
                } else {
                    let args = msg["params"]["arguments"].clone();
                    match handler(tool, &args) {
                        Ok(v) => json!({"jsonrpc": "2.0", "id": id, "result": {
                            "content": [{"type": "text", "text": v.to_string()}],
                            "structuredContent": v,
                            "isError": false
                        }}),
                        Err(ToolFailure(m)) => json!({"jsonrpc": "2.0", "id": id, "result": {
                            "content": [{"type": "text", "text": m}], "isError": true
                        }}),
                    }
                }
            }
            other => error(&id, -32601, &format!("method `{other}` not found")),
        };
        let _ = writeln!(out, "{reply}");
        let _ = out.flush();
    }
}
