//! The workload's HTTP client: every request it sends becomes an [`Op`] in the history, with
//! its outcome classified the way a careful client must (acknowledged, definitely not applied,
//! or unknown).

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::history::{Call, Event, Fault, Micros, Op, Outcome};

/// The run's clock and history, shared by clients, the nemesis and the observer.
#[derive(Clone)]
pub struct Recorder {
    started: Instant,
    events: Arc<Mutex<Vec<Event>>>,
    next_id: Arc<Mutex<u64>>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder { started: Instant::now(), events: Arc::default(), next_id: Arc::default() }
    }
}

impl Recorder {
    /// Microseconds since the run started.
    pub fn now(&self) -> Micros {
        self.started.elapsed().as_micros() as Micros
    }

    /// When the run started (for turning run time back into an `Instant`).
    pub fn started(&self) -> Instant {
        self.started
    }

    fn next_id(&self) -> u64 {
        let mut id = self.next_id.lock().expect("id lock");
        *id += 1;
        *id
    }

    pub fn op(&self, op: Op) {
        self.events.lock().expect("history lock").push(Event::Op(op));
    }

    pub fn fault(&self, fault: Fault) {
        self.events.lock().expect("history lock").push(Event::Fault(fault));
    }

    /// Everything recorded so far, operations in invoke order.
    pub fn events(&self) -> Vec<Event> {
        let mut events = self.events.lock().expect("history lock").clone();
        events.sort_by_key(|e| match e {
            Event::Op(o) => (o.invoke, o.id),
            Event::Fault(f) => (f.start, 0),
        });
        events
    }

    pub fn ops(&self) -> Vec<Op> {
        self.events().into_iter().filter_map(|e| if let Event::Op(o) = e { Some(o) } else { None }).collect()
    }
}

/// What an answered request returned.
pub struct Answer {
    pub outcome: Outcome,
    pub body: Value,
    pub error: Option<String>,
}

/// Classify an HTTP answer. 2xx is acknowledged; 4xx and a 503 that says `not_applied` were
/// definitely not applied; any other 5xx may have been.
pub fn classify(status: StatusCode, body: &Value) -> Outcome {
    if status.is_success() {
        Outcome::Ok
    } else if status.is_client_error() || (status == StatusCode::SERVICE_UNAVAILABLE && body["outcome"] == "not_applied") {
        Outcome::Failed
    } else {
        Outcome::Unknown
    }
}

/// One sequential client of the root API: it has at most one operation open at a time.
pub struct Client {
    pub id: u32,
    http: reqwest::Client,
    token: Arc<RwLock<String>>,
    credentials: (String, String),
    recorder: Recorder,
}

impl Client {
    /// `timeout` bounds every request: past it, the operation is recorded as unknown.
    pub fn new(id: u32, timeout: Duration, token: Arc<RwLock<String>>, credentials: (String, String), recorder: Recorder) -> Client {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_millis(500)))
            .pool_max_idle_per_host(2)
            .build()
            .expect("an HTTP client");
        Client { id, http, token, credentials, recorder }
    }

    /// Another client (its own id, so its own sequential process in the history) sharing this
    /// one's connections and token.
    pub fn with_id(&self, id: u32) -> Client {
        Client { id, http: self.http.clone(), token: self.token.clone(), credentials: self.credentials.clone(), recorder: self.recorder.clone() }
    }

    /// Send one request and answer it without recording (setup and final reads use this too).
    pub async fn request(&self, method: Method, url: &str, body: Option<&Value>) -> Answer {
        let token = self.token.read().expect("token lock").clone();
        let mut req = self.http.request(method.clone(), url).bearer_auth(token);
        if let Some(b) = body {
            req = req.json(b);
        }
        match req.send().await {
            Ok(r) => {
                let status = r.status();
                let body: Value = r.json().await.unwrap_or(Value::Null);
                if status == StatusCode::UNAUTHORIZED {
                    self.login(url).await;
                }
                let outcome = classify(status, &body);
                let error = (outcome != Outcome::Ok).then(|| format!("{status}: {}", body["message"].as_str().unwrap_or(&body.to_string())));
                Answer { outcome, body, error }
            }
            // Refused before anything was sent: not applied. Anything else may have reached it.
            Err(e) if e.is_connect() => Answer { outcome: Outcome::Failed, body: Value::Null, error: Some(format!("connect: {e}")) },
            Err(e) => {
                let what = if e.is_timeout() { "timeout" } else { "transport" };
                Answer { outcome: Outcome::Unknown, body: Value::Null, error: Some(format!("{what}: {e}")) }
            }
        }
    }

    /// Log in again (the access token expired) through the replica at `url`'s origin.
    async fn login(&self, url: &str) {
        let origin = url.split("/api/").next().unwrap_or(url);
        let (user, password) = &self.credentials;
        let body = json!({ "username": user, "password": password });
        if let Ok(r) = self.http.post(format!("{origin}/api/auth/login")).json(&body).send().await {
            if let Ok(v) = r.json::<Value>().await {
                if let Some(t) = v["token"].as_str() {
                    *self.token.write().expect("token lock") = t.to_owned();
                }
            }
        }
    }

    /// Send one request as a recorded operation. `value` turns an acknowledged answer into
    /// the value the history keeps (a read's result, a deploy's instance number).
    pub async fn invoke(
        &self,
        endpoint: &str,
        call: Call,
        method: Method,
        path: &str,
        body: Option<Value>,
        value: impl FnOnce(&Value) -> Option<String>,
    ) -> Op {
        let id = self.recorder.next_id();
        let invoke = self.recorder.now();
        let answer = self.request(method, &format!("{endpoint}{path}"), body.as_ref()).await;
        let complete = self.recorder.now();
        let value = if answer.outcome == Outcome::Ok { value(&answer.body) } else { None };
        let op = Op {
            id,
            client: self.id,
            endpoint: endpoint.to_owned(),
            call,
            invoke,
            complete,
            outcome: answer.outcome,
            value,
            error: answer.error,
        };
        self.recorder.op(op.clone());
        op
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_classified_by_what_they_prove() {
        assert_eq!(classify(StatusCode::OK, &Value::Null), Outcome::Ok);
        assert_eq!(classify(StatusCode::BAD_REQUEST, &json!({"message": "bad"})), Outcome::Failed);
        assert_eq!(classify(StatusCode::SERVICE_UNAVAILABLE, &json!({"outcome": "not_applied"})), Outcome::Failed);
        assert_eq!(classify(StatusCode::SERVICE_UNAVAILABLE, &json!({"outcome": "unknown"})), Outcome::Unknown);
        assert_eq!(classify(StatusCode::SERVICE_UNAVAILABLE, &Value::Null), Outcome::Unknown);
        assert_eq!(classify(StatusCode::INTERNAL_SERVER_ERROR, &Value::Null), Outcome::Unknown);
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_definite_failure() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let recorder = Recorder::default();
        let client = Client::new(1, Duration::from_secs(1), Arc::default(), ("a".into(), "b".into()), recorder.clone());
        let op = client
            .invoke(&format!("http://127.0.0.1:{port}"), Call::Read { key: "k".into() }, Method::GET, "/x", None, |_| None)
            .await;
        assert_eq!(op.outcome, Outcome::Failed, "{op:?}");
        assert!(op.error.unwrap().starts_with("connect"));
        assert_eq!(recorder.ops().len(), 1);
    }
}
