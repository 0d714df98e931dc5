//! Counters exported in the Prometheus text format at `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default)]
pub struct Metrics {
    pub messages_processed: AtomicU64,
    pub messages_failed: AtomicU64,
    pub llm_calls: AtomicU64,
    pub llm_errors: AtomicU64,
    pub tool_calls: AtomicU64,
    pub tool_calls_denied: AtomicU64,
    pub tool_errors: AtomicU64,
}

impl Metrics {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn render(&self) -> String {
        let rows = [
            ("caxton_messages_processed_total", "Requests answered by agents on this node", &self.messages_processed),
            ("caxton_messages_failed_total", "Requests answered with an error on this node", &self.messages_failed),
            ("caxton_llm_calls_total", "LLM provider calls", &self.llm_calls),
            ("caxton_llm_errors_total", "LLM provider calls that failed", &self.llm_errors),
            ("caxton_tool_calls_total", "Tool calls executed", &self.tool_calls),
            (
                "caxton_tool_calls_denied_total",
                "Tool calls refused: tool not in the agent's allowlist",
                &self.tool_calls_denied,
            ),
            ("caxton_tool_errors_total", "Tool calls that returned an error", &self.tool_errors),
        ];
        let mut out = String::new();
        for (name, help, v) in rows {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}\n",
                v.load(Ordering::Relaxed)
            ));
        }
        out
    }
}
