//! Applications: create from an SLA, read, update, delete, list.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use grove_core::sla::{derive_job, parse_sla};
use serde_json::{json, Value};

use super::{body_bytes, json_body, oid, str_field, Api, ApiError, Caller};
use crate::state::{AppRecord, NewApplication, RootCommand, RootState};

pub fn app_document(a: &AppRecord) -> Value {
    json!({
        "_id": oid(&a.id),
        "applicationID": a.id,
        "application_name": a.application_name,
        "application_namespace": a.application_namespace,
        "application_desc": a.application_desc,
        "userId": a.owner,
        "microservices": a.microservices,
    })
}

fn apps_of(s: &RootState, owner: &str) -> Value {
    s.applications_of(owner).map(app_document).collect::<Vec<_>>().into()
}

/// An application the caller may see: their own, or any for an Admin. Others are "not found".
fn visible<'a>(s: &'a RootState, caller: &Caller, id: &str) -> Result<&'a AppRecord, ApiError> {
    s.applications
        .get(id)
        .filter(|a| a.owner == caller.name() || caller.is_admin())
        .ok_or_else(|| ApiError::NotFound(format!("application {id} not found")))
}

/// A full SLA: every application and its microservices are created (or nothing, on any error);
/// answers every application of the caller.
pub async fn create(State(api): State<Api>, caller: Caller, body: Result<Bytes, BytesRejection>) -> Result<Json<Value>, ApiError> {
    let bytes = body_bytes(body)?;
    let sla = parse_sla(&bytes).map_err(|errors| ApiError::InvalidSla { status: StatusCode::UNPROCESSABLE_ENTITY, errors })?;
    let apps = sla
        .applications
        .iter()
        .map(|app| {
            let id = crate::ids::object_id();
            let jobs = app.microservices.iter().map(|ms| derive_job(&id, &crate::ids::object_id(), app, ms)).collect();
            NewApplication {
                id,
                application_name: app.application_name.clone(),
                application_namespace: app.application_namespace.clone(),
                application_desc: app.application_desc.clone(),
                jobs,
            }
        })
        .collect();
    let owner = caller.name().to_owned();
    api.write(RootCommand::CreateApplications { owner: owner.clone(), apps }).await?;
    Ok(Json(api.read(|s| apps_of(s, &owner)).await?))
}

pub async fn get_one(State(api): State<Api>, caller: Caller, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    api.read(|s| visible(s, &caller, &id).map(app_document)).await?.map(Json)
}

/// `{application_name, application_namespace, application_desc}`; `microservices` is managed
/// through the service routes and ignored here.
pub async fn update(
    State(api): State<Api>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let body = json_body(body)?;
    let current = api.read(|s| visible(s, &caller, &id).cloned()).await??;
    let name = match body.get("application_name") {
        Some(_) => str_field(&body, "application_name")?.to_owned(),
        None => current.application_name,
    };
    let namespace = match body.get("application_namespace") {
        Some(_) => str_field(&body, "application_namespace")?.to_owned(),
        None => current.application_namespace,
    };
    let desc = match body.get("application_desc") {
        Some(_) => str_field(&body, "application_desc")?.to_owned(),
        None => current.application_desc,
    };
    api.write(RootCommand::UpdateApplication { id, name, namespace, desc }).await?;
    Ok(Json(json!({ "message": "Application is updated" })))
}

/// Deletes the application and its services (their instances are undeployed).
pub async fn delete(State(api): State<Api>, caller: Caller, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    api.read(|s| visible(s, &caller, &id).map(|_| ())).await??;
    api.write(RootCommand::DeleteApplication { id }).await?;
    Ok(Json(json!({ "message": "Application Deleted" })))
}

/// The caller's applications; `userid` must be the caller's user id.
pub async fn of_user(State(api): State<Api>, caller: Caller, Path(user_id): Path<String>) -> Result<Json<Value>, ApiError> {
    let name = caller.name().to_owned();
    api.read(|s| {
        let me = s.users.get(&name).map(|u| u.id.as_str());
        if me != Some(user_id.as_str()) {
            return Err(ApiError::Unauthorized(format!("user id {user_id} is not the caller's")));
        }
        Ok(apps_of(s, &name))
    })
    .await?
    .map(Json)
}

pub async fn all(State(api): State<Api>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.require_admin()?;
    Ok(Json(api.read(|s| s.applications.values().map(app_document).collect::<Vec<_>>().into()).await?))
}
