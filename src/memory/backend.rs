//! The `MemoryBackend` trait: what every memory offers, whichever store
//! holds it. Callers (runtime, tools, API) only ever hold a
//! `dyn MemoryBackend`. Validation, embedding and the import walk are the
//! trait's own (provided) methods, so the backends differ only in storage.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use super::error::MemoryError;
use super::model::Model;
use super::types::{
    Entity, ExportedEntity, MemoryScope, NewObservation, Place, Related, Relation, SearchHit, Vector, Viewer,
};
use crate::config::MemoryBackendKind;

#[derive(Debug, Clone)]
pub struct SearchQuery {
    pub text: String,
    pub viewer: Viewer,
    pub scope: Option<MemoryScope>,
    pub entity_type: Option<String>,
    pub limit: usize,
    pub min_similarity: f32,
}

impl SearchQuery {
    /// The number of results asked for, within what any backend returns.
    pub fn bounded_limit(&self) -> usize {
        self.limit.clamp(1, 100)
    }
}

pub use super::types::EXPORT_VERSION;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MemoryExport {
    pub version: u32,
    #[serde(default)]
    pub exported_at_ms: i64,
    pub entities: Vec<ExportedEntity>,
    #[serde(default)]
    pub relations: Vec<Relation>,
}

/// One page of an export, and where the next one starts (`None`: the last).
pub type Page<T> = (Vec<T>, Option<i64>);

/// Most entities an export page carries.
pub const EXPORT_PAGE: usize = 200;

/// The deepest graph walk a neighbours query makes.
pub const MAX_DEPTH: usize = 5;

#[async_trait::async_trait]
pub trait MemoryBackend: Send + Sync {
    fn kind(&self) -> MemoryBackendKind;
    fn model(&self) -> &Model;

    /// Whether this memory can serve requests now (`/ready`): `Err` names why not.
    async fn check_ready(&self) -> Result<(), MemoryError> {
        Ok(())
    }

    /// (entities, observations), for metrics; an estimate where counting is costly.
    async fn counts(&self) -> Result<(u64, u64), MemoryError>;

    /// Creates the entity if needed and appends observations whose vectors
    /// are already computed. True if the entity was new.
    async fn store_vectors(
        &self,
        place: &Place,
        name: &str,
        entity_type: &str,
        observations: Vec<NewObservation>,
    ) -> Result<bool, MemoryError>;
    async fn delete(&self, place: &Place, name: &str) -> Result<bool, MemoryError>;
    async fn get(&self, place: &Place, name: &str) -> Result<Option<Entity>, MemoryError>;
    /// Entities the viewer may see, optionally of one scope/type.
    async fn list(
        &self,
        viewer: &Viewer,
        scope: Option<MemoryScope>,
        entity_type: Option<String>,
    ) -> Result<Vec<Entity>, MemoryError>;
    /// Relates two entities of `place`; `NotFound` names a missing end.
    async fn relate_checked(&self, place: &Place, from: &str, to: &str, relation_type: &str)
        -> Result<(), MemoryError>;
    /// Entities within `depth` (1..=MAX_DEPTH) relations of `name`, with the
    /// relation that first reached them, nearest first.
    async fn walk(&self, place: &Place, name: &str, depth: usize) -> Result<Vec<(usize, Related)>, MemoryError>;
    /// The best hits for an embedded query: one per entity, best first,
    /// at most `q.bounded_limit()`, each scoring at least `q.min_similarity`.
    async fn search_vector(&self, vector: Vec<f32>, q: &SearchQuery) -> Result<Vec<SearchHit>, MemoryError>;
    /// Entities (with vectors) after the cursor `after`, in a stable order.
    async fn export_entities(&self, after: Option<i64>, limit: usize) -> Result<Page<ExportedEntity>, MemoryError>;
    /// Relations after the cursor `after`, in a stable order.
    async fn export_relations(&self, after: Option<i64>, limit: usize) -> Result<Page<Relation>, MemoryError>;

    /// Creates the entity if needed and appends observations (embedded here).
    async fn store(
        &self,
        place: &Place,
        name: &str,
        entity_type: &str,
        observations: Vec<String>,
    ) -> Result<bool, MemoryError> {
        check_name("name", name)?;
        check_name("entity_type", entity_type)?;
        if observations.iter().any(|o| o.trim().is_empty()) {
            return Err(MemoryError::Invalid("observations must not be empty strings".into()));
        }
        if let Some(i) = observations.iter().position(|o| o.contains('\0')) {
            return Err(MemoryError::Invalid(format!("observations[{i}] contains a NUL character")));
        }
        let vectors = self.model().embed(observations.clone()).await?;
        let new = observations
            .into_iter()
            .zip(vectors)
            .map(|(text, v)| NewObservation { text, embedding: Vector(v) })
            .collect();
        self.store_vectors(place, name, entity_type, new).await
    }

    async fn relate(&self, place: &Place, from: &str, to: &str, relation_type: &str) -> Result<(), MemoryError> {
        check_name("relation_type", relation_type)?;
        self.relate_checked(place, from, to, relation_type).await
    }

    /// Entities within `depth` relations of `name`, with the relation that reached them.
    async fn neighbours(&self, place: &Place, name: &str, depth: usize) -> Result<Vec<(usize, Related)>, MemoryError> {
        self.walk(place, name, depth.clamp(1, MAX_DEPTH)).await
    }

    async fn search(&self, q: SearchQuery) -> Result<Vec<SearchHit>, MemoryError> {
        if q.text.trim().is_empty() {
            return Err(MemoryError::Invalid("q (the query text) must not be empty".into()));
        }
        if !(0.0..=1.0).contains(&q.min_similarity) {
            return Err(MemoryError::Invalid(format!("min_similarity {} is outside 0..1", q.min_similarity)));
        }
        let vector = self.model().embed_one(&q.text).await?;
        let started = std::time::Instant::now();
        let hits = self.search_vector(vector, &q).await;
        self.model().observe("search", started);
        hits
    }

    /// The whole memory at once (small memories; the API and CLI stream pages).
    async fn export(&self) -> Result<MemoryExport, MemoryError> {
        let (mut entities, mut relations) = (Vec::new(), Vec::new());
        let mut after = None;
        loop {
            let (page, next) = self.export_entities(after, EXPORT_PAGE).await?;
            entities.extend(page);
            match next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        let mut after = None;
        loop {
            let (page, next) = self.export_relations(after, EXPORT_PAGE).await?;
            relations.extend(page);
            match next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        Ok(MemoryExport { version: EXPORT_VERSION, exported_at_ms: crate::time::now_ms(), entities, relations })
    }

    /// Imports an export (or one batch of one); entries without vectors are
    /// embedded. Returns entities imported.
    async fn import(&self, data: MemoryExport) -> Result<usize, MemoryError> {
        if data.version != EXPORT_VERSION {
            return Err(MemoryError::Version { found: data.version });
        }
        let mut count = 0;
        for e in &data.entities {
            let place = Place {
                scope: e.scope,
                owner: if e.scope == MemoryScope::Global { String::new() } else { e.owner.clone() },
            };
            let observations = import_vectors(self.model(), e).await?;
            self.store_vectors(&place, &e.name, &e.entity_type, observations).await?;
            count += 1;
        }
        for r in &data.relations {
            let place = Place { scope: r.scope, owner: r.owner.clone() };
            self.relate(&place, &r.from, &r.to, &r.relation_type).await?;
        }
        Ok(count)
    }

    /// Cosine similarity of two texts' embeddings (comparing answers).
    async fn similarity(&self, a: &str, b: &str) -> Result<f32, MemoryError> {
        self.model().similarity(a, b).await
    }

    /// The vectors this memory stores for `texts`, with the word pieces
    /// each was read as (`/v1/embeddings`).
    async fn embeddings(&self, texts: Vec<String>) -> Result<Vec<(Vec<f32>, u32)>, MemoryError> {
        self.model().embed_counted(texts).await
    }
}

fn check_name(what: &str, v: &str) -> Result<(), MemoryError> {
    if v.trim().is_empty() || v.len() > 512 {
        return Err(MemoryError::Invalid(format!("{what} must be 1-512 characters")));
    }
    if v.contains('\0') {
        return Err(MemoryError::Invalid(format!("{what} contains a NUL character")));
    }
    Ok(())
}

/// An exported entity's observations with their vectors: the exported ones
/// where present and of the model's size, else embedded now.
async fn import_vectors(model: &Model, e: &ExportedEntity) -> Result<Vec<NewObservation>, MemoryError> {
    let usable = |v: &Option<Vector>| v.as_ref().filter(|v| v.0.len() == super::DIMENSIONS).cloned();
    let missing: Vec<String> =
        e.observations.iter().filter(|o| usable(&o.embedding).is_none()).map(|o| o.text.clone()).collect();
    let mut fresh = if missing.is_empty() { Vec::new() } else { model.embed(missing).await? }.into_iter();
    Ok(e.observations
        .iter()
        .map(|o| NewObservation {
            text: o.text.clone(),
            embedding: usable(&o.embedding).unwrap_or_else(|| Vector(fresh.next().unwrap_or_default())),
        })
        .collect())
}

/// Keeps the best-scoring hit of each entity (several observations of one
/// entity may match), best first, at most `limit`.
pub fn best_per_entity<K: Ord, H>(hits: impl IntoIterator<Item = (K, H, f32)>, limit: usize) -> Vec<(H, f32)> {
    let mut best: std::collections::BTreeMap<K, (H, f32)> = std::collections::BTreeMap::new();
    for (key, hit, score) in hits {
        match best.entry(key) {
            std::collections::btree_map::Entry::Occupied(mut o) => {
                if score > o.get().1 {
                    o.insert((hit, score));
                }
            }
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert((hit, score));
            }
        }
    }
    let mut out: Vec<(H, f32)> = best.into_values().collect();
    out.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap_or(std::cmp::Ordering::Equal));
    out.truncate(limit);
    out
}
