//! Finding and opening the repository: location, store, password.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use arca_core::keys::KdfParams;
use arca_core::repository::{DynStore, Repository};
use arca_store::{HttpStore, LocalStore};

use crate::cli::GlobalOpts;

/// An opened repository with the password that opened it.
pub struct Opened {
    /// The repository.
    pub repo: Repository,
    /// The password that opened it (for `key passwd` and `key list`).
    pub password: Vec<u8>,
}

/// Location schemes of other backends that this binary does not have.
const REMOTE_SCHEMES: &[&str] = &["arca", "rest", "s3", "sftp", "b2", "azure", "gs", "swift", "rclone"];

/// The repository location given by `-r/--repo` or `ARCA_REPOSITORY`.
pub fn location(global: &GlobalOpts) -> Result<String> {
    match global.repo.as_deref().map(str::trim) {
        Some(l) if !l.is_empty() => Ok(l.to_string()),
        _ => bail!("no repository given: use -r/--repo or set ARCA_REPOSITORY"),
    }
}

/// The store for a location: `http(s)://HOST:PORT/v1/repos/REPO` is a repository on an arca server
/// (token from `ARCA_TOKEN`); a plain path (or `local:PATH`) is a directory on this machine.
pub fn store_for(location: &str) -> Result<DynStore> {
    let lower = location.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        let token = std::env::var("ARCA_TOKEN").unwrap_or_default();
        if token.trim().is_empty() {
            bail!(
                "the repository {location} is on an arca server: set ARCA_TOKEN to the device or admin \
                 token the server's operator gave you"
            );
        }
        let mut http = HttpStore::new(location, &token)?;
        if let Some(limit) = upload_limit()? {
            let bucket = Arc::new(arca_appliance::throttle::TokenBucket::new(limit));
            http = http.with_pacer(arca_appliance::throttle::pacer(bucket));
        }
        return Ok(Arc::new(http));
    }
    let path = location.strip_prefix("local:").unwrap_or(location);
    if let Some((scheme, _)) = path.split_once(':') {
        let scheme = scheme.to_ascii_lowercase();
        if REMOTE_SCHEMES.contains(&scheme.as_str()) {
            bail!(
                "repository location {location:?}: the {scheme:?} backend is not supported by this \
                 build of arca (use a local directory path)"
            );
        }
    }
    if path.is_empty() {
        bail!("empty repository location");
    }
    Ok(Arc::new(LocalStore::new(path)))
}

/// The upload limit for arca servers in bytes per second from `ARCA_LIMIT_UPLOAD` (`512k`,
/// `10M`); uploads are paced inside each request body, so the rate holds even within one pack.
fn upload_limit() -> Result<Option<u64>> {
    let Some(v) = std::env::var("ARCA_LIMIT_UPLOAD").ok().filter(|v| !v.trim().is_empty()) else {
        return Ok(None);
    };
    let n = crate::commands::image::parse_size(&v).map_err(|e| anyhow::anyhow!("ARCA_LIMIT_UPLOAD: {e}"))?;
    Ok((n > 0).then_some(n))
}

/// Opens the repository of the global flags, asking for the password if need be.
pub fn open(global: &GlobalOpts) -> Result<Opened> {
    let loc = location(global)?;
    open_at(&loc, global.password_file.as_deref(), "ARCA_PASSWORD", &format!("enter password for repository {loc}: "))
}

/// Opens the repository at `loc`. The config is read before the password is asked for, so a
/// missing repository is reported without a prompt.
pub fn open_at(loc: &str, password_file: Option<&Path>, password_env: &str, prompt: &str) -> Result<Opened> {
    let store = store_for(loc)?;
    Repository::read_config(store.as_ref())?;
    let password = password(password_file, password_env, prompt, false)?;
    let repo = Repository::open(store, &password)?;
    Ok(Opened { repo, password })
}

/// A password from, in order: the file, the environment variable, the terminal. `confirm` asks
/// twice (for new passwords).
pub fn password(file: Option<&Path>, env: &str, prompt: &str, confirm: bool) -> Result<Vec<u8>> {
    if let Some(path) = file {
        return read_password_file(path);
    }
    if let Some(pw) = std::env::var_os(env) {
        use std::os::unix::ffi::OsStrExt;
        return Ok(pw.as_bytes().to_vec());
    }
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(prompt).context("reading the password from the terminal")?;
        if confirm {
            let again = rpassword::prompt_password("enter the password again: ")
                .context("reading the password from the terminal")?;
            if again != first {
                bail!("the passwords do not match");
            }
        }
        return Ok(first.into_bytes());
    }
    if env == "ARCA_PASSWORD" {
        bail!("no password given: set ARCA_PASSWORD or --password-file");
    }
    bail!("no password given: set {env} or use the matching --...-password-file flag")
}

/// Reads a password file, removing one trailing newline (`\n` or `\r\n`).
pub fn read_password_file(path: &Path) -> Result<Vec<u8>> {
    let mut bytes = std::fs::read(path).with_context(|| format!("reading password file {}", path.display()))?;
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
    }
    Ok(bytes)
}

/// A new password must not be empty.
pub fn check_new_password(pw: &[u8]) -> Result<()> {
    if pw.is_empty() {
        bail!("an empty password is not allowed");
    }
    Ok(())
}

/// KDF cost for new key slots. `ARCA_KDF_MEMORY_KIB` and `ARCA_KDF_ITERATIONS` override the
/// defaults; they exist so that tests run fast and must not be used for real repositories.
pub fn kdf_params() -> Result<KdfParams> {
    let mut kdf = KdfParams::default();
    let read = |name: &str| -> Result<Option<u32>> {
        match std::env::var(name) {
            Ok(v) => {
                v.trim().parse::<u32>().map(Some).with_context(|| format!("{name}={v:?} is not a positive integer"))
            }
            Err(_) => Ok(None),
        }
    };
    if let Some(m) = read("ARCA_KDF_MEMORY_KIB")? {
        kdf.memory_kib = m;
    }
    if let Some(i) = read("ARCA_KDF_ITERATIONS")? {
        kdf.iterations = i;
    }
    let default = KdfParams::default();
    if kdf.memory_kib < default.memory_kib || kdf.iterations < default.iterations {
        // Never silent: a weakened slot makes the password cheap to brute-force for anyone who
        // gets the key file (the provider, a thief of the backup disk).
        eprintln!(
            "arca: WARNING: ARCA_KDF_MEMORY_KIB/ARCA_KDF_ITERATIONS weaken the password hashing of this key slot to \
             {} KiB x {} (default {} KiB x {}): for tests only, never for a real repository",
            kdf.memory_kib, kdf.iterations, default.memory_kib, default.iterations
        );
    }
    Ok(kdf)
}
