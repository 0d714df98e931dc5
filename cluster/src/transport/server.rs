//! The receiving side of node-to-node RPC: every request is authorised
//! (secret, cluster id, incarnation) from its headers before its body is
//! read, bodies are capped per RPC kind, and each runs in a span carrying the
//! caller's trace id.

// Handlers short-circuit with an axum `Response`, the type they answer with.
#![allow(clippy::result_large_err)]

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde::de::DeserializeOwned;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{paths, secrets_match, CLUSTER_HEADER, INCARNATION_HEADER, SECRET_HEADER, TRACE_HEADER};
use crate::codec;
use crate::consensus::raft_ext::RaftExt;
use crate::identity::{ClusterIdentity, IdentityError};
use crate::types::{Payload, Raft};

pub(crate) struct RpcState {
    pub raft: Raft,
    pub secret: Option<String>,
    pub identity: Arc<ClusterIdentity>,
}

/// Body limits per RPC kind, checked only after the caller is authorised
/// (the authorisation layer answers before any body byte is read).
mod limits {
    /// A vote, or a membership request: a few hundred bytes.
    pub const SMALL: usize = 64 << 10;
    /// A batch of log entries.
    pub const APPEND: usize = 256 << 20;
    /// A forwarded write: one command (a tool module of 16 MiB, base64).
    pub const WRITE: usize = 64 << 20;
    /// A whole snapshot travels in one body.
    pub const SNAPSHOT: usize = 1 << 30;
}

/// How long a peer may take to send its request headers (also how long an
/// idle connection is kept between requests).
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a peer may take to send a body, per RPC kind.
mod body_timeouts {
    use std::time::Duration;
    pub const SMALL: Duration = Duration::from_secs(5);
    pub const APPEND: Duration = Duration::from_secs(60);
    pub const WRITE: Duration = Duration::from_secs(60);
    pub const SNAPSHOT: Duration = Duration::from_secs(600);
}

/// Serves cluster RPC on `listener` until `stop`, letting requests in
/// flight finish. Own accept loop (not `axum::serve`) for the header
/// deadline: a peer that never finishes its headers is cut off.
pub(crate) async fn serve(listener: TcpListener, state: RpcState, stop: CancellationToken) {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    let router = router(Arc::new(state));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let stream = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a cluster RPC connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let (router, watcher) = (router.clone(), graceful.watcher());
        tokio::spawn(async move {
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            builder.http1().timer(TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT);
            let service = hyper_util::service::TowerToHyperService::new(router);
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(error = %e, "cluster RPC connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

fn router(state: Arc<RpcState>) -> Router {
    // A declared Content-Length over the limit is refused (413) before any
    // body byte is read; a streamed body is cut at the limit.
    // A body trickled slower than its kind allows is cut off.
    let limited = |route: axum::routing::MethodRouter<Arc<RpcState>>, limit: usize, time: Duration| {
        route
            .layer::<_, std::convert::Infallible>(tower_http::limit::RequestBodyLimitLayer::new(limit))
            .layer::<_, std::convert::Infallible>(tower_http::timeout::RequestBodyTimeoutLayer::new(time))
            .layer(DefaultBodyLimit::max(limit))
    };
    Router::new()
        .route(paths::APPEND, limited(post(append), limits::APPEND, body_timeouts::APPEND))
        .route(paths::VOTE, limited(post(vote), limits::SMALL, body_timeouts::SMALL))
        .route(paths::SNAPSHOT, limited(post(snapshot), limits::SNAPSHOT, body_timeouts::SNAPSHOT))
        .route(paths::WRITE, limited(post(write), limits::WRITE, body_timeouts::WRITE))
        .route(paths::ADMIN, limited(post(admin), limits::SMALL, body_timeouts::SMALL))
        // Runs before the handlers' extractors: a stranger is answered from
        // the headers alone, and its body is never read.
        .layer(axum::middleware::from_fn_with_state(state.clone(), authorized))
        .with_state(state)
}

async fn authorized(
    State(s): State<Arc<RpcState>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match authorize(&s, req.headers()) {
        Ok(()) => next.run(req).await,
        Err(refused) => refused,
    }
}

/// A request must carry the cluster secret (when one is set) and come from
/// this node's cluster; a pristine node learns its cluster here.
fn authorize(state: &RpcState, headers: &HeaderMap) -> Result<(), Response> {
    if let Some(expected) = &state.secret {
        let given = headers.get(SECRET_HEADER).map(|v| v.as_bytes()).unwrap_or_default();
        if !secrets_match(expected.as_bytes(), given) {
            return Err((StatusCode::UNAUTHORIZED, "missing or wrong cluster secret").into_response());
        }
    }
    let claimed = headers.get(CLUSTER_HEADER).and_then(|v| v.to_str().ok());
    let expected = headers.get(INCARNATION_HEADER).and_then(|v| v.to_str().ok());
    state.identity.check(claimed, expected).map_err(|e| {
        let status = match e {
            IdentityError::Mismatch { .. } | IdentityError::Replaced { .. } => {
                tracing::warn!(error = %e, "refused a peer RPC");
                StatusCode::CONFLICT
            }
            IdentityError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (status, e.to_string()).into_response()
    })
}

fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, Response> {
    codec::decode(body).map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()).into_response())
}

fn span_for(headers: &HeaderMap, rpc: &'static str) -> tracing::Span {
    let trace = headers.get(TRACE_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("-").to_owned();
    tracing::debug_span!("rpc", rpc, trace_id = %trace)
}

fn encoded<T: serde::Serialize>(value: &T) -> Response {
    codec::encode(value).into_response()
}

/// Authorises, decodes, runs `f` inside a span carrying the caller's trace
/// id, and encodes the answer: the shape every Raft RPC shares.
async fn serve_rpc<Req, Resp, F, Fut>(
    s: &RpcState,
    headers: &HeaderMap,
    body: &[u8],
    rpc: &'static str,
    f: F,
) -> Response
where
    Req: DeserializeOwned,
    Resp: serde::Serialize,
    F: FnOnce(Raft, Req) -> Fut,
    Fut: std::future::Future<Output = Resp>,
{
    match decode_body(body) {
        Ok(req) => encoded(&f(s.raft.clone(), req).instrument(span_for(headers, rpc)).await),
        Err(r) => r,
    }
}

async fn append(State(s): State<Arc<RpcState>>, headers: HeaderMap, body: Bytes) -> Response {
    serve_rpc(&s, &headers, &body, "append", |raft, req| async move { raft.append_entries(req).await }).await
}

async fn vote(State(s): State<Arc<RpcState>>, headers: HeaderMap, body: Bytes) -> Response {
    serve_rpc(&s, &headers, &body, "vote", |raft, req| async move { raft.vote(req).await }).await
}

async fn snapshot(State(s): State<Arc<RpcState>>, headers: HeaderMap, body: Bytes) -> Response {
    serve_rpc(&s, &headers, &body, "snapshot", |raft, req| async move { raft.install_snapshot(req).await }).await
}

/// A write forwarded by a follower. Never forwarded again from here: if this
/// node is not the leader either, the caller learns who is and retries.
async fn write(State(s): State<Arc<RpcState>>, headers: HeaderMap, body: Bytes) -> Response {
    let payload: Payload = match decode_body(&body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let trace = headers.get(TRACE_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("-").to_owned();
    let result = super::client::TRACE_ID
        .scope(trace, s.raft.client_write(payload).instrument(span_for(&headers, "write")))
        .await
        .map(|r| (r.data, r.log_id.index));
    encoded(&result)
}

/// Membership operations a node asks of a peer (usually the leader).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) enum AdminRequest {
    /// Start an election here (leadership transfer to this node).
    Elect,
    /// Remove a node from the membership (leader only).
    RemoveNode(u64),
}

async fn admin(State(s): State<Arc<RpcState>>, headers: HeaderMap, body: Bytes) -> Response {
    serve_rpc(&s, &headers, &body, "admin", |raft, req: AdminRequest| async move {
        let result: Result<(), String> = match req {
            AdminRequest::Elect => raft.trigger().elect().await.map_err(|e| e.to_string()),
            AdminRequest::RemoveNode(id) => raft.remove_member(id).await.map_err(|e| e.to_string()),
        };
        result
    })
    .await
}
