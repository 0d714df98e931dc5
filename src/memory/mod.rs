//! Agent memory: entities, observations (text + 384-dim MiniLM embedding)
//! and relations, behind the [`MemoryBackend`] trait. Two backends: the
//! embedded one (the replicated SQLite state and an in-memory vector index
//! on every node) and PostgreSQL with pgvector (one database every node
//! shares). Embeddings are always computed here, by [`Model`].

mod backend;
mod embedded;
pub mod embedder;
mod error;
mod index;
pub mod model;
pub mod postgres;
pub mod types;

pub use backend::{
    best_per_entity, MemoryBackend, MemoryError, MemoryExport, Page, SearchQuery, EXPORT_PAGE, EXPORT_VERSION,
    MAX_DEPTH,
};
pub use embedded::EmbeddedMemory;
pub use embedder::{dot, EmbedError, Embedder, DIMENSIONS};
pub use error::RETRY_AFTER_SECS;
pub use index::{Filter, IndexedRow, VectorIndex};
pub use model::Model;
pub use postgres::PostgresMemory;
pub use types::{ExportedEntity, ExportedObservation};
