//! An opened repository: the store, the master key, the config, and (once loaded) the index.
//!
//! Everything above this module reads and writes typed objects through it; nothing above it knows
//! object layouts or names.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use arca_store::{ObjectKind, Store};
use rayon::prelude::*;

use crate::config::Config;
use crate::crypto::MasterKey;
use crate::error::{Error, ErrorKind, Result};
use crate::id::{content_hash, BlobId, IndexId, PackId, SnapshotId};
use crate::index::{decode_index, encode_index, Index, IndexPack};
use crate::keys::{KdfParams, KeySlot};
use crate::pack::{open_blob_with, BlobType, PackKind};
use crate::snapshot::Snapshot;
use crate::tree::Tree;

/// Every readable snapshot (oldest first) and the errors of the unreadable ones.
pub type SnapshotsAndDamage = (Vec<(SnapshotId, Snapshot)>, Vec<Error>);

/// A shared handle to a store.
pub type DynStore = Arc<dyn Store>;

/// An opened repository.
pub struct Repository {
    store: DynStore,
    config: Config,
    key: Arc<MasterKey>,
    index: Index,
    /// Which packs each index file covers (for prune's index rewrite).
    index_files: HashMap<IndexId, Vec<PackId>>,
    /// Index files the last load read but could not use (damaged, or not sealed with this
    /// repository's key), by name.
    unreadable_index: Vec<String>,
    /// Whole metadata packs kept in memory: trees are small and read over and over.
    meta_cache: Mutex<MetaCache>,
}

/// Metadata packs kept in memory, least recently used out first, within a byte budget
/// ([`META_CACHE_BYTES`]): a long-lived reader (the portal's unlocked repositories, a mount, the
/// appliance) must not grow with the repository's metadata.
#[derive(Default)]
struct MetaCache {
    packs: HashMap<PackId, Arc<Vec<u8>>>,
    /// Least recently used first.
    order: std::collections::VecDeque<PackId>,
    bytes: usize,
}

/// Bytes of metadata packs one open repository keeps in memory at most.
pub const META_CACHE_BYTES: usize = 256 << 20;

impl MetaCache {
    fn get(&mut self, id: &PackId) -> Option<Arc<Vec<u8>>> {
        let found = self.packs.get(id)?.clone();
        if let Some(at) = self.order.iter().position(|p| p == id) {
            self.order.remove(at);
        }
        self.order.push_back(*id);
        Some(found)
    }

    fn insert(&mut self, id: PackId, bytes: Arc<Vec<u8>>, budget: usize) {
        if bytes.len() > budget || self.packs.contains_key(&id) {
            return;
        }
        while self.bytes + bytes.len() > budget {
            let Some(oldest) = self.order.pop_front() else { break };
            if let Some(gone) = self.packs.remove(&oldest) {
                self.bytes -= gone.len();
            }
        }
        self.bytes += bytes.len();
        self.order.push_back(id);
        self.packs.insert(id, bytes);
    }
}

/// A key slot as `key list` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KeyInfo {
    /// Object name of the slot.
    pub id: String,
    /// Whether this slot opened the repository in this session.
    pub current: bool,
    /// The slot's metadata.
    #[serde(flatten)]
    pub slot: KeySlot,
}

impl Repository {
    /// Creates a new repository in an empty store, protected by `password`.
    pub fn init(store: DynStore, password: &[u8], kdf: KdfParams, config: Config) -> Result<Repository> {
        Self::init_with_key(store, password, kdf, config, MasterKey::generate())
    }

    /// Creates a repository that shares `key` with another (so `copy` moves packs verbatim).
    pub fn init_with_key(
        store: DynStore,
        password: &[u8],
        kdf: KdfParams,
        config: Config,
        key: MasterKey,
    ) -> Result<Repository> {
        if store.exists()? {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!("a repository already exists at {}", store.location()),
            ));
        }
        store.create()?;
        let slot = KeySlot::seal(&key, password, kdf, "")?;
        let bytes = slot.to_bytes();
        store.put(ObjectKind::Key, &hex::encode(content_hash(&bytes)), &bytes)?;
        // The config goes last: its presence is what makes the store a repository.
        store.put(ObjectKind::Config, "config", &config.to_bytes())?;
        Ok(Self::from_parts(store, config, Arc::new(key)))
    }

    fn from_parts(store: DynStore, config: Config, key: Arc<MasterKey>) -> Repository {
        Repository {
            store,
            config,
            key,
            index: Index::new(),
            index_files: HashMap::new(),
            unreadable_index: Vec::new(),
            meta_cache: Mutex::new(MetaCache::default()),
        }
    }

    /// Reads the config, or says there is no repository.
    pub fn read_config(store: &dyn Store) -> Result<Config> {
        match store.get(ObjectKind::Config, "config") {
            Ok(bytes) => Config::from_bytes(&bytes),
            Err(e) if e.is_not_found() => Err(Error::new(
                ErrorKind::NoRepository,
                format!("there is no arca repository at {} (create one with `arca init`)", store.location()),
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// Opens a repository with a password, trying every key slot.
    pub fn open(store: DynStore, password: &[u8]) -> Result<Repository> {
        let config = Self::read_config(store.as_ref())?;
        let (key, _) = Self::unlock(store.as_ref(), password)?;
        Ok(Self::from_parts(store, config, Arc::new(key)))
    }

    /// Opens a repository with an already unwrapped key.
    pub fn open_with_key(store: DynStore, key: MasterKey) -> Result<Repository> {
        let config = Self::read_config(store.as_ref())?;
        Ok(Self::from_parts(store, config, Arc::new(key)))
    }

    fn unlock(store: &dyn Store, password: &[u8]) -> Result<(MasterKey, String)> {
        let slots = store.list(ObjectKind::Key)?;
        if slots.is_empty() {
            return Err(Error::corrupt(format!("the repository at {} has no key slots", store.location())));
        }
        for info in slots {
            let slot =
                match store.get(ObjectKind::Key, &info.name).map_err(Error::from).and_then(|b| KeySlot::from_bytes(&b))
                {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!("skipping key slot {}: {e}", info.name);
                        continue;
                    }
                };
            if let Some(key) = slot.open(password)? {
                return Ok((key, info.name));
            }
        }
        Err(Error::new(
            ErrorKind::WrongPassword,
            "wrong password: no key slot of this repository opens with it (check ARCA_PASSWORD or --password-file)",
        ))
    }

    /// The store.
    pub fn store(&self) -> &DynStore {
        &self.store
    }

    /// The config.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The master key.
    pub fn key(&self) -> &Arc<MasterKey> {
        &self.key
    }

    /// The loaded index (empty until [`Repository::load_index`]).
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// Mutable index, for engines that drop packs from it.
    pub fn index_mut(&mut self) -> &mut Index {
        &mut self.index
    }

    /// Index files seen by the last load, with the packs each covers.
    pub fn index_files(&self) -> &HashMap<IndexId, Vec<PackId>> {
        &self.index_files
    }

    /// Index files the last load read but could not use: their content is damaged or was not
    /// sealed with this repository's key, so nothing in them is usable by any key holder (storage
    /// errors are not counted: the file may read fine next time).
    pub fn unreadable_index_files(&self) -> &[String] {
        &self.unreadable_index
    }

    // ---- keys ----------------------------------------------------------------------------

    /// Adds a password.
    pub fn add_key(&self, password: &[u8], kdf: KdfParams, label: &str) -> Result<String> {
        let slot = KeySlot::seal(&self.key, password, kdf, label)?;
        let bytes = slot.to_bytes();
        let name = hex::encode(content_hash(&bytes));
        self.store.put(ObjectKind::Key, &name, &bytes)?;
        Ok(name)
    }

    /// Adds a slot sealed to a provider's recovery public key (the recovery service: the
    /// provider's staff can then open the repository with their private key; no password does).
    pub fn add_provider_slot(&self, provider_public: &[u8; 32], label: &str) -> Result<String> {
        let bytes = KeySlot::seal_to_provider(&self.key, provider_public, label).to_bytes();
        let name = hex::encode(content_hash(&bytes));
        self.store.put(ObjectKind::Key, &name, &bytes)?;
        Ok(name)
    }

    /// Lists key slots; `current` is the name of the slot that opened this session, if known.
    pub fn list_keys(&self, current: Option<&str>) -> Result<Vec<KeyInfo>> {
        let mut out = Vec::new();
        for info in self.store.list(ObjectKind::Key)? {
            let slot = KeySlot::from_bytes(&self.store.get(ObjectKind::Key, &info.name)?)?;
            out.push(KeyInfo { current: Some(info.name.as_str()) == current, id: info.name, slot });
        }
        out.sort_by_key(|k| k.slot.created);
        Ok(out)
    }

    /// Which slot `password` opens.
    pub fn slot_for_password(&self, password: &[u8]) -> Result<String> {
        Ok(Self::unlock(self.store.as_ref(), password)?.1)
    }

    /// Resolves a key-slot id prefix.
    pub fn resolve_key(&self, prefix: &str) -> Result<String> {
        let matches: Vec<String> =
            self.store.list(ObjectKind::Key)?.into_iter().map(|i| i.name).filter(|n| n.starts_with(prefix)).collect();
        match matches.len() {
            1 => Ok(matches.into_iter().next().expect("one")),
            0 => Err(Error::not_found(format!("no key slot starts with {prefix:?} (see `arca key list`)"))),
            n => Err(Error::not_found(format!("{n} key slots start with {prefix:?}; give more digits"))),
        }
    }

    /// Removes a key slot; refuses to remove the last one.
    pub fn remove_key(&self, name: &str) -> Result<()> {
        if self.store.list(ObjectKind::Key)?.len() <= 1 {
            return Err(Error::invalid(
                "refusing to remove the only key slot: the repository would be unreadable forever",
            ));
        }
        self.store.delete(ObjectKind::Key, name)?;
        Ok(())
    }

    // ---- index ---------------------------------------------------------------------------

    /// Loads every index file (in parallel). Damaged index files are reported in the result and
    /// skipped: their packs stay readable once the index is rebuilt (`check` says how).
    pub fn load_index(&mut self) -> Result<Vec<Error>> {
        let infos = self.store.list(ObjectKind::Index)?;
        let key = self.key.clone();
        let store = self.store.clone();
        let loaded: Vec<(String, Result<Vec<IndexPack>>)> = infos
            .par_iter()
            .map(|info| {
                let r = store
                    .get(ObjectKind::Index, &info.name)
                    .map_err(Error::from)
                    .and_then(|bytes| {
                        if hex::encode(content_hash(&bytes)) != info.name {
                            return Err(Error::corrupt("its content does not match its name"));
                        }
                        decode_index(&key, &bytes)
                    })
                    .map_err(|e| match e.kind() {
                        // The bytes were read and are unusable to every key holder (one master
                        // key serves every slot): say so, and what to do.
                        ErrorKind::Corrupt => e.context(format!(
                            "index file {} cannot be read with this repository's key (damaged, or not \
                             written by a key holder)",
                            info.name
                        )),
                        _ => e.context(format!("reading index file {}", info.name)),
                    });
                (info.name.clone(), r)
            })
            .collect();
        let mut index = Index::new();
        let mut files = HashMap::new();
        let mut problems = Vec::new();
        let mut unreadable = Vec::new();
        for (name, r) in loaded {
            match r {
                Ok(packs) => {
                    for p in &packs {
                        index.add_pack(p);
                    }
                    if let Some(id) = IndexId::from_hex(&name) {
                        files.insert(id, packs.iter().map(|p| p.id).collect());
                    }
                }
                Err(e) => {
                    if e.kind() == ErrorKind::Corrupt {
                        unreadable.push(name);
                    }
                    problems.push(e)
                }
            }
        }
        unreadable.sort();
        self.index = index;
        self.index_files = files;
        self.unreadable_index = unreadable;
        Ok(problems)
    }

    /// Another handle on this repository (same store, config and key) with its index loaded
    /// afresh for reading, plus the index files it could not read. For long-lived readers (the
    /// portal's unlocked repositories, a mount) that meet a snapshot backed up after they loaded
    /// their index: its blobs are in index files newer than theirs.
    pub fn reopened_for_reading(&self) -> Result<(Repository, Vec<Error>)> {
        let mut fresh = Self::from_parts(self.store.clone(), self.config.clone(), self.key.clone());
        let problems = fresh.load_index_for_reading()?;
        Ok((fresh, problems))
    }

    /// Whether the loaded index knows `snapshot`'s root tree; when it does not, the snapshot is
    /// newer than the index (see [`Repository::reopened_for_reading`]) or its tree is lost.
    pub fn index_covers(&self, snapshot: &Snapshot) -> bool {
        self.index.get(&snapshot.tree).is_some()
    }

    /// Loads the index for reading data (restore, dump, ls): as [`Repository::load_index`], then
    /// drops entries whose pack no longer exists (a prune, possibly by the server, deleted it), so
    /// a surviving copy of a blob is used instead.
    pub fn load_index_for_reading(&mut self) -> Result<Vec<Error>> {
        let problems = self.load_index()?;
        let existing = self.list_packs()?;
        let dropped = self.drop_packs_from_index(&existing, &HashSet::new());
        if dropped > 0 {
            tracing::info!("{dropped} indexed packs no longer exist; using other copies of their blobs");
        }
        Ok(problems)
    }

    /// Stores an index file covering `packs`.
    pub fn write_index(&self, packs: &[IndexPack]) -> Result<IndexId> {
        let bytes = encode_index(&self.key, packs);
        let id = IndexId(content_hash(&bytes));
        self.store.put(ObjectKind::Index, &id.to_hex(), &bytes)?;
        Ok(id)
    }

    // ---- blobs ---------------------------------------------------------------------------

    /// Reads one blob's plaintext.
    pub fn read_blob(&self, id: &BlobId) -> Result<Vec<u8>> {
        let (pack, loc) = self.index.get(id).ok_or_else(|| {
            Error::new(ErrorKind::Missing, format!("blob {id} is not in the index (run `arca check`)"))
        })?;
        let entry = loc.entry(*id);
        let sealed_owned;
        let meta;
        let sealed: &[u8] = if pack.kind == PackKind::Meta {
            meta = self.meta_pack(&pack.id)?;
            let start = loc.offset as usize;
            let end = start + loc.length as usize;
            meta.get(start..end).ok_or_else(|| Error::corrupt(format!("metadata pack {} is truncated", pack.id)))?
        } else {
            sealed_owned =
                self.store.get_range(ObjectKind::DataPack, &pack.id.to_hex(), loc.offset as u64, loc.length as u64)?;
            &sealed_owned
        };
        open_blob_with(&self.key.object_key(&pack.salt), &self.key, &entry, sealed)
            .map_err(|e| e.context(format!("reading from pack {}", pack.id)))
    }

    fn meta_pack(&self, id: &PackId) -> Result<Arc<Vec<u8>>> {
        if let Some(p) = self.meta_cache.lock().unwrap_or_else(|p| p.into_inner()).get(id) {
            return Ok(p);
        }
        let bytes = Arc::new(self.store.get(ObjectKind::MetaPack, &id.to_hex())?);
        self.meta_cache.lock().unwrap_or_else(|p| p.into_inner()).insert(*id, bytes.clone(), META_CACHE_BYTES);
        Ok(bytes)
    }

    /// Reads and decodes a tree.
    pub fn load_tree(&self, id: &BlobId) -> Result<Tree> {
        if let Some((_, loc)) = self.index.get(id) {
            if loc.blob_type() != BlobType::Tree {
                return Err(Error::corrupt(format!("blob {id} should be a tree but is data")));
            }
        }
        Tree::decode(&self.read_blob(id)?).map_err(|e| e.context(format!("tree {id}")))
    }

    // ---- snapshots -----------------------------------------------------------------------

    /// Stores a snapshot with its manifest; returns its id.
    pub fn save_snapshot(&self, snapshot: &Snapshot, packs: &[(PackKind, PackId)]) -> Result<SnapshotId> {
        let bytes = snapshot.encode(&self.key, packs);
        let id = SnapshotId(content_hash(&bytes));
        self.store.put(ObjectKind::Snapshot, &id.to_hex(), &bytes)?;
        Ok(id)
    }

    /// Loads one snapshot with its manifest.
    pub fn load_snapshot(&self, id: &SnapshotId) -> Result<(Snapshot, Vec<(PackKind, PackId)>)> {
        let bytes = self.store.get(ObjectKind::Snapshot, &id.to_hex()).map_err(|e| {
            if e.is_not_found() {
                Error::not_found(format!("snapshot {id} does not exist"))
            } else {
                e.into()
            }
        })?;
        if content_hash(&bytes) != id.0 {
            return Err(Error::corrupt(format!("snapshot {id}: its content does not match its name")));
        }
        Snapshot::decode(&self.key, &bytes).map_err(|e| e.context(format!("snapshot {id}")))
    }

    /// Every snapshot, oldest first. Damaged ones are returned separately.
    pub fn snapshots(&self) -> Result<SnapshotsAndDamage> {
        let names = self.store.list(ObjectKind::Snapshot)?;
        let loaded: Vec<Result<(SnapshotId, Snapshot)>> = names
            .par_iter()
            .map(|info| {
                let id = SnapshotId::from_hex(&info.name)
                    .ok_or_else(|| Error::corrupt(format!("snapshot object with a bad name {}", info.name)))?;
                Ok((id, self.load_snapshot(&id)?.0))
            })
            .collect();
        let mut good = Vec::new();
        let mut bad = Vec::new();
        for r in loaded {
            match r {
                Ok(s) => good.push(s),
                Err(e) => bad.push(e),
            }
        }
        good.sort_by(|a, b| a.1.time.cmp(&b.1.time).then(a.0.cmp(&b.0)));
        Ok((good, bad))
    }

    /// Finds a snapshot by `latest` or an id prefix, among those passing `filter`.
    pub fn find_snapshot(&self, spec: &str, filter: &SnapshotFilter) -> Result<(SnapshotId, Snapshot)> {
        let (all, _) = self.snapshots()?;
        if spec == "latest" {
            return all
                .into_iter()
                .filter(|(_, s)| filter.matches(s))
                .max_by(|a, b| a.1.time.cmp(&b.1.time))
                .ok_or_else(|| Error::not_found(format!("no snapshot matches {}", filter.describe())));
        }
        let spec = spec.to_ascii_lowercase();
        if spec.is_empty() || !spec.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::invalid(format!("{spec:?} is neither `latest` nor a snapshot id")));
        }
        let mut found: Vec<(SnapshotId, Snapshot)> =
            all.into_iter().filter(|(id, _)| id.to_hex().starts_with(&spec)).collect();
        match found.len() {
            1 => Ok(found.pop().expect("one")),
            0 => Err(Error::not_found(format!("no snapshot id starts with {spec} (see `arca snapshots`)"))),
            n => Err(Error::not_found(format!("{n} snapshots start with {spec}; give more digits"))),
        }
    }

    /// Deletes a snapshot object.
    pub fn delete_snapshot(&self, id: &SnapshotId) -> Result<()> {
        self.store.delete(ObjectKind::Snapshot, &id.to_hex())?;
        Ok(())
    }

    /// Every pack in the store, by kind.
    pub fn list_packs(&self) -> Result<HashMap<PackId, (PackKind, u64)>> {
        let mut out = HashMap::new();
        for kind in [PackKind::Data, PackKind::Meta] {
            for info in self.store.list(kind.object_kind())? {
                match PackId::from_hex(&info.name) {
                    Some(id) => {
                        out.insert(id, (kind, info.size));
                    }
                    None => tracing::warn!("ignoring a {} object with a bad name: {}", kind.object_kind(), info.name),
                }
            }
        }
        Ok(out)
    }

    /// Drops from the in-memory index every pack the store does not have (after a crash or a
    /// server-side deletion) and every pack in `also`. Returns how many packs were dropped.
    pub fn drop_packs_from_index(
        &mut self,
        existing: &HashMap<PackId, (PackKind, u64)>,
        also: &HashSet<PackId>,
    ) -> usize {
        let gone: HashSet<PackId> = self
            .index
            .packs()
            .iter()
            .map(|p| p.id)
            .filter(|id| !existing.contains_key(id) || also.contains(id))
            .collect();
        let n = gone.len();
        self.index.forget_packs(&gone);
        n
    }
}

/// Which snapshots a command considers (`--host`, `--tag`, `--path`).
#[derive(Debug, Clone, Default)]
pub struct SnapshotFilter {
    /// Only these hosts (any of).
    pub hosts: Vec<String>,
    /// Only snapshots with all of these tags.
    pub tags: Vec<String>,
    /// Only snapshots whose paths include all of these.
    pub paths: Vec<String>,
}

impl SnapshotFilter {
    /// Whether `s` passes.
    pub fn matches(&self, s: &Snapshot) -> bool {
        (self.hosts.is_empty() || self.hosts.contains(&s.hostname))
            && s.has_tags(&self.tags)
            && self.paths.iter().all(|p| s.paths.contains(p))
    }

    fn describe(&self) -> String {
        if self.hosts.is_empty() && self.tags.is_empty() && self.paths.is_empty() {
            "(the repository has no snapshots)".into()
        } else {
            format!("host {:?}, tags {:?}, paths {:?}", self.hosts, self.tags, self.paths)
        }
    }
}

#[cfg(test)]
mod meta_cache_tests {
    use super::*;

    #[test]
    fn the_metadata_cache_stays_within_its_budget_and_keeps_what_is_used() {
        let mut c = MetaCache::default();
        let id = |n: u8| PackId([n; 32]);
        for n in 0..10u8 {
            c.insert(id(n), Arc::new(vec![n; 100]), 350);
            assert!(c.bytes <= 350);
            assert!(c.get(&id(0)).is_some(), "the pack used all along stays");
        }
        assert_eq!(c.packs.len(), 3);
        assert!(c.get(&id(9)).is_some() && c.get(&id(1)).is_none());
        c.insert(id(99), Arc::new(vec![0; 1000]), 350);
        assert!(c.get(&id(99)).is_none(), "a pack larger than the budget is not kept");
    }
}
