//! Registration: `POST /api/node/register` with the Node JSON (contract §4.2) to the first
//! cluster endpoint that answers, round after round with exponential back-off.

use std::time::Duration;

use grove_core::node::NodeInfo;
use grove_core::worker_protocol::RegisterResponse;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::error::{Result, WorkerError};

/// A successful registration.
#[derive(Debug, Clone)]
pub struct Registration {
    pub response: RegisterResponse,
    /// Index in the endpoint list of the endpoint that answered.
    pub endpoint_index: usize,
}

/// `host:port` → `http://host:port`; URLs are kept.
pub fn endpoint_url(endpoint: &str) -> String {
    let e = endpoint.trim().trim_end_matches('/');
    if e.contains("://") {
        e.to_owned()
    } else {
        format!("http://{e}")
    }
}

/// The host of an endpoint (for deriving broker addresses).
pub fn endpoint_host(endpoint: &str) -> Option<String> {
    let url = endpoint_url(endpoint);
    let rest = url.split_once("://")?.1;
    let authority = rest.split('/').next()?;
    let host = match authority.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => h,
        _ => authority,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (!host.is_empty()).then(|| host.to_owned())
}

async fn register_once(http: &reqwest::Client, endpoint: &str, node: &NodeInfo) -> Result<RegisterResponse> {
    let url = format!("{}/api/node/register", endpoint_url(endpoint));
    let err = |message: String| WorkerError::Registration { endpoint: endpoint.to_owned(), message };
    let resp = http.post(&url).json(node).send().await.map_err(|e| err(e.to_string()))?;
    if !resp.status().is_success() {
        return Err(err(format!("HTTP {}", resp.status())));
    }
    let body: RegisterResponse = resp.json().await.map_err(|e| err(format!("bad reply: {e}")))?;
    if body.id.is_empty() {
        return Err(err("reply without a node id".into()));
    }
    Ok(body)
}

/// Registers, retrying across `endpoints` until one answers or `cancel` fires (then `None`).
pub async fn register(
    endpoints: &[String],
    node: &NodeInfo,
    request_timeout: Duration,
    max_backoff: Duration,
    cancel: &CancellationToken,
) -> Result<Option<Registration>> {
    let http = reqwest::Client::builder()
        .timeout(request_timeout)
        .build()
        .map_err(|e| WorkerError::Registration { endpoint: String::new(), message: e.to_string() })?;
    let mut backoff = Duration::from_millis(250);
    loop {
        for (i, endpoint) in endpoints.iter().enumerate() {
            tokio::select! {
                _ = cancel.cancelled() => return Ok(None),
                r = register_once(&http, endpoint, node) => match r {
                    Ok(response) => {
                        info!(endpoint = %endpoint, node_id = %response.id, mqtt_port = %response.mqtt_broker_port, "registered with cluster");
                        return Ok(Some(Registration { response, endpoint_index: i }));
                    }
                    Err(e) => warn!(error = %e, "registration attempt failed"),
                }
            }
        }
        warn!(retry_in_ms = backoff.as_millis() as u64, "no cluster endpoint accepted the registration");
        tokio::select! {
            _ = cancel.cancelled() => return Ok(None),
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(max_backoff);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(endpoint_url("10.0.0.1:10100"), "http://10.0.0.1:10100");
        assert_eq!(endpoint_url("https://c.example:443/"), "https://c.example:443");
        assert_eq!(endpoint_host("10.0.0.1:10100").as_deref(), Some("10.0.0.1"));
        assert_eq!(endpoint_host("http://[::1]:10100").as_deref(), Some("::1"));
        assert_eq!(endpoint_host("cluster.local").as_deref(), Some("cluster.local"));
    }
}
