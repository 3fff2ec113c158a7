//! What every request handler shares: the metadata database, where object bytes live, and the
//! process's metrics.

use std::path::PathBuf;
use std::sync::Arc;

use arca_store::{LocalStore, Store};

use crate::db::Db;

/// Where the repositories' object bytes live.
#[derive(Clone, Debug)]
pub enum Backend {
    /// Local disk: `DIR/repos/REPO/…` (temp file, fsync, rename).
    Local(PathBuf),
    /// An S3-compatible object store: one prefix per repository (`…/repos/REPO/…`).
    #[cfg(feature = "s3")]
    S3(arca_store::S3Store),
}

impl Backend {
    /// Parses `file://DIR` (or a plain path) or `s3://BUCKET[/PREFIX]?endpoint=…&region=…`.
    pub fn from_url(url: &str) -> Result<Backend, String> {
        if let Some(path) = url.strip_prefix("file://") {
            if path.is_empty() {
                return Err("file:// needs a directory, e.g. file:///srv/arca".into());
            }
            return Ok(Backend::Local(PathBuf::from(path)));
        }
        if url.starts_with("s3://") {
            #[cfg(feature = "s3")]
            {
                let config = arca_store::S3Config::from_url(url).map_err(|e| e.to_string())?;
                return arca_store::S3Store::open(&config).map(Backend::S3).map_err(|e| e.to_string());
            }
            #[cfg(not(feature = "s3"))]
            return Err("this build of arca has no S3 support".into());
        }
        if url.contains("://") {
            return Err(format!("unsupported store URL {url:?}: use file://DIR or s3://BUCKET?endpoint=URL&region=R"));
        }
        Ok(Backend::Local(PathBuf::from(url)))
    }

    /// The store of repository `repo` (its name must already be validated).
    pub fn store(&self, repo: &str) -> Arc<dyn Store> {
        match self {
            Backend::Local(dir) => Arc::new(LocalStore::new(dir.join("repos").join(repo))),
            #[cfg(feature = "s3")]
            Backend::S3(s3) => Arc::new(s3.with_prefix(&format!("repos/{repo}"))),
        }
    }

    /// Whether the backend accepts writes (for `/healthz`): a probe is written and removed.
    pub fn healthy(&self) -> bool {
        let probe = format!("healthz-{}-{}", std::process::id(), rand::random::<u32>());
        let ok = match self {
            Backend::Local(dir) => {
                let path = dir.join("repos").join(format!(".{probe}"));
                std::fs::write(&path, b"ok").and_then(|()| std::fs::remove_file(&path)).map_err(|e| e.to_string())
            }
            #[cfg(feature = "s3")]
            Backend::S3(s3) => {
                let store = s3.with_prefix("healthz");
                store
                    .put(arca_store::ObjectKind::Lock, &probe, b"ok")
                    .and_then(|()| store.delete(arca_store::ObjectKind::Lock, &probe))
                    .map_err(|e| e.to_string())
            }
        };
        if let Err(e) = &ok {
            tracing::warn!("health probe of the object store failed: {e}");
        }
        ok.is_ok()
    }

    /// The store of the server's own objects (its key), apart from every repository.
    fn server_store(&self) -> Arc<dyn Store> {
        match self {
            Backend::Local(dir) => Arc::new(LocalStore::new(dir.join("server"))),
            #[cfg(feature = "s3")]
            Backend::S3(s3) => Arc::new(s3.with_prefix("server")),
        }
    }

    /// The server key ([`crate::secrets`]): `ARCA_SERVER_SECRET` if set, else the one in the
    /// store, created by the first server to start (under the database's lock, so that servers
    /// starting together agree). On local disk the key file is made readable by its owner only.
    pub async fn server_key(&self, db: &Db) -> Result<[u8; 32], String> {
        if let Some(key) = crate::secrets::key_from_env()? {
            return Ok(key);
        }
        let store = self.server_store();
        let local_file = match self {
            Backend::Local(dir) => Some(dir.join("server/keys").join(crate::secrets::KEY_OBJECT)),
            #[cfg(feature = "s3")]
            Backend::S3(_) => None,
        };
        let found = db
            .exclusively(|| async move {
                let io = |e: arca_store::Error| crate::db::DbError::Invalid(format!("the server key: {e}"));
                tokio::task::spawn_blocking(move || -> crate::db::Result<[u8; 32]> {
                    use arca_store::ObjectKind;
                    let name = crate::secrets::KEY_OBJECT;
                    let bytes = match store.get(ObjectKind::Key, name) {
                        Ok(b) => b,
                        Err(e) if e.is_not_found() => {
                            let key = crate::secrets::new_key();
                            store.put(ObjectKind::Key, name, &key).map_err(io)?;
                            key.to_vec()
                        }
                        Err(e) => return Err(io(e)),
                    };
                    if let Some(file) = &local_file {
                        use std::os::unix::fs::PermissionsExt;
                        let _ = std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600));
                    }
                    bytes.try_into().map_err(|_| crate::db::DbError::Invalid("the server key is not 32 bytes".into()))
                })
                .await
                .map_err(|e| crate::db::DbError::Invalid(format!("the server key: {e}")))?
            })
            .await
            .map_err(|e| e.to_string())?;
        Ok(found)
    }

    /// A description for the log.
    pub fn describe(&self) -> String {
        match self {
            Backend::Local(dir) => format!("local disk {}", dir.display()),
            #[cfg(feature = "s3")]
            Backend::S3(s3) => s3.location(),
        }
    }
}

/// Shared server state (cheap to clone).
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    backend: Backend,
    metrics: crate::metrics::Metrics,
    setup_token: Option<String>,
    scrub_rate: std::sync::atomic::AtomicU64,
    limiter: std::sync::RwLock<Arc<crate::ratelimit::RateLimiter>>,
    tls: std::sync::atomic::AtomicBool,
    vault: crate::web::Vault,
    spool_dir: std::sync::RwLock<PathBuf>,
    store_probe: tokio::sync::Mutex<Option<(std::time::Instant, bool)>>,
    signin_throttle: crate::signin::Throttle,
    behind_proxy: std::sync::atomic::AtomicBool,
    disk_reserve: std::sync::atomic::AtomicU64,
    /// Wakes agents' held configuration polls when a plan or job changes.
    agents_notify: tokio::sync::Notify,
}

/// How often `/healthz` really probes the object store (a write and a delete); answers in
/// between reuse the last result.
pub const HEALTH_PROBE_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// Free space kept back on the server's own disk by default: uploads that would eat into it are
/// refused (507), so the metadata database, the audit log and sign-ins keep working on a full
/// server. The smaller of 1 GiB and 5% of the file system.
pub const DEFAULT_DISK_RESERVE: u64 = 1 << 30;

impl AppState {
    /// State over a metadata database and an object backend.
    pub fn new(db: Db, backend: Backend) -> AppState {
        Self::build(db, backend, None)
    }

    fn build(db: Db, backend: Backend, setup_token: Option<String>) -> AppState {
        let scrub_rate = std::sync::atomic::AtomicU64::new(crate::scrub::DEFAULT_RATE);
        let limiter =
            std::sync::RwLock::new(Arc::new(crate::ratelimit::RateLimiter::new(crate::ratelimit::DEFAULT_RATE)));
        AppState {
            inner: Arc::new(Inner {
                db,
                backend,
                metrics: Default::default(),
                setup_token,
                scrub_rate,
                limiter,
                tls: Default::default(),
                vault: crate::web::Vault::new(),
                store_probe: tokio::sync::Mutex::new(None),
                signin_throttle: Default::default(),
                behind_proxy: Default::default(),
                spool_dir: std::sync::RwLock::new(std::env::temp_dir().join("arca-spool")),
                disk_reserve: std::sync::atomic::AtomicU64::new(u64::MAX),
                agents_notify: tokio::sync::Notify::new(),
            }),
        }
    }

    /// What agents' held polls wait on ([`crate::service::agents::agent_config`]).
    pub fn agents_notify(&self) -> &tokio::sync::Notify {
        &self.inner.agents_notify
    }

    /// Wakes every held agent poll of this process: a plan or a job may have changed.
    pub fn agents_changed(&self) {
        self.inner.agents_notify.notify_waiters();
    }

    /// The same, accepting `setup_token` once to create the first provider admin.
    pub fn with_setup_token(db: Db, backend: Backend, setup_token: String) -> AppState {
        Self::build(db, backend, Some(setup_token))
    }

    /// The metadata database.
    pub fn db(&self) -> &Db {
        &self.inner.db
    }

    /// The object backend.
    pub fn backend(&self) -> &Backend {
        &self.inner.backend
    }

    /// The process's metrics.
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.inner.metrics
    }

    /// The first-start setup token, if this process printed one.
    pub fn setup_token(&self) -> Option<&str> {
        self.inner.setup_token.as_deref()
    }

    /// The scrub's read rate limit in bytes per second.
    pub fn scrub_rate(&self) -> u64 {
        self.inner.scrub_rate.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Sets the scrub's read rate limit.
    pub fn set_scrub_rate(&self, bytes_per_sec: u64) {
        self.inner.scrub_rate.store(bytes_per_sec.max(1), std::sync::atomic::Ordering::Relaxed)
    }

    /// The per-token request rate limiter.
    pub fn limiter(&self) -> Arc<crate::ratelimit::RateLimiter> {
        self.inner.limiter.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Sets the per-token request rate (requests per second; 0: unlimited).
    pub fn set_rate_limit(&self, per_sec: f64) {
        *self.inner.limiter.write().unwrap_or_else(|p| p.into_inner()) =
            Arc::new(crate::ratelimit::RateLimiter::new(per_sec));
    }

    /// Records whether this process serves HTTPS (for the URLs pages show).
    pub fn set_tls(&self, tls: bool) {
        self.inner.tls.store(tls, std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether this process serves HTTPS.
    pub fn tls(&self) -> bool {
        self.inner.tls.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Repositories unlocked by browser sessions for restores (memory only).
    pub(crate) fn vault(&self) -> &crate::web::Vault {
        &self.inner.vault
    }

    /// The store of repository `repo`.
    pub fn store(&self, repo: &str) -> Arc<dyn Store> {
        self.inner.backend.store(repo)
    }

    /// The failed sign-in counters ([`crate::signin`]).
    pub(crate) fn signin_throttle(&self) -> &crate::signin::Throttle {
        &self.inner.signin_throttle
    }

    /// Records that a TLS-terminating reverse proxy on this machine or network forwards every
    /// request: its `X-Forwarded-For` names the client and its `X-Forwarded-Proto: https` makes
    /// cookies `Secure` and pages send HSTS. Off by default, since a client could forge both.
    pub fn set_behind_proxy(&self, on: bool) {
        self.inner.behind_proxy.store(on, std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether [`AppState::set_behind_proxy`] is on.
    pub fn behind_proxy(&self) -> bool {
        self.inner.behind_proxy.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Where uploads are spooled for stores without a file system of their own (S3).
    pub fn spool_dir(&self) -> PathBuf {
        self.inner.spool_dir.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Sets where uploads are spooled for S3 (the server's data directory, rather than /tmp).
    pub fn set_spool_dir(&self, dir: PathBuf) {
        *self.inner.spool_dir.write().unwrap_or_else(|p| p.into_inner()) = dir;
    }

    /// Sets the free space kept back on the server's disk (bytes; 0: none; the default is
    /// [`DEFAULT_DISK_RESERVE`] or 5% of the file system, whichever is smaller).
    pub fn set_disk_reserve(&self, bytes: u64) {
        self.inner.disk_reserve.store(bytes, std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether an upload of `len` bytes leaves the disk it is written to above the reserve.
    /// `Err` says what is short, for the log.
    pub fn check_disk_space(&self, len: u64) -> Result<(), String> {
        let dir = match &self.inner.backend {
            Backend::Local(dir) => dir.clone(),
            #[cfg(feature = "s3")]
            Backend::S3(_) => self.spool_dir(),
        };
        // The directory may not exist yet (a new data directory): ask its nearest ancestor.
        let probe = dir.ancestors().find(|d| d.exists()).unwrap_or(&dir).to_path_buf();
        let stat = match rustix::fs::statvfs(&probe) {
            Ok(s) => s,
            Err(e) => return Err(format!("cannot read the free space of {}: {e}", probe.display())),
        };
        let total = stat.f_blocks.saturating_mul(stat.f_frsize);
        let free = stat.f_bavail.saturating_mul(stat.f_frsize);
        let reserve = match self.inner.disk_reserve.load(std::sync::atomic::Ordering::Relaxed) {
            u64::MAX => DEFAULT_DISK_RESERVE.min(total / 20),
            set => set,
        };
        if free.saturating_sub(len) < reserve {
            return Err(format!(
                "{} has {free} bytes free; storing {len} more would leave less than the reserve of {reserve}",
                probe.display()
            ));
        }
        Ok(())
    }

    /// Whether the object store accepted a write at its last probe, probing again when the last
    /// is older than [`HEALTH_PROBE_EVERY`] (one probe at a time; callers meanwhile wait for it).
    pub async fn store_healthy(&self) -> bool {
        let mut last = self.inner.store_probe.lock().await;
        if let Some((at, ok)) = *last {
            if at.elapsed() < HEALTH_PROBE_EVERY {
                return ok;
            }
        }
        let backend = self.inner.backend.clone();
        let ok = tokio::task::spawn_blocking(move || backend.healthy()).await.unwrap_or(false);
        *last = Some((std::time::Instant::now(), ok));
        ok
    }

    /// Whether the server's disk is above its free-space reserve (for `/healthz`).
    pub fn disk_ok(&self) -> bool {
        self.check_disk_space(0).is_ok()
    }
}
