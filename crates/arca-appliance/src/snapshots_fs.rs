//! Previous versions: a share's snapshots as a read-only directory tree, `/.snapshots/<time>/…`.
//!
//! Paths are resolved tree by tree from the snapshot's copy of the share folder (see
//! [`crate::catalog`]); file bytes are read blob by blob from the local repository as the client
//! asks for them, so a large old file is never held in memory whole. Only regular files and
//! directories are shown: symlinks and devices in a snapshot are left out of previous versions.

use std::io::SeekFrom;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arca_core::tree::{ContentRef, Node};
use bytes::Bytes;
use dav_server::fs::{DavDirEntry, DavFile, DavMetaData, FsError, FsFuture, FsResult, FsStream};
use futures_util::FutureExt;

use crate::catalog::{Catalog, ShareSnapshot, View};

/// The name of the virtual directory in each share's root.
pub const SNAPSHOTS_DIR: &str = ".snapshots";

/// Metadata of an entry of a snapshot tree.
#[derive(Debug, Clone)]
pub struct SnapMeta {
    len: u64,
    modified: SystemTime,
    dir: bool,
}

impl DavMetaData for SnapMeta {
    fn len(&self) -> u64 {
        self.len
    }
    fn modified(&self) -> FsResult<SystemTime> {
        Ok(self.modified)
    }
    fn is_dir(&self) -> bool {
        self.dir
    }
}

fn system_time(secs: i64, nanos: u32) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, nanos)
    } else {
        UNIX_EPOCH
    }
}

fn node_meta(n: &Node) -> SnapMeta {
    SnapMeta {
        len: if n.is_file() { n.size } else { 0 },
        modified: system_time(n.mtime.secs, n.mtime.nanos),
        dir: n.is_dir(),
    }
}

fn snap_meta(s: &ShareSnapshot) -> SnapMeta {
    SnapMeta { len: 0, modified: s.time.into(), dir: true }
}

struct Entry {
    name: Vec<u8>,
    meta: SnapMeta,
}

impl DavDirEntry for Entry {
    fn name(&self) -> Vec<u8> {
        self.name.clone()
    }
    fn metadata(&self) -> FsFuture<'_, Box<dyn DavMetaData>> {
        let m: Box<dyn DavMetaData> = Box::new(self.meta.clone());
        Box::pin(futures_util::future::ok(m))
    }
}

/// What a path under `/.snapshots` names.
enum Resolved {
    /// `/.snapshots` itself.
    Top,
    /// `/.snapshots/<time>`: the share folder as it was.
    Snapshot(ShareSnapshot),
    /// Something inside a snapshot.
    Node(Node),
}

/// One share's previous versions.
#[derive(Clone)]
pub struct SnapshotTree {
    catalog: Arc<Catalog>,
    share: String,
}

/// Runs a repository read off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> FsResult<T> + Send + 'static) -> FsResult<T> {
    tokio::task::spawn_blocking(f).await.map_err(|_| FsError::GeneralFailure)?
}

fn repo_error(e: arca_core::Error) -> FsError {
    tracing::warn!("previous versions: {e}");
    if matches!(e.kind(), arca_core::ErrorKind::NotFound | arca_core::ErrorKind::Missing) {
        FsError::NotFound
    } else {
        FsError::GeneralFailure
    }
}

impl SnapshotTree {
    /// Previous versions of share `share`.
    pub fn new(catalog: Arc<Catalog>, share: &str) -> SnapshotTree {
        SnapshotTree { catalog, share: share.to_string() }
    }

    fn resolve(view: &View, share: &str, rel: &[u8]) -> FsResult<Resolved> {
        let mut segs = rel.split(|b| *b == b'/').filter(|s| !s.is_empty());
        let Some(first) = segs.next() else { return Ok(Resolved::Top) };
        let snaps = view.shares.get(share).ok_or(FsError::NotFound)?;
        let snap = snaps.iter().find(|s| s.dir_name.as_bytes() == first).ok_or(FsError::NotFound)?;
        let mut current: Option<Node> = None;
        let mut tree = snap.root;
        for seg in segs {
            if let Some(n) = &current {
                tree = n.subtree.ok_or(FsError::NotFound)?;
            }
            let t = view.repo.load_tree(&tree).map_err(repo_error)?;
            let node = t.find(seg).ok_or(FsError::NotFound)?.clone();
            if !(node.is_dir() || node.is_file()) {
                return Err(FsError::NotFound);
            }
            current = Some(node);
        }
        Ok(match current {
            None => Resolved::Snapshot(snap.clone()),
            Some(n) => Resolved::Node(n),
        })
    }

    /// Metadata of `rel` (a path below `/.snapshots`, with its leading slash).
    pub async fn metadata(&self, rel: Vec<u8>) -> FsResult<Box<dyn DavMetaData>> {
        let view = self.catalog.view();
        let share = self.share.clone();
        let resolved = blocking(move || Self::resolve(&view, &share, &rel).map(|r| (r, view))).await?;
        let meta = match resolved {
            (Resolved::Top, view) => {
                let latest = view.shares.get(&self.share).and_then(|l| l.last()).map(|s| s.time.into());
                SnapMeta { len: 0, modified: latest.unwrap_or(UNIX_EPOCH), dir: true }
            }
            (Resolved::Snapshot(s), _) => snap_meta(&s),
            (Resolved::Node(n), _) => node_meta(&n),
        };
        Ok(Box::new(meta))
    }

    /// The entries of directory `rel`.
    pub async fn read_dir(&self, rel: Vec<u8>) -> FsResult<FsStream<Box<dyn DavDirEntry>>> {
        let view = self.catalog.view();
        let share = self.share.clone();
        let entries = blocking(move || {
            let tree = match Self::resolve(&view, &share, &rel)? {
                Resolved::Top => {
                    let list = view.shares.get(&share).cloned().unwrap_or_default();
                    return Ok(list
                        .iter()
                        .map(|s| Entry { name: s.dir_name.clone().into_bytes(), meta: snap_meta(s) })
                        .collect::<Vec<_>>());
                }
                Resolved::Snapshot(s) => s.root,
                Resolved::Node(n) => n.subtree.ok_or(FsError::Forbidden)?,
            };
            let t = view.repo.load_tree(&tree).map_err(repo_error)?;
            Ok(t.nodes
                .iter()
                .filter(|n| n.is_dir() || n.is_file())
                .map(|n| Entry { name: n.name.clone(), meta: node_meta(n) })
                .collect())
        })
        .await?;
        let boxed: Vec<FsResult<Box<dyn DavDirEntry>>> =
            entries.into_iter().map(|e| Ok(Box::new(e) as Box<dyn DavDirEntry>)).collect();
        Ok(Box::pin(futures_util::stream::iter(boxed)))
    }

    /// Opens file `rel` for reading.
    pub async fn open(&self, rel: Vec<u8>) -> FsResult<Box<dyn DavFile>> {
        let view = self.catalog.view();
        let share = self.share.clone();
        let v = view.clone();
        let node = match blocking(move || Self::resolve(&v, &share, &rel)).await? {
            Resolved::Node(n) if n.is_file() => n,
            _ => return Err(FsError::Forbidden),
        };
        let mut starts = Vec::with_capacity(node.content.len());
        let mut at = 0u64;
        for piece in &node.content {
            starts.push(at);
            at += piece.len();
        }
        let meta = node_meta(&node);
        Ok(Box::new(SnapFile { view, content: node.content, starts, size: at, pos: 0, meta, cached: None }))
    }
}

/// An open file of a snapshot.
struct SnapFile {
    view: Arc<View>,
    content: Vec<ContentRef>,
    /// Offset where each piece of `content` starts.
    starts: Vec<u64>,
    size: u64,
    pos: u64,
    meta: SnapMeta,
    /// The last blob read (piece number, bytes): sequential reads come in smaller steps.
    cached: Option<(usize, Bytes)>,
}

impl std::fmt::Debug for SnapFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapFile").field("size", &self.size).field("pos", &self.pos).finish()
    }
}

impl SnapFile {
    async fn piece(&mut self, i: usize) -> FsResult<Bytes> {
        if let Some((j, b)) = &self.cached {
            if *j == i {
                return Ok(b.clone());
            }
        }
        let bytes = match self.content[i] {
            ContentRef::Zeros { length } => Bytes::from(vec![0u8; length.min(1 << 20) as usize]),
            ContentRef::Blob { id, .. } => {
                let view = self.view.clone();
                Bytes::from(blocking(move || view.repo.read_blob(&id).map_err(repo_error)).await?)
            }
        };
        self.cached = Some((i, bytes.clone()));
        Ok(bytes)
    }
}

impl DavFile for SnapFile {
    fn metadata(&mut self) -> FsFuture<'_, Box<dyn DavMetaData>> {
        let m: Box<dyn DavMetaData> = Box::new(self.meta.clone());
        Box::pin(futures_util::future::ok(m))
    }
    fn write_buf(&mut self, _buf: Box<dyn bytes::Buf + Send>) -> FsFuture<'_, ()> {
        Box::pin(futures_util::future::err(FsError::Forbidden))
    }
    fn write_bytes(&mut self, _buf: Bytes) -> FsFuture<'_, ()> {
        Box::pin(futures_util::future::err(FsError::Forbidden))
    }
    fn read_bytes(&mut self, count: usize) -> FsFuture<'_, Bytes> {
        async move {
            if self.pos >= self.size || count == 0 {
                return Ok(Bytes::new());
            }
            let i = self.starts.partition_point(|s| *s <= self.pos) - 1;
            let within = self.pos - self.starts[i];
            let piece_len = self.content[i].len();
            let bytes = if let ContentRef::Zeros { .. } = self.content[i] {
                let n = (piece_len - within).min(count as u64).min(1 << 20) as usize;
                Bytes::from(vec![0u8; n])
            } else {
                let blob = self.piece(i).await?;
                if blob.len() as u64 != piece_len {
                    tracing::warn!("previous versions: a blob's length differs from its tree entry");
                    return Err(FsError::GeneralFailure);
                }
                let end = (within as usize + count).min(blob.len());
                blob.slice(within as usize..end)
            };
            self.pos += bytes.len() as u64;
            Ok(bytes)
        }
        .boxed()
    }
    fn seek(&mut self, pos: SeekFrom) -> FsFuture<'_, u64> {
        let target = match pos {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.size.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        let result = match target {
            Some(p) => {
                self.pos = p;
                Ok(p)
            }
            None => Err(FsError::GeneralFailure),
        };
        Box::pin(futures_util::future::ready(result))
    }
    fn flush(&mut self) -> FsFuture<'_, ()> {
        Box::pin(futures_util::future::ok(()))
    }
}

/// Whether `path` (a share-relative DAV path, leading slash) lies in the snapshots directory;
/// returns the rest of it (with its leading slash) if so.
pub fn under_snapshots(path: &[u8]) -> Option<Vec<u8>> {
    let trimmed = path.strip_prefix(b"/").unwrap_or(path);
    let rest = trimmed.strip_prefix(SNAPSHOTS_DIR.as_bytes())?;
    if rest.is_empty() {
        return Some(b"/".to_vec());
    }
    if rest.starts_with(b"/") {
        return Some(rest.to_vec());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_paths_are_recognised_exactly() {
        assert_eq!(under_snapshots(b"/.snapshots"), Some(b"/".to_vec()));
        assert_eq!(under_snapshots(b"/.snapshots/"), Some(b"/".to_vec()));
        assert_eq!(under_snapshots(b"/.snapshots/2026/a.txt"), Some(b"/2026/a.txt".to_vec()));
        assert_eq!(under_snapshots(b"/.snapshotsX"), None);
        assert_eq!(under_snapshots(b"/docs/.snapshots"), None);
    }
}
