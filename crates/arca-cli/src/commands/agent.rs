//! `arca agent`: this machine as a managed backup agent of a provider's server.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use arca_agent::config::{DEFAULT_PATH, DEFAULT_STATE_DIR};
use arca_agent::AgentFile;
use clap::{Args, Subcommand};

use crate::cli::GlobalOpts;

const LONG_ABOUT: &str = "\
Run this machine's backups as a managed agent of a provider's arca server.

Enrol once with a one-time code from the provider's console (or `arca admin agent code`), as
root. The repository password is yours: it is asked for here (or read from ARCA_PASSWORD or
--password-file), kept in the root-only configuration file, and never sent to the server.

  arca agent enroll --server https://backup.example.net --code 1a2b3c4d-...
  systemctl enable --now arca-agent          # or: arca agent run

From then on the provider's console decides what is backed up and when (the protection plan),
shows this machine's state, and can ask it to back up now or to restore files onto it. Each
machine starts its scheduled backup at its own offset inside the plan's start window, catches
up on a run missed while it was off or asleep, and never runs two backups at once.

Commands in a plan (a database dump before the backup, say) run only where --allow-plan-commands
was given at enrolment: with it, whoever may edit the tenant's plans can run commands as root here.";

/// `arca agent` flags.
#[derive(Debug, Args)]
#[command(about = "Run this machine's backups as a managed agent of an arca server", long_about = LONG_ABOUT)]
pub struct AgentArgs {
    /// The agent's configuration file
    #[arg(long, global = true, env = "ARCA_AGENT_CONFIG", default_value = DEFAULT_PATH, value_name = "FILE")]
    pub config: PathBuf,

    #[command(subcommand)]
    pub command: AgentCommand,
}

/// `arca agent …`
#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Register this machine with a one-time enrolment code and write the configuration file
    Enroll {
        /// The server's base URL
        #[arg(long, env = "ARCA_SERVER", value_name = "URL")]
        server: String,
        /// The one-time code from the console
        #[arg(long, env = "ARCA_ENROL_CODE")]
        code: String,
        /// Where the agent keeps its state
        #[arg(long, default_value = DEFAULT_STATE_DIR, value_name = "DIR")]
        state_dir: PathBuf,
        /// Let the plan's pre/post and dump commands run on this machine (as the agent's user)
        #[arg(long)]
        allow_plan_commands: bool,
        /// A PEM certificate authority to trust for the server
        #[arg(long, value_name = "FILE")]
        ca_cert: Option<PathBuf>,
        /// Replace an existing configuration file
        #[arg(long)]
        force: bool,
    },
    /// Run the agent until stopped (what the arca-agent service runs)
    Run,
    /// Show this machine's enrolment and its last and next runs
    Status,
}

/// Runs `arca agent …`.
pub fn run(g: &GlobalOpts, a: &AgentArgs) -> Result<i32> {
    match &a.command {
        AgentCommand::Enroll { server, code, state_dir, allow_plan_commands, ca_cert, force } => {
            if a.config.exists() && !force {
                bail!(
                    "{} exists: this machine is enrolled already (give --force to enrol it again, which makes a new \
                     device)",
                    a.config.display()
                );
            }
            let password = crate::repo::password(
                g.password_file.as_deref(),
                "ARCA_PASSWORD",
                "enter the repository password (yours; the provider never sees it): ",
                true,
            )?;
            crate::repo::check_new_password(&password)?;
            let password = String::from_utf8(password).context("the password must be UTF-8")?;
            let (file, answer) = arca_agent::service::enroll(
                server,
                code,
                &password,
                &a.config,
                state_dir.clone(),
                *allow_plan_commands,
                ca_cert.clone(),
            )
            .context("enrolling this machine")?;
            if answer.repo_is_new {
                init_repository(&file).context("initialising the new repository")?;
            }
            if g.json {
                println!(
                    "{}",
                    serde_json::json!({"device": answer.device, "tenant": answer.tenant, "repository": answer.repo,
                        "repository_created": answer.repo_is_new, "config": a.config})
                );
            } else {
                println!(
                    "enrolled as {} of {}, backing up into {}{}",
                    answer.device,
                    answer.tenant,
                    answer.repo,
                    if answer.repo_is_new { " (new, initialised with your password)" } else { "" }
                );
                println!("configuration written to {} (root only)", a.config.display());
                println!("start the agent: systemctl enable --now arca-agent   (or: arca agent run)");
            }
            Ok(crate::exit::OK)
        }
        AgentCommand::Run => {
            let file = AgentFile::load(&a.config)?;
            let exe = std::env::current_exe().context("finding the arca binary")?;
            tracing::info!("arca agent {} for {} ({})", env!("CARGO_PKG_VERSION"), file.server, file.repository);
            let stop = Arc::new(AtomicBool::new(false));
            arca_agent::Agent::new(file, &exe, stop)?.run()?;
            Ok(crate::exit::OK)
        }
        AgentCommand::Status => {
            let file = AgentFile::load(&a.config)?;
            let st = arca_agent::local_state::StateFile::load(&file.state_dir)?;
            let s = &st.state;
            let plan = s.config.as_ref().and_then(|c| c.plan.as_ref());
            if g.json {
                println!(
                    "{}",
                    serde_json::json!({"server": file.server, "repository": file.repository,
                        "device": s.config.as_ref().map(|c| c.device.clone()),
                        "plan": plan.map(|p| &p.name), "plan_revision": plan.map(|p| p.revision),
                        "last_slot": s.last_slot, "last_success": s.last_success, "running": s.running,
                        "unsent_reports": s.unsent.len()})
                );
            } else {
                println!("server:      {}", file.server);
                println!("repository:  {}", file.repository);
                println!(
                    "plan:        {}",
                    plan.map_or("(none yet)".into(), |p| format!("{} (revision {})", p.name, p.revision))
                );
                println!("last backup: {}", when(s.last_success));
                if let Some(r) = &s.running {
                    println!("running:     {} since {}", r.kind, when(r.started_at));
                }
            }
            Ok(crate::exit::OK)
        }
    }
}

fn when(ts: i64) -> String {
    if ts == 0 {
        return "never".into();
    }
    chrono::DateTime::from_timestamp(ts, 0)
        .map(|d| d.with_timezone(&chrono::Local).format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

/// Initialises the agent's new repository with the customer's password, as `arca init` does.
fn init_repository(file: &AgentFile) -> Result<()> {
    let exe = std::env::current_exe().context("finding the arca binary")?;
    let mut c = std::process::Command::new(exe);
    c.env("ARCA_REPOSITORY", file.repository_url())
        .env("ARCA_TOKEN", &file.token)
        .env("ARCA_PASSWORD", &file.password)
        .env_remove("ARCA_PASSWORD_FILE")
        .arg("--quiet")
        .arg("init");
    if let Some(ca) = &file.ca_cert {
        c.env("ARCA_CA_CERT", ca);
    }
    let status = c.status().context("running arca init")?;
    if !status.success() {
        bail!("arca init failed ({status})");
    }
    Ok(())
}
