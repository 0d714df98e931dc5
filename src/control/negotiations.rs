//! The negotiation driver: on the leader only, it asks the party whose
//! move is awaited (one request per round, its id derived from the round,
//! so a new leader asking again is a no-op) and commits the move its
//! answer makes. The state machine in `state/negotiations.rs` takes only
//! the awaited move, so a move is taken once whoever proposes it.

use std::sync::Arc;
use std::time::Duration;

use crate::messaging::{parse_move, MessageKind, MessageService, MessageStatus, SendRequest, Target};
use crate::state::{Ledger, Move, MoveKind, NegotiationRecord, StepNegotiation};
use crate::time::now_ms;

const TICK: Duration = Duration::from_millis(250);
const SENDER: &str = "negotiation";

pub struct NegotiationDriver {
    ledger: Ledger,
    messages: Arc<MessageService>,
    /// Fires on its protocols' commits: a round is judged (or a move
    /// taken) as soon as its answers are in, not at the next tick.
    wake: Arc<tokio::sync::Notify>,
}

fn ask_id(n: &NegotiationRecord) -> String {
    format!("{}.r{}", n.id, n.round)
}

/// What the awaited party is asked.
fn ask(n: &NegotiationRecord) -> String {
    let others: Vec<&str> = n.parties.iter().map(String::as_str).filter(|p| *p != n.to_move()).collect();
    let standing = match &n.offer {
        Some((by, terms)) => format!("Standing offer by {by}: {terms}"),
        None => "No offer yet: you open.".to_owned(),
    };
    let moves: Vec<String> = n
        .moves
        .iter()
        .map(|m| match &m.kind {
            MoveKind::Offer { terms } => format!("- {} offered: {terms}", m.party),
            MoveKind::Accept => format!("- {} accepted", m.party),
            MoveKind::Reject { reason } => format!("- {} rejected: {reason}", m.party),
            MoveKind::NoMove { reason } => format!("- {} made no move: {reason}", m.party),
        })
        .collect();
    let so_far = if moves.is_empty() { String::new() } else { format!("\nSo far:\n{}", moves.join("\n")) };
    format!(
        "NEGOTIATION {} with {} (move {} of at most {})\nSubject: {}\n{standing}{so_far}\nReply `offer: TERMS`, `accept` (the standing offer) or `reject: REASON`.",
        n.id,
        others.join(", "),
        n.round + 1,
        n.max_rounds,
        n.subject
    )
}

impl super::LeaderLoop for NegotiationDriver {
    const NAME: &'static str = "negotiations";

    fn period(&self) -> Duration {
        TICK
    }

    fn woken_by(&self) -> Option<Arc<tokio::sync::Notify>> {
        Some(self.wake.clone())
    }

    async fn round(&self) -> anyhow::Result<()> {
        for n in self.ledger.queries.open_negotiations().await? {
            if let Err(e) = self.drive(&n).await {
                tracing::warn!(negotiation = %n.id, error = %e, "negotiation move not taken yet; retrying");
            }
        }
        Ok(())
    }
}

impl NegotiationDriver {
    pub fn new(ledger: Ledger, messages: Arc<MessageService>, shutdown: &crate::shutdown::Shutdown) -> Self {
        let wake = super::wake_on(&ledger, shutdown, super::protocol_moved);
        Self { ledger, messages, wake }
    }

    async fn drive(&self, n: &NegotiationRecord) -> anyhow::Result<()> {
        let id = ask_id(n);
        let kind = match self.ledger.queries.message(&id).await? {
            _ if now_ms() >= n.deadline_at_ms => Some(MoveKind::NoMove { reason: "the deadline passed".into() }),
            None => {
                let mut req = SendRequest::request(Target::Agent(n.to_move().to_owned()), ask(n));
                req.id = Some(id.clone());
                req.sender = SENDER.into();
                req.conversation_id = Some(n.id.clone());
                match self.messages.send(req, None).await {
                    Ok(_) => None,
                    // The party was removed: it will never move.
                    Err(e @ crate::messaging::MessageError::UnknownAgent(_)) => {
                        Some(MoveKind::NoMove { reason: e.to_string() })
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Some(m)
                if matches!(
                    m.status,
                    MessageStatus::Answered | MessageStatus::Failed | MessageStatus::DeadLettered
                ) =>
            {
                match self.messages.reply_of(&id).await? {
                    Some(r) if r.kind == MessageKind::Error => {
                        Some(MoveKind::NoMove { reason: format!("its turn failed: {}", r.content) })
                    }
                    Some(r) => Some(parse_move(&r.content)),
                    None => None,
                }
            }
            Some(_) => None,
        };
        let Some(kind) = kind else { return Ok(()) };
        let mv = Move { round: n.round, party: n.to_move().to_owned(), message_id: Some(id), kind };
        let cmd = StepNegotiation { id: n.id.clone(), mv, at_ms: now_ms() };
        if self.ledger.store.propose(cmd).await? {
            self.messages.protocol_event("negotiation", "move");
        }
        Ok(())
    }
}
