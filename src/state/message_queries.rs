//! Reads of messages and conversations from the local replica.

use std::collections::HashMap;

use caxton_cluster::ReadError;
use rusqlite::{params, OptionalExtension};
use serde::Serialize;
use utoipa::ToSchema;

use super::queries::Queries;
use crate::messaging::{ConversationState, Message};

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ConversationRecord {
    pub id: String,
    /// `request-reply` or `contract-net`.
    pub protocol: String,
    pub state: ConversationState,
    pub initiator: String,
    pub detail: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

fn parse_body(body: String) -> rusqlite::Result<Message> {
    serde_json::from_str(&body)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e)))
}

impl Queries {
    pub async fn message(&self, id: &str) -> Result<Option<Message>, ReadError> {
        let id = id.to_owned();
        self.replica()
            .read(move |c| {
                let body: Option<String> =
                    c.query_row("SELECT body FROM messages WHERE id = ?1", [id], |r| r.get(0)).optional()?;
                body.map(parse_body).transpose()
            })
            .await
    }

    pub async fn conversation(&self, id: &str) -> Result<Option<(ConversationRecord, Vec<Message>)>, ReadError> {
        let id = id.to_owned();
        self.replica()
            .read(move |c| {
                let conv = c
                    .query_row(
                        "SELECT id, protocol, state, initiator, detail, created_at, updated_at FROM conversations WHERE id = ?1",
                        [&id],
                        |r| {
                            Ok(ConversationRecord {
                                id: r.get(0)?,
                                protocol: r.get(1)?,
                                state: ConversationState::parse(&r.get::<_, String>(2)?),
                                initiator: r.get(3)?,
                                detail: r.get(4)?,
                                created_at_ms: r.get(5)?,
                                updated_at_ms: r.get(6)?,
                            })
                        },
                    )
                    .optional()?;
                let Some(conv) = conv else { return Ok(None) };
                let mut s = c.prepare_cached("SELECT body FROM messages WHERE conversation_id = ?1 ORDER BY seq, created_at, id")?;
                let bodies = s.query_map([&id], |r| r.get::<_, String>(0))?.collect::<rusqlite::Result<Vec<_>>>()?;
                let messages = bodies.into_iter().map(parse_body).collect::<rusqlite::Result<Vec<_>>>()?;
                Ok(Some((conv, messages)))
            })
            .await
    }

    /// Accepted, unanswered requests for agents this node owns now.
    pub async fn pending_for_node(&self, node_id: u64) -> Result<Vec<(String, String)>, ReadError> {
        self.replica()
            .read(move |c| {
                let mut s = c.prepare_cached(
                    "SELECT m.id, m.receiver FROM messages m JOIN agents a ON a.name_key = m.receiver_key
                     WHERE m.status = 'accepted' AND a.owner = ?1 ORDER BY m.seq",
                )?;
                let rows = s.query_map(params![node_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
                rows.collect()
            })
            .await
    }

    /// Unanswered requests per agent (lower-cased name), for load-aware routing.
    pub async fn pending_counts(&self) -> Result<HashMap<String, u64>, ReadError> {
        self.replica()
            .read(|c| {
                let mut s = c.prepare_cached(
                    "SELECT receiver_key, COUNT(*) FROM messages WHERE status = 'accepted' GROUP BY receiver_key",
                )?;
                let rows = s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
                rows.collect()
            })
            .await
    }

    /// The exchanges an agent had in a conversation before `before` (oldest first).
    pub async fn history(&self, conversation_id: &str, agent: &str, before: &str) -> Result<Vec<Message>, ReadError> {
        let (conv, agent, before) = (conversation_id.to_owned(), agent.to_ascii_lowercase(), before.to_owned());
        self.replica()
            .read(move |c| {
                let mut s = c.prepare_cached(
                    "SELECT body FROM messages WHERE conversation_id = ?1 AND id != ?3
                     AND (receiver_key = ?2 OR reply_to IN (SELECT id FROM messages WHERE conversation_id = ?1 AND receiver_key = ?2))
                     AND seq <= (SELECT seq FROM messages WHERE id = ?3)
                     ORDER BY seq, created_at, id",
                )?;
                let bodies = s.query_map(params![conv, agent, before], |r| r.get::<_, String>(0))?.collect::<rusqlite::Result<Vec<_>>>()?;
                bodies.into_iter().map(parse_body).collect()
            })
            .await
    }

    /// Capabilities declared by any agent (for "no agent has X" errors).
    pub async fn capabilities(&self) -> Result<Vec<String>, ReadError> {
        self.replica()
            .read(|c| {
                let mut s =
                    c.prepare_cached("SELECT DISTINCT capability FROM agent_capabilities ORDER BY capability")?;
                let rows = s.query_map([], |r| r.get(0))?;
                rows.collect()
            })
            .await
    }

    /// Agents declaring a capability (names as written).
    pub async fn agents_with_capability(&self, capability: &str) -> Result<Vec<String>, ReadError> {
        let cap = capability.to_owned();
        self.replica()
            .read(move |c| {
                let mut s = c.prepare_cached(
                    "SELECT a.name FROM agents a JOIN agent_capabilities k ON k.name_key = a.name_key WHERE k.capability = ?1 ORDER BY a.name_key",
                )?;
                let rows = s.query_map([cap], |r| r.get(0))?;
                rows.collect()
            })
            .await
    }
}
