//! The node's memory budget for tool sessions running at once.

use std::sync::Arc;

/// Memory that tool sessions running at once may use together, in MiB: a
/// session holds its memory limit's worth until it ends, so many calls
/// to a memory-hungry tool wait their turn instead of exceeding the node.
#[derive(Clone)]
pub struct MemoryBudget {
    mib: Arc<tokio::sync::Semaphore>,
    total: u32,
}

impl MemoryBudget {
    pub fn new(total_mib: u32) -> Self {
        let total = total_mib.max(1);
        Self { mib: Arc::new(tokio::sync::Semaphore::new(total as usize)), total }
    }

    /// Waits until `bytes` (rounded up to MiB; at most the whole budget)
    /// are free, and holds them until the permit is dropped.
    pub async fn reserve(&self, bytes: usize) -> tokio::sync::OwnedSemaphorePermit {
        let mib = (bytes.div_ceil(1 << 20) as u32).clamp(1, self.total);
        self.mib.clone().acquire_many_owned(mib).await.expect("the budget is never closed")
    }

    /// [`reserve`](Self::reserve) without waiting: `None` if not free now.
    pub fn try_reserve(&self, bytes: usize) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let mib = (bytes.div_ceil(1 << 20) as u32).clamp(1, self.total);
        self.mib.clone().try_acquire_many_owned(mib).ok()
    }

    pub fn available_mib(&self) -> usize {
        self.mib.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn sessions_wait_for_memory_beyond_the_budget() {
        let budget = MemoryBudget::new(64);
        let first = budget.reserve(32 << 20).await;
        let second = budget.reserve((32 << 20) - 1).await;
        assert_eq!(budget.available_mib(), 0);
        // A third 32 MiB session waits until one of the first two ends.
        let waiting = tokio::spawn({
            let budget = budget.clone();
            async move { budget.reserve(32 << 20).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "ran beyond the budget");
        drop(first);
        let third = tokio::time::timeout(Duration::from_secs(1), waiting).await.expect("admitted once memory is free");
        drop((second, third));
        // A limit over the whole budget waits for all of it, never forever.
        let all = tokio::time::timeout(Duration::from_secs(1), budget.reserve(4 << 30)).await.unwrap();
        assert_eq!(budget.available_mib(), 0);
        drop(all);
        assert_eq!(budget.available_mib(), 64);
    }
}
