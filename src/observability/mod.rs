//! Logging: human-readable text on a terminal, JSON lines for machines.

mod metrics;

pub use metrics::{AgentEvent, LabelCap, Metrics, Outcome, OTHER};

/// Carries a request's id (its trace id) on HTTP, to clients and between nodes.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber. `RUST_LOG` wins over the configured level.
pub fn init_logging(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter).with_span_events(FmtSpan::NONE).with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Json => builder.json().with_current_span(true).with_span_list(false).try_init(),
        LogFormat::Text => builder.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).try_init(),
    };
    // Already installed (tests that start several nodes in one process).
    let _ = result;
}
