//! Traces over OTLP/HTTP, on only when the standard variables ask for it
//! (`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`;
//! `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER`,
//! `OTEL_BSP_*` are honoured by the SDK). Without them no exporter, no
//! OpenTelemetry layer and no export thread exist.
//!
//! A message is committed through Raft and processed by whichever node owns
//! its agent, so the trace context travels inside the message: its
//! `trace_id` and `span_id` fields hold the W3C ids of the span that sent it
//! (see [`stamp`]), and the processing span on the owner continues that
//! trace ([`continue_trace`]).

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Keeps the exporter alive; [`TraceExport::shutdown`] flushes what is
/// buffered.
pub struct TraceExport {
    provider: SdkTracerProvider,
}

impl TraceExport {
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown() {
            eprintln!("flushing traces failed: {e}");
        }
    }
}

/// Whether the environment asks for trace export.
pub fn requested() -> bool {
    let set = |k: &str| std::env::var(k).is_ok_and(|v| !v.trim().is_empty());
    let disabled = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"))
        || std::env::var("OTEL_TRACES_EXPORTER").is_ok_and(|v| v.eq_ignore_ascii_case("none"));
    !disabled && (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

/// The exporter and the tracing layer feeding it, when [`requested`].
pub fn layer<S>(node_id: u64) -> anyhow::Result<Option<(impl tracing_subscriber::Layer<S>, TraceExport)>>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    if !requested() {
        return Ok(None);
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder().with_http().build()?;
    let mut resource = opentelemetry_sdk::Resource::builder()
        .with_attribute(KeyValue::new("service.instance.id", node_id.to_string()))
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
    let named = std::env::var("OTEL_SERVICE_NAME").is_ok()
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|a| a.contains("service.name="));
    if !named {
        resource = resource.with_service_name("caxton");
    }
    let provider = SdkTracerProvider::builder().with_resource(resource.build()).with_batch_exporter(exporter).build();
    let tracer = provider.tracer("caxton");
    Ok(Some((tracing_opentelemetry::layer().with_tracer(tracer), TraceExport { provider })))
}

/// The W3C ids of the current span, if it is part of an exported trace.
pub fn current_ids() -> Option<(String, String)> {
    let cx = tracing::Span::current().context();
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid().then(|| (sc.trace_id().to_string(), sc.span_id().to_string()))
}

/// The parent context a message carries, if its ids are W3C ids.
fn remote_parent(trace_id: &str, span_id: &str) -> Option<Context> {
    let trace = TraceId::from_hex(trace_id).ok().filter(|t| *t != TraceId::INVALID)?;
    let span = SpanId::from_hex(span_id).ok().filter(|s| *s != SpanId::INVALID)?;
    let sc = SpanContext::new(trace, span, TraceFlags::SAMPLED, true, TraceState::default());
    Some(Context::new().with_remote_span_context(sc))
}

/// Makes `span` a child of the span that sent a message (before `span` is
/// entered). A message without W3C ids (tracing off when it was sent)
/// leaves `span` a root.
pub fn continue_trace(span: &tracing::Span, trace_id: &str, span_id: &str) {
    if let Some(parent) = remote_parent(trace_id, span_id) {
        let _ = span.set_parent(parent);
    }
}

/// The `traceparent` header value for the current span, if traced.
pub fn traceparent() -> Option<String> {
    current_ids().map(|(trace, span)| format!("00-{trace}-{span}-01"))
}

/// Makes `span` a child of an incoming `traceparent` (W3C Trace Context).
pub fn continue_traceparent(span: &tracing::Span, header: &str) {
    let mut parts = header.trim().split('-');
    if let (Some("00"), Some(trace), Some(parent), Some(_flags)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    {
        continue_trace(span, trace, parent);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_w3c_ids_make_a_parent() {
        assert!(remote_parent("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7").is_some());
        assert!(remote_parent("0192f0e2-7c1e-7000-8000-000000000000", "00f067aa0ba902b7").is_none(), "a request id");
        assert!(remote_parent("00000000000000000000000000000000", "00f067aa0ba902b7").is_none());
    }

    #[test]
    fn export_is_off_without_an_endpoint() {
        // The test process sets no OTEL_* variables.
        if std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_none()
            && std::env::var_os("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_none()
        {
            assert!(!requested());
        }
    }
}
