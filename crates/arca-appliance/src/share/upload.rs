//! Whole-file uploads that appear all at once: a PUT writes to a hidden temporary file beside its
//! target and renames it over the target only when the body is complete (dav-server flushes after
//! the last byte). A body that breaks off, or one cut at `max_upload`, leaves the old file as it was
//! and no partial file behind: users never see half an upload. Dead properties and the permission
//! bits of a replaced file are carried over to the new one.

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::{Buf, Bytes};
use dav_server::fs::{DavFile, DavMetaData, FsError, FsFuture, FsResult};
use futures_util::FutureExt;

/// Prefix of the temporary files (hidden from listings).
pub const UPLOAD_PREFIX: &str = ".arca-upload-";

/// Properties carried over from a replaced file (see `super::fs`).
const PROP_XATTR: &str = "user.davprop.";

#[derive(Debug, Clone)]
struct Meta {
    len: u64,
    modified: SystemTime,
}

impl DavMetaData for Meta {
    fn len(&self) -> u64 {
        self.len
    }
    fn modified(&self) -> FsResult<SystemTime> {
        Ok(self.modified)
    }
    fn is_dir(&self) -> bool {
        false
    }
}

/// An upload in progress.
#[derive(Debug)]
pub struct AtomicUpload {
    file: Arc<Mutex<std::fs::File>>,
    tmp: PathBuf,
    dest: PathBuf,
    committed: bool,
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> FsResult<T> + Send + 'static) -> FsResult<T> {
    tokio::task::spawn_blocking(f).await.map_err(|_| FsError::GeneralFailure)?
}

impl AtomicUpload {
    /// Starts an upload replacing (or creating) `dest`, honouring `create` (may create) and
    /// `create_new` (must create).
    pub async fn start(dest: PathBuf, create: bool, create_new: bool) -> FsResult<AtomicUpload> {
        blocking(move || {
            let exists = match std::fs::symlink_metadata(&dest) {
                Ok(m) if m.is_dir() => return Err(FsError::Forbidden),
                Ok(_) => true,
                Err(_) => false,
            };
            if create_new && exists {
                return Err(FsError::Exists);
            }
            if !(exists || create || create_new) {
                return Err(FsError::NotFound);
            }
            let parent = dest.parent().ok_or(FsError::Forbidden)?;
            if !parent.is_dir() {
                return Err(FsError::NotFound);
            }
            let tmp = parent.join(format!("{UPLOAD_PREFIX}{}", hex::encode(rand::random::<[u8; 8]>())));
            let file = std::fs::OpenOptions::new().write(true).read(true).create_new(true).open(&tmp)?;
            Ok(AtomicUpload { file: Arc::new(Mutex::new(file)), tmp, dest, committed: false })
        })
        .await
    }

    fn write_all(&mut self, bytes: Bytes) -> FsFuture<'_, ()> {
        let file = self.file.clone();
        blocking(move || {
            file.lock().map_err(|_| FsError::GeneralFailure)?.write_all(&bytes)?;
            Ok(())
        })
        .boxed()
    }
}

/// Copies dead properties and permission bits from the file being replaced.
fn carry_over(from: &Path, to: &Path) -> std::io::Result<()> {
    let Ok(meta) = std::fs::metadata(from) else { return Ok(()) };
    std::fs::set_permissions(to, meta.permissions())?;
    for name in xattr::list(from)? {
        if name.to_str().is_some_and(|n| n.starts_with(PROP_XATTR)) {
            if let Some(v) = xattr::get(from, &name)? {
                xattr::set(to, &name, &v)?;
            }
        }
    }
    Ok(())
}

impl DavFile for AtomicUpload {
    fn metadata(&mut self) -> FsFuture<'_, Box<dyn DavMetaData>> {
        let file = self.file.clone();
        blocking(move || {
            let m = file.lock().map_err(|_| FsError::GeneralFailure)?.metadata()?;
            let meta: Box<dyn DavMetaData> = Box::new(Meta { len: m.len(), modified: m.modified()? });
            Ok(meta)
        })
        .boxed()
    }
    fn write_buf(&mut self, mut buf: Box<dyn Buf + Send>) -> FsFuture<'_, ()> {
        let bytes = buf.copy_to_bytes(buf.remaining());
        self.write_all(bytes)
    }
    fn write_bytes(&mut self, buf: Bytes) -> FsFuture<'_, ()> {
        self.write_all(buf)
    }
    fn read_bytes(&mut self, _count: usize) -> FsFuture<'_, Bytes> {
        Box::pin(futures_util::future::err(FsError::Forbidden))
    }
    fn seek(&mut self, pos: SeekFrom) -> FsFuture<'_, u64> {
        let file = self.file.clone();
        blocking(move || Ok(file.lock().map_err(|_| FsError::GeneralFailure)?.seek(pos)?)).boxed()
    }
    fn flush(&mut self) -> FsFuture<'_, ()> {
        if self.committed {
            return Box::pin(futures_util::future::ok(()));
        }
        let (file, tmp, dest) = (self.file.clone(), self.tmp.clone(), self.dest.clone());
        async move {
            blocking(move || {
                file.lock().map_err(|_| FsError::GeneralFailure)?.sync_all()?;
                if let Err(e) = carry_over(&dest, &tmp) {
                    tracing::warn!("keeping the properties of {}: {e}", dest.display());
                }
                std::fs::rename(&tmp, &dest)?;
                Ok(())
            })
            .await?;
            self.committed = true;
            Ok(())
        }
        .boxed()
    }
}

/// Removes the temporary files of uploads that were cut off by a crash or a kill (a clean
/// failure removes its own), everywhere under `root`, last written before `before` (the
/// appliance's start: an upload that began since is alive, and removing its file would fail it).
/// Returns how many were removed.
pub fn sweep_stale(root: &Path, before: SystemTime) -> std::io::Result<usize> {
    let mut removed = 0;
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            // A folder that vanished or cannot be read is not this sweep's business.
            Err(e) if dir != root => {
                tracing::debug!("sweeping {}: {e}", dir.display());
                continue;
            }
            Err(e) => return Err(e),
        };
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else { continue };
            if kind.is_dir() {
                dirs.push(entry.path());
            } else if kind.is_file()
                && entry.file_name().as_encoded_bytes().starts_with(UPLOAD_PREFIX.as_bytes())
                && entry.metadata().and_then(|m| m.modified()).is_ok_and(|t| t < before)
            {
                std::fs::remove_file(entry.path())?;
                removed += 1;
            }
        }
    }
    Ok(removed)
}

impl Drop for AtomicUpload {
    fn drop(&mut self) {
        if !self.committed {
            // The body broke off: the target keeps its old bytes.
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sweep_removes_only_cut_off_uploads() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::write(dir.path().join(format!("{UPLOAD_PREFIX}0011")), b"half").unwrap();
        std::fs::write(dir.path().join(format!("a/b/{UPLOAD_PREFIX}2233")), b"half").unwrap();
        std::fs::write(dir.path().join("a/b/report.txt"), b"kept").unwrap();
        std::fs::write(dir.path().join("a/.arca-uploaded.txt"), b"kept").unwrap();
        let start = SystemTime::now() + std::time::Duration::from_secs(1);
        // An upload begun after the start is left alone.
        assert_eq!(sweep_stale(dir.path(), SystemTime::UNIX_EPOCH).unwrap(), 0);
        assert_eq!(sweep_stale(dir.path(), start).unwrap(), 2);
        assert!(dir.path().join("a/b/report.txt").exists());
        assert!(dir.path().join("a/.arca-uploaded.txt").exists());
        assert_eq!(sweep_stale(dir.path(), start).unwrap(), 0);
    }
}
