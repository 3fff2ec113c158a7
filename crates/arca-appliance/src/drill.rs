//! Scheduled restore drills: the appliance proves, on its own schedule, that each share's newest
//! snapshot restores intact from the local repository, and tells the provider.
//!
//! One run, per share: find the share's newest snapshot, restore a sample of its files (or all of
//! them) into a scratch directory with `arca_core::drill` (every blob decrypted, authenticated and
//! checked against its id, the restored files read back and checked again), record what it proved
//! and how fast on the status page, then delete the scratch copy. With a provider configured, the
//! result goes to it with the appliance's device token (outcome `drill` or `drill-failed`), so the
//! provider's console shows the office's last proven restore and alerts on a failed one.
//!
//! Drills take their turn with snapshot jobs (one job at a time), so a drill never reads packs a
//! retention prune is deleting.

use std::path::Path;

use arca_core::crypto::MasterKey;
use arca_core::drill::{drill, DrillOptions, DrillProgress};
use arca_core::lock::LockGuard;
use arca_core::repository::{DynStore, Repository};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::catalog::share_tag;
use crate::error::{Error, ErrorKind, Result};

/// The outcome of one share's drill, as the status page shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DrillOutcome {
    /// When it ran.
    pub time: DateTime<Utc>,
    /// Whether every restored file matched.
    pub passed: bool,
    /// What it proved (or which files failed).
    pub summary: String,
}

/// Drills share `name`: its newest snapshot, `sample` files of it (`None`: all), restored below
/// `scratch`. `Ok(None)` when the share has no snapshot yet. Blocking.
pub fn drill_share(
    store: DynStore,
    key: MasterKey,
    name: &str,
    sample: Option<usize>,
    scratch: &Path,
) -> Result<Option<DrillOutcome>> {
    let mut repo = Repository::open_with_key(store, key)?;
    let _lock = LockGuard::acquire(repo.store().clone(), "drill")?;
    let tag = share_tag(name);
    let (all, _) = repo.snapshots()?;
    let Some((id, snap)) = all.into_iter().filter(|(_, s)| s.tags.contains(&tag)).max_by_key(|(_, s)| s.time) else {
        return Ok(None);
    };
    // The index after the snapshot (a snapshot is written after its index).
    for problem in repo.load_index_for_reading()? {
        tracing::warn!("local repository index: {problem}");
    }
    std::fs::create_dir_all(scratch)
        .map_err(|e| Error::new(ErrorKind::Io, format!("making the drill directory {}: {e}", scratch.display())))?;
    let dir = tempfile::Builder::new()
        .prefix("drill-")
        .tempdir_in(scratch)
        .map_err(|e| Error::new(ErrorKind::Io, format!("making a scratch directory in {}: {e}", scratch.display())))?;
    let seed = Utc::now().timestamp_nanos_opt().unwrap_or_default() as u64;
    let opts = DrillOptions { sample, seed, scratch: dir.path().to_path_buf() };
    let report = drill(&repo, &snap, &opts, &DrillProgress::default())
        .map_err(|e| Error::from(e).context(format!("share {name}: drill of snapshot {}", id.short())))?;
    let summary = format!("share {name}: {}", report.summary(&id.short()));
    if report.passed() {
        tracing::info!("drill passed: {summary}");
    } else {
        tracing::error!("drill FAILED: {summary}");
    }
    Ok(Some(DrillOutcome { time: Utc::now(), passed: report.passed(), summary }))
}
