//! The replicated application state: Caxton's implementation of the cluster
//! crate's [`Application`](caxton_cluster::Application), and the one home of
//! the vocabulary the replica stores.
//!
//! Sliced by capability, each file holding a capability's records, the
//! commands that change them (each a type with its own `apply` and typed
//! output) and the SQL that reads them:
//! - `agents.rs`: agents, revisions, shards;
//! - `messages.rs`: messages and conversations;
//! - `memory.rs`: entities, observations and their vectors, relations;
//! - `tools.rs`: tool servers;
//! - `keys.rs`: API keys (hashes and grants, never tokens);
//! - `topics.rs`: subscriptions and publications (fanned out in `apply`);
//! - `auctions.rs`, `negotiations.rs`: the driven protocols' records, over
//!   `sessions.rs` (their conversation and notices).
//!
//! Below the capabilities: `envelope.rs` (what `apply` answers, where it
//! applies, how a proposer gets its typed answer), `events.rs` and the
//! rollout record shared by rollouts, deploys and messages
//! (`rollout_record.rs`, `rollout_rows.rs`). Above them: `command.rs` (the
//! log's envelope listing every command), `machine.rs` (dispatches committed
//! commands), `store.rs` ([`Store::propose`]), `proposer.rs` (commands
//! batched from many callers, over the generic `batcher.rs`) and
//! `ledger.rs`, the one handle services get. `queries.rs` is the read
//! handle whose methods live in the capability files.
//! Everything above (`messaging/`, `memory/`, `mcp/`, `agents/`) uses these
//! types and never touches the replicated tables itself.

mod agents;
#[cfg(test)]
mod apply_tests;
mod auctions;
mod batcher;
mod command;
mod envelope;
mod events;
#[cfg(test)]
mod golden_tests;
mod keys;
mod ledger;
mod machine;
mod memory;
mod messages;
mod negotiations;
mod proposer;
mod queries;
mod retention;
mod rollout_record;
mod rollout_rows;
mod rollouts;
mod schema;
mod sessions;
mod settings;
mod store;
mod tools;
mod topics;

pub use agents::{
    AgentRecord, AgentSource, AgentVersion, AssignShards, DeployAgent, DeployAgents, Deployment, Removal, RemoveAgent,
    SHARDS,
};
pub use auctions::{
    AdvanceAuction, AuctionRecord, AuctionResult, AuctionRules, AuctionState, Bid, Pricing, StartAuction,
};
pub use batcher::BatchLimits;
pub use command::{Command, FEATURES};
pub use envelope::{AcceptOutcome, Attempt, Proposal, Published, Response};
pub use events::StateEvent;
pub use keys::{CreateKey, Grants, KeyRecord, RateLimit, RevokeKey, Scope};
pub use ledger::Ledger;
pub use machine::CaxtonState;
pub use memory::{
    parse_scope, scope_str, DeleteEntity, Entity, ExportedEntity, ExportedObservation, IndexedRow, MemoryScope,
    NewObservation, Observation, ObservationHit, Place, Relate, Related, Relation, StoreEntity, Stored, Vector, Viewer,
};
pub use messages::{
    day_of, new_span_id, payload_bytes, AcceptMessages, ConversationFilter, ConversationRecord, ConversationState,
    DayUsage, Message, MessageKind, MessageStatus, Pending, Protocol, RecordAttempt, RecordReplies, RequestFilter,
    Served, SetConversation, ToolCallRecord, TurnUsage, DELIVER_NOTIFICATIONS, REPLY_SUFFIX, REPLY_TOOL_CALLS,
};
pub use negotiations::{Move, MoveKind, NegotiationRecord, NegotiationState, StartNegotiation, StepNegotiation};
pub use proposer::{Batched, Proposer};
pub use queries::Queries;
pub use retention::{PruneHistory, Pruned};
pub use rollout_record::{Check, Figures, RolloutRecord, RolloutState, ServedOutcome};
pub use rollouts::{bucket, RecordShadow, RolloutAction, RolloutUpdate, ShadowReport, StartRollout, UpdateRollout};
pub use sessions::notice;
pub use settings::{ClaimSetting, MEMORY_BACKEND};
pub use store::Store;
pub use tools::{DeployMcpServer, RemoveMcpServer, ToolDeployer, ToolRefusal, ToolServerRow};
pub use topics::{
    definition_conversation, Publication, PublicationRecord, Publish, Subscribe, SubscriptionRecord,
    SubscriptionSource, TopicSummary, Unsubscribe,
};
