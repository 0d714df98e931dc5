//! The façade: one running cluster member replicating an [`Application`].

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{ClientWriteError, RaftError};
use std::collections::BTreeSet;

use openraft::{ChangeMembers, ServerState, SnapshotPolicy};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::application::Application;
use crate::codec;
use crate::config::ClusterConfig;
use crate::consensus::log_store::LogStore;
use crate::consensus::network::Network;
use crate::consensus::state_machine::StateMachine;
use crate::identity::ClusterIdentity;
use crate::manager::Manager;
use crate::membership::{Gossip, GossipConfig, GossipMember};
use crate::replica::{ReadError, Replica};
use crate::transport::{self, paths, AdminRequest, RpcClient, RpcState};
use crate::types::{NodeAddr, NodeId, Payload, Raft, Reply};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create data directory {path}: {source}")]
    DataDir { path: String, source: std::io::Error },
    #[error("cannot open {path}: {source}")]
    Store { path: String, source: rusqlite::Error },
    #[error("invalid raft settings: {0}")]
    Config(String),
    #[error("raft failed to start: {0}")]
    Raft(String),
    #[error("cannot listen for cluster RPC on {addr}: {source}")]
    Listen { addr: String, source: std::io::Error },
    #[error("cannot start gossip on {addr}: {reason}")]
    Gossip { addr: String, reason: String },
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("node {0} is not a member of this cluster")]
    UnknownNode(NodeId),
    #[error("{0}")]
    Refused(String),
    #[error("no leader is known; retry shortly")]
    NoLeader,
    #[error("cannot reach node {node} at {addr}: {reason}")]
    Unreachable { node: NodeId, addr: String, reason: String },
}

/// A member as the cluster sees it: Raft role plus gossip's view.
#[derive(Debug, Clone, Serialize)]
pub struct MemberView {
    pub id: NodeId,
    pub rpc_addr: String,
    pub api_addr: String,
    /// `voter`, `learner`, or `none` (heard of in gossip, not yet a member).
    pub role: String,
    pub is_leader: bool,
    pub matched_index: Option<u64>,
    /// Gossip: alive, ready, and the node's own idea of its role.
    pub alive: bool,
    pub ready: bool,
    pub gossip_role: Option<String>,
    pub gossip_addr: Option<String>,
    /// The node's advertised load (work in progress).
    pub load: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("no leader is known yet (election in progress?); retry shortly")]
    NoLeader,
    #[error("the leader at {addr} could not be reached: {reason}")]
    LeaderUnreachable { addr: String, reason: String },
    #[error("the write was not committed within {0:?}")]
    Timeout(Duration),
    #[error("the write was not committed within {0:?}: too few voters are reachable to form a quorum")]
    NoQuorum(Duration),
    #[error("this node is shutting down or has failed: {0}")]
    Fatal(String),
    #[error("the cluster refused the write: {0}")]
    Rejected(String),
    #[error("undecodable response from the state machine: {0}")]
    Decode(#[from] codec::CodecError),
}

/// A node's role in the membership.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberRole {
    Voter,
    Learner,
}

#[derive(Debug, Clone, Serialize)]
pub struct MemberStatus {
    pub id: NodeId,
    pub rpc_addr: String,
    pub api_addr: String,
    pub role: MemberRole,
    /// Highest log index known to be replicated to this member (leader's view;
    /// for this node itself, its own last log index).
    pub matched_index: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClusterStatus {
    pub node_id: NodeId,
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

/// One running member. Cheap to share behind an `Arc`.
pub struct Cluster<A: Application> {
    node_id: NodeId,
    raft: Raft,
    replica: Replica,
    rpc: RpcClient,
    log_store: LogStore,
    advertise: NodeAddr,
    stop: CancellationToken,
    rpc_server: tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    gossip: Option<Arc<Gossip>>,
    left: Arc<std::sync::atomic::AtomicBool>,
    seen: Arc<std::sync::Mutex<std::collections::HashMap<NodeId, Instant>>>,
    dead_grace: Duration,
    load: Arc<std::sync::atomic::AtomicU64>,
    identity: Arc<ClusterIdentity>,
    _app: PhantomData<A>,
}

/// How long a forwarded or local write may take before the caller hears back.
const WRITE_DEADLINE: Duration = Duration::from_secs(10);

impl<A: Application> Cluster<A> {
    pub async fn start(config: ClusterConfig, app: Arc<A>) -> Result<Self, StartError> {
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|source| StartError::DataDir { path: config.data_dir.display().to_string(), source })?;
        let raft_db = config.data_dir.join("raft.db");
        let state_db = config.data_dir.join("state.db");
        let log_store = LogStore::open(&raft_db)
            .map_err(|source| StartError::Store { path: raft_db.display().to_string(), source })?;
        let state_machine = StateMachine::open(app, &state_db, &config.data_dir.join("snapshots"))
            .map_err(|source| StartError::Store { path: state_db.display().to_string(), source })?;

        let raft_config = openraft::Config {
            cluster_name: "caxton".into(),
            heartbeat_interval: config.heartbeat.as_millis() as u64,
            election_timeout_min: config.election_timeout_min.as_millis() as u64,
            election_timeout_max: config.election_timeout_max.as_millis() as u64,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_after_logs),
            max_in_snapshot_log_to_keep: config.logs_to_keep,
            // Purge as soon as a snapshot covers entries: they are only ever
            // candidates right after one, so batching buys nothing.
            purge_batch_size: 1,
            max_payload_entries: 512,
            ..Default::default()
        }
        .validate()
        .map_err(|e| StartError::Config(e.to_string()))?;

        let bind_ip = Some(config.rpc_listen.ip()).filter(|ip| !ip.is_unspecified());
        let identity = Arc::new(
            ClusterIdentity::load(log_store.clone())
                .map_err(|source| StartError::Store { path: raft_db.display().to_string(), source })?,
        );
        let rpc = RpcClient::new(config.secret.clone(), identity.clone(), bind_ip);
        let raft = Raft::new(
            config.node_id,
            Arc::new(raft_config),
            Network { client: rpc.clone() },
            log_store.clone(),
            state_machine,
        )
        .await
        .map_err(|e| StartError::Raft(e.to_string()))?;

        let listener = tokio::net::TcpListener::bind(config.rpc_listen)
            .await
            .map_err(|source| StartError::Listen { addr: config.rpc_listen.to_string(), source })?;
        let stop = CancellationToken::new();
        let router = transport::router(Arc::new(RpcState {
            raft: raft.clone(),
            secret: config.secret.clone(),
            identity: identity.clone(),
        }));
        let server_stop = stop.clone();
        let rpc_server = tokio::spawn(async move {
            let serve = axum::serve(listener, router).with_graceful_shutdown(server_stop.cancelled_owned());
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "cluster RPC server failed");
            }
        });

        let advertise = NodeAddr {
            rpc: config.advertise_rpc.clone(),
            api: config.advertise_api.clone(),
            incarnation: identity.incarnation().to_owned(),
        };
        let gossip = match config.gossip_listen {
            None => None,
            Some(listen) => {
                let gossip_config = GossipConfig {
                    node_id: config.node_id,
                    cluster_name: config.cluster_name.clone(),
                    listen,
                    advertise: config.advertise_gossip.unwrap_or(listen),
                    seeds: config.seeds.clone(),
                    interval: config.gossip_interval,
                };
                let initial = vec![
                    (crate::membership::keys::RPC.to_owned(), advertise.rpc.clone()),
                    (crate::membership::keys::API.to_owned(), advertise.api.clone()),
                    (crate::membership::keys::READY.to_owned(), "false".to_owned()),
                    (crate::membership::keys::VERSION.to_owned(), env!("CARGO_PKG_VERSION").to_owned()),
                    (crate::membership::keys::INCARNATION.to_owned(), advertise.incarnation.clone()),
                ];
                let g = Gossip::start(gossip_config, initial)
                    .await
                    .map_err(|e| StartError::Gossip { addr: listen.to_string(), reason: e.to_string() })?;
                Some(Arc::new(g))
            }
        };
        let left = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let load = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let seen = Arc::new(std::sync::Mutex::new(std::collections::HashMap::new()));
        if let Some(g) = &gossip {
            let manager = Manager {
                raft: raft.clone(),
                gossip: g.clone(),
                node_id: config.node_id,
                advertise: advertise.clone(),
                voters: config.voters.max(1),
                left: left.clone(),
                seen: seen.clone(),
                load: load.clone(),
                identity: identity.clone(),
                foreign: Default::default(),
            };
            tokio::spawn(manager.run(stop.clone()));
        }
        let cluster = Self {
            node_id: config.node_id,
            raft,
            replica: Replica::new(state_db),
            rpc,
            log_store,
            advertise,
            stop,
            rpc_server: tokio::sync::Mutex::new(Some(rpc_server)),
            gossip,
            left,
            seen,
            dead_grace: config.dead_grace,
            load,
            identity,
            _app: PhantomData,
        };
        if config.bootstrap {
            cluster.bootstrap_if_pristine(!config.seeds.is_empty(), config.gossip_interval).await?;
        }
        Ok(cluster)
    }

    /// Initialises a one-voter cluster, but only on a data directory that has
    /// never been part of one: initialising twice could fork history.
    async fn bootstrap_if_pristine(&self, has_seeds: bool, gossip_interval: Duration) -> Result<(), StartError> {
        let initialized = self.raft.is_initialized().await.map_err(|e| StartError::Raft(e.to_string()))?;
        if initialized {
            return Ok(());
        }
        // With seeds, listen first: if any peer already belongs to a cluster,
        // join it rather than found a second one.
        if let (true, Some(g)) = (has_seeds, &self.gossip) {
            let deadline = Instant::now() + gossip_interval * 6 + Duration::from_millis(500);
            while Instant::now() < deadline {
                let members = g.members().await;
                if members.iter().any(|m| m.node_id != self.node_id && m.alive && m.initialized) {
                    tracing::info!(
                        node_id = self.node_id,
                        "a peer already belongs to a cluster: joining it instead of bootstrapping"
                    );
                    return Ok(());
                }
                tokio::time::sleep(gossip_interval / 2).await;
            }
        }
        let members = BTreeMap::from([(self.node_id, self.advertise.clone())]);
        let cluster_id = self.identity.found().map_err(|e| StartError::Raft(e.to_string()))?;
        tracing::info!(node_id = self.node_id, %cluster_id, "pristine data directory: initialising a new cluster");
        self.raft.initialize(members).await.map_err(|e| StartError::Raft(e.to_string()))
    }

    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    pub fn replica(&self) -> &Replica {
        &self.replica
    }

    /// Reads this node's replica as applied so far.
    pub async fn read<R, F>(&self, f: F) -> Result<R, ReadError>
    where
        R: Send + 'static,
        F: FnOnce(&rusqlite::Connection) -> rusqlite::Result<R> + Send + 'static,
    {
        self.replica.read(f).await
    }

    /// Commits a command through Raft and returns the state machine's answer.
    /// Forwards to the leader when this node is not it.
    pub async fn write(&self, command: &A::Command) -> Result<A::Response, WriteError> {
        let payload = Payload(codec::encode_app(command));
        let deadline = Instant::now() + WRITE_DEADLINE;
        loop {
            let attempt = self.write_once(payload.clone()).await;
            match attempt {
                Err(WriteError::NoLeader) | Err(WriteError::LeaderUnreachable { .. }) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(WriteError::NoLeader) => return Err(WriteError::Timeout(WRITE_DEADLINE)),
                Ok((reply, index)) => {
                    // Read-your-writes on every node: a forwarded write
                    // returns once this node's replica has applied it too.
                    self.wait_applied(index, WRITE_DEADLINE).await;
                    return Ok(codec::decode_app(&reply.0)?);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Waits (bounded) until this node has applied `index`.
    async fn wait_applied(&self, index: u64, timeout: Duration) {
        self.wait_metrics(timeout, |m| m.last_applied.map(|l| l.index) >= Some(index)).await;
    }

    /// Waits (bounded) until the Raft metrics satisfy `done`; true if they did.
    async fn wait_metrics(&self, timeout: Duration, done: impl Fn(&RaftMetrics) -> bool) -> bool {
        let mut metrics = self.raft.metrics();
        let deadline = Instant::now() + timeout;
        loop {
            if done(&metrics.borrow()) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            let _ = tokio::time::timeout(Duration::from_millis(50), metrics.changed()).await;
        }
    }

    async fn write_once(&self, payload: Payload) -> Result<(Reply, u64), WriteError> {
        // A leader cut off from its quorum keeps believing it leads; without
        // a bound the write would wait for a commit that cannot happen.
        let written = tokio::time::timeout(WRITE_DEADLINE, self.raft.client_write(payload.clone()))
            .await
            .map_err(|_| WriteError::NoQuorum(WRITE_DEADLINE))?;
        match written {
            Ok(resp) => Ok((resp.data, resp.log_id.index)),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => match f.leader_node {
                Some(node) => self.forward(&node.rpc, payload).await,
                None => Err(WriteError::NoLeader),
            },
            Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => {
                Err(WriteError::Rejected(e.to_string()))
            }
            Err(RaftError::Fatal(e)) => Err(WriteError::Fatal(e.to_string())),
        }
    }

    async fn forward(&self, leader_rpc: &str, payload: Payload) -> Result<(Reply, u64), WriteError> {
        type Answer = Result<(Reply, u64), RaftError<NodeId, ClientWriteError<NodeId, NodeAddr>>>;
        let answer: Answer = self
            .rpc
            .call(leader_rpc, paths::WRITE, &payload, WRITE_DEADLINE)
            .await
            .map_err(|e| WriteError::LeaderUnreachable { addr: leader_rpc.into(), reason: e.to_string() })?;
        match answer {
            Ok(reply) => Ok(reply),
            // The leader moved between our look-up and its answer: retry.
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => Err(WriteError::NoLeader),
            Err(e) => Err(WriteError::Rejected(e.to_string())),
        }
    }

    /// Waits until this node's replica reflects every write committed before
    /// the call (leader only; followers answer `NotLeader`).
    pub async fn linearizable(&self) -> Result<(), WriteError> {
        self.raft.ensure_linearizable().await.map(|_| ()).map_err(|e| WriteError::Rejected(e.to_string()))
    }

    pub fn status(&self) -> ClusterStatus {
        let m = self.raft.metrics().borrow().clone();
        let replication = m.replication.clone().unwrap_or_default();
        let membership = m.membership_config.membership();
        let voters: std::collections::BTreeSet<NodeId> = membership.voter_ids().collect();
        let members = membership
            .nodes()
            .map(|(id, node)| {
                let matched_index = if *id == self.node_id {
                    m.last_log_index
                } else {
                    replication.get(id).and_then(|l| l.map(|l| l.index))
                };
                // Our own addresses may have changed since they were recorded.
                let node = if *id == self.node_id { &self.advertise } else { node };
                MemberStatus {
                    id: *id,
                    rpc_addr: node.rpc.clone(),
                    api_addr: node.api.clone(),
                    role: if voters.contains(id) { MemberRole::Voter } else { MemberRole::Learner },
                    matched_index,
                }
            })
            .collect();
        ClusterStatus {
            node_id: self.node_id,
            state: format!("{:?}", m.state).to_lowercase(),
            leader: m.current_leader,
            term: m.current_term,
            last_log_index: m.last_log_index,
            applied_index: m.last_applied.map(|l| l.index),
            snapshot_index: m.snapshot.map(|l| l.index),
            purged_index: m.purged.map(|l| l.index),
            cluster_id: self.identity.get(),
            members,
        }
    }

    /// Sets the load figure this node advertises in gossip (the application
    /// decides what it means; Caxton uses work in progress).
    pub fn publish_load(&self, load: u64) {
        self.load.store(load, std::sync::atomic::Ordering::Relaxed);
    }

    /// Raft members and gossip's view of them (and of nodes not yet members).
    pub async fn members(&self) -> Vec<MemberView> {
        let status = self.status();
        let gossip: Vec<GossipMember> = match &self.gossip {
            Some(g) => g.members().await,
            None => Vec::new(),
        };
        let mut out: Vec<MemberView> = status
            .members
            .iter()
            .map(|m| {
                let g = gossip.iter().find(|g| g.node_id == m.id);
                MemberView {
                    id: m.id,
                    rpc_addr: m.rpc_addr.clone(),
                    api_addr: m.api_addr.clone(),
                    role: match m.role {
                        MemberRole::Voter => "voter".into(),
                        MemberRole::Learner => "learner".into(),
                    },
                    is_leader: status.leader == Some(m.id),
                    matched_index: m.matched_index,
                    alive: g.map(|g| g.alive).unwrap_or(m.id == self.node_id),
                    ready: g.map(|g| g.ready).unwrap_or(m.id == self.node_id && self.is_ready()),
                    gossip_role: g.map(|g| g.role.clone()),
                    gossip_addr: g.map(|g| g.gossip_addr.clone()),
                    load: g.map(|g| g.load),
                }
            })
            .collect();
        for g in gossip.iter().filter(|g| !status.members.iter().any(|m| m.id == g.node_id)) {
            out.push(MemberView {
                id: g.node_id,
                rpc_addr: g.rpc_addr.clone(),
                api_addr: g.api_addr.clone(),
                role: "none".into(),
                is_leader: false,
                matched_index: None,
                alive: g.alive,
                ready: g.ready,
                gossip_role: Some(g.role.clone()),
                gossip_addr: Some(g.gossip_addr.clone()),
                load: Some(g.load),
            });
        }
        out
    }

    /// Nodes that may own shards: Raft members that gossip reports ready,
    /// and that have not been silent for longer than the dead grace period.
    /// Without gossip (one node), just this node.
    pub async fn placement_nodes(&self) -> Vec<NodeId> {
        let Some(g) = &self.gossip else { return vec![self.node_id] };
        let status = self.status();
        let gossip = g.members().await;
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
        status
            .members
            .iter()
            .filter(|m| {
                if m.id == self.node_id {
                    return !self.left.load(std::sync::atomic::Ordering::SeqCst);
                }
                let Some(gm) = gossip.iter().find(|gm| gm.node_id == m.id) else { return false };
                let recently = seen.get(&m.id).is_some_and(|t| t.elapsed() < self.dead_grace);
                gm.role != "left" && (gm.ready || !gm.alive) && (gm.alive || recently)
            })
            .map(|m| m.id)
            .collect()
    }

    /// Removes a node from the membership (forwarded to the leader).
    pub async fn remove_node(&self, id: NodeId) -> Result<(), AdminError> {
        if !self.status().members.iter().any(|m| m.id == id) {
            return Err(AdminError::UnknownNode(id));
        }
        self.ask_leader(AdminRequest::RemoveNode(id)).await
    }

    /// Moves leadership to `target` by having it start an election.
    pub async fn transfer_leader(&self, target: NodeId) -> Result<(), AdminError> {
        let status = self.status();
        let member = status.members.iter().find(|m| m.id == target).ok_or(AdminError::UnknownNode(target))?;
        if member.role != MemberRole::Voter {
            return Err(AdminError::Refused(format!("node {target} is a learner; only voters can lead")));
        }
        if status.leader == Some(target) {
            return Ok(());
        }
        self.ask(target, &member.rpc_addr.clone(), AdminRequest::Elect).await?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.status().leader == Some(target) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(AdminError::Refused(format!("node {target} did not win the election (is its log up to date?)")))
    }

    /// This node leaves: hands off leadership if it has it, then asks the
    /// leader to remove it. Gossip marks it as left so it is not re-added.
    pub async fn leave(&self) -> Result<(), AdminError> {
        self.left.store(true, std::sync::atomic::Ordering::SeqCst);
        self.hand_off_leadership().await;
        self.ask_leader(AdminRequest::RemoveNode(self.node_id)).await
    }

    /// If leader, asks the most up-to-date other voter to take over.
    async fn hand_off_leadership(&self) {
        let status = self.status();
        if status.leader != Some(self.node_id) {
            return;
        }
        let successor = status
            .members
            .iter()
            .filter(|m| m.id != self.node_id && m.role == MemberRole::Voter)
            .max_by_key(|m| m.matched_index);
        if let Some(next) = successor {
            tracing::info!(to = next.id, "transferring leadership before stepping down");
            if let Err(e) = self.transfer_leader(next.id).await {
                tracing::warn!(error = %e, "leadership transfer failed");
            }
        }
    }

    async fn ask_leader(&self, req: AdminRequest) -> Result<(), AdminError> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let status = self.status();
            if let Some(leader) = status.leader {
                if let Some(m) = status.members.iter().find(|m| m.id == leader) {
                    return self.ask(leader, &m.rpc_addr.clone(), req).await;
                }
            }
            if Instant::now() > deadline {
                return Err(AdminError::NoLeader);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn ask(&self, node: NodeId, addr: &str, req: AdminRequest) -> Result<(), AdminError> {
        let answer: Result<(), String> = self
            .rpc
            .call(addr, paths::ADMIN, &req, Duration::from_secs(15))
            .await
            .map_err(|e| AdminError::Unreachable { node, addr: addr.into(), reason: e.to_string() })?;
        answer.map_err(AdminError::Refused)
    }

    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().state == ServerState::Leader
    }

    /// Joined and caught up: a leader is known and everything this node has
    /// in its log is applied to its replica.
    pub fn is_ready(&self) -> bool {
        is_ready(&self.raft.metrics().borrow())
    }

    /// Waits (bounded) until [`is_ready`](Self::is_ready).
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        self.wait_metrics(timeout, is_ready).await
    }

    /// Builds a snapshot now and purges the log behind it (keeping the
    /// configured tail). Returns the index the snapshot covers.
    pub async fn snapshot_now(&self) -> Result<Option<u64>, WriteError> {
        let applied = self.raft.metrics().borrow().last_applied.map(|l| l.index);
        self.raft.trigger().snapshot().await.map_err(|e| WriteError::Fatal(e.to_string()))?;
        let timeout = Duration::from_secs(30);
        if !self.wait_metrics(timeout, |m| m.snapshot.map(|l| l.index) >= applied).await {
            return Err(WriteError::Timeout(timeout));
        }
        Ok(self.raft.metrics().borrow().snapshot.map(|l| l.index))
    }

    /// Log entries physically stored in `raft.db` (observability for compaction).
    pub fn stored_log_entries(&self) -> u64 {
        self.log_store.stored_entries()
    }

    /// Stops Raft and the RPC listener. Everything acknowledged is already
    /// durable. A leader first hands leadership to another voter so the
    /// cluster does not wait out an election timeout.
    pub async fn shutdown(&self) {
        self.hand_off_leadership().await;
        self.stop.cancel();
        if let Some(g) = &self.gossip {
            g.set(&[(crate::membership::keys::READY, "false".into())]).await;
        }
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown reported an error");
        }
        if let Some(handle) = self.rpc_server.lock().await.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), handle).await;
        }
    }
}

/// Removes `id` from the membership; runs on the leader.
pub(crate) async fn remove_from_membership(raft: &Raft, id: NodeId) -> Result<(), String> {
    let membership = raft.metrics().borrow().membership_config.membership().clone();
    let is_voter = membership.voter_ids().any(|v| v == id);
    let change = if is_voter {
        ChangeMembers::RemoveVoters(BTreeSet::from([id]))
    } else {
        ChangeMembers::RemoveNodes(BTreeSet::from([id]))
    };
    raft.change_membership(change, false).await.map(|_| ()).map_err(|e| e.to_string())
}

type RaftMetrics = openraft::RaftMetrics<NodeId, NodeAddr>;

/// Joined and caught up: a leader is known and everything in this node's
/// log is applied to its replica.
pub(crate) fn is_ready(m: &RaftMetrics) -> bool {
    m.running_state.is_ok() && m.current_leader.is_some() && m.last_applied.map(|l| l.index) >= m.last_log_index
}
