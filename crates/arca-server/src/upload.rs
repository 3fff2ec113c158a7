//! Receiving an upload without holding it in memory: the body is hashed as it arrives and
//! spooled to a file next to where the store keeps its objects, which the store then renames
//! into place (local disk) or streams out (S3).
//!
//! Memory per upload is one body frame (tens of KiB), whatever the object's size; a client that
//! stops sending for [`IDLE_TIMEOUT`] is cut off, so slow uploads cannot pin connections and
//! spool files for ever. A spool file that is not handed to the store is removed when dropped.

use std::path::{Path, PathBuf};
use std::time::Duration;

use arca_store::ObjectKind;
use axum::body::Body;
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use crate::errors::ApiError;

/// Longest pause between two pieces of a body before the upload is abandoned.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// A spooled upload: its file, its length and the hash of its bytes.
pub struct Spooled {
    file: SpoolFile,
    /// The hash of the bytes that names the repository format's objects, as lowercase hex.
    pub hash: String,
    /// Bytes received (equal to the declared length).
    pub len: u64,
}

impl Spooled {
    /// The file's path (still owned: removed on drop unless [`Spooled::into_path`] is called).
    pub fn path(&self) -> &Path {
        &self.file.0
    }

    /// Hands the file over (to [`arca_store::Store::put_file`], which consumes it).
    pub fn into_path(mut self) -> PathBuf {
        std::mem::take(&mut self.file.0)
    }

    /// The first `n` bytes (or all, if shorter): for reading a manifest's plaintext header.
    pub fn read_prefix(&self, n: u64) -> std::io::Result<Vec<u8>> {
        use std::io::Read;
        let mut out = Vec::with_capacity(n.min(self.len) as usize);
        std::fs::File::open(self.path())?.take(n).read_to_end(&mut out)?;
        Ok(out)
    }
}

/// A file removed when dropped (unless its path was taken).
struct SpoolFile(PathBuf);

impl Drop for SpoolFile {
    fn drop(&mut self) {
        if !self.0.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

/// Receives a body of exactly `len` bytes into a new file under `dir`, hashing it on the way with
/// `hasher` (the repository format's, [`crate::format::ContentHasher`]).
pub async fn spool(
    body: Body,
    len: u64,
    dir: &Path,
    kind: ObjectKind,
    name: &str,
    hasher: crate::format::ContentHasher,
) -> Result<Spooled, ApiError> {
    let io = |what: &str, e: std::io::Error| {
        ApiError::from_io(format!("spooling the upload of {kind} object {name} ({what} under {})", dir.display()), e)
    };
    tokio::fs::create_dir_all(dir).await.map_err(|e| io("creating the directory", e))?;
    let path = dir.join(format!("{name}-upload-{}", hex::encode(rand::random::<[u8; 8]>())));
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .await
        .map_err(|e| io("creating the file", e))?;
    let guard = SpoolFile(path);
    let mut hasher = hasher;
    let mut got: u64 = 0;
    let truncated = |got: u64| {
        ApiError::bad_request(format!(
            "the upload of {kind} object {name} ended after {got} of {len} bytes: nothing was stored, retry it"
        ))
    };
    let mut stream = body.into_data_stream();
    loop {
        let next = match tokio::time::timeout(IDLE_TIMEOUT, stream.next()).await {
            Ok(next) => next,
            Err(_) => {
                return Err(ApiError::new(
                    axum::http::StatusCode::REQUEST_TIMEOUT,
                    format!(
                        "the upload of {kind} object {name} stalled for {} s after {got} of {len} bytes: nothing \
                         was stored, retry it",
                        IDLE_TIMEOUT.as_secs()
                    ),
                ))
            }
        };
        let Some(chunk) = next else { break };
        let chunk = chunk.map_err(|_| truncated(got))?;
        got = got.saturating_add(chunk.len() as u64);
        if got > len {
            return Err(ApiError::bad_request(format!(
                "the upload of {kind} object {name} is longer than its Content-Length of {len}: nothing was stored"
            )));
        }
        hasher.update(&chunk);
        file.write_all(&chunk).await.map_err(|e| io("writing", e))?;
    }
    if got != len {
        return Err(truncated(got));
    }
    file.flush().await.map_err(|e| io("writing", e))?;
    drop(file);
    Ok(Spooled { file: guard, hash: hasher.finish(), len })
}

/// Reads a small body of exactly `len` bytes into memory (locks, at most a few KiB).
pub async fn read_small(body: Body, len: usize, kind: ObjectKind, name: &str) -> Result<Vec<u8>, ApiError> {
    let bytes = tokio::time::timeout(IDLE_TIMEOUT, axum::body::to_bytes(body, len))
        .await
        .map_err(|_| {
            ApiError::new(
                axum::http::StatusCode::REQUEST_TIMEOUT,
                format!("the upload of {kind} object {name} stalled: nothing was stored"),
            )
        })?
        .map_err(|_| {
            ApiError::bad_request(format!(
                "the upload of {kind} object {name} was cut short or is longer than its Content-Length of {len}: \
                 nothing was stored"
            ))
        })?;
    if bytes.len() != len {
        return Err(ApiError::bad_request(format!(
            "the upload of {kind} object {name} ended after {} of {len} bytes: nothing was stored",
            bytes.len()
        )));
    }
    Ok(bytes.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{ContentHasher, RepoFormat};

    fn blake3() -> ContentHasher {
        ContentHasher::new(RepoFormat::Arca)
    }

    #[tokio::test]
    async fn spools_hashes_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let data = vec![7u8; 300_000];
        let s = spool(Body::from(data.clone()), data.len() as u64, dir.path(), ObjectKind::DataPack, "x", blake3())
            .await
            .unwrap();
        assert_eq!(s.hash, blake3::hash(&data).to_hex().as_str());
        let sha = ContentHasher::new(RepoFormat::Restic);
        let s2 = spool(Body::from(data.clone()), data.len() as u64, dir.path(), ObjectKind::DataPack, "y", sha)
            .await
            .unwrap();
        assert_eq!(s2.hash, ContentHasher::of(RepoFormat::Restic, &data));
        drop(s2);
        assert_eq!(std::fs::read(s.path()).unwrap(), data);
        assert_eq!(s.read_prefix(10).unwrap(), vec![7u8; 10]);
        let path = s.path().to_path_buf();
        drop(s);
        assert!(!path.exists(), "a spool file nobody took is removed");
    }

    #[tokio::test]
    async fn short_and_long_bodies_are_refused_and_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        for (body, len) in [(vec![1u8; 10], 11u64), (vec![1u8; 12], 11)] {
            let r = spool(Body::from(body), len, dir.path(), ObjectKind::DataPack, "x", blake3()).await;
            assert_eq!(r.err().unwrap().status(), axum::http::StatusCode::BAD_REQUEST);
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
