//! Errors as RFC 9457 `application/problem+json`. Every error kind has a
//! stable `type` URI that clients can match on ([`ProblemType`]); the
//! mapping from module errors to HTTP happens here and only here.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::config::FieldError;
use crate::problems::Classified;
pub use crate::problems::ProblemType;

const TYPE_BASE: &str = "https://caxton.dev/problems/";

/// The `type` URI of a problem type.
pub fn type_uri(kind: ProblemType) -> String {
    format!("{TYPE_BASE}{}", kind.slug())
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// Stable identifier of the error kind.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Field-level problems of an invalid definition.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// Extra machine-readable context for some kinds.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub extra: Option<serde_json::Value>,
    /// Sent as `Retry-After` (seconds), not in the body.
    #[serde(skip)]
    pub retry_after: Option<u64>,
}

impl Problem {
    pub fn of(kind: ProblemType, detail: impl Into<String>) -> Self {
        Self {
            kind: type_uri(kind),
            title: kind.title().into(),
            status: kind.status(),
            detail: detail.into(),
            errors: Vec::new(),
            extra: None,
            retry_after: None,
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::of(ProblemType::BadRequest, detail)
    }

    pub fn with_extra(mut self, extra: serde_json::Value) -> Self {
        self.extra = Some(extra);
        self
    }

    pub fn with_errors(mut self, errors: Vec<FieldError>) -> Self {
        self.errors = errors;
        self
    }
}

/// What an answered problem was, for the request's log line
/// (`request_id::layer`): 5xx are logged with their cause, 4xx at debug.
#[derive(Debug, Clone)]
pub struct Answered {
    pub kind: String,
    pub detail: String,
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let answered = Answered {
            kind: self.kind.strip_prefix(TYPE_BASE).unwrap_or(&self.kind).to_owned(),
            detail: self.detail.clone(),
        };
        let retry_after = self.retry_after;
        let mut resp = (status, axum::Json(self)).into_response();
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if let Some(secs) = retry_after {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp.extensions_mut().insert(answered);
        resp
    }
}

/// The one mapping from an error to its HTTP answer.
impl<E: Classified> From<E> for Problem {
    fn from(e: E) -> Self {
        let mut p = Problem::of(e.problem_type(), e.to_string());
        p.errors = e.field_errors();
        p.extra = e.problem_extra();
        p.retry_after = e.retry_after().map(|d| d.as_secs().max(1));
        p
    }
}
