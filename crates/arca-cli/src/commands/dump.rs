//! `arca dump`: print a file from a snapshot, or a directory as a tar stream.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use arca_core::lock::LockGuard;
use arca_core::repository::Repository;
use arca_core::tree::{Node, NodeKind, Tree};
use clap::{Args, ValueEnum};

use crate::cli::{FilterArgs, GlobalOpts};
use crate::repo;
use crate::walk::{self, ContentReader, Target};

const LONG_ABOUT: &str = "\
Write one file of a snapshot to standard output, byte for byte, or a directory as a tar archive.

PATH is the absolute path inside the snapshot (see `arca ls`). For a directory the archive holds
its entries under the directory's own name, with modes, owners, modification times, symlinks and
hard links; `/` dumps the whole snapshot. --target writes to a file instead of standard output.

Examples:
  arca dump latest /etc/fstab
  arca dump 1a2b3c4d /home/me/work > work.tar
  arca dump latest / --target everything.tar";

/// Archive formats for directories.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Archive {
    /// POSIX tar (GNU long names)
    Tar,
}

/// `arca dump` flags.
#[derive(Debug, Args)]
#[command(about = "Print a file or a directory (as tar) from a snapshot", long_about = LONG_ABOUT)]
pub struct DumpArgs {
    /// The snapshot (an id prefix or `latest`)
    #[arg(value_name = "SNAPSHOT")]
    pub snapshot: String,

    /// The file or directory inside the snapshot
    #[arg(value_name = "PATH")]
    pub path: String,

    /// Archive format for directories
    #[arg(short, long, value_enum, default_value = "tar")]
    pub archive: Archive,

    /// Write to this file instead of standard output
    #[arg(short, long, value_name = "FILE")]
    pub target: Option<PathBuf>,

    #[command(flatten)]
    pub filter: FilterArgs,
}

/// Runs `arca dump`.
pub fn run(g: &GlobalOpts, a: &DumpArgs) -> Result<i32> {
    let mut opened = repo::open(g)?;
    let repo = &mut opened.repo;
    let _lock = LockGuard::acquire(repo.store().clone(), "dump")?;
    for problem in repo.load_index_for_reading()? {
        tracing::warn!("{problem}");
    }
    let (_, snap) = super::find_snapshot(repo, &a.snapshot, &a.filter)?;
    let repo: &Repository = repo;
    let target = walk::resolve(repo, &snap.tree, &a.path)?;
    let is_archive = !matches!(&target, Target::Node(_, n) if !n.is_dir());
    let mut out: Box<dyn Write> = match &a.target {
        Some(path) => Box::new(std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?),
        None => {
            if is_archive && std::io::stdout().is_terminal() {
                bail!("standard output is a terminal: redirect the tar archive to a file or use --target");
            }
            Box::new(std::io::stdout().lock())
        }
    };
    let mut out = std::io::BufWriter::with_capacity(1 << 20, &mut out);
    match target {
        Target::Node(path, node) if !node.is_dir() => match &node.kind {
            NodeKind::File => {
                std::io::copy(&mut ContentReader::new(repo, &node), &mut out)
                    .with_context(|| format!("dumping {path}"))?;
            }
            NodeKind::Symlink { target } => out.write_all(target)?,
            _ => bail!("{path} is a {}, which has no content to dump", crate::output::node_type(&node)),
        },
        Target::Node(path, node) => {
            let mut tar = TarWriter::new(repo, &mut out);
            let name = node.name_lossy().into_owned();
            tar.entry(&name, &node, &path)?;
            let tree = repo.load_tree(&node.subtree.expect("directories have subtrees"))?;
            tar.dir(&tree, &name, &path)?;
            tar.finish()?;
        }
        Target::Root(tree) => {
            let mut tar = TarWriter::new(repo, &mut out);
            tar.dir(&tree, "", "")?;
            tar.finish()?;
        }
    }
    out.flush()?;
    Ok(crate::exit::OK)
}

struct TarWriter<'r, W: Write> {
    repo: &'r Repository,
    builder: tar::Builder<W>,
    /// First archive path of each multiply linked file, by (device, inode).
    links: HashMap<(u64, u64), String>,
}

impl<'r, W: Write> TarWriter<'r, W> {
    fn new(repo: &'r Repository, out: W) -> Self {
        let mut builder = tar::Builder::new(out);
        builder.mode(tar::HeaderMode::Complete);
        TarWriter { repo, builder, links: HashMap::new() }
    }

    /// Archives every entry of `tree`; `prefix` is its path in the archive, `snap_dir` in the
    /// snapshot (for messages).
    fn dir(&mut self, tree: &Tree, prefix: &str, snap_dir: &str) -> Result<()> {
        for node in &tree.nodes {
            let name = node.name_lossy();
            let arch = if prefix.is_empty() { name.to_string() } else { format!("{prefix}/{name}") };
            let snap_path = walk::join(if snap_dir.is_empty() { "/" } else { snap_dir }, &name);
            self.entry(&arch, node, &snap_path)?;
            if let Some(sub) = node.subtree.filter(|_| node.is_dir()) {
                let subtree = self.repo.load_tree(&sub)?;
                self.dir(&subtree, &arch, &snap_path)?;
            }
        }
        Ok(())
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

    fn entry(&mut self, arch: &str, node: &Node, snap_path: &str) -> Result<()> {
        let ctx = || format!("adding {snap_path} to the archive");
        match &node.kind {
            NodeKind::Dir => {
                let mut h = Self::header(node, tar::EntryType::Directory);
                self.builder.append_data(&mut h, format!("{arch}/"), std::io::empty()).with_context(ctx)?;
            }
            NodeKind::File => {
                if node.links > 1 {
                    let key = (node.device, node.inode);
                    if let Some(first) = self.links.get(&key) {
                        let mut h = Self::header(node, tar::EntryType::Link);
                        let first = first.clone();
                        self.builder.append_link(&mut h, arch, &first).with_context(ctx)?;
                        return Ok(());
                    }
                    self.links.insert(key, arch.to_string());
                }
                let mut h = Self::header(node, tar::EntryType::Regular);
                h.set_size(node.size);
                let reader = ContentReader::new(self.repo, node);
                self.builder.append_data(&mut h, arch, reader).with_context(ctx)?;
            }
            NodeKind::Symlink { target } => {
                let mut h = Self::header(node, tar::EntryType::Symlink);
                let target = String::from_utf8_lossy(target).into_owned();
                self.builder.append_link(&mut h, arch, target).with_context(ctx)?;
            }
            NodeKind::Fifo => {
                let mut h = Self::header(node, tar::EntryType::Fifo);
                self.builder.append_data(&mut h, arch, std::io::empty()).with_context(ctx)?;
            }
            NodeKind::CharDevice { rdev } | NodeKind::BlockDevice { rdev } => {
                let kind = if matches!(node.kind, NodeKind::CharDevice { .. }) {
                    tar::EntryType::Char
                } else {
                    tar::EntryType::Block
                };
                let mut h = Self::header(node, kind);
                let (major, minor) = (libc::major(*rdev as libc::dev_t), libc::minor(*rdev as libc::dev_t));
                h.set_device_major(major)?;
                h.set_device_minor(minor)?;
                self.builder.append_data(&mut h, arch, std::io::empty()).with_context(ctx)?;
            }
            NodeKind::Socket => {
                tracing::info!("skipping socket {snap_path}: tar cannot hold sockets");
            }
        }
        Ok(())
    }

    fn finish(self) -> Result<()> {
        self.builder.into_inner().context("finishing the tar archive")?;
        Ok(())
    }
}
