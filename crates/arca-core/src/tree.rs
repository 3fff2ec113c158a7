//! Trees: one directory's entries with their full metadata (docs/format.md §"Trees").
//!
//! A tree is a blob: `version:u8 || postcard(Tree)`, nodes sorted by name bytes, so identical
//! directories make identical blobs and deduplicate. Names and symlink targets are raw bytes:
//! Unix file names need not be UTF-8.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::id::BlobId;

/// Tree encoding version.
pub const TREE_VERSION: u8 = 1;

/// A point in time with nanoseconds, as the file system reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
pub struct Timestamp {
    /// Seconds since the Unix epoch.
    pub secs: i64,
    /// Nanoseconds within the second.
    pub nanos: u32,
}

impl Timestamp {
    /// As a chrono time (for display).
    pub fn to_chrono(self) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::from_timestamp(self.secs, self.nanos).unwrap_or_default()
    }
}

/// What a node is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeKind {
    /// A regular file; its bytes are in `Node::content`.
    File,
    /// A directory; its entries are in the tree `Node::subtree`.
    Dir,
    /// A symbolic link to `target` (raw bytes).
    Symlink {
        /// Where the link points.
        target: Vec<u8>,
    },
    /// A named pipe.
    Fifo,
    /// A Unix socket (recorded, restored as nothing: sockets cannot be recreated by a file copy).
    Socket,
    /// A character device.
    CharDevice {
        /// Device number.
        rdev: u64,
    },
    /// A block device.
    BlockDevice {
        /// Device number.
        rdev: u64,
    },
}

/// One piece of a file's content, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContentRef {
    /// A stored blob of `length` bytes.
    Blob {
        /// The blob.
        id: BlobId,
        /// Its plaintext length.
        length: u32,
    },
    /// A run of zero bytes, restored as a hole (sparse files).
    Zeros {
        /// How many.
        length: u64,
    },
}

impl ContentRef {
    /// Bytes this piece covers.
    pub fn len(&self) -> u64 {
        match *self {
            ContentRef::Blob { length, .. } => length as u64,
            ContentRef::Zeros { length } => length,
        }
    }
    /// Whether it covers no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An extended attribute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Xattr {
    /// Name, raw bytes.
    pub name: Vec<u8>,
    /// Value, raw bytes.
    pub value: Vec<u8>,
}

/// One directory entry with its metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// File name, raw bytes (never contains `/` or NUL, never `.` or `..`).
    pub name: Vec<u8>,
    /// Type and type-specific data.
    pub kind: NodeKind,
    /// Permission and type bits (`st_mode`).
    pub mode: u32,
    /// Owner id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Owner name at backup time, if known.
    pub user: Option<String>,
    /// Group name at backup time, if known.
    pub group: Option<String>,
    /// Modification time.
    pub mtime: Timestamp,
    /// Access time.
    pub atime: Timestamp,
    /// Status change time (recorded for change detection; cannot be restored).
    pub ctime: Timestamp,
    /// Inode number at backup time (change detection, hard links).
    pub inode: u64,
    /// Device id at backup time.
    pub device: u64,
    /// Hard link count at backup time.
    pub links: u64,
    /// File size in bytes (regular files).
    pub size: u64,
    /// Extended attributes, sorted by name.
    pub xattrs: Vec<Xattr>,
    /// File content, in order (regular files).
    pub content: Vec<ContentRef>,
    /// The directory's tree (directories).
    pub subtree: Option<BlobId>,
}

impl Node {
    /// The name as text, with invalid UTF-8 replaced (for display only).
    pub fn name_lossy(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.name)
    }

    /// Whether this is a directory.
    pub fn is_dir(&self) -> bool {
        matches!(self.kind, NodeKind::Dir)
    }

    /// Whether this is a regular file.
    pub fn is_file(&self) -> bool {
        matches!(self.kind, NodeKind::File)
    }

    /// Every blob this node refers to: its subtree (directories) and its content blobs (files).
    pub fn blob_ids(&self) -> impl Iterator<Item = BlobId> + '_ {
        self.subtree.into_iter().chain(self.content.iter().filter_map(|c| match c {
            ContentRef::Blob { id, .. } => Some(*id),
            ContentRef::Zeros { .. } => None,
        }))
    }

    /// A one-letter type as `ls -l` shows it.
    pub fn type_char(&self) -> char {
        match self.kind {
            NodeKind::File => '-',
            NodeKind::Dir => 'd',
            NodeKind::Symlink { .. } => 'l',
            NodeKind::Fifo => 'p',
            NodeKind::Socket => 's',
            NodeKind::CharDevice { .. } => 'c',
            NodeKind::BlockDevice { .. } => 'b',
        }
    }
}

/// A directory listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Tree {
    /// Entries sorted by name bytes, no duplicates.
    pub nodes: Vec<Node>,
}

impl Tree {
    /// Encodes the tree as a blob's plaintext. Sorts the nodes first.
    pub fn encode(&mut self) -> Vec<u8> {
        self.nodes.sort_by(|a, b| a.name.cmp(&b.name));
        let mut out = vec![TREE_VERSION];
        out.extend_from_slice(&postcard::to_stdvec(&self).expect("tree serialises"));
        out
    }

    /// Decodes a tree blob, checking the rules of §"Trees" (sorted, unique, sane names).
    pub fn decode(bytes: &[u8]) -> Result<Tree> {
        if bytes.first() != Some(&TREE_VERSION) {
            return Err(Error::corrupt("tree has an unsupported version"));
        }
        let tree: Tree =
            postcard::from_bytes(&bytes[1..]).map_err(|e| Error::corrupt(format!("tree is malformed: {e}")))?;
        for pair in tree.nodes.windows(2) {
            if pair[0].name >= pair[1].name {
                return Err(Error::corrupt("tree entries are not sorted or not unique"));
            }
        }
        for n in &tree.nodes {
            if n.name.is_empty() || n.name == b"." || n.name == b".." || n.name.contains(&b'/') || n.name.contains(&0) {
                return Err(Error::corrupt(format!("tree holds an unsafe file name {:?}", n.name_lossy())));
            }
            if n.is_dir() != n.subtree.is_some() {
                return Err(Error::corrupt(format!("tree entry {:?} has an inconsistent type", n.name_lossy())));
            }
        }
        Ok(tree)
    }

    /// Finds an entry by name.
    pub fn find(&self, name: &[u8]) -> Option<&Node> {
        self.nodes.binary_search_by(|n| n.name.as_slice().cmp(name)).ok().map(|i| &self.nodes[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn node(name: &[u8]) -> Node {
        Node {
            name: name.to_vec(),
            kind: NodeKind::File,
            mode: 0o100644,
            uid: 1000,
            gid: 1000,
            user: Some("u".into()),
            group: None,
            mtime: Timestamp { secs: 1_700_000_000, nanos: 123 },
            atime: Timestamp::default(),
            ctime: Timestamp::default(),
            inode: 5,
            device: 1,
            links: 1,
            size: 3,
            xattrs: vec![Xattr { name: b"user.x".to_vec(), value: vec![0, 255] }],
            content: vec![ContentRef::Blob { id: BlobId([3; 32]), length: 3 }, ContentRef::Zeros { length: 9 }],
            subtree: None,
        }
    }

    #[test]
    fn unsafe_names_are_refused() {
        for bad in [&b".."[..], b"a/b", b"", b"x\0"] {
            let mut t = Tree { nodes: vec![node(bad)] };
            assert!(Tree::decode(&t.encode()).is_err());
        }
    }

    proptest! {
        #[test]
        fn round_trip(names in proptest::collection::btree_set(proptest::collection::vec(1u8..=255, 1..20), 0..20)) {
            let names: Vec<Vec<u8>> = names.into_iter().filter(|n| !n.contains(&b'/') && n != b"." && n != b"..").collect();
            let mut t = Tree { nodes: names.iter().rev().map(|n| node(n)).collect() };
            let bytes = t.encode();
            let back = Tree::decode(&bytes).unwrap();
            prop_assert_eq!(&back, &t);
            for n in &names {
                prop_assert!(back.find(n).is_some());
            }
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Tree::decode(&bytes);
        }
    }
}
