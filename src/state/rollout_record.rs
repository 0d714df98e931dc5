//! A rollout as the replica records it, and how a served request ended:
//! the vocabulary the rollout commands, the state events and the command
//! answers share, below all of them.

use serde::{Deserialize, Serialize};

use crate::config::RolloutSpec;

/// Where a rollout is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RolloutState {
    /// Taking traffic step by step (canary) or warming up (blue-green).
    Progressing,
    /// Holding its current weight until resumed or promoted.
    Paused,
    /// The new revision serves all traffic.
    Promoted,
    /// Stopped by an operator; the stable revision serves all traffic.
    Aborted,
    /// Stopped by failed analysis; the stable revision serves all traffic.
    RolledBack,
    /// Replaced by a later deploy before it finished.
    Superseded,
}

impl RolloutState {
    pub fn is_active(self) -> bool {
        matches!(self, Self::Progressing | Self::Paused)
    }
}

/// One revision's replies over a window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Figures {
    pub requests: u64,
    pub errors: u64,
    pub timeouts: u64,
    pub p95_ms: Option<u64>,
}

impl Figures {
    pub fn error_rate(&self) -> f64 {
        rate(self.errors, self.requests)
    }

    pub fn timeout_rate(&self) -> f64 {
        rate(self.timeouts, self.requests)
    }
}

fn rate(n: u64, of: u64) -> f64 {
    if of == 0 {
        0.0
    } else {
        n as f64 / of as f64
    }
}

/// The last analysis: both revisions' figures over the current step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Check {
    pub at_ms: i64,
    pub passed: bool,
    pub stable: Figures,
    pub candidate: Figures,
    /// Why it failed, or what it waits for.
    pub note: String,
}

/// A rollout as replicated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RolloutRecord {
    pub agent: String,
    pub spec: RolloutSpec,
    /// The revision serving traffic when the rollout started.
    pub stable: u64,
    /// The revision being rolled out.
    pub candidate: u64,
    pub state: RolloutState,
    /// Index into `spec.steps` (canary); 0 for blue-green.
    pub step: u32,
    /// Share (0-100) of new conversations the candidate serves.
    pub weight: u8,
    pub started_at_ms: i64,
    pub step_started_at_ms: i64,
    /// Log index at which the current step began: its figures count
    /// replies recorded after it.
    pub step_started_index: u64,
    pub failed_checks: u32,
    pub last_check: Option<Check>,
    /// Why it ended, or was paused.
    pub reason: Option<String>,
    pub finished_at_ms: Option<i64>,
    /// Log index of the step that switched all traffic (promotion).
    pub switched_at_index: Option<u64>,
}

/// How a request ended, as analysis counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ServedOutcome {
    Ok,
    Error,
    Timeout,
}

impl ServedOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Error => "error",
            Self::Timeout => "timeout",
        }
    }
}
