//! End to end on the process topology: three roots, two clusters of three replicas, two workers
//! on this machine's containerd, all real binaries. Deploy the example application, SIGKILL the
//! root leader and a cluster leader, deploy and undeploy again, see every instance converge
//! (in the API and in containerd), restart the killed replicas and see them catch up.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use grove_local::{containerd_socket, running_tasks, ContainerdNamespaces, Layout, Tier, Topology};
use reqwest::StatusCode;
use serde_json::{json, Value};

fn bin_dir() -> PathBuf {
    // target/<profile>/deps/t10_process_topology-<hash> → target/<profile>
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).unwrap().to_path_buf()
}

fn skip(reason: &str) {
    let banner = "!".repeat(100);
    eprintln!("\n{banner}\n!!! SKIPPED t10_the_process_topology_converges_through_failures: {reason}\n{banner}\n");
}

async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

struct Api {
    http: reqwest::Client,
    token: String,
}

impl Api {
    /// A request to the first root replica (of `urls`) that answers other than 503/connection
    /// error; the answer's status and JSON body.
    async fn call(&self, urls: &[String], method: reqwest::Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut last = None;
        for url in urls {
            let mut req = self.http.request(method.clone(), format!("{url}{path}")).bearer_auth(&self.token);
            if let Some(b) = &body {
                req = req.json(b);
            }
            match req.send().await {
                Ok(r) if r.status() != StatusCode::SERVICE_UNAVAILABLE => {
                    let status = r.status();
                    return (status, r.json().await.unwrap_or(Value::Null));
                }
                Ok(r) => last = Some(format!("{url}: 503 {}", r.text().await.unwrap_or_default())),
                Err(e) => last = Some(format!("{url}: {e}")),
            }
        }
        panic!("no root replica answered {method} {path}: {last:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_the_process_topology_converges_through_failures() {
    let bins = bin_dir();
    if ["grove-root", "grove-cluster", "grove-worker"].iter().any(|b| !bins.join(b).exists()) {
        return skip(&format!("the tiers' binaries are not in {} (cargo nextest run --workspace builds them)", bins.display()));
    }
    let Some(socket) = containerd_socket() else { return skip("no containerd socket on this machine") };
    if Command::new("ctr").arg("--version").output().is_err() {
        return skip("ctr (containerd's client) is not installed");
    }
    let pid = std::process::id();
    let layout = Layout {
        // Below the ephemeral port range (32768+), where outgoing connections could hold a port.
        base_port: 20000 + (pid % 30) as u16 * 400,
        worker_liveness_ms: 6000,
        namespace_prefix: format!("grove-e2e-{pid}"),
        ..Layout::default()
    };
    let namespaces: Vec<String> = (0..layout.workers).map(|w| layout.worker_namespace(w)).collect();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/example-image.sh");
    let imported = Command::new(&script).args(&namespaces).status().expect("run scripts/example-image.sh");
    assert!(imported.success(), "scripts/example-image.sh failed");
    let _cleanup = ContainerdNamespaces { socket: socket.clone(), names: namespaces.clone() };

    let dir = tempfile::tempdir().unwrap();
    let mut topo = Topology::new(layout.clone(), dir.path(), &bins).unwrap();
    topo.start_all().unwrap();
    let took = topo.wait_ready(Duration::from_secs(90)).await.unwrap_or_else(|e| panic!("{e}"));
    eprintln!("topology ready in {took:?}");

    let urls = layout.root_urls();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(15)).build().unwrap();
    let login: Value = http.post(format!("{}/api/auth/login", urls[1])).json(&json!({"username":"Admin","password":"Admin"})).send().await.unwrap().json().await.unwrap();
    let api = Api { http: http.clone(), token: login["token"].as_str().expect("token").to_owned() };

    let sla: Value = serde_json::from_str(&std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/hello.json")).unwrap()).unwrap();
    let (s, app) = api.call(&urls, reqwest::Method::POST, "/api/application/", Some(sla)).await;
    assert_eq!(s, StatusCode::OK, "{app}");
    let service = app[0]["microservices"][0].as_str().unwrap().to_owned();
    let deploy = |urls: Vec<String>| {
        let (api, service) = (&api, service.clone());
        async move {
            let (s, b) = api.call(&urls, reqwest::Method::POST, &format!("/api/service/{service}/instance"), None).await;
            assert_eq!(s, StatusCode::OK, "{b}");
            b["instance_number"].as_u64().unwrap()
        }
    };
    // Both clusters have a worker; two instances spread over them (best fit on free resources).
    for _ in 0..2 {
        deploy(urls.clone()).await;
    }
    let instances = |urls: Vec<String>| {
        let (api, service) = (&api, service.clone());
        async move {
            let (s, b) = api.call(&urls, reqwest::Method::GET, &format!("/api/service/{service}"), None).await;
            assert_eq!(s, StatusCode::OK, "{b}");
            b["instance_list"].as_array().cloned().unwrap_or_default()
        }
    };
    let all_running = |list: &[Value], n: usize| list.len() == n && list.iter().all(|i| i["status"] == "RUNNING");
    wait_for("two instances RUNNING", Duration::from_secs(60), || async { all_running(&instances(urls.clone()).await, 2).then_some(()) }).await;
    let tasks = || namespaces.iter().map(|ns| running_tasks(&socket, ns).len()).sum::<usize>();
    assert_eq!(tasks(), 2, "two containers run in containerd");

    // The root lists every worker, asked live from each cluster leader over the cluster gRPC
    // (with the topology's cluster token).
    let (s, b) = api.call(&urls, reqwest::Method::GET, "/api/workers/", None).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["unreachable"], json!([]), "{b}");
    let workers = b["workers"].as_array().cloned().unwrap_or_default();
    assert_eq!(workers.len(), 2, "one worker per cluster: {b}");
    let mut clusters: Vec<&str> = workers.iter().filter_map(|w| w["cluster_name"].as_str()).collect();
    clusters.sort_unstable();
    assert_eq!(clusters, [Layout::cluster_name(0), Layout::cluster_name(1)], "{b}");
    assert!(workers.iter().all(|w| w["active"] == true && w["vcpus"].as_u64() > Some(0)), "{b}");
    assert_eq!(workers.iter().filter_map(|w| w["instances"].as_u64()).sum::<u64>(), 2, "the two instances are placed: {b}");

    // SIGKILL the root leader and cluster-1's leader.
    let root_leader = topo.leader(Tier::Root).await.expect("a root leader");
    let cluster_leader = topo.leader(Tier::Cluster(0)).await.expect("a cluster-1 leader");
    topo.kill(&root_leader).unwrap();
    topo.kill(&cluster_leader).unwrap();
    eprintln!("killed {root_leader} and {cluster_leader}");
    let alive: Vec<String> = topo.names(Tier::Root).iter().filter(|n| **n != root_leader).map(|n| topo.members[n].url.clone().unwrap()).collect();

    // Deploy two more and undeploy instance 0 through the survivors; everything converges.
    for _ in 0..2 {
        deploy(alive.clone()).await;
    }
    let (s, b) = api.call(&alive, reqwest::Method::DELETE, &format!("/api/service/{service}/instance/0"), None).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    wait_for("instances 1-3 RUNNING, instance 0 gone", Duration::from_secs(90), || async {
        let list = instances(alive.clone()).await;
        let numbers: Vec<u64> = list.iter().filter_map(|i| i["instance_number"].as_u64()).collect();
        (all_running(&list, 3) && !numbers.contains(&0)).then_some(())
    })
    .await;
    wait_for("three containers in containerd", Duration::from_secs(60), || async { (tasks() == 3).then_some(()) }).await;

    // The killed replicas come back and catch up.
    topo.start(&root_leader).unwrap();
    topo.start(&cluster_leader).unwrap();
    wait_for("the restarted replicas ready", Duration::from_secs(60), || async {
        let root_ok = matches!(topo.readyz(&root_leader).await, Some((true, _)));
        let cluster_ok = matches!(topo.readyz(&cluster_leader).await, Some((true, _)));
        (root_ok && cluster_ok).then_some(())
    })
    .await;
    let restarted_url = topo.members[&root_leader].url.clone().unwrap();
    wait_for("the restarted root replica to hold the same state", Duration::from_secs(60), || async {
        let (s, b) = api.call(std::slice::from_ref(&restarted_url), reqwest::Method::GET, "/api/raft/status", None).await;
        let replicas = b["tiers"][0]["replicas"].as_array().cloned().unwrap_or_default();
        let applied: Vec<u64> = replicas.iter().filter_map(|r| r["applied_index"].as_u64()).collect();
        (s == StatusCode::OK && applied.len() == 3 && applied.iter().all(|a| *a == applied[0])).then_some(())
    })
    .await;
    let listed = instances(vec![restarted_url.clone()]).await;
    assert!(all_running(&listed, 3), "the restarted replica answers the converged state: {listed:?}");

    // Undeploy everything: no container is left.
    let (s, b) = api.call(&urls, reqwest::Method::DELETE, &format!("/api/service/{service}/instance/-1"), None).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    wait_for("every container stopped", Duration::from_secs(60), || async { (tasks() == 0).then_some(()) }).await;
    topo.stop_all();
}
