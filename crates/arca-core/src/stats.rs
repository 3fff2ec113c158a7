//! `stats`: sizes of snapshots and of the repository.

use std::collections::HashSet;
use std::path::Path;

use serde::Serialize;

use crate::error::Result;
use crate::id::{BlobId, SnapshotId};
use crate::repository::Repository;
use crate::snapshot::Snapshot;
use crate::walk::{walk, Visit};

/// Figures.
#[derive(Debug, Default, Serialize)]
pub struct Stats {
    /// Snapshots counted.
    pub snapshots: u64,
    /// Files in them (counted once per snapshot).
    pub files: u64,
    /// Bytes a full restore of all of them would write.
    pub restore_size: u64,
    /// Distinct blobs they reference.
    pub unique_blobs: u64,
    /// Plaintext bytes of those blobs (after deduplication, before compression).
    pub raw_data: u64,
    /// Bytes those blobs take in packs (after compression and encryption).
    pub stored_size: u64,
    /// Packs in the repository.
    pub packs: u64,
    /// Bytes of all packs in the repository.
    pub repository_size: u64,
    /// `raw_data / stored_size`.
    pub compression_ratio: f64,
}

/// Computes statistics over `snapshots` (the index must be loaded).
pub fn stats(repo: &Repository, snapshots: &[(SnapshotId, Snapshot)]) -> Result<Stats> {
    let mut s = Stats { snapshots: snapshots.len() as u64, ..Default::default() };
    let mut blobs: HashSet<BlobId> = HashSet::new();
    for (_, snap) in snapshots {
        blobs.insert(snap.tree);
        walk(
            repo,
            &snap.tree,
            Path::new("/"),
            &mut |_, node| {
                blobs.extend(node.blob_ids());
                if node.is_file() {
                    s.files += 1;
                    s.restore_size += node.size;
                }
                Ok(Visit::Continue)
            },
            &mut |_, _, _| Ok(()),
        )?;
    }
    s.unique_blobs = blobs.len() as u64;
    for id in &blobs {
        if let Some((_, loc)) = repo.index().get(id) {
            s.raw_data += loc.raw_length() as u64;
            s.stored_size += loc.length as u64;
        }
    }
    s.packs = repo.index().packs().len() as u64;
    s.repository_size = repo.index().packs().iter().map(|p| p.size).sum();
    s.compression_ratio = if s.stored_size > 0 { s.raw_data as f64 / s.stored_size as f64 } else { 0.0 };
    Ok(s)
}
