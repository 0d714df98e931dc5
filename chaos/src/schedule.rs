//! The fault schedule: drawn from a seed, so the same seed replays the
//! same faults, in the same order, on the same kind of node.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    KillLeader,
    KillFollower,
    KillOwner,
    /// SIGSTOP, held longer than the election timeout, then SIGCONT.
    PauseNode,
    IsolateLeader,
    /// A minority of nodes cut off from the majority.
    SplitMinority,
    /// Two halves that share one node.
    Bridge,
    RollingRestart,
    TransferLeader,
    /// The disk of one node fills up.
    DiskFull,
    /// A follower is removed from the membership, wiped, and joins again.
    RemoveReadd,
}

impl FaultKind {
    pub const ALL: [FaultKind; 11] = [
        Self::KillLeader,
        Self::KillFollower,
        Self::KillOwner,
        Self::PauseNode,
        Self::IsolateLeader,
        Self::SplitMinority,
        Self::Bridge,
        Self::RollingRestart,
        Self::TransferLeader,
        Self::DiskFull,
        Self::RemoveReadd,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::KillLeader => "kill -9 leader",
            Self::KillFollower => "kill -9 follower",
            Self::KillOwner => "kill -9 agent owner",
            Self::PauseNode => "SIGSTOP node",
            Self::IsolateLeader => "isolate leader",
            Self::SplitMinority => "minority/majority split",
            Self::Bridge => "bridge partition",
            Self::RollingRestart => "rolling restart",
            Self::TransferLeader => "leadership transfer",
            Self::DiskFull => "disk full",
            Self::RemoveReadd => "remove and re-add node",
        }
    }
}

/// One fault of the schedule.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Planned {
    /// Not before this many seconds into the run.
    pub at_s: f64,
    pub kind: FaultKind,
    /// How long the fault holds before it heals.
    pub hold_s: f64,
    /// Picks among candidates (which follower, which nodes).
    pub pick: u64,
}

/// Every fault kind once (in a seeded order), then seeded random ones,
/// until `total_s` less the time left for healing and the final checks.
pub fn plan(seed: u64, total_s: f64) -> Vec<Planned> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut first = FaultKind::ALL.to_vec();
    first.shuffle(&mut rng);
    let mut out = Vec::new();
    let mut t = 5.0;
    let mut queue = first.into_iter();
    loop {
        let kind = match queue.next() {
            Some(k) => k,
            None => FaultKind::ALL[rng.gen_range(0..FaultKind::ALL.len())],
        };
        let hold_s = rng.gen_range(2.5..6.0);
        if t + hold_s > total_s - 10.0 {
            break;
        }
        out.push(Planned { at_s: t, kind, hold_s, pick: rng.gen() });
        t += hold_s + rng.gen_range(3.0..6.0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_replays_its_schedule_and_covers_every_fault_first() {
        assert_eq!(plan(7, 600.0), plan(7, 600.0));
        assert_ne!(plan(7, 600.0), plan(8, 600.0));
        let kinds: std::collections::BTreeSet<String> =
            plan(7, 180.0).iter().map(|p| p.kind.name().to_owned()).collect();
        assert_eq!(kinds.len(), FaultKind::ALL.len(), "three minutes inject every kind");
    }
}
