//! Every route of contract §1.3 on one replica: happy paths and errors.

mod common;

use common::*;
use grove_root::state::RootCommand;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

#[tokio::test]
async fn users_permissions_and_organizations() {
    let t = TestRoots::start(1).await;
    let admin = t.admin(1).await;
    let (s, b) = t.call(1, Method::GET, "/api/permission/Admin", Some(&admin), None).await;
    assert_eq!((s, b["roles"].as_array().unwrap().len()), (StatusCode::OK, 4));
    let (s, b) = t.call(1, Method::GET, "/api/user/Admin", Some(&admin), None).await;
    assert_eq!((s, b["name"].clone()), (StatusCode::OK, json!("Admin")));
    assert!(b["_id"]["$oid"].as_str().unwrap().len() == 24);

    t.call(1, Method::POST, "/api/auth/register", Some(&admin), Some(json!({"name":"ann","email":"a@x","password":"pw1","roles":[]}))).await;
    let (s, b) = t.call(1, Method::PUT, "/api/user/ann", Some(&admin), Some(json!({"email":"new@x","roles":["Application_Provider"]}))).await;
    assert_eq!((s, b), (StatusCode::OK, json!("ok")));
    let (s, _) = t.call(1, Method::PUT, "/api/user/ghost", Some(&admin), Some(json!({"email":"x"}))).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (ann, _) = t.login(1, "ann", "pw1").await;
    let (s, b) = t.call(1, Method::GET, "/api/user/ann", Some(&ann), None).await;
    assert_eq!((s, b["email"].clone(), b["roles"].clone()), (StatusCode::OK, json!("new@x"), json!(["Application_Provider"])));

    // Password change: wrong old 400, same 400, right 200, then the new one logs in.
    let (s, _) = t.call(1, Method::POST, "/api/user/ann", Some(&ann), Some(json!({"oldPassword":"bad","newPassword":"pw2"}))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = t.call(1, Method::POST, "/api/user/ann", Some(&ann), Some(json!({"oldPassword":"pw1","newPassword":"pw1"}))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, b) = t.call(1, Method::POST, "/api/user/ann", Some(&ann), Some(json!({"oldPassword":"pw1","newPassword":"pw2"}))).await;
    assert_eq!((s, b), (StatusCode::OK, json!({})));
    t.login(1, "ann", "pw2").await;
    let (s, _) = t.call(1, Method::POST, "/api/user/Admin", Some(&ann), Some(json!({"oldPassword":"Admin","newPassword":"x"}))).await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // Users lists.
    let (s, b) = t.call(1, Method::GET, "/api/users/", Some(&admin), None).await;
    assert_eq!((s, b.as_array().unwrap().len()), (StatusCode::OK, 2));
    let root_org = t.roots[&1].replica.read_local(|s| s.organization_by_name("root").unwrap().id.clone());
    let (s, b) = t.call(1, Method::GET, &format!("/api/users/{root_org}"), Some(&admin), None).await;
    assert_eq!((s, b.as_array().unwrap().len()), (StatusCode::OK, 2));
    let (s, _) = t.call(1, Method::GET, "/api/users/000000000000000000000000", Some(&admin), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Organizations.
    let ann_id = b.as_array().unwrap().iter().find(|u| u["name"] == "ann").unwrap()["_id"]["$oid"].as_str().unwrap().to_owned();
    let (s, b) = t.call(1, Method::POST, "/api/organization/", Some(&admin), Some(json!({"name":"edge","member":[{"user_id":ann_id,"roles":["Admin"]}]}))).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let org_id = b["$oid"].as_str().unwrap().to_owned();
    let (s, _) = t.call(1, Method::POST, "/api/organization/", Some(&admin), Some(json!({"name":"edge","member":[]}))).await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, b) = t.call(1, Method::GET, "/api/organization/", Some(&admin), None).await;
    assert_eq!((s, b.as_array().unwrap().len()), (StatusCode::OK, 2));
    // ann is Admin in "edge" only: a token for that organization carries the role.
    let (s, b) = t.call(1, Method::POST, "/api/auth/login", None, Some(json!({"username":"ann","password":"pw2","organization_name":"edge"}))).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = t.call(1, Method::GET, "/api/users/", Some(b["token"].as_str().unwrap()), None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, b) = t.call(1, Method::PUT, &format!("/api/organization/{org_id}"), Some(&admin), Some(json!({"name":"edge2","member":[]}))).await;
    assert_eq!((s, b), (StatusCode::OK, json!({"message":"Organization is updated"})));
    let (s, _) = t.call(1, Method::PUT, &format!("/api/organization/{org_id}"), Some(&admin), Some(json!({"member":[]}))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, b) = t.call(1, Method::DELETE, &format!("/api/organization/{org_id}"), Some(&admin), None).await;
    assert_eq!((s, b), (StatusCode::OK, json!({"message":"Organization deleted"})));
    let (s, _) = t.call(1, Method::DELETE, &format!("/api/organization/{org_id}"), Some(&admin), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Delete a user: answers the remaining users.
    let (s, b) = t.call(1, Method::DELETE, "/api/user/ann", Some(&admin), None).await;
    assert_eq!((s, b.as_array().unwrap().len()), (StatusCode::OK, 1));
    let (s, _) = t.call(1, Method::DELETE, "/api/user/ann", Some(&admin), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Password reset by mail: documented 501.
    let (s, _) = t.call(1, Method::POST, "/api/user/", None, Some(json!({"username":"Admin","domain":"x"}))).await;
    assert_eq!(s, StatusCode::NOT_IMPLEMENTED);
    let (s, _) = t.call(1, Method::PUT, "/api/user/", None, Some(json!({"token":"t","password":"p"}))).await;
    assert_eq!(s, StatusCode::NOT_IMPLEMENTED);
    t.shutdown().await;
}

#[tokio::test]
async fn applications_crud() {
    let t = TestRoots::start(1).await;
    let admin = t.admin(1).await;
    let (s, b) = t.call(1, Method::POST, "/api/application/", Some(&admin), Some(sla("clientsrv", &["nginx", "curl"]))).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let apps = b.as_array().unwrap();
    assert_eq!(apps.len(), 1);
    let app = &apps[0];
    assert_eq!((app["application_name"].clone(), app["userId"].clone()), (json!("clientsrv"), json!("Admin")));
    assert_eq!(app["microservices"].as_array().unwrap().len(), 2);
    let app_id = app["_id"]["$oid"].as_str().unwrap().to_owned();
    assert_eq!(app["applicationID"], json!(app_id));

    // Same name and namespace again: 409, nothing created.
    let (s, _) = t.call(1, Method::POST, "/api/application/", Some(&admin), Some(sla("clientsrv", &["other"]))).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(t.roots[&1].replica.read_local(|s| s.jobs.len()), 2);

    let (s, b) = t.call(1, Method::GET, &format!("/api/application/{app_id}"), Some(&admin), None).await;
    assert_eq!((s, b["application_desc"].clone()), (StatusCode::OK, json!("d")));
    let (s, _) = t.call(1, Method::GET, "/api/application/000000000000000000000000", Some(&admin), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    let (s, b) = t
        .call(1, Method::PUT, &format!("/api/application/{app_id}"), Some(&admin), Some(json!({"application_name":"renamed","application_namespace":"test","application_desc":"x","microservices":[]})))
        .await;
    assert_eq!((s, b), (StatusCode::OK, json!({"message":"Application is updated"})));
    let (s, _) = t.call(1, Method::PUT, &format!("/api/application/{app_id}"), Some(&admin), Some(json!({"application_name":"bad name"}))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    let admin_id = t.roots[&1].replica.read_local(|s| s.users["Admin"].id.clone());
    let (s, b) = t.call(1, Method::GET, &format!("/api/applications/{admin_id}"), Some(&admin), None).await;
    assert_eq!((s, b[0]["application_name"].clone()), (StatusCode::OK, json!("renamed")));
    let (s, _) = t.call(1, Method::GET, "/api/applications/000000000000000000000000", Some(&admin), None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "another user's id");
    let (s, b) = t.call(1, Method::GET, "/api/applications/", Some(&admin), None).await;
    assert_eq!((s, b.as_array().unwrap().len()), (StatusCode::OK, 1));

    // Another user cannot see or delete it.
    t.call(1, Method::POST, "/api/auth/register", Some(&admin), Some(json!({"name":"bob","password":"pw","roles":["Application_Provider"]}))).await;
    let (bob, _) = t.login(1, "bob", "pw").await;
    let (s, _) = t.call(1, Method::GET, &format!("/api/application/{app_id}"), Some(&bob), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = t.call(1, Method::DELETE, &format!("/api/application/{app_id}"), Some(&bob), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    let (s, b) = t.call(1, Method::DELETE, &format!("/api/application/{app_id}"), Some(&admin), None).await;
    assert_eq!((s, b), (StatusCode::OK, json!({"message":"Application Deleted"})));
    assert_eq!(t.roots[&1].replica.read_local(|s| (s.applications.len(), s.jobs.len())), (0, 0));
    t.shutdown().await;
}

#[tokio::test]
async fn sla_errors_name_the_field_and_nothing_is_created() {
    let t = TestRoots::start(1).await;
    let admin = t.admin(1).await;
    let mut no_version = sla("a", &["s"]);
    no_version.as_object_mut().unwrap().remove("sla_version");
    let mut bad_name = sla("a", &["s"]);
    bad_name["applications"][0]["microservices"][0]["microservice_name"] = json!("has space");
    let mut int_name = sla("a", &["s"]);
    int_name["applications"][0]["microservices"][0]["microservice_name"] = json!(5);
    let mut bad_port = sla("a", &["s"]);
    bad_port["applications"][0]["microservices"][0]["port"] = json!("80:abc");
    let mut version = sla("a", &["s"]);
    version["sla_version"] = json!("v3.0");
    let mut dotted_app = sla("a", &["s"]);
    dotted_app["applications"][0]["application_name"] = json!("a.b");
    for (body, field) in [
        (no_version, "sla_version"),
        (bad_name, "applications[0].microservices[0].microservice_name"),
        (int_name, "applications[0].microservices[0].microservice_name"),
        (bad_port, "applications[0].microservices[0].port"),
        (version, "sla_version"),
        (dotted_app, "applications[0].application_name"),
        (json!({}), "sla_version"),
    ] {
        let (s, b) = t.call(1, Method::POST, "/api/application/", Some(&admin), Some(body)).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{field}: {b}");
        assert!(b["message"].as_str().unwrap().contains(field), "{field}: {b}");
        assert!(b["errors"].as_array().unwrap().iter().any(|e| e["field"] == field), "{field}: {b}");
    }
    let r = t.http.post(t.url(1, "/api/application/")).bearer_auth(&admin).header("content-type", "application/json").body("{\"sla_version\": ").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let b: Value = r.json().await.unwrap();
    assert!(b["message"].as_str().unwrap().contains("invalid JSON"), "{b}");
    // Oversized body: 413.
    let big = "x".repeat(2 << 20);
    let r = t.http.post(t.url(1, "/api/application/")).bearer_auth(&admin).header("content-type", "application/json").body(big).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(t.roots[&1].replica.read_local(|s| (s.applications.len(), s.jobs.len())), (0, 0));
    t.shutdown().await;
}

#[tokio::test]
async fn services_and_instances() {
    let t = TestRoots::start(1).await;
    let admin = t.admin(1).await;
    let (_, b) = t.call(1, Method::POST, "/api/application/", Some(&admin), Some(sla("app", &["web"]))).await;
    let app_id = b[0]["_id"]["$oid"].as_str().unwrap().to_owned();

    // Register more services on the application.
    let mut more = sla("ignored", &["db", "cache"]);
    more["applications"][0]["applicationID"] = json!(app_id);
    let (s, b) = t.call(1, Method::POST, "/api/service/", Some(&admin), Some(more.clone())).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["deployed_services"], json!([{"service_name":"db","status":200},{"service_name":"cache","status":200}]));
    assert_eq!(b["failed_services"], json!([]));
    let cache_id = b["job_id"].as_str().unwrap().to_owned();
    let (s, _) = t.call(1, Method::POST, "/api/service/", Some(&admin), Some(more)).await;
    assert_eq!(s, StatusCode::CONFLICT, "the same job names again");
    let mut unknown = sla("x", &["z"]);
    unknown["applications"][0]["applicationID"] = json!("000000000000000000000000");
    let (s, b) = t.call(1, Method::POST, "/api/service/", Some(&admin), Some(unknown)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(b["message"].as_str().unwrap().contains("applicationID"), "{b}");
    let (s, b) = t.call(1, Method::POST, "/api/service/", Some(&admin), Some(sla("x", &["z"]))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "applicationID is required here");
    assert!(b["message"].as_str().unwrap().contains("applications[0].applicationID"), "{b}");
    let r = t.http.post(t.url(1, "/api/service/")).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "empty body: 404 as upstream");

    let (s, b) = t.call(1, Method::GET, &format!("/api/service/{cache_id}"), Some(&admin), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!((b["job_name"].clone(), b["image"].clone(), b["virtualization"].clone()), (json!("app.test.cache.test"), json!("docker.io/library/nginx:latest"), json!("docker")));
    assert_eq!(b["_id"]["$oid"], json!(cache_id));
    let (s, b) = t.call(1, Method::GET, &format!("/api/services/{app_id}"), Some(&admin), None).await;
    assert_eq!((s, b.as_array().unwrap().len()), (StatusCode::OK, 3));
    let (s, _) = t.call(1, Method::GET, "/api/services/000000000000000000000000", Some(&admin), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, b) = t.call(1, Method::GET, "/api/services/", Some(&admin), None).await;
    assert_eq!((s, b.as_array().unwrap().len()), (StatusCode::OK, 3));
    let (s, _) = t.call(1, Method::PUT, &format!("/api/service/{cache_id}"), Some(&admin), Some(json!({}))).await;
    assert_eq!(s, StatusCode::NOT_IMPLEMENTED);

    // Instances: scale up twice, down one, then all.
    for n in 0..3 {
        let (s, b) = t.call(1, Method::POST, &format!("/api/service/{cache_id}/instance"), Some(&admin), None).await;
        // Upstream's `{"message":"ok"}`, plus the new instance's number.
        assert_eq!((s, b), (StatusCode::OK, json!({"message":"ok", "instance_number": n})));
    }
    let (_, b) = t.call(1, Method::GET, &format!("/api/service/{cache_id}"), Some(&admin), None).await;
    assert_eq!(b["instance_list"].as_array().unwrap().len(), 3);
    assert_eq!(b["next_instance_progressive_number"], 3);
    let (s, _) = t.call(1, Method::DELETE, &format!("/api/service/{cache_id}/instance/1"), Some(&admin), None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = t.call(1, Method::DELETE, &format!("/api/service/{cache_id}/instance/1"), Some(&admin), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = t.call(1, Method::DELETE, &format!("/api/service/{cache_id}/instance/abc"), Some(&admin), None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = t.call(1, Method::DELETE, &format!("/api/service/{cache_id}/instance/-1"), Some(&admin), None).await;
    assert_eq!(s, StatusCode::OK);
    let (_, b) = t.call(1, Method::GET, &format!("/api/service/{cache_id}"), Some(&admin), None).await;
    assert_eq!(b["instance_list"], json!([]), "scale down -1 removes every instance");
    let (s, _) = t.call(1, Method::POST, "/api/service/000000000000000000000000/instance", Some(&admin), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    let (s, b) = t.call(1, Method::DELETE, &format!("/api/service/{cache_id}"), Some(&admin), None).await;
    assert_eq!((s, b), (StatusCode::OK, json!({"message":"Job deleted"})));
    let (s, _) = t.call(1, Method::GET, &format!("/api/service/{cache_id}"), Some(&admin), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (_, b) = t.call(1, Method::GET, &format!("/api/application/{app_id}"), Some(&admin), None).await;
    assert_eq!(b["microservices"].as_array().unwrap().len(), 2);
    t.shutdown().await;
}

#[tokio::test]
async fn scheduler_places_requested_instances_on_registered_clusters() {
    let t = TestRoots::start(1).await;
    let admin = t.admin(1).await;
    let (_, b) = t.call(1, Method::POST, "/api/application/", Some(&admin), Some(sla("app", &["web"]))).await;
    let job_id = b[0]["microservices"][0].as_str().unwrap().to_owned();
    t.call(1, Method::POST, &format!("/api/service/{job_id}/instance"), Some(&admin), None).await;
    let status = |t: &TestRoots| {
        let job_id = job_id.clone();
        let http = t.http.clone();
        let url = t.url(1, &format!("/api/service/{job_id}"));
        let admin = admin.clone();
        async move {
            let b: Value = http.get(url).bearer_auth(admin).send().await.unwrap().json().await.unwrap();
            (b["instance_list"][0]["status"].as_str().unwrap_or("").to_owned(), b["instance_list"][0]["cluster_id"].as_str().unwrap_or("").to_owned())
        }
    };
    // No cluster yet: a negative status with a detail.
    wait_for("TargetClusterNotActive", std::time::Duration::from_secs(10), || async { (status(&t).await.0 == "TargetClusterNotActive").then_some(()) }).await;
    // A cluster registers and reports: the instance is placed there.
    let replica = &t.roots[&1].replica;
    replica
        .write(RootCommand::RegisterCluster { id: "c0ffee".into(), name: "one".into(), location: "48.1,11.6".into(), ip: "127.0.0.1".into(), port: "10100".into(), endpoints: vec![], at_ms: 1 })
        .await
        .unwrap()
        .unwrap();
    let (s, b) = t
        .call(1, Method::POST, "/api/information/c0ffee", None, Some(json!({"cpu_percent":10,"memory":4096,"vcpus":4,"virtualization":["docker"],"csi_drivers":[],"active_nodes":1,"jobs":[]})))
        .await;
    assert_eq!((s, b), (StatusCode::OK, json!("ok")));
    let (s, _) = t.call(1, Method::POST, "/api/information/c0ffee", None, Some(json!({"cpu_percent":10}))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "jobs is required");
    let (s, _) = t.call(1, Method::POST, "/api/information/unknown", None, Some(json!({"jobs":[]}))).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    wait_for("CLUSTER_SCHEDULED", std::time::Duration::from_secs(10), || async {
        (status(&t).await == ("CLUSTER_SCHEDULED".to_owned(), "c0ffee".to_owned())).then_some(())
    })
    .await;
    let (s, b) = t.call(1, Method::GET, "/api/clusters/", None, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!((b[0]["cluster_name"].clone(), b[0]["total_cpu_cores"].clone(), b[0]["memory_in_mb"].clone()), (json!("one"), json!(4), json!(4096)));
    let (s, b) = t.call(1, Method::GET, "/api/clusters/active", None, None).await;
    assert_eq!((s, b.as_array().unwrap().len()), (StatusCode::OK, 1));
    let (s, _) = t.call(1, Method::POST, "/api/result/deploy", None, Some(json!({"job_id":"x","candidate_id":"y"}))).await;
    assert_eq!(s, StatusCode::NOT_IMPLEMENTED);
    t.shutdown().await;
}

#[tokio::test]
async fn operational_routes_docs_and_redirects() {
    let t = TestRoots::start(1).await;
    let (s, b) = t.call(1, Method::GET, "/healthz", None, None).await;
    assert_eq!((s, b["status"].clone()), (StatusCode::OK, json!("ok")));
    let (s, b) = t.call(1, Method::GET, "/readyz", None, None).await;
    assert_eq!((s, b["ready"].clone()), (StatusCode::OK, json!(true)));
    let (s, b) = t.call(1, Method::GET, "/metrics", None, None).await;
    assert_eq!(s, StatusCode::OK);
    let text = b.as_str().unwrap();
    assert!(text.contains("grove_root_raft_is_leader 1") && text.contains("grove_root_http_requests_total{"), "{text}");
    let (s, spec) = t.call(1, Method::GET, "/docs/openapi.json", None, None).await;
    assert_eq!((s, spec["openapi"].clone()), (StatusCode::OK, json!("3.0.2")));
    // Every documented route exists (answers something other than 404/405 for its method).
    for r in grove_root::api::docs::ROUTES {
        assert!(spec["paths"][r.path][r.method].is_object(), "{} {}", r.method, r.path);
        let path = r.path.replace("{username}", "Admin").replace('{', "").replace('}', "");
        let m = Method::from_bytes(r.method.to_uppercase().as_bytes()).unwrap();
        let resp = t.http.request(m, t.url(1, &path)).send().await.unwrap();
        assert!(resp.status() != StatusCode::METHOD_NOT_ALLOWED && !(resp.status() == StatusCode::NOT_FOUND && resp.headers().get("content-type").is_none()), "{} {} -> {}", r.method, path, resp.status());
    }
    let (s, page) = t.call(1, Method::GET, "/api/docs", None, None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(page.as_str().unwrap().contains("/docs/openapi.json") && !page.as_str().unwrap().contains("https://"));
    // Collection routes without the trailing slash: 308 to the slashed path.
    for p in ["/api/application", "/api/applications", "/api/service", "/api/services", "/api/users", "/api/user", "/api/clusters", "/api/organization"] {
        let r = t.http.get(t.url(1, p)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::PERMANENT_REDIRECT, "{p}");
        assert_eq!(r.headers()["location"], format!("{p}/"));
    }
    let r = t.http.get(t.url(1, "/api/clusters/")).send().await.unwrap();
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    let (s, _) = t.call(1, Method::GET, "/frontend/uploader", None, None).await;
    assert_eq!(s, StatusCode::NOT_IMPLEMENTED);
    t.shutdown().await;
}
