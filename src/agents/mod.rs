//! Agents: the deploy plane. The registry service (deploy, update, remove,
//! look up; `registry.rs`) and the agents directory that feeds it
//! (`directory.rs`). The runtime that runs the agents this node owns is
//! `runtime/`'s; the leader-only loops are `control/`'s.

mod directory;
mod registry;

pub use directory::{AgentsDirectory, FileStatus};
pub use registry::{AgentRegistry, DeployOptions, DeployOutcome, RegistryError};
