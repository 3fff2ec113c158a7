//! `arca admin agent …`: managed agents through the admin API (the same calls as the console's
//! agent pages): enrolment codes, protection plans and their assignment, the agents' state,
//! "back up now" and "restore to this machine".

use anyhow::{bail, Context, Result};
use arca_api::agent::{
    AgentView, AssignPlan, EnrolmentCode, JobSpec, NamedPlan, NewEnrolmentCode, PlanRequest, ProtectionPlan,
};
use clap::{Args, Subcommand};
use reqwest::Method;

use super::admin::{date, print_or, q, table, typed, Api};
use crate::cli::GlobalOpts;

/// `arca admin agent …`
#[derive(Debug, Subcommand)]
pub enum AgentAdminCommand {
    /// Create a one-time enrolment code; on the machine: arca agent enroll --server URL --code CODE
    Code {
        /// The tenant the machine joins
        #[arg(long)]
        tenant: String,
        /// Back up into this existing repository (default: a new one per machine)
        #[arg(long)]
        repo: Option<String>,
        /// Hours until the code expires (1 to 720)
        #[arg(long, default_value_t = 24)]
        valid_hours: i64,
    },
    /// List a tenant's agents: online, version, plan, last and next run, a running backup
    List {
        /// The tenant
        #[arg(long)]
        tenant: String,
    },
    /// List a tenant's protection plans
    Plans {
        /// The tenant
        #[arg(long)]
        tenant: String,
    },
    /// Create or change a protection plan (from a TOML or JSON file, or from flags)
    Plan(PlanArgs),
    /// Delete a protection plan (its agents fall back to the tenant's default)
    DeletePlan {
        /// The tenant
        #[arg(long)]
        tenant: String,
        /// The plan
        name: String,
    },
    /// Give one agent a plan of its own, or (--default) return it to the tenant's default
    Assign {
        /// The tenant
        #[arg(long)]
        tenant: String,
        /// The agent (device name)
        device: String,
        /// The plan
        #[arg(long, required_unless_present = "default")]
        plan: Option<String>,
        /// Use the tenant's default plan
        #[arg(long, conflicts_with = "plan")]
        default: bool,
    },
    /// Ask an agent to run its plan's backup now
    BackupNow {
        /// The tenant
        #[arg(long)]
        tenant: String,
        /// The agent (device name)
        device: String,
    },
    /// Ask an agent to restore a path from a snapshot onto its machine
    Restore {
        /// The tenant
        #[arg(long)]
        tenant: String,
        /// The agent (device name)
        device: String,
        /// Snapshot id or `latest`
        #[arg(long, default_value = "latest")]
        snapshot: String,
        /// The absolute path inside the snapshot
        #[arg(long)]
        path: String,
        /// Restore under this folder (with the full path) instead of the original place
        #[arg(long)]
        target: Option<String>,
    },
}

/// `arca admin agent plan` flags.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The tenant
    #[arg(long)]
    tenant: String,
    /// The plan's name ([a-z0-9-])
    name: String,
    /// The whole plan as a TOML or JSON file (fields as in docs/agent.md); flags below then ignored
    #[arg(long, value_name = "FILE")]
    file: Option<std::path::PathBuf>,
    /// A path to back up (repeatable)
    #[arg(long = "path", value_name = "PATH")]
    paths: Vec<String>,
    /// An exclude pattern (repeatable)
    #[arg(long = "exclude", value_name = "PATTERN")]
    excludes: Vec<String>,
    /// Cron schedule in the agent's local time
    #[arg(long, default_value = "0 1 * * *")]
    schedule: String,
    /// Minutes over which the agents spread their start
    #[arg(long, default_value_t = 30)]
    start_window: u32,
    /// Hours without a backup before the missed-backup alert (0: none)
    #[arg(long, default_value_t = 26)]
    rpo_hours: u32,
    /// Days the server keeps snapshots (0: keep everything)
    #[arg(long, default_value_t = 0)]
    retention_days: i64,
    /// Upload limit in KiB/s (0: none)
    #[arg(long, default_value_t = 0)]
    upload_limit_kib: u64,
    /// A local-time window like 08:00-18:00 in which the limit applies (repeatable; none: always)
    #[arg(long = "limit-window")]
    limit_windows: Vec<String>,
    /// Make it the tenant's default plan
    #[arg(long)]
    default: bool,
}

fn plan_from(a: &PlanArgs) -> Result<ProtectionPlan> {
    if let Some(f) = &a.file {
        let text = std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        return if text.trim_start().starts_with('{') {
            serde_json::from_str(&text).with_context(|| format!("{} is not a plan", f.display()))
        } else {
            toml::from_str(&text).with_context(|| format!("{} is not a plan", f.display()))
        };
    }
    Ok(ProtectionPlan {
        paths: a.paths.clone(),
        excludes: a.excludes.clone(),
        schedule: a.schedule.clone(),
        start_window_minutes: a.start_window,
        rpo_hours: a.rpo_hours,
        retention_days: a.retention_days,
        upload_limit_kib: a.upload_limit_kib,
        limit_windows: a.limit_windows.clone(),
        ..Default::default()
    })
}

/// Runs `arca admin agent …`.
pub(super) fn run(g: &GlobalOpts, api: &Api, c: &AgentAdminCommand) -> Result<()> {
    match c {
        AgentAdminCommand::Code { tenant, repo, valid_hours } => {
            let body = NewEnrolmentCode { repo: repo.clone(), valid_hours: *valid_hours };
            let v = api.send(Method::POST, &format!("/v1/admin/tenants/{}/enrolment-codes", q(tenant)), &body)?;
            let code: EnrolmentCode = typed(&v)?;
            print_or(g, &v, |_| {
                println!("enrolment code for {tenant} (one machine, until {}):", date(code.expires_at));
                println!("  {}", code.code);
                println!("on the machine, as root:");
                println!("  arca agent enroll --server {} --code {}", api.base, code.code);
                println!("  systemctl enable --now arca-agent");
            });
        }
        AgentAdminCommand::List { tenant } => {
            let v = api.json(Method::GET, &format!("/v1/admin/tenants/{}/agents", q(tenant)), None)?;
            let agents: Vec<AgentView> = typed(&v)?;
            print_or(g, &v, |_| {
                let rows = agents
                    .iter()
                    .map(|a| {
                        let state = if a.state.activity == "running" {
                            format!("{} running: {} files", a.state.kind, a.state.files)
                        } else if a.state.last_finished_at > 0 {
                            format!("{}: {}", if a.state.last_ok { "ok" } else { "FAILED" }, a.state.last_message)
                        } else {
                            "-".into()
                        };
                        vec![
                            a.device.clone(),
                            a.info.hostname.clone(),
                            if a.online { "online".into() } else { "offline".into() },
                            a.info.version.clone(),
                            a.plan.clone().unwrap_or_else(|| "-".into()),
                            date(a.last_backup_at),
                            date(a.state.next_run_at),
                            state,
                        ]
                    })
                    .collect();
                table(&["AGENT", "HOST", "STATUS", "VERSION", "PLAN", "LAST BACKUP", "NEXT RUN", "LAST RUN"], rows);
            });
        }
        AgentAdminCommand::Plans { tenant } => {
            let v = api.json(Method::GET, &format!("/v1/admin/tenants/{}/protection-plans", q(tenant)), None)?;
            let plans: Vec<NamedPlan> = typed(&v)?;
            print_or(g, &v, |_| {
                let rows = plans
                    .iter()
                    .map(|p| {
                        vec![
                            format!("{}{}", p.name, if p.tenant_default { " (default)" } else { "" }),
                            p.plan.schedule.clone(),
                            p.plan.paths.join(" "),
                            format!("{} h", p.plan.rpo_hours),
                            p.revision.to_string(),
                        ]
                    })
                    .collect();
                table(&["PLAN", "SCHEDULE", "PATHS", "RPO", "REVISION"], rows);
            });
        }
        AgentAdminCommand::Plan(a) => {
            let plan = plan_from(a)?;
            if let Err(e) = plan.validate() {
                bail!("the plan is not valid: {e}");
            }
            let body = PlanRequest { name: a.name.clone(), plan, tenant_default: a.default };
            let path = format!("/v1/admin/tenants/{}/protection-plans", q(&a.tenant));
            let existing: Vec<NamedPlan> = typed(&api.json(Method::GET, &path, None)?)?;
            let v = if existing.iter().any(|p| p.name == a.name) {
                api.send(Method::PUT, &format!("{path}/{}", q(&a.name)), &body)?
            } else {
                api.send(Method::POST, &path, &body)?
            };
            let saved: NamedPlan = typed(&v)?;
            print_or(g, &v, |_| {
                println!(
                    "saved plan {} of {} (revision {}); agents pick it up within a minute",
                    saved.name, a.tenant, saved.revision
                )
            });
        }
        AgentAdminCommand::DeletePlan { tenant, name } => {
            let v = api.json(
                Method::DELETE,
                &format!("/v1/admin/tenants/{}/protection-plans/{}", q(tenant), q(name)),
                None,
            )?;
            print_or(g, &v, |_| println!("deleted plan {name} of {tenant}"));
        }
        AgentAdminCommand::Assign { tenant, device, plan, default: _ } => {
            let body = AssignPlan { plan: plan.clone() };
            let path = format!("/v1/admin/tenants/{}/devices/{}/protection-plan", q(tenant), q(device));
            let v = api.send(Method::PUT, &path, &body)?;
            print_or(g, &v, |_| match plan {
                Some(p) => println!("agent {device} now runs plan {p}"),
                None => println!("agent {device} now runs its tenant's default plan"),
            });
        }
        AgentAdminCommand::BackupNow { tenant, device } => {
            let v = api.send(
                Method::POST,
                &format!("/v1/admin/tenants/{}/agents/{}/jobs", q(tenant), q(device)),
                &JobSpec::Backup,
            )?;
            print_or(g, &v, |v| println!("asked {device} to back up now (job {})", v["job"]));
        }
        AgentAdminCommand::Restore { tenant, device, snapshot, path, target } => {
            let spec = JobSpec::Restore { snapshot: snapshot.clone(), path: path.clone(), target: target.clone() };
            let v =
                api.send(Method::POST, &format!("/v1/admin/tenants/{}/agents/{}/jobs", q(tenant), q(device)), &spec)?;
            print_or(g, &v, |v| println!("asked {device} to restore {path} (job {})", v["job"]));
        }
    }
    Ok(())
}
