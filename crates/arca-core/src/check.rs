//! `check`: proves the repository is consistent and, optionally, that the data is intact.
//!
//! Steps:
//! 1. Every index file decodes; every indexed pack exists with the indexed size; packs nobody
//!    indexed are reported (an interrupted backup leaves them; prune removes them).
//! 2. Every snapshot decodes; every tree it reaches decodes; every blob it references is indexed;
//!    its manifest lists every pack those blobs live in.
//! 3. With `--read-data` (or a subset), every chosen pack is read whole: its BLAKE3 must equal its
//!    name, its header must match the index, and every blob must decrypt and hash to its id.
//! 4. If anything is damaged or missing, every snapshot is walked again to name each affected
//!    file, so the user knows exactly what a restore would lose.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use rayon::prelude::*;
use serde::Serialize;

use crate::error::Result;
use crate::id::{content_hash, BlobId, PackId, SnapshotId};
use crate::pack::{open_blob_with, read_header};
use crate::repository::Repository;
use crate::tree::{ContentRef, NodeKind};
use crate::walk::{walk, Visit};

/// How much data to read.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum ReadData {
    /// Structure only.
    #[default]
    None,
    /// Every pack.
    All,
    /// Part `n` of `m` (1-based): packs whose first id byte modulo `m` is `n - 1`.
    Subset {
        /// Which part.
        n: u32,
        /// Of how many.
        m: u32,
    },
    /// A random share of the packs, in percent.
    Percent(f64),
}

/// Check options.
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// Data reading.
    pub read_data: ReadData,
}

/// Live counters.
#[derive(Debug, Default)]
pub struct CheckProgress {
    /// Packs read.
    pub packs_done: AtomicU64,
    /// Packs to read.
    pub packs_total: AtomicU64,
    /// Bytes read.
    pub bytes_done: AtomicU64,
}

/// A file that a damaged or missing object affects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, PartialOrd, Ord)]
pub struct AffectedFile {
    /// The snapshot.
    pub snapshot: SnapshotId,
    /// The path inside it.
    pub path: String,
}

/// What check found.
#[derive(Debug, Default, Serialize)]
pub struct CheckReport {
    /// Problems that lose data or break the repository.
    pub errors: Vec<String>,
    /// Harmless findings (unindexed packs, stale locks).
    pub warnings: Vec<String>,
    /// Packs whose bytes are damaged or missing.
    pub damaged_packs: Vec<PackId>,
    /// Files that cannot be restored intact.
    pub affected: Vec<AffectedFile>,
    /// Packs read in full.
    pub packs_checked: u64,
    /// Snapshots checked.
    pub snapshots: u64,
    /// Blobs in the index.
    pub blobs: u64,
    /// Bytes read.
    pub bytes_read: u64,
}

/// Runs the check.
pub fn check(repo: &mut Repository, opts: &CheckOptions, progress: &CheckProgress) -> Result<CheckReport> {
    let mut report = CheckReport::default();
    // A shared lock makes a concurrent prune wait for us, so nothing vanishes mid-check.
    // A read-only repository (a shipped disk, say) can still be checked without one.
    let _lock = match crate::lock::LockGuard::acquire(repo.store().clone(), "check") {
        Ok(l) => Some(l),
        Err(e) => {
            report
                .warnings
                .push(format!("checking without a lock ({e}); a prune running now could cause false alarms"));
            None
        }
    };
    // Snapshots first, then the index, then the packs: a backup writes packs, then index files,
    // then its snapshot, so everything a listed snapshot needs is in the later listings even while
    // backups (or an appliance's replication) keep adding to the repository. Snapshots that arrive
    // after this listing are left for the next check instead of being reported as missing blobs.
    let (snapshots, bad_snaps) = repo.snapshots()?;
    for e in repo.load_index()? {
        report.errors.push(format!(
            "{e}; backups ignore it and store its blobs again (`arca repair index` rebuilds the index from the \
             packs and removes it)"
        ));
    }
    let existing = repo.list_packs()?;
    report.blobs = repo.index().len() as u64;

    // 1. Index against packs.
    let mut bad_blobs: HashSet<BlobId> = HashSet::new();
    let mut damaged: HashSet<PackId> = HashSet::new();
    let indexed: HashSet<PackId> = repo.index().packs().iter().map(|p| p.id).collect();
    let mut vanished: Vec<PackId> = Vec::new();
    for p in repo.index().packs() {
        match existing.get(&p.id) {
            // Decided after the snapshots are read: harmless unless a snapshot needs it.
            None => vanished.push(p.id),
            Some((kind, size)) if *size != p.size || *kind != p.kind => {
                report
                    .errors
                    .push(format!("pack {} has {size} bytes, the index says {} (truncated or replaced)", p.id, p.size));
                damaged.insert(p.id);
            }
            _ => {}
        }
    }
    for id in existing.keys().filter(|id| !indexed.contains(id)) {
        report
            .warnings
            .push(format!("pack {id} is not in any index (being written by a backup running now, or left by an interrupted one; `arca prune` removes the latter)"));
    }
    for (name, info) in crate::lock::list_locks(repo.store())? {
        if info.as_ref().is_some_and(|i| i.is_stale(chrono::Utc::now())) {
            report.warnings.push(format!("lock {name} is stale (its process is gone); `arca prune` removes it"));
        }
    }

    for (name, e) in crate::pending::unreadable(repo.store())? {
        report.errors.push(format!(
            "pending-deletion mark {name} cannot be read ({e}; damaged, or not written by arca): backups ignore \
             it, and the next `arca prune` removes it"
        ));
    }

    // 3 (first, so step 2's walk can name files): read data.
    let packs: Vec<PackId> = {
        let mut all: Vec<PackId> =
            repo.index().packs().iter().map(|p| p.id).filter(|id| existing.contains_key(id)).collect();
        all.sort();
        match opts.read_data {
            ReadData::None => Vec::new(),
            ReadData::All => all,
            ReadData::Subset { n, m } => all.into_iter().filter(|id| (id.0[0] as u32 % m) == n - 1).collect(),
            ReadData::Percent(p) => {
                use rand::seq::SliceRandom;
                let k = ((all.len() as f64) * p / 100.0).ceil() as usize;
                let mut all = all;
                all.shuffle(&mut rand::thread_rng());
                all.truncate(k.min(all.len()));
                all
            }
        }
    };
    progress.packs_total.store(packs.len() as u64, Ordering::Relaxed);
    let findings = Mutex::new(Vec::new());
    let repo_ref: &Repository = repo;
    let entries = repo_ref.index().entries_by_pack();
    packs.par_iter().with_max_len(1).for_each(|id| {
        let r = check_pack(repo_ref, id, &entries);
        progress.packs_done.fetch_add(1, Ordering::Relaxed);
        findings.lock().unwrap_or_else(|p| p.into_inner()).push((*id, r));
    });
    for (id, r) in findings.into_inner().unwrap_or_else(|p| p.into_inner()) {
        report.packs_checked += 1;
        report.bytes_read += r.bytes;
        progress.bytes_done.fetch_add(r.bytes, Ordering::Relaxed);
        if !r.problems.is_empty() {
            damaged.insert(id);
            report.errors.extend(r.problems);
            bad_blobs.extend(r.bad_blobs);
        }
    }
    for id in &damaged {
        if let Some(pos) = repo_ref.index().packs().iter().position(|p| p.id == *id) {
            if let Some(es) = entries.get(&(pos as u32)) {
                if existing.get(id).is_none_or(|(_, s)| *s != repo_ref.index().packs()[pos].size) {
                    bad_blobs.extend(es.iter().map(|e| e.id));
                }
            }
        }
    }

    // 2. Snapshots and trees.
    for e in bad_snaps {
        report.errors.push(e.to_string());
    }
    report.snapshots = snapshots.len() as u64;
    let mut missing_blobs: HashSet<BlobId> = HashSet::new();
    let mut needed_by_any: HashSet<PackId> = HashSet::new();
    for (sid, snap) in &snapshots {
        let manifest: HashSet<PackId> = match repo_ref.load_snapshot(sid) {
            Ok((_, m)) => m.into_iter().map(|(_, p)| p).collect(),
            Err(_) => HashSet::new(),
        };
        needed_by_any.extend(manifest.iter().copied());
        let mut need_packs: HashSet<PackId> = HashSet::new();
        // A blob stored twice (by backups that ran at once) is fine in any of its packs.
        let mut note = |id: &BlobId, missing: &mut HashSet<BlobId>| match repo_ref
            .index()
            .locations(id)
            .find(|(p, _)| manifest.contains(&p.id))
            .or_else(|| repo_ref.index().get(id))
        {
            Some((p, _)) => {
                need_packs.insert(p.id);
            }
            None => {
                missing.insert(*id);
            }
        };
        note(&snap.tree, &mut missing_blobs);
        let mut errors = Vec::new();
        walk(
            repo_ref,
            &snap.tree,
            Path::new("/"),
            &mut |_, node| {
                if let Some(sub) = node.subtree {
                    note(&sub, &mut missing_blobs);
                }
                for c in &node.content {
                    if let ContentRef::Blob { id, .. } = c {
                        note(id, &mut missing_blobs);
                    }
                }
                Ok(Visit::Continue)
            },
            &mut |path, id, e| {
                errors.push(format!("snapshot {}: tree {id} at {} is unreadable: {e}", sid.short(), path.display()));
                Ok(())
            },
        )?;
        report.errors.extend(errors);
        let unlisted: Vec<&PackId> = need_packs.iter().filter(|p| !manifest.contains(p)).collect();
        if !unlisted.is_empty() {
            report.errors.push(format!(
                "snapshot {}: its manifest does not list {} pack(s) it needs (first: {})",
                sid.short(),
                unlisted.len(),
                unlisted[0]
            ));
        }
    }
    for id in &missing_blobs {
        report.errors.push(format!("blob {id} is referenced but not in the index"));
    }
    // An indexed pack that is gone is lost data only if a snapshot needs it; otherwise it was
    // freed (by a prune elsewhere, or a server's retention) and only the index is out of date.
    let mut freed = 0usize;
    for id in vanished {
        if needed_by_any.contains(&id) {
            report.errors.push(format!("pack {id} is missing from the store"));
            damaged.insert(id);
            if let Some(pos) = repo_ref.index().packs().iter().position(|p| p.id == id) {
                if let Some(es) = entries.get(&(pos as u32)) {
                    bad_blobs.extend(es.iter().map(|e| e.id));
                }
            }
        } else {
            freed += 1;
        }
    }
    if freed > 0 {
        report.warnings.push(format!(
            "the index lists {freed} pack(s) that are gone but no snapshot needs (freed by a prune or the server's \
             retention); harmless: `arca prune` or `arca repair index` tidies the index"
        ));
    }

    // 4. Name affected files.
    let bad: HashSet<BlobId> = bad_blobs.union(&missing_blobs).copied().collect();
    if !bad.is_empty() {
        for (sid, snap) in &snapshots {
            let mut affected = Vec::new();
            let mut broken = Vec::new();
            let _ = walk(
                repo_ref,
                &snap.tree,
                Path::new("/"),
                &mut |path, node| {
                    let hit = match node.kind {
                        NodeKind::File => {
                            node.content.iter().any(|c| matches!(c, ContentRef::Blob { id, .. } if bad.contains(id)))
                        }
                        NodeKind::Dir => node.subtree.is_some_and(|t| bad.contains(&t)),
                        _ => false,
                    };
                    if hit {
                        affected.push(AffectedFile { snapshot: *sid, path: path.to_string_lossy().into_owned() });
                    }
                    Ok(Visit::Continue)
                },
                &mut |path, _, _| {
                    broken
                        .push(AffectedFile { snapshot: *sid, path: format!("{} (directory listing)", path.display()) });
                    Ok(())
                },
            );
            report.affected.extend(affected);
            report.affected.extend(broken);
        }
    }
    let mut damaged: Vec<PackId> = damaged.into_iter().collect();
    damaged.sort();
    report.damaged_packs = damaged;
    report.affected.sort();
    report.affected.dedup();
    Ok(report)
}

struct PackFinding {
    bytes: u64,
    problems: Vec<String>,
    bad_blobs: Vec<BlobId>,
}

fn check_pack(repo: &Repository, id: &PackId, entries: &HashMap<u32, Vec<crate::pack::PackEntry>>) -> PackFinding {
    let mut f = PackFinding { bytes: 0, problems: Vec::new(), bad_blobs: Vec::new() };
    let Some(pos) = repo.index().packs().iter().position(|p| p.id == *id) else { return f };
    let info = &repo.index().packs()[pos];
    let indexed: &[crate::pack::PackEntry] = entries.get(&(pos as u32)).map(Vec::as_slice).unwrap_or(&[]);
    let bytes = match repo.store().get(info.kind.object_kind(), &id.to_hex()) {
        Ok(b) => b,
        Err(e) => {
            f.problems.push(format!("pack {id}: cannot be read: {e}"));
            f.bad_blobs.extend(indexed.iter().map(|e| e.id));
            return f;
        }
    };
    f.bytes = bytes.len() as u64;
    if content_hash(&bytes) != id.0 {
        f.problems.push(format!("pack {id}: its content does not match its name (damaged on storage)"));
    }
    match read_header(repo.key(), &bytes) {
        Ok((header, _)) => {
            let in_header: HashSet<(BlobId, u32)> = header.iter().map(|e| (e.id, e.offset)).collect();
            if indexed.iter().any(|e| !in_header.contains(&(e.id, e.offset))) {
                f.problems.push(format!("pack {id}: its header does not match the index"));
            }
        }
        Err(e) => f.problems.push(format!("pack {id}: {e}")),
    }
    let key = repo.key().object_key(&info.salt);
    for e in indexed {
        let end = e.offset as usize + e.length as usize;
        let ok = end <= bytes.len() && open_blob_with(&key, repo.key(), e, &bytes[e.offset as usize..end]).is_ok();
        if !ok {
            f.bad_blobs.push(e.id);
        }
    }
    if !f.bad_blobs.is_empty() {
        f.problems.push(format!("pack {id}: {} of {} blobs are damaged", f.bad_blobs.len(), indexed.len()));
    }
    f
}
