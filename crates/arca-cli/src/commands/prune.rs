//! `arca prune`: delete data that no snapshot needs.

use anyhow::Result;
use arca_core::prune::PruneOptions;
use arca_core::repository::Repository;
use clap::Args;

use crate::cli::GlobalOpts;
use crate::output::{self, print_json};
use crate::repo;

const LONG_ABOUT: &str = "\
Delete the packs that no snapshot needs any more, and rewrite the index without them.

Run it after `arca forget` (or use `forget --prune`). Prune works while backups run: it marks the
packs it will delete, waits for the backups that started earlier to finish, and only then deletes;
a backup that starts meanwhile stores again whatever it needs from a marked pack. --dry-run only
reports what would be deleted.

Examples:
  arca prune
  arca prune --dry-run";

/// `arca prune` flags.
#[derive(Debug, Args)]
#[command(about = "Delete data no snapshot needs", long_about = LONG_ABOUT)]
pub struct PruneArgs {
    /// Only report what would be deleted
    #[arg(short = 'n', long)]
    pub dry_run: bool,
}

/// Runs `arca prune`.
pub fn run(g: &GlobalOpts, a: &PruneArgs) -> Result<i32> {
    let mut opened = repo::open(g)?;
    prune_and_report(g, &mut opened.repo, a.dry_run)?;
    Ok(crate::exit::OK)
}

/// Prunes an open repository and prints the report (shared with `forget --prune`).
pub fn prune_and_report(g: &GlobalOpts, repo: &mut Repository, dry_run: bool) -> Result<()> {
    say!(g, "{}", if dry_run { "checking what prune would delete" } else { "pruning the repository" });
    let report = arca_core::prune::prune(repo, &PruneOptions { dry_run, ..Default::default() })?;
    if g.json {
        let mut v = serde_json::to_value(&report)?;
        v["message_type"] = "prune".into();
        v["dry_run"] = dry_run.into();
        print_json(&v)?;
    } else if !g.quiet {
        let verb = if dry_run { "would delete" } else { "deleted" };
        if report.stale_locks_removed > 0 {
            println!("removed {} stale locks", report.stale_locks_removed);
        }
        if report.waited_for_locks > 0 {
            println!("waited for {} running operations to finish", report.waited_for_locks);
        }
        println!(
            "{verb} {} packs ({}), kept {} packs",
            report.packs_deleted,
            output::bytes(report.bytes_freed),
            report.packs_kept
        );
        println!("index: {} files written, {} files deleted", report.index_files_written, report.index_files_deleted);
        if report.packs_deleted == 0 {
            println!("nothing to delete");
        }
    }
    Ok(())
}
