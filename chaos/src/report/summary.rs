//! `summary.md`: the page a person reads first after a run.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::stats::Spread;
use super::{first_write_after, RunMeta};
use crate::check::Violation;
use crate::history::{Event, Fault, FaultKind, Micros, Op, Outcome};

/// The run's `summary.md`: the verdict on the first line (`# PASS: no violations` or
/// `# FAIL: N violations`), then the run's parameters and notes (which hold the command that
/// reproduces it), a link to the `timeline.png` written beside it, operations by call and
/// outcome, latencies of the ok operations, every fault with how long the system took to
/// acknowledge a write again, recovery times by fault kind, and the violations in full.
///
/// A fault's recovery time is the one the harness recorded in it, or else, for a root-tier
/// fault, the one [`recovered_after`](super::recovered_after) finds in the history.
pub fn summary_markdown(meta: &RunMeta, events: &[Event], violations: &[Violation]) -> String {
    let ops: Vec<&Op> = events
        .iter()
        .filter_map(|e| match e {
            Event::Op(op) => Some(op),
            Event::Fault(_) => None,
        })
        .collect();
    let mut faults: Vec<&Fault> = events
        .iter()
        .filter_map(|e| match e {
            Event::Fault(fault) => Some(fault),
            Event::Op(_) => None,
        })
        .collect();
    faults.sort_by_key(|f| (f.start, f.end));

    let mut md = String::new();
    verdict(&mut md, meta, violations);
    parameters(&mut md, meta);
    md.push_str(
        "\n![Latency of every operation over the run, fault windows shaded](timeline.png)\n",
    );
    operations(&mut md, &ops);
    latencies(&mut md, &ops);
    let recoveries: Vec<Option<Micros>> = faults
        .iter()
        // Only root-tier faults are measured by the workload's writes; the harness measures
        // cluster tiers and workers otherwise, and "—" means it saw no recovery.
        .map(|f| if f.tier == "root" { f.recovered_after.or_else(|| first_write_after(f, ops.iter().copied())) } else { f.recovered_after })
        .collect();
    fault_table(&mut md, &faults, &recoveries);
    recovery_by_kind(&mut md, &faults, &recoveries);
    violation_list(&mut md, violations);
    md
}

fn verdict(md: &mut String, meta: &RunMeta, violations: &[Violation]) {
    match violations.len() {
        0 => md.push_str("# PASS: no violations\n"),
        1 => md.push_str("# FAIL: 1 violation\n"),
        n => {
            let _ = writeln!(md, "# FAIL: {n} violations");
        }
    }
    let _ = writeln!(
        md,
        "\nSeed {}, topology {}, {:.1} s, {} clients.",
        meta.seed,
        inline(&meta.topology),
        meta.duration_s,
        meta.clients
    );
}

fn parameters(md: &mut String, meta: &RunMeta) {
    md.push_str("\n## Run\n\n| parameter | value |\n|---|---|\n");
    let nemeses =
        if meta.nemeses.is_empty() { "none".to_string() } else { meta.nemeses.join(", ") };
    let rows = [
        ("seed", meta.seed.to_string()),
        ("topology", meta.topology.clone()),
        ("duration", format!("{:.1} s", meta.duration_s)),
        ("clients", meta.clients.to_string()),
        ("nemeses", nemeses),
        ("started at", meta.started_at.clone()),
    ];
    for (name, value) in rows {
        let _ = writeln!(md, "| {name} | {} |", cell(&value));
    }
    if !meta.notes.is_empty() {
        md.push_str("\nNotes:\n\n");
        for note in &meta.notes {
            let _ = writeln!(md, "- {}", note.replace('\n', "\n  "));
        }
    }
}

fn operations(md: &mut String, ops: &[&Op]) {
    md.push_str("\n## Operations\n\n");
    if ops.is_empty() {
        md.push_str("No operations were recorded.\n");
        return;
    }
    // [ok, failed, unknown] per call name.
    let mut counts: BTreeMap<&str, [usize; 3]> = BTreeMap::new();
    for op in ops {
        counts.entry(op.call.name()).or_default()[outcome_index(&op.outcome)] += 1;
    }
    md.push_str("| call | ok | failed | unknown | total |\n|---|---:|---:|---:|---:|\n");
    let mut totals = [0usize; 3];
    for (name, c) in &counts {
        let _ = writeln!(
            md,
            "| {name} | {} | {} | {} | {} |",
            c[0],
            c[1],
            c[2],
            c.iter().sum::<usize>()
        );
        for (total, n) in totals.iter_mut().zip(c) {
            *total += n;
        }
    }
    let _ = writeln!(
        md,
        "| **total** | **{}** | **{}** | **{}** | **{}** |",
        totals[0],
        totals[1],
        totals[2],
        totals.iter().sum::<usize>()
    );
}

fn outcome_index(outcome: &Outcome) -> usize {
    match outcome {
        Outcome::Ok => 0,
        Outcome::Failed => 1,
        Outcome::Unknown => 2,
    }
}

fn latencies(md: &mut String, ops: &[&Op]) {
    let mut by_call: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for op in ops {
        let entry = by_call.entry(op.call.name()).or_default();
        if op.outcome == Outcome::Ok {
            entry.push(op.complete.saturating_sub(op.invoke));
        }
    }
    if by_call.is_empty() {
        return;
    }
    md.push_str(
        "\n## Latency of ok operations\n\n\
         | call | ok | p50 ms | p99 ms | max ms |\n|---|---:|---:|---:|---:|\n",
    );
    for (name, values) in by_call {
        match Spread::of(values) {
            Some(s) => {
                let _ = writeln!(
                    md,
                    "| {name} | {} | {} | {} | {} |",
                    s.count,
                    ms(s.p50),
                    ms(s.p99),
                    ms(s.max)
                );
            }
            None => {
                let _ = writeln!(md, "| {name} | 0 | — | — | — |");
            }
        }
    }
}

fn fault_table(md: &mut String, faults: &[&Fault], recoveries: &[Option<Micros>]) {
    md.push_str("\n## Faults\n\n");
    if faults.is_empty() {
        md.push_str("No faults were injected.\n");
        return;
    }
    md.push_str(
        "Recovered after — root: from the fault until the first acknowledged write begun after \
         it; cluster tier: until the observer first saw a leader outside the fault's targets \
         that a quorum acknowledged within 300 ms; majority partitions: the same, counted from \
         the heal; worker: until every steady instance the worker ran was RUNNING on another \
         worker. \u{2014} means not observed.\n\n\
         | # | kind | tier | targets | start s | duration s | recovered after ms |\n\
         |---:|---|---|---|---:|---:|---:|\n",
    );
    for (i, (fault, recovered)) in faults.iter().zip(recoveries).enumerate() {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} |",
            i + 1,
            fault.kind.name(),
            cell(&fault.tier),
            cell(&fault.targets.join(", ")),
            secs(fault.start),
            secs(fault.end.saturating_sub(fault.start)),
            recovered.map_or_else(|| "—".to_string(), ms),
        );
    }
}

fn recovery_by_kind(md: &mut String, faults: &[&Fault], recoveries: &[Option<Micros>]) {
    if faults.is_empty() {
        return;
    }
    // kind → (faults of that kind, their recovery times when there was one)
    let mut by_kind: BTreeMap<FaultKind, (usize, Vec<u64>)> = BTreeMap::new();
    for (fault, recovered) in faults.iter().zip(recoveries) {
        let entry = by_kind.entry(fault.kind).or_default();
        entry.0 += 1;
        entry.1.extend(*recovered);
    }
    md.push_str(
        "\n## Recovery by fault kind\n\n\
         | kind | faults | recovered | p50 ms | p99 ms | max ms |\n\
         |---|---:|---:|---:|---:|---:|\n",
    );
    for (kind, (count, values)) in by_kind {
        let recovered = values.len();
        match Spread::of(values) {
            Some(s) => {
                let _ = writeln!(
                    md,
                    "| {} | {count} | {recovered} | {} | {} | {} |",
                    kind.name(),
                    ms(s.p50),
                    ms(s.p99),
                    ms(s.max)
                );
            }
            None => {
                let _ = writeln!(md, "| {} | {count} | 0 | — | — | — |", kind.name());
            }
        }
    }
}

fn violation_list(md: &mut String, violations: &[Violation]) {
    md.push_str("\n## Violations\n\n");
    if violations.is_empty() {
        md.push_str("none\n");
        return;
    }
    let total = violations.len();
    for (i, violation) in violations.iter().enumerate() {
        let text = violation.to_string();
        // A fence longer than any run of backticks in the text, so nothing can close it early.
        let fence = "`".repeat(longest_backtick_run(&text).max(2) + 1);
        let _ = writeln!(
            md,
            "### {} of {total}: {}\n\n{fence}text\n{text}\n{fence}\n",
            i + 1,
            cell(&violation.checker)
        );
    }
}

fn longest_backtick_run(text: &str) -> usize {
    text.split(|c| c != '`').map(str::len).max().unwrap_or(0)
}

/// Microseconds as milliseconds with one decimal.
fn ms(us: u64) -> String {
    format!("{:.1}", us as f64 / 1_000.0)
}

/// Microseconds as seconds with two decimals.
fn secs(us: u64) -> String {
    format!("{:.2}", us as f64 / 1_000_000.0)
}

/// Free text made safe for one table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// Free text as inline code, for names that may hold Markdown characters.
fn inline(text: &str) -> String {
    if text.contains('`') {
        cell(text)
    } else {
        format!("`{}`", cell(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Call;
    use crate::report::tests::{fault, op, read, write};

    fn meta() -> RunMeta {
        RunMeta {
            seed: 42,
            topology: "local-3x2".into(),
            duration_s: 120.0,
            nemeses: vec!["kill-leader".into(), "pause".into()],
            clients: 8,
            started_at: "2026-11-28T09:00:00Z".into(),
            notes: vec!["Reproduce: `grove-chaos run --seed 42 --topology local-3x2`".into()],
        }
    }

    /// 100 ok writes taking 1..=100 ms, 2 refused and 1 unknown write, 3 ok reads taking 2, 4
    /// and 6 ms and one unknown read, a kill-leader the system recovered from in 250 ms, a
    /// pause it never recovered from, and a second kill-leader with a recorded recovery.
    fn history() -> Vec<Event> {
        let mut events = Vec::new();
        let mut id = 0;
        let mut next = || {
            id += 1;
            id
        };
        for i in 1..=100u64 {
            let start = i * 1_000;
            events.push(Event::Op(op(
                next(),
                write("a", &i.to_string()),
                start,
                start + i,
                Outcome::Ok,
            )));
        }
        events.push(Event::Op(op(next(), write("a", "x"), 200, 210, Outcome::Failed)));
        events.push(Event::Op(op(next(), write("a", "y"), 300, 310, Outcome::Failed)));
        events.push(Event::Op(op(next(), write("a", "z"), 400, 5_400, Outcome::Unknown)));
        for (start, latency) in [(500, 4), (600, 6), (700, 2)] {
            events.push(Event::Op(op(next(), read("a"), start, start + latency, Outcome::Ok)));
        }
        events.push(Event::Op(op(next(), read("a"), 800, 5_800, Outcome::Unknown)));
        // Write 10 is invoked at 10 000 ms and completes at 10 010 ms.
        events.push(Event::Fault(fault(FaultKind::KillLeader, 9_760, 12_000)));
        events.push(Event::Fault(fault(FaultKind::Pause, 200_000, 203_500)));
        let mut recorded = fault(FaultKind::KillLeader, 50_500, 51_000);
        recorded.recovered_after = Some(1_500_000);
        recorded.targets = vec!["root-2".into(), "root-3".into()];
        events.push(Event::Fault(recorded));
        events
    }

    #[test]
    fn a_run_without_violations_passes() {
        let md = summary_markdown(&meta(), &history(), &[]);
        assert!(md.starts_with("# PASS: no violations\n"), "{md}");
        assert!(md.contains("## Violations\n\nnone\n"), "{md}");
        assert!(md.contains("Seed 42, topology `local-3x2`, 120.0 s, 8 clients."), "{md}");
        assert!(md.contains("| nemeses | kill-leader, pause |"), "{md}");
        assert!(md.contains("](timeline.png)\n"), "{md}");
        assert!(
            md.contains("- Reproduce: `grove-chaos run --seed 42 --topology local-3x2`"),
            "{md}"
        );
    }

    #[test]
    fn operations_are_counted_by_call_and_outcome() {
        let md = summary_markdown(&meta(), &history(), &[]);
        assert!(md.contains("| read | 3 | 0 | 1 | 4 |\n"), "{md}");
        assert!(md.contains("| write | 100 | 2 | 1 | 103 |\n"), "{md}");
        assert!(md.contains("| **total** | **103** | **2** | **2** | **107** |\n"), "{md}");
    }

    #[test]
    fn latency_percentiles_are_nearest_rank_over_ok_operations() {
        let md = summary_markdown(&meta(), &history(), &[]);
        assert!(md.contains("| read | 3 | 4.0 | 6.0 | 6.0 |\n"), "{md}");
        assert!(md.contains("| write | 100 | 50.0 | 99.0 | 100.0 |\n"), "{md}");
    }

    #[test]
    fn every_fault_is_listed_in_start_order_with_its_recovery() {
        let md = summary_markdown(&meta(), &history(), &[]);
        let table = md.split("## Faults").nth(1).unwrap();
        let first = table.find("| 1 | kill-leader | root | root-1 | 9.76 | 2.24 | 250.0 |\n");
        let second =
            table.find("| 2 | kill-leader | root | root-2, root-3 | 50.50 | 0.50 | 1500.0 |\n");
        let third = table.find("| 3 | pause | root | root-1 | 200.00 | 3.50 | — |\n");
        assert!(first.is_some() && second.is_some() && third.is_some(), "{md}");
        assert!(first < second && second < third, "{md}");
    }

    #[test]
    fn recovery_is_summarised_by_fault_kind() {
        let md = summary_markdown(&meta(), &history(), &[]);
        // Sorted values 250 and 1500 ms: p50 is the first, p99 the second.
        assert!(md.contains("| kill-leader | 2 | 2 | 250.0 | 1500.0 | 1500.0 |\n"), "{md}");
        assert!(md.contains("| pause | 1 | 0 | — | — | — |\n"), "{md}");
    }

    #[test]
    fn a_run_with_violations_fails_and_shows_them_in_full() {
        let lost = op(7, write("a", "7"), 7_000, 7_007, Outcome::Ok);
        let violations = vec![
            Violation {
                checker: "durability".into(),
                message: "write a=7 was acknowledged but no replica holds it".into(),
                ops: vec![lost],
            },
            Violation {
                checker: "liveness".into(),
                message: "no write was acknowledged for 30 s after a pause healed".into(),
                ops: vec![],
            },
        ];
        let md = summary_markdown(&meta(), &history(), &violations);
        assert!(md.starts_with("# FAIL: 2 violations\n"), "{md}");
        assert!(!md.contains("\nnone\n"), "{md}");
        for violation in &violations {
            assert!(md.contains(&violation.to_string()), "{md}");
        }
        assert!(md.contains("### 1 of 2: durability\n\n```text\n[durability] write a=7"), "{md}");

        let one = summary_markdown(&meta(), &history(), &violations[1..]);
        assert!(one.starts_with("# FAIL: 1 violation\n"), "{one}");
    }

    #[test]
    fn an_empty_history_still_reads_well() {
        let md = summary_markdown(&meta(), &[], &[]);
        assert!(md.contains("No operations were recorded."), "{md}");
        assert!(md.contains("No faults were injected."), "{md}");
        assert!(!md.contains("## Latency"), "{md}");
        assert!(!md.contains("## Recovery by fault kind"), "{md}");
    }

    #[test]
    fn a_call_without_ok_operations_has_no_latency() {
        let events =
            vec![Event::Op(op(1, Call::Deploy { service: "s".into() }, 0, 10, Outcome::Failed))];
        let md = summary_markdown(&meta(), &events, &[]);
        assert!(md.contains("| deploy | 0 | — | — | — |\n"), "{md}");
    }

    #[test]
    fn table_cells_escape_pipes_and_newlines() {
        let mut f = fault(FaultKind::Pause, 0, 1_000);
        f.tier = "a|b\nc".into();
        let md = summary_markdown(&meta(), &[Event::Fault(f)], &[]);
        assert!(md.contains("| a\\|b c |"), "{md}");
    }
}
