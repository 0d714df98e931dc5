//! The JSON-RPC binding: one POST per call to the interface URL.

use std::convert::Infallible;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures::StreamExt;
use serde_json::{json, Value};

use super::super::event_stream as sse;
use super::super::Ctx;
use super::calls::{Call, Events, Interface};
use super::{check_version, versioned};
use crate::a2a::A2aError;
use crate::auth::Principal;

fn rpc_result(id: &Value, result: impl serde::Serialize) -> Response {
    versioned(Json(json!({"jsonrpc": "2.0", "id": id, "result": result})).into_response())
}

/// JSON-RPC errors travel with HTTP 200: A2A clients read them only then.
/// A body that is no JSON-RPC request at all is a 400 (no client library
/// sends one; a proxy or a hand-written call learns it went wrong).
fn rpc_error(id: &Value, e: &A2aError) -> Response {
    let status = match e {
        A2aError::Parse(_) | A2aError::InvalidRequest(_) => StatusCode::BAD_REQUEST,
        _ => StatusCode::OK,
    };
    versioned((status, Json(json!({"jsonrpc": "2.0", "id": id, "error": e.rpc_error()}))).into_response())
}

fn rpc_stream(id: Value, events: Events) -> Response {
    let frames = events.map(move |e| {
        Ok::<_, Infallible>(Event::default().data(json!({"jsonrpc": "2.0", "id": id, "result": e}).to_string()))
    });
    versioned(sse(frames))
}

fn params<T: serde::de::DeserializeOwned>(params: Value) -> Result<T, A2aError> {
    serde_json::from_value(params).map_err(|e| A2aError::InvalidParams(e.to_string()))
}

async fn dispatch(call: Call<'_>, headers: HeaderMap, body: Bytes) -> Response {
    let envelope: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return rpc_error(&Value::Null, &A2aError::Parse(e.to_string())),
    };
    let id = envelope.get("id").cloned().unwrap_or(Value::Null);
    if envelope["jsonrpc"] != "2.0" || !envelope["method"].is_string() {
        return rpc_error(&id, &A2aError::InvalidRequest("a JSON-RPC 2.0 request names `method`".into()));
    }
    if let Err(e) = check_version(&headers) {
        return rpc_error(&id, &e);
    }
    let method = envelope["method"].as_str().unwrap_or_default().to_owned();
    let p = envelope.get("params").cloned().unwrap_or(json!({}));
    let outcome: Result<Response, A2aError> = async {
        Ok(match method.as_str() {
            "SendMessage" => rpc_result(&id, call.send(params(p)?).await?),
            "SendStreamingMessage" => rpc_stream(id.clone(), call.send_streaming(params(p)?).await?),
            "GetTask" => rpc_result(&id, call.get_task(params(p)?).await?),
            "ListTasks" => rpc_result(&id, call.list_tasks(params(p)?).await?),
            "CancelTask" => rpc_result(&id, call.cancel_task(params(p)?).await?),
            "SubscribeToTask" => rpc_stream(id.clone(), call.subscribe(params(p)?).await?),
            "CreateTaskPushNotificationConfig"
            | "GetTaskPushNotificationConfig"
            | "ListTaskPushNotificationConfigs"
            | "DeleteTaskPushNotificationConfig" => return Err(A2aError::PushNotificationNotSupported),
            "GetExtendedAgentCard" => {
                return Err(A2aError::UnsupportedOperation("this agent has no extended card".into()))
            }
            other => return Err(A2aError::MethodNotFound(other.to_owned())),
        })
    }
    .await;
    outcome.unwrap_or_else(|e| rpc_error(&id, &e))
}

/// A2A JSON-RPC to one agent.
#[utoipa::path(post, path = "/a2a/agents/{name}", tag = "a2a", request_body(content = Object, description = "a JSON-RPC 2.0 request"),
    params(("name" = String, Path, description = "The agent")),
    responses((status = 200, description = "a JSON-RPC response (errors included), or text/event-stream for streaming methods"),
              (status = 400, description = "not a JSON-RPC request (-32700, -32600)")))]
pub async fn agent_rpc(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Principal>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    dispatch(Call { ctx: &ctx, caller: &caller, interface: Interface::Agent(name) }, headers, body).await
}

/// A2A JSON-RPC to the router: messages name a skill (a capability).
#[utoipa::path(post, path = "/a2a", tag = "a2a", request_body(content = Object, description = "a JSON-RPC 2.0 request"),
    responses((status = 200, description = "a JSON-RPC response (errors included), or text/event-stream for streaming methods"),
              (status = 400, description = "not a JSON-RPC request (-32700, -32600)")))]
pub async fn router_rpc(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Principal>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    dispatch(Call { ctx: &ctx, caller: &caller, interface: Interface::Router }, headers, body).await
}
