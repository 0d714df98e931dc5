//! What can go wrong with memory, whichever backend holds it, and the
//! problem type each failure answers with.

use caxton_cluster::{ReadError, WriteError};

use super::embedder::EmbedError;
use super::types::EXPORT_VERSION;

#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    #[error("invalid memory request: {0}")]
    Invalid(String),
    #[error("no entity `{0}` in that scope")]
    NotFound(String),
    #[error("embedded memory is unavailable: {0}")]
    Model(#[from] EmbedError),
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("unsupported export version {found}; this node reads version {EXPORT_VERSION}")]
    Version { found: u32 },
    /// The memory database cannot be reached (or keeps failing): nothing
    /// was written; the caller may retry after a while.
    #[error("the memory database is unavailable: {0}")]
    Unavailable(String),
    /// The database answered with an error retrying will not fix.
    #[error("the memory database refused the request: {0}")]
    Database(String),
}

impl crate::problems::Classified for MemoryError {
    fn problem_type(&self) -> crate::problems::ProblemType {
        use crate::problems::ProblemType;
        match self {
            Self::Invalid(_) => ProblemType::BadRequest,
            Self::NotFound(_) => ProblemType::MemoryEntityNotFound,
            Self::Version { .. } => ProblemType::UnsupportedExportVersion,
            Self::Model(_) => ProblemType::MemoryModelUnavailable,
            Self::Write(w) => w.problem_type(),
            Self::Read(r) => r.problem_type(),
            Self::Unavailable(_) => ProblemType::MemoryUnavailable,
            Self::Database(_) => ProblemType::Internal,
        }
    }

    fn retry_after(&self) -> Option<std::time::Duration> {
        matches!(self, Self::Unavailable(_)).then(|| std::time::Duration::from_secs(RETRY_AFTER_SECS))
    }
}

/// What a `memory-unavailable` answer tells the client to wait.
pub const RETRY_AFTER_SECS: u64 = 2;
