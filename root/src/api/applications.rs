//! Applications: create from an SLA, read, update, delete, list.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use grove_core::sla::{derive_job, parse_sla};
use serde::Serialize;
use serde_json::{json, Value};

use super::{body_bytes, json_body, str_field, Api, ApiError, Caller};
use crate::state::{AppRecord, NewApplication, RootCommand, RootState};

/// An application as upstream answers it, serialised straight from the record: lists of
/// applications (every create answers all of the caller's) cost one pass and no JSON tree.
#[derive(Serialize)]
struct AppDocument<'a> {
    #[serde(rename = "_id")]
    oid: Oid<'a>,
    #[serde(rename = "applicationID")]
    application_id: &'a str,
    application_name: &'a str,
    application_namespace: &'a str,
    application_desc: &'a str,
    #[serde(rename = "userId")]
    user_id: &'a str,
    microservices: &'a [String],
}

#[derive(Serialize)]
struct Oid<'a> {
    #[serde(rename = "$oid")]
    oid: &'a str,
}

impl<'a> From<&'a AppRecord> for AppDocument<'a> {
    fn from(a: &'a AppRecord) -> Self {
        AppDocument {
            oid: Oid { oid: &a.id },
            application_id: &a.id,
            application_name: &a.application_name,
            application_namespace: &a.application_namespace,
            application_desc: &a.application_desc,
            user_id: &a.owner,
            microservices: &a.microservices,
        }
    }
}

/// A JSON array of `apps`' documents, as an HTTP answer's body.
fn app_list<'a>(apps: impl Iterator<Item = &'a AppRecord>) -> Vec<u8> {
    let mut out = Vec::with_capacity(4096);
    out.push(b'[');
    for (i, a) in apps.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut out, &AppDocument::from(a)).expect("serialising to memory cannot fail");
    }
    out.push(b']');
    out
}

fn json_response(body: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

pub fn app_document(a: &AppRecord) -> Value {
    serde_json::to_value(AppDocument::from(a)).expect("an application document is valid JSON")
}

fn apps_of(s: &RootState, owner: &str) -> Vec<u8> {
    app_list(s.applications_of(owner))
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
pub async fn create(State(api): State<Api>, caller: Caller, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
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
    // The answer (all the caller's applications) is read where the write was applied, with
    // no second round to the leader.
    let list = api.write_then_read(RootCommand::CreateApplications { owner: owner.clone(), apps }, |s| apps_of(s, &owner)).await?;
    Ok(json_response(list))
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
pub async fn of_user(State(api): State<Api>, caller: Caller, Path(user_id): Path<String>) -> Result<Response, ApiError> {
    let name = caller.name().to_owned();
    api.read(|s| {
        let me = s.users.get(&name).map(|u| u.id.as_str());
        if me != Some(user_id.as_str()) {
            return Err(ApiError::Unauthorized(format!("user id {user_id} is not the caller's")));
        }
        Ok(apps_of(s, &name))
    })
    .await?
    .map(json_response)
}

pub async fn all(State(api): State<Api>, caller: Caller) -> Result<Response, ApiError> {
    caller.require_admin()?;
    Ok(json_response(api.read(|s| app_list(s.applications.values())).await?))
}
