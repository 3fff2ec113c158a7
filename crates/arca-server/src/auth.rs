//! Who may do what: bearer tokens, their roles and the repository they are scoped to.
//!
//! Tokens are never stored in clear: a [`TokenStore`] keeps the BLAKE3 hash of each token and
//! compares hashes in constant time. The only implementation for now is [`FileTokenStore`], a TOML
//! file; a database will implement the same trait.
//!
//! ```toml
//! [[token]]
//! hash = "<64 hex digits: BLAKE3 of the token>"
//! repo = "acme"
//! role = "device"
//!
//! [[token]]
//! hash = "..."
//! role = "admin"
//! ```

use std::path::Path;

use serde::Deserialize;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A backup client: reads its repository and adds objects, never deletes (except its own locks)
    /// or overwrites.
    Device,
    /// Everything, in every repository.
    Admin,
}

/// What a valid token grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The role.
    pub role: Role,
    /// The repository a device token is scoped to (admins: `None`, every repository).
    pub repo: Option<String>,
}

impl Grant {
    /// Whether this grant reaches repository `repo`.
    pub fn covers(&self, repo: &str) -> bool {
        self.role == Role::Admin || self.repo.as_deref() == Some(repo)
    }
}

/// Looks tokens up. Implementations must compare in constant time and keep only hashes.
pub trait TokenStore: Send + Sync {
    /// The grant of `token`, or `None` if the token is unknown or revoked.
    fn lookup(&self, token: &str) -> Option<Grant>;
}

/// The hash under which a token is stored: 64 lowercase hex digits of BLAKE3(token).
pub fn hash_token(token: &str) -> String {
    blake3::hash(token.as_bytes()).to_hex().to_string()
}

/// A new random token: 64 hex digits (256 bits from the operating system's generator).
pub fn new_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Tokens from a TOML file (see the module documentation).
#[derive(Debug, Default)]
pub struct FileTokenStore {
    entries: Vec<(blake3::Hash, Grant)>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    #[serde(default)]
    token: Vec<TokenEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    hash: String,
    repo: Option<String>,
    role: Role,
}

impl FileTokenStore {
    /// Reads a token file.
    pub fn load(path: &Path) -> Result<FileTokenStore, String> {
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("reading the token file {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("token file {}: {e}", path.display()))
    }

    /// Parses the TOML text of a token file.
    pub fn parse(text: &str) -> Result<FileTokenStore, String> {
        let file: TokenFile = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut entries = Vec::with_capacity(file.token.len());
        for (i, t) in file.token.into_iter().enumerate() {
            let n = i + 1;
            if t.hash.len() != 64 {
                return Err(format!("token {n}: `hash` must be 64 hex digits (BLAKE3 of the token)"));
            }
            let hash = blake3::Hash::from_hex(&t.hash)
                .map_err(|_| format!("token {n}: `hash` must be 64 hex digits (BLAKE3 of the token)"))?;
            match (&t.role, &t.repo) {
                (Role::Device, None) => return Err(format!("token {n}: a device token needs `repo`")),
                (_, Some(r)) if !valid_repo_name(r) => {
                    return Err(format!("token {n}: invalid repository name {r:?} (use [a-z0-9-], 1 to 64)"))
                }
                _ => {}
            }
            let repo = if t.role == Role::Admin { None } else { t.repo };
            entries.push((hash, Grant { role: t.role, repo }));
        }
        Ok(FileTokenStore { entries })
    }
}

impl TokenStore for FileTokenStore {
    fn lookup(&self, token: &str) -> Option<Grant> {
        let hash = blake3::hash(token.as_bytes());
        // blake3::Hash compares in constant time; every entry is compared, so the time taken does
        // not depend on which one (if any) matches.
        let mut found = None;
        for (h, grant) in &self.entries {
            if *h == hash && found.is_none() {
                found = Some(grant.clone());
            }
        }
        found
    }
}

/// Repository names: 1 to 64 characters of `[a-z0-9-]`.
pub fn valid_repo_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_lowercase() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_lookup() {
        let text = format!(
            "[[token]]\nhash = \"{}\"\nrepo = \"acme\"\nrole = \"device\"\n\n[[token]]\nhash = \"{}\"\nrole = \"admin\"\n",
            hash_token("dev"),
            hash_token("adm")
        );
        let store = FileTokenStore::parse(&text).unwrap();
        assert_eq!(store.lookup("dev"), Some(Grant { role: Role::Device, repo: Some("acme".into()) }));
        assert_eq!(store.lookup("adm").unwrap().role, Role::Admin);
        assert!(store.lookup("adm").unwrap().covers("other"));
        assert!(!store.lookup("dev").unwrap().covers("other"));
        assert_eq!(store.lookup("nope"), None);
    }

    #[test]
    fn bad_files_are_refused() {
        assert!(FileTokenStore::parse("[[token]]\nhash = \"ab\"\nrole = \"admin\"\n").is_err());
        let h = hash_token("x");
        assert!(FileTokenStore::parse(&format!("[[token]]\nhash = \"{h}\"\nrole = \"device\"\n")).is_err());
        assert!(
            FileTokenStore::parse(&format!("[[token]]\nhash = \"{h}\"\nrepo = \"../x\"\nrole = \"device\"\n")).is_err()
        );
        assert!(FileTokenStore::parse(&format!("[[token]]\nhash = \"{h}\"\nrole = \"root\"\n")).is_err());
    }

    #[test]
    fn repo_names() {
        assert!(valid_repo_name("acme-1"));
        for bad in ["", "A", "a/b", "..", "a_b", &"a".repeat(65)] {
            assert!(!valid_repo_name(bad), "{bad}");
        }
    }
}
