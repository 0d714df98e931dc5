//! `apply` for memory commands.

use rusqlite::{params, OptionalExtension, Transaction};

use super::commands::Response;
use super::events::StateEvent;
use crate::memory::types::{NewObservation, Place};

fn entity_id(tx: &Transaction<'_>, place: &Place, name: &str) -> rusqlite::Result<Option<i64>> {
    tx.query_row(
        "SELECT id FROM memory_entities WHERE scope = ?1 AND owner = ?2 AND name = ?3",
        params![place.scope_str(), place.owner, name],
        |r| r.get(0),
    )
    .optional()
}

pub(crate) fn store(
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
            tx.execute(
                "UPDATE memory_entities SET updated_at = ?2, entity_type = ?3 WHERE id = ?1",
                params![id, at_ms, entity_type],
            )?;
            (id, false)
        }
        None => {
            tx.execute(
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

pub(crate) fn delete(
    tx: &Transaction<'_>,
    place: &Place,
    name: &str,
    stage: &mut Vec<StateEvent>,
) -> rusqlite::Result<Response> {
    let Some(id) = entity_id(tx, place, name)? else { return Ok(Response::Deleted(false)) };
    tx.execute("DELETE FROM memory_observations WHERE entity_id = ?1", [id])?;
    tx.execute("DELETE FROM memory_entities WHERE id = ?1", [id])?;
    tx.execute(
        "DELETE FROM memory_relations WHERE scope = ?1 AND owner = ?2 AND (from_name = ?3 OR to_name = ?3)",
        params![place.scope_str(), place.owner, name],
    )?;
    stage.push(StateEvent::MemoryRemoved { entity_id: id });
    Ok(Response::Deleted(true))
}

pub(crate) fn relate(
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
    tx.execute(
        "INSERT OR IGNORE INTO memory_relations(scope, owner, from_name, to_name, relation_type, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![place.scope_str(), place.owner, from, to, relation_type, at_ms],
    )?;
    Ok(Response::Done)
}
