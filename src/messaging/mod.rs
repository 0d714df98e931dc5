//! Messages, conversations, routing (to an agent or a capability), the
//! durable send path and interaction protocols.

mod batcher;
mod message;
mod protocols;
mod routing;
mod service;
mod streams;

pub use batcher::Batcher;
pub use message::{ConversationState, Message, MessageKind, MessageStatus};
pub use protocols::{ContractNetOutcome, Proposal};
pub use routing::CapabilityRouter;
pub use service::{Conversation, MessageError, MessageService, SendOutcome, SendRequest, Target};
pub use streams::{StreamEvent, TokenHub};
