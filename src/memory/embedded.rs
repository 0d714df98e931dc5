//! The embedded backend: memory in the replicated SQLite state (every
//! write a Raft command carrying its vectors), searched through the
//! in-memory vector index this node keeps over its replica.

use std::sync::Arc;

use tokio::sync::broadcast;

use super::backend::{best_per_entity, MemoryBackend, MemoryError, Page, SearchQuery};
use super::index::{Filter, VectorIndex};
use super::model::Model;
use super::types::{Entity, ExportedEntity, MemoryScope, NewObservation, Place, Related, Relation, SearchHit, Viewer};
use crate::config::MemoryBackendKind;
use crate::shutdown::Shutdown;
use crate::state::{DeleteEntity, Queries, Relate, StateEvent, Store, StoreEntity};
use crate::time::now_ms;

pub struct EmbeddedMemory {
    store: Store,
    queries: Queries,
    model: Model,
    index: Arc<VectorIndex>,
}

impl EmbeddedMemory {
    /// Starts the index (built from the replica, then kept current from
    /// committed changes). The model loads on first use.
    pub async fn start(
        store: Store,
        queries: Queries,
        model: Model,
        events: broadcast::Receiver<StateEvent>,
        shutdown: &Shutdown,
    ) -> Result<Arc<Self>, MemoryError> {
        let index = Arc::new(VectorIndex::default());
        let n = index.rebuild(&queries).await?;
        tracing::info!(observations = n, "memory index loaded");
        let memory = Arc::new(Self { store, queries, model, index });
        shutdown.spawn_until_stopped(follow(memory.clone(), events));
        Ok(memory)
    }

    pub fn index_len(&self) -> usize {
        self.index.len()
    }
}

#[async_trait::async_trait]
impl MemoryBackend for EmbeddedMemory {
    fn kind(&self) -> MemoryBackendKind {
        MemoryBackendKind::Embedded
    }

    fn model(&self) -> &Model {
        &self.model
    }

    async fn counts(&self) -> Result<(u64, u64), MemoryError> {
        Ok(self.queries.memory_counts().await?)
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

    async fn relate_checked(
        &self,
        place: &Place,
        from: &str,
        to: &str,
        relation_type: &str,
    ) -> Result<(), MemoryError> {
        let cmd = Relate {
            place: place.clone(),
            from: from.into(),
            to: to.into(),
            relation_type: relation_type.into(),
            at_ms: now_ms(),
        };
        self.store.propose(cmd).await?.map_err(MemoryError::NotFound)
    }

    async fn walk(&self, place: &Place, name: &str, depth: usize) -> Result<Vec<(usize, Related)>, MemoryError> {
        Ok(self.queries.memory_neighbours(place, name, depth).await?)
    }

    async fn search_vector(&self, vector: Vec<f32>, q: &SearchQuery) -> Result<Vec<SearchHit>, MemoryError> {
        let filter = Filter {
            viewer: &q.viewer,
            scope: q.scope,
            entity_type: q.entity_type.as_deref(),
            min_similarity: q.min_similarity,
        };
        let limit = q.bounded_limit();
        let raw = self.index.search(&vector, &filter, limit * 4);
        let hits = best_per_entity(raw.into_iter().map(|(row, score)| (row.entity_id, row, score)), limit);
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

    async fn export_entities(&self, after: Option<i64>, limit: usize) -> Result<Page<ExportedEntity>, MemoryError> {
        Ok(self.queries.memory_export_entities(after.unwrap_or(0), limit).await?)
    }

    async fn export_relations(&self, after: Option<i64>, limit: usize) -> Result<Page<Relation>, MemoryError> {
        Ok(self.queries.memory_export_relations(after.unwrap_or(0), limit).await?)
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
