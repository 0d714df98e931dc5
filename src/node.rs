//! The composition root: builds one node from its config, runs it, and
//! shuts it down in order. The only place that knows every component.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use caxton_cluster::{Cluster, ClusterConfig};
use tokio_util::sync::CancellationToken;

use crate::agents::{AgentRegistry, AgentsDirectory};
use crate::api::{self, ApiContext};
use crate::auth;
use crate::config::ServerConfig;
use crate::control::{self, AuctionDriver, NegotiationDriver, Placement, Retention, RetentionLoop, RolloutController};
use crate::llm::Providers;
use crate::mcp::{McpHost, McpRegistry};
use crate::memory::{EmbeddedMemory, MemoryBackend, Model, PostgresMemory};
use crate::messaging::MessageService;
use crate::observability::Metrics;
use crate::runtime::AgentRuntime;
use crate::shutdown::Shutdown;
use crate::state::{CaxtonState, Ledger, Queries};

pub struct Node {
    pub config: ServerConfig,
    pub api_addr: SocketAddr,
    pub cluster: Arc<Cluster<CaxtonState>>,
    pub registry: AgentRegistry,
    pub runtime: AgentRuntime,
    pub messages: Arc<MessageService>,
    /// The memory backend `memory.backend` chose.
    pub memory: Arc<dyn MemoryBackend>,
    /// Applies a re-read config file (SIGHUP, `POST /v1/cluster/reload`).
    pub reloader: Arc<crate::reload::Reloader>,
    /// Owns every background task; stopped before Raft.
    shutdown: Shutdown,
    server: Option<tokio::task::JoinHandle<()>>,
    server_stop: CancellationToken,
}

/// Gossip needs an address, but `--advertise` may name the host (a compose
/// service, a pod's DNS name): resolve it at start. A new pod's own DNS
/// record can lag its start by a few seconds, so the lookup is retried
/// for a while before the start fails.
async fn resolve_advertised(host: &str, port: u16) -> anyhow::Result<SocketAddr> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let found = tokio::net::lookup_host((host, port)).await.map(|mut a| a.next());
        match found {
            Ok(Some(addr)) => return Ok(addr),
            _ if std::time::Instant::now() < deadline => {
                tracing::info!(host, "cluster.advertise does not resolve yet; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Ok(None) => anyhow::bail!("cluster.advertise = {host:?}: the host name has no address"),
            Err(e) => {
                return Err(e).with_context(|| format!("cluster.advertise = {host:?}: cannot resolve the host name"))
            }
        }
    }
}

async fn cluster_config(
    config: &ServerConfig,
    api_addr: SocketAddr,
    rpc_addr: SocketAddr,
) -> anyhow::Result<ClusterConfig> {
    let c = &config.cluster;
    let secret = config.cluster_secret.as_ref().map(|s| s.expose().to_owned());
    // `--advertise HOST` names the host; each port comes from its listener.
    let advertised =
        |explicit: &crate::config::Unset<String>, addr: SocketAddr| match (explicit.get(), c.advertise.get()) {
            (Some(explicit), _) => explicit.clone(),
            (None, Some(host)) => format!("{host}:{}", addr.port()),
            (None, None) => addr.to_string(),
        };
    let gossip_listen = c.gossip_listen.get().map(|a| a.get());
    let advertise_gossip = match (gossip_listen, c.advertise.get()) {
        (Some(g), Some(host)) => Some(resolve_advertised(host, g.port()).await?),
        (g, _) => g,
    };
    let bootstrap = c.bootstrap.founds(!c.seeds.is_empty());
    Ok(ClusterConfig {
        features: crate::state::FEATURES.iter().map(|f| f.to_string()).collect(),
        node_id: c.node_id,
        data_dir: config.server.data_dir.clone(),
        rpc_listen: rpc_addr,
        advertise_rpc: advertised(&c.advertise_rpc, rpc_addr),
        advertise_api: advertised(&c.advertise_api, api_addr),
        secret,
        tls: config.cluster_tls(),
        bootstrap,
        gossip_listen,
        advertise_gossip,
        seeds: c.seeds.clone(),
        gossip_interval: Duration::from_millis(c.gossip_interval_ms),
        voters: c.voters as usize,
        dead_grace: Duration::from_millis(c.dead_grace_ms),
        gossip_forget: Duration::from_millis(c.gossip_forget_ms),
        remove_dead_after: c.remove_dead_after.0,
        cluster_name: c.name.clone(),
        heartbeat: Duration::from_millis(c.heartbeat_ms),
        election_timeout_min: Duration::from_millis(c.election_timeout_min_ms),
        election_timeout_max: Duration::from_millis(c.election_timeout_max_ms),
        snapshot_after_logs: c.snapshot_after_logs,
        logs_to_keep: c.logs_to_keep,
    })
}

/// What a node relaying an answer stream presents (keys mode only).
fn relay_key(config: &ServerConfig) -> Option<auth::RelayKey> {
    config.admin_key.as_ref().map(|k| auth::RelayKey::from_admin_key(k.expose()))
}

/// The API's gate, from the server settings.
fn gate(config: &ServerConfig, queries: Queries, state: Arc<CaxtonState>, stop: &CancellationToken) -> api::gate::Gate {
    let s = &config.server;
    let mode = if config.requires_keys() { api::gate::Mode::Keys } else { api::gate::Mode::Dev };
    let default_rate = auth::default_rate(s.rate_limit_per_second, s.rate_limit_burst);
    let keys = auth::KeyRing::new(queries, state, config.admin_key.as_ref().map(|k| k.expose()));
    api::gate::Gate::new(
        api::gate::GateConfig {
            mode,
            max_in_flight: s.max_concurrent_requests as usize,
            max_streams_per_key: s.max_streams_per_key.max(1) as usize,
            max_requests_per_key: s.max_requests_per_key as usize,
            limiter: auth::RateLimiter::new(default_rate),
            relay: relay_key(config),
            disk: (s.min_free_disk_mb > 0)
                .then(|| auth::DiskSpace::watch(s.data_dir.clone(), s.min_free_disk_mb << 20, stop.clone())),
        },
        auth::LiveSettings::of(s),
        keys,
    )
}

impl Node {
    /// Starts every component; returns once the API is accepting requests.
    pub async fn start(config: ServerConfig) -> anyhow::Result<Self> {
        let api_listener = tokio::net::TcpListener::bind(config.listen_addr())
            .await
            .with_context(|| format!("server.listen = \"{}\": cannot bind", config.server.listen))?;
        let api_addr = api_listener.local_addr()?;
        let metrics_listener = match config.metrics_addr() {
            Some(addr) => Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("server.metrics_listen = \"{addr}\": cannot bind"))?,
            ),
            None => None,
        };
        // Bad TLS files stop the start before anything else runs.
        let tls = match config.tls_files() {
            Some((cert, key)) => Some(api::serve::tls_acceptor(&cert, &key)?),
            None => None,
        };
        let options_tls = tls.is_some();
        let rpc_addr = config.rpc_addr();

        let app = Arc::new(CaxtonState::new());
        let events = app.subscribe();
        let app_events = app.subscribe();
        let cluster = Arc::new(
            Cluster::start(cluster_config(&config, api_addr, rpc_addr).await?, app.clone())
                .await
                .context("starting the cluster member")?,
        );
        let leader_wait = Duration::from_millis(config.cluster.leader_wait_ms);
        if !cluster.wait_ready(leader_wait).await {
            tracing::warn!(waited = ?leader_wait, "no leader yet; serving anyway, writes will wait for one");
        }

        let shutdown = Shutdown::new();
        let stop = shutdown.token().clone();
        let mcp_host = McpHost::with_memory_budget(
            &config.server.data_dir.join("wasm-cache"),
            config.tools.memory_budget_mb as u32,
        )
        .context("starting the WASM host")?;
        let metrics = Arc::new(Metrics::new());
        cluster.observe_writes(metrics.clone());
        let ledger = Ledger::new(cluster.clone(), app.clone());
        let (store, queries) = (ledger.store.clone(), ledger.queries.clone());
        // Subscribed before reading: a change in between is seen, not lost.
        let events_feed = crate::events::EventFeed::new();
        let state_changes = app.subscribe();
        let owners = queries.agent_owners().await.context("reading the agents for the event feed")?;
        shutdown.spawn_until_stopped(events_feed.clone().run(ledger.clone(), state_changes, owners));
        let mcp = Arc::new(McpRegistry::new(
            &ledger,
            mcp_host,
            config.tool_data_dir(),
            crate::mcp::ToolPolicies::new(config.tools.policy.clone()),
            &config.tools.remote,
            metrics.clone(),
        ));
        if let Some(tools_dir) = config.server.tools_dir.get() {
            for (dir, result) in mcp.deploy_dir(tools_dir).await {
                match result {
                    Ok(()) => tracing::info!(%dir, "tool server ready"),
                    Err(e) => tracing::warn!(%dir, error = %e, "tool server not deployed"),
                }
            }
        }
        let registry = AgentRegistry::new(ledger.clone())
            .with_tools(mcp.clone())
            .with_metrics(metrics.clone())
            .with_batched_deploys(&shutdown);
        let models_dir = config.models.dir.clone();
        let providers = Providers::build(&config.llm.providers, &config.llm.default_provider, &models_dir);
        let peer_http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .build()
            .context("building the peer HTTP client")?;
        let messages = MessageService::new(
            ledger.clone(),
            app_events.resubscribe(),
            peer_http,
            &shutdown,
            metrics.clone(),
            crate::messaging::MessageLimits {
                max_message_bytes: config.server.max_message_bytes as usize,
                admission: Some(Arc::new(crate::runtime::ModelAdmission::new(providers.clone()))),
                relay_key: relay_key(&config),
                agent_limits: config.server.agent_limits(),
            },
        );
        claim_memory_backend(&config, &store, &shutdown).await?;
        let memory =
            start_memory(&config, store, queries, app_events.resubscribe(), &shutdown, metrics.clone()).await?;
        let a2a = Arc::new(crate::a2a::A2aClient::new(config.a2a.clone()));
        let runtime = AgentRuntime::new(
            ledger.clone(),
            providers.clone(),
            messages.clone(),
            memory.clone(),
            mcp.clone(),
            metrics.clone(),
            shutdown.clone(),
            crate::runtime::RuntimeSettings {
                a2a: a2a.clone(),
                max_attempts: config.server.max_message_attempts as u32,
                limits: config.server.agent_limits(),
            },
        );
        runtime.reconcile().await.context("starting the agents this node owns")?;
        shutdown.spawn(runtime.clone().follow(events, stop.clone()));
        let rollouts = RolloutController::new(ledger.clone(), messages.clone());
        shutdown.spawn(control::drive(rollouts, ledger.clone(), stop.clone()));
        let auctions = AuctionDriver::new(ledger.clone(), messages.clone(), &shutdown);
        shutdown.spawn(control::drive(auctions, ledger.clone(), stop.clone()));
        let negotiations = NegotiationDriver::new(ledger.clone(), messages.clone(), &shutdown);
        shutdown.spawn(control::drive(negotiations, ledger.clone(), stop.clone()));

        let retention = Retention {
            history: (config.server.history_retention_ms > 0)
                .then(|| Duration::from_millis(config.server.history_retention_ms)),
            versions_kept: config.server.agent_versions_kept,
        };
        shutdown.spawn(control::drive(RetentionLoop::new(ledger.clone(), retention), ledger.clone(), stop.clone()));

        let placement = Placement::new(ledger.clone());
        if let Err(e) = placement.rebalance_once().await {
            tracing::warn!(error = %e, "initial placement failed; the loop retries");
        }
        shutdown.spawn(control::drive(placement.clone(), ledger.clone(), stop.clone()));

        let agents_dir = config.agents_dir();
        let directory = match &agents_dir {
            Some(dir) => {
                let d = AgentsDirectory::new(dir.clone(), registry.clone());
                d.sync(true).await;
                shutdown.spawn(d.clone().watch(config.agents_reload(), stop.clone()));
                Some(d)
            }
            None => None,
        };

        let gate = Arc::new(gate(&config, registry.queries().clone(), app.clone(), &stop));
        let gate_settings: crate::reload::GateSettings = {
            let gate = gate.clone();
            Box::new(move |live, rate| gate.reload(live, rate))
        };
        let reloader = Arc::new(crate::reload::Reloader::new(
            config.clone(),
            gate_settings,
            mcp.clone(),
            providers.clone(),
            a2a.clone(),
        ));
        let ctx = Arc::new(ApiContext {
            registry: registry.clone(),
            runtime: runtime.clone(),
            messages: messages.clone(),
            providers: providers.clone(),
            metrics: metrics.clone(),
            ledger: ledger.clone(),
            cluster: cluster.clone(),
            events: events_feed.clone(),
            placement: placement.clone(),
            memory: memory.clone(),
            mcp: mcp.clone(),
            mcp_sessions: api::McpSessions::new(
                Duration::from_millis(config.server.mcp_session_idle_ms),
                config.server.max_mcp_sessions as usize,
            ),
            directory,
            agents_dir,
            shutdown: stop.clone(),
            gate: gate.clone(),
            reloader: reloader.clone(),
            https: config.server.tls_cert_file.is_set(),
        });
        let server_stop = CancellationToken::new();
        if let Some(listener) = metrics_listener {
            tracing::info!(addr = %listener.local_addr()?, "serving metrics");
            // The same server as the API: a header deadline, so idle
            // sockets cannot pile up on a listener that asks for no key.
            let options = api::serve::ServeOptions {
                tls: None,
                header_read_timeout: Duration::from_millis(config.server.header_read_timeout_ms),
                max_connections: 64,
            };
            tokio::spawn(api::serve::serve(listener, api::metrics_router(ctx.clone()), options, server_stop.clone()));
        }
        let router = api::router(ctx, config.server.max_body_bytes as usize);
        let options = api::serve::ServeOptions {
            tls,
            header_read_timeout: Duration::from_millis(config.server.header_read_timeout_ms),
            max_connections: config.server.max_connections as usize,
        };
        let server = tokio::spawn(api::serve::serve(api_listener, router, options, server_stop.clone()));
        let mode = match gate.mode() {
            api::gate::Mode::Dev => "dev (no key needed from loopback peers; loopback Host and Origin only)",
            api::gate::Mode::Keys => "API keys required",
        };
        tracing::info!(api = %api_addr, rpc = %rpc_addr, node_id = cluster.node_id(), tls = options_tls, auth = mode, "caxton node started");
        Ok(Self {
            config,
            api_addr,
            cluster,
            registry,
            runtime,
            messages,
            memory,
            reloader,
            shutdown,
            server: Some(server),
            server_stop,
        })
    }

    /// Graceful shutdown: drop readiness, stop accepting, let in-flight
    /// requests finish (bounded), stop background work, then Raft. Every
    /// acknowledged write is already durable in the log.
    pub async fn shutdown(mut self) {
        self.shutdown.token().cancel();
        self.server_stop.cancel();
        let grace = Duration::from_millis(self.config.server.shutdown_grace_ms);
        if let Some(server) = self.server.take() {
            match tokio::time::timeout(grace, server).await {
                Ok(_) => {}
                Err(_) => tracing::warn!(?grace, "in-flight requests did not finish within the grace period"),
            }
        }
        if !self.shutdown.stop(Duration::from_secs(5)).await {
            tracing::warn!("background work did not finish within 5s; stopping Raft anyway");
        }
        self.cluster.shutdown().await;
        tracing::info!("caxton node stopped");
    }
}

/// The memory backend the config selects, started: the embedded one over
/// the replicated state, or PostgreSQL (connected and migrated).
async fn start_memory(
    config: &ServerConfig,
    store: crate::state::Store,
    queries: Queries,
    events: tokio::sync::broadcast::Receiver<crate::state::StateEvent>,
    shutdown: &Shutdown,
    metrics: Arc<Metrics>,
) -> anyhow::Result<Arc<dyn MemoryBackend>> {
    let model = Model::new(config.models.dir.join("all-minilm-l6-v2"), metrics.clone());
    Ok(match config.memory.backend {
        crate::config::MemoryBackendKind::Postgres => {
            let url = config.memory_url.as_ref().context("memory.postgres.url is required")?;
            PostgresMemory::start(url, &config.memory.postgres, model, metrics)
                .await
                .context("starting the PostgreSQL memory (memory.backend = \"postgres\")")?
        }
        crate::config::MemoryBackendKind::Embedded => {
            EmbeddedMemory::start(store, queries, model, events, shutdown).await?
        }
    })
}

/// How long a starting node waits for its cluster to say which memory
/// backend it uses before it starts and keeps asking in the background (a
/// node refused by its cluster, or without a quorum yet, must still serve).
const CLAIM_AT_START: Duration = Duration::from_secs(5);

/// Records this node's memory backend as the cluster's, or refuses to run
/// when the cluster records another one (unless `memory.migrate_from`
/// names it: the restart that moves a cluster to a new backend). Answered
/// at start when a leader is known; otherwise checked as soon as one is,
/// and a mismatch found then stops the process.
async fn claim_memory_backend(
    config: &ServerConfig,
    store: &crate::state::Store,
    shutdown: &Shutdown,
) -> anyhow::Result<()> {
    let wanted = config.memory.backend.as_str();
    let claim = crate::state::ClaimSetting {
        key: crate::state::MEMORY_BACKEND.into(),
        value: wanted.into(),
        replaces: config.memory.migrate_from.get().cloned(),
        at_ms: crate::time::now_ms(),
    };
    let mut asking = Box::pin(claim_until_answered(store.clone(), claim));
    match tokio::time::timeout(CLAIM_AT_START, &mut asking).await {
        Ok(recorded) => backend_agrees(recorded.as_deref(), wanted),
        Err(_) => {
            tracing::warn!(
                backend = wanted,
                "no leader yet to check the cluster's memory backend with; checking in the background"
            );
            let wanted = wanted.to_owned();
            shutdown.spawn_until_stopped(async move {
                if let Err(e) = backend_agrees(asking.await.as_deref(), &wanted) {
                    tracing::error!("{e:#}");
                    // Serving on the wrong backend would split memory: stop now.
                    crate::observability::finish_logging();
                    std::process::exit(2);
                }
            });
            Ok(())
        }
    }
}

/// Proposes the claim until the cluster answers with the recorded backend;
/// `None` when the cluster cannot record it (voters too old for the command).
async fn claim_until_answered(store: crate::state::Store, claim: crate::state::ClaimSetting) -> Option<String> {
    loop {
        match store.propose(claim.clone()).await {
            Ok(recorded) => return Some(recorded),
            Err(caxton_cluster::WriteError::Rejected(why)) => {
                tracing::warn!(%why, "the cluster cannot record its memory backend; running unchecked");
                return None;
            }
            Err(e) => {
                tracing::debug!(error = %e, "waiting for the cluster to check the memory backend");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// Whether the cluster's recorded backend (if any) is this node's.
fn backend_agrees(recorded: Option<&str>, wanted: &str) -> anyhow::Result<()> {
    let Some(recorded) = recorded else { return Ok(()) };
    if recorded != wanted {
        anyhow::bail!(
            "this cluster keeps its memory in the `{recorded}` backend (recorded in the replicated state), but this node \
             is configured with memory.backend = \"{wanted}\": switching backends on a running cluster would split \
             memory in two. To move the cluster: `caxton memory export --output memory.json` while it runs on \
             `{recorded}`, stop every node, start them all with memory.backend = \"{wanted}\" and \
             memory.migrate_from = \"{recorded}\", then `caxton memory import memory.json` (docs/memory.md)"
        );
    }
    Ok(())
}
