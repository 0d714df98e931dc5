//! Capability routing.
//!
//! Policy: among the agents that declare the capability, the one with the
//! fewest unanswered requests (from the replicated state, so every node
//! judges alike); ties are broken round-robin so equal agents share load
//! evenly instead of the alphabetically first one taking everything.

use std::sync::atomic::{AtomicUsize, Ordering};

use caxton_cluster::ReadError;

use crate::state::Queries;

pub struct CapabilityRouter {
    queries: Queries,
    turn: AtomicUsize,
}

pub enum Routed {
    Agent(String),
    /// Nobody declares it; here is what does exist.
    NoAgent {
        available: Vec<String>,
    },
}

impl CapabilityRouter {
    pub fn new(queries: Queries) -> Self {
        Self { queries, turn: AtomicUsize::new(0) }
    }

    pub async fn route(&self, capability: &str) -> Result<Routed, ReadError> {
        let candidates = self.queries.agents_with_capability(capability).await?;
        if candidates.is_empty() {
            return Ok(Routed::NoAgent { available: self.queries.capabilities().await? });
        }
        let counts = self.queries.pending_counts().await?;
        let load = |name: &String| counts.get(&name.to_ascii_lowercase()).copied().unwrap_or(0);
        let least = candidates.iter().map(load).min().unwrap_or(0);
        let tied: Vec<&String> = candidates.iter().filter(|c| load(c) == least).collect();
        let pick = self.turn.fetch_add(1, Ordering::Relaxed) % tied.len();
        Ok(Routed::Agent(tied[pick].clone()))
    }
}
