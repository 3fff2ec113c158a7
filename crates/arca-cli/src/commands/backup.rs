//! `arca backup`: save files or standard input as a new snapshot.

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use anyhow::{bail, Context, Result};
use arca_core::backup::{BackupOptions, BackupProgress, ParentChoice};
use chrono::{DateTime, Local, NaiveDateTime, TimeZone, Utc};
use clap::Args;

use crate::cli::{FilterArgs, GlobalOpts};
use crate::output::{self, print_json, snapshot_json};
use crate::progress::{self, Style};
use crate::repo;

const LONG_ABOUT: &str = "\
Back up files and directories into a new snapshot.

Each given path is saved with its absolute path. Files unchanged since the parent snapshot (the
latest one of the same host and paths, or --parent) are not read again: their size, modification
and change times and inode must match. --force reads every file.

Exclude patterns (--exclude, or one per line in --exclude-file, `#` starts a comment) are globs: a
pattern without `/` matches a file or directory name at any depth (`*.tmp`, `node_modules`); one
with `/` matches the absolute path (`/home/*/.cache`, `**/target`).

--stdin saves standard input as one file named by --stdin-filename (default `stdin`).

--image saves a disk image or block device (raw, or qcow2 read as the disk the guest sees) in
fixed-size blocks (--chunk-size; by default the previous backup's of the same image, else 64 KiB,
doubled for disks over 64 GiB to stay under a million blocks); all-zero blocks are stored as
holes, and blocks already in the repository are not stored again, so an unchanged disk adds almost
nothing. Restore it
with `arca restore SNAPSHOT --image TARGET`, or serve it with `arca nbd SNAPSHOT`.

Files that cannot be read are reported and left out; the snapshot is still saved and the exit code
is 3.

Examples:
  arca backup ~/work ~/notes --tag daily --exclude '*.o' --exclude node_modules
  arca backup / -x --exclude-file /etc/arca/excludes
  pg_dump mydb | arca backup --stdin --stdin-filename mydb.sql
  arca backup --image /var/lib/libvirt/images/vm1.qcow2";

/// `arca backup` flags.
#[derive(Debug, Args)]
#[command(about = "Create a new snapshot of files and directories", long_about = LONG_ABOUT)]
pub struct BackupArgs {
    /// Files and directories to back up
    #[arg(value_name = "PATH", required_unless_present_any = ["stdin", "image"])]
    pub paths: Vec<PathBuf>,

    /// Add a tag to the snapshot; `a,b` adds both (repeatable)
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,

    /// Host name to record (default: this machine's name)
    #[arg(short = 'H', long = "host", env = "ARCA_HOST", value_name = "HOST")]
    pub host: Option<String>,

    /// Exclude files matching this pattern (repeatable)
    #[arg(short = 'e', long = "exclude", value_name = "PATTERN")]
    pub excludes: Vec<String>,

    /// Read exclude patterns from this file, one per line (repeatable)
    #[arg(long = "exclude-file", value_name = "FILE")]
    pub exclude_files: Vec<PathBuf>,

    /// Do not cross file system boundaries below the given paths
    #[arg(short = 'x', long)]
    pub one_file_system: bool,

    /// Read the content to back up from standard input
    #[arg(long, conflicts_with = "paths")]
    pub stdin: bool,

    /// File name for the content read with --stdin
    #[arg(long, value_name = "NAME", default_value = "stdin", requires = "stdin")]
    pub stdin_filename: String,

    /// Compare with this snapshot instead of the latest one of the same host and paths
    #[arg(long, value_name = "SNAPSHOT", conflicts_with = "force")]
    pub parent: Option<String>,

    /// Read every file, even those unchanged since the parent snapshot
    #[arg(short = 'f', long)]
    pub force: bool,

    /// Time to record for the snapshot (RFC 3339, or `YYYY-MM-DD HH:MM:SS` in local time)
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub time: Option<DateTime<Utc>>,

    /// Do not save extended attributes
    #[arg(long)]
    pub no_xattrs: bool,

    /// Back up this disk image or block device block by block (raw or qcow2; see --chunk-size)
    #[arg(long, value_name = "FILE_OR_DEVICE", conflicts_with_all = ["paths", "stdin"])]
    pub image: Option<PathBuf>,

    /// Block size of --image backups [default: the previous backup's, else 64K and more for disks over 64G]
    #[arg(long, value_name = "SIZE", value_parser = super::image::parse_size, requires = "image")]
    pub chunk_size: Option<u64>,

    /// Format of the --image source
    #[arg(long, value_enum, default_value = "auto", requires = "image")]
    pub image_format: super::image::ImageFormatArg,
}

fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s.trim()) {
        return Ok(t.with_timezone(&Utc));
    }
    for fmt in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S"] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(s.trim(), fmt) {
            if let Some(t) = Local.from_local_datetime(&naive).earliest() {
                return Ok(t.with_timezone(&Utc));
            }
        }
    }
    Err(format!("{s:?} is not a time: use RFC 3339 (2024-05-01T12:00:00Z) or `2024-05-01 12:00:00`"))
}

/// Runs `arca backup`.
pub fn run(g: &GlobalOpts, a: &BackupArgs) -> Result<i32> {
    if let Some(image) = &a.image {
        return super::image::backup(g, a, image);
    }
    let mut excludes = a.excludes.clone();
    for f in &a.exclude_files {
        excludes.extend(arca_core::backup::read_exclude_file(f)?);
    }
    if a.stdin && std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        bail!("--stdin given but standard input is a terminal: pipe the data to back up into arca");
    }
    let mut opened = repo::open(g)?;
    let repo = &mut opened.repo;

    let parent = if a.force {
        ParentChoice::None
    } else if let Some(spec) = &a.parent {
        let (id, _) = super::find_snapshot(repo, spec, &FilterArgs::default())
            .with_context(|| format!("finding the parent snapshot {spec}"))?;
        ParentChoice::Id(id)
    } else {
        ParentChoice::Auto
    };
    let show = progress::enabled(g);
    let opts = BackupOptions {
        paths: a.paths.clone(),
        tags: crate::cli::split_tags(&a.tags),
        hostname: a.host.clone().filter(|h| !h.trim().is_empty()),
        excludes,
        one_file_system: a.one_file_system,
        parent,
        time: a.time,
        stdin_filename: a.stdin.then(|| a.stdin_filename.clone()),
        no_xattrs: a.no_xattrs,
        scan: show,
    };
    let counters = BackupProgress::default();
    let outcome = progress::run(
        show,
        Style::Bytes,
        |bar| {
            let c = |x: &std::sync::atomic::AtomicU64| x.load(Ordering::Relaxed);
            let scan_done = counters.scan_done.load(Ordering::Relaxed);
            bar.set_length(c(&counters.bytes_total).max(c(&counters.bytes_done)));
            bar.set_position(c(&counters.bytes_done));
            let mut msg = if scan_done {
                format!("{}/{} files", c(&counters.files_done), c(&counters.files_total))
            } else {
                format!("{} files (scanning: {} so far)", c(&counters.files_done), c(&counters.files_total))
            };
            let errors = c(&counters.errors);
            if errors > 0 {
                msg.push_str(&format!(", {errors} errors"));
            }
            bar.set_message(msg);
        },
        || {
            if a.stdin {
                let mut stdin = std::io::stdin();
                arca_core::backup::backup(repo, &opts, &counters, Some(&mut stdin))
            } else {
                arca_core::backup::backup(repo, &opts, &counters, None)
            }
        },
    )?;

    for w in outcome.repository_warnings.iter().chain(&outcome.warnings) {
        eprintln!("warning: {w}");
    }
    let s = &outcome.snapshot.summary;
    if g.json {
        let mut v = snapshot_json(&outcome.id, &outcome.snapshot);
        v["message_type"] = "summary".into();
        v["snapshot_id"] = outcome.id.to_hex().into();
        v["warnings"] = serde_json::to_value(&outcome.warnings)?;
        v["repository_warnings"] = serde_json::to_value(&outcome.repository_warnings)?;
        print_json(&v)?;
    } else if !g.quiet {
        let secs = match (s.backup_start, s.backup_end) {
            (Some(a), Some(b)) => (b - a).num_seconds().max(0) as u64,
            _ => 0,
        };
        if let Some(p) = &outcome.snapshot.parent {
            println!("using parent snapshot {}", p.short());
        }
        println!();
        println!(
            "Files:       {:>6} new, {:>6} changed, {:>6} unmodified",
            s.files_new, s.files_changed, s.files_unmodified
        );
        println!("Dirs:        {:>6}", s.dirs);
        if s.others > 0 {
            println!("Others:      {:>6}", s.others);
        }
        println!(
            "Added to the repository: {} ({} stored)",
            output::bytes(s.data_added),
            output::bytes(s.data_added_packed)
        );
        println!();
        println!(
            "processed {} files, {} in {}",
            s.files_new + s.files_changed + s.files_unmodified,
            output::bytes(s.total_bytes),
            output::duration(secs)
        );
        println!("snapshot {} saved", outcome.id.short());
    }
    if outcome.warnings.is_empty() {
        Ok(crate::exit::OK)
    } else {
        if !g.quiet && !g.json {
            eprintln!(
                "warning: {} files or directories could not be read; the snapshot lacks them",
                outcome.warnings.len()
            );
        }
        Ok(crate::exit::PARTIAL)
    }
}
