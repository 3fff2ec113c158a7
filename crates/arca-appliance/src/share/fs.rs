//! One share's file system as WebDAV sees it: the live folder (dav-server's `LocalFs`), its dead
//! properties kept in extended attributes, and the read-only `/.snapshots` tree beside it.
//!
//! Dead properties (PROPPATCH) live in `user.davprop.<hash>` extended attributes of the file
//! itself, so they move with it on MOVE, survive restarts and are part of every snapshot. COPY
//! copies them explicitly (a file copy does not). Nothing under `/.snapshots` can be written,
//! moved or deleted; copying *from* it into the live folder is how users restore a file. Whole-file
//! PUTs go through [`super::upload`], so an upload appears only when it is complete.

use std::path::{Component, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use dav_server::davpath::DavPath;
use dav_server::fs::{
    DavDirEntry, DavFile, DavFileSystem, DavMetaData, DavProp, FsError, FsFuture, FsResult, FsStream, OpenOptions,
    ReadDirMeta,
};
use dav_server::localfs::LocalFs;
use futures_util::{FutureExt, StreamExt};
use http::StatusCode;
use serde::{Deserialize, Serialize};

use crate::catalog::Catalog;
use crate::snapshots_fs::{under_snapshots, SnapshotTree, SNAPSHOTS_DIR};

/// Prefix of the extended attributes holding dead properties.
const PROP_XATTR: &str = "user.davprop.";

/// A share's file system.
#[derive(Clone)]
pub struct ShareFs {
    local: Box<LocalFs>,
    root: Arc<PathBuf>,
    snapshots: SnapshotTree,
}

#[derive(Serialize, Deserialize)]
struct StoredProp {
    name: String,
    prefix: Option<String>,
    namespace: Option<String>,
    xml: Option<String>,
}

fn prop_xattr_name(namespace: &Option<String>, name: &str) -> String {
    let mut h = blake3::Hasher::new();
    h.update(namespace.as_deref().unwrap_or("").as_bytes());
    h.update(b"\0");
    h.update(name.as_bytes());
    format!("{PROP_XATTR}{}", &h.finalize().to_hex()[..32])
}

fn io_err(e: std::io::Error) -> FsError {
    FsError::from(e)
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> FsResult<T> + Send + 'static) -> FsResult<T> {
    tokio::task::spawn_blocking(f).await.map_err(|_| FsError::GeneralFailure)?
}

impl ShareFs {
    /// The share served from `folder`, with previous versions from `catalog`.
    ///
    /// Folders and files are created readable by all local users (0755/0644, "public" in
    /// dav-server's terms): who may use a share is decided by the appliance's users, not by file
    /// modes, and 0700 folders shut out the machine's own tools (a local backup, an SMB server).
    pub fn new(folder: PathBuf, share: &str, catalog: Arc<Catalog>) -> ShareFs {
        ShareFs {
            local: LocalFs::new(&folder, true, false, false),
            root: Arc::new(folder),
            snapshots: SnapshotTree::new(catalog, share),
        }
    }

    /// The file behind a DAV path, refusing anything that is not a plain relative path.
    fn os_path(&self, path: &DavPath) -> FsResult<PathBuf> {
        let rel = path.as_rel_ospath();
        if rel.components().any(|c| !matches!(c, Component::Normal(_) | Component::CurDir)) {
            return Err(FsError::Forbidden);
        }
        Ok(self.root.join(rel))
    }

    fn read_props(file: &std::path::Path) -> FsResult<Vec<StoredProp>> {
        let mut out = Vec::new();
        for name in xattr::list(file).map_err(io_err)? {
            let Some(n) = name.to_str() else { continue };
            if !n.starts_with(PROP_XATTR) {
                continue;
            }
            if let Some(v) = xattr::get(file, n).map_err(io_err)? {
                if let Ok(p) = serde_json::from_slice::<StoredProp>(&v) {
                    out.push(p);
                }
            }
        }
        Ok(out)
    }

    fn to_dav(p: StoredProp, content: bool) -> DavProp {
        DavProp {
            name: p.name,
            prefix: p.prefix,
            namespace: p.namespace,
            xml: if content { p.xml.map(String::into_bytes) } else { None },
        }
    }

    /// Copies a file of a snapshot into the live folder (a user restoring an old version).
    async fn copy_from_snapshot(&self, rel: Vec<u8>, to: &DavPath) -> FsResult<()> {
        let mut src = self.snapshots.open(rel).await?;
        let mut dst = DavFileSystem::open(
            self,
            to,
            OpenOptions { write: true, create: true, truncate: true, ..OpenOptions::default() },
        )
        .await?;
        loop {
            let chunk = src.read_bytes(1 << 20).await?;
            if chunk.is_empty() {
                break;
            }
            dst.write_bytes(chunk).await?;
        }
        dst.flush().await
    }
}

impl DavFileSystem for ShareFs {
    fn open<'a>(&'a self, path: &'a DavPath, options: OpenOptions) -> FsFuture<'a, Box<dyn DavFile>> {
        async move {
            if let Some(rel) = under_snapshots(path.as_bytes()) {
                if options.write || options.append || options.truncate || options.create || options.create_new {
                    return Err(FsError::Forbidden);
                }
                return self.snapshots.open(rel).await;
            }
            if options.write && options.truncate && !options.append {
                let dest = self.os_path(path)?;
                let upload = super::upload::AtomicUpload::start(dest, options.create, options.create_new).await?;
                return Ok(Box::new(upload) as Box<dyn DavFile>);
            }
            DavFileSystem::open(self.local.as_ref(), path, options).await
        }
        .boxed()
    }

    fn read_dir<'a>(&'a self, path: &'a DavPath, meta: ReadDirMeta) -> FsFuture<'a, FsStream<Box<dyn DavDirEntry>>> {
        async move {
            if let Some(rel) = under_snapshots(path.as_bytes()) {
                return self.snapshots.read_dir(rel).await;
            }
            let live = DavFileSystem::read_dir(self.local.as_ref(), path, meta).await?;
            // `.snapshots` is not listed (a real one in the folder is hidden by the virtual one):
            // a client copying the share would otherwise copy every previous version too. It is
            // reachable by its path, as Samba's `@GMT-…` names are.
            let live = live.filter(|e| {
                let hide = matches!(e, Ok(e) if e.name() == SNAPSHOTS_DIR.as_bytes()
                    || e.name().starts_with(super::upload::UPLOAD_PREFIX.as_bytes()));
                futures_util::future::ready(!hide)
            });
            let s: FsStream<Box<dyn DavDirEntry>> = Box::pin(live);
            Ok(s)
        }
        .boxed()
    }

    fn metadata<'a>(&'a self, path: &'a DavPath) -> FsFuture<'a, Box<dyn DavMetaData>> {
        async move {
            if let Some(rel) = under_snapshots(path.as_bytes()) {
                return self.snapshots.metadata(rel).await;
            }
            DavFileSystem::metadata(self.local.as_ref(), path).await
        }
        .boxed()
    }

    fn symlink_metadata<'a>(&'a self, path: &'a DavPath) -> FsFuture<'a, Box<dyn DavMetaData>> {
        async move {
            if let Some(rel) = under_snapshots(path.as_bytes()) {
                return self.snapshots.metadata(rel).await;
            }
            DavFileSystem::symlink_metadata(self.local.as_ref(), path).await
        }
        .boxed()
    }

    fn create_dir<'a>(&'a self, path: &'a DavPath) -> FsFuture<'a, ()> {
        if under_snapshots(path.as_bytes()).is_some() {
            return Box::pin(futures_util::future::err(FsError::Forbidden));
        }
        DavFileSystem::create_dir(self.local.as_ref(), path)
    }

    fn remove_dir<'a>(&'a self, path: &'a DavPath) -> FsFuture<'a, ()> {
        if under_snapshots(path.as_bytes()).is_some() {
            return Box::pin(futures_util::future::err(FsError::Forbidden));
        }
        DavFileSystem::remove_dir(self.local.as_ref(), path)
    }

    fn remove_file<'a>(&'a self, path: &'a DavPath) -> FsFuture<'a, ()> {
        if under_snapshots(path.as_bytes()).is_some() {
            return Box::pin(futures_util::future::err(FsError::Forbidden));
        }
        DavFileSystem::remove_file(self.local.as_ref(), path)
    }

    fn rename<'a>(&'a self, from: &'a DavPath, to: &'a DavPath) -> FsFuture<'a, ()> {
        if under_snapshots(from.as_bytes()).is_some() || under_snapshots(to.as_bytes()).is_some() {
            return Box::pin(futures_util::future::err(FsError::Forbidden));
        }
        DavFileSystem::rename(self.local.as_ref(), from, to)
    }

    fn copy<'a>(&'a self, from: &'a DavPath, to: &'a DavPath) -> FsFuture<'a, ()> {
        async move {
            if under_snapshots(to.as_bytes()).is_some() {
                return Err(FsError::Forbidden);
            }
            if let Some(rel) = under_snapshots(from.as_bytes()) {
                return self.copy_from_snapshot(rel, to).await;
            }
            DavFileSystem::copy(self.local.as_ref(), from, to).await?;
            // Dead properties travel with the copy.
            let (src, dst) = (self.os_path(from)?, self.os_path(to)?);
            blocking(move || {
                for name in xattr::list(&src).map_err(io_err)? {
                    if name.to_str().is_some_and(|n| n.starts_with(PROP_XATTR)) {
                        if let Some(v) = xattr::get(&src, &name).map_err(io_err)? {
                            xattr::set(&dst, &name, &v).map_err(io_err)?;
                        }
                    }
                }
                Ok(())
            })
            .await
        }
        .boxed()
    }

    fn set_accessed<'a>(&'a self, path: &'a DavPath, tm: SystemTime) -> FsFuture<'a, ()> {
        if under_snapshots(path.as_bytes()).is_some() {
            return Box::pin(futures_util::future::err(FsError::Forbidden));
        }
        DavFileSystem::set_accessed(self.local.as_ref(), path, tm)
    }

    fn set_modified<'a>(&'a self, path: &'a DavPath, tm: SystemTime) -> FsFuture<'a, ()> {
        if under_snapshots(path.as_bytes()).is_some() {
            return Box::pin(futures_util::future::err(FsError::Forbidden));
        }
        DavFileSystem::set_modified(self.local.as_ref(), path, tm)
    }

    fn have_props<'a>(
        &'a self,
        path: &'a DavPath,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send + 'a>> {
        Box::pin(futures_util::future::ready(under_snapshots(path.as_bytes()).is_none()))
    }

    fn patch_props<'a>(
        &'a self,
        path: &'a DavPath,
        patch: Vec<(bool, DavProp)>,
    ) -> FsFuture<'a, Vec<(StatusCode, DavProp)>> {
        async move {
            if under_snapshots(path.as_bytes()).is_some() {
                return Err(FsError::Forbidden);
            }
            let file = self.os_path(path)?;
            blocking(move || {
                if !file.exists() {
                    return Err(FsError::NotFound);
                }
                let mut out = Vec::new();
                for (set, p) in patch {
                    let key = prop_xattr_name(&p.namespace, &p.name);
                    let result = if set {
                        let stored = StoredProp {
                            name: p.name.clone(),
                            prefix: p.prefix.clone(),
                            namespace: p.namespace.clone(),
                            xml: p.xml.as_ref().map(|x| String::from_utf8_lossy(x).into_owned()),
                        };
                        let bytes = serde_json::to_vec(&stored).map_err(|_| FsError::GeneralFailure)?;
                        xattr::set(&file, &key, &bytes)
                    } else {
                        match xattr::remove(&file, &key) {
                            Err(e) if e.raw_os_error() == Some(libc::ENODATA) => Ok(()),
                            other => other,
                        }
                    };
                    let status = match result {
                        Ok(()) => StatusCode::OK,
                        Err(e) => {
                            tracing::warn!("storing a WebDAV property on {}: {e}", file.display());
                            match FsError::from(e) {
                                FsError::InsufficientStorage => StatusCode::INSUFFICIENT_STORAGE,
                                FsError::Forbidden => StatusCode::FORBIDDEN,
                                _ => StatusCode::CONFLICT,
                            }
                        }
                    };
                    out.push((status, DavProp { xml: None, ..p }));
                }
                Ok(out)
            })
            .await
        }
        .boxed()
    }

    fn get_props<'a>(&'a self, path: &'a DavPath, do_content: bool) -> FsFuture<'a, Vec<DavProp>> {
        async move {
            if under_snapshots(path.as_bytes()).is_some() {
                return Ok(Vec::new());
            }
            let file = self.os_path(path)?;
            blocking(move || Ok(Self::read_props(&file)?.into_iter().map(|p| Self::to_dav(p, do_content)).collect()))
                .await
        }
        .boxed()
    }

    fn get_prop<'a>(&'a self, path: &'a DavPath, prop: DavProp) -> FsFuture<'a, Vec<u8>> {
        async move {
            if under_snapshots(path.as_bytes()).is_some() {
                return Err(FsError::NotFound);
            }
            let file = self.os_path(path)?;
            blocking(move || {
                let key = prop_xattr_name(&prop.namespace, &prop.name);
                let v = xattr::get(&file, key).map_err(io_err)?.ok_or(FsError::NotFound)?;
                let p: StoredProp = serde_json::from_slice(&v).map_err(|_| FsError::GeneralFailure)?;
                p.xml.map(String::into_bytes).ok_or(FsError::NotFound)
            })
            .await
        }
        .boxed()
    }

    fn get_quota(&self) -> FsFuture<'_, (u64, Option<u64>)> {
        DavFileSystem::get_quota(self.local.as_ref())
    }
}
