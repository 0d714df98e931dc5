//! API keys: what the cluster knows of each key (its hash, never its
//! token), the grants it carries, and the commands that create and revoke
//! one. Authentication itself lives in `auth/`.

use caxton_cluster::ReadError;
use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};

use super::envelope::{ApplyCtx, Proposal, Response};
use super::events::StateEvent;
use super::queries::Queries;
use caxton_cluster::CachedSql;

/// What a key may do. `admin` includes every other scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Scope {
    #[serde(rename = "admin")]
    Admin,
    #[serde(rename = "deploy")]
    Deploy,
    #[serde(rename = "invoke")]
    Invoke,
    #[serde(rename = "memory:read")]
    MemoryRead,
    #[serde(rename = "memory:write")]
    MemoryWrite,
    #[serde(rename = "read")]
    Read,
}

impl Scope {
    pub const ALL: [Scope; 6] =
        [Scope::Admin, Scope::Deploy, Scope::Invoke, Scope::MemoryRead, Scope::MemoryWrite, Scope::Read];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Admin => "admin",
            Scope::Deploy => "deploy",
            Scope::Invoke => "invoke",
            Scope::MemoryRead => "memory:read",
            Scope::MemoryWrite => "memory:write",
            Scope::Read => "read",
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request budget: a token bucket refilled at `per_second`, holding at
/// most `burst` requests.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: u32,
}

/// What a key is allowed: scopes, and optionally the agents (name
/// patterns, `*` matching any run of characters) and workspaces it is
/// limited to. Empty lists mean "no limit".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Grants {
    pub scopes: Vec<Scope>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agents: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workspaces: Vec<String>,
    /// Overrides the server's default budget for this key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<RateLimit>,
}

/// Records a new key. The token itself never reaches the log: `hash` is
/// its SHA-256, `id` the public part the token starts with.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateKey {
    pub id: String,
    pub name: String,
    pub hash: String,
    pub grants: Grants,
    pub expires_at_ms: Option<i64>,
    pub created_by: String,
    pub at_ms: i64,
}

impl Proposal for CreateKey {
    /// `Err(why)`: refused (a live key already has the name); nothing stored.
    type Output = Result<(), String>;
    const NAME: &'static str = "CreateKey";
    const FEATURE: Option<&'static str> = Some("CreateKey");
    fn output(r: Response) -> Result<Result<(), String>, Response> {
        match r {
            Response::Done => Ok(Ok(())),
            Response::Rejected(why) => Ok(Err(why)),
            other => Err(other),
        }
    }
}

impl CreateKey {
    /// The record this command stores.
    pub fn record(&self) -> KeyRecord {
        KeyRecord {
            id: self.id.clone(),
            name: self.name.clone(),
            hash: self.hash.clone(),
            grants: self.grants.clone(),
            expires_at_ms: self.expires_at_ms,
            created_by: self.created_by.clone(),
            created_at_ms: self.at_ms,
            revoked_at_ms: None,
        }
    }

    pub(crate) fn apply(self, ctx: &mut ApplyCtx<'_, '_>) -> rusqlite::Result<Response> {
        let live: bool = ctx.tx.row(
            "SELECT EXISTS(SELECT 1 FROM api_keys WHERE name = ?1 AND revoked_at IS NULL)",
            [&self.name],
            |r| r.get(0),
        )?;
        if live {
            return Ok(Response::Rejected(format!("a key named `{}` already exists; revoke it first", self.name)));
        }
        let grants = serde_json::to_string(&self.grants).expect("grants serialize");
        let inserted = ctx.tx.exec(
            "INSERT OR IGNORE INTO api_keys(id, name, hash, grants, expires_at, created_by, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![self.id, self.name, self.hash, grants, self.expires_at_ms, self.created_by, self.at_ms],
        )?;
        if inserted == 0 {
            return Ok(Response::Rejected(format!("key id `{}` is taken", self.id)));
        }
        ctx.stage.push(StateEvent::KeysChanged);
        Ok(Response::Done)
    }
}

/// Revokes the live key called `name`; the row stays, for the record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RevokeKey {
    pub name: String,
    pub at_ms: i64,
}

impl Proposal for RevokeKey {
    /// Whether a live key had that name.
    type Output = bool;
    const NAME: &'static str = "RevokeKey";
    const FEATURE: Option<&'static str> = Some("RevokeKey");
    fn output(r: Response) -> Result<bool, Response> {
        match r {
            Response::Deleted(existed) => Ok(existed),
            other => Err(other),
        }
    }
}

impl RevokeKey {
    pub(crate) fn apply(self, ctx: &mut ApplyCtx<'_, '_>) -> rusqlite::Result<Response> {
        let n = ctx.tx.exec(
            "UPDATE api_keys SET revoked_at = ?2 WHERE name = ?1 AND revoked_at IS NULL",
            params![self.name, self.at_ms],
        )?;
        if n > 0 {
            ctx.stage.push(StateEvent::KeysChanged);
        }
        Ok(Response::Deleted(n > 0))
    }
}

/// A key as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyRecord {
    pub id: String,
    pub name: String,
    /// SHA-256 of the token, hex.
    pub hash: String,
    pub grants: Grants,
    pub expires_at_ms: Option<i64>,
    pub created_by: String,
    pub created_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
}

const KEY_COLUMNS: &str = "id, name, hash, grants, expires_at, created_by, created_at, revoked_at";

fn key_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<KeyRecord> {
    let grants: String = r.get(3)?;
    Ok(KeyRecord {
        id: r.get(0)?,
        name: r.get(1)?,
        hash: r.get(2)?,
        grants: serde_json::from_str(&grants)
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(3, rusqlite::types::Type::Text, Box::new(e)))?,
        expires_at_ms: r.get(4)?,
        created_by: r.get(5)?,
        created_at_ms: r.get(6)?,
        revoked_at_ms: r.get(7)?,
    })
}

impl Queries {
    /// Every key, revoked ones included, oldest first.
    pub async fn keys(&self) -> Result<Vec<KeyRecord>, ReadError> {
        self.replica()
            .read(|c| {
                let mut s = c.prepare(&format!("SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_at, name"))?;
                let rows = s.query_map([], key_row)?;
                rows.collect()
            })
            .await
    }

    /// The live key called `name`.
    pub async fn live_key(&self, name: &str) -> Result<Option<KeyRecord>, ReadError> {
        let name = name.to_owned();
        self.replica()
            .read(move |c| {
                c.row(
                    &format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE name = ?1 AND revoked_at IS NULL"),
                    [name],
                    key_row,
                )
                .optional()
            })
            .await
    }
}
