//! Replication: the local repository's objects, copied byte for byte to the tenant's repository on
//! the provider's `arca server`.
//!
//! Objects are content-addressed and never change, so "the provider has it" is "the provider
//! lists that name", and a pass is a set difference. Nothing is decrypted or re-encrypted: the
//! provider repository opens with the same password, because the key slots and the config are
//! copied too (key slots are the master key sealed under the password; the provider cannot open
//! them without it). Lock files and prune marks are local coordination and are not copied.
//!
//! One pass, in steps:
//! 1. Take a shared lock on the local repository, so a local prune does not delete packs this pass
//!    may still read (prune waits for it, or leaves the deletion to a later run).
//! 2. Make sure the provider repository exists: create it, upload the key slots, then the config
//!    (the config last: it is what makes a store a repository). An existing config must be
//!    byte-identical to ours, or this is someone else's repository and the pass stops.
//! 3. List the local snapshots first, then index files, then packs: a backup writes packs, then
//!    indexes, then the snapshot, so every listed snapshot's objects are in the later listings.
//! 4. List what the provider has. An object it has with another size is damage: reported, never
//!    overwritten (the server refuses overwrites anyway).
//!    Take a lease there (a lock object, as a backup does), so the provider's garbage collector
//!    does not free packs this pass sends before the snapshot that references them arrives.
//! 5. Upload what is missing, in the order packs, indexes, snapshots (the server refuses a
//!    snapshot whose packs it lacks), smallest first within each kind. Each object is read,
//!    checked against its name (the BLAKE3 of its bytes; a damaged local object is reported, not
//!    sent), sent with its body paced by the upload limit, then checked on arrival with a HEAD for
//!    its size (the server verified the hash). An index is sent only when every pack it names is
//!    on the provider. If anything was left out (a local prune deleted it meanwhile), the pass
//!    sends no snapshot, because that snapshot's blobs might be indexed only in what was left
//!    out; the next pass starts at once from fresh listings. Before the first snapshot, the
//!    provider's index files are listed again: one that was there at step 4 and is gone now (its
//!    collector freed all its packs) also holds the snapshots back.
//!
//! Deleting or pruning locally never deletes at the provider: a pass only ever uploads. A
//! killed pass loses at most the object in flight; the next pass (after a restart too) starts from
//! what the provider lists. Errors are retried with exponential backoff.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use arca_core::envelope::read_manifest;
use arca_core::id::content_hash;
use arca_core::index::INDEX_MAGIC;
use arca_core::lock::LockGuard;
use arca_core::repository::DynStore;
use arca_store::{HttpStore, ObjectKind, Store};
use chrono::{Timelike, Utc};

use crate::config::{ProviderConfig, TimeWindow};
use crate::error::{Error, ErrorKind, Result};
use crate::status::StatusBoard;
use crate::throttle::{Throttled, TokenBucket};

/// First pause after a failed pass; it doubles up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_secs(2);
/// Longest pause between failed passes.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// A pass also runs this often without a new snapshot (to catch up after an outage).
pub const PERIOD: Duration = Duration::from_secs(600);

/// Kinds copied, in upload order.
const DATA_KINDS: [ObjectKind; 4] =
    [ObjectKind::DataPack, ObjectKind::MetaPack, ObjectKind::Index, ObjectKind::Snapshot];

/// What a pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PassReport {
    /// Objects uploaded.
    pub uploaded: u64,
    /// Bytes uploaded.
    pub bytes: u64,
    /// Objects the provider already had.
    pub present: u64,
    /// Objects left for the next pass: ones that vanished locally before they were sent (a local
    /// prune), indexes naming packs the provider lacks, and snapshots held back because something
    /// before them was left out (their blobs might be indexed only there).
    pub deferred: u64,
}

/// Copies the local repository to the provider.
pub struct Replicator {
    local: DynStore,
    local_root: std::path::PathBuf,
    remote: Arc<Throttled<HttpStore>>,
    windows: Vec<TimeWindow>,
    status: Arc<StatusBoard>,
    ledger: std::sync::Mutex<Ledger>,
    alert_age: Option<chrono::Duration>,
    alert_bytes: Option<u64>,
}

/// The objects known to be at the provider: its listings, plus what was uploaded since. It lets
/// the appliance tell what waits to go off-site while the provider cannot be asked. Kept in
/// `replicated.txt` in the data directory (one name per line, rewritten after each listing and
/// appended to after each upload) so the backlog is right after a restart too.
struct Ledger {
    known: HashSet<String>,
    file: std::path::PathBuf,
}

impl Ledger {
    fn load(file: std::path::PathBuf) -> Ledger {
        let known = std::fs::read_to_string(&file)
            .map(|t| {
                t.lines()
                    .filter(|l| l.len() == 64 && l.bytes().all(|b| b.is_ascii_hexdigit()))
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        Ledger { known, file }
    }

    /// Replaces what is known with a fresh listing of the provider.
    fn replace(&mut self, names: HashSet<String>) {
        self.known = names;
        let mut text = String::with_capacity(self.known.len() * 65);
        for n in &self.known {
            text.push_str(n);
            text.push('\n');
        }
        let tmp = self.file.with_extension("txt.tmp");
        if let Err(e) = std::fs::write(&tmp, text).and_then(|_| std::fs::rename(&tmp, &self.file)) {
            tracing::warn!("writing {}: {e}", self.file.display());
        }
    }

    /// Records one uploaded object.
    fn add(&mut self, name: &str) {
        use std::io::Write;
        if self.known.insert(name.to_string()) {
            let appended = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.file)
                .and_then(|mut f| f.write_all(format!("{name}\n").as_bytes()));
            if let Err(e) = appended {
                tracing::warn!("writing {}: {e}", self.file.display());
            }
        }
    }
}

/// What waits to go to the provider.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Backlog {
    snapshots: usize,
    bytes: u64,
    oldest: Option<chrono::DateTime<Utc>>,
}

impl Replicator {
    /// A replicator from `local` to the provider in `cfg`.
    /// `data_dir` keeps the ledger of what the provider has.
    pub fn new(
        local: DynStore,
        local_root: std::path::PathBuf,
        data_dir: &std::path::Path,
        cfg: &ProviderConfig,
        status: Arc<StatusBoard>,
    ) -> Result<Replicator> {
        let token = cfg.token()?;
        let mut http = HttpStore::new(&cfg.url, &token).map_err(|e| Error::config(format!("provider: {e}")))?;
        if let Some(limit) = cfg.upload_limit {
            http = http.with_pacer(crate::throttle::pacer(Arc::new(TokenBucket::new(limit.0))));
        }
        // Paced inside the body; the wrapper only counts.
        let remote = Arc::new(Throttled::new(http, None));
        Ok(Replicator {
            local,
            local_root,
            remote,
            windows: cfg.windows.clone(),
            status,
            ledger: std::sync::Mutex::new(Ledger::load(data_dir.join("replicated.txt"))),
            alert_age: (cfg.backlog_alert_hours > 0).then(|| chrono::Duration::hours(cfg.backlog_alert_hours.into())),
            alert_bytes: cfg.backlog_alert_bytes.map(|b| b.0),
        })
    }

    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What the local repository holds that the provider is not known to have, from local
    /// listings and the ledger alone (for when the provider cannot be reached).
    fn local_backlog(&self) -> Result<Backlog> {
        let mut backlog = Backlog::default();
        let mut waiting = Vec::new();
        {
            let ledger = self.ledger();
            for kind in DATA_KINDS {
                for o in self.local.list(kind)? {
                    if !ledger.known.contains(&o.name) {
                        backlog.bytes += o.size;
                        if kind == ObjectKind::Snapshot {
                            waiting.push(o.name);
                        }
                    }
                }
            }
        }
        backlog.snapshots = waiting.len();
        backlog.oldest = self.oldest_snapshot_time(&waiting.iter().collect::<Vec<_>>());
        Ok(backlog)
    }

    /// Shows `backlog` and raises or clears the alert.
    /// Counts the backlog from local listings and the ledger (the provider could not say what it
    /// lacks) and shows it.
    async fn refresh_backlog(self: &Arc<Self>) {
        let me = self.clone();
        match tokio::task::spawn_blocking(move || me.local_backlog()).await {
            Ok(Ok(backlog)) => self.show_backlog(backlog),
            Ok(Err(e)) => tracing::warn!("replication: listing the local repository: {e}"),
            Err(e) => tracing::warn!("replication: counting the backlog: {e}"),
        }
    }

    fn show_backlog(&self, backlog: Backlog) {
        let alert = backlog_alert(backlog, Utc::now(), self.alert_age, self.alert_bytes);
        let mut raised = None;
        self.status.replication(|r| {
            r.pending_snapshots = backlog.snapshots;
            r.pending_bytes = backlog.bytes;
            r.oldest_pending = backlog.oldest;
            if alert.is_some() && r.alert.is_none() {
                raised = alert.clone();
            }
            r.alert = alert;
        });
        if let Some(a) = raised {
            tracing::error!("{a}");
        }
    }

    /// Whether uploads may run now (inside a window, or no windows configured).
    fn in_window(&self) -> bool {
        if self.windows.is_empty() {
            return true;
        }
        let now = chrono::Local::now();
        let minute = now.hour() * 60 + now.minute();
        self.windows.iter().any(|w| w.contains(minute))
    }

    /// Waits (blocking) until uploads may run.
    fn wait_for_window(&self) {
        if self.in_window() {
            return;
        }
        self.status.replication(|r| r.state = "waiting for window".into());
        while !self.in_window() {
            std::thread::sleep(Duration::from_secs(20));
        }
        self.status.replication(|r| r.state = "uploading".into());
    }

    /// Makes sure the provider repository exists and is ours (steps 1–2 of a pass).
    fn ensure_remote(&self) -> Result<()> {
        let config = self.local.get(ObjectKind::Config, "config")?;
        match self.remote.get(ObjectKind::Config, "config") {
            Ok(theirs) if theirs == config => {}
            Ok(_) => {
                return Err(Error::new(
                    ErrorKind::Provider,
                    format!(
                        "the provider repository {} holds a different repository (its config differs); \
                         nothing was uploaded. Give the appliance an empty repository of its own.",
                        self.remote.location()
                    ),
                ))
            }
            Err(e) if e.is_not_found() => {
                if let Err(e) = self.remote.create() {
                    if e.kind() != arca_store::ErrorKind::AlreadyExists {
                        tracing::debug!("creating the provider repository: {e} (uploading the config decides)");
                    }
                }
            }
            Err(e) => return Err(e.into()),
        }
        // Key slots first (new slots added locally follow), the config last.
        let theirs: HashSet<String> = self.remote.list(ObjectKind::Key)?.into_iter().map(|o| o.name).collect();
        for slot in self.local.list(ObjectKind::Key)? {
            if !theirs.contains(&slot.name) {
                let bytes = self.local.get(ObjectKind::Key, &slot.name)?;
                self.remote.put(ObjectKind::Key, &slot.name, &bytes)?;
            }
        }
        if self.remote.stat(ObjectKind::Config, "config")?.is_none() {
            self.remote.put(ObjectKind::Config, "config", &config)?;
        }
        Ok(())
    }

    /// One pass (see the module documentation). Blocking.
    pub fn pass(&self) -> Result<PassReport> {
        let _lock = LockGuard::acquire(self.local.clone(), "replicate")?;
        self.wait_for_window();
        self.ensure_remote()?;
        // A lease at the provider, as a backup takes: its garbage collector leaves alone packs
        // this pass uploads before the snapshot that references them arrives.
        let remote: DynStore = self.remote.clone();
        let _lease = LockGuard::acquire(remote, "replicate")
            .map_err(|e| Error::from(e).context("taking a lease on the provider repository"))?;
        // Step 3: local listings, snapshots first.
        let mut local: HashMap<ObjectKind, Vec<(String, u64)>> = HashMap::new();
        for kind in DATA_KINDS.iter().rev() {
            let list = self.local.list(*kind)?.into_iter().map(|o| (o.name, o.size)).collect();
            local.insert(*kind, list);
        }
        // Step 4: what the provider has.
        let mut report = PassReport::default();
        let mut todo: Vec<(ObjectKind, String, u64)> = Vec::new();
        let mut remote_packs: HashSet<String> = HashSet::new();
        let mut present_indexes: Vec<String> = Vec::new();
        let mut listed: HashSet<String> = HashSet::new();
        for kind in DATA_KINDS {
            let theirs: HashMap<String, u64> = self.remote.list(kind)?.into_iter().map(|o| (o.name, o.size)).collect();
            listed.extend(theirs.keys().cloned());
            if kind.is_fanned_out() {
                remote_packs.extend(theirs.keys().cloned());
            }
            for (name, size) in &local[&kind] {
                match theirs.get(name) {
                    Some(s) if s == size => {
                        report.present += 1;
                        if kind == ObjectKind::Index {
                            present_indexes.push(name.clone());
                        }
                    }
                    Some(s) => {
                        return Err(Error::new(
                            ErrorKind::Provider,
                            format!(
                                "the provider's copy of {kind} object {name} has {s} bytes, ours {size}: it is damaged \
                                 there (ask the provider to scrub and remove it); replication stopped"
                            ),
                        ))
                    }
                    None => todo.push((kind, name.clone(), *size)),
                }
            }
        }
        // Within each kind, small objects first: after a cut, as many objects as possible are
        // complete (an interrupted object is sent again whole).
        todo.sort_by_key(|(kind, _, size)| (DATA_KINDS.iter().position(|k| k == kind), *size));
        self.ledger().replace(listed);
        let snapshots_waiting: Vec<&String> =
            todo.iter().filter(|(k, _, _)| *k == ObjectKind::Snapshot).map(|(_, n, _)| n).collect();
        let pending_bytes: u64 = todo.iter().map(|(_, _, s)| s).sum();
        let oldest = self.oldest_snapshot_time(&snapshots_waiting);
        let waiting = snapshots_waiting.len();
        self.show_backlog(Backlog { snapshots: waiting, bytes: pending_bytes, oldest });
        self.status.replication(|r| r.state = if todo.is_empty() { "idle".into() } else { "uploading".into() });
        // Step 5: upload.
        let mut left = pending_bytes;
        let mut snapshots_left = waiting;
        let mut indexes_rechecked = false;
        for (kind, name, size) in todo {
            if kind == ObjectKind::Snapshot && !indexes_rechecked {
                indexes_rechecked = true;
                // The provider's collector may have removed an index file it had at the listing
                // (all its packs had been freed) while this pass sent one of those packs again;
                // a snapshot sent now could then lack the index that covers its blobs.
                let theirs: HashSet<String> =
                    self.remote.list(ObjectKind::Index)?.into_iter().map(|o| o.name).collect();
                if let Some(gone) = present_indexes.iter().find(|n| !theirs.contains(*n)) {
                    tracing::info!("the provider no longer has index {gone}; snapshots wait for the next pass");
                    report.deferred += 1;
                }
            }
            if kind == ObjectKind::Snapshot && report.deferred > 0 {
                report.deferred += 1;
                continue;
            }
            self.wait_for_window();
            let bytes = match self.local.get(kind, &name) {
                Ok(b) => b,
                Err(e) if e.is_not_found() => {
                    report.deferred += 1;
                    continue;
                }
                Err(e) => return Err(Error::from(e).context(format!("reading local {kind} object {name}"))),
            };
            if kind == ObjectKind::Index {
                let (packs, _) = read_manifest(INDEX_MAGIC, &bytes)
                    .map_err(|e| Error::from(e).context(format!("local index {name}")))?;
                if packs.iter().any(|(_, p)| !remote_packs.contains(&p.to_hex())) {
                    // A pack of it was pruned locally before it was sent: a later index covers
                    // what is still needed.
                    report.deferred += 1;
                    continue;
                }
            }
            if hex::encode(content_hash(&bytes)) != name {
                return Err(Error::new(
                    ErrorKind::Repository,
                    format!(
                        "local {kind} object {name} is damaged (its bytes do not hash to its name); it was not sent. \
                         Run `arca check --read-data` on the local repository."
                    ),
                ));
            }
            self.remote
                .put(kind, &name, &bytes)
                .map_err(|e| Error::from(e).context(format!("uploading {kind} object {name}")))?;
            match self.remote.stat(kind, &name)? {
                Some(s) if s == bytes.len() as u64 => {}
                other => {
                    return Err(Error::new(
                        ErrorKind::Provider,
                        format!(
                            "after uploading {kind} object {name} ({} bytes) the provider reports {other:?}",
                            bytes.len()
                        ),
                    ))
                }
            }
            if kind.is_fanned_out() {
                remote_packs.insert(name.clone());
            }
            self.ledger().add(&name);
            report.uploaded += 1;
            report.bytes += bytes.len() as u64;
            left = left.saturating_sub(size);
            if kind == ObjectKind::Snapshot {
                snapshots_left -= 1;
            }
            let total = self.remote.uploaded.load(Ordering::Relaxed);
            self.status.replication(|r| {
                r.pending_bytes = left;
                r.pending_snapshots = snapshots_left;
                r.uploaded_bytes = total;
                r.uploaded_objects += 1;
            });
        }
        Ok(report)
    }

    /// The time of the oldest of these local snapshots (unreadable ones are skipped).
    fn oldest_snapshot_time(&self, names: &[&String]) -> Option<chrono::DateTime<Utc>> {
        // Snapshot times are inside the encrypted part; the object's modification time on disk is
        // close enough for a lag display and needs no key.
        names
            .iter()
            .filter_map(|n| std::fs::metadata(self.local_root.join("snapshots").join(n)).ok())
            .filter_map(|m| m.modified().ok())
            .map(chrono::DateTime::<Utc>::from)
            .min()
    }

    /// Tells the provider how replication stands, so its console shows it (best effort: one
    /// attempt; a provider that cannot be reached only adds a log line).
    async fn report_state(self: &Arc<Self>, state: String) {
        if let Err(e) = self.clone().report("replication", state).await {
            tracing::debug!("replication: could not report the state to the provider: {e}");
        }
    }

    /// Sends one report to the provider with the appliance's device token (`POST
    /// /v1/repos/{repo}/report`: `replication`, `drill` or `drill-failed`). One attempt.
    pub async fn report(self: Arc<Self>, outcome: &'static str, message: String) -> Result<()> {
        let sent = tokio::task::spawn_blocking(move || self.remote.inner().report(outcome, &message)).await;
        match sent {
            Ok(r) => r.map_err(Error::from),
            Err(e) => Err(Error::new(ErrorKind::Io, format!("reporting to the provider: {e}"))),
        }
    }

    /// Runs passes forever: at start, after every `wake`, and every [`PERIOD`]; failed passes are
    /// retried with exponential backoff.
    pub async fn run(self: Arc<Self>, wake: Arc<tokio::sync::Notify>) {
        let mut backoff = FIRST_BACKOFF;
        loop {
            let me = self.clone();
            let result = tokio::task::spawn_blocking(move || me.pass()).await;
            let result = result.unwrap_or_else(|e| Err(Error::new(ErrorKind::Io, format!("replication crashed: {e}"))));
            match result {
                Ok(report) => {
                    backoff = FIRST_BACKOFF;
                    if report.uploaded > 0 {
                        tracing::info!(
                            "replication: uploaded {} objects ({} bytes); the provider had {}",
                            report.uploaded,
                            report.bytes,
                            report.present
                        );
                    }
                    self.status.replication(|r| {
                        r.state = "idle".into();
                        r.last_error = None;
                        r.next_attempt = None;
                        if report.deferred == 0 {
                            r.last_success = Some(Utc::now());
                            r.pending_snapshots = 0;
                            r.pending_bytes = 0;
                            r.oldest_pending = None;
                            r.alert = None;
                        }
                    });
                    self.report_state(if report.deferred == 0 {
                        format!(
                            "up to date (last pass sent {} objects, {} bytes; {} already there)",
                            report.uploaded, report.bytes, report.present
                        )
                    } else {
                        format!("{} objects wait for the next pass", report.deferred)
                    })
                    .await;
                    if report.deferred > 0 {
                        tracing::info!(
                            "replication: {} objects left for the next pass (pruned locally meanwhile)",
                            report.deferred
                        );
                        tokio::time::sleep(FIRST_BACKOFF).await;
                        continue;
                    }
                    let _ = tokio::time::timeout(PERIOD, wake.notified()).await;
                }
                Err(e) => {
                    tracing::warn!("replication: {e}; retrying in {backoff:?}");
                    self.refresh_backlog().await;
                    self.report_state(format!("backing off after an error: {e}")).await;
                    let next = Utc::now() + chrono::Duration::from_std(backoff).unwrap_or_default();
                    self.status.replication(|r| {
                        r.state = "backing off".into();
                        r.last_error = Some(e.to_string());
                        r.next_attempt = Some(next);
                    });
                    // A snapshot taken meanwhile does not bring the retry forward (the provider is
                    // failing), but it does grow the backlog shown.
                    let until = tokio::time::Instant::now() + backoff;
                    while tokio::time::timeout_at(until, wake.notified()).await.is_ok() {
                        self.refresh_backlog().await;
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

/// The alert for `backlog` at `now`, if it is past a threshold.
fn backlog_alert(
    backlog: Backlog,
    now: chrono::DateTime<Utc>,
    max_age: Option<chrono::Duration>,
    max_bytes: Option<u64>,
) -> Option<String> {
    let mut why = Vec::new();
    if let (Some(oldest), Some(max)) = (backlog.oldest, max_age) {
        if now - oldest > max {
            why.push(format!(
                "the oldest snapshot not yet at the provider was taken {} hours ago (alert after {})",
                (now - oldest).num_hours(),
                max.num_hours()
            ));
        }
    }
    if let Some(max) = max_bytes.filter(|m| backlog.bytes > *m) {
        why.push(format!("{} bytes wait to be uploaded (alert above {max})", backlog.bytes));
    }
    (!why.is_empty()).then(|| {
        format!(
            "off-site backups are behind: {}; {} snapshots wait. Check the link to the provider and the upload limit.",
            why.join("; "),
            backlog.snapshots
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backlog_alerts_on_age_or_size() {
        let now = Utc::now();
        let day = Some(chrono::Duration::hours(24));
        let b = |hours: i64, bytes: u64| Backlog {
            snapshots: 3,
            bytes,
            oldest: Some(now - chrono::Duration::hours(hours)),
        };
        assert_eq!(backlog_alert(b(23, 10), now, day, None), None);
        assert!(backlog_alert(b(25, 10), now, day, None).unwrap().contains("25 hours ago"));
        assert_eq!(backlog_alert(b(25, 10), now, None, None), None, "age alerts off");
        assert!(backlog_alert(b(1, 2000), now, day, Some(1000)).unwrap().contains("2000 bytes"));
        assert_eq!(backlog_alert(Backlog::default(), now, day, Some(0)), None, "nothing waits");
    }

    #[test]
    fn the_ledger_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("replicated.txt");
        let (a, b, c) = ("a".repeat(64), "b".repeat(64), "c".repeat(64));
        let mut l = Ledger::load(file.clone());
        assert!(l.known.is_empty());
        l.replace([a.clone(), b.clone()].into_iter().collect());
        l.add(&c);
        let again = Ledger::load(file.clone());
        assert_eq!(again.known.len(), 3);
        assert!(again.known.contains(&c));
        std::fs::write(&file, "junk\n").unwrap();
        assert!(Ledger::load(file).known.is_empty(), "lines that are not names are ignored");
    }
}
