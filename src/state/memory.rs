//! Memory: the records the replica keeps (entities in a place, their
//! observations with embeddings, relations), the commands that change them,
//! and the reads over them. Search itself (the vector index and the model)
//! lives in `memory/`; this file only knows the tables.

use std::collections::{HashSet, VecDeque};

use base64::Engine;
use caxton_cluster::ReadError;
use rusqlite::{params, OptionalExtension, Transaction};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use utoipa::ToSchema;

use super::envelope::{ApplyCtx, Proposal, Response};
use super::events::StateEvent;
use super::queries::Queries;
use super::schema::spelled;
pub use crate::config::MemoryScope;
use caxton_cluster::CachedSql;

/// Where an entity lives: a scope and, for agent-only and workspace
/// scopes, its owner (the agent's case-folded name, or the workspace name).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Place {
    pub scope: MemoryScope,
    pub owner: String,
}

impl Place {
    pub fn global() -> Self {
        Self { scope: MemoryScope::Global, owner: String::new() }
    }
    pub fn agent(name: &str) -> Self {
        Self { scope: MemoryScope::AgentOnly, owner: name.to_ascii_lowercase() }
    }
    pub fn workspace(name: &str) -> Self {
        Self { scope: MemoryScope::Workspace, owner: name.to_owned() }
    }
    pub fn scope_str(&self) -> &'static str {
        scope_str(self.scope)
    }
}

/// A scope as the replica's tables spell it (the storage format, which
/// predates the public snake_case spelling and stays as it is).
pub fn scope_str(s: MemoryScope) -> &'static str {
    match s {
        MemoryScope::AgentOnly => "agent-only",
        MemoryScope::Workspace => "workspace",
        MemoryScope::Global => "global",
    }
}

/// A scope in either spelling: the tables' (`agent-only`) or the public
/// one (`agent_only`).
pub fn parse_scope(s: &str) -> Option<MemoryScope> {
    MemoryScope::parse(s)
}

/// Who is reading. Isolation is enforced against this in every query: an
/// agent-only entity is visible only to its agent, a workspace entity only
/// within its workspace.
#[derive(Debug, Clone, Default)]
pub struct Viewer {
    pub agent: Option<String>,
    pub workspace: Option<String>,
}

impl Viewer {
    pub fn can_see(&self, place: &Place) -> bool {
        match place.scope {
            MemoryScope::Global => true,
            MemoryScope::Workspace => self.workspace.as_deref() == Some(place.owner.as_str()),
            MemoryScope::AgentOnly => self.agent.as_ref().is_some_and(|a| a.to_ascii_lowercase() == place.owner),
        }
    }
}

/// A 384-dim embedding; on the wire as base64 of little-endian f32s (a
/// third of the size of a JSON number array, and exact).
#[derive(Debug, Clone, PartialEq)]
pub struct Vector(pub Vec<f32>);

impl Vector {
    pub fn to_bytes(&self) -> Vec<u8> {
        self.0.iter().flat_map(|f| f.to_le_bytes()).collect()
    }
    pub fn from_bytes(b: &[u8]) -> Self {
        Self(b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
    }
}

impl Serialize for Vector {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(self.to_bytes()))
    }
}

impl<'de> Deserialize<'de> for Vector {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let bytes = base64::engine::general_purpose::STANDARD.decode(s).map_err(serde::de::Error::custom)?;
        Ok(Self::from_bytes(&bytes))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewObservation {
    pub text: String,
    pub embedding: Vector,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Observation {
    pub text: String,
    pub created_at_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Entity {
    pub name: String,
    pub entity_type: String,
    pub scope: MemoryScope,
    /// Agent (agent-only) or workspace (workspace); empty for global.
    pub owner: String,
    pub observations: Vec<Observation>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Relation {
    pub from: String,
    pub to: String,
    pub relation_type: String,
    pub scope: MemoryScope,
    pub owner: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Related {
    pub relation_type: String,
    /// `out`: this entity → name; `in`: name → this entity.
    pub direction: &'static str,
    pub name: String,
}

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

/// One observation as the vector index holds it (the vector aside).
#[derive(Debug, Clone)]
pub struct IndexedRow {
    pub observation_id: i64,
    pub entity_id: i64,
    pub place: Place,
    pub entity_type: String,
}

/// Creates the entity if needed and appends observations. Embeddings are
/// computed once by the receiving node and carried here, so replicas apply
/// without a model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoreEntity {
    pub place: Place,
    pub name: String,
    pub entity_type: String,
    pub observations: Vec<NewObservation>,
    pub at_ms: i64,
}

/// What a store did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    /// The entity was new.
    pub created: bool,
    pub observations: usize,
}

impl Proposal for StoreEntity {
    type Output = Stored;
    const NAME: &'static str = "StoreEntity";
    fn output(r: Response) -> Result<Stored, Response> {
        match r {
            Response::Stored { created, observations } => Ok(Stored { created, observations }),
            other => Err(other),
        }
    }
}

impl StoreEntity {
    pub(crate) fn apply(self, ctx: &mut ApplyCtx<'_, '_>) -> rusqlite::Result<Response> {
        store(ctx.tx, &self.place, &self.name, &self.entity_type, self.observations, self.at_ms, ctx.stage)
    }
}

/// Deletes an entity, its observations and its relations.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeleteEntity {
    pub place: Place,
    pub name: String,
}

impl Proposal for DeleteEntity {
    /// Whether there was such an entity.
    type Output = bool;
    const NAME: &'static str = "DeleteEntity";
    fn output(r: Response) -> Result<bool, Response> {
        match r {
            Response::Deleted(existed) => Ok(existed),
            other => Err(other),
        }
    }
}

impl DeleteEntity {
    pub(crate) fn apply(self, ctx: &mut ApplyCtx<'_, '_>) -> rusqlite::Result<Response> {
        delete(ctx.tx, &self.place, &self.name, ctx.stage)
    }
}

/// Relates two entities of one place.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Relate {
    pub place: Place,
    pub from: String,
    pub to: String,
    pub relation_type: String,
    pub at_ms: i64,
}

impl Proposal for Relate {
    /// `Err(name)`: that end does not exist in the place.
    type Output = Result<(), String>;
    const NAME: &'static str = "Relate";
    fn output(r: Response) -> Result<Result<(), String>, Response> {
        match r {
            Response::Done => Ok(Ok(())),
            Response::MissingEntity(name) => Ok(Err(name)),
            other => Err(other),
        }
    }
}

impl Relate {
    pub(crate) fn apply(self, ctx: &mut ApplyCtx<'_, '_>) -> rusqlite::Result<Response> {
        relate(ctx.tx, &self.place, &self.from, &self.to, &self.relation_type, self.at_ms)
    }
}

fn entity_id(tx: &Transaction<'_>, place: &Place, name: &str) -> rusqlite::Result<Option<i64>> {
    tx.row(
        "SELECT id FROM memory_entities WHERE scope = ?1 AND owner = ?2 AND name = ?3",
        params![place.scope_str(), place.owner, name],
        |r| r.get(0),
    )
    .optional()
}

fn store(
    tx: &Transaction<'_>,
    place: &Place,
    name: &str,
    entity_type: &str,
    observations: Vec<NewObservation>,
    at_ms: i64,
    stage: &mut Vec<StateEvent>,
) -> rusqlite::Result<Response> {
    let (id, created) = match entity_id(tx, place, name)? {
        Some(id) => {
            tx.exec(
                "UPDATE memory_entities SET updated_at = ?2, entity_type = ?3 WHERE id = ?1",
                params![id, at_ms, entity_type],
            )?;
            (id, false)
        }
        None => {
            tx.exec(
                "INSERT INTO memory_entities(scope, owner, name, entity_type, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
                params![place.scope_str(), place.owner, name, entity_type, at_ms],
            )?;
            (tx.last_insert_rowid(), true)
        }
    };
    let mut ids = Vec::with_capacity(observations.len());
    {
        let mut ins = tx.prepare_cached(
            "INSERT INTO memory_observations(entity_id, text, embedding, created_at) VALUES (?1, ?2, ?3, ?4)",
        )?;
        for o in &observations {
            ins.execute(params![id, o.text, o.embedding.to_bytes(), at_ms])?;
            ids.push(tx.last_insert_rowid());
        }
    }
    stage.push(StateEvent::MemoryAdded { observation_ids: ids });
    Ok(Response::Stored { created, observations: observations.len() })
}

fn delete(tx: &Transaction<'_>, place: &Place, name: &str, stage: &mut Vec<StateEvent>) -> rusqlite::Result<Response> {
    let Some(id) = entity_id(tx, place, name)? else { return Ok(Response::Deleted(false)) };
    tx.exec("DELETE FROM memory_observations WHERE entity_id = ?1", [id])?;
    tx.exec("DELETE FROM memory_entities WHERE id = ?1", [id])?;
    tx.exec(
        "DELETE FROM memory_relations WHERE scope = ?1 AND owner = ?2 AND (from_name = ?3 OR to_name = ?3)",
        params![place.scope_str(), place.owner, name],
    )?;
    stage.push(StateEvent::MemoryRemoved { entity_id: id });
    Ok(Response::Deleted(true))
}

fn relate(
    tx: &Transaction<'_>,
    place: &Place,
    from: &str,
    to: &str,
    relation_type: &str,
    at_ms: i64,
) -> rusqlite::Result<Response> {
    for end in [from, to] {
        if entity_id(tx, place, end)?.is_none() {
            return Ok(Response::MissingEntity(end.to_owned()));
        }
    }
    tx.exec(
        "INSERT OR IGNORE INTO memory_relations(scope, owner, from_name, to_name, relation_type, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![place.scope_str(), place.owner, from, to, relation_type, at_ms],
    )?;
    Ok(Response::Done)
}

fn entity_rows(
    c: &rusqlite::Connection,
    where_sql: &str,
    args: &[&dyn rusqlite::ToSql],
) -> rusqlite::Result<Vec<(i64, Entity)>> {
    let mut s = c.prepare(&format!(
        "SELECT id, scope, owner, name, entity_type, created_at, updated_at FROM memory_entities {where_sql} ORDER BY scope, owner, name"
    ))?;
    let rows = s.query_map(args, |r| {
        Ok((
            r.get::<_, i64>(0)?,
            Entity {
                scope: spelled(r, 1, "memory scope", parse_scope)?,
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

const OBSERVATION_SQL: &str = "SELECT o.id, o.entity_id, e.scope, e.owner, e.entity_type, o.embedding
     FROM memory_observations o JOIN memory_entities e ON e.id = o.entity_id";

/// One `OBSERVATION_SQL` row; `None` for a row of an unknown scope.
fn indexed_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Option<(IndexedRow, Vector)>> {
    let Some(scope) = parse_scope(&r.get::<_, String>(2)?) else { return Ok(None) };
    let vector = Vector::from_bytes(&r.get::<_, Vec<u8>>(5)?);
    let row = IndexedRow {
        observation_id: r.get(0)?,
        entity_id: r.get(1)?,
        place: Place { scope, owner: r.get(3)? },
        entity_type: r.get(4)?,
    };
    Ok(Some((row, vector)))
}

/// An observation a search found, with its entity.
#[derive(Debug, Clone)]
pub struct ObservationHit {
    pub name: String,
    pub entity_type: String,
    pub text: String,
    /// Entities one relation away.
    pub related: Vec<Related>,
}

impl Queries {
    /// Conversations still going on (initiated or in progress), for metrics.
    pub async fn active_conversations(&self) -> Result<u64, ReadError> {
        self.replica()
            .read(|c| {
                c.row("SELECT COUNT(*) FROM conversations WHERE state IN ('Initiated', 'InProgress')", [], |r| r.get(0))
            })
            .await
    }

    /// (entities, observations) in the whole memory, for metrics.
    pub async fn memory_counts(&self) -> Result<(u64, u64), ReadError> {
        self.replica()
            .read(|c| {
                let entities = c.row("SELECT COUNT(*) FROM memory_entities", [], |r| r.get(0))?;
                let observations = c.row("SELECT COUNT(*) FROM memory_observations", [], |r| r.get(0))?;
                Ok((entities, observations))
            })
            .await
    }

    pub async fn memory_entity(&self, place: &Place, name: &str) -> Result<Option<Entity>, ReadError> {
        let (scope, owner, name) = (place.scope_str(), place.owner.clone(), name.to_owned());
        let rows = self
            .replica()
            .read(move |c| entity_rows(c, "WHERE scope = ?1 AND owner = ?2 AND name = ?3", &[&scope, &owner, &name]))
            .await?;
        Ok(rows.into_iter().next().map(|(_, e)| e))
    }

    /// Every entity of every place; callers filter by what the viewer may see.
    pub async fn memory_entities(&self) -> Result<Vec<Entity>, ReadError> {
        Ok(self.replica().read(|c| entity_rows(c, "", &[])).await?.into_iter().map(|(_, e)| e).collect())
    }

    /// Entities within `depth` relations of `name`, with the relation that
    /// reached them, breadth first.
    pub async fn memory_neighbours(
        &self,
        place: &Place,
        name: &str,
        depth: usize,
    ) -> Result<Vec<(usize, Related)>, ReadError> {
        let (place, name) = (place.clone(), name.to_owned());
        self.replica()
            .read(move |c| {
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

    /// The observations `ids` (in their places), with their entities; `None`
    /// for one deleted since it was indexed.
    pub async fn memory_hits(&self, ids: Vec<(i64, Place)>) -> Result<Vec<Option<ObservationHit>>, ReadError> {
        self.replica()
            .read(move |c| {
                let mut out = Vec::with_capacity(ids.len());
                for (id, place) in ids {
                    let found = c
                        .row(
                            "SELECT e.name, e.entity_type, o.text FROM memory_observations o JOIN memory_entities e ON e.id = o.entity_id WHERE o.id = ?1",
                            [id],
                            |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)),
                        )
                        .optional()?;
                    out.push(match found {
                        Some((name, entity_type, text)) => {
                            let related = relations_of(c, &place, &name)?;
                            Some(ObservationHit { name, entity_type, text, related })
                        }
                        None => None,
                    });
                }
                Ok(out)
            })
            .await
    }

    /// Entities with ids above `after`, with their observations and
    /// vectors, at most `limit`; and the cursor of the next page.
    pub async fn memory_export_entities(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<(Vec<ExportedEntity>, Option<i64>), ReadError> {
        self.replica()
            .read(move |c| {
                let mut s = c.prepare_cached(
                    "SELECT id, scope, owner, name, entity_type FROM memory_entities WHERE id > ?1 ORDER BY id LIMIT ?2",
                )?;
                let rows = s
                    .query_map(params![after, limit as i64 + 1], |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            spelled(r, 1, "memory scope", parse_scope)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, String>(3)?,
                            r.get::<_, String>(4)?,
                        ))
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                let next = (rows.len() > limit).then(|| rows[limit - 1].0);
                let mut obs = c.prepare_cached(
                    "SELECT text, embedding FROM memory_observations WHERE entity_id = ?1 ORDER BY id",
                )?;
                let mut entities = Vec::with_capacity(limit);
                for (id, scope, owner, name, entity_type) in rows.into_iter().take(limit) {
                    let observations = obs
                        .query_map([id], |r| {
                            Ok(ExportedObservation {
                                text: r.get(0)?,
                                embedding: Some(Vector::from_bytes(&r.get::<_, Vec<u8>>(1)?)),
                            })
                        })?
                        .collect::<rusqlite::Result<_>>()?;
                    entities.push(ExportedEntity { name, entity_type, scope, owner, observations });
                }
                Ok((entities, next))
            })
            .await
    }

    /// Relations after the row `after`, in the order they were made, at
    /// most `limit`; and the cursor of the next page.
    pub async fn memory_export_relations(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<(Vec<Relation>, Option<i64>), ReadError> {
        self.replica()
            .read(move |c| {
                let mut r = c.prepare_cached(
                    "SELECT rowid, scope, owner, from_name, to_name, relation_type FROM memory_relations
                     WHERE rowid > ?1 ORDER BY rowid LIMIT ?2",
                )?;
                let rows = r
                    .query_map(params![after, limit as i64 + 1], |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            Relation {
                                scope: spelled(r, 1, "memory scope", parse_scope)?,
                                owner: r.get(2)?,
                                from: r.get(3)?,
                                to: r.get(4)?,
                                relation_type: r.get(5)?,
                            },
                        ))
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                let next = (rows.len() > limit).then(|| rows[limit - 1].0);
                Ok((rows.into_iter().take(limit).map(|(_, r)| r).collect(), next))
            })
            .await
    }

    /// Feeds observations to `each` (all of them in id order, or those of
    /// `ids`) without collecting them: a 100K-vector index is rebuilt in
    /// one pass over the replica. Returns how many were fed.
    pub async fn scan_observations(
        &self,
        ids: Option<Vec<i64>>,
        mut each: impl FnMut(IndexedRow, Vector) + Send + 'static,
    ) -> Result<usize, ReadError> {
        self.replica()
            .read(move |c| {
                let mut fed = 0;
                let mut feed = |row: Option<(IndexedRow, Vector)>| {
                    if let Some((row, vector)) = row {
                        each(row, vector);
                        fed += 1;
                    }
                };
                match ids {
                    None => {
                        let mut s = c.prepare(&format!("{OBSERVATION_SQL} ORDER BY o.id"))?;
                        for row in s.query_map([], indexed_row)? {
                            feed(row?);
                        }
                    }
                    Some(ids) => {
                        let mut s = c.prepare_cached(&format!("{OBSERVATION_SQL} WHERE o.id = ?1"))?;
                        for id in ids {
                            feed(s.query_row([id], indexed_row).optional()?.flatten());
                        }
                    }
                }
                Ok(fed)
            })
            .await
    }
}
