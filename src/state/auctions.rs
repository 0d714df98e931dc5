//! Auctions: the replicated record of each one (rules, bidders, every bid,
//! the round it is in, its one result). The leader's auction controller
//! asks for bids and judges rounds; each judgement is an
//! [`AdvanceAuction`] naming the round it judged, so a round is judged
//! once however often leaders change, and an auction ends exactly once.

use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::envelope::{ApplyCtx, Proposal, Response};
use super::events::StateEvent;
use super::messages::{ConversationState, Message, Protocol, DELIVER_NOTIFICATIONS};
use super::queries::Queries;
use caxton_cluster::CachedSql;
use caxton_cluster::ReadError;

/// How the price is set and when bidding ends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AuctionRules {
    /// Ascending open bids in rounds: each round every bidder but the
    /// highest is shown the highest bid and may raise it by at least
    /// `increment`; a round without a valid raise (or the last round) ends
    /// it. Sold to the highest bid if it reaches `reserve`.
    English { reserve: f64, increment: f64, round_ms: u64, max_rounds: u32 },
    /// One round of sealed bids until `deadline_ms`; the highest valid bid
    /// at or above `reserve` wins (ties: the bidder first in name order),
    /// paying its own bid (first price) or the second-highest bid, at
    /// least `reserve` (second price).
    SealedBid { reserve: f64, pricing: Pricing, deadline_ms: u64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Pricing {
    FirstPrice,
    SecondPrice,
}

impl AuctionRules {
    /// How long a round may take.
    pub fn round_ms(&self) -> u64 {
        match self {
            Self::English { round_ms, .. } => *round_ms,
            Self::SealedBid { deadline_ms, .. } => *deadline_ms,
        }
    }

    pub fn reserve(&self) -> f64 {
        match self {
            Self::English { reserve, .. } | Self::SealedBid { reserve, .. } => *reserve,
        }
    }

    /// The latest an auction under these rules can end, from its start.
    pub fn longest_ms(&self) -> u64 {
        match self {
            Self::English { round_ms, max_rounds, .. } => round_ms.saturating_mul(u64::from(*max_rounds)),
            Self::SealedBid { deadline_ms, .. } => *deadline_ms,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuctionState {
    Open,
    Sold,
    /// No valid bid, or none reached the reserve.
    Unsold,
}

/// One answer to a call for bids, as judged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Bid {
    pub round: u32,
    pub bidder: String,
    /// The bidder's answer (its text is the message's reply).
    pub message_id: String,
    pub amount: Option<f64>,
    /// A pass (`pass`), which is valid but bids nothing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub passed: bool,
    /// Why the bid was rejected; absent for a valid bid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuctionResult {
    pub winner: Option<String>,
    pub price: Option<f64>,
    /// Why it ended so (`sold to X at P`, `no valid bid`, `reserve not met`).
    pub reason: String,
}

/// An auction as the replica keeps it; its conversation has the same id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuctionRecord {
    pub id: String,
    pub item: String,
    pub rules: AuctionRules,
    pub bidders: Vec<String>,
    pub initiator: String,
    pub state: AuctionState,
    /// The round being bid (0-based).
    pub round: u32,
    pub round_started_at_ms: i64,
    /// The highest valid bid so far.
    pub high: Option<Bid>,
    /// Every answer, valid or not, in the order judged.
    pub bids: Vec<Bid>,
    pub result: Option<AuctionResult>,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
}

/// Opens an auction (bidders resolved by the proposer).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StartAuction {
    pub id: String,
    pub item: String,
    pub rules: AuctionRules,
    pub bidders: Vec<String>,
    pub initiator: String,
    pub at_ms: i64,
}

impl Proposal for StartAuction {
    /// False: an auction with this id exists.
    type Output = bool;
    const NAME: &'static str = "StartAuction";
    const FEATURE: Option<&'static str> = Some(DELIVER_NOTIFICATIONS);
    fn output(r: Response) -> Result<bool, Response> {
        super::envelope::done_or_refused(r)
    }
}

impl StartAuction {
    pub(crate) fn apply(self, ctx: &mut ApplyCtx<'_, '_>) -> rusqlite::Result<Response> {
        let exists: bool =
            ctx.tx.row("SELECT 1 FROM auctions WHERE id = ?1", [&self.id], |_| Ok(true)).optional()?.unwrap_or(false);
        if exists {
            return Ok(Response::Deleted(false));
        }
        let record = AuctionRecord {
            expires_at_ms: self.at_ms + self.rules.longest_ms() as i64,
            id: self.id,
            item: self.item,
            rules: self.rules,
            bidders: self.bidders,
            initiator: self.initiator,
            state: AuctionState::Open,
            round: 0,
            round_started_at_ms: self.at_ms,
            high: None,
            bids: vec![],
            result: None,
            created_at_ms: self.at_ms,
        };
        super::sessions::open(
            ctx,
            &record.id,
            Protocol::Auction,
            &record.initiator,
            &record.item,
            record.expires_at_ms,
            record.created_at_ms,
        )?;
        write(ctx, &record)?;
        Ok(Response::Done)
    }
}

/// The judgement of one round: its bids, and either the next round or the
/// result. `notices` (rejected bids, the result to each bidder) are
/// committed with it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdvanceAuction {
    pub id: String,
    /// The round judged: a judgement of any other round changes nothing.
    pub round: u32,
    pub bids: Vec<Bid>,
    pub result: Option<AuctionResult>,
    pub notices: Vec<Message>,
    pub at_ms: i64,
}

impl Proposal for AdvanceAuction {
    /// False: the auction is over, or that round was judged already.
    type Output = bool;
    const NAME: &'static str = "AdvanceAuction";
    const FEATURE: Option<&'static str> = Some(DELIVER_NOTIFICATIONS);
    fn output(r: Response) -> Result<bool, Response> {
        super::envelope::done_or_refused(r)
    }
}

impl AdvanceAuction {
    pub(crate) fn apply(self, ctx: &mut ApplyCtx<'_, '_>) -> rusqlite::Result<Response> {
        let Some(mut record) = read(ctx.tx, &self.id)? else { return Ok(Response::Deleted(false)) };
        if record.state != AuctionState::Open || record.round != self.round {
            return Ok(Response::Deleted(false));
        }
        for bid in self.bids {
            let raises = bid.rejected.is_none()
                && bid.amount.is_some_and(|a| record.high.as_ref().is_none_or(|h| a > h.amount.unwrap_or(0.0)));
            if raises {
                record.high = Some(bid.clone());
            }
            record.bids.push(bid);
        }
        record.round += 1;
        record.round_started_at_ms = self.at_ms;
        if let Some(result) = self.result {
            let (state, conversation) = match result.winner {
                Some(_) => (AuctionState::Sold, ConversationState::Completed),
                None => (AuctionState::Unsold, ConversationState::Failed),
            };
            record.state = state;
            super::sessions::close(ctx, &record.id, conversation, &result.reason, self.at_ms)?;
            record.result = Some(result);
        }
        write(ctx, &record)?;
        super::messages::accept(ctx.tx, ctx.index, self.notices, ctx.stage)?;
        ctx.stage.push(StateEvent::ConversationChanged { id: record.id.clone() });
        ctx.stage.push(StateEvent::ProtocolChanged { id: record.id.clone() });
        Ok(Response::Done)
    }
}

fn write(ctx: &mut ApplyCtx<'_, '_>, record: &AuctionRecord) -> rusqlite::Result<()> {
    let state = serde_json::to_value(record.state).expect("state serializes");
    ctx.tx.exec(
        "INSERT INTO auctions(id, state, body, created_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(id) DO UPDATE SET state = excluded.state, body = excluded.body",
        params![
            record.id,
            state.as_str(),
            serde_json::to_string(record).expect("auction serializes"),
            record.created_at_ms
        ],
    )?;
    Ok(())
}

fn read(c: &rusqlite::Connection, id: &str) -> rusqlite::Result<Option<AuctionRecord>> {
    let body: Option<String> = c.row("SELECT body FROM auctions WHERE id = ?1", [id], |r| r.get(0)).optional()?;
    body.map(|b| {
        serde_json::from_str(&b)
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e)))
    })
    .transpose()
}

impl Queries {
    pub async fn auction(&self, id: &str) -> Result<Option<AuctionRecord>, ReadError> {
        let id = id.to_owned();
        self.replica().read(move |c| read(c, &id)).await
    }

    /// Auctions, newest first; only open ones with `open`.
    pub async fn auctions(&self, open: bool, limit: usize) -> Result<Vec<AuctionRecord>, ReadError> {
        self.replica()
            .read(move |c| {
                let mut s = c.prepare_cached(
                    "SELECT body FROM auctions WHERE (?1 = 0 OR state = 'open') ORDER BY created_at DESC, id LIMIT ?2",
                )?;
                let bodies = s.query_map(params![open as i64, limit as i64], |r| r.get::<_, String>(0))?;
                let mut out = Vec::new();
                for body in bodies {
                    let body = body?;
                    out.push(serde_json::from_str(&body).map_err(|e| {
                        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
                    })?);
                }
                Ok(out)
            })
            .await
    }
}
