//! Caxton: a clustered multi-agent orchestration server.
//!
//! The binary (`main.rs`) is a thin CLI over this library; tests and
//! benchmarks start nodes through [`node::Node`].

pub mod a2a;
pub mod agents;
pub mod api;
pub mod auth;
pub mod cli;
pub mod config;
pub mod control;
pub mod events;
#[cfg(test)]
mod layout_tests;
pub mod llm;
pub mod mcp;
pub mod memory;
pub mod messaging;
pub mod node;
pub mod observability;
pub mod problems;
pub mod reload;
pub mod runtime;
pub mod shutdown;
pub mod sse;
pub mod state;
pub mod time;
