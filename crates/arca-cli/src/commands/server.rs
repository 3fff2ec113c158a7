//! `arca server`: host repositories for `arca` clients, with accounts, quotas, retention locks and
//! metering.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use arca_server::db::accounts::Role;
use arca_server::db::Db;
use arca_server::state::Backend;
use arca_server::AppState;
use clap::Args;
use serde::Deserialize;

use crate::cli::GlobalOpts;

const LONG_ABOUT: &str = "\
Serve repositories to arca clients over HTTP, with tenants, users, devices, quotas, retention
locks, metering and an audit log.

On the embedded defaults everything lives in DATA_DIR: the metadata database (DATA_DIR/arca.db,
SQLite) and the repositories' bytes (DATA_DIR/repos/REPO/). To run several server processes
over shared storage, point them all at one PostgreSQL database and one S3-compatible store:

  --database postgres://USER:PASSWORD@HOST/DB
  --store 's3://BUCKET?endpoint=http://HOST:3900&region=garage'
  (credentials from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)

First start: with ARCA_ADMIN_PASSWORD set, the provider admin `admin` (or ARCA_ADMIN_USER) is
created; otherwise the server prints a one-time setup command. Then, with an admin token
(`arca admin login`), create a plan, a tenant, a repository and a device; the device's token goes
into the client's ARCA_TOKEN:

  arca -r http://HOST:PORT/REPO init

Settings come from flags, then environment variables, then the config file (TOML with the same
names: listen, data_dir, database, store, scrub_every, scrub_rate, gc_every, restore_check_every, tls_cert,
tls_key, rate_limit, alert_webhook, smtp_url, alert_from, alert_to, behind_proxy, disk_reserve). With --tls-cert and
--tls-key the server speaks HTTPS (rustls); without them plain HTTP, for loopback or behind a
TLS-terminating reverse proxy: never send tokens over an untrusted network in clear. Clients
trust the system's certificate authorities, plus the PEM file in ARCA_CA_CERT if set.

Alerts (a device reported a failed backup, a scheduled device is overdue, a tenant passed its
soft quota) go to --alert-webhook as JSON and, with --smtp-url, --alert-from and --alert-to, by
e-mail; undelivered alerts are retried with growing pauses and survive restarts.

Two-factor seeds are sealed in the database under a server key kept in the object store
(server/keys/secret-key), or given as ARCA_SERVER_SECRET (64 hex digits) to every server of a
group. Uploads stop (507) before the disk's free space falls under --disk-reserve.

SIGINT or SIGTERM stops the server after the requests in flight have finished. The log (standard
error) has one line per request with its request id, which internal errors also show the client.

Examples:
  arca server --data-dir /srv/arca
  ARCA_ADMIN_PASSWORD=... arca server --listen 0.0.0.0:8420 --data-dir /srv/arca
  arca server --config /etc/arca/server.toml";

/// `arca server` flags.
#[derive(Debug, Args)]
#[command(about = "Serve repositories over HTTP, with accounts, quotas and retention locks", long_about = LONG_ABOUT)]
pub struct ServerArgs {
    /// Config file (TOML: listen, data_dir, database, store)
    #[arg(long, env = "ARCA_SERVER_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Address and port to listen on (port 0 picks a free one; the address is printed) [default: 127.0.0.1:8420]
    #[arg(long, env = "ARCA_LISTEN", value_name = "ADDR:PORT")]
    pub listen: Option<String>,

    /// Directory for the embedded defaults (DIR/arca.db and DIR/repos/)
    #[arg(long, env = "ARCA_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Metadata database: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [default: sqlite://DATA_DIR/arca.db]
    #[arg(long, env = "ARCA_DATABASE", value_name = "URL")]
    pub database: Option<String>,

    /// Where object bytes go: file://DIR or s3://BUCKET[/PREFIX]?endpoint=URL&region=R [default: file://DATA_DIR]
    #[arg(long, env = "ARCA_STORE", value_name = "URL")]
    pub store: Option<String>,

    /// Hours between scheduled scrubs, which re-hash every stored object (0: only on demand) [default: 24]
    #[arg(long, env = "ARCA_SCRUB_EVERY", value_name = "HOURS")]
    pub scrub_every: Option<u64>,

    /// Scrub read rate limit in MiB/s, so it never starves uploads [default: 50]
    #[arg(long, env = "ARCA_SCRUB_RATE", value_name = "MIB_PER_SEC")]
    pub scrub_rate: Option<u64>,

    /// TLS certificate chain (PEM); with --tls-key the server speaks HTTPS only
    #[arg(long, env = "ARCA_TLS_CERT", value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// TLS private key (PEM: PKCS#8, PKCS#1 or SEC1)
    #[arg(long, env = "ARCA_TLS_KEY", value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Requests per second each token may make, in bursts of twice that (0: unlimited) [default: 1000]
    #[arg(long, env = "ARCA_RATE_LIMIT", value_name = "PER_SEC")]
    pub rate_limit: Option<f64>,

    /// Minutes between retention and garbage-collection passes over every repository (0: only on demand) [default: 60]
    #[arg(long, env = "ARCA_GC_EVERY", value_name = "MINUTES")]
    pub gc_every: Option<u64>,

    /// Hours between the server's restore checks of every repository's newest snapshot (its packs stored, indexed and a sample re-hashed, without customer keys; 0: only on demand) [default: 24]
    #[arg(long, env = "ARCA_RESTORE_CHECK_EVERY", value_name = "HOURS")]
    pub restore_check_every: Option<u64>,

    /// URL that receives every alert as a JSON POST (chat or ticket systems; Slack-style `text` included)
    #[arg(long, env = "ARCA_ALERT_WEBHOOK", value_name = "URL")]
    pub alert_webhook: Option<String>,

    /// SMTP server for alert e-mail: smtp://[USER:PASS@]HOST[:PORT] (plain), add ?tls=required for STARTTLS, or smtps://
    #[arg(long, env = "ARCA_SMTP_URL", value_name = "URL")]
    pub smtp_url: Option<String>,

    /// Sender of alert e-mail
    #[arg(long, env = "ARCA_ALERT_FROM", value_name = "ADDRESS")]
    pub alert_from: Option<String>,

    /// Recipients of alert e-mail, comma-separated
    #[arg(long, env = "ARCA_ALERT_TO", value_name = "ADDRESSES")]
    pub alert_to: Option<String>,

    /// Behind a TLS-terminating reverse proxy that every request passes: trust its X-Forwarded-For (sign-in throttling per client) and X-Forwarded-Proto: https (Secure cookies, HSTS). Never set this when clients can reach the server directly: they could forge both
    #[arg(long, env = "ARCA_BEHIND_PROXY")]
    pub behind_proxy: bool,

    /// Free disk space (MiB) to keep: uploads that would eat into it are refused with 507, so the database, sign-ins and restores keep working on a full disk [default: 1024, or 5% of a smaller disk]
    #[arg(long, env = "ARCA_DISK_RESERVE", value_name = "MIB")]
    pub disk_reserve: Option<u64>,
}

/// The config file's keys.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    database: Option<String>,
    store: Option<String>,
    scrub_every: Option<u64>,
    scrub_rate: Option<u64>,
    gc_every: Option<u64>,
    restore_check_every: Option<u64>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    rate_limit: Option<f64>,
    alert_webhook: Option<String>,
    smtp_url: Option<String>,
    alert_from: Option<String>,
    alert_to: Option<String>,
    behind_proxy: Option<bool>,
    disk_reserve: Option<u64>,
}

/// The settings after merging flags, environment and the config file.
#[derive(Debug)]
struct Settings {
    listen: String,
    database: String,
    store: String,
    data_dir: Option<PathBuf>,
    scrub_every_hours: u64,
    scrub_rate_mib: u64,
    gc_every_minutes: u64,
    restore_check_every_hours: u64,
    tls: Option<(PathBuf, PathBuf)>,
    rate_limit: f64,
    alerts: arca_server::alerts::AlertConfig,
    behind_proxy: bool,
    disk_reserve_mib: Option<u64>,
}

fn settings(a: &ServerArgs) -> Result<Settings> {
    let file = match &a.config {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("reading the config file {}", path.display()))?;
            toml::from_str::<ConfigFile>(&text).with_context(|| format!("config file {}", path.display()))?
        }
        None => ConfigFile::default(),
    };
    let data_dir = a.data_dir.clone().or(file.data_dir);
    let database = a.database.clone().or(file.database);
    let store = a.store.clone().or(file.store);
    let need_dir = || {
        data_dir.clone().ok_or_else(|| {
            anyhow::anyhow!("give --data-dir (or both --database and --store): where should the server keep its data?")
        })
    };
    let database = match database {
        Some(d) => d,
        None => format!("sqlite://{}", need_dir()?.join("arca.db").display()),
    };
    let store = match store {
        Some(s) => s,
        None => format!("file://{}", need_dir()?.display()),
    };
    let listen = a.listen.clone().or(file.listen).unwrap_or_else(|| "127.0.0.1:8420".into());
    let scrub_every_hours = a.scrub_every.or(file.scrub_every).unwrap_or(24);
    let scrub_rate_mib = a.scrub_rate.or(file.scrub_rate).unwrap_or(50).max(1);
    let gc_every_minutes = a.gc_every.or(file.gc_every).unwrap_or(60);
    let restore_check_every_hours = a.restore_check_every.or(file.restore_check_every).unwrap_or(24);
    let tls = match (a.tls_cert.clone().or(file.tls_cert), a.tls_key.clone().or(file.tls_key)) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => anyhow::bail!("TLS needs both a certificate (tls_cert) and a key (tls_key)"),
    };
    let rate_limit = a.rate_limit.or(file.rate_limit).unwrap_or(arca_server::ratelimit::DEFAULT_RATE).max(0.0);
    let email = match (
        a.smtp_url.clone().or(file.smtp_url),
        a.alert_from.clone().or(file.alert_from),
        a.alert_to.clone().or(file.alert_to),
    ) {
        (None, None, None) => None,
        (Some(smtp_url), Some(from), Some(to)) => {
            let from = arca_server::alerts::parse_mailboxes(&from)
                .map_err(anyhow::Error::msg)?
                .pop()
                .context("alert_from is empty")?;
            let to = arca_server::alerts::parse_mailboxes(&to).map_err(anyhow::Error::msg)?;
            anyhow::ensure!(!to.is_empty(), "alert_to names no recipient");
            Some(arca_server::alerts::EmailConfig { smtp_url, from, to })
        }
        _ => anyhow::bail!("alert e-mail needs all three of smtp_url, alert_from and alert_to"),
    };
    let alerts = arca_server::alerts::AlertConfig { webhook: a.alert_webhook.clone().or(file.alert_webhook), email };
    Ok(Settings {
        listen,
        database,
        store,
        data_dir,
        scrub_every_hours,
        scrub_rate_mib,
        gc_every_minutes,
        restore_check_every_hours,
        tls,
        rate_limit,
        alerts,
        behind_proxy: a.behind_proxy || file.behind_proxy.unwrap_or(false),
        disk_reserve_mib: a.disk_reserve.or(file.disk_reserve),
    })
}

/// Runs `arca server` until SIGINT or SIGTERM.
pub fn run(_g: &GlobalOpts, a: &ServerArgs) -> Result<i32> {
    let s = settings(a)?;
    if let Some(dir) = &s.data_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating the data directory {}", dir.display()))?;
    }
    let backend = Backend::from_url(&s.store).map_err(anyhow::Error::msg).context("opening the object store")?;
    if let Backend::Local(dir) = &backend {
        std::fs::create_dir_all(dir.join("repos"))
            .with_context(|| format!("creating the repository directory {}", dir.join("repos").display()))?;
    }
    // The command-line SIGINT handler exits at once; the server stops gracefully instead.
    // SAFETY: restoring the default action before any handler of the runtime is installed.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_DFL);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("arca-server")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let db = Db::connect(&s.database)
            .await
            .with_context(|| format!("opening the metadata database {}", arca_server::db::redact(&s.database)))?;
        // Two-factor seeds are sealed at rest with the server key, kept outside the database.
        let key = backend.server_key(&db).await.map_err(anyhow::Error::msg).context("loading the server key")?;
        db.set_secret_box(arca_server::secrets::SecretBox::new(&key));
        let sealed = db.seal_plaintext_secrets().await.context("sealing two-factor secrets")?;
        if sealed > 0 {
            tracing::info!("sealed {sealed} two-factor secrets that were stored in plaintext");
        }
        let listener = std::net::TcpListener::bind(&s.listen).with_context(|| format!("listening on {}", s.listen))?;
        let addr = listener.local_addr().context("reading the listening address")?;
        let state =
            bootstrap(db, backend.clone(), &format!("{}://{addr}", if s.tls.is_some() { "https" } else { "http" }))
                .await?;
        state.set_scrub_rate(s.scrub_rate_mib << 20);
        state.set_rate_limit(s.rate_limit);
        state.set_tls(s.tls.is_some());
        state.set_behind_proxy(s.behind_proxy);
        if let Some(mib) = s.disk_reserve_mib {
            state.set_disk_reserve(mib.saturating_mul(1 << 20));
        }
        if let Some(dir) = &s.data_dir {
            // Uploads bound for S3 are spooled here rather than in /tmp (often a small tmpfs).
            state.set_spool_dir(dir.join("spool"));
        }
        let scheme = if s.tls.is_some() { "https" } else { "http" };
        println!("arca server listening on {scheme}://{addr}");
        use std::io::Write;
        let _ = std::io::stdout().flush();
        tracing::info!(
            "serving on {scheme}://{addr}: metadata in {}, objects on {}",
            arca_server::db::redact(&s.database),
            backend.describe()
        );
        arca_server::branding::refresh(state.db()).await;
        let sweeper = tokio::spawn(housekeeping(
            state.clone(),
            s.scrub_every_hours,
            s.gc_every_minutes,
            s.restore_check_every_hours,
        ));
        let notifier = if s.alerts.enabled() {
            Some(arca_server::alerts::Notifier::new(s.alerts.clone()).map_err(anyhow::Error::msg)?)
        } else {
            tracing::info!(
                "no alert channel configured (--alert-webhook, --smtp-url): alerts are only listed in the console"
            );
            None
        };
        let alerter = tokio::spawn(alert_loop(state.clone(), notifier));
        match &s.tls {
            Some((cert, key)) => arca_server::serve_tls(listener, state, cert, key, arca_server::shutdown_signal())
                .await
                .context("serving HTTPS")?,
            None => {
                listener.set_nonblocking(true).context("preparing the listener")?;
                let listener = tokio::net::TcpListener::from_std(listener).context("preparing the listener")?;
                arca_server::serve(listener, state, arca_server::shutdown_signal()).await.context("serving")?
            }
        }
        sweeper.abort();
        alerter.abort();
        tracing::info!("stopped");
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(crate::exit::OK)
}

/// Creates the first provider admin, or prints how to, and returns the application state.
async fn bootstrap(db: Db, backend: Backend, url: &str) -> Result<AppState> {
    if db.has_provider_admin().await? {
        return Ok(AppState::new(db, backend));
    }
    let user = std::env::var("ARCA_ADMIN_USER").ok().filter(|u| !u.trim().is_empty()).unwrap_or("admin".into());
    if let Some(password) = std::env::var("ARCA_ADMIN_PASSWORD").ok().filter(|p| !p.is_empty()) {
        match db.create_user(&user, &password, Role::ProviderAdmin, None).await {
            Ok(_) => {
                let entry = arca_server::db::audit::NewAudit {
                    actor: "server",
                    action: "setup",
                    target: &user,
                    outcome: "ok",
                    detail: "first provider admin from ARCA_ADMIN_PASSWORD",
                    ..Default::default()
                };
                db.audit(entry).await?;
                println!("created the provider admin {user:?} (from ARCA_ADMIN_PASSWORD)");
            }
            // Another server process of a scale-out pair was quicker.
            Err(arca_server::db::DbError::Conflict(_)) => {}
            Err(e) => return Err(anyhow::Error::new(e).context("creating the provider admin")),
        }
        return Ok(AppState::new(db, backend));
    }
    let token = arca_server::db::accounts::new_token();
    println!("No provider admin exists yet. Create one (valid until this server stops) in a browser:");
    println!("  {url}/setup?token={token}");
    println!("or with: arca admin setup --server {url} --setup-token {token} --user admin");
    println!("or restart the server with ARCA_ADMIN_PASSWORD set.");
    Ok(AppState::with_setup_token(db, backend, token))
}

/// Every few seconds: raise alerts for overdue backups and deliver the alerts that are due.
async fn alert_loop(state: AppState, notifier: Option<arca_server::alerts::Notifier>) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        // A brand changed through another server process shows here within a tick.
        arca_server::branding::refresh(state.db()).await;
        arca_server::alerts::tick(&state, notifier.as_ref()).await;
    }
}

/// Periodic upkeep: retention and garbage collection, the restore checks of every repository's
/// newest snapshot, quota reservations of uploads that died with a server, and the scheduled
/// scrub when the newest one (by any server process) is older than the interval.
async fn housekeeping(state: AppState, scrub_every_hours: u64, gc_every_minutes: u64, restore_check_every_hours: u64) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    let mut last_gc = std::time::Instant::now();
    let mut last_restore_check = std::time::Instant::now();
    loop {
        tick.tick().await;
        if gc_every_minutes > 0 && last_gc.elapsed() >= Duration::from_secs(gc_every_minutes * 60) {
            last_gc = std::time::Instant::now();
            if let Err(e) = arca_server::gc::collect_all(&state).await {
                tracing::warn!("retention and garbage collection: {e}");
            }
        }
        if restore_check_every_hours > 0
            && last_restore_check.elapsed() >= Duration::from_secs(restore_check_every_hours * 3600)
        {
            last_restore_check = std::time::Instant::now();
            if let Err(e) = arca_server::restore_check::check_all(&state, None).await {
                tracing::warn!("restore checks: {e}");
            }
        }
        match state.db().sweep_reservations().await {
            Ok(0) => {}
            Ok(n) => tracing::info!("released {n} expired quota reservations"),
            Err(e) => tracing::warn!("sweeping quota reservations: {e}"),
        }
        if scrub_every_hours == 0 {
            continue;
        }
        let due = match state.db().scrub_runs(1).await {
            Ok(runs) => runs.first().is_none_or(|r| {
                r.state != "running" && arca_server::db::now() - r.started_at >= (scrub_every_hours * 3600) as i64
            }),
            Err(e) => {
                tracing::warn!("reading scrub runs: {e}");
                false
            }
        };
        if due {
            match arca_server::scrub::start(&state, "scheduled").await {
                Ok(Some(id)) => tracing::info!("scheduled scrub {id} started"),
                Ok(None) => {}
                Err(e) => tracing::warn!("starting the scheduled scrub: {e}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> ServerArgs {
        ServerArgs {
            config: None,
            listen: None,
            data_dir: None,
            database: None,
            store: None,
            scrub_every: None,
            scrub_rate: None,
            gc_every: None,
            restore_check_every: None,
            tls_cert: None,
            tls_key: None,
            rate_limit: None,
            alert_webhook: None,
            smtp_url: None,
            alert_from: None,
            alert_to: None,
            behind_proxy: false,
            disk_reserve: None,
        }
    }

    #[test]
    fn alert_email_needs_server_sender_and_recipients() {
        let mut a = args();
        a.data_dir = Some("/tmp/x".into());
        assert!(!settings(&a).unwrap().alerts.enabled());
        a.smtp_url = Some("smtp://127.0.0.1:25".into());
        assert!(settings(&a).is_err(), "a server without a sender and recipients");
        a.alert_from = Some("arca@provider.example".into());
        a.alert_to = Some("ops@provider.example, oncall@provider.example".into());
        let s = settings(&a).unwrap();
        assert_eq!(s.alerts.email.as_ref().unwrap().to.len(), 2);
        a.alert_to = Some("not an address".into());
        assert!(settings(&a).is_err());
    }

    #[test]
    fn defaults_come_from_the_data_directory() {
        let mut a = args();
        assert!(settings(&a).is_err(), "no data directory and no database/store");
        a.data_dir = Some("/srv/arca".into());
        let s = settings(&a).unwrap();
        assert_eq!(s.database, "sqlite:///srv/arca/arca.db");
        assert_eq!(s.store, "file:///srv/arca");
        assert_eq!(s.listen, "127.0.0.1:8420");
    }

    #[test]
    fn flags_override_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.toml");
        std::fs::write(&path, "listen = \"0.0.0.0:9000\"\ndatabase = \"postgres://a@b/c\"\nstore = \"file:///x\"\n")
            .unwrap();
        let mut a = args();
        a.config = Some(path.clone());
        a.listen = Some("127.0.0.1:1".into());
        let s = settings(&a).unwrap();
        assert_eq!(
            (s.listen.as_str(), s.database.as_str(), s.store.as_str()),
            ("127.0.0.1:1", "postgres://a@b/c", "file:///x")
        );
        std::fs::write(&path, "lisen = \"typo\"\n").unwrap();
        assert!(settings(&a).is_err(), "unknown keys are refused");
    }
}
