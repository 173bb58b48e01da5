//! Applications and the creation of their services.

use grove_core::job::Job;
use serde::{Deserialize, Serialize};

use super::{Applied, ApplyError, ApplyResult, JobRecord, RootState};

/// An application (contract §2.2); `microservices` holds the ids of its services.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppRecord {
    pub id: String,
    pub application_name: String,
    pub application_namespace: String,
    #[serde(default)]
    pub application_desc: String,
    /// The owner's user name (upstream's `userId`).
    pub owner: String,
    pub microservices: Vec<String>,
}

/// One application of an SLA, with ids chosen by the caller and its derived jobs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewApplication {
    pub id: String,
    pub application_name: String,
    pub application_namespace: String,
    pub application_desc: String,
    pub jobs: Vec<Job>,
}

impl RootState {
    /// The application `owner` already has with this name and namespace.
    pub fn application_named(&self, owner: &str, name: &str, namespace: &str) -> Option<&AppRecord> {
        let key = (owner.to_owned(), name.to_owned(), namespace.to_owned());
        self.names.apps.get(&key).and_then(|id| self.applications.get(id))
    }

    /// The applications of `owner`, by id.
    pub fn applications_of<'a>(&'a self, owner: &str) -> impl Iterator<Item = &'a AppRecord> + 'a {
        let ids = self.names.apps_by_owner.get(owner);
        ids.into_iter().flatten().filter_map(|id| self.applications.get(id))
    }

    fn check_new_jobs<'a>(&self, jobs: impl Iterator<Item = &'a Job>) -> Result<(), ApplyError> {
        let mut seen = std::collections::BTreeSet::new();
        for job in jobs {
            if self.jobs.contains_key(&job.id) {
                return Err(ApplyError::Conflict(format!("service id {} already exists", job.id)));
            }
            if !seen.insert(job.job_name.as_str()) || self.job_named(&job.job_name).is_some() {
                return Err(ApplyError::Conflict(format!("service {} already exists", job.job_name)));
            }
        }
        Ok(())
    }

    pub(super) fn create_applications(&mut self, owner: &str, apps: Vec<NewApplication>) -> ApplyResult {
        // Check everything first: nothing is half-created.
        let mut names = std::collections::BTreeSet::new();
        for app in &apps {
            let key = (app.application_name.as_str(), app.application_namespace.as_str());
            if !names.insert(key) || self.application_named(owner, key.0, key.1).is_some() {
                return Err(ApplyError::Conflict(format!(
                    "application {}.{} already exists for user {owner}",
                    app.application_name, app.application_namespace
                )));
            }
            if self.applications.contains_key(&app.id) {
                return Err(ApplyError::Conflict(format!("application id {} already exists", app.id)));
            }
        }
        self.check_new_jobs(apps.iter().flat_map(|a| a.jobs.iter()))?;
        let count = apps.len();
        for app in apps {
            let record = AppRecord {
                id: app.id.clone(),
                application_name: app.application_name,
                application_namespace: app.application_namespace,
                application_desc: app.application_desc,
                owner: owner.to_owned(),
                microservices: app.jobs.iter().map(|j| j.id.clone()).collect(),
            };
            for job in app.jobs {
                self.insert_job(JobRecord::new(job, owner));
            }
            self.names.add_app(&record);
            self.applications.insert(record.id.clone(), record);
        }
        Ok(Applied::Changed(count))
    }

    pub(super) fn update_application(&mut self, id: &str, name: String, namespace: String, desc: String) -> ApplyResult {
        let app = self.applications.get(id).ok_or_else(|| ApplyError::NotFound(format!("application {id} does not exist")))?;
        let owner = app.owner.clone();
        if !grove_core::sla::is_valid_name(&name) || !grove_core::sla::is_valid_name(&namespace) {
            return Err(ApplyError::Invalid(format!(
                "application_name and application_namespace must match {}",
                grove_core::sla::NAME_PATTERN
            )));
        }
        if self.application_named(&owner, &name, &namespace).is_some_and(|a| a.id != id) {
            return Err(ApplyError::Conflict(format!("application {name}.{namespace} already exists for user {owner}")));
        }
        let app = self.applications.get_mut(id).expect("checked above");
        self.names.remove_app(app);
        app.application_name = name;
        app.application_namespace = namespace;
        app.application_desc = desc;
        self.names.add_app(app);
        Ok(Applied::Done)
    }

    pub(super) fn delete_application(&mut self, id: &str) -> ApplyResult {
        let app = self.applications.remove(id).ok_or_else(|| ApplyError::NotFound(format!("application {id} does not exist")))?;
        self.names.remove_app(&app);
        for job_id in &app.microservices {
            self.remove_job(job_id);
        }
        Ok(Applied::Done)
    }

    pub(super) fn add_services(&mut self, owner: &str, app_id: &str, jobs: Vec<Job>) -> ApplyResult {
        match self.applications.get(app_id) {
            Some(app) if app.owner == owner => {}
            _ => return Err(ApplyError::NotFound(format!("application {app_id} not found for user {owner}"))),
        }
        self.check_new_jobs(jobs.iter())?;
        let count = jobs.len();
        let app = self.applications.get_mut(app_id).expect("checked above");
        app.microservices.extend(jobs.iter().map(|j| j.id.clone()));
        for job in jobs {
            self.insert_job(JobRecord::new(job, owner));
        }
        Ok(Applied::Changed(count))
    }
}
