//! One simulated worker's MQTT session: the Node Engine's side of contract §4.3, with instances
//! that only exist in memory.
//!
//! Per instance (keyed by job name + instance number, as every worker command is):
//!
//! ```text
//! control/deploy ─► CREATING ─(start-up time)─► CREATED, listed in jobs/resources (the cluster
//!                                                         commits RUNNING from that listing)
//!                                            └► FAILED "simulated start-up failure"   (failure_rate × (1 − dead_share))
//!                                            └► CREATED, then DEAD "exit code 1"       (failure_rate × dead_share)
//! control/delete ─► UNDEPLOYED (also for an unknown instance: deletes are idempotent)
//! ```
//!
//! A deploy of an instance that is starting or running repeats its status (`CREATING` or
//! `RUNNING`, as grove-worker does); a deploy of a failed or dead one starts it again with a
//! fresh failure draw. What runs survives a broker failover: the session reconnects to the next
//! broker, subscribes again and keeps reporting.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use grove_core::instance::InstanceKey;
use grove_core::status::Status;
use grove_core::worker_protocol::{
    topic, DeleteCommand, DeployCommand, JobStatusReport, ResourcesReport, ServiceResources,
};
use rumqttc::{AsyncClient, Event, MqttOptions, NetworkOptions, Packet, QoS};
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{debug, warn};

use crate::fleet::Shared;

/// What one simulated worker is.
#[derive(Debug, Clone)]
pub(crate) struct WorkerSpec {
    pub host: String,
    /// The id the cluster assigned at registration.
    pub id: String,
    /// Brokers in this worker's failover order.
    pub brokers: Vec<(String, u16)>,
    /// Delay of the first report, so the fleet's reports spread evenly over the period.
    pub offset: Duration,
    /// The pre-serialised Node JSON of `nodes/<id>/information`.
    pub information: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Starting { attempt: u32 },
    Running,
    Failed,
    Dead,
}

struct Instance {
    phase: Phase,
    virtualization: String,
}

/// The session's own state; only this task touches it.
#[derive(Default)]
struct Local {
    instances: HashMap<InstanceKey, Instance>,
    /// Start-ups in progress, earliest first.
    due: BinaryHeap<Reverse<(Instant, InstanceKey)>>,
    connected: bool,
}

struct Session<'a> {
    spec: &'a WorkerSpec,
    shared: &'a Shared,
    client: AsyncClient,
}

impl Session<'_> {
    fn publish(&self, topic: String, payload: String) {
        if self
            .client
            .try_publish(topic, QoS::AtLeastOnce, false, payload)
            .is_err()
        {
            self.shared
                .counters
                .publish_errors
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    fn status(&self, key: &InstanceKey, status: Status, detail: &str) {
        let report = JobStatusReport {
            sname: key.job_name.clone(),
            status,
            status_detail: detail.to_owned(),
            instance: key.instance_number,
            publicip: "127.0.0.1".into(),
        };
        match serde_json::to_string(&report) {
            Ok(body) => self.publish(topic::job(&self.spec.id), body),
            Err(e) => warn!(error = %e, "status report does not serialise"),
        }
        self.shared.record(key, &self.spec.id, status);
    }

    /// `information` and `jobs/resources`, as the Node Engine sends them every period.
    fn report(&self, local: &Local) {
        self.publish(
            topic::information(&self.spec.id),
            self.spec.information.clone(),
        );
        self.resources(local);
        self.shared.counters.reports.fetch_add(1, Ordering::Relaxed);
    }

    fn resources(&self, local: &Local) {
        let services = local
            .instances
            .iter()
            .filter(|(_, i)| i.phase == Phase::Running)
            .map(|(k, i)| ServiceResources {
                cpu_percent: "0.10".into(),
                memory_percent: "0.5000".into(),
                disk: "0".into(),
                logs: String::new(),
                job_name: k.job_name.clone(),
                virtualization: i.virtualization.clone(),
                instance: k.instance_number,
            })
            .collect();
        match serde_json::to_string(&ResourcesReport { services }) {
            Ok(body) => self.publish(topic::resources(&self.spec.id), body),
            Err(e) => warn!(error = %e, "resources report does not serialise"),
        }
    }

    fn on_control(&self, local: &mut Local, topic_name: &str, payload: &[u8]) {
        let c = &self.shared.counters;
        if topic_name == topic::control_deploy(&self.spec.id) {
            let cmd: DeployCommand = match serde_json::from_slice(payload) {
                Ok(cmd) => cmd,
                Err(e) => {
                    c.bad_messages.fetch_add(1, Ordering::Relaxed);
                    warn!(worker = %self.spec.host, error = %e, "ignoring a malformed deploy command");
                    return;
                }
            };
            c.deploys.fetch_add(1, Ordering::Relaxed);
            self.deploy(local, cmd);
        } else if topic_name == topic::control_delete(&self.spec.id) {
            let cmd: DeleteCommand = match serde_json::from_slice(payload) {
                Ok(cmd) => cmd,
                Err(e) => {
                    c.bad_messages.fetch_add(1, Ordering::Relaxed);
                    warn!(worker = %self.spec.host, error = %e, "ignoring a malformed delete command");
                    return;
                }
            };
            c.deletes.fetch_add(1, Ordering::Relaxed);
            let key = cmd.key();
            if let Some(i) = local.instances.remove(&key) {
                if i.phase == Phase::Running {
                    c.running.fetch_sub(1, Ordering::Relaxed);
                }
            }
            self.status(&key, Status::Undeployed, "");
        } else {
            c.bad_messages.fetch_add(1, Ordering::Relaxed);
            debug!(topic = %topic_name, "message on a topic this worker does not handle");
        }
    }

    fn deploy(&self, local: &mut Local, cmd: DeployCommand) {
        let key = cmd.key();
        match local.instances.get(&key).map(|i| i.phase) {
            Some(Phase::Starting { .. }) => return self.status(&key, Status::Creating, ""),
            Some(Phase::Running) => return self.status(&key, Status::Running, ""),
            Some(Phase::Failed | Phase::Dead) | None => {}
        }
        let attempt = self.shared.begin_deploy(&key, &self.spec.id);
        let virtualization = if cmd.job.virtualization.is_empty() {
            "docker".to_owned()
        } else {
            cmd.job.virtualization.clone()
        };
        local.instances.insert(
            key.clone(),
            Instance {
                phase: Phase::Starting { attempt },
                virtualization,
            },
        );
        self.status(&key, Status::Creating, "");
        let startup = self.shared.config.startup;
        if startup.is_zero() {
            self.started(local, &key);
        } else {
            local.due.push(Reverse((Instant::now() + startup, key)));
        }
    }

    /// The simulated start-up of `key` is over: run it, or fail it by the draw.
    fn started(&self, local: &mut Local, key: &InstanceKey) {
        let Some(instance) = local.instances.get_mut(key) else {
            return;
        }; // deleted meanwhile
        let Phase::Starting { attempt } = instance.phase else {
            return;
        };
        let config = &self.shared.config;
        let c = &self.shared.counters;
        let fails = draw(config.seed, &self.spec.host, key, attempt, 0) < config.failure_rate;
        if !fails {
            instance.phase = Phase::Running;
            c.created.fetch_add(1, Ordering::Relaxed);
            c.running.fetch_add(1, Ordering::Relaxed);
            self.status(key, Status::Created, "");
            // The cluster commits RUNNING when a resources report lists the instance; like
            // grove-worker, report at once instead of waiting for the next period.
            self.resources(local);
        } else if draw(config.seed, &self.spec.host, key, attempt, 1) < config.dead_share {
            instance.phase = Phase::Dead;
            c.dead.fetch_add(1, Ordering::Relaxed);
            self.status(key, Status::Created, "");
            self.status(key, Status::Dead, "exit code 1 (simulated)");
        } else {
            instance.phase = Phase::Failed;
            c.failed.fetch_add(1, Ordering::Relaxed);
            self.status(key, Status::Failed, "simulated start-up failure");
        }
    }
}

/// A uniform draw in [0, 1) fixed by its inputs (FNV-1a, then SplitMix64's finaliser).
pub(crate) fn draw(seed: u64, host: &str, key: &InstanceKey, attempt: u32, salt: u64) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    eat(host.as_bytes());
    eat(&[0xff]);
    eat(key.job_name.as_bytes());
    eat(&key.instance_number.to_le_bytes());
    eat(&attempt.to_le_bytes());
    eat(&salt.to_le_bytes());
    let mut z = h.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// The session loop of one worker: connect, subscribe, report, react; fail over to the next
/// broker on any connection error; stop on the fleet's cancellation.
pub(crate) async fn run(spec: WorkerSpec, shared: Arc<Shared>) {
    let mut local = Local::default();
    let mut attempt = 0usize;
    let mut backoff = Duration::from_millis(100);
    let first_tick = Instant::now() + spec.offset;
    while !shared.cancel.is_cancelled() {
        let (host, port) = spec.brokers[attempt % spec.brokers.len()].clone();
        attempt += 1;
        let mut opts = MqttOptions::new(topic::client_id(&spec.id), host.clone(), port);
        opts.set_keep_alive(shared.config.keep_alive);
        opts.set_clean_session(true);
        opts.set_max_packet_size(4 << 20, 4 << 20);
        let (client, mut eventloop) = AsyncClient::new(opts, 256);
        let mut network = NetworkOptions::new();
        network.set_connection_timeout(shared.config.request_timeout.as_secs().max(1));
        network.set_tcp_nodelay(true);
        eventloop.set_network_options(network);
        let session = Session {
            spec: &spec,
            shared: &shared,
            client,
        };
        let mut tick =
            tokio::time::interval_at(first_tick.max(Instant::now()), shared.config.report_period);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let next_due = local.due.peek().map(|Reverse((at, _))| *at);
            tokio::select! {
                _ = shared.cancel.cancelled() => {
                    let _ = session.client.try_disconnect();
                    shared.set_connected(&mut local.connected, false);
                    return;
                }
                polled = eventloop.poll() => match polled {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        for t in [topic::control_deploy(&spec.id), topic::control_delete(&spec.id)] {
                            if session.client.try_subscribe(t, QoS::AtLeastOnce).is_err() {
                                shared.counters.publish_errors.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        shared.set_connected(&mut local.connected, true);
                        backoff = Duration::from_millis(100);
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => session.on_control(&mut local, &p.topic, &p.payload),
                    Ok(_) => {}
                    Err(e) => {
                        shared.counters.connection_errors.fetch_add(1, Ordering::Relaxed);
                        shared.set_connected(&mut local.connected, false);
                        debug!(worker = %spec.host, broker = %format!("{host}:{port}"), error = %e, "MQTT session lost; trying the next broker");
                        tokio::select! {
                            _ = shared.cancel.cancelled() => return,
                            _ = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                        break;
                    }
                },
                _ = tick.tick(), if local.connected => session.report(&local),
                _ = tokio::time::sleep_until(next_due.unwrap_or_else(Instant::now)), if next_due.is_some() => {
                    let now = Instant::now();
                    while let Some(Reverse((at, _))) = local.due.peek() {
                        if *at > now {
                            break;
                        }
                        let Some(Reverse((_, key))) = local.due.pop() else { break };
                        session.started(&mut local, &key);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_are_uniform_and_reproducible() {
        let key = InstanceKey::new("a.b.c.d", 3);
        assert_eq!(draw(7, "w1", &key, 1, 0), draw(7, "w1", &key, 1, 0));
        assert_ne!(draw(7, "w1", &key, 1, 0), draw(7, "w1", &key, 2, 0));
        let n = 20_000;
        let below: usize = (0..n)
            .filter(|i| draw(1, &format!("w{i}"), &key, 1, 0) < 0.25)
            .count();
        let share = below as f64 / n as f64;
        assert!((0.23..0.27).contains(&share), "{share}");
        assert!((0..1000).all(|i| (0.0..1.0).contains(&draw(i, "w", &key, 0, 0))));
    }
}
