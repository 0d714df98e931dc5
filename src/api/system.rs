//! Health, readiness and cluster status.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::problem::Problem;
use super::Ctx;

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    pub status: &'static str,
    pub node_id: u64,
    pub version: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    pub ready: bool,
    pub leader: Option<u64>,
    pub applied_index: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Member {
    pub id: u64,
    pub rpc_addr: String,
    pub api_addr: String,
    /// `voter` or `learner`.
    pub role: String,
    pub matched_index: Option<u64>,
    pub is_leader: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ClusterStatusView {
    pub node_id: u64,
    /// This node's raft state: leader, follower, candidate, learner.
    pub state: String,
    pub leader: Option<u64>,
    pub term: u64,
    pub last_log_index: Option<u64>,
    pub applied_index: Option<u64>,
    pub snapshot_index: Option<u64>,
    pub purged_index: Option<u64>,
    /// Log entries currently stored (drops after compaction).
    pub stored_log_entries: u64,
    /// Log entries no replica could apply, recorded as failed (not halted on).
    pub failed_entries: u64,
    /// The cluster this node belongs to; null while it has not joined one.
    pub cluster_id: Option<String>,
    pub members: Vec<Member>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SnapshotResult {
    pub snapshot_index: Option<u64>,
    pub purged_index: Option<u64>,
    pub stored_log_entries: u64,
}

/// Liveness: the process is up and serving HTTP.
#[utoipa::path(get, path = "/health", tag = "system", responses((status = 200, body = Health)))]
pub async fn health(State(ctx): State<Ctx>) -> Json<Health> {
    Json(Health { status: "ok", node_id: ctx.cluster.node_id(), version: env!("CARGO_PKG_VERSION") })
}

/// Readiness: joined a cluster with a known leader and caught up.
#[utoipa::path(get, path = "/ready", tag = "system",
    responses((status = 200, body = Readiness), (status = 503, body = Readiness)))]
pub async fn ready(State(ctx): State<Ctx>) -> (StatusCode, Json<Readiness>) {
    let s = ctx.cluster.status();
    let ready = ctx.cluster.is_ready() && !ctx.shutdown.is_cancelled();
    let code = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, Json(Readiness { ready, leader: s.leader, applied_index: s.applied_index }))
}

pub fn cluster_view(ctx: &Ctx) -> ClusterStatusView {
    let s = ctx.cluster.status();
    ClusterStatusView {
        node_id: s.node_id,
        state: s.state,
        leader: s.leader,
        term: s.term,
        last_log_index: s.last_log_index,
        applied_index: s.applied_index,
        snapshot_index: s.snapshot_index,
        purged_index: s.purged_index,
        stored_log_entries: ctx.cluster.stored_log_entries(),
        failed_entries: ctx.cluster.failed_entries(),
        cluster_id: s.cluster_id,
        members: s
            .members
            .into_iter()
            .map(|m| Member {
                is_leader: Some(m.id) == s.leader,
                id: m.id,
                rpc_addr: m.rpc_addr,
                api_addr: m.api_addr,
                role: serde_json::to_value(m.role).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default(),
                matched_index: m.matched_index,
            })
            .collect(),
    }
}

/// Cluster status as seen by this node.
#[utoipa::path(get, path = "/v1/cluster/status", tag = "cluster", responses((status = 200, body = ClusterStatusView)))]
pub async fn cluster_status(State(ctx): State<Ctx>) -> Json<ClusterStatusView> {
    Json(cluster_view(&ctx))
}

/// Build a snapshot of this node's replica now and compact the log behind it.
#[utoipa::path(post, path = "/v1/cluster/snapshot", tag = "cluster",
    responses((status = 200, body = SnapshotResult), (status = 503, body = Problem, content_type = "application/problem+json")))]
pub async fn snapshot(State(ctx): State<Ctx>) -> Result<Json<SnapshotResult>, Problem> {
    let snapshot_index = ctx.cluster.snapshot_now().await?;
    let s = ctx.cluster.status();
    Ok(Json(SnapshotResult {
        snapshot_index,
        purged_index: s.purged_index,
        stored_log_entries: ctx.cluster.stored_log_entries(),
    }))
}

/// Prometheus metrics (text exposition format).
#[utoipa::path(get, path = "/metrics", tag = "system", responses((status = 200, description = "Prometheus text format", body = String)))]
pub async fn metrics(State(ctx): State<Ctx>) -> impl axum::response::IntoResponse {
    let s = ctx.cluster.status();
    let mut out = ctx.metrics.render();
    out.push_str(&format!(
        "# HELP caxton_raft_term Current Raft term\n# TYPE caxton_raft_term gauge\ncaxton_raft_term {}\n# HELP caxton_raft_applied_index Last applied log index\n# TYPE caxton_raft_applied_index gauge\ncaxton_raft_applied_index {}\n# HELP caxton_agents_running Agents running on this node\n# TYPE caxton_agents_running gauge\ncaxton_agents_running {}\n",
        s.term,
        s.applied_index.unwrap_or(0),
        ctx.runtime.running_count()
    ));
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}
