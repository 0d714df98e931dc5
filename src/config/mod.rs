//! Configuration: the server's `caxton.toml` (+ `CAXTON_*` overrides) and
//! the agent TOML schema. Both are validated once, at the edge; what leaves
//! this module is known good.

pub mod agent;
pub mod builtin_tools;
pub mod duration;
mod env;
pub mod limits;
pub mod memory;
pub mod remote;
pub mod rollout;
pub mod server;
mod setting;
mod span;
pub mod tool_policy;
pub mod topic;

pub use agent::{workspace_of, A2aRemote, AgentName, AgentSpec, MemoryScope, ParseAgentError, DEFAULT_WORKSPACE};
pub use memory::{MemoryBackendKind, MemorySection, PgTlsMode, PostgresSection};
pub use remote::{A2aCredential, A2aSection, RemoteMcpServer};
pub use rollout::{RolloutSpec, Strategy};
pub use server::{ConfigError, ConfigSource, Flag, LogFormat, Secret, ServerConfig};
pub use setting::{ListenAddr, SettingText, Unset};
pub use span::FieldError;
