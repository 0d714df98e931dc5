//! `/v1/auctions` and `/v1/negotiations`: start one, read it (optionally
//! waiting for its end). The leader runs them (`control/`).

use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;

use super::problem::{Problem, ProblemType};
use super::Ctx;
use crate::auth::Principal;
use crate::messaging::{AuctionRequest, MessageError, NegotiationRequest, Target};
use crate::state::{AuctionRecord, NegotiationRecord};

/// Longest a read may wait for the end.
const MAX_WAIT: Duration = crate::messaging::MAX_ANSWER_WAIT;

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct WaitParams {
    /// Wait up to this long for it to end (default 0: answer at once).
    pub wait_ms: Option<u64>,
}

impl WaitParams {
    fn wait(&self) -> Duration {
        Duration::from_millis(self.wait_ms.unwrap_or(0)).min(MAX_WAIT)
    }
}

/// A limited key may involve only agents it sees.
async fn check_agents(ctx: &Ctx, caller: &Principal, names: &[String]) -> Result<(), Problem> {
    for name in names {
        super::messages::check_send(ctx, caller, &Target::Agent(name.clone()), None, None).await?;
    }
    Ok(())
}

/// Start an auction among agents (by capability or by name).
#[utoipa::path(post, path = "/v1/auctions", tag = "protocols", request_body = AuctionRequest,
    responses((status = 201, description = "Open; the leader runs it", body = AuctionRecord)))]
pub async fn start_auction(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Principal>,
    Json(req): Json<AuctionRequest>,
) -> Result<(StatusCode, Json<AuctionRecord>), Problem> {
    if let Some(cap) = &req.capability {
        super::messages::check_send(&ctx, &caller, &Target::Capability(cap.clone()), None, None).await?;
    }
    check_agents(&ctx, &caller, req.bidders.as_deref().unwrap_or_default()).await?;
    let record = ctx.messages.start_auction(req, caller.name.as_ref()).await?;
    Ok((StatusCode::CREATED, Json(record)))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Only auctions still open.
    #[serde(default)]
    pub open: bool,
}

/// Auctions, newest first.
#[utoipa::path(get, path = "/v1/auctions", tag = "protocols", params(ListParams),
    responses((status = 200, body = Vec<AuctionRecord>)))]
pub async fn auctions(
    State(ctx): State<Ctx>,
    Query(p): Query<ListParams>,
) -> Result<Json<Vec<AuctionRecord>>, Problem> {
    Ok(Json(ctx.ledger.queries.auctions(p.open, 1000).await?))
}

fn missing(kind: ProblemType, what: &str, id: &str) -> Problem {
    Problem::of(kind, format!("{what} `{id}` does not exist"))
}

/// An auction: its rules, every bid, its result once it has one.
#[utoipa::path(get, path = "/v1/auctions/{id}", tag = "protocols", params(("id" = String, Path), WaitParams),
    responses((status = 200, body = AuctionRecord)))]
pub async fn auction(
    State(ctx): State<Ctx>,
    Path(id): Path<String>,
    Query(p): Query<WaitParams>,
) -> Result<Json<AuctionRecord>, Problem> {
    match ctx.messages.auction(&id, p.wait()).await {
        Err(MessageError::NotFound(_)) => Err(missing(ProblemType::AuctionNotFound, "auction", &id)),
        other => Ok(Json(other?)),
    }
}

/// Start a negotiation between agents (alternating offers).
#[utoipa::path(post, path = "/v1/negotiations", tag = "protocols", request_body = NegotiationRequest,
    responses((status = 201, description = "Open; the leader runs it", body = NegotiationRecord)))]
pub async fn start_negotiation(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Principal>,
    Json(req): Json<NegotiationRequest>,
) -> Result<(StatusCode, Json<NegotiationRecord>), Problem> {
    check_agents(&ctx, &caller, &req.parties).await?;
    let record = ctx.messages.start_negotiation(req, caller.name.as_ref()).await?;
    Ok((StatusCode::CREATED, Json(record)))
}

/// A negotiation: every move, the agreed terms or why it failed.
#[utoipa::path(get, path = "/v1/negotiations/{id}", tag = "protocols", params(("id" = String, Path), WaitParams),
    responses((status = 200, body = NegotiationRecord)))]
pub async fn negotiation(
    State(ctx): State<Ctx>,
    Path(id): Path<String>,
    Query(p): Query<WaitParams>,
) -> Result<Json<NegotiationRecord>, Problem> {
    match ctx.messages.negotiation(&id, p.wait()).await {
        Err(MessageError::NotFound(_)) => Err(missing(ProblemType::NegotiationNotFound, "negotiation", &id)),
        other => Ok(Json(other?)),
    }
}
