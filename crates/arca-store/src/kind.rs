//! The kinds of objects a repository holds, and where each kind lives.

/// What an object is. Each kind has its own namespace (a directory on disk, a key prefix in S3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectKind {
    /// The repository's plaintext configuration (one object named `config`).
    Config,
    /// Key slots: the master key wrapped under a password-derived key.
    Key,
    /// Packs of file-content blobs.
    DataPack,
    /// Packs of tree blobs (directory listings): small, read by every listing and check.
    MetaPack,
    /// Index files: which blob lives where.
    Index,
    /// Snapshots, each with its server-visible manifest.
    Snapshot,
    /// Locks held by running operations.
    Lock,
    /// Pending-deletion marks written by the first phase of prune.
    Pending,
}

impl ObjectKind {
    /// Every kind, in the order a copy or listing should visit them.
    pub const ALL: [ObjectKind; 8] = [
        ObjectKind::Config,
        ObjectKind::Key,
        ObjectKind::DataPack,
        ObjectKind::MetaPack,
        ObjectKind::Index,
        ObjectKind::Snapshot,
        ObjectKind::Lock,
        ObjectKind::Pending,
    ];

    /// The directory (or key prefix) that holds this kind.
    pub fn dir(self) -> &'static str {
        match self {
            ObjectKind::Config => "",
            ObjectKind::Key => "keys",
            ObjectKind::DataPack => "data",
            ObjectKind::MetaPack => "meta",
            ObjectKind::Index => "index",
            ObjectKind::Snapshot => "snapshots",
            ObjectKind::Lock => "locks",
            ObjectKind::Pending => "pending",
        }
    }

    /// Whether objects of this kind are spread over 256 subdirectories by their first two hex
    /// digits (packs can number in the millions; one directory would be slow to list).
    pub fn is_fanned_out(self) -> bool {
        matches!(self, ObjectKind::DataPack | ObjectKind::MetaPack)
    }

    /// Parses the name used in URLs and messages (`data`, `meta`, `index`, ...).
    pub fn from_dir(s: &str) -> Option<ObjectKind> {
        ObjectKind::ALL.into_iter().find(|k| k.dir() == s && !s.is_empty()).or(if s == "config" {
            Some(ObjectKind::Config)
        } else {
            None
        })
    }
}

impl std::fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ObjectKind::Config => f.write_str("config"),
            other => f.write_str(other.dir()),
        }
    }
}
