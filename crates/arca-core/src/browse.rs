//! Finding things inside a snapshot by path and reading a file's bytes back: what `arca ls`,
//! `arca dump`, the web portal's restore pages and mounts share.

use crate::error::{Error, Result};
use crate::id::BlobId;
use crate::repository::Repository;
use crate::tree::{ContentRef, Node, Tree};

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
/// `..` is refused rather than interpreted: paths come from users and URLs.
pub fn resolve(repo: &Repository, root: &BlobId, path: &str) -> Result<Target> {
    let comps = components(path);
    let mut tree = repo.load_tree(root)?;
    if comps.is_empty() {
        return Ok(Target::Root(tree));
    }
    let mut here = String::from("/");
    for (i, c) in comps.iter().enumerate() {
        if *c == ".." {
            return Err(Error::invalid(format!("path {path:?} must not contain `..`")));
        }
        let node = tree
            .find(c.as_bytes())
            .cloned()
            .ok_or_else(|| Error::not_found(format!("{path} is not in the snapshot (no {c:?} in {here})")))?;
        here = join(&here, c);
        if i + 1 == comps.len() {
            return Ok(Target::Node(here, Box::new(node)));
        }
        let sub = node
            .subtree
            .filter(|_| node.is_dir())
            .ok_or_else(|| Error::not_found(format!("{here} is not a directory in the snapshot")))?;
        tree = repo.load_tree(&sub)?;
    }
    unreachable!("the loop returns on the last component")
}

/// Reads a file's content piece by piece, fetching one blob at a time (memory stays at one blob,
/// at most a few MiB, whatever the file's size).
pub struct ContentReader<'r> {
    repo: &'r Repository,
    pieces: Vec<ContentRef>,
    /// The next piece to read.
    next: usize,
    buf: Vec<u8>,
    pos: usize,
    zeros_left: u64,
    /// Bytes still to skip before the first byte returned (a ranged read).
    skip: u64,
}

impl<'r> ContentReader<'r> {
    /// A reader over `node`'s content.
    pub fn new(repo: &'r Repository, node: &Node) -> Self {
        Self::starting_at(repo, node, 0)
    }

    /// A reader over `node`'s content from byte `offset` on (resumed downloads, HTTP ranges).
    /// Whole pieces before the offset are skipped without being read.
    pub fn starting_at(repo: &'r Repository, node: &Node, offset: u64) -> Self {
        let mut skip = offset;
        let mut first = 0;
        while first < node.content.len() && skip >= node.content[first].len() && skip > 0 {
            skip -= node.content[first].len();
            first += 1;
        }
        ContentReader { repo, pieces: node.content.clone(), next: first, buf: Vec::new(), pos: 0, zeros_left: 0, skip }
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
            let skip = std::mem::take(&mut self.skip);
            let piece = self.pieces.get(self.next).copied();
            self.next += 1;
            match piece {
                None => return Ok(0),
                Some(ContentRef::Zeros { length }) => self.zeros_left = length - skip,
                Some(ContentRef::Blob { id, length }) => {
                    let data = self.repo.read_blob(&id).map_err(std::io::Error::other)?;
                    if data.len() != length as usize {
                        return Err(std::io::Error::other(format!(
                            "blob {id} has {} bytes, the tree says {length}",
                            data.len()
                        )));
                    }
                    self.buf = data;
                    self.pos = skip as usize;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_into_components() {
        assert_eq!(components("/a//b/./c/"), vec!["a", "b", "c"]);
        assert!(components("/").is_empty());
        assert_eq!(join("/", "x"), "/x");
        assert_eq!(join("/a", "x"), "/a/x");
    }
}
