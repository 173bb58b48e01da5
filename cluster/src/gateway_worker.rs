//! The MQTT gateway of one replica, on its broker's in-process link.
//!
//! - Subscribes `nodes/+/information`, `nodes/+/job` and `nodes/+/jobs/resources`.
//! - A message from an unregistered worker is answered on `nodes/<id>/control/error`
//!   (`{"message": "Node not registered to the cluster"}`, at most every 10 s per id) and
//!   dropped; a payload that does not parse is logged (with the field and rule) and counted.
//! - Status events (`nodes/<id>/job`) are committed through Raft promptly (a few milliseconds
//!   after the first one, batched per worker, one flush at a time); instances the state machine calls stale (the worker should not run
//!   them) get a delete at once, through this broker, which holds the worker's session.
//! - Everything else (last seen, attachment, dynamic resources, the instances listed in
//!   resource reports) goes to the leader as [`Observations`], one batch per flush: every
//!   `observation_flush_ms`, or with the status events.
//! - Publishes what the leader delivers for workers attached here (`outbox`).
//!
//! The link is read and written by this one task; committing and sending to the leader happen
//! in a forwarder task, one flush at a time, so a slow leader never stalls the broker link.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttd::local::{LinkRx, LinkTx};
use rumqttd::Notification;
use tokio::sync::{mpsc, watch};

use crate::delivery::OutMessage;
use crate::messages::{parse_information, parse_job_status, parse_resources, WorkerTopic};
use crate::soft::{Observations, WorkerObservation};
use crate::state::{Applied, ClusterCommand, StatusUpdate};
use crate::Shared;

/// What upstream answers an unregistered worker.
pub const NOT_REGISTERED: &str = "Node not registered to the cluster";
const SUBSCRIPTIONS: [&str; 3] = ["nodes/+/information", "nodes/+/job", "nodes/+/jobs/resources"];
/// A worker silent on this broker for this long counts as (re)attached when it speaks again.
const REATTACH_GAP: Duration = Duration::from_secs(5);
const ERROR_REPLY_EVERY: Duration = Duration::from_secs(10);
/// How long a status event waits for the messages that usually follow it before it is flushed.
const PROMPT_LINGER: Duration = Duration::from_millis(5);

/// One worker as this gateway sees it.
struct Local {
    last_seen: Instant,
    pending: Option<WorkerObservation>,
}

/// One flush: statuses to commit, observations for the leader.
struct Flush {
    statuses: Vec<(String, Vec<StatusUpdate>)>,
    observations: Observations,
}

pub async fn run(shared: Shared, link: (LinkTx, LinkRx), mut outbox: mpsc::UnboundedReceiver<OutMessage>, mut stop: watch::Receiver<bool>) {
    let (mut tx, mut rx) = link;
    for filter in SUBSCRIPTIONS {
        if let Err(e) = tx.subscribe(filter) {
            tracing::error!(filter, "gateway cannot subscribe: {e}");
            return;
        }
    }
    tracing::info!("MQTT gateway subscribed to {}", SUBSCRIPTIONS.join(", "));
    // Attachments the leader has not confirmed yet: repeated in every batch until it has.
    let unconfirmed: Arc<Mutex<HashSet<String>>> = Arc::default();
    let (flush_tx, flush_rx) = mpsc::channel::<Flush>(1);
    let forwarder = tokio::spawn(forward(shared.clone(), flush_rx, unconfirmed.clone()));

    let mut local: HashMap<String, Local> = HashMap::new();
    let mut statuses: HashMap<String, Vec<StatusUpdate>> = HashMap::new();
    let mut error_replies: HashMap<String, Instant> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(shared.config.observation_flush_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Status events are flushed promptly: PROMPT_LINGER after the first one, so the resources
    // report a worker sends right after a status rides along. Everything else waits for the tick.
    let mut prompt: Option<tokio::time::Instant> = None;
    let liveness = shared.config.liveness();
    loop {
        let prompt_due = async {
            match prompt {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = stop.changed() => break,
            n = rx.next() => match n {
                Ok(Some(Notification::Forward(f))) => {
                    shared.metrics.mqtt_received.fetch_add(1, Ordering::Relaxed);
                    let topic = String::from_utf8_lossy(&f.publish.topic).into_owned();
                    let mut gw = Gateway { shared: &shared, local: &mut local, statuses: &mut statuses, error_replies: &mut error_replies, tx: &mut tx };
                    gw.on_message(&topic, &f.publish.payload);
                    if prompt.is_none() && !statuses.is_empty() {
                        prompt = Some(tokio::time::Instant::now() + PROMPT_LINGER);
                    }
                }
                Ok(Some(Notification::Unschedule)) => {
                    if let Err(e) = rx.wake().await {
                        tracing::error!("gateway link: {e}");
                        break;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::error!("gateway link to the broker failed: {e}");
                    break;
                }
            },
            Some(m) = outbox.recv() => publish(&shared, &mut tx, m),
            _ = prompt_due => {
                prompt = None;
                let mut batch = Batch { shared: &shared, local: &mut local, statuses: &mut statuses, unconfirmed: &unconfirmed, liveness };
                if !batch.flush(&flush_tx) {
                    // The forwarder is busy: look again shortly rather than at the next tick.
                    prompt = Some(tokio::time::Instant::now() + PROMPT_LINGER);
                }
            }
            _ = tick.tick() => {
                let mut batch = Batch { shared: &shared, local: &mut local, statuses: &mut statuses, unconfirmed: &unconfirmed, liveness };
                if batch.flush(&flush_tx) {
                    prompt = None;
                }
            }
        }
    }
    drop(flush_tx);
    let _ = tokio::time::timeout(Duration::from_secs(2), forwarder).await;
    tracing::info!("MQTT gateway stopped");
}

/// What a flush takes from the gateway's accumulated state.
struct Batch<'a> {
    shared: &'a Shared,
    local: &'a mut HashMap<String, Local>,
    statuses: &'a mut HashMap<String, Vec<StatusUpdate>>,
    unconfirmed: &'a Mutex<HashSet<String>>,
    liveness: Duration,
}

impl Batch<'_> {
    /// Hand everything accumulated to the forwarder; false (nothing taken) while it is busy
    /// with the previous flush: nothing is dropped, the next flush carries the newer state.
    fn flush(&mut self, flush_tx: &mpsc::Sender<Flush>) -> bool {
        let Ok(permit) = flush_tx.try_reserve() else {
            tracing::debug!("the forwarder is busy; merging this flush into the next");
            return false;
        };
        let now = Instant::now();
        let liveness = self.liveness;
        self.local.retain(|_, l| now.duration_since(l.last_seen) < liveness * 4);
        let attached = self.local.values().filter(|l| now.duration_since(l.last_seen) < liveness).count();
        self.shared.metrics.attached_workers.store(attached as u64, Ordering::Relaxed);
        let pending_attach: HashSet<String> = self.unconfirmed.lock().expect("lock").clone();
        let mut workers = Vec::new();
        for (id, l) in self.local.iter_mut() {
            let mut o = match l.pending.take() {
                Some(o) => o,
                None if pending_attach.contains(id) => WorkerObservation { id: id.clone(), ..Default::default() },
                None => continue,
            };
            o.attached |= pending_attach.contains(id);
            o.age_ms = now.duration_since(l.last_seen).as_millis() as u64;
            workers.push(o);
        }
        if !workers.is_empty() || !self.statuses.is_empty() {
            let observations = Observations { replica: self.shared.replica.id(), workers };
            permit.send(Flush { statuses: self.statuses.drain().collect(), observations });
        }
        true
    }
}

fn publish(shared: &Shared, tx: &mut LinkTx, m: OutMessage) {
    tracing::debug!(topic = %m.topic, "publishing");
    match tx.publish(m.topic.into_bytes(), m.payload.into_bytes()) {
        Ok(_) => {
            shared.metrics.mqtt_published.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => tracing::warn!("gateway cannot publish: {e}"),
    }
}

struct Gateway<'a> {
    shared: &'a Shared,
    local: &'a mut HashMap<String, Local>,
    statuses: &'a mut HashMap<String, Vec<StatusUpdate>>,
    error_replies: &'a mut HashMap<String, Instant>,
    tx: &'a mut LinkTx,
}

impl Gateway<'_> {
    fn on_message(&mut self, topic: &str, payload: &[u8]) {
        let Some(t) = WorkerTopic::parse(topic) else {
            self.shared.metrics.reject("unknown_topic");
            tracing::debug!(%topic, "ignoring a message on an unexpected topic");
            return;
        };
        let id = t.worker_id().to_owned();
        if !self.shared.replica.read_local(|s| s.workers.contains_key(&id)) {
            self.shared.metrics.reject("unregistered_worker");
            let now = Instant::now();
            let due = self.error_replies.get(&id).is_none_or(|at| now.duration_since(*at) >= ERROR_REPLY_EVERY);
            if due {
                tracing::warn!(worker = %id, %topic, "message from an unregistered worker; answering on control/error");
                self.error_replies.insert(id.clone(), now);
                if self.error_replies.len() > 10_000 {
                    self.error_replies.retain(|_, at| now.duration_since(*at) < ERROR_REPLY_EVERY);
                }
                publish(self.shared, self.tx, OutMessage::error(&id, NOT_REGISTERED));
            }
            return;
        }
        let parsed = match &t {
            WorkerTopic::Information(_) => parse_information(payload).map(Parsed::Info),
            WorkerTopic::Job(_) => parse_job_status(payload).map(Parsed::Status),
            WorkerTopic::Resources(_) => parse_resources(payload).map(Parsed::Running),
        };
        let parsed = match parsed {
            Ok(p) => p,
            Err(e) => {
                self.shared.metrics.reject("malformed_payload");
                tracing::warn!(worker = %id, %topic, "refusing a malformed message: {e}");
                return;
            }
        };
        let now = Instant::now();
        let l = self.local.entry(id.clone()).or_insert(Local { last_seen: now - REATTACH_GAP * 2, pending: None });
        let attached = now.duration_since(l.last_seen) >= REATTACH_GAP;
        l.last_seen = now;
        let o = l.pending.get_or_insert_with(|| WorkerObservation { id: id.clone(), ..Default::default() });
        if attached {
            tracing::info!(worker = %id, "worker attached to this replica's broker");
            o.attached = true;
        }
        match parsed {
            Parsed::Info(d) => o.dynamic = Some(d),
            Parsed::Running(r) => o.running.get_or_insert_with(Vec::new).extend(r),
            Parsed::Status(u) => self.statuses.entry(id).or_default().push(u),
        }
    }
}

enum Parsed {
    Info(crate::messages::Dynamic),
    Status(StatusUpdate),
    Running(Vec<crate::messages::RunningInstance>),
}

/// Commit each flush's statuses and send its observations to the leader, one flush at a time.
async fn forward(shared: Shared, mut flushes: mpsc::Receiver<Flush>, unconfirmed: Arc<Mutex<HashSet<String>>>) {
    while let Some(flush) = flushes.recv().await {
        let writes = flush.statuses.into_iter().map(|(worker, updates)| commit_statuses(&shared, worker, updates));
        futures::future::join_all(writes).await;

        let attached: Vec<String> = flush.observations.workers.iter().filter(|o| o.attached).map(|o| o.id.clone()).collect();
        match send_observations(&shared, flush.observations).await {
            Ok(()) => {
                let mut u = unconfirmed.lock().expect("lock");
                for id in &attached {
                    u.remove(id);
                }
            }
            Err(e) => {
                tracing::debug!("observations not delivered to the leader: {e}");
                unconfirmed.lock().expect("lock").extend(attached);
            }
        }
    }
}

async fn commit_statuses(shared: &Shared, worker: String, updates: Vec<StatusUpdate>) {
    let n = updates.len() as u64;
    let command = ClusterCommand::ReportStatuses { worker_id: worker.clone(), updates, at_ms: crate::now_ms() };
    // Idempotent: retried blindly, also after an unknown outcome.
    for attempt in 0..3 {
        match shared.replica.write(command.clone()).await {
            Ok(Ok(Applied::Statuses { changed, stale })) => {
                shared.metrics.status_updates_committed.fetch_add(n, Ordering::Relaxed);
                tracing::debug!(%worker, changed, stale = stale.len(), "status events committed");
                let virt = |job_name: &str| {
                    shared.replica.read_local(|s| s.job_id_by_name(job_name).and_then(|id| s.jobs.get(id)).map(|j| j.virtualization.clone()).unwrap_or_default())
                };
                for u in stale {
                    tracing::info!(%worker, job = %u.job_name, instance = u.instance_number, status = %u.status, "worker reports an instance it should not run; deleting it");
                    let _ = shared.outbox.send(OutMessage::delete(&worker, &u.job_name, &virt(&u.job_name), u.instance_number));
                }
                return;
            }
            Ok(Ok(_)) => return,
            Ok(Err(e)) => {
                tracing::warn!(%worker, "status events refused: {e}");
                return;
            }
            Err(e) if attempt < 2 => tracing::debug!(%worker, "status events not committed yet: {e}"),
            Err(e) => tracing::warn!(%worker, "status events not committed: {e}"),
        }
    }
}

async fn send_observations(shared: &Shared, batch: Observations) -> Result<(), String> {
    if batch.workers.is_empty() {
        return Ok(());
    }
    let leader = shared.replica.status().leader_id.ok_or("no known leader")?;
    if leader == shared.replica.id() {
        if !shared.replica.is_leader() {
            return Err("leadership changed".into());
        }
        shared.observe(batch);
        return Ok(());
    }
    let api = shared.api_of(leader).ok_or_else(|| format!("leader {leader} has not announced its endpoints"))?;
    let resp = shared
        .internal(reqwest::Method::POST, format!("http://{api}/internal/v1/observations"))
        .json(&batch)
        .send()
        .await
        .map_err(|e| format!("leader {leader} at {api}: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("leader {leader} at {api} answered HTTP {}", resp.status()));
    }
    Ok(())
}
