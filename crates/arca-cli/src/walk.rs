//! Walking snapshot trees: resolving a path inside a snapshot and visiting every node below it.

use anyhow::{anyhow, Result};
use arca_core::id::BlobId;
use arca_core::repository::Repository;
use arca_core::tree::{ContentRef, Node, Tree};

/// `dir` + `/` + `name`, with `/` as the root.
pub fn join(dir: &str, name: &str) -> String {
    if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// A path as its components, without empty and `.` parts.
pub fn components(path: &str) -> Vec<&str> {
    path.split('/').filter(|c| !c.is_empty() && *c != ".").collect()
}

/// What a path inside a snapshot names.
pub enum Target {
    /// The snapshot's root (`/`): a tree without a node of its own.
    Root(Tree),
    /// An entry, with its absolute path inside the snapshot.
    Node(String, Box<Node>),
}

/// Resolves an absolute path (`/`, `/home/x/file`) inside the snapshot whose root tree is `root`.
pub fn resolve(repo: &Repository, root: &BlobId, path: &str) -> Result<Target> {
    let comps = components(path);
    let mut tree = repo.load_tree(root)?;
    if comps.is_empty() {
        return Ok(Target::Root(tree));
    }
    let mut here = String::from("/");
    for (i, c) in comps.iter().enumerate() {
        if *c == ".." {
            return Err(anyhow!("path {path:?} must not contain `..`"));
        }
        let node = tree
            .find(c.as_bytes())
            .cloned()
            .ok_or_else(|| anyhow!("{path} is not in the snapshot (no {c:?} in {here})"))?;
        here = join(&here, c);
        if i + 1 == comps.len() {
            return Ok(Target::Node(here, Box::new(node)));
        }
        let sub = node
            .subtree
            .filter(|_| node.is_dir())
            .ok_or_else(|| anyhow!("{here} is not a directory in the snapshot"))?;
        tree = repo.load_tree(&sub)?;
    }
    unreachable!("the loop returns on the last component")
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

/// Reads a file's content piece by piece, fetching one blob at a time.
pub struct ContentReader<'r> {
    repo: &'r Repository,
    pieces: std::vec::IntoIter<ContentRef>,
    buf: Vec<u8>,
    pos: usize,
    zeros_left: u64,
}

impl<'r> ContentReader<'r> {
    /// A reader over `node`'s content.
    pub fn new(repo: &'r Repository, node: &Node) -> Self {
        ContentReader { repo, pieces: node.content.clone().into_iter(), buf: Vec::new(), pos: 0, zeros_left: 0 }
    }
}

impl std::io::Read for ContentReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if self.pos < self.buf.len() {
                let n = out.len().min(self.buf.len() - self.pos);
                out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
                self.pos += n;
                return Ok(n);
            }
            if self.zeros_left > 0 {
                let n = (out.len() as u64).min(self.zeros_left) as usize;
                out[..n].fill(0);
                self.zeros_left -= n as u64;
                return Ok(n);
            }
            match self.pieces.next() {
                None => return Ok(0),
                Some(ContentRef::Zeros { length }) => self.zeros_left = length,
                Some(ContentRef::Blob { id, length }) => {
                    let data = self.repo.read_blob(&id).map_err(std::io::Error::other)?;
                    if data.len() != length as usize {
                        return Err(std::io::Error::other(format!(
                            "blob {id} has {} bytes, the tree says {length}",
                            data.len()
                        )));
                    }
                    self.buf = data;
                    self.pos = 0;
                }
            }
        }
    }
}
