//! `POST /api/auth/login`, `/api/auth/refresh`, `/api/auth/register`.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use super::{body_bytes, json_body, str_field, users::user_document, Api, ApiError, Caller, RefreshCaller};
use crate::auth::{hash_password, verify_password};
use crate::state::{roles, RootCommand, User, ROOT_ORGANIZATION};

/// `{username, password, organization_name?}` (also `organization`, as upstream's schema says)
/// → `{token, refresh_token}`.
pub async fn login(State(api): State<Api>, body: Result<Bytes, BytesRejection>) -> Result<Json<Value>, ApiError> {
    let bytes = body_bytes(body)?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        // Upstream answers a missing body with 403.
        return Err(ApiError::Forbidden);
    }
    let body = json_body(Ok(bytes))?;
    let username = str_field(&body, "username")?.to_owned();
    let password = str_field(&body, "password")?.to_owned();
    let org_name = body
        .get("organization_name")
        .or_else(|| body.get("organization"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or(ROOT_ORGANIZATION)
        .to_owned();
    let (user, org) = api
        .read(|s| (s.users.get(&username).cloned(), s.organization_by_name(&org_name).map(|o| o.id.clone())))
        .await?;
    let org_id = org.ok_or_else(|| ApiError::NotFound(format!("organization {org_name:?} does not exist")))?;
    let user = match user {
        Some(u) if verify_in_background(password, u.password.clone()).await => Some(u),
        _ => None,
    };
    let Some(user) = user else {
        return Err(ApiError::Unauthorized("wrong username or password".into()));
    };
    let roles = api.read(|s| s.roles_of(&user.id, &org_id)).await?;
    let (token, refresh_token) = api.mint_pair(&user.name, roles, &org_id).await?;
    Ok(Json(json!({ "token": token, "refresh_token": refresh_token })))
}

/// A refresh token → `{token}`: a new access token for the same organization, with the roles
/// the user holds now.
pub async fn refresh(State(api): State<Api>, RefreshCaller(claims): RefreshCaller) -> Result<Json<Value>, ApiError> {
    let (user, roles) = api
        .read(|s| {
            let user = s.users.get(&claims.sub).cloned();
            let roles = user.as_ref().map(|u| s.roles_of(&u.id, &claims.organization)).unwrap_or_default();
            (user, roles)
        })
        .await?;
    let user = user.ok_or_else(|| ApiError::NotFound(format!("user {:?} does not exist", claims.sub)))?;
    let (token, _) = api.mint_pair(&user.name, roles, &claims.organization).await?;
    Ok(Json(json!({ "token": token })))
}

/// Admin only: `{name, email, password, created_at, roles[]}` → the user document. The roles
/// are granted in the caller's organization.
pub async fn register(
    State(api): State<Api>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    caller.require_admin()?;
    let body = json_body(body)?;
    let name = str_field(&body, "name")?.to_owned();
    let password = str_field(&body, "password")?.to_owned();
    if name.is_empty() || password.is_empty() {
        return Err(ApiError::BadRequest("name and password must not be empty".into()));
    }
    let email = body.get("email").and_then(Value::as_str).unwrap_or("").to_owned();
    let created_at = match body.get("created_at") {
        Some(Value::String(s)) => s.clone(),
        Some(v @ Value::Number(_)) => v.to_string(),
        _ => crate::ids::now_ms().to_string(),
    };
    let granted = parse_roles(body.get("roles"))?;
    let hash = hash_in_background(&api, password).await?;
    let user = User { id: crate::ids::object_id(), name: name.clone(), email, password: hash, created_at, extra: Default::default() };
    let org_id = caller.0.organization.clone();
    api.write(RootCommand::RegisterUser { user, org_id: org_id.clone(), roles: granted }).await?;
    let doc = api
        .read(|s| s.users.get(&name).map(|u| user_document(s, u, Some(&org_id))))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("user {name:?} was deleted concurrently")))?;
    Ok(Json(doc))
}

/// `roles` as a list of role names (strings or `{"name": …}` objects), each one of the four.
pub fn parse_roles(v: Option<&Value>) -> Result<Vec<String>, ApiError> {
    let Some(v) = v else { return Ok(Vec::new()) };
    let list = v.as_array().ok_or_else(|| ApiError::BadRequest("roles: must be an array of role names".into()))?;
    let mut out = Vec::new();
    for (i, r) in list.iter().enumerate() {
        let name = r.as_str().or_else(|| r.get("name").and_then(Value::as_str)).unwrap_or("");
        if !roles::ALL.contains(&name) {
            return Err(ApiError::BadRequest(format!("roles[{i}]: {r} is not one of {:?}", roles::ALL)));
        }
        if !out.iter().any(|o: &String| o == name) {
            out.push(name.to_owned());
        }
    }
    Ok(out)
}

/// Hash a password off the async workers (PBKDF2 is deliberately slow).
pub async fn hash_in_background(api: &Api, password: String) -> Result<String, ApiError> {
    let iterations = api.settings.password_hash_iterations;
    tokio::task::spawn_blocking(move || hash_password(&password, iterations))
        .await
        .map_err(|e| ApiError::Internal(format!("password hashing failed: {e}")))
}

/// Verify a password off the async workers.
pub async fn verify_in_background(password: String, stored: String) -> bool {
    tokio::task::spawn_blocking(move || verify_password(&password, &stored)).await.unwrap_or(false)
}
