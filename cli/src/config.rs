//! The CLI's configuration file: `$XDG_CONFIG_HOME/grove/config.toml`, else
//! `~/.config/grove/config.toml`, mode 0600 because it holds the session's tokens.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::CliError;

/// Everything the CLI keeps between runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigFile {
    /// Default endpoints when neither `--endpoints` nor `GROVE_ENDPOINTS` is given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<String>,
    /// The session of the last `grove login`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<Session>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub username: String,
    pub organization: String,
    /// Access token (`Authorization: Bearer …`).
    pub token: String,
    /// Refresh token, traded for a new access token on a 401.
    pub refresh_token: String,
}

/// The directory of the configuration file.
pub fn config_dir() -> Option<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(x).join("grove"));
    }
    std::env::var_os("HOME").filter(|v| !v.is_empty()).map(|h| PathBuf::from(h).join(".config").join("grove"))
}

/// Where [`ConfigFile`] lives.
#[derive(Debug, Clone)]
pub struct ConfigStore {
    pub path: PathBuf,
}

impl ConfigStore {
    pub fn default_location() -> Result<Self, CliError> {
        let dir = config_dir().ok_or_else(|| CliError::Usage("neither XDG_CONFIG_HOME nor HOME is set: cannot locate the configuration file".into()))?;
        Ok(ConfigStore { path: dir.join("config.toml") })
    }

    pub fn at(path: impl Into<PathBuf>) -> Self {
        ConfigStore { path: path.into() }
    }

    /// The file's content, or the default when it does not exist.
    pub fn load(&self) -> Result<ConfigFile, CliError> {
        match fs::read_to_string(&self.path) {
            Ok(text) => toml::from_str(&text).map_err(|e| self.err(format!("not a valid configuration file: {e}"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ConfigFile::default()),
            Err(e) => Err(self.err(format!("cannot read: {e}"))),
        }
    }

    /// Write atomically (temp file + rename), readable by the owner only.
    pub fn save(&self, config: &ConfigFile) -> Result<(), CliError> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir).map_err(|e| self.err(format!("cannot create {}: {e}", dir.display())))?;
        let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
        let text = toml::to_string(config).map_err(|e| self.err(format!("cannot encode: {e}")))?;
        let tmp = self.path.with_extension("toml.tmp");
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| self.err(format!("cannot write {}: {e}", tmp.display())))?;
        // `mode` applies only when the file is created: a leftover temp file keeps its bits.
        f.set_permissions(fs::Permissions::from_mode(0o600)).map_err(|e| self.err(format!("cannot restrict permissions: {e}")))?;
        f.write_all(text.as_bytes()).and_then(|_| f.sync_all()).map_err(|e| self.err(format!("cannot write: {e}")))?;
        fs::rename(&tmp, &self.path).map_err(|e| self.err(format!("cannot replace: {e}")))
    }

    /// Load, change, save.
    pub fn update(&self, change: impl FnOnce(&mut ConfigFile)) -> Result<(), CliError> {
        let mut c = self.load()?;
        change(&mut c);
        self.save(&c)
    }

    fn err(&self, detail: String) -> CliError {
        CliError::File { path: self.path.clone(), detail }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_with_mode_0600_and_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = ConfigStore::at(dir.path().join("grove/config.toml"));
        assert_eq!(store.load().unwrap(), ConfigFile::default());
        let config = ConfigFile {
            endpoints: vec!["http://a:10000".into()],
            session: Some(Session { username: "Admin".into(), organization: "root".into(), token: "t".into(), refresh_token: "r".into() }),
        };
        store.save(&config).unwrap();
        let mode = fs::metadata(&store.path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(store.load().unwrap(), config);
        store.update(|c| c.session.as_mut().unwrap().token = "t2".into()).unwrap();
        assert_eq!(store.load().unwrap().session.unwrap().token, "t2");
    }

    #[test]
    fn a_broken_file_names_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        fs::write(&path, "session = 3").unwrap();
        let err = ConfigStore::at(&path).load().unwrap_err().to_string();
        assert!(err.starts_with(&path.display().to_string()), "{err}");
        assert!(err.contains("not a valid configuration file"), "{err}");
    }
}
