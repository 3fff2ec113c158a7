//! Helpers shared by the end-to-end engine tests (corruption, concurrency, forget/prune/copy,
//! kill): backups and restores of a directory, pack files on disk, which files use which blobs.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arca_core::backup::{backup, BackupOptions, BackupOutcome, BackupProgress};
use arca_core::check::{check, CheckOptions, CheckProgress, CheckReport, ReadData};
use arca_core::id::{BlobId, PackId, SnapshotId};
use arca_core::pack::PackKind;
use arca_core::repository::{DynStore, Repository};
use arca_core::restore::{restore, RestoreOptions, RestoreOutcome, RestoreProgress};
use arca_core::tree::{ContentRef, NodeKind};
use arca_core::walk::{walk, Visit};
use arca_store::LocalStore;

use crate::common::*;

pub fn store(dir: &Path) -> DynStore {
    Arc::new(LocalStore::new(dir))
}

/// Writes `files` (relative name, length, seed) of pseudo-random content under `dir`.
pub fn write_files(dir: &Path, files: &[(&str, usize, u64)]) {
    for (name, len, seed) in files {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes(*len, *seed)).unwrap();
    }
}

/// Backs up `src` (parent chosen automatically).
pub fn backup_dir(repo: &mut Repository, src: &Path) -> BackupOutcome {
    let opts = BackupOptions { paths: vec![src.to_path_buf()], ..Default::default() };
    let out = backup(repo, &opts, &BackupProgress::default(), None).unwrap();
    assert!(out.warnings.is_empty(), "{:?}", out.warnings);
    out
}

/// Backs up `src`, recording `time` as the snapshot time.
pub fn backup_dir_at(repo: &mut Repository, src: &Path, time: chrono::DateTime<chrono::Utc>) -> BackupOutcome {
    let opts = BackupOptions { paths: vec![src.to_path_buf()], time: Some(time), ..Default::default() };
    let out = backup(repo, &opts, &BackupProgress::default(), None).unwrap();
    assert!(out.warnings.is_empty(), "{:?}", out.warnings);
    out
}

/// A freshly opened repository with its index loaded (no cached metadata packs); asserts the
/// index loads without problems.
pub fn fresh(repo_dir: &Path) -> Repository {
    let mut repo = open_repo(repo_dir);
    let problems = repo.load_index().unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    repo
}

/// Restores the part `src` of snapshot `id` into `target` through a fresh repository handle.
pub fn restore_snapshot(repo_dir: &Path, id: &SnapshotId, src: &Path, target: &Path) -> RestoreOutcome {
    let mut repo = open_repo(repo_dir);
    repo.load_index().unwrap();
    let (snap, _) = repo.load_snapshot(id).unwrap();
    let opts = RestoreOptions {
        target: target.to_path_buf(),
        subpath: Some(src.to_string_lossy().into_owned()),
        verify: true,
        ..Default::default()
    };
    restore(&repo, &snap, &opts, &RestoreProgress::default()).unwrap()
}

/// Restores and asserts the result equals `src` in content and metadata.
pub fn assert_restores(repo_dir: &Path, id: &SnapshotId, src: &Path, target: &Path) {
    let out = restore_snapshot(repo_dir, id, src, target);
    assert!(out.errors.is_empty(), "restore of {id} failed: {:?}", out.errors);
    assert_same_tree(src, target);
}

/// Runs check through a fresh repository handle.
pub fn check_repo(repo_dir: &Path, read_data: ReadData) -> CheckReport {
    let mut repo = open_repo(repo_dir);
    check(&mut repo, &CheckOptions { read_data }, &CheckProgress::default()).unwrap()
}

/// Asserts check with `read_data` finds no errors and no damage.
pub fn assert_check_clean(repo_dir: &Path, read_data: ReadData) -> CheckReport {
    let r = check_repo(repo_dir, read_data);
    assert!(r.errors.is_empty(), "check errors: {:#?}", r.errors);
    assert!(r.damaged_packs.is_empty(), "{:?}", r.damaged_packs);
    assert!(r.affected.is_empty(), "{:?}", r.affected);
    r
}

/// The on-disk path of a pack.
pub fn pack_path(repo_dir: &Path, kind: PackKind, id: &PackId) -> PathBuf {
    let hex = id.to_hex();
    let dir = match kind {
        PackKind::Data => "data",
        PackKind::Meta => "meta",
    };
    repo_dir.join(dir).join(&hex[..2]).join(hex)
}

/// Every pack file of one kind on disk.
pub fn pack_files(repo_dir: &Path, kind: PackKind) -> BTreeMap<PackId, PathBuf> {
    let dir = repo_dir.join(match kind {
        PackKind::Data => "data",
        PackKind::Meta => "meta",
    });
    let mut out = BTreeMap::new();
    let Ok(rd) = std::fs::read_dir(&dir) else { return out };
    for fan in rd {
        let fan = fan.unwrap().path();
        if !fan.is_dir() {
            continue;
        }
        for f in std::fs::read_dir(&fan).unwrap() {
            let p = f.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if let Some(id) = PackId::from_hex(&name) {
                out.insert(id, p);
            }
        }
    }
    out
}

/// Every pack on disk, both kinds.
pub fn all_packs(repo_dir: &Path) -> BTreeSet<PackId> {
    let mut s: BTreeSet<PackId> = pack_files(repo_dir, PackKind::Data).into_keys().collect();
    s.extend(pack_files(repo_dir, PackKind::Meta).into_keys());
    s
}

/// Names of the objects in a flat (not fanned-out) directory such as `index` or `snapshots`.
pub fn object_names(repo_dir: &Path, dir: &str) -> Vec<String> {
    let mut v: Vec<String> = match std::fs::read_dir(repo_dir.join(dir)) {
        Ok(rd) => rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

/// Flips every bit of the byte at `offset`.
pub fn flip_byte(path: &Path, offset: u64) {
    let mut b = std::fs::read(path).unwrap();
    b[offset as usize] ^= 0xff;
    std::fs::write(path, b).unwrap();
}

/// Content blobs of every regular file of a snapshot, by the path the snapshot records
/// (absolute, as `check` reports it).
pub fn file_blobs(repo: &Repository, snap_id: &SnapshotId) -> BTreeMap<String, Vec<BlobId>> {
    let (snap, _) = repo.load_snapshot(snap_id).unwrap();
    let mut out = BTreeMap::new();
    walk(
        repo,
        &snap.tree,
        Path::new("/"),
        &mut |path, node| {
            if node.kind == NodeKind::File {
                let blobs = node
                    .content
                    .iter()
                    .filter_map(|c| match c {
                        ContentRef::Blob { id, .. } => Some(*id),
                        ContentRef::Zeros { .. } => None,
                    })
                    .collect();
                out.insert(path.to_string_lossy().into_owned(), blobs);
            }
            Ok(Visit::Continue)
        },
        &mut |path, id, e| panic!("tree {id} at {} unreadable: {e}", path.display()),
    )
    .unwrap();
    out
}

/// Every blob a snapshot references: trees (root included) and file content.
pub fn referenced_blobs(repo: &Repository, snap_id: &SnapshotId) -> HashSet<BlobId> {
    let (snap, _) = repo.load_snapshot(snap_id).unwrap();
    let mut out = HashSet::new();
    out.insert(snap.tree);
    walk(
        repo,
        &snap.tree,
        Path::new("/"),
        &mut |_, node| {
            if let Some(t) = node.subtree {
                out.insert(t);
            }
            for c in &node.content {
                if let ContentRef::Blob { id, .. } = c {
                    out.insert(*id);
                }
            }
            Ok(Visit::Continue)
        },
        &mut |path, id, e| panic!("tree {id} at {} unreadable: {e}", path.display()),
    )
    .unwrap();
    out
}

/// The packs a snapshot's manifest names.
pub fn manifest(repo: &Repository, id: &SnapshotId) -> BTreeSet<PackId> {
    repo.load_snapshot(id).unwrap().1.into_iter().map(|(_, p)| p).collect()
}

/// The tree blob id of directory `path` (absolute) in a snapshot.
pub fn subtree_of(repo: &Repository, snap_id: &SnapshotId, path: &Path) -> BlobId {
    use std::os::unix::ffi::OsStrExt;
    let (snap, _) = repo.load_snapshot(snap_id).unwrap();
    let mut id = snap.tree;
    for c in path.components().skip(1) {
        let tree = repo.load_tree(&id).unwrap();
        id = tree.find(c.as_os_str().as_bytes()).unwrap().subtree.unwrap();
    }
    id
}

/// Waits until `cond` holds, for at most `secs` seconds.
pub fn wait_for(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    cond()
}
