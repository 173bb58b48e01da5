//! Services (jobs) and their instances.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use grove_core::sla::{derive_job, parse_sla};
use serde_json::{json, Value};

use super::{body_bytes, Api, ApiError, Caller};
use crate::state::{Applied, JobRecord, RootCommand, RootState};

fn visible<'a>(s: &'a RootState, caller: &Caller, id: &str) -> Result<&'a JobRecord, ApiError> {
    s.jobs
        .get(id)
        .filter(|j| j.owner == caller.name() || caller.is_admin())
        .ok_or_else(|| ApiError::NotFound(format!("service {id} not found")))
}

/// Register (not deploy) every microservice of `applications[0]` on that existing application.
pub async fn create(State(api): State<Api>, caller: Caller, body: Result<Bytes, BytesRejection>) -> Result<Json<Value>, ApiError> {
    let bytes = body_bytes(body)?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::NotFound("request body is empty; expected an SLA".into()));
    }
    let bad = |errors| ApiError::InvalidSla { status: StatusCode::BAD_REQUEST, errors };
    let sla = parse_sla(&bytes).map_err(bad)?;
    sla.check_application_ids().map_err(bad)?;
    let mut app = sla.applications[0].clone();
    let owner = caller.name().to_owned();
    let stored = api
        .read(|s| s.applications.get(&app.application_id).filter(|a| a.owner == owner).cloned())
        .await?
        .ok_or_else(|| ApiError::BadRequest(format!("applications[0].applicationID: application {} not found for user {owner}", app.application_id)))?;
    // Job names use the stored application's name and namespace.
    app.application_name = stored.application_name.clone();
    app.application_namespace = stored.application_namespace.clone();
    let jobs: Vec<_> = app.microservices.iter().map(|ms| derive_job(&stored.id, &crate::ids::object_id(), &app, ms)).collect();
    let deployed: Vec<Value> = app.microservices.iter().map(|ms| json!({ "service_name": ms.microservice_name, "status": 200 })).collect();
    let last = jobs.last().map(|j| j.id.clone());
    api.write(RootCommand::AddServices { owner, app_id: stored.id, jobs }).await?;
    Ok(Json(json!({ "job_id": last, "deployed_services": deployed, "failed_services": [] })))
}

pub async fn get_one(State(api): State<Api>, caller: Caller, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    api.read(|s| visible(s, &caller, &id).map(JobRecord::document)).await?.map(Json)
}

/// Upstream never implemented service updates; neither does Grove (yet).
pub async fn update(_caller: Caller, Path(_id): Path<String>) -> ApiError {
    ApiError::NotImplemented("Not implemented: updating a service in place; delete it and register it again".into())
}

/// Undeploys every instance, removes the service from its application and deletes it.
pub async fn delete(State(api): State<Api>, caller: Caller, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    api.read(|s| visible(s, &caller, &id).map(|_| ())).await??;
    api.write(RootCommand::DeleteService { id }).await?;
    Ok(Json(json!({ "message": "Job deleted" })))
}

pub async fn of_application(State(api): State<Api>, caller: Caller, Path(app_id): Path<String>) -> Result<Json<Value>, ApiError> {
    api.read(|s| {
        s.applications
            .get(&app_id)
            .filter(|a| a.owner == caller.name() || caller.is_admin())
            .ok_or_else(|| ApiError::NotFound(format!("application {app_id} not found")))?;
        Ok(s.jobs_of_application(&app_id).map(JobRecord::document).collect::<Vec<_>>().into())
    })
    .await?
    .map(Json)
}

pub async fn all(State(api): State<Api>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.require_admin()?;
    Ok(Json(api.read(|s| s.jobs.values().map(JobRecord::document).collect::<Vec<_>>().into()).await?))
}

/// Deploy one more instance (`REQUESTED`; the leader's scheduler places it). Upstream silently
/// ignored services the caller does not own; Grove answers 404.
pub async fn scale_up(State(api): State<Api>, caller: Caller, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let owner = (!caller.is_admin()).then(|| caller.name().to_owned());
    let n = match api.write(RootCommand::RequestInstance { job_id: id, owner, at_ms: crate::ids::now_ms() }).await? {
        Applied::Instance(n) => n,
        other => return Err(ApiError::Internal(format!("scale up answered {other:?}"))),
    };
    // Upstream answers only the message; the new instance's number is an addition.
    Ok(Json(json!({ "message": "ok", "instance_number": n })))
}

/// Undeploy instance `n`, or every instance for `-1`.
pub async fn scale_down(State(api): State<Api>, caller: Caller, Path((id, n)): Path<(String, String)>) -> Result<Json<Value>, ApiError> {
    let n: i64 = n.parse().ok().filter(|n| *n >= -1).ok_or_else(|| ApiError::BadRequest(format!("instance number {n:?}: must be an integer ≥ 0, or -1 for all")))?;
    let owner = (!caller.is_admin()).then(|| caller.name().to_owned());
    api.write(RootCommand::RemoveInstances { job_id: id, instance_number: n, owner, at_ms: crate::ids::now_ms() }).await?;
    Ok(Json(json!({ "message": "ok" })))
}
