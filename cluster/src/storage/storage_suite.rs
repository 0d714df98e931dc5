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
        if v == "poison" {
            // A write that breaks a constraint after a first write: the
            // same failure on every replica (a bug in an `apply`).
            tx.execute("INSERT INTO kv(k, v) VALUES ('other', NULL)", [])?;
        }
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

/// An entry that does not decode, or whose `apply` fails deterministically,
/// is recorded as failed (its writes rolled back) and the replica goes on.
#[tokio::test(flavor = "multi_thread")]
async fn a_poison_entry_is_recorded_as_failed_and_the_replica_goes_on() {
    use openraft::storage::RaftStateMachine;
    use openraft::{CommittedLeaderId, EntryPayload};

    use crate::types::{Entry, LogId, Payload};

    let dir = tempfile::tempdir().unwrap();
    let mut sm = StateMachine::open(Arc::new(Kv), &dir.path().join("state.db"), &dir.path().join("snap")).unwrap();
    let entry = |index: u64, bytes: Vec<u8>| Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Payload(bytes)),
    };
    let kv = |k: &str, v: &str| crate::codec::encode_app(&(k.to_owned(), v.to_owned()));
    let replies = sm
        .apply(vec![
            entry(1, kv("a", "1")),
            entry(2, kv("b", "poison")),
            entry(3, b"{ not a command".to_vec()),
            entry(4, kv("c", "3")),
        ])
        .await
        .unwrap();
    assert_eq!(replies.len(), 4);
    assert!(crate::storage::failure_of(&replies[0]).is_none());
    assert!(crate::storage::failure_of(&replies[1]).unwrap().contains("NOT NULL"), "{:?}", replies[1]);
    assert!(crate::storage::failure_of(&replies[2]).unwrap().contains("cannot be decoded"));
    assert!(crate::storage::failure_of(&replies[3]).is_none());
    let (applied, _) = sm.applied_state().await.unwrap();
    assert_eq!(applied.map(|l| l.index), Some(4), "the replica went on past the bad entries");
    let conn = rusqlite::Connection::open(dir.path().join("state.db")).unwrap();
    let keys: Vec<String> = conn
        .prepare("SELECT k FROM kv ORDER BY k")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(keys, ["a", "c"], "the failed entry's first write was rolled back");
    assert_eq!(super::state_machine::failed_entries(&conn).unwrap(), 2);
}
