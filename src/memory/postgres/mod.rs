//! The PostgreSQL backend: memory in one database every node shares, with
//! pgvector's `vector(384)` and an HNSW index for search. Writes go to the
//! database, not through Raft; a write is acknowledged after its
//! transaction commits. Vectors are computed by this node's model, as for
//! the embedded backend, so the database needs only the `vector` extension.

mod connect;
mod retry;
pub mod schema;

use std::sync::Arc;

use deadpool_postgres::GenericClient;
use deadpool_postgres::Pool;
use pgvector::Vector as PgVector;

use self::retry::{run, Failure};
use super::backend::{best_per_entity, MemoryBackend, MemoryError, Page, SearchQuery};
use super::model::Model;
use super::types::{
    parse_scope, scope_str, Entity, ExportedEntity, ExportedObservation, MemoryScope, NewObservation, Observation,
    Place, Related, Relation, SearchHit, Vector, Viewer,
};
use crate::config::{MemoryBackendKind, PostgresSection, Secret};
use crate::observability::Metrics;
use crate::time::now_ms;

pub use connect::ConnectError;

pub struct PostgresMemory {
    pool: Pool,
    model: Model,
    metrics: Arc<Metrics>,
    ef_search: u64,
    exact_below: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("cannot reach the memory database: {0}")]
    Unreachable(String),
    #[error("migrating the memory database: {0}")]
    Migrate(#[from] schema::MigrateError),
}

/// Who may see what, as SQL over a table with `scope` and `owner`: $W is
/// the viewer's workspace, $A its agent (case-folded); NULL sees nothing.
fn visible(workspace: usize, agent: usize) -> String {
    format!(
        "(scope = 'global' OR (scope = 'workspace' AND owner = ${workspace}) OR (scope = 'agent-only' AND owner = ${agent}))"
    )
}

impl PostgresMemory {
    /// Connects and migrates; fails if the database cannot be reached now
    /// (a node must not serve with a memory it cannot open).
    pub async fn start(
        url: &Secret,
        settings: &PostgresSection,
        model: Model,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Self>, StartError> {
        let pool = connect::pool(url, settings)?;
        let mut client = pool.get().await.map_err(|e| StartError::Unreachable(e.to_string()))?;
        let applied = schema::migrate(&mut client).await?;
        drop(client);
        tracing::info!(?applied, schema = schema::latest(), "memory database ready");
        Ok(Arc::new(Self {
            pool,
            model,
            metrics,
            ef_search: settings.hnsw_ef_search,
            exact_below: settings.exact_search_below,
        }))
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, Failure> {
        let client = self.pool.get().await;
        self.observe_pool();
        Ok(client?)
    }

    fn observe_pool(&self) {
        let status = self.pool.status();
        let gauge = &self.metrics.memory_db_connections;
        gauge.with_label_values(&["in_use"]).set((status.size - status.available) as i64);
        gauge.with_label_values(&["idle"]).set(status.available as i64);
        gauge.with_label_values(&["max"]).set(status.max_size as i64);
    }

    async fn relations_of(
        client: &impl GenericClient,
        place: &Place,
        name: &str,
    ) -> Result<Vec<Related>, tokio_postgres::Error> {
        let rows = client
            .query(
                &client
                    .prepare_cached(
                        "SELECT relation_type, 'out', to_name, id FROM caxton_memory_relations
                   WHERE scope = $1 AND owner = $2 AND from_name = $3
                 UNION ALL
                 SELECT relation_type, 'in', from_name, id FROM caxton_memory_relations
                   WHERE scope = $1 AND owner = $2 AND to_name = $3
                 ORDER BY 4",
                    )
                    .await?,
                &[&place.scope_str(), &place.owner, &name],
            )
            .await?;
        Ok(rows.iter().map(related).collect())
    }

    /// Observations of `ids`, in order, for entities being read.
    async fn observations(
        client: &impl GenericClient,
        ids: &[i64],
    ) -> Result<std::collections::HashMap<i64, Vec<Observation>>, tokio_postgres::Error> {
        let rows = client
            .query(
                &client
                    .prepare_cached(
                        "SELECT entity_id, text, created_at FROM caxton_memory_observations
                 WHERE entity_id = ANY($1) ORDER BY id",
                    )
                    .await?,
                &[&ids],
            )
            .await?;
        let mut out: std::collections::HashMap<i64, Vec<Observation>> = std::collections::HashMap::new();
        for r in rows {
            out.entry(r.get(0)).or_default().push(Observation { text: r.get(1), created_at_ms: r.get(2) });
        }
        Ok(out)
    }
}

fn related(r: &tokio_postgres::Row) -> Related {
    let direction: &str = r.get(1);
    Related { relation_type: r.get(0), direction: if direction == "out" { "out" } else { "in" }, name: r.get(2) }
}

/// A scope column's value; rows are only ever written with known spellings.
fn scope_of(text: &str) -> Result<MemoryScope, Failure> {
    parse_scope(text).ok_or_else(|| Failure::Fatal(format!("unknown memory scope `{text}` in the database")))
}

/// `(id, entity)` from `SELECT id, scope, owner, name, entity_type, created_at, updated_at`.
fn entity_row(r: &tokio_postgres::Row) -> Result<(i64, Entity), Failure> {
    Ok((
        r.get(0),
        Entity {
            scope: scope_of(r.get(1))?,
            owner: r.get(2),
            name: r.get(3),
            entity_type: r.get(4),
            observations: Vec::new(),
            created_at_ms: r.get(5),
            updated_at_ms: r.get(6),
        },
    ))
}

/// Below this many observations (by the planner's estimate) the memory
/// metrics count exactly; above, the estimate stands.
const EXACT_COUNT_BELOW: i64 = 100_000;

const ENTITY_COLUMNS: &str = "id, scope, owner, name, entity_type, created_at, updated_at";

#[async_trait::async_trait]
impl MemoryBackend for PostgresMemory {
    fn kind(&self) -> MemoryBackendKind {
        MemoryBackendKind::Postgres
    }

    fn model(&self) -> &Model {
        &self.model
    }

    async fn check_ready(&self) -> Result<(), MemoryError> {
        let client = self.pool.get().await.map_err(|e| MemoryError::Unavailable(e.to_string()))?;
        self.observe_pool();
        let version = schema::current(&client).await.map_err(|e| MemoryError::Unavailable(e.to_string()))?;
        // A newer node's (additive) migrations leave this node able to serve.
        if version < schema::latest() {
            return Err(MemoryError::Unavailable(format!(
                "the memory database is at schema version {version}, this node needs {}",
                schema::latest()
            )));
        }
        Ok(())
    }

    async fn counts(&self) -> Result<(u64, u64), MemoryError> {
        run(&self.metrics, "count", move || async move {
            let client = self.client().await?;
            // The planner's estimates, exact counts only while they are cheap.
            let row = client
                .query_one(
                    &client
                        .prepare_cached(
                            "SELECT (SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE relname = 'caxton_memory_entities'),
                                    (SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE relname = 'caxton_memory_observations')",
                        )
                        .await?,
                    &[],
                )
                .await?;
            let (entities, observations): (i64, i64) = (row.get(0), row.get(1));
            if observations >= EXACT_COUNT_BELOW {
                return Ok((entities as u64, observations as u64));
            }
            let row = client
                .query_one(
                    &client
                        .prepare_cached(
                            "SELECT (SELECT count(*) FROM caxton_memory_entities), (SELECT count(*) FROM caxton_memory_observations)",
                        )
                        .await?,
                    &[],
                )
                .await?;
            Ok((row.get::<_, i64>(0) as u64, row.get::<_, i64>(1) as u64))
        })
        .await
    }

    async fn store_vectors(
        &self,
        place: &Place,
        name: &str,
        entity_type: &str,
        observations: Vec<NewObservation>,
    ) -> Result<bool, MemoryError> {
        let texts: Vec<&str> = observations.iter().map(|o| o.text.as_str()).collect();
        let vectors: Vec<PgVector> = observations.iter().map(|o| PgVector::from(o.embedding.0.clone())).collect();
        let (texts, vectors) = (&texts, &vectors);
        run(&self.metrics, "store", move || async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            let at = now_ms();
            let row = tx
                .query_one(
                    &tx.prepare_cached("INSERT INTO caxton_memory_entities (scope, owner, name, entity_type, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $5)
                     ON CONFLICT (scope, owner, name)
                       DO UPDATE SET entity_type = EXCLUDED.entity_type, updated_at = EXCLUDED.updated_at
                     RETURNING id, (xmax = 0)").await?,
                    &[&place.scope_str(), &place.owner, &name, &entity_type, &at],
                )
                .await?;
            let (id, created): (i64, bool) = (row.get(0), row.get(1));
            if !created {
                tx.execute(
                    &tx.prepare_cached("UPDATE caxton_memory_observations SET entity_type = $2 WHERE entity_id = $1 AND entity_type <> $2").await?,
                    &[&id, &entity_type],
                )
                .await?;
            }
            if !texts.is_empty() {
                // One statement for the whole batch.
                tx.execute(
                    &tx.prepare_cached("INSERT INTO caxton_memory_observations (entity_id, scope, owner, entity_type, text, embedding, created_at)
                     SELECT $1, $2, $3, $4, t, e, $7 FROM unnest($5::text[], $6::vector[]) AS u(t, e)").await?,
                    &[&id, &place.scope_str(), &place.owner, &entity_type, &texts, &vectors, &at],
                )
                .await?;
            }
            tx.commit().await.map_err(Failure::at_commit)?;
            Ok(created)
        })
        .await
    }

    async fn delete(&self, place: &Place, name: &str) -> Result<bool, MemoryError> {
        run(&self.metrics, "delete", move || async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            let deleted = tx
                .execute(
                    &tx.prepare_cached("DELETE FROM caxton_memory_entities WHERE scope = $1 AND owner = $2 AND name = $3").await?,
                    &[&place.scope_str(), &place.owner, &name],
                )
                .await?;
            tx.execute(
                &tx.prepare_cached("DELETE FROM caxton_memory_relations WHERE scope = $1 AND owner = $2 AND (from_name = $3 OR to_name = $3)").await?,
                &[&place.scope_str(), &place.owner, &name],
            )
            .await?;
            tx.commit().await.map_err(Failure::at_commit)?;
            Ok(deleted > 0)
        })
        .await
    }

    async fn get(&self, place: &Place, name: &str) -> Result<Option<Entity>, MemoryError> {
        run(&self.metrics, "get", move || async move {
            let client = self.client().await?;
            let Some(row) = client
                .query_opt(
                    &client.prepare_cached(&format!(
                        "SELECT {ENTITY_COLUMNS} FROM caxton_memory_entities WHERE scope = $1 AND owner = $2 AND name = $3"
                    )).await?,
                    &[&place.scope_str(), &place.owner, &name],
                )
                .await?
            else {
                return Ok(None);
            };
            let (id, mut entity) = entity_row(&row)?;
            entity.observations = Self::observations(&client, &[id]).await?.remove(&id).unwrap_or_default();
            Ok(Some(entity))
        })
        .await
    }

    async fn list(
        &self,
        viewer: &Viewer,
        scope: Option<MemoryScope>,
        entity_type: Option<String>,
    ) -> Result<Vec<Entity>, MemoryError> {
        let agent = viewer.agent.as_ref().map(|a| a.to_ascii_lowercase());
        let scope = scope.map(scope_str);
        let (agent, entity_type) = (&agent, &entity_type);
        run(&self.metrics, "list", move || async move {
            let client = self.client().await?;
            let rows = client
                .query(
                    &client
                        .prepare_cached(&format!(
                            "SELECT {ENTITY_COLUMNS} FROM caxton_memory_entities
                         WHERE {} AND ($3::text IS NULL OR scope = $3) AND ($4::text IS NULL OR entity_type = $4)
                         ORDER BY scope, owner, name",
                            visible(1, 2)
                        ))
                        .await?,
                    &[&viewer.workspace, &agent, &scope, &entity_type],
                )
                .await?;
            let mut entities = rows.iter().map(entity_row).collect::<Result<Vec<_>, _>>()?;
            let ids: Vec<i64> = entities.iter().map(|(id, _)| *id).collect();
            let mut observations = Self::observations(&client, &ids).await?;
            for (id, e) in &mut entities {
                e.observations = observations.remove(id).unwrap_or_default();
            }
            Ok(entities.into_iter().map(|(_, e)| e).collect())
        })
        .await
    }

    async fn relate_checked(
        &self,
        place: &Place,
        from: &str,
        to: &str,
        relation_type: &str,
    ) -> Result<(), MemoryError> {
        let missing = run(&self.metrics, "relate", move || async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            for end in [from, to] {
                // FOR SHARE: the end cannot be deleted before this commits.
                let found = tx
                    .query_opt(
                        &tx.prepare_cached("SELECT 1 FROM caxton_memory_entities WHERE scope = $1 AND owner = $2 AND name = $3 FOR SHARE").await?,
                        &[&place.scope_str(), &place.owner, &end],
                    )
                    .await?;
                if found.is_none() {
                    return Ok(Some(end.to_owned()));
                }
            }
            tx.execute(
                &tx.prepare_cached("INSERT INTO caxton_memory_relations (scope, owner, from_name, to_name, relation_type, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING").await?,
                &[&place.scope_str(), &place.owner, &from, &to, &relation_type, &now_ms()],
            )
            .await?;
            tx.commit().await.map_err(Failure::at_commit)?;
            Ok(None)
        })
        .await?;
        match missing {
            Some(name) => Err(MemoryError::NotFound(name)),
            None => Ok(()),
        }
    }

    async fn walk(&self, place: &Place, name: &str, depth: usize) -> Result<Vec<(usize, Related)>, MemoryError> {
        let depth = depth as i32;
        run(&self.metrics, "neighbours", move || async move {
            let client = self.client().await?;
            // Breadth first in SQL: each step follows relations either way
            // from the names reached so far; UNION drops repeated rows, and
            // the depth bound ends cycles. A name's first (shallowest) row wins.
            let rows = client
                .query(
                    &client
                        .prepare_cached(
                            "WITH RECURSIVE walk (name, depth, relation_type, direction, seq) AS (
                         SELECT $3::text, 0, ''::text, ''::text, 0::bigint
                       UNION
                         SELECT step.other, walk.depth + 1, step.relation_type, step.direction, step.id
                         FROM walk CROSS JOIN LATERAL (
                             SELECT r.to_name AS other, r.relation_type, 'out' AS direction, r.id
                               FROM caxton_memory_relations r
                              WHERE r.scope = $1 AND r.owner = $2 AND r.from_name = walk.name
                             UNION ALL
                             SELECT r.from_name, r.relation_type, 'in', r.id
                               FROM caxton_memory_relations r
                              WHERE r.scope = $1 AND r.owner = $2 AND r.to_name = walk.name
                         ) step
                         WHERE walk.depth < $4
                     )
                     SELECT relation_type, direction, name, depth FROM (
                         SELECT DISTINCT ON (name) name, depth, relation_type, direction, seq
                           FROM walk WHERE name <> $3 ORDER BY name, depth, seq
                     ) first ORDER BY depth, seq",
                        )
                        .await?,
                    &[&place.scope_str(), &place.owner, &name, &depth],
                )
                .await?;
            Ok(rows.iter().map(|r| (r.get::<_, i32>(3) as usize, related(r))).collect())
        })
        .await
    }

    async fn search_vector(&self, vector: Vec<f32>, q: &SearchQuery) -> Result<Vec<SearchHit>, MemoryError> {
        let limit = q.bounded_limit();
        let query = PgVector::from(vector);
        let agent = q.viewer.agent.as_ref().map(|a| a.to_ascii_lowercase());
        let scope = q.scope.map(scope_str);
        let filter = format!(
            "{} AND ($3::text IS NULL OR scope = $3) AND ($4::text IS NULL OR entity_type = $4)",
            visible(1, 2)
        );
        let candidates = (limit * 4) as i64;
        let (query, agent, filter) = (&query, &agent, &filter);
        let found = run(&self.metrics, "search", move || async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            // Few rows left by the filters: scan them exactly (a graph walk
            // would visit mostly rows the filter then drops).
            let few: i64 = tx
                .query_one(
                    &tx.prepare_cached(&format!(
                        "SELECT count(*) FROM (SELECT 1 FROM caxton_memory_observations WHERE {filter} LIMIT $5) f"
                    ))
                    .await?,
                    &[&q.viewer.workspace, &agent, &scope, &q.entity_type, &(self.exact_below as i64 + 1)],
                )
                .await?
                .get(0);
            let exact = few <= self.exact_below.min(i64::MAX as u64) as i64;
            if exact {
                tx.batch_execute("SET LOCAL enable_indexscan = off").await?;
            } else {
                tx.batch_execute(&format!(
                    "SET LOCAL hnsw.ef_search = {}; SET LOCAL hnsw.iterative_scan = relaxed_order",
                    self.ef_search.max(candidates as u64)
                ))
                .await?;
            }
            let rows = tx
                .query(
                    // One statement per path: a cached plan made with the
                    // index disabled must never serve a graph walk.
                    &tx.prepare_cached(&format!(
                        "SELECT id, entity_id, scope, owner, 1 - (embedding <=> $5) FROM caxton_memory_observations
                         WHERE {filter} ORDER BY embedding <=> $5 LIMIT $6 /* {} */",
                        if exact { "exact" } else { "hnsw" }
                    ))
                    .await?,
                    &[&q.viewer.workspace, &agent, &scope, &q.entity_type, &query, &candidates],
                )
                .await?;
            if exact {
                // The lookups below want their indexes back.
                tx.batch_execute("SET LOCAL enable_indexscan = on").await?;
            }
            let scored = rows.iter().filter_map(|r| {
                let score = r.get::<_, f64>(4) as f32;
                (score >= q.min_similarity).then(|| {
                    (r.get::<_, i64>(1), (r.get::<_, i64>(0), r.get::<_, String>(2), r.get::<_, String>(3)), score)
                })
            });
            let best = best_per_entity(scored, limit);
            let ids: Vec<i64> = best.iter().map(|((id, _, _), _)| *id).collect();
            let details = tx
                .query(
                    &tx.prepare_cached(
                        "SELECT o.id, e.name, e.entity_type, o.text FROM caxton_memory_observations o
                     JOIN caxton_memory_entities e ON e.id = o.entity_id WHERE o.id = ANY($1)",
                    )
                    .await?,
                    &[&ids],
                )
                .await?;
            let mut by_id: std::collections::HashMap<i64, (String, String, String)> =
                details.iter().map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3)))).collect();
            let mut hits = Vec::with_capacity(best.len());
            for ((id, scope, owner), score) in best {
                let Some((name, entity_type, text)) = by_id.remove(&id) else { continue };
                let place = Place { scope: scope_of(&scope)?, owner };
                let related = Self::relations_of(&tx, &place, &name).await?;
                hits.push(SearchHit {
                    name,
                    entity_type,
                    score,
                    observation: text,
                    scope: place.scope,
                    owner: place.owner,
                    related,
                });
            }
            // Read only: a lost answer here changes nothing, so it may be retried.
            tx.commit().await?;
            Ok(hits)
        })
        .await?;
        Ok(found)
    }

    async fn export_entities(&self, after: Option<i64>, limit: usize) -> Result<Page<ExportedEntity>, MemoryError> {
        let after = after.unwrap_or(0);
        run(&self.metrics, "export", move || async move {
            let client = self.client().await?;
            let rows = client
                .query(
                    &client.prepare_cached(&format!("SELECT {ENTITY_COLUMNS} FROM caxton_memory_entities WHERE id > $1 ORDER BY id LIMIT $2")).await?,
                    &[&after, &(limit as i64 + 1)],
                )
                .await?;
            let entities = rows.iter().take(limit).map(entity_row).collect::<Result<Vec<_>, _>>()?;
            let next = (rows.len() > limit).then(|| entities[limit - 1].0);
            let ids: Vec<i64> = entities.iter().map(|(id, _)| *id).collect();
            let obs = client
                .query(
                    &client.prepare_cached("SELECT entity_id, text, embedding FROM caxton_memory_observations WHERE entity_id = ANY($1) ORDER BY id").await?,
                    &[&ids],
                )
                .await?;
            let mut by_entity: std::collections::HashMap<i64, Vec<ExportedObservation>> =
                std::collections::HashMap::new();
            for r in obs {
                let v: PgVector = r.get(2);
                by_entity
                    .entry(r.get(0))
                    .or_default()
                    .push(ExportedObservation { text: r.get(1), embedding: Some(Vector(v.to_vec())) });
            }
            let page = entities
                .into_iter()
                .map(|(id, e)| ExportedEntity {
                    name: e.name,
                    entity_type: e.entity_type,
                    scope: e.scope,
                    owner: e.owner,
                    observations: by_entity.remove(&id).unwrap_or_default(),
                })
                .collect();
            Ok((page, next))
        })
        .await
    }

    async fn export_relations(&self, after: Option<i64>, limit: usize) -> Result<Page<Relation>, MemoryError> {
        let after = after.unwrap_or(0);
        run(&self.metrics, "export", move || async move {
            let client = self.client().await?;
            let rows = client
                .query(
                    &client
                        .prepare_cached(
                            "SELECT id, scope, owner, from_name, to_name, relation_type FROM caxton_memory_relations
                     WHERE id > $1 ORDER BY id LIMIT $2",
                        )
                        .await?,
                    &[&after, &(limit as i64 + 1)],
                )
                .await?;
            let next = (rows.len() > limit).then(|| rows[limit - 1].get::<_, i64>(0));
            let page = rows
                .iter()
                .take(limit)
                .map(|r| {
                    Ok(Relation {
                        scope: scope_of(r.get(1))?,
                        owner: r.get(2),
                        from: r.get(3),
                        to: r.get(4),
                        relation_type: r.get(5),
                    })
                })
                .collect::<Result<Vec<_>, Failure>>()?;
            Ok((page, next))
        })
        .await
    }
}
