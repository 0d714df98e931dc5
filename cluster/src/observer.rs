//! What the cluster tells an application's metrics: writes as they are
//! proposed and finish, batches applied, snapshots built. The cluster
//! crate knows no metrics library; the application implements
//! [`WriteObserver`]. At the bottom of the crate: storage reports to it.

use std::sync::Arc;
use std::time::Duration;

use crate::write_error::WriteError;

/// Told of every write this node proposes (or forwards), of every batch
/// its replica applies, and of every snapshot it builds.
pub trait WriteObserver: Send + Sync {
    fn proposed(&self);
    fn finished(&self, took: Duration, result: Result<(), &WriteError>);
    /// `entries` log entries applied to the replica in one transaction.
    fn applied(&self, _entries: usize, _took: Duration) {}
    /// A snapshot of `bytes` written in `took`.
    fn snapshot_built(&self, _took: Duration, _bytes: u64) {}
}

/// Where the observer is, once the application sets it: shared by the
/// façade and the storage that openraft owns.
pub(crate) type ObserverSlot = Arc<std::sync::OnceLock<Arc<dyn WriteObserver>>>;
