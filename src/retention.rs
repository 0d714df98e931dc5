//! Keeps the replicated history bounded: the leader proposes a
//! `PruneHistory` now and then (`server.history_retention_ms`,
//! `server.agent_versions_kept`); every replica applies the same cut.

use std::sync::Arc;
use std::time::Duration;

use caxton_cluster::Cluster;
use tokio_util::sync::CancellationToken;

use crate::state::{CaxtonState, PruneHistory, Store};

#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Messages and conversations older than this go; `None` keeps them.
    pub history: Option<Duration>,
    pub versions_kept: u64,
}

impl Retention {
    /// How often the leader prunes: a tenth of the retention, between 1 s and 10 min.
    fn every(&self) -> Duration {
        self.history
            .map_or(Duration::from_secs(600), |h| (h / 10).clamp(Duration::from_secs(1), Duration::from_secs(600)))
    }
}

pub async fn run(cluster: Arc<Cluster<CaxtonState>>, retention: Retention, stop: CancellationToken) {
    let store = Store::new(cluster.clone());
    // Not at once: a node that just became leader (a restart, an upgrade
    // rolling through) waits a full period before its first prune.
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + retention.every(), retention.every());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if !cluster.is_leader() {
            continue;
        }
        let now = chrono::Utc::now().timestamp_millis();
        let before_ms = match retention.history {
            Some(h) => now.saturating_sub(h.as_millis().min(i64::MAX as u128) as i64),
            None => i64::MIN,
        };
        match store.propose(PruneHistory { before_ms, keep_versions: retention.versions_kept }).await {
            Ok(p) if p.messages + p.conversations + p.versions > 0 => {
                tracing::info!(
                    messages = p.messages,
                    conversations = p.conversations,
                    versions = p.versions,
                    "pruned history"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "pruning history failed; next round retries"),
        }
    }
}
