//! `/v1/memory`: entities, relations, search, export and import.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::access;
use super::problem::{Problem, ProblemType};
use super::Ctx;
use crate::auth::Principal;
use crate::memory::types::{parse_scope, Entity, MemoryScope, Place, Related, SearchHit, Viewer, DEFAULT_WORKSPACE};
use crate::memory::{MemoryError, MemoryExport, SearchQuery, EXPORT_PAGE, EXPORT_VERSION};

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

/// The default workspace of a caller: its key's only workspace, if it is
/// limited to one, else the default one.
fn default_workspace(caller: &Principal) -> &str {
    match caller.grants().workspaces.as_slice() {
        [only] => only,
        _ => DEFAULT_WORKSPACE,
    }
}

/// The place a request names, checked against the caller's key.
async fn checked_place(ctx: &Ctx, caller: &Principal, s: &Scoped, write: bool) -> Result<Place, Problem> {
    let workspace = s.workspace.as_deref().or(Some(default_workspace(caller)));
    let p = place(s.scope.as_deref(), s.agent.as_deref(), workspace)?;
    access::check_place(caller, ctx.registry.queries(), &p, write).await?;
    Ok(p)
}

/// Who a read acts as: `agent` and `workspace` are claims, honoured only
/// when the caller's key admits them.
async fn viewer(
    ctx: &Ctx,
    caller: &Principal,
    agent: Option<&str>,
    workspace: Option<&str>,
) -> Result<Viewer, Problem> {
    let v = Viewer {
        agent: agent.map(str::to_owned),
        workspace: Some(workspace.unwrap_or(default_workspace(caller)).to_owned()),
    };
    access::check_viewer(caller, ctx.registry.queries(), &v).await?;
    Ok(v)
}

/// Observations one request may store: each is embedded and replicated as
/// a 384-float vector, so the count bounds the Raft command, not the body.
pub const MAX_OBSERVATIONS_PER_REQUEST: usize = 256;
/// Longest observation, in bytes (the embedder reads 256 tokens of it).
pub const MAX_OBSERVATION_BYTES: usize = 8 * 1024;
/// Largest replicated command one request may produce: each observation
/// travels with its vector (384 floats, 2048 bytes of base64).
pub const MAX_COMMAND_BYTES: usize = 1024 * 1024;
const VECTOR_WIRE_BYTES: usize = 2048;
/// Longest search query, in bytes.
pub const MAX_QUERY_BYTES: usize = 2 * 1024;

fn check_observations(observations: &[String]) -> Result<(), Problem> {
    if observations.len() > MAX_OBSERVATIONS_PER_REQUEST {
        return Err(too_large(
            format!(
                "{} observations in one request; the limit is {MAX_OBSERVATIONS_PER_REQUEST} (MAX_OBSERVATIONS_PER_REQUEST): send them in batches",
                observations.len()
            ),
            "observations_per_request",
            MAX_OBSERVATIONS_PER_REQUEST,
        ));
    }
    let command_bytes: usize = observations.iter().map(|o| o.len() + VECTOR_WIRE_BYTES).sum();
    if command_bytes > MAX_COMMAND_BYTES {
        return Err(too_large(
            format!(
                "these observations would replicate as a {command_bytes}-byte command; the limit is {MAX_COMMAND_BYTES} (MAX_COMMAND_BYTES): send fewer at once"
            ),
            "command_bytes",
            MAX_COMMAND_BYTES,
        ));
    }
    if let Some((i, o)) = observations.iter().enumerate().find(|(_, o)| o.len() > MAX_OBSERVATION_BYTES) {
        return Err(too_large(
            format!(
                "observations[{i}] is {} bytes; the limit is {MAX_OBSERVATION_BYTES} (MAX_OBSERVATION_BYTES)",
                o.len()
            ),
            "observation_bytes",
            MAX_OBSERVATION_BYTES,
        ));
    }
    Ok(())
}

fn too_large(detail: String, limit: &str, max: usize) -> Problem {
    let mut p = Problem::of(ProblemType::PayloadTooLarge, detail);
    p.extra = Some(serde_json::json!({ "limit": limit, "max": max }));
    p
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
pub async fn create(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Principal>,
    Json(b): Json<NewEntity>,
) -> Result<(StatusCode, Json<Stored>), Problem> {
    check_observations(&b.observations)?;
    let scoped = Scoped { scope: b.scope.clone(), agent: b.agent.clone(), workspace: b.workspace.clone() };
    let p = checked_place(&ctx, &caller, &scoped, true).await?;
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
    /// Page size, 1-1000 (default 100).
    pub limit: Option<usize>,
    /// The `next` value of the previous page.
    pub after: Option<String>,
}

/// Largest page of entities.
const MAX_LIST: usize = 1000;

#[derive(Debug, Serialize, ToSchema)]
pub struct EntityList {
    pub entities: Vec<Entity>,
    /// Pass as `after` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

fn entity_key(e: &Entity) -> (String, String, String) {
    (crate::state::scope_str(e.scope).to_owned(), e.owner.clone(), e.name.clone())
}

/// `scope/owner/name`, with `/` inside owner or name escaped as `%2F`.
fn cursor(e: &Entity) -> String {
    let (s, o, n) = entity_key(e);
    format!("{s}/{}/{}", o.replace('%', "%25").replace('/', "%2F"), n.replace('%', "%25").replace('/', "%2F"))
}

fn cursor_key(c: &str) -> (String, String, String) {
    let unescape = |s: &str| s.replace("%2F", "/").replace("%25", "%");
    let mut parts = c.splitn(3, '/');
    let mut next = || parts.next().map(unescape).unwrap_or_default();
    (next(), next(), next())
}

/// Entities visible to the caller (global, its workspace, and `agent`'s own).
#[utoipa::path(get, path = "/v1/memory/entities", tag = "memory", params(ListParams), responses((status = 200, body = EntityList)))]
pub async fn list(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Principal>,
    Query(q): Query<ListParams>,
) -> Result<Json<EntityList>, Problem> {
    let scope = scope_param(q.scope.as_deref())?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=MAX_LIST).contains(&limit) {
        return Err(Problem::bad_request(format!("limit={limit} is outside 1..={MAX_LIST}")));
    }
    let viewer = viewer(&ctx, &caller, q.agent.as_deref(), q.workspace.as_deref()).await?;
    let mut entities = ctx.memory.list(&viewer, scope, q.entity_type).await?;
    // Pages in (scope, owner, name) order; `next` resumes after the last.
    entities.sort_by_key(entity_key);
    if let Some(after) = &q.after {
        entities.retain(|e| entity_key(e) > cursor_key(after));
    }
    let next = (entities.len() > limit).then(|| entities.get(limit - 1).map(cursor)).flatten();
    entities.truncate(limit);
    Ok(Json(EntityList { entities, next }))
}

/// One entity with its observations.
#[utoipa::path(get, path = "/v1/memory/entities/{name}", tag = "memory", params(("name" = String, Path), Scoped),
    responses((status = 200, body = Entity), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn get(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Principal>,
    Path(name): Path<String>,
    Query(s): Query<Scoped>,
) -> Result<Json<Entity>, Problem> {
    let p = checked_place(&ctx, &caller, &s, false).await?;
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
    Extension(caller): Extension<Principal>,
    Path(name): Path<String>,
    Query(s): Query<Scoped>,
) -> Result<Json<Deleted>, Problem> {
    let p = checked_place(&ctx, &caller, &s, true).await?;
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
pub async fn relate(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Principal>,
    Json(b): Json<NewRelation>,
) -> Result<StatusCode, Problem> {
    let scoped = Scoped { scope: b.scope.clone(), agent: b.agent.clone(), workspace: b.workspace.clone() };
    let p = checked_place(&ctx, &caller, &scoped, true).await?;
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
    Extension(caller): Extension<Principal>,
    Path(name): Path<String>,
    Query(q): Query<NeighbourParams>,
) -> Result<Json<Neighbours>, Problem> {
    let scoped = Scoped { scope: q.scope.clone(), agent: q.agent.clone(), workspace: q.workspace.clone() };
    let p = checked_place(&ctx, &caller, &scoped, false).await?;
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
pub async fn search(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Principal>,
    Query(q): Query<SearchParams>,
) -> Result<Json<SearchResults>, Problem> {
    let scope = scope_param(q.scope.as_deref())?;
    if q.q.len() > MAX_QUERY_BYTES {
        return Err(too_large(
            format!("the query is {} bytes; the limit is {MAX_QUERY_BYTES} (MAX_QUERY_BYTES)", q.q.len()),
            "query_bytes",
            MAX_QUERY_BYTES,
        ));
    }
    let limit = q.limit.unwrap_or(10);
    if !(1..=100).contains(&limit) {
        return Err(Problem::bad_request(format!("limit={limit} is outside 1..=100")));
    }
    let viewer = viewer(&ctx, &caller, q.agent.as_deref(), q.workspace.as_deref()).await?;
    if scope == Some(MemoryScope::AgentOnly) && q.agent.is_none() {
        return Err(Problem::bad_request("scope=agent_only needs agent=NAME: agent-only memory belongs to one agent"));
    }
    let results = ctx
        .memory
        .search(SearchQuery {
            text: q.q,
            viewer,
            scope,
            entity_type: q.entity_type,
            limit,
            min_similarity: q.min_similarity.unwrap_or(0.0),
        })
        .await?;
    Ok(Json(SearchResults { results }))
}

/// Everything in memory, in the versioned MemoryExport form (with vectors),
/// streamed page by page: the node never holds the whole memory at once.
#[utoipa::path(get, path = "/v1/memory/export", tag = "memory", responses((status = 200, body = MemoryExport)))]
pub async fn export(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Principal>,
) -> Result<axum::response::Response, Problem> {
    whole_memory(&caller, "export")?;
    // The first page is read before answering: a memory that cannot be
    // read is a problem answer, not a truncated body.
    let first = ctx.memory.export_entities(None, EXPORT_PAGE).await?;
    let head = format!("{{\"version\":{EXPORT_VERSION},\"exported_at_ms\":{},\"entities\":[", crate::time::now_ms());
    let memory = ctx.memory.clone();
    let body = async_stream::stream! {
        yield Ok::<_, std::io::Error>(axum::body::Bytes::from(head));
        let mut page = first;
        let mut sep = "";
        loop {
            let (items, next) = page;
            yield Ok(json_items(&items, &mut sep));
            let Some(after) = next else { break };
            match memory.export_entities(Some(after), EXPORT_PAGE).await {
                Ok(p) => page = p,
                Err(e) => { yield Err(cut_short(e)); return; }
            }
        }
        yield Ok(axum::body::Bytes::from_static(b"],\"relations\":["));
        let (mut after, mut sep) = (None, "");
        loop {
            match memory.export_relations(after, EXPORT_PAGE).await {
                Ok((items, next)) => {
                    yield Ok(json_items(&items, &mut sep));
                    match next { Some(n) => after = Some(n), None => break }
                }
                Err(e) => { yield Err(cut_short(e)); return; }
            }
        }
        yield Ok(axum::body::Bytes::from_static(b"]}"));
    };
    axum::response::Response::builder()
        .header(axum::http::header::CONTENT_TYPE, "application/json")
        .body(axum::body::Body::from_stream(body))
        .map_err(|e| Problem::of(ProblemType::Internal, e.to_string()))
}

/// Items as the comma-separated inside of a JSON array, continuing one.
fn json_items<T: Serialize>(items: &[T], sep: &mut &'static str) -> axum::body::Bytes {
    let mut out = Vec::new();
    for item in items {
        out.extend_from_slice(sep.as_bytes());
        // Our own types serialize infallibly.
        serde_json::to_writer(&mut out, item).expect("memory records serialize");
        *sep = ",";
    }
    axum::body::Bytes::from(out)
}

/// A failure after the answer began: the body ends early (invalid JSON
/// for the reader) and the node logs why.
fn cut_short(e: MemoryError) -> std::io::Error {
    tracing::warn!(error = %e, "memory export cut short");
    std::io::Error::other(e.to_string())
}

/// Export and import move every place's memory at once: not for a key
/// limited to some agents or workspaces, admin or not.
fn whole_memory(caller: &Principal, what: &str) -> Result<(), Problem> {
    if caller.is_limited() {
        return Err(access::outside(format!(
            "the API key `{}` is limited to some agents or workspaces; a memory {what} covers all of them",
            caller.name
        )));
    }
    Ok(())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Imported {
    pub entities: usize,
}

/// Import a MemoryExport; entries without vectors are embedded on the way in.
#[utoipa::path(post, path = "/v1/memory/import", tag = "memory", request_body = MemoryExport,
    responses((status = 200, body = Imported), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn import(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Principal>,
    Json(data): Json<MemoryExport>,
) -> Result<Json<Imported>, Problem> {
    whole_memory(&caller, "import")?;
    for e in &data.entities {
        let texts: Vec<String> = e.observations.iter().map(|o| o.text.clone()).collect();
        check_observations(&texts).map_err(|mut p| {
            p.detail = format!("entity `{}`: {}", e.name, p.detail);
            p
        })?;
    }
    Ok(Json(Imported { entities: ctx.memory.import(data).await? }))
}
