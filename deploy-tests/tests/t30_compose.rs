//! `docker-compose.ha.yml` end to end: the images built by `scripts/build-images.sh`, three roots
//! and a cluster of three behind HAProxy, two containerised workers on this machine's
//! containerd. Through the load balancer: log in, create the example application, deploy two
//! instances and see them RUNNING (in the API and in containerd); then `docker kill` the root
//! leader and the cluster replica holding a worker's MQTT session, deploy twice and undeploy
//! once more through the load balancer, and check that every acknowledged operation took effect
//! and both workers reattached to a surviving broker. Always torn down with `down -v`.
//! Skipped loudly without a Docker engine, a compose tool, a containerd socket or `ctr`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const TEST: &str = "t30_the_compose_deployment_survives_a_root_leader_and_a_broker_replica";
/// Images built by this test carry this tag (not `latest`, not t10's), removed afterwards.
const TAG: &str = "grove-e2e";
const CONTAINERD_SOCKETS: [&str; 2] = ["/run/containerd/containerd.sock", "/var/run/docker/containerd/containerd.sock"];
const IMAGES: [&str; 4] = ["root", "cluster", "worker", "haproxy"];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

/// `target/<profile>`: this test binary lives in `target/<profile>/deps/`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent().and_then(Path::parent).expect("target/<profile>/deps/<test>").to_path_buf()
}

fn skip(why: &str, hint: &str) {
    let banner = "!".repeat(78);
    let notice = format!("\n{banner}\n!!! SKIPPED {TEST}: {why}\n!!! {hint}\n{banner}\n");
    // Straight to file descriptor 2: libtest's capture of `eprintln!` would hide it.
    let _ = std::io::stderr().write_all(notice.as_bytes());
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    // Shown when the test fails (and with --no-capture).
    eprintln!("$ {cmd:?} -> {}\n{}{}", out.status, String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    out
}

fn succeeds(program: &str, args: &[&str]) -> bool {
    Command::new(program).args(args).output().is_ok_and(|o| o.status.success())
}

/// `docker-compose` (Debian's, v1) when present, else the `docker compose` plugin.
fn compose_tool() -> Option<Vec<String>> {
    if succeeds("docker-compose", &["version"]) {
        Some(vec!["docker-compose".into()])
    } else if succeeds("docker", &["compose", "version"]) {
        Some(vec!["docker".into(), "compose".into()])
    } else {
        None
    }
}

/// A port the kernel just handed out on loopback (free for the moment).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("bind 127.0.0.1:0").port()
}

/// One HTTP/1.0 exchange, `(status, body)`; an error when the connection fails.
fn http(addr: &str, method: &str, path: &str, token: Option<&str>, body: Option<&Value>) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr.parse().expect("socket address"), Duration::from_secs(3))?;
    s.set_read_timeout(Some(Duration::from_secs(15)))?;
    let body = body.map(Value::to_string).unwrap_or_default();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    write!(s, "{method} {path} HTTP/1.0\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len())?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Ok((status, body))
}

fn json_of(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or(Value::Null)
}

/// Poll `check` until it returns `Some`, or fail after `limit` with `what`.
fn wait_for<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(started.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The compose project of this test, and everything it leaves on the machine: torn down with
/// `down -v` (containers, network, volumes), the workers' containerd namespaces emptied and
/// removed, the log directory and the test's images removed — whatever happens.
struct Deployment {
    compose: Vec<String>,
    project: String,
    env: Vec<(String, String)>,
    socket: PathBuf,
    namespaces: Vec<String>,
    log_dir: PathBuf,
}

impl Deployment {
    fn compose(&self, args: &[&str]) -> Output {
        let file = repo_root().join("docker-compose.ha.yml");
        run(Command::new(&self.compose[0])
            .args(&self.compose[1..])
            .arg("-f")
            .arg(&file)
            .args(["-p", &self.project])
            .args(args)
            .envs(self.env.iter().cloned())
            .current_dir(repo_root()))
    }

    /// The id of a service's container (running or not).
    fn container(&self, service: &str) -> String {
        let out = run(Command::new("docker").args([
            "ps",
            "-aq",
            "--filter",
            &format!("label=com.docker.compose.project={}", self.project),
            "--filter",
            &format!("label=com.docker.compose.service={service}"),
        ]));
        let id = String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or("").trim().to_owned();
        assert!(!id.is_empty(), "no container for service {service}");
        id
    }

    /// A service container's address on the compose network (reachable from this Linux host).
    fn ip(&self, service: &str) -> String {
        let out = run(Command::new("docker").args(["inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", &self.container(service)]));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn logs(&self, service: &str) -> String {
        let out = Command::new("docker").args(["logs", "--tail", "40", &self.container(service)]).output();
        out.map(|o| format!("--- {service} ---\n{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))).unwrap_or_default()
    }

    fn ctr(&self, namespace: &str, args: &[&str]) -> Option<Output> {
        Command::new("ctr").arg("-a").arg(&self.socket).args(["-n", namespace]).args(args).output().ok()
    }

    /// Tasks RUNNING in the workers' namespaces.
    fn running_tasks(&self) -> usize {
        let count = |ns: &String| {
            let out = self.ctr(ns, &["tasks", "ls"]).expect("run ctr");
            String::from_utf8_lossy(&out.stdout).lines().skip(1).filter(|l| l.split_whitespace().nth(2) == Some("RUNNING")).count()
        };
        self.namespaces.iter().map(count).sum()
    }

    /// `/readyz` role of a replica, addressed by container IP.
    fn role(&self, service: &str, port: u16) -> Option<String> {
        let (_, body) = http(&format!("{}:{port}", self.ip(service)), "GET", "/readyz", None, None).ok()?;
        json_of(&body)["role"].as_str().map(str::to_owned)
    }

    /// Workers attached to a cluster replica's MQTT broker (its `/metrics`).
    fn attached_workers(&self, service: &str) -> Option<u64> {
        let (_, body) = http(&format!("{}:10100", self.ip(service)), "GET", "/metrics", None, None).ok()?;
        body.lines().find_map(|l| l.strip_prefix("grove_cluster_attached_workers ")).and_then(|v| v.trim().parse::<f64>().ok()).map(|v| v as u64)
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for s in ["root-1", "root-2", "root-3", "cluster-1", "cluster-2", "cluster-3", "worker-1", "worker-2"] {
                let _ = std::io::stderr().write_all(self.logs(s).as_bytes());
            }
        }
        let _ = self.compose(&["down", "-v", "--remove-orphans", "-t", "5"]);
        // Stopping the workers leaves their instances running in containerd.
        for ns in &self.namespaces {
            if let Some(out) = self.ctr(ns, &["tasks", "ls", "-q"]) {
                for task in String::from_utf8_lossy(&out.stdout).lines() {
                    let _ = self.ctr(ns, &["tasks", "kill", "-s", "SIGKILL", task]);
                    std::thread::sleep(Duration::from_millis(200));
                    let _ = self.ctr(ns, &["tasks", "delete", "-f", task]);
                }
            }
            if let Some(out) = self.ctr(ns, &["containers", "ls", "-q"]) {
                for c in String::from_utf8_lossy(&out.stdout).lines() {
                    let _ = self.ctr(ns, &["containers", "delete", c]);
                }
            }
            let _ = self.ctr(ns, &["images", "rm", "grove.local/hello:1"]);
            // containerd removes snapshots and blobs in the background: a namespace that still
            // holds some cannot be removed yet.
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                if let Some(out) = self.ctr(ns, &["snapshots", "ls"]) {
                    for key in String::from_utf8_lossy(&out.stdout).lines().skip(1).filter_map(|l| l.split_whitespace().next()) {
                        let _ = self.ctr(ns, &["snapshots", "rm", key]);
                    }
                }
                if let Some(out) = self.ctr(ns, &["content", "ls", "-q"]) {
                    for blob in String::from_utf8_lossy(&out.stdout).lines() {
                        let _ = self.ctr(ns, &["content", "rm", blob]);
                    }
                }
                let removed = Command::new("ctr").arg("-a").arg(&self.socket).args(["namespaces", "rm", ns]).output();
                if removed.is_ok_and(|o| o.status.success()) || Instant::now() > deadline {
                    break;
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        }
        let _ = std::fs::remove_dir_all(&self.log_dir);
        for image in IMAGES {
            let _ = Command::new("docker").args(["rmi", &format!("grove/{image}:{TAG}")]).output();
        }
    }
}

/// What happened to one write sent through the load balancer.
enum Outcome {
    /// Answered 200 with this body.
    Acknowledged(Value),
    /// Never answered 200 within the deadline; it may or may not have been applied.
    Unknown,
}

/// Send a write through the load balancer until it is acknowledged: a failed connection, a
/// 502/503/504 (no replica ready, no quorum yet, or the outcome unknown) is retried. Returns
/// the outcome and how many attempts may have been applied without an acknowledgement.
fn write(lb: &str, token: &str, method: &str, path: &str, limit: Duration) -> (Outcome, usize) {
    let started = Instant::now();
    let mut unacknowledged = 0;
    while started.elapsed() < limit {
        match http(lb, method, path, Some(token), None) {
            Ok((200, body)) => return (Outcome::Acknowledged(json_of(&body)), unacknowledged),
            Ok((502..=504, body)) => {
                // The root says when nothing was applied, and so does HAProxy's own 503 (no
                // replica to send it to); anything else may have been applied.
                if json_of(&body)["outcome"] != "not_applied" && !body.contains("No server is available") {
                    unacknowledged += 1;
                }
            }
            Ok((status, body)) => panic!("{method} {path}: {status} {body}"),
            // The request may have reached a replica that died before answering.
            Err(_) => unacknowledged += 1,
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    (Outcome::Unknown, unacknowledged)
}

#[test]
fn t30_the_compose_deployment_survives_a_root_leader_and_a_broker_replica() {
    let started = Instant::now();
    match Command::new("docker").args(["info", "--format", "{{.ServerVersion}}"]).output() {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            return skip(
                &format!("the Docker engine does not answer: {}", String::from_utf8_lossy(&o.stderr).trim()),
                "Start dockerd (and let this user use it) to run this test.",
            )
        }
        Err(e) => return skip(&format!("no docker command ({e})"), "Install Docker Engine (Debian's docker.io) to run this test."),
    }
    let Some(compose) = compose_tool() else {
        return skip("neither docker-compose nor `docker compose` works", "Install Debian's docker-compose to run this test.");
    };
    let Some(socket) = CONTAINERD_SOCKETS.iter().map(PathBuf::from).find(|p| p.exists()) else {
        return skip("no containerd socket on this machine", "The workers run instances on the host's containerd.");
    };
    if !succeeds("ctr", &["--version"]) {
        return skip("ctr (containerd's client) is not installed", "Install containerd to run this test.");
    }
    let bins = profile_dir();
    if let Some(missing) = ["grove-root", "grove-cluster", "grove-worker"].iter().find(|b| !bins.join(b).exists()) {
        return skip(&format!("no {missing} binary in {}", bins.display()), "`cargo nextest run --workspace` builds it.");
    }

    let pid = std::process::id();
    let project = format!("grove-e2e-{pid}");
    let prefix = format!("grove-compose-e2e-{pid}");
    let namespaces = vec![format!("{prefix}-w1"), format!("{prefix}-w2")];
    let log_dir = std::env::temp_dir().join(format!("grove-compose-e2e-{pid}"));
    let (api_port, cluster_port, mqtt_port) = (free_port(), free_port(), free_port());
    let password = "compose-e2e-pw";
    let env: Vec<(String, String)> = [
        ("GROVE_TAG", TAG.to_owned()),
        ("GROVE_ADMIN_PASSWORD", password.to_owned()),
        ("GROVE_API_PORT", api_port.to_string()),
        ("GROVE_CLUSTER_PORT", cluster_port.to_string()),
        ("GROVE_MQTT_PORT", mqtt_port.to_string()),
        ("GROVE_CONTAINERD_SOCKET", socket.display().to_string()),
        ("GROVE_NAMESPACE_PREFIX", prefix.clone()),
        ("GROVE_WORKER_LOG_DIR", log_dir.display().to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let d = Deployment { compose, project, env, socket, namespaces: namespaces.clone(), log_dir };

    // The base is reused when present (debootstrap once, about a minute and a half otherwise).
    let out = run(Command::new(repo_root().join("scripts/build-images.sh"))
        .args(["--only", "root,cluster,worker,haproxy", "--bin-dir", bins.to_str().unwrap(), "--tag", TAG, "--strict"])
        .current_dir(repo_root()));
    assert!(out.status.success(), "build-images.sh failed");
    let out = run(Command::new(repo_root().join("scripts/example-image.sh")).args(&namespaces));
    assert!(out.status.success(), "scripts/example-image.sh failed");
    eprintln!("images ready after {:?}", started.elapsed());

    let out = d.compose(&["up", "-d"]);
    assert!(out.status.success(), "compose up failed");
    let lb = format!("127.0.0.1:{api_port}");

    // Ready: the balancer has a ready root, the cluster is registered, active, with both workers.
    let up = Instant::now();
    wait_for("the root balancer's /readyz", Duration::from_secs(90), || http(&lb, "GET", "/readyz", None, None).ok().filter(|(s, _)| *s == 200));
    wait_for("the cluster at the root with two active workers", Duration::from_secs(90), || {
        let (s, body) = http(&lb, "GET", "/api/clusters/", None, None).ok()?;
        let doc = json_of(&body).as_array()?.first()?.clone();
        (s == 200 && doc["active"] == true && doc["active_nodes"].as_u64() == Some(2)).then_some(())
    });
    eprintln!("deployment ready {:?} after `up`", up.elapsed());
    let (s, body) = http(&format!("127.0.0.1:{cluster_port}"), "GET", "/readyz", None, None).expect("the cluster balancer answers");
    assert_eq!(s, 200, "cluster balancer /readyz: {body}");

    let login = json!({"username": "Admin", "password": password});
    let token = wait_for("the Admin's login through the balancer", Duration::from_secs(30), || {
        let (s, body) = http(&lb, "POST", "/api/auth/login", None, Some(&login)).ok()?;
        assert!(s != 401, "GROVE_ADMIN_PASSWORD did not reach the roots: {body}");
        (s == 200).then(|| json_of(&body)["token"].as_str().map(str::to_owned)).flatten()
    });

    let sla: Value = serde_json::from_str(&std::fs::read_to_string(repo_root().join("examples/hello.json")).unwrap()).unwrap();
    let (s, body) = http(&lb, "POST", "/api/application/", Some(&token), Some(&sla)).unwrap();
    assert_eq!(s, 200, "create application: {body}");
    let service = json_of(&body)[0]["microservices"][0].as_str().expect("a service id").to_owned();
    let instance_path = format!("/api/service/{service}/instance");

    let deploy = |limit: Duration| match write(&lb, &token, "POST", &instance_path, limit) {
        (Outcome::Acknowledged(b), extra) => (b["instance_number"].as_u64(), extra),
        (Outcome::Unknown, extra) => (None, extra),
    };
    let instances = || -> Option<Vec<Value>> {
        let (s, body) = http(&lb, "GET", &format!("/api/service/{service}"), Some(&token), None).ok()?;
        (s == 200).then(|| json_of(&body)["instance_list"].as_array().cloned().unwrap_or_default())
    };
    let running = |list: &[Value], n: u64| list.iter().any(|i| i["instance_number"].as_u64() == Some(n) && i["status"] == "RUNNING");

    let mut acknowledged = Vec::new();
    for _ in 0..2 {
        let (n, extra) = deploy(Duration::from_secs(10));
        assert_eq!(extra, 0, "a deploy failed before any fault");
        acknowledged.push(n.expect("the deploy was acknowledged"));
    }
    let deployed = Instant::now();
    wait_for("two instances RUNNING", Duration::from_secs(60), || {
        let list = instances()?;
        (list.len() == 2 && acknowledged.iter().all(|n| running(&list, *n))).then_some(())
    });
    eprintln!("two instances RUNNING {:?} after the deploys", deployed.elapsed());
    wait_for("two containers in containerd", Duration::from_secs(20), || (d.running_tasks() == 2).then_some(()));

    // The root leader (by each replica's /readyz) and a cluster replica holding a session.
    let roots = ["root-1", "root-2", "root-3"];
    let root_leader = wait_for("exactly one root leader", Duration::from_secs(20), || {
        let leaders: Vec<&str> = roots.iter().copied().filter(|r| d.role(r, 10000).as_deref() == Some("leader")).collect();
        (leaders.len() == 1).then(|| leaders[0])
    });
    let clusters = ["cluster-1", "cluster-2", "cluster-3"];
    let (holder, holding) = wait_for("both workers' sessions on the brokers", Duration::from_secs(20), || {
        let counts: Vec<u64> = clusters.iter().map(|c| d.attached_workers(c)).collect::<Option<_>>()?;
        let i = counts.iter().position(|n| *n > 0)?;
        (counts.iter().sum::<u64>() == 2).then(|| (clusters[i], counts[i]))
    });
    let holder_role = d.role(holder, 10100).unwrap_or_default();
    let out = run(Command::new("docker").args(["kill", &d.container(root_leader), &d.container(holder)]));
    assert!(out.status.success(), "docker kill failed");
    eprintln!("killed the root leader {root_leader} and {holder} ({holder_role}, {holding} worker session(s))");
    let killed = Instant::now();

    // Two deploys and one undeploy through the balancer while it ejects the dead replicas.
    let mut unknown = 0;
    for _ in 0..2 {
        let (n, extra) = deploy(Duration::from_secs(60));
        unknown += extra;
        match n {
            Some(n) => acknowledged.push(n),
            None => panic!("a deploy was never acknowledged within 60 s of the kills"),
        }
    }
    let removed = acknowledged[0];
    match write(&lb, &token, "DELETE", &format!("{instance_path}/{removed}"), Duration::from_secs(60)) {
        (Outcome::Acknowledged(_), _) => {}
        (Outcome::Unknown, _) => panic!("the undeploy was never acknowledged within 60 s of the kills"),
    }
    acknowledged.retain(|n| *n != removed);
    eprintln!("writes acknowledged {:?} after the kills ({unknown} attempt(s) with an unknown outcome)", killed.elapsed());

    // Every acknowledged operation took effect: the three live instances RUNNING, the
    // undeployed one gone, nothing beyond what unanswered attempts may have added.
    let list = wait_for("instances converged after the kills", Duration::from_secs(90), || {
        let list = instances()?;
        let numbers: Vec<u64> = list.iter().filter_map(|i| i["instance_number"].as_u64()).collect();
        let done = acknowledged.iter().all(|n| running(&list, *n))
            && !numbers.contains(&removed)
            && list.iter().all(|i| i["status"] == "RUNNING");
        done.then_some(list)
    });
    assert!(list.len() <= acknowledged.len() + unknown, "more instances than were asked for: {list:?}");
    let expected = list.len();
    wait_for("containerd runs exactly the live instances", Duration::from_secs(60), || (d.running_tasks() == expected).then_some(()));
    // Both workers reattached to surviving brokers and are still alive at their cluster.
    wait_for("both workers' sessions on the surviving brokers", Duration::from_secs(30), || {
        let alive = clusters.iter().filter(|c| **c != holder);
        (alive.map(|c| d.attached_workers(c)).sum::<Option<u64>>()? == 2).then_some(())
    });
    let (s, body) = http(&format!("127.0.0.1:{cluster_port}"), "GET", "/api/cluster/status", None, None).unwrap();
    let status = json_of(&body);
    assert!(s == 200 && status["workers"] == 2 && status["workers_lost"] == 0, "cluster status: {body}");
    eprintln!("converged {:?} after the kills", killed.elapsed());

    // Undeploy everything: no container is left on the host's containerd.
    match write(&lb, &token, "DELETE", &format!("{instance_path}/-1"), Duration::from_secs(30)) {
        (Outcome::Acknowledged(_), _) => {}
        (Outcome::Unknown, _) => panic!("undeploying every instance was never acknowledged"),
    }
    wait_for("every container stopped", Duration::from_secs(60), || (d.running_tasks() == 0).then_some(()));

    let out = d.compose(&["down", "-v", "-t", "5"]);
    assert!(out.status.success(), "compose down failed");
    let label = format!("label=com.docker.compose.project={}", d.project);
    let left = run(Command::new("docker").args(["ps", "-aq", "--filter", &label]));
    assert!(String::from_utf8_lossy(&left.stdout).trim().is_empty(), "containers left after down");
    let left = run(Command::new("docker").args(["volume", "ls", "-q", "--filter", &label]));
    assert!(String::from_utf8_lossy(&left.stdout).trim().is_empty(), "volumes left after down -v");
    eprintln!("{TEST} took {:?}", started.elapsed());
}
