//! The shares over SMB, through Samba's `smbd`, with the snapshots as Windows "Previous Versions".
//!
//! The appliance owns smbd's whole world under `<data_dir>/samba/`: it writes `smb.conf`, a
//! password database (`smbpasswd`, the users' NT hashes) and the user list smbd sees, starts smbd
//! in the foreground in a process group of its own, restarts it if it dies, and stops it when the
//! appliance stops (or dies: smbd gets SIGTERM then).
//!
//! - **Users without system accounts.** Samba maps every user to a Unix account. The share users
//!   are the appliance's own, so smbd is given its own account list through nss_wrapper (Debian's
//!   `libnss-wrapper`, the library Samba's own test suite runs smbd with): the system's
//!   `/etc/passwd` is left alone. Every file is read and written as the appliance's own user
//!   (`force user`), the same owner WebDAV writes with, so the two protocols see the same files.
//!   When the appliance is not root, uid_wrapper lets smbd run unprivileged as well.
//! - **Previous Versions.** `vfs_shadow_copy2` finds the snapshot of `dir/file` at time T under
//!   `<versions>/<share>/@GMT-…/dir/file` ([`crate::versions_mount`]): Explorer's Previous
//!   Versions tab, `smbclient`'s `allinfo` and `@GMT-…` paths all work, read-only. For macOS,
//!   whose Finder has no such tab, `<share>-versions` is a read-only share of the snapshots as
//!   folders named by local time, as WebDAV's `.snapshots` shows them.
//! - **Per-share access** is the configuration's: `valid users` lists the share's users (or every
//!   user) who have an `nt_hash`.
//! - Uploads in flight over WebDAV (`.arca-upload-*`) are hidden from SMB clients (`veto files`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::catalog::Catalog;
use crate::config::{versions_share_name, Config, SmbConfig};
use crate::error::{Error, ErrorKind, Result};
use crate::status::StatusBoard;
use crate::versions_mount::{VersionsMount, GMT_FORMAT};

/// The account (in smbd's own account list) that every file is read and written as: the
/// appliance's own user and group ids.
const FILES_ACCOUNT: &str = "arca-files";
/// Share users get ids from here up, in smbd's account list only (SIDs are made from them).
const FIRST_USER_ID: u32 = 200_000;
/// How long smbd may take to accept connections after it starts.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The running Samba front: smbd under supervision and the previous-versions mount.
pub struct Samba {
    /// smbd's process group (its main process's pid), signalled when the front stops.
    group: Arc<std::sync::atomic::AtomicI32>,
    supervisor: tokio::task::JoinHandle<()>,
    /// The users and shares smbd serves now.
    config: std::sync::Mutex<Config>,
    layout: Layout,
    ids: Ids,
    /// After smbd (fields drop in order): nothing may still read from it when it unmounts.
    _versions: VersionsMount,
}

impl Drop for Samba {
    fn drop(&mut self) {
        self.supervisor.abort();
        stop_group(self.group.load(std::sync::atomic::Ordering::SeqCst));
    }
}

impl Samba {
    /// Serves `users` from now on (the admin page changed one): see [`Samba::reload_shares`].
    pub fn reload_users(&self, users: &BTreeMap<String, crate::config::UserConfig>) -> Result<()> {
        self.reload(|c| c.users = users.clone())
    }

    /// Serves `shares` from now on. smbd's account list, password database and shares are
    /// rewritten and smbd reloads them (SIGHUP): no restart, and connections to shares that stay
    /// are not dropped.
    pub fn reload_shares(&self, shares: &BTreeMap<String, crate::config::ShareConfig>) -> Result<()> {
        self.reload(|c| c.shares = shares.clone())
    }

    fn reload(&self, change: impl FnOnce(&mut Config)) -> Result<()> {
        let mut config = self.config.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = config.clone();
        change(&mut next);
        write_files(&next, &self.layout, self.ids, &self._versions)?;
        *config = next;
        // smbd's main process (the group's leader) tells its children to reload.
        signal(self.group.load(std::sync::atomic::Ordering::SeqCst), libc::SIGHUP);
        Ok(())
    }
}

/// SIGTERM to smbd's process group (smbd, its per-client children, samba-dcerpcd).
fn stop_group(pgid: i32) {
    if pgid > 1 {
        signal(-pgid, libc::SIGTERM);
    }
}

/// Sends `sig` to process `pid` (a negative pid: to that process group). Pids 0, 1 and -1 (the
/// caller's group, init, everyone) are never signalled.
fn signal(pid: i32, sig: libc::c_int) {
    if matches!(pid, -1..=1) {
        return;
    }
    // SAFETY: kill(2) has no memory effects.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// Where smbd's files live.
#[derive(Clone)]
struct Layout {
    dir: PathBuf,
}

impl Layout {
    fn conf(&self) -> PathBuf {
        self.dir.join("smb.conf")
    }
    fn passwd(&self) -> PathBuf {
        self.dir.join("passwd")
    }
    fn group(&self) -> PathBuf {
        self.dir.join("group")
    }
    fn private(&self) -> PathBuf {
        self.dir.join("private")
    }
    fn smbpasswd(&self) -> PathBuf {
        self.private().join("smbpasswd")
    }
    fn log(&self) -> PathBuf {
        self.dir.join("log").join("smbd.log")
    }
    fn pid_file(&self) -> PathBuf {
        self.dir.join("run").join("smbd.pid")
    }
    fn versions(&self) -> PathBuf {
        self.dir.join("versions")
    }
}

fn io(what: impl std::fmt::Display, e: std::io::Error) -> Error {
    Error::new(ErrorKind::Io, format!("{what}: {e}"))
}

/// Starts smbd for `config`'s shares (its `[smb]` section must be present).
pub async fn start(config: &Config, catalog: Arc<Catalog>, status: Arc<StatusBoard>) -> Result<Samba> {
    let smb = config.smb.clone().ok_or_else(|| Error::config("no [smb] section"))?;
    let layout = Layout { dir: config.data_dir.join("samba") };
    for d in ["", "private", "lock", "state", "cache", "run", "log", "ncalrpc"] {
        let path = layout.dir.join(d);
        std::fs::create_dir_all(&path).map_err(|e| io(format_args!("creating {}", path.display()), e))?;
    }
    set_mode(&layout.private(), 0o700)?;
    stop_leftover(&layout);

    let versions_path = layout.versions();
    let versions = tokio::task::spawn_blocking(move || VersionsMount::mount(catalog, &versions_path))
        .await
        .map_err(|e| Error::new(ErrorKind::Io, format!("a worker thread failed: {e}")))??;

    let ids = Ids::current();
    write_files(config, &layout, ids, &versions)?;
    for (name, user) in &config.users {
        if user.nt_hash.is_none() {
            tracing::warn!(
                "user {name} has no nt_hash and cannot sign in over SMB (`arca appliance hash-password --smb` makes one)"
            );
        }
    }

    let launch = Launch::new(&smb, &layout, ids)?;
    let group = Arc::new(std::sync::atomic::AtomicI32::new(0));
    let child = launch.spawn(&group)?;
    let child = wait_until_listening(child, smb.listen, &layout).await?;
    tracing::info!("SMB shares on {} (smbd, previous versions at {})", smb.listen, layout.versions().display());
    status.update(|s| s.smb = Some(format!("serving on {}", smb.listen)));
    let supervisor = tokio::spawn(supervise(child, launch, group.clone(), layout.clone(), status));
    Ok(Samba { group, supervisor, config: std::sync::Mutex::new(config.clone()), layout, ids, _versions: versions })
}

/// smbd's configuration, account list and password database for `config`.
fn write_files(config: &Config, layout: &Layout, ids: Ids, versions: &VersionsMount) -> Result<()> {
    let smb = config.smb.as_ref().ok_or_else(|| Error::config("no [smb] section"))?;
    write_private(&layout.passwd(), &passwd_file(config, ids))?;
    write_private(&layout.group(), &format!("{FILES_ACCOUNT}:x:{}:\nusers:x:100:\nnogroup:x:65534:\n", ids.gid))?;
    write_private(&layout.smbpasswd(), &smbpasswd_file(config))?;
    write_private(&layout.conf(), &smb_conf(config, smb, layout, versions))
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| io(format_args!("setting the mode of {}", path.display()), e))
}

/// Writes `text` to `path` readable by the owner only (the NT hashes are password equivalents).
fn write_private(path: &Path, text: &str) -> Result<()> {
    crate::files::write_atomically(path, text.as_bytes(), 0o600)
}

/// The appliance's own user and group ids: the owner of every file smbd writes.
#[derive(Debug, Clone, Copy)]
struct Ids {
    uid: u32,
    gid: u32,
}

impl Ids {
    fn current() -> Ids {
        // SAFETY: geteuid and getegid cannot fail and touch no memory.
        unsafe { Ids { uid: libc::geteuid(), gid: libc::getegid() } }
    }
}

/// Users who may sign in over SMB: those with an NT hash, in name order.
fn smb_users(config: &Config) -> impl Iterator<Item = (usize, &String, &str)> {
    config
        .users
        .iter()
        .filter_map(|(name, u)| u.nt_hash.as_deref().map(|h| (name, h)))
        .enumerate()
        .map(|(i, (name, h))| (i, name, h))
}

/// smbd's account list: the files account and one account per SMB user. Shells and homes are
/// not used: smbd only maps names to ids.
fn passwd_file(config: &Config, ids: Ids) -> String {
    // smbd will not start without its guest account, though guests are refused (map to guest).
    let mut out = format!(
        "{FILES_ACCOUNT}:x:{}:{}:arca appliance files:/nonexistent:/bin/false\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        ids.uid, ids.gid
    );
    for (i, name, _) in smb_users(config) {
        let id = FIRST_USER_ID + i as u32;
        let _ = writeln!(out, "{name}:x:{id}:100:arca share user:/nonexistent:/bin/false");
    }
    out
}

/// Samba's `smbpasswd` password database: name, id, no LM hash, the NT hash, a normal account.
fn smbpasswd_file(config: &Config) -> String {
    let now = chrono::Utc::now().timestamp().max(0);
    let mut out = String::new();
    for (i, name, hash) in smb_users(config) {
        let id = FIRST_USER_ID + i as u32;
        let _ = writeln!(
            out,
            "{name}:{id}:XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX:{}:[U          ]:LCT-{now:08X}:",
            hash.to_ascii_uppercase()
        );
    }
    out
}

/// The users of share `share_users` (empty: everyone) who can sign in over SMB.
fn valid_users(config: &Config, share_users: &[String]) -> Vec<String> {
    smb_users(config)
        .filter(|(_, name, _)| share_users.is_empty() || share_users.contains(name))
        .map(|(_, name, _)| name.clone())
        .collect()
}

/// `smb.conf`: a standalone server that reads nothing of the system's Samba configuration.
fn smb_conf(config: &Config, smb: &SmbConfig, layout: &Layout, versions: &VersionsMount) -> String {
    let d = |p: &str| layout.dir.join(p).display().to_string();
    let mut c = String::new();
    let _ = writeln!(c, "# Written by the arca appliance at every start; changes here are lost.\n[global]");
    let mut global: BTreeMap<&str, String> = BTreeMap::new();
    global.insert("server role", "standalone server".into());
    global.insert("workgroup", smb.workgroup.clone());
    global.insert("server string", "arca appliance".into());
    global.insert("disable netbios", "yes".into());
    global.insert("smb ports", smb.listen.port().to_string());
    if !smb.listen.ip().is_unspecified() {
        global.insert("interfaces", smb.listen.ip().to_string());
        global.insert("bind interfaces only", "yes".into());
    }
    global.insert("passdb backend", format!("smbpasswd:{}", layout.smbpasswd().display()));
    global.insert("private dir", layout.private().display().to_string());
    global.insert("lock directory", d("lock"));
    global.insert("state directory", d("state"));
    global.insert("cache directory", d("cache"));
    global.insert("pid directory", d("run"));
    global.insert("ncalrpc dir", d("ncalrpc"));
    global.insert("log file", layout.log().display().to_string());
    global.insert("max log size", "10000".into());
    global.insert("logging", "file".into());
    global.insert("load printers", "no".into());
    global.insert("printing", "bsd".into());
    global.insert("printcap name", "/dev/null".into());
    global.insert("disable spoolss", "yes".into());
    global.insert("map to guest", "Never".into());
    global.insert("guest account", "nobody".into());
    global.insert("restrict anonymous", "2".into());
    global.insert("server min protocol", "SMB2_10".into());
    global.insert("ntlm auth", "ntlmv2-only".into());
    global.insert("usershare max shares", "0".into());
    global.insert("unix extensions", "no".into());
    for (k, v) in global {
        let _ = writeln!(c, "  {k} = {v}");
    }
    for (name, share) in &config.shares {
        let users = valid_users(config, &share.users);
        // No user with an NT hash: nobody may sign in, and nobody is better said by closing it.
        let available = if users.is_empty() { "no" } else { "yes" };
        let users = users.join(" ");
        let _ = writeln!(
            c,
            "\n[{name}]\n  path = {path}\n  comment = {name}\n  available = {available}\n  read only = no\n  valid users = {users}\n  force user = \
             {FILES_ACCOUNT}\n  force group = {FILES_ACCOUNT}\n  create mask = 0644\n  directory mask = 0755\n  veto \
             files = /.arca-upload-*/\n  delete veto files = no\n  vfs objects = shadow_copy2\n  shadow:snapdir = \
             {snapdir}\n  shadow:mountpoint = {path}\n  shadow:format = {GMT_FORMAT}\n  shadow:localtime = no\n  \
             shadow:sort = desc",
            path = share.path.display(),
            snapdir = versions.gmt_dir(name).display(),
        );
        let _ = writeln!(
            c,
            "\n[{versions_name}]\n  path = {snapdir}\n  comment = previous versions of {name} (read-only)\n  available = \
             {available}\n  read only = yes\n  valid users = {users}\n  force user = {FILES_ACCOUNT}\n  force group = {FILES_ACCOUNT}",
            versions_name = versions_share_name(name),
            snapdir = versions.folders_dir(name).display(),
        );
    }
    c
}

/// How smbd is started: the program, and the environment that gives it our account list.
struct Launch {
    smbd: PathBuf,
    conf: PathBuf,
    env: Vec<(String, String)>,
}

/// Where Debian and other distributions keep shared libraries.
const LIBRARY_DIRS: &[&str] =
    &["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/lib"];

fn find_library(given: &Option<PathBuf>, file: &str, package: &str) -> Result<PathBuf> {
    if let Some(p) = given {
        return if p.exists() {
            Ok(p.clone())
        } else {
            Err(Error::config(format!("[smb]: {} does not exist", p.display())))
        };
    }
    LIBRARY_DIRS.iter().map(|d| Path::new(d).join(file)).find(|p| p.exists()).ok_or_else(|| {
        Error::config(format!("[smb] needs {file}: install Debian's {package} package (apt-get install {package})"))
    })
}

impl Launch {
    fn new(smb: &SmbConfig, layout: &Layout, ids: Ids) -> Result<Launch> {
        let smbd = match &smb.smbd {
            Some(p) => p.clone(),
            None => ["/usr/sbin/smbd", "/usr/local/sbin/smbd", "/usr/bin/smbd"]
                .iter()
                .map(PathBuf::from)
                .find(|p| p.exists())
                .ok_or_else(|| {
                    Error::config("[smb] needs smbd: install Debian's samba package (apt-get install samba)")
                })?,
        };
        let mut preload = vec![find_library(&smb.nss_wrapper, "libnss_wrapper.so", "libnss-wrapper")?];
        let mut env = vec![
            ("NSS_WRAPPER_PASSWD".to_string(), layout.passwd().display().to_string()),
            ("NSS_WRAPPER_GROUP".to_string(), layout.group().display().to_string()),
        ];
        if ids.uid != 0 {
            preload.push(find_library(&smb.uid_wrapper, "libuid_wrapper.so", "libuid-wrapper")?);
            env.push(("UID_WRAPPER".into(), "1".into()));
            env.push(("UID_WRAPPER_ROOT".into(), "1".into()));
        }
        let preload: Vec<String> = preload.iter().map(|p| p.display().to_string()).collect();
        env.push(("LD_PRELOAD".into(), preload.join(":")));
        Ok(Launch { smbd, conf: layout.conf(), env })
    }

    fn spawn(&self, group: &std::sync::atomic::AtomicI32) -> Result<Child> {
        let mut cmd = Command::new(&self.smbd);
        cmd.arg("--foreground")
            .arg("--no-process-group")
            .arg(format!("--configfile={}", self.conf.display()))
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .kill_on_drop(true);
        // SAFETY: prctl is async-signal-safe; it runs in the child between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                // smbd is stopped with the appliance even when the appliance is killed.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child =
            cmd.spawn().map_err(|e| io(format_args!("starting {} (Debian package samba)", self.smbd.display()), e))?;
        group.store(child.id().map(|p| p as i32).unwrap_or(0), std::sync::atomic::Ordering::SeqCst);
        Ok(child)
    }
}

/// The last lines of smbd's log, for error messages.
fn log_tail(layout: &Layout) -> String {
    let text = std::fs::read_to_string(layout.log()).unwrap_or_default();
    let lines: Vec<&str> = text.lines().rev().take(12).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join("\n")
}

/// Waits until smbd accepts connections, or fails with what its log says.
async fn wait_until_listening(mut child: Child, listen: SocketAddr, layout: &Layout) -> Result<Child> {
    let probe = if listen.ip().is_unspecified() {
        SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), listen.port())
    } else {
        listen
    };
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(Error::new(
                ErrorKind::Io,
                format!(
                    "smbd stopped at start ({status}); its log {} ends:\n{}",
                    layout.log().display(),
                    log_tail(layout)
                ),
            ));
        }
        if tokio::net::TcpStream::connect(probe).await.is_ok() {
            return Ok(child);
        }
        if tokio::time::Instant::now() > deadline {
            let _ = child.start_kill();
            return Err(Error::new(
                ErrorKind::Io,
                format!(
                    "smbd did not listen on {listen} within {}s (is the port taken?); its log {} ends:\n{}",
                    START_TIMEOUT.as_secs(),
                    layout.log().display(),
                    log_tail(layout)
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Restarts smbd whenever it stops, waiting longer after each quick failure (1 s up to a minute).
async fn supervise(
    mut child: Child,
    launch: Launch,
    group: Arc<std::sync::atomic::AtomicI32>,
    layout: Layout,
    status: Arc<StatusBoard>,
) {
    let mut backoff = Duration::from_secs(1);
    loop {
        let started = tokio::time::Instant::now();
        let exit = child.wait().await;
        let what = match exit {
            Ok(s) => s.to_string(),
            Err(e) => e.to_string(),
        };
        stop_group(group.load(std::sync::atomic::Ordering::SeqCst));
        tracing::error!("smbd stopped ({what}); restarting it. Its log ends:\n{}", log_tail(&layout));
        status.update(|s| s.smb = Some(format!("smbd stopped ({what}); restarting")));
        if started.elapsed() > Duration::from_secs(60) {
            backoff = Duration::from_secs(1);
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(60));
        match launch.spawn(&group) {
            Ok(c) => {
                child = c;
                status.update(|s| s.smb = Some("serving (restarted)".into()));
            }
            Err(e) => {
                tracing::error!("restarting smbd: {e}");
                status.update(|s| s.smb = Some(format!("cannot restart smbd: {e}")));
                return;
            }
        }
    }
}

/// An smbd of an earlier run that outlived its appliance still holds the port: stop it (only if
/// its pid file names a process that is smbd).
fn stop_leftover(layout: &Layout) {
    let Ok(text) = std::fs::read_to_string(layout.pid_file()) else { return };
    let Ok(pid) = text.trim().parse::<i32>() else { return };
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if pid > 1 && comm.trim() == "smbd" {
        tracing::info!("stopping smbd {pid}, left running by an earlier run");
        signal(pid, libc::SIGTERM);
        for _ in 0..50 {
            if !Path::new(&format!("/proc/{pid}")).exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$J0sbmOvmJMjHSVylw0MVVA";

    fn config() -> Config {
        Config::parse(&format!(
            r#"
listen = "127.0.0.1:0"
data_dir = "/tmp/x"
[repository]
path = "/tmp/repo"
password = "pw"
[users.alice]
password_hash = "{HASH}"
nt_hash = "8846f7eaee8fb117ad06bdd830b7586c"
[users.bob]
password_hash = "{HASH}"
nt_hash = "8846F7EAEE8FB117AD06BDD830B7586C"
[users.carol]
password_hash = "{HASH}"
[shares.docs]
path = "/srv/docs"
users = ["alice"]
[shares.all]
path = "/srv/all"
[smb]
listen = "127.0.0.1:4450"
"#
        ))
        .unwrap()
    }

    #[test]
    fn password_database_and_accounts_hold_only_smb_users() {
        let c = config();
        let db = smbpasswd_file(&c);
        let lines: Vec<&str> = db.lines().collect();
        assert_eq!(lines.len(), 2, "carol has no NT hash: {db}");
        assert!(lines[0].starts_with(
            "alice:200000:XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX:8846F7EAEE8FB117AD06BDD830B7586C:[U          ]:LCT-"
        ));
        assert!(lines[1].starts_with("bob:200001:"));
        let accounts = passwd_file(&c, Ids { uid: 1000, gid: 1001 });
        assert!(accounts.starts_with("arca-files:x:1000:1001:"));
        assert!(accounts.contains("\nalice:x:200000:100:") && accounts.contains("\nbob:x:200001:100:"));
        assert!(!accounts.contains("carol"));
        assert_eq!(valid_users(&c, &c.shares["docs"].users), ["alice"]);
        assert_eq!(valid_users(&c, &c.shares["all"].users), ["alice", "bob"]);
    }

    #[test]
    fn names_that_would_break_smbd_files_are_refused() {
        let text = r#"
listen = "127.0.0.1:0"
data_dir = "/tmp/x"
[repository]
path = "/tmp/repo"
password = "pw"
[users."a:b"]
password_hash = "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$J0sbmOvmJMjHSVylw0MVVA"
[smb]
listen = "127.0.0.1:4450"
"#;
        assert!(Config::parse(text).is_err());
        assert!(Config::parse(&text.replace("a:b", "a b")).is_err(), "spaces split valid users");
        assert!(Config::parse(&text.replace("a:b", "ab")).is_ok());
        assert!(Config::parse(&text.replace("a:b", "ab").replace("password_hash", "nt_hash = \"12\"\npassword_hash"))
            .is_err());
    }
}
