//! Keeps the replicated history bounded: the leader proposes a
//! `PruneHistory` now and then (`server.history_retention_ms`,
//! `server.agent_versions_kept`); every replica applies the same cut.

use std::time::Duration;

use crate::state::{Ledger, PruneHistory};

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

/// The leader's pruning rounds (see [`super::drive`]).
pub struct RetentionLoop {
    ledger: Ledger,
    retention: Retention,
}

impl RetentionLoop {
    pub fn new(ledger: Ledger, retention: Retention) -> Self {
        Self { ledger, retention }
    }
}

impl super::LeaderLoop for RetentionLoop {
    const NAME: &'static str = "retention";

    fn period(&self) -> Duration {
        self.retention.every()
    }

    /// Not at once: a node that just became leader (a restart, an upgrade
    /// rolling through) waits a full period before its first prune.
    fn first_round_after(&self) -> Duration {
        self.retention.every()
    }

    async fn round(&self) -> anyhow::Result<()> {
        let now = crate::time::now_ms();
        let before_ms = match self.retention.history {
            Some(h) => now.saturating_sub(h.as_millis().min(i64::MAX as u128) as i64),
            None => i64::MIN,
        };
        let p =
            self.ledger.store.propose(PruneHistory { before_ms, keep_versions: self.retention.versions_kept }).await?;
        if p.messages + p.conversations + p.versions > 0 {
            tracing::info!(
                messages = p.messages,
                conversations = p.conversations,
                versions = p.versions,
                "pruned history"
            );
        }
        Ok(())
    }
}
