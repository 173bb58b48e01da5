//! Login, refresh, register, and every way a token can be wrong.

mod common;

use base64::Engine;
use common::*;
use grove_root::auth::{Claims, SigningKeys, TokenType};
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn login_refresh_and_claims() {
    let t = TestRoots::start(1).await;
    let (token, refresh) = t.login(1, "Admin", "Admin").await;
    let keys = t.roots[&1].api.keys().await.unwrap();
    let claims = keys.verify(&token, TokenType::Access).unwrap();
    assert_eq!((claims.sub.as_str(), claims.user.as_str()), ("Admin", "Admin"));
    assert_eq!(claims.roles.len(), 4);
    assert!(claims.exp - claims.iat == 600, "10-minute access tokens");
    let root_org = t.roots[&1].replica.read_local(|s| s.organization_by_name("root").unwrap().id.clone());
    assert_eq!(claims.organization, root_org);

    let (s, b) = t.call(1, Method::POST, "/api/auth/refresh", Some(&refresh), None).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let fresh = keys.verify(b["token"].as_str().unwrap(), TokenType::Access).unwrap();
    assert_eq!((fresh.organization, fresh.roles.len()), (root_org, 4));

    // organization_name and organization are both read; unknown organization is 404.
    let (s, _) = t.call(1, Method::POST, "/api/auth/login", None, Some(json!({"username":"Admin","password":"Admin","organization_name":"root"}))).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = t.call(1, Method::POST, "/api/auth/login", None, Some(json!({"username":"Admin","password":"Admin","organization":"nope"}))).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    t.shutdown().await;
}

#[tokio::test]
async fn login_errors() {
    let t = TestRoots::start(1).await;
    let (s, _) = t.call(1, Method::POST, "/api/auth/login", None, Some(json!({"username":"Admin","password":"wrong"}))).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = t.call(1, Method::POST, "/api/auth/login", None, Some(json!({"username":"ghost","password":"x"}))).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = t.call(1, Method::POST, "/api/auth/login", None, None).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "no body: 403 as upstream");
    let (s, b) = t.call(1, Method::POST, "/api/auth/login", None, Some(json!({"username":"Admin"}))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(b["message"].as_str().unwrap().contains("password"), "{b}");
    let r = t.http.post(t.url(1, "/api/auth/login")).header("content-type", "application/json").body("{not json").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    t.shutdown().await;
}

fn forge_none(claims: &serde_json::Value) -> String {
    let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    format!("{}.{}.", e.encode(br#"{"alg":"none","typ":"JWT"}"#), e.encode(claims.to_string()))
}

#[tokio::test]
async fn bad_tokens_are_401_and_roles_403() {
    let t = TestRoots::start(1).await;
    let (token, refresh) = t.login(1, "Admin", "Admin").await;
    let keys = t.roots[&1].api.keys().await.unwrap();
    let now = grove_root::ids::now_ms() / 1000;
    let org = keys.verify(&token, TokenType::Access).unwrap().organization;

    let expired = keys.mint(&Claims::new("Admin", vec!["Admin".into()], &org, TokenType::Access, now - 3600, 600)).unwrap();
    let other = SigningKeys::from_private_pem(&grove_root::auth::generate_private_pem().unwrap()).unwrap();
    let wrong_sig = other.mint(&Claims::new("Admin", vec!["Admin".into()], &org, TokenType::Access, now, 600)).unwrap();
    let none = forge_none(&serde_json::to_value(Claims::new("Admin", vec!["Admin".into()], &org, TokenType::Access, now, 600)).unwrap());
    let mut tampered = token.clone();
    tampered.insert_str(token.find('.').unwrap() + 3, "x");

    for (what, tok) in [
        ("missing", None),
        ("garbage", Some("not-a-token")),
        ("expired", Some(expired.as_str())),
        ("wrong signature", Some(wrong_sig.as_str())),
        ("alg none", Some(none.as_str())),
        ("tampered", Some(tampered.as_str())),
        ("refresh as access", Some(refresh.as_str())),
    ] {
        let (s, b) = t.call(1, Method::GET, "/api/applications/", tok, None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{what}: {b}");
        assert!(b["message"].is_string() && b["msg"].is_string(), "{what}: {b}");
    }
    // An access token is not a refresh token.
    let (s, _) = t.call(1, Method::POST, "/api/auth/refresh", Some(&token), None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // A user without Admin gets 403 on Admin routes and on other users' routes.
    let (s, b) = t
        .call(1, Method::POST, "/api/auth/register", Some(&token), Some(json!({"name":"dev","email":"d@x","password":"pw","created_at":"now","roles":["Application_Provider"]})))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["roles"], json!(["Application_Provider"]));
    assert!(b.get("password").is_none(), "the hash is never returned");
    let (dev, _) = t.login(1, "dev", "pw").await;
    for (m, path) in [(Method::GET, "/api/applications/"), (Method::GET, "/api/users/"), (Method::GET, "/api/organization/"), (Method::GET, "/api/services/"), (Method::GET, "/api/user/Admin"), (Method::GET, "/api/permission/Admin")] {
        let (s, b) = t.call(1, m, path, Some(&dev), None).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{path}");
        assert_eq!(b["message"], "You have not enough permissions!");
    }
    let (s, _) = t.call(1, Method::POST, "/api/auth/register", Some(&dev), Some(json!({"name":"x","password":"y"}))).await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // Register errors: existing name 409, empty password 400, unknown role 400.
    let (s, _) = t.call(1, Method::POST, "/api/auth/register", Some(&token), Some(json!({"name":"dev","password":"pw"}))).await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, _) = t.call(1, Method::POST, "/api/auth/register", Some(&token), Some(json!({"name":"e","password":""}))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, b) = t.call(1, Method::POST, "/api/auth/register", Some(&token), Some(json!({"name":"e","password":"p","roles":["King"]}))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(b["message"].as_str().unwrap().contains("roles[0]"), "{b}");

    // The refresh of a deleted user is 404.
    let (_, dev_refresh) = t.login(1, "dev", "pw").await;
    let (s, _) = t.call(1, Method::DELETE, "/api/user/dev", Some(&token), None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = t.call(1, Method::POST, "/api/auth/refresh", Some(&dev_refresh), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    t.shutdown().await;
}
