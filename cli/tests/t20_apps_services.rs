//! Applications and services: the requests the CLI sends and what it prints.

mod common;

use common::*;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t20_app_create_sends_the_sla_verbatim_and_lists_its_services() {
    let root = FakeRootApi::start().await;
    let grove = Grove::new(&[root.url()]);
    grove.login().await;
    let sla = write_file(grove.home.path(), "sla.json", SLA);
    let run = grove.run(&["app", "create", "-f", sla.to_str().unwrap()]).await;
    run.ok();

    let create = root.requests().into_iter().find(|r| r.path == "/api/application/").expect("POST /api/application/");
    assert_eq!(create.method, "POST");
    assert_eq!(create.body, SLA, "the file is sent as it is");
    assert_eq!(create.bearer.as_deref(), Some("access-1"));
    assert_eq!(create.content_type.as_deref(), Some("application/json"));

    let (web, cache) = root.with(|s| {
        let by_name = |n: &str| s.services.iter().find(|(_, d)| d["job_name"] == n).map(|(k, _)| k.clone()).unwrap();
        (by_name("demo.test.web.test"), by_name("demo.test.cache.test"))
    });
    assert!(run.stdout.contains("demo  ") && run.stdout.contains("test"), "{}", run.stdout);
    for (id, job) in [(&web, "demo.test.web.test"), (&cache, "demo.test.cache.test")] {
        let line = run.stdout.lines().find(|l| l.starts_with(id.as_str())).unwrap_or_else(|| panic!("no line for {id}:\n{}", run.stdout));
        assert!(line.contains(job), "{line}");
    }
    assert!(run.stdout.contains("grove service deploy <SERVICE ID>"));

    // --json prints the server's answer.
    let run = grove.run(&["app", "list", "--json"]).await;
    run.ok();
    let apps: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(apps[0]["application_name"], "demo");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t21_app_create_refuses_broken_json_before_sending() {
    let root = FakeRootApi::start().await;
    let grove = Grove::new(&[root.url()]);
    grove.login().await;
    let sla = write_file(grove.home.path(), "broken.json", "{\"sla_version\": \"v2.0\",\n  oops }");
    let run = grove.run(&["app", "create", "-f", sla.to_str().unwrap()]).await;
    run.failed();
    assert!(run.stderr.contains("broken.json: not valid JSON: key must be a string at line 2 column 3"), "{}", run.stderr);
    assert!(root.calls().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t22_an_invalid_sla_names_the_field() {
    let root = FakeRootApi::start().await;
    let grove = Grove::new(&[root.url()]);
    grove.login().await;
    let sla = write_file(grove.home.path(), "sla.json", r#"{"sla_version": "v2.0"}"#);
    let run = grove.run(&["app", "create", "-f", sla.to_str().unwrap()]).await;
    run.failed();
    assert_eq!(
        run.stderr.trim(),
        format!("grove: POST /api/application/ failed: HTTP 422 Unprocessable Entity: applications: is required (from {})", root.url())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t23_app_list_as_a_non_admin_uses_the_callers_user_id() {
    let root = FakeRootApi::start().await;
    let grove = Grove::new(&[root.url()]);
    grove.login().await;
    let sla = write_file(grove.home.path(), "sla.json", SLA);
    grove.run(&["app", "create", "-f", sla.to_str().unwrap()]).await.ok();
    root.with(|s| s.admin = false);
    let before = root.calls().len();
    let run = grove.run(&["app", "list"]).await;
    run.ok();
    assert_eq!(
        root.calls()[before..],
        ["GET /api/applications/", "GET /api/user/Admin", "GET /api/applications/u0000000000000000000001"]
    );
    let line = run.stdout.lines().nth(1).expect("one application");
    assert!(line.contains("demo") && line.contains("test") && line.contains("Admin"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t24_deploy_undeploy_and_delete_hit_the_contract_routes() {
    let root = FakeRootApi::start().await;
    let grove = Grove::new(&[root.url()]);
    grove.login().await;
    let id = root.with(|s| s.add_service("a.n.s.n", &["RUNNING", "RUNNING", "RUNNING"]));

    let run = grove.run(&["service", "deploy", &id]).await;
    run.ok();
    assert!(run.stdout.contains(&format!("Requested one more instance of {id} (ok)")), "{}", run.stdout);
    grove.run(&["service", "undeploy", &id, "--instance", "1"]).await.ok();
    let run = grove.run(&["service", "undeploy", &id]).await;
    run.ok();
    assert!(run.stdout.contains("Undeploying every instance"), "{}", run.stdout);
    assert_eq!(
        root.calls(),
        [format!("POST /api/service/{id}/instance"), format!("DELETE /api/service/{id}/instance/1"), format!("DELETE /api/service/{id}/instance/-1")]
    );

    let run = grove.run(&["app", "delete", "nope"]).await;
    run.failed();
    assert!(run.stderr.contains("DELETE /api/application/nope failed: HTTP 404 Not Found: application nope not found"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t25_scale_adds_or_removes_the_difference() {
    let root = FakeRootApi::start().await;
    let grove = Grove::new(&[root.url()]);
    grove.login().await;
    let id = root.with(|s| s.add_service("a.n.s.n", &["RUNNING"]));

    let run = grove.run(&["service", "scale", &id, "3"]).await;
    run.ok();
    assert!(run.stdout.contains("from 1 to 3: requested 2 instance(s)"), "{}", run.stdout);
    assert_eq!(root.with(|s| s.services[&id]["instance_list"].as_array().unwrap().len()), 3);

    let before = root.calls().len();
    let run = grove.run(&["service", "scale", &id, "1"]).await;
    run.ok();
    assert!(run.stdout.contains("from 3 to 1: undeploying instance(s) 2, 1"), "{}", run.stdout);
    assert_eq!(
        root.calls()[before..],
        [format!("GET /api/service/{id}"), format!("DELETE /api/service/{id}/instance/2"), format!("DELETE /api/service/{id}/instance/1")]
    );
    let run = grove.run(&["service", "scale", &id, "1"]).await;
    run.ok();
    assert!(run.stdout.contains("already has 1 instance(s)"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t26_service_status_and_list_show_each_instance() {
    let root = FakeRootApi::start().await;
    let grove = Grove::new(&[root.url()]);
    grove.login().await;
    let id = root.with(|s| s.add_service("a.n.web.n", &["RUNNING", "NODE_SCHEDULED"]));

    let run = grove.run(&["service", "status", &id]).await;
    run.ok();
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines[0], format!("a.n.web.n ({id}), image docker.io/library/nginx:latest"));
    assert_eq!(lines[1].split_whitespace().collect::<Vec<_>>(), ["INSTANCE", "STATUS", "CLUSTER", "WORKER", "DETAIL"]);
    assert_eq!(lines[2].split_whitespace().collect::<Vec<_>>(), ["0", "RUNNING", "c1", "w1"]);
    assert_eq!(lines[3].split_whitespace().collect::<Vec<_>>(), ["1", "NODE_SCHEDULED", "c1", "w1"]);

    let run = grove.run(&["service", "list"]).await;
    run.ok();
    let row = run.stdout.lines().find(|l| l.starts_with(&id)).unwrap();
    assert_eq!(row.split_whitespace().collect::<Vec<_>>(), [id.as_str(), "a.n.web.n", "docker.io/library/nginx:latest", "2", "1"]);

    let run = grove.run(&["service", "status", "missing"]).await;
    run.failed();
    assert!(run.stderr.contains("GET /api/service/missing failed: HTTP 404 Not Found: service missing not found"), "{}", run.stderr);
}
