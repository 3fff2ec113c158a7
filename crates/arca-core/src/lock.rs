//! Repository locks (docs/format.md §"Locks").
//!
//! Locks here never exclude backups from each other: a backup takes a *shared* lock so that a
//! concurrent prune can tell it is running and wait for it (§"Concurrency and prune"). A lock is
//! refreshed every [`REFRESH_EVERY`] by a background thread; one not refreshed for [`STALE_AFTER`],
//! or whose process is gone on this host, is stale.

use std::sync::atomic::{AtomicBool, Ordering};
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
}

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
        let refresher = {
            let (store, name, stop, mut info) = (store.clone(), name.clone(), stop.clone(), info);
            std::thread::Builder::new()
                .name("lock-refresh".into())
                .spawn(move || {
                    let tick = Duration::from_millis(200);
                    let mut waited = Duration::ZERO;
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(tick);
                        waited += tick;
                        if waited >= REFRESH_EVERY {
                            waited = Duration::ZERO;
                            info.refreshed = Utc::now();
                            if let Err(e) =
                                store.put(ObjectKind::Lock, &name, &serde_json::to_vec(&info).expect("lock serialises"))
                            {
                                tracing::warn!("could not refresh the repository lock: {e}");
                            }
                        }
                    }
                })
                .ok()
        };
        Ok(LockGuard { store, name, stop, refresher })
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
