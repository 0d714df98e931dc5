//! A2A v1.0 over HTTP: every agent is an A2A agent at `/a2a/agents/{name}`
//! (JSON-RPC on the URL itself, HTTP+JSON below it), the node's router at
//! `/a2a`, their cards under `.well-known/agent-card.json`. A task is a
//! Caxton request (`a2a::tasks`); what a key may see and send is what
//! `/v1/messages` lets it. The operations are `calls.rs`; `jsonrpc.rs`
//! and `rest.rs` are the two bindings, `cards.rs` the cards.

mod calls;
pub mod cards;
pub mod jsonrpc;
pub mod rest;

use axum::http::{HeaderMap, HeaderValue};
use axum::response::Response;

use crate::a2a::wire::VERSION;
use crate::a2a::A2aError;

/// `A2A-Version`: absent means the client did not say (served as 1.0);
/// any 1.x is this version; anything else is refused.
fn check_version(headers: &HeaderMap) -> Result<(), A2aError> {
    match headers.get("a2a-version").and_then(|v| v.to_str().ok()).map(str::trim) {
        None | Some("") => Ok(()),
        Some(v) if v == "1" || v.starts_with("1.") => Ok(()),
        Some(v) => Err(A2aError::VersionNotSupported(v.to_owned())),
    }
}

fn versioned(mut response: Response) -> Response {
    response.headers_mut().insert("a2a-version", HeaderValue::from_static(VERSION));
    response
}
