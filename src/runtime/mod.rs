//! The owner's data plane: the agents this node runs and everything one of
//! their turns touches.
//!
//! - `running.rs` keeps the running set (a worker per agent) in line with
//!   the replica, and `follow.rs` is how: state events and a sweep;
//! - `mailboxes.rs` hands delivered message ids to the workers;
//! - `worker.rs` answers each delivery in three phases: `prepare.rs`
//!   (history, memory recall), `generate.rs` (the turns, tokens streamed)
//!   and `commit.rs` (auto-store, metrics, the reply through the batched
//!   proposer); `executor.rs` is what the workers share;
//! - `shadow.rs` answers a shadow rollout's copies with the same phases;
//! - a turn (`turns.rs`) renders the prompt (`prompt.rs`), calls the model
//!   and the agent's tools (`tools.rs`: MCP servers and the built-in ones);
//! - `admission.rs` tells the send path, before anything is committed,
//!   whether a message fits the receiving agent's model.
//!
//! The deploy plane (the registry, the agents directory) is `agents/`'s; the
//! leader-only loops are `control/`'s.

mod admission;
mod budget;
mod commit;
mod executor;
mod follow;
mod generate;
mod mailboxes;
mod prepare;
mod prompt;
mod running;
mod shadow;
mod tools;
mod turns;
mod worker;

pub use admission::ModelAdmission;
pub use executor::RuntimeSettings;
pub use mailboxes::{Delivery, Mailboxes, Undelivered};
pub use running::{AgentRuntime, AgentState, RunningAgent};
pub use tools::{ASK_AGENT, BUILTIN_TOOLS};
pub use turns::HISTORY_BUDGET_CHARS;
