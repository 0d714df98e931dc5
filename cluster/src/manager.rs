//! The membership manager: runs on every node, acts only on the leader.
//!
//! Publishes this node's metadata to gossip; on the leader, turns gossip
//! into Raft membership: nodes heard of are added as learners, caught-up
//! learners are promoted until there are `voters` voters. Dead voters are
//! never removed automatically: shrinking the voter set on a suspicion
//! would let a minority keep writing; `cluster remove` is an operator's call.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::ChangeMembers;
use tokio_util::sync::CancellationToken;

use crate::consensus::raft_ext::{MetricsExt, RaftExt};
use crate::local_member::LocalMember;
use crate::membership::{keys, Gossip, GossipMember, GossipRole};
use crate::types::{ClientWriteFailure, MemberRole, NodeAddr, NodeId, Raft};

/// How far behind the leader's log a learner may be and still be promoted.
const PROMOTE_LAG: u64 = 100;

#[derive(Debug, thiserror::Error)]
pub(crate) enum ReconcileError {
    #[error("cannot add node {node} as a learner: {source}")]
    AddLearner { node: NodeId, source: ClientWriteFailure },
    #[error("cannot promote learners {nodes:?} to voters: {source}")]
    Promote { nodes: BTreeSet<NodeId>, source: ClientWriteFailure },
}

pub(crate) struct Manager {
    raft: Raft,
    local: Arc<LocalMember>,
    voters: usize,
    /// Nodes of another cluster already reported, so the log says it once.
    foreign: Mutex<BTreeSet<NodeId>>,
}

impl Manager {
    pub fn new(raft: Raft, local: Arc<LocalMember>, voters: usize) -> Self {
        Self { raft, local, voters: voters.max(1), foreign: Mutex::default() }
    }

    /// Runs until `stop`; returns at once on a node without gossip.
    pub async fn run(self, stop: CancellationToken) {
        let Some(gossip) = &self.local.gossip else { return };
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            self.publish(gossip).await;
            let members = gossip.members().await;
            self.local.note_alive(&members);
            if self.raft.is_leading() {
                if let Err(e) = self.reconcile(&members).await {
                    tracing::warn!(error = %e, "membership reconcile failed; will retry");
                }
            }
        }
    }

    async fn publish(&self, gossip: &Gossip) {
        let m = self.raft.metrics().borrow().clone();
        let role = if self.local.has_left() {
            GossipRole::Left
        } else {
            match m.role_of(self.local.node_id) {
                Some(MemberRole::Voter) => GossipRole::Voter,
                Some(MemberRole::Learner) => GossipRole::Learner,
                None => GossipRole::Joining,
            }
        };
        let initialized = m.membership_config.membership().nodes().next().is_some();
        let advertise = &self.local.advertise;
        gossip
            .set(&[
                (keys::READY, m.is_ready().to_string()),
                (keys::ROLE, role.as_str().to_owned()),
                (keys::INITIALIZED, initialized.to_string()),
                (keys::CLUSTER_ID, self.local.identity.get().unwrap_or_default()),
                (keys::LOAD, self.local.load().to_string()),
                (keys::RPC, advertise.rpc.clone()),
                (keys::API, advertise.api.clone()),
            ])
            .await;
    }

    /// A node that already belongs to another cluster is never added: its
    /// log is another history (it would refuse our RPCs anyway).
    fn is_foreign(&self, g: &GossipMember) -> bool {
        let ours = self.local.identity.get().unwrap_or_default();
        let foreign = !g.cluster_id.is_empty() && g.cluster_id != ours;
        if foreign && self.foreign.lock().unwrap_or_else(|p| p.into_inner()).insert(g.node_id) {
            tracing::warn!(node = g.node_id, theirs = %g.cluster_id, %ours, "ignoring a node of another cluster");
        }
        foreign
    }

    async fn reconcile(&self, members: &[GossipMember]) -> Result<(), ReconcileError> {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership().clone();
        let known: BTreeSet<NodeId> = membership.nodes().map(|(id, _)| *id).collect();
        let has_left = |g: &GossipMember| g.role == Some(GossipRole::Left);
        for g in members {
            let joinable = g.alive && !has_left(g) && !g.rpc_addr.is_empty() && !known.contains(&g.node_id);
            if joinable && !self.is_foreign(g) {
                tracing::info!(node = g.node_id, rpc = %g.rpc_addr, "adding node as learner");
                let addr =
                    NodeAddr { rpc: g.rpc_addr.clone(), api: g.api_addr.clone(), incarnation: g.incarnation.clone() };
                self.raft
                    .add_learner(g.node_id, addr, false)
                    .await
                    .map_err(|source| ReconcileError::AddLearner { node: g.node_id, source })?;
            }
        }
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        if voters.len() >= self.voters {
            return Ok(());
        }
        let last = m.last_log_index.unwrap_or(0);
        let replication = m.replication.clone().unwrap_or_default();
        let alive: BTreeMap<NodeId, &GossipMember> =
            members.iter().filter(|g| g.alive && !has_left(g)).map(|g| (g.node_id, g)).collect();
        let promote: BTreeSet<NodeId> = membership
            .learner_ids()
            .filter(|id| alive.contains_key(id))
            .filter(|id| replication.get(id).copied().flatten().map(|l| l.index + PROMOTE_LAG >= last).unwrap_or(false))
            .take(self.voters - voters.len())
            .collect();
        if !promote.is_empty() {
            tracing::info!(?promote, "promoting caught-up learners to voters");
            self.raft
                .change_membership(ChangeMembers::AddVoterIds(promote.clone()), true)
                .await
                .map_err(|source| ReconcileError::Promote { nodes: promote, source })?;
        }
        Ok(())
    }
}
