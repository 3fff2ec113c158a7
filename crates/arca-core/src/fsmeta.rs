//! Reading a file's metadata into a [`Node`], and putting it back on restore.
//!
//! Everything is done without following symlinks (`lstat`, `llistxattr`, `lchown`,
//! `utimensat(AT_SYMLINK_NOFOLLOW)`), so a backup never escapes through a link and a restore
//! never writes through one.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use crate::error::{Error, Result};
use crate::tree::{Node, NodeKind, Timestamp, Xattr};

/// Builds a node (without content or subtree) from `lstat` data. Reads the symlink target and,
/// if asked, the extended attributes.
pub fn node_from_metadata(name: Vec<u8>, path: &Path, meta: &std::fs::Metadata, with_xattrs: bool) -> Result<Node> {
    let ft = meta.file_type();
    let kind = if ft.is_file() {
        NodeKind::File
    } else if ft.is_dir() {
        NodeKind::Dir
    } else if ft.is_symlink() {
        let target =
            std::fs::read_link(path).map_err(|e| Error::local_io(format!("reading link {}", path.display()), e))?;
        NodeKind::Symlink { target: target.as_os_str().as_bytes().to_vec() }
    } else if ft.is_fifo() {
        NodeKind::Fifo
    } else if ft.is_socket() {
        NodeKind::Socket
    } else if ft.is_char_device() {
        NodeKind::CharDevice { rdev: meta.rdev() }
    } else if ft.is_block_device() {
        NodeKind::BlockDevice { rdev: meta.rdev() }
    } else {
        return Err(Error::invalid(format!("{} has an unknown file type", path.display())));
    };
    let xattrs = if with_xattrs { read_xattrs(path) } else { Vec::new() };
    let ts = |secs: i64, nanos: i64| Timestamp { secs, nanos: nanos.clamp(0, 999_999_999) as u32 };
    Ok(Node {
        name,
        mode: meta.mode(),
        uid: meta.uid(),
        gid: meta.gid(),
        user: crate::sys::user_name(meta.uid()),
        group: crate::sys::group_name(meta.gid()),
        mtime: ts(meta.mtime(), meta.mtime_nsec()),
        // Access times are not recorded (as borg does by default): reading a directory changes
        // its atime, which would make every backup store every tree again.
        atime: Timestamp::default(),
        ctime: ts(meta.ctime(), meta.ctime_nsec()),
        inode: meta.ino(),
        device: meta.dev(),
        links: meta.nlink(),
        size: if matches!(kind, NodeKind::File) { meta.len() } else { 0 },
        kind,
        xattrs,
        content: Vec::new(),
        subtree: None,
    })
}

/// Extended attributes of `path` (not following links), sorted by name. Unreadable attributes are
/// skipped: many file systems refuse `security.*` to non-root users.
fn read_xattrs(path: &Path) -> Vec<Xattr> {
    let Ok(names) = xattr::list(path) else { return Vec::new() };
    let mut out: Vec<Xattr> = names
        .filter_map(|n| {
            let value = xattr::get(path, &n).ok().flatten()?;
            Some(Xattr { name: n.as_bytes().to_vec(), value })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// What to restore besides content.
#[derive(Debug, Clone, Copy)]
pub struct ApplyOptions {
    /// Restore owner and group (only works as root; otherwise skipped silently).
    pub ownership: bool,
    /// Restore extended attributes.
    pub xattrs: bool,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        // SAFETY: geteuid cannot fail.
        ApplyOptions { ownership: unsafe { libc::geteuid() } == 0, xattrs: true }
    }
}

fn cpath(path: &Path) -> Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| Error::invalid(format!("path {} contains NUL", path.display())))
}

/// Creates a non-regular, non-directory node (symlink, fifo, device). Sockets are skipped.
pub fn create_special(path: &Path, node: &Node) -> Result<()> {
    let io = |e| Error::local_io(format!("creating {}", path.display()), e);
    match &node.kind {
        NodeKind::Symlink { target } => {
            std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(target), path).map_err(io)
        }
        NodeKind::Fifo => {
            let c = cpath(path)?;
            // SAFETY: c is a valid NUL-terminated path.
            if unsafe { libc::mkfifo(c.as_ptr(), (node.mode & 0o7777) as libc::mode_t) } != 0 {
                return Err(io(std::io::Error::last_os_error()));
            }
            Ok(())
        }
        NodeKind::CharDevice { rdev } | NodeKind::BlockDevice { rdev } => {
            let c = cpath(path)?;
            // SAFETY: c is a valid NUL-terminated path.
            if unsafe { libc::mknod(c.as_ptr(), node.mode as libc::mode_t, *rdev as libc::dev_t) } != 0 {
                return Err(io(std::io::Error::last_os_error()));
            }
            Ok(())
        }
        NodeKind::Socket => Ok(()),
        NodeKind::File | NodeKind::Dir => Err(Error::invalid("create_special called for a file or directory")),
    }
}

/// Applies ownership, mode, extended attributes and times to `path` (in that order: times last,
/// since every other change would touch them). Never follows a symlink.
pub fn apply_metadata(path: &Path, node: &Node, opts: ApplyOptions) -> Result<()> {
    let c = cpath(path)?;
    let is_link = matches!(node.kind, NodeKind::Symlink { .. });
    if matches!(node.kind, NodeKind::Socket) {
        return Ok(());
    }
    let fail = |what: &str| Error::local_io(format!("{what} {}", path.display()), std::io::Error::last_os_error());
    if opts.ownership {
        // SAFETY: c is a valid path; lchown never follows links.
        if unsafe { libc::lchown(c.as_ptr(), node.uid, node.gid) } != 0 {
            return Err(fail("setting the owner of"));
        }
    }
    if !is_link {
        // SAFETY: c is a valid path. chmod on a non-link.
        if unsafe { libc::chmod(c.as_ptr(), (node.mode & 0o7777) as libc::mode_t) } != 0 {
            return Err(fail("setting the mode of"));
        }
    }
    if opts.xattrs {
        for x in &node.xattrs {
            let name = std::ffi::OsStr::from_bytes(&x.name);
            if let Err(e) = xattr::set(path, name, &x.value) {
                // Unsupported on the target file system or not permitted: not fatal, but said.
                tracing::warn!("could not restore extended attribute {:?} on {}: {e}", name, path.display());
            }
        }
    }
    let ts = |t: Timestamp| libc::timespec { tv_sec: t.secs as libc::time_t, tv_nsec: t.nanos as libc::c_long };
    let atime = if node.atime == Timestamp::default() { node.mtime } else { node.atime };
    let times = [ts(atime), ts(node.mtime)];
    // SAFETY: c is valid, times points to two timespecs.
    if unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) } != 0 {
        return Err(fail("setting the times of"));
    }
    Ok(())
}

/// As [`apply_metadata`], through an open file descriptor of a regular file: no path lookups, which
/// matters when a restore finishes tens of thousands of files.
pub fn apply_metadata_fd(file: &std::fs::File, path: &Path, node: &Node, opts: ApplyOptions) -> Result<()> {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    let fail = |what: &str| Error::local_io(format!("{what} {}", path.display()), std::io::Error::last_os_error());
    if opts.ownership {
        // SAFETY: fd is an open descriptor owned by `file`.
        if unsafe { libc::fchown(fd, node.uid, node.gid) } != 0 {
            return Err(fail("setting the owner of"));
        }
    }
    // SAFETY: as above.
    if unsafe { libc::fchmod(fd, (node.mode & 0o7777) as libc::mode_t) } != 0 {
        return Err(fail("setting the mode of"));
    }
    if opts.xattrs {
        use xattr::FileExt as _;
        for x in &node.xattrs {
            let name = std::ffi::OsStr::from_bytes(&x.name);
            if let Err(e) = file.set_xattr(name, &x.value) {
                tracing::warn!("could not restore extended attribute {:?} on {}: {e}", name, path.display());
            }
        }
    }
    let ts = |t: Timestamp| libc::timespec { tv_sec: t.secs as libc::time_t, tv_nsec: t.nanos as libc::c_long };
    let atime = if node.atime == Timestamp::default() { node.mtime } else { node.atime };
    let times = [ts(atime), ts(node.mtime)];
    // SAFETY: as above; times points to two timespecs.
    if unsafe { libc::futimens(fd, times.as_ptr()) } != 0 {
        return Err(fail("setting the times of"));
    }
    Ok(())
}
