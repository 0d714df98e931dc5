//! openraft wiring: SQLite log store, state machine adapter, RPC network.

pub(crate) mod log_store;
pub(crate) mod network;
pub(crate) mod state_machine;

#[cfg(test)]
mod storage_suite;
