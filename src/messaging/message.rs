//! The message model shared by the API, the runtime and the state machine.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::llm::ChatMessage;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum MessageKind {
    Request,
    Response,
    Notification,
    Error,
}

impl MessageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Request => "Request",
            Self::Response => "Response",
            Self::Notification => "Notification",
            Self::Error => "Error",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "Request" => Some(Self::Request),
            "Response" => Some(Self::Response),
            "Notification" => Some(Self::Notification),
            "Error" => Some(Self::Error),
            _ => None,
        }
    }
}

/// Where a request stands. Only `Accepted` messages are waiting for work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MessageStatus {
    Accepted,
    Answered,
    Failed,
    /// Responses, errors and notifications: nothing left to do.
    Final,
}

impl MessageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Answered => "answered",
            Self::Failed => "failed",
            Self::Final => "final",
        }
    }

    pub fn parse(s: &str) -> Self {
        match s {
            "accepted" => Self::Accepted,
            "answered" => Self::Answered,
            "failed" => Self::Failed,
            _ => Self::Final,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum ConversationState {
    Initiated,
    InProgress,
    Completed,
    Failed,
    Expired,
}

impl ConversationState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Initiated => "Initiated",
            Self::InProgress => "InProgress",
            Self::Completed => "Completed",
            Self::Failed => "Failed",
            Self::Expired => "Expired",
        }
    }

    pub fn parse(s: &str) -> Self {
        match s {
            "Initiated" => Self::Initiated,
            "InProgress" => Self::InProgress,
            "Completed" => Self::Completed,
            "Expired" => Self::Expired,
            _ => Self::Failed,
        }
    }
}

/// A message as stored and returned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Message {
    pub id: String,
    pub kind: MessageKind,
    /// Agent name, or `user` / a client label for messages from outside.
    pub sender: String,
    /// The agent that handles it (resolved from a capability if one was given).
    pub receiver: String,
    /// The capability the sender addressed, if any.
    pub capability: Option<String>,
    pub conversation_id: String,
    pub reply_to: Option<String>,
    pub content: String,
    pub requirements: Option<String>,
    pub context: Option<String>,
    /// Earlier turns supplied by the caller (OpenAI-style clients send them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<Object>)]
    pub history: Vec<ChatMessage>,
    pub trace_id: String,
    pub span_id: String,
    /// How many agent-to-agent hops led here (loop protection).
    pub hop: u32,
    pub created_at_ms: i64,
    pub status: MessageStatus,
    /// For requests: the reply once recorded.
    pub reply_id: Option<String>,
}
