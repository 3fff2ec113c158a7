//! `arca nbd`: serve a backed-up disk image as an NBD export, straight from the repository.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::TcpListener;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Mutex;

use anyhow::{bail, Context, Result};
use arca_core::reader::{BlobCache, ContentMap};
use arca_core::repository::Repository;
use clap::Args;
use serde_json::json;

use crate::cli::{FilterArgs, GlobalOpts};
use crate::nbd::{Export, Extent};
use crate::output::print_json;
use crate::repo;

const LONG_ABOUT: &str = "\
Serve a disk image from a snapshot as a read-only NBD export, so that qemu-img, qemu-nbd or a VM can
use it before (or instead of) a full restore: `qemu-img convert nbd://127.0.0.1:10809 disk.raw`,
`qemu-system-x86_64 -drive file=nbd://127.0.0.1:10809,snapshot=on`, `nbd-client`.

Blocks are read from the repository on demand through a bounded cache (--cache-size). A block
whose pack is damaged or missing fails that read with EIO, is logged with the pack's name, and the
server keeps serving everything else.

--overlay FILE makes the export writable: writes go to FILE (a new sparse file, copy-on-write in
blocks of 64 KiB), never to the repository. The overlay lives as long as the server: it is not
reopened by a later run.

The server runs until interrupted (Ctrl-C).

Examples:
  arca nbd latest
  arca nbd 1a2b3c4d:/var/lib/libvirt/images/vm1.qcow2 --listen 127.0.0.1:10810
  arca nbd latest --overlay /tmp/vm1-scratch.img";

/// `arca nbd` flags.
#[derive(Debug, Args)]
#[command(about = "Serve a backed-up disk image over NBD", long_about = LONG_ABOUT)]
pub struct NbdArgs {
    /// The snapshot (an id prefix or `latest`), with `:PATH` of the image unless it holds only one
    #[arg(value_name = "SNAPSHOT[:IMAGE]")]
    pub snapshot: String,

    /// Address to listen on (port 0 picks a free port, printed at start)
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:10809")]
    pub listen: String,

    /// Export name (clients asking for the default, empty name get it too)
    #[arg(long, value_name = "NAME", default_value = "arca")]
    pub name: String,

    /// Accept writes into this new file instead of refusing them (the backup is never written)
    #[arg(long, value_name = "FILE")]
    pub overlay: Option<PathBuf>,

    /// Most memory for cached blocks
    #[arg(long, value_name = "SIZE", default_value = "256M", value_parser = super::image::parse_size)]
    pub cache_size: u64,

    #[command(flatten)]
    pub filter: FilterArgs,
}

/// Overlay block size: writes smaller than this copy the block from the backup first.
const OVERLAY_BLOCK: u64 = 64 << 10;

/// Writable layer: blocks written since start, in a sparse file.
struct Overlay {
    file: File,
    /// One bit per overlay block: written to `file`.
    dirty: Mutex<Vec<u64>>,
}

impl Overlay {
    fn is_dirty(bits: &[u64], block: u64) -> bool {
        bits[(block / 64) as usize] & (1 << (block % 64)) != 0
    }
}

/// An image in a snapshot, read through the cache, optionally with an overlay.
struct ImageExport<'r> {
    repo: &'r Repository,
    map: ContentMap,
    cache: BlobCache,
    overlay: Option<Overlay>,
}

impl ImageExport<'_> {
    fn read_base(&self, offset: u64, buf: &mut [u8]) -> Result<(), String> {
        match self.map.read_at(self.repo, &self.cache, offset, buf) {
            Ok(n) if n == buf.len() => Ok(()),
            Ok(n) => Err(format!("short read: {n} of {} bytes", buf.len())),
            Err(e) => Err(e.to_string()),
        }
    }
}

impl Export for ImageExport<'_> {
    fn size(&self) -> u64 {
        self.map.size()
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), String> {
        let Some(ov) = &self.overlay else {
            return self.read_base(offset, buf);
        };
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let block = pos / OVERLAY_BLOCK;
            let take = ((OVERLAY_BLOCK - pos % OVERLAY_BLOCK) as usize).min(buf.len() - done);
            let dirty = Overlay::is_dirty(&ov.dirty.lock().unwrap_or_else(|p| p.into_inner()), block);
            let out = &mut buf[done..done + take];
            if dirty {
                ov.file.read_exact_at(out, pos).map_err(|e| format!("reading the overlay: {e}"))?;
            } else {
                self.read_base(pos, out)?;
            }
            done += take;
        }
        Ok(())
    }

    fn writable(&self) -> bool {
        self.overlay.is_some()
    }

    /// The snapshot's holes, less the overlay blocks written since start (data now).
    fn extents(&self, offset: u64, len: u32) -> Vec<Extent> {
        let bits = self.overlay.as_ref().map(|ov| ov.dirty.lock().unwrap_or_else(|p| p.into_inner()).clone());
        let mut out: Vec<Extent> = Vec::new();
        let mut push = |length: u64, hole: bool| match out.last_mut() {
            Some(last) if last.hole == hole => last.length += length as u32,
            _ => out.push(Extent { length: length as u32, hole }),
        };
        let mut at = offset;
        for (length, hole) in self.map.extents(offset, len as u64) {
            let end = at + length;
            match (&bits, hole) {
                (Some(bits), true) => {
                    // A hole is data where the overlay holds written blocks.
                    while at < end {
                        let block = at / OVERLAY_BLOCK;
                        let next = ((block + 1) * OVERLAY_BLOCK).min(end);
                        push(next - at, !Overlay::is_dirty(bits, block));
                        at = next;
                    }
                }
                _ => push(length, hole),
            }
            at = end;
        }
        out
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> Result<(), String> {
        let Some(ov) = &self.overlay else {
            return Err("read-only export".into());
        };
        // Writes are serialised: a block's copy-on-write and its first write must not interleave
        // with another write to the same block.
        let mut bits = ov.dirty.lock().unwrap_or_else(|p| p.into_inner());
        let mut done = 0usize;
        while done < data.len() {
            let pos = offset + done as u64;
            let block = pos / OVERLAY_BLOCK;
            let start = block * OVERLAY_BLOCK;
            let take = ((OVERLAY_BLOCK - pos % OVERLAY_BLOCK) as usize).min(data.len() - done);
            if !Overlay::is_dirty(&bits, block) {
                let len = OVERLAY_BLOCK.min(self.map.size() - start) as usize;
                let mut whole = vec![0u8; len];
                self.read_base(start, &mut whole)?;
                let at = (pos - start) as usize;
                whole[at..at + take].copy_from_slice(&data[done..done + take]);
                ov.file.write_all_at(&whole, start).map_err(|e| format!("writing the overlay: {e}"))?;
                bits[(block / 64) as usize] |= 1 << (block % 64);
            } else {
                ov.file.write_all_at(&data[done..done + take], pos).map_err(|e| format!("writing the overlay: {e}"))?;
            }
            done += take;
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), String> {
        match &self.overlay {
            Some(ov) => ov.file.sync_data().map_err(|e| format!("flushing the overlay: {e}")),
            None => Ok(()),
        }
    }
}

/// Runs `arca nbd`.
pub fn run(g: &GlobalOpts, a: &NbdArgs) -> Result<i32> {
    let (spec, subpath) = match a.snapshot.split_once(':') {
        Some((s, p)) => (s, Some(p).filter(|p| !p.is_empty())),
        None => (a.snapshot.as_str(), None),
    };
    if let Some(path) = &a.overlay {
        if std::fs::symlink_metadata(path).is_ok() {
            bail!("the overlay {} already exists: give a new file (the overlay is scratch space)", path.display());
        }
    }
    let mut opened = repo::open(g)?;
    let repo = &mut opened.repo;
    let (id, snap) = super::find_snapshot(repo, spec, &a.filter)?;
    super::load_index_for(repo)?;
    let node = arca_core::image::find_file(repo, &snap, subpath)?;
    let map = ContentMap::new(node.content.clone());
    if map.size() != node.size {
        bail!("the image's blocks add up to {} bytes, not {}: the snapshot is damaged", map.size(), node.size);
    }
    let overlay = match &a.overlay {
        Some(path) => {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(path)
                .with_context(|| format!("creating the overlay {}", path.display()))?;
            file.set_len(map.size()).with_context(|| format!("sizing the overlay {}", path.display()))?;
            let blocks = map.size().div_ceil(OVERLAY_BLOCK);
            Some(Overlay { file, dirty: Mutex::new(vec![0; blocks.div_ceil(64) as usize]) })
        }
        None => None,
    };
    let listener = TcpListener::bind(&a.listen).with_context(|| format!("listening on {}", a.listen))?;
    let addr = listener.local_addr()?;
    let url = format!("nbd://{addr}/{}", a.name);
    let writable = overlay.is_some();
    let export = ImageExport { repo, map, cache: BlobCache::new(a.cache_size as usize), overlay };
    if g.json {
        print_json(&json!({
            "message_type": "listening",
            "address": addr.to_string(),
            "url": url,
            "snapshot_id": id.to_hex(),
            "size": node.size,
            "writable": writable,
        }))?;
    } else {
        println!(
            "serving {} of snapshot {} ({} bytes, {}) on {url}; Ctrl-C stops",
            node.name_lossy(),
            id.short(),
            node.size,
            if writable { "writes go to the overlay" } else { "read-only" }
        );
    }
    // Output is informational: a reader that went away does not stop serving.
    let _ = crate::output::stdout().flush();
    crate::nbd::serve(listener, &a.name, &export).context("serving NBD")?;
    Ok(crate::exit::OK)
}
