//! `grove status [--watch]`: every instance of the services you can see.

use std::time::{Duration, Instant};

use super::service::dash;
use super::services;
use crate::args::StatusArgs;
use crate::model::Phase;
use crate::progress::{board, redraw, rows, tally, Changes, Row};
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

/// Poll until every instance runs (or completed), or one failed, or the time is up.
async fn watch(ctx: &mut Ctx<'_>, args: &StatusArgs) -> Result<(), CliError> {
    let started = Instant::now();
    let limit = Duration::from_secs(args.watch_timeout);
    let interval = Duration::from_millis(args.interval.max(50));
    let mut changes = Changes::default();
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
        let (done, failed, progressing) = tally(&rows);
        if progressing == 0 {
            if failed == 0 {
                ctx.println(&format!("All {done} instance(s) running after {elapsed:.1}s"));
                return Ok(());
            }
            return Err(CliError::WatchFailed(format!("{failed} of {} instance(s) failed: {}", rows.len(), failures(&rows))));
        }
        if started.elapsed() >= limit {
            return Err(CliError::WatchFailed(format!(
                "gave up after {}s: {progressing} instance(s) still in progress, {done} running, {failed} failed",
                args.watch_timeout
            )));
        }
        tokio::time::sleep(interval).await;
    }
}

fn failures(rows: &[Row]) -> String {
    rows.iter()
        .filter(|r| r.instance.phase() == Phase::Failed)
        .map(|r| {
            let detail = if r.instance.detail.is_empty() { String::new() } else { format!(" ({})", r.instance.detail) };
            format!("{}#{} {}{detail}", r.job_name, r.instance.number, r.instance.status)
        })
        .collect::<Vec<_>>()
        .join(", ")
}
