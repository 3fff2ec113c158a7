//! Index files and the in-memory index (docs/format.md §"Index").
//!
//! An index file is an envelope (`ARCAINDX`) whose manifest lists the packs it describes and whose
//! body is `version:u8 || postcard(Vec<IndexPack>)`. The in-memory [`Index`] maps every blob id to
//! its pack, offset and lengths.
//!
//! Memory: a [`BlobLocation`] is 16 bytes and the key 32, so an entry costs about 56 bytes in the
//! hash table (48 bytes of payload plus control bytes and slack).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::crypto::{MasterKey, SALT_LEN};
use crate::envelope;
use crate::error::{Error, Result};
use crate::id::{BlobId, PackId};
use crate::pack::{BlobType, PackEntry, PackKind};

/// Envelope magic of index files.
pub const INDEX_MAGIC: &[u8; 8] = b"ARCAINDX";
/// Index body version.
pub const INDEX_VERSION: u8 = 1;

/// One pack as an index file describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexPack {
    /// The pack.
    pub id: PackId,
    /// Data or metadata.
    pub kind: PackKind,
    /// The pack's salt (so blobs decrypt without reading the pack's first bytes).
    pub salt: [u8; SALT_LEN],
    /// The pack's size in bytes.
    pub size: u64,
    /// Its blobs.
    pub blobs: Vec<PackEntry>,
}

/// Encodes an index file.
pub fn encode_index(master: &MasterKey, packs: &[IndexPack]) -> Vec<u8> {
    let manifest: Vec<(PackKind, PackId)> = packs.iter().map(|p| (p.kind, p.id)).collect();
    let mut body = vec![INDEX_VERSION];
    body.extend_from_slice(&postcard::to_stdvec(packs).expect("index serialises"));
    envelope::seal(master, INDEX_MAGIC, &manifest, &body)
}

/// Decodes an index file; checks that its manifest matches its body.
pub fn decode_index(master: &MasterKey, bytes: &[u8]) -> Result<Vec<IndexPack>> {
    let (manifest, body) = envelope::open(master, INDEX_MAGIC, bytes)?;
    if body.first() != Some(&INDEX_VERSION) {
        return Err(Error::corrupt("unsupported index version"));
    }
    let packs: Vec<IndexPack> =
        postcard::from_bytes(&body[1..]).map_err(|e| Error::corrupt(format!("index is malformed: {e}")))?;
    if packs.len() != manifest.len() || packs.iter().zip(&manifest).any(|(p, m)| (p.kind, p.id) != *m) {
        return Err(Error::corrupt("index manifest does not match its body"));
    }
    Ok(packs)
}

/// Where a blob is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobLocation {
    /// Position of the pack in [`Index::packs`].
    pub pack: u32,
    /// Offset of the sealed blob.
    pub offset: u32,
    /// Sealed length.
    pub length: u32,
    /// Plaintext length (top bit: compressed; next bit: tree).
    raw_and_flags: u32,
}

const COMPRESSED_BIT: u32 = 1 << 31;
const TREE_BIT: u32 = 1 << 30;

impl BlobLocation {
    /// Plaintext length.
    pub fn raw_length(&self) -> u32 {
        self.raw_and_flags & !(COMPRESSED_BIT | TREE_BIT)
    }
    /// Whether the payload is compressed.
    pub fn compressed(&self) -> bool {
        self.raw_and_flags & COMPRESSED_BIT != 0
    }
    /// Blob type.
    pub fn blob_type(&self) -> BlobType {
        if self.raw_and_flags & TREE_BIT != 0 {
            BlobType::Tree
        } else {
            BlobType::Data
        }
    }
    /// The pack entry this location stands for.
    pub fn entry(&self, id: BlobId) -> PackEntry {
        PackEntry {
            blob_type: self.blob_type(),
            id,
            offset: self.offset,
            length: self.length,
            raw_length: self.raw_length(),
            compressed: self.compressed(),
        }
    }
}

/// A pack known to the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackInfo {
    /// Its id.
    pub id: PackId,
    /// Data or metadata.
    pub kind: PackKind,
    /// Its salt.
    pub salt: [u8; SALT_LEN],
    /// Its size.
    pub size: u64,
}

/// Every blob of a repository, in memory.
#[derive(Debug, Default)]
pub struct Index {
    packs: Vec<PackInfo>,
    pack_pos: HashMap<PackId, u32>,
    blobs: HashMap<BlobId, BlobLocation>,
    /// Further copies of blobs stored in more than one pack (two backups running at once each
    /// store a blob both lack; a backup stores again a blob whose pack is marked). Usually empty.
    copies: HashMap<BlobId, Vec<BlobLocation>>,
}

impl Index {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a pack and its blobs. A pack already known is ignored; a blob already known keeps its
    /// first location as the one [`Index::get`] returns, and the new one is kept as a copy (see
    /// [`Index::locations`]).
    pub fn add_pack(&mut self, pack: &IndexPack) {
        if self.pack_pos.contains_key(&pack.id) {
            return;
        }
        let pos = self.packs.len() as u32;
        self.packs.push(PackInfo { id: pack.id, kind: pack.kind, salt: pack.salt, size: pack.size });
        self.pack_pos.insert(pack.id, pos);
        for e in &pack.blobs {
            let mut flags = e.raw_length & !(COMPRESSED_BIT | TREE_BIT);
            if e.compressed {
                flags |= COMPRESSED_BIT;
            }
            if e.blob_type == BlobType::Tree {
                flags |= TREE_BIT;
            }
            let loc = BlobLocation { pack: pos, offset: e.offset, length: e.length, raw_and_flags: flags };
            match self.blobs.entry(e.id) {
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(loc);
                }
                std::collections::hash_map::Entry::Occupied(_) => self.copies.entry(e.id).or_default().push(loc),
            }
        }
    }

    /// Every known location of a blob: the one [`Index::get`] returns first, then its copies in
    /// other packs.
    pub fn locations<'a>(&'a self, id: &BlobId) -> impl Iterator<Item = (&'a PackInfo, BlobLocation)> + 'a {
        self.blobs
            .get(id)
            .into_iter()
            .chain(self.copies.get(id).into_iter().flatten())
            .map(|loc| (&self.packs[loc.pack as usize], *loc))
    }

    /// Where a blob is, if known.
    pub fn get(&self, id: &BlobId) -> Option<(&PackInfo, BlobLocation)> {
        self.blobs.get(id).map(|loc| (&self.packs[loc.pack as usize], *loc))
    }

    /// Whether a blob is known.
    pub fn contains(&self, id: &BlobId) -> bool {
        self.blobs.contains_key(id)
    }

    /// A pack by position.
    pub fn pack(&self, pos: u32) -> &PackInfo {
        &self.packs[pos as usize]
    }

    /// A pack by id.
    pub fn pack_by_id(&self, id: &PackId) -> Option<&PackInfo> {
        self.pack_pos.get(id).map(|&p| &self.packs[p as usize])
    }

    /// Every known pack.
    pub fn packs(&self) -> &[PackInfo] {
        &self.packs
    }

    /// Every blob and its location.
    pub fn blobs(&self) -> impl Iterator<Item = (&BlobId, &BlobLocation)> {
        self.blobs.iter()
    }

    /// Number of blobs.
    pub fn len(&self) -> usize {
        self.blobs.len()
    }

    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.blobs.is_empty()
    }

    /// Removes every blob location in a pack of `packs` (after those packs were found missing or
    /// were marked for deletion), keeping the pack records so positions stay valid. A blob with a
    /// copy in another pack stays known there.
    pub fn forget_packs(&mut self, packs: &std::collections::HashSet<PackId>) {
        let doomed: std::collections::HashSet<u32> =
            packs.iter().filter_map(|p| self.pack_pos.get(p).copied()).collect();
        if doomed.is_empty() {
            return;
        }
        let copies = &mut self.copies;
        copies.retain(|_, locs| {
            locs.retain(|l| !doomed.contains(&l.pack));
            !locs.is_empty()
        });
        self.blobs.retain(|id, loc| {
            if !doomed.contains(&loc.pack) {
                return true;
            }
            let Some(others) = copies.get_mut(id) else { return false };
            *loc = others.remove(0);
            if others.is_empty() {
                copies.remove(id);
            }
            true
        });
        for p in packs {
            self.pack_pos.remove(p);
        }
    }

    /// The index entries of every pack, copies included, grouped by pack position (for copying
    /// and checking packs).
    pub fn entries_by_pack(&self) -> HashMap<u32, Vec<PackEntry>> {
        let mut out: HashMap<u32, Vec<PackEntry>> = HashMap::new();
        for (id, loc) in &self.blobs {
            out.entry(loc.pack).or_default().push(loc.entry(*id));
        }
        for (id, locs) in &self.copies {
            for loc in locs {
                out.entry(loc.pack).or_default().push(loc.entry(*id));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pack(n: u8, blobs: usize) -> IndexPack {
        IndexPack {
            id: PackId([n; 32]),
            kind: if n.is_multiple_of(2) { PackKind::Data } else { PackKind::Meta },
            salt: [n; 32],
            size: 1000,
            blobs: (0..blobs)
                .map(|i| PackEntry {
                    blob_type: if n.is_multiple_of(2) { BlobType::Data } else { BlobType::Tree },
                    id: BlobId([n.wrapping_mul(31).wrapping_add(i as u8); 32]),
                    offset: 41 + i as u32 * 10,
                    length: 10,
                    raw_length: 7 + i as u32,
                    compressed: i % 2 == 0,
                })
                .collect(),
        }
    }

    #[test]
    fn locations_keep_flags() {
        let mut idx = Index::new();
        let p = pack(3, 4);
        idx.add_pack(&p);
        for e in &p.blobs {
            let (info, loc) = idx.get(&e.id).unwrap();
            assert_eq!(info.id, p.id);
            assert_eq!(loc.entry(e.id), *e);
        }
    }

    proptest! {
        #[test]
        fn index_file_round_trip(n in 1u8..20, blobs in 0usize..30) {
            let master = MasterKey::generate();
            let packs: Vec<IndexPack> = (0..n).map(|i| pack(i, blobs)).collect();
            let bytes = encode_index(&master, &packs);
            prop_assert_eq!(decode_index(&master, &bytes).unwrap(), packs);
        }

        #[test]
        fn damaged_index_is_refused(pos in 0usize..400, bit in 0u8..8) {
            let master = MasterKey::generate();
            let bytes = encode_index(&master, &[pack(1, 3), pack(2, 2)]);
            let mut bad = bytes.clone();
            let pos = pos % bad.len();
            bad[pos] ^= 1 << bit;
            prop_assert!(decode_index(&master, &bad).is_err());
        }
    }
}
