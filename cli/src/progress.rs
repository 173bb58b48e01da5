//! What `grove status --watch` prints: a live board redrawn in place on a terminal, or one
//! line per status change (from each instance's `status_history`, so a change between two
//! polls is not lost) when standard output is a pipe or a file.

use std::collections::BTreeMap;

use crate::model::{Instance, Phase, Service, STEPS};

/// An instance's key: (service id, instance number).
pub type Key = (String, u32);

/// One watched instance, flattened.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub service_id: String,
    pub job_name: String,
    pub instance: Instance,
}

pub fn rows(services: &[Service]) -> Vec<Row> {
    let mut out: Vec<Row> = services
        .iter()
        .flat_map(|s| s.instances.iter().map(|i| Row { service_id: s.id.clone(), job_name: s.job_name.clone(), instance: i.clone() }))
        .collect();
    out.sort_by(|a, b| (&a.job_name, a.instance.number).cmp(&(&b.job_name, b.instance.number)));
    out
}

/// Instances by phase.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub done: usize,
    pub progressing: usize,
    pub unplaced: usize,
    pub failed: usize,
}

pub fn tally(rows: &[Row]) -> Tally {
    let mut t = Tally::default();
    for r in rows {
        match r.instance.phase() {
            Phase::Done => t.done += 1,
            Phase::Progressing { .. } => t.progressing += 1,
            Phase::Unplaced => t.unplaced += 1,
            Phase::Failed => t.failed += 1,
        }
    }
    t
}

/// `[■■■□□□]` for the step reached on REQUESTED → … → RUNNING.
pub fn bar(phase: Phase) -> String {
    let n = STEPS.len();
    let filled = match phase {
        Phase::Done => n,
        Phase::Failed => return format!("[{}]", "✗".repeat(n)),
        Phase::Unplaced => return format!("[!{}]", "□".repeat(n - 1)),
        Phase::Progressing { step } => step + 1,
    };
    format!("[{}{}]", "■".repeat(filled), "□".repeat(n - filled))
}

/// The live board: one line per instance and a summary line.
pub fn board(rows: &[Row], elapsed_s: f64) -> Vec<String> {
    let name_w = rows.iter().map(|r| r.job_name.chars().count() + 1 + digits(r.instance.number)).max().unwrap_or(0);
    let mut lines: Vec<String> = rows
        .iter()
        .map(|r| {
            let name = format!("{}#{}", r.job_name, r.instance.number);
            let status = if r.instance.status.is_empty() { "(no status yet)" } else { r.instance.status.as_str() };
            let mut line = format!("{name:<name_w$}  {}  {status}", bar(r.instance.phase()));
            if !r.instance.detail.is_empty() && matches!(r.instance.phase(), Phase::Failed | Phase::Unplaced) {
                line.push_str(&format!(" ({})", r.instance.detail));
            }
            line
        })
        .collect();
    let t = tally(rows);
    let mut summary = format!("{} running, {} in progress", t.done, t.progressing);
    if t.unplaced > 0 {
        summary.push_str(&format!(", {} waiting for a placement", t.unplaced));
    }
    lines.push(format!("{summary}, {} failed — {elapsed_s:.1}s", t.failed));
    lines
}

fn digits(n: u32) -> usize {
    n.to_string().len()
}

/// Remembers how much of each instance's history was printed.
#[derive(Default)]
pub struct Changes {
    printed: BTreeMap<Key, usize>,
    /// For documents without a history: the last status printed.
    last: BTreeMap<Key, String>,
}

impl Changes {
    /// Lines for every status change not printed yet: `<job>#<n>  <status>` (with the detail of a
    /// failure). Without a history, the current status counts as one change.
    pub fn new_lines(&mut self, rows: &[Row]) -> Vec<String> {
        let mut out = Vec::new();
        for r in rows {
            let key = (r.service_id.clone(), r.instance.number);
            if r.instance.history.is_empty() {
                if self.last.get(&key) != Some(&r.instance.status) {
                    out.push(line(r, &r.instance.status));
                    self.last.insert(key, r.instance.status.clone());
                }
                continue;
            }
            let statuses: Vec<&str> = r.instance.history.iter().map(|(s, _)| s.as_str()).collect();
            let seen = self.printed.entry(key).or_insert(0);
            // The root keeps the last 50 changes: a shorter history than printed means it was cut.
            if statuses.len() < *seen {
                *seen = statuses.len().saturating_sub(1);
            }
            for status in &statuses[*seen..] {
                out.push(line(r, status));
            }
            *seen = statuses.len();
        }
        out
    }
}

fn line(r: &Row, status: &str) -> String {
    let mut line = format!("{}#{}  {status}", r.job_name, r.instance.number);
    if matches!(Phase::of(status), Phase::Failed | Phase::Unplaced) && !r.instance.detail.is_empty() && status == r.instance.status {
        line.push_str(&format!(" ({})", r.instance.detail));
    }
    line
}

/// ANSI: move the cursor up `n` lines and clear each line as it is rewritten.
pub fn redraw(previous_lines: usize, lines: &[String]) -> String {
    let mut out = String::new();
    if previous_lines > 0 {
        out.push_str(&format!("\x1b[{previous_lines}A"));
    }
    for l in lines {
        out.push_str("\x1b[2K");
        out.push_str(l);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inst(n: u32, status: &str, history: &[&str]) -> Instance {
        Instance {
            number: n,
            status: status.into(),
            detail: String::new(),
            cluster_id: String::new(),
            worker_id: String::new(),
            history: history.iter().map(|s| (s.to_string(), 0)).collect(),
        }
    }

    fn service(id: &str, job: &str, instances: Vec<Instance>) -> Service {
        Service { id: id.into(), job_name: job.into(), image: String::new(), application_id: String::new(), instances }
    }

    #[test]
    fn bars_fill_along_the_path() {
        assert_eq!(bar(Phase::of("REQUESTED")), "[■□□□□□]");
        assert_eq!(bar(Phase::of("NODE_SCHEDULED")), "[■■■□□□]");
        assert_eq!(bar(Phase::of("RUNNING")), "[■■■■■■]");
        assert_eq!(bar(Phase::of("FAILED")), "[✗✗✗✗✗✗]");
        assert_eq!(bar(Phase::of("NO_WORKER_CAPACITY")), "[!□□□□□]");
    }

    #[test]
    fn the_board_lists_every_instance_and_a_summary() {
        let s = vec![service("s", "a.n.web.n", vec![inst(0, "RUNNING", &[]), inst(10, "CLUSTER_SCHEDULED", &[])])];
        let lines = board(&rows(&s), 1.25);
        assert_eq!(lines[0], "a.n.web.n#0   [■■■■■■]  RUNNING");
        assert_eq!(lines[1], "a.n.web.n#10  [■■□□□□]  CLUSTER_SCHEDULED");
        assert_eq!(lines[2], "1 running, 1 in progress, 0 failed — 1.2s");
        let s = vec![service("s", "j", vec![inst(0, "NoActiveClusterWithCapacity", &[]), inst(1, "DEAD", &[])])];
        let t = tally(&rows(&s));
        assert_eq!(t, Tally { done: 0, progressing: 0, unplaced: 1, failed: 1 });
        assert_eq!(board(&rows(&s), 0.0)[2], "0 running, 0 in progress, 1 waiting for a placement, 1 failed — 0.0s");
    }

    #[test]
    fn changes_are_printed_once_each_including_those_between_polls() {
        let mut c = Changes::default();
        let poll1 = vec![service("s", "j", vec![inst(0, "REQUESTED", &["REQUESTED"])])];
        assert_eq!(c.new_lines(&rows(&poll1)), ["j#0  REQUESTED"]);
        assert!(c.new_lines(&rows(&poll1)).is_empty(), "nothing new, nothing printed");
        // CLUSTER_SCHEDULED and NODE_SCHEDULED happened between two polls.
        let poll2 = vec![service("s", "j", vec![inst(0, "RUNNING", &["REQUESTED", "CLUSTER_SCHEDULED", "NODE_SCHEDULED", "RUNNING"])])];
        assert_eq!(c.new_lines(&rows(&poll2)), ["j#0  CLUSTER_SCHEDULED", "j#0  NODE_SCHEDULED", "j#0  RUNNING"]);
    }

    #[test]
    fn without_history_the_current_status_is_the_change() {
        let mut c = Changes::default();
        let poll = vec![service("s", "j", vec![inst(3, "CREATING", &[])])];
        assert_eq!(c.new_lines(&rows(&poll)), ["j#3  CREATING"]);
        assert!(c.new_lines(&rows(&poll)).is_empty());
        let poll = vec![service("s", "j", vec![inst(3, "RUNNING", &[])])];
        assert_eq!(c.new_lines(&rows(&poll)), ["j#3  RUNNING"]);
    }

    #[test]
    fn redraw_moves_up_over_the_previous_board() {
        assert_eq!(redraw(0, &["a".into()]), "\x1b[2Ka\n");
        assert_eq!(redraw(2, &["a".into(), "b".into()]), "\x1b[2A\x1b[2Ka\n\x1b[2Kb\n");
    }
}
