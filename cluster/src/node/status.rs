//! What a member reports: its Raft status, the members as Raft and gossip
//! see them, and which nodes may own shards.

use std::time::Duration;

use openraft::ServerState;
use serde::Serialize;

use super::cluster::Cluster;
use crate::application::Application;
use crate::consensus::raft_ext::{MetricsExt, RaftExt};
use crate::membership::{GossipMember, GossipRole};
use crate::types::{MemberRole, NodeId};

#[derive(Debug, Clone, Serialize)]
pub struct MemberStatus {
    pub id: NodeId,
    pub rpc_addr: String,
    pub api_addr: String,
    pub role: MemberRole,
    /// Highest log index known to be replicated to this member (leader's view;
    /// for this node itself, its own last log index).
    pub matched_index: Option<u64>,
    /// The data directory the member was added with (see `identity`).
    pub incarnation: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClusterStatus {
    pub node_id: NodeId,
    /// `leader`, `follower`, `candidate`, `learner` or `shutdown`.
    pub state: String,
    pub leader: Option<NodeId>,
    pub term: u64,
    pub last_log_index: Option<u64>,
    pub applied_index: Option<u64>,
    pub snapshot_index: Option<u64>,
    pub purged_index: Option<u64>,
    /// None until this node has founded or joined a cluster.
    pub cluster_id: Option<String>,
    pub members: Vec<MemberStatus>,
}

/// A node's place in the Raft membership, as [`MemberView`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RaftRole {
    Voter,
    Learner,
    /// Heard of in gossip, not (yet) a member.
    None,
}

impl From<MemberRole> for RaftRole {
    fn from(role: MemberRole) -> Self {
        match role {
            MemberRole::Voter => Self::Voter,
            MemberRole::Learner => Self::Learner,
        }
    }
}

/// A member as the cluster sees it: Raft role plus gossip's view.
#[derive(Debug, Clone, Serialize)]
pub struct MemberView {
    pub id: NodeId,
    pub rpc_addr: String,
    pub api_addr: String,
    pub role: RaftRole,
    pub is_leader: bool,
    pub matched_index: Option<u64>,
    /// Gossip: alive, ready, and the node's own idea of its role.
    pub alive: bool,
    pub ready: bool,
    pub gossip_role: Option<GossipRole>,
    pub gossip_addr: Option<String>,
    /// The node's advertised load (work in progress).
    pub load: Option<u64>,
    /// When its cluster certificate expires (seconds since the epoch);
    /// `None` without cluster TLS or before gossip has it.
    pub certificate_expires_at: Option<i64>,
    /// Its Raft term and applied index: this node's own, else as gossip
    /// last heard them from it (a few seconds old at most).
    pub term: Option<u64>,
    pub applied_index: Option<u64>,
}

/// The names [`ClusterStatus::state`] has always used (the REST API shows them).
/// Gossip's entry for a member: the one with the member's node id *and*
/// data directory, so a node announcing a member's id from elsewhere can
/// neither stand in for it nor make it look dead or gone.
fn gossip_of<'a>(gossip: &'a [GossipMember], member: &MemberStatus) -> Option<&'a GossipMember> {
    gossip.iter().find(|g| g.node_id == member.id && g.incarnation == member.incarnation)
}

fn state_name(state: ServerState) -> &'static str {
    match state {
        ServerState::Learner => "learner",
        ServerState::Follower => "follower",
        ServerState::Candidate => "candidate",
        ServerState::Leader => "leader",
        ServerState::Shutdown => "shutdown",
    }
}

impl<A: Application> Cluster<A> {
    pub fn status(&self) -> ClusterStatus {
        let m = self.raft.metrics().borrow().clone();
        let replication = m.replication.clone().unwrap_or_default();
        let own = self.local.node_id;
        let members = m
            .membership_config
            .membership()
            .nodes()
            .map(|(id, node)| {
                let matched_index =
                    if *id == own { m.last_log_index } else { replication.get(id).and_then(|l| l.map(|l| l.index)) };
                // Our own addresses may have changed since they were recorded.
                let node = if *id == own { &self.local.advertise } else { node };
                MemberStatus {
                    id: *id,
                    rpc_addr: node.rpc.clone(),
                    api_addr: node.api.clone(),
                    role: m.role_of(*id).unwrap_or(MemberRole::Learner),
                    matched_index,
                    incarnation: node.incarnation.clone(),
                }
            })
            .collect();
        ClusterStatus {
            node_id: own,
            state: state_name(m.state).to_owned(),
            leader: m.current_leader,
            term: m.current_term,
            last_log_index: m.last_log_index,
            applied_index: m.last_applied.map(|l| l.index),
            snapshot_index: m.snapshot.map(|l| l.index),
            purged_index: m.purged.map(|l| l.index),
            cluster_id: self.local.identity.get(),
            members,
        }
    }

    /// Sets the load figure this node advertises in gossip (the application
    /// decides what it means; Caxton uses work in progress).
    pub fn publish_load(&self, load: u64) {
        self.local.set_load(load);
        // Beside it, when its certificate runs out (re-read as its file changes).
        self.local.set_cert_expiry(self.certificate_expiry().map(|(node, _)| node));
        let (term, applied) = {
            let m = self.raft.metrics();
            let m = m.borrow();
            (m.current_term, m.last_applied.map_or(0, |l| l.index))
        };
        self.local.set_progress(term, applied);
    }

    /// Raft members and gossip's view of them (and of nodes not yet members).
    pub async fn members(&self) -> Vec<MemberView> {
        let status = self.status();
        let gossip: Vec<GossipMember> = match &self.local.gossip {
            Some(g) => g.members().await,
            None => Vec::new(),
        };
        let own = self.local.node_id;
        let mut out: Vec<MemberView> = status
            .members
            .iter()
            .map(|m| {
                let g = gossip_of(&gossip, m);
                MemberView {
                    id: m.id,
                    rpc_addr: m.rpc_addr.clone(),
                    api_addr: m.api_addr.clone(),
                    role: m.role.into(),
                    is_leader: status.leader == Some(m.id),
                    matched_index: m.matched_index,
                    alive: g.map(|g| g.alive).unwrap_or(m.id == own),
                    ready: g.map(|g| g.ready).unwrap_or(m.id == own && self.is_ready()),
                    gossip_role: g.and_then(|g| g.role),
                    gossip_addr: g.map(|g| g.gossip_addr.clone()),
                    load: g.map(|g| g.load),
                    certificate_expires_at: match g {
                        Some(g) => g.cert_expiry,
                        None if m.id == own => self.certificate_expiry().map(|(node, _)| node),
                        None => None,
                    },
                    term: if m.id == own { Some(status.term) } else { g.and_then(|g| g.term) },
                    applied_index: if m.id == own { status.applied_index } else { g.and_then(|g| g.applied_index) },
                }
            })
            .collect();
        for g in gossip.iter().filter(|g| !status.members.iter().any(|m| m.id == g.node_id)) {
            out.push(MemberView {
                id: g.node_id,
                rpc_addr: g.rpc_addr.clone(),
                api_addr: g.api_addr.clone(),
                role: RaftRole::None,
                is_leader: false,
                matched_index: None,
                alive: g.alive,
                ready: g.ready,
                gossip_role: g.role,
                gossip_addr: Some(g.gossip_addr.clone()),
                load: Some(g.load),
                certificate_expires_at: g.cert_expiry,
                term: g.term,
                applied_index: g.applied_index,
            });
        }
        out
    }

    /// Nodes that may own shards: Raft members that gossip reports ready,
    /// and that have not been silent for longer than the dead grace period.
    /// Without gossip (one node), just this node.
    pub async fn placement_nodes(&self) -> Vec<NodeId> {
        let own = self.local.node_id;
        let Some(g) = &self.local.gossip else { return vec![own] };
        let status = self.status();
        let gossip = g.members().await;
        status
            .members
            .iter()
            .filter(|m| {
                if m.id == own {
                    return !self.local.has_left();
                }
                let Some(gm) = gossip_of(&gossip, m) else { return false };
                let recently = self.local.seen_within(m.id, &m.incarnation, self.dead_grace);
                gm.role != Some(GossipRole::Left) && (gm.ready || !gm.alive) && (gm.alive || recently)
            })
            .map(|m| m.id)
            .collect()
    }

    pub fn is_leader(&self) -> bool {
        self.raft.is_leading()
    }

    /// Joined and caught up: a leader is known and the replica keeps up
    /// with this node's log (it has applied what the log held a moment ago).
    pub fn is_ready(&self) -> bool {
        self.raft.metrics().borrow().is_ready(&self.local.catch_up)
    }

    /// Waits (bounded) until [`is_ready`](Self::is_ready).
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        self.raft.wait_metrics(timeout, |m| m.is_ready(&self.local.catch_up)).await
    }

    /// Voters that have not advertised `feature` in gossip (an older
    /// version, or one never heard from under its current incarnation): a
    /// command needing it must not be proposed while any exists, or that
    /// voter could not apply it. A voter gone quiet keeps what it last
    /// advertised ([`super::features`]).
    pub async fn voters_lacking(&self, feature: &str) -> Vec<NodeId> {
        let membership = self.raft.metrics().borrow().membership_config.membership().clone();
        let own = self.local.node_id;
        let others: Vec<(NodeId, String)> = membership
            .voter_ids()
            .filter(|v| *v != own)
            .map(|v| (v, membership.get_node(&v).map(|n| n.incarnation.clone()).unwrap_or_default()))
            .collect();
        if others.is_empty() {
            return Vec::new();
        }
        let gossip = match &self.local.gossip {
            Some(g) => g.members().await,
            None => Vec::new(),
        };
        // A voter's own entry (its data directory), not one claiming its id.
        let heard = gossip
            .into_iter()
            .filter(|g| others.iter().any(|(id, inc)| *id == g.node_id && *inc == g.incarnation))
            .filter_map(|g| Some(((g.node_id, g.incarnation), g.features?)));
        let advertised = self.peer_features.remember(heard, &others);
        let ids: Vec<NodeId> = others.iter().map(|(id, _)| *id).collect();
        lacking(&ids, &advertised, feature)
    }

    /// Leader changes this node has seen since it started.
    pub fn leader_changes(&self) -> u64 {
        self.leader_changes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// On the leader: how long ago a quorum last acknowledged it.
    pub fn since_quorum_ack(&self) -> Option<Duration> {
        self.raft.metrics().borrow().millis_since_quorum_ack.map(Duration::from_millis)
    }

    /// Log entries this replica recorded as failed instead of halting on them.
    pub fn failed_entries(&self) -> u64 {
        self.failed_entries.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Log entries physically stored in `raft.db` (observability for compaction).
    pub fn stored_log_entries(&self) -> u64 {
        self.log_store.stored_entries()
    }
}

/// The voters among `voters` whose advertised features lack `feature`.
fn lacking(
    voters: &[NodeId],
    advertised: &std::collections::BTreeMap<NodeId, Option<Vec<String>>>,
    feature: &str,
) -> Vec<NodeId> {
    voters
        .iter()
        .copied()
        .filter(|v| !advertised.get(v).and_then(|f| f.as_ref()).is_some_and(|f| f.iter().any(|x| x == feature)))
        .collect()
}

#[cfg(test)]
mod lacking_tests {
    use super::*;

    #[test]
    fn a_voter_lacks_a_feature_unless_its_gossip_advertises_it() {
        let advertised = std::collections::BTreeMap::from([
            (2, Some(vec!["CreateKey".to_owned(), "PruneHistory".to_owned()])),
            (3, None),
            (4, Some(vec![])),
        ]);
        assert_eq!(lacking(&[2, 3, 4, 5], &advertised, "CreateKey"), [3, 4, 5]);
        assert_eq!(lacking(&[2], &advertised, "PruneHistory"), Vec::<NodeId>::new());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The REST API and the CLI show these strings; they must not change.
    #[test]
    fn states_and_roles_keep_their_names() {
        let states = [
            ServerState::Learner,
            ServerState::Follower,
            ServerState::Candidate,
            ServerState::Leader,
            ServerState::Shutdown,
        ];
        for s in states {
            assert_eq!(state_name(s), format!("{s:?}").to_lowercase());
        }
        let roles = [(RaftRole::Voter, "voter"), (RaftRole::Learner, "learner"), (RaftRole::None, "none")];
        for (role, name) in roles {
            assert_eq!(serde_json::to_value(role).unwrap(), name);
        }
        assert_eq!(serde_json::to_value(MemberRole::Voter).unwrap(), "voter");
        assert_eq!(serde_json::to_value(MemberRole::Learner).unwrap(), "learner");
    }
}
