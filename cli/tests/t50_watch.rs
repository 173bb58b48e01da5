//! `grove status --watch`: instances followed from REQUESTED to RUNNING, or to a failure.

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t50_watch_prints_every_step_until_running() {
    let root = FakeRootApi::start().await;
    let grove = Grove::new(&[root.url()]);
    grove.login().await;
    let id = root.with(|s| s.add_service("demo.test.web.test", &[]));
    grove.run(&["service", "deploy", &id]).await.ok();
    grove.run(&["service", "deploy", &id]).await.ok();

    let run = grove.run(&["status", "--watch", "--interval", "50"]).await;
    run.ok();
    // Standard output is a pipe: one line per change, in order, for each instance.
    for n in [0, 1] {
        let steps: Vec<&str> = run
            .stdout
            .lines()
            .filter_map(|l| l.split_whitespace().collect::<Vec<_>>().get(1..3).map(|v| (v[0], v[1])))
            .filter(|(inst, _)| *inst == format!("demo.test.web.test#{n}"))
            .map(|(_, status)| status)
            .collect();
        assert_eq!(steps, ["REQUESTED", "CLUSTER_SCHEDULED", "NODE_SCHEDULED", "CREATING", "RUNNING"], "{}", run.stdout);
    }
    assert!(run.stdout.lines().last().unwrap().starts_with("All 2 instance(s) running after"), "{}", run.stdout);
    assert!(!run.stdout.contains('\x1b'), "no terminal control codes in a pipe");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t51_watch_stops_with_exit_1_when_an_instance_stays_unplaced() {
    let root = FakeRootApi::start().await;
    let grove = Grove::new(&[root.url()]);
    grove.login().await;
    root.with(|s| s.progression = ["REQUESTED", "CLUSTER_SCHEDULED", "NO_WORKER_CAPACITY"].map(String::from).to_vec());
    let id = root.with(|s| s.add_service("demo.test.big.test", &[]));
    grove.run(&["service", "deploy", &id]).await.ok();

    let run = grove.run(&["status", "--watch", "-s", &id, "--interval", "50", "--unplaced-grace", "0"]).await;
    run.failed();
    assert!(run.stdout.contains("demo.test.big.test#0  NO_WORKER_CAPACITY (no worker has 1 free cpu)"), "{}", run.stdout);
    assert_eq!(
        run.stderr.trim(),
        "grove: 1 of 1 instance(s) failed: demo.test.big.test#0 NO_WORKER_CAPACITY (no worker has 1 free cpu)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t52_watch_gives_up_after_its_timeout() {
    let root = FakeRootApi::start().await;
    let grove = Grove::new(&[root.url()]);
    grove.login().await;
    root.with(|s| s.progression = vec!["REQUESTED".into()]);
    let id = root.with(|s| s.add_service("demo.test.slow.test", &[]));
    grove.run(&["service", "deploy", &id]).await.ok();
    let run = grove.run(&["status", "--watch", "--watch-timeout", "1", "--interval", "100"]).await;
    run.failed();
    assert!(run.stderr.contains("gave up after 1s: 1 instance(s) still in progress, 0 running, 0 failed"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t53_plain_status_is_a_table() {
    let root = FakeRootApi::start().await;
    let grove = Grove::new(&[root.url()]);
    grove.login().await;
    let id = root.with(|s| s.add_service("demo.test.web.test", &["RUNNING"]));
    let run = grove.run(&["status"]).await;
    run.ok();
    let row: Vec<&str> = run.stdout.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row, [id.as_str(), "demo.test.web.test#0", "RUNNING", "c1", "w1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t54_on_a_terminal_the_board_is_redrawn_in_place() {
    let root = FakeRootApi::start().await;
    let grove = Grove::new(&[root.url()]);
    grove.login().await;
    let id = root.with(|s| s.add_service("demo.test.web.test", &[]));
    grove.run(&["service", "deploy", &id]).await.ok();

    let Some(run) = grove.run_in_terminal(&["status", "--watch", "--interval", "50"]).await else {
        use std::io::Write;
        let _ = std::io::stderr().write_all(b"\n!!! SKIPPED t54_on_a_terminal_the_board_is_redrawn_in_place: no `script` command (util-linux) to give grove a terminal\n");
        return;
    };
    run.ok();
    // The board (one instance line and a summary) is drawn, then redrawn two lines up.
    assert!(run.stdout.contains("\x1b[2Kdemo.test.web.test#0  [■□□□□□]  REQUESTED"), "{:?}", run.stdout);
    assert!(run.stdout.contains("\x1b[2A\x1b[2Kdemo.test.web.test#0  [■■■■■■]  RUNNING"), "{:?}", run.stdout);
    assert!(run.stdout.contains("1 running, 0 in progress, 0 failed"), "{:?}", run.stdout);
    assert!(run.stdout.contains("All 1 instance(s) running after"), "{:?}", run.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t55_an_instance_placed_after_a_refusal_is_waited_for() {
    let root = FakeRootApi::start().await;
    let grove = Grove::new(&[root.url()]);
    grove.login().await;
    // No cluster had capacity at first; the root retried and placed it.
    root.with(|s| {
        s.progression = ["REQUESTED", "NoActiveClusterWithCapacity", "NoActiveClusterWithCapacity", "CLUSTER_SCHEDULED", "NODE_SCHEDULED", "RUNNING"]
            .map(String::from)
            .to_vec()
    });
    let id = root.with(|s| s.add_service("demo.test.web.test", &[]));
    grove.run(&["service", "deploy", &id]).await.ok();
    let run = grove.run(&["status", "--watch", "--interval", "50", "--unplaced-grace", "5"]).await;
    run.ok();
    let statuses: Vec<&str> = run.stdout.lines().filter_map(|l| l.split_whitespace().nth(2)).collect();
    assert_eq!(statuses[..3], ["REQUESTED", "NoActiveClusterWithCapacity", "NoActiveClusterWithCapacity"], "{}", run.stdout);
    assert!(run.stdout.contains("demo.test.web.test#0  RUNNING"), "{}", run.stdout);
}
