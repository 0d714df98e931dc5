//! The receiving side of node-to-node RPC: every connection is
//! authenticated (a client certificate from the cluster CA, or the dev
//! secret) and every request authorised (node id, cluster id, incarnation)
//! from its headers before its body is read; bodies are capped per RPC kind;
//! a Raft message must name its sender as the node it comes from; each runs
//! in a span carrying the caller's trace id.

// Handlers short-circuit with an axum `Response`, the type they answer with.
#![allow(clippy::result_large_err)]

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Extension;
use axum::Router;
use serde::de::DeserializeOwned;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};

use super::join::JoinRequest;
use super::{
    paths, PeerAuth, CLUSTER_HEADER, INCARNATION_HEADER, NODE_HEADER, RPC_CONTENT_TYPE, SECRET_HEADER, TRACE_HEADER,
};
use crate::codec;
use crate::consensus::raft_ext::RaftExt;
use crate::identity::IdentityError;
use crate::limits;
use crate::local_member::LocalMember;
use crate::pki::node_id_of;
use crate::secret::secret_accepted;
use crate::types::{NodeId, Payload, Raft, TypeConfig};

pub(crate) struct RpcState {
    pub raft: Raft,
    pub auth: PeerAuth,
    pub local: Arc<LocalMember>,
}

/// The node id the connection's client certificate names (`None` without
/// TLS), attached to every request of that connection.
#[derive(Debug, Clone, Copy)]
struct PeerCert(Option<NodeId>);

/// The authenticated sender of a request: the certificate's node id under
/// TLS, the claimed one on a dev cluster.
#[derive(Debug, Clone, Copy)]
struct Sender(Option<NodeId>);

/// Body limits per RPC kind, checked only after the caller is authorised
/// (the authorisation layer answers before any body byte is read).
mod body_limits {
    use super::limits;
    /// A vote, a join or a membership request: a few hundred bytes.
    pub const SMALL: usize = 64 << 10;
    /// A batch of entries is cut at `APPEND_BATCH` bytes, but a single
    /// entry up to `MAX_ENTRY` travels alone.
    pub const APPEND: usize = max(limits::APPEND_BATCH, limits::MAX_ENTRY) + (1 << 20);
    pub const WRITE: usize = limits::MAX_ENTRY + (64 << 10);
    pub const SNAPSHOT: usize = limits::SNAPSHOT_CHUNK + (64 << 10);

    const fn max(a: usize, b: usize) -> usize {
        if a > b {
            a
        } else {
            b
        }
    }
}

/// How long a peer may take to send its request headers (also how long an
/// idle connection is kept between requests, and how long a TLS handshake
/// may take).
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Cluster RPC connections open at once (peers keep a small pool each).
const MAX_CONNECTIONS: usize = 1024;

/// How long a peer may take to send a body, per RPC kind.
mod body_timeouts {
    use std::time::Duration;
    pub const SMALL: Duration = Duration::from_secs(5);
    pub const APPEND: Duration = Duration::from_secs(60);
    pub const WRITE: Duration = Duration::from_secs(60);
    pub const SNAPSHOT: Duration = Duration::from_secs(60);
}

/// Serves cluster RPC on `listener` until `stop`, letting requests in
/// flight finish. Own accept loop (not `axum::serve`) for the TLS handshake
/// and the header deadline: a peer that never finishes either is cut off.
pub(crate) async fn serve(listener: TcpListener, state: RpcState, stop: CancellationToken) {
    let acceptor = match &state.auth {
        PeerAuth::Tls(tls) => Some(tokio_rustls::TlsAcceptor::from(tls.server.clone())),
        PeerAuth::Secret(_) => None,
    };
    let router = router(Arc::new(state));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    // Peers need a few connections each; strangers cannot hold thousands.
    let connections = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, remote) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a cluster RPC connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(open) = connections.clone().try_acquire_owned() else {
            tracing::debug!(%remote, "cluster RPC connection closed: {MAX_CONNECTIONS} already open");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (router, watcher, acceptor) = (router.clone(), graceful.watcher(), acceptor.clone());
        tokio::spawn(async move {
            let _open = open;
            let Some(acceptor) = acceptor else {
                return serve_connection(stream, router, PeerCert(None), watcher).await;
            };
            let stream = match tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    tracing::warn!(%remote, error = %e, "refused a cluster RPC connection: TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::warn!(%remote, "refused a cluster RPC connection: no TLS handshake within {HEADER_TIMEOUT:?}");
                    return;
                }
            };
            let node = stream.get_ref().1.peer_certificates().and_then(|c| c.first()).and_then(|c| node_id_of(c));
            serve_connection(stream, router, PeerCert(node), watcher).await
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

async fn serve_connection<I>(io: I, router: Router, peer: PeerCert, watcher: hyper_util::server::graceful::Watcher)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use tower::ServiceExt;
    let service = router.map_request(move |mut req: axum::http::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(peer);
        req
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT);
    let service = hyper_util::service::TowerToHyperService::new(service);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(error = %e, "cluster RPC connection ended with an error");
    }
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
    use body_limits as size;
    use body_timeouts as time;
    Router::new()
        .route(paths::APPEND, limited(post(append), size::APPEND, time::APPEND))
        .route(paths::VOTE, limited(post(vote), size::SMALL, time::SMALL))
        .route(paths::SNAPSHOT, limited(post(snapshot), size::SNAPSHOT, time::SNAPSHOT))
        .route(paths::WRITE, limited(post(write), size::WRITE, time::WRITE))
        .route(paths::ADMIN, limited(post(admin), size::SMALL, time::SMALL))
        .route(paths::JOIN, limited(post(join), size::SMALL, time::SMALL))
        .route(paths::READ_INDEX, limited(post(read_index), size::SMALL, time::SMALL))
        // Runs before the handlers' extractors: a stranger is answered from
        // the headers alone, and its body is never read.
        .layer(axum::middleware::from_fn_with_state(state.clone(), authorized))
        .with_state(state)
}

async fn authorized(
    State(s): State<Arc<RpcState>>,
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let cert = req.extensions().get::<PeerCert>().copied().unwrap_or(PeerCert(None));
    match authorize(&s, req.headers(), cert) {
        Ok(sender) => {
            req.extensions_mut().insert(sender);
            next.run(req).await
        }
        Err(refused) => refused,
    }
}

fn refuse(status: StatusCode, why: String) -> Response {
    tracing::warn!(%status, reason = %why, "refused a peer RPC");
    (status, why).into_response()
}

/// Who is calling: under TLS the node its certificate names, which must
/// also be the node it claims to be; on a dev cluster, whoever holds the
/// secret. Then the request must come from this node's cluster; a pristine
/// node learns its cluster here.
fn authorize(state: &RpcState, headers: &HeaderMap, cert: PeerCert) -> Result<Sender, Response> {
    let claimed = headers.get(NODE_HEADER).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<NodeId>().ok());
    if matches!(state.auth, PeerAuth::Secret(_)) {
        not_from_a_browser(headers, claimed, &state.local.advertise.rpc)?;
    }
    let sender = match &state.auth {
        PeerAuth::Tls(_) => {
            let Some(certified) = cert.0 else {
                return Err(refuse(StatusCode::FORBIDDEN, "the client certificate names no node id".into()));
            };
            if claimed != Some(certified) {
                let claimed = claimed.map_or_else(|| "no node".to_owned(), |c| format!("node {c}"));
                return Err(refuse(
                    StatusCode::FORBIDDEN,
                    format!("the peer's certificate is for node {certified}, but it claims to be {claimed}"),
                ));
            }
            Some(certified)
        }
        PeerAuth::Secret(Some(expected)) => {
            let given = headers.get(SECRET_HEADER).map(|v| v.as_bytes()).unwrap_or_default();
            if !secret_accepted(expected, given) {
                return Err((StatusCode::UNAUTHORIZED, "missing or wrong cluster secret").into_response());
            }
            claimed
        }
        PeerAuth::Secret(None) => claimed,
    };
    let cluster = headers.get(CLUSTER_HEADER).and_then(|v| v.to_str().ok());
    let expected = headers.get(INCARNATION_HEADER).and_then(|v| v.to_str().ok());
    state.local.identity.check(cluster, expected).map_err(|e| match e {
        IdentityError::Mismatch { .. } | IdentityError::Replaced { .. } => refuse(StatusCode::CONFLICT, e.to_string()),
        IdentityError::Store(_) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    })?;
    Ok(Sender(sender))
}

/// A loopback development port (no TLS) is reachable from the web pages a
/// developer opens: a page's request carries an `Origin`, cannot carry this
/// transport's content type or node header without a preflight (which this
/// port never answers), and a page that rebound its own name to 127.0.0.1
/// still sends that name as `Host`. Nodes send none of these; the one name
/// besides loopback ones they may send as `Host` is the address this node
/// advertises (a host name the operator chose, not a page's).
fn not_from_a_browser(headers: &HeaderMap, claimed: Option<NodeId>, advertised: &str) -> Result<(), Response> {
    if let Some(origin) = headers.get(axum::http::header::ORIGIN) {
        let origin = String::from_utf8_lossy(origin.as_bytes()).into_owned();
        return Err(refuse(
            StatusCode::FORBIDDEN,
            format!("a request from the web page {origin:?} on the cluster port"),
        ));
    }
    let host = headers.get(axum::http::header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    if !is_loopback_host(host) && !host.eq_ignore_ascii_case(advertised) {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            format!("Host {host:?} is not a loopback address; this cluster port serves loopback peers only"),
        ));
    }
    let content_type = headers.get(axum::http::header::CONTENT_TYPE).map(|v| v.as_bytes());
    if content_type != Some(RPC_CONTENT_TYPE.as_bytes()) {
        return Err(refuse(StatusCode::UNSUPPORTED_MEDIA_TYPE, format!("cluster RPC bodies are {RPC_CONTENT_TYPE}")));
    }
    if claimed.is_none() {
        return Err(refuse(StatusCode::BAD_REQUEST, format!("no {NODE_HEADER} header: not a cluster node")));
    }
    Ok(())
}

/// `Host` is a loopback IP literal or `localhost`, with or without a port.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A Raft message names the node it comes from (the candidate, the
/// leader); it must be the node that sent it.
fn check_sender(sender: Sender, rpc: &str, named: NodeId) -> Result<(), Response> {
    match sender.0 {
        Some(sender) if sender != named => {
            Err(refuse(StatusCode::FORBIDDEN, format!("a {rpc} from node {sender} claims to come from node {named}")))
        }
        _ => Ok(()),
    }
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

/// Decodes, checks the node the request names against its sender, runs
/// `f` inside a span carrying the caller's trace id, and encodes the
/// answer: the shape every Raft RPC shares.
async fn serve_rpc<Req, Resp, F, Fut>(
    s: &RpcState,
    headers: &HeaderMap,
    sender: Sender,
    body: &[u8],
    rpc: &'static str,
    named: impl FnOnce(&Req) -> NodeId,
    f: F,
) -> Response
where
    Req: DeserializeOwned,
    Resp: serde::Serialize,
    F: FnOnce(Raft, Req) -> Fut,
    Fut: std::future::Future<Output = Resp>,
{
    let req = match decode_body(body) {
        Ok(req) => req,
        Err(r) => return r,
    };
    if let Err(r) = check_sender(sender, rpc, named(&req)) {
        return r;
    }
    encoded(&f(s.raft.clone(), req).instrument(span_for(headers, rpc)).await)
}

type Rpc = (State<Arc<RpcState>>, Extension<Sender>, HeaderMap);

async fn append((State(s), Extension(sender), headers): Rpc, body: Bytes) -> Response {
    let leader = |r: &AppendEntriesRequest<TypeConfig>| r.vote.leader_id().node_id;
    serve_rpc(&s, &headers, sender, &body, "append", leader, |raft, req| async move { raft.append_entries(req).await })
        .await
}

async fn vote((State(s), Extension(sender), headers): Rpc, body: Bytes) -> Response {
    let candidate = |r: &VoteRequest<NodeId>| r.vote.leader_id().node_id;
    serve_rpc(&s, &headers, sender, &body, "vote", candidate, |raft, req| async move { raft.vote(req).await }).await
}

async fn snapshot((State(s), Extension(sender), headers): Rpc, body: Bytes) -> Response {
    let leader = |r: &InstallSnapshotRequest<TypeConfig>| r.vote.leader_id().node_id;
    serve_rpc(
        &s,
        &headers,
        sender,
        &body,
        "snapshot",
        leader,
        |raft, req| async move { raft.install_snapshot(req).await },
    )
    .await
}

/// A write forwarded by a follower. Never forwarded again from here: if this
/// node is not the leader either, the caller learns who is and retries.
async fn write((State(s), _, headers): Rpc, body: Bytes) -> Response {
    let payload: Payload = match decode_body(&body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let trace = headers.get(TRACE_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("-").to_owned();
    // Part of the caller's trace: the write continues on the leader.
    let span = tracing::info_span!("forwarded write", otel.kind = "server", trace_id = %trace);
    if let Some(parent) = headers.get(crate::trace_context::TRACEPARENT).and_then(|v| v.to_str().ok()) {
        crate::trace_context::continue_traceparent(&span, parent);
    }
    let result = super::client::TRACE_ID
        .scope(trace, s.raft.client_write(payload).instrument(span))
        .await
        .map(|r| (r.data, r.log_id.index));
    encoded(&result)
}

/// A follower's ReadIndex: this leader confirms its leadership with a
/// quorum and answers the index a linearizable read must wait for.
async fn read_index((State(s), _, _): Rpc, _body: Bytes) -> Response {
    use crate::consensus::raft_ext::RaftExt;
    let answer: Result<u64, String> = s.raft.read_index().await.map_err(|e| e.to_string());
    encoded(&answer)
}

/// Membership operations a node asks of a peer (usually the leader).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) enum AdminRequest {
    /// Start an election here (leadership transfer to this node).
    Elect,
    /// Remove a node from the membership (leader only).
    RemoveNode(u64),
}

async fn admin((State(s), _, headers): Rpc, body: Bytes) -> Response {
    let request: AdminRequest = match decode_body(&body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let raft = s.raft.clone();
    let result: Result<(), String> = async move {
        match request {
            AdminRequest::Elect => raft.trigger().elect().await.map_err(|e| e.to_string()),
            AdminRequest::RemoveNode(id) => raft.remove_member(id).await.map_err(|e| e.to_string()),
        }
    }
    .instrument(span_for(&headers, "admin"))
    .await;
    encoded(&result)
}

/// A node asking to be added (see `join`): only for itself.
async fn join((State(s), Extension(sender), headers): Rpc, body: Bytes) -> Response {
    let request: JoinRequest = match decode_body(&body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    if let Err(r) = check_sender(sender, "join", request.node_id) {
        return r;
    }
    encoded(&super::join::admit(&s.raft, &s.local, request).instrument(span_for(&headers, "join")).await)
}
