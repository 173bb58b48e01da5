//! Users, organizations and the roles users hold in each organization (contract §1.2).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{Applied, ApplyError, ApplyResult, RootState};

/// A user. `password` is a salted hash made by `crate::auth::hash_password`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub email: String,
    pub password: String,
    #[serde(default)]
    pub created_at: String,
    /// Other fields a client stored on the user (`PUT /api/user/<name>`).
    #[serde(default)]
    pub extra: Map<String, Value>,
}

/// An organization: `{name, member:[{user_id, roles}]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Organization {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub member: Vec<Member>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    pub user_id: String,
    #[serde(default)]
    pub roles: Vec<String>,
}

/// Fields of a user a client may not overwrite through `UpdateUser`.
const PROTECTED_FIELDS: [&str; 4] = ["_id", "id", "name", "password"];

impl RootState {
    pub fn user_by_id(&self, id: &str) -> Option<&User> {
        self.users.values().find(|u| u.id == id)
    }

    /// The roles of `user_id` in organization `org_id`.
    pub fn roles_of(&self, user_id: &str, org_id: &str) -> Vec<String> {
        self.organizations
            .get(org_id)
            .and_then(|o| o.member.iter().find(|m| m.user_id == user_id))
            .map(|m| m.roles.clone())
            .unwrap_or_default()
    }

    fn set_roles(&mut self, user_id: &str, org_id: &str, roles: Vec<String>) -> Result<(), ApplyError> {
        let org = self
            .organizations
            .get_mut(org_id)
            .ok_or_else(|| ApplyError::NotFound(format!("organization {org_id} does not exist")))?;
        match org.member.iter_mut().find(|m| m.user_id == user_id) {
            Some(m) => m.roles = roles,
            None => org.member.push(Member { user_id: user_id.to_owned(), roles }),
        }
        Ok(())
    }

    pub(super) fn register_user(&mut self, user: User, org_id: &str, roles: Vec<String>) -> ApplyResult {
        if user.name.is_empty() || user.password.is_empty() {
            return Err(ApplyError::Invalid("name and password must not be empty".into()));
        }
        if self.users.contains_key(&user.name) {
            return Err(ApplyError::Conflict(format!("user {:?} already exists", user.name)));
        }
        if !self.organizations.contains_key(org_id) {
            return Err(ApplyError::NotFound(format!("organization {org_id} does not exist")));
        }
        let id = user.id.clone();
        self.set_roles(&id, org_id, roles)?;
        self.users.insert(user.name.clone(), user);
        Ok(Applied::Id(id))
    }

    pub(super) fn update_user(
        &mut self,
        name: &str,
        fields: Map<String, Value>,
        roles: Option<Vec<String>>,
        org_id: &str,
    ) -> ApplyResult {
        let user = self.users.get_mut(name).ok_or_else(|| ApplyError::NotFound(format!("user {name:?} does not exist")))?;
        for (key, value) in fields {
            if PROTECTED_FIELDS.contains(&key.as_str()) || key == "roles" {
                continue;
            }
            match (key.as_str(), &value) {
                ("email", Value::String(s)) => user.email = s.clone(),
                ("created_at", Value::String(s)) => user.created_at = s.clone(),
                _ => {
                    user.extra.insert(key, value);
                }
            }
        }
        let id = user.id.clone();
        if let Some(roles) = roles {
            self.set_roles(&id, org_id, roles)?;
        }
        Ok(Applied::Done)
    }

    pub(super) fn delete_user(&mut self, name: &str) -> ApplyResult {
        let user = self.users.remove(name).ok_or_else(|| ApplyError::NotFound(format!("user {name:?} does not exist")))?;
        for org in self.organizations.values_mut() {
            org.member.retain(|m| m.user_id != user.id);
        }
        Ok(Applied::Done)
    }

    pub(super) fn change_password(&mut self, name: &str, expected_hash: &str, new_hash: String) -> ApplyResult {
        let user = self.users.get_mut(name).ok_or_else(|| ApplyError::NotFound(format!("user {name:?} does not exist")))?;
        if user.password != expected_hash {
            return Err(ApplyError::Conflict("the password changed concurrently; try again".into()));
        }
        user.password = new_hash;
        Ok(Applied::Done)
    }

    fn check_members(&self, member: &[Member]) -> Result<(), ApplyError> {
        for m in member {
            if self.user_by_id(&m.user_id).is_none() {
                return Err(ApplyError::NotFound(format!("member user_id {} does not exist", m.user_id)));
            }
            if let Some(r) = m.roles.iter().find(|r| !super::roles::ALL.contains(&r.as_str())) {
                return Err(ApplyError::Invalid(format!("unknown role {r:?}; expected one of {:?}", super::roles::ALL)));
            }
        }
        Ok(())
    }

    pub(super) fn create_organization(&mut self, org: Organization) -> ApplyResult {
        if org.name.is_empty() {
            return Err(ApplyError::Invalid("name must not be empty".into()));
        }
        if self.organization_by_name(&org.name).is_some() {
            return Err(ApplyError::Conflict(format!("organization {:?} already exists", org.name)));
        }
        self.check_members(&org.member)?;
        let id = org.id.clone();
        self.organizations.insert(id.clone(), org);
        Ok(Applied::Id(id))
    }

    pub(super) fn update_organization(&mut self, id: &str, name: String, member: Vec<Member>) -> ApplyResult {
        if !self.organizations.contains_key(id) {
            return Err(ApplyError::NotFound(format!("organization {id} does not exist")));
        }
        if name.is_empty() {
            return Err(ApplyError::Invalid("name must not be empty".into()));
        }
        if self.organizations.values().any(|o| o.name == name && o.id != id) {
            return Err(ApplyError::Conflict(format!("organization {name:?} already exists")));
        }
        self.check_members(&member)?;
        let org = self.organizations.get_mut(id).expect("checked above");
        org.name = name;
        org.member = member;
        Ok(Applied::Done)
    }

    pub(super) fn delete_organization(&mut self, id: &str) -> ApplyResult {
        let org = self.organizations.get(id).ok_or_else(|| ApplyError::NotFound(format!("organization {id} does not exist")))?;
        if org.name == super::ROOT_ORGANIZATION {
            return Err(ApplyError::Invalid("the root organization cannot be deleted".into()));
        }
        self.organizations.remove(id);
        Ok(Applied::Done)
    }
}
