//! `arca diff`: what changed between two snapshots.

use std::cmp::Ordering;
use std::collections::HashMap;

use anyhow::Result;
use arca_core::id::BlobId;
use arca_core::repository::Repository;
use arca_core::tree::{ContentRef, Node, NodeKind, Tree};
use clap::Args;
use serde::Serialize;
use serde_json::json;

use crate::cli::{FilterArgs, GlobalOpts};
use crate::output::{self, print_json};
use crate::repo;
use crate::walk::join;

const LONG_ABOUT: &str = "\
Show the differences between two snapshots, one line per changed path:

  +  added            -  removed
  M  content changed  T  type changed (e.g. file became a directory)
  U  metadata only (mode, owner, modification time or extended attributes)

Directories end in `/`. Identical subtrees are skipped without being read, so comparing two
snapshots of a large, mostly unchanged tree is fast. A summary of counts and of the data added and
removed follows.

Examples:
  arca diff 1a2b3c4d 5e6f7a8b
  arca diff --json 1a2b3c4d latest";

/// `arca diff` flags.
#[derive(Debug, Args)]
#[command(about = "Show differences between two snapshots", long_about = LONG_ABOUT)]
pub struct DiffArgs {
    /// The older snapshot
    #[arg(value_name = "SNAPSHOT-A")]
    pub a: String,
    /// The newer snapshot
    #[arg(value_name = "SNAPSHOT-B")]
    pub b: String,
    #[command(flatten)]
    pub filter: FilterArgs,
}

#[derive(Debug, Default, Serialize)]
struct Counts {
    new: u64,
    removed: u64,
    changed: u64,
}

#[derive(Debug, Default, Serialize)]
struct Stats {
    files: Counts,
    dirs: Counts,
    others: Counts,
    type_changed: u64,
    metadata_changed: u64,
    added_bytes: u64,
    removed_bytes: u64,
}

#[derive(Debug, Serialize)]
struct Change {
    path: String,
    modifier: char,
}

struct Differ<'r> {
    repo: &'r Repository,
    changes: Vec<Change>,
    stats: Stats,
    blobs_a: HashMap<BlobId, u64>,
    blobs_b: HashMap<BlobId, u64>,
}

fn display_path(path: &str, node: &Node) -> String {
    if node.is_dir() {
        format!("{path}/")
    } else {
        path.to_string()
    }
}

fn same_type(a: &Node, b: &Node) -> bool {
    std::mem::discriminant(&a.kind) == std::mem::discriminant(&b.kind)
}

fn metadata_differs(a: &Node, b: &Node) -> bool {
    a.mode != b.mode || a.uid != b.uid || a.gid != b.gid || a.mtime != b.mtime || a.xattrs != b.xattrs
}

fn content_differs(a: &Node, b: &Node) -> bool {
    match (&a.kind, &b.kind) {
        (NodeKind::File, NodeKind::File) => a.size != b.size || a.content != b.content,
        (NodeKind::Symlink { target: x }, NodeKind::Symlink { target: y }) => x != y,
        (NodeKind::CharDevice { rdev: x }, NodeKind::CharDevice { rdev: y })
        | (NodeKind::BlockDevice { rdev: x }, NodeKind::BlockDevice { rdev: y }) => x != y,
        _ => false,
    }
}

impl Differ<'_> {
    fn record(&mut self, path: &str, node: &Node, modifier: char) {
        self.changes.push(Change { path: display_path(path, node), modifier });
    }

    fn counts(&mut self, node: &Node) -> &mut Counts {
        match node.kind {
            NodeKind::File => &mut self.stats.files,
            NodeKind::Dir => &mut self.stats.dirs,
            _ => &mut self.stats.others,
        }
    }

    fn collect_blobs(&mut self, node: &Node, side_b: bool) {
        let map = if side_b { &mut self.blobs_b } else { &mut self.blobs_a };
        for c in &node.content {
            if let ContentRef::Blob { id, length } = c {
                map.insert(*id, *length as u64);
            }
        }
    }

    /// Reports `node` and everything below it as added (`side_b`) or removed.
    fn one_side(&mut self, path: &str, node: &Node, side_b: bool) -> Result<()> {
        self.record(path, node, if side_b { '+' } else { '-' });
        let c = self.counts(node);
        if side_b {
            c.new += 1
        } else {
            c.removed += 1
        }
        self.collect_blobs(node, side_b);
        if let Some(sub) = node.subtree.filter(|_| node.is_dir()) {
            let tree = self.repo.load_tree(&sub)?;
            for child in &tree.nodes {
                self.one_side(&join(path, &child.name_lossy()), child, side_b)?;
            }
        }
        Ok(())
    }

    fn children_one_side(&mut self, path: &str, node: &Node, side_b: bool) -> Result<()> {
        if let Some(sub) = node.subtree.filter(|_| node.is_dir()) {
            let tree = self.repo.load_tree(&sub)?;
            for child in &tree.nodes {
                self.one_side(&join(path, &child.name_lossy()), child, side_b)?;
            }
        }
        Ok(())
    }

    fn both(&mut self, path: &str, a: &Node, b: &Node) -> Result<()> {
        if !same_type(a, b) {
            self.record(path, b, 'T');
            self.stats.type_changed += 1;
            self.collect_blobs(a, false);
            self.collect_blobs(b, true);
            self.children_one_side(path, a, false)?;
            self.children_one_side(path, b, true)?;
            return Ok(());
        }
        self.collect_blobs(a, false);
        self.collect_blobs(b, true);
        if a.is_dir() {
            if metadata_differs(a, b) {
                self.record(path, b, 'U');
                self.stats.metadata_changed += 1;
            }
            if a.subtree != b.subtree {
                if let (Some(x), Some(y)) = (a.subtree, b.subtree) {
                    let (ta, tb) = (self.repo.load_tree(&x)?, self.repo.load_tree(&y)?);
                    self.trees(path, &ta, &tb)?;
                }
            }
        } else if content_differs(a, b) {
            self.record(path, b, 'M');
            self.counts(b).changed += 1;
        } else if metadata_differs(a, b) {
            self.record(path, b, 'U');
            self.stats.metadata_changed += 1;
        }
        Ok(())
    }

    fn trees(&mut self, dir: &str, a: &Tree, b: &Tree) -> Result<()> {
        let (mut i, mut j) = (0, 0);
        while i < a.nodes.len() || j < b.nodes.len() {
            let order = match (a.nodes.get(i), b.nodes.get(j)) {
                (Some(x), Some(y)) => x.name.cmp(&y.name),
                (Some(_), None) => Ordering::Less,
                _ => Ordering::Greater,
            };
            match order {
                Ordering::Less => {
                    let n = &a.nodes[i];
                    self.one_side(&join(dir, &n.name_lossy()), n, false)?;
                    i += 1;
                }
                Ordering::Greater => {
                    let n = &b.nodes[j];
                    self.one_side(&join(dir, &n.name_lossy()), n, true)?;
                    j += 1;
                }
                Ordering::Equal => {
                    let (x, y) = (&a.nodes[i], &b.nodes[j]);
                    self.both(&join(dir, &x.name_lossy()), x, y)?;
                    i += 1;
                    j += 1;
                }
            }
        }
        Ok(())
    }
}

/// Runs `arca diff`.
pub fn run(g: &GlobalOpts, a: &DiffArgs) -> Result<i32> {
    let mut opened = repo::open(g)?;
    let repo = &mut opened.repo;
    let (id_a, snap_a) = super::find_snapshot(repo, &a.a, &a.filter)?;
    let (id_b, snap_b) = super::find_snapshot(repo, &a.b, &a.filter)?;
    super::load_index_for(repo)?;
    let mut d =
        Differ { repo, changes: Vec::new(), stats: Stats::default(), blobs_a: HashMap::new(), blobs_b: HashMap::new() };
    if snap_a.tree != snap_b.tree {
        let (ta, tb) = (repo.load_tree(&snap_a.tree)?, repo.load_tree(&snap_b.tree)?);
        d.trees("/", &ta, &tb)?;
    }
    d.stats.added_bytes = d.blobs_b.iter().filter(|(id, _)| !d.blobs_a.contains_key(id)).map(|(_, l)| l).sum();
    d.stats.removed_bytes = d.blobs_a.iter().filter(|(id, _)| !d.blobs_b.contains_key(id)).map(|(_, l)| l).sum();

    if g.json {
        print_json(&json!({
            "source_snapshot": id_a.to_hex(),
            "target_snapshot": id_b.to_hex(),
            "changes": d.changes,
            "stats": d.stats,
        }))?;
        return Ok(crate::exit::OK);
    }
    if !g.quiet {
        println!("comparing snapshot {} to {}:", id_a.short(), id_b.short());
        println!();
    }
    for c in &d.changes {
        println!("{}    {}", c.modifier, c.path);
    }
    if !g.quiet {
        let s = &d.stats;
        println!();
        println!("Files:   {:>6} new, {:>6} removed, {:>6} changed", s.files.new, s.files.removed, s.files.changed);
        println!("Dirs:    {:>6} new, {:>6} removed", s.dirs.new, s.dirs.removed);
        println!("Others:  {:>6} new, {:>6} removed", s.others.new, s.others.removed);
        if s.type_changed > 0 {
            println!("Type changed: {}", s.type_changed);
        }
        println!("Metadata changed: {}", s.metadata_changed);
        println!("Added:   {}", output::bytes(s.added_bytes));
        println!("Removed: {}", output::bytes(s.removed_bytes));
    }
    Ok(crate::exit::OK)
}
