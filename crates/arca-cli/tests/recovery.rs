//! End-to-end tests of the recovery services: image backups and restores (compared with
//! `qemu-img compare`), the NBD export, the FUSE mount and restore drills.
//!
//! `qemu-img`/`qemu-io` (Debian `qemu-utils`) are required: CI installs them. Tests needing FUSE
//! or a loop device skip with a loud message when the machine lacks them, unless
//! A missing FUSE is a failure unless ARCA_TEST_ALLOW_MISSING_SERVICES=1.

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command as StdCommand, Stdio};

use assert_cmd::Command;
use serde_json::Value;
use tempfile::TempDir;

const PASSWORD: &str = "recovery test password";

struct Env {
    dir: TempDir,
}

/// Deterministic pseudo-random bytes (xorshift), so that failures reproduce.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

const MIB: u64 = 1 << 20;

impl Env {
    fn new() -> Env {
        let env = Env { dir: tempfile::tempdir().unwrap() };
        env.ok(&["init"]);
        env
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn repo(&self) -> PathBuf {
        self.path("repo")
    }

    fn std_cmd(&self) -> StdCommand {
        let mut c = StdCommand::new(assert_cmd::cargo::cargo_bin("arca"));
        for var in ["ARCA_REPOSITORY", "ARCA_PASSWORD_FILE", "ARCA_HOST", "ARCA_LOG", "RUST_LOG"] {
            c.env_remove(var);
        }
        c.env("ARCA_REPOSITORY", self.repo())
            .env("ARCA_PASSWORD", PASSWORD)
            .env("ARCA_KDF_MEMORY_KIB", "64")
            .env("ARCA_KDF_ITERATIONS", "1");
        c
    }

    fn arca(&self) -> Command {
        Command::from_std(self.std_cmd())
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.arca().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "arca {args:?} failed with {:?}:\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        serde_json::from_str(self.ok(&all).trim()).unwrap()
    }

    /// Runs a command that must fail; returns (exit code, stderr).
    fn fails(&self, args: &[&str]) -> (i32, String) {
        let out = self.arca().args(args).output().unwrap();
        assert!(!out.status.success(), "arca {args:?} should have failed:\n{}", String::from_utf8_lossy(&out.stdout));
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
    }

    fn snapshot_count(&self) -> usize {
        self.json(&["snapshots"]).as_array().unwrap().len()
    }

    /// The data packs, newest last.
    fn data_packs(&self) -> Vec<PathBuf> {
        let mut packs = Vec::new();
        for d in fs::read_dir(self.repo().join("data")).unwrap() {
            for f in fs::read_dir(d.unwrap().path()).unwrap() {
                packs.push(f.unwrap().path());
            }
        }
        packs.sort_by_key(|p| fs::metadata(p).unwrap().modified().unwrap());
        packs
    }
}

/// A raw image with data, text, and large all-zero regions (sparse on disk).
fn make_image(path: &Path, size: u64, seed: u64) {
    let f = fs::File::create(path).unwrap();
    f.set_len(size).unwrap();
    f.write_all_at(&noise(seed, 3 * MIB as usize), 2 * MIB).unwrap();
    f.write_all_at(&b"the same line again\n".repeat(100_000), size / 2).unwrap();
    f.write_all_at(&noise(seed + 1, 100_000), size - 200_000).unwrap();
}

fn qemu_compare(a: &str, b: &str) -> (bool, String) {
    let out = StdCommand::new("qemu-img").args(["compare", a, b]).output().expect("qemu-img (qemu-utils) is needed");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

fn qemu_img(args: &[&str]) {
    let out = StdCommand::new("qemu-img").args(args).output().expect("qemu-img (qemu-utils) is needed");
    assert!(out.status.success(), "qemu-img {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn raw_image_round_trip_is_sparse_and_verified() {
    let env = Env::new();
    let img = env.path("disk.raw");
    make_image(&img, 24 * MIB, 1);
    let v = env.json(&["backup", "--image", s(&img), "--chunk-size", "1M"]);
    assert_eq!(v["summary"]["total_bytes"], 24 * MIB);
    // 3 MiB of noise, ~2 MiB of text over 2-3 blocks, 100 kB of noise over 1-2 blocks: the 24 MiB
    // disk needs at most 8 one-MiB blocks; the rest are holes.
    let added = v["summary"]["data_added"].as_u64().unwrap();
    assert!(added <= 8 * MIB + 64 * 1024, "stored {added} bytes for a mostly empty disk");

    let out = env.path("restored.raw");
    let r = env.json(&["restore", "latest", "--image", s(&out), "--verify"]);
    assert_eq!(r["verified"], true);
    let (same, msg) = qemu_compare(s(&img), s(&out));
    assert!(same, "{msg}");
    let allocated = fs::metadata(&out).unwrap().blocks() * 512;
    assert!(allocated <= 8 * MIB, "restored file takes {allocated} bytes on disk: holes were written");
    // Image snapshots are ordinary snapshots: check reads and verifies them like any other.
    env.ok(&["check", "--read-data"]);

    // Restoring over an existing, fully written file still gives the image (holes included).
    fs::write(&out, noise(9, 30 * MIB as usize)).unwrap();
    env.ok(&["restore", "latest", "--image", s(&out), "--verify"]);
    let (same, msg) = qemu_compare(s(&img), s(&out));
    assert!(same, "{msg}");
    assert_eq!(fs::metadata(&out).unwrap().len(), 24 * MIB);
}

#[test]
fn qcow2_images_round_trip() {
    let env = Env::new();
    let raw = env.path("disk.raw");
    make_image(&raw, 20 * MIB, 2);
    for (name, extra) in
        [("plain.qcow2", &[][..]), ("compressed.qcow2", &["-c"][..]), ("v2.qcow2", &["-o", "compat=0.10"][..])]
    {
        let q = env.path(name);
        let mut args = vec!["convert", "-f", "raw", "-O", "qcow2"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[s(&raw), s(&q)]);
        qemu_img(&args);
        let v = env.json(&["backup", "--image", s(&q)]);
        assert_eq!(v["summary"]["total_bytes"], 20 * MIB, "{name}: the guest size is backed up, not the file");
        let id = v["id"].as_str().unwrap().to_string();
        let out = env.path(&format!("{name}.restored"));
        env.ok(&["restore", &id, "--image", s(&out), "--verify"]);
        let (same, msg) = qemu_compare(s(&raw), s(&out));
        assert!(same, "{name}: {msg}");
        let (same, msg) = qemu_compare(s(&q), s(&out));
        assert!(same, "{name} vs restore: {msg}");
    }
    // The same disk in three containers deduplicates to the first one's blocks.
    let stats: Vec<u64> = env
        .json(&["snapshots"])
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["summary"]["data_added"].as_u64().unwrap())
        .collect();
    assert!(stats[1..].iter().all(|&a| a < 64 * 1024), "later backups stored data again: {stats:?}");
}

#[test]
fn one_percent_changed_stores_about_one_percent() {
    let env = Env::new();
    let img = env.path("disk.raw");
    // 400 blocks of 64 KiB, all data.
    let block = 64 * 1024u64;
    fs::write(&img, noise(3, (400 * block) as usize)).unwrap();
    let first = env.json(&["backup", "--image", s(&img), "--chunk-size", "64k"]);
    assert!(first["summary"]["data_added"].as_u64().unwrap() >= 400 * block);

    let same = env.json(&["backup", "--image", s(&img), "--chunk-size", "64k"]);
    let added = same["summary"]["data_added"].as_u64().unwrap();
    assert!(added < 16 * 1024, "an unchanged disk added {added} bytes");

    // Change 4 blocks (1%): a few bytes in each.
    let f = fs::OpenOptions::new().write(true).open(&img).unwrap();
    for b in [7u64, 99, 200, 399] {
        f.write_all_at(b"changed!", b * block + 100).unwrap();
    }
    drop(f);
    let changed = env.json(&["backup", "--image", s(&img), "--chunk-size", "64k"]);
    let added = changed["summary"]["data_added"].as_u64().unwrap();
    assert!(added >= 4 * block, "only {added} bytes stored for 4 changed blocks");
    assert!(added <= 4 * block + 16 * 1024, "{added} bytes stored for 4 changed 64 KiB blocks (1%)");
    let out = env.path("restored.raw");
    env.ok(&["restore", "latest", "--image", s(&out), "--verify"]);
    assert_eq!(fs::read(&out).unwrap(), fs::read(&img).unwrap());
}

#[test]
fn the_block_size_defaults_small_and_follows_the_previous_backup() {
    let env = Env::new();
    let img = env.path("disk.raw");
    fs::write(&img, noise(5, (4 * MIB) as usize)).unwrap();
    let first = env.json(&["backup", "--image", s(&img)]);
    assert_eq!(first["chunk_size"], 64 * 1024, "a first backup of a small disk takes 64 KiB blocks");
    // Another disk whose chain began with 1 MiB blocks keeps them without being told.
    let other = env.path("other.raw");
    fs::write(&other, noise(6, (4 * MIB) as usize)).unwrap();
    assert_eq!(env.json(&["backup", "--image", s(&other), "--chunk-size", "1M"])["chunk_size"], MIB);
    fs::OpenOptions::new().write(true).open(&other).unwrap().write_all_at(b"changed", 2 * MIB + 5).unwrap();
    let next = env.json(&["backup", "--image", s(&other)]);
    assert_eq!(next["chunk_size"], MIB, "the parent's block size was not kept");
    let added = next["summary"]["data_added"].as_u64().unwrap();
    assert!(added <= MIB + 16 * 1024, "one changed block stored {added} bytes");
    // And the first disk's second backup stores one 64 KiB block for a small change.
    fs::OpenOptions::new().write(true).open(&img).unwrap().write_all_at(b"changed", MIB).unwrap();
    let next = env.json(&["backup", "--image", s(&img)]);
    assert_eq!(next["chunk_size"], 64 * 1024);
    assert!(next["summary"]["data_added"].as_u64().unwrap() <= 64 * 1024 + 16 * 1024);
    let out = env.path("restored.raw");
    env.ok(&["restore", "latest", "--image", s(&out), "--verify"]);
    assert_eq!(fs::read(&out).unwrap(), fs::read(&img).unwrap());
}

#[test]
fn bad_image_input_is_refused_before_anything_is_stored() {
    let env = Env::new();
    let raw = env.path("disk.raw");
    make_image(&raw, 4 * MIB, 4);
    let (_, err) = env.fails(&["backup", "--image", s(&raw), "--image-format", "qcow2"]);
    assert!(err.contains("not a qcow2 image"), "{err}");
    let (_, err) = env.fails(&["backup", "--image", s(&env.repo())]);
    assert!(err.contains("neither a regular file nor a block device"), "{err}");
    let vmdk = env.path("disk.vmdk");
    qemu_img(&["convert", "-f", "raw", "-O", "vmdk", s(&raw), s(&vmdk)]);
    let (_, err) = env.fails(&["backup", "--image", s(&vmdk)]);
    assert!(err.contains("VMDK"), "{err}");
    let with_backing = env.path("overlay.qcow2");
    qemu_img(&["create", "-f", "qcow2", "-b", s(&raw), "-F", "raw", s(&with_backing)]);
    let (_, err) = env.fails(&["backup", "--image", s(&with_backing)]);
    assert!(err.contains("backing file"), "{err}");
    let (_, err) = env.fails(&["backup", "--image", s(&raw), "--chunk-size", "1k"]);
    assert!(err.contains("out of range"), "{err}");
    assert_eq!(env.snapshot_count(), 0);
    assert!(env.data_packs().is_empty());
}

/// A loop device of `size` bytes over a file, detached on drop; None (with a loud message) where
/// loop devices cannot be made.
struct Loop(String);
impl Loop {
    fn new(file: &Path, size: u64) -> Option<Loop> {
        fs::File::create(file).unwrap().set_len(size).unwrap();
        match StdCommand::new("losetup").args(["-f", "--show", s(file)]).output() {
            Ok(o) if o.status.success() => Some(Loop(String::from_utf8_lossy(&o.stdout).trim().to_string())),
            other => {
                eprintln!("\n*** SKIPPED: cannot make a loop device ({other:?}); block-device restore untested ***\n");
                None
            }
        }
    }
}
impl Drop for Loop {
    fn drop(&mut self) {
        let _ = StdCommand::new("losetup").args(["-d", &self.0]).status();
    }
}

#[test]
fn restore_to_block_device_checks_its_size_first() {
    let env = Env::new();
    let img = env.path("disk.raw");
    make_image(&img, 8 * MIB, 5);
    env.ok(&["backup", "--image", s(&img)]);
    let Some(small) = Loop::new(&env.path("small.backing"), 4 * MIB) else { return };
    fs::OpenOptions::new().write(true).open(&small.0).unwrap().write_all_at(&[0xee; 4096], 0).unwrap();
    let (_, err) = env.fails(&["restore", "latest", "--image", &small.0]);
    assert!(err.contains("nothing was written"), "{err}");
    let mut head = [0u8; 4096];
    fs::File::open(&small.0).unwrap().read_exact_at(&mut head, 0).unwrap();
    assert_eq!(head, [0xee; 4096], "the too-small device was written to");

    let Some(big) = Loop::new(&env.path("big.backing"), 10 * MIB) else { return };
    // Junk where the image has zeros: a device gets its zero blocks written.
    fs::OpenOptions::new().write(true).open(&big.0).unwrap().write_all_at(&noise(6, MIB as usize), 6 * MIB).unwrap();
    let r = env.json(&["restore", "latest", "--image", &big.0, "--verify"]);
    assert_eq!(r["device"], true);
    let mut dev = vec![0u8; 8 * MIB as usize];
    fs::File::open(&big.0).unwrap().read_exact_at(&mut dev, 0).unwrap();
    assert!(dev == fs::read(&img).unwrap(), "the device does not hold the image");
}

/// `arca nbd` running in the background, killed on drop.
struct Nbd {
    child: Child,
    url: String,
    log: PathBuf,
}

impl Nbd {
    fn start(env: &Env, args: &[&str]) -> Nbd {
        let log = env.path(&format!("nbd-{}.log", rand_suffix()));
        let mut cmd = env.std_cmd();
        cmd.args(["--json", "nbd", "--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(fs::File::create(&log).unwrap());
        let mut child = cmd.spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let v: Value = serde_json::from_str(line.trim())
            .unwrap_or_else(|_| panic!("arca nbd did not start: {line:?} {}", fs::read_to_string(&log).unwrap()));
        let addr = v["address"].as_str().unwrap();
        Nbd { child, url: format!("nbd://{addr}"), log }
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Nbd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
}

/// Runs qemu-io commands against `url`; `-r` opens read-only (a read-only export refuses a
/// read-write open).
fn qemu_io(url: &str, read_only: bool, cmds: &[&str]) -> (bool, String) {
    let mut c = StdCommand::new("qemu-io");
    c.args(["-f", "raw"]);
    if read_only {
        c.arg("-r");
    }
    for cmd in cmds {
        c.args(["-c", cmd]);
    }
    let out = c.arg(url).output().expect("qemu-io (qemu-utils) is needed");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success() && !text.contains("failed") && !text.contains("Pattern verification"), text)
}

#[test]
fn nbd_export_is_identical_to_the_image() {
    let env = Env::new();
    let img = env.path("disk.raw");
    make_image(&img, 16 * MIB, 7);
    let q = env.path("disk.qcow2");
    qemu_img(&["convert", "-f", "raw", "-O", "qcow2", s(&img), s(&q)]);
    env.ok(&["backup", "--image", s(&q), "--chunk-size", "1M"]);
    let nbd = Nbd::start(&env, &["latest", "--cache-size", "2M"]);
    let (same, msg) = qemu_compare(s(&img), &nbd.url);
    assert!(same, "{msg}\n{}", nbd.log());
    // A second client, while the first cache content was evicted many times over.
    let (same, msg) = qemu_compare(s(&q), &nbd.url);
    assert!(same, "{msg}\n{}", nbd.log());
    // Writes are refused without an overlay.
    let (ok, text) = qemu_io(&nbd.url, false, &["write -P 0xab 0 4k"]);
    assert!(!ok, "a write to a read-only export succeeded: {text}");
}

/// `qemu-img map --output=json` of an export: (start, length, data) of each run, merged.
fn qemu_map(url: &str) -> Vec<(u64, u64, bool)> {
    let out = StdCommand::new("qemu-img")
        .args(["map", "--output=json", "-f", "raw", url])
        .output()
        .expect("qemu-img (qemu-utils) is needed");
    assert!(out.status.success(), "qemu-img map: {}", String::from_utf8_lossy(&out.stderr));
    let entries: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut runs: Vec<(u64, u64, bool)> = Vec::new();
    for e in entries.as_array().unwrap() {
        let (start, length, data) =
            (e["start"].as_u64().unwrap(), e["length"].as_u64().unwrap(), e["data"].as_bool().unwrap());
        match runs.last_mut() {
            Some(last) if last.2 == data && last.0 + last.1 == start => last.1 += length,
            _ => runs.push((start, length, data)),
        }
    }
    runs
}

#[test]
fn nbd_answers_block_status_so_holes_are_not_read() {
    let env = Env::new();
    let img = env.path("disk.raw");
    // Data at 2-5 MiB, 8-10 MiB and in the last MiB; everything else zeros.
    make_image(&img, 16 * MIB, 9);
    env.ok(&["backup", "--image", s(&img), "--chunk-size", "1M"]);
    let nbd = Nbd::start(&env, &["latest"]);
    let expected = vec![
        (0, 2 * MIB, false),
        (2 * MIB, 3 * MIB, true),
        (5 * MIB, 3 * MIB, false),
        (8 * MIB, 2 * MIB, true),
        (10 * MIB, 5 * MIB, false),
        (15 * MIB, MIB, true),
    ];
    assert_eq!(qemu_map(&nbd.url), expected, "{}", nbd.log());
    let (same, msg) = qemu_compare(s(&img), &nbd.url);
    assert!(same, "{msg}\n{}", nbd.log());
    drop(nbd);

    // With an overlay, a block written into a hole is data.
    let overlay = env.path("scratch.img");
    let nbd = Nbd::start(&env, &["latest", "--overlay", s(&overlay)]);
    let (ok, text) = qemu_io(&nbd.url, false, &["write -P 0xab 64k 4k"]);
    assert!(ok, "{text}\n{}", nbd.log());
    let map = qemu_map(&nbd.url);
    assert_eq!(
        map[..3],
        [(0, 64 * 1024, false), (64 * 1024, 64 * 1024, true), (128 * 1024, 2 * MIB - 128 * 1024, false)]
    );
    assert_eq!(map[3..], expected[1..]);
}

#[test]
fn nbd_overlay_takes_writes_and_leaves_the_backup_alone() {
    let env = Env::new();
    let img = env.path("disk.raw");
    make_image(&img, 8 * MIB, 8);
    env.ok(&["backup", "--image", s(&img)]);
    let overlay = env.path("scratch.img");
    let nbd = Nbd::start(&env, &["latest", "--overlay", s(&overlay)]);
    // A partial block write (copy-on-write of its 64 KiB block), read back, and its untouched
    // neighbour still reads as the backup.
    let (ok, text) = qemu_io(
        &nbd.url,
        false,
        &[
            "write -P 0xab 2100k 3k",
            "read -P 0xab 2100k 3k",
            "read -P 0x00 0 64k",
            "write -P 0xcd 7m 1m",
            "read -P 0xcd 7m 1m",
        ],
    );
    assert!(ok, "{text}\n{}", nbd.log());
    let (same, _) = qemu_compare(s(&img), &nbd.url);
    assert!(!same, "the export does not show the writes");
    drop(nbd);
    let out = env.path("restored.raw");
    env.ok(&["restore", "latest", "--image", s(&out), "--verify"]);
    let (same, msg) = qemu_compare(s(&img), s(&out));
    assert!(same, "the backup changed: {msg}");
    assert!(overlay.exists());
    let (_, err) = env.fails(&["nbd", "latest", "--overlay", s(&overlay), "--listen", "127.0.0.1:0"]);
    assert!(err.contains("already exists"), "{err}");
}

#[test]
fn nbd_damaged_pack_fails_only_its_reads() {
    let env = Env::new();
    let img = env.path("disk.raw");
    fs::write(&img, noise(10, 8 * MIB as usize)).unwrap();
    env.ok(&["backup", "--image", s(&img), "--chunk-size", "1M"]);
    let before = env.data_packs();
    // Change block 5: the second backup stores just that block, in a pack of its own.
    fs::OpenOptions::new().write(true).open(&img).unwrap().write_all_at(&noise(11, 4096), 5 * MIB).unwrap();
    env.ok(&["backup", "--image", s(&img), "--chunk-size", "1M"]);
    let after = env.data_packs();
    let new: Vec<&PathBuf> = after.iter().filter(|p| !before.contains(p)).collect();
    assert_eq!(new.len(), 1, "expected one new pack");
    let pack = new[0];
    let mut bytes = fs::read(pack).unwrap();
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 64] {
        *b ^= 0x5a;
    }
    fs::write(pack, &bytes).unwrap();
    let pack_name = pack.file_name().unwrap().to_str().unwrap().to_string();

    let nbd = Nbd::start(&env, &["latest"]);
    let (ok, text) = qemu_io(&nbd.url, true, &["read 5m 64k"]);
    assert!(!ok && text.contains("Input/output error"), "a read from the damaged pack did not fail with EIO: {text}");
    let (ok, text) = qemu_io(&nbd.url, true, &["read 0 5m", "read 6m 2m"]);
    assert!(ok, "reads from intact packs failed after the damaged one: {text}\n{}", nbd.log());
    let log = nbd.log();
    assert!(log.contains(&pack_name), "the log does not name the damaged pack {pack_name}:\n{log}");
}

#[test]
fn nbd_handshake_refuses_a_missing_image_path() {
    let env = Env::new();
    let img = env.path("disk.raw");
    make_image(&img, 4 * MIB, 12);
    env.ok(&["backup", "--image", s(&img)]);
    let (_, err) = env.fails(&["nbd", "latest:/no/such/file", "--listen", "127.0.0.1:0"]);
    assert!(err.contains("not in the snapshot"), "{err}");
}

// ---- arca mount ------------------------------------------------------------------------------

mod cluster;

/// Whether FUSE mounts can be made here; a loud skip otherwise, a failure under
/// ARCA_TEST_ALLOW_MISSING_SERVICES=1 skips instead of failing.
fn fuse_available() -> bool {
    let has_fusermount = StdCommand::new("fusermount3").arg("-V").output().is_ok_and(|o| o.status.success());
    let why = if !Path::new("/dev/fuse").exists() {
        "/dev/fuse is missing"
    } else if !has_fusermount {
        "fusermount3 is missing (Debian package fuse3)"
    } else {
        return true;
    };
    if std::env::var("ARCA_TEST_ALLOW_MISSING_SERVICES").as_deref() != Ok("1") {
        panic!("FUSE tests need FUSE but {why} (set ARCA_TEST_ALLOW_MISSING_SERVICES=1 to skip)");
    }
    eprintln!("\n*** SKIPPED: FUSE mount test: {why} ***\n");
    false
}

/// `arca mount` running in the background; stopped with SIGTERM on drop.
struct Mounted {
    child: Option<Child>,
    point: PathBuf,
    log: PathBuf,
}

fn mounted(point: &Path) -> bool {
    fs::read_to_string("/proc/mounts").unwrap().lines().any(|l| l.split(' ').nth(1) == Some(point.to_str().unwrap()))
}

impl Mounted {
    /// Starts `cmd` (an `arca … mount …` command) and waits for its "mounted" line.
    fn start(mut cmd: StdCommand, point: &Path, log: PathBuf) -> Mounted {
        cmd.stdout(Stdio::piped()).stderr(fs::File::create(&log).unwrap());
        let mut child = cmd.spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let v: Value = serde_json::from_str(line.trim()).unwrap_or_else(|_| {
            let _ = child.wait();
            panic!("arca mount did not start: {line:?}\n{}", fs::read_to_string(&log).unwrap())
        });
        assert_eq!(v["message_type"], "mounted");
        assert!(mounted(point), "{} is not in /proc/mounts", point.display());
        Mounted { child: Some(child), point: point.to_path_buf(), log }
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, as systemd or Ctrl-C would stop it; returns the exit code.
    fn stop(&mut self) -> i32 {
        let mut child = self.child.take().unwrap();
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        child.wait().unwrap().code().unwrap_or(-1)
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
        if mounted(&self.point) {
            let _ = StdCommand::new("fusermount3").args(["-u", "-z", s(&self.point)]).status();
        }
    }
}

fn make_tree(root: &Path) {
    fs::create_dir_all(root.join("sub/deeper")).unwrap();
    fs::write(root.join("a.txt"), b"hello, mount\n").unwrap();
    fs::write(root.join("sub/big.bin"), noise(20, 3 * MIB as usize + 12345)).unwrap();
    fs::write(root.join("sub/deeper/c.txt"), "x".repeat(10_000)).unwrap();
    fs::write(root.join("empty"), b"").unwrap();
    std::os::unix::fs::symlink("a.txt", root.join("link")).unwrap();
}

#[test]
fn mount_lists_snapshots_and_reads_files() {
    if !fuse_available() {
        return;
    }
    let env = Env::new();
    let src = env.path("src");
    make_tree(&src);
    env.ok(&["backup", s(&src), "--host", "laptop"]);
    let old_a = fs::read(src.join("a.txt")).unwrap();
    fs::write(src.join("a.txt"), b"changed after the first backup\n").unwrap();
    env.ok(&["backup", s(&src), "--host", "laptop"]);
    let snaps = env.json(&["snapshots"]);
    let ids: Vec<String> =
        snaps.as_array().unwrap().iter().map(|s| s["short_id"].as_str().unwrap().to_string()).collect();

    let point = env.path("mnt");
    fs::create_dir(&point).unwrap();
    // The repository as the first argument (not from the environment).
    let mut cmd = env.std_cmd();
    cmd.env_remove("ARCA_REPOSITORY").args(["--json", "mount", s(&env.repo()), s(&point)]);
    let mut m = Mounted::start(cmd, &point, env.path("mount.log"));

    let mut listed: Vec<String> =
        fs::read_dir(point.join("snapshots")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    listed.sort();
    let mut expected = ids.clone();
    expected.push("latest".into());
    expected.sort();
    assert_eq!(listed, expected);
    assert_eq!(fs::read_link(point.join("snapshots/latest")).unwrap(), PathBuf::from(&ids[1]));
    let host_dir = point.join("hosts/laptop");
    assert_eq!(fs::read_dir(&host_dir).unwrap().count(), 3, "two times and latest");

    let inside = |snap: &str| point.join("snapshots").join(snap).join(src.strip_prefix("/").unwrap());
    for rel in ["sub/big.bin", "sub/deeper/c.txt", "empty", "a.txt"] {
        assert!(fs::read(inside("latest").join(rel)).unwrap() == fs::read(src.join(rel)).unwrap(), "{rel} differs");
    }
    assert_eq!(fs::read(inside(&ids[0]).join("a.txt")).unwrap(), old_a);
    // The same through hosts/laptop/latest.
    let via_host = host_dir.join("latest").join(src.strip_prefix("/").unwrap()).join("sub/big.bin");
    assert!(fs::read(via_host).unwrap() == fs::read(src.join("sub/big.bin")).unwrap());
    assert_eq!(fs::read_link(inside("latest").join("link")).unwrap(), PathBuf::from("a.txt"));
    let meta = fs::metadata(inside("latest").join("sub/big.bin")).unwrap();
    assert_eq!(meta.len(), 3 * MIB + 12345);
    assert_eq!(meta.mtime(), fs::metadata(src.join("sub/big.bin")).unwrap().mtime());
    // Read-only.
    assert!(fs::write(inside("latest").join("new"), b"x").is_err());

    // A second mount on the same point is refused before anything happens.
    let (_, err) = env.fails(&["mount", s(&point)]);
    assert!(err.contains("busy"), "{err}");

    assert_eq!(m.stop(), 0, "{}", m.log());
    assert!(!mounted(&point), "still mounted after SIGTERM");
    assert!(m.log().is_empty() || !m.log().contains("ERROR"), "{}", m.log());
}

#[test]
fn mount_refuses_missing_and_non_empty_mount_points() {
    let env = Env::new();
    let (_, err) = env.fails(&["mount", s(&env.path("nowhere"))]);
    assert!(err.contains("does not exist"), "{err}");
    let full = env.path("full");
    fs::create_dir(&full).unwrap();
    fs::write(full.join("x"), b"x").unwrap();
    let (_, err) = env.fails(&["mount", s(&full)]);
    assert!(err.contains("busy") && err.contains("not empty"), "{err}");
}

#[test]
fn mount_damaged_pack_fails_only_its_files() {
    if !fuse_available() {
        return;
    }
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("good.bin"), noise(30, 2 * MIB as usize)).unwrap();
    env.ok(&["backup", s(&src)]);
    let before = env.data_packs();
    fs::write(src.join("bad.bin"), noise(31, 2 * MIB as usize)).unwrap();
    env.ok(&["backup", s(&src)]);
    let new: Vec<PathBuf> = env.data_packs().into_iter().filter(|p| !before.contains(p)).collect();
    assert_eq!(new.len(), 1);
    let mut bytes = fs::read(&new[0]).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    fs::write(&new[0], &bytes).unwrap();

    let point = env.path("mnt");
    fs::create_dir(&point).unwrap();
    let mut cmd = env.std_cmd();
    cmd.args(["--json", "mount", s(&point)]);
    let mut m = Mounted::start(cmd, &point, env.path("mount.log"));
    let dir = point.join("snapshots/latest").join(src.strip_prefix("/").unwrap());
    let err = fs::read(dir.join("bad.bin")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(5), "expected EIO, got {err}");
    assert!(fs::read(dir.join("good.bin")).unwrap() == fs::read(src.join("good.bin")).unwrap());
    assert_eq!(m.stop(), 0);
    let pack_name = new[0].file_name().unwrap().to_str().unwrap().to_string();
    assert!(m.log().contains(&pack_name), "the log does not name the damaged pack:\n{}", m.log());
}

#[test]
fn mount_reads_a_repository_on_an_arca_server() {
    if !fuse_available() {
        return;
    }
    let c = cluster::Cluster::start(cluster::Shape::Embedded);
    let dev = c.acme_device.clone();
    c.ok("acme", &dev, &["init"]);
    let src = c.path("src");
    make_tree(&src);
    c.ok("acme", &dev, &["backup", s(&src)]);
    let point = c.path("mnt");
    fs::create_dir(&point).unwrap();
    let mut cmd = StdCommand::new(cluster::arca_bin());
    cmd.env("ARCA_PASSWORD", cluster::PASSWORD)
        .env("ARCA_TOKEN", &dev)
        .env_remove("ARCA_REPOSITORY")
        .env_remove("ARCA_LOG")
        .args(["--json", "mount", &c.repo_url("acme"), s(&point)]);
    let mut m = Mounted::start(cmd, &point, c.path("mount.log"));
    let dir = point.join("snapshots/latest").join(src.strip_prefix("/").unwrap());
    assert!(fs::read(dir.join("sub/big.bin")).unwrap() == fs::read(src.join("sub/big.bin")).unwrap());
    assert_eq!(fs::read(dir.join("a.txt")).unwrap(), b"hello, mount\n");
    assert_eq!(m.stop(), 0, "{}", m.log());
}

// ---- arca drill ------------------------------------------------------------------------------

#[test]
fn drills_prove_a_snapshot_and_detect_an_injected_corruption() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(src.join("d")).unwrap();
    for i in 0..6u64 {
        fs::write(src.join(format!("d/f{i}.bin")), noise(40 + i, 300_000 + i as usize * 1000)).unwrap();
    }
    fs::write(src.join("small.txt"), b"small\n").unwrap();
    let sparse = fs::File::create(src.join("sparse")).unwrap();
    sparse.set_len(8 * MIB).unwrap();
    sparse.write_all_at(b"tail", 8 * MIB - 4).unwrap();
    env.ok(&["backup", s(&src)]);
    let scratch = env.path("scratch");
    fs::create_dir(&scratch).unwrap();

    let whole = env.json(&["drill", "--scratch", s(&scratch)]);
    assert_eq!(whole["passed"], true, "{whole}");
    assert_eq!(whole["whole_snapshot"], true);
    assert_eq!(whole["files_in_snapshot"], 8);
    assert_eq!(whole["files_verified"], 8);
    assert!(whole["restore_bytes_per_second"].as_f64().unwrap() > 0.0);
    assert!(whole["estimated_full_restore_seconds"].as_f64().unwrap() > 0.0);
    assert_eq!(fs::read_dir(&scratch).unwrap().count(), 0, "the scratch files were left behind");

    // A sample is repeatable by its seed.
    let a = env.json(&["drill", "--sample", "3", "--seed", "42", "--scratch", s(&scratch), "--keep"]);
    assert_eq!(a["files_restored"], 3);
    assert_eq!(a["whole_snapshot"], false);
    assert_eq!(a["passed"], true);
    let kept = PathBuf::from(a["kept"].as_str().unwrap());
    assert_eq!(fs::read_dir(&kept).unwrap().count(), 3);
    let b = env.json(&["drill", "--sample", "3", "--seed", "42", "--scratch", s(&scratch)]);
    assert_eq!(a["bytes_restored"], b["bytes_restored"]);

    // Flip bytes in the middle of every data pack: the drill must fail, say which files, and
    // name the pack.
    let packs = env.data_packs();
    assert!(!packs.is_empty());
    for p in &packs {
        let mut bytes = fs::read(p).unwrap();
        let mid = bytes.len() / 2;
        for b in &mut bytes[mid..mid + 16] {
            *b ^= 0xff;
        }
        fs::write(p, &bytes).unwrap();
    }
    let out = env.arca().args(["--json", "drill", "--scratch", s(&scratch)]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "a drill over a corrupted pack did not fail");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["passed"], false);
    let failures = v["failures"].as_array().unwrap();
    assert!(!failures.is_empty());
    let all = serde_json::to_string(failures).unwrap();
    let named = packs.iter().any(|p| all.contains(p.file_name().unwrap().to_str().unwrap()));
    assert!(named, "no failure names a damaged pack: {all}");
    assert!((v["files_verified"].as_u64().unwrap() as usize) + failures.len() == 8);
    assert!(String::from_utf8_lossy(&out.stderr).contains("drill FAILED"));
}

// ---- restore options -------------------------------------------------------------------------

/// Every regular file below `root`, relative, with its bytes.
fn tree_files(root: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let m = fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                stack.push(p);
            } else {
                let bytes = if m.is_file() { fs::read(&p).unwrap() } else { Vec::new() };
                out.insert(p.strip_prefix(root).unwrap().to_path_buf(), bytes);
            }
        }
    }
    out
}

#[test]
fn restore_delete_makes_the_target_match_the_snapshot() {
    let env = Env::new();
    let src = env.path("src");
    make_tree(&src);
    env.ok(&["backup", s(&src)]);
    let target = env.path("target");
    let spec = format!("latest:{}", s(&src));
    env.ok(&["restore", &spec, "--target", s(&target)]);
    // Things the snapshot does not have, at several depths, and one the user excludes.
    fs::write(target.join("extra.txt"), b"x").unwrap();
    fs::create_dir_all(target.join("extra-dir/deep")).unwrap();
    fs::write(target.join("extra-dir/deep/f"), b"x").unwrap();
    fs::write(target.join("sub/deeper/stray"), b"x").unwrap();
    fs::write(target.join("sub/keep.log"), b"mine").unwrap();

    let dry = env.json(&["restore", &spec, "--target", s(&target), "--delete", "--exclude", "*.log", "--dry-run"]);
    assert_eq!(dry["deleted"], 3, "{dry}");
    assert!(target.join("extra.txt").exists(), "a dry run deleted something");

    let r = env.json(&["restore", &spec, "--target", s(&target), "--delete", "--exclude", "*.log"]);
    assert_eq!(r["deleted"], 3, "{r}");
    assert!(!target.join("extra.txt").exists() && !target.join("extra-dir").exists());
    assert!(!target.join("sub/deeper/stray").exists());
    assert_eq!(fs::read(target.join("sub/keep.log")).unwrap(), b"mine", "an excluded file was deleted");
    fs::remove_file(target.join("sub/keep.log")).unwrap();
    assert!(tree_files(&target) == tree_files(&src), "the target does not match the snapshot");

    // Restoring one file with --delete leaves the rest of the directory alone.
    let one = env.path("one");
    fs::create_dir(&one).unwrap();
    fs::write(one.join("unrelated"), b"keep me").unwrap();
    env.ok(&["restore", &format!("latest:{}/a.txt", s(&src)), "--target", s(&one), "--delete"]);
    assert!(one.join("unrelated").exists() && one.join("a.txt").exists());
}

#[test]
fn an_interrupted_throttled_restore_resumes_where_it_stopped() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("big.bin"), noise(50, 6 * MIB as usize)).unwrap();
    fs::write(src.join("small.txt"), b"small").unwrap();
    env.ok(&["backup", s(&src)]);
    let target = env.path("target");
    let spec = format!("latest:{}", s(&src));

    // 6 MiB at 1 MiB/s takes at least 6 s: stop it (SIGKILL, no chance to clean up) once some
    // data is on disk.
    let mut child = env
        .std_cmd()
        .args(["restore", &spec, "--target", s(&target), "--limit-rate", "1M"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let big = target.join("big.bin");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while fs::metadata(&big).map(|m| m.blocks()).unwrap_or(0) == 0 {
        assert!(child.try_wait().unwrap().is_none(), "the throttled restore finished before it was interrupted");
        assert!(std::time::Instant::now() < deadline, "no data was written in 2 minutes");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let partial = fs::metadata(&big).unwrap().blocks() * 512;
    assert!(partial > 0 && fs::read(&big).unwrap() != fs::read(src.join("big.bin")).unwrap());

    let r = env.json(&["restore", &spec, "--target", s(&target), "--verify"]);
    let written = r["bytes_written"].as_u64().unwrap();
    assert!(written < 6 * MIB, "the resumed restore rewrote everything ({written} bytes)");
    // small.txt was finished before the interruption: skipped (size and mtime match), not
    // rewritten; big.bin was completed and verified.
    assert_eq!(r["files_verified"].as_u64().unwrap() + r["files_skipped"].as_u64().unwrap(), 2, "{r}");
    assert!(tree_files(&target) == tree_files(&src));
    // Complete now: a third run writes nothing.
    let again = env.json(&["restore", &spec, "--target", s(&target)]);
    assert_eq!(again["bytes_written"], 0);
}

#[test]
fn a_drill_of_many_files_needs_few_descriptors() {
    use std::os::unix::process::CommandExt;
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    for i in 0..600u64 {
        fs::write(src.join(format!("f{i:04}.txt")), format!("file {i}\n")).unwrap();
    }
    env.ok(&["backup", s(&src)]);
    let scratch = env.path("scratch");
    fs::create_dir(&scratch).unwrap();
    // 600 files under a limit of 128 open descriptors: each file is closed once written.
    let mut c = env.std_cmd();
    c.args(["--json", "drill", "--scratch", s(&scratch)]);
    // SAFETY: only setrlimit, which is async-signal-safe, runs between fork and exec.
    unsafe {
        c.pre_exec(|| {
            let lim = libc::rlimit { rlim_cur: 128, rlim_max: 128 };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = c.output().unwrap();
    assert!(out.status.success(), "drill: {}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((v["files_verified"].as_u64(), v["passed"].as_bool()), (Some(600), Some(true)), "{v}");
}
