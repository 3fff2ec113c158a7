//! The running appliance: opens the local repository, starts one scheduler task per share and the
//! replication task, and serves the WebDAV shares and the status page on one listener.
//!
//! What may run at the same time: WebDAV requests (any number; they read the local repository's
//! snapshots through the catalogue's current view and never wait for jobs); at most one snapshot
//! job (shares take turns through `jobs`); one replication pass.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;

use arca_core::crypto::MasterKey;
use arca_core::repository::{DynStore, Repository};
use arca_store::LocalStore;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{Local, Utc};
use tokio::net::TcpListener;

use crate::catalog::Catalog;
use crate::config::{Config, ShareConfig};
use crate::drill::{drill_share, DrillOutcome};
use crate::error::{Error, ErrorKind, Result};
use crate::replicate::Replicator;
use crate::schedule::Schedule;
use crate::share::Dav;
use crate::snapshot::snapshot_share;
use crate::status::{ReplicationStatus, ShareStatus, SnapshotRef, Status, StatusBoard};
use crate::users::Users;

/// The parts the tasks share.
struct Shared {
    store: DynStore,
    key: MasterKey,
    catalog: Arc<Catalog>,
    status: Arc<StatusBoard>,
    jobs: tokio::sync::Mutex<()>,
    replicate: Arc<tokio::sync::Notify>,
    /// The shares as they are now (the admin page adds and removes them).
    shares: std::sync::RwLock<BTreeMap<String, ShareConfig>>,
    /// Each share's schedule task.
    schedules: std::sync::Mutex<HashMap<String, tokio::task::JoinHandle<()>>>,
    data_dir: std::path::PathBuf,
    /// When this run started: temporary upload files older than this are leftovers.
    started: std::time::SystemTime,
}

impl Shared {
    fn shares(&self) -> BTreeMap<String, ShareConfig> {
        self.shares.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn share(&self, name: &str) -> Option<ShareConfig> {
        self.shares.read().unwrap_or_else(|p| p.into_inner()).get(name).cloned()
    }
}

/// Starts share `name`'s schedule (replacing a running one), or warns that it has none; sweeps
/// the temporary files that uploads cut off by an earlier run left in its folder.
fn start_share(shared: &Arc<Shared>, name: &str, share: &ShareConfig) {
    let mut schedules = shared.schedules.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(old) = schedules.remove(name) {
        old.abort();
    }
    match share.schedule.as_deref().map(Schedule::parse) {
        Some(Ok(schedule)) => {
            shared.status.share(name, |s| s.warning = None);
            let task = tokio::spawn(schedule_loop(shared.clone(), name.to_string(), share.clone(), schedule));
            schedules.insert(name.to_string(), task);
        }
        Some(Err(e)) => {
            // Checked when the share was configured; kept as a warning rather than a panic.
            tracing::error!("share {name}: {e}");
            shared.status.share(name, |s| s.warning = Some(e.to_string()));
        }
        None => {
            let warning = format!(
                "share {name} has no schedule: it is snapshotted only when asked (`arca appliance snapshot --share \
                 {name}`); add schedule = \"0 0 * * * *\" (hourly) to its section of the configuration"
            );
            tracing::warn!("{warning}");
            shared.status.share(name, |s| s.warning = Some(warning));
        }
    }
    // Uploads cut off by a crash or a kill of an earlier run left their temporary files.
    let (folder, name, started) = (share.path.clone(), name.to_string(), shared.started);
    tokio::task::spawn_blocking(move || match crate::share::upload::sweep_stale(&folder, started) {
        Ok(0) => {}
        Ok(n) => tracing::info!("share {name}: removed {n} temporary files of uploads cut off earlier"),
        Err(e) => tracing::warn!("share {name}: removing cut-off uploads under {}: {e}", folder.display()),
    });
}

/// What changes when the admin page changes the shares.
struct ShareFronts {
    shared: Arc<Shared>,
    dav: Arc<Dav>,
    samba: Option<Arc<crate::smb::Samba>>,
}

impl ShareFronts {
    /// Makes `next` the shares: stored first (`shares.toml`), then the catalogue, WebDAV, the
    /// schedules, the status page and SMB follow. Snapshots of a removed share stay in the
    /// repository; its schedule stops.
    async fn apply(&self, next: BTreeMap<String, ShareConfig>) -> Result<()> {
        let shared = &self.shared;
        crate::managed::save(
            &crate::managed::shares_file(&shared.data_dir),
            &crate::managed::Shares { shares: next.clone() },
        )?;
        let previous = shared.shares();
        *shared.shares.write().unwrap_or_else(|p| p.into_inner()) = next.clone();
        let folders: BTreeMap<String, std::path::PathBuf> =
            next.iter().map(|(n, s)| (n.clone(), s.path.clone())).collect();
        let catalog = shared.catalog.clone();
        blocking(move || catalog.set_shares(folders)).await?;
        self.dav.set_shares(&next);
        let view = shared.catalog.view();
        for name in previous.keys().filter(|n| !next.contains_key(*n)) {
            if let Some(task) = shared.schedules.lock().unwrap_or_else(|p| p.into_inner()).remove(name) {
                task.abort();
            }
            shared.status.update(|s| {
                s.shares.remove(name);
            });
        }
        for (name, share) in &next {
            let before = previous.get(name);
            let changed = before.is_none_or(|b| b.path != share.path || b.schedule != share.schedule);
            if changed {
                let snaps = view.shares.get(name).cloned().unwrap_or_default();
                let entry = ShareStatus {
                    path: share.path.display().to_string(),
                    schedule: share.schedule.clone(),
                    snapshots: snaps.len(),
                    last_snapshot: snaps.last().map(|l| SnapshotRef { id: l.id.to_hex(), time: l.time }),
                    ..ShareStatus::default()
                };
                shared.status.update(|s| {
                    s.shares.insert(name.clone(), entry);
                });
                start_share(shared, name, share);
            }
        }
        if let Some(samba) = &self.samba {
            samba.reload_shares(&next)?;
        }
        Ok(())
    }
}

/// A started appliance: its address, and the future that serves it.
pub struct Running {
    /// The address it listens on (with the real port when the configuration said 0).
    pub addr: SocketAddr,
    /// The backup target's address, if one is configured.
    pub target_addr: Option<SocketAddr>,
    /// `https` with `[tls]`, else `http`.
    pub scheme: &'static str,
    server: std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<()>> + Send>>,
}

impl Running {
    /// Serves until the process ends (or the listener fails).
    pub async fn serve(self) -> Result<()> {
        self.server.await.map_err(|e| Error::new(ErrorKind::Io, format!("serving: {e}")))
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::new(ErrorKind::Io, format!("a worker thread failed: {e}")))?
}

/// Opens everything `config` names, starts the tasks and binds the listener.
pub async fn start(mut config: Config) -> Result<Running> {
    // Users and shares changed on the admin page replace the configuration's sections.
    if let Some(m) =
        crate::managed::overrides::<crate::managed::Users>(&crate::managed::users_file(&config.data_dir), "users")?
    {
        config.users = m.users;
    }
    if let Some(m) =
        crate::managed::overrides::<crate::managed::Shares>(&crate::managed::shares_file(&config.data_dir), "shares")?
    {
        config.shares = m.shares;
    }
    let password = config.repository.password()?;
    let repo_path = config.repository.path.clone();
    std::fs::create_dir_all(&config.data_dir).map_err(|e| {
        Error::new(ErrorKind::Io, format!("creating the data directory {}: {e}", config.data_dir.display()))
    })?;
    let data_lock = lock_data_dir(&config.data_dir)?;
    let started = std::time::SystemTime::now();
    let store: DynStore = Arc::new(LocalStore::new(&repo_path));
    let s = store.clone();
    let key = blocking(move || {
        let repo = Repository::open(s, password.as_bytes())
            .map_err(|e| Error::from(e).context(format!("opening the local repository {}", repo_path.display())))?;
        Ok(repo.key().as_ref().clone())
    })
    .await?;
    let folders = config.shares.iter().map(|(n, s)| (n.clone(), s.path.clone())).collect();
    let (s, k) = (store.clone(), key.clone());
    let catalog = Arc::new(blocking(move || Catalog::open(s, k, folders)).await?);

    let mut status =
        Status { version: env!("CARGO_PKG_VERSION").to_string(), started: Some(Utc::now()), ..Status::default() };
    let view = catalog.view();
    for (name, share) in &config.shares {
        let snaps = view.shares.get(name).cloned().unwrap_or_default();
        status.shares.insert(
            name.clone(),
            ShareStatus {
                path: share.path.display().to_string(),
                schedule: share.schedule.clone(),
                snapshots: snaps.len(),
                last_snapshot: snaps.last().map(|s| SnapshotRef { id: s.id.to_hex(), time: s.time }),
                ..ShareStatus::default()
            },
        );
    }
    if let Some(p) = &config.provider {
        status.replication = Some(ReplicationStatus {
            provider: p.url.clone(),
            state: "starting".into(),
            upload_limit: p.upload_limit.map(|r| r.0),
            ..ReplicationStatus::default()
        });
    }
    let status = Arc::new(StatusBoard::new(status, Some(config.data_dir.join("status.json"))));
    let shared = Arc::new(Shared {
        store: store.clone(),
        key,
        catalog: catalog.clone(),
        status: status.clone(),
        jobs: tokio::sync::Mutex::new(()),
        replicate: Arc::new(tokio::sync::Notify::new()),
        shares: std::sync::RwLock::new(config.shares.clone()),
        schedules: std::sync::Mutex::new(HashMap::new()),
        data_dir: config.data_dir.clone(),
        started,
    });

    for (name, share) in &config.shares {
        start_share(&shared, name, share);
    }
    let mut replicator = None;
    if let Some(p) = &config.provider {
        // The HTTP client is a blocking one: it must be made (and dropped) off the async threads.
        let (p, root, st, data) = (p.clone(), config.repository.path.clone(), status.clone(), config.data_dir.clone());
        let r = Arc::new(blocking(move || Replicator::new(store, root, &data, &p, st)).await?);
        tokio::spawn(r.clone().run(shared.replicate.clone()));
        replicator = Some(r);
    }
    if let Some(d) = &config.drill {
        let schedule = Schedule::parse(&d.schedule)?;
        let scratch = d.scratch.clone().unwrap_or_else(|| config.data_dir.join("drill"));
        tokio::spawn(drill_loop(shared.clone(), d.sample(), scratch, schedule, replicator));
    }

    // SMB before the WebDAV listener: when `start` returns, every front answers.
    let samba = match &config.smb {
        Some(_) => Some(Arc::new(crate::smb::start(&config, catalog.clone(), status.clone()).await?)),
        None => None,
    };
    let hashes = config.users.iter().map(|(n, u)| (n.clone(), u.password_hash.clone())).collect();
    let users = Arc::new(blocking(move || Ok(Users::new(hashes))).await?);
    let dav = Arc::new(Dav::new(&config.shares, users.clone(), catalog.clone(), config.max_upload.0));
    if config.admin.is_some() && config.tls.is_none() {
        tracing::warn!(
            "the admin page is served over plain HTTP: its password crosses the network readable; add a [tls] \
             section (a self-signed certificate is made if none is given)"
        );
    }
    let admin = config.admin.as_ref().map(|a| {
        let jobs = shared.clone();
        let snapshot: crate::admin::SnapshotFn = Arc::new(move |name: String| {
            let (jobs, share) = (jobs.clone(), jobs.share(&name));
            Box::pin(async move {
                let share = share.ok_or_else(|| Error::config(format!("there is no share {name}")))?;
                run_job(&jobs, &name, &share).await
            })
        });
        let (jobs, from) = (shared.clone(), config.repository.path.clone());
        let export: crate::admin::ExportFn = Arc::new(move |to: std::path::PathBuf| {
            let (jobs, from) = (jobs.clone(), from.clone());
            Box::pin(async move {
                // No snapshot or prune while the repository is copied: the copy is then whole.
                let _turn = jobs.jobs.lock().await;
                blocking(move || {
                    crate::recover::pull(&LocalStore::new(&from), &LocalStore::new(&to))
                        .map_err(|e| e.context(format!("exporting to {}", to.display())))
                })
                .await
            })
        });
        let fronts = Arc::new(ShareFronts { shared: shared.clone(), dav: dav.clone(), samba: samba.clone() });
        let set_shares: crate::admin::SharesFn = Arc::new(move |next| {
            let fronts = fronts.clone();
            Box::pin(async move { fronts.apply(next).await })
        });
        crate::admin::Admin::new(crate::admin::AdminParts {
            password_hash: a.password_hash.clone(),
            users: users.clone(),
            user_configs: config.users.clone(),
            shares: config.shares.clone(),
            set_shares,
            repository_dir: config.repository.path.clone(),
            samba: samba.clone(),
            status: status.clone(),
            data_dir: config.data_dir.clone(),
            secure: config.tls.is_some(),
            snapshot,
            export,
            catalog: catalog.clone(),
            smb: config.smb.is_some(),
        })
    });
    let now = Arc::new(SnapshotNow { shared: shared.clone(), users });
    let mut app = Router::new()
        .route("/", get(|| async { Redirect::to("/status") }))
        .route("/snapshot/{share}", post(snapshot_now))
        .with_state(now)
        .merge(dav.router())
        .merge(status.router());
    if let Some(admin) = &admin {
        app = app.merge(admin.router());
    }
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| Error::new(ErrorKind::Io, format!("listening on {}: {e}", config.listen)))?;
    let addr = listener.local_addr().map_err(|e| Error::new(ErrorKind::Io, e.to_string()))?;
    tracing::info!("appliance listening on {addr}");
    let mut target_addr = None;
    if let Some(t) = &config.backup_target {
        let (taddr, serve_target) = crate::target::start(t).await?;
        tracing::info!("backup target listening on {taddr}");
        target_addr = Some(taddr);
        tokio::spawn(async move {
            if let Err(e) = serve_target.await {
                tracing::error!("the backup target stopped: {e}");
            }
        });
    }
    let tls = match &config.tls {
        Some(t) => Some(crate::tls::prepare(t, &config.data_dir, addr)?),
        None => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let server = Box::pin(async move {
        // Held while serving: a second appliance on this data directory is refused.
        let _data_lock = data_lock;
        // smbd runs (and previous versions stay mounted) while the appliance serves.
        let _samba = samba;
        match tls {
            None => axum::serve(listener, app).await,
            Some(files) => {
                let listener = listener.into_std()?;
                arca_server::serve_router_tls(listener, app, &files.cert, &files.key, std::future::pending()).await
            }
        }
    });
    Ok(Running { addr, target_addr, scheme, server })
}

/// Takes share `name`'s snapshots on its schedule, forever.
async fn schedule_loop(shared: Arc<Shared>, name: String, share: ShareConfig, schedule: Schedule) {
    loop {
        let Some(next) = schedule.next_after(Local::now()) else {
            tracing::warn!("share {name}: schedule {} never fires again", schedule.as_str());
            return;
        };
        shared.status.share(&name, |s| s.next_snapshot = Some(next.with_timezone(&Utc)));
        let wait = (next - Local::now()).to_std().unwrap_or_default();
        tokio::time::sleep(wait).await;
        // Its outcome is on the status page; the error was logged.
        let _ = run_job(&shared, &name, &share).await;
    }
}

/// Drills every share's newest snapshot on `schedule`, forever; results go to the status page
/// and, through `provider`, to the provider's console.
async fn drill_loop(
    shared: Arc<Shared>,
    sample: Option<usize>,
    scratch: std::path::PathBuf,
    schedule: Schedule,
    provider: Option<Arc<Replicator>>,
) {
    loop {
        let Some(next) = schedule.next_after(Local::now()) else {
            tracing::warn!("drill schedule {} never fires again", schedule.as_str());
            return;
        };
        tokio::time::sleep((next - Local::now()).to_std().unwrap_or_default()).await;
        let mut lines = Vec::new();
        let mut all_passed = true;
        let shares: Vec<String> = shared.shares().into_keys().collect();
        for name in &shares {
            let _turn = shared.jobs.lock().await;
            let (store, key, n, dir) = (shared.store.clone(), shared.key.clone(), name.clone(), scratch.clone());
            let outcome = match blocking(move || drill_share(store, key, &n, sample, &dir)).await {
                Ok(Some(o)) => o,
                Ok(None) => continue,
                Err(e) => {
                    tracing::error!("drill of share {name}: {e}");
                    DrillOutcome { time: Utc::now(), passed: false, summary: format!("share {name}: {e}") }
                }
            };
            all_passed &= outcome.passed;
            lines.push(outcome.summary.clone());
            shared.status.share(name, |s| s.last_drill = Some(outcome));
        }
        if let (Some(p), false) = (&provider, lines.is_empty()) {
            let outcome = if all_passed { "drill" } else { "drill-failed" };
            if let Err(e) = p.clone().report(outcome, lines.join(" · ")).await {
                tracing::warn!("could not report the drill to the provider: {e}");
            }
        }
    }
}

/// Takes the data directory's lock (`appliance.lock`, an exclusive `flock` held while the process
/// lives): two appliances on one data directory would snapshot, prune and replicate the same
/// repository and overwrite each other's state. The holder's pid is written into the file.
fn lock_data_dir(dir: &std::path::Path) -> Result<std::fs::File> {
    use std::io::Write;
    let path = dir.join("appliance.lock");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| Error::new(ErrorKind::Io, format!("opening {}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            return Err(Error::config(format!(
                "another appliance (pid {}) is running on the data directory {}; stop it first, or give this one \
                 its own data_dir",
                holder.trim(),
                dir.display()
            )));
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(Error::new(ErrorKind::Io, format!("locking {}: {e}", path.display())))
        }
    }
    let pid = std::process::id().to_string();
    if let Err(e) = file.set_len(0).and_then(|_| file.write_all(pid.as_bytes())) {
        tracing::warn!("writing the pid into {}: {e}", path.display());
    }
    Ok(file)
}

/// What `POST /snapshot/{share}` needs.
struct SnapshotNow {
    shared: Arc<Shared>,
    users: Arc<Users>,
}

/// `POST /snapshot/{share}`: takes a snapshot of the share now, as its schedule would (after a job
/// that is running), and answers with what it did. Any user of the share may ask (HTTP Basic).
async fn snapshot_now(State(now): State<Arc<SnapshotNow>>, Path(name): Path<String>, headers: HeaderMap) -> Response {
    use crate::share::webdav::{basic_credentials, unauthorized};
    let Some((user, password)) = basic_credentials(&headers) else { return unauthorized() };
    if !now.users.verify(&user, &password).await {
        tracing::warn!(user = %user, "snapshot now: wrong user name or password");
        return unauthorized();
    }
    let Some(share) = now.shared.share(&name) else {
        return (StatusCode::NOT_FOUND, Json(serde_json::json!({ "error": format!("there is no share {name}") })))
            .into_response();
    };
    if !share.users.is_empty() && !share.users.contains(&user) {
        return (
            StatusCode::FORBIDDEN,
            Json(serde_json::json!({ "error": format!("user {user} may not use share {name}") })),
        )
            .into_response();
    }
    tracing::info!(user = %user, "share {name}: snapshot asked for");
    match run_job(&now.shared, &name, &share).await {
        Ok(done) => Json(done).into_response(),
        Err(e) => {
            (StatusCode::INTERNAL_SERVER_ERROR, Json(serde_json::json!({ "error": e.to_string() }))).into_response()
        }
    }
}

/// Runs one snapshot job of share `name` and records its outcome.
async fn run_job(shared: &Arc<Shared>, name: &str, share: &ShareConfig) -> Result<crate::snapshot::SnapshotDone> {
    let _turn = shared.jobs.lock().await;
    let (store, key, n, folder) = (shared.store.clone(), shared.key.clone(), name.to_string(), share.path.clone());
    let policy = share.retention.policy();
    let outcome = blocking(move || snapshot_share(store, key, &n, &folder, &policy?)).await;
    let catalog = shared.catalog.clone();
    if let Err(e) = blocking(move || catalog.refresh()).await {
        tracing::warn!("refreshing previous versions: {e}");
    }
    let count = shared.catalog.view().shares.get(name).map_or(0, |l| l.len());
    match outcome {
        Ok(done) => {
            tracing::info!("share {name}: snapshot {} ({} files, {} bytes new)", &done.id[..8], done.files, done.added);
            shared.status.share(name, |s| {
                s.last_snapshot = Some(SnapshotRef { id: done.id.clone(), time: done.time });
                s.last_run = Some(Utc::now());
                s.last_error = if done.warnings.is_empty() {
                    None
                } else {
                    Some(format!("{} entries could not be read: {}", done.warnings.len(), done.warnings[0]))
                };
                s.snapshots = count;
            });
            shared.replicate.notify_one();
            Ok(done)
        }
        Err(e) => {
            tracing::error!("share {name}: {e}");
            shared.status.share(name, |s| {
                s.last_run = Some(Utc::now());
                s.last_error = Some(e.to_string());
                s.snapshots = count;
            });
            Err(e)
        }
    }
}
