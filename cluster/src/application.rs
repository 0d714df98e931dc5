//! The contract between the cluster and the application it replicates.

use std::fmt::Debug;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// A deterministic state machine whose state lives in a SQLite replica.
///
/// Every node applies the same committed commands in the same order to its
/// own replica, so `apply` must depend on nothing but the command and the
/// replica: no clocks, no randomness, no node-local configuration. Anything
/// like that belongs in the command, chosen by whoever proposes it.
///
/// Snapshots and restores are the cluster's job: a snapshot is a consistent
/// copy of the whole replica file, so the application gets them for free and
/// is only told (`restored`) when its replica was replaced under it.
pub trait Application: Send + Sync + 'static {
    type Command: Serialize + DeserializeOwned + Debug + Send + Sync + 'static;
    type Response: Serialize + DeserializeOwned + Debug + Send + Sync + 'static;

    /// Creates or upgrades the application's tables. Runs on every open.
    fn migrate(&self, conn: &rusqlite::Connection) -> rusqlite::Result<()>;

    /// Applies one committed command inside the replica's write transaction.
    ///
    /// A domain failure (say, removing an agent that does not exist) is a
    /// `Response`; an `Err` means the replica itself failed and stops the node.
    fn apply(
        &self,
        tx: &rusqlite::Transaction<'_>,
        index: u64,
        command: Self::Command,
    ) -> rusqlite::Result<Self::Response>;

    /// Called after a batch of applied commands is durable in the replica.
    /// The place to wake watchers; cheap and non-blocking.
    fn committed(&self) {}

    /// Called when a batch failed to commit: forget effects staged by `apply`.
    fn rolled_back(&self) {}

    /// Called after the replica was replaced by an installed snapshot.
    fn restored(&self) {}
}
