//! `arca stats`: sizes and counts of snapshots and of the repository.

use anyhow::Result;
use clap::{Args, ValueEnum};

use crate::cli::{FilterArgs, GlobalOpts};
use crate::output::{self, print_json};
use crate::repo;

const LONG_ABOUT: &str = "\
Show how much data the snapshots hold and how much the repository stores.

--mode restore-size (default) counts the files of the chosen snapshots and the bytes a restore of
all of them would write. --mode raw-data counts the unique blobs they reference: their plaintext
size, the space they take in the repository after compression and encryption, and the compression
ratio. Without snapshot arguments every snapshot passing --host/--tag/--path is counted.

Examples:
  arca stats
  arca stats latest --mode raw-data
  arca stats --host laptop --json";

/// What to count.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Mode {
    /// Files and bytes a restore would write
    RestoreSize,
    /// Unique blobs, their size and their stored size
    RawData,
}

/// `arca stats` flags.
#[derive(Debug, Args)]
#[command(about = "Show sizes of snapshots and of the repository", long_about = LONG_ABOUT)]
pub struct StatsArgs {
    /// Snapshots to count (ids or `latest`; default: all)
    #[arg(value_name = "SNAPSHOT")]
    pub snapshots: Vec<String>,

    /// What to count
    #[arg(long, value_enum, default_value = "restore-size")]
    pub mode: Mode,

    #[command(flatten)]
    pub filter: FilterArgs,
}

/// Runs `arca stats`.
pub fn run(g: &GlobalOpts, a: &StatsArgs) -> Result<i32> {
    let mut opened = repo::open(g)?;
    let repo = &mut opened.repo;
    for problem in repo.load_index()? {
        tracing::warn!("{problem}");
    }
    let snapshots = super::snapshots_or_all(repo, &a.snapshots, &a.filter)?;
    let stats = arca_core::stats::stats(repo, &snapshots)?;
    if g.json {
        let mut v = serde_json::to_value(&stats)?;
        v["mode"] = match a.mode {
            Mode::RestoreSize => "restore-size",
            Mode::RawData => "raw-data",
        }
        .into();
        print_json(&v)?;
        return Ok(crate::exit::OK);
    }
    say!(g, "scanning {} snapshots", stats.snapshots);
    match a.mode {
        Mode::RestoreSize => {
            println!("Stats in restore-size mode:");
            println!("     Snapshots processed:  {}", stats.snapshots);
            println!("        Total file count:  {}", stats.files);
            println!("              Total size:  {}", output::bytes(stats.restore_size));
        }
        Mode::RawData => {
            println!("Stats in raw-data mode:");
            println!("     Snapshots processed:  {}", stats.snapshots);
            println!("        Total blob count:  {}", stats.unique_blobs);
            println!("  Total uncompressed size:  {}", output::bytes(stats.raw_data));
            println!("       Total stored size:  {}", output::bytes(stats.stored_size));
            println!(
                "                   Packs:  {} ({} in the repository)",
                stats.packs,
                output::bytes(stats.repository_size)
            );
            println!("       Compression ratio:  {:.2}x", stats.compression_ratio);
        }
    }
    Ok(crate::exit::OK)
}
