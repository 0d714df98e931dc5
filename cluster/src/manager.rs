//! The membership manager: runs on every node, acts only on the leader.
//!
//! Publishes this node's metadata to gossip; on the leader, turns gossip
//! into Raft membership: nodes heard of are added as learners, caught-up
//! learners are promoted until there are `voters` voters. Dead voters are
//! never removed automatically: shrinking the voter set on a suspicion
//! would let a minority keep writing; `cluster remove` is an operator's call.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::{ChangeMembers, ServerState};
use tokio_util::sync::CancellationToken;

use crate::identity::ClusterIdentity;
use crate::membership::{keys, Gossip, GossipMember};
use crate::types::{NodeAddr, NodeId, Raft};

/// How far behind the leader's log a learner may be and still be promoted.
const PROMOTE_LAG: u64 = 100;

pub(crate) struct Manager {
    pub raft: Raft,
    pub gossip: Arc<Gossip>,
    pub node_id: NodeId,
    pub advertise: NodeAddr,
    pub voters: usize,
    /// Set when this node has left: it stops advertising itself as joinable.
    pub left: Arc<std::sync::atomic::AtomicBool>,
    /// The application's load figure, published in gossip.
    pub load: Arc<std::sync::atomic::AtomicU64>,
    /// Last time each node was seen alive (for the dead grace period).
    pub seen: Arc<std::sync::Mutex<HashMap<NodeId, Instant>>>,
    pub identity: Arc<ClusterIdentity>,
    /// Nodes of another cluster already reported, so the log says it once.
    pub foreign: std::sync::Mutex<BTreeSet<NodeId>>,
}

impl Manager {
    pub async fn run(self, stop: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            self.publish().await;
            let members = self.gossip.members().await;
            self.note_alive(&members);
            if self.raft.metrics().borrow().state == ServerState::Leader {
                if let Err(e) = self.reconcile(&members).await {
                    tracing::warn!(error = %e, "membership reconcile failed; will retry");
                }
            }
        }
    }

    fn note_alive(&self, members: &[GossipMember]) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        seen.insert(self.node_id, now);
        for m in members.iter().filter(|m| m.alive) {
            seen.insert(m.node_id, now);
        }
    }

    async fn publish(&self) {
        let m = self.raft.metrics().borrow().clone();
        let ready = crate::node::is_ready(&m);
        let membership = m.membership_config.membership().clone();
        let role = if self.left.load(std::sync::atomic::Ordering::SeqCst) {
            "left"
        } else if membership.voter_ids().any(|v| v == self.node_id) {
            "voter"
        } else if membership.learner_ids().any(|v| v == self.node_id) {
            "learner"
        } else {
            "joining"
        };
        let initialized = membership.nodes().next().is_some();
        self.gossip
            .set(&[
                (keys::READY, ready.to_string()),
                (keys::ROLE, role.to_owned()),
                (keys::INITIALIZED, initialized.to_string()),
                (keys::CLUSTER_ID, self.identity.get().unwrap_or_default()),
                (keys::LOAD, self.load.load(std::sync::atomic::Ordering::Relaxed).to_string()),
                (keys::RPC, self.advertise.rpc.clone()),
                (keys::API, self.advertise.api.clone()),
            ])
            .await;
    }

    /// A node that already belongs to another cluster is never added: its
    /// log is another history (it would refuse our RPCs anyway).
    fn is_foreign(&self, g: &GossipMember) -> bool {
        let ours = self.identity.get().unwrap_or_default();
        let foreign = !g.cluster_id.is_empty() && g.cluster_id != ours;
        if foreign && self.foreign.lock().unwrap_or_else(|p| p.into_inner()).insert(g.node_id) {
            tracing::warn!(node = g.node_id, theirs = %g.cluster_id, %ours, "ignoring a node of another cluster");
        }
        foreign
    }

    async fn reconcile(&self, members: &[GossipMember]) -> anyhow::Result<()> {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership().clone();
        let known: BTreeSet<NodeId> = membership.nodes().map(|(id, _)| *id).collect();
        for g in members {
            let joinable = g.alive && g.role != "left" && !g.rpc_addr.is_empty() && !known.contains(&g.node_id);
            if joinable && !self.is_foreign(g) {
                tracing::info!(node = g.node_id, rpc = %g.rpc_addr, "adding node as learner");
                let addr =
                    NodeAddr { rpc: g.rpc_addr.clone(), api: g.api_addr.clone(), incarnation: g.incarnation.clone() };
                self.raft.add_learner(g.node_id, addr, false).await?;
            }
        }
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        if voters.len() >= self.voters {
            return Ok(());
        }
        let last = m.last_log_index.unwrap_or(0);
        let replication = m.replication.clone().unwrap_or_default();
        let alive: BTreeMap<NodeId, &GossipMember> =
            members.iter().filter(|g| g.alive && g.role != "left").map(|g| (g.node_id, g)).collect();
        let promote: BTreeSet<NodeId> = membership
            .learner_ids()
            .filter(|id| alive.contains_key(id))
            .filter(|id| replication.get(id).copied().flatten().map(|l| l.index + PROMOTE_LAG >= last).unwrap_or(false))
            .take(self.voters - voters.len())
            .collect();
        if !promote.is_empty() {
            tracing::info!(?promote, "promoting caught-up learners to voters");
            self.raft.change_membership(ChangeMembers::AddVoterIds(promote), true).await?;
        }
        Ok(())
    }
}
