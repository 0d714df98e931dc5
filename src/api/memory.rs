//! `/v1/memory`: entities, relations, search, export and import.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::problem::Problem;
use super::Ctx;
use crate::memory::types::{parse_scope, Entity, MemoryScope, Place, Related, SearchHit, Viewer, DEFAULT_WORKSPACE};
use crate::memory::{MemoryError, MemoryExport, SearchQuery};

/// Who is asking and where: `scope` plus `agent` (agent-only) or `workspace`.
#[derive(Debug, Deserialize, IntoParams, ToSchema)]
pub struct Scoped {
    /// agent_only | workspace | global (default global)
    pub scope: Option<String>,
    /// Required for agent-only: act as this agent.
    pub agent: Option<String>,
    /// Workspace name (default "default").
    pub workspace: Option<String>,
}

/// The `scope` parameter, if given; an unknown value is a bad request.
fn scope_param(scope: Option<&str>) -> Result<Option<MemoryScope>, Problem> {
    scope
        .map(|s| {
            parse_scope(s)
                .ok_or_else(|| Problem::bad_request(format!("scope `{s}` is not one of agent_only, workspace, global")))
        })
        .transpose()
}

fn place(scope: Option<&str>, agent: Option<&str>, workspace: Option<&str>) -> Result<Place, Problem> {
    match scope_param(scope)?.unwrap_or(MemoryScope::Global) {
        MemoryScope::Global => Ok(Place::global()),
        MemoryScope::Workspace => Ok(Place::workspace(workspace.unwrap_or(DEFAULT_WORKSPACE))),
        MemoryScope::AgentOnly => match agent {
            Some(a) if !a.is_empty() => Ok(Place::agent(a)),
            _ => Err(Problem::bad_request("scope=agent_only needs agent=NAME: agent-only memory belongs to one agent")),
        },
    }
}

fn viewer(agent: Option<&str>, workspace: Option<&str>) -> Viewer {
    Viewer { agent: agent.map(str::to_owned), workspace: Some(workspace.unwrap_or(DEFAULT_WORKSPACE).to_owned()) }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEntity {
    pub name: String,
    pub entity_type: String,
    /// agent_only | workspace | global (default global)
    pub scope: Option<String>,
    pub agent: Option<String>,
    pub workspace: Option<String>,
    #[serde(default)]
    pub observations: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Stored {
    pub name: String,
    pub created: bool,
    pub observations: usize,
}

/// Create an entity, or add observations to it; embeddings are computed here.
#[utoipa::path(post, path = "/v1/memory/entities", tag = "memory", request_body = NewEntity,
    responses((status = 201, body = Stored), (status = 200, body = Stored), (status = 400, body = Problem, content_type = "application/problem+json")))]
pub async fn create(State(ctx): State<Ctx>, Json(b): Json<NewEntity>) -> Result<(StatusCode, Json<Stored>), Problem> {
    let p = place(b.scope.as_deref(), b.agent.as_deref(), b.workspace.as_deref())?;
    let n = b.observations.len();
    let created = ctx.memory.store(&p, &b.name, &b.entity_type, b.observations).await?;
    Ok((
        if created { StatusCode::CREATED } else { StatusCode::OK },
        Json(Stored { name: b.name, created, observations: n }),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct ListParams {
    pub scope: Option<String>,
    pub agent: Option<String>,
    pub workspace: Option<String>,
    pub entity_type: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EntityList {
    pub entities: Vec<Entity>,
}

/// Entities visible to the caller (global, its workspace, and `agent`'s own).
#[utoipa::path(get, path = "/v1/memory/entities", tag = "memory", params(ListParams), responses((status = 200, body = EntityList)))]
pub async fn list(State(ctx): State<Ctx>, Query(q): Query<ListParams>) -> Result<Json<EntityList>, Problem> {
    let scope = scope_param(q.scope.as_deref())?;
    let entities = ctx.memory.list(&viewer(q.agent.as_deref(), q.workspace.as_deref()), scope, q.entity_type).await?;
    Ok(Json(EntityList { entities }))
}

/// One entity with its observations.
#[utoipa::path(get, path = "/v1/memory/entities/{name}", tag = "memory", params(("name" = String, Path), Scoped),
    responses((status = 200, body = Entity), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn get(
    State(ctx): State<Ctx>,
    Path(name): Path<String>,
    Query(s): Query<Scoped>,
) -> Result<Json<Entity>, Problem> {
    let p = place(s.scope.as_deref(), s.agent.as_deref(), s.workspace.as_deref())?;
    ctx.memory.get(&p, &name).await?.map(Json).ok_or_else(|| MemoryError::NotFound(name).into())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Deleted {
    pub name: String,
}

/// Delete an entity, its observations and its relations.
#[utoipa::path(delete, path = "/v1/memory/entities/{name}", tag = "memory", params(("name" = String, Path), Scoped),
    responses((status = 200, body = Deleted), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn delete(
    State(ctx): State<Ctx>,
    Path(name): Path<String>,
    Query(s): Query<Scoped>,
) -> Result<Json<Deleted>, Problem> {
    let p = place(s.scope.as_deref(), s.agent.as_deref(), s.workspace.as_deref())?;
    if ctx.memory.delete(&p, &name).await? {
        Ok(Json(Deleted { name }))
    } else {
        Err(MemoryError::NotFound(name).into())
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRelation {
    pub from: String,
    pub to: String,
    pub relation_type: String,
    pub scope: Option<String>,
    pub agent: Option<String>,
    pub workspace: Option<String>,
}

/// Relate two entities of the same scope.
#[utoipa::path(post, path = "/v1/memory/relations", tag = "memory", request_body = NewRelation,
    responses((status = 201, body = Deleted), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn relate(State(ctx): State<Ctx>, Json(b): Json<NewRelation>) -> Result<StatusCode, Problem> {
    let p = place(b.scope.as_deref(), b.agent.as_deref(), b.workspace.as_deref())?;
    ctx.memory.relate(&p, &b.from, &b.to, &b.relation_type).await?;
    Ok(StatusCode::CREATED)
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct NeighbourParams {
    pub scope: Option<String>,
    pub agent: Option<String>,
    pub workspace: Option<String>,
    /// 1-5, default 1.
    pub depth: Option<usize>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Neighbour {
    pub depth: usize,
    #[serde(flatten)]
    pub related: Related,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Neighbours {
    pub name: String,
    pub neighbours: Vec<Neighbour>,
}

/// Entities reachable from `name` within `depth` relations (graph query).
#[utoipa::path(get, path = "/v1/memory/entities/{name}/neighbours", tag = "memory", params(("name" = String, Path), NeighbourParams),
    responses((status = 200, body = Neighbours)))]
pub async fn neighbours(
    State(ctx): State<Ctx>,
    Path(name): Path<String>,
    Query(q): Query<NeighbourParams>,
) -> Result<Json<Neighbours>, Problem> {
    let p = place(q.scope.as_deref(), q.agent.as_deref(), q.workspace.as_deref())?;
    let found = ctx.memory.neighbours(&p, &name, q.depth.unwrap_or(1)).await?;
    Ok(Json(Neighbours {
        name,
        neighbours: found.into_iter().map(|(depth, related)| Neighbour { depth, related }).collect(),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct SearchParams {
    pub q: String,
    /// Only this scope (default: every scope the caller may see).
    pub scope: Option<String>,
    pub agent: Option<String>,
    pub workspace: Option<String>,
    pub entity_type: Option<String>,
    /// 1-100, default 10.
    pub limit: Option<usize>,
    /// 0..1, default 0.
    pub min_similarity: Option<f32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SearchResults {
    pub results: Vec<SearchHit>,
}

/// Semantic search, best first, each hit enriched with its relations.
#[utoipa::path(get, path = "/v1/memory/search", tag = "memory", params(SearchParams),
    responses((status = 200, body = SearchResults), (status = 400, body = Problem, content_type = "application/problem+json")))]
pub async fn search(State(ctx): State<Ctx>, Query(q): Query<SearchParams>) -> Result<Json<SearchResults>, Problem> {
    let scope = scope_param(q.scope.as_deref())?;
    if scope == Some(MemoryScope::AgentOnly) && q.agent.is_none() {
        return Err(Problem::bad_request("scope=agent_only needs agent=NAME: agent-only memory belongs to one agent"));
    }
    let results = ctx
        .memory
        .search(SearchQuery {
            text: q.q,
            viewer: viewer(q.agent.as_deref(), q.workspace.as_deref()),
            scope,
            entity_type: q.entity_type,
            limit: q.limit.unwrap_or(10),
            min_similarity: q.min_similarity.unwrap_or(0.0),
        })
        .await?;
    Ok(Json(SearchResults { results }))
}

/// Everything in memory, in the versioned MemoryExport form (with vectors).
#[utoipa::path(get, path = "/v1/memory/export", tag = "memory", responses((status = 200, body = MemoryExport)))]
pub async fn export(State(ctx): State<Ctx>) -> Result<Json<MemoryExport>, Problem> {
    Ok(Json(ctx.memory.export().await?))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Imported {
    pub entities: usize,
}

/// Import a MemoryExport; entries without vectors are embedded on the way in.
#[utoipa::path(post, path = "/v1/memory/import", tag = "memory", request_body = MemoryExport,
    responses((status = 200, body = Imported), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn import(State(ctx): State<Ctx>, Json(data): Json<MemoryExport>) -> Result<Json<Imported>, Problem> {
    Ok(Json(Imported { entities: ctx.memory.import(data).await? }))
}
