//! The SLA v2.0 deployment descriptor (contract §2): typed documents, a validator that names
//! every offending field, and the job document the root derives from each microservice (§2.6).
//!
//! Validation walks the raw JSON first and collects *every* violation with its JSON path
//! (`applications[0].microservices[1].microservice_name`) and the rule broken, so a client gets
//! one complete 4xx answer instead of fixing its SLA one error at a time. Only a document without
//! violations is turned into the typed [`Sla`]. The walk never recurses into user data beyond the
//! fixed SLA shape and never indexes unchecked, so no input can make it panic.
//!
//! Rules beyond upstream's JSON schema, all taken from the contract: `rr_ip` must lie in
//! `10.30.0.0/16` and `rr_ip_v6` in `fdff:2000::/21` (the network plugin rejects anything else),
//! `port` must follow `host[:container][/tcp|/udp]` (the NetManager fails the deploy otherwise),
//! a unikernel needs `arch`, a crosvm VM needs `storage` ≥ 512 MiB, constraints must have a known
//! `type` and the fields that type needs, microservice names are unique within an application,
//! and an SLA carries at least one application. Unknown fields are accepted and dropped, as
//! upstream's schema (no `additionalProperties: false`) accepts them.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::job::{virtualization, Job};
use crate::lenient;

/// The only accepted `sla_version`.
pub const SLA_VERSION: &str = "v2.0";
/// The version upstream still recognises, only to reject it as deprecated.
pub const DEPRECATED_SLA_VERSION: &str = "v1.0";
/// Rule text of application and microservice names and namespaces.
pub const NAME_PATTERN: &str = "^[a-zA-Z0-9]{1,30}$";
/// Where round-robin service IPv4 addresses live (contract §3.4).
pub const RR_IP_NETWORK: &str = "10.30.0.0/16";
/// Where round-robin service IPv6 addresses live (contract §3.4).
pub const RR_IP_V6_NETWORK: &str = "fdff:2000::/21";
/// A crosvm VM's root file system (`storage`, MiB) must be at least this large.
pub const CROSVM_MIN_STORAGE_MB: u64 = 512;

// ---------------------------------------------------------------------------------------------
// Typed documents
// ---------------------------------------------------------------------------------------------

/// A whole SLA (contract §2.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sla {
    pub sla_version: String,
    /// Informational; the root uses the authenticated user as the owner.
    #[serde(rename = "customerID")]
    pub customer_id: String,
    pub applications: Vec<Application>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
}

/// An application object (contract §2.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Application {
    /// Empty on create; required when services are added to an existing application
    /// (see [`Sla::check_application_ids`]).
    #[serde(rename = "applicationID", default)]
    pub application_id: String,
    pub application_name: String,
    pub application_namespace: String,
    #[serde(default)]
    pub application_desc: String,
    pub microservices: Vec<Microservice>,
}

/// A microservice object (contract §2.3), including the fields upstream's schema does not list
/// but its workers read (`arch`, `vm_images`, `platform`, `volumes`, `privileged`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Microservice {
    /// Must be empty in an SLA; the server sets it to the job id.
    #[serde(rename = "microserviceID", default)]
    pub microservice_id: String,
    pub microservice_name: String,
    pub microservice_namespace: String,
    /// `container` (becomes `docker` in the job), `unikernel`, `crosvm` or a runtime name.
    pub virtualization: String,
    /// Image reference; the job's `image`.
    pub code: String,
    #[serde(default)]
    pub cmd: Vec<String>,
    #[serde(default)]
    pub environment: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// MB.
    #[serde(default, deserialize_with = "lenient::u64_lenient")]
    pub memory: u64,
    #[serde(default, deserialize_with = "lenient::u32_lenient")]
    pub vcpus: u32,
    #[serde(default, deserialize_with = "lenient::u32_lenient")]
    pub vgpus: u32,
    #[serde(default, deserialize_with = "lenient::u32_lenient")]
    pub vtpus: u32,
    /// kbit/s.
    #[serde(default, deserialize_with = "lenient::u64_lenient")]
    pub bandwidth_in: u64,
    /// kbit/s.
    #[serde(default, deserialize_with = "lenient::u64_lenient")]
    pub bandwidth_out: u64,
    /// MB.
    #[serde(default, deserialize_with = "lenient::u64_lenient")]
    pub storage: u64,
    #[serde(default)]
    pub state: String,
    /// `host[:container][/tcp|/udp]`, `;`-separated; empty means no published port.
    #[serde(default)]
    pub port: String,
    #[serde(default)]
    pub one_shot: bool,
    #[serde(default)]
    pub privileged: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub arch: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vm_images: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sla_violation_strategy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_node: Option<String>,
    #[serde(default)]
    pub added_files: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addresses: Option<Addresses>,
    #[serde(default)]
    pub constraints: Vec<Constraint>,
    #[serde(default)]
    pub connectivity: Vec<Connectivity>,
}

/// A CSI volume (`volumes[]`); the scheduler requires a candidate offering `csi_driver`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Volume {
    pub volume_id: String,
    pub csi_driver: String,
    #[serde(default)]
    pub mount_path: String,
    #[serde(default)]
    pub config: Map<String, Value>,
}

/// `addresses`: service IPs the user asks for.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Addresses {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rr_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rr_ip_v6: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closest_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closest_ip_v6: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instances: Vec<AddressRange>,
}

/// `addresses.instances[]`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AddressRange {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
}

/// `connectivity[]` (documentation only upstream; kept and validated, not scheduled on).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Connectivity {
    pub target_microservice_id: String,
    pub con_constraints: Vec<ConnectivityConstraint>,
}

/// `connectivity[].con_constraints[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectivityConstraint {
    #[serde(rename = "type")]
    pub kind: String,
    pub threshold: f64,
    pub rigidness: f64,
    #[serde(deserialize_with = "lenient::u64_lenient")]
    pub convergence_time: u64,
}

/// The constraint types of contract §2.4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConstraintKind {
    /// `cluster` (root) / `node` (cluster) name the target; `;`-separated lists allowed.
    Direct,
    /// `area`, `threshold` ms; accepted, not scheduled on (no latency data exists).
    Latency,
    /// `location` "lat,long" and `threshold` km.
    Geo,
    /// `needs`: addons that must be installed.
    Addons,
    /// `allowed`: cluster names.
    Clusters,
}

impl ConstraintKind {
    pub const ALL: [ConstraintKind; 5] = [
        ConstraintKind::Direct,
        ConstraintKind::Latency,
        ConstraintKind::Geo,
        ConstraintKind::Addons,
        ConstraintKind::Clusters,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            ConstraintKind::Direct => "direct",
            ConstraintKind::Latency => "latency",
            ConstraintKind::Geo => "geo",
            ConstraintKind::Addons => "addons",
            ConstraintKind::Clusters => "clusters",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for ConstraintKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A placement constraint (contract §2.4). Every field of the schema may appear on every type,
/// so this is one flat record; [`Constraint::kind`] interprets `type`. Deserialization is
/// lenient (it also reads job documents from other Oakestra tiers); the validator is not.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Constraint {
    #[serde(rename = "type", default, deserialize_with = "lenient::string_lenient")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub area: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(
        default,
        deserialize_with = "opt_f64",
        skip_serializing_if = "Option::is_none"
    )]
    pub threshold: Option<f64>,
    #[serde(
        default,
        deserialize_with = "opt_f64",
        skip_serializing_if = "Option::is_none"
    )]
    pub rigidness: Option<f64>,
    #[serde(
        default,
        deserialize_with = "opt_u64",
        skip_serializing_if = "Option::is_none"
    )]
    pub convergence_time: Option<u64>,
    #[serde(
        default,
        deserialize_with = "opt_strings",
        skip_serializing_if = "Option::is_none"
    )]
    pub needs: Option<Vec<String>>,
    #[serde(
        default,
        deserialize_with = "opt_strings",
        skip_serializing_if = "Option::is_none"
    )]
    pub allowed: Option<Vec<String>>,
}

impl Constraint {
    /// The constraint type, or `None` for a type outside contract §2.4.
    pub fn kind(&self) -> Option<ConstraintKind> {
        ConstraintKind::parse(&self.kind)
    }
}

/// A point on earth, degrees.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GeoPoint {
    pub lat: f64,
    pub long: f64,
}

impl GeoPoint {
    /// Mean earth radius (IUGG), km.
    pub const EARTH_RADIUS_KM: f64 = 6371.0088;

    /// `"lat,long"` as in a geo constraint's `location`; latitude in [-90, 90], longitude in
    /// [-180, 180].
    pub fn parse(s: &str) -> Option<Self> {
        let (lat, long) = s.split_once(',')?;
        Self::from_parts(lat, long)
    }

    /// A cluster location, `"lat,long"` or `"lat,long,radius"` (contract §3.1); the radius is
    /// ignored.
    pub fn parse_cluster_location(s: &str) -> Option<Self> {
        let mut parts = s.splitn(3, ',');
        let (lat, long) = (parts.next()?, parts.next()?);
        if let Some(radius) = parts.next() {
            radius
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|r| r.is_finite())?;
        }
        Self::from_parts(lat, long)
    }

    fn from_parts(lat: &str, long: &str) -> Option<Self> {
        let lat: f64 = lat.trim().parse().ok()?;
        let long: f64 = long.trim().parse().ok()?;
        let ok = lat.is_finite()
            && long.is_finite()
            && (-90.0..=90.0).contains(&lat)
            && (-180.0..=180.0).contains(&long);
        ok.then_some(GeoPoint { lat, long })
    }

    /// Great-circle distance (haversine), km.
    pub fn distance_km(self, other: GeoPoint) -> f64 {
        let (phi1, phi2) = (self.lat.to_radians(), other.lat.to_radians());
        let d_phi = (other.lat - self.lat).to_radians();
        let d_lambda = (other.long - self.long).to_radians();
        let a =
            (d_phi / 2.0).sin().powi(2) + phi1.cos() * phi2.cos() * (d_lambda / 2.0).sin().powi(2);
        2.0 * Self::EARTH_RADIUS_KM * a.sqrt().min(1.0).asin()
    }
}

impl fmt::Display for GeoPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{},{}", self.lat, self.long)
    }
}

// Lenient helpers for `Constraint`, which also arrives inside job documents.

fn opt_f64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(Value::String(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| D::Error::custom(format!("expected a number, got {s:?}"))),
        Some(other) => Err(D::Error::custom(format!("expected a number, got {other}"))),
    }
}

fn opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(v) => lenient::u64_lenient(v).map(Some).map_err(D::Error::custom),
    }
}

/// A list of strings, a single string (→ one element) or `null`.
fn opt_strings<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(vec![s])),
        Some(v) => Vec::<String>::deserialize(v)
            .map(Some)
            .map_err(D::Error::custom),
    }
}

/// `constraints` of a job document: a list, or `null` (→ empty).
pub(crate) fn constraints_lenient<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Vec<Constraint>, D::Error> {
    Ok(Option::<Vec<Constraint>>::deserialize(d)?.unwrap_or_default())
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// The rule a field breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlaRule {
    #[error("invalid JSON at line {line}, column {column}: {message}")]
    InvalidJson {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("is required")]
    Missing,
    #[error("is required for {context}")]
    RequiredFor { context: &'static str },
    #[error("must be {expected}, found {found}")]
    WrongType {
        expected: &'static str,
        found: &'static str,
    },
    #[error("{value:?} does not match {NAME_PATTERN}")]
    NamePattern { value: String },
    #[error("must not be empty")]
    Empty,
    #[error("must be empty (the server assigns it), found {value:?}")]
    MustBeEmpty { value: String },
    #[error("sla_version {value:?} is deprecated; only \"v2.0\" is accepted")]
    DeprecatedVersion { value: String },
    #[error("unknown sla_version {value:?}; only \"v2.0\" is accepted")]
    UnknownVersion { value: String },
    #[error("must be an integer, found {value}")]
    NotInteger { value: String },
    #[error("must not be negative, found {value}")]
    Negative { value: String },
    #[error("{value} exceeds the maximum {max}")]
    TooLarge { value: String, max: u64 },
    #[error("{value} is below the minimum {min} for {context}")]
    TooSmall {
        value: u64,
        min: u64,
        context: &'static str,
    },
    #[error(
        "bad port mapping {entry:?}: {reason}; expected host[:container][/tcp|/udp] entries \
         separated by ';'"
    )]
    PortSyntax { entry: String, reason: &'static str },
    #[error("{value:?} is not an address in {network}")]
    NotInNetwork {
        value: String,
        network: &'static str,
    },
    #[error("{value:?} is not an {family} address")]
    InvalidIp { value: String, family: &'static str },
    #[error(
        "unknown constraint type {value:?}; expected one of direct, latency, geo, addons, clusters"
    )]
    UnknownConstraintType { value: String },
    #[error("{value:?} is not a location \"lat,long\" (latitude -90..90, longitude -180..180)")]
    Location { value: String },
    #[error("duplicate {what} {value:?} (first at {first})")]
    Duplicate {
        what: &'static str,
        value: String,
        first: String,
    },
    /// The walk accepted the document but the typed parse did not (a validator bug).
    #[error("{message}")]
    Malformed { message: String },
}

/// One violation: the JSON path of the field (empty for the document itself) and the rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlaError {
    pub path: String,
    pub rule: SlaRule,
}

impl fmt::Display for SlaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "document: {}", self.rule)
        } else {
            write!(f, "{}: {}", self.path, self.rule)
        }
    }
}

impl std::error::Error for SlaError {}

/// Every violation found in one SLA, in document order. Never empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid SLA: {}", join_errors(.0))]
pub struct SlaErrors(pub Vec<SlaError>);

fn join_errors(errors: &[SlaError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl SlaErrors {
    pub fn errors(&self) -> &[SlaError] {
        &self.0
    }

    /// The violation at `path`, if any.
    pub fn at(&self, path: &str) -> Option<&SlaRule> {
        self.0.iter().find(|e| e.path == path).map(|e| &e.rule)
    }
}

// ---------------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------------

/// Parses and validates an SLA from a request body.
pub fn parse_sla(bytes: &[u8]) -> Result<Sla, SlaErrors> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        let full = e.to_string();
        let suffix = format!(" at line {} column {}", e.line(), e.column());
        let message = full.strip_suffix(&suffix).unwrap_or(&full).to_owned();
        SlaErrors(vec![SlaError {
            path: String::new(),
            rule: SlaRule::InvalidJson {
                line: e.line(),
                column: e.column(),
                message,
            },
        }])
    })?;
    validate_sla(&value)
}

/// Validates an already parsed SLA document.
pub fn validate_sla(value: &Value) -> Result<Sla, SlaErrors> {
    let mut v = Validator::default();
    v.document(value);
    if !v.errors.is_empty() {
        return Err(SlaErrors(v.errors));
    }
    Sla::deserialize(value).map_err(|e| {
        SlaErrors(vec![SlaError {
            path: String::new(),
            rule: SlaRule::Malformed {
                message: e.to_string(),
            },
        }])
    })
}

impl Sla {
    /// Adding services to an existing application (`POST /api/service/`) needs each
    /// application's `applicationID`; creating an application does not.
    pub fn check_application_ids(&self) -> Result<(), SlaErrors> {
        let errors: Vec<SlaError> = self
            .applications
            .iter()
            .enumerate()
            .filter(|(_, app)| app.application_id.is_empty())
            .map(|(i, _)| SlaError {
                path: format!("applications[{i}].applicationID"),
                rule: SlaRule::RequiredFor {
                    context: "adding services to an application",
                },
            })
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(SlaErrors(errors))
        }
    }
}

/// `^[a-zA-Z0-9]{1,30}$`.
pub fn is_valid_name(s: &str) -> bool {
    (1..=30).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Checks a `port` value; returns the first bad entry and why.
pub fn check_port_mapping(port: &str) -> Result<(), (String, &'static str)> {
    if port.is_empty() {
        return Ok(());
    }
    for entry in port.split(';') {
        let bad = |reason| Err((entry.to_owned(), reason));
        if entry.is_empty() {
            return bad("empty entry");
        }
        let ports = match entry.split_once('/') {
            Some((ports, "tcp" | "udp")) => ports,
            Some(_) => return bad("protocol must be tcp or udp"),
            None => entry,
        };
        let (host, container) = match ports.split_once(':') {
            Some((host, container)) => (host, Some(container)),
            None => (ports, None),
        };
        if !is_port_number(host) {
            return bad("host port must be a number from 1 to 65535");
        }
        if container.is_some_and(|c| !is_port_number(c)) {
            return bad("container port must be a number from 1 to 65535");
        }
    }
    Ok(())
}

fn is_port_number(s: &str) -> bool {
    (1..=5).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_digit())
        && s.parse::<u32>().is_ok_and(|p| (1..=65535).contains(&p))
}

/// `10.30.0.0/16`.
pub fn is_rr_ip(s: &str) -> bool {
    s.parse::<Ipv4Addr>()
        .is_ok_and(|ip| matches!(ip.octets(), [10, 30, _, _]))
}

/// `fdff:2000::/21`.
pub fn is_rr_ip_v6(s: &str) -> bool {
    s.parse::<Ipv6Addr>()
        .is_ok_and(|ip| ip.segments()[0] == 0xfdff && ip.segments()[1] & 0xf800 == 0x2000)
}

/// How an error message names the JSON type of a value ("a string", "an array", ...).
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn child(base: &str, key: &str) -> String {
    if base.is_empty() {
        key.to_owned()
    } else {
        format!("{base}.{key}")
    }
}

#[derive(Default)]
struct Validator {
    errors: Vec<SlaError>,
}

impl Validator {
    fn push(&mut self, path: String, rule: SlaRule) {
        self.errors.push(SlaError { path, rule });
    }

    fn wrong_type(&mut self, path: String, expected: &'static str, found: &Value) {
        self.push(
            path,
            SlaRule::WrongType {
                expected,
                found: type_name(found),
            },
        );
    }

    fn object<'v>(&mut self, value: &'v Value, path: &str) -> Option<&'v Map<String, Value>> {
        match value {
            Value::Object(map) => Some(map),
            other => {
                self.wrong_type(path.to_owned(), "an object", other);
                None
            }
        }
    }

    fn required<'v>(
        &mut self,
        obj: &'v Map<String, Value>,
        base: &str,
        key: &str,
    ) -> Option<&'v Value> {
        let v = obj.get(key);
        if v.is_none() {
            self.push(child(base, key), SlaRule::Missing);
        }
        v
    }

    fn string<'v>(&mut self, value: &'v Value, path: String) -> Option<&'v str> {
        match value {
            Value::String(s) => Some(s),
            other => {
                self.wrong_type(path, "a string", other);
                None
            }
        }
    }

    fn required_str<'v>(
        &mut self,
        obj: &'v Map<String, Value>,
        base: &str,
        key: &str,
    ) -> Option<&'v str> {
        let v = self.required(obj, base, key)?;
        self.string(v, child(base, key))
    }

    fn optional_str<'v>(
        &mut self,
        obj: &'v Map<String, Value>,
        base: &str,
        key: &str,
    ) -> Option<&'v str> {
        let v = obj.get(key)?;
        self.string(v, child(base, key))
    }

    fn non_empty_str<'v>(
        &mut self,
        obj: &'v Map<String, Value>,
        base: &str,
        key: &str,
    ) -> Option<&'v str> {
        let s = self.required_str(obj, base, key)?;
        if s.is_empty() {
            self.push(child(base, key), SlaRule::Empty);
            return None;
        }
        Some(s)
    }

    fn name<'v>(&mut self, obj: &'v Map<String, Value>, base: &str, key: &str) -> Option<&'v str> {
        let s = self.required_str(obj, base, key)?;
        if !is_valid_name(s) {
            self.push(
                child(base, key),
                SlaRule::NamePattern {
                    value: s.to_owned(),
                },
            );
            return None;
        }
        Some(s)
    }

    fn array<'v>(&mut self, value: &'v Value, path: String) -> Option<&'v [Value]> {
        match value {
            Value::Array(items) => Some(items),
            other => {
                self.wrong_type(path, "an array", other);
                None
            }
        }
    }

    fn optional_array<'v>(
        &mut self,
        obj: &'v Map<String, Value>,
        base: &str,
        key: &str,
    ) -> Option<&'v [Value]> {
        let v = obj.get(key)?;
        self.array(v, child(base, key))
    }

    fn required_array<'v>(
        &mut self,
        obj: &'v Map<String, Value>,
        base: &str,
        key: &str,
    ) -> Option<&'v [Value]> {
        let v = self.required(obj, base, key)?;
        self.array(v, child(base, key))
    }

    /// An optional array of strings; returns it when every item is a string.
    fn optional_strings<'v>(
        &mut self,
        obj: &'v Map<String, Value>,
        base: &str,
        key: &str,
    ) -> Option<&'v [Value]> {
        let items = self.optional_array(obj, base, key)?;
        let before = self.errors.len();
        for (i, item) in items.iter().enumerate() {
            if !item.is_string() {
                self.wrong_type(format!("{}[{i}]", child(base, key)), "a string", item);
            }
        }
        (self.errors.len() == before).then_some(items)
    }

    fn optional_bool(&mut self, obj: &Map<String, Value>, base: &str, key: &str) {
        if let Some(v) = obj.get(key) {
            if !v.is_boolean() {
                self.wrong_type(child(base, key), "a boolean", v);
            }
        }
    }

    /// A finite number (`type: number`).
    fn number(&mut self, value: &Value, path: String) -> Option<f64> {
        match value.as_f64() {
            Some(f) if value.is_number() && f.is_finite() => Some(f),
            _ => {
                self.wrong_type(path, "a number", value);
                None
            }
        }
    }

    fn optional_number(&mut self, obj: &Map<String, Value>, base: &str, key: &str) -> Option<f64> {
        let v = obj.get(key)?;
        self.number(v, child(base, key))
    }

    /// A non-negative integer ≤ `max` (`type: integer`; like JSON Schema, `4.0` is an integer).
    fn uint(&mut self, value: &Value, path: String, max: u64) -> Option<u64> {
        let Value::Number(n) = value else {
            self.wrong_type(path, "an integer", value);
            return None;
        };
        let rule = if let Some(u) = n.as_u64() {
            if u <= max {
                return Some(u);
            }
            SlaRule::TooLarge {
                value: n.to_string(),
                max,
            }
        } else if n.as_i64().is_some() {
            SlaRule::Negative {
                value: n.to_string(),
            }
        } else {
            let f = n.as_f64().unwrap_or(f64::NAN);
            if f < 0.0 {
                SlaRule::Negative {
                    value: n.to_string(),
                }
            } else if f.fract() != 0.0 || !f.is_finite() {
                SlaRule::NotInteger {
                    value: n.to_string(),
                }
            } else if f > max as f64 {
                SlaRule::TooLarge {
                    value: n.to_string(),
                    max,
                }
            } else {
                return Some(f as u64);
            }
        };
        self.push(path, rule);
        None
    }

    fn optional_uint(
        &mut self,
        obj: &Map<String, Value>,
        base: &str,
        key: &str,
        max: u64,
    ) -> Option<u64> {
        let v = obj.get(key)?;
        self.uint(v, child(base, key), max)
    }

    fn non_negative(&mut self, value: Option<f64>, path: String) {
        if let Some(f) = value.filter(|f| *f < 0.0) {
            self.push(
                path,
                SlaRule::Negative {
                    value: f.to_string(),
                },
            );
        }
    }

    fn document(&mut self, value: &Value) {
        let Some(obj) = self.object(value, "") else {
            return;
        };
        match self.required_str(obj, "", "sla_version") {
            Some(SLA_VERSION) | None => {}
            Some(v @ DEPRECATED_SLA_VERSION) => self.push(
                "sla_version".into(),
                SlaRule::DeprecatedVersion { value: v.into() },
            ),
            Some(v) => self.push(
                "sla_version".into(),
                SlaRule::UnknownVersion { value: v.into() },
            ),
        }
        self.required_str(obj, "", "customerID");
        self.optional_strings(obj, "", "args");
        let Some(apps) = self.required_array(obj, "", "applications") else {
            return;
        };
        if apps.is_empty() {
            self.push("applications".into(), SlaRule::Empty);
        }
        let mut seen: HashMap<(&str, &str), String> = HashMap::new();
        for (i, app) in apps.iter().enumerate() {
            let path = format!("applications[{i}]");
            if let Some(key) = self.application(app, &path) {
                match seen.entry(key) {
                    Entry::Occupied(first) => self.push(
                        format!("{path}.application_name"),
                        SlaRule::Duplicate {
                            what: "application",
                            value: format!("{}.{}", key.0, key.1),
                            first: first.get().clone(),
                        },
                    ),
                    Entry::Vacant(slot) => {
                        slot.insert(format!("{path}.application_name"));
                    }
                }
            }
        }
    }

    /// Returns the application's (name, namespace) when both are valid.
    fn application<'v>(&mut self, value: &'v Value, path: &str) -> Option<(&'v str, &'v str)> {
        let obj = self.object(value, path)?;
        self.optional_str(obj, path, "applicationID");
        let name = self.name(obj, path, "application_name");
        let namespace = self.name(obj, path, "application_namespace");
        self.optional_str(obj, path, "application_desc");
        if let Some(services) = self.required_array(obj, path, "microservices") {
            let mut seen: HashMap<&str, String> = HashMap::new();
            for (j, service) in services.iter().enumerate() {
                let spath = format!("{path}.microservices[{j}]");
                let Some(sname) = self.microservice(service, &spath) else {
                    continue;
                };
                let name_path = format!("{spath}.microservice_name");
                match seen.entry(sname) {
                    Entry::Occupied(first) => self.push(
                        name_path,
                        SlaRule::Duplicate {
                            what: "microservice_name",
                            value: sname.to_owned(),
                            first: first.get().clone(),
                        },
                    ),
                    Entry::Vacant(slot) => {
                        slot.insert(name_path);
                    }
                }
            }
        }
        Some((name?, namespace?))
    }

    /// Returns the microservice's name when it is valid.
    fn microservice<'v>(&mut self, value: &'v Value, path: &str) -> Option<&'v str> {
        let obj = self.object(value, path)?;
        if let Some(id) = self.optional_str(obj, path, "microserviceID") {
            if !id.is_empty() {
                self.push(
                    child(path, "microserviceID"),
                    SlaRule::MustBeEmpty { value: id.into() },
                );
            }
        }
        let name = self.name(obj, path, "microservice_name");
        self.name(obj, path, "microservice_namespace");
        let virt = self.non_empty_str(obj, path, "virtualization");
        self.non_empty_str(obj, path, "code");
        for key in ["memory", "bandwidth_in", "bandwidth_out"] {
            self.optional_uint(obj, path, key, u64::MAX);
        }
        for key in ["vcpus", "vgpus", "vtpus"] {
            self.optional_uint(obj, path, key, u64::from(u32::MAX));
        }
        let storage = self.optional_uint(obj, path, "storage", u64::MAX);
        for key in ["state", "platform", "sla_violation_strategy", "target_node"] {
            self.optional_str(obj, path, key);
        }
        if let Some(port) = self.optional_str(obj, path, "port") {
            if let Err((entry, reason)) = check_port_mapping(port) {
                self.push(child(path, "port"), SlaRule::PortSyntax { entry, reason });
            }
        }
        self.optional_bool(obj, path, "one_shot");
        self.optional_bool(obj, path, "privileged");
        for key in ["cmd", "environment", "args", "added_files", "vm_images"] {
            self.optional_strings(obj, path, key);
        }
        let arch = self.optional_strings(obj, path, "arch");
        if virt == Some(virtualization::UNIKERNEL) && arch.is_none_or(|a| a.is_empty()) {
            // Report only when `arch` is absent or empty, not when it had a wrong type.
            if !self
                .errors
                .iter()
                .any(|e| e.path.starts_with(&child(path, "arch")))
            {
                self.push(
                    child(path, "arch"),
                    SlaRule::RequiredFor {
                        context: "a unikernel",
                    },
                );
            }
        }
        let storage_ok = storage.is_some() || !obj.contains_key("storage");
        if virt == Some(virtualization::CROSVM) && storage_ok {
            let storage = storage.unwrap_or(0);
            if storage < CROSVM_MIN_STORAGE_MB {
                self.push(
                    child(path, "storage"),
                    SlaRule::TooSmall {
                        value: storage,
                        min: CROSVM_MIN_STORAGE_MB,
                        context: "a crosvm VM (root file system, MiB)",
                    },
                );
            }
        }
        if let Some(volumes) = self.optional_array(obj, path, "volumes") {
            for (i, volume) in volumes.iter().enumerate() {
                self.volume(volume, &format!("{path}.volumes[{i}]"));
            }
        }
        if let Some(addresses) = obj.get("addresses") {
            self.addresses(addresses, &child(path, "addresses"));
        }
        if let Some(constraints) = self.optional_array(obj, path, "constraints") {
            for (i, constraint) in constraints.iter().enumerate() {
                self.constraint(constraint, &format!("{path}.constraints[{i}]"));
            }
        }
        if let Some(links) = self.optional_array(obj, path, "connectivity") {
            for (i, link) in links.iter().enumerate() {
                self.connectivity(link, &format!("{path}.connectivity[{i}]"));
            }
        }
        name
    }

    fn volume(&mut self, value: &Value, path: &str) {
        let Some(obj) = self.object(value, path) else {
            return;
        };
        self.non_empty_str(obj, path, "volume_id");
        self.non_empty_str(obj, path, "csi_driver");
        self.optional_str(obj, path, "mount_path");
        if let Some(config) = obj.get("config") {
            self.object(config, &child(path, "config"));
        }
    }

    fn addresses(&mut self, value: &Value, path: &str) {
        let Some(obj) = self.object(value, path) else {
            return;
        };
        if let Some(ip) = self.optional_str(obj, path, "rr_ip") {
            if !is_rr_ip(ip) {
                self.push(
                    child(path, "rr_ip"),
                    SlaRule::NotInNetwork {
                        value: ip.into(),
                        network: RR_IP_NETWORK,
                    },
                );
            }
        }
        if let Some(ip) = self.optional_str(obj, path, "rr_ip_v6") {
            if !is_rr_ip_v6(ip) {
                self.push(
                    child(path, "rr_ip_v6"),
                    SlaRule::NotInNetwork {
                        value: ip.into(),
                        network: RR_IP_V6_NETWORK,
                    },
                );
            }
        }
        if let Some(ip) = self.optional_str(obj, path, "closest_ip") {
            if ip.parse::<Ipv4Addr>().is_err() {
                self.push(
                    child(path, "closest_ip"),
                    SlaRule::InvalidIp {
                        value: ip.into(),
                        family: "IPv4",
                    },
                );
            }
        }
        if let Some(ip) = self.optional_str(obj, path, "closest_ip_v6") {
            if ip.parse::<Ipv6Addr>().is_err() {
                self.push(
                    child(path, "closest_ip_v6"),
                    SlaRule::InvalidIp {
                        value: ip.into(),
                        family: "IPv6",
                    },
                );
            }
        }
        if let Some(ranges) = self.optional_array(obj, path, "instances") {
            for (i, range) in ranges.iter().enumerate() {
                let rpath = format!("{path}.instances[{i}]");
                if let Some(robj) = self.object(range, &rpath) {
                    for key in ["from", "to", "start"] {
                        self.optional_str(robj, &rpath, key);
                    }
                }
            }
        }
    }

    fn constraint(&mut self, value: &Value, path: &str) {
        let Some(obj) = self.object(value, path) else {
            return;
        };
        let kind = self.required_str(obj, path, "type");
        for key in ["area", "cluster", "node"] {
            self.optional_str(obj, path, key);
        }
        let location = self.optional_str(obj, path, "location");
        let threshold = self.optional_number(obj, path, "threshold");
        self.optional_number(obj, path, "rigidness");
        self.optional_uint(obj, path, "convergence_time", u64::MAX);
        self.optional_strings(obj, path, "needs");
        let allowed = self.optional_strings(obj, path, "allowed");
        let Some(kind) = kind else { return };
        match ConstraintKind::parse(kind) {
            None => self.push(
                child(path, "type"),
                SlaRule::UnknownConstraintType { value: kind.into() },
            ),
            Some(ConstraintKind::Direct) => {}
            Some(ConstraintKind::Latency) => self.non_negative(threshold, child(path, "threshold")),
            Some(ConstraintKind::Geo) => {
                match location {
                    Some(loc) if GeoPoint::parse(loc).is_none() => self.push(
                        child(path, "location"),
                        SlaRule::Location { value: loc.into() },
                    ),
                    Some(_) => {}
                    None if !obj.contains_key("location") => self.push(
                        child(path, "location"),
                        SlaRule::RequiredFor {
                            context: "a geo constraint",
                        },
                    ),
                    None => {}
                }
                if !obj.contains_key("threshold") {
                    self.push(
                        child(path, "threshold"),
                        SlaRule::RequiredFor {
                            context: "a geo constraint (km)",
                        },
                    );
                }
                self.non_negative(threshold, child(path, "threshold"));
            }
            Some(ConstraintKind::Addons) => {
                if !obj.contains_key("needs") {
                    self.push(
                        child(path, "needs"),
                        SlaRule::RequiredFor {
                            context: "an addons constraint",
                        },
                    );
                }
            }
            Some(ConstraintKind::Clusters) => match allowed {
                Some([]) => self.push(child(path, "allowed"), SlaRule::Empty),
                Some(_) => {}
                None if !obj.contains_key("allowed") => self.push(
                    child(path, "allowed"),
                    SlaRule::RequiredFor {
                        context: "a clusters constraint",
                    },
                ),
                None => {}
            },
        }
    }

    fn connectivity(&mut self, value: &Value, path: &str) {
        let Some(obj) = self.object(value, path) else {
            return;
        };
        self.required_str(obj, path, "target_microservice_id");
        let Some(items) = self.required_array(obj, path, "con_constraints") else {
            return;
        };
        for (i, item) in items.iter().enumerate() {
            let cpath = format!("{path}.con_constraints[{i}]");
            let Some(cobj) = self.object(item, &cpath) else {
                continue;
            };
            self.required_str(cobj, &cpath, "type");
            for key in ["threshold", "rigidness"] {
                if let Some(v) = self.required(cobj, &cpath, key) {
                    self.number(v, child(&cpath, key));
                }
            }
            if let Some(v) = self.required(cobj, &cpath, "convergence_time") {
                self.uint(v, child(&cpath, "convergence_time"), u64::MAX);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Job derivation (contract §2.6)
// ---------------------------------------------------------------------------------------------

/// `<app_name>.<app_ns>.<service_name>.<service_ns>`.
pub fn job_name(app_name: &str, app_ns: &str, service_name: &str, service_ns: &str) -> String {
    format!("{app_name}.{app_ns}.{service_name}.{service_ns}")
}

/// The job's `virtualization` for an SLA's: `container` becomes `docker`, others are kept.
pub fn job_virtualization(sla_virtualization: &str) -> &str {
    if sla_virtualization == virtualization::CONTAINER {
        virtualization::DOCKER
    } else {
        sla_virtualization
    }
}

/// The job (service) document of one microservice, as the root stores it and sends it down.
///
/// `application_id` is the server-assigned id of `app`, `job_id` the id chosen for this job
/// (it becomes `_id` and `microserviceID`). Every SLA microservice field is carried: the ones
/// workers read as [`Job`] fields, the rest (`code`, `microservice_name`, `addresses`,
/// `connectivity`, …) in [`Job::extra`], together with `next_instance_progressive_number` (0)
/// and `instance_list` ([]). `status` starts empty, as upstream's job has none until scheduled.
pub fn derive_job(application_id: &str, job_id: &str, app: &Application, ms: &Microservice) -> Job {
    let mut extra = Map::new();
    let mut put = |key: &str, value: Value| {
        extra.insert(key.to_owned(), value);
    };
    put("microserviceID", Value::from(job_id));
    put(
        "microservice_name",
        Value::from(ms.microservice_name.as_str()),
    );
    put(
        "microservice_namespace",
        Value::from(ms.microservice_namespace.as_str()),
    );
    put("code", Value::from(ms.code.as_str()));
    put("bandwidth_in", Value::from(ms.bandwidth_in));
    put("bandwidth_out", Value::from(ms.bandwidth_out));
    put("state", Value::from(ms.state.as_str()));
    put("added_files", Value::from(ms.added_files.clone()));
    put(
        "connectivity",
        serde_json::to_value(&ms.connectivity).unwrap_or_default(),
    );
    if !ms.args.is_empty() {
        put("args", Value::from(ms.args.clone()));
    }
    if let Some(addresses) = &ms.addresses {
        put(
            "addresses",
            serde_json::to_value(addresses).unwrap_or_default(),
        );
    }
    if let Some(s) = &ms.sla_violation_strategy {
        put("sla_violation_strategy", Value::from(s.as_str()));
    }
    if let Some(s) = &ms.target_node {
        put("target_node", Value::from(s.as_str()));
    }
    put("next_instance_progressive_number", Value::from(0));
    put("instance_list", Value::Array(Vec::new()));

    let addresses = ms.addresses.as_ref();
    Job {
        id: job_id.to_owned(),
        job_name: job_name(
            &app.application_name,
            &app.application_namespace,
            &ms.microservice_name,
            &ms.microservice_namespace,
        ),
        image: ms.code.clone(),
        cmd: ms.cmd.clone(),
        environment: ms.environment.clone(),
        port: ms.port.clone(),
        virtualization: job_virtualization(&ms.virtualization).to_owned(),
        platform: ms.platform.clone().unwrap_or_default(),
        vcpus: ms.vcpus,
        vgpus: ms.vgpus,
        vtpus: ms.vtpus,
        memory: ms.memory,
        storage: ms.storage,
        vm_images: ms.vm_images.clone(),
        arch: ms.arch.clone(),
        volumes: ms
            .volumes
            .iter()
            .map(|v| serde_json::to_value(v).unwrap_or_default())
            .collect(),
        one_shot: ms.one_shot,
        privileged: ms.privileged,
        status: String::new(),
        status_detail: String::new(),
        application_id: application_id.to_owned(),
        app_name: app.application_name.clone(),
        app_ns: app.application_namespace.clone(),
        service_name: ms.microservice_name.clone(),
        service_ns: ms.microservice_namespace.clone(),
        rr_ip: addresses.and_then(|a| a.rr_ip.clone()),
        rr_ip_v6: addresses.and_then(|a| a.rr_ip_v6.clone()),
        constraints: ms.constraints.clone(),
        extra,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The valid example of contract §2.5.
    fn contract_example() -> Value {
        json!({ "sla_version":"v2.0", "customerID":"Admin",
          "applications":[{ "applicationID":"", "application_name":"clientsrv", "application_namespace":"test",
            "application_desc":"curl client + nginx",
            "microservices":[
              { "microserviceID":"", "microservice_name":"nginx", "microservice_namespace":"test",
                "virtualization":"container", "code":"docker.io/library/nginx:latest",
                "cmd":[], "environment":["MODE=demo"], "memory":100, "vcpus":1, "vgpus":0, "vtpus":0,
                "bandwidth_in":0, "bandwidth_out":0, "storage":0, "state":"", "port":"6080:80/tcp",
                "addresses":{"rr_ip":"10.30.30.30"}, "added_files":[],
                "constraints":[{"type":"direct","cluster":"cluster1","node":"worker-a"}],
                "connectivity":[] } ] } ] })
    }

    fn service_path() -> &'static str {
        "applications[0].microservices[0]"
    }

    /// The example with `f` applied to its first microservice.
    fn with_service(f: impl FnOnce(&mut Map<String, Value>)) -> Value {
        let mut doc = contract_example();
        f(doc["applications"][0]["microservices"][0]
            .as_object_mut()
            .unwrap());
        doc
    }

    fn errors_of(doc: &Value) -> SlaErrors {
        validate_sla(doc).expect_err("the document should be rejected")
    }

    /// Asserts that `doc` is rejected with exactly one violation, at `path`, and returns its rule.
    fn single_error(doc: &Value, path: &str) -> SlaRule {
        let errs = errors_of(doc);
        assert_eq!(
            errs.errors().len(),
            1,
            "expected one error at {path}, got: {errs}"
        );
        assert_eq!(errs.errors()[0].path, path, "{errs}");
        errs.errors()[0].rule.clone()
    }

    fn field(name: &str) -> String {
        format!("{}.{name}", service_path())
    }

    #[test]
    fn contract_example_is_valid_and_typed() {
        let sla = validate_sla(&contract_example()).unwrap();
        assert_eq!(sla.sla_version, "v2.0");
        assert_eq!(sla.customer_id, "Admin");
        let app = &sla.applications[0];
        assert_eq!(app.application_name, "clientsrv");
        let ms = &app.microservices[0];
        assert_eq!(ms.microservice_name, "nginx");
        assert_eq!(ms.virtualization, "container");
        assert_eq!(ms.memory, 100);
        assert_eq!(ms.vcpus, 1);
        assert_eq!(ms.port, "6080:80/tcp");
        assert_eq!(
            ms.addresses.as_ref().unwrap().rr_ip.as_deref(),
            Some("10.30.30.30")
        );
        assert_eq!(ms.constraints[0].kind(), Some(ConstraintKind::Direct));
        assert_eq!(ms.constraints[0].cluster.as_deref(), Some("cluster1"));
        assert_eq!(ms.constraints[0].node.as_deref(), Some("worker-a"));
    }

    #[test]
    fn contract_example_parses_from_bytes_and_round_trips_its_field_names() {
        let bytes = serde_json::to_vec(&contract_example()).unwrap();
        let sla = parse_sla(&bytes).unwrap();
        let back = serde_json::to_value(&sla).unwrap();
        // Re-validating the serialized form gives the same SLA: every name survived.
        assert_eq!(validate_sla(&back).unwrap(), sla);
        let ms = &back["applications"][0]["microservices"][0];
        for key in [
            "microserviceID",
            "microservice_name",
            "microservice_namespace",
            "virtualization",
            "code",
            "memory",
            "vcpus",
            "vgpus",
            "vtpus",
            "bandwidth_in",
            "bandwidth_out",
            "storage",
            "state",
            "port",
            "addresses",
            "added_files",
            "constraints",
            "connectivity",
        ] {
            assert!(ms.get(key).is_some(), "{key} missing after a round trip");
        }
        assert_eq!(back["customerID"], json!("Admin"));
        assert_eq!(back["applications"][0]["applicationID"], json!(""));
    }

    #[test]
    fn documented_fields_outside_the_schema_are_kept() {
        let doc = with_service(|ms| {
            ms.insert("virtualization".into(), json!("unikernel"));
            ms.insert("arch".into(), json!(["amd64", "arm64"]));
            ms.insert("vm_images".into(), json!(["img1"]));
            ms.insert("platform".into(), json!("linux/arm64"));
            ms.insert("one_shot".into(), json!(true));
            ms.insert("privileged".into(), json!(true));
            ms.insert("volumes".into(), json!([{"volume_id": "v1", "csi_driver": "csi.a", "mount_path": "/data", "config": {"size": 1}}]));
            ms.insert("connectivity".into(), json!([{"target_microservice_id": "x", "con_constraints":
                [{"type": "latency", "threshold": 50, "rigidness": 0.9, "convergence_time": 300}]}]));
        });
        let sla = validate_sla(&doc).unwrap();
        let ms = &sla.applications[0].microservices[0];
        assert_eq!(ms.arch, ["amd64", "arm64"]);
        assert_eq!(ms.vm_images, ["img1"]);
        assert_eq!(ms.platform.as_deref(), Some("linux/arm64"));
        assert!(ms.one_shot && ms.privileged);
        assert_eq!(ms.volumes[0].csi_driver, "csi.a");
        assert_eq!(ms.volumes[0].config["size"], json!(1));
        assert_eq!(ms.connectivity[0].con_constraints[0].convergence_time, 300);
        let back = serde_json::to_value(&sla).unwrap();
        assert_eq!(
            back["applications"][0]["microservices"][0]["platform"],
            json!("linux/arm64")
        );
    }

    // --- The flawed examples of contract §2.5 -------------------------------------------------

    #[test]
    fn flawed_missing_sla_version() {
        let mut doc = contract_example();
        doc.as_object_mut().unwrap().remove("sla_version");
        assert_eq!(single_error(&doc, "sla_version"), SlaRule::Missing);
    }

    #[test]
    fn flawed_integer_microservice_name() {
        let doc = with_service(|ms| {
            ms.insert("microservice_name".into(), json!(4));
        });
        assert_eq!(
            single_error(&doc, &field("microservice_name")),
            SlaRule::WrongType {
                expected: "a string",
                found: "a number"
            }
        );
    }

    #[test]
    fn flawed_integer_port() {
        let doc = with_service(|ms| {
            ms.insert("port".into(), json!(80));
        });
        assert_eq!(
            single_error(&doc, &field("port")),
            SlaRule::WrongType {
                expected: "a string",
                found: "a number"
            }
        );
    }

    #[test]
    fn flawed_names_with_dots_or_spaces() {
        for bad in ["Micro A (4)", "nginx.v2", "Example Application", "a b"] {
            let doc = with_service(|ms| {
                ms.insert("microservice_name".into(), json!(bad));
            });
            assert_eq!(
                single_error(&doc, &field("microservice_name")),
                SlaRule::NamePattern { value: bad.into() }
            );
            let mut doc = contract_example();
            doc["applications"][0]["application_name"] = json!(bad);
            assert_eq!(
                single_error(&doc, "applications[0].application_name"),
                SlaRule::NamePattern { value: bad.into() }
            );
        }
    }

    #[test]
    fn flawed_empty_object() {
        let errs = errors_of(&json!({}));
        let paths: Vec<&str> = errs.errors().iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["sla_version", "customerID", "applications"]);
        assert!(errs.errors().iter().all(|e| e.rule == SlaRule::Missing));
        assert_eq!(
            errs.to_string(),
            "invalid SLA: sla_version: is required; customerID: is required; applications: is required"
        );
    }

    #[test]
    fn upstream_flawed_style_document_reports_every_violation() {
        // The shape of upstream's sla_flawed_1: old api_version key, integer ids, bad names.
        let doc = json!({"api_version": "v0.3.0", "customerID": 10000000001u64, "applications": [{
            "applicationID": 1000010001, "application_name": "Example Application",
            "microservices": [{"microserviceID": 4, "microservice_name": "Micro A (4)",
                "virtualization": "container", "code": "x", "port": 80}]}]});
        let errs = errors_of(&doc);
        let s = service_path();
        let expected = [
            "sla_version".to_owned(),
            "customerID".to_owned(),
            "applications[0].applicationID".to_owned(),
            "applications[0].application_name".to_owned(),
            "applications[0].application_namespace".to_owned(),
            format!("{s}.microserviceID"),
            format!("{s}.microservice_name"),
            format!("{s}.microservice_namespace"),
            format!("{s}.port"),
        ];
        let paths: Vec<&str> = errs.errors().iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, expected);
    }

    // --- One test per rule --------------------------------------------------------------------

    #[test]
    fn name_pattern_limits() {
        let long = "a".repeat(31);
        for (name, ok) in [
            ("a", true),
            ("Z9", true),
            (&"a".repeat(30)[..], true),
            ("", false),
            (&long[..], false),
            ("nginx-1", false),
            ("ngïnx", false),
            ("a_b", false),
        ] {
            assert_eq!(is_valid_name(name), ok, "{name:?}");
            let doc = with_service(|ms| {
                ms.insert("microservice_namespace".into(), json!(name));
            });
            assert_eq!(validate_sla(&doc).is_ok(), ok, "{name:?}");
        }
    }

    #[test]
    fn required_fields_are_named_when_missing() {
        for key in [
            "microservice_name",
            "microservice_namespace",
            "virtualization",
            "code",
        ] {
            let doc = with_service(|ms| {
                ms.remove(key);
            });
            assert_eq!(single_error(&doc, &field(key)), SlaRule::Missing, "{key}");
        }
        for key in ["application_name", "application_namespace", "microservices"] {
            let mut doc = contract_example();
            doc["applications"][0].as_object_mut().unwrap().remove(key);
            assert_eq!(
                single_error(&doc, &format!("applications[0].{key}")),
                SlaRule::Missing
            );
        }
    }

    #[test]
    fn empty_virtualization_or_code_is_rejected() {
        for key in ["virtualization", "code"] {
            let doc = with_service(|ms| {
                ms.insert(key.into(), json!(""));
            });
            assert_eq!(single_error(&doc, &field(key)), SlaRule::Empty);
        }
    }

    #[test]
    fn wrong_types_name_the_expected_type() {
        let cases = [
            ("memory", json!("100"), "an integer", "a string"),
            ("vcpus", json!(null), "an integer", "null"),
            ("cmd", json!("ls"), "an array", "a string"),
            ("one_shot", json!("yes"), "a boolean", "a string"),
            ("addresses", json!([]), "an object", "an array"),
            ("constraints", json!({}), "an array", "an object"),
        ];
        for (key, value, expected, found) in cases {
            let doc = with_service(|ms| {
                ms.insert(key.into(), value);
            });
            assert_eq!(
                single_error(&doc, &field(key)),
                SlaRule::WrongType { expected, found },
                "{key}"
            );
        }
        let doc = with_service(|ms| {
            ms.insert("environment".into(), json!(["A=1", 2]));
        });
        assert_eq!(
            single_error(&doc, &field("environment[1]")),
            SlaRule::WrongType {
                expected: "a string",
                found: "a number"
            }
        );
        assert_eq!(
            single_error(&json!([1]), ""),
            SlaRule::WrongType {
                expected: "an object",
                found: "an array"
            }
        );
    }

    #[test]
    fn every_leaf_of_the_example_with_a_wrong_type_is_reported_at_its_path() {
        fn leaves(v: &Value, path: String, out: &mut Vec<(String, Value)>) {
            match v {
                Value::Object(m) => {
                    for (k, c) in m {
                        leaves(
                            c,
                            if path.is_empty() {
                                k.clone()
                            } else {
                                format!("{path}.{k}")
                            },
                            out,
                        )
                    }
                }
                Value::Array(a) if !a.is_empty() => {
                    for (i, c) in a.iter().enumerate() {
                        leaves(c, format!("{path}[{i}]"), out)
                    }
                }
                other => out.push((path, other.clone())),
            }
        }
        fn set(doc: &mut Value, path: &str, value: Value) {
            let ptr: String = path
                .replace("][", "/")
                .replace(['[', '.'], "/")
                .replace(']', "");
            *doc.pointer_mut(&format!("/{ptr}")).unwrap() = value;
        }
        let mut all = Vec::new();
        leaves(&contract_example(), String::new(), &mut all);
        assert!(all.len() > 25);
        for (path, original) in all {
            let wrong = match original {
                Value::String(_) => json!({"x": 1}),
                _ => json!("text"),
            };
            let mut doc = contract_example();
            set(&mut doc, &path, wrong);
            let errs = errors_of(&doc);
            assert!(
                errs.errors().iter().any(|e| e.path == path),
                "no error at {path}: {errs}"
            );
        }
    }

    #[test]
    fn sla_version_rules() {
        let mut doc = contract_example();
        doc["sla_version"] = json!("v1.0");
        let rule = single_error(&doc, "sla_version");
        assert_eq!(
            rule,
            SlaRule::DeprecatedVersion {
                value: "v1.0".into()
            }
        );
        assert!(rule.to_string().contains("deprecated"));
        doc["sla_version"] = json!("v3.0");
        assert_eq!(
            single_error(&doc, "sla_version"),
            SlaRule::UnknownVersion {
                value: "v3.0".into()
            }
        );
        doc["sla_version"] = json!(2);
        assert_eq!(
            single_error(&doc, "sla_version"),
            SlaRule::WrongType {
                expected: "a string",
                found: "a number"
            }
        );
    }

    #[test]
    fn port_syntax() {
        for ok in [
            "",
            "80",
            "80:80",
            "6080:60/tcp",
            "53/udp",
            "1:65535;8080:80/tcp;53:53/udp",
        ] {
            assert_eq!(check_port_mapping(ok), Ok(()), "{ok:?}");
        }
        let bad = [
            ("80;", "", "empty entry"),
            ("80/sctp", "80/sctp", "protocol must be tcp or udp"),
            ("80/TCP", "80/TCP", "protocol must be tcp or udp"),
            ("0", "0", "host port must be a number from 1 to 65535"),
            (
                "65536",
                "65536",
                "host port must be a number from 1 to 65535",
            ),
            ("http", "http", "host port must be a number from 1 to 65535"),
            (" 80", " 80", "host port must be a number from 1 to 65535"),
            ("+80", "+80", "host port must be a number from 1 to 65535"),
            (
                "80:",
                "80:",
                "container port must be a number from 1 to 65535",
            ),
            (
                "80:80:80",
                "80:80:80",
                "container port must be a number from 1 to 65535",
            ),
            (
                "8080:80;x:1",
                "x:1",
                "host port must be a number from 1 to 65535",
            ),
            (":80", ":80", "host port must be a number from 1 to 65535"),
        ];
        for (port, entry, reason) in bad {
            assert_eq!(
                check_port_mapping(port),
                Err((entry.to_owned(), reason)),
                "{port:?}"
            );
            let doc = with_service(|ms| {
                ms.insert("port".into(), json!(port));
            });
            assert_eq!(
                single_error(&doc, &field("port")),
                SlaRule::PortSyntax {
                    entry: entry.into(),
                    reason
                }
            );
        }
    }

    #[test]
    fn microservice_id_must_be_empty() {
        let doc = with_service(|ms| {
            ms.insert("microserviceID".into(), json!("abc"));
        });
        assert_eq!(
            single_error(&doc, &field("microserviceID")),
            SlaRule::MustBeEmpty {
                value: "abc".into()
            }
        );
    }

    #[test]
    fn rr_ip_must_be_in_the_service_network() {
        for (ip, ok) in [
            ("10.30.0.1", true),
            ("10.30.255.255", true),
            ("10.31.0.1", false),
            ("192.168.178.4", false),
            ("10.30.1", false),
            ("fdff:2000::1", false),
        ] {
            assert_eq!(is_rr_ip(ip), ok, "{ip}");
            let doc = with_service(|ms| {
                ms.insert("addresses".into(), json!({"rr_ip": ip}));
            });
            match validate_sla(&doc) {
                Ok(_) => assert!(ok, "{ip} accepted"),
                Err(errs) => {
                    assert!(!ok, "{ip} rejected: {errs}");
                    assert_eq!(
                        errs.at(&field("addresses.rr_ip")),
                        Some(&SlaRule::NotInNetwork {
                            value: ip.into(),
                            network: RR_IP_NETWORK
                        })
                    );
                }
            }
        }
    }

    #[test]
    fn rr_ip_v6_must_be_in_the_service_network() {
        for (ip, ok) in [
            ("fdff:2000::1", true),
            ("fdff:27ff:ffff::1", true),
            ("fdff:2800::1", false),
            ("fdff:1fff::1", false),
            ("fdfe:2000::1", false),
            ("10.30.0.1", false),
        ] {
            assert_eq!(is_rr_ip_v6(ip), ok, "{ip}");
            let doc = with_service(|ms| {
                ms.insert("addresses".into(), json!({"rr_ip_v6": ip}));
            });
            assert_eq!(validate_sla(&doc).is_ok(), ok, "{ip}");
        }
        let doc = with_service(|ms| {
            ms.insert(
                "addresses".into(),
                json!({"closest_ip": "nope", "closest_ip_v6": "1.2.3.4"}),
            );
        });
        let errs = errors_of(&doc);
        assert_eq!(errs.errors().len(), 2, "{errs}");
        assert!(matches!(
            errs.at(&field("addresses.closest_ip")),
            Some(SlaRule::InvalidIp { .. })
        ));
    }

    #[test]
    fn resource_numbers_must_be_non_negative_integers() {
        for key in [
            "memory",
            "vcpus",
            "vgpus",
            "vtpus",
            "bandwidth_in",
            "bandwidth_out",
            "storage",
        ] {
            let doc = with_service(|ms| {
                ms.insert(key.into(), json!(-1));
            });
            assert_eq!(
                single_error(&doc, &field(key)),
                SlaRule::Negative { value: "-1".into() },
                "{key}"
            );
        }
        let doc = with_service(|ms| {
            ms.insert("memory".into(), json!(-0.5));
        });
        assert_eq!(
            single_error(&doc, &field("memory")),
            SlaRule::Negative {
                value: "-0.5".into()
            }
        );
        let doc = with_service(|ms| {
            ms.insert("vcpus".into(), json!(1.5));
        });
        assert_eq!(
            single_error(&doc, &field("vcpus")),
            SlaRule::NotInteger {
                value: "1.5".into()
            }
        );
        let doc = with_service(|ms| {
            ms.insert("vcpus".into(), json!(5_000_000_000u64));
        });
        assert!(matches!(
            single_error(&doc, &field("vcpus")),
            SlaRule::TooLarge { .. }
        ));
        // JSON Schema counts 4096.0 as an integer, and so do we.
        let doc = with_service(|ms| {
            ms.insert("memory".into(), json!(4096.0));
        });
        assert_eq!(
            validate_sla(&doc).unwrap().applications[0].microservices[0].memory,
            4096
        );
    }

    #[test]
    fn constraint_needs_a_known_type() {
        let doc = with_service(|ms| {
            ms.insert("constraints".into(), json!([{"cluster": "c1"}]));
        });
        assert_eq!(
            single_error(&doc, &field("constraints[0].type")),
            SlaRule::Missing
        );
        let doc = with_service(|ms| {
            ms.insert("constraints".into(), json!([{"type": "nearby"}]));
        });
        assert_eq!(
            single_error(&doc, &field("constraints[0].type")),
            SlaRule::UnknownConstraintType {
                value: "nearby".into()
            }
        );
        for kind in ConstraintKind::ALL {
            assert_eq!(ConstraintKind::parse(kind.as_str()), Some(kind));
        }
    }

    #[test]
    fn every_constraint_type_is_accepted_in_its_documented_form() {
        let doc = with_service(|ms| {
            ms.insert("constraints".into(), json!([
                {"type": "direct", "cluster": "c1;c2"},
                {"type": "latency", "area": "munich-1", "threshold": 100, "rigidness": 0.99, "convergence_time": 300},
                {"type": "geo", "location": "48.1,11.6", "threshold": 50.5},
                {"type": "addons", "needs": ["image-builder"]},
                {"type": "clusters", "allowed": ["c1", "c2"]}
            ]));
        });
        let sla = validate_sla(&doc).unwrap();
        let kinds: Vec<_> = sla.applications[0].microservices[0]
            .constraints
            .iter()
            .map(Constraint::kind)
            .collect();
        assert_eq!(kinds, ConstraintKind::ALL.map(Some));
    }

    #[test]
    fn geo_constraint_location_and_threshold() {
        let geo = |c: Value| {
            with_service(|ms| {
                ms.insert("constraints".into(), json!([c]));
            })
        };
        for bad in [
            "48.1",
            "48.1;11.6",
            "91,0",
            "0,181",
            "a,b",
            "NaN,1",
            "48.1,11.6,1000",
            "",
        ] {
            let doc = geo(json!({"type": "geo", "location": bad, "threshold": 10}));
            assert_eq!(
                single_error(&doc, &field("constraints[0].location")),
                SlaRule::Location { value: bad.into() },
                "{bad:?}"
            );
        }
        let doc = geo(json!({"type": "geo", "location": " 48.1 , -11.6 ", "threshold": 10}));
        assert!(validate_sla(&doc).is_ok());
        let doc = geo(json!({"type": "geo", "location": "48.1,11.6", "threshold": "10km"}));
        assert_eq!(
            single_error(&doc, &field("constraints[0].threshold")),
            SlaRule::WrongType {
                expected: "a number",
                found: "a string"
            }
        );
        let doc = geo(json!({"type": "geo", "location": "48.1,11.6"}));
        assert_eq!(
            single_error(&doc, &field("constraints[0].threshold")),
            SlaRule::RequiredFor {
                context: "a geo constraint (km)"
            }
        );
        let doc = geo(json!({"type": "geo", "location": "48.1,11.6", "threshold": -1}));
        assert_eq!(
            single_error(&doc, &field("constraints[0].threshold")),
            SlaRule::Negative { value: "-1".into() }
        );
        let doc = geo(json!({"type": "geo", "threshold": 1}));
        assert_eq!(
            single_error(&doc, &field("constraints[0].location")),
            SlaRule::RequiredFor {
                context: "a geo constraint"
            }
        );
    }

    #[test]
    fn addons_and_clusters_constraints_need_their_lists() {
        let one = |c: Value| {
            with_service(|ms| {
                ms.insert("constraints".into(), json!([c]));
            })
        };
        assert_eq!(
            single_error(
                &one(json!({"type": "addons"})),
                &field("constraints[0].needs")
            ),
            SlaRule::RequiredFor {
                context: "an addons constraint"
            }
        );
        assert_eq!(
            single_error(
                &one(json!({"type": "addons", "needs": "x"})),
                &field("constraints[0].needs")
            ),
            SlaRule::WrongType {
                expected: "an array",
                found: "a string"
            }
        );
        assert_eq!(
            single_error(
                &one(json!({"type": "clusters"})),
                &field("constraints[0].allowed")
            ),
            SlaRule::RequiredFor {
                context: "a clusters constraint"
            }
        );
        assert_eq!(
            single_error(
                &one(json!({"type": "clusters", "allowed": []})),
                &field("constraints[0].allowed")
            ),
            SlaRule::Empty
        );
        assert_eq!(
            single_error(
                &one(json!({"type": "clusters", "allowed": ["a", 1]})),
                &field("constraints[0].allowed[1]")
            ),
            SlaRule::WrongType {
                expected: "a string",
                found: "a number"
            }
        );
    }

    #[test]
    fn duplicate_microservice_names_within_an_application() {
        let mut doc = contract_example();
        let ms = doc["applications"][0]["microservices"][0].clone();
        let mut other = ms.clone();
        other["microservice_name"] = json!("curl");
        let mut dup = ms.clone();
        dup["microservice_namespace"] = json!("other");
        doc["applications"][0]["microservices"] = json!([ms, other, dup]);
        assert_eq!(
            single_error(&doc, "applications[0].microservices[2].microservice_name"),
            SlaRule::Duplicate {
                what: "microservice_name",
                value: "nginx".into(),
                first: "applications[0].microservices[0].microservice_name".into(),
            }
        );
        // The same name in two different applications is fine.
        let mut doc = contract_example();
        let mut app2 = doc["applications"][0].clone();
        app2["application_name"] = json!("other");
        doc["applications"].as_array_mut().unwrap().push(app2);
        assert!(validate_sla(&doc).is_ok());
    }

    #[test]
    fn duplicate_applications_and_empty_application_list() {
        let mut doc = contract_example();
        let app = doc["applications"][0].clone();
        doc["applications"] = json!([app.clone(), app]);
        assert!(matches!(
            single_error(&doc, "applications[1].application_name"),
            SlaRule::Duplicate {
                what: "application",
                ..
            }
        ));
        doc["applications"] = json!([]);
        assert_eq!(single_error(&doc, "applications"), SlaRule::Empty);
    }

    #[test]
    fn invalid_json_reports_line_and_column() {
        let body = b"{\n  \"sla_version\": \"v2.0\",\n  \"customerID\": oops\n}";
        let errs = parse_sla(body).unwrap_err();
        let [err] = errs.errors() else {
            panic!("{errs}")
        };
        assert_eq!(err.path, "");
        let SlaRule::InvalidJson {
            line,
            column,
            message,
        } = &err.rule
        else {
            panic!("{err}")
        };
        assert_eq!((*line, *column), (3, 17));
        assert!(message.contains("expected value"), "{message}");
        assert!(!message.contains("line"), "{message}");
        assert!(err
            .to_string()
            .starts_with("document: invalid JSON at line 3, column 17"));
        assert!(matches!(
            parse_sla(b"").unwrap_err().errors()[0].rule,
            SlaRule::InvalidJson { .. }
        ));
    }

    #[test]
    fn unikernel_needs_arch_and_crosvm_needs_storage() {
        let doc = with_service(|ms| {
            ms.insert("virtualization".into(), json!("unikernel"));
        });
        assert_eq!(
            single_error(&doc, &field("arch")),
            SlaRule::RequiredFor {
                context: "a unikernel"
            }
        );
        let doc = with_service(|ms| {
            ms.insert("virtualization".into(), json!("crosvm"));
            ms.insert("storage".into(), json!(100));
        });
        assert!(matches!(
            single_error(&doc, &field("storage")),
            SlaRule::TooSmall {
                value: 100,
                min: 512,
                ..
            }
        ));
        let doc = with_service(|ms| {
            ms.insert("virtualization".into(), json!("crosvm"));
            ms.insert("storage".into(), json!(1024));
        });
        assert!(validate_sla(&doc).is_ok());
        let doc = with_service(|ms| {
            ms.insert("virtualization".into(), json!("crosvm"));
            ms.insert("storage".into(), json!(-1));
        });
        assert_eq!(
            single_error(&doc, &field("storage")),
            SlaRule::Negative { value: "-1".into() }
        );
    }

    #[test]
    fn volumes_need_an_id_and_a_csi_driver() {
        let doc = with_service(|ms| {
            ms.insert(
                "volumes".into(),
                json!([{"volume_id": "v1", "csi_driver": ""}, {"csi_driver": "x", "config": 1}]),
            );
        });
        let errs = errors_of(&doc);
        assert_eq!(
            errs.at(&field("volumes[0].csi_driver")),
            Some(&SlaRule::Empty)
        );
        assert_eq!(
            errs.at(&field("volumes[1].volume_id")),
            Some(&SlaRule::Missing)
        );
        assert!(matches!(
            errs.at(&field("volumes[1].config")),
            Some(SlaRule::WrongType { .. })
        ));
        assert_eq!(errs.errors().len(), 3);
    }

    #[test]
    fn connectivity_constraints_need_all_four_fields() {
        let doc = with_service(|ms| {
            ms.insert("connectivity".into(), json!([{"target_microservice_id": "2",
                "con_constraints": [{"threshold": 50, "rigidness": 0.9, "convergence_time": 300}]}]));
        });
        assert_eq!(
            single_error(&doc, &field("connectivity[0].con_constraints[0].type")),
            SlaRule::Missing
        );
        let doc = with_service(|ms| {
            ms.insert("connectivity".into(), json!([{"con_constraints": []}]));
        });
        assert_eq!(
            single_error(&doc, &field("connectivity[0].target_microservice_id")),
            SlaRule::Missing
        );
    }

    #[test]
    fn application_ids_are_required_only_when_adding_services() {
        let sla = validate_sla(&contract_example()).unwrap();
        let errs = sla.check_application_ids().unwrap_err();
        assert_eq!(errs.errors()[0].path, "applications[0].applicationID");
        let mut doc = contract_example();
        doc["applications"][0]["applicationID"] = json!("65f0c0ffee");
        assert_eq!(validate_sla(&doc).unwrap().check_application_ids(), Ok(()));
    }

    #[test]
    fn unknown_fields_are_accepted_and_dropped() {
        let doc = with_service(|ms| {
            ms.insert("bandwith_out".into(), json!(8000));
        });
        let sla = validate_sla(&doc).unwrap();
        let back = serde_json::to_value(&sla).unwrap();
        assert!(back["applications"][0]["microservices"][0]
            .get("bandwith_out")
            .is_none());
    }

    #[test]
    fn validation_never_panics_on_truncated_or_odd_input() {
        let bytes = serde_json::to_vec(&contract_example()).unwrap();
        for end in 0..bytes.len() {
            let errs = parse_sla(&bytes[..end]).unwrap_err();
            assert!(
                matches!(errs.errors()[0].rule, SlaRule::InvalidJson { .. }),
                "prefix {end}"
            );
        }
        let odd = [
            json!(null),
            json!(1),
            json!("s"),
            json!([]),
            json!({"applications": [null, 1, [], {}]}),
            json!({"applications": [{"microservices": [null, {"constraints": [null, {"type": 1}]}]}]}),
            json!({"sla_version": {}, "customerID": [], "applications": {}}),
        ];
        for doc in odd {
            let errs = validate_sla(&doc).unwrap_err();
            assert!(!errs.errors().is_empty());
        }
        let deep = "[".repeat(100_000);
        assert!(matches!(
            parse_sla(deep.as_bytes()).unwrap_err().errors()[0].rule,
            SlaRule::InvalidJson { .. }
        ));
    }

    #[test]
    fn geo_points_and_distances() {
        let munich = GeoPoint::parse("48.137,11.575").unwrap();
        let berlin = GeoPoint::parse("52.520,13.405").unwrap();
        let d = munich.distance_km(berlin);
        assert!((d - 504.0).abs() < 2.0, "{d}");
        assert_eq!(munich.distance_km(munich), 0.0);
        assert_eq!(
            GeoPoint::parse_cluster_location("48.1,11.6,1000"),
            Some(GeoPoint {
                lat: 48.1,
                long: 11.6
            })
        );
        assert_eq!(
            GeoPoint::parse_cluster_location("48.1,11.6"),
            Some(GeoPoint {
                lat: 48.1,
                long: 11.6
            })
        );
        assert_eq!(GeoPoint::parse_cluster_location("48.1,11.6,x"), None);
        assert_eq!(GeoPoint::parse("48.1,11.6,1000"), None);
        let antipode = GeoPoint {
            lat: 0.0,
            long: 0.0,
        }
        .distance_km(GeoPoint {
            lat: 0.0,
            long: 180.0,
        });
        assert!((antipode - std::f64::consts::PI * GeoPoint::EARTH_RADIUS_KM).abs() < 1e-6);
    }

    // --- Job derivation -------------------------------------------------------------------------

    #[test]
    fn job_document_of_the_contract_example() {
        let sla = validate_sla(&contract_example()).unwrap();
        let app = &sla.applications[0];
        let job = derive_job("app-1", "job-1", app, &app.microservices[0]);
        assert_eq!(job.job_name, "clientsrv.test.nginx.test");
        assert_eq!(job.id, "job-1");
        assert_eq!(job.virtualization, "docker");
        assert!(job.wants_container());
        assert_eq!(job.image, "docker.io/library/nginx:latest");
        assert_eq!(job.rr_ip.as_deref(), Some("10.30.30.30"));
        assert_eq!(job.rr_ip_v6, None);
        assert_eq!(
            (job.app_name.as_str(), job.app_ns.as_str()),
            ("clientsrv", "test")
        );
        assert_eq!(
            (job.service_name.as_str(), job.service_ns.as_str()),
            ("nginx", "test")
        );
        assert_eq!(job.application_id, "app-1");
        assert_eq!((job.memory, job.vcpus), (100, 1));
        assert_eq!(job.environment, ["MODE=demo"]);
        assert_eq!(job.constraints[0].cluster.as_deref(), Some("cluster1"));

        let doc = serde_json::to_value(&job).unwrap();
        let expected = [
            ("_id", json!("job-1")),
            ("job_name", json!("clientsrv.test.nginx.test")),
            ("applicationID", json!("app-1")),
            ("app_name", json!("clientsrv")),
            ("app_ns", json!("test")),
            ("service_name", json!("nginx")),
            ("service_ns", json!("test")),
            ("microserviceID", json!("job-1")),
            ("microservice_name", json!("nginx")),
            ("microservice_namespace", json!("test")),
            ("image", json!("docker.io/library/nginx:latest")),
            ("code", json!("docker.io/library/nginx:latest")),
            ("virtualization", json!("docker")),
            ("RR_ip", json!("10.30.30.30")),
            ("port", json!("6080:80/tcp")),
            ("next_instance_progressive_number", json!(0)),
            ("instance_list", json!([])),
            ("addresses", json!({"rr_ip": "10.30.30.30"})),
            ("memory", json!(100)),
            ("bandwidth_in", json!(0)),
            ("state", json!("")),
            ("added_files", json!([])),
            ("connectivity", json!([])),
            (
                "constraints",
                json!([{"type": "direct", "cluster": "cluster1", "node": "worker-a"}]),
            ),
        ];
        for (key, value) in expected {
            assert_eq!(doc[key], value, "{key}");
        }
        // The document reads back as the same job (what a cluster or worker receives).
        let back: Job = serde_json::from_value(doc).unwrap();
        assert_eq!(back, job);
    }

    #[test]
    fn job_virtualization_mapping_and_addresses() {
        assert_eq!(job_virtualization("container"), "docker");
        assert_eq!(job_virtualization("unikernel"), "unikernel");
        assert_eq!(job_virtualization("runsc"), "runsc");
        let doc = with_service(|ms| {
            ms.insert("virtualization".into(), json!("unikernel"));
            ms.insert("arch".into(), json!(["amd64"]));
            ms.insert("addresses".into(), json!({"rr_ip_v6": "fdff:2000::5"}));
            ms.insert(
                "volumes".into(),
                json!([{"volume_id": "v", "csi_driver": "csi.a"}]),
            );
        });
        let sla = validate_sla(&doc).unwrap();
        let app = &sla.applications[0];
        let job = derive_job("a", "j", app, &app.microservices[0]);
        assert_eq!(job.virtualization, "unikernel");
        assert_eq!(job.arch, ["amd64"]);
        assert_eq!(job.rr_ip, None);
        assert_eq!(job.rr_ip_v6.as_deref(), Some("fdff:2000::5"));
        assert_eq!(job.volumes[0]["csi_driver"], json!("csi.a"));
        let doc = serde_json::to_value(&job).unwrap();
        assert!(doc.get("RR_ip").is_none());
        assert_eq!(doc["RR_ip_v6"], json!("fdff:2000::5"));
    }

    #[test]
    fn job_constraints_are_read_leniently_from_other_tiers() {
        let job: Job = serde_json::from_value(json!({
        "job_name": "a.b.c.d", "constraints": [
            {"type": "geo", "location": "1,2", "threshold": "10"},
            {"type": "addons", "needs": "image-builder"},
            {"type": "latency", "convergence_time": 300.0}
        ]}))
        .unwrap();
        assert_eq!(job.constraints[0].threshold, Some(10.0));
        assert_eq!(
            job.constraints[1].needs.as_deref(),
            Some(&["image-builder".to_owned()][..])
        );
        assert_eq!(job.constraints[2].convergence_time, Some(300));
        let job: Job = serde_json::from_value(json!({"constraints": null})).unwrap();
        assert!(job.constraints.is_empty());
        // Inside the worker's flattened deploy command too.
        let cmd: crate::worker_protocol::DeployCommand = serde_json::from_value(json!({
            "job_name": "a.b.c.d", "instance_number": 0, "RR_ip": null,
            "constraints": [{"type": "direct", "node": "w1", "threshold": 1}]
        }))
        .unwrap();
        assert_eq!(cmd.job.constraints[0].node.as_deref(), Some("w1"));
        assert_eq!(cmd.job.rr_ip, None);
    }
}
