//! Snapshots: what was backed up, when, from where (docs/format.md §"Snapshots").
//!
//! Stored as an envelope (`ARCASNAP`) whose plaintext manifest lists every pack the snapshot
//! needs, data and metadata, and whose encrypted body is `version:u8 || postcard(Snapshot)`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::crypto::MasterKey;
use crate::envelope;
use crate::error::{Error, Result};
use crate::id::{BlobId, PackId, SnapshotId};
use crate::pack::PackKind;

/// Envelope magic of snapshots.
pub const SNAPSHOT_MAGIC: &[u8; 8] = b"ARCASNAP";
/// Snapshot body version.
pub const SNAPSHOT_VERSION: u8 = 1;

/// Figures about the backup run that made a snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// When the run started.
    pub backup_start: Option<DateTime<Utc>>,
    /// When it ended.
    pub backup_end: Option<DateTime<Utc>>,
    /// Files not seen in the parent.
    pub files_new: u64,
    /// Files changed since the parent.
    pub files_changed: u64,
    /// Files skipped as unchanged (not read).
    pub files_unmodified: u64,
    /// Directories.
    pub dirs: u64,
    /// Other entries (symlinks, devices, fifos).
    pub others: u64,
    /// Bytes of all files in the snapshot.
    pub total_bytes: u64,
    /// Bytes of file content read in this run.
    pub bytes_read: u64,
    /// Plaintext bytes of blobs that were new to the repository.
    pub data_added: u64,
    /// Stored bytes those new blobs took (after compression and encryption).
    pub data_added_packed: u64,
    /// Blobs added.
    pub blobs_added: u64,
    /// Files or directories that could not be read (the backup finished without them).
    pub errors: u64,
}

/// One snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// When the backup was taken (client clock).
    pub time: DateTime<Utc>,
    /// The root tree: one entry per backed-up path.
    pub tree: BlobId,
    /// The paths given to `backup`, absolute.
    pub paths: Vec<String>,
    /// Host name.
    pub hostname: String,
    /// User who ran the backup.
    pub username: String,
    /// Tags.
    pub tags: Vec<String>,
    /// The snapshot this one was compared with.
    pub parent: Option<SnapshotId>,
    /// Figures about the run.
    pub summary: Summary,
    /// The arca version that wrote it.
    pub program_version: String,
}

impl Snapshot {
    /// Seals the snapshot with its manifest of needed packs.
    pub fn encode(&self, master: &MasterKey, packs: &[(PackKind, PackId)]) -> Vec<u8> {
        let mut body = vec![SNAPSHOT_VERSION];
        body.extend_from_slice(&postcard::to_stdvec(self).expect("snapshot serialises"));
        envelope::seal_with_logical(master, SNAPSHOT_MAGIC, packs, self.summary.total_bytes, &body)
    }

    /// Opens a stored snapshot.
    pub fn decode(master: &MasterKey, bytes: &[u8]) -> Result<(Snapshot, Vec<(PackKind, PackId)>)> {
        let (packs, body) = envelope::open(master, SNAPSHOT_MAGIC, bytes)?;
        if body.first() != Some(&SNAPSHOT_VERSION) {
            return Err(Error::corrupt("unsupported snapshot version"));
        }
        let snap =
            postcard::from_bytes(&body[1..]).map_err(|e| Error::corrupt(format!("snapshot is malformed: {e}")))?;
        Ok((snap, packs))
    }

    /// Whether the snapshot has every tag in `tags` (empty: yes).
    pub fn has_tags(&self, tags: &[String]) -> bool {
        tags.iter().all(|t| self.tags.contains(t))
    }
}
