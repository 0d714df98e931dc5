//! Embedded memory: entities, observations (text + 384-dim embedding) and
//! relations in the replicated SQLite state; MiniLM embeddings computed once
//! by the receiving node and carried in the Raft command; an in-memory
//! vector index over this node's replica for search. Callers use the
//! [`MemoryBackend`] trait.

mod backend;
pub mod embedder;
mod index;
pub mod types;

pub use backend::{EmbeddedMemory, MemoryBackend, MemoryError, MemoryExport, SearchQuery, EXPORT_VERSION};
pub use embedder::{dot, EmbedError, Embedder, DIMENSIONS};
pub use index::{Filter, IndexedRow, VectorIndex};
pub use types::{ExportedEntity, ExportedObservation};
