//! A2A's errors: JSON-RPC codes (§5.4 of the specification) and, for the
//! HTTP+JSON binding, an HTTP status.

use serde_json::{json, Value};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum A2aError {
    #[error("invalid JSON: {0}")]
    Parse(String),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("method `{0}` is not an A2A method")]
    MethodNotFound(String),
    #[error("invalid parameters: {0}")]
    InvalidParams(String),
    #[error("{0}")]
    Internal(String),
    #[error("task `{0}` not found")]
    TaskNotFound(String),
    #[error("task `{id}` cannot be canceled: it is {state}")]
    TaskNotCancelable { id: String, state: &'static str },
    #[error("push notifications are not supported")]
    PushNotificationNotSupported,
    #[error("{0}")]
    UnsupportedOperation(String),
    #[error("{0}")]
    ContentTypeNotSupported(String),
    #[error("A2A version `{0}` is not supported; this server speaks 1.0")]
    VersionNotSupported(String),
    /// A Caxton problem behind the A2A call (limits, quorum, sizes):
    /// kept whole in the error's data.
    #[error("{detail}")]
    Caxton { code: i64, status: u16, detail: String, problem: Value },
}

impl A2aError {
    pub fn code(&self) -> i64 {
        match self {
            Self::Parse(_) => -32700,
            Self::InvalidRequest(_) => -32600,
            Self::MethodNotFound(_) => -32601,
            Self::InvalidParams(_) => -32602,
            Self::Internal(_) => -32603,
            Self::TaskNotFound(_) => -32001,
            Self::TaskNotCancelable { .. } => -32002,
            Self::PushNotificationNotSupported => -32003,
            Self::UnsupportedOperation(_) => -32004,
            Self::ContentTypeNotSupported(_) => -32005,
            Self::VersionNotSupported(_) => -32009,
            Self::Caxton { code, .. } => *code,
        }
    }

    /// The HTTP+JSON binding's HTTP status and google.rpc status name.
    pub fn http_status(&self) -> (u16, &'static str) {
        match self {
            Self::Parse(_) | Self::InvalidRequest(_) | Self::InvalidParams(_) => (400, "INVALID_ARGUMENT"),
            Self::ContentTypeNotSupported(_) => (400, "INVALID_ARGUMENT"),
            Self::MethodNotFound(_) | Self::TaskNotFound(_) => (404, "NOT_FOUND"),
            Self::Internal(_) => (500, "INTERNAL"),
            Self::TaskNotCancelable { .. }
            | Self::PushNotificationNotSupported
            | Self::UnsupportedOperation(_)
            | Self::VersionNotSupported(_) => (400, "FAILED_PRECONDITION"),
            Self::Caxton { status, .. } => (*status, grpc_status(*status)),
        }
    }

    /// A2A's reason names, as the HTTP+JSON binding's `ErrorInfo` carries them.
    fn reason(&self) -> &'static str {
        match self {
            Self::Parse(_) => "PARSE_ERROR",
            Self::InvalidRequest(_) => "INVALID_REQUEST",
            Self::MethodNotFound(_) => "METHOD_NOT_FOUND",
            Self::InvalidParams(_) => "INVALID_PARAMS",
            Self::Internal(_) | Self::Caxton { .. } => "INTERNAL_ERROR",
            Self::TaskNotFound(_) => "TASK_NOT_FOUND",
            Self::TaskNotCancelable { .. } => "TASK_NOT_CANCELABLE",
            Self::PushNotificationNotSupported => "PUSH_NOTIFICATION_NOT_SUPPORTED",
            Self::UnsupportedOperation(_) => "UNSUPPORTED_OPERATION",
            Self::ContentTypeNotSupported(_) => "CONTENT_TYPE_NOT_SUPPORTED",
            Self::VersionNotSupported(_) => "VERSION_NOT_SUPPORTED",
        }
    }

    /// A2A's machine-readable detail: ErrorInfo, whose metadata (strings
    /// only) carries the Caxton problem behind it, if any.
    fn error_info(&self) -> Value {
        let mut metadata = serde_json::Map::new();
        if let Self::Caxton { problem, .. } = self {
            for key in ["type", "title", "detail"] {
                if let Some(v) = problem[key].as_str() {
                    metadata.insert(format!("problem_{key}"), Value::String(v.to_owned()));
                }
            }
        }
        json!({
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": self.reason(),
            "domain": "a2a-protocol.org",
            "metadata": metadata,
        })
    }

    /// The JSON-RPC `error` member (sent with HTTP 200, as clients expect).
    pub fn rpc_error(&self) -> Value {
        json!({"code": self.code(), "message": self.to_string(), "data": [self.error_info()]})
    }

    /// The HTTP+JSON binding's body (google.rpc.Status).
    pub fn http_body(&self) -> Value {
        let (status, name) = self.http_status();
        json!({"error": {"code": status, "status": name, "message": self.to_string(), "details": [self.error_info()]}})
    }
}

fn grpc_status(http: u16) -> &'static str {
    match http {
        400 | 413 | 415 | 422 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "FAILED_PRECONDITION",
        429 => "RESOURCE_EXHAUSTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "INTERNAL",
    }
}
