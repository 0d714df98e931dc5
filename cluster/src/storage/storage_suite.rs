//! openraft's own storage conformance suite, run against our SQLite log
//! store and state machine adapter, plus the application trait's contract.

use std::sync::Arc;

use openraft::testing::{StoreBuilder, Suite};

use super::log_store::LogStore;
use super::state_machine::StateMachine;
use crate::application::Application;
use crate::types::{StorageError, TypeConfig};

/// A tiny key/value application: enough to exercise apply and snapshots.
pub(crate) struct Kv;

impl Application for Kv {
    type Command = (String, String);
    type Response = Option<String>;

    fn migrate(&self, conn: &rusqlite::Connection) -> rusqlite::Result<()> {
        conn.execute_batch("CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v TEXT NOT NULL)")
    }

    fn apply(
        &self,
        tx: &rusqlite::Transaction<'_>,
        _index: u64,
        (k, v): Self::Command,
    ) -> rusqlite::Result<Self::Response> {
        use rusqlite::OptionalExtension;
        let old = tx.query_row("SELECT v FROM kv WHERE k = ?1", [&k], |r| r.get(0)).optional()?;
        tx.execute("INSERT OR REPLACE INTO kv(k, v) VALUES (?1, ?2)", [&k, &v])?;
        Ok(old)
    }
}

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine<Kv>, tempfile::TempDir> for Builder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine<Kv>), StorageError> {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = LogStore::open(&dir.path().join("raft.db")).expect("open log store");
        let sm = StateMachine::open(Arc::new(Kv), &dir.path().join("state.db"), &dir.path().join("snapshots"))
            .expect("open state machine");
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite() {
    Suite::test_all(Builder).unwrap();
}
