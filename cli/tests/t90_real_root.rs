//! The CLI against a real `grove-root` (a group of one replica), to catch any drift between
//! [`common::FakeRootApi`] and the root's actual routes and bodies. The binary is the one the
//! workspace build put beside this test (`cargo nextest run --workspace` builds it); this
//! crate does not depend on grove-root, so where it is absent the test says so and skips.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

struct RootProcess {
    child: Child,
    _data: tempfile::TempDir,
    api: String,
}

impl Drop for RootProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn grove_root_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).unwrap().join("grove-root")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn start_root(bin: &Path) -> RootProcess {
    let data = tempfile::tempdir().unwrap();
    let (api, raft, cluster) = (free_port(), free_port(), free_port());
    let child = Command::new(bin)
        .args(["--id", "1", "--api-listen", &format!("127.0.0.1:{api}"), "--raft-listen", &format!("127.0.0.1:{raft}")])
        .args(["--cluster-listen", &format!("127.0.0.1:{cluster}")])
        .arg("--data-dir")
        .arg(data.path())
        .env("GROVE_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env_remove("GROVE_PEERS")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start grove-root");
    RootProcess { child, _data: data, api: format!("http://127.0.0.1:{api}") }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t90_the_tour_against_a_real_root() {
    let bin = grove_root_binary();
    if !bin.exists() {
        let banner = "!".repeat(78);
        let notice = format!(
            "\n{banner}\n!!! SKIPPED t90_the_tour_against_a_real_root: no grove-root binary at {}\n\
             !!! `cargo nextest run --workspace` builds it; alone: cargo build -p grove-root --bin grove-root\n{banner}\n",
            bin.display()
        );
        use std::io::Write;
        let _ = std::io::stderr().write_all(notice.as_bytes());
        return;
    }
    let root = start_root(&bin);
    let grove = Grove::new(std::slice::from_ref(&root.api));

    // Ready: the root answers a login (a leader, the signing key and the default Admin are
    // committed; `/readyz` waits for all three).
    let started = Instant::now();
    loop {
        let run = grove.run(&["login", "-p", ADMIN_PASSWORD]).await;
        if run.code == Some(0) {
            break;
        }
        let not_yet = run.stderr.contains("HTTP 503") || run.stderr.contains("does not exist") || run.stderr.contains("connect");
        assert!(not_yet && started.elapsed() < Duration::from_secs(60), "grove-root did not become ready: {run:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The root serves its replicas' status (a token is required): one replica, the leader.
    let run = grove.run(&["raft", "status"]).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    let row: Vec<&str> = run.stdout.lines().nth(1).unwrap_or_default().split_whitespace().collect();
    // TIER GROUP REPLICA(id addr) ROLE TERM LEADER COMMIT …
    assert_eq!((row[0], row[1], row[2], row[4], row[6]), ("root", "root", "1", "leader", "1"), "{}", run.stdout);
    assert!(row[7].parse::<u64>().unwrap() >= 1, "a commit index: {}", run.stdout);

    let sla = write_file(grove.home.path(), "sla.json", SLA);
    let run = grove.run(&["app", "create", "-f", sla.to_str().unwrap()]).await;
    run.ok();
    let web = run.stdout.lines().find(|l| l.contains("demo.test.web.test")).unwrap_or_else(|| panic!("{}", run.stdout));
    let web_id = web.split_whitespace().next().unwrap().to_owned();

    let run = grove.run(&["app", "list"]).await;
    run.ok();
    assert!(run.stdout.lines().nth(1).is_some_and(|l| l.contains("demo") && l.contains("Admin")), "{}", run.stdout);

    grove.run(&["service", "deploy", &web_id]).await.ok();
    let run = grove.run(&["service", "status", &web_id]).await;
    run.ok();
    let row: Vec<&str> = run.stdout.lines().nth(2).unwrap_or_else(|| panic!("{}", run.stdout)).split_whitespace().collect();
    assert_eq!(row[0], "0", "{}", run.stdout);
    assert!(!row[1].is_empty());

    // No cluster is registered: the instance cannot be placed, and watch says so.
    let run = grove.run(&["status", "--watch", "-s", &web_id, "--watch-timeout", "20", "--interval", "200", "--unplaced-grace", "1"]).await;
    run.failed();
    assert!(run.stdout.contains("demo.test.web.test#0  REQUESTED"), "{}", run.stdout);
    assert!(run.stderr.contains("1 of 1 instance(s) failed: demo.test.web.test#0"), "{}", run.stderr);

    grove.run(&["service", "scale", &web_id, "0"]).await.ok();
    let run = grove.run(&["service", "status", &web_id]).await;
    assert!(run.stdout.contains("No instances"), "{}", run.stdout);

    let run = grove.run(&["cluster", "list"]).await;
    run.ok();
    assert_eq!(run.stdout.trim(), "No clusters registered");
    let run = grove.run(&["worker", "list"]).await;
    run.ok();
    assert_eq!(run.stdout.trim(), "No workers");

    let app_id = grove.run(&["app", "list"]).await.stdout.lines().nth(1).unwrap().split_whitespace().next().unwrap().to_owned();
    grove.run(&["app", "delete", &app_id]).await.ok();
    let run = grove.run(&["service", "status", &web_id]).await;
    run.failed();
    assert!(run.stderr.contains("HTTP 404 Not Found"), "{}", run.stderr);
}
