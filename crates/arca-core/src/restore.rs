//! The restore engine.
//!
//! Algorithm (restic's insight: read each pack once, write files out of order):
//! 1. Walk the snapshot's tree from the chosen path, applying include/exclude patterns. Create
//!    directories, symlinks, fifos and devices as they are met; list regular files with their
//!    target offsets; group hard links by (device, inode).
//! 2. Decide per file what to write: nothing if it exists with the snapshot's size and mtime
//!    (a finished file of an interrupted restore: this is how restore resumes); otherwise every
//!    blob whose bytes are not already there. All-zero ranges are holes: the file is sized with
//!    `set_len` and they are never written, so sparse files stay sparse.
//! 3. Group the needed blobs by pack and process packs in parallel: read each pack's needed span
//!    once (coalescing nearby blobs), decrypt and verify every blob, and `pwrite` it to every
//!    place that needs it. A file is opened on its first write and, after its last, closed and
//!    given its metadata, mtime last.
//! 4. Make hard links, then set directory metadata deepest first, then optionally verify every
//!    written file against the blob ids.
//!
//! A damaged pack fails only the files that need it; everything else is restored, and the
//! outcome names the damaged files.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;

use rayon::prelude::*;

use crate::backup::Excludes;
use crate::error::{Error, ErrorKind, Result};
use crate::fsmeta::{apply_metadata, apply_metadata_fd, create_special, ApplyOptions};
use crate::id::BlobId;
use crate::index::BlobLocation;
use crate::pack::open_blob_with;
use crate::repository::Repository;
use crate::snapshot::Snapshot;
use crate::throttle::Throttle;
use crate::tree::{ContentRef, Node, NodeKind, Tree};

/// What to do with files that already exist in the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overwrite {
    /// Rewrite them completely.
    Always,
    /// Skip files whose size and mtime match; otherwise write only the blobs that differ.
    #[default]
    IfChanged,
    /// Only replace files older than the snapshot's version.
    IfNewer,
    /// Never touch an existing file.
    Never,
}

/// How to restore.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Where to.
    pub target: PathBuf,
    /// Path inside the snapshot whose contents to restore (default: the whole snapshot).
    pub subpath: Option<String>,
    /// Restore only entries matching one of these (or below a match).
    pub includes: Vec<String>,
    /// Skip entries matching these.
    pub excludes: Vec<String>,
    /// Re-read every written file and check it against the snapshot afterwards.
    pub verify: bool,
    /// Existing files.
    pub overwrite: Overwrite,
    /// Metadata to restore.
    pub apply: Option<ApplyOptions>,
    /// Plan only: count what would be written.
    pub dry_run: bool,
    /// Delete what the target holds beyond the snapshot, in every directory restored whole, so
    /// the target matches it (entries matching `excludes` are kept).
    pub delete: bool,
    /// Most bytes per second to read from the repository (`None`: no limit).
    pub limit_rate: Option<u64>,
}

/// Live counters.
#[derive(Debug, Default)]
pub struct RestoreProgress {
    /// Files to restore (known after planning).
    pub files_total: AtomicU64,
    /// Bytes to write.
    pub bytes_total: AtomicU64,
    /// Files finished.
    pub files_done: AtomicU64,
    /// Bytes written.
    pub bytes_done: AtomicU64,
}

/// What a restore did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct RestoreOutcome {
    /// Regular files restored (written or already correct).
    pub files: u64,
    /// Directories.
    pub dirs: u64,
    /// Other entries.
    pub others: u64,
    /// Bytes written.
    pub bytes_written: u64,
    /// Files skipped because they were already complete.
    pub files_skipped: u64,
    /// Files verified after restoring (with `verify`).
    pub files_verified: u64,
    /// Entries deleted from the target (with `delete`; with `dry_run`, that would be).
    pub deleted: u64,
    /// Problems; non-empty means the restore is incomplete.
    pub errors: Vec<String>,
}

struct FileJob {
    path: PathBuf,
    node: Node,
    /// Blob writes still to do.
    remaining: AtomicU32,
    handle: Mutex<Option<File>>,
    failed: std::sync::atomic::AtomicBool,
    /// The file existed before and is updated in place.
    existed: bool,
}

/// The blobs to read from one pack, each with every place it goes.
type PackPlan = HashMap<BlobId, (BlobLocation, Vec<Use>)>;

struct Use {
    file: u32,
    offset: u64,
}

struct Planner<'a> {
    repo: &'a Repository,
    opts: &'a RestoreOptions,
    includes: Option<Excludes>,
    excludes: Excludes,
    files: Vec<FileJob>,
    dirs: Vec<(PathBuf, Node)>,
    hardlinks: HashMap<(u64, u64), PathBuf>,
    links_to_make: Vec<(PathBuf, PathBuf)>,
    /// With `delete`: target directories to prune, with their snapshot path and entry names.
    delete_dirs: Vec<(PathBuf, PathBuf, HashSet<Vec<u8>>)>,
    outcome: RestoreOutcome,
    apply: ApplyOptions,
}

/// Restores `snapshot` as the options say.
pub fn restore(
    repo: &Repository,
    snapshot: &Snapshot,
    opts: &RestoreOptions,
    progress: &RestoreProgress,
) -> Result<RestoreOutcome> {
    raise_fd_limit();
    let t0 = std::time::Instant::now();
    let (start_nodes, base, start_is_dir) = resolve_start(repo, snapshot, opts.subpath.as_deref())?;
    if !opts.dry_run {
        std::fs::create_dir_all(&opts.target)
            .map_err(|e| Error::local_io(format!("creating restore target {}", opts.target.display()), e))?;
    }
    let mut planner = Planner {
        repo,
        opts,
        includes: if opts.includes.is_empty() { None } else { Some(Excludes::new(&opts.includes)?) },
        excludes: Excludes::new(&opts.excludes)?,
        files: Vec::new(),
        dirs: Vec::new(),
        hardlinks: HashMap::new(),
        links_to_make: Vec::new(),
        delete_dirs: Vec::new(),
        outcome: RestoreOutcome::default(),
        apply: opts.apply.unwrap_or_default(),
    };
    // A single file restored into a directory does not make the rest of it extra.
    if opts.delete && start_is_dir && planner.includes.is_none() {
        let names = start_nodes.iter().map(|n| n.name.clone()).collect();
        planner.delete_dirs.push((opts.target.clone(), base.clone(), names));
    }
    planner.walk(&start_nodes, &base, &opts.target, false, false)?;
    let Planner { files, dirs, links_to_make, delete_dirs, excludes, mut outcome, apply, .. } = planner;
    tracing::debug!("restore: walked the tree in {:?}", t0.elapsed());

    // Step 2: decide what to write.
    let mut by_pack: HashMap<u32, HashMap<BlobId, (BlobLocation, Vec<Use>)>> = HashMap::new();
    let mut bytes_total = 0u64;
    let mut missing: Vec<String> = Vec::new();
    for (i, job) in files.iter().enumerate() {
        let mut offset = 0u64;
        let mut writes = 0u32;
        for c in &job.node.content {
            if let ContentRef::Blob { id, length } = c {
                let same = job.existed && existing_matches(&job.path, offset, *length, id, repo);
                if !same {
                    match repo.index().get(id) {
                        Some((_, loc)) => {
                            by_pack
                                .entry(loc.pack)
                                .or_default()
                                .entry(*id)
                                .or_insert_with(|| (loc, Vec::new()))
                                .1
                                .push(Use { file: i as u32, offset });
                            writes += 1;
                            bytes_total += *length as u64;
                        }
                        None => {
                            job.failed.store(true, Ordering::Relaxed);
                            missing.push(format!("{}: blob {id} is missing from the repository", job.path.display()));
                        }
                    }
                }
            }
            offset += c.len();
        }
        job.remaining.store(writes, Ordering::Relaxed);
    }
    outcome.errors.extend(missing);
    progress.files_total.store(files.len() as u64, Ordering::Relaxed);
    progress.bytes_total.store(bytes_total, Ordering::Relaxed);
    outcome.files = files.len() as u64;
    if opts.dry_run {
        outcome.bytes_written = bytes_total;
        outcome.deleted = delete_extra(&delete_dirs, &excludes, true, &mut outcome.errors);
        return Ok(outcome);
    }

    let errors = Mutex::new(Vec::new());
    let record = |e: String| errors.lock().unwrap_or_else(|p| p.into_inner()).push(e);
    // Files needing no blob writes: create (sized, so holes exist) and finish now.
    files.par_iter().filter(|j| j.remaining.load(Ordering::Relaxed) == 0).for_each(|job| {
        if job.failed.load(Ordering::Relaxed) {
            return;
        }
        if let Err(e) = open_target(job).map(drop).and_then(|()| finish_file(job, apply, progress)) {
            record(e.to_string());
        }
    });

    tracing::debug!("restore: planned and created empty files in {:?}", t0.elapsed());
    // Step 3: packs in parallel.
    let bytes_written = AtomicU64::new(0);
    let throttle = Throttle::new(opts.limit_rate);
    let mut packs: Vec<(u32, PackPlan)> = by_pack.into_iter().collect();
    packs.sort_by_key(|(p, _)| repo.index().pack(*p).id);
    packs.into_par_iter().with_max_len(1).for_each(|(pack_pos, blobs)| {
        if let Err(e) = restore_pack(repo, pack_pos, blobs, &files, apply, progress, &bytes_written, &throttle) {
            record(e.to_string());
        }
    });
    for job in files.iter().filter(|j| j.failed.load(Ordering::Relaxed)) {
        record(format!("{} was not restored completely", job.path.display()));
    }

    tracing::debug!("restore: packs done in {:?}", t0.elapsed());
    // Step 4: hard links, directory metadata, verification.
    for (src, path) in &links_to_make {
        let same = match (std::fs::symlink_metadata(src), std::fs::symlink_metadata(path)) {
            (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
            _ => false,
        };
        if same {
            outcome.files_skipped += 1;
            continue;
        }
        let _ = std::fs::remove_file(path);
        match std::fs::hard_link(src, path) {
            Ok(()) => outcome.files += 1,
            Err(e) => record(format!("linking {} to {}: {e}", path.display(), src.display())),
        }
    }
    // Before directory metadata: deleting changes a directory's modification time.
    let mut delete_errors = Vec::new();
    outcome.deleted = delete_extra(&delete_dirs, &excludes, false, &mut delete_errors);
    for e in delete_errors {
        record(e);
    }
    for (path, node) in dirs.iter().rev() {
        if let Err(e) = apply_metadata(path, node, apply) {
            record(e.to_string());
        }
    }
    if opts.verify {
        let verified = AtomicU64::new(0);
        files.par_iter().filter(|j| !j.failed.load(Ordering::Relaxed)).for_each(|job| match verify_file(repo, job) {
            Ok(()) => {
                verified.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => record(e.to_string()),
        });
        outcome.files_verified = verified.into_inner();
    }
    tracing::debug!("restore: finished in {:?}", t0.elapsed());
    outcome.bytes_written = bytes_written.into_inner();
    outcome.errors.extend(errors.into_inner().unwrap_or_else(|p| p.into_inner()));
    Ok(outcome)
}

/// Finds the nodes to restore: the root tree's entries, or the entries of `subpath` (a directory),
/// or `subpath` itself (a file). Returns the nodes and their path inside the snapshot.
/// The flag says whether the start is a directory (the root, or `subpath` naming one).
fn resolve_start(repo: &Repository, snapshot: &Snapshot, subpath: Option<&str>) -> Result<(Vec<Node>, PathBuf, bool)> {
    let root = repo.load_tree(&snapshot.tree)?;
    let Some(sub) = subpath.map(|s| s.trim_end_matches('/')).filter(|s| !s.is_empty()) else {
        return Ok((root.nodes, PathBuf::from("/"), true));
    };
    let mut tree = root;
    let mut here = PathBuf::from("/");
    let comps: Vec<&str> = sub.split('/').filter(|c| !c.is_empty() && *c != ".").collect();
    for (i, c) in comps.iter().enumerate() {
        let node = tree.find(c.as_bytes()).cloned().ok_or_else(|| {
            Error::not_found(format!("{sub} is not in the snapshot (no {c:?} in {})", here.display()))
        })?;
        here.push(c);
        if i + 1 == comps.len() {
            return match node.subtree {
                Some(id) if node.is_dir() => Ok((repo.load_tree(&id)?.nodes, here, true)),
                _ => Ok((vec![node], here.parent().map(Path::to_path_buf).unwrap_or_default(), false)),
            };
        }
        let id = node
            .subtree
            .filter(|_| node.is_dir())
            .ok_or_else(|| Error::not_found(format!("{} is not a directory in the snapshot", here.display())))?;
        tree = repo.load_tree(&id)?;
    }
    Ok((tree.nodes, here, true))
}

impl Planner<'_> {
    /// Walks `nodes` (at `src` in the snapshot, restored into `dst`). `included` says an
    /// ancestor matched an include pattern. Returns whether anything was restored below.
    /// `fresh` says `dst` was created by this restore, so nothing in it can exist yet and the
    /// per-entry existence checks (one system call per file) are skipped.
    fn walk(&mut self, nodes: &[Node], src: &Path, dst: &Path, included: bool, fresh: bool) -> Result<bool> {
        let mut any = false;
        for node in nodes {
            let spath = src.join(OsStr::from_bytes(&node.name));
            let dpath = dst.join(OsStr::from_bytes(&node.name));
            if self.excludes.matches(&spath) {
                continue;
            }
            let inc = included || self.includes.as_ref().is_none_or(|i| i.matches(&spath));
            match &node.kind {
                NodeKind::Dir => {
                    let sub = match node.subtree {
                        Some(id) => {
                            self.repo.load_tree(&id).map_err(|e| e.context(format!("restoring {}", spath.display())))
                        }
                        None => Ok(Tree::default()),
                    };
                    let sub = match sub {
                        Ok(t) => t,
                        Err(e) if e.kind() == ErrorKind::Corrupt || e.kind() == ErrorKind::Missing => {
                            self.outcome.errors.push(e.to_string());
                            continue;
                        }
                        Err(e) => return Err(e),
                    };
                    let created = if self.opts.dry_run { false } else { ensure_dir(&dpath, fresh)? };
                    if self.opts.delete && !created && (self.includes.is_none() || inc) {
                        let names = sub.nodes.iter().map(|n| n.name.clone()).collect();
                        self.delete_dirs.push((dpath.clone(), spath.clone(), names));
                    }
                    let below = self.walk(&sub.nodes, &spath, &dpath, inc, created)?;
                    if inc || below {
                        self.dirs.push((dpath, node.clone()));
                        self.outcome.dirs += 1;
                        any = true;
                    } else if !self.opts.dry_run {
                        let _ = std::fs::remove_dir(&dpath); // created for nothing
                    }
                }
                _ if !inc => {}
                NodeKind::File => {
                    any = true;
                    if node.links > 1 {
                        let key = (node.device, node.inode);
                        if let Some(master) = self.hardlinks.get(&key) {
                            self.links_to_make.push((master.clone(), dpath));
                            continue;
                        }
                        self.hardlinks.insert(key, dpath.clone());
                    }
                    self.plan_file(dpath, node, fresh)?;
                }
                _ => {
                    any = true;
                    self.outcome.others += 1;
                    if self.opts.dry_run {
                        continue;
                    }
                    if !fresh && std::fs::symlink_metadata(&dpath).is_ok() {
                        if self.opts.overwrite == Overwrite::Never {
                            continue;
                        }
                        let _ = std::fs::remove_file(&dpath);
                    }
                    let r = create_special(&dpath, node).and_then(|_| apply_metadata(&dpath, node, self.apply));
                    if let Err(e) = r {
                        self.outcome.errors.push(e.to_string());
                    }
                }
            }
        }
        Ok(any)
    }

    fn plan_file(&mut self, path: PathBuf, node: &Node, fresh: bool) -> Result<()> {
        let existing = if fresh { None } else { std::fs::symlink_metadata(&path).ok() };
        let mut node = node.clone();
        let mut existed = false;
        if let Some(meta) = existing {
            if !meta.is_file() {
                if self.opts.overwrite == Overwrite::Never {
                    return Ok(());
                }
                if !self.opts.dry_run {
                    if meta.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) }
                        .map_err(|e| Error::local_io(format!("replacing {}", path.display()), e))?;
                }
            } else {
                let same_meta = meta.len() == node.size
                    && meta.mtime() == node.mtime.secs
                    && meta.mtime_nsec() == node.mtime.nanos as i64;
                let skip = match self.opts.overwrite {
                    Overwrite::Never => true,
                    Overwrite::IfChanged => same_meta,
                    Overwrite::IfNewer => {
                        (meta.mtime(), meta.mtime_nsec()) >= (node.mtime.secs, node.mtime.nanos as i64)
                    }
                    Overwrite::Always => false,
                };
                if skip {
                    self.outcome.files_skipped += 1;
                    return Ok(());
                }
                existed = self.opts.overwrite != Overwrite::Always;
                if !existed && !self.opts.dry_run {
                    std::fs::remove_file(&path)
                        .map_err(|e| Error::local_io(format!("replacing {}", path.display()), e))?;
                }
            }
        }
        node.name.clear();
        self.files.push(FileJob {
            path,
            node,
            remaining: AtomicU32::new(0),
            handle: Mutex::new(None),
            failed: Default::default(),
            existed,
        });
        Ok(())
    }
}

/// Makes sure `path` is a directory; returns whether it was created now. In a `fresh` parent
/// nothing exists, so no lookup is needed first.
fn ensure_dir(path: &Path, fresh: bool) -> Result<bool> {
    let create = || std::fs::create_dir(path).map_err(|e| Error::local_io(format!("creating {}", path.display()), e));
    if fresh {
        return create().map(|()| true);
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Ok(false),
        Ok(_) => {
            std::fs::remove_file(path).map_err(|e| Error::local_io(format!("replacing {}", path.display()), e))?;
            create().map(|()| true)
        }
        Err(_) => create().map(|()| true),
    }
}

/// Deletes (or with `dry_run` counts) the entries of each directory that are not among its
/// snapshot names, keeping entries whose snapshot path matches `excludes`. Returns the count;
/// failures go to `errors`.
fn delete_extra(
    dirs: &[(PathBuf, PathBuf, HashSet<Vec<u8>>)],
    excludes: &Excludes,
    dry_run: bool,
    errors: &mut Vec<String>,
) -> u64 {
    let mut deleted = 0;
    for (dst, src, names) in dirs {
        let Ok(entries) = std::fs::read_dir(dst) else { continue };
        for entry in entries.flatten() {
            let name = entry.file_name();
            if names.contains(name.as_bytes()) || excludes.matches(&src.join(&name)) {
                continue;
            }
            let path = entry.path();
            if !dry_run {
                let is_dir = std::fs::symlink_metadata(&path).map(|m| m.is_dir()).unwrap_or(false);
                let r = if is_dir { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
                if let Err(e) = r {
                    errors.push(format!("deleting {}: {e}", path.display()));
                    continue;
                }
            }
            deleted += 1;
        }
    }
    deleted
}

/// Whether the existing file already holds blob `id` at `offset` (resume and in-place updates).
fn existing_matches(path: &Path, offset: u64, length: u32, id: &BlobId, repo: &Repository) -> bool {
    let Ok(f) = File::open(path) else { return false };
    let mut buf = vec![0u8; length as usize];
    f.read_exact_at(&mut buf, offset).is_ok() && repo.key().blob_id(&buf) == *id
}

/// Opens (creating and sizing) a job's file if not yet open.
fn open_target(job: &FileJob) -> Result<std::sync::MutexGuard<'_, Option<File>>> {
    let mut guard = job.handle.lock().unwrap_or_else(|p| p.into_inner());
    if guard.is_none() {
        let f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .custom_flags(libc::O_NOFOLLOW)
            .mode(0o600)
            .open(&job.path)
            .map_err(|e| Error::local_io(format!("creating {}", job.path.display()), e))?;
        // A fresh file grows with its writes; only holes (and shrinking an old file) need sizing.
        let has_holes = job.node.content.iter().any(|c| matches!(c, ContentRef::Zeros { .. }));
        if job.existed || has_holes || job.node.content.is_empty() {
            f.set_len(job.node.size).map_err(|e| Error::local_io(format!("sizing {}", job.path.display()), e))?;
        }
        if job.existed {
            punch_zero_ranges(&f, &job.node);
        }
        *guard = Some(f);
    }
    Ok(guard)
}

/// Makes the zero ranges of an updated-in-place file zero again.
fn punch_zero_ranges(f: &File, node: &Node) {
    use std::os::fd::AsRawFd;
    let mut offset = 0u64;
    for c in &node.content {
        if let ContentRef::Zeros { length } = c {
            // SAFETY: valid fd; the range lies within the file (sized above).
            let rc = unsafe {
                libc::fallocate(
                    f.as_raw_fd(),
                    libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                    offset as i64,
                    *length as i64,
                )
            };
            if rc != 0 {
                let zeros = vec![0u8; (*length).min(1 << 20) as usize];
                let mut done = 0u64;
                while done < *length {
                    let n = (*length - done).min(zeros.len() as u64) as usize;
                    if f.write_all_at(&zeros[..n], offset + done).is_err() {
                        break;
                    }
                    done += n as u64;
                }
            }
        }
        offset += c.len();
    }
}

fn finish_file(job: &FileJob, apply: ApplyOptions, progress: &RestoreProgress) -> Result<()> {
    let file = job.handle.lock().unwrap_or_else(|p| p.into_inner()).take();
    match file {
        Some(f) => apply_metadata_fd(&f, &job.path, &job.node, apply)?,
        None => apply_metadata(&job.path, &job.node, apply)?,
    }
    progress.files_done.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// Reads the needed spans of one pack and writes every blob to every place that needs it.
#[allow(clippy::too_many_arguments)] // the shared state of one restore, passed down unchanged
fn restore_pack(
    repo: &Repository,
    pack_pos: u32,
    blobs: HashMap<BlobId, (BlobLocation, Vec<Use>)>,
    files: &[FileJob],
    apply: ApplyOptions,
    progress: &RestoreProgress,
    written: &AtomicU64,
    throttle: &Throttle,
) -> Result<()> {
    let pack = repo.index().pack(pack_pos);
    let kind = pack.kind.object_kind();
    let key = repo.key().object_key(&pack.salt);
    let mut blobs: Vec<(BlobId, BlobLocation, Vec<Use>)> =
        blobs.into_iter().map(|(id, (loc, uses))| (id, loc, uses)).collect();
    blobs.sort_by_key(|b| b.1.offset);
    // Coalesce blobs into spans with gaps under 1 MiB: one read per span.
    let mut spans: Vec<(u64, u64, std::ops::Range<usize>)> = Vec::new();
    for (i, (_, loc, _)) in blobs.iter().enumerate() {
        let (start, end) = (loc.offset as u64, loc.offset as u64 + loc.length as u64);
        match spans.last_mut() {
            // Bounded spans keep memory flat however large packs are.
            Some(s) if start <= s.1 + (1 << 20) && end - s.0 <= 8 << 20 => {
                s.1 = s.1.max(end);
                s.2.end = i + 1;
            }
            _ => spans.push((start, end, i..i + 1)),
        }
    }
    let fail_uses = |uses: &[Use]| {
        for u in uses {
            files[u.file as usize].failed.store(true, Ordering::Relaxed);
        }
    };
    let mut first_error: Option<Error> = None;
    for (start, end, range) in spans {
        let bytes = match repo.store().get_range(kind, &pack.id.to_hex(), start, end - start) {
            Ok(b) => b,
            Err(e) => {
                for (_, _, uses) in &blobs[range] {
                    fail_uses(uses);
                }
                first_error.get_or_insert(Error::from(e).context(format!("reading pack {}", pack.id)));
                continue;
            }
        };
        for (id, loc, uses) in &blobs[range] {
            // Paced per blob, not per span, so that writes (and progress) flow evenly.
            throttle.take(loc.length as u64);
            let s = (loc.offset as u64 - start) as usize;
            let sealed = &bytes[s..s + loc.length as usize];
            let plain = match open_blob_with(&key, repo.key(), &loc.entry(*id), sealed) {
                Ok(p) => p,
                Err(e) => {
                    fail_uses(uses);
                    first_error.get_or_insert(e.context(format!("pack {} is damaged", pack.id)));
                    continue;
                }
            };
            for u in uses {
                let job = &files[u.file as usize];
                let r = open_target(job).and_then(|guard| {
                    let f = guard.as_ref().expect("opened above");
                    f.write_all_at(&plain, u.offset)
                        .map_err(|e| Error::local_io(format!("writing {}", job.path.display()), e))
                });
                match r {
                    Ok(()) => {
                        written.fetch_add(plain.len() as u64, Ordering::Relaxed);
                        progress.bytes_done.fetch_add(plain.len() as u64, Ordering::Relaxed);
                    }
                    Err(e) => {
                        job.failed.store(true, Ordering::Relaxed);
                        first_error.get_or_insert(e);
                    }
                }
                if job.remaining.fetch_sub(1, Ordering::AcqRel) == 1 && !job.failed.load(Ordering::Relaxed) {
                    if let Err(e) = finish_file(job, apply, progress) {
                        first_error.get_or_insert(e);
                    }
                }
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Re-reads a restored file and checks every blob against its id, and holes against zeros.
fn verify_file(repo: &Repository, job: &FileJob) -> Result<()> {
    let f = File::open(&job.path).map_err(|e| Error::local_io(format!("verifying {}", job.path.display()), e))?;
    let len = f.metadata().map_err(|e| Error::local_io(format!("verifying {}", job.path.display()), e))?.len();
    if len != job.node.size {
        return Err(Error::corrupt(format!(
            "verify: {} has {len} bytes, the snapshot says {}",
            job.path.display(),
            job.node.size
        )));
    }
    let mut offset = 0u64;
    for c in &job.node.content {
        let mut buf = vec![0u8; c.len() as usize];
        f.read_exact_at(&mut buf, offset)
            .map_err(|e| Error::local_io(format!("verifying {}", job.path.display()), e))?;
        let ok = match c {
            ContentRef::Blob { id, .. } => repo.key().blob_id(&buf) == *id,
            ContentRef::Zeros { .. } => crate::chunker::is_all_zero(&buf),
        };
        if !ok {
            return Err(Error::corrupt(format!(
                "verify: {} differs from the snapshot at byte {offset}",
                job.path.display()
            )));
        }
        offset += c.len();
    }
    Ok(())
}

/// Raises the open-file limit to its hard maximum (large restores keep many files open).
fn raise_fd_limit() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: lim is a valid rlimit struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}
