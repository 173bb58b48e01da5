//! The Oakestra System Manager REST API (contract §1.3) on every replica.
//!
//! Writes go through Raft ([`Api::write`], answered after commit, forwarded to the leader by
//! grove-raft); reads are linearizable ([`Api::read`]). One file per resource; errors become
//! HTTP answers in [`error`].

pub mod applications;
pub mod auth;
pub mod clusters;
pub mod docs;
pub mod error;
pub mod ops;
pub mod services;
pub mod users;
pub mod workers;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{any, get, post, put};
use axum::Router;
use grove_raft::Replica;
use serde_json::Value;

use crate::auth::{Claims, SigningKeys, TokenType};
use crate::state::{Applied, RootCommand, RootState};
pub use error::ApiError;

/// Settings of the REST API.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    pub max_body_bytes: usize,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    pub password_hash_iterations: u32,
    /// Presented to cluster tiers on the calls the API makes to them (`GET /api/workers/`).
    pub cluster_token: Option<String>,
    /// Bound on each such call.
    pub cluster_call_timeout: Duration,
}

impl Default for ApiSettings {
    fn default() -> Self {
        ApiSettings {
            max_body_bytes: 1 << 20,
            access_token_ttl: Duration::from_secs(600),
            refresh_token_ttl: Duration::from_secs(30 * 24 * 3600),
            password_hash_iterations: 100_000,
            cluster_token: None,
            cluster_call_timeout: Duration::from_secs(2),
        }
    }
}

/// Shared by every handler of one replica.
#[derive(Clone)]
pub struct Api {
    pub replica: Replica<RootState>,
    pub settings: Arc<ApiSettings>,
    keys: Arc<RwLock<Option<Arc<SigningKeys>>>>,
    pub metrics: Arc<HttpMetrics>,
    cluster_channels: workers::ClusterChannels,
}

impl Api {
    pub fn new(replica: Replica<RootState>, settings: ApiSettings) -> Self {
        Api { replica, settings: Arc::new(settings), keys: Arc::new(RwLock::new(None)), metrics: Arc::new(HttpMetrics::default()), cluster_channels: Default::default() }
    }

    /// Commit `command`; the state machine's refusal becomes a 4xx.
    pub async fn write(&self, command: RootCommand) -> Result<Applied, ApiError> {
        Ok(self.replica.write(command).await??)
    }

    /// Commit `command`, then `read` the state that includes it (on this replica, once it has
    /// applied the write; linearizable without a second round to the leader).
    pub async fn write_then_read<T>(&self, command: RootCommand, read: impl FnOnce(&RootState) -> T) -> Result<T, ApiError> {
        let (applied, answer) = self.replica.write_then_read(command, read).await?;
        applied?;
        Ok(answer)
    }

    /// Read state that reflects every write acknowledged before this call.
    pub async fn read<T>(&self, read: impl FnOnce(&RootState) -> T) -> Result<T, ApiError> {
        Ok(self.replica.read_linearizable(read).await?)
    }

    /// The committed signing key (cached after the first read).
    pub async fn keys(&self) -> Result<Arc<SigningKeys>, ApiError> {
        if let Some(k) = self.keys.read().expect("keys lock").clone() {
            return Ok(k);
        }
        let pem = self.read(|s| s.signing_key.clone()).await?;
        let pem = pem.ok_or_else(|| ApiError::Unavailable("the token signing key is not committed yet; retry shortly".into()))?;
        self.install_key(&pem).map_err(ApiError::from)
    }

    pub(crate) fn install_key(&self, pem: &str) -> Result<Arc<SigningKeys>, crate::auth::AuthError> {
        let keys = Arc::new(SigningKeys::from_private_pem(pem)?);
        *self.keys.write().expect("keys lock") = Some(keys.clone());
        Ok(keys)
    }

    pub fn has_key(&self) -> bool {
        self.keys.read().expect("keys lock").is_some()
    }

    /// Mint an access and a refresh token.
    pub async fn mint_pair(&self, user: &str, roles: Vec<String>, org_id: &str) -> Result<(String, String), ApiError> {
        let keys = self.keys().await?;
        let now = crate::ids::now_ms() / 1000;
        let access = Claims::new(user, roles.clone(), org_id, TokenType::Access, now, self.settings.access_token_ttl.as_secs());
        let refresh = Claims::new(user, roles, org_id, TokenType::Refresh, now, self.settings.refresh_token_ttl.as_secs());
        Ok((keys.mint(&access)?, keys.mint(&refresh)?))
    }

    async fn verify_bearer(&self, parts: &Parts, expected: TokenType) -> Result<Claims, ApiError> {
        let header = parts.headers.get(header::AUTHORIZATION).and_then(|h| h.to_str().ok()).unwrap_or("");
        let token = header
            .strip_prefix("Bearer ")
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ApiError::Unauthorized("Missing authentication token".into()))?;
        Ok(self.keys().await?.verify(token, expected)?)
    }
}

/// The caller of a route that needs an access token.
pub struct Caller(pub Claims);

impl Caller {
    pub fn require_role(&self, role: &str) -> Result<(), ApiError> {
        if self.0.has_role(role) {
            Ok(())
        } else {
            Err(ApiError::Forbidden)
        }
    }

    pub fn require_admin(&self) -> Result<(), ApiError> {
        self.require_role(crate::state::roles::ADMIN)
    }

    pub fn is_admin(&self) -> bool {
        self.0.has_role(crate::state::roles::ADMIN)
    }

    pub fn name(&self) -> &str {
        &self.0.sub
    }

    /// `identity_is_username`: the path's user must be the caller.
    pub fn require_self(&self, username: &str) -> Result<(), ApiError> {
        if self.0.sub == username {
            Ok(())
        } else {
            Err(ApiError::Forbidden)
        }
    }
}

impl FromRequestParts<Api> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, api: &Api) -> Result<Self, ApiError> {
        api.verify_bearer(parts, TokenType::Access).await.map(Caller)
    }
}

/// The caller of `POST /api/auth/refresh`, holding a refresh token.
pub struct RefreshCaller(pub Claims);

impl FromRequestParts<Api> for RefreshCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, api: &Api) -> Result<Self, ApiError> {
        api.verify_bearer(parts, TokenType::Refresh).await.map(RefreshCaller)
    }
}

/// A request body as JSON: 413 when over the limit, 400 naming line and column when not JSON.
pub fn json_body(body: Result<Bytes, BytesRejection>) -> Result<Value, ApiError> {
    let bytes = body_bytes(body)?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest("request body is empty; expected a JSON object".into()));
    }
    serde_json::from_slice(&bytes).map_err(|e| ApiError::BadRequest(format!("request body is not valid JSON: {e}")))
}

pub fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge("request body exceeds the size limit (max_body_bytes)".into())
        } else {
            ApiError::BadRequest(format!("cannot read the request body: {e}"))
        }
    })
}

/// A string field of a JSON object, or a 400 naming it.
pub fn str_field<'a>(v: &'a Value, key: &str) -> Result<&'a str, ApiError> {
    match v.get(key) {
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(ApiError::BadRequest(format!("{key}: must be a string, found {}", json_type(other)))),
        None => Err(ApiError::BadRequest(format!("{key}: is required"))),
    }
}

pub use grove_core::sla::type_name as json_type;

/// `{"$oid": id}`.
pub fn oid(id: &str) -> Value {
    serde_json::json!({ "$oid": id })
}

/// Request counts and latency per route and status, for `/metrics`.
#[derive(Default)]
pub struct HttpMetrics {
    pub requests: Mutex<BTreeMap<(String, String, u16), (u64, f64)>>,
}

async fn observe(State(api): State<Api>, request: Request, next: Next) -> Response {
    let method = request.method().to_string();
    let route = request.extensions().get::<MatchedPath>().map(|m| m.as_str().to_owned()).unwrap_or_else(|| "unmatched".into());
    let started = Instant::now();
    let mut response = next.run(request).await;
    let elapsed = started.elapsed().as_secs_f64();
    {
        let mut m = api.metrics.requests.lock().expect("metrics lock");
        let e = m.entry((method, route, response.status().as_u16())).or_default();
        e.0 += 1;
        e.1 += elapsed;
    }
    // Upstream answers CORS `*` on every route.
    response.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    response
}

async fn preflight(request: Request, next: Next) -> Response {
    if request.method() == Method::OPTIONS {
        let mut r = StatusCode::NO_CONTENT.into_response();
        let h = r.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST, PUT, DELETE, OPTIONS"));
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("Authorization, Content-Type"));
        return r;
    }
    next.run(request).await
}

/// Collection routes are declared with a trailing slash; without it, upstream (Flask) answers
/// 308 to the slashed path.
const SLASHED: [&str; 9] = [
    "/api/application",
    "/api/applications",
    "/api/service",
    "/api/services",
    "/api/users",
    "/api/user",
    "/api/clusters",
    "/api/organization",
    "/api/workers",
];

/// Every route of the API.
pub fn router(api: Api) -> Router {
    let limit = api.settings.max_body_bytes;
    let mut router = Router::new()
        .route("/api/auth/login", post(auth::login))
        .route("/api/auth/refresh", post(auth::refresh))
        .route("/api/auth/register", post(auth::register))
        .route("/api/permission/{username}", get(users::permission))
        .route("/api/user/{username}", get(users::get_user).put(users::put_user).delete(users::delete_user).post(users::change_password))
        .route("/api/user/", post(users::reset_request).put(users::reset_confirm))
        .route("/api/users/", get(users::all_users))
        .route("/api/users/{organization_id}", get(users::organization_users))
        .route("/api/organization/", get(users::list_organizations).post(users::create_organization))
        .route("/api/organization/{id}", put(users::update_organization).delete(users::delete_organization))
        .route("/api/application/", post(applications::create))
        .route("/api/application/{appid}", get(applications::get_one).put(applications::update).delete(applications::delete))
        .route("/api/applications/", get(applications::all))
        .route("/api/applications/{userid}", get(applications::of_user))
        .route("/api/service/", post(services::create))
        .route("/api/service/{serviceid}", get(services::get_one).put(services::update).delete(services::delete))
        .route("/api/services/", get(services::all))
        .route("/api/services/{appid}", get(services::of_application))
        .route("/api/service/{serviceid}/instance", post(services::scale_up))
        .route("/api/service/{serviceid}/instance/{n}", axum::routing::delete(services::scale_down))
        .route("/api/clusters/", get(clusters::all))
        .route("/api/clusters/active", get(clusters::active))
        .route("/api/workers/", get(workers::all))
        .route("/api/information/{cluster_id}", post(clusters::information))
        .route("/api/result/deploy", post(clusters::result_deploy))
        .route("/frontend/uploader", any(ops::uploader))
        .route("/api/raft/status", get(ops::raft_status))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/docs/openapi.json", get(docs::openapi))
        .route("/api/docs", get(docs::page));
    for path in SLASHED {
        let target = format!("{path}/");
        router = router.route(
            path,
            any(move || {
                let target = target.clone();
                async move { Redirect::permanent(&target) }
            }),
        );
    }
    router
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn_with_state(api.clone(), observe))
        .layer(axum::middleware::from_fn(preflight))
        .with_state(api)
}

/// Serve the API on `listener` until `shutdown` resolves.
pub async fn serve(
    api: Api,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // TCP_NODELAY on every connection: an answer must not wait for the client's delayed ACK.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("TCP_NODELAY not set: {e}");
        }
    });
    axum::serve(listener, router(api)).with_graceful_shutdown(shutdown).await
}
