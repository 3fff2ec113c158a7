//! Where arca's bytes live.
//!
//! A repository is a set of named, immutable objects grouped by [`ObjectKind`]. This crate owns the
//! [`Store`] trait that the engine writes through and the implementations of it. It knows nothing
//! about the repository format: it moves opaque bytes, atomically and durably.
//!
//! Rules every implementation keeps (the engine's crash safety rests on them, see
//! `docs/format.md` §"Write ordering"):
//! 1. `put` is atomic: after it returns `Ok` the whole object is durable; after a crash either the
//!    whole object or nothing is visible under its name, never a prefix.
//! 2. Objects are never modified in place. Writing the same name twice writes the same bytes
//!    (content-addressed names) and is allowed, so retries are idempotent.
//! 3. `list` shows every object whose `put` returned before the listing started.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod error;
#[cfg(feature = "http")]
mod http;
mod kind;
mod local;
#[cfg(feature = "s3")]
mod s3;

pub use error::{Error, ErrorKind, Result};
#[cfg(feature = "http")]
pub use http::{extra_root_certificate, retry_after, HttpStore, Pacer};
pub use kind::ObjectKind;
pub use local::LocalStore;
#[cfg(feature = "s3")]
pub use s3::{S3Config, S3Store};

/// One entry of a listing: an object's name and its size in bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// The object's name inside its kind (for content-addressed kinds, 64 lowercase hex digits).
    pub name: String,
    /// Size in bytes.
    pub size: u64,
}

/// A place that keeps a repository's objects.
///
/// Implementations must be usable from many threads at once: the backup pipeline writes packs
/// while the restorer reads others.
pub trait Store: Send + Sync {
    /// Stores `bytes` under `kind`/`name`, atomically and durably (see the crate rules).
    fn put(&self, kind: ObjectKind, name: &str, bytes: &[u8]) -> Result<()>;
    /// Stores the bytes of the file at `path` under `kind`/`name`, with the guarantees of
    /// [`Store::put`], without holding the object in memory. The file is consumed: moved into
    /// place when it lies on the store's own file system (see [`Store::staging_dir`]), else read
    /// and removed. This is how the server stores uploads it spooled to disk while hashing them.
    ///
    /// The default reads the file whole and calls [`Store::put`]; stores that can stream override it.
    fn put_file(&self, kind: ObjectKind, name: &str, path: &std::path::Path) -> Result<()> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        self.put(kind, name, &bytes)?;
        let _ = std::fs::remove_file(path);
        Ok(())
    }
    /// A directory where a caller may stage a file for [`Store::put_file`] so that it can be
    /// renamed into place instead of copied; `None` if the store has no file system of its own.
    fn staging_dir(&self) -> Option<std::path::PathBuf> {
        None
    }
    /// Reads a whole object.
    fn get(&self, kind: ObjectKind, name: &str) -> Result<Vec<u8>>;
    /// Reads `length` bytes starting at `offset`. Fails with [`ErrorKind::Truncated`] if the
    /// object is shorter than `offset + length`.
    fn get_range(&self, kind: ObjectKind, name: &str, offset: u64, length: u64) -> Result<Vec<u8>>;
    /// Size of an object, or `None` if it does not exist.
    fn stat(&self, kind: ObjectKind, name: &str) -> Result<Option<u64>>;
    /// Every object of one kind, in no particular order.
    fn list(&self, kind: ObjectKind) -> Result<Vec<ObjectInfo>>;
    /// Removes an object. Removing a missing object is not an error (deletes are idempotent).
    fn delete(&self, kind: ObjectKind, name: &str) -> Result<()>;
    /// Whether the store has been initialised (a `config` object exists).
    fn exists(&self) -> Result<bool> {
        Ok(self.stat(ObjectKind::Config, "config")?.is_some())
    }
    /// Prepares an empty store for a new repository (creates directories and the like).
    /// Fails with [`ErrorKind::AlreadyExists`] if a repository is already there.
    fn create(&self) -> Result<()>;
    /// A human-readable location, for messages.
    fn location(&self) -> String;
}

impl<S: Store + ?Sized> Store for std::sync::Arc<S> {
    fn put(&self, kind: ObjectKind, name: &str, bytes: &[u8]) -> Result<()> {
        (**self).put(kind, name, bytes)
    }
    fn put_file(&self, kind: ObjectKind, name: &str, path: &std::path::Path) -> Result<()> {
        (**self).put_file(kind, name, path)
    }
    fn staging_dir(&self) -> Option<std::path::PathBuf> {
        (**self).staging_dir()
    }
    fn get(&self, kind: ObjectKind, name: &str) -> Result<Vec<u8>> {
        (**self).get(kind, name)
    }
    fn get_range(&self, kind: ObjectKind, name: &str, offset: u64, length: u64) -> Result<Vec<u8>> {
        (**self).get_range(kind, name, offset, length)
    }
    fn stat(&self, kind: ObjectKind, name: &str) -> Result<Option<u64>> {
        (**self).stat(kind, name)
    }
    fn list(&self, kind: ObjectKind) -> Result<Vec<ObjectInfo>> {
        (**self).list(kind)
    }
    fn delete(&self, kind: ObjectKind, name: &str) -> Result<()> {
        (**self).delete(kind, name)
    }
    fn exists(&self) -> Result<bool> {
        (**self).exists()
    }
    fn create(&self) -> Result<()> {
        (**self).create()
    }
    fn location(&self) -> String {
        (**self).location()
    }
}

/// Reads `length` bytes of an object from `offset` on, a piece of at most `piece` bytes at a
/// time, so that serving a large object holds one piece in memory instead of the whole object.
/// Works over any [`Store`] through [`Store::get_range`].
pub struct RangeReader<S> {
    store: S,
    kind: ObjectKind,
    name: String,
    offset: u64,
    remaining: u64,
    piece: u64,
}

impl<S: Store> RangeReader<S> {
    /// A reader of `length` bytes of `kind`/`name` from `offset`.
    pub fn new(store: S, kind: ObjectKind, name: &str, offset: u64, length: u64, piece: u64) -> Self {
        RangeReader { store, kind, name: name.to_string(), offset, remaining: length, piece: piece.max(1) }
    }

    /// The next piece, or `None` at the end.
    pub fn next_piece(&mut self) -> Result<Option<Vec<u8>>> {
        if self.remaining == 0 {
            return Ok(None);
        }
        let n = self.remaining.min(self.piece);
        let bytes = self.store.get_range(self.kind, &self.name, self.offset, n)?;
        self.offset += n;
        self.remaining -= n;
        Ok(Some(bytes))
    }
}

/// Checks that `name` is safe to use as an object name: 1 to 128 characters of `[0-9a-z_-]`.
/// Names come from listings and from users; this keeps path tricks out of every backend.
pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_lowercase() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::new(ErrorKind::InvalidName, format!("invalid object name {name:?}")))
    }
}
