//! The one layer every API request passes: browser checks, the in-flight
//! cap, authentication, the route's scope, the key's budget, the request
//! timeout, the cap on open streams, and the audit line of every write.
//! What a route needs is declared in `api::catalogue::ROUTES`, nowhere else.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{header, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use tokio::sync::Semaphore;

use super::catalogue::{self, Access};
use super::{Problem, ProblemType};
use crate::auth::{browser, Credential, DiskSpace, KeyRing, LiveSettings, Principal, RateLimiter, Refusal, RelayKey};
use crate::auth::{StreamSlot, StreamSlots, RELAY_HEADER};
use crate::state::Scope;

/// Whether requests without a key are served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A loopback node with no admin key: no key needed, but only from
    /// loopback `Host`s and pages.
    Dev,
    /// Every scoped route needs a key.
    Keys,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Dev => "dev",
            Mode::Keys => "keys",
        }
    }
}

pub struct GateConfig {
    pub mode: Mode,
    pub max_in_flight: usize,
    pub max_streams_per_key: usize,
    pub max_requests_per_key: usize,
    pub limiter: RateLimiter,
    /// Verifies peers' relay credentials (keys mode: from the admin key).
    pub relay: Option<RelayKey>,
    /// The data volume's free space; `None`: not watched.
    pub disk: Option<DiskSpace>,
}

pub struct Gate {
    config: GateConfig,
    /// What a config reload changes: `server.allowed_origins` and
    /// `server.request_timeout_ms` (the rate limit lives in the limiter).
    live: parking_lot::RwLock<Arc<LiveSettings>>,
    keys: KeyRing,
    in_flight: Arc<Semaphore>,
    streams: StreamSlots,
    /// Requests in flight per key.
    per_key: StreamSlots,
}

impl Gate {
    /// `live`: the settings a config reload may replace later (`reload`).
    pub fn new(config: GateConfig, live: LiveSettings, keys: KeyRing) -> Self {
        let in_flight = Arc::new(Semaphore::new(config.max_in_flight));
        let streams = StreamSlots::new(config.max_streams_per_key);
        let per_key = StreamSlots::new(config.max_requests_per_key.max(1));
        Self { config, live: parking_lot::RwLock::new(Arc::new(live)), keys, in_flight, streams, per_key }
    }

    fn live(&self) -> Arc<LiveSettings> {
        self.live.read().clone()
    }

    /// Applies reloaded settings to every request from now on.
    pub fn reload(&self, live: LiveSettings, default_rate: Option<crate::state::RateLimit>) {
        *self.live.write() = Arc::new(live);
        self.config.limiter.set_default(default_rate);
    }

    pub fn mode(&self) -> Mode {
        self.config.mode
    }

    /// The data volume's free bytes as last read, when watched.
    pub fn disk_free(&self) -> Option<u64> {
        self.config.disk.as_ref().map(|d| d.free())
    }

    fn origin_allowed(&self, origin: &str) -> bool {
        self.origin_configured(origin) || (self.config.mode == Mode::Dev && browser::is_loopback_origin(origin))
    }

    /// A page origin listed in `server.allowed_origins`.
    fn origin_configured(&self, origin: &str) -> bool {
        self.live().allowed_origins.iter().any(|o| o == origin)
    }

    /// Pages and rebound names a browser could otherwise use (see `browser`).
    fn browser_refusal(&self, req: &Request) -> Option<Problem> {
        let headers = req.headers();
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
        if let Some(origin) = headers.get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or("");
            if !self.origin_allowed(origin) && !browser::is_same_origin(origin, host) {
                return Some(Problem::of(
                    ProblemType::OriginRefused,
                    format!("requests from the page origin `{origin}` are refused (server.allowed_origins)"),
                ));
            }
        }
        if self.config.mode == Mode::Dev && !browser::is_loopback_host(host) {
            return Some(Problem::of(
                ProblemType::OriginRefused,
                format!("Host `{host}` is not a loopback name; a node without an admin key answers only to localhost"),
            ));
        }
        None
    }

    /// The caller's principal. In dev mode a loopback peer needs no key,
    /// and a bearer token that is not a Caxton key is ignored (as local
    /// OpenAI-compatible servers do, so SDKs that insist on a key work); a
    /// remote peer is never served without a key, whatever its `Host` says.
    async fn authenticate(
        &self,
        authorization: Option<HeaderValue>,
        loopback_peer: bool,
    ) -> Result<Principal, Problem> {
        let dev = self.config.mode == Mode::Dev && loopback_peer;
        let Some(value) = authorization else {
            return if dev { Ok(Principal::dev()) } else { Err(unauthenticated(Refusal::Missing)) };
        };
        let bearer = value
            .to_str()
            .ok()
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        let bearer = match bearer {
            Some(token) if !dev || crate::auth::token::is_caxton_key(token) => token,
            _ if dev => return Ok(Principal::dev()),
            _ => return Err(unauthenticated(Refusal::NotBearer)),
        };
        let now_ms = crate::time::now_ms();
        match self.keys.authenticate(bearer, now_ms).await {
            Ok(Ok(principal)) => Ok(principal),
            Ok(Err(refusal)) => Err(unauthenticated(refusal)),
            Err(e) => Err(Problem::from(e)),
        }
    }
}

impl Gate {
    /// Writes that grow the state (messages, deploys, memory) are refused
    /// while the data volume is short of space; reads, deletes and
    /// administration go on, so an operator can free it.
    fn disk_refusal(&self, method: &Method, scope: Scope) -> Option<Response> {
        let growing = matches!(*method, Method::POST | Method::PUT | Method::PATCH) && scope != Scope::Admin;
        let disk = self.config.disk.as_ref().filter(|_| growing)?;
        let free = disk.short()?;
        let p = Problem::of(
            ProblemType::InsufficientStorage,
            format!(
                "this node's data volume has {} MiB free, under server.min_free_disk_mb ({} MiB): writes are refused \
                 until space is freed (deletes and reads go on)",
                free >> 20,
                disk.min_free >> 20
            ),
        );
        Some(retry_after(p.into_response(), Duration::from_secs(30)))
    }

    /// A peer relaying one message's answer stream, with a credential for
    /// that message (the only route that takes one).
    fn relayed(&self, req: &Request, route: &catalogue::Route) -> Option<Principal> {
        let credential = req.headers().get(RELAY_HEADER)?.to_str().ok()?;
        let local_only = req.uri().query().is_some_and(|q| q.split('&').any(|p| p == "local=true"));
        if route.path != "/v1/messages/{id}/stream" || !local_only {
            return None;
        }
        let id = req.uri().path().strip_prefix("/v1/messages/")?.strip_suffix("/stream")?;
        let now_ms = crate::time::now_ms();
        self.config.relay.as_ref()?.verify(credential, id, now_ms).then(Principal::relay)
    }
}

fn unauthenticated(refusal: Refusal) -> Problem {
    Problem::of(ProblemType::Unauthenticated, refusal.to_string())
}

fn www_authenticate(mut resp: Response, invalid: bool) -> Response {
    let value = if invalid { r#"Bearer realm="caxton", error="invalid_token""# } else { r#"Bearer realm="caxton""# };
    resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(value));
    resp
}

fn retry_after(mut resp: Response, wait: Duration) -> Response {
    let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
    resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    resp
}

fn is_event_stream(resp: &Response) -> bool {
    resp.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"))
}

/// What the catalogue says of a request's matched route.
enum Lookup {
    /// No route matched: the router's 404 answers, no handler runs.
    Unrouted,
    /// The path is routed, this method is not: 405 before any handler.
    MethodNotDeclared(&'static [&'static str]),
    Declared(&'static catalogue::Route),
}

/// `HEAD` is `GET` without the body (axum runs the GET handler for it), so
/// it is checked exactly as `GET` is; a method the table does not declare
/// for the path never reaches a handler.
fn lookup(req: &Request) -> Lookup {
    let Some(path) = req.extensions().get::<MatchedPath>().map(|p| p.as_str()) else { return Lookup::Unrouted };
    let method = if req.method() == Method::HEAD { "get" } else { req.method().as_str() };
    match catalogue::find(method, path) {
        Some(route) => Lookup::Declared(route),
        None => Lookup::MethodNotDeclared(catalogue::methods(path)),
    }
}

fn allow_header(methods: &[&str]) -> HeaderValue {
    let mut listed: Vec<String> = methods.iter().map(|m| m.to_ascii_uppercase()).collect();
    if methods.contains(&"get") {
        listed.push("HEAD".into());
    }
    HeaderValue::from_str(&listed.join(", ")).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn method_not_allowed(req: &Request, methods: &[&str]) -> Response {
    let p =
        Problem::of(ProblemType::MethodNotAllowed, format!("{} is not allowed on {}", req.method(), req.uri().path()));
    let mut resp = p.into_response();
    resp.headers_mut().insert(header::ALLOW, allow_header(methods));
    resp
}

/// A CORS preflight from a configured origin (`server.allowed_origins`) is
/// answered with the path's methods; any other `OPTIONS` is refused.
fn preflight(gate: &Gate, req: &Request, methods: &[&str]) -> Response {
    let origin = req.headers().get(header::ORIGIN).and_then(|o| o.to_str().ok());
    let asked = req.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    match origin {
        Some(origin) if asked && gate.origin_configured(origin) => {
            let mut resp = axum::http::StatusCode::NO_CONTENT.into_response();
            let h = resp.headers_mut();
            if let Ok(v) = HeaderValue::from_str(origin) {
                h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
            }
            h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, allow_header(methods));
            h.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static("authorization, content-type, x-request-id, traceparent"),
            );
            h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
            h.insert(header::VARY, HeaderValue::from_static("Origin"));
            resp
        }
        Some(origin) if asked => Problem::of(
            ProblemType::OriginRefused,
            format!("CORS preflight from `{origin}` refused: not in server.allowed_origins"),
        )
        .into_response(),
        _ => method_not_allowed(req, methods),
    }
}

/// A configured page origin may read the answer.
fn allow_origin(gate: &Gate, origin: Option<&HeaderValue>, resp: &mut Response) {
    let Some(origin) = origin else { return };
    if origin.to_str().is_ok_and(|o| gate.origin_configured(o)) {
        resp.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        resp.headers_mut().insert(header::VARY, HeaderValue::from_static("Origin"));
    }
}

/// Where the connection came from (`api::serve` records it). A request
/// whose peer is unknown is treated as remote.
fn peer_is_loopback(req: &Request) -> bool {
    req.extensions().get::<ConnectInfo<SocketAddr>>().is_some_and(|c| c.0.ip().is_loopback())
}

/// The middleware (`axum::middleware::from_fn_with_state`).
pub async fn guard(State(gate): State<Arc<Gate>>, mut req: Request, next: Next) -> Response {
    let route = match lookup(&req) {
        Lookup::Unrouted => return next.run(req).await,
        Lookup::MethodNotDeclared(methods) if req.method() == Method::OPTIONS => {
            return preflight(&gate, &req, methods)
        }
        Lookup::MethodNotDeclared(methods) => return method_not_allowed(&req, methods),
        Lookup::Declared(route) => route,
    };
    // On every route: no body a web page can send without a preflight.
    if let Some(why) = browser::preflight_free_body(req.method(), req.headers()) {
        return Problem::of(ProblemType::UnsupportedMediaType, why).into_response();
    }
    // Open routes (probes, the API document) need nothing more.
    // `None`: any valid key (who am I), whatever its scopes.
    let scope = match route.access {
        Access::Open => return next.run(req).await,
        Access::Key => None,
        Access::Scope(scope) => Some(scope),
    };
    if let Some(problem) = gate.browser_refusal(&req) {
        return problem.into_response();
    }
    if let Some(refused) = scope.and_then(|s| gate.disk_refusal(req.method(), s)) {
        return refused;
    }
    let Ok(_permit) = gate.in_flight.clone().try_acquire_owned() else {
        return busy(ProblemType::Overloaded, "too many requests in flight on this node; retry shortly".into());
    };
    // (A request body is not `Sync`: hold the header, not the request, across the wait.)
    let authorization = req.headers().get(header::AUTHORIZATION).cloned();
    let invalid = authorization.is_some();
    let principal = match gate.relayed(&req, route) {
        Some(relay) => relay,
        None => match gate.authenticate(authorization, peer_is_loopback(&req)).await {
            Ok(p) => p,
            Err(problem) => return www_authenticate(problem.into_response(), invalid),
        },
    };
    if let Some(scope) = scope.filter(|s| !principal.has(*s)) {
        let mut p = Problem::of(
            ProblemType::MissingScope,
            format!("the API key `{}` lacks the `{scope}` scope this route needs", principal.name),
        );
        p.extra = Some(serde_json::json!({ "required_scope": scope.as_str() }));
        return p.into_response();
    }
    let _key_slot = match key_budget(&gate, &principal) {
        Ok(slot) => slot,
        Err(refused) => return refused,
    };
    let write = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let (method, path) = (req.method().clone(), route.path);
    let request_id = req.headers().get(crate::observability::REQUEST_ID_HEADER).cloned();
    let origin = req.headers().get(header::ORIGIN).cloned();
    req.extensions_mut().insert(principal.clone());
    let request_timeout = gate.live().request_timeout;
    let mut resp = match tokio::time::timeout(request_timeout, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => Problem::of(
            ProblemType::RequestTimeout,
            format!("no answer within server.request_timeout_ms ({} ms)", request_timeout.as_millis()),
        )
        .into_response(),
    };
    allow_origin(&gate, origin.as_ref(), &mut resp);
    if let Some(scope) = scope.filter(|_| write) {
        audit(&principal, scope, &method, path, request_id.as_ref(), resp.status().as_u16());
    }
    if is_event_stream(&resp) {
        return hold_stream_slot(&gate, &principal, resp);
    }
    resp
}

/// A key's share of the node: one of its slots for requests in flight
/// (held until the answer is sent), and one request of its rate. Dev mode
/// and peers relaying a stream have no per-key share.
// The refusal is built only on the error path and sent at once.
#[allow(clippy::result_large_err)]
fn key_budget(gate: &Gate, principal: &Principal) -> Result<Option<StreamSlot>, Response> {
    if matches!(principal.credential, Credential::Dev | Credential::Relay) {
        return Ok(None);
    }
    let name = &principal.name;
    let slot = gate.per_key.try_open(name).ok_or_else(|| {
        let limit = gate.config.max_requests_per_key;
        busy(
            ProblemType::KeyBusy,
            format!("the API key `{name}` already has {limit} requests in flight on this node (server.max_requests_per_key)"),
        )
    })?;
    if let Err(wait) = gate.config.limiter.take(name, principal.rate(), Instant::now()) {
        let p = Problem::of(
            ProblemType::RateLimited,
            format!("the API key `{name}` is over its request rate; retry in {:.1}s", wait.as_secs_f64()),
        );
        return Err(retry_after(p.into_response(), wait));
    }
    Ok(Some(slot))
}

/// A refusal that a second from now may not be.
fn busy(kind: ProblemType, detail: String) -> Response {
    retry_after(Problem::of(kind, detail).into_response(), Duration::from_secs(1))
}

/// An event stream keeps its key's slot until the client goes away.
fn hold_stream_slot(gate: &Gate, principal: &Principal, resp: Response) -> Response {
    let Some(slot) = gate.streams.try_open(&principal.name) else {
        let (name, limit) = (&principal.name, gate.config.max_streams_per_key);
        let why = format!("the API key `{name}` already has {limit} streams open (server.max_streams_per_key)");
        return busy(ProblemType::TooManyStreams, why);
    };
    let (parts, body) = resp.into_parts();
    let stream = body.into_data_stream().map(move |chunk| {
        let _held = &slot;
        chunk
    });
    Response::from_parts(parts, Body::from_stream(stream))
}

fn audit(
    principal: &Principal,
    scope: Scope,
    method: &Method,
    route: &str,
    request_id: Option<&HeaderValue>,
    status: u16,
) {
    let request_id = request_id.and_then(|v| v.to_str().ok()).unwrap_or("");
    tracing::info!(
        target: "caxton::audit",
        key = %principal.name,
        scope = %scope,
        request_id,
        method = %method,
        route,
        status,
        "write"
    );
}
