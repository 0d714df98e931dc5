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

/// [`exported`], and nothing from work a sampler already dropped
/// ([`traces::sampled_out`]): that is decided per span, not per callsite.
fn trace_filter<S>() -> impl tracing_subscriber::layer::Filter<S> {
    use tracing::subscriber::Interest;
    tracing_subscriber::filter::dynamic_filter_fn(|meta, _| exported(meta) && !traces::sampled_out())
        .with_callsite_filter(|meta| if exported(meta) { Interest::sometimes() } else { Interest::never() })
        .with_max_level_hint(tracing::Level::INFO)
}

/// The installed log filter, for `set_log_level`.
static LOG_LEVEL: std::sync::OnceLock<tracing_subscriber::reload::Handle<EnvFilter, tracing_subscriber::Registry>> =
    std::sync::OnceLock::new();

/// Changes the log level of the running process (a config reload).
/// `RUST_LOG`, when set, wins over the configured level, then as at start.
pub fn set_log_level(level: &str) -> Result<(), String> {
    if std::env::var_os("RUST_LOG").is_some() {
        return Err("RUST_LOG is set and wins over log.level".into());
    }
    let filter = EnvFilter::try_new(level).map_err(|e| format!("log.level = {level:?}: {e}"))?;
    let handle = LOG_LEVEL.get().ok_or("this process did not install the log output")?;
    handle.reload(filter).map_err(|e| e.to_string())
}

/// The thread that writes log lines, kept until [`finish_logging`].
static LOG_WRITER: parking_lot::Mutex<Option<tracing_appender::non_blocking::WorkerGuard>> =
    parking_lot::Mutex::new(None);

/// Lines waiting for the log thread before a request thread waits for it
/// (nothing is dropped: a full queue holds its writers back).
const QUEUED_LINES: usize = 64 * 1024;

/// Standard error, written by a thread of its own. A loaded node writes a
/// line or two per request; written from the request's thread, each was a
/// system call under the process-wide stderr lock, which the two workers
/// took turns on. The log thread writes whatever has queued up at once and
/// flushes when the queue is empty, so lines reach the file within moments;
/// a clean exit ([`finish_logging`]) writes every queued line, a `kill -9`
/// loses at most the ones still queued.
fn log_writer() -> (tracing_appender::non_blocking::NonBlocking, tracing_appender::non_blocking::WorkerGuard) {
    let stderr = std::io::BufWriter::with_capacity(64 * 1024, std::io::stderr());
    tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(QUEUED_LINES)
        .thread_name("caxton-log")
        .finish(stderr)
}

/// Writes every queued log line and stops the log thread; lines logged
/// after it are lost. Called once, just before the process exits.
pub fn finish_logging() {
    drop(LOG_WRITER.lock().take());
}

/// Installs the global subscriber: the log output, and trace export when
/// the OTLP variables ask for it (the returned handle flushes it at exit).
/// `RUST_LOG` wins over the configured level.
pub fn init_logging(format: LogFormat, level: &str, node_id: u64) -> Option<TraceExport> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    let (writer, guard) = log_writer();
    let fmt = tracing_subscriber::fmt::layer().with_span_events(FmtSpan::NONE).with_writer(writer);
    let fmt = match format {
        LogFormat::Json => fmt.json().with_current_span(true).with_span_list(false).boxed(),
        LogFormat::Text => fmt.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).boxed(),
    };
    let (otel, export) = match traces::layer(node_id) {
        Ok(Some((layer, export))) => (Some(layer.with_filter(trace_filter())), Some(export)),
        Ok(None) => (None, None),
        Err(e) => {
            eprintln!("warning: trace export is off: cannot build the OTLP exporter: {e:#}");
            (None, None)
        }
    };
    // Already installed (tests that start several nodes in one process).
    if tracing_subscriber::registry().with(fmt.with_filter(filter)).with(otel).try_init().is_ok() {
        let _ = LOG_LEVEL.set(handle);
        *LOG_WRITER.lock() = Some(guard);
    }
    if export.is_some() {
        tracing::info!("exporting traces over OTLP");
    }
    export
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// Counts the spans it is given.
    struct Spans(Arc<AtomicUsize>);

    impl<S: tracing::Subscriber> Layer<S> for Spans {
        fn on_new_span(
            &self,
            _: &tracing::span::Attributes<'_>,
            _: &tracing::span::Id,
            _: tracing_subscriber::layer::Context<'_, S>,
        ) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[tokio::test]
    async fn the_trace_layer_sees_our_spans_and_none_of_an_unsampled_trace() {
        let seen = Arc::new(AtomicUsize::new(0));
        let subscriber = tracing_subscriber::registry().with(Spans(seen.clone()).with_filter(trace_filter()));
        let _default = tracing::subscriber::set_default(subscriber);
        let _ours = tracing::info_span!(target: "caxton::agents", "invoke_agent");
        let _theirs = tracing::info_span!(target: "hyper::proto", "encode");
        let _detail = tracing::debug_span!(target: "caxton::agents", "detail");
        assert_eq!(seen.load(Ordering::Relaxed), 1, "only Caxton's own INFO spans");
        traces::unsampled("4bf92f3577b34da6a3ce929d0e0e4736".into(), "00f067aa0ba902b7".into(), async {
            let _dropped = tracing::info_span!(target: "caxton::agents", "invoke_agent");
        })
        .await;
        assert_eq!(seen.load(Ordering::Relaxed), 1, "a dropped trace's spans are not built");
        let _again = tracing::info_span!(target: "caxton::agents", "invoke_agent");
        assert_eq!(seen.load(Ordering::Relaxed), 2);
    }
}
