//! Shadow copies: a shadow rollout's new revision answers a sampled copy of
//! a request, side effects suppressed and nothing streamed or stored; how
//! it did, and how close its answer is to the stable one's, is recorded for
//! the rollout's analysis.

use std::time::{Duration, Instant};

use super::commit::served_outcome;
use super::executor::{Executor, ProcessError, Serving};
use super::generate::{generate, Audience};
use super::prepare::prepare;
use crate::messaging::MessageKind;
use crate::state::RecordShadow;

/// Answers the shadow copy of request `id` with `revision` and records it.
pub(super) async fn shadow(exec: &Executor, serving: &Serving, id: &str, revision: u64) -> Result<(), ProcessError> {
    let _permit = exec.shadow_permits.clone().acquire_owned().await.map_err(|e| ProcessError::Reply(e.to_string()))?;
    let Some(message) = exec.ledger.queries.message(id).await? else { return Ok(()) };
    let spec = exec.spec_at(serving, revision).await?;
    let free = spec.rollout.as_ref().map(|r| r.side_effect_free.clone()).unwrap_or_default();
    let started = Instant::now();
    let prepared = prepare(exec, &spec, &message).await?;
    let result = generate(exec, &spec, &message, prepared, Audience::Shadow { free: &free }).await;
    let took_ms = started.elapsed().as_millis() as u64;
    let outcome = served_outcome(&result);
    let content = match &result {
        Ok(answer) => answer.clone(),
        Err(e) => e.to_string(),
    };
    let similarity = match (&result, stable_answer(exec, id, spec.timeout()).await?) {
        (Ok(answer), Some(stable)) => exec.memory.similarity(answer, &stable).await.ok(),
        _ => None,
    };
    let record = RecordShadow { request_id: id.to_owned(), outcome, took_ms, content, similarity };
    exec.ledger.store.propose(record).await.map_err(|e| ProcessError::Reply(e.to_string()))
}

/// The stable revision's successful answer to `id`, waiting up to `wait`.
async fn stable_answer(exec: &Executor, id: &str, wait: Duration) -> Result<Option<String>, ProcessError> {
    let deadline = Instant::now() + wait + Duration::from_secs(5);
    while Instant::now() < deadline {
        let request = exec.ledger.queries.message(id).await?;
        if let Some(reply_id) = request.and_then(|m| m.reply_id) {
            let reply = exec.ledger.queries.message(&reply_id).await?;
            return Ok(reply.filter(|r| r.kind == MessageKind::Response).map(|r| r.content));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(None)
}
