//! Snapshots of an arca repository as a read-only FUSE file system.
//!
//! Two programs mount snapshots: `arca mount` (a fixed layout of every snapshot, built once) and
//! the office appliance, whose previous versions Samba reads as `@GMT-…` directories while new
//! snapshots are taken and old ones pruned. Both are one [`SnapshotFs`]: a table of inodes whose
//! snapshot directories are listed from the repository when first looked at, plus *dynamic*
//! directories whose entries a [`Source`] lists afresh on every look, so snapshots come and go
//! without a remount.
//!
//! File reads go through a bounded blob cache ([`arca_core::reader`]), so a large file streams
//! without being restored. The FUSE session runs on one thread; the inode table sits behind a
//! mutex that is never held while file data is read.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arca_core::id::BlobId;
use arca_core::reader::{BlobCache, ContentMap};
use arca_core::repository::Repository;
use arca_core::tree::{Node, NodeKind, Timestamp, Xattr};
use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, Generation, INodeNo, LockOwner, MountOption, OpenFlags,
    ReplyAttr, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyXattr, Request,
};

/// Why a mount could not be made.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// The mount point is missing, not a directory, not empty or mounted on.
    #[error("the mount point {path} {problem}")]
    MountPoint {
        /// The mount point.
        path: PathBuf,
        /// What is wrong with it, and what to do.
        problem: String,
    },
    /// No `/dev/fuse`.
    #[error("FUSE is not available: /dev/fuse is missing (load the fuse module, or run the container with it)")]
    NoFuse,
    /// The kernel or fusermount3 refused the mount.
    #[error("mounting at {path} (is fusermount3 installed? Debian package fuse3): {source}")]
    Mount {
        /// The mount point.
        path: PathBuf,
        /// What the mount said.
        source: std::io::Error,
    },
}

/// Where a [`SnapshotFs`] reads from, and what its dynamic directories hold now.
pub trait Source: Send + Sync + 'static {
    /// Runs `f` with the repository (index loaded) that trees and file data are read from now.
    fn with_repository<T>(&self, f: impl FnOnce(&Repository) -> T) -> T;

    /// The entries of the dynamic directory added with key `key`, as they are now. Sources with
    /// no dynamic directories keep the default.
    fn list(&self, _key: u64) -> Vec<Listed> {
        Vec::new()
    }
}

/// One entry of a dynamic directory: a snapshot's tree, or another dynamic directory, under a name.
#[derive(Debug, Clone)]
pub struct Listed {
    /// Its name in the directory.
    pub name: Vec<u8>,
    /// What stays the same while the entry exists (the snapshot id): the entry keeps its inode
    /// and everything already listed under it across listings.
    pub stable: String,
    /// What the entry shows.
    pub target: Target,
    /// The directory's time.
    pub time: SystemTime,
}

/// What an entry of a dynamic directory shows.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    /// A snapshot's tree.
    Tree(BlobId),
    /// A dynamic directory whose entries [`Source::list`] gives for this key.
    Dynamic(u64),
}

/// How long the kernel may trust what it was told, for fixed entries.
const TTL: Duration = Duration::from_secs(60);
/// The same for dynamic directories and their entries, which come and go.
const DYNAMIC_TTL: Duration = Duration::from_secs(1);

enum Kind {
    /// A directory whose entries are known: name → inode.
    Dir(BTreeMap<Vec<u8>, u64>),
    /// A snapshot directory not listed yet.
    Tree(BlobId),
    /// A directory listed by the source on every look.
    Dynamic {
        key: u64,
        children: BTreeMap<Vec<u8>, u64>,
    },
    Symlink(Vec<u8>),
    File(Arc<ContentMap>),
    Other,
}

struct Inode {
    parent: u64,
    name: Vec<u8>,
    kind: Kind,
    attr: FileAttr,
    xattrs: Vec<Xattr>,
    /// A dynamic directory or one of its entries: short TTL.
    dynamic: bool,
}

#[derive(Default)]
struct Table {
    inodes: Vec<Inode>,
    /// Inodes of dynamic entries by (directory key, stable id).
    stable: HashMap<(u64, String), u64>,
}

impl Table {
    fn get(&self, ino: u64) -> Option<&Inode> {
        ino.checked_sub(1).and_then(|i| self.inodes.get(i as usize))
    }

    fn push(&mut self, mut inode: Inode) -> u64 {
        let ino = self.inodes.len() as u64 + 1;
        inode.attr.ino = INodeNo(ino);
        self.inodes.push(inode);
        ino
    }

    fn path_of(&self, mut ino: u64) -> String {
        let mut parts = Vec::new();
        while ino > 1 {
            let Some(n) = self.get(ino) else { break };
            parts.push(String::from_utf8_lossy(&n.name).into_owned());
            ino = n.parent;
        }
        parts.reverse();
        format!("/{}", parts.join("/"))
    }
}

/// The fixed part of a [`SnapshotFs`], built before mounting. Inode 1 is the root.
pub struct Builder {
    table: Table,
}

/// The attributes of a directory of ours (not of a snapshot): read-only, owned by root.
pub fn dir_attr(time: SystemTime) -> FileAttr {
    FileAttr {
        ino: INodeNo(0),
        size: 0,
        blocks: 0,
        atime: time,
        mtime: time,
        ctime: time,
        crtime: time,
        kind: FileType::Directory,
        perm: 0o555,
        nlink: 2,
        uid: 0,
        gid: 0,
        rdev: 0,
        flags: 0,
        blksize: 4096,
    }
}

fn link_attr(target: &[u8], time: SystemTime) -> FileAttr {
    FileAttr { size: target.len() as u64, kind: FileType::Symlink, perm: 0o777, nlink: 1, ..dir_attr(time) }
}

fn system_time(t: Timestamp) -> SystemTime {
    if t.secs >= 0 {
        UNIX_EPOCH + Duration::new(t.secs as u64, t.nanos)
    } else {
        UNIX_EPOCH
    }
}

fn node_attr(node: &Node) -> FileAttr {
    let kind = match node.kind {
        NodeKind::File => FileType::RegularFile,
        NodeKind::Dir => FileType::Directory,
        NodeKind::Symlink { .. } => FileType::Symlink,
        NodeKind::Fifo => FileType::NamedPipe,
        NodeKind::Socket => FileType::Socket,
        NodeKind::CharDevice { .. } => FileType::CharDevice,
        NodeKind::BlockDevice { .. } => FileType::BlockDevice,
    };
    let size = match &node.kind {
        NodeKind::Symlink { target } => target.len() as u64,
        _ => node.size,
    };
    let rdev = match node.kind {
        NodeKind::CharDevice { rdev } | NodeKind::BlockDevice { rdev } => rdev as u32,
        _ => 0,
    };
    let mtime = system_time(node.mtime);
    FileAttr {
        ino: INodeNo(0),
        size,
        blocks: size.div_ceil(512),
        atime: mtime,
        mtime,
        ctime: system_time(node.ctime),
        crtime: mtime,
        kind,
        perm: (node.mode & 0o7777) as u16,
        nlink: if node.is_dir() { 2 } else { 1 },
        uid: node.uid,
        gid: node.gid,
        rdev,
        flags: 0,
        blksize: 4096,
    }
}

impl Default for Builder {
    fn default() -> Self {
        Self::new()
    }
}

impl Builder {
    /// The root directory alone.
    pub fn new() -> Builder {
        let mut table = Table::default();
        table.push(Inode {
            parent: 1,
            name: Vec::new(),
            kind: Kind::Dir(BTreeMap::new()),
            attr: dir_attr(SystemTime::now()),
            xattrs: Vec::new(),
            dynamic: false,
        });
        Builder { table }
    }

    /// The inode of the root directory.
    pub const ROOT: u64 = 1;

    fn add(&mut self, parent: u64, name: &[u8], kind: Kind, attr: FileAttr, dynamic: bool) -> u64 {
        let ino = self.table.push(Inode { parent, name: name.to_vec(), kind, attr, xattrs: Vec::new(), dynamic });
        if let Some(Kind::Dir(children)) = self.table.inodes.get_mut(parent as usize - 1).map(|i| &mut i.kind) {
            children.insert(name.to_vec(), ino);
        }
        ino
    }

    /// Whether `parent` already holds `name`.
    pub fn contains(&self, parent: u64, name: &[u8]) -> bool {
        matches!(self.table.get(parent).map(|i| &i.kind), Some(Kind::Dir(c)) if c.contains_key(name))
    }

    /// A directory of ours under `parent`.
    pub fn dir(&mut self, parent: u64, name: &[u8], time: SystemTime) -> u64 {
        self.add(parent, name, Kind::Dir(BTreeMap::new()), dir_attr(time), false)
    }

    /// A snapshot's tree under `parent`, listed when first looked at.
    pub fn tree(&mut self, parent: u64, name: &[u8], tree: BlobId, time: SystemTime) -> u64 {
        self.add(parent, name, Kind::Tree(tree), dir_attr(time), false)
    }

    /// A symbolic link under `parent`.
    pub fn symlink(&mut self, parent: u64, name: &[u8], target: &[u8], time: SystemTime) -> u64 {
        self.add(parent, name, Kind::Symlink(target.to_vec()), link_attr(target, time), false)
    }

    /// A directory whose entries [`Source::list`] gives for `key` on every look.
    pub fn dynamic(&mut self, parent: u64, name: &[u8], key: u64) -> u64 {
        let kind = Kind::Dynamic { key, children: BTreeMap::new() };
        self.add(parent, name, kind, dir_attr(SystemTime::now()), true)
    }

    /// The file system, reading through a cache of at most `cache_bytes` of blobs.
    pub fn build<S: Source>(self, source: S, cache_bytes: usize) -> SnapshotFs<S> {
        SnapshotFs { source, cache: BlobCache::new(cache_bytes), table: Mutex::new(self.table) }
    }
}

/// Snapshots as a read-only file system; mount it with [`mount`].
pub struct SnapshotFs<S: Source> {
    source: S,
    cache: BlobCache,
    table: Mutex<Table>,
}

impl<S: Source> SnapshotFs<S> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes sure `ino`'s entries are known: lists a snapshot directory on first use and a
    /// dynamic directory on every use. Holds the lock while the tree is read: the session is
    /// single-threaded, so nothing waits on it.
    fn ensure_listed(&self, table: &mut Table, ino: u64) -> Result<(), Errno> {
        let Some(inode) = table.get(ino) else { return Err(Errno::ENOENT) };
        let idx = ino as usize - 1;
        match inode.kind {
            Kind::Dir(_) => Ok(()),
            Kind::Tree(tree_id) => {
                let tree = self.source.with_repository(|repo| repo.load_tree(&tree_id)).map_err(|e| {
                    tracing::error!("listing {}: {e}", table.path_of(ino));
                    Errno::EIO
                })?;
                let mut children = BTreeMap::new();
                for node in tree.nodes {
                    let attr = node_attr(&node);
                    let kind = match &node.kind {
                        NodeKind::Dir => match node.subtree {
                            Some(id) => Kind::Tree(id),
                            None => Kind::Dir(BTreeMap::new()),
                        },
                        NodeKind::File => Kind::File(Arc::new(ContentMap::new(node.content.clone()))),
                        NodeKind::Symlink { target } => Kind::Symlink(target.clone()),
                        _ => Kind::Other,
                    };
                    let name = node.name.clone();
                    let child = table.push(Inode {
                        parent: ino,
                        name: node.name,
                        kind,
                        attr,
                        xattrs: node.xattrs,
                        dynamic: false,
                    });
                    children.insert(name, child);
                }
                table.inodes[idx].kind = Kind::Dir(children);
                Ok(())
            }
            Kind::Dynamic { key, .. } => {
                let listed = self.source.list(key);
                let mut children = BTreeMap::new();
                for entry in listed {
                    let child = match table.stable.get(&(key, entry.stable.clone())) {
                        Some(&child) => child,
                        None => {
                            let kind = match entry.target {
                                Target::Tree(tree) => Kind::Tree(tree),
                                Target::Dynamic(key) => Kind::Dynamic { key, children: BTreeMap::new() },
                            };
                            let child = table.push(Inode {
                                parent: ino,
                                name: entry.name.clone(),
                                kind,
                                attr: dir_attr(entry.time),
                                xattrs: Vec::new(),
                                dynamic: true,
                            });
                            table.stable.insert((key, entry.stable), child);
                            child
                        }
                    };
                    children.insert(entry.name, child);
                }
                table.inodes[idx].kind = Kind::Dynamic { key, children };
                Ok(())
            }
            _ => Err(Errno::ENOTDIR),
        }
    }
}

fn ttl(inode: &Inode) -> &'static Duration {
    if inode.dynamic {
        &DYNAMIC_TTL
    } else {
        &TTL
    }
}

impl<S: Source> Filesystem for SnapshotFs<S> {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let mut table = self.lock();
        if let Err(e) = self.ensure_listed(&mut table, parent.0) {
            return reply.error(e);
        }
        let found = match table.get(parent.0).map(|i| &i.kind) {
            Some(Kind::Dir(children) | Kind::Dynamic { children, .. }) => children.get(name.as_bytes()).copied(),
            _ => None,
        };
        match found.and_then(|ino| table.get(ino)) {
            Some(inode) => reply.entry(ttl(inode), &inode.attr, Generation(0)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.lock().get(ino.0) {
            Some(i) => reply.attr(ttl(i), &i.attr),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.lock().get(ino.0).map(|i| &i.kind) {
            Some(Kind::Symlink(target)) => reply.data(target),
            Some(_) => reply.error(Errno::EINVAL),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let map = match self.lock().get(ino.0).map(|i| &i.kind) {
            Some(Kind::File(map)) => map.clone(),
            Some(Kind::Dir(_) | Kind::Tree(_) | Kind::Dynamic { .. }) => return reply.error(Errno::EISDIR),
            Some(_) => return reply.error(Errno::EINVAL),
            None => return reply.error(Errno::ENOENT),
        };
        let mut buf = vec![0u8; size.min(16 << 20) as usize];
        match self.source.with_repository(|repo| map.read_at(repo, &self.cache, offset, &mut buf)) {
            Ok(n) => reply.data(&buf[..n]),
            Err(e) => {
                tracing::error!("reading {} at offset {offset}: {e}", self.lock().path_of(ino.0));
                reply.error(Errno::EIO)
            }
        }
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let table = self.lock();
        let Some(inode) = table.get(ino.0) else { return reply.error(Errno::ENOENT) };
        match inode.xattrs.iter().find(|x| x.name == name.as_bytes()) {
            None => reply.error(Errno::NO_XATTR),
            Some(x) if size == 0 => reply.size(x.value.len() as u32),
            Some(x) if (size as usize) < x.value.len() => reply.error(Errno::ERANGE),
            Some(x) => reply.data(&x.value),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let table = self.lock();
        let Some(inode) = table.get(ino.0) else { return reply.error(Errno::ENOENT) };
        let mut names = Vec::new();
        for x in &inode.xattrs {
            names.extend_from_slice(&x.name);
            names.push(0);
        }
        if size == 0 {
            reply.size(names.len() as u32)
        } else if (size as usize) < names.len() {
            reply.error(Errno::ERANGE)
        } else {
            reply.data(&names)
        }
    }

    fn flush(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        reply.ok();
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let mut table = self.lock();
        // A dynamic directory is listed afresh only when a listing starts, so that the offsets
        // of one listing stay consistent.
        let dynamic = matches!(table.get(ino.0).map(|i| &i.kind), Some(Kind::Dynamic { .. }));
        if offset == 0 || !dynamic {
            if let Err(e) = self.ensure_listed(&mut table, ino.0) {
                return reply.error(e);
            }
        }
        let Some(inode) = table.get(ino.0) else { return reply.error(Errno::ENOENT) };
        let children = match &inode.kind {
            Kind::Dir(children) | Kind::Dynamic { children, .. } => children,
            _ => return reply.error(Errno::ENOTDIR),
        };
        let mut entries: Vec<(u64, FileType, &[u8])> =
            vec![(ino.0, FileType::Directory, b"."), (inode.parent, FileType::Directory, b"..")];
        for (name, &child) in children {
            let kind = table.get(child).map(|c| c.attr.kind).unwrap_or(FileType::RegularFile);
            entries.push((child, kind, name));
        }
        for (i, (child, kind, name)) in entries.into_iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(child), (i + 1) as u64, kind, OsStr::from_bytes(name)) {
                break;
            }
        }
        reply.ok();
    }
}

/// A mount point must be an existing, empty directory that is not itself mounted on.
pub fn check_mount_point(path: &Path) -> Result<(), MountError> {
    let problem = |problem: String| MountError::MountPoint { path: path.to_path_buf(), problem };
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(problem("does not exist: create an empty directory first".into()))
        }
        // ENOTCONN: a FUSE mount whose process died is still there.
        Err(e) => return Err(problem(format!("is unusable (a stale mount? try `fusermount3 -u`): {e}"))),
    };
    if !meta.is_dir() {
        return Err(problem("is not a directory".into()));
    }
    let parent = path.parent().unwrap_or(Path::new("/"));
    let parent_meta = std::fs::metadata(parent).map_err(|e| problem(format!("has an unreadable parent: {e}")))?;
    if parent_meta.dev() != meta.dev() || parent_meta.ino() == meta.ino() {
        return Err(problem("is busy: something is already mounted there".into()));
    }
    let mut entries = std::fs::read_dir(path).map_err(|e| problem(format!("cannot be listed: {e}")))?;
    if entries.next().is_some() {
        return Err(problem("is busy: it is not empty".into()));
    }
    Ok(())
}

/// Mounts `fs` read-only at `mount_point` (checked with [`check_mount_point`]) on a thread of its
/// own; dropping or unmounting the session ends it.
pub fn mount<S: Source>(
    fs: SnapshotFs<S>,
    mount_point: &Path,
    fs_name: &str,
) -> Result<fuser::BackgroundSession, MountError> {
    check_mount_point(mount_point)?;
    if !Path::new("/dev/fuse").exists() {
        return Err(MountError::NoFuse);
    }
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        MountOption::RO,
        MountOption::FSName(fs_name.into()),
        MountOption::Subtype("arca".into()),
        MountOption::DefaultPermissions,
        MountOption::NoDev,
        MountOption::NoSuid,
    ];
    fuser::spawn_mount(fs, mount_point, &config)
        .map_err(|source| MountError::Mount { path: mount_point.to_path_buf(), source })
}
