//! `arca mount`: the repository's snapshots as a read-only FUSE file system.
//!
//! Layout: `snapshots/<id>/…` (each snapshot's tree; `snapshots/latest` links to the newest),
//! `hosts/<host>/<time>` (links into `snapshots/`; `hosts/<host>/latest` links to the host's
//! newest). Directories of a snapshot are loaded from the repository when first looked at; file
//! reads go through a bounded cache of blobs ([`arca_core::reader`]), so a large file streams
//! without being restored.
//!
//! The file system itself is [`arca_fuse`], shared with the appliance's previous versions.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context, Result};
use arca_core::repository::Repository;
use arca_fuse::Builder;
use clap::Args;
use serde_json::json;

use crate::cli::GlobalOpts;
use crate::output::print_json;
use crate::repo;

const LONG_ABOUT: &str = "\
Mount the repository's snapshots as a read-only file system (FUSE) and browse or copy files with
any program. The mount shows:

  snapshots/<id>/...        every snapshot by its short id; snapshots/latest is the newest
  hosts/<host>/<time>       every snapshot of a host by time (UTC); hosts/<host>/latest

Files are read from the repository on demand through a bounded cache (--cache-size); nothing is
restored first. A file whose data sits in a damaged pack fails to read (EIO) and the pack is named
in the log; everything else stays readable.

The repository may be given as the first argument or by -r/ARCA_REPOSITORY, and may be a local
directory or an arca server. The command runs until interrupted (Ctrl-C or SIGTERM), then unmounts.
It needs /dev/fuse and fusermount3 (Debian package fuse3).

Examples:
  arca mount /srv/backup /mnt/arca
  arca -r https://backup.example.com/v1/repos/laptop mount /mnt/arca";

/// `arca mount` flags.
#[derive(Debug, Args)]
#[command(about = "Mount snapshots as a read-only file system", long_about = LONG_ABOUT)]
pub struct MountArgs {
    /// `[REPO] MOUNTPOINT`: the repository (default: -r/ARCA_REPOSITORY) and an empty directory
    #[arg(value_name = "[REPO] MOUNTPOINT", num_args = 1..=2, required = true)]
    pub places: Vec<String>,

    /// Most memory for cached file data
    #[arg(long, value_name = "SIZE", default_value = "256M", value_parser = super::image::parse_size)]
    pub cache_size: u64,
}

/// The CLI's repository never changes while mounted.
struct Fixed(Repository);

impl arca_fuse::Source for Fixed {
    fn with_repository<T>(&self, f: impl FnOnce(&Repository) -> T) -> T {
        f(&self.0)
    }
}

/// Builds the layout: `snapshots/` and `hosts/` with their links. Returns the file system and the
/// number of snapshots in it.
fn build(mut repo: Repository, cache_bytes: usize) -> Result<(arca_fuse::SnapshotFs<Fixed>, usize)> {
    let (mut snaps, damaged) = repo.snapshots()?;
    for e in damaged {
        tracing::warn!("skipping a damaged snapshot: {e}");
    }
    // The index after the snapshots (see `super::load_index_for`).
    super::load_index_for(&mut repo)?;
    snaps.sort_by(|a, b| a.1.time.cmp(&b.1.time).then(a.0.cmp(&b.0)));
    let now = SystemTime::now();
    let mut b = Builder::new();
    let snapshots_dir = b.dir(Builder::ROOT, b"snapshots", now);
    let hosts_dir = b.dir(Builder::ROOT, b"hosts", now);
    let shorts: Vec<String> = snaps.iter().map(|(id, _)| id.short()).collect();
    let mut names = Vec::new();
    for ((id, snap), short) in snaps.iter().zip(&shorts) {
        let name = if shorts.iter().filter(|s| *s == short).count() > 1 { id.to_hex() } else { short.clone() };
        b.tree(snapshots_dir, name.as_bytes(), snap.tree, snap.time.into());
        names.push(name);
    }
    if let Some(last) = names.last() {
        let t: SystemTime = snaps.last().map(|s| s.1.time.into()).unwrap_or(now);
        b.symlink(snapshots_dir, b"latest", last.as_bytes(), t);
    }
    let mut by_host: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, (_, snap)) in snaps.iter().enumerate() {
        by_host.entry(snap.hostname.as_str()).or_default().push(i);
    }
    for (host, list) in by_host {
        let host_name = if host.is_empty() || host.contains('/') || host == "." || host == ".." {
            format!("host-{}", host.replace('/', "_"))
        } else {
            host.to_string()
        };
        let host_dir = b.dir(hosts_dir, host_name.as_bytes(), now);
        let mut last_name = None;
        for i in list {
            let snap = &snaps[i].1;
            let mut name = snap.time.format("%Y-%m-%dT%H:%M:%SZ").to_string();
            if b.contains(host_dir, name.as_bytes()) {
                name = format!("{name}-{}", names[i]);
            }
            let target = format!("../../snapshots/{}", names[i]);
            b.symlink(host_dir, name.as_bytes(), target.as_bytes(), snap.time.into());
            last_name = Some(name);
        }
        if let Some(last) = last_name {
            b.symlink(host_dir, b"latest", last.as_bytes(), now);
        }
    }
    Ok((b.build(Fixed(repo), cache_bytes), snaps.len()))
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_signal: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// Runs `arca mount`.
pub fn run(g: &GlobalOpts, a: &MountArgs) -> Result<i32> {
    let mut global = g.clone();
    let mount_point = match a.places.as_slice() {
        [mp] => mp,
        [repo, mp] => {
            global.repo = Some(repo.clone());
            mp
        }
        _ => bail!("give [REPO] MOUNTPOINT"),
    };
    let mount_point = std::path::absolute(PathBuf::from(mount_point)).context("resolving the mount point")?;
    arca_fuse::check_mount_point(&mount_point)?;
    let opened = repo::open(&global)?;
    let location = opened.repo.store().location();
    let (fs, snapshots) = build(opened.repo, a.cache_size as usize)?;
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_stop_signal as extern "C" fn(libc::c_int) as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_stop_signal as extern "C" fn(libc::c_int) as libc::sighandler_t);
    }
    let session = arca_fuse::mount(fs, &mount_point, "arca")?;
    if g.json {
        print_json(&json!({
            "message_type": "mounted",
            "mount_point": mount_point.display().to_string(),
            "repository": location,
            "snapshots": snapshots,
        }))?;
    } else if !g.quiet {
        println!("mounted {snapshots} snapshots of {location} at {}; Ctrl-C unmounts", mount_point.display());
    }
    // Output is informational: a reader that went away does not stop the mount.
    let _ = crate::output::stdout().flush();
    let mut external = false;
    while !STOP.load(Ordering::SeqCst) {
        if session.guard.is_finished() {
            external = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if external {
        session.join().context("the file system thread")?;
        if !g.quiet && !g.json {
            println!("{} was unmounted from outside", mount_point.display());
        }
        return Ok(crate::exit::OK);
    }
    session.umount_and_join().with_context(|| {
        format!(
            "unmounting {} (is a program still using it? close it and run `fusermount3 -u {}`)",
            mount_point.display(),
            mount_point.display()
        )
    })?;
    if !g.quiet && !g.json {
        println!("unmounted {}", mount_point.display());
    }
    Ok(crate::exit::OK)
}
