//! What follows a live turn: the interaction stored in memory (when the
//! agent asks for it), the outcome counted, and the reply committed.

use std::time::Instant;

use super::executor::{Executor, ProcessError};
use super::turns::TurnError;
use crate::config::AgentSpec;
use crate::memory::types::Place;
use crate::messaging::{Message, MessageKind};
use crate::observability::Outcome;
use crate::state::{Served, ServedOutcome, TurnUsage};

/// Stores the request and its answer as an interaction, for `auto_store`.
pub(super) async fn remember(exec: &Executor, spec: &AgentSpec, place: &Place, message: &Message, answer: &str) {
    if !spec.memory.auto_store {
        return;
    }
    let observations = vec![format!("Request: {}", message.content), format!("Answer: {answer}")];
    let name = format!("interaction {}", message.id);
    if let Err(e) = exec.memory.store(place, &name, "interaction", observations).await {
        tracing::warn!(error = %e, "auto_store failed");
    }
}

/// Counts how `message`'s turn ended and commits its reply (batched with
/// other workers' replies).
pub(super) async fn commit(
    exec: &Executor,
    spec: &AgentSpec,
    message: Message,
    result: Result<String, TurnError>,
    started: Instant,
    (usage, tool_calls): (TurnUsage, Vec<crate::state::ToolCallRecord>),
) -> Result<(), ProcessError> {
    let served = Served { outcome: served_outcome(&result), took_ms: started.elapsed().as_millis() as u64 };
    count(exec, spec, &message, served.outcome, started);
    if message.kind == MessageKind::Notification {
        // Recorded like a reply, which closes the notification instead.
        let event = if result.is_ok() { "processed" } else { "failed" };
        exec.metrics.protocol_event("notification", event);
    }
    let limit = match &result {
        Err(TurnError::Limit(l)) => {
            exec.metrics.limit_reached(l.limit);
            Some(l.limit.to_owned())
        }
        _ => None,
    };
    let (kind, content) = match result {
        Ok(answer) => (MessageKind::Response, answer),
        Err(e) => {
            tracing::warn!(error = %e, "request failed");
            (MessageKind::Error, e.to_string())
        }
    };
    // Asked only when there is something to keep: the common reply has none.
    let tool_calls = if !tool_calls.is_empty() && exec.ledger.store.supports(crate::state::REPLY_TOOL_CALLS).await {
        tool_calls
    } else {
        Vec::new()
    };
    let span_id = crate::state::new_span_id();
    let at_ms = crate::time::now_ms();
    let reply = Message {
        served: Some(served),
        usage: Some(usage),
        limit,
        tool_calls,
        ..message.reply(kind, spec.name.to_string(), content, span_id, at_ms)
    };
    exec.replies.submit(reply).await.map(|_recorded| ()).map_err(|e| ProcessError::Reply(e.to_string()))
}

/// The outcome in the span, the message metrics and, while a rollout runs,
/// the revision's.
fn count(exec: &Executor, spec: &AgentSpec, message: &Message, served: ServedOutcome, started: Instant) {
    let outcome = match served {
        ServedOutcome::Ok => Outcome::Ok,
        ServedOutcome::Timeout => Outcome::Timeout,
        ServedOutcome::Error => Outcome::Error,
    };
    if outcome != Outcome::Ok {
        tracing::Span::current().record("error.type", outcome.as_str());
    }
    if let Some(revision) = message.revision {
        exec.metrics.revision_done(spec.name.as_str(), revision, outcome, started.elapsed());
    }
    exec.metrics.message_done(
        spec.name.as_str(),
        &message.kind.as_str().to_ascii_lowercase(),
        outcome,
        started.elapsed(),
    );
}

/// How a turn ended, as its reply (and a rollout's analysis) records it.
pub(super) fn served_outcome(result: &Result<String, TurnError>) -> ServedOutcome {
    match result {
        Ok(_) => ServedOutcome::Ok,
        Err(TurnError::Timeout(_)) => ServedOutcome::Timeout,
        Err(_) => ServedOutcome::Error,
    }
}
