//! Repository locks (docs/format.md §"Locks").
//!
//! Locks here never exclude backups from each other: a backup takes a *shared* lock so that a
//! concurrent prune can tell it is running and wait for it (§"Concurrency and prune"). A lock is
//! refreshed every [`REFRESH_EVERY`] by a background thread; one not refreshed for [`STALE_AFTER`],
//! or whose process is gone on this host, is stale.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use arca_store::ObjectKind;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::repository::DynStore;

/// How often a held lock is rewritten.
pub const REFRESH_EVERY: Duration = Duration::from_secs(300);
/// After how long without refresh a lock is considered abandoned.
pub const STALE_AFTER: chrono::Duration = chrono::Duration::minutes(30);

/// The stored lock object.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LockInfo {
    /// Host holding it.
    pub hostname: String,
    /// Process id on that host.
    pub pid: u32,
    /// What runs (`backup`, `prune`, ...).
    pub operation: String,
    /// When it was taken.
    pub created: DateTime<Utc>,
    /// Last refresh.
    pub refreshed: DateTime<Utc>,
    /// Whether it excludes every other operation (unused by the built-in commands).
    pub exclusive: bool,
}

impl LockInfo {
    /// Whether the lock is abandoned: not refreshed in time, or its process is gone on this host.
    pub fn is_stale(&self, now: DateTime<Utc>) -> bool {
        if now - self.refreshed > STALE_AFTER {
            return true;
        }
        if self.hostname == crate::sys::hostname() {
            // SAFETY: kill with signal 0 only checks whether the process exists.
            let alive = unsafe { libc::kill(self.pid as libc::pid_t, 0) } == 0
                || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
            return !alive;
        }
        false
    }
}

/// A held lock; released when dropped.
pub struct LockGuard {
    store: DynStore,
    name: String,
    stop: Arc<AtomicBool>,
    refresher: Option<JoinHandle<()>>,
    continuity: Arc<Continuity>,
}

/// How well the lock has been kept alive: the wall-clock time of the last successful write and
/// the longest gap between two successful writes, in seconds.
#[derive(Debug, Default)]
struct Continuity {
    last_ok: AtomicI64,
    longest_gap: AtomicI64,
}

impl Continuity {
    fn record_write(&self, now: i64) {
        let prev = self.last_ok.swap(now, Ordering::AcqRel);
        if prev > 0 {
            self.longest_gap.fetch_max(now - prev, Ordering::AcqRel);
        }
    }

    /// The longest time the lock went without a successful write, up to `now`.
    fn worst_gap(&self, now: i64) -> i64 {
        self.longest_gap.load(Ordering::Acquire).max(now - self.last_ok.load(Ordering::Acquire))
    }
}

/// A lock whose writes were this far apart may have been judged stale by a prune elsewhere: five
/// minutes of margin under [`STALE_AFTER`] for clock differences between machines.
pub const MAX_SAFE_GAP: chrono::Duration = chrono::Duration::minutes(25);

impl LockGuard {
    /// Takes a shared lock for `operation`.
    pub fn acquire(store: DynStore, operation: &str) -> Result<LockGuard> {
        let name = hex::encode(crate::crypto::random_salt());
        let now = Utc::now();
        let info = LockInfo {
            hostname: crate::sys::hostname(),
            pid: std::process::id(),
            operation: operation.into(),
            created: now,
            refreshed: now,
            exclusive: false,
        };
        store
            .put(ObjectKind::Lock, &name, &serde_json::to_vec(&info).expect("lock serialises"))
            .map_err(|e| Error::from(e).context("taking the repository lock"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let continuity = Arc::new(Continuity::default());
        continuity.record_write(now.timestamp());
        let refresher = {
            let (store, name, stop, mut info, cont) =
                (store.clone(), name.clone(), stop.clone(), info, continuity.clone());
            std::thread::Builder::new()
                .name("lock-refresh".into())
                .spawn(move || {
                    // Wall-clock based, so a process that was suspended refreshes as soon as it runs
                    // again (and the gap shows in `continuity`).
                    let tick = Duration::from_millis(200);
                    let mut last_try = Utc::now();
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(tick);
                        let now = Utc::now();
                        if (now - last_try).to_std().unwrap_or_default() >= REFRESH_EVERY {
                            last_try = now;
                            info.refreshed = now;
                            match store.put(
                                ObjectKind::Lock,
                                &name,
                                &serde_json::to_vec(&info).expect("lock serialises"),
                            ) {
                                Ok(()) => cont.record_write(now.timestamp()),
                                Err(e) => tracing::warn!("could not refresh the repository lock: {e}"),
                            }
                        }
                    }
                })
                .ok()
        };
        Ok(LockGuard { store, name, stop, refresher, continuity })
    }

    /// Fails if the lock went unrefreshed long enough that a prune may have judged it stale and
    /// deleted data this operation relies on (a suspended laptop, a stalled network). Call it
    /// right before storing anything that makes earlier work visible, such as a snapshot.
    pub fn ensure_continuous(&self) -> Result<()> {
        let gap = self.continuity.worst_gap(Utc::now().timestamp());
        if gap >= MAX_SAFE_GAP.num_seconds() {
            return Err(Error::new(
                crate::ErrorKind::Locked,
                format!(
                    "this operation's repository lock was not refreshed for {} minutes (suspended or cut off?), so a prune may have removed data it relies on; nothing was saved, run it again",
                    gap / 60
                ),
            ));
        }
        Ok(())
    }

    /// The lock's object name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.refresher.take() {
            let _ = h.join();
        }
        if let Err(e) = self.store.delete(ObjectKind::Lock, &self.name) {
            tracing::warn!("could not remove the repository lock {}: {e}", self.name);
        }
    }
}

/// Every lock in the repository, with its name. Unreadable lock objects count as live (safe side).
pub fn list_locks(store: &DynStore) -> Result<Vec<(String, Option<LockInfo>)>> {
    let mut out = Vec::new();
    for info in store.list(ObjectKind::Lock)? {
        let parsed = store.get(ObjectKind::Lock, &info.name).ok().and_then(|b| serde_json::from_slice(&b).ok());
        out.push((info.name, parsed));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_gap_between_refreshes_is_caught() {
        let c = Continuity::default();
        c.record_write(1_000);
        c.record_write(1_300);
        assert_eq!(c.worst_gap(1_400), 300);
        // Suspended for 40 minutes, then refreshed again: the gap is remembered.
        c.record_write(1_300 + 40 * 60);
        assert_eq!(c.worst_gap(1_300 + 40 * 60 + 1), 40 * 60);
        assert!(c.worst_gap(1_300 + 40 * 60 + 1) >= MAX_SAFE_GAP.num_seconds());
    }

    #[test]
    fn a_fresh_lock_passes() {
        let dir = std::env::temp_dir().join(format!("arca-lock-test-{}", std::process::id()));
        let store: DynStore = std::sync::Arc::new(arca_store::LocalStore::new(&dir));
        let guard = LockGuard::acquire(store, "test").unwrap();
        guard.ensure_continuous().unwrap();
        guard.continuity.longest_gap.store(26 * 60, Ordering::Release);
        assert_eq!(guard.ensure_continuous().unwrap_err().kind(), crate::ErrorKind::Locked);
        drop(guard);
        let _ = std::fs::remove_dir_all(dir);
    }
}
