//! `arca appliance`: runs the office appliance (see the `arca-appliance` crate), makes password
//! hashes for its users, and reports its status.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use arca_appliance::status::Status;
use arca_appliance::Config;
use clap::{Args, Subcommand};

use crate::cli::GlobalOpts;
use crate::output::print_json;

const ABOUT: &str = "\
Run the office appliance: WebDAV shares (and SMB shares through Samba, with snapshots as
Windows Previous Versions, when the configuration has an [smb] section), scheduled snapshots into a local repository, previous
versions under /.snapshots in every share (not listed, so copying a share does not copy its
history: open <share>/.snapshots/ by its path), and replication to the provider.

The configuration file is described in the arca-appliance crate's documentation (config.rs).
The local repository must exist first: `arca init -r /var/lib/arca-appliance/repo`.

Examples:
  arca appliance --config /etc/arca/appliance.toml
  ARCA_NEW_PASSWORD=... arca appliance hash-password
  ARCA_NEW_PASSWORD=... arca appliance hash-password --smb   # both lines of a user for SMB
  ARCA_SHARE_PASSWORD=... arca appliance -c /etc/arca/appliance.toml snapshot --share docs --user alice
  arca appliance --config /etc/arca/appliance.toml status --json";

/// `arca appliance`.
#[derive(Debug, Args)]
#[command(about = "Run the office appliance (file share, snapshots, replication)", long_about = ABOUT)]
pub struct ApplianceArgs {
    /// The appliance's configuration file
    #[arg(long, short = 'c', value_name = "FILE", env = "ARCA_APPLIANCE_CONFIG", global = true)]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Option<ApplianceCommand>,
}

/// Subcommands of `arca appliance` (none: run it).
#[derive(Debug, Subcommand)]
pub enum ApplianceCommand {
    /// Print an Argon2id hash of a share user's password, for `password_hash` in the configuration
    /// (the password comes from ARCA_NEW_PASSWORD or a prompt)
    HashPassword {
        /// Print both lines of the user's section, `password_hash` and the `nt_hash` SMB sign-in
        /// needs (NTLM checks nothing else; keep the configuration readable by root only)
        #[arg(long)]
        smb: bool,
    },
    /// Disaster recovery: pull the repository back from the provider, then restore every share's
    /// (or the given shares') newest snapshot into its folder, which must be empty unless --force
    Restore {
        /// Only this share (repeatable; default: all)
        #[arg(long = "share", value_name = "NAME")]
        shares: Vec<String>,
        /// Restore into folders that are not empty (rewriting files that differ)
        #[arg(long)]
        force: bool,
        /// Only pull the repository from the provider; restore no share
        #[arg(long)]
        pull_only: bool,
        /// Pull only each share's newest snapshot and the data it needs, not the history (a
        /// faster recovery; older versions stay at the provider)
        #[arg(long)]
        latest_only: bool,
    },
    /// Seeding: copy the local repository to a directory (a removable disk) for the provider's
    /// `arca admin import`; copies only what the directory lacks, so it can be rerun
    Export {
        /// The directory to copy to
        #[arg(long, value_name = "DIR")]
        to: PathBuf,
    },
    /// Take a snapshot of a share now, on the running appliance (as one of the share's users; the
    /// password comes from ARCA_SHARE_PASSWORD or a prompt); waits for it and prints what it did
    Snapshot {
        /// The share
        #[arg(long, value_name = "NAME")]
        share: String,
        /// The share user to sign in as
        #[arg(long, value_name = "USER", env = "ARCA_SHARE_USER")]
        user: String,
        /// The appliance's address, if the configuration's listen address does not reach it
        #[arg(long, value_name = "URL")]
        url: Option<String>,
    },
    /// Show what a running appliance is doing (from its /status.json, or its last recorded state);
    /// exits 3 when something needs attention (a backlog alert, a share without a schedule or
    /// whose last snapshot failed)
    Status {
        /// The appliance's address, if the configuration's listen address does not reach it
        #[arg(long, value_name = "URL")]
        url: Option<String>,
    },
}

/// Runs `arca appliance`.
pub fn run(g: &GlobalOpts, a: &ApplianceArgs) -> Result<i32> {
    match &a.command {
        Some(ApplianceCommand::HashPassword { smb }) => hash_password(*smb),
        Some(ApplianceCommand::Status { url }) => status(g, a, url.as_deref()),
        Some(ApplianceCommand::Snapshot { share, user, url }) => snapshot_now(g, a, share, user, url.as_deref()),
        Some(ApplianceCommand::Export { to }) => {
            let c = config(a)?;
            let from = arca_store::LocalStore::new(&c.repository.path);
            let (objects, bytes) = arca_appliance::recover::pull(&from, &arca_store::LocalStore::new(to))
                .with_context(|| format!("exporting to {}", to.display()))?;
            println!("exported {objects} objects ({bytes} bytes) to {}", to.display());
            Ok(crate::exit::OK)
        }
        Some(ApplianceCommand::Restore { shares, force, pull_only, latest_only }) => {
            let opts = arca_appliance::recover::RecoverOptions {
                shares: shares.clone(),
                force: *force,
                pull_only: *pull_only,
                latest_only: *latest_only,
            };
            let report = arca_appliance::recover::recover(&config(a)?, &opts).context("disaster recovery")?;
            if g.json {
                print_json(&report)?;
            } else {
                println!("pulled {} objects ({} bytes) from the provider", report.objects_pulled, report.bytes_pulled);
                for s in &report.shares {
                    println!(
                        "share {}: restored snapshot {} of {} ({} files, {} bytes written)",
                        s.share,
                        &s.snapshot[..8],
                        s.time,
                        s.files,
                        s.bytes
                    );
                }
            }
            Ok(crate::exit::OK)
        }
        None => serve(a),
    }
}

fn config(a: &ApplianceArgs) -> Result<Config> {
    let Some(path) = &a.config else { bail!("give the configuration file with --config FILE") };
    Ok(Config::load(path)?)
}

fn serve(a: &ApplianceArgs) -> Result<i32> {
    let config = config(a)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("arca-appliance")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let running = arca_appliance::start(config).await.context("starting the appliance")?;
        if let Some(t) = running.target_addr {
            println!("arca appliance backup target on http://{t}");
        }
        println!("arca appliance listening on {}://{}", running.scheme, running.addr);
        use std::io::Write;
        let _ = std::io::stdout().flush();
        // SIGTERM (systemd's stop) and Ctrl-C stop it cleanly: smbd is stopped and the previous
        // versions unmounted when the served future is dropped.
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("installing the SIGTERM handler")?;
        tokio::select! {
            served = running.serve() => served.context("serving")?,
            _ = term.recv() => tracing::info!("SIGTERM: stopping"),
            _ = tokio::signal::ctrl_c() => tracing::info!("interrupted: stopping"),
        }
        Ok(crate::exit::OK)
    })
}

fn hash_password(smb: bool) -> Result<i32> {
    let password = match std::env::var("ARCA_NEW_PASSWORD") {
        Ok(p) => p,
        Err(_) => {
            let first = rpassword::prompt_password("share user's password: ").context("reading the password")?;
            let again = rpassword::prompt_password("the same again: ").context("reading the password")?;
            if first != again {
                bail!("the two passwords differ; nothing was hashed");
            }
            first
        }
    };
    let hash = arca_appliance::hash_password(&password)?;
    if smb {
        println!("password_hash = \"{hash}\"\nnt_hash = \"{}\"", arca_appliance::nt_hash(&password)?);
    } else {
        println!("{hash}");
    }
    Ok(crate::exit::OK)
}

/// The running appliance's base URL (from `--url` or the configuration's listen address), and
/// the configuration when one was given.
fn appliance_address(a: &ApplianceArgs, url: Option<&str>) -> Result<(String, Option<Config>)> {
    Ok(match (url, &a.config) {
        (Some(u), _) => (u.trim_end_matches('/').to_string(), a.config.as_ref().map(|_| config(a)).transpose()?),
        (None, Some(_)) => {
            let c = config(a)?;
            let mut addr = c.listen;
            if addr.ip().is_unspecified() {
                addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            let scheme = if c.tls.is_some() { "https" } else { "http" };
            (format!("{scheme}://{addr}"), Some(c))
        }
        (None, None) => bail!("give the configuration file with --config FILE, or the appliance's address with --url"),
    })
}

/// An HTTP client for the appliance: with `[tls]` in its configuration it trusts the appliance's
/// certificate (the self-signed one under its data directory, or the configured one).
fn appliance_client(config: Option<&Config>) -> Result<reqwest::blocking::ClientBuilder> {
    let mut builder = reqwest::blocking::Client::builder().connect_timeout(std::time::Duration::from_secs(10));
    if let Some(c) = config {
        if let Some(t) = &c.tls {
            let cert = match &t.cert_file {
                Some(f) => f.clone(),
                None => arca_appliance::tls::self_signed_files(&c.data_dir).cert,
            };
            let pem = std::fs::read(&cert)
                .with_context(|| format!("reading the appliance's certificate {}", cert.display()))?;
            for c in reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("reading the appliance's certificate {}", cert.display()))?
            {
                builder = builder.add_root_certificate(c);
            }
        }
    }
    Ok(builder)
}

fn snapshot_now(g: &GlobalOpts, a: &ApplianceArgs, share: &str, user: &str, url: Option<&str>) -> Result<i32> {
    let (base, config) = appliance_address(a, url)?;
    let password = match std::env::var("ARCA_SHARE_PASSWORD") {
        Ok(p) => p,
        Err(_) => {
            rpassword::prompt_password(format!("password of share user {user}: ")).context("reading the password")?
        }
    };
    // A snapshot of a large share takes as long as it takes: no overall timeout.
    let client = appliance_client(config.as_ref())?.timeout(None).build()?;
    let response = client
        .post(format!("{base}/snapshot/{share}"))
        .basic_auth(user, Some(&password))
        .send()
        .with_context(|| format!("asking the appliance at {base} for a snapshot"))?;
    let status = response.status();
    let text = response.text().context("reading the appliance's answer")?;
    let body: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    if !status.is_success() {
        let why = body["error"].as_str().map(str::to_string).unwrap_or_else(|| status.to_string());
        if status.as_u16() == 401 {
            bail!("the appliance refused user {user}: wrong user name or password");
        }
        bail!("no snapshot of share {share}: {why}");
    }
    if g.json {
        print_json(&body)?;
    } else {
        println!(
            "share {share}: snapshot {} ({} files, {} bytes; {} bytes new)",
            body["id"].as_str().unwrap_or("?").get(..8).unwrap_or("?"),
            body["files"],
            body["bytes"],
            body["added"]
        );
    }
    let warned = body["warnings"].as_array().is_some_and(|w| !w.is_empty());
    if warned && !g.json {
        eprintln!("some entries could not be read; see the appliance's log");
    }
    Ok(if warned { crate::exit::PARTIAL } else { crate::exit::OK })
}

fn status(g: &GlobalOpts, a: &ApplianceArgs, url: Option<&str>) -> Result<i32> {
    let (base, state_file) = appliance_address(a, url)?;
    let client = appliance_client(state_file.as_ref())?.timeout(std::time::Duration::from_secs(10)).build()?;
    let live = client
        .get(format!("{base}/status.json"))
        .send()
        .and_then(|r| r.error_for_status())
        .and_then(|r| r.bytes())
        .map_err(anyhow::Error::from)
        .and_then(|b| serde_json::from_slice::<Status>(&b).context("reading its status"));
    let (status, live) = match live {
        Ok(s) => (s, true),
        Err(e) => {
            let Some(c) = state_file else {
                bail!("the appliance at {base} did not answer ({e}) and no configuration was given to find its state file")
            };
            let file = c.data_dir.join("status.json");
            let bytes = std::fs::read(&file)
                .with_context(|| format!("the appliance at {base} did not answer ({e}); reading {}", file.display()))?;
            eprintln!("the appliance at {base} did not answer ({e}); showing its last recorded state");
            (serde_json::from_slice(&bytes).with_context(|| format!("reading {}", file.display()))?, false)
        }
    };
    let attention = status.replication.as_ref().is_some_and(|r| r.alert.is_some())
        || status.shares.values().any(|s| s.warning.is_some() || s.last_error.is_some());
    let code = if attention { crate::exit::PARTIAL } else { crate::exit::OK };
    if g.json {
        let mut v = serde_json::to_value(&status)?;
        v["live"] = serde_json::Value::Bool(live);
        print_json(&v)?;
        return Ok(code);
    }
    for (name, s) in &status.shares {
        let last =
            s.last_snapshot.as_ref().map(|l| format!("{} ({})", l.time, &l.id[..8])).unwrap_or_else(|| "none".into());
        println!(
            "share {name}: {} snapshots, last {last}, schedule {}",
            s.snapshots,
            s.schedule.as_deref().unwrap_or("none")
        );
        if let Some(w) = &s.warning {
            println!("  warning: {w}");
        }
        if let Some(e) = &s.last_error {
            println!("  problem: {e}");
        }
    }
    match &status.replication {
        None => println!("replication: no provider configured"),
        Some(r) => {
            println!(
                "replication to {}: {}; {} snapshots and {} bytes waiting; last complete {}",
                r.provider,
                r.state,
                r.pending_snapshots,
                r.pending_bytes,
                r.last_success.map(|t| t.to_string()).unwrap_or_else(|| "never".into())
            );
            if let Some(t) = r.oldest_pending {
                println!("  oldest snapshot not yet at the provider: {t}");
            }
            if let Some(alert) = &r.alert {
                println!("  ALERT: {alert}");
            }
            if let Some(e) = &r.last_error {
                println!("  problem: {e}");
            }
        }
    }
    Ok(code)
}
