//! Share users: Argon2id password hashes from the configuration, checked on every request.
//!
//! Argon2id costs tens of milliseconds by design, and WebDAV clients send the password with every
//! request, so a successful check is remembered for [`CACHE_FOR`]. The cache keys are keyed BLAKE3
//! hashes of user and password under a per-process random key, so it holds no passwords. At most
//! [`PARALLEL_CHECKS`] checks run at once, so a flood of wrong passwords cannot take all memory.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// How long a successful check is trusted.
pub const CACHE_FOR: Duration = Duration::from_secs(300);
/// Argon2 checks allowed at the same time.
pub const PARALLEL_CHECKS: usize = 2;

/// Hashes `password` with Argon2id (the crate's defaults: 19 MiB, 2 passes) into a PHC string for
/// the configuration's `password_hash`.
pub fn hash_password(password: &str) -> Result<String> {
    use argon2::password_hash::PasswordHasher;
    if password.chars().count() < 8 {
        return Err(Error::config("a share password needs at least 8 characters"));
    }
    argon2::Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| Error::config(format!("cannot hash the password: {e}")))
}

/// The NT hash of `password` (MD4 of its UTF-16LE form, upper-case hex) for `nt_hash` in the
/// configuration: what Samba checks when a user signs in over SMB. NTLM needs exactly this hash,
/// so it is a password equivalent for SMB: keep the configuration file readable by root only.
pub fn nt_hash(password: &str) -> Result<String> {
    use md4::Digest;
    if password.chars().count() < 8 {
        return Err(Error::config("a share password needs at least 8 characters"));
    }
    let utf16: Vec<u8> = password.encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
    Ok(hex::encode_upper(md4::Md4::digest(&utf16)))
}

/// Whether `s` looks like an NT hash (32 hexadecimal digits).
pub fn is_nt_hash(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The configured users and the cache of recent successful checks.
pub struct Users {
    /// Replaced whole when the admin page changes a user.
    hashes: std::sync::RwLock<BTreeMap<String, String>>,
    dummy_hash: String,
    cache_key: [u8; 32],
    verified: Mutex<HashMap<[u8; 32], Instant>>,
    checks: tokio::sync::Semaphore,
}

impl Users {
    /// Users from `name → PHC hash`.
    pub fn new(hashes: BTreeMap<String, String>) -> Users {
        use argon2::password_hash::PasswordHasher;
        let random: [u8; 16] = rand::random();
        // Hashing cannot fail for a 16-byte input with the default parameters; an empty dummy
        // would only make unknown names answer faster.
        let dummy_hash = argon2::Argon2::default().hash_password(&random).map(|h| h.to_string()).unwrap_or_default();
        Users {
            hashes: std::sync::RwLock::new(hashes),
            dummy_hash,
            cache_key: rand::random(),
            verified: Mutex::new(HashMap::new()),
            checks: tokio::sync::Semaphore::new(PARALLEL_CHECKS),
        }
    }

    /// Replaces every user's hash (the admin page added, changed or removed one). Remembered
    /// successful checks are forgotten, so an old password stops working at once.
    pub fn replace(&self, hashes: BTreeMap<String, String>) {
        *self.hashes.write().unwrap_or_else(|p| p.into_inner()) = hashes;
        self.verified.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    fn cache_id(&self, user: &str, password: &str) -> [u8; 32] {
        let mut h = blake3::Hasher::new_keyed(&self.cache_key);
        h.update(&(user.len() as u64).to_le_bytes());
        h.update(user.as_bytes());
        h.update(password.as_bytes());
        *h.finalize().as_bytes()
    }

    /// Whether `password` is `user`'s. Unknown users cost the same as known ones (a check against
    /// a dummy hash), so timing does not tell which names exist.
    pub async fn verify(&self, user: &str, password: &str) -> bool {
        let id = self.cache_id(user, password);
        {
            let mut cache = self.verified.lock().unwrap_or_else(|p| p.into_inner());
            match cache.get(&id) {
                Some(t) if t.elapsed() < CACHE_FOR => return true,
                Some(_) => {
                    cache.remove(&id);
                }
                None => {}
            }
        }
        let Ok(_permit) = self.checks.acquire().await else { return false };
        let known = self.hashes.read().unwrap_or_else(|p| p.into_inner()).get(user).cloned();
        let phc = known.clone().unwrap_or_else(|| self.dummy_hash.clone());
        let password = password.to_string();
        let ok = tokio::task::spawn_blocking(move || {
            use argon2::password_hash::PasswordVerifier;
            argon2::Argon2::default().verify_password(password.as_bytes(), phc.as_str()).is_ok()
        })
        .await
        .unwrap_or(false)
            && known.is_some();
        if ok {
            let mut cache = self.verified.lock().unwrap_or_else(|p| p.into_inner());
            cache.retain(|_, t| t.elapsed() < CACHE_FOR);
            cache.insert(id, Instant::now());
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn right_password_passes_wrong_ones_and_strangers_do_not() {
        let hash = hash_password("open sesame").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        let users = Users::new([("alice".to_string(), hash)].into());
        assert!(users.verify("alice", "open sesame").await);
        assert!(users.verify("alice", "open sesame").await, "cached");
        assert!(!users.verify("alice", "open sesame!").await);
        assert!(!users.verify("bob", "open sesame").await);
        assert!(!users.verify("alic", "eopen sesame").await);
        assert!(hash_password("short").is_err());
        // A changed password works at once and the old one stops, cached or not.
        users.replace([("alice".to_string(), hash_password("new sesame!").unwrap())].into());
        assert!(!users.verify("alice", "open sesame").await);
        assert!(users.verify("alice", "new sesame!").await);
    }

    #[test]
    fn nt_hashes_are_what_windows_computes() {
        // The NT hash of "password", as published with MS-NLMP's test vectors and by Samba.
        assert_eq!(nt_hash("password").unwrap(), "8846F7EAEE8FB117AD06BDD830B7586C");
        assert!(is_nt_hash(&nt_hash("open sesame").unwrap()));
        assert!(!is_nt_hash("8846F7EAEE8FB117AD06BDD830B7586") && !is_nt_hash("zz46F7EAEE8FB117AD06BDD830B7586C"));
        assert!(nt_hash("short").is_err());
    }
}
