//! Shared helpers for engine tests: repositories, generated trees with every metadata kind, and a
//! metadata-aware tree comparison.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arca_core::config::Config;
use arca_core::keys::KdfParams;
use arca_core::repository::Repository;
use arca_store::LocalStore;

pub fn cheap_kdf() -> KdfParams {
    KdfParams { memory_kib: 64, iterations: 1, parallelism: 1 }
}

/// A small-chunk config so tests exercise many chunks and packs with little data.
pub fn small_config() -> Config {
    let mut c = Config::new();
    c.chunker = arca_core::config::ChunkerParams { min_size: 4096, avg_size: 16384, max_size: 65536 };
    c.data_pack_size = 256 * 1024;
    c.meta_pack_size = 64 * 1024;
    c
}

pub fn init_repo(dir: &Path) -> Repository {
    Repository::init(Arc::new(LocalStore::new(dir)), b"pw", cheap_kdf(), small_config()).unwrap()
}

pub fn open_repo(dir: &Path) -> Repository {
    Repository::open(Arc::new(LocalStore::new(dir)), b"pw").unwrap()
}

/// Deterministic pseudo-random bytes.
pub fn bytes(len: usize, mut seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    seed |= 1;
    while out.len() < len {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        out.extend_from_slice(&seed.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn set_times(path: &Path, secs: i64, nanos: i64) {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let t = [libc::timespec { tv_sec: secs, tv_nsec: nanos }, libc::timespec { tv_sec: secs, tv_nsec: nanos }];
    assert_eq!(unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), t.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) }, 0);
}

/// Builds a tree with every kind of entry and metadata the format stores.
pub fn make_tree(root: &Path) {
    std::fs::create_dir_all(root.join("dir/sub")).unwrap();
    std::fs::create_dir_all(root.join("empty")).unwrap();
    std::fs::write(root.join("small.txt"), b"hello arca\n").unwrap();
    std::fs::write(root.join("dir/big.bin"), bytes(700_000, 1)).unwrap();
    let mut text = Vec::new();
    for i in 0..20_000 {
        text.extend_from_slice(format!("line {i} of a compressible file\n").as_bytes());
    }
    std::fs::write(root.join("dir/sub/text.txt"), &text).unwrap();
    std::fs::write(root.join("dir/dup.bin"), bytes(700_000, 1)).unwrap(); // same content: dedup
    std::fs::write(root.join("empty.file"), b"").unwrap();
    // Sparse: data, 3 MiB hole, data.
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::File::create(root.join("sparse.img")).unwrap();
        f.write_all_at(&bytes(10_000, 2), 0).unwrap();
        f.write_all_at(&bytes(10_000, 3), 3 << 20).unwrap();
    }
    std::os::unix::fs::symlink("small.txt", root.join("link")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/target", root.join("dangling")).unwrap();
    std::fs::hard_link(root.join("small.txt"), root.join("dir/hardlink.txt")).unwrap();
    let fifo = std::ffi::CString::new(root.join("fifo").as_os_str().as_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o640) }, 0);
    // A name that is not UTF-8.
    std::fs::write(root.join(OsStr::from_bytes(b"latin1-\xe9t\xe9.txt")), b"bytes").unwrap();
    std::fs::set_permissions(root.join("small.txt"), std::fs::Permissions::from_mode(0o640)).unwrap();
    std::fs::set_permissions(root.join("dir/sub"), std::fs::Permissions::from_mode(0o750)).unwrap();
    let _ = xattr::set(root.join("dir/big.bin"), "user.arca.test", b"value \x00\xff");
    set_times(&root.join("dir/sub/text.txt"), 1_600_000_000, 123_456_789);
    set_times(&root.join("link"), 1_500_000_000, 987_654_321);
    set_times(&root.join("dir/sub"), 1_400_000_000, 5);
}

/// Everything about one entry that a restore must reproduce.
#[derive(Debug, PartialEq, Eq)]
pub struct Entry {
    pub kind: String,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: (i64, i64),
    pub size: u64,
    pub content: Option<Vec<u8>>,
    pub link: Option<Vec<u8>>,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// Index of the first entry with the same inode (hard links), if any.
    pub hardlink_group: Option<String>,
}

/// Describes a tree: relative path → entry. Directory mtimes are compared too.
pub fn describe(root: &Path) -> BTreeMap<Vec<u8>, Entry> {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<(u64, u64), String> = BTreeMap::new();
    let mut stack = vec![PathBuf::from(root)];
    let mut all = Vec::new();
    while let Some(dir) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
        entries.sort();
        for p in entries {
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                stack.push(p.clone());
            }
            all.push((p, m));
        }
    }
    all.sort_by(|a, b| a.0.cmp(&b.0));
    for (p, m) in all {
        let rel = p.strip_prefix(root).unwrap().as_os_str().as_bytes().to_vec();
        let ft = m.file_type();
        let kind = if ft.is_file() {
            "file"
        } else if ft.is_dir() {
            "dir"
        } else if ft.is_symlink() {
            "symlink"
        } else if ft.is_fifo() {
            "fifo"
        } else {
            "other"
        };
        let group = if ft.is_file() && m.nlink() > 1 {
            Some(inodes.entry((m.dev(), m.ino())).or_insert_with(|| String::from_utf8_lossy(&rel).into_owned()).clone())
        } else {
            None
        };
        let mut xattrs: Vec<(Vec<u8>, Vec<u8>)> = xattr::list(&p)
            .map(|l| {
                l.filter(|n| n.as_bytes().starts_with(b"user."))
                    .map(|n| (n.as_bytes().to_vec(), xattr::get(&p, &n).unwrap().unwrap_or_default()))
                    .collect()
            })
            .unwrap_or_default();
        xattrs.sort();
        out.insert(
            rel,
            Entry {
                kind: kind.into(),
                mode: if ft.is_symlink() { 0 } else { m.mode() },
                uid: m.uid(),
                gid: m.gid(),
                mtime: (m.mtime(), m.mtime_nsec()),
                size: if ft.is_file() { m.len() } else { 0 },
                content: if ft.is_file() { Some(std::fs::read(&p).unwrap()) } else { None },
                link: if ft.is_symlink() {
                    Some(std::fs::read_link(&p).unwrap().as_os_str().as_bytes().to_vec())
                } else {
                    None
                },
                xattrs,
                hardlink_group: group,
            },
        );
    }
    out
}

/// Asserts two trees are equal in content and metadata, with a readable diff.
pub fn assert_same_tree(a: &Path, b: &Path) {
    let da = describe(a);
    let db = describe(b);
    let ka: Vec<_> = da.keys().map(|k| String::from_utf8_lossy(k).into_owned()).collect();
    let kb: Vec<_> = db.keys().map(|k| String::from_utf8_lossy(k).into_owned()).collect();
    assert_eq!(ka, kb, "different entries");
    for (k, ea) in &da {
        let eb = &db[k];
        assert_eq!(ea, eb, "entry {} differs", String::from_utf8_lossy(k));
    }
}

/// Allocated bytes of a file (to prove sparseness survives).
pub fn allocated(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().blocks() * 512
}
