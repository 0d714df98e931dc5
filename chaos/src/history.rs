//! The recorded history: every operation's invocation and completion, as
//! Jepsen and etcd's robustness tests record them, one JSON line each.

use serde::{Deserialize, Serialize};

/// How an operation ended, as the client saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Outcome {
    /// Acknowledged; for a read, the value it returned (`None`: absent).
    Ok { value: Option<String> },
    /// Certainly did not take effect (refused before commit).
    Fail { why: String },
    /// May or may not have taken effect (timeout, connection lost,
    /// outcome `unknown`).
    Unknown { why: String },
}

/// What an operation did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// Deploy agent `key` with parameter `value = value`.
    Write { key: String, value: String },
    /// Read agent `key`'s value with `consistency=linearizable`.
    Read { key: String },
    /// Send message `id` to an echo agent (one attempt; retries reuse the id).
    Send { id: String, agent: String, sync: bool },
    /// Store observation `value` on memory entity `key`.
    Remember { key: String, value: String },
    /// A semantic memory search (recorded for load and outcomes; a search
    /// over embeddings has no exact expected answer to check).
    Search { query: String },
    /// Publish publication `id` to the topic the subscriber listens on.
    Publish { id: String },
    /// Start sealed-bid auction `id` among the echo agents.
    Auction { id: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub client: usize,
    /// Milliseconds since the run started.
    pub invoke_ms: u64,
    pub complete_ms: u64,
    /// The node whose API served it.
    pub node: u64,
    #[serde(flatten)]
    pub op: Op,
    pub outcome: Outcome,
}

impl Event {
    pub fn is_ok(&self) -> bool {
        matches!(self.outcome, Outcome::Ok { .. })
    }
}

/// A fault as it happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultWindow {
    pub kind: String,
    pub detail: String,
    pub start_ms: u64,
    pub end_ms: u64,
}

/// One node's view of Raft, sampled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaderSample {
    pub at_ms: u64,
    pub node: u64,
    pub term: u64,
    /// This node says it is the leader.
    pub leading: bool,
}

/// Everything a run recorded.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct History {
    pub seed: u64,
    pub events: Vec<Event>,
    pub faults: Vec<FaultWindow>,
    pub leaders: Vec<LeaderSample>,
    /// Final (node, applied index, digest) after the schedule healed.
    pub digests: Vec<(u64, u64, String)>,
    /// Final state of every message id sent: (id, exists, replies).
    pub messages: Vec<(String, bool, u64)>,
    /// Final observations of every memory entity written.
    pub memory: Vec<(String, Vec<String>)>,
    /// Final revisions kept per registry key: (key, hashes of their text).
    pub revisions: Vec<(String, Vec<String>)>,
    /// Final state of every publication attempted: (id, its notification
    /// exists, it was processed).
    #[serde(default)]
    pub publications: Vec<(String, bool, bool)>,
    /// Final state of every auction attempted: (id, exists, state, result
    /// notices in its conversation).
    #[serde(default)]
    pub auctions: Vec<(String, bool, String, u64)>,
    /// Times the cluster did not recover after a fault was healed (not
    /// ready, membership not back) within the driver's patience.
    #[serde(default)]
    pub recovery: Vec<String>,
}

impl History {
    pub fn write_jsonl(&self, path: &std::path::Path) -> anyhow::Result<()> {
        use std::io::Write;
        let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
        for e in &self.events {
            writeln!(out, "{}", serde_json::to_string(e)?)?;
        }
        Ok(())
    }

    pub fn save(&self, path: &std::path::Path) -> anyhow::Result<()> {
        std::fs::write(path, serde_json::to_vec(self)?)?;
        Ok(())
    }

    pub fn load(path: &std::path::Path) -> anyhow::Result<Self> {
        Ok(serde_json::from_slice(&std::fs::read(path)?)?)
    }
}
