//! `caxton memory import FILE`: a MemoryExport read as it is sent. The file
//! is read twice, both times streamed: once for its `version` (wherever the
//! key is), then for its records, which a blocking thread hands over a
//! bounded channel in batches of bounded size. An entity with more
//! observations than one request may carry goes in several (a store
//! appends). Nothing is built whole in memory but the relations a file
//! lists before its entities.

use std::fmt;
use std::path::Path;

use reqwest::Method;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use tokio::sync::mpsc::Sender;

use super::client::{ApiClient, CliError};
use crate::memory::types::{ExportedEntity, ExportedObservation, Relation};
use crate::memory::MemoryExport;

/// Most entities, observations and bytes (text + vectors on the wire) one
/// request carries: well inside the server's body and per-request limits.
const BATCH_ENTITIES: usize = 100;
const BATCH_OBSERVATIONS: usize = 200;
const BATCH_BYTES: usize = 512 * 1024;
/// An observation's vector as base64 JSON, about.
const VECTOR_BYTES: usize = 2100;

/// One request's worth, and how many entities it completes.
pub struct Batch {
    export: MemoryExport,
    completes: usize,
}

pub async fn import_file(client: &ApiClient, file: &Path) -> Result<usize, CliError> {
    let open = || {
        std::fs::File::open(file)
            .map(std::io::BufReader::new)
            .map_err(|e| CliError::Usage(format!("{}: {e}", file.display())))
    };
    let named = |e: String| CliError::Usage(format!("{}: {e}", file.display()));
    let first = open()?;
    let version = tokio::task::spawn_blocking(move || version_of(first))
        .await
        .map_err(|e| named(e.to_string()))?
        .map_err(|e| named(e.to_string()))?;
    let reader = open()?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Batch>(2);
    let parse = tokio::task::spawn_blocking(move || read(reader, version, tx));
    let send = |export: MemoryExport| async move {
        let body = serde_json::to_vec(&export).map_err(|e| CliError::Usage(e.to_string()))?;
        client.request(Method::POST, "/v1/memory/import", Some(("application/json", body))).await.map(|_| ())
    };
    let (mut imported, mut batches) = (0, 0);
    while let Some(batch) = rx.recv().await {
        send(batch.export).await?;
        imported += batch.completes;
        batches += 1;
    }
    match parse.await {
        // Nothing to send: the server still checks the version.
        Ok(Ok(())) if batches == 0 => send(export(version, Vec::new(), Vec::new())).await.map(|()| 0),
        Ok(Ok(())) => Ok(imported),
        Ok(Err(e)) => Err(named(format!("{e} (the {imported} entities before it were imported)"))),
        Err(e) => Err(named(e.to_string())),
    }
}

fn export(version: u32, entities: Vec<ExportedEntity>, relations: Vec<Relation>) -> MemoryExport {
    MemoryExport { version, exported_at_ms: 0, entities, relations }
}

/// The file's `version`, read without keeping anything else.
fn version_of(reader: impl std::io::Read) -> Result<u32, serde_json::Error> {
    struct Version;
    impl<'de> Visitor<'de> for Version {
        type Value = Option<u32>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a memory export: {\"version\": 1, \"entities\": [...], \"relations\": [...]}")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<u32>, A::Error> {
            let mut version = None;
            while let Some(key) = map.next_key::<String>()? {
                if key == "version" {
                    version = Some(map.next_value()?);
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            Ok(version)
        }
    }
    let mut de = serde_json::Deserializer::from_reader(reader);
    let version = de.deserialize_map(Version)?;
    de.end()?;
    version.ok_or_else(|| serde::de::Error::custom("no `version` key: not a memory export"))
}

/// Streams the records of an export of `version` into `tx`.
fn read(reader: impl std::io::Read, version: u32, tx: Sender<Batch>) -> Result<(), serde_json::Error> {
    let mut de = serde_json::Deserializer::from_reader(reader);
    let mut r = Reader { tx, version, pending: Pending::default(), entities_done: false, early_relations: Vec::new() };
    let parsed = (&mut de).deserialize_map(&mut r).and_then(|()| de.end());
    // Whatever was read whole before an error is sent: nothing accepted is lost.
    r.flush()?;
    parsed?;
    let early = std::mem::take(&mut r.early_relations);
    for chunk in early.chunks(BATCH_ENTITIES * 10) {
        r.send(Vec::new(), chunk.to_vec(), 0)?;
    }
    Ok(())
}

#[derive(Default)]
struct Pending {
    entities: Vec<ExportedEntity>,
    observations: usize,
    bytes: usize,
    completes: usize,
}

struct Reader {
    tx: Sender<Batch>,
    version: u32,
    pending: Pending,
    entities_done: bool,
    /// Relations listed before the entities they join: sent after them.
    early_relations: Vec<Relation>,
}

impl Reader {
    fn send<E: serde::de::Error>(
        &self,
        entities: Vec<ExportedEntity>,
        relations: Vec<Relation>,
        completes: usize,
    ) -> Result<(), E> {
        let batch = Batch { export: export(self.version, entities, relations), completes };
        self.tx.blocking_send(batch).map_err(|_| E::custom("the import stopped"))
    }

    fn flush<E: serde::de::Error>(&mut self) -> Result<(), E> {
        let pending = std::mem::take(&mut self.pending);
        if pending.entities.is_empty() {
            return Ok(());
        }
        self.send(pending.entities, Vec::new(), pending.completes)
    }

    /// Queues an entity, in as many parts as the batch bounds need.
    fn entity<E: serde::de::Error>(&mut self, mut e: ExportedEntity) -> Result<(), E> {
        let size = |o: &ExportedObservation| o.text.len() + VECTOR_BYTES;
        loop {
            let room_obs = BATCH_OBSERVATIONS - self.pending.observations;
            let mut take = 0;
            let mut bytes = e.name.len() + e.entity_type.len() + e.owner.len();
            while take < e.observations.len()
                && take < room_obs
                && self.pending.bytes + bytes + size(&e.observations[take]) <= BATCH_BYTES
            {
                bytes += size(&e.observations[take]);
                take += 1;
            }
            let whole = take == e.observations.len();
            if take == 0 && !whole && !self.pending.entities.is_empty() {
                self.flush()?;
                continue;
            }
            // An observation alone over the bytes bound still goes, by itself.
            let take = take.max(usize::from(!whole));
            let rest = e.observations.split_off(take);
            let part = ExportedEntity { observations: std::mem::replace(&mut e.observations, rest), ..e.clone() };
            self.pending.entities.push(part);
            self.pending.observations += take;
            self.pending.bytes += bytes;
            if e.observations.is_empty() {
                self.pending.completes += 1;
                if self.pending.entities.len() >= BATCH_ENTITIES {
                    self.flush()?;
                }
                return Ok(());
            }
            self.flush()?;
        }
    }
}

impl<'de> Visitor<'de> for &mut Reader {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a memory export: {\"version\": 1, \"entities\": [...], \"relations\": [...]}")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "entities" => {
                    map.next_value_seed(Entities(&mut *self))?;
                    self.flush()?;
                    self.entities_done = true;
                }
                "relations" => map.next_value_seed(Relations(&mut *self))?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

struct Entities<'r>(&'r mut Reader);

impl<'de> DeserializeSeed<'de> for Entities<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Entities<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of entities")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(e) = seq.next_element::<ExportedEntity>()? {
            self.0.entity(e)?;
        }
        Ok(())
    }
}

struct Relations<'r>(&'r mut Reader);

impl<'de> DeserializeSeed<'de> for Relations<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Relations<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of relations")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut batch = Vec::new();
        while let Some(r) = seq.next_element::<Relation>()? {
            if !self.0.entities_done {
                self.0.early_relations.push(r);
                continue;
            }
            batch.push(r);
            if batch.len() == BATCH_ENTITIES * 10 {
                self.0.send(Vec::new(), std::mem::take(&mut batch), 0)?;
            }
        }
        if !batch.is_empty() {
            self.0.send(Vec::new(), batch, 0)?;
        }
        Ok(())
    }
}
