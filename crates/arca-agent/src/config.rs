//! The agent's configuration file (`/etc/arca/agent.toml`): where its server is, its device
//! token, its repository and the customer's repository password. Root-only (0600): it holds
//! both credentials.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The default configuration file.
pub const DEFAULT_PATH: &str = "/etc/arca/agent.toml";
/// The default state directory.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/arca-agent";

/// The contents of `agent.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentFile {
    /// The server's base URL (`https://backup.example.net`).
    pub server: String,
    /// The device token the enrolment returned.
    pub token: String,
    /// The repository's name on the server.
    pub repository: String,
    /// The repository password (the customer's; never sent to the server).
    pub password: String,
    /// Whether the plan's pre/post and dump commands may run here. Off unless the machine's
    /// owner allowed it at enrolment: with it, whoever may edit the tenant's plans can run
    /// commands as root on this machine.
    #[serde(default)]
    pub allow_plan_commands: bool,
    /// Where the agent keeps its state (last runs, the cached plan).
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// A PEM file of a certificate authority to trust for the server (its own CA).
    #[serde(default)]
    pub ca_cert: Option<PathBuf>,
}

fn default_state_dir() -> PathBuf {
    PathBuf::from(DEFAULT_STATE_DIR)
}

impl AgentFile {
    /// The repository's URL on the server (`…/v1/repos/NAME`).
    pub fn repository_url(&self) -> String {
        format!("{}/v1/repos/{}", self.server.trim_end_matches('/'), self.repository)
    }

    /// Reads `path`; a file others may read is refused (it holds the token and the password).
    pub fn load(path: &Path) -> Result<AgentFile> {
        use std::os::unix::fs::PermissionsExt;
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::Config(format!(
                "reading {}: {e} (enrol this machine first: arca agent enroll --server URL --code CODE)",
                path.display()
            ))
        })?;
        let mode = std::fs::metadata(path)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(Error::Config(format!(
                "{} may be read by others (mode {:o}); it holds the device token and the repository password: \
                 chmod 600 it",
                path.display(),
                mode & 0o777
            )));
        }
        toml::from_str(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
    }

    /// Writes `path` atomically, readable by its owner only.
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = toml::to_string(self).map_err(|e| Error::Config(e.to_string()))?;
        write_private(path, text.as_bytes())
    }
}

/// Writes `bytes` to `path` through a temporary file in the same directory (mode 0600, synced,
/// renamed over): a crash leaves the old file or the new one, never half of one.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let io = |e| Error::io(format!("writing {}", path.display()), e);
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io)?;
    let tmp = dir.join(format!(".{}.tmp", path.file_name().and_then(|n| n.to_str()).unwrap_or("agent")));
    let mut f =
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp).map_err(io)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_is_private_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        let f = AgentFile {
            server: "https://b.example/".into(),
            token: "arca_x".into(),
            repository: "acme-web".into(),
            password: "secret".into(),
            allow_plan_commands: false,
            state_dir: dir.path().join("state"),
            ca_cert: None,
        };
        f.save(&path).unwrap();
        assert_eq!(AgentFile::load(&path).unwrap(), f);
        assert_eq!(f.repository_url(), "https://b.example/v1/repos/acme-web");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(AgentFile::load(&path).unwrap_err().to_string().contains("chmod 600"));
    }
}
