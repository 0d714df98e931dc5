//! One turn's budget: the agent's limits in force, what its day used
//! before the turn began (replicated, so a new owner inherits it), and
//! what the turn has used so far. Each model call and tool call is
//! charged; the first limit passed stops the turn.

use std::time::Duration;

use parking_lot::Mutex;

use crate::config::limits::{day_left, AgentLimits, LimitReached};
use crate::llm::Usage;
use crate::state::{DayUsage, ToolCallRecord, TurnUsage};

pub struct Budget {
    limits: AgentLimits,
    /// USD per million prompt and completion tokens.
    prices: (f64, f64),
    before: DayUsage,
    used: Mutex<TurnUsage>,
    /// The turn's tool calls, for its reply.
    calls: Mutex<Vec<ToolCallRecord>>,
}

impl Budget {
    pub fn new(limits: AgentLimits, prices: (f64, f64), before: DayUsage) -> Self {
        Self { limits, prices, before, used: Mutex::new(TurnUsage::default()), calls: Mutex::new(Vec::new()) }
    }

    /// What the turn used so far.
    pub fn used(&self) -> TurnUsage {
        *self.used.lock()
    }

    /// Records how a tool call (charged with [`Budget::tool_call`]) went.
    pub fn tool_called(&self, record: ToolCallRecord) {
        self.calls.lock().push(record);
    }

    /// The turn's tool calls so far, in order.
    pub fn tool_calls(&self) -> Vec<ToolCallRecord> {
        self.calls.lock().clone()
    }

    /// The wall time a turn may take, if the limits set one.
    pub fn turn_time(&self) -> Option<Duration> {
        self.limits.turn_time_ms.map(Duration::from_millis)
    }

    /// Whether the day's budget is spent before the turn starts.
    pub fn check_day(&self) -> Result<(), LimitReached> {
        day_left(&self.limits, self.before.tokens, self.before.spend_usd)
    }

    /// Charges one model call's tokens; the limit it passed, if any.
    pub fn charge(&self, usage: &Usage) -> Result<(), LimitReached> {
        let mut used = self.used.lock();
        let tokens = u64::from(usage.prompt_tokens) + u64::from(usage.completion_tokens);
        used.tokens += tokens;
        used.input_tokens += u64::from(usage.prompt_tokens);
        used.output_tokens += u64::from(usage.completion_tokens);
        let micro = (f64::from(usage.prompt_tokens) * self.prices.0
            + f64::from(usage.completion_tokens) * self.prices.1)
            .max(0.0)
            .round() as u64;
        used.spend_micro_usd += micro;
        if let Some(max) = self.limits.tokens_per_turn.filter(|max| used.tokens > *max) {
            return Err(LimitReached {
                limit: "tokens_per_turn",
                detail: format!("{} tokens used, at most {max}", used.tokens),
            });
        }
        let spend = self.before.spend_usd + used.spend_micro_usd as f64 / 1e6;
        day_left(&self.limits, self.before.tokens + used.tokens, spend)
    }

    /// Records how the turn's last model call ended: cut at its token
    /// limit or not.
    pub fn finished(&self, finish_reason: &str) {
        self.used.lock().truncated = finish_reason == "length";
    }

    /// Charges one tool call; refused past `tool_calls_per_turn`.
    pub fn tool_call(&self) -> Result<(), LimitReached> {
        let mut used = self.used.lock();
        used.tool_calls += 1;
        match self.limits.tool_calls_per_turn {
            Some(max) if used.tool_calls > max => Err(LimitReached {
                limit: "tool_calls_per_turn",
                detail: format!("call {} of at most {max}", used.tool_calls),
            }),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(prompt: u32, completion: u32) -> Usage {
        Usage { prompt_tokens: prompt, completion_tokens: completion }
    }

    #[test]
    fn each_limit_stops_the_turn_that_passes_it() {
        let limits = AgentLimits { tokens_per_turn: Some(100), tool_calls_per_turn: Some(1), ..Default::default() };
        let b = Budget::new(limits, (0.0, 0.0), DayUsage::default());
        assert!(b.charge(&usage(40, 10)).is_ok());
        assert_eq!(b.charge(&usage(40, 20)).unwrap_err().limit, "tokens_per_turn");
        assert!(b.tool_call().is_ok());
        assert_eq!(b.tool_call().unwrap_err().limit, "tool_calls_per_turn");

        let limits = AgentLimits { tokens_per_day: Some(1000), spend_per_day_usd: Some(0.01), ..Default::default() };
        let spent = DayUsage { tokens: 990, ..Default::default() };
        let b = Budget::new(limits.clone(), (1.0, 2.0), spent);
        assert!(b.check_day().is_ok());
        assert_eq!(b.charge(&usage(5, 5)).unwrap_err().limit, "tokens_per_day");
        // 1 USD per million prompt tokens: 10,000 tokens are a cent.
        let b = Budget::new(AgentLimits { tokens_per_day: None, ..limits }, (1.0, 2.0), DayUsage::default());
        assert_eq!(b.charge(&usage(0, 400)).map(|_| b.used().spend_micro_usd), Ok(800));
        assert_eq!(b.charge(&usage(0, 5_000)).unwrap_err().limit, "spend_per_day_usd");
    }
}
