//! LLM providers: a conversation plus tool schemas in, text and/or tool
//! calls out, optionally streaming tokens.
//!
//! Three kinds: `openai` (any OpenAI-compatible Chat Completions endpoint),
//! `local` (a GGUF model run in-process with candle; the default, so a fresh
//! install answers with no key and no network) and `echo` (zero latency, for
//! load tests).

mod echo;
mod local;
mod openai;
mod providers;
mod types;

pub use echo::EchoProvider;
pub use local::{Generation, LocalModel, LocalModelError, LocalSettings};
pub use openai::{OpenAiProvider, OpenAiSettings};
pub use providers::{ProviderConfig, ProviderKind, Providers};
pub use types::{
    ChatMessage, ChatRequest, ChatResponse, LlmError, LlmProvider, Role, Sampling, TokenSink, ToolCall, ToolSpec, Usage,
};
