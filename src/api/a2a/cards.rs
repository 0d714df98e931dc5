//! Agent cards: an agent's, and the node's router card.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::Value;

use super::super::problem::Problem;
use super::super::Ctx;
use super::versioned;
use crate::a2a::card::{self, CardContext};
use crate::auth::{Credential, Principal};
use crate::messaging::MessageError;

/// `scheme://host` as the caller reached this node.
fn base_url(ctx: &Ctx, headers: &HeaderMap) -> String {
    let host = headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or("localhost");
    let scheme = headers.get("x-forwarded-proto").and_then(|h| h.to_str().ok()).unwrap_or(if ctx.https {
        "https"
    } else {
        "http"
    });
    format!("{scheme}://{host}")
}

fn card_response(card: Value) -> Response {
    let mut response = Json(card).into_response();
    // Cards change when agents do: cache briefly.
    response.headers_mut().insert("cache-control", HeaderValue::from_static("private, max-age=30"));
    versioned(response)
}

/// An agent's A2A card.
#[utoipa::path(get, path = "/a2a/agents/{name}/.well-known/agent-card.json", tag = "a2a",
    params(("name" = String, Path, description = "The agent")),
    responses((status = 200, description = "AgentCard (A2A v1.0)")))]
pub async fn agent_card(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Principal>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let missing = || Problem::from(MessageError::UnknownAgent(name.clone()));
    let agent_name = crate::config::AgentName::parse(&name).map_err(|_| missing())?;
    let record = ctx.registry.queries().agent(&agent_name).await?.ok_or_else(missing)?;
    if !super::super::access::sees_record(&caller, &record) {
        return Err(missing());
    }
    let base = base_url(&ctx, &headers);
    let cx = CardContext { base_url: &base, keys_required: caller.credential != Credential::Dev };
    Ok(card_response(card::agent_card(&cx, &record)))
}

/// The node's A2A card: a router whose skills are the capabilities.
#[utoipa::path(get, path = "/.well-known/agent-card.json", tag = "a2a",
    responses((status = 200, description = "AgentCard (A2A v1.0)")))]
pub async fn router_card(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Principal>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let mut capabilities: Vec<String> = super::super::access::visible_agents(&caller, ctx.registry.queries())
        .await?
        .into_iter()
        .flat_map(|a| a.spec.capabilities)
        .collect();
    capabilities.sort();
    capabilities.dedup();
    let base = base_url(&ctx, &headers);
    let cx = CardContext { base_url: &base, keys_required: caller.credential != Credential::Dev };
    Ok(card_response(card::router_card(&cx, &capabilities)))
}
