//! An expired access token is refreshed with the stored refresh token, once, transparently.

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t40_a_401_trades_the_refresh_token_and_retries() {
    let root = FakeRootApi::start().await;
    let grove = Grove::new(&[root.url()]);
    grove.login().await;
    let id = root.with(|s| s.add_service("a.n.s.n", &[]));
    // The access token expires.
    root.with(|s| s.access_tokens.clear());

    let run = grove.run(&["service", "deploy", &id]).await;
    run.ok();
    let trail: Vec<(String, String, Option<String>)> =
        root.requests().into_iter().skip(1).map(|r| (r.method, r.path, r.bearer)).collect();
    let post = format!("/api/service/{id}/instance");
    assert_eq!(
        trail,
        [
            ("POST".to_owned(), post.clone(), Some("access-1".to_owned())),
            ("POST".into(), "/api/auth/refresh".into(), Some("refresh-1".into())),
            ("POST".into(), post, Some("access-2".into())),
        ]
    );
    assert_eq!(root.with(|s| s.services[&id]["instance_list"].as_array().unwrap().len()), 1, "deployed once");
    // The new token is saved: the next command uses it without refreshing.
    assert_eq!(grove.config()["session"]["token"].as_str(), Some("access-2"));
    grove.run(&["service", "status", &id]).await.ok();
    let last = root.requests().pop().unwrap();
    assert_eq!(last.bearer.as_deref(), Some("access-2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t41_a_refused_refresh_asks_for_a_new_login() {
    let root = FakeRootApi::start().await;
    let grove = Grove::new(&[root.url()]);
    grove.login().await;
    root.with(|s| {
        s.access_tokens.clear();
        s.refresh_tokens.clear();
    });
    let run = grove.run(&["app", "list"]).await;
    run.failed();
    assert_eq!(
        run.stderr.trim(),
        "grove: the session has expired (HTTP 401: Token has expired; refresh refused with HTTP 401: Token has expired): run `grove login` again"
    );
}
