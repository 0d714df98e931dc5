//! `/v1/mcp-servers` and `/v1/tools/{name}/call`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use base64::Engine;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::problem::Problem;
use super::Ctx;
use crate::auth::Principal;
use crate::mcp::ServerRecord;
use crate::state::{Scope, ToolDeployer};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeployServer {
    /// The manifest.toml text.
    pub manifest: String,
    /// The wasm32-wasip1 module, base64.
    pub module: String,
}

/// Deploy (or replace) a tool server: validated, compiled and asked for its
/// tools here, then replicated.
#[utoipa::path(post, path = "/v1/mcp-servers", tag = "tools", request_body = DeployServer,
    responses((status = 201, body = ServerRecord), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn deploy(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Principal>,
    Json(b): Json<DeployServer>,
) -> Result<(StatusCode, Json<ServerRecord>), Problem> {
    let module = base64::engine::general_purpose::STANDARD
        .decode(b.module.trim())
        .map_err(|e| Problem::bad_request(format!("`module` is not base64: {e}")))?;
    Ok((StatusCode::CREATED, Json(ctx.mcp.deploy(&b.manifest, module, deployer(&caller)).await?)))
}

/// Tool servers are shared by every agent: a key limited to some agents or
/// workspaces deploys under its own name and may replace only its own.
fn deployer(caller: &Principal) -> ToolDeployer {
    ToolDeployer { key: Some(caller.name.to_string()), admin: caller.has(Scope::Admin) && !caller.is_limited() }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ServerList {
    pub servers: Vec<ServerRecord>,
}

/// Tool servers with each tool's JSON schema.
#[utoipa::path(get, path = "/v1/mcp-servers", tag = "tools", responses((status = 200, body = ServerList)))]
pub async fn list(State(ctx): State<Ctx>) -> Result<Json<ServerList>, Problem> {
    Ok(Json(ServerList { servers: ctx.mcp.list().await? }))
}

/// Remove a tool server.
#[utoipa::path(delete, path = "/v1/mcp-servers/{name}", tag = "tools", params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn remove(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<StatusCode, Problem> {
    ctx.mcp.remove(&name, deployer(&caller)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CallBody {
    #[serde(default)]
    #[schema(value_type = Object)]
    pub arguments: serde_json::Value,
}

/// Call a tool directly; answers the MCP `tools/call` result.
#[utoipa::path(post, path = "/v1/tools/{name}/call", tag = "tools", params(("name" = String, Path)), request_body = CallBody,
    responses((status = 200, description = "MCP tools/call result"), (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The tool hit a limit or failed", body = Problem, content_type = "application/problem+json")))]
pub async fn call(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Principal>,
    Path(name): Path<String>,
    Json(b): Json<CallBody>,
) -> Result<Json<serde_json::Value>, Problem> {
    let granted = super::access::tools_granted(&caller, ctx.registry.queries()).await?;
    Ok(Json(ctx.mcp.call_within(&name, b.arguments, granted.as_deref()).await?))
}
