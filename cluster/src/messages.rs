//! Parsing what workers publish (contract §4.3): the topic, then the payload of
//! `nodes/<id>/information`, `nodes/<id>/job` and `nodes/<id>/jobs/resources`.
//!
//! Pure functions. Payloads are read leniently where Oakestra's Go and Python tiers differ
//! (numbers as strings, `null` for empty lists, JSON encoded twice) and strictly where a wrong
//! value would corrupt state (status strings, instance numbers). Every error names the field
//! and the rule it breaks.

use grove_core::status::Status;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::state::StatusUpdate;

/// Largest payload the gateway reads; bigger messages are refused unread.
pub const MAX_PAYLOAD: usize = 1 << 20;

/// Which worker topic a message came in on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerTopic {
    Information(String),
    Job(String),
    Resources(String),
}

impl WorkerTopic {
    pub fn parse(topic: &str) -> Option<WorkerTopic> {
        let rest = topic.strip_prefix("nodes/")?;
        let (id, kind) = rest.split_once('/')?;
        if id.is_empty() || id.contains(['+', '#']) {
            return None;
        }
        let id = id.to_owned();
        match kind {
            "information" => Some(WorkerTopic::Information(id)),
            "job" => Some(WorkerTopic::Job(id)),
            "jobs/resources" => Some(WorkerTopic::Resources(id)),
            _ => None,
        }
    }

    pub fn worker_id(&self) -> &str {
        match self {
            WorkerTopic::Information(id) | WorkerTopic::Job(id) | WorkerTopic::Resources(id) => id,
        }
    }
}

/// The dynamic part of a `nodes/<id>/information` message (the leader's soft state).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Dynamic {
    pub ip: String,
    pub cpu_percent: f64,
    pub memory_percent: f64,
    /// Available memory, MB.
    pub memory: u64,
    pub vcpus: u32,
    pub vgpus: u32,
    pub gpu_driver: String,
    pub gpu_usage: f64,
    pub gpu_temp: f64,
    pub vram: f64,
    pub vram_percent: f64,
}

/// One instance a worker lists in `nodes/<id>/jobs/resources`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunningInstance {
    pub job_name: String,
    pub instance_number: u32,
    pub virtualization: String,
    pub cpu_percent: f64,
    pub memory_percent: f64,
}

/// The payload as a JSON object (a JSON string holding an object is accepted too).
pub fn json_object(payload: &[u8]) -> Result<serde_json::Map<String, Value>, String> {
    if payload.len() > MAX_PAYLOAD {
        return Err(format!("payload of {} bytes exceeds the limit of {MAX_PAYLOAD}", payload.len()));
    }
    let mut value: Value = serde_json::from_slice(payload).map_err(|e| format!("payload is not JSON: {e}"))?;
    if let Value::String(inner) = &value {
        value = serde_json::from_str(inner).map_err(|e| format!("payload is a string that is not JSON: {e}"))?;
    }
    match value {
        Value::Object(map) => Ok(map),
        other => Err(format!("payload must be a JSON object, found {}", grove_core::sla::type_name(&other))),
    }
}

fn number(map: &serde_json::Map<String, Value>, key: &str) -> Result<f64, String> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(0.0),
        Some(Value::Number(n)) => n.as_f64().filter(|f| f.is_finite()).ok_or_else(|| format!("{key}: not a finite number")),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(0.0),
        Some(Value::String(s)) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()).ok_or_else(|| format!("{key}: {s:?} is not a number")),
        Some(other) => Err(format!("{key}: must be a number, found {}", grove_core::sla::type_name(other))),
    }
}

fn count(map: &serde_json::Map<String, Value>, key: &str, max: f64) -> Result<f64, String> {
    let n = number(map, key)?;
    if !(0.0..=max).contains(&n) {
        return Err(format!("{key}: {n} is out of range 0..={max}"));
    }
    Ok(n)
}

fn text(map: &serde_json::Map<String, Value>, key: &str) -> Result<String, String> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(other) => Err(format!("{key}: must be a string, found {}", grove_core::sla::type_name(other))),
    }
}

fn required_text(map: &serde_json::Map<String, Value>, key: &str) -> Result<String, String> {
    let s = text(map, key)?;
    if s.is_empty() {
        return Err(format!("{key}: is required"));
    }
    Ok(s)
}

fn instance_number(map: &serde_json::Map<String, Value>, key: &str) -> Result<u32, String> {
    let n = match map.get(key) {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.trim().parse::<u64>().ok(),
        None | Some(Value::Null) => return Err(format!("{key}: is required")),
        Some(_) => None,
    };
    n.and_then(|n| u32::try_from(n).ok()).ok_or_else(|| format!("{key}: must be a non-negative integer"))
}

/// `nodes/<id>/information`: the Node JSON; only the dynamic keys are read.
pub fn parse_information(payload: &[u8]) -> Result<Dynamic, String> {
    let m = json_object(payload)?;
    Ok(Dynamic {
        ip: text(&m, "ip")?,
        cpu_percent: count(&m, "cpu_percent", 1e6)?,
        memory_percent: count(&m, "memory_percent", 1e6)?,
        memory: count(&m, "memory", 1e12)? as u64,
        vcpus: count(&m, "vcpus", 1e6)? as u32,
        vgpus: count(&m, "vgpus", 1e6)? as u32,
        gpu_driver: text(&m, "gpu_driver")?,
        gpu_usage: number(&m, "gpu_usage")?,
        gpu_temp: number(&m, "gpu_temp")?,
        vram: number(&m, "vram")?,
        vram_percent: number(&m, "vram_percent")?,
    })
}

/// `nodes/<id>/job`: `{sname, status, status_detail, instance, publicip}`.
pub fn parse_job_status(payload: &[u8]) -> Result<StatusUpdate, String> {
    let m = json_object(payload)?;
    let status = required_text(&m, "status")?;
    status.parse::<Status>().map_err(|_| format!("status: {status:?} is not an Oakestra status string"))?;
    Ok(StatusUpdate {
        job_name: required_text(&m, "sname")?,
        instance_number: instance_number(&m, "instance")?,
        status,
        detail: text(&m, "status_detail")?,
        publicip: text(&m, "publicip")?,
    })
}

/// `nodes/<id>/jobs/resources`: `{services: [{cpu_percent: "<float>", memory_percent, disk,
/// logs, job_name, virtualization, instance}]}`.
pub fn parse_resources(payload: &[u8]) -> Result<Vec<RunningInstance>, String> {
    let m = json_object(payload)?;
    let services = match m.get("services") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(other) => return Err(format!("services: must be an array, found {}", grove_core::sla::type_name(other))),
    };
    services
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let Value::Object(s) = s else { return Err(format!("services[{i}]: must be an object")) };
            fn field<T>(i: usize, r: Result<T, String>) -> Result<T, String> {
                r.map_err(|e| format!("services[{i}].{e}"))
            }
            Ok(RunningInstance {
                job_name: field(i, required_text(s, "job_name"))?,
                instance_number: field(i, instance_number(s, "instance"))?,
                virtualization: field(i, text(s, "virtualization"))?,
                cpu_percent: field(i, number(s, "cpu_percent"))?,
                memory_percent: field(i, number(s, "memory_percent"))?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn topics() {
        assert_eq!(WorkerTopic::parse("nodes/w1/information"), Some(WorkerTopic::Information("w1".into())));
        assert_eq!(WorkerTopic::parse("nodes/w1/job"), Some(WorkerTopic::Job("w1".into())));
        assert_eq!(WorkerTopic::parse("nodes/w1/jobs/resources"), Some(WorkerTopic::Resources("w1".into())));
        for bad in ["nodes//job", "nodes/w1/control/deploy", "other/w1/job", "nodes/w1"] {
            assert_eq!(WorkerTopic::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn information_reads_the_dynamic_keys_of_the_node_json() {
        let node = grove_core::node::NodeInfo { ip: "10.0.0.7".into(), cpu_percent: 12.5, memory: 2048, vcpus: 4, ..Default::default() };
        let d = parse_information(&serde_json::to_vec(&node).unwrap()).unwrap();
        assert_eq!((d.ip.as_str(), d.cpu_percent, d.memory, d.vcpus), ("10.0.0.7", 12.5, 2048, 4));
        // Go's nil slices and numbers as strings are fine; wrong types name the field.
        let d = parse_information(json!({"virtualization": null, "memory": "512"}).to_string().as_bytes()).unwrap();
        assert_eq!(d.memory, 512);
        assert_eq!(parse_information(br#"{"memory": -5}"#).unwrap_err(), "memory: -5 is out of range 0..=1000000000000");
        assert_eq!(parse_information(br#"{"cpu_percent": [1]}"#).unwrap_err(), "cpu_percent: must be a number, found an array");
        assert!(parse_information(b"[1,2]").unwrap_err().contains("must be a JSON object"));
        assert!(parse_information(b"\x00\x01").unwrap_err().contains("not JSON"));
    }

    #[test]
    fn job_status_with_upstream_keys() {
        let u = parse_job_status(br#"{"sname":"a.b.c.d","status":"FAILED","status_detail":"pull failed","instance":2,"publicip":"1.2.3.4"}"#).unwrap();
        assert_eq!(u, StatusUpdate { job_name: "a.b.c.d".into(), instance_number: 2, status: "FAILED".into(), detail: "pull failed".into(), publicip: "1.2.3.4".into() });
        // Double-encoded JSON (some Oakestra paths) is accepted.
        let twice = serde_json::to_vec(&r#"{"sname":"a","status":"RUNNING","instance":0}"#).unwrap();
        assert_eq!(parse_job_status(&twice).unwrap().status, "RUNNING");
        assert_eq!(parse_job_status(br#"{"sname":"a","status":"WHATEVER","instance":0}"#).unwrap_err(), "status: \"WHATEVER\" is not an Oakestra status string");
        assert_eq!(parse_job_status(br#"{"sname":"a","status":"RUNNING","instance":-1}"#).unwrap_err(), "instance: must be a non-negative integer");
        assert_eq!(parse_job_status(br#"{"status":"RUNNING","instance":0}"#).unwrap_err(), "sname: is required");
    }

    #[test]
    fn resources_with_string_typed_percentages() {
        let payload = json!({"services": [{"cpu_percent": "1.50", "memory_percent": "0.2500", "disk": "0", "logs": "", "job_name": "a.b.c.d", "virtualization": "docker", "instance": 0}]});
        let r = parse_resources(payload.to_string().as_bytes()).unwrap();
        assert_eq!(r, vec![RunningInstance { job_name: "a.b.c.d".into(), instance_number: 0, virtualization: "docker".into(), cpu_percent: 1.5, memory_percent: 0.25 }]);
        assert_eq!(parse_resources(br#"{"services": null}"#).unwrap(), vec![]);
        assert_eq!(parse_resources(br#"{"services": [{"job_name": "x"}]}"#).unwrap_err(), "services[0].instance: is required");
        assert_eq!(parse_resources(br#"{"services": [{"job_name": "x", "instance": 1, "cpu_percent": "lots"}]}"#).unwrap_err(), "services[0].cpu_percent: \"lots\" is not a number");
        assert_eq!(parse_resources(br#"{"services": 3}"#).unwrap_err(), "services: must be an array, found a number");
    }
}
