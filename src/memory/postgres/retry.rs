//! Which database failures are worth retrying, and the retry loop every
//! memory operation runs in: transient failures (the connection dropped,
//! the server restarting, a serialization conflict, a pool with no free
//! connection) are retried with backoff; when they persist the caller gets
//! `MemoryError::Unavailable` (503 with Retry-After). A write retried here
//! had rolled back: it is acknowledged only after its COMMIT succeeded, and
//! a COMMIT whose answer was lost is never replayed (it may have applied).

use std::future::Future;
use std::time::{Duration, Instant};

use tracing::Instrument;

use crate::memory::MemoryError;
use crate::observability::Metrics;

/// One attempt's failure.
#[derive(Debug)]
pub enum Failure {
    /// Nothing was applied; trying again may work.
    Transient(String),
    /// Trying again will not help (a bug, a refused privilege).
    Fatal(String),
    /// The request's own values were refused (text PostgreSQL cannot store).
    Invalid(String),
    /// The connection was lost while COMMIT was in flight: the write may or
    /// may not have applied, so it is not replayed.
    Unknown(String),
}

impl Failure {
    /// A failed COMMIT: without the server's answer the outcome is unknown.
    pub fn at_commit(e: tokio_postgres::Error) -> Self {
        match e.as_db_error() {
            // The server answered (and so rolled back): as any other error.
            Some(_) => Self::from(e),
            None => Self::Unknown(e.to_string()),
        }
    }
}

impl From<tokio_postgres::Error> for Failure {
    fn from(e: tokio_postgres::Error) -> Self {
        let Some(db) = e.as_db_error() else {
            // No server answer: transient only if the connection is gone or
            // never came; anything else is on our side (a bug, bad TLS).
            let io = std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>());
            let text = e.to_string();
            return if e.is_closed() || io || text.starts_with("timeout") {
                Self::Transient(text)
            } else {
                Self::Fatal(text)
            };
        };
        let code = db.code().code();
        let text = format!("{} ({code})", db.message());
        // 08: connection exception; 40001/40P01: serialization failure,
        // deadlock; 53: insufficient resources; 57P01-03: shutting down,
        // crashed, starting; 57014: canceled (statement timeout) under load;
        // 25P03/25P04: a session or transaction timed out.
        if code.starts_with("08")
            || code.starts_with("53")
            || matches!(code, "40001" | "40P01" | "57P01" | "57P02" | "57P03" | "57014" | "25P03" | "25P04")
        {
            Self::Transient(text)
        } else if matches!(code, "22021" | "22P05") {
            Self::Invalid(text)
        } else {
            Self::Fatal(text)
        }
    }
}

impl From<deadpool_postgres::PoolError> for Failure {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(db) => db.into(),
            other => Self::Transient(format!("no database connection: {other}")),
        }
    }
}

/// How long an operation keeps retrying before it answers 503.
const RETRY_BUDGET: Duration = Duration::from_secs(3);
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_millis(800);

/// Runs `attempt` until it succeeds, fails for good, or transient failures
/// outlast the retry budget; times and traces the operation.
pub async fn run<T, F, Fut>(metrics: &Metrics, operation: &'static str, mut attempt: F) -> Result<T, MemoryError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Failure>>,
{
    let span = tracing::info_span!(
        "db",
        otel.name = format!("memory {operation}"),
        otel.kind = "client",
        db.system.name = "postgresql",
        db.operation.name = operation,
        db.attempts = tracing::field::Empty,
        error.type = tracing::field::Empty
    );
    let started = Instant::now();
    let result = async {
        let mut backoff = FIRST_BACKOFF;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            match attempt().await {
                Ok(v) => return (Ok(v), attempts),
                Err(Failure::Fatal(why)) => return (Err(MemoryError::Database(why)), attempts),
                Err(Failure::Invalid(why)) => return (Err(MemoryError::Invalid(why)), attempts),
                Err(Failure::Unknown(why)) => {
                    let why = format!("the connection was lost during COMMIT ({why}); the write may have applied");
                    return (Err(MemoryError::Unavailable(why)), attempts);
                }
                Err(Failure::Transient(why)) => {
                    if started.elapsed() + backoff > RETRY_BUDGET {
                        return (Err(MemoryError::Unavailable(why)), attempts);
                    }
                    tracing::debug!(operation, attempts, error = %why, "memory database call failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
    .instrument(span.clone())
    .await;
    let (result, attempts) = result;
    span.record("db.attempts", attempts);
    let outcome = match &result {
        Ok(_) => "ok",
        Err(MemoryError::Unavailable(_)) => "unavailable",
        Err(_) => "error",
    };
    if outcome != "ok" {
        span.record("error.type", outcome);
    }
    metrics.memory_db_queries.with_label_values(&[operation, outcome]).observe(started.elapsed().as_secs_f64());
    result
}
