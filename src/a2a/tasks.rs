//! A Caxton request seen as an A2A task: the task's id is the request's,
//! its `contextId` the conversation, its state the request's life, its
//! artifact the agent's answer.

use serde_json::json;

use super::wire::{Artifact, Message as A2aMessage, Part, Role, Task, TaskState, TaskStatus};
use crate::state::{Message, MessageKind};

/// The artifact that carries an agent's answer.
pub const ANSWER_ARTIFACT: &str = "answer";

/// The sender label of requests that came in over A2A (their key is in
/// `sent_by`): what `ListTasks` lists.
pub const A2A_SENDER: &str = "a2a";

/// What a cancel records on the error reply that closes the request.
pub const CANCELED: &str = "canceled";

/// A task's state from its request and, once recorded, its reply.
pub fn state_of(request: &Message, reply: Option<&Message>) -> TaskState {
    let Some(reply) = reply else {
        return if request.attempts > 0 { TaskState::Working } else { TaskState::Submitted };
    };
    match reply.kind {
        MessageKind::Response => TaskState::Completed,
        _ if reply.failure.as_deref() == Some(CANCELED) => TaskState::Canceled,
        // An agent limit refused the work: the agent declined it.
        _ if reply.limit.is_some() => TaskState::Rejected,
        _ => TaskState::Failed,
    }
}

pub fn timestamp(at_ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(at_ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A message of `request`'s task.
pub fn message_of(request: &Message, message_id: String, role: Role, text: String) -> A2aMessage {
    A2aMessage {
        message_id,
        context_id: Some(request.conversation_id.clone()),
        task_id: Some(request.id.clone()),
        role,
        parts: vec![Part::text(text)],
        metadata: None,
        extensions: vec![],
        reference_task_ids: vec![],
    }
}

/// The client's message, as the request holds it.
pub fn user_message(request: &Message) -> A2aMessage {
    message_of(request, request.id.clone(), Role::User, request.content.clone())
}

/// The agent's reply as an A2A message.
pub fn agent_message(request: &Message, reply: &Message) -> A2aMessage {
    message_of(request, reply.id.clone(), Role::Agent, reply.content.clone())
}

pub fn answer_artifact(text: impl Into<String>) -> Artifact {
    Artifact { artifact_id: ANSWER_ARTIFACT.into(), name: Some(ANSWER_ARTIFACT.into()), parts: vec![Part::text(text)] }
}

/// The task for `request`: the newest `history_length` messages of its
/// exchange (all when unset, none at 0), its answer as an artifact.
pub fn task_of(request: &Message, reply: Option<&Message>, history_length: Option<i32>) -> Task {
    let state = state_of(request, reply);
    let mut history = vec![user_message(request)];
    if let Some(reply) = reply {
        history.push(agent_message(request, reply));
    }
    let keep = history_length.map_or(history.len(), |n| n.max(0) as usize);
    history.drain(..history.len().saturating_sub(keep));
    let artifacts = match reply {
        Some(r) if r.kind == MessageKind::Response => vec![answer_artifact(r.content.clone())],
        _ => vec![],
    };
    Task {
        id: request.id.clone(),
        context_id: request.conversation_id.clone(),
        status: TaskStatus {
            state,
            // Why it failed, or the answer, is the status's message.
            message: reply.map(|r| agent_message(request, r)),
            timestamp: Some(timestamp(reply.map_or(request.created_at_ms, |r| r.created_at_ms))),
        },
        artifacts,
        history,
        metadata: Some(json!({"agent": request.receiver, "revision": request.revision})),
    }
}
