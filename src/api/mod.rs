//! The public REST API: routes, problem+json errors, request ids, OpenAPI.
//!
//! Handlers return `Result<_, Problem>`: a problem is built only on the error
//! path and rendered at once, so its size is not worth boxing.
#![allow(clippy::result_large_err)]

mod a2a;
mod access;
mod agents;
mod bargains;
pub mod catalogue;
mod cluster;
mod console;
pub mod gate;
mod keys;
mod mcp;
mod mcp_http;
mod memory;
mod messages;
mod openai_compat;
mod problem;
mod request_id;
mod rollouts;
pub mod serve;
mod system;
mod topics;

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use caxton_cluster::Cluster;
use tokio_util::sync::CancellationToken;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use mcp_http::Sessions as McpSessions;
pub use problem::{Problem, ProblemType};
pub use system::ClusterStatusView;

use crate::agents::{AgentRegistry, AgentsDirectory};
use crate::llm::Providers;
use crate::messaging::MessageService;
use crate::observability::Metrics;
use crate::runtime::AgentRuntime;
use crate::state::{CaxtonState, Ledger};

/// What the handlers share.
pub struct ApiContext {
    pub registry: AgentRegistry,
    pub runtime: AgentRuntime,
    pub messages: Arc<MessageService>,
    pub providers: Providers,
    pub metrics: Arc<Metrics>,
    /// The replicated state: writes, reads, committed changes.
    pub ledger: Ledger,
    /// The raw cluster, for the admin and status routes only.
    pub cluster: Arc<Cluster<CaxtonState>>,
    pub placement: crate::control::Placement,
    pub memory: Arc<dyn crate::memory::MemoryBackend>,
    pub mcp: Arc<crate::mcp::McpRegistry>,
    pub mcp_sessions: mcp_http::Sessions,
    /// Cluster events for `GET /v1/events`.
    pub events: Arc<crate::events::EventFeed>,
    pub directory: Option<AgentsDirectory>,
    pub agents_dir: Option<PathBuf>,
    /// Cancelled when the node starts shutting down (readiness drops first).
    pub shutdown: CancellationToken,
    /// Authentication, scopes and limits, applied to every route.
    pub gate: Arc<gate::Gate>,
    /// Re-reads this node's config file (`POST /v1/cluster/reload`).
    pub reloader: Arc<crate::reload::Reloader>,
    /// Whether the API speaks HTTPS (the URLs A2A cards advertise).
    pub https: bool,
}

pub type Ctx = Arc<ApiContext>;

#[derive(OpenApi)]
#[openapi(
    info(title = "Caxton", description = "Clustered multi-agent orchestration server"),
    tags((name = "keys"), (name = "agents"), (name = "memory"), (name = "messages"), (name = "topics"), (name = "protocols"), (name = "openai"), (name = "a2a"), (name = "tools"), (name = "cluster"), (name = "system"))
)]
struct ApiDoc;

fn documented_routes() -> OpenApiRouter<Ctx> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(keys::create, keys::list))
        .routes(routes!(keys::get, keys::revoke))
        .routes(routes!(keys::whoami))
        .routes(routes!(agents::deploy, agents::list))
        .routes(routes!(agents::get, agents::update, agents::remove))
        .routes(routes!(agents::agents_dir))
        .routes(routes!(agents::check))
        .routes(routes!(rollouts::revisions))
        .routes(routes!(rollouts::revision))
        .routes(routes!(rollouts::rollback))
        .routes(routes!(rollouts::status))
        .routes(routes!(rollouts::control))
        .routes(routes!(system::health))
        .routes(routes!(system::ready))
        .routes(routes!(system::cluster_status))
        .routes(routes!(system::snapshot))
        .routes(routes!(system::digest))
        .routes(routes!(system::metrics))
        .routes(routes!(cluster::members))
        .routes(routes!(cluster::placement))
        .routes(routes!(cluster::leave))
        .routes(routes!(cluster::remove))
        .routes(routes!(cluster::transfer_leader))
        .routes(routes!(cluster::rebalance))
        .routes(routes!(cluster::backup))
        .routes(routes!(cluster::reload))
        .routes(routes!(cluster::events))
        .routes(routes!(messages::send))
        .routes(routes!(messages::get))
        .routes(routes!(messages::stream))
        .routes(routes!(messages::conversation))
        .routes(routes!(messages::conversation_stream))
        .routes(routes!(messages::contract_net))
        .routes(routes!(messages::conversations))
        .routes(routes!(topics::publish))
        .routes(routes!(topics::list))
        .routes(routes!(topics::stream))
        .routes(routes!(topics::subscriptions, topics::subscribe))
        .routes(routes!(topics::unsubscribe))
        .routes(routes!(bargains::start_auction, bargains::auctions))
        .routes(routes!(bargains::auction))
        .routes(routes!(bargains::start_negotiation))
        .routes(routes!(bargains::negotiation))
        .routes(routes!(openai_compat::chat_completions))
        .routes(routes!(openai_compat::models))
        .routes(routes!(openai_compat::embeddings))
        .routes(routes!(a2a::cards::router_card))
        .routes(routes!(a2a::cards::agent_card))
        .routes(routes!(a2a::jsonrpc::router_rpc))
        .routes(routes!(a2a::jsonrpc::agent_rpc))
        .routes(routes!(a2a::rest::router_message))
        .routes(routes!(a2a::rest::agent_message))
        .routes(routes!(a2a::rest::router_tasks))
        .routes(routes!(a2a::rest::agent_tasks))
        .routes(routes!(a2a::rest::router_task, a2a::rest::router_task_action))
        .routes(routes!(a2a::rest::agent_task, a2a::rest::agent_task_action))
        .routes(routes!(mcp::deploy, mcp::list))
        .routes(routes!(mcp::remove))
        .routes(routes!(mcp::call))
        .routes(routes!(mcp_http::post, mcp_http::delete))
        .routes(routes!(memory::create, memory::list))
        .routes(routes!(memory::get, memory::delete))
        .routes(routes!(memory::neighbours))
        .routes(routes!(memory::relate))
        .routes(routes!(memory::search))
        .routes(routes!(memory::export))
        .routes(routes!(memory::import))
}

/// The metrics listener (`server.metrics_listen`): `/metrics` only, without
/// keys; bind it where only Prometheus reaches it (loopback by default).
pub fn metrics_router(ctx: Ctx) -> Router {
    Router::new().route("/metrics", axum::routing::get(system::open_metrics)).with_state(ctx)
}

/// Times each request by its route template (`/v1/agents/{name}`, never the
/// concrete path, so the series stay bounded), method and status.
async fn observe_http(
    axum::extract::State(metrics): axum::extract::State<Arc<Metrics>>,
    req: axum::extract::Request,
    next: middleware::Next,
) -> axum::response::Response {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().clone();
    let span = tracing::Span::current();
    if crate::observability::traces::exporting() {
        span.record("otel.name", format!("{method} {route}"));
    }
    let started = std::time::Instant::now();
    // Sampled out (the caller's flags or our sampler): the request's own
    // span stays, nothing below it is built for the trace layer. Asked only
    // now: it starts the span, whose name cannot change after that.
    let response = match crate::observability::traces::unsampled_ids(&span) {
        Some((trace, id)) => crate::observability::traces::unsampled(trace, id, next.run(req)).await,
        None => next.run(req).await,
    };
    let status = response.status();
    metrics
        .http_duration
        .with_label_values(&[route.as_str(), method.as_str(), status.as_str()])
        .observe(started.elapsed().as_secs_f64());
    response
}

/// Documents a `GET` route served outside the annotated handlers.
fn document_get(api: &mut utoipa::openapi::OpenApi, path: &str, summary: &str, answer: &str) {
    api.paths.paths.insert(
        path.into(),
        utoipa::openapi::path::PathItem::new(
            utoipa::openapi::HttpMethod::Get,
            utoipa::openapi::path::OperationBuilder::new()
                .summary(Some(summary))
                .tag("system")
                .response("200", utoipa::openapi::Response::new(answer)),
        ),
    );
}

/// The OpenAPI document, generated from the handlers' annotations.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, mut api) = documented_routes().split_for_parts();
    document_get(&mut api, "/v1/openapi.json", "This document", "OpenAPI 3 document");
    for path in ["/ui", "/ui/{file}"] {
        document_get(&mut api, path, "The web console (docs/console.md)", "The console's page, scripts and styles");
    }
    catalogue::document(&mut api);
    api
}

pub fn router(ctx: Ctx, max_body_bytes: usize) -> Router {
    let (router, _) = documented_routes().split_for_parts();
    let spec = openapi();
    let gate = ctx.gate.clone();
    let metrics = ctx.metrics.clone();
    router
        .route("/v1/openapi.json", axum::routing::get(move || async move { axum::Json(spec) }))
        .route("/ui", axum::routing::get(console::index))
        .route("/ui/{file}", axum::routing::get(console::file))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Innermost, so it sees the matched route; its refusals are problems already.
        .layer(middleware::from_fn_with_state(gate, gate::guard))
        .layer(middleware::from_fn(move |req, next| problem_for_bare_errors(max_body_bytes, req, next)))
        // Sees every answer, the gate's refusals included, by route template.
        .layer(middleware::from_fn_with_state(metrics, observe_http))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(middleware::from_fn(request_id::layer))
        .with_state(ctx)
}

/// A `text/event-stream` response of `events`, kept alive while idle.
fn event_stream(
    events: impl futures::Stream<Item = Result<axum::response::sse::Event, std::convert::Infallible>> + Send + 'static,
) -> Response {
    axum::response::sse::Sse::new(events).keep_alive(axum::response::sse::KeepAlive::default()).into_response()
}

async fn not_found(req: Request) -> Problem {
    Problem::of(ProblemType::RouteNotFound, format!("no route for {} {}", req.method(), req.uri().path()))
}

async fn method_not_allowed(req: Request) -> Problem {
    Problem::of(ProblemType::MethodNotAllowed, format!("{} is not allowed on {}", req.method(), req.uri().path()))
}

/// Extractor rejections (oversized body, bad query string) come out of axum
/// as plain text; every error we send is problem+json.
async fn problem_for_bare_errors(max_body_bytes: usize, req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    // Already structured (problem+json, or OpenAI-style JSON errors on the
    // compatibility routes): leave it alone.
    let is_problem = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/problem+json") || v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_problem {
        return resp;
    }
    let body = axum::body::to_bytes(resp.into_body(), 64 * 1024).await.unwrap_or_default();
    let mut detail = String::from_utf8_lossy(&body).into_owned();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        detail = format!("{detail}: bodies are at most {max_body_bytes} bytes (server.max_body_bytes)");
    }
    let kind = match status {
        StatusCode::BAD_REQUEST => ProblemType::BadRequest,
        StatusCode::NOT_FOUND => ProblemType::RouteNotFound,
        StatusCode::PAYLOAD_TOO_LARGE => ProblemType::PayloadTooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ProblemType::UnsupportedMediaType,
        StatusCode::UNPROCESSABLE_ENTITY => ProblemType::Unprocessable,
        StatusCode::REQUEST_TIMEOUT => ProblemType::RequestTimeout,
        s if s.is_server_error() => ProblemType::Internal,
        _ => ProblemType::ClientError,
    };
    let mut problem = Problem::of(kind, detail);
    problem.status = status.as_u16();
    problem.into_response()
}
