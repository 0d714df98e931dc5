//! The calling side of node-to-node RPC: one pooled HTTP client that
//! authenticates as this node (its certificate, or the dev secret) and stamps
//! every request with its node id, cluster id and the trace id.

use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{PeerAuth, CLUSTER_HEADER, INCARNATION_HEADER, NODE_HEADER, RPC_CONTENT_TYPE, SECRET_HEADER, TRACE_HEADER};
use crate::codec;
use crate::identity::ClusterIdentity;
use crate::types::NodeId;

#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error("peer {addr} unreachable: {source}")]
    Unreachable { addr: String, source: reqwest::Error },
    #[error("peer {addr} refused the request: HTTP {status}: {body}")]
    Refused { addr: String, status: u16, body: String },
    #[error("peer {addr} sent an undecodable answer: {source}")]
    Decode { addr: String, source: codec::CodecError },
    #[error("peer {addr} answered with a certificate for node {found:?}, but node {expected} was called")]
    WrongPeer { addr: String, expected: NodeId, found: Option<NodeId> },
}

impl RpcError {
    /// Whether the request may have reached the peer: anything but a
    /// connection that was never made. A call that may have been delivered
    /// is not safe to send again unless it is idempotent.
    pub fn maybe_delivered(&self) -> bool {
        !matches!(self, Self::Unreachable { source, .. } if source.is_connect())
    }
}

/// Whom a call goes to: an address, and when the caller knows it, the member
/// expected to answer there (its node id and data directory incarnation).
#[derive(Debug, Clone, Copy)]
pub struct Peer<'a> {
    pub addr: &'a str,
    pub node: Option<NodeId>,
    pub incarnation: Option<&'a str>,
}

impl<'a> Peer<'a> {
    /// Any node at `addr` (a seed, or the leader named by a redirect).
    pub fn at(addr: &'a str) -> Self {
        Self { addr, node: None, incarnation: None }
    }
}

/// One shared HTTP client for all peers (connection pooling per host).
#[derive(Clone)]
pub struct RpcClient {
    http: reqwest::Client,
    scheme: &'static str,
    /// Sent only without TLS (under TLS the certificate authenticates).
    secret: Option<String>,
    tls: bool,
    node_id: NodeId,
    identity: Arc<ClusterIdentity>,
}

impl RpcClient {
    /// `local` binds outbound connections to the node's own address, so a
    /// node that listens on one address of a multi-homed host also talks
    /// from it (and firewall rules by address apply to both directions).
    pub fn new(
        auth: &PeerAuth,
        node_id: NodeId,
        identity: Arc<ClusterIdentity>,
        local: Option<std::net::IpAddr>,
    ) -> Self {
        let builder = reqwest::Client::builder()
            .local_address(local)
            .connect_timeout(Duration::from_millis(500))
            .pool_idle_timeout(Duration::from_secs(30))
            .tcp_nodelay(true);
        let (builder, scheme, secret, tls) = match auth {
            PeerAuth::Secret(secret) => {
                let first = secret.as_deref().and_then(|s| crate::secret::secret_lines(s).next()).map(str::to_owned);
                (builder, "http", first, false)
            }
            PeerAuth::Tls(tls) => {
                (builder.use_preconfigured_tls(tls.client.clone()).tls_info(true).https_only(true), "https", None, true)
            }
        };
        let http = builder.build().expect("building an HTTP client with static settings");
        Self { http, scheme, secret, tls, node_id, identity }
    }

    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        addr: &str,
        path: &str,
        request: &Req,
        timeout: Duration,
    ) -> Result<Resp, RpcError> {
        self.call_member(Peer::at(addr), path, request, timeout).await
    }

    /// A call to a known member: under TLS, the answer must come from the
    /// node id the caller expects, and the member's recorded incarnation must
    /// still be the one answering (a wiped node must not take part under its
    /// old id).
    pub async fn call_member<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        peer: Peer<'_>,
        path: &str,
        request: &Req,
        timeout: Duration,
    ) -> Result<Resp, RpcError> {
        let addr = peer.addr;
        let mut builder = self
            .http
            .post(format!("{}://{addr}{path}", self.scheme))
            .timeout(timeout)
            .header(NODE_HEADER, self.node_id.to_string())
            .header(reqwest::header::CONTENT_TYPE, RPC_CONTENT_TYPE)
            .body(codec::encode(request));
        if let Some(incarnation) = peer.incarnation.filter(|i| !i.is_empty()) {
            builder = builder.header(INCARNATION_HEADER, incarnation);
        }
        if let Some(secret) = &self.secret {
            builder = builder.header(SECRET_HEADER, secret);
        }
        if let Some(id) = self.identity.get() {
            builder = builder.header(CLUSTER_HEADER, id);
        }
        if let Some(trace) = current_trace_id() {
            builder = builder.header(TRACE_HEADER, trace);
        }
        if let Some(parent) = crate::trace_context::traceparent() {
            builder = builder.header(crate::trace_context::TRACEPARENT, parent);
        }
        let response = builder.send().await.map_err(|source| RpcError::Unreachable { addr: addr.into(), source })?;
        if let (true, Some(expected)) = (self.tls, peer.node) {
            let found = response
                .extensions()
                .get::<reqwest::tls::TlsInfo>()
                .and_then(|info| info.peer_certificate())
                .and_then(crate::pki::node_id_of);
            if found != Some(expected) {
                return Err(RpcError::WrongPeer { addr: addr.into(), expected, found });
            }
        }
        let status = response.status();
        let body = response.bytes().await.map_err(|source| RpcError::Unreachable { addr: addr.into(), source })?;
        if !status.is_success() {
            return Err(RpcError::Refused {
                addr: addr.into(),
                status: status.as_u16(),
                body: String::from_utf8_lossy(&body).into_owned(),
            });
        }
        codec::decode(&body).map_err(|source| RpcError::Decode { addr: addr.into(), source })
    }
}

tokio::task_local! {
    /// The trace id of the request being served, propagated on every hop.
    pub static TRACE_ID: String;
}

fn current_trace_id() -> Option<String> {
    TRACE_ID.try_with(|t| t.clone()).ok()
}
