//! Memory data: what is stored, who may see it, what comes back. The
//! records themselves belong to the replicated state (`state::memory`);
//! they are re-exported here for the memory module's callers.

use serde::Serialize;
use utoipa::ToSchema;

pub use crate::state::{
    parse_scope, scope_str, Entity, ExportedEntity, ExportedObservation, MemoryScope, NewObservation, Observation,
    Place, Related, Relation, Vector, Viewer,
};

pub use crate::config::DEFAULT_WORKSPACE;

/// The version of the export format (`MemoryExport`) this node writes and reads.
pub const EXPORT_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SearchHit {
    pub name: String,
    pub entity_type: String,
    pub score: f32,
    /// The best-matching observation of the entity.
    pub observation: String,
    pub scope: MemoryScope,
    pub owner: String,
    /// Entities one relation away, to enrich the hit.
    pub related: Vec<Related>,
}
