//! `arca admin`: manage an arca server's plans, tenants, users, repositories and devices, and
//! export usage and the audit log, through its admin API (everything the web console does).

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use reqwest::blocking::{Client, RequestBuilder};
use reqwest::Method;
use serde_json::{json, Value};

use arca_server::units::human_bytes as human;

use crate::cli::GlobalOpts;

const LONG_ABOUT: &str = "\
Manage an arca server through its admin API: plans, tenants, users, repositories, devices,
usage export and the audit log. Every action is recorded in the server's audit log.

The server comes from --server or ARCA_SERVER, the token from ARCA_TOKEN. Get a token by
signing in (`arca admin login`), which prints it once:

  export ARCA_SERVER=http://127.0.0.1:8420
  export ARCA_TOKEN=$(arca admin login --user admin --quiet)

A typical provider workflow:

  arca admin plan create basic --hard-quota 500GiB --soft-quota 400GiB --lock-days 30 --yearly-price 120
  arca admin tenant create acme --display-name 'ACME Ltd' --plan basic
  arca admin repo create --tenant acme acme-office
  arca admin device add --tenant acme laptop-1 --repo acme-office    # prints the device token
  arca admin usage --from 2026-11-01 --to 2026-11-30 --csv > usage.csv

Passwords are read from ARCA_ADMIN_PASSWORD (login, setup) or ARCA_NEW_PASSWORD (user create),
or asked for on the terminal. Sizes accept B, KB/MB/GB/TB (powers of 1000) and KiB/MiB/GiB/TiB.";

/// `arca admin` flags.
#[derive(Debug, Args)]
#[command(about = "Manage a server's plans, tenants, users, repositories and devices", long_about = LONG_ABOUT)]
pub struct AdminArgs {
    /// The server's base URL
    #[arg(long, env = "ARCA_SERVER", value_name = "URL", global = true)]
    pub server: Option<String>,

    #[command(subcommand)]
    pub command: AdminCommand,
}

/// `arca admin` subcommands.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create the first provider admin with the one-time token a new server printed
    Setup {
        /// The token the server printed
        #[arg(long)]
        setup_token: String,
        /// The admin's login name
        #[arg(long, default_value = "admin")]
        user: String,
    },
    /// Sign in and print an API token (use it as ARCA_TOKEN)
    Login {
        /// Login name
        #[arg(long)]
        user: String,
        /// Days until the token expires (0: never)
        #[arg(long, default_value_t = 30)]
        ttl_days: i64,
        /// The one-time code of an account with two-factor sign-in (or a recovery code)
        #[arg(long, env = "ARCA_TOTP", value_name = "CODE")]
        totp: Option<String>,
    },
    /// Revoke the token in ARCA_TOKEN
    Logout,
    /// Show who ARCA_TOKEN belongs to
    Whoami,
    /// Plans: what tenants buy
    #[command(subcommand)]
    Plan(PlanCommand),
    /// Tenants: the provider's customers
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Resellers: sell the provider's service to their own tenants, billed wholesale
    #[command(subcommand)]
    Reseller(super::admin_resellers::ResellerCommand),
    /// Users who sign in (provider staff, or a tenant's admins and users)
    #[command(subcommand)]
    User(UserCommand),
    /// Hosted repositories
    #[command(subcommand)]
    Repo(RepoCommand),
    /// Backup clients and their tokens
    #[command(subcommand)]
    Device(DeviceCommand),
    /// Managed agents: enrolment codes, protection plans, back up now, restore to a machine
    #[command(subcommand)]
    Agent(super::admin_agents::AgentAdminCommand),
    /// Import a repository into a hosted one: an arca repository directory (from `arca appliance
    /// export`, on a disk that came by post), or for a restic repository (`repo create --format
    /// restic`) an existing restic repository, from its directory or from another restic REST
    /// server (`rest:https://USER:PASSWORD@HOST/PATH/`). Every object is checked against its name;
    /// only what is missing is sent, so an interrupted import is simply run again
    Import {
        /// The hosted repository to fill (empty, or the same repository)
        #[arg(long)]
        repo: String,
        /// The repository directory, or (restic) a rest: URL
        #[arg(value_name = "SOURCE")]
        dir: String,
        /// Objects sent at once (restic imports)
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
        jobs: u16,
    },
    /// Metering per tenant, repository and day
    Usage {
        /// Only this tenant
        #[arg(long)]
        tenant: Option<String>,
        /// First day (YYYY-MM-DD; default 29 days before --to)
        #[arg(long)]
        from: Option<String>,
        /// Last day (YYYY-MM-DD; default today)
        #[arg(long)]
        to: Option<String>,
        /// CSV for a billing system instead of a table
        #[arg(long)]
        csv: bool,
    },
    /// Backup health: every device's last backup, schedule and status, and the newest alerts
    /// (exit code 1 when a device is failing or overdue)
    Health {
        /// Only this tenant
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Monthly billing per tenant: average and peak stored, traffic, snapshots, invoice lines from
    /// the plan; and invoicing: `settings`, `issue`, `invoices`, `invoice`
    Billing(super::admin_billing::BillingArgs),
    /// Scrub: re-hash every stored object and report damage (exit code 1 when the newest run found any)
    Scrub {
        /// Start a scrub now (otherwise: show the newest runs and findings)
        #[arg(long)]
        start: bool,
        /// Wait until the newest scrub has finished, then report it
        #[arg(long)]
        wait: bool,
    },
    /// The provider's recovery key: show it, or make it once with --create (the passphrase that
    /// seals its private half comes from ARCA_NEW_PASSWORD or is asked for; staff type it in the
    /// portal to restore for a customer who granted the recovery service)
    RecoveryKey {
        /// Make the key pair (once: customers' grants are sealed to it)
        #[arg(long)]
        create: bool,
    },
    /// Restore check: prove now, without the customers' keys, that each repository's newest
    /// snapshot is restorable from this server (its packs stored, indexed, a sample re-hashed);
    /// exit code 1 when one fails
    RestoreCheck {
        /// Only this repository (default: every one)
        #[arg(long)]
        repo: Option<String>,
    },
    /// The audit log, newest first, searched like the console's audit page
    ///
    /// Example: arca admin audit --tenant acme --outcome denied --from 2026-12-01 --to 2026-12-06
    Audit {
        /// Only this tenant
        #[arg(long)]
        tenant: Option<String>,
        /// Only this outcome: ok, denied or failed
        #[arg(long)]
        outcome: Option<String>,
        /// Only actions starting with this ("tenant." for every tenant action)
        #[arg(long)]
        action: Option<String>,
        /// Only actors containing this ("user:ann", "device:")
        #[arg(long)]
        actor: Option<String>,
        /// Only entries whose target or detail contains this
        #[arg(long)]
        text: Option<String>,
        /// From this UTC day (YYYY-MM-DD)
        #[arg(long)]
        from: Option<String>,
        /// Up to and including this UTC day (YYYY-MM-DD)
        #[arg(long)]
        to: Option<String>,
        /// Only entries older than this id (the next page: the smallest id shown)
        #[arg(long)]
        before: Option<i64>,
        /// How many entries (1 to 1000)
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
}

/// `arca admin plan …`
#[derive(Debug, Subcommand)]
pub enum PlanCommand {
    /// List plans
    List,
    /// Create a plan
    Create {
        /// Plan name ([a-z0-9-])
        name: String,
        /// Stored bytes past which uploads are refused (0: unlimited)
        #[arg(long, default_value = "0")]
        hard_quota: String,
        /// Stored bytes past which the tenant is warned (0: none)
        #[arg(long, default_value = "0")]
        soft_quota: String,
        /// Days during which nothing stored can be deleted
        #[arg(long, default_value_t = 0)]
        lock_days: i64,
        /// Compliance mode: repository locks can never be shortened
        #[arg(long)]
        compliance: bool,
        /// Yearly price in currency units (e.g. 120 or 99.50)
        #[arg(long, default_value = "0")]
        yearly_price: String,
        /// Price per GB and month above the soft quota
        #[arg(long, default_value = "0")]
        overage_per_gb: String,
        /// A reseller's plan: the provider's plan it resells (its wholesale price; the hard quota
        /// may not exceed it, and its retention lock applies)
        #[arg(long, value_name = "PLAN")]
        resells: Option<String>,
    },
    /// Change a plan (the seller's own: the provider's admins the provider's plans, a reseller's
    /// admins theirs). Options left out keep their value. Tenants still on the plan's old quotas
    /// take the new ones; prices apply from the next bill
    Set {
        /// Plan name
        name: String,
        /// Stored bytes past which uploads are refused (0: unlimited)
        #[arg(long)]
        hard_quota: Option<String>,
        /// Stored bytes past which the tenant is warned (0: none)
        #[arg(long)]
        soft_quota: Option<String>,
        /// Days during which nothing stored can be deleted (for repositories created from now on)
        #[arg(long)]
        lock_days: Option<i64>,
        /// Compliance mode on or off (for repositories created from now on)
        #[arg(long)]
        compliance: Option<bool>,
        /// Yearly price in currency units
        #[arg(long)]
        yearly_price: Option<String>,
        /// Price per GB and month above the soft quota
        #[arg(long)]
        overage_per_gb: Option<String>,
        /// A reseller's plan: the provider's plan it resells
        #[arg(long, value_name = "PLAN")]
        resells: Option<String>,
    },
    /// Delete a plan no tenant is on (and no reseller's plan resells)
    Delete {
        /// Plan name
        name: String,
    },
}

/// `arca admin tenant …`
#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// List tenants with their usage
    List,
    /// Create a tenant
    Create {
        /// Short name ([a-z0-9-])
        name: String,
        /// Name for people
        #[arg(long, default_value = "")]
        display_name: String,
        /// Plan (its quotas apply)
        #[arg(long)]
        plan: Option<String>,
    },
    /// Show one tenant
    Show {
        /// Tenant name
        name: String,
    },
    /// Change a tenant's plan, quotas or status (provider admins), or its alert addresses
    /// (its own admins too)
    Set {
        /// Tenant name
        name: String,
        #[arg(long)]
        /// New display name
        display_name: Option<String>,
        /// New plan (its quotas replace the tenant's)
        #[arg(long)]
        plan: Option<String>,
        /// Hard quota (overrides the plan's)
        #[arg(long)]
        hard_quota: Option<String>,
        /// Soft quota (overrides the plan's)
        #[arg(long)]
        soft_quota: Option<String>,
        /// Refuse uploads (restores keep working); the customer sees a banner with --reason
        #[arg(long, conflicts_with = "resume")]
        suspend: bool,
        /// Why it is suspended, shown to the customer on every page ("invoice 2026-11 unpaid")
        #[arg(long, value_name = "TEXT", conflicts_with = "resume")]
        reason: Option<String>,
        /// Accept uploads again
        #[arg(long)]
        resume: bool,
        /// The customer's own addresses for its alerts (comma-separated; "" clears them); alert
        /// e-mail goes to them besides the provider's
        #[arg(long, value_name = "ADDRESSES")]
        alert_email: Option<String>,
    },
    /// Delete a tenant that has no repositories left
    Delete {
        /// Tenant name
        name: String,
    },
}

/// `arca admin user …`
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// List provider staff, or a tenant's users
    List {
        /// The tenant (default: provider staff)
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Create a user (password from ARCA_NEW_PASSWORD or asked for)
    Create {
        /// Login name
        name: String,
        /// provider-admin, operator (staff) or tenant-admin, tenant-user (with --tenant)
        #[arg(long)]
        role: String,
        /// The tenant, for tenant users
        #[arg(long)]
        tenant: Option<String>,
    },
}

/// `arca admin repo …`
#[derive(Debug, Subcommand)]
pub enum RepoCommand {
    /// List repositories
    List {
        /// Only this tenant's
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Create a repository for a tenant
    ///
    /// `--format restic` hosts a repository for unmodified restic clients, which reach it with
    /// `restic -r rest:https://USER:TOKEN@SERVER/restic/NAME/` (TOKEN: a device token of the
    /// repository, or a tenant admin's for forget and prune).
    Create {
        /// The tenant
        #[arg(long)]
        tenant: String,
        /// Repository name, unique on the server ([a-z0-9-])
        name: String,
        /// Retention lock in days (default: the plan's; never less)
        #[arg(long)]
        lock_days: Option<i64>,
        /// The repository's format: arca (for the arca client) or restic (restic's REST protocol)
        #[arg(long, default_value = "arca", value_parser = ["arca", "restic"])]
        format: String,
    },
    /// Change a repository's retention lock (compliance mode: only longer)
    Lock {
        /// Repository name
        name: String,
        /// New lock period in days
        #[arg(long)]
        days: i64,
        /// Turn compliance mode on (it cannot be turned off)
        #[arg(long)]
        compliance: bool,
    },
    /// Set how long the server keeps snapshots, by its own clock (0: until forgotten)
    Retention {
        /// Repository name
        name: String,
        /// Days (the newest snapshot always stays; the retention lock always applies)
        #[arg(long)]
        days: i64,
    },
    /// Apply retention and free the packs no snapshot needs, now (the server also does it hourly)
    Gc {
        /// Repository name
        name: String,
    },
    /// Delete an empty repository
    Delete {
        /// Repository name
        name: String,
    },
}

/// `arca admin device …`
#[derive(Debug, Subcommand)]
pub enum DeviceCommand {
    /// List a tenant's devices
    List {
        /// The tenant
        #[arg(long)]
        tenant: String,
    },
    /// Add a device and print its token (shown once)
    Add {
        /// The tenant
        #[arg(long)]
        tenant: String,
        /// Device name ([a-z0-9-])
        name: String,
        /// The repository its token reaches
        #[arg(long)]
        repo: String,
    },
    /// Revoke a device's token at once
    Revoke {
        /// The tenant
        #[arg(long)]
        tenant: String,
        /// Device name
        name: String,
    },
    /// Set how often a device should back up; later than that plus an hour it is overdue (an alert)
    Schedule {
        /// The tenant
        #[arg(long)]
        tenant: String,
        /// Device name
        name: String,
        /// Hours between backups (0: no schedule, never overdue)
        #[arg(long)]
        every_hours: i64,
    },
}

/// Parses a size: a number with an optional unit (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB).
pub fn parse_size(s: &str) -> Result<i64> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num.parse().with_context(|| format!("invalid size {s:?}"))?;
    let factor: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        other => bail!("unknown size unit {other:?} in {s:?} (use B, KB, MB, GB, TB, KiB, MiB, GiB or TiB)"),
    };
    let bytes = (value * factor).round();
    if !(0.0..9.0e18).contains(&bytes) {
        bail!("size {s:?} is out of range");
    }
    Ok(bytes as i64)
}

/// Parses an amount of money into cents ("120", "99.50").
fn parse_cents(s: &str) -> Result<i64> {
    let v: f64 = s.trim().parse().with_context(|| format!("invalid amount {s:?}"))?;
    if !(0.0..1e15).contains(&v) {
        bail!("amount {s:?} is out of range");
    }
    Ok((v * 100.0).round() as i64)
}

pub(super) fn date(ts: i64) -> String {
    if ts == 0 {
        return "-".into();
    }
    chrono::DateTime::from_timestamp(ts, 0).map_or(ts.to_string(), |d| d.format("%Y-%m-%d %H:%M").to_string())
}

/// Fetches an export (usage, billing) as CSV or JSON. CSV, and JSON under `--json`, are printed
/// as the server sent them (`None`); otherwise the JSON comes back for a table.
fn export(
    api: &Api,
    g: &GlobalOpts,
    path: &str,
    params: &[(&str, &Option<String>)],
    csv: bool,
) -> Result<Option<Value>> {
    api.need_token()?;
    let mut path = format!("{path}?format={}", if csv { "csv" } else { "json" });
    for (k, v) in params {
        if let Some(v) = v {
            path.push_str(&format!("&{k}={}", q(v)));
        }
    }
    let text = api.call(Method::GET, &path, None)?;
    if csv || g.json {
        print!("{text}");
        if g.json {
            println!();
        }
        return Ok(None);
    }
    Ok(Some(serde_json::from_str(&text).context("the server's answer is not JSON")?))
}

/// The admin API's client.
pub(super) struct Api {
    pub(super) base: String,
    token: Option<String>,
    client: Client,
}

impl Api {
    fn new(server: Option<&str>) -> Result<Api> {
        let base = server
            .map(str::to_string)
            .ok_or_else(|| anyhow::anyhow!("no server given: use --server URL or set ARCA_SERVER"))?;
        let base = base.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            bail!("the server URL must start with http:// or https:// (got {base:?})");
        }
        let token = std::env::var("ARCA_TOKEN").ok().map(|t| t.trim().to_string()).filter(|t| !t.is_empty());
        let mut builder = Client::builder();
        if let Some(cert) = arca_store::extra_root_certificate()? {
            builder = builder.add_root_certificate(cert);
        }
        let client = builder
            .timeout(std::time::Duration::from_secs(120))
            .user_agent(concat!("arca/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("setting up the HTTP client")?;
        Ok(Api { base, token, client })
    }

    fn request(&self, method: Method, path: &str) -> Result<RequestBuilder> {
        let rb = self.client.request(method, format!("{}{path}", self.base));
        Ok(match &self.token {
            Some(t) => rb.bearer_auth(t),
            None => rb,
        })
    }

    fn need_token(&self) -> Result<()> {
        if self.token.is_none() {
            bail!("no token: set ARCA_TOKEN (sign in with `arca admin login --user NAME`)");
        }
        Ok(())
    }

    /// Sends a request and returns the response text; a refusal becomes an error with the
    /// server's message.
    pub(super) fn call(&self, method: Method, path: &str, body: Option<Value>) -> Result<String> {
        let mut rb = self.request(method.clone(), path)?;
        if let Some(b) = body {
            rb = rb.header("content-type", "application/json").body(b.to_string());
        }
        let mut resp = rb
            .try_clone()
            .context("building the request")?
            .send()
            .with_context(|| format!("{method} {}{path}: cannot reach the server", self.base))?;
        // Rate limited: wait as the server asks (a few times, at most half a minute each).
        for _ in 0..5 {
            if resp.status() != reqwest::StatusCode::TOO_MANY_REQUESTS {
                break;
            }
            std::thread::sleep(arca_store::retry_after(&resp).unwrap_or(std::time::Duration::from_secs(1)));
            resp = rb
                .try_clone()
                .context("building the request")?
                .send()
                .with_context(|| format!("{method} {}{path}: cannot reach the server", self.base))?;
        }
        let status = resp.status();
        let text = resp.text().unwrap_or_default();
        if !status.is_success() {
            bail!("the server refused ({status}): {}", text.trim());
        }
        Ok(text)
    }

    /// Sends a typed request body (an `arca_api` type) and answers the JSON reply.
    pub(super) fn send<B: serde::Serialize>(&self, method: Method, path: &str, body: &B) -> Result<Value> {
        self.json(method, path, Some(serde_json::to_value(body).context("encoding the request")?))
    }

    pub(super) fn json(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value> {
        self.need_token()?;
        let text = self.call(method, path, body)?;
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).context("the server's answer is not JSON")
    }
}

pub(super) fn password_from(var: &str, prompt: &str) -> Result<String> {
    if let Ok(p) = std::env::var(var) {
        if !p.is_empty() {
            return Ok(p);
        }
    }
    rpassword::prompt_password(prompt).with_context(|| format!("reading the password (or set {var})"))
}

/// Prints rows as an aligned table.
pub(super) fn table(header: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let s: Vec<String> = cells.iter().enumerate().map(|(i, c)| format!("{c:<w$}", w = widths[i])).collect();
        println!("{}", s.join("  ").trim_end());
    };
    line(header.iter().map(|h| h.to_string()).collect());
    if rows.is_empty() {
        println!("(none)");
    }
    for r in rows {
        line(r);
    }
}

fn s(v: &Value, key: &str) -> String {
    match &v[key] {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn i(v: &Value, key: &str) -> i64 {
    v[key].as_i64().unwrap_or(0)
}

/// Reads an answer as the typed shape the server sends (`arca_api`).
pub(super) fn typed<T: serde::de::DeserializeOwned>(v: &Value) -> Result<T> {
    T::deserialize(v).context("the server's answer does not have the expected shape (a server of another version?)")
}

pub(super) fn print_or<F: FnOnce(&Value)>(g: &GlobalOpts, v: &Value, human: F) {
    if g.json {
        println!("{v}");
    } else {
        human(v)
    }
}

fn as_list(v: &Value) -> Vec<Value> {
    v.as_array().cloned().unwrap_or_default()
}

pub(super) fn q(s: &str) -> String {
    // Names are [a-z0-9-] and days YYYY-MM-DD; anything else is refused by the server, but keep
    // the query well formed whatever is typed.
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b == b'-' { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

/// `arca admin import` into a restic repository ([`super::restic_import`]); exit 1 when damaged
/// objects were left out.
fn import_restic(g: &GlobalOpts, api: &Api, token: &str, repo: &str, source: &str, jobs: usize) -> Result<i32> {
    use super::restic_import::{import, Progress, Source};
    let source = Source::parse(source)?;
    let progress = Progress::default();
    let report = crate::progress::run(
        crate::progress::enabled(g),
        crate::progress::Style::Bytes,
        |bar| {
            bar.set_length(progress.bytes_total.load(std::sync::atomic::Ordering::Relaxed));
            bar.set_position(progress.bytes_done.load(std::sync::atomic::Ordering::Relaxed));
        },
        || import(&api.client, &api.base, token, repo, &source, jobs, &progress),
    )?;
    if g.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "imported {} objects ({}) into restic repository {repo}; {} were already there",
            report.uploaded,
            human(report.bytes as i64),
            report.skipped
        );
    }
    if report.damaged.is_empty() {
        return Ok(0);
    }
    eprintln!(
        "{} objects of the source do not hash to their names and were NOT imported (the repository's config was held \
         back, so restic does not open it half-complete): {}",
        report.damaged.len(),
        report.damaged.iter().take(10).cloned().collect::<Vec<_>>().join(", ")
    );
    eprintln!(
        "repair the source (restic check / restic repair) or import those from another copy, then run import again"
    );
    Ok(1)
}

/// Runs `arca admin`.
pub fn run(g: &GlobalOpts, a: &AdminArgs) -> Result<i32> {
    let api = Api::new(a.server.as_deref())?;
    match &a.command {
        AdminCommand::Import { repo, dir, jobs } => {
            let token = api.token.clone().ok_or_else(|| anyhow::anyhow!("set ARCA_TOKEN (an admin's token)"))?;
            let repos: Vec<arca_api::Repository> = typed(&api.json(Method::GET, "/v1/admin/repos", None)?)?;
            let Some(target) = repos.iter().find(|r| &r.name == repo) else {
                bail!(
                    "there is no repository {repo} that this token reaches (create it with `arca admin repo create`)"
                );
            };
            if target.format == arca_api::RepoFormat::Restic {
                return import_restic(g, &api, &token, repo, dir, usize::from(*jobs));
            }
            let dir = std::path::Path::new(dir);
            let from = arca_store::LocalStore::new(dir);
            if !arca_store::Store::exists(&from)? {
                bail!("{} is not an exported arca repository (it has no config)", dir.display());
            }
            let to = arca_store::HttpStore::new(&format!("{}/v1/repos/{repo}", api.base), &token)?;
            let (objects, bytes) = arca_appliance::recover::pull(&from, &to)
                .with_context(|| format!("importing {} into repository {repo}", dir.display()))?;
            if g.json {
                println!("{}", json!({"repo": repo, "objects": objects, "bytes": bytes}));
            } else {
                println!("imported {objects} objects ({bytes} bytes) into repository {repo}");
            }
        }
        AdminCommand::Setup { setup_token, user } => {
            let password = password_from("ARCA_ADMIN_PASSWORD", "New admin password: ")?;
            let text = api.call(
                Method::POST,
                "/v1/setup",
                Some(serde_json::to_value(arca_api::SetupRequest {
                    setup_token: setup_token.clone(),
                    user: user.clone(),
                    password,
                })?),
            )?;
            if g.json {
                println!("{}", text.trim());
            } else {
                println!("created the provider admin {user:?}; sign in with `arca admin login --user {user}`");
            }
        }
        AdminCommand::Login { user, ttl_days, totp } => {
            let password = password_from("ARCA_ADMIN_PASSWORD", &format!("Password for {user}: "))?;
            let text = api.call(
                Method::POST,
                "/v1/auth/login",
                Some(serde_json::to_value(arca_api::LoginRequest {
                    user: user.clone(),
                    password,
                    label: "arca admin".into(),
                    ttl_days: Some(*ttl_days),
                    totp: totp.clone(),
                })?),
            )?;
            let v: Value = serde_json::from_str(&text).context("the server's answer is not JSON")?;
            let login: arca_api::LoginResponse = typed(&v)?;
            if g.json {
                println!("{v}");
            } else if g.quiet {
                println!("{}", login.token);
            } else {
                println!("signed in as {} ({}); expires {}", login.user, login.role.as_str(), date(login.expires_at));
                println!("export ARCA_TOKEN={}", login.token);
            }
        }
        AdminCommand::Logout => {
            api.json(Method::POST, "/v1/auth/logout", None)?;
            if !g.quiet {
                println!("token revoked");
            }
        }
        AdminCommand::Whoami => {
            let v = api.json(Method::GET, "/v1/auth/whoami", None)?;
            let me: arca_api::WhoAmI = typed(&v)?;
            print_or(g, &v, |_| {
                println!("{} ({}) tenant {}", me.actor, me.role.as_str(), me.tenant.as_deref().unwrap_or("-"))
            });
        }
        AdminCommand::Plan(PlanCommand::List) => {
            let v = api.json(Method::GET, "/v1/admin/plans", None)?;
            let plans: Vec<arca_api::Plan> = typed(&v)?;
            print_or(g, &v, |_| {
                let rows = plans
                    .iter()
                    .map(|p| {
                        vec![
                            p.name.clone(),
                            human(p.hard_quota_bytes),
                            human(p.soft_quota_bytes),
                            p.lock_days.to_string(),
                            if p.compliance { "yes" } else { "no" }.into(),
                            format!("{:.2}", p.yearly_price_cents as f64 / 100.0),
                            format!("{:.2}", p.overage_cents_per_gb as f64 / 100.0),
                            p.reseller.clone().unwrap_or_else(|| "provider".into()),
                            p.resells.clone().unwrap_or_default(),
                        ]
                    })
                    .collect();
                table(
                    &[
                        "PLAN",
                        "HARD",
                        "SOFT",
                        "LOCK DAYS",
                        "COMPLIANCE",
                        "PRICE/YEAR",
                        "OVERAGE/GB",
                        "SELLER",
                        "RESELLS",
                    ],
                    rows,
                );
            });
        }
        AdminCommand::Plan(PlanCommand::Create {
            name,
            hard_quota,
            soft_quota,
            lock_days,
            compliance,
            yearly_price,
            overage_per_gb,
            resells,
        }) => {
            let plan = arca_api::Plan {
                name: name.clone(),
                hard_quota_bytes: parse_size(hard_quota)?,
                soft_quota_bytes: parse_size(soft_quota)?,
                lock_days: *lock_days,
                compliance: *compliance,
                yearly_price_cents: parse_cents(yearly_price)?,
                overage_cents_per_gb: parse_cents(overage_per_gb)?,
                resells: resells.clone(),
                reseller: None,
            };
            let v = api.send(Method::POST, "/v1/admin/plans", &plan)?;
            print_or(g, &v, |_| println!("created plan {name}"));
        }
        AdminCommand::Plan(PlanCommand::Set {
            name,
            hard_quota,
            soft_quota,
            lock_days,
            compliance,
            yearly_price,
            overage_per_gb,
            resells,
        }) => {
            let plans: Vec<arca_api::Plan> = typed(&api.json(Method::GET, "/v1/admin/plans", None)?)?;
            let mut plan = plans
                .into_iter()
                .find(|p| &p.name == name)
                .with_context(|| format!("no plan named {name} (arca admin plan list shows yours)"))?;
            if let Some(v) = hard_quota {
                plan.hard_quota_bytes = parse_size(v)?;
            }
            if let Some(v) = soft_quota {
                plan.soft_quota_bytes = parse_size(v)?;
            }
            if let Some(v) = lock_days {
                plan.lock_days = *v;
            }
            if let Some(v) = compliance {
                plan.compliance = *v;
            }
            if let Some(v) = yearly_price {
                plan.yearly_price_cents = parse_cents(v)?;
            }
            if let Some(v) = overage_per_gb {
                plan.overage_cents_per_gb = parse_cents(v)?;
            }
            if resells.is_some() {
                plan.resells = resells.clone();
            }
            plan.reseller = None;
            let v = api.send(Method::PUT, &format!("/v1/admin/plans/{}", q(name)), &plan)?;
            let moved = v["tenants_updated"].as_u64().unwrap_or(0);
            print_or(g, &v, |_| println!("changed plan {name} ({moved} tenants took its new quotas)"));
        }
        AdminCommand::Plan(PlanCommand::Delete { name }) => {
            api.json(Method::DELETE, &format!("/v1/admin/plans/{}", q(name)), None)?;
            if !g.quiet {
                println!("deleted plan {name}");
            }
        }
        AdminCommand::Tenant(TenantCommand::List) => {
            let v = api.json(Method::GET, "/v1/admin/tenants", None)?;
            let tenants: Vec<arca_api::Tenant> = typed(&v)?;
            print_or(g, &v, |_| {
                let rows = tenants.iter().map(tenant_row).collect();
                table(&["TENANT", "NAME", "PLAN", "STORED", "HARD QUOTA", "SOFT QUOTA", "STATUS"], rows);
            });
        }
        AdminCommand::Tenant(TenantCommand::Create { name, display_name, plan }) => {
            let v = api.json(
                Method::POST,
                "/v1/admin/tenants",
                Some(serde_json::to_value(arca_api::NewTenant {
                    name: name.clone(),
                    display_name: display_name.clone(),
                    plan: plan.clone(),
                })?),
            )?;
            print_or(g, &v, |_| println!("created tenant {name}"));
        }
        AdminCommand::Tenant(TenantCommand::Show { name }) => {
            let v = api.json(Method::GET, &format!("/v1/admin/tenants/{}", q(name)), None)?;
            let tenant: arca_api::Tenant = typed(&v)?;
            print_or(g, &v, |_| {
                table(
                    &["TENANT", "NAME", "PLAN", "STORED", "HARD QUOTA", "SOFT QUOTA", "STATUS"],
                    vec![tenant_row(&tenant)],
                )
            });
        }
        AdminCommand::Tenant(TenantCommand::Set {
            name,
            display_name,
            plan,
            hard_quota,
            soft_quota,
            suspend,
            reason,
            resume,
            alert_email,
        }) => {
            let change = arca_api::TenantChange {
                alert_email: alert_email.clone(),
                display_name: display_name.clone(),
                plan: plan.clone(),
                hard_quota_bytes: hard_quota.as_deref().map(parse_size).transpose()?,
                soft_quota_bytes: soft_quota.as_deref().map(parse_size).transpose()?,
                suspended: (*suspend || *resume).then_some(*suspend),
                suspended_reason: reason.clone(),
            };
            if change.alert_email.is_none()
                && change.display_name.is_none()
                && change.plan.is_none()
                && change.hard_quota_bytes.is_none()
                && change.soft_quota_bytes.is_none()
                && change.suspended.is_none()
                && change.suspended_reason.is_none()
            {
                bail!(
                    "nothing to change: give --plan, --hard-quota, --soft-quota, --display-name, --suspend, --resume or \
                     --alert-email"
                );
            }
            let v = api.send(Method::PATCH, &format!("/v1/admin/tenants/{}", q(name)), &change)?;
            let tenant: arca_api::Tenant = typed(&v)?;
            print_or(g, &v, |_| {
                table(
                    &["TENANT", "NAME", "PLAN", "STORED", "HARD QUOTA", "SOFT QUOTA", "STATUS"],
                    vec![tenant_row(&tenant)],
                )
            });
        }
        AdminCommand::Tenant(TenantCommand::Delete { name }) => {
            api.json(Method::DELETE, &format!("/v1/admin/tenants/{}", q(name)), None)?;
            if !g.quiet {
                println!("deleted tenant {name}");
            }
        }
        AdminCommand::User(UserCommand::List { tenant }) => {
            let path = match tenant {
                Some(t) => format!("/v1/admin/tenants/{}/users", q(t)),
                None => "/v1/admin/users".into(),
            };
            let v = api.json(Method::GET, &path, None)?;
            let users: Vec<arca_api::User> = typed(&v)?;
            print_or(g, &v, |_| {
                let rows = users
                    .iter()
                    .map(|u| {
                        vec![
                            u.name.clone(),
                            u.role.as_str().into(),
                            u.tenant.clone().unwrap_or_else(|| "-".into()),
                            if u.disabled { "disabled" } else { "active" }.into(),
                            date(u.created_at),
                        ]
                    })
                    .collect();
                table(&["USER", "ROLE", "TENANT", "STATUS", "CREATED"], rows);
            });
        }
        AdminCommand::User(UserCommand::Create { name, role, tenant }) => {
            let password = password_from("ARCA_NEW_PASSWORD", &format!("Password for the new user {name}: "))?;
            let role_value = arca_api::Role::parse(role).ok_or_else(|| {
                anyhow::anyhow!("unknown role {role:?}: use provider-admin, operator, tenant-admin or tenant-user")
            })?;
            let body = serde_json::to_value(arca_api::NewUser { name: name.clone(), password, role: role_value })?;
            let path = match tenant {
                Some(t) => format!("/v1/admin/tenants/{}/users", q(t)),
                None => "/v1/admin/users".into(),
            };
            let v = api.json(Method::POST, &path, Some(body))?;
            print_or(g, &v, |_| println!("created user {name} ({role})"));
        }
        AdminCommand::Repo(RepoCommand::List { tenant }) => {
            let path = match tenant {
                Some(t) => format!("/v1/admin/tenants/{}/repos", q(t)),
                None => "/v1/admin/repos".into(),
            };
            let v = api.json(Method::GET, &path, None)?;
            let repos: Vec<arca_api::Repository> = typed(&v)?;
            print_or(g, &v, |_| {
                let rows = repos
                    .iter()
                    .map(|r| {
                        vec![
                            r.name.clone(),
                            r.tenant.clone(),
                            human(r.stored_bytes),
                            human(r.logical_bytes),
                            r.object_count.to_string(),
                            format!("{} days{}", r.lock_days, if r.compliance { " (compliance)" } else { "" }),
                            r.format.to_string(),
                            date(r.created_at),
                        ]
                    })
                    .collect();
                table(&["REPOSITORY", "TENANT", "STORED", "PROTECTED", "OBJECTS", "LOCK", "FORMAT", "CREATED"], rows);
            });
        }
        AdminCommand::Repo(RepoCommand::Create { tenant, name, lock_days, format }) => {
            let format = arca_api::RepoFormat::parse(format).context("unknown repository format")?;
            let body = arca_api::NewRepo { name: name.clone(), lock_days: *lock_days, format };
            let v = api.send(Method::POST, &format!("/v1/admin/tenants/{}/repos", q(tenant)), &body)?;
            let repo: arca_api::Repository = typed(&v)?;
            print_or(g, &v, |_| {
                println!("created {format} repository {name} for {tenant} (retention lock {} days)", repo.lock_days);
                match format {
                    arca_api::RepoFormat::Arca => println!("clients use: arca -r {}/{name} init", api.base),
                    arca_api::RepoFormat::Restic => println!(
                        "restic clients use: restic -r {} init (TOKEN: a device token of this repository)",
                        arca_api::restic_repository_url(&api.base, name, "device", "TOKEN")
                    ),
                }
            });
        }
        AdminCommand::Repo(RepoCommand::Lock { name, days, compliance }) => {
            let body = arca_api::RepoChange { lock_days: *days, compliance: compliance.then_some(true) };
            let v = api.send(Method::PATCH, &format!("/v1/admin/repos/{}", q(name)), &body)?;
            let repo: arca_api::Repository = typed(&v)?;
            print_or(g, &v, |_| println!("repository {name}: retention lock {} days", repo.lock_days));
        }
        AdminCommand::Repo(RepoCommand::Retention { name, days }) => {
            let body = arca_api::RetentionChange { days: *days };
            let v = api.send(Method::PUT, &format!("/v1/admin/repos/{}/retention", q(name)), &body)?;
            print_or(g, &v, |v| {
                println!(
                    "repository {name}: snapshots kept {} days by the server (retention lock {} days)",
                    i(v, "retention_days"),
                    i(v, "lock_days")
                )
            });
        }
        AdminCommand::Repo(RepoCommand::Gc { name }) => {
            let v = api.json(Method::POST, &format!("/v1/admin/repos/{}/gc", q(name)), None)?;
            print_or(g, &v, |v| {
                println!(
                    "repository {name}: {} snapshots expired, {} packs condemned, {} objects freed ({}), {} packs wait for running backups, {} stale locks removed",
                    i(v, "expired_snapshots"),
                    i(v, "condemned"),
                    i(v, "freed_objects"),
                    human(i(v, "freed_bytes")),
                    i(v, "waiting_for_leases"),
                    i(v, "stale_locks")
                )
            });
        }
        AdminCommand::Repo(RepoCommand::Delete { name }) => {
            api.json(Method::DELETE, &format!("/v1/admin/repos/{}", q(name)), None)?;
            if !g.quiet {
                println!("deleted repository {name}");
            }
        }
        AdminCommand::Agent(c) => super::admin_agents::run(g, &api, c)?,
        AdminCommand::Reseller(c) => super::admin_resellers::run(g, &api, c)?,
        AdminCommand::Device(DeviceCommand::List { tenant }) => {
            let v = api.json(Method::GET, &format!("/v1/admin/tenants/{}/devices", q(tenant)), None)?;
            let devices: Vec<arca_api::Device> = typed(&v)?;
            print_or(g, &v, |_| {
                let rows = devices
                    .iter()
                    .map(|d| {
                        vec![
                            d.name.clone(),
                            d.repo.clone(),
                            date(d.created_at),
                            date(d.last_seen_at),
                            if d.revoked_at > 0 { format!("revoked {}", date(d.revoked_at)) } else { "active".into() },
                        ]
                    })
                    .collect();
                table(&["DEVICE", "REPOSITORY", "CREATED", "LAST SEEN", "STATUS"], rows);
            });
        }
        AdminCommand::Device(DeviceCommand::Add { tenant, name, repo }) => {
            let body = arca_api::NewDevice { name: name.clone(), repo: repo.clone() };
            let v = api.send(Method::POST, &format!("/v1/admin/tenants/{}/devices", q(tenant)), &body)?;
            let added: arca_api::NewDeviceResponse = typed(&v)?;
            print_or(g, &v, |_| {
                let token = &added.token;
                println!("added device {name} to {tenant}; its token (shown only now):");
                println!("  {token}");
                println!("on the device:");
                println!("  export ARCA_REPOSITORY={}/{repo}", api.base);
                println!("  export ARCA_TOKEN={token}");
                println!("  arca init      # once per repository");
                println!("  arca backup /path/to/data");
            });
        }
        AdminCommand::Device(DeviceCommand::Revoke { tenant, name }) => {
            let v = api.json(Method::DELETE, &format!("/v1/admin/tenants/{}/devices/{}", q(tenant), q(name)), None)?;
            print_or(g, &v, |_| println!("revoked device {name} of {tenant}"));
        }
        AdminCommand::Usage { tenant, from, to, csv } => {
            let params = [("tenant", tenant), ("from", from), ("to", to)];
            if let Some(v) = export(&api, g, "/v1/admin/usage", &params, *csv)? {
                let rows = as_list(&v)
                    .iter()
                    .map(|r| {
                        vec![
                            s(r, "day"),
                            s(r, "tenant"),
                            s(r, "repository"),
                            human(i(r, "stored_bytes")),
                            human(i(r, "stored_peak_bytes")),
                            human(i(r, "logical_bytes")),
                            i(r, "object_count").to_string(),
                            human(i(r, "ingress_bytes")),
                            human(i(r, "egress_bytes")),
                        ]
                    })
                    .collect();
                table(&["DAY", "TENANT", "REPOSITORY", "STORED", "PEAK", "PROTECTED", "OBJECTS", "IN", "OUT"], rows);
            }
        }
        AdminCommand::Device(DeviceCommand::Schedule { tenant, name, every_hours }) => {
            let path = format!("/v1/admin/tenants/{}/devices/{}/schedule", q(tenant), q(name));
            api.call(
                Method::PUT,
                &path,
                Some(serde_json::to_value(arca_api::Schedule { every_hours: *every_hours })?),
            )?;
            if !g.quiet && !g.json {
                match every_hours {
                    0 => println!("device {name} of {tenant} has no schedule: it is never overdue"),
                    h => println!("device {name} of {tenant} should back up every {h} hours"),
                }
            }
        }
        AdminCommand::Health { tenant } => {
            let path = match tenant {
                Some(t) => format!("/v1/admin/health?tenant={}", q(t)),
                None => "/v1/admin/health".to_string(),
            };
            let v = api.json(Method::GET, &path, None)?;
            let troubled =
                as_list(&v["devices"]).iter().any(|d| matches!(d["status"].as_str(), Some("failing" | "overdue")));
            print_or(g, &v, |v| {
                let when = |t: i64| if t == 0 { "never".to_string() } else { date(t) };
                let rows = as_list(&v["devices"])
                    .iter()
                    .map(|d| {
                        vec![
                            s(d, "tenant"),
                            s(d, "device"),
                            s(d, "repo"),
                            match i(d, "backup_every_hours") {
                                0 => "-".to_string(),
                                h => format!("{h} h"),
                            },
                            when(i(d, "last_backup_at")),
                            s(d, "status"),
                            s(d, "last_failure").lines().next().unwrap_or("").chars().take(60).collect(),
                        ]
                    })
                    .collect();
                table(&["TENANT", "DEVICE", "REPOSITORY", "EVERY", "LAST BACKUP", "STATUS", "LAST FAILURE"], rows);
                let alerts = as_list(&v["alerts"]);
                if !alerts.is_empty() {
                    println!();
                    let rows = alerts
                        .iter()
                        .take(10)
                        .map(|a| {
                            vec![
                                when(i(a, "created_at")),
                                s(a, "subject"),
                                if i(a, "delivered_at") > 0 {
                                    "delivered".to_string()
                                } else if s(a, "last_error").is_empty() {
                                    "pending".to_string()
                                } else {
                                    format!("retrying: {}", s(a, "last_error"))
                                },
                            ]
                        })
                        .collect();
                    table(&["RAISED", "ALERT", "DELIVERY"], rows);
                }
            });
            if troubled {
                return Ok(crate::exit::FATAL);
            }
        }
        AdminCommand::Billing(super::admin_billing::BillingArgs { command: Some(c), .. }) => {
            super::admin_billing::run(g, &api, c)?
        }
        AdminCommand::Billing(super::admin_billing::BillingArgs { command: None, tenant, month, csv }) => {
            if let Some(v) = export(&api, g, "/v1/admin/billing", &[("tenant", tenant), ("month", month)], *csv)? {
                let rows = as_list(&v)
                    .iter()
                    .map(|r| {
                        let cur = r["currency"].as_str().unwrap_or("");
                        let money = |c: i64| format!("{} {cur}", arca_server::units::money(c));
                        let month = s(r, "month");
                        vec![
                            if r["partial"] == true { format!("{month} (so far)") } else { month },
                            s(r, "tenant"),
                            format!("{}/{}", i(r, "days"), i(r, "days_in_month")),
                            r["plan"].as_str().unwrap_or("-").to_string(),
                            human(i(r, "avg_stored_bytes")),
                            human(i(r, "peak_stored_bytes")),
                            human(i(r, "ingress_bytes")),
                            human(i(r, "egress_bytes")),
                            i(r, "snapshots").to_string(),
                            money(i(r, "base_cents")),
                            money(i(r, "overage_cents")),
                            money(i(r, "total_cents")),
                            money(i(r, "tax_cents")),
                            money(i(r, "gross_cents")),
                        ]
                    })
                    .collect();
                table(
                    &[
                        "MONTH",
                        "TENANT",
                        "DAYS",
                        "PLAN",
                        "AVG STORED",
                        "PEAK",
                        "IN",
                        "OUT",
                        "SNAPSHOTS",
                        "PLAN FEE",
                        "OVERAGE",
                        "NET",
                        "TAX",
                        "GROSS",
                    ],
                    rows,
                );
            }
        }
        AdminCommand::Scrub { start, wait } => {
            if *start {
                let v = api.json(Method::POST, "/v1/admin/scrub", None)?;
                if !g.json && !g.quiet {
                    println!("scrub {} started", i(&v, "id"));
                }
            }
            let mut v = api.json(Method::GET, "/v1/admin/scrub", None)?;
            while *wait && v["runs"][0]["state"] == "running" {
                std::thread::sleep(std::time::Duration::from_millis(500));
                v = api.json(Method::GET, "/v1/admin/scrub", None)?;
            }
            print_or(g, &v, |v| {
                let runs = as_list(&v["runs"])
                    .iter()
                    .take(5)
                    .map(|r| {
                        vec![
                            i(r, "id").to_string(),
                            s(r, "state"),
                            s(r, "started_by"),
                            date(i(r, "started_at")),
                            date(i(r, "finished_at")),
                            i(r, "objects_checked").to_string(),
                            human(i(r, "bytes_checked")),
                            i(r, "damaged").to_string(),
                        ]
                    })
                    .collect();
                table(&["RUN", "STATE", "BY", "STARTED", "FINISHED", "OBJECTS", "READ", "DAMAGED"], runs);
                let findings: Vec<Vec<String>> = as_list(&v["findings"])
                    .iter()
                    .map(|f| {
                        vec![
                            s(f, "tenant"),
                            s(f, "repository"),
                            format!("{}/{}", s(f, "kind"), s(f, "name")),
                            s(f, "problem"),
                        ]
                    })
                    .collect();
                if !findings.is_empty() {
                    println!();
                    table(&["TENANT", "REPOSITORY", "OBJECT", "PROBLEM"], findings);
                }
            });
            let damaged = i(&v["runs"][0], "damaged");
            if damaged > 0 {
                return Ok(crate::exit::FATAL);
            }
        }
        AdminCommand::RecoveryKey { create } => {
            if *create {
                let passphrase =
                    password_from("ARCA_NEW_PASSWORD", "Recovery passphrase (at least 12 characters, keep it safe): ")?;
                let v = api.json(Method::POST, "/v1/admin/recovery-key", Some(json!({ "passphrase": passphrase })))?;
                say!(g, "recovery key made, fingerprint {}", s(&v, "fingerprint"));
            }
            let v = api.json(Method::GET, "/v1/recovery-key", None)?;
            print_or(g, &v, |v| {
                println!("provider recovery key {} (public key {})", s(v, "fingerprint"), s(v, "public_key"));
            });
        }
        AdminCommand::RestoreCheck { repo } => {
            let path = match repo {
                Some(r) => format!("/v1/admin/restore-check?repo={}", q(r)),
                None => "/v1/admin/restore-check".to_string(),
            };
            let v = api.json(Method::POST, &path, None)?;
            print_or(g, &v, |v| {
                let rows = as_list(v)
                    .iter()
                    .map(|o| {
                        let verdict = match (o["snapshot"].is_null(), o["ok"] == true) {
                            (true, _) => "no snapshot",
                            (false, true) => "ok",
                            (false, false) => "FAILED",
                        };
                        vec![s(o, "repo"), verdict.to_string(), s(o, "summary")]
                    })
                    .collect();
                table(&["REPOSITORY", "RESULT", "WHAT WAS PROVED"], rows);
            });
            if as_list(&v).iter().any(|o| o["ok"] == false) {
                return Ok(crate::exit::FATAL);
            }
        }
        AdminCommand::Audit { tenant, outcome, action, actor, text, from, to, before, limit } => {
            let mut path = format!("/v1/admin/audit?limit={limit}");
            for (key, value) in [
                ("tenant", tenant),
                ("outcome", outcome),
                ("action", action),
                ("actor", actor),
                ("text", text),
                ("from", from),
                ("to", to),
            ] {
                if let Some(v) = value {
                    path.push_str(&format!("&{key}={}", q(v)));
                }
            }
            if let Some(b) = before {
                path.push_str(&format!("&before={b}"));
            }
            let v = api.json(Method::GET, &path, None)?;
            print_or(g, &v, |v| {
                let rows = as_list(v)
                    .iter()
                    .map(|e| {
                        vec![
                            date(i(e, "at")),
                            s(e, "actor"),
                            s(e, "tenant"),
                            s(e, "action"),
                            s(e, "target"),
                            s(e, "outcome"),
                            s(e, "detail"),
                        ]
                    })
                    .collect();
                table(&["TIME", "ACTOR", "TENANT", "ACTION", "TARGET", "OUTCOME", "DETAIL"], rows);
            });
        }
    }
    Ok(crate::exit::OK)
}

fn tenant_row(t: &arca_api::Tenant) -> Vec<String> {
    vec![
        t.name.clone(),
        t.display_name.clone(),
        t.plan.clone().unwrap_or_else(|| "-".into()),
        human(t.stored_bytes),
        if t.hard_quota_bytes == 0 { "unlimited".into() } else { human(t.hard_quota_bytes) },
        if t.soft_quota_bytes == 0 { "-".into() } else { human(t.soft_quota_bytes) },
        if t.suspended { "suspended" } else { "active" }.into(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_both_unit_families() {
        assert_eq!(parse_size("0").unwrap(), 0);
        assert_eq!(parse_size("1500").unwrap(), 1500);
        assert_eq!(parse_size("1.5GB").unwrap(), 1_500_000_000);
        assert_eq!(parse_size("2 GiB").unwrap(), 2 << 30);
        assert_eq!(parse_size("10TiB").unwrap(), 10 << 40);
        assert!(parse_size("12 apples").is_err());
        assert!(parse_size("-1").is_err());
        assert_eq!(parse_cents("99.50").unwrap(), 9950);
        assert_eq!(parse_cents("120").unwrap(), 12_000);
    }
}
