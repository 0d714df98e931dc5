//! Messages, conversations, routing (to an agent or a capability), the
//! durable send path and interaction protocols.

mod answer;
mod protocols;
mod routing;
mod service;
mod streams;

pub use crate::state::{ConversationState, Message, MessageKind, MessageStatus};
pub use answer::{AnswerEvent, AnswerStream, Relay, MAX_ANSWER_WAIT};
pub use protocols::{ContractNetOutcome, Proposal};
pub use routing::CapabilityRouter;
pub use service::{
    split_revision, Admission, Conversation, MessageError, MessageLimits, MessageService, SendOutcome, SendRequest,
    Target,
};
pub use streams::{TokenHub, TokenProducer, TokenSubscription};
