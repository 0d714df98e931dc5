//! Errors of starting a member and of writing through it.

use std::time::Duration;

use crate::codec::CodecError;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create data directory {path}: {source}")]
    DataDir { path: String, source: std::io::Error },
    #[error("cannot open {path}: {source}")]
    Store { path: String, source: rusqlite::Error },
    #[error("invalid raft settings: {0}")]
    Config(String),
    #[error("raft failed to start: {0}")]
    Raft(String),
    #[error("cannot listen for cluster RPC on {addr}: {source}")]
    Listen { addr: String, source: std::io::Error },
    #[error("cannot start gossip on {addr}: {reason}")]
    Gossip { addr: String, reason: String },
    #[error("cluster TLS: {0}")]
    Tls(#[from] crate::transport::tls::TlsError),
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("no leader is known yet (election in progress?); retry shortly")]
    NoLeader,
    #[error("the leader at {addr} could not be reached: {reason}")]
    LeaderUnreachable { addr: String, reason: String },
    #[error("the write was not committed within {0:?}")]
    Timeout(Duration),
    #[error("the write was not committed within {0:?}: too few voters are reachable to form a quorum")]
    NoQuorum(Duration),
    #[error("this node is shutting down or has failed: {0}")]
    Fatal(String),
    #[error("the cluster refused the write: {0}")]
    Rejected(String),
    #[error("the write is {size} bytes encoded; the log takes entries of at most {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("undecodable response from the state machine: {0}")]
    Decode(#[from] CodecError),
}
