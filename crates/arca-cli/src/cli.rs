//! The argument grammar: global flags, the command list, and argument groups shared by commands.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::commands;

const LONG_ABOUT: &str = "\
arca backs up files into an encrypted, deduplicated repository and restores them.

Its commands and flags follow restic's. The repository and its password are given by flags or by
the environment:

  ARCA_REPOSITORY       repository location (same as -r/--repo)
  ARCA_TOKEN            bearer token for a repository on an arca server (http(s)://...)
  ARCA_CA_CERT          PEM file of an extra certificate authority to trust for https:// servers
  ARCA_LOG_FORMAT       `json` for one JSON object per log line (servers, log collectors)
  ARCA_PASSWORD         the repository password
  ARCA_PASSWORD_FILE    a file holding the password (same as --password-file)
  ARCA_HOST             host name for new snapshots and for snapshot filters (same as --host)
  ARCA_LIMIT_UPLOAD     upload limit to an arca server per second, e.g. `512k` or `10M`
  ARCA_LOG / RUST_LOG   log filter, e.g. `debug` or `arca_core=trace`

Without a password in the environment or a file, arca asks for it on the terminal.

Exit codes: 0 success, 1 failure, 3 backup finished but some files were unreadable, 10 no
repository at the location, 12 wrong password, 130 interrupted.

Examples:
  arca -r /srv/backup init
  export ARCA_REPOSITORY=/srv/backup ARCA_PASSWORD_FILE=~/.arca-pass
  arca backup ~/work --tag daily
  arca snapshots
  arca restore latest --target /tmp/restored";

/// The whole command line.
#[derive(Debug, Parser)]
#[command(
    name = "arca",
    version,
    about = "Fast, encrypted, deduplicating backups",
    long_about = LONG_ABOUT,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// Flags every command takes.
    #[command(flatten)]
    pub global: GlobalOpts,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Flags that every command accepts, before or after the command name.
#[derive(Debug, Args, Clone)]
pub struct GlobalOpts {
    /// Repository location: a directory path (or `local:PATH`), or an arca server's
    /// `http(s)://HOST:PORT/v1/repos/REPO` (with ARCA_TOKEN)
    #[arg(
        short = 'r',
        long = "repo",
        env = "ARCA_REPOSITORY",
        global = true,
        help_heading = "Global options",
        value_name = "REPOSITORY"
    )]
    pub repo: Option<String>,

    /// Read the repository password from this file (one trailing newline is removed)
    #[arg(long, env = "ARCA_PASSWORD_FILE", global = true, help_heading = "Global options", value_name = "FILE")]
    pub password_file: Option<PathBuf>,

    /// Print machine-readable JSON on standard output instead of text
    #[arg(long, global = true, help_heading = "Global options")]
    pub json: bool,

    /// Print nothing but errors and the requested data
    #[arg(short, long, global = true, help_heading = "Global options")]
    pub quiet: bool,

    /// Log more: -v for info, -vv for debug, -vvv for trace (ARCA_LOG/RUST_LOG override)
    #[arg(short, long, action = clap::ArgAction::Count, global = true, help_heading = "Global options")]
    pub verbose: u8,

    /// Do not draw progress bars (they are only drawn when standard error is a terminal)
    #[arg(long, global = true, help_heading = "Global options")]
    pub no_progress: bool,

    /// Report progress as one JSON object per second on standard error instead of a bar, e.g.
    /// {"message_type":"progress","bytes":1048576,"total_bytes":4194304,"rate":524288,"message":"3/9 files"}
    /// (scripts, and `arca agent`, which relays it to the console)
    #[arg(long, global = true, help_heading = "Global options")]
    pub progress_json: bool,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    Init(commands::init::InitArgs),
    Backup(commands::backup::BackupArgs),
    Snapshots(commands::snapshots::SnapshotsArgs),
    Ls(commands::ls::LsArgs),
    Find(commands::find::FindArgs),
    Diff(commands::diff::DiffArgs),
    Restore(commands::restore::RestoreArgs),
    Dump(commands::dump::DumpArgs),
    Check(commands::check::CheckArgs),
    Forget(commands::forget::ForgetArgs),
    Prune(commands::prune::PruneArgs),
    Key(commands::key::KeyArgs),
    Stats(commands::stats::StatsArgs),
    Copy(commands::copy::CopyArgs),
    Repair(commands::repair::RepairArgs),
    Version(commands::version::VersionArgs),
    Server(commands::server::ServerArgs),
    Admin(commands::admin::AdminArgs),
    Nbd(commands::nbd::NbdArgs),
    Mount(commands::mount::MountArgs),
    Drill(commands::drill::DrillArgs),
    Appliance(commands::appliance::ApplianceArgs),
    Agent(commands::agent::AgentArgs),
    Generate(commands::generate::GenerateArgs),
}

/// `--host`, `--tag`, `--path`: which snapshots a command considers.
#[derive(Debug, Args, Clone, Default)]
pub struct FilterArgs {
    /// Only consider snapshots from this host (repeatable)
    #[arg(short = 'H', long = "host", env = "ARCA_HOST", value_name = "HOST")]
    pub hosts: Vec<String>,

    /// Only consider snapshots with this tag; `a,b` means both a and b (repeatable)
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,

    /// Only consider snapshots that include this (absolute) path (repeatable)
    #[arg(long = "path", value_name = "PATH")]
    pub paths: Vec<String>,
}

/// Splits `--tag a,b` entries into single tags, dropping empty ones (restic's convention).
pub fn split_tags(tags: &[String]) -> Vec<String> {
    tags.iter().flat_map(|t| t.split(',')).map(|t| t.trim().to_string()).filter(|t| !t.is_empty()).collect()
}

impl FilterArgs {
    /// The engine's filter. Tag entries with commas are split (all must match).
    pub fn filter(&self) -> arca_core::repository::SnapshotFilter {
        arca_core::repository::SnapshotFilter {
            hosts: self.hosts.clone(),
            tags: split_tags(&self.tags),
            paths: self
                .paths
                .iter()
                .map(|p| {
                    let t = p.trim_end_matches('/');
                    if t.is_empty() {
                        "/".to_string()
                    } else {
                        t.to_string()
                    }
                })
                .collect(),
        }
    }
}
