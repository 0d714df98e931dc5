//! One request, start to finish: render the prompts, call the model, run
//! the tools it asks for (only allowlisted ones), loop up to `max_turns`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::Instrument;

use crate::config::AgentSpec;
use crate::llm::{ChatMessage, ChatRequest, ChatResponse, LlmProvider, TokenSink, ToolCall, ToolSpec};
use crate::messaging::{Message, MessageKind};
use crate::observability::{Metrics, Outcome};

use super::prompt;
use super::tools::{CallContext, Tools};

/// Characters of earlier conversation fed back to the model (newest kept).
pub const HISTORY_BUDGET_CHARS: usize = 16_000;

#[derive(Debug, thiserror::Error)]
pub enum TurnError {
    #[error("{0}")]
    Llm(#[from] crate::llm::LlmError),
    #[error("max_turns ({0}) reached without a final answer")]
    MaxTurns(u32),
    #[error("no answer within the agent's timeout of {0:?}")]
    Timeout(Duration),
    #[error(transparent)]
    Limit(#[from] crate::config::limits::LimitReached),
}

pub struct TurnInputs<'a> {
    pub spec: &'a AgentSpec,
    /// Memory hits to place in `{{context}}` (already searched).
    pub recalled: Option<String>,
    pub memory: Option<(crate::memory::types::Place, crate::memory::types::Viewer)>,
    pub message: &'a Message,
    /// Earlier exchanges of this agent in the conversation, oldest first.
    pub history: Vec<Message>,
    pub provider: Arc<dyn LlmProvider>,
    pub tools: &'a Tools,
    pub metrics: &'a Metrics,
    pub tokens: Option<TokenSink>,
    /// Shadow traffic: the tools that may really run (see `CallContext`).
    pub shadow: Option<&'a [String]>,
    /// The agent's limits, charged as the turn goes (None: shadow traffic,
    /// which is not counted against the agent).
    pub budget: Option<&'a super::budget::Budget>,
}

/// Earlier turns as chat messages, newest kept within the budget.
fn history_messages(message: &Message, history: &[Message]) -> Vec<ChatMessage> {
    let mut turns: Vec<ChatMessage> = if !message.history.is_empty() {
        message.history.clone()
    } else {
        history
            .iter()
            .filter(|m| m.id != message.id)
            .filter_map(|m| match m.kind {
                MessageKind::Request => Some(ChatMessage::user(m.content.clone())),
                MessageKind::Response => Some(ChatMessage::assistant(m.content.clone(), vec![])),
                _ => None,
            })
            .collect()
    };
    let mut used = 0;
    let mut keep = turns.len();
    for (i, m) in turns.iter().enumerate().rev() {
        used += m.content.len();
        if used > HISTORY_BUDGET_CHARS {
            break;
        }
        keep = i;
    }
    turns.drain(..keep);
    turns
}

pub async fn run(inputs: TurnInputs<'_>) -> Result<String, TurnError> {
    let timeout = inputs.spec.timeout();
    let limited = inputs.budget.and_then(|b| b.turn_time()).filter(|t| *t < timeout);
    match tokio::time::timeout(limited.unwrap_or(timeout), run_turns(inputs)).await {
        Ok(r) => r,
        Err(_) => Err(match limited {
            Some(t) => TurnError::Limit(crate::config::limits::LimitReached {
                limit: "turn_time_ms",
                detail: format!("no answer within {} ms", t.as_millis()),
            }),
            None => TurnError::Timeout(timeout),
        }),
    }
}

async fn run_turns(inputs: TurnInputs<'_>) -> Result<String, TurnError> {
    let TurnInputs { spec, recalled, memory, message, history, provider, tools, metrics, tokens, shadow, budget } =
        inputs;
    if let Some(b) = budget {
        b.check_day()?;
    }
    let mut messages = opening(spec, recalled, message, &history);
    let mut offered = tools.offered(&spec.tools, memory.is_some());
    offered.extend(tools.offered_mcp(&spec.tools).await);
    offered.extend(super::tools::Tools::offered_a2a(&spec.a2a));
    let ctx = CallContext {
        agent: spec.name.as_str(),
        allowlist: &spec.tools,
        memory,
        conversation_id: &message.conversation_id,
        hop: message.hop,
        trace_id: &message.trace_id,
        deadline: spec.timeout(),
        shadow,
        a2a: &spec.a2a,
    };
    for _turn in 0..spec.max_turns {
        let request = ChatRequest {
            messages: messages.clone(),
            tools: offered.clone(),
            model: spec.model.clone(),
            ..Default::default()
        };
        let request = match &message.sampling {
            Some(sampling) => request.sampled(sampling),
            None => request,
        };
        let response = chat(spec, &provider, request, tokens.clone(), metrics).await?;
        if let Some(b) = budget {
            b.finished(&response.finish_reason);
            b.charge(&response.usage)?;
        }
        if response.tool_calls.is_empty() {
            return Ok(response.content);
        }
        messages.push(ChatMessage::assistant(response.content.clone(), response.tool_calls.clone()));
        for call in &response.tool_calls {
            if let Some(b) = budget {
                b.tool_call()?;
            }
            let (result, ok) = if offered.iter().any(|t| t.name == call.name) {
                call_tool(tools, call, &ctx, metrics).await
            } else {
                (refuse_tool(spec, call, &offered, metrics), false)
            };
            if let Some(b) = budget {
                b.tool_called(crate::state::ToolCallRecord::new(&call.name, &call.arguments, ok));
            }
            messages.push(ChatMessage::tool(&call.id, result));
        }
    }
    Err(TurnError::MaxTurns(spec.max_turns))
}

/// The conversation the model first sees: the system prompt, earlier
/// turns, the request (with what memory recalled in `{{context}}`).
fn opening(spec: &AgentSpec, recalled: Option<String>, message: &Message, history: &[Message]) -> Vec<ChatMessage> {
    let mut vars = prompt::variables(spec, message);
    if let Some(recalled) = recalled.filter(|r| !r.is_empty()) {
        let context = vars.entry("context".into()).or_default();
        if !context.is_empty() {
            context.push('\n');
        }
        context.push_str(&recalled);
    }
    let mut messages = vec![ChatMessage::system(prompt::render(&spec.system_prompt, &vars))];
    messages.extend(history_messages(message, history));
    let asked = prompt::render(&spec.user_prompt_template, &vars);
    messages.push(ChatMessage::user(match notice(message) {
        Some(notice) => format!("{notice}\n{asked}"),
        None => asked,
    }));
    messages
}

/// What tells the model a message is a notification: it acts on it (tools,
/// memory, messages to others) and its answer goes nowhere.
fn notice(message: &Message) -> Option<String> {
    if message.kind != crate::messaging::MessageKind::Notification {
        return None;
    }
    let on = message.topic.as_ref().map(|t| format!(" on topic `{t}`")).unwrap_or_default();
    Some(format!("[notification{on} from {}: act on it if needed; no reply is sent]", message.sender))
}

/// One model call inside its `chat` span, counted.
async fn chat(
    spec: &AgentSpec,
    provider: &Arc<dyn LlmProvider>,
    request: ChatRequest,
    tokens: Option<TokenSink>,
    metrics: &Metrics,
) -> Result<ChatResponse, TurnError> {
    let started = Instant::now();
    let model = spec.model.as_deref().unwrap_or("default");
    let chat = tracing::info_span!(
        "chat",
        otel.name = %format!("chat {model}"),
        otel.kind = "client",
        gen_ai.operation.name = "chat",
        gen_ai.provider.name = %provider.name(),
        gen_ai.request.model = %model,
        gen_ai.usage.input_tokens = tracing::field::Empty,
        gen_ai.usage.output_tokens = tracing::field::Empty,
        gen_ai.response.finish_reasons = tracing::field::Empty,
        error.type = tracing::field::Empty
    );
    let response = provider.chat(request, tokens).instrument(chat.clone()).await;
    let usage = match &response {
        Ok(r) => {
            chat.record("gen_ai.usage.input_tokens", r.usage.prompt_tokens);
            chat.record("gen_ai.usage.output_tokens", r.usage.completion_tokens);
            chat.record("gen_ai.response.finish_reasons", r.finish_reason.as_str());
            Ok((u64::from(r.usage.prompt_tokens), u64::from(r.usage.completion_tokens)))
        }
        Err(_) => {
            chat.record("error.type", "error");
            Err("error")
        }
    };
    metrics.llm_call(provider.name(), model, started.elapsed(), usage);
    Ok(response?)
}

/// What the model hears back when it calls a tool it was not offered.
fn refuse_tool(spec: &AgentSpec, call: &ToolCall, offered: &[ToolSpec], metrics: &Metrics) -> String {
    metrics.tool_call("-", &call.name, Outcome::Denied, Duration::ZERO);
    tracing::warn!(agent = %spec.name, tool = %call.name, "model called a tool outside the agent's allowlist");
    format!(
        "error: tool `{}` is not allowed for this agent; allowed tools: [{}]",
        call.name,
        offered.iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(", ")
    )
}

/// Runs an offered tool inside its `execute_tool` span; its result or
/// error, as the model reads it, and whether it answered.
async fn call_tool(tools: &Tools, call: &ToolCall, ctx: &CallContext<'_>, metrics: &Metrics) -> (String, bool) {
    let started = Instant::now();
    let builtin = super::tools::is_builtin(&call.name);
    let span = tracing::info_span!(
        "execute_tool",
        otel.name = %format!("execute_tool {}", call.name),
        otel.kind = "internal",
        gen_ai.operation.name = "execute_tool",
        gen_ai.tool.name = %call.name,
        gen_ai.tool.call.id = %call.id,
        gen_ai.tool.type = if builtin { "function" } else { "extension" },
        error.type = tracing::field::Empty
    );
    let result = tools.call(call, ctx).instrument(span.clone()).await;
    if result.is_err() {
        span.record("error.type", "tool_error");
    }
    // MCP servers' calls are counted by the registry, by server.
    if builtin {
        let outcome = if result.is_ok() { Outcome::Ok } else { Outcome::Error };
        metrics.tool_call("builtin", &call.name, outcome, started.elapsed());
    }
    match result {
        Ok(answer) => (answer, true),
        Err(e) => (format!("error: {e}"), false),
    }
}
