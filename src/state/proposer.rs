//! Batched commands, typed: a [`Proposer`] gathers items that concurrent
//! callers submit into one command (`AcceptMessages`, `RecordReplies`), so
//! one Raft commit covers many, and hands each caller its own outcome. The
//! count check and the error are written here once.

use std::sync::Arc;

use caxton_cluster::WriteError;

use super::batcher::{BatchLimits, Batcher};
use super::command::Command;
use super::envelope::{AcceptOutcome, Proposal};
use super::messages::{AcceptMessages, Message, RecordReplies};
use super::store::Store;
use crate::shutdown::Shutdown;

/// A command made of items, answered with one outcome per item, in order.
pub trait Batched: Proposal<Output = Vec<Self::Outcome>> + Into<Command> + Send + 'static {
    type Item: Send + 'static;
    type Outcome: Send + 'static;
    fn of(items: Vec<Self::Item>) -> Self;
}

impl Batched for AcceptMessages {
    type Item = Message;
    type Outcome = AcceptOutcome;
    fn of(messages: Vec<Message>) -> Self {
        Self { messages }
    }
}

impl Batched for RecordReplies {
    type Item = Message;
    /// Recorded, or the request was answered already.
    type Outcome = bool;
    fn of(replies: Vec<Message>) -> Self {
        Self { replies }
    }
}

impl Batched for super::agents::DeployAgents {
    type Item = super::agents::DeployAgent;
    type Outcome = Result<super::agents::Deployment, String>;
    fn of(deploys: Vec<Self::Item>) -> Self {
        Self { deploys }
    }
}

impl Batched for super::topics::Publish {
    type Item = super::topics::Publication;
    type Outcome = super::envelope::Published;
    fn of(publications: Vec<Self::Item>) -> Self {
        Self { publications }
    }
}

/// Submits items of `B`, committed in batches.
pub struct Proposer<B: Batched> {
    batcher: Batcher<B::Item, B::Outcome, WriteError>,
}

impl<B: Batched> Clone for Proposer<B> {
    fn clone(&self) -> Self {
        Self { batcher: self.batcher.clone() }
    }
}

impl<B: Batched> Proposer<B> {
    /// Starts the batching loop: up to `in_flight` batches commit at once,
    /// each within `limits`. It stops with `shutdown`.
    pub fn spawn(store: Store, shutdown: &Shutdown, limits: BatchLimits<B::Item>, in_flight: usize) -> Self {
        let batcher = Batcher::spawn(shutdown, limits, in_flight, move |items: Vec<B::Item>| {
            let store = store.clone();
            async move {
                let sent = items.len();
                let outcomes = store.propose(B::of(items)).await?;
                if outcomes.len() != sent {
                    let got = outcomes.len();
                    return Err(WriteError::Rejected(format!("{} answered {got} outcomes for {sent} items", B::NAME)));
                }
                Ok(outcomes)
            }
        });
        Self { batcher }
    }

    /// Commits `item` with whatever else is waiting; its outcome.
    pub async fn submit(&self, item: B::Item) -> Result<B::Outcome, Arc<WriteError>> {
        match self.batcher.submit(item).await {
            Ok(outcome) => outcome,
            Err(_stopped) => Err(Arc::new(WriteError::Fatal("node stopping".into()))),
        }
    }
}
