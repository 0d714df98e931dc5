//! `/v1/agents/{name}/revisions` and `/rollout`: an agent's history, going
//! back to a revision, and steering a rollout in progress.

use axum::extract::{Path, State};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::access;
use super::agents::{parse_name, visible};
use super::problem::Problem;
use super::Ctx;
use crate::auth::Principal;
use crate::config::Strategy;
use crate::state::{AgentVersion, Figures, RolloutAction, RolloutRecord, ShadowReport};

#[derive(Debug, Serialize, ToSchema)]
pub struct Revisions {
    pub agent: String,
    /// The revision serving traffic.
    pub serving: u64,
    /// Oldest first; pruned beyond `server.agent_versions_kept`.
    pub revisions: Vec<AgentVersion>,
}

/// An agent's revisions.
#[utoipa::path(get, path = "/v1/agents/{name}/revisions", tag = "agents",
    params(("name" = String, Path, description = "Agent name")),
    responses((status = 200, body = Revisions),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn revisions(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<Json<Revisions>, Problem> {
    let name = parse_name(&name)?;
    let record = visible(&ctx, &caller, &name).await?;
    let revisions = ctx.registry.queries().versions(&name).await?;
    Ok(Json(Revisions { agent: record.name, serving: record.revision, revisions }))
}

/// One revision, with its definition.
#[utoipa::path(get, path = "/v1/agents/{name}/revisions/{revision}", tag = "agents",
    params(("name" = String, Path, description = "Agent name"), ("revision" = u64, Path, description = "Revision number")),
    responses((status = 200, body = AgentVersion),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn revision(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Principal>,
    Path((name, revision)): Path<(String, u64)>,
) -> Result<Json<AgentVersion>, Problem> {
    let name = parse_name(&name)?;
    visible(&ctx, &caller, &name).await?;
    if !access::sees_revision(&caller, ctx.registry.queries(), &name, revision).await? {
        return Err(access::outside(format!(
            "revision {revision} of `{name}` is in a workspace this API key does not hold"
        )));
    }
    match ctx.registry.queries().revision(&name, revision).await? {
        Some(v) => Ok(Json(v)),
        None => {
            let available = ctx.registry.queries().versions(&name).await?.iter().map(|v| v.revision).collect();
            let err = crate::agents::RegistryError::NoRevision {
                agent: name.to_string(),
                revision: Some(revision),
                available,
            };
            Err(err.into())
        }
    }
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    /// The revision to restore; default: the one before the serving one.
    pub to: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RolledBack {
    pub name: String,
    /// The new revision, equal in content to `restored`.
    pub revision: u64,
    pub restored: u64,
    /// False when `restored` was already serving.
    pub changed: bool,
}

/// Make a new revision equal to an earlier one; it serves at once.
#[utoipa::path(post, path = "/v1/agents/{name}/rollback", tag = "agents",
    params(("name" = String, Path, description = "Agent name")),
    request_body(content = RollbackRequest, description = "Optional; `{}` restores the previous revision"),
    responses((status = 200, body = RolledBack),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn rollback(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Principal>,
    Path(name): Path<String>,
    body: Option<Json<RollbackRequest>>,
) -> Result<Json<RolledBack>, Problem> {
    let name = parse_name(&name)?;
    let record = visible(&ctx, &caller, &name).await?;
    let to = body.and_then(|b| b.0.to);
    if caller.is_limited() {
        // The revision restored brings its own workspace back: the key must hold it.
        let queries = ctx.registry.queries();
        let previous = || async {
            let versions = queries.versions(&name).await?;
            Ok::<_, caxton_cluster::ReadError>(
                versions.iter().map(|v| v.revision).filter(|r| *r < record.revision).max(),
            )
        };
        let target = match to {
            Some(t) => Some(t),
            None => previous().await?,
        };
        if let Some(target) = target {
            if !access::sees_revision(&caller, queries, &name, target).await? {
                return Err(access::outside(format!(
                    "revision {target} of `{name}` is in a workspace this API key does not hold"
                )));
            }
        }
    }
    let (outcome, restored) = ctx.registry.rollback(&name, to, Some(caller.name.to_string())).await?;
    Ok(Json(RolledBack {
        name: outcome.name.to_string(),
        revision: outcome.revision,
        restored,
        changed: outcome.changed,
    }))
}

/// A rollout, as status shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct RolloutStatus {
    #[serde(flatten)]
    pub rollout: RolloutRecord,
    /// Figures over the current step so far (stable, then candidate).
    pub stable_now: Option<Figures>,
    pub candidate_now: Option<Figures>,
    /// Until the current step's pause ends; absent for a manual step or
    /// an ended rollout.
    pub step_time_left_ms: Option<i64>,
    /// A shadow rollout's comparison of the two revisions.
    pub shadow: Option<ShadowReport>,
}

/// The agent's latest rollout.
#[utoipa::path(get, path = "/v1/agents/{name}/rollout", tag = "agents",
    params(("name" = String, Path, description = "Agent name")),
    responses((status = 200, body = RolloutStatus),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn status(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<Json<RolloutStatus>, Problem> {
    let name = parse_name(&name)?;
    visible(&ctx, &caller, &name).await?;
    let queries = ctx.registry.queries();
    let Some(r) = queries.rollout(&name).await? else {
        return Err(crate::agents::RegistryError::NoRollout(name.to_string()).into());
    };
    let (stable_now, candidate_now) = if r.state.is_active() {
        let (s, c) = queries.step_figures(&r).await?;
        (Some(s), Some(c))
    } else {
        (None, None)
    };
    let step_time_left_ms = match (r.state.is_active(), r.spec.steps.get(r.step as usize)) {
        (true, Some(step)) => {
            step.pause_ms.map(|p| (r.step_started_at_ms.saturating_add(p as i64) - crate::time::now_ms()).max(0))
        }
        _ => None,
    };
    let shadow = match r.spec.strategy {
        Strategy::Shadow => Some(queries.shadow_report(&r).await?),
        _ => None,
    };
    Ok(Json(RolloutStatus { rollout: r, stable_now, candidate_now, step_time_left_ms, shadow }))
}

/// Promote, abort, pause or resume the agent's rollout in progress.
#[utoipa::path(post, path = "/v1/agents/{name}/rollout/{action}", tag = "agents",
    params(("name" = String, Path, description = "Agent name"),
        ("action" = String, Path, description = "promote, abort, pause or resume")),
    responses((status = 200, body = RolloutRecord),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "No rollout in progress", body = Problem, content_type = "application/problem+json")))]
pub async fn control(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Principal>,
    Path((name, action)): Path<(String, String)>,
) -> Result<Json<RolloutRecord>, Problem> {
    let name = parse_name(&name)?;
    visible(&ctx, &caller, &name).await?;
    let by = format!("by {}", caller.name);
    let action = match action.as_str() {
        "promote" => RolloutAction::Promote { reason: format!("promoted {by}") },
        "abort" => RolloutAction::Abort { reason: format!("aborted {by}") },
        "pause" => RolloutAction::Pause { reason: format!("paused {by}") },
        "resume" => RolloutAction::Resume,
        other => {
            return Err(Problem::of(
                super::problem::ProblemType::RouteNotFound,
                format!("`{other}` is not a rollout action; use promote, abort, pause or resume"),
            ))
        }
    };
    Ok(Json(ctx.registry.control_rollout(&name, action).await?))
}
