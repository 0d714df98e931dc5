//! The durable send path: resolve the receiver, commit the message through
//! Raft (the durability point), and optionally wait for the committed reply.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use caxton_cluster::{ReadError, WriteError};
use serde::Serialize;
use tokio::sync::{broadcast, oneshot};
use utoipa::ToSchema;

use super::routing::{CapabilityRouter, Routed};
use super::streams::TokenHub;
use crate::config::AgentName;
use crate::llm::ChatMessage;
use crate::shutdown::Shutdown;
use crate::state::{
    AcceptMessages, AcceptOutcome, BatchLimits, ConversationRecord, Ledger, Proposer, Protocol, Publication, Publish,
    Queries, SetConversation, StateEvent, REPLY_SUFFIX,
};
use crate::state::{ConversationState, Message, MessageKind, MessageStatus};
use crate::time::now_ms;

/// Agent-to-agent hops allowed before a request is refused (loop guard).
pub const MAX_HOPS: u32 = 4;

/// `NAME@N` addresses revision N of agent NAME; a plain name, whichever
/// revision serves it. Anything after `@` that is not a number stays part
/// of the name (and fails as one).
pub fn split_revision(target: &str) -> (&str, Option<u64>) {
    match target.rsplit_once('@') {
        Some((name, n)) => match n.parse::<u64>() {
            Ok(n) if n > 0 => (name, Some(n)),
            _ => (target, None),
        },
        None => (target, None),
    }
}

/// What `resolve` finds: receiver, capability, pinned revision, and the
/// receiver's definition when it was read on the way.
type Resolved = (String, Option<String>, Option<u64>, Option<crate::config::AgentSpec>);

#[derive(Debug, Clone)]
pub enum Target {
    Agent(String),
    Capability(String),
}

#[derive(Debug, Clone)]
pub struct SendRequest {
    pub target: Target,
    pub content: String,
    pub kind: MessageKind,
    pub sender: String,
    /// A caller-chosen id makes a retried send idempotent.
    pub id: Option<String>,
    pub conversation_id: Option<String>,
    pub reply_to: Option<String>,
    pub requirements: Option<String>,
    pub context: Option<String>,
    pub history: Vec<ChatMessage>,
    pub hop: u32,
    pub trace_id: Option<String>,
    /// The API key that sent it (None: an agent, or the node itself). A
    /// client-chosen id is that key's: another key reusing it is refused.
    pub sent_by: Option<String>,
    /// Sampling parameters for the answer (OpenAI-compatible clients').
    pub sampling: Option<crate::llm::Sampling>,
}

impl SendRequest {
    /// The bytes the message will carry: what `server.max_message_bytes` bounds.
    pub fn payload_bytes(&self) -> usize {
        crate::state::payload_bytes(&self.content, &self.context, &self.requirements, &self.history)
    }

    pub fn request(target: Target, content: impl Into<String>) -> Self {
        Self {
            target,
            content: content.into(),
            kind: MessageKind::Request,
            sender: "user".into(),
            id: None,
            conversation_id: None,
            reply_to: None,
            requirements: None,
            context: None,
            history: Vec::new(),
            hop: 0,
            trace_id: None,
            sent_by: None,
            sampling: None,
        }
    }
}

// Moved once per send, never stored or queued: boxing would only add noise.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum SendOutcome {
    /// Committed; the answer comes later.
    Accepted(Message),
    /// Committed and answered within the wait.
    Answered { request: Message, reply: Message },
}

#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error("no agent named `{0}` is deployed")]
    UnknownAgent(String),
    #[error("agent `{agent}` has no revision {revision}; its revisions: {}", .available.iter().map(u64::to_string).collect::<Vec<_>>().join(", "))]
    UnknownRevision { agent: String, revision: u64, available: Vec<u64> },
    #[error("no agent declares capability `{capability}`; capabilities that exist: {}", if .available.is_empty() { "none".to_owned() } else { .available.join(", ") })]
    NoAgentForCapability { capability: String, available: Vec<String> },
    #[error("invalid message: {0}")]
    Invalid(String),
    #[error("the message is {size} bytes (content, context, requirements and history); at most {limit} are accepted (server.max_message_bytes)")]
    TooLarge { size: usize, limit: usize },
    #[error("message id `{0}` is already taken by another sender's message; choose another id")]
    IdTaken(String),
    #[error("agent `{agent}` cannot take this message: {why}")]
    PromptTooLong { agent: String, why: String },
    #[error("{field} `{id}` {reason}")]
    InvalidId { field: &'static str, id: String, reason: &'static str },
    #[error("hop limit of {MAX_HOPS} agent-to-agent requests reached (a loop?)")]
    HopLimit,
    #[error("message `{0}` does not exist")]
    NotFound(String),
    #[error("agent `{agent}` takes no more: {reached}")]
    LimitReached { agent: String, reached: crate::config::limits::LimitReached },
    #[error("conversation `{0}` has expired (or ended past its deadline): it takes no further messages")]
    ConversationExpired(String),
    #[error("no reply to message `{id}` within {waited:?}; it stays accepted and will be answered: poll GET /v1/messages/{id}")]
    Timeout { id: String, waited: Duration },
    #[error(transparent)]
    Cluster(Arc<WriteError>),
    #[error(transparent)]
    Read(#[from] ReadError),
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Conversation {
    #[serde(flatten)]
    pub record: ConversationRecord,
    pub messages: Vec<Message>,
}

#[derive(Default)]
struct Waiters {
    by_request: Mutex<HashMap<String, Vec<oneshot::Sender<()>>>>,
}

/// One caller waiting for a reply. Dropping it (the reply came, the wait
/// ran out, or the client went away and its request future was dropped)
/// removes its entry, so a waiter never outlives its caller.
struct Waiter {
    rx: oneshot::Receiver<()>,
    id: String,
    waiters: Arc<Waiters>,
}

impl Drop for Waiter {
    fn drop(&mut self) {
        self.rx.close();
        self.waiters.forget(&self.id);
    }
}

impl Waiters {
    fn register(self: &Arc<Self>, id: &str) -> Waiter {
        let (tx, rx) = oneshot::channel();
        self.by_request.lock().entry(id.to_owned()).or_default().push(tx);
        Waiter { rx, id: id.to_owned(), waiters: self.clone() }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_request.lock().values().map(Vec::len).sum()
    }

    fn wake(&self, id: &str) {
        if let Some(list) = self.by_request.lock().remove(id) {
            for tx in list {
                let _ = tx.send(());
            }
        }
    }

    fn forget(&self, id: &str) {
        let mut map = self.by_request.lock();
        if let Some(list) = map.get_mut(id) {
            list.retain(|tx| !tx.is_closed());
            if list.is_empty() {
                map.remove(id);
            }
        }
    }
}

pub struct MessageService {
    queries: Queries,
    router: CapabilityRouter,
    accept: Proposer<AcceptMessages>,
    publish: Proposer<Publish>,
    ledger: Ledger,
    waiters: Arc<Waiters>,
    pub tokens: Arc<TokenHub>,
    /// Relays answer streams from the node running an agent.
    peer_http: reqwest::Client,
    metrics: Arc<crate::observability::Metrics>,
    limits: MessageLimits,
}

/// Whether an agent can take a message at all (its model's prompt limit),
/// asked before the message is committed.
#[async_trait::async_trait]
pub trait Admission: Send + Sync {
    /// `Err(why)` when an agent answering with `provider` can never
    /// answer a message of `text`.
    async fn admit(&self, provider: Option<&str>, text: &str) -> Result<(), String>;
}

/// What bounds a message before it is committed, and how this node relays.
#[derive(Clone, Default)]
pub struct MessageLimits {
    /// `server.max_message_bytes`.
    pub max_message_bytes: usize,
    pub admission: Option<Arc<dyn Admission>>,
    /// Mints this node's credentials for relaying answer streams.
    pub relay_key: Option<crate::auth::RelayKey>,
    /// `server.agent_*`: the limits of agents that set none.
    pub agent_limits: crate::config::limits::AgentLimits,
}

/// Message bytes one `AcceptMessages` entry carries at most: well under a
/// replication batch, so one tenant's large messages neither fail nor
/// stall the entry that carries another's.
const BATCH_BYTES: usize = 1024 * 1024;

/// A client-chosen id: printable, bounded, and never in the namespace the
/// server derives reply ids in (a client who could take `X-reply` first
/// would leave request `X` unanswerable).
pub(super) fn check_client_id(field: &'static str, id: &str) -> Result<(), MessageError> {
    let reason = if id.is_empty() || id.len() > 128 {
        "must be 1 to 128 characters"
    } else if !id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c)) {
        "may hold only letters, digits, `-`, `_`, `.` and `:`"
    } else if id.ends_with(REPLY_SUFFIX) {
        "must not end in `-reply`: that suffix is reserved for the ids of replies"
    } else {
        return Ok(());
    };
    Err(MessageError::InvalidId { field, id: id.to_owned(), reason })
}

fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// The trace a message sent from here carries: (trace id, span id,
/// unsampled). Traced (OTLP on), the sending span's W3C ids, so the node
/// that processes it continues the same trace; otherwise `given`, the
/// request's id, or a new one.
pub(super) fn trace_ids(given: Option<String>) -> (String, String, bool) {
    let traced = caxton_cluster::trace_context::current_context();
    let unsampled = traced.as_ref().is_some_and(|(_, _, sampled)| !sampled);
    let trace_id = traced
        .as_ref()
        .map(|(trace, _, _)| trace.clone())
        .or(given)
        .or_else(|| caxton_cluster::TRACE_ID.try_with(|t| t.clone()).ok())
        .unwrap_or_else(new_id);
    let span_id = traced.map(|(_, span, _)| span).unwrap_or_else(crate::state::new_span_id);
    (trace_id, span_id, unsampled)
}

impl MessageService {
    pub fn new(
        ledger: Ledger,
        events: broadcast::Receiver<StateEvent>,
        peer_http: reqwest::Client,
        shutdown: &Shutdown,
        metrics: Arc<crate::observability::Metrics>,
        limits: MessageLimits,
    ) -> Arc<Self> {
        let batch = BatchLimits { items: 512, bytes: BATCH_BYTES, weight: Message::payload_bytes };
        let accept = Proposer::spawn(ledger.store.clone(), shutdown, batch, 4);
        let publications = BatchLimits { items: 64, bytes: BATCH_BYTES, weight: |p: &Publication| p.content.len() };
        let publish = Proposer::spawn(ledger.store.clone(), shutdown, publications, 2);
        let waiters = Arc::new(Waiters::default());
        shutdown.spawn_until_stopped(wake_waiters(events, waiters.clone()));
        Arc::new(Self {
            router: CapabilityRouter::new(ledger.queries.clone()),
            queries: ledger.queries.clone(),
            accept,
            publish,
            ledger,
            waiters,
            tokens: Arc::new(TokenHub::default()),
            peer_http,
            metrics,
            limits,
        })
    }

    pub fn queries(&self) -> &Queries {
        &self.queries
    }

    pub(super) fn limits(&self) -> &MessageLimits {
        &self.limits
    }

    /// Counts a protocol step taken on this node.
    pub fn protocol_event(&self, protocol: &str, event: &str) {
        self.metrics.protocol_event(protocol, event);
    }

    pub(super) fn metrics(&self) -> &crate::observability::Metrics {
        &self.metrics
    }

    pub(super) fn publisher(&self) -> &Proposer<Publish> {
        &self.publish
    }

    pub(super) fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    pub(super) fn peer_http(&self) -> &reqwest::Client {
        &self.peer_http
    }

    pub(super) fn relay_key(&self) -> Option<&crate::auth::RelayKey> {
        self.limits.relay_key.as_ref()
    }

    /// The receiver's name, the capability it was found by, the revision
    /// the sender pinned, and its limits (when its record was read).
    async fn resolve(&self, target: &Target) -> Result<Resolved, MessageError> {
        match target {
            Target::Agent(target) => {
                let (name, pinned) = split_revision(target);
                let parsed = AgentName::parse(name).map_err(|_| MessageError::UnknownAgent(target.clone()))?;
                let agent =
                    self.queries.agent(&parsed).await?.ok_or_else(|| MessageError::UnknownAgent(name.to_owned()))?;
                if let Some(revision) = pinned {
                    self.check_revision(&parsed, revision).await?;
                }
                Ok((agent.name, None, pinned, Some(agent.spec)))
            }
            Target::Capability(cap) => match self.router.route(cap).await? {
                Routed::Agent(name) => Ok((name, Some(cap.clone()), None, None)),
                Routed::NoAgent { available } => {
                    Err(MessageError::NoAgentForCapability { capability: cap.clone(), available })
                }
            },
        }
    }

    /// A conversation with an expiry takes messages until then.
    async fn check_open(&self, conversation: &str) -> Result<(), MessageError> {
        if let Some(record) = self.queries.conversation_record(conversation).await? {
            let past = record.expires_at_ms.is_some_and(|at| now_ms() >= at);
            if past || record.state == ConversationState::Expired {
                return Err(MessageError::ConversationExpired(conversation.to_owned()));
            }
        }
        Ok(())
    }

    /// The receiver's definition: `read` on the way, or read now.
    async fn receiver_spec(
        &self,
        receiver: &str,
        read: Option<crate::config::AgentSpec>,
    ) -> Result<crate::config::AgentSpec, MessageError> {
        if let Some(spec) = read {
            return Ok(spec);
        }
        let unknown = || MessageError::UnknownAgent(receiver.to_owned());
        let name = AgentName::parse(receiver).map_err(|_| unknown())?;
        Ok(self.queries.agent(&name).await?.ok_or_else(unknown)?.spec)
    }

    /// Refuses a message its receiver's limits do not let in: larger than
    /// its `max_message_bytes`, or its day's tokens or spend used up.
    async fn check_limits(
        &self,
        receiver: &str,
        own: &crate::config::limits::AgentLimits,
        size: usize,
    ) -> Result<(), MessageError> {
        let refuse = |reached| MessageError::LimitReached { agent: receiver.to_owned(), reached };
        if let Some(max) = own.max_message_bytes.filter(|max| size as u64 > *max) {
            self.metrics.limit_reached("max_message_bytes");
            let detail = format!("the message is {size} bytes, at most {max}");
            return Err(refuse(crate::config::limits::LimitReached { limit: "max_message_bytes", detail }));
        }
        let limits = own.over(&self.limits.agent_limits);
        if limits.caps_the_day() {
            let today = self.queries.day_usage(receiver, crate::state::day_of(now_ms())).await?;
            if let Err(reached) = crate::config::limits::day_left(&limits, today.tokens, today.spend_usd) {
                self.metrics.limit_reached(reached.limit);
                return Err(refuse(reached));
            }
        }
        Ok(())
    }

    async fn check_revision(&self, name: &AgentName, revision: u64) -> Result<(), MessageError> {
        let available: Vec<u64> = self.queries.versions(name).await?.iter().map(|v| v.revision).collect();
        if available.contains(&revision) {
            Ok(())
        } else {
            Err(MessageError::UnknownRevision { agent: name.to_string(), revision, available })
        }
    }

    /// Commits a message and, if `wait` is given, waits for its reply.
    pub async fn send(&self, req: SendRequest, wait: Option<Duration>) -> Result<SendOutcome, MessageError> {
        if req.hop > MAX_HOPS {
            return Err(MessageError::HopLimit);
        }
        if req.content.trim().is_empty() {
            return Err(MessageError::Invalid("content must not be empty".into()));
        }
        let size = req.payload_bytes();
        if size > self.limits.max_message_bytes {
            return Err(MessageError::TooLarge { size, limit: self.limits.max_message_bytes });
        }
        if let Some(id) = &req.id {
            check_client_id("id", id)?;
        }
        if let Some(id) = &req.conversation_id {
            check_client_id("conversation_id", id)?;
            self.check_open(id).await?;
        }
        let (receiver, capability, pinned, read) = self.resolve(&req.target).await?;
        let spec = self.receiver_spec(&receiver, read).await?;
        self.check_limits(&receiver, &spec.limits, size).await?;
        if let Some(admission) = &self.limits.admission {
            admission
                .admit(spec.provider.as_deref(), &req.content)
                .await
                .map_err(|why| MessageError::PromptTooLong { agent: receiver.clone(), why })?;
        }
        let (trace_id, span_id, trace_unsampled) = trace_ids(req.trace_id.clone());
        let deliver = req.kind == MessageKind::Notification && self.delivers_notifications().await;
        let message = Message {
            id: req.id.clone().unwrap_or_else(new_id),
            kind: req.kind,
            sender: req.sender.clone(),
            receiver,
            capability,
            conversation_id: req.conversation_id.clone().unwrap_or_else(new_id),
            reply_to: req.reply_to.clone(),
            content: req.content.clone(),
            requirements: req.requirements.clone(),
            context: req.context.clone(),
            history: req.history.clone(),
            trace_id,
            span_id,
            hop: req.hop,
            created_at_ms: now_ms(),
            status: MessageStatus::Accepted,
            reply_id: None,
            revision: pinned,
            served: None,
            trace_unsampled,
            attempts: 0,
            sent_by: req.sent_by.clone(),
            deliver,
            topic: None,
            failure: None,
            usage: None,
            limit: None,
            sampling: req.sampling.clone().filter(|s| !s.is_empty()),
            tool_calls: Vec::new(),
        };
        // Register before committing so a fast reply cannot slip past us.
        let waiter = wait.map(|_| self.waiters.register(&message.id));
        let outcome = self.accept.submit(message.clone()).await.map_err(MessageError::Cluster)?;
        // A new request has no reply before its waiter is told of one; a
        // retried one may have had it long ago.
        let look_first = !matches!(outcome, AcceptOutcome::Accepted);
        let stored = match outcome {
            AcceptOutcome::Accepted => {
                self.metrics.message_accepted();
                message
            }
            // A retried send: answer with what was stored the first time,
            // to the key that sent it and no other.
            AcceptOutcome::Duplicate => {
                let stored = self
                    .queries
                    .message(&message.id)
                    .await?
                    .ok_or_else(|| MessageError::NotFound(message.id.clone()))?;
                if stored.sent_by != message.sent_by || stored.receiver != message.receiver {
                    return Err(MessageError::IdTaken(message.id));
                }
                stored
            }
            AcceptOutcome::UnknownReceiver => return Err(MessageError::UnknownAgent(message.receiver)),
            AcceptOutcome::UnknownRevision => {
                // Pruned between the check and the commit.
                let revision = message.revision.unwrap_or_default();
                return Err(MessageError::UnknownRevision { agent: message.receiver, revision, available: vec![] });
            }
        };
        match (wait, waiter) {
            (Some(wait), Some(waiter)) if stored.kind == MessageKind::Request => {
                let (request, reply) = self.wait_answered(&stored.id, waiter, wait, look_first).await?;
                Ok(SendOutcome::Answered { request, reply })
            }
            _ => Ok(SendOutcome::Accepted(stored)),
        }
    }

    async fn wait_reply(&self, id: &str, waiter: Waiter, wait: Duration) -> Result<Message, MessageError> {
        Ok(self.wait_answered(id, waiter, wait, true).await?.1)
    }

    /// The request and its reply, once committed; `look_first`: read before
    /// the first wait (else the waiter's wake-up is the first sign).
    async fn wait_answered(
        &self,
        id: &str,
        mut waiter: Waiter,
        wait: Duration,
        look_first: bool,
    ) -> Result<(Message, Message), MessageError> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut look = look_first;
        loop {
            if look {
                if let Some(answered) = self.queries.answered(id).await? {
                    return Ok(answered);
                }
            }
            look = true;
            // Woken by the commit, or re-check now and then in case an event was missed.
            let tick = tokio::time::sleep(Duration::from_millis(500));
            tokio::select! {
                _ = &mut waiter.rx => { waiter = self.waiters.register(id); }
                _ = tick => {}
                _ = tokio::time::sleep_until(deadline) => {
                    drop(waiter);
                    return match self.queries.answered(id).await? {
                        Some(answered) => Ok(answered),
                        None => Err(MessageError::Timeout { id: id.to_owned(), waited: wait }),
                    };
                }
            }
        }
    }

    /// Waits for the reply to an already accepted message.
    pub async fn await_reply(&self, id: &str, wait: Duration) -> Result<Message, MessageError> {
        let waiter = self.waiters.register(id);
        if self.queries.message(id).await?.is_none() {
            return Err(MessageError::NotFound(id.to_owned()));
        }
        self.wait_reply(id, waiter, wait).await
    }

    pub async fn reply_of(&self, id: &str) -> Result<Option<Message>, MessageError> {
        Ok(self.queries.answered(id).await?.map(|(_, reply)| reply))
    }

    pub async fn get(&self, id: &str) -> Result<Message, MessageError> {
        self.queries.message(id).await?.ok_or_else(|| MessageError::NotFound(id.to_owned()))
    }

    pub async fn conversation(&self, id: &str) -> Result<Option<Conversation>, MessageError> {
        Ok(self.queries.conversation(id).await?.map(|(record, messages)| Conversation { record, messages }))
    }

    /// Records a protocol conversation's state (contract-net).
    pub async fn set_conversation(
        &self,
        id: &str,
        protocol: Protocol,
        state: ConversationState,
        detail: Option<String>,
    ) -> Result<(), MessageError> {
        let cmd = SetConversation {
            id: id.to_owned(),
            protocol: protocol.as_str().to_owned(),
            state,
            detail,
            at_ms: now_ms(),
        };
        self.ledger.store.propose(cmd).await.map_err(|e| MessageError::Cluster(Arc::new(e)))?;
        Ok(())
    }
}

async fn wake_waiters(mut events: broadcast::Receiver<StateEvent>, waiters: Arc<Waiters>) {
    loop {
        match events.recv().await {
            Ok(StateEvent::ReplyRecorded { request_id, .. }) => waiters.wake(&request_id),
            Ok(_) => {}
            // Missed events are covered by the waiters' own periodic re-check.
            Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

impl crate::problems::Classified for MessageError {
    fn problem_type(&self) -> crate::problems::ProblemType {
        use crate::problems::ProblemType;
        match self {
            Self::UnknownAgent(_) | Self::UnknownRevision { .. } => ProblemType::AgentNotFound,
            Self::NoAgentForCapability { .. } => ProblemType::NoAgentForCapability,
            Self::Invalid(_) => ProblemType::BadRequest,
            Self::TooLarge { .. } => ProblemType::MessageTooLarge,
            Self::IdTaken(_) => ProblemType::MessageIdTaken,
            Self::PromptTooLong { .. } => ProblemType::PromptTooLong,
            Self::InvalidId { .. } => ProblemType::InvalidMessageId,
            Self::HopLimit => ProblemType::HopLimit,
            Self::NotFound(_) => ProblemType::MessageNotFound,
            Self::ConversationExpired(_) => ProblemType::ConversationExpired,
            Self::LimitReached { .. } => ProblemType::AgentLimitReached,
            Self::Timeout { .. } => ProblemType::ReplyTimeout,
            Self::Cluster(w) => w.problem_type(),
            Self::Read(r) => r.problem_type(),
        }
    }

    fn problem_extra(&self) -> Option<serde_json::Value> {
        match self {
            Self::NoAgentForCapability { available, .. } => Some(serde_json::json!({ "capabilities": available })),
            Self::Timeout { id, .. } => Some(serde_json::json!({ "message_id": id })),
            Self::TooLarge { size, limit } => Some(serde_json::json!({ "size": size, "limit": limit })),
            Self::LimitReached { agent, reached } => {
                Some(serde_json::json!({ "agent": agent, "limit": reached.limit }))
            }
            Self::Cluster(w) => w.problem_extra(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_waiter_whose_caller_went_away_leaves_nothing_behind() {
        let waiters = Arc::new(Waiters::default());
        let a = waiters.register("m-1");
        let b = waiters.register("m-1");
        assert_eq!(waiters.len(), 2);
        drop(a);
        assert_eq!(waiters.len(), 1);
        drop(b);
        assert_eq!(waiters.len(), 0);
        assert!(waiters.by_request.lock().is_empty());
    }

    #[test]
    fn client_ids_stay_out_of_the_reply_namespace() {
        assert!(check_client_id("id", "order-42:retry.1").is_ok());
        for bad in ["", "x-reply", "a b", "é", &"x".repeat(129)] {
            let e = check_client_id("id", bad).unwrap_err().to_string();
            assert!(e.starts_with("id `"), "{e}");
        }
    }
}
