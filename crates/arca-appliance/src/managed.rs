//! What the admin page changes, kept in the data directory: `users.toml` and `shares.toml`. Once
//! the page has changed one, that file, not the section of the configuration, is the list (the
//! log says so at start): the configuration file may be read-only, managed by a package, or
//! shared between boxes, and the page never rewrites it.
//!
//! Files are written whole, 0600 (users.toml holds password hashes), by
//! [`crate::files::write_atomically`], so a crash leaves the old list or the new one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::config::{ShareConfig, UserConfig};
use crate::error::{Error, Result};

/// The users, as `users.toml` holds them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Users {
    /// By name.
    #[serde(default)]
    pub users: BTreeMap<String, UserConfig>,
}

/// The shares, as `shares.toml` holds them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shares {
    /// By name.
    #[serde(default)]
    pub shares: BTreeMap<String, ShareConfig>,
}

/// `<data_dir>/users.toml`.
pub fn users_file(data_dir: &Path) -> PathBuf {
    data_dir.join("users.toml")
}

/// `<data_dir>/shares.toml`.
pub fn shares_file(data_dir: &Path) -> PathBuf {
    data_dir.join("shares.toml")
}

/// The file's contents, or None if the page never wrote it.
pub fn load<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::config(format!("reading {}: {e}", path.display()))),
    };
    toml::from_str(&text).map(Some).map_err(|e| Error::config(format!("{}: {e}", path.display())))
}

/// What the admin page keeps at `path` ([`users_file`] or [`shares_file`]) for `section` of the
/// configuration, if it has changed it: it then stands for that section, and the log says so.
pub fn overrides<T: DeserializeOwned>(path: &Path, section: &str) -> Result<Option<T>> {
    let found = load(path)?;
    if found.is_some() {
        tracing::info!(
            "{section} from {} (kept by the admin page; [{section}] in the configuration is not used)",
            path.display()
        );
    }
    Ok(found)
}

/// Writes `value` to `path` (0600, atomically).
pub fn save<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = toml::to_string(value).map_err(|e| Error::config(format!("writing {}: {e}", path.display())))?;
    let text = format!("# Kept by the appliance's admin page; it replaces this section of the configuration.\n{text}");
    crate::files::write_atomically(path, text.as_bytes(), 0o600)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_round_trip_and_a_missing_file_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = shares_file(dir.path());
        assert!(load::<Shares>(&path).unwrap().is_none());
        let mut shares = Shares::default();
        shares.shares.insert(
            "docs".into(),
            ShareConfig {
                path: "/srv/docs".into(),
                schedule: Some("0 0 * * * *".into()),
                retention: crate::config::Retention { keep_last: Some(48), ..Default::default() },
                users: vec!["alice".into()],
            },
        );
        save(&path, &shares).unwrap();
        let back: Shares = load(&path).unwrap().unwrap();
        assert_eq!(back.shares["docs"].retention.keep_last, Some(48));
        assert_eq!(back.shares["docs"].users, ["alice"]);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }
}
