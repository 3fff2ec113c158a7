//! `arca ls`: list the files in a snapshot.

use std::io::Write;

use anyhow::Result;
use clap::Args;

use crate::cli::{FilterArgs, GlobalOpts};
use crate::output::{self, long_line, node_json, snapshot_json};
use crate::repo;
use crate::walk::{self, Target};

const LONG_ABOUT: &str = "\
List the files and directories in a snapshot, with their absolute paths.

Without PATH the whole snapshot is listed. With PATH, that entry and (for a directory) everything
below it; --recursive=false lists only a directory's direct entries. -l shows permissions, owner,
size and modification time. --json prints the snapshot and then one JSON object per entry, one per
line.

Examples:
  arca ls latest
  arca ls -l 1a2b3c4d /home/me/work
  arca ls latest /etc --recursive=false";

/// `arca ls` flags.
#[derive(Debug, Args)]
#[command(about = "List files in a snapshot", long_about = LONG_ABOUT)]
pub struct LsArgs {
    /// The snapshot (an id prefix or `latest`)
    #[arg(value_name = "SNAPSHOT")]
    pub snapshot: String,

    /// Only list this path (absolute, as in the snapshot) and what is below it
    #[arg(value_name = "PATH")]
    pub path: Option<String>,

    /// Long listing: permissions, owner, group, size, time
    #[arg(short, long)]
    pub long: bool,

    /// Descend into directories
    #[arg(long, value_name = "BOOL", default_value = "true", num_args = 0..=1,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    pub recursive: bool,

    #[command(flatten)]
    pub filter: FilterArgs,
}

/// Runs `arca ls`.
pub fn run(g: &GlobalOpts, a: &LsArgs) -> Result<i32> {
    let mut opened = repo::open(g)?;
    let repo = &mut opened.repo;
    let (id, snap) = super::find_snapshot(repo, &a.snapshot, &a.filter)?;
    super::load_index_for(repo)?;
    let mut out = std::io::BufWriter::new(output::stdout());
    if g.json {
        let mut v = snapshot_json(&id, &snap);
        v["struct_type"] = "snapshot".into();
        output::write_json_line(&mut out, &v)?;
    } else if !g.quiet {
        writeln!(out, "snapshot {} of [{}] at {}:", id.short(), snap.paths.join(" "), output::local_time(snap.time))?;
    }
    let mut print = |path: &str, node: &arca_core::tree::Node| -> Result<bool> {
        if g.json {
            output::write_json_line(&mut out, &node_json(path, node))?;
        } else if a.long {
            writeln!(out, "{}", long_line(path, node))?;
        } else {
            writeln!(out, "{path}")?;
        }
        Ok(true)
    };
    match walk::resolve(repo, &snap.tree, a.path.as_deref().unwrap_or("/"))? {
        Target::Root(tree) => walk::walk(repo, &tree, "/", a.recursive, &mut print)?,
        Target::Node(path, node) => {
            print(&path, &node)?;
            if let Some(sub) = node.subtree.filter(|_| node.is_dir()) {
                let tree = repo.load_tree(&sub)?;
                walk::walk(repo, &tree, &path, a.recursive, &mut print)?;
            }
        }
    }
    out.flush()?;
    Ok(crate::exit::OK)
}
