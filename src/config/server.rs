//! The server's configuration: `caxton.toml`, then `CAXTON_*` environment
//! variables, then command-line flags, validated once at start.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::env;
use super::memory::{MemoryBackendKind, MemorySection};
use super::setting::{ListenAddr, Unset};
use crate::llm::ProviderConfig;

/// Raft timing defaults. A follower stands for election after hearing
/// nothing for its lease (openraft 0.9: the election timeout's maximum)
/// plus its own timeout, drawn from [min, max): a dead leader is replaced
/// after `max + rand[min, max)` and a tick (1.5 heartbeats), so 1.2–1.75 s
/// here (etcd's 100 ms heartbeat and 1 s election timeout would take about
/// 3.3 s with the lease on top). A healthy leader's followers hear from it
/// every 150 ms: 8 heartbeats must go missing before anyone stands.
pub const DEFAULT_HEARTBEAT_MS: u64 = 100;
pub const DEFAULT_ELECTION_TIMEOUT_MS: (u64, u64) = (400, 800);

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub server: ServerSection,
    pub cluster: ClusterSection,
    pub log: LogSection,
    pub models: ModelsSection,
    pub llm: LlmSection,
    pub tools: ToolsSection,
    pub a2a: super::remote::A2aSection,
    pub memory: super::memory::MemorySection,
    /// The memory database URL (`memory.backend = "postgres"`): resolved
    /// from the key, `CAXTON_MEMORY_POSTGRES_URL` or `memory.postgres.url_file`.
    #[serde(skip)]
    pub memory_url: Option<Secret>,
    /// The bootstrap admin key: `CAXTON_ADMIN_KEY`, else the contents of
    /// `server.admin_key_file`. Never written back out.
    #[serde(skip)]
    pub admin_key: Option<Secret>,
    /// The cluster secret: `CAXTON_CLUSTER_SECRET`, else the contents of
    /// `cluster.secret_file`. Never written back out.
    #[serde(skip)]
    pub cluster_secret: Option<Secret>,
    /// Where this config was read from, to read it again (a reload).
    #[serde(skip)]
    pub source: ConfigSource,
}

/// The file and flags a config was loaded from (the environment is the
/// process's own, read again too).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConfigSource {
    pub file: Option<std::path::PathBuf>,
    pub flags: Vec<Flag>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ToolsSection {
    /// Where tool servers' `/data` directories live; empty: `tool-data/`
    /// in the data directory. Put it on another volume than the Raft data,
    /// so tools filling it cannot stop Raft.
    pub data_dir: Unset<PathBuf>,
    /// What tool servers are granted, by server name; `default` for the rest.
    pub policy: BTreeMap<String, super::tool_policy::ToolPolicy>,
    /// The memory limits of tool calls running at once add up to at most
    /// this (MiB); further calls wait for memory to be free.
    pub memory_budget_mb: u64,
    /// MCP servers reached over Streamable HTTP, by name.
    pub remote: BTreeMap<String, super::remote::RemoteMcpServer>,
}

impl Default for ToolsSection {
    fn default() -> Self {
        Self {
            data_dir: Unset::default(),
            policy: BTreeMap::from([(
                super::tool_policy::DEFAULT_POLICY.to_owned(),
                super::tool_policy::ToolPolicy::default(),
            )]),
            memory_budget_mb: super::tool_policy::DEFAULT_MEMORY_BUDGET_MB.into(),
            remote: BTreeMap::new(),
        }
    }
}

/// A secret read from the environment or a file; `Debug` hides it.
#[derive(Clone, PartialEq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// The shortest admin key accepted: a guessable key on a network is no key.
pub const MIN_ADMIN_KEY_LEN: usize = 24;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ModelsSection {
    /// Where model weights live (`make models` fills it).
    pub dir: PathBuf,
}

impl Default for ModelsSection {
    fn default() -> Self {
        Self { dir: PathBuf::from("models") }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LlmSection {
    /// Provider used by agents that name none.
    pub default_provider: String,
    /// Providers by name. `local` and `echo` always exist unless redefined.
    pub providers: BTreeMap<String, ProviderConfig>,
}

impl Default for LlmSection {
    fn default() -> Self {
        Self {
            default_provider: "local".into(),
            providers: BTreeMap::from([
                ("local".to_owned(), ProviderConfig::local_default()),
                ("echo".to_owned(), ProviderConfig::echo()),
            ]),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSection {
    /// Public REST API listen address.
    pub listen: ListenAddr,
    /// Where `raft.db`, `state.db` and `snapshots/` live.
    pub data_dir: PathBuf,
    /// Agent TOML files deployed at start and hot-reloaded; empty = none.
    pub agents_dir: Unset<PathBuf>,
    /// Directory of tool servers (subdirectories with manifest.toml and a
    /// module) deployed at start, before the agents; empty = none.
    pub tools_dir: Unset<PathBuf>,
    /// How often the agents directory is rescanned, in milliseconds.
    pub agents_reload_ms: u64,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: u64,
    /// Largest message (content, context, requirements and history
    /// together, in bytes); larger ones are refused with 413 before they
    /// are committed. (A request body is capped by `max_body_bytes` too.)
    pub max_message_bytes: u64,
    /// Deliveries a request gets (the first, and retries after a crash or
    /// an unfinished processing) before it is dead-lettered: answered with
    /// an error and never run again.
    pub max_message_attempts: u64,
    /// How long a request may run before it is answered 408/503.
    pub request_timeout_ms: u64,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_grace_ms: u64,
    /// File holding the bootstrap admin key (`CAXTON_ADMIN_KEY` wins).
    /// Required when `listen` is not a loopback address.
    pub admin_key_file: Unset<PathBuf>,
    /// Page origins (e.g. `https://console.example.com`) whose scripts may
    /// call the API; other `Origin`s are refused.
    pub allowed_origins: Vec<String>,
    /// Requests per second an API key may make (a key can carry its own);
    /// 0 = unlimited.
    pub rate_limit_per_second: f64,
    /// Requests a key may make at once above its rate.
    pub rate_limit_burst: u64,
    /// Requests served at once by this node; more are answered 503.
    pub max_concurrent_requests: u64,
    /// API connections open at once; beyond it new ones are closed at once.
    pub max_connections: u64,
    /// Below this much free space on the data volume (MiB), writes that
    /// grow the state are refused (507) before Raft runs out of room; 0: off.
    pub min_free_disk_mb: u64,
    /// Requests one API key may have in flight on this node at once, well
    /// below `max_concurrent_requests`: one key cannot take every slot.
    pub max_requests_per_key: u64,
    /// Event streams (SSE) one key may hold open at once.
    pub max_streams_per_key: u64,
    /// Where Prometheus scrapes `/metrics` without keys: off by default (a
    /// fixed default port would collide with a second local node or a
    /// local Prometheus), `0.0.0.0:9090` in the image; `/metrics` on the
    /// API, behind keys, is always there.
    pub metrics_listen: Unset<ListenAddr>,
    /// How long a client may take to send its request headers.
    pub header_read_timeout_ms: u64,
    /// PEM certificate chain: with `tls_key_file`, the API speaks HTTPS.
    pub tls_cert_file: Unset<PathBuf>,
    /// PEM private key of `tls_cert_file`.
    pub tls_key_file: Unset<PathBuf>,
    /// MCP sessions unused this long are forgotten.
    pub mcp_session_idle_ms: u64,
    /// MCP sessions kept at once; the least recently used goes first.
    pub max_mcp_sessions: u64,
    /// Answered messages and finished conversations older than this are
    /// deleted (cluster-wide, by the leader); 0 keeps them forever.
    pub history_retention_ms: u64,
    /// Revisions kept per agent (older ones are deleted); at least 1.
    pub agent_versions_kept: u64,
    /// Turns one agent runs at once, unless its `[limits]` say otherwise.
    pub agent_concurrency: u64,
    /// Model tokens one turn may use (0: unlimited), unless the agent says.
    pub agent_tokens_per_turn: u64,
    /// Model tokens per agent per UTC day (0: unlimited), unless the agent says.
    pub agent_tokens_per_day: u64,
    /// Estimated spend per agent per UTC day in USD (0: unlimited).
    pub agent_spend_per_day_usd: f64,
    /// Tool calls one turn may make (0: unlimited), unless the agent says.
    pub agent_tool_calls_per_turn: u64,
}

impl ServerSection {
    /// The limits of an agent that sets none in its `[limits]`.
    pub fn agent_limits(&self) -> super::limits::AgentLimits {
        let some = |v: u64| (v > 0).then_some(v);
        super::limits::AgentLimits {
            concurrency: Some(self.agent_concurrency as u32),
            tokens_per_turn: some(self.agent_tokens_per_turn),
            tokens_per_day: some(self.agent_tokens_per_day),
            spend_per_day_usd: (self.agent_spend_per_day_usd > 0.0).then_some(self.agent_spend_per_day_usd),
            tool_calls_per_turn: some(self.agent_tool_calls_per_turn).map(|v| v as u32),
            max_message_bytes: Some(self.max_message_bytes),
            turn_time_ms: None,
        }
    }
}

/// Whether a node with a pristine data directory founds a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Bootstrap {
    /// Found one when there are no seeds.
    #[serde(rename = "auto")]
    Auto,
    /// Found one, also with seeds, unless a peer already belongs to one.
    #[serde(rename = "true")]
    True,
    /// Only ever join.
    #[serde(rename = "false")]
    False,
    /// `true` on the pod whose host name ends in `-0` (a StatefulSet's
    /// first pod), `false` elsewhere; resolved at load.
    #[serde(rename = "ordinal-0")]
    Ordinal0,
}

impl Bootstrap {
    /// Whether to found a cluster, once `ordinal-0` is resolved.
    pub fn founds(self, has_seeds: bool) -> bool {
        match self {
            Self::True => true,
            Self::False => false,
            Self::Auto | Self::Ordinal0 => !has_seeds,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSection {
    /// This node's id; unique in the cluster and stable for its data dir.
    pub node_id: u64,
    /// Node-to-node RPC listen address.
    pub rpc_listen: ListenAddr,
    /// RPC address peers use to reach this node (default: rpc_listen).
    pub advertise_rpc: Unset<String>,
    /// API address advertised to peers and clients (default: server.listen).
    pub advertise_api: Unset<String>,
    /// `auto`: initialise a new cluster on a pristine data dir when there are
    /// no seeds; `true`: also with seeds, unless a peer already belongs to a
    /// cluster; `false`: only ever join; `ordinal-0`: `true` on the pod whose
    /// host name ends in `-0` (a StatefulSet's first pod), `false` elsewhere.
    pub bootstrap: Bootstrap,
    /// Take the node id from the host name's trailing ordinal (StatefulSet
    /// pods are named NAME-0, NAME-1, …): node id = ordinal + 1.
    pub node_id_from_hostname: bool,
    /// Gossip (UDP) listen address; empty disables gossip (a lone node).
    pub gossip_listen: Unset<ListenAddr>,
    /// Host or IP advertised to peers for every port not advertised explicitly.
    pub advertise: Unset<String>,
    /// Gossip seeds: host:port entries (a DNS name resolving to several
    /// addresses, like a headless service, works).
    pub seeds: Vec<String>,
    pub gossip_interval_ms: u64,
    /// Voters the leader maintains (3 or 5); other members stay learners.
    pub voters: u64,
    /// Silence in gossip after which a node's agents move elsewhere.
    pub dead_grace_ms: u64,
    /// Silence after which gossip forgets a node altogether: its
    /// addresses and what it advertised (a voter forgotten this way is
    /// reported unreachable until it speaks again).
    pub gossip_forget_ms: u64,
    /// How long a starting node waits for a leader before it serves its
    /// API anyway (writes then wait for one; `/ready` says not ready).
    pub leader_wait_ms: u64,
    /// Silence after which the leader removes a member from Raft (`off`,
    /// or a duration like "10m"): how a StatefulSet scaled down sheds the
    /// pods that went away. Longer than any restart should take.
    pub remove_dead_after: super::duration::DurationOrOff,
    /// Nodes of another cluster name are ignored.
    pub name: String,
    /// File holding the cluster secret (CAXTON_CLUSTER_SECRET wins).
    pub secret_file: Unset<PathBuf>,
    /// The cluster CA certificate (PEM) peers' certificates must chain to.
    pub tls_ca_file: Unset<PathBuf>,
    /// This node's certificate (PEM), naming its node id.
    pub tls_cert_file: Unset<PathBuf>,
    /// The private key (PEM) of `tls_cert_file`.
    pub tls_key_file: Unset<PathBuf>,
    pub heartbeat_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Build a snapshot after this many log entries.
    pub snapshot_after_logs: u64,
    /// Log entries kept behind a snapshot for lagging followers.
    pub logs_to_keep: u64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    /// `text` (human) or `json`.
    pub format: LogFormat,
    /// A tracing filter, e.g. `info` or `caxton=debug,openraft=warn`.
    pub level: String,
}

impl Default for ServerSection {
    fn default() -> Self {
        Self {
            listen: ListenAddr::new(SocketAddr::from(([127, 0, 0, 1], 8080))),
            data_dir: PathBuf::from("./caxton-data"),
            agents_dir: Unset::default(),
            tools_dir: Unset::default(),
            agents_reload_ms: 1000,
            max_body_bytes: 2 * 1024 * 1024,
            max_message_bytes: 256 * 1024,
            max_message_attempts: 3,
            request_timeout_ms: 300_000,
            shutdown_grace_ms: 10_000,
            admin_key_file: Unset::default(),
            allowed_origins: Vec::new(),
            rate_limit_per_second: 50.0,
            rate_limit_burst: 100,
            max_concurrent_requests: 512,
            max_requests_per_key: 128,
            max_connections: 4096,
            min_free_disk_mb: 256,
            max_streams_per_key: 32,
            header_read_timeout_ms: 10_000,
            metrics_listen: Unset::default(),
            tls_cert_file: Unset::default(),
            tls_key_file: Unset::default(),
            mcp_session_idle_ms: 3_600_000,
            max_mcp_sessions: 1024,
            history_retention_ms: 30 * 24 * 3_600_000,
            agent_versions_kept: 100,
            agent_concurrency: super::limits::DEFAULT_CONCURRENCY as u64,
            agent_tokens_per_turn: 0,
            agent_tokens_per_day: 0,
            agent_spend_per_day_usd: 0.0,
            agent_tool_calls_per_turn: 0,
        }
    }
}

impl Default for ClusterSection {
    fn default() -> Self {
        Self {
            node_id: 1,
            rpc_listen: ListenAddr::new(SocketAddr::from(([127, 0, 0, 1], 8081))),
            advertise_rpc: Unset::default(),
            advertise_api: Unset::default(),
            bootstrap: Bootstrap::Auto,
            node_id_from_hostname: false,
            gossip_listen: Unset::default(),
            advertise: Unset::default(),
            seeds: Vec::new(),
            gossip_interval_ms: 500,
            voters: 3,
            dead_grace_ms: 5000,
            gossip_forget_ms: 60_000,
            leader_wait_ms: 30_000,
            remove_dead_after: Default::default(),
            name: "caxton".into(),
            secret_file: Unset::default(),
            tls_ca_file: Unset::default(),
            tls_cert_file: Unset::default(),
            tls_key_file: Unset::default(),
            heartbeat_ms: DEFAULT_HEARTBEAT_MS,
            election_timeout_min_ms: DEFAULT_ELECTION_TIMEOUT_MS.0,
            election_timeout_max_ms: DEFAULT_ELECTION_TIMEOUT_MS.1,
            snapshot_after_logs: 10_000,
            logs_to_keep: 1_000,
        }
    }
}

impl Default for LogSection {
    fn default() -> Self {
        Self { format: LogFormat::Text, level: "info,openraft=warn".into() }
    }
}

/// The ordinal a StatefulSet pod's host name ends in (`caxton-2` → 2); its
/// node id is the ordinal + 1.
pub fn statefulset_ordinal(host: &str) -> Option<u64> {
    host.rsplit_once('-').and_then(|(_, n)| n.parse::<u64>().ok())
}

fn system_hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|h| h.trim().to_owned()).filter(|h| !h.is_empty())
}

/// A bad configuration: which key, which value, and why.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{file}:{line}: {key}: {reason}")]
    Syntax { file: String, line: usize, key: String, reason: String },
    #[error("environment variable {var}={value:?}: {reason}")]
    Env { var: String, value: String, reason: String },
    #[error("{flag} {value:?}: {reason}")]
    Flag { flag: String, value: String, reason: String },
    #[error("{key} = {value:?}: {reason}")]
    Invalid { key: String, value: String, reason: String },
}

/// One setting given on the command line: the config key it sets, the flag
/// that set it (for errors), and its raw text. Flags are the last layer
/// merged, after the file and the environment, and before any check runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Flag {
    pub key: &'static str,
    pub flag: &'static str,
    pub value: String,
}

/// The shortest cluster secret a node reachable from the network takes.
const MIN_EXPOSED_SECRET: usize = 32;

impl ServerConfig {
    /// Merges the file (if any), the `CAXTON_*` variables and the flags, in
    /// that order of precedence (flags win), then checks the result once:
    /// every rule sees the merged value, whichever source set it.
    pub fn load(file: Option<&Path>, flags: &[Flag]) -> Result<Self, ConfigError> {
        let mut config = Self::load_with(file, |k| std::env::var(k).ok(), flags)?;
        config.source = ConfigSource { file: file.map(Path::to_path_buf), flags: flags.to_vec() };
        Ok(config)
    }

    /// Reads the config again from where it was first read.
    pub fn reread(&self) -> Result<Self, ConfigError> {
        Self::load(self.source.file.as_deref(), &self.source.flags)
    }

    pub fn load_with(
        file: Option<&Path>,
        lookup: impl Fn(&str) -> Option<String>,
        flags: &[Flag],
    ) -> Result<Self, ConfigError> {
        let (text, name) = match file {
            Some(p) => (
                std::fs::read_to_string(p)
                    .map_err(|source| ConfigError::Read { path: p.display().to_string(), source })?,
                p.display().to_string(),
            ),
            None => (String::new(), "(defaults)".to_owned()),
        };
        let mut doc: toml::Table = toml::from_str(&text).map_err(|e| syntax_error(&name, &text, &e))?;
        let defaults = toml::Table::try_from(ServerConfig::default()).expect("defaults serialize to a table");
        env::apply(&mut doc, &defaults, &lookup).map_err(|(var, value, reason)| ConfigError::Env {
            var,
            value,
            reason,
        })?;
        for f in flags {
            env::set(&mut doc, &defaults, f.key, &f.value).map_err(|reason| ConfigError::Flag {
                flag: f.flag.to_owned(),
                value: f.value.clone(),
                reason,
            })?;
        }
        // Re-serialize so serde reports unknown keys and types with positions.
        let merged = toml::to_string(&doc).expect("a toml table serializes");
        let mut config: ServerConfig = toml::from_str(&merged).map_err(|e| {
            // Positions in the merged text are not the user's: report the key only.
            let key = unknown_key(&e).or_else(|| key_at_error(&merged, &e)).unwrap_or_else(|| "(config)".into());
            // Named by the source that set it last: a flag, a variable, the file.
            if let Some(f) = flags.iter().rev().find(|f| f.key == key) {
                return ConfigError::Flag { flag: f.flag.to_owned(), value: f.value.clone(), reason: first_line(&e) };
            }
            let var = env::env_name(&key.split('.').collect::<Vec<_>>());
            if let Some(value) = lookup(&var) {
                return ConfigError::Env { var, value, reason: first_line(&e) };
            }
            let leaf = key.rsplit('.').next().unwrap_or(&key).to_owned();
            ConfigError::Syntax { file: name.clone(), line: locate_key(&text, &leaf), key, reason: first_line(&e) }
        })?;
        // Declaring one server's policy must not drop the default one.
        config.tools.policy.entry(super::tool_policy::DEFAULT_POLICY.to_owned()).or_default();
        // Declaring providers must not make the built-in ones disappear.
        for (name, default) in LlmSection::default().providers {
            config.llm.providers.entry(name).or_insert(default);
        }
        config.validate()?;
        config.admin_key = admin_key(&config.server.admin_key_file, &lookup)?;
        config.cluster_secret = cluster_secret(&config.cluster.secret_file, &lookup)?;
        config.memory_url = memory_url(&config.memory)?;
        // Held as a secret from here on, not as plain config text.
        config.memory.postgres.url = Unset::default();
        config.check_exposure()?;
        config.resolve_ordinal(|| lookup("HOSTNAME").or_else(system_hostname))?;
        Ok(config)
    }

    /// Applies the StatefulSet conventions: the node id and whether this node
    /// may found the cluster both follow from the pod's ordinal.
    fn resolve_ordinal(&mut self, hostname: impl FnOnce() -> Option<String>) -> Result<(), ConfigError> {
        let c = &mut self.cluster;
        if !c.node_id_from_hostname && c.bootstrap != Bootstrap::Ordinal0 {
            return Ok(());
        }
        let key = if c.node_id_from_hostname { "cluster.node_id_from_hostname" } else { "cluster.bootstrap" };
        let host = hostname().unwrap_or_default();
        let ordinal = statefulset_ordinal(&host).ok_or_else(|| ConfigError::Invalid {
            key: key.into(),
            value: host.clone(),
            reason: "the host name must end in -ORDINAL, as StatefulSet pods do (e.g. caxton-0)".into(),
        })?;
        if c.node_id_from_hostname {
            c.node_id = ordinal + 1;
        }
        if c.bootstrap == Bootstrap::Ordinal0 {
            c.bootstrap = if ordinal == 0 { Bootstrap::True } else { Bootstrap::False };
        }
        Ok(())
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, value: &dyn std::fmt::Display, reason: &str| ConfigError::Invalid {
            key: key.into(),
            value: value.to_string(),
            reason: reason.into(),
        };
        if self.cluster.node_id == 0 {
            return Err(invalid("cluster.node_id", &0, "must be at least 1"));
        }
        if self.server.max_body_bytes < 1024 {
            return Err(invalid("server.max_body_bytes", &self.server.max_body_bytes, "must be at least 1024"));
        }
        if self.server.max_message_bytes < 1024 {
            return Err(invalid("server.max_message_bytes", &self.server.max_message_bytes, "must be at least 1024"));
        }
        if !(1..=100).contains(&self.server.max_message_attempts) {
            return Err(invalid("server.max_message_attempts", &self.server.max_message_attempts, "must be 1 to 100"));
        }
        let sv = &self.server;
        let rate = sv.rate_limit_per_second;
        if !(rate == 0.0 || (0.001..=1e9).contains(&rate)) {
            return Err(invalid("server.rate_limit_per_second", &rate, "must be 0 (unlimited) or 0.001 to 1e9"));
        }
        if !(1..=u32::MAX as u64).contains(&self.tools.memory_budget_mb) {
            return Err(invalid("tools.memory_budget_mb", &self.tools.memory_budget_mb, "must be at least 1"));
        }
        if sv.max_connections == 0 {
            return Err(invalid("server.max_connections", &0, "must be at least 1"));
        }
        if sv.max_requests_per_key == 0 {
            return Err(invalid("server.max_requests_per_key", &0, "must be at least 1"));
        }
        if !(1..=1024).contains(&sv.agent_concurrency) {
            return Err(invalid("server.agent_concurrency", &sv.agent_concurrency, "must be 1 to 1024"));
        }
        if !(sv.agent_spend_per_day_usd.is_finite() && sv.agent_spend_per_day_usd >= 0.0) {
            return Err(invalid(
                "server.agent_spend_per_day_usd",
                &sv.agent_spend_per_day_usd,
                "must be 0 (unlimited) or more",
            ));
        }
        if sv.agent_versions_kept == 0 {
            return Err(invalid("server.agent_versions_kept", &0, "must be at least 1 (the current revision)"));
        }
        if sv.max_concurrent_requests == 0 {
            return Err(invalid("server.max_concurrent_requests", &0, "must be at least 1"));
        }
        if sv.request_timeout_ms < 100 {
            return Err(invalid("server.request_timeout_ms", &sv.request_timeout_ms, "must be at least 100"));
        }
        let c = &self.cluster;
        let cluster_tls = [
            ("cluster.tls_ca_file", &c.tls_ca_file),
            ("cluster.tls_cert_file", &c.tls_cert_file),
            ("cluster.tls_key_file", &c.tls_key_file),
        ];
        if cluster_tls.iter().any(|(_, v)| v.is_set()) {
            if let Some((key, value)) = cluster_tls.iter().find(|(_, v)| !v.is_set()) {
                return Err(invalid(
                    key,
                    value,
                    "cluster TLS needs all of cluster.tls_ca_file, cluster.tls_cert_file and cluster.tls_key_file",
                ));
            }
        }
        if sv.tls_cert_file.is_set() != sv.tls_key_file.is_set() {
            let (key, value) = if !sv.tls_cert_file.is_set() {
                ("server.tls_cert_file", &sv.tls_cert_file)
            } else {
                ("server.tls_key_file", &sv.tls_key_file)
            };
            return Err(invalid(key, value, "TLS needs both server.tls_cert_file and server.tls_key_file"));
        }
        if self.server.agents_reload_ms < 50 {
            return Err(invalid("server.agents_reload_ms", &self.server.agents_reload_ms, "must be at least 50"));
        }
        let c = &self.cluster;
        if !(1..=7).contains(&c.voters) {
            return Err(invalid("cluster.voters", &c.voters, "must be between 1 and 7 (3 or 5 recommended)"));
        }
        if c.remove_dead_after.0.is_some_and(|d| d < Duration::from_secs(1)) {
            return Err(invalid("cluster.remove_dead_after", &c.remove_dead_after, "must be `off` or at least 1s"));
        }
        if c.gossip_forget_ms <= c.dead_grace_ms {
            return Err(invalid(
                "cluster.gossip_forget_ms",
                &c.gossip_forget_ms,
                "must be greater than cluster.dead_grace_ms (a node is declared dead before it is forgotten)",
            ));
        }
        if c.gossip_interval_ms < 10 {
            return Err(invalid("cluster.gossip_interval_ms", &c.gossip_interval_ms, "must be at least 10"));
        }
        if c.election_timeout_min_ms <= c.heartbeat_ms {
            return Err(invalid(
                "cluster.election_timeout_min_ms",
                &c.election_timeout_min_ms,
                "must be greater than cluster.heartbeat_ms",
            ));
        }
        if c.election_timeout_max_ms <= c.election_timeout_min_ms {
            return Err(invalid(
                "cluster.election_timeout_max_ms",
                &c.election_timeout_max_ms,
                "must be greater than cluster.election_timeout_min_ms",
            ));
        }
        if c.snapshot_after_logs == 0 {
            return Err(invalid("cluster.snapshot_after_logs", &0, "must be at least 1"));
        }
        if !self.llm.providers.contains_key(&self.llm.default_provider) {
            let known: Vec<&str> = self.llm.providers.keys().map(String::as_str).collect();
            return Err(invalid(
                "llm.default_provider",
                &self.llm.default_provider,
                &format!("no such provider; configured: {}", known.join(", ")),
            ));
        }
        for (name, p) in &self.llm.providers {
            p.validate(name).map_err(|(key, value, reason)| ConfigError::Invalid { key, value, reason })?;
        }
        for (name, remote) in &self.tools.remote {
            remote.validate(name).map_err(|(key, value, reason)| ConfigError::Invalid { key, value, reason })?;
        }
        self.a2a.validate().map_err(|(key, value, reason)| ConfigError::Invalid { key, value, reason })?;
        for (name, policy) in &self.tools.policy {
            if let Some(var) = policy.env.iter().find(|v| v.starts_with(super::tool_policy::RESERVED_ENV_PREFIX)) {
                return Err(invalid(
                    &format!("tools.policy.{name}.env"),
                    var,
                    "CAXTON_* variables are the node's own settings and secrets; they cannot be granted to a tool",
                ));
            }
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            return Err(invalid("log.level", &self.log.level, &e.to_string()));
        }
        validate_memory(&self.memory)
    }

    /// A node others can reach must know its admin key: without one it
    /// would serve everyone (dev mode is for loopback only). Likewise its
    /// cluster ports need TLS material (RPC is mutual TLS) and the cluster
    /// secret (which seals gossip); the secret alone is for loopback.
    pub fn check_exposure(&self) -> Result<(), ConfigError> {
        let exposed = [
            ("cluster.rpc_listen", Some(self.cluster.rpc_listen)),
            ("cluster.gossip_listen", self.cluster.gossip_listen.get().copied()),
        ]
        .into_iter()
        .find_map(|(key, addr)| addr.filter(|a| !a.get().ip().is_loopback()).map(|a| (key, a)));
        if let Some((key, value)) = exposed {
            let missing = if self.cluster_tls().is_none() {
                Some(
                    "no cluster TLS material is configured: create a CA with `caxton cluster ca init DIR`, issue \
                     this node a certificate with `caxton cluster cert issue --ca-dir DIR --node-id N`, and set \
                     cluster.tls_ca_file, cluster.tls_cert_file and cluster.tls_key_file",
                )
            } else if self.cluster_secret.is_none() {
                Some(
                    "no cluster secret is configured (it keys the gossip seal): set CAXTON_CLUSTER_SECRET or \
                     cluster.secret_file (the same on every node)",
                )
            } else if self.cluster_secret.as_ref().is_some_and(|s| {
                s.expose().lines().map(str::trim).any(|l| !l.is_empty() && l.len() < MIN_EXPOSED_SECRET)
            }) {
                Some(
                    "a cluster secret (CAXTON_CLUSTER_SECRET or cluster.secret_file; one per line) is shorter than 32 bytes: \
                     it keys the gossip seal, and a short one can be guessed offline from one datagram \
                     (`head -c 32 /dev/urandom | base64` makes one)",
                )
            } else {
                None
            };
            if let Some(missing) = missing {
                return Err(ConfigError::Invalid {
                    key: key.into(),
                    value: value.to_string(),
                    reason: format!("not a loopback address, and {missing}"),
                });
            }
        }
        let addr = self.listen_addr();
        if self.admin_key.is_none() && !addr.ip().is_loopback() {
            return Err(ConfigError::Invalid {
                key: "server.listen".into(),
                value: self.server.listen.to_string(),
                reason: "not a loopback address, and no admin key is configured: set CAXTON_ADMIN_KEY or \
                         server.admin_key_file (a node without one serves only 127.0.0.1/localhost)"
                    .into(),
            });
        }
        Ok(())
    }

    /// Serve the API with keys (`true`) or in dev mode.
    pub fn requires_keys(&self) -> bool {
        self.admin_key.is_some()
    }

    /// Mutual TLS between nodes, when configured (all three files are, or
    /// none: `validate` refuses the rest).
    pub fn cluster_tls(&self) -> Option<caxton_cluster::TlsFiles> {
        let c = &self.cluster;
        Some(caxton_cluster::TlsFiles {
            ca: c.tls_ca_file.get()?.clone(),
            cert: c.tls_cert_file.get()?.clone(),
            key: c.tls_key_file.get()?.clone(),
        })
    }

    pub fn tls_files(&self) -> Option<(PathBuf, PathBuf)> {
        let s = &self.server;
        Some((s.tls_cert_file.get()?.clone(), s.tls_key_file.get()?.clone()))
    }

    pub fn listen_addr(&self) -> SocketAddr {
        self.server.listen.get()
    }

    /// The metrics listener's address, if one is configured.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.server.metrics_listen.get().map(|a| a.get())
    }

    pub fn rpc_addr(&self) -> SocketAddr {
        self.cluster.rpc_listen.get()
    }

    /// Where tool servers' `/data` directories live.
    pub fn tool_data_dir(&self) -> PathBuf {
        match self.tools.data_dir.get() {
            Some(dir) => dir.clone(),
            None => self.server.data_dir.join("tool-data"),
        }
    }

    pub fn agents_dir(&self) -> Option<PathBuf> {
        self.server.agents_dir.get().cloned()
    }

    pub fn agents_reload(&self) -> Duration {
        Duration::from_millis(self.server.agents_reload_ms)
    }

    /// Every `CAXTON_*` variable and the key it sets.
    pub fn env_variables() -> Vec<(String, String)> {
        let defaults = toml::Table::try_from(ServerConfig::default()).expect("defaults serialize to a table");
        env::all_variables(&defaults)
    }
}

/// `CAXTON_CLUSTER_SECRET`, else the trimmed contents of `file`.
fn cluster_secret(
    file: &Unset<PathBuf>,
    lookup: &impl Fn(&str) -> Option<String>,
) -> Result<Option<Secret>, ConfigError> {
    if let Some(s) = lookup("CAXTON_CLUSTER_SECRET").filter(|s| !s.is_empty()) {
        return Ok(Some(Secret(s)));
    }
    let Some(file) = file.get() else { return Ok(None) };
    let text = std::fs::read_to_string(file).map_err(|e| ConfigError::Invalid {
        key: "cluster.secret_file".into(),
        value: file.display().to_string(),
        reason: format!("cannot read the cluster secret: {e}"),
    })?;
    Ok(Some(Secret(text.trim().to_owned())).filter(|s| !s.0.is_empty()))
}

/// `CAXTON_ADMIN_KEY`, else the trimmed contents of `file`.
fn admin_key(file: &Unset<PathBuf>, lookup: &impl Fn(&str) -> Option<String>) -> Result<Option<Secret>, ConfigError> {
    let (key, source, value) = match (lookup("CAXTON_ADMIN_KEY").filter(|k| !k.is_empty()), file.get()) {
        (Some(k), _) => ("CAXTON_ADMIN_KEY", "CAXTON_ADMIN_KEY".to_owned(), k),
        (None, None) => return Ok(None),
        (None, Some(file)) => {
            let text = std::fs::read_to_string(file).map_err(|e| ConfigError::Invalid {
                key: "server.admin_key_file".into(),
                value: file.display().to_string(),
                reason: format!("cannot read the admin key: {e}"),
            })?;
            ("server.admin_key_file", file.display().to_string(), text.trim().to_owned())
        }
    };
    if value.chars().count() < MIN_ADMIN_KEY_LEN || value.chars().any(char::is_whitespace) {
        return Err(ConfigError::Invalid {
            key: key.into(),
            // The value is a secret: name where it came from, not what it is.
            value: source,
            reason: format!(
                "the admin key must be at least {MIN_ADMIN_KEY_LEN} characters without spaces \
                 (e.g. `openssl rand -base64 32`)"
            ),
        });
    }
    Ok(Some(Secret(value)))
}

fn first_line(e: &toml::de::Error) -> String {
    e.message().lines().next().unwrap_or("invalid").to_owned()
}

fn unknown_key(e: &toml::de::Error) -> Option<String> {
    let rest = e.message().strip_prefix("unknown field `")?;
    Some(rest[..rest.find('`')?].to_owned())
}

/// The dotted key (`log.format`) whose value a deserialization error points at.
fn key_at_error(text: &str, e: &toml::de::Error) -> Option<String> {
    let start = e.span()?.start.min(text.len());
    let line_start = text[..start].rfind('\n').map(|i| i + 1).unwrap_or(0);
    let (key, _) = text[line_start..].lines().next()?.split_once('=')?;
    let section = text[..line_start]
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix('[').and_then(|r| r.strip_suffix(']')).map(str::to_owned));
    let key = key.trim();
    Some(match section {
        Some(s) => format!("{s}.{key}"),
        None => key.to_owned(),
    })
}

fn locate_key(text: &str, key: &str) -> usize {
    text.lines()
        .position(|l| {
            let l = l.trim_start();
            let is_assignment = l.strip_prefix(key).is_some_and(|rest| rest.trim_start().starts_with('='));
            let is_table =
                l.strip_prefix('[').and_then(|r| r.strip_prefix(key)).is_some_and(|r| r.starts_with([']', '.']));
            is_assignment || is_table
        })
        .map(|i| i + 1)
        .unwrap_or(0)
}

fn syntax_error(file: &str, text: &str, e: &toml::de::Error) -> ConfigError {
    let line = e.span().map(|s| super::span::line_col(text, s.start).0).unwrap_or(0);
    ConfigError::Syntax { file: file.into(), line, key: "(syntax)".into(), reason: first_line(e) }
}

/// The `[memory]` rules: ranges, and the names `migrate_from` may take.
fn validate_memory(memory: &MemorySection) -> Result<(), ConfigError> {
    let invalid = |key: &str, value: &dyn std::fmt::Display, reason: &str| ConfigError::Invalid {
        key: key.into(),
        value: value.to_string(),
        reason: reason.into(),
    };
    let pg = &memory.postgres;
    if !(1..=1000).contains(&pg.pool_size) {
        return Err(invalid("memory.postgres.pool_size", &pg.pool_size, "must be 1 to 1000"));
    }
    if pg.connect_timeout_ms < 100 {
        return Err(invalid("memory.postgres.connect_timeout_ms", &pg.connect_timeout_ms, "must be at least 100"));
    }
    if pg.statement_timeout_ms < 100 {
        return Err(invalid("memory.postgres.statement_timeout_ms", &pg.statement_timeout_ms, "must be at least 100"));
    }
    if pg.exact_search_below > 1_000_000_000 {
        return Err(invalid(
            "memory.postgres.exact_search_below",
            &pg.exact_search_below,
            "must be at most 1000000000",
        ));
    }
    if !(1..=1000).contains(&pg.hnsw_ef_search) {
        return Err(invalid("memory.postgres.hnsw_ef_search", &pg.hnsw_ef_search, "must be 1 to 1000"));
    }
    if let Some(from) = memory.migrate_from.get() {
        if MemoryBackendKind::parse(from).is_none() {
            return Err(invalid("memory.migrate_from", from, "must be `embedded` or `postgres`"));
        }
    }
    Ok(())
}

/// The database URL when the backend is `postgres`:
/// `CAXTON_MEMORY_POSTGRES_URL` or `memory.postgres.url` (already merged),
/// else the trimmed contents of `memory.postgres.url_file`.
fn memory_url(memory: &MemorySection) -> Result<Option<Secret>, ConfigError> {
    if memory.backend != MemoryBackendKind::Postgres {
        return Ok(None);
    }
    let pg = &memory.postgres;
    let (key, value) = match (pg.url.get(), pg.url_file.get()) {
        (Some(url), _) => ("memory.postgres.url", url.trim().to_owned()),
        (None, Some(file)) => {
            let text = std::fs::read_to_string(file).map_err(|e| ConfigError::Invalid {
                key: "memory.postgres.url_file".into(),
                value: file.display().to_string(),
                reason: format!("cannot read the database URL: {e}"),
            })?;
            ("memory.postgres.url_file", text.trim().to_owned())
        }
        (None, None) => {
            return Err(ConfigError::Invalid {
                key: "memory.postgres.url".into(),
                value: String::new(),
                reason: "required when memory.backend = \"postgres\" (or CAXTON_MEMORY_POSTGRES_URL, or \
                             memory.postgres.url_file)"
                    .into(),
            })
        }
    };
    if let Err(e) = value.parse::<tokio_postgres::Config>() {
        return Err(ConfigError::Invalid {
            key: key.into(),
            // The URL may hold a password: say where it came from, not what it is.
            value: "(hidden)".into(),
            reason: format!("not a PostgreSQL connection URL: {e}"),
        });
    }
    Ok(Some(Secret::new(value)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(text: &str, env: &[(&str, &str)]) -> Result<ServerConfig, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("caxton.toml");
        std::fs::write(&path, text).unwrap();
        let env: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        ServerConfig::load_with(Some(&path), |k| env.get(k).cloned(), &[])
    }

    #[test]
    fn env_overrides_file() {
        let c = load("[server]\nlisten = \"127.0.0.1:1\"\n", &[("CAXTON_SERVER_LISTEN", "127.0.0.1:2")]).unwrap();
        assert_eq!(c.server.listen.get(), "127.0.0.1:2".parse().unwrap());
        let c = load("", &[("CAXTON_CLUSTER_NODE_ID", "7"), ("CAXTON_CLUSTER_BOOTSTRAP", "false")]).unwrap();
        assert_eq!(c.cluster.node_id, 7);
        assert_eq!(c.cluster.bootstrap, Bootstrap::False);
    }

    #[test]
    fn errors_name_key_value_and_reason() {
        let e = load("[server]\nlisten = \"nowhere\"\n", &[]).unwrap_err().to_string();
        assert!(e.contains("server.listen") && e.contains("nowhere") && e.contains("expected an IP"), "{e}");
        let e = load("[server]\nlisen = \"x\"\n", &[]).unwrap_err().to_string();
        assert!(e.contains("lisen") && e.contains(":2:"), "{e}");
        let e = load("", &[("CAXTON_CLUSTER_NODE_ID", "abc")]).unwrap_err().to_string();
        assert!(e.contains("CAXTON_CLUSTER_NODE_ID") && e.contains("abc") && e.contains("integer"), "{e}");
    }

    #[test]
    fn gossip_forgets_a_node_only_after_declaring_it_dead() {
        let c = load("[cluster]\ngossip_forget_ms = 8000\n", &[]).unwrap();
        assert_eq!(c.cluster.gossip_forget_ms, 8000);
        let c = load("", &[("CAXTON_CLUSTER_GOSSIP_FORGET_MS", "9000")]).unwrap();
        assert_eq!(c.cluster.gossip_forget_ms, 9000);
        let e = load("[cluster]\ndead_grace_ms = 5000\ngossip_forget_ms = 4000\n", &[]).unwrap_err().to_string();
        assert!(e.contains("cluster.gossip_forget_ms") && e.contains("4000") && e.contains("dead_grace_ms"), "{e}");
    }

    #[test]
    fn the_leader_wait_comes_from_file_or_variable() {
        assert_eq!(load("", &[]).unwrap().cluster.leader_wait_ms, 30_000);
        assert_eq!(load("[cluster]\nleader_wait_ms = 0\n", &[]).unwrap().cluster.leader_wait_ms, 0);
        let c = load("[cluster]\nleader_wait_ms = 0\n", &[("CAXTON_CLUSTER_LEADER_WAIT_MS", "2500")]).unwrap();
        assert_eq!(c.cluster.leader_wait_ms, 2500);
    }

    #[test]
    fn a_statefulset_pod_takes_its_node_id_and_bootstrap_role_from_its_ordinal() {
        let sts = "[cluster]\nnode_id_from_hostname = true\nbootstrap = \"ordinal-0\"\n";
        let c = load(sts, &[("HOSTNAME", "caxton-0")]).unwrap();
        assert_eq!((c.cluster.node_id, c.cluster.bootstrap), (1, Bootstrap::True));
        let c = load(sts, &[("HOSTNAME", "my-caxton-12")]).unwrap();
        assert_eq!((c.cluster.node_id, c.cluster.bootstrap), (13, Bootstrap::False));
        let c = load("", &[("HOSTNAME", "caxton-3"), ("CAXTON_CLUSTER_BOOTSTRAP", "ordinal-0")]).unwrap();
        assert_eq!((c.cluster.node_id, c.cluster.bootstrap), (1, Bootstrap::False), "node_id stays as configured");
        let e = load(sts, &[("HOSTNAME", "laptop")]).unwrap_err().to_string();
        assert!(e.contains("cluster.node_id_from_hostname") && e.contains("laptop") && e.contains("-ORDINAL"), "{e}");
        let e = load("[cluster]\nbootstrap = \"first\"\n", &[]).unwrap_err().to_string();
        assert!(e.contains("cluster.bootstrap") && e.contains("ordinal-0"), "{e}");
    }

    #[test]
    fn every_key_has_a_variable() {
        let vars = ServerConfig::env_variables();
        assert!(vars.iter().any(|(k, v)| k == "server.data_dir" && v == "CAXTON_SERVER_DATA_DIR"));
        assert!(vars.len() >= 20);
    }
}
