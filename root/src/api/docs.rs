//! OpenAPI 3 description (`/docs/openapi.json`) and a self-contained page that renders it
//! (`/api/docs`; no CDN, works offline).

use axum::response::Html;
use axum::Json;
use serde_json::{json, Map, Value};

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Public,
    Token,
    Admin,
    /// The path's `username` must be the caller.
    SelfOnly,
    Refresh,
}

/// One documented route: method, path (axum syntax), access, summary, success status.
pub struct RouteDoc {
    pub method: &'static str,
    pub path: &'static str,
    pub access: Access,
    pub summary: &'static str,
    pub ok: u16,
}

macro_rules! r {
    ($m:literal, $p:literal, $a:ident, $s:literal) => {
        RouteDoc { method: $m, path: $p, access: Access::$a, summary: $s, ok: 200 }
    };
    ($m:literal, $p:literal, $a:ident, $s:literal, $ok:literal) => {
        RouteDoc { method: $m, path: $p, access: Access::$a, summary: $s, ok: $ok }
    };
}

/// Every route of the API (contract §1.3 plus the operational ones).
pub const ROUTES: &[RouteDoc] = &[
    r!("post", "/api/auth/login", Public, "Log in: {username, password, organization_name?} -> {token, refresh_token}"),
    r!("post", "/api/auth/refresh", Refresh, "A new access token for a refresh token -> {token}"),
    r!("post", "/api/auth/register", Admin, "Create a user {name, email, password, created_at, roles[]}"),
    r!("get", "/api/permission/{username}", SelfOnly, "The caller's roles in the token's organization"),
    r!("get", "/api/user/{username}", SelfOnly, "The caller's user document"),
    r!("put", "/api/user/{username}", Admin, "Overwrite user fields; roles go to the caller's organization"),
    r!("delete", "/api/user/{username}", Admin, "Delete a user; answers the remaining users"),
    r!("post", "/api/user/{username}", SelfOnly, "Change password {oldPassword, newPassword}"),
    r!("post", "/api/user/", Public, "Password reset by e-mail (not implemented: 501)", 501),
    r!("put", "/api/user/", Public, "Password reset confirmation (not implemented: 501)", 501),
    r!("get", "/api/users/", Admin, "All users"),
    r!("get", "/api/users/{organization_id}", Admin, "Users of an organization with their roles"),
    r!("get", "/api/organization/", Admin, "All organizations"),
    r!("post", "/api/organization/", Admin, "Create an organization {name, member}"),
    r!("put", "/api/organization/{id}", Admin, "Update an organization {name, member}"),
    r!("delete", "/api/organization/{id}", Admin, "Delete an organization"),
    r!("post", "/api/application/", Token, "Create the applications and services of an SLA v2.0; answers the caller's applications"),
    r!("get", "/api/application/{appid}", Token, "An application"),
    r!("put", "/api/application/{appid}", Token, "Update name, namespace, description"),
    r!("delete", "/api/application/{appid}", Token, "Delete an application and its services"),
    r!("get", "/api/applications/", Admin, "All applications"),
    r!("get", "/api/applications/{userid}", Token, "The caller's applications (userid = caller's id)"),
    r!("post", "/api/service/", Token, "Register the microservices of an SLA on an existing application"),
    r!("get", "/api/service/{serviceid}", Token, "A service (job document with instance_list)"),
    r!("put", "/api/service/{serviceid}", Token, "Update a service (not implemented: 501)", 501),
    r!("delete", "/api/service/{serviceid}", Token, "Undeploy and delete a service"),
    r!("get", "/api/services/", Admin, "All services"),
    r!("get", "/api/services/{appid}", Token, "Services of an application"),
    r!("post", "/api/service/{serviceid}/instance", Token, "Deploy one more instance"),
    r!("delete", "/api/service/{serviceid}/instance/{n}", Token, "Undeploy instance n (-1: all)"),
    r!("get", "/api/clusters/", Public, "Registered clusters"),
    r!("get", "/api/clusters/active", Public, "Active clusters"),
    r!("get", "/api/workers/", Token, "Every worker of every cluster, asked live from each cluster leader (Grove; unreachable clusters listed apart)"),
    r!("post", "/api/information/{cluster_id}", Public, "Cluster report (stock Oakestra cluster managers)"),
    r!("post", "/api/result/deploy", Public, "External scheduler result (not used by Grove: 501)", 501),
    r!("get", "/frontend/uploader", Public, "File uploader (not implemented: 501)", 501),
    r!("post", "/frontend/uploader", Public, "File uploader (not implemented: 501)", 501),
    r!("get", "/api/raft/status", Token, "Every replica of the root tier (role, term, leader, indexes) and the registered cluster tiers"),
    r!("get", "/healthz", Public, "The process is alive"),
    r!("get", "/readyz", Public, "This replica knows a leader and can serve (else 503)"),
    r!("get", "/metrics", Public, "Prometheus metrics"),
    r!("get", "/docs/openapi.json", Public, "This description"),
    r!("get", "/api/docs", Public, "Interactive documentation"),
];

/// The OpenAPI 3.0 document.
pub fn spec() -> Value {
    let mut paths = Map::new();
    for r in ROUTES {
        let entry = paths.entry(r.path.to_owned()).or_insert_with(|| json!({}));
        let params: Vec<Value> = r
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
            .collect();
        let mut op = json!({
            "summary": r.summary,
            "parameters": params,
            "responses": {
                r.ok.to_string(): { "description": "success" },
                "400": { "description": "invalid input; the message names the field and the rule" },
                "401": { "description": "missing, expired or invalid token" },
                "403": { "description": "not enough permissions" },
                "404": { "description": "not found" },
                "503": { "description": "no quorum or no leader; nothing was changed" }
            }
        });
        op["security"] = match r.access {
            Access::Public => json!([]),
            _ => json!([{ "bearerAuth": [] }]),
        };
        if matches!(r.method, "post" | "put") {
            op["requestBody"] = json!({ "content": { "application/json": { "schema": { "type": "object" } } } });
        }
        entry[r.method] = op;
    }
    json!({
        "openapi": "3.0.2",
        "info": { "title": "Grove root (Oakestra System Manager API)", "version": env!("CARGO_PKG_VERSION") },
        "paths": paths,
        "components": { "securitySchemes": { "bearerAuth": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT" } } },
        "security": [{ "bearerAuth": [] }]
    })
}

pub async fn openapi() -> Json<Value> {
    Json(spec())
}

/// A small page that fetches the spec and lets the user try every route (with a token).
pub async fn page() -> Html<&'static str> {
    Html(PAGE)
}

const PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>Grove root API</title>
<style>
body{font-family:sans-serif;margin:2em;max-width:70em}
.op{border:1px solid #ccc;border-radius:4px;margin:.5em 0;padding:.5em}
.m{display:inline-block;width:5em;font-weight:bold;text-transform:uppercase}
.get{color:#0a6}.post{color:#06a}.put{color:#a60}.delete{color:#a00}
textarea{width:100%;height:6em;font-family:monospace}pre{background:#f4f4f4;padding:.5em;overflow:auto}
</style></head><body>
<h1>Grove root API</h1>
<p>Bearer token: <input id="token" size="80" placeholder="paste the token from /api/auth/login"></p>
<div id="ops">loading /docs/openapi.json ...</div>
<script>
fetch('/docs/openapi.json').then(r=>r.json()).then(spec=>{
  const ops=document.getElementById('ops');ops.textContent='';
  for(const [path,methods] of Object.entries(spec.paths)){
    for(const [method,op] of Object.entries(methods)){
      const d=document.createElement('details');d.className='op';
      const s=document.createElement('summary');
      s.innerHTML='<span class="m '+method+'"></span><code></code> <span></span>';
      s.children[0].textContent=method;s.children[1].textContent=path;s.children[2].textContent=op.summary;
      d.appendChild(s);
      const params=(op.parameters||[]).map(p=>{const i=document.createElement('input');i.placeholder=p.name;i.dataset.name=p.name;d.appendChild(i);return i;});
      let body=null;if(op.requestBody){body=document.createElement('textarea');body.placeholder='JSON body';d.appendChild(body);}
      const b=document.createElement('button');b.textContent='Send';d.appendChild(b);
      const out=document.createElement('pre');d.appendChild(out);
      b.onclick=()=>{let url=path;for(const p of params)url=url.replace('{'+p.dataset.name+'}',encodeURIComponent(p.value));
        const h={'Content-Type':'application/json'};const t=document.getElementById('token').value.trim();if(t)h['Authorization']='Bearer '+t;
        fetch(url,{method:method.toUpperCase(),headers:h,body:body&&body.value?body.value:undefined})
          .then(async r=>{out.textContent=r.status+' '+r.statusText+'\n'+await r.text();})
          .catch(e=>{out.textContent=String(e);});};
      ops.appendChild(d);
    }
  }
}).catch(e=>{document.getElementById('ops').textContent='cannot load the spec: '+e;});
</script></body></html>"#;
