//! The CLI's one error type. Each variant prints as one sentence a person can act on; the
//! binary prints it and exits non-zero.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The server answered with an error status.
    #[error("{method} {path} failed: HTTP {status}{reason}: {message} (from {endpoint})", reason = reason_suffix(*status))]
    Http { method: String, path: String, status: u16, message: String, endpoint: String },

    /// No endpoint could be reached or every one answered 503.
    #[error("{method} {path} failed on every endpoint: {}", attempts.join("; "))]
    Unreachable { method: String, path: String, attempts: Vec<String> },

    /// A write may or may not have been applied (the connection broke or timed out after the
    /// request was sent, or the server said the outcome is unknown): never retried blindly.
    #[error("{method} {path}: the outcome is unknown ({detail}) at {endpoint}; check the state before retrying")]
    Indeterminate { method: String, path: String, detail: String, endpoint: String },

    /// No stored session, or the refresh token was refused.
    #[error("{0}")]
    NotLoggedIn(String),

    /// The server answered something the CLI cannot read.
    #[error("{method} {path}: unexpected answer from {endpoint}: {detail}")]
    BadResponse { method: String, path: String, endpoint: String, detail: String },

    /// The answer is incomplete (what could be shown was shown).
    #[error("{0}")]
    Partial(String),

    /// The root does not serve a route this command needs.
    #[error("{0}")]
    MissingRoute(String),

    #[error("{path}: {detail}")]
    File { path: PathBuf, detail: String },

    #[error("{0}")]
    Usage(String),

    /// `status --watch` ended with failed instances or timed out.
    #[error("{0}")]
    WatchFailed(String),
}

fn reason_suffix(status: u16) -> String {
    reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .map(|r| format!(" {r}"))
        .unwrap_or_default()
}

/// The message of an error body: Grove's `message`, flask-jwt-extended's `msg`, the field
/// errors of an invalid SLA, or the text itself.
pub fn server_message(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body).trim().to_owned();
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return if text.is_empty() { "(empty body)".into() } else { truncate(&text, 300) };
    };
    let mut message = v
        .get("message")
        .or_else(|| v.get("msg"))
        .and_then(|m| m.as_str())
        .map(str::to_owned)
        .or_else(|| v.get("status").and_then(|m| m.as_str()).map(str::to_owned))
        .unwrap_or_else(|| truncate(&text, 300));
    if let Some(errors) = v.get("errors").and_then(|e| e.as_array()) {
        let fields: Vec<String> = errors
            .iter()
            .filter_map(|e| Some(format!("{}: {}", e.get("field")?.as_str()?, e.get("rule")?.as_str()?)))
            .collect();
        if !fields.is_empty() && !fields.iter().all(|f| message.contains(f.as_str())) {
            message = format!("{message} [{}]", fields.join("; "));
        }
    }
    message
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        format!("{}…", s.chars().take(max).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_error_is_one_sentence_with_status_and_message() {
        let e = CliError::Http {
            method: "POST".into(),
            path: "/api/application/".into(),
            status: 409,
            message: "application demo.test already exists".into(),
            endpoint: "http://127.0.0.1:10000".into(),
        };
        assert_eq!(
            e.to_string(),
            "POST /api/application/ failed: HTTP 409 Conflict: application demo.test already exists (from http://127.0.0.1:10000)"
        );
        assert!(!e.to_string().contains('\n'));
    }

    #[test]
    fn server_message_prefers_message_then_msg_then_text() {
        assert_eq!(server_message(br#"{"code":404,"status":"Not Found","message":"service x not found"}"#), "service x not found");
        assert_eq!(server_message(br#"{"msg":"Token has expired"}"#), "Token has expired");
        assert_eq!(server_message(br#"{"code":503,"status":"Service Unavailable"}"#), "Service Unavailable");
        assert_eq!(server_message(b"<html>bad gateway</html>"), "<html>bad gateway</html>");
        assert_eq!(server_message(b""), "(empty body)");
    }

    #[test]
    fn sla_field_errors_are_named() {
        let body = br#"{"code":422,"message":"invalid SLA","errors":[{"field":"applications[0].application_name","rule":"must match ^[a-zA-Z0-9]{1,30}$"}]}"#;
        assert_eq!(
            server_message(body),
            "invalid SLA [applications[0].application_name: must match ^[a-zA-Z0-9]{1,30}$]"
        );
    }
}
