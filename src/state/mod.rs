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
//! - `keys.rs`: API keys (hashes and grants, never tokens).
//!
//! `command.rs` holds the log's envelope and [`Store::propose`]; `machine.rs`
//! dispatches committed commands; `queries.rs` is the read handle.
//! Everything above (`messaging/`, `memory/`, `mcp/`, `agents/`) uses these
//! types and never touches the replicated tables itself.

mod agents;
#[cfg(test)]
mod apply_tests;
mod command;
mod events;
#[cfg(test)]
mod golden_tests;
mod keys;
mod machine;
mod memory;
mod messages;
mod queries;
mod retention;
mod rollouts;
mod schema;
mod tools;

pub use agents::{AgentRecord, AgentSource, AgentVersion, AssignShards, DeployAgent, Deployment, Removal, RemoveAgent};
pub use command::{Command, Proposal, Response, Store, FEATURES};
pub use events::StateEvent;
pub use keys::{CreateKey, Grants, KeyRecord, RateLimit, RevokeKey, Scope};
pub use machine::{CaxtonState, SHARDS};
pub use memory::{
    parse_scope, scope_str, DeleteEntity, Entity, ExportedEntity, ExportedObservation, IndexedRow, MemoryScope,
    NewObservation, Observation, ObservationHit, Place, Relate, Related, Relation, StoreEntity, Stored, Vector, Viewer,
};
pub use messages::{
    payload_bytes, AcceptMessages, AcceptOutcome, Attempt, ConversationRecord, ConversationState, Message, MessageKind,
    MessageStatus, Pending, Protocol, RecordAttempt, RecordReplies, Served, SetConversation, REPLY_SUFFIX,
};
pub use queries::Queries;
pub use retention::{PruneHistory, Pruned};
pub use rollouts::{
    bucket, Check, Figures, RecordShadow, RolloutAction, RolloutRecord, RolloutState, RolloutUpdate, ServedOutcome,
    ShadowReport, StartRollout, UpdateRollout,
};
pub use tools::{DeployMcpServer, RemoveMcpServer, ToolDeployer, ToolRefusal, ToolServerRow};
