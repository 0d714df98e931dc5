//! Raft itself, as the rest of the crate sees it: openraft's settings built
//! from the cluster's, and helpers over openraft's types. Storage lives in
//! `storage`, the network in `transport::raft_network`.

pub(crate) mod raft_ext;
pub(crate) mod snapshot_pacing;

use openraft::{ConfigError, SnapshotPolicy};

use crate::config::ClusterConfig;

/// openraft's settings for this node.
#[allow(clippy::result_large_err)] // openraft's own error type, once at start-up
pub(crate) fn raft_settings(config: &ClusterConfig) -> Result<openraft::Config, ConfigError> {
    openraft::Config {
        cluster_name: "caxton".into(),
        heartbeat_interval: config.heartbeat.as_millis() as u64,
        election_timeout_min: config.election_timeout_min.as_millis() as u64,
        election_timeout_max: config.election_timeout_max.as_millis() as u64,
        // `snapshot_pacing` decides when: by count, and never more than a
        // small share of the node's time.
        snapshot_policy: SnapshotPolicy::Never,
        max_in_snapshot_log_to_keep: config.logs_to_keep,
        // Purge as soon as a snapshot covers entries: they are only ever
        // candidates right after one, so batching buys nothing.
        purge_batch_size: 1,
        max_payload_entries: 512,
        // Each chunk is one request, read from and written to files at both
        // ends (see `storage::state_machine`).
        snapshot_max_chunk_size: crate::limits::SNAPSHOT_CHUNK as u64,
        ..Default::default()
    }
    .validate()
}
