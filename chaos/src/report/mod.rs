//! What a chaos run leaves behind, in one directory ([`write_report`]):
//!
//! - `summary.md`: what a person reads first: the verdict, how to reproduce the run, operations
//!   by outcome, latencies, every fault and how long the system took to accept writes again,
//!   and the violations in full ([`summary_markdown`]).
//! - `timeline.png`: every operation's latency over the run, with the fault windows shaded
//!   ([`timeline_png`]).
//! - `history.jsonl`: the raw history, one [`Event`] per line, so a run can be checked and
//!   reported again ([`read_history`]).
//! - `violations.json`: what the checkers found, for tools.
//!
//! Everything here is a pure function of the history except the two file functions.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::check::Violation;
use crate::history::{Event, Fault, Micros, Op, Outcome};

mod font;
mod stats;
mod summary;
mod timeline;

pub use summary::summary_markdown;
pub use timeline::timeline_png;

/// Size of the `timeline.png` that [`write_report`] draws.
pub const TIMELINE_WIDTH: u32 = 1600;
pub const TIMELINE_HEIGHT: u32 = 900;

/// How a run was set up: enough to understand it and to run it again.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunMeta {
    pub seed: u64,
    /// The topology's name or description (`local 3 root + 2×3 cluster + 4 workers`, …).
    pub topology: String,
    pub duration_s: f64,
    /// The nemeses that were enabled (`kill-leader`, `pause`, …).
    pub nemeses: Vec<String>,
    /// How many concurrent clients ran the workload.
    pub clients: u32,
    /// Wall-clock start of the run (RFC 3339-ish text).
    pub started_at: String,
    /// Free text, in Markdown, shown as-is: the exact command line that reproduces the run
    /// (in backticks, so Markdown leaves it alone), versions, anything unusual.
    pub notes: Vec<String>,
}

/// How long after `fault.start` the system acknowledged a write again: the time from
/// `fault.start` to the completion of the earliest-completing ok write invoked at or after
/// `fault.start`. `None` when no write begun after the fault was acknowledged.
///
/// Only writes count: reads may be served by a replica that cannot commit anything, and a
/// write invoked before the fault may have been committed before it.
pub fn recovered_after(fault: &Fault, ops: &[Op]) -> Option<Micros> {
    first_write_after(fault, ops.iter())
}

fn first_write_after<'a>(fault: &Fault, ops: impl IntoIterator<Item = &'a Op>) -> Option<Micros> {
    ops.into_iter()
        .filter(|op| op.call.is_write() && op.outcome == Outcome::Ok && op.invoke >= fault.start)
        .map(|op| op.complete)
        .min()
        .map(|complete| complete.saturating_sub(fault.start))
}

/// Writes `history.jsonl`, `summary.md`, `timeline.png` and `violations.json` into `dir`,
/// creating it if needed. Existing files of those names are replaced.
pub fn write_report(
    dir: &Path,
    meta: &RunMeta,
    events: &[Event],
    violations: &[Violation],
) -> anyhow::Result<()> {
    fs::create_dir_all(dir)
        .with_context(|| format!("creating the report directory {}", dir.display()))?;

    write_history(&dir.join("history.jsonl"), events)?;

    let summary = dir.join("summary.md");
    fs::write(&summary, summary_markdown(meta, events, violations))
        .with_context(|| format!("writing {}", summary.display()))?;

    let timeline = dir.join("timeline.png");
    fs::write(&timeline, timeline_png(events, TIMELINE_WIDTH, TIMELINE_HEIGHT))
        .with_context(|| format!("writing {}", timeline.display()))?;

    let path = dir.join("violations.json");
    let mut json = serde_json::to_vec_pretty(violations).context("serialising the violations")?;
    json.push(b'\n');
    fs::write(&path, json).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn write_history(path: &Path, events: &[Event]) -> anyhow::Result<()> {
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = BufWriter::new(file);
    for event in events {
        serde_json::to_writer(&mut out, event)
            .with_context(|| format!("writing {}", path.display()))?;
        out.write_all(b"\n").with_context(|| format!("writing {}", path.display()))?;
    }
    out.into_inner()
        .map_err(|e| e.into_error())
        .and_then(|file| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

/// Reads a `history.jsonl` back. Blank lines are skipped; anything else that is not an
/// [`Event`] (for instance a last line cut short when the harness died mid-write) is an error
/// naming the file and the line number.
pub fn read_history(path: &Path) -> anyhow::Result<Vec<Event>> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut events = Vec::new();
    for (index, line) in BufReader::new(file).lines().enumerate() {
        let number = index + 1;
        let line =
            line.with_context(|| format!("{}: line {number}: cannot read it", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let event = serde_json::from_str(&line)
            .with_context(|| format!("{}: line {number}: not a history event", path.display()))?;
        events.push(event);
    }
    Ok(events)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::history::{Call, FaultKind};

    pub(crate) fn op(
        id: u64,
        call: Call,
        invoke_ms: u64,
        complete_ms: u64,
        outcome: Outcome,
    ) -> Op {
        Op {
            id,
            client: (id % 4) as u32,
            endpoint: "http://127.0.0.1:7001".into(),
            call,
            invoke: invoke_ms * 1000,
            complete: complete_ms * 1000,
            outcome,
            value: None,
            error: None,
        }
    }

    pub(crate) fn write(key: &str, value: &str) -> Call {
        Call::Write { key: key.into(), value: value.into() }
    }

    pub(crate) fn read(key: &str) -> Call {
        Call::Read { key: key.into() }
    }

    pub(crate) fn fault(kind: FaultKind, start_ms: u64, end_ms: u64) -> Fault {
        Fault {
            kind,
            tier: "root".into(),
            targets: vec!["root-1".into()],
            start: start_ms * 1000,
            end: end_ms * 1000,
            recovered_after: None,
        }
    }

    #[test]
    fn recovered_after_is_the_first_acknowledged_write_begun_after_the_fault() {
        let f = fault(FaultKind::KillLeader, 10_000, 12_000);
        let ops = vec![
            // Begun before the fault, acknowledged just after it: does not count.
            op(1, write("a", "1"), 9_990, 10_005, Outcome::Ok),
            // Reads are served without committing anything.
            op(2, read("a"), 10_000, 10_010, Outcome::Ok),
            // Refused or unknown writes are not acknowledged.
            op(3, write("a", "2"), 10_001, 10_020, Outcome::Failed),
            op(4, write("a", "3"), 10_002, 10_030, Outcome::Unknown),
            // Two acknowledged writes: the earliest to *complete* wins, not the first invoked.
            op(5, write("b", "1"), 10_003, 13_500, Outcome::Ok),
            op(6, Call::Deploy { service: "s".into() }, 11_000, 12_700, Outcome::Ok),
            // Status is a read.
            op(7, Call::Status { service: "s".into() }, 10_500, 10_600, Outcome::Ok),
        ];
        assert_eq!(recovered_after(&f, &ops), Some(2_700_000));
    }

    #[test]
    fn recovered_after_counts_a_write_invoked_at_the_fault_start() {
        let f = fault(FaultKind::Pause, 5_000, 6_000);
        let ops = vec![op(1, write("a", "1"), 5_000, 5_250, Outcome::Ok)];
        assert_eq!(recovered_after(&f, &ops), Some(250_000));
    }

    #[test]
    fn recovered_after_is_none_without_an_acknowledged_write() {
        let f = fault(FaultKind::PartitionMajority, 1_000, 2_000);
        let ops = vec![
            op(1, write("a", "1"), 500, 1_500, Outcome::Ok),
            op(2, read("a"), 1_100, 1_200, Outcome::Ok),
            op(3, write("a", "2"), 1_100, 3_100, Outcome::Unknown),
        ];
        assert_eq!(recovered_after(&f, &ops), None);
        assert_eq!(recovered_after(&f, &[]), None);
    }

    fn sample_events() -> Vec<Event> {
        let mut with_value = op(3, read("a"), 30, 35, Outcome::Ok);
        with_value.value = Some("v-1 \"quoted\" ✓".into());
        let mut with_error = op(4, write("a", "v-2"), 40, 5_040, Outcome::Unknown);
        with_error.error = Some("timeout after 5 s\nsecond line".into());
        let mut recovered = fault(FaultKind::KillLeader, 100, 900);
        recovered.recovered_after = Some(1_234_567);
        recovered.targets = vec!["root-1".into(), "root-2".into()];
        vec![
            Event::Op(op(1, write("a", "v-1"), 10, 20, Outcome::Ok)),
            Event::Op(op(2, Call::CreateApp { key: "app-1".into() }, 11, 25, Outcome::Failed)),
            Event::Fault(recovered),
            Event::Op(with_value),
            Event::Op(with_error),
            Event::Op(op(5, Call::Deploy { service: "app-1/web".into() }, 50, 60, Outcome::Ok)),
            Event::Op(op(
                6,
                Call::Undeploy { service: "app-1/web".into(), instance: 3 },
                61,
                70,
                Outcome::Ok,
            )),
            Event::Op(op(7, Call::Status { service: "app-1/web".into() }, 71, 72, Outcome::Ok)),
            Event::Fault(fault(FaultKind::PartitionMinority, 2_000, 3_000)),
        ]
    }

    fn sample_meta() -> RunMeta {
        RunMeta {
            seed: 7,
            topology: "local".into(),
            duration_s: 5.0,
            nemeses: vec!["kill-leader".into()],
            clients: 4,
            started_at: "2026-11-28T09:00:00Z".into(),
            notes: vec!["`grove-chaos run --seed 7`".into()],
        }
    }

    #[test]
    fn write_report_and_read_history_round_trip_the_events() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("run-7");
        let events = sample_events();
        let violations = vec![Violation {
            checker: "durability".into(),
            message: "an acknowledged write is missing".into(),
            ops: vec![op(1, write("a", "v-1"), 10, 20, Outcome::Ok)],
        }];
        write_report(&out, &sample_meta(), &events, &violations).unwrap();

        assert_eq!(read_history(&out.join("history.jsonl")).unwrap(), events);
        let text = fs::read_to_string(out.join("history.jsonl")).unwrap();
        assert_eq!(text.lines().count(), events.len());

        let read_back: Vec<Violation> =
            serde_json::from_slice(&fs::read(out.join("violations.json")).unwrap()).unwrap();
        assert_eq!(read_back, violations);
        let summary = fs::read_to_string(out.join("summary.md")).unwrap();
        assert!(summary.starts_with("# FAIL: 1 violation\n"), "{summary}");
        let png = fs::read(out.join("timeline.png")).unwrap();
        let (width, height, _) = timeline::tests::decode(&png);
        assert_eq!((width, height), (TIMELINE_WIDTH, TIMELINE_HEIGHT));
    }

    #[test]
    fn write_report_replaces_an_earlier_report() {
        let dir = tempfile::tempdir().unwrap();
        let events = sample_events();
        write_report(dir.path(), &sample_meta(), &events, &[]).unwrap();
        write_report(dir.path(), &sample_meta(), &events[..2], &[]).unwrap();
        assert_eq!(read_history(&dir.path().join("history.jsonl")).unwrap(), &events[..2]);
    }

    #[test]
    fn read_history_names_the_bad_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.jsonl");
        let good = serde_json::to_string(&sample_events()[0]).unwrap();
        // A blank line is skipped but still counted; the last line was cut short.
        let text = format!("{good}\n\n{good}\n{}\n", &good[..good.len() / 2]);
        fs::write(&path, text).unwrap();

        let err = read_history(&path).unwrap_err();
        let message = format!("{err:#}");
        assert!(message.contains("line 4"), "{message}");
        assert!(message.contains("history.jsonl"), "{message}");
    }

    #[test]
    fn read_history_of_a_missing_file_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_history(&dir.path().join("nope.jsonl")).unwrap_err();
        assert!(format!("{err:#}").contains("nope.jsonl"));
    }
}
