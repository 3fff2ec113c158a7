//! `arca backup --image` and `arca restore --image`: disk images and VM volumes, block by block.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use arca_core::backup::BackupProgress;
use arca_core::image::{ImageBackupOptions, ImageFormat, ImageRestoreOptions};
use arca_core::lock::LockGuard;
use arca_core::restore::RestoreProgress;
use clap::ValueEnum;
use serde_json::json;

use crate::cli::{FilterArgs, GlobalOpts};
use crate::output::{self, print_json, snapshot_json};
use crate::progress::{self, Style};
use crate::repo;

/// `--image-format` values.
#[derive(Debug, Clone, Copy, ValueEnum, Default)]
pub enum ImageFormatArg {
    /// qcow2 if the file starts with qcow2's magic, raw otherwise
    #[default]
    Auto,
    /// The bytes are the disk
    Raw,
    /// A qcow2 volume (backed up as the disk the guest sees)
    Qcow2,
}

impl From<ImageFormatArg> for ImageFormat {
    fn from(f: ImageFormatArg) -> ImageFormat {
        match f {
            ImageFormatArg::Auto => ImageFormat::Auto,
            ImageFormatArg::Raw => ImageFormat::Raw,
            ImageFormatArg::Qcow2 => ImageFormat::Qcow2,
        }
    }
}

/// Parses a size: a number of bytes with an optional `k`, `M`, `G` (binary: KiB, MiB, GiB) suffix.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a size (try 4M, 512k, 1048576)"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use k, M or G)")),
    };
    n.checked_mul(mult).ok_or_else(|| format!("{s:?} is too large"))
}

/// Runs `arca backup --image`.
pub fn backup(g: &GlobalOpts, a: &super::backup::BackupArgs, image: &Path) -> Result<i32> {
    let chunk_size =
        a.chunk_size.map(|c| u32::try_from(c).map_err(|_| anyhow::anyhow!("--chunk-size is too large"))).transpose()?;
    let opts = ImageBackupOptions {
        path: image.to_path_buf(),
        format: a.image_format.into(),
        chunk_size,
        tags: crate::cli::split_tags(&a.tags),
        hostname: a.host.clone().filter(|h| !h.trim().is_empty()),
        time: a.time,
    };
    let mut opened = repo::open(g)?;
    let repo = &mut opened.repo;
    let counters = BackupProgress::default();
    let outcome = progress::run(
        progress::enabled(g),
        Style::Bytes,
        |bar| {
            bar.set_length(counters.bytes_total.load(Ordering::Relaxed));
            bar.set_position(counters.bytes_done.load(Ordering::Relaxed));
        },
        || arca_core::image::backup_image(repo, &opts, &counters),
    )
    .with_context(|| format!("backing up the image {}", image.display()))?;
    let chunk_size = outcome.chunk_size;
    let outcome = outcome.backup;
    for w in &outcome.repository_warnings {
        eprintln!("warning: {w}");
    }
    let s = &outcome.snapshot.summary;
    if g.json {
        let mut v = snapshot_json(&outcome.id, &outcome.snapshot);
        v["message_type"] = "summary".into();
        v["snapshot_id"] = outcome.id.to_hex().into();
        v["chunk_size"] = chunk_size.into();
        print_json(&v)?;
    } else if !g.quiet {
        let secs = match (s.backup_start, s.backup_end) {
            (Some(a), Some(b)) => (b - a).num_milliseconds().max(0) as f64 / 1000.0,
            _ => 0.0,
        };
        if let Some(p) = &outcome.snapshot.parent {
            println!("using parent snapshot {}", p.short());
        }
        println!(
            "Image: {} in blocks of {}; added to the repository: {} ({} stored)",
            output::bytes(s.total_bytes),
            output::bytes(chunk_size as u64),
            output::bytes(s.data_added),
            output::bytes(s.data_added_packed)
        );
        println!(
            "processed {} in {secs:.1}s ({}/s)",
            output::bytes(s.total_bytes),
            output::bytes((s.total_bytes as f64 / secs.max(0.001)) as u64)
        );
        println!("snapshot {} saved", outcome.id.short());
    }
    Ok(crate::exit::OK)
}

/// Runs `arca restore SNAPSHOT[:PATH] --image TARGET`.
pub fn restore(
    g: &GlobalOpts,
    snapshot: &str,
    filter: &FilterArgs,
    target: &Path,
    verify: bool,
    limit_rate: Option<u64>,
) -> Result<i32> {
    if target.as_os_str().is_empty() {
        bail!("--image must not be empty");
    }
    let (spec, subpath) = match snapshot.split_once(':') {
        Some((s, p)) => (s, Some(p).filter(|p| !p.is_empty())),
        None => (snapshot, None),
    };
    let mut opened = repo::open(g)?;
    let repo = &mut opened.repo;
    let _lock = LockGuard::acquire(repo.store().clone(), "restore")?;
    let (id, snap) = super::find_snapshot(repo, spec, filter)?;
    super::load_index_for(repo)?;
    let node = arca_core::image::find_file(repo, &snap, subpath)?;
    let counters = RestoreProgress::default();
    let started = Instant::now();
    let repo: &arca_core::repository::Repository = repo;
    let opts = ImageRestoreOptions { target: target.to_path_buf(), verify, limit_rate };
    let outcome = progress::run(
        progress::enabled(g),
        Style::Bytes,
        |bar| {
            bar.set_length(counters.bytes_total.load(Ordering::Relaxed));
            bar.set_position(counters.bytes_done.load(Ordering::Relaxed));
        },
        || arca_core::image::restore_image(repo, &node, &opts, &counters),
    )
    .with_context(|| format!("restoring the image to {}", target.display()))?;
    let secs = started.elapsed().as_secs_f64();
    if g.json {
        let mut v = serde_json::to_value(&outcome)?;
        v["message_type"] = "summary".into();
        v["snapshot_id"] = json!(id.to_hex());
        v["seconds"] = json!(secs);
        print_json(&v)?;
    } else if !g.quiet {
        println!(
            "restored {} to {} ({} of data, {} {}) in {secs:.1}s{}",
            output::bytes(outcome.size),
            target.display(),
            output::bytes(outcome.bytes_written),
            output::bytes(outcome.zero_bytes),
            if outcome.device { "of zeros written" } else { "left as holes" },
            if outcome.verified { ", verified" } else { "" }
        );
    }
    Ok(crate::exit::OK)
}
