//! Joining: a node becomes a member by asking the leader over RPC, where it
//! has proved its identity (its certificate names the node id it asks to
//! join as). Gossip only tells it whom to ask; the leader never adds a node
//! because gossip mentions it.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Peer, RpcClient};
use crate::consensus::raft_ext::RaftExt;
use crate::local_member::LocalMember;
use crate::membership::GossipMember;
use crate::types::{NodeAddr, NodeId, Raft};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct JoinRequest {
    pub node_id: NodeId,
    pub addr: NodeAddr,
    /// What the newcomer can apply beyond the first version's commands.
    pub features: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum JoinAnswer {
    /// Added as a learner, now or before.
    Added,
    /// Ask the leader instead (`None`: no leader is known right now).
    NotLeader {
        leader_rpc: Option<String>,
    },
    Refused(String),
}

const JOIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The leader's side: adds the sender as a learner unless its node id
/// already belongs to another data directory, or it lacks a feature the
/// cluster's voters use.
pub(crate) async fn admit(raft: &Raft, local: &LocalMember, request: JoinRequest) -> JoinAnswer {
    let metrics = raft.metrics().borrow().clone();
    if !raft.is_leading() {
        let leader_rpc = metrics
            .current_leader
            .and_then(|l| metrics.membership_config.membership().get_node(&l).map(|n| n.rpc.clone()));
        return JoinAnswer::NotLeader { leader_rpc };
    }
    let membership = metrics.membership_config.membership();
    if let Some(existing) = membership.get_node(&request.node_id) {
        return if existing.incarnation == request.addr.incarnation {
            if *existing == request.addr {
                JoinAnswer::Added
            } else {
                readdress(raft, request.node_id, existing, &request.addr).await
            }
        } else {
            JoinAnswer::Refused(format!(
                "node id {} is already a member with another data directory (incarnation {}, this one is {}): \
                 remove it first (`caxton cluster remove {}`) if it was replaced",
                request.node_id, existing.incarnation, request.addr.incarnation, request.node_id
            ))
        };
    }
    let voters = membership.voter_ids().filter_map(|v| membership.get_node(&v).map(|n| (v, n.incarnation.clone())));
    let lacking = features_in_use(local, voters.collect()).await;
    let lacking: Vec<&String> = lacking.iter().filter(|f| !request.features.contains(f)).collect();
    if !lacking.is_empty() {
        return JoinAnswer::Refused(format!(
            "node {} cannot apply {lacking:?}, which every voter of this cluster supports: upgrade it before it joins",
            request.node_id
        ));
    }
    tracing::info!(node = request.node_id, rpc = %request.addr.rpc, "adding node as learner");
    match raft.add_learner(request.node_id, request.addr, false).await {
        Ok(_) => JoinAnswer::Added,
        Err(e) => JoinAnswer::Refused(format!("cannot add node {} as a learner: {e}", request.node_id)),
    }
}

/// A member that came back on new addresses (a recreated pod's new IP):
/// its record is updated through Raft, so every node, the leader's
/// replication first, dials it there. Its identity was proved on this
/// request (the certificate's node id, or the secret on loopback) and its
/// data directory is the one it was added with.
pub(crate) async fn readdress(raft: &Raft, node_id: NodeId, old: &NodeAddr, new: &NodeAddr) -> JoinAnswer {
    tracing::info!(node = node_id, from = %old, to = %new, "member moved: updating its addresses");
    let nodes = std::collections::BTreeMap::from([(node_id, new.clone())]);
    match raft.change_membership(openraft::ChangeMembers::SetNodes(nodes), false).await {
        Ok(_) => JoinAnswer::Added,
        Err(e) => JoinAnswer::Refused(format!("cannot update node {node_id}'s addresses: {e}")),
    }
}

/// Features every voter advertises (this node's own included): a newcomer
/// must have them, since entries using them may already be in the log.
async fn features_in_use(local: &LocalMember, voters: BTreeSet<(NodeId, String)>) -> BTreeSet<String> {
    let mut common: BTreeSet<String> = local.features.iter().cloned().collect();
    let Some(gossip) = &local.gossip else { return common };
    let members = gossip.members().await;
    for (voter, incarnation) in voters.iter().filter(|(v, _)| *v != local.node_id) {
        let advertised: BTreeSet<String> = members
            .iter()
            .find(|m| m.node_id == *voter && m.incarnation == *incarnation)
            .and_then(|m| m.features.clone())
            .unwrap_or_default()
            .into_iter()
            .collect();
        common = common.intersection(&advertised).cloned().collect();
    }
    common
}

/// The newcomer's side: asks members gossip reports as belonging to a
/// cluster (ours, once we know it) until one, or the leader it names,
/// admits this node.
pub(crate) async fn request_admission(
    rpc: &RpcClient,
    local: &LocalMember,
    members: &[GossipMember],
) -> Option<JoinAnswer> {
    let ours = local.identity.get();
    let request =
        JoinRequest { node_id: local.node_id, addr: local.advertise.clone(), features: local.features.clone() };
    let candidates = members.iter().filter(|m| {
        m.node_id != local.node_id
            && m.alive
            && m.initialized
            && !m.rpc_addr.is_empty()
            && ours.as_ref().is_none_or(|ours| *ours == m.cluster_id)
    });
    let mut last = None;
    for member in candidates {
        let mut addr = member.rpc_addr.clone();
        // One redirect: the member named the leader.
        for _ in 0..2 {
            let answer =
                rpc.call_member::<_, JoinAnswer>(Peer::at(&addr), super::paths::JOIN, &request, JOIN_TIMEOUT).await;
            match answer {
                Ok(JoinAnswer::NotLeader { leader_rpc: Some(leader) }) if leader != addr => addr = leader,
                Ok(answer) => {
                    last = Some(answer);
                    break;
                }
                Err(e) => {
                    tracing::debug!(peer = %addr, error = %e, "join request failed");
                    break;
                }
            }
        }
        if last == Some(JoinAnswer::Added) {
            break;
        }
    }
    last
}
