use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::types::NodeId;

/// Where a node's TLS material lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Everything the cluster needs to start one node. Built by the application's
/// composition root from its own config; the cluster does no config parsing.
/// Its `Debug` shows whether a secret is set, never the secret.
#[derive(Clone)]
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
    pub tls: Option<TlsFiles>,
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
    /// Silence after which gossip forgets a node (chitchat's dead-node
    /// grace period; its own default is a day).
    pub gossip_forget: Duration,
    /// How long a member may be silent before the leader removes it from
    /// Raft; `None`: only an operator removes members.
    pub remove_dead_after: Option<Duration>,
    /// Shared by every member; nodes of another cluster are ignored.
    pub cluster_name: String,
    /// What this node can apply beyond the first version's commands,
    /// advertised in gossip: a proposer sends such a command only when every
    /// voter advertises it (see `Cluster::voters_lacking`).
    pub features: Vec<String>,
}

impl std::fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("node_id", &self.node_id)
            .field("data_dir", &self.data_dir)
            .field("rpc_listen", &self.rpc_listen)
            .field("advertise_rpc", &self.advertise_rpc)
            .field("advertise_api", &self.advertise_api)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("tls", &self.tls)
            .field("bootstrap", &self.bootstrap)
            .field("heartbeat", &self.heartbeat)
            .field("election_timeout_min", &self.election_timeout_min)
            .field("election_timeout_max", &self.election_timeout_max)
            .field("snapshot_after_logs", &self.snapshot_after_logs)
            .field("logs_to_keep", &self.logs_to_keep)
            .field("gossip_listen", &self.gossip_listen)
            .field("advertise_gossip", &self.advertise_gossip)
            .field("seeds", &self.seeds)
            .field("gossip_interval", &self.gossip_interval)
            .field("voters", &self.voters)
            .field("dead_grace", &self.dead_grace)
            .field("gossip_forget", &self.gossip_forget)
            .field("cluster_name", &self.cluster_name)
            .field("features", &self.features)
            .finish()
    }
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
            // As the server's defaults (caxton's config/server.rs says why).
            heartbeat: Duration::from_millis(100),
            election_timeout_min: Duration::from_millis(400),
            election_timeout_max: Duration::from_millis(800),
            snapshot_after_logs: 10_000,
            logs_to_keep: 1_000,
            gossip_listen: None,
            advertise_gossip: None,
            seeds: Vec::new(),
            gossip_interval: Duration::from_millis(500),
            voters: 3,
            dead_grace: Duration::from_secs(5),
            gossip_forget: Duration::from_secs(60),
            remove_dead_after: None,
            cluster_name: "caxton".into(),
            features: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_secret() {
        let mut c = ClusterConfig::single_node("/tmp/x".into(), "127.0.0.1:1".parse().unwrap(), "a".into());
        c.secret = Some("s3cr3t-gossip-key".into());
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cr3t") && shown.contains("<redacted>"), "{shown}");
    }
}
