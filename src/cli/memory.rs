//! `caxton memory add|search|export|import`.

use reqwest::Method;
use serde_json::json;

use super::client::{ApiClient, CliError};
use super::{table, MemoryCommand};

fn query_string(pairs: &[(&str, Option<String>)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect::<String>()
    };
    pairs.iter().filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", enc(v)))).collect::<Vec<_>>().join("&")
}

pub async fn run(client: &ApiClient, cmd: &MemoryCommand, json_out: bool) -> Result<(), CliError> {
    match cmd {
        MemoryCommand::Add { name, observations, entity_type, scope, agent, workspace } => {
            let body = json!({"name": name, "entity_type": entity_type, "scope": scope, "agent": agent, "workspace": workspace, "observations": observations});
            let (_, v) = client
                .request(Method::POST, "/v1/memory/entities", Some(("application/json", body.to_string().into_bytes())))
                .await?;
            if json_out {
                println!("{v}")
            } else {
                println!("stored {} observation(s) for {name}", observations.len())
            }
        }
        MemoryCommand::Search { query, scope, agent, workspace, limit, min_similarity } => {
            let qs = query_string(&[
                ("q", Some(query.clone())),
                ("scope", scope.clone()),
                ("agent", agent.clone()),
                ("workspace", workspace.clone()),
                ("limit", Some(limit.to_string())),
                ("min_similarity", min_similarity.map(|m| m.to_string())),
            ]);
            let v = client.get_json(&format!("/v1/memory/search?{qs}")).await?;
            if json_out {
                println!("{v}");
            } else {
                let rows = v["results"]
                    .as_array()
                    .map(|r| {
                        r.iter()
                            .map(|h| {
                                vec![
                                    format!("{:.3}", h["score"].as_f64().unwrap_or(0.0)),
                                    h["name"].as_str().unwrap_or("").to_owned(),
                                    h["entity_type"].as_str().unwrap_or("").to_owned(),
                                    h["observation"].as_str().unwrap_or("").to_owned(),
                                ]
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                table::print(&["SCORE", "NAME", "TYPE", "OBSERVATION"], rows);
            }
        }
        MemoryCommand::Export { output } => {
            let resp = client.raw(Method::GET, "/v1/memory/export").await?;
            let written = match output {
                // Memory is private: the file is the user's alone (0600).
                Some(path) => {
                    let file = open_private(path).map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))?;
                    copy_body(resp, tokio::fs::File::from_std(file)).await
                }
                None => copy_body(resp, tokio::io::stdout()).await,
            };
            written.map_err(|e| CliError::Server(format!("the export did not complete: {e}")))?;
        }
        MemoryCommand::Import { file } => {
            let imported = import_file(client, file).await?;
            if json_out {
                println!("{}", json!({ "entities": imported }))
            } else {
                println!("imported {imported} entities")
            }
        }
    }
    Ok(())
}

/// Streams a response body into `out` (an export is never held whole).
async fn copy_body(resp: reqwest::Response, mut out: impl tokio::io::AsyncWrite + Unpin) -> std::io::Result<()> {
    use futures::StreamExt;
    use tokio::io::AsyncWriteExt;
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        out.write_all(&chunk.map_err(std::io::Error::other)?).await?;
    }
    out.flush().await
}

/// Entities sent per import request: each batch is one bounded body.
const IMPORT_BATCH: usize = 100;

/// Imports an export file in batches, read as it is sent: the file is
/// parsed on a blocking thread that hands batches over a bounded channel.
async fn import_file(client: &ApiClient, file: &std::path::Path) -> Result<usize, CliError> {
    let reader = std::fs::File::open(file).map_err(|e| CliError::Usage(format!("{}: {e}", file.display())))?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<import_stream::Batch>(2);
    let parse =
        tokio::task::spawn_blocking(move || import_stream::read(std::io::BufReader::new(reader), IMPORT_BATCH, tx));
    let send = |export: crate::memory::MemoryExport| async move {
        let body = serde_json::to_vec(&export).map_err(|e| CliError::Usage(e.to_string()))?;
        let (_, v) = client.request(Method::POST, "/v1/memory/import", Some(("application/json", body))).await?;
        Ok::<_, CliError>(v["entities"].as_u64().unwrap_or(0) as usize)
    };
    let (mut imported, mut batches) = (0, 0);
    while let Some(batch) = rx.recv().await {
        imported += send(batch.as_export()).await?;
        batches += 1;
    }
    match parse.await {
        Ok(Ok(version)) if batches == 0 => send(import_stream::empty(version)).await,
        Ok(Ok(_)) => Ok(imported),
        Ok(Err(e)) => {
            Err(CliError::Usage(format!("{}: {e} (the {imported} entities before it were imported)", file.display())))
        }
        Err(e) => Err(CliError::Usage(format!("{}: {e}", file.display()))),
    }
}

/// Creates (or truncates) `path`, readable and writable by its owner only.
fn open_private(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options.open(path)?;
    // An existing file keeps its mode on open: set it.
    #[cfg(unix)]
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    Ok(file)
}

/// Reading a MemoryExport as a stream of batches.
mod import_stream {
    use std::fmt;

    use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
    use tokio::sync::mpsc::Sender;

    use crate::memory::types::{ExportedEntity, Relation};
    use crate::memory::{MemoryExport, EXPORT_VERSION};

    /// Entities or relations to send, with the export's version.
    pub struct Batch {
        version: u32,
        entities: Vec<ExportedEntity>,
        relations: Vec<Relation>,
    }

    impl Batch {
        pub fn as_export(&self) -> MemoryExport {
            MemoryExport {
                version: self.version,
                exported_at_ms: 0,
                entities: self.entities.clone(),
                relations: self.relations.clone(),
            }
        }
    }

    struct Reader {
        batch: usize,
        tx: Sender<Batch>,
        version: u32,
    }

    impl Reader {
        fn send<E: serde::de::Error>(&self, entities: Vec<ExportedEntity>, relations: Vec<Relation>) -> Result<(), E> {
            self.tx
                .blocking_send(Batch { version: self.version, entities, relations })
                .map_err(|_| E::custom("the import stopped"))
        }
    }

    /// Parses `reader` as a MemoryExport, sending entities and then
    /// relations in batches of `batch`.
    /// Returns the export's version.
    pub fn read(reader: impl std::io::Read, batch: usize, tx: Sender<Batch>) -> Result<u32, serde_json::Error> {
        let mut de = serde_json::Deserializer::from_reader(reader);
        let mut r = Reader { batch, tx, version: EXPORT_VERSION };
        (&mut de).deserialize_map(&mut r)?;
        de.end()?;
        Ok(r.version)
    }

    /// An export with nothing in it (its version is still checked).
    pub fn empty(version: u32) -> MemoryExport {
        MemoryExport { version, exported_at_ms: 0, entities: Vec::new(), relations: Vec::new() }
    }

    impl<'de> Visitor<'de> for &mut Reader {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a memory export: {\"version\": 1, \"entities\": [...], \"relations\": [...]}")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            while let Some(key) = map.next_key::<String>()? {
                match key.as_str() {
                    "version" => self.version = map.next_value()?,
                    "entities" => map.next_value_seed(Items::<ExportedEntity>(&mut *self, std::marker::PhantomData))?,
                    "relations" => map.next_value_seed(Items::<Relation>(&mut *self, std::marker::PhantomData))?,
                    _ => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Ok(())
        }
    }

    /// One array of the export, sent in batches as it is read.
    struct Items<'r, T>(&'r mut Reader, std::marker::PhantomData<T>);

    trait Item: serde::de::DeserializeOwned {
        fn send<E: serde::de::Error>(reader: &Reader, items: Vec<Self>) -> Result<(), E>;
    }

    impl Item for ExportedEntity {
        fn send<E: serde::de::Error>(reader: &Reader, items: Vec<Self>) -> Result<(), E> {
            reader.send(items, Vec::new())
        }
    }

    impl Item for Relation {
        fn send<E: serde::de::Error>(reader: &Reader, items: Vec<Self>) -> Result<(), E> {
            reader.send(Vec::new(), items)
        }
    }

    impl<'de, T: Item> DeserializeSeed<'de> for Items<'_, T> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_seq(self)
        }
    }

    impl<'de, T: Item> Visitor<'de> for Items<'_, T> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an array")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            let mut batch = Vec::with_capacity(self.0.batch);
            while let Some(item) = seq.next_element::<T>()? {
                batch.push(item);
                if batch.len() == self.0.batch {
                    T::send(self.0, std::mem::take(&mut batch))?;
                }
            }
            if !batch.is_empty() {
                T::send(self.0, batch)?;
            }
            Ok(())
        }
    }
}
