//! The Raft log and vote, kept in `raft.db` (SQLite, WAL, synchronous=FULL).
//!
//! `append` commits its transaction before it reports the entries flushed,
//! so an acknowledged write is on disk before openraft counts it toward a
//! quorum. All SQLite work runs under `block_in_place`: it is short, and the
//! openraft core must not observe a half-done write.

// openraft's storage traits return its `StorageError`, large by design.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::{Arc, Mutex};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, OptionalSend, RaftLogReader};
use rusqlite::{params, Connection, OptionalExtension};

use crate::cached_sql::CachedSql;
use crate::codec;
use crate::types::{Entry, LogId, StorageError, TypeConfig, Vote};

#[derive(Clone)]
pub struct LogStore {
    conn: Arc<Mutex<Connection>>,
}

fn io_err(subject: ErrorSubject<u64>, verb: ErrorVerb, e: impl std::error::Error + 'static) -> StorageError {
    StorageError::from_io_error(subject, verb, std::io::Error::other(e.to_string()))
}

fn read_err(e: impl std::error::Error + 'static) -> StorageError {
    io_err(ErrorSubject::Logs, ErrorVerb::Read, e)
}

fn write_err(e: impl std::error::Error + 'static) -> StorageError {
    io_err(ErrorSubject::Logs, ErrorVerb::Write, e)
}

impl LogStore {
    pub fn open(path: &Path) -> rusqlite::Result<Self> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS log (idx INTEGER PRIMARY KEY, entry BLOB NOT NULL);
             CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);",
        )?;
        Ok(Self { conn: Arc::new(Mutex::new(conn)) })
    }

    fn with<R>(&self, f: impl FnOnce(&mut Connection) -> R) -> R {
        tokio::task::block_in_place(|| {
            let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut conn)
        })
    }

    fn get_meta<T: serde::de::DeserializeOwned>(conn: &Connection, key: &str) -> Result<Option<T>, StorageError> {
        let raw: Option<Vec<u8>> =
            conn.row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0)).optional().map_err(read_err)?;
        raw.map(|b| codec::decode(&b).map_err(read_err)).transpose()
    }

    fn put_meta<T: serde::Serialize>(conn: &Connection, key: &str, value: &T) -> rusqlite::Result<()> {
        conn.exec(
            "INSERT INTO meta(key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            params![key, codec::encode(value)],
        )?;
        Ok(())
    }

    /// The id of the cluster this log belongs to, once known (see `identity`).
    pub fn cluster_id(&self) -> rusqlite::Result<Option<String>> {
        self.with(|c| {
            c.query_row("SELECT value FROM meta WHERE key = 'cluster_id'", [], |r| r.get::<_, Vec<u8>>(0)).optional()
        })
        .map(|raw| raw.map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    pub fn set_cluster_id(&self, id: &str) -> rusqlite::Result<()> {
        self.with(|c| {
            c.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('cluster_id', ?1)", [id.as_bytes()]).map(|_| ())
        })
    }

    /// This data directory's incarnation, drawn the first time it is opened.
    pub fn incarnation(&self) -> rusqlite::Result<String> {
        self.with(|c| {
            let fresh = uuid::Uuid::new_v4().to_string();
            c.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('incarnation', ?1)", [fresh.as_bytes()])?;
            c.query_row("SELECT value FROM meta WHERE key = 'incarnation'", [], |r| r.get::<_, Vec<u8>>(0))
                .map(|b| String::from_utf8_lossy(&b).into_owned())
        })
    }

    /// The last log id: the newest entry's, else the last purged one's.
    pub(crate) fn last_log_id(&self) -> Result<Option<LogId>, StorageError> {
        self.with(|c| match Self::newest_entry_id(c)? {
            Some(newest) => Ok(Some(newest)),
            None => Self::get_meta(c, "last_purged"),
        })
    }

    /// The id of the newest entry the log holds, if it holds any.
    fn newest_entry_id(c: &Connection) -> Result<Option<LogId>, StorageError> {
        let last: Option<Vec<u8>> =
            c.row("SELECT entry FROM log ORDER BY idx DESC LIMIT 1", [], |r| r.get(0)).optional().map_err(read_err)?;
        last.map(|b| codec::decode::<Entry>(&b).map(|e| e.log_id).map_err(read_err)).transpose()
    }

    /// The entries with indexes `start..=end`, in order.
    fn entries(&self, start: i64, end: i64) -> Result<Vec<Entry>, StorageError> {
        self.with(|c| {
            let mut stmt = c
                .prepare_cached("SELECT entry FROM log WHERE idx >= ?1 AND idx <= ?2 ORDER BY idx")
                .map_err(read_err)?;
            let rows = stmt.query_map(params![start, end], |r| r.get::<_, Vec<u8>>(0)).map_err(read_err)?;
            rows.map(|row| codec::decode(&row.map_err(read_err)?).map_err(read_err)).collect()
        })
    }

    /// Every entry after `index`, in order (offline recovery reads them).
    pub(crate) fn entries_after(&self, index: Option<u64>) -> Result<Vec<Entry>, StorageError> {
        self.entries(index.map(|i| i as i64 + 1).unwrap_or(0), i64::MAX)
    }

    /// Appends one entry while no Raft runs over this store (offline
    /// recovery): durable when this returns.
    pub(crate) fn append_offline(&self, entry: &Entry) -> rusqlite::Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO log(idx, entry) VALUES (?1, ?2)",
                params![entry.log_id.index as i64, codec::encode(entry)],
            )
            .map(|_| ())
        })
    }

    /// Makes an empty log start after `last` (everything up to it is in the
    /// replica), with `vote` saved: a log founded on a restored replica.
    pub(crate) fn start_after(&self, last: LogId, vote: &Vote) -> rusqlite::Result<()> {
        self.with(|c| {
            let tx = c.transaction()?;
            Self::put_meta(&tx, "last_purged", &last)?;
            Self::put_meta(&tx, "vote", vote)?;
            tx.execute("DELETE FROM log", [])?;
            tx.commit()
        })
    }

    /// Number of entries physically present (for status and tests of compaction).
    pub fn stored_entries(&self) -> u64 {
        self.with(|c| c.query_row("SELECT COUNT(*) FROM log", [], |r| r.get::<_, i64>(0)).unwrap_or(0) as u64)
    }
}

fn bound_to_sql(range: &impl RangeBounds<u64>) -> (i64, i64) {
    let start = match range.start_bound() {
        Bound::Included(&s) => s as i64,
        Bound::Excluded(&s) => s as i64 + 1,
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => e.min(i64::MAX as u64) as i64,
        Bound::Excluded(&e) => (e as i64).saturating_sub(1),
        Bound::Unbounded => i64::MAX,
    };
    (start, end)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let (start, end) = bound_to_sql(&range);
        self.entries(start, end)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        self.with(|c| {
            let last_purged: Option<LogId> = Self::get_meta(c, "last_purged")?;
            let last_log_id = Self::newest_entry_id(c)?.or(last_purged);
            Ok(LogState { last_purged_log_id: last_purged, last_log_id })
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.with(|c| Self::put_meta(c, "vote", vote)).map_err(|e| io_err(ErrorSubject::Vote, ErrorVerb::Write, e))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.with(|c| Self::get_meta(c, "vote"))
    }

    /// Not a durability point, so not synced: openraft awaits this between
    /// a commit and its apply, and an fsync here was one of the two per
    /// commit. The pointer survives a process crash (the write is in the
    /// OS's hands); a power loss may take it back, and then openraft starts
    /// from the replica's applied index (`committed < last_applied` is
    /// raised to it) and applies the rest once a leader commits again,
    /// which is its documented behaviour when the pointer is not saved.
    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.with(|c| {
            c.exec("PRAGMA synchronous = NORMAL", [])?;
            let saved = Self::put_meta(c, "committed", &committed);
            c.exec("PRAGMA synchronous = FULL", [])?;
            saved
        })
        .map_err(write_err)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        self.with(|c| Ok(Self::get_meta::<Option<LogId>>(c, "committed")?.flatten()))
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let result = self.with(|c| -> rusqlite::Result<()> {
            let tx = c.transaction()?;
            {
                let mut stmt = tx.prepare_cached("INSERT OR REPLACE INTO log(idx, entry) VALUES (?1, ?2)")?;
                for entry in entries {
                    stmt.execute(params![entry.log_id.index as i64, codec::encode(&entry)])?;
                }
            }
            tx.commit()
        });
        match result {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(write_err(e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.with(|c| c.execute("DELETE FROM log WHERE idx >= ?1", [log_id.index as i64]))
            .map(|_| ())
            .map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.with(|c| -> rusqlite::Result<()> {
            let tx = c.transaction()?;
            Self::put_meta(&tx, "last_purged", &log_id)?;
            tx.execute("DELETE FROM log WHERE idx <= ?1", [log_id.index as i64])?;
            tx.commit()
        })
        .map_err(write_err)
    }
}
