//! Tool servers: the record the replica keeps for each deployed WebAssembly
//! MCP server (manifest, module, the tools it listed), the commands that
//! change it, and the reads over it. Compiling and calling live in `mcp/`.

use base64::Engine;
use caxton_cluster::ReadError;
use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};
use sha2::Digest;

use super::envelope::{ApplyCtx, Proposal, Response};
use super::events::StateEvent;
use super::queries::Queries;
use caxton_cluster::CachedSql;

/// Who deploys (or removes) a tool server: the operator (the node's
/// `tools_dir`, or an admin key) may replace any; a deploy key only the
/// servers it deployed itself.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ToolDeployer {
    /// The API key's name; `None`: the node's own tools directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The key holds the admin scope (the tools directory counts as admin).
    #[serde(default)]
    pub admin: bool,
}

impl ToolDeployer {
    /// The node's tools directory: the operator.
    pub fn operator() -> Self {
        Self { key: None, admin: true }
    }

    fn shown(key: &Option<String>) -> String {
        key.as_ref().map_or_else(|| "the node's tools directory".to_owned(), |k| format!("the key `{k}`"))
    }

    /// Why this deployer may not touch a server `owner` deployed, if so.
    fn refusal(&self, server: &str, owner: &Option<String>) -> Option<String> {
        (!self.admin && &self.key != owner).then(|| {
            format!(
                "tool server `{server}` was deployed by {}; only that key or an admin key may replace or remove it",
                Self::shown(owner)
            )
        })
    }
}

/// A tool server: manifest text, module (base64, as JSON carries bytes),
/// and its tools as listed by the node that validated it (JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeployMcpServer {
    pub name: String,
    pub manifest: String,
    pub module: String,
    pub tools: String,
    pub at_ms: i64,
    /// Absent in entries written before tools had owners: the operator.
    #[serde(default = "ToolDeployer::operator")]
    pub by: ToolDeployer,
}

/// The key that deployed `name`, if it is deployed.
fn owner_of(tx: &rusqlite::Transaction<'_>, name: &str) -> rusqlite::Result<Option<Option<String>>> {
    tx.row("SELECT deployed_by FROM mcp_servers WHERE name = ?1", [name], |r| r.get(0)).optional()
}

/// Why a tool server command changed nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolRefusal {
    /// The content is unusable (every replica refused it alike).
    Invalid(String),
    /// The server is another deployer's.
    NotOwner(String),
}

impl Proposal for DeployMcpServer {
    type Output = Result<(), ToolRefusal>;
    const NAME: &'static str = "DeployMcpServer";
    fn output(r: Response) -> Result<Result<(), ToolRefusal>, Response> {
        match r {
            Response::Done => Ok(Ok(())),
            Response::Rejected(why) => Ok(Err(ToolRefusal::Invalid(why))),
            Response::NotOwner(why) => Ok(Err(ToolRefusal::NotOwner(why))),
            other => Err(other),
        }
    }
}

impl DeployMcpServer {
    pub(crate) fn apply(self, ctx: &mut ApplyCtx<'_, '_>) -> rusqlite::Result<Response> {
        // The proposing node validated the module; a payload that still
        // fails here is refused alike on every replica instead of storing
        // an empty module.
        let bytes = match base64::engine::general_purpose::STANDARD.decode(&self.module) {
            Ok(bytes) if !bytes.is_empty() => bytes,
            Ok(_) => return Ok(Response::Rejected(format!("tool server `{}`: the module is empty", self.name))),
            Err(e) => {
                return Ok(Response::Rejected(format!("tool server `{}`: the module is not base64: {e}", self.name)))
            }
        };
        if serde_json::from_str::<serde_json::Value>(&self.tools).is_err() {
            return Ok(Response::Rejected(format!("tool server `{}`: its tool list is not JSON", self.name)));
        }
        if let Some(owner) = owner_of(ctx.tx, &self.name)? {
            if let Some(why) = self.by.refusal(&self.name, &owner) {
                return Ok(Response::NotOwner(why));
            }
        }
        let hash = hex::encode(sha2::Sha256::digest(&bytes));
        ctx.tx.exec(
            "INSERT INTO mcp_servers(name, manifest, hash, module, tools, deployed_at, deployed_by, deployed_by_admin) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT(name) DO UPDATE SET manifest = excluded.manifest, hash = excluded.hash, module = excluded.module, tools = excluded.tools, deployed_at = excluded.deployed_at, deployed_by = excluded.deployed_by, deployed_by_admin = excluded.deployed_by_admin",
            params![self.name, self.manifest, hash, bytes, self.tools, self.at_ms, self.by.key, self.by.admin],
        )?;
        ctx.stage.push(StateEvent::ToolServersChanged);
        Ok(Response::Done)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RemoveMcpServer {
    pub name: String,
    #[serde(default = "ToolDeployer::operator")]
    pub by: ToolDeployer,
}

impl Proposal for RemoveMcpServer {
    /// Whether there was such a server; `Err(why)` when it is another's.
    type Output = Result<bool, String>;
    const NAME: &'static str = "RemoveMcpServer";
    fn output(r: Response) -> Result<Result<bool, String>, Response> {
        match r {
            Response::Deleted(existed) => Ok(Ok(existed)),
            Response::NotOwner(why) => Ok(Err(why)),
            other => Err(other),
        }
    }
}

impl RemoveMcpServer {
    pub(crate) fn apply(self, ctx: &mut ApplyCtx<'_, '_>) -> rusqlite::Result<Response> {
        if let Some(owner) = owner_of(ctx.tx, &self.name)? {
            if let Some(why) = self.by.refusal(&self.name, &owner) {
                return Ok(Response::NotOwner(why));
            }
        }
        let existed = ctx.tx.exec("DELETE FROM mcp_servers WHERE name = ?1", [self.name])? > 0;
        if existed {
            ctx.stage.push(StateEvent::ToolServersChanged);
        }
        Ok(Response::Deleted(existed))
    }
}

/// A deployed tool server as stored, the module aside.
#[derive(Debug, Clone)]
pub struct ToolServerRow {
    pub name: String,
    pub manifest: String,
    /// sha256 of the module.
    pub hash: String,
    pub size_bytes: usize,
    /// The tools the server listed, as JSON.
    pub tools: String,
    pub deployed_at_ms: i64,
    pub deployed_by: ToolDeployer,
}

const SERVER_COLUMNS: &str = "name, manifest, hash, length(module), tools, deployed_at, deployed_by, deployed_by_admin";

fn server_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ToolServerRow> {
    Ok(ToolServerRow {
        name: r.get(0)?,
        manifest: r.get(1)?,
        hash: r.get(2)?,
        size_bytes: r.get::<_, i64>(3)? as usize,
        tools: r.get(4)?,
        deployed_at_ms: r.get(5)?,
        deployed_by: ToolDeployer { key: r.get(6)?, admin: r.get(7)? },
    })
}

impl Queries {
    /// Every tool server, by name.
    pub async fn tool_servers(&self) -> Result<Vec<ToolServerRow>, ReadError> {
        self.replica()
            .read(|c| {
                let mut s = c.prepare(&format!("SELECT {SERVER_COLUMNS} FROM mcp_servers ORDER BY name"))?;
                let rows = s.query_map([], server_row)?;
                rows.collect()
            })
            .await
    }

    /// A tool server's module.
    pub async fn tool_server_module(&self, name: &str) -> Result<Option<Vec<u8>>, ReadError> {
        let name = name.to_owned();
        self.replica()
            .read(move |c| c.row("SELECT module FROM mcp_servers WHERE name = ?1", [name], |r| r.get(0)).optional())
            .await
    }
}
