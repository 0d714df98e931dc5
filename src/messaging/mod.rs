//! Messages, conversations, routing (to an agent or a capability), the
//! durable send path and interaction protocols.

mod answer;
mod bargains;
mod protocols;
mod routing;
mod service;
mod streams;
mod topics;

pub use crate::state::{ConversationState, Message, MessageKind, MessageStatus};
pub use answer::{unstreamed, AnswerEvent, AnswerStream, Relay, Unstreamed, MAX_ANSWER_WAIT};
pub use bargains::{parse_bid, parse_move, AuctionKind, AuctionRequest, NegotiationRequest};
pub use protocols::{ContractNetOutcome, Proposal};
pub use routing::CapabilityRouter;
pub use service::{
    split_revision, Admission, Conversation, MessageError, MessageLimits, MessageService, SendOutcome, SendRequest,
    Target, MAX_HOPS,
};
pub use streams::{TokenHub, TokenProducer, TokenSubscription};
pub use topics::{PublishOutcome, PublishRequest};
