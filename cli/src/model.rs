//! The root's JSON documents as the CLI reads them: leniently, because ids come as
//! `{"$oid": …}` or plain strings and Oakestra's clients see both.

use grove_core::status::Status;
use serde_json::Value;

/// `_id` as `{"$oid": x}` or `x`.
pub fn id_of(doc: &Value) -> String {
    match doc.get("_id") {
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.get("$oid").and_then(Value::as_str).unwrap_or_default().to_owned(),
        None => doc.get("id").and_then(Value::as_str).unwrap_or_default().to_owned(),
    }
}

pub fn str_of(doc: &Value, key: &str) -> String {
    match doc.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(v) => v.to_string(),
    }
}

/// A list answer: an array, or (upstream's double encoding) a string holding one.
pub fn list_of(v: &Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a.clone(),
        Value::String(s) => serde_json::from_str::<Value>(s).ok().map(|v| list_of(&v)).unwrap_or_default(),
        Value::Null => Vec::new(),
        other => vec![other.clone()],
    }
}

/// An object answer, decoding upstream's double encoding.
pub fn object_of(v: &Value) -> Value {
    match v {
        Value::String(s) => serde_json::from_str(s).unwrap_or_else(|_| v.clone()),
        other => other.clone(),
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    pub id: String,
    pub job_name: String,
    pub image: String,
    pub application_id: String,
    pub instances: Vec<Instance>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    pub number: u32,
    pub status: String,
    pub detail: String,
    pub cluster_id: String,
    pub worker_id: String,
    /// `(status, at_ms)`, oldest first.
    pub history: Vec<(String, u64)>,
}

impl Service {
    pub fn from_doc(doc: &Value) -> Service {
        let doc = object_of(doc);
        let instances = doc
            .get("instance_list")
            .and_then(Value::as_array)
            .map(|list| list.iter().map(Instance::from_doc).collect())
            .unwrap_or_default();
        let mut id = id_of(&doc);
        if id.is_empty() {
            id = str_of(&doc, "microserviceID");
        }
        Service { id, job_name: str_of(&doc, "job_name"), image: str_of(&doc, "image"), application_id: str_of(&doc, "applicationID"), instances }
    }
}

impl Instance {
    pub fn from_doc(doc: &Value) -> Instance {
        let number = doc.get("instance_number").and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok())).unwrap_or(0) as u32;
        let history = doc
            .get("status_history")
            .and_then(Value::as_array)
            .map(|h| {
                h.iter()
                    .filter_map(|c| Some((c.get("status")?.as_str()?.to_owned(), c.get("at_ms").and_then(Value::as_u64).unwrap_or(0))))
                    .collect()
            })
            .unwrap_or_default();
        Instance {
            number,
            status: str_of(doc, "status"),
            detail: str_of(doc, "status_detail"),
            cluster_id: str_of(doc, "cluster_id"),
            worker_id: str_of(doc, "worker_id"),
            history,
        }
    }

    pub fn phase(&self) -> Phase {
        Phase::of(&self.status)
    }
}

/// Where an instance stands, for `status --watch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// On its way: `step` of [`STEPS`] reached (0-based).
    Progressing { step: usize },
    /// `RUNNING`, or `COMPLETED` for a one-shot service.
    Done,
    /// A scheduler's refusal (`NO_WORKER_CAPACITY`, `TargetClusterNotActive`, …): Grove's root
    /// keeps trying to place it, so it may still start when capacity appears.
    Unplaced,
    /// `FAILED`, `DEAD`, `UNDEPLOYED`.
    Failed,
}

/// The path of a healthy deployment.
pub const STEPS: [Status; 6] =
    [Status::Requested, Status::ClusterScheduled, Status::NodeScheduled, Status::Creating, Status::Created, Status::Running];

impl Phase {
    pub fn of(status: &str) -> Phase {
        match status.parse::<Status>() {
            Ok(Status::Running | Status::Completed) => Phase::Done,
            Ok(s) if s.is_negative_scheduling() => Phase::Unplaced,
            Ok(s) if s.is_terminal() => Phase::Failed,
            Ok(s) => Phase::Progressing { step: STEPS.iter().position(|x| *x == s).unwrap_or(0) },
            // An empty or unknown status: not started as far as we can tell.
            Err(_) => Phase::Progressing { step: 0 },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_come_as_oid_or_string() {
        assert_eq!(id_of(&json!({"_id": {"$oid": "abc"}})), "abc");
        assert_eq!(id_of(&json!({"_id": "abc"})), "abc");
        assert_eq!(id_of(&json!({})), "");
    }

    #[test]
    fn double_encoded_lists_are_decoded() {
        let doubly = Value::String(r#"[{"_id":{"$oid":"a"}}]"#.into());
        assert_eq!(list_of(&doubly).len(), 1);
        assert_eq!(list_of(&json!([1, 2])).len(), 2);
        assert!(list_of(&Value::Null).is_empty());
    }

    #[test]
    fn a_service_document_with_instances() {
        let doc = json!({
            "_id": {"$oid": "s1"}, "job_name": "app.ns.web.ns", "image": "nginx", "applicationID": "a1",
            "instance_list": [
                {"instance_number": 0, "status": "RUNNING", "cluster_id": "c1", "worker_id": "w1",
                 "status_history": [{"status": "REQUESTED", "detail": "", "at_ms": 5}, {"status": "RUNNING", "detail": "", "at_ms": 9}]},
                {"instance_number": 1, "status": "NO_WORKER_CAPACITY", "status_detail": "no worker has 4 cpus"}
            ]
        });
        let s = Service::from_doc(&doc);
        assert_eq!((s.id.as_str(), s.job_name.as_str(), s.instances.len()), ("s1", "app.ns.web.ns", 2));
        assert_eq!(s.instances[0].history, vec![("REQUESTED".to_owned(), 5), ("RUNNING".to_owned(), 9)]);
        assert_eq!(s.instances[0].phase(), Phase::Done);
        assert_eq!(s.instances[1].phase(), Phase::Unplaced);
        assert_eq!(s.instances[1].detail, "no worker has 4 cpus");
    }

    #[test]
    fn phases_follow_the_status_strings() {
        assert_eq!(Phase::of("REQUESTED"), Phase::Progressing { step: 0 });
        assert_eq!(Phase::of("NODE_SCHEDULED"), Phase::Progressing { step: 2 });
        assert_eq!(Phase::of("CREATED"), Phase::Progressing { step: 4 });
        assert_eq!(Phase::of("COMPLETED"), Phase::Done);
        assert_eq!(Phase::of("DEAD"), Phase::Failed);
        assert_eq!(Phase::of("TargetClusterNotFound"), Phase::Unplaced);
        assert_eq!(Phase::of("UNDEPLOYED"), Phase::Failed);
        assert_eq!(Phase::of(""), Phase::Progressing { step: 0 });
    }
}
