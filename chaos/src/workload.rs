//! The client workloads, run through the root API while the nemesis works:
//!
//! - **registers**: each register is an application whose `application_desc` clients read
//!   (`GET /api/application/{id}`) and overwrite with values unique in the run
//!   (`PUT /api/application/{id}`), so the history can be checked for linearizability;
//! - **deployments**: each client owns a service of a real container image and deploys and
//!   undeploys its instances, reads its status and now and then creates another application.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use anyhow::{bail, Context};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::Method;
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::client::Client;
use crate::history::{Call, Outcome};

/// The namespace every application of a chaos run lives in.
pub const NAMESPACE: &str = "chaos";

/// A register: an application's name (the key in the history) and its id.
#[derive(Debug, Clone)]
pub struct Register {
    pub key: String,
    pub app_id: String,
}

/// An SLA of one application with the given services (each a container of `image`).
pub fn sla(name: &str, desc: &str, services: &[&str], image: &str) -> Value {
    let microservices: Vec<Value> = services
        .iter()
        .map(|s| {
            json!({
                "microserviceID": "", "microservice_name": s, "microservice_namespace": NAMESPACE,
                "virtualization": "container", "code": image,
                "cmd": ["/bin/sh", "-c", "trap 'exit 0' TERM; while true; do sleep 5 & wait $!; done"],
                "memory": 16, "vcpus": 0, "vgpus": 0, "vtpus": 0, "bandwidth_in": 0, "bandwidth_out": 0,
                "storage": 0, "state": "", "port": "", "added_files": [], "constraints": [], "connectivity": []
            })
        })
        .collect();
    json!({
        "sla_version": "v2.0", "customerID": "Admin",
        "applications": [{
            "applicationID": "", "application_name": name, "application_namespace": NAMESPACE,
            "application_desc": desc, "microservices": microservices
        }]
    })
}

/// Find an application of `list` (the answer of `POST /api/application/`) by name.
fn app_named<'a>(list: &'a Value, name: &str) -> Option<&'a Value> {
    list.as_array()?.iter().find(|a| a["application_name"] == name && a["application_namespace"] == NAMESPACE)
}

/// Create an application outside the history (setup), retrying through `endpoints` until one
/// acknowledges it; answers its document.
pub async fn create_for_setup(client: &Client, endpoints: &[String], sla: &Value, name: &str) -> anyhow::Result<Value> {
    let mut last = String::new();
    for attempt in 0..40 {
        let url = &endpoints[attempt % endpoints.len()];
        let a = client.request(Method::POST, &format!("{url}/api/application/"), Some(sla)).await;
        // An earlier attempt may have been applied without an answer: look before retrying.
        let doc = if a.outcome == Outcome::Ok {
            a.body
        } else {
            last = a.error.unwrap_or_default();
            client.request(Method::GET, &format!("{url}/api/applications/"), None).await.body
        };
        if let Some(app) = app_named(&doc, name) {
            return Ok(app.clone());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    bail!("could not create application {name}: {last}")
}

/// Create `n` registers (applications `reg0`, `reg1`, … holding `init`).
pub async fn setup_registers(client: &Client, endpoints: &[String], n: usize) -> anyhow::Result<Vec<Register>> {
    let mut registers = Vec::new();
    for k in 0..n {
        let key = format!("reg{k}");
        let app = create_for_setup(client, endpoints, &sla(&key, "init", &[], ""), &key).await?;
        let app_id = app["applicationID"].as_str().context("application without an id")?.to_owned();
        registers.push(Register { key, app_id });
    }
    Ok(registers)
}

/// The steady service: an application whose service keeps `n` instances for the whole run
/// (nobody undeploys them), so a killed worker's instances can be watched moving to another
/// worker. Answers the service's job name (the prefix of its containerd task ids).
pub async fn setup_steady(client: &Client, endpoints: &[String], image: &str, n: usize) -> anyhow::Result<String> {
    let app = create_for_setup(client, endpoints, &sla("steady", "instances nobody undeploys", &["svc"], image), "steady").await?;
    let service = app["microservices"][0].as_str().context("the steady application has no service")?.to_owned();
    for attempt in 0..100 {
        let url = &endpoints[attempt % endpoints.len()];
        let doc = client.request(Method::GET, &format!("{url}/api/service/{service}"), None).await;
        if doc.outcome != Outcome::Ok {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        let have = doc.body["instance_list"].as_array().map_or(0, Vec::len);
        if have >= n {
            return doc.body["job_name"].as_str().map(str::to_owned).context("the steady service has no job_name");
        }
        client.request(Method::POST, &format!("{url}/api/service/{service}/instance"), None).await;
    }
    bail!("could not deploy {n} steady instances")
}

/// The register each key starts with.
pub fn initial_values(registers: &[Register]) -> BTreeMap<String, Option<String>> {
    registers.iter().map(|r| (r.key.clone(), Some("init".to_owned()))).collect()
}

/// One register client: reads and writes random registers through random endpoints until
/// `stop` turns true.
pub async fn register_client(client: Client, endpoints: Vec<String>, registers: Vec<Register>, seed: u64, mut stop: watch::Receiver<bool>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut seq = 0u64;
    while !*stop.borrow() {
        let r = &registers[rng.random_range(0..registers.len())];
        let endpoint = &endpoints[rng.random_range(0..endpoints.len())];
        let path = format!("/api/application/{}", r.app_id);
        if rng.random_bool(0.5) {
            let call = Call::Read { key: r.key.clone() };
            client.invoke(endpoint, call, Method::GET, &path, None, |b| b["application_desc"].as_str().map(str::to_owned)).await;
        } else {
            seq += 1;
            let value = format!("c{}-{seq}", client.id);
            let body = json!({ "application_desc": value });
            client.invoke(endpoint, Call::Write { key: r.key.clone(), value }, Method::PUT, &path, Some(body), |_| None).await;
        }
        pause(&mut stop, Duration::from_millis(rng.random_range(5..30))).await;
    }
}

/// One deployment client: creates its own application and service, then keeps one or two
/// instances deployed (deploying and undeploying in turn), reads the service's status, and
/// every few rounds creates another application.
pub async fn deployment_client(client: Client, endpoints: Vec<String>, image: String, seed: u64, mut stop: watch::Receiver<bool>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let name = format!("dep{}", client.id);
    let service = match create_for_setup(&client, &endpoints, &sla(&name, "deployments", &["svc"], &image), &name).await {
        Ok(app) => app["microservices"][0].as_str().unwrap_or_default().to_owned(),
        Err(e) => {
            eprintln!("grove-chaos: deployment client {}: {e}", client.id);
            return;
        }
    };
    // Instance numbers this client deployed and has not yet undeployed.
    let mut live: VecDeque<u32> = VecDeque::new();
    let mut round = 0u32;
    while !*stop.borrow() {
        round += 1;
        let endpoint = &endpoints[rng.random_range(0..endpoints.len())];
        let base = format!("/api/service/{service}");
        if live.len() < 2 {
            let op = client
                .invoke(endpoint, Call::Deploy { service: service.clone() }, Method::POST, &format!("{base}/instance"), None, |b| {
                    b["instance_number"].as_u64().map(|n| n.to_string())
                })
                .await;
            if let Some(n) = op.value.and_then(|v| v.parse().ok()) {
                live.push_back(n);
            }
        } else if let Some(n) = live.front().copied() {
            let call = Call::Undeploy { service: service.clone(), instance: n };
            let op = client.invoke(endpoint, call, Method::DELETE, &format!("{base}/instance/{n}"), None, |_| None).await;
            // 404: the instance is gone already (an earlier undeploy of unknown outcome took
            // effect). Retrying it forever would stop this client deploying for the rest of the
            // run, as it did in a 50-minute soak.
            if op.outcome == Outcome::Ok || gone(&op) {
                live.pop_front();
            }
        }
        client.invoke(endpoint, Call::Status { service: service.clone() }, Method::GET, &base, None, |b| Some(b["instance_list"].to_string())).await;
        if round % 5 == 0 {
            let key = format!("{name}app{round}");
            let body = sla(&key, "created under chaos", &[], "");
            client.invoke(endpoint, Call::CreateApp { key: key.clone() }, Method::POST, "/api/application/", Some(body), |_| None).await;
        }
        pause(&mut stop, Duration::from_millis(rng.random_range(100..300))).await;
    }
}

/// The write probe: every `every`, a fresh client writes the probe register through the next
/// endpoint in turn, without waiting for earlier probes to finish. Workload clients are
/// sequential and can all be stuck on a paused replica for a timeout; the probe still shows
/// the moment the tier takes writes again. Probe writes are register operations: they are
/// checked like any other.
pub async fn probe_writer(template: Client, endpoints: Vec<String>, register: Register, every: Duration, mut stop: watch::Receiver<bool>) {
    let mut n = 0u32;
    let mut running = tokio::task::JoinSet::new();
    while !*stop.borrow() {
        n += 1;
        let client = template.with_id(template.id + n);
        let endpoint = endpoints[n as usize % endpoints.len()].clone();
        let (key, path) = (register.key.clone(), format!("/api/application/{}", register.app_id));
        running.spawn(async move {
            let value = format!("p{}", client.id);
            let body = json!({ "application_desc": value });
            client.invoke(&endpoint, Call::Write { key, value }, Method::PUT, &path, Some(body), |_| None).await;
        });
        while running.try_join_next().is_some() {}
        pause(&mut stop, every).await;
    }
    while running.join_next().await.is_some() {}
}

/// A definite "not found": the server's answer, not a transport error.
fn gone(op: &crate::history::Op) -> bool {
    op.outcome == Outcome::Failed && op.error.as_deref().is_some_and(|e| e.starts_with("404 "))
}

async fn pause(stop: &mut watch::Receiver<bool>, d: Duration) {
    let _ = tokio::time::timeout(d, stop.changed()).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Op;

    #[test]
    fn only_a_servers_404_means_an_instance_is_gone() {
        let op = |outcome, error: &str| Op {
            id: 1,
            client: 1,
            endpoint: String::new(),
            call: Call::Undeploy { service: "s".into(), instance: 3 },
            invoke: Default::default(),
            complete: Default::default(),
            outcome,
            value: None,
            error: Some(error.into()),
        };
        assert!(gone(&op(Outcome::Failed, "404 Not Found: service s has no instance 3")));
        assert!(!gone(&op(Outcome::Failed, "503 Service Unavailable: the root has no quorum")));
        assert!(!gone(&op(Outcome::Unknown, "404 Not Found: a proxy's page")));
        assert!(!gone(&op(Outcome::Failed, "connect: error sending request for url (http://h/api/service/s/instance/404 )")));
    }
}
