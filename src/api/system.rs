//! Health, readiness and cluster status.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::{Extension, Json};
use serde::Serialize;
use utoipa::ToSchema;

use super::problem::Problem;
use super::{ApiContext, Ctx};

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    pub status: &'static str,
    pub node_id: u64,
    pub version: &'static str,
    /// `keys` when requests need an API key, `dev` when loopback callers
    /// need none: what a client (the console) asks before it signs in.
    pub auth: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    pub ready: bool,
    pub leader: Option<u64>,
    pub applied_index: Option<u64>,
    pub memory: MemoryReadiness,
}

/// Whether this node's memory backend can serve (for `postgres`: the
/// database answers and has this node's schema).
#[derive(Debug, Serialize, ToSchema)]
pub struct MemoryReadiness {
    /// `embedded` or `postgres`.
    pub backend: &'static str,
    pub ready: bool,
    /// Why not, when not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Longest a readiness probe waits for the memory database.
const MEMORY_PROBE: std::time::Duration = std::time::Duration::from_secs(2);

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
    Json(Health {
        status: "ok",
        node_id: ctx.cluster.node_id(),
        version: env!("CARGO_PKG_VERSION"),
        auth: ctx.gate.mode().as_str(),
    })
}

/// Readiness: joined a cluster with a known leader and caught up, and its
/// memory backend reachable.
#[utoipa::path(get, path = "/ready", tag = "system",
    responses((status = 200, body = Readiness), (status = 503, body = Readiness)))]
pub async fn ready(State(ctx): State<Ctx>) -> (StatusCode, Json<Readiness>) {
    let s = ctx.cluster.status();
    let memory = memory_readiness(&ctx).await;
    let ready = ctx.cluster.is_ready() && !ctx.shutdown.is_cancelled() && memory.ready;
    let code = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, Json(Readiness { ready, leader: s.leader, applied_index: s.applied_index, memory }))
}

async fn memory_readiness(ctx: &Ctx) -> MemoryReadiness {
    let backend = ctx.memory.kind().as_str();
    let detail = match tokio::time::timeout(MEMORY_PROBE, ctx.memory.check_ready()).await {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some(format!("the memory database did not answer within {} s", MEMORY_PROBE.as_secs())),
    };
    MemoryReadiness { backend, ready: detail.is_none(), detail }
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

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ReplicaDigest {
    pub node: u64,
    /// The log index the replica had applied when it was read.
    pub applied_index: u64,
    /// SHA-256 over every row of the application state: equal on every
    /// replica at the same index.
    pub digest: String,
}

/// A digest of this node's replica and the index it is at.
#[utoipa::path(get, path = "/v1/cluster/digest", tag = "cluster", responses((status = 200, body = ReplicaDigest)))]
pub async fn digest(State(ctx): State<Ctx>) -> Result<Json<ReplicaDigest>, Problem> {
    let (applied_index, digest) = ctx.cluster.replica().digest().await?;
    Ok(Json(ReplicaDigest { node: ctx.cluster.node_id(), applied_index, digest }))
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

/// Prometheus metrics (text exposition format). Also served, without the
/// API's keys, on `server.metrics_listen`.
#[utoipa::path(get, path = "/metrics", tag = "system", responses((status = 200, description = "Prometheus text format", body = String)))]
pub async fn metrics(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<crate::auth::Principal>,
) -> Result<axum::response::Response, Problem> {
    // Every agent's series: not for a key limited to some of them.
    if caller.is_limited() {
        return Err(super::access::outside(format!(
            "the API key `{}` is limited to some agents or workspaces; /metrics shows every agent's series",
            caller.name
        )));
    }
    Ok(open_metrics(State(ctx)).await.into_response())
}

/// `/metrics` on the metrics listener (`server.metrics_listen`), which
/// takes no keys: bind it where only Prometheus reaches it.
pub async fn open_metrics(State(ctx): State<Ctx>) -> impl axum::response::IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], render_metrics(&ctx).await)
}

/// Sets the gauges that mirror cluster and node state, then renders the
/// registry: gauges are read at scrape time rather than tracked.
pub async fn render_metrics(ctx: &ApiContext) -> String {
    let m = &ctx.metrics;
    let r = &m.raft;
    if let Some((node, ca)) = ctx.cluster.certificate_expiry() {
        r.certificate_expiry.with_label_values(&["node"]).set(node);
        r.certificate_expiry.with_label_values(&["ca"]).set(ca);
    }
    let s = ctx.cluster.status();
    let own = s.node_id;
    r.has_leader.set(i64::from(s.leader.is_some()));
    r.is_leader.set(i64::from(s.leader == Some(own)));
    r.leader_changes.set(ctx.cluster.leader_changes() as i64);
    r.term.set(s.term as i64);
    for (kind, index) in [
        ("last", s.last_log_index),
        ("applied", s.applied_index),
        ("snapshot", s.snapshot_index),
        ("purged", s.purged_index),
    ] {
        r.log_index.with_label_values(&[kind]).set(index.unwrap_or(0) as i64);
    }
    r.snapshot_last_index.set(s.snapshot_index.unwrap_or(0) as i64);
    r.log_entries.set(ctx.cluster.stored_log_entries() as i64);
    r.failed_entries.set(ctx.cluster.failed_entries() as i64);
    r.quorum_ack_age.set(ctx.cluster.since_quorum_ack().map(|d| d.as_secs_f64()).unwrap_or(0.0));
    r.replication_lag.reset();
    if s.leader == Some(own) {
        let last = s.last_log_index.unwrap_or(0);
        for peer in s.members.iter().filter(|p| p.id != own) {
            let lag = last.saturating_sub(peer.matched_index.unwrap_or(0));
            r.replication_lag.with_label_values(&[&peer.id.to_string()]).set(lag as i64);
        }
    }
    let voters = s.members.iter().filter(|p| p.role == caxton_cluster::MemberRole::Voter).count();
    r.members.with_label_values(&["voter"]).set(voters as i64);
    r.members.with_label_values(&["learner"]).set((s.members.len() - voters) as i64);
    let views = ctx.cluster.members().await;
    let alive = views.iter().filter(|v| v.alive).count();
    r.gossip_nodes.with_label_values(&["alive"]).set(alive as i64);
    r.gossip_nodes.with_label_values(&["dead"]).set((views.len() - alive) as i64);
    // A lone node (no gossip) hears from itself.
    let gossip = views.iter().any(|v| v.gossip_role.is_some());
    let voters = views.iter().filter(|v| v.role == caxton_cluster::RaftRole::Voter);
    let (reachable, unreachable): (Vec<_>, Vec<_>) = voters.partition(|v| v.alive || !gossip || v.id == own);
    r.voters.with_label_values(&["reachable"]).set(reachable.len() as i64);
    r.voters.with_label_values(&["unreachable"]).set(unreachable.len() as i64);
    if let Some(free) = ctx.gate.disk_free() {
        r.data_volume_free.set(free.min(i64::MAX as u64) as i64);
    }
    if let Ok(rows) = ctx.registry.queries().shard_rows().await {
        r.shards_owned.set(rows.iter().filter(|(_, owner, _)| *owner == own).count() as i64);
    }
    r.agents_running.set(ctx.runtime.running_count() as i64);
    m.mailbox_depth.set(ctx.runtime.mailbox_depth() as i64);
    if let Ok(n) = ctx.registry.queries().active_conversations().await {
        m.active_conversations.set(n as i64);
    }
    if let Ok(rollouts) = ctx.registry.queries().active_rollouts().await {
        m.rollout_weight.reset();
        m.rollout_step.reset();
        for r in rollouts {
            let agent = m.agents.of(&r.agent);
            m.rollout_weight.with_label_values(&[agent]).set(i64::from(r.weight));
            m.rollout_step.with_label_values(&[agent]).set(i64::from(r.step));
        }
    }
    // A database that is down must not stall the scrape for the retry budget.
    if let Ok(Ok((entities, observations))) = tokio::time::timeout(MEMORY_PROBE, ctx.memory.counts()).await {
        m.memory_entities.set(entities as i64);
        m.memory_observations.set(observations as i64);
    }
    m.render()
}
