//! Rollouts: a new revision of an agent taking over from the stable one,
//! step by step, judged by the outcomes of the requests each revision
//! served. Everything a rollout decides from lives here, in the replica:
//! the state machine, the revision each request is served by (chosen when
//! the request is applied, so every replica agrees) and the outcomes per
//! revision. The controller on the leader only reads these and proposes
//! the next [`UpdateRollout`].

use rusqlite::{params, OptionalExtension, Transaction};
use serde::{Deserialize, Serialize};

use super::agents::{promote_revision, DeployAgent};
use super::envelope::{ApplyCtx, Proposal, Response};
use super::events::StateEvent;
use super::queries::Queries;
use super::rollout_record::{Check, Figures, RolloutRecord, RolloutState, ServedOutcome};
use super::rollout_rows::{active, load, save, supersede};
use crate::config::AgentName;
use caxton_cluster::CachedSql;
use caxton_cluster::ReadError;

/// What an operator or the controller does to a rollout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutAction {
    /// The result of an analysis; enough failures roll back.
    Check(Check),
    /// Go to the next step (or promote after the last).
    Advance,
    Pause {
        reason: String,
    },
    /// Continue a paused rollout; on a manual step, go past it.
    Resume,
    /// Switch all traffic to the candidate now.
    Promote {
        reason: String,
    },
    Abort {
        reason: String,
    },
    /// Give up on the candidate because it failed (a warm-up probe).
    RollBack {
        reason: String,
    },
}

/// Starts a rollout of a new revision (a deploy whose definition asks for
/// one, of an agent that exists).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StartRollout {
    pub deploy: DeployAgent,
}

/// Changes a rollout, if it is still the one the proposer saw.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UpdateRollout {
    pub agent: AgentName,
    /// The candidate the proposer judged; another rollout is left alone.
    pub candidate: u64,
    /// The step the proposer judged (controller actions); a stale
    /// proposal after a leader change does nothing.
    pub expect_step: Option<u32>,
    pub action: RolloutAction,
    pub at_ms: i64,
}

/// What an update did.
#[derive(Debug, Clone, PartialEq)]
pub enum RolloutUpdate {
    Updated(Box<RolloutRecord>),
    /// No such rollout, or not the one the proposer saw, or already over.
    NotApplicable(Option<Box<RolloutRecord>>),
}

impl Proposal for StartRollout {
    type Output = super::agents::Deployment;
    const NAME: &'static str = "StartRollout";
    const FEATURE: Option<&'static str> = Some("StartRollout");
    fn output(r: Response) -> Result<Self::Output, Response> {
        <DeployAgent as Proposal>::output(r)
    }
}

impl Proposal for UpdateRollout {
    type Output = RolloutUpdate;
    const NAME: &'static str = "UpdateRollout";
    const FEATURE: Option<&'static str> = Some("StartRollout");
    fn output(r: Response) -> Result<RolloutUpdate, Response> {
        match r {
            Response::Rollout { record, applied: true } => Ok(RolloutUpdate::Updated(record.expect("updated"))),
            Response::Rollout { record, applied: false } => Ok(RolloutUpdate::NotApplicable(record)),
            other => Err(other),
        }
    }
}

impl StartRollout {
    pub(crate) fn apply(self, ctx: &mut ApplyCtx<'_, '_>) -> rusqlite::Result<Response> {
        let d = self.deploy;
        let Some(spec) = d.spec.rollout.clone() else { return d.apply(ctx) };
        let key = d.spec.name.key();
        let current: Option<(u64, String)> = ctx
            .tx
            .row("SELECT revision, toml FROM agents WHERE name_key = ?1", [&key], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        // Nothing to compare with: a first deploy goes straight in.
        let Some((stable, stable_toml)) = current else { return d.apply(ctx) };
        let in_progress = active(ctx.tx, &key)?;
        if stable_toml == d.toml {
            // Back to what serves: the rollout in progress is abandoned.
            supersede(ctx, &key, d.at_ms)?;
            return Ok(Response::Unchanged { revision: stable });
        }
        if let Some(a) = &in_progress {
            let candidate_toml: Option<String> = ctx
                .tx
                .row(
                    "SELECT toml FROM agent_versions WHERE name_key = ?1 AND revision = ?2",
                    params![key, a.candidate],
                    |r| r.get(0),
                )
                .optional()?;
            if candidate_toml.as_deref() == Some(d.toml.as_str()) {
                return Ok(Response::Unchanged { revision: a.candidate });
            }
        }
        let candidate = d.record_revision(ctx.tx)?;
        let weight = match spec.strategy {
            crate::config::Strategy::Canary => spec.steps.first().map(|s| s.weight).unwrap_or(0),
            _ => 0,
        };
        let record = RolloutRecord {
            agent: d.spec.name.to_string(),
            spec,
            stable,
            candidate,
            state: RolloutState::Progressing,
            step: 0,
            weight,
            started_at_ms: d.at_ms,
            step_started_at_ms: d.at_ms,
            step_started_index: ctx.index,
            failed_checks: 0,
            last_check: None,
            reason: None,
            finished_at_ms: None,
            switched_at_index: None,
        };
        // A new rollout starts from clean figures.
        ctx.tx.exec("DELETE FROM revision_outcomes WHERE name_key = ?1", [&key])?;
        ctx.tx.exec("DELETE FROM shadow_requests WHERE name_key = ?1", [&key])?;
        save(ctx.tx, &key, &record, ctx.stage)?;
        Ok(Response::Deployed { revision: candidate, created: false })
    }
}

impl UpdateRollout {
    pub(crate) fn apply(self, ctx: &mut ApplyCtx<'_, '_>) -> rusqlite::Result<Response> {
        let key = self.agent.key();
        let Some(mut r) = load(ctx.tx, &key)? else { return Ok(Response::Rollout { record: None, applied: false }) };
        let stale =
            r.candidate != self.candidate || !r.state.is_active() || self.expect_step.is_some_and(|s| s != r.step);
        if stale {
            return Ok(Response::Rollout { record: Some(Box::new(r)), applied: false });
        }
        match self.action {
            RolloutAction::Check(check) => {
                if !check.passed {
                    r.failed_checks += 1;
                }
                let failed = !check.passed && r.failed_checks >= r.spec.analysis.failure_limit;
                let note = check.note.clone();
                r.last_check = Some(check);
                if failed {
                    finish(&mut r, RolloutState::RolledBack, format!("analysis failed: {note}"), self.at_ms);
                }
            }
            RolloutAction::Advance => advance(ctx, &mut r, self.at_ms)?,
            RolloutAction::Pause { reason } => {
                r.state = RolloutState::Paused;
                r.reason = Some(reason);
            }
            RolloutAction::Resume => {
                let manual = r.spec.steps.get(r.step as usize).is_some_and(|s| s.pause_ms.is_none());
                r.state = RolloutState::Progressing;
                r.reason = None;
                // A manual step ends with its resume.
                if manual {
                    advance(ctx, &mut r, self.at_ms)?;
                }
            }
            RolloutAction::Promote { reason } => promote(ctx, &mut r, reason, self.at_ms)?,
            RolloutAction::Abort { reason } => finish(&mut r, RolloutState::Aborted, reason, self.at_ms),
            RolloutAction::RollBack { reason } => finish(&mut r, RolloutState::RolledBack, reason, self.at_ms),
        }
        save(ctx.tx, &key, &r, ctx.stage)?;
        Ok(Response::Rollout { record: Some(Box::new(r)), applied: true })
    }
}

/// The next step, or promotion after the last.
fn advance(ctx: &mut ApplyCtx<'_, '_>, r: &mut RolloutRecord, at_ms: i64) -> rusqlite::Result<()> {
    let next = r.step + 1;
    match r.spec.steps.get(next as usize) {
        Some(step) => {
            r.step = next;
            r.weight = step.weight;
            r.step_started_at_ms = at_ms;
            r.step_started_index = ctx.index;
            r.failed_checks = 0;
            r.state = RolloutState::Progressing;
            Ok(())
        }
        None => promote(ctx, r, "every step passed its analysis".into(), at_ms),
    }
}

fn finish(r: &mut RolloutRecord, state: RolloutState, reason: String, at_ms: i64) {
    r.state = state;
    r.weight = if state == RolloutState::Promoted { 100 } else { 0 };
    r.reason = Some(reason);
    r.finished_at_ms = Some(at_ms);
}

fn promote(ctx: &mut ApplyCtx<'_, '_>, r: &mut RolloutRecord, reason: String, at_ms: i64) -> rusqlite::Result<()> {
    let name = AgentName::parse(&r.agent).map_err(|e| rusqlite::Error::ToSqlConversionFailure(e.into()))?;
    promote_revision(ctx, &name, r.candidate, at_ms)?;
    r.switched_at_index = Some(ctx.index);
    finish(r, RolloutState::Promoted, reason, at_ms);
    Ok(())
}

/// Which of 100 buckets a conversation falls in: stable for its lifetime,
/// so a conversation stays with one revision while the weight only grows.
pub fn bucket(conversation_id: &str) -> u8 {
    // FNV-1a: fixed across versions and platforms, unlike std's hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in conversation_id.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % 100) as u8
}

/// The revision that serves a new request to `key`: the one it names, or
/// the rollout's split, or the current revision. `None`: it names a
/// revision that does not exist.
pub(crate) fn serving_revision(
    tx: &Transaction<'_>,
    key: &str,
    conversation_id: &str,
    pinned: Option<u64>,
    active: Option<&RolloutRecord>,
) -> rusqlite::Result<Option<u64>> {
    if let Some(n) = pinned {
        let exists = tx
            .row("SELECT 1 FROM agent_versions WHERE name_key = ?1 AND revision = ?2", params![key, n], |_| Ok(()))
            .optional()?;
        return Ok(exists.map(|_| n));
    }
    if let Some(r) = active {
        let revision = if bucket(conversation_id) < r.weight { r.candidate } else { r.stable };
        return Ok(Some(revision));
    }
    let mut s = tx.prepare_cached("SELECT revision FROM agents WHERE name_key = ?1")?;
    s.query_row([key], |r| r.get(0)).optional()
}

/// Sends a copy of a request just accepted for `key` to the new revision
/// of a shadow rollout, when its id falls in the sampled share.
pub(crate) fn shadow_copy(
    tx: &Transaction<'_>,
    key: &str,
    request_id: &str,
    receiver: &AgentName,
    active: Option<&RolloutRecord>,
    index: u64,
    stage: &mut Vec<StateEvent>,
) -> rusqlite::Result<()> {
    let Some(r) = active else { return Ok(()) };
    let sampled = r.spec.strategy == crate::config::Strategy::Shadow
        && r.state == RolloutState::Progressing
        && bucket(request_id) < r.spec.shadow_percent;
    if !sampled {
        return Ok(());
    }
    tx.exec(
        "INSERT OR IGNORE INTO shadow_requests(request_id, name_key, revision, seq) VALUES (?1, ?2, ?3, ?4)",
        params![request_id, key, r.candidate, index],
    )?;
    stage.push(StateEvent::ShadowAccepted {
        request_id: request_id.to_owned(),
        receiver: receiver.clone(),
        revision: r.candidate,
    });
    Ok(())
}

/// The new revision's answer to a shadow copy; never shown to a client.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecordShadow {
    pub request_id: String,
    pub outcome: ServedOutcome,
    pub took_ms: u64,
    pub content: String,
    /// Cosine similarity (MiniLM) of this answer and the stable revision's.
    pub similarity: Option<f32>,
}

impl Proposal for RecordShadow {
    type Output = ();
    const NAME: &'static str = "RecordShadow";
    const FEATURE: Option<&'static str> = Some("StartRollout");
    fn output(r: Response) -> Result<(), Response> {
        match r {
            Response::Done => Ok(()),
            other => Err(other),
        }
    }
}

impl RecordShadow {
    pub(crate) fn apply(self, ctx: &mut ApplyCtx<'_, '_>) -> rusqlite::Result<Response> {
        ctx.tx.exec(
            "UPDATE shadow_requests SET done = 1, outcome = ?2, took_ms = ?3, content = ?4, similarity = ?5
             WHERE request_id = ?1 AND done = 0",
            params![self.request_id, self.outcome.as_str(), self.took_ms, self.content, self.similarity],
        )?;
        Ok(Response::Done)
    }
}

/// How a shadow revision compares with the stable one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ShadowReport {
    /// Copies sent to the new revision, and how many it answered.
    pub sent: u64,
    pub shadow: Figures,
    /// The stable revision's replies over the rollout.
    pub stable: Figures,
    /// Pairs whose answers were compared, and their cosine similarity.
    pub compared: u64,
    pub similarity_mean: Option<f64>,
    pub similarity_min: Option<f64>,
}

/// Counts a reply for its revision while a rollout of its agent runs.
pub(crate) fn record_outcome(
    tx: &Transaction<'_>,
    key: &str,
    revision: u64,
    outcome: ServedOutcome,
    took_ms: u64,
    index: u64,
) -> rusqlite::Result<()> {
    let mut s = tx.prepare_cached("SELECT 1 FROM rollouts WHERE name_key = ?1 AND active = 1")?;
    if s.query_row([key], |_| Ok(())).optional()?.is_none() {
        return Ok(());
    }
    tx.exec(
        "INSERT INTO revision_outcomes(name_key, revision, seq, outcome, took_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![key, revision, index, outcome.as_str(), took_ms],
    )?;
    Ok(())
}

/// The 0-based rank of the 95th percentile among `n > 0` sorted values.
fn p95_rank(n: u64) -> u64 {
    ((n as f64) * 0.95).ceil() as u64 - 1
}

fn figures(c: &rusqlite::Connection, key: &str, revision: u64, since: u64) -> rusqlite::Result<Figures> {
    let (requests, errors, timeouts): (u64, u64, u64) = c.row(
        "SELECT COUNT(*), COALESCE(SUM(outcome = 'error'), 0), COALESCE(SUM(outcome = 'timeout'), 0)
         FROM revision_outcomes WHERE name_key = ?1 AND revision = ?2 AND seq > ?3",
        params![key, revision, since],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let p95_ms = if requests == 0 {
        None
    } else {
        let offset = p95_rank(requests);
        c.row(
            "SELECT took_ms FROM revision_outcomes WHERE name_key = ?1 AND revision = ?2 AND seq > ?3
             ORDER BY took_ms LIMIT 1 OFFSET ?4",
            params![key, revision, since, offset],
            |r| r.get(0),
        )
        .optional()?
    };
    Ok(Figures { requests, errors, timeouts, p95_ms })
}

impl Queries {
    pub async fn rollout(&self, name: &AgentName) -> Result<Option<RolloutRecord>, ReadError> {
        let key = name.key();
        self.replica()
            .read(move |c| {
                let body: Option<String> =
                    c.row("SELECT body FROM rollouts WHERE name_key = ?1", [key], |r| r.get(0)).optional()?;
                Ok(body.and_then(|b| serde_json::from_str(&b).ok()))
            })
            .await
    }

    /// Rollouts that are progressing or paused.
    pub async fn active_rollouts(&self) -> Result<Vec<RolloutRecord>, ReadError> {
        self.replica()
            .read(|c| {
                let mut s = c.prepare_cached("SELECT body FROM rollouts WHERE active = 1 ORDER BY name_key")?;
                let rows = s.query_map([], |r| r.get::<_, String>(0))?;
                Ok(rows.filter_map(|b| b.ok().and_then(|b| serde_json::from_str(&b).ok())).collect())
            })
            .await
    }

    /// The shadow comparison of a shadow rollout.
    pub async fn shadow_report(&self, r: &RolloutRecord) -> Result<ShadowReport, ReadError> {
        let (key, stable, candidate) = (r.agent.to_ascii_lowercase(), r.stable, r.candidate);
        self.replica()
            .read(move |c| {
                let (sent, answered, errors, timeouts): (u64, u64, u64, u64) = c.row(
                    "SELECT COUNT(*), COALESCE(SUM(done), 0), COALESCE(SUM(outcome = 'error'), 0),
                            COALESCE(SUM(outcome = 'timeout'), 0)
                     FROM shadow_requests WHERE name_key = ?1 AND revision = ?2",
                    params![key, candidate],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )?;
                let p95_ms = if answered == 0 {
                    None
                } else {
                    let offset = p95_rank(answered);
                    c.row(
                        "SELECT took_ms FROM shadow_requests WHERE name_key = ?1 AND revision = ?2 AND done = 1
                         ORDER BY took_ms LIMIT 1 OFFSET ?3",
                        params![key, candidate, offset],
                        |r| r.get(0),
                    )
                    .optional()?
                };
                let (compared, similarity_mean, similarity_min) = c.row(
                    "SELECT COUNT(similarity), AVG(similarity), MIN(similarity)
                     FROM shadow_requests WHERE name_key = ?1 AND revision = ?2",
                    params![key, candidate],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )?;
                Ok(ShadowReport {
                    sent,
                    shadow: Figures { requests: answered, errors, timeouts, p95_ms },
                    stable: figures(c, &key, stable, 0)?,
                    compared,
                    similarity_mean,
                    similarity_min,
                })
            })
            .await
    }

    /// (stable, candidate) figures over the rollout's current step.
    pub async fn step_figures(&self, r: &RolloutRecord) -> Result<(Figures, Figures), ReadError> {
        let (key, stable, candidate, since) =
            (r.agent.to_ascii_lowercase(), r.stable, r.candidate, r.step_started_index);
        self.replica().read(move |c| Ok((figures(c, &key, stable, since)?, figures(c, &key, candidate, since)?))).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_spread_and_stay_put() {
        let hits = (0..10_000).filter(|i| bucket(&format!("conv-{i}")) < 10).count();
        assert!((800..1200).contains(&hits), "about 10 % of conversations: {hits}");
        assert_eq!(bucket("abc"), bucket("abc"));
    }
}
