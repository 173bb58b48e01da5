//! `grove app create|list|delete`.

use std::io::Read;

use serde_json::Value;

use super::visible_applications;
use crate::args::AppCommand;
use crate::model::{id_of, list_of, str_of, Service};
use crate::table::Table;
use crate::{CliError, Ctx};

pub async fn run(ctx: &mut Ctx<'_>, command: AppCommand) -> Result<(), CliError> {
    match command {
        AppCommand::Create { file } => create(ctx, &file).await,
        AppCommand::List => list(ctx).await,
        AppCommand::Delete { app_id } => {
            let v = ctx.client.delete(&format!("/api/application/{app_id}")).await?;
            if ctx.json {
                ctx.print_json(&v);
            } else {
                ctx.println(&format!("Deleted application {app_id} ({})", message(&v, "Application Deleted")));
            }
            Ok(())
        }
    }
}

/// The answer's `message`, or `default`.
pub fn message(v: &Value, default: &str) -> String {
    v.get("message").and_then(Value::as_str).unwrap_or(default).to_owned()
}

async fn create(ctx: &mut Ctx<'_>, file: &std::path::Path) -> Result<(), CliError> {
    let bytes = if file.as_os_str() == "-" {
        let mut b = Vec::new();
        std::io::stdin().read_to_end(&mut b).map_err(|e| CliError::File { path: file.into(), detail: format!("cannot read standard input: {e}") })?;
        b
    } else {
        std::fs::read(file).map_err(|e| CliError::File { path: file.into(), detail: format!("cannot read: {e}") })?
    };
    // Say which line is broken before asking the server; the server validates the SLA itself.
    let sla: Value = serde_json::from_slice(&bytes).map_err(|e| CliError::File { path: file.into(), detail: format!("not valid JSON: {e}") })?;
    let answer = ctx.client.post("/api/application/", Some(bytes)).await?;
    if ctx.json {
        ctx.print_json(&answer);
        return Ok(());
    }
    // The answer lists every application of the caller: show those of this SLA.
    let wanted: Vec<(String, String)> = sla
        .get("applications")
        .and_then(Value::as_array)
        .map(|apps| apps.iter().map(|a| (str_of(a, "application_name"), str_of(a, "application_namespace"))).collect())
        .unwrap_or_default();
    let created: Vec<Value> = list_of(&answer)
        .into_iter()
        .filter(|a| wanted.contains(&(str_of(a, "application_name"), str_of(a, "application_namespace"))))
        .collect();
    let mut apps = Table::new(["APPLICATION ID", "NAME", "NAMESPACE", "SERVICES"]);
    let mut services = Table::new(["SERVICE ID", "JOB NAME", "IMAGE"]);
    for app in &created {
        let id = id_of(app);
        let n = app.get("microservices").and_then(Value::as_array).map_or(0, Vec::len);
        apps.row([id.clone(), str_of(app, "application_name"), str_of(app, "application_namespace"), n.to_string()]);
        for s in list_of(&ctx.client.get(&format!("/api/services/{id}")).await?).iter().map(Service::from_doc) {
            services.row([s.id, s.job_name, s.image]);
        }
    }
    ctx.print(&apps.render());
    if !services.is_empty() {
        ctx.println("");
        ctx.print(&services.render());
        ctx.println("\nDeploy an instance with: grove service deploy <SERVICE ID>");
    }
    Ok(())
}

async fn list(ctx: &mut Ctx<'_>) -> Result<(), CliError> {
    let apps = visible_applications(ctx).await?;
    if ctx.json {
        ctx.print_json(&Value::Array(apps));
        return Ok(());
    }
    let mut t = Table::new(["APPLICATION ID", "NAME", "NAMESPACE", "SERVICES", "OWNER"]);
    for a in &apps {
        let n = a.get("microservices").and_then(Value::as_array).map_or(0, Vec::len);
        t.row([id_of(a), str_of(a, "application_name"), str_of(a, "application_namespace"), n.to_string(), str_of(a, "userId")]);
    }
    if t.is_empty() {
        ctx.println("No applications (create one with: grove app create -f sla.json)");
    } else {
        ctx.print(&t.render());
    }
    Ok(())
}
