//! Whether this node's replica keeps up with its log.
//!
//! Under a steady stream of writes a follower nearly always has a batch
//! appended and not yet applied. Judged by that instant, a busy follower
//! flapped between ready and not several times a second: the leader's
//! placement moved every shard it owned away and back every second or two
//! (169 shards a move, with 32 writers on a 3-node loopback cluster), each
//! move stopping and starting thousands of agents, and a readiness probe
//! would have taken the node out of service as often. So a node counts as
//! caught up once it has applied everything its log held a moment
//! ([`WINDOW`]) ago: one that keeps pace is ready, one that stays further
//! behind than that, or is still replaying a backlog, is not.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How far behind its own log a replica may be and still keep pace.
const WINDOW: Duration = Duration::from_secs(1);

#[derive(Default)]
pub(crate) struct CatchUp {
    marks: Mutex<Marks>,
}

/// The log's last index at two past moments: `older` is at least
/// [`WINDOW`] old (once one has been taken), `newer` is the latest.
#[derive(Default)]
struct Marks {
    older: Option<Mark>,
    newer: Option<Mark>,
}

#[derive(Clone, Copy)]
struct Mark {
    at: Instant,
    log: u64,
}

impl CatchUp {
    /// Whether a replica that has applied up to `applied`, with its log
    /// ending at `log` at `now`, keeps up.
    pub(crate) fn caught_up(&self, applied: u64, log: u64, now: Instant) -> bool {
        let mut marks = self.marks.lock().unwrap_or_else(|p| p.into_inner());
        let here = Mark { at: now, log };
        if applied >= log {
            *marks = Marks { older: Some(here), newer: Some(here) };
            return true;
        }
        match marks.newer {
            Some(newer) if now.saturating_duration_since(newer.at) < WINDOW => {}
            newer => {
                marks.older = newer.or(marks.older);
                marks.newer = Some(here);
            }
        }
        marks.older.is_some_and(|older| applied >= older.log)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(start: Instant, ms: u64) -> Instant {
        start + Duration::from_millis(ms)
    }

    #[test]
    fn a_replica_a_batch_behind_its_log_keeps_pace() {
        let (c, t) = (CatchUp::default(), Instant::now());
        assert!(c.caught_up(100, 100, t), "everything applied");
        // Each look finds the newest batch appended, not yet applied, but
        // everything the log held a moment ago applied.
        for (i, ms) in (100..5_000).step_by(300).enumerate() {
            let log = 100 + 50 * (i as u64 + 1);
            assert!(c.caught_up(log - 30, log, at(t, ms)), "at {ms} ms");
        }
    }

    #[test]
    fn a_replica_falling_further_behind_stops_being_ready() {
        let (c, t) = (CatchUp::default(), Instant::now());
        assert!(c.caught_up(100, 100, t));
        assert!(c.caught_up(100, 500, at(t, 200)), "within the window of the last full apply");
        assert!(c.caught_up(150, 900, at(t, 1_300)), "the log held 100 a second ago: applied past it");
        assert!(!c.caught_up(300, 1_300, at(t, 2_400)), "the log held 500 a second ago: not applied yet");
        assert!(!c.caught_up(600, 1_700, at(t, 3_500)), "900 then, 600 applied");
        assert!(c.caught_up(1_700, 1_700, at(t, 3_600)), "caught up again");
    }

    #[test]
    fn a_replica_replaying_a_backlog_is_ready_only_once_through_it() {
        let (c, t) = (CatchUp::default(), Instant::now());
        assert!(!c.caught_up(0, 10_000, t), "nothing to compare with yet: not ready");
        assert!(!c.caught_up(4_000, 10_050, at(t, 1_100)), "10,000 then");
        assert!(!c.caught_up(10_020, 10_100, at(t, 2_200)), "10,050 a second ago");
        assert!(c.caught_up(10_080, 10_100, at(t, 2_300)), "past what the log held a moment ago");
    }
}
