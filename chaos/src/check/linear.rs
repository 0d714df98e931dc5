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

fn check_key(key: &str, ops: Vec<RegOp>, deadline: Instant) -> Verdict {
    let total = ops.len();
    let mut states: HashSet<Option<String>> = HashSet::from([None]);
    for segment in segments(tighten_unknown_writes(ops)) {
        let mut next = HashSet::new();
        let mut seen = HashSet::new();
        for start in &states {
            let mut done = vec![0u64; segment.len().div_ceil(64)];
            let mut steps = 0u64;
            let finished = explore(&segment, &mut done, start.clone(), 0, &mut seen, &mut next, deadline, &mut steps);
            if !finished {
                return Verdict::Unknown { key: key.to_owned() };
            }
        }
        if next.is_empty() {
            return Verdict::Violation { key: key.to_owned(), ops: total };
        }
        states = next;
    }
    Verdict::Linearizable
}

/// A write of unknown outcome that no read ever saw can be taken not to
/// have happened (taking effect could only change what some read saw).
/// One that a read saw took effect before the first such read completed.
fn tighten_unknown_writes(ops: Vec<RegOp>) -> Vec<RegOp> {
    let mut first_seen: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
    for o in ops.iter().filter(|o| o.write.is_none()) {
        if let Some(v) = &o.read {
            let t = first_seen.entry(v.clone()).or_insert(u64::MAX);
            *t = (*t).min(o.complete);
        }
    }
    ops.into_iter()
        .filter_map(|mut o| match (&o.write, o.complete) {
            (Some(v), u64::MAX) => first_seen.get(v).map(|t| {
                o.complete = (*t).max(o.invoke);
                o
            }),
            _ => Some(o),
        })
        .collect()
}

/// Cuts the history where no operation is in flight: what happens after a
/// cut depends on what came before only through the register's value.
fn segments(mut ops: Vec<RegOp>) -> Vec<Vec<RegOp>> {
    ops.sort_by_key(|o| o.invoke);
    let mut out: Vec<Vec<RegOp>> = Vec::new();
    let mut horizon = 0;
    for o in ops {
        match out.last_mut() {
            Some(seg) if o.invoke <= horizon => seg.push(o.clone()),
            _ => out.push(vec![o.clone()]),
        }
        horizon = horizon.max(o.complete);
    }
    out
}

/// Every order of `ops` (from `value`) real time allows; the values it can
/// end in go to `finals`. False when out of time.
#[allow(clippy::too_many_arguments)]
fn explore(
    ops: &[RegOp],
    done: &mut Vec<u64>,
    value: Option<String>,
    placed: usize,
    seen: &mut HashSet<(Vec<u64>, Option<String>)>,
    finals: &mut HashSet<Option<String>>,
    deadline: Instant,
    steps: &mut u64,
) -> bool {
    if placed == ops.len() {
        finals.insert(value);
        return true;
    }
    *steps += 1;
    if steps.is_multiple_of(1024) && Instant::now() > deadline {
        return false;
    }
    if !seen.insert((done.clone(), value.clone())) {
        return true;
    }
    let is_done = |done: &[u64], i: usize| done[i / 64] & (1 << (i % 64)) != 0;
    // An operation can come next only if nothing still to place had
    // completed before it was invoked.
    let horizon = (0..ops.len()).filter(|i| !is_done(done, *i)).map(|i| ops[i].complete).min().unwrap_or(u64::MAX);
    for i in 0..ops.len() {
        if is_done(done, i) || ops[i].invoke > horizon {
            continue;
        }
        let next = match &ops[i].write {
            Some(v) => Some(v.clone()),
            None if ops[i].read == value => value.clone(),
            None => continue,
        };
        done[i / 64] |= 1 << (i % 64);
        let finished = explore(ops, done, next, placed + 1, seen, finals, deadline, steps);
        done[i / 64] &= !(1 << (i % 64));
        if !finished {
            return false;
        }
    }
    true
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
    fn the_value_carries_across_quiet_moments() {
        let h = [ev(0, 10, w("a", "1"), ok(None)), ev(5, 15, w("a", "2"), ok(None)), ev(20, 25, r("a"), ok(Some("1")))];
        assert_eq!(verdict(&h), Verdict::Linearizable, "2 then 1 explains it");
        let mut later = h.to_vec();
        later.push(ev(30, 35, r("a"), ok(Some("2"))));
        assert!(matches!(verdict(&later), Verdict::Violation { .. }), "1 was last; 2 cannot come back");
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
