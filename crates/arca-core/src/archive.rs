//! A directory of a snapshot as one archive stream (tar or zip), written front to back without
//! seeking, so it can go straight to standard output or into an HTTP response while it is made.
//!
//! Memory stays at one blob plus the writer's buffer whatever the size of the directory: trees
//! are loaded one at a time as the walk reaches them and file bytes go through [`ContentReader`].

use std::collections::HashMap;
use std::io::Write;

use crate::browse::{join, ContentReader, Target};
use crate::error::{Error, ErrorKind, Result};
use crate::repository::Repository;
use crate::tree::{Node, NodeKind, Tree};

/// Archive formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// POSIX tar with GNU long names: modes, owners, times, symlinks, hard links and devices.
    Tar,
    /// Zip (zip64 where needed), entries stored uncompressed: what every desktop opens with a
    /// double click. Stored, not deflated, because restores are bound by the link and most large
    /// files are already compressed; deflating would cost server CPU for little gain.
    Zip,
}

impl Format {
    /// The usual file name extension.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Tar => "tar",
            Format::Zip => "zip",
        }
    }

    /// The media type for HTTP.
    pub fn media_type(self) -> &'static str {
        match self {
            Format::Tar => "application/x-tar",
            Format::Zip => "application/zip",
        }
    }
}

/// What went into an archive.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ArchiveStats {
    /// Regular files (hard links counted once per name).
    pub files: u64,
    /// Directories.
    pub dirs: u64,
    /// File content bytes.
    pub bytes: u64,
    /// Entries the format cannot hold (sockets; devices and fifos in zip), left out.
    pub skipped: u64,
}

/// Writes `target` (a directory, the snapshot root or a single entry) as an archive to `out`.
/// A directory's entries appear under the directory's own name; the root's at the top level.
pub fn write_archive<W: Write>(repo: &Repository, target: &Target, format: Format, out: W) -> Result<ArchiveStats> {
    let mut sink: Box<dyn Sink + '_> = match format {
        Format::Tar => Box::new(TarSink::new(out)),
        Format::Zip => Box::new(ZipSink::new(out)),
    };
    let mut walker = Walker { repo, sink: sink.as_mut(), stats: ArchiveStats::default() };
    match target {
        Target::Root(tree) => walker.dir(tree, "", "/")?,
        Target::Node(path, node) => {
            let name = node.name_lossy().into_owned();
            walker.entry(&name, node, path)?;
            if let Some(sub) = node.subtree.filter(|_| node.is_dir()) {
                let tree = repo.load_tree(&sub)?;
                walker.dir(&tree, &name, path)?;
            }
        }
    }
    let stats = walker.stats;
    sink.finish()?;
    Ok(stats)
}

fn write_error(what: &str, e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::with_source(ErrorKind::LocalIo, format!("writing the archive ({what}): {e}"), e)
}

struct Walker<'a> {
    repo: &'a Repository,
    sink: &'a mut dyn Sink,
    stats: ArchiveStats,
}

impl Walker<'_> {
    /// Archives every entry of `tree`; `prefix` is its path in the archive, `snap_dir` in the
    /// snapshot (for messages).
    fn dir(&mut self, tree: &Tree, prefix: &str, snap_dir: &str) -> Result<()> {
        for node in &tree.nodes {
            let name = node.name_lossy();
            let arch = if prefix.is_empty() { name.to_string() } else { format!("{prefix}/{name}") };
            let snap_path = join(snap_dir, &name);
            self.entry(&arch, node, &snap_path)?;
            if let Some(sub) = node.subtree.filter(|_| node.is_dir()) {
                let subtree = self.repo.load_tree(&sub)?;
                self.dir(&subtree, &arch, &snap_path)?;
            }
        }
        Ok(())
    }

    fn entry(&mut self, arch: &str, node: &Node, snap_path: &str) -> Result<()> {
        let added = self.sink.entry(self.repo, arch, node).map_err(|e| e.context(format!("adding {snap_path}")))?;
        match (added, &node.kind) {
            (false, _) => {
                tracing::info!("{snap_path}: left out of the archive, which cannot hold a {:?}", node.kind);
                self.stats.skipped += 1;
            }
            (true, NodeKind::Dir) => self.stats.dirs += 1,
            (true, NodeKind::File) => {
                self.stats.files += 1;
                self.stats.bytes += node.size;
            }
            (true, _) => {}
        }
        Ok(())
    }
}

/// One archive format's writer. `entry` returns whether the format could hold the node.
trait Sink {
    fn entry(&mut self, repo: &Repository, arch: &str, node: &Node) -> Result<bool>;
    fn finish(self: Box<Self>) -> Result<()>;
}

struct TarSink<W: Write> {
    builder: tar::Builder<W>,
    /// First archive path of each multiply linked file, by (device, inode).
    links: HashMap<(u64, u64), String>,
}

impl<W: Write> TarSink<W> {
    fn new(out: W) -> Self {
        let mut builder = tar::Builder::new(out);
        builder.mode(tar::HeaderMode::Complete);
        TarSink { builder, links: HashMap::new() }
    }

    fn header(node: &Node, kind: tar::EntryType) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(node.mode & 0o7777);
        h.set_uid(node.uid as u64);
        h.set_gid(node.gid as u64);
        h.set_mtime(node.mtime.secs.max(0) as u64);
        if let Some(u) = &node.user {
            let _ = h.set_username(u);
        }
        if let Some(gr) = &node.group {
            let _ = h.set_groupname(gr);
        }
        h.set_size(0);
        h
    }
}

impl<W: Write> Sink for TarSink<W> {
    fn entry(&mut self, repo: &Repository, arch: &str, node: &Node) -> Result<bool> {
        let io = |e: std::io::Error| write_error("tar", e);
        match &node.kind {
            NodeKind::Dir => {
                let mut h = Self::header(node, tar::EntryType::Directory);
                self.builder.append_data(&mut h, format!("{arch}/"), std::io::empty()).map_err(io)?;
            }
            NodeKind::File => {
                if node.links > 1 {
                    let key = (node.device, node.inode);
                    if let Some(first) = self.links.get(&key) {
                        let mut h = Self::header(node, tar::EntryType::Link);
                        let first = first.clone();
                        self.builder.append_link(&mut h, arch, &first).map_err(io)?;
                        return Ok(true);
                    }
                    self.links.insert(key, arch.to_string());
                }
                let mut h = Self::header(node, tar::EntryType::Regular);
                h.set_size(node.size);
                self.builder.append_data(&mut h, arch, ContentReader::new(repo, node)).map_err(io)?;
            }
            NodeKind::Symlink { target } => {
                let mut h = Self::header(node, tar::EntryType::Symlink);
                let target = String::from_utf8_lossy(target).into_owned();
                self.builder.append_link(&mut h, arch, target).map_err(io)?;
            }
            NodeKind::Fifo => {
                let mut h = Self::header(node, tar::EntryType::Fifo);
                self.builder.append_data(&mut h, arch, std::io::empty()).map_err(io)?;
            }
            NodeKind::CharDevice { rdev } | NodeKind::BlockDevice { rdev } => {
                let kind = if matches!(node.kind, NodeKind::CharDevice { .. }) {
                    tar::EntryType::Char
                } else {
                    tar::EntryType::Block
                };
                let mut h = Self::header(node, kind);
                let (major, minor) = (libc::major(*rdev as libc::dev_t), libc::minor(*rdev as libc::dev_t));
                h.set_device_major(major).map_err(io)?;
                h.set_device_minor(minor).map_err(io)?;
                self.builder.append_data(&mut h, arch, std::io::empty()).map_err(io)?;
            }
            NodeKind::Socket => return Ok(false),
        }
        Ok(true)
    }

    fn finish(self: Box<Self>) -> Result<()> {
        let mut out = self.builder.into_inner().map_err(|e| write_error("tar", e))?;
        out.flush().map_err(|e| write_error("tar", e))
    }
}

struct ZipSink<W: Write> {
    zip: zip::ZipWriter<zip::write::StreamWriter<W>>,
}

impl<W: Write> ZipSink<W> {
    fn new(out: W) -> Self {
        ZipSink { zip: zip::ZipWriter::new_stream(out) }
    }

    fn options(node: &Node) -> zip::write::SimpleFileOptions {
        let mut options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .unix_permissions(node.mode & 0o7777)
            // Zip64 when the size may not fit 32 bits; the stream cannot go back to add it later.
            .large_file(node.size >= u32::MAX as u64);
        use chrono::{Datelike, Timelike};
        let t = node.mtime.to_chrono();
        let (y, mo, d) = (t.year().clamp(0, u16::MAX as i32) as u16, t.month() as u8, t.day() as u8);
        if let Ok(dt) = zip::DateTime::from_date_and_time(y, mo, d, t.hour() as u8, t.minute() as u8, t.second() as u8)
        {
            options = options.last_modified_time(dt);
        }
        options
    }
}

impl<W: Write> Sink for ZipSink<W> {
    fn entry(&mut self, repo: &Repository, arch: &str, node: &Node) -> Result<bool> {
        let zerr = |e: zip::result::ZipError| write_error("zip", e);
        match &node.kind {
            NodeKind::Dir => self.zip.add_directory(format!("{arch}/"), Self::options(node)).map_err(zerr)?,
            NodeKind::File => {
                self.zip.start_file(arch, Self::options(node)).map_err(zerr)?;
                let copied = std::io::copy(&mut ContentReader::new(repo, node), &mut self.zip)
                    .map_err(|e| write_error("zip", e))?;
                if copied != node.size {
                    return Err(Error::corrupt(format!("{arch}: read {copied} bytes, the tree says {}", node.size)));
                }
            }
            NodeKind::Symlink { target } => {
                let target = String::from_utf8_lossy(target).into_owned();
                self.zip.add_symlink(arch, target, Self::options(node)).map_err(zerr)?;
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn finish(self: Box<Self>) -> Result<()> {
        let mut out = self.zip.finish().map_err(|e| write_error("zip", e))?.into_inner();
        out.flush().map_err(|e| write_error("zip", e))
    }
}
