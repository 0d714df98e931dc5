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

use serde::{Deserialize, Serialize};

use super::agents::{AssignShards, DeployAgent, DeployAgents, RemoveAgent};
use super::auctions::{AdvanceAuction, StartAuction};
use super::envelope::{ApplyCtx, Response};
use super::keys::{CreateKey, RevokeKey};
use super::memory::{DeleteEntity, Relate, StoreEntity};
use super::messages::{AcceptMessages, RecordAttempt, RecordReplies, SetConversation};
use super::negotiations::{StartNegotiation, StepNegotiation};
use super::retention::PruneHistory;
use super::rollouts::{RecordShadow, StartRollout, UpdateRollout};
use super::settings::ClaimSetting;
use super::tools::{DeployMcpServer, RemoveMcpServer};
use super::topics::{Publish, Subscribe, Unsubscribe};

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
    Subscribe(Subscribe),
    Unsubscribe(Unsubscribe),
    Publish(Publish),
    StartAuction(StartAuction),
    AdvanceAuction(AdvanceAuction),
    StartNegotiation(StartNegotiation),
    StepNegotiation(StepNegotiation),
    ClaimSetting(ClaimSetting),
    DeployAgents(DeployAgents),
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
    Subscribe,
    Unsubscribe,
    Publish,
    StartAuction,
    AdvanceAuction,
    StartNegotiation,
    StepNegotiation,
    ClaimSetting,
    DeployAgents,
);

/// Commands this version can apply beyond the first version's, advertised
/// in gossip so a proposer knows every voter can apply them.
pub const FEATURES: &[&str] = &[
    "CreateKey",
    "RevokeKey",
    "PruneHistory",
    "StartRollout",
    "RecordAttempt",
    super::messages::DELIVER_NOTIFICATIONS,
    "ClaimSetting",
    super::messages::REPLY_TOOL_CALLS,
    "DeployAgents",
];
