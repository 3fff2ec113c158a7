//! Keys and authenticated encryption (docs/format.md §"Keys" and §"Encryption").
//!
//! A repository has one 32-byte master secret. From it BLAKE3 `derive_key` makes three independent
//! keys: the encryption key, the blob-id key (keyed BLAKE3, so blob ids reveal nothing about
//! content), and the chunker key (which shuffles the gear table so chunk boundaries do not
//! fingerprint content either).
//!
//! Every encrypted object (a pack, an index file, a snapshot) starts with a random 32-byte salt;
//! its AES-256-GCM key is derived from the encryption key and that salt. Within one object the
//! 96-bit nonce is a counter (a blob's byte offset in its pack, or a fixed value for headers), so
//! nonces never repeat under one key and no random-nonce birthday bound applies, however many
//! clients write at once.

use rand::RngCore;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};

use crate::error::{Error, Result};
use crate::id::BlobId;

/// Bytes an AES-256-GCM tag adds to every sealed message.
pub const TAG_LEN: usize = 16;
/// Length of the per-object salt.
pub const SALT_LEN: usize = 32;

/// What a nonce is used for; part of the nonce so a blob and a header can never share one.
#[derive(Debug, Clone, Copy)]
#[repr(u32)]
pub enum NonceDomain {
    /// A blob at a byte offset inside a pack.
    Blob = 0,
    /// A pack's trailing header.
    PackHeader = 1,
    /// The body of a standalone object (index file, snapshot).
    Object = 2,
}

/// The secret that a repository's key slots protect.
#[derive(Clone)]
pub struct MasterKey {
    secret: [u8; 32],
    encryption: [u8; 32],
    blob_id: [u8; 32],
    chunker: [u8; 32],
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

/// Keys are wiped when dropped: a server that held a customer's key for a browsing session (the
/// web portal's restore pages) leaves no copy of it in freed memory.
impl Drop for MasterKey {
    fn drop(&mut self) {
        for key in [&mut self.secret, &mut self.encryption, &mut self.blob_id, &mut self.chunker] {
            for byte in key.iter_mut() {
                // SAFETY: `byte` is a valid, aligned, exclusive reference; a volatile write is
                // used only so that the compiler cannot drop the wipe as a dead store.
                unsafe { std::ptr::write_volatile(byte, 0) };
            }
        }
    }
}

impl MasterKey {
    /// A fresh random master key.
    pub fn generate() -> Self {
        let mut secret = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut secret);
        Self::from_secret(secret)
    }

    /// Rebuilds the derived keys from the stored secret.
    pub fn from_secret(secret: [u8; 32]) -> Self {
        MasterKey {
            secret,
            encryption: blake3::derive_key("arca 2026-11 repository encryption key", &secret),
            blob_id: blake3::derive_key("arca 2026-11 repository blob id key", &secret),
            chunker: blake3::derive_key("arca 2026-11 repository chunker key", &secret),
        }
    }

    /// The secret itself, for wrapping into a key slot.
    pub(crate) fn secret(&self) -> &[u8; 32] {
        &self.secret
    }

    /// The id of a blob: keyed BLAKE3 of its plaintext.
    pub fn blob_id(&self, plaintext: &[u8]) -> BlobId {
        BlobId(*blake3::keyed_hash(&self.blob_id, plaintext).as_bytes())
    }

    /// The chunker's secret gear table: 256 pseudo-random 64-bit values from BLAKE3's XOF.
    pub fn gear_table(&self) -> [u64; 256] {
        let mut bytes = [0u8; 256 * 8];
        blake3::Hasher::new_keyed(&self.chunker).update(b"gear table").finalize_xof().fill(&mut bytes);
        let mut table = [0u64; 256];
        for (slot, raw) in table.iter_mut().zip(bytes.chunks_exact(8)) {
            *slot = u64::from_le_bytes(raw.try_into().expect("chunks_exact yields 8 bytes"));
        }
        table
    }

    /// The key for one object, from its salt.
    pub fn object_key(&self, salt: &[u8; SALT_LEN]) -> ObjectKey {
        let mut hasher = blake3::Hasher::new_derive_key("arca 2026-11 object key");
        hasher.update(&self.encryption);
        hasher.update(salt);
        ObjectKey::new(hasher.finalize().as_bytes())
    }
}

/// A fresh random salt.
pub fn random_salt() -> [u8; SALT_LEN] {
    let mut salt = [0u8; SALT_LEN];
    rand::thread_rng().fill_bytes(&mut salt);
    salt
}

/// The AEAD key of one object.
pub struct ObjectKey(LessSafeKey);

fn nonce(domain: NonceDomain, counter: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[..8].copy_from_slice(&counter.to_le_bytes());
    n[8..].copy_from_slice(&(domain as u32).to_le_bytes());
    Nonce::assume_unique_for_key(n)
}

impl ObjectKey {
    /// A key from 32 raw bytes.
    pub fn new(raw: &[u8; 32]) -> Self {
        // AES_256_GCM takes exactly 32 bytes, which `raw` is.
        ObjectKey(LessSafeKey::new(UnboundKey::new(&AES_256_GCM, raw).expect("32-byte key")))
    }

    /// Encrypts `buf` in place and appends the tag.
    pub fn seal_in_place(&self, domain: NonceDomain, counter: u64, aad: &[u8], buf: &mut Vec<u8>) {
        // Sealing only fails for messages over 64 GiB, which no caller builds.
        self.0
            .seal_in_place_append_tag(nonce(domain, counter), Aad::from(aad), buf)
            .expect("message within AES-GCM limits");
    }

    /// Encrypts `buf` in place and returns the tag (for callers that place the tag themselves).
    pub fn seal_at(&self, domain: NonceDomain, counter: u64, aad: &[u8], buf: &mut [u8]) -> [u8; TAG_LEN] {
        let tag = self
            .0
            .seal_in_place_separate_tag(nonce(domain, counter), Aad::from(aad), buf)
            .expect("message within AES-GCM limits");
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(tag.as_ref());
        out
    }

    /// Decrypts `sealed` (ciphertext then tag), checking the tag.
    pub fn open(&self, domain: NonceDomain, counter: u64, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>> {
        let mut buf = sealed.to_vec();
        let plain_len = self
            .0
            .open_in_place(nonce(domain, counter), Aad::from(aad), &mut buf)
            .map_err(|_| Error::corrupt("authentication failed"))?
            .len();
        buf.truncate(plain_len);
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_tamper() {
        let key = MasterKey::generate();
        let salt = random_salt();
        let k = key.object_key(&salt);
        let mut buf = b"hello world".to_vec();
        k.seal_in_place(NonceDomain::Blob, 41, b"aad", &mut buf);
        assert_eq!(buf.len(), 11 + TAG_LEN);
        assert_eq!(k.open(NonceDomain::Blob, 41, b"aad", &buf).unwrap(), b"hello world");
        assert!(k.open(NonceDomain::Blob, 42, b"aad", &buf).is_err());
        assert!(k.open(NonceDomain::Object, 41, b"aad", &buf).is_err());
        assert!(k.open(NonceDomain::Blob, 41, b"aaX", &buf).is_err());
        buf[3] ^= 1;
        assert!(k.open(NonceDomain::Blob, 41, b"aad", &buf).is_err());
    }

    #[test]
    fn derived_keys_differ_per_repository() {
        let a = MasterKey::generate();
        let b = MasterKey::generate();
        assert_ne!(a.blob_id(b"x"), b.blob_id(b"x"));
        assert_ne!(a.gear_table(), b.gear_table());
        let again = MasterKey::from_secret(*a.secret());
        assert_eq!(a.blob_id(b"x"), again.blob_id(b"x"));
    }
}
