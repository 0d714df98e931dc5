//! The concrete openraft type configuration.
//!
//! The cluster crate is generic over the application, but openraft's type
//! configuration is not cheap to make generic. So the log carries opaque,
//! application-encoded commands: the façade (`node::cluster`) encodes and decodes
//! them with the application's own types.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A node's identity in the cluster. Stable for the life of its data directory.
pub type NodeId = u64;

/// What every member advertises: where its cluster RPC and public API listen.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeAddr {
    /// host:port of the node-to-node RPC listener.
    pub rpc: String,
    /// host:port of the public REST API.
    pub api: String,
    /// The data directory this member was added with (see `identity`): a
    /// node whose data was wiped comes back with another one.
    pub incarnation: String,
}

impl fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rpc={} api={}", self.rpc, self.api)
    }
}

/// A node's role in the Raft membership.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberRole {
    Voter,
    Learner,
}

/// An application command as it travels through the log: encoded bytes.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payload(#[serde(with = "serde_bytes")] pub Vec<u8>);

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Payload({} bytes)", self.0.len())
    }
}

/// The application's answer to one applied command, encoded.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply(#[serde(with = "serde_bytes")] pub Vec<u8>);

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reply({} bytes)", self.0.len())
    }
}

openraft::declare_raft_types!(
    pub TypeConfig:
        D = Payload,
        R = Reply,
        NodeId = NodeId,
        Node = NodeAddr,
        Entry = openraft::Entry<TypeConfig>,
        // A file, never a buffer: a snapshot is the whole replica.
        SnapshotData = tokio::fs::File,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type Vote = openraft::Vote<NodeId>;
pub type StoredMembership = openraft::StoredMembership<NodeId, NodeAddr>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, NodeAddr>;
pub type Snapshot = openraft::Snapshot<TypeConfig>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type RaftMetrics = openraft::RaftMetrics<NodeId, NodeAddr>;
/// Why a client write or a membership change failed.
pub type ClientWriteFailure = openraft::error::RaftError<NodeId, openraft::error::ClientWriteError<NodeId, NodeAddr>>;
