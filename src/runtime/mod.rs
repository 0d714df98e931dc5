//! The owner's data plane: the agents this node runs and everything one of
//! their turns touches. `running.rs` keeps the running set in line with the
//! replica and answers each delivered message (a worker per agent);
//! `mailboxes.rs` hands messages to those workers; a turn (`turns.rs`)
//! renders the prompt (`prompt.rs`), calls the model and the agent's tools
//! (`tools.rs`: MCP servers and the built-in ones); `admission.rs` tells the
//! send path, before anything is committed, whether a message fits the
//! receiving agent's model.
//!
//! The deploy plane (the registry, the agents directory) is `agents/`'s; the
//! leader-only loops are `control/`'s.

mod admission;
mod mailboxes;
mod prompt;
mod running;
mod tools;
mod turns;

pub use admission::ModelAdmission;
pub use mailboxes::{Delivery, Mailboxes, Undelivered};
pub use running::{AgentRuntime, AgentState, RunningAgent};
pub use tools::{ASK_AGENT, BUILTIN_TOOLS};
pub use turns::HISTORY_BUDGET_CHARS;
