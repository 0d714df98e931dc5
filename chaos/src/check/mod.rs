//! The invariants a run is judged by. Each checker takes the history and
//! returns what it found; each has tests on hand-written histories that
//! must fail.

pub mod linear;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::history::{History, Op, Outcome};

/// One checker's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub checker: &'static str,
    /// What it checked, in numbers.
    pub checked: String,
    /// Problems found; empty when the invariant held.
    pub violations: Vec<String>,
    /// The checker could not decide everything (its budget ran out).
    pub undecided: Vec<String>,
}

pub fn all(h: &History, budget: Duration) -> Vec<Finding> {
    vec![
        linearizable_registry(h, budget),
        messages_answered_once(h),
        one_leader_per_term(h),
        replicas_agree(h),
        nothing_acknowledged_lost(h),
        publications_kept(h),
        auctions_end_once(h),
        recovers(h),
    ]
}

/// The outcome of every attempt at each id of `op`'s kind: (acknowledged,
/// possibly applied).
fn attempts(h: &History, id_of: impl Fn(&Op) -> Option<&String>) -> BTreeMap<String, (bool, bool)> {
    let mut out: BTreeMap<String, (bool, bool)> = BTreeMap::new();
    for e in &h.events {
        if let Some(id) = id_of(&e.op) {
            let entry = out.entry(id.clone()).or_default();
            match e.outcome {
                Outcome::Ok { .. } => entry.0 = true,
                Outcome::Unknown { .. } => entry.1 = true,
                Outcome::Fail { .. } => {}
            }
        }
    }
    out
}

/// No acknowledged publication is lost: its notification to the
/// subscriber exists and was processed; one that certainly failed does
/// not exist.
pub fn publications_kept(h: &History) -> Finding {
    let tried = attempts(h, |op| match op {
        Op::Publish { id } => Some(id),
        _ => None,
    });
    let finals: BTreeMap<&String, (bool, bool)> = h.publications.iter().map(|(id, e, p)| (id, (*e, *p))).collect();
    let mut violations = Vec::new();
    for (id, (acked, maybe)) in &tried {
        match (finals.get(id), acked, maybe) {
            (None, _, _) => violations.push(format!("publication `{id}` was never looked up at the end")),
            (Some((false, _)), true, _) => violations.push(format!("acknowledged publication `{id}` is lost")),
            (Some((true, false)), _, _) => {
                violations.push(format!("publication `{id}` was never processed by its subscriber"))
            }
            (Some((true, _)), false, false) => {
                violations.push(format!("publication `{id}` exists although every attempt certainly failed"))
            }
            _ => {}
        }
    }
    Finding {
        checker: "no acknowledged publication lost",
        checked: format!("{} publications ({} acknowledged)", tried.len(), tried.values().filter(|t| t.0).count()),
        violations,
        undecided: vec![],
    }
}

/// Every acknowledged auction ended, with exactly one result told to each
/// of its bidders.
pub fn auctions_end_once(h: &History) -> Finding {
    let tried = attempts(h, |op| match op {
        Op::Auction { id } => Some(id),
        _ => None,
    });
    let finals: BTreeMap<&String, (bool, &String, u64)> =
        h.auctions.iter().map(|(id, e, s, n)| (id, (*e, s, *n))).collect();
    let bidders = crate::workload::ECHO_AGENTS as u64;
    let mut violations = Vec::new();
    for (id, (acked, maybe)) in &tried {
        match finals.get(id) {
            None => violations.push(format!("auction `{id}` was never looked up at the end")),
            Some((false, _, _)) if *acked => violations.push(format!("acknowledged auction `{id}` is lost")),
            Some((true, _, _)) if !acked && !maybe => {
                violations.push(format!("auction `{id}` exists although every attempt certainly failed"))
            }
            Some((true, state, _)) if state.as_str() == "open" => {
                violations.push(format!("auction `{id}` never ended"))
            }
            Some((true, _, n)) if *n != bidders => {
                violations.push(format!("auction `{id}` told its result {n} times to {bidders} bidders"))
            }
            _ => {}
        }
    }
    Finding {
        checker: "each auction ends with exactly one result",
        checked: format!("{} auctions ({} acknowledged)", tried.len(), tried.values().filter(|t| t.0).count()),
        violations,
        undecided: vec![],
    }
}

/// After every fault is healed, the cluster is whole again: every node
/// ready and every voter back, within a minute.
pub fn recovers(h: &History) -> Finding {
    Finding {
        checker: "cluster recovers after each fault",
        checked: format!("{} faults", h.faults.len()),
        violations: h.recovery.clone(),
        undecided: vec![],
    }
}

pub fn linearizable_registry(h: &History, budget: Duration) -> Finding {
    let results = linear::check(&h.events, budget);
    let mut f = Finding {
        checker: "linearizable registry (per key)",
        checked: format!("{} keys", results.len()),
        violations: vec![],
        undecided: vec![],
    };
    for (key, v) in results {
        match v {
            linear::Verdict::Linearizable => {}
            linear::Verdict::Violation { ops, .. } => {
                f.violations.push(format!("key `{key}`: no order of its {ops} operations explains the reads"))
            }
            linear::Verdict::Unknown { .. } => f.undecided.push(format!("key `{key}`: search budget ran out")),
        }
    }
    f
}

/// Every acknowledged message has exactly one reply; a message whose every
/// attempt certainly failed does not exist.
pub fn messages_answered_once(h: &History) -> Finding {
    let mut acked = BTreeSet::new();
    let mut maybe = BTreeSet::new();
    let mut attempted = BTreeSet::new();
    for e in &h.events {
        if let Op::Send { id, .. } = &e.op {
            attempted.insert(id.clone());
            match e.outcome {
                Outcome::Ok { .. } => {
                    acked.insert(id.clone());
                }
                Outcome::Unknown { .. } => {
                    maybe.insert(id.clone());
                }
                Outcome::Fail { .. } => {}
            }
        }
    }
    let finals: BTreeMap<&String, (bool, u64)> = h.messages.iter().map(|(id, e, r)| (id, (*e, *r))).collect();
    let mut violations = Vec::new();
    for id in &attempted {
        match (finals.get(id), acked.contains(id), maybe.contains(id)) {
            (None, _, _) => violations.push(format!("message `{id}` was sent but never looked up at the end")),
            (Some((false, _)), true, _) => violations.push(format!("acknowledged message `{id}` is missing")),
            (Some((true, n)), true, _) if *n != 1 => {
                violations.push(format!("acknowledged message `{id}` has {n} replies"))
            }
            (Some((true, _)), false, false) => {
                violations.push(format!("message `{id}` exists although every attempt certainly failed"))
            }
            (Some((true, n)), false, true) if *n > 1 => violations.push(format!("message `{id}` has {n} replies")),
            _ => {}
        }
    }
    Finding {
        checker: "messages answered exactly once",
        checked: format!(
            "{} messages ({} acknowledged, {} of unknown outcome)",
            attempted.len(),
            acked.len(),
            maybe.len()
        ),
        violations,
        undecided: vec![],
    }
}

/// At most one node leads in any term. Samples are each node's own
/// claim; openraft grants one vote per term per voter, so two claims in
/// one term mean the vote was broken.
pub fn one_leader_per_term(h: &History) -> Finding {
    let mut by_term: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
    for s in h.leaders.iter().filter(|s| s.leading) {
        by_term.entry(s.term).or_default().insert(s.node);
    }
    let violations = by_term
        .iter()
        .filter(|(_, nodes)| nodes.len() > 1)
        .map(|(term, nodes)| format!("term {term} had leaders {nodes:?}"))
        .collect();
    Finding {
        checker: "at most one leader per term",
        checked: format!("{} terms, {} samples", by_term.len(), h.leaders.len()),
        violations,
        undecided: vec![],
    }
}

/// After healing, every replica at the same index holds the same state.
pub fn replicas_agree(h: &History) -> Finding {
    let mut violations = Vec::new();
    if h.digests.is_empty() {
        violations.push("no digests were taken after the schedule healed".to_owned());
    }
    let indexes: BTreeSet<u64> = h.digests.iter().map(|d| d.1).collect();
    let digests: BTreeSet<&String> = h.digests.iter().map(|d| &d.2).collect();
    if indexes.len() > 1 {
        violations.push(format!("replicas stopped at different indexes: {:?}", h.digests));
    } else if digests.len() > 1 {
        violations.push(format!("replicas at one index hold different state: {:?}", h.digests));
    }
    Finding {
        checker: "replica digests equal after healing",
        checked: format!("{} replicas", h.digests.len()),
        violations,
        undecided: vec![],
    }
}

/// Every acknowledged registry write is a kept revision, and every
/// acknowledged memory observation is stored.
pub fn nothing_acknowledged_lost(h: &History) -> Finding {
    let revisions: BTreeMap<&String, BTreeSet<&String>> =
        h.revisions.iter().map(|(k, values)| (k, values.iter().collect())).collect();
    let memory: BTreeMap<&String, BTreeSet<&String>> =
        h.memory.iter().map(|(k, values)| (k, values.iter().collect())).collect();
    let mut violations = Vec::new();
    let mut checked = 0;
    for e in h.events.iter().filter(|e| e.is_ok()) {
        // Revisions are known by the hash of their text.
        let (kind, key, value, wanted, have) = match &e.op {
            Op::Write { key, value } => {
                ("registry write", key, value, crate::workload::register_hash(key, value), &revisions)
            }
            Op::Remember { key, value } => ("memory write", key, value, value.clone(), &memory),
            _ => continue,
        };
        checked += 1;
        if !have.get(key).is_some_and(|vs| vs.contains(&wanted)) {
            violations.push(format!("acknowledged {kind} `{key}` = `{value}` is missing after recovery"));
        }
    }
    Finding {
        checker: "no acknowledged write lost",
        checked: format!("{checked} acknowledged writes"),
        violations,
        undecided: vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{Event, LeaderSample};

    fn ev(op: Op, outcome: Outcome) -> Event {
        Event { client: 0, invoke_ms: 0, complete_ms: 1, node: 1, op, outcome }
    }
    fn send(id: &str) -> Op {
        Op::Send { id: id.into(), agent: "echo-0".into(), sync: true }
    }
    fn ok() -> Outcome {
        Outcome::Ok { value: None }
    }

    #[test]
    fn a_duplicate_reply_or_a_lost_message_is_caught() {
        let mut h = History { events: vec![ev(send("m1"), ok()), ev(send("m2"), ok())], ..Default::default() };
        h.messages = vec![("m1".into(), true, 1), ("m2".into(), true, 1)];
        assert!(messages_answered_once(&h).violations.is_empty());
        h.messages[1].2 = 2;
        assert!(messages_answered_once(&h).violations[0].contains("has 2 replies"));
        h.messages[1] = ("m2".into(), false, 0);
        assert!(messages_answered_once(&h).violations[0].contains("is missing"));
    }

    #[test]
    fn a_message_that_certainly_failed_must_not_exist() {
        let h = History {
            events: vec![ev(send("m1"), Outcome::Fail { why: "no leader".into() })],
            messages: vec![("m1".into(), true, 1)],
            ..Default::default()
        };
        assert!(messages_answered_once(&h).violations[0].contains("every attempt certainly failed"));
    }

    #[test]
    fn two_leaders_in_one_term_are_caught() {
        let sample = |node, term| LeaderSample { at_ms: 0, node, term, leading: true };
        let mut h = History { leaders: vec![sample(1, 3), sample(2, 4)], ..Default::default() };
        assert!(one_leader_per_term(&h).violations.is_empty());
        h.leaders.push(sample(3, 4));
        assert!(one_leader_per_term(&h).violations[0].contains("term 4"));
    }

    #[test]
    fn diverged_digests_are_caught() {
        let mut h = History { digests: vec![(1, 90, "aa".into()), (2, 90, "aa".into())], ..Default::default() };
        assert!(replicas_agree(&h).violations.is_empty());
        h.digests.push((3, 90, "bb".into()));
        assert!(replicas_agree(&h).violations[0].contains("different state"));
    }

    #[test]
    fn a_lost_publication_or_a_second_auction_result_is_caught() {
        let mut h = History {
            events: vec![ev(Op::Publish { id: "p1".into() }, ok()), ev(Op::Auction { id: "a1".into() }, ok())],
            publications: vec![("p1".into(), true, true)],
            auctions: vec![("a1".into(), true, "unsold".into(), 3)],
            ..Default::default()
        };
        assert!(publications_kept(&h).violations.is_empty());
        assert!(auctions_end_once(&h).violations.is_empty());
        h.publications[0] = ("p1".into(), false, false);
        assert!(publications_kept(&h).violations[0].contains("is lost"));
        h.auctions[0].3 = 6;
        assert!(auctions_end_once(&h).violations[0].contains("6 times"));
        h.auctions[0].2 = "open".into();
        assert!(auctions_end_once(&h).violations[0].contains("never ended"));
    }

    #[test]
    fn a_lost_acknowledged_write_is_caught() {
        let write = Op::Write { key: "k".into(), value: "v2".into() };
        let mut h = History { events: vec![ev(write, ok())], ..Default::default() };
        let hash = crate::workload::register_hash;
        h.revisions = vec![("k".into(), vec![hash("k", "v1")])];
        assert!(nothing_acknowledged_lost(&h).violations[0].contains("`k` = `v2` is missing"));
        h.revisions[0].1.push(hash("k", "v2"));
        assert!(nothing_acknowledged_lost(&h).violations.is_empty());
    }
}
