use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::types::NodeId;

/// Everything the cluster needs to start one node. Built by the application's
/// composition root from its own config; the cluster does no config parsing.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub node_id: NodeId,
    /// Directory for `raft.db`, `state.db` and `snapshots/`.
    pub data_dir: PathBuf,
    /// Where the node-to-node RPC listener binds.
    pub rpc_listen: SocketAddr,
    /// The RPC address peers use to reach this node.
    pub advertise_rpc: String,
    /// The public API address advertised to peers and clients.
    pub advertise_api: String,
    /// The cluster secret: keys the gossip seal, and on loopback dev
    /// clusters without TLS every RPC carries it. `None` accepts any peer
    /// (loopback dev only).
    pub secret: Option<String>,
    /// Mutual TLS for RPC: the cluster CA and this node's certificate and
    /// key. Required off loopback (the application's config enforces it).
    pub tls: Option<crate::transport::tls::TlsFiles>,
    /// Initialise a new cluster if the data directory is pristine.
    pub bootstrap: bool,
    pub heartbeat: Duration,
    pub election_timeout_min: Duration,
    pub election_timeout_max: Duration,
    /// Build a snapshot after this many log entries since the last one.
    pub snapshot_after_logs: u64,
    /// Log entries kept behind the last snapshot for slow followers.
    pub logs_to_keep: u64,
    /// Gossip (UDP) listen address; `None` runs without gossip (one node).
    pub gossip_listen: Option<SocketAddr>,
    /// Gossip address peers use to reach this node.
    pub advertise_gossip: Option<SocketAddr>,
    /// Seed gossip addresses (host:port; DNS names are re-resolved).
    pub seeds: Vec<String>,
    pub gossip_interval: Duration,
    /// How many voters the leader maintains; other members stay learners.
    pub voters: usize,
    /// How long a node may be silent in gossip before it is treated as dead.
    pub dead_grace: Duration,
    /// Shared by every member; nodes of another cluster are ignored.
    pub cluster_name: String,
    /// What this node can apply beyond the first version's commands,
    /// advertised in gossip: a proposer sends such a command only when every
    /// voter advertises it (see `Cluster::voters_lacking`).
    pub features: Vec<String>,
}

impl ClusterConfig {
    /// Defaults suited to one node on a laptop; tests and deployments override.
    pub fn single_node(data_dir: PathBuf, rpc_listen: SocketAddr, api: String) -> Self {
        Self {
            node_id: 1,
            data_dir,
            rpc_listen,
            advertise_rpc: rpc_listen.to_string(),
            advertise_api: api,
            secret: None,
            tls: None,
            bootstrap: true,
            heartbeat: Duration::from_millis(500),
            election_timeout_min: Duration::from_millis(1500),
            election_timeout_max: Duration::from_millis(3000),
            snapshot_after_logs: 10_000,
            logs_to_keep: 1_000,
            gossip_listen: None,
            advertise_gossip: None,
            seeds: Vec::new(),
            gossip_interval: Duration::from_millis(500),
            voters: 3,
            dead_grace: Duration::from_secs(5),
            cluster_name: "caxton".into(),
            features: Vec::new(),
        }
    }
}
