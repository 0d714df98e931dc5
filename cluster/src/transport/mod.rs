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

/// The secrets in a cluster secret: one per line. The first is the one
/// this node uses (sends, seals gossip with); every one is accepted, so a
/// new secret can be rolled out and an old one retired without a moment
/// when two nodes do not understand each other.
pub(crate) fn secret_lines(secret: &str) -> impl Iterator<Item = &str> {
    secret.lines().map(str::trim).filter(|l| !l.is_empty())
}

/// Whether `given` is any of the secrets in `secret` (see `secret_lines`).
pub(crate) fn secret_accepted(secret: &str, given: &[u8]) -> bool {
    // Every line is compared, so the time taken does not say which matched.
    secret_lines(secret).fold(false, |ok, s| secrets_match(s.as_bytes(), given) | ok)
}

/// Compares secrets without leaking the position of the first difference.
pub(crate) fn secrets_match(expected: &[u8], given: &[u8]) -> bool {
    if expected.len() != given.len() {
        return false;
    }
    expected.iter().zip(given).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// Sizes shared by both ends of the transport.
pub(crate) mod limits {
    /// The largest command the log takes; a bigger write is refused at
    /// proposal (`WriteError::TooLarge`) instead of being replicated.
    pub const MAX_ENTRY: usize = 64 << 20;
    /// AppendEntries batches are cut at this many bytes of entries (and
    /// `max_payload_entries` entries); a single larger entry travels alone.
    pub const APPEND_BATCH: usize = 4 << 20;
    /// Snapshots travel in chunks of this size, each its own request.
    pub const SNAPSHOT_CHUNK: usize = 1 << 20;
}
