//! Group concurrent proposals into one Raft command.
//!
//! A Raft commit costs an fsync whether it carries one message or five
//! hundred. The batcher takes whatever has queued up while the previous
//! batch was committing (never waiting on purpose, so a lone request pays no
//! extra latency) and proposes it as one command.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::shutdown::Shutdown;

type Reply<O, E> = oneshot::Sender<Result<O, Arc<E>>>;

/// How much one batch may carry.
pub struct BatchLimits<I> {
    pub items: usize,
    pub bytes: usize,
    pub weight: fn(&I) -> usize,
}

impl<I> BatchLimits<I> {
    /// At most `items` per batch, whatever their size.
    pub fn items(items: usize) -> Self {
        Self { items, bytes: usize::MAX, weight: |_| 0 }
    }
}

pub struct Batcher<I, O, E> {
    tx: mpsc::Sender<(I, Reply<O, E>)>,
}

impl<I, O, E> Clone for Batcher<I, O, E> {
    fn clone(&self) -> Self {
        Self { tx: self.tx.clone() }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the batcher has stopped")]
pub struct Stopped;

impl<I, O, E> Batcher<I, O, E>
where
    I: Send + 'static,
    O: Send + 'static,
    E: Send + Sync + 'static,
{
    /// `commit` turns a batch into one result per item, in order.
    /// Up to `in_flight` batches commit concurrently. The loop stops when
    /// `shutdown` begins; batches already committing are waited for. A
    /// batch stops at `limits.items`, and before its items' weights (their
    /// encoded size) pass `limits.bytes`: one client's large items cannot
    /// make a batch that fails, or stalls, everyone's. An item heavier than
    /// the budget goes alone.
    pub fn spawn<F, Fut>(shutdown: &Shutdown, limits: BatchLimits<I>, in_flight: usize, commit: F) -> Self
    where
        F: Fn(Vec<I>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<O>, E>> + Send + 'static,
    {
        let (tx, mut rx) = mpsc::channel::<(I, Reply<O, E>)>(limits.items * 8);
        let commit = Arc::new(commit);
        let permits = Arc::new(Semaphore::new(in_flight.max(1)));
        let tasks = shutdown.clone();
        shutdown.spawn_until_stopped(async move {
            // The item that did not fit the last batch opens the next one.
            let mut carried = None;
            loop {
                let first = match carried.take() {
                    Some(item) => item,
                    None => match rx.recv().await {
                        Some(item) => item,
                        None => break,
                    },
                };
                let Ok(permit) = permits.clone().acquire_owned().await else { break };
                let mut bytes = (limits.weight)(&first.0);
                let mut batch = vec![first];
                while batch.len() < limits.items {
                    match rx.try_recv() {
                        Ok(item) => {
                            let weight = (limits.weight)(&item.0);
                            if bytes.saturating_add(weight) > limits.bytes {
                                carried = Some(item);
                                break;
                            }
                            bytes += weight;
                            batch.push(item);
                        }
                        Err(_) => break,
                    }
                }
                let commit = commit.clone();
                tasks.spawn(async move {
                    let (items, replies): (Vec<I>, Vec<Reply<O, E>>) = batch.into_iter().unzip();
                    match commit(items).await {
                        Ok(outs) => {
                            for (reply, out) in replies.into_iter().zip(outs) {
                                let _ = reply.send(Ok(out));
                            }
                        }
                        Err(e) => {
                            let e = Arc::new(e);
                            for reply in replies {
                                let _ = reply.send(Err(e.clone()));
                            }
                        }
                    }
                    drop(permit);
                });
            }
        });
        Self { tx }
    }

    pub async fn submit(&self, item: I) -> Result<Result<O, Arc<E>>, Stopped> {
        let (reply, wait) = oneshot::channel();
        self.tx.send((item, reply)).await.map_err(|_| Stopped)?;
        wait.await.map_err(|_| Stopped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn concurrent_items_share_batches_and_keep_their_results() {
        let batches = Arc::new(AtomicUsize::new(0));
        let b2 = batches.clone();
        let batcher: Batcher<u32, u32, String> =
            Batcher::spawn(&Shutdown::new(), BatchLimits::items(64), 1, move |items: Vec<u32>| {
                b2.fetch_add(1, Ordering::SeqCst);
                async move {
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    Ok(items.into_iter().map(|i| i * 2).collect())
                }
            });
        let mut tasks = Vec::new();
        for i in 0..200u32 {
            let b = batcher.clone();
            tasks.push(tokio::spawn(async move { (i, b.submit(i).await.unwrap().unwrap()) }));
        }
        for t in tasks {
            let (i, out) = t.await.unwrap();
            assert_eq!(out, i * 2);
        }
        assert!(batches.load(Ordering::SeqCst) < 50, "200 items took {} batches", batches.load(Ordering::SeqCst));
    }

    #[tokio::test]
    async fn a_batch_stops_at_its_byte_budget() {
        let sizes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = sizes.clone();
        let limits = BatchLimits { items: 64, bytes: 100, weight: |i: &u32| *i as usize };
        let batcher: Batcher<u32, u32, String> = Batcher::spawn(&Shutdown::new(), limits, 1, move |items: Vec<u32>| {
            seen.lock().unwrap().push(items.iter().sum::<u32>());
            async move {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                Ok(items)
            }
        });
        // 40-byte items: at most two fit in a batch; one of 500 goes alone.
        let mut tasks = Vec::new();
        for i in 0..20u32 {
            let b = batcher.clone();
            let w = if i == 7 { 500 } else { 40 };
            tasks.push(tokio::spawn(async move { b.submit(w).await.unwrap().unwrap() }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let sizes = sizes.lock().unwrap().clone();
        assert_eq!(sizes.iter().sum::<u32>(), 19 * 40 + 500, "every item committed once: {sizes:?}");
        assert!(sizes.iter().all(|&s| s <= 100 || s == 500), "a batch over its budget: {sizes:?}");
    }

    #[tokio::test]
    async fn a_failed_batch_fails_each_item() {
        let batcher: Batcher<u32, u32, String> =
            Batcher::spawn(&Shutdown::new(), BatchLimits::items(8), 1, |_items: Vec<u32>| async {
                Err("disk on fire".to_owned())
            });
        let err = batcher.submit(1).await.unwrap().unwrap_err();
        assert_eq!(*err, "disk on fire");
    }
}
