//! Previous versions as a file system, for Samba, on a FUSE mount under the data directory:
//!
//! - `gmt/<share>/@GMT-YYYY.MM.DD-HH.MM.SS/…`: each snapshot under the name (UTC) Windows asks
//!   for and Samba's `vfs_shadow_copy2` understands;
//! - `folders/<share>/<local time>/…`: the same snapshots under the names WebDAV's `.snapshots`
//!   shows (`2026-11-25T10-00`), for the read-only `<share>-versions` SMB share. Samba takes any
//!   path segment that looks like a GMT token for a time-warp request, so those names cannot be
//!   browsed as plain folders.
//!
//! The mount reads through the catalogue's current view ([`crate::catalog`]), so a snapshot
//! taken or pruned shows up or goes away without a remount; nothing is restored to disk.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arca_core::repository::Repository;
use arca_fuse::{Builder, Listed, Source, Target};

use crate::catalog::{Catalog, ShareSnapshot};
use crate::error::{Error, ErrorKind, Result};

/// How snapshot folders are named (strftime, UTC): Samba's default `shadow:format`.
pub const GMT_FORMAT: &str = "@GMT-%Y.%m.%d-%H.%M.%S";

/// Blob cache of the mount: old files stream through it.
const CACHE_BYTES: usize = 64 << 20;

/// A share's snapshots as GMT-token folders: several snapshots in one second keep the newest.
pub fn gmt_entries(snapshots: &[ShareSnapshot]) -> Vec<(String, &ShareSnapshot)> {
    let mut out: Vec<(String, &ShareSnapshot)> = Vec::with_capacity(snapshots.len());
    for s in snapshots {
        let token = s.time.format(GMT_FORMAT).to_string();
        match out.last_mut() {
            Some(last) if last.0 == token => last.1 = s,
            _ => out.push((token, s)),
        }
    }
    out
}

/// Dynamic directory keys: the two roots, and per share a hash of its name with the layout in the
/// low bits (shares come and go while mounted: the admin page adds and removes them).
const GMT_ROOT: u64 = 0;
const FOLDERS_ROOT: u64 = 1;
const GMT: u64 = 2;
const FOLDERS: u64 = 3;

fn share_key(name: &str, layout: u64) -> u64 {
    let h = blake3::hash(name.as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&h.as_bytes()[..8]);
    (u64::from_le_bytes(bytes) & !3) | layout
}

struct CatalogSource {
    catalog: Arc<Catalog>,
}

impl Source for CatalogSource {
    fn with_repository<T>(&self, f: impl FnOnce(&Repository) -> T) -> T {
        let view = self.catalog.view();
        f(&view.repo)
    }

    fn list(&self, key: u64) -> Vec<Listed> {
        let view = self.catalog.view();
        if key == GMT_ROOT || key == FOLDERS_ROOT {
            let layout = if key == GMT_ROOT { GMT } else { FOLDERS };
            return view
                .shares
                .keys()
                .map(|name| Listed {
                    name: name.as_bytes().to_vec(),
                    stable: name.clone(),
                    target: Target::Dynamic(share_key(name, layout)),
                    time: std::time::SystemTime::now(),
                })
                .collect();
        }
        let layout = key & 3;
        let Some(snapshots) = view.shares.iter().find(|(name, _)| share_key(name, layout) == key).map(|(_, s)| s)
        else {
            return Vec::new();
        };
        let listed = |name: &str, s: &ShareSnapshot| Listed {
            name: name.as_bytes().to_vec(),
            stable: s.id.to_hex(),
            target: Target::Tree(s.root),
            time: s.time.into(),
        };
        if layout == GMT {
            gmt_entries(snapshots).into_iter().map(|(token, s)| listed(&token, s)).collect()
        } else {
            snapshots.iter().map(|s| listed(&s.dir_name, s)).collect()
        }
    }
}

/// The mounted previous versions; unmounted when dropped.
pub struct VersionsMount {
    path: PathBuf,
    session: Option<fuser::BackgroundSession>,
}

impl VersionsMount {
    /// Mounts the catalogue's shares at `path/gmt/<share>/` and `path/folders/<share>/` (the
    /// shares it has when looked at).
    pub fn mount(catalog: Arc<Catalog>, path: &Path) -> Result<VersionsMount> {
        clear_stale_mount(path);
        std::fs::create_dir_all(path)
            .map_err(|e| Error::new(ErrorKind::Io, format!("creating the mount point {}: {e}", path.display())))?;
        let mut b = Builder::new();
        b.dynamic(Builder::ROOT, b"gmt", GMT_ROOT);
        b.dynamic(Builder::ROOT, b"folders", FOLDERS_ROOT);
        let fs = b.build(CatalogSource { catalog }, CACHE_BYTES);
        let session = arca_fuse::mount(fs, path, "arca-versions")
            .map_err(|e| Error::new(ErrorKind::Io, format!("previous versions for SMB: {e}")))?;
        Ok(VersionsMount { path: path.to_path_buf(), session: Some(session) })
    }

    /// The folder holding share `name`'s `@GMT-…` folders.
    pub fn gmt_dir(&self, name: &str) -> PathBuf {
        self.path.join("gmt").join(name)
    }

    /// The folder holding share `name`'s snapshots by local time.
    pub fn folders_dir(&self, name: &str) -> PathBuf {
        self.path.join("folders").join(name)
    }
}

impl Drop for VersionsMount {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            if let Err(e) = session.umount_and_join() {
                tracing::warn!(
                    "unmounting {}: {e} (fusermount3 -u {} removes it)",
                    self.path.display(),
                    self.path.display()
                );
            }
        }
    }
}

/// An appliance killed before it could unmount leaves a dead FUSE mount ("transport endpoint is
/// not connected"), or a live one of a process that is gone: detach it so the path can be reused.
fn clear_stale_mount(path: &Path) {
    let stale = match std::fs::metadata(path) {
        Err(e) => e.kind() != std::io::ErrorKind::NotFound,
        Ok(meta) => {
            use std::os::unix::fs::MetadataExt;
            let parent = path.parent().and_then(|p| std::fs::metadata(p).ok());
            parent.is_some_and(|p| p.dev() != meta.dev())
        }
    };
    if stale {
        tracing::info!("detaching a mount left at {} by an earlier run", path.display());
        // fusermount3 for an unprivileged appliance, umount when root without it.
        let detached = ["fusermount3 -u -z", "umount -l"].iter().any(|cmd| {
            let mut words = cmd.split(' ');
            let program = words.next().unwrap_or_default();
            std::process::Command::new(program)
                .args(words)
                .arg(path)
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
        if !detached {
            tracing::warn!("could not detach {} (fusermount3 -u -z or umount -l it by hand)", path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn snap(secs: i64, id: u8) -> ShareSnapshot {
        ShareSnapshot {
            dir_name: String::new(),
            id: arca_core::id::SnapshotId([id; 32]),
            time: chrono::Utc.timestamp_opt(secs, 500_000_000).unwrap(),
            root: arca_core::id::BlobId([id; 32]),
        }
    }

    #[test]
    fn tokens_are_utc_and_one_per_second() {
        let snaps = [snap(1_764_950_400, 1), snap(1_764_950_400, 2), snap(1_764_950_401, 3)];
        let e = gmt_entries(&snaps);
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].0, "@GMT-2025.12.05-16.00.00");
        assert_eq!(e[0].1.id, snaps[1].id, "the newer of two in one second");
        assert_eq!(e[1].0, "@GMT-2025.12.05-16.00.01");
    }
}
