//! Read access to this node's applied replica (`state.db`).
//!
//! Reads never go through Raft: they see what this node has applied. A caller
//! that needs to observe every write acknowledged anywhere first asks the
//! cluster for a linearizable point (`Cluster::linearizable`).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rusqlite::Connection;

use crate::storage::state_machine::{applied_id, open_replica};

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("replica query failed: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("replica reader task failed: {0}")]
    Join(String),
}

/// A small pool of read-only connections; SQLite WAL lets them read while
/// the state machine writes. At most [`READERS`] reads run at once, each on
/// a connection kept for the next: under load a read waits for one rather
/// than opening a connection of its own (schema parsed again, every
/// statement prepared again, a blocking thread more) and dropping it after.
#[derive(Clone)]
pub struct Replica {
    path: PathBuf,
    idle: Arc<Mutex<Vec<Connection>>>,
    permits: Arc<tokio::sync::Semaphore>,
}

/// Reads at once (and connections kept). More would only queue on the
/// cores, and each holds a blocking thread.
const READERS: usize = 8;

impl Replica {
    /// A digest of this node's application state and the log index it is
    /// at (see [`application_digest`]).
    pub async fn digest(&self) -> Result<(u64, String), ReadError> {
        self.read(application_digest).await
    }

    /// The replica's file (`state.db`).
    pub(crate) fn path(&self) -> &std::path::Path {
        &self.path
    }

    pub(crate) fn new(path: PathBuf) -> Self {
        Self { path, idle: Arc::new(Mutex::new(Vec::new())), permits: Arc::new(tokio::sync::Semaphore::new(READERS)) }
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
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).push(conn);
    }

    /// Runs `f` on a kept connection (opened if none is idle), then keeps
    /// it again. The caller holds a permit.
    fn on_kept_connection<R>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<R>) -> Result<R, ReadError> {
        let conn = self.checkout()?;
        let result = f(&conn);
        self.checkin(conn);
        Ok(result?)
    }

    /// Runs a read that finds its rows by key (a handful, through an index)
    /// on the caller's thread. Such a read takes microseconds; the hop to
    /// the blocking pool and back cost more, in thread switches (a sync
    /// message at one client made 35 of them; see docs/benchmarks.md,
    /// "Point reads on the caller's thread"). Scans, listings and anything
    /// that may take long go through [`read`](Self::read), which keeps the
    /// async workers free.
    pub async fn read_point<R, F>(&self, f: F) -> Result<R, ReadError>
    where
        F: FnOnce(&Connection) -> rusqlite::Result<R>,
    {
        let _permit = self.permits.acquire().await.map_err(|e| ReadError::Join(e.to_string()))?;
        self.on_kept_connection(f)
    }

    /// Runs a read on the blocking pool.
    pub async fn read<R, F>(&self, f: F) -> Result<R, ReadError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<R> + Send + 'static,
    {
        let this = self.clone();
        // The permit bounds the connections: one is checked out per permit.
        let permit = self.permits.clone().acquire_owned().await.map_err(|e| ReadError::Join(e.to_string()))?;
        tokio::task::spawn_blocking(move || {
            let result = this.on_kept_connection(f);
            drop(permit);
            result
        })
        .await
        .map_err(|e| ReadError::Join(e.to_string()))?
    }
}

/// A digest of the whole application state of `conn`'s database, and the
/// log index it is at, read in one transaction: replicas (and backups) at
/// the same index must have the same digest. Rows are hashed one by one and
/// the sorted row hashes hashed again, so storage order does not matter.
pub(crate) fn application_digest(conn: &Connection) -> rusqlite::Result<(u64, String)> {
    let tx = conn.unchecked_transaction()?;
    let index = applied_id(&tx)?.map(|l| l.index).unwrap_or(0);
    let mut tables: Vec<String> = {
        let mut s = tx.prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name != '_raft_meta'",
        )?;
        let names = s.query_map([], |r| r.get(0))?;
        names.collect::<rusqlite::Result<_>>()?
    };
    tables.sort();
    let mut whole = ring::digest::Context::new(&ring::digest::SHA256);
    for table in tables {
        let mut rows = Vec::new();
        let mut s = tx.prepare(&format!("SELECT * FROM \"{table}\""))?;
        let columns = s.column_count();
        let mut q = s.query([])?;
        while let Some(row) = q.next()? {
            let mut h = ring::digest::Context::new(&ring::digest::SHA256);
            for c in 0..columns {
                use rusqlite::types::ValueRef as V;
                match row.get_ref(c)? {
                    V::Null => h.update(b"n"),
                    V::Integer(i) => h.update(format!("i{i}").as_bytes()),
                    V::Real(f) => h.update(format!("r{}", f.to_bits()).as_bytes()),
                    V::Text(t) => {
                        h.update(format!("t{}:", t.len()).as_bytes());
                        h.update(t)
                    }
                    V::Blob(b) => {
                        h.update(format!("b{}:", b.len()).as_bytes());
                        h.update(b)
                    }
                }
            }
            rows.push(h.finish().as_ref().to_vec());
        }
        rows.sort();
        whole.update(table.as_bytes());
        for r in rows {
            whole.update(&r);
        }
    }
    Ok((index, crate::codec::hex(whole.finish().as_ref())))
}
