//! Publish/subscribe: subscriptions (an agent's `subscriptions` patterns,
//! and those made through the API) and publications, each fanned out in
//! the entry that commits it to one delivered notification per matching
//! subscription. Resolving subscribers inside `apply` makes the fan-out as
//! durable as the publication itself, and the same on every replica.

use rusqlite::{params, OptionalExtension, Transaction};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::envelope::{ApplyCtx, Proposal, Published, Response};
use super::events::StateEvent;
use super::messages::{ConversationState, Message, Protocol, DELIVER_NOTIFICATIONS};
use super::queries::Queries;
use crate::config::topic;
use caxton_cluster::CachedSql;
use caxton_cluster::ReadError;

/// Where a subscription was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionSource {
    /// The agent's TOML `subscriptions`: lives as long as the definition.
    Definition,
    /// `POST /v1/agents/{name}/subscriptions`: lives until cancelled.
    Api,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SubscriptionRecord {
    /// Cancels an API subscription (`DELETE .../subscriptions/{id}`).
    pub id: String,
    pub agent: String,
    pub pattern: String,
    pub source: SubscriptionSource,
    /// The `subscribe` conversation its publications arrive in.
    pub conversation_id: String,
    /// When an API subscription was made (definition ones: absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at_ms: Option<i64>,
}

/// One publication as stored; `position` orders a topic's stream.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PublicationRecord {
    pub position: i64,
    pub id: String,
    pub topic: String,
    pub publisher: String,
    pub content: String,
    /// Notifications it was fanned out to (one per matching subscription).
    pub recipients: u64,
    pub created_at_ms: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TopicSummary {
    pub topic: String,
    pub publications: u64,
    pub last_published_at_ms: i64,
}

/// The `subscribe` conversation of an agent's definition subscription: one
/// per (agent, pattern), named the same on every replica.
pub fn definition_conversation(agent_key: &str, pattern: &str) -> String {
    let digest = Sha256::digest(pattern.as_bytes());
    format!("subscribe-{agent_key}-{}", &hex::encode(digest)[..16])
}

/// Subscribes `agent` to `pattern` (checked at the edge).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Subscribe {
    pub id: String,
    pub agent: String,
    pub pattern: String,
    /// Who asked (an API key's name, or an agent).
    pub by: String,
    pub at_ms: i64,
}

impl Proposal for Subscribe {
    /// False: no such agent.
    type Output = bool;
    const NAME: &'static str = "Subscribe";
    const FEATURE: Option<&'static str> = Some(DELIVER_NOTIFICATIONS);
    fn output(r: Response) -> Result<bool, Response> {
        match r {
            Response::Done => Ok(true),
            Response::NotFound => Ok(false),
            other => Err(other),
        }
    }
}

impl Subscribe {
    pub(crate) fn apply(self, ctx: &mut ApplyCtx<'_, '_>) -> rusqlite::Result<Response> {
        let key = self.agent.to_ascii_lowercase();
        let tx = ctx.tx;
        let known: Option<String> =
            tx.row("SELECT name FROM agents WHERE name_key = ?1", [&key], |r| r.get(0)).optional()?;
        if known.is_none() {
            return Ok(Response::NotFound);
        }
        let conversation = format!("subscribe-{}", self.id);
        let inserted = tx.exec(
            "INSERT OR IGNORE INTO subscriptions(id, agent_key, pattern, conversation_id, created_by, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![self.id, key, self.pattern, conversation, self.by, self.at_ms],
        )?;
        if inserted > 0 {
            open_conversation(tx, &conversation, &self.by, &self.pattern, self.at_ms, ctx.stage)?;
        }
        Ok(Response::Done)
    }
}

fn open_conversation(
    tx: &Transaction<'_>,
    id: &str,
    initiator: &str,
    pattern: &str,
    at_ms: i64,
    stage: &mut Vec<StateEvent>,
) -> rusqlite::Result<()> {
    let inserted = tx.exec(
        "INSERT OR IGNORE INTO conversations(id, protocol, state, initiator, detail, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
        params![
            id,
            Protocol::Subscribe.as_str(),
            ConversationState::InProgress.as_str(),
            initiator,
            format!("pattern={pattern}"),
            at_ms
        ],
    )?;
    if inserted > 0 {
        stage.push(StateEvent::ConversationChanged { id: id.to_owned() });
    }
    Ok(())
}

/// Cancels an API subscription; its conversation completes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Unsubscribe {
    pub id: String,
    pub at_ms: i64,
}

impl Proposal for Unsubscribe {
    /// False: no such subscription.
    type Output = bool;
    const NAME: &'static str = "Unsubscribe";
    const FEATURE: Option<&'static str> = Some(DELIVER_NOTIFICATIONS);
    fn output(r: Response) -> Result<bool, Response> {
        match r {
            Response::Deleted(found) => Ok(found),
            other => Err(other),
        }
    }
}

impl Unsubscribe {
    pub(crate) fn apply(self, ctx: &mut ApplyCtx<'_, '_>) -> rusqlite::Result<Response> {
        let conversation: Option<String> = ctx
            .tx
            .row("SELECT conversation_id FROM subscriptions WHERE id = ?1", [&self.id], |r| r.get(0))
            .optional()?;
        let Some(conversation) = conversation else { return Ok(Response::Deleted(false)) };
        ctx.tx.exec("DELETE FROM subscriptions WHERE id = ?1", [&self.id])?;
        ctx.tx.exec(
            "UPDATE conversations SET state = ?2, detail = COALESCE(detail, '') || ' (cancelled)', updated_at = ?3 WHERE id = ?1",
            params![conversation, ConversationState::Completed.as_str(), self.at_ms],
        )?;
        ctx.stage.push(StateEvent::ConversationChanged { id: conversation });
        Ok(Response::Deleted(true))
    }
}

/// A publication to a topic, as proposed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Publication {
    pub id: String,
    pub topic: String,
    pub content: String,
    /// An agent's name, or the API key (or `user`) that published.
    pub publisher: String,
    pub trace_id: String,
    pub span_id: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub trace_unsampled: bool,
    /// Agent-to-agent hops that led here (a publication by an agent's
    /// turn is one more than the turn's message).
    pub hop: u32,
    pub at_ms: i64,
}

/// Publications, batched: each is stored once and fanned out.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Publish {
    pub publications: Vec<Publication>,
}

impl Proposal for Publish {
    type Output = Vec<Published>;
    const NAME: &'static str = "Publish";
    const FEATURE: Option<&'static str> = Some(DELIVER_NOTIFICATIONS);
    fn output(r: Response) -> Result<Vec<Published>, Response> {
        match r {
            Response::Published(outcomes) => Ok(outcomes),
            other => Err(other),
        }
    }
}

impl Publish {
    pub(crate) fn apply(self, ctx: &mut ApplyCtx<'_, '_>) -> rusqlite::Result<Response> {
        let mut outcomes = Vec::with_capacity(self.publications.len());
        for publication in self.publications {
            outcomes.push(publish(ctx, publication)?);
        }
        Ok(Response::Published(outcomes))
    }
}

/// A subscription a publication matched.
struct Recipient {
    agent: String,
    conversation_id: String,
    initiator: String,
    pattern: String,
}

fn publish(ctx: &mut ApplyCtx<'_, '_>, p: Publication) -> rusqlite::Result<Published> {
    let tx = ctx.tx;
    let exists: bool =
        tx.row("SELECT 1 FROM publications WHERE id = ?1", [&p.id], |_| Ok(true)).optional()?.unwrap_or(false);
    if exists {
        return Ok(Published::Duplicate);
    }
    let recipients = recipients(tx, &p.topic)?;
    let mut notifications = Vec::with_capacity(recipients.len());
    for (n, r) in recipients.iter().enumerate() {
        open_conversation(tx, &r.conversation_id, &r.initiator, &r.pattern, p.at_ms, ctx.stage)?;
        notifications.push(notification(&p, n, r));
    }
    let fanned = notifications.len() as u64;
    tx.exec(
        "INSERT INTO publications(id, topic, publisher, content, recipients, created_at, seq) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![p.id, p.topic, p.publisher, p.content, fanned, p.at_ms, ctx.index],
    )?;
    let position = tx.last_insert_rowid();
    super::messages::accept(tx, ctx.index, notifications, ctx.stage)?;
    ctx.stage.push(StateEvent::Published { position, topic: p.topic });
    Ok(Published::Fanned(fanned))
}

/// Definition subscriptions (agents whose spec subscribes, through the
/// `agents_subscribing` partial index) and runtime ones, in one order.
/// `CROSS JOIN` keeps `subscriptions` the outer loop: the planner would
/// otherwise walk every agent in key order to merge the two halves.
pub(super) const RECIPIENTS: &str =
    "SELECT a.name, a.name_key, s.value, NULL, NULL FROM agents a, json_each(a.spec, '$.subscriptions') s
       WHERE json_array_length(a.spec, '$.subscriptions') > 0
     UNION ALL
     SELECT a.name, a.name_key, sub.pattern, sub.conversation_id, sub.created_by FROM subscriptions sub
       CROSS JOIN agents a ON a.name_key = sub.agent_key
     ORDER BY 2, 3, 4";

/// Every subscription matching `topic`, in an order every replica agrees
/// on (agent, then pattern, then subscription id).
fn recipients(tx: &Transaction<'_>, topic_name: &str) -> rusqlite::Result<Vec<Recipient>> {
    let mut s = tx.prepare_cached(RECIPIENTS)?;
    let rows = s.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, Option<String>>(3)?,
            r.get::<_, Option<String>>(4)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (agent, key, pattern, conversation, by) = row?;
        if !topic::matches(&pattern, topic_name) {
            continue;
        }
        let conversation_id = conversation.unwrap_or_else(|| definition_conversation(&key, &pattern));
        out.push(Recipient { initiator: by.unwrap_or_else(|| agent.clone()), agent, conversation_id, pattern });
    }
    Ok(out)
}

/// The `n`-th notification of publication `p`: in the subscription's
/// conversation, in the publisher's trace, carrying the topic.
fn notification(p: &Publication, n: usize, r: &Recipient) -> Message {
    let id = format!("{}.{n}", p.id);
    Message {
        trace_id: p.trace_id.clone(),
        span_id: p.span_id.clone(),
        trace_unsampled: p.trace_unsampled,
        hop: p.hop,
        topic: Some(p.topic.clone()),
        ..super::sessions::notice(id, &p.publisher, &r.agent, &r.conversation_id, p.content.clone(), p.at_ms)
    }
}

impl Queries {
    /// An agent's subscriptions: its definition's, then the API's.
    pub async fn subscriptions_of(&self, agent: &str) -> Result<Vec<SubscriptionRecord>, ReadError> {
        let key = agent.to_ascii_lowercase();
        self.replica()
            .read(move |c| {
                let mut out = Vec::new();
                let mut s = c.prepare_cached(
                    "SELECT a.name, s.value FROM agents a, json_each(a.spec, '$.subscriptions') s WHERE a.name_key = ?1",
                )?;
                for row in s.query_map([&key], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))? {
                    let (agent, pattern) = row?;
                    out.push(SubscriptionRecord {
                        id: definition_conversation(&key, &pattern),
                        conversation_id: definition_conversation(&key, &pattern),
                        agent,
                        pattern,
                        source: SubscriptionSource::Definition,
                        created_at_ms: None,
                    });
                }
                let mut s = c.prepare_cached(
                    "SELECT sub.id, a.name, sub.pattern, sub.conversation_id, sub.created_at FROM subscriptions sub
                     JOIN agents a ON a.name_key = sub.agent_key WHERE sub.agent_key = ?1 ORDER BY sub.created_at, sub.id",
                )?;
                for row in s.query_map([&key], |r| {
                    Ok(SubscriptionRecord {
                        id: r.get(0)?,
                        agent: r.get(1)?,
                        pattern: r.get(2)?,
                        conversation_id: r.get(3)?,
                        source: SubscriptionSource::Api,
                        created_at_ms: Some(r.get(4)?),
                    })
                })? {
                    out.push(row?);
                }
                Ok(out)
            })
            .await
    }

    /// Which agent an API subscription belongs to (lower-cased), if it exists.
    pub async fn subscription_agent(&self, id: &str) -> Result<Option<String>, ReadError> {
        let id = id.to_owned();
        self.replica()
            .read(move |c| c.row("SELECT agent_key FROM subscriptions WHERE id = ?1", [id], |r| r.get(0)).optional())
            .await
    }

    /// Topics published to, with counts.
    pub async fn topics(&self) -> Result<Vec<TopicSummary>, ReadError> {
        self.replica()
            .read(|c| {
                let mut s = c.prepare_cached(
                    "SELECT topic, COUNT(*), MAX(created_at) FROM publications GROUP BY topic ORDER BY topic",
                )?;
                let rows = s.query_map([], |r| {
                    Ok(TopicSummary { topic: r.get(0)?, publications: r.get(1)?, last_published_at_ms: r.get(2)? })
                })?;
                rows.collect()
            })
            .await
    }

    /// Publications matching `pattern` after stream position `after`, oldest
    /// first, at most `limit`.
    pub async fn publications_after(
        &self,
        pattern: &str,
        after: i64,
        limit: usize,
    ) -> Result<Vec<PublicationRecord>, ReadError> {
        let pattern = pattern.to_owned();
        self.replica()
            .read(move |c| {
                let mut s = c.prepare_cached(
                    "SELECT position, id, topic, publisher, content, recipients, created_at FROM publications
                     WHERE position > ?1 ORDER BY position",
                )?;
                let rows = s.query_map([after], publication_row)?;
                let mut out = Vec::new();
                for row in rows {
                    let p = row?;
                    if topic::matches(&pattern, &p.topic) {
                        out.push(p);
                        if out.len() >= limit {
                            break;
                        }
                    }
                }
                Ok(out)
            })
            .await
    }

    /// The newest publication's stream position (0: none yet).
    pub async fn last_publication_position(&self) -> Result<i64, ReadError> {
        self.replica().read(|c| c.row("SELECT COALESCE(MAX(position), 0) FROM publications", [], |r| r.get(0))).await
    }

    pub async fn publication(&self, id: &str) -> Result<Option<PublicationRecord>, ReadError> {
        let id = id.to_owned();
        self.replica()
            .read(move |c| {
                c.row(
                    "SELECT position, id, topic, publisher, content, recipients, created_at FROM publications WHERE id = ?1",
                    [id],
                    publication_row,
                )
                .optional()
            })
            .await
    }
}

fn publication_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<PublicationRecord> {
    Ok(PublicationRecord {
        position: r.get(0)?,
        id: r.get(1)?,
        topic: r.get(2)?,
        publisher: r.get(3)?,
        content: r.get(4)?,
        recipients: r.get(5)?,
        created_at_ms: r.get(6)?,
    })
}
