//! The `MemoryBackend` trait and its first implementation, the embedded
//! backend (replicated SQLite + MiniLM + the in-memory vector index). An
//! external backend (Qdrant, Neo4j) implements the same trait; callers
//! (runtime, tools, API) only ever hold a `dyn MemoryBackend`.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::Arc;

use caxton_cluster::{Cluster, ReadError, WriteError};
use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use utoipa::ToSchema;

use super::embedder::{EmbedError, Embedder};
use super::index::{Filter, IndexedRow, VectorIndex};
use super::types::{
    parse_scope, Entity, MemoryScope, NewObservation, Observation, Place, Related, Relation, SearchHit, Vector, Viewer,
};
use crate::state::{CaxtonState, Command, Response, StateEvent};

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
pub struct ExportedObservation {
    pub text: String,
    /// Absent (or null) in hand-written imports: the importer embeds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub embedding: Option<Vector>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ExportedEntity {
    pub name: String,
    pub entity_type: String,
    pub scope: MemoryScope,
    #[serde(default)]
    pub owner: String,
    pub observations: Vec<ExportedObservation>,
}

/// The versioned memory export (`GET /v1/memory/export`).
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
}

pub struct EmbeddedMemory {
    cluster: Arc<Cluster<CaxtonState>>,
    embedder: tokio::sync::OnceCell<Embedder>,
    model_dir: std::path::PathBuf,
    index: Arc<VectorIndex>,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
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
        cluster: Arc<Cluster<CaxtonState>>,
        model_dir: std::path::PathBuf,
        events: broadcast::Receiver<StateEvent>,
    ) -> Result<Arc<Self>, MemoryError> {
        let index = Arc::new(VectorIndex::default());
        let idx = index.clone();
        let n = cluster.read(move |c| idx.rebuild(c)).await?;
        tracing::info!(observations = n, "memory index loaded");
        let memory = Arc::new(Self { cluster, embedder: tokio::sync::OnceCell::new(), model_dir, index });
        tokio::spawn(follow(memory.clone(), events));
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
        Ok(self.embedder().await?.embed(texts).await?)
    }

    async fn write(&self, cmd: Command) -> Result<Response, MemoryError> {
        Ok(self.cluster.write(&cmd).await?)
    }

    async fn store_vectors(
        &self,
        place: &Place,
        name: &str,
        entity_type: &str,
        observations: Vec<NewObservation>,
    ) -> Result<bool, MemoryError> {
        let cmd = Command::StoreEntity {
            place: place.clone(),
            name: name.into(),
            entity_type: entity_type.into(),
            observations,
            at_ms: now_ms(),
        };
        match self.write(cmd).await? {
            Response::Stored { created, .. } => Ok(created),
            other => Err(MemoryError::Invalid(format!("unexpected answer {other:?}"))),
        }
    }

    async fn read<R: Send + 'static>(
        &self,
        f: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<R> + Send + 'static,
    ) -> Result<R, MemoryError> {
        Ok(self.cluster.read(f).await?)
    }
}

fn entity_rows(
    c: &rusqlite::Connection,
    where_sql: &str,
    args: &[&dyn rusqlite::ToSql],
) -> rusqlite::Result<Vec<(i64, Entity)>> {
    let mut s = c.prepare(&format!("SELECT id, scope, owner, name, entity_type, created_at, updated_at FROM memory_entities {where_sql} ORDER BY scope, owner, name"))?;
    let rows = s.query_map(args, |r| {
        Ok((
            r.get::<_, i64>(0)?,
            Entity {
                scope: parse_scope(&r.get::<_, String>(1)?).unwrap_or(MemoryScope::Global),
                owner: r.get(2)?,
                name: r.get(3)?,
                entity_type: r.get(4)?,
                observations: vec![],
                created_at_ms: r.get(5)?,
                updated_at_ms: r.get(6)?,
            },
        ))
    })?;
    let mut out: Vec<(i64, Entity)> = rows.collect::<rusqlite::Result<_>>()?;
    let mut obs =
        c.prepare_cached("SELECT text, created_at FROM memory_observations WHERE entity_id = ?1 ORDER BY id")?;
    for (id, e) in out.iter_mut() {
        e.observations = obs
            .query_map([*id], |r| Ok(Observation { text: r.get(0)?, created_at_ms: r.get(1)? }))?
            .collect::<rusqlite::Result<_>>()?;
    }
    Ok(out)
}

fn relations_of(c: &rusqlite::Connection, place: &Place, name: &str) -> rusqlite::Result<Vec<Related>> {
    let mut s = c.prepare_cached(
        "SELECT relation_type, 'out', to_name FROM memory_relations WHERE scope = ?1 AND owner = ?2 AND from_name = ?3
         UNION ALL SELECT relation_type, 'in', from_name FROM memory_relations WHERE scope = ?1 AND owner = ?2 AND to_name = ?3",
    )?;
    let rows = s.query_map(params![place.scope_str(), place.owner, name], |r| {
        let dir: String = r.get(1)?;
        Ok(Related { relation_type: r.get(0)?, direction: if dir == "out" { "out" } else { "in" }, name: r.get(2)? })
    })?;
    rows.collect()
}

#[async_trait::async_trait]
impl MemoryBackend for EmbeddedMemory {
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
        match self.write(Command::DeleteEntity { place: place.clone(), name: name.into() }).await? {
            Response::Deleted(d) => Ok(d),
            other => Err(MemoryError::Invalid(format!("unexpected answer {other:?}"))),
        }
    }

    async fn get(&self, place: &Place, name: &str) -> Result<Option<Entity>, MemoryError> {
        let (scope, owner, name) = (place.scope_str(), place.owner.clone(), name.to_owned());
        let rows = self
            .read(move |c| entity_rows(c, "WHERE scope = ?1 AND owner = ?2 AND name = ?3", &[&scope, &owner, &name]))
            .await?;
        Ok(rows.into_iter().next().map(|(_, e)| e))
    }

    async fn list(
        &self,
        viewer: &Viewer,
        scope: Option<MemoryScope>,
        entity_type: Option<String>,
    ) -> Result<Vec<Entity>, MemoryError> {
        let all = self.read(|c| entity_rows(c, "", &[])).await?;
        Ok(all
            .into_iter()
            .map(|(_, e)| e)
            .filter(|e| viewer.can_see(&Place { scope: e.scope, owner: e.owner.clone() }))
            .filter(|e| scope.is_none_or(|s| s == e.scope))
            .filter(|e| entity_type.as_ref().is_none_or(|t| *t == e.entity_type))
            .collect())
    }

    async fn relate(&self, place: &Place, from: &str, to: &str, relation_type: &str) -> Result<(), MemoryError> {
        validate_name("relation_type", relation_type)?;
        let cmd = Command::Relate {
            place: place.clone(),
            from: from.into(),
            to: to.into(),
            relation_type: relation_type.into(),
            at_ms: now_ms(),
        };
        match self.write(cmd).await? {
            Response::Done => Ok(()),
            Response::MissingEntity(e) => Err(MemoryError::NotFound(e)),
            other => Err(MemoryError::Invalid(format!("unexpected answer {other:?}"))),
        }
    }

    async fn neighbours(&self, place: &Place, name: &str, depth: usize) -> Result<Vec<(usize, Related)>, MemoryError> {
        let (place, name) = (place.clone(), name.to_owned());
        let depth = depth.clamp(1, 5);
        self.read(move |c| {
            let mut seen: HashSet<String> = HashSet::from([name.clone()]);
            let mut queue = VecDeque::from([(name, 0usize)]);
            let mut out = Vec::new();
            while let Some((current, d)) = queue.pop_front() {
                if d == depth {
                    continue;
                }
                for rel in relations_of(c, &place, &current)? {
                    if seen.insert(rel.name.clone()) {
                        queue.push_back((rel.name.clone(), d + 1));
                        out.push((d + 1, rel));
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    async fn search(&self, q: SearchQuery) -> Result<Vec<SearchHit>, MemoryError> {
        if q.text.trim().is_empty() {
            return Err(MemoryError::Invalid("q (the query text) must not be empty".into()));
        }
        if !(0.0..=1.0).contains(&q.min_similarity) {
            return Err(MemoryError::Invalid(format!("min_similarity {} is outside 0..1", q.min_similarity)));
        }
        let vector = self.embedder().await?.embed_one(&q.text).await?;
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
        self.read(move |c| {
            let mut out = Vec::new();
            for (row, score) in hits {
                let found = c
                    .query_row(
                        "SELECT e.name, e.entity_type, o.text FROM memory_observations o JOIN memory_entities e ON e.id = o.entity_id WHERE o.id = ?1",
                        [row.observation_id],
                        |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)),
                    )
                    .optional()?;
                let Some((name, entity_type, observation)) = found else { continue };
                let related = relations_of(c, &row.place, &name)?;
                out.push(SearchHit { name, entity_type, score, observation, scope: row.place.scope, owner: row.place.owner.clone(), related });
            }
            Ok(out)
        })
        .await
    }

    async fn export(&self) -> Result<MemoryExport, MemoryError> {
        self.read(|c| {
            let mut entities = Vec::new();
            let mut s = c.prepare("SELECT id, scope, owner, name, entity_type FROM memory_entities ORDER BY id")?;
            let rows = s.query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                ))
            })?;
            let mut obs =
                c.prepare_cached("SELECT text, embedding FROM memory_observations WHERE entity_id = ?1 ORDER BY id")?;
            for row in rows {
                let (id, scope, owner, name, entity_type) = row?;
                let observations = obs
                    .query_map([id], |r| {
                        Ok(ExportedObservation {
                            text: r.get(0)?,
                            embedding: Some(Vector::from_bytes(&r.get::<_, Vec<u8>>(1)?)),
                        })
                    })?
                    .collect::<rusqlite::Result<_>>()?;
                entities.push(ExportedEntity {
                    name,
                    entity_type,
                    scope: parse_scope(&scope).unwrap_or(MemoryScope::Global),
                    owner,
                    observations,
                });
            }
            let mut r = c.prepare(
                "SELECT scope, owner, from_name, to_name, relation_type FROM memory_relations ORDER BY created_at",
            )?;
            let relations = r
                .query_map([], |r| {
                    Ok(Relation {
                        scope: parse_scope(&r.get::<_, String>(0)?).unwrap_or(MemoryScope::Global),
                        owner: r.get(1)?,
                        from: r.get(2)?,
                        to: r.get(3)?,
                        relation_type: r.get(4)?,
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            Ok(MemoryExport { version: EXPORT_VERSION, exported_at_ms: now_ms(), entities, relations })
        })
        .await
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
        let idx = memory.index.clone();
        let result = match event {
            Ok(StateEvent::MemoryAdded { observation_ids }) => {
                memory.cluster.read(move |c| idx.add_from(c, &observation_ids)).await
            }
            Ok(StateEvent::MemoryRemoved { entity_id }) => {
                idx.remove_entity(entity_id);
                Ok(())
            }
            Ok(StateEvent::Restored) | Err(broadcast::error::RecvError::Lagged(_)) => {
                memory.cluster.read(move |c| idx.rebuild(c).map(|_| ())).await
            }
            Ok(_) => Ok(()),
            Err(broadcast::error::RecvError::Closed) => return,
        };
        if let Err(e) = result {
            tracing::error!(error = %e, "memory index update failed");
        }
    }
}
