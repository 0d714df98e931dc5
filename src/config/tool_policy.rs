//! The schema of `[tools.policy.NAME]`: what the operator grants tool
//! servers. Enforcing it is `mcp::policy`'s job; the schema lives with the
//! rest of the configuration, below everything that reads it.

use serde::{Deserialize, Serialize};

/// Prefix of the node's own settings and secrets: never granted to a tool.
pub const RESERVED_ENV_PREFIX: &str = "CAXTON_";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ToolPolicy {
    /// Environment variables a tool server may be given (never `CAXTON_*`).
    pub env: Vec<String>,
    /// Hosts a server may list in `http_allow`: names, `*.domain`, or `*`
    /// for any public host (private addresses need `private_network`).
    pub http_hosts: Vec<String>,
    /// May reach loopback, private and link-local addresses.
    pub private_network: bool,
    /// May have a private `/data` directory.
    pub data_dir: bool,
    /// The most a server's `/data` may hold; at or over it, `/data` is
    /// mounted read-only.
    pub data_quota_mb: u64,
    pub max_memory_mb: u64,
    pub max_fuel: u64,
    pub max_timeout_ms: u64,
    pub max_input_kb: u64,
    pub max_output_kb: u64,
    /// API keys whose deploys of this server get this policy. Empty: only
    /// the operator's (the tools directory, or an admin key). A server of
    /// this name deployed by anyone else gets `tools.policy.default`, so a
    /// key cannot inherit a trusted tool's grants by taking its name.
    pub deployers: Vec<String>,
}

impl Default for ToolPolicy {
    fn default() -> Self {
        Self {
            env: Vec::new(),
            http_hosts: vec!["*".into()],
            private_network: false,
            data_dir: true,
            data_quota_mb: 64,
            max_memory_mb: 256,
            max_fuel: 10_000_000_000,
            max_timeout_ms: 30_000,
            max_input_kb: 4096,
            max_output_kb: 4096,
            deployers: Vec::new(),
        }
    }
}

/// The name of the policy that applies to servers without their own.
pub const DEFAULT_POLICY: &str = "default";

/// The most memory the tool calls running at once may hold together (MiB),
/// unless `tools.memory_budget_mb` says otherwise.
pub const DEFAULT_MEMORY_BUDGET_MB: u32 = 2048;
