//! Asking the model: the agent's turns (with its tools) for a prepared
//! request, live (tokens streamed to listeners) or as a shadow copy (side
//! effects suppressed, nothing streamed).

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use super::executor::Executor;
use super::prepare::Prepared;
use super::turns::{self, TurnError, TurnInputs};
use crate::config::AgentSpec;
use crate::llm::LlmProvider;
use crate::messaging::Message;

/// How a turn's effects reach the world.
pub(super) enum Audience<'a> {
    /// A real request: tokens stream to its listeners; it is charged to
    /// the agent's limits.
    Live(&'a super::budget::Budget),
    /// A shadow rollout's copy: only the tools in `free` really run.
    Shadow { free: &'a [String] },
}

/// Runs the agent's turns for `message` and returns the answer.
pub(super) async fn generate(
    exec: &Executor,
    spec: &AgentSpec,
    message: &Message,
    prepared: Prepared,
    audience: Audience<'_>,
) -> Result<String, TurnError> {
    let provider = exec.providers.get(spec.provider.as_deref()).map_err(TurnError::Llm)?;
    let (tokens, forward, shadow, budget) = match audience {
        Audience::Live(budget) => {
            let (tx, forward) = stream_tokens(exec, spec, &provider, message);
            (Some(tx), Some(forward), None, Some(budget))
        }
        Audience::Shadow { free } => (None, None, Some(free), None),
    };
    let inputs = TurnInputs {
        spec,
        recalled: prepared.recalled,
        memory: prepared.memory,
        message,
        history: prepared.history,
        provider,
        tools: &exec.tools,
        metrics: &exec.metrics,
        tokens,
        shadow,
        budget,
    };
    let answer = turns::run(inputs).await;
    if let Some(forward) = forward {
        // The stream ends when the turns drop their sender, before the
        // reply is committed.
        let _ = forward.await;
    }
    answer
}

/// A sender for the turns' tokens, and the task that hands them to the
/// request's listeners (who see tokens from here on), timing the first.
fn stream_tokens(
    exec: &Executor,
    spec: &AgentSpec,
    provider: &Arc<dyn LlmProvider>,
    message: &Message,
) -> (mpsc::UnboundedSender<String>, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    let producer = exec.messages.tokens.producer(&message.id);
    // From here the model is asked: the first token's delay is its time to
    // first token.
    let (asked, metrics) = (Instant::now(), exec.metrics.clone());
    let labels = [provider.name().to_owned(), metrics.models.of(spec.model.as_deref().unwrap_or("default")).to_owned()];
    let forward = tokio::spawn(async move {
        let mut first = true;
        while let Some(t) = rx.recv().await {
            if std::mem::take(&mut first) {
                let first_token = metrics.llm_first_token.with_label_values(&[&labels[0], &labels[1]]);
                first_token.observe(asked.elapsed().as_secs_f64());
            }
            producer.publish(t);
        }
    });
    (tx, forward)
}
