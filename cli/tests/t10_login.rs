//! `grove login`, `grove logout` and what a command says without a session.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_login_stores_both_tokens_in_a_0600_file() {
    let root = FakeRootApi::start().await;
    let grove = Grove::new(&[root.url()]);
    let run = grove.run(&["login", "-u", "Admin", "-p", ADMIN_PASSWORD]).await;
    run.ok();
    assert!(run.stdout.contains("Logged in as Admin (organization root)"), "{}", run.stdout);

    let login = &root.requests()[0];
    assert_eq!((login.method.as_str(), login.path.as_str()), ("POST", "/api/auth/login"));
    let body: serde_json::Value = serde_json::from_str(&login.body).unwrap();
    assert_eq!(body, serde_json::json!({"username": "Admin", "password": ADMIN_PASSWORD, "organization_name": "root"}));
    assert_eq!(login.content_type.as_deref(), Some("application/json"));

    let mode = std::fs::metadata(grove.config_path()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the file holds tokens");
    let config = grove.config();
    assert_eq!(config["session"]["token"].as_str(), Some("access-1"));
    assert_eq!(config["session"]["refresh_token"].as_str(), Some("refresh-1"));
    assert_eq!(config["session"]["username"].as_str(), Some("Admin"));

    // The stored token is what the next command sends.
    grove.run(&["app", "list"]).await.ok();
    let last = root.requests().pop().unwrap();
    assert_eq!((last.path.as_str(), last.bearer.as_deref()), ("/api/applications/", Some("access-1")));

    let run = grove.run(&["logout"]).await;
    run.ok();
    assert!(grove.config().get("session").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t11_password_from_stdin() {
    let root = FakeRootApi::start().await;
    let grove = Grove::new(&[root.url()]);
    grove.run_with_stdin(&["login", "--password-stdin"], Some(&format!("{ADMIN_PASSWORD}\n"))).await.ok();
    assert_eq!(grove.config()["session"]["token"].as_str(), Some("access-1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t12_a_wrong_password_is_one_sentence_with_status_and_message() {
    let root = FakeRootApi::start().await;
    let grove = Grove::new(&[root.url()]);
    let run = grove.run(&["login", "-p", "wrong"]).await;
    run.failed();
    assert_eq!(
        run.stderr.trim(),
        format!("grove: POST /api/auth/login failed: HTTP 401 Unauthorized: wrong username or password (from {})", root.url())
    );
    assert!(!grove.config_path().exists(), "nothing stored after a failed login");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t13_without_a_session_nothing_is_sent() {
    let root = FakeRootApi::start().await;
    let grove = Grove::new(&[root.url()]);
    let run = grove.run(&["service", "deploy", "abc"]).await;
    run.failed();
    assert_eq!(run.stderr.trim(), "grove: not logged in: run `grove login` first");
    assert!(root.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t14_no_password_and_no_terminal_is_a_usage_error() {
    let root = FakeRootApi::start().await;
    let grove = Grove::new(&[root.url()]);
    let run = grove.run(&["login"]).await;
    run.failed();
    assert!(run.stderr.contains("no password: pass --password, set GROVE_PASSWORD, or use --password-stdin"), "{}", run.stderr);
}
