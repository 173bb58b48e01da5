//! `grove service list|deploy|undeploy|scale|status`.

use serde_json::Value;

use super::services;
use super::app::message;
use crate::args::ServiceCommand;
use crate::model::{Phase, Service};
use crate::table::Table;
use crate::{CliError, Ctx};

pub async fn run(ctx: &mut Ctx<'_>, command: ServiceCommand) -> Result<(), CliError> {
    match command {
        ServiceCommand::List { app } => list(ctx, app.as_deref()).await,
        ServiceCommand::Deploy { service_id } => {
            let v = ctx.client.post(&format!("/api/service/{service_id}/instance"), None).await?;
            if ctx.json {
                ctx.print_json(&v);
            } else {
                ctx.println(&format!(
                    "Requested one more instance of {service_id} ({}); follow it with: grove status --watch -s {service_id}",
                    message(&v, "ok")
                ));
            }
            Ok(())
        }
        ServiceCommand::Undeploy { service_id, instance } => {
            let n = instance.map_or(-1, i64::from);
            let v = ctx.client.delete(&format!("/api/service/{service_id}/instance/{n}")).await?;
            if ctx.json {
                ctx.print_json(&v);
            } else {
                let which = instance.map_or("every instance".to_owned(), |n| format!("instance {n}"));
                ctx.println(&format!("Undeploying {which} of {service_id} ({})", message(&v, "ok")));
            }
            Ok(())
        }
        ServiceCommand::Scale { service_id, count } => scale(ctx, &service_id, count).await,
        ServiceCommand::Status { service_id } => status(ctx, &service_id).await,
    }
}

async fn list(ctx: &mut Ctx<'_>, app: Option<&str>) -> Result<(), CliError> {
    let list = services(ctx, &[], app).await?;
    let mut t = Table::new(["SERVICE ID", "JOB NAME", "IMAGE", "INSTANCES", "RUNNING"]);
    for s in &list {
        let running = s.instances.iter().filter(|i| i.phase() == Phase::Done).count();
        t.row([s.id.clone(), s.job_name.clone(), s.image.clone(), s.instances.len().to_string(), running.to_string()]);
    }
    if ctx.json {
        let docs: Vec<Value> = list.iter().map(|s| serde_json::json!({"id": s.id, "job_name": s.job_name, "image": s.image, "instances": s.instances.len()})).collect();
        ctx.print_json(&Value::Array(docs));
    } else if t.is_empty() {
        ctx.println("No services");
    } else {
        ctx.print(&t.render());
    }
    Ok(())
}

/// The instance numbers to remove to go from `numbers` to `target` instances: the newest first.
pub fn scale_down_plan(numbers: &[u32], target: usize) -> Vec<u32> {
    let mut sorted = numbers.to_vec();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    sorted.into_iter().take(numbers.len().saturating_sub(target)).collect()
}

async fn scale(ctx: &mut Ctx<'_>, id: &str, count: u32) -> Result<(), CliError> {
    let service = Service::from_doc(&ctx.client.get(&format!("/api/service/{id}")).await?);
    let current = service.instances.len();
    let target = count as usize;
    if current < target {
        for k in 0..target - current {
            ctx.client.post(&format!("/api/service/{id}/instance"), None).await.map_err(|e| partial(e, k, target - current))?;
        }
        ctx.println(&format!("Scaling {id} from {current} to {target}: requested {} instance(s)", target - current));
    } else if current > target {
        let remove = scale_down_plan(&service.instances.iter().map(|i| i.number).collect::<Vec<_>>(), target);
        for (k, n) in remove.iter().enumerate() {
            ctx.client.delete(&format!("/api/service/{id}/instance/{n}")).await.map_err(|e| partial(e, k, remove.len()))?;
        }
        let list = remove.iter().map(u32::to_string).collect::<Vec<_>>().join(", ");
        ctx.println(&format!("Scaling {id} from {current} to {target}: undeploying instance(s) {list}"));
    } else {
        ctx.println(&format!("{id} already has {current} instance(s)"));
    }
    Ok(())
}

/// An error after `done` of `total` steps: say how far it got.
fn partial(e: CliError, done: usize, total: usize) -> CliError {
    if done == 0 {
        e
    } else {
        CliError::Usage(format!("{e} (after {done} of {total} steps had succeeded)"))
    }
}

async fn status(ctx: &mut Ctx<'_>, id: &str) -> Result<(), CliError> {
    let doc = ctx.client.get(&format!("/api/service/{id}")).await?;
    if ctx.json {
        ctx.print_json(&doc);
        return Ok(());
    }
    let s = Service::from_doc(&doc);
    ctx.println(&format!("{} ({}), image {}", s.job_name, s.id, s.image));
    let mut t = Table::new(["INSTANCE", "STATUS", "CLUSTER", "WORKER", "DETAIL"]);
    for i in &s.instances {
        t.row([i.number.to_string(), i.status.clone(), dash(&i.cluster_id), dash(&i.worker_id), i.detail.clone()]);
    }
    if t.is_empty() {
        ctx.println(&format!("No instances (deploy one with: grove service deploy {id})"));
    } else {
        ctx.print(&t.render());
    }
    Ok(())
}

pub fn dash(s: &str) -> String {
    if s.is_empty() { "-".into() } else { s.to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaling_down_removes_the_newest_instances() {
        assert_eq!(scale_down_plan(&[0, 3, 1, 7], 2), vec![7, 3]);
        assert_eq!(scale_down_plan(&[0, 1], 2), Vec::<u32>::new());
        assert_eq!(scale_down_plan(&[5], 0), vec![5]);
    }
}
