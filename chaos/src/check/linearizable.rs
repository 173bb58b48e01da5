//! Linearizability of the register workload. Registers are independent, so a history is
//! linearizable iff each key's sub-history is (P-compositionality); each key is checked alone
//! with a Wing–Gong search memoized on (operations linearized, register state), after
//! porcupine.
//!
//! How outcomes enter the model:
//! - an ok write takes effect between its invoke and its completion;
//! - an unknown write may take effect at any time after its invoke, so its completion is taken
//!   as +∞ (sound: a write placed after everything else is never observed);
//! - a failed write never takes effect, and failed or unknown reads say nothing: all dropped;
//! - an ok read returns `op.value` (`None` = empty register).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use super::Violation;
use crate::history::{Call, Op, Outcome};

/// What [`check_registers`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterCheck {
    pub violations: Vec<Violation>,
    /// Register operations that took part: ok and unknown writes, ok reads.
    pub checked_ops: usize,
    /// Keys whose search exceeded the budget: neither passed nor failed.
    pub undecided: Vec<String>,
}

/// Checks every register's sub-history. `initial` holds the registers' values before the run
/// (keys not in it start empty); `budget` bounds the states explored per key, and a key that
/// needs more is reported in `undecided`.
pub fn check_registers(
    ops: &[Op],
    initial: &BTreeMap<String, Option<String>>,
    budget: u64,
) -> RegisterCheck {
    let mut by_key: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    for op in ops {
        if let Some(key) = op.call.register() {
            by_key.entry(key).or_default().push(op);
        }
    }
    let mut result = RegisterCheck::default();
    for (key, ops) in by_key {
        let init = initial.get(key).and_then(|v| v.as_deref());
        let history = KeyHistory::new(&ops, init);
        result.checked_ops += history.ops.len();
        match history.check(key, budget) {
            KeyVerdict::Linearizable => {}
            KeyVerdict::Undecided => result.undecided.push(key.to_string()),
            KeyVerdict::Violated(v) => result.violations.push(v),
        }
    }
    result
}

/// Interned register value; [`EMPTY`] is the empty register.
type Value = u32;
const EMPTY: Value = 0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Write(Value),
    Read(Value),
}

/// One operation of a key's sub-history as the search sees it.
#[derive(Debug, Clone, Copy)]
struct RegOp {
    invoke: u64,
    /// `u64::MAX` for an unknown write.
    complete: u64,
    step: Step,
}

/// Applies one operation to the register; `None` if a read does not match.
fn step(state: Value, step: Step) -> Option<Value> {
    match step {
        Step::Write(v) => Some(v),
        Step::Read(v) => (v == state).then_some(state),
    }
}

enum KeyVerdict {
    Linearizable,
    Undecided,
    Violated(Violation),
}

/// A key's operations that take part, with their values interned.
struct KeyHistory<'a> {
    /// The original operations, parallel to `ops`.
    source: Vec<&'a Op>,
    ops: Vec<RegOp>,
    /// Failed writes, kept only to explain a read of their value.
    failed_writes: Vec<(&'a Op, Value)>,
    initial: Value,
}

impl<'a> KeyHistory<'a> {
    fn new(all: &[&'a Op], initial: Option<&str>) -> Self {
        let mut values: HashMap<&str, Value> = HashMap::new();
        let mut intern = |v: Option<&'a str>| match v {
            None => EMPTY,
            Some(s) => {
                let next = values.len() as Value + 1;
                *values.entry(s).or_insert(next)
            }
        };
        let mut history = KeyHistory {
            source: Vec::new(),
            ops: Vec::new(),
            failed_writes: Vec::new(),
            initial: EMPTY,
        };
        for &op in all {
            let step = match (&op.call, &op.outcome) {
                (Call::Write { value, .. }, Outcome::Failed) => {
                    history
                        .failed_writes
                        .push((op, intern(Some(value.as_str()))));
                    continue;
                }
                (Call::Write { value, .. }, _) => Step::Write(intern(Some(value.as_str()))),
                (Call::Read { .. }, Outcome::Ok) => Step::Read(intern(op.value.as_deref())),
                _ => continue,
            };
            let complete = match op.outcome {
                Outcome::Unknown => u64::MAX,
                _ => op.complete.max(op.invoke),
            };
            history.source.push(op);
            history.ops.push(RegOp {
                invoke: op.invoke,
                complete,
                step,
            });
        }
        // An initial value no operation mentions gets an id no read can match.
        history.initial = match initial {
            None => EMPTY,
            Some(s) => values.get(s).copied().unwrap_or(Value::MAX),
        };
        history
    }

    fn check(&self, key: &str, budget: u64) -> KeyVerdict {
        if let Some(v) = self.unwritten_read(key) {
            return KeyVerdict::Violated(v);
        }
        // An unknown write whose value nobody read can always go last, where it is never
        // observed; and in any linearization it is followed by a write or nothing, so removing
        // it keeps the rest valid. Dropping these keeps the search small.
        let read: BTreeSet<Value> = self
            .ops
            .iter()
            .filter_map(|o| match o.step {
                Step::Read(v) => Some(v),
                _ => None,
            })
            .collect();
        let kept: Vec<usize> = (0..self.ops.len())
            .filter(|&i| {
                let o = &self.ops[i];
                !matches!(o.step, Step::Write(v) if o.complete == u64::MAX && !read.contains(&v))
            })
            .collect();
        match search(&self.subset(&kept), self.initial, budget, &mut 0) {
            Verdict::Linearizable => KeyVerdict::Linearizable,
            Verdict::Undecided => KeyVerdict::Undecided,
            Verdict::Violated { reached } => {
                // Start from what the search reached, with the writes its reads read from; if
                // that happens to pass, from everything.
                let reached: Vec<usize> = reached.into_iter().map(|i| kept[i]).collect();
                let all_writes = self.writes(&kept);
                let values: BTreeSet<Value> = reached
                    .iter()
                    .filter_map(|&i| match self.ops[i].step {
                        Step::Read(v) => Some(v),
                        _ => None,
                    })
                    .collect();
                let start: Vec<usize> = kept
                    .iter()
                    .copied()
                    .filter(|&i| {
                        reached.binary_search(&i).is_ok()
                            || matches!(self.ops[i].step, Step::Write(v) if values.contains(&v))
                    })
                    .collect();
                let cap = budget.saturating_mul(4).max(100_000);
                let mut work = 0;
                let start = if self.violated(&start, &mut work, cap) {
                    start
                } else {
                    kept
                };
                let witness = self.shrink(start, &all_writes, cap, work);
                KeyVerdict::Violated(self.violation(key, &witness))
            }
        }
    }

    /// A read of a value that no write (ok or unknown) on this key wrote and that was not the
    /// initial value: no search needed.
    fn unwritten_read(&self, key: &str) -> Option<Violation> {
        let written: BTreeSet<Value> = self
            .ops
            .iter()
            .filter_map(|o| match o.step {
                Step::Write(v) => Some(v),
                _ => None,
            })
            .collect();
        let bad: Vec<usize> = (0..self.ops.len())
            .filter(|&i| matches!(self.ops[i].step, Step::Read(v) if v != self.initial && !written.contains(&v)))
            .collect();
        let &first = bad.first()?;
        let Step::Read(value) = self.ops[first].step else {
            unreachable!()
        };
        let read = self.source[first];
        let failed: Vec<&Op> = self
            .failed_writes
            .iter()
            .filter(|(_, v)| *v == value)
            .map(|(op, _)| *op)
            .collect();
        let why = match failed.as_slice() {
            [] => "a value never written to it".to_string(),
            ops => format!(
                "a value written only by failed (never applied) write{} {}",
                if ops.len() > 1 { "s" } else { "" },
                ops.iter()
                    .map(|o| format!("op {}", o.id))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let others = if bad.len() > 1 {
            format!(" ({} reads like this)", bad.len())
        } else {
            String::new()
        };
        let mut ops: Vec<Op> = failed.into_iter().cloned().collect();
        ops.push(read.clone());
        Some(Violation {
            checker: "linearizability".into(),
            message: format!(
                "register {key:?}: read {} returned {}, {why}{others}",
                describe(read),
                show(read.value.as_deref())
            ),
            ops,
        })
    }

    fn subset(&self, idx: &[usize]) -> Vec<RegOp> {
        idx.iter().map(|&i| self.ops[i]).collect()
    }

    /// Is this sub-history shown non-linearizable within the remaining work?
    fn violated(&self, idx: &[usize], work: &mut u64, cap: u64) -> bool {
        let budget = cap.saturating_sub(*work);
        matches!(
            search(&self.subset(idx), self.initial, budget, work),
            Verdict::Violated { .. }
        )
    }

    /// Greedily drops operations (halves, quarters, …, then one at a time, until no single one
    /// can go) while what remains is still non-linearizable, until `work` reaches `cap`
    /// explored states. A read keeps every write of the value it returned (`all_writes` counts
    /// them), so the witness shows where a value came from.
    fn shrink(
        &self,
        mut keep: Vec<usize>,
        all_writes: &HashMap<Value, usize>,
        cap: u64,
        mut work: u64,
    ) -> Vec<usize> {
        let mut chunk = (keep.len() / 2).max(1);
        loop {
            let mut changed = false;
            let mut start = 0;
            while start < keep.len() {
                if work >= cap {
                    return keep;
                }
                let end = (start + chunk).min(keep.len());
                let candidate: Vec<usize> =
                    keep[..start].iter().chain(&keep[end..]).copied().collect();
                if !candidate.is_empty()
                    && self.reads_keep_their_writes(all_writes, &candidate)
                    && self.violated(&candidate, &mut work, cap)
                {
                    keep = candidate;
                    changed = true;
                } else {
                    start = end;
                }
            }
            if chunk > 1 {
                chunk /= 2;
            } else if !changed {
                return keep;
            }
        }
    }

    /// How many writes of each value `set` holds.
    fn writes(&self, set: &[usize]) -> HashMap<Value, usize> {
        let mut count: HashMap<Value, usize> = HashMap::new();
        for &i in set {
            if let Step::Write(v) = self.ops[i].step {
                *count.entry(v).or_default() += 1;
            }
        }
        count
    }

    /// Does `candidate` hold, for each of its reads, all the writes of that read's value?
    fn reads_keep_their_writes(
        &self,
        all_writes: &HashMap<Value, usize>,
        candidate: &[usize],
    ) -> bool {
        let held = self.writes(candidate);
        candidate.iter().all(|&i| match self.ops[i].step {
            Step::Read(v) => all_writes.get(&v) == held.get(&v),
            Step::Write(_) => true,
        })
    }

    fn violation(&self, key: &str, witness: &[usize]) -> Violation {
        let mut ops: Vec<&Op> = witness.iter().map(|&i| self.source[i]).collect();
        ops.sort_by_key(|o| (o.invoke, o.id));
        let read = ops
            .iter()
            .filter(|o| matches!(o.call, Call::Read { .. }))
            .max_by_key(|o| (o.invoke, o.id));
        let message = match read {
            Some(read) => format!(
                "register {key:?} is not linearizable: read {} returned {}, which no order of \
                 the {} operations shown explains",
                describe(read),
                show(read.value.as_deref()),
                ops.len()
            ),
            None => format!(
                "register {key:?} is not linearizable ({} operations shown)",
                ops.len()
            ),
        };
        Violation {
            checker: "linearizability".into(),
            message,
            ops: ops.into_iter().cloned().collect(),
        }
    }
}

fn describe(op: &Op) -> String {
    format!(
        "op {} (client {}, {}–{} µs via {})",
        op.id, op.client, op.invoke, op.complete, op.endpoint
    )
}

fn show(value: Option<&str>) -> String {
    match value {
        Some(v) => format!("{v:?}"),
        None => "nothing (empty register)".into(),
    }
}

enum Verdict {
    Linearizable,
    /// More than the budget of states explored.
    Undecided,
    /// Not linearizable; `reached` lists the operations the search ever looked at. The others
    /// were invoked after every point where it got stuck, so without them it usually still
    /// fails (not always: they may have narrowed others' intervals, see [`tighten`]; the caller
    /// checks).
    Violated {
        reached: Vec<usize>,
    },
}

const NIL: usize = usize::MAX;

/// A call or return event in the doubly linked list the search walks.
#[derive(Debug, Clone, Copy)]
struct Node {
    op: usize,
    /// For a call node, its return node; `NIL` for a return node.
    ret: usize,
    prev: usize,
    next: usize,
}

/// Unlinks a call node and its return node.
fn lift(nodes: &mut [Node], call: usize) {
    for n in [call, nodes[call].ret] {
        let Node { prev, next, .. } = nodes[n];
        nodes[prev].next = next;
        if next != NIL {
            nodes[next].prev = prev;
        }
    }
}

/// Relinks what [`lift`] unlinked, in reverse order (the nodes kept their own links).
fn unlift(nodes: &mut [Node], call: usize) {
    for n in [nodes[call].ret, call] {
        let Node { prev, next, .. } = nodes[n];
        nodes[prev].next = n;
        if next != NIL {
            nodes[next].prev = n;
        }
    }
}

/// Wing–Gong search: walk the events in time order; at a call, try to linearize that
/// operation now (if the model allows and the (linearized set, state) pair is new), else try
/// the next call; at a return whose operation is not linearized yet, undo the last choice.
///
/// One reduction on top: when a pending read sees the current state, it alone is tried. If any
/// order works from here, one starting with that read does (a read changes nothing, and no
/// pending operation has to precede it), so the other choices need no exploring.
///
/// Before searching, values nobody read are merged ([`forget_unread`]) and intervals narrowed
/// ([`tighten`]); neither changes the verdict. `budget` bounds new (set, state) pairs; `work`
/// accumulates them across calls.
fn search(ops: &[RegOp], initial: Value, budget: u64, work: &mut u64) -> Verdict {
    let (ops, initial) = forget_unread(ops, initial);
    let ops = tighten(&ops, initial);
    let n = ops.len();
    // At equal times calls come first, so touching operations count as concurrent.
    let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * n);
    for (i, o) in ops.iter().enumerate() {
        events.push((o.invoke, false, i));
        events.push((o.complete, true, i));
    }
    events.sort_unstable();

    // Node 0 is the head; event k is node k + 1.
    let mut nodes = vec![Node {
        op: NIL,
        ret: NIL,
        prev: NIL,
        next: NIL,
    }];
    let mut call_node = vec![0; n];
    // Bits of the linearized set are numbered in call order, so the set is mostly a prefix
    // and its cache key (see `compact`) stays short.
    let mut bit = vec![0; n];
    let mut calls_seen = 0;
    for (k, &(_, is_return, i)) in events.iter().enumerate() {
        let idx = k + 1;
        nodes[idx - 1].next = idx;
        nodes.push(Node {
            op: i,
            ret: NIL,
            prev: idx - 1,
            next: NIL,
        });
        if is_return {
            nodes[call_node[i]].ret = idx;
        } else {
            call_node[i] = idx;
            bit[i] = calls_seen;
            calls_seen += 1;
        }
    }

    let mut s = Search {
        ops: &ops,
        nodes,
        bit,
        linearized: vec![0; n.div_ceil(64)],
        cache: HashMap::new(),
        calls: Vec::new(),
        state: initial,
        explored: 0,
        budget,
    };
    // The furthest return the search stopped at: calls after it were never looked at.
    let mut frontier = 0;
    let violated = |frontier: usize| Verdict::Violated {
        reached: (0..n).filter(|&i| call_node[i] < frontier).collect(),
    };
    // The call to try next; `NIL` on arriving at a new configuration.
    let mut entry = NIL;
    while s.nodes[0].next != NIL {
        if entry == NIL {
            let (read, first_return) = s.matching_read();
            frontier = frontier.max(first_return);
            if let Some(read) = read {
                match s.advance(read, true, work) {
                    Advance::Done => continue,
                    Advance::OverBudget => return Verdict::Undecided,
                    // Explored before and failed, so this configuration fails too.
                    Advance::Refused => match s.backtrack() {
                        Some(next) => entry = next,
                        None => return violated(frontier),
                    },
                }
                continue;
            }
            entry = s.nodes[0].next;
        }
        if s.nodes[entry].ret != NIL {
            match s.advance(entry, false, work) {
                Advance::Done => entry = NIL,
                Advance::OverBudget => return Verdict::Undecided,
                Advance::Refused => entry = s.nodes[entry].next,
            }
        } else {
            frontier = frontier.max(entry);
            match s.backtrack() {
                Some(next) => entry = next,
                None => return violated(frontier),
            }
        }
    }
    Verdict::Linearizable
}

/// The state of one [`search`].
struct Search<'a> {
    ops: &'a [RegOp],
    nodes: Vec<Node>,
    /// Op → its bit in `linearized`.
    bit: Vec<usize>,
    linearized: Vec<u64>,
    /// compact(linearized set) → the register states seen with it.
    cache: HashMap<Vec<u64>, Vec<Value>>,
    /// The choices made: call node, the state before it, and whether it was a read tried
    /// alone (undoing it undoes the choice before it too).
    calls: Vec<(usize, Value, bool)>,
    state: Value,
    explored: u64,
    budget: u64,
}

enum Advance {
    Done,
    /// The model refuses it, or the resulting configuration was explored already.
    Refused,
    OverBudget,
}

impl Search<'_> {
    /// The first pending read that sees the current state, and the first return node (pending
    /// calls are the ones before it).
    fn matching_read(&self) -> (Option<usize>, usize) {
        let mut read = None;
        let mut e = self.nodes[0].next;
        while self.nodes[e].ret != NIL {
            if read.is_none() && self.ops[self.nodes[e].op].step == Step::Read(self.state) {
                read = Some(e);
            }
            e = self.nodes[e].next;
        }
        (read, e)
    }

    /// Linearizes the operation of `call` next, if allowed and new.
    fn advance(&mut self, call: usize, alone: bool, work: &mut u64) -> Advance {
        let op = self.nodes[call].op;
        let Some(next) = step(self.state, self.ops[op].step) else {
            return Advance::Refused;
        };
        let b = self.bit[op];
        self.linearized[b / 64] |= 1 << (b % 64);
        let key = compact(&self.linearized);
        if self.cache.get(&key).is_some_and(|s| s.contains(&next)) {
            self.linearized[b / 64] &= !(1 << (b % 64));
            return Advance::Refused;
        }
        self.explored += 1;
        *work += 1;
        if self.explored > self.budget {
            return Advance::OverBudget;
        }
        self.cache.entry(key).or_default().push(next);
        self.calls.push((call, self.state, alone));
        self.state = next;
        lift(&mut self.nodes, call);
        Advance::Done
    }

    /// Undoes choices up to and including the last one that had alternatives; returns the call
    /// to try after it, or `None` when nothing is left to try.
    fn backtrack(&mut self) -> Option<usize> {
        while let Some((call, before, alone)) = self.calls.pop() {
            let b = self.bit[self.nodes[call].op];
            self.state = before;
            self.linearized[b / 64] &= !(1 << (b % 64));
            unlift(&mut self.nodes, call);
            if !alone {
                return Some(self.nodes[call].next);
            }
        }
        None
    }
}

/// A value no read returns: the values of writes nobody read all become this one, since the
/// search cannot tell them apart (every read fails after any of them).
const UNREAD: Value = Value::MAX - 1;

/// Merges the values nobody read into [`UNREAD`], so that orders of unread writes that differ
/// only in which of them came last share one state.
fn forget_unread(ops: &[RegOp], initial: Value) -> (Vec<RegOp>, Value) {
    let read: BTreeSet<Value> = ops
        .iter()
        .filter_map(|o| match o.step {
            Step::Read(v) => Some(v),
            Step::Write(_) => None,
        })
        .collect();
    let forget = |v: Value| if read.contains(&v) { v } else { UNREAD };
    let ops = ops
        .iter()
        .map(|o| match o.step {
            Step::Write(v) => RegOp {
                step: Step::Write(forget(v)),
                ..*o
            },
            Step::Read(_) => *o,
        })
        .collect();
    (ops, forget(initial))
}

/// Narrows intervals without changing the verdict, for a value (not the initial one) that
/// exactly one write writes: that write must take effect before any read of the value ends,
/// and no read of it can take effect before the write began. This bounds an unknown write's
/// open interval by the reads of its value.
fn tighten(ops: &[RegOp], initial: Value) -> Vec<RegOp> {
    // value → (writes of it, invoke of the last one seen, first end of a read of it)
    let mut by_value: HashMap<Value, (usize, u64, u64)> = HashMap::new();
    for o in ops {
        match o.step {
            Step::Write(v) => {
                let e = by_value.entry(v).or_insert((0, 0, u64::MAX));
                e.0 += 1;
                e.1 = o.invoke;
            }
            Step::Read(v) => {
                let e = by_value.entry(v).or_insert((0, 0, u64::MAX));
                e.2 = e.2.min(o.complete);
            }
        }
    }
    let mut ops = ops.to_vec();
    for o in &mut ops {
        let (Step::Write(v) | Step::Read(v)) = o.step;
        let Some(&(1, write_invoke, first_read_end)) = by_value.get(&v) else {
            continue;
        };
        if v == initial {
            continue;
        }
        match o.step {
            Step::Write(_) => o.complete = o.complete.min(first_read_end).max(o.invoke),
            Step::Read(_) => o.invoke = o.invoke.max(write_invoke).min(o.complete),
        }
    }
    ops
}

/// A bitset as a cache key: the number of leading all-ones words, then the words up to the
/// last non-zero one. Same set, same key; and far smaller than the whole set.
fn compact(bits: &[u64]) -> Vec<u64> {
    let full = bits.iter().take_while(|&&w| w == u64::MAX).count();
    let end = bits
        .iter()
        .rposition(|&w| w != 0)
        .map_or(full, |last| (last + 1).max(full));
    let mut key = Vec::with_capacity(end - full + 1);
    key.push(full as u64);
    key.extend_from_slice(&bits[full..end]);
    key
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    const BUDGET: u64 = 1_000_000;

    fn op(
        id: u64,
        client: u32,
        call: Call,
        invoke: u64,
        complete: u64,
        outcome: Outcome,
        value: Option<&str>,
    ) -> Op {
        Op {
            id,
            client,
            endpoint: format!("http://root-{}", client % 3 + 1),
            call,
            invoke,
            complete,
            outcome,
            value: value.map(String::from),
            error: None,
        }
    }

    fn write(id: u64, key: &str, value: &str, invoke: u64, complete: u64, outcome: Outcome) -> Op {
        let call = Call::Write {
            key: key.into(),
            value: value.into(),
        };
        op(id, id as u32 % 8, call, invoke, complete, outcome, None)
    }

    fn read(id: u64, key: &str, value: Option<&str>, invoke: u64, complete: u64) -> Op {
        op(
            id,
            id as u32 % 8,
            Call::Read { key: key.into() },
            invoke,
            complete,
            Outcome::Ok,
            value,
        )
    }

    fn check(ops: &[Op]) -> RegisterCheck {
        check_registers(ops, &BTreeMap::new(), BUDGET)
    }

    fn ids(v: &Violation) -> BTreeSet<u64> {
        v.ops.iter().map(|o| o.id).collect()
    }

    fn assert_passes(ops: &[Op]) {
        let r = check(ops);
        assert!(
            r.violations.is_empty(),
            "unexpected violations: {:#?}",
            r.violations
        );
        assert!(r.undecided.is_empty(), "undecided: {:?}", r.undecided);
    }

    #[test]
    fn compact_keys_identify_sets() {
        const ONES: u64 = u64::MAX;
        assert_eq!(compact(&[ONES, ONES, 5, 0, 0]), vec![2, 5]);
        assert_eq!(compact(&[0, 0]), vec![0]);
        assert_eq!(compact(&[ONES, ONES]), vec![2]);
        assert_eq!(compact(&[ONES, 0, 1]), vec![1, 0, 1]);
        assert_ne!(compact(&[ONES, 1, 0]), compact(&[ONES, 0, 1]));
        assert_ne!(compact(&[1, 0]), compact(&[0, 1]));
    }

    fn reg(invoke: u64, complete: u64, step: Step) -> RegOp {
        RegOp {
            invoke,
            complete,
            step,
        }
    }

    #[test]
    fn tighten_bounds_writes_by_their_reads() {
        let ops = [
            reg(0, u64::MAX, Step::Write(1)), // unknown, read at 30..40 and 50..60
            reg(30, 40, Step::Read(1)),
            reg(50, 60, Step::Read(1)),
            reg(5, 100, Step::Write(2)), // ok, read by a read that began before it
            reg(0, 20, Step::Read(2)),
            reg(0, 10, Step::Write(3)), // written twice: left alone
            reg(20, 30, Step::Write(3)),
            reg(15, 18, Step::Read(3)),
            reg(70, 80, Step::Read(EMPTY)),
        ];
        let t = tighten(&ops, EMPTY);
        let spans: Vec<(u64, u64)> = t.iter().map(|o| (o.invoke, o.complete)).collect();
        assert_eq!(
            spans,
            vec![
                (0, 40),
                (30, 40),
                (50, 60),
                (5, 20),
                (5, 20),
                (0, 10),
                (20, 30),
                (15, 18),
                (70, 80)
            ]
        );
        // A value that is also the initial one may be read without its write.
        let t = tighten(&ops, 2);
        assert_eq!((t[3].invoke, t[3].complete), (5, 100));
        assert_eq!((t[4].invoke, t[4].complete), (0, 20));
    }

    #[test]
    fn sequential_history_passes() {
        let ops = vec![
            read(1, "k", None, 0, 5),
            write(2, "k", "a", 10, 15, Outcome::Ok),
            read(3, "k", Some("a"), 20, 25),
            write(4, "k", "b", 30, 35, Outcome::Ok),
            read(5, "k", Some("b"), 40, 45),
            read(6, "k", Some("b"), 50, 55),
        ];
        let r = check(&ops);
        assert!(r.violations.is_empty() && r.undecided.is_empty());
        assert_eq!(r.checked_ops, 6);
    }

    #[test]
    fn empty_history_passes() {
        let r = check(&[]);
        assert_eq!(r, RegisterCheck::default());
    }

    #[test]
    fn concurrent_writes_and_reads_pass_in_a_valid_order() {
        // Two overlapping writes; reads during the overlap may see either, and a later pair of
        // reads both see b (so b was linearized after a).
        for (r3, r4, r5) in [("a", "b", "b"), ("b", "a", "a"), ("a", "a", "a")] {
            let ops = vec![
                write(1, "k", "a", 0, 100, Outcome::Ok),
                write(2, "k", "b", 10, 90, Outcome::Ok),
                read(3, "k", Some(r3), 20, 30),
                read(4, "k", Some(r4), 40, 50),
                read(5, "k", Some(r5), 110, 120),
            ];
            assert_passes(&ops);
        }
        // But once b was seen after a, a cannot come back.
        let ops = vec![
            write(1, "k", "a", 0, 100, Outcome::Ok),
            write(2, "k", "b", 10, 90, Outcome::Ok),
            read(3, "k", Some("a"), 20, 30),
            read(4, "k", Some("b"), 40, 50),
            read(5, "k", Some("a"), 110, 120),
        ];
        let r = check(&ops);
        assert_eq!(r.violations.len(), 1);
        assert_eq!(
            ids(&r.violations[0]),
            BTreeSet::from([1, 2, 3, 4, 5]),
            "{}",
            r.violations[0]
        );
    }

    #[test]
    fn read_concurrent_with_a_write_may_see_old_or_new() {
        for seen in [None, Some("a")] {
            let ops = vec![
                write(1, "k", "a", 0, 100, Outcome::Ok),
                read(2, "k", seen, 10, 20),
            ];
            assert_passes(&ops);
        }
    }

    #[test]
    fn touching_intervals_count_as_concurrent() {
        // The read ends at the very µs the write begins: either order is allowed.
        let ops = vec![
            read(1, "k", Some("a"), 0, 10),
            write(2, "k", "a", 10, 20, Outcome::Ok),
        ];
        assert_passes(&ops);
    }

    #[test]
    fn reads_cannot_go_back_in_time() {
        // Overlapping the write, read 2 saw a, then a later read 3 saw the old empty value.
        let ops = vec![
            write(1, "k", "a", 0, 100, Outcome::Ok),
            read(2, "k", Some("a"), 10, 20),
            read(3, "k", None, 30, 40),
        ];
        let r = check(&ops);
        assert_eq!(r.violations.len(), 1);
        assert_eq!(ids(&r.violations[0]), BTreeSet::from([1, 2, 3]));
    }

    #[test]
    fn stale_read_after_acknowledged_write_fails_with_a_small_witness() {
        let ops = vec![
            write(1, "k", "a", 0, 10, Outcome::Ok),
            read(2, "k", Some("a"), 12, 15),
            write(3, "k", "b", 20, 30, Outcome::Ok),
            read(4, "k", Some("b"), 22, 35),
            write(10, "other", "x", 20, 30, Outcome::Ok),
            read(5, "k", Some("a"), 40, 50), // stale: b was acknowledged at 30
            read(6, "k", Some("b"), 60, 70),
            write(7, "k", "c", 80, 90, Outcome::Ok),
            read(8, "k", Some("c"), 95, 99),
        ];
        let r = check(&ops);
        assert!(r.undecided.is_empty());
        assert_eq!(r.violations.len(), 1, "{:#?}", r.violations);
        let v = &r.violations[0];
        assert_eq!(v.checker, "linearizability");
        assert_eq!(ids(v), BTreeSet::from([1, 3, 5]), "{v}");
        assert!(v.message.contains("\"k\""), "{}", v.message);
        assert!(v.message.contains("op 5"), "{}", v.message);
    }

    #[test]
    fn read_of_empty_after_acknowledged_write_fails() {
        let ops = vec![
            write(1, "k", "a", 0, 10, Outcome::Ok),
            read(2, "k", None, 20, 30),
            read(3, "k", Some("a"), 40, 50),
        ];
        let r = check(&ops);
        assert_eq!(r.violations.len(), 1);
        assert_eq!(ids(&r.violations[0]), BTreeSet::from([1, 2]));
        assert!(r.violations[0].message.contains("empty register"));
    }

    #[test]
    fn unknown_write_whose_value_is_read_later_passes() {
        // The client timed out at 50, the write was applied later still.
        let ops = vec![
            write(1, "k", "a", 0, 10, Outcome::Ok),
            write(2, "k", "b", 20, 50, Outcome::Unknown),
            read(3, "k", Some("a"), 60, 70),
            read(4, "k", Some("b"), 200, 210),
            read(5, "k", Some("b"), 300, 310),
        ];
        assert_passes(&ops);
    }

    #[test]
    fn unknown_write_never_read_passes() {
        let ops = vec![
            write(1, "k", "a", 0, 10, Outcome::Ok),
            write(2, "k", "b", 20, 50, Outcome::Unknown),
            read(3, "k", Some("a"), 60, 70),
            read(4, "k", Some("a"), 200, 210),
        ];
        assert_passes(&ops);
    }

    #[test]
    fn unknown_write_cannot_take_effect_before_its_invoke() {
        let ops = vec![
            read(1, "k", Some("b"), 0, 10),
            write(2, "k", "b", 20, 50, Outcome::Unknown),
        ];
        let r = check(&ops);
        assert_eq!(r.violations.len(), 1);
        assert_eq!(ids(&r.violations[0]), BTreeSet::from([1, 2]));
    }

    #[test]
    fn unknown_write_read_then_overwritten_value_cannot_return() {
        // b (unknown) is seen at 60, c is acknowledged at 90, b again at 100: impossible. Read 2
        // belongs to the witness: without it b could have taken effect after c.
        let ops = vec![
            write(1, "k", "b", 0, 50, Outcome::Unknown),
            read(2, "k", Some("b"), 60, 70),
            write(3, "k", "c", 80, 90, Outcome::Ok),
            read(4, "k", Some("b"), 100, 110),
            read(5, "k", Some("b"), 120, 130),
        ];
        let r = check(&ops);
        assert_eq!(r.violations.len(), 1);
        assert_eq!(
            ids(&r.violations[0]),
            BTreeSet::from([1, 2, 3, 4]),
            "{}",
            r.violations[0]
        );
        assert_passes(&[
            ops[0].clone(),
            ops[2].clone(),
            ops[3].clone(),
            ops[4].clone(),
        ]);
    }

    #[test]
    fn failed_write_whose_value_is_read_fails() {
        let ops = vec![
            write(1, "k", "a", 0, 10, Outcome::Ok),
            write(2, "k", "b", 20, 30, Outcome::Failed),
            read(3, "k", Some("b"), 40, 50),
        ];
        let r = check(&ops);
        assert_eq!(r.violations.len(), 1);
        let v = &r.violations[0];
        assert_eq!(ids(v), BTreeSet::from([2, 3]));
        assert!(v.message.contains("failed"), "{}", v.message);
        assert!(v.message.contains("op 3"), "{}", v.message);
        assert_eq!(r.checked_ops, 2);
    }

    #[test]
    fn failed_and_unknown_reads_are_ignored() {
        let mut bad_read = read(2, "k", Some("zzz"), 20, 30);
        bad_read.outcome = Outcome::Failed;
        let mut unknown_read = read(3, "k", Some("yyy"), 20, 30);
        unknown_read.outcome = Outcome::Unknown;
        let ops = vec![
            write(1, "k", "a", 0, 10, Outcome::Ok),
            bad_read,
            unknown_read,
        ];
        let r = check(&ops);
        assert!(r.violations.is_empty());
        assert_eq!(r.checked_ops, 1);
    }

    #[test]
    fn read_of_initial_value() {
        let initial = BTreeMap::from([("k".to_string(), Some("init".to_string()))]);
        let ops = vec![
            read(1, "k", Some("init"), 0, 10),
            write(2, "k", "a", 20, 30, Outcome::Ok),
            read(3, "k", Some("a"), 40, 50),
        ];
        let r = check_registers(&ops, &initial, BUDGET);
        assert!(r.violations.is_empty() && r.undecided.is_empty());

        // Without the initial value, the first read is unexplained.
        let r = check(&ops);
        assert_eq!(r.violations.len(), 1);
        assert_eq!(ids(&r.violations[0]), BTreeSet::from([1]));
        assert!(r.violations[0].message.contains("never written"));

        // And an empty read of a register that started with a value fails.
        let ops = vec![read(1, "k", None, 0, 10)];
        let r = check_registers(&ops, &initial, BUDGET);
        assert_eq!(r.violations.len(), 1);
    }

    #[test]
    fn initial_value_cannot_return_after_an_acknowledged_write() {
        let initial = BTreeMap::from([("k".to_string(), Some("init".to_string()))]);
        let ops = vec![
            write(1, "k", "a", 0, 10, Outcome::Ok),
            read(2, "k", Some("init"), 20, 30),
        ];
        let r = check_registers(&ops, &initial, BUDGET);
        assert_eq!(r.violations.len(), 1);
        assert_eq!(ids(&r.violations[0]), BTreeSet::from([1, 2]));
    }

    #[test]
    fn many_keys_are_checked_separately() {
        let mut ops = Vec::new();
        let mut id = 0;
        for k in 0..20 {
            let key = format!("app-{k}");
            let v = format!("v{k}");
            let t = k * 7;
            id += 1;
            ops.push(write(id, &key, &v, t, t + 10, Outcome::Ok));
            id += 1;
            ops.push(read(id, &key, Some(&v), t + 20, t + 30));
        }
        // Reads of another key's value: app-3 reads v4, which was never written to app-3.
        id += 1;
        ops.push(read(id, "app-3", Some("v4"), 500, 510));
        // app-7 goes back to empty.
        id += 1;
        ops.push(read(id, "app-7", None, 600, 610));
        let r = check(&ops);
        assert!(r.undecided.is_empty());
        assert_eq!(r.checked_ops, 42);
        let keys: Vec<bool> = r
            .violations
            .iter()
            .map(|v| v.message.contains("\"app-3\""))
            .collect();
        assert_eq!(keys, vec![true, false]);
        assert!(r.violations[1].message.contains("\"app-7\""));
    }

    #[test]
    fn non_register_ops_are_ignored() {
        let ops = vec![
            op(
                1,
                0,
                Call::CreateApp { key: "k".into() },
                0,
                10,
                Outcome::Ok,
                None,
            ),
            op(
                2,
                0,
                Call::Deploy {
                    service: "s".into(),
                },
                20,
                30,
                Outcome::Ok,
                Some("1"),
            ),
        ];
        assert_eq!(check(&ops), RegisterCheck::default());
    }

    #[test]
    fn exceeding_the_budget_leaves_the_key_undecided() {
        // Twelve fully concurrent writes, then reads of two of them in turn, which can only be
        // refuted by trying the writes' orders.
        let mut ops: Vec<Op> = (0..12)
            .map(|i| write(i, "k", &format!("v{i}"), 0, 1000, Outcome::Ok))
            .collect();
        ops.push(read(100, "k", Some("v0"), 2000, 2010));
        ops.push(read(101, "k", Some("v1"), 3000, 3010));
        let r = check_registers(&ops, &BTreeMap::new(), 5);
        assert_eq!(r.undecided, vec!["k".to_string()]);
        assert!(r.violations.is_empty());
        // With enough budget it is decided (and not linearizable: v0 then v1 after all ended).
        let r = check(&ops);
        assert!(r.undecided.is_empty());
        assert_eq!(r.violations.len(), 1);
        assert_eq!(
            ids(&r.violations[0]),
            BTreeSet::from([0, 1, 100, 101]),
            "{}",
            r.violations[0]
        );
    }

    /// A small deterministic generator (splitmix64), so failures reproduce from the seed.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// A history of `count` operations by `clients` sequential clients over `keys` registers,
    /// produced by a real register: each operation takes effect at a random instant of its
    /// interval (an unknown write: possibly later, or never; a failed write: never).
    fn generate(rng: &mut Rng, count: usize, clients: u32, keys: u64) -> Vec<Op> {
        struct Planned {
            op: Op,
            /// When it takes effect, if it does.
            at: Option<u64>,
        }
        let mut clock = vec![0u64; clients as usize];
        let mut planned = Vec::new();
        for id in 0..count as u64 {
            let client = rng.below(clients as u64) as u32;
            let invoke = clock[client as usize] + rng.below(20);
            let complete = invoke + 1 + rng.below(100);
            clock[client as usize] = complete;
            let key = format!("k{}", rng.below(keys));
            let at = invoke + rng.below(complete - invoke + 1);
            let (call, outcome, at) = if rng.below(2) == 0 {
                let call = Call::Write {
                    key,
                    value: format!("v{id}"),
                };
                match rng.below(10) {
                    0 => (call, Outcome::Failed, None),
                    1 => (call, Outcome::Unknown, None),
                    2 => (call, Outcome::Unknown, Some(at + rng.below(300))),
                    3 => (call, Outcome::Unknown, Some(at)),
                    _ => (call, Outcome::Ok, Some(at)),
                }
            } else {
                match rng.below(12) {
                    0 => (Call::Read { key }, Outcome::Failed, None),
                    1 => (Call::Read { key }, Outcome::Unknown, None),
                    _ => (Call::Read { key }, Outcome::Ok, Some(at)),
                }
            };
            let op = Op {
                id,
                client,
                endpoint: "lb".into(),
                call,
                invoke,
                complete,
                outcome,
                value: None,
                error: None,
            };
            planned.push(Planned { op, at });
        }
        let mut order: Vec<usize> = (0..planned.len())
            .filter(|&i| planned[i].at.is_some())
            .collect();
        order.sort_by_key(|&i| (planned[i].at, i));
        let mut registers: BTreeMap<String, String> = BTreeMap::new();
        for i in order {
            let p = &mut planned[i];
            match &p.op.call {
                Call::Write { key, value } => {
                    registers.insert(key.clone(), value.clone());
                }
                Call::Read { key } => p.op.value = registers.get(key).cloned(),
                _ => unreachable!(),
            }
        }
        planned.into_iter().map(|p| p.op).collect()
    }

    /// Turns an ok read into a stale one: it returns the value of an ok write w1 that was
    /// followed (strictly, in real time) by another ok write w2 on the same key, both ending
    /// before the read began. Values are unique, so no linearization explains it.
    fn make_stale(ops: &mut [Op]) -> Option<u64> {
        let (rid, value) = stale_candidate(ops)?;
        ops.iter_mut().find(|o| o.id == rid).unwrap().value = Some(value);
        Some(rid)
    }

    fn stale_candidate(ops: &[Op]) -> Option<(u64, String)> {
        let ok_writes: Vec<&Op> = ops
            .iter()
            .filter(|o| matches!(o.call, Call::Write { .. }) && o.outcome == Outcome::Ok)
            .collect();
        for r in ops
            .iter()
            .filter(|o| matches!(o.call, Call::Read { .. }) && o.outcome == Outcome::Ok)
        {
            for w1 in &ok_writes {
                for w2 in &ok_writes {
                    if w1.call.register() == r.call.register()
                        && w2.call.register() == r.call.register()
                        && w1.complete < w2.invoke
                        && w2.complete < r.invoke
                    {
                        let Call::Write { value, .. } = &w1.call else {
                            unreachable!()
                        };
                        return Some((r.id, value.clone()));
                    }
                }
            }
        }
        None
    }

    #[test]
    fn randomized_histories_from_a_real_register_pass_and_mutations_fail() {
        let mut stale_cases = 0;
        for seed in 0..300 {
            let mut rng = Rng(seed);
            let (count, clients, keys) = (
                10 + rng.below(50) as usize,
                1 + rng.below(5) as u32,
                1 + rng.below(3),
            );
            let ops = generate(&mut rng, count, clients, keys);
            let r = check(&ops);
            assert!(r.violations.is_empty(), "seed {seed}: {:#?}", r.violations);
            assert!(r.undecided.is_empty(), "seed {seed}");

            // A read returning a value never written fails, both via the quick check and via
            // the search itself.
            let reads: Vec<usize> = (0..ops.len())
                .filter(|&i| {
                    matches!(ops[i].call, Call::Read { .. }) && ops[i].outcome == Outcome::Ok
                })
                .collect();
            if !reads.is_empty() {
                let mut bad = ops.clone();
                let i = reads[rng.below(reads.len() as u64) as usize];
                bad[i].value = Some("never-written".into());
                let r = check(&bad);
                assert_eq!(r.violations.len(), 1, "seed {seed}");
                assert!(
                    r.violations[0].ops.iter().any(|o| o.id == bad[i].id),
                    "seed {seed}"
                );

                let key = bad[i].call.register().unwrap().to_string();
                let mine: Vec<&Op> = bad
                    .iter()
                    .filter(|o| o.call.register() == Some(key.as_str()))
                    .collect();
                let h = KeyHistory::new(&mine, None);
                let all: Vec<usize> = (0..h.ops.len()).collect();
                let mut work = 0;
                let verdict = search(&h.subset(&all), h.initial, BUDGET, &mut work);
                assert!(matches!(verdict, Verdict::Violated { .. }), "seed {seed}");
            }

            let mut stale = ops.clone();
            if let Some(rid) = make_stale(&mut stale) {
                stale_cases += 1;
                let r = check(&stale);
                assert_eq!(r.violations.len(), 1, "seed {seed}");
                let v = &r.violations[0];
                assert!(v.ops.iter().any(|o| o.id == rid), "seed {seed}: {v}");
                // The witness is itself non-linearizable, and small.
                let again = check(&v.ops);
                assert_eq!(
                    again.violations.len(),
                    1,
                    "seed {seed}: witness passes: {v}"
                );
                assert!(v.ops.len() <= 6, "seed {seed}: witness not shrunk: {v}");
            }
        }
        assert!(stale_cases > 50, "only {stale_cases} stale mutations");
    }

    #[test]
    fn two_thousand_ops_over_four_keys_with_eight_clients() {
        let mut rng = Rng(42);
        let ops = generate(&mut rng, 2000, 8, 4);
        let r = check(&ops);
        assert!(r.undecided.is_empty(), "undecided: {:?}", r.undecided);
        assert!(r.violations.is_empty(), "{:#?}", r.violations);
        assert!(r.checked_ops > 1000);

        let mut stale = ops.clone();
        let rid = make_stale(&mut stale).expect("a stale read can be planted");
        let r = check(&stale);
        assert!(r.undecided.is_empty());
        assert_eq!(r.violations.len(), 1);
        assert!(r.violations[0].ops.iter().any(|o| o.id == rid));
        assert!(r.violations[0].ops.len() <= 6, "{}", r.violations[0]);
    }

    /// Tries every order that respects real time (remembering configurations that failed): the
    /// reference for small histories.
    fn brute_force(
        ops: &[RegOp],
        done: u32,
        state: Value,
        failed: &mut HashSet<(u32, Value)>,
    ) -> bool {
        if done.count_ones() as usize == ops.len() {
            return true;
        }
        if failed.contains(&(done, state)) {
            return false;
        }
        let pending = |j: usize| done & (1 << j) == 0;
        for i in (0..ops.len()).filter(|&i| pending(i)) {
            if (0..ops.len()).any(|j| pending(j) && ops[j].complete < ops[i].invoke) {
                continue;
            }
            if let Some(next) = step(state, ops[i].step) {
                if brute_force(ops, done | (1 << i), next, failed) {
                    return true;
                }
            }
        }
        failed.insert((done, state));
        false
    }

    #[test]
    fn search_agrees_with_brute_force_on_small_histories() {
        let values = [None, Some("a"), Some("b"), Some("c")];
        let (mut passed, mut failed) = (0, 0);
        for seed in 0..20_000 {
            let mut rng = Rng(1_000_000 + seed);
            let count = 1 + rng.below(if seed % 4 == 0 { 16 } else { 8 });
            let ops: Vec<Op> = (0..count)
                .map(|id| {
                    let invoke = rng.below(20);
                    let complete = invoke + rng.below(10);
                    let outcome = [Outcome::Ok, Outcome::Ok, Outcome::Unknown, Outcome::Failed]
                        [rng.below(4) as usize]
                        .clone();
                    if rng.below(2) == 0 {
                        let value = values[1 + rng.below(3) as usize].unwrap();
                        write(id, "k", value, invoke, complete, outcome)
                    } else {
                        let mut r = read(id, "k", values[rng.below(4) as usize], invoke, complete);
                        r.outcome = outcome;
                        r
                    }
                })
                .collect();
            let initial = values[rng.below(2) as usize];
            let mine: Vec<&Op> = ops.iter().collect();
            let h = KeyHistory::new(&mine, initial);
            let expected = brute_force(&h.ops, 0, h.initial, &mut HashSet::new());

            let all: Vec<usize> = (0..h.ops.len()).collect();
            let verdict = search(&h.subset(&all), h.initial, BUDGET, &mut 0);
            assert_eq!(
                matches!(verdict, Verdict::Linearizable),
                expected,
                "seed {seed}: {ops:#?}"
            );

            let init = BTreeMap::from([("k".to_string(), initial.map(String::from))]);
            let r = check_registers(&ops, &init, BUDGET);
            assert_eq!(r.violations.is_empty(), expected, "seed {seed}: {ops:#?}");
            if let Some(v) = r.violations.first() {
                // The witness fails on its own.
                let again = check_registers(&v.ops, &init, BUDGET);
                assert_eq!(again.violations.len(), 1, "seed {seed}: {v}");
                failed += 1;
            } else {
                passed += 1;
            }
        }
        assert!(
            passed > 500 && failed > 500,
            "{passed} passed, {failed} failed"
        );
    }

    #[test]
    fn one_hot_key_with_sixteen_clients() {
        let mut rng = Rng(7);
        let ops = generate(&mut rng, 1000, 16, 1);
        let r = check(&ops);
        assert!(r.undecided.is_empty(), "undecided: {:?}", r.undecided);
        assert!(r.violations.is_empty(), "{:#?}", r.violations);
    }
}
