//! Getting commands to a worker: the replica whose broker holds the worker's session publishes
//! them. The leader hands messages for its own workers to its gateway; for others it calls
//! `POST /internal/v1/deliver` on the replica the worker is attached to, bounded by
//! `call_timeout_ms`. Commands are idempotent on the worker, so a message delivered twice is
//! harmless and one lost is re-sent by reconciliation.

use grove_core::job::Job;
use grove_core::worker_protocol::{topic, DeleteCommand, DeployCommand};
use serde::{Deserialize, Serialize};

use crate::Shared;

/// One MQTT message for a worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutMessage {
    pub topic: String,
    /// The JSON payload, as text.
    pub payload: String,
}

impl OutMessage {
    /// `nodes/<id>/control/deploy`: the job document, `instance_number` and `_id`.
    pub fn deploy(worker_id: &str, job: &Job, instance_number: u32) -> OutMessage {
        let cmd = DeployCommand { instance_number, job: job.clone() };
        OutMessage { topic: topic::control_deploy(worker_id), payload: serde_json::to_string(&cmd).expect("wire types serialize") }
    }

    /// `nodes/<id>/control/delete`: `{job_name, virtualization, instance_number}`.
    pub fn delete(worker_id: &str, job_name: &str, virtualization: &str, instance_number: u32) -> OutMessage {
        let virtualization = if virtualization.is_empty() { grove_core::job::virtualization::DOCKER } else { virtualization };
        let cmd = DeleteCommand { job_name: job_name.to_owned(), virtualization: virtualization.to_owned(), instance_number };
        OutMessage { topic: topic::control_delete(worker_id), payload: serde_json::to_string(&cmd).expect("wire types serialize") }
    }

    /// `nodes/<id>/control/error`: `{"message": …}`.
    pub fn error(worker_id: &str, message: &str) -> OutMessage {
        let body = grove_core::worker_protocol::ControlError { message: message.to_owned() };
        OutMessage { topic: topic::control_error(worker_id), payload: serde_json::to_string(&body).expect("wire types serialize") }
    }

    /// Only control topics of workers may be published through delivery.
    pub fn check(&self) -> Result<(), String> {
        let ok = self.topic.strip_prefix("nodes/").and_then(|r| r.split_once("/control/")).is_some_and(|(id, kind)| {
            !id.is_empty() && !id.contains(['/', '+', '#']) && matches!(kind, "deploy" | "delete" | "error")
        });
        if !ok {
            return Err(format!("topic {:?}: must be nodes/<id>/control/deploy|delete|error", self.topic));
        }
        if self.payload.len() > crate::messages::MAX_PAYLOAD {
            return Err(format!("payload of {} bytes exceeds the limit", self.payload.len()));
        }
        Ok(())
    }
}

/// `POST /internal/v1/deliver` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Delivery {
    pub messages: Vec<OutMessage>,
}

/// Hand `messages` to replica `replica` (this one: its gateway) for publishing.
pub async fn deliver(shared: &Shared, replica: u64, messages: Vec<OutMessage>) -> Result<(), String> {
    if messages.is_empty() {
        return Ok(());
    }
    let n = messages.len() as u64;
    if replica == shared.replica.id() {
        for m in messages {
            shared.outbox.send(m).map_err(|_| "the gateway has stopped".to_string())?;
        }
    } else {
        let api = shared.api_of(replica).ok_or_else(|| format!("replica {replica} has not announced its endpoints"))?;
        let url = format!("http://{api}/internal/v1/deliver");
        let resp = shared.internal(reqwest::Method::POST, url).json(&Delivery { messages }).send().await.map_err(|e| format!("replica {replica} at {api}: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("replica {replica} at {api} answered HTTP {}", resp.status()));
        }
    }
    shared.metrics.commands_sent_total.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn payloads_have_the_contract_keys() {
        let job = Job { id: "j1".into(), job_name: "a.b.c.d".into(), image: "img".into(), virtualization: "docker".into(), ..Default::default() };
        let m = OutMessage::deploy("w1", &job, 3);
        assert_eq!(m.topic, "nodes/w1/control/deploy");
        let v: Value = serde_json::from_str(&m.payload).unwrap();
        assert_eq!((v["_id"].clone(), v["instance_number"].clone(), v["job_name"].clone()), (json!("j1"), json!(3), json!("a.b.c.d")));
        let m = OutMessage::delete("w1", "a.b.c.d", "", 3);
        assert_eq!(serde_json::from_str::<Value>(&m.payload).unwrap(), json!({"job_name": "a.b.c.d", "virtualization": "docker", "instance_number": 3}));
        assert_eq!(OutMessage::error("w", "x").topic, "nodes/w/control/error");
    }

    #[test]
    fn only_worker_control_topics_pass() {
        assert!(OutMessage::delete("w1", "a", "docker", 0).check().is_ok());
        for bad in ["nodes/w1/information", "nodes/+/control/deploy", "other", "nodes//control/delete", "nodes/w/control/reboot"] {
            let m = OutMessage { topic: bad.into(), payload: "{}".into() };
            assert!(m.check().is_err(), "{bad}");
        }
    }
}
