//! HTTP client of the root API: endpoint failover, token refresh, timeouts.
//!
//! Protocol, request by request:
//! - Endpoints are tried in order, starting with the one that answered last. A connection that
//!   cannot be opened, and a `502`/`503`/`504` (a replica without quorum, or a load balancer
//!   without a backend), move on to the next endpoint.
//! - A write (`POST`, `PUT`) is retried elsewhere only when it cannot have taken effect: the
//!   connection was never opened, or the server said "nothing was changed". When the request may
//!   have been applied (timeout or broken connection after sending, a gateway error, a `503`
//!   whose message says the outcome is unknown) the CLI stops with
//!   [`CliError::Indeterminate`] instead of risking a second instance.
//! - A `401` on a request that carried the access token trades the stored refresh token for a
//!   new access token (`POST /api/auth/refresh`), saves it, and sends the request once more.
//! - Every request has a total timeout and a connect timeout.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use reqwest::{header, Method};
use serde_json::Value;

use crate::config::{ConfigStore, Session};
use crate::error::{server_message, CliError};

pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:10000";

/// How the client reaches the root.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    pub endpoints: Vec<String>,
    /// Whole request, from connecting to the last byte of the answer.
    pub timeout: Duration,
    pub connect_timeout: Duration,
}

impl Default for ClientSettings {
    fn default() -> Self {
        ClientSettings { endpoints: vec![DEFAULT_ENDPOINT.into()], timeout: Duration::from_secs(10), connect_timeout: Duration::from_secs(3) }
    }
}

/// `host:port`, `http://host:port/` → `http://host:port`.
pub fn normalize_endpoint(raw: &str) -> Result<String, CliError> {
    let raw = raw.trim().trim_end_matches('/');
    if raw.is_empty() {
        return Err(CliError::Usage("an endpoint is empty: expected a list like http://a:10000,http://b:10000".into()));
    }
    let with_scheme = if raw.contains("://") { raw.to_owned() } else { format!("http://{raw}") };
    let url = reqwest::Url::parse(&with_scheme).map_err(|e| CliError::Usage(format!("endpoint {raw:?} is not a URL: {e}")))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(CliError::Usage(format!("endpoint {raw:?}: only http and https are supported")));
    }
    Ok(with_scheme)
}

/// A comma-separated endpoint list.
pub fn parse_endpoints(list: &str) -> Result<Vec<String>, CliError> {
    list.split(',').filter(|s| !s.trim().is_empty()).map(normalize_endpoint).collect::<Result<Vec<_>, _>>().and_then(|v| {
        if v.is_empty() {
            Err(CliError::Usage("no endpoint given".into()))
        } else {
            Ok(v)
        }
    })
}

/// An answer, whatever its status.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
    pub endpoint: String,
}

impl Answer {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    pub fn json(&self, method: &Method, path: &str) -> Result<Value, CliError> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&self.body).map_err(|e| CliError::BadResponse {
            method: method.to_string(),
            path: path.to_owned(),
            endpoint: self.endpoint.clone(),
            detail: format!("not JSON ({e})"),
        })
    }
}

pub struct Client {
    http: reqwest::Client,
    settings: ClientSettings,
    /// Index of the endpoint that answered last: the next request starts there.
    preferred: AtomicUsize,
    session: Mutex<Option<Session>>,
    /// Where refreshed tokens are saved (none in unit tests).
    store: Option<ConfigStore>,
}

impl Client {
    pub fn new(settings: ClientSettings, session: Option<Session>, store: Option<ConfigStore>) -> Result<Self, CliError> {
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.connect_timeout)
            .user_agent(concat!("grove-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CliError::Usage(format!("cannot set up the HTTP client: {e}")))?;
        Ok(Client { http, settings, preferred: AtomicUsize::new(0), session: Mutex::new(session), store })
    }

    pub fn endpoints(&self) -> &[String] {
        &self.settings.endpoints
    }

    pub fn session(&self) -> Option<Session> {
        self.session.lock().expect("session lock").clone()
    }

    pub fn set_session(&self, session: Option<Session>) {
        *self.session.lock().expect("session lock") = session;
    }

    /// `GET` with the access token; the JSON answer of a 2xx, else an error.
    pub async fn get(&self, path: &str) -> Result<Value, CliError> {
        self.json(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Option<Vec<u8>>) -> Result<Value, CliError> {
        self.json(Method::POST, path, body).await
    }

    pub async fn delete(&self, path: &str) -> Result<Value, CliError> {
        self.json(Method::DELETE, path, None).await
    }

    /// An authenticated request whose 2xx answer is JSON.
    pub async fn json(&self, method: Method, path: &str, body: Option<Vec<u8>>) -> Result<Value, CliError> {
        let answer = self.authenticated(method.clone(), path, body).await?;
        if answer.is_success() {
            answer.json(&method, path)
        } else {
            Err(http_error(&method, path, &answer))
        }
    }

    /// An authenticated request, refreshing the token once on a 401. Any status is returned.
    pub async fn authenticated(&self, method: Method, path: &str, body: Option<Vec<u8>>) -> Result<Answer, CliError> {
        let token = self.access_token()?;
        let answer = self.send(method.clone(), path, body.clone(), Some(&token), idempotent(&method)).await?;
        if answer.status != 401 {
            return Ok(answer);
        }
        // A 401 was decided before anything was done: sending again is safe.
        self.refresh(&answer).await?;
        let token = self.access_token()?;
        self.send(method.clone(), path, body, Some(&token), idempotent(&method)).await
    }

    fn access_token(&self) -> Result<String, CliError> {
        self.session()
            .map(|s| s.token)
            .ok_or_else(|| CliError::NotLoggedIn("not logged in: run `grove login` first".into()))
    }

    /// Trade the refresh token for a new access token and save it.
    async fn refresh(&self, refused: &Answer) -> Result<(), CliError> {
        let Some(mut session) = self.session() else {
            return Err(CliError::NotLoggedIn("not logged in: run `grove login` first".into()));
        };
        let path = "/api/auth/refresh";
        let answer = self.send(Method::POST, path, None, Some(&session.refresh_token), true).await?;
        if !answer.is_success() {
            return Err(CliError::NotLoggedIn(format!(
                "the session has expired (HTTP {}: {}; refresh refused with HTTP {}: {}): run `grove login` again",
                refused.status,
                server_message(&refused.body),
                answer.status,
                server_message(&answer.body)
            )));
        }
        let body = answer.json(&Method::POST, path)?;
        let token = body.get("token").and_then(Value::as_str).ok_or_else(|| CliError::BadResponse {
            method: "POST".into(),
            path: path.into(),
            endpoint: answer.endpoint.clone(),
            detail: "no \"token\" in the answer".into(),
        })?;
        session.token = token.to_owned();
        if let Some(store) = &self.store {
            let saved = session.clone();
            store.update(move |c| c.session = Some(saved))?;
        }
        self.set_session(Some(session));
        Ok(())
    }

    /// One request with failover between endpoints (see the module doc). Returns the first
    /// answer that is not a gateway/availability error.
    pub async fn send(&self, method: Method, path: &str, body: Option<Vec<u8>>, bearer: Option<&str>, idempotent: bool) -> Result<Answer, CliError> {
        let n = self.settings.endpoints.len();
        let start = self.preferred.load(Ordering::Relaxed) % n.max(1);
        let mut attempts = Vec::new();
        for k in 0..n {
            let i = (start + k) % n;
            let endpoint = &self.settings.endpoints[i];
            let indeterminate = |detail: String| CliError::Indeterminate {
                method: method.to_string(),
                path: path.to_owned(),
                detail,
                endpoint: endpoint.clone(),
            };
            let mut request = self.http.request(method.clone(), format!("{endpoint}{path}"));
            if let Some(token) = bearer {
                request = request.bearer_auth(token);
            }
            if let Some(body) = &body {
                request = request.header(header::CONTENT_TYPE, "application/json").body(body.clone());
            }
            let response = match request.send().await {
                Ok(r) => r,
                Err(e) if e.is_connect() => {
                    attempts.push(format!("{endpoint}: cannot connect ({})", root_cause(&e)));
                    continue;
                }
                Err(e) if idempotent => {
                    attempts.push(format!("{endpoint}: {}", describe(&e)));
                    continue;
                }
                Err(e) => return Err(indeterminate(describe(&e))),
            };
            let status = response.status().as_u16();
            let body = match response.bytes().await {
                Ok(b) => b.to_vec(),
                Err(e) if idempotent => {
                    attempts.push(format!("{endpoint}: HTTP {status}, then {}", describe(&e)));
                    continue;
                }
                Err(e) => return Err(indeterminate(format!("HTTP {status}, then {}", describe(&e)))),
            };
            if matches!(status, 502..=504) {
                let message = server_message(&body);
                let unknown = status != 503 || message.contains("outcome is unknown");
                if !idempotent && unknown {
                    return Err(indeterminate(format!("HTTP {status}: {message}")));
                }
                attempts.push(format!("{endpoint}: HTTP {status}: {message}"));
                continue;
            }
            self.preferred.store(i, Ordering::Relaxed);
            return Ok(Answer { status, body, endpoint: endpoint.clone() });
        }
        Err(CliError::Unreachable { method: method.to_string(), path: path.to_owned(), attempts })
    }

    /// One unauthenticated `GET` to one endpoint, no failover (used to ask each replica about
    /// itself). Any status is returned.
    pub async fn get_from(&self, endpoint: &str, path: &str) -> Result<Answer, String> {
        let response = self.http.get(format!("{endpoint}{path}")).send().await.map_err(|e| describe(&e))?;
        let status = response.status().as_u16();
        let body = response.bytes().await.map_err(|e| describe(&e))?.to_vec();
        Ok(Answer { status, body, endpoint: endpoint.to_owned() })
    }
}

/// `GET`, `DELETE`, `PUT` of a whole resource change nothing when repeated; `POST` may.
pub fn idempotent(method: &Method) -> bool {
    !matches!(*method, Method::POST | Method::PATCH)
}

pub fn http_error(method: &Method, path: &str, answer: &Answer) -> CliError {
    CliError::Http {
        method: method.to_string(),
        path: path.to_owned(),
        status: answer.status,
        message: server_message(&answer.body),
        endpoint: answer.endpoint.clone(),
    }
}

fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        format!("timed out ({})", root_cause(e))
    } else {
        root_cause(e)
    }
}

/// The innermost cause ("Connection refused (os error 111)") rather than reqwest's outer
/// "error sending request for url (…)".
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur: &(dyn std::error::Error + 'static) = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_get_a_scheme_and_lose_the_trailing_slash() {
        assert_eq!(normalize_endpoint("127.0.0.1:10000").unwrap(), "http://127.0.0.1:10000");
        assert_eq!(normalize_endpoint(" https://lb.example:443/ ").unwrap(), "https://lb.example:443");
        assert_eq!(
            parse_endpoints("a:1, http://b:2,,c:3").unwrap(),
            vec!["http://a:1".to_owned(), "http://b:2".into(), "http://c:3".into()]
        );
        assert!(parse_endpoints(" , ").unwrap_err().to_string().contains("no endpoint"));
        assert!(normalize_endpoint("ftp://x").unwrap_err().to_string().contains("only http and https"));
    }

    #[test]
    fn only_posts_are_not_idempotent() {
        assert!(idempotent(&Method::GET));
        assert!(idempotent(&Method::DELETE));
        assert!(!idempotent(&Method::POST));
    }

    #[tokio::test]
    async fn not_logged_in_is_said_before_any_request() {
        let client = Client::new(ClientSettings { endpoints: vec!["http://127.0.0.1:9".into()], ..Default::default() }, None, None).unwrap();
        let err = client.get("/api/clusters/").await.unwrap_err();
        assert!(matches!(err, CliError::NotLoggedIn(_)), "{err}");
        assert!(err.to_string().contains("grove login"));
    }
}
