use std::sync::Arc;

use caxton_cluster::{Cluster, ReadError, WriteError};

use super::tools::BUILTIN_TOOLS;
use crate::config::{AgentName, AgentSpec, FieldError, ParseAgentError};
use crate::mcp::McpRegistry;
use crate::state::{
    AgentRecord, AgentSource, CaxtonState, DeployAgent, Deployment, Queries, Removal, RemoveAgent, Store,
};

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Invalid(#[from] ParseAgentError),
    #[error("agent `{0}` does not exist")]
    NotFound(String),
    #[error("the URL names agent `{path}` but the definition names `{body}`")]
    NameMismatch { path: String, body: String },
    #[error("agent `{0}` is managed by a file in an agents directory; edit or delete the file instead")]
    FileManaged(String),
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error(transparent)]
    Read(#[from] ReadError),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployOutcome {
    pub name: AgentName,
    pub revision: u64,
    pub created: bool,
    pub changed: bool,
}

/// Validates definitions at the edge and turns them into Raft commands.
#[derive(Clone)]
pub struct AgentRegistry {
    cluster: Arc<Cluster<CaxtonState>>,
    store: Store,
    queries: Queries,
    mcp: Option<Arc<McpRegistry>>,
    metrics: Option<Arc<crate::observability::Metrics>>,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl AgentRegistry {
    pub fn new(cluster: Arc<Cluster<CaxtonState>>) -> Self {
        let queries = Queries::new(cluster.replica().clone());
        Self { store: Store::new(cluster.clone()), cluster, queries, mcp: None, metrics: None }
    }

    /// Counts deploys, updates and removals made through this node.
    pub fn with_metrics(mut self, metrics: Arc<crate::observability::Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    fn event(&self, event: crate::observability::AgentEvent) {
        if let Some(m) = &self.metrics {
            m.agent_event(event);
        }
    }

    /// Enables checking agents' `tools` against the deployed tool servers.
    pub fn with_tools(mut self, mcp: Arc<McpRegistry>) -> Self {
        self.mcp = Some(mcp);
        self
    }

    /// Every `tools` entry must name a built-in tool, a deployed tool, or a
    /// deployed tool server; otherwise the definition is refused with the
    /// list of what exists.
    async fn check_tools(&self, spec: &AgentSpec, text: &str, file: &str) -> Result<(), RegistryError> {
        let Some(mcp) = &self.mcp else { return Ok(()) };
        if spec.tools.iter().all(|t| BUILTIN_TOOLS.contains(&t.as_str())) {
            return Ok(());
        }
        let deployed = mcp.tools().await.map_err(|e| RegistryError::Write(WriteError::Rejected(e.to_string())))?;
        let mut available: Vec<String> = BUILTIN_TOOLS.iter().map(|s| s.to_string()).collect();
        for (tool, server) in &deployed {
            available.push(tool.name.clone());
            // `server/tool` names one server's tool when several offer it.
            available.push(format!("{server}/{}", tool.name));
            if !available.contains(server) {
                available.push(server.clone());
            }
        }
        let errors: Vec<FieldError> = spec
            .tools
            .iter()
            .filter(|t| !available.contains(t))
            .map(|t| {
                let line = text.lines().position(|l| l.contains(&format!("\"{t}\""))).map(|i| i + 1);
                FieldError {
                    file: file.to_owned(),
                    line,
                    column: line.map(|_| 1),
                    field: "tools".into(),
                    reason: format!("`{t}` is not an available tool; available tools: {}", available.join(", ")),
                }
            })
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(RegistryError::Invalid(ParseAgentError(errors)))
        }
    }

    pub fn queries(&self) -> &Queries {
        &self.queries
    }

    /// Picks the node that runs a new agent. One node runs everything until
    /// placement by shard lands; the leader is the natural single owner.
    fn owner_for(&self, _name: &AgentName) -> u64 {
        self.cluster.status().leader.unwrap_or(self.cluster.node_id())
    }

    /// Deploys (creates or updates) a validated definition.
    pub async fn deploy(
        &self,
        spec: AgentSpec,
        toml: String,
        source: AgentSource,
        must_exist: bool,
    ) -> Result<DeployOutcome, RegistryError> {
        let name = spec.name.clone();
        let command = DeployAgent { owner: self.owner_for(&name), spec, toml, source, at_ms: now_ms(), must_exist };
        match self.store.propose(command).await? {
            Deployment::Deployed { revision, created } => {
                use crate::observability::AgentEvent;
                self.event(if created { AgentEvent::Deployed } else { AgentEvent::Updated });
                Ok(DeployOutcome { name, revision, created, changed: true })
            }
            Deployment::Unchanged { revision } => Ok(DeployOutcome { name, revision, created: false, changed: false }),
            Deployment::NotFound => Err(RegistryError::NotFound(name.to_string())),
        }
    }

    /// Deploys a definition read from an agents-directory file.
    pub async fn deploy_file(
        &self,
        spec: AgentSpec,
        text: String,
        file: &str,
        source: AgentSource,
    ) -> Result<DeployOutcome, RegistryError> {
        self.check_tools(&spec, &text, file).await?;
        self.deploy(spec, text, source, false).await
    }

    /// Deploys TOML text; `file` names it in validation errors.
    pub async fn deploy_toml(
        &self,
        text: &str,
        file: &str,
        expect_name: Option<&AgentName>,
        must_exist: bool,
    ) -> Result<DeployOutcome, RegistryError> {
        let spec = AgentSpec::from_toml(text, file)?;
        self.deploy_from_api(spec, text.to_owned(), file, expect_name, must_exist).await
    }

    /// Deploys a JSON agent object.
    pub async fn deploy_json(
        &self,
        value: &serde_json::Value,
        expect_name: Option<&AgentName>,
        must_exist: bool,
    ) -> Result<DeployOutcome, RegistryError> {
        let (spec, text) = AgentSpec::from_json(value)?;
        self.deploy_from_api(spec, text, "(request body)", expect_name, must_exist).await
    }

    /// The checks every API deploy passes, whatever the body's format.
    async fn deploy_from_api(
        &self,
        spec: AgentSpec,
        text: String,
        file: &str,
        expect_name: Option<&AgentName>,
        must_exist: bool,
    ) -> Result<DeployOutcome, RegistryError> {
        self.check_tools(&spec, &text, file).await?;
        if let Some(expected) = expect_name {
            if &spec.name != expected {
                return Err(RegistryError::NameMismatch { path: expected.to_string(), body: spec.name.to_string() });
            }
        }
        self.guard_not_file_managed(&spec.name).await?;
        self.deploy(spec, text, AgentSource::Api, must_exist).await
    }

    /// An API deploy over a file-managed agent would be silently undone by the
    /// next edit of the file; refuse it and say why.
    async fn guard_not_file_managed(&self, name: &AgentName) -> Result<(), RegistryError> {
        match self.queries.agent(name).await? {
            Some(AgentRecord { source: AgentSource::File(_), .. }) => Err(RegistryError::FileManaged(name.to_string())),
            _ => Ok(()),
        }
    }

    pub async fn remove(&self, name: &AgentName, only_if_source: Option<AgentSource>) -> Result<u64, RegistryError> {
        let command = RemoveAgent { name: name.clone(), only_if_source, at_ms: now_ms() };
        match self.store.propose(command).await? {
            Removal::Removed { revision } => {
                self.event(crate::observability::AgentEvent::Removed);
                Ok(revision)
            }
            Removal::NotFound | Removal::SourceMismatch => Err(RegistryError::NotFound(name.to_string())),
        }
    }

    pub async fn get(&self, name: &AgentName) -> Result<AgentRecord, RegistryError> {
        self.queries.agent(name).await?.ok_or_else(|| RegistryError::NotFound(name.to_string()))
    }
}

impl crate::problems::Classified for RegistryError {
    fn problem_type(&self) -> crate::problems::ProblemType {
        use crate::problems::ProblemType;
        match self {
            Self::Invalid(_) => ProblemType::InvalidAgent,
            Self::NotFound(_) => ProblemType::AgentNotFound,
            Self::NameMismatch { .. } => ProblemType::NameMismatch,
            Self::FileManaged(_) => ProblemType::AgentFileManaged,
            Self::Write(w) => w.problem_type(),
            Self::Read(r) => r.problem_type(),
        }
    }

    fn field_errors(&self) -> Vec<FieldError> {
        match self {
            Self::Invalid(p) => p.0.clone(),
            _ => Vec::new(),
        }
    }
}
