//! Disaster recovery: a new (or wiped) appliance pulls the repository back from the provider and
//! restores each share's latest snapshot into its folder.
//!
//! Steps:
//! 1. Pull: copy every object the provider has and the local repository lacks, byte for byte, in
//!    the order key slots, packs, indexes, snapshots, and the config last (what makes the local
//!    directory a repository). Each object is checked against its name (BLAKE3) before it is
//!    written. A pull that is cut off simply runs again: it copies only what is still missing. An
//!    existing local repository must be the same repository (identical config).
//!    With `latest_only`, only the newest snapshot of each share and the packs it names are
//!    pulled, with index entries for exactly those packs (see [`pull_latest`]).
//! 2. Open the local repository with the configured password.
//! 3. For each share, restore the share folder's contents from its newest snapshot. A folder that
//!    is not empty is refused unless `force` (then changed files are rewritten): recovery never
//!    silently mixes old and new files.

use std::collections::HashSet;
use std::sync::Arc;

use arca_core::envelope::read_manifest;
use arca_core::id::{content_hash, PackId, SnapshotId};
use arca_core::index::{decode_index, encode_index, IndexPack, INDEX_MAGIC};
use arca_core::pack::PackKind;
use arca_core::repository::{DynStore, Repository};
use arca_core::restore::{restore, Overwrite, RestoreOptions, RestoreProgress};
use arca_core::snapshot::SNAPSHOT_MAGIC;
use arca_store::{HttpStore, LocalStore, ObjectKind, Store};
use serde::Serialize;

use crate::catalog::share_tag;
use crate::config::Config;
use crate::error::{Error, ErrorKind, Result};

/// What recovery should do.
#[derive(Debug, Clone, Default)]
pub struct RecoverOptions {
    /// Shares to restore (empty: all).
    pub shares: Vec<String>,
    /// Restore into folders that are not empty (rewriting files that differ).
    pub force: bool,
    /// Only pull the repository; restore no share.
    pub pull_only: bool,
    /// Pull only the newest snapshot of each share (and what it needs), not the history.
    pub latest_only: bool,
}

/// What recovery did.
#[derive(Debug, Default, Serialize)]
pub struct RecoverReport {
    /// Objects copied from the provider.
    pub objects_pulled: u64,
    /// Bytes copied from the provider.
    pub bytes_pulled: u64,
    /// Per share: the snapshot restored and the files written.
    pub shares: Vec<ShareRestored>,
}

/// One share's restore.
#[derive(Debug, Serialize)]
pub struct ShareRestored {
    /// The share.
    pub share: String,
    /// The snapshot restored.
    pub snapshot: String,
    /// Its time.
    pub time: chrono::DateTime<chrono::Utc>,
    /// Files written.
    pub files: u64,
    /// Bytes written.
    pub bytes: u64,
}

/// Copies what `from` has and `to` lacks (step 1). Blocking.
pub fn pull(from: &dyn Store, to: &dyn Store) -> Result<(u64, u64)> {
    let (config, fresh) = prepare(from, to)?;
    let (mut objects, mut bytes) = (0u64, 0u64);
    for kind in [ObjectKind::Key, ObjectKind::DataPack, ObjectKind::MetaPack, ObjectKind::Index, ObjectKind::Snapshot] {
        let have: HashSet<String> = to.list(kind)?.into_iter().map(|o| o.name).collect();
        for obj in from.list(kind)? {
            if !have.contains(&obj.name) {
                bytes += copy_object(from, to, kind, &obj.name)?;
                objects += 1;
            }
        }
    }
    if fresh {
        to.put(ObjectKind::Config, "config", &config)?;
    }
    Ok((objects, bytes))
}

/// Copies one object, checked against its name on the way. Returns its size.
fn copy_object(from: &dyn Store, to: &dyn Store, kind: ObjectKind, name: &str) -> Result<u64> {
    let data = from.get(kind, name)?;
    if hex::encode(content_hash(&data)) != name {
        return Err(Error::new(
            ErrorKind::Provider,
            format!("the provider's {kind} object {name} is damaged (its bytes do not match its name)"),
        ));
    }
    to.put(kind, name, &data)?;
    Ok(data.len() as u64)
}

/// Copies only the newest snapshot of each share tag in `tags` from `from` (opened with
/// `password`, since snapshot times are encrypted) and the packs its manifest names: a recovery
/// that needs today's files and not the history. The index files written locally cover exactly
/// the packs pulled (entries of the provider's index files, filtered), so the local repository is
/// complete in itself: later backups deduplicate only against packs that are really there.
/// Rerunning it copies only what is still missing. Blocking.
pub fn pull_latest(from: DynStore, to: &dyn Store, password: &[u8], tags: &[String]) -> Result<(u64, u64)> {
    let (config, fresh) = prepare(from.as_ref(), to)?;
    let remote = Repository::open(from.clone(), password)?;
    let (all, damaged) = remote.snapshots()?;
    for e in damaged {
        tracing::warn!("provider repository: skipping a damaged snapshot: {e}");
    }
    let chosen: Vec<SnapshotId> = tags
        .iter()
        .filter_map(|tag| {
            all.iter().filter(|(_, s)| s.tags.contains(tag)).max_by_key(|(_, s)| s.time).map(|(id, _)| *id)
        })
        .collect();
    let mut packs: Vec<(PackKind, PackId)> = Vec::new();
    let mut snapshot_bytes: Vec<(SnapshotId, Vec<u8>)> = Vec::new();
    for id in &chosen {
        let bytes = from.get(ObjectKind::Snapshot, &id.to_hex())?;
        let (manifest, _) =
            read_manifest(SNAPSHOT_MAGIC, &bytes).map_err(|e| Error::from(e).context(format!("snapshot {id}")))?;
        packs.extend(manifest);
        snapshot_bytes.push((*id, bytes));
    }
    packs.sort();
    packs.dedup();

    let (mut objects, mut bytes) = (0u64, 0u64);
    let have_keys: HashSet<String> = to.list(ObjectKind::Key)?.into_iter().map(|o| o.name).collect();
    for slot in from.list(ObjectKind::Key)? {
        if !have_keys.contains(&slot.name) {
            bytes += copy_object(from.as_ref(), to, ObjectKind::Key, &slot.name)?;
            objects += 1;
        }
    }
    for kind in [PackKind::Data, PackKind::Meta] {
        let have: HashSet<String> = to.list(kind.object_kind())?.into_iter().map(|o| o.name).collect();
        for (_, id) in packs.iter().filter(|(k, _)| *k == kind) {
            if !have.contains(&id.to_hex()) {
                bytes += copy_object(from.as_ref(), to, kind.object_kind(), &id.to_hex())?;
                objects += 1;
            }
        }
    }
    // Index entries for the pulled packs that no local index file lists yet (a rerun finds them
    // listed), taken from the provider's index files.
    let mut covered: HashSet<PackId> = HashSet::new();
    for info in to.list(ObjectKind::Index)? {
        if let Ok((listed, _)) = read_manifest(INDEX_MAGIC, &to.get(ObjectKind::Index, &info.name)?) {
            covered.extend(listed.into_iter().map(|(_, p)| p));
        }
    }
    let mut wanted: HashSet<PackId> = packs.iter().map(|(_, p)| *p).filter(|p| !covered.contains(p)).collect();
    let mut entries: Vec<IndexPack> = Vec::new();
    for info in from.list(ObjectKind::Index)? {
        if wanted.is_empty() {
            break;
        }
        let raw = from.get(ObjectKind::Index, &info.name)?;
        let (listed, _) =
            read_manifest(INDEX_MAGIC, &raw).map_err(|e| Error::from(e).context(format!("index {}", info.name)))?;
        if !listed.iter().any(|(_, p)| wanted.contains(p)) {
            continue;
        }
        for p in decode_index(remote.key(), &raw).map_err(|e| Error::from(e).context(format!("index {}", info.name)))? {
            if wanted.remove(&p.id) {
                entries.push(p);
            }
        }
    }
    if let Some(p) = wanted.iter().next() {
        return Err(Error::new(
            ErrorKind::Provider,
            format!(
                "no index file at the provider lists pack {p} of the newest snapshot; the provider copy needs \
                 `arca repair index` (or recover everything, without --latest-only)"
            ),
        ));
    }
    for chunk in entries.chunks(4096) {
        let raw = encode_index(remote.key(), chunk);
        to.put(ObjectKind::Index, &hex::encode(content_hash(&raw)), &raw)?;
        objects += 1;
        bytes += raw.len() as u64;
    }
    let have: HashSet<String> = to.list(ObjectKind::Snapshot)?.into_iter().map(|o| o.name).collect();
    for (id, raw) in snapshot_bytes {
        if !have.contains(&id.to_hex()) {
            to.put(ObjectKind::Snapshot, &id.to_hex(), &raw)?;
            objects += 1;
            bytes += raw.len() as u64;
        }
    }
    if fresh {
        to.put(ObjectKind::Config, "config", &config)?;
    }
    Ok((objects, bytes))
}

/// Checks that `to` is empty or the same repository as `from`; returns `from`'s config and
/// whether `to` is new (its config is then written last, by the caller).
fn prepare(from: &dyn Store, to: &dyn Store) -> Result<(Vec<u8>, bool)> {
    let config = from
        .get(ObjectKind::Config, "config")
        .map_err(|e| Error::new(ErrorKind::Provider, format!("reading the provider repository's config: {e}")))?;
    let fresh = match to.get(ObjectKind::Config, "config") {
        Ok(ours) if ours == config => false,
        Ok(_) => {
            return Err(Error::new(
                ErrorKind::Repository,
                format!(
                    "the local repository {} is a different repository than the provider's; move it away first",
                    to.location()
                ),
            ))
        }
        Err(e) if e.is_not_found() => {
            if let Err(e) = to.create() {
                if e.kind() != arca_store::ErrorKind::AlreadyExists {
                    return Err(e.into());
                }
            }
            true
        }
        Err(e) => return Err(e.into()),
    };
    Ok((config, fresh))
}

fn is_empty_dir(path: &std::path::Path) -> Result<bool> {
    match std::fs::read_dir(path) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(Error::new(ErrorKind::Io, format!("reading {}: {e}", path.display()))),
    }
}

/// Runs recovery for `config` (all steps). Blocking.
pub fn recover(config: &Config, opts: &RecoverOptions) -> Result<RecoverReport> {
    let provider = config
        .provider
        .as_ref()
        .ok_or_else(|| Error::config("recovery needs the [provider] section (URL and device token)"))?;
    for s in &opts.shares {
        if !config.shares.contains_key(s) {
            return Err(Error::config(format!("there is no share {s:?} in the configuration")));
        }
    }
    let shares: Vec<(&String, &crate::config::ShareConfig)> =
        config.shares.iter().filter(|(n, _)| opts.shares.is_empty() || opts.shares.contains(n)).collect();
    // Refuse before pulling anything, so a mistake costs no download.
    if !opts.force && !opts.pull_only {
        for (name, share) in &shares {
            if !is_empty_dir(&share.path)? {
                return Err(Error::new(
                    ErrorKind::Io,
                    format!(
                        "share {name}: folder {} is not empty; nothing was changed (use --force to restore into it)",
                        share.path.display()
                    ),
                ));
            }
        }
    }
    let remote: DynStore = Arc::new(
        HttpStore::new(&provider.url, &provider.token()?).map_err(|e| Error::config(format!("provider: {e}")))?,
    );
    let local: DynStore = Arc::new(LocalStore::new(&config.repository.path));
    let (objects_pulled, bytes_pulled) = if opts.latest_only {
        let tags: Vec<String> = shares.iter().map(|(name, _)| share_tag(name)).collect();
        pull_latest(remote.clone(), local.as_ref(), config.repository.password()?.as_bytes(), &tags)?
    } else {
        pull(remote.as_ref(), local.as_ref())?
    };
    tracing::info!("pulled {objects_pulled} objects ({bytes_pulled} bytes) from {}", remote.location());
    let mut report = RecoverReport { objects_pulled, bytes_pulled, shares: Vec::new() };
    if opts.pull_only {
        return Ok(report);
    }
    let mut repo = Repository::open(local, config.repository.password()?.as_bytes())?;
    for problem in repo.load_index_for_reading()? {
        tracing::warn!("local repository index: {problem}");
    }
    let (all, _) = repo.snapshots()?;
    for (name, share) in shares {
        let tag = share_tag(name);
        let Some((id, snap)) = all.iter().filter(|(_, s)| s.tags.contains(&tag)).max_by_key(|(_, s)| s.time) else {
            tracing::warn!("share {name}: the provider has no snapshot of it; nothing restored");
            continue;
        };
        let ropts = RestoreOptions {
            target: share.path.clone(),
            subpath: Some(share.path.display().to_string()),
            overwrite: if opts.force { Overwrite::IfChanged } else { Overwrite::Never },
            ..RestoreOptions::default()
        };
        let out = restore(&repo, snap, &ropts, &RestoreProgress::default())
            .map_err(|e| Error::from(e).context(format!("share {name}: restoring snapshot {}", id.short())))?;
        if let Some(first) = out.errors.first() {
            return Err(Error::new(
                ErrorKind::Io,
                format!("share {name}: the restore is incomplete ({} problems; first: {first})", out.errors.len()),
            ));
        }
        report.shares.push(ShareRestored {
            share: name.clone(),
            snapshot: id.to_hex(),
            time: snap.time,
            files: out.files,
            bytes: out.bytes_written,
        });
    }
    Ok(report)
}
