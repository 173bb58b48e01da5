//! The containerd runtime, through containerd-client on the machine's containerd.
//!
//! Per instance: make sure the image is in the namespace (use it if present, else pull it
//! with the OCI distribution protocol into the content store, record the image, unpack its
//! layers into snapshots), prepare a writable snapshot, create the container with an OCI spec
//! built from the job, create the task with stdout/stderr appended to the instance's log file,
//! start it. The job document rides along as a container extension, so a restarted worker can
//! rebuild its view from containerd alone.
//!
//! Every unary call has a timeout; `Wait` is a long poll by nature and is cancelled by its
//! caller instead.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use containerd_client::services::v1::container::Runtime as ContainerRuntime;
use containerd_client::services::v1::snapshots::{
    CommitSnapshotRequest, PrepareSnapshotRequest, RemoveSnapshotRequest, StatSnapshotRequest,
    UsageRequest,
};
use containerd_client::services::v1::{
    ApplyRequest, Container, CreateContainerRequest, CreateImageRequest, CreateRequest as CreateLeaseRequest,
    CreateTaskRequest, DeleteContainerRequest, DeleteRequest as DeleteLeaseRequest, DeleteTaskRequest,
    GetContainerRequest, GetImageRequest, GetRequest, Image, Info as ContentInfo, InfoRequest, KillRequest,
    ListContainersRequest, ReadContentRequest, StartRequest, UpdateImageRequest, UpdateRequest as ContentUpdateRequest,
    WaitRequest, WriteAction, WriteContentRequest,
};
use containerd_client::types::v1::Status as ProcessStatus;
use containerd_client::types::{Descriptor, Mount};
use containerd_client::Client;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use grove_core::instance::InstanceKey;
use grove_core::job::Job;
use prost_types::{Any, FieldMask};
use tokio::sync::Mutex;
use tonic::transport::Channel;
use tonic::Request;
use tracing::{debug, info, warn};

use crate::config::WorkerConfig;
use crate::error::{Result, WorkerError};
use crate::runtime::cgroup::CgroupFs;
use crate::runtime::image_ref::ImageRef;
use crate::runtime::registry::{
    is_index, select_platform, sha256_digest, OciContainerConfig, OciImageConfig, OciIndex, OciManifest,
    RegistryClient,
};
use crate::runtime::{ExitOutcome, FoundInstance, FoundState, InstanceSpec, InstanceUsage, Runtime};

/// Container label: the job name.
pub const LABEL_JOB_NAME: &str = "grove.worker/job-name";
/// Container label: the instance number.
pub const LABEL_INSTANCE: &str = "grove.worker/instance";
/// Container extension holding the job document (JSON).
pub const EXT_JOB: &str = "grove.worker/job";
const SPEC_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";
const CHUNK: usize = 1 << 20;

/// The containerd runtime.
pub struct ContainerdRuntime {
    client: Client,
    namespace: String,
    snapshotter: String,
    shim: String,
    call_timeout: Duration,
    pull_timeout: Duration,
    insecure_registries: Vec<String>,
    cgroups: CgroupFs,
    /// Capability bounding set instances can get at most.
    bounding_caps: u64,
    /// One lock per image name, so that two instances of a job do not pull it twice at once.
    pulls: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

/// An image ready to run: its name, its config and the snapshot of its top layer.
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    pub name: String,
    pub config: OciContainerConfig,
    pub chain_id: String,
}

fn not_found(e: &WorkerError) -> bool {
    e.is_not_found()
}

impl ContainerdRuntime {
    /// Connects to containerd and checks that it answers.
    pub async fn connect(config: &WorkerConfig) -> Result<Self> {
        let socket = config.resolved_containerd_socket();
        let err = |message: String| WorkerError::ContainerdConnect { socket: socket.clone(), message };
        if !socket.exists() {
            return Err(err("socket does not exist".into()));
        }
        let channel: Channel = tokio::time::timeout(config.request_timeout(), containerd_client::connect(&socket))
            .await
            .map_err(|_| err("connect timed out".into()))?
            .map_err(|e| err(e.to_string()))?;
        let client = Client::from(channel);
        let version = tokio::time::timeout(config.request_timeout(), client.version().version(()))
            .await
            .map_err(|_| err("version call timed out".into()))?
            .map_err(|e| err(e.to_string()))?
            .into_inner();
        info!(socket = %socket.display(), version = %version.version, namespace = %config.containerd_namespace, "containerd connected");
        Ok(Self {
            client,
            namespace: config.containerd_namespace.clone(),
            snapshotter: config.snapshotter.clone(),
            shim: config.containerd_runtime.clone(),
            call_timeout: config.request_timeout(),
            pull_timeout: config.pull_timeout(),
            insecure_registries: config.insecure_registries.clone(),
            cgroups: CgroupFs::detect(),
            bounding_caps: crate::runtime::oci_spec::current_bounding_set(),
            pulls: Mutex::new(HashMap::new()),
        })
    }

    /// The namespace this runtime works in.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The cgroup path of an instance.
    pub fn cgroups_path(&self, key: &InstanceKey) -> String {
        format!("/grove/{}/{}", self.namespace, key.task_id())
    }

    fn req<T>(&self, msg: T) -> Request<T> {
        let mut r = Request::new(msg);
        r.metadata_mut().insert(
            "containerd-namespace",
            self.namespace.parse().expect("namespace is valid metadata"),
        );
        r
    }

    fn leased<T>(&self, msg: T, lease: &str) -> Request<T> {
        let mut r = self.req(msg);
        if let Ok(v) = lease.parse() {
            r.metadata_mut().insert("containerd-lease", v);
        }
        r
    }

    async fn call<T, F>(&self, op: &'static str, fut: F) -> Result<T>
    where
        F: Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        self.call_within(op, self.call_timeout, fut).await
    }

    async fn call_within<T, F>(&self, op: &'static str, limit: Duration, fut: F) -> Result<T>
    where
        F: Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        match tokio::time::timeout(limit, fut).await {
            Ok(Ok(r)) => Ok(r.into_inner()),
            Ok(Err(status)) => Err(WorkerError::containerd(op, status)),
            Err(_) => Err(WorkerError::Timeout { operation: format!("containerd {op}"), after_ms: limit.as_millis() as u64 }),
        }
    }

    // ---- images ------------------------------------------------------------------------

    /// Makes sure `image` is present and unpacked in the namespace; pulls it if needed. Content
    /// and snapshots written meanwhile are protected from containerd's garbage collector by
    /// `lease`, which the caller holds until something references them.
    pub async fn ensure_image(&self, image: &str, platform: &str, lease: &str) -> Result<ResolvedImage> {
        let r = ImageRef::parse(image).ok_or_else(|| WorkerError::Image {
            image: image.to_owned(),
            message: "not a valid image reference".into(),
        })?;
        let name = r.to_string();
        let lock = {
            let mut pulls = self.pulls.lock().await;
            pulls.entry(name.clone()).or_default().clone()
        };
        let _guard = lock.lock().await;
        match tokio::time::timeout(self.pull_timeout, self.ensure_image_leased(&r, &name, platform, lease)).await {
            Ok(r) => r,
            Err(_) => Err(WorkerError::Timeout { operation: format!("pull of {name}"), after_ms: self.pull_timeout.as_millis() as u64 }),
        }
    }

    /// Runs `f` under a fresh lease (which expires by itself after an hour if we crash) and
    /// deletes the lease afterwards.
    async fn with_lease<T, F, Fut>(&self, f: F) -> Result<T>
    where
        F: FnOnce(String) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let lease = self.create_lease().await?;
        let result = f(lease.clone()).await;
        if let Err(e) = self
            .call("delete lease", self.client.leases().delete(self.req(DeleteLeaseRequest { id: lease.clone(), sync: false })))
            .await
        {
            warn!(lease = %lease, error = %e, "could not delete lease (it expires by itself)");
        }
        result
    }

    async fn create_lease(&self) -> Result<String> {
        let id = format!("grove-worker-{}", unix_nanos());
        let expire = rfc3339(SystemTime::now() + Duration::from_secs(3600));
        let labels = HashMap::from([("containerd.io/gc.expire".to_owned(), expire)]);
        self.call("create lease", self.client.leases().create(self.req(CreateLeaseRequest { id: id.clone(), labels })))
            .await?;
        Ok(id)
    }

    async fn ensure_image_leased(&self, r: &ImageRef, name: &str, platform: &str, lease: &str) -> Result<ResolvedImage> {
        let img_err = |message: String| WorkerError::Image { image: name.to_owned(), message };
        let (os, arch, variant) = parse_platform(platform);
        let target = match self
            .call("get image", self.client.images().get(self.req(GetImageRequest { name: name.to_owned() })))
            .await
        {
            Ok(resp) => {
                let target = resp.image.and_then(|i| i.target).ok_or_else(|| img_err("image record without target".into()))?;
                debug!(image = %name, digest = %target.digest, "image present in namespace");
                target
            }
            Err(e) if not_found(&e) => {
                info!(image = %name, "image not in namespace, pulling");
                self.pull(r, name, &os, &arch, &variant, lease).await?
            }
            Err(e) => return Err(e),
        };

        // Resolve the manifest for our platform from the content store.
        let mut manifest_desc = target.clone();
        if is_index(&target.media_type) {
            let index: OciIndex = serde_json::from_slice(&self.read_blob(&target.digest).await?)
                .map_err(|e| img_err(format!("bad index: {e}")))?;
            let m = select_platform(&index, &os, &arch, &variant)
                .ok_or_else(|| img_err(format!("no manifest for platform {os}/{arch}")))?;
            manifest_desc = Descriptor { media_type: m.media_type.clone(), digest: m.digest.clone(), size: m.size, ..Default::default() };
        }
        let manifest: OciManifest = serde_json::from_slice(&self.read_blob(&manifest_desc.digest).await?)
            .map_err(|e| img_err(format!("bad manifest: {e}")))?;
        let config: OciImageConfig = serde_json::from_slice(&self.read_blob(&manifest.config.digest).await?)
            .map_err(|e| img_err(format!("bad image config: {e}")))?;
        let chain_id = self.unpack(name, &manifest, &config, lease).await?;
        Ok(ResolvedImage { name: name.to_owned(), config: config.config.unwrap_or_default(), chain_id })
    }

    async fn read_blob(&self, digest: &str) -> Result<Vec<u8>> {
        let fut = async {
            let mut stream = self
                .client
                .content()
                .read(self.req(ReadContentRequest { digest: digest.to_owned(), offset: 0, size: 0 }))
                .await?
                .into_inner();
            let mut out = Vec::new();
            while let Some(chunk) = stream.message().await? {
                out.extend_from_slice(&chunk.data);
            }
            Ok::<_, tonic::Status>(out)
        };
        match tokio::time::timeout(self.call_timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(s)) => Err(WorkerError::containerd("read content", s)),
            Err(_) => Err(WorkerError::Timeout { operation: format!("read content {digest}"), after_ms: self.call_timeout.as_millis() as u64 }),
        }
    }

    async fn content_exists(&self, digest: &str) -> Result<bool> {
        match self.call("content info", self.client.content().info(self.req(InfoRequest { digest: digest.to_owned() }))).await {
            Ok(_) => Ok(true),
            Err(e) if not_found(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn add_content_labels(&self, digest: &str, labels: HashMap<String, String>) -> Result<()> {
        if labels.is_empty() {
            return Ok(());
        }
        let paths = labels.keys().map(|k| format!("labels.{k}")).collect();
        let info = ContentInfo { digest: digest.to_owned(), labels, ..Default::default() };
        self.call(
            "update content labels",
            self.client.content().update(self.req(ContentUpdateRequest { info: Some(info), update_mask: Some(FieldMask { paths }) })),
        )
        .await
        .map(|_| ())
    }

    /// Writes `body` (fully in memory) into the content store.
    async fn write_bytes(&self, digest: &str, body: Vec<u8>, labels: HashMap<String, String>, lease: &str) -> Result<()> {
        let stream = futures::stream::iter(vec![Ok::<_, String>(bytes_from(body))]);
        self.write_stream(digest, None, stream, labels, lease).await
    }

    /// Streams a blob into the content store; containerd checks the digest on commit.
    async fn write_stream<S>(&self, digest: &str, total: Option<i64>, body: S, labels: HashMap<String, String>, lease: &str) -> Result<()>
    where
        S: futures::Stream<Item = std::result::Result<Vec<u8>, String>> + Send + Unpin + 'static,
    {
        if self.content_exists(digest).await? {
            return self.add_content_labels(digest, labels).await;
        }
        let reference = format!("grove-worker-{digest}");
        let _ = self
            .call("abort stale write", self.client.content().abort(self.req(containerd_client::services::v1::AbortRequest { r#ref: reference.clone() })))
            .await;
        let failure: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
        let total = total.unwrap_or(0);
        let expected = digest.to_owned();
        // Re-chunk the body into ≤1 MiB messages and end with a Commit carrying the labels.
        struct St<S> {
            body: S,
            buf: Vec<u8>,
            offset: i64,
            done: bool,
        }
        let st = St { body, buf: Vec::new(), offset: 0, done: false };
        let (r1, e1, f1) = (reference.clone(), expected.clone(), failure.clone());
        let requests = futures::stream::unfold(st, move |mut st| {
            let (reference, expected, failure, labels) = (r1.clone(), e1.clone(), f1.clone(), labels.clone());
            async move {
                if st.done {
                    return None;
                }
                while st.buf.len() < CHUNK {
                    match st.body.next().await {
                        Some(Ok(b)) => st.buf.extend_from_slice(&b),
                        Some(Err(e)) => {
                            *failure.lock().expect("poisoned") = Some(e);
                            return None;
                        }
                        None => break,
                    }
                }
                if st.buf.is_empty() {
                    st.done = true;
                    let commit = WriteContentRequest {
                        action: WriteAction::Commit as i32,
                        r#ref: reference,
                        total: st.offset,
                        expected,
                        offset: st.offset,
                        data: Vec::new(),
                        labels,
                    };
                    return Some((commit, st));
                }
                let take = st.buf.len().min(CHUNK);
                let data: Vec<u8> = st.buf.drain(..take).collect();
                let msg = WriteContentRequest {
                    action: WriteAction::Write as i32,
                    r#ref: reference,
                    total,
                    expected,
                    offset: st.offset,
                    data,
                    labels: HashMap::new(),
                };
                st.offset += take as i64;
                Some((msg, st))
            }
        });
        let fut = async {
            let mut responses = self.client.content().write(self.leased(requests, lease)).await?.into_inner();
            while responses.message().await?.is_some() {}
            Ok::<_, tonic::Status>(())
        };
        match tokio::time::timeout(self.pull_timeout, fut).await {
            Ok(Ok(())) => {}
            Ok(Err(s)) => return Err(WorkerError::containerd("write content", s)),
            Err(_) => return Err(WorkerError::Timeout { operation: format!("write {digest}"), after_ms: self.pull_timeout.as_millis() as u64 }),
        }
        if let Some(e) = failure.lock().expect("poisoned").take() {
            return Err(WorkerError::Image { image: digest.to_owned(), message: format!("download failed: {e}") });
        }
        if !self.content_exists(digest).await? {
            return Err(WorkerError::Image { image: digest.to_owned(), message: "blob not committed".into() });
        }
        Ok(())
    }

    async fn pull_blob(&self, reg: &RegistryClient, r: &ImageRef, desc: &crate::runtime::registry::OciDescriptor, labels: HashMap<String, String>, lease: &str) -> Result<()> {
        if self.content_exists(&desc.digest).await? {
            return self.add_content_labels(&desc.digest, labels).await;
        }
        let resp = reg.fetch_blob(r, &desc.digest).await?;
        let body = resp.bytes_stream().map(|c| c.map(|b| b.to_vec()).map_err(|e| e.to_string()));
        self.write_stream(&desc.digest, Some(desc.size), Box::pin(body), labels, lease).await
    }

    /// Pulls `r` into the content store and records the image; returns its target.
    async fn pull(&self, r: &ImageRef, name: &str, os: &str, arch: &str, variant: &str, lease: &str) -> Result<Descriptor> {
        let img_err = |message: String| WorkerError::Image { image: name.to_owned(), message };
        let reg = RegistryClient::new(self.insecure_registries.clone(), self.call_timeout)?;
        let (media_type, body, digest) = reg.fetch_manifest(r, r.reference()).await?;
        let target = Descriptor { media_type: media_type.clone(), digest: digest.clone(), size: body.len() as i64, ..Default::default() };

        let (manifest_body, manifest_digest, index_position) = if is_index(&media_type) {
            let index: OciIndex = serde_json::from_slice(&body).map_err(|e| img_err(format!("bad index: {e}")))?;
            let chosen = select_platform(&index, os, arch, variant)
                .ok_or_else(|| img_err(format!("no manifest for platform {os}/{arch}")))?;
            let position = index.manifests.iter().position(|m| m.digest == chosen.digest).unwrap_or(0);
            let (_, mbody, mdigest) = reg.fetch_manifest(r, &chosen.digest).await?;
            (mbody, mdigest, Some(position))
        } else {
            (body.clone(), digest.clone(), None)
        };
        let manifest: OciManifest = serde_json::from_slice(&manifest_body).map_err(|e| img_err(format!("bad manifest: {e}")))?;

        // Children first, then their parents with gc references, all under the lease.
        self.pull_blob(&reg, r, &manifest.config, HashMap::new(), lease).await?;
        for layer in &manifest.layers {
            self.pull_blob(&reg, r, layer, HashMap::new(), lease).await?;
        }
        let mut labels = HashMap::from([("containerd.io/gc.ref.content.config".to_owned(), manifest.config.digest.clone())]);
        for (i, l) in manifest.layers.iter().enumerate() {
            labels.insert(format!("containerd.io/gc.ref.content.l.{i}"), l.digest.clone());
        }
        self.write_bytes(&manifest_digest, manifest_body, labels, lease).await?;
        if let Some(pos) = index_position {
            let labels = HashMap::from([(format!("containerd.io/gc.ref.content.m.{pos}"), manifest_digest.clone())]);
            self.write_bytes(&digest, body, labels, lease).await?;
        }

        let image = Image { name: name.to_owned(), target: Some(target.clone()), ..Default::default() };
        match self
            .call("create image", self.client.images().create(self.leased(CreateImageRequest { image: Some(image.clone()), source_date_epoch: None }, lease)))
            .await
        {
            Ok(_) => {}
            Err(e) if e.is_already_exists() => {
                self.call(
                    "update image",
                    self.client.images().update(self.req(UpdateImageRequest {
                        image: Some(image),
                        update_mask: Some(FieldMask { paths: vec!["target".into()] }),
                        source_date_epoch: None,
                    })),
                )
                .await?;
            }
            Err(e) => return Err(e),
        }
        info!(image = %name, digest = %digest, layers = manifest.layers.len(), "image pulled");
        Ok(target)
    }

    /// Unpacks the layers into committed snapshots named by chain id; returns the top one.
    async fn unpack(&self, name: &str, manifest: &OciManifest, config: &OciImageConfig, lease: &str) -> Result<String> {
        let diff_ids = &config.rootfs.diff_ids;
        if diff_ids.len() != manifest.layers.len() {
            return Err(WorkerError::Image {
                image: name.to_owned(),
                message: format!("{} layers but {} diff ids", manifest.layers.len(), diff_ids.len()),
            });
        }
        let mut parent = String::new();
        for (layer, diff_id) in manifest.layers.iter().zip(diff_ids) {
            let chain_id = if parent.is_empty() { diff_id.clone() } else { sha256_digest(format!("{parent} {diff_id}").as_bytes()) };
            let stat = self
                .call("stat snapshot", self.client.snapshots().stat(self.req(StatSnapshotRequest { snapshotter: self.snapshotter.clone(), key: chain_id.clone() })))
                .await;
            match stat {
                Ok(_) => {
                    parent = chain_id;
                    continue;
                }
                Err(e) if not_found(&e) => {}
                Err(e) => return Err(e),
            }
            let key = format!("extract-{}-{}", unix_nanos(), chain_id);
            let mounts = self
                .call(
                    "prepare snapshot",
                    self.client.snapshots().prepare(self.leased(
                        PrepareSnapshotRequest { snapshotter: self.snapshotter.clone(), key: key.clone(), parent: parent.clone(), labels: HashMap::new() },
                        lease,
                    )),
                )
                .await?
                .mounts;
            let desc = Descriptor { media_type: layer.media_type.clone(), digest: layer.digest.clone(), size: layer.size, ..Default::default() };
            let applied = self
                .call_within(
                    "apply layer",
                    self.pull_timeout,
                    self.client.diff().apply(self.leased(ApplyRequest { diff: Some(desc), mounts, payloads: HashMap::new(), sync_fs: false }, lease)),
                )
                .await;
            if let Err(e) = applied {
                self.remove_snapshot(&key).await;
                return Err(e);
            }
            let commit = self
                .call(
                    "commit snapshot",
                    self.client.snapshots().commit(self.leased(
                        CommitSnapshotRequest { snapshotter: self.snapshotter.clone(), name: chain_id.clone(), key: key.clone(), labels: HashMap::new() },
                        lease,
                    )),
                )
                .await;
            match commit {
                Ok(_) => {}
                Err(e) if e.is_already_exists() => self.remove_snapshot(&key).await,
                Err(e) => {
                    self.remove_snapshot(&key).await;
                    return Err(e);
                }
            }
            debug!(image = %name, chain_id = %chain_id, "layer unpacked");
            parent = chain_id;
        }
        // Keep the unpacked snapshots alive as long as the image's config is.
        let label = HashMap::from([(format!("containerd.io/gc.ref.snapshot.{}", self.snapshotter), parent.clone())]);
        self.add_content_labels(&manifest.config.digest, label).await?;
        Ok(parent)
    }

    async fn remove_snapshot(&self, key: &str) {
        let r = self
            .call("remove snapshot", self.client.snapshots().remove(self.req(RemoveSnapshotRequest { snapshotter: self.snapshotter.clone(), key: key.to_owned() })))
            .await;
        if let Err(e) = r {
            if !not_found(&e) {
                warn!(snapshot = %key, error = %e, "could not remove snapshot");
            }
        }
    }

    // ---- instances ---------------------------------------------------------------------

    async fn task_status(&self, id: &str) -> Result<Option<(ProcessStatus, u32)>> {
        match self.call("get task", self.client.tasks().get(self.req(GetRequest { container_id: id.to_owned(), exec_id: String::new() }))).await {
            Ok(resp) => Ok(resp.process.map(|p| (ProcessStatus::try_from(p.status).unwrap_or(ProcessStatus::Unknown), p.exit_status))),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn container_exists(&self, id: &str) -> Result<bool> {
        match self.call("get container", self.client.containers().get(self.req(GetContainerRequest { id: id.to_owned() }))).await {
            Ok(_) => Ok(true),
            Err(e) if not_found(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn deploy_inner(&self, spec: &InstanceSpec) -> Result<()> {
        let id = spec.key.task_id();
        if self.container_exists(&id).await? {
            match self.task_status(&id).await? {
                Some((ProcessStatus::Running | ProcessStatus::Created | ProcessStatus::Paused | ProcessStatus::Pausing, _)) => {
                    info!(task = %id, "instance already runs; deploy is a no-op");
                    return Ok(());
                }
                _ => {
                    info!(task = %id, "removing leftover container before deploying");
                    self.remove_instance(&id).await?;
                }
            }
        }
        // One lease over image, rootfs snapshot and container creation: until the container
        // record references the snapshot, nothing else keeps the garbage collector off it.
        let id_ref = id.as_str();
        let created = self
            .with_lease(|lease| async move {
                let image = self.ensure_image(&spec.job.image, &spec.job.platform, &lease).await?;
                self.create_and_start(spec, id_ref, &image, &lease).await
            })
            .await;
        if let Err(e) = created {
            warn!(task = %id, error = %e, "deploy failed; cleaning up");
            if let Err(c) = self.remove_instance(&id).await {
                warn!(task = %id, error = %c, "cleanup after failed deploy failed");
            }
            return Err(e);
        }
        Ok(())
    }

    async fn create_and_start(&self, spec: &InstanceSpec, id: &str, image: &ResolvedImage, lease: &str) -> Result<()> {
        let args = crate::runtime::oci_spec::process_args(&spec.job, &image.config);
        if args.is_empty() {
            return Err(WorkerError::Instance { task_id: id.to_owned(), message: "neither the job nor the image names a command".into() });
        }
        self.remove_snapshot(id).await;
        let mounts: Vec<Mount> = self
            .call(
                "prepare rootfs",
                self.client.snapshots().prepare(self.leased(
                    PrepareSnapshotRequest {
                        snapshotter: self.snapshotter.clone(),
                        key: id.to_owned(),
                        parent: image.chain_id.clone(),
                        labels: HashMap::new(),
                    },
                    lease,
                )),
            )
            .await?
            .mounts;

        let oci = crate::runtime::oci_spec::build(&spec.key, &spec.job, &image.config, &self.cgroups_path(&spec.key), self.bounding_caps);
        let job_json = serde_json::to_vec(&spec.job).expect("a job serializes");
        let container = Container {
            id: id.to_owned(),
            labels: HashMap::from([
                (LABEL_JOB_NAME.to_owned(), spec.key.job_name.clone()),
                (LABEL_INSTANCE.to_owned(), spec.key.instance_number.to_string()),
            ]),
            image: image.name.clone(),
            runtime: Some(ContainerRuntime { name: self.shim.clone(), options: None }),
            spec: Some(Any { type_url: SPEC_TYPE_URL.to_owned(), value: serde_json::to_vec(&oci).expect("spec serializes") }),
            snapshotter: self.snapshotter.clone(),
            snapshot_key: id.to_owned(),
            extensions: HashMap::from([(EXT_JOB.to_owned(), Any { type_url: EXT_JOB.to_owned(), value: job_json })]),
            ..Default::default()
        };
        self.call("create container", self.client.containers().create(self.leased(CreateContainerRequest { container: Some(container) }, lease)))
            .await?;

        ensure_log_file(&spec.log_path)?;
        let uri = format!("file://{}", spec.log_path.display());
        self.call(
            "create task",
            self.client.tasks().create(self.req(CreateTaskRequest {
                container_id: id.to_owned(),
                rootfs: mounts,
                stdout: uri.clone(),
                stderr: uri,
                ..Default::default()
            })),
        )
        .await?;
        let started = self
            .call("start task", self.client.tasks().start(self.req(StartRequest { container_id: id.to_owned(), exec_id: String::new() })))
            .await?;
        info!(task = %id, pid = started.pid, image = %image.name, "instance started");
        Ok(())
    }

    async fn kill(&self, id: &str, signal: u32, all: bool) -> Result<()> {
        match self
            .call("kill task", self.client.tasks().kill(self.req(KillRequest { container_id: id.to_owned(), exec_id: String::new(), signal, all })))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if not_found(&e) => Ok(()),
            // Killing a task that already stopped is "failed precondition"; that is fine.
            Err(WorkerError::Containerd { status, .. }) if status.code() == tonic::Code::FailedPrecondition => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn wait_within(&self, id: &str, limit: Duration) -> bool {
        let mut tasks = self.client.tasks();
        let fut = tasks.wait(self.req(WaitRequest { container_id: id.to_owned(), exec_id: String::new() }));
        matches!(tokio::time::timeout(limit, fut).await, Ok(Ok(_)) | Ok(Err(_)))
    }

    async fn stop(&self, id: &str, grace: Duration) -> Result<()> {
        match self.task_status(id).await? {
            None | Some((ProcessStatus::Stopped, _)) => return Ok(()),
            Some(_) => {}
        }
        self.kill(id, libc::SIGTERM as u32, false).await?;
        if !self.wait_within(id, grace).await {
            info!(task = %id, grace_ms = grace.as_millis() as u64, "grace period over; killing");
            self.kill(id, libc::SIGKILL as u32, true).await?;
            if !self.wait_within(id, self.call_timeout).await {
                return Err(WorkerError::Timeout { operation: format!("kill of {id}"), after_ms: self.call_timeout.as_millis() as u64 });
            }
        }
        Ok(())
    }

    /// Deletes task, writable snapshot and container; each step tolerates "not found".
    ///
    /// The snapshot goes before the container record: the other way round it would be
    /// unreferenced for a moment, and a garbage collection in that moment (containerd 1.6)
    /// removes it without unlinking it from its parent, which then can never be removed.
    async fn remove_instance(&self, id: &str) -> Result<()> {
        match self.call("delete task", self.client.tasks().delete(self.req(DeleteTaskRequest { container_id: id.to_owned() }))).await {
            Ok(_) => {}
            Err(e) if not_found(&e) => {}
            Err(e) => return Err(e),
        }
        self.remove_snapshot(id).await;
        match self.call("delete container", self.client.containers().delete(self.req(DeleteContainerRequest { id: id.to_owned() }))).await {
            Ok(_) => {}
            Err(e) if not_found(&e) => {}
            Err(e) => return Err(e),
        }
        Ok(())
    }

    async fn list_inner(&self) -> Result<Vec<FoundInstance>> {
        let containers = self
            .call("list containers", self.client.containers().list(self.req(ListContainersRequest { filters: Vec::new() })))
            .await?
            .containers;
        let mut out = Vec::new();
        for c in containers {
            let Some(job_name) = c.labels.get(LABEL_JOB_NAME) else { continue };
            let Some(n) = c.labels.get(LABEL_INSTANCE).and_then(|n| n.parse().ok()) else { continue };
            let key = InstanceKey::new(job_name.clone(), n);
            if key.task_id() != c.id {
                continue;
            }
            let job = c
                .extensions
                .get(EXT_JOB)
                .and_then(|a| serde_json::from_slice::<Job>(&a.value).ok())
                .unwrap_or_else(|| Job { job_name: job_name.clone(), virtualization: "docker".into(), ..Job::default() });
            let state = match self.task_status(&c.id).await? {
                None => FoundState::NoProcess,
                Some((ProcessStatus::Stopped, code)) => FoundState::Exited { code },
                Some(_) => FoundState::Running,
            };
            out.push(FoundInstance { key, job, state });
        }
        Ok(out)
    }
}

impl Runtime for ContainerdRuntime {
    fn name(&self) -> &'static str {
        "containerd"
    }

    fn virtualizations(&self) -> Vec<String> {
        vec![grove_core::job::virtualization::DOCKER.to_owned()]
    }

    fn deploy<'a>(&'a self, spec: &'a InstanceSpec) -> BoxFuture<'a, Result<()>> {
        self.deploy_inner(spec).boxed()
    }

    fn undeploy<'a>(&'a self, key: &'a InstanceKey, grace: Duration) -> BoxFuture<'a, Result<()>> {
        async move {
            let id = key.task_id();
            self.stop(&id, grace).await?;
            self.remove_instance(&id).await
        }
        .boxed()
    }

    fn wait_exit<'a>(&'a self, key: &'a InstanceKey) -> BoxFuture<'a, Result<ExitOutcome>> {
        async move {
            let id = key.task_id();
            // A long poll: no timeout here, the caller cancels it.
            match self.client.tasks().wait(self.req(WaitRequest { container_id: id, exec_id: String::new() })).await {
                Ok(r) => Ok(ExitOutcome { code: Some(r.into_inner().exit_status) }),
                Err(s) if s.code() == tonic::Code::NotFound => Ok(ExitOutcome { code: None }),
                Err(s) => Err(WorkerError::containerd("wait task", s)),
            }
        }
        .boxed()
    }

    fn cleanup<'a>(&'a self, key: &'a InstanceKey) -> BoxFuture<'a, Result<()>> {
        async move { self.remove_instance(&key.task_id()).await }.boxed()
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<FoundInstance>>> {
        self.list_inner().boxed()
    }

    fn usage<'a>(&'a self, key: &'a InstanceKey) -> BoxFuture<'a, Result<InstanceUsage>> {
        let path = self.cgroups_path(key);
        let cgroups = self.cgroups.clone();
        async move { cgroups.usage(&path) }.boxed()
    }

    fn disk_usage<'a>(&'a self, key: &'a InstanceKey) -> BoxFuture<'a, Result<u64>> {
        async move {
            let u = self
                .call("snapshot usage", self.client.snapshots().usage(self.req(UsageRequest { snapshotter: self.snapshotter.clone(), key: key.task_id() })))
                .await?;
            Ok(u.size.max(0) as u64)
        }
        .boxed()
    }
}

fn ensure_log_file(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| WorkerError::Io { path: dir.to_owned(), source })?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map(|_| ())
        .map_err(|source| WorkerError::Io { path: path.to_owned(), source })
}

fn bytes_from(v: Vec<u8>) -> Vec<u8> {
    v
}

/// `os/arch[/variant]`; empty parts default to this machine (`linux/<GOARCH>`).
pub fn parse_platform(p: &str) -> (String, String, String) {
    let mut parts = p.split('/').filter(|s| !s.is_empty());
    let os = parts.next().unwrap_or("linux").to_owned();
    let arch = parts.next().map(str::to_owned).unwrap_or_else(|| grove_core::node::goarch(std::env::consts::ARCH).to_owned());
    let variant = parts.next().unwrap_or("").to_owned();
    (os, arch, variant)
}

fn unix_nanos() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}

/// RFC 3339 UTC timestamp (`2026-11-28T04:00:00Z`).
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// The log file of an instance: `<log_directory>/<job_name>.instance.<n>`.
pub fn log_path(log_directory: &Path, key: &InstanceKey) -> PathBuf {
    log_directory.join(key.task_id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formatting() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(1_709_251_199)), "2024-02-29T23:59:59Z");
    }

    #[test]
    fn platform_defaults() {
        let (os, arch, v) = parse_platform("");
        assert_eq!(os, "linux");
        assert_eq!(arch, grove_core::node::goarch(std::env::consts::ARCH));
        assert_eq!(v, "");
        assert_eq!(parse_platform("linux/arm64/v8"), ("linux".into(), "arm64".into(), "v8".into()));
    }
}
