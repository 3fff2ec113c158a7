//! Forget by policy then prune, copy between repositories sharing a key, and key slots.

mod common;
mod e2e;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arca_core::check::ReadData;
use arca_core::copy::copy_snapshots;
use arca_core::forget::{apply_policy, ForgetPolicy, GroupBy};
use arca_core::id::{PackId, SnapshotId};
use arca_core::prune::{prune, PruneOptions};
use arca_core::repository::Repository;
use arca_core::ErrorKind;
use arca_store::LocalStore;
use common::*;
use e2e::*;

fn init_with(dir: &Path, password: &[u8], key: arca_core::crypto::MasterKey) -> Repository {
    Repository::init_with_key(Arc::new(LocalStore::new(dir)), password, cheap_kdf(), small_config(), key).unwrap()
}

/// Three versions of a directory, each backed up from its own path: v2 replaces v1's big file,
/// v3 adds one; all share `common.bin`.
fn three_versions(root: &Path) -> Vec<std::path::PathBuf> {
    let v: Vec<_> = (1..=3).map(|i| root.join(format!("v{i}"))).collect();
    write_files(&v[0], &[("big.bin", 1_200_000, 11_001), ("common.bin", 200_000, 11_003)]);
    write_files(&v[1], &[("big.bin", 1_200_000, 11_005), ("common.bin", 200_000, 11_003)]);
    write_files(&v[2], &[("big.bin", 1_200_000, 11_005), ("common.bin", 200_000, 11_003), ("c.bin", 300_000, 11_007)]);
    v
}

#[test]
fn forget_by_policy_then_prune_frees_exactly_the_forgotten_snapshots_packs() {
    let tmp = tempfile::tempdir().unwrap();
    let repo_dir = tmp.path().join("repo");
    let mut repo = init_repo(&repo_dir);
    let dirs = three_versions(tmp.path());
    let t0 = chrono::Utc::now() - chrono::Duration::days(3);
    let ids: Vec<SnapshotId> = dirs
        .iter()
        .enumerate()
        .map(|(i, d)| backup_dir_at(&mut repo, d, t0 + chrono::Duration::days(i as i64)).id)
        .collect();

    let repo = fresh(&repo_dir);
    let (snaps, bad) = repo.snapshots().unwrap();
    assert!(bad.is_empty());
    let policy = ForgetPolicy { keep_last: Some(2), ..Default::default() };
    let groups = apply_policy(&snaps, &policy, GroupBy::NONE);
    assert_eq!(groups.len(), 1);
    let removed: Vec<SnapshotId> = groups[0].1.iter().filter(|d| !d.keep).map(|d| d.id).collect();
    assert_eq!(removed, vec![ids[0]]);
    let m: Vec<BTreeSet<PackId>> = ids.iter().map(|id| manifest(&repo, id)).collect();
    let only_first: BTreeSet<PackId> =
        m[0].iter().filter(|p| !m[1].contains(p) && !m[2].contains(p)).copied().collect();
    assert!(!only_first.is_empty());
    for id in &removed {
        repo.delete_snapshot(id).unwrap();
    }
    drop(repo);

    let sizes: std::collections::HashMap<PackId, u64> =
        fresh(&repo_dir).list_packs().unwrap().into_iter().map(|(id, (_, size))| (id, size)).collect();
    let expected_bytes: u64 = only_first.iter().map(|p| sizes[p]).sum();
    let before = all_packs(&repo_dir);

    // A dry run reports the same and deletes nothing.
    let dry =
        prune(&mut open_repo(&repo_dir), &PruneOptions { dry_run: true, max_wait: Duration::from_secs(60) }).unwrap();
    assert_eq!((dry.packs_deleted, dry.bytes_freed), (only_first.len() as u64, expected_bytes));
    assert_eq!(all_packs(&repo_dir), before);

    let report =
        prune(&mut open_repo(&repo_dir), &PruneOptions { dry_run: false, max_wait: Duration::from_secs(60) }).unwrap();
    assert_eq!(report.packs_deleted, only_first.len() as u64, "{report:?}");
    assert_eq!(report.bytes_freed, expected_bytes);
    assert!(report.bytes_freed > 0);
    assert_eq!(report.packs_kept, (before.len() - only_first.len()) as u64);
    assert_eq!(all_packs(&repo_dir), before.difference(&only_first).copied().collect::<BTreeSet<_>>());

    let r = assert_check_clean(&repo_dir, ReadData::All);
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    assert_eq!(r.snapshots, 2);
    assert_restores(&repo_dir, &ids[1], &dirs[1], &tmp.path().join("r2"));
    assert_restores(&repo_dir, &ids[2], &dirs[2], &tmp.path().join("r3"));

    // A second prune finds nothing more to do.
    let again =
        prune(&mut open_repo(&repo_dir), &PruneOptions { dry_run: false, max_wait: Duration::from_secs(60) }).unwrap();
    assert_eq!(again.packs_deleted, 0, "{again:?}");
}

#[test]
fn copy_moves_snapshots_verbatim_and_only_once() {
    let tmp = tempfile::tempdir().unwrap();
    let repo_dir = tmp.path().join("repo");
    let mut src_repo = init_repo(&repo_dir);
    let dirs = three_versions(tmp.path());
    let first = backup_dir(&mut src_repo, &dirs[0]);
    let second = backup_dir(&mut src_repo, &dirs[1]);

    let target_dir = tmp.path().join("target");
    let mut dst = init_with(&target_dir, b"pw2", (**src_repo.key()).clone());
    let report = copy_snapshots(&mut src_repo, &mut dst, &[]).unwrap();
    let src_fresh = fresh(&repo_dir);
    let all: BTreeSet<PackId> =
        manifest(&src_fresh, &first.id).union(&manifest(&src_fresh, &second.id)).copied().collect();
    assert_eq!(report.snapshots_copied, 2);
    assert_eq!(report.packs_copied, all.len() as u64);
    assert_eq!(all_packs(&target_dir), all);

    // Same ids, same bytes.
    let dst = Repository::open(Arc::new(LocalStore::new(&target_dir)), b"pw2").unwrap();
    let ids: BTreeSet<SnapshotId> = dst.snapshots().unwrap().0.into_iter().map(|(id, _)| id).collect();
    assert_eq!(ids, [first.id, second.id].into_iter().collect());
    for id in [first.id, second.id] {
        let name = id.to_hex();
        assert_eq!(
            std::fs::read(target_dir.join("snapshots").join(&name)).unwrap(),
            std::fs::read(repo_dir.join("snapshots").join(&name)).unwrap()
        );
    }
    // The target opens with its own password (the test helpers use "pw": add that slot too).
    dst.add_key(b"pw", cheap_kdf(), "").unwrap();
    drop(dst);
    let r = assert_check_clean(&target_dir, ReadData::All);
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    assert_restores(&target_dir, &first.id, &dirs[0], &tmp.path().join("r1"));
    assert_restores(&target_dir, &second.id, &dirs[1], &tmp.path().join("r2"));

    // Again: nothing to do.
    let mut dst = open_repo(&target_dir);
    let again = copy_snapshots(&mut src_repo, &mut dst, &[]).unwrap();
    assert_eq!((again.snapshots_copied, again.snapshots_skipped, again.packs_copied), (0, 2, 0));

    // A new snapshot: only the packs the target lacks move.
    let third = backup_dir(&mut src_repo, &dirs[2]);
    let new_packs: BTreeSet<PackId> = manifest(&fresh(&repo_dir), &third.id).difference(&all).copied().collect();
    let more = copy_snapshots(&mut src_repo, &mut dst, &[third.id]).unwrap();
    assert_eq!((more.snapshots_copied, more.packs_copied), (1, new_packs.len() as u64));
    drop(dst);
    assert_check_clean(&target_dir, ReadData::All);
    assert_restores(&target_dir, &third.id, &dirs[2], &tmp.path().join("r3"));

    // A repository with another key cannot take verbatim copies.
    let other_dir = tmp.path().join("other");
    let mut other = init_repo(&other_dir);
    let err = copy_snapshots(&mut src_repo, &mut other, &[]).err().unwrap();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(object_names(&other_dir, "snapshots").is_empty());
    assert!(all_packs(&other_dir).is_empty());
}

#[test]
fn key_slots_can_be_added_and_removed_but_not_the_last() {
    let tmp = tempfile::tempdir().unwrap();
    let repo_dir = tmp.path().join("repo");
    let mut repo = init_repo(&repo_dir);
    let src = tmp.path().join("src");
    write_files(&src, &[("a.bin", 100_000, 12_001)]);
    let snap = backup_dir(&mut repo, &src);
    let old_slot = repo.slot_for_password(b"pw").unwrap();

    let new_slot = repo.add_key(b"second password", cheap_kdf(), "laptop").unwrap();
    assert_ne!(new_slot, old_slot);
    let store = || Arc::new(LocalStore::new(&repo_dir));
    let second = Repository::open(store(), b"second password").unwrap();
    assert_eq!(second.slot_for_password(b"second password").unwrap(), new_slot);
    assert_eq!(second.key().blob_id(b"x"), repo.key().blob_id(b"x"), "both slots must unwrap the same key");
    let keys = second.list_keys(Some(&new_slot)).unwrap();
    assert_eq!(keys.len(), 2);
    assert!(keys.iter().any(|k| k.id == new_slot && k.current && k.slot.label == "laptop"));

    second.remove_key(&old_slot).unwrap();
    let err = Repository::open(store(), b"pw").err().unwrap();
    assert_eq!(err.kind(), ErrorKind::WrongPassword, "{err}");
    let err = second.remove_key(&new_slot).err().unwrap();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert_eq!(object_names(&repo_dir, "keys"), vec![new_slot.clone()]);

    // The data is still readable with the remaining password.
    let mut reopened = Repository::open(store(), b"second password").unwrap();
    assert!(reopened.load_index().unwrap().is_empty());
    let (s, _) = reopened.load_snapshot(&snap.id).unwrap();
    let target = tmp.path().join("r");
    let opts = arca_core::restore::RestoreOptions {
        target: target.clone(),
        subpath: Some(src.to_string_lossy().into_owned()),
        verify: true,
        ..Default::default()
    };
    let out = arca_core::restore::restore(&reopened, &s, &opts, &Default::default()).unwrap();
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_same_tree(&src, &target);
}
