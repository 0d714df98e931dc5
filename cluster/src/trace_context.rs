//! W3C Trace Context for spans that cross nodes: the ids of the current
//! span (to put in a `traceparent` header, or in a committed message), and
//! making a span the child of ids received from elsewhere. Inert when no
//! OpenTelemetry layer is installed: the ids are then invalid and nothing
//! is sent.

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry::Context;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The header carrying the context on HTTP.
pub const TRACEPARENT: &str = "traceparent";

tokio::task_local! {
    /// The W3C ids (trace, span) of the unsampled trace the running task
    /// belongs to; see [`unsampled`].
    static UNSAMPLED: (String, String);
}

/// Runs `fut` as part of a trace a sampler dropped, with these W3C ids.
/// Spans created while it runs are not given to the trace layer (its filter
/// asks [`sampled_out`]): they would be built, attributes and all, only for
/// the SDK to drop them when they end, which is most of what tracing costs
/// a message under a ratio sampler. [`current_context`] still reports the
/// ids, unsampled, so messages and RPCs sent from here carry the decision
/// on and nothing downstream starts a trace of its own.
pub async fn unsampled<F: std::future::Future>(trace_id: String, span_id: String, fut: F) -> F::Output {
    UNSAMPLED.scope((trace_id, span_id), fut).await
}

/// Whether the code running now belongs to a trace a sampler dropped.
pub fn sampled_out() -> bool {
    UNSAMPLED.try_with(|_| ()).is_ok()
}

/// The W3C ids of `span` if it is traced and its trace was not sampled:
/// what to run the span's work [`unsampled`] with.
pub fn unsampled_ids(span: &tracing::Span) -> Option<(String, String)> {
    context_of(span).filter(|(_, _, sampled)| !sampled).map(|(t, s, _)| (t, s))
}

fn context_of(span: &tracing::Span) -> Option<(String, String, bool)> {
    let cx = span.context();
    let otel = cx.span();
    let sc = otel.span_context();
    sc.is_valid().then(|| (sc.trace_id().to_string(), sc.span_id().to_string(), sc.is_sampled()))
}

/// The W3C ids (trace, span) of the current span and whether it is
/// sampled, if it has a trace context at all (inside [`unsampled`], that
/// trace's ids).
pub fn current_context() -> Option<(String, String, bool)> {
    context_of(&tracing::Span::current())
        .or_else(|| UNSAMPLED.try_with(|(trace, span)| (trace.clone(), span.clone(), false)).ok())
}

/// The W3C ids (trace, span) of the current span, if it is sampled: the
/// spans worth creating below it.
pub fn current_ids() -> Option<(String, String)> {
    current_context().filter(|(_, _, sampled)| *sampled).map(|(t, s, _)| (t, s))
}

/// `traceparent` for the current span, sampled or not (the flags say
/// which, so the receiver makes the same decision).
pub fn traceparent() -> Option<String> {
    current_context().map(|(trace, span, sampled)| format!("00-{trace}-{span}-{}", if sampled { "01" } else { "00" }))
}

/// The context of a span on another node (or in a committed message),
/// if these are W3C ids.
fn remote_span(trace_id: &str, span_id: &str, sampled: bool) -> Option<SpanContext> {
    let trace = TraceId::from_hex(trace_id).ok().filter(|t| *t != TraceId::INVALID)?;
    let span = SpanId::from_hex(span_id).ok().filter(|s| *s != SpanId::INVALID)?;
    let flags = if sampled { TraceFlags::SAMPLED } else { TraceFlags::default() };
    Some(SpanContext::new(trace, span, flags, true, TraceState::default()))
}

fn remote_parent(trace_id: &str, span_id: &str, sampled: bool) -> Option<Context> {
    remote_span(trace_id, span_id, sampled).map(|sc| Context::new().with_remote_span_context(sc))
}

/// Whether these are W3C trace and span ids (not a request id, not zero).
pub fn is_w3c(trace_id: &str, span_id: &str) -> bool {
    remote_span(trace_id, span_id, true).is_some()
}

/// Makes `span` (not yet entered) a child of the span with these W3C ids;
/// ids that are not W3C ids (a request id) leave it as it is.
pub fn continue_trace(span: &tracing::Span, trace_id: &str, span_id: &str) {
    continue_sampled(span, trace_id, span_id, true);
}

/// [`continue_trace`] with the sender's sampling decision: an unsampled
/// parent makes a parent-based sampler drop this span and its children.
pub fn continue_sampled(span: &tracing::Span, trace_id: &str, span_id: &str, sampled: bool) {
    if let Some(parent) = remote_parent(trace_id, span_id, sampled) {
        let _ = span.set_parent(parent);
    }
}

/// Links `span` to the span with these W3C ids (sampled): a span that
/// handles several traced things at once (a batch) is the child of one and
/// linked to the others.
pub fn link(span: &tracing::Span, trace_id: &str, span_id: &str) {
    if let Some(linked) = remote_span(trace_id, span_id, true) {
        span.add_link(linked);
    }
}

/// Makes `span` a child of a `traceparent` header value.
pub fn continue_traceparent(span: &tracing::Span, header: &str) {
    let mut parts = header.trim().split('-');
    if let (Some("00"), Some(trace), Some(parent), Some(flags)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    {
        let sampled = u8::from_str_radix(flags, 16).is_ok_and(|f| f & 1 == 1);
        continue_sampled(span, trace, parent, sampled);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_w3c_ids_make_a_parent() {
        assert!(remote_parent("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", true).is_some());
        assert!(
            remote_parent("0192f0e2-7c1e-7000-8000-000000000000", "00f067aa0ba902b7", true).is_none(),
            "a request id"
        );
        assert!(remote_parent("00000000000000000000000000000000", "00f067aa0ba902b7", true).is_none());
        assert!(is_w3c("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"));
        assert!(!is_w3c("0192f0e2-7c1e-7000-8000-000000000000", ""));
    }

    #[test]
    fn an_untraced_span_has_no_ids() {
        assert_eq!(traceparent(), None);
    }

    #[tokio::test]
    async fn an_unsampled_scope_passes_its_trace_on_unsampled() {
        assert!(!sampled_out());
        let (trace, span) = ("4bf92f3577b34da6a3ce929d0e0e4736".to_owned(), "00f067aa0ba902b7".to_owned());
        let inside = unsampled(trace, span, async { (sampled_out(), traceparent(), current_ids()) }).await;
        assert_eq!(inside, (true, Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00".to_owned()), None));
        assert!(!sampled_out());
    }
}
