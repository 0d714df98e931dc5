use std::sync::Mutex;

use caxton_cluster::Application;
use rusqlite::{params, OptionalExtension, Transaction};
use tokio::sync::broadcast;

use super::commands::{AgentSource, Command, DeployAgent, Response};
use super::events::StateEvent;
use super::memory_apply;
use super::messages_apply;
use super::schema::MIGRATIONS;
use crate::config::AgentName;

/// Virtual shards agents hash into; fixed for the life of a cluster.
pub const SHARDS: u32 = caxton_cluster::placement::DEFAULT_SHARDS;

/// Caxton's replicated state machine. Effects of `apply` are staged and
/// published only once the batch is durable, so a listener never sees a
/// change that a crash could take back.
pub struct CaxtonState {
    staged: Mutex<Vec<StateEvent>>,
    events: broadcast::Sender<StateEvent>,
}

impl Default for CaxtonState {
    fn default() -> Self {
        Self::new()
    }
}

impl CaxtonState {
    pub fn new() -> Self {
        let (events, _) = broadcast::channel(65_536);
        Self { staged: Mutex::new(Vec::new()), events }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<StateEvent> {
        self.events.subscribe()
    }

    fn with_stage<R>(&self, f: impl FnOnce(&mut Vec<StateEvent>) -> R) -> R {
        f(&mut self.staged.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn stage(&self, event: StateEvent) {
        self.staged.lock().unwrap_or_else(|p| p.into_inner()).push(event);
    }

    fn deploy(&self, tx: &Transaction<'_>, d: DeployAgent) -> rusqlite::Result<Response> {
        let key = d.spec.name.key();
        let existing: Option<(u64, String)> = tx
            .query_row("SELECT revision, toml FROM agents WHERE name_key = ?1", [&key], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let shard = caxton_cluster::placement::shard_of(&key, SHARDS);
        // The shard map decides; the proposer's choice only fills the gap
        // before the first placement.
        let owner: u64 = tx
            .query_row("SELECT owner FROM shards WHERE shard = ?1", [shard], |r| r.get(0))
            .optional()?
            .unwrap_or(d.owner);
        let spec_json = serde_json::to_string(&d.spec).expect("agent spec serializes");
        let source_json = serde_json::to_string(&d.source).expect("source serializes");
        let revision = match existing {
            None if d.must_exist => return Ok(Response::NotFound),
            Some((rev, toml)) if toml == d.toml => return Ok(Response::Unchanged { revision: rev }),
            None => {
                tx.execute(
                    "INSERT INTO agents(name_key, name, revision, version, spec, toml, source, owner, shard, created_at, updated_at)
                     VALUES (?1, ?2, 1, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)",
                    params![key, d.spec.name.as_str(), d.spec.version, spec_json, d.toml, source_json, owner, shard, d.at_ms],
                )?;
                1
            }
            Some((rev, _)) => {
                tx.execute(
                    "UPDATE agents SET name = ?2, revision = ?3, version = ?4, spec = ?5, toml = ?6, source = ?7,
                     owner = ?8, shard = ?9, updated_at = ?10 WHERE name_key = ?1",
                    params![
                        key,
                        d.spec.name.as_str(),
                        rev + 1,
                        d.spec.version,
                        spec_json,
                        d.toml,
                        source_json,
                        owner,
                        shard,
                        d.at_ms
                    ],
                )?;
                rev + 1
            }
        };
        tx.execute("DELETE FROM agent_capabilities WHERE name_key = ?1", [&key])?;
        for cap in &d.spec.capabilities {
            tx.execute(
                "INSERT OR IGNORE INTO agent_capabilities(capability, name_key) VALUES (?1, ?2)",
                params![cap, key],
            )?;
        }
        tx.execute(
            "INSERT OR REPLACE INTO agent_versions(name_key, revision, version, toml, deployed_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![key, revision, d.spec.version, d.toml, d.at_ms],
        )?;
        self.stage(StateEvent::AgentDeployed { name: d.spec.name.clone(), revision, owner });
        Ok(if revision == 1 {
            Response::Deployed { revision, created: true }
        } else {
            Response::Deployed { revision, created: false }
        })
    }

    fn assign_shards(&self, tx: &Transaction<'_>, moves: Vec<(u32, u64)>) -> rusqlite::Result<Response> {
        for (shard, owner) in moves {
            tx.execute(
                "INSERT INTO shards(shard, owner, epoch) VALUES (?1, ?2, 1)
                 ON CONFLICT(shard) DO UPDATE SET owner = excluded.owner, epoch = epoch + 1",
                params![shard, owner],
            )?;
            tx.execute("UPDATE agents SET owner = ?1 WHERE shard = ?2", params![owner, shard])?;
            let mut s = tx.prepare_cached("SELECT name, revision FROM agents WHERE shard = ?1")?;
            let moved = s.query_map([shard], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u64>(1)?)))?;
            for row in moved {
                let (name, revision) = row?;
                if let Ok(name) = AgentName::parse(&name) {
                    self.stage(StateEvent::AgentDeployed { name, revision, owner });
                }
            }
        }
        Ok(Response::Done)
    }

    fn remove(
        &self,
        tx: &Transaction<'_>,
        name: AgentName,
        only_if: Option<AgentSource>,
    ) -> rusqlite::Result<Response> {
        let key = name.key();
        let row: Option<(u64, String)> = tx
            .query_row("SELECT revision, source FROM agents WHERE name_key = ?1", [&key], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?;
        let Some((revision, source)) = row else { return Ok(Response::NotFound) };
        if let Some(expected) = only_if {
            let actual: Option<AgentSource> = serde_json::from_str(&source).ok();
            if actual.as_ref() != Some(&expected) {
                return Ok(Response::SourceMismatch);
            }
        }
        tx.execute("DELETE FROM agents WHERE name_key = ?1", [&key])?;
        tx.execute("DELETE FROM agent_capabilities WHERE name_key = ?1", [&key])?;
        self.stage(StateEvent::AgentRemoved { name });
        Ok(Response::Removed { revision })
    }
}

impl Application for CaxtonState {
    type Command = Command;
    type Response = Response;

    fn migrate(&self, conn: &rusqlite::Connection) -> rusqlite::Result<()> {
        conn.execute_batch(MIGRATIONS)
    }

    fn apply(&self, tx: &Transaction<'_>, index: u64, command: Command) -> rusqlite::Result<Response> {
        match command {
            Command::DeployAgent(d) => self.deploy(tx, *d),
            Command::RemoveAgent { name, only_if_source, at_ms: _ } => self.remove(tx, name, only_if_source),
            Command::AcceptMessages { messages } => {
                self.with_stage(|stage| messages_apply::accept(tx, index, messages, stage))
            }
            Command::RecordReplies { replies } => {
                self.with_stage(|stage| messages_apply::record_replies(tx, index, replies, stage))
            }
            Command::AssignShards { moves, at_ms: _ } => self.assign_shards(tx, moves),
            Command::StoreEntity { place, name, entity_type, observations, at_ms } => self
                .with_stage(|stage| memory_apply::store(tx, &place, &name, &entity_type, observations, at_ms, stage)),
            Command::DeployMcpServer { name, manifest, module, tools, at_ms } => {
                use base64::Engine;
                use sha2::Digest;
                let bytes = base64::engine::general_purpose::STANDARD.decode(module).unwrap_or_default();
                let hash = hex::encode(sha2::Sha256::digest(&bytes));
                tx.execute(
                    "INSERT INTO mcp_servers(name, manifest, hash, module, tools, deployed_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT(name) DO UPDATE SET manifest = excluded.manifest, hash = excluded.hash, module = excluded.module, tools = excluded.tools, deployed_at = excluded.deployed_at",
                    params![name, manifest, hash, bytes, tools, at_ms],
                )?;
                Ok(Response::Done)
            }
            Command::RemoveMcpServer { name } => {
                Ok(Response::Deleted(tx.execute("DELETE FROM mcp_servers WHERE name = ?1", [name])? > 0))
            }
            Command::DeleteEntity { place, name } => {
                self.with_stage(|stage| memory_apply::delete(tx, &place, &name, stage))
            }
            Command::Relate { place, from, to, relation_type, at_ms } => {
                memory_apply::relate(tx, &place, &from, &to, &relation_type, at_ms)
            }
            Command::SetConversation { id, protocol, state, detail, at_ms } => self
                .with_stage(|stage| messages_apply::set_conversation(tx, &id, &protocol, state, detail, at_ms, stage)),
        }
    }

    fn committed(&self) {
        let events = std::mem::take(&mut *self.staged.lock().unwrap_or_else(|p| p.into_inner()));
        for e in events {
            // No subscriber is fine: nothing is running yet.
            let _ = self.events.send(e);
        }
    }

    fn rolled_back(&self) {
        self.staged.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    fn restored(&self) {
        let _ = self.events.send(StateEvent::Restored);
    }
}
