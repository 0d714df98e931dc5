//! The WASM MCP host: tool servers are `wasm32-wasip1` modules speaking MCP
//! JSON-RPC over stdin/stdout (the MCP stdio transport), run by wasmtime
//! with no ambient authority and hard limits, deployed through Raft.

mod budget;
mod catalog;
mod clock;
mod errors;
mod host;
mod http;
mod jsonrpc;
mod manifest;
mod policy;
mod registry;
mod remote;
mod sandbox;
mod warm;

pub use crate::config::tool_policy::{ToolPolicy, DEFAULT_MEMORY_BUDGET_MB, DEFAULT_POLICY, RESERVED_ENV_PREFIX};
pub use budget::MemoryBudget;
pub use errors::ToolError;
pub use host::{CompiledServer, McpHost, ToolInfo};
pub use http::{is_internal, HttpPolicy};
pub use manifest::Manifest;
pub use policy::ToolPolicies;
pub use registry::{entry_grants, McpError, McpRegistry, RemoteView, ServerRecord, MAX_MODULE_BYTES};
pub use remote::{Reachability, RemoteServer};
pub use sandbox::{DataDir, Limits, Sandbox};
