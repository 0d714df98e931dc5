//! Node-to-node RPC: HTTP/1.1 on the cluster port, bodies in the versioned
//! binary codec. Peers prove who they are with mutual TLS (certificates from
//! the cluster CA naming their node ids) or, on loopback development
//! clusters only, a shared secret; every request also carries the sender's
//! node id, cluster id and the caller's trace id.

mod client;
pub(crate) mod join;
mod raft_network;
mod server;
pub mod tls;

use std::sync::Arc;

pub use client::TRACE_ID;
pub(crate) use client::{Peer, RpcClient, RpcError};
pub(crate) use raft_network::Network;
pub(crate) use server::{serve, AdminRequest, RpcState};

pub(crate) const SECRET_HEADER: &str = "x-caxton-cluster-secret";
pub(crate) const TRACE_HEADER: &str = "x-caxton-trace-id";
/// The sender's cluster id (absent while the sender is pristine).
pub(crate) const CLUSTER_HEADER: &str = "x-caxton-cluster-id";
/// The incarnation the sender's membership records for the receiver.
pub(crate) const INCARNATION_HEADER: &str = "x-caxton-target-incarnation";
/// The sender's node id; under mutual TLS it must be the one its
/// certificate names.
pub(crate) const NODE_HEADER: &str = "x-caxton-node-id";
/// Every RPC body's type. A web page cannot send it (nor the custom
/// headers above) without a CORS preflight, which this port never grants.
pub(crate) const RPC_CONTENT_TYPE: &str = "application/x-caxton-rpc";

pub(crate) mod paths {
    pub const APPEND: &str = "/raft/append";
    pub const VOTE: &str = "/raft/vote";
    pub const SNAPSHOT: &str = "/raft/snapshot";
    pub const WRITE: &str = "/cluster/write";
    pub const ADMIN: &str = "/cluster/admin";
    pub const JOIN: &str = "/cluster/join";
    pub const READ_INDEX: &str = "/cluster/read-index";
}

/// How the nodes of a cluster authenticate each other.
#[derive(Clone, Debug)]
pub enum PeerAuth {
    /// Loopback development only: a shared secret in a header, or nothing.
    Secret(Option<String>),
    /// Mutual TLS with certificates from the cluster CA.
    Tls(Arc<tls::NodeTls>),
}
