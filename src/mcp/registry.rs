//! Deployed tool servers: replicated through Raft (content-addressed, size
//! capped), compiled lazily per node, their tools callable by name.

use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine;
use caxton_cluster::{ReadError, WriteError};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::catalog::Deployed;
use super::errors::ToolError;
use super::host::{CompiledServer, McpHost, ToolInfo};
use super::manifest::Manifest;
use super::policy::ToolPolicies;
use crate::observability::Outcome;
use crate::state::{DeployMcpServer, Queries, RemoveMcpServer, Store, ToolDeployer, ToolRefusal};

/// Largest module accepted (it travels through the Raft log).
pub const MAX_MODULE_BYTES: usize = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum McpError {
    #[error("invalid tool server: {0}")]
    Invalid(String),
    #[error("tool server `{server}` asks for more than this node's policy grants: {}", .excesses.join("; "))]
    Refused { server: String, excesses: Vec<String> },
    #[error("no tool server named `{0}`")]
    UnknownServer(String),
    #[error("{0}")]
    NotOwner(String),
    #[error("the tool `{0}` is not declared by any agent this API key may use")]
    NotGranted(String),
    #[error("no tool named `{name}`; available tools: {}", if .available.is_empty() { "none".to_owned() } else { .available.join(", ") })]
    UnknownTool { name: String, available: Vec<String> },
    #[error("tool `{tool}` is offered by several allowlisted servers ({}); name one as `SERVER/{tool}` in the agent's tools", .servers.join(", "))]
    AmbiguousTool { tool: String, servers: Vec<String> },
    #[error(transparent)]
    Tool(#[from] ToolError),
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error(transparent)]
    Read(#[from] ReadError),
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ServerRecord {
    pub name: String,
    pub version: String,
    pub description: String,
    /// sha256 of the module.
    pub hash: String,
    pub size_bytes: usize,
    #[schema(value_type = Object)]
    pub limits: super::manifest::ManifestLimits,
    /// The manifest declares the server stateless: calls may share warm,
    /// initialised sessions.
    pub stateless: bool,
    #[schema(value_type = Vec<Object>)]
    pub tools: Vec<ToolInfo>,
    pub deployed_at_ms: i64,
    /// A remote server (`[tools.remote.NAME]`): its URL and whether it
    /// answered its last request. Absent for WebAssembly servers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote: Option<RemoteView>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RemoteView {
    pub url: String,
    #[serde(flatten)]
    pub reach: super::remote::Reachability,
}

/// The remote servers of the node's config, by name.
type Remotes = std::collections::BTreeMap<String, Arc<super::remote::RemoteServer>>;

fn remotes_of(config: &std::collections::BTreeMap<String, crate::config::RemoteMcpServer>) -> Remotes {
    config.iter().map(|(name, c)| (name.clone(), Arc::new(super::remote::RemoteServer::new(name, c.clone())))).collect()
}

pub struct McpRegistry {
    store: Store,
    queries: Queries,
    catalog: super::catalog::CatalogCache,
    host: Arc<McpHost>,
    data_root: PathBuf,
    metrics: Arc<crate::observability::Metrics>,
    /// Replaced whole by a config reload; each deploy or call reads it once.
    policies: parking_lot::RwLock<Arc<ToolPolicies>>,
    /// Replaced whole by a config reload, like the policies.
    remotes: parking_lot::RwLock<Arc<Remotes>>,
}

impl McpRegistry {
    pub fn new(
        ledger: &crate::state::Ledger,
        host: Arc<McpHost>,
        data_root: PathBuf,
        policies: ToolPolicies,
        remotes: &std::collections::BTreeMap<String, crate::config::RemoteMcpServer>,
        metrics: Arc<crate::observability::Metrics>,
    ) -> Self {
        Self {
            store: ledger.store.clone(),
            catalog: super::catalog::CatalogCache::new(ledger.queries.clone(), ledger.state().clone()),
            queries: ledger.queries.clone(),
            host,
            data_root,
            metrics,
            policies: parking_lot::RwLock::new(Arc::new(policies)),
            remotes: parking_lot::RwLock::new(Arc::new(remotes_of(remotes))),
        }
    }

    fn remotes(&self) -> Arc<Remotes> {
        self.remotes.read().clone()
    }

    /// The remote servers from now on (a config reload).
    pub fn set_remotes(&self, config: &std::collections::BTreeMap<String, crate::config::RemoteMcpServer>) {
        *self.remotes.write() = Arc::new(remotes_of(config));
    }

    async fn remote_record(server: &super::remote::RemoteServer) -> ServerRecord {
        let tools = server.tools().await;
        ServerRecord {
            name: server.name.clone(),
            version: String::new(),
            description: format!("remote MCP server at {}", server.url()),
            hash: String::new(),
            size_bytes: 0,
            limits: Default::default(),
            stateless: false,
            tools,
            deployed_at_ms: 0,
            remote: Some(RemoteView { url: server.url().to_owned(), reach: server.reachability() }),
        }
    }

    fn policies(&self) -> Arc<ToolPolicies> {
        self.policies.read().clone()
    }

    /// What tool servers are granted from now on (a config reload): new
    /// deploys and calls are checked and sandboxed under `policies`.
    pub fn set_policies(&self, policies: ToolPolicies) {
        *self.policies.write() = Arc::new(policies);
    }

    /// Validates, compiles and lists the tools here, then replicates.
    pub async fn deploy(
        &self,
        manifest_text: &str,
        module: Vec<u8>,
        by: ToolDeployer,
    ) -> Result<ServerRecord, McpError> {
        let manifest = Manifest::parse(manifest_text).map_err(McpError::Invalid)?;
        if self.remotes().contains_key(&manifest.name) {
            return Err(McpError::Invalid(format!(
                "`{}` names a remote MCP server in this node's config ([tools.remote.{}]); choose another name",
                manifest.name, manifest.name
            )));
        }
        let policies = self.policies();
        let excesses = policies.excesses(&manifest, &by);
        if !excesses.is_empty() {
            return Err(McpError::Refused { server: manifest.name, excesses });
        }
        if module.len() > MAX_MODULE_BYTES {
            return Err(McpError::Invalid(format!(
                "module is {} bytes; the limit is {MAX_MODULE_BYTES}",
                module.len()
            )));
        }
        let encoded = base64::engine::general_purpose::STANDARD.encode(&module);
        let compiled = self.compile(module).await?;
        let tools = self.host.list_tools(&compiled, policies.limits(&manifest, &by)).await?;
        let cmd = DeployMcpServer {
            name: manifest.name.clone(),
            manifest: manifest_text.to_owned(),
            module: encoded,
            tools: serde_json::to_string(&tools).unwrap_or_default(),
            at_ms: crate::time::now_ms(),
            by,
        };
        self.store.propose(cmd).await?.map_err(|refused| match refused {
            ToolRefusal::Invalid(why) => McpError::Invalid(why),
            ToolRefusal::NotOwner(why) => McpError::NotOwner(why),
        })?;
        self.get(&manifest.name).await?.ok_or(McpError::UnknownServer(manifest.name))
    }

    pub async fn remove(&self, name: &str, by: ToolDeployer) -> Result<(), McpError> {
        match self.store.propose(RemoveMcpServer { name: name.to_owned(), by }).await?.map_err(McpError::NotOwner)? {
            true => Ok(()),
            false => Err(McpError::UnknownServer(name.to_owned())),
        }
    }

    /// Deployed servers, then the remote ones (their tools as last listed).
    pub async fn list(&self) -> Result<Vec<ServerRecord>, McpError> {
        let mut out: Vec<ServerRecord> = self.catalog.get().await?.values().filter_map(|d| record(d)).collect();
        for server in self.remotes().values() {
            out.push(Self::remote_record(server).await);
        }
        Ok(out)
    }

    /// A deployed server (remote ones are the config's, not deployed).
    pub async fn get(&self, name: &str) -> Result<Option<ServerRecord>, McpError> {
        Ok(self.catalog.get().await?.get(name).and_then(|d| record(d)))
    }

    /// Deploys every `DIR/*/manifest.toml` + module found under `root` whose
    /// module is not deployed yet (by content hash). Returns what it did.
    pub async fn deploy_dir(&self, root: &std::path::Path) -> Vec<(String, Result<(), String>)> {
        let mut out = Vec::new();
        let Ok(entries) = std::fs::read_dir(root) else { return out };
        let mut dirs: Vec<PathBuf> =
            entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.join("manifest.toml").is_file()).collect();
        dirs.sort();
        for dir in dirs {
            let label = dir.display().to_string();
            let result = async {
                let manifest = std::fs::read_to_string(dir.join("manifest.toml")).map_err(|e| e.to_string())?;
                let module_path = std::fs::read_dir(&dir)
                    .map_err(|e| e.to_string())?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .find(|p| p.extension().is_some_and(|x| x == "wasm"))
                    .ok_or("no .wasm module beside manifest.toml (run `make wasm`)")?;
                let module = std::fs::read(&module_path).map_err(|e| e.to_string())?;
                let name = Manifest::parse(&manifest)?.name;
                let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&module));
                if self.get(&name).await.map_err(|e| e.to_string())?.is_some_and(|r| r.hash == hash) {
                    return Ok(());
                }
                self.deploy(&manifest, module, ToolDeployer::operator()).await.map(|_| ()).map_err(|e| e.to_string())
            }
            .await;
            out.push((label, result));
        }
        out
    }

    /// Every tool of every server: (tool, server).
    pub async fn tools(&self) -> Result<Vec<(ToolInfo, String)>, McpError> {
        let deployed = self.catalog.get().await?;
        let mut out: Vec<(ToolInfo, String)> = deployed
            .values()
            .filter(|d| d.manifest.is_ok())
            .flat_map(|d| d.tools.iter().map(|t| (t.clone(), d.row.name.clone())))
            .collect();
        for server in self.remotes().values() {
            out.extend(server.tools().await.into_iter().map(|t| (t, server.name.clone())));
        }
        Ok(out)
    }

    /// A deployed server, from the catalog.
    async fn deployed(&self, server: &str) -> Result<Arc<Deployed>, McpError> {
        let deployed = self.catalog.get().await?.get(server).cloned();
        deployed.ok_or_else(|| McpError::UnknownServer(server.to_owned()))
    }

    /// A deployed server, compiled. The module itself is read (and hashed,
    /// and compiled) only the first time this node sees its hash.
    async fn load(&self, deployed: &Deployed) -> Result<CompiledServer, McpError> {
        if let Some(compiled) = self.host.compiled(&deployed.row.hash) {
            return Ok(compiled);
        }
        let server = &deployed.row.name;
        let module = self.queries.tool_server_module(server).await?;
        let module = module.ok_or_else(|| McpError::UnknownServer(server.to_owned()))?;
        self.compile(module).await
    }

    /// Cranelift compilation takes CPU for a while: never on an async
    /// worker, where it would stall the node's Raft heartbeats.
    async fn compile(&self, module: Vec<u8>) -> Result<CompiledServer, McpError> {
        let host = self.host.clone();
        let compiled = tokio::task::spawn_blocking(move || host.compile(&module))
            .await
            .map_err(|e| McpError::Tool(ToolError::Trap(format!("compilation stopped: {e}"))))?;
        Ok(compiled?)
    }

    /// Calls a tool by name, on whichever server provides it (the REST and
    /// MCP front doors; `SERVER/TOOL` picks one server).
    pub async fn call(&self, tool: &str, arguments: Value) -> Result<Value, McpError> {
        self.call_granted(tool, arguments, &[]).await
    }

    /// Calls `tool` for a caller limited to the tools in `granted` (entries
    /// name a tool, a server, or `server/tool`); any other is refused as if
    /// it did not exist. `None`: no limit.
    pub async fn call_within(
        &self,
        tool: &str,
        arguments: Value,
        granted: Option<&[String]>,
    ) -> Result<Value, McpError> {
        let Some(granted) = granted else { return self.call(tool, arguments).await };
        let name = split_tool(tool).1;
        let permitted: Vec<String> = self
            .offering(tool)
            .await?
            .into_iter()
            .filter(|s| granted.iter().any(|g| entry_grants(g, s, name)))
            .collect();
        if permitted.is_empty() {
            return Err(McpError::NotGranted(tool.to_owned()));
        }
        self.call_among(permitted.clone(), tool, arguments, &permitted).await
    }

    /// The tools `granted` lets a limited caller list (`None`: all).
    pub async fn tools_within(&self, granted: Option<&[String]>) -> Result<Vec<(ToolInfo, String)>, McpError> {
        let tools = self.tools().await?;
        Ok(match granted {
            None => tools,
            Some(g) => tools.into_iter().filter(|(t, s)| g.iter().any(|a| entry_grants(a, s, &t.name))).collect(),
        })
    }

    /// Calls `tool` on the server an agent's `allowlist` grants it from: an
    /// entry naming the server (`SERVER` or `SERVER/TOOL`) wins over one
    /// naming only the tool, so a server deployed later that offers the same
    /// tool name cannot take an agent's calls. An empty allowlist grants
    /// every server. Two servers granted alike is an error, never a guess.
    pub async fn call_granted(&self, tool: &str, arguments: Value, allowlist: &[String]) -> Result<Value, McpError> {
        let offering = self.offering(tool).await?;
        self.call_among(offering, tool, arguments, allowlist).await
    }

    /// The servers offering `tool` (`SERVER/TOOL`: that server only), from
    /// the catalog's index: no tool list is built or copied for a call.
    async fn offering(&self, tool: &str) -> Result<Vec<String>, McpError> {
        let (hint, name) = split_tool(tool);
        let deployed = self.catalog.get().await?;
        let mut out: Vec<String> = deployed
            .values()
            .filter(|d| d.manifest.is_ok() && hint.is_none_or(|h| h == d.row.name))
            .filter(|d| d.tools.iter().any(|t| t.name == name))
            .map(|d| d.row.name.clone())
            .collect();
        for server in self.remotes().values().filter(|s| hint.is_none_or(|h| h == s.name)) {
            if server.tools().await.iter().any(|t| t.name == name) {
                out.push(server.name.clone());
            }
        }
        Ok(out)
    }

    /// [`call_granted`](Self::call_granted) among the servers `offering` it.
    async fn call_among(
        &self,
        offering: Vec<String>,
        tool: &str,
        arguments: Value,
        allowlist: &[String],
    ) -> Result<Value, McpError> {
        let tool = split_tool(tool).1;
        let by_server: Vec<&String> =
            offering.iter().filter(|s| allowlist.iter().any(|a| a == *s || *a == format!("{s}/{tool}"))).collect();
        let candidates = if by_server.is_empty() { offering.iter().collect() } else { by_server };
        let server = match candidates.as_slice() {
            [] => {
                // Only now is the whole list worth building: to name what there is.
                let available = self.tools().await?.into_iter().map(|(t, _)| t.name).collect();
                return Err(McpError::UnknownTool { name: tool.to_owned(), available });
            }
            [one] => (*one).clone(),
            several => {
                return Err(McpError::AmbiguousTool {
                    tool: tool.to_owned(),
                    servers: several.iter().map(|s| s.to_string()).collect(),
                })
            }
        };
        if let Some(remote) = self.remotes().get(&server).cloned() {
            let started = std::time::Instant::now();
            let result = remote.call_tool(tool, arguments).await;
            self.metrics.tool_call(&server, tool, outcome_of(&result), started.elapsed());
            return Ok(result?);
        }
        let deployed = self.deployed(&server).await?;
        let manifest = deployed.manifest.as_ref().map_err(|why| McpError::Invalid(why.clone()))?;
        let by = &deployed.row.deployed_by;
        let compiled = self.load(&deployed).await?;
        // What the manifest asks and this node's policy grants its deployer; no more.
        let policies = self.policies();
        let (sandbox, data_dir) = policies.sandbox(manifest, by, &self.data_root);
        if let Some(dir) = data_dir {
            std::fs::create_dir_all(&dir)
                .map_err(|e| McpError::Invalid(format!("cannot create {}: {e}", dir.display())))?;
        }
        let limits = policies.limits(manifest, by);
        let started = std::time::Instant::now();
        self.metrics.tool_instances.inc();
        let result = if manifest.stateless {
            self.host.call_stateless(&compiled, tool, arguments, limits, sandbox).await
        } else {
            self.host.call_tool(&compiled, tool, arguments, limits, sandbox).await
        };
        self.metrics.tool_instances.dec();
        self.metrics.tool_warm_sessions.set(self.host.warm_sessions() as i64);
        self.metrics.tool_call(&server, tool, outcome_of(&result), started.elapsed());
        Ok(result?)
    }
}

fn outcome_of(result: &Result<Value, ToolError>) -> Outcome {
    match result {
        Ok(r) if r["isError"] == true => Outcome::Error,
        Ok(_) => Outcome::Ok,
        Err(ToolError::MemoryLimit { .. }) => Outcome::Memory,
        Err(ToolError::CpuLimit { .. }) => Outcome::Fuel,
        Err(ToolError::Timeout { .. }) => Outcome::Timeout,
        Err(_) => Outcome::Error,
    }
}

/// Whether an allowlist entry grants `tool` of `server`: it names the
/// tool, the server (all its tools), or `server/tool`.
pub fn entry_grants(entry: &str, server: &str, tool: &str) -> bool {
    entry == tool || entry == server || entry.strip_prefix(server).and_then(|r| r.strip_prefix('/')) == Some(tool)
}

/// `SERVER/TOOL` → (Some(SERVER), TOOL); `TOOL` → (None, TOOL).
fn split_tool(tool: &str) -> (Option<&str>, &str) {
    tool.split_once('/').map_or((None, tool), |(s, t)| (Some(s), t))
}

/// The public view of a stored server; `None` for a manifest this
/// version cannot read (it stays stored, and is skipped).
fn record(d: &Deployed) -> Option<ServerRecord> {
    let m = d.manifest.as_ref().ok()?;
    Some(ServerRecord {
        name: d.row.name.clone(),
        version: m.version.clone(),
        description: m.description.clone(),
        hash: d.row.hash.clone(),
        size_bytes: d.row.size_bytes,
        limits: m.limits.clone(),
        stateless: m.stateless,
        tools: d.tools.clone(),
        deployed_at_ms: d.row.deployed_at_ms,
        remote: None,
    })
}

impl crate::problems::Classified for McpError {
    fn problem_type(&self) -> crate::problems::ProblemType {
        use crate::problems::ProblemType;
        match self {
            Self::Invalid(_) | Self::Refused { .. } => ProblemType::InvalidToolServer,
            Self::NotOwner(_) | Self::NotGranted(_) => ProblemType::OutsideKeyGrant,
            Self::UnknownServer(_) => ProblemType::ToolServerNotFound,
            Self::UnknownTool { .. } => ProblemType::ToolNotFound,
            Self::AmbiguousTool { .. } => ProblemType::InvalidToolServer,
            Self::Tool(t) => t.problem_type(),
            Self::Write(w) => w.problem_type(),
            Self::Read(r) => r.problem_type(),
        }
    }

    fn problem_extra(&self) -> Option<serde_json::Value> {
        match self {
            Self::UnknownTool { available, .. } => Some(serde_json::json!({ "available": available })),
            Self::Refused { excesses, .. } => Some(serde_json::json!({ "excesses": excesses })),
            _ => None,
        }
    }
}

impl crate::problems::Classified for ToolError {
    fn problem_type(&self) -> crate::problems::ProblemType {
        use crate::problems::ProblemType;
        match self {
            Self::InvalidModule(_) => ProblemType::InvalidModule,
            Self::MemoryLimit { .. } => ProblemType::ToolMemoryLimit,
            Self::CpuLimit { .. } => ProblemType::ToolCpuLimit,
            Self::Timeout { .. } => ProblemType::ToolTimeout,
            Self::OutputLimit { .. } => ProblemType::ToolOutputLimit,
            Self::InputLimit { .. } => ProblemType::ToolInputLimit,
            Self::NoInitialize => ProblemType::ToolNotMcp,
            Self::Trap(_) | Self::Protocol(_) => ProblemType::ToolFailed,
            Self::Remote(_) => ProblemType::ToolServerUnavailable,
            Self::Rpc { .. } => ProblemType::ToolRpcError,
        }
    }
}
