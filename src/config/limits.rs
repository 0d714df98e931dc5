//! Per-agent limits: an agent's `[limits]` table, the server-wide defaults
//! (`server.agent_*`), and the limits in force (the agent's where it set
//! one, else the server's).

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::span::Errors;

/// What one agent may use. `None`: the server's default (which may be
/// unlimited).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AgentLimits {
    /// Turns running at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    /// Model tokens (prompt and completion) one turn may use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_turn: Option<u64>,
    /// Model tokens per UTC day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_day: Option<u64>,
    /// Estimated spend per UTC day, in USD (priced providers only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spend_per_day_usd: Option<f64>,
    /// Tool calls one turn may make.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls_per_turn: Option<u32>,
    /// Largest message this agent takes, in bytes (at most the server's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_message_bytes: Option<u64>,
    /// Wall time one turn may take, in milliseconds (at most `timeout`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turn_time_ms: Option<u64>,
}

impl AgentLimits {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// A cap on the day's tokens or spend: only then does the day's usage
    /// so far matter (and need reading).
    pub fn caps_the_day(&self) -> bool {
        self.tokens_per_day.is_some() || self.spend_per_day_usd.is_some()
    }

    /// The agent's limits where it set them, else `defaults`'.
    pub fn over(&self, defaults: &AgentLimits) -> AgentLimits {
        AgentLimits {
            concurrency: self.concurrency.or(defaults.concurrency),
            tokens_per_turn: self.tokens_per_turn.or(defaults.tokens_per_turn),
            tokens_per_day: self.tokens_per_day.or(defaults.tokens_per_day),
            spend_per_day_usd: self.spend_per_day_usd.or(defaults.spend_per_day_usd),
            tool_calls_per_turn: self.tool_calls_per_turn.or(defaults.tool_calls_per_turn),
            max_message_bytes: self.max_message_bytes.or(defaults.max_message_bytes),
            turn_time_ms: self.turn_time_ms.or(defaults.turn_time_ms),
        }
    }
}

/// A limit that stopped a turn (or refused a message), named as in `[limits]`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("agent limit reached: {limit} ({detail})")]
pub struct LimitReached {
    pub limit: &'static str,
    pub detail: String,
}

/// Whether a day's usage (tokens, USD) is within the daily limits.
pub fn day_left(limits: &AgentLimits, tokens: u64, spend_usd: f64) -> Result<(), LimitReached> {
    if let Some(max) = limits.tokens_per_day.filter(|max| tokens >= *max) {
        return Err(LimitReached {
            limit: "tokens_per_day",
            detail: format!("{tokens} tokens used today (UTC), at most {max}"),
        });
    }
    if let Some(max) = limits.spend_per_day_usd.filter(|max| spend_usd >= *max) {
        return Err(LimitReached {
            limit: "spend_per_day_usd",
            detail: format!("{spend_usd:.6} USD spent today (UTC), at most {max}"),
        });
    }
    Ok(())
}

/// Turns an agent runs at once when neither it nor the server says.
pub const DEFAULT_CONCURRENCY: u32 = 16;

/// The `[limits]` table as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    concurrency: Option<Spanned<i64>>,
    tokens_per_turn: Option<Spanned<i64>>,
    tokens_per_day: Option<Spanned<i64>>,
    spend_per_day_usd: Option<Spanned<f64>>,
    tool_calls_per_turn: Option<Spanned<i64>>,
    max_message_bytes: Option<Spanned<i64>>,
    turn_time_ms: Option<Spanned<i64>>,
}

fn within(v: &Option<Spanned<i64>>, field: &str, lo: i64, hi: i64, errs: &mut Errors<'_>) -> Option<u64> {
    let v = v.as_ref()?;
    if (lo..=hi).contains(v.get_ref()) {
        Some(*v.get_ref() as u64)
    } else {
        errs.at(v.span(), &format!("limits.{field}"), format!("{} is outside {lo}..={hi}", v.get_ref()));
        None
    }
}

pub(super) fn validate(raw: RawLimits, timeout_ms: u64, errs: &mut Errors<'_>) -> AgentLimits {
    let spend = raw.spend_per_day_usd.as_ref().and_then(|s| {
        let v = *s.get_ref();
        if v.is_finite() && v > 0.0 {
            Some(v)
        } else {
            errs.at(s.span(), "limits.spend_per_day_usd", format!("{v} must be a number above 0"));
            None
        }
    });
    let turn_time_ms = within(&raw.turn_time_ms, "turn_time_ms", 100, timeout_ms.max(100) as i64, errs);
    AgentLimits {
        concurrency: within(&raw.concurrency, "concurrency", 1, 1024, errs).map(|v| v as u32),
        tokens_per_turn: within(&raw.tokens_per_turn, "tokens_per_turn", 1, i64::MAX, errs),
        tokens_per_day: within(&raw.tokens_per_day, "tokens_per_day", 1, i64::MAX, errs),
        spend_per_day_usd: spend,
        tool_calls_per_turn: within(&raw.tool_calls_per_turn, "tool_calls_per_turn", 0, 10_000, errs).map(|v| v as u32),
        max_message_bytes: within(&raw.max_message_bytes, "max_message_bytes", 1, 1 << 30, errs),
        turn_time_ms,
    }
}
