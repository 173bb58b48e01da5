//! Users, permissions and organizations.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::Json;
use serde_json::{json, Value};

use super::auth::{hash_in_background, parse_roles, verify_in_background};
use super::{json_body, oid, str_field, Api, ApiError, Caller};
use crate::state::{Member, Organization, RootCommand, RootState, User};

/// A user as clients see it: never the password hash (upstream leaked it). `roles` are the
/// roles in `org` (the caller's organization) when given.
pub fn user_document(s: &RootState, u: &User, org: Option<&str>) -> Value {
    let mut doc = Value::Object(u.extra.clone());
    doc["_id"] = oid(&u.id);
    doc["name"] = json!(u.name);
    doc["email"] = json!(u.email);
    doc["created_at"] = json!(u.created_at);
    let roles = match org {
        Some(org) => s.roles_of(&u.id, org),
        None => {
            let mut all: Vec<String> = s.organizations.values().flat_map(|o| o.member.iter()).filter(|m| m.user_id == u.id).flat_map(|m| m.roles.clone()).collect();
            all.sort();
            all.dedup();
            all
        }
    };
    doc["roles"] = json!(roles);
    doc
}

fn organization_document(o: &Organization) -> Value {
    json!({ "_id": oid(&o.id), "name": o.name, "member": o.member })
}

pub async fn permission(State(api): State<Api>, caller: Caller, Path(username): Path<String>) -> Result<Json<Value>, ApiError> {
    caller.require_self(&username)?;
    let org = caller.0.organization.clone();
    let roles = api
        .read(|s| s.users.get(&username).map(|u| s.roles_of(&u.id, &org)))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("user {username:?} does not exist")))?;
    Ok(Json(json!({ "roles": roles })))
}

pub async fn get_user(State(api): State<Api>, caller: Caller, Path(username): Path<String>) -> Result<Json<Value>, ApiError> {
    caller.require_self(&username)?;
    let org = caller.0.organization.clone();
    api.read(|s| s.users.get(&username).map(|u| user_document(s, u, Some(&org))))
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("user {username:?} does not exist")))
}

/// Admin: overwrite user fields; `roles` go into the caller's organization. Answers `"ok"`.
pub async fn put_user(
    State(api): State<Api>,
    caller: Caller,
    Path(username): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    caller.require_admin()?;
    let body = json_body(body)?;
    let fields = body.as_object().cloned().ok_or_else(|| ApiError::BadRequest("body: must be a JSON object".into()))?;
    let roles = match fields.get("roles") {
        Some(r) => Some(parse_roles(Some(r))?),
        None => None,
    };
    api.write(RootCommand::UpdateUser { name: username, fields, roles, org_id: caller.0.organization.clone() }).await?;
    Ok(Json(json!("ok")))
}

/// Admin: delete a user; answers the remaining users.
pub async fn delete_user(State(api): State<Api>, caller: Caller, Path(username): Path<String>) -> Result<Json<Value>, ApiError> {
    caller.require_admin()?;
    api.write(RootCommand::DeleteUser { name: username }).await?;
    all_users_doc(&api).await
}

/// The user changes their password: `{oldPassword, newPassword}` → `{}`.
pub async fn change_password(
    State(api): State<Api>,
    caller: Caller,
    Path(username): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    caller.require_self(&username)?;
    let body = json_body(body)?;
    let old = str_field(&body, "oldPassword")?.to_owned();
    let new = str_field(&body, "newPassword")?.to_owned();
    if new.is_empty() {
        return Err(ApiError::BadRequest("newPassword: must not be empty".into()));
    }
    if new == old {
        return Err(ApiError::BadRequest("newPassword: must differ from oldPassword".into()));
    }
    let stored = api
        .read(|s| s.users.get(&username).map(|u| u.password.clone()))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("user {username:?} does not exist")))?;
    if !verify_in_background(old, stored.clone()).await {
        return Err(ApiError::BadRequest("oldPassword: is wrong".into()));
    }
    let new_hash = hash_in_background(&api, new).await?;
    api.write(RootCommand::ChangePassword { name: username, expected_hash: stored, new_hash }).await?;
    Ok(Json(json!({})))
}

/// Password reset by mail needs a mail server, which Grove does not configure.
pub async fn reset_request() -> ApiError {
    ApiError::NotImplemented("password reset by e-mail is not implemented in Grove; an Admin can set a password with PUT /api/user/<name>".into())
}

pub async fn reset_confirm() -> ApiError {
    reset_request().await
}

async fn all_users_doc(api: &Api) -> Result<Json<Value>, ApiError> {
    Ok(Json(api.read(|s| s.users.values().map(|u| user_document(s, u, None)).collect::<Vec<_>>().into()).await?))
}

pub async fn all_users(State(api): State<Api>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.require_admin()?;
    all_users_doc(&api).await
}

pub async fn organization_users(State(api): State<Api>, caller: Caller, Path(org_id): Path<String>) -> Result<Json<Value>, ApiError> {
    caller.require_admin()?;
    api.read(|s| {
        let org = s.organizations.get(&org_id)?;
        let users: Vec<Value> =
            org.member.iter().filter_map(|m| s.user_by_id(&m.user_id)).map(|u| user_document(s, u, Some(&org_id))).collect();
        Some(Value::from(users))
    })
    .await?
    .map(Json)
    .ok_or_else(|| ApiError::NotFound(format!("organization {org_id} does not exist")))
}

pub async fn list_organizations(State(api): State<Api>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.require_admin()?;
    Ok(Json(api.read(|s| s.organizations.values().map(organization_document).collect::<Vec<_>>().into()).await?))
}

fn parse_organization(body: &Value) -> Result<(String, Vec<Member>), ApiError> {
    let name = str_field(body, "name")?.to_owned();
    let member = match body.get("member") {
        None | Some(Value::Null) => Vec::new(),
        Some(m) => serde_json::from_value::<Vec<Member>>(m.clone())
            .map_err(|e| ApiError::BadRequest(format!("member: must be a list of {{user_id, roles}}: {e}")))?,
    };
    Ok((name, member))
}

/// Admin: `{name, member}` → the new id as `{"$oid": …}`.
pub async fn create_organization(State(api): State<Api>, caller: Caller, body: Result<Bytes, BytesRejection>) -> Result<Json<Value>, ApiError> {
    caller.require_admin()?;
    let (name, member) = parse_organization(&json_body(body)?)?;
    let id = crate::ids::object_id();
    api.write(RootCommand::CreateOrganization { org: Organization { id: id.clone(), name, member } }).await?;
    Ok(Json(oid(&id)))
}

pub async fn update_organization(
    State(api): State<Api>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    caller.require_admin()?;
    let (name, member) = parse_organization(&json_body(body)?)?;
    api.write(RootCommand::UpdateOrganization { id, name, member }).await?;
    Ok(Json(json!({ "message": "Organization is updated" })))
}

pub async fn delete_organization(State(api): State<Api>, caller: Caller, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    caller.require_admin()?;
    api.write(RootCommand::DeleteOrganization { id }).await?;
    Ok(Json(json!({ "message": "Organization deleted" })))
}
