//! Node-to-node RPC: HTTP/1.1 on the cluster port, bodies in the versioned
//! binary codec, every request carrying the cluster secret, the sender's
//! cluster id and the caller's trace id.

mod client;
mod raft_network;
mod server;

pub use client::TRACE_ID;
pub(crate) use client::{RpcClient, RpcError};
pub(crate) use raft_network::Network;
pub(crate) use server::{serve, AdminRequest, RpcState};

pub(crate) const SECRET_HEADER: &str = "x-caxton-cluster-secret";
pub(crate) const TRACE_HEADER: &str = "x-caxton-trace-id";
/// The sender's cluster id (absent while the sender is pristine).
pub(crate) const CLUSTER_HEADER: &str = "x-caxton-cluster-id";
/// The incarnation the sender's membership records for the receiver.
pub(crate) const INCARNATION_HEADER: &str = "x-caxton-target-incarnation";

pub(crate) mod paths {
    pub const APPEND: &str = "/raft/append";
    pub const VOTE: &str = "/raft/vote";
    pub const SNAPSHOT: &str = "/raft/snapshot";
    pub const WRITE: &str = "/cluster/write";
    pub const ADMIN: &str = "/cluster/admin";
}

/// Compares secrets without leaking the position of the first difference.
pub(crate) fn secrets_match(expected: &[u8], given: &[u8]) -> bool {
    if expected.len() != given.len() {
        return false;
    }
    expected.iter().zip(given).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}
