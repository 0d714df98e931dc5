//! What the driven protocols (auctions, negotiations) share in the replica:
//! their conversation, opened with an expiry and closed once, and the
//! notices they send inside the entry that decides.

use rusqlite::params;

use super::envelope::ApplyCtx;
use super::events::StateEvent;
use super::messages::{ConversationState, Message, MessageKind, MessageStatus, Protocol};
use caxton_cluster::CachedSql;

/// Opens the conversation of a driven protocol: `in_progress`, with its
/// expiry (past it, further messages in it are refused).
pub(super) fn open(
    ctx: &mut ApplyCtx<'_, '_>,
    id: &str,
    protocol: Protocol,
    initiator: &str,
    detail: &str,
    expires_at_ms: i64,
    at_ms: i64,
) -> rusqlite::Result<()> {
    ctx.tx.exec(
        "INSERT OR IGNORE INTO conversations(id, protocol, state, initiator, detail, created_at, updated_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7)",
        params![id, protocol.as_str(), ConversationState::InProgress.as_str(), initiator, detail, at_ms, expires_at_ms],
    )?;
    ctx.stage.push(StateEvent::ConversationChanged { id: id.to_owned() });
    ctx.stage.push(StateEvent::ProtocolChanged { id: id.to_owned() });
    Ok(())
}

/// Ends it with `state` and why.
pub(super) fn close(
    ctx: &mut ApplyCtx<'_, '_>,
    id: &str,
    state: ConversationState,
    reason: &str,
    at_ms: i64,
) -> rusqlite::Result<()> {
    ctx.tx.exec(
        "UPDATE conversations SET state = ?2, detail = ?3, updated_at = ?4 WHERE id = ?1",
        params![id, state.as_str(), reason, at_ms],
    )?;
    ctx.stage.push(StateEvent::ConversationChanged { id: id.to_owned() });
    Ok(())
}

/// A delivered notification from a protocol (`sender`) to one party, in
/// the protocol's conversation. Its id is chosen by the caller so that a
/// re-sent notice is the same message.
pub fn notice(id: String, sender: &str, receiver: &str, conversation_id: &str, content: String, at_ms: i64) -> Message {
    Message {
        id,
        kind: MessageKind::Notification,
        sender: sender.to_owned(),
        receiver: receiver.to_owned(),
        capability: None,
        conversation_id: conversation_id.to_owned(),
        reply_to: None,
        content,
        requirements: None,
        context: None,
        history: vec![],
        trace_id: conversation_id.to_owned(),
        span_id: "0000000000000000".to_owned(),
        trace_unsampled: false,
        hop: 0,
        created_at_ms: at_ms,
        status: MessageStatus::Accepted,
        reply_id: None,
        revision: None,
        served: None,
        attempts: 0,
        sent_by: None,
        deliver: true,
        topic: None,
        failure: None,
        usage: None,
        limit: None,
        sampling: None,
        tool_calls: Vec::new(),
    }
}
