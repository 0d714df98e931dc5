//! `[memory]`: which backend holds agent memory. `embedded` keeps it in the
//! replicated state (every node holds all of it); `postgres` keeps it in a
//! PostgreSQL database with pgvector that every node of the cluster shares.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::server::{ConfigError, Secret};
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

impl MemorySection {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, value: &dyn std::fmt::Display, reason: &str| ConfigError::Invalid {
            key: key.into(),
            value: value.to_string(),
            reason: reason.into(),
        };
        let pg = &self.postgres;
        if !(1..=1000).contains(&pg.pool_size) {
            return Err(invalid("memory.postgres.pool_size", &pg.pool_size, "must be 1 to 1000"));
        }
        if pg.connect_timeout_ms < 100 {
            return Err(invalid("memory.postgres.connect_timeout_ms", &pg.connect_timeout_ms, "must be at least 100"));
        }
        if pg.statement_timeout_ms < 100 {
            return Err(invalid(
                "memory.postgres.statement_timeout_ms",
                &pg.statement_timeout_ms,
                "must be at least 100",
            ));
        }
        if !(1..=1000).contains(&pg.hnsw_ef_search) {
            return Err(invalid("memory.postgres.hnsw_ef_search", &pg.hnsw_ef_search, "must be 1 to 1000"));
        }
        if let Some(from) = self.migrate_from.get() {
            if MemoryBackendKind::parse(from).is_none() {
                return Err(invalid("memory.migrate_from", from, "must be `embedded` or `postgres`"));
            }
        }
        Ok(())
    }

    /// The database URL when the backend is `postgres`:
    /// `CAXTON_MEMORY_POSTGRES_URL` or `memory.postgres.url` (already merged),
    /// else the trimmed contents of `memory.postgres.url_file`.
    pub fn postgres_url(&self) -> Result<Option<Secret>, ConfigError> {
        if self.backend != MemoryBackendKind::Postgres {
            return Ok(None);
        }
        let pg = &self.postgres;
        let (key, value) = match (pg.url.get(), pg.url_file.get()) {
            (Some(url), _) => ("memory.postgres.url", url.trim().to_owned()),
            (None, Some(file)) => {
                let text = std::fs::read_to_string(file).map_err(|e| ConfigError::Invalid {
                    key: "memory.postgres.url_file".into(),
                    value: file.display().to_string(),
                    reason: format!("cannot read the database URL: {e}"),
                })?;
                ("memory.postgres.url_file", text.trim().to_owned())
            }
            (None, None) => {
                return Err(ConfigError::Invalid {
                    key: "memory.postgres.url".into(),
                    value: String::new(),
                    reason: "required when memory.backend = \"postgres\" (or CAXTON_MEMORY_POSTGRES_URL, or \
                             memory.postgres.url_file)"
                        .into(),
                })
            }
        };
        if let Err(e) = value.parse::<tokio_postgres::Config>() {
            return Err(ConfigError::Invalid {
                key: key.into(),
                // The URL may hold a password: say where it came from, not what it is.
                value: "(hidden)".into(),
                reason: format!("not a PostgreSQL connection URL: {e}"),
            });
        }
        Ok(Some(Secret::new(value)))
    }
}
