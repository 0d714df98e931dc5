//! Errors as RFC 9457 `application/problem+json`. Every error kind has a
//! stable `type` URI that clients can match on; the mapping from module
//! errors to HTTP happens here and only here.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::agents::RegistryError;
use crate::config::FieldError;
use caxton_cluster::{ReadError, WriteError};

const TYPE_BASE: &str = "https://caxton.dev/problems/";

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
}

impl Problem {
    pub fn new(status: StatusCode, kind: &str, title: &str, detail: impl Into<String>) -> Self {
        Self {
            kind: format!("{TYPE_BASE}{kind}"),
            title: title.into(),
            status: status.as_u16(),
            detail: detail.into(),
            errors: Vec::new(),
            extra: None,
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad-request", "Bad request", detail)
    }

    pub fn not_found(kind: &str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, kind, "Not found", detail)
    }

    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "Internal error", detail)
    }

    pub fn with_errors(mut self, errors: Vec<FieldError>) -> Self {
        self.errors = errors;
        self
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (status, axum::Json(self)).into_response();
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        resp
    }
}

impl From<RegistryError> for Problem {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::Invalid(p) => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-agent",
                "Invalid agent definition",
                p.to_string(),
            )
            .with_errors(p.0),
            RegistryError::NotFound(_) => Problem::not_found("agent-not-found", e.to_string()),
            RegistryError::NameMismatch { .. } => {
                Problem::new(StatusCode::BAD_REQUEST, "name-mismatch", "Name mismatch", e.to_string())
            }
            RegistryError::FileManaged(_) => {
                Problem::new(StatusCode::CONFLICT, "agent-file-managed", "Agent is file-managed", e.to_string())
            }
            RegistryError::Write(w) => w.into(),
            RegistryError::Read(r) => r.into(),
        }
    }
}

impl From<WriteError> for Problem {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::NoLeader
            | WriteError::LeaderUnreachable { .. }
            | WriteError::Timeout(_)
            | WriteError::NoQuorum(_) => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "cluster-unavailable",
                "Cluster unavailable",
                e.to_string(),
            ),
            WriteError::Fatal(_) => {
                Problem::new(StatusCode::SERVICE_UNAVAILABLE, "node-stopping", "Node stopping", e.to_string())
            }
            WriteError::Rejected(_) | WriteError::Decode(_) => Problem::internal(e.to_string()),
        }
    }
}

impl From<ReadError> for Problem {
    fn from(e: ReadError) -> Self {
        Problem::internal(e.to_string())
    }
}
