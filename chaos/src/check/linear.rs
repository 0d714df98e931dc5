//! Linearizability of the registry, per key, as a register: a search in
//! the manner of Wing & Gong (and Porcupine) over the ways the operations
//! could be ordered, respecting real time, with a memo of states already
//! explored and a time budget. Failed writes are dropped (they did not
//! happen); writes of unknown outcome may take effect at any time after
//! their invocation (their completion is infinite); failed or unknown
//! reads say nothing and are dropped.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use crate::history::{Event, Op, Outcome};

#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Linearizable,
    /// No order explains the history; the operations of the key.
    Violation {
        key: String,
        ops: usize,
    },
    /// The budget ran out before an answer.
    Unknown {
        key: String,
    },
}

#[derive(Debug, Clone)]
struct RegOp {
    invoke: u64,
    complete: u64,
    /// Some(v): a write of v; None: a read.
    write: Option<String>,
    /// For a read: what it returned.
    read: Option<String>,
}

/// Checks every key; the first problem found, or `Linearizable`.
pub fn check(events: &[Event], budget: Duration) -> Vec<(String, Verdict)> {
    let mut by_key: BTreeMap<String, Vec<RegOp>> = BTreeMap::new();
    for e in events {
        let op = match (&e.op, &e.outcome) {
            (Op::Write { key, value }, Outcome::Ok { .. }) => {
                (key, RegOp { invoke: e.invoke_ms, complete: e.complete_ms, write: Some(value.clone()), read: None })
            }
            (Op::Write { key, value }, Outcome::Unknown { .. }) => {
                (key, RegOp { invoke: e.invoke_ms, complete: u64::MAX, write: Some(value.clone()), read: None })
            }
            (Op::Read { key }, Outcome::Ok { value }) => {
                (key, RegOp { invoke: e.invoke_ms, complete: e.complete_ms, write: None, read: value.clone() })
            }
            _ => continue,
        };
        by_key.entry(op.0.clone()).or_default().push(op.1);
    }
    let deadline = Instant::now() + budget;
    by_key.into_iter().map(|(key, ops)| (key.clone(), check_key(&key, ops, deadline))).collect()
}

fn check_key(key: &str, mut ops: Vec<RegOp>, deadline: Instant) -> Verdict {
    ops.sort_by_key(|o| o.invoke);
    let n = ops.len();
    let mut done = vec![false; n];
    let mut seen: HashSet<(Vec<bool>, Option<String>)> = HashSet::new();
    let mut steps = 0u64;
    match search(&ops, &mut done, None, 0, &mut seen, deadline, &mut steps) {
        Some(true) => Verdict::Linearizable,
        Some(false) => Verdict::Violation { key: key.to_owned(), ops: n },
        None => Verdict::Unknown { key: key.to_owned() },
    }
}

/// Some(true): the remaining operations can be ordered from `value`.
/// None: out of time.
fn search(
    ops: &[RegOp],
    done: &mut Vec<bool>,
    value: Option<String>,
    placed: usize,
    seen: &mut HashSet<(Vec<bool>, Option<String>)>,
    deadline: Instant,
    steps: &mut u64,
) -> Option<bool> {
    if placed == ops.len() {
        return Some(true);
    }
    *steps += 1;
    if steps.is_multiple_of(1024) && Instant::now() > deadline {
        return None;
    }
    if !seen.insert((done.clone(), value.clone())) {
        return Some(false);
    }
    // An operation can come next only if nothing still to place had
    // completed before it was invoked.
    let horizon = ops.iter().zip(done.iter()).filter(|(_, d)| !**d).map(|(o, _)| o.complete).min().unwrap_or(u64::MAX);
    for i in 0..ops.len() {
        if done[i] || ops[i].invoke > horizon {
            continue;
        }
        let next = match &ops[i].write {
            Some(v) => Some(v.clone()),
            None if ops[i].read == value => value.clone(),
            None => continue,
        };
        done[i] = true;
        let r = search(ops, done, next, placed + 1, seen, deadline, steps);
        done[i] = false;
        match r {
            Some(true) => return Some(true),
            None => return None,
            Some(false) => {}
        }
    }
    Some(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Event;

    fn ev(invoke: u64, complete: u64, op: Op, outcome: Outcome) -> Event {
        Event { client: 0, invoke_ms: invoke, complete_ms: complete, node: 1, op, outcome }
    }
    fn w(k: &str, v: &str) -> Op {
        Op::Write { key: k.into(), value: v.into() }
    }
    fn r(k: &str) -> Op {
        Op::Read { key: k.into() }
    }
    fn ok(v: Option<&str>) -> Outcome {
        Outcome::Ok { value: v.map(str::to_owned) }
    }
    fn verdict(events: &[Event]) -> Verdict {
        check(events, Duration::from_secs(5))
            .into_iter()
            .map(|(_, v)| v)
            .find(|v| *v != Verdict::Linearizable)
            .unwrap_or(Verdict::Linearizable)
    }

    #[test]
    fn concurrent_operations_may_take_either_order() {
        let h = [
            ev(0, 10, w("a", "1"), ok(None)),
            ev(5, 20, w("a", "2"), ok(None)),
            ev(6, 15, r("a"), ok(Some("2"))),
            ev(21, 25, r("a"), ok(Some("1"))),
        ];
        assert_eq!(verdict(&h), Verdict::Linearizable);
    }

    #[test]
    fn a_stale_read_after_a_newer_acknowledged_write_is_a_violation() {
        let h =
            [ev(0, 10, w("a", "1"), ok(None)), ev(11, 20, w("a", "2"), ok(None)), ev(21, 25, r("a"), ok(Some("1")))];
        assert!(matches!(verdict(&h), Verdict::Violation { .. }));
    }

    #[test]
    fn a_lost_acknowledged_write_is_a_violation() {
        let h = [ev(0, 10, w("a", "1"), ok(None)), ev(20, 25, r("a"), ok(None))];
        assert!(matches!(verdict(&h), Verdict::Violation { .. }));
    }

    #[test]
    fn a_write_of_unknown_outcome_may_take_effect_late_or_never() {
        let unknown = Outcome::Unknown { why: "timeout".into() };
        let late =
            [ev(0, 10, w("a", "1"), unknown.clone()), ev(20, 25, r("a"), ok(None)), ev(30, 35, r("a"), ok(Some("1")))];
        assert_eq!(verdict(&late), Verdict::Linearizable);
        let failed =
            [ev(0, 10, w("a", "1"), Outcome::Fail { why: "no leader".into() }), ev(20, 25, r("a"), ok(Some("1")))];
        assert!(matches!(verdict(&failed), Verdict::Violation { .. }), "a failed write did not happen");
    }

    #[test]
    fn the_budget_gives_unknown_not_a_guess() {
        // Many concurrent writes and a read that fits none: exhaustive search.
        let mut h: Vec<Event> = (0..22).map(|i| ev(0, 1000, w("a", &i.to_string()), ok(None))).collect();
        h.push(ev(0, 1000, r("a"), ok(Some("none of them"))));
        let v = check(&h, Duration::from_millis(50)).remove(0).1;
        assert!(matches!(v, Verdict::Unknown { .. } | Verdict::Violation { .. }), "{v:?}");
    }
}
