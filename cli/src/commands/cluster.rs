//! `grove cluster list`, `grove worker list`.

use reqwest::Method;
use serde_json::Value;

use crate::client::http_error;
use crate::model::{id_of, list_of, str_of};
use crate::table::Table;
use crate::{CliError, Ctx};

/// The route `worker list` asks for. Grove's root serves it (asking each cluster tier's leader);
/// Oakestra's System Manager has no such route (workers are known only to their cluster).
pub const WORKERS_ROUTE: &str = "/api/workers/";

async fn clusters(ctx: &mut Ctx<'_>) -> Result<Vec<Value>, CliError> {
    // Upstream serves the cluster list without authentication.
    let path = "/api/clusters/";
    let answer = ctx.client.send(Method::GET, path, None, None, true).await?;
    if !answer.is_success() {
        return Err(http_error(&Method::GET, path, &answer));
    }
    Ok(list_of(&answer.json(&Method::GET, path)?))
}

fn number(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::Number(n)) => match n.as_f64() {
            Some(f) if f.fract() != 0.0 => format!("{f:.1}"),
            _ => n.to_string(),
        },
        Some(Value::String(s)) => s.clone(),
        _ => "-".into(),
    }
}

pub async fn list_clusters(ctx: &mut Ctx<'_>) -> Result<(), CliError> {
    let list = clusters(ctx).await?;
    if ctx.json {
        ctx.print_json(&Value::Array(list));
        return Ok(());
    }
    let mut t = Table::new(["CLUSTER ID", "NAME", "LOCATION", "ACTIVE", "WORKERS", "CPU %", "MEM %", "VCPUS", "MEMORY MB"]);
    for c in &list {
        let active = match c.get("active") {
            Some(Value::Bool(b)) => if *b { "yes" } else { "no" }.to_owned(),
            _ => "-".into(),
        };
        t.row([
            id_of(c),
            str_of(c, "cluster_name"),
            str_of(c, "cluster_location"),
            active,
            number(c, "active_nodes"),
            number(c, "cpu_percent"),
            number(c, "memory_percent"),
            number(c, "vcpus"),
            number(c, "memory"),
        ]);
    }
    if t.is_empty() {
        ctx.println("No clusters registered");
    } else {
        ctx.print(&t.render());
    }
    Ok(())
}

/// A document's cluster: its name, else its id.
fn cluster_label(v: &Value) -> String {
    Some(str_of(v, "cluster_name")).filter(|s| !s.is_empty()).unwrap_or_else(|| str_of(v, "cluster_id"))
}

pub async fn list_workers(ctx: &mut Ctx<'_>) -> Result<(), CliError> {
    let token = ctx.client.session().map(|s| s.token);
    let answer = ctx.client.send(Method::GET, WORKERS_ROUTE, None, token.as_deref(), true).await?;
    if answer.is_success() {
        // {"workers": [...], "unreachable": [{"cluster_id", "cluster_name", "error"}]}
        let body = answer.json(&Method::GET, WORKERS_ROUTE)?;
        let list = body.get("workers").map(list_of).unwrap_or_default();
        let unreachable = body.get("unreachable").map(list_of).unwrap_or_default();
        if ctx.json {
            ctx.print_json(&body);
        } else {
            let mut t = Table::new(["WORKER ID", "HOSTNAME", "CLUSTER", "ADDRESS", "ACTIVE", "INSTANCES", "CPU %", "MEM %", "VCPUS", "MEMORY MB"]);
            for w in &list {
                let active = w.get("active").and_then(Value::as_bool).map_or("-", |b| if b { "yes" } else { "no" });
                t.row([
                    id_of(w),
                    str_of(w, "hostname"),
                    cluster_label(w),
                    str_of(w, "ip"),
                    active.into(),
                    number(w, "instances"),
                    number(w, "cpu_percent"),
                    number(w, "memory_percent"),
                    number(w, "vcpus"),
                    number(w, "memory"),
                ]);
            }
            ctx.print(&if t.is_empty() { "No workers\n".to_owned() } else { t.render() });
        }
        if unreachable.is_empty() {
            return Ok(());
        }
        let names: Vec<String> = unreachable
            .iter()
            .map(|c| format!("{} ({})", cluster_label(c), str_of(c, "error")))
            .collect();
        return Err(CliError::Partial(format!("the workers of {} cluster(s) are not listed, the root could not reach them: {}", names.len(), names.join("; "))));
    }
    if !matches!(answer.status, 404 | 405) {
        return Err(http_error(&Method::GET, WORKERS_ROUTE, &answer));
    }
    // What the root does serve: each cluster's count of active workers.
    let list = clusters(ctx).await?;
    let mut t = Table::new(["CLUSTER ID", "NAME", "ACTIVE WORKERS"]);
    for c in &list {
        t.row([id_of(c), str_of(c, "cluster_name"), number(c, "active_nodes")]);
    }
    if !t.is_empty() {
        ctx.print(&t.render());
    }
    Err(CliError::MissingRoute(format!(
        "the root at {} does not list workers: GET {WORKERS_ROUTE} answered HTTP {} (the route is missing: a stock Oakestra root); \
         only each cluster's count of active workers is known (GET /api/clusters/, shown above)",
        answer.endpoint, answer.status
    )))
}
