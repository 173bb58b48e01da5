//! The worker ↔ cluster wire contract (contract §4.1–4.3): MQTT topics, the control messages
//! a cluster sends, the reports a worker sends, and the registration reply.
//!
//! Field types follow upstream exactly, including the string-typed `cpu_percent`,
//! `memory_percent` and `disk` of resource reports and `sname`/`instance` in status reports.

use serde::{Deserialize, Serialize};

use crate::instance::InstanceKey;
use crate::job::Job;
use crate::lenient;
use crate::status::Status;

/// MQTT topics under `nodes/<id>/`.
pub mod topic {
    pub fn information(node_id: &str) -> String {
        format!("nodes/{node_id}/information")
    }
    pub fn job(node_id: &str) -> String {
        format!("nodes/{node_id}/job")
    }
    pub fn resources(node_id: &str) -> String {
        format!("nodes/{node_id}/jobs/resources")
    }
    pub fn control_deploy(node_id: &str) -> String {
        format!("nodes/{node_id}/control/deploy")
    }
    pub fn control_delete(node_id: &str) -> String {
        format!("nodes/{node_id}/control/delete")
    }
    pub fn control_error(node_id: &str) -> String {
        format!("nodes/{node_id}/control/error")
    }
    /// The worker's MQTT client id (`<id>-ne`; NetManager uses the bare id).
    pub fn client_id(node_id: &str) -> String {
        format!("{node_id}-ne")
    }
}

/// Reply to `POST /api/node/register`: `{"id": …, "MQTT_BROKER_PORT": "<port as string>"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterResponse {
    #[serde(deserialize_with = "lenient::string_lenient")]
    pub id: String,
    /// A string upstream; a number is accepted too.
    #[serde(rename = "MQTT_BROKER_PORT", deserialize_with = "lenient::string_lenient")]
    pub mqtt_broker_port: String,
}

impl RegisterResponse {
    /// The broker port, if the string is a valid port.
    pub fn broker_port(&self) -> Option<u16> {
        self.mqtt_broker_port.trim().parse().ok()
    }
}

/// `nodes/<id>/control/deploy`: the whole job document plus `instance_number`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeployCommand {
    #[serde(deserialize_with = "lenient::u32_lenient")]
    pub instance_number: u32,
    #[serde(flatten)]
    pub job: Job,
}

impl DeployCommand {
    pub fn key(&self) -> InstanceKey {
        InstanceKey::new(self.job.job_name.clone(), self.instance_number)
    }
}

/// `nodes/<id>/control/delete`: `{job_name, virtualization, instance_number}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteCommand {
    #[serde(deserialize_with = "lenient::string_lenient")]
    pub job_name: String,
    #[serde(default, deserialize_with = "lenient::string_or_first")]
    pub virtualization: String,
    #[serde(deserialize_with = "lenient::u32_lenient")]
    pub instance_number: u32,
}

impl DeleteCommand {
    pub fn key(&self) -> InstanceKey {
        InstanceKey::new(self.job_name.clone(), self.instance_number)
    }
}

/// `nodes/<id>/control/error`: `{"message": …}` (upstream workers do not subscribe).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlError {
    pub message: String,
}

/// `nodes/<id>/job`: one instance's status event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobStatusReport {
    /// The job name.
    pub sname: String,
    pub status: Status,
    pub status_detail: String,
    pub instance: u32,
    /// The worker's IP.
    pub publicip: String,
}

/// One entry of a `nodes/<id>/jobs/resources` report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceResources {
    /// Percent of one core, as a decimal string.
    pub cpu_percent: String,
    /// Percent of the node's memory, as a decimal string (0–100; upstream's containerd runtime
    /// sent a 0–1 fraction, a listed defect).
    pub memory_percent: String,
    /// Bytes written by the instance, as a decimal string.
    pub disk: String,
    /// The tail of the instance's log.
    pub logs: String,
    pub job_name: String,
    pub virtualization: String,
    pub instance: u32,
}

/// `nodes/<id>/jobs/resources`: `{"services": [...]}`, one message per runtime.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ResourcesReport {
    pub services: Vec<ServiceResources>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn deploy_command_reads_the_job_and_the_instance_number() {
        let cmd: DeployCommand = serde_json::from_value(json!({
            "_id": "j1", "job_name": "a.b.c.d", "instance_number": 2, "image": "x",
            "virtualization": "docker", "one_shot": true, "next_instance_progressive_number": 3
        }))
        .unwrap();
        assert_eq!(cmd.instance_number, 2);
        assert_eq!(cmd.key().task_id(), "a.b.c.d.instance.2");
        assert!(cmd.job.one_shot);
        assert!(!cmd.job.extra.contains_key("instance_number"));
        assert_eq!(cmd.job.extra["next_instance_progressive_number"], json!(3));
        let back = serde_json::to_value(&cmd).unwrap();
        assert_eq!(back["instance_number"], json!(2));
        assert_eq!(back["job_name"], json!("a.b.c.d"));
    }

    #[test]
    fn registration_reply_accepts_string_or_number_port() {
        let r: RegisterResponse =
            serde_json::from_value(json!({"id": "w1", "MQTT_BROKER_PORT": "10003"})).unwrap();
        assert_eq!(r.broker_port(), Some(10003));
        let r: RegisterResponse =
            serde_json::from_value(json!({"id": "w1", "MQTT_BROKER_PORT": 10003})).unwrap();
        assert_eq!(r.broker_port(), Some(10003));
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            json!({"id": "w1", "MQTT_BROKER_PORT": "10003"})
        );
    }

    #[test]
    fn status_report_keys_and_types() {
        let r = JobStatusReport {
            sname: "a.b.c.d".into(),
            status: Status::Dead,
            status_detail: "exit code 1".into(),
            instance: 0,
            publicip: "10.0.0.1".into(),
        };
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            json!({"sname": "a.b.c.d", "status": "DEAD", "status_detail": "exit code 1",
                   "instance": 0, "publicip": "10.0.0.1"})
        );
    }

    #[test]
    fn topics() {
        assert_eq!(topic::control_deploy("w"), "nodes/w/control/deploy");
        assert_eq!(topic::resources("w"), "nodes/w/jobs/resources");
        assert_eq!(topic::client_id("w"), "w-ne");
    }
}
