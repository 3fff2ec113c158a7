//! Backup → restore round trips compared with a metadata-aware comparison, and incremental
//! behaviour.

mod common;

use arca_core::backup::{backup, BackupOptions, BackupProgress};
use arca_core::check::{check, CheckOptions, CheckProgress, ReadData};
use arca_core::repository::SnapshotFilter;
use arca_core::restore::{restore, RestoreOptions, RestoreProgress};
use common::*;

fn backup_dir(repo: &mut arca_core::repository::Repository, src: &std::path::Path) -> arca_core::backup::BackupOutcome {
    let opts = BackupOptions { paths: vec![src.to_path_buf()], ..Default::default() };
    backup(repo, &opts, &BackupProgress::default(), None).unwrap()
}

/// The tree id recorded for directory `path` in a snapshot.
fn subtree_of(
    repo: &arca_core::repository::Repository,
    snap: &arca_core::snapshot::Snapshot,
    path: &std::path::Path,
) -> arca_core::id::BlobId {
    use std::os::unix::ffi::OsStrExt;
    let mut repo2 = open_repo(std::path::Path::new(&repo.store().location()));
    repo2.load_index().unwrap();
    let mut id = snap.tree;
    for c in path.components().skip(1) {
        let tree = repo2.load_tree(&id).unwrap();
        id = tree.find(c.as_os_str().as_bytes()).unwrap().subtree.unwrap();
    }
    id
}

#[test]
fn every_metadata_kind_survives_a_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    make_tree(&src);
    let mut repo = init_repo(&tmp.path().join("repo"));
    let out = backup_dir(&mut repo, &src);
    assert!(out.warnings.is_empty(), "{:?}", out.warnings);

    let mut repo = open_repo(&tmp.path().join("repo"));
    repo.load_index().unwrap();
    let (_, snap) = repo.find_snapshot("latest", &SnapshotFilter::default()).unwrap();
    let target = tmp.path().join("restore");
    let sub = src.to_string_lossy().into_owned();
    let opts = RestoreOptions { target: target.clone(), subpath: Some(sub), verify: true, ..Default::default() };
    let outcome = restore(&repo, &snap, &opts, &RestoreProgress::default()).unwrap();
    assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
    assert!(outcome.files_verified > 0);
    assert_same_tree(&src, &target);
    // The 3 MiB hole stays a hole.
    assert!(allocated(&target.join("sparse.img")) < 1 << 20, "sparse file was filled");

    let report = check(&mut repo, &CheckOptions { read_data: ReadData::All }, &CheckProgress::default()).unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
}

#[test]
fn unchanged_files_are_not_read_again_and_changes_are_found() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    make_tree(&src);
    let mut repo = init_repo(&tmp.path().join("repo"));
    let first = backup_dir(&mut repo, &src);
    let second = backup_dir(&mut repo, &src);
    assert_eq!(second.snapshot.summary.bytes_read, 0, "an unchanged tree was read again");
    assert_eq!(second.snapshot.parent, Some(first.id));
    // Ancestors of the source (like /tmp) may change between runs; the source's own tree may not.
    assert_eq!(subtree_of(&repo, &second.snapshot, &src), subtree_of(&repo, &first.snapshot, &src));

    std::fs::write(src.join("dir/sub/text.txt"), b"changed\n").unwrap();
    let third = backup_dir(&mut repo, &src);
    assert_eq!(third.snapshot.summary.files_changed, 1);
    assert_eq!(third.snapshot.summary.bytes_read, 8);
    assert_ne!(subtree_of(&repo, &third.snapshot, &src), subtree_of(&repo, &first.snapshot, &src));
}

#[test]
fn restore_resumes_and_skips_finished_files() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    make_tree(&src);
    let mut repo = init_repo(&tmp.path().join("repo"));
    backup_dir(&mut repo, &src);
    repo.load_index().unwrap();
    let (_, snap) = repo.find_snapshot("latest", &SnapshotFilter::default()).unwrap();
    let target = tmp.path().join("restore");
    let opts =
        RestoreOptions { target: target.clone(), subpath: Some(src.to_string_lossy().into()), ..Default::default() };
    restore(&repo, &snap, &opts, &RestoreProgress::default()).unwrap();
    // Simulate an interrupted restore: one file half written, with a wrong mtime.
    let big = target.join("dir/big.bin");
    let content = std::fs::read(&big).unwrap();
    std::fs::write(&big, &content[..content.len() / 2]).unwrap();
    let again = restore(&repo, &snap, &opts, &RestoreProgress::default()).unwrap();
    assert!(again.errors.is_empty(), "{:?}", again.errors);
    assert!(again.files_skipped >= 5, "finished files were restored again: {again:?}");
    assert!(again.bytes_written < content.len() as u64, "the intact first half was rewritten");
    assert_same_tree(&src, &target);
}

#[test]
fn stdin_backup_round_trips() {
    let tmp = tempfile::tempdir().unwrap();
    let mut repo = init_repo(&tmp.path().join("repo"));
    let data = bytes(300_000, 9);
    let opts = BackupOptions { stdin_filename: Some("dump.sql".into()), ..Default::default() };
    let mut reader = std::io::Cursor::new(data.clone());
    let out = backup(&mut repo, &opts, &BackupProgress::default(), Some(&mut reader)).unwrap();
    assert_eq!(out.snapshot.paths, vec!["/dump.sql".to_string()]);
    repo.load_index().unwrap();
    let target = tmp.path().join("r");
    let o = RestoreOptions { target: target.clone(), ..Default::default() };
    restore(&repo, &out.snapshot, &o, &RestoreProgress::default()).unwrap();
    assert_eq!(std::fs::read(target.join("dump.sql")).unwrap(), data);
}
