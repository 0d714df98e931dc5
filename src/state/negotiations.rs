//! Negotiations: alternating offers between two or more parties. The
//! parties move in turn (their order as given); a move is an offer, an
//! acceptance of the standing offer, or a rejection. The state machine
//! lives here, in `apply`: it takes the move of the round it is in and
//! nothing else, and ends the negotiation `agreed` when every other party
//! has accepted the standing offer, or `failed` (rejected, rounds
//! exhausted, deadline passed, or a move that is none of the three).

use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::envelope::{ApplyCtx, Proposal, Response};
use super::events::StateEvent;
use super::messages::{ConversationState, Protocol, DELIVER_NOTIFICATIONS};
use super::queries::Queries;
use caxton_cluster::CachedSql;
use caxton_cluster::ReadError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NegotiationState {
    Open,
    Agreed,
    Failed,
}

/// What a party did in its turn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MoveKind {
    Offer {
        terms: String,
    },
    Accept,
    Reject {
        reason: String,
    },
    /// The answer was none of the moves (its reason), or the party's
    /// turn failed, or the deadline passed before it moved.
    NoMove {
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Move {
    pub round: u32,
    pub party: String,
    /// The request that asked for the move (its reply is the party's answer).
    pub message_id: Option<String>,
    #[serde(flatten)]
    pub kind: MoveKind,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NegotiationRecord {
    pub id: String,
    pub subject: String,
    /// In turn order; the first opens.
    pub parties: Vec<String>,
    pub initiator: String,
    pub max_rounds: u32,
    pub deadline_at_ms: i64,
    pub state: NegotiationState,
    /// The move awaited (0-based); party `parties[round % len]` moves.
    pub round: u32,
    pub round_started_at_ms: i64,
    /// The standing offer and who made it.
    pub offer: Option<(String, String)>,
    /// Parties that accept the standing offer (its maker first).
    pub accepted_by: Vec<String>,
    pub moves: Vec<Move>,
    /// The agreed terms, once agreed.
    pub terms: Option<String>,
    /// Why it ended.
    pub reason: Option<String>,
    pub created_at_ms: i64,
}

impl NegotiationRecord {
    /// The party whose move is awaited.
    pub fn to_move(&self) -> &str {
        &self.parties[self.round as usize % self.parties.len()]
    }

    /// Applies `kind` as the awaited party's move (the transitions the
    /// protocol allows; anything else ends it failed).
    fn take(&mut self, mv: Move) {
        let party = mv.party.clone();
        match &mv.kind {
            MoveKind::Offer { terms } => {
                self.offer = Some((party.clone(), terms.clone()));
                self.accepted_by = vec![party];
                self.round += 1;
                if self.round >= self.max_rounds {
                    self.fail(format!("{} rounds exhausted without agreement", self.max_rounds));
                }
            }
            MoveKind::Accept => match &self.offer {
                None => self.fail(format!("{party} accepted before any offer was made")),
                Some((_, terms)) => {
                    let terms = terms.clone();
                    if !self.accepted_by.contains(&party) {
                        self.accepted_by.push(party);
                    }
                    if self.accepted_by.len() == self.parties.len() {
                        self.state = NegotiationState::Agreed;
                        self.reason = Some(format!("agreed: {terms}"));
                        self.terms = Some(terms);
                    } else {
                        self.round += 1;
                        if self.round >= self.max_rounds {
                            self.fail(format!("{} rounds exhausted without agreement", self.max_rounds));
                        }
                    }
                }
            },
            MoveKind::Reject { reason } => self.fail(format!("rejected by {party}: {reason}")),
            MoveKind::NoMove { reason } => self.fail(format!("{party} made no move: {reason}")),
        }
        self.moves.push(mv);
    }

    fn fail(&mut self, reason: String) {
        self.state = NegotiationState::Failed;
        self.reason = Some(reason);
    }
}

/// Opens a negotiation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StartNegotiation {
    pub id: String,
    pub subject: String,
    pub parties: Vec<String>,
    pub initiator: String,
    pub max_rounds: u32,
    pub deadline_at_ms: i64,
    pub at_ms: i64,
}

impl Proposal for StartNegotiation {
    /// False: one with this id exists.
    type Output = bool;
    const NAME: &'static str = "StartNegotiation";
    const FEATURE: Option<&'static str> = Some(DELIVER_NOTIFICATIONS);
    fn output(r: Response) -> Result<bool, Response> {
        super::envelope::done_or_refused(r)
    }
}

impl StartNegotiation {
    pub(crate) fn apply(self, ctx: &mut ApplyCtx<'_, '_>) -> rusqlite::Result<Response> {
        if read(ctx.tx, &self.id)?.is_some() {
            return Ok(Response::Deleted(false));
        }
        let record = NegotiationRecord {
            id: self.id,
            subject: self.subject,
            parties: self.parties,
            initiator: self.initiator,
            max_rounds: self.max_rounds,
            deadline_at_ms: self.deadline_at_ms,
            state: NegotiationState::Open,
            round: 0,
            round_started_at_ms: self.at_ms,
            offer: None,
            accepted_by: vec![],
            moves: vec![],
            terms: None,
            reason: None,
            created_at_ms: self.at_ms,
        };
        super::sessions::open(
            ctx,
            &record.id,
            Protocol::Negotiation,
            &record.initiator,
            &record.subject,
            record.deadline_at_ms,
            self.at_ms,
        )?;
        write(ctx, &record)?;
        Ok(Response::Done)
    }
}

/// The awaited party's move in `round`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepNegotiation {
    pub id: String,
    pub mv: Move,
    pub at_ms: i64,
}

impl Proposal for StepNegotiation {
    /// False: it is over, or that move was taken already.
    type Output = bool;
    const NAME: &'static str = "StepNegotiation";
    const FEATURE: Option<&'static str> = Some(DELIVER_NOTIFICATIONS);
    fn output(r: Response) -> Result<bool, Response> {
        super::envelope::done_or_refused(r)
    }
}

impl StepNegotiation {
    pub(crate) fn apply(self, ctx: &mut ApplyCtx<'_, '_>) -> rusqlite::Result<Response> {
        let Some(mut record) = read(ctx.tx, &self.id)? else { return Ok(Response::Deleted(false)) };
        let expected = record.state == NegotiationState::Open
            && record.round == self.mv.round
            && record.to_move().eq_ignore_ascii_case(&self.mv.party);
        if !expected {
            return Ok(Response::Deleted(false));
        }
        record.take(self.mv);
        record.round_started_at_ms = self.at_ms;
        if record.state != NegotiationState::Open {
            let (state, reason) = match record.state {
                NegotiationState::Agreed => (ConversationState::Completed, record.reason.clone().unwrap_or_default()),
                _ => (ConversationState::Failed, record.reason.clone().unwrap_or_default()),
            };
            super::sessions::close(ctx, &record.id, state, &reason, self.at_ms)?;
            let notices = record
                .parties
                .iter()
                .enumerate()
                .map(|(k, party)| {
                    let text = format!(
                        "NEGOTIATION OVER ({}): {reason}\nSubject: {}",
                        state_word(record.state),
                        record.subject
                    );
                    super::sessions::notice(
                        format!("{}.result.{k}", record.id),
                        "negotiation",
                        party,
                        &record.id,
                        text,
                        self.at_ms,
                    )
                })
                .collect();
            super::messages::accept(ctx.tx, ctx.index, notices, ctx.stage)?;
        }
        write(ctx, &record)?;
        ctx.stage.push(StateEvent::ConversationChanged { id: record.id.clone() });
        ctx.stage.push(StateEvent::ProtocolChanged { id: record.id.clone() });
        Ok(Response::Done)
    }
}

fn state_word(state: NegotiationState) -> &'static str {
    match state {
        NegotiationState::Open => "open",
        NegotiationState::Agreed => "agreed",
        NegotiationState::Failed => "failed",
    }
}

fn write(ctx: &mut ApplyCtx<'_, '_>, record: &NegotiationRecord) -> rusqlite::Result<()> {
    ctx.tx.exec(
        "INSERT INTO negotiations(id, state, body, created_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(id) DO UPDATE SET state = excluded.state, body = excluded.body",
        params![
            record.id,
            state_word(record.state),
            serde_json::to_string(record).expect("negotiation serializes"),
            record.created_at_ms
        ],
    )?;
    Ok(())
}

fn read(c: &rusqlite::Connection, id: &str) -> rusqlite::Result<Option<NegotiationRecord>> {
    let body: Option<String> = c.row("SELECT body FROM negotiations WHERE id = ?1", [id], |r| r.get(0)).optional()?;
    body.map(|b| {
        serde_json::from_str(&b)
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e)))
    })
    .transpose()
}

impl Queries {
    pub async fn negotiation(&self, id: &str) -> Result<Option<NegotiationRecord>, ReadError> {
        let id = id.to_owned();
        self.replica().read(move |c| read(c, &id)).await
    }

    /// Negotiations still open (for the leader's driver).
    pub async fn open_negotiations(&self) -> Result<Vec<NegotiationRecord>, ReadError> {
        self.replica()
            .read(|c| {
                let mut s =
                    c.prepare_cached("SELECT id FROM negotiations WHERE state = 'open' ORDER BY created_at, id")?;
                let ids = s.query_map([], |r| r.get::<_, String>(0))?.collect::<rusqlite::Result<Vec<_>>>()?;
                let mut out = Vec::new();
                for id in ids {
                    out.extend(read(c, &id)?);
                }
                Ok(out)
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(parties: &[&str], max_rounds: u32) -> NegotiationRecord {
        NegotiationRecord {
            id: "n".into(),
            subject: "price".into(),
            parties: parties.iter().map(|p| p.to_string()).collect(),
            initiator: "user".into(),
            max_rounds,
            deadline_at_ms: 0,
            state: NegotiationState::Open,
            round: 0,
            round_started_at_ms: 0,
            offer: None,
            accepted_by: vec![],
            moves: vec![],
            terms: None,
            reason: None,
            created_at_ms: 0,
        }
    }

    fn mv(r: &NegotiationRecord, kind: MoveKind) -> Move {
        Move { round: r.round, party: r.to_move().to_owned(), message_id: None, kind }
    }

    #[test]
    fn offers_alternate_until_accepted() {
        let mut r = record(&["buyer", "seller"], 10);
        r.take(mv(&r, MoveKind::Offer { terms: "80".into() }));
        assert_eq!(r.to_move(), "seller");
        r.take(mv(&r, MoveKind::Offer { terms: "95".into() }));
        r.take(mv(&r, MoveKind::Accept));
        assert_eq!((r.state, r.terms.as_deref()), (NegotiationState::Agreed, Some("95")));
    }

    #[test]
    fn every_failure_says_why() {
        let mut r = record(&["a", "b"], 2);
        r.take(mv(&r, MoveKind::Offer { terms: "1".into() }));
        r.take(mv(&r, MoveKind::Offer { terms: "2".into() }));
        assert_eq!(
            (r.state, r.reason.as_deref()),
            (NegotiationState::Failed, Some("2 rounds exhausted without agreement"))
        );
        let mut r = record(&["a", "b"], 5);
        r.take(mv(&r, MoveKind::Accept));
        assert!(r.reason.unwrap().contains("before any offer"));
        let mut r = record(&["a", "b"], 5);
        r.take(mv(&r, MoveKind::Offer { terms: "1".into() }));
        r.take(mv(&r, MoveKind::Reject { reason: "too low".into() }));
        assert_eq!(r.reason.as_deref(), Some("rejected by b: too low"));
    }

    #[test]
    fn multilateral_needs_every_party() {
        let mut r = record(&["a", "b", "c"], 10);
        r.take(mv(&r, MoveKind::Offer { terms: "x".into() }));
        r.take(mv(&r, MoveKind::Accept));
        assert_eq!(r.state, NegotiationState::Open, "c has not accepted");
        r.take(mv(&r, MoveKind::Accept));
        assert_eq!(r.state, NegotiationState::Agreed);
    }
}
