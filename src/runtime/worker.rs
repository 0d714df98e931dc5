//! One agent's worker: takes deliveries from its mailbox, runs up to its
//! `concurrency` limit of them at once, and answers each inside its
//! trace: prepare (`prepare.rs`), generate (`generate.rs`, charged to the
//! turn's budget), commit (`commit.rs`).

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::commit;
use super::executor::{Executor, ProcessError, Serving};
use super::generate::{generate, Audience};
use super::mailboxes::Delivery;
use super::prepare::prepare;
use crate::config::AgentSpec;
use crate::messaging::{Message, MessageStatus};
use crate::observability::AgentEvent;

pub(super) async fn worker(
    serving: Serving,
    mut inbox: mpsc::Receiver<Delivery>,
    stop: CancellationToken,
    exec: Arc<Executor>,
) {
    let concurrency = exec.limits_of(&serving.0).concurrency.unwrap_or(crate::config::limits::DEFAULT_CONCURRENCY);
    let permits = Arc::new(Semaphore::new(concurrency as usize));
    loop {
        let delivery = tokio::select! {
            _ = stop.cancelled() => return,
            d = inbox.recv() => match d { Some(d) => d, None => return },
        };
        if permits.available_permits() == 0 {
            exec.metrics.limit_reached("concurrency");
        }
        let Ok(permit) = permits.clone().acquire_owned().await else { return };
        let id = delivery.id.clone();
        if !exec.inflight.lock().insert(id.clone()) {
            continue;
        }
        exec.started.lock().insert(id.clone());
        let (serving, task_exec) = (serving.clone(), exec.clone());
        exec.shutdown.spawn(async move {
            let exec = task_exec;
            // Cleared even if processing panics: the sweep offers it again.
            let _inflight = InFlight { exec: &exec, id: &id };
            if let Err(e) = process(&serving, &delivery, &exec).await {
                tracing::warn!(agent = %serving.0.name, message = %id, error = %e, "message not answered yet; it will be retried");
                exec.metrics.agent_event(AgentEvent::Failed);
            }
            drop(permit);
        });
    }
}

/// A message marked in progress on this node until dropped.
struct InFlight<'a> {
    exec: &'a Executor,
    id: &'a str,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.exec.inflight.lock().remove(self.id);
    }
}

async fn process(serving: &Serving, delivery: &Delivery, exec: &Executor) -> Result<(), ProcessError> {
    let Some(message) = exec.ledger.queries.message(&delivery.id).await? else { return Ok(()) };
    if message.status != MessageStatus::Accepted {
        return Ok(());
    }
    if delivery.retry && !exec.counts_attempt(&message).await {
        return Ok(());
    }
    let spec = &*exec.spec_for(serving, &message).await?;
    // A sender's trace that was sampled out: its spans here are not built
    // for the trace layer either, and what this sends on stays unsampled.
    let dropped = (message.w3c_sampled() == Some(false)).then(|| (message.trace_id.clone(), message.span_id.clone()));
    let invoke = invoke(spec, message, serving.1, exec);
    match dropped {
        Some((trace, span)) => crate::observability::traces::unsampled(trace, span, invoke).await,
        None => invoke.await,
    }
}

/// Answers `message` inside its `invoke_agent` span.
async fn invoke(
    spec: &AgentSpec,
    message: Message,
    serving_revision: u64,
    exec: &Executor,
) -> Result<(), ProcessError> {
    // OpenTelemetry GenAI: an in-process agent's invocation is INTERNAL.
    let span = tracing::info_span!(
        "invoke_agent",
        otel.name = %format!("invoke_agent {}", spec.name),
        otel.kind = "internal",
        gen_ai.operation.name = "invoke_agent",
        gen_ai.agent.name = %spec.name,
        gen_ai.agent.version = message.revision.unwrap_or(serving_revision),
        gen_ai.conversation.id = %message.conversation_id,
        gen_ai.provider.name = %spec.provider.as_deref().unwrap_or("default"),
        error.type = tracing::field::Empty,
        message_id = %message.id,
        agent = %spec.name,
        trace_id = %message.trace_id
    );
    // (An unsampled message runs in its trace's unsampled scope, where this
    // span is not built for the trace layer: only sampled ones continue.)
    caxton_cluster::trace_context::continue_trace(&span, &message.trace_id, &message.span_id);
    answer(spec, message, exec).instrument(span).await
}

async fn answer(spec: &AgentSpec, message: Message, exec: &Executor) -> Result<(), ProcessError> {
    let started = Instant::now();
    let prepared = prepare(exec, spec, &message).await?;
    let place = prepared.memory.as_ref().map(|(place, _)| place.clone());
    let budget = exec.budget(spec).await?;
    let result = generate(exec, spec, &message, prepared, Audience::Live(&budget)).await;
    if let (Ok(answer), Some(place)) = (&result, &place) {
        commit::remember(exec, spec, place, &message, answer).await;
    }
    commit::commit(exec, spec, message, result, started, (budget.used(), budget.tool_calls())).await
}
