use std::sync::Arc;

use caxton_cluster::{ReadError, WriteError};

use crate::config::{AgentName, AgentSpec, FieldError, ParseAgentError, RolloutSpec, Strategy};
use crate::mcp::McpRegistry;
use crate::runtime::BUILTIN_TOOLS;
use crate::state::{
    AgentRecord, AgentSource, BatchLimits, DeployAgent, DeployAgents, Deployment, Ledger, Proposal, Proposer, Queries,
    Removal, RemoveAgent, RolloutAction, RolloutRecord, RolloutUpdate, StartRollout, UpdateRollout,
};
use crate::time::now_ms;

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
    #[error("agent `{agent}` has no revision {}; its revisions: {}", .revision.map(|r| r.to_string()).unwrap_or_else(|| "before the serving one".into()), .available.iter().map(u64::to_string).collect::<Vec<_>>().join(", "))]
    NoRevision { agent: String, revision: Option<u64>, available: Vec<u64> },
    #[error("agent `{0}` has no rollout in progress")]
    NoRollout(String),
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error(transparent)]
    Read(#[from] ReadError),
}

/// How a deploy is made.
#[derive(Debug, Clone, Default)]
pub struct DeployOptions {
    /// Only update an existing agent (PUT semantics).
    pub must_exist: bool,
    /// Overrides the definition's `[rollout]` strategy.
    pub strategy: Option<Strategy>,
    /// The key (or file) deploying, recorded with the revision.
    pub deployed_by: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployOutcome {
    pub name: AgentName,
    pub revision: u64,
    pub created: bool,
    pub changed: bool,
}

/// The most one batch of deploys carries; a larger deploy travels alone.
const DEPLOY_BATCH_BYTES: usize = 1024 * 1024;

/// Validates definitions at the edge and turns them into Raft commands.
#[derive(Clone)]
pub struct AgentRegistry {
    ledger: Ledger,
    mcp: Option<Arc<McpRegistry>>,
    metrics: Option<Arc<crate::observability::Metrics>>,
    /// Concurrent deploys gathered into one entry (see `DeployAgents`).
    batched: Option<Proposer<DeployAgents>>,
}

impl AgentRegistry {
    pub fn new(ledger: Ledger) -> Self {
        Self { ledger, mcp: None, metrics: None, batched: None }
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
        &self.ledger.queries
    }

    /// Gathers concurrent deploys into one Raft entry each time the
    /// previous ones are committing (once every voter can apply that).
    pub fn with_batched_deploys(mut self, shutdown: &crate::shutdown::Shutdown) -> Self {
        // A deploy's entry carries its TOML and its parsed spec: about
        // twice the text, plus the record's fixed fields.
        let limits =
            BatchLimits { items: 256, bytes: DEPLOY_BATCH_BYTES, weight: |d: &DeployAgent| 2 * d.toml.len() + 512 };
        self.batched = Some(Proposer::spawn(self.ledger.store.clone(), shutdown, limits, 4));
        self
    }

    async fn propose_deploy(&self, command: DeployAgent) -> Result<Deployment, WriteError> {
        let feature = DeployAgents::FEATURE.unwrap_or_default();
        // A batch commits from the batcher's task, outside any request: a
        // sampled request's deploy commits alone, so its trace keeps the
        // commit (and, through a follower, the leader's forwarded write).
        let traced = caxton_cluster::trace_context::current_ids().is_some();
        match &self.batched {
            Some(batched) if !traced && self.ledger.store.supports(feature).await => {
                match batched.submit(command).await {
                    Ok(outcome) => outcome.map_err(WriteError::Rejected),
                    Err(shared) => Err((*shared).clone()),
                }
            }
            _ => self.ledger.store.propose(command).await,
        }
    }

    /// Picks the node that runs a new agent. One node runs everything until
    /// placement by shard lands; the leader is the natural single owner.
    fn owner_for(&self, _name: &AgentName) -> u64 {
        self.ledger.leader_or_self()
    }

    /// Deploys (creates or updates) a validated definition: a new revision
    /// serving at once, or, when the definition (or `how.strategy`) asks
    /// for a rollout and the agent exists, a rollout of the new revision.
    pub async fn deploy(
        &self,
        mut spec: AgentSpec,
        toml: String,
        source: AgentSource,
        how: &DeployOptions,
    ) -> Result<DeployOutcome, RegistryError> {
        if let Some(strategy) = how.strategy {
            if spec.rollout.as_ref().map(|r| r.strategy) != Some(strategy) {
                spec.rollout = (strategy != Strategy::Direct).then(|| RolloutSpec::of(strategy));
            }
        }
        let name = spec.name.clone();
        // A voter of an older version would drop `subscriptions` when it
        // applies the deploy, and later fan publications out differently.
        if !spec.subscriptions.is_empty() && !self.ledger.store.supports(crate::state::DELIVER_NOTIFICATIONS).await {
            return Err(RegistryError::Write(WriteError::Rejected(
                "`subscriptions` need every voter to deliver notifications (feature `Notifications`): upgrade every node first".into(),
            )));
        }
        let rollout = spec.rollout.is_some();
        let command = DeployAgent {
            owner: self.owner_for(&name),
            spec,
            toml,
            source,
            at_ms: now_ms(),
            must_exist: how.must_exist,
            deployed_by: how.deployed_by.clone(),
        };
        let deployment = if rollout {
            self.ledger.store.propose(StartRollout { deploy: command }).await?
        } else {
            self.propose_deploy(command).await?
        };
        match deployment {
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
        let how = DeployOptions { deployed_by: Some(format!("file:{file}")), ..Default::default() };
        self.deploy(spec, text, source, &how).await
    }

    /// Deploys TOML text; `file` names it in validation errors.
    pub async fn deploy_toml(
        &self,
        text: &str,
        file: &str,
        expect_name: Option<&AgentName>,
        how: &DeployOptions,
    ) -> Result<DeployOutcome, RegistryError> {
        let spec = AgentSpec::from_toml(text, file)?;
        self.deploy_from_api(spec, text.to_owned(), file, expect_name, how).await
    }

    /// What a deploy of `text` would say about it, without deploying: the
    /// definition's own errors and tools no server offers.
    pub async fn check_toml(&self, text: &str, file: &str) -> Result<AgentSpec, RegistryError> {
        let spec = AgentSpec::from_toml(text, file)?;
        self.check_tools(&spec, text, file).await?;
        Ok(spec)
    }

    /// Deploys a JSON agent object.
    pub async fn deploy_json(
        &self,
        value: &serde_json::Value,
        expect_name: Option<&AgentName>,
        how: &DeployOptions,
    ) -> Result<DeployOutcome, RegistryError> {
        let (spec, text) = AgentSpec::from_json(value)?;
        self.deploy_from_api(spec, text, "(request body)", expect_name, how).await
    }

    /// The checks every API deploy passes, whatever the body's format.
    async fn deploy_from_api(
        &self,
        spec: AgentSpec,
        text: String,
        file: &str,
        expect_name: Option<&AgentName>,
        how: &DeployOptions,
    ) -> Result<DeployOutcome, RegistryError> {
        self.check_tools(&spec, &text, file).await?;
        if let Some(expected) = expect_name {
            if &spec.name != expected {
                return Err(RegistryError::NameMismatch { path: expected.to_string(), body: spec.name.to_string() });
            }
        }
        self.guard_not_file_managed(&spec.name).await?;
        self.deploy(spec, text, AgentSource::Api, how).await
    }

    /// Makes a new revision equal to revision `to` (default: the one before
    /// the serving revision), serving at once whatever its `[rollout]` says.
    pub async fn rollback(
        &self,
        name: &AgentName,
        to: Option<u64>,
        deployed_by: Option<String>,
    ) -> Result<(DeployOutcome, u64), RegistryError> {
        let current = self.get(name).await?;
        if let AgentSource::File(_) = current.source {
            return Err(RegistryError::FileManaged(name.to_string()));
        }
        let versions = self.ledger.queries.versions(name).await?;
        let target = match to {
            Some(n) => n,
            None => versions.iter().rev().map(|v| v.revision).find(|r| *r < current.revision).ok_or_else(|| {
                RegistryError::NoRevision { agent: name.to_string(), revision: None, available: vec![] }
            })?,
        };
        let Some(version) = self.ledger.queries.revision(name, target).await? else {
            let available = versions.iter().map(|v| v.revision).collect();
            return Err(RegistryError::NoRevision { agent: name.to_string(), revision: Some(target), available });
        };
        let text = version.toml.unwrap_or_default();
        let spec = AgentSpec::from_toml(&text, &format!("revision {target}"))?;
        let how = DeployOptions { strategy: Some(Strategy::Direct), deployed_by, ..Default::default() };
        Ok((self.deploy(spec, text, AgentSource::Api, &how).await?, target))
    }

    /// Applies an operator's action to the agent's rollout in progress.
    pub async fn control_rollout(
        &self,
        name: &AgentName,
        action: RolloutAction,
    ) -> Result<RolloutRecord, RegistryError> {
        let current = self.ledger.queries.rollout(name).await?.filter(|r| r.state.is_active());
        let Some(current) = current else { return Err(RegistryError::NoRollout(name.to_string())) };
        let command = UpdateRollout {
            agent: name.clone(),
            candidate: current.candidate,
            expect_step: None,
            action,
            at_ms: now_ms(),
        };
        match self.ledger.store.propose(command).await? {
            RolloutUpdate::Updated(r) => {
                tracing::info!(agent = %name, state = ?r.state, step = r.step, "rollout changed by an operator");
                Ok(*r)
            }
            RolloutUpdate::NotApplicable(_) => Err(RegistryError::NoRollout(name.to_string())),
        }
    }

    /// An API deploy over a file-managed agent would be silently undone by the
    /// next edit of the file; refuse it and say why.
    async fn guard_not_file_managed(&self, name: &AgentName) -> Result<(), RegistryError> {
        match self.ledger.queries.agent(name).await? {
            Some(AgentRecord { source: AgentSource::File(_), .. }) => Err(RegistryError::FileManaged(name.to_string())),
            _ => Ok(()),
        }
    }

    pub async fn remove(&self, name: &AgentName, only_if_source: Option<AgentSource>) -> Result<u64, RegistryError> {
        let command = RemoveAgent { name: name.clone(), only_if_source, at_ms: now_ms() };
        match self.ledger.store.propose(command).await? {
            Removal::Removed { revision } => {
                self.event(crate::observability::AgentEvent::Removed);
                Ok(revision)
            }
            Removal::NotFound | Removal::SourceMismatch => Err(RegistryError::NotFound(name.to_string())),
        }
    }

    pub async fn get(&self, name: &AgentName) -> Result<AgentRecord, RegistryError> {
        self.ledger.queries.agent(name).await?.ok_or_else(|| RegistryError::NotFound(name.to_string()))
    }
}

impl crate::problems::Classified for RegistryError {
    fn problem_type(&self) -> crate::problems::ProblemType {
        use crate::problems::ProblemType;
        match self {
            Self::Invalid(_) => ProblemType::InvalidAgent,
            Self::NotFound(_) | Self::NoRevision { .. } => ProblemType::AgentNotFound,
            Self::NoRollout(_) => ProblemType::NoRollout,
            Self::NameMismatch { .. } => ProblemType::NameMismatch,
            Self::FileManaged(_) => ProblemType::AgentFileManaged,
            Self::Write(w) => w.problem_type(),
            Self::Read(r) => r.problem_type(),
        }
    }

    fn problem_extra(&self) -> Option<serde_json::Value> {
        match self {
            Self::Write(w) => w.problem_extra(),
            _ => None,
        }
    }

    fn field_errors(&self) -> Vec<FieldError> {
        match self {
            Self::Invalid(p) => p.0.clone(),
            _ => Vec::new(),
        }
    }
}
