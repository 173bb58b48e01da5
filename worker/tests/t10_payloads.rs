//! Wire payloads: every message the worker sends has exactly the contract's keys and types
//! (contract §4.2–4.3), and every control message of the contract is understood.
//! Uses the registration double, a real broker and the in-memory runtime double, so it runs on
//! any machine.

mod common;

use std::sync::Arc;
use std::time::Instant;

use common::*;
use grove_core::instance::InstanceKey;
use grove_core::node::CsiDriver;
use grove_core::status::Status;
use grove_worker::runtime::Runtime;
use serde_json::{json, Value};

#[derive(Clone, Copy, Debug)]
enum T {
    Str,
    Int,
    Num,
    Bool,
    StrMap,
    StrList,
    Csi,
    Services,
    Status,
    NumStr,
    IntStr,
}

fn check_type(key: &str, v: &Value, t: T) {
    let ok = match t {
        T::Str => v.is_string(),
        T::Int => v.is_u64() || v.is_i64(),
        T::Num => v.is_number(),
        T::Bool => v.is_boolean(),
        T::StrMap => v.as_object().is_some_and(|m| m.values().all(Value::is_string)),
        T::StrList => v.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
        T::Csi => v.as_array().is_some_and(|a| {
            a.iter().all(|c| {
                let keys: Vec<&String> = c.as_object().map(|o| o.keys().collect()).unwrap_or_default();
                keys.len() == 2 && c["csi_driver_name"].is_string() && c["csi_driver_endpoint"].is_string()
            })
        }),
        T::Services => v.is_array(),
        T::Status => v.as_str().is_some_and(|s| s.parse::<Status>().is_ok()),
        T::NumStr => v.as_str().is_some_and(|s| s.parse::<f64>().is_ok()),
        T::IntStr => v.as_str().is_some_and(|s| s.parse::<u64>().is_ok()),
    };
    assert!(ok, "key {key:?} should be {t:?}, is {v}");
}

/// Asserts that `v` is an object with exactly `schema`'s keys, each of its type.
fn check_shape(what: &str, v: &Value, schema: &[(&str, T)]) {
    let obj = v.as_object().unwrap_or_else(|| panic!("{what}: not an object: {v}"));
    let mut have: Vec<&str> = obj.keys().map(String::as_str).collect();
    let mut want: Vec<&str> = schema.iter().map(|(k, _)| *k).collect();
    have.sort_unstable();
    want.sort_unstable();
    assert_eq!(have, want, "{what}: keys differ from the contract");
    for (k, t) in schema {
        check_type(k, &v[*k], *t);
    }
}

const NODE: &[(&str, T)] = &[
    ("id", T::Str),
    ("host", T::Str),
    ("ip", T::Str),
    ("port", T::Str),
    ("system_info", T::StrMap),
    ("cpu_percent", T::Num),
    ("vcpus", T::Int),
    ("architecture", T::Str),
    ("memory_percent", T::Num),
    ("memory", T::Int),
    ("disk_info", T::StrMap),
    ("network_info", T::StrMap),
    ("gpu_driver", T::Str),
    ("gpu_usage", T::Num),
    ("vgpus", T::Int),
    ("gpu_temp", T::Num),
    ("vram_percent", T::Num),
    ("vram", T::Num),
    ("virtualization", T::StrList),
    ("supported_addons", T::StrList),
    ("csi_drivers", T::Csi),
    ("Overlay", T::Bool),
    ("OverlaySocket", T::Str),
    ("LogDirectory", T::Str),
    ("NetManagerPort", T::Int),
    ("ClusterAddress", T::Str),
];

const JOB_STATUS: &[(&str, T)] =
    &[("sname", T::Str), ("status", T::Status), ("status_detail", T::Str), ("instance", T::Int), ("publicip", T::Str)];

const RESOURCES: &[(&str, T)] = &[("services", T::Services)];

const SERVICE: &[(&str, T)] = &[
    ("cpu_percent", T::NumStr),
    ("memory_percent", T::NumStr),
    ("disk", T::IntStr),
    ("logs", T::Str),
    ("job_name", T::Str),
    ("virtualization", T::Str),
    ("instance", T::Int),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_every_message_has_the_contract_shape_and_controls_are_understood() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start();
    let cluster = ClusterDouble::start(broker.port, 0).await;
    let mut config = test_config("payloads", &cluster, dir.path());
    config.supported_addons = vec!["image-builder".into()];
    config.csi_drivers = vec![CsiDriver { csi_driver_name: "csi.test".into(), csi_driver_endpoint: "/run/csi.sock".into() }];
    config.location = "48.1,11.6".into();
    let runtime = Arc::new(RuntimeDouble::default());
    let obs = Observer::connect(broker.port, "t10").await;
    let worker = WorkerUnderTest::start_with(config, vec![runtime.clone() as Arc<dyn Runtime>]);

    let node = obs
        .wait_for("information", WAIT, |seen| {
            seen.iter().find(|m| m.topic.ends_with("/information")).and_then(|m| m.json["id"].as_str().map(str::to_owned))
        })
        .await;

    // Registration body: the Node JSON with an empty id.
    let bodies = cluster.bodies();
    check_shape("registration body", &bodies[0], NODE);
    assert_eq!(bodies[0]["id"], "");
    assert_eq!(bodies[0]["virtualization"], json!(["docker"]));
    assert_eq!(bodies[0]["supported_addons"], json!(["image-builder"]));
    assert_eq!(bodies[0]["system_info"]["location"], "48.1,11.6");
    // Real numbers from sysinfo.
    let b = &bodies[0];
    assert!(b["vcpus"].as_u64().unwrap() >= 1);
    assert!(b["memory"].as_u64().unwrap() > 0, "available memory in MB");
    let pct = |k: &str| b[k].as_f64().unwrap();
    assert!((0.0..=100.0).contains(&pct("cpu_percent")) && (0.0..=100.0).contains(&pct("memory_percent")));
    assert!(b["disk_info"]["/"].as_str().unwrap().parse::<u32>().unwrap() <= 100);
    assert_eq!(b["architecture"], grove_core::node::goarch(std::env::consts::ARCH));
    assert!(!b["system_info"]["kernel_version"].as_str().unwrap().is_empty());

    // Every control message of the contract: a deploy with every key the worker reads…
    let job = "pl.test.svc.test";
    let t0 = Instant::now();
    let mut deploy = deploy_message(job, 7, "docker.io/library/nginx:latest", &["nginx", "-g", "daemon off;"], true);
    deploy["privileged"] = json!(true);
    deploy["platform"] = json!("linux/amd64");
    deploy["vm_images"] = json!(["a"]);
    deploy["arch"] = json!(["amd64"]);
    deploy["volumes"] = json!([{"volume_id": "v1", "csi_driver": "csi.test", "mount_path": "/data", "config": {}}]);
    deploy["storage"] = json!(512);
    deploy["port"] = json!("6080:80/tcp");
    obs.publish(&format!("nodes/{node}/control/deploy"), &deploy).await;
    obs.wait_status(&node, job, 7, "CREATED", t0).await;
    let got = runtime.running.lock().unwrap().get(&InstanceKey::new(job, 7)).cloned().expect("runtime got the job");
    assert_eq!(got.id, "65f0c0ffee00000000000001");
    assert_eq!(got.image, "docker.io/library/nginx:latest");
    assert_eq!(got.cmd, vec!["nginx", "-g", "daemon off;"]);
    assert_eq!(got.environment, vec!["GROVE_TEST=1"]);
    assert_eq!(got.port, "6080:80/tcp");
    assert_eq!(got.virtualization, "docker");
    assert_eq!(got.platform, "linux/amd64");
    assert_eq!((got.vcpus, got.memory, got.storage, got.vgpus, got.vtpus), (1, 64, 512, 0, 0));
    assert_eq!(got.vm_images, vec!["a"]);
    assert_eq!(got.arch, vec!["amd64"]);
    assert_eq!(got.volumes.len(), 1);
    assert!(got.one_shot && got.privileged);
    assert_eq!(got.status, "NODE_SCHEDULED");

    // … a deploy for a virtualization the worker lacks …
    let mut uk = deploy_message("uk.test.svc.test", 0, "k", &[], false);
    uk["virtualization"] = json!("unikernel");
    obs.publish(&format!("nodes/{node}/control/deploy"), &uk).await;
    obs.wait_status(&node, "uk.test.svc.test", 0, "FAILED", t0).await;

    // … and a delete.
    obs.wait_for("resources with the instance", WAIT, |seen| {
        seen.iter().find(|m| m.topic.ends_with("/jobs/resources") && m.json["services"][0]["job_name"] == job).map(|_| ())
    })
    .await;
    obs.publish(&format!("nodes/{node}/control/delete"), &delete_message(job, 7)).await;
    obs.wait_status(&node, job, 7, "UNDEPLOYED", t0).await;
    assert!(runtime.running.lock().unwrap().is_empty());

    // Shapes of everything the worker published.
    let seen = obs.seen();
    let mut counts = (0, 0, 0, 0);
    for m in seen.iter().filter(|m| m.topic.starts_with(&format!("nodes/{node}/"))) {
        match m.topic.trim_start_matches(&format!("nodes/{node}/")) {
            "information" => {
                check_shape("information", &m.json, NODE);
                assert_eq!(m.json["id"], node.as_str());
                counts.0 += 1;
            }
            "job" => {
                check_shape("job status", &m.json, JOB_STATUS);
                counts.1 += 1;
            }
            "jobs/resources" => {
                check_shape("resources", &m.json, RESOURCES);
                for s in m.json["services"].as_array().unwrap() {
                    check_shape("resources entry", s, SERVICE);
                    counts.3 += 1;
                }
                counts.2 += 1;
            }
            "control/deploy" | "control/delete" => {} // our own control messages
            other => panic!("unexpected topic nodes/{node}/{other}"),
        }
    }
    assert!(counts.0 >= 1 && counts.1 >= 3 && counts.2 >= 1 && counts.3 >= 1, "{counts:?}");
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t11_a_started_instance_is_reported_at_once_not_at_the_next_period() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start();
    let cluster = ClusterDouble::start(broker.port, 0).await;
    let mut config = test_config("prompt", &cluster, dir.path());
    // Far longer than the wait below: only the event-driven report can arrive in time.
    config.report_interval_ms = 600_000;
    let runtime = Arc::new(RuntimeDouble::default());
    let obs = Observer::connect(broker.port, "t11").await;
    let worker = WorkerUnderTest::start_with(config, vec![runtime.clone() as Arc<dyn Runtime>]);
    let node = obs
        .wait_for("the full report after connecting", WAIT, |seen| {
            seen.iter().find(|m| m.topic.ends_with("/information")).and_then(|m| m.json["id"].as_str().map(str::to_owned))
        })
        .await;
    let job = "prompt.test.svc.test";
    let t0 = Instant::now();
    obs.publish(&format!("nodes/{node}/control/deploy"), &deploy_message(job, 0, "img", &["sleep", "1000"], false)).await;
    obs.wait_for("a resources report listing the new instance", WAIT, |seen| {
        seen.iter().find(|m| m.at > t0 && m.topic == format!("nodes/{node}/jobs/resources") && m.json["services"][0]["job_name"] == job).map(|_| ())
    })
    .await;
    worker.stop().await;
}
