//! End-to-end tests of the `arca` binary: each test makes a repository in a temporary directory
//! and drives the commands as a user would. The KDF cost is lowered through the environment so
//! that opening a repository takes microseconds.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::Value;
use tempfile::TempDir;

const PASSWORD: &str = "correct horse battery staple";

struct Env {
    dir: TempDir,
    /// Run `arca` as this user (tests that need an unprivileged process while running as root).
    uid: Option<u32>,
}

impl Env {
    fn new() -> Env {
        Env { dir: tempfile::tempdir().unwrap(), uid: None }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn repo(&self) -> PathBuf {
        self.path("repo")
    }

    /// `arca` with the repository and password in the environment and nothing inherited that
    /// could change the result.
    fn arca(&self) -> Command {
        Command::from_std(self.std_arca())
    }

    /// [`Env::arca`] as a `std::process::Command`, for tests that need its pipes while it runs.
    fn std_arca(&self) -> std::process::Command {
        let mut c = std::process::Command::new(assert_cmd::cargo::cargo_bin("arca"));
        if let Some(uid) = self.uid {
            use std::os::unix::process::CommandExt;
            c.uid(uid).gid(uid);
        }
        for var in [
            "ARCA_REPOSITORY",
            "ARCA_PASSWORD",
            "ARCA_PASSWORD_FILE",
            "ARCA_HOST",
            "ARCA_NEW_PASSWORD",
            "ARCA_NEW_PASSWORD_FILE",
            "ARCA_TO_PASSWORD",
            "ARCA_TO_PASSWORD_FILE",
            "ARCA_TO_REPOSITORY",
            "ARCA_FROM_PASSWORD",
            "ARCA_FROM_PASSWORD_FILE",
            "ARCA_LOG",
            "RUST_LOG",
        ] {
            c.env_remove(var);
        }
        c.env("ARCA_REPOSITORY", self.repo())
            .env("ARCA_PASSWORD", PASSWORD)
            .env("ARCA_KDF_MEMORY_KIB", "64")
            .env("ARCA_KDF_ITERATIONS", "1");
        c
    }

    fn init(&self) {
        let out = self.ok(&["init"]);
        assert!(out.contains("created arca repository"), "{out}");
    }

    /// Runs a command that must succeed; returns its standard output.
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
        let out = self.ok(&all);
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
    }

    fn snapshots(&self) -> Vec<Value> {
        self.json(&["snapshots"]).as_array().unwrap().clone()
    }

    fn backup(&self, path: &Path, extra: &[&str]) -> Value {
        let mut args = vec!["backup", path.to_str().unwrap()];
        args.extend_from_slice(extra);
        self.json(&args)
    }
}

/// Deterministic pseudo-random bytes (xorshift), so content does not compress or dedupe away.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A small tree: text files, an empty file, a 300 KB file, nested directories, a symlink.
fn make_tree(root: &Path) {
    fs::create_dir_all(root.join("docs/deep/er")).unwrap();
    fs::create_dir_all(root.join("empty-dir")).unwrap();
    fs::write(root.join("hello.txt"), b"hello, world\n").unwrap();
    fs::write(root.join("empty"), b"").unwrap();
    fs::write(root.join("docs/notes.md"), b"# notes\nsome text\n").unwrap();
    fs::write(root.join("docs/deep/er/data.bin"), noise(300_000, 7)).unwrap();
    fs::write(root.join("docs/zeros"), vec![0u8; 70_000]).unwrap();
    std::os::unix::fs::symlink("hello.txt", root.join("link")).unwrap();
}

/// Every regular file below `root`, relative path → bytes.
fn files(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let t = e.file_type().unwrap();
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() {
                out.push((e.path().strip_prefix(root).unwrap().to_path_buf(), fs::read(e.path()).unwrap()));
            }
        }
    }
    out.sort();
    out
}

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn backup_snapshots_ls_restore_round_trip() {
    let env = Env::new();
    let src = env.path("src");
    make_tree(&src);
    env.init();

    let out = env.ok(&["backup", src.to_str().unwrap(), "--tag", "first"]);
    assert!(out.contains("Files:"), "{out}");
    assert!(out.contains("Added to the repository:"), "{out}");
    assert!(out.contains("processed 4 files") || out.contains("processed 5 files"), "{out}");
    assert!(out.contains(" saved"), "{out}");

    let snaps = env.snapshots();
    assert_eq!(snaps.len(), 1);
    let s = &snaps[0];
    let id = s["id"].as_str().unwrap();
    assert_eq!(id.len(), 64);
    assert_eq!(s["short_id"].as_str().unwrap(), &id[..8]);
    assert!(chrono_like(s["time"].as_str().unwrap()));
    assert_eq!(s["paths"][0].as_str().unwrap(), src.to_str().unwrap());
    assert_eq!(s["tags"][0], "first");
    assert_eq!(s["host"], s["hostname"]);
    assert!(s["summary"]["total_bytes"].as_u64().unwrap() >= 370_000);

    // The text table names the snapshot by its short id.
    let table = env.ok(&["snapshots"]);
    assert!(table.contains(&id[..8]), "{table}");
    assert!(table.contains("1 snapshots"), "{table}");

    // ls prints absolute paths.
    let ls = env.ok(&["ls", "latest"]);
    let src_s = src.to_str().unwrap();
    for p in ["hello.txt", "docs/notes.md", "docs/deep/er/data.bin", "link", "empty-dir"] {
        assert!(ls.lines().any(|l| l == format!("{src_s}/{p}")), "{p} missing from:\n{ls}");
    }
    // ls with a path and --json: one object per line, the first the snapshot.
    let docs = format!("{src_s}/docs");
    let lines = env.ok(&["--json", "ls", &id[..10], &docs]);
    let objs: Vec<Value> = lines.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(objs[0]["struct_type"], "snapshot");
    let data = objs.iter().find(|o| o["name"] == "data.bin").expect("data.bin listed");
    assert_eq!(data["type"], "file");
    assert_eq!(data["size"], 300_000);
    assert_eq!(data["path"], format!("{docs}/deep/er/data.bin"));
    assert!(objs.iter().all(|o| o["struct_type"] == "snapshot" || o["path"].as_str().unwrap().starts_with(&docs)));
    // Not recursive: only direct entries.
    let flat = env.ok(&["ls", "latest", &docs, "--recursive=false"]);
    assert!(flat.contains(&format!("{docs}/notes.md")));
    assert!(!flat.contains("data.bin"), "{flat}");

    // Restore and compare every byte.
    let target = env.path("restored");
    let out = env.ok(&["restore", "latest", "--target", target.to_str().unwrap(), "--verify"]);
    assert!(out.contains("Summary"), "{out}");
    let restored_root = target.join(src.strip_prefix("/").unwrap());
    assert_eq!(files(&src), files(&restored_root));
    assert_eq!(fs::read_link(restored_root.join("link")).unwrap(), Path::new("hello.txt"));
    assert!(restored_root.join("empty-dir").is_dir());

    // Restoring a sub-path puts its contents at the target.
    let sub_target = env.path("sub");
    env.ok(&["restore", &format!("latest:{docs}"), "--target", sub_target.to_str().unwrap()]);
    assert_eq!(fs::read(sub_target.join("notes.md")).unwrap(), b"# notes\nsome text\n");
    assert!(!sub_target.join("hello.txt").exists());

    // The repository checks clean, with and without reading the data.
    let out = env.ok(&["check", "--read-data"]);
    assert!(out.contains("no errors were found"), "{out}");
}

fn chrono_like(s: &str) -> bool {
    s.len() >= 20 && s.as_bytes()[4] == b'-' && s.contains('T')
}

#[test]
fn wrong_password_exits_12() {
    let env = Env::new();
    env.init();
    let out = env.arca().env("ARCA_PASSWORD", "not it").arg("snapshots").output().unwrap();
    assert_eq!(out.status.code(), Some(12));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("arca: "), "{err}");
    assert!(err.contains("wrong password"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
}

#[test]
fn missing_repository_exits_10() {
    let env = Env::new();
    let out = env.arca().arg("snapshots").output().unwrap();
    assert_eq!(out.status.code(), Some(10));
    assert!(String::from_utf8_lossy(&out.stderr).contains("arca init"));
    // Even without a password: the repository is looked for first.
    let out = env.arca().env_remove("ARCA_PASSWORD").arg("snapshots").output().unwrap();
    assert_eq!(out.status.code(), Some(10));
}

#[test]
fn missing_password_is_explained() {
    let env = Env::new();
    env.init();
    let out = env.arca().env_remove("ARCA_PASSWORD").arg("snapshots").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no password given: set ARCA_PASSWORD or --password-file"), "{err}");
}

#[test]
fn password_file_loses_one_newline() {
    let env = Env::new();
    env.init();
    let file = env.path("pw");
    fs::write(&file, format!("{PASSWORD}\n")).unwrap();
    env.arca()
        .env_remove("ARCA_PASSWORD")
        .args(["--password-file", file.to_str().unwrap(), "snapshots"])
        .assert()
        .success();
    // Through the environment too.
    env.arca().env_remove("ARCA_PASSWORD").env("ARCA_PASSWORD_FILE", &file).arg("snapshots").assert().success();
    fs::write(&file, format!("{PASSWORD}\n\n")).unwrap();
    env.arca()
        .env_remove("ARCA_PASSWORD")
        .args(["--password-file", file.to_str().unwrap(), "snapshots"])
        .assert()
        .code(12);
}

#[test]
fn init_twice_fails() {
    let env = Env::new();
    env.init();
    let out = env.arca().arg("init").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
}

#[test]
fn unreadable_file_exits_3() {
    use std::os::unix::fs::PermissionsExt;
    let mut env = Env::new();
    if is_root() {
        // Root reads files whatever their mode: run arca as `nobody` instead, if it can.
        fs::set_permissions(env.dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
        env.uid = Some(65534);
        if !env.arca().arg("version").output().is_ok_and(|o| o.status.success()) {
            eprintln!("skipped: running as root and cannot run arca as nobody");
            return;
        }
    }
    let src = env.path("src");
    make_tree(&src);
    let secret = src.join("secret");
    fs::write(&secret, b"top secret").unwrap();
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o000)).unwrap();
    env.init();
    let out = env.arca().args(["backup", src.to_str().unwrap()]).output().unwrap();
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("secret"), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("saved"));
    let snaps = env.snapshots();
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0]["summary"]["errors"], 1);
    // The rest of the tree is in the snapshot.
    let ls = env.ok(&["ls", "latest"]);
    assert!(ls.contains("hello.txt"), "{ls}");
}

#[test]
fn forget_keep_last_removes_older() {
    let env = Env::new();
    let src = env.path("src");
    make_tree(&src);
    env.init();
    let t = ["2024-01-01T10:00:00Z", "2024-01-02T10:00:00Z", "2024-01-03T10:00:00Z"];
    let mut ids = Vec::new();
    for time in t {
        fs::write(src.join("hello.txt"), time).unwrap();
        let v = env.backup(&src, &["--time", time]);
        ids.push(v["id"].as_str().unwrap().to_string());
    }
    assert_eq!(env.snapshots().len(), 3);

    // Without a policy nothing happens.
    let out = env.arca().arg("forget").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(env.snapshots().len(), 3);

    // A dry run changes nothing.
    let out = env.ok(&["forget", "--keep-last", "1", "--dry-run"]);
    assert!(out.contains("remove 2 snapshots"), "{out}");
    assert_eq!(env.snapshots().len(), 3);

    let out = env.ok(&["forget", "--keep-last", "1", "--prune"]);
    assert!(out.contains("last snapshot"), "{out}");
    let left = env.snapshots();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["id"].as_str().unwrap(), ids[2]);

    // The kept snapshot still restores.
    let target = env.path("r");
    env.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    let restored = target.join(src.strip_prefix("/").unwrap()).join("hello.txt");
    assert_eq!(fs::read_to_string(restored).unwrap(), t[2]);

    // Forget by id.
    env.ok(&["forget", &ids[2][..8]]);
    assert!(env.snapshots().is_empty());
    assert!(env.ok(&["check"]).contains("no errors were found"));
}

#[test]
fn key_add_list_remove() {
    let env = Env::new();
    env.init();
    let out =
        env.arca().env("ARCA_NEW_PASSWORD", "second one").args(["key", "add", "--label", "two"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let keys = env.json(&["key", "list"]);
    let keys = keys.as_array().unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys.iter().filter(|k| k["current"] == true).count(), 1);
    let first = keys.iter().find(|k| k["current"] == true).unwrap()["id"].as_str().unwrap().to_string();
    let second = keys.iter().find(|k| k["label"] == "two").unwrap()["id"].as_str().unwrap().to_string();
    assert_ne!(first, second);

    // The new password opens the repository too.
    env.arca().env("ARCA_PASSWORD", "second one").arg("snapshots").assert().success();
    // The slot in use cannot be removed.
    env.arca().args(["key", "remove", &first[..8]]).assert().code(1);
    // With the new password, remove the first slot; the old password stops working.
    env.arca().env("ARCA_PASSWORD", "second one").args(["key", "remove", &first[..8]]).assert().success();
    env.arca().arg("snapshots").assert().code(12);
    env.arca().env("ARCA_PASSWORD", "second one").arg("snapshots").assert().success();

    // passwd: replace the current password.
    env.arca()
        .env("ARCA_PASSWORD", "second one")
        .env("ARCA_NEW_PASSWORD", "third")
        .args(["key", "passwd"])
        .assert()
        .success();
    env.arca().env("ARCA_PASSWORD", "second one").arg("snapshots").assert().code(12);
    env.arca().env("ARCA_PASSWORD", "third").arg("snapshots").assert().success();
    // The last slot cannot be removed.
    let keys = env.arca().env("ARCA_PASSWORD", "third").args(["--json", "key", "list"]).output().unwrap();
    let keys: Value = serde_json::from_slice(&keys.stdout).unwrap();
    assert_eq!(keys.as_array().unwrap().len(), 1);
}

#[test]
fn dump_file_and_directory() {
    let env = Env::new();
    let src = env.path("src");
    make_tree(&src);
    env.init();
    env.backup(&src, &[]);
    let data_path = format!("{}/docs/deep/er/data.bin", src.display());
    let out = env.arca().args(["dump", "latest", &data_path]).output().unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout, fs::read(src.join("docs/deep/er/data.bin")).unwrap());
    let zeros = env.arca().args(["dump", "latest", &format!("{}/docs/zeros", src.display())]).output().unwrap();
    assert_eq!(zeros.stdout, vec![0u8; 70_000]);

    // A directory becomes a tar archive of its entries under its own name.
    let out = env.arca().args(["dump", "latest", &format!("{}/docs", src.display())]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut archive = tar::Archive::new(&out.stdout[..]);
    let mut seen = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        if path == "docs/notes.md" {
            let mut s = String::new();
            entry.read_to_string(&mut s).unwrap();
            assert_eq!(s, "# notes\nsome text\n");
        }
        if path == "docs/deep/er/data.bin" {
            let mut b = Vec::new();
            entry.read_to_end(&mut b).unwrap();
            assert_eq!(b, noise(300_000, 7));
        }
        seen.push(path);
    }
    for p in ["docs/", "docs/notes.md", "docs/deep/", "docs/deep/er/data.bin", "docs/zeros"] {
        assert!(seen.iter().any(|s| s == p), "{p} not in {seen:?}");
    }
}

#[test]
fn diff_shows_changes() {
    let env = Env::new();
    let src = env.path("src");
    make_tree(&src);
    env.init();
    let a = env.backup(&src, &[]);
    fs::write(src.join("docs/notes.md"), b"# notes\nchanged text\n").unwrap();
    fs::write(src.join("new.txt"), b"new").unwrap();
    fs::remove_file(src.join("empty")).unwrap();
    let b = env.backup(&src, &[]);
    let (a, b) = (a["id"].as_str().unwrap(), b["id"].as_str().unwrap());
    let out = env.ok(&["diff", &a[..8], &b[..8]]);
    let s = src.display();
    assert!(out.contains(&format!("M    {s}/docs/notes.md")), "{out}");
    assert!(out.contains(&format!("+    {s}/new.txt")), "{out}");
    assert!(out.contains(&format!("-    {s}/empty")), "{out}");
    assert!(!out.contains("data.bin"), "unchanged files are not listed: {out}");

    let v = env.json(&["diff", a, b]);
    let changes = v["changes"].as_array().unwrap();
    assert!(changes.iter().any(|c| c["modifier"] == "M" && c["path"] == format!("{s}/docs/notes.md")));
    assert_eq!(v["stats"]["files"]["new"], 1);
    assert_eq!(v["stats"]["files"]["removed"], 1);
    assert_eq!(v["stats"]["files"]["changed"], 1);
}

#[test]
fn backup_from_stdin() {
    let env = Env::new();
    env.init();
    let data = noise(50_000, 3);
    let out = env
        .arca()
        .args(["--json", "backup", "--stdin", "--stdin-filename", "db.sql", "--tag", "db"])
        .write_stdin(data.clone())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["paths"][0], "/db.sql");
    assert!(v["warnings"].as_array().unwrap().is_empty());
    let dumped = env.arca().args(["dump", "latest", "/db.sql"]).output().unwrap();
    assert_eq!(dumped.stdout, data);
}

#[test]
fn second_backup_reuses_unchanged_files_and_excludes_work() {
    let env = Env::new();
    let src = env.path("src");
    make_tree(&src);
    fs::write(src.join("skip.tmp"), b"junk").unwrap();
    env.init();
    let first = env.backup(&src, &["--exclude", "*.tmp"]);
    assert!(first["summary"]["files_new"].as_u64().unwrap() >= 4);
    let ls = env.ok(&["ls", "latest"]);
    assert!(!ls.contains("skip.tmp"), "{ls}");
    let second = env.backup(&src, &["--exclude", "*.tmp"]);
    assert_eq!(second["parent"], first["id"]);
    assert_eq!(second["summary"]["files_new"], 0);
    assert_eq!(second["summary"]["files_changed"], 0);
    // Nothing was read again. (Trees of the source's ancestors, such as the temp directory, may
    // change while other tests run, so `data_added` can be a few hundred bytes of trees.)
    assert_eq!(second["summary"]["bytes_read"], 0);
    assert!(second["summary"]["data_added"].as_u64().unwrap() < 4096, "{second}");
}

#[test]
fn find_matches_names() {
    let env = Env::new();
    let src = env.path("src");
    make_tree(&src);
    env.init();
    env.backup(&src, &[]);
    let out = env.ok(&["find", "*.md"]);
    assert!(out.contains(&format!("{}/docs/notes.md", src.display())), "{out}");
    assert!(!out.contains("hello.txt"));
    let v = env.json(&["find", "DATA.*", "-i"]);
    assert_eq!(v[0]["hits"], 1);
}

#[test]
fn copy_between_repositories_sharing_a_key() {
    let env = Env::new();
    let src = env.path("src");
    make_tree(&src);
    env.init();
    env.backup(&src, &[]);
    let dst = env.path("dst");
    let dst_s = dst.to_str().unwrap();
    env.arca()
        .env("ARCA_FROM_PASSWORD", PASSWORD)
        .args(["-r", dst_s, "init", "--copy-key-from", env.repo().to_str().unwrap()])
        .assert()
        .success();
    let out = env.arca().env("ARCA_TO_PASSWORD", PASSWORD).args(["copy", "--to", dst_s]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let dst_snaps = env.arca().args(["--json", "-r", dst_s, "snapshots"]).output().unwrap();
    let dst_snaps: Value = serde_json::from_slice(&dst_snaps.stdout).unwrap();
    assert_eq!(dst_snaps.as_array().unwrap().len(), 1);
    assert_eq!(dst_snaps[0]["id"], env.snapshots()[0]["id"]);
    let out = env.arca().args(["-r", dst_s, "check", "--read-data"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn stats_counts_files() {
    let env = Env::new();
    let src = env.path("src");
    make_tree(&src);
    env.init();
    env.backup(&src, &[]);
    let v = env.json(&["stats"]);
    assert_eq!(v["snapshots"], 1);
    assert_eq!(v["files"], 5);
    assert_eq!(v["restore_size"], 13 + 18 + 300_000 + 70_000);
    let out = env.ok(&["stats", "--mode", "raw-data"]);
    assert!(out.contains("raw-data"), "{out}");
}

#[test]
fn every_command_has_help_with_examples() {
    let env = Env::new();
    for cmd in [
        "init",
        "backup",
        "snapshots",
        "ls",
        "find",
        "diff",
        "restore",
        "dump",
        "check",
        "forget",
        "prune",
        "key",
        "stats",
        "copy",
        "version",
    ] {
        let out = env.ok(&[cmd, "--help"]);
        assert!(out.contains("Example"), "`arca {cmd} --help` has no example:\n{out}");
    }
    assert!(env.ok(&["--version"]).starts_with("arca "));
    assert!(env.ok(&["version"]).starts_with("arca "));
    // Usage errors exit 1, like restic.
    env.arca().args(["backup", "--no-such-flag"]).assert().code(1);
}

#[test]
fn check_names_files_in_a_damaged_pack_and_restore_fails() {
    let env = Env::new();
    let src = env.path("src");
    make_tree(&src);
    env.init();
    env.backup(&src, &[]);
    // Flip one byte of every data pack (the local store keeps them under data/XX/).
    let mut packs = Vec::new();
    for fan in fs::read_dir(env.repo().join("data")).unwrap() {
        for p in fs::read_dir(fan.unwrap().path()).unwrap() {
            packs.push(p.unwrap().path());
        }
    }
    assert!(!packs.is_empty());
    for p in &packs {
        let mut bytes = fs::read(p).unwrap();
        let at = bytes.len() / 2;
        bytes[at] ^= 0xff;
        fs::write(p, bytes).unwrap();
    }
    // The structure is intact; only reading the data finds the damage.
    assert!(env.ok(&["check"]).contains("no errors were found"));
    let out = env.arca().args(["check", "--read-data"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("damaged packs"), "{err}");
    assert!(err.contains("data.bin"), "the damaged file is named: {err}");

    let target = env.path("r");
    let out = env.arca().args(["restore", "latest", "--target", target.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("error: "), "{err}");
    assert!(err.contains("arca: the restore is incomplete"), "{err}");
}

/// A tiny tmpfs mounted for one test and unmounted when dropped. Mounting needs root (CI runs as
/// root); elsewhere the test says so and passes without checking, since nothing can be filled.
struct TinyFs(PathBuf);

impl TinyFs {
    fn mount(path: PathBuf, size: &str) -> Option<TinyFs> {
        fs::create_dir_all(&path).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ok {
            Some(TinyFs(path))
        } else {
            eprintln!("cannot mount a tmpfs here (not root?): full-disk behaviour not exercised");
            None
        }
    }
}

impl Drop for TinyFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn full_repository_disk_fails_cleanly_and_loses_nothing() {
    let env = Env::new();
    let Some(_fs) = TinyFs::mount(env.repo(), "3m") else { return };
    env.init();
    let small = env.path("small");
    fs::create_dir_all(&small).unwrap();
    fs::write(small.join("a.txt"), b"keep me\n").unwrap();
    let first = env.backup(&small, &[]);
    let first_id = first["id"].as_str().unwrap().to_string();

    // 8 MB of incompressible data cannot fit in what is left of 3 MB.
    let big = env.path("big");
    fs::create_dir_all(&big).unwrap();
    fs::write(big.join("noise.bin"), noise(8 << 20, 11)).unwrap();
    let out = env.arca().args(["backup", big.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("disk is full"), "the error should say the disk is full: {err}");
    assert!(err.lines().filter(|l| !l.trim().is_empty()).count() <= 3, "a short error, not a flood: {err}");

    // Nothing acknowledged was lost: one snapshot, it checks and restores.
    let snaps = env.snapshots();
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0]["id"], first_id.as_str());
    let check = env.arca().args(["check", "--read-data"]).output().unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    let target = env.path("restored");
    env.ok(&["restore", &first_id, "--target", target.to_str().unwrap()]);
    let restored = target.join(small.strip_prefix("/").unwrap()).join("a.txt");
    assert_eq!(fs::read(restored).unwrap(), b"keep me\n");
}

#[test]
fn full_restore_target_is_reported_with_what_to_do() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("noise.bin"), noise(4 << 20, 5)).unwrap();
    env.backup(&src, &[]);
    let target = env.path("target");
    let Some(_fs) = TinyFs::mount(target.clone(), "1m") else { return };
    let out = env.arca().args(["restore", "latest", "--target", target.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("full"), "the error should say the target disk is full: {err}");
    assert!(err.contains("noise.bin"), "the error should name the file: {err}");
}

/// Runs `arca args` with its standard output read by a reader that takes one line and goes away
/// (`arca … | head -1`); returns how it ended and its standard error.
fn run_into_closing_reader(env: &Env, args: &[&str]) -> (std::process::ExitStatus, String) {
    use std::io::BufRead;
    let mut child = env
        .std_arca()
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert!(!first.is_empty(), "arca {args:?} printed nothing");
    drop(stdout);
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    (child.wait().unwrap(), err)
}

/// `arca ls | head -1` and `arca diff | head -1`: the reader leaves long before the output ends.
/// The command ends quietly with success: no panic, no "Broken pipe" error, and (since SIGPIPE is
/// ignored so that a server hanging up is reported rather than fatal) no death by SIGPIPE.
#[test]
fn output_into_a_reader_that_goes_away_ends_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let env = Env::new();
    env.init();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("first.txt"), b"first\n").unwrap();
    let before = env.backup(&src, &[])["snapshot_id"].as_str().unwrap().to_string();
    // Far more output than a pipe holds (64 KiB), through `ls` (a buffered writer) and `diff`
    // (`println!`).
    for i in 0..4000 {
        fs::write(src.join(format!("a-file-with-a-rather-long-name-so-the-listing-is-big-{i:05}.txt")), b"x").unwrap();
    }
    let after = env.backup(&src, &[])["snapshot_id"].as_str().unwrap().to_string();
    for args in [vec!["ls", "latest"], vec!["ls", "-l", "latest"], vec!["diff", &before, &after]] {
        let (status, err) = run_into_closing_reader(&env, &args);
        assert_eq!(status.signal(), None, "arca {args:?} was killed by a signal; stderr: {err}");
        assert_eq!(status.code(), Some(0), "arca {args:?}: {err}");
        assert!(!err.contains("panicked") && !err.contains("Broken pipe"), "arca {args:?}: {err}");
    }
}

/// A stand-in for `arca server` that hangs up in the middle of every upload bigger than 1 MiB
/// (after its headers and 64 KiB of its body), as a server that goes away mid-upload does. Every
/// other request of the repository API is answered from a local repository directory, so the
/// client gets as far as uploading a pack, and its lock really is stored and removed.
struct HangingUpServer {
    url: String,
    hangups: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl HangingUpServer {
    fn start(root: PathBuf) -> HangingUpServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/r", listener.local_addr().unwrap());
        let hangups = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = hangups.clone();
        // Serves one connection at a time; every answer closes its connection. The thread ends
        // with the test process.
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let _ = Self::serve(&root, conn, &counter);
            }
        });
        HangingUpServer { url, hangups }
    }

    fn serve(root: &Path, conn: std::net::TcpStream, hangups: &std::sync::atomic::AtomicUsize) -> std::io::Result<()> {
        use std::io::{BufRead, Write};
        let mut reader = std::io::BufReader::new(conn.try_clone()?);
        let mut request_line = String::new();
        reader.read_line(&mut request_line)?;
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line)?;
            if line.trim().is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut parts = request_line.split_whitespace();
        let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        if method == "PUT" && length > 1 << 20 {
            let mut some = vec![0u8; 64 << 10];
            reader.read_exact(&mut some)?;
            hangups.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            // FIN first, then close with the rest of the body unread (a reset).
            conn.shutdown(std::net::Shutdown::Write)?;
            std::thread::sleep(std::time::Duration::from_millis(20));
            return Ok(());
        }
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body)?;
        let path = target.split('?').next().unwrap_or("");
        let rest = path.strip_prefix("/v1/repos/r").unwrap_or("").trim_start_matches('/');
        let file = |kind: &str, name: &str| -> PathBuf {
            match kind {
                "config" => root.join("config"),
                "data" | "meta" => root.join(kind).join(name.get(..2).unwrap_or("00")).join(name),
                _ => root.join(kind).join(name),
            }
        };
        let (status, extra, payload): (&str, String, Vec<u8>) = match (method, rest.split_once('/')) {
            ("GET", Some((kind, ""))) => {
                let dir = root.join(kind);
                let mut paths = Vec::new();
                for e in fs::read_dir(&dir).into_iter().flatten().flatten() {
                    if e.path().is_dir() {
                        paths.extend(fs::read_dir(e.path())?.flatten().map(|e| e.path()));
                    } else {
                        paths.push(e.path());
                    }
                }
                let mut list: Vec<Value> = paths
                    .iter()
                    .map(|p| {
                        let size = fs::metadata(p).map(|m| m.len()).unwrap_or(0);
                        serde_json::json!({ "name": p.file_name().unwrap().to_str().unwrap(), "size": size })
                    })
                    .collect();
                list.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
                ("200 OK", String::new(), serde_json::to_vec(&list).unwrap())
            }
            ("GET", Some((kind, name))) => match fs::read(file(kind, name)) {
                Ok(bytes) => ("200 OK", String::new(), bytes),
                Err(_) => ("404 Not Found", String::new(), Vec::new()),
            },
            ("HEAD", Some((kind, name))) => match fs::metadata(file(kind, name)) {
                Ok(m) => ("200 OK", format!("x-arca-size: {}\r\n", m.len()), vec![0; m.len() as usize]),
                Err(_) => ("404 Not Found", String::new(), Vec::new()),
            },
            ("PUT", Some((kind, name))) => {
                let f = file(kind, name);
                fs::create_dir_all(f.parent().unwrap())?;
                fs::write(f, &body)?;
                ("201 Created", String::new(), Vec::new())
            }
            ("DELETE", Some((kind, name))) => {
                let _ = fs::remove_file(file(kind, name));
                ("204 No Content", String::new(), Vec::new())
            }
            _ => ("204 No Content", String::new(), Vec::new()), // the failure report, and the rest
        };
        let mut conn = conn;
        // (A HEAD answer's payload only gives its Content-Length; it is not sent.)
        write!(conn, "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n", payload.len())?;
        if method != "HEAD" {
            conn.write_all(&payload)?;
        }
        conn.flush()
    }
}

/// The server goes away in the middle of an upload: `arca backup` reports the failure as an
/// error (it is not killed by SIGPIPE, exit 141) and removes its lock.
#[test]
fn server_hanging_up_mid_upload_is_an_error_not_a_signal() {
    use std::os::unix::process::ExitStatusExt;
    let env = Env::new();
    env.init();
    let server = HangingUpServer::start(env.repo());
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("big.bin"), noise(6 << 20, 11)).unwrap();
    let out = env
        .arca()
        .env("ARCA_REPOSITORY", &server.url)
        .env("ARCA_TOKEN", "device-token")
        .args(["backup", src.to_str().unwrap()])
        .timeout(std::time::Duration::from_secs(120))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(server.hangups.load(std::sync::atomic::Ordering::SeqCst) > 0, "no upload was cut: {err}");
    assert_eq!(out.status.signal(), None, "arca was killed by a signal; stderr: {err}");
    assert_eq!(out.status.code(), Some(1), "{err}");
    let last = err.lines().last().unwrap_or("");
    assert!(last.starts_with("arca: ") && last.contains("uploading data object"), "which upload failed: {err}");
    let lower = last.to_lowercase();
    assert!(
        ["connection", "broken pipe", "reset"].iter().any(|w| lower.contains(w)),
        "the error should say the connection failed: {err}"
    );
    let locks: Vec<_> = fs::read_dir(env.repo().join("locks")).map(|d| d.flatten().collect()).unwrap_or_default();
    assert!(locks.is_empty(), "the backup left its lock: {locks:?}");
    assert!(env.snapshots().is_empty());
}
