//! The envelope every command shares, below the commands: what `apply`
//! answers ([`Response`], as the wire carries it, with the answers only it
//! carries), where a command applies ([`ApplyCtx`]) and how a proposer gets
//! its typed answer back ([`Proposal`]).
//!
//! Wire format: see `command.rs`; the names here are part of it.

use rusqlite::Transaction;
use serde::{Deserialize, Serialize};

use super::events::StateEvent;
use super::rollout_record::RolloutRecord;

/// What `apply` answered, as the wire carries it. Only [`Proposal::output`]
/// implementations look inside.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub enum Response {
    Deployed {
        revision: u64,
        created: bool,
    },
    /// The same definition was already deployed: no new revision.
    Unchanged {
        revision: u64,
    },
    Removed {
        revision: u64,
    },
    NotFound,
    /// The agent exists but comes from another source; left alone.
    SourceMismatch,
    Accepted(Vec<AcceptOutcome>),
    /// Per reply: recorded (true) or the request was already answered.
    Recorded(Vec<bool>),
    Done,
    /// Observations stored (count) for an entity.
    Stored {
        created: bool,
        observations: usize,
    },
    Deleted(bool),
    /// A relation needs both ends to exist in the same place.
    MissingEntity(String),
    /// History deleted by a `PruneHistory`.
    Pruned {
        messages: usize,
        conversations: usize,
        versions: usize,
    },
    /// A rollout after an update; `applied` is false when the update
    /// named a rollout that is over or another one.
    Rollout {
        record: Option<Box<RolloutRecord>>,
        applied: bool,
    },
    /// A tool server belongs to another deployer (`why` names it).
    NotOwner(String),
    /// Per publication: fanned out, or a retried one.
    Published(Vec<Published>),
    /// What a `RecordAttempt` decided.
    Attempt(Attempt),
    /// A cluster setting's recorded value (`ClaimSetting`).
    Setting(String),
    /// The command was refused by `apply` on every replica alike (malformed
    /// content that slipped past the edge); nothing changed.
    Rejected(String),
    /// Per deploy of a `DeployAgents`: what a `DeployAgent` answers, or
    /// `Rejected` for one that failed (the others stand).
    Deployments(Vec<Response>),
}

/// Where a command applies: the batch's transaction, the entry's log
/// index, and the events published once the batch is durable.
pub(crate) struct ApplyCtx<'a, 't> {
    pub tx: &'a Transaction<'t>,
    pub index: u64,
    pub stage: &'a mut Vec<StateEvent>,
}

/// A command a caller proposes, with the answer it gets back.
pub trait Proposal {
    type Output;
    /// The command's name in errors.
    const NAME: &'static str;
    /// Set for commands added after the first version: proposed only when
    /// every voter advertises this feature (an older node could not apply
    /// the entry). Listed in [`FEATURES`].
    const FEATURE: Option<&'static str> = None;
    /// The typed answer inside `response`, or `response` back if `apply`
    /// answered with a variant this command never produces (a bug, or a
    /// version skew between nodes).
    fn output(response: Response) -> Result<Self::Output, Response>;
}

/// The output of commands that either apply (`Done`: true) or are refused
/// because what they name is gone, over, or already there
/// (`Deleted(false)`: false).
pub(super) fn done_or_refused(r: Response) -> Result<bool, Response> {
    match r {
        Response::Done => Ok(true),
        Response::Deleted(false) => Ok(false),
        other => Err(other),
    }
}

/// What `AcceptMessages` decided for one message.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub enum AcceptOutcome {
    Accepted,
    /// A message with this id exists already (a retried send).
    Duplicate,
    /// The receiver is not (or no longer) deployed.
    UnknownReceiver,
    /// The message names a revision of its receiver that does not exist.
    UnknownRevision,
}

/// What became of one publication (`Publish`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum Published {
    /// Stored and fanned out to this many subscriptions.
    Fanned(u64),
    /// A publication with this id exists (a retry): not fanned out again.
    Duplicate,
}

/// What a [`RecordAttempt`] decided.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum Attempt {
    /// Run it: this is its `n`-th delivery.
    Run(u32),
    /// Over its attempts: answered with an error, not to be run.
    DeadLettered,
    /// Answered (or gone) meanwhile: nothing to do.
    Closed,
}
