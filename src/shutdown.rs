//! One owner for every background task a node runs.
//!
//! Components receive a [`Shutdown`] and spawn through it instead of
//! calling `tokio::spawn`: loops that would run forever stop when shutdown
//! begins, work in flight (a batch being committed, a message being
//! answered) is tracked, and the node waits for both, bounded, before it
//! stops Raft. Nothing a node started outlives it.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Clone, Default)]
pub struct Shutdown {
    token: CancellationToken,
    tracker: TaskTracker,
}

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }

    /// Work that ends on its own (a commit, an answer); shutdown waits for it.
    pub fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tracker.spawn(task);
    }

    /// A loop that only ends when told to: it is dropped at its next
    /// `.await` once shutdown begins.
    pub fn spawn_until_stopped<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let token = self.token.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                _ = token.cancelled() => {}
                _ = task => {}
            }
        });
    }

    /// Cancelled when shutdown begins, for tasks that wind down themselves.
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// Begins shutdown and waits up to `grace` for every task to end;
    /// `false` if some were still running.
    pub async fn stop(&self, grace: Duration) -> bool {
        self.token.cancel();
        self.tracker.close();
        tokio::time::timeout(grace, self.tracker.wait()).await.is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    #[tokio::test]
    async fn stop_ends_loops_and_waits_for_work_in_flight() {
        let shutdown = Shutdown::new();
        shutdown.spawn_until_stopped(std::future::pending());
        let finished = Arc::new(AtomicBool::new(false));
        let flag = finished.clone();
        shutdown.spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            flag.store(true, Ordering::SeqCst);
        });
        assert!(shutdown.stop(Duration::from_secs(5)).await, "the pending loop was stopped");
        assert!(finished.load(Ordering::SeqCst), "the work in flight was waited for");
    }

    #[tokio::test]
    async fn stop_reports_work_that_outlives_the_grace() {
        let shutdown = Shutdown::new();
        shutdown.spawn(std::future::pending());
        assert!(!shutdown.stop(Duration::from_millis(20)).await);
    }
}
