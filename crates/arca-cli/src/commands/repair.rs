//! `arca repair index`: rebuild index files from the packs' own headers.

use anyhow::Result;
use clap::{Args, Subcommand};

use crate::cli::GlobalOpts;
use crate::output::print_json;
use crate::repo;

const LONG_ABOUT: &str = "\
Repair parts of a repository from the data that is still intact.

`arca repair index` reads the header of every pack that no readable index file covers (each pack
repeats its blob list in its own encrypted header), writes new index files for them, and then
deletes the damaged index files. Run it when `arca check` reports a damaged index file, or when
prune refuses to run because of one. Nothing but damaged index files is deleted, and it is safe
while backups run.

Examples:
  arca repair index
  arca check";

/// `arca repair` flags.
#[derive(Debug, Args)]
#[command(about = "Repair a damaged index from the packs", long_about = LONG_ABOUT)]
pub struct RepairArgs {
    /// What to repair
    #[command(subcommand)]
    pub what: RepairWhat,
}

/// What `arca repair` can repair.
#[derive(Debug, Subcommand)]
pub enum RepairWhat {
    /// Rebuild index files from pack headers and remove damaged ones
    Index,
}

/// Runs `arca repair`.
pub fn run(g: &GlobalOpts, a: &RepairArgs) -> Result<i32> {
    let mut opened = repo::open(g)?;
    match a.what {
        RepairWhat::Index => {
            let report = arca_core::repair::repair_index(&mut opened.repo)?;
            if g.json {
                print_json(&serde_json::to_value(&report)?)?;
            } else if !g.quiet {
                println!(
                    "re-indexed {} packs into {} new index files; removed {} damaged index files",
                    report.packs_reindexed,
                    report.index_files_written,
                    report.index_files_removed.len()
                );
                for (id, why) in &report.packs_unreadable {
                    eprintln!("error: pack {id} could not be re-indexed: {why}");
                }
            }
            Ok(if report.packs_unreadable.is_empty() { crate::exit::OK } else { crate::exit::FATAL })
        }
    }
}
