//! Test double of an OCI distribution registry on 127.0.0.1: serves one repository's index,
//! manifest and blobs (`GET /v2/<name>/manifests/<ref>`, `GET /v2/<name>/blobs/<digest>`) and
//! records every request path.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::containerd::TestImage;

struct RegistryState {
    repository: String,
    tag: String,
    image: TestImage,
    requests: Mutex<Vec<String>>,
}

pub struct RegistryDouble {
    pub addr: SocketAddr,
    state: Arc<RegistryState>,
    task: tokio::task::JoinHandle<()>,
}

async fn v2_root() -> impl IntoResponse {
    (StatusCode::OK, "{}")
}

async fn v2(State(state): State<Arc<RegistryState>>, Path(path): Path<String>) -> Response {
    state.requests.lock().unwrap().push(path.clone());
    let not_found = || (StatusCode::NOT_FOUND, "{\"errors\":[{\"code\":\"MANIFEST_UNKNOWN\"}]}").into_response();
    let serve = |media: &str, body: Vec<u8>| ([(header::CONTENT_TYPE, media.to_owned())], body).into_response();
    if let Some((repo, reference)) = path.rsplit_once("/manifests/") {
        if repo != state.repository {
            return not_found();
        }
        let digest = if reference == state.tag { state.image.index_digest.clone() } else { reference.to_owned() };
        if digest != state.image.index_digest && digest != state.image.manifest_digest {
            return not_found();
        }
        return match state.image.blob(&digest) {
            Some((media, body)) => serve(media, body),
            None => not_found(),
        };
    }
    if let Some((repo, digest)) = path.rsplit_once("/blobs/") {
        if repo != state.repository {
            return not_found();
        }
        return match state.image.blob(digest) {
            Some((_, body)) => serve("application/octet-stream", body),
            None => not_found(),
        };
    }
    not_found()
}

impl RegistryDouble {
    pub async fn start(repository: &str, tag: &str, image: TestImage) -> Self {
        let state = Arc::new(RegistryState {
            repository: repository.to_owned(),
            tag: tag.to_owned(),
            image,
            requests: Mutex::new(Vec::new()),
        });
        let app = Router::new().route("/v2/", get(v2_root)).route("/v2/{*path}", get(v2)).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { addr, state, task }
    }

    /// Request paths (after `/v2/`) served so far.
    pub fn requests(&self) -> Vec<String> {
        self.state.requests.lock().unwrap().clone()
    }
}

impl Drop for RegistryDouble {
    fn drop(&mut self) {
        self.task.abort();
    }
}
