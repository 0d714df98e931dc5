//! `/v1/keys`: API keys (admin scope).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Serialize;
use utoipa::ToSchema;

use super::problem::Problem;
use super::Ctx;
use crate::auth::{self, CreatedKey, KeyView, NewKey, Principal};

/// Create a key. The answer holds its token; nothing else ever will.
#[utoipa::path(post, path = "/v1/keys", tag = "keys", request_body = NewKey,
    responses((status = 201, body = CreatedKey)))]
pub async fn create(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Principal>,
    Json(b): Json<NewKey>,
) -> Result<(StatusCode, Json<CreatedKey>), Problem> {
    Ok((StatusCode::CREATED, Json(auth::create_key(&ctx.ledger.store, b, &caller).await?)))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KeyList {
    pub keys: Vec<KeyView>,
}

/// The caller, as this node sees it: what a client (the console) may offer.
#[derive(Debug, Serialize, ToSchema)]
pub struct WhoAmI {
    /// The key's name (`dev` on a node without keys).
    pub key: String,
    /// Its scopes; `admin` holds every other.
    pub scopes: Vec<String>,
    /// `dev` (no key needed from loopback) or `keys`.
    pub mode: &'static str,
    pub node_id: u64,
    pub version: &'static str,
}

/// Who the caller is and what they may do; any valid key may ask.
#[utoipa::path(get, path = "/v1/whoami", tag = "keys", responses((status = 200, body = WhoAmI)))]
pub async fn whoami(State(ctx): State<Ctx>, Extension(caller): Extension<Principal>) -> Json<WhoAmI> {
    let mode = ctx.gate.mode().as_str();
    Json(WhoAmI {
        key: caller.name.to_string(),
        scopes: caller.grants().scopes.iter().map(|s| s.as_str().to_owned()).collect(),
        mode,
        node_id: ctx.ledger.node_id(),
        version: env!("CARGO_PKG_VERSION"),
    })
}

/// Every key, revoked and expired ones included; never a token.
#[utoipa::path(get, path = "/v1/keys", tag = "keys", responses((status = 200, body = KeyList)))]
pub async fn list(State(ctx): State<Ctx>) -> Result<Json<KeyList>, Problem> {
    Ok(Json(KeyList { keys: auth::list_keys(ctx.registry.queries()).await? }))
}

/// The live key of that name.
#[utoipa::path(get, path = "/v1/keys/{name}", tag = "keys", params(("name" = String, Path)),
    responses((status = 200, body = KeyView)))]
pub async fn get(State(ctx): State<Ctx>, Path(name): Path<String>) -> Result<Json<KeyView>, Problem> {
    Ok(Json(auth::get_key(ctx.registry.queries(), &name).await?))
}

/// Revoke the live key of that name, on every node, from its commit on.
#[utoipa::path(delete, path = "/v1/keys/{name}", tag = "keys", params(("name" = String, Path)),
    responses((status = 204)))]
pub async fn revoke(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<StatusCode, Problem> {
    auth::revoke_key(&ctx.ledger.store, &name, &caller).await?;
    Ok(StatusCode::NO_CONTENT)
}
