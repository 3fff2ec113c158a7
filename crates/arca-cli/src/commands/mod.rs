//! One module per command. Each has an `Args` struct (its flags and help) and a `run` function
//! that returns the exit code.

pub mod admin;
pub mod admin_agents;
pub mod admin_billing;
pub mod admin_resellers;
pub mod agent;
pub mod appliance;
pub mod backup;
pub mod check;
pub mod copy;
pub mod diff;
pub mod drill;
pub mod dump;
pub mod find;
pub mod forget;
pub mod generate;
pub mod image;
pub mod init;
pub mod key;
pub mod ls;
pub mod mount;
pub mod nbd;
pub mod prune;
pub mod repair;
pub mod restic_import;
pub mod restore;
pub mod server;
pub mod snapshots;
pub mod stats;
pub mod version;

use anyhow::Result;
use arca_core::id::SnapshotId;
use arca_core::repository::Repository;
use arca_core::snapshot::Snapshot;

use crate::cli::{Cli, Command, FilterArgs};

/// Runs the parsed command line; returns the exit code.
pub fn run(cli: &Cli) -> Result<i32> {
    let g = &cli.global;
    match &cli.command {
        Command::Init(a) => init::run(g, a),
        Command::Backup(a) => backup::run(g, a).inspect_err(|e| crate::report::backup_failed(g, e)),
        Command::Snapshots(a) => snapshots::run(g, a),
        Command::Ls(a) => ls::run(g, a),
        Command::Find(a) => find::run(g, a),
        Command::Diff(a) => diff::run(g, a),
        Command::Restore(a) => restore::run(g, a),
        Command::Dump(a) => dump::run(g, a),
        Command::Check(a) => check::run(g, a),
        Command::Forget(a) => forget::run(g, a),
        Command::Prune(a) => prune::run(g, a),
        Command::Key(a) => key::run(g, a),
        Command::Stats(a) => stats::run(g, a),
        Command::Copy(a) => copy::run(g, a),
        Command::Repair(a) => repair::run(g, a),
        Command::Version(a) => version::run(g, a),
        Command::Server(a) => server::run(g, a),
        Command::Admin(a) => admin::run(g, a),
        Command::Nbd(a) => nbd::run(g, a),
        Command::Mount(a) => mount::run(g, a),
        Command::Drill(a) => drill::run(g, a),
        Command::Agent(a) => agent::run(g, a),
        Command::Appliance(a) => appliance::run(g, a),
        Command::Generate(a) => generate::run(g, a),
    }
}

/// Loads the index for reading the snapshots already resolved, warning about damaged index files.
///
/// Call it after [`find_snapshot`]: a backup writes its index before its snapshot, so a snapshot
/// that arrived a moment ago (a backup or a replication running beside us) is covered by an
/// index loaded after it was found, never by one loaded before.
pub fn load_index_for(repo: &mut Repository) -> Result<()> {
    for problem in repo.load_index_for_reading()? {
        tracing::warn!("{problem}");
    }
    Ok(())
}

/// Resolves a snapshot argument (`latest` or an id prefix) among the snapshots passing the filter.
pub fn find_snapshot(repo: &Repository, spec: &str, filter: &FilterArgs) -> Result<(SnapshotId, Snapshot)> {
    Ok(repo.find_snapshot(spec.trim(), &filter.filter())?)
}

/// The snapshots passing the filter, oldest first; damaged snapshots are reported and skipped.
pub fn filtered_snapshots(repo: &Repository, filter: &FilterArgs) -> Result<Vec<(SnapshotId, Snapshot)>> {
    let (all, bad) = repo.snapshots()?;
    for e in bad {
        tracing::warn!("skipping a damaged snapshot: {e}");
    }
    let f = filter.filter();
    Ok(all.into_iter().filter(|(_, s)| f.matches(s)).collect())
}

/// Resolves each snapshot argument, or every snapshot passing the filter when none is given.
/// Duplicates are removed; the order is oldest first.
pub fn snapshots_or_all(
    repo: &Repository,
    specs: &[String],
    filter: &FilterArgs,
) -> Result<Vec<(SnapshotId, Snapshot)>> {
    let mut out = if specs.is_empty() {
        filtered_snapshots(repo, filter)?
    } else {
        specs.iter().map(|s| find_snapshot(repo, s, filter)).collect::<Result<Vec<_>>>()?
    };
    out.sort_by(|a, b| a.1.time.cmp(&b.1.time).then(a.0.cmp(&b.0)));
    out.dedup_by(|a, b| a.0 == b.0);
    Ok(out)
}
