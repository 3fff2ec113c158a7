//! `repair index`: rebuilds index entries from the packs themselves.
//!
//! Every pack repeats its blob list in its encrypted header (§"Packs"), so a damaged or lost index
//! file loses nothing: this reads the header of every pack no readable index file covers, stores
//! new index files for them, and only then deletes the damaged index files (§"Write ordering":
//! new index before old is removed). Safe beside running backups: indexing a pack twice is
//! harmless, and nothing but damaged index files is deleted.

use std::collections::HashSet;

use arca_store::ObjectKind;
use rayon::prelude::*;
use serde::Serialize;

use crate::error::Result;
use crate::id::{content_hash, PackId};
use crate::index::{decode_index, IndexPack};
use crate::lock::LockGuard;
use crate::pack::read_header;
use crate::repository::Repository;

/// What repair did.
#[derive(Debug, Default, Serialize)]
pub struct RepairReport {
    /// Damaged index files removed (after their packs were re-indexed).
    pub index_files_removed: Vec<String>,
    /// Packs whose headers were read into new index files.
    pub packs_reindexed: u64,
    /// Index files written.
    pub index_files_written: u64,
    /// Packs that could not be re-indexed (damaged beyond their header), with the reason.
    pub packs_unreadable: Vec<(PackId, String)>,
}

/// Rebuilds the index for every pack that no readable index file covers.
pub fn repair_index(repo: &mut Repository) -> Result<RepairReport> {
    let _lock = LockGuard::acquire(repo.store().clone(), "repair-index")?;
    let mut report = RepairReport::default();
    let mut covered: HashSet<PackId> = HashSet::new();
    let mut damaged: Vec<String> = Vec::new();
    for info in repo.store().list(ObjectKind::Index)? {
        let ok = repo
            .store()
            .get(ObjectKind::Index, &info.name)
            .ok()
            .filter(|b| hex::encode(content_hash(b)) == info.name)
            .and_then(|b| decode_index(repo.key(), &b).ok());
        match ok {
            Some(packs) => covered.extend(packs.iter().map(|p| p.id)),
            None => damaged.push(info.name),
        }
    }
    let existing = repo.list_packs()?;
    let todo: Vec<(PackId, crate::pack::PackKind)> =
        existing.iter().filter(|(id, _)| !covered.contains(id)).map(|(id, (k, _))| (*id, *k)).collect();
    let key = repo.key().clone();
    let store = repo.store().clone();
    let results: Vec<std::result::Result<IndexPack, (PackId, String)>> = todo
        .par_iter()
        .map(|(id, kind)| {
            let bytes = store.get(kind.object_kind(), &id.to_hex()).map_err(|e| (*id, e.to_string()))?;
            if content_hash(&bytes) != id.0 {
                return Err((*id, "its content does not match its name".into()));
            }
            let (blobs, salt) = read_header(&key, &bytes).map_err(|e| (*id, e.to_string()))?;
            Ok(IndexPack { id: *id, kind: *kind, salt, size: bytes.len() as u64, blobs })
        })
        .collect();
    let mut packs = Vec::new();
    for r in results {
        match r {
            Ok(p) => packs.push(p),
            Err(e) => report.packs_unreadable.push(e),
        }
    }
    report.packs_reindexed = packs.len() as u64;
    for chunk in packs.chunks(4096) {
        repo.write_index(chunk)?;
        report.index_files_written += 1;
    }
    for name in damaged {
        repo.store().delete(ObjectKind::Index, &name)?;
        report.index_files_removed.push(name);
    }
    Ok(report)
}
