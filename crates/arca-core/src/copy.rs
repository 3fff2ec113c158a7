//! `copy`: moves snapshots between two repositories that share key material, byte for byte.
//!
//! Packs and snapshot objects are copied verbatim (same bytes, same names), so nothing is
//! decrypted or re-encrypted and the target can verify every object by its name. Steps per
//! snapshot: copy each pack of its manifest the target lacks (verifying its hash), store an
//! index file for them, then the snapshot object itself (§"Write ordering").

use std::collections::HashSet;

use arca_store::ObjectKind;
use serde::Serialize;

use crate::error::{Error, ErrorKind, Result};
use crate::id::{content_hash, SnapshotId};
use crate::index::IndexPack;
use crate::lock::LockGuard;
use crate::repository::Repository;

/// What copy did.
#[derive(Debug, Default, Serialize)]
pub struct CopyReport {
    /// Snapshots copied.
    pub snapshots_copied: u64,
    /// Snapshots the target already had.
    pub snapshots_skipped: u64,
    /// Packs copied.
    pub packs_copied: u64,
    /// Bytes copied.
    pub bytes_copied: u64,
}

/// Copies `ids` (all snapshots if empty) from `src` to `dst`.
pub fn copy_snapshots(src: &mut Repository, dst: &mut Repository, ids: &[SnapshotId]) -> Result<CopyReport> {
    if src.key().blob_id(b"arca key check") != dst.key().blob_id(b"arca key check") {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            "the two repositories do not share key material; create the target with `arca init --copy-key-from SOURCE`",
        ));
    }
    let lock = LockGuard::acquire(dst.store().clone(), "copy")?;
    let marked = crate::pending::marked_packs(dst.store())?;
    for w in &marked.warnings {
        tracing::warn!("{w}");
    }
    src.load_index_for_reading()?;
    if let Some(e) = dst.load_index_for_reading()?.into_iter().next() {
        return Err(e.context("the target's index is damaged; run `arca repair index` on it first"));
    }
    let ids: Vec<SnapshotId> =
        if ids.is_empty() { src.snapshots()?.0.into_iter().map(|(id, _)| id).collect() } else { ids.to_vec() };
    let mut report = CopyReport::default();
    let entries = src.index().entries_by_pack();
    let mut indexed_in_dst: HashSet<_> =
        dst.index().packs().iter().map(|p| p.id).filter(|p| !marked.contains(p)).collect();
    for id in ids {
        if dst.store().stat(ObjectKind::Snapshot, &id.to_hex())?.is_some() {
            report.snapshots_skipped += 1;
            continue;
        }
        let bytes = src.store().get(ObjectKind::Snapshot, &id.to_hex())?;
        let (_, manifest) =
            crate::snapshot::Snapshot::decode(src.key(), &bytes).map_err(|e| e.context(format!("snapshot {id}")))?;
        let mut new_index: Vec<IndexPack> = Vec::new();
        for (kind, pack) in &manifest {
            if indexed_in_dst.contains(pack) {
                continue;
            }
            let name = pack.to_hex();
            let present = dst.store().stat(kind.object_kind(), &name)?.is_some();
            if present && marked.contains(pack) {
                // Re-uploading it under the same name would not stop the running prune from
                // deleting it: wait for that prune instead. (A marked pack that is gone was
                // deleted already; prune deletes each pack once, so storing it again is safe.)
                return Err(Error::new(
                    ErrorKind::Locked,
                    format!("pack {pack} is being pruned in the target; run copy again when that prune has finished"),
                ));
            }
            if !present {
                let data = src.store().get(kind.object_kind(), &name)?;
                if content_hash(&data) != pack.0 {
                    return Err(Error::corrupt(format!("pack {pack} in the source is damaged (its hash does not match); run `arca check --read-data` there")));
                }
                dst.store().put(kind.object_kind(), &name, &data)?;
                report.packs_copied += 1;
                report.bytes_copied += data.len() as u64;
            }
            let pos = src.index().packs().iter().position(|p| p.id == *pack).ok_or_else(|| {
                Error::new(ErrorKind::Missing, format!("pack {pack} of snapshot {id} is not in the source's index"))
            })?;
            let info = &src.index().packs()[pos];
            new_index.push(IndexPack {
                id: info.id,
                kind: info.kind,
                salt: info.salt,
                size: info.size,
                blobs: entries.get(&(pos as u32)).cloned().unwrap_or_default(),
            });
            indexed_in_dst.insert(*pack);
        }
        if !new_index.is_empty() {
            dst.write_index(&new_index)?;
        }
        lock.ensure_continuous()?;
        dst.store().put(ObjectKind::Snapshot, &id.to_hex(), &bytes)?;
        report.snapshots_copied += 1;
    }
    Ok(report)
}
