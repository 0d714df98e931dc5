//! The deployed tool servers as last read from the replica, kept in memory
//! until the state machine says they changed (its tool servers generation
//! moves before any caller learns of the commit). A call finds its server,
//! manifest and tools without a replica read or a manifest parse, and a
//! deploy or removal is seen by the first call after it is applied.

use std::collections::BTreeMap;
use std::sync::Arc;

use caxton_cluster::ReadError;
use parking_lot::Mutex;

use super::host::ToolInfo;
use super::manifest::Manifest;
use crate::state::{CaxtonState, Queries, ToolServerRow};

/// One deployed server, parsed once.
pub(super) struct Deployed {
    pub row: ToolServerRow,
    /// `Err(why)`: a manifest this version cannot read (kept stored,
    /// skipped in listings, named in the error of a call).
    pub manifest: Result<Manifest, String>,
    pub tools: Vec<ToolInfo>,
}

/// Every deployed server, by name.
pub(super) type Catalog = Arc<BTreeMap<String, Arc<Deployed>>>;

pub(super) struct CatalogCache {
    queries: Queries,
    state: Arc<CaxtonState>,
    cache: Mutex<Option<(u64, Catalog)>>,
}

impl CatalogCache {
    pub(super) fn new(queries: Queries, state: Arc<CaxtonState>) -> Self {
        Self { queries, state, cache: Mutex::new(None) }
    }

    pub(super) async fn get(&self) -> Result<Catalog, ReadError> {
        // The generation first: a change committed while we read leaves the
        // cache marked stale, so the next call reads again.
        let generation = self.state.tool_servers_generation();
        if let Some((g, catalog)) = self.cache.lock().as_ref() {
            if *g == generation {
                return Ok(catalog.clone());
            }
        }
        let rows = self.queries.tool_servers().await?;
        let catalog: Catalog = Arc::new(
            rows.into_iter()
                .map(|row| {
                    let manifest = Manifest::parse(&row.manifest);
                    let tools = serde_json::from_str(&row.tools).unwrap_or_default();
                    (row.name.clone(), Arc::new(Deployed { row, manifest, tools }))
                })
                .collect(),
        );
        *self.cache.lock() = Some((generation, catalog.clone()));
        Ok(catalog)
    }
}
