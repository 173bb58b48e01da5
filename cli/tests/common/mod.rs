//! Test doubles and helpers for the `grove` binary's integration tests.
//!
//! [`FakeRootApi`] is a test double of the root's REST API (contract §1.3 and Grove's
//! `root/src/api`): it serves the routes the CLI uses with the bodies the root answers, keeps
//! what it is asked in memory, and records every request so a test can check what the CLI sent.
//! Knobs make it answer like a replica without quorum (503), expire tokens (401), or move each
//! new instance along a scripted status path one step per poll.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

pub const ADMIN_PASSWORD: &str = "s3cret";

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub bearer: Option<String>,
    pub content_type: Option<String>,
    pub body: String,
}

#[derive(Debug)]
pub struct FakeState {
    pub requests: Vec<Recorded>,
    pub access_tokens: HashSet<String>,
    pub refresh_tokens: HashSet<String>,
    issued: u32,
    /// Answer every request with this 503 message (a replica without quorum).
    pub unavailable: Option<String>,
    /// The caller is an Admin (else `/api/applications/` and `/api/services/` answer 403).
    pub admin: bool,
    pub apps: Vec<Value>,
    /// Service documents by id, `instance_list` included.
    pub services: BTreeMap<String, Value>,
    /// Status path of every new instance; each read of a service moves its instances one step.
    pub progression: Vec<String>,
    /// Per (service, instance): the step reached on `progression`.
    steps: BTreeMap<(String, u64), usize>,
    pub clusters: Vec<Value>,
    /// `/readyz` body (`None`: the route answers 404).
    pub readyz: Option<Value>,
    pub metrics: String,
    /// `GET /api/raft/status` (`None`: 404, as the root answers today).
    pub raft_status: Option<Value>,
    /// `GET /api/workers/` (`None`: 404, as a stock Oakestra root answers).
    pub workers: Option<Value>,
    next_id: u32,
}

impl Default for FakeState {
    fn default() -> Self {
        FakeState {
            requests: Vec::new(),
            access_tokens: HashSet::new(),
            refresh_tokens: HashSet::new(),
            issued: 0,
            unavailable: None,
            admin: true,
            apps: Vec::new(),
            services: BTreeMap::new(),
            progression: ["REQUESTED", "CLUSTER_SCHEDULED", "NODE_SCHEDULED", "CREATING", "RUNNING"].map(String::from).to_vec(),
            steps: BTreeMap::new(),
            clusters: Vec::new(),
            readyz: None,
            metrics: String::new(),
            raft_status: None,
            workers: None,
            next_id: 0,
        }
    }
}

impl FakeState {
    fn id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}{:022}", self.next_id)
    }

    /// Mint an access/refresh pair as the root would.
    pub fn issue(&mut self) -> (String, String) {
        self.issued += 1;
        let (a, r) = (format!("access-{}", self.issued), format!("refresh-{}", self.issued));
        self.access_tokens.insert(a.clone());
        self.refresh_tokens.insert(r.clone());
        (a, r)
    }

    /// Add a service with `instances` instances at the given statuses.
    pub fn add_service(&mut self, job_name: &str, statuses: &[&str]) -> String {
        let id = self.id("5e");
        let list: Vec<Value> = statuses
            .iter()
            .enumerate()
            .map(|(n, s)| json!({"instance_number": n, "status": s, "status_detail": "", "cluster_id": "c1", "worker_id": "w1", "status_history": [{"status": s, "detail": "", "at_ms": 1}]}))
            .collect();
        self.services.insert(
            id.clone(),
            json!({"_id": {"$oid": id}, "job_name": job_name, "image": "docker.io/library/nginx:latest", "applicationID": "app",
                   "next_instance_progressive_number": statuses.len(), "instance_list": list, "status": "", "status_detail": ""}),
        );
        id
    }

    /// Move every instance of `id` one step along `progression`.
    fn advance(&mut self, id: &str) {
        let progression = self.progression.clone();
        let Some(doc) = self.services.get_mut(id) else { return };
        for inst in doc["instance_list"].as_array_mut().into_iter().flatten() {
            let n = inst["instance_number"].as_u64().unwrap_or(0);
            let Some(step) = self.steps.get_mut(&(id.to_owned(), n)) else { continue };
            if *step + 1 < progression.len() {
                *step += 1;
                let status = progression[*step].clone();
                inst["status"] = json!(status);
                if status == "NO_WORKER_CAPACITY" {
                    inst["status_detail"] = json!("no worker has 1 free cpu");
                }
                inst["status_history"].as_array_mut().unwrap().push(json!({"status": status, "detail": "", "at_ms": 2}));
            }
        }
    }

    fn read_service(&mut self, id: &str) -> Option<Value> {
        let doc = self.services.get(id).cloned();
        self.advance(id);
        doc
    }
}

/// See the module documentation.
pub struct FakeRootApi {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<FakeState>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeRootApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeRootApi {
    pub async fn start() -> FakeRootApi {
        let state = Arc::new(Mutex::new(FakeState::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new().fallback(handle).with_state(state.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeRootApi { addr, state, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().requests.clone()
    }

    /// The requests other than token traffic, as `METHOD path`.
    pub fn calls(&self) -> Vec<String> {
        self.requests().iter().filter(|r| !r.path.starts_with("/api/auth/")).map(|r| format!("{} {}", r.method, r.path)).collect()
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut FakeState) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }
}

fn error(status: StatusCode, message: &str) -> Response {
    let mut body = json!({"code": status.as_u16(), "status": status.canonical_reason().unwrap_or(""), "message": message});
    if status == StatusCode::UNAUTHORIZED {
        body["msg"] = json!(message);
    }
    (status, Json(body)).into_response()
}

async fn handle(State(state): State<Arc<Mutex<FakeState>>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = uri.path().to_owned();
    let bearer = headers.get("authorization").and_then(|h| h.to_str().ok()).and_then(|h| h.strip_prefix("Bearer ")).map(str::to_owned);
    let mut s = state.lock().unwrap();
    s.requests.push(Recorded {
        method: method.to_string(),
        path: path.clone(),
        bearer: bearer.clone(),
        content_type: headers.get("content-type").and_then(|h| h.to_str().ok()).map(str::to_owned),
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    if let Some(message) = s.unavailable.clone() {
        return error(StatusCode::SERVICE_UNAVAILABLE, &message);
    }
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();

    // Unauthenticated routes.
    match (&method, parts.as_slice()) {
        (&Method::POST, ["api", "auth", "login"]) => {
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            if v["username"] == "Admin" && v["password"] == ADMIN_PASSWORD {
                let (token, refresh_token) = s.issue();
                return Json(json!({"token": token, "refresh_token": refresh_token})).into_response();
            }
            return error(StatusCode::UNAUTHORIZED, "wrong username or password");
        }
        (&Method::POST, ["api", "auth", "refresh"]) => {
            if bearer.as_ref().is_some_and(|b| s.refresh_tokens.contains(b)) {
                s.issued += 1;
                let token = format!("access-{}", s.issued);
                s.access_tokens.insert(token.clone());
                return Json(json!({"token": token})).into_response();
            }
            return error(StatusCode::UNAUTHORIZED, "Token has expired");
        }
        (&Method::GET, ["api", "clusters", ""]) => return Json(Value::Array(s.clusters.clone())).into_response(),
        (&Method::GET, ["readyz"]) => {
            return match s.readyz.clone() {
                Some(r) => {
                    let code = if r["ready"] == true { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
                    (code, Json(r)).into_response()
                }
                None => StatusCode::NOT_FOUND.into_response(),
            }
        }
        (&Method::GET, ["metrics"]) => return s.metrics.clone().into_response(),
        (&Method::GET, ["api", "raft", "status"]) if s.raft_status.is_some() => return Json(s.raft_status.clone().unwrap()).into_response(),
        (&Method::GET, ["api", "workers", ""]) if s.workers.is_some() => {
            if !bearer.as_ref().is_some_and(|b| s.access_tokens.contains(b)) {
                return error(StatusCode::UNAUTHORIZED, "Token has expired");
            }
            return Json(s.workers.clone().unwrap()).into_response();
        }
        _ => {}
    }

    // Like axum in the root: a route that does not exist is 404 before any token check.
    let known = matches!(parts.as_slice(), ["api", "application" | "applications" | "user" | "service" | "services", ..]);
    if !known {
        return StatusCode::NOT_FOUND.into_response();
    }
    if !bearer.as_ref().is_some_and(|b| s.access_tokens.contains(b)) {
        return error(StatusCode::UNAUTHORIZED, "Token has expired");
    }
    let admin = s.admin;
    match (&method, parts.as_slice()) {
        (&Method::POST, ["api", "application", ""]) => {
            let sla: Value = match serde_json::from_slice(&body) {
                Ok(v) => v,
                Err(e) => return error(StatusCode::BAD_REQUEST, &format!("request body is not valid JSON: {e}")),
            };
            let Some(apps) = sla["applications"].as_array().cloned() else {
                return (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({"code": 422, "status": "Unprocessable Entity",
                    "message": "applications: is required", "errors": [{"field": "applications", "rule": "is required"}]}))).into_response();
            };
            for app in apps {
                let app_id = s.id("a0");
                let mut service_ids = Vec::new();
                for ms in app["microservices"].as_array().cloned().unwrap_or_default() {
                    let job = format!(
                        "{}.{}.{}.{}",
                        app["application_name"].as_str().unwrap_or(""),
                        app["application_namespace"].as_str().unwrap_or(""),
                        ms["microservice_name"].as_str().unwrap_or(""),
                        ms["microservice_namespace"].as_str().unwrap_or("")
                    );
                    let id = s.add_service(&job, &[]);
                    s.services.get_mut(&id).unwrap()["applicationID"] = json!(app_id);
                    s.services.get_mut(&id).unwrap()["image"] = ms["code"].clone();
                    service_ids.push(id);
                }
                let doc = json!({"_id": {"$oid": app_id}, "applicationID": app_id, "application_name": app["application_name"],
                    "application_namespace": app["application_namespace"], "application_desc": "", "userId": "Admin", "microservices": service_ids});
                s.apps.push(doc);
            }
            Json(Value::Array(s.apps.clone())).into_response()
        }
        (&Method::GET, ["api", "applications", ""]) if admin => Json(Value::Array(s.apps.clone())).into_response(),
        (&Method::GET, ["api", "applications", ""]) => error(StatusCode::FORBIDDEN, "You have not enough permissions!"),
        (&Method::GET, ["api", "user", "Admin"]) => Json(json!({"_id": {"$oid": "u0000000000000000000001"}, "name": "Admin"})).into_response(),
        (&Method::GET, ["api", "applications", "u0000000000000000000001"]) => Json(Value::Array(s.apps.clone())).into_response(),
        (&Method::DELETE, ["api", "application", id]) => {
            let before = s.apps.len();
            let id = id.to_string();
            s.apps.retain(|a| a["applicationID"] != json!(id));
            if s.apps.len() == before {
                return error(StatusCode::NOT_FOUND, &format!("application {id} not found"));
            }
            Json(json!({"message": "Application Deleted"})).into_response()
        }
        (&Method::GET, ["api", "services", ""]) if admin => {
            let ids: Vec<String> = s.services.keys().cloned().collect();
            Json(Value::Array(ids.iter().filter_map(|id| s.read_service(id)).collect())).into_response()
        }
        (&Method::GET, ["api", "services", ""]) => error(StatusCode::FORBIDDEN, "You have not enough permissions!"),
        (&Method::GET, ["api", "services", app]) => {
            let app = app.to_string();
            let ids: Vec<String> = s.services.iter().filter(|(_, d)| d["applicationID"] == json!(app)).map(|(k, _)| k.clone()).collect();
            Json(Value::Array(ids.iter().filter_map(|id| s.read_service(id)).collect())).into_response()
        }
        (&Method::GET, ["api", "service", id]) => match s.read_service(id) {
            Some(doc) => Json(doc).into_response(),
            None => error(StatusCode::NOT_FOUND, &format!("service {id} not found")),
        },
        (&Method::POST, ["api", "service", id, "instance"]) => {
            let id = id.to_string();
            let first = s.progression[0].clone();
            let Some(doc) = s.services.get_mut(&id) else { return error(StatusCode::NOT_FOUND, &format!("service {id} not found")) };
            let n = doc["next_instance_progressive_number"].as_u64().unwrap_or(0);
            doc["next_instance_progressive_number"] = json!(n + 1);
            doc["instance_list"].as_array_mut().unwrap().push(json!({"instance_number": n, "status": first, "status_detail": "",
                "cluster_id": "", "cluster_location": "", "status_history": [{"status": first, "detail": "", "at_ms": 1}]}));
            s.steps.insert((id, n), 0);
            Json(json!({"message": "ok"})).into_response()
        }
        (&Method::DELETE, ["api", "service", id, "instance", n]) => {
            let n: i64 = n.parse().unwrap_or(-2);
            let Some(doc) = s.services.get_mut(*id) else { return error(StatusCode::NOT_FOUND, &format!("service {id} not found")) };
            let list = doc["instance_list"].as_array_mut().unwrap();
            let before = list.len();
            list.retain(|i| n != -1 && i["instance_number"].as_i64() != Some(n));
            if n != -1 && list.len() == before {
                return error(StatusCode::NOT_FOUND, &format!("service {id} has no instance {n}"));
            }
            Json(json!({"message": "ok"})).into_response()
        }
        _ => error(StatusCode::NOT_FOUND, &format!("no route {method} {path}")),
    }
}

/// A port with nothing listening (bound, then closed).
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// What one run of the binary printed.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn ok(&self) -> &Self {
        assert_eq!(self.code, Some(0), "grove failed:\nstdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        self
    }

    pub fn failed(&self) -> &Self {
        assert_eq!(self.code, Some(1), "grove should have failed:\nstdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        self
    }
}

/// A `grove` with its own configuration directory.
pub struct Grove {
    pub home: tempfile::TempDir,
    pub endpoints: String,
}

impl Grove {
    pub fn new(endpoints: &[String]) -> Grove {
        Grove { home: tempfile::tempdir().unwrap(), endpoints: endpoints.join(",") }
    }

    pub fn config_path(&self) -> PathBuf {
        self.home.path().join("grove/config.toml")
    }

    pub fn config(&self) -> toml::Value {
        toml::from_str(&std::fs::read_to_string(self.config_path()).unwrap()).unwrap()
    }

    pub async fn run(&self, args: &[&str]) -> Run {
        self.run_with_stdin(args, None).await
    }

    pub async fn run_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> Run {
        self.spawn(tokio::process::Command::new(env!("CARGO_BIN_EXE_grove")).args(args), stdin).await
    }

    /// Run with standard output on a pseudo-terminal (util-linux `script`); `None` when there
    /// is no `script` command.
    pub async fn run_in_terminal(&self, args: &[&str]) -> Option<Run> {
        if std::process::Command::new("script").arg("--version").output().is_err() {
            return None;
        }
        let line = std::iter::once(env!("CARGO_BIN_EXE_grove")).chain(args.iter().copied()).map(|a| format!("'{a}'")).collect::<Vec<_>>().join(" ");
        Some(self.spawn(tokio::process::Command::new("script").args(["-q", "-e", "-c", &line, "/dev/null"]), None).await)
    }

    async fn spawn(&self, cmd: &mut tokio::process::Command, stdin: Option<&str>) -> Run {
        use tokio::io::AsyncWriteExt;
        cmd
            .env("XDG_CONFIG_HOME", self.home.path())
            .env("GROVE_ENDPOINTS", &self.endpoints)
            .env_remove("GROVE_PASSWORD")
            .env_remove("GROVE_USERNAME")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("spawn grove");
        let mut input = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).await.unwrap();
        }
        drop(input);
        let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output()).await.expect("grove finished within 60 s").unwrap();
        Run { code: out.status.code(), stdout: String::from_utf8_lossy(&out.stdout).into(), stderr: String::from_utf8_lossy(&out.stderr).into() }
    }

    /// `grove login` as Admin.
    pub async fn login(&self) {
        self.run(&["login", "--password", ADMIN_PASSWORD]).await.ok();
    }
}

pub fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// A valid SLA with one application of two microservices.
pub const SLA: &str = r#"{
  "sla_version": "v2.0",
  "customerID": "Admin",
  "applications": [{
    "applicationID": "",
    "application_name": "demo",
    "application_namespace": "test",
    "application_desc": "tour",
    "microservices": [
      {"microserviceID": "", "microservice_name": "web", "microservice_namespace": "test", "virtualization": "container", "code": "docker.io/library/nginx:latest", "memory": 100, "vcpus": 1},
      {"microserviceID": "", "microservice_name": "cache", "microservice_namespace": "test", "virtualization": "container", "code": "docker.io/library/redis:7", "memory": 100, "vcpus": 1}
    ]
  }]
}"#;
