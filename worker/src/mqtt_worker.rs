//! The MQTT side of the worker: one named task that holds the connection to one broker at a
//! time, fails over to the next broker in the list when the current one goes away, subscribes
//! QoS 1 to the node's control topics, hands control messages to the engine and publishes
//! what the engine and the reporter queue.
//!
//! Protocol with the rest of the worker:
//! - `events` (unbounded): status events. They are kept while disconnected and sent after
//!   the next connect, in order.
//! - `reports` (bounded): periodic reports. Dropped while disconnected; the next period brings
//!   fresh ones.
//! - `state` (watch): connected or not, and an epoch that grows with every successful connect;
//!   the reporter sends a full report whenever the epoch changes.

use std::collections::VecDeque;
use std::time::Duration;

use grove_core::worker_protocol::{topic, DeleteCommand, DeployCommand};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// A control message from the cluster.
#[derive(Debug, Clone, PartialEq)]
pub enum Control {
    Deploy(Box<DeployCommand>),
    Delete(DeleteCommand),
}

/// Errors parsing a control message.
#[derive(Debug, PartialEq, Eq)]
pub enum ControlParseError {
    UnknownTopic(String),
    BadPayload(String),
}

/// Parses a message received on `nodes/<id>/control/...`. A payload that is a JSON string
/// holding JSON (double-encoded, as some Oakestra Python paths send) is accepted too.
pub fn parse_control(node_id: &str, topic_name: &str, payload: &[u8]) -> Result<Control, ControlParseError> {
    let mut value: serde_json::Value =
        serde_json::from_slice(payload).map_err(|e| ControlParseError::BadPayload(e.to_string()))?;
    if let serde_json::Value::String(inner) = &value {
        value = serde_json::from_str(inner).map_err(|e| ControlParseError::BadPayload(e.to_string()))?;
    }
    if topic_name == topic::control_deploy(node_id) {
        serde_json::from_value(value)
            .map(|c| Control::Deploy(Box::new(c)))
            .map_err(|e| ControlParseError::BadPayload(e.to_string()))
    } else if topic_name == topic::control_delete(node_id) {
        serde_json::from_value(value).map(Control::Delete).map_err(|e| ControlParseError::BadPayload(e.to_string()))
    } else {
        Err(ControlParseError::UnknownTopic(topic_name.to_owned()))
    }
}

/// One outgoing message.
#[derive(Debug, Clone)]
pub struct Message {
    pub topic: String,
    pub payload: Vec<u8>,
}

/// The connection as the rest of the worker sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnState {
    pub connected: bool,
    /// Grows by one with every successful connect.
    pub epoch: u64,
    /// `host:port` of the current broker.
    pub broker: String,
}

/// Handle to queue outgoing messages.
#[derive(Clone)]
pub struct Publisher {
    events: mpsc::UnboundedSender<Message>,
    reports: mpsc::Sender<Message>,
}

impl Publisher {
    /// Queues a status event (kept across disconnects).
    pub fn event(&self, topic: String, body: &impl Serialize) {
        let payload = serde_json::to_vec(body).expect("wire types serialize");
        let _ = self.events.send(Message { topic, payload });
    }

    /// Queues a periodic report (dropped when the queue is full).
    pub fn report(&self, topic: String, body: &impl Serialize) {
        let payload = serde_json::to_vec(body).expect("wire types serialize");
        if self.reports.try_send(Message { topic, payload }).is_err() {
            debug!("report queue full; dropping a report");
        }
    }
}

/// The receiving ends, owned by the MQTT task.
pub struct Outbox {
    events: mpsc::UnboundedReceiver<Message>,
    reports: mpsc::Receiver<Message>,
}

/// Creates the publisher and the MQTT task's outbox.
pub fn outbox() -> (Publisher, Outbox) {
    let (etx, erx) = mpsc::unbounded_channel();
    let (rtx, rrx) = mpsc::channel(8);
    (Publisher { events: etx, reports: rtx }, Outbox { events: erx, reports: rrx })
}

/// Settings of the MQTT task.
#[derive(Debug, Clone)]
pub struct MqttSettings {
    pub node_id: String,
    /// Brokers in failover order.
    pub brokers: Vec<(String, u16)>,
    pub keep_alive: Duration,
    pub connect_timeout: Duration,
    pub max_backoff: Duration,
}

/// The MQTT task. Returns when `cancel` fires.
pub async fn mqtt_worker(
    settings: MqttSettings,
    mut outbox: Outbox,
    control: mpsc::Sender<Control>,
    state: watch::Sender<ConnState>,
    cancel: CancellationToken,
) {
    let client_id = topic::client_id(&settings.node_id);
    let deploy_topic = topic::control_deploy(&settings.node_id);
    let delete_topic = topic::control_delete(&settings.node_id);
    let mut pending: VecDeque<Message> = VecDeque::new();
    let mut index = 0usize;
    let mut failed_in_a_row = 0usize;
    let mut epoch = 0u64;

    'brokers: while !cancel.is_cancelled() {
        let (host, port) = settings.brokers[index % settings.brokers.len()].clone();
        let broker = format!("{host}:{port}");
        let mut opts = MqttOptions::new(client_id.clone(), host, port);
        opts.set_keep_alive(settings.keep_alive.max(Duration::from_secs(1)));
        opts.set_clean_session(true);
        opts.set_max_packet_size(4 << 20, 4 << 20);
        let (client, mut eventloop) = AsyncClient::new(opts, 256);
        let mut net = eventloop.network_options();
        net.set_connection_timeout(settings.connect_timeout.as_secs().max(1));
        // Status reports are small and must not wait for the broker's delayed ACK.
        net.set_tcp_nodelay(true);
        eventloop.set_network_options(net);
        let mut connected = false;
        debug!(broker = %broker, "connecting to MQTT broker");

        loop {
            tokio::select! {
                _ = cancel.cancelled() => {
                    if connected {
                        let _ = client.try_disconnect();
                        // Give the disconnect a moment to leave; bounded.
                        let _ = tokio::time::timeout(Duration::from_millis(200), eventloop.poll()).await;
                    }
                    break 'brokers;
                }
                polled = eventloop.poll() => match polled {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        connected = true;
                        failed_in_a_row = 0;
                        epoch += 1;
                        for t in [&deploy_topic, &delete_topic] {
                            if let Err(e) = client.try_subscribe(t.clone(), QoS::AtLeastOnce) {
                                warn!(broker = %broker, error = %e, "subscribe failed");
                            }
                        }
                        info!(broker = %broker, client_id = %client_id, epoch, "connected to MQTT broker");
                        state.send_replace(ConnState { connected: true, epoch, broker: broker.clone() });
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        match parse_control(&settings.node_id, &p.topic, &p.payload) {
                            Ok(c) => {
                                if control.send(c).await.is_err() {
                                    break 'brokers;
                                }
                            }
                            Err(e) => warn!(topic = %p.topic, error = ?e, "ignoring control message"),
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        if connected {
                            warn!(broker = %broker, error = %e, "lost MQTT broker; failing over");
                            state.send_replace(ConnState { connected: false, epoch, broker: String::new() });
                        } else {
                            warn!(broker = %broker, error = %e, "cannot reach MQTT broker");
                            failed_in_a_row += 1;
                        }
                        // Reports are stale by the next connect; events are kept.
                        break;
                    }
                },
                Some(m) = outbox.events.recv(), if connected => pending.push_back(m),
                Some(m) = outbox.reports.recv(), if connected => {
                    if client.try_publish(m.topic, QoS::AtLeastOnce, false, m.payload).is_err() {
                        debug!("MQTT request queue full; dropping a report");
                    }
                }
            }
            if connected {
                while let Some(m) = pending.front() {
                    match client.try_publish(m.topic.clone(), QoS::AtLeastOnce, false, m.payload.clone()) {
                        Ok(()) => {
                            pending.pop_front();
                        }
                        Err(_) => break,
                    }
                }
            }
        }

        index += 1;
        if failed_in_a_row >= settings.brokers.len() {
            let exp = (failed_in_a_row / settings.brokers.len()).min(10) as u32;
            let delay = (Duration::from_millis(100) * 2u32.pow(exp)).min(settings.max_backoff);
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }
    state.send_replace(ConnState { connected: false, epoch, broker: String::new() });
    info!("MQTT task stopped");
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_both_control_messages_and_rejects_others() {
        let deploy = json!({"_id": "j", "job_name": "a.b.c.d", "instance_number": 1, "image": "x", "virtualization": "docker"});
        match parse_control("w", "nodes/w/control/deploy", deploy.to_string().as_bytes()).unwrap() {
            Control::Deploy(c) => assert_eq!(c.key().task_id(), "a.b.c.d.instance.1"),
            other => panic!("{other:?}"),
        }
        let delete = json!({"job_name": "a.b.c.d", "virtualization": "docker", "instance_number": 1});
        assert_eq!(
            parse_control("w", "nodes/w/control/delete", delete.to_string().as_bytes()).unwrap(),
            Control::Delete(DeleteCommand { job_name: "a.b.c.d".into(), virtualization: "docker".into(), instance_number: 1 })
        );
        // Double-encoded JSON.
        let twice = serde_json::to_string(&delete.to_string()).unwrap();
        assert!(matches!(parse_control("w", "nodes/w/control/delete", twice.as_bytes()), Ok(Control::Delete(_))));
        assert!(matches!(parse_control("w", "nodes/x/control/delete", delete.to_string().as_bytes()), Err(ControlParseError::UnknownTopic(_))));
        assert!(matches!(parse_control("w", "nodes/w/control/delete", b"{"), Err(ControlParseError::BadPayload(_))));
    }
}
