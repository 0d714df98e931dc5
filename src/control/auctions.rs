//! The auction driver: on the leader only, for each open auction it asks
//! the round's bidders (requests with ids derived from the auction, round
//! and bidder, so a new leader asking again is a no-op), and once every
//! one answered or the round's time is up, judges the answers and commits
//! the judgement with the round it judged. A judgement of a round already
//! judged changes nothing: an auction ends once, with one result.

use std::sync::Arc;
use std::time::Duration;

use crate::messaging::{parse_bid, MessageKind, MessageService, MessageStatus, SendRequest, Target};
use crate::state::{notice, AdvanceAuction, AuctionRecord, AuctionResult, AuctionRules, Bid, Ledger, Message, Pricing};
use crate::time::now_ms;

const TICK: Duration = Duration::from_millis(250);
const SENDER: &str = "auction";

pub struct AuctionDriver {
    ledger: Ledger,
    messages: Arc<MessageService>,
    /// Fires on its protocols' commits: a round is judged (or a move
    /// taken) as soon as its answers are in, not at the next tick.
    wake: Arc<tokio::sync::Notify>,
}

/// A bidder's answer to this round's call, as read from the replica.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// The reply's text, and whether it is an error reply.
    Replied {
        text: String,
        failed: bool,
    },
    NotYet,
}

/// The id of the call for bids to bidder `k` in `round`.
pub fn ask_id(auction: &str, round: u32, k: usize) -> String {
    format!("{auction}.r{round}.{k}")
}

/// The bidders asked in the current round (by index): English skips the
/// highest bidder (it need not outbid itself); sealed asks everyone once.
pub fn asked(a: &AuctionRecord) -> Vec<usize> {
    let high = a.high.as_ref().map(|h| h.bidder.as_str());
    (0..a.bidders.len()).filter(|k| Some(a.bidders[*k].as_str()) != high).collect()
}

/// Judges the current round from its answers (in bidder order): the bids
/// as recorded, and the result when the auction ends with this round (it
/// does at the auction's expiry, `over`, whatever the rules would say).
/// Deterministic in its inputs.
pub fn judge(a: &AuctionRecord, answers: &[(usize, Answer)], over: bool) -> (Vec<Bid>, Option<AuctionResult>) {
    let minimum = match (&a.rules, &a.high) {
        (AuctionRules::English { increment, .. }, Some(h)) => h.amount.unwrap_or(0.0) + increment,
        _ => 0.0,
    };
    let mut bids = Vec::new();
    for (k, answer) in answers {
        let bidder = a.bidders[*k].clone();
        let message_id = ask_id(&a.id, a.round, *k);
        let mut bid = Bid { round: a.round, bidder, message_id, amount: None, passed: false, rejected: None };
        match answer {
            Answer::NotYet => bid.rejected = Some("no answer before the round's deadline".into()),
            Answer::Replied { failed: true, text } => bid.rejected = Some(format!("the bidder's turn failed: {text}")),
            Answer::Replied { text, .. } => match parse_bid(text) {
                Ok(None) => bid.passed = true,
                Ok(Some(n)) if n < minimum => {
                    bid.amount = Some(n);
                    bid.rejected =
                        Some(format!("{n} is below the minimum of {minimum} (highest bid plus the increment)"));
                }
                Ok(Some(n)) => bid.amount = Some(n),
                Err(why) => bid.rejected = Some(why),
            },
        }
        bids.push(bid);
    }
    let valid = |b: &&Bid| b.rejected.is_none() && b.amount.is_some();
    let mut ranked: Vec<&Bid> = bids.iter().filter(valid).collect();
    ranked.sort_by(|x, y| {
        y.amount.partial_cmp(&x.amount).unwrap_or(std::cmp::Ordering::Equal).then_with(|| x.bidder.cmp(&y.bidder))
    });
    // Bids are recorded best first, so the record's `high` takes the winner of a tie.
    let result = match &a.rules {
        AuctionRules::SealedBid { reserve, pricing, .. } => Some(sealed_result(&ranked, *reserve, *pricing)),
        AuctionRules::English { reserve, max_rounds, .. } => {
            let last = over || a.round + 1 >= *max_rounds;
            match ranked.first() {
                Some(_) if !last => None,
                Some(top) => Some(english_result(Some(top), *reserve)),
                None => Some(english_result(a.high.as_ref(), *reserve)),
            }
        }
    };
    let ranked: Vec<String> = ranked.iter().map(|b| b.message_id.clone()).collect();
    let order = |b: &Bid| ranked.iter().position(|id| *id == b.message_id).unwrap_or(usize::MAX);
    bids.sort_by_key(|b| (order(b), b.bidder.clone()));
    (bids, result)
}

fn english_result(high: Option<&Bid>, reserve: f64) -> AuctionResult {
    match high.and_then(|h| h.amount.map(|a| (h, a))) {
        Some((h, amount)) if amount >= reserve => AuctionResult {
            winner: Some(h.bidder.clone()),
            price: Some(amount),
            reason: format!("sold to {} at {amount}: no higher bid followed", h.bidder),
        },
        Some((_, amount)) => AuctionResult {
            winner: None,
            price: None,
            reason: format!("reserve not met: the highest bid was {amount}"),
        },
        None => AuctionResult { winner: None, price: None, reason: "no valid bid".into() },
    }
}

fn sealed_result(ranked: &[&Bid], reserve: f64, pricing: Pricing) -> AuctionResult {
    let Some(top) = ranked.first() else {
        return AuctionResult { winner: None, price: None, reason: "no valid bid".into() };
    };
    let amount = top.amount.unwrap_or(0.0);
    if amount < reserve {
        return AuctionResult {
            winner: None,
            price: None,
            reason: format!("reserve not met: the highest bid was {amount}"),
        };
    }
    let price = match pricing {
        Pricing::FirstPrice => amount,
        Pricing::SecondPrice => ranked.get(1).and_then(|b| b.amount).unwrap_or(reserve).max(reserve),
    };
    AuctionResult {
        winner: Some(top.bidder.clone()),
        price: Some(price),
        reason: format!("sold to {} at {price} ({} bid {amount})", top.bidder, top.bidder),
    }
}

/// What the bidders are told when their bid is rejected and when it ends.
fn notices(a: &AuctionRecord, bids: &[Bid], result: Option<&AuctionResult>, at_ms: i64) -> Vec<Message> {
    let mut out = Vec::new();
    for b in bids.iter().filter(|b| b.rejected.is_some() && !b.passed) {
        let why = b.rejected.as_deref().unwrap_or_default();
        let text = format!("BID REJECTED in auction {} (round {}): {why}\nItem: {}", a.id, a.round + 1, a.item);
        out.push(notice(format!("{}.rejected", b.message_id), SENDER, &b.bidder, &a.id, text, at_ms));
    }
    if let Some(r) = result {
        for (k, bidder) in a.bidders.iter().enumerate() {
            let text = match (&r.winner, r.price) {
                (Some(w), Some(p)) if w == bidder => format!("AUCTION WON: {} at {p}. Auction {}.", a.item, a.id),
                (Some(w), Some(p)) => format!("AUCTION LOST: {} went to {w} at {p}. Auction {}.", a.item, a.id),
                _ => format!("AUCTION CLOSED UNSOLD: {} ({}). Auction {}.", a.item, r.reason, a.id),
            };
            out.push(notice(format!("{}.result.{k}", a.id), SENDER, bidder, &a.id, text, at_ms));
        }
    }
    out
}

/// The call for bids of the current round.
fn call_for_bids(a: &AuctionRecord) -> String {
    match &a.rules {
        AuctionRules::English { increment, max_rounds, .. } => {
            let standing = match &a.high {
                Some(h) => format!("The highest bid is {} by {}.", h.amount.unwrap_or(0.0), h.bidder),
                None => "No bid yet.".to_owned(),
            };
            let least = a.high.as_ref().map(|h| h.amount.unwrap_or(0.0) + increment);
            let least = least.map(|l| format!(" of at least {l}")).unwrap_or_default();
            format!(
                "AUCTION {} (English, round {} of at most {max_rounds})\nItem: {}\n{standing}\nReply `bid: N` with a bid{least}, or `pass`.",
                a.id,
                a.round + 1,
                a.item
            )
        }
        AuctionRules::SealedBid { pricing, .. } => {
            let pricing = match pricing {
                Pricing::FirstPrice => "the winner pays its bid",
                Pricing::SecondPrice => "the winner pays the second-highest bid",
            };
            format!(
                "AUCTION {} (sealed bid: one bid each, unseen by the others; {pricing})\nItem: {}\nReply `bid: N` with your bid, or `pass`.",
                a.id, a.item
            )
        }
    }
}

impl super::LeaderLoop for AuctionDriver {
    const NAME: &'static str = "auctions";

    fn period(&self) -> Duration {
        TICK
    }

    fn woken_by(&self) -> Option<Arc<tokio::sync::Notify>> {
        Some(self.wake.clone())
    }

    async fn round(&self) -> anyhow::Result<()> {
        for a in self.ledger.queries.auctions(true, 1000).await? {
            if let Err(e) = self.drive(&a).await {
                tracing::warn!(auction = %a.id, error = %e, "auction round not judged yet; retrying");
            }
        }
        Ok(())
    }
}

impl AuctionDriver {
    pub fn new(ledger: Ledger, messages: Arc<MessageService>, shutdown: &crate::shutdown::Shutdown) -> Self {
        let wake = super::wake_on(&ledger, shutdown, super::protocol_moved);
        Self { ledger, messages, wake }
    }

    async fn drive(&self, a: &AuctionRecord) -> anyhow::Result<()> {
        let mut answers = Vec::new();
        for k in asked(a) {
            answers.push((k, self.answer(a, k).await?));
        }
        let all_in = answers.iter().all(|(_, ans)| *ans != Answer::NotYet);
        let now = now_ms();
        let timed_out = now >= a.round_started_at_ms + a.rules.round_ms() as i64;
        if !all_in && !timed_out && now < a.expires_at_ms {
            return Ok(());
        }
        let (bids, result) = judge(a, &answers, now >= a.expires_at_ms);
        let notices = notices(a, &bids, result.as_ref(), now);
        let ended = result.is_some();
        let cmd = AdvanceAuction { id: a.id.clone(), round: a.round, bids, result, notices, at_ms: now };
        if self.ledger.store.propose(cmd).await? {
            let event = if ended { "ended" } else { "round" };
            self.messages.protocol_event("auction", event);
            tracing::info!(auction = %a.id, round = a.round, ended, "auction round judged");
        }
        Ok(())
    }

    /// Bidder `k`'s answer to this round's call, sending the call first if
    /// it was not sent (by this leader or an earlier one).
    async fn answer(&self, a: &AuctionRecord, k: usize) -> anyhow::Result<Answer> {
        let id = ask_id(&a.id, a.round, k);
        match self.ledger.queries.message(&id).await? {
            None => {
                let mut req = SendRequest::request(Target::Agent(a.bidders[k].clone()), call_for_bids(a));
                req.id = Some(id);
                req.sender = SENDER.into();
                req.conversation_id = Some(a.id.clone());
                // A call that cannot be sent (the bidder was removed, the
                // auction's time is up) is a bid that never comes: the
                // round's deadline judges it so.
                if let Err(e) = self.messages.send(req, None).await {
                    tracing::warn!(auction = %a.id, bidder = %a.bidders[k], error = %e, "call for bids not sent");
                }
                Ok(Answer::NotYet)
            }
            Some(m)
                if matches!(
                    m.status,
                    MessageStatus::Answered | MessageStatus::Failed | MessageStatus::DeadLettered
                ) =>
            {
                let reply = self.messages.reply_of(&id).await?;
                Ok(match reply {
                    Some(r) => Answer::Replied { failed: r.kind == MessageKind::Error, text: r.content },
                    None => Answer::NotYet,
                })
            }
            Some(_) => Ok(Answer::NotYet),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::AuctionState;

    fn auction(rules: AuctionRules, bidders: &[&str]) -> AuctionRecord {
        AuctionRecord {
            id: "a".into(),
            item: "crate".into(),
            rules,
            bidders: bidders.iter().map(|b| b.to_string()).collect(),
            initiator: "user".into(),
            state: AuctionState::Open,
            round: 0,
            round_started_at_ms: 0,
            high: None,
            bids: vec![],
            result: None,
            created_at_ms: 0,
            expires_at_ms: 0,
        }
    }

    fn said(text: &str) -> Answer {
        Answer::Replied { text: text.into(), failed: false }
    }

    #[test]
    fn sealed_bids_pay_first_or_second_price_and_ties_go_by_name() {
        let rules = |pricing| AuctionRules::SealedBid { reserve: 5.0, pricing, deadline_ms: 1000 };
        let answers = [(0, said("bid: 10")), (1, said("bid: 30")), (2, said("bid: 30")), (3, said("no idea"))];
        let a = auction(rules(Pricing::FirstPrice), &["d", "c", "b", "a"]);
        let (bids, result) = judge(&a, &answers, false);
        let r = result.unwrap();
        assert_eq!((r.winner.as_deref(), r.price), (Some("b"), Some(30.0)), "equal bids: name order");
        assert_eq!(bids[0].bidder, "b", "the winner is recorded first");
        assert!(bids.iter().any(|b| b.bidder == "a" && b.rejected.as_deref().unwrap().contains("neither")));
        let a = auction(rules(Pricing::SecondPrice), &["d", "c", "b", "a"]);
        assert_eq!(judge(&a, &answers, false).1.unwrap().price, Some(30.0));
        let answers = [(0, said("bid: 10")), (1, said("bid: 6"))];
        let a = auction(rules(Pricing::SecondPrice), &["x", "y"]);
        assert_eq!(judge(&a, &answers, false).1.unwrap().price, Some(6.0));
        let answers = [(0, said("bid: 10"))];
        let a = auction(rules(Pricing::SecondPrice), &["x"]);
        assert_eq!(judge(&a, &answers, false).1.unwrap().price, Some(5.0), "alone: the reserve");
        let answers = [(0, said("bid: 4"))];
        assert!(judge(&a, &answers, false).1.unwrap().reason.contains("reserve not met"));
    }

    #[test]
    fn an_english_round_without_a_raise_ends_it() {
        let rules = AuctionRules::English { reserve: 20.0, increment: 5.0, round_ms: 1000, max_rounds: 5 };
        let mut a = auction(rules, &["x", "y"]);
        let (bids, result) = judge(&a, &[(0, said("bid: 10")), (1, said("bid: 12"))], false);
        assert!(result.is_none(), "raises: another round");
        a.high = Some(bids[0].clone());
        a.round = 1;
        assert_eq!(asked(&a), vec![0], "the highest bidder is not asked");
        let (bids, result) = judge(&a, &[(0, said("bid: 14"))], false);
        assert!(bids[0].rejected.as_deref().unwrap().contains("below the minimum of 17"));
        assert_eq!(result.unwrap().reason, "reserve not met: the highest bid was 12");
        let (_, result) = judge(&a, &[(0, said("bid: 25"))], false);
        assert!(result.is_none());
        a.high = Some(Bid { amount: Some(25.0), bidder: "x".into(), ..bids[0].clone() });
        a.round = 2;
        let (_, result) = judge(&a, &[(1, Answer::NotYet)], false);
        let r = result.unwrap();
        assert_eq!((r.winner.as_deref(), r.price), (Some("x"), Some(25.0)));
    }
}
