//! Whether an agent's model can ever take a message, asked before the
//! message is committed: a message too long for a local model's context
//! is refused at the door (`422 prompt-too-long`), not accepted and then
//! answered with an error.

use crate::llm::Providers;
use crate::messaging::Admission;

pub struct ModelAdmission {
    providers: Providers,
}

impl ModelAdmission {
    pub fn new(providers: Providers) -> Self {
        Self { providers }
    }
}

#[async_trait::async_trait]
impl Admission for ModelAdmission {
    async fn admit(&self, provider: Option<&str>, text: &str) -> Result<(), String> {
        // A provider that cannot be found is the send's own problem to
        // report; only a model's refusal stops it here.
        let Ok(provider) = self.providers.get(provider) else { return Ok(()) };
        match provider.admits(text).await {
            Err(crate::llm::LlmError::PromptTooLong(why)) => Err(why),
            _ => Ok(()),
        }
    }
}
