//! Adapts an [`Application`] to openraft's state machine over `state.db`.
//!
//! The applied log id and the membership are written in the same
//! transaction as the commands they cover, so the replica can never be ahead
//! of or behind its own bookkeeping. A snapshot is `VACUUM INTO` a file: one
//! consistent read of the whole replica, bookkeeping included.

// openraft's storage traits return its `StorageError`, large by design.
#![allow(clippy::result_large_err)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, ErrorSubject, ErrorVerb, RaftSnapshotBuilder, SnapshotMeta as RaftSnapshotMeta};
use rusqlite::{params, Connection, DatabaseName, OptionalExtension};

use crate::application::Application;
use crate::cached_sql::CachedSql;
use crate::codec;
use crate::types::{Entry, LogId, Reply, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig};

const META_DDL: &str = "CREATE TABLE IF NOT EXISTS _raft_meta (key TEXT PRIMARY KEY, value BLOB NOT NULL)";

fn sm_err(verb: ErrorVerb, e: impl std::fmt::Display) -> StorageError {
    StorageError::from_io_error(ErrorSubject::StateMachine, verb, std::io::Error::other(e.to_string()))
}

fn snap_err(verb: ErrorVerb, e: impl std::fmt::Display) -> StorageError {
    StorageError::from_io_error(ErrorSubject::Snapshot(None), verb, std::io::Error::other(e.to_string()))
}

pub(crate) fn open_replica(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // The log (synchronous=FULL) is the durability point; the replica can be
    // re-derived from it, so NORMAL is enough here.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    // The hot statements (a message's accept, reply, reads) are prepared
    // once per connection, not parsed per message; room for all of them.
    conn.set_prepared_statement_cache_capacity(256);
    Ok(conn)
}

fn read_meta<T: serde::de::DeserializeOwned>(conn: &Connection, key: &str) -> rusqlite::Result<Option<T>> {
    let raw: Option<Vec<u8>> =
        conn.row("SELECT value FROM _raft_meta WHERE key = ?1", [key], |r| r.get(0)).optional()?;
    Ok(raw.and_then(|b| codec::decode(&b).ok()))
}

fn write_meta<T: serde::Serialize>(conn: &Connection, key: &str, value: &T) -> rusqlite::Result<()> {
    conn.exec(
        "INSERT INTO _raft_meta(key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        params![key, codec::encode(value)],
    )?;
    Ok(())
}

/// The last log id the replica (or a copy of it) has applied.
pub(crate) fn applied_id(conn: &Connection) -> rusqlite::Result<Option<LogId>> {
    Ok(read_meta::<Option<LogId>>(conn, "last_applied")?.flatten())
}

pub(crate) fn applied_from(conn: &Connection) -> rusqlite::Result<(Option<LogId>, StoredMembership)> {
    let applied = applied_id(conn)?;
    let membership = read_meta::<StoredMembership>(conn, "membership")?.unwrap_or_default();
    Ok((applied, membership))
}

/// Where snapshots live: the latest one is kept as `current.db` + `current.meta`.
#[derive(Clone)]
struct SnapshotDir {
    dir: PathBuf,
}

impl SnapshotDir {
    fn db(&self) -> PathBuf {
        self.dir.join("current.db")
    }
    fn meta(&self) -> PathBuf {
        self.dir.join("current.meta")
    }
    fn tmp(&self, tag: &str) -> PathBuf {
        self.dir.join(format!("incoming-{tag}-{}.db", std::process::id()))
    }
    /// Where a snapshot sent by the leader is written, chunk by chunk.
    fn receiving(&self) -> PathBuf {
        self.tmp("receive")
    }

    /// Publishes a finished snapshot file atomically (rename), then its
    /// meta; both, and the directory entries naming them, are on disk before
    /// this returns, because openraft purges the log behind a snapshot.
    fn publish(&self, file: &Path, meta: &SnapshotMeta) -> std::io::Result<()> {
        std::fs::File::open(file)?.sync_all()?;
        std::fs::rename(file, self.db())?;
        let tmp_meta = self.dir.join("current.meta.tmp");
        std::fs::write(&tmp_meta, codec::encode(meta))?;
        std::fs::File::open(&tmp_meta)?.sync_all()?;
        std::fs::rename(tmp_meta, self.meta())?;
        std::fs::File::open(&self.dir)?.sync_all()
    }

    fn load(&self) -> std::io::Result<Option<Snapshot>> {
        let meta_bytes = match std::fs::read(self.meta()) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let meta: SnapshotMeta = codec::decode(&meta_bytes).map_err(std::io::Error::other)?;
        Ok(Some(Snapshot { meta, snapshot: Box::new(self.open_current()?) }))
    }

    /// The published snapshot, to be read in chunks. Opened, it stays
    /// readable even if a newer snapshot replaces it meanwhile.
    fn open_current(&self) -> std::io::Result<tokio::fs::File> {
        std::fs::File::open(self.db()).map(tokio::fs::File::from_std)
    }
}

pub struct StateMachine<A: Application> {
    app: Arc<A>,
    path: PathBuf,
    writer: Arc<Mutex<Connection>>,
    snapshots: SnapshotDir,
    /// Entries recorded as failed, as `_raft_meta.failed_entries` holds it.
    failed: Arc<std::sync::atomic::AtomicU64>,
    observer: crate::observer::ObserverSlot,
}

impl<A: Application> StateMachine<A> {
    pub fn open(app: Arc<A>, path: &Path, snapshot_dir: &Path) -> rusqlite::Result<Self> {
        std::fs::create_dir_all(snapshot_dir).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        let conn = open_replica(path)?;
        conn.execute_batch(META_DDL)?;
        app.migrate(&conn)?;
        let failed = Arc::new(std::sync::atomic::AtomicU64::new(failed_entries(&conn)?));
        Ok(Self {
            app,
            path: path.to_path_buf(),
            writer: Arc::new(Mutex::new(conn)),
            snapshots: SnapshotDir { dir: snapshot_dir.to_path_buf() },
            failed,
            observer: Default::default(),
        })
    }

    /// Reports applied batches and built snapshots to whoever the slot holds.
    pub(crate) fn observed_by(mut self, observer: crate::observer::ObserverSlot) -> Self {
        self.observer = observer;
        self
    }

    /// A counter the cluster's status reads (kept equal to the replica's).
    pub(crate) fn failed_counter(&self) -> Arc<std::sync::atomic::AtomicU64> {
        self.failed.clone()
    }

    /// Re-reads the count after the replica was replaced by a snapshot.
    fn refresh_failed(&self) {
        if let Ok(n) = self.with_writer(|conn| failed_entries(conn)) {
            self.failed.store(n, std::sync::atomic::Ordering::Relaxed);
        }
    }

    fn with_writer<R>(&self, f: impl FnOnce(&mut Connection) -> R) -> R {
        tokio::task::block_in_place(|| {
            let mut conn = self.writer.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut conn)
        })
    }

    fn apply_batch(&self, entries: Vec<Entry>) -> Result<Vec<Reply>, StorageError> {
        let (started, count) = (std::time::Instant::now(), entries.len());
        let replies = self.apply_batch_unobserved(entries)?;
        if let Some(observer) = self.observer.get() {
            observer.applied(count, started.elapsed());
        }
        Ok(replies)
    }

    fn apply_batch_unobserved(&self, entries: Vec<Entry>) -> Result<Vec<Reply>, StorageError> {
        let app = self.app.clone();
        let result = self.with_writer(|conn| -> Result<Vec<Reply>, StorageError> {
            // IMMEDIATE: the write lock is taken (waiting up to the busy
            // timeout) before the first read, so the batch never has to
            // upgrade a read snapshot to a write, which SQLite refuses at once
            // with "database is locked" when the file changed in between.
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(|e| sm_err(ErrorVerb::Write, e))?;
            let mut replies = Vec::new();
            let mut last = None;
            for entry in entries {
                last = Some(entry.log_id);
                let reply = match entry.payload {
                    EntryPayload::Blank => Reply::default(),
                    EntryPayload::Normal(payload) => apply_entry(&*app, &tx, entry.log_id.index, &payload.0)?,
                    EntryPayload::Membership(m) => {
                        write_meta(&tx, "membership", &StoredMembership::new(Some(entry.log_id), m))
                            .map_err(|e| sm_err(ErrorVerb::Write, e))?;
                        Reply::default()
                    }
                };
                replies.push(reply);
            }
            write_meta(&tx, "last_applied", &last).map_err(|e| sm_err(ErrorVerb::Write, e))?;
            tx.commit().map_err(|e| sm_err(ErrorVerb::Write, e))?;
            Ok(replies)
        });
        match &result {
            Ok(replies) => {
                // The batch is committed: count its failures without re-reading the replica.
                let failed = replies.iter().filter(|r| failure_of(r).is_some()).count() as u64;
                if failed > 0 {
                    self.failed.fetch_add(failed, std::sync::atomic::Ordering::Relaxed);
                }
                self.app.committed()
            }
            Err(_) => self.app.rolled_back(),
        }
        result
    }
}

/// The reply of an entry that no replica could apply. Every replica reaches
/// the same verdict (decoding and a deterministic failure of `apply` depend
/// only on the entry and the state before it), records it, and goes on: one
/// bad entry must not halt the cluster, again at every restart.
const FAILED: &[u8] = b"\0caxton-entry-failed\0";

fn failed(index: u64, why: String) -> Reply {
    tracing::error!(index, reason = %why, "a log entry could not be applied; recorded as failed, the replica goes on");
    Reply([FAILED, why.as_bytes()].concat())
}

/// Why the entry behind `reply` failed, if it did.
pub(crate) fn failure_of(reply: &Reply) -> Option<String> {
    reply.0.strip_prefix(FAILED).map(|why| String::from_utf8_lossy(why).into_owned())
}

/// Whether `apply` failed because of the entry itself (the same on every
/// replica) rather than the node's disk or memory, which must stop the
/// node so the entry is applied again once it is healthy.
fn deterministic(e: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode as C;
    match e {
        rusqlite::Error::SqliteFailure(f, _) => {
            matches!(
                f.code,
                C::ConstraintViolation | C::TypeMismatch | C::TooBig | C::ApiMisuse | C::ParameterOutOfRange
            )
        }
        rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::IntegralValueOutOfRange(..)
        | rusqlite::Error::Utf8Error(..)
        | rusqlite::Error::NulError(..)
        | rusqlite::Error::InvalidParameterName(..)
        | rusqlite::Error::InvalidColumnIndex(..)
        | rusqlite::Error::InvalidColumnName(..)
        | rusqlite::Error::InvalidColumnType(..)
        | rusqlite::Error::ToSqlConversionFailure(..)
        | rusqlite::Error::QueryReturnedNoRows
        | rusqlite::Error::ExecuteReturnedResults
        | rusqlite::Error::InvalidParameterCount(..)
        | rusqlite::Error::StatementChangedRows(..)
        | rusqlite::Error::SqlInputError { .. } => true,
        _ => false,
    }
}

/// Runs `f` inside a savepoint, so a failure leaves nothing of it: one
/// because of its input (the same on every replica, see `deterministic`)
/// is undone and handed back as `Ok(Err(e))` for the caller to record;
/// any other (the node's disk or memory) is returned as `Err`, and must
/// stop the node. Each entry applies so; an application applying several
/// items of one entry apart does the same with each.
pub fn in_savepoint<T>(
    tx: &Connection,
    f: impl FnOnce() -> rusqlite::Result<T>,
) -> rusqlite::Result<Result<T, rusqlite::Error>> {
    tx.exec("SAVEPOINT apart", [])?;
    match f() {
        Ok(value) => {
            tx.exec("RELEASE apart", [])?;
            Ok(Ok(value))
        }
        Err(e) if deterministic(&e) => {
            tx.execute_batch("ROLLBACK TO apart; RELEASE apart")?;
            Ok(Err(e))
        }
        Err(e) => Err(e),
    }
}

/// Applies one command inside a savepoint, so a failed one leaves nothing.
fn apply_entry<A: Application>(
    app: &A,
    tx: &rusqlite::Transaction<'_>,
    index: u64,
    payload: &[u8],
) -> Result<Reply, StorageError> {
    let command: A::Command = match codec::decode_app(payload) {
        Ok(c) => c,
        Err(e) => return count_failure(tx, index, format!("the entry cannot be decoded by this version: {e}")),
    };
    match in_savepoint(tx, || app.apply(tx, index, command)).map_err(|e| sm_err(ErrorVerb::Write, e))? {
        Ok(response) => Ok(Reply(codec::encode_app(&response))),
        Err(e) => count_failure(tx, index, format!("applying the entry failed: {e}")),
    }
}

fn count_failure(tx: &rusqlite::Transaction<'_>, index: u64, why: String) -> Result<Reply, StorageError> {
    let count = read_meta::<u64>(tx, "failed_entries").map_err(|e| sm_err(ErrorVerb::Read, e))?.unwrap_or(0);
    write_meta(tx, "failed_entries", &(count + 1)).map_err(|e| sm_err(ErrorVerb::Write, e))?;
    Ok(failed(index, why))
}

/// Entries recorded as failed on this replica so far (kept in `_raft_meta`).
pub(crate) fn failed_entries(conn: &Connection) -> rusqlite::Result<u64> {
    Ok(read_meta::<u64>(conn, "failed_entries")?.unwrap_or(0))
}

pub struct SnapshotBuilder {
    path: PathBuf,
    snapshots: SnapshotDir,
    observer: crate::observer::ObserverSlot,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let path = self.path.clone();
        let snapshots = self.snapshots.clone();
        let started = std::time::Instant::now();
        let built = tokio::task::spawn_blocking(move || build_snapshot_file(&path, &snapshots))
            .await
            .map_err(|e| snap_err(ErrorVerb::Write, e))??;
        if let Some(observer) = self.observer.get() {
            let bytes = std::fs::metadata(self.snapshots.db()).map(|m| m.len()).unwrap_or(0);
            observer.snapshot_built(started.elapsed(), bytes);
        }
        Ok(built)
    }
}

fn build_snapshot_file(replica: &Path, snapshots: &SnapshotDir) -> Result<Snapshot, StorageError> {
    let tmp = snapshots.tmp("build");
    let _ = std::fs::remove_file(&tmp);
    let conn = open_replica(replica).map_err(|e| snap_err(ErrorVerb::Read, e))?;
    // The replica commits with synchronous=NORMAL (the log is the durability
    // point); the log is about to be purged behind this snapshot, so first
    // make everything the replica holds durable.
    sync_replica(replica).map_err(|e| snap_err(ErrorVerb::Write, e))?;
    // VACUUM INTO reads inside one transaction: a consistent copy, with the
    // bookkeeping rows that describe exactly what it contains.
    conn.execute("VACUUM INTO ?1", [tmp.to_string_lossy()]).map_err(|e| snap_err(ErrorVerb::Read, e))?;
    let copy = Connection::open(&tmp).map_err(|e| snap_err(ErrorVerb::Read, e))?;
    let (last_applied, membership) = applied_from(&copy).map_err(|e| snap_err(ErrorVerb::Read, e))?;
    drop(copy);
    let snapshot_id = match last_applied {
        Some(id) => format!("{}-{}-{}", id.leader_id.term, id.index, snapshot_nonce()),
        None => format!("empty-{}", snapshot_nonce()),
    };
    let meta = RaftSnapshotMeta { last_log_id: last_applied, last_membership: membership, snapshot_id };
    snapshots.publish(&tmp, &meta).map_err(|e| snap_err(ErrorVerb::Write, e))?;
    let file = snapshots.open_current().map_err(|e| snap_err(ErrorVerb::Read, e))?;
    Ok(Snapshot { meta, snapshot: Box::new(file) })
}

/// Offline: makes a replica restored from a backup the base of a new log.
/// Its membership becomes `membership` (at the index it has applied), and
/// a snapshot of it is published, for new members to be sent.
pub(crate) fn found_on_replica(
    replica: &Path,
    snapshot_dir: &Path,
    membership: openraft::Membership<crate::types::NodeId, crate::types::NodeAddr>,
) -> Result<Option<LogId>, StorageError> {
    std::fs::create_dir_all(snapshot_dir).map_err(|e| snap_err(ErrorVerb::Write, e))?;
    let conn = open_replica(replica).map_err(|e| sm_err(ErrorVerb::Read, e))?;
    conn.execute_batch(META_DDL).map_err(|e| sm_err(ErrorVerb::Write, e))?;
    let (applied, _) = applied_from(&conn).map_err(|e| sm_err(ErrorVerb::Read, e))?;
    write_meta(&conn, "membership", &StoredMembership::new(applied, membership))
        .map_err(|e| sm_err(ErrorVerb::Write, e))?;
    drop(conn);
    build_snapshot_file(replica, &SnapshotDir { dir: snapshot_dir.to_path_buf() })?;
    Ok(applied)
}

/// Makes every transaction committed to the replica so far durable,
/// without taking any SQLite lock. With synchronous=NORMAL, SQLite syncs
/// the database file after each checkpoint, so what the file holds is
/// durable; what is newer sits in the WAL, written but not synced: syncing
/// the WAL file covers it. (A `wal_checkpoint(FULL)` would do the same
/// while holding the write lock until every reader moves on: under read
/// load the applier then timed out on "database is locked" and Raft
/// stopped. The chaos of a benchmark with 64 clients found it.)
fn sync_replica(replica: &Path) -> std::io::Result<()> {
    let mut wal = replica.as_os_str().to_owned();
    wal.push("-wal");
    for file in [std::path::PathBuf::from(wal), replica.to_path_buf()] {
        match std::fs::File::open(&file) {
            Ok(f) => f.sync_all()?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Uniqueness for snapshot ids. Reading the wall clock is fine here: the id
/// only names a snapshot and never enters the replica (`state.db`), so the
/// replicas stay deterministic.
fn snapshot_nonce() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}

impl<A: Application> RaftStateMachine<TypeConfig> for StateMachine<A> {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        self.with_writer(|c| applied_from(c)).map_err(|e| sm_err(ErrorVerb::Read, e))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Reply>, StorageError>
    where
        I: IntoIterator<Item = Entry> + openraft::OptionalSend,
        I::IntoIter: openraft::OptionalSend,
    {
        self.apply_batch(entries.into_iter().collect())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder { path: self.path.clone(), snapshots: self.snapshots.clone(), observer: self.observer.clone() }
    }

    /// Chunks from the leader go straight to a file: a snapshot is never
    /// held whole in memory.
    async fn begin_receiving_snapshot(&mut self) -> Result<Box<tokio::fs::File>, StorageError> {
        let file =
            tokio::fs::File::create(self.snapshots.receiving()).await.map_err(|e| snap_err(ErrorVerb::Write, e))?;
        Ok(Box::new(file))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageError> {
        use tokio::io::AsyncWriteExt;
        let mut file = *snapshot;
        file.flush().await.map_err(|e| snap_err(ErrorVerb::Write, e))?;
        file.sync_all().await.map_err(|e| snap_err(ErrorVerb::Write, e))?;
        drop(file);
        let tmp = self.snapshots.receiving();
        self.with_writer(|conn| {
            conn.restore(DatabaseName::Main, &tmp, None::<fn(rusqlite::backup::Progress)>)
                .and_then(|_| conn.execute_batch(META_DDL))
                .and_then(|_| self.app.migrate(conn))
                .and_then(|_| {
                    // The file's own bookkeeping must agree with what the leader says it holds.
                    write_meta(conn, "last_applied", &meta.last_log_id)?;
                    write_meta(conn, "membership", &meta.last_membership)
                })
        })
        .map_err(|e| snap_err(ErrorVerb::Write, e))?;
        self.snapshots.publish(&tmp, meta).map_err(|e| snap_err(ErrorVerb::Write, e))?;
        self.refresh_failed();
        self.app.restored();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        self.snapshots.load().map_err(|e| snap_err(ErrorVerb::Read, e))
    }
}
