//! The backup engine (the archiver).
//!
//! Algorithm:
//! 1. Take a shared lock, read prune's pending marks, list packs, load the index, and drop from it
//!    every pack that is marked or missing: blobs there are stored again rather than referenced
//!    (§"Concurrency and prune").
//! 2. Pick the parent snapshot (latest with the same host and paths, unless told otherwise).
//! 3. Walk the given paths depth-first. Entries of a directory are archived in parallel on the
//!    rayon pool; each directory's tree is encoded once its entries are done, so trees are built
//!    bottom-up while the walk goes on.
//! 4. A regular file whose size, mtime, ctime and inode equal its parent-snapshot node reuses the
//!    parent's content list unread. Any other file is read and chunked on one worker; each chunk
//!    is hashed there (keyed BLAKE3), and a chunk not yet in the repository is *claimed* (so two
//!    workers never store the same blob) and compressed on another rayon task, which hands it to
//!    the [`Packer`]. All-zero chunks become holes.
//! 5. When the walk ends, the packer flushes and writes the last index file; only then is the
//!    snapshot stored, with the manifest of every pack it references (§"Write ordering").
//!
//! Concurrency: any number of backups may run at once, here or on other machines. Each stores the
//! blobs it found missing; two backups may store the same blob twice (harmless; prune drops the
//! duplicate), never zero times.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use rayon::prelude::*;

use crate::chunker::{is_all_zero, Chunker, StreamChunker};
use crate::crypto::MasterKey;
use crate::error::{Error, ErrorKind, Result};
use crate::fsmeta::node_from_metadata;
use crate::id::{BlobId, PackId, SnapshotId};
use crate::lock::LockGuard;
use crate::pack::{compress, BlobType, PackKind};
use crate::packer::{NewBlob, PackSizes, Packer};
use crate::repository::{Repository, SnapshotFilter};
use crate::snapshot::{Snapshot, Summary};
use crate::tree::{ContentRef, Node, NodeKind, Timestamp, Tree};

/// Which snapshot to compare with.
#[derive(Debug, Clone, Default)]
pub enum ParentChoice {
    /// The latest snapshot with the same host and paths.
    #[default]
    Auto,
    /// None: read every file (`--force`).
    None,
    /// This one.
    Id(SnapshotId),
}

/// What to back up and how.
#[derive(Debug, Clone, Default)]
pub struct BackupOptions {
    /// Files and directories to back up.
    pub paths: Vec<PathBuf>,
    /// Tags for the snapshot.
    pub tags: Vec<String>,
    /// Host name to record (default: this machine's).
    pub hostname: Option<String>,
    /// Exclude patterns (globs; a pattern without `/` matches a base name anywhere).
    pub excludes: Vec<String>,
    /// Stay on the file system of each given path.
    pub one_file_system: bool,
    /// Parent selection.
    pub parent: ParentChoice,
    /// Time to record (default: now).
    pub time: Option<DateTime<Utc>>,
    /// Back up standard input as a file with this name instead of `paths`.
    pub stdin_filename: Option<String>,
    /// Skip extended attributes.
    pub no_xattrs: bool,
    /// Count files and bytes first in a side thread, for progress with an ETA.
    pub scan: bool,
}

/// Live counters, for a progress display in another thread.
#[derive(Debug, Default)]
pub struct BackupProgress {
    /// Files finished.
    pub files_done: AtomicU64,
    /// Bytes of files finished or skipped as unchanged.
    pub bytes_done: AtomicU64,
    /// Files found by the scan so far.
    pub files_total: AtomicU64,
    /// Bytes found by the scan so far.
    pub bytes_total: AtomicU64,
    /// Whether the scan has finished (totals are final).
    pub scan_done: AtomicBool,
    /// Unreadable entries so far.
    pub errors: AtomicU64,
}

/// What a backup made.
#[derive(Debug)]
pub struct BackupOutcome {
    /// The new snapshot's id.
    pub id: SnapshotId,
    /// The snapshot.
    pub snapshot: Snapshot,
    /// Entries that could not be read (the snapshot lacks them). Non-empty means exit code 3.
    pub warnings: Vec<String>,
    /// Problems of the repository itself that this backup worked around (unreadable index files
    /// or pending-deletion marks, see [`open_for_writing`]); the snapshot is complete.
    pub repository_warnings: Vec<String>,
}

/// Step 1 of every writer (backup, image backup), after its lock is stored: reads prune's pending
/// marks, lists the packs, loads the index, and drops from it every pack that is marked or
/// missing. Returns warnings about what could not be read and was skipped:
///
/// - an index file that cannot be read with the key: its blobs are simply stored again if needed
///   (safe: this only costs space; `check` reports the file, `repair index` removes it);
/// - a pending mark that cannot be read: see [`crate::pending::marked_packs`] for why skipping it
///   is safe, and when the writer deduplicates against nothing instead.
///
/// The order (marks, then packs, then index) is the protocol's (docs/format.md §"Concurrency
/// and prune", Backup steps 2-5).
pub fn open_for_writing(repo: &mut Repository) -> Result<Vec<String>> {
    let mut marks = crate::pending::marked_packs(repo.store())?;
    let mut warnings = std::mem::take(&mut marks.warnings);
    let existing = repo.list_packs()?;
    for problem in repo.load_index()? {
        warnings.push(if problem.kind() == ErrorKind::Corrupt {
            format!(
                "{problem}: ignored, and the blobs it lists are stored again if needed; `arca check` reports \
                 it and `arca repair index` removes it"
            )
        } else {
            format!("{problem}: skipped, and the blobs it lists are stored again if needed")
        });
    }
    let avoid: HashSet<PackId> = if marks.everything { existing.keys().copied().collect() } else { marks.packs };
    let dropped = repo.drop_packs_from_index(&existing, &avoid);
    if dropped > 0 {
        tracing::info!(
            "{dropped} indexed packs are missing or marked for deletion; their blobs will be stored again if needed"
        );
    }
    for w in &warnings {
        tracing::warn!("{w}");
    }
    Ok(warnings)
}

/// A set of blob ids split into shards so that workers rarely wait for each other.
struct ShardedSet {
    shards: Vec<Mutex<HashSet<BlobId>>>,
}

impl ShardedSet {
    fn new() -> Self {
        ShardedSet { shards: (0..32).map(|_| Mutex::new(HashSet::new())).collect() }
    }
    fn shard(&self, id: &BlobId) -> std::sync::MutexGuard<'_, HashSet<BlobId>> {
        self.shards[(id.0[0] & 31) as usize].lock().unwrap_or_else(|p| p.into_inner())
    }
    /// Inserts; true if it was not there.
    fn insert(&self, id: BlobId) -> bool {
        self.shard(&id).insert(id)
    }
    fn contains(&self, id: &BlobId) -> bool {
        self.shard(id).contains(id)
    }
    fn drain(self) -> HashSet<BlobId> {
        self.shards.into_iter().flat_map(|s| s.into_inner().unwrap_or_else(|p| p.into_inner())).collect()
    }
}

/// Work for the compressor threads.
enum CompressJob {
    /// A new data chunk to compress and pack (already claimed in `new_blobs`).
    Chunk(BlobId, Vec<u8>),
    /// Exit.
    Stop,
}

/// Threads to use: one reader and one compressor per core.
fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2)
}

struct Archiver<'r> {
    repo: &'r Repository,
    key: Arc<MasterKey>,
    chunker: Chunker,
    packer: Packer,
    level: i32,
    new_blobs: ShardedSet,
    referenced: ShardedSet,
    excludes: Excludes,
    one_file_system: bool,
    xattrs: bool,
    progress: &'r BackupProgress,
    warnings: Mutex<Vec<String>>,
    fatal: Mutex<Option<Error>>,
    compress_tx: crossbeam_channel::Sender<CompressJob>,
    counters: Counters,
}

#[derive(Default)]
struct Counters {
    files_new: AtomicU64,
    files_changed: AtomicU64,
    files_unmodified: AtomicU64,
    dirs: AtomicU64,
    others: AtomicU64,
    total_bytes: AtomicU64,
    bytes_read: AtomicU64,
    data_added: AtomicU64,
    blobs_added: AtomicU64,
}

/// Exclude patterns, compiled.
#[derive(Debug, Clone)]
pub struct Excludes {
    by_name: GlobSet,
    by_path: GlobSet,
}

impl Excludes {
    /// Compiles patterns: one with a `/` matches the absolute path (`*` stays within a component,
    /// `**` crosses them); one without matches the base name at any depth.
    pub fn new(patterns: &[String]) -> Result<Excludes> {
        let mut by_name = GlobSetBuilder::new();
        let mut by_path = GlobSetBuilder::new();
        for p in patterns.iter().map(|p| p.trim()).filter(|p| !p.is_empty()) {
            let p = p.trim_end_matches('/');
            let glob = GlobBuilder::new(p)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|e| Error::invalid(format!("exclude pattern {p:?} is not a valid glob: {e}")))?;
            if p.contains('/') {
                by_path.add(glob);
                // A directory pattern also excludes everything below it.
                if let Ok(g) = GlobBuilder::new(&format!("{p}/**")).literal_separator(true).build() {
                    by_path.add(g);
                }
            } else {
                by_name.add(glob);
            }
        }
        let build = |b: GlobSetBuilder| b.build().map_err(|e| Error::invalid(format!("exclude patterns: {e}")));
        Ok(Excludes { by_name: build(by_name)?, by_path: build(by_path)? })
    }

    /// Whether `path` (absolute) is excluded.
    pub fn matches(&self, path: &Path) -> bool {
        (!self.by_path.is_empty() && self.by_path.is_match(path))
            || (!self.by_name.is_empty() && path.file_name().map(|n| self.by_name.is_match(n)).unwrap_or(false))
    }
}

/// Reads exclude patterns from a file: one per line, `#` starts a comment line.
pub fn read_exclude_file(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::local_io(format!("reading exclude file {}", path.display()), e))?;
    Ok(text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(String::from).collect())
}

/// Makes a path absolute and removes `.` and `..` lexically (symlinks are not resolved: backing
/// up a link backs up the link).
pub fn absolute_path(path: &Path) -> Result<PathBuf> {
    let abs = std::path::absolute(path).map_err(|e| Error::local_io(format!("resolving {}", path.display()), e))?;
    let mut out = PathBuf::from("/");
    for c in abs.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    Ok(out)
}

/// Runs a backup. `stdin` is read when `opts.stdin_filename` is set.
pub fn backup(
    repo: &mut Repository,
    opts: &BackupOptions,
    progress: &BackupProgress,
    stdin: Option<&mut (dyn Read + Send)>,
) -> Result<BackupOutcome> {
    let started = Utc::now();
    let lock = LockGuard::acquire(repo.store().clone(), "backup")?;
    let repository_warnings = open_for_writing(repo)?;

    let hostname = opts.hostname.clone().unwrap_or_else(crate::sys::hostname);
    let paths: Vec<PathBuf> = if opts.stdin_filename.is_some() {
        Vec::new()
    } else {
        let mut p = opts.paths.iter().map(|p| absolute_path(p)).collect::<Result<Vec<_>>>()?;
        p.sort();
        p.dedup();
        if p.is_empty() {
            return Err(Error::invalid("nothing to back up: give at least one path (or --stdin)"));
        }
        for path in &p {
            if std::fs::symlink_metadata(path).is_err() {
                return Err(Error::new(
                    ErrorKind::LocalIo,
                    format!("{} does not exist or cannot be read", path.display()),
                ));
            }
        }
        p
    };
    let path_strings: Vec<String> = match &opts.stdin_filename {
        Some(name) => vec![format!("/{name}")],
        None => paths.iter().map(|p| p.to_string_lossy().into_owned()).collect(),
    };

    let parent = match &opts.parent {
        ParentChoice::None => None,
        ParentChoice::Id(id) => Some((*id, repo.load_snapshot(id)?.0)),
        ParentChoice::Auto => {
            let (all, _) = repo.snapshots()?;
            let mut sorted_paths = path_strings.clone();
            sorted_paths.sort();
            all.into_iter()
                .filter(|(_, s)| {
                    let mut sp = s.paths.clone();
                    sp.sort();
                    s.hostname == hostname && sp == sorted_paths
                })
                .max_by(|a, b| a.1.time.cmp(&b.1.time))
        }
    };
    let parent_root = match &parent {
        Some((id, s)) => match repo.load_tree(&s.tree) {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::warn!("parent snapshot {id} is unreadable ({e}); reading every file");
                None
            }
        },
        None => None,
    };

    let excludes = Excludes::new(&opts.excludes)?;
    let (compress_tx, compress_rx) = crossbeam_channel::bounded::<CompressJob>(cores() * 2);
    let scan_stop = Arc::new(AtomicBool::new(false));
    let config = repo.config().clone();
    let archiver = Archiver {
        repo,
        key: repo.key().clone(),
        chunker: Chunker::new(config.chunker, repo.key().gear_table()),
        packer: Packer::start(
            repo.store().clone(),
            repo.key().clone(),
            PackSizes { data: config.data_pack_size as usize, meta: config.meta_pack_size as usize },
        ),
        level: config.compression_level,
        new_blobs: ShardedSet::new(),
        referenced: ShardedSet::new(),
        excludes: excludes.clone(),
        one_file_system: opts.one_file_system,
        xattrs: !opts.no_xattrs,
        progress,
        warnings: Mutex::new(Vec::new()),
        fatal: Mutex::new(None),
        compress_tx,
        counters: Counters::default(),
    };

    // Directory walking runs on a pool of its own with large stacks: its recursion follows the
    // directory depth, and it must not share threads with anything that blocks.
    let walkers = rayon::ThreadPoolBuilder::new()
        .num_threads(cores())
        .stack_size(64 << 20)
        .thread_name(|i| format!("walk-{i}"))
        .build()
        .map_err(|e| Error::invalid(format!("cannot start worker threads: {e}")))?;
    let root_tree = std::thread::scope(|scope| -> Result<BlobId> {
        if opts.scan && opts.stdin_filename.is_none() {
            let (paths, excludes, stop, one_fs) = (&paths, &excludes, scan_stop.clone(), opts.one_file_system);
            scope.spawn(move || {
                scan(paths, excludes, one_fs, progress, &stop);
                progress.scan_done.store(true, Ordering::Relaxed);
            });
        }
        let compressors: Vec<_> = (0..cores())
            .map(|_| {
                let (rx, archiver) = (compress_rx.clone(), &archiver);
                scope.spawn(move || {
                    for job in rx {
                        match job {
                            CompressJob::Chunk(id, chunk) => {
                                if let Err(e) = archiver.compress_and_pack(BlobType::Data, id, chunk) {
                                    archiver.fail(e);
                                }
                            }
                            CompressJob::Stop => break,
                        }
                    }
                })
            })
            .collect();
        let root = match (&opts.stdin_filename, stdin) {
            (Some(name), Some(reader)) => archiver.archive_stdin(name, reader),
            (Some(_), None) => Err(Error::invalid("--stdin given but no standard input available")),
            _ => walkers.install(|| archiver.archive_roots(&paths, parent_root.as_ref())),
        };
        scan_stop.store(true, Ordering::Relaxed);
        for _ in &compressors {
            // The compressors drain every chunk queued before their Stop.
            let _ = archiver.compress_tx.send(CompressJob::Stop);
        }
        for c in compressors {
            let _ = c.join();
        }
        root
    });
    let root_tree = match root_tree {
        Ok(id) => id,
        Err(e) => {
            // Stop the pipeline; what was stored stays (indexed packs are reused next time).
            let _ = archiver.packer.finish();
            return Err(e);
        }
    };
    if let Some(e) = archiver.fatal.lock().unwrap_or_else(|p| p.into_inner()).take() {
        let _ = archiver.packer.finish();
        return Err(e);
    }

    let Archiver { packer, referenced, warnings, counters, .. } = archiver;
    let stored = packer.finish()?;
    let mut manifest_set: HashSet<(PackKind, PackId)> = HashSet::new();
    let mut new_location: HashMap<BlobId, (PackKind, PackId)> = HashMap::new();
    for p in &stored.packs {
        for b in &p.blobs {
            new_location.insert(b.id, (p.kind, p.id));
        }
    }
    for id in referenced.drain() {
        let place = repo
            .index()
            .get(&id)
            .map(|(info, _)| (info.kind, info.id))
            .or_else(|| new_location.get(&id).copied())
            .ok_or_else(|| Error::corrupt(format!("internal error: blob {id} was referenced but never stored")))?;
        manifest_set.insert(place);
    }
    let mut manifest: Vec<(PackKind, PackId)> = manifest_set.into_iter().collect();
    manifest.sort();

    let warnings = warnings.into_inner().unwrap_or_else(|p| p.into_inner());
    let c = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let snapshot = Snapshot {
        time: opts.time.unwrap_or(started),
        tree: root_tree,
        paths: path_strings,
        hostname,
        username: crate::sys::username(),
        tags: opts.tags.clone(),
        parent: parent.map(|(id, _)| id),
        summary: Summary {
            backup_start: Some(started),
            backup_end: Some(Utc::now()),
            files_new: c(&counters.files_new),
            files_changed: c(&counters.files_changed),
            files_unmodified: c(&counters.files_unmodified),
            dirs: c(&counters.dirs),
            others: c(&counters.others),
            total_bytes: c(&counters.total_bytes),
            bytes_read: c(&counters.bytes_read),
            data_added: c(&counters.data_added),
            data_added_packed: stored.stored_bytes,
            blobs_added: c(&counters.blobs_added),
            errors: warnings.len() as u64,
        },
        program_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    lock.ensure_continuous()?;
    let id = repo.save_snapshot(&snapshot, &manifest)?;
    Ok(BackupOutcome { id, snapshot, warnings, repository_warnings })
}

/// A trie of the paths to back up, so shared ancestors become one directory each.
#[derive(Default)]
struct PathTrie {
    children: BTreeMap<Vec<u8>, PathTrie>,
    /// This node is itself a backup root (everything below it is archived from disk).
    is_root: bool,
}

impl<'r> Archiver<'r> {
    fn warn(&self, msg: String) {
        tracing::warn!("{msg}");
        self.progress.errors.fetch_add(1, Ordering::Relaxed);
        self.warnings.lock().unwrap_or_else(|p| p.into_inner()).push(msg);
    }

    fn fail(&self, e: Error) {
        let mut slot = self.fatal.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(e);
        }
    }

    fn has_failed(&self) -> bool {
        self.fatal.lock().unwrap_or_else(|p| p.into_inner()).is_some()
    }

    /// Stores a blob unless the repository (or this run) already has it.
    fn store_blob(&self, blob_type: BlobType, id: BlobId, plain: &[u8]) -> Result<()> {
        if self.repo.index().contains(&id) || !self.new_blobs.insert(id) {
            return Ok(());
        }
        self.compress_and_pack(blob_type, id, plain.to_vec())
    }

    /// Compresses (when it pays) and hands a claimed blob to the packer.
    fn compress_and_pack(&self, blob_type: BlobType, id: BlobId, plain: Vec<u8>) -> Result<()> {
        let raw_length = plain.len() as u32;
        let (payload, compressed) = match compress(&plain, self.level) {
            Some(c) => (c, true),
            None => (plain, false),
        };
        self.counters.data_added.fetch_add(raw_length as u64, Ordering::Relaxed);
        self.counters.blobs_added.fetch_add(1, Ordering::Relaxed);
        self.packer.add(NewBlob { blob_type, id, payload, raw_length, compressed })
    }

    fn blob_known(&self, id: &BlobId) -> bool {
        self.repo.index().contains(id) || self.new_blobs.contains(id)
    }

    fn save_tree(&self, mut tree: Tree) -> Result<BlobId> {
        let bytes = tree.encode();
        if bytes.len() > crate::pack::MAX_BLOB_SIZE as usize {
            return Err(Error::invalid(format!(
                "a directory listing of {} entries is larger than the 1 GiB tree limit",
                tree.nodes.len()
            )));
        }
        let id = self.key.blob_id(&bytes);
        self.referenced.insert(id);
        self.store_blob(BlobType::Tree, id, &bytes)?;
        Ok(id)
    }

    fn archive_roots(&self, paths: &[PathBuf], parent_root: Option<&Tree>) -> Result<BlobId> {
        let mut trie = PathTrie::default();
        for p in paths {
            let mut node = &mut trie;
            for c in p.components() {
                if let Component::Normal(n) = c {
                    if node.is_root {
                        break; // an ancestor is already backed up whole
                    }
                    node = node.children.entry(n.as_bytes().to_vec()).or_default();
                }
            }
            node.is_root = true;
            node.children.clear();
        }
        let nodes = self.archive_trie(Path::new("/"), &trie, parent_root)?;
        self.save_tree(Tree { nodes })
    }

    fn archive_trie(&self, dir: &Path, trie: &PathTrie, parent: Option<&Tree>) -> Result<Vec<Node>> {
        let mut nodes = Vec::new();
        for (name, child) in &trie.children {
            let path = dir.join(OsStr::from_bytes(name));
            let parent_node = parent.and_then(|t| t.find(name));
            if child.is_root {
                let dev = std::fs::symlink_metadata(&path).map(|m| m.dev()).ok();
                if let Some(n) = self.archive_entry(&path, name.clone(), parent_node, dev) {
                    nodes.push(n);
                }
            } else {
                let meta = std::fs::symlink_metadata(&path)
                    .map_err(|e| Error::local_io(format!("reading {}", path.display()), e))?;
                let mut node = node_from_metadata(name.clone(), &path, &meta, self.xattrs)?;
                let parent_sub = self.parent_subtree(parent_node);
                let children = self.archive_trie(&path, child, parent_sub.as_ref())?;
                node.subtree = Some(self.save_tree(Tree { nodes: children })?);
                self.counters.dirs.fetch_add(1, Ordering::Relaxed);
                nodes.push(node);
            }
        }
        Ok(nodes)
    }

    fn parent_subtree(&self, parent: Option<&Node>) -> Option<Tree> {
        let id = parent?.subtree?;
        match self.repo.load_tree(&id) {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::warn!("parent tree {id} unreadable ({e}); its files will be read again");
                None
            }
        }
    }

    /// Archives one entry; `None` if it could not be read (a warning is recorded).
    fn archive_entry(&self, path: &Path, name: Vec<u8>, parent: Option<&Node>, root_dev: Option<u64>) -> Option<Node> {
        if self.has_failed() {
            return None;
        }
        let meta = match std::fs::symlink_metadata(path) {
            Ok(m) => m,
            Err(e) => {
                self.warn(format!("{}: {e}", path.display()));
                return None;
            }
        };
        let mut node = match node_from_metadata(name, path, &meta, self.xattrs) {
            Ok(n) => n,
            Err(e) => {
                self.warn(format!("{}: {e}", path.display()));
                return None;
            }
        };
        let result = match node.kind {
            NodeKind::File => self.archive_file(path, &mut node, parent),
            NodeKind::Dir => {
                self.counters.dirs.fetch_add(1, Ordering::Relaxed);
                let cross = self.one_file_system && root_dev.is_some_and(|d| d != meta.dev());
                if cross {
                    self.save_tree(Tree::default()).map(|id| node.subtree = Some(id))
                } else {
                    self.archive_dir(path, &mut node, parent, root_dev)
                }
            }
            _ => {
                self.counters.others.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
        };
        match result {
            Ok(()) => Some(node),
            Err(e) if e.kind() == ErrorKind::LocalIo => {
                self.warn(e.to_string());
                None
            }
            Err(e) => {
                self.fail(e);
                None
            }
        }
    }

    fn archive_dir(&self, path: &Path, node: &mut Node, parent: Option<&Node>, root_dev: Option<u64>) -> Result<()> {
        let parent_tree = self.parent_subtree(parent.filter(|p| p.is_dir()));
        let mut entries: Vec<(Vec<u8>, PathBuf)> = Vec::new();
        let read = std::fs::read_dir(path).map_err(|e| Error::local_io(format!("listing {}", path.display()), e));
        match read {
            Ok(rd) => {
                for entry in rd {
                    match entry {
                        Ok(e) => {
                            let p = e.path();
                            if !self.excludes.matches(&p) {
                                entries.push((e.file_name().as_bytes().to_vec(), p));
                            }
                        }
                        Err(e) => self.warn(format!("listing {}: {e}", path.display())),
                    }
                }
            }
            Err(e) => self.warn(e.to_string()),
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let nodes: Vec<Node> = entries
            .into_par_iter()
            .with_max_len(1)
            .filter_map(|(name, p)| {
                let pn = parent_tree.as_ref().and_then(|t| t.find(&name));
                self.archive_entry(&p, name, pn, root_dev)
            })
            .collect();
        node.subtree = Some(self.save_tree(Tree { nodes })?);
        Ok(())
    }

    fn archive_file(&self, path: &Path, node: &mut Node, parent: Option<&Node>) -> Result<()> {
        self.counters.total_bytes.fetch_add(node.size, Ordering::Relaxed);
        if let Some(p) = parent.filter(|p| p.is_file()) {
            let unchanged = p.size == node.size
                && p.mtime == node.mtime
                && p.ctime == node.ctime
                && p.inode == node.inode
                && p.content.iter().all(|c| match c {
                    ContentRef::Blob { id, .. } => self.blob_known(id),
                    ContentRef::Zeros { .. } => true,
                });
            if unchanged {
                node.content = p.content.clone();
                for c in &node.content {
                    if let ContentRef::Blob { id, .. } = c {
                        self.referenced.insert(*id);
                    }
                }
                self.counters.files_unmodified.fetch_add(1, Ordering::Relaxed);
                self.progress.files_done.fetch_add(1, Ordering::Relaxed);
                self.progress.bytes_done.fetch_add(node.size, Ordering::Relaxed);
                return Ok(());
            }
            self.counters.files_changed.fetch_add(1, Ordering::Relaxed);
        } else {
            self.counters.files_new.fetch_add(1, Ordering::Relaxed);
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOATIME)
            .open(path)
            .or_else(|_| std::fs::File::open(path))
            .map_err(|e| Error::local_io(format!("opening {}", path.display()), e))?;
        let (content, size) = self.chunk_stream(file, node.size).map_err(|e| {
            if e.kind() == ErrorKind::LocalIo {
                Error::local_io(format!("reading {}", path.display()), std::io::Error::other(e.to_string()))
            } else {
                e
            }
        })?;
        node.content = content;
        node.size = size;
        self.progress.files_done.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Chunks a stream; returns its content list and length. New chunks are compressed and packed
    /// on other rayon tasks while reading goes on.
    /// Chunks a stream; returns its content list and length. New chunks go to the compressor
    /// threads while reading goes on.
    fn chunk_stream(&self, mut reader: impl Read, len_hint: u64) -> Result<(Vec<ContentRef>, u64)> {
        let mut content: Vec<ContentRef> = Vec::new();
        let mut size = 0u64;
        let max = self.chunker.max_size();
        if len_hint < max as u64 {
            // Most files are small: read them whole into an exactly sized buffer (no zeroing, no
            // copy), and hand a single-chunk file on as it is.
            let mut buf = Vec::with_capacity(len_hint as usize + 1);
            (&mut reader).take(max as u64 + 1).read_to_end(&mut buf).map_err(|e| Error::local_io("reading", e))?;
            if buf.len() <= max {
                let lens = self.chunker.split(&buf);
                if lens.len() <= 1 {
                    if !buf.is_empty() {
                        self.take_chunk(buf, &mut content, &mut size)?;
                    }
                } else {
                    let mut at = 0;
                    for len in lens {
                        self.take_chunk(buf[at..at + len].to_vec(), &mut content, &mut size)?;
                        at += len;
                    }
                }
                return self.finish_chunking(content, size);
            }
            // It grew since it was listed: stream the rest after what was read.
            return self.chunk_reader(std::io::Cursor::new(buf).chain(reader), u64::MAX, content, size);
        }
        self.chunk_reader(reader, len_hint, content, size)
    }

    fn chunk_reader(
        &self,
        reader: impl Read,
        len_hint: u64,
        mut content: Vec<ContentRef>,
        mut size: u64,
    ) -> Result<(Vec<ContentRef>, u64)> {
        let mut stream = StreamChunker::with_len_hint(&self.chunker, reader, len_hint);
        loop {
            match stream.next_chunk() {
                Ok(Some(chunk)) => self.take_chunk(chunk, &mut content, &mut size)?,
                Ok(None) => break,
                Err(e) => return Err(Error::local_io("reading", e)),
            }
        }
        self.finish_chunking(content, size)
    }

    fn finish_chunking(&self, content: Vec<ContentRef>, size: u64) -> Result<(Vec<ContentRef>, u64)> {
        if let Some(e) = self.fatal.lock().unwrap_or_else(|p| p.into_inner()).take() {
            return Err(e);
        }
        Ok((content, size))
    }

    /// Records one chunk in `content` and, if the repository lacks it, queues it for storing.
    fn take_chunk(&self, chunk: Vec<u8>, content: &mut Vec<ContentRef>, size: &mut u64) -> Result<()> {
        let len = chunk.len() as u64;
        *size += len;
        self.counters.bytes_read.fetch_add(len, Ordering::Relaxed);
        self.progress.bytes_done.fetch_add(len, Ordering::Relaxed);
        if is_all_zero(&chunk) {
            match content.last_mut() {
                Some(ContentRef::Zeros { length }) => *length += len,
                _ => content.push(ContentRef::Zeros { length: len }),
            }
            return Ok(());
        }
        let id = self.key.blob_id(&chunk);
        content.push(ContentRef::Blob { id, length: chunk.len() as u32 });
        self.referenced.insert(id);
        if self.repo.index().contains(&id) || !self.new_blobs.insert(id) {
            return Ok(());
        }
        // Compression runs on the compressor threads; the bounded channel makes reading wait when
        // they fall behind, which bounds memory.
        if self.compress_tx.send(CompressJob::Chunk(id, chunk)).is_err() || self.has_failed() {
            return Err(self
                .fatal
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
                .unwrap_or_else(|| Error::new(ErrorKind::Storage, "the compressor threads stopped")));
        }
        Ok(())
    }

    fn archive_stdin(&self, name: &str, reader: &mut (dyn Read + Send)) -> Result<BlobId> {
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(Error::invalid(format!("--stdin-filename {name:?} must be a plain file name")));
        }
        let (content, size) = self.chunk_stream(reader, u64::MAX)?;
        let now = Utc::now();
        let ts = Timestamp { secs: now.timestamp(), nanos: now.timestamp_subsec_nanos() };
        // SAFETY: getuid/getgid cannot fail.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        let node = Node {
            name: name.as_bytes().to_vec(),
            kind: NodeKind::File,
            mode: 0o100644,
            uid,
            gid,
            user: crate::sys::user_name(uid),
            group: crate::sys::group_name(gid),
            mtime: ts,
            atime: ts,
            ctime: ts,
            inode: 0,
            device: 0,
            links: 1,
            size,
            xattrs: Vec::new(),
            content,
            subtree: None,
        };
        self.counters.files_new.fetch_add(1, Ordering::Relaxed);
        self.counters.total_bytes.fetch_add(size, Ordering::Relaxed);
        self.progress.files_done.fetch_add(1, Ordering::Relaxed);
        self.save_tree(Tree { nodes: vec![node] })
    }
}

/// Counts files and bytes under `paths` for the progress display; stops early when asked.
fn scan(paths: &[PathBuf], excludes: &Excludes, one_fs: bool, progress: &BackupProgress, stop: &AtomicBool) {
    let mut stack: Vec<(PathBuf, Option<u64>)> = paths.iter().map(|p| (p.clone(), None)).collect();
    while let Some((p, dev)) = stack.pop() {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let Ok(meta) = std::fs::symlink_metadata(&p) else { continue };
        let dev = dev.or(Some(meta.dev()));
        if meta.is_file() {
            progress.files_total.fetch_add(1, Ordering::Relaxed);
            progress.bytes_total.fetch_add(meta.len(), Ordering::Relaxed);
        } else if meta.is_dir() && !(one_fs && dev != Some(meta.dev())) {
            if let Ok(rd) = std::fs::read_dir(&p) {
                for e in rd.flatten() {
                    let path = e.path();
                    if !excludes.matches(&path) {
                        stack.push((path, dev));
                    }
                }
            }
        }
    }
}

/// Finds the snapshot to use as parent for a set of paths (exposed for `backup --dry-run`-like
/// displays).
pub fn find_parent(repo: &Repository, hostname: &str, paths: &[String]) -> Result<Option<SnapshotId>> {
    let filter = SnapshotFilter { hosts: vec![hostname.to_string()], tags: vec![], paths: paths.to_vec() };
    match repo.find_snapshot("latest", &filter) {
        Ok((id, _)) => Ok(Some(id)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}
