//! `apply` for messages and conversations.

use rusqlite::{params, OptionalExtension, Transaction};

use super::commands::{AcceptOutcome, Response};
use super::events::StateEvent;
use crate::config::AgentName;
use crate::messaging::{ConversationState, Message, MessageKind, MessageStatus};

/// The message columns that are queried; everything else lives in `body`.
pub(crate) fn insert_message(tx: &Transaction<'_>, m: &Message, seq: u64) -> rusqlite::Result<()> {
    let body = serde_json::to_string(m).expect("message serializes");
    tx.execute(
        "INSERT INTO messages(id, kind, sender, receiver, receiver_key, capability, conversation_id, reply_to, body, status, reply_id, created_at, seq)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        params![
            m.id,
            m.kind.as_str(),
            m.sender,
            m.receiver,
            m.receiver.to_ascii_lowercase(),
            m.capability,
            m.conversation_id,
            m.reply_to,
            body,
            m.status.as_str(),
            m.reply_id,
            m.created_at_ms,
            seq
        ],
    )?;
    Ok(())
}

fn touch_conversation(tx: &Transaction<'_>, m: &Message) -> rusqlite::Result<bool> {
    let inserted = tx.execute(
        "INSERT OR IGNORE INTO conversations(id, protocol, state, initiator, created_at, updated_at) VALUES (?1, 'request-reply', ?2, ?3, ?4, ?4)",
        params![m.conversation_id, ConversationState::InProgress.as_str(), m.sender, m.created_at_ms],
    )?;
    if inserted == 0 {
        tx.execute(
            "UPDATE conversations SET updated_at = ?2, state = CASE WHEN protocol = 'request-reply' THEN ?3 ELSE state END WHERE id = ?1",
            params![m.conversation_id, m.created_at_ms, ConversationState::InProgress.as_str()],
        )?;
    }
    Ok(inserted > 0)
}

pub(crate) fn accept(
    tx: &Transaction<'_>,
    index: u64,
    messages: Vec<Message>,
    stage: &mut Vec<StateEvent>,
) -> rusqlite::Result<Response> {
    let mut outcomes = Vec::with_capacity(messages.len());
    for mut m in messages {
        let exists: bool =
            tx.query_row("SELECT 1 FROM messages WHERE id = ?1", [&m.id], |_| Ok(true)).optional()?.unwrap_or(false);
        if exists {
            outcomes.push(AcceptOutcome::Duplicate);
            continue;
        }
        let deployed: bool = tx
            .query_row("SELECT 1 FROM agents WHERE name_key = ?1", [m.receiver.to_ascii_lowercase()], |_| Ok(true))
            .optional()?
            .unwrap_or(false);
        if !deployed {
            outcomes.push(AcceptOutcome::UnknownReceiver);
            continue;
        }
        m.status = if m.kind == MessageKind::Request { MessageStatus::Accepted } else { MessageStatus::Final };
        m.reply_id = None;
        insert_message(tx, &m, index)?;
        if touch_conversation(tx, &m)? {
            stage.push(StateEvent::ConversationChanged { id: m.conversation_id.clone() });
        }
        stage.push(StateEvent::ConversationMessage {
            conversation_id: m.conversation_id.clone(),
            message_id: m.id.clone(),
        });
        if m.kind == MessageKind::Request {
            if let Ok(receiver) = AgentName::parse(&m.receiver) {
                stage.push(StateEvent::MessageAccepted { id: m.id.clone(), receiver });
            }
        }
        outcomes.push(AcceptOutcome::Accepted);
    }
    Ok(Response::Accepted(outcomes))
}

pub(crate) fn record_replies(
    tx: &Transaction<'_>,
    index: u64,
    replies: Vec<Message>,
    stage: &mut Vec<StateEvent>,
) -> rusqlite::Result<Response> {
    let mut recorded = Vec::with_capacity(replies.len());
    for mut reply in replies {
        let Some(request_id) = reply.reply_to.clone() else {
            recorded.push(false);
            continue;
        };
        let open: Option<String> =
            tx.query_row("SELECT status FROM messages WHERE id = ?1", [&request_id], |r| r.get(0)).optional()?;
        let exists: bool = tx
            .query_row("SELECT 1 FROM messages WHERE id = ?1", [&reply.id], |_| Ok(true))
            .optional()?
            .unwrap_or(false);
        if open.as_deref() != Some(MessageStatus::Accepted.as_str()) || exists {
            recorded.push(false);
            continue;
        }
        let failed = reply.kind == MessageKind::Error;
        reply.status = MessageStatus::Final;
        insert_message(tx, &reply, index)?;
        let new_status = if failed { MessageStatus::Failed } else { MessageStatus::Answered };
        // The request's stored body carries status too; keep both in step.
        let body: String = tx.query_row("SELECT body FROM messages WHERE id = ?1", [&request_id], |r| r.get(0))?;
        let mut request: Message =
            serde_json::from_str(&body).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        request.status = new_status;
        request.reply_id = Some(reply.id.clone());
        tx.execute(
            "UPDATE messages SET status = ?2, reply_id = ?3, body = ?4 WHERE id = ?1",
            params![
                request_id,
                new_status.as_str(),
                reply.id,
                serde_json::to_string(&request).expect("message serializes")
            ],
        )?;
        let state = if failed { ConversationState::Failed } else { ConversationState::Completed };
        tx.execute(
            "UPDATE conversations SET updated_at = ?2, state = CASE WHEN protocol = 'request-reply' THEN ?3 ELSE state END WHERE id = ?1",
            params![reply.conversation_id, reply.created_at_ms, state.as_str()],
        )?;
        stage.push(StateEvent::ConversationMessage {
            conversation_id: reply.conversation_id.clone(),
            message_id: reply.id.clone(),
        });
        stage.push(StateEvent::ReplyRecorded { request_id, reply_id: reply.id.clone() });
        stage.push(StateEvent::ConversationChanged { id: reply.conversation_id.clone() });
        recorded.push(true);
    }
    Ok(Response::Recorded(recorded))
}

pub(crate) fn set_conversation(
    tx: &Transaction<'_>,
    id: &str,
    protocol: &str,
    state: ConversationState,
    detail: Option<String>,
    at_ms: i64,
    stage: &mut Vec<StateEvent>,
) -> rusqlite::Result<Response> {
    tx.execute(
        "INSERT INTO conversations(id, protocol, state, initiator, detail, created_at, updated_at) VALUES (?1, ?2, ?3, 'caxton', ?4, ?5, ?5)
         ON CONFLICT(id) DO UPDATE SET protocol = excluded.protocol, state = excluded.state, detail = COALESCE(excluded.detail, detail), updated_at = excluded.updated_at",
        params![id, protocol, state.as_str(), detail, at_ms],
    )?;
    stage.push(StateEvent::ConversationChanged { id: id.to_owned() });
    Ok(Response::Done)
}
