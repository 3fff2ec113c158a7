//! Typed 32-byte identifiers: blobs, packs, index files, snapshots, keys.
//!
//! Every id is 32 bytes shown as 64 lowercase hex digits. Blob ids are keyed BLAKE3 of the
//! plaintext (keyed per repository, so they reveal nothing to the provider); every stored object's
//! id is the plain BLAKE3 of its bytes, so anyone (the server included) can verify it without keys.

use serde::{Deserialize, Serialize};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            /// Parses 64 hex digits.
            pub fn from_hex(s: &str) -> Option<Self> {
                let mut out = [0u8; 32];
                hex::decode_to_slice(s, &mut out).ok()?;
                Some($name(out))
            }
            /// The 64-digit lowercase hex form used in object names and output.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }
            /// The first 8 hex digits, for short display.
            pub fn short(&self) -> String {
                hex::encode(&self.0[..4])
            }
            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}({})", stringify!($name), self.short())
            }
        }
    };
}

id_type!(
    /// A blob: one chunk of file content or one tree, named by keyed BLAKE3 of its plaintext.
    BlobId
);
id_type!(
    /// A pack file, named by BLAKE3 of its bytes.
    PackId
);
id_type!(
    /// An index file, named by BLAKE3 of its bytes.
    IndexId
);
id_type!(
    /// A snapshot object, named by BLAKE3 of its bytes.
    SnapshotId
);

/// The plain (unkeyed) BLAKE3 of stored bytes: the name of every content-addressed object.
///
/// Single-threaded on purpose: it runs on the packer thread, which must never wait on the rayon
/// pool (whose workers may be blocked handing blobs to that same packer).
pub fn content_hash(bytes: &[u8]) -> [u8; 32] {
    *blake3::hash(bytes).as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let id = BlobId([7u8; 32]);
        assert_eq!(BlobId::from_hex(&id.to_hex()), Some(id));
        assert_eq!(BlobId::from_hex("zz"), None);
        assert_eq!(id.short(), "07070707");
    }
}
