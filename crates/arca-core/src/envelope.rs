//! The shared layout of standalone encrypted objects (index files and snapshots): a plaintext,
//! authenticated manifest of the pack ids the object refers to, then an encrypted body
//! (docs/format.md §"Envelopes").
//!
//! ```text
//! object   = magic:[8] version:u8(=2) count:u32le (kind:u8 pack_id:[32])*count logical:u64le
//!            salt:[32] sealed_body
//! sealed   = AES-256-GCM(key(salt), nonce = (Object, 0), aad = every byte before salt, body)
//! ```
//! `logical` is the number of bytes the object represents (a snapshot's total file size; 0 for
//! index files), so a provider can meter what its customers protect. Version 1 objects have no
//! `logical` field and are still read.
//! The manifest is readable without keys, so the server can refuse a snapshot whose packs are
//! missing and free packs that no snapshot lists; the client authenticates it, so the server
//! cannot alter it unnoticed.

use crate::crypto::{random_salt, MasterKey, NonceDomain, SALT_LEN};
use crate::error::{Error, Result};
use crate::id::PackId;
use crate::pack::PackKind;

/// Format version of envelopes written now (version 1, without `logical`, is still read).
pub const ENVELOPE_VERSION: u8 = 2;
/// Upper bound on manifest entries, so a hostile count cannot make us allocate gigabytes.
const MAX_MANIFEST: usize = 1 << 24;

/// Seals `body` with the given manifest (and no logical size).
pub fn seal(master: &MasterKey, magic: &[u8; 8], packs: &[(PackKind, PackId)], body: &[u8]) -> Vec<u8> {
    seal_with_logical(master, magic, packs, 0, body)
}

/// Seals `body` with the given manifest and the number of bytes the object represents.
pub fn seal_with_logical(
    master: &MasterKey,
    magic: &[u8; 8],
    packs: &[(PackKind, PackId)],
    logical: u64,
    body: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + 1 + 4 + packs.len() * 33 + 8 + SALT_LEN + body.len() + 16);
    out.extend_from_slice(magic);
    out.push(ENVELOPE_VERSION);
    out.extend_from_slice(&(packs.len() as u32).to_le_bytes());
    for (kind, id) in packs {
        out.push(kind.byte());
        out.extend_from_slice(id.as_bytes());
    }
    out.extend_from_slice(&logical.to_le_bytes());
    let aad_len = out.len();
    let salt = random_salt();
    out.extend_from_slice(&salt);
    let mut sealed = body.to_vec();
    master.object_key(&salt).seal_in_place(NonceDomain::Object, 0, &out[..aad_len], &mut sealed);
    out.extend_from_slice(&sealed);
    out
}

/// Reads the manifest without any key (what the server does). Returns the pack list and where the
/// salt starts.
pub fn read_manifest(magic: &[u8; 8], bytes: &[u8]) -> Result<(Vec<(PackKind, PackId)>, usize)> {
    let (packs, _, salt_at) = read_plaintext(magic, bytes)?;
    Ok((packs, salt_at))
}

/// The bytes the object represents, from its plaintext header (no key needed); `None` for a
/// version 1 object, which does not say.
pub fn read_logical(magic: &[u8; 8], bytes: &[u8]) -> Result<Option<u64>> {
    Ok(read_plaintext(magic, bytes)?.1)
}

/// The first bytes of an envelope that [`plaintext_prefix_len`] needs.
pub const PREFIX_PROBE: usize = 13;

/// How many leading bytes of an envelope [`read_manifest`] and [`read_logical`] need, from its
/// first [`PREFIX_PROBE`] bytes (magic, version, pack count): the plaintext header plus the salt
/// and the tag that must follow it. Lets a reader of a large object (the server, on a spooled
/// upload) parse the manifest without loading the sealed body. `None` when the prefix is too
/// short or the count absurd (the parse then says why).
pub fn plaintext_prefix_len(head: &[u8]) -> Option<usize> {
    let count = u32::from_le_bytes(head.get(9..13)?.try_into().ok()?) as usize;
    let logical = if head[8] >= 2 { 8 } else { 0 };
    13usize.checked_add(count.checked_mul(33)?)?.checked_add(logical + SALT_LEN + 16)
}

/// An envelope's plaintext header: the manifest, the logical size (version 2) and where the salt
/// starts.
type Plaintext = (Manifest, Option<u64>, usize);

fn read_plaintext(magic: &[u8; 8], bytes: &[u8]) -> Result<Plaintext> {
    let what = String::from_utf8_lossy(magic).to_lowercase();
    if bytes.len() < 13 || &bytes[..8] != magic {
        return Err(Error::corrupt(format!("not an {what} object (bad magic)")));
    }
    let version = bytes[8];
    if !(1..=ENVELOPE_VERSION).contains(&version) {
        return Err(Error::corrupt(format!("unsupported {what} version {version}")));
    }
    let count = u32::from_le_bytes(bytes[9..13].try_into().expect("4 bytes")) as usize;
    let end = 13usize
        .checked_add(count.checked_mul(33).ok_or_else(|| Error::corrupt("manifest too long"))?)
        .ok_or_else(|| Error::corrupt("manifest too long"))?;
    let header_end = if version >= 2 { end + 8 } else { end };
    if count > MAX_MANIFEST || plaintext_prefix_len(bytes).is_none_or(|needed| bytes.len() < needed) {
        return Err(Error::corrupt(format!("{what} object is truncated")));
    }
    let mut packs = Vec::with_capacity(count);
    for rec in bytes[13..end].chunks_exact(33) {
        let kind = PackKind::from_byte(rec[0]).ok_or_else(|| Error::corrupt("manifest names an unknown pack kind"))?;
        packs.push((kind, PackId(rec[1..].try_into().expect("32 bytes"))));
    }
    let logical = (version >= 2).then(|| u64::from_le_bytes(bytes[end..header_end].try_into().expect("8 bytes")));
    Ok((packs, logical, header_end))
}

/// The packs an object names, in its plaintext manifest.
pub type Manifest = Vec<(PackKind, PackId)>;

/// Authenticates and decrypts an object.
pub fn open(master: &MasterKey, magic: &[u8; 8], bytes: &[u8]) -> Result<(Manifest, Vec<u8>)> {
    let (packs, salt_at) = read_manifest(magic, bytes)?;
    let salt: [u8; SALT_LEN] = bytes[salt_at..salt_at + SALT_LEN].try_into().expect("length checked");
    let body = master
        .object_key(&salt)
        .open(NonceDomain::Object, 0, &bytes[..salt_at], &bytes[salt_at + SALT_LEN..])
        .map_err(|_| {
        Error::corrupt(format!(
            "{} object fails authentication (damaged, or written with another key)",
            String::from_utf8_lossy(magic).to_lowercase()
        ))
    })?;
    Ok((packs, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_manifest_tamper() {
        let m = MasterKey::generate();
        let packs = vec![(PackKind::Data, PackId([1; 32])), (PackKind::Meta, PackId([2; 32]))];
        let obj = seal(&m, b"ARCATEST", &packs, b"body");
        assert_eq!(read_manifest(b"ARCATEST", &obj).unwrap().0, packs);
        assert_eq!(open(&m, b"ARCATEST", &obj).unwrap().1, b"body");
        let mut bad = obj.clone();
        bad[20] ^= 1;
        assert!(open(&m, b"ARCATEST", &bad).is_err());
        assert!(open(&m, b"ARCATEST", &obj[..obj.len() - 1]).is_err());
        assert!(read_manifest(b"ARCATEST", &obj[..12]).is_err());
        let mut huge = obj.clone();
        huge[9..13].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(read_manifest(b"ARCATEST", &huge).is_err());
    }

    #[test]
    fn the_logical_size_is_readable_without_a_key_and_authenticated() {
        let m = MasterKey::generate();
        let packs = vec![(PackKind::Data, PackId([3; 32]))];
        let obj = seal_with_logical(&m, b"ARCATEST", &packs, 123_456_789, b"body");
        assert_eq!(read_logical(b"ARCATEST", &obj).unwrap(), Some(123_456_789));
        assert_eq!(read_manifest(b"ARCATEST", &obj).unwrap().0, packs);
        let at = 13 + 33;
        let mut forged = obj.clone();
        forged[at] ^= 1;
        assert!(open(&m, b"ARCATEST", &forged).is_err(), "a changed logical size must fail authentication");
        // A version 1 object (no logical field) still opens and reports no size.
        let mut v1 = obj[..at].to_vec();
        v1[8] = 1;
        let aad_len = v1.len();
        let salt = random_salt();
        v1.extend_from_slice(&salt);
        let mut sealed = b"body".to_vec();
        m.object_key(&salt).seal_in_place(NonceDomain::Object, 0, &v1[..aad_len], &mut sealed);
        v1.extend_from_slice(&sealed);
        assert_eq!(read_logical(b"ARCATEST", &v1).unwrap(), None);
        assert_eq!(open(&m, b"ARCATEST", &v1).unwrap(), (packs, b"body".to_vec()));
    }
}
