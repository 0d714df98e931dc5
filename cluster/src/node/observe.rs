//! Leader changes this node saw (writes are reported through
//! `crate::observer`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::types::Raft;

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
