//! When this node builds a snapshot.
//!
//! openraft's own policy builds one every `snapshot_after_logs` entries,
//! whatever it costs. A snapshot here copies the whole replica (`VACUUM
//! INTO`), so its cost grows with the state while the count stays fixed:
//! with a replica of a few hundred megabytes and a busy log, a node would
//! spend a large share of its CPU and disk copying. The pacer keeps the
//! count and adds a rest: after a build that took `T`, the next one waits at
//! least `REST × T`, so building takes at most 1 / (REST + 1) of the time.
//! The log behind it grows meanwhile; it is purged by the next snapshot.

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::consensus::raft_ext::RaftExt;
use crate::types::Raft;

/// Rest after a build, as a multiple of the time it took: at most 5% of
/// the node's time goes to building snapshots.
const REST: u32 = 19;

/// How often the log's length behind the last snapshot is looked at. A
/// snapshot is housekeeping: being late by this much costs nothing.
const POLL: Duration = Duration::from_millis(250);

/// Longest a build is waited for before the pacer looks again.
const BUILD_WAIT: Duration = Duration::from_secs(600);

/// Whether a snapshot is due: enough entries applied since the last one
/// (`snapshot_after_logs`), and the rest after the last build over.
#[derive(Debug, Clone, Copy)]
struct Pace {
    after_logs: u64,
    rest_until: Option<Instant>,
}

impl Pace {
    fn due(&self, applied: u64, snapshot: u64, now: Instant) -> bool {
        applied.saturating_sub(snapshot) >= self.after_logs && self.rest_until.is_none_or(|until| now >= until)
    }

    /// A build that started at `started` ended at `ended`.
    fn built(&mut self, started: Instant, ended: Instant) {
        self.rest_until = Some(ended + (ended - started) * REST);
    }
}

/// Triggers this node's snapshots (openraft's policy is `Never`, see
/// `consensus::raft_settings`) until `stop`.
pub(crate) async fn pace_snapshots(raft: Raft, after_logs: u64, stop: CancellationToken) {
    let mut pace = Pace { after_logs, rest_until: None };
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let (applied, snapshot) = {
            let m = raft.metrics();
            let m = m.borrow();
            (m.last_applied.map_or(0, |l| l.index), m.snapshot.map_or(0, |l| l.index))
        };
        if !pace.due(applied, snapshot, Instant::now()) {
            continue;
        }
        let started = Instant::now();
        tokio::select! {
            _ = stop.cancelled() => return,
            built = raft.snapshot_applied(BUILD_WAIT) => if built.is_err() { return }, // Raft has stopped.
        }
        let ended = Instant::now();
        pace.built(started, ended);
        let index = raft.metrics().borrow().snapshot.map_or(0, |l| l.index);
        tracing::info!(
            index,
            took_ms = (ended - started).as_millis() as u64,
            next_after_s = (ended - started).as_secs_f64() * f64::from(REST),
            "snapshot built"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_is_due_after_enough_entries() {
        let now = Instant::now();
        let pace = Pace { after_logs: 100, rest_until: None };
        assert!(!pace.due(99, 0, now));
        assert!(pace.due(100, 0, now));
        assert!(!pace.due(150, 100, now), "counted from the last snapshot");
        assert!(pace.due(200, 100, now));
        assert!(!pace.due(5, 10, now), "a snapshot installed ahead of the applied index is no reason");
    }

    #[test]
    fn a_slow_build_rests_nineteen_times_as_long() {
        let t0 = Instant::now();
        let mut pace = Pace { after_logs: 10, rest_until: None };
        pace.built(t0, t0 + Duration::from_secs(2));
        let ended = t0 + Duration::from_secs(2);
        assert!(!pace.due(1_000, 0, ended), "entries alone do not make it due while resting");
        assert!(!pace.due(1_000, 0, ended + Duration::from_secs(37)));
        assert!(pace.due(1_000, 0, ended + Duration::from_secs(38)));
        assert!(!pace.due(5, 0, ended + Duration::from_secs(60)), "nor does rest alone");
    }

    #[test]
    fn a_quick_build_barely_rests() {
        let t0 = Instant::now();
        let mut pace = Pace { after_logs: 10, rest_until: None };
        pace.built(t0, t0 + Duration::from_millis(5));
        assert!(pace.due(10, 0, t0 + Duration::from_millis(5) + POLL));
    }
}
