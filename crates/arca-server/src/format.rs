//! What a repository's format means to the server: which object kinds it has, how its objects
//! are named, and which hash proves an object's bytes match its name. The hosting API, the restic
//! REST protocol, scrub and the restore check all ask here, so the rules of each format live in
//! one place.
//!
//! - **arca**: content-addressed kinds are named by the BLAKE3 hash of their bytes; locks and
//!   prune marks are named freely by the client; `config` is written once.
//! - **restic**: every object but `config` (locks too) is named by the SHA-256 of its bytes, as
//!   restic's own backends name them. There are no meta packs or prune marks.

use arca_store::{validate_name, ObjectKind};

pub use arca_api::RepoFormat;

use crate::errors::ApiError;

/// Whether objects of `kind` in a repository of `format` are named by the hash of their bytes
/// (so an upload is verified against its name, and a scrub can re-check it).
pub fn content_addressed(format: RepoFormat, kind: ObjectKind) -> bool {
    match format {
        RepoFormat::Arca => matches!(
            kind,
            ObjectKind::DataPack
                | ObjectKind::MetaPack
                | ObjectKind::Index
                | ObjectKind::Snapshot
                | ObjectKind::Key
                | ObjectKind::Pending
        ),
        RepoFormat::Restic => kind != ObjectKind::Config,
    }
}

/// Whether a repository of `format` has objects of `kind` at all.
pub fn has_kind(format: RepoFormat, kind: ObjectKind) -> bool {
    match format {
        RepoFormat::Arca => true,
        RepoFormat::Restic => !matches!(kind, ObjectKind::MetaPack | ObjectKind::Pending),
    }
}

/// The hash that names `format`'s content-addressed objects.
pub fn hash_name(format: RepoFormat) -> &'static str {
    match format {
        RepoFormat::Arca => "BLAKE3",
        RepoFormat::Restic => "SHA-256",
    }
}

/// Checks an object name for its kind and format; the error names the rule.
pub fn check_name(format: RepoFormat, kind: ObjectKind, name: &str) -> Result<(), ApiError> {
    if !has_kind(format, kind) {
        return Err(ApiError::bad_request(format!("{format} repositories have no {kind} objects")));
    }
    let hex64 = |n: &str| n.len() == 64 && n.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let ok = match kind {
        ObjectKind::Config => name == "config",
        k if content_addressed(format, k) => hex64(name),
        _ => validate_name(name).is_ok(),
    };
    if ok {
        Ok(())
    } else if content_addressed(format, kind) {
        Err(ApiError::bad_request(format!(
            "invalid {kind} object name {name:?}: expected 64 lowercase hex digits (the {} hash of its bytes)",
            hash_name(format)
        )))
    } else {
        Err(ApiError::bad_request(format!("invalid {kind} object name {name:?}")))
    }
}

/// Hashes bytes as they stream by, with the hash that names `format`'s objects.
pub enum ContentHasher {
    /// arca's.
    Blake3(Box<blake3::Hasher>),
    /// restic's.
    Sha256(ring::digest::Context),
}

impl ContentHasher {
    /// A new hasher for `format`.
    pub fn new(format: RepoFormat) -> ContentHasher {
        match format {
            RepoFormat::Arca => ContentHasher::Blake3(Box::new(blake3::Hasher::new())),
            RepoFormat::Restic => ContentHasher::Sha256(ring::digest::Context::new(&ring::digest::SHA256)),
        }
    }

    /// Adds bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            ContentHasher::Blake3(h) => {
                h.update(bytes);
            }
            ContentHasher::Sha256(c) => c.update(bytes),
        }
    }

    /// The hash, as lowercase hex (an object's name).
    pub fn finish(self) -> String {
        match self {
            ContentHasher::Blake3(h) => h.finalize().to_hex().to_string(),
            ContentHasher::Sha256(c) => hex::encode(c.finish().as_ref()),
        }
    }

    /// The hash of `bytes` with `format`'s hash.
    pub fn of(format: RepoFormat, bytes: &[u8]) -> String {
        let mut h = ContentHasher::new(format);
        h.update(bytes);
        h.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_by_kind_and_format() {
        let h = "ab".repeat(32);
        for format in [RepoFormat::Arca, RepoFormat::Restic] {
            assert!(check_name(format, ObjectKind::DataPack, &h).is_ok());
            assert!(check_name(format, ObjectKind::DataPack, &h[1..]).is_err());
            assert!(check_name(format, ObjectKind::DataPack, &"AB".repeat(32)).is_err());
            assert!(check_name(format, ObjectKind::Config, "config").is_ok());
            assert!(check_name(format, ObjectKind::Config, "other").is_err());
            assert!(check_name(format, ObjectKind::Lock, "..").is_err());
        }
        // arca locks are named by the client; restic's by the SHA-256 of their bytes.
        assert!(check_name(RepoFormat::Arca, ObjectKind::Lock, "backup-host-1").is_ok());
        assert!(check_name(RepoFormat::Restic, ObjectKind::Lock, "backup-host-1").is_err());
        assert!(check_name(RepoFormat::Restic, ObjectKind::Lock, &h).is_ok());
        assert!(check_name(RepoFormat::Restic, ObjectKind::MetaPack, &h).is_err());
        assert!(check_name(RepoFormat::Restic, ObjectKind::Pending, &h).is_err());
    }

    #[test]
    fn each_format_hashes_with_its_own_hash() {
        // SHA-256("abc") and BLAKE3("abc"), the published test vectors.
        assert_eq!(
            ContentHasher::of(RepoFormat::Restic, b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            ContentHasher::of(RepoFormat::Arca, b"abc"),
            "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"
        );
        let mut h = ContentHasher::new(RepoFormat::Restic);
        h.update(b"a");
        h.update(b"bc");
        assert_eq!(h.finish(), ContentHasher::of(RepoFormat::Restic, b"abc"));
    }
}
