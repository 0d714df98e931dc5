//! The catalogue of problem types. Every error that can reach a user says
//! which one it is ([`Classified`]); `api::problem` turns that into one
//! `application/problem+json` answer, in one place, and the OpenAPI
//! document lists, per route, the types it can answer with.
//!
//! A type's slug is its stable identity: clients match on
//! `https://caxton.dev/problems/{slug}`. Add types; never rename one.

use std::fmt::Display;

use crate::config::FieldError;

macro_rules! problem_types {
    ($($variant:ident => ($status:expr, $slug:literal, $title:literal),)*) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ProblemType {
            $($variant,)*
        }

        impl ProblemType {
            pub const ALL: &'static [ProblemType] = &[$(ProblemType::$variant,)*];

            pub fn status(self) -> u16 {
                match self {
                    $(ProblemType::$variant => $status,)*
                }
            }

            pub fn slug(self) -> &'static str {
                match self {
                    $(ProblemType::$variant => $slug,)*
                }
            }

            pub fn title(self) -> &'static str {
                match self {
                    $(ProblemType::$variant => $title,)*
                }
            }
        }
    };
}

problem_types! {
    BadRequest => (400, "bad-request", "Bad request"),
    // Any other 4xx axum or a layer answered with; the answer keeps its status.
    ClientError => (400, "client-error", "Client error"),
    NameMismatch => (400, "name-mismatch", "Name mismatch"),
    RouteNotFound => (404, "route-not-found", "Not found"),
    AgentNotFound => (404, "agent-not-found", "Not found"),
    NoAgentForCapability => (404, "no-agent-for-capability", "Not found"),
    MessageNotFound => (404, "message-not-found", "Not found"),
    ConversationNotFound => (404, "conversation-not-found", "Not found"),
    SubscriptionNotFound => (404, "subscription-not-found", "Not found"),
    AuctionNotFound => (404, "auction-not-found", "Not found"),
    ConversationExpired => (409, "conversation-expired", "Conversation expired"),
    AgentLimitReached => (429, "agent-limit-reached", "Agent limit reached"),
    NegotiationNotFound => (404, "negotiation-not-found", "Not found"),
    MemoryEntityNotFound => (404, "memory-entity-not-found", "Not found"),
    ToolServerNotFound => (404, "tool-server-not-found", "Not found"),
    ToolNotFound => (404, "tool-not-found", "Not found"),
    NodeNotFound => (404, "node-not-found", "Not found"),
    KeyNotFound => (404, "key-not-found", "Not found"),
    Unauthenticated => (401, "unauthenticated", "Unauthenticated"),
    MissingScope => (403, "missing-scope", "Forbidden"),
    OutsideKeyGrant => (403, "outside-key-grant", "Forbidden"),
    OriginRefused => (403, "origin-refused", "Forbidden"),
    MethodNotAllowed => (405, "method-not-allowed", "Method not allowed"),
    RequestTimeout => (408, "request-timeout", "Request timeout"),
    KeyExists => (409, "key-exists", "Conflict"),
    HopLimit => (409, "hop-limit", "Hop limit reached"),
    AgentFileManaged => (409, "agent-file-managed", "Agent is file-managed"),
    NoRollout => (409, "no-rollout", "No rollout in progress"),
    ClusterRefused => (409, "cluster-refused", "Refused"),
    PayloadTooLarge => (413, "payload-too-large", "Payload too large"),
    MessageTooLarge => (413, "message-too-large", "Message too large"),
    PromptTooLong => (422, "prompt-too-long", "Message too long for the agent's model"),
    MessageIdTaken => (409, "message-id-taken", "Message id taken"),
    UnsupportedMediaType => (415, "unsupported-media-type", "Unsupported media type"),
    InvalidMessageId => (422, "invalid-message-id", "Invalid message id"),
    InvalidKey => (422, "invalid-key", "Invalid key request"),
    RateLimited => (429, "rate-limited", "Too many requests"),
    TooManyStreams => (429, "too-many-streams", "Too many streams"),
    KeyBusy => (429, "too-many-requests-in-flight", "Too many requests in flight"),
    Unprocessable => (422, "unprocessable", "Unprocessable body"),
    InvalidAgent => (422, "invalid-agent", "Invalid agent definition"),
    InvalidToolServer => (422, "invalid-tool-server", "Invalid tool server"),
    InvalidConfig => (422, "invalid-config", "Invalid configuration"),
    UnsupportedExportVersion => (422, "unsupported-export-version", "Unsupported export version"),
    InvalidModule => (422, "invalid-module", "Tool error"),
    ToolMemoryLimit => (422, "tool-memory-limit", "Tool error"),
    ToolCpuLimit => (422, "tool-cpu-limit", "Tool error"),
    ToolTimeout => (422, "tool-timeout", "Tool error"),
    ToolOutputLimit => (422, "tool-output-limit", "Tool error"),
    ToolInputLimit => (422, "tool-input-limit", "Tool error"),
    ToolNotMcp => (422, "tool-not-mcp", "Tool error"),
    ToolFailed => (422, "tool-failed", "Tool error"),
    ToolRpcError => (422, "tool-rpc-error", "Tool error"),
    ToolServerUnavailable => (502, "tool-server-unavailable", "Tool server unavailable"),
    Internal => (500, "internal", "Internal error"),
    ClusterUnavailable => (503, "cluster-unavailable", "Cluster unavailable"),
    Overloaded => (503, "overloaded", "Server busy"),
    NodeStopping => (503, "node-stopping", "Node stopping"),
    MemoryModelUnavailable => (503, "memory-model-unavailable", "Embedding model unavailable"),
    MemoryUnavailable => (503, "memory-unavailable", "Memory database unavailable"),
    InsufficientStorage => (507, "insufficient-storage", "Insufficient storage"),
    ReplyTimeout => (504, "reply-timeout", "No reply yet"),
}

/// An error that knows which problem type it is. Its `Display` is the
/// problem's `detail`, written for the person reading it.
pub trait Classified: Display {
    fn problem_type(&self) -> ProblemType;

    /// Machine-readable context some types carry (what exists instead).
    fn problem_extra(&self) -> Option<serde_json::Value> {
        None
    }

    /// Field-level problems of an invalid definition.
    fn field_errors(&self) -> Vec<FieldError> {
        Vec::new()
    }

    /// How long the client should wait before trying again (`Retry-After`).
    fn retry_after(&self) -> Option<std::time::Duration> {
        None
    }
}

impl Classified for caxton_cluster::WriteError {
    fn problem_type(&self) -> ProblemType {
        use caxton_cluster::WriteError as E;
        match self {
            // Whatever the cause, the client's answer is the same: the
            // cluster cannot take writes right now; retry.
            E::NoLeader | E::LeaderUnreachable { .. } | E::Timeout(_) | E::NoQuorum(_) => {
                ProblemType::ClusterUnavailable
            }
            E::Fatal(_) => ProblemType::NodeStopping,
            E::TooLarge { .. } => ProblemType::PayloadTooLarge,
            E::Rejected(_) | E::Decode(_) => ProblemType::Internal,
        }
    }

    /// Whether the write certainly did not take effect, or may have.
    fn problem_extra(&self) -> Option<serde_json::Value> {
        Some(serde_json::json!({ "write_outcome": self.outcome().as_str() }))
    }
}

impl Classified for caxton_cluster::ReadError {
    fn problem_type(&self) -> ProblemType {
        ProblemType::Internal
    }
}

impl Classified for crate::config::ConfigError {
    fn problem_type(&self) -> ProblemType {
        ProblemType::InvalidConfig
    }
}

impl Classified for caxton_cluster::backup::BackupError {
    fn problem_type(&self) -> ProblemType {
        match self {
            Self::Cluster(e) => e.problem_type(),
            _ => ProblemType::Internal,
        }
    }
}

impl Classified for caxton_cluster::AdminError {
    fn problem_type(&self) -> ProblemType {
        use caxton_cluster::AdminError as E;
        match self {
            E::UnknownNode(_) => ProblemType::NodeNotFound,
            E::Refused(_) => ProblemType::ClusterRefused,
            E::NoLeader | E::Unreachable { .. } => ProblemType::ClusterUnavailable,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_unique_and_statuses_are_errors() {
        let mut seen = std::collections::HashSet::new();
        for t in ProblemType::ALL {
            assert!(seen.insert(t.slug()), "{} twice", t.slug());
            assert!((400..600).contains(&t.status()), "{t:?}");
        }
    }
}
