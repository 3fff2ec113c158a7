//! Damaged, truncated and missing objects: `check` must name the object and every affected file,
//! `restore` must restore everything else and name what it could not, and nothing may panic.

mod common;
mod e2e;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use arca_core::check::ReadData;
use arca_core::id::SnapshotId;
use arca_core::pack::PackKind;
use arca_core::repository::Repository;
use arca_core::ErrorKind;
use arca_store::LocalStore;
use common::*;
use e2e::*;

/// A source tree of distinct pseudo-random files, a duplicate of one of them, a small file and a
/// subdirectory; returns the source path.
fn make_source(root: &Path) -> std::path::PathBuf {
    let src = root.join("src");
    write_files(
        &src,
        &[
            // (`bytes` ignores the lowest bit of the seed: keep seeds odd and distinct.)
            ("f0.bin", 150_000, 101),
            ("f1.bin", 150_000, 103),
            ("f2.bin", 150_000, 105),
            ("f3.bin", 150_000, 107),
            ("dup-of-f0.bin", 150_000, 101),
            ("sub/g0.bin", 120_000, 201),
            ("sub/g1.bin", 120_000, 203),
            ("sub/deeper/h.bin", 80_000, 301),
        ],
    );
    std::fs::write(src.join("small.txt"), b"hello arca\n").unwrap();
    src
}

/// A repository with one snapshot of `make_source`.
fn setup() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf, SnapshotId) {
    let tmp = tempfile::tempdir().unwrap();
    let src = make_source(tmp.path());
    let repo_dir = tmp.path().join("repo");
    let mut repo = init_repo(&repo_dir);
    let out = backup_dir(&mut repo, &src);
    assert_check_clean(&repo_dir, ReadData::All);
    (tmp, src, repo_dir, out.id)
}

/// The path inside the restore target of a path the snapshot records.
fn target_path(target: &Path, src: &Path, recorded: &str) -> String {
    target.join(Path::new(recorded).strip_prefix(src).unwrap()).to_string_lossy().into_owned()
}

/// Asserts that every entry of `src` except `skip` (relative paths) was restored identically.
fn assert_same_except(src: &Path, target: &Path, skip: &BTreeSet<Vec<u8>>) {
    let mut a = describe(src);
    let mut b = describe(target);
    for k in skip {
        a.remove(k);
        b.remove(k);
    }
    let ka: Vec<_> = a.keys().map(|k| String::from_utf8_lossy(k).into_owned()).collect();
    let kb: Vec<_> = b.keys().map(|k| String::from_utf8_lossy(k).into_owned()).collect();
    assert_eq!(ka, kb, "different entries");
    for (k, ea) in &a {
        assert_eq!(ea, &b[k], "entry {} differs", String::from_utf8_lossy(k));
    }
}

fn relative(src: &Path, recorded: &str) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    Path::new(recorded).strip_prefix(src).unwrap().as_os_str().as_bytes().to_vec()
}

#[test]
fn flipped_byte_in_a_data_pack_is_found_by_read_data_and_fails_only_its_files() {
    let (tmp, src, repo_dir, snap_id) = setup();
    let repo = fresh(&repo_dir);
    let files = file_blobs(&repo, &snap_id);
    let f0 = src.join("f0.bin").to_string_lossy().into_owned();
    // Damage the second blob of f0 (f0's duplicate shares it).
    let blob = files[&f0][1];
    let (pack, loc) = repo.index().get(&blob).map(|(p, l)| (p.clone(), l)).unwrap();
    assert_eq!(pack.kind, PackKind::Data);
    flip_byte(&pack_path(&repo_dir, PackKind::Data, &pack.id), loc.offset as u64 + loc.length as u64 / 2);
    drop(repo);
    let expected: BTreeSet<String> =
        files.iter().filter(|(_, blobs)| blobs.contains(&blob)).map(|(p, _)| p.clone()).collect();
    assert_eq!(
        expected,
        [f0.clone(), src.join("dup-of-f0.bin").to_string_lossy().into_owned()].into_iter().collect::<BTreeSet<_>>()
    );

    // Structure only: the pack has the right size and the index is intact.
    let report = check_repo(&repo_dir, ReadData::None);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert!(report.damaged_packs.is_empty());

    // Reading the data finds it, names the pack and exactly the files that use the blob.
    let report = check_repo(&repo_dir, ReadData::All);
    assert_eq!(report.damaged_packs, vec![pack.id]);
    assert!(report.errors.iter().any(|e| e.contains(&pack.id.to_hex())), "{:?}", report.errors);
    assert!(report.errors.iter().all(|e| e.contains(&pack.id.to_hex())), "unrelated errors: {:?}", report.errors);
    let affected: BTreeSet<String> = report.affected.iter().map(|a| a.path.clone()).collect();
    assert_eq!(affected, expected);
    assert!(report.affected.iter().all(|a| a.snapshot == snap_id));

    // Restore: the two damaged files are named, everything else is intact.
    let target = tmp.path().join("restore");
    let out = restore_snapshot(&repo_dir, &snap_id, &src, &target);
    assert!(!out.errors.is_empty());
    for p in &expected {
        let t = target_path(&target, &src, p);
        assert!(out.errors.iter().any(|e| e.contains(&t)), "no error names {t}: {:?}", out.errors);
    }
    assert!(out.errors.iter().any(|e| e.contains(&pack.id.to_hex())), "no error names the pack: {:?}", out.errors);
    for e in &out.errors {
        assert!(
            e.contains(&pack.id.to_hex()) || expected.iter().any(|p| e.contains(&target_path(&target, &src, p))),
            "error about something undamaged: {e}"
        );
    }
    let skip: BTreeSet<Vec<u8>> = expected.iter().map(|p| relative(&src, p)).collect();
    assert_same_except(&src, &target, &skip);
}

#[test]
fn truncated_data_pack_is_found_without_reading_data() {
    let (tmp, src, repo_dir, snap_id) = setup();
    let repo = fresh(&repo_dir);
    let files = file_blobs(&repo, &snap_id);
    let f1 = src.join("f1.bin").to_string_lossy().into_owned();
    let pack = repo.index().get(&files[&f1][0]).unwrap().0.clone();
    let in_pack: BTreeSet<String> = files
        .iter()
        .filter(|(_, blobs)| blobs.iter().any(|b| repo.index().get(b).unwrap().0.id == pack.id))
        .map(|(p, _)| p.clone())
        .collect();
    assert!(in_pack.contains(&f1));
    drop(repo);
    let path = pack_path(&repo_dir, PackKind::Data, &pack.id);
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(len - 3).unwrap();

    for read_data in [ReadData::None, ReadData::All] {
        let report = check_repo(&repo_dir, read_data);
        assert_eq!(report.damaged_packs, vec![pack.id], "{read_data:?}");
        let size_error = format!("pack {} has {} bytes, the index says {}", pack.id, len - 3, len);
        assert!(report.errors.iter().any(|e| e.contains(&size_error)), "{read_data:?}: {:?}", report.errors);
        let affected: BTreeSet<String> = report.affected.iter().map(|a| a.path.clone()).collect();
        assert_eq!(affected, in_pack, "{read_data:?}");
    }
    drop(tmp);
}

#[test]
fn damaged_index_file_is_reported_and_the_next_backup_stores_again() {
    let (tmp, src, repo_dir, _) = setup();
    let index_files = object_names(&repo_dir, "index");
    assert_eq!(index_files.len(), 1, "{index_files:?}");
    let name = &index_files[0];
    flip_byte(&repo_dir.join("index").join(name), 100);

    let mut repo = open_repo(&repo_dir);
    let problems = repo.load_index().unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].kind(), ErrorKind::Corrupt);
    assert!(problems[0].to_string().contains(name.as_str()), "{}", problems[0]);
    assert!(repo.index().is_empty());

    let report = check_repo(&repo_dir, ReadData::None);
    assert!(report.errors.iter().any(|e| e.contains(name.as_str())), "{:?}", report.errors);

    // The next backup cannot deduplicate against the lost index: it stores every blob again.
    let mut repo = open_repo(&repo_dir);
    let out = backup_dir(&mut repo, &src);
    let repo = open_repo(&repo_dir);
    let mut repo = repo;
    assert_eq!(repo.load_index().unwrap().len(), 1);
    let referenced = referenced_blobs(&repo, &out.id);
    assert_eq!(out.snapshot.summary.blobs_added, referenced.len() as u64);
    for b in &referenced {
        assert!(repo.index().contains(b), "blob {b} of the new snapshot is not indexed");
    }
    assert_restores(&repo_dir, &out.id, &src, &tmp.path().join("restore"));
}

#[test]
fn flipped_byte_in_a_tree_pack_is_named_and_restore_reports_it() {
    let (tmp, src, repo_dir, snap_id) = setup();
    let repo = fresh(&repo_dir);
    let sub = src.join("sub");
    let tree = subtree_of(&repo, &snap_id, &sub);
    let (pack, loc) = repo.index().get(&tree).map(|(p, l)| (p.clone(), l)).unwrap();
    assert_eq!(pack.kind, PackKind::Meta);
    flip_byte(&pack_path(&repo_dir, PackKind::Meta, &pack.id), loc.offset as u64 + 3);
    drop(repo);

    // Even without reading data, walking the trees hits the damaged one.
    let report = check_repo(&repo_dir, ReadData::None);
    assert!(report.errors.iter().any(|e| e.contains(&tree.to_hex())), "{:?}", report.errors);

    let report = check_repo(&repo_dir, ReadData::All);
    assert_eq!(report.damaged_packs, vec![pack.id]);
    assert!(report.errors.iter().any(|e| e.contains(&pack.id.to_hex())), "{:?}", report.errors);
    let sub_s = sub.to_string_lossy().into_owned();
    assert!(report.affected.iter().any(|a| a.path == sub_s), "{:?}", report.affected);

    let target = tmp.path().join("restore");
    let out = restore_snapshot(&repo_dir, &snap_id, &src, &target);
    assert_eq!(out.errors.len(), 1, "{:?}", out.errors);
    assert!(out.errors[0].contains(&sub_s) && out.errors[0].contains(&pack.id.to_hex()), "{:?}", out.errors);
    // Everything outside the damaged directory is restored.
    let skip: BTreeSet<Vec<u8>> =
        describe(&src).into_keys().filter(|k| k.starts_with(b"sub/") || k.as_slice() == b"sub").collect();
    assert!(!target.join("sub").exists());
    assert_same_except(&src, &target, &skip);
}

#[test]
fn deleted_data_pack_is_reported_missing_with_its_files() {
    let (tmp, src, repo_dir, snap_id) = setup();
    let repo = fresh(&repo_dir);
    let files = file_blobs(&repo, &snap_id);
    let g0 = src.join("sub/g0.bin").to_string_lossy().into_owned();
    let pack = repo.index().get(&files[&g0][0]).unwrap().0.clone();
    let in_pack: BTreeSet<String> = files
        .iter()
        .filter(|(_, blobs)| blobs.iter().any(|b| repo.index().get(b).unwrap().0.id == pack.id))
        .map(|(p, _)| p.clone())
        .collect();
    drop(repo);
    std::fs::remove_file(pack_path(&repo_dir, PackKind::Data, &pack.id)).unwrap();

    let report = check_repo(&repo_dir, ReadData::None);
    assert_eq!(report.damaged_packs, vec![pack.id]);
    assert!(report.errors.iter().any(|e| e.contains(&format!("pack {} is missing", pack.id))), "{:?}", report.errors);
    let affected: BTreeSet<String> = report.affected.iter().map(|a| a.path.clone()).collect();
    assert_eq!(affected, in_pack);

    let target = tmp.path().join("restore");
    let out = restore_snapshot(&repo_dir, &snap_id, &src, &target);
    for p in &in_pack {
        let t = target_path(&target, &src, p);
        assert!(out.errors.iter().any(|e| e.contains(&t)), "no error names {t}: {:?}", out.errors);
    }
    let skip: BTreeSet<Vec<u8>> = in_pack.iter().map(|p| relative(&src, p)).collect();
    assert_same_except(&src, &target, &skip);
}

#[test]
fn open_fails_with_the_right_kind() {
    let tmp = tempfile::tempdir().unwrap();
    let repo_dir = tmp.path().join("repo");
    drop(init_repo(&repo_dir));

    let err = Repository::open(Arc::new(LocalStore::new(&repo_dir)), b"not the password").err().unwrap();
    assert_eq!(err.kind(), ErrorKind::WrongPassword, "{err}");

    let nowhere = tmp.path().join("nowhere");
    let err = Repository::open(Arc::new(LocalStore::new(&nowhere)), b"pw").err().unwrap();
    assert_eq!(err.kind(), ErrorKind::NoRepository, "{err}");
    assert!(err.to_string().contains(&nowhere.to_string_lossy().into_owned()), "{err}");

    let config = repo_dir.join("config");
    let mut text = std::fs::read(&config).unwrap();
    text.truncate(text.len() / 2);
    std::fs::write(&config, &text).unwrap();
    let err = Repository::open(Arc::new(LocalStore::new(&repo_dir)), b"pw").err().unwrap();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert!(err.to_string().contains("config"), "{err}");
}

#[test]
fn damaged_snapshot_is_reported_and_the_others_still_load() {
    let tmp = tempfile::tempdir().unwrap();
    let src = make_source(tmp.path());
    let repo_dir = tmp.path().join("repo");
    let mut repo = init_repo(&repo_dir);
    let t0 = chrono::Utc::now() - chrono::Duration::hours(2);
    let first = backup_dir_at(&mut repo, &src, t0);
    let second = backup_dir_at(&mut repo, &src, t0 + chrono::Duration::hours(1));
    let third = backup_dir_at(&mut repo, &src, t0 + chrono::Duration::hours(1) + chrono::Duration::minutes(1));
    flip_byte(&repo_dir.join("snapshots").join(second.id.to_hex()), 60);

    let repo = fresh(&repo_dir);
    let (good, bad) = repo.snapshots().unwrap();
    assert_eq!(good.iter().map(|(id, _)| *id).collect::<Vec<_>>(), vec![first.id, third.id]);
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert_eq!(bad[0].kind(), ErrorKind::Corrupt);
    assert!(bad[0].to_string().contains(&second.id.to_hex()), "{}", bad[0]);
    let err = repo.load_snapshot(&second.id).err().unwrap();
    assert_eq!(err.kind(), ErrorKind::Corrupt);

    let report = check_repo(&repo_dir, ReadData::All);
    assert_eq!(report.snapshots, 2);
    assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
    assert!(report.errors[0].contains(&second.id.to_hex()), "{:?}", report.errors);
    assert!(report.damaged_packs.is_empty());

    assert_restores(&repo_dir, &first.id, &src, &tmp.path().join("r1"));
    assert_restores(&repo_dir, &third.id, &src, &tmp.path().join("r3"));
}

#[test]
fn repair_index_rebuilds_a_damaged_index_from_pack_headers() {
    let (tmp, src, repo_dir, id) = setup();
    let index_files = object_names(&repo_dir, "index");
    assert_eq!(index_files.len(), 1, "{index_files:?}");
    flip_byte(&repo_dir.join("index").join(&index_files[0]), 100);
    assert!(!check_repo(&repo_dir, ReadData::None).errors.is_empty());

    let mut repo = open_repo(&repo_dir);
    let report = arca_core::repair::repair_index(&mut repo).unwrap();
    assert_eq!(report.index_files_removed, index_files);
    assert_eq!(report.packs_reindexed as usize, all_packs(&repo_dir).len());
    assert!(report.packs_unreadable.is_empty(), "{:?}", report.packs_unreadable);

    // The repository is whole again: clean check, the old snapshot restores, prune runs.
    assert_check_clean(&repo_dir, ReadData::All);
    assert_restores(&repo_dir, &id, &src, &tmp.path().join("restore"));
    let mut repo = open_repo(&repo_dir);
    let pruned = arca_core::prune::prune(&mut repo, &Default::default()).unwrap();
    assert_eq!(pruned.packs_deleted, 0);
}
