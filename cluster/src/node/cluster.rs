//! [`Cluster`] itself: starting a member (and owning the tasks it spawns),
//! reading its replica, and writing through Raft (forwarded to the leader
//! when this node is not it).

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{ClientWriteError, RaftError};
use tokio::sync::Mutex;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::error::StartError;
use crate::application::Application;
use crate::codec;
use crate::config::ClusterConfig;
use crate::consensus::raft_ext::RaftExt;
use crate::consensus::raft_settings;
use crate::identity::ClusterIdentity;
use crate::local_member::LocalMember;
use crate::manager::Manager;
use crate::membership::{self, keys, Gossip, GossipConfig};
use crate::observer::{ObserverSlot, WriteObserver};
use crate::replica::{ReadError, Replica};
use crate::storage::log_store::LogStore;
use crate::storage::state_machine::StateMachine;
use crate::transport::tls::NodeTls;
use crate::transport::{self, paths, Network, PeerAuth, RpcClient, RpcState};
use crate::types::{ClientWriteFailure, NodeAddr, NodeId, Payload, Raft, Reply};
use crate::write_error::WriteError;

/// One running member. Cheap to share behind an `Arc`.
pub struct Cluster<A: Application> {
    pub(super) raft: Raft,
    /// What this node knows about itself, shared with the membership manager.
    pub(super) local: Arc<LocalMember>,
    pub(super) replica: Replica,
    pub(super) rpc: RpcClient,
    pub(super) log_store: LogStore,
    pub(super) dead_grace: Duration,
    /// Log entries the replica recorded as failed (see `storage::state_machine`).
    pub(super) failed_entries: Arc<std::sync::atomic::AtomicU64>,
    /// Leader changes this node has seen since it started.
    pub(super) leader_changes: Arc<std::sync::atomic::AtomicU64>,
    /// What each voter last advertised it can apply.
    pub(super) peer_features: super::features::PeerFeatures,
    /// Mutual TLS material, when RPC uses it.
    tls: Option<Arc<NodeTls>>,
    observer: ObserverSlot,
    stop: CancellationToken,
    /// Every task this member spawns (RPC server, membership manager):
    /// cancelled through `stop` and drained on shutdown, aborted on drop.
    tasks: Mutex<JoinSet<()>>,
    _app: PhantomData<A>,
}

/// How long a forwarded or local write may take before the caller hears back.
const WRITE_DEADLINE: Duration = Duration::from_secs(10);

/// How long shutdown waits for this member's tasks before aborting them.
const TASK_DRAIN: Duration = Duration::from_secs(5);

impl<A: Application> Cluster<A> {
    pub async fn start(config: ClusterConfig, app: Arc<A>) -> Result<Self, StartError> {
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|source| StartError::DataDir { path: config.data_dir.display().to_string(), source })?;
        let raft_db = config.data_dir.join("raft.db");
        let state_db = config.data_dir.join("state.db");
        let store_err = |path: &Path| {
            let path = path.display().to_string();
            move |source| StartError::Store { path, source }
        };
        let log_store = LogStore::open(&raft_db).map_err(store_err(&raft_db))?;
        let state_machine =
            StateMachine::open(app, &state_db, &config.data_dir.join("snapshots")).map_err(store_err(&state_db))?;
        let failed_entries = state_machine.failed_counter();
        let observer = ObserverSlot::default();
        let state_machine = state_machine.observed_by(observer.clone());
        let raft_config = raft_settings(&config).map_err(|e| StartError::Config(e.to_string()))?;

        let bind_ip = Some(config.rpc_listen.ip()).filter(|ip| !ip.is_unspecified());
        let identity = Arc::new(ClusterIdentity::load(log_store.clone()).map_err(store_err(&raft_db))?);
        let auth = match &config.tls {
            Some(files) => PeerAuth::Tls(Arc::new(NodeTls::load(files, config.node_id)?)),
            None => PeerAuth::Secret(config.secret.clone()),
        };
        let rpc = RpcClient::new(&auth, config.node_id, identity.clone(), bind_ip);
        let network = Network { client: rpc.clone() };
        let raft = Raft::new(config.node_id, Arc::new(raft_config), network, log_store.clone(), state_machine)
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?;

        let listener = tokio::net::TcpListener::bind(config.rpc_listen)
            .await
            .map_err(|source| StartError::Listen { addr: config.rpc_listen.to_string(), source })?;
        let advertise = NodeAddr {
            rpc: config.advertise_rpc.clone(),
            api: config.advertise_api.clone(),
            incarnation: identity.incarnation().to_owned(),
        };
        let gossip = match config.gossip_listen {
            None => None,
            Some(listen) => Some(
                Gossip::start(
                    GossipConfig::new(&config, listen),
                    membership::initial_state(&advertise, &config.features),
                )
                .await
                .map_err(|e| StartError::Gossip { addr: listen.to_string(), reason: e.to_string() })?,
            ),
        };
        let local = Arc::new(LocalMember::new(config.node_id, advertise, identity, gossip, config.features.clone()));

        let stop = CancellationToken::new();
        let mut tasks = JoinSet::new();
        if let PeerAuth::Tls(tls) = &auth {
            // Rotated certificates and CAs are picked up without a restart.
            tasks.spawn(tls.clone().watch(stop.clone()));
        }
        let tls = match &auth {
            PeerAuth::Tls(tls) => Some(tls.clone()),
            PeerAuth::Secret(_) => None,
        };
        let rpc_state = RpcState { raft: raft.clone(), auth, local: local.clone() };
        let server_span = tracing::info_span!("cluster_rpc_server", node_id = config.node_id);
        tasks.spawn(transport::serve(listener, rpc_state, stop.clone()).instrument(server_span));
        let leader_changes = Arc::new(std::sync::atomic::AtomicU64::new(0));
        tasks.spawn(super::observe::count_leader_changes(raft.clone(), leader_changes.clone(), stop.clone()));
        tasks.spawn(crate::consensus::snapshot_pacing::pace_snapshots(
            raft.clone(),
            config.snapshot_after_logs,
            stop.clone(),
        ));
        if local.gossip.is_some() {
            let manager =
                Manager::new(raft.clone(), local.clone(), rpc.clone(), config.voters, config.remove_dead_after);
            let manager_span = tracing::info_span!("membership_manager", node_id = config.node_id);
            tasks.spawn(manager.run(stop.clone()).instrument(manager_span));
        }
        let cluster = Self {
            raft,
            local,
            replica: Replica::new(state_db),
            rpc,
            log_store,
            dead_grace: config.dead_grace,
            failed_entries,
            leader_changes,
            peer_features: super::features::PeerFeatures::open(config.data_dir.join("peer-features.json")),
            tls,
            observer,
            stop,
            tasks: Mutex::new(tasks),
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
        let own = self.local.node_id;
        // With seeds, listen first: if any peer already belongs to a cluster,
        // join it rather than found a second one.
        if let (true, Some(g)) = (has_seeds, &self.local.gossip) {
            let deadline = Instant::now() + gossip_interval * 6 + Duration::from_millis(500);
            while Instant::now() < deadline {
                let members = g.members().await;
                if members.iter().any(|m| m.node_id != own && m.alive && m.initialized) {
                    tracing::info!(
                        node_id = own,
                        "a peer already belongs to a cluster: joining it instead of bootstrapping"
                    );
                    return Ok(());
                }
                tokio::time::sleep(gossip_interval / 2).await;
            }
        }
        let members = BTreeMap::from([(own, self.local.advertise.clone())]);
        let cluster_id = self.local.identity.found().map_err(|e| StartError::Raft(e.to_string()))?;
        tracing::info!(node_id = own, %cluster_id, "pristine data directory: initialising a new cluster");
        self.raft.initialize(members).await.map_err(|e| StartError::Raft(e.to_string()))
    }

    pub fn node_id(&self) -> NodeId {
        self.local.node_id
    }

    /// When this node's cluster certificate and the earliest CA certificate
    /// it trusts expire (seconds since the epoch); `None` without TLS.
    pub fn certificate_expiry(&self) -> Option<(i64, i64)> {
        self.tls.as_ref().map(|t| t.expiry())
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
        // A span only inside a traced request: a batch of writes proposed
        // from a task of its own would be a trace of its own, noise.
        let span = match crate::trace_context::current_ids() {
            Some(_) => {
                tracing::info_span!("raft commit", otel.kind = "internal", raft.log_index = tracing::field::Empty)
            }
            None => tracing::Span::none(),
        };
        let Some(observer) = self.observer.get() else { return self.write_unobserved(command).instrument(span).await };
        observer.proposed();
        let started = Instant::now();
        let result = self.write_unobserved(command).instrument(span).await;
        observer.finished(started.elapsed(), result.as_ref().map(|_| ()));
        result
    }

    /// Tells `observer` of every write from now on (once; later calls are ignored).
    pub fn observe_writes(&self, observer: Arc<dyn WriteObserver>) {
        let _ = self.observer.set(observer);
    }

    async fn write_unobserved(&self, command: &A::Command) -> Result<A::Response, WriteError> {
        let payload = Payload(codec::encode_app(command));
        if payload.0.len() > crate::limits::MAX_ENTRY {
            return Err(WriteError::TooLarge { size: payload.0.len(), limit: crate::limits::MAX_ENTRY });
        }
        let deadline = Instant::now() + WRITE_DEADLINE;
        loop {
            let attempt = self.write_once(payload.clone()).await;
            match attempt {
                // Only what never reached a leader is sent again: a write
                // sent without an answer may have committed, and applying a
                // command twice is not ours to decide.
                Err(WriteError::NoLeader) | Err(WriteError::LeaderUnreachable { delivered: false, .. })
                    if Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(WriteError::NoLeader) => return Err(WriteError::Timeout(WRITE_DEADLINE)),
                Ok((reply, index)) => {
                    tracing::Span::current().record("raft.log_index", index);
                    // Read-your-writes on every node: a forwarded write
                    // returns once this node's replica has applied it too.
                    self.wait_applied(index, WRITE_DEADLINE).await;
                    if let Some(why) = crate::storage::failure_of(&reply) {
                        return Err(WriteError::Rejected(why));
                    }
                    return Ok(codec::decode_app(&reply.0)?);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Waits (bounded) until this node has applied `index`.
    async fn wait_applied(&self, index: u64, timeout: Duration) {
        self.raft.wait_metrics(timeout, |m| m.last_applied.map(|l| l.index) >= Some(index)).await;
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
        let answer: Result<(Reply, u64), ClientWriteFailure> = self
            .rpc
            .call(leader_rpc, paths::WRITE, &payload, WRITE_DEADLINE)
            .await
            .map_err(|e| leader_unreachable(leader_rpc, e))?;
        match answer {
            Ok(reply) => Ok(reply),
            // The leader moved between our look-up and its answer: retry.
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => Err(WriteError::NoLeader),
            // The leader failed while the write was in its hands.
            Err(RaftError::Fatal(e)) => Err(WriteError::Fatal(format!("the leader failed: {e}"))),
            Err(e) => Err(WriteError::Rejected(e.to_string())),
        }
    }

    /// Waits until this node's replica reflects every write committed before
    /// the call (ReadIndex): the leader confirms it still leads with a
    /// quorum and names its commit index, asked over RPC by a follower;
    /// this node then waits until it has applied that index. A read of the
    /// replica after this is linearizable.
    pub async fn linearizable(&self) -> Result<(), WriteError> {
        let index = match tokio::time::timeout(WRITE_DEADLINE, self.raft.read_index()).await {
            Err(_) => return Err(WriteError::NoQuorum(WRITE_DEADLINE)),
            Ok(Ok(index)) => index,
            Ok(Err(openraft::error::CheckIsLeaderError::ForwardToLeader(f))) => match f.leader_node {
                Some(leader) => self.remote_read_index(&leader.rpc).await?,
                None => return Err(WriteError::NoLeader),
            },
            Ok(Err(e)) => return Err(WriteError::Rejected(e.to_string())),
        };
        self.wait_applied(index, WRITE_DEADLINE).await;
        match self.raft.metrics().borrow().last_applied.map(|l| l.index) {
            Some(applied) if applied >= index => Ok(()),
            _ if index == 0 => Ok(()),
            _ => Err(WriteError::Timeout(WRITE_DEADLINE)),
        }
    }

    async fn remote_read_index(&self, leader_rpc: &str) -> Result<u64, WriteError> {
        let answer: Result<u64, String> = self
            .rpc
            .call(leader_rpc, paths::READ_INDEX, &(), WRITE_DEADLINE)
            .await
            .map_err(|e| leader_unreachable(leader_rpc, e))?;
        answer.map_err(|_| WriteError::NoLeader)
    }

    /// Stops Raft, the RPC listener and the membership manager, telling
    /// gossip first that this node is no longer ready.
    pub(super) async fn stop_all(&self) {
        self.stop.cancel();
        if let Some(g) = &self.local.gossip {
            g.set(&[(keys::READY, "false".into())]).await;
        }
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown reported an error");
        }
        let mut tasks = self.tasks.lock().await;
        let drained = tokio::time::timeout(TASK_DRAIN, async {
            while let Some(done) = tasks.join_next().await {
                if let Err(e) = done {
                    tracing::warn!(error = %e, "a cluster task failed");
                }
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!("cluster tasks did not stop within {TASK_DRAIN:?}; aborting them");
        }
        tasks.shutdown().await;
    }
}

/// A call to the leader that failed, and whether it may have arrived.
fn leader_unreachable(leader_rpc: &str, e: crate::transport::RpcError) -> WriteError {
    WriteError::LeaderUnreachable { addr: leader_rpc.into(), reason: e.to_string(), delivered: e.maybe_delivered() }
}
