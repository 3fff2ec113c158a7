//! Disk-image and VM-volume backups and restores (docs/format.md §"Disk images").
//!
//! An image snapshot is an ordinary snapshot whose tree holds the image's path with one regular
//! file node at the end; that node's content is the guest-visible (raw) disk cut into fixed-size
//! blocks, all-zero blocks recorded as `ContentRef::Zeros` holes. Nothing new is stored, so every
//! arca version reads, checks, restores, copies and prunes image snapshots.
//!
//! Backup algorithm:
//! 1. Lock, load the index and drop packs that are marked or missing, as `backup` does.
//! 2. A reader thread reads the source block by block (raw file, block device, or qcow2 through
//!    [`crate::qcow2`]) into a small bounded queue.
//! 3. The engine takes the blocks that are ready, checks and hashes them in parallel, claims each
//!    new id once, compresses the new blocks in parallel and hands them to the packer. A block
//!    whose id is already in the repository costs nothing but its hash: an unchanged disk adds
//!    only its tree.
//! 4. It stores the trees of the image's path, then the snapshot (§"Write ordering").
//!
//! Restore writes blocks out of order in parallel with `pwrite`; a regular-file target is emptied
//! and sized first so that holes are never written (sparse); a block device target must be at
//! least as large as the image (checked before the first write) and gets its zero blocks written.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use rayon::prelude::*;

use crate::backup::{absolute_path, find_parent, BackupOutcome, BackupProgress};
use crate::chunker::is_all_zero;
use crate::error::{Error, ErrorKind, Result};
use crate::fsmeta::node_from_metadata;
use crate::id::{BlobId, PackId};
use crate::lock::LockGuard;
use crate::pack::{compress, BlobType, PackKind};
use crate::packer::{NewBlob, PackSizes, Packer};
use crate::qcow2::{Qcow2, QCOW2_MAGIC};
use crate::repository::Repository;
use crate::restore::RestoreProgress;
use crate::snapshot::{Snapshot, Summary};
use crate::tree::{ContentRef, Node, NodeKind, Tree};

/// Smallest default block size of image backups: 64 KiB. Measured (bench/image-chunks.sh, a
/// 1 GiB disk of which 1% was rewritten in scattered 4 KiB writes): the second backup stored 102%
/// of the first with 4 MiB blocks, 95% with 1 MiB, 49% with 256 KiB, 17% with 64 KiB and 6% with
/// 16 KiB (restic: 97%, borg: 100%). Below 64 KiB the image's tree (about 40 bytes per block,
/// stored again by every backup that changes anything) and the index grow faster than the saving.
pub const DEFAULT_CHUNK_SIZE: u32 = 64 << 10;
/// Blocks a default block size aims to stay under: the block size doubles from
/// [`DEFAULT_CHUNK_SIZE`] until the disk fits (64 GiB disks get 64 KiB blocks, 1 TiB disks 1 MiB),
/// so that the image's tree stays near 40 MiB and the index in memory bounded.
pub const DEFAULT_MAX_BLOCKS: u64 = 1 << 20;
/// Smallest block size accepted.
pub const MIN_CHUNK_SIZE: u32 = 4 << 10;
/// Largest block size accepted.
pub const MAX_CHUNK_SIZE: u32 = 64 << 20;

/// What the source image is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    /// Look at the first bytes: qcow2 if its magic is there, raw otherwise.
    #[default]
    Auto,
    /// A raw disk: the bytes are the disk.
    Raw,
    /// A qcow2 volume: backed up as the disk the guest sees.
    Qcow2,
}

/// What to back up and how.
#[derive(Debug, Clone)]
pub struct ImageBackupOptions {
    /// Image file or block device.
    pub path: PathBuf,
    /// Its format.
    pub format: ImageFormat,
    /// Fixed block size; `None`: the parent snapshot's (a disk's backups deduplicate only
    /// against blocks of the same size), or [`DEFAULT_CHUNK_SIZE`] for a first backup.
    pub chunk_size: Option<u32>,
    /// Tags for the snapshot.
    pub tags: Vec<String>,
    /// Host name to record (default: this machine's).
    pub hostname: Option<String>,
    /// Time to record (default: now).
    pub time: Option<DateTime<Utc>>,
}

/// An opened image.
enum Source {
    Raw(File),
    Qcow2(Box<Qcow2>),
}

impl Source {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<()> {
        match self {
            Source::Raw(f) => {
                f.read_exact_at(buf, offset).map_err(|e| Error::local_io(format!("reading at {offset}"), e))
            }
            Source::Qcow2(q) => q.read_at(offset, buf),
        }
    }
}

/// Opens the source, checks it is what `format` says, and returns it with its guest size and the
/// format found.
fn open_source(path: &Path, format: ImageFormat) -> Result<(Source, u64, ImageFormat)> {
    let shown = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|e| Error::local_io(format!("opening image {shown}"), e))?;
    let ft = meta.file_type();
    if !ft.is_file() && !ft.is_block_device() {
        return Err(Error::invalid(format!("{shown} is neither a regular file nor a block device")));
    }
    let mut file = File::open(path).map_err(|e| Error::local_io(format!("opening image {shown}"), e))?;
    let size = file.seek(SeekFrom::End(0)).map_err(|e| Error::local_io(format!("sizing {shown}"), e))?;
    let mut magic = [0u8; 8];
    let n = file.read_at(&mut magic, 0).map_err(|e| Error::local_io(format!("reading {shown}"), e))?;
    let is_qcow2 = n >= 4 && magic[..4] == QCOW2_MAGIC;
    let found = match format {
        ImageFormat::Auto if is_qcow2 => ImageFormat::Qcow2,
        ImageFormat::Auto => {
            for (m, name) in [(&b"KDMV"[..], "VMDK"), (b"vhdxfile", "VHDX"), (b"conectix", "VHD")] {
                if magic.starts_with(m) {
                    return Err(Error::invalid(format!(
                        "{shown} is a {name} image, which arca does not read: convert it with \
                         `qemu-img convert -O qcow2`, or pass --image-format raw to store its bytes as they are"
                    )));
                }
            }
            ImageFormat::Raw
        }
        ImageFormat::Qcow2 if !is_qcow2 => {
            return Err(Error::invalid(format!("{shown} is not a qcow2 image (no qcow2 magic)")));
        }
        f => f,
    };
    if found == ImageFormat::Qcow2 {
        let q = Qcow2::open(file, &shown)?;
        let size = q.size();
        return Ok((Source::Qcow2(Box::new(q)), size, found));
    }
    Ok((Source::Raw(file), size, found))
}

fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2)
}

/// Backs up one disk image as a new snapshot.
pub fn backup_image(
    repo: &mut Repository,
    opts: &ImageBackupOptions,
    progress: &BackupProgress,
) -> Result<ImageBackupOutcome> {
    if let Some(c) = opts.chunk_size.filter(|c| !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(c)) {
        return Err(Error::invalid(format!(
            "chunk size {c} is out of range ({MIN_CHUNK_SIZE}..={MAX_CHUNK_SIZE} bytes)"
        )));
    }
    let path = absolute_path(&opts.path)?;
    // Open before taking the lock: bad input is refused before the repository is touched.
    let (mut source, size, _format) = open_source(&path, opts.format)?;
    let started = Utc::now();
    let lock = LockGuard::acquire(repo.store().clone(), "backup")?;
    let repository_warnings = crate::backup::open_for_writing(repo)?;

    let hostname = opts.hostname.clone().unwrap_or_else(crate::sys::hostname);
    let path_string = path.to_string_lossy().into_owned();
    let parent = find_parent(repo, &hostname, std::slice::from_ref(&path_string))?;
    let parent_chunk_size = match (opts.chunk_size, &parent) {
        (None, Some(p)) => parent_block_size(repo, p, &path_string),
        _ => None,
    };
    let chunk_size = opts.chunk_size.or(parent_chunk_size).unwrap_or_else(|| default_chunk_size(size));
    progress.bytes_total.store(size, Ordering::Relaxed);
    progress.files_total.store(1, Ordering::Relaxed);
    progress.scan_done.store(true, Ordering::Relaxed);

    let config = repo.config().clone();
    let key = repo.key().clone();
    let packer = Packer::start(
        repo.store().clone(),
        key.clone(),
        PackSizes { data: config.data_pack_size as usize, meta: config.meta_pack_size as usize },
    );
    let repo_ref: &Repository = repo;
    let mut referenced: HashSet<BlobId> = HashSet::new();
    let mut new_blobs: HashSet<BlobId> = HashSet::new();
    let data_added = AtomicU64::new(0);
    let blobs_added = AtomicU64::new(0);
    let store = |blob_type: BlobType, id: BlobId, plain: Vec<u8>| -> Result<()> {
        let raw_length = plain.len() as u32;
        let (payload, compressed) = match compress(&plain, config.compression_level) {
            Some(c) => (c, true),
            None => (plain, false),
        };
        data_added.fetch_add(raw_length as u64, Ordering::Relaxed);
        blobs_added.fetch_add(1, Ordering::Relaxed);
        packer.add(NewBlob { blob_type, id, payload, raw_length, compressed })
    };

    let chunk = chunk_size as u64;
    let batch = cores() * 2;
    let content = std::thread::scope(|scope| -> Result<Vec<ContentRef>> {
        let (tx, rx) = crossbeam_channel::bounded::<Result<Vec<u8>>>(batch);
        scope.spawn(move || {
            let mut offset = 0u64;
            while offset < size {
                let len = chunk.min(size - offset) as usize;
                let mut buf = vec![0u8; len];
                let r = source.read_at(offset, &mut buf).map(|()| buf);
                let failed = r.is_err();
                if tx.send(r).is_err() || failed {
                    return;
                }
                offset += len as u64;
            }
        });
        let mut content: Vec<ContentRef> = Vec::new();
        let mut done = 0u64;
        while done < size {
            let mut blocks = vec![rx.recv().map_err(|_| Error::invalid("the image reader stopped"))??];
            while blocks.len() < batch {
                match rx.try_recv() {
                    Ok(b) => blocks.push(b?),
                    Err(_) => break,
                }
            }
            let hashed: Vec<(Option<BlobId>, Vec<u8>)> = blocks
                .into_par_iter()
                .map(|b| if is_all_zero(&b) { (None, b) } else { (Some(key.blob_id(&b)), b) })
                .collect();
            let mut to_store = Vec::new();
            for (id, block) in hashed {
                let len = block.len() as u64;
                done += len;
                match id {
                    None => match content.last_mut() {
                        Some(ContentRef::Zeros { length }) => *length += len,
                        _ => content.push(ContentRef::Zeros { length: len }),
                    },
                    Some(id) => {
                        content.push(ContentRef::Blob { id, length: len as u32 });
                        referenced.insert(id);
                        if !repo_ref.index().contains(&id) && new_blobs.insert(id) {
                            to_store.push((id, block));
                        }
                    }
                }
            }
            to_store.into_par_iter().try_for_each(|(id, block)| store(BlobType::Data, id, block))?;
            progress.bytes_done.store(done, Ordering::Relaxed);
        }
        Ok(content)
    });
    let content = match content {
        Ok(c) => c,
        Err(e) => {
            let _ = packer.finish();
            return Err(e);
        }
    };
    progress.files_done.store(1, Ordering::Relaxed);

    // The trees along the image's path, innermost first (as `backup` records a path: every
    // ancestor directory with its metadata).
    let build = || -> Result<(BlobId, u64)> {
        let meta = std::fs::metadata(&path).map_err(|e| Error::local_io(format!("reading {}", path.display()), e))?;
        let name = path.file_name().map(|n| n.as_bytes().to_vec()).unwrap_or_else(|| b"image".to_vec());
        let mut node = node_from_metadata(name, &path, &meta, false)?;
        node.kind = NodeKind::File;
        node.mode = libc::S_IFREG | (node.mode & 0o7777);
        node.size = size;
        node.content = content;
        let mut nodes = vec![node];
        let mut dirs = 0u64;
        let mut save = |nodes: Vec<Node>| -> Result<BlobId> {
            let bytes = Tree { nodes }.encode();
            let id = key.blob_id(&bytes);
            referenced.insert(id);
            if !repo_ref.index().contains(&id) && new_blobs.insert(id) {
                store(BlobType::Tree, id, bytes)?;
            }
            Ok(id)
        };
        let mut dir = path.parent();
        while let Some(d) = dir.filter(|d| d.file_name().is_some()) {
            let meta =
                std::fs::symlink_metadata(d).map_err(|e| Error::local_io(format!("reading {}", d.display()), e))?;
            let name = d.file_name().map(|n| n.as_bytes().to_vec()).unwrap_or_default();
            let mut dnode = node_from_metadata(name, d, &meta, false)?;
            dnode.subtree = Some(save(std::mem::take(&mut nodes))?);
            nodes = vec![dnode];
            dirs += 1;
            dir = d.parent();
        }
        Ok((save(nodes)?, dirs))
    };
    let built = build();
    let stored = packer.finish()?;
    let (root, dirs) = built?;

    let mut new_location: HashMap<BlobId, (PackKind, PackId)> = HashMap::new();
    for p in &stored.packs {
        for b in &p.blobs {
            new_location.insert(b.id, (p.kind, p.id));
        }
    }
    let mut manifest: HashSet<(PackKind, PackId)> = HashSet::new();
    for id in &referenced {
        let place = repo
            .index()
            .get(id)
            .map(|(info, _)| (info.kind, info.id))
            .or_else(|| new_location.get(id).copied())
            .ok_or_else(|| Error::corrupt(format!("internal error: blob {id} was referenced but never stored")))?;
        manifest.insert(place);
    }
    let mut manifest: Vec<_> = manifest.into_iter().collect();
    manifest.sort();
    let snapshot = Snapshot {
        time: opts.time.unwrap_or(started),
        tree: root,
        paths: vec![path_string],
        hostname,
        username: crate::sys::username(),
        tags: opts.tags.clone(),
        parent,
        summary: Summary {
            backup_start: Some(started),
            backup_end: Some(Utc::now()),
            files_new: parent.is_none() as u64,
            files_changed: parent.is_some() as u64,
            files_unmodified: 0,
            dirs,
            others: 0,
            total_bytes: size,
            bytes_read: size,
            data_added: data_added.load(Ordering::Relaxed),
            data_added_packed: stored.stored_bytes,
            blobs_added: blobs_added.load(Ordering::Relaxed),
            errors: 0,
        },
        program_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    lock.ensure_continuous()?;
    let id = repo.save_snapshot(&snapshot, &manifest)?;
    Ok(ImageBackupOutcome {
        backup: BackupOutcome { id, snapshot, warnings: Vec::new(), repository_warnings },
        chunk_size,
        chunk_size_from_parent: parent_chunk_size.is_some(),
    })
}

/// The block size of a disk of `size` bytes backed up for the first time: see
/// [`DEFAULT_CHUNK_SIZE`] and [`DEFAULT_MAX_BLOCKS`].
pub fn default_chunk_size(size: u64) -> u32 {
    let mut chunk = DEFAULT_CHUNK_SIZE;
    while chunk < MAX_CHUNK_SIZE && size.div_ceil(chunk as u64) > DEFAULT_MAX_BLOCKS {
        chunk *= 2;
    }
    chunk
}

/// What an image backup did.
#[derive(Debug)]
pub struct ImageBackupOutcome {
    /// The snapshot saved.
    pub backup: BackupOutcome,
    /// The block size used.
    pub chunk_size: u32,
    /// Whether it was taken from the parent snapshot (no size was asked for).
    pub chunk_size_from_parent: bool,
}

/// The block size of the image at `path` in snapshot `id`: its largest data block (every block
/// but the last is exactly the block size; holes are merged). `None` when it cannot be told (no
/// data blocks, the snapshot unreadable, a size out of range): the default is used then, which
/// costs one backup's deduplication, never correctness.
fn parent_block_size(repo: &Repository, id: &crate::id::SnapshotId, path: &str) -> Option<u32> {
    let (snapshot, _) = repo.load_snapshot(id).map_err(|e| tracing::debug!("reading the parent snapshot: {e}")).ok()?;
    let node = find_file(repo, &snapshot, Some(path)).map_err(|e| tracing::debug!("the parent's image: {e}")).ok()?;
    let size = node
        .content
        .iter()
        .filter_map(|c| match c {
            ContentRef::Blob { length, .. } => Some(*length),
            _ => None,
        })
        .max()?;
    (MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&size).then_some(size)
}

/// Finds the regular file at `path` in a snapshot; without a path, the snapshot's only backed-up
/// path (which is what an image snapshot has).
pub fn find_file(repo: &Repository, snapshot: &Snapshot, path: Option<&str>) -> Result<Node> {
    let path = match path.map(str::trim).filter(|p| !p.is_empty()) {
        Some(p) => p.to_string(),
        None => match snapshot.paths.as_slice() {
            [one] => one.clone(),
            _ => {
                return Err(Error::invalid(format!(
                    "the snapshot has {} paths: name the image as SNAPSHOT:PATH",
                    snapshot.paths.len()
                )))
            }
        },
    };
    let mut tree = repo.load_tree(&snapshot.tree)?;
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    for (i, part) in parts.iter().enumerate() {
        let node = tree
            .find(part.as_bytes())
            .cloned()
            .ok_or_else(|| Error::not_found(format!("{path} is not in the snapshot")))?;
        if i + 1 == parts.len() {
            if !node.is_file() {
                return Err(Error::invalid(format!("{path} in the snapshot is not a regular file")));
            }
            return Ok(node);
        }
        let sub = node.subtree.ok_or_else(|| Error::not_found(format!("{path} is not in the snapshot")))?;
        tree = repo.load_tree(&sub)?;
    }
    Err(Error::invalid(format!("{path:?} names no file")))
}

/// How to restore an image.
#[derive(Debug, Clone, Default)]
pub struct ImageRestoreOptions {
    /// Raw file (created or replaced) or block device (overwritten).
    pub target: PathBuf,
    /// Read the target back and check every block against the snapshot.
    pub verify: bool,
    /// Most bytes per second to read from the repository (`None`: no limit).
    pub limit_rate: Option<u64>,
}

/// What an image restore did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ImageRestoreOutcome {
    /// Image size.
    pub size: u64,
    /// Bytes of data blocks written.
    pub bytes_written: u64,
    /// Bytes left as holes (regular files) or written as zeros (devices).
    pub zero_bytes: u64,
    /// Whether the target is a block device.
    pub device: bool,
    /// Whether every block was read back and matched (with `verify`).
    pub verified: bool,
}

/// Writes the image `node` to `opts.target`.
pub fn restore_image(
    repo: &Repository,
    node: &Node,
    opts: &ImageRestoreOptions,
    progress: &RestoreProgress,
) -> Result<ImageRestoreOutcome> {
    let target = &opts.target;
    let shown = target.display().to_string();
    let map = crate::reader::ContentMap::new(node.content.clone());
    if map.size() != node.size {
        return Err(Error::corrupt(format!("the image's blocks add up to {} bytes, not {}", map.size(), node.size)));
    }
    let size = node.size;
    let device = match std::fs::metadata(target) {
        Ok(m) if m.file_type().is_block_device() => true,
        Ok(m) if m.is_file() => false,
        Ok(_) => return Err(Error::invalid(format!("{shown} is neither a regular file nor a block device"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(Error::local_io(format!("reading {shown}"), e)),
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(!device)
        .truncate(false)
        .open(target)
        .map_err(|e| Error::local_io(format!("opening {shown}"), e))?;
    if device {
        let dev_size = file.seek(SeekFrom::End(0)).map_err(|e| Error::local_io(format!("sizing {shown}"), e))?;
        if dev_size < size {
            return Err(Error::invalid(format!(
                "{shown} holds {dev_size} bytes, the image needs {size}: nothing was written"
            )));
        }
    } else {
        // Emptying first makes every zero block a hole that is never written.
        file.set_len(0).map_err(|e| Error::local_io(format!("truncating {shown}"), e))?;
        file.set_len(size).map_err(|e| Error::local_io(format!("sizing {shown}"), e))?;
    }
    progress.files_total.store(1, Ordering::Relaxed);
    progress.bytes_total.store(size, Ordering::Relaxed);
    let pieces: Vec<(u64, ContentRef)> = map.pieces().map(|(s, c)| (s, *c)).collect();
    let written = AtomicU64::new(0);
    let throttle = crate::throttle::Throttle::new(opts.limit_rate);
    pieces.par_iter().with_max_len(1).try_for_each(|&(at, piece)| -> Result<()> {
        match piece {
            ContentRef::Blob { id, .. } => {
                let data = crate::reader::read_blob_naming_pack(repo, &id)
                    .map_err(|e| e.context(format!("image block at offset {at}")))?;
                throttle.take(data.len() as u64);
                // On a regular file, zero runs inside a block stay holes too (a 4 MiB block is
                // often mostly empty): write only the runs of non-zero 64 KiB pieces.
                let step = if device { data.len().max(1) } else { 64 << 10 };
                let mut run: Option<usize> = None;
                let mut pos = 0usize;
                while pos <= data.len() {
                    let end = (pos + step).min(data.len());
                    let nonzero = pos < data.len() && (device || !is_all_zero(&data[pos..end]));
                    match (nonzero, run) {
                        (true, None) => run = Some(pos),
                        (false, Some(from)) => {
                            file.write_all_at(&data[from..pos], at + from as u64)
                                .map_err(|e| Error::local_io(format!("writing {shown} at {}", at + from as u64), e))?;
                            written.fetch_add((pos - from) as u64, Ordering::Relaxed);
                            run = None;
                        }
                        _ => {}
                    }
                    if pos == data.len() {
                        break;
                    }
                    pos = end;
                }
            }
            ContentRef::Zeros { length } if device => {
                let zeros = vec![0u8; (1 << 20).min(length) as usize];
                let mut off = 0u64;
                while off < length {
                    let n = (zeros.len() as u64).min(length - off) as usize;
                    file.write_all_at(&zeros[..n], at + off)
                        .map_err(|e| Error::local_io(format!("writing {shown} at {}", at + off), e))?;
                    off += n as u64;
                }
            }
            ContentRef::Zeros { .. } => {}
        }
        progress.bytes_done.fetch_add(piece.len(), Ordering::Relaxed);
        Ok(())
    })?;
    file.sync_all().map_err(|e| Error::local_io(format!("flushing {shown}"), e))?;
    progress.files_done.store(1, Ordering::Relaxed);
    let bytes_written = written.load(Ordering::Relaxed);
    let mut outcome =
        ImageRestoreOutcome { size, bytes_written, zero_bytes: size - bytes_written, device, verified: false };
    if opts.verify {
        verify_image(repo, node, &file, &shown)?;
        outcome.verified = true;
    }
    Ok(outcome)
}

/// Reads `file` back and checks every block of `node` against it; the first mismatch is an error
/// naming its offset.
pub fn verify_image(repo: &Repository, node: &Node, file: &File, shown: &str) -> Result<()> {
    let map = crate::reader::ContentMap::new(node.content.clone());
    let pieces: Vec<(u64, ContentRef)> = map.pieces().map(|(s, c)| (s, *c)).collect();
    let key = repo.key();
    pieces.par_iter().with_max_len(1).try_for_each(|&(at, piece)| -> Result<()> {
        let mismatch =
            || Error::new(ErrorKind::LocalIo, format!("verification failed: {shown} differs at offset {at}"));
        let mut off = 0u64;
        while off < piece.len() {
            // A blob is checked whole (its id covers all of it); holes in pieces of 4 MiB.
            let step = if matches!(piece, ContentRef::Blob { .. }) { piece.len() } else { 4 << 20 };
            let n = step.min(piece.len() - off) as usize;
            let mut buf = vec![0u8; n];
            file.read_exact_at(&mut buf, at + off).map_err(|e| Error::local_io(format!("reading back {shown}"), e))?;
            let ok = match piece {
                ContentRef::Blob { id, .. } => key.blob_id(&buf) == id,
                ContentRef::Zeros { .. } => is_all_zero(&buf),
            };
            if !ok {
                return Err(mismatch());
            }
            off += n as u64;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_block_size_grows_with_the_disk() {
        const GIB: u64 = 1 << 30;
        assert_eq!(default_chunk_size(0), 64 << 10);
        assert_eq!(default_chunk_size(GIB), 64 << 10);
        assert_eq!(default_chunk_size(64 * GIB), 64 << 10);
        assert_eq!(default_chunk_size(64 * GIB + 1), 128 << 10);
        assert_eq!(default_chunk_size(1024 * GIB), 1 << 20);
        assert_eq!(default_chunk_size(u64::MAX), MAX_CHUNK_SIZE, "capped, no overflow");
        for size in [GIB, 100 * GIB, 3000 * GIB] {
            assert!(size.div_ceil(default_chunk_size(size) as u64) <= DEFAULT_MAX_BLOCKS);
        }
    }
}
