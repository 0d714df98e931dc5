//! Cluster administration: members, placement, leave, remove, leadership.

use axum::extract::{Path, State};
use axum::{Extension, Json};
use caxton_cluster::MemberView;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::problem::Problem;
use super::Ctx;
use crate::state::SHARDS;

#[derive(Debug, Serialize, ToSchema)]
pub struct Members {
    #[schema(value_type = Vec<Object>)]
    pub members: Vec<MemberView>,
}

/// Raft members with their roles, and gossip's view (alive, ready).
#[utoipa::path(get, path = "/v1/cluster/members", tag = "cluster", responses((status = 200, body = Members)))]
pub async fn members(State(ctx): State<Ctx>) -> Json<Members> {
    Json(Members { members: ctx.cluster.members().await })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NodeShards {
    pub node: u64,
    pub shards: u32,
    pub agents: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PlacementView {
    pub shards: u32,
    pub assigned: u32,
    /// Highest shard epoch (bumps on every move).
    pub max_epoch: u64,
    pub nodes: Vec<NodeShards>,
}

/// Which node owns which shards, and which agents run where.
#[utoipa::path(get, path = "/v1/cluster/placement", tag = "cluster", responses((status = 200, body = PlacementView)))]
pub async fn placement(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<crate::auth::Principal>,
) -> Result<Json<PlacementView>, Problem> {
    let rows = ctx.registry.queries().shard_rows().await?;
    let mut by_node: std::collections::BTreeMap<u64, NodeShards> = Default::default();
    for (_, owner, _) in &rows {
        by_node.entry(*owner).or_insert_with(|| NodeShards { node: *owner, shards: 0, agents: vec![] }).shards += 1;
    }
    // A limited key sees where its own agents run, and no other's names.
    for a in super::access::visible_agents(&caller, ctx.registry.queries()).await? {
        by_node
            .entry(a.owner)
            .or_insert_with(|| NodeShards { node: a.owner, shards: 0, agents: vec![] })
            .agents
            .push(a.name);
    }
    Ok(Json(PlacementView {
        shards: SHARDS,
        assigned: rows.len() as u32,
        max_epoch: rows.iter().map(|r| r.2).max().unwrap_or(0),
        nodes: by_node.into_values().collect(),
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Done {
    pub ok: bool,
    pub detail: String,
}

/// This node leaves the cluster gracefully (hands off leadership first).
#[utoipa::path(post, path = "/v1/cluster/leave", tag = "cluster",
    responses((status = 200, body = Done), (status = 503, body = Problem, content_type = "application/problem+json")))]
pub async fn leave(State(ctx): State<Ctx>) -> Result<Json<Done>, Problem> {
    ctx.cluster.leave().await?;
    Ok(Json(Done { ok: true, detail: format!("node {} left the cluster; it can be stopped", ctx.cluster.node_id()) }))
}

/// Remove a node (dead, or one that left) from the membership.
#[utoipa::path(post, path = "/v1/cluster/members/{id}/remove", tag = "cluster", params(("id" = u64, Path)),
    responses((status = 200, body = Done), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn remove(State(ctx): State<Ctx>, Path(id): Path<u64>) -> Result<Json<Done>, Problem> {
    ctx.cluster.remove_node(id).await?;
    ctx.placement.kick();
    Ok(Json(Done { ok: true, detail: format!("node {id} removed") }))
}

/// A consistent copy of the whole replicated state (agents and their
/// revisions, keys, tool servers, messages, conversations, memory) holding
/// every write acknowledged before the request: one JSON header line (cluster
/// id, index, term, length, SHA-256), then the database. `caxton cluster
/// backup FILE` saves it; `caxton cluster restore FILE` founds a new cluster
/// from it.
#[utoipa::path(get, path = "/v1/cluster/backup", tag = "cluster",
    responses((status = 200, description = "application/vnd.caxton.backup: header line, then the database"),
        (status = 503, body = Problem, content_type = "application/problem+json")))]
pub async fn backup(State(ctx): State<Ctx>) -> Result<axum::response::Response, Problem> {
    use futures::StreamExt;
    let made = ctx.cluster.backup().await?;
    let header = made.header.line();
    let length = header.len() as u64 + made.header.bytes;
    tracing::info!(index = made.header.index, bytes = made.header.bytes, "backup streamed");
    let body = futures::stream::once(async move { Ok::<_, std::io::Error>(axum::body::Bytes::from(header)) })
        .chain(tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(made.database)));
    let name = format!("caxton-{}-{}.backup", made.header.cluster_id, made.header.index);
    axum::response::Response::builder()
        .header(axum::http::header::CONTENT_TYPE, BACKUP_MEDIA_TYPE)
        .header(axum::http::header::CONTENT_LENGTH, length)
        .header(axum::http::header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\""))
        .header("x-caxton-backup-index", made.header.index)
        .header("x-caxton-backup-sha256", made.header.sha256.clone())
        .body(axum::body::Body::from_stream(body))
        .map_err(|e| Problem::of(crate::problems::ProblemType::Internal, e.to_string()))
}

/// Re-reads this node's config file (as SIGHUP does): tool policy, LLM
/// providers, log level, allowed origins, rate limit and request timeout
/// change at once; every other changed key is named as needing a restart.
/// A config that does not load is refused and changes nothing.
#[utoipa::path(post, path = "/v1/cluster/reload", tag = "cluster",
    responses((status = 200, body = crate::reload::ReloadReport),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn reload(State(ctx): State<Ctx>) -> Result<Json<crate::reload::ReloadReport>, Problem> {
    let reloader = ctx.reloader.clone();
    let report = tokio::task::spawn_blocking(move || reloader.reload())
        .await
        .map_err(|e| Problem::of(crate::problems::ProblemType::Internal, e.to_string()))??;
    Ok(Json(report))
}

/// The media type of a backup file.
pub const BACKUP_MEDIA_TYPE: &str = "application/vnd.caxton.backup";

#[derive(Debug, Deserialize, ToSchema)]
pub struct TransferBody {
    pub node: u64,
}

/// Move leadership to another voter.
#[utoipa::path(post, path = "/v1/cluster/transfer-leader", tag = "cluster", request_body = TransferBody,
    responses((status = 200, body = Done), (status = 409, body = Problem, content_type = "application/problem+json")))]
pub async fn transfer_leader(State(ctx): State<Ctx>, Json(b): Json<TransferBody>) -> Result<Json<Done>, Problem> {
    ctx.cluster.transfer_leader(b.node).await?;
    Ok(Json(Done { ok: true, detail: format!("node {} is the leader", b.node) }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Rebalanced {
    /// Shards moved by this call (only the leader moves shards).
    pub moved: usize,
    pub leader: Option<u64>,
}

/// Recompute placement now (the leader also does this every second).
#[utoipa::path(post, path = "/v1/cluster/rebalance", tag = "cluster", responses((status = 200, body = Rebalanced)))]
pub async fn rebalance(State(ctx): State<Ctx>) -> Result<Json<Rebalanced>, Problem> {
    let moved = ctx.placement.rebalance_once().await?;
    Ok(Json(Rebalanced { moved, leader: ctx.cluster.status().leader }))
}

/// Cluster events as they happen (SSE; `event:` is the kind): agents
/// deployed, updated, removed and moved between nodes; leader changes;
/// members added, removed or promoted. Admin keys only: it names every agent.
#[utoipa::path(get, path = "/v1/events", tag = "cluster",
    responses((status = 200, description = "text/event-stream of cluster events (JSON data)")))]
pub async fn events(
    State(ctx): State<Ctx>,
) -> axum::response::sse::Sse<impl futures::Stream<Item = Result<axum::response::sse::Event, std::convert::Infallible>>>
{
    use axum::response::sse::{Event, KeepAlive, Sse};
    let mut feed = ctx.events.subscribe();
    let stream = async_stream::stream! {
        loop {
            match feed.recv().await {
                Ok(e) => yield Ok(Event::default().event(e.kind).data(serde_json::to_string(&e).unwrap_or_default())),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    yield Ok(Event::default().event("lagged").data(format!("{{\"missed\":{n}}}")));
                }
                Err(_) => break,
            }
        }
    };
    Sse::new(stream).keep_alive(KeepAlive::default())
}
