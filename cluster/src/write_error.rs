//! Why a write through the cluster failed, and what a client may conclude.
//! At the bottom of the crate: storage observers, backups and the façade
//! all name it.

use std::time::Duration;

use crate::codec::CodecError;

#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    #[error("no leader is known yet (election in progress?); retry shortly")]
    NoLeader,
    /// `delivered`: the request may have reached the leader (sent, then no
    /// answer): it may have committed, and is never sent again.
    #[error("the leader at {addr} could not be reached: {reason}")]
    LeaderUnreachable { addr: String, reason: String, delivered: bool },
    #[error("the write was not committed within {0:?}")]
    Timeout(Duration),
    #[error("the write was not committed within {0:?}: too few voters are reachable to form a quorum")]
    NoQuorum(Duration),
    #[error("this node is shutting down or has failed: {0}")]
    Fatal(String),
    #[error("the cluster refused the write: {0}")]
    Rejected(String),
    #[error("the write is {size} bytes encoded; the log takes entries of at most {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("undecodable response from the state machine: {0}")]
    Decode(#[from] CodecError),
}

/// What a client may conclude from a failed write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    /// The write was never proposed, or was refused before it could
    /// commit: it did not and will not take effect.
    NotApplied,
    /// It may have committed (or may still): read before retrying, or
    /// retry with the same client-chosen id.
    Unknown,
}

impl WriteOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotApplied => "not_applied",
            Self::Unknown => "unknown",
        }
    }
}

impl WriteError {
    pub fn outcome(&self) -> WriteOutcome {
        match self {
            // No leader for the whole wait, or refused by the leader or
            // at the proposer: nothing reached the log.
            Self::NoLeader
            | Self::Timeout(_)
            | Self::TooLarge { .. }
            | Self::Rejected(_)
            | Self::LeaderUnreachable { delivered: false, .. } => WriteOutcome::NotApplied,
            // Proposed (or sent to a leader) without an answer, or
            // committed with an answer this node cannot read.
            Self::LeaderUnreachable { .. } | Self::NoQuorum(_) | Self::Fatal(_) | Self::Decode(_) => {
                WriteOutcome::Unknown
            }
        }
    }
}
