//! Which cluster this node's data belongs to.
//!
//! The node that founds a cluster draws a random id and every member keeps it
//! in `raft.db`. Every RPC carries the sender's id and is refused when it
//! names another cluster, so two clusters that meet (a seed list pointing at
//! the wrong pods, a data directory copied between clusters) cannot feed each
//! other log entries or votes. A pristine node adopts the id of the first
//! authenticated peer that talks to it: the leader adding it as a learner.
//!
//! A data directory also gets an *incarnation* when it is created. The
//! membership records each member's incarnation, and Raft RPCs name the one
//! they expect: a node whose data was wiped (and so forgot its votes and
//! log) is refused under its old id until an operator removes it, after
//! which it rejoins as a new member.

use std::sync::Mutex;

use crate::storage::log_store::LogStore;

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cluster id mismatch: this node belongs to cluster {ours}, the request comes from cluster {theirs}")]
    Mismatch { ours: String, theirs: String },
    #[error(
        "this node's data directory is not the one the cluster added (incarnation {ours}, expected {expected}): \
         it was wiped or replaced; remove this node (`caxton cluster remove`) and it rejoins as a new member"
    )]
    Replaced { ours: String, expected: String },
    #[error("cannot persist the cluster id: {0}")]
    Store(#[from] rusqlite::Error),
}

pub struct ClusterIdentity {
    store: LogStore,
    /// Guarded by one lock so that checking and adopting are one step.
    id: Mutex<Option<String>>,
    incarnation: String,
}

impl ClusterIdentity {
    pub fn load(store: LogStore) -> rusqlite::Result<Self> {
        let id = store.cluster_id()?;
        let incarnation = store.incarnation()?;
        Ok(Self { store, id: Mutex::new(id), incarnation })
    }

    pub fn incarnation(&self) -> &str {
        &self.incarnation
    }

    pub fn get(&self) -> Option<String> {
        self.lock().clone()
    }

    /// Draws and persists the id of a cluster this node is founding.
    pub fn found(&self) -> Result<String, IdentityError> {
        let mut id = self.lock();
        if let Some(existing) = id.as_ref() {
            return Ok(existing.clone());
        }
        let fresh = uuid::Uuid::new_v4().to_string();
        self.store.set_cluster_id(&fresh)?;
        *id = Some(fresh.clone());
        Ok(fresh)
    }

    /// Accepts a request from a peer claiming `theirs` (None: a pristine
    /// peer, which cannot yet have anything to replicate). A pristine node
    /// adopts the first id it is shown.
    pub fn check(&self, theirs: Option<&str>, expected_incarnation: Option<&str>) -> Result<(), IdentityError> {
        if let Some(expected) = expected_incarnation.filter(|e| *e != self.incarnation) {
            return Err(IdentityError::Replaced { ours: self.incarnation.clone(), expected: expected.to_owned() });
        }
        let Some(theirs) = theirs else { return Ok(()) };
        let mut id = self.lock();
        match id.as_deref() {
            Some(ours) if ours == theirs => Ok(()),
            Some(ours) => Err(IdentityError::Mismatch { ours: ours.to_owned(), theirs: theirs.to_owned() }),
            None => {
                self.store.set_cluster_id(theirs)?;
                tracing::info!(cluster_id = theirs, "joined cluster");
                *id = Some(theirs.to_owned());
                Ok(())
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.id.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(dir: &tempfile::TempDir) -> ClusterIdentity {
        ClusterIdentity::load(LogStore::open(&dir.path().join("raft.db")).unwrap()).unwrap()
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_pristine_node_adopts_the_first_id_and_keeps_it_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let id = identity(&dir);
        assert_eq!(id.get(), None);
        id.check(None, None).unwrap();
        assert_eq!(id.get(), None, "a pristine peer teaches nothing");
        id.check(Some("a"), None).unwrap();
        id.check(Some("a"), Some(id.incarnation())).unwrap();
        let err = id.check(Some("b"), None).unwrap_err().to_string();
        assert!(err.contains("belongs to cluster a") && err.contains("from cluster b"), "{err}");
        drop(id);
        let reopened = identity(&dir);
        assert_eq!(reopened.get().as_deref(), Some("a"));
        assert!(reopened.check(Some("b"), None).is_err());
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_wiped_directory_is_another_incarnation_and_refused_under_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let before = identity(&dir).incarnation().to_owned();
        assert_eq!(identity(&dir).incarnation(), before, "stable across restarts");
        std::fs::remove_file(dir.path().join("raft.db")).unwrap();
        let wiped = identity(&dir);
        assert_ne!(wiped.incarnation(), before);
        let err = wiped.check(Some("a"), Some(&before)).unwrap_err().to_string();
        assert!(err.contains("wiped") && err.contains(&before), "{err}");
        assert_eq!(wiped.get(), None, "a refused request teaches nothing");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn founding_draws_one_id_and_never_replaces_it() {
        let dir = tempfile::tempdir().unwrap();
        let id = identity(&dir);
        let first = id.found().unwrap();
        assert_eq!(id.found().unwrap(), first);
        assert_eq!(identity(&dir).get(), Some(first));
    }
}
