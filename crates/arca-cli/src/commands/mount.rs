//! `arca mount`: the repository's snapshots as a read-only FUSE file system.
//!
//! Layout: `snapshots/<id>/…` (each snapshot's tree; `snapshots/latest` links to the newest),
//! `hosts/<host>/<time>` (links into `snapshots/`; `hosts/<host>/latest` links to the host's
//! newest). Directories of a snapshot are loaded from the repository when first looked at; file
//! reads go through a bounded cache of blobs ([`arca_core::reader`]), so a large file streams
//! without being restored.
//!
//! Concurrency: the FUSE session runs on one thread; the inode table sits behind a mutex that is
//! never held while blobs are read.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use arca_core::id::BlobId;
use arca_core::reader::{BlobCache, ContentMap};
use arca_core::repository::Repository;
use arca_core::tree::{Node, NodeKind, Timestamp, Xattr};
use clap::Args;
use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, Generation, INodeNo, LockOwner, MountOption, OpenFlags,
    ReplyAttr, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyXattr, Request,
};
use serde_json::json;

use crate::cli::GlobalOpts;
use crate::output::print_json;
use crate::repo;

const LONG_ABOUT: &str = "\
Mount the repository's snapshots as a read-only file system (FUSE) and browse or copy files with
any program. The mount shows:

  snapshots/<id>/...        every snapshot by its short id; snapshots/latest is the newest
  hosts/<host>/<time>       every snapshot of a host by time (UTC); hosts/<host>/latest

Files are read from the repository on demand through a bounded cache (--cache-size); nothing is
restored first. A file whose data sits in a damaged pack fails to read (EIO) and the pack is named
in the log; everything else stays readable.

The repository may be given as the first argument or by -r/ARCA_REPOSITORY, and may be a local
directory or an arca server. The command runs until interrupted (Ctrl-C or SIGTERM), then unmounts.
It needs /dev/fuse and fusermount3 (Debian package fuse3).

Examples:
  arca mount /srv/backup /mnt/arca
  arca -r https://backup.example.com/v1/repos/laptop mount /mnt/arca";

/// `arca mount` flags.
#[derive(Debug, Args)]
#[command(about = "Mount snapshots as a read-only file system", long_about = LONG_ABOUT)]
pub struct MountArgs {
    /// `[REPO] MOUNTPOINT`: the repository (default: -r/ARCA_REPOSITORY) and an empty directory
    #[arg(value_name = "[REPO] MOUNTPOINT", num_args = 1..=2, required = true)]
    pub places: Vec<String>,

    /// Most memory for cached file data
    #[arg(long, value_name = "SIZE", default_value = "256M", value_parser = super::image::parse_size)]
    pub cache_size: u64,
}

const TTL: Duration = Duration::from_secs(60);

enum Kind {
    /// A directory whose entries are known: name → inode.
    Dir(BTreeMap<Vec<u8>, u64>),
    /// A snapshot directory not listed yet.
    Tree(BlobId),
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
}

struct SnapshotFs {
    repo: Repository,
    cache: BlobCache,
    inodes: Mutex<Vec<Inode>>,
}

fn system_time(t: Timestamp) -> SystemTime {
    if t.secs >= 0 {
        UNIX_EPOCH + Duration::new(t.secs as u64, t.nanos)
    } else {
        UNIX_EPOCH
    }
}

fn dir_attr(time: SystemTime) -> FileAttr {
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

impl SnapshotFs {
    /// Builds the fixed part of the tree: `snapshots/` and `hosts/` with their links.
    fn new(mut repo: Repository, cache_bytes: usize) -> Result<SnapshotFs> {
        let (mut snaps, damaged) = repo.snapshots()?;
        for e in damaged {
            tracing::warn!("skipping a damaged snapshot: {e}");
        }
        // The index after the snapshots (see `super::load_index_for`).
        super::load_index_for(&mut repo)?;
        snaps.sort_by(|a, b| a.1.time.cmp(&b.1.time).then(a.0.cmp(&b.0)));
        let now = SystemTime::now();
        let mut inodes = vec![
            Inode {
                parent: 1,
                name: Vec::new(),
                kind: Kind::Dir(BTreeMap::new()),
                attr: dir_attr(now),
                xattrs: Vec::new(),
            },
            Inode {
                parent: 1,
                name: b"snapshots".to_vec(),
                kind: Kind::Dir(BTreeMap::new()),
                attr: dir_attr(now),
                xattrs: Vec::new(),
            },
            Inode {
                parent: 1,
                name: b"hosts".to_vec(),
                kind: Kind::Dir(BTreeMap::new()),
                attr: dir_attr(now),
                xattrs: Vec::new(),
            },
        ];
        let add = |inodes: &mut Vec<Inode>, parent: u64, name: Vec<u8>, kind: Kind, attr: FileAttr| -> u64 {
            let ino = inodes.len() as u64 + 1;
            if let Kind::Dir(children) = &mut inodes[parent as usize - 1].kind {
                children.insert(name.clone(), ino);
            }
            inodes.push(Inode { parent, name, kind, attr, xattrs: Vec::new() });
            ino
        };
        if let Kind::Dir(c) = &mut inodes[0].kind {
            c.insert(b"snapshots".to_vec(), 2);
            c.insert(b"hosts".to_vec(), 3);
        }
        let shorts: Vec<String> = snaps.iter().map(|(id, _)| id.short()).collect();
        let mut names = Vec::new();
        for ((id, snap), short) in snaps.iter().zip(&shorts) {
            let name = if shorts.iter().filter(|s| *s == short).count() > 1 { id.to_hex() } else { short.clone() };
            let t: SystemTime = snap.time.into();
            add(&mut inodes, 2, name.clone().into_bytes(), Kind::Tree(snap.tree), dir_attr(t));
            names.push(name);
        }
        if let Some(last) = names.last() {
            let t: SystemTime = snaps.last().map(|s| s.1.time.into()).unwrap_or(now);
            add(
                &mut inodes,
                2,
                b"latest".to_vec(),
                Kind::Symlink(last.clone().into_bytes()),
                link_attr(last.as_bytes(), t),
            );
        }
        let mut by_host: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, (_, snap)) in snaps.iter().enumerate() {
            by_host.entry(snap.hostname.as_str()).or_default().push(i);
        }
        for (host, list) in by_host {
            let host_name = if host.is_empty() || host.contains('/') || host == "." || host == ".." {
                format!("host-{}", host.replace('/', "_"))
            } else {
                host.to_string()
            };
            let host_ino = add(&mut inodes, 3, host_name.into_bytes(), Kind::Dir(BTreeMap::new()), dir_attr(now));
            let mut last_name = None;
            for i in list {
                let snap = &snaps[i].1;
                let mut name = snap.time.format("%Y-%m-%dT%H:%M:%SZ").to_string();
                if let Kind::Dir(children) = &inodes[host_ino as usize - 1].kind {
                    if children.contains_key(name.as_bytes()) {
                        name = format!("{name}-{}", names[i]);
                    }
                }
                let target = format!("../../snapshots/{}", names[i]).into_bytes();
                let attr = link_attr(&target, snap.time.into());
                add(&mut inodes, host_ino, name.clone().into_bytes(), Kind::Symlink(target), attr);
                last_name = Some(name);
            }
            if let Some(last) = last_name {
                add(
                    &mut inodes,
                    host_ino,
                    b"latest".to_vec(),
                    Kind::Symlink(last.clone().into_bytes()),
                    link_attr(last.as_bytes(), now),
                );
            }
        }
        for (i, inode) in inodes.iter_mut().enumerate() {
            inode.attr.ino = INodeNo(i as u64 + 1);
        }
        Ok(SnapshotFs { repo, cache: BlobCache::new(cache_bytes), inodes: Mutex::new(inodes) })
    }

    fn path_of(inodes: &[Inode], mut ino: u64) -> String {
        let mut parts = Vec::new();
        while ino > 1 {
            let n = &inodes[ino as usize - 1];
            parts.push(String::from_utf8_lossy(&n.name).into_owned());
            ino = n.parent;
        }
        parts.reverse();
        format!("/{}", parts.join("/"))
    }

    /// Lists a snapshot directory on first use. Holds the lock while the tree is read: the
    /// session is single-threaded, so nothing waits on it.
    fn ensure_listed(&self, inodes: &mut Vec<Inode>, ino: u64) -> Result<(), Errno> {
        let idx = ino as usize - 1;
        let Some(inode) = inodes.get(idx) else { return Err(Errno::ENOENT) };
        let tree_id = match inode.kind {
            Kind::Tree(id) => id,
            Kind::Dir(_) => return Ok(()),
            _ => return Err(Errno::ENOTDIR),
        };
        let tree = self.repo.load_tree(&tree_id).map_err(|e| {
            tracing::error!("listing {}: {e}", Self::path_of(inodes, ino));
            Errno::EIO
        })?;
        let mut children = BTreeMap::new();
        for node in tree.nodes {
            let child = inodes.len() as u64 + 1;
            let mut attr = node_attr(&node);
            attr.ino = INodeNo(child);
            let kind = match &node.kind {
                NodeKind::Dir => match node.subtree {
                    Some(id) => Kind::Tree(id),
                    None => Kind::Dir(BTreeMap::new()),
                },
                NodeKind::File => Kind::File(Arc::new(ContentMap::new(node.content.clone()))),
                NodeKind::Symlink { target } => Kind::Symlink(target.clone()),
                _ => Kind::Other,
            };
            children.insert(node.name.clone(), child);
            inodes.push(Inode { parent: ino, name: node.name, kind, attr, xattrs: node.xattrs });
        }
        inodes[idx].kind = Kind::Dir(children);
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Inode>> {
        self.inodes.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Filesystem for SnapshotFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let mut inodes = self.lock();
        if let Err(e) = self.ensure_listed(&mut inodes, parent.0) {
            return reply.error(e);
        }
        let found = match &inodes[parent.0 as usize - 1].kind {
            Kind::Dir(children) => children.get(name.as_bytes()).copied(),
            _ => None,
        };
        match found {
            Some(ino) => reply.entry(&TTL, &inodes[ino as usize - 1].attr, Generation(0)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.lock().get(ino.0 as usize - 1) {
            Some(i) => reply.attr(&TTL, &i.attr),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.lock().get(ino.0 as usize - 1).map(|i| &i.kind) {
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
        let map = match self.lock().get(ino.0 as usize - 1).map(|i| &i.kind) {
            Some(Kind::File(map)) => map.clone(),
            Some(Kind::Dir(_) | Kind::Tree(_)) => return reply.error(Errno::EISDIR),
            Some(_) => return reply.error(Errno::EINVAL),
            None => return reply.error(Errno::ENOENT),
        };
        let mut buf = vec![0u8; size.min(16 << 20) as usize];
        match map.read_at(&self.repo, &self.cache, offset, &mut buf) {
            Ok(n) => reply.data(&buf[..n]),
            Err(e) => {
                tracing::error!("reading {} at offset {offset}: {e}", Self::path_of(&self.lock(), ino.0));
                reply.error(Errno::EIO)
            }
        }
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let inodes = self.lock();
        let Some(inode) = inodes.get(ino.0 as usize - 1) else { return reply.error(Errno::ENOENT) };
        match inode.xattrs.iter().find(|x| x.name == name.as_bytes()) {
            None => reply.error(Errno::NO_XATTR),
            Some(x) if size == 0 => reply.size(x.value.len() as u32),
            Some(x) if (size as usize) < x.value.len() => reply.error(Errno::ERANGE),
            Some(x) => reply.data(&x.value),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let inodes = self.lock();
        let Some(inode) = inodes.get(ino.0 as usize - 1) else { return reply.error(Errno::ENOENT) };
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
        let mut inodes = self.lock();
        if let Err(e) = self.ensure_listed(&mut inodes, ino.0) {
            return reply.error(e);
        }
        let inode = &inodes[ino.0 as usize - 1];
        let Kind::Dir(children) = &inode.kind else { return reply.error(Errno::ENOTDIR) };
        let mut entries: Vec<(u64, FileType, &[u8])> =
            vec![(ino.0, FileType::Directory, b"."), (inode.parent, FileType::Directory, b"..")];
        for (name, &child) in children {
            entries.push((child, inodes[child as usize - 1].attr.kind, name));
        }
        for (i, (child, kind, name)) in entries.into_iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(child), (i + 1) as u64, kind, OsStr::from_bytes(name)) {
                break;
            }
        }
        reply.ok();
    }
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_signal: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// A mount point must be an existing, empty directory that is not itself mounted on.
fn check_mount_point(path: &Path) -> Result<()> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("the mount point {} does not exist: create an empty directory first", path.display())
        }
        Err(e) => {
            // ENOTCONN: a FUSE mount whose process died is still there.
            return Err(e).with_context(|| {
                format!("the mount point {} is unusable (a stale mount? try `fusermount3 -u`)", path.display())
            });
        }
    };
    if !meta.is_dir() {
        bail!("the mount point {} is not a directory", path.display());
    }
    let parent = path.parent().unwrap_or(Path::new("/"));
    let parent_meta = std::fs::metadata(parent).with_context(|| format!("reading {}", parent.display()))?;
    if parent_meta.dev() != meta.dev() || parent_meta.ino() == meta.ino() {
        bail!("the mount point {} is busy: something is already mounted there", path.display());
    }
    let mut entries = std::fs::read_dir(path).with_context(|| format!("listing {}", path.display()))?;
    if entries.next().is_some() {
        bail!("the mount point {} is busy: it is not empty", path.display());
    }
    Ok(())
}

/// Runs `arca mount`.
pub fn run(g: &GlobalOpts, a: &MountArgs) -> Result<i32> {
    let mut global = g.clone();
    let mount_point = match a.places.as_slice() {
        [mp] => mp,
        [repo, mp] => {
            global.repo = Some(repo.clone());
            mp
        }
        _ => bail!("give [REPO] MOUNTPOINT"),
    };
    let mount_point = std::path::absolute(PathBuf::from(mount_point)).context("resolving the mount point")?;
    check_mount_point(&mount_point)?;
    if !Path::new("/dev/fuse").exists() {
        bail!("FUSE is not available: /dev/fuse is missing (load the fuse module, or run the container with it)");
    }
    let opened = repo::open(&global)?;
    let location = opened.repo.store().location();
    let fs = SnapshotFs::new(opened.repo, a.cache_size as usize)?;
    let snapshots = fs.lock().iter().filter(|i| i.parent == 2 && matches!(i.kind, Kind::Tree(_))).count();
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        MountOption::RO,
        MountOption::FSName("arca".into()),
        MountOption::Subtype("arca".into()),
        MountOption::DefaultPermissions,
        MountOption::NoDev,
        MountOption::NoSuid,
    ];
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_stop_signal as extern "C" fn(libc::c_int) as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_stop_signal as extern "C" fn(libc::c_int) as libc::sighandler_t);
    }
    let session = fuser::spawn_mount(fs, &mount_point, &config).with_context(|| {
        format!("mounting at {} (is fusermount3 installed? Debian package fuse3)", mount_point.display())
    })?;
    if g.json {
        print_json(&json!({
            "message_type": "mounted",
            "mount_point": mount_point.display().to_string(),
            "repository": location,
            "snapshots": snapshots,
        }))?;
    } else if !g.quiet {
        println!("mounted {snapshots} snapshots of {location} at {}; Ctrl-C unmounts", mount_point.display());
    }
    // Output is informational: a reader that went away does not stop the mount.
    let _ = crate::output::stdout().flush();
    let mut external = false;
    while !STOP.load(Ordering::SeqCst) {
        if session.guard.is_finished() {
            external = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if external {
        session.join().context("the file system thread")?;
        if !g.quiet && !g.json {
            println!("{} was unmounted from outside", mount_point.display());
        }
        return Ok(crate::exit::OK);
    }
    session.umount_and_join().with_context(|| {
        format!(
            "unmounting {} (is a program still using it? close it and run `fusermount3 -u {}`)",
            mount_point.display(),
            mount_point.display()
        )
    })?;
    if !g.quiet && !g.json {
        println!("unmounted {}", mount_point.display());
    }
    Ok(crate::exit::OK)
}
