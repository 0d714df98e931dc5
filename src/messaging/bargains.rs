//! Auctions and negotiations as their starters see them: the checks at
//! the edge, the replicated start, the wait for the end. The leader drives
//! them (`control/auctions.rs`, `control/negotiations.rs`); the rules a
//! bid or a move is read by are here, pure, so every leader judges the
//! same answers the same way.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use utoipa::ToSchema;

use super::service::{check_client_id, MessageError, MessageService};
use crate::state::{
    AuctionRecord, AuctionRules, AuctionState, MoveKind, NegotiationRecord, NegotiationState, Pricing, StartAuction,
    StartNegotiation,
};
use crate::time::now_ms;

/// Longest a protocol may run: its deadline, rounds times round length.
const MAX_PROTOCOL_MS: u64 = 24 * 3600 * 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuctionKind {
    English,
    SealedBid,
}

/// An auction as a client (or an agent) asks for one.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AuctionRequest {
    pub kind: AuctionKind,
    /// What is sold: shown to every bidder.
    pub item: String,
    /// Every agent declaring it bids (or give `bidders`).
    pub capability: Option<String>,
    pub bidders: Option<Vec<String>>,
    /// The lowest price it sells at (hidden from bidders); default 0.
    #[serde(default)]
    pub reserve: f64,
    /// English: the least a raise adds (default 1).
    pub increment: Option<f64>,
    /// English: how long a round waits for bids (default 10000).
    pub round_ms: Option<u64>,
    /// English: at most this many rounds (default 10).
    pub max_rounds: Option<u32>,
    /// Sealed bid: `first_price` (default) or `second_price`.
    pub pricing: Option<Pricing>,
    /// Sealed bid: how long bids are taken (default 30000).
    pub deadline_ms: Option<u64>,
    /// An id of your choosing: starting again with it is a no-op.
    pub id: Option<String>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NegotiationRequest {
    /// What is negotiated: shown to every party.
    pub subject: String,
    /// Two or more agents, in turn order (the first opens).
    pub parties: Vec<String>,
    /// Moves at most (default 10).
    pub max_rounds: Option<u32>,
    /// How long it may take in all (default 60000).
    pub deadline_ms: Option<u64>,
    pub id: Option<String>,
}

/// What a bidder's answer says: `bid: N` (a positive number), `pass`, or
/// why it is neither. The first line holding either decides.
pub fn parse_bid(answer: &str) -> Result<Option<f64>, String> {
    for line in answer.lines() {
        let lower = line.trim().to_ascii_lowercase();
        if let Some(i) = lower.find("bid:") {
            let number: String = lower[i + 4..]
                .trim_start()
                .trim_start_matches('$')
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            return match number.trim_end_matches('.').parse::<f64>() {
                Ok(n) if n > 0.0 && n.is_finite() => Ok(Some(n)),
                Ok(_) => Err(format!("`{}`: a bid must be a positive number", line.trim())),
                Err(_) => Err(format!("`{}`: no number after `bid:`", line.trim())),
            };
        }
        if lower == "pass" || lower.starts_with("pass ") || lower.starts_with("pass.") {
            return Ok(None);
        }
    }
    Err("the answer holds neither `bid: N` nor `pass`".into())
}

/// What a party's answer says: `offer: TERMS`, `accept` or `reject: WHY`;
/// the first line holding one decides.
pub fn parse_move(answer: &str) -> MoveKind {
    for line in answer.lines() {
        let trimmed = line.trim();
        let lower = trimmed.to_ascii_lowercase();
        if let Some(i) = lower.find("offer:") {
            let terms = trimmed[i + 6..].trim();
            if terms.is_empty() {
                return MoveKind::NoMove { reason: "`offer:` without terms".into() };
            }
            return MoveKind::Offer { terms: terms.to_owned() };
        }
        if lower.starts_with("reject") {
            let reason = trimmed.split_once(':').map(|(_, r)| r.trim()).filter(|r| !r.is_empty());
            return MoveKind::Reject { reason: reason.unwrap_or("no reason given").to_owned() };
        }
        if lower.starts_with("accept") {
            return MoveKind::Accept;
        }
    }
    MoveKind::NoMove { reason: "the answer holds none of `offer: TERMS`, `accept`, `reject: REASON`".into() }
}

fn invalid(why: impl Into<String>) -> MessageError {
    MessageError::Invalid(why.into())
}

fn bounded(field: &str, ms: u64) -> Result<u64, MessageError> {
    if (100..=MAX_PROTOCOL_MS).contains(&ms) {
        Ok(ms)
    } else {
        Err(invalid(format!("`{field}` = {ms}: must be between 100 ms and 24 h")))
    }
}

impl AuctionRequest {
    fn rules(&self) -> Result<AuctionRules, MessageError> {
        if !(self.reserve.is_finite() && self.reserve >= 0.0) {
            return Err(invalid("`reserve` must be a number ≥ 0"));
        }
        match self.kind {
            AuctionKind::English => {
                let increment = self.increment.unwrap_or(1.0);
                if !(increment.is_finite() && increment > 0.0) {
                    return Err(invalid("`increment` must be a number > 0"));
                }
                let max_rounds = self.max_rounds.unwrap_or(10);
                if !(1..=100).contains(&max_rounds) {
                    return Err(invalid("`max_rounds` must be 1 to 100"));
                }
                let round_ms = bounded("round_ms", self.round_ms.unwrap_or(10_000))?;
                if round_ms.saturating_mul(u64::from(max_rounds)) > MAX_PROTOCOL_MS {
                    return Err(invalid("`round_ms` × `max_rounds` must be at most 24 h"));
                }
                Ok(AuctionRules::English { reserve: self.reserve, increment, round_ms, max_rounds })
            }
            AuctionKind::SealedBid => Ok(AuctionRules::SealedBid {
                reserve: self.reserve,
                pricing: self.pricing.unwrap_or(Pricing::FirstPrice),
                deadline_ms: bounded("deadline_ms", self.deadline_ms.unwrap_or(30_000))?,
            }),
        }
    }
}

impl MessageService {
    /// Agents named, each deployed, as their names are written; in order.
    async fn parties(&self, names: &[String], field: &str) -> Result<Vec<String>, MessageError> {
        let mut out: Vec<String> = Vec::new();
        for name in names {
            let parsed = crate::config::AgentName::parse(name).map_err(|_| MessageError::UnknownAgent(name.clone()))?;
            let agent = self.queries().agent(&parsed).await?.ok_or_else(|| MessageError::UnknownAgent(name.clone()))?;
            if out.iter().any(|p| p.eq_ignore_ascii_case(&agent.name)) {
                return Err(invalid(format!("`{field}` names `{name}` twice")));
            }
            out.push(agent.name);
        }
        Ok(out)
    }

    /// Opens an auction; the leader runs it from here.
    pub async fn start_auction(&self, req: AuctionRequest, initiator: &str) -> Result<AuctionRecord, MessageError> {
        let rules = req.rules()?;
        if req.item.trim().is_empty() {
            return Err(invalid("`item` must not be empty"));
        }
        let bidders = match (&req.capability, &req.bidders) {
            (Some(cap), None) => {
                let found = self.queries().agents_with_capability(cap).await?;
                if found.is_empty() {
                    return Err(MessageError::NoAgentForCapability {
                        capability: cap.clone(),
                        available: self.queries().capabilities().await?,
                    });
                }
                found
            }
            (None, Some(names)) if !names.is_empty() => self.parties(names, "bidders").await?,
            _ => return Err(invalid("give exactly one of `capability` or `bidders` (a non-empty list)")),
        };
        if let Some(id) = &req.id {
            check_client_id("id", id)?;
        }
        let id = req.id.clone().unwrap_or_else(|| format!("auction-{}", uuid::Uuid::now_v7()));
        let cmd = StartAuction {
            id: id.clone(),
            item: req.item,
            rules,
            bidders,
            initiator: initiator.to_owned(),
            at_ms: now_ms(),
        };
        self.ledger().store.propose(cmd).await.map_err(|e| MessageError::Cluster(Arc::new(e)))?;
        self.metrics().protocol_event("auction", "started");
        self.queries().auction(&id).await?.ok_or(MessageError::NotFound(id))
    }

    /// The auction, once it has ended or `wait` is up.
    pub async fn auction(&self, id: &str, wait: Duration) -> Result<AuctionRecord, MessageError> {
        let queries = self.queries().clone();
        let ended = |a: &AuctionRecord| a.state != AuctionState::Open;
        self.wait_for(id, wait, || queries.auction(id), ended).await
    }

    /// Opens a negotiation; the leader runs it from here.
    pub async fn start_negotiation(
        &self,
        req: NegotiationRequest,
        initiator: &str,
    ) -> Result<NegotiationRecord, MessageError> {
        if req.subject.trim().is_empty() {
            return Err(invalid("`subject` must not be empty"));
        }
        if req.parties.len() < 2 {
            return Err(invalid("`parties` must name at least two agents"));
        }
        let parties = self.parties(&req.parties, "parties").await?;
        let max_rounds = req.max_rounds.unwrap_or(10);
        if !(1..=100).contains(&max_rounds) {
            return Err(invalid("`max_rounds` must be 1 to 100"));
        }
        let deadline = bounded("deadline_ms", req.deadline_ms.unwrap_or(60_000))?;
        if let Some(id) = &req.id {
            check_client_id("id", id)?;
        }
        let id = req.id.clone().unwrap_or_else(|| format!("negotiation-{}", uuid::Uuid::now_v7()));
        let at_ms = now_ms();
        let cmd = StartNegotiation {
            id: id.clone(),
            subject: req.subject,
            parties,
            initiator: initiator.to_owned(),
            max_rounds,
            deadline_at_ms: at_ms + deadline as i64,
            at_ms,
        };
        self.ledger().store.propose(cmd).await.map_err(|e| MessageError::Cluster(Arc::new(e)))?;
        self.metrics().protocol_event("negotiation", "started");
        self.queries().negotiation(&id).await?.ok_or(MessageError::NotFound(id))
    }

    pub async fn negotiation(&self, id: &str, wait: Duration) -> Result<NegotiationRecord, MessageError> {
        let queries = self.queries().clone();
        let ended = |n: &NegotiationRecord| n.state != NegotiationState::Open;
        self.wait_for(id, wait, || queries.negotiation(id), ended).await
    }

    /// Reads a record until `ended` says so or `wait` is up, re-reading
    /// when its conversation changes (and now and then, for a missed event).
    async fn wait_for<T, F, Fut>(
        &self,
        id: &str,
        wait: Duration,
        read: F,
        ended: impl Fn(&T) -> bool,
    ) -> Result<T, MessageError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<Option<T>, caxton_cluster::ReadError>>,
    {
        let mut events = self.ledger().subscribe();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let record = read().await?.ok_or_else(|| MessageError::NotFound(id.to_owned()))?;
            if ended(&record) || tokio::time::Instant::now() >= deadline {
                return Ok(record);
            }
            let tick = tokio::time::sleep(Duration::from_millis(250));
            tokio::select! {
                _ = events.recv() => {}
                _ = tick => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bids_are_read_by_the_documented_format() {
        assert_eq!(parse_bid("I will go higher.\nbid: 42"), Ok(Some(42.0)));
        assert_eq!(parse_bid("BID: $12.5 please"), Ok(Some(12.5)));
        assert_eq!(parse_bid("pass"), Ok(None));
        assert!(parse_bid("bid: -3").unwrap_err().contains("no number"));
        assert!(parse_bid("bid: 0").unwrap_err().contains("positive"));
        assert!(parse_bid("maybe later").unwrap_err().contains("neither"));
    }

    #[test]
    fn moves_are_read_by_the_documented_format() {
        assert_eq!(
            parse_move("Hmm.\noffer: 90 EUR, delivery Monday"),
            MoveKind::Offer { terms: "90 EUR, delivery Monday".into() }
        );
        assert_eq!(parse_move("Accept."), MoveKind::Accept);
        assert_eq!(parse_move("reject: too expensive"), MoveKind::Reject { reason: "too expensive".into() });
        assert!(matches!(parse_move("let me think"), MoveKind::NoMove { .. }));
    }
}
