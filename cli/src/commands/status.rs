//! `grove status [--watch]`: every instance of the services you can see.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::service::dash;
use super::services;
use crate::args::StatusArgs;
use crate::model::Phase;
use crate::progress::{board, redraw, rows, Changes, Key, Row};
use crate::table::Table;
use crate::{CliError, Ctx};

pub async fn run(ctx: &mut Ctx<'_>, args: StatusArgs) -> Result<(), CliError> {
    if args.watch {
        return watch(ctx, &args).await;
    }
    let list = services(ctx, &args.services, args.app.as_deref()).await?;
    let rows = rows(&list);
    if ctx.json {
        let docs: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "service_id": r.service_id, "job_name": r.job_name, "instance_number": r.instance.number,
                    "status": r.instance.status, "status_detail": r.instance.detail,
                    "cluster_id": r.instance.cluster_id, "worker_id": r.instance.worker_id,
                })
            })
            .collect();
        ctx.print_json(&serde_json::Value::Array(docs));
        return Ok(());
    }
    if rows.is_empty() {
        ctx.println(&format!("No instances ({} service(s))", list.len()));
        return Ok(());
    }
    let mut t = Table::new(["SERVICE ID", "INSTANCE", "STATUS", "CLUSTER", "WORKER", "DETAIL"]);
    for r in &rows {
        t.row([
            r.service_id.clone(),
            format!("{}#{}", r.job_name, r.instance.number),
            r.instance.status.clone(),
            dash(&r.instance.cluster_id),
            dash(&r.instance.worker_id),
            r.instance.detail.clone(),
        ]);
    }
    ctx.print(&t.render());
    Ok(())
}

/// Poll until every instance runs (or completed), or one failed (or stayed unplaced longer than
/// the grace period), or the time is up.
async fn watch(ctx: &mut Ctx<'_>, args: &StatusArgs) -> Result<(), CliError> {
    let started = Instant::now();
    let limit = Duration::from_secs(args.watch_timeout);
    let grace = Duration::from_secs(args.unplaced_grace);
    let interval = Duration::from_millis(args.interval.max(50));
    let mut changes = Changes::default();
    let mut unplaced_since: BTreeMap<Key, Instant> = BTreeMap::new();
    let mut drawn = 0;
    loop {
        let list = services(ctx, &args.services, args.app.as_deref()).await?;
        let rows = rows(&list);
        let elapsed = started.elapsed().as_secs_f64();
        if ctx.tty {
            let lines = board(&rows, elapsed);
            ctx.print(&redraw(drawn, &lines));
            drawn = lines.len();
        } else {
            for line in changes.new_lines(&rows) {
                ctx.println(&format!("{elapsed:>6.1}s  {line}"));
            }
        }
        if rows.is_empty() {
            ctx.println("No instances to watch (deploy one with: grove service deploy <SERVICE ID>)");
            return Ok(());
        }
        let now = Instant::now();
        let (mut done, mut progressing, mut failed) = (0, 0, Vec::new());
        for r in &rows {
            let key = (r.service_id.clone(), r.instance.number);
            match r.instance.phase() {
                Phase::Done => done += 1,
                Phase::Progressing { .. } => progressing += 1,
                Phase::Failed => failed.push(r),
                Phase::Unplaced if now.duration_since(*unplaced_since.entry(key.clone()).or_insert(now)) >= grace => failed.push(r),
                Phase::Unplaced => progressing += 1,
            }
            if r.instance.phase() != Phase::Unplaced {
                unplaced_since.remove(&key);
            }
        }
        if progressing == 0 {
            if failed.is_empty() {
                ctx.println(&format!("All {done} instance(s) running after {elapsed:.1}s"));
                return Ok(());
            }
            return Err(CliError::WatchFailed(format!("{} of {} instance(s) failed: {}", failed.len(), rows.len(), failures(&failed))));
        }
        if started.elapsed() >= limit {
            return Err(CliError::WatchFailed(format!(
                "gave up after {}s: {progressing} instance(s) still in progress, {done} running, {} failed",
                args.watch_timeout,
                failed.len()
            )));
        }
        tokio::time::sleep(interval).await;
    }
}

fn failures(rows: &[&Row]) -> String {
    rows.iter()
        .map(|r| {
            let detail = if r.instance.detail.is_empty() { String::new() } else { format!(" ({})", r.instance.detail) };
            format!("{}#{} {}{detail}", r.job_name, r.instance.number, r.instance.status)
        })
        .collect::<Vec<_>>()
        .join(", ")
}
