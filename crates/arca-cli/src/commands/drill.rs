//! `arca drill`: a restore drill — restore a sample of a snapshot, check it, measure the rate.

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use anyhow::{Context, Result};
use arca_core::drill::{DrillOptions, DrillProgress};
use arca_core::lock::LockGuard;
use clap::Args;
use serde_json::json;

use crate::cli::{FilterArgs, GlobalOpts};
use crate::output::{self, print_json};
use crate::progress::{self, Style};
use crate::repo;

const LONG_ABOUT: &str = "\
Prove that a snapshot can be restored: restore some of its files (--sample N, chosen at random) or
all of them into a scratch directory, read them back, and check every piece against the hashes
stored in the snapshot. The report says what was proved, the measured restore rate, and the
estimated time to restore the whole snapshot at that rate.

The scratch directory (--scratch, default: the system's temporary directory) should be on the kind
of disk a real restore would write to, since the rate depends on it. The restored files are deleted
afterwards unless --keep is given.

Exit codes: 0 the drill passed; 1 a file could not be restored or did not match (the report names
it and the damaged pack), or the drill could not run.

Examples:
  arca drill --sample 100
  arca drill latest --host fileserver --json
  arca drill 1a2b3c4d --scratch /srv/restore-test";

/// `arca drill` flags.
#[derive(Debug, Args)]
#[command(about = "Restore a sample of a snapshot and prove it matches", long_about = LONG_ABOUT)]
pub struct DrillArgs {
    /// The snapshot (an id prefix or `latest`)
    #[arg(value_name = "SNAPSHOT", default_value = "latest")]
    pub snapshot: String,

    /// Restore this many files chosen at random (default: every file)
    #[arg(long, value_name = "N")]
    pub sample: Option<usize>,

    /// Seed of the random choice (default: from the clock; the report shows it)
    #[arg(long, value_name = "SEED")]
    pub seed: Option<u64>,

    /// Directory to restore into (a new directory is made inside it)
    #[arg(long, value_name = "DIR")]
    pub scratch: Option<PathBuf>,

    /// Keep the restored files
    #[arg(long)]
    pub keep: bool,

    #[command(flatten)]
    pub filter: FilterArgs,
}

/// Runs `arca drill`.
pub fn run(g: &GlobalOpts, a: &DrillArgs) -> Result<i32> {
    let mut opened = repo::open(g)?;
    let repo = &mut opened.repo;
    let _lock = LockGuard::acquire(repo.store().clone(), "restore")?;
    let (id, snap) = super::find_snapshot(repo, &a.snapshot, &a.filter)?;
    super::load_index_for(repo)?;
    let base = a.scratch.clone().unwrap_or_else(std::env::temp_dir);
    let scratch = tempfile::Builder::new()
        .prefix("arca-drill-")
        .tempdir_in(&base)
        .with_context(|| format!("making a scratch directory in {}", base.display()))?;
    let seed = a.seed.unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
    });
    let opts = DrillOptions { sample: a.sample, seed, scratch: scratch.path().to_path_buf() };
    let counters = DrillProgress::default();
    let repo: &arca_core::repository::Repository = repo;
    let report = progress::run(
        progress::enabled(g),
        Style::Bytes,
        |bar| {
            bar.set_length(counters.bytes_total.load(Ordering::Relaxed));
            bar.set_position(counters.bytes_done.load(Ordering::Relaxed));
        },
        || arca_core::drill::drill(repo, &snap, &opts, &counters),
    )?;
    let kept = if a.keep { Some(scratch.keep()) } else { None };
    if g.json {
        let mut v = serde_json::to_value(&report)?;
        v["message_type"] = "summary".into();
        v["snapshot_id"] = json!(id.to_hex());
        v["passed"] = json!(report.passed());
        v["seed"] = json!(seed);
        v["kept"] = json!(kept.as_ref().map(|p| p.display().to_string()));
        print_json(&v)?;
    } else if !g.quiet {
        let share = if report.bytes_in_snapshot > 0 {
            100.0 * report.bytes_restored as f64 / report.bytes_in_snapshot as f64
        } else {
            100.0
        };
        println!(
            "drill of snapshot {} ({}, {}):",
            id.short(),
            output::local_time(snap.time),
            if report.whole_snapshot { "whole snapshot".to_string() } else { format!("sample seed {seed}") }
        );
        println!(
            "  restored {} of {} files ({} of {}, {share:.1}%) and read them back: {} matched their stored hashes",
            report.files_restored,
            report.files_in_snapshot,
            output::bytes(report.bytes_restored),
            output::bytes(report.bytes_in_snapshot),
            report.files_verified
        );
        println!(
            "  restore took {:.2}s ({}/s), checking {:.2}s; estimated full restore: {}",
            report.restore_seconds,
            output::bytes(report.restore_bytes_per_second as u64),
            report.verify_seconds,
            output::duration(report.estimated_full_restore_seconds.ceil() as u64)
        );
        if let Some(p) = &kept {
            println!("  restored files kept in {}", p.display());
        }
    }
    let summary = report.summary(&id.short());
    if report.passed() {
        crate::report::drill(g, true, &summary);
        if !g.quiet && !g.json {
            println!("drill passed");
        }
        return Ok(crate::exit::OK);
    }
    crate::report::drill(g, false, &summary);
    for f in &report.failures {
        eprintln!("error: {}: {}", f.path, f.error);
    }
    eprintln!("drill FAILED: {} files could not be restored intact (see above)", report.failures.len());
    Ok(crate::exit::FATAL)
}
