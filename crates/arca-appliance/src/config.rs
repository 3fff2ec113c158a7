//! `appliance.toml`: what the appliance serves, snapshots and replicates, checked once at start.
//!
//! ```toml
//! listen = "0.0.0.0:8080"
//! data_dir = "/var/lib/arca-appliance"          # state (replication progress, last runs)
//! max_upload = "16 GiB"                          # largest file a WebDAV PUT may write
//!
//! [repository]
//! path = "/var/lib/arca-appliance/repo"          # created beforehand with `arca init`
//! password_file = "/etc/arca/repo-password"      # or password = "…" or password_env = "VAR"
//!
//! [users.alice]
//! password_hash = "$argon2id$v=19$…"            # from `arca appliance hash-password`
//! nt_hash = "8846F7EA…"                          # for SMB (`hash-password --smb` prints both)
//!
//! [shares.docs]
//! path = "/srv/docs"
//! schedule = "0 0 * * * *"                       # cron; a leading seconds field is optional
//! retention = { keep_last = 24, keep_daily = 7, keep_weekly = 4 }
//!
//! [smb]                                          # the same shares over SMB, through Samba
//! listen = "0.0.0.0:445"
//!
//! [tls]                                          # HTTPS for the share and the status page
//! cert_file = "/etc/arca/appliance.crt"          # or leave both out: self-signed, made once
//! key_file = "/etc/arca/appliance.key"
//!
//! [admin]                                        # the local admin page, /admin
//! password_hash = "$argon2id$v=19$…"            # from `arca appliance hash-password`
//!
//! [provider]
//! url = "https://backup.example.net/v1/repos/acme-office"
//! token_file = "/etc/arca/device-token"          # or token = "…" or token_env = "VAR"
//! upload_limit = "10 MiB/s"
//! windows = ["19:00-07:00"]                      # local time; uploads wait outside them
//!
//! [backup_target]                                # office machines `arca backup` here
//! listen = "0.0.0.0:8443"
//! data_dir = "/var/lib/arca-appliance/target"
//! admin_password_env = "ARCA_TARGET_ADMIN_PASSWORD"  # the first admin, user "admin"
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use arca_core::forget::ForgetPolicy;
use serde::Deserialize;

use crate::error::{Error, Result};

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address of the WebDAV share and the status page.
    pub listen: SocketAddr,
    /// Where the appliance keeps its own state (replication progress, last runs).
    pub data_dir: PathBuf,
    /// The largest body a WebDAV PUT may carry (default 16 GiB).
    #[serde(default = "default_max_upload")]
    pub max_upload: ByteSize,
    /// The local repository snapshots go to.
    pub repository: RepositoryConfig,
    /// Share users, by name.
    #[serde(default)]
    pub users: BTreeMap<String, UserConfig>,
    /// Shared folders, by name (the name is the first segment of the share's URL).
    #[serde(default)]
    pub shares: BTreeMap<String, ShareConfig>,
    /// Where snapshots are replicated to (none: local snapshots only).
    pub provider: Option<ProviderConfig>,
    /// A local backup target for the office's machines (none: not offered).
    pub backup_target: Option<TargetConfig>,
    /// Scheduled restore drills of every share's newest snapshot (none: no drills).
    pub drill: Option<DrillConfig>,
    /// The shares over SMB through Samba (none: WebDAV only).
    pub smb: Option<SmbConfig>,
    /// HTTPS for the WebDAV share and the status page (none: plain HTTP).
    pub tls: Option<TlsConfig>,
    /// The local admin page at `/admin` (none: no admin page).
    pub admin: Option<AdminConfig>,
}

/// The local admin page (`[admin]`, see [`crate::admin`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// The admin password's Argon2id hash (`arca appliance hash-password`).
    pub password_hash: String,
}

/// HTTPS (`[tls]`): the office's certificate, or a self-signed one made once (see [`crate::tls`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain (with `key_file`; none: self-signed).
    pub cert_file: Option<PathBuf>,
    /// PEM private key.
    pub key_file: Option<PathBuf>,
    /// Names a self-signed certificate is made for, besides `localhost` and the listen address
    /// (`["nas.office.lan"]`).
    #[serde(default)]
    pub names: Vec<String>,
}

/// SMB shares through Samba's `smbd` (`[smb]`). The appliance writes smbd's whole configuration
/// under `<data_dir>/samba/`, starts it, restarts it if it dies and stops it on exit; the share
/// users are its own (Samba's password database holds their NT hashes), not the system's.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmbConfig {
    /// Where smbd listens (`"0.0.0.0:445"`; any port, so tests need no privileges).
    pub listen: SocketAddr,
    /// The smbd program (default: `smbd` from Debian's samba package, /usr/sbin/smbd).
    pub smbd: Option<PathBuf>,
    /// nss_wrapper (Debian's libnss-wrapper), through which smbd sees the share users without
    /// system accounts (default: found in the usual library folders).
    pub nss_wrapper: Option<PathBuf>,
    /// uid_wrapper (Debian's libuid-wrapper), needed only when the appliance does not run as root
    /// (default: found in the usual library folders).
    pub uid_wrapper: Option<PathBuf>,
    /// The workgroup shown to clients.
    #[serde(default = "default_workgroup")]
    pub workgroup: String,
}

fn default_workgroup() -> String {
    "WORKGROUP".into()
}

/// The read-only share that shows share `name`'s snapshots as folders (for macOS, whose Finder has
/// no Previous Versions tab).
pub fn versions_share_name(name: &str) -> String {
    format!("{name}-versions")
}

/// Scheduled restore drills (`[drill]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrillConfig {
    /// When to drill (cron, as share schedules), e.g. `"0 0 4 * * Sun"`.
    pub schedule: String,
    /// Files restored per share and drill, chosen at random; 0 restores whole snapshots.
    #[serde(default = "default_drill_sample")]
    pub sample: usize,
    /// Where drills restore to (deleted after each drill); default `<data_dir>/drill`.
    pub scratch: Option<PathBuf>,
}

fn default_drill_sample() -> usize {
    100
}

impl DrillConfig {
    /// The sample as `arca_core::drill` takes it (`None`: every file).
    pub fn sample(&self) -> Option<usize> {
        (self.sample > 0).then_some(self.sample)
    }
}

/// The local backup target (`arca backup` from office machines to the appliance).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// Its own address (the hosting API and `arca admin`).
    pub listen: SocketAddr,
    /// Where its accounts database and repositories live.
    pub data_dir: PathBuf,
    /// The first admin's password, inline (used only while no admin exists).
    pub admin_password: Option<String>,
    /// A file holding it.
    pub admin_password_file: Option<PathBuf>,
    /// An environment variable holding it.
    pub admin_password_env: Option<String>,
}

impl TargetConfig {
    /// The first admin's password.
    pub fn admin_password(&self) -> Result<String> {
        let p = SecretSource {
            value: self.admin_password.clone(),
            file: self.admin_password_file.clone(),
            env: self.admin_password_env.clone(),
        }
        .read("backup target admin password")?;
        if p.chars().count() < 10 {
            return Err(Error::config("the backup target's admin password needs at least 10 characters"));
        }
        Ok(p)
    }
}

fn default_max_upload() -> ByteSize {
    ByteSize(16 << 30)
}

/// A secret given inline, in a file, or in an environment variable (exactly one).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretSource {
    /// The secret itself (fine for tests; prefer a file).
    pub value: Option<String>,
    /// A file holding it (one line; trailing newline ignored).
    pub file: Option<PathBuf>,
    /// An environment variable holding it.
    pub env: Option<String>,
}

impl SecretSource {
    fn read(&self, what: &str) -> Result<String> {
        match (&self.value, &self.file, &self.env) {
            (Some(v), None, None) => Ok(v.clone()),
            (None, Some(f), None) => std::fs::read_to_string(f)
                .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
                .map_err(|e| Error::config(format!("reading the {what} from {}: {e}", f.display()))),
            (None, None, Some(var)) => std::env::var(var).map_err(|_| {
                Error::config(format!("the {what} should be in environment variable {var}, which is not set"))
            }),
            (None, None, None) => Err(Error::config(format!("no {what} given"))),
            _ => Err(Error::config(format!("give the {what} one way only (inline, file or env)"))),
        }
    }
}

/// The local repository.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepositoryConfig {
    /// Its directory (create it with `arca init -r PATH`).
    pub path: PathBuf,
    /// Its password, inline.
    pub password: Option<String>,
    /// A file holding its password.
    pub password_file: Option<PathBuf>,
    /// An environment variable holding its password.
    pub password_env: Option<String>,
}

impl RepositoryConfig {
    /// The repository password.
    pub fn password(&self) -> Result<String> {
        SecretSource { value: self.password.clone(), file: self.password_file.clone(), env: self.password_env.clone() }
            .read("repository password")
    }
}

/// A share user.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// An Argon2id hash in PHC form (`$argon2id$…`), from `arca appliance hash-password`.
    pub password_hash: String,
    /// The password's NT hash (32 hex digits), for SMB only: NTLM sign-in can check nothing else.
    /// From `arca appliance hash-password --smb`. Without it the user has WebDAV but not SMB.
    pub nt_hash: Option<String>,
}

/// One shared folder.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ShareConfig {
    /// The folder on this machine.
    pub path: PathBuf,
    /// When to take snapshots (cron; six fields when seconds are given). None: never.
    pub schedule: Option<String>,
    /// Which snapshots to keep after each new one (empty: keep all).
    #[serde(default)]
    pub retention: Retention,
    /// Users allowed on this share (empty: every configured user).
    #[serde(default)]
    pub users: Vec<String>,
}

/// A share's retention policy: arca-core's forget rules, as the configuration spells them.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    /// Keep the `n` newest snapshots.
    pub keep_last: Option<u32>,
    /// Keep one snapshot for each of the `n` newest hours.
    pub keep_hourly: Option<u32>,
    /// Keep one snapshot for each of the `n` newest days.
    pub keep_daily: Option<u32>,
    /// Keep one snapshot for each of the `n` newest weeks.
    pub keep_weekly: Option<u32>,
    /// Keep one snapshot for each of the `n` newest months.
    pub keep_monthly: Option<u32>,
    /// Keep one snapshot for each of the `n` newest years.
    pub keep_yearly: Option<u32>,
    /// Keep everything within this span of the newest (`"7d"`, `"1y2m"`).
    pub keep_within: Option<String>,
}

impl Retention {
    /// As arca-core's forget policy.
    pub fn policy(&self) -> Result<ForgetPolicy> {
        let keep_within = match &self.keep_within {
            Some(s) => {
                Some(arca_core::forget::KeepWithin::parse(s).map_err(|e| Error::config(format!("keep_within: {e}")))?)
            }
            None => None,
        };
        Ok(ForgetPolicy {
            keep_last: self.keep_last,
            keep_hourly: self.keep_hourly,
            keep_daily: self.keep_daily,
            keep_weekly: self.keep_weekly,
            keep_monthly: self.keep_monthly,
            keep_yearly: self.keep_yearly,
            keep_within,
            keep_tags: Vec::new(),
        })
    }
}

/// The provider replication goes to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// The repository's URL on the provider's `arca server`.
    pub url: String,
    /// The appliance's device token, inline.
    pub token: Option<String>,
    /// A file holding the token.
    pub token_file: Option<PathBuf>,
    /// An environment variable holding the token.
    pub token_env: Option<String>,
    /// Upload bandwidth cap (`"10 MiB/s"`); none: as fast as the link goes.
    pub upload_limit: Option<ByteRate>,
    /// Local-time windows in which uploads may run (`"19:00-07:00"`); empty: always.
    #[serde(default)]
    pub windows: Vec<TimeWindow>,
    /// Alert (status page, `arca appliance status` exit 3, error log) when the oldest snapshot
    /// not yet at the provider is older than this many hours. 0: never on age.
    #[serde(default = "default_backlog_alert_hours")]
    pub backlog_alert_hours: u32,
    /// Also alert when more than this waits to be uploaded (`"50 GiB"`).
    pub backlog_alert_bytes: Option<ByteSize>,
}

fn default_backlog_alert_hours() -> u32 {
    24
}

impl ProviderConfig {
    /// The device token.
    pub fn token(&self) -> Result<String> {
        SecretSource { value: self.token.clone(), file: self.token_file.clone(), env: self.token_env.clone() }
            .read("provider token")
    }
}

impl Config {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::config(format!("reading the configuration {}: {e}", path.display())))?;
        Self::parse(&text).map_err(|e| e.context(format!("configuration {}", path.display())))
    }

    /// Parses and checks a configuration text.
    pub fn parse(text: &str) -> Result<Config> {
        let config: Config = toml::from_str(text).map_err(|e| Error::config(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<()> {
        for (name, share) in &self.shares {
            if !valid_share_name(name) {
                return Err(Error::config(format!(
                    "share name {name:?}: use 1 to 64 characters of a-z, 0-9, '-' and '_' (it becomes part of URLs)"
                )));
            }
            if !share.path.is_absolute() {
                return Err(Error::config(format!("share {name}: path {} must be absolute", share.path.display())));
            }
            if let Some(s) = &share.schedule {
                crate::schedule::Schedule::parse(s).map_err(|e| e.context(format!("share {name}")))?;
            }
            share.retention.policy().map_err(|e| e.context(format!("share {name}")))?;
            for u in &share.users {
                if !self.users.contains_key(u) {
                    return Err(Error::config(format!("share {name} names user {u:?}, who is not in [users]")));
                }
            }
        }
        for (name, user) in &self.users {
            if name.is_empty() || name.contains(':') {
                return Err(Error::config(format!("user name {name:?}: must be non-empty and without ':'")));
            }
            argon2::PasswordHash::new(&user.password_hash)
                .map_err(|e| Error::config(format!("user {name}: password_hash is not a PHC string: {e}")))?;
            if let Some(h) = &user.nt_hash {
                if !crate::users::is_nt_hash(h) {
                    return Err(Error::config(format!(
                        "user {name}: nt_hash must be 32 hexadecimal digits (from `arca appliance hash-password --smb`)"
                    )));
                }
            }
            if self.smb.is_some() && !valid_smb_user_name(name) {
                return Err(Error::config(format!(
                    "user name {name:?} cannot sign in over SMB: use 1 to 32 characters of letters, digits, '.', \
                     '-' and '_', not starting with '-'"
                )));
            }
        }
        if let Some(a) = &self.admin {
            argon2::PasswordHash::new(&a.password_hash)
                .map_err(|e| Error::config(format!("[admin]: password_hash is not a PHC string: {e}")))?;
        }
        if let Some(t) = &self.tls {
            if t.cert_file.is_some() != t.key_file.is_some() {
                return Err(Error::config(
                    "[tls]: give cert_file and key_file together (or neither, for a self-signed certificate)",
                ));
            }
        }
        if let Some(smb) = &self.smb {
            let w = &smb.workgroup;
            if w.is_empty() || w.len() > 15 || !w.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
                return Err(Error::config(format!("[smb] workgroup {w:?}: use 1 to 15 letters, digits, '-' or '_'")));
            }
            for (name, share) in &self.shares {
                // smb.conf is line-based: a path with a line break would write a setting of its own.
                if share.path.as_os_str().as_encoded_bytes().iter().any(|b| b.is_ascii_control()) {
                    return Err(Error::config(format!(
                        "share {name}: an SMB share's path cannot hold control characters"
                    )));
                }
            }
            for name in self.shares.keys() {
                let versions = versions_share_name(name);
                if self.shares.contains_key(&versions) {
                    return Err(Error::config(format!(
                        "share {versions} clashes with the SMB share of share {name}'s previous versions; rename it"
                    )));
                }
            }
        }
        if let Some(p) = &self.provider {
            arca_store::HttpStore::new(&p.url, "placeholder").map_err(|e| Error::config(format!("provider: {e}")))?;
        }
        if let Some(d) = &self.drill {
            crate::schedule::Schedule::parse(&d.schedule).map_err(|e| e.context("[drill]"))?;
        }
        Ok(())
    }
}

/// Whether `name` may name a share.
pub fn valid_share_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Whether `name` may be an SMB user name (it also goes into smbd's files, one per line and
/// colon-separated, so nothing else is let through).
pub fn valid_smb_user_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && !name.starts_with('-')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
}

/// A size in bytes, written `"16 GiB"`, `"500 MB"` or `12345`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = Error;
    fn from_str(s: &str) -> Result<ByteSize> {
        let t = s.trim();
        let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: f64 = num.parse().map_err(|_| Error::config(format!("{s:?} is not a size (try \"10 MiB\")")))?;
        let mult: f64 = match unit.trim() {
            "" | "B" => 1.0,
            "k" | "kB" | "KB" => 1e3,
            "KiB" => 1024.0,
            "M" | "MB" => 1e6,
            "MiB" => 1024.0 * 1024.0,
            "G" | "GB" => 1e9,
            "GiB" => 1024.0 * 1024.0 * 1024.0,
            "T" | "TB" => 1e12,
            "TiB" => 1024f64.powi(4),
            other => {
                return Err(Error::config(format!("unknown unit {other:?} in {s:?} (use B, KiB, MiB, GiB, kB, MB…)")))
            }
        };
        Ok(ByteSize((n * mult).round() as u64))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<ByteSize, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(ByteSize(n)),
            Raw::S(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// A bandwidth, written `"10 MiB/s"` (bytes per second).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRate(pub u64);

impl FromStr for ByteRate {
    type Err = Error;
    fn from_str(s: &str) -> Result<ByteRate> {
        let body = s
            .trim()
            .strip_suffix("/s")
            .ok_or_else(|| Error::config(format!("{s:?} is not a rate: write it like \"10 MiB/s\"")))?;
        let b: ByteSize = body.parse()?;
        if b.0 == 0 {
            return Err(Error::config(format!("upload limit {s:?} must be above zero (leave it out for no limit)")));
        }
        Ok(ByteRate(b.0))
    }
}

impl<'de> Deserialize<'de> for ByteRate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<ByteRate, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// A daily local-time window `"HH:MM-HH:MM"` (shared with the agents' protection plans).
pub use arca_api::agent::TimeWindow;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_rates_parse() {
        assert_eq!("10 MiB/s".parse::<ByteRate>().unwrap(), ByteRate(10 << 20));
        assert_eq!("1.5MB/s".parse::<ByteRate>().unwrap(), ByteRate(1_500_000));
        assert!("10 MiB".parse::<ByteRate>().is_err());
        assert!("0 B/s".parse::<ByteRate>().is_err());
        assert!("10 parsecs/s".parse::<ByteRate>().is_err());
        assert_eq!("16 GiB".parse::<ByteSize>().unwrap(), ByteSize(16 << 30));
    }

    #[test]
    fn windows_wrap_midnight() {
        let w: TimeWindow = "19:00-07:00".parse().unwrap();
        assert!(w.contains(20 * 60) && w.contains(3 * 60) && !w.contains(12 * 60) && !w.contains(7 * 60));
        let d: TimeWindow = "09:30-17:00".parse().unwrap();
        assert!(d.contains(9 * 60 + 30) && !d.contains(17 * 60) && !d.contains(0));
        assert!("25:00-01:00".parse::<TimeWindow>().is_err());
        assert!("10:00-10:00".parse::<TimeWindow>().is_err());
    }

    const HASH: &str = "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$J0sbmOvmJMjHSVylw0MVVA";

    #[test]
    fn a_full_config_parses_and_bad_ones_are_refused() {
        let good = format!(
            r#"
listen = "127.0.0.1:0"
data_dir = "/tmp/x"
[repository]
path = "/tmp/repo"
password = "pw"
[users.alice]
password_hash = "{HASH}"
[shares.docs]
path = "/srv/docs"
schedule = "*/5 * * * * *"
retention = {{ keep_last = 3 }}
[provider]
url = "http://127.0.0.1:1/v1/repos/acme"
token = "t"
upload_limit = "10 MiB/s"
windows = ["19:00-07:00"]
"#
        );
        let c = Config::parse(&good).unwrap();
        assert_eq!(c.shares["docs"].retention.keep_last, Some(3));
        assert_eq!(c.provider.unwrap().upload_limit, Some(ByteRate(10 << 20)));
        for (from, to) in [
            ("[shares.docs]", "[shares.Docs]"),
            ("*/5 * * * * *", "every five seconds"),
            ("/srv/docs", "srv/docs"),
            ("10 MiB/s", "fast"),
            ("19:00-07:00", "evenings"),
            ("listen", "lissen"),
            ("$argon2id$", "plain"),
        ] {
            assert!(Config::parse(&good.replace(from, to)).is_err(), "{from} -> {to} should be refused");
        }
    }
}
