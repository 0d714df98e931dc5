//! Offline surgery on a stopped member's data directory: founding a new
//! one-member cluster from a backup (`restore`), or from a survivor's own
//! data when a majority of voters is gone for good (`force_new_cluster`,
//! etcd's flag of the same name).
//!
//! Both give the result a new cluster id: members of the old cluster are
//! refused by it (and it by them), so an old node that comes back cannot
//! feed it votes or entries by accident. New members join it with empty
//! data directories, as any node joins.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use openraft::{EntryPayload, Membership};

use crate::backup::{self, BackupError};
use crate::storage::log_store::LogStore;
use crate::storage::state_machine::{applied_from, found_on_replica, open_replica};
use crate::types::{Entry, LogId, NodeAddr, NodeId, Vote};

/// What a recovery made: the new cluster and where its log stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Founded {
    pub cluster_id: String,
    pub node_id: NodeId,
    /// The last entry the new cluster starts from, and its term.
    pub index: u64,
    pub term: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    #[error(transparent)]
    Backup(#[from] BackupError),
    #[error("{path}: {reason}")]
    DataDir { path: String, reason: String },
    #[error("{path}: {reason}")]
    Store { path: String, reason: String },
}

struct DataDir {
    root: PathBuf,
}

impl DataDir {
    fn raft_db(&self) -> PathBuf {
        self.root.join("raft.db")
    }
    fn state_db(&self) -> PathBuf {
        self.root.join("state.db")
    }
    fn snapshots(&self) -> PathBuf {
        self.root.join("snapshots")
    }
    fn err(&self, reason: impl Into<String>) -> RecoveryError {
        RecoveryError::DataDir { path: self.root.display().to_string(), reason: reason.into() }
    }
    fn store_err(path: &Path) -> impl Fn(&dyn std::fmt::Display) -> RecoveryError + '_ {
        move |e| RecoveryError::Store { path: path.display().to_string(), reason: e.to_string() }
    }
}

/// Founds a new cluster whose only member is `node_id`, holding exactly
/// what `backup_file` holds, in the empty (or absent) `data_dir`. The
/// member records its addresses when it first leads.
pub fn restore(backup_file: &Path, data_dir: &Path, node_id: NodeId) -> Result<Founded, RecoveryError> {
    let dir = DataDir { root: data_dir.to_path_buf() };
    if [dir.raft_db(), dir.state_db(), dir.snapshots()].iter().any(|p| p.exists()) {
        return Err(dir.err("already holds a node's data; a restore starts a new cluster in an empty directory"));
    }
    std::fs::create_dir_all(&dir.root).map_err(|e| dir.err(e.to_string()))?;
    let header = backup::unpack(backup_file, &dir.state_db())?;
    let founded = found_from_restored(&dir, node_id);
    if founded.is_err() {
        // Leave the directory as it was: empty.
        for file in [dir.raft_db(), dir.state_db()] {
            let _ = std::fs::remove_file(file);
        }
        let _ = std::fs::remove_dir_all(dir.snapshots());
    }
    let founded = founded?;
    debug_assert_eq!(founded.index, header.index);
    Ok(founded)
}

fn found_from_restored(dir: &DataDir, node_id: NodeId) -> Result<Founded, RecoveryError> {
    let raft_db = dir.raft_db();
    let store_err = DataDir::store_err(&raft_db);
    let log = LogStore::open(&raft_db).map_err(|e| store_err(&e))?;
    let cluster_id = uuid::Uuid::new_v4().to_string();
    log.set_cluster_id(&cluster_id).map_err(|e| store_err(&e))?;
    let incarnation = log.incarnation().map_err(|e| store_err(&e))?;
    let own = NodeAddr { rpc: String::new(), api: String::new(), incarnation };
    let state_db = dir.state_db();
    let last = found_on_replica(&state_db, &dir.snapshots(), sole_member(node_id, own))
        .map_err(|e| DataDir::store_err(&state_db)(&e))?
        .ok_or_else(|| dir.err("the backup holds no applied entry"))?;
    log.start_after(last, &Vote::new(last.leader_id.term, node_id)).map_err(|e| store_err(&e))?;
    Ok(Founded { cluster_id, node_id, index: last.index, term: last.leader_id.term })
}

fn sole_member(node_id: NodeId, addr: NodeAddr) -> Membership<NodeId, NodeAddr> {
    Membership::new(vec![BTreeSet::from([node_id])], BTreeMap::from([(node_id, addr)]))
}

/// Makes the stopped member whose data is in `data_dir` the only voter of
/// a new cluster, keeping everything its log holds: entries it had not yet
/// applied (and so every write a quorum including it acknowledged) are
/// committed by it once it leads. Pick the survivor with the highest last
/// index: its log holds every acknowledged write any survivor holds.
pub fn force_new_cluster(data_dir: &Path) -> Result<Founded, RecoveryError> {
    let dir = DataDir { root: data_dir.to_path_buf() };
    let (raft_db, state_db) = (dir.raft_db(), dir.state_db());
    if !raft_db.exists() || !state_db.exists() {
        return Err(dir.err("holds no node's data (no raft.db and state.db)"));
    }
    let store_err = DataDir::store_err(&raft_db);
    let log = LogStore::open(&raft_db).map_err(|e| store_err(&e))?;
    let incarnation = log.incarnation().map_err(|e| store_err(&e))?;
    let conn = open_replica(&state_db).map_err(|e| DataDir::store_err(&state_db)(&e))?;
    let (applied, replica_membership) = applied_from(&conn).map_err(|e| DataDir::store_err(&state_db)(&e))?;
    drop(conn);
    // The membership in force is the newest one: in the log if a change
    // was appended after what the replica applied, else the replica's.
    let unapplied = log.entries_after(applied.map(|l| l.index)).map_err(|e| store_err(&e))?;
    let membership = unapplied
        .iter()
        .rev()
        .find_map(|e| match &e.payload {
            EntryPayload::Membership(m) => Some(m.clone()),
            _ => None,
        })
        .unwrap_or_else(|| replica_membership.membership().clone());
    let (node_id, own) = membership
        .nodes()
        .find(|(_, addr)| addr.incarnation == incarnation)
        .map(|(id, addr)| (*id, addr.clone()))
        .ok_or_else(|| {
            dir.err("this node is not a member of its cluster (it was removed, or never joined): nothing to recover")
        })?;
    let last: LogId = log
        .last_log_id()
        .map_err(|e| store_err(&e))?
        .or(applied)
        .ok_or_else(|| dir.err("this node's log is empty: it never belonged to a cluster"))?;
    let entry = Entry {
        log_id: LogId::new(last.leader_id, last.index + 1),
        payload: EntryPayload::Membership(sole_member(node_id, own)),
    };
    log.append_offline(&entry).map_err(|e| store_err(&e))?;
    let cluster_id = uuid::Uuid::new_v4().to_string();
    log.set_cluster_id(&cluster_id).map_err(|e| store_err(&e))?;
    Ok(Founded { cluster_id, node_id, index: last.index, term: last.leader_id.term })
}
