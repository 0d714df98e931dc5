//! The one layer every API request passes: browser checks, the in-flight
//! cap, authentication, the route's scope, the key's budget, the request
//! timeout, the cap on open streams, and the audit line of every write.
//! What a route needs is declared in `api::catalogue::ROUTES`, nowhere else.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use tokio::sync::Semaphore;

use super::browser;
use super::keyring::{KeyRing, Refusal};
use super::limits::{RateLimiter, StreamSlots};
use super::principal::Principal;
use crate::api::catalogue::{self, Access};
use crate::api::{Problem, ProblemType};
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

pub struct GateConfig {
    pub mode: Mode,
    pub allowed_origins: Vec<String>,
    pub request_timeout: Duration,
    pub max_in_flight: usize,
    pub max_streams_per_key: usize,
    pub limiter: RateLimiter,
}

pub struct Gate {
    config: GateConfig,
    keys: KeyRing,
    in_flight: Arc<Semaphore>,
    streams: StreamSlots,
}

impl Gate {
    pub fn new(config: GateConfig, keys: KeyRing) -> Self {
        let in_flight = Arc::new(Semaphore::new(config.max_in_flight));
        let streams = StreamSlots::new(config.max_streams_per_key);
        Self { config, keys, in_flight, streams }
    }

    pub fn mode(&self) -> Mode {
        self.config.mode
    }

    fn origin_allowed(&self, origin: &str) -> bool {
        self.config.allowed_origins.iter().any(|o| o == origin)
            || (self.config.mode == Mode::Dev && browser::is_loopback_origin(origin))
    }

    /// Pages and rebound names a browser could otherwise use (see `browser`).
    fn browser_refusal(&self, req: &Request) -> Option<Problem> {
        let headers = req.headers();
        if let Some(origin) = headers.get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or("");
            if !self.origin_allowed(origin) {
                return Some(Problem::of(
                    ProblemType::OriginRefused,
                    format!("requests from the page origin `{origin}` are refused (server.allowed_origins)"),
                ));
            }
        }
        if self.config.mode == Mode::Dev {
            let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
            if !browser::is_loopback_host(host) {
                return Some(Problem::of(
                    ProblemType::OriginRefused,
                    format!(
                        "Host `{host}` is not a loopback name; a node without an admin key answers only to localhost"
                    ),
                ));
            }
        }
        None
    }

    async fn authenticate(&self, authorization: Option<HeaderValue>) -> Result<Principal, Problem> {
        let Some(value) = authorization else {
            return match self.config.mode {
                Mode::Dev => Ok(Principal::dev()),
                Mode::Keys => Err(unauthenticated(Refusal::Missing)),
            };
        };
        let bearer = value
            .to_str()
            .ok()
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .ok_or_else(|| unauthenticated(Refusal::NotBearer))?;
        let now_ms = chrono::Utc::now().timestamp_millis();
        match self.keys.authenticate(bearer, now_ms).await {
            Ok(Ok(principal)) => Ok(principal),
            Ok(Err(refusal)) => Err(unauthenticated(refusal)),
            Err(e) => Err(Problem::from(e)),
        }
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

/// The middleware (`axum::middleware::from_fn_with_state`).
pub async fn guard(State(gate): State<Arc<Gate>>, mut req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().and_then(|p| catalogue::find(req.method().as_str(), p.as_str()));
    // On every route: no body a web page can send without a preflight.
    if let Some(why) = browser::preflight_free_body(req.method(), req.headers()) {
        return Problem::of(ProblemType::UnsupportedMediaType, why).into_response();
    }
    // Unrouted requests (404/405) and open routes (probes) need nothing more.
    let Some(Access::Scope(scope)) = route.map(|r| r.access) else { return next.run(req).await };
    if let Some(problem) = gate.browser_refusal(&req) {
        return problem.into_response();
    }
    let Ok(_permit) = gate.in_flight.clone().try_acquire_owned() else {
        let p = Problem::of(ProblemType::Overloaded, "too many requests in flight on this node; retry shortly");
        return retry_after(p.into_response(), Duration::from_secs(1));
    };
    // (A request body is not `Sync`: hold the header, not the request, across the wait.)
    let authorization = req.headers().get(header::AUTHORIZATION).cloned();
    let invalid = authorization.is_some();
    let principal = match gate.authenticate(authorization).await {
        Ok(p) => p,
        Err(problem) => return www_authenticate(problem.into_response(), invalid),
    };
    if !principal.has(scope) {
        let mut p = Problem::of(
            ProblemType::MissingScope,
            format!("the API key `{}` lacks the `{scope}` scope this route needs", principal.name),
        );
        p.extra = Some(serde_json::json!({ "required_scope": scope.as_str() }));
        return p.into_response();
    }
    if principal.credential != super::Credential::Dev {
        if let Err(wait) = gate.config.limiter.take(&principal.name, principal.rate(), Instant::now()) {
            let p = Problem::of(
                ProblemType::RateLimited,
                format!(
                    "the API key `{}` is over its request rate; retry in {:.1}s",
                    principal.name,
                    wait.as_secs_f64()
                ),
            );
            return retry_after(p.into_response(), wait);
        }
    }
    let write = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let (method, path) = (req.method().clone(), route.map(|r| r.path).unwrap_or_default());
    let request_id = req.headers().get(crate::observability::REQUEST_ID_HEADER).cloned();
    req.extensions_mut().insert(principal.clone());
    let resp = match tokio::time::timeout(gate.config.request_timeout, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => Problem::of(
            ProblemType::RequestTimeout,
            format!("no answer within server.request_timeout_ms ({} ms)", gate.config.request_timeout.as_millis()),
        )
        .into_response(),
    };
    if write {
        audit(&principal, scope, &method, path, request_id.as_ref(), resp.status().as_u16());
    }
    if is_event_stream(&resp) {
        return hold_stream_slot(&gate, &principal, resp);
    }
    resp
}

/// An event stream keeps its key's slot until the client goes away.
fn hold_stream_slot(gate: &Gate, principal: &Principal, resp: Response) -> Response {
    let Some(slot) = gate.streams.try_open(&principal.name) else {
        let p = Problem::of(
            ProblemType::TooManyStreams,
            format!(
                "the API key `{}` already has {} streams open (server.max_streams_per_key)",
                principal.name, gate.config.max_streams_per_key
            ),
        );
        return retry_after(p.into_response(), Duration::from_secs(1));
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
