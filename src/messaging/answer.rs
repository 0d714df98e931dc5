//! One source for an answer as it is written: its tokens, then the committed
//! reply, on whichever node is asked. The node running the receiving agent
//! reads its own [`TokenHub`](super::TokenHub); any other node relays that
//! node's stream live. Every HTTP encoding of an answer (Caxton's SSE, the
//! OpenAI chunk stream, `caxton chat`) reads from here.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};

use super::service::{MessageError, MessageService};
use crate::config::AgentName;
use crate::sse::SseDecoder;
use crate::state::Message;

/// Longest an answer stream waits for its reply.
pub const MAX_ANSWER_WAIT: Duration = Duration::from_secs(600);

/// What an answer stream carries, in this order: tokens, then one of the
/// two ends.
#[derive(Debug, Clone, PartialEq)]
pub enum AnswerEvent {
    Token(String),
    /// The committed reply (a response, or an error the agent recorded).
    Reply(Box<Message>),
    /// No reply could be read (the wait ran out, the replica failed).
    Failed(String),
}

pub type AnswerStream = Pin<Box<dyn Stream<Item = AnswerEvent> + Send>>;

/// What a committed reply adds to the tokens a listener already has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unstreamed<'a> {
    /// The rest of the answer after the tokens (empty when they carried
    /// it all): tokens past the replay buffer's limit, or every token of an
    /// answer given before the listener came.
    Rest(&'a str),
    /// The answer is not what the tokens said (a request processed again
    /// after a crash answered differently): the committed reply replaces them.
    Whole(&'a str),
}

pub fn unstreamed<'a>(reply: &'a str, streamed: &str) -> Unstreamed<'a> {
    match reply.strip_prefix(streamed) {
        Some(rest) => Unstreamed::Rest(rest),
        None => Unstreamed::Whole(reply),
    }
}

/// Whether a node that does not run the agent may relay its owner's stream.
/// A relay asks the owner with [`Relay::LocalOnly`], so it is never relayed
/// twice. The relaying node presents its own credential for the message
/// (`auth::relay`), never its caller's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relay {
    Allowed,
    LocalOnly,
}

/// What a local answer stream saw first.
enum Next {
    Token(Option<String>),
    Reply(Box<Result<Message, MessageError>>),
}

impl MessageService {
    /// The answer to message `id`, from its first token. `NotFound` (and no
    /// allocation) when there is no such message.
    pub async fn answer_stream(self: &Arc<Self>, id: &str, relay: Relay) -> Result<AnswerStream, MessageError> {
        let message = self.get(id).await?;
        if let Some(reply) = self.reply_of(id).await? {
            return Ok(Box::pin(futures::stream::iter([AnswerEvent::Reply(Box::new(reply))])));
        }
        // Only requests are answered: a stream of anything else would wait
        // out MAX_ANSWER_WAIT for nothing, holding its client's slot.
        if message.kind != crate::state::MessageKind::Request {
            let why = format!("message `{id}` is a {} and gets no reply", message.kind.as_str());
            return Ok(Box::pin(futures::stream::iter([AnswerEvent::Failed(why)])));
        }
        if relay == Relay::Allowed {
            if let Some(upstream) = self.owner_stream(&message).await {
                return Ok(self.relayed(id.to_owned(), upstream));
            }
        }
        Ok(self.local(id.to_owned()))
    }

    /// Tokens from this node's hub until generation ends or the reply is
    /// committed (the agent may run elsewhere), then the reply.
    fn local(self: &Arc<Self>, id: String) -> AnswerStream {
        let mut tokens = self.tokens.subscribe(&id);
        let service = self.clone();
        Box::pin(async_stream::stream! {
            let reply = service.await_reply(&id, MAX_ANSWER_WAIT);
            tokio::pin!(reply);
            let reply = loop {
                let next = tokio::select! {
                    token = tokens.next() => Next::Token(token),
                    r = &mut reply => Next::Reply(Box::new(r)),
                };
                match next {
                    Next::Token(Some(t)) => yield AnswerEvent::Token(t),
                    Next::Token(None) => break (&mut reply).await,
                    Next::Reply(r) => {
                        while let Some(t) = tokens.try_next() {
                            yield AnswerEvent::Token(t);
                        }
                        break *r;
                    }
                }
            };
            yield match reply {
                Ok(reply) => AnswerEvent::Reply(Box::new(reply)),
                Err(e) => AnswerEvent::Failed(e.to_string()),
            };
        })
    }

    /// The owner's stream, decoded; if the owner goes away before its
    /// reply, the reply is read from this node's replica.
    fn relayed(self: &Arc<Self>, id: String, upstream: reqwest::Response) -> AnswerStream {
        let service = self.clone();
        Box::pin(async_stream::stream! {
            let mut decoder = SseDecoder::default();
            let mut body = upstream.bytes_stream();
            while let Some(Ok(chunk)) = body.next().await {
                let events = decoder.feed(&chunk);
                if decoder.overflowed() {
                    tracing::warn!("owner sent an oversized stream event; reading the reply here");
                    break;
                }
                for e in events {
                    match e.event.as_str() {
                        "token" => yield AnswerEvent::Token(e.data),
                        "reply" => match serde_json::from_str::<Message>(&e.data) {
                            Ok(reply) => {
                                yield AnswerEvent::Reply(Box::new(reply));
                                return;
                            }
                            Err(err) => tracing::warn!(error = %err, "owner sent an unreadable reply; reading it here"),
                        },
                        _ => {}
                    }
                }
            }
            yield match service.await_reply(&id, MAX_ANSWER_WAIT).await {
                Ok(reply) => AnswerEvent::Reply(Box::new(reply)),
                Err(e) => AnswerEvent::Failed(e.to_string()),
            };
        })
    }

    /// The live stream of `message`'s answer from the node running its
    /// receiver, when that is another node and it answers.
    async fn owner_stream(&self, message: &Message) -> Option<reqwest::Response> {
        let name = AgentName::parse(&message.receiver).ok()?;
        let owner = self.queries().agent(&name).await.ok()??.owner;
        if owner == self.ledger().node_id() {
            return None;
        }
        let api = self.ledger().api_addr_of(owner)?;
        let url = format!("http://{api}/v1/messages/{}/stream?local=true", message.id);
        let mut request = self.peer_http().get(url).header(crate::observability::REQUEST_ID_HEADER, &message.trace_id);
        if let Some(key) = self.relay_key() {
            let now_ms = crate::time::now_ms();
            request = request.header(crate::auth::RELAY_HEADER, key.mint(&message.id, now_ms));
        }
        let relayed = request.send().await;
        match relayed {
            Ok(r) if r.status().is_success() => Some(r),
            Ok(r) => {
                tracing::debug!(owner, status = %r.status(), "owner refused the token stream; serving the reply only");
                None
            }
            Err(e) => {
                tracing::debug!(owner, error = %e, "owner unreachable for the token stream; serving the reply only");
                None
            }
        }
    }
}
