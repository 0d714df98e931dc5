//! What a turn needs before the model is asked: the agent's memory place,
//! what it recalls for the request, and the conversation so far.

use crate::config::AgentSpec;
use crate::memory::types::{MemoryScope, Place, Viewer};
use crate::memory::SearchQuery;
use crate::messaging::Message;

use super::executor::{Executor, ProcessError};

/// A turn's inputs read from memory and the replica.
pub(super) struct Prepared {
    /// Where the agent's memory lives and what it may see; None when off.
    pub memory: Option<(Place, Viewer)>,
    /// Memory hits for the request, formatted for `{{context}}`.
    pub recalled: Option<String>,
    /// Earlier exchanges of this agent in the conversation, oldest first.
    pub history: Vec<Message>,
}

pub(super) async fn prepare(exec: &Executor, spec: &AgentSpec, message: &Message) -> Result<Prepared, ProcessError> {
    // A subscription's conversation is every publication it received: each
    // one stands alone, or the prompt would grow with the topic's traffic.
    let history = match message.topic {
        Some(_) => Vec::new(),
        None => exec.ledger.queries.history(&message.conversation_id, spec.name.as_str(), &message.id).await?,
    };
    let memory = agent_memory(spec);
    let recalled = match &memory {
        Some((_, viewer)) => recall(exec, spec, viewer, &message.content).await,
        None => None,
    };
    Ok(Prepared { memory, recalled, history })
}

/// Where an agent's memory lives and what it may see; None when disabled.
fn agent_memory(spec: &AgentSpec) -> Option<(Place, Viewer)> {
    if !spec.memory.enabled {
        return None;
    }
    let workspace = spec.workspace().to_owned();
    let place = match spec.memory.scope {
        MemoryScope::AgentOnly => Place::agent(spec.name.as_str()),
        MemoryScope::Workspace => Place::workspace(&workspace),
        MemoryScope::Global => Place::global(),
    };
    Some((place, Viewer { agent: Some(spec.name.to_string()), workspace: Some(workspace) }))
}

/// Memory hits for a request, formatted for `{{context}}`.
async fn recall(exec: &Executor, spec: &AgentSpec, viewer: &Viewer, request: &str) -> Option<String> {
    let q = SearchQuery {
        text: request.to_owned(),
        viewer: viewer.clone(),
        scope: None,
        entity_type: None,
        limit: spec.memory.search_limit as usize,
        min_similarity: spec.memory.min_similarity,
    };
    match exec.memory.search(q).await {
        Ok(hits) if !hits.is_empty() => Some(
            hits.iter()
                .map(|h| format!("- {} ({}): {}", h.name, h.entity_type, h.observation))
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(error = %e, "memory search before the request failed; answering without it");
            None
        }
    }
}
