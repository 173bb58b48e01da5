//! The shared secret between the root and its cluster tiers: when a deployment sets a cluster
//! token, every call in either direction carries `authorization: Bearer <token>` and the
//! receiving side refuses calls without it.

use std::sync::Arc;

use tonic::service::Interceptor;
use tonic::{Request, Status};

/// Checks the `authorization: Bearer <token>` metadata of every call when a token is
/// configured (without one, every call passes).
#[derive(Clone)]
pub struct TokenCheck {
    expected: Option<Arc<str>>,
}

impl TokenCheck {
    pub fn new(token: Option<String>) -> Self {
        TokenCheck { expected: token.map(Into::into) }
    }
}

impl Interceptor for TokenCheck {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let header = request.metadata().get("authorization").and_then(|v| v.to_str().ok());
        check(self.expected.as_deref(), header).map_err(Status::unauthenticated)?;
        Ok(request)
    }
}

/// Check an `authorization` header value against the expected token (`None`: no token is
/// configured and everything passes); the error says what is wrong.
pub fn check(expected: Option<&str>, authorization: Option<&str>) -> Result<(), &'static str> {
    let Some(expected) = expected else { return Ok(()) };
    match authorization.and_then(|v| v.strip_prefix("Bearer ")) {
        Some(token) if constant_time_eq(token.as_bytes(), expected.as_bytes()) => Ok(()),
        Some(_) => Err("authorization: the cluster token is wrong"),
        None => Err("authorization: a \"Bearer <cluster token>\" header is required"),
    }
}

/// `message` as a request carrying `token` (when there is one).
pub fn with_bearer<T>(message: T, token: Option<&str>) -> Request<T> {
    let mut r = Request::new(message);
    if let Some(value) = token.and_then(|t| format!("Bearer {t}").parse().ok()) {
        r.metadata_mut().insert("authorization", value);
    }
    r
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_check() {
        let mut open = TokenCheck::new(None);
        assert!(open.call(Request::new(())).is_ok());
        let mut check = TokenCheck::new(Some("s3cret".into()));
        assert_eq!(check.call(Request::new(())).unwrap_err().code(), tonic::Code::Unauthenticated);
        let mut with = |v: &str| {
            let mut r = Request::new(());
            r.metadata_mut().insert("authorization", v.parse().unwrap());
            check.call(r)
        };
        assert!(with("Bearer s3cret").is_ok());
        assert!(with("Bearer s3cre").is_err());
        assert!(with("s3cret").is_err());
        let mut check = TokenCheck::new(Some("s3cret".into()));
        assert!(check.call(with_bearer((), Some("s3cret"))).is_ok());
        assert!(check.call(with_bearer((), None)).is_err());
    }
}
