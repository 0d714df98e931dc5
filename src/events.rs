//! The cluster event feed behind `GET /v1/events`: agent lifecycle and
//! placement moves (from the committed state, so every node tells the same
//! story), leader and membership changes (from this node's view of Raft).
//! Each event is also one structured log line (`caxton::events`), written
//! once per node whatever the number of listeners.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use caxton_cluster::MemberRole;
use serde::Serialize;
use tokio::sync::broadcast;

use crate::state::{Ledger, StateEvent};

/// One cluster event, as SSE data (`event:` is its `kind`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ClusterEvent {
    /// agent_deployed, agent_updated, agent_removed, agent_moved,
    /// leader_changed, member_added, member_removed, member_role_changed,
    /// rollout_progressing, rollout_paused, rollout_promoted,
    /// rollout_aborted, rollout_rolled_back, rollout_superseded,
    /// agent_limit_reached.
    pub kind: &'static str,
    pub at_ms: i64,
    /// The node that reports it.
    pub node: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_owner: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub term: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    /// A rollout's step (0-based).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<u32>,
    /// The agent limit reached (`agent_limit_reached`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<String>,
}

impl ClusterEvent {
    fn new(kind: &'static str, node: u64) -> Self {
        Self {
            kind,
            at_ms: crate::time::now_ms(),
            node,
            agent: None,
            revision: None,
            owner: None,
            previous_owner: None,
            leader: None,
            term: None,
            member: None,
            role: None,
            step: None,
            limit: None,
        }
    }
}

/// Subscribers receive events from the moment they subscribe.
pub struct EventFeed {
    tx: broadcast::Sender<ClusterEvent>,
}

/// How often this node's view of leader and membership is compared.
const MEMBERSHIP_POLL: Duration = Duration::from_millis(200);

impl EventFeed {
    pub fn new() -> Arc<Self> {
        Arc::new(Self { tx: broadcast::channel(1024).0 })
    }

    pub fn subscribe(&self) -> broadcast::Receiver<ClusterEvent> {
        self.tx.subscribe()
    }

    fn publish(&self, event: ClusterEvent) {
        tracing::info!(
            target: "caxton::events",
            kind = event.kind,
            agent = event.agent.as_deref(),
            revision = event.revision,
            owner = event.owner,
            previous_owner = event.previous_owner,
            leader = event.leader,
            term = event.term,
            member = event.member,
            role = event.role,
            "cluster event"
        );
        let _ = self.tx.send(event);
    }

    /// Turns committed state changes and Raft's view into events until the
    /// node stops. `owners` starts from the agents already deployed, so a
    /// restart reports changes, not the whole registry.
    pub async fn run(
        self: Arc<Self>,
        ledger: Ledger,
        mut state: broadcast::Receiver<StateEvent>,
        mut owners: HashMap<String, (u64, u64)>,
    ) {
        let node = ledger.node_id();
        let mut view = RaftView::of(&ledger);
        let mut poll = tokio::time::interval(MEMBERSHIP_POLL);
        loop {
            tokio::select! {
                event = state.recv() => match event {
                    Ok(StateEvent::AgentDeployed { name, revision, owner }) => {
                        let previous = owners.insert(name.key(), (revision, owner));
                        let kind = match previous {
                            None => "agent_deployed",
                            Some((r, _)) if r != revision => "agent_updated",
                            Some((_, o)) if o != owner => "agent_moved",
                            Some(_) => continue,
                        };
                        let mut e = ClusterEvent::new(kind, node);
                        e.agent = Some(name.to_string());
                        e.revision = Some(revision);
                        e.owner = Some(owner);
                        e.previous_owner = previous.map(|(_, o)| o).filter(|o| *o != owner);
                        self.publish(e);
                    }
                    Ok(StateEvent::AgentRemoved { name }) => {
                        owners.remove(&name.key());
                        let mut e = ClusterEvent::new("agent_removed", node);
                        e.agent = Some(name.to_string());
                        self.publish(e);
                    }
                    Ok(StateEvent::RolloutChanged { agent, state, step }) => {
                        use crate::state::RolloutState as S;
                        let kind = match state {
                            S::Progressing => "rollout_progressing",
                            S::Paused => "rollout_paused",
                            S::Promoted => "rollout_promoted",
                            S::Aborted => "rollout_aborted",
                            S::RolledBack => "rollout_rolled_back",
                            S::Superseded => "rollout_superseded",
                        };
                        let mut e = ClusterEvent::new(kind, node);
                        e.agent = Some(agent);
                        e.step = Some(step);
                        self.publish(e);
                    }
                    Ok(StateEvent::LimitReached { agent, limit }) => {
                        let mut e = ClusterEvent::new("agent_limit_reached", node);
                        e.agent = Some(agent);
                        e.limit = Some(limit);
                        self.publish(e);
                    }
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = poll.tick() => {
                    let now = RaftView::of(&ledger);
                    for e in view.changes_to(&now, node) {
                        self.publish(e);
                    }
                    view = now;
                }
            }
        }
    }
}

/// What this node sees of Raft: the leader and the members with roles.
#[derive(Debug, Clone, PartialEq)]
struct RaftView {
    leader: Option<u64>,
    term: u64,
    members: BTreeMap<u64, MemberRole>,
}

fn role_name(role: MemberRole) -> &'static str {
    match role {
        MemberRole::Voter => "voter",
        MemberRole::Learner => "learner",
    }
}

impl RaftView {
    fn of(ledger: &Ledger) -> Self {
        let s = ledger.status();
        Self { leader: s.leader, term: s.term, members: s.members.iter().map(|m| (m.id, m.role)).collect() }
    }

    fn changes_to(&self, now: &RaftView, node: u64) -> Vec<ClusterEvent> {
        let mut out = Vec::new();
        if now.leader != self.leader && now.leader.is_some() {
            let mut e = ClusterEvent::new("leader_changed", node);
            e.leader = now.leader;
            e.term = Some(now.term);
            out.push(e);
        }
        for (id, role) in &now.members {
            let kind = match self.members.get(id) {
                None => "member_added",
                Some(before) if before != role => "member_role_changed",
                Some(_) => continue,
            };
            let mut e = ClusterEvent::new(kind, node);
            e.member = Some(*id);
            e.role = Some(role_name(*role));
            out.push(e);
        }
        for id in self.members.keys().filter(|id| !now.members.contains_key(id)) {
            let mut e = ClusterEvent::new("member_removed", node);
            e.member = Some(*id);
            out.push(e);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_view_reports_leader_and_membership_changes() {
        let before = RaftView {
            leader: Some(1),
            term: 3,
            members: BTreeMap::from([(1, MemberRole::Voter), (2, MemberRole::Learner), (3, MemberRole::Voter)]),
        };
        let after = RaftView {
            leader: Some(2),
            term: 4,
            members: BTreeMap::from([(1, MemberRole::Voter), (2, MemberRole::Voter), (4, MemberRole::Learner)]),
        };
        let kinds: Vec<(&str, Option<u64>)> =
            before.changes_to(&after, 9).iter().map(|e| (e.kind, e.member.or(e.leader))).collect();
        assert_eq!(
            kinds,
            [
                ("leader_changed", Some(2)),
                ("member_role_changed", Some(2)),
                ("member_added", Some(4)),
                ("member_removed", Some(3))
            ]
        );
        assert!(after.changes_to(&after, 9).is_empty());
    }
}
