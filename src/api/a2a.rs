//! A2A v1.0 over HTTP: every agent is an A2A agent at `/a2a/agents/{name}`
//! (JSON-RPC on the URL itself, HTTP+JSON below it), the node's router at
//! `/a2a`, their cards under `.well-known/agent-card.json`. A task is a
//! Caxton request (`a2a::tasks`); what a key may see and send is what
//! `/v1/messages` lets it.

use std::convert::Infallible;
use std::pin::Pin;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures::{Stream, StreamExt};
use serde_json::{json, Value};

use super::problem::Problem;
use super::Ctx;
use crate::a2a::card::{self, CardContext};
use crate::a2a::tasks::{self, A2A_SENDER, CANCELED};
use crate::a2a::wire::{
    ListTasksRequest, ListTasksResponse, Role, SendMessageRequest, StreamResponse, Task, TaskArtifactUpdateEvent,
    TaskQuery, TaskState, TaskStatus, TaskStatusUpdateEvent, VERSION,
};
use crate::a2a::A2aError;
use crate::auth::{Credential, Principal};
use crate::messaging::{AnswerEvent, MessageError, Relay, SendOutcome, SendRequest, Target};
use crate::state::{Message, MessageKind, RecordReplies, RequestFilter, Scope};

/// Longest a blocking `SendMessage` waits for the answer before it returns
/// the task still working.
const BLOCKING_WAIT: Duration = Duration::from_secs(120);
const DEFAULT_PAGE: usize = 50;
const MAX_PAGE: usize = 100;

/// Which interface a call came in on.
#[derive(Debug, Clone)]
enum Interface {
    Agent(String),
    /// The router: a message names a skill (a capability).
    Router,
}

/// One A2A call: the node, the caller, the interface.
struct Call<'a> {
    ctx: &'a Ctx,
    caller: &'a Principal,
    interface: Interface,
}

type Events = Pin<Box<dyn Stream<Item = StreamResponse> + Send>>;

fn caxton_error(p: Problem) -> A2aError {
    let problem = serde_json::to_value(&p).unwrap_or_default();
    let code = match p.status {
        400 | 404 | 409 | 413 | 415 | 422 => -32602,
        _ => -32603,
    };
    A2aError::Caxton { code, status: p.status, detail: p.detail, problem }
}

impl From<MessageError> for A2aError {
    fn from(e: MessageError) -> Self {
        match e {
            MessageError::NotFound(id) => A2aError::TaskNotFound(id),
            other => caxton_error(other.into()),
        }
    }
}

impl From<Problem> for A2aError {
    fn from(p: Problem) -> Self {
        caxton_error(p)
    }
}

/// The text a message carries: its text parts, and data parts as JSON.
fn text_of(message: &crate::a2a::wire::Message) -> Result<String, A2aError> {
    let mut texts = Vec::new();
    for (i, part) in message.parts.iter().enumerate() {
        match (&part.text, &part.data) {
            (Some(t), _) => texts.push(t.clone()),
            (None, Some(d)) => texts.push(d.to_string()),
            _ => {
                return Err(A2aError::ContentTypeNotSupported(format!(
                    "message.parts[{i}] is a file ({}): Caxton agents take text and data parts",
                    part.media_type.as_deref().unwrap_or("raw or url")
                )))
            }
        }
    }
    let text = texts.join("\n");
    if text.trim().is_empty() {
        return Err(A2aError::InvalidParams("message.parts holds no text".into()));
    }
    Ok(text)
}

/// The skill a message to the router names.
fn skill_of(req: &SendMessageRequest) -> Option<String> {
    [req.message.metadata.as_ref(), req.metadata.as_ref()]
        .into_iter()
        .flatten()
        .find_map(|m| m.get("skill").or_else(|| m.get("capability")).and_then(Value::as_str).map(str::to_owned))
}

impl Call<'_> {
    /// The agent this interface serves, if the caller may see it.
    async fn check_interface(&self) -> Result<(), A2aError> {
        if let Interface::Agent(name) = &self.interface {
            let queries = self.ctx.registry.queries();
            let known = match crate::config::AgentName::parse(name) {
                Ok(n) => queries.agent(&n).await.map_err(Problem::from)?.is_some(),
                Err(_) => false,
            };
            if !known || !super::access::sees_agent_named(self.caller, queries, name).await? {
                return Err(MessageError::UnknownAgent(name.clone()).into());
            }
        }
        Ok(())
    }

    fn target(&self, req: &SendMessageRequest) -> Result<Target, A2aError> {
        match &self.interface {
            Interface::Agent(name) => Ok(Target::Agent(name.clone())),
            Interface::Router => skill_of(req).map(Target::Capability).ok_or_else(|| {
                A2aError::InvalidParams(
                    "the router needs a skill: set message.metadata.skill to one of its card's skills".into(),
                )
            }),
        }
    }

    /// Checks a send and builds the Caxton request it becomes.
    async fn request(&self, req: &SendMessageRequest) -> Result<SendRequest, A2aError> {
        let config = req.configuration.clone().unwrap_or_default();
        if config.task_push_notification_config.is_some() || config.push_notification_config.is_some() {
            return Err(A2aError::PushNotificationNotSupported);
        }
        if !config.accepted_output_modes.is_empty()
            && !config.accepted_output_modes.iter().any(|m| m == "text/plain" || m == "text" || m == "*/*")
        {
            return Err(A2aError::ContentTypeNotSupported(format!(
                "the agent answers text/plain; the client accepts only {:?}",
                config.accepted_output_modes
            )));
        }
        let content = text_of(&req.message)?;
        if let Some(task) = &req.message.task_id {
            // Every task ends with the agent's one answer: nothing to continue.
            let existing = self.visible(task).await?;
            let state = tasks::state_of(&existing, self.ctx.messages.reply_of(task).await?.as_ref());
            return Err(A2aError::UnsupportedOperation(format!(
                "task `{task}` is {state:?} and takes no more input; send a new message with contextId `{}` \
                 to continue the conversation",
                existing.conversation_id
            )));
        }
        let target = self.target(req)?;
        super::messages::check_send(self.ctx, self.caller, &target, None, req.message.context_id.as_deref()).await?;
        Ok(SendRequest {
            sender: A2A_SENDER.into(),
            // A2A: the messageId lets the server spot a retried message.
            id: Some(req.message.message_id.clone()).filter(|id| !id.is_empty()),
            conversation_id: req.message.context_id.clone().filter(|c| !c.is_empty()),
            sent_by: Some(self.caller.name.to_string()),
            ..SendRequest::request(target, content)
        })
    }

    async fn send(&self, req: SendMessageRequest) -> Result<StreamResponse, A2aError> {
        self.check_interface().await?;
        let send = self.request(&req).await?;
        let config = req.configuration.clone().unwrap_or_default();
        let blocking = !config.return_immediately.unwrap_or(false) && config.blocking.unwrap_or(true);
        let history = config.history_length;
        let task = match self.ctx.messages.send(send, blocking.then_some(BLOCKING_WAIT)).await {
            Ok(SendOutcome::Answered { request, reply }) => tasks::task_of(&request, Some(&reply), history),
            Ok(SendOutcome::Accepted(request)) => tasks::task_of(&request, None, history),
            // Still working: the client polls it with GetTask.
            Err(MessageError::Timeout { id, .. }) => tasks::task_of(&self.ctx.messages.get(&id).await?, None, history),
            Err(e) => return Err(e.into()),
        };
        Ok(StreamResponse::Task(task))
    }

    async fn send_streaming(&self, req: SendMessageRequest) -> Result<Events, A2aError> {
        self.check_interface().await?;
        let send = self.request(&req).await?;
        let request = match self.ctx.messages.send(send, None).await? {
            SendOutcome::Accepted(m) | SendOutcome::Answered { request: m, .. } => m,
        };
        self.follow(request).await
    }

    /// The task's events from now: the task, then its progress, ending at
    /// a terminal state.
    async fn follow(&self, request: Message) -> Result<Events, A2aError> {
        let answer = self.ctx.messages.answer_stream(&request.id, Relay::Allowed).await?;
        let first = StreamResponse::Task(tasks::task_of(&request, None, None));
        let (task_id, context_id) = (request.id.clone(), request.conversation_id.clone());
        let status = move |state: TaskState, message: Option<crate::a2a::wire::Message>| {
            StreamResponse::StatusUpdate(TaskStatusUpdateEvent {
                task_id: task_id.clone(),
                context_id: context_id.clone(),
                status: TaskStatus { state, message, timestamp: Some(tasks::timestamp(crate::time::now_ms())) },
            })
        };
        let (task_id, context_id) = (request.id.clone(), request.conversation_id.clone());
        let artifact = move |text: String, append: bool, last_chunk: bool| {
            StreamResponse::ArtifactUpdate(TaskArtifactUpdateEvent {
                task_id: task_id.clone(),
                context_id: context_id.clone(),
                artifact: tasks::answer_artifact(text),
                append,
                last_chunk,
            })
        };
        let events = async_stream::stream! {
            yield first;
            let mut answer = answer;
            let mut streamed = String::new();
            while let Some(event) = answer.next().await {
                match event {
                    AnswerEvent::Token(t) => {
                        if streamed.is_empty() {
                            yield status(TaskState::Working, None);
                        }
                        let append = !streamed.is_empty();
                        streamed.push_str(&t);
                        yield artifact(t, append, false);
                    }
                    AnswerEvent::Reply(reply) => {
                        let state = tasks::state_of(&request, Some(&reply));
                        if reply.kind == MessageKind::Response {
                            // What the tokens did not carry (the replay buffer's
                            // overflow, or a different answer after a crash).
                            let (rest, append) = match reply.content.strip_prefix(streamed.as_str()) {
                                Some(rest) => (rest.to_owned(), !streamed.is_empty()),
                                None => (reply.content.clone(), false),
                            };
                            yield artifact(rest, append, true);
                        }
                        yield status(state, Some(tasks::agent_message(&request, &reply)));
                    }
                    AnswerEvent::Failed(why) => {
                        let mut message = tasks::user_message(&request);
                        (message.role, message.message_id) = (Role::Agent, format!("{}.failed", request.id));
                        message.parts = vec![crate::a2a::wire::Part::text(why)];
                        yield status(TaskState::Failed, Some(message));
                    }
                }
            }
        };
        Ok(Box::pin(events))
    }

    /// The request behind task `id`, if the caller may see it.
    async fn visible(&self, id: &str) -> Result<Message, A2aError> {
        let missing = || A2aError::TaskNotFound(id.to_owned());
        let message = self.ctx.messages.get(id).await.map_err(|_| missing())?;
        if message.kind != MessageKind::Request || message.sender != A2A_SENDER || !self.owns(&message) {
            return Err(missing());
        }
        if let Interface::Agent(name) = &self.interface {
            if !message.receiver.eq_ignore_ascii_case(name) {
                return Err(missing());
            }
        }
        Ok(message)
    }

    /// A key sees the tasks it created; an admin sees every task.
    fn owns(&self, message: &Message) -> bool {
        self.caller.has(Scope::Admin) || message.sent_by.as_deref() == Some(&*self.caller.name)
    }

    async fn get_task(&self, q: TaskQuery) -> Result<Task, A2aError> {
        self.check_interface().await?;
        let request = self.visible(&q.id).await?;
        let reply = self.ctx.messages.reply_of(&q.id).await?;
        Ok(tasks::task_of(&request, reply.as_ref(), q.history_length))
    }

    async fn cancel_task(&self, q: TaskQuery) -> Result<Task, A2aError> {
        self.check_interface().await?;
        let request = self.visible(&q.id).await?;
        let not_cancelable = |reply: &Message| {
            let state = tasks::state_of(&request, Some(reply));
            A2aError::TaskNotCancelable { id: q.id.clone(), state: state_name(state) }
        };
        if let Some(reply) = self.ctx.messages.reply_of(&q.id).await? {
            return Err(not_cancelable(&reply));
        }
        let span_id = uuid::Uuid::new_v4().simple().to_string()[..16].to_owned();
        let content = format!("canceled by `{}` over A2A", self.caller.name);
        let reply = Message {
            failure: Some(CANCELED.into()),
            ..request.reply(MessageKind::Error, request.receiver.clone(), content, span_id, crate::time::now_ms())
        };
        let recorded = self
            .ctx
            .ledger
            .store
            .propose(RecordReplies { replies: vec![reply.clone()] })
            .await
            .map_err(|e| A2aError::from(Problem::from(e)))?;
        if recorded.first() != Some(&true) {
            // The agent answered first.
            let answered = self.ctx.messages.reply_of(&q.id).await?.unwrap_or(reply);
            return Err(not_cancelable(&answered));
        }
        Ok(tasks::task_of(&request, Some(&reply), q.history_length))
    }

    async fn subscribe(&self, q: TaskQuery) -> Result<Events, A2aError> {
        self.check_interface().await?;
        let request = self.visible(&q.id).await?;
        if let Some(reply) = self.ctx.messages.reply_of(&q.id).await? {
            let state = tasks::state_of(&request, Some(&reply));
            return Err(A2aError::UnsupportedOperation(format!(
                "task `{}` is in terminal state {}: nothing more will happen",
                q.id,
                state_name(state)
            )));
        }
        self.follow(request).await
    }

    async fn list_tasks(&self, q: ListTasksRequest) -> Result<ListTasksResponse, A2aError> {
        self.check_interface().await?;
        let page_size = match q.page_size {
            None | Some(0) => DEFAULT_PAGE,
            Some(n) if n < 0 => return Err(A2aError::InvalidParams(format!("pageSize {n} is negative"))),
            Some(n) => (n as usize).min(MAX_PAGE),
        };
        let before = match q.page_token.as_deref().filter(|t| !t.is_empty()) {
            Some(token) => Some(
                parse_token(token)
                    .ok_or_else(|| A2aError::InvalidParams(format!("pageToken `{token}` is not ours")))?,
            ),
            None => None,
        };
        let filter = RequestFilter {
            sender: A2A_SENDER.into(),
            sent_by: (!self.caller.has(Scope::Admin)).then(|| self.caller.name.to_string()),
            context: q.context_id.clone().filter(|c| !c.is_empty()),
            receiver: match &self.interface {
                Interface::Agent(name) => Some(name.clone()),
                Interface::Router => None,
            },
            before,
            limit: page_size,
        };
        let (requests, total) = self.ctx.ledger.queries.requests_from(filter).await.map_err(Problem::from)?;
        let next_page_token = match requests.last() {
            Some(last) if requests.len() == page_size => page_token(last),
            _ => String::new(),
        };
        let mut out = Vec::with_capacity(requests.len());
        for request in &requests {
            let reply = self.ctx.messages.reply_of(&request.id).await?;
            let mut task = tasks::task_of(request, reply.as_ref(), q.history_length);
            if q.status.is_some_and(|s| s != task.status.state) {
                continue;
            }
            if !q.include_artifacts.unwrap_or(false) {
                task.artifacts.clear();
            }
            out.push(task);
        }
        Ok(ListTasksResponse { tasks: out, next_page_token, page_size: page_size as i32, total_size: total as i32 })
    }
}

fn state_name(state: TaskState) -> &'static str {
    match state {
        TaskState::Submitted => "TASK_STATE_SUBMITTED",
        TaskState::Working => "TASK_STATE_WORKING",
        TaskState::Completed => "TASK_STATE_COMPLETED",
        TaskState::Failed => "TASK_STATE_FAILED",
        TaskState::Canceled => "TASK_STATE_CANCELED",
        TaskState::InputRequired => "TASK_STATE_INPUT_REQUIRED",
        TaskState::Rejected => "TASK_STATE_REJECTED",
        TaskState::AuthRequired => "TASK_STATE_AUTH_REQUIRED",
    }
}

fn page_token(last: &Message) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{}:{}", last.created_at_ms, last.id))
}

fn parse_token(token: &str) -> Option<(i64, String)> {
    use base64::Engine;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token).ok()?;
    let (at, id) = std::str::from_utf8(&raw).ok()?.split_once(':')?;
    Some((at.parse().ok()?, id.to_owned()))
}

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

// ---- JSON-RPC ----

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

fn sse(frames: impl Stream<Item = Result<Event, Infallible>> + Send + 'static) -> Response {
    Sse::new(Box::pin(frames) as Pin<Box<dyn Stream<Item = Result<Event, Infallible>> + Send>>)
        .keep_alive(KeepAlive::default())
        .into_response()
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

// ---- HTTP+JSON ----

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

// ---- Cards ----

/// `scheme://host` as the caller reached this node.
fn base_url(ctx: &Ctx, headers: &HeaderMap) -> String {
    let host = headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or("localhost");
    let scheme = headers.get("x-forwarded-proto").and_then(|h| h.to_str().ok()).unwrap_or(if ctx.https {
        "https"
    } else {
        "http"
    });
    format!("{scheme}://{host}")
}

fn card_response(card: Value) -> Response {
    let mut response = Json(card).into_response();
    // Cards change when agents do: cache briefly.
    response.headers_mut().insert("cache-control", HeaderValue::from_static("private, max-age=30"));
    versioned(response)
}

/// An agent's A2A card.
#[utoipa::path(get, path = "/a2a/agents/{name}/.well-known/agent-card.json", tag = "a2a",
    params(("name" = String, Path, description = "The agent")),
    responses((status = 200, description = "AgentCard (A2A v1.0)")))]
pub async fn agent_card(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Principal>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let missing = || Problem::from(MessageError::UnknownAgent(name.clone()));
    let agent_name = crate::config::AgentName::parse(&name).map_err(|_| missing())?;
    let record = ctx.registry.queries().agent(&agent_name).await?.ok_or_else(missing)?;
    if !super::access::sees_record(&caller, &record) {
        return Err(missing());
    }
    let base = base_url(&ctx, &headers);
    let cx = CardContext { base_url: &base, keys_required: caller.credential != Credential::Dev };
    Ok(card_response(card::agent_card(&cx, &record)))
}

/// The node's A2A card: a router whose skills are the capabilities.
#[utoipa::path(get, path = "/.well-known/agent-card.json", tag = "a2a",
    responses((status = 200, description = "AgentCard (A2A v1.0)")))]
pub async fn router_card(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Principal>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let mut capabilities: Vec<String> = ctx
        .registry
        .queries()
        .all_agents()
        .await?
        .into_iter()
        .filter(|a| super::access::sees_record(&caller, a))
        .flat_map(|a| a.spec.capabilities)
        .collect();
    capabilities.sort();
    capabilities.dedup();
    let base = base_url(&ctx, &headers);
    let cx = CardContext { base_url: &base, keys_required: caller.credential != Credential::Dev };
    Ok(card_response(card::router_card(&cx, &capabilities)))
}
