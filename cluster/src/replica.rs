//! Read access to this node's applied replica (`state.db`).
//!
//! Reads never go through Raft: they see what this node has applied. A caller
//! that needs to observe every write acknowledged anywhere first asks the
//! cluster for a linearizable point (`Cluster::linearizable`).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rusqlite::Connection;

use crate::storage::state_machine::open_replica;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("replica query failed: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("replica reader task failed: {0}")]
    Join(String),
}

/// A small pool of read-only connections; SQLite WAL lets them read while
/// the state machine writes.
#[derive(Clone)]
pub struct Replica {
    path: PathBuf,
    idle: Arc<Mutex<Vec<Connection>>>,
}

const MAX_IDLE: usize = 8;

impl Replica {
    pub(crate) fn new(path: PathBuf) -> Self {
        Self { path, idle: Arc::new(Mutex::new(Vec::new())) }
    }

    fn checkout(&self) -> rusqlite::Result<Connection> {
        if let Some(conn) = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop() {
            return Ok(conn);
        }
        let conn = open_replica(&self.path)?;
        conn.pragma_update(None, "query_only", true)?;
        Ok(conn)
    }

    fn checkin(&self, conn: Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }

    /// Runs a read on the blocking pool.
    pub async fn read<R, F>(&self, f: F) -> Result<R, ReadError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<R> + Send + 'static,
    {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let conn = this.checkout()?;
            let result = f(&conn);
            this.checkin(conn);
            Ok(result?)
        })
        .await
        .map_err(|e| ReadError::Join(e.to_string()))?
    }
}
