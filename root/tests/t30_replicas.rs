//! Three root replicas: the same answers everywhere, one signing key, and no acknowledged write
//! lost when the leader dies under load.

mod common;

use std::time::Duration;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

async fn leader(t: &TestRoots) -> u64 {
    wait_for("a leader", Duration::from_secs(15), || async {
        t.roots.iter().find(|(_, r)| r.replica.is_leader()).map(|(id, _)| *id)
    })
    .await
}

#[tokio::test]
async fn every_replica_answers_the_same_and_accepts_every_token() {
    let t = TestRoots::start(3).await;
    let tokens: Vec<String> = futures::future::join_all((1..=3).map(|id| t.admin(id))).await;
    // A write through each replica.
    for (i, id) in (1..=3).enumerate() {
        let (s, b) = t.call(id, Method::POST, "/api/application/", Some(&tokens[i]), Some(sla(&format!("app{id}"), &["web"]))).await;
        assert_eq!(s, StatusCode::OK, "{b}");
    }
    // Every token works on every replica, and reads agree right after the writes.
    let mut answers: Vec<Value> = Vec::new();
    for id in 1..=3 {
        for tok in &tokens {
            let (s, b) = t.call(id, Method::GET, "/api/applications/", Some(tok), None).await;
            assert_eq!(s, StatusCode::OK);
            answers.push(b);
        }
    }
    assert_eq!(answers[0].as_array().unwrap().len(), 3);
    assert!(answers.iter().all(|a| *a == answers[0]), "replicas disagree");
    // The tier's status from any replica: three replicas, one leader, one term.
    let (s, b) = t.call(2, Method::GET, "/api/raft/status", None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
    let (s, b) = t.call(2, Method::GET, "/api/raft/status", Some(&tokens[0]), None).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let replicas = b["tiers"][0]["replicas"].as_array().unwrap();
    assert_eq!((b["tiers"][0]["tier"].as_str(), replicas.len()), (Some("root"), 3), "{b}");
    assert_eq!(replicas.iter().filter(|r| r["role"] == "leader").count(), 1, "{b}");
    assert!(replicas.iter().all(|r| r["term"] == replicas[0]["term"] && r["error"].is_null()), "{b}");
    let (_, ready) = t.call(3, Method::GET, "/readyz", None, None).await;
    assert_eq!((ready["ready"].as_bool(), ready["id"].as_u64()), (Some(true), Some(3)), "{ready}");
    let (_, c1) = t.call(1, Method::GET, "/api/clusters/", None, None).await;
    let (_, c3) = t.call(3, Method::GET, "/api/clusters/", None, None).await;
    assert_eq!(c1, c3);
    // One key: every replica loaded the same committed key.
    let pems: Vec<String> = futures::future::join_all(t.roots.values().map(|r| async { r.api.keys().await.unwrap().public_pem.clone() })).await;
    assert!(pems.iter().all(|p| *p == pems[0]));
    t.shutdown().await;
}

#[tokio::test]
async fn killing_the_leader_loses_no_acknowledged_write() {
    let mut t = TestRoots::start(3).await;
    let token = t.admin(1).await;
    let (_, b) = t.call(1, Method::POST, "/api/application/", Some(&token), Some(sla("base", &["web"]))).await;
    let job_id = b[0]["microservices"][0].as_str().unwrap().to_owned();
    let urls: Vec<String> = (1..=3).map(|id| t.url(id, "")).collect();
    let old_leader = leader(&t).await;

    // Clients on every replica: create applications and deploy instances, recording what was
    // acknowledged.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut clients = Vec::new();
    for c in 0..6usize {
        let http = t.http.clone();
        let base = urls[c % 3].clone();
        let token = token.clone();
        let job_id = job_id.clone();
        let stop = stop_rx.clone();
        clients.push(tokio::spawn(async move {
            let (mut apps, mut instances) = (Vec::new(), 0u32);
            let mut i = 0;
            while !*stop.borrow() {
                i += 1;
                let name = format!("c{c}n{i}");
                let r = http.post(format!("{base}/api/application/")).bearer_auth(&token).json(&sla(&name, &["s"])).send().await;
                if let Ok(r) = r {
                    if r.status() == StatusCode::OK {
                        apps.push(name);
                    } else {
                        assert!(matches!(r.status().as_u16(), 503 | 409), "unexpected {}", r.status());
                    }
                }
                let r = http.post(format!("{base}/api/service/{job_id}/instance")).bearer_auth(&token).send().await;
                if let Ok(r) = r {
                    if r.status() == StatusCode::OK {
                        instances += 1;
                    }
                }
            }
            (apps, instances)
        }));
    }
    // Let some writes land, kill the leader, wait for a new one, let more land.
    let applied = t.roots[&old_leader].replica.status().applied_index;
    wait_for("writes before the kill", Duration::from_secs(20), || async {
        (t.roots[&old_leader].replica.status().applied_index > applied + 20).then_some(())
    })
    .await;
    t.roots.remove(&old_leader).unwrap().shutdown().await;
    let new_leader = leader(&t).await;
    assert_ne!(new_leader, old_leader);
    let applied = t.roots[&new_leader].replica.status().applied_index;
    wait_for("writes after the failover", Duration::from_secs(20), || async {
        (t.roots[&new_leader].replica.status().applied_index > applied + 20).then_some(())
    })
    .await;
    stop_tx.send(true).unwrap();
    let mut acked_apps = Vec::new();
    let mut acked_instances = 0;
    for c in clients {
        let (apps, n) = c.await.unwrap();
        acked_apps.extend(apps);
        acked_instances += n;
    }
    assert!(!acked_apps.is_empty() && acked_instances > 0);

    // Every acknowledged application and instance is there, on both survivors.
    for id in t.roots.keys().copied().collect::<Vec<_>>() {
        let (s, apps) = t.call(id, Method::GET, "/api/applications/", Some(&token), None).await;
        assert_eq!(s, StatusCode::OK, "{apps}");
        let names: Vec<&str> = apps.as_array().unwrap().iter().map(|a| a["application_name"].as_str().unwrap()).collect();
        for a in &acked_apps {
            assert!(names.contains(&a.as_str()), "acknowledged application {a} lost on replica {id}");
        }
        let (_, job) = t.call(id, Method::GET, &format!("/api/service/{job_id}"), Some(&token), None).await;
        let n = job["instance_list"].as_array().unwrap().len() as u32;
        // Writes whose answer was lost (503 "outcome unknown") may exist too; never fewer.
        assert!(n >= acked_instances, "{n} instances < {acked_instances} acknowledged on replica {id}");
        let numbers: std::collections::BTreeSet<u64> = job["instance_list"].as_array().unwrap().iter().map(|i| i["instance_number"].as_u64().unwrap()).collect();
        assert_eq!(numbers.len() as u32, n, "instance numbers are unique");
    }
    // The survivors still serve a token minted before the failover.
    let (s, _) = t.call(new_leader, Method::GET, "/api/users/", Some(&token), None).await;
    assert_eq!(s, StatusCode::OK);
    let _ = json!(null);
    t.shutdown().await;
}

#[tokio::test]
async fn no_quorum_answers_503_within_the_request_timeout() {
    let mut t = TestRoots::start_with(3, |c| c.timing.request_timeout_ms = 1500).await;
    let token = t.admin(1).await;
    let l = leader(&t).await;
    let survivor = (1..=3).find(|id| *id != l).unwrap();
    for id in (1..=3).filter(|id| *id != survivor).collect::<Vec<_>>() {
        t.roots.remove(&id).unwrap().shutdown().await;
    }
    let started = std::time::Instant::now();
    let (s, b) = t.call(survivor, Method::POST, "/api/application/", Some(&token), Some(sla("lonely", &["s"]))).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{b}");
    // Machine-readable: either nothing was changed, or the write may have been applied.
    let outcome = b["outcome"].as_str().unwrap_or_default();
    assert!(
        (outcome == "not_applied" && b["message"].as_str().unwrap().contains("quorum")) || (outcome == "unknown" && b["message"].as_str().unwrap().contains("unknown")),
        "{b}"
    );
    let (s, b) = t.call(survivor, Method::GET, "/api/applications/", Some(&token), None).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "no stale reads");
    assert_eq!(b["outcome"], "not_applied", "a read changes nothing: {b}");
    assert!(started.elapsed() < Duration::from_secs(10), "answers are bounded: {:?}", started.elapsed());
    let (s, _) = t.call(survivor, Method::GET, "/healthz", None, None).await;
    assert_eq!(s, StatusCode::OK);
    t.shutdown().await;
}
