//! This node as both the façade and the membership manager see it.
//!
//! The façade sets what the application decides (its load, that it left);
//! the manager publishes that in gossip and records who it heard from. One
//! handle, shared behind an `Arc`, instead of a loose `Arc` per field.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::catch_up::CatchUp;
use crate::identity::ClusterIdentity;
use crate::membership::{Gossip, GossipMember};
use crate::types::{NodeAddr, NodeId};

pub(crate) struct LocalMember {
    pub node_id: NodeId,
    /// The addresses this node advertises (and its incarnation).
    pub advertise: NodeAddr,
    pub identity: Arc<ClusterIdentity>,
    /// `None` when running without gossip (one node).
    pub gossip: Option<Gossip>,
    /// What this node can apply beyond the first version's commands.
    pub features: Vec<String>,
    /// Set when this node has left: it stops advertising itself as joinable.
    left: AtomicBool,
    /// The application's load figure, published in gossip.
    load: AtomicU64,
    /// When this node's cluster certificate expires (seconds since the
    /// epoch); 0 without TLS.
    cert_expiry: std::sync::atomic::AtomicI64,
    /// Raft term and applied index, as last published (0: not yet).
    term: AtomicU64,
    applied: AtomicU64,
    /// Last time each node (id and data directory) was seen alive, for the
    /// dead grace period: another node announcing a member's id does not
    /// keep a dead member "recently seen".
    seen: Mutex<HashMap<(NodeId, String), Instant>>,
    /// Whether the replica keeps up with the log (readiness).
    pub catch_up: CatchUp,
}

impl LocalMember {
    pub fn new(
        node_id: NodeId,
        advertise: NodeAddr,
        identity: Arc<ClusterIdentity>,
        gossip: Option<Gossip>,
        features: Vec<String>,
    ) -> Self {
        Self {
            node_id,
            advertise,
            identity,
            gossip,
            features,
            left: AtomicBool::new(false),
            load: AtomicU64::new(0),
            cert_expiry: std::sync::atomic::AtomicI64::new(0),
            term: AtomicU64::new(0),
            applied: AtomicU64::new(0),
            seen: Mutex::new(HashMap::new()),
            catch_up: CatchUp::default(),
        }
    }

    pub fn has_left(&self) -> bool {
        self.left.load(Ordering::SeqCst)
    }

    pub fn mark_left(&self) {
        self.left.store(true, Ordering::SeqCst);
    }

    pub fn load(&self) -> u64 {
        self.load.load(Ordering::Relaxed)
    }

    pub fn set_load(&self, load: u64) {
        self.load.store(load, Ordering::Relaxed);
    }

    pub fn cert_expiry(&self) -> Option<i64> {
        Some(self.cert_expiry.load(Ordering::Relaxed)).filter(|t| *t > 0)
    }

    pub fn set_cert_expiry(&self, at: Option<i64>) {
        self.cert_expiry.store(at.unwrap_or(0), Ordering::Relaxed);
    }

    /// The term and applied index this node last published.
    pub fn progress(&self) -> (u64, u64) {
        (self.term.load(Ordering::Relaxed), self.applied.load(Ordering::Relaxed))
    }

    pub fn set_progress(&self, term: u64, applied: u64) {
        self.term.store(term, Ordering::Relaxed);
        self.applied.store(applied, Ordering::Relaxed);
    }

    /// Records this node and every live member of `members` as seen now.
    pub fn note_alive(&self, members: &[GossipMember]) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        seen.insert((self.node_id, self.advertise.incarnation.clone()), now);
        for m in members.iter().filter(|m| m.alive) {
            seen.insert((m.node_id, m.incarnation.clone()), now);
        }
    }

    /// Whether `node` with data directory `incarnation` was seen alive less
    /// than `grace` ago.
    pub fn seen_within(&self, node: NodeId, incarnation: &str, grace: Duration) -> bool {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.get(&(node, incarnation.to_owned())).is_some_and(|t| t.elapsed() < grace)
    }
}
