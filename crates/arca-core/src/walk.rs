//! Depth-first traversal of a snapshot's trees, for listing, checking and statistics.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::id::BlobId;
use crate::repository::Repository;
use crate::tree::Node;

/// What the visitor wants next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visit {
    /// Go on, into this node if it is a directory.
    Continue,
    /// Do not descend into this directory.
    SkipChildren,
}

/// Visits every node under tree `root` (whose path is `base`), parents before children, in name
/// order. A tree that cannot be loaded is passed to `on_error` with its path, and skipped.
pub fn walk(
    repo: &Repository,
    root: &BlobId,
    base: &Path,
    visit: &mut dyn FnMut(&Path, &Node) -> Result<Visit>,
    on_error: &mut dyn FnMut(&Path, &BlobId, crate::Error) -> Result<()>,
) -> Result<()> {
    let tree = match repo.load_tree(root) {
        Ok(t) => t,
        Err(e) => return on_error(base, root, e),
    };
    for node in &tree.nodes {
        let path: PathBuf = base.join(OsStr::from_bytes(&node.name));
        if visit(&path, node)? == Visit::SkipChildren {
            continue;
        }
        if let (true, Some(sub)) = (node.is_dir(), node.subtree) {
            walk(repo, &sub, &path, visit, on_error)?;
        }
    }
    Ok(())
}
