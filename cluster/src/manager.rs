//! The membership manager: runs on every node, acts only on the leader.
//!
//! Publishes this node's metadata to gossip. A node not yet a member asks
//! to join over RPC (`transport::join`), where it proves who it is; gossip
//! alone never adds anyone. On the leader, caught-up learners that gossip
//! reports alive are promoted until there are `voters` voters. Members are
//! removed automatically only when `remove_dead_after` is set and they have
//! been silent that long (a scaled-down StatefulSet's departed pods): the
//! removal is a membership change, which needs a quorum of the voters, so
//! it can never shrink the voter set to a minority that keeps writing.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::ChangeMembers;
use tokio_util::sync::CancellationToken;

use crate::consensus::raft_ext::{MetricsExt, RaftExt};
use crate::local_member::LocalMember;
use crate::membership::{keys, Gossip, GossipMember, GossipRole};
use crate::transport::join::{self, JoinAnswer};
use crate::transport::RpcClient;
use crate::types::{ClientWriteFailure, MemberRole, NodeId, Raft};

/// How far behind the leader's log a learner may be and still be promoted.
const PROMOTE_LAG: u64 = 100;

#[derive(Debug, thiserror::Error)]
pub(crate) enum ReconcileError {
    #[error("cannot promote learners {nodes:?} to voters: {source}")]
    Promote { nodes: BTreeSet<NodeId>, source: ClientWriteFailure },
    #[error("cannot remove node {node}, silent for longer than {after:?}: {source}")]
    RemoveDead { node: NodeId, after: Duration, source: ClientWriteFailure },
}

pub(crate) struct Manager {
    raft: Raft,
    local: Arc<LocalMember>,
    rpc: RpcClient,
    voters: usize,
    /// Silence after which a member is removed; `None`: never automatically.
    remove_dead_after: Option<Duration>,
    /// When this manager started: a member it has never seen alive counts
    /// as silent only for as long as the manager has been watching.
    watching_since: std::time::Instant,
    /// The last refusal a join request met, so the log says it once.
    refused: Mutex<Option<String>>,
    /// Nodes of another cluster already reported, so the log says it once.
    foreign: Mutex<BTreeSet<NodeId>>,
}

impl Manager {
    pub fn new(
        raft: Raft,
        local: Arc<LocalMember>,
        rpc: RpcClient,
        voters: usize,
        remove_dead_after: Option<Duration>,
    ) -> Self {
        Self {
            raft,
            local,
            rpc,
            voters: voters.max(1),
            remove_dead_after,
            watching_since: std::time::Instant::now(),
            refused: Mutex::default(),
            foreign: Mutex::default(),
        }
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
            self.report_foreign(&members);
            self.join_if_outside(&members).await;
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
        let (term, applied) = self.local.progress();
        gossip
            .set(&[
                (keys::READY, m.is_ready(&self.local.catch_up).to_string()),
                (keys::ROLE, role.as_str().to_owned()),
                (keys::INITIALIZED, initialized.to_string()),
                (keys::CLUSTER_ID, self.local.identity.get().unwrap_or_default()),
                (keys::LOAD, self.local.load().to_string()),
                (keys::CERT_EXPIRY, self.local.cert_expiry().unwrap_or(0).to_string()),
                (keys::TERM, term.to_string()),
                (keys::APPLIED, applied.to_string()),
                (keys::RPC, advertise.rpc.clone()),
                (keys::API, advertise.api.clone()),
            ])
            .await;
    }

    /// Says once per node that gossip mentions a member of another cluster
    /// (a seed list reaching the wrong pods): it is never asked to join us,
    /// nor we it.
    fn report_foreign(&self, members: &[GossipMember]) {
        let Some(ours) = self.local.identity.get() else { return };
        let mut reported = self.foreign.lock().unwrap_or_else(|p| p.into_inner());
        for g in members.iter().filter(|g| !g.cluster_id.is_empty() && g.cluster_id != ours) {
            if reported.insert(g.node_id) {
                tracing::warn!(node = g.node_id, theirs = %g.cluster_id, %ours, "ignoring a node of another cluster");
            }
        }
    }

    /// Asks to be added while this node is not in the membership it knows
    /// of (pristine, or removed) and has not left on purpose; and asks to
    /// be recorded at its current addresses while the membership has it at
    /// others (it restarted on a new address, as a recreated pod does).
    async fn join_if_outside(&self, members: &[GossipMember]) {
        let own = self.local.node_id;
        let recorded = self.raft.metrics().borrow().membership_config.membership().get_node(&own).cloned();
        let current = recorded.as_ref().is_some_and(|r| *r == self.local.advertise);
        if current || self.local.has_left() {
            return;
        }
        // A leader that moved records its own new addresses.
        if let (Some(old), true) = (&recorded, self.raft.is_leading()) {
            let answer = join::readdress(&self.raft, own, old, &self.local.advertise).await;
            if let JoinAnswer::Refused(why) = answer {
                tracing::warn!(reason = %why, "cannot record this node's new addresses; will retry");
            }
            return;
        }
        let answer = join::request_admission(&self.rpc, &self.local, members).await;
        let refused = match answer {
            Some(JoinAnswer::Refused(why)) => Some(why),
            _ => None,
        };
        let mut last = self.refused.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(why) = refused.as_ref().filter(|why| last.as_ref() != Some(*why)) {
            tracing::warn!(reason = %why, "the cluster refused to add this node; will keep asking");
        }
        *last = refused;
    }

    async fn reconcile(&self, members: &[GossipMember]) -> Result<(), ReconcileError> {
        self.remove_long_silent(members).await?;
        self.promote(members).await
    }

    /// Removes one member silent for longer than `remove_dead_after` (one
    /// per round: each removal is a committed change the next one sees).
    async fn remove_long_silent(&self, members: &[GossipMember]) -> Result<(), ReconcileError> {
        let Some(after) = self.remove_dead_after else { return Ok(()) };
        if self.watching_since.elapsed() < after {
            return Ok(());
        }
        let membership = self.raft.metrics().borrow().membership_config.membership().clone();
        let alive_now = |id: NodeId, incarnation: &str| {
            members.iter().any(|g| g.node_id == id && g.incarnation == incarnation && g.alive)
        };
        let silent = membership.nodes().find(|(id, addr)| {
            **id != self.local.node_id
                && !alive_now(**id, &addr.incarnation)
                && !self.local.seen_within(**id, &addr.incarnation, after)
        });
        let Some((&node, _)) = silent else { return Ok(()) };
        tracing::warn!(node, ?after, "removing a member silent for longer than cluster.remove_dead_after");
        // A leader cut off from its quorum cannot commit the change; do not
        // stall the loop waiting for it.
        match tokio::time::timeout(Duration::from_secs(10), self.raft.remove_member(node)).await {
            Ok(done) => done.map_err(|source| ReconcileError::RemoveDead { node, after, source }),
            Err(_) => Ok(()),
        }
    }

    async fn promote(&self, members: &[GossipMember]) -> Result<(), ReconcileError> {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership().clone();
        let has_left = |g: &GossipMember| g.role == Some(GossipRole::Left);
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        if voters.len() >= self.voters {
            return Ok(());
        }
        let last = m.last_log_index.unwrap_or(0);
        let replication = m.replication.clone().unwrap_or_default();
        // A learner's own entry (its data directory), not one claiming its id.
        let own_entry =
            |g: &GossipMember| membership.get_node(&g.node_id).is_some_and(|n| n.incarnation == g.incarnation);
        let alive: BTreeMap<NodeId, &GossipMember> =
            members.iter().filter(|g| g.alive && !has_left(g) && own_entry(g)).map(|g| (g.node_id, g)).collect();
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
