//! One file per command group.

pub mod app;
pub mod cluster;
pub mod login;
pub mod raft;
pub mod service;
pub mod status;

use serde_json::Value;

use crate::client::http_error;
use crate::model::{id_of, list_of, Service};
use crate::{CliError, Ctx};

/// The applications the caller can see: every one for an Admin (`GET /api/applications/`),
/// else their own (`GET /api/applications/<user id>`, the id read from `GET /api/user/<name>`).
pub async fn visible_applications(ctx: &mut Ctx<'_>) -> Result<Vec<Value>, CliError> {
    let path = "/api/applications/";
    let answer = ctx.client.authenticated(reqwest::Method::GET, path, None).await?;
    if answer.is_success() {
        return Ok(list_of(&answer.json(&reqwest::Method::GET, path)?));
    }
    if answer.status != 403 {
        return Err(http_error(&reqwest::Method::GET, path, &answer));
    }
    let username = ctx.client.session().map(|s| s.username).unwrap_or_default();
    let user = ctx.client.get(&format!("/api/user/{username}")).await?;
    let user_id = id_of(&crate::model::object_of(&user));
    Ok(list_of(&ctx.client.get(&format!("/api/applications/{user_id}")).await?))
}

/// Services: these ids, or those of one application, or every one the caller can see.
pub async fn services(ctx: &mut Ctx<'_>, ids: &[String], app: Option<&str>) -> Result<Vec<Service>, CliError> {
    if !ids.is_empty() {
        let mut out = Vec::new();
        for id in ids {
            out.push(Service::from_doc(&ctx.client.get(&format!("/api/service/{id}")).await?));
        }
        return Ok(out);
    }
    if let Some(app) = app {
        return Ok(list_of(&ctx.client.get(&format!("/api/services/{app}")).await?).iter().map(Service::from_doc).collect());
    }
    let path = "/api/services/";
    let answer = ctx.client.authenticated(reqwest::Method::GET, path, None).await?;
    if answer.is_success() {
        return Ok(list_of(&answer.json(&reqwest::Method::GET, path)?).iter().map(Service::from_doc).collect());
    }
    if answer.status != 403 {
        return Err(http_error(&reqwest::Method::GET, path, &answer));
    }
    // Not an Admin: the services of each of the caller's applications.
    let mut out = Vec::new();
    for app in visible_applications(ctx).await? {
        let id = id_of(&app);
        out.extend(list_of(&ctx.client.get(&format!("/api/services/{id}")).await?).iter().map(Service::from_doc));
    }
    Ok(out)
}
