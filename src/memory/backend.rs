//! The `MemoryBackend` trait and its first implementation, the embedded
//! backend (replicated SQLite + MiniLM + the in-memory vector index). An
//! external backend (Qdrant, Neo4j) implements the same trait; callers
//! (runtime, tools, API) only ever hold a `dyn MemoryBackend`.

use std::collections::BTreeMap;
use std::sync::Arc;

use caxton_cluster::{ReadError, WriteError};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use utoipa::ToSchema;

use super::embedder::{EmbedError, Embedder};
use super::index::{Filter, IndexedRow, VectorIndex};
use super::types::{
    Entity, ExportedEntity, MemoryScope, NewObservation, Place, Related, Relation, SearchHit, Vector, Viewer,
};
use crate::shutdown::Shutdown;
use crate::state::{DeleteEntity, Queries, Relate, StateEvent, Store, StoreEntity};
use crate::time::now_ms;

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
}

#[derive(Debug, Clone)]
pub struct SearchQuery {
    pub text: String,
    pub viewer: Viewer,
    pub scope: Option<MemoryScope>,
    pub entity_type: Option<String>,
    pub limit: usize,
    pub min_similarity: f32,
}

pub const EXPORT_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MemoryExport {
    pub version: u32,
    #[serde(default)]
    pub exported_at_ms: i64,
    pub entities: Vec<ExportedEntity>,
    #[serde(default)]
    pub relations: Vec<Relation>,
}

#[async_trait::async_trait]
pub trait MemoryBackend: Send + Sync {
    /// Creates the entity if needed and appends observations (embedded here).
    async fn store(
        &self,
        place: &Place,
        name: &str,
        entity_type: &str,
        observations: Vec<String>,
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
    async fn relate(&self, place: &Place, from: &str, to: &str, relation_type: &str) -> Result<(), MemoryError>;
    /// Entities within `depth` relations of `name`, with the relation that reached them.
    async fn neighbours(&self, place: &Place, name: &str, depth: usize) -> Result<Vec<(usize, Related)>, MemoryError>;
    async fn search(&self, q: SearchQuery) -> Result<Vec<SearchHit>, MemoryError>;
    async fn export(&self) -> Result<MemoryExport, MemoryError>;
    /// Imports an export; entries without vectors are embedded. Returns entities imported.
    async fn import(&self, data: MemoryExport) -> Result<usize, MemoryError>;
    /// Cosine similarity of two texts' embeddings (comparing answers).
    async fn similarity(&self, a: &str, b: &str) -> Result<f32, MemoryError>;
    /// The vectors this memory stores for `texts`, with the word pieces
    /// each was read as (`/v1/embeddings`).
    async fn embeddings(&self, texts: Vec<String>) -> Result<Vec<(Vec<f32>, u32)>, MemoryError>;
}

/// Times the index search of a query (until dropped: every return path).
struct SearchTimer<'a> {
    memory: &'a EmbeddedMemory,
    started: std::time::Instant,
}

impl Drop for SearchTimer<'_> {
    fn drop(&mut self) {
        self.memory.observe("search", self.started);
    }
}

pub struct EmbeddedMemory {
    store: Store,
    queries: Queries,
    embedder: tokio::sync::OnceCell<Embedder>,
    model_dir: std::path::PathBuf,
    index: Arc<VectorIndex>,
    metrics: Arc<crate::observability::Metrics>,
}

fn validate_name(what: &str, v: &str) -> Result<(), MemoryError> {
    if v.trim().is_empty() || v.len() > 512 {
        return Err(MemoryError::Invalid(format!("{what} must be 1-512 characters")));
    }
    Ok(())
}

impl EmbeddedMemory {
    /// Starts the index (built from the replica, then kept current from
    /// committed changes). The model loads on first use.
    pub async fn start(
        store: Store,
        queries: Queries,
        model_dir: std::path::PathBuf,
        events: broadcast::Receiver<StateEvent>,
        shutdown: &Shutdown,
        metrics: Arc<crate::observability::Metrics>,
    ) -> Result<Arc<Self>, MemoryError> {
        let index = Arc::new(VectorIndex::default());
        let n = index.rebuild(&queries).await?;
        tracing::info!(observations = n, "memory index loaded");
        let memory =
            Arc::new(Self { store, queries, embedder: tokio::sync::OnceCell::new(), model_dir, index, metrics });
        shutdown.spawn_until_stopped(follow(memory.clone(), events));
        Ok(memory)
    }

    pub fn index_len(&self) -> usize {
        self.index.len()
    }

    async fn embedder(&self) -> Result<&Embedder, MemoryError> {
        let dir = self.model_dir.clone();
        Ok(self
            .embedder
            .get_or_try_init(|| async move {
                tokio::task::spawn_blocking(move || Embedder::start(dir)).await.map_err(|_| EmbedError::Stopped)?
            })
            .await?)
    }

    /// Embeds texts with the node's model (for API callers and benchmarks).
    pub async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, MemoryError> {
        let started = std::time::Instant::now();
        let vectors = self.embedder().await?.embed(texts).await?;
        self.observe("embed", started);
        Ok(vectors)
    }

    fn observe(&self, operation: &str, started: std::time::Instant) {
        let histogram = &self.metrics.memory_search_duration;
        histogram.with_label_values(&[operation]).observe(started.elapsed().as_secs_f64());
    }

    async fn store_vectors(
        &self,
        place: &Place,
        name: &str,
        entity_type: &str,
        observations: Vec<NewObservation>,
    ) -> Result<bool, MemoryError> {
        let cmd = StoreEntity {
            place: place.clone(),
            name: name.into(),
            entity_type: entity_type.into(),
            observations,
            at_ms: now_ms(),
        };
        Ok(self.store.propose(cmd).await?.created)
    }
}

#[async_trait::async_trait]
impl MemoryBackend for EmbeddedMemory {
    async fn embeddings(&self, texts: Vec<String>) -> Result<Vec<(Vec<f32>, u32)>, MemoryError> {
        let started = std::time::Instant::now();
        let out = self.embedder().await?.embed_counted(texts).await?;
        self.observe("embed", started);
        Ok(out)
    }

    async fn similarity(&self, a: &str, b: &str) -> Result<f32, MemoryError> {
        let v = self.embed(vec![a.to_owned(), b.to_owned()]).await?;
        let norm = |x: &[f32]| super::dot(x, x).sqrt();
        let (na, nb) = (norm(&v[0]), norm(&v[1]));
        Ok(if na == 0.0 || nb == 0.0 { 0.0 } else { super::dot(&v[0], &v[1]) / (na * nb) })
    }

    async fn store(
        &self,
        place: &Place,
        name: &str,
        entity_type: &str,
        observations: Vec<String>,
    ) -> Result<bool, MemoryError> {
        validate_name("name", name)?;
        validate_name("entity_type", entity_type)?;
        if observations.iter().any(|o| o.trim().is_empty()) {
            return Err(MemoryError::Invalid("observations must not be empty strings".into()));
        }
        let vectors = self.embedder().await?.embed(observations.clone()).await?;
        let new = observations
            .into_iter()
            .zip(vectors)
            .map(|(text, v)| NewObservation { text, embedding: Vector(v) })
            .collect();
        self.store_vectors(place, name, entity_type, new).await
    }

    async fn delete(&self, place: &Place, name: &str) -> Result<bool, MemoryError> {
        Ok(self.store.propose(DeleteEntity { place: place.clone(), name: name.into() }).await?)
    }

    async fn get(&self, place: &Place, name: &str) -> Result<Option<Entity>, MemoryError> {
        Ok(self.queries.memory_entity(place, name).await?)
    }

    async fn list(
        &self,
        viewer: &Viewer,
        scope: Option<MemoryScope>,
        entity_type: Option<String>,
    ) -> Result<Vec<Entity>, MemoryError> {
        let all = self.queries.memory_entities().await?;
        Ok(all
            .into_iter()
            .filter(|e| viewer.can_see(&Place { scope: e.scope, owner: e.owner.clone() }))
            .filter(|e| scope.is_none_or(|s| s == e.scope))
            .filter(|e| entity_type.as_ref().is_none_or(|t| *t == e.entity_type))
            .collect())
    }

    async fn relate(&self, place: &Place, from: &str, to: &str, relation_type: &str) -> Result<(), MemoryError> {
        validate_name("relation_type", relation_type)?;
        let cmd = Relate {
            place: place.clone(),
            from: from.into(),
            to: to.into(),
            relation_type: relation_type.into(),
            at_ms: now_ms(),
        };
        self.store.propose(cmd).await?.map_err(MemoryError::NotFound)
    }

    async fn neighbours(&self, place: &Place, name: &str, depth: usize) -> Result<Vec<(usize, Related)>, MemoryError> {
        Ok(self.queries.memory_neighbours(place, name, depth.clamp(1, 5)).await?)
    }

    async fn search(&self, q: SearchQuery) -> Result<Vec<SearchHit>, MemoryError> {
        if q.text.trim().is_empty() {
            return Err(MemoryError::Invalid("q (the query text) must not be empty".into()));
        }
        if !(0.0..=1.0).contains(&q.min_similarity) {
            return Err(MemoryError::Invalid(format!("min_similarity {} is outside 0..1", q.min_similarity)));
        }
        let started = std::time::Instant::now();
        let vector = self.embedder().await?.embed_one(&q.text).await?;
        self.observe("embed", started);
        let _search = SearchTimer { memory: self, started: std::time::Instant::now() };
        let filter = Filter {
            viewer: &q.viewer,
            scope: q.scope,
            entity_type: q.entity_type.as_deref(),
            min_similarity: q.min_similarity,
        };
        let limit = q.limit.clamp(1, 100);
        // Several observations of one entity may match: keep the best per entity.
        let raw = self.index.search(&vector, &filter, limit * 4);
        let mut best: BTreeMap<i64, (IndexedRow, f32)> = BTreeMap::new();
        for (row, score) in raw {
            best.entry(row.entity_id)
                .and_modify(|b| {
                    if score > b.1 {
                        *b = (row.clone(), score)
                    }
                })
                .or_insert((row, score));
        }
        let mut hits: Vec<(IndexedRow, f32)> = best.into_values().collect();
        hits.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap_or(std::cmp::Ordering::Equal));
        hits.truncate(limit);
        let found = self
            .queries
            .memory_hits(hits.iter().map(|(row, _)| (row.observation_id, row.place.clone())).collect())
            .await?;
        Ok(hits
            .into_iter()
            .zip(found)
            .filter_map(|((row, score), hit)| {
                let hit = hit?;
                Some(SearchHit {
                    name: hit.name,
                    entity_type: hit.entity_type,
                    score,
                    observation: hit.text,
                    scope: row.place.scope,
                    owner: row.place.owner,
                    related: hit.related,
                })
            })
            .collect())
    }

    async fn export(&self) -> Result<MemoryExport, MemoryError> {
        let (entities, relations) = self.queries.memory_export().await?;
        Ok(MemoryExport { version: EXPORT_VERSION, exported_at_ms: now_ms(), entities, relations })
    }

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
            let missing: Vec<String> = e
                .observations
                .iter()
                .filter(|o| o.embedding.as_ref().is_none_or(|v| v.0.len() != super::DIMENSIONS))
                .map(|o| o.text.clone())
                .collect();
            let mut fresh =
                if missing.is_empty() { Vec::new() } else { self.embedder().await?.embed(missing).await? }.into_iter();
            let observations = e
                .observations
                .iter()
                .map(|o| match &o.embedding {
                    Some(v) if v.0.len() == super::DIMENSIONS => {
                        NewObservation { text: o.text.clone(), embedding: v.clone() }
                    }
                    _ => NewObservation { text: o.text.clone(), embedding: Vector(fresh.next().unwrap_or_default()) },
                })
                .collect();
            self.store_vectors(&place, &e.name, &e.entity_type, observations).await?;
            count += 1;
        }
        for r in &data.relations {
            let place = Place { scope: r.scope, owner: r.owner.clone() };
            self.relate(&place, &r.from, &r.to, &r.relation_type).await?;
        }
        Ok(count)
    }
}

async fn follow(memory: Arc<EmbeddedMemory>, mut events: broadcast::Receiver<StateEvent>) {
    loop {
        let event = events.recv().await;
        let result = match event {
            Ok(StateEvent::MemoryAdded { observation_ids }) => memory.index.add(&memory.queries, observation_ids).await,
            Ok(StateEvent::MemoryRemoved { entity_id }) => {
                memory.index.remove_entity(entity_id);
                Ok(())
            }
            Ok(StateEvent::Restored) | Err(broadcast::error::RecvError::Lagged(_)) => {
                memory.index.rebuild(&memory.queries).await.map(|_| ())
            }
            Ok(_) => Ok(()),
            Err(broadcast::error::RecvError::Closed) => return,
        };
        if let Err(e) = result {
            tracing::error!(error = %e, "memory index update failed");
        }
    }
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
        }
    }
}
