//! Publish/subscribe (the Subscribe protocol) and notifications to every
//! agent with a capability: the edge checks, then one replicated command.

use std::sync::Arc;

use super::service::{MessageError, MessageService, SendOutcome, SendRequest, Target};
use crate::config::topic::{check_pattern, check_topic};
use crate::config::AgentName;
use crate::state::{
    Message, MessageKind, Publication, PublicationRecord, Published, Subscribe, SubscriptionRecord, TopicSummary,
    Unsubscribe, DELIVER_NOTIFICATIONS,
};
use crate::time::now_ms;

/// A publication as a publisher gives it.
#[derive(Debug, Clone)]
pub struct PublishRequest {
    pub topic: String,
    pub content: String,
    /// An agent's name, or the API key (or `user`) publishing.
    pub publisher: String,
    /// A caller-chosen id makes a retried publication idempotent.
    pub id: Option<String>,
    pub hop: u32,
}

/// A committed publication.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct PublishOutcome {
    pub id: String,
    pub topic: String,
    /// Notifications it became (one per matching subscription).
    pub recipients: u64,
    /// A publication with this id was committed before: nothing new was sent.
    pub duplicate: bool,
}

impl MessageService {
    /// Commits a publication and its notifications, one entry.
    pub async fn publish(&self, req: PublishRequest) -> Result<PublishOutcome, MessageError> {
        check_topic(&req.topic).map_err(|why| MessageError::Invalid(format!("topic `{}` {why}", req.topic)))?;
        if req.content.trim().is_empty() {
            return Err(MessageError::Invalid("content must not be empty".into()));
        }
        let limit = self.limits().max_message_bytes;
        if req.content.len() > limit {
            return Err(MessageError::TooLarge { size: req.content.len(), limit });
        }
        if let Some(id) = &req.id {
            super::service::check_client_id("id", id)?;
        }
        let (trace_id, span_id, trace_unsampled) = super::service::trace_ids(None);
        let id = req.id.clone().unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        let publication = Publication {
            id: id.clone(),
            topic: req.topic.clone(),
            content: req.content,
            publisher: req.publisher,
            trace_id,
            span_id,
            trace_unsampled,
            hop: req.hop,
            at_ms: now_ms(),
        };
        let outcome = self.publisher().submit(publication).await.map_err(MessageError::Cluster)?;
        let (recipients, duplicate) = match outcome {
            Published::Fanned(n) => {
                self.metrics().publication(n);
                (n, false)
            }
            Published::Duplicate => {
                let stored = self.queries().publication(&id).await?;
                (stored.map_or(0, |p| p.recipients), true)
            }
        };
        Ok(PublishOutcome { id, topic: req.topic, recipients, duplicate })
    }

    /// Subscribes `agent` to `pattern`; the subscription's record.
    pub async fn subscribe(&self, agent: &str, pattern: &str, by: &str) -> Result<SubscriptionRecord, MessageError> {
        check_pattern(pattern).map_err(|why| MessageError::Invalid(format!("pattern `{pattern}` {why}")))?;
        let name = AgentName::parse(agent).map_err(|_| MessageError::UnknownAgent(agent.to_owned()))?;
        let id = uuid::Uuid::now_v7().to_string();
        let cmd = Subscribe {
            id: id.clone(),
            agent: name.to_string(),
            pattern: pattern.to_owned(),
            by: by.to_owned(),
            at_ms: now_ms(),
        };
        let found = self.ledger().store.propose(cmd).await.map_err(|e| MessageError::Cluster(Arc::new(e)))?;
        if !found {
            return Err(MessageError::UnknownAgent(agent.to_owned()));
        }
        let all = self.queries().subscriptions_of(agent).await?;
        all.into_iter().find(|s| s.id == id).ok_or_else(|| MessageError::UnknownAgent(agent.to_owned()))
    }

    /// Cancels one of `agent`'s API subscriptions; false when it has none by that id.
    pub async fn unsubscribe(&self, agent: &str, id: &str) -> Result<bool, MessageError> {
        match self.queries().subscription_agent(id).await? {
            Some(owner) if owner == agent.to_ascii_lowercase() => {}
            _ => return Ok(false),
        }
        let cmd = Unsubscribe { id: id.to_owned(), at_ms: now_ms() };
        self.ledger().store.propose(cmd).await.map_err(|e| MessageError::Cluster(Arc::new(e)))
    }

    pub async fn subscriptions(&self, agent: &str) -> Result<Vec<SubscriptionRecord>, MessageError> {
        Ok(self.queries().subscriptions_of(agent).await?)
    }

    pub async fn topics(&self) -> Result<Vec<TopicSummary>, MessageError> {
        Ok(self.queries().topics().await?)
    }

    pub async fn publications_after(
        &self,
        pattern: &str,
        after: i64,
        limit: usize,
    ) -> Result<Vec<PublicationRecord>, MessageError> {
        Ok(self.queries().publications_after(pattern, after, limit).await?)
    }

    /// A notification to every agent declaring `capability`, in one
    /// conversation; a client id `X` becomes `X.0`, `X.1`, ... per agent.
    pub async fn notify_capability(&self, req: SendRequest, capability: &str) -> Result<Vec<Message>, MessageError> {
        let agents = self.queries().agents_with_capability(capability).await?;
        if agents.is_empty() {
            return Err(MessageError::NoAgentForCapability {
                capability: capability.to_owned(),
                available: self.queries().capabilities().await?,
            });
        }
        let conversation_id = req.conversation_id.clone().unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        let mut sent = Vec::with_capacity(agents.len());
        for (n, agent) in agents.into_iter().enumerate() {
            let one = SendRequest {
                target: Target::Agent(agent),
                kind: MessageKind::Notification,
                id: req.id.as_ref().map(|id| format!("{id}.{n}")),
                conversation_id: Some(conversation_id.clone()),
                ..req.clone()
            };
            let (SendOutcome::Accepted(m) | SendOutcome::Answered { request: m, .. }) = self.send(one, None).await?;
            sent.push(m);
        }
        Ok(sent)
    }

    /// Whether notifications committed now are delivered (every voter can).
    pub(super) async fn delivers_notifications(&self) -> bool {
        self.ledger().store.supports(DELIVER_NOTIFICATIONS).await
    }
}
