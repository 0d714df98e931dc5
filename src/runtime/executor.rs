//! What the workers share to answer messages, and what they read through
//! it: whether a retried delivery is to run, and which revision's
//! definition serves a message.

use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tokio::sync::Semaphore;

use super::budget::Budget;
use super::tools::Tools;
use crate::config::limits::AgentLimits;
use crate::config::AgentSpec;
use crate::llm::Providers;
use crate::memory::MemoryBackend;
use crate::messaging::{Message, MessageService};
use crate::observability::Metrics;
use crate::shutdown::Shutdown;
use crate::state::{Attempt, Ledger, Proposer, RecordAttempt, RecordReplies};

/// The serving revision's definition and number.
pub(super) type Serving = (Arc<AgentSpec>, u64);

/// What workers need to process a message.
pub(super) struct Executor {
    pub(super) ledger: Ledger,
    pub(super) providers: Providers,
    pub(super) messages: Arc<MessageService>,
    pub(super) memory: Arc<dyn MemoryBackend>,
    pub(super) tools: Tools,
    pub(super) metrics: Arc<Metrics>,
    /// Replies from every worker, committed together.
    pub(super) replies: Proposer<RecordReplies>,
    /// Owns the per-agent workers and the answers in flight.
    pub(super) shutdown: Shutdown,
    /// Ids being processed here, so the sweep does not start them twice.
    pub(super) inflight: Mutex<HashSet<String>>,
    /// Requests whose processing this process has begun (until answered):
    /// delivering one of them again is a retry.
    pub(super) started: Mutex<HashSet<String>>,
    /// Definitions of revisions other than the serving one (a rollout's
    /// candidate, `NAME@N`), read once from the replica.
    revisions: Mutex<HashMap<(String, u64), Arc<AgentSpec>>>,
    /// Shadow copies answered at once; they never hold up real traffic.
    pub(super) shadow_permits: Arc<Semaphore>,
    /// Deliveries a request gets before it is dead-lettered.
    max_attempts: u32,
    /// The limits of agents that set none (`server.agent_*`).
    default_limits: AgentLimits,
}

/// The server settings the runtime follows.
#[derive(Debug, Clone)]
pub struct RuntimeSettings {
    /// Calls remote A2A agents (agents' `[[a2a]]` tools).
    pub a2a: std::sync::Arc<crate::a2a::A2aClient>,
    /// `server.max_message_attempts`.
    pub max_attempts: u32,
    /// `server.agent_*`: the limits of agents that set none.
    pub limits: AgentLimits,
}

/// Why processing a message stopped short of committing its reply; the
/// message stays accepted and the sweep offers it again.
#[derive(Debug, thiserror::Error)]
pub(super) enum ProcessError {
    #[error("reading the replica failed: {0}")]
    Read(#[from] caxton_cluster::ReadError),
    #[error("committing the reply failed: {0}")]
    Reply(String),
    #[error("revision {0} of the agent is no longer stored")]
    RevisionGone(u64),
}

/// Shadow copies one node answers at once.
const SHADOW_CONCURRENCY: usize = 4;

impl Executor {
    // The composition root hands each dependency over explicitly.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        ledger: Ledger,
        providers: Providers,
        messages: Arc<MessageService>,
        memory: Arc<dyn MemoryBackend>,
        tools: Tools,
        metrics: Arc<Metrics>,
        shutdown: Shutdown,
        settings: RuntimeSettings,
    ) -> Self {
        let replies = Proposer::spawn(ledger.store.clone(), &shutdown, crate::state::BatchLimits::items(512), 4);
        Self {
            ledger,
            providers,
            messages,
            memory,
            tools,
            metrics,
            replies,
            shutdown,
            inflight: Mutex::new(HashSet::new()),
            started: Mutex::new(HashSet::new()),
            revisions: Mutex::new(HashMap::new()),
            shadow_permits: Arc::new(Semaphore::new(SHADOW_CONCURRENCY)),
            max_attempts: settings.max_attempts,
            default_limits: settings.limits,
        }
    }

    /// The limits in force for `spec`: its own, else the server's.
    pub(super) fn limits_of(&self, spec: &AgentSpec) -> AgentLimits {
        spec.limits.over(&self.default_limits)
    }

    /// A turn's budget for `spec`: its limits and what its day used so far.
    pub(super) async fn budget(&self, spec: &AgentSpec) -> Result<Budget, ProcessError> {
        let limits = self.limits_of(spec);
        // The day's usage counts only against a daily cap: no cap, no read.
        let before = if limits.caps_the_day() {
            let day = crate::state::day_of(crate::time::now_ms());
            self.ledger.queries.day_usage(spec.name.as_str(), day).await?
        } else {
            Default::default()
        };
        Ok(Budget::new(limits, self.providers.prices(spec.provider.as_deref()), before))
    }

    /// Records a retried delivery before it runs; false when it is not to
    /// run (dead-lettered now, or answered meanwhile).
    pub(super) async fn counts_attempt(&self, message: &Message) -> bool {
        let attempt =
            RecordAttempt { id: message.id.clone(), max_attempts: self.max_attempts, at_ms: crate::time::now_ms() };
        let decided = match self.ledger.store.propose(attempt).await {
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
            Attempt::Run(n) => {
                tracing::info!(message = %message.id, attempt = n, "retrying an unanswered message");
                true
            }
            Attempt::DeadLettered => {
                tracing::warn!(
                    message = %message.id,
                    agent = %message.receiver,
                    max_attempts = self.max_attempts,
                    "message dead-lettered: its processing never finished"
                );
                self.metrics.message_dead_lettered();
                false
            }
            Attempt::Closed => false,
        }
    }

    /// The definition of the revision `message` is to be served by.
    pub(super) async fn spec_for(&self, serving: &Serving, message: &Message) -> Result<Arc<AgentSpec>, ProcessError> {
        self.spec_at(serving, message.revision.unwrap_or(serving.1)).await
    }

    /// The definition of revision `wanted` of the serving agent.
    pub(super) async fn spec_at(&self, serving: &Serving, wanted: u64) -> Result<Arc<AgentSpec>, ProcessError> {
        let (spec, current) = serving;
        if wanted == *current {
            return Ok(spec.clone());
        }
        let key = (spec.name.key(), wanted);
        if let Some(s) = self.revisions.lock().get(&key) {
            return Ok(s.clone());
        }
        let s =
            self.ledger.queries.revision_spec(&spec.name, wanted).await?.ok_or(ProcessError::RevisionGone(wanted))?;
        let s = Arc::new(s);
        self.revisions.lock().insert(key, s.clone());
        Ok(s)
    }
}
