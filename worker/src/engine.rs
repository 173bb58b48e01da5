//! The instance engine: the worker's table of instances and the handling of deploy and
//! delete commands, exit events and restarts.
//!
//! Concurrency protocol:
//! - `instances` (a std mutex, never held across an await) is the truth about what this worker
//!   runs and in which state; reports read it.
//! - Every operation on one instance (deploy, delete, the reaction to its exit) first takes
//!   that instance's async lock from `key_locks`, so operations on one instance are
//!   serialised while different instances proceed in parallel.
//! - Each running instance has one exit-watcher task; it carries the record's `generation`, so
//!   a watcher of an earlier incarnation never touches a redeployed instance.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use grove_core::instance::InstanceKey;
use grove_core::job::{virtualization, Job};
use grove_core::status::Status;
use grove_core::worker_protocol::{
    topic, DeleteCommand, DeployCommand, JobStatusReport, ResourcesReport, ServiceResources,
};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn, Instrument};

use crate::mqtt_worker::{Control, Publisher};
use crate::runtime::cgroup::cpu_percent;
use crate::runtime::{ExitOutcome, FoundState, InstanceSpec, Runtime};

/// How long the final status of a removed instance is repeated in full reports, so that an
/// event lost with a dying broker reaches the cluster through the next one.
const TOMBSTONE_TTL: Duration = Duration::from_secs(120);
/// How often (in report periods) the writable-layer size is re-measured.
const DISK_EVERY: u32 = 8;
/// Bytes of log tail sent in resource reports.
const LOG_TAIL: u64 = 1024;

#[derive(Debug)]
struct Record {
    job: Job,
    runtime: usize,
    status: Status,
    detail: String,
    generation: u64,
    deleting: bool,
    cpu_sample: Option<(u64, Instant)>,
    cpu_percent: f64,
    memory_bytes: u64,
    disk_bytes: u64,
    reports: u32,
}

/// Settings the engine needs.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    pub node_id: String,
    pub public_ip: String,
    pub log_directory: PathBuf,
    pub stop_grace_period: Duration,
    pub total_memory: u64,
}

/// Snapshot of one instance, for callers and tests.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceView {
    pub key: InstanceKey,
    pub status: Status,
    pub detail: String,
}

struct Inner {
    settings: EngineSettings,
    runtimes: Vec<Arc<dyn Runtime>>,
    publisher: Publisher,
    instances: Mutex<HashMap<InstanceKey, Record>>,
    key_locks: Mutex<HashMap<InstanceKey, Arc<tokio::sync::Mutex<()>>>>,
    /// Final statuses of instances no longer in `instances`, with the time they were set.
    tombstones: Mutex<HashMap<InstanceKey, (Status, String, Instant)>>,
    generation: AtomicU64,
    tasks: TaskTracker,
    cancel: CancellationToken,
    /// Wakes the reporter: an instance started, so the cluster should see it RUNNING now
    /// rather than at the next periodic report.
    report_now: tokio::sync::Notify,
}

/// The engine; cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl Engine {
    pub fn new(
        settings: EngineSettings,
        runtimes: Vec<Arc<dyn Runtime>>,
        publisher: Publisher,
        cancel: CancellationToken,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                settings,
                runtimes,
                publisher,
                instances: Mutex::new(HashMap::new()),
                key_locks: Mutex::new(HashMap::new()),
                tombstones: Mutex::new(HashMap::new()),
                generation: AtomicU64::new(1),
                tasks: TaskTracker::new(),
                cancel,
                report_now: tokio::sync::Notify::new(),
            }),
        }
    }

    /// Resolves when an instance has started since the last call (the reporter then sends a
    /// resources report at once: the cluster marks an instance RUNNING from that report).
    pub async fn started_instance(&self) {
        self.inner.report_now.notified().await;
    }

    /// The virtualizations all runtimes together offer.
    pub fn virtualizations(&self) -> Vec<String> {
        self.inner.runtimes.iter().flat_map(|r| r.virtualizations()).collect()
    }

    /// Current view of every instance.
    pub fn instances(&self) -> Vec<InstanceView> {
        let map = self.inner.instances.lock().expect("poisoned");
        let mut v: Vec<InstanceView> = map
            .iter()
            .map(|(k, r)| InstanceView { key: k.clone(), status: r.status, detail: r.detail.clone() })
            .collect();
        v.sort_by(|a, b| a.key.cmp(&b.key));
        v
    }

    fn key_lock(&self, key: &InstanceKey) -> Arc<tokio::sync::Mutex<()>> {
        self.inner.key_locks.lock().expect("poisoned").entry(key.clone()).or_default().clone()
    }

    fn runtime_for(&self, virt: &str) -> Option<usize> {
        let v = if virt == virtualization::CONTAINER || virt.is_empty() { virtualization::DOCKER } else { virt };
        self.inner.runtimes.iter().position(|r| r.virtualizations().iter().any(|x| x == v))
    }

    fn publish_status(&self, key: &InstanceKey, status: Status, detail: &str) {
        if status.is_terminal() && !self.inner.instances.lock().expect("poisoned").contains_key(key) {
            self.inner.tombstones.lock().expect("poisoned").insert(key.clone(), (status, detail.to_owned(), Instant::now()));
        }
        let s = &self.inner.settings;
        self.inner.publisher.event(
            topic::job(&s.node_id),
            &JobStatusReport {
                sname: key.job_name.clone(),
                status,
                status_detail: detail.to_owned(),
                instance: key.instance_number,
                publicip: s.public_ip.clone(),
            },
        );
    }

    fn set_status(&self, key: &InstanceKey, generation: u64, status: Status, detail: &str) -> bool {
        let mut map = self.inner.instances.lock().expect("poisoned");
        match map.get_mut(key) {
            Some(r) if r.generation == generation => {
                r.status = status;
                r.detail = detail.to_owned();
                true
            }
            _ => false,
        }
    }

    /// Runs a control message as its own tracked task.
    pub fn handle(&self, control: Control) {
        let this = self.clone();
        let cancel = self.inner.cancel.clone();
        let (name, span) = match &control {
            Control::Deploy(c) => ("deploy", tracing::info_span!("deploy", task = %c.key())),
            Control::Delete(c) => ("delete", tracing::info_span!("delete", task = %c.key())),
        };
        self.inner.tasks.spawn(
            async move {
                tokio::select! {
                    _ = cancel.cancelled() => info!(op = name, "cancelled by shutdown"),
                    _ = async {
                        match control {
                            Control::Deploy(c) => this.deploy(*c).await,
                            Control::Delete(c) => this.delete(c).await,
                        }
                    } => {}
                }
            }
            .instrument(span),
        );
    }

    /// Deploys an instance; idempotent.
    pub async fn deploy(&self, cmd: DeployCommand) {
        let key = cmd.key();
        let lock = self.key_lock(&key);
        let _guard = lock.lock().await;

        let existing = {
            let map = self.inner.instances.lock().expect("poisoned");
            map.get(&key).map(|r| (r.status, r.detail.clone()))
        };
        match existing {
            Some((status, detail)) if !status.is_terminal() => {
                info!(task = %key, status = %status, "already deployed; repeating its status");
                let status = if status == Status::Creating { Status::Creating } else { Status::Running };
                self.publish_status(&key, status, &detail);
                return;
            }
            Some(_) => {
                self.inner.instances.lock().expect("poisoned").remove(&key);
            }
            None => {}
        }

        let Some(runtime) = self.runtime_for(&cmd.job.virtualization) else {
            let detail = format!(
                "virtualization {:?} is not supported by this worker (supported: {})",
                cmd.job.virtualization,
                self.virtualizations().join(", ")
            );
            warn!(task = %key, "{detail}");
            self.publish_status(&key, Status::Failed, &detail);
            return;
        };
        let generation = self.inner.generation.fetch_add(1, Ordering::Relaxed);
        self.inner.instances.lock().expect("poisoned").insert(
            key.clone(),
            Record {
                job: cmd.job.clone(),
                runtime,
                status: Status::Creating,
                detail: String::new(),
                generation,
                deleting: false,
                cpu_sample: None,
                cpu_percent: 0.0,
                memory_bytes: 0,
                disk_bytes: 0,
                reports: 0,
            },
        );
        let spec = InstanceSpec {
            key: key.clone(),
            job: cmd.job,
            log_path: self.inner.settings.log_directory.join(key.task_id()),
        };
        match self.inner.runtimes[runtime].deploy(&spec).await {
            Ok(()) => {
                self.set_status(&key, generation, Status::Running, "");
                self.publish_status(&key, Status::Created, "");
                self.inner.report_now.notify_one();
                self.watch_exit(key, generation, runtime);
            }
            Err(e) => {
                let detail = e.to_string();
                warn!(task = %key, error = %detail, "deploy failed");
                self.set_status(&key, generation, Status::Failed, &detail);
                self.publish_status(&key, Status::Failed, &detail);
            }
        }
    }

    /// Undeploys an instance; idempotent (an unknown instance is reported `UNDEPLOYED`).
    pub async fn delete(&self, cmd: DeleteCommand) {
        let key = cmd.key();
        let lock = self.key_lock(&key);
        let _guard = lock.lock().await;

        let runtime = {
            let mut map = self.inner.instances.lock().expect("poisoned");
            map.get_mut(&key).map(|r| {
                r.deleting = true;
                r.runtime
            })
        };
        let runtime = runtime.or_else(|| self.runtime_for(&cmd.virtualization));
        if let Some(rt) = runtime {
            if let Err(e) = self.inner.runtimes[rt].undeploy(&key, self.inner.settings.stop_grace_period).await {
                let detail = format!("undeploy failed: {e}");
                warn!(task = %key, error = %e, "undeploy failed");
                if let Some(r) = self.inner.instances.lock().expect("poisoned").get_mut(&key) {
                    r.deleting = false;
                    r.status = Status::Failed;
                    r.detail = detail.clone();
                }
                self.publish_status(&key, Status::Failed, &detail);
                return;
            }
        }
        self.inner.instances.lock().expect("poisoned").remove(&key);
        info!(task = %key, "undeployed");
        self.publish_status(&key, Status::Undeployed, "");
        // Forget the instance's lock unless another operation already waits on it (clones are
        // only made under the map's mutex, so the count cannot grow behind our back).
        let mut locks = self.inner.key_locks.lock().expect("poisoned");
        if locks.get(&key).is_some_and(|l| Arc::strong_count(l) == 2) {
            locks.remove(&key);
        }
    }

    fn watch_exit(&self, key: InstanceKey, generation: u64, runtime: usize) {
        let this = self.clone();
        let cancel = self.inner.cancel.clone();
        let span = tracing::info_span!("exit_watcher", task = %key);
        self.inner.tasks.spawn(
            async move {
                let outcome = loop {
                    let rt = this.inner.runtimes[runtime].clone();
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        r = rt.wait_exit(&key) => match r {
                            Ok(o) => break o,
                            Err(e) => {
                                warn!(error = %e, "waiting for exit failed; retrying");
                                tokio::select! {
                                    _ = cancel.cancelled() => return,
                                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                                }
                            }
                        }
                    }
                };
                this.on_exit(&key, generation, runtime, outcome).await;
            }
            .instrument(span),
        );
    }

    async fn on_exit(&self, key: &InstanceKey, generation: u64, runtime: usize, outcome: ExitOutcome) {
        let lock = self.key_lock(key);
        let _guard = lock.lock().await;
        let one_shot = {
            let map = self.inner.instances.lock().expect("poisoned");
            match map.get(key) {
                Some(r) if r.generation == generation && !r.deleting => r.job.one_shot,
                _ => return, // undeployed or redeployed meanwhile
            }
        };
        let (status, detail) = exit_status(one_shot, outcome);
        info!(task = %key, status = %status, detail = %detail, "instance exited");
        self.set_status(key, generation, status, &detail);
        self.publish_status(key, status, &detail);
        if let Err(e) = self.inner.runtimes[runtime].cleanup(key).await {
            warn!(task = %key, error = %e, "cleanup after exit failed");
        }
    }

    /// Adopts what the runtimes already hold (a restart): running instances are watched and
    /// reported, exited ones are reported and cleaned up, half-created ones are removed.
    pub async fn recover(&self) {
        for (idx, rt) in self.inner.runtimes.iter().enumerate() {
            let found = match rt.list().await {
                Ok(f) => f,
                Err(e) => {
                    warn!(runtime = rt.name(), error = %e, "cannot list existing instances");
                    continue;
                }
            };
            for f in found {
                let generation = self.inner.generation.fetch_add(1, Ordering::Relaxed);
                let (status, detail) = match f.state {
                    FoundState::Running => (Status::Running, String::new()),
                    FoundState::Exited { code } => exit_status(f.job.one_shot, ExitOutcome { code: Some(code) }),
                    FoundState::NoProcess => (Status::Failed, "deploy interrupted by a worker restart".to_owned()),
                };
                info!(task = %f.key, status = %status, "found instance from an earlier run");
                self.inner.instances.lock().expect("poisoned").insert(
                    f.key.clone(),
                    Record {
                        job: f.job,
                        runtime: idx,
                        status,
                        detail: detail.clone(),
                        generation,
                        deleting: false,
                        cpu_sample: None,
                        cpu_percent: 0.0,
                        memory_bytes: 0,
                        disk_bytes: 0,
                        reports: 0,
                    },
                );
                if status == Status::Running {
                    self.watch_exit(f.key, generation, idx);
                } else {
                    self.publish_status(&f.key, status, &detail);
                    if let Err(e) = rt.cleanup(&f.key).await {
                        warn!(task = %f.key, error = %e, "cleanup of a found instance failed");
                    }
                }
            }
        }
    }

    /// Publishes the status of every instance (after a (re)connect, for reconciliation),
    /// preceded by the final status of instances removed in the last [`TOMBSTONE_TTL`].
    pub fn publish_all_statuses(&self) {
        let live = self.instances();
        let tombstones: Vec<(InstanceKey, Status, String)> = {
            let mut t = self.inner.tombstones.lock().expect("poisoned");
            t.retain(|k, (_, _, at)| at.elapsed() < TOMBSTONE_TTL && !live.iter().any(|v| &v.key == k));
            t.iter().map(|(k, (s, d, _))| (k.clone(), *s, d.clone())).collect()
        };
        for (key, status, detail) in tombstones {
            self.publish_status(&key, status, &detail);
        }
        for v in live {
            self.publish_status(&v.key, v.status, &v.detail);
        }
    }

    /// Measures every running instance and builds one resources report per runtime.
    pub async fn resources(&self) -> Vec<ResourcesReport> {
        let running: Vec<(InstanceKey, usize, bool)> = {
            let mut map = self.inner.instances.lock().expect("poisoned");
            map.iter_mut()
                .filter(|(_, r)| r.status == Status::Running && !r.deleting)
                .map(|(k, r)| {
                    r.reports = r.reports.wrapping_add(1);
                    (k.clone(), r.runtime, r.reports % DISK_EVERY == 1)
                })
                .collect()
        };
        for (key, rt, measure_disk) in &running {
            let runtime = &self.inner.runtimes[*rt];
            let usage = runtime.usage(key).await;
            let disk = if *measure_disk { runtime.disk_usage(key).await.ok() } else { None };
            let now = Instant::now();
            let mut map = self.inner.instances.lock().expect("poisoned");
            let Some(r) = map.get_mut(key) else { continue };
            match usage {
                Ok(u) => {
                    if let Some((prev, at)) = r.cpu_sample {
                        r.cpu_percent = cpu_percent(prev, u.cpu_time_ns, now.duration_since(at).as_nanos() as u64);
                    }
                    r.cpu_sample = Some((u.cpu_time_ns, now));
                    r.memory_bytes = u.memory_bytes;
                }
                Err(e) => tracing::debug!(task = %key, error = %e, "no usage for instance"),
            }
            if let Some(d) = disk {
                r.disk_bytes = d;
            }
        }

        let total = self.inner.settings.total_memory.max(1);
        let mut per_runtime: Vec<ResourcesReport> = vec![ResourcesReport::default(); self.inner.runtimes.len()];
        let map = self.inner.instances.lock().expect("poisoned");
        let mut keys: Vec<&InstanceKey> = running.iter().map(|(k, _, _)| k).collect();
        keys.sort();
        for key in keys {
            let Some(r) = map.get(key) else { continue };
            per_runtime[r.runtime].services.push(ServiceResources {
                cpu_percent: format!("{:.2}", r.cpu_percent),
                memory_percent: format!("{:.4}", r.memory_bytes as f64 * 100.0 / total as f64),
                disk: r.disk_bytes.to_string(),
                logs: log_tail(&self.inner.settings.log_directory.join(key.task_id())),
                job_name: key.job_name.clone(),
                virtualization: if r.job.virtualization.is_empty() { virtualization::DOCKER.to_owned() } else { r.job.virtualization.clone() },
                instance: key.instance_number,
            });
        }
        per_runtime
    }

    /// Stops tracked tasks (in-flight commands, exit watchers) and waits for them, bounded.
    pub async fn shutdown(&self, deadline: Duration) {
        self.inner.cancel.cancel();
        self.inner.tasks.close();
        if tokio::time::timeout(deadline, self.inner.tasks.wait()).await.is_err() {
            warn!("engine tasks did not stop within {deadline:?}");
        }
    }
}

fn exit_status(one_shot: bool, outcome: ExitOutcome) -> (Status, String) {
    match outcome.code {
        Some(0) if one_shot => (Status::Completed, "exit code 0".into()),
        Some(c) => (Status::Dead, format!("exit code {c}")),
        None => (Status::Dead, "process lost by the runtime".into()),
    }
}

fn log_tail(path: &std::path::Path) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else { return String::new() };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    if len > LOG_TAIL && f.seek(SeekFrom::Start(len - LOG_TAIL)).is_err() {
        return String::new();
    }
    let mut buf = Vec::with_capacity(LOG_TAIL as usize);
    if f.take(LOG_TAIL).read_to_end(&mut buf).is_err() {
        return String::new();
    }
    String::from_utf8_lossy(&buf).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_statuses() {
        assert_eq!(exit_status(true, ExitOutcome { code: Some(0) }).0, Status::Completed);
        assert_eq!(exit_status(true, ExitOutcome { code: Some(1) }).0, Status::Dead);
        assert_eq!(exit_status(false, ExitOutcome { code: Some(0) }).0, Status::Dead);
        assert_eq!(exit_status(false, ExitOutcome { code: None }).0, Status::Dead);
    }

    #[test]
    fn log_tail_reads_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.instance.0");
        std::fs::write(&p, "a".repeat(2000) + "END").unwrap();
        let t = log_tail(&p);
        assert_eq!(t.len(), 1024);
        assert!(t.ends_with("END"));
        assert_eq!(log_tail(&dir.path().join("missing")), "");
    }
}
