//! `prune`: frees packs no snapshot needs, without stopping concurrent backups
//! (docs/format.md §"Concurrency and prune").
//!
//! Steps:
//! 1. Take a lock; refuse if another prune runs. Load the index and every snapshot; a snapshot
//!    that cannot be read stops prune (we could not know what it needs).
//! 2. Mark: every pack in the store that holds no blob any snapshot references (including packs
//!    no index lists) is written to a `pending/` object. Then list the locks of running backups.
//! 3. Wait until every one of those backups has finished (or its lock went stale). Backups that
//!    start after the mark read it and never reference marked packs; backups that were running
//!    may have, and their snapshots are now visible.
//! 4. Recompute what is referenced; delete only marked packs still unreferenced: first store new
//!    index files without them, then delete the old index files, then the packs, then the mark.
//!    A crash between any two steps leaves a repository that `check` passes (at worst extra
//!    index entries for packs that exist, or packs no index lists, which the next prune frees).
//!
//! Unreadable objects (a device with write access can store 100 bytes of garbage under any
//! name that passes the content-address check) must neither stop prune forever nor make it delete
//! data:
//! - An unreadable pending object is deleted before marking, like every leftover mark. That is
//!   provably safe: prune never acts on a stored mark (only on the one it holds in memory), and no
//!   other prune is live. Its name is reported.
//! - An index file whose bytes are read but cannot be used with the repository's key (damaged, or
//!   not sealed with it) does not stop prune. Its packs may hold blobs a snapshot needs that no
//!   readable index file locates, so while any such file exists, every pack that no readable index
//!   file covers counts as live: prune never deletes a pack it cannot see into. The file itself is
//!   kept and reported (`arca repair index` rebuilds the index from the packs, then removes it):
//!   deleting it here would be safe only after re-indexing its packs, which is repair's job. An
//!   index file that cannot be fetched (a storage error) still stops prune, as before.
//!
//! Packs that are only partly used are kept whole in this version (no repacking): repacking
//! needs rewritten snapshot manifests, which is planned but not built.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use arca_store::ObjectKind;
use serde::Serialize;

use crate::error::{Error, ErrorKind, Result};
use crate::id::{BlobId, IndexId, PackId};
use crate::index::{decode_index, IndexPack};
use crate::lock::{list_locks, LockGuard};
use crate::pack::PackKind;
use crate::repository::Repository;
use crate::walk::{walk, Visit};

/// Prune options.
#[derive(Debug, Clone)]
pub struct PruneOptions {
    /// Report only.
    pub dry_run: bool,
    /// Longest wait for running backups before giving up (the mark stays; a later prune finishes).
    pub max_wait: Duration,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions { dry_run: false, max_wait: Duration::from_secs(6 * 3600) }
    }
}

/// What prune did.
#[derive(Debug, Default, Serialize)]
pub struct PruneReport {
    /// Packs deleted (or, dry run, that would be).
    pub packs_deleted: u64,
    /// Bytes freed.
    pub bytes_freed: u64,
    /// Packs kept.
    pub packs_kept: u64,
    /// Index files written.
    pub index_files_written: u64,
    /// Index files deleted.
    pub index_files_deleted: u64,
    /// Running backups prune waited for.
    pub waited_for_locks: u64,
    /// Stale locks removed.
    pub stale_locks_removed: u64,
    /// Index files that cannot be read with the repository's key; kept, and while they exist
    /// every pack no readable index file covers is kept too (`arca repair index` fixes this).
    pub unreadable_index_files: Vec<String>,
    /// Pending objects that could not be read; removed, like every leftover pending object.
    pub unreadable_pending_removed: Vec<String>,
}

/// What the snapshots need: every blob they reference (trees included), and every pack their
/// manifests name.
struct Referenced {
    blobs: HashSet<BlobId>,
    named: HashSet<PackId>,
}

/// Reads every snapshot and walks its trees.
fn referenced_blobs(repo: &Repository) -> Result<Referenced> {
    let (snapshots, bad) = repo.snapshots()?;
    if let Some(e) = bad.into_iter().next() {
        return Err(Error::new(e.kind(), format!("{e}; prune stops, since it cannot know what that snapshot needs (remove it with `arca forget` if it is beyond repair)")));
    }
    let mut used = HashSet::new();
    let mut named = HashSet::new();
    let mut failure: Option<Error> = None;
    for (sid, snap) in &snapshots {
        match repo.load_snapshot(sid) {
            Ok((_, manifest)) => named.extend(manifest.into_iter().map(|(_, p)| p)),
            Err(e) if e.kind() == ErrorKind::NotFound => {} // forgotten meanwhile
            Err(e) => return Err(e),
        }
        used.insert(snap.tree);
        walk(
            repo,
            &snap.tree,
            Path::new("/"),
            &mut |_, node| {
                used.extend(node.blob_ids());
                Ok(Visit::Continue)
            },
            &mut |path, id, e| {
                failure.get_or_insert(Error::new(
                    ErrorKind::Corrupt,
                    format!(
                        "snapshot {}: tree {id} at {} is unreadable ({e}); prune stops to keep every pack",
                        sid.short(),
                        path.display()
                    ),
                ));
                Ok(())
            },
        )?;
    }
    match failure {
        Some(e) if !repo.unreadable_index_files().is_empty() => Err(e.context(format!(
            "index file(s) {} cannot be read, so their blobs cannot be found: run `arca repair index`, then prune again",
            repo.unreadable_index_files().join(", ")
        ))),
        Some(e) => Err(e),
        None => Ok(Referenced { blobs: used, named }),
    }
}

/// Packs in `existing` that no snapshot needs: no manifest names them (docs/format.md
/// §"Concurrency and prune"), and they hold no referenced blob that lacks a copy in a named pack.
/// (A blob stored twice, by backups that ran at once, keeps the copy its snapshots' manifests
/// name; the other copy goes once no manifest names its pack.)
///
/// With `keep_unindexed` (some index file is unreadable), every pack no loaded index file covers
/// is live as well: the unreadable file may be the only one that says what such a pack holds.
fn unused_packs(
    repo: &Repository,
    existing: &HashMap<PackId, (PackKind, u64)>,
    used: &Referenced,
    keep_unindexed: bool,
) -> Vec<(PackKind, PackId)> {
    let mut live: HashSet<PackId> = used.named.clone();
    if keep_unindexed {
        let indexed: HashSet<PackId> = repo.index().packs().iter().map(|p| p.id).collect();
        live.extend(existing.keys().filter(|id| !indexed.contains(id)));
    }
    for id in &used.blobs {
        if !repo.index().locations(id).any(|(p, _)| used.named.contains(&p.id)) {
            if let Some((p, _)) = repo.index().get(id) {
                live.insert(p.id);
            }
        }
    }
    let mut out: Vec<(PackKind, PackId)> =
        existing.iter().filter(|(id, _)| !live.contains(id)).map(|(id, (kind, _))| (*kind, *id)).collect();
    out.sort();
    out
}

/// Loads the index for prune. An index file that cannot be fetched stops prune; one whose bytes
/// are unusable with the key is skipped with a warning. Returns whether any was skipped (then
/// packs no readable index file covers must be kept).
fn load_index_for_prune(repo: &mut Repository) -> Result<bool> {
    let problems = repo.load_index()?;
    if let Some(e) = problems.iter().find(|e| e.kind() != ErrorKind::Corrupt) {
        return Err(Error::new(
            e.kind(),
            format!(
                "{e}; prune needs every index file, so it stops (run it again; if this persists, run `arca check`)"
            ),
        ));
    }
    for e in &problems {
        tracing::warn!(
            "{e}: ignored; prune keeps every pack that no readable index file covers (`arca repair index` rebuilds \
             the index from the packs and removes the file)"
        );
    }
    Ok(!problems.is_empty())
}

/// Runs prune.
pub fn prune(repo: &mut Repository, opts: &PruneOptions) -> Result<PruneReport> {
    let mut report = PruneReport::default();
    let lock = LockGuard::acquire(repo.store().clone(), "prune")?;
    let now = chrono::Utc::now();
    for (name, info) in list_locks(repo.store())? {
        match info {
            Some(i) if name != lock.name() && i.is_stale(now) => {
                repo.store().delete(ObjectKind::Lock, &name)?;
                report.stale_locks_removed += 1;
            }
            Some(i) if name != lock.name() && i.operation == "prune" => {
                return Err(Error::new(
                    ErrorKind::Locked,
                    format!(
                        "another prune is running (pid {} on {}); try again when it has finished",
                        i.pid, i.hostname
                    ),
                ));
            }
            _ => {}
        }
    }

    // Marks of earlier prunes that did not finish: no prune runs now, so nothing will act on
    // them; this prune recomputes everything under its own mark.
    // Unreadable ones are named first (a fetch that fails is not reported: it is deleted anyway).
    for info in repo.store().list(ObjectKind::Pending)? {
        if let Ok(bytes) = repo.store().get(ObjectKind::Pending, &info.name) {
            if let Err(e) = crate::pending::decode(&bytes) {
                tracing::warn!("removing unreadable pending-deletion mark {} ({e})", info.name);
                report.unreadable_pending_removed.push(info.name.clone());
            }
        }
        repo.store().delete(ObjectKind::Pending, &info.name)?;
    }

    // 1-2: mark.
    let existing = repo.list_packs()?;
    let keep_unindexed = load_index_for_prune(repo)?;
    report.unreadable_index_files = repo.unreadable_index_files().to_vec();
    let used = referenced_blobs(repo)?;
    let candidates = unused_packs(repo, &existing, &used, keep_unindexed);
    if opts.dry_run {
        report.packs_deleted = candidates.len() as u64;
        report.bytes_freed = candidates.iter().map(|(_, id)| existing[id].1).sum();
        report.packs_kept = (existing.len() - candidates.len()) as u64;
        return Ok(report);
    }
    if candidates.is_empty() {
        report.packs_kept = existing.len() as u64;
        return Ok(report);
    }
    let mark = crate::pending::write(repo.store(), &candidates)?;
    let running: Vec<String> = list_locks(repo.store())?
        .into_iter()
        .filter(|(name, info)| name != lock.name() && !info.as_ref().is_some_and(|i| i.is_stale(chrono::Utc::now())))
        .map(|(name, _)| name)
        .collect();
    report.waited_for_locks = running.len() as u64;

    // 3: wait for the backups that might not have seen the mark.
    let started = Instant::now();
    loop {
        let live: HashSet<String> = list_locks(repo.store())?
            .into_iter()
            .filter(|(_, info)| !info.as_ref().is_some_and(|i| i.is_stale(chrono::Utc::now())))
            .map(|(n, _)| n)
            .collect();
        let waiting = running.iter().filter(|n| live.contains(*n)).count();
        if waiting == 0 {
            break;
        }
        if started.elapsed() > opts.max_wait {
            return Err(Error::new(
                ErrorKind::Locked,
                format!("{waiting} backup(s) still running after {:?}; run prune again later (the mark {mark} stays and is finished then)", opts.max_wait),
            ));
        }
        tracing::info!("waiting for {waiting} running backup(s) to finish before deleting packs");
        std::thread::sleep(Duration::from_millis(500));
    }

    // 4: recompute and delete.
    let existing = repo.list_packs()?;
    let keep_unindexed = load_index_for_prune(repo)?;
    let used = referenced_blobs(repo)?;
    let still_unused: HashSet<PackId> =
        unused_packs(repo, &existing, &used, keep_unindexed).into_iter().map(|(_, id)| id).collect();
    let doomed: HashSet<PackId> = candidates.iter().map(|(_, id)| *id).filter(|id| still_unused.contains(id)).collect();

    // Suspended for long while waiting? Another prune may have started meanwhile.
    lock.ensure_continuous()?;

    // New index files first, covering the surviving packs of every index file that lists a
    // doomed or a vanished pack.
    let affected: Vec<(IndexId, Vec<PackId>)> = repo
        .index_files()
        .iter()
        .filter(|(_, packs)| packs.iter().any(|p| doomed.contains(p) || !existing.contains_key(p)))
        .map(|(id, packs)| (*id, packs.clone()))
        .collect();
    let mut survivors: Vec<IndexPack> = Vec::new();
    let mut seen: HashSet<PackId> = HashSet::new();
    for (id, _) in &affected {
        let bytes = repo.store().get(ObjectKind::Index, &id.to_hex())?;
        for p in decode_index(repo.key(), &bytes)? {
            // Entries of packs that vanished (deleted by a server, or lost) go too.
            if !doomed.contains(&p.id) && existing.contains_key(&p.id) && seen.insert(p.id) {
                survivors.push(p);
            }
        }
    }
    for chunk in survivors.chunks(4096) {
        repo.write_index(chunk)?;
        report.index_files_written += 1;
    }
    for (id, _) in &affected {
        repo.store().delete(ObjectKind::Index, &id.to_hex())?;
        report.index_files_deleted += 1;
    }
    for (kind, id) in &candidates {
        if doomed.contains(id) {
            repo.store().delete(kind.object_kind(), &id.to_hex())?;
            report.packs_deleted += 1;
            report.bytes_freed += existing.get(id).map(|e| e.1).unwrap_or(0);
        }
    }
    repo.store().delete(ObjectKind::Pending, &mark)?;
    report.packs_kept = (existing.len() as u64).saturating_sub(report.packs_deleted);
    drop(lock);
    Ok(report)
}
