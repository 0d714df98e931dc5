//! The A2A operations, whatever the binding: a call on one interface (an
//! agent, or the router) by one caller.

use std::pin::Pin;
use std::time::Duration;

use futures::{Stream, StreamExt};
use serde_json::Value;

use super::super::problem::Problem;
use super::super::Ctx;
use crate::a2a::tasks::{self, A2A_SENDER, CANCELED};
use crate::a2a::wire::{
    ListTasksRequest, ListTasksResponse, Role, SendMessageRequest, StreamResponse, Task, TaskArtifactUpdateEvent,
    TaskQuery, TaskState, TaskStatus, TaskStatusUpdateEvent,
};
use crate::a2a::A2aError;
use crate::auth::Principal;
use crate::messaging::{unstreamed, AnswerEvent, MessageError, Relay, SendOutcome, SendRequest, Target, Unstreamed};
use crate::state::{Message, MessageKind, RecordReplies, RequestFilter, Scope};

/// Longest a blocking `SendMessage` waits for the answer before it returns
/// the task still working.
const BLOCKING_WAIT: Duration = Duration::from_secs(120);
const DEFAULT_PAGE: usize = 50;
const MAX_PAGE: usize = 100;

/// Which interface a call came in on.
#[derive(Debug, Clone)]
pub(super) enum Interface {
    Agent(String),
    /// The router: a message names a skill (a capability).
    Router,
}

/// One A2A call: the node, the caller, the interface.
pub(super) struct Call<'a> {
    pub(super) ctx: &'a Ctx,
    pub(super) caller: &'a Principal,
    pub(super) interface: Interface,
}

pub(super) type Events = Pin<Box<dyn Stream<Item = StreamResponse> + Send>>;

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
            if !known || !super::super::access::sees_agent_named(self.caller, queries, name).await? {
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
        super::super::messages::check_send(self.ctx, self.caller, &target, None, req.message.context_id.as_deref())
            .await?;
        Ok(SendRequest {
            sender: A2A_SENDER.into(),
            // A2A: the messageId lets the server spot a retried message.
            id: Some(req.message.message_id.clone()).filter(|id| !id.is_empty()),
            conversation_id: req.message.context_id.clone().filter(|c| !c.is_empty()),
            sent_by: Some(self.caller.name.to_string()),
            ..SendRequest::request(target, content)
        })
    }

    pub(super) async fn send(&self, req: SendMessageRequest) -> Result<StreamResponse, A2aError> {
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

    pub(super) async fn send_streaming(&self, req: SendMessageRequest) -> Result<Events, A2aError> {
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
                            let (text, append) = match unstreamed(&reply.content, &streamed) {
                                Unstreamed::Rest(rest) => (rest, !streamed.is_empty()),
                                Unstreamed::Whole(whole) => (whole, false),
                            };
                            yield artifact(text.to_owned(), append, true);
                        }
                        yield status(state, Some(tasks::agent_message(&request, &reply)));
                    }
                    AnswerEvent::Failed(why) => {
                        let message = tasks::message_of(&request, format!("{}.failed", request.id), Role::Agent, why);
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

    pub(super) async fn get_task(&self, q: TaskQuery) -> Result<Task, A2aError> {
        self.check_interface().await?;
        let request = self.visible(&q.id).await?;
        let reply = self.ctx.messages.reply_of(&q.id).await?;
        Ok(tasks::task_of(&request, reply.as_ref(), q.history_length))
    }

    pub(super) async fn cancel_task(&self, q: TaskQuery) -> Result<Task, A2aError> {
        self.check_interface().await?;
        let request = self.visible(&q.id).await?;
        let not_cancelable = |reply: &Message| {
            let state = tasks::state_of(&request, Some(reply));
            A2aError::TaskNotCancelable { id: q.id.clone(), state: state.as_str() }
        };
        if let Some(reply) = self.ctx.messages.reply_of(&q.id).await? {
            return Err(not_cancelable(&reply));
        }
        let span_id = crate::state::new_span_id();
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

    pub(super) async fn subscribe(&self, q: TaskQuery) -> Result<Events, A2aError> {
        self.check_interface().await?;
        let request = self.visible(&q.id).await?;
        if let Some(reply) = self.ctx.messages.reply_of(&q.id).await? {
            let state = tasks::state_of(&request, Some(&reply));
            return Err(A2aError::UnsupportedOperation(format!(
                "task `{}` is in terminal state {}: nothing more will happen",
                q.id,
                state.as_str()
            )));
        }
        self.follow(request).await
    }

    pub(super) async fn list_tasks(&self, q: ListTasksRequest) -> Result<ListTasksResponse, A2aError> {
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
