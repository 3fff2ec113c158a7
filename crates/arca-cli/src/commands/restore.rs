//! `arca restore`: write a snapshot's files back to disk.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::{bail, Result};
use arca_core::lock::LockGuard;
use arca_core::restore::{Overwrite, RestoreOptions, RestoreProgress};
use clap::{Args, ValueEnum};
use serde_json::json;

use crate::cli::{FilterArgs, GlobalOpts};
use crate::output::{self, print_json};
use crate::progress::{self, Style};
use crate::repo;

const LONG_ABOUT: &str = "\
Restore a snapshot, or a part of it, into a target directory.

`SNAPSHOT:PATH` restores only the contents of PATH (a directory or a file, as in the snapshot).
Files are restored with their absolute paths below the target: restoring `latest` of a backup of
/home/me into /tmp/r creates /tmp/r/home/me/...; restoring `latest:/home/me` creates /tmp/r/...

--include and --exclude take the same glob patterns as `backup --exclude`. Existing files are
handled by --overwrite: `if-changed` (default) skips files whose size and modification time already
match and rewrites only the parts that differ, so an interrupted restore resumes where it stopped;
`always` rewrites, `if-newer` only replaces files older than the snapshot's, `never` keeps every
existing file. --verify reads every restored file back and checks it against the snapshot.
--delete removes what the target holds beyond the snapshot (in every directory restored whole;
entries matching --exclude are kept), so that the target matches the snapshot. --limit-rate caps
how fast the repository is read (per second); the progress bar shows the rate and an ETA.

--image TARGET writes one file of the snapshot (an image backed up with `backup --image`; PATH may
be left out when the snapshot holds just one) to a raw file, sparse, or to a block device, which must
be at least as large as the image (checked before anything is written).

Examples:
  arca restore latest --target /tmp/restored
  arca restore 1a2b3c4d:/home/me/work --target ~/work-yesterday --include '*.md'
  arca restore latest --target / --overwrite if-newer --verify
  arca restore latest:/srv/www --target /srv/www --delete --limit-rate 50M
  arca restore latest --image /dev/vdb --verify";

/// `--overwrite` values.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OverwriteArg {
    /// Rewrite existing files completely
    Always,
    /// Skip files whose size and mtime match; rewrite only changed parts of others
    IfChanged,
    /// Only replace files older than the snapshot's version
    IfNewer,
    /// Never touch an existing file
    Never,
}

impl From<OverwriteArg> for Overwrite {
    fn from(o: OverwriteArg) -> Overwrite {
        match o {
            OverwriteArg::Always => Overwrite::Always,
            OverwriteArg::IfChanged => Overwrite::IfChanged,
            OverwriteArg::IfNewer => Overwrite::IfNewer,
            OverwriteArg::Never => Overwrite::Never,
        }
    }
}

/// `arca restore` flags.
#[derive(Debug, Args)]
#[command(about = "Restore files from a snapshot", long_about = LONG_ABOUT)]
pub struct RestoreArgs {
    /// The snapshot (an id prefix or `latest`), optionally with `:PATH` inside it
    #[arg(value_name = "SNAPSHOT[:PATH]")]
    pub snapshot: String,

    /// Directory to restore into (created if missing)
    #[arg(short, long, value_name = "DIR", required_unless_present = "image")]
    pub target: Option<PathBuf>,

    /// Write the disk image at SNAPSHOT[:PATH] to this raw file or block device (sparse)
    #[arg(long, value_name = "FILE_OR_DEVICE", conflicts_with_all = ["target", "includes", "excludes", "dry_run"])]
    pub image: Option<PathBuf>,

    /// Only restore entries matching this pattern, and what is below them (repeatable)
    #[arg(short, long = "include", value_name = "PATTERN")]
    pub includes: Vec<String>,

    /// Skip entries matching this pattern (repeatable)
    #[arg(short, long = "exclude", value_name = "PATTERN")]
    pub excludes: Vec<String>,

    /// Read the restored files back and check them against the snapshot
    #[arg(long)]
    pub verify: bool,

    /// What to do with files that already exist in the target
    #[arg(long, value_enum, default_value = "if-changed")]
    pub overwrite: OverwriteArg,

    /// Only count what would be restored; write nothing
    #[arg(long)]
    pub dry_run: bool,

    /// Delete files and directories in the target that are not in the snapshot (those matching
    /// --exclude are kept), so the target matches it
    #[arg(long, conflicts_with = "image")]
    pub delete: bool,

    /// Read from the repository at most this many bytes per second (e.g. 20M)
    #[arg(long, value_name = "SIZE", value_parser = super::image::parse_size)]
    pub limit_rate: Option<u64>,

    #[command(flatten)]
    pub filter: FilterArgs,
}

/// Runs `arca restore`.
pub fn run(g: &GlobalOpts, a: &RestoreArgs) -> Result<i32> {
    let target = match (&a.image, &a.target) {
        (Some(image), _) => {
            return super::image::restore(g, &a.snapshot, &a.filter, image, a.verify, a.limit_rate);
        }
        (None, Some(t)) => t,
        (None, None) => bail!("give --target DIR (or --image FILE_OR_DEVICE for an image snapshot)"),
    };
    let (spec, subpath) = match a.snapshot.split_once(':') {
        Some((s, p)) => (s, Some(p.to_string()).filter(|p| !p.is_empty())),
        None => (a.snapshot.as_str(), None),
    };
    if target.as_os_str().is_empty() {
        bail!("--target must not be empty");
    }
    let mut opened = repo::open(g)?;
    let repo = &mut opened.repo;
    let _lock = LockGuard::acquire(repo.store().clone(), "restore")?;
    let (id, snap) = super::find_snapshot(repo, spec, &a.filter)?;
    super::load_index_for(repo)?;
    let opts = RestoreOptions {
        target: target.clone(),
        subpath,
        includes: a.includes.clone(),
        excludes: a.excludes.clone(),
        verify: a.verify,
        overwrite: a.overwrite.into(),
        apply: None,
        dry_run: a.dry_run,
        delete: a.delete,
        limit_rate: a.limit_rate,
    };
    say!(
        g,
        "restoring snapshot {} of [{}] at {} to {}",
        id.short(),
        snap.paths.join(" "),
        output::local_time(snap.time),
        target.display()
    );
    let counters = RestoreProgress::default();
    let started = Instant::now();
    let repo: &arca_core::repository::Repository = repo;
    let outcome = progress::run(
        progress::enabled(g) && !a.dry_run,
        Style::Bytes,
        |bar| {
            let c = |x: &std::sync::atomic::AtomicU64| x.load(Ordering::Relaxed);
            bar.set_length(c(&counters.bytes_total));
            bar.set_position(c(&counters.bytes_done));
            bar.set_message(format!("{}/{} files", c(&counters.files_done), c(&counters.files_total)));
        },
        || arca_core::restore::restore(repo, &snap, &opts, &counters),
    )?;
    let secs = started.elapsed().as_secs();
    if g.json {
        let mut v = serde_json::to_value(&outcome)?;
        v["message_type"] = "summary".into();
        v["snapshot_id"] = json!(id.to_hex());
        v["dry_run"] = json!(a.dry_run);
        v["seconds"] = json!(started.elapsed().as_secs_f64());
        print_json(&v)?;
    } else if !g.quiet {
        let verb = if a.dry_run { "would restore" } else { "restored" };
        println!(
            "Summary: {verb} {} files, {} dirs, {} others ({} {}) in {}",
            outcome.files,
            outcome.dirs,
            outcome.others,
            output::bytes(outcome.bytes_written),
            if a.dry_run { "to write" } else { "written" },
            output::duration(secs)
        );
        if a.delete {
            let verb = if a.dry_run { "would delete" } else { "deleted" };
            println!("{verb} {} entries not in the snapshot", outcome.deleted);
        }
        if outcome.files_skipped > 0 {
            println!("skipped {} files that were already complete", outcome.files_skipped);
        }
        if a.verify && !a.dry_run {
            println!("verified {} files", outcome.files_verified);
        }
    }
    if !outcome.errors.is_empty() {
        for e in &outcome.errors {
            eprintln!("error: {e}");
        }
        bail!(
            "the restore is incomplete: {} errors (see above); run `arca check --read-data` to find damaged data",
            outcome.errors.len()
        );
    }
    Ok(crate::exit::OK)
}
