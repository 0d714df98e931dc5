//! Every route, with the problem types it can answer, in one table. The
//! OpenAPI document's error responses are written from it (so a route's
//! documentation cannot forget one), a test checks the table names every
//! routed operation, and `tests` provoke each route's errors against it.

use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, ResponseBuilder};

use crate::problems::ProblemType as P;
use crate::state::Scope;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone: probes and this document.
    Open,
    /// A key holding this scope (or `admin`).
    Scope(Scope),
    /// Any valid key, whatever its scopes (who am I).
    Key,
}

const OPEN: Access = Access::Open;

/// A route, who may call it, and what can go wrong on it.
pub struct Route {
    pub access: Access,
    pub method: &'static str,
    pub path: &'static str,
    /// Problem types, grouped as the handler meets them.
    pub problems: &'static [&'static [P]],
}

/// Any route: a failed read of the replica, an unexpected state.
const ANY: &[P] = &[P::Internal];
/// A JSON body, as axum's extractor refuses it.
const JSON_BODY: &[P] = &[P::BadRequest, P::Unprocessable, P::UnsupportedMediaType, P::PayloadTooLarge];
/// A body the handler reads itself (TOML or JSON).
const RAW_BODY: &[P] = &[P::BadRequest, P::UnsupportedMediaType, P::PayloadTooLarge];
/// A query string or a path segment that does not parse.
const PARAMS: &[P] = &[P::BadRequest];
/// A write through Raft: no leader, no quorum, or this node stopping.
const WRITE: &[P] = &[P::ClusterUnavailable, P::NodeStopping];
/// A memory call: the PostgreSQL backend's database may be unreachable.
const MEMORY: &[P] = &[P::MemoryUnavailable];
/// A cluster administration call.
const ADMIN: &[P] = &[P::NodeNotFound, P::ClusterRefused, P::ClusterUnavailable];
/// Running a tool.
const TOOL: &[P] = &[
    P::InvalidModule,
    P::ToolMemoryLimit,
    P::ToolCpuLimit,
    P::ToolTimeout,
    P::ToolOutputLimit,
    P::ToolInputLimit,
    P::ToolNotMcp,
    P::ToolFailed,
    P::ToolRpcError,
    P::ToolServerUnavailable,
];

/// What the gate (`api::gate`) answers before a scoped route runs.
const GATE: &[P] = &[
    P::MethodNotAllowed,
    P::Unauthenticated,
    P::MissingScope,
    P::OutsideKeyGrant,
    P::OriginRefused,
    P::UnsupportedMediaType,
    P::RateLimited,
    P::TooManyStreams,
    P::KeyBusy,
    P::InsufficientStorage,
    P::Overloaded,
    P::RequestTimeout,
];

/// The scopes as route accesses, so the table reads `route(S::Deploy, ...)`.
#[allow(non_snake_case, non_upper_case_globals)]
mod S {
    use super::{Access, Scope};
    pub const Admin: Access = Access::Scope(Scope::Admin);
    pub const Deploy: Access = Access::Scope(Scope::Deploy);
    pub const Invoke: Access = Access::Scope(Scope::Invoke);
    pub const MemoryRead: Access = Access::Scope(Scope::MemoryRead);
    pub const MemoryWrite: Access = Access::Scope(Scope::MemoryWrite);
    pub const Read: Access = Access::Scope(Scope::Read);
}

const fn route(access: Access, method: &'static str, path: &'static str, problems: &'static [&'static [P]]) -> Route {
    Route { access, method, path, problems }
}

pub const ROUTES: &[Route] = &[
    route(OPEN, "get", "/health", &[]),
    route(OPEN, "get", "/ready", &[]),
    route(S::Read, "get", "/metrics", &[]),
    route(OPEN, "get", "/v1/openapi.json", &[]),
    route(OPEN, "get", "/ui", &[]),
    route(OPEN, "get", "/ui/{file}", &[&[P::RouteNotFound]]),
    route(Access::Key, "get", "/v1/whoami", &[]),
    // Keys.
    route(S::Admin, "post", "/v1/keys", &[ANY, JSON_BODY, WRITE, &[P::InvalidKey, P::KeyExists]]),
    route(S::Admin, "get", "/v1/keys", &[ANY]),
    route(S::Admin, "get", "/v1/keys/{name}", &[ANY, &[P::KeyNotFound]]),
    route(S::Admin, "delete", "/v1/keys/{name}", &[ANY, WRITE, &[P::KeyNotFound]]),
    // Agents.
    route(S::Deploy, "post", "/v1/agents", &[ANY, RAW_BODY, WRITE, &[P::InvalidAgent, P::AgentFileManaged]]),
    route(S::Read, "get", "/v1/agents", &[ANY, PARAMS]),
    route(S::Read, "get", "/v1/agents/{name}", &[ANY, PARAMS, WRITE, &[P::AgentNotFound]]),
    route(
        S::Deploy,
        "put",
        "/v1/agents/{name}",
        &[ANY, RAW_BODY, WRITE, &[P::InvalidAgent, P::AgentNotFound, P::NameMismatch, P::AgentFileManaged]],
    ),
    route(S::Deploy, "delete", "/v1/agents/{name}", &[ANY, WRITE, &[P::AgentNotFound, P::AgentFileManaged]]),
    route(S::Read, "get", "/v1/agents-dir", &[]),
    route(S::Deploy, "post", "/v1/agent-checks", &[ANY, RAW_BODY]),
    route(S::Read, "get", "/v1/agents/{name}/revisions", &[ANY, &[P::AgentNotFound]]),
    route(S::Read, "get", "/v1/agents/{name}/revisions/{revision}", &[ANY, PARAMS, &[P::AgentNotFound]]),
    route(
        S::Deploy,
        "post",
        "/v1/agents/{name}/rollback",
        &[ANY, JSON_BODY, WRITE, &[P::AgentNotFound, P::AgentFileManaged]],
    ),
    route(S::Read, "get", "/v1/agents/{name}/rollout", &[ANY, &[P::AgentNotFound, P::NoRollout]]),
    route(S::Deploy, "post", "/v1/agents/{name}/rollout/{action}", &[ANY, WRITE, &[P::AgentNotFound, P::NoRollout]]),
    // Messages.
    route(
        S::Invoke,
        "post",
        "/v1/messages",
        &[
            ANY,
            JSON_BODY,
            WRITE,
            &[
                P::AgentNotFound,
                P::NoAgentForCapability,
                P::HopLimit,
                P::ReplyTimeout,
                P::MessageTooLarge,
                P::PromptTooLong,
                P::MessageIdTaken,
                P::InvalidMessageId,
                P::AgentLimitReached,
                P::ConversationExpired,
            ],
        ],
    ),
    route(S::Invoke, "get", "/v1/messages/{id}", &[ANY, PARAMS, WRITE, &[P::MessageNotFound]]),
    route(S::Invoke, "get", "/v1/messages/{id}/stream", &[ANY, PARAMS, WRITE, &[P::MessageNotFound]]),
    route(S::Invoke, "get", "/v1/conversations", &[ANY, PARAMS]),
    route(S::Invoke, "get", "/v1/conversations/{id}", &[ANY, &[P::ConversationNotFound]]),
    route(S::Invoke, "get", "/v1/conversations/{id}/stream", &[ANY, &[P::ConversationNotFound]]),
    route(
        S::Invoke,
        "post",
        "/v1/contract-net",
        &[ANY, JSON_BODY, WRITE, &[P::NoAgentForCapability, P::ReplyTimeout, P::MessageTooLarge, P::PromptTooLong]],
    ),
    // Topics (the Subscribe protocol).
    route(
        S::Invoke,
        "post",
        "/v1/topics/{topic}/publications",
        &[ANY, JSON_BODY, WRITE, &[P::OutsideKeyGrant, P::MessageTooLarge, P::InvalidMessageId]],
    ),
    route(S::Read, "get", "/v1/topics", &[ANY]),
    route(S::Invoke, "get", "/v1/topics/{pattern}/stream", &[ANY, PARAMS, &[P::OutsideKeyGrant]]),
    route(S::Read, "get", "/v1/agents/{name}/subscriptions", &[ANY, &[P::AgentNotFound]]),
    route(S::Deploy, "post", "/v1/agents/{name}/subscriptions", &[ANY, JSON_BODY, WRITE, &[P::AgentNotFound]]),
    route(
        S::Deploy,
        "delete",
        "/v1/agents/{name}/subscriptions/{id}",
        &[ANY, WRITE, &[P::AgentNotFound, P::SubscriptionNotFound]],
    ),
    // Auctions and negotiations (driven by the leader).
    route(
        S::Invoke,
        "post",
        "/v1/auctions",
        &[ANY, JSON_BODY, WRITE, &[P::AgentNotFound, P::NoAgentForCapability, P::InvalidMessageId, P::OutsideKeyGrant]],
    ),
    route(S::Invoke, "get", "/v1/auctions", &[ANY, PARAMS]),
    route(S::Invoke, "get", "/v1/auctions/{id}", &[ANY, PARAMS, &[P::AuctionNotFound]]),
    route(
        S::Invoke,
        "post",
        "/v1/negotiations",
        &[ANY, JSON_BODY, WRITE, &[P::AgentNotFound, P::InvalidMessageId, P::OutsideKeyGrant]],
    ),
    route(S::Invoke, "get", "/v1/negotiations/{id}", &[ANY, PARAMS, &[P::NegotiationNotFound]]),
    // OpenAI-compatible: errors other than a refused body come in OpenAI's shape.
    route(S::Invoke, "post", "/v1/chat/completions", &[ANY, JSON_BODY]),
    route(S::Invoke, "get", "/v1/models", &[ANY]),
    route(S::Invoke, "post", "/v1/embeddings", &[ANY, JSON_BODY, &[P::MemoryModelUnavailable]]),
    // A2A: its errors come in A2A's shape (JSON-RPC errors, google.rpc.Status).
    route(S::Invoke, "get", "/.well-known/agent-card.json", &[ANY]),
    route(S::Invoke, "get", "/a2a/agents/{name}/.well-known/agent-card.json", &[ANY, &[P::AgentNotFound]]),
    route(S::Invoke, "post", "/a2a", &[RAW_BODY]),
    route(S::Invoke, "post", "/a2a/agents/{name}", &[RAW_BODY]),
    route(S::Invoke, "post", "/a2a/{action}", &[RAW_BODY]),
    route(S::Invoke, "post", "/a2a/agents/{name}/{action}", &[RAW_BODY]),
    route(S::Invoke, "get", "/a2a/tasks", &[PARAMS]),
    route(S::Invoke, "get", "/a2a/agents/{name}/tasks", &[PARAMS]),
    route(S::Invoke, "get", "/a2a/tasks/{id}", &[PARAMS]),
    route(S::Invoke, "get", "/a2a/agents/{name}/tasks/{id}", &[PARAMS]),
    route(S::Invoke, "post", "/a2a/tasks/{id}", &[]),
    route(S::Invoke, "post", "/a2a/agents/{name}/tasks/{id}", &[]),
    // Tools.
    route(S::Deploy, "post", "/v1/mcp-servers", &[ANY, JSON_BODY, WRITE, TOOL, &[P::InvalidToolServer]]),
    route(S::Read, "get", "/v1/mcp-servers", &[ANY]),
    route(S::Deploy, "delete", "/v1/mcp-servers/{name}", &[ANY, WRITE, &[P::ToolServerNotFound]]),
    route(
        S::Invoke,
        "post",
        "/v1/tools/{name}/call",
        // Invalid tool server: a tool name two servers offer (name one: `SERVER/TOOL`).
        &[ANY, JSON_BODY, TOOL, &[P::ToolNotFound, P::ToolServerNotFound, P::InvalidToolServer]],
    ),
    route(S::Invoke, "post", "/mcp", &[JSON_BODY]),
    route(S::Invoke, "delete", "/mcp", &[]),
    // Memory (`memory-unavailable`: the PostgreSQL backend's database is down).
    route(
        S::MemoryWrite,
        "post",
        "/v1/memory/entities",
        &[ANY, JSON_BODY, WRITE, MEMORY, &[P::MemoryModelUnavailable]],
    ),
    route(S::MemoryRead, "get", "/v1/memory/entities", &[ANY, PARAMS, MEMORY]),
    route(S::MemoryRead, "get", "/v1/memory/entities/{name}", &[ANY, PARAMS, MEMORY, &[P::MemoryEntityNotFound]]),
    route(
        S::MemoryWrite,
        "delete",
        "/v1/memory/entities/{name}",
        &[ANY, PARAMS, WRITE, MEMORY, &[P::MemoryEntityNotFound]],
    ),
    route(
        S::MemoryRead,
        "get",
        "/v1/memory/entities/{name}/neighbours",
        &[ANY, PARAMS, MEMORY, &[P::MemoryEntityNotFound]],
    ),
    route(S::MemoryWrite, "post", "/v1/memory/relations", &[ANY, JSON_BODY, WRITE, MEMORY, &[P::MemoryEntityNotFound]]),
    route(S::MemoryRead, "get", "/v1/memory/search", &[ANY, PARAMS, MEMORY, &[P::MemoryModelUnavailable]]),
    route(S::Admin, "get", "/v1/memory/export", &[ANY, MEMORY]),
    route(
        S::Admin,
        "post",
        "/v1/memory/import",
        &[
            ANY,
            JSON_BODY,
            WRITE,
            MEMORY,
            &[P::UnsupportedExportVersion, P::MemoryEntityNotFound, P::MemoryModelUnavailable],
        ],
    ),
    // Cluster.
    route(S::Read, "get", "/v1/cluster/status", &[]),
    // Hashes the whole replica: an operator's (and the chaos checker's) tool.
    route(S::Admin, "get", "/v1/cluster/digest", &[ANY]),
    route(S::Read, "get", "/v1/cluster/members", &[]),
    route(S::Read, "get", "/v1/cluster/placement", &[ANY]),
    route(S::Admin, "get", "/v1/events", &[ANY]),
    route(S::Admin, "post", "/v1/cluster/snapshot", &[ANY, &[P::ClusterUnavailable]]),
    route(S::Admin, "get", "/v1/cluster/backup", &[ANY, &[P::ClusterUnavailable, P::NodeStopping]]),
    route(S::Admin, "post", "/v1/cluster/reload", &[ANY, &[P::InvalidConfig]]),
    route(S::Admin, "post", "/v1/cluster/leave", &[ANY, ADMIN]),
    route(S::Admin, "post", "/v1/cluster/members/{id}/remove", &[ANY, PARAMS, ADMIN]),
    route(S::Admin, "post", "/v1/cluster/transfer-leader", &[ANY, JSON_BODY, ADMIN]),
    route(S::Admin, "post", "/v1/cluster/rebalance", &[ANY, WRITE]),
];

impl Route {
    /// The route's problem types, each once, in table order (the gate's last).
    pub fn problem_types(&self) -> Vec<P> {
        let gate: &[P] = if self.access == Access::Open { &[P::UnsupportedMediaType] } else { GATE };
        let mut out: Vec<P> = Vec::new();
        for t in self.problems.iter().flat_map(|g| g.iter()).chain(gate) {
            if !out.contains(t) {
                out.push(*t);
            }
        }
        out
    }
}

pub fn find(method: &str, path: &str) -> Option<&'static Route> {
    ROUTES.iter().find(|r| r.method.eq_ignore_ascii_case(method) && r.path == path)
}

/// The methods the table declares for `path` (lowercase), in table order.
pub fn methods(path: &str) -> &'static [&'static str] {
    static BY_PATH: std::sync::OnceLock<std::collections::HashMap<&'static str, Vec<&'static str>>> =
        std::sync::OnceLock::new();
    let by_path = BY_PATH.get_or_init(|| {
        let mut m: std::collections::HashMap<&'static str, Vec<&'static str>> = Default::default();
        for r in ROUTES {
            m.entry(r.path).or_default().push(r.method);
        }
        m
    });
    by_path.get(path).map(Vec::as_slice).unwrap_or(&[])
}

/// The OpenAPI security scheme of API keys.
pub const BEARER: &str = "bearer";

/// Writes each operation's security requirement and error responses from [`ROUTES`]: one response
/// per status, listing the problem types that answer with it.
pub fn document(api: &mut OpenApi) {
    let scheme = HttpBuilder::new()
        .scheme(HttpAuthScheme::Bearer)
        .description(Some("An API key (`caxton key create`); its scopes are listed per operation."))
        .build();
    api.components.get_or_insert_with(Default::default).add_security_scheme(BEARER, SecurityScheme::Http(scheme));
    for (path, item) in api.paths.paths.iter_mut() {
        let ops: [(&str, &mut Option<Operation>); 5] = [
            ("get", &mut item.get),
            ("post", &mut item.post),
            ("put", &mut item.put),
            ("delete", &mut item.delete),
            ("patch", &mut item.patch),
        ];
        for (method, op) in ops {
            let (Some(op), Some(route)) = (op.as_mut(), find(method, path)) else { continue };
            op.security = Some(vec![match route.access {
                // `{}`: no credentials needed.
                Access::Open => SecurityRequirement::default(),
                Access::Scope(scope) => SecurityRequirement::new(BEARER, [scope.as_str()]),
                Access::Key => SecurityRequirement::new(BEARER, Vec::<String>::new()),
            }]);
            let mut by_status: std::collections::BTreeMap<u16, Vec<P>> = Default::default();
            for t in route.problem_types() {
                by_status.entry(t.status()).or_default().push(t);
            }
            for (status, types) in by_status {
                let listed: Vec<String> = types.iter().map(|t| format!("`{}`", t.slug())).collect();
                let response = ResponseBuilder::new()
                    .description(format!("Problem types: {}", listed.join(", ")))
                    .content(
                        "application/problem+json",
                        ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build(),
                    )
                    .build();
                op.responses.responses.insert(status.to_string(), response.into());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_routed_operation_is_in_the_table_and_every_entry_is_routed() {
        let api = super::super::openapi();
        let mut documented = Vec::new();
        for (path, item) in &api.paths.paths {
            for (method, op) in [
                ("get", &item.get),
                ("post", &item.post),
                ("put", &item.put),
                ("delete", &item.delete),
                ("patch", &item.patch),
            ] {
                if op.is_some() {
                    assert!(find(method, path).is_some(), "{method} {path} is routed but has no entry in ROUTES");
                    documented.push((method, path.clone()));
                }
            }
        }
        for r in ROUTES {
            assert!(
                documented.iter().any(|(m, p)| *m == r.method && p == r.path),
                "ROUTES names {} {}, which is not routed",
                r.method,
                r.path
            );
        }
    }
}
