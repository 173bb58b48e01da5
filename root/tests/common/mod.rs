//! In-process root replicas on loopback port 0, and an HTTP client for them.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

pub mod fake_cluster;

use grove_root::{Listeners, Root, RootConfig};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::time::Instant;

/// Poll `check` until it returns `Some`, or panic after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("GROVE_LOG").unwrap_or_else(|_| "warn,openraft=error".into()))
        .with_test_writer()
        .try_init();
}

pub struct TestRoots {
    pub dir: tempfile::TempDir,
    pub configs: BTreeMap<u64, RootConfig>,
    pub roots: BTreeMap<u64, Root>,
    pub http: reqwest::Client,
}

impl TestRoots {
    pub async fn start(n: u64) -> TestRoots {
        Self::start_with(n, |_| {}).await
    }

    pub async fn start_with(n: u64, tweak: impl Fn(&mut RootConfig)) -> TestRoots {
        init_tracing();
        let dir = tempfile::tempdir().expect("temp dir");
        let mut raft = BTreeMap::new();
        let mut api = BTreeMap::new();
        let mut cluster = BTreeMap::new();
        for id in 1..=n {
            raft.insert(id, tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap());
            api.insert(id, tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap());
            cluster.insert(id, tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap());
        }
        let peers = raft.iter().map(|(id, l)| format!("{id}={}", l.local_addr().unwrap())).collect::<Vec<_>>().join(",");
        let mut configs = BTreeMap::new();
        for id in 1..=n {
            let mut c = RootConfig {
                id,
                data_dir: dir.path().join(format!("r{id}")),
                raft_listen: raft[&id].local_addr().unwrap(),
                api_listen: api[&id].local_addr().unwrap(),
                cluster_listen: cluster[&id].local_addr().unwrap(),
                peers: peers.clone(),
                password_hash_iterations: 100,
                scheduler_interval_ms: 20,
                ..RootConfig::default()
            };
            tweak(&mut c);
            configs.insert(id, c);
        }
        let mut roots = BTreeMap::new();
        for id in 1..=n {
            let listeners = Listeners { raft: raft.remove(&id).unwrap(), api: api.remove(&id).unwrap(), cluster: cluster.remove(&id).unwrap() };
            let r = Root::start(configs[&id].clone(), listeners).await.expect("start root");
            roots.insert(id, r);
        }
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).timeout(Duration::from_secs(20)).build().unwrap();
        let t = TestRoots { dir, configs, roots, http };
        for id in 1..=n {
            t.wait_ready(id).await;
        }
        t
    }

    pub fn url(&self, id: u64, path: &str) -> String {
        format!("http://{}{path}", self.roots[&id].api_addr)
    }

    pub async fn wait_ready(&self, id: u64) {
        let url = self.url(id, "/readyz");
        let http = self.http.clone();
        wait_for("the replica to be ready", Duration::from_secs(30), || {
            let (url, http) = (url.clone(), http.clone());
            async move { http.get(url).send().await.ok().filter(|r| r.status() == StatusCode::OK).map(|_| ()) }
        })
        .await;
        // The default admin exists once bootstrap committed it.
        let http = self.http.clone();
        let url = self.url(id, "/api/auth/login");
        wait_for("the default admin", Duration::from_secs(30), || {
            let (url, http) = (url.clone(), http.clone());
            async move {
                let r = http.post(url).json(&json!({"username":"Admin","password":"Admin"})).send().await.ok()?;
                (r.status() == StatusCode::OK).then_some(())
            }
        })
        .await;
    }

    /// Send a request; returns status and body (JSON, or a JSON string for text).
    pub async fn call(&self, id: u64, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = self.http.request(method, self.url(id, path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    pub async fn login(&self, id: u64, user: &str, password: &str) -> (String, String) {
        let (s, b) = self.call(id, Method::POST, "/api/auth/login", None, Some(json!({"username": user, "password": password}))).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        (b["token"].as_str().unwrap().to_owned(), b["refresh_token"].as_str().unwrap().to_owned())
    }

    pub async fn admin(&self, id: u64) -> String {
        self.login(id, "Admin", "Admin").await.0
    }

    pub async fn shutdown(mut self) {
        let ids: Vec<u64> = self.roots.keys().copied().collect();
        for id in ids {
            self.roots.remove(&id).unwrap().shutdown().await;
        }
    }
}

/// A valid SLA with one application of `services` microservices.
pub fn sla(app: &str, services: &[&str]) -> Value {
    let ms: Vec<Value> = services
        .iter()
        .map(|s| json!({"microserviceID":"","microservice_name":s,"microservice_namespace":"test","virtualization":"container",
            "code":"docker.io/library/nginx:latest","memory":100,"vcpus":1,"port":"6080:80/tcp"}))
        .collect();
    json!({"sla_version":"v2.0","customerID":"Admin","applications":[{"applicationID":"","application_name":app,
        "application_namespace":"test","application_desc":"d","microservices":ms}]})
}
