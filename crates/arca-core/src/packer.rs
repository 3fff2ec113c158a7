//! The write side of the pipeline: blobs in, durable packs and index files out.
//!
//! Two threads, so that sealing, hashing and writing overlap with the rayon workers that read,
//! chunk and compress:
//! 1. the *packer* appends each sealed blob to the open pack of its kind (data or metadata) and,
//!    when the pack reaches its target size, finishes it (header, BLAKE3 name);
//! 2. [`UPLOADERS`] *uploaders* store finished packs (two, so one pack's fsync overlaps the next
//!    pack's write) and, every [`INDEX_EVERY`] packs and at the end, an index file covering the
//!    packs stored since the last one (§"Write ordering": an index is written only after the packs
//!    it covers are durable). A killed backup thus leaves indexed packs that the next backup
//!    deduplicates against.
//!
//! Channels are bounded, so memory stays at about four packs plus the blobs in flight.

use std::thread::JoinHandle;

use arca_store::ObjectKind;
use crossbeam_channel::{bounded, Receiver, Sender};

use crate::crypto::MasterKey;
use crate::error::{Error, Result};
use crate::id::IndexId;
use crate::index::{encode_index, IndexPack};
use crate::pack::{BlobType, FinishedPack, PackKind, PackWriter};
use crate::repository::DynStore;

/// Packs per index file while a backup runs.
pub const INDEX_EVERY: usize = 8;
/// Threads storing packs.
pub const UPLOADERS: usize = 2;

/// A blob ready to be packed: already compressed if it pays.
pub struct NewBlob {
    /// Data or tree.
    pub blob_type: BlobType,
    /// Its id.
    pub id: crate::id::BlobId,
    /// Compressed or raw plaintext.
    pub payload: Vec<u8>,
    /// Plaintext length.
    pub raw_length: u32,
    /// Whether `payload` is compressed.
    pub compressed: bool,
}

/// What the packer stored.
#[derive(Debug, Default)]
pub struct PackerOutput {
    /// Every pack stored, with its blobs.
    pub packs: Vec<IndexPack>,
    /// Index files stored.
    pub index_files: Vec<IndexId>,
    /// Bytes stored in packs.
    pub stored_bytes: u64,
}

/// Handle to the packer threads.
pub struct Packer {
    tx: Option<Sender<NewBlob>>,
    packer: Option<JoinHandle<Result<()>>>,
    uploaders: Vec<JoinHandle<Result<()>>>,
    done: std::sync::Arc<std::sync::Mutex<Uploaded>>,
    store: DynStore,
    key: std::sync::Arc<MasterKey>,
}

/// What the uploaders have stored so far.
#[derive(Default)]
struct Uploaded {
    out: PackerOutput,
    /// Stored packs no index file covers yet.
    unindexed: Vec<IndexPack>,
}

/// Target pack sizes.
#[derive(Debug, Clone, Copy)]
pub struct PackSizes {
    /// Data packs.
    pub data: usize,
    /// Metadata packs.
    pub meta: usize,
}

impl Packer {
    /// Starts the threads.
    pub fn start(store: DynStore, key: std::sync::Arc<MasterKey>, sizes: PackSizes) -> Packer {
        let (tx, rx) = bounded::<NewBlob>(4);
        let (up_tx, up_rx) = bounded::<(PackKind, FinishedPack)>(1);
        let packer = {
            let key = key.clone();
            std::thread::Builder::new()
                .name("packer".into())
                .spawn(move || pack_loop(&key, sizes, rx, up_tx))
                .expect("spawning the packer thread")
        };
        let done = std::sync::Arc::new(std::sync::Mutex::new(Uploaded::default()));
        let uploaders = (0..UPLOADERS)
            .map(|i| {
                let (store, key, rx, done) = (store.clone(), key.clone(), up_rx.clone(), done.clone());
                std::thread::Builder::new()
                    .name(format!("uploader-{i}"))
                    .spawn(move || upload_loop(&store, &key, rx, &done))
                    .expect("spawning an uploader thread")
            })
            .collect();
        Packer { tx: Some(tx), packer: Some(packer), uploaders, done, store, key }
    }

    /// Queues a blob; blocks while the pipeline is full.
    pub fn add(&self, blob: NewBlob) -> Result<()> {
        self.tx
            .as_ref()
            .expect("packer used after finish")
            .send(blob)
            .map_err(|_| Error::new(crate::ErrorKind::Storage, "the pack writer stopped (see the error that follows)"))
    }

    /// Flushes the open packs, waits for every write, stores the last index file.
    pub fn finish(mut self) -> Result<PackerOutput> {
        self.join()
    }

    fn join(&mut self) -> Result<PackerOutput> {
        drop(self.tx.take());
        let packed =
            self.packer.take().map(|h| h.join().unwrap_or_else(|_| Err(Error::corrupt("packer thread panicked"))));
        let mut first_error = None;
        for h in self.uploaders.drain(..) {
            if let Err(e) = h.join().unwrap_or_else(|_| Err(Error::corrupt("uploader thread panicked"))) {
                first_error.get_or_insert(e);
            }
        }
        // An uploader's error is the root cause when both failed.
        if let Some(e) = first_error {
            return Err(e);
        }
        packed.unwrap_or(Ok(()))?;
        let mut done = self.done.lock().unwrap_or_else(|p| p.into_inner());
        let Uploaded { out, unindexed } = &mut *done;
        if !unindexed.is_empty() {
            write_index(&self.store, &self.key, unindexed, out)?;
        }
        Ok(std::mem::take(out))
    }
}

impl Drop for Packer {
    fn drop(&mut self) {
        if self.tx.is_some() {
            let _ = self.join();
        }
    }
}

fn pack_loop(
    key: &MasterKey,
    sizes: PackSizes,
    rx: Receiver<NewBlob>,
    up: Sender<(PackKind, FinishedPack)>,
) -> Result<()> {
    let mut data: Option<PackWriter> = None;
    let mut meta: Option<PackWriter> = None;
    let gone = || Error::new(crate::ErrorKind::Storage, "the pack uploader stopped");
    for blob in rx {
        let kind = PackKind::for_blob(blob.blob_type);
        let (slot, target) = match kind {
            PackKind::Data => (&mut data, sizes.data),
            PackKind::Meta => (&mut meta, sizes.meta),
        };
        let writer = slot.get_or_insert_with(|| PackWriter::new(key, target));
        writer.add(blob.blob_type, blob.id, &blob.payload, blob.raw_length, blob.compressed);
        if writer.len() >= target {
            let full = slot.take().expect("just used");
            up.send((kind, full.finish())).map_err(|_| gone())?;
        }
    }
    for (kind, slot) in [(PackKind::Data, data), (PackKind::Meta, meta)] {
        if let Some(w) = slot.filter(|w| !w.is_empty()) {
            up.send((kind, w.finish())).map_err(|_| gone())?;
        }
    }
    Ok(())
}

fn write_index(store: &DynStore, key: &MasterKey, packs: &mut Vec<IndexPack>, out: &mut PackerOutput) -> Result<()> {
    let bytes = encode_index(key, packs);
    let id = IndexId(crate::id::content_hash(&bytes));
    store.put(ObjectKind::Index, &id.to_hex(), &bytes)?;
    out.index_files.push(id);
    out.packs.append(packs);
    Ok(())
}

fn upload_loop(
    store: &DynStore,
    key: &MasterKey,
    rx: Receiver<(PackKind, FinishedPack)>,
    done: &std::sync::Mutex<Uploaded>,
) -> Result<()> {
    for (kind, pack) in rx {
        store
            .put(kind.object_kind(), &pack.id.to_hex(), &pack.bytes)
            .map_err(|e| Error::from(e).context(format!("storing pack {}", pack.id)))?;
        let size = pack.bytes.len() as u64;
        drop(pack.bytes);
        let mut d = done.lock().unwrap_or_else(|p| p.into_inner());
        d.out.stored_bytes += size;
        d.unindexed.push(IndexPack { id: pack.id, kind, salt: pack.salt, size, blobs: pack.entries });
        if d.unindexed.len() >= INDEX_EVERY {
            // Every pack in `unindexed` is durable: its put returned before it was pushed.
            let Uploaded { out, unindexed } = &mut *d;
            write_index(store, key, unindexed, out)?;
        }
    }
    Ok(())
}
