//! The HTTP+JSON binding: paths below the interface URL.

use std::convert::Infallible;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures::StreamExt;
use serde_json::json;

use super::super::event_stream as sse;
use super::super::Ctx;
use super::calls::{Call, Events, Interface};
use super::{check_version, versioned};
use crate::a2a::wire::{ListTasksRequest, SendMessageRequest, TaskQuery, TaskState};
use crate::a2a::A2aError;
use crate::auth::Principal;

fn rest_error(e: &A2aError) -> Response {
    let status = StatusCode::from_u16(e.http_status().0).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    versioned((status, Json(e.http_body())).into_response())
}

fn rest<T: serde::Serialize>(r: Result<T, A2aError>) -> Response {
    match r {
        Ok(v) => versioned(Json(v).into_response()),
        Err(e) => rest_error(&e),
    }
}

fn rest_stream(r: Result<Events, A2aError>) -> Response {
    match r {
        Ok(events) => versioned(sse(events.map(|e| Ok::<_, Infallible>(Event::default().data(json!(e).to_string()))))),
        Err(e) => rest_error(&e),
    }
}

fn body<T: serde::de::DeserializeOwned>(headers: &HeaderMap, body: &Bytes) -> Result<T, A2aError> {
    check_version(headers)?;
    serde_json::from_slice(body).map_err(|e| A2aError::InvalidParams(e.to_string()))
}

/// `message:send` or `message:stream`, on either interface.
async fn rest_message(call: Call<'_>, action: &str, headers: HeaderMap, raw: Bytes) -> Response {
    let req: SendMessageRequest = match body(&headers, &raw) {
        Ok(r) => r,
        Err(e) => return rest_error(&e),
    };
    match action {
        "message:send" => rest(call.send(req).await),
        "message:stream" => rest_stream(call.send_streaming(req).await),
        other => rest_error(&A2aError::MethodNotFound(other.to_owned())),
    }
}

/// `GET tasks/{id}` (or `{id}:subscribe`).
async fn rest_get_task(call: Call<'_>, id: String, headers: HeaderMap, q: TaskParams) -> Response {
    if let Err(e) = check_version(&headers) {
        return rest_error(&e);
    }
    match id.rsplit_once(':') {
        Some((id, "subscribe")) => {
            rest_stream(call.subscribe(TaskQuery { id: id.to_owned(), ..Default::default() }).await)
        }
        _ => rest(call.get_task(TaskQuery { id, history_length: q.history_length, ..Default::default() }).await),
    }
}

/// `POST tasks/{id}:cancel` or `tasks/{id}:subscribe`.
async fn rest_task_action(call: Call<'_>, id_action: String, headers: HeaderMap) -> Response {
    if let Err(e) = check_version(&headers) {
        return rest_error(&e);
    }
    let query = |id: &str| TaskQuery { id: id.to_owned(), ..Default::default() };
    match id_action.rsplit_once(':') {
        Some((id, "cancel")) => rest(call.cancel_task(query(id)).await),
        Some((id, "subscribe")) => rest_stream(call.subscribe(query(id)).await),
        _ => rest_error(&A2aError::MethodNotFound(format!("POST tasks/{id_action}"))),
    }
}

#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
pub struct TaskParams {
    pub history_length: Option<i32>,
}

#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
pub struct ListParams {
    pub context_id: Option<String>,
    /// A task state, e.g. `TASK_STATE_COMPLETED`.
    pub status: Option<String>,
    pub page_size: Option<i32>,
    pub page_token: Option<String>,
    pub history_length: Option<i32>,
    pub include_artifacts: Option<bool>,
}

async fn rest_list(call: Call<'_>, headers: HeaderMap, q: ListParams) -> Response {
    if let Err(e) = check_version(&headers) {
        return rest_error(&e);
    }
    let status = match q.status.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => match TaskState::parse(s) {
            Some(state) => Some(state),
            None => return rest_error(&A2aError::InvalidParams(format!("status `{s}` is not a task state"))),
        },
        None => None,
    };
    let req = ListTasksRequest {
        context_id: q.context_id,
        status,
        page_size: q.page_size,
        page_token: q.page_token,
        history_length: q.history_length,
        include_artifacts: q.include_artifacts,
        ..Default::default()
    };
    rest(call.list_tasks(req).await)
}

/// A2A HTTP+JSON: `message:send` or `message:stream` to one agent.
#[utoipa::path(post, path = "/a2a/agents/{name}/{action}", tag = "a2a", request_body(content = Object, description = "SendMessageRequest"),
    params(("name" = String, Path, description = "The agent"), ("action" = String, Path, description = "`message:send` or `message:stream`")),
    responses((status = 200, description = "`{task}`, or text/event-stream of StreamResponse"),
              (status = 400, description = "A2A error (google.rpc.Status)"), (status = 404, description = "A2A error (google.rpc.Status)")))]
pub async fn agent_message(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Principal>,
    Path((name, action)): Path<(String, String)>,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    rest_message(Call { ctx: &ctx, caller: &caller, interface: Interface::Agent(name) }, &action, headers, raw).await
}

/// A2A HTTP+JSON: `message:send` or `message:stream` to the router.
#[utoipa::path(post, path = "/a2a/{action}", tag = "a2a", request_body(content = Object, description = "SendMessageRequest"),
    params(("action" = String, Path, description = "`message:send` or `message:stream`")),
    responses((status = 200, description = "`{task}`, or text/event-stream of StreamResponse"),
              (status = 400, description = "A2A error (google.rpc.Status)"), (status = 404, description = "A2A error (google.rpc.Status)")))]
pub async fn router_message(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Principal>,
    Path(action): Path<String>,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    rest_message(Call { ctx: &ctx, caller: &caller, interface: Interface::Router }, &action, headers, raw).await
}

/// A2A HTTP+JSON: one agent's tasks this key created, newest first.
#[utoipa::path(get, path = "/a2a/agents/{name}/tasks", tag = "a2a", params(("name" = String, Path, description = "The agent"), ListParams),
    responses((status = 200, description = "ListTasksResponse"), (status = 400, description = "A2A error (google.rpc.Status)"),
              (status = 404, description = "A2A error (google.rpc.Status)")))]
pub async fn agent_tasks(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Principal>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Query(q): Query<ListParams>,
) -> Response {
    rest_list(Call { ctx: &ctx, caller: &caller, interface: Interface::Agent(name) }, headers, q).await
}

/// A2A HTTP+JSON: every task this key created over A2A, newest first.
#[utoipa::path(get, path = "/a2a/tasks", tag = "a2a", params(ListParams),
    responses((status = 200, description = "ListTasksResponse"), (status = 400, description = "A2A error (google.rpc.Status)"),
              (status = 404, description = "A2A error (google.rpc.Status)")))]
pub async fn router_tasks(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Principal>,
    headers: HeaderMap,
    Query(q): Query<ListParams>,
) -> Response {
    rest_list(Call { ctx: &ctx, caller: &caller, interface: Interface::Router }, headers, q).await
}

/// A2A HTTP+JSON: a task (`{id}`), or its events (`{id}:subscribe`).
#[utoipa::path(get, path = "/a2a/agents/{name}/tasks/{id}", tag = "a2a", params(("name" = String, Path, description = "The agent"), ("id" = String, Path, description = "The task, with `:cancel` or `:subscribe` after it for those actions"), TaskParams),
    responses((status = 200, description = "Task, or text/event-stream"), (status = 400, description = "A2A error (google.rpc.Status)"),
              (status = 404, description = "A2A error (google.rpc.Status)")))]
pub async fn agent_task(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Principal>,
    Path((name, id)): Path<(String, String)>,
    headers: HeaderMap,
    Query(q): Query<TaskParams>,
) -> Response {
    rest_get_task(Call { ctx: &ctx, caller: &caller, interface: Interface::Agent(name) }, id, headers, q).await
}

/// A2A HTTP+JSON: `{id}:cancel` or `{id}:subscribe`.
#[utoipa::path(post, path = "/a2a/agents/{name}/tasks/{id}", tag = "a2a", params(("name" = String, Path, description = "The agent"), ("id" = String, Path, description = "The task, with `:cancel` or `:subscribe` after it")),
    responses((status = 200, description = "Task, or text/event-stream"), (status = 400, description = "A2A error (google.rpc.Status)"),
              (status = 404, description = "A2A error (google.rpc.Status)")))]
pub async fn agent_task_action(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Principal>,
    Path((name, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    rest_task_action(Call { ctx: &ctx, caller: &caller, interface: Interface::Agent(name) }, id, headers).await
}

/// A2A HTTP+JSON on the router: a task, or its events.
#[utoipa::path(get, path = "/a2a/tasks/{id}", tag = "a2a", params(("id" = String, Path, description = "The task, with `:cancel` or `:subscribe` after it for those actions"), TaskParams),
    responses((status = 200, description = "Task, or text/event-stream"), (status = 400, description = "A2A error (google.rpc.Status)"),
              (status = 404, description = "A2A error (google.rpc.Status)")))]
pub async fn router_task(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Principal>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(q): Query<TaskParams>,
) -> Response {
    rest_get_task(Call { ctx: &ctx, caller: &caller, interface: Interface::Router }, id, headers, q).await
}

/// A2A HTTP+JSON on the router: `{id}:cancel` or `{id}:subscribe`.
#[utoipa::path(post, path = "/a2a/tasks/{id}", tag = "a2a", params(("id" = String, Path, description = "The task, with `:cancel` or `:subscribe` after it")),
    responses((status = 200, description = "Task, or text/event-stream"), (status = 400, description = "A2A error (google.rpc.Status)"),
              (status = 404, description = "A2A error (google.rpc.Status)")))]
pub async fn router_task_action(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Principal>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    rest_task_action(Call { ctx: &ctx, caller: &caller, interface: Interface::Router }, id, headers).await
}
