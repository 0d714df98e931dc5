//! Agents and shards: the records the replica keeps, the commands that
//! change them, and the reads over them.

use caxton_cluster::ReadError;
use rusqlite::{params, OptionalExtension, Row};
use serde::{Deserialize, Serialize};

use super::envelope::{ApplyCtx, Proposal, Response};
use super::events::StateEvent;
use super::queries::Queries;
use super::rollout_rows;
use crate::config::{AgentName, AgentSpec};
use caxton_cluster::CachedSql;

/// Virtual shards agents hash into; fixed for the life of a cluster.
pub const SHARDS: u32 = caxton_cluster::placement::DEFAULT_SHARDS;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum AgentSource {
    /// Deployed through the API or CLI.
    Api,
    /// Deployed from a file in a node's agents directory.
    File(String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeployAgent {
    pub spec: AgentSpec,
    /// The definition as the user wrote it, kept for `get` and history.
    pub toml: String,
    pub source: AgentSource,
    /// Proposer's clock, milliseconds since the epoch.
    pub at_ms: i64,
    /// The node that will run the agent.
    pub owner: u64,
    /// Only update an existing agent (PUT semantics).
    pub must_exist: bool,
    /// The API key (or file) that deployed it, for the revision history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployed_by: Option<String>,
}

/// What a deploy did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deployment {
    Deployed {
        revision: u64,
        created: bool,
    },
    /// The same definition was already deployed: no new revision.
    Unchanged {
        revision: u64,
    },
    /// `must_exist` was set and there is no such agent.
    NotFound,
}

impl Proposal for DeployAgent {
    type Output = Deployment;
    const NAME: &'static str = "DeployAgent";
    fn output(r: Response) -> Result<Deployment, Response> {
        match r {
            Response::Deployed { revision, created } => Ok(Deployment::Deployed { revision, created }),
            Response::Unchanged { revision } => Ok(Deployment::Unchanged { revision }),
            Response::NotFound => Ok(Deployment::NotFound),
            other => Err(other),
        }
    }
}

/// Deploys proposed together: one Raft entry, one fsync and one
/// replication round for all of them. openraft's core appends and syncs
/// each proposal it is handed on its own, so 32 clients deploying at once
/// cost the leader an fsync per deploy; the registry's batcher gathers
/// them into one of these instead. Each deploy applies as it would alone,
/// in order; one that fails is answered `Rejected` and the others stand.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeployAgents {
    pub deploys: Vec<DeployAgent>,
}

impl Proposal for DeployAgents {
    /// Per deploy: what it did, or why it was refused.
    type Output = Vec<Result<Deployment, String>>;
    const NAME: &'static str = "DeployAgents";
    const FEATURE: Option<&'static str> = Some("DeployAgents");
    fn output(r: Response) -> Result<Self::Output, Response> {
        let Response::Deployments(each) = r else { return Err(r) };
        each.into_iter()
            .map(|r| match r {
                Response::Rejected(why) => Ok(Err(why)),
                other => DeployAgent::output(other).map(Ok),
            })
            .collect()
    }
}

impl DeployAgents {
    pub(crate) fn apply(self, ctx: &mut ApplyCtx<'_, '_>) -> rusqlite::Result<Response> {
        let mut answers = Vec::with_capacity(self.deploys.len());
        for deploy in self.deploys {
            let mut own = Vec::new();
            let (tx, index) = (ctx.tx, ctx.index);
            let applied =
                caxton_cluster::in_savepoint(tx, || deploy.apply(&mut ApplyCtx { tx, index, stage: &mut own }))?;
            match applied {
                Ok(answer) => {
                    ctx.stage.extend(own);
                    answers.push(answer);
                }
                Err(e) => answers.push(Response::Rejected(format!("applying the deploy failed: {e}"))),
            }
        }
        Ok(Response::Deployments(answers))
    }
}

impl DeployAgent {
    pub(crate) fn apply(self, ctx: &mut ApplyCtx<'_, '_>) -> rusqlite::Result<Response> {
        let key = self.spec.name.key();
        let existing: Option<(String, u64)> = ctx
            .tx
            .row("SELECT toml, revision FROM agents WHERE name_key = ?1", [&key], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        match existing {
            None if self.must_exist => return Ok(Response::NotFound),
            Some((toml, revision)) if toml == self.toml => return Ok(Response::Unchanged { revision }),
            _ => {}
        }
        let created = existing.is_none();
        let spec_json = serde_json::to_string(&self.spec).expect("agent spec serializes");
        let revision = self.record_revision_as(ctx.tx, &spec_json)?;
        // A direct deploy replaces whatever was being rolled out.
        rollout_rows::supersede(ctx, &key, self.at_ms)?;
        let source_json = serde_json::to_string(&self.source).expect("source serializes");
        let shard = caxton_cluster::placement::shard_of(&key, SHARDS);
        // The shard map decides; the proposer's choice only fills the gap
        // before the first placement.
        let owner: u64 = ctx
            .tx
            .row("SELECT owner FROM shards WHERE shard = ?1", [shard], |r| r.get(0))
            .optional()?
            .unwrap_or(self.owner);
        // The row is written once, with the revision it serves: what
        // `promote_revision` would read back from `agent_versions` is in hand.
        let serving = Serving {
            spec: &self.spec,
            spec_json: &spec_json,
            version: &self.spec.version,
            toml: &self.toml,
            revision,
        };
        if created {
            ctx.tx.exec(
                "INSERT INTO agents(name_key, name, revision, version, spec, toml, source, owner, shard, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10)",
                params![
                    key,
                    self.spec.name.as_str(),
                    revision,
                    self.spec.version,
                    spec_json,
                    self.toml,
                    source_json,
                    owner,
                    shard,
                    self.at_ms
                ],
            )?;
            serving.capabilities_and_event(ctx, &key, owner)?;
        } else {
            ctx.tx.exec("UPDATE agents SET source = ?2 WHERE name_key = ?1", params![key, source_json])?;
            serving.promote(ctx, &key, self.at_ms)?;
        }
        Ok(Response::Deployed { revision, created })
    }

    /// Stores this definition as the agent's next revision; its number.
    pub(crate) fn record_revision(&self, tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<u64> {
        self.record_revision_as(tx, &serde_json::to_string(&self.spec).expect("agent spec serializes"))
    }

    /// [`record_revision`](Self::record_revision) with the spec already encoded.
    fn record_revision_as(&self, tx: &rusqlite::Transaction<'_>, spec_json: &str) -> rusqlite::Result<u64> {
        let key = self.spec.name.key();
        let last: u64 = tx.row(
            "SELECT MAX(COALESCE((SELECT MAX(revision) FROM agent_versions WHERE name_key = ?1), 0),
                        COALESCE((SELECT revision FROM agents WHERE name_key = ?1), 0))",
            [&key],
            |r| r.get(0),
        )?;
        let revision = last + 1;
        tx.exec(
            "INSERT OR REPLACE INTO agent_versions(name_key, revision, version, toml, deployed_at, spec, deployed_by, source)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                key,
                revision,
                self.spec.version,
                self.toml,
                self.at_ms,
                spec_json,
                self.deployed_by,
                serde_json::to_string(&self.source).expect("source serializes"),
            ],
        )?;
        Ok(revision)
    }
}

/// Makes stored revision `revision` the one serving `name` (a rollout's
/// promotion): the agent's row, its capabilities, and the runtime's event.
pub(crate) fn promote_revision(
    ctx: &mut ApplyCtx<'_, '_>,
    name: &AgentName,
    revision: u64,
    at_ms: i64,
) -> rusqlite::Result<()> {
    let key = name.key();
    let (version, toml, spec_json): (String, String, String) = ctx.tx.row(
        "SELECT version, toml, spec FROM agent_versions WHERE name_key = ?1 AND revision = ?2",
        params![key, revision],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let spec: AgentSpec =
        serde_json::from_str(&spec_json).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    let serving = Serving { spec: &spec, spec_json: &spec_json, version: &version, toml: &toml, revision };
    serving.promote(ctx, &key, at_ms)
}

/// A stored revision about to serve its agent.
struct Serving<'a> {
    spec: &'a AgentSpec,
    /// `spec` as `agent_versions` holds it.
    spec_json: &'a str,
    version: &'a str,
    toml: &'a str,
    revision: u64,
}

impl Serving<'_> {
    /// Points the existing agent row `key` at this revision.
    fn promote(&self, ctx: &mut ApplyCtx<'_, '_>, key: &str, at_ms: i64) -> rusqlite::Result<()> {
        ctx.tx.exec(
            "UPDATE agents SET name = ?2, revision = ?3, version = ?4, spec = ?5, toml = ?6, updated_at = ?7 WHERE name_key = ?1",
            params![key, self.spec.name.as_str(), self.revision, self.version, self.spec_json, self.toml, at_ms],
        )?;
        let owner: u64 = ctx.tx.row("SELECT owner FROM agents WHERE name_key = ?1", [key], |r| r.get(0))?;
        self.capabilities_and_event(ctx, key, owner)
    }

    /// The agent's capabilities as this revision declares them, and the
    /// event that starts it on `owner`.
    fn capabilities_and_event(&self, ctx: &mut ApplyCtx<'_, '_>, key: &str, owner: u64) -> rusqlite::Result<()> {
        ctx.tx.exec("DELETE FROM agent_capabilities WHERE name_key = ?1", [key])?;
        for cap in &self.spec.capabilities {
            ctx.tx.exec(
                "INSERT OR IGNORE INTO agent_capabilities(capability, name_key) VALUES (?1, ?2)",
                params![cap, key],
            )?;
        }
        ctx.stage.push(StateEvent::AgentDeployed { name: self.spec.name.clone(), revision: self.revision, owner });
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RemoveAgent {
    pub name: AgentName,
    /// Remove only if the agent still comes from this source (so a file
    /// deleted from one node's directory cannot remove an API deploy).
    pub only_if_source: Option<AgentSource>,
    pub at_ms: i64,
}

/// What a removal did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    Removed {
        revision: u64,
    },
    NotFound,
    /// The agent comes from another source; left alone.
    SourceMismatch,
}

impl Proposal for RemoveAgent {
    type Output = Removal;
    const NAME: &'static str = "RemoveAgent";
    fn output(r: Response) -> Result<Removal, Response> {
        match r {
            Response::Removed { revision } => Ok(Removal::Removed { revision }),
            Response::NotFound => Ok(Removal::NotFound),
            Response::SourceMismatch => Ok(Removal::SourceMismatch),
            other => Err(other),
        }
    }
}

impl RemoveAgent {
    pub(crate) fn apply(self, ctx: &mut ApplyCtx<'_, '_>) -> rusqlite::Result<Response> {
        let (name, only_if, tx) = (self.name, self.only_if_source, ctx.tx);
        let key = name.key();
        let row: Option<(u64, String)> = tx
            .row("SELECT revision, source FROM agents WHERE name_key = ?1", [&key], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let Some((revision, source)) = row else { return Ok(Response::NotFound) };
        if let Some(expected) = only_if {
            let actual: Option<AgentSource> = serde_json::from_str(&source).ok();
            if actual.as_ref() != Some(&expected) {
                return Ok(Response::SourceMismatch);
            }
        }
        tx.exec("DELETE FROM agents WHERE name_key = ?1", [&key])?;
        tx.exec("DELETE FROM agent_capabilities WHERE name_key = ?1", [&key])?;
        // Its history goes with it: a later agent of this name starts at revision 1.
        tx.exec("DELETE FROM agent_versions WHERE name_key = ?1", [&key])?;
        tx.exec("DELETE FROM rollouts WHERE name_key = ?1", [&key])?;
        tx.exec("DELETE FROM revision_outcomes WHERE name_key = ?1", [&key])?;
        tx.exec("DELETE FROM shadow_requests WHERE name_key = ?1", [&key])?;
        tx.exec("DELETE FROM subscriptions WHERE agent_key = ?1", [&key])?;
        ctx.stage.push(StateEvent::AgentRemoved { name });
        Ok(Response::Removed { revision })
    }
}

/// New owners for shards (leader's placement); each moved shard's epoch
/// goes up by one and its agents follow.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AssignShards {
    pub moves: Vec<(u32, u64)>,
    pub at_ms: i64,
}

impl Proposal for AssignShards {
    type Output = ();
    const NAME: &'static str = "AssignShards";
    fn output(r: Response) -> Result<(), Response> {
        match r {
            Response::Done => Ok(()),
            other => Err(other),
        }
    }
}

impl AssignShards {
    pub(crate) fn apply(self, ctx: &mut ApplyCtx<'_, '_>) -> rusqlite::Result<Response> {
        let tx = ctx.tx;
        for (shard, owner) in self.moves {
            tx.exec(
                "INSERT INTO shards(shard, owner, epoch) VALUES (?1, ?2, 1)
                 ON CONFLICT(shard) DO UPDATE SET owner = excluded.owner, epoch = epoch + 1",
                params![shard, owner],
            )?;
            tx.exec("UPDATE agents SET owner = ?1 WHERE shard = ?2", params![owner, shard])?;
            let mut s = tx.prepare_cached("SELECT name, revision FROM agents WHERE shard = ?1")?;
            let moved = s.query_map([shard], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u64>(1)?)))?;
            for row in moved {
                let (name, revision) = row?;
                if let Ok(name) = AgentName::parse(&name) {
                    ctx.stage.push(StateEvent::AgentDeployed { name, revision, owner });
                }
            }
        }
        Ok(Response::Done)
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AgentRecord {
    pub name: String,
    pub revision: u64,
    pub version: String,
    pub spec: AgentSpec,
    pub toml: String,
    pub source: AgentSource,
    pub owner: u64,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// One immutable revision of an agent, as `history` lists it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AgentVersion {
    pub revision: u64,
    pub version: String,
    pub deployed_at_ms: i64,
    /// SHA-256 of the definition's text.
    pub hash: String,
    /// The API key (or `file:NAME`) that deployed it; absent for
    /// revisions deployed before this was recorded.
    pub deployed_by: Option<String>,
    /// The definition, when one revision is asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub toml: Option<String>,
}

fn version_from_row(r: &Row<'_>, with_toml: bool) -> rusqlite::Result<AgentVersion> {
    use sha2::Digest;
    let toml: String = r.get(3)?;
    Ok(AgentVersion {
        revision: r.get(0)?,
        version: r.get(1)?,
        deployed_at_ms: r.get(2)?,
        hash: hex::encode(sha2::Sha256::digest(toml.as_bytes())),
        deployed_by: r.get(4)?,
        toml: with_toml.then_some(toml),
    })
}

const VERSION_COLUMNS: &str = "revision, version, deployed_at, toml, deployed_by";

const AGENT_COLUMNS: &str = "name, revision, version, spec, toml, source, owner, created_at, updated_at";

/// A page of the agents with capability ?2 after name ?1, ?3 long: walks
/// that capability's keys from ?1 (the `agent_capabilities` primary key)
/// and looks each agent up, so a page costs O(page) however many agents
/// there are.
pub(super) fn page_by_capability() -> String {
    format!(
        "SELECT {AGENT_COLUMNS} FROM agent_capabilities c CROSS JOIN agents ON agents.name_key = c.name_key
         WHERE c.capability = ?2 AND c.name_key > ?1 ORDER BY c.name_key LIMIT ?3"
    )
}

fn agent_from_row(r: &Row<'_>) -> rusqlite::Result<AgentRecord> {
    let spec: String = r.get(3)?;
    let source: String = r.get(5)?;
    let bad =
        |e: serde_json::Error| rusqlite::Error::FromSqlConversionFailure(3, rusqlite::types::Type::Text, Box::new(e));
    Ok(AgentRecord {
        name: r.get(0)?,
        revision: r.get(1)?,
        version: r.get(2)?,
        spec: serde_json::from_str(&spec).map_err(bad)?,
        toml: r.get(4)?,
        source: serde_json::from_str(&source).map_err(bad)?,
        owner: r.get(6)?,
        created_at_ms: r.get(7)?,
        updated_at_ms: r.get(8)?,
    })
}

impl Queries {
    pub async fn agent(&self, name: &AgentName) -> Result<Option<AgentRecord>, ReadError> {
        let key = name.key();
        self.replica()
            .read_point(move |c| {
                c.row(&format!("SELECT {AGENT_COLUMNS} FROM agents WHERE name_key = ?1"), [key], agent_from_row)
                    .optional()
            })
            .await
    }

    /// Every agent's (revision, owner), by name key: where the event feed
    /// starts from.
    pub async fn agent_owners(&self) -> Result<std::collections::HashMap<String, (u64, u64)>, ReadError> {
        self.replica()
            .read(|c| {
                let mut s = c.prepare_cached("SELECT name_key, revision, owner FROM agents")?;
                let rows = s.query_map([], |r| Ok((r.get::<_, String>(0)?, (r.get(1)?, r.get(2)?))))?;
                rows.collect()
            })
            .await
    }

    /// One page of agents in name order, optionally those with a capability.
    /// `after` is the last name of the previous page (keyset pagination).
    pub async fn agents(
        &self,
        capability: Option<String>,
        after: Option<String>,
        limit: u32,
    ) -> Result<Vec<AgentRecord>, ReadError> {
        let after = after.map(|a| a.to_ascii_lowercase()).unwrap_or_default();
        self.replica()
            .read(move |c| {
                let rows = match capability {
                    Some(cap) => {
                        let mut s = c.prepare_cached(&page_by_capability())?;
                        let rows = s.query_map(params![after, cap, limit], agent_from_row)?;
                        rows.collect::<rusqlite::Result<Vec<_>>>()?
                    }
                    None => {
                        let mut s = c.prepare_cached(&format!(
                            "SELECT {AGENT_COLUMNS} FROM agents WHERE name_key > ?1 ORDER BY name_key LIMIT ?2"
                        ))?;
                        let rows = s.query_map(params![after, limit], agent_from_row)?;
                        rows.collect::<rusqlite::Result<Vec<_>>>()?
                    }
                };
                Ok(rows)
            })
            .await
    }

    /// Every agent, in name order (walks the pages).
    pub async fn all_agents(&self) -> Result<Vec<AgentRecord>, ReadError> {
        let mut all = Vec::new();
        let mut after = None;
        loop {
            let page = self.agents(None, after.clone(), 500).await?;
            let Some(last) = page.last() else { return Ok(all) };
            after = Some(last.name.clone());
            all.extend(page);
        }
    }

    pub async fn agent_count(&self) -> Result<u64, ReadError> {
        self.replica().read(|c| c.row("SELECT COUNT(*) FROM agents", [], |r| r.get(0))).await
    }

    pub async fn versions(&self, name: &AgentName) -> Result<Vec<AgentVersion>, ReadError> {
        let key = name.key();
        self.replica()
            .read(move |c| {
                let mut s = c.prepare_cached(&format!(
                    "SELECT {VERSION_COLUMNS} FROM agent_versions WHERE name_key = ?1 ORDER BY revision"
                ))?;
                let rows = s.query_map([key], |r| version_from_row(r, false))?;
                rows.collect()
            })
            .await
    }

    /// One revision with its definition.
    pub async fn revision(&self, name: &AgentName, revision: u64) -> Result<Option<AgentVersion>, ReadError> {
        let key = name.key();
        self.replica()
            .read(move |c| {
                c.row(
                    &format!("SELECT {VERSION_COLUMNS} FROM agent_versions WHERE name_key = ?1 AND revision = ?2"),
                    params![key, revision],
                    |r| version_from_row(r, true),
                )
                .optional()
            })
            .await
    }

    /// The definition of one revision, as the runtime serves it.
    pub async fn revision_spec(&self, name: &AgentName, revision: u64) -> Result<Option<AgentSpec>, ReadError> {
        let key = name.key();
        self.replica()
            .read(move |c| {
                let row: Option<(Option<String>, String)> = c
                    .row(
                        "SELECT spec, toml FROM agent_versions WHERE name_key = ?1 AND revision = ?2",
                        params![key, revision],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()?;
                // A revision stored before specs were is read from its text.
                Ok(row.and_then(|(spec, toml)| match spec {
                    Some(s) => serde_json::from_str(&s).ok(),
                    None => AgentSpec::from_toml(&toml, &format!("revision {revision}")).ok(),
                }))
            })
            .await
    }

    /// Current owner of every shard (index = shard; `None` = unassigned).
    pub async fn shard_map(&self, shards: u32) -> Result<Vec<Option<u64>>, ReadError> {
        self.replica()
            .read(move |c| {
                let mut map = vec![None; shards as usize];
                let mut s = c.prepare_cached("SELECT shard, owner FROM shards")?;
                let rows = s.query_map([], |r| Ok((r.get::<_, u32>(0)?, r.get::<_, u64>(1)?)))?;
                for row in rows {
                    let (shard, owner) = row?;
                    if let Some(slot) = map.get_mut(shard as usize) {
                        *slot = Some(owner);
                    }
                }
                Ok(map)
            })
            .await
    }

    /// (shard, owner, epoch) rows.
    pub async fn shard_rows(&self) -> Result<Vec<(u32, u64, u64)>, ReadError> {
        self.replica()
            .read(|c| {
                let mut s = c.prepare_cached("SELECT shard, owner, epoch FROM shards ORDER BY shard")?;
                let rows = s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
                rows.collect()
            })
            .await
    }

    /// Agents deployed from files, by file name (for agents-dir reconciliation).
    pub async fn file_sourced_agents(&self) -> Result<Vec<(String, String)>, ReadError> {
        self.replica()
            .read(|c| {
                let mut s = c.prepare_cached("SELECT name, source FROM agents")?;
                let rows = s.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
                let mut out = Vec::new();
                for row in rows {
                    let (name, source) = row?;
                    if let Ok(AgentSource::File(f)) = serde_json::from_str(&source) {
                        out.push((name, f));
                    }
                }
                Ok(out)
            })
            .await
    }
}
