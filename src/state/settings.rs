//! Cluster-wide settings every node must agree on, recorded once in the
//! replicated state: the first node to claim a setting records it; a node
//! configured otherwise learns the recorded value and refuses to start.
//! The memory backend is one: half a cluster writing memory to PostgreSQL
//! and half to the replicated state would split memory in two.

use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};

use super::envelope::{ApplyCtx, Proposal, Response};
use caxton_cluster::CachedSql;

/// The setting key of the cluster's memory backend.
pub const MEMORY_BACKEND: &str = "memory.backend";

/// Records `value` for `key` unless another value is recorded; with
/// `replaces`, moves a recorded `replaces` to `value` (a deliberate
/// migration). Answers the value recorded afterwards.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClaimSetting {
    pub key: String,
    pub value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces: Option<String>,
    pub at_ms: i64,
}

impl Proposal for ClaimSetting {
    type Output = String;
    const NAME: &'static str = "ClaimSetting";
    const FEATURE: Option<&'static str> = Some("ClaimSetting");
    fn output(r: Response) -> Result<String, Response> {
        match r {
            Response::Setting(value) => Ok(value),
            other => Err(other),
        }
    }
}

impl ClaimSetting {
    pub(crate) fn apply(self, ctx: &mut ApplyCtx<'_, '_>) -> rusqlite::Result<Response> {
        let tx = ctx.tx;
        let recorded: Option<String> =
            tx.row("SELECT value FROM cluster_settings WHERE key = ?1", [&self.key], |r| r.get(0)).optional()?;
        let keep = match &recorded {
            None => false,
            Some(v) if *v == self.value => true,
            Some(v) => self.replaces.as_ref() != Some(v),
        };
        if keep {
            return Ok(Response::Setting(recorded.unwrap_or_default()));
        }
        tx.exec(
            "INSERT INTO cluster_settings (key, value, set_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value, set_at = excluded.set_at",
            params![self.key, self.value, self.at_ms],
        )?;
        Ok(Response::Setting(self.value))
    }
}
