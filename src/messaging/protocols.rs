//! Interaction protocols beyond request-reply.
//!
//! Contract-net: call for proposals to every agent with a capability,
//! collect proposals until a deadline, award the best one, return its result.
//! The conversation moves Initiated → InProgress → Completed, or Failed when
//! the winner fails, or Expired when no proposal arrived in time.

use std::time::Duration;

use serde::Serialize;
use utoipa::ToSchema;

use super::service::{MessageError, MessageService, SendOutcome, SendRequest, Target};
use crate::state::{ConversationState, Message, MessageKind, Protocol};

pub const PROTOCOL: Protocol = Protocol::ContractNet;

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Proposal {
    pub agent: String,
    pub message_id: String,
    pub content: String,
    /// Parsed from the proposal (`cost: 3`); lowest wins, none ranks last.
    pub cost: Option<f64>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ContractNetOutcome {
    pub conversation_id: String,
    pub state: ConversationState,
    pub proposals: Vec<Proposal>,
    pub awarded_to: Option<String>,
    pub result: Option<Message>,
}

/// The number after `cost`, or failing that the first number in the text.
pub fn parse_cost(text: &str) -> Option<f64> {
    let lower = text.to_ascii_lowercase();
    let from = lower.find("cost").map(|i| i + 4).unwrap_or(0);
    let number: String = lower[from..]
        .chars()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    number.trim_end_matches('.').parse().ok()
}

fn rank(p: &Proposal) -> (u8, f64) {
    match p.cost {
        Some(c) => (0, c),
        None => (1, 0.0),
    }
}

impl MessageService {
    pub async fn contract_net(
        &self,
        capability: &str,
        task: &str,
        deadline: Duration,
        result_wait: Duration,
    ) -> Result<ContractNetOutcome, MessageError> {
        let conversation_id = uuid::Uuid::now_v7().to_string();
        self.set_conversation(
            &conversation_id,
            PROTOCOL,
            ConversationState::Initiated,
            Some(format!("capability={capability}")),
        )
        .await?;
        let candidates = self.queries().agents_with_capability(capability).await?;
        if candidates.is_empty() {
            self.set_conversation(
                &conversation_id,
                PROTOCOL,
                ConversationState::Failed,
                Some("no agent has the capability".into()),
            )
            .await?;
            return Err(MessageError::NoAgentForCapability {
                capability: capability.into(),
                available: self.queries().capabilities().await?,
            });
        }
        self.set_conversation(&conversation_id, PROTOCOL, ConversationState::InProgress, None).await?;

        let ask = |agent: &str, content: String, kind: MessageKind| SendRequest {
            kind,
            sender: "contract-net".into(),
            conversation_id: Some(conversation_id.clone()),
            ..SendRequest::request(Target::Agent(agent.to_owned()), content)
        };
        let cfp = format!(
            "CALL FOR PROPOSALS\nTask: {task}\nReply with a short proposal and your estimated cost as a number, like `cost: 3`."
        );
        let mut calls = Vec::new();
        for agent in &candidates {
            if let SendOutcome::Accepted(m) = self.send(ask(agent, cfp.clone(), MessageKind::Request), None).await? {
                calls.push((agent.clone(), m.id));
            }
        }
        let waits =
            calls.iter().map(|(agent, id)| async move { (agent.clone(), self.await_reply(id, deadline).await) });
        let mut proposals: Vec<Proposal> = futures::future::join_all(waits)
            .await
            .into_iter()
            .filter_map(|(agent, r)| match r {
                Ok(reply) if reply.kind == MessageKind::Response => Some(Proposal {
                    cost: parse_cost(&reply.content),
                    agent,
                    message_id: reply.id,
                    content: reply.content,
                }),
                _ => None,
            })
            .collect();
        if proposals.is_empty() {
            self.set_conversation(
                &conversation_id,
                PROTOCOL,
                ConversationState::Expired,
                Some("no proposal before the deadline".into()),
            )
            .await?;
            return Ok(ContractNetOutcome {
                conversation_id,
                state: ConversationState::Expired,
                proposals,
                awarded_to: None,
                result: None,
            });
        }
        proposals.sort_by(|a, b| rank(a).partial_cmp(&rank(b)).unwrap_or(std::cmp::Ordering::Equal));
        let winner = proposals[0].agent.clone();
        for loser in proposals.iter().skip(1) {
            let note = format!("REJECT: the task went to another agent.\nTask: {task}");
            let _ = self.send(ask(&loser.agent, note, MessageKind::Notification), None).await;
        }
        let award =
            format!("AWARD: your proposal was accepted. Perform the task now and reply with the result.\nTask: {task}");
        let result = match self.send(ask(&winner, award, MessageKind::Request), Some(result_wait)).await {
            Ok(SendOutcome::Answered { reply, .. }) => Some(reply),
            Ok(SendOutcome::Accepted(_)) | Err(MessageError::Timeout { .. }) => None,
            Err(e) => return Err(e),
        };
        let state = match &result {
            Some(r) if r.kind == MessageKind::Response => ConversationState::Completed,
            _ => ConversationState::Failed,
        };
        self.set_conversation(&conversation_id, PROTOCOL, state, Some(format!("awarded to {winner}"))).await?;
        Ok(ContractNetOutcome { conversation_id, state, proposals, awarded_to: Some(winner), result })
    }
}

#[cfg(test)]
mod tests {
    use super::parse_cost;

    #[test]
    fn costs() {
        assert_eq!(parse_cost("I can do it. cost: 3"), Some(3.0));
        assert_eq!(parse_cost("Cost 12.5 units"), Some(12.5));
        assert_eq!(parse_cost("takes 2 hours"), Some(2.0));
        assert_eq!(parse_cost("sure thing"), None);
    }
}
