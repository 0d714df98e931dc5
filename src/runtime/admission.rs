//! Whether an agent's model can ever take a message, asked before the
//! message is committed: a message too long for a local model's context
//! is refused at the door (`422 prompt-too-long`), not accepted and then
//! answered with an error.

use crate::config::AgentName;
use crate::llm::Providers;
use crate::messaging::Admission;
use crate::state::Queries;

pub struct ModelAdmission {
    queries: Queries,
    providers: Providers,
}

impl ModelAdmission {
    pub fn new(queries: Queries, providers: Providers) -> Self {
        Self { queries, providers }
    }
}

#[async_trait::async_trait]
impl Admission for ModelAdmission {
    async fn admit(&self, receiver: &str, text: &str) -> Result<(), String> {
        // An agent or provider that cannot be found is the send's own
        // problem to report; only a model's refusal stops it here.
        let Ok(name) = AgentName::parse(receiver) else { return Ok(()) };
        let Ok(Some(agent)) = self.queries.agent(&name).await else { return Ok(()) };
        let Ok(provider) = self.providers.get(agent.spec.provider.as_deref()) else { return Ok(()) };
        match provider.admits(text).await {
            Err(crate::llm::LlmError::PromptTooLong(why)) => Err(why),
            _ => Ok(()),
        }
    }
}
