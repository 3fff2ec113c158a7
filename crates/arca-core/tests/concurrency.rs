//! Several clients at once: parallel backups, prune beside a running backup, pending marks.

mod common;
mod e2e;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arca_core::check::{check, CheckOptions, CheckProgress, ReadData};
use arca_core::lock::LockGuard;
use arca_core::pack::PackKind;
use arca_core::prune::{prune, PruneOptions};
use arca_store::{LocalStore, ObjectKind};
use common::*;
use e2e::*;

fn prune_opts() -> PruneOptions {
    PruneOptions { dry_run: false, max_wait: Duration::from_secs(60) }
}

#[test]
fn two_backups_at_once_into_one_repository() {
    let tmp = tempfile::tempdir().unwrap();
    let repo_dir = tmp.path().join("repo");
    drop(init_repo(&repo_dir));
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    // Distinct trees that share one file and one subdirectory, so both backups race to store the
    // same blobs.
    write_files(&a, &[("a1.bin", 1_500_000, 1001), ("a2.bin", 700_000, 1003), ("shared.bin", 900_000, 1005)]);
    write_files(&b, &[("b1.bin", 1_200_000, 2001), ("b2.bin", 800_000, 2003), ("shared.bin", 900_000, 1005)]);
    for d in [&a, &b] {
        write_files(d, &[("same/x.bin", 300_000, 3001)]);
        std::fs::write(d.join("same/y.txt"), b"identical\n").unwrap();
        make_tree(&d.join("full"));
    }

    let run = |src: std::path::PathBuf, repo_dir: std::path::PathBuf| {
        std::thread::spawn(move || {
            let mut repo = open_repo(&repo_dir);
            backup_dir(&mut repo, &src).id
        })
    };
    let ta = run(a.clone(), repo_dir.clone());
    let tb = run(b.clone(), repo_dir.clone());
    let (ida, idb) = (ta.join().unwrap(), tb.join().unwrap());
    assert_ne!(ida, idb);

    let repo = fresh(&repo_dir);
    let stored_twice = repo.index().blobs().filter(|(id, _)| repo.index().locations(id).count() > 1).count();
    eprintln!("blobs both backups stored: {stored_twice}");
    drop(repo);
    let report = assert_check_clean(&repo_dir, ReadData::All);
    assert_eq!(report.snapshots, 2);
    assert_restores(&repo_dir, &ida, &a, &tmp.path().join("ra"));
    assert_restores(&repo_dir, &idb, &b, &tmp.path().join("rb"));
}

/// Forget and prune while a large backup runs: nothing the backup references may go.
#[test]
fn prune_beside_a_running_backup() {
    let tmp = tempfile::tempdir().unwrap();
    let repo_dir = tmp.path().join("repo");
    let mut repo = init_repo(&repo_dir);
    let src = tmp.path().join("src");
    let other = tmp.path().join("other");
    let keep = tmp.path().join("keep");
    write_files(&src, &[("old1.bin", 1_000_000, 5001), ("old2.bin", 1_000_000, 5003)]);
    write_files(&other, &[("o.bin", 1_000_000, 6001)]);
    write_files(&keep, &[("k.bin", 500_000, 7001)]);
    let old = backup_dir(&mut repo, &src); // the backup below deduplicates against it
    let gone = backup_dir(&mut repo, &other); // only this one's packs can be freed
    let kept = backup_dir(&mut repo, &keep);
    drop(repo);
    // 30 MB of new data: the running backup.
    let files: Vec<(String, usize, u64)> =
        (0..30).map(|i| (format!("new/{i:02}.bin"), 1_000_000, 8001 + 2 * i)).collect();
    let files: Vec<(&str, usize, u64)> = files.iter().map(|(n, l, s)| (n.as_str(), *l, *s)).collect();
    write_files(&src, &files);

    let started = Instant::now();
    let t = {
        let (src, repo_dir) = (src.clone(), repo_dir.clone());
        std::thread::spawn(move || {
            let mut repo = open_repo(&repo_dir);
            let out = backup_dir(&mut repo, &src);
            (out, started.elapsed())
        })
    };
    // Once the backup holds its lock, forget the old snapshots and prune.
    assert!(wait_for(10, || !object_names(&repo_dir, "locks").is_empty()), "the backup never took its lock");
    let mut repo = open_repo(&repo_dir);
    repo.delete_snapshot(&old.id).unwrap();
    repo.delete_snapshot(&gone.id).unwrap();
    let backup_running = !t.is_finished();
    let report = prune(&mut repo, &prune_opts()).unwrap();
    let pruned_at = started.elapsed();
    let (new, backup_took) = t.join().unwrap();
    eprintln!(
        "backup took {backup_took:?}, prune finished after {pruned_at:?} (running: {backup_running}): {report:?}"
    );
    if backup_running {
        assert!(report.waited_for_locks >= 1, "{report:?}");
    }
    assert!(report.packs_deleted > 0, "{report:?}");

    let repo = fresh(&repo_dir);
    let on_disk = all_packs(&repo_dir);
    let new_manifest = manifest(&repo, &new.id);
    for p in &new_manifest {
        assert!(on_disk.contains(p), "prune deleted pack {p} that the new snapshot names");
    }
    let kept_manifest = manifest(&repo, &kept.id);
    for p in &kept_manifest {
        assert!(on_disk.contains(p), "prune deleted pack {p} that a kept snapshot names");
    }
    drop(repo);
    assert_check_clean(&repo_dir, ReadData::All);
    assert_restores(&repo_dir, &new.id, &src, &tmp.path().join("r-new"));
    assert_restores(&repo_dir, &kept.id, &keep, &tmp.path().join("r-keep"));
}

/// A lock taken by hand stands for a running backup: prune marks, then waits, and deletes only
/// after the lock goes.
#[test]
fn prune_waits_for_a_backup_lock() {
    let tmp = tempfile::tempdir().unwrap();
    let repo_dir = tmp.path().join("repo");
    let mut repo = init_repo(&repo_dir);
    let keep = tmp.path().join("keep");
    let drop_dir = tmp.path().join("drop");
    write_files(&keep, &[("k.bin", 600_000, 9001)]);
    write_files(&drop_dir, &[("d.bin", 900_000, 9101)]);
    let kept = backup_dir(&mut repo, &keep);
    let gone = backup_dir(&mut repo, &drop_dir);
    let repo = fresh(&repo_dir);
    let expected: BTreeSet<_> = manifest(&repo, &gone.id).difference(&manifest(&repo, &kept.id)).copied().collect();
    assert!(!expected.is_empty());
    repo.delete_snapshot(&gone.id).unwrap();
    let before = all_packs(&repo_dir);

    let guard = LockGuard::acquire(repo.store().clone(), "backup").unwrap();
    let t = {
        let repo_dir = repo_dir.clone();
        std::thread::spawn(move || prune(&mut open_repo(&repo_dir), &prune_opts()))
    };
    // The mark appears, but nothing is deleted while the "backup" runs.
    assert!(wait_for(5, || !object_names(&repo_dir, "pending").is_empty()), "prune wrote no mark");
    let end = Instant::now() + Duration::from_millis(1000);
    while Instant::now() < end {
        assert_eq!(all_packs(&repo_dir), before, "prune deleted packs while a backup lock was held");
        assert!(!t.is_finished(), "prune finished while a backup lock was held");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(guard);
    let report = t.join().unwrap().unwrap();
    assert_eq!(report.waited_for_locks, 1);
    assert_eq!(report.packs_deleted, expected.len() as u64, "{report:?}");
    let after = all_packs(&repo_dir);
    assert_eq!(after, before.difference(&expected).copied().collect::<BTreeSet<_>>());
    assert!(object_names(&repo_dir, "pending").is_empty());
    assert!(object_names(&repo_dir, "locks").is_empty());
    let r = assert_check_clean(&repo_dir, ReadData::All);
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    assert_restores(&repo_dir, &kept.id, &keep, &tmp.path().join("r"));
}

/// A backup never references a pack that a pending mark lists: after the marked packs are gone,
/// the new snapshot still restores.
#[test]
fn backup_honours_a_pending_mark() {
    let tmp = tempfile::tempdir().unwrap();
    let repo_dir = tmp.path().join("repo");
    let mut repo = init_repo(&repo_dir);
    let src = tmp.path().join("src");
    write_files(&src, &[("a.bin", 800_000, 9201), ("b.bin", 300_000, 9203), ("sub/c.bin", 200_000, 9205)]);
    let first = backup_dir(&mut repo, &src);
    let repo = fresh(&repo_dir);
    let files = file_blobs(&repo, &first.id);
    let a = src.join("a.bin").to_string_lossy().into_owned();
    let data_pack = repo.index().get(&files[&a][0]).unwrap().0.id;
    let meta_pack = repo.index().get(&first.snapshot.tree).unwrap().0.id;
    let marked = [(PackKind::Data, data_pack), (PackKind::Meta, meta_pack)];
    arca_core::pending::write(repo.store(), &marked).unwrap();
    drop(repo);

    let mut repo = open_repo(&repo_dir);
    let second = backup_dir(&mut repo, &src);
    assert_eq!(second.snapshot.parent, Some(first.id));
    let repo = fresh(&repo_dir);
    let m = manifest(&repo, &second.id);
    assert!(!m.contains(&data_pack), "the new snapshot references the marked data pack");
    assert!(!m.contains(&meta_pack), "the new snapshot references the marked meta pack");
    drop(repo);
    // Forget the first snapshot and prune: the marked packs go, the new snapshot stays whole.
    open_repo(&repo_dir).delete_snapshot(&first.id).unwrap();
    let report = prune(&mut open_repo(&repo_dir), &prune_opts()).unwrap();
    let on_disk = all_packs(&repo_dir);
    assert!(!on_disk.contains(&data_pack) && !on_disk.contains(&meta_pack), "{report:?}");
    assert!(m.iter().all(|p| on_disk.contains(p)), "{report:?}");
    let r = assert_check_clean(&repo_dir, ReadData::All);
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    assert_restores(&repo_dir, &second.id, &src, &tmp.path().join("r"));
}

/// Blobs stored in two packs (as concurrent backups leave them; made deterministic here with a
/// pending mark that is then dropped): check accepts either copy in a manifest, copy carries the
/// index entries of every copy, and prune keeps every pack a manifest names.
#[test]
fn blobs_stored_twice_stay_consistent() {
    use std::sync::Arc;
    let tmp = tempfile::tempdir().unwrap();
    let repo_dir = tmp.path().join("repo");
    let mut repo = init_repo(&repo_dir);
    let src = tmp.path().join("src");
    write_files(&src, &[("a.bin", 800_000, 9301), ("b.bin", 300_000, 9303)]);
    let first = backup_dir(&mut repo, &src);
    let repo = fresh(&repo_dir);
    let a = src.join("a.bin").to_string_lossy().into_owned();
    let blob = file_blobs(&repo, &first.id)[&a][0];
    let pack = repo.index().get(&blob).unwrap().0.id;
    let mark = arca_core::pending::write(repo.store(), &[(PackKind::Data, pack)]).unwrap();
    drop(repo);
    let mut repo = open_repo(&repo_dir);
    let second = backup_dir(&mut repo, &src);
    // The prune that wrote the mark gave up; its mark goes, its pack stays.
    std::fs::remove_file(repo_dir.join("pending").join(&mark)).unwrap();

    let repo = fresh(&repo_dir);
    let locations: BTreeSet<_> = repo.index().locations(&blob).map(|(p, _)| p.id).collect();
    assert_eq!(locations.len(), 2, "the blob should be stored twice");
    assert!(locations.contains(&pack));
    let (m1, m2) = (manifest(&repo, &first.id), manifest(&repo, &second.id));
    assert!(m1.contains(&pack) && !m2.contains(&pack));
    drop(repo);
    assert_check_clean(&repo_dir, ReadData::All);

    // Copy each snapshot alone into its own repository.
    for (snap, name) in [(&first, "t1"), (&second, "t2")] {
        let mut src_repo = open_repo(&repo_dir);
        let key = (**src_repo.key()).clone();
        let target = tmp.path().join(name);
        let mut dst = arca_core::repository::Repository::init_with_key(
            Arc::new(arca_store::LocalStore::new(&target)),
            b"pw",
            cheap_kdf(),
            small_config(),
            key,
        )
        .unwrap();
        arca_core::copy::copy_snapshots(&mut src_repo, &mut dst, &[snap.id]).unwrap();
        drop(dst);
        let r = assert_check_clean(&target, ReadData::All);
        assert_eq!(r.snapshots, 1);
        assert_restores(&target, &snap.id, &src, &tmp.path().join(format!("r-{name}")));
    }

    // Forget the first snapshot and prune: exactly the packs only the first named go (the marked
    // pack among them, though the second snapshot uses a copy of its blob), every pack the second
    // names stays.
    open_repo(&repo_dir).delete_snapshot(&first.id).unwrap();
    let before = all_packs(&repo_dir);
    let report = prune(&mut open_repo(&repo_dir), &prune_opts()).unwrap();
    let only_first: BTreeSet<_> = m1.difference(&m2).copied().collect();
    assert!(only_first.contains(&pack));
    assert_eq!(report.packs_deleted, only_first.len() as u64, "{report:?}");
    assert_eq!(all_packs(&repo_dir), before.difference(&only_first).copied().collect::<BTreeSet<_>>());
    assert_check_clean(&repo_dir, ReadData::All);
    assert_restores(&repo_dir, &second.id, &src, &tmp.path().join("r"));
}

/// A store that runs a whole backup of `src` right after its first listing of index files, the
/// moment a concurrent backup is most likely to slip in between what a reader lists.
struct BackupAfterIndexListing {
    inner: LocalStore,
    repo_dir: std::path::PathBuf,
    src: std::path::PathBuf,
    done: std::sync::atomic::AtomicBool,
}

impl arca_store::Store for BackupAfterIndexListing {
    fn put(&self, kind: ObjectKind, name: &str, bytes: &[u8]) -> arca_store::Result<()> {
        self.inner.put(kind, name, bytes)
    }
    fn get(&self, kind: ObjectKind, name: &str) -> arca_store::Result<Vec<u8>> {
        self.inner.get(kind, name)
    }
    fn get_range(&self, kind: ObjectKind, name: &str, offset: u64, length: u64) -> arca_store::Result<Vec<u8>> {
        self.inner.get_range(kind, name, offset, length)
    }
    fn stat(&self, kind: ObjectKind, name: &str) -> arca_store::Result<Option<u64>> {
        self.inner.stat(kind, name)
    }
    fn list(&self, kind: ObjectKind) -> arca_store::Result<Vec<arca_store::ObjectInfo>> {
        let listed = self.inner.list(kind)?;
        if kind == ObjectKind::Index && !self.done.swap(true, std::sync::atomic::Ordering::SeqCst) {
            let mut other = open_repo(&self.repo_dir);
            backup_dir(&mut other, &self.src);
        }
        Ok(listed)
    }
    fn delete(&self, kind: ObjectKind, name: &str) -> arca_store::Result<()> {
        self.inner.delete(kind, name)
    }
    fn create(&self) -> arca_store::Result<()> {
        self.inner.create()
    }
    fn location(&self) -> String {
        self.inner.location()
    }
}

/// A check that runs while backups keep arriving (an appliance replicating into the provider's
/// copy, say) checks the snapshots it listed and raises no false alarm about the newer ones.
#[test]
fn check_beside_a_backup_that_lands_mid_check() {
    let tmp = tempfile::tempdir().unwrap();
    let repo_dir = tmp.path().join("repo");
    drop(init_repo(&repo_dir));
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    write_files(&a, &[("one.bin", 600_000, 41)]);
    write_files(&b, &[("two.bin", 700_000, 43), ("three.bin", 300_000, 47)]);
    backup_dir(&mut open_repo(&repo_dir), &a);

    let store = Arc::new(BackupAfterIndexListing {
        inner: LocalStore::new(&repo_dir),
        repo_dir: repo_dir.clone(),
        src: b.clone(),
        done: Default::default(),
    });
    let mut repo = arca_core::repository::Repository::open(store.clone(), b"pw").unwrap();
    let report = check(&mut repo, &CheckOptions { read_data: ReadData::All }, &CheckProgress::default()).unwrap();
    assert!(store.done.load(std::sync::atomic::Ordering::SeqCst), "the backup never ran during the check");
    assert!(report.errors.is_empty(), "false alarms: {:#?}", report.errors);
    assert_eq!(report.snapshots, 1, "the check covers the snapshots that existed when it started");
    // The next check sees both.
    assert_eq!(assert_check_clean(&repo_dir, ReadData::All).snapshots, 2);
}
