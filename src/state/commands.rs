//! Commands are the only way state changes. Each carries everything `apply`
//! needs (timestamps, owners), so every replica computes the same result.
//!
//! Wire format: these types are encoded into the Raft log; add variants at
//! the end and fields as `Option` so older logs stay decodable.

use serde::{Deserialize, Serialize};

use crate::config::{AgentName, AgentSpec};
use crate::memory::types::{NewObservation, Place};
use crate::messaging::{ConversationState, Message};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum AgentSource {
    /// Deployed through the API or CLI.
    Api,
    /// Deployed from a file in a node's agents directory.
    File(String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeployAgent {
    pub spec: AgentSpec,
    /// The definition as the user wrote it, kept for `get` and history.
    pub toml: String,
    pub source: AgentSource,
    /// Proposer's clock, milliseconds since the epoch.
    pub at_ms: i64,
    /// The node that will run the agent.
    pub owner: u64,
    /// Only update an existing agent (PUT semantics).
    pub must_exist: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Command {
    DeployAgent(Box<DeployAgent>),
    RemoveAgent {
        name: AgentName,
        /// Remove only if the agent still comes from this source (so a file
        /// deleted from one node's directory cannot remove an API deploy).
        only_if_source: Option<AgentSource>,
        at_ms: i64,
    },
    /// Messages entering the system: the durability point of a send.
    AcceptMessages {
        messages: Vec<Message>,
    },
    /// Answers to accepted requests; an answer to an already answered
    /// request is ignored, which makes processing at-least-once but
    /// answering exactly-once.
    RecordReplies {
        replies: Vec<Message>,
    },
    SetConversation {
        id: String,
        protocol: String,
        state: ConversationState,
        detail: Option<String>,
        at_ms: i64,
    },
    /// New owners for shards (leader's placement); each moved shard's epoch
    /// goes up by one and its agents follow.
    AssignShards {
        moves: Vec<(u32, u64)>,
        at_ms: i64,
    },
    /// Creates the entity if needed and appends observations. Embeddings are
    /// computed once by the receiving node and carried here, so replicas
    /// apply without a model.
    StoreEntity {
        place: Place,
        name: String,
        entity_type: String,
        observations: Vec<NewObservation>,
        at_ms: i64,
    },
    DeleteEntity {
        place: Place,
        name: String,
    },
    Relate {
        place: Place,
        from: String,
        to: String,
        relation_type: String,
        at_ms: i64,
    },
    /// A tool server: manifest text, module (base64), and its tools as
    /// listed by the node that validated it (JSON).
    DeployMcpServer {
        name: String,
        manifest: String,
        module: String,
        tools: String,
        at_ms: i64,
    },
    RemoveMcpServer {
        name: String,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub enum AcceptOutcome {
    Accepted,
    /// A message with this id exists already (a retried send).
    Duplicate,
    /// The receiver is not (or no longer) deployed.
    UnknownReceiver,
}

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
}
