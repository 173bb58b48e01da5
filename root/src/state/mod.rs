//! The root's replicated state machine: everything the System Manager kept in MongoDB, applied
//! in the same order on every replica.
//!
//! [`RootState::apply`] is pure: ids, timestamps, password hashes and the signing key are made
//! by the caller and carried in the [`RootCommand`]. A command either applies whole or not at
//! all (for example an SLA with two applications, one of which already exists, creates
//! neither), and answers [`ApplyError`] when it does not.

mod applications;
mod clusters;
mod jobs;
mod users;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

pub use applications::{AppRecord, NewApplication};
pub use clusters::{ClusterAggregate, ClusterRecord, InstanceReport};
pub use jobs::{Decision, Dispatch, InstanceRecord, JobRecord, StatusChange, MAX_STATUS_HISTORY};
pub use users::{Member, Organization, User};

/// Role names (contract §1.2).
pub mod roles {
    pub const ADMIN: &str = "Admin";
    pub const ORGANIZATION_ADMIN: &str = "Organization_Admin";
    pub const APPLICATION_PROVIDER: &str = "Application_Provider";
    pub const INFRASTRUCTURE_PROVIDER: &str = "Infrastructure_Provider";
    pub const ALL: [&str; 4] = [ADMIN, ORGANIZATION_ADMIN, APPLICATION_PROVIDER, INFRASTRUCTURE_PROVIDER];
}

/// The default organization and user created at first start.
pub const ROOT_ORGANIZATION: &str = "root";
pub const DEFAULT_ADMIN: &str = "Admin";

/// The whole replicated root state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RootState {
    /// Users by name (names are unique).
    pub users: BTreeMap<String, User>,
    /// Organizations by id.
    pub organizations: BTreeMap<String, Organization>,
    /// Applications by id.
    pub applications: BTreeMap<String, AppRecord>,
    /// Services (jobs) by id.
    pub jobs: BTreeMap<String, JobRecord>,
    /// Registered clusters by id.
    pub clusters: BTreeMap<String, ClusterRecord>,
    /// Undeploys the dispatcher still has to deliver: instances removed from a job (or moved
    /// off a lost cluster) whose cluster has not acknowledged the undeploy.
    pub pending_undeploys: Vec<Dispatch>,
    /// The RS256 signing key (PKCS#1 PEM), set once.
    pub signing_key: Option<String>,
    /// The default admin and organization were created (never again, even if deleted).
    pub bootstrapped: bool,
    /// Commands applied, to compare replicas cheaply.
    pub applied_commands: u64,
    /// Lookups by name, derived from the records above: not in snapshots, rebuilt on restore.
    #[serde(skip)]
    names: NameIndex,
}

/// The name lookups that the API and the uniqueness checks of every create need, so that
/// neither scans every application or service (a create's apply cost must not grow with the
/// number of services stored). Kept by the few functions that add, rename or remove records.
#[derive(Debug, Clone, Default, PartialEq)]
struct NameIndex {
    /// (owner, application_name, application_namespace) → application id.
    apps: HashMap<(String, String, String), String>,
    /// Owner → the ids of their applications.
    apps_by_owner: HashMap<String, BTreeSet<String>>,
    /// `job_name` → service id.
    jobs: HashMap<String, String>,
}

impl NameIndex {
    fn build(state: &RootState) -> NameIndex {
        let mut index = NameIndex::default();
        for app in state.applications.values() {
            index.add_app(app);
        }
        for job in state.jobs.values() {
            index.jobs.insert(job.job.job_name.clone(), job.job.id.clone());
        }
        index
    }

    fn app_key(app: &AppRecord) -> (String, String, String) {
        (app.owner.clone(), app.application_name.clone(), app.application_namespace.clone())
    }

    fn add_app(&mut self, app: &AppRecord) {
        self.apps.insert(Self::app_key(app), app.id.clone());
        self.apps_by_owner.entry(app.owner.clone()).or_default().insert(app.id.clone());
    }

    fn remove_app(&mut self, app: &AppRecord) {
        self.apps.remove(&Self::app_key(app));
        if let Some(ids) = self.apps_by_owner.get_mut(&app.owner) {
            ids.remove(&app.id);
            if ids.is_empty() {
                self.apps_by_owner.remove(&app.owner);
            }
        }
    }
}

/// A state change. Every value that is not a pure function of the state is in the command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum RootCommand {
    /// Create the `root` organization and the `Admin` user with every role, once.
    Bootstrap { org_id: String, user_id: String, password_hash: String, at_ms: u64 },
    /// Store the signing key unless one is already stored; answers the stored key.
    SetSigningKeyIfAbsent { private_pem: String },
    RegisterUser { user: User, org_id: String, roles: Vec<String> },
    /// Overwrite the given user fields; `roles` (when present) replace the user's roles in
    /// `org_id`.
    UpdateUser { name: String, fields: serde_json::Map<String, serde_json::Value>, roles: Option<Vec<String>>, org_id: String },
    DeleteUser { name: String },
    /// Set a new password hash if the current one is still `expected_hash`.
    ChangePassword { name: String, expected_hash: String, new_hash: String },
    CreateOrganization { org: Organization },
    UpdateOrganization { id: String, name: String, member: Vec<Member> },
    DeleteOrganization { id: String },
    /// Create every application of an SLA with its services, or nothing.
    CreateApplications { owner: String, apps: Vec<NewApplication> },
    UpdateApplication { id: String, name: String, namespace: String, desc: String },
    DeleteApplication { id: String },
    /// Register services (`POST /api/service/`) on an existing application of `owner`.
    AddServices { owner: String, app_id: String, jobs: Vec<grove_core::job::Job> },
    DeleteService { id: String },
    /// Scale up by one instance, in `REQUESTED`.
    ///
    /// `owner`: apply only if the service belongs to this user, else `NotFound` as if it did
    /// not exist (`None`: any service, for an Admin). The API checks visibility in the same
    /// step as the change, with no read round before it.
    RequestInstance {
        job_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        owner: Option<String>,
        at_ms: u64,
    },
    /// Scale down: remove instance `instance_number`, or every instance for `-1` (`owner` as
    /// for `RequestInstance`).
    RemoveInstances {
        job_id: String,
        instance_number: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        owner: Option<String>,
        at_ms: u64,
    },
    /// The scheduler placed an instance (only if it is still waiting for a placement).
    PlaceInstance { job_id: String, instance_number: u32, cluster_id: String, at_ms: u64 },
    /// The scheduler found no cluster: a negative status and why.
    FailPlacement { job_id: String, instance_number: u32, status: String, detail: String, at_ms: u64 },
    /// A cluster registered (upsert by name: a returning cluster keeps its id).
    RegisterCluster { id: String, name: String, location: String, ip: String, port: String, endpoints: Vec<String>, at_ms: u64 },
    /// A cluster's aggregate resources (from its periodic full report).
    ReportCluster { id: String, aggregate: ClusterAggregate, at_ms: u64 },
    /// A report from a cluster tier's stream: its aggregate (when sent), the instance statuses
    /// it changed (or, when `full`, every instance it holds). Instances the root does not place
    /// on that cluster are queued for undeploy; with `full`, acknowledged instances it no
    /// longer lists are dispatched again.
    ReportFromCluster { id: String, aggregate: Option<ClusterAggregate>, instances: Vec<InstanceReport>, full: bool, at_ms: u64 },
    /// The root leader heard nothing from a cluster since `last_report_ms` for too long: it
    /// becomes inactive and its instances wait for a new placement (their old copies are
    /// undeployed when it returns). Ignored when a report arrived meanwhile.
    MarkClusterLost { id: String, last_report_ms: u64, at_ms: u64 },
    /// Clusters acknowledged these deploys (each ignored if the instance moved meanwhile) and
    /// undeploys: one entry for a batch of the dispatcher's answers.
    Acknowledge { deploys: Vec<Dispatch>, undeploys: Vec<Dispatch> },
    /// One pass of the root scheduler: each decision applies on its own (one whose instance
    /// was placed or removed meanwhile is skipped); answers how many applied.
    Schedule { decisions: Vec<Decision>, at_ms: u64 },
}

/// What a successful command returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Applied {
    Done,
    /// A created or existing id (cluster registration, organization).
    Id(String),
    /// The stored signing key.
    SigningKey(String),
    /// The number of a new instance.
    Instance(u32),
    /// Number of records changed (0 = nothing to do).
    Changed(usize),
}

/// Why a command did not apply (identically on every replica).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum ApplyError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
}

pub type ApplyResult = Result<Applied, ApplyError>;

impl grove_raft::StateMachine for RootState {
    type Command = RootCommand;
    type Response = ApplyResult;

    fn apply(&mut self, command: RootCommand) -> ApplyResult {
        self.applied_commands += 1;
        use RootCommand::*;
        match command {
            Bootstrap { org_id, user_id, password_hash, at_ms } => self.bootstrap(org_id, user_id, password_hash, at_ms),
            SetSigningKeyIfAbsent { private_pem } => {
                let key = self.signing_key.get_or_insert(private_pem);
                Ok(Applied::SigningKey(key.clone()))
            }
            RegisterUser { user, org_id, roles } => self.register_user(user, &org_id, roles),
            UpdateUser { name, fields, roles, org_id } => self.update_user(&name, fields, roles, &org_id),
            DeleteUser { name } => self.delete_user(&name),
            ChangePassword { name, expected_hash, new_hash } => self.change_password(&name, &expected_hash, new_hash),
            CreateOrganization { org } => self.create_organization(org),
            UpdateOrganization { id, name, member } => self.update_organization(&id, name, member),
            DeleteOrganization { id } => self.delete_organization(&id),
            CreateApplications { owner, apps } => self.create_applications(&owner, apps),
            UpdateApplication { id, name, namespace, desc } => self.update_application(&id, name, namespace, desc),
            DeleteApplication { id } => self.delete_application(&id),
            AddServices { owner, app_id, jobs } => self.add_services(&owner, &app_id, jobs),
            DeleteService { id } => self.delete_service(&id),
            RequestInstance { job_id, owner, at_ms } => {
                self.check_job_owner(&job_id, owner.as_deref())?;
                self.request_instance(&job_id, at_ms)
            }
            RemoveInstances { job_id, instance_number, owner, at_ms } => {
                self.check_job_owner(&job_id, owner.as_deref())?;
                self.remove_instances(&job_id, instance_number, at_ms)
            }
            PlaceInstance { job_id, instance_number, cluster_id, at_ms } => {
                self.place_instance(&job_id, instance_number, &cluster_id, at_ms)
            }
            FailPlacement { job_id, instance_number, status, detail, at_ms } => {
                self.fail_placement(&job_id, instance_number, status, detail, at_ms)
            }
            RegisterCluster { id, name, location, ip, port, endpoints, at_ms } => {
                self.register_cluster(id, name, location, ip, port, endpoints, at_ms)
            }
            ReportCluster { id, aggregate, at_ms } => self.report_cluster(&id, aggregate, at_ms),
            ReportFromCluster { id, aggregate, instances, full, at_ms } => self.report_from_cluster(&id, aggregate, instances, full, at_ms),
            MarkClusterLost { id, last_report_ms, at_ms } => self.mark_cluster_lost(&id, last_report_ms, at_ms),
            Acknowledge { deploys, undeploys } => Ok(Applied::Changed(self.acknowledge(&deploys, &undeploys))),
            Schedule { decisions, at_ms } => Ok(Applied::Changed(self.schedule(decisions, at_ms))),
        }
    }

    fn snapshot(&self) -> Result<Vec<u8>, String> {
        serde_json::to_vec(self).map_err(|e| e.to_string())
    }

    fn restore(bytes: &[u8]) -> Result<Self, String> {
        let mut state: RootState = serde_json::from_slice(bytes).map_err(|e| format!("root state snapshot: {e}"))?;
        state.names = NameIndex::build(&state);
        Ok(state)
    }
}

impl RootState {
    fn bootstrap(&mut self, org_id: String, user_id: String, password_hash: String, at_ms: u64) -> ApplyResult {
        if self.bootstrapped {
            return Ok(Applied::Changed(0));
        }
        self.bootstrapped = true;
        let org_id = match self.organization_by_name(ROOT_ORGANIZATION) {
            Some(org) => org.id.clone(),
            None => {
                self.organizations.insert(
                    org_id.clone(),
                    Organization { id: org_id.clone(), name: ROOT_ORGANIZATION.into(), member: Vec::new() },
                );
                org_id
            }
        };
        if !self.users.contains_key(DEFAULT_ADMIN) {
            let user = User {
                id: user_id,
                name: DEFAULT_ADMIN.into(),
                email: String::new(),
                password: password_hash,
                created_at: at_ms.to_string(),
                extra: Default::default(),
            };
            let all = roles::ALL.iter().map(|r| r.to_string()).collect();
            self.register_user(user, &org_id, all)?;
        }
        Ok(Applied::Changed(1))
    }

    pub fn organization_by_name(&self, name: &str) -> Option<&Organization> {
        self.organizations.values().find(|o| o.name == name)
    }
}

#[cfg(test)]
mod tests;
