//! Walking snapshot trees: resolving a path inside a snapshot and visiting every node below it.

use anyhow::Result;
pub use arca_core::browse::{join, ContentReader, Target};
use arca_core::id::BlobId;
use arca_core::repository::Repository;
use arca_core::tree::{Node, Tree};

/// Resolves an absolute path inside the snapshot whose root tree is `root` (see
/// [`arca_core::browse::resolve`]).
pub fn resolve(repo: &Repository, root: &BlobId, path: &str) -> Result<Target> {
    Ok(arca_core::browse::resolve(repo, root, path)?)
}

/// Visits every node of `tree` (whose absolute path is `dir`), depth first in name order, each
/// directory before its entries. With `recursive` false only the direct entries are visited.
/// `visit` returns whether to descend into a directory node.
pub fn walk(
    repo: &Repository,
    tree: &Tree,
    dir: &str,
    recursive: bool,
    visit: &mut dyn FnMut(&str, &Node) -> Result<bool>,
) -> Result<()> {
    for node in &tree.nodes {
        let path = join(dir, &node.name_lossy());
        let descend = visit(&path, node)?;
        if recursive && descend {
            if let Some(sub) = node.subtree.filter(|_| node.is_dir()) {
                let subtree = repo.load_tree(&sub)?;
                walk(repo, &subtree, &path, recursive, visit)?;
            }
        }
    }
    Ok(())
}
