//! Questions the crate asks of openraft, answered in one place.
//!
//! Both the façade and the membership manager need "is this node ready?" and
//! "what role does node N have?", and the RPC server needs "remove node N".
//! Living here, below all of them, these helpers let every caller depend
//! downward instead of on each other.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use openraft::{ChangeMembers, ServerState};

use crate::catch_up::CatchUp;
use crate::types::{ClientWriteFailure, MemberRole, NodeId, Raft, RaftMetrics};

/// Helpers over one snapshot of the Raft metrics.
pub(crate) trait MetricsExt {
    /// Joined and caught up: a leader is known and the replica keeps up
    /// with this node's log (see [`CatchUp`]).
    fn is_ready(&self, catch_up: &CatchUp) -> bool;

    /// `node`'s role in the current membership; `None` if it is not a member.
    fn role_of(&self, node: NodeId) -> Option<MemberRole>;
}

impl MetricsExt for RaftMetrics {
    fn is_ready(&self, catch_up: &CatchUp) -> bool {
        let applied = self.last_applied.as_ref().map_or(0, |l| l.index);
        self.running_state.is_ok()
            && self.current_leader.is_some()
            && catch_up.caught_up(applied, self.last_log_index.unwrap_or(0), Instant::now())
    }

    fn role_of(&self, node: NodeId) -> Option<MemberRole> {
        let membership = self.membership_config.membership();
        if membership.voter_ids().any(|v| v == node) {
            Some(MemberRole::Voter)
        } else if membership.learner_ids().any(|l| l == node) {
            Some(MemberRole::Learner)
        } else {
            None
        }
    }
}

/// Helpers over a running Raft node.
pub(crate) trait RaftExt {
    /// Whether this node believes it leads (openraft's own `is_leader` asks
    /// the quorum; this only reads the metrics).
    fn is_leading(&self) -> bool;

    /// Waits (bounded) until the metrics satisfy `done`; true if they did.
    async fn wait_metrics(&self, timeout: Duration, done: impl Fn(&RaftMetrics) -> bool) -> bool;

    /// Builds a snapshot and waits (bounded) until one covers everything
    /// applied when it was asked for; true if one did in time.
    async fn snapshot_applied(&self, timeout: Duration) -> Result<bool, openraft::error::Fatal<NodeId>>;

    /// Removes `node` from the membership; only the leader can.
    async fn remove_member(&self, node: NodeId) -> Result<(), ClientWriteFailure>;

    /// The leader's ReadIndex: leadership confirmed with a quorum, and the
    /// index a linearizable read must see (0: nothing committed yet).
    async fn read_index(&self) -> Result<u64, openraft::error::CheckIsLeaderError<NodeId, crate::types::NodeAddr>>;
}

impl RaftExt for Raft {
    async fn read_index(&self) -> Result<u64, openraft::error::CheckIsLeaderError<NodeId, crate::types::NodeAddr>> {
        match self.get_read_log_id().await {
            Ok((read, _)) => Ok(read.map(|l| l.index).unwrap_or(0)),
            Err(openraft::error::RaftError::APIError(e)) => Err(e),
            Err(openraft::error::RaftError::Fatal(f)) => {
                Err(openraft::error::CheckIsLeaderError::QuorumNotEnough(openraft::error::QuorumNotEnough {
                    cluster: f.to_string(),
                    got: Default::default(),
                }))
            }
        }
    }

    fn is_leading(&self) -> bool {
        self.metrics().borrow().state == ServerState::Leader
    }

    async fn snapshot_applied(&self, timeout: Duration) -> Result<bool, openraft::error::Fatal<NodeId>> {
        let applied = self.metrics().borrow().last_applied.map(|l| l.index);
        self.trigger().snapshot().await?;
        Ok(self.wait_metrics(timeout, |m| m.snapshot.map(|l| l.index) >= applied).await)
    }

    async fn wait_metrics(&self, timeout: Duration, done: impl Fn(&RaftMetrics) -> bool) -> bool {
        let mut metrics = self.metrics();
        let deadline = Instant::now() + timeout;
        loop {
            if done(&metrics.borrow()) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            let _ = tokio::time::timeout(Duration::from_millis(50), metrics.changed()).await;
        }
    }

    async fn remove_member(&self, node: NodeId) -> Result<(), ClientWriteFailure> {
        let role = self.metrics().borrow().role_of(node);
        let change = match role {
            Some(MemberRole::Voter) => ChangeMembers::RemoveVoters(BTreeSet::from([node])),
            _ => ChangeMembers::RemoveNodes(BTreeSet::from([node])),
        };
        self.change_membership(change, false).await.map(|_| ())
    }
}
