//! `arca dump`: print a file from a snapshot, or a directory as a tar stream.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use arca_core::archive::Format;
use arca_core::lock::LockGuard;
use arca_core::repository::Repository;
use arca_core::tree::NodeKind;
use clap::{Args, ValueEnum};

use crate::cli::{FilterArgs, GlobalOpts};
use crate::repo;
use crate::walk::{self, ContentReader, Target};

const LONG_ABOUT: &str = "\
Write one file of a snapshot to standard output, byte for byte, or a directory as a tar (or zip)
archive.

PATH is the absolute path inside the snapshot (see `arca ls`). For a directory the archive holds
its entries under the directory's own name, with modes, owners, modification times, symlinks and
hard links; `/` dumps the whole snapshot. --target writes to a file instead of standard output.

Examples:
  arca dump latest /etc/fstab
  arca dump 1a2b3c4d /home/me/work > work.tar
  arca dump latest / --target everything.tar
  arca dump latest /home/me/photos --archive zip --target photos.zip";

/// Archive formats for directories.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Archive {
    /// POSIX tar (GNU long names)
    Tar,
    /// Zip (entries stored uncompressed; no devices or fifos)
    Zip,
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
    let (_, snap) = super::find_snapshot(repo, &a.snapshot, &a.filter)?;
    super::load_index_for(repo)?;
    let repo: &Repository = repo;
    let target = walk::resolve(repo, &snap.tree, &a.path)?;
    let is_archive = !matches!(&target, Target::Node(_, n) if !n.is_dir());
    let mut out: Box<dyn Write> = match &a.target {
        Some(path) => Box::new(std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?),
        None => {
            if is_archive && std::io::stdout().is_terminal() {
                bail!("standard output is a terminal: redirect the archive to a file or use --target");
            }
            Box::new(crate::output::stdout())
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
        target => {
            let format = match a.archive {
                Archive::Tar => Format::Tar,
                Archive::Zip => Format::Zip,
            };
            arca_core::archive::write_archive(repo, &target, format, &mut out)
                .with_context(|| format!("dumping {} as {}", a.path, format.extension()))?;
        }
    }
    out.flush()?;
    Ok(crate::exit::OK)
}
