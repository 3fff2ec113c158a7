//! What the admin page changes, kept in the data directory: `users.toml` and `shares.toml`. Once
//! the page has changed one, that file, not the section of the configuration, is the list (the
//! log says so at start): the configuration file may be read-only, managed by a package, or
//! shared between boxes, and the page never rewrites it.
//!
//! Files are written whole, 0600 (users.toml holds password hashes), through a temporary file
//! that is synced and renamed, so a crash leaves the old list or the new one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::config::{ShareConfig, UserConfig};
use crate::error::{Error, ErrorKind, Result};

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

/// Writes `value` to `path` (0600, atomically).
pub fn save<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let text = toml::to_string(value).map_err(|e| Error::config(format!("writing {}: {e}", path.display())))?;
    let tmp = path.with_extension("toml.tmp");
    let io = |e: std::io::Error| Error::new(ErrorKind::Io, format!("writing {}: {e}", path.display()));
    let mut f =
        std::fs::OpenOptions::new().create(true).truncate(true).write(true).mode(0o600).open(&tmp).map_err(io)?;
    f.write_all(b"# Kept by the appliance's admin page; it replaces this section of the configuration.\n")
        .and_then(|_| f.write_all(text.as_bytes()))
        .and_then(|_| f.sync_all())
        .map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
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
