//! The agents this node runs, and the work they do.
//!
//! Follows the replicated registry: when an agent owned by this node is
//! deployed (or updated) its worker is (re)started; when it is removed or
//! moves away, the worker stops. Each worker has a bounded mailbox of
//! accepted message ids. Delivery needs no extra hop: every node applies the
//! `AcceptMessages` command, and the owner's runtime hears of it from its
//! own replica. A periodic sweep of the replica picks up whatever a full
//! mailbox, a crash or a restart left unanswered, so processing is
//! at-least-once; `RecordReplies` ignores a second answer, so each request
//! is answered exactly once.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use caxton_cluster::{Cluster, WriteError};
use serde::Serialize;
use tokio::sync::{broadcast, mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::mailboxes::{Delivery, Mailboxes};
use super::tools::Tools;
use super::turns::{self, TurnError, TurnInputs};
use crate::config::{AgentName, AgentSpec};
use crate::llm::Providers;
use crate::memory::types::{MemoryScope, Place, Viewer};
use crate::memory::{MemoryBackend, SearchQuery};
use crate::messaging::{Batcher, Message, MessageKind, MessageService, MessageStatus};
use crate::observability::{AgentEvent, Metrics, Outcome};
use crate::shutdown::Shutdown;
use crate::state::{CaxtonState, Queries, RecordReplies, ServedOutcome, StateEvent, Store};

/// Messages waiting in one agent's mailbox; beyond this the sweep delivers.
const MAILBOX: usize = 1024;
/// Requests one agent works on at once (LLM calls are mostly waiting).
const AGENT_CONCURRENCY: usize = 16;
/// Shadow copies one node answers at once.
const SHADOW_CONCURRENCY: usize = 4;
/// How often the replica is swept for unanswered requests.
const SWEEP_EVERY: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AgentState {
    /// Deployed; runs on another node.
    Remote,
    /// Running on this node.
    Running,
}

#[derive(Debug, Clone)]
pub struct RunningAgent {
    pub spec: Arc<AgentSpec>,
    pub revision: u64,
    pub started: Instant,
    stop: CancellationToken,
    mailbox: mpsc::Sender<Delivery>,
}

type ReplyBatcher = Batcher<Message, bool, WriteError>;

/// What workers need to process a message.
struct Executor {
    queries: Queries,
    providers: Providers,
    messages: Arc<MessageService>,
    memory: Arc<dyn MemoryBackend>,
    tools: Tools,
    metrics: Arc<Metrics>,
    replies: ReplyBatcher,
    /// Owns the per-agent workers and the answers in flight.
    shutdown: Shutdown,
    /// Ids being processed here, so the sweep does not start them twice.
    inflight: Mutex<HashSet<String>>,
    /// Requests whose processing this process has begun (until answered):
    /// delivering one of them again is a retry.
    started: Mutex<HashSet<String>>,
    /// Definitions of revisions other than the serving one (a rollout's
    /// candidate, `NAME@N`), read once from the replica.
    revisions: Mutex<HashMap<(String, u64), Arc<AgentSpec>>>,
    store: Store,
    /// Shadow copies answered at once; they never hold up real traffic.
    shadow_permits: Arc<Semaphore>,
    /// Deliveries a request gets before it is dead-lettered.
    max_attempts: u32,
}

#[derive(Clone)]
pub struct AgentRuntime {
    node_id: u64,
    cluster: Arc<Cluster<CaxtonState>>,
    running: Arc<RwLock<HashMap<String, RunningAgent>>>,
    mailboxes: Arc<Mailboxes>,
    queries: Queries,
    exec: Arc<Executor>,
    /// Per agent running here: the applied log index when this process
    /// took it on (at start, or when its shard moved here). A request
    /// committed before then may have been begun by the process or node
    /// that ran it before: delivering it is a retry.
    owned_since: Arc<Mutex<HashMap<String, u64>>>,
}

impl AgentRuntime {
    // The composition root hands each dependency over explicitly.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cluster: Arc<Cluster<CaxtonState>>,
        queries: Queries,
        providers: Providers,
        messages: Arc<MessageService>,
        memory: Arc<dyn MemoryBackend>,
        mcp: Arc<crate::mcp::McpRegistry>,
        metrics: Arc<Metrics>,
        shutdown: Shutdown,
        max_attempts: u32,
    ) -> Self {
        let store = Store::new(cluster.clone());
        let proposer = store.clone();
        let replies: ReplyBatcher = Batcher::spawn(&shutdown, 512, 4, move |replies: Vec<Message>| {
            let store = proposer.clone();
            async move {
                let n = replies.len();
                let recorded = store.propose(RecordReplies { replies }).await?;
                if recorded.len() != n {
                    return Err(WriteError::Rejected(format!("{} outcomes for {n} replies", recorded.len())));
                }
                Ok(recorded)
            }
        });
        let exec = Arc::new(Executor {
            queries: queries.clone(),
            providers,
            tools: Tools::new(messages.clone(), memory.clone(), mcp),
            memory,
            messages,
            metrics,
            replies,
            shutdown,
            inflight: Mutex::new(HashSet::new()),
            started: Mutex::new(HashSet::new()),
            revisions: Mutex::new(HashMap::new()),
            store,
            shadow_permits: Arc::new(Semaphore::new(SHADOW_CONCURRENCY)),
            max_attempts,
        });
        Self {
            node_id: cluster.node_id(),
            cluster: cluster.clone(),
            running: Arc::new(RwLock::new(HashMap::new())),
            mailboxes: Arc::new(Mailboxes::default()),
            queries,
            exec,
            owned_since: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    pub fn state_of(&self, name: &AgentName) -> AgentState {
        if self.running.read().unwrap_or_else(|p| p.into_inner()).contains_key(&name.key()) {
            AgentState::Running
        } else {
            AgentState::Remote
        }
    }

    pub fn get(&self, name: &AgentName) -> Option<RunningAgent> {
        self.running.read().unwrap_or_else(|p| p.into_inner()).get(&name.key()).cloned()
    }

    pub fn running_count(&self) -> usize {
        self.running.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn metrics(&self) -> &Metrics {
        &self.exec.metrics
    }

    /// Messages waiting in the mailboxes of the agents running here.
    pub fn mailbox_depth(&self) -> usize {
        let running = self.running.read().unwrap_or_else(|p| p.into_inner());
        running.values().map(|a| a.mailbox.max_capacity() - a.mailbox.capacity()).sum()
    }

    /// Brings the running set in line with the registry, then delivers
    /// every unanswered request for agents this node owns.
    pub async fn reconcile(&self) -> anyhow::Result<()> {
        let wanted: HashMap<String, (AgentSpec, u64)> = self
            .queries
            .all_agents()
            .await?
            .into_iter()
            .filter(|a| a.owner == self.node_id)
            .map(|a| (a.spec.name.key(), (a.spec, a.revision)))
            .collect();
        {
            let mut running = self.running.write().unwrap_or_else(|p| p.into_inner());
            running.retain(|key, agent| {
                let keep = wanted.get(key).is_some_and(|(_, rev)| *rev == agent.revision);
                if !keep {
                    agent.stop.cancel();
                    self.mailboxes.remove(key);
                }
                keep
            });
            self.owned_since.lock().unwrap_or_else(|e| e.into_inner()).retain(|key, _| wanted.contains_key(key));
            let applied = self.applied_index();
            for (key, (spec, revision)) in wanted {
                self.take_on(&key, applied);
                if let std::collections::hash_map::Entry::Vacant(slot) = running.entry(key) {
                    let agent = self.start(spec, revision);
                    self.mailboxes.insert(slot.key().clone(), agent.mailbox.clone());
                    slot.insert(agent);
                }
            }
        }
        self.sweep().await
    }

    /// Delivers accepted, unanswered requests for agents this node owns.
    async fn sweep(&self) -> anyhow::Result<()> {
        let pending = self.queries.pending_for_node(self.node_id).await?;
        {
            // Requests answered (or moved away) meanwhile are forgotten.
            let still: HashSet<&str> = pending.iter().map(|p| p.id.as_str()).collect();
            self.exec.started.lock().unwrap_or_else(|p| p.into_inner()).retain(|id| still.contains(id.as_str()));
        }
        for p in pending {
            if self.exec.inflight.lock().unwrap_or_else(|p| p.into_inner()).contains(&p.id) {
                continue;
            }
            let retry = self.is_retry(&p);
            self.deliver(&p.receiver, Delivery { id: p.id, retry });
        }
        Ok(())
    }

    /// Whether delivering `p` now may repeat a processing that never
    /// finished: begun by this process, or committed before this process
    /// took the agent on (a previous process or owner may have begun it).
    /// A first delivery the sweep makes (the mailbox was full) is not.
    fn is_retry(&self, p: &crate::state::Pending) -> bool {
        let since =
            self.owned_since.lock().unwrap_or_else(|e| e.into_inner()).get(&p.receiver.to_ascii_lowercase()).copied();
        since.is_none_or(|since| p.seq <= since)
            || self.exec.started.lock().unwrap_or_else(|e| e.into_inner()).contains(&p.id)
    }

    /// Records that this process runs agent `key` from log index
    /// `applied` on (kept across its revisions; a shard moving here starts
    /// a new record).
    fn take_on(&self, key: &str, applied: u64) {
        self.owned_since.lock().unwrap_or_else(|e| e.into_inner()).entry(key.to_owned()).or_insert(applied);
    }

    fn applied_index(&self) -> u64 {
        self.cluster.status().applied_index.unwrap_or(0)
    }

    fn deliver(&self, receiver: &str, delivery: Delivery) {
        // Not here or full is not an error: the sweep delivers it later.
        let _ = self.mailboxes.deliver(receiver, delivery);
    }

    /// Follows committed changes until `stop`.
    pub async fn follow(self, mut events: broadcast::Receiver<StateEvent>, stop: CancellationToken) {
        let mut sweep = tokio::time::interval(SWEEP_EVERY);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let event = tokio::select! {
                _ = stop.cancelled() => break,
                _ = sweep.tick() => {
                    // Work in progress, advertised in gossip as this node's load.
                    let load = self.exec.inflight.lock().unwrap_or_else(|p| p.into_inner()).len() as u64;
                    self.cluster.publish_load(load);
                    if let Err(e) = self.sweep().await {
                        tracing::error!(error = %e, "sweep for unanswered messages failed");
                    }
                    continue;
                }
                e = events.recv() => e,
            };
            let result = match event {
                Ok(StateEvent::AgentDeployed { name, revision, owner }) => {
                    self.on_deployed(&name, revision, owner).await
                }
                Ok(StateEvent::AgentRemoved { name }) => {
                    self.stop_agent(&name);
                    Ok(())
                }
                Ok(StateEvent::MessageAccepted { id, receiver }) => {
                    self.deliver(receiver.as_str(), Delivery { id, retry: false });
                    Ok(())
                }
                Ok(StateEvent::ShadowAccepted { request_id, receiver, revision }) => {
                    if let Some(agent) = self.get(&receiver) {
                        let (exec, serving) = (self.exec.clone(), (agent.spec.clone(), agent.revision));
                        self.exec.shutdown.spawn(async move {
                            if let Err(e) = shadow(&exec, &serving, &request_id, revision).await {
                                tracing::warn!(message = %request_id, error = %e, "shadow copy not answered");
                            }
                        });
                    }
                    Ok(())
                }
                // Missed events or a new replica: re-read everything.
                Ok(StateEvent::Restored) | Err(broadcast::error::RecvError::Lagged(_)) => self.reconcile().await,
                Ok(_) => Ok(()),
                Err(broadcast::error::RecvError::Closed) => break,
            };
            if let Err(e) = result {
                tracing::error!(error = %e, "agent runtime could not follow the registry");
            }
        }
        let mut running = self.running.write().unwrap_or_else(|p| p.into_inner());
        for (_, agent) in running.drain() {
            agent.stop.cancel();
        }
    }

    async fn on_deployed(&self, name: &AgentName, revision: u64, owner: u64) -> anyhow::Result<()> {
        if owner != self.node_id {
            if self.stop_agent(name) {
                // It ran here and now belongs to another node.
                self.exec.metrics.agent_event(AgentEvent::Moved);
            }
            return Ok(());
        }
        let Some(record) = self.queries.agent(name).await? else { return Ok(()) };
        if record.revision != revision {
            // A later revision is already applied; its own event follows.
            return Ok(());
        }
        self.take_on(&name.key(), self.applied_index());
        let agent = self.start(record.spec, revision);
        self.mailboxes.insert(name.key(), agent.mailbox.clone());
        if let Some(old) = self.running.write().unwrap_or_else(|p| p.into_inner()).insert(name.key(), agent) {
            old.stop.cancel();
        }
        tracing::info!(agent = %name, revision, "agent started");
        self.exec.metrics.agent_event(AgentEvent::Started);
        Ok(())
    }

    /// Stops `name` if it runs here; whether it did.
    fn stop_agent(&self, name: &AgentName) -> bool {
        self.mailboxes.remove(&name.key());
        self.owned_since.lock().unwrap_or_else(|e| e.into_inner()).remove(&name.key());
        let Some(agent) = self.running.write().unwrap_or_else(|p| p.into_inner()).remove(&name.key()) else {
            return false;
        };
        agent.stop.cancel();
        tracing::info!(agent = %name, "agent stopped");
        true
    }

    fn start(&self, spec: AgentSpec, revision: u64) -> RunningAgent {
        let (mailbox, inbox) = mpsc::channel(MAILBOX);
        let agent = RunningAgent {
            spec: Arc::new(spec),
            revision,
            started: Instant::now(),
            // Stops with the agent, or with the node.
            stop: self.exec.shutdown.token().child_token(),
            mailbox,
        };
        let serving = (agent.spec.clone(), revision);
        self.exec.shutdown.spawn(worker(serving, inbox, agent.stop.clone(), self.exec.clone()));
        agent
    }
}

/// The serving revision's definition and number.
type Serving = (Arc<AgentSpec>, u64);

async fn worker(serving: Serving, mut inbox: mpsc::Receiver<Delivery>, stop: CancellationToken, exec: Arc<Executor>) {
    let permits = Arc::new(Semaphore::new(AGENT_CONCURRENCY));
    loop {
        let delivery = tokio::select! {
            _ = stop.cancelled() => return,
            d = inbox.recv() => match d { Some(d) => d, None => return },
        };
        let Ok(permit) = permits.clone().acquire_owned().await else { return };
        let id = delivery.id.clone();
        if !exec.inflight.lock().unwrap_or_else(|p| p.into_inner()).insert(id.clone()) {
            continue;
        }
        exec.started.lock().unwrap_or_else(|p| p.into_inner()).insert(id.clone());
        let (serving, task_exec) = (serving.clone(), exec.clone());
        exec.shutdown.spawn(async move {
            let exec = task_exec;
            // Cleared even if processing panics: the sweep offers it again.
            let _inflight = InFlight { exec: &exec, id: &id };
            if let Err(e) = process(&serving, &delivery, &exec).await {
                tracing::warn!(agent = %serving.0.name, message = %id, error = %e, "message not answered yet; it will be retried");
                exec.metrics.agent_event(AgentEvent::Failed);
            }
            drop(permit);
        });
    }
}

/// A message marked in progress on this node until dropped.
struct InFlight<'a> {
    exec: &'a Executor,
    id: &'a str,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.exec.inflight.lock().unwrap_or_else(|p| p.into_inner()).remove(self.id);
    }
}

/// Where an agent's memory lives and what it may see; None when disabled.
fn agent_memory(spec: &AgentSpec) -> Option<(Place, Viewer)> {
    if !spec.memory.enabled {
        return None;
    }
    let workspace = spec.workspace().to_owned();
    let place = match spec.memory.scope {
        MemoryScope::AgentOnly => Place::agent(spec.name.as_str()),
        MemoryScope::Workspace => Place::workspace(&workspace),
        MemoryScope::Global => Place::global(),
    };
    Some((place, Viewer { agent: Some(spec.name.to_string()), workspace: Some(workspace) }))
}

/// Memory hits for a request, formatted for `{{context}}`.
async fn recall(exec: &Executor, spec: &AgentSpec, viewer: &Viewer, request: &str) -> Option<String> {
    let q = SearchQuery {
        text: request.to_owned(),
        viewer: viewer.clone(),
        scope: None,
        entity_type: None,
        limit: spec.memory.search_limit as usize,
        min_similarity: spec.memory.min_similarity,
    };
    match exec.memory.search(q).await {
        Ok(hits) if !hits.is_empty() => Some(
            hits.iter()
                .map(|h| format!("- {} ({}): {}", h.name, h.entity_type, h.observation))
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(error = %e, "memory search before the request failed; answering without it");
            None
        }
    }
}

/// Why processing a message stopped short of committing its reply; the
/// message stays accepted and the sweep offers it again.
#[derive(Debug, thiserror::Error)]
enum ProcessError {
    #[error("reading the replica failed: {0}")]
    Read(#[from] caxton_cluster::ReadError),
    #[error("committing the reply failed: {0}")]
    Reply(String),
    #[error("revision {0} of the agent is no longer stored")]
    RevisionGone(u64),
}

impl Executor {
    /// Records a retried delivery before it runs; false when it is not to
    /// run (dead-lettered now, or answered meanwhile).
    async fn counts_attempt(&self, message: &Message) -> bool {
        let attempt = crate::state::RecordAttempt {
            id: message.id.clone(),
            max_attempts: self.max_attempts,
            at_ms: chrono::Utc::now().timestamp_millis(),
        };
        let decided = match self.store.propose(attempt).await {
            Ok(decided) => decided,
            // Not recorded (a voter of an older version, no quorum now):
            // run it uncounted, as before attempts were counted; if its
            // reply cannot be committed either, it waits like the rest.
            Err(e) => {
                tracing::debug!(message = %message.id, error = %e, "retry not counted");
                return true;
            }
        };
        match decided {
            crate::state::Attempt::Run(n) => {
                tracing::info!(message = %message.id, attempt = n, "retrying an unanswered message");
                true
            }
            crate::state::Attempt::DeadLettered => {
                tracing::warn!(
                    message = %message.id,
                    agent = %message.receiver,
                    max_attempts = self.max_attempts,
                    "message dead-lettered: its processing never finished"
                );
                self.metrics.message_dead_lettered();
                false
            }
            crate::state::Attempt::Closed => false,
        }
    }

    /// The definition of the revision `message` is to be served by.
    async fn spec_for(&self, serving: &Serving, message: &Message) -> Result<Arc<AgentSpec>, ProcessError> {
        self.spec_at(serving, message.revision.unwrap_or(serving.1)).await
    }

    async fn spec_at(&self, serving: &Serving, wanted: u64) -> Result<Arc<AgentSpec>, ProcessError> {
        let (spec, current) = serving;
        if wanted == *current {
            return Ok(spec.clone());
        }
        let key = (spec.name.key(), wanted);
        if let Some(s) = self.revisions.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return Ok(s.clone());
        }
        let s = self.queries.revision_spec(&spec.name, wanted).await?.ok_or(ProcessError::RevisionGone(wanted))?;
        let s = Arc::new(s);
        self.revisions.lock().unwrap_or_else(|p| p.into_inner()).insert(key, s.clone());
        Ok(s)
    }
}

async fn process(serving: &Serving, delivery: &Delivery, exec: &Executor) -> Result<(), ProcessError> {
    let Some(message) = exec.queries.message(&delivery.id).await? else { return Ok(()) };
    if message.status != MessageStatus::Accepted {
        return Ok(());
    }
    if delivery.retry && !exec.counts_attempt(&message).await {
        return Ok(());
    }
    let spec = &*exec.spec_for(serving, &message).await?;
    // A sender's trace that was sampled out: its spans here are not built
    // for the trace layer either, and what this sends on stays unsampled.
    let dropped = (message.w3c_sampled() == Some(false)).then(|| (message.trace_id.clone(), message.span_id.clone()));
    let invoke = invoke(spec, message, serving.1, exec);
    match dropped {
        Some((trace, span)) => crate::observability::traces::unsampled(trace, span, invoke).await,
        None => invoke.await,
    }
}

/// Answers `message` inside its `invoke_agent` span.
async fn invoke(
    spec: &AgentSpec,
    message: Message,
    serving_revision: u64,
    exec: &Executor,
) -> Result<(), ProcessError> {
    // OpenTelemetry GenAI: an in-process agent's invocation is INTERNAL.
    let span = tracing::info_span!(
        "invoke_agent",
        otel.name = %format!("invoke_agent {}", spec.name),
        otel.kind = "internal",
        gen_ai.operation.name = "invoke_agent",
        gen_ai.agent.name = %spec.name,
        gen_ai.agent.version = message.revision.unwrap_or(serving_revision),
        gen_ai.conversation.id = %message.conversation_id,
        gen_ai.provider.name = %spec.provider.as_deref().unwrap_or("default"),
        error.type = tracing::field::Empty,
        message_id = %message.id,
        agent = %spec.name,
        trace_id = %message.trace_id
    );
    // (An unsampled message runs in its trace's unsampled scope, where this
    // span is not built for the trace layer: only sampled ones continue.)
    caxton_cluster::trace_context::continue_trace(&span, &message.trace_id, &message.span_id);
    answer(spec, message, exec).instrument(span).await
}

async fn answer(spec: &AgentSpec, message: Message, exec: &Executor) -> Result<(), ProcessError> {
    let started = Instant::now();
    let history = exec.queries.history(&message.conversation_id, spec.name.as_str(), &message.id).await?;
    let result = match exec.providers.get(spec.provider.as_deref()) {
        Err(e) => Err(TurnError::Llm(e)),
        Ok(provider) => {
            let (tx, mut rx) = mpsc::unbounded_channel::<String>();
            // Listeners see tokens from here on; the stream ends when the
            // turns drop their sender, before the reply is committed.
            let producer = exec.messages.tokens.producer(&message.id);
            let memory = agent_memory(spec);
            let recalled = match &memory {
                Some((_, viewer)) => recall(exec, spec, viewer, &message.content).await,
                None => None,
            };
            // From here the model is asked: the first token's delay is its
            // time to first token.
            let (asked, metrics) = (Instant::now(), exec.metrics.clone());
            let labels =
                [provider.name().to_owned(), metrics.models.of(spec.model.as_deref().unwrap_or("default")).to_owned()];
            let forward = tokio::spawn(async move {
                let mut first = true;
                while let Some(t) = rx.recv().await {
                    if std::mem::take(&mut first) {
                        let first_token = metrics.llm_first_token.with_label_values(&[&labels[0], &labels[1]]);
                        first_token.observe(asked.elapsed().as_secs_f64());
                    }
                    producer.publish(t);
                }
            });
            let inputs = TurnInputs {
                spec,
                recalled,
                memory: memory.clone(),
                message: &message,
                history,
                provider,
                tools: &exec.tools,
                metrics: &exec.metrics,
                tokens: Some(tx),
                shadow: None,
            };
            let r = turns::run(inputs).await;
            let _ = forward.await;
            if let (Ok(answer), Some((place, _))) = (&r, &memory) {
                if spec.memory.auto_store {
                    let observations = vec![format!("Request: {}", message.content), format!("Answer: {answer}")];
                    let name = format!("interaction {}", message.id);
                    if let Err(e) = exec.memory.store(place, &name, "interaction", observations).await {
                        tracing::warn!(error = %e, "auto_store failed");
                    }
                }
            }
            r
        }
    };
    let served_as = served_outcome(&result);
    let outcome = match served_as {
        ServedOutcome::Ok => Outcome::Ok,
        ServedOutcome::Timeout => Outcome::Timeout,
        ServedOutcome::Error => Outcome::Error,
    };
    if outcome != Outcome::Ok {
        tracing::Span::current().record("error.type", outcome.as_str());
    }
    let served = crate::state::Served { outcome: served_as, took_ms: started.elapsed().as_millis() as u64 };
    if let Some(revision) = message.revision {
        exec.metrics.revision_done(spec.name.as_str(), revision, outcome, started.elapsed());
    }
    exec.metrics.message_done(
        spec.name.as_str(),
        &message.kind.as_str().to_ascii_lowercase(),
        outcome,
        started.elapsed(),
    );
    let (kind, content) = match result {
        Ok(answer) => (MessageKind::Response, answer),
        Err(e) => {
            tracing::warn!(error = %e, "request failed");
            (MessageKind::Error, e.to_string())
        }
    };
    let span_id = uuid::Uuid::new_v4().simple().to_string()[..16].to_owned();
    let at_ms = chrono::Utc::now().timestamp_millis();
    let reply = Message { served: Some(served), ..message.reply(kind, spec.name.to_string(), content, span_id, at_ms) };
    match exec.replies.submit(reply).await {
        Ok(Ok(_recorded)) => Ok(()),
        Ok(Err(e)) => Err(ProcessError::Reply(e.to_string())),
        Err(e) => Err(ProcessError::Reply(e.to_string())),
    }
}

/// How a turn ended, as its reply (and a rollout's analysis) records it.
fn served_outcome(result: &Result<String, TurnError>) -> ServedOutcome {
    match result {
        Ok(_) => ServedOutcome::Ok,
        Err(TurnError::Timeout(_)) => ServedOutcome::Timeout,
        Err(_) => ServedOutcome::Error,
    }
}

/// Answers the shadow copy of request `id` with `revision`, side effects
/// suppressed and nothing streamed or stored, then records how it did and
/// how close its answer is to the stable revision's.
async fn shadow(exec: &Executor, serving: &Serving, id: &str, revision: u64) -> Result<(), ProcessError> {
    let _permit = exec.shadow_permits.clone().acquire_owned().await.map_err(|e| ProcessError::Reply(e.to_string()))?;
    let Some(message) = exec.queries.message(id).await? else { return Ok(()) };
    let spec = exec.spec_at(serving, revision).await?;
    let free = spec.rollout.as_ref().map(|r| r.side_effect_free.clone()).unwrap_or_default();
    let started = Instant::now();
    let result = match exec.providers.get(spec.provider.as_deref()) {
        Err(e) => Err(TurnError::Llm(e)),
        Ok(provider) => {
            let memory = agent_memory(&spec);
            let recalled = match &memory {
                Some((_, viewer)) => recall(exec, &spec, viewer, &message.content).await,
                None => None,
            };
            let history = exec.queries.history(&message.conversation_id, spec.name.as_str(), &message.id).await?;
            let inputs = TurnInputs {
                spec: &spec,
                recalled,
                memory,
                message: &message,
                history,
                provider,
                tools: &exec.tools,
                metrics: &exec.metrics,
                tokens: None,
                shadow: Some(&free),
            };
            turns::run(inputs).await
        }
    };
    let took_ms = started.elapsed().as_millis() as u64;
    let outcome = served_outcome(&result);
    let content = match &result {
        Ok(answer) => answer.clone(),
        Err(e) => e.to_string(),
    };
    let similarity = match (&result, stable_answer(exec, id, spec.timeout()).await?) {
        (Ok(answer), Some(stable)) => exec.memory.similarity(answer, &stable).await.ok(),
        _ => None,
    };
    let record = crate::state::RecordShadow { request_id: id.to_owned(), outcome, took_ms, content, similarity };
    exec.store.propose(record).await.map_err(|e| ProcessError::Reply(e.to_string()))
}

/// The stable revision's successful answer to `id`, waiting up to `wait`.
async fn stable_answer(exec: &Executor, id: &str, wait: Duration) -> Result<Option<String>, ProcessError> {
    let deadline = Instant::now() + wait + Duration::from_secs(5);
    while Instant::now() < deadline {
        let request = exec.queries.message(id).await?;
        if let Some(reply_id) = request.and_then(|m| m.reply_id) {
            let reply = exec.queries.message(&reply_id).await?;
            return Ok(reply.filter(|r| r.kind == MessageKind::Response).map(|r| r.content));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(None)
}
