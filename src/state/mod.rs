//! The replicated application state: commands, `apply`, and queries over the
//! local replica. This is Caxton's implementation of the cluster crate's
//! [`Application`](caxton_cluster::Application).

mod commands;
mod events;
mod machine;
mod memory_apply;
mod message_queries;
mod messages_apply;
mod queries;
mod schema;

pub use commands::{AcceptOutcome, AgentSource, Command, DeployAgent, Response};
pub use events::StateEvent;
pub use machine::{CaxtonState, SHARDS};
pub use message_queries::ConversationRecord;
pub use queries::{AgentRecord, AgentVersion, Queries};
