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

use opentelemetry::trace::TracerProvider;
use opentelemetry::KeyValue;
use opentelemetry_sdk::trace::SdkTracerProvider;

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

/// Set once this process's trace layer exists.
static EXPORTING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether spans are exported: fields only an exporter reads (`otel.*`,
/// `http.*`) are worth recording only then.
pub fn exporting() -> bool {
    EXPORTING.load(std::sync::atomic::Ordering::Relaxed)
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
    // Per-span work is what traces cost a message, so the layer does only
    // what the spans need: no busy/idle timing and no OpenTelemetry context
    // attached on every enter and exit (a span is entered at every poll of
    // its future; our ids are read with `OpenTelemetrySpanExt::context`,
    // which does not need it), no code location, thread or target
    // attributes.
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_tracked_inactivity(false)
        .with_context_activation(false)
        .with_location(false)
        .with_threads(false)
        .with_target(false);
    EXPORTING.store(true, std::sync::atomic::Ordering::Relaxed);
    Ok(Some((layer, TraceExport { provider })))
}

pub use caxton_cluster::trace_context::{
    continue_trace, continue_traceparent, current_ids, sampled_out, traceparent, unsampled, unsampled_ids,
};

#[cfg(test)]
mod tests {
    use super::*;

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
