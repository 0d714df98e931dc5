//! Gossip membership (chitchat): who is out there, alive, and what each node
//! advertises. Small metadata only — addresses, readiness, role, load —
//! never agent lists (a UDP datagram carries the whole state).
//!
//! Gossip finds nodes and reports liveness; it never decides ownership or
//! membership by itself (views diverge). The Raft leader turns it into
//! decisions.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, SystemTimeError, UNIX_EPOCH};

use chitchat::transport::UdpTransport;
use chitchat::{spawn_chitchat, ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig};
use serde::Serialize;

use crate::config::ClusterConfig;
use crate::types::{NodeAddr, NodeId};

pub(crate) mod keys {
    pub const RPC: &str = "rpc";
    pub const API: &str = "api";
    pub const READY: &str = "ready";
    pub const ROLE: &str = "role";
    pub const LOAD: &str = "load";
    /// When the node's cluster certificate expires (seconds since the epoch).
    pub const CERT_EXPIRY: &str = "cert_expiry";
    /// Its Raft term and applied index (for operators: lag seen from any node).
    pub const TERM: &str = "term";
    pub const APPLIED: &str = "applied";
    pub const VERSION: &str = "version";
    /// "true" once the node belongs to an initialised Raft cluster.
    pub const INITIALIZED: &str = "initialized";
    /// The Raft cluster's id once known (see `identity`); empty before.
    pub const CLUSTER_ID: &str = "cluster_id";
    /// The node's data directory incarnation (see `identity`).
    pub const INCARNATION: &str = "incarnation";
    /// Comma-separated features (command kinds) the node can apply.
    pub const FEATURES: &str = "features";
}

/// What this node publishes before the membership manager takes over:
/// addresses and identity, and "not ready" until it has caught up.
pub(crate) fn initial_state(advertise: &NodeAddr, features: &[String]) -> Vec<(String, String)> {
    vec![
        (keys::FEATURES.to_owned(), features.join(",")),
        (keys::RPC.to_owned(), advertise.rpc.clone()),
        (keys::API.to_owned(), advertise.api.clone()),
        (keys::READY.to_owned(), "false".to_owned()),
        (keys::VERSION.to_owned(), env!("CARGO_PKG_VERSION").to_owned()),
        (keys::INCARNATION.to_owned(), advertise.incarnation.clone()),
    ]
}

/// A node's own idea of its place in the cluster, as it publishes it in
/// gossip. The string forms are the wire format other nodes read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GossipRole {
    /// Heard of, not yet in the Raft membership.
    Joining,
    Learner,
    Voter,
    /// Left on purpose: never to be re-added automatically.
    Left,
}

impl GossipRole {
    const ALL: [GossipRole; 4] = [Self::Joining, Self::Learner, Self::Voter, Self::Left];

    /// The wire form, identical to the serde form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Joining => "joining",
            Self::Learner => "learner",
            Self::Voter => "voter",
            Self::Left => "left",
        }
    }

    /// `None` for a value this version does not know (or none published yet).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GossipError {
    #[error("the system clock is before the Unix epoch: {0}")]
    Clock(#[from] SystemTimeError),
    #[error("{0}")]
    Chitchat(String),
}

#[derive(Debug, Clone)]
pub struct GossipConfig {
    pub node_id: NodeId,
    pub cluster_name: String,
    pub listen: SocketAddr,
    pub advertise: SocketAddr,
    /// host:port entries; DNS names are re-resolved (headless services).
    pub seeds: Vec<String>,
    pub interval: Duration,
    /// How long a silent node is remembered.
    pub forget: Duration,
    /// Seals every datagram with a key derived from it (see `sealed_gossip`);
    /// `None` (loopback development only): plain chitchat.
    pub secret: Option<String>,
}

impl GossipConfig {
    pub fn new(config: &ClusterConfig, listen: SocketAddr) -> Self {
        Self {
            node_id: config.node_id,
            cluster_name: config.cluster_name.clone(),
            listen,
            advertise: config.advertise_gossip.unwrap_or(listen),
            seeds: config.seeds.clone(),
            interval: config.gossip_interval,
            forget: config.gossip_forget,
            secret: config.secret.clone(),
        }
    }
}

/// One node as gossip sees it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GossipMember {
    pub node_id: NodeId,
    pub generation: u64,
    pub gossip_addr: String,
    pub rpc_addr: String,
    pub api_addr: String,
    pub ready: bool,
    pub initialized: bool,
    /// Empty while the node is pristine.
    pub cluster_id: String,
    pub incarnation: String,
    /// `None` until the node publishes a role this version knows.
    pub role: Option<GossipRole>,
    pub load: u64,
    /// When its cluster certificate expires (seconds since the epoch); `None` without TLS.
    pub cert_expiry: Option<i64>,
    /// Its Raft term and applied index as it last published them.
    pub term: Option<u64>,
    pub applied_index: Option<u64>,
    pub version: String,
    /// `None` for a node of a version that advertises no features.
    pub features: Option<Vec<String>>,
    pub alive: bool,
}

pub struct Gossip {
    handle: ChitchatHandle,
}

impl Gossip {
    pub async fn start(config: GossipConfig, initial: Vec<(String, String)>) -> Result<Self, GossipError> {
        // A restarted node gets a new generation so its previous life, still
        // remembered by peers, is not confused with it.
        let generation = SystemTime::now().duration_since(UNIX_EPOCH)?.as_micros() as u64;
        let id = ChitchatId::new(config.node_id.to_string(), generation, config.advertise);
        let failure = FailureDetectorConfig {
            // Let the failure detector flag a silent node after a few missed rounds.
            initial_interval: config.interval * 2,
            max_interval: Duration::from_secs(10),
            // Forget dead generations after `cluster.gossip_forget_ms` (a
            // minute by default; chitchat's own default is a day).
            dead_node_grace_period: config.forget,
            ..FailureDetectorConfig::default()
        };
        let chitchat_config = ChitchatConfig {
            chitchat_id: id,
            cluster_id: config.cluster_name.clone(),
            gossip_interval: config.interval,
            listen_addr: config.listen,
            seed_nodes: config.seeds,
            failure_detector_config: failure,
            marked_for_deletion_grace_period: Duration::from_secs(3600),
            catchup_callback: None,
            extra_liveness_predicate: None,
            protocol_version: chitchat::ProtocolVersion::V0,
        };
        let handle = match &config.secret {
            Some(secret) => {
                let sealed =
                    crate::sealed_gossip::SealedTransport::new(secret, &config.cluster_name, Default::default());
                spawn_chitchat(chitchat_config, initial, &sealed).await
            }
            None => spawn_chitchat(chitchat_config, initial, &UdpTransport).await,
        }
        .map_err(|e| GossipError::Chitchat(format!("{e:#}")))?;
        Ok(Self { handle })
    }

    /// Publishes this node's metadata.
    pub async fn set(&self, pairs: &[(&str, String)]) {
        let chitchat = self.handle.chitchat();
        let mut c = chitchat.lock().await;
        let state = c.self_node_state();
        for (k, v) in pairs {
            if state.get(k) != Some(v.as_str()) {
                state.set(*k, v);
            }
        }
    }

    /// Every node heard of, newest generation per node id and data
    /// directory, with liveness. Two entries can share a node id (a wiped
    /// node back under its old id, or a node claiming another's): callers
    /// that mean a member match its incarnation too.
    pub async fn members(&self) -> Vec<GossipMember> {
        let chitchat = self.handle.chitchat();
        let c = chitchat.lock().await;
        let live: HashSet<ChitchatId> = c.live_nodes().cloned().collect();
        let mut newest: BTreeMap<(NodeId, String), GossipMember> = BTreeMap::new();
        for (id, state) in c.node_states() {
            let Ok(node_id) = id.node_id.parse::<NodeId>() else { continue };
            let get = |k: &str| state.get(k).unwrap_or_default().to_owned();
            let member = GossipMember {
                node_id,
                generation: id.generation_id,
                gossip_addr: id.gossip_advertise_addr.to_string(),
                rpc_addr: get(keys::RPC),
                api_addr: get(keys::API),
                ready: state.get(keys::READY) == Some("true"),
                initialized: state.get(keys::INITIALIZED) == Some("true"),
                cluster_id: get(keys::CLUSTER_ID),
                incarnation: get(keys::INCARNATION),
                role: state.get(keys::ROLE).and_then(GossipRole::parse),
                load: get(keys::LOAD).parse().unwrap_or(0),
                cert_expiry: get(keys::CERT_EXPIRY).parse().ok().filter(|t: &i64| *t > 0),
                term: get(keys::TERM).parse().ok(),
                applied_index: get(keys::APPLIED).parse().ok().filter(|i: &u64| *i > 0),
                version: get(keys::VERSION),
                features: state
                    .get(keys::FEATURES)
                    .map(|f| f.split(',').filter(|x| !x.is_empty()).map(str::to_owned).collect()),
                alive: live.contains(id),
            };
            let key = (node_id, member.incarnation.clone());
            match newest.get(&key) {
                Some(m) if m.generation >= member.generation => {}
                _ => {
                    newest.insert(key, member);
                }
            }
        }
        newest.into_values().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Other nodes (of this version and older ones) read these strings.
    #[test]
    fn roles_keep_their_wire_and_json_forms() {
        let expected = [
            (GossipRole::Joining, "joining"),
            (GossipRole::Learner, "learner"),
            (GossipRole::Voter, "voter"),
            (GossipRole::Left, "left"),
        ];
        for (role, s) in expected {
            assert_eq!(role.as_str(), s);
            assert_eq!(serde_json::to_value(role).unwrap(), s);
            assert_eq!(GossipRole::parse(s), Some(role));
        }
        assert_eq!(GossipRole::parse(""), None);
        assert_eq!(GossipRole::parse("observer"), None);
    }
}
