//! How the running set follows the replica: committed state events
//! (deploys, removals, accepted messages, shadow copies) and a periodic
//! sweep for accepted requests nothing is working on.

use std::collections::HashSet;
use std::time::Duration;

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::mailboxes::Delivery;
use super::running::AgentRuntime;
use super::shadow::shadow;
use crate::config::AgentName;
use crate::observability::AgentEvent;
use crate::state::StateEvent;

/// How often the replica is swept for unanswered requests.
const SWEEP_EVERY: Duration = Duration::from_secs(2);

impl AgentRuntime {
    /// Delivers accepted, unanswered requests for agents this node owns.
    pub(super) async fn sweep(&self) -> anyhow::Result<()> {
        let pending = self.ledger.queries.pending_for_node(self.ledger.node_id()).await?;
        {
            // Requests answered (or moved away) meanwhile are forgotten.
            let still: HashSet<&str> = pending.iter().map(|p| p.id.as_str()).collect();
            self.exec.started.lock().retain(|id| still.contains(id.as_str()));
        }
        for p in pending {
            if self.exec.inflight.lock().contains(&p.id) {
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
        let since = self.owned_since.lock().get(&p.receiver.to_ascii_lowercase()).copied();
        since.is_none_or(|since| p.seq <= since) || self.exec.started.lock().contains(&p.id)
    }

    /// Records that this process runs agent `key` from log index
    /// `applied` on (kept across its revisions; a shard moving here starts
    /// a new record).
    pub(super) fn take_on(&self, key: &str, applied: u64) {
        self.owned_since.lock().entry(key.to_owned()).or_insert(applied);
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
                    let load = self.exec.inflight.lock().len() as u64;
                    self.ledger.publish_load(load);
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
        let mut running = self.running.write();
        for (_, agent) in running.drain() {
            agent.stop.cancel();
        }
    }

    async fn on_deployed(&self, name: &AgentName, revision: u64, owner: u64) -> anyhow::Result<()> {
        if owner != self.ledger.node_id() {
            if self.stop_agent(name) {
                // It ran here and now belongs to another node.
                self.exec.metrics.agent_event(AgentEvent::Moved);
            }
            return Ok(());
        }
        let Some(record) = self.ledger.queries.agent(name).await? else { return Ok(()) };
        if record.revision != revision {
            // A later revision is already applied; its own event follows.
            return Ok(());
        }
        self.take_on(&name.key(), self.ledger.applied_index());
        let agent = self.start(record.spec, revision);
        self.mailboxes.insert(name.key(), agent.mailbox.clone());
        if let Some(old) = self.running.write().insert(name.key(), agent) {
            old.stop.cancel();
        }
        tracing::info!(agent = %name, revision, "agent started");
        self.exec.metrics.agent_event(AgentEvent::Started);
        Ok(())
    }
}
