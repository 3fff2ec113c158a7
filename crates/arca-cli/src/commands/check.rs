//! `arca check`: verify the repository's structure and, optionally, its data.

use std::sync::atomic::Ordering;

use anyhow::{bail, Result};
use arca_core::check::{CheckOptions, CheckProgress, ReadData};
use clap::Args;
use serde_json::json;

use crate::cli::GlobalOpts;
use crate::output::{self, print_json};
use crate::progress::{self, Style};
use crate::repo;

const LONG_ABOUT: &str = "\
Check the repository for errors.

Without options, check verifies the structure: every index file and snapshot decodes, every tree
every snapshot needs is readable, every blob a tree names is in the index, and every indexed pack
exists with the right size. With --read-data it also reads every pack and verifies every blob's
hash and authentication tag: this finds bit rot and tampering, at the cost of downloading the
whole repository. --read-data-subset reads part of the packs: `N/M` reads the N-th of M groups
(run with 1/5 .. 5/5 on five days to read everything once), `P%` a random P percent.

For every damaged pack, check names the snapshots and files that lost data, so you know what to
back up again. The exit code is 1 if anything is wrong.

Examples:
  arca check
  arca check --read-data
  arca check --read-data-subset 2/7
  arca check --read-data-subset 10%";

/// `arca check` flags.
#[derive(Debug, Args)]
#[command(about = "Check the repository for errors", long_about = LONG_ABOUT)]
pub struct CheckArgs {
    /// Read and verify all data packs
    #[arg(long, conflicts_with = "read_data_subset")]
    pub read_data: bool,

    /// Read and verify a subset of the data packs: `N/M` (group N of M) or `P%`
    #[arg(long, value_name = "SUBSET", value_parser = parse_subset)]
    pub read_data_subset: Option<Subset>,
}

/// A parsed `--read-data-subset`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Subset {
    /// Group `n` of `m`.
    Group { n: u32, m: u32 },
    /// A random percentage.
    Percent(f64),
}

impl Subset {
    fn read_data(self) -> ReadData {
        match self {
            Subset::Group { n, m } => ReadData::Subset { n, m },
            Subset::Percent(p) => ReadData::Percent(p),
        }
    }
}

fn parse_subset(s: &str) -> Result<Subset, String> {
    let s = s.trim();
    if let Some(p) = s.strip_suffix('%') {
        let p: f64 = p.trim().parse().map_err(|_| format!("{s:?}: expected a percentage like 10%"))?;
        if !(p > 0.0 && p <= 100.0) {
            return Err(format!("{s:?}: the percentage must be above 0 and at most 100"));
        }
        return Ok(Subset::Percent(p));
    }
    if let Some((n, m)) = s.split_once('/') {
        let n: u32 = n.trim().parse().map_err(|_| format!("{s:?}: expected N/M with whole numbers"))?;
        let m: u32 = m.trim().parse().map_err(|_| format!("{s:?}: expected N/M with whole numbers"))?;
        if m == 0 || n == 0 || n > m {
            return Err(format!("{s:?}: N/M needs 1 <= N <= M"));
        }
        return Ok(Subset::Group { n, m });
    }
    Err(format!("{s:?}: use N/M (e.g. 1/5) or a percentage (e.g. 10%)"))
}

/// Runs `arca check`.
pub fn run(g: &GlobalOpts, a: &CheckArgs) -> Result<i32> {
    let mut opened = repo::open(g)?;
    let read_data =
        if a.read_data { ReadData::All } else { a.read_data_subset.map(Subset::read_data).unwrap_or(ReadData::None) };
    let opts = CheckOptions { read_data };
    let counters = CheckProgress::default();
    say!(g, "checking the repository {}", opened.repo.store().location());
    let report = progress::run(
        progress::enabled(g),
        Style::Count,
        |bar| {
            let c = |x: &std::sync::atomic::AtomicU64| x.load(Ordering::Relaxed);
            bar.set_length(c(&counters.packs_total));
            bar.set_position(c(&counters.packs_done));
            bar.set_message(format!("packs, {} read", output::bytes(c(&counters.bytes_done))));
        },
        || arca_core::check::check(&mut opened.repo, &opts, &counters),
    )?;
    let clean = report.errors.is_empty() && report.damaged_packs.is_empty() && report.affected.is_empty();
    if g.json {
        print_json(&json!({
            "message_type": "summary",
            "ok": clean,
            "errors": report.errors,
            "warnings": report.warnings,
            "damaged_packs": report.damaged_packs.iter().map(|p| p.to_hex()).collect::<Vec<_>>(),
            "affected": report.affected.iter().map(|f| json!({
                "snapshot": f.snapshot.to_hex(),
                "path": f.path,
            })).collect::<Vec<_>>(),
            "packs_checked": report.packs_checked,
            "snapshots": report.snapshots,
            "blobs": report.blobs,
            "bytes_read": report.bytes_read,
        }))?;
    } else {
        for w in &report.warnings {
            eprintln!("warning: {w}");
        }
        for e in &report.errors {
            eprintln!("error: {e}");
        }
        if !report.damaged_packs.is_empty() {
            eprintln!("damaged packs:");
            for p in &report.damaged_packs {
                eprintln!("  {p}");
            }
        }
        if !report.affected.is_empty() {
            eprintln!("snapshots and files that lost data:");
            let mut last = None;
            for f in &report.affected {
                if last != Some(f.snapshot) {
                    eprintln!("  snapshot {}:", f.snapshot.short());
                    last = Some(f.snapshot);
                }
                eprintln!("    {}", f.path);
            }
        }
        say!(
            g,
            "checked {} snapshots, {} blobs, {} packs ({} read)",
            report.snapshots,
            report.blobs,
            report.packs_checked,
            output::bytes(report.bytes_read)
        );
        if clean {
            say!(g, "no errors were found");
        }
    }
    if !clean {
        bail!(
            "the repository has errors ({} errors, {} damaged packs, {} affected files)",
            report.errors.len(),
            report.damaged_packs.len(),
            report.affected.len()
        );
    }
    Ok(crate::exit::OK)
}
