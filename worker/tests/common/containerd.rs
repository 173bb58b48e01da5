//! containerd helpers for tests: find the socket (or skip loudly), build a busybox OCI image
//! from Debian's busybox-static, import it with `ctr`, inspect and clean a namespace.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use containerd_client::services::v1::{GetRequest, KillRequest, ListContainersRequest, ListImagesRequest};
use grove_worker::runtime::registry::sha256_digest;
use serde_json::json;
use tonic::Request;

/// The containerd socket to test against: `GROVE_TEST_CONTAINERD_SOCKET`, else the first
/// well-known socket that exists. `None` prints a loud notice: the caller must skip.
pub fn socket_or_skip(test: &str) -> Option<PathBuf> {
    let socket = std::env::var_os("GROVE_TEST_CONTAINERD_SOCKET")
        .map(PathBuf::from)
        .or_else(grove_worker::config::find_containerd_socket);
    match socket {
        Some(s) if s.exists() => Some(s),
        other => {
            let banner = "!".repeat(78);
            let notice = format!(
                "\n{banner}\n!!! SKIPPED {test}: no containerd socket found (looked at {:?} and {:?}).\n\
                 !!! This test needs a running containerd; set GROVE_TEST_CONTAINERD_SOCKET to use another socket.\n{banner}\n",
                other.map(|p| p.display().to_string()).unwrap_or_else(|| "$GROVE_TEST_CONTAINERD_SOCKET".into()),
                grove_worker::config::CONTAINERD_SOCKETS
            );
            // Straight to file descriptor 2: libtest's capture of `eprintln!` would hide it.
            use std::io::Write;
            let _ = std::io::stderr().write_all(notice.as_bytes());
            None
        }
    }
}

/// One layer of a test image.
pub struct TestLayer {
    pub media_type: &'static str,
    pub data: Vec<u8>,
    pub digest: String,
    /// Digest of the uncompressed tar (the config's diff id).
    pub diff_id: String,
}

/// An OCI image around Debian's static busybox, with its index.
pub struct TestImage {
    pub layers: Vec<TestLayer>,
    pub config: Vec<u8>,
    pub manifest: Vec<u8>,
    pub index: Vec<u8>,
    pub config_digest: String,
    pub manifest_digest: String,
    pub index_digest: String,
}

impl TestImage {
    /// Blob by digest.
    pub fn blob(&self, digest: &str) -> Option<(&'static str, Vec<u8>)> {
        if let Some(l) = self.layers.iter().find(|l| l.digest == digest) {
            Some((l.media_type, l.data.clone()))
        } else if digest == self.config_digest {
            Some(("application/vnd.oci.image.config.v1+json", self.config.clone()))
        } else if digest == self.manifest_digest {
            Some(("application/vnd.oci.image.manifest.v1+json", self.manifest.clone()))
        } else if digest == self.index_digest {
            Some(("application/vnd.oci.image.index.v1+json", self.index.clone()))
        } else {
            None
        }
    }

    /// The chain id of the top layer, computed as the OCI image spec defines it.
    pub fn top_chain_id(&self) -> String {
        let mut chain = String::new();
        for l in &self.layers {
            chain = if chain.is_empty() { l.diff_id.clone() } else { sha256_digest(format!("{chain} {}", l.diff_id).as_bytes()) };
        }
        chain
    }
}

const BUSYBOX: &str = "/bin/busybox";
const APPLETS: [&str; 10] = ["sh", "sleep", "echo", "cat", "true", "false", "yes", "head", "ls", "env"];

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(0);
    h
}

fn busybox_tar() -> Vec<u8> {
    let busybox = std::fs::read(BUSYBOX)
        .unwrap_or_else(|e| panic!("{BUSYBOX} is needed to build the test image ({e}); run scripts/setup.sh (installs busybox-static)"));
    let mut tar = tar::Builder::new(Vec::new());
    for dir in ["bin", "dev", "proc", "sys", "tmp", "etc", "run"] {
        tar.append_data(&mut header(tar::EntryType::Directory, 0o755, 0), dir, std::io::empty()).unwrap();
    }
    tar.append_data(&mut header(tar::EntryType::Regular, 0o755, busybox.len() as u64), "bin/busybox", busybox.as_slice()).unwrap();
    for applet in APPLETS {
        tar.append_link(&mut header(tar::EntryType::Symlink, 0o777, 0), format!("bin/{applet}"), "busybox").unwrap();
    }
    tar.into_inner().unwrap()
}

fn file_tar(path: &str, content: &[u8]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    tar.append_data(&mut header(tar::EntryType::Regular, 0o644, content.len() as u64), path, content).unwrap();
    tar.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut child = Command::new("gzip")
        .args(["-c", "-n"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run gzip");
    let mut stdin = child.stdin.take().unwrap();
    let input = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success());
    out.stdout
}

fn layer(tar: Vec<u8>, gzipped: bool) -> TestLayer {
    let diff_id = sha256_digest(&tar);
    if gzipped {
        let data = gzip(&tar);
        TestLayer { media_type: "application/vnd.oci.image.layer.v1.tar+gzip", digest: sha256_digest(&data), data, diff_id }
    } else {
        TestLayer { media_type: "application/vnd.oci.image.layer.v1.tar", digest: diff_id.clone(), data: tar, diff_id }
    }
}

fn assemble(layers: Vec<TestLayer>) -> TestImage {
    let arch = grove_core::node::goarch(std::env::consts::ARCH);
    let diff_ids: Vec<&str> = layers.iter().map(|l| l.diff_id.as_str()).collect();
    let config = serde_json::to_vec(&json!({
        "architecture": arch, "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"], "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": diff_ids}
    }))
    .unwrap();
    let config_digest = sha256_digest(&config);
    let layer_descs: Vec<_> = layers
        .iter()
        .map(|l| json!({"mediaType": l.media_type, "digest": l.digest, "size": l.data.len()}))
        .collect();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": layer_descs
    }))
    .unwrap();
    let manifest_digest = sha256_digest(&manifest);
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_digest,
                       "size": manifest.len(), "platform": {"architecture": arch, "os": "linux"}}]
    }))
    .unwrap();
    let index_digest = sha256_digest(&index);
    TestImage { layers, config, manifest, index, config_digest, manifest_digest, index_digest }
}

/// One uncompressed layer: busybox and a few applet links. Panics (not skips) when
/// busybox-static is missing: the project's `scripts/setup.sh` installs it.
pub fn busybox_image() -> TestImage {
    assemble(vec![layer(busybox_tar(), false)])
}

/// Two gzip-compressed layers, as registries serve them: busybox, then `/etc/grove-layer2`
/// containing `content`.
pub fn busybox_image_two_gzip_layers(content: &str) -> TestImage {
    assemble(vec![layer(busybox_tar(), true), layer(file_tar("etc/grove-layer2", content.as_bytes()), true)])
}

/// Snapshot names (`ctr snapshots ls`) in a namespace.
pub fn snapshot_names(socket: &Path, namespace: &str) -> Vec<String> {
    let out = ctr(socket, namespace).args(["snapshots", "ls"]).output().expect("run ctr");
    String::from_utf8_lossy(&out.stdout).lines().skip(1).filter_map(|l| l.split_whitespace().next().map(str::to_owned)).collect()
}

fn ctr(socket: &Path, namespace: &str) -> Command {
    let mut c = Command::new("ctr");
    c.arg("--address").arg(socket).arg("--namespace").arg(namespace);
    c
}

/// Imports `image` under `name` into `namespace` with `ctr images import` (an OCI layout tar).
pub fn import_with_ctr(socket: &Path, namespace: &str, image: &TestImage, name: &str, dir: &Path) {
    let path = dir.join("image.tar");
    let mut tar = tar::Builder::new(std::fs::File::create(&path).unwrap());
    let mut add = |p: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_mtime(0);
        tar.append_data(&mut h, p, data).unwrap();
    };
    add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": image.manifest_digest,
                       "size": image.manifest.len(),
                       "annotations": {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": "1"}}]
    }))
    .unwrap();
    add("index.json", &index);
    let mut blobs: Vec<(&String, &Vec<u8>)> = image.layers.iter().map(|l| (&l.digest, &l.data)).collect();
    blobs.push((&image.config_digest, &image.config));
    blobs.push((&image.manifest_digest, &image.manifest));
    for (d, data) in blobs {
        add(&format!("blobs/sha256/{}", d.trim_start_matches("sha256:")), data);
    }
    tar.into_inner().unwrap();
    let out = ctr(socket, namespace).args(["images", "import"]).arg(&path).output().expect("run ctr");
    assert!(out.status.success(), "ctr import failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// Removes everything in a test namespace when dropped (best effort, also on panic).
pub struct NamespaceGuard {
    pub socket: PathBuf,
    pub namespace: String,
}

impl Drop for NamespaceGuard {
    fn drop(&mut self) {
        let script = r#"
ctr="ctr --address $1 --namespace $2"
for c in $($ctr containers ls -q 2>/dev/null); do $ctr tasks rm -f "$c" >/dev/null 2>&1; $ctr containers rm "$c" >/dev/null 2>&1; done
for i in $($ctr images ls -q 2>/dev/null); do $ctr images rm --sync "$i" >/dev/null 2>&1; done
for l in $($ctr leases ls -q 2>/dev/null); do $ctr leases rm "$l" >/dev/null 2>&1; done
for pass in 1 2 3 4 5 6; do for s in $($ctr snapshots ls 2>/dev/null | awk 'NR>1 {print $1}'); do $ctr snapshots rm "$s" >/dev/null 2>&1; done; done
for d in $($ctr content ls -q 2>/dev/null); do $ctr content rm "$d" >/dev/null 2>&1; done
ctr --address $1 namespaces rm "$2" >/dev/null 2>&1
for cg in /sys/fs/cgroup/grove/$2 /sys/fs/cgroup/*/grove/$2; do [ -d "$cg" ] && rmdir "$cg" 2>/dev/null; done
true
"#;
        let _ = Command::new("sh").arg("-c").arg(script).arg("sh").arg(&self.socket).arg(&self.namespace).status();
    }
}

/// A containerd client for checking what the worker did.
pub struct Inspect {
    client: containerd_client::Client,
    namespace: String,
}

impl Inspect {
    pub async fn connect(socket: &Path, namespace: &str) -> Self {
        let channel = containerd_client::connect(socket).await.expect("connect to containerd");
        Self { client: containerd_client::Client::from(channel), namespace: namespace.to_owned() }
    }

    fn req<T>(&self, m: T) -> Request<T> {
        let mut r = Request::new(m);
        r.metadata_mut().insert("containerd-namespace", self.namespace.parse().unwrap());
        r
    }

    /// Container ids in the namespace.
    pub async fn containers(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .client
            .containers()
            .list(self.req(ListContainersRequest { filters: vec![] }))
            .await
            .unwrap()
            .into_inner()
            .containers
            .into_iter()
            .map(|c| c.id)
            .collect();
        v.sort();
        v
    }

    /// Container labels.
    pub async fn labels(&self, id: &str) -> HashMap<String, String> {
        self.client
            .containers()
            .list(self.req(ListContainersRequest { filters: vec![] }))
            .await
            .unwrap()
            .into_inner()
            .containers
            .into_iter()
            .find(|c| c.id == id)
            .map(|c| c.labels)
            .unwrap_or_default()
    }

    /// `(pid, status)` of a task, if it exists.
    pub async fn task(&self, id: &str) -> Option<(u32, i32)> {
        match self.client.tasks().get(self.req(GetRequest { container_id: id.to_owned(), exec_id: String::new() })).await {
            Ok(r) => r.into_inner().process.map(|p| (p.pid, p.status)),
            Err(s) if s.code() == tonic::Code::NotFound => None,
            Err(s) => panic!("get task {id}: {s}"),
        }
    }

    /// Sends SIGKILL to every process of a task, behind the worker's back.
    pub async fn kill(&self, id: &str) {
        self.client
            .tasks()
            .kill(self.req(KillRequest { container_id: id.to_owned(), exec_id: String::new(), signal: 9, all: true }))
            .await
            .unwrap();
    }

    pub async fn images(&self) -> Vec<String> {
        self.client
            .images()
            .list(self.req(ListImagesRequest { filters: vec![] }))
            .await
            .unwrap()
            .into_inner()
            .images
            .into_iter()
            .map(|i| i.name)
            .collect()
    }
}

/// containerd's task status code for "running".
pub const TASK_RUNNING: i32 = 2;
/// containerd's task status code for "stopped".
pub const TASK_STOPPED: i32 = 3;
