//! The OCI distribution protocol (registry HTTP API v2), pull side only, and the OCI image
//! documents it carries (index, manifest, config).
//!
//! Anonymous bearer tokens (`WWW-Authenticate: Bearer realm=…`) are fetched when a registry
//! asks for them, as Docker Hub does for public images.

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

use crate::error::{Result, WorkerError};
use crate::runtime::image_ref::ImageRef;

pub const MEDIA_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const MEDIA_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// True for an index / manifest list.
pub fn is_index(media_type: &str) -> bool {
    media_type == MEDIA_OCI_INDEX || media_type == MEDIA_DOCKER_LIST
}

/// An OCI content descriptor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OciDescriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    pub size: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<OciPlatform>,
    #[serde(default, skip_serializing_if = "HashMap::is_empty")]
    pub annotations: HashMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OciPlatform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub variant: String,
}

/// Image index / manifest list.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OciIndex {
    #[serde(default)]
    pub media_type: String,
    pub manifests: Vec<OciDescriptor>,
}

/// Image manifest.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OciManifest {
    #[serde(default)]
    pub media_type: String,
    pub config: OciDescriptor,
    pub layers: Vec<OciDescriptor>,
}

/// The parts of the image config the worker uses.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct OciImageConfig {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub config: Option<OciContainerConfig>,
    pub rootfs: OciRootFs,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct OciContainerConfig {
    #[serde(default)]
    pub env: Option<Vec<String>>,
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    #[serde(default)]
    pub working_dir: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct OciRootFs {
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

/// The media type of a manifest document, from its own `mediaType` or its shape.
pub fn sniff_media_type(body: &[u8], header: Option<&str>) -> String {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        #[serde(default)]
        media_type: String,
        #[serde(default)]
        manifests: Option<serde_json::Value>,
    }
    let probe: Option<Probe> = serde_json::from_slice(body).ok();
    if let Some(p) = &probe {
        if !p.media_type.is_empty() {
            return p.media_type.clone();
        }
    }
    if let Some(h) = header {
        let h = h.split(';').next().unwrap_or("").trim();
        if !h.is_empty() && h != "application/json" {
            return h.to_owned();
        }
    }
    match probe {
        Some(Probe { manifests: Some(_), .. }) => MEDIA_OCI_INDEX.to_owned(),
        _ => MEDIA_OCI_MANIFEST.to_owned(),
    }
}

/// Picks the manifest for `os/arch[/variant]` from an index.
pub fn select_platform<'a>(index: &'a OciIndex, os: &str, arch: &str, variant: &str) -> Option<&'a OciDescriptor> {
    index.manifests.iter().find(|m| match &m.platform {
        Some(p) => p.os == os && p.architecture == arch && (variant.is_empty() || p.variant == variant),
        None => false,
    })
}

/// `sha256:<hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// A registry client for one pull.
pub struct RegistryClient {
    http: reqwest::Client,
    insecure: Vec<String>,
    tokens: Mutex<HashMap<String, String>>,
}

impl RegistryClient {
    /// `insecure`: registries reached over plain HTTP (localhost ones always are).
    pub fn new(insecure: Vec<String>, request_timeout: Duration) -> Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(request_timeout)
            .read_timeout(request_timeout)
            .build()
            .map_err(|e| WorkerError::Registry { registry: String::new(), message: e.to_string() })?;
        Ok(Self { http, insecure, tokens: Mutex::new(HashMap::new()) })
    }

    fn scheme(&self, r: &ImageRef) -> &'static str {
        let host = r.api_host();
        let bare = host.split(':').next().unwrap_or(host);
        if self.insecure.iter().any(|i| i == host)
            || bare == "localhost"
            || bare.starts_with("127.")
            || bare == "[::1]"
        {
            "http"
        } else {
            "https"
        }
    }

    fn url(&self, r: &ImageRef, kind: &str, reference: &str) -> String {
        format!("{}://{}/v2/{}/{kind}/{reference}", self.scheme(r), r.api_host(), r.repository)
    }

    fn err(r: &ImageRef, message: impl Into<String>) -> WorkerError {
        WorkerError::Registry { registry: r.registry.clone(), message: message.into() }
    }

    async fn get(&self, r: &ImageRef, url: &str, accept: Option<&str>) -> Result<reqwest::Response> {
        for attempt in 0..2 {
            let mut req = self.http.get(url);
            if let Some(a) = accept {
                req = req.header(reqwest::header::ACCEPT, a);
            }
            if let Some(t) = self.tokens.lock().await.get(&r.repository) {
                req = req.bearer_auth(t);
            }
            let resp = req.send().await.map_err(|e| Self::err(r, format!("GET {url}: {e}")))?;
            if resp.status() == reqwest::StatusCode::UNAUTHORIZED && attempt == 0 {
                let challenge = resp
                    .headers()
                    .get(reqwest::header::WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
                    .ok_or_else(|| Self::err(r, format!("GET {url}: 401 without a challenge")))?;
                let token = self.fetch_token(r, &challenge).await?;
                self.tokens.lock().await.insert(r.repository.clone(), token);
                continue;
            }
            if !resp.status().is_success() {
                return Err(Self::err(r, format!("GET {url}: HTTP {}", resp.status())));
            }
            return Ok(resp);
        }
        Err(Self::err(r, format!("GET {url}: unauthorized")))
    }

    async fn fetch_token(&self, r: &ImageRef, challenge: &str) -> Result<String> {
        let params = parse_bearer_challenge(challenge)
            .ok_or_else(|| Self::err(r, format!("unsupported auth challenge {challenge:?}")))?;
        let realm = params
            .get("realm")
            .ok_or_else(|| Self::err(r, "auth challenge without realm"))?;
        let scope = params
            .get("scope")
            .cloned()
            .unwrap_or_else(|| format!("repository:{}:pull", r.repository));
        let mut query = vec![("scope", scope)];
        if let Some(s) = params.get("service") {
            query.push(("service", s.clone()));
        }
        #[derive(Deserialize)]
        struct Token {
            #[serde(default)]
            token: String,
            #[serde(default)]
            access_token: String,
        }
        let resp = self
            .http
            .get(realm)
            .query(&query)
            .send()
            .await
            .map_err(|e| Self::err(r, format!("token from {realm}: {e}")))?;
        if !resp.status().is_success() {
            return Err(Self::err(r, format!("token from {realm}: HTTP {}", resp.status())));
        }
        let t: Token = resp.json().await.map_err(|e| Self::err(r, format!("token body: {e}")))?;
        Ok(if t.token.is_empty() { t.access_token } else { t.token })
    }

    /// Fetches a manifest or index; returns `(media type, body, digest)`. The digest is checked
    /// when `reference` is one.
    pub async fn fetch_manifest(&self, r: &ImageRef, reference: &str) -> Result<(String, Vec<u8>, String)> {
        let accept = [MEDIA_OCI_INDEX, MEDIA_DOCKER_LIST, MEDIA_OCI_MANIFEST, MEDIA_DOCKER_MANIFEST].join(", ");
        let url = self.url(r, "manifests", reference);
        let resp = self.get(r, &url, Some(&accept)).await?;
        let header = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = resp.bytes().await.map_err(|e| Self::err(r, format!("GET {url}: {e}")))?.to_vec();
        let digest = sha256_digest(&body);
        if reference.starts_with("sha256:") && reference != digest {
            return Err(Self::err(r, format!("manifest {reference} has digest {digest}")));
        }
        Ok((sniff_media_type(&body, header.as_deref()), body, digest))
    }

    /// Starts downloading a blob; the caller streams the body.
    pub async fn fetch_blob(&self, r: &ImageRef, digest: &str) -> Result<reqwest::Response> {
        let url = self.url(r, "blobs", digest);
        self.get(r, &url, None).await
    }
}

/// Parses `Bearer realm="…",service="…",scope="…"`.
pub fn parse_bearer_challenge(h: &str) -> Option<HashMap<String, String>> {
    let rest = h.trim().strip_prefix("Bearer ").or_else(|| h.trim().strip_prefix("bearer "))?;
    let mut out = HashMap::new();
    let mut s = rest.trim();
    while !s.is_empty() {
        let (key, after) = s.split_once('=')?;
        let after = after.trim_start();
        let (value, tail) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"')?;
            (&q[..end], &q[end + 1..])
        } else {
            match after.find(',') {
                Some(i) => (&after[..i], &after[i..]),
                None => (after, ""),
            }
        };
        out.insert(key.trim().to_owned(), value.to_owned());
        s = tail.trim_start_matches(|c: char| c == ',' || c.is_whitespace());
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenge() {
        let p = parse_bearer_challenge(
            "Bearer realm=\"https://auth.docker.io/token\",service=\"registry.docker.io\",scope=\"repository:library/nginx:pull\"",
        )
        .unwrap();
        assert_eq!(p["realm"], "https://auth.docker.io/token");
        assert_eq!(p["service"], "registry.docker.io");
        assert_eq!(p["scope"], "repository:library/nginx:pull");
        assert!(parse_bearer_challenge("Basic realm=x").is_none());
    }

    #[test]
    fn media_type_sniffing_and_platforms() {
        let index = br#"{"schemaVersion":2,"manifests":[
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:a","size":1,"platform":{"architecture":"arm64","os":"linux","variant":"v8"}},
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:b","size":1,"platform":{"architecture":"amd64","os":"linux"}}]}"#;
        assert_eq!(sniff_media_type(index, Some("application/json")), MEDIA_OCI_INDEX);
        let idx: OciIndex = serde_json::from_slice(index).unwrap();
        assert_eq!(select_platform(&idx, "linux", "amd64", "").unwrap().digest, "sha256:b");
        assert_eq!(select_platform(&idx, "linux", "arm64", "v8").unwrap().digest, "sha256:a");
        assert!(select_platform(&idx, "linux", "s390x", "").is_none());
        assert_eq!(
            sniff_media_type(b"{}", Some("application/vnd.docker.distribution.manifest.v2+json")),
            MEDIA_DOCKER_MANIFEST
        );
    }

    #[test]
    fn digest() {
        assert_eq!(
            sha256_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
