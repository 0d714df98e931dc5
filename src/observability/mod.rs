//! Logging (human-readable text on a terminal, JSON lines for machines),
//! metrics (`metrics`) and traces over OTLP (`traces`).

mod metrics;
pub mod traces;

pub use metrics::{AgentEvent, LabelCap, Metrics, Outcome, OTHER};
pub use traces::TraceExport;

/// Carries a request's id on HTTP, to clients and between nodes.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::LogFormat;

/// What the trace layer sees: Caxton's own spans (requests, invocations,
/// model and tool calls, commits, applies), not every dependency's
/// internals; and of log events only warnings and errors, which mark the
/// span they happen in. An INFO line per request as a span event would be
/// encoded and exported with every trace, for what the logs already say.
fn exported(meta: &tracing::Metadata<'_>) -> bool {
    let ours = |crate_name: &str| {
        meta.target() == crate_name || meta.target().strip_prefix(crate_name).is_some_and(|rest| rest.starts_with("::"))
    };
    let wanted = if meta.is_span() { tracing::Level::INFO } else { tracing::Level::WARN };
    (ours("caxton") || ours("caxton_cluster")) && *meta.level() <= wanted
}

/// Installs the global subscriber: the log output, and trace export when
/// the OTLP variables ask for it (the returned handle flushes it at exit).
/// `RUST_LOG` wins over the configured level.
pub fn init_logging(format: LogFormat, level: &str, node_id: u64) -> Option<TraceExport> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let fmt = tracing_subscriber::fmt::layer().with_span_events(FmtSpan::NONE).with_writer(std::io::stderr);
    let fmt = match format {
        LogFormat::Json => fmt.json().with_current_span(true).with_span_list(false).boxed(),
        LogFormat::Text => fmt.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).boxed(),
    };
    let (otel, export) = match traces::layer(node_id) {
        Ok(Some((layer, export))) => {
            (Some(layer.with_filter(tracing_subscriber::filter::filter_fn(exported))), Some(export))
        }
        Ok(None) => (None, None),
        Err(e) => {
            eprintln!("warning: trace export is off: cannot build the OTLP exporter: {e:#}");
            (None, None)
        }
    };
    // Already installed (tests that start several nodes in one process).
    let _ = tracing_subscriber::registry().with(fmt.with_filter(filter)).with(otel).try_init();
    if export.is_some() {
        tracing::info!("exporting traces over OTLP");
    }
    export
}
