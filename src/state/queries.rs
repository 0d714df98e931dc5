//! Reads over the local replica.

use caxton_cluster::{ReadError, Replica};
use rusqlite::{params, OptionalExtension, Row};
use serde::Serialize;

use super::commands::AgentSource;
use crate::config::{AgentName, AgentSpec};

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

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AgentVersion {
    pub revision: u64,
    pub version: String,
    pub deployed_at_ms: i64,
}

#[derive(Clone)]
pub struct Queries {
    replica: Replica,
}

const AGENT_COLUMNS: &str = "name, revision, version, spec, toml, source, owner, created_at, updated_at";

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
    pub fn new(replica: Replica) -> Self {
        Self { replica }
    }

    pub(crate) fn replica(&self) -> &Replica {
        &self.replica
    }

    pub async fn agent(&self, name: &AgentName) -> Result<Option<AgentRecord>, ReadError> {
        let key = name.key();
        self.replica
            .read(move |c| {
                c.query_row(&format!("SELECT {AGENT_COLUMNS} FROM agents WHERE name_key = ?1"), [key], agent_from_row)
                    .optional()
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
        self.replica
            .read(move |c| {
                let rows = match capability {
                    Some(cap) => {
                        let mut s = c.prepare_cached(&format!(
                            "SELECT {AGENT_COLUMNS} FROM agents WHERE name_key > ?1 AND name_key IN
                             (SELECT name_key FROM agent_capabilities WHERE capability = ?2)
                             ORDER BY name_key LIMIT ?3"
                        ))?;
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
        self.replica.read(|c| c.query_row("SELECT COUNT(*) FROM agents", [], |r| r.get(0))).await
    }

    pub async fn versions(&self, name: &AgentName) -> Result<Vec<AgentVersion>, ReadError> {
        let key = name.key();
        self.replica
            .read(move |c| {
                let mut s = c.prepare_cached(
                    "SELECT revision, version, deployed_at FROM agent_versions WHERE name_key = ?1 ORDER BY revision",
                )?;
                let rows = s.query_map([key], |r| {
                    Ok(AgentVersion { revision: r.get(0)?, version: r.get(1)?, deployed_at_ms: r.get(2)? })
                })?;
                rows.collect()
            })
            .await
    }

    /// Current owner of every shard (index = shard; `None` = unassigned).
    pub async fn shard_map(&self, shards: u32) -> Result<Vec<Option<u64>>, ReadError> {
        self.replica
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
        self.replica
            .read(|c| {
                let mut s = c.prepare_cached("SELECT shard, owner, epoch FROM shards ORDER BY shard")?;
                let rows = s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
                rows.collect()
            })
            .await
    }

    /// Agents deployed from files, by file name (for agents-dir reconciliation).
    pub async fn file_sourced_agents(&self) -> Result<Vec<(String, String)>, ReadError> {
        self.replica
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
