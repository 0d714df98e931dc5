//! Agents: the registry service (deploy, update, remove, look up), the
//! agents directory that feeds it, and the runtime that runs the agents this
//! node owns: prompts, the LLM/tool loop, mailboxes.

mod admission;
mod directory;
mod mailboxes;
mod placement;
mod prompt;
mod registry;
mod rollouts;
mod runtime;
mod tools;
mod turns;

pub use admission::ModelAdmission;
pub use directory::{AgentsDirectory, FileStatus};
pub use mailboxes::{Delivery, Mailboxes, Undelivered};
pub use placement::{Placement, PlacementError};
pub use registry::{AgentRegistry, DeployOptions, DeployOutcome, RegistryError};
pub use rollouts::{judge, RolloutController};
pub use runtime::{AgentRuntime, AgentState, RunningAgent};
pub use tools::ASK_AGENT;
pub use turns::HISTORY_BUDGET_CHARS;
