//! Restore drills: prove that a snapshot can be restored, and measure how fast.
//!
//! Algorithm:
//! 1. Walk the snapshot's trees and list every regular file (a tree that cannot be read is a
//!    failure of the drill: its files could not be restored).
//! 2. Pick the files to restore: all of them, or a sample of `sample` files chosen at random
//!    (seeded, so a drill can be repeated exactly).
//! 3. Restore the chosen files into a scratch directory, in parallel, as restore does: every blob
//!    is read from its pack, decrypted, authenticated and checked against its id; zero runs stay
//!    holes. The time this takes gives the restore rate.
//! 4. Read every restored file back from the scratch directory and check each piece against the
//!    stored blob id (keyed BLAKE3) and the file's size: this proves that the bytes on disk, not
//!    just the bytes in memory, are the backed-up ones.
//! 5. Report what was proved, the measured rate, and the estimated time to restore the whole
//!    snapshot at that rate.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use rayon::prelude::*;

use crate::chunker::is_all_zero;
use crate::error::{Error, Result};
use crate::id::BlobId;
use crate::repository::Repository;
use crate::snapshot::Snapshot;
use crate::tree::{ContentRef, Node};

/// How to drill.
#[derive(Debug, Clone, Default)]
pub struct DrillOptions {
    /// Restore this many files chosen at random; `None` restores every file.
    pub sample: Option<usize>,
    /// Seed of the random choice.
    pub seed: u64,
    /// Directory to restore into (must exist; the drill writes below it only).
    pub scratch: PathBuf,
}

/// Live counters.
#[derive(Debug, Default)]
pub struct DrillProgress {
    /// Bytes to restore (known after planning).
    pub bytes_total: AtomicU64,
    /// Bytes restored and checked so far.
    pub bytes_done: AtomicU64,
}

/// One file that failed the drill.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DrillFailure {
    /// Path in the snapshot.
    pub path: String,
    /// What went wrong (names the blob and pack where known).
    pub error: String,
}

/// What a drill proved.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct DrillReport {
    /// Regular files in the snapshot.
    pub files_in_snapshot: u64,
    /// Their bytes.
    pub bytes_in_snapshot: u64,
    /// Files restored in the drill.
    pub files_restored: u64,
    /// Their bytes.
    pub bytes_restored: u64,
    /// Files that were restored and matched every stored hash.
    pub files_verified: u64,
    /// Whether every file was restored (no sample).
    pub whole_snapshot: bool,
    /// Seconds spent restoring.
    pub restore_seconds: f64,
    /// Seconds spent reading back and checking.
    pub verify_seconds: f64,
    /// Measured restore rate, bytes per second.
    pub restore_bytes_per_second: f64,
    /// Estimated seconds to restore the whole snapshot at that rate.
    pub estimated_full_restore_seconds: f64,
    /// Files that could not be restored or did not match.
    pub failures: Vec<DrillFailure>,
}

impl DrillReport {
    /// Whether the drill found nothing wrong.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    /// One line for people and for the provider's console: what was proved and how fast (a
    /// passed drill), or which files failed (the first five).
    pub fn summary(&self, snapshot: &str) -> String {
        use crate::units::{bytes, duration};
        if !self.passed() {
            let failed: Vec<String> =
                self.failures.iter().take(5).map(|f| format!("{}: {}", f.path, f.error)).collect();
            return format!("snapshot {snapshot}: {} files failed: {}", self.failures.len(), failed.join("; "));
        }
        format!(
            "snapshot {snapshot}: {} of {} files ({} of {}) restored and matched their stored hashes at {}/s; \
             estimated full restore {}",
            self.files_verified,
            self.files_in_snapshot,
            bytes(self.bytes_restored),
            bytes(self.bytes_in_snapshot),
            bytes(self.restore_bytes_per_second as u64),
            duration(self.estimated_full_restore_seconds.ceil() as u64)
        )
    }
}

fn collect(
    repo: &Repository,
    id: &BlobId,
    dir: &str,
    files: &mut Vec<(String, Node)>,
    failures: &mut Vec<DrillFailure>,
) {
    let tree = match repo.load_tree(id) {
        Ok(t) => t,
        Err(e) => {
            failures.push(DrillFailure { path: dir.to_string(), error: format!("directory unreadable: {e}") });
            return;
        }
    };
    for node in tree.nodes {
        let path = format!("{}/{}", dir.trim_end_matches('/'), node.name_lossy());
        if node.is_file() {
            files.push((path, node));
        } else if let Some(sub) = node.subtree {
            collect(repo, &sub, &path, files, failures);
        }
    }
}

/// A small seeded generator (splitmix64): the sample must be repeatable, not secret.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Restores `node` into `target`, closing the file when done.
fn restore_file(repo: &Repository, node: &Node, target: &Path) -> Result<()> {
    let io = |what: &str, e| Error::local_io(format!("{what} {}", target.display()), e);
    let file =
        OpenOptions::new().read(true).write(true).create_new(true).open(target).map_err(|e| io("creating", e))?;
    file.set_len(node.size).map_err(|e| io("sizing", e))?;
    let mut at = 0u64;
    for piece in &node.content {
        if let ContentRef::Blob { id, .. } = piece {
            let data = crate::reader::read_blob_naming_pack(repo, id)?;
            file.write_all_at(&data, at).map_err(|e| io("writing", e))?;
        }
        at += piece.len();
    }
    if at != node.size {
        return Err(Error::corrupt(format!("its pieces add up to {at} bytes, the tree says {}", node.size)));
    }
    Ok(())
}

fn verify_file(repo: &Repository, node: &Node, file: &File) -> Result<()> {
    let mut at = 0u64;
    let mut buf = Vec::new();
    for piece in &node.content {
        let len = piece.len();
        let step = match piece {
            ContentRef::Blob { .. } => len,
            ContentRef::Zeros { .. } => len.min(4 << 20),
        };
        let mut off = 0u64;
        while off < len {
            let n = step.min(len - off) as usize;
            buf.resize(n, 0);
            file.read_exact_at(&mut buf, at + off).map_err(|e| Error::local_io("reading back", e))?;
            let ok = match piece {
                ContentRef::Blob { id, .. } => repo.key().blob_id(&buf) == *id,
                ContentRef::Zeros { .. } => is_all_zero(&buf),
            };
            if !ok {
                return Err(Error::corrupt(format!(
                    "the restored bytes at offset {} do not match the snapshot",
                    at + off
                )));
            }
            off += n as u64;
        }
        at += len;
    }
    let on_disk = file.metadata().map_err(|e| Error::local_io("reading back", e))?.len();
    if on_disk != node.size {
        return Err(Error::corrupt(format!("restored {on_disk} bytes, the snapshot says {}", node.size)));
    }
    Ok(())
}

/// Runs a drill of `snapshot`.
pub fn drill(
    repo: &Repository,
    snapshot: &Snapshot,
    opts: &DrillOptions,
    progress: &DrillProgress,
) -> Result<DrillReport> {
    if !opts.scratch.is_dir() {
        return Err(Error::invalid(format!("the scratch directory {} does not exist", opts.scratch.display())));
    }
    let mut files = Vec::new();
    let mut failures = Vec::new();
    collect(repo, &snapshot.tree, "/", &mut files, &mut failures);
    let mut report = DrillReport {
        files_in_snapshot: files.len() as u64,
        bytes_in_snapshot: files.iter().map(|(_, n)| n.size).sum(),
        ..DrillReport::default()
    };
    let chosen: Vec<(String, Node)> = match opts.sample {
        Some(n) if n < files.len() => {
            // Partial Fisher-Yates: the first n places hold a uniform sample.
            let mut state = opts.seed;
            for i in 0..n {
                let j = i + (next(&mut state) % (files.len() - i) as u64) as usize;
                files.swap(i, j);
            }
            files.truncate(n);
            files
        }
        _ => {
            report.whole_snapshot = true;
            files
        }
    };
    report.files_restored = chosen.len() as u64;
    report.bytes_restored = chosen.iter().map(|(_, n)| n.size).sum();
    progress.bytes_total.store(report.bytes_restored, Ordering::Relaxed);

    let started = Instant::now();
    // Each restored file is closed once written and opened again to be checked: a snapshot of
    // many files must not hold a descriptor per file (a drill of 78,000 files ran out of them).
    let restored: Vec<(usize, Result<()>)> = chosen
        .par_iter()
        .enumerate()
        .with_max_len(1)
        .map(|(i, (_, node))| {
            let r = restore_file(repo, node, &opts.scratch.join(format!("{i:08}")));
            progress.bytes_done.fetch_add(node.size / 2, Ordering::Relaxed);
            (i, r)
        })
        .collect();
    report.restore_seconds = started.elapsed().as_secs_f64();
    let verifying = Instant::now();
    let checked: Vec<(usize, Result<()>)> = restored
        .into_par_iter()
        .with_max_len(1)
        .map(|(i, r)| {
            let node = &chosen[i].1;
            let path = opts.scratch.join(format!("{i:08}"));
            let out = r.and_then(|()| {
                let f = File::open(&path).map_err(|e| Error::local_io(format!("reopening {}", path.display()), e))?;
                verify_file(repo, node, &f)
            });
            progress.bytes_done.fetch_add(node.size - node.size / 2, Ordering::Relaxed);
            (i, out)
        })
        .collect();
    report.verify_seconds = verifying.elapsed().as_secs_f64();
    for (i, r) in checked {
        match r {
            Ok(()) => report.files_verified += 1,
            Err(e) => failures.push(DrillFailure { path: chosen[i].0.clone(), error: e.to_string() }),
        }
    }
    failures.sort_by(|a, b| a.path.cmp(&b.path));
    report.failures = failures;
    if report.restore_seconds > 0.0 && report.bytes_restored > 0 {
        report.restore_bytes_per_second = report.bytes_restored as f64 / report.restore_seconds;
        report.estimated_full_restore_seconds = report.bytes_in_snapshot as f64 / report.restore_bytes_per_second;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::next;

    #[test]
    fn the_sample_generator_is_repeatable_and_spread() {
        let (mut a, mut b) = (7u64, 7u64);
        let xs: Vec<u64> = (0..100).map(|_| next(&mut a) % 10).collect();
        let ys: Vec<u64> = (0..100).map(|_| next(&mut b) % 10).collect();
        assert_eq!(xs, ys);
        for d in 0..10 {
            assert!(xs.contains(&d), "{d} never drawn");
        }
    }
}
