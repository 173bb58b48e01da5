//! The job (service) document (contract §2.6) as far as a worker needs it (§4.3, NE
//! `model/Service.go`), plus the identity and constraint fields the root and cluster read
//! (`applicationID`, `app_name`, …, `RR_ip`, `constraints`; built by [`crate::sla::derive_job`]).
//! Fields no tier interprets are kept verbatim in [`Job::extra`], so a job survives a round
//! trip through Grove unchanged.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::lenient;
use crate::sla::Constraint;

/// `virtualization` values with a meaning of their own. The root rewrites the SLA's
/// `container` to `docker`; any other string names a containerd sub-runtime or another runtime
/// that a worker advertises.
pub mod virtualization {
    pub const DOCKER: &str = "docker";
    pub const CONTAINER: &str = "container";
    pub const UNIKERNEL: &str = "unikernel";
    pub const CROSVM: &str = "crosvm";
}

/// A job document: the SLA microservice fields plus the ids the root adds.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Job {
    /// The job id (the microservice id), a Mongo ObjectId string.
    #[serde(rename = "_id", default, deserialize_with = "lenient::string_lenient")]
    pub id: String,
    /// `<app_name>.<app_ns>.<service_name>.<service_ns>`, the global service key.
    #[serde(default, deserialize_with = "lenient::string_lenient")]
    pub job_name: String,
    /// Image reference (the SLA's `code`).
    #[serde(default, deserialize_with = "lenient::string_lenient")]
    pub image: String,
    /// Replaces the image's entrypoint and command when not empty.
    #[serde(default, deserialize_with = "lenient::strings_lenient")]
    pub cmd: Vec<String>,
    /// `KEY=VALUE` entries.
    #[serde(default, deserialize_with = "lenient::strings_lenient")]
    pub environment: Vec<String>,
    /// Port map `host[:container][/tcp|/udp]`, `;`-separated (applied by the network layer).
    #[serde(default, deserialize_with = "lenient::string_lenient")]
    pub port: String,
    /// `docker` (from the SLA's `container`), `unikernel`, `crosvm` or a sub-runtime name.
    #[serde(default, deserialize_with = "lenient::string_or_first")]
    pub virtualization: String,
    /// containerd pull platform, e.g. `linux/arm64`; empty means the worker's own.
    #[serde(default, deserialize_with = "lenient::string_lenient")]
    pub platform: String,
    /// CPU cores requested (limit for containers); 0 means no limit.
    #[serde(default, deserialize_with = "lenient::u32_lenient")]
    pub vcpus: u32,
    #[serde(default, deserialize_with = "lenient::u32_lenient")]
    pub vgpus: u32,
    #[serde(default, deserialize_with = "lenient::u32_lenient")]
    pub vtpus: u32,
    /// Memory in MB (limit for containers); 0 means no limit.
    #[serde(default, deserialize_with = "lenient::u64_lenient")]
    pub memory: u64,
    /// Storage in MB.
    #[serde(default, deserialize_with = "lenient::u64_lenient")]
    pub storage: u64,
    #[serde(default, deserialize_with = "lenient::strings_lenient")]
    pub vm_images: Vec<String>,
    #[serde(default, deserialize_with = "lenient::strings_lenient")]
    pub arch: Vec<String>,
    /// CSI volumes `{volume_id, csi_driver, mount_path, config}`, kept as JSON.
    #[serde(default, deserialize_with = "lenient::values_lenient")]
    pub volumes: Vec<Value>,
    /// Exit 0 ⇒ `COMPLETED` instead of `DEAD`.
    #[serde(default, deserialize_with = "lenient::bool_lenient")]
    pub one_shot: bool,
    #[serde(default, deserialize_with = "lenient::bool_lenient")]
    pub privileged: bool,
    #[serde(default, deserialize_with = "lenient::string_lenient")]
    pub status: String,
    #[serde(default, deserialize_with = "lenient::string_lenient")]
    pub status_detail: String,
    /// The owning application's id (`applicationID`).
    #[serde(
        rename = "applicationID",
        default,
        deserialize_with = "lenient::string_lenient",
        skip_serializing_if = "String::is_empty"
    )]
    pub application_id: String,
    /// `app_name`, `app_ns`, `service_name`, `service_ns`: the four parts of `job_name`.
    #[serde(
        default,
        deserialize_with = "lenient::string_lenient",
        skip_serializing_if = "String::is_empty"
    )]
    pub app_name: String,
    #[serde(
        default,
        deserialize_with = "lenient::string_lenient",
        skip_serializing_if = "String::is_empty"
    )]
    pub app_ns: String,
    #[serde(
        default,
        deserialize_with = "lenient::string_lenient",
        skip_serializing_if = "String::is_empty"
    )]
    pub service_name: String,
    #[serde(
        default,
        deserialize_with = "lenient::string_lenient",
        skip_serializing_if = "String::is_empty"
    )]
    pub service_ns: String,
    /// Round-robin service IPs (`RR_ip`, `RR_ip_v6`), copied from the SLA's `addresses`.
    #[serde(rename = "RR_ip", default, skip_serializing_if = "Option::is_none")]
    pub rr_ip: Option<String>,
    #[serde(rename = "RR_ip_v6", default, skip_serializing_if = "Option::is_none")]
    pub rr_ip_v6: Option<String>,
    /// Placement constraints (contract §2.4), read by the root and cluster schedulers.
    #[serde(
        default,
        deserialize_with = "crate::sla::constraints_lenient",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub constraints: Vec<Constraint>,
    /// Every other key of the document, kept verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Job {
    /// True when the job asks for an OCI container (`docker` or the SLA's `container`).
    pub fn wants_container(&self) -> bool {
        self.virtualization == virtualization::DOCKER
            || self.virtualization == virtualization::CONTAINER
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_a_python_style_job_document() {
        let doc = json!({
            "_id": {"$oid": "65f0c0ffee"},
            "job_name": "clientsrv.test.nginx.test",
            "image": "docker.io/library/nginx:latest",
            "cmd": null,
            "environment": ["MODE=demo"],
            "port": "6080:80/tcp",
            "virtualization": ["docker"],
            "memory": 100.0,
            "vcpus": "1",
            "one_shot": null,
            "privileged": true,
            "applicationID": "abc",
            "instance_list": []
        });
        let job: Job = serde_json::from_value(doc).unwrap();
        assert_eq!(job.id, "65f0c0ffee");
        assert!(job.cmd.is_empty());
        assert_eq!(job.virtualization, "docker");
        assert_eq!(job.memory, 100);
        assert_eq!(job.vcpus, 1);
        assert!(!job.one_shot);
        assert!(job.privileged);
        assert!(job.wants_container());
        assert_eq!(job.application_id, "abc");
        // Unknown keys survive a round trip.
        let back = serde_json::to_value(&job).unwrap();
        assert_eq!(back["instance_list"], json!([]));
        assert_eq!(back["_id"], json!("65f0c0ffee"));
        assert_eq!(back["applicationID"], json!("abc"));
    }

    #[test]
    fn rejects_negative_memory() {
        assert!(serde_json::from_value::<Job>(json!({"memory": -1})).is_err());
    }
}
