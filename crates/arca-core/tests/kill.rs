//! A backup killed at a random moment (SIGKILL, in a child process) leaves a repository that
//! checks clean, and the next backup reuses what the killed one stored (docs/format.md
//! §"Write ordering").
//!
//! The child is this test binary itself, run with `ARCA_TEST_CHILD=backup:REPO:SRC` and told to run
//! only [`child_entry`], which then backs up in a loop until it is killed.

mod common;
mod e2e;

use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use arca_core::backup::{backup, BackupOptions, BackupProgress};
use arca_core::check::ReadData;
use common::*;
use e2e::*;

const CHILD_ENV: &str = "ARCA_TEST_CHILD";

/// In a normal run: nothing. In the child: back up SRC into REPO forever.
#[test]
fn child_entry() {
    let Ok(spec) = std::env::var(CHILD_ENV) else { return };
    let mut parts = spec.splitn(3, ':');
    assert_eq!(parts.next(), Some("backup"), "bad {CHILD_ENV}: {spec}");
    let repo_dir = Path::new(parts.next().expect("REPO"));
    let src = Path::new(parts.next().expect("SRC"));
    let mut repo = open_repo(repo_dir);
    let opts = BackupOptions { paths: vec![src.to_path_buf()], ..Default::default() };
    loop {
        backup(&mut repo, &opts, &BackupProgress::default(), None).unwrap();
    }
}

fn make_source(root: &Path) -> std::path::PathBuf {
    let src = root.join("src");
    let files: Vec<(String, usize, u64)> =
        (0..12).map(|i| (format!("d{}/f{i:02}.bin", i % 3), 1_000_000, 20_001 + 2 * i as u64)).collect();
    let files: Vec<(&str, usize, u64)> = files.iter().map(|(n, l, s)| (n.as_str(), *l, *s)).collect();
    write_files(&src, &files);
    make_tree(&src.join("misc"));
    src
}

/// A small pseudo-random jitter so repeated runs kill at different moments (printed, so a failure
/// can be reproduced by its delay).
fn jitter(ms: u64) -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos() as u64;
    nanos % (ms + 1)
}

/// Kills a backup after each delay (plus jitter), in a new repository each time, and checks the
/// aftermath; then, while no kill has yet hit after the killed backup stored an index file, tries
/// the `fallback` delays too. Returns whether some kill did.
fn kill_during_backup(delays_ms: &[u64], fallback_ms: &[u64]) -> bool {
    let tmp = tempfile::tempdir().unwrap();
    let src = make_source(tmp.path());
    let mut reused_somewhere = false;
    let mut fallback = fallback_ms.iter();
    let mut delays = delays_ms.iter();
    for i in 0.. {
        let base = match delays.next() {
            Some(d) => d,
            None if reused_somewhere => break,
            None => match fallback.next() {
                Some(d) => d,
                None => break,
            },
        };
        let delay = Duration::from_millis(base + jitter(30));
        let repo_dir = tmp.path().join(format!("repo{i}"));
        drop(init_repo(&repo_dir));
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["child_entry", "--exact", "--nocapture"])
            .env(CHILD_ENV, format!("backup:{}:{}", repo_dir.display(), src.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        std::thread::sleep(delay);
        assert!(child.try_wait().unwrap().is_none(), "the child exited on its own (it must loop until killed)");
        child.kill().unwrap();
        child.wait().unwrap();
        let lived = started.elapsed();

        // No errors: at worst unindexed packs and the dead backup's lock.
        let report = check_repo(&repo_dir, ReadData::None);
        assert!(report.errors.is_empty(), "killed after {delay:?}: {:?}", report.errors);
        for w in &report.warnings {
            assert!(w.contains("not in any index") || w.contains("is stale"), "unexpected warning {w}");
        }

        let repo = fresh(&repo_dir);
        let before: HashSet<_> = repo.index().blobs().map(|(id, _)| *id).collect();
        let child_snapshots = repo.snapshots().unwrap().0.len();
        drop(repo);

        let mut repo = open_repo(&repo_dir);
        let out = backup_dir(&mut repo, &src);
        drop(repo);
        let referenced = referenced_blobs(&fresh(&repo_dir), &out.id);
        let reused = referenced.intersection(&before).count();
        eprintln!(
            "killed after {lived:?} (delay {delay:?}): {} blobs indexed, {child_snapshots} snapshots; the next backup \
             added {} of {} blobs",
            before.len(),
            out.snapshot.summary.blobs_added,
            referenced.len()
        );
        // Every referenced blob the killed backup had indexed is reused, every other one stored.
        assert_eq!(out.snapshot.summary.blobs_added, (referenced.len() - reused) as u64);
        if reused > 0 {
            reused_somewhere = true;
            assert!(out.snapshot.summary.blobs_added < referenced.len() as u64);
        }

        let report = check_repo(&repo_dir, ReadData::All);
        assert!(report.errors.is_empty(), "killed after {delay:?}: {:?}", report.errors);
        assert!(report.damaged_packs.is_empty() && report.affected.is_empty());
        assert_restores(&repo_dir, &out.id, &src, &tmp.path().join(format!("restore{i}")));
    }
    reused_somewhere
}

#[test]
fn killed_early_in_a_backup() {
    kill_during_backup(&[50, 110, 170], &[]);
}

#[test]
fn killed_late_in_a_backup() {
    let reused = kill_during_backup(&[240, 320, 370], &[800, 2000]);
    assert!(reused, "no kill happened after the killed backup stored an index file: the test proved nothing");
}
