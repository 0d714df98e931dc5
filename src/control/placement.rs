//! The leader's placement loop: keeps the replicated shard map in line with
//! the nodes that may own shards (Raft members that gossip reports ready).
//! Every node then runs exactly the agents its applied state gives it.
//!
//! Handoff is a single committed `AssignShards`: every node applies it at
//! the same log index, so the old owner stops and the new one starts from
//! the same point in history. A reply the old owner was still computing may
//! race the new owner's; `RecordReplies` keeps whichever commits first, so a
//! request is still answered exactly once.

use std::sync::Arc;
use std::time::Duration;

use caxton_cluster::{placement, ReadError, WriteError};
use tokio::sync::Notify;

use crate::state::{AssignShards, Ledger, SHARDS};

#[derive(Clone)]
pub struct Placement {
    ledger: Ledger,
    kick: Arc<Notify>,
}

/// Why a rebalance did not happen.
#[derive(Debug, thiserror::Error)]
pub enum PlacementError {
    #[error("reading the shard map failed: {0}")]
    Read(#[from] ReadError),
    #[error("proposing the moves failed: {0}")]
    Write(#[from] WriteError),
}

impl crate::problems::Classified for PlacementError {
    fn problem_type(&self) -> crate::problems::ProblemType {
        match self {
            Self::Read(e) => e.problem_type(),
            Self::Write(e) => e.problem_type(),
        }
    }
}

impl Placement {
    pub fn new(ledger: Ledger) -> Self {
        Self { ledger, kick: Arc::new(Notify::new()) }
    }

    /// Shards that would move now; proposes the moves when this node leads.
    pub async fn rebalance_once(&self) -> Result<usize, PlacementError> {
        if !self.ledger.is_leader() {
            return Ok(0);
        }
        let mut nodes = self.ledger.placement_nodes().await;
        nodes.sort_unstable();
        if nodes.is_empty() {
            return Ok(0);
        }
        let current = self.ledger.queries.shard_map(SHARDS).await?;
        let moves = placement::moves(&current, &nodes);
        if moves.is_empty() {
            return Ok(0);
        }
        let n = moves.len();
        tracing::info!(shards = n, ?nodes, "rebalancing shards");
        self.ledger.store.propose(AssignShards { moves, at_ms: crate::time::now_ms() }).await?;
        Ok(n)
    }

    /// Asks the loop to run now (after `cluster rebalance`).
    pub fn kick(&self) {
        self.kick.notify_one();
    }
}

impl super::LeaderLoop for Placement {
    const NAME: &'static str = "placement";

    fn period(&self) -> Duration {
        Duration::from_secs(1)
    }

    fn woken_by(&self) -> Option<Arc<Notify>> {
        Some(self.kick.clone())
    }

    async fn round(&self) -> anyhow::Result<()> {
        self.rebalance_once().await?;
        Ok(())
    }
}
