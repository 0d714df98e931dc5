//! `/v1/messages`, `/v1/conversations`, contract-net, and their SSE streams.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use axum::{Extension, Json};
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::access;
use super::problem::{Problem, ProblemType};
use super::Ctx;
use crate::auth::Principal;
use crate::messaging::{
    AnswerEvent, ContractNetOutcome, Conversation, Message, MessageKind, Relay, SendOutcome, SendRequest, Target,
};
use crate::state::StateEvent;

/// Longest a synchronous send may wait for its reply.
const MAX_SYNC_WAIT: Duration = crate::messaging::MAX_ANSWER_WAIT;

#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Wait for the reply (up to `timeout_ms`).
    #[default]
    Sync,
    /// Answer 202 as soon as the message is committed.
    Async,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendBody {
    /// Receiver agent name (or give `capability`).
    pub to: Option<String>,
    /// Any agent declaring this capability (see routing policy in the docs).
    pub capability: Option<String>,
    pub content: String,
    #[serde(default)]
    pub mode: Mode,
    /// Sync wait, default 120000.
    pub timeout_ms: Option<u64>,
    pub conversation_id: Option<String>,
    /// Client-chosen id: retrying a send with the same id is idempotent.
    pub id: Option<String>,
    pub sender: Option<String>,
    pub requirements: Option<String>,
    pub context: Option<String>,
    /// `request` (default) or `notification` (no reply expected).
    pub kind: Option<MessageKind>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Exchange {
    pub message: Message,
    pub reply: Option<Message>,
    /// A notification to a capability: one per agent declaring it
    /// (`message` is the first).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notified: Vec<Message>,
}

fn target(to: Option<String>, capability: Option<String>) -> Result<Target, Problem> {
    match (to, capability) {
        (Some(a), None) => Ok(Target::Agent(a)),
        (None, Some(c)) => Ok(Target::Capability(c)),
        _ => Err(Problem::bad_request("give exactly one of `to` (an agent name) or `capability`")),
    }
}

/// Send a message to an agent or a capability; wait for the reply or not.
#[utoipa::path(post, path = "/v1/messages", tag = "messages", request_body = SendBody,
    responses(
        (status = 200, description = "Answered (sync)", body = Exchange),
        (status = 202, description = "Committed; answer later (async)", body = Exchange),
        (status = 404, description = "No such agent, or no agent with the capability", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "Committed, but no reply within the wait", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn send(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Principal>,
    Json(body): Json<SendBody>,
) -> Result<impl IntoResponse, Problem> {
    let target = target(body.to, body.capability)?;
    check_send(&ctx, &caller, &target, body.sender.as_deref(), body.conversation_id.as_deref()).await?;
    let kind = body.kind.unwrap_or(MessageKind::Request);
    if !matches!(kind, MessageKind::Request | MessageKind::Notification) {
        return Err(Problem::bad_request("`kind` may be request or notification"));
    }
    let req = SendRequest {
        kind,
        sender: body.sender.unwrap_or_else(|| "user".into()),
        id: body.id,
        conversation_id: body.conversation_id,
        requirements: body.requirements,
        context: body.context,
        sent_by: Some(caller.name.to_string()),
        ..SendRequest::request(target, body.content)
    };
    if let (MessageKind::Notification, Target::Capability(capability)) = (kind, &req.target) {
        let capability = capability.clone();
        let notified = ctx.messages.notify_capability(req, &capability).await?;
        let Some(message) = notified.first().cloned() else {
            return Err(Problem::of(ProblemType::NoAgentForCapability, format!("no agent declares `{capability}`")));
        };
        return Ok((StatusCode::ACCEPTED, Json(Exchange { message, reply: None, notified })));
    }
    let wait = (body.mode == Mode::Sync && kind == MessageKind::Request)
        .then(|| Duration::from_millis(body.timeout_ms.unwrap_or(120_000)).min(MAX_SYNC_WAIT));
    Ok(match ctx.messages.send(req, wait).await? {
        SendOutcome::Answered { reply, .. } if reply.limit.is_some() => {
            let limit = reply.limit.clone().unwrap_or_default();
            let problem = Problem::of(ProblemType::AgentLimitReached, reply.content.clone());
            return Err(problem.with_extra(serde_json::json!({"agent": reply.sender, "limit": limit, "reply": reply})));
        }
        SendOutcome::Answered { request, reply } => {
            (StatusCode::OK, Json(Exchange { message: request, reply: Some(reply), notified: vec![] }))
        }
        SendOutcome::Accepted(message) => {
            (StatusCode::ACCEPTED, Json(Exchange { message, reply: None, notified: vec![] }))
        }
    })
}

/// What a limited key may send: to agents it sees, to a capability only
/// when it sees every agent serving it, as `user` or an agent it sees, and
/// into a conversation only if it sees that conversation.
pub(super) async fn check_send(
    ctx: &Ctx,
    caller: &Principal,
    target: &Target,
    sender: Option<&str>,
    conversation: Option<&str>,
) -> Result<(), Problem> {
    if !caller.is_limited() {
        return Ok(());
    }
    let queries = ctx.registry.queries();
    match target {
        Target::Agent(name) => {
            if !access::sees_agent_named(caller, queries, name).await? {
                return Err(crate::messaging::MessageError::UnknownAgent(name.clone()).into());
            }
        }
        Target::Capability(capability) => {
            let serving = queries.agents(Some(capability.clone()), None, 1000).await?;
            if !serving.iter().any(|a| access::sees_record(caller, a)) {
                return Err(Problem::of(
                    ProblemType::NoAgentForCapability,
                    format!("no agent declares capability `{capability}`"),
                ));
            }
            if !serving.iter().all(|a| access::sees_record(caller, a)) {
                return Err(access::outside(format!(
                    "capability `{capability}` is also served by agents outside the API key `{}`; send `to` one of yours",
                    caller.name
                )));
            }
        }
    }
    if let Some(sender) = sender.filter(|s| *s != "user") {
        if !access::sees_agent_named(caller, queries, sender).await? {
            return Err(access::outside(format!("the API key `{}` may not send as `{sender}`", caller.name)));
        }
    }
    if let Some(id) = conversation {
        if let Some(c) = ctx.messages.conversation(id).await? {
            if !sees_conversation(caller, ctx, &c).await? {
                return Err(access::outside(format!("conversation `{id}` is outside the API key `{}`", caller.name)));
            }
        }
    }
    Ok(())
}

/// A limited key sees a conversation when it sees every message in it.
async fn sees_conversation(caller: &Principal, ctx: &Ctx, c: &Conversation) -> Result<bool, Problem> {
    for m in &c.messages {
        if !access::sees_message(caller, ctx.registry.queries(), m).await? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The message, if the caller's key sees it; otherwise the same 404 as none.
async fn visible_message(ctx: &Ctx, caller: &Principal, id: &str) -> Result<Message, Problem> {
    let message = ctx.messages.get(id).await?;
    if caller.is_limited() && !access::sees_message(caller, ctx.registry.queries(), &message).await? {
        return Err(crate::messaging::MessageError::NotFound(id.to_owned()).into());
    }
    Ok(message)
}

/// The conversation, if it exists and the caller's key sees it.
async fn visible_conversation(ctx: &Ctx, caller: &Principal, id: &str) -> Result<Conversation, Problem> {
    let missing = || Problem::of(ProblemType::ConversationNotFound, format!("conversation `{id}` does not exist"));
    let c = ctx.messages.conversation(id).await?.ok_or_else(missing)?;
    if caller.is_limited() && !sees_conversation(caller, ctx, &c).await? {
        return Err(missing());
    }
    Ok(c)
}

/// A message and, for a request, its reply once there is one.
#[utoipa::path(get, path = "/v1/messages/{id}", tag = "messages", params(("id" = String, Path), super::agents::ReadParams),
    responses((status = 200, body = Exchange), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn get(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Principal>,
    Path(id): Path<String>,
    axum::extract::Query(read): axum::extract::Query<super::agents::ReadParams>,
) -> Result<Json<Exchange>, Problem> {
    super::agents::read_barrier(&ctx, &read).await?;
    let message = visible_message(&ctx, &caller, &id).await?;
    let reply = ctx.messages.reply_of(&id).await?;
    Ok(Json(Exchange { message, reply, notified: vec![] }))
}

type SseStream =
    Sse<axum::response::sse::KeepAliveStream<std::pin::Pin<Box<dyn Stream<Item = Result<Event, Infallible>> + Send>>>>;

fn json_event(name: &str, value: &impl Serialize) -> Event {
    Event::default().event(name).data(serde_json::to_string(value).unwrap_or_default())
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
pub struct StreamQuery {
    /// Serve from this node only: set by a node relaying the stream of an
    /// agent that runs here, so a relay is never relayed again.
    #[serde(default)]
    pub local: bool,
}

/// The answer's tokens as they are generated (`token` events), then the
/// committed reply (`reply`), or `error` if none could be read. A listener
/// who arrives late still gets every token from the first. Any node serves
/// it: a node that does not run the receiving agent relays the stream of
/// the node that does, and if that node goes away mid-stream, finishes with
/// the committed reply.
#[utoipa::path(get, path = "/v1/messages/{id}/stream", tag = "messages", params(("id" = String, Path), StreamQuery),
    responses((status = 200, description = "text/event-stream of `token` and `reply` events"), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn stream(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Principal>,
    Path(id): Path<String>,
    Query(q): Query<StreamQuery>,
) -> Result<SseStream, Problem> {
    if q.local {
        // A peer relays only a message it saw committed, which this node may
        // not have applied yet: without this it would answer 404 and the
        // peer's client would get the reply alone, without its tokens.
        ctx.cluster.linearizable().await?;
    }
    visible_message(&ctx, &caller, &id).await?;
    let relay = if q.local { Relay::LocalOnly } else { Relay::Allowed };
    let answer = ctx.messages.answer_stream(&id, relay).await?;
    let events = answer.map(|e| {
        Ok(match e {
            AnswerEvent::Token(t) => Event::default().event("token").data(t),
            AnswerEvent::Reply(reply) => json_event("reply", &reply),
            AnswerEvent::Failed(why) => Event::default().event("error").data(why),
        })
    });
    Ok(Sse::new(Box::pin(events) as std::pin::Pin<Box<dyn Stream<Item = _> + Send>>).keep_alive(KeepAlive::default()))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ConversationsQuery {
    /// `request_reply`, `contract_net` or `subscribe`.
    pub protocol: Option<crate::state::Protocol>,
    /// `initiated`, `in_progress`, `completed`, `failed` or `expired`.
    pub state: Option<crate::messaging::ConversationState>,
    /// An agent (or a sender such as `user`) that took part.
    pub participant: Option<String>,
    /// At most this many, newest first (default 100, at most 1000).
    pub limit: Option<usize>,
}

/// Conversations, newest first, by protocol, state and participant.
#[utoipa::path(get, path = "/v1/conversations", tag = "messages", params(ConversationsQuery),
    responses((status = 200, body = Vec<crate::state::ConversationRecord>)))]
pub async fn conversations(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Principal>,
    Query(q): Query<ConversationsQuery>,
) -> Result<Json<Vec<crate::state::ConversationRecord>>, Problem> {
    let filter = crate::state::ConversationFilter {
        protocol: q.protocol,
        state: q.state,
        participant: q.participant,
        limit: q.limit.unwrap_or(100).clamp(1, 1000),
    };
    let mut list = ctx.ledger.queries.conversations(filter).await?;
    if caller.is_limited() {
        let mut seen = Vec::with_capacity(list.len());
        for record in list {
            if let Some(c) = ctx.messages.conversation(&record.id).await? {
                if sees_conversation(&caller, &ctx, &c).await? {
                    seen.push(record);
                }
            }
        }
        list = seen;
    }
    Ok(Json(list))
}

/// A conversation: protocol, state and every message in order.
#[utoipa::path(get, path = "/v1/conversations/{id}", tag = "messages", params(("id" = String, Path)),
    responses((status = 200, body = Conversation), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn conversation(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Conversation>, Problem> {
    Ok(Json(visible_conversation(&ctx, &caller, &id).await?))
}

/// A conversation's messages as they are committed (`message` events),
/// starting with those already there.
#[utoipa::path(get, path = "/v1/conversations/{id}/stream", tag = "messages", params(("id" = String, Path)),
    responses((status = 200, description = "text/event-stream of `message` events"), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn conversation_stream(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<SseStream, Problem> {
    let mut events = ctx.ledger.subscribe();
    let existing = visible_conversation(&ctx, &caller, &id).await?;
    let messages = ctx.messages.clone();
    // A limited key is shown only the messages it sees (later ones included).
    let (caller, queries) = (caller.clone(), ctx.registry.queries().clone());
    let s = async_stream::stream! {
        let mut seen = std::collections::HashSet::new();
        for m in existing.messages {
            seen.insert(m.id.clone());
            yield Ok(json_event("message", &m));
        }
        loop {
            match events.recv().await {
                Ok(StateEvent::ConversationMessage { conversation_id, message_id }) if conversation_id == id => {
                    if seen.insert(message_id.clone()) {
                        if let Ok(m) = messages.get(&message_id).await {
                            if !caller.is_limited() || access::sees_message(&caller, &queries, &m).await.unwrap_or(false) {
                                yield Ok(json_event("message", &m));
                            }
                        }
                    }
                }
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    if let Ok(Some(c)) = messages.conversation(&id).await {
                        for m in c.messages {
                            if seen.insert(m.id.clone())
                                && (!caller.is_limited() || access::sees_message(&caller, &queries, &m).await.unwrap_or(false))
                            {
                                yield Ok(json_event("message", &m));
                            }
                        }
                    }
                }
                Err(_) => break,
            }
        }
    };
    Ok(Sse::new(Box::pin(s) as std::pin::Pin<Box<dyn Stream<Item = _> + Send>>).keep_alive(KeepAlive::default()))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContractNetBody {
    pub capability: String,
    pub task: String,
    /// How long proposals are collected (default 30000).
    pub deadline_ms: Option<u64>,
    /// How long the winner may take to deliver (default 120000).
    pub result_timeout_ms: Option<u64>,
}

/// Run a contract-net: call for proposals, award the best, return the result.
#[utoipa::path(post, path = "/v1/contract-net", tag = "messages", request_body = ContractNetBody,
    responses((status = 200, body = ContractNetOutcome), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn contract_net(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Principal>,
    Json(b): Json<ContractNetBody>,
) -> Result<Json<ContractNetOutcome>, Problem> {
    // Every agent with the capability is asked to bid: a limited key must see them all.
    check_send(&ctx, &caller, &Target::Capability(b.capability.clone()), None, None).await?;
    let deadline = Duration::from_millis(b.deadline_ms.unwrap_or(30_000)).min(MAX_SYNC_WAIT);
    let result_wait = Duration::from_millis(b.result_timeout_ms.unwrap_or(120_000)).min(MAX_SYNC_WAIT);
    Ok(Json(ctx.messages.contract_net(&b.capability, &b.task, deadline, result_wait).await?))
}
