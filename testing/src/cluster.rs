//! Several real `caxton` processes forming a cluster on loopback.

use std::time::Duration;

use super::{eventually, eventually_some, free_port, free_udp_port, NodeOptions, TestNode};

pub struct TestCluster {
    pub nodes: Vec<TestNode>,
    /// Every node's gossip seeds, as they were started.
    seeds: Vec<String>,
    opts: ClusterOptions,
    /// With `host_names`: the hosts file every node reads.
    hosts: Option<tempfile::TempDir>,
    /// Held for the cluster's life: see `cluster_slot`.
    _slot: tokio::sync::OwnedSemaphorePermit,
    /// The CA and node certificates of a mutual-TLS cluster.
    pub pki: Option<tempfile::TempDir>,
}

/// At most two multi-process clusters run at once in a test binary: on a
/// two-core machine more would starve each other's heartbeats and turn
/// timing into flakiness instead of testing the cluster.
async fn cluster_slot() -> tokio::sync::OwnedSemaphorePermit {
    static SLOTS: std::sync::OnceLock<std::sync::Arc<tokio::sync::Semaphore>> = std::sync::OnceLock::new();
    let slots = SLOTS.get_or_init(|| std::sync::Arc::new(tokio::sync::Semaphore::new(2))).clone();
    slots.acquire_owned().await.expect("semaphore is never closed")
}

#[derive(Clone, Default)]
pub struct ClusterOptions {
    pub voters: usize,
    /// Give node N its own loopback address (127.0.0.<base+N>) for RPC and
    /// gossip, so firewall rules can cut one node off (partition tests).
    pub ip_base: Option<u8>,
    pub cluster_extra: String,
    pub tables: String,
    /// Name the processes like StatefulSet pods (HOSTNAME=caxton-N) and let
    /// them derive node id and bootstrap role from that, as on Kubernetes.
    pub statefulset: bool,
    /// Every node's bootstrap admin key (API keys on); `None`: dev mode.
    pub admin_key: Option<String>,
    /// Mutual TLS between the nodes, with a CA made for the cluster.
    pub tls: bool,
    /// With `tls`: the nodes' first certificates expire this soon.
    pub cert_valid_for: Option<Duration>,
    /// Environment variables every node gets.
    pub env: Vec<(String, String)>,
    /// Extra keys of every node's `[server]` table.
    pub server_extra: String,
    /// Node 1 starts from this data directory (copied), e.g. one restored
    /// from a backup; the others join it.
    pub founder_data: Option<std::path::PathBuf>,
    /// Nodes advertise and seed by host name (`node-N.caxton.test`), mapped
    /// to their addresses by a hosts file the test controls (needs root:
    /// each node runs in a mount namespace of its own); implies `ip_base`.
    pub host_names: bool,
    /// Every node runs with the server's default Raft timing (see
    /// [`NodeOptions::default_raft_timing`]).
    pub default_raft_timing: bool,
}

/// The host name node `id` advertises in a `host_names` cluster.
pub fn node_host(id: u64) -> String {
    format!("node-{id}.caxton.test")
}

impl TestCluster {
    /// Starts `n` nodes that find each other through gossip seeds alone;
    /// node 1 bootstraps, the others join. Returns when every node is ready
    /// and the membership has `n` members.
    pub async fn start(n: usize) -> Self {
        Self::start_with(n, ClusterOptions { voters: 3, ..Default::default() }).await
    }

    pub async fn start_with(n: usize, mut opts: ClusterOptions) -> Self {
        let slot = cluster_slot().await;
        if opts.host_names && opts.ip_base.is_none() {
            opts.ip_base = Some(40);
        }
        let gossip: Vec<u16> = (0..n).map(|_| free_udp_port()).collect();
        let seeds: Vec<String> = gossip
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let host = if opts.host_names { node_host(i as u64 + 1) } else { Self::ip_of(&opts, i as u64 + 1) };
                format!("\"{host}:{p}\"")
            })
            .collect();
        let pki = opts.tls.then(|| {
            let dir = tempfile::tempdir().expect("a directory for the cluster's certificates");
            caxton_cluster::pki::init_ca(&dir.path().join("ca"), "test", 30).expect("creating a test CA");
            super::node_certs(dir.path(), 1..=n as u64, opts.cert_valid_for);
            dir
        });
        let hosts = opts.host_names.then(|| tempfile::tempdir().expect("a directory for the hosts file"));
        let mut cluster = Self { nodes: Vec::new(), seeds, opts, hosts, _slot: slot, pki };
        for (i, gossip_port) in gossip.iter().enumerate() {
            let node = cluster.spawn_member(i as u64 + 1, *gossip_port);
            cluster.nodes.push(node);
        }
        for node in cluster.nodes.iter_mut() {
            node.wait_ready().await;
        }
        let voters = cluster.opts.voters.min(n);
        cluster.wait_members(n, voters).await;
        cluster
    }

    fn ip_of(opts: &ClusterOptions, id: u64) -> String {
        opts.ip_base.map(|b| format!("127.0.0.{}", b as u64 + id)).unwrap_or_else(|| "127.0.0.1".into())
    }

    /// Starts member `id` (not waiting for it): seeds are the cluster's.
    fn spawn_member(&mut self, id: u64, gossip_port: u16) -> TestNode {
        let opts = &self.opts;
        let ip = Self::ip_of(opts, id);
        let identity = if opts.statefulset {
            "node_id_from_hostname = true\nbootstrap = \"ordinal-0\"".to_owned()
        } else {
            format!("node_id = {id}\nbootstrap = \"{}\"", id == 1)
        };
        let tls = self.pki.as_ref().map(|d| super::cluster_tls_config(d.path(), id)).unwrap_or_default();
        let advertise = if opts.host_names { format!("advertise = \"{}\"", node_host(id)) } else { String::new() };
        let cluster_extra = format!(
            "{identity}\ngossip_listen = \"{ip}:{gossip_port}\"\nseeds = [{}]\ngossip_interval_ms = 100\ndead_grace_ms = 1500\nvoters = {}\n{advertise}\n{}\n{}",
            self.seeds.join(", "),
            opts.voters.max(1),
            opts.cluster_extra,
            tls,
        );
        let mut env = opts.env.clone();
        if opts.statefulset {
            env.push(("HOSTNAME".to_owned(), format!("caxton-{}", id - 1)));
        }
        let hosts_file = self.hosts.as_ref().map(|d| d.path().join("hosts"));
        if let Some(file) = &hosts_file {
            self.map_host(file, id, &ip);
        }
        TestNode::spawn_with(NodeOptions {
            cluster_extra,
            tables: opts.tables.clone(),
            ports: Some((free_port(), free_port())),
            rpc_host: Some(ip),
            env,
            admin_key: opts.admin_key.clone(),
            extra_config: opts.server_extra.clone(),
            seed_data: if id == 1 { opts.founder_data.clone() } else { None },
            hosts_file,
            default_raft_timing: opts.default_raft_timing,
            ..Default::default()
        })
    }

    /// Points node `id`'s host name at `ip` in the hosts file every node
    /// reads (rewritten in place: the nodes' bind mounts follow the file).
    fn map_host(&self, file: &std::path::Path, id: u64, ip: &str) {
        let existing = std::fs::read_to_string(file).unwrap_or_default();
        let name = node_host(id);
        let mut lines: Vec<String> = existing
            .lines()
            .filter(|l| l.split_whitespace().nth(1) != Some(name.as_str()))
            .map(str::to_owned)
            .collect();
        lines.push(format!("{ip} {name}"));
        std::fs::write(file, lines.join("\n") + "\n").expect("rewriting the hosts file");
    }

    /// In a `host_names` cluster: node `id`'s name now resolves to `ip`.
    pub fn move_host(&self, id: u64, ip: &str) {
        let file = self.hosts.as_ref().expect("a cluster started with host_names").path().join("hosts");
        self.map_host(&file, id, ip);
    }

    /// Starts one more member (the next node id) with the cluster's
    /// settings and seeds, and waits until it is ready. Returns its id.
    pub async fn add_node(&mut self) -> u64 {
        let id = self.nodes.len() as u64 + 1;
        let node = self.spawn_member(id, free_udp_port());
        self.nodes.push(node);
        self.nodes.last_mut().expect("just pushed").wait_ready().await;
        id
    }

    pub fn node(&self, id: u64) -> &TestNode {
        &self.nodes[(id - 1) as usize]
    }

    pub fn node_mut(&mut self, id: u64) -> &mut TestNode {
        &mut self.nodes[(id - 1) as usize]
    }

    pub fn running(&self) -> impl Iterator<Item = (u64, &TestNode)> {
        self.nodes.iter().enumerate().filter(|(_, n)| n.child.is_some()).map(|(i, n)| (i as u64 + 1, n))
    }

    /// Waits until some running node reports `members` members of which `voters` vote.
    pub async fn wait_members(&self, members: usize, voters: usize) {
        eventually(&format!("{members} members, {voters} voters"), Duration::from_secs(30), || async {
            for (_, n) in self.running() {
                let (s, st) = n.get("/v1/cluster/status").await;
                if s != 200 {
                    continue;
                }
                let m = st["members"].as_array().cloned().unwrap_or_default();
                let v = m.iter().filter(|m| m["role"] == "voter").count();
                if m.len() == members && v == voters {
                    return true;
                }
            }
            false
        })
        .await;
    }

    /// The leader as reported by a running node.
    pub async fn leader(&self) -> Option<u64> {
        for (_, n) in self.running() {
            if let Ok(r) = n.http.get(n.url("/v1/cluster/status")).timeout(Duration::from_secs(2)).send().await {
                if let Ok(st) = r.json::<serde_json::Value>().await {
                    if let Some(l) = st["leader"].as_u64() {
                        if self.nodes[(l - 1) as usize].child.is_some() {
                            return Some(l);
                        }
                    }
                }
            }
        }
        None
    }

    /// Builds a snapshot on every running node and waits until `leader` has
    /// purged its log behind it: a node that was down must then catch up
    /// by snapshot.
    pub async fn snapshot_and_purge(&self, leader: u64) {
        for (_, node) in self.running() {
            let r = node.http.post(node.url("/v1/cluster/snapshot")).send().await.unwrap();
            assert_eq!(r.status(), 200);
        }
        let node = self.node(leader);
        let (_, st) = node.get("/v1/cluster/status").await;
        eventually("the leader purged its log", Duration::from_secs(10), || async {
            node.get("/v1/cluster/status").await.1["purged_index"].as_u64() >= st["snapshot_index"].as_u64()
        })
        .await;
    }

    /// Waits until a running node names a running leader.
    pub async fn wait_leader(&self) -> u64 {
        eventually_some("a leader elected", Duration::from_secs(30), || self.leader()).await
    }

    /// Nodes that say they are leader right now.
    pub async fn self_declared_leaders(&self) -> Vec<u64> {
        let mut out = Vec::new();
        for (id, n) in self.running() {
            if let Ok(r) = n.http.get(n.url("/v1/cluster/status")).timeout(Duration::from_secs(2)).send().await {
                if let Ok(st) = r.json::<serde_json::Value>().await {
                    if st["state"] == "leader" {
                        out.push(id);
                    }
                }
            }
        }
        out
    }
}
