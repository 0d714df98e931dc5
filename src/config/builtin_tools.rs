//! The names of the tools Caxton itself provides, which an agent's `tools`
//! may list and nothing else may take (its `[[a2a]]` tools, say). The
//! runtime (`runtime/tools.rs`) implements them.

pub const ASK_AGENT: &str = "ask_agent";
pub const MEMORY_SEARCH: &str = "memory_search";
pub const MEMORY_STORE: &str = "memory_store";
pub const MEMORY_RELATE: &str = "memory_relate";
pub const PUBLISH: &str = "publish";
pub const START_AUCTION: &str = "start_auction";
pub const START_NEGOTIATION: &str = "start_negotiation";

/// Tools the runtime itself provides (always available to allowlist).
pub const BUILTIN_TOOLS: [&str; 7] =
    [ASK_AGENT, MEMORY_SEARCH, MEMORY_STORE, MEMORY_RELATE, PUBLISH, START_AUCTION, START_NEGOTIATION];

/// Whether `name` is one of Caxton's own tools (not an MCP server's).
pub fn is_builtin(name: &str) -> bool {
    BUILTIN_TOOLS.contains(&name)
}
