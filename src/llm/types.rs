use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
    Tool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// Provider-assigned id; tool results refer back to it.
    pub id: String,
    pub name: String,
    /// Arguments as parsed JSON (an object, usually).
    pub arguments: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// For `Role::Tool`: the call this is the result of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl ChatMessage {
    pub fn system(content: impl Into<String>) -> Self {
        Self { role: Role::System, content: content.into(), tool_calls: vec![], tool_call_id: None }
    }
    pub fn user(content: impl Into<String>) -> Self {
        Self { role: Role::User, content: content.into(), tool_calls: vec![], tool_call_id: None }
    }
    pub fn assistant(content: impl Into<String>, tool_calls: Vec<ToolCall>) -> Self {
        Self { role: Role::Assistant, content: content.into(), tool_calls, tool_call_id: None }
    }
    pub fn tool(call_id: &str, content: impl Into<String>) -> Self {
        Self { role: Role::Tool, content: content.into(), tool_calls: vec![], tool_call_id: Some(call_id.to_owned()) }
    }
}

/// A tool the model may call, described by a JSON schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    pub parameters: serde_json::Value,
}

#[derive(Debug, Clone, Default)]
pub struct ChatRequest {
    pub messages: Vec<ChatMessage>,
    pub tools: Vec<ToolSpec>,
    /// Overrides the provider's configured model.
    pub model: Option<String>,
    pub temperature: Option<f32>,
    pub max_tokens: Option<u32>,
    pub top_p: Option<f32>,
    /// Generation ends before the first of these would be produced.
    pub stop: Vec<String>,
    pub seed: Option<u64>,
}

impl ChatRequest {
    /// With a client's sampling parameters over the provider's defaults.
    pub fn sampled(mut self, params: &Sampling) -> Self {
        self.temperature = params.temperature.or(self.temperature);
        self.max_tokens = params.max_tokens.or(self.max_tokens);
        self.top_p = params.top_p.or(self.top_p);
        self.seed = params.seed.or(self.seed);
        if !params.stop.is_empty() {
            self.stop = params.stop.clone();
        }
        self
    }
}

/// Where the first of `stops` starts in `text`, if one is there (empty
/// stop strings never match).
pub fn stop_at(text: &str, stops: &[String]) -> Option<usize> {
    stops.iter().filter(|s| !s.is_empty()).filter_map(|s| text.find(s.as_str())).min()
}

/// Sampling parameters a client set on its request (the OpenAI-compatible
/// door's), carried by the message to whichever node answers it. Unset
/// ones keep the provider's settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Sampling {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

impl Sampling {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChatResponse {
    pub content: String,
    pub tool_calls: Vec<ToolCall>,
    /// `stop`, `tool_calls`, `length`.
    pub finish_reason: String,
    pub usage: Usage,
}

/// Where streamed tokens go. Dropping the receiver never fails generation.
pub type TokenSink = mpsc::UnboundedSender<String>;

#[derive(Debug, Clone, thiserror::Error)]
pub enum LlmError {
    /// The provider refused the request (4xx other than 429): the caller's
    /// problem, passed on verbatim.
    #[error("the LLM provider `{provider}` rejected the request (HTTP {status}): {message}")]
    Rejected { provider: String, status: u16, message: String },
    #[error("the LLM provider `{provider}` is unavailable after {attempts} attempts: {last}")]
    Unavailable { provider: String, attempts: u32, last: String },
    #[error("the LLM provider `{provider}` did not answer within {timeout_ms} ms")]
    Timeout { provider: String, timeout_ms: u64 },
    #[error("the LLM provider `{provider}` answered something unreadable: {detail}")]
    Protocol { provider: String, detail: String },
    #[error("no LLM provider named `{0}` is configured")]
    UnknownProvider(String),
    #[error("local model: {0}")]
    Local(String),
    /// The prompt does not fit the model's context, even without history.
    #[error("local model: {0}")]
    PromptTooLong(String),
}

#[async_trait::async_trait]
pub trait LlmProvider: Send + Sync {
    fn name(&self) -> &str;
    /// Runs one completion. Tokens, if wanted, are sent to `tokens` as they
    /// are produced; the full answer is returned either way.
    async fn chat(&self, request: ChatRequest, tokens: Option<TokenSink>) -> Result<ChatResponse, LlmError>;

    /// Whether a message of `text` can ever fit this provider's prompt
    /// (`PromptTooLong` names the limit when not), asked before the message
    /// is committed. Remote providers judge for themselves: anything goes.
    async fn admits(&self, _text: &str) -> Result<(), LlmError> {
        Ok(())
    }
}
