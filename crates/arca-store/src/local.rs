//! A repository in a directory on a local (or mounted) file system.
//!
//! Layout: `config`, `keys/NAME`, `data/AB/NAME`, `meta/AB/NAME`, `index/NAME`, `snapshots/NAME`,
//! `locks/NAME`, `pending/NAME`, and `tmp/` for writes in progress.
//!
//! Atomic puts: the bytes go to a uniquely named file under `tmp/`, which is fsynced, renamed into
//! place, and then the target directory is fsynced. A crash leaves at worst a stray file in `tmp/`,
//! which no listing shows and the next `create`-free open ignores.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rand::RngCore;

use crate::{validate_name, Error, ErrorKind, ObjectInfo, ObjectKind, Result, Store};

/// A store rooted at a local directory.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    /// A store at `root`; nothing is touched until the first operation.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalStore { root: root.into() }
    }

    /// The directory this store lives in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, kind: ObjectKind, name: &str) -> Result<PathBuf> {
        validate_name(name)?;
        Ok(match kind {
            ObjectKind::Config => self.root.join("config"),
            k if k.is_fanned_out() => {
                let fan = name.get(..2).unwrap_or("00");
                self.root.join(k.dir()).join(fan).join(name)
            }
            k => self.root.join(k.dir()).join(name),
        })
    }

    fn describe(&self, kind: ObjectKind, name: &str) -> String {
        format!("{kind} object {name} in {}", self.root.display())
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Moves a complete, fsynced file from `tmp/` to `target` (creating its directory when missing)
/// and fsyncs the directory: the step that makes a put atomic and durable.
fn install(staged: &Path, target: &Path) -> std::io::Result<()> {
    let parent = target.parent().expect("object paths always have a parent");
    if let Err(e) = fs::rename(staged, target) {
        if e.kind() != std::io::ErrorKind::NotFound {
            return Err(e);
        }
        fs::create_dir_all(parent)?;
        fs::rename(staged, target)?;
    }
    sync_dir(parent)
}

impl Store for LocalStore {
    fn put(&self, kind: ObjectKind, name: &str, bytes: &[u8]) -> Result<()> {
        let target = self.path(kind, name)?;
        let tmp_dir = self.root.join("tmp");
        let mut suffix = [0u8; 12];
        rand::thread_rng().fill_bytes(&mut suffix);
        let tmp = tmp_dir.join(format!("{}-{}", name, hex::encode(suffix)));
        let what = || format!("writing {}", self.describe(kind, name));
        let result = (|| -> std::io::Result<()> {
            let mut file = match OpenOptions::new().write(true).create_new(true).open(&tmp) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    fs::create_dir_all(&tmp_dir)?;
                    OpenOptions::new().write(true).create_new(true).open(&tmp)?
                }
                Err(e) => return Err(e),
            };
            file.write_all(bytes)?;
            file.sync_all()?;
            drop(file);
            install(&tmp, &target)
        })();
        result.map_err(|e| {
            let _ = fs::remove_file(&tmp);
            Error::io(what(), e)
        })
    }

    /// Renames the staged file into place (after an fsync) when it lies under this store's
    /// `tmp/`, and copies it otherwise; no object is ever held in memory.
    fn put_file(&self, kind: ObjectKind, name: &str, path: &Path) -> Result<()> {
        let target = self.path(kind, name)?;
        let what = || format!("writing {} from {}", self.describe(kind, name), path.display());
        let tmp_dir = self.root.join("tmp");
        let staged = if path.parent() == Some(tmp_dir.as_path()) {
            path.to_path_buf()
        } else {
            // Another file system or directory: copy into tmp/ first, so the rename stays atomic.
            let mut suffix = [0u8; 12];
            rand::thread_rng().fill_bytes(&mut suffix);
            let copy = tmp_dir.join(format!("{}-{}", name, hex::encode(suffix)));
            fs::create_dir_all(&tmp_dir).map_err(|e| Error::io(what(), e))?;
            if let Err(e) = fs::copy(path, &copy) {
                let _ = fs::remove_file(&copy);
                return Err(Error::io(what(), e));
            }
            let _ = fs::remove_file(path);
            copy
        };
        let result = File::open(&staged).and_then(|f| f.sync_all()).and_then(|()| install(&staged, &target));
        result.map_err(|e| {
            let _ = fs::remove_file(&staged);
            Error::io(what(), e)
        })
    }

    fn staging_dir(&self) -> Option<PathBuf> {
        Some(self.root.join("tmp"))
    }

    fn get(&self, kind: ObjectKind, name: &str) -> Result<Vec<u8>> {
        let path = self.path(kind, name)?;
        let mut buf = Vec::new();
        File::open(&path)
            .and_then(|mut f| f.read_to_end(&mut buf))
            .map_err(|e| Error::io(format!("reading {}", self.describe(kind, name)), e))?;
        Ok(buf)
    }

    fn get_range(&self, kind: ObjectKind, name: &str, offset: u64, length: u64) -> Result<Vec<u8>> {
        let path = self.path(kind, name)?;
        let what = || format!("reading {} bytes at {} of {}", length, offset, self.describe(kind, name));
        let file = File::open(&path).map_err(|e| Error::io(what(), e))?;
        let len =
            usize::try_from(length).map_err(|_| Error::new(ErrorKind::Io, format!("{}: range too large", what())))?;
        let mut buf = vec![0u8; len];
        file.read_exact_at(&mut buf, offset).map_err(|e| Error::io(what(), e))?;
        Ok(buf)
    }

    fn stat(&self, kind: ObjectKind, name: &str) -> Result<Option<u64>> {
        let path = self.path(kind, name)?;
        match fs::metadata(&path) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(format!("inspecting {}", self.describe(kind, name)), e)),
        }
    }

    fn list(&self, kind: ObjectKind) -> Result<Vec<ObjectInfo>> {
        if kind == ObjectKind::Config {
            return Ok(self
                .stat(kind, "config")?
                .map(|size| vec![ObjectInfo { name: "config".into(), size }])
                .unwrap_or_default());
        }
        let dir = self.root.join(kind.dir());
        let mut out = Vec::new();
        let what = |p: &Path| format!("listing {}", p.display());
        let mut visit = |dir: &Path| -> Result<()> {
            let entries = match fs::read_dir(dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(Error::io(what(dir), e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| Error::io(what(dir), e))?;
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                if validate_name(name).is_err() {
                    continue;
                }
                let meta = entry.metadata().map_err(|e| Error::io(what(dir), e))?;
                if meta.is_file() {
                    out.push(ObjectInfo { name: name.to_string(), size: meta.len() });
                }
            }
            Ok(())
        };
        if kind.is_fanned_out() {
            let subdirs = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
                Err(e) => return Err(Error::io(what(&dir), e)),
            };
            for sub in subdirs {
                let sub = sub.map_err(|e| Error::io(what(&dir), e))?;
                if sub.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    visit(&sub.path())?;
                }
            }
        } else {
            visit(&dir)?;
        }
        Ok(out)
    }

    fn delete(&self, kind: ObjectKind, name: &str) -> Result<()> {
        let path = self.path(kind, name)?;
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(format!("deleting {}", self.describe(kind, name)), e)),
        }
    }

    fn create(&self) -> Result<()> {
        if self.exists()? {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!("a repository already exists at {}", self.root.display()),
            ));
        }
        for kind in ObjectKind::ALL {
            if kind != ObjectKind::Config {
                let dir = self.root.join(kind.dir());
                fs::create_dir_all(&dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
            }
        }
        let tmp = self.root.join("tmp");
        fs::create_dir_all(&tmp).map_err(|e| Error::io(format!("creating {}", tmp.display()), e))?;
        Ok(())
    }

    fn location(&self) -> String {
        self.root.display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_list_delete_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path());
        store.create().unwrap();
        let name = "ab".repeat(32);
        store.put(ObjectKind::DataPack, &name, b"hello").unwrap();
        assert_eq!(store.get(ObjectKind::DataPack, &name).unwrap(), b"hello");
        assert_eq!(store.get_range(ObjectKind::DataPack, &name, 1, 3).unwrap(), b"ell");
        assert_eq!(store.stat(ObjectKind::DataPack, &name).unwrap(), Some(5));
        let listed = store.list(ObjectKind::DataPack).unwrap();
        assert_eq!(listed, vec![ObjectInfo { name: name.clone(), size: 5 }]);
        store.delete(ObjectKind::DataPack, &name).unwrap();
        store.delete(ObjectKind::DataPack, &name).unwrap();
        assert!(store.get(ObjectKind::DataPack, &name).unwrap_err().is_not_found());
        assert!(store.list(ObjectKind::DataPack).unwrap().is_empty());
    }

    #[test]
    fn short_range_is_truncated_error() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path());
        store.put(ObjectKind::Index, "abc", b"12345").unwrap();
        let err = store.get_range(ObjectKind::Index, "abc", 3, 10).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Truncated);
    }

    #[test]
    fn names_with_path_tricks_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path());
        for bad in ["../x", "a/b", "", ".", "A", "x\0y"] {
            assert_eq!(store.put(ObjectKind::Index, bad, b"x").unwrap_err().kind(), ErrorKind::InvalidName);
        }
    }

    #[test]
    fn create_twice_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path());
        store.create().unwrap();
        store.put(ObjectKind::Config, "config", b"{}").unwrap();
        assert_eq!(store.create().unwrap_err().kind(), ErrorKind::AlreadyExists);
    }
}
