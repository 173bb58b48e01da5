//! `POST /api/node/register` (contract §4.2): the Node JSON in, `{"id", "MQTT_BROKER_PORT"}`
//! out. Registration is an upsert by hostname committed through Raft, so a worker that
//! registers again (on any replica) gets its id back.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::Json;
use grove_core::node::NodeInfo;
use grove_core::worker_protocol::RegisterResponse;
use serde_json::{Map, Value};

use super::{body_json, Api, ApiError};
use crate::state::{Applied, ClusterCommand};

/// Read a Node JSON leniently, as upstream's cluster manager does: `null` values (Go's nil
/// slices and maps) count as absent, absent keys take their zero value. A value of the wrong
/// type is refused naming the key. `host` is required: the worker's identity is its hostname.
pub fn parse_node(value: Value) -> Result<NodeInfo, String> {
    let Value::Object(given) = value else {
        return Err(format!("request body: must be a JSON object (the Node JSON), found {}", grove_core::sla::type_name(&value)));
    };
    match given.get("host") {
        Some(Value::String(h)) if !h.trim().is_empty() => {}
        Some(Value::String(_)) | None | Some(Value::Null) => return Err("host: is required (the worker's hostname)".into()),
        Some(other) => return Err(format!("host: must be a string, found {}", grove_core::sla::type_name(other))),
    }
    let Value::Object(defaults) = serde_json::to_value(NodeInfo::default()).expect("NodeInfo serializes") else {
        unreachable!("NodeInfo is an object")
    };
    let merged = |only: Option<&str>| -> Map<String, Value> {
        let mut m = defaults.clone();
        for (k, v) in &given {
            if v.is_null() || !m.contains_key(k) || only.is_some_and(|o| o != k) {
                continue;
            }
            m.insert(k.clone(), v.clone());
        }
        m
    };
    match serde_json::from_value::<NodeInfo>(Value::Object(merged(None))) {
        Ok(node) => Ok(node),
        Err(whole) => {
            // Find the key that breaks it, to name it.
            for key in given.keys() {
                if let Err(e) = serde_json::from_value::<NodeInfo>(Value::Object(merged(Some(key)))) {
                    return Err(format!("{key}: {e}"));
                }
            }
            Err(format!("request body: {whole}"))
        }
    }
}

pub async fn register(State(api): State<Api>, body: Result<Bytes, BytesRejection>) -> Result<Json<RegisterResponse>, ApiError> {
    let value = body_json(body)?;
    let info = parse_node(value).map_err(ApiError::BadRequest)?;
    let host = info.host.clone();
    let command = ClusterCommand::RegisterWorker { id: crate::object_id(), info, at_ms: crate::now_ms() };
    let id = match api.shared.replica.write(command).await?? {
        Applied::Id(id) => id,
        other => return Err(ApiError::Internal(format!("registration answered {other:?}"))),
    };
    tracing::info!(worker = %id, %host, "worker registered");
    Ok(Json(RegisterResponse { id, mqtt_broker_port: api.shared.mqtt_port.to_string() }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn upstream_node_json_with_nulls_and_missing_keys() {
        let n = parse_node(json!({"id": "", "host": "edge-1", "vcpus": 4, "memory": 2048, "virtualization": null, "csi_drivers": null, "Overlay": false, "unknown_key": 1})).unwrap();
        assert_eq!((n.host.as_str(), n.vcpus, n.memory), ("edge-1", 4, 2048));
        assert!(n.virtualization.is_empty());
        let full = NodeInfo { host: "h".into(), virtualization: vec!["docker".into()], ..Default::default() };
        assert_eq!(parse_node(serde_json::to_value(&full).unwrap()).unwrap(), full);
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(parse_node(json!({"vcpus": 1})).unwrap_err(), "host: is required (the worker's hostname)");
        assert_eq!(parse_node(json!({"host": 7})).unwrap_err(), "host: must be a string, found a number");
        assert!(parse_node(json!([1])).unwrap_err().starts_with("request body: must be a JSON object"));
        let e = parse_node(json!({"host": "h", "vcpus": "four"})).unwrap_err();
        assert!(e.starts_with("vcpus: "), "{e}");
        let e = parse_node(json!({"host": "h", "memory": -1})).unwrap_err();
        assert!(e.starts_with("memory: "), "{e}");
    }
}
