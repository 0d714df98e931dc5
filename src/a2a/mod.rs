//! The Agent2Agent protocol (A2A v1.0): its wire format, agent cards, and
//! Caxton requests seen as A2A tasks. The HTTP bindings are in
//! `api/a2a.rs`.

pub mod card;
pub mod client;
pub mod error;
pub mod tasks;
pub mod wire;

pub use client::{A2aCallError, A2aClient};
pub use error::A2aError;
