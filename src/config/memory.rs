//! `[memory]`: which backend holds agent memory. `embedded` keeps it in the
//! replicated state (every node holds all of it); `postgres` keeps it in a
//! PostgreSQL database with pgvector that every node of the cluster shares.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::setting::Unset;

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MemoryBackendKind {
    #[default]
    Embedded,
    Postgres,
}

impl MemoryBackendKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Embedded => "embedded",
            Self::Postgres => "postgres",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "embedded" => Some(Self::Embedded),
            "postgres" => Some(Self::Postgres),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MemorySection {
    /// `embedded` (default) or `postgres`.
    pub backend: MemoryBackendKind,
    /// Set to the backend a cluster used before, on the restart that moves
    /// it to `backend` (after `caxton memory export`); see docs/memory.md.
    pub migrate_from: Unset<String>,
    pub postgres: PostgresSection,
}

/// How the connection to PostgreSQL is protected.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum PgTlsMode {
    /// Plain TCP (a database on loopback or a private network).
    Disable,
    /// TLS, without checking the server's certificate (libpq's `require`).
    Require,
    /// TLS, the certificate checked against `tls_ca_file` (else the system
    /// roots) and the host name (libpq's `verify-full`).
    #[default]
    VerifyFull,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PostgresSection {
    /// `postgres://user:password@host:port/db`. A secret: prefer
    /// `CAXTON_MEMORY_POSTGRES_URL` or `url_file`.
    pub url: Unset<String>,
    /// A file holding the URL (a mounted Kubernetes Secret).
    pub url_file: Unset<PathBuf>,
    /// Connections each node keeps at most.
    pub pool_size: u64,
    /// How long to wait for a connection (new or from the pool).
    pub connect_timeout_ms: u64,
    /// Longest a statement may run before PostgreSQL cancels it.
    pub statement_timeout_ms: u64,
    pub tls: PgTlsMode,
    /// CA bundle (PEM) for `verify-full`; empty: the system's roots.
    pub tls_ca_file: Unset<PathBuf>,
    /// HNSW candidate list size: higher finds more true neighbours, slower.
    pub hnsw_ef_search: u64,
    /// A search whose filters leave at most this many observations scans
    /// them exactly instead of walking the HNSW graph.
    pub exact_search_below: u64,
}

impl Default for PostgresSection {
    fn default() -> Self {
        Self {
            url: Unset::default(),
            url_file: Unset::default(),
            pool_size: 16,
            connect_timeout_ms: 5_000,
            statement_timeout_ms: 10_000,
            tls: PgTlsMode::default(),
            tls_ca_file: Unset::default(),
            hnsw_ef_search: 100,
            exact_search_below: 10_000,
        }
    }
}
