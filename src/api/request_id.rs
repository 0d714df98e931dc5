//! Gives every request an id (the caller's `x-request-id` if sane, else a new
//! UUIDv7), opens a span carrying it so every log line the request causes
//! names it, propagates it to cluster RPCs, and echoes it in the response.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

pub use crate::observability::REQUEST_ID_HEADER as HEADER;

fn acceptable(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
}

pub async fn layer(mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| acceptable(v))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    if let Ok(v) = HeaderValue::from_str(&id) {
        req.headers_mut().insert(HEADER, v);
    }
    // The OpenTelemetry fields are recorded only for an exporter: a log
    // line would print them beside `method` and `path`, which say the same.
    // `otel.name` is the route template, known once routed (`observe_http`).
    let span = tracing::info_span!(
        "request",
        otel.name = tracing::field::Empty,
        otel.kind = tracing::field::Empty,
        http.request.method = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
        request_id = %id,
        method = %req.method(),
        path = %req.uri().path()
    );
    let exporting = crate::observability::traces::exporting();
    if exporting {
        span.record("otel.name", format!("{} {}", req.method(), req.uri().path()));
        span.record("otel.kind", "server");
        span.record("http.request.method", req.method().as_str());
    }
    // A W3C `traceparent` from the caller: this request continues its trace.
    if let Some(parent) = req.headers().get("traceparent").and_then(|v| v.to_str().ok()) {
        crate::observability::traces::continue_traceparent(&span, parent);
    }
    let started = std::time::Instant::now();
    let mut resp = caxton_cluster::TRACE_ID
        .scope(
            id.clone(),
            async move {
                let resp = next.run(req).await;
                if exporting {
                    tracing::Span::current().record("http.response.status_code", resp.status().as_u16());
                }
                log_failure(&resp);
                tracing::info!(
                    status = resp.status().as_u16(),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "request done"
                );
                resp
            }
            .instrument(span),
        )
        .await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(HEADER, v);
    }
    resp
}

/// A failed request says why in the log, under its request id (the span's):
/// a server error with its cause, a client error at debug.
fn log_failure(resp: &Response) {
    let status = resp.status().as_u16();
    let answered = resp.extensions().get::<super::problem::Answered>();
    match (status, answered) {
        (500.., Some(a)) => tracing::error!(status, problem = %a.kind, cause = %a.detail, "request failed"),
        (500.., None) => tracing::error!(status, "request failed"),
        (400..=499, Some(a)) => tracing::debug!(status, problem = %a.kind, detail = %a.detail, "request refused"),
        _ => {}
    }
}
