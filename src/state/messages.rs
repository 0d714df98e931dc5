//! Messages and conversations: the records the replica keeps (shared by the
//! API, the runtime and the state machine), the commands that change them,
//! and the reads over them.

use std::collections::HashMap;

use caxton_cluster::ReadError;
use rusqlite::{params, OptionalExtension, Transaction};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::envelope::{AcceptOutcome, ApplyCtx, Attempt, Proposal, Response};
use super::events::StateEvent;
use super::queries::Queries;
use super::schema::spelled;
use crate::config::AgentName;
use crate::llm::ChatMessage;
use caxton_cluster::CachedSql;

/// Public JSON (and the log, since v2) spells every enum value in
/// snake_case; the aliases read what v1 wrote. The replica's SQL columns keep
/// their own spelling (`as_str`), which is the storage format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    #[serde(alias = "Request")]
    Request,
    #[serde(alias = "Response")]
    Response,
    #[serde(alias = "Notification")]
    Notification,
    #[serde(alias = "Error")]
    Error,
}

impl MessageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Request => "Request",
            Self::Response => "Response",
            Self::Notification => "Notification",
            Self::Error => "Error",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "Request" => Some(Self::Request),
            "Response" => Some(Self::Response),
            "Notification" => Some(Self::Notification),
            "Error" => Some(Self::Error),
            _ => None,
        }
    }
}

/// Where a request stands. Only `Accepted` messages are waiting for work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MessageStatus {
    Accepted,
    Answered,
    Failed,
    /// Its processing was started `server.max_message_attempts` times
    /// without an answer (the node crashed, or the reply could not be
    /// committed): answered with an error and never run again.
    DeadLettered,
    /// Responses, errors and undelivered notifications: nothing left to do.
    Final,
    /// A delivered notification whose turn ran (`failure` says if it failed).
    Processed,
}

impl MessageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Answered => "answered",
            Self::Failed => "failed",
            Self::DeadLettered => "dead_lettered",
            Self::Final => "final",
            Self::Processed => "processed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "accepted" => Some(Self::Accepted),
            "answered" => Some(Self::Answered),
            "failed" => Some(Self::Failed),
            "dead_lettered" => Some(Self::DeadLettered),
            "final" => Some(Self::Final),
            "processed" => Some(Self::Processed),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConversationState {
    #[serde(alias = "Initiated")]
    Initiated,
    #[serde(alias = "InProgress")]
    InProgress,
    #[serde(alias = "Completed")]
    Completed,
    #[serde(alias = "Failed")]
    Failed,
    #[serde(alias = "Expired")]
    Expired,
}

impl ConversationState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Initiated => "Initiated",
            Self::InProgress => "InProgress",
            Self::Completed => "Completed",
            Self::Failed => "Failed",
            Self::Expired => "Expired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "Initiated" => Some(Self::Initiated),
            "InProgress" => Some(Self::InProgress),
            "Completed" => Some(Self::Completed),
            "Failed" => Some(Self::Failed),
            "Expired" => Some(Self::Expired),
            _ => None,
        }
    }
}

/// A message as stored and returned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Message {
    pub id: String,
    pub kind: MessageKind,
    /// Agent name, or `user` / a client label for messages from outside.
    pub sender: String,
    /// The agent that handles it (resolved from a capability if one was given).
    pub receiver: String,
    /// The capability the sender addressed, if any.
    pub capability: Option<String>,
    pub conversation_id: String,
    pub reply_to: Option<String>,
    pub content: String,
    pub requirements: Option<String>,
    pub context: Option<String>,
    /// Earlier turns supplied by the caller (OpenAI-style clients send them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<Object>)]
    pub history: Vec<ChatMessage>,
    pub trace_id: String,
    pub span_id: String,
    /// The sending span was traced but not sampled: the owner's spans
    /// follow that decision instead of starting traces of their own.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub trace_unsampled: bool,
    /// How many agent-to-agent hops led here (loop protection).
    pub hop: u32,
    pub created_at_ms: i64,
    pub status: MessageStatus,
    /// For requests: the reply once recorded.
    pub reply_id: Option<String>,
    /// The agent revision serving this request (chosen when it is
    /// committed; sent as `NAME@N` it is pinned), or that served the
    /// request this replies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
    /// On a reply: how the request ended, for rollout analysis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served: Option<Served>,
    /// On a request: the retried deliveries recorded before processing
    /// (`RecordAttempt`); the first delivery is not recorded.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub attempts: u32,
    /// The API key that sent it, when a client did: the owner of its id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_by: Option<String>,
    /// A notification its receiver processes (a turn that is never
    /// answered). Set only once every voter advertises
    /// [`DELIVER_NOTIFICATIONS`]: a notification committed without it is
    /// stored `final` as before, so older log entries apply unchanged.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deliver: bool,
    /// On a publication's notification: the topic it was published to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// On a processed notification whose turn failed: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// On a reply: what its turn used (counted against the agent's daily
    /// limits when the reply is recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<TurnUsage>,
    /// On an error reply: the agent limit that stopped the turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<String>,
    /// On a request: sampling parameters its client set (the
    /// OpenAI-compatible door's); the agent's provider settings otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampling: Option<crate::llm::Sampling>,
    /// On a reply: the tools its turn called, in order, so a client can
    /// show what the turn did (memory writes, messages to other agents).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCallRecord>,
}

/// One tool call of a turn, as its reply records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ToolCallRecord {
    pub name: String,
    /// The arguments the model gave, as JSON text cut to
    /// [`ToolCallRecord::MAX_ARGUMENTS`] bytes.
    pub arguments: String,
    /// Whether the call answered (a refused or failed call is `false`).
    pub ok: bool,
}

impl ToolCallRecord {
    pub const MAX_ARGUMENTS: usize = 512;

    pub fn new(name: &str, arguments: &serde_json::Value, ok: bool) -> Self {
        let mut arguments = arguments.to_string();
        if arguments.len() > Self::MAX_ARGUMENTS {
            let mut cut = Self::MAX_ARGUMENTS;
            while !arguments.is_char_boundary(cut) {
                cut -= 1;
            }
            arguments.truncate(cut);
            arguments.push('…');
        }
        Self { name: name.to_owned(), arguments, ok }
    }
}

/// Which requests [`Queries::requests_from`] lists.
#[derive(Debug, Clone, Default)]
pub struct RequestFilter {
    pub sender: String,
    pub sent_by: Option<String>,
    pub context: Option<String>,
    pub receiver: Option<String>,
    /// Only those older than this `(created_at_ms, id)`.
    pub before: Option<(i64, String)>,
    pub limit: usize,
}

/// A fresh span id (16 hex digits) for a message a node writes itself.
pub fn new_span_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..16].to_owned()
}

/// What one turn used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TurnUsage {
    /// Prompt and completion tokens over every model call.
    pub tokens: u64,
    /// Estimated cost in millionths of a USD (priced providers only).
    pub spend_micro_usd: u64,
    pub tool_calls: u32,
    /// Of `tokens`: those of the prompts and of the completions.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub input_tokens: u64,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub output_tokens: u64,
    /// The answer's last model call was cut at its token limit
    /// (OpenAI's `finish_reason: "length"`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

/// An agent's usage of one UTC day, as replicated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, ToSchema)]
pub struct DayUsage {
    /// Days since 1970-01-01 (UTC).
    pub day: i64,
    pub tokens: u64,
    pub spend_usd: f64,
    pub turns: u64,
}

/// The UTC day a time falls on.
pub fn day_of(at_ms: i64) -> i64 {
    at_ms.div_euclid(86_400_000)
}

/// Adds a recorded turn's usage to its agent's day.
fn count_usage(
    tx: &Transaction<'_>,
    agent: &str,
    outcome: &Message,
    stage: &mut Vec<StateEvent>,
) -> rusqlite::Result<()> {
    let usage = outcome.usage.unwrap_or_default();
    tx.exec(
        "INSERT INTO agent_usage(name_key, day, tokens, spend_micro_usd, turns) VALUES (?1, ?2, ?3, ?4, 1)
         ON CONFLICT(name_key, day) DO UPDATE SET tokens = tokens + excluded.tokens,
           spend_micro_usd = spend_micro_usd + excluded.spend_micro_usd, turns = turns + 1",
        params![
            agent.to_ascii_lowercase(),
            day_of(outcome.created_at_ms),
            usage.tokens as i64,
            usage.spend_micro_usd as i64
        ],
    )?;
    if let Some(limit) = &outcome.limit {
        stage.push(StateEvent::LimitReached { agent: agent.to_owned(), limit: limit.clone() });
    }
    Ok(())
}

/// The feature a voter advertises when it keeps a reply's `tool_calls`
/// (an older node would drop them from its copy, and the replicas would
/// differ): replies carry them only once every voter does.
pub const REPLY_TOOL_CALLS: &str = "ReplyToolCalls";

/// The feature a voter advertises when it delivers notifications and
/// applies topic commands (`Subscribe`, `Unsubscribe`, `Publish`).
pub const DELIVER_NOTIFICATIONS: &str = "Notifications";

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}

/// Suffix of the ids replies get (`{request}-reply`): clients may not
/// choose ids in it.
pub const REPLY_SUFFIX: &str = "-reply";

/// What a message carries that its sender chose the size of.
pub fn payload_bytes(
    content: &str,
    context: &Option<String>,
    requirements: &Option<String>,
    history: &[ChatMessage],
) -> usize {
    let optional = |s: &Option<String>| s.as_ref().map_or(0, String::len);
    content.len() + optional(context) + optional(requirements) + history.iter().map(|m| m.content.len()).sum::<usize>()
}

impl Message {
    /// The reply to this request from `sender`: its id is derived from the
    /// request's (a re-processed request gets the same one, and
    /// `RecordReplies` keeps the first), and it stays in the request's
    /// conversation, trace and revision.
    pub fn reply(&self, kind: MessageKind, sender: String, content: String, span_id: String, at_ms: i64) -> Message {
        Message {
            id: format!("{}{REPLY_SUFFIX}", self.id),
            kind,
            sender,
            receiver: self.sender.clone(),
            capability: None,
            conversation_id: self.conversation_id.clone(),
            reply_to: Some(self.id.clone()),
            content,
            requirements: None,
            context: None,
            history: vec![],
            trace_id: self.trace_id.clone(),
            span_id,
            hop: self.hop,
            created_at_ms: at_ms,
            status: MessageStatus::Final,
            reply_id: None,
            revision: self.revision,
            served: None,
            trace_unsampled: self.trace_unsampled,
            attempts: 0,
            sent_by: None,
            deliver: false,
            topic: None,
            failure: None,
            usage: None,
            limit: None,
            sampling: None,
            tool_calls: Vec::new(),
        }
    }

    /// The bytes its sender chose: what batches are cut by.
    pub fn payload_bytes(&self) -> usize {
        payload_bytes(&self.content, &self.context, &self.requirements, &self.history)
    }

    /// The sender's trace as this message carries it: `Some(sampled)` when
    /// its ids are W3C ids, `None` when it is untraced (they are a request
    /// id: export was off where it was sent).
    pub fn w3c_sampled(&self) -> Option<bool> {
        caxton_cluster::trace_context::is_w3c(&self.trace_id, &self.span_id).then_some(!self.trace_unsampled)
    }
}

/// How a request was served, carried by its reply.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Served {
    pub outcome: super::rollout_record::ServedOutcome,
    /// Processing time on the node that ran the agent.
    pub took_ms: u64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ConversationRecord {
    pub id: String,
    pub protocol: Protocol,
    pub state: ConversationState,
    pub initiator: String,
    /// Who took part: the initiator, then every sender and receiver of its
    /// messages, in the order they first appear.
    pub participants: Vec<String>,
    pub detail: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    /// Past this, an unfinished conversation reads `expired` and takes no
    /// further messages (auctions and negotiations have one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<i64>,
}

impl ConversationRecord {
    /// Whether it is over by the clock although no one closed it.
    pub fn lapsed(&self, now_ms: i64) -> bool {
        matches!(self.state, ConversationState::Initiated | ConversationState::InProgress)
            && self.expires_at_ms.is_some_and(|at| now_ms >= at)
    }
}

/// How a conversation's messages relate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// A request and its reply (every message that names no protocol).
    RequestReply,
    /// A call for proposals, bids, an award and a result.
    ContractNet,
    /// An agent's subscription to a topic pattern: open until cancelled;
    /// its publications arrive in it as notifications.
    Subscribe,
    /// An English or sealed-bid auction (`state/auctions.rs`).
    Auction,
    /// Alternating offers between parties (`state/negotiations.rs`).
    Negotiation,
}

impl Protocol {
    /// The spelling in the log and the replica's tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RequestReply => "request-reply",
            Self::ContractNet => "contract-net",
            Self::Subscribe => "subscribe",
            Self::Auction => "auction",
            Self::Negotiation => "negotiation",
        }
    }

    /// Reads the stored spelling.
    pub fn parse(stored: &str) -> Option<Self> {
        [Self::RequestReply, Self::ContractNet, Self::Subscribe, Self::Auction, Self::Negotiation]
            .into_iter()
            .find(|p| p.as_str() == stored)
    }
}

/// Messages entering the system: the durability point of a send.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AcceptMessages {
    pub messages: Vec<Message>,
}

impl Proposal for AcceptMessages {
    /// One outcome per message, in order.
    type Output = Vec<AcceptOutcome>;
    const NAME: &'static str = "AcceptMessages";
    fn output(r: Response) -> Result<Vec<AcceptOutcome>, Response> {
        match r {
            Response::Accepted(outcomes) => Ok(outcomes),
            other => Err(other),
        }
    }
}

impl AcceptMessages {
    pub(crate) fn apply(self, ctx: &mut ApplyCtx<'_, '_>) -> rusqlite::Result<Response> {
        accept(ctx.tx, ctx.index, self.messages, ctx.stage)
    }
}

/// Answers to accepted requests; an answer to an already answered request
/// is ignored, which makes processing at-least-once but answering
/// exactly-once.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecordReplies {
    pub replies: Vec<Message>,
}

impl Proposal for RecordReplies {
    /// Per reply: recorded (true), or its request was already answered.
    type Output = Vec<bool>;
    const NAME: &'static str = "RecordReplies";
    fn output(r: Response) -> Result<Vec<bool>, Response> {
        match r {
            Response::Recorded(recorded) => Ok(recorded),
            other => Err(other),
        }
    }
}

impl RecordReplies {
    pub(crate) fn apply(self, ctx: &mut ApplyCtx<'_, '_>) -> rusqlite::Result<Response> {
        record_replies(ctx.tx, ctx.index, self.replies, ctx.stage)
    }
}

/// A retried delivery of an accepted request, recorded before it runs: a
/// request that took its node down is not run forever. The attempt that
/// would be the `max_attempts`-th dead-letters the request instead: it is
/// answered with an error (`{id}-reply`) and never delivered again.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecordAttempt {
    pub id: String,
    pub max_attempts: u32,
    pub at_ms: i64,
}

/// An accepted request still waiting for its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub id: String,
    pub receiver: String,
    /// The log index it was committed at.
    pub seq: u64,
}

impl Proposal for RecordAttempt {
    type Output = Attempt;
    const NAME: &'static str = "RecordAttempt";
    const FEATURE: Option<&'static str> = Some("RecordAttempt");
    fn output(r: Response) -> Result<Attempt, Response> {
        match r {
            Response::Attempt(a) => Ok(a),
            other => Err(other),
        }
    }
}

impl RecordAttempt {
    pub(crate) fn apply(self, ctx: &mut ApplyCtx<'_, '_>) -> rusqlite::Result<Response> {
        record_attempt(ctx.tx, ctx.index, self, ctx.stage)
    }
}

fn record_attempt(
    tx: &Transaction<'_>,
    index: u64,
    cmd: RecordAttempt,
    stage: &mut Vec<StateEvent>,
) -> rusqlite::Result<Response> {
    let row: Option<(String, String)> = tx
        .row("SELECT status, body FROM messages WHERE id = ?1", [&cmd.id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((status, body)) = row else { return Ok(Response::Attempt(Attempt::Closed)) };
    if status != MessageStatus::Accepted.as_str() {
        return Ok(Response::Attempt(Attempt::Closed));
    }
    let mut request = parse_body(body)?;
    // The first delivery is not recorded: recorded retries + 1 have started.
    let started = request.attempts.saturating_add(1);
    if started < cmd.max_attempts.max(1) {
        request.attempts += 1;
        let body = serde_json::to_string(&request).expect("message serializes");
        tx.exec("UPDATE messages SET body = ?2 WHERE id = ?1", params![cmd.id, body])?;
        return Ok(Response::Attempt(Attempt::Run(request.attempts + 1)));
    }
    let content = format!(
        "dead-lettered: processing of message `{}` was started {started} times without an answer \
         (server.max_message_attempts = {}); it will not be run again",
        request.id, cmd.max_attempts
    );
    let sender = request.receiver.clone();
    let reply = request.reply(MessageKind::Error, sender, content, request.span_id.clone(), cmd.at_ms);
    let replied = record_replies(tx, index, vec![reply], stage)?;
    if replied != Response::Recorded(vec![true]) {
        return Ok(Response::Attempt(Attempt::Closed));
    }
    // record_replies marked it failed; a dead letter says why it failed.
    let body: String = tx.row("SELECT body FROM messages WHERE id = ?1", [&cmd.id], |r| r.get(0))?;
    let mut request = parse_body(body)?;
    request.status = MessageStatus::DeadLettered;
    request.attempts = started;
    tx.exec(
        "UPDATE messages SET status = ?2, body = ?3 WHERE id = ?1",
        params![
            cmd.id,
            MessageStatus::DeadLettered.as_str(),
            serde_json::to_string(&request).expect("message serializes")
        ],
    )?;
    Ok(Response::Attempt(Attempt::DeadLettered))
}

/// A protocol conversation's state (contract-net).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SetConversation {
    pub id: String,
    pub protocol: String,
    pub state: ConversationState,
    pub detail: Option<String>,
    pub at_ms: i64,
}

impl Proposal for SetConversation {
    type Output = ();
    const NAME: &'static str = "SetConversation";
    fn output(r: Response) -> Result<(), Response> {
        match r {
            Response::Done => Ok(()),
            other => Err(other),
        }
    }
}

impl SetConversation {
    pub(crate) fn apply(self, ctx: &mut ApplyCtx<'_, '_>) -> rusqlite::Result<Response> {
        set_conversation(ctx.tx, &self.id, &self.protocol, self.state, self.detail, self.at_ms, ctx.stage)
    }
}

/// One span for applying an entry's messages on this replica, if any of
/// them is traced: the child of the first traced message's sending span and
/// linked to the others' (OpenTelemetry's model of processing a batch).
/// None for untraced ones (their ids are a request id, not W3C ids), so
/// applying costs nothing extra when export is off. A span per message
/// would add a quarter of the spans a message costs, to time one insert.
fn apply_span(messages: &[Message], index: u64) -> tracing::Span {
    let mut traced = messages.iter().filter(|m| m.w3c_sampled() == Some(true));
    let Some(first) = traced.next() else { return tracing::Span::none() };
    let span = tracing::info_span!(
        "raft apply",
        otel.kind = "internal",
        raft.log_index = index,
        messaging.message.id = %first.id,
        messaging.batch.message_count = messages.len()
    );
    caxton_cluster::trace_context::continue_trace(&span, &first.trace_id, &first.span_id);
    for m in traced {
        caxton_cluster::trace_context::link(&span, &m.trace_id, &m.span_id);
    }
    span
}

/// The message columns that are queried; everything else lives in `body`.
pub(crate) fn insert_message(tx: &Transaction<'_>, m: &Message, seq: u64) -> rusqlite::Result<()> {
    let body = serde_json::to_string(m).expect("message serializes");
    tx.prepare_cached("INSERT INTO messages(id, kind, sender, receiver, receiver_key, capability, conversation_id, reply_to, body, status, reply_id, created_at, seq)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)")?.execute(
        params![
            m.id,
            m.kind.as_str(),
            m.sender,
            m.receiver,
            m.receiver.to_ascii_lowercase(),
            m.capability,
            m.conversation_id,
            m.reply_to,
            body,
            m.status.as_str(),
            m.reply_id,
            m.created_at_ms,
            seq
        ],
    )?;
    Ok(())
}

fn touch_conversation(tx: &Transaction<'_>, m: &Message) -> rusqlite::Result<bool> {
    let inserted = tx.prepare_cached("INSERT OR IGNORE INTO conversations(id, protocol, state, initiator, created_at, updated_at) VALUES (?1, 'request-reply', ?2, ?3, ?4, ?4)")?.execute(
        params![m.conversation_id, ConversationState::InProgress.as_str(), m.sender, m.created_at_ms],
    )?;
    if inserted == 0 {
        tx.prepare_cached("UPDATE conversations SET updated_at = ?2, state = CASE WHEN protocol = 'request-reply' THEN ?3 ELSE state END WHERE id = ?1")?.execute(
            params![m.conversation_id, m.created_at_ms, ConversationState::InProgress.as_str()],
        )?;
    }
    Ok(inserted > 0)
}

pub(super) fn accept(
    tx: &Transaction<'_>,
    index: u64,
    messages: Vec<Message>,
    stage: &mut Vec<StateEvent>,
) -> rusqlite::Result<Response> {
    let mut outcomes = Vec::with_capacity(messages.len());
    let _apply = apply_span(&messages, index).entered();
    for mut m in messages {
        let exists: bool = tx
            .prepare_cached("SELECT 1 FROM messages WHERE id = ?1")?
            .query_row([&m.id], |_| Ok(true))
            .optional()?
            .unwrap_or(false);
        if exists {
            outcomes.push(AcceptOutcome::Duplicate);
            continue;
        }
        let deployed: bool = tx
            .prepare_cached("SELECT 1 FROM agents WHERE name_key = ?1")?
            .query_row([m.receiver.to_ascii_lowercase()], |_| Ok(true))
            .optional()?
            .unwrap_or(false);
        if !deployed {
            outcomes.push(AcceptOutcome::UnknownReceiver);
            continue;
        }
        let key = m.receiver.to_ascii_lowercase();
        let pinned = m.revision.is_some();
        // Read once: it routes the message and decides its shadow copy.
        let rollout = super::rollout_rows::active(tx, &key)?;
        match super::rollouts::serving_revision(tx, &key, &m.conversation_id, m.revision, rollout.as_ref())? {
            Some(revision) => m.revision = Some(revision),
            None => {
                outcomes.push(AcceptOutcome::UnknownRevision);
                continue;
            }
        }
        let processed = m.kind == MessageKind::Request || (m.kind == MessageKind::Notification && m.deliver);
        m.status = if processed { MessageStatus::Accepted } else { MessageStatus::Final };
        m.reply_id = None;
        insert_message(tx, &m, index)?;
        if touch_conversation(tx, &m)? {
            stage.push(StateEvent::ConversationChanged { id: m.conversation_id.clone() });
        }
        stage.push(StateEvent::ConversationMessage {
            conversation_id: m.conversation_id.clone(),
            message_id: m.id.clone(),
        });
        if processed {
            if let Ok(receiver) = AgentName::parse(&m.receiver) {
                if !pinned && m.kind == MessageKind::Request {
                    super::rollouts::shadow_copy(tx, &key, &m.id, &receiver, rollout.as_ref(), index, stage)?;
                }
                stage.push(StateEvent::MessageAccepted { id: m.id.clone(), receiver });
            }
        }
        outcomes.push(AcceptOutcome::Accepted);
    }
    Ok(Response::Accepted(outcomes))
}

fn record_replies(
    tx: &Transaction<'_>,
    index: u64,
    replies: Vec<Message>,
    stage: &mut Vec<StateEvent>,
) -> rusqlite::Result<Response> {
    let mut recorded = Vec::with_capacity(replies.len());
    for mut reply in replies {
        let Some(request_id) = reply.reply_to.clone() else {
            recorded.push(false);
            continue;
        };
        let open: Option<(String, String)> = tx
            .prepare_cached("SELECT status, kind FROM messages WHERE id = ?1")?
            .query_row([&request_id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let Some((status, kind)) = open.filter(|(status, _)| status == MessageStatus::Accepted.as_str()) else {
            recorded.push(false);
            continue;
        };
        debug_assert_eq!(status, MessageStatus::Accepted.as_str());
        if kind == MessageKind::Notification.as_str() {
            count_usage(tx, &reply.sender, &reply, stage)?;
            close_notification(tx, &request_id, &reply, stage)?;
            recorded.push(true);
            continue;
        }
        let exists: bool = tx
            .prepare_cached("SELECT 1 FROM messages WHERE id = ?1")?
            .query_row([&reply.id], |_| Ok(true))
            .optional()?
            .unwrap_or(false);
        if exists {
            recorded.push(false);
            continue;
        }
        let failed = reply.kind == MessageKind::Error;
        reply.status = MessageStatus::Final;
        if let (Some(revision), Some(served)) = (reply.revision, reply.served) {
            let key = reply.sender.to_ascii_lowercase();
            super::rollouts::record_outcome(tx, &key, revision, served.outcome, served.took_ms, index)?;
        }
        count_usage(tx, &reply.sender, &reply, stage)?;
        insert_message(tx, &reply, index)?;
        let new_status = if failed { MessageStatus::Failed } else { MessageStatus::Answered };
        // The request's stored body carries status too; keep both in step.
        let body: String =
            tx.prepare_cached("SELECT body FROM messages WHERE id = ?1")?.query_row([&request_id], |r| r.get(0))?;
        let mut request: Message =
            serde_json::from_str(&body).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        request.status = new_status;
        request.reply_id = Some(reply.id.clone());
        tx.prepare_cached("UPDATE messages SET status = ?2, reply_id = ?3, body = ?4 WHERE id = ?1")?.execute(
            params![
                request_id,
                new_status.as_str(),
                reply.id,
                serde_json::to_string(&request).expect("message serializes")
            ],
        )?;
        let state = if failed { ConversationState::Failed } else { ConversationState::Completed };
        tx.prepare_cached("UPDATE conversations SET updated_at = ?2, state = CASE WHEN protocol = 'request-reply' THEN ?3 ELSE state END WHERE id = ?1")?.execute(
            params![reply.conversation_id, reply.created_at_ms, state.as_str()],
        )?;
        stage.push(StateEvent::ConversationMessage {
            conversation_id: reply.conversation_id.clone(),
            message_id: reply.id.clone(),
        });
        stage.push(StateEvent::ReplyRecorded { request_id, reply_id: reply.id.clone() });
        stage.push(StateEvent::ConversationChanged { id: reply.conversation_id.clone() });
        recorded.push(true);
    }
    Ok(Response::Recorded(recorded))
}

/// A delivered notification's turn ended: it is never answered, so what
/// the turn produced is not stored; the notification is `processed`, with
/// the error when the turn failed.
fn close_notification(
    tx: &Transaction<'_>,
    id: &str,
    outcome: &Message,
    stage: &mut Vec<StateEvent>,
) -> rusqlite::Result<()> {
    let body: String = tx.row("SELECT body FROM messages WHERE id = ?1", [id], |r| r.get(0))?;
    let mut notification = parse_body(body)?;
    notification.status = MessageStatus::Processed;
    notification.failure = (outcome.kind == MessageKind::Error).then(|| outcome.content.clone());
    tx.exec(
        "UPDATE messages SET status = ?2, body = ?3 WHERE id = ?1",
        params![
            id,
            MessageStatus::Processed.as_str(),
            serde_json::to_string(&notification).expect("message serializes")
        ],
    )?;
    stage.push(StateEvent::NotificationProcessed { id: id.to_owned(), failed: notification.failure.is_some() });
    stage.push(StateEvent::ConversationChanged { id: notification.conversation_id });
    Ok(())
}

fn set_conversation(
    tx: &Transaction<'_>,
    id: &str,
    protocol: &str,
    state: ConversationState,
    detail: Option<String>,
    at_ms: i64,
    stage: &mut Vec<StateEvent>,
) -> rusqlite::Result<Response> {
    tx.exec(
        "INSERT INTO conversations(id, protocol, state, initiator, detail, created_at, updated_at) VALUES (?1, ?2, ?3, 'caxton', ?4, ?5, ?5)
         ON CONFLICT(id) DO UPDATE SET protocol = excluded.protocol, state = excluded.state, detail = COALESCE(excluded.detail, detail), updated_at = excluded.updated_at",
        params![id, protocol, state.as_str(), detail, at_ms],
    )?;
    stage.push(StateEvent::ConversationChanged { id: id.to_owned() });
    Ok(Response::Done)
}

/// Which conversations `Queries::conversations` lists.
#[derive(Debug, Clone, Default)]
pub struct ConversationFilter {
    pub protocol: Option<Protocol>,
    pub state: Option<ConversationState>,
    pub participant: Option<String>,
    pub limit: usize,
}

const CONVERSATION_COLUMNS: &str = "id, protocol, state, initiator, detail, created_at, updated_at, expires_at";

fn conversation_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ConversationRecord> {
    let initiator: String = r.get(3)?;
    let mut record = ConversationRecord {
        id: r.get(0)?,
        protocol: spelled(r, 1, "conversation protocol", Protocol::parse)?,
        state: spelled(r, 2, "conversation state", ConversationState::parse)?,
        participants: vec![initiator.clone()],
        initiator,
        detail: r.get(4)?,
        created_at_ms: r.get(5)?,
        updated_at_ms: r.get(6)?,
        expires_at_ms: r.get(7)?,
    };
    // Read as the clock has it: nobody need commit that time passed.
    if record.lapsed(crate::time::now_ms()) {
        record.state = ConversationState::Expired;
    }
    Ok(record)
}

fn add_participant(list: &mut Vec<String>, who: &str) {
    if !list.iter().any(|p| p.eq_ignore_ascii_case(who)) {
        list.push(who.to_owned());
    }
}

fn parse_body(body: String) -> rusqlite::Result<Message> {
    serde_json::from_str(&body)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e)))
}

impl Queries {
    /// What `agent` used on `day` (zero when nothing was recorded).
    pub async fn day_usage(&self, agent: &str, day: i64) -> Result<DayUsage, ReadError> {
        let key = agent.to_ascii_lowercase();
        self.replica()
            .read_point(move |c| {
                let row: Option<(i64, i64, i64)> = c
                    .row(
                        "SELECT tokens, spend_micro_usd, turns FROM agent_usage WHERE name_key = ?1 AND day = ?2",
                        params![key, day],
                        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                    )
                    .optional()?;
                let (tokens, spend, turns) = row.unwrap_or_default();
                Ok(DayUsage { day, tokens: tokens as u64, spend_usd: spend as f64 / 1e6, turns: turns as u64 })
            })
            .await
    }

    /// Requests from `sender` (sent with key `sent_by`, when given; in
    /// conversation `context`, to agent `receiver`), newest first, after
    /// the cursor `(created_at_ms, id)`: at most `limit`, and how many
    /// match in all.
    pub async fn requests_from(&self, filter: RequestFilter) -> Result<(Vec<Message>, u64), ReadError> {
        self.replica()
            .read(move |c| {
                const MATCHING: &str = "FROM messages WHERE sender = ?1 AND kind = 'Request'
                       AND (?2 IS NULL OR json_extract(body, '$.sent_by') = ?2)
                       AND (?3 IS NULL OR conversation_id = ?3)
                       AND (?4 IS NULL OR receiver_key = ?4)";
                let receiver = filter.receiver.as_ref().map(|r| r.to_ascii_lowercase());
                let base = params![filter.sender, filter.sent_by, filter.context, receiver];
                let total: i64 =
                    c.prepare_cached(&format!("SELECT count(*) {MATCHING}"))?.query_row(base, |r| r.get(0))?;
                let (at, id) = filter.before.clone().unwrap_or((i64::MAX, String::new()));
                let mut s = c.prepare_cached(&format!(
                    "SELECT body {MATCHING} AND (created_at < ?5 OR (created_at = ?5 AND id < ?6) OR ?6 = '')
                     ORDER BY created_at DESC, id DESC LIMIT ?7"
                ))?;
                let rows = s.query_map(
                    params![filter.sender, filter.sent_by, filter.context, receiver, at, id, filter.limit as i64],
                    |r| r.get::<_, String>(0),
                )?;
                let bodies = rows.collect::<rusqlite::Result<Vec<_>>>()?;
                let messages = bodies.into_iter().map(parse_body).collect::<rusqlite::Result<Vec<_>>>()?;
                Ok((messages, total as u64))
            })
            .await
    }

    pub async fn message(&self, id: &str) -> Result<Option<Message>, ReadError> {
        let id = id.to_owned();
        self.replica()
            .read_point(move |c| {
                let body: Option<String> = c
                    .prepare_cached("SELECT body FROM messages WHERE id = ?1")?
                    .query_row([id], |r| r.get(0))
                    .optional()?;
                body.map(parse_body).transpose()
            })
            .await
    }

    /// A request and its reply, once it has one: one read for both (the
    /// request as stored then carries its final status and `reply_id`).
    pub async fn answered(&self, id: &str) -> Result<Option<(Message, Message)>, ReadError> {
        let id = id.to_owned();
        self.replica()
            .read_point(move |c| {
                let bodies: Option<(String, String)> = c
                    .prepare_cached(
                        "SELECT q.body, r.body FROM messages q JOIN messages r ON r.id = q.reply_id WHERE q.id = ?1",
                    )?
                    .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?;
                bodies.map(|(request, reply)| Ok((parse_body(request)?, parse_body(reply)?))).transpose()
            })
            .await
    }

    pub async fn conversation(&self, id: &str) -> Result<Option<(ConversationRecord, Vec<Message>)>, ReadError> {
        let id = id.to_owned();
        self.replica()
            .read(move |c| {
                let conv = c
                    .row(
                        &format!("SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE id = ?1"),
                        [&id],
                        conversation_row,
                    )
                    .optional()?;
                let Some(mut conv) = conv else { return Ok(None) };
                let mut s = c.prepare_cached(
                    "SELECT body FROM messages WHERE conversation_id = ?1 ORDER BY seq, created_at, id",
                )?;
                let bodies = s.query_map([&id], |r| r.get::<_, String>(0))?.collect::<rusqlite::Result<Vec<_>>>()?;
                let messages = bodies.into_iter().map(parse_body).collect::<rusqlite::Result<Vec<_>>>()?;
                for m in &messages {
                    add_participant(&mut conv.participants, &m.sender);
                    add_participant(&mut conv.participants, &m.receiver);
                }
                Ok(Some((conv, messages)))
            })
            .await
    }

    /// A conversation's record alone (participants: the initiator only).
    pub async fn conversation_record(&self, id: &str) -> Result<Option<ConversationRecord>, ReadError> {
        let id = id.to_owned();
        self.replica()
            .read_point(move |c| {
                c.row(
                    &format!("SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE id = ?1"),
                    [&id],
                    conversation_row,
                )
                .optional()
            })
            .await
    }

    /// Conversations, newest first, filtered by protocol, state and a
    /// participant (an agent or a sender, matched case-insensitively).
    pub async fn conversations(&self, filter: ConversationFilter) -> Result<Vec<ConversationRecord>, ReadError> {
        self.replica()
            .read(move |c| {
                let mut s = c.prepare_cached(&format!(
                    "SELECT {CONVERSATION_COLUMNS} FROM conversations
                     WHERE (?1 IS NULL OR protocol = ?1) AND (?2 IS NULL OR state = ?2)
                       AND (?3 IS NULL OR lower(initiator) = ?3 OR EXISTS (SELECT 1 FROM messages m WHERE m.conversation_id = conversations.id
                            AND (m.receiver_key = ?3 OR lower(m.sender) = ?3)))
                     ORDER BY updated_at DESC, id LIMIT ?4"
                ))?;
                let participant = filter.participant.map(|p| p.to_ascii_lowercase());
                let rows = s.query_map(
                    params![filter.protocol.map(Protocol::as_str), filter.state.map(ConversationState::as_str), participant, filter.limit as i64],
                    conversation_row,
                )?;
                let mut out = rows.collect::<rusqlite::Result<Vec<_>>>()?;
                let mut people = c.prepare_cached(
                    "SELECT sender, receiver FROM messages WHERE conversation_id = ?1 ORDER BY seq, created_at, id",
                )?;
                for conv in &mut out {
                    let pairs = people.query_map([&conv.id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
                    for pair in pairs {
                        let (sender, receiver) = pair?;
                        add_participant(&mut conv.participants, &sender);
                        add_participant(&mut conv.participants, &receiver);
                    }
                }
                Ok(out)
            })
            .await
    }

    /// Accepted, unanswered requests for agents this node owns now.
    pub async fn pending_for_node(&self, node_id: u64) -> Result<Vec<Pending>, ReadError> {
        self.replica()
            .read(move |c| {
                let mut s = c.prepare_cached(
                    // CROSS JOIN: from the pending messages (a partial
                    // index) to their agents, never every agent each sweep.
                    "SELECT m.id, m.receiver, m.seq FROM messages m CROSS JOIN agents a ON a.name_key = m.receiver_key
                     WHERE m.status = 'accepted' AND a.owner = ?1 ORDER BY m.seq",
                )?;
                let rows = s.query_map(params![node_id], |r| {
                    Ok(Pending { id: r.get(0)?, receiver: r.get(1)?, seq: r.get::<_, i64>(2)? as u64 })
                })?;
                rows.collect()
            })
            .await
    }

    /// Unanswered requests per agent (lower-cased name), for load-aware routing.
    pub async fn pending_counts(&self) -> Result<HashMap<String, u64>, ReadError> {
        self.replica()
            .read(|c| {
                let mut s = c.prepare_cached(
                    "SELECT receiver_key, COUNT(*) FROM messages WHERE status = 'accepted' GROUP BY receiver_key",
                )?;
                let rows = s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
                rows.collect()
            })
            .await
    }

    /// The exchanges an agent had in a conversation before `before` (oldest first).
    pub async fn history(&self, conversation_id: &str, agent: &str, before: &str) -> Result<Vec<Message>, ReadError> {
        let (conv, agent, before) = (conversation_id.to_owned(), agent.to_ascii_lowercase(), before.to_owned());
        self.replica()
            .read(move |c| {
                let mut s = c.prepare_cached(
                    "SELECT body FROM messages WHERE conversation_id = ?1 AND id != ?3
                     AND (receiver_key = ?2 OR reply_to IN (SELECT id FROM messages WHERE conversation_id = ?1 AND receiver_key = ?2))
                     AND seq <= (SELECT seq FROM messages WHERE id = ?3)
                     ORDER BY seq, created_at, id",
                )?;
                let bodies = s.query_map(params![conv, agent, before], |r| r.get::<_, String>(0))?.collect::<rusqlite::Result<Vec<_>>>()?;
                bodies.into_iter().map(parse_body).collect()
            })
            .await
    }

    /// Capabilities declared by any agent (for "no agent has X" errors).
    pub async fn capabilities(&self) -> Result<Vec<String>, ReadError> {
        self.replica()
            .read(|c| {
                let mut s =
                    c.prepare_cached("SELECT DISTINCT capability FROM agent_capabilities ORDER BY capability")?;
                let rows = s.query_map([], |r| r.get(0))?;
                rows.collect()
            })
            .await
    }

    /// Agents declaring a capability (names as written).
    pub async fn agents_with_capability(&self, capability: &str) -> Result<Vec<String>, ReadError> {
        let cap = capability.to_owned();
        self.replica()
            .read(move |c| {
                let mut s = c.prepare_cached(
                    "SELECT a.name FROM agents a JOIN agent_capabilities k ON k.name_key = a.name_key WHERE k.capability = ?1 ORDER BY a.name_key",
                )?;
                let rows = s.query_map([cap], |r| r.get(0))?;
                rows.collect()
            })
            .await
    }
}
