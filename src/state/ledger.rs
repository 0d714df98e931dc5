//! The one handle services get for the replicated state: typed writes
//! ([`Store`]), reads ([`Queries`]), committed changes ([`StateEvent`]s) and
//! what a service needs to know of the members. Only the node's wiring,
//! this handle, the store and the API's admin context hold the raw cluster.

use std::sync::Arc;

use caxton_cluster::{Cluster, ClusterStatus};
use tokio::sync::broadcast;

use super::events::StateEvent;
use super::machine::CaxtonState;
use super::queries::Queries;
use super::store::Store;

#[derive(Clone)]
pub struct Ledger {
    cluster: Arc<Cluster<CaxtonState>>,
    app: Arc<CaxtonState>,
    pub store: Store,
    pub queries: Queries,
}

impl Ledger {
    /// `app` is the state machine `cluster` was started with.
    pub fn new(cluster: Arc<Cluster<CaxtonState>>, app: Arc<CaxtonState>) -> Self {
        Self { store: Store::new(cluster.clone()), queries: Queries::new(cluster.replica().clone()), cluster, app }
    }

    /// The state machine itself (its change generations).
    pub fn state(&self) -> &Arc<CaxtonState> {
        &self.app
    }

    /// Committed changes from now on (each after it is durable).
    pub fn subscribe(&self) -> broadcast::Receiver<StateEvent> {
        self.app.subscribe()
    }

    pub fn node_id(&self) -> u64 {
        self.cluster.node_id()
    }

    pub fn is_leader(&self) -> bool {
        self.cluster.is_leader()
    }

    /// The leader as this node knows it, or this node when none is known.
    pub fn leader_or_self(&self) -> u64 {
        self.cluster.status().leader.unwrap_or(self.cluster.node_id())
    }

    /// Leader, term, members and indexes as this node sees them.
    pub fn status(&self) -> ClusterStatus {
        self.cluster.status()
    }

    /// The log index this node's replica has applied.
    pub fn applied_index(&self) -> u64 {
        self.cluster.status().applied_index.unwrap_or(0)
    }

    /// The HTTP API address of member `id`, if it is a member.
    pub fn api_addr_of(&self, id: u64) -> Option<String> {
        self.cluster.status().members.into_iter().find(|m| m.id == id).map(|m| m.api_addr)
    }

    /// Members agents may be placed on (alive voters and learners).
    pub async fn placement_nodes(&self) -> Vec<u64> {
        self.cluster.placement_nodes().await
    }

    /// Advertises this node's load (work in progress) in gossip.
    pub fn publish_load(&self, load: u64) {
        self.cluster.publish_load(load)
    }
}
