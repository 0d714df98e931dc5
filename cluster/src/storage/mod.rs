//! Persistent storage for openraft: the SQLite log store (`raft.db`) and the
//! state machine adapter over the application's replica (`state.db`).
//!
//! Kept apart from the network glue (`transport::raft_network`) so that
//! everything that needs durable state (the cluster identity, the replica
//! readers) depends on storage alone, never on the transport above it.

pub(crate) mod log_store;
pub(crate) mod state_machine;

pub(crate) use state_machine::failure_of;
pub use state_machine::in_savepoint;

#[cfg(test)]
mod storage_suite;
