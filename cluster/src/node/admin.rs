//! Membership administration an operator asks of any member: remove a node,
//! move leadership, leave, compact the log, shut down. Changes that only the
//! leader can make are forwarded to it.

use std::time::{Duration, Instant};

use super::cluster::Cluster;
use crate::application::Application;
use crate::consensus::raft_ext::RaftExt;
use crate::transport::{paths, AdminRequest};
use crate::types::{MemberRole, NodeId};
use crate::write_error::WriteError;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("node {0} is not a member of this cluster")]
    UnknownNode(NodeId),
    #[error("{0}")]
    Refused(String),
    #[error("no leader is known; retry shortly")]
    NoLeader,
    #[error("cannot reach node {node} at {addr}: {reason}")]
    Unreachable { node: NodeId, addr: String, reason: String },
}

impl<A: Application> Cluster<A> {
    /// Removes a node from the membership (forwarded to the leader).
    pub async fn remove_node(&self, id: NodeId) -> Result<(), AdminError> {
        if !self.status().members.iter().any(|m| m.id == id) {
            return Err(AdminError::UnknownNode(id));
        }
        self.ask_leader(AdminRequest::RemoveNode(id)).await
    }

    /// Moves leadership to `target` by having it start an election.
    pub async fn transfer_leader(&self, target: NodeId) -> Result<(), AdminError> {
        let status = self.status();
        let member = status.members.iter().find(|m| m.id == target).ok_or(AdminError::UnknownNode(target))?;
        if member.role != MemberRole::Voter {
            return Err(AdminError::Refused(format!("node {target} is a learner; only voters can lead")));
        }
        if status.leader == Some(target) {
            return Ok(());
        }
        let addr = member.rpc_addr.clone();
        // An election is won only by a log at least as long as a quorum's:
        // under writes the target may be a few entries short when it
        // stands. So the leader first lets it catch up, and a lost
        // election is tried again (asked of another member, which cannot
        // see the target's progress, a busy cluster may need several).
        for _attempt in 0..5 {
            self.wait_caught_up(target, Duration::from_secs(3)).await;
            self.ask(target, &addr, AdminRequest::Elect).await?;
            let deadline = Instant::now() + Duration::from_secs(4);
            while Instant::now() < deadline {
                if self.status().leader == Some(target) {
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Err(AdminError::Refused(format!("node {target} did not win the election (is its log up to date?)")))
    }

    /// On the leader: waits (bounded) until `target` has replicated the
    /// whole log. Elsewhere the replication figures are unknown; no wait.
    async fn wait_caught_up(&self, target: NodeId, within: Duration) {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            let s = self.status();
            if s.leader != Some(s.node_id) {
                return;
            }
            let matched = s.members.iter().find(|m| m.id == target).and_then(|m| m.matched_index);
            if matched >= s.last_log_index {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// This node leaves: hands off leadership if it has it, then asks the
    /// leader to remove it. Gossip marks it as left so it is not re-added.
    pub async fn leave(&self) -> Result<(), AdminError> {
        self.local.mark_left();
        self.hand_off_leadership().await;
        self.ask_leader(AdminRequest::RemoveNode(self.local.node_id)).await
    }

    /// Stops Raft, the RPC listener and the membership manager. Everything
    /// acknowledged is already durable. A leader first hands leadership to
    /// another voter so the cluster does not wait out an election timeout.
    pub async fn shutdown(&self) {
        self.hand_off_leadership().await;
        self.stop_all().await;
    }

    /// If leader, asks the most up-to-date other voter to take over.
    async fn hand_off_leadership(&self) {
        let own = self.local.node_id;
        let status = self.status();
        if status.leader != Some(own) {
            return;
        }
        let successor = status
            .members
            .iter()
            .filter(|m| m.id != own && m.role == MemberRole::Voter)
            .max_by_key(|m| m.matched_index);
        if let Some(next) = successor {
            tracing::info!(to = next.id, "transferring leadership before stepping down");
            if let Err(e) = self.transfer_leader(next.id).await {
                tracing::warn!(error = %e, "leadership transfer failed");
            }
        }
    }

    async fn ask_leader(&self, req: AdminRequest) -> Result<(), AdminError> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let status = self.status();
            if let Some(leader) = status.leader {
                if let Some(m) = status.members.iter().find(|m| m.id == leader) {
                    return self.ask(leader, &m.rpc_addr.clone(), req).await;
                }
            }
            if Instant::now() > deadline {
                return Err(AdminError::NoLeader);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn ask(&self, node: NodeId, addr: &str, req: AdminRequest) -> Result<(), AdminError> {
        let answer: Result<(), String> = self
            .rpc
            .call(addr, paths::ADMIN, &req, Duration::from_secs(15))
            .await
            .map_err(|e| AdminError::Unreachable { node, addr: addr.into(), reason: e.to_string() })?;
        answer.map_err(AdminError::Refused)
    }

    /// Builds a snapshot now and purges the log behind it (keeping the
    /// configured tail). Returns the index the snapshot covers.
    pub async fn snapshot_now(&self) -> Result<Option<u64>, WriteError> {
        let timeout = Duration::from_secs(30);
        if !self.raft.snapshot_applied(timeout).await.map_err(|e| WriteError::Fatal(e.to_string()))? {
            return Err(WriteError::Timeout(timeout));
        }
        Ok(self.raft.metrics().borrow().snapshot.map(|l| l.index))
    }
}
