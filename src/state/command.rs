//! Commands are the only way state changes, and the Raft log's format.
//!
//! Each command is a type beside its `apply` (in the file of its
//! capability) with a typed [`Proposal::Output`]; [`Command`] and
//! [`Response`] are only the envelopes the log and the wire carry. Callers
//! propose through [`Store::propose`] and never match a `Response`.
//!
//! Wire format: JSON (`caxton_cluster` encodes application commands so).
//! Variant and field *names* are the format, their order is not: rename
//! nothing, add fields with `#[serde(default)]`, and keep
//! `golden_tests.rs` passing. A newtype variant `X(X { .. })` encodes like
//! the struct variant `X { .. }` it replaced.

use std::sync::Arc;

use caxton_cluster::{Cluster, CodecError, WriteError};
use rusqlite::Transaction;
use serde::{Deserialize, Serialize};

use super::agents::{AssignShards, DeployAgent, RemoveAgent};
use super::events::StateEvent;
use super::keys::{CreateKey, RevokeKey};
use super::machine::CaxtonState;
use super::memory::{DeleteEntity, Relate, StoreEntity};
use super::messages::{AcceptMessages, AcceptOutcome, Attempt, RecordAttempt, RecordReplies, SetConversation};
use super::retention::PruneHistory;
use super::rollouts::{RecordShadow, RolloutRecord, StartRollout, UpdateRollout};
use super::tools::{DeployMcpServer, RemoveMcpServer};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Command {
    DeployAgent(Box<DeployAgent>),
    RemoveAgent(RemoveAgent),
    AcceptMessages(AcceptMessages),
    RecordReplies(RecordReplies),
    SetConversation(SetConversation),
    AssignShards(AssignShards),
    StoreEntity(StoreEntity),
    DeleteEntity(DeleteEntity),
    Relate(Relate),
    DeployMcpServer(DeployMcpServer),
    RemoveMcpServer(RemoveMcpServer),
    CreateKey(Box<CreateKey>),
    RevokeKey(RevokeKey),
    PruneHistory(PruneHistory),
    StartRollout(Box<StartRollout>),
    UpdateRollout(UpdateRollout),
    RecordShadow(RecordShadow),
    RecordAttempt(RecordAttempt),
}

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
    /// What a `RecordAttempt` decided.
    Attempt(Attempt),
    /// The command was refused by `apply` on every replica alike (malformed
    /// content that slipped past the edge); nothing changed.
    Rejected(String),
}

/// Where a command applies: the batch's transaction, the entry's log
/// index, and the events published once the batch is durable.
pub(crate) struct ApplyCtx<'a, 't> {
    pub tx: &'a Transaction<'t>,
    pub index: u64,
    pub stage: &'a mut Vec<StateEvent>,
}

/// A command a caller proposes, with the answer it gets back.
pub trait Proposal: Into<Command> {
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

macro_rules! commands {
    ($($variant:ident),* $(,)?) => {
        $(impl From<$variant> for Command {
            fn from(c: $variant) -> Self {
                Command::$variant(c.into())
            }
        })*

        impl Command {
            pub(crate) fn apply(self, ctx: &mut ApplyCtx<'_, '_>) -> rusqlite::Result<Response> {
                match self {
                    $(Command::$variant(c) => c.apply(ctx),)*
                }
            }
        }
    };
}

commands!(
    DeployAgent,
    RemoveAgent,
    AcceptMessages,
    RecordReplies,
    SetConversation,
    AssignShards,
    StoreEntity,
    DeleteEntity,
    Relate,
    DeployMcpServer,
    RemoveMcpServer,
    CreateKey,
    RevokeKey,
    PruneHistory,
    StartRollout,
    UpdateRollout,
    RecordShadow,
    RecordAttempt,
);

/// Commands this version can apply beyond the first version's, advertised
/// in gossip so a proposer knows every voter can apply them.
pub const FEATURES: &[&str] = &["CreateKey", "RevokeKey", "PruneHistory", "StartRollout", "RecordAttempt"];

/// Proposes commands to the cluster and hands back their typed answers.
#[derive(Clone)]
pub struct Store {
    cluster: Arc<Cluster<CaxtonState>>,
}

impl Store {
    pub fn new(cluster: Arc<Cluster<CaxtonState>>) -> Self {
        Self { cluster }
    }

    /// Commits `proposal` through Raft (forwarding to the leader) and
    /// returns once this node has applied it.
    pub async fn propose<P: Proposal>(&self, proposal: P) -> Result<P::Output, WriteError> {
        if let Some(feature) = P::FEATURE {
            let lacking = self.cluster.voters_lacking(feature).await;
            if !lacking.is_empty() {
                return Err(WriteError::Rejected(format!(
                    "voters {lacking:?} do not advertise `{feature}` (an older version?): upgrade every node first"
                )));
            }
        }
        let response = self.cluster.write(&proposal.into()).await?;
        P::output(response)
            .map_err(|other| WriteError::Decode(CodecError::Json(format!("{} was answered with {other:?}", P::NAME))))
    }
}
