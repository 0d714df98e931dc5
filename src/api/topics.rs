//! `/v1/topics` (publish, list, stream) and
//! `/v1/agents/{name}/subscriptions`: the Subscribe protocol over REST.

use std::convert::Infallible;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use axum::{Extension, Json};
use futures::Stream;
use serde::Deserialize;
use utoipa::ToSchema;

use super::access;
use super::problem::{Problem, ProblemType};
use super::Ctx;
use crate::auth::Principal;
use crate::config::topic::check_pattern;
use crate::messaging::{MessageError, PublishOutcome, PublishRequest};
use crate::state::{PublicationRecord, StateEvent, SubscriptionRecord, TopicSummary};

/// Publications and topic streams reach every subscriber, whoever they
/// are: a key limited to some agents or workspaces may not use them.
fn check_unlimited(caller: &Principal, what: &str) -> Result<(), Problem> {
    if caller.is_limited() {
        return Err(access::outside(format!(
            "{what} reaches every subscriber; the API key `{}` is limited to some agents",
            caller.name
        )));
    }
    Ok(())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishBody {
    pub content: String,
    /// Client-chosen id: retrying with the same id publishes once.
    pub id: Option<String>,
    /// Published as (default: the API key's name).
    pub publisher: Option<String>,
}

/// Publish to a topic: every subscription matching it, on whichever node
/// owns its agent, receives one notification carrying the topic.
#[utoipa::path(post, path = "/v1/topics/{topic}/publications", tag = "topics", request_body = PublishBody,
    params(("topic" = String, Path, description = "Dot-separated segments, no wildcards")),
    responses(
        (status = 201, description = "Committed and fanned out", body = PublishOutcome),
        (status = 200, description = "A retry of a committed publication (same id)", body = PublishOutcome),
    ))]
pub async fn publish(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Principal>,
    Path(topic): Path<String>,
    Json(body): Json<PublishBody>,
) -> Result<impl IntoResponse, Problem> {
    check_unlimited(&caller, "a publication")?;
    let req = PublishRequest {
        topic,
        content: body.content,
        publisher: body.publisher.unwrap_or_else(|| caller.name.to_string()),
        id: body.id,
        hop: 0,
    };
    let done = ctx.messages.publish(req).await?;
    let status = if done.duplicate { StatusCode::OK } else { StatusCode::CREATED };
    Ok((status, Json(done)))
}

/// Topics published to, with their counts.
#[utoipa::path(get, path = "/v1/topics", tag = "topics", responses((status = 200, body = Vec<TopicSummary>)))]
pub async fn list(State(ctx): State<Ctx>) -> Result<Json<Vec<TopicSummary>>, Problem> {
    Ok(Json(ctx.messages.topics().await?))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
pub struct StreamParams {
    /// Start after this stream position (as `Last-Event-ID` does); absent:
    /// only publications from now on.
    pub after: Option<i64>,
}

/// Publications as SSE `publication` events (the id is the stream
/// position; reconnect with `Last-Event-ID` to resume). The path may be
/// a pattern (`orders.*`, `orders.>`).
#[utoipa::path(get, path = "/v1/topics/{pattern}/stream", tag = "topics",
    params(("pattern" = String, Path, description = "A topic or a pattern"), StreamParams),
    responses((status = 200, description = "text/event-stream of `publication` events")))]
pub async fn stream(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Principal>,
    Path(pattern): Path<String>,
    Query(params): Query<StreamParams>,
    headers: HeaderMap,
) -> Result<Sse<KeepAliveStream>, Problem> {
    check_unlimited(&caller, "a topic stream")?;
    check_pattern(&pattern).map_err(|why| Problem::bad_request(format!("pattern `{pattern}` {why}")))?;
    let resume = headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse().ok());
    let mut events = ctx.ledger.subscribe();
    let start = match resume.or(params.after) {
        Some(after) => after,
        None => ctx.ledger.queries.last_publication_position().await?,
    };
    let messages = ctx.messages.clone();
    let s = async_stream::stream! {
        let mut after = start;
        loop {
            // Catch up from the replica, then wait for the next commit.
            match messages.publications_after(&pattern, after, 256).await {
                Ok(batch) => {
                    let full = batch.len() == 256;
                    for p in batch {
                        after = p.position;
                        yield Ok(event(&p));
                    }
                    if full {
                        continue;
                    }
                }
                Err(e) => {
                    yield Ok(Event::default().event("error").data(e.to_string()));
                    break;
                }
            }
            loop {
                match events.recv().await {
                    Ok(StateEvent::Published { position, .. }) if position > after => break,
                    Ok(StateEvent::Restored) => break,
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => break,
                    Err(_) => return,
                }
            }
        }
    };
    Ok(Sse::new(Box::pin(s) as PinnedStream).keep_alive(KeepAlive::default()))
}

type PinnedStream = std::pin::Pin<Box<dyn Stream<Item = Result<Event, Infallible>> + Send>>;
type KeepAliveStream = axum::response::sse::KeepAliveStream<PinnedStream>;

fn event(p: &PublicationRecord) -> Event {
    Event::default().event("publication").id(p.position.to_string()).data(serde_json::to_string(p).unwrap_or_default())
}

/// An agent the caller may see, or the same 404 as none.
async fn visible_agent(ctx: &Ctx, caller: &Principal, name: &str) -> Result<(), Problem> {
    if !access::sees_agent_named(caller, ctx.registry.queries(), name).await? {
        return Err(MessageError::UnknownAgent(name.to_owned()).into());
    }
    Ok(())
}

/// An agent's subscriptions: its definition's and the API's.
#[utoipa::path(get, path = "/v1/agents/{name}/subscriptions", tag = "topics", params(("name" = String, Path)),
    responses((status = 200, body = Vec<SubscriptionRecord>)))]
pub async fn subscriptions(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<Json<Vec<SubscriptionRecord>>, Problem> {
    visible_agent(&ctx, &caller, &name).await?;
    let missing = || Problem::from(MessageError::UnknownAgent(name.clone()));
    let parsed = crate::config::AgentName::parse(&name).map_err(|_| missing())?;
    if ctx.registry.queries().agent(&parsed).await?.is_none() {
        return Err(missing());
    }
    Ok(Json(ctx.messages.subscriptions(&name).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscribeBody {
    /// A topic or a pattern (`orders.*`, `orders.>`).
    pub pattern: String,
}

/// Subscribe an agent to a topic pattern until cancelled.
#[utoipa::path(post, path = "/v1/agents/{name}/subscriptions", tag = "topics", params(("name" = String, Path)),
    request_body = SubscribeBody, responses((status = 201, body = SubscriptionRecord)))]
pub async fn subscribe(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Principal>,
    Path(name): Path<String>,
    Json(body): Json<SubscribeBody>,
) -> Result<(StatusCode, Json<SubscriptionRecord>), Problem> {
    visible_agent(&ctx, &caller, &name).await?;
    let record = ctx.messages.subscribe(&name, &body.pattern, caller.name.as_ref()).await?;
    Ok((StatusCode::CREATED, Json(record)))
}

/// Cancel an API subscription; its `subscribe` conversation completes.
#[utoipa::path(delete, path = "/v1/agents/{name}/subscriptions/{id}", tag = "topics",
    params(("name" = String, Path), ("id" = String, Path)), responses((status = 204)))]
pub async fn unsubscribe(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Principal>,
    Path((name, id)): Path<(String, String)>,
) -> Result<StatusCode, Problem> {
    visible_agent(&ctx, &caller, &name).await?;
    if ctx.messages.unsubscribe(&name, &id).await? {
        return Ok(StatusCode::NO_CONTENT);
    }
    let definition = ctx.messages.subscriptions(&name).await?.into_iter().any(|s| s.id == id);
    let detail = if definition {
        format!(
            "subscription `{id}` comes from agent `{name}`'s definition: remove it from `subscriptions` and redeploy"
        )
    } else {
        format!("agent `{name}` has no subscription `{id}`")
    };
    Err(Problem::of(ProblemType::SubscriptionNotFound, detail))
}
