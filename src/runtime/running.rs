//! The agents this node runs.
//!
//! Follows the replicated registry: when an agent owned by this node is
//! deployed (or updated) its worker is (re)started; when it is removed or
//! moves away, the worker stops. Each worker has a bounded mailbox of
//! accepted message ids. Delivery needs no extra hop: every node applies the
//! `AcceptMessages` command, and the owner's runtime hears of it from its
//! own replica (`follow.rs`). A periodic sweep of the replica picks up
//! whatever a full mailbox, a crash or a restart left unanswered, so
//! processing is at-least-once; `RecordReplies` ignores a second answer, so
//! each request is answered exactly once.

use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::executor::{Executor, RuntimeSettings};
use super::mailboxes::{Delivery, Mailboxes};
use super::tools::Tools;
use super::worker::worker;
use crate::config::{AgentName, AgentSpec};
use crate::llm::Providers;
use crate::memory::MemoryBackend;
use crate::messaging::MessageService;
use crate::observability::Metrics;
use crate::shutdown::Shutdown;
use crate::state::Ledger;

/// Messages waiting in one agent's mailbox; beyond this the sweep delivers.
const MAILBOX: usize = 1024;

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
    pub(super) stop: CancellationToken,
    pub(super) mailbox: mpsc::Sender<Delivery>,
}

#[derive(Clone)]
pub struct AgentRuntime {
    pub(super) ledger: Ledger,
    pub(super) running: Arc<RwLock<HashMap<String, RunningAgent>>>,
    pub(super) mailboxes: Arc<Mailboxes>,
    pub(super) exec: Arc<Executor>,
    /// Per agent running here: the applied log index when this process
    /// took it on (at start, or when its shard moved here). A request
    /// committed before then may have been begun by the process or node
    /// that ran it before: delivering it is a retry.
    pub(super) owned_since: Arc<Mutex<HashMap<String, u64>>>,
}

impl AgentRuntime {
    // The composition root hands each dependency over explicitly.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        ledger: Ledger,
        providers: Providers,
        messages: Arc<MessageService>,
        memory: Arc<dyn MemoryBackend>,
        mcp: Arc<crate::mcp::McpRegistry>,
        metrics: Arc<Metrics>,
        shutdown: Shutdown,
        settings: RuntimeSettings,
    ) -> Self {
        let tools = Tools::new(messages.clone(), memory.clone(), mcp, settings.a2a.clone());
        let exec = Executor::new(ledger.clone(), providers, messages, memory, tools, metrics, shutdown, settings);
        Self {
            ledger,
            running: Arc::new(RwLock::new(HashMap::new())),
            mailboxes: Arc::new(Mailboxes::default()),
            exec: Arc::new(exec),
            owned_since: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// The limits in force for `spec`: its `[limits]`, else the server's.
    pub fn limits_of(&self, spec: &AgentSpec) -> crate::config::limits::AgentLimits {
        self.exec.limits_of(spec)
    }

    pub fn state_of(&self, name: &AgentName) -> AgentState {
        if self.running.read().contains_key(&name.key()) {
            AgentState::Running
        } else {
            AgentState::Remote
        }
    }

    pub fn get(&self, name: &AgentName) -> Option<RunningAgent> {
        self.running.read().get(&name.key()).cloned()
    }

    pub fn running_count(&self) -> usize {
        self.running.read().len()
    }

    pub fn metrics(&self) -> &Metrics {
        &self.exec.metrics
    }

    /// Messages waiting in the mailboxes of the agents running here.
    pub fn mailbox_depth(&self) -> usize {
        let running = self.running.read();
        running.values().map(|a| a.mailbox.max_capacity() - a.mailbox.capacity()).sum()
    }

    /// Brings the running set in line with the registry, then delivers
    /// every unanswered request for agents this node owns.
    pub async fn reconcile(&self) -> anyhow::Result<()> {
        let wanted: HashMap<String, (AgentSpec, u64)> = self
            .ledger
            .queries
            .all_agents()
            .await?
            .into_iter()
            .filter(|a| a.owner == self.ledger.node_id())
            .map(|a| (a.spec.name.key(), (a.spec, a.revision)))
            .collect();
        {
            let mut running = self.running.write();
            running.retain(|key, agent| {
                let keep = wanted.get(key).is_some_and(|(_, rev)| *rev == agent.revision);
                if !keep {
                    agent.stop.cancel();
                    self.mailboxes.remove(key);
                }
                keep
            });
            self.owned_since.lock().retain(|key, _| wanted.contains_key(key));
            let applied = self.ledger.applied_index();
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

    /// Stops `name` if it runs here; whether it did.
    pub(super) fn stop_agent(&self, name: &AgentName) -> bool {
        self.mailboxes.remove(&name.key());
        self.owned_since.lock().remove(&name.key());
        let Some(agent) = self.running.write().remove(&name.key()) else {
            return false;
        };
        agent.stop.cancel();
        tracing::info!(agent = %name, "agent stopped");
        true
    }

    pub(super) fn start(&self, spec: AgentSpec, revision: u64) -> RunningAgent {
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
