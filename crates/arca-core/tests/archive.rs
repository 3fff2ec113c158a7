//! Directories of snapshots as tar and zip streams, and ranged reads of files: read back with
//! independent readers (the `tar` and `zip` crates) and compared with the source bytes.

mod common;

use std::collections::BTreeMap;
use std::io::Read;

use arca_core::archive::{write_archive, ArchiveStats, Format};
use arca_core::backup::{backup, BackupOptions, BackupProgress};
use arca_core::browse::{resolve, ContentReader, Target};
use arca_core::repository::Repository;
use common::*;

/// A backed-up `make_tree` and the snapshot's root tree id.
fn fixture(tmp: &std::path::Path) -> (Repository, arca_core::id::BlobId, std::path::PathBuf) {
    let src = tmp.join("src");
    make_tree(&src);
    let mut repo = init_repo(&tmp.join("repo"));
    let opts = BackupOptions { paths: vec![src.clone()], ..Default::default() };
    let out = backup(&mut repo, &opts, &BackupProgress::default(), None).unwrap();
    let mut repo = open_repo(&tmp.join("repo"));
    repo.load_index().unwrap();
    let (snap, _) = repo.load_snapshot(&out.id).unwrap();
    (repo, snap.tree, src)
}

/// The regular files below `dir`, by path relative to it (UTF-8 names only, as archives show them).
fn source_files(dir: &std::path::Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                stack.push(p);
            } else if m.is_file() {
                let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

fn snapshot_dir_of(src: &std::path::Path, sub: &str) -> String {
    format!("{}/{sub}", src.display())
}

#[test]
fn a_folder_as_zip_holds_every_file_byte_for_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, root, src) = fixture(tmp.path());
    let target = resolve(&repo, &root, &snapshot_dir_of(&src, "")).unwrap();
    let mut zip_bytes = Vec::new();
    let stats = write_archive(&repo, &target, Format::Zip, &mut zip_bytes).unwrap();
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(zip_bytes)).expect("a valid zip");
    let mut found = BTreeMap::new();
    for i in 0..zip.len() {
        let mut f = zip.by_index(i).unwrap();
        if f.is_file() {
            let mut data = Vec::new();
            f.read_to_end(&mut data).unwrap();
            let name = f.name().unwrap().strip_prefix("src/").expect("entries sit under the folder's name").to_string();
            found.insert(name, data);
        }
    }
    let expected = source_files(&src);
    assert_eq!(found.keys().collect::<Vec<_>>(), expected.keys().collect::<Vec<_>>());
    for (name, data) in &expected {
        assert!(found[name] == *data, "{name} differs in the zip");
    }
    assert_eq!(stats.files, expected.len() as u64);
    assert_eq!(stats.skipped, 1, "the fifo cannot go into a zip: {stats:?}");
}

#[test]
fn a_folder_as_tar_holds_files_links_and_metadata() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, root, src) = fixture(tmp.path());
    let target = resolve(&repo, &root, &snapshot_dir_of(&src, "dir")).unwrap();
    let mut tar_bytes = Vec::new();
    let stats = write_archive(&repo, &target, Format::Tar, &mut tar_bytes).unwrap();
    let expected = source_files(&src.join("dir"));
    let bytes = expected.values().map(|d| d.len() as u64).sum();
    assert_eq!(stats, ArchiveStats { files: expected.len() as u64, dirs: 2, bytes, skipped: 0 });
    let mut archive = tar::Archive::new(std::io::Cursor::new(tar_bytes));
    let mut files = BTreeMap::new();
    let mut hard_link = None;
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().to_string_lossy().into_owned();
        match e.header().entry_type() {
            tar::EntryType::Regular => {
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                files.insert(path, data);
            }
            tar::EntryType::Link => hard_link = Some(path),
            _ => {}
        }
    }
    assert_eq!(files["dir/big.bin"], std::fs::read(src.join("dir/big.bin")).unwrap());
    assert_eq!(files["dir/sub/text.txt"], std::fs::read(src.join("dir/sub/text.txt")).unwrap());
    assert!(hard_link.is_some() || files.contains_key("dir/hardlink.txt"));
}

#[test]
fn ranged_reads_start_anywhere() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, root, src) = fixture(tmp.path());
    for (file, offsets) in [
        ("dir/big.bin", vec![0u64, 1, 4095, 16_384, 65_536, 350_001, 699_999, 700_000]),
        ("sparse.img", vec![0, 9_999, 10_000, 2 << 20, (3 << 20) + 5, (3 << 20) + 10_000]),
    ] {
        let original = std::fs::read(src.join(file)).unwrap();
        let Target::Node(_, node) = resolve(&repo, &root, &snapshot_dir_of(&src, file)).unwrap() else {
            panic!("{file} is a node")
        };
        for offset in offsets {
            let mut got = Vec::new();
            ContentReader::starting_at(&repo, &node, offset).read_to_end(&mut got).unwrap();
            assert!(got == original[offset as usize..], "{file} from {offset}: {} bytes", got.len());
        }
    }
}
