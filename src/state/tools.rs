//! Tool servers: the record the replica keeps for each deployed WebAssembly
//! MCP server (manifest, module, the tools it listed), the commands that
//! change it, and the reads over it. Compiling and calling live in `mcp/`.

use base64::Engine;
use caxton_cluster::ReadError;
use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};
use sha2::Digest;

use super::command::{ApplyCtx, Proposal, Response};
use super::queries::Queries;

/// A tool server: manifest text, module (base64, as JSON carries bytes),
/// and its tools as listed by the node that validated it (JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeployMcpServer {
    pub name: String,
    pub manifest: String,
    pub module: String,
    pub tools: String,
    pub at_ms: i64,
}

impl Proposal for DeployMcpServer {
    /// `Err(why)`: the replicas refused the content; nothing was stored.
    type Output = Result<(), String>;
    const NAME: &'static str = "DeployMcpServer";
    fn output(r: Response) -> Result<Result<(), String>, Response> {
        match r {
            Response::Done => Ok(Ok(())),
            Response::Rejected(why) => Ok(Err(why)),
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
        let hash = hex::encode(sha2::Sha256::digest(&bytes));
        ctx.tx.execute(
            "INSERT INTO mcp_servers(name, manifest, hash, module, tools, deployed_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT(name) DO UPDATE SET manifest = excluded.manifest, hash = excluded.hash, module = excluded.module, tools = excluded.tools, deployed_at = excluded.deployed_at",
            params![self.name, self.manifest, hash, bytes, self.tools, self.at_ms],
        )?;
        Ok(Response::Done)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RemoveMcpServer {
    pub name: String,
}

impl Proposal for RemoveMcpServer {
    /// Whether there was such a server.
    type Output = bool;
    const NAME: &'static str = "RemoveMcpServer";
    fn output(r: Response) -> Result<bool, Response> {
        match r {
            Response::Deleted(existed) => Ok(existed),
            other => Err(other),
        }
    }
}

impl RemoveMcpServer {
    pub(crate) fn apply(self, ctx: &mut ApplyCtx<'_, '_>) -> rusqlite::Result<Response> {
        Ok(Response::Deleted(ctx.tx.execute("DELETE FROM mcp_servers WHERE name = ?1", [self.name])? > 0))
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
}

const SERVER_COLUMNS: &str = "name, manifest, hash, length(module), tools, deployed_at";

fn server_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ToolServerRow> {
    Ok(ToolServerRow {
        name: r.get(0)?,
        manifest: r.get(1)?,
        hash: r.get(2)?,
        size_bytes: r.get::<_, i64>(3)? as usize,
        tools: r.get(4)?,
        deployed_at_ms: r.get(5)?,
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

    pub async fn tool_server(&self, name: &str) -> Result<Option<ToolServerRow>, ReadError> {
        let name = name.to_owned();
        self.replica()
            .read(move |c| {
                c.query_row(&format!("SELECT {SERVER_COLUMNS} FROM mcp_servers WHERE name = ?1"), [name], server_row)
                    .optional()
            })
            .await
    }

    /// A tool server's module.
    pub async fn tool_server_module(&self, name: &str) -> Result<Option<Vec<u8>>, ReadError> {
        let name = name.to_owned();
        self.replica()
            .read(move |c| {
                c.query_row("SELECT module FROM mcp_servers WHERE name = ?1", [name], |r| r.get(0)).optional()
            })
            .await
    }
}
