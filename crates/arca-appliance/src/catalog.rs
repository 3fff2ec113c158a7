//! The read side of the local repository: which snapshots each share has, and an opened repository
//! with its index loaded for reading them (previous versions, the status page).
//!
//! Readers take an `Arc` of the current [`View`] and never wait for anyone; after each snapshot
//! job the catalogue builds a new view (reopens the repository, reloads the index, re-reads the
//! snapshot list) and swaps it in. A view whose packs were pruned meanwhile reads "not found" for
//! those files until the swap, which happens right after the prune.

use std::collections::BTreeMap;
use std::path::{Component, Path};
use std::sync::{Arc, RwLock};

use arca_core::crypto::MasterKey;
use arca_core::id::{BlobId, SnapshotId};
use arca_core::repository::{DynStore, Repository};
use arca_core::snapshot::Snapshot;
use chrono::{DateTime, Local};

use crate::error::{Error, ErrorKind, Result};

/// The tag that marks a snapshot as one of share `name`'s.
pub fn share_tag(name: &str) -> String {
    format!("share:{name}")
}

/// One snapshot of one share, as previous versions show it.
#[derive(Debug, Clone)]
pub struct ShareSnapshot {
    /// The directory name under `/.snapshots/` (`2026-11-25T10-00`, local time).
    pub dir_name: String,
    /// The snapshot.
    pub id: SnapshotId,
    /// When it was taken.
    pub time: DateTime<chrono::Utc>,
    /// The tree of the share's folder inside the snapshot.
    pub root: BlobId,
}

/// One consistent picture of the repository.
pub struct View {
    /// The repository, index loaded.
    pub repo: Repository,
    /// Snapshots by share name, oldest first.
    pub shares: BTreeMap<String, Vec<ShareSnapshot>>,
}

/// The current view, replaced as a whole after every change.
pub struct Catalog {
    store: DynStore,
    key: MasterKey,
    /// Share names and folders; the admin page changes them.
    shares: RwLock<BTreeMap<String, std::path::PathBuf>>,
    current: RwLock<Arc<View>>,
}

impl Catalog {
    /// Builds the first view. `shares` maps share names to their folders.
    pub fn open(store: DynStore, key: MasterKey, shares: BTreeMap<String, std::path::PathBuf>) -> Result<Catalog> {
        let view = build(&store, &key, &shares)?;
        Ok(Catalog { store, key, shares: RwLock::new(shares), current: RwLock::new(Arc::new(view)) })
    }

    /// The current view.
    pub fn view(&self) -> Arc<View> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Rebuilds the view from the repository (blocking: run it off the async threads).
    pub fn refresh(&self) -> Result<()> {
        let shares = self.shares.read().unwrap_or_else(|p| p.into_inner()).clone();
        let view = build(&self.store, &self.key, &shares)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(view);
        Ok(())
    }

    /// Changes the shares (added or removed on the admin page) and rebuilds the view (blocking).
    pub fn set_shares(&self, shares: BTreeMap<String, std::path::PathBuf>) -> Result<()> {
        *self.shares.write().unwrap_or_else(|p| p.into_inner()) = shares;
        self.refresh()
    }
}

fn build(store: &DynStore, key: &MasterKey, shares: &BTreeMap<String, std::path::PathBuf>) -> Result<View> {
    let mut repo = Repository::open_with_key(store.clone(), key.clone())?;
    // Snapshots before the index: a snapshot written meanwhile is then covered by the index.
    let (all, damaged) = repo.snapshots()?;
    for problem in repo.load_index_for_reading()? {
        tracing::warn!("local repository index: {problem}");
    }
    for e in damaged {
        tracing::warn!("skipping a damaged snapshot: {e}");
    }
    let mut out: BTreeMap<String, Vec<ShareSnapshot>> = BTreeMap::new();
    for (name, folder) in shares {
        let tag = share_tag(name);
        let mut list: Vec<(SnapshotId, Snapshot)> =
            all.iter().filter(|(_, s)| s.tags.contains(&tag)).cloned().collect();
        list.sort_by_key(|(_, s)| s.time);
        let mut entries: Vec<ShareSnapshot> = Vec::new();
        for (id, snap) in list {
            let root = match descend(&repo, snap.tree, folder) {
                Ok(root) => root,
                Err(e) => {
                    tracing::warn!("snapshot {} of share {name}: {e}", id.short());
                    continue;
                }
            };
            let mut dir_name = snap.time.with_timezone(&Local).format("%Y-%m-%dT%H-%M").to_string();
            if entries.iter().any(|e| e.dir_name == dir_name) {
                // Several snapshots in one minute: the later ones carry seconds, then the id.
                dir_name = snap.time.with_timezone(&Local).format("%Y-%m-%dT%H-%M-%S").to_string();
                if entries.iter().any(|e| e.dir_name == dir_name) {
                    dir_name = format!("{dir_name}-{}", id.short());
                }
            }
            entries.push(ShareSnapshot { dir_name, id, time: snap.time, root });
        }
        out.insert(name.clone(), entries);
    }
    Ok(View { repo, shares: out })
}

/// The tree of `folder` inside a snapshot whose root tree is `root` (snapshots store absolute
/// paths as nested directories from `/`).
fn descend(repo: &Repository, root: BlobId, folder: &Path) -> Result<BlobId> {
    let mut tree = root;
    for c in folder.components() {
        let Component::Normal(name) = c else { continue };
        let t = repo.load_tree(&tree)?;
        let node = t
            .find(name.as_encoded_bytes())
            .ok_or_else(|| Error::new(ErrorKind::Repository, format!("{} is not in it", folder.display())))?;
        tree = node.subtree.ok_or_else(|| {
            Error::new(ErrorKind::Repository, format!("{} is not a directory in it", folder.display()))
        })?;
    }
    Ok(tree)
}
