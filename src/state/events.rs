use crate::config::AgentName;

/// What changed in the replica, published after the change is committed.
#[derive(Debug, Clone, PartialEq)]
pub enum StateEvent {
    AgentDeployed {
        name: AgentName,
        revision: u64,
        owner: u64,
    },
    AgentRemoved {
        name: AgentName,
    },
    /// A request (or a delivered notification) was accepted for
    /// `receiver`; its owner should process it.
    MessageAccepted {
        id: String,
        receiver: AgentName,
    },
    /// A message was stored in a conversation (requests, replies, notes).
    ConversationMessage {
        conversation_id: String,
        message_id: String,
    },
    /// A request got its answer.
    ReplyRecorded {
        request_id: String,
        reply_id: String,
    },
    ConversationChanged {
        id: String,
    },
    /// Observations added (row ids), for the vector index.
    MemoryAdded {
        observation_ids: Vec<i64>,
    },
    /// An entity and its observations were deleted.
    MemoryRemoved {
        entity_id: i64,
    },
    /// A copy of request `request_id` is to be answered by `revision` of
    /// `receiver`, a shadow rollout's new revision.
    ShadowAccepted {
        request_id: String,
        receiver: AgentName,
        revision: u64,
    },
    /// A rollout started, moved a step, or ended.
    RolloutChanged {
        agent: String,
        state: super::rollout_record::RolloutState,
        step: u32,
    },
    /// A delivered notification's turn ran (`failed`: with an error).
    NotificationProcessed {
        id: String,
        failed: bool,
    },
    /// A publication was stored at `position` of the topics' stream.
    Published {
        position: i64,
        topic: String,
    },
    /// An auction or a negotiation started or moved on.
    ProtocolChanged {
        id: String,
    },
    /// A turn of `agent` was stopped by one of its limits.
    LimitReached {
        agent: String,
        limit: String,
    },
    /// An API key was created or revoked.
    KeysChanged,
    /// A tool server was deployed, replaced or removed.
    ToolServersChanged,
    /// The replica was replaced by a snapshot: re-read everything.
    Restored,
}
