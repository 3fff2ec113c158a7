//! One scheduled snapshot of one share: back the folder up into the local repository, then apply
//! the share's retention policy to that share's snapshots and prune what no snapshot needs.
//!
//! Runs on a blocking thread. The appliance runs one snapshot job at a time; replication may run
//! meanwhile (it holds a shared repository lock, so prune leaves packs it may still read alone;
//! prune waits only briefly for it and otherwise finishes on a later run, see `arca_core::prune`).

use std::time::Duration;

use arca_core::backup::{backup, BackupOptions, BackupProgress};
use arca_core::crypto::MasterKey;
use arca_core::forget::{apply_policy, ForgetPolicy, GroupBy};
use arca_core::lock::LockGuard;
use arca_core::prune::{prune, PruneOptions};
use arca_core::repository::{DynStore, Repository};
use serde::Serialize;

use crate::catalog::share_tag;
use crate::error::{Error, ErrorKind, Result};

/// The host name recorded in the appliance's snapshots.
pub const HOSTNAME: &str = "arca-appliance";

/// What one job did.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotDone {
    /// The new snapshot's id.
    pub id: String,
    /// When it was taken.
    pub time: chrono::DateTime<chrono::Utc>,
    /// Files in it.
    pub files: u64,
    /// Bytes of the files in it.
    pub bytes: u64,
    /// Bytes newly stored (before compression).
    pub added: u64,
    /// Entries that could not be read.
    pub warnings: Vec<String>,
    /// Old snapshots removed by the retention policy.
    pub forgotten: usize,
}

/// Snapshots share `name` (folder `folder`) and applies `policy`.
pub fn snapshot_share(
    store: DynStore,
    key: MasterKey,
    name: &str,
    folder: &std::path::Path,
    policy: &ForgetPolicy,
) -> Result<SnapshotDone> {
    if !folder.is_dir() {
        return Err(Error::new(
            ErrorKind::Io,
            format!("share {name}: folder {} is missing or not a directory; no snapshot taken", folder.display()),
        ));
    }
    let mut repo = Repository::open_with_key(store, key)?;
    let opts = BackupOptions {
        paths: vec![folder.to_path_buf()],
        tags: vec![share_tag(name)],
        hostname: Some(HOSTNAME.to_string()),
        // An upload in progress is not a version of anything (see `share::upload`).
        excludes: vec![format!("{}*", crate::share::upload::UPLOAD_PREFIX)],
        ..BackupOptions::default()
    };
    let progress = BackupProgress::default();
    let out = backup(&mut repo, &opts, &progress, None)
        .map_err(|e| Error::from(e).context(format!("share {name}: backup")))?;
    for w in &out.warnings {
        tracing::warn!("share {name}: {w}");
    }
    let forgotten = apply_retention(&mut repo, name, policy)?;
    let s = &out.snapshot.summary;
    Ok(SnapshotDone {
        id: out.id.to_hex(),
        time: out.snapshot.time,
        files: s.files_new + s.files_changed + s.files_unmodified,
        bytes: s.total_bytes,
        added: s.data_added,
        warnings: out.warnings,
        forgotten,
    })
}

/// Forgets share `name`'s snapshots that `policy` does not keep, then prunes if any went.
fn apply_retention(repo: &mut Repository, name: &str, policy: &ForgetPolicy) -> Result<usize> {
    if policy.is_empty() {
        return Ok(0);
    }
    let tag = share_tag(name);
    let mut removed = 0;
    {
        let _lock = LockGuard::acquire(repo.store().clone(), "forget")?;
        let (all, _) = repo.snapshots()?;
        let mine: Vec<_> = all.into_iter().filter(|(_, s)| s.tags.contains(&tag)).collect();
        for (_, decisions) in apply_policy(&mine, policy, GroupBy::default()) {
            for d in decisions.iter().filter(|d| !d.keep) {
                repo.delete_snapshot(&d.id)?;
                removed += 1;
            }
        }
    }
    if removed > 0 {
        tracing::info!("share {name}: retention removed {removed} snapshots ({policy})");
        // Replication may hold its lock for a long upload: do not wait for it, a later prune
        // finishes what this one marked.
        let opts = PruneOptions { dry_run: false, max_wait: Duration::from_secs(2) };
        match prune(repo, &opts) {
            Ok(r) => tracing::info!("share {name}: prune freed {} bytes in {} packs", r.bytes_freed, r.packs_deleted),
            Err(e) => tracing::warn!("share {name}: prune did not finish (a later run will): {e}"),
        }
    }
    Ok(removed)
}
