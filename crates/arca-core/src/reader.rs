//! Random-access reads of one stored file (a disk image, or any file of a mounted snapshot),
//! through a bounded cache of decrypted blobs. Serves the NBD export and the FUSE mount.
//!
//! Concurrency: a [`BlobCache`] may be shared by any number of readers and threads. Two threads
//! missing the same blob at once may both read it (harmless; the cache keeps one copy).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::id::BlobId;
use crate::repository::Repository;
use crate::tree::ContentRef;

/// A least-recently-used cache of blob plaintexts, bounded by their total size.
pub struct BlobCache {
    max_bytes: usize,
    inner: Mutex<CacheInner>,
}

#[derive(Default)]
struct CacheInner {
    map: HashMap<BlobId, (Arc<Vec<u8>>, u64)>,
    /// (blob, stamp) in use order; entries whose stamp is stale are skipped on eviction.
    order: VecDeque<(BlobId, u64)>,
    bytes: usize,
    clock: u64,
}

impl BlobCache {
    /// A cache holding at most `max_bytes` of plaintext (at least one blob is always kept).
    pub fn new(max_bytes: usize) -> BlobCache {
        BlobCache { max_bytes, inner: Mutex::new(CacheInner::default()) }
    }

    /// Bytes held now.
    pub fn bytes(&self) -> usize {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).bytes
    }

    fn get(&self, id: &BlobId) -> Option<Arc<Vec<u8>>> {
        let mut c = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        c.clock += 1;
        let stamp = c.clock;
        let data = {
            let entry = c.map.get_mut(id)?;
            entry.1 = stamp;
            entry.0.clone()
        };
        c.order.push_back((*id, stamp));
        Some(data)
    }

    fn put(&self, id: BlobId, data: Arc<Vec<u8>>) {
        let mut c = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        c.clock += 1;
        let stamp = c.clock;
        if let Some(old) = c.map.insert(id, (data.clone(), stamp)) {
            c.bytes -= old.0.len();
        }
        c.bytes += data.len();
        c.order.push_back((id, stamp));
        while c.bytes > self.max_bytes && c.map.len() > 1 {
            let Some((victim, s)) = c.order.pop_front() else { break };
            if c.map.get(&victim).is_some_and(|(_, cur)| *cur == s) && victim != id {
                if let Some((d, _)) = c.map.remove(&victim) {
                    c.bytes -= d.len();
                }
            }
        }
        // Keep the order queue from growing without bound under many hits.
        if c.order.len() > 4 * c.map.len() + 64 {
            let CacheInner { map, order, .. } = &mut *c;
            order.retain(|(b, s)| map.get(b).is_some_and(|(_, cur)| cur == s));
        }
    }

    /// A blob's plaintext, from the cache or the repository.
    pub fn blob(&self, repo: &Repository, id: &BlobId) -> Result<Arc<Vec<u8>>> {
        if let Some(d) = self.get(id) {
            return Ok(d);
        }
        let data = Arc::new(read_blob_naming_pack(repo, id)?);
        self.put(*id, data.clone());
        Ok(data)
    }
}

/// Reads a blob; a failure names the pack, so that an operator knows what to repair
/// (`read_blob` names it only for blobs that fail to decrypt, not for packs that cannot be read).
pub fn read_blob_naming_pack(repo: &Repository, id: &BlobId) -> Result<Vec<u8>> {
    repo.read_blob(id).map_err(|e| match repo.index().get(id) {
        Some((pack, _)) if !e.to_string().contains(&pack.id.to_hex()) => {
            e.context(format!("blob {id} in pack {}", pack.id))
        }
        _ => e,
    })
}

/// One file's content laid out by offset.
#[derive(Debug, Clone)]
pub struct ContentMap {
    content: Vec<ContentRef>,
    /// Start offset of each piece.
    starts: Vec<u64>,
    size: u64,
}

impl ContentMap {
    /// Lays out a content list.
    pub fn new(content: Vec<ContentRef>) -> ContentMap {
        let mut starts = Vec::with_capacity(content.len());
        let mut at = 0u64;
        for c in &content {
            starts.push(at);
            at += c.len();
        }
        ContentMap { content, starts, size: at }
    }

    /// Total bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The pieces with their start offsets.
    pub fn pieces(&self) -> impl Iterator<Item = (u64, &ContentRef)> {
        self.starts.iter().copied().zip(self.content.iter())
    }

    /// The runs of data and of holes (`ContentRef::Zeros`) covering `len` bytes from `offset`
    /// (cut at the end of the content), as `(length, is_hole)`, adjacent runs of one kind merged.
    /// Block status of NBD exports and sparse copies are answered from it.
    pub fn extents(&self, offset: u64, len: u64) -> Vec<(u64, bool)> {
        let end = offset.saturating_add(len).min(self.size);
        let mut runs: Vec<(u64, bool)> = Vec::new();
        if offset >= end {
            return runs;
        }
        let first = self.starts.partition_point(|&s| s <= offset) - 1;
        for (start, piece) in self.starts[first..].iter().zip(&self.content[first..]) {
            if *start >= end {
                break;
            }
            let from = (*start).max(offset);
            let to = (start + piece.len()).min(end);
            let hole = matches!(piece, ContentRef::Zeros { .. });
            match runs.last_mut() {
                Some((length, h)) if *h == hole => *length += to - from,
                _ => runs.push((to - from, hole)),
            }
        }
        runs
    }

    /// Reads up to `buf.len()` bytes at `offset`; returns how many (0 at or past the end).
    pub fn read_at(&self, repo: &Repository, cache: &BlobCache, offset: u64, buf: &mut [u8]) -> Result<usize> {
        if offset >= self.size || buf.is_empty() {
            return Ok(0);
        }
        let want = buf.len().min((self.size - offset) as usize);
        let mut i = self.starts.partition_point(|&s| s <= offset) - 1;
        let mut done = 0usize;
        while done < want {
            let piece = &self.content[i];
            let within = (offset + done as u64 - self.starts[i]) as usize;
            let take = (piece.len() as usize - within).min(want - done);
            match piece {
                ContentRef::Zeros { .. } => buf[done..done + take].fill(0),
                ContentRef::Blob { id, length } => {
                    let data = cache.blob(repo, id)?;
                    if data.len() != *length as usize {
                        return Err(Error::corrupt(format!(
                            "blob {id} holds {} bytes, the tree says {length}",
                            data.len()
                        )));
                    }
                    buf[done..done + take].copy_from_slice(&data[within..within + take]);
                }
            }
            done += take;
            i += 1;
        }
        Ok(want)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extents_merge_runs_and_cut_at_the_range() {
        let blob = |b: u8, length: u32| ContentRef::Blob { id: BlobId([b; 32]), length };
        let map = ContentMap::new(vec![
            blob(1, 100),
            blob(2, 100),
            ContentRef::Zeros { length: 300 },
            blob(3, 100),
            ContentRef::Zeros { length: 50 },
        ]);
        assert_eq!(map.extents(0, 650), [(200, false), (300, true), (100, false), (50, true)]);
        assert_eq!(map.extents(150, 100), [(50, false), (50, true)]);
        assert_eq!(map.extents(210, 10), [(10, true)]);
        assert_eq!(map.extents(600, 1000), [(50, true)], "cut at the end");
        assert!(map.extents(650, 10).is_empty());
        assert!(ContentMap::new(Vec::new()).extents(0, 10).is_empty());
    }

    #[test]
    fn cache_stays_bounded_and_keeps_recent_blobs() {
        let cache = BlobCache::new(10);
        let ids: Vec<BlobId> = (0..5u8).map(|i| BlobId([i; 32])).collect();
        for id in &ids {
            cache.put(*id, Arc::new(vec![0; 4]));
            assert!(cache.bytes() <= 10 || cache.inner.lock().unwrap().map.len() == 1);
        }
        assert!(cache.get(&ids[4]).is_some());
        assert!(cache.get(&ids[0]).is_none());
        // A hit makes a blob recent: it survives the next insertion, the other old one does not.
        assert!(cache.get(&ids[3]).is_some());
        cache.put(BlobId([9; 32]), Arc::new(vec![0; 4]));
        assert!(cache.get(&ids[3]).is_some());
        assert!(cache.get(&ids[4]).is_none());
    }

    #[test]
    fn content_map_finds_pieces() {
        let m = ContentMap::new(vec![ContentRef::Zeros { length: 5 }, ContentRef::Zeros { length: 7 }]);
        assert_eq!(m.size(), 12);
        let starts: Vec<u64> = m.pieces().map(|(s, _)| s).collect();
        assert_eq!(starts, vec![0, 5]);
    }
}
