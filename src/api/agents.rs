//! `/v1/agents`: deploy, list, get, update, remove.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::access;
use super::problem::{Problem, ProblemType};
use super::Ctx;
use crate::agents::{DeployOptions, DeployOutcome, FileStatus, RegistryError};
use crate::auth::Principal;
use crate::config::{AgentName, FieldError, Strategy};
use crate::runtime::AgentState;
use crate::state::{AgentRecord, AgentSource, AgentVersion};

/// Summary of an agent, as listed.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgentSummary {
    pub name: String,
    pub version: String,
    pub revision: u64,
    pub state: AgentState,
    pub owner_node: u64,
    pub capabilities: Vec<String>,
    pub tools: Vec<String>,
    pub deployed_at: String,
    pub updated_at: String,
    pub source: AgentSource,
}

/// An agent in full.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgentDetail {
    #[serde(flatten)]
    pub summary: AgentSummary,
    pub spec: crate::config::AgentSpec,
    /// The definition as deployed.
    pub toml: String,
    pub versions: Vec<AgentVersion>,
    /// Problems with the agent's file in an agents directory, if it is
    /// currently broken (the deployed revision keeps running).
    pub source_errors: Vec<FieldError>,
    /// The limits in force: its `[limits]`, else the server's.
    pub limits: crate::config::limits::AgentLimits,
    /// What it used today (UTC), as replicated: every node agrees, and a
    /// new owner inherits it.
    pub usage: crate::state::DayUsage,
    /// The state of its latest rollout (`progressing`, `promoted`, …);
    /// absent when it never had one (`GET …/rollout` has the details).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollout_state: Option<crate::state::RolloutState>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AgentPage {
    pub agents: Vec<AgentSummary>,
    /// Pass as `after` to get the next page; absent on the last page.
    pub next: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeployResult {
    pub name: String,
    pub revision: u64,
    pub created: bool,
    /// False when the same definition was already deployed.
    pub changed: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Removed {
    pub name: String,
    pub removed_revision: u64,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct ListParams {
    /// Only agents that declare this capability.
    pub capability: Option<String>,
    /// Page size, 1-500 (default 100).
    pub limit: Option<u32>,
    /// The `next` value of the previous page.
    pub after: Option<String>,
}

pub(super) fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map(|d| d.to_rfc3339()).unwrap_or_default()
}

fn summary(ctx: &Ctx, a: &AgentRecord) -> AgentSummary {
    AgentSummary {
        name: a.name.clone(),
        version: a.version.clone(),
        revision: a.revision,
        state: ctx.runtime.state_of(&a.spec.name),
        owner_node: a.owner,
        capabilities: a.spec.capabilities.clone(),
        tools: a.spec.tools.clone(),
        deployed_at: rfc3339(a.created_at_ms),
        updated_at: rfc3339(a.updated_at_ms),
        source: a.source.clone(),
    }
}

pub(super) fn parse_name(name: &str) -> Result<AgentName, Problem> {
    AgentName::parse(name).map_err(|why| {
        Problem::of(ProblemType::AgentNotFound, format!("agent `{name}` does not exist: the name {why}"))
    })
}

/// The agent, if the caller's key sees it; otherwise the same 404 as none.
pub(super) async fn visible(ctx: &Ctx, caller: &Principal, name: &AgentName) -> Result<AgentRecord, Problem> {
    let record = ctx.registry.get(name).await?;
    if !access::sees_record(caller, &record) {
        return Err(crate::agents::RegistryError::NotFound(name.to_string()).into());
    }
    Ok(record)
}

fn deploy_result(o: DeployOutcome) -> DeployResult {
    DeployResult { name: o.name.to_string(), revision: o.revision, created: o.created, changed: o.changed }
}

enum Body {
    /// TOML text, and the `strategy` beside it when it came wrapped in JSON.
    Toml(String, Option<String>),
    Json(serde_json::Value),
}

/// Query parameters of a deploy.
#[derive(Debug, Default, Deserialize, IntoParams)]
pub struct DeployParams {
    /// `direct`, `blue-green` or `canary`: overrides the definition's
    /// `[rollout]` strategy (a JSON body may carry `strategy` beside `toml`).
    pub strategy: Option<String>,
}

/// TOML (`application/toml`, `text/x-toml`) or JSON: either an
/// agent object or `{"toml": "..."}`.
fn read_body(headers: &HeaderMap, body: &Bytes) -> Result<Body, Problem> {
    let ctype = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mime = ctype.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match mime.as_str() {
        "application/json" => {
            let value: serde_json::Value = serde_json::from_slice(body)
                .map_err(|e| Problem::bad_request(format!("request body is not valid JSON: {e}")))?;
            fn wrapped(o: &serde_json::Map<String, serde_json::Value>) -> Option<&serde_json::Value> {
                o.keys().all(|k| k == "toml" || k == "strategy").then(|| o.get("toml")).flatten()
            }
            match value.as_object().and_then(wrapped) {
                Some(serde_json::Value::String(t)) => {
                    Ok(Body::Toml(t.clone(), value["strategy"].as_str().map(str::to_owned)))
                }
                Some(_) => Err(Problem::bad_request("`toml` must be a string holding the agent definition")),
                None if value.is_object() => Ok(Body::Json(value)),
                None => Err(Problem::bad_request("JSON body must be an agent object or {\"toml\": \"...\"}")),
            }
        }
        // Not text/plain: a web page can send that cross-origin without asking.
        "application/toml" | "text/x-toml" | "application/x-toml" | "" => String::from_utf8(body.to_vec())
            .map(|t| Body::Toml(t, None))
            .map_err(|_| Problem::bad_request("TOML body is not UTF-8")),
        other => Err(Problem::of(
            ProblemType::UnsupportedMediaType,
            format!("content type `{other}` is not accepted; send application/toml or application/json"),
        )),
    }
}

/// A limited key deploys only agents it admits, into workspaces it admits.
fn check_definition(caller: &Principal, body: &Body) -> Result<(), Problem> {
    if !caller.is_limited() {
        return Ok(());
    }
    let value = match body {
        Body::Toml(t, _) => toml::from_str::<toml::Table>(t).ok().and_then(|t| serde_json::to_value(t).ok()),
        Body::Json(v) => Some(v.clone()),
    };
    let Some((name, workspace)) = value.as_ref().and_then(access::definition_target) else { return Ok(()) };
    if caller.sees_agent(&name, &workspace) {
        Ok(())
    } else {
        Err(access::outside(format!(
            "the API key `{}` may not deploy agent `{name}` in workspace `{workspace}`",
            caller.name
        )))
    }
}

/// The strategy a deploy asks for: the query's, else a JSON wrapper's.
fn parse_strategy(s: Option<&str>) -> Result<Option<Strategy>, Problem> {
    s.map(|s| Strategy::parse(s).map_err(|why| Problem::bad_request(format!("strategy: {why}")))).transpose()
}

async fn deploy_body(
    ctx: &Ctx,
    caller: &Principal,
    params: &DeployParams,
    headers: &HeaderMap,
    body: &Bytes,
    expect: Option<&AgentName>,
    must_exist: bool,
) -> Result<DeployOutcome, Problem> {
    // The query's strategy wins over one beside `toml` in a JSON body.
    let from_query = parse_strategy(params.strategy.as_deref())?;
    let body = read_body(headers, body)?;
    let strategy = match (&from_query, &body) {
        (None, Body::Toml(_, wrapped)) => parse_strategy(wrapped.as_deref())?,
        _ => from_query,
    };
    check_definition(caller, &body)?;
    let how = DeployOptions { must_exist, strategy, deployed_by: Some(caller.name.to_string()) };
    match body {
        Body::Toml(t, _) => Ok(ctx.registry.deploy_toml(&t, "(request body)", expect, &how).await?),
        Body::Json(v) => Ok(ctx.registry.deploy_json(&v, expect, &how).await?),
    }
}

/// Deploy an agent (create, or update if it exists).
#[utoipa::path(post, path = "/v1/agents", tag = "agents", params(DeployParams),
    request_body(content = String, description = "Agent TOML, or JSON (an agent object or {\"toml\": ...})", content_type = "application/toml"),
    responses(
        (status = 201, description = "Created", body = DeployResult),
        (status = 200, description = "Updated or unchanged", body = DeployResult),
        (status = 422, description = "Invalid definition", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn deploy(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Principal>,
    Query(params): Query<DeployParams>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<impl IntoResponse, Problem> {
    let outcome = deploy_body(&ctx, &caller, &params, &headers, &body, None, false).await?;
    let status = if outcome.created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(deploy_result(outcome))))
}

/// What a deploy would say of a definition.
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckResult {
    pub valid: bool,
    /// The agent's name, when the definition is valid.
    pub name: Option<String>,
    /// Each problem with the file, line and column it is at (TOML bodies).
    pub errors: Vec<FieldError>,
}

/// Check an agent definition without deploying it (an editor's live
/// validation): `200` whether or not it is valid, its errors listed.
#[utoipa::path(post, path = "/v1/agent-checks", tag = "agents",
    request_body(content = String, description = "Agent TOML, or JSON as for a deploy", content_type = "application/toml"),
    responses((status = 200, description = "The verdict", body = CheckResult)))]
pub async fn check(State(ctx): State<Ctx>, headers: HeaderMap, body: Bytes) -> Result<Json<CheckResult>, Problem> {
    let checked = match read_body(&headers, &body)? {
        Body::Toml(t, _) => ctx.registry.check_toml(&t, "(request body)").await,
        Body::Json(v) => match crate::config::AgentSpec::from_json(&v) {
            Ok((_, text)) => ctx.registry.check_toml(&text, "(request body)").await,
            Err(e) => Err(e.into()),
        },
    };
    match checked {
        Ok(spec) => Ok(Json(CheckResult { valid: true, name: Some(spec.name.to_string()), errors: vec![] })),
        Err(RegistryError::Invalid(p)) => Ok(Json(CheckResult { valid: false, name: None, errors: p.0 })),
        Err(e) => Err(e.into()),
    }
}

/// Update an existing agent to a new version.
#[utoipa::path(put, path = "/v1/agents/{name}", tag = "agents",
    params(("name" = String, Path, description = "Agent name"), DeployParams),
    request_body(content = String, description = "Agent TOML or JSON", content_type = "application/toml"),
    responses(
        (status = 200, description = "Updated or unchanged", body = DeployResult),
        (status = 404, description = "No such agent", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid definition", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn update(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Principal>,
    Path(name): Path<String>,
    Query(params): Query<DeployParams>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<DeployResult>, Problem> {
    let name = parse_name(&name)?;
    visible(&ctx, &caller, &name).await?;
    let outcome = deploy_body(&ctx, &caller, &params, &headers, &body, Some(&name), true).await?;
    Ok(Json(deploy_result(outcome)))
}

/// List agents, optionally by capability, a page at a time.
#[utoipa::path(get, path = "/v1/agents", tag = "agents", params(ListParams),
    responses((status = 200, body = AgentPage)))]
pub async fn list(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Principal>,
    Query(p): Query<ListParams>,
) -> Result<Json<AgentPage>, Problem> {
    let limit = p.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(Problem::bad_request(format!("limit={limit} is outside 1..=500")));
    }
    let rows = ctx.registry.queries().agents(p.capability, p.after, limit + 1).await?;
    let more = rows.len() > limit as usize;
    let page = &rows[..rows.len().min(limit as usize)];
    // The cursor follows the rows read, so a page thinned by the key's
    // limits still leads to the next one.
    let next = if more { page.last().map(|a| a.name.clone()) } else { None };
    let agents: Vec<AgentSummary> =
        page.iter().filter(|a| access::sees_record(&caller, a)).map(|a| summary(&ctx, a)).collect();
    Ok(Json(AgentPage { agents, next }))
}

/// How fresh a read must be.
#[derive(Debug, Default, Deserialize, IntoParams)]
pub struct ReadParams {
    /// `local` (default): this node's replica as applied; `linearizable`:
    /// after a ReadIndex round with the leader, so the read sees every
    /// write acknowledged before it began.
    pub consistency: Option<String>,
}

/// Waits for a linearizable point when the read asks for one.
pub(super) async fn read_barrier(ctx: &Ctx, p: &ReadParams) -> Result<(), Problem> {
    match p.consistency.as_deref() {
        None | Some("local") => Ok(()),
        Some("linearizable") => Ok(ctx.cluster.linearizable().await?),
        Some(other) => Err(Problem::bad_request(format!("consistency=`{other}`: use local or linearizable"))),
    }
}

/// Get one agent: state, version, owner node, deployed-at, definition.
#[utoipa::path(get, path = "/v1/agents/{name}", tag = "agents",
    params(("name" = String, Path, description = "Agent name"), ReadParams),
    responses((status = 200, body = AgentDetail),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn get(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Principal>,
    Path(name): Path<String>,
    Query(read): Query<ReadParams>,
) -> Result<Json<AgentDetail>, Problem> {
    let name = parse_name(&name)?;
    read_barrier(&ctx, &read).await?;
    let record = visible(&ctx, &caller, &name).await?;
    let versions = ctx.registry.queries().versions(&name).await?;
    let source_errors = ctx.directory.as_ref().map(|d| d.errors_for(&name)).unwrap_or_default();
    let usage = ctx.ledger.queries.day_usage(name.as_str(), crate::state::day_of(crate::time::now_ms())).await?;
    let rollout_state = ctx.ledger.queries.rollout(&name).await?.map(|r| r.state);
    Ok(Json(AgentDetail {
        rollout_state,
        limits: ctx.runtime.limits_of(&record.spec),
        usage,
        summary: summary(&ctx, &record),
        spec: record.spec,
        toml: record.toml,
        versions,
        source_errors,
    }))
}

/// Remove an agent.
#[utoipa::path(delete, path = "/v1/agents/{name}", tag = "agents",
    params(("name" = String, Path, description = "Agent name")),
    responses((status = 200, body = Removed),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn remove(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<Json<Removed>, Problem> {
    let name = parse_name(&name)?;
    visible(&ctx, &caller, &name).await?;
    let removed_revision = ctx.registry.remove(&name, None).await?;
    Ok(Json(Removed { name: name.to_string(), removed_revision }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AgentsDirStatus {
    /// The directory watched, if any.
    pub dir: Option<String>,
    pub files: Vec<FileStatus>,
}

/// The agents directory: every file, the agent it defines, and its errors.
#[utoipa::path(get, path = "/v1/agents-dir", tag = "agents",
    responses((status = 200, body = AgentsDirStatus)))]
pub async fn agents_dir(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Principal>,
) -> Result<Json<AgentsDirStatus>, Problem> {
    // The node's paths and every file's agent: the operator's view.
    if caller.is_limited() {
        return Err(access::outside(format!(
            "the API key `{}` is limited to some agents or workspaces; the agents directory covers all of them",
            caller.name
        )));
    }
    Ok(Json(AgentsDirStatus {
        dir: ctx.agents_dir.as_ref().map(|d| d.display().to_string()),
        files: ctx.directory.as_ref().map(|d| d.status()).unwrap_or_default(),
    }))
}
