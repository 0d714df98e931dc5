//! The calling side of node-to-node RPC: one pooled HTTP client that stamps
//! every request with the secret, this node's cluster id and the trace id.

use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{CLUSTER_HEADER, INCARNATION_HEADER, SECRET_HEADER, TRACE_HEADER};
use crate::codec;
use crate::identity::ClusterIdentity;

#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error("peer {addr} unreachable: {source}")]
    Unreachable { addr: String, source: reqwest::Error },
    #[error("peer {addr} refused the request: HTTP {status}: {body}")]
    Refused { addr: String, status: u16, body: String },
    #[error("peer {addr} sent an undecodable answer: {source}")]
    Decode { addr: String, source: codec::CodecError },
}

/// One shared HTTP client for all peers (connection pooling per host).
#[derive(Clone)]
pub struct RpcClient {
    http: reqwest::Client,
    secret: Option<String>,
    identity: Arc<ClusterIdentity>,
}

impl RpcClient {
    /// `local` binds outbound connections to the node's own address, so a
    /// node that listens on one address of a multi-homed host also talks
    /// from it (and firewall rules by address apply to both directions).
    pub fn new(secret: Option<String>, identity: Arc<ClusterIdentity>, local: Option<std::net::IpAddr>) -> Self {
        let http = reqwest::Client::builder()
            .local_address(local)
            .connect_timeout(Duration::from_millis(500))
            .pool_idle_timeout(Duration::from_secs(30))
            .tcp_nodelay(true)
            .build()
            .expect("building an HTTP client with static settings");
        Self { http, secret, identity }
    }

    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        addr: &str,
        path: &str,
        request: &Req,
        timeout: Duration,
    ) -> Result<Resp, RpcError> {
        self.call_member(addr, None, path, request, timeout).await
    }

    /// A call to a member whose recorded incarnation must still be the one
    /// answering (Raft RPCs: a wiped node must not take part under its old id).
    pub async fn call_member<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        addr: &str,
        incarnation: Option<&str>,
        path: &str,
        request: &Req,
        timeout: Duration,
    ) -> Result<Resp, RpcError> {
        let mut builder = self.http.post(format!("http://{addr}{path}")).timeout(timeout).body(codec::encode(request));
        if let Some(incarnation) = incarnation.filter(|i| !i.is_empty()) {
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
        let response = builder.send().await.map_err(|source| RpcError::Unreachable { addr: addr.into(), source })?;
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
