//! The `rollouts` table: reading and saving a rollout's record. Below both
//! the rollout commands and a deploy, which supersedes a rollout in progress.

use rusqlite::{params, OptionalExtension, Transaction};

use super::envelope::ApplyCtx;
use super::events::StateEvent;
use super::rollout_record::{RolloutRecord, RolloutState};
use caxton_cluster::CachedSql;

pub(crate) fn load(tx: &Transaction<'_>, key: &str) -> rusqlite::Result<Option<RolloutRecord>> {
    let body: Option<String> =
        tx.row("SELECT body FROM rollouts WHERE name_key = ?1", [key], |r| r.get(0)).optional()?;
    body.as_deref().map(parse).transpose()
}

fn parse(body: &str) -> rusqlite::Result<RolloutRecord> {
    serde_json::from_str(body).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

/// The rollout of `key` in progress (progressing or paused), if any.
pub(crate) fn active(tx: &Transaction<'_>, key: &str) -> rusqlite::Result<Option<RolloutRecord>> {
    let mut s = tx.prepare_cached("SELECT body FROM rollouts WHERE name_key = ?1 AND active = 1")?;
    let body: Option<String> = s.query_row([key], |r| r.get(0)).optional()?;
    body.as_deref().map(parse).transpose()
}

pub(super) fn save(
    tx: &Transaction<'_>,
    key: &str,
    r: &RolloutRecord,
    stage: &mut Vec<StateEvent>,
) -> rusqlite::Result<()> {
    tx.exec(
        "INSERT INTO rollouts(name_key, active, body) VALUES (?1, ?2, ?3)
         ON CONFLICT(name_key) DO UPDATE SET active = excluded.active, body = excluded.body",
        params![key, r.state.is_active(), serde_json::to_string(r).expect("rollout serializes")],
    )?;
    if !r.state.is_active() {
        // Outcomes are kept only while something judges them.
        tx.exec("DELETE FROM revision_outcomes WHERE name_key = ?1", [key])?;
    }
    stage.push(StateEvent::RolloutChanged { agent: r.agent.clone(), state: r.state, step: r.step });
    Ok(())
}

/// Ends an active rollout because a later deploy replaced what it rolled out.
pub(crate) fn supersede(ctx: &mut ApplyCtx<'_, '_>, key: &str, at_ms: i64) -> rusqlite::Result<()> {
    if let Some(mut r) = active(ctx.tx, key)? {
        r.state = RolloutState::Superseded;
        r.weight = 0;
        r.reason = Some("a later deploy replaced this rollout".into());
        r.finished_at_ms = Some(at_ms);
        save(ctx.tx, key, &r, ctx.stage)?;
    }
    Ok(())
}
