//! Zero-latency provider for load tests: answers with the last user message,
//! a word per token, honouring `max_tokens` and `stop` like a model would.

use super::types::{ChatRequest, ChatResponse, LlmError, LlmProvider, Role, TokenSink, Usage};

pub struct EchoProvider {
    name: String,
}

impl EchoProvider {
    pub fn new(name: &str) -> Self {
        Self { name: name.to_owned() }
    }
}

#[async_trait::async_trait]
impl LlmProvider for EchoProvider {
    fn name(&self) -> &str {
        &self.name
    }

    async fn chat(&self, request: ChatRequest, tokens: Option<TokenSink>) -> Result<ChatResponse, LlmError> {
        let asked = request
            .messages
            .iter()
            .rev()
            .find(|m| m.role == Role::User)
            .map(|m| m.content.as_str())
            .unwrap_or_default();
        let mut said = asked;
        let mut finish = "stop";
        if let Some(at) = super::types::stop_at(said, &request.stop) {
            said = &said[..at];
        }
        let words: Vec<&str> = said.split_inclusive(' ').collect();
        let limit = request.max_tokens.map_or(usize::MAX, |m| m as usize);
        if words.len() > limit {
            finish = "length";
        }
        let words = &words[..words.len().min(limit)];
        if let Some(t) = tokens {
            for word in words {
                let _ = t.send((*word).to_owned());
            }
        }
        let prompt_tokens = request.messages.iter().map(|m| m.content.split_whitespace().count() as u32).sum();
        Ok(ChatResponse {
            content: words.concat(),
            finish_reason: finish.into(),
            usage: Usage { prompt_tokens, completion_tokens: words.len() as u32 },
            ..Default::default()
        })
    }
}
