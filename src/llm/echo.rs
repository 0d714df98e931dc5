//! Zero-latency provider for load tests: answers with the last user message.

use super::types::{ChatRequest, ChatResponse, LlmError, LlmProvider, Role, TokenSink};

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
        let content =
            request.messages.iter().rev().find(|m| m.role == Role::User).map(|m| m.content.clone()).unwrap_or_default();
        if let Some(t) = tokens {
            for word in content.split_inclusive(' ') {
                let _ = t.send(word.to_owned());
            }
        }
        Ok(ChatResponse { content, finish_reason: "stop".into(), ..Default::default() })
    }
}
