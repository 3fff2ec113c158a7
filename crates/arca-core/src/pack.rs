//! Pack files: many encrypted blobs in one immutable object (docs/format.md §"Packs").
//!
//! ```text
//! pack   = "ARCAPACK" version:u8 salt:[32]  blob*  header  header_len:u32le
//! blob   = AES-256-GCM(key(salt), nonce = (Blob, offset), aad = type || id, payload) -- payload is
//!          zstd-compressed plaintext or the plaintext itself, as the entry says
//! header = AES-256-GCM(key(salt), nonce = (PackHeader, 0), aad = "ARCAPACK header",
//!          version:u8 || postcard(Vec<PackEntry>))
//! ```
//! A pack's name is the BLAKE3 of all its bytes, so the server can check it without keys. The
//! header repeats what the index says, so a lost index can be rebuilt from the packs alone.

use serde::{Deserialize, Serialize};

use crate::crypto::{random_salt, MasterKey, NonceDomain, ObjectKey, SALT_LEN, TAG_LEN};
use crate::error::{Error, Result};
use crate::id::{content_hash, BlobId, PackId};

/// Magic at the start of every pack.
pub const PACK_MAGIC: &[u8; 8] = b"ARCAPACK";
/// Pack format version.
pub const PACK_VERSION: u8 = 1;
/// Bytes before the first blob.
pub const PACK_PREFIX_LEN: usize = 8 + 1 + SALT_LEN;
const HEADER_AAD: &[u8] = b"ARCAPACK header";
/// The largest blob plaintext (trees of huge directories included). The index keeps lengths in
/// 30 bits, and a reader must not be talked into allocating more than this for one blob.
pub const MAX_BLOB_SIZE: u32 = (1 << 30) - 1;

/// What a blob holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BlobType {
    /// A chunk of file content.
    Data,
    /// A tree (directory listing).
    Tree,
}

impl BlobType {
    fn byte(self) -> u8 {
        match self {
            BlobType::Data => 0,
            BlobType::Tree => 1,
        }
    }
}

/// Which pack stream a pack belongs to: file data, or metadata (trees).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PackKind {
    /// Packs of file-content blobs.
    Data,
    /// Packs of tree blobs.
    Meta,
}

impl PackKind {
    /// The byte used in manifests.
    pub fn byte(self) -> u8 {
        match self {
            PackKind::Data => 0,
            PackKind::Meta => 1,
        }
    }
    /// Parses a manifest byte.
    pub fn from_byte(b: u8) -> Option<PackKind> {
        match b {
            0 => Some(PackKind::Data),
            1 => Some(PackKind::Meta),
            _ => None,
        }
    }
    /// Where packs of this kind are stored.
    pub fn object_kind(self) -> arca_store::ObjectKind {
        match self {
            PackKind::Data => arca_store::ObjectKind::DataPack,
            PackKind::Meta => arca_store::ObjectKind::MetaPack,
        }
    }
    /// The kind of pack a blob type goes into.
    pub fn for_blob(t: BlobType) -> PackKind {
        match t {
            BlobType::Data => PackKind::Data,
            BlobType::Tree => PackKind::Meta,
        }
    }
}

/// One blob's place inside its pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackEntry {
    /// Data or tree.
    pub blob_type: BlobType,
    /// The blob's id.
    pub id: BlobId,
    /// Byte offset of the sealed blob in the pack.
    pub offset: u32,
    /// Length of the sealed blob (payload plus tag).
    pub length: u32,
    /// Length of the plaintext.
    pub raw_length: u32,
    /// Whether the payload is zstd-compressed.
    pub compressed: bool,
}

impl PackEntry {
    /// The associated data that binds a sealed blob to its type and id.
    fn aad(blob_type: BlobType, id: &BlobId) -> [u8; 33] {
        let mut aad = [0u8; 33];
        aad[0] = blob_type.byte();
        aad[1..].copy_from_slice(id.as_bytes());
        aad
    }
}

/// Builds one pack in memory.
pub struct PackWriter {
    key: ObjectKey,
    salt: [u8; SALT_LEN],
    buf: Vec<u8>,
    entries: Vec<PackEntry>,
}

/// A finished pack, ready to store.
pub struct FinishedPack {
    /// Its name.
    pub id: PackId,
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// The blobs inside.
    pub entries: Vec<PackEntry>,
    /// The salt (kept in the index so a blob can be decrypted without reading the pack's start).
    pub salt: [u8; SALT_LEN],
}

impl PackWriter {
    /// Starts an empty pack with a fresh salt.
    pub fn new(master: &MasterKey, capacity: usize) -> Self {
        let salt = random_salt();
        let mut buf = Vec::with_capacity(capacity + (capacity >> 4));
        buf.extend_from_slice(PACK_MAGIC);
        buf.push(PACK_VERSION);
        buf.extend_from_slice(&salt);
        PackWriter { key: master.object_key(&salt), salt, buf, entries: Vec::new() }
    }

    /// Bytes so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether no blob was added.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Seals and appends one blob. `payload` is the (possibly compressed) plaintext.
    pub fn add(&mut self, blob_type: BlobType, id: BlobId, payload: &[u8], raw_length: u32, compressed: bool) {
        let offset = self.buf.len();
        // Sealed in place at the end of the pack: one copy of the payload, not two.
        self.buf.extend_from_slice(payload);
        let tag = self.key.seal_at(
            NonceDomain::Blob,
            offset as u64,
            &PackEntry::aad(blob_type, &id),
            &mut self.buf[offset..],
        );
        self.buf.extend_from_slice(&tag);
        self.entries.push(PackEntry {
            blob_type,
            id,
            offset: offset as u32,
            length: (payload.len() + TAG_LEN) as u32,
            raw_length,
            compressed,
        });
    }

    /// Appends the header and names the pack.
    pub fn finish(mut self) -> FinishedPack {
        let mut header = vec![PACK_VERSION];
        header.extend_from_slice(&postcard::to_stdvec(&self.entries).expect("entries serialise"));
        self.key.seal_in_place(NonceDomain::PackHeader, 0, HEADER_AAD, &mut header);
        let header_len = header.len() as u32;
        self.buf.extend_from_slice(&header);
        self.buf.extend_from_slice(&header_len.to_le_bytes());
        let id = PackId(content_hash(&self.buf));
        FinishedPack { id, bytes: self.buf, entries: self.entries, salt: self.salt }
    }
}

/// Reads the salt from a pack's first bytes.
pub fn parse_prefix(prefix: &[u8]) -> Result<[u8; SALT_LEN]> {
    if prefix.len() < PACK_PREFIX_LEN || &prefix[..8] != PACK_MAGIC {
        return Err(Error::corrupt("not an arca pack (bad magic)"));
    }
    if prefix[8] != PACK_VERSION {
        return Err(Error::corrupt(format!("unsupported pack version {}", prefix[8])));
    }
    Ok(prefix[9..PACK_PREFIX_LEN].try_into().expect("length checked"))
}

/// Parses and authenticates a whole pack's header; also checks every entry lies inside the pack.
pub fn read_header(master: &MasterKey, pack: &[u8]) -> Result<(Vec<PackEntry>, [u8; SALT_LEN])> {
    let salt = parse_prefix(pack)?;
    if pack.len() < PACK_PREFIX_LEN + 4 + TAG_LEN + 1 {
        return Err(Error::corrupt("pack is truncated"));
    }
    let header_len = u32::from_le_bytes(pack[pack.len() - 4..].try_into().expect("4 bytes")) as usize;
    let header_end = pack.len() - 4;
    if header_len > header_end - PACK_PREFIX_LEN || header_len < TAG_LEN + 1 {
        return Err(Error::corrupt("pack header length is impossible (truncated pack?)"));
    }
    let header_start = header_end - header_len;
    let key = master.object_key(&salt);
    let plain = key
        .open(NonceDomain::PackHeader, 0, HEADER_AAD, &pack[header_start..header_end])
        .map_err(|_| Error::corrupt("pack header fails authentication"))?;
    if plain.first() != Some(&PACK_VERSION) {
        return Err(Error::corrupt("unsupported pack header version"));
    }
    let entries: Vec<PackEntry> =
        postcard::from_bytes(&plain[1..]).map_err(|e| Error::corrupt(format!("pack header is malformed: {e}")))?;
    for e in &entries {
        let end = e.offset as usize + e.length as usize;
        if (e.offset as usize) < PACK_PREFIX_LEN || end > header_start || (e.length as usize) < TAG_LEN {
            return Err(Error::corrupt(format!("pack header places blob {} outside the pack", e.id)));
        }
    }
    Ok((entries, salt))
}

/// Decrypts and decompresses one blob from its sealed bytes, and checks its id.
pub fn open_blob(master: &MasterKey, salt: &[u8; SALT_LEN], entry: &PackEntry, sealed: &[u8]) -> Result<Vec<u8>> {
    open_blob_with(&master.object_key(salt), master, entry, sealed)
}

/// As [`open_blob`], with the pack's key already derived (restores open many blobs per pack).
pub fn open_blob_with(key: &ObjectKey, master: &MasterKey, entry: &PackEntry, sealed: &[u8]) -> Result<Vec<u8>> {
    if entry.raw_length > MAX_BLOB_SIZE {
        return Err(Error::corrupt(format!(
            "blob {} claims an impossible size of {} bytes",
            entry.id, entry.raw_length
        )));
    }
    let payload = key
        .open(NonceDomain::Blob, entry.offset as u64, &PackEntry::aad(entry.blob_type, &entry.id), sealed)
        .map_err(|_| Error::corrupt(format!("blob {} fails authentication", entry.id)))?;
    let plain = if entry.compressed {
        decompress(&payload, entry.raw_length as usize)
            .map_err(|e| Error::corrupt(format!("blob {} does not decompress: {e}", entry.id)))?
    } else {
        payload
    };
    if plain.len() != entry.raw_length as usize || master.blob_id(&plain) != entry.id {
        return Err(Error::corrupt(format!("blob {} has the wrong content", entry.id)));
    }
    Ok(plain)
}

/// zstd-compresses `data` at `level`; `None` if that would not save at least 1/32 of the size
/// (incompressible data is stored raw, which restores faster too).
pub fn compress(data: &[u8], level: i32) -> Option<Vec<u8>> {
    if data.len() < 64 {
        return None;
    }
    thread_local! {
        static CCTX: std::cell::RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> = const { std::cell::RefCell::new(None) };
    }
    let bound = data.len() - data.len() / 32;
    CCTX.with(|cell| {
        let mut cell = cell.borrow_mut();
        if cell.as_ref().map(|(l, _)| *l) != Some(level) {
            *cell = Some((level, zstd::bulk::Compressor::new(level).ok()?));
        }
        let (_, cctx) = cell.as_mut()?;
        let mut out = Vec::with_capacity(bound);
        // SAFETY-free: compress_to_buffer fails (Err) when the output does not fit `bound`.
        match cctx.compress_to_buffer(data, &mut out) {
            Ok(n) if n < bound => {
                out.truncate(n);
                Some(out)
            }
            _ => None,
        }
    })
}

/// Decompresses a blob whose plaintext length is known.
pub fn decompress(data: &[u8], raw_length: usize) -> std::io::Result<Vec<u8>> {
    thread_local! {
        static DCTX: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { std::cell::RefCell::new(None) };
    }
    DCTX.with(|cell| {
        let mut cell = cell.borrow_mut();
        if cell.is_none() {
            *cell = Some(zstd::bulk::Decompressor::new()?);
        }
        let dctx = cell.as_mut().expect("just set");
        let out = dctx.decompress(data, raw_length)?;
        if out.len() != raw_length {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "wrong decompressed length"));
        }
        Ok(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn build(master: &MasterKey, blobs: &[Vec<u8>]) -> FinishedPack {
        let mut w = PackWriter::new(master, 1024);
        for b in blobs {
            let id = master.blob_id(b);
            match compress(b, 3) {
                Some(c) => w.add(BlobType::Data, id, &c, b.len() as u32, true),
                None => w.add(BlobType::Data, id, b, b.len() as u32, false),
            }
        }
        w.finish()
    }

    #[test]
    fn flipped_byte_anywhere_is_detected() {
        let master = MasterKey::generate();
        let pack = build(&master, &[vec![1u8; 5000], b"short blob".to_vec()]);
        for pos in (0..pack.bytes.len()).step_by(7) {
            let mut bad = pack.bytes.clone();
            bad[pos] ^= 0x40;
            assert_ne!(PackId(content_hash(&bad)), pack.id);
            let header_ok = read_header(&master, &bad).ok();
            if let Some((entries, salt)) = header_ok {
                let any_bad = entries.iter().any(|e| {
                    let s = &bad[e.offset as usize..(e.offset + e.length) as usize];
                    open_blob(&master, &salt, e, s).is_err()
                });
                assert!(any_bad || pos < 9, "flip at {pos} undetected");
            }
        }
    }

    #[test]
    fn truncated_pack_is_refused() {
        let master = MasterKey::generate();
        let pack = build(&master, &[vec![9u8; 3000]]);
        for cut in [1, 4, 10, pack.bytes.len() / 2, pack.bytes.len() - 1] {
            assert!(read_header(&master, &pack.bytes[..pack.bytes.len() - cut]).is_err());
        }
    }

    #[test]
    fn incompressible_data_is_stored_raw() {
        let random: Vec<u8> = (0..10_000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        let _ = compress(&random, 3);
        assert!(compress(&vec![0u8; 10_000], 3).unwrap().len() < 100);
    }

    proptest! {
        #[test]
        fn pack_round_trip(blobs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..3000), 1..8)) {
            let master = MasterKey::generate();
            let pack = build(&master, &blobs);
            prop_assert_eq!(PackId(content_hash(&pack.bytes)), pack.id);
            let (entries, salt) = read_header(&master, &pack.bytes).unwrap();
            prop_assert_eq!(&entries, &pack.entries);
            for (e, b) in entries.iter().zip(&blobs) {
                let sealed = &pack.bytes[e.offset as usize..(e.offset + e.length) as usize];
                prop_assert_eq!(&open_blob(&master, &salt, e, sealed).unwrap(), b);
            }
        }
    }
}
