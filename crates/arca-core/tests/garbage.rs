//! Garbage objects that pass the content-address check (a device with write access stores 100
//! random bytes under `index/` or `pending/`, named by their BLAKE3): backups and prune go on,
//! lose nothing, and say what they ignored; `check` names the objects.

mod common;
mod e2e;

use arca_core::check::ReadData;
use arca_core::id::content_hash;
use arca_core::lock::LockGuard;
use arca_core::prune::{prune, PruneOptions};
use arca_store::ObjectKind;
use common::*;
use e2e::*;

/// Stores `bytes` under `kind`, named by their BLAKE3, as any writer could; returns the name.
fn put_garbage(repo_dir: &std::path::Path, kind: ObjectKind, bytes: &[u8]) -> String {
    let name = hex::encode(content_hash(bytes));
    store(repo_dir).put(kind, &name, bytes).unwrap();
    name
}

fn prune_opts() -> PruneOptions {
    PruneOptions { max_wait: std::time::Duration::from_secs(30), ..Default::default() }
}

#[test]
fn garbage_index_and_pending_objects_stop_neither_backup_nor_prune() {
    let tmp = tempfile::tempdir().unwrap();
    let repo_dir = tmp.path().join("repo");
    let src = tmp.path().join("src");
    write_files(&src, &[("a.bin", 600_000, 7001), ("b.bin", 300_000, 7003), ("sub/c.bin", 200_000, 7005)]);
    let mut repo = init_repo(&repo_dir);
    let first = backup_dir(&mut repo, &src);
    drop(repo);

    let bad_index = put_garbage(&repo_dir, ObjectKind::Index, &bytes(100, 7101));
    let bad_mark = put_garbage(&repo_dir, ObjectKind::Pending, &bytes(100, 7103));

    // Backup: succeeds, names both objects in its warnings, and the snapshot restores.
    write_files(&src, &[("new.bin", 250_000, 7007)]);
    let mut repo = open_repo(&repo_dir);
    let second = backup_dir(&mut repo, &src);
    drop(repo);
    let warned = second.repository_warnings.join("\n");
    assert!(warned.contains(&bad_index) && warned.contains("repair index"), "{warned}");
    assert!(warned.contains(&bad_mark) && warned.contains("arca prune"), "{warned}");
    assert_eq!(second.snapshot.parent, Some(first.id));
    assert_restores(&repo_dir, &second.id, &src, &tmp.path().join("r2"));

    // Check names both, and nothing else is wrong.
    let report = check_repo(&repo_dir, ReadData::All);
    assert_eq!(report.errors.len(), 2, "{:#?}", report.errors);
    assert!(report.errors.iter().any(|e| e.contains(&bad_index) && e.contains("repair index")), "{:#?}", report.errors);
    assert!(report.errors.iter().any(|e| e.contains(&bad_mark) && e.contains("arca prune")), "{:#?}", report.errors);
    assert!(report.damaged_packs.is_empty() && report.affected.is_empty(), "{report:?}");

    // Prune after forgetting the first snapshot: succeeds, removes the garbage mark, reports and
    // keeps the garbage index, and every pack the second snapshot needs stays.
    open_repo(&repo_dir).delete_snapshot(&first.id).unwrap();
    let pruned = prune(&mut open_repo(&repo_dir), &prune_opts()).unwrap();
    assert_eq!(pruned.unreadable_pending_removed, vec![bad_mark.clone()]);
    assert_eq!(pruned.unreadable_index_files, vec![bad_index.clone()]);
    assert!(object_names(&repo_dir, "pending").is_empty());
    let on_disk = all_packs(&repo_dir);
    let needed = manifest(&open_repo(&repo_dir), &second.id);
    assert!(needed.iter().all(|p| on_disk.contains(p)), "{pruned:?}");
    let report = check_repo(&repo_dir, ReadData::All);
    assert_eq!(report.errors.len(), 1, "{:#?}", report.errors);
    assert!(report.errors[0].contains(&bad_index), "{:#?}", report.errors);
    assert!(report.damaged_packs.is_empty() && report.affected.is_empty(), "{report:?}");
    assert_restores(&repo_dir, &second.id, &src, &tmp.path().join("r3"));

    // `repair index` removes the garbage index; then the repository is clean.
    let repaired = arca_core::repair::repair_index(&mut open_repo(&repo_dir)).unwrap();
    assert_eq!(repaired.index_files_removed, vec![bad_index]);
    assert_check_clean(&repo_dir, ReadData::All);
}

/// A damaged real index file: prune cannot see into its packs, so it keeps them even when no
/// snapshot names them, until `repair index` rebuilds the index; other snapshots are untouched.
#[test]
fn prune_keeps_packs_only_an_unreadable_index_file_covers() {
    let tmp = tempfile::tempdir().unwrap();
    let repo_dir = tmp.path().join("repo");
    let (src_a, src_b) = (tmp.path().join("a"), tmp.path().join("b"));
    write_files(&src_a, &[("a.bin", 600_000, 7201), ("sub/b.bin", 300_000, 7203)]);
    write_files(&src_b, &[("c.bin", 500_000, 7205), ("other/d.bin", 200_000, 7207)]);
    let mut repo = init_repo(&repo_dir);
    let first = backup_dir(&mut repo, &src_a);
    let first_index = object_names(&repo_dir, "index");
    let second = backup_dir(&mut repo, &src_b);
    drop(repo);
    assert_eq!(first_index.len(), 1, "{first_index:?}");
    let first_packs = manifest(&open_repo(&repo_dir), &first.id);
    let second_packs = manifest(&open_repo(&repo_dir), &second.id);
    assert!(first_packs.is_disjoint(&second_packs));
    open_repo(&repo_dir).delete_snapshot(&first.id).unwrap();
    flip_byte(&repo_dir.join("index").join(&first_index[0]), 100);

    let pruned = prune(&mut open_repo(&repo_dir), &prune_opts()).unwrap();
    assert_eq!(pruned.packs_deleted, 0, "{pruned:?}");
    assert_eq!(pruned.unreadable_index_files, first_index);
    let on_disk = all_packs(&repo_dir);
    assert!(first_packs.iter().chain(&second_packs).all(|p| on_disk.contains(p)), "{pruned:?}");
    assert_restores(&repo_dir, &second.id, &src_b, &tmp.path().join("r"));

    // Once the index is rebuilt, prune frees the packs of the forgotten snapshot.
    arca_core::repair::repair_index(&mut open_repo(&repo_dir)).unwrap();
    let pruned = prune(&mut open_repo(&repo_dir), &prune_opts()).unwrap();
    assert!(pruned.unreadable_index_files.is_empty());
    assert_eq!(pruned.packs_deleted as usize, first_packs.len(), "{pruned:?}");
    assert_check_clean(&repo_dir, ReadData::All);
    assert_restores(&repo_dir, &second.id, &src_b, &tmp.path().join("r2"));
}

/// A pending object that might be a running prune's mark (it starts like one) cannot be ignored
/// while a prune holds a lock: the backup then deduplicates against nothing. Without a running
/// prune it is ignored.
#[test]
fn an_unreadable_mark_during_a_running_prune_makes_backup_store_everything_again() {
    let tmp = tempfile::tempdir().unwrap();
    let repo_dir = tmp.path().join("repo");
    let src = tmp.path().join("src");
    write_files(&src, &[("a.bin", 600_000, 7301), ("b.bin", 300_000, 7303)]);
    let mut repo = init_repo(&repo_dir);
    let first = backup_dir(&mut repo, &src);
    drop(repo);
    let mut mark_like = b"ARCAPEND\x07".to_vec();
    mark_like.extend_from_slice(&bytes(91, 7305));
    let name = put_garbage(&repo_dir, ObjectKind::Pending, &mark_like);

    // No prune running: ignored with a warning; everything is deduplicated.
    let second = backup_dir(&mut open_repo(&repo_dir), &src);
    assert!(second.repository_warnings.iter().any(|w| w.contains(&name)), "{:?}", second.repository_warnings);
    assert_eq!(second.snapshot.summary.blobs_added, 0);

    // A prune holds its lock: nothing of the old packs is referenced by the new snapshot.
    let prune_lock = LockGuard::acquire(store(&repo_dir), "prune").unwrap();
    let third = backup_dir(&mut open_repo(&repo_dir), &src);
    drop(prune_lock);
    assert!(
        third.repository_warnings.iter().any(|w| w.contains("prune is running")),
        "{:?}",
        third.repository_warnings
    );
    let repo = open_repo(&repo_dir);
    let (old, new) = (manifest(&repo, &first.id), manifest(&repo, &third.id));
    assert!(old.is_disjoint(&new), "the backup referenced packs a running prune may delete");
    drop(repo);
    assert_restores(&repo_dir, &third.id, &src, &tmp.path().join("r"));
}
