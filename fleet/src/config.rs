//! What a fleet simulates: one documented struct, checked by [`FleetConfig::validate`].

use std::time::Duration;

use crate::FleetError;

#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// The cluster tier's registration endpoints (`host:port` or `http://host:port`, the
    /// cluster's port 10100). Worker `i` tries endpoint `i mod len` first, then the others.
    pub cluster_endpoints: Vec<String>,
    /// MQTT brokers `(host, port)`, in failover order; worker `i` starts at broker `i mod len`.
    /// Empty: the broker of the registration answer (the answering endpoint's host and its
    /// `MQTT_BROKER_PORT`), as a Node Engine does.
    pub brokers: Vec<(String, u16)>,
    /// How many workers to simulate.
    pub workers: usize,
    /// Hostname prefix: worker `i` registers as `<prefix><i>` (same hostname, same worker id at
    /// the cluster, so two fleets on one cluster need different prefixes).
    pub prefix: String,
    /// Period of the `information` and `jobs/resources` reports (the contract's 2 s).
    pub report_period: Duration,
    /// Simulated start-up time of an instance, from the deploy command to `CREATED`.
    pub startup: Duration,
    /// Fraction (0–1) of deploys that fail instead of running.
    pub failure_rate: f64,
    /// Of the failing deploys, the fraction that start (`CREATED`) and then die (`DEAD`, "exit
    /// code 1"); the rest fail to start (`FAILED`).
    pub dead_share: f64,
    /// Seed of the failure draws: the same seed fails the same (worker, instance, attempt).
    pub seed: u64,
    /// Cores each worker offers (Node JSON `vcpus`).
    pub vcpus: u32,
    /// Available memory each worker reports, MB (Node JSON `memory`).
    pub memory_mb: u64,
    /// Registrations in flight at once.
    pub register_concurrency: usize,
    /// A worker that has not registered after this long fails [`crate::Fleet::start`].
    pub register_timeout: Duration,
    /// Bound on every HTTP call, and on establishing an MQTT connection.
    pub request_timeout: Duration,
    /// MQTT keep-alive (the Node Engine's 5 s).
    pub keep_alive: Duration,
}

impl Default for FleetConfig {
    fn default() -> Self {
        FleetConfig {
            cluster_endpoints: Vec::new(),
            brokers: Vec::new(),
            workers: 10,
            prefix: "hollow-".into(),
            report_period: Duration::from_secs(2),
            startup: Duration::ZERO,
            failure_rate: 0.0,
            dead_share: 0.5,
            seed: 1,
            vcpus: 4,
            memory_mb: 8192,
            register_concurrency: 64,
            register_timeout: Duration::from_secs(300),
            request_timeout: Duration::from_secs(10),
            keep_alive: Duration::from_secs(5),
        }
    }
}

impl FleetConfig {
    /// Check what the types do not, naming the setting.
    pub fn validate(&self) -> Result<(), FleetError> {
        let bad = |m: String| Err(FleetError::Config(m));
        if self.cluster_endpoints.is_empty()
            || self.cluster_endpoints.iter().any(|e| e.trim().is_empty())
        {
            return bad("cluster_endpoints: give at least one non-empty endpoint".into());
        }
        if self.workers == 0 {
            return bad("workers: must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&self.failure_rate) {
            return bad(format!(
                "failure_rate {}: must be between 0 and 1",
                self.failure_rate
            ));
        }
        if !(0.0..=1.0).contains(&self.dead_share) {
            return bad(format!(
                "dead_share {}: must be between 0 and 1",
                self.dead_share
            ));
        }
        if self.report_period.is_zero() {
            return bad("report_period: must be positive".into());
        }
        if self.register_concurrency == 0 {
            return bad("register_concurrency: must be at least 1".into());
        }
        if self.request_timeout.is_zero() || self.keep_alive < Duration::from_secs(1) {
            return bad("request_timeout must be positive and keep_alive at least 1 s".into());
        }
        if self.prefix.is_empty()
            || !self
                .prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        {
            return bad(format!(
                "prefix {:?}: use letters, digits, '-', '_' and '.'",
                self.prefix
            ));
        }
        Ok(())
    }
}

/// `host:port` → `http://host:port`; URLs are kept (without a trailing slash).
pub fn endpoint_url(endpoint: &str) -> String {
    let e = endpoint.trim().trim_end_matches('/');
    if e.contains("://") {
        e.to_owned()
    } else {
        format!("http://{e}")
    }
}

/// The host of an endpoint (`http://10.0.0.1:10100` → `10.0.0.1`).
pub fn endpoint_host(endpoint: &str) -> Option<String> {
    let url = endpoint_url(endpoint);
    let authority = url.split_once("://")?.1.split('/').next()?;
    let host = match authority.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => h,
        _ => authority,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (!host.is_empty()).then(|| host.to_owned())
}

/// `host:port` → `(host, port)`, with an error naming the entry.
pub fn parse_broker(s: &str) -> Result<(String, u16), FleetError> {
    let s = s.trim();
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| FleetError::Config(format!("broker {s:?}: expected host:port")))?;
    let port = port.parse::<u16>().map_err(|_| {
        FleetError::Config(format!(
            "broker {s:?}: port {port:?} is not a number 0-65535"
        ))
    })?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(FleetError::Config(format!("broker {s:?}: empty host")));
    }
    Ok((host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_setting() {
        let ok = FleetConfig {
            cluster_endpoints: vec!["127.0.0.1:10100".into()],
            ..FleetConfig::default()
        };
        assert!(ok.validate().is_ok());
        let e = FleetConfig {
            failure_rate: 1.5,
            ..ok.clone()
        }
        .validate()
        .unwrap_err();
        assert!(e.to_string().contains("failure_rate"), "{e}");
        let e = FleetConfig {
            cluster_endpoints: vec![],
            ..ok.clone()
        }
        .validate()
        .unwrap_err();
        assert!(e.to_string().contains("cluster_endpoints"), "{e}");
        let e = FleetConfig {
            prefix: "a b".into(),
            ..ok
        }
        .validate()
        .unwrap_err();
        assert!(e.to_string().contains("prefix"), "{e}");
    }

    #[test]
    fn endpoints_and_brokers() {
        assert_eq!(endpoint_url("10.0.0.1:10100"), "http://10.0.0.1:10100");
        assert_eq!(endpoint_url("http://c:1/"), "http://c:1");
        assert_eq!(endpoint_host("http://[::1]:10100").as_deref(), Some("::1"));
        assert_eq!(
            parse_broker("127.0.0.1:10003").unwrap(),
            ("127.0.0.1".to_owned(), 10003)
        );
        assert!(parse_broker("127.0.0.1")
            .unwrap_err()
            .to_string()
            .contains("host:port"));
        assert!(parse_broker("h:99999")
            .unwrap_err()
            .to_string()
            .contains("99999"));
    }
}
