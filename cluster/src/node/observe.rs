//! What the cluster tells an application's metrics: writes as they are
//! proposed and finish, and leader changes. The cluster crate knows no
//! metrics library; the application implements [`WriteObserver`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::error::WriteError;
use crate::types::Raft;

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

/// Counts the times this node saw the leader change to a known leader.
pub(crate) async fn count_leader_changes(raft: Raft, counter: Arc<AtomicU64>, stop: CancellationToken) {
    let mut metrics = raft.metrics();
    let mut last = metrics.borrow().current_leader;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = metrics.changed() => if changed.is_err() { return },
        }
        let now = metrics.borrow().current_leader;
        if now.is_some() && now != last {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        last = now;
    }
}
