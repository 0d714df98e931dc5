//! Errors of starting a member (a write's are `crate::write_error`'s).

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
