//! End-to-end tests of `arca appliance`: the real binary, a real WebDAV client (reqwest, litmus),
//! and for replication a real `arca server` on loopback (tests/cluster).

mod browser;
mod cluster;

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cluster::{arca_bin, assert_same_tree, noise, Cluster, Shape, PASSWORD};
use reqwest::blocking::Client;
use reqwest::Method;
use serde_json::Value;
use tempfile::TempDir;

const USER: &str = "alice";
const USER_PASSWORD: &str = "alice's share password";

/// A running `arca appliance` process; killed when dropped.
struct Appliance {
    child: Child,
    base: String,
    /// The backup target's base URL, if configured.
    target: Option<String>,
    log: PathBuf,
}

impl Drop for Appliance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- appliance log (last lines) ---");
            for l in tail.into_iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

/// A test setup: a directory with the local repository, a share folder, and a config.
struct Office {
    dir: TempDir,
}

impl Office {
    fn new() -> Office {
        let o = Office { dir: tempfile::tempdir().unwrap() };
        fs::create_dir_all(o.share()).unwrap();
        let out = Command::new(arca_bin())
            .args(["init", "-r"])
            .arg(o.repo())
            .env("ARCA_PASSWORD", PASSWORD)
            .env("ARCA_KDF_MEMORY_KIB", "64")
            .env("ARCA_KDF_ITERATIONS", "1")
            .output()
            .unwrap();
        assert!(out.status.success(), "arca init: {}", String::from_utf8_lossy(&out.stderr));
        o
    }
    fn share(&self) -> PathBuf {
        self.dir.path().join("share")
    }
    fn repo(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    /// Writes `appliance.toml` with `extra` appended (shares' schedules, provider) and starts it.
    fn start(&self, share_extra: &str, extra: &str) -> Appliance {
        let path = self.write_config(share_extra, extra);
        let log = self.dir.path().join("appliance.log");
        let mut child = self
            .command()
            .arg("--config")
            .arg(&path)
            .env("ARCA_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(fs::OpenOptions::new().create(true).append(true).open(&log).unwrap())
            .spawn()
            .unwrap();
        let mut reader = BufReader::new(child.stdout.take().unwrap());
        let (mut base, mut target) = (None, None);
        for _ in 0..3 {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap() == 0 {
                break;
            }
            if let Some(t) = line.trim().split("backup target on ").nth(1) {
                target = Some(t.to_string());
            }
            if let Some(b) = line.trim().split("listening on ").nth(1) {
                base = Some(b.to_string());
                break;
            }
        }
        let base = base.unwrap_or_else(|| {
            panic!("the appliance did not start:\n{}", fs::read_to_string(&log).unwrap_or_default())
        });
        std::thread::spawn(move || {
            let mut sink = String::new();
            while reader.read_line(&mut sink).unwrap_or(0) > 0 {
                sink.clear();
            }
        });
        Appliance { child, base, target, log }
    }

    /// `arca appliance` with the environment the configuration refers to.
    fn command(&self) -> Command {
        let mut c = Command::new(arca_bin());
        c.arg("appliance").env("TEST_REPO_PASSWORD", PASSWORD).env_remove("RUST_LOG").env_remove("ARCA_LOG");
        c
    }

    /// Writes `appliance.toml`; returns its path.
    fn write_config(&self, share_extra: &str, extra: &str) -> PathBuf {
        let user_lines = hash_lines(USER_PASSWORD);
        let config = format!(
            r#"listen = "127.0.0.1:0"
data_dir = "{data}"
max_upload = "4 MiB"
[repository]
path = "{repo}"
password_env = "TEST_REPO_PASSWORD"
[users.{USER}]
{user_lines}
[shares.docs]
path = "{share}"
{share_extra}
{extra}
"#,
            data = self.dir.path().join("state").display(),
            repo = self.repo().display(),
            share = self.share().display(),
        );
        let path = self.dir.path().join("appliance.toml");
        fs::write(&path, config).unwrap();
        path
    }
}

/// A user's `password_hash` and `nt_hash` lines, from `arca appliance hash-password --smb`.
fn hash_lines(password: &str) -> String {
    let out = Command::new(arca_bin())
        .args(["appliance", "hash-password", "--smb"])
        .env("ARCA_NEW_PASSWORD", password)
        .output()
        .unwrap();
    assert!(out.status.success(), "hash-password: {}", String::from_utf8_lossy(&out.stderr));
    let lines = String::from_utf8(out.stdout).unwrap();
    assert!(lines.starts_with("password_hash = \"$argon2id$") && lines.contains("\nnt_hash = \""), "{lines}");
    lines
}

fn client() -> Client {
    static CLIENT: std::sync::OnceLock<Client> = std::sync::OnceLock::new();
    CLIENT.get_or_init(|| Client::builder().timeout(Duration::from_secs(30)).build().unwrap()).clone()
}

impl Appliance {
    fn url(&self, path: &str) -> String {
        format!("{}/dav/docs{path}", self.base)
    }
    fn dav(&self, method: &str, path: &str) -> reqwest::blocking::RequestBuilder {
        client()
            .request(Method::from_bytes(method.as_bytes()).unwrap(), self.url(path))
            .basic_auth(USER, Some(USER_PASSWORD))
    }
    fn status(&self) -> Value {
        let body = client().get(format!("{}/status.json", self.base)).send().unwrap().bytes().unwrap();
        serde_json::from_slice(&body).unwrap()
    }
    /// Polls the status until `ok` holds, or fails after `secs` seconds.
    fn wait_for(&self, secs: u64, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let s = self.status();
            if ok(&s) {
                return s;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}; status: {s:#}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    fn snapshot_count(&self) -> u64 {
        self.status()["shares"]["docs"]["snapshots"].as_u64().unwrap()
    }
}

/// Whether litmus can run here; panics if it is missing, unless `ARCA_TEST_ALLOW_MISSING_SERVICES=1`.
fn have_litmus() -> bool {
    if Command::new("litmus").arg("--version").output().is_ok() || Path::new("/usr/bin/litmus").exists() {
        return true;
    }
    if std::env::var("ARCA_TEST_ALLOW_MISSING_SERVICES").as_deref() != Ok("1") {
        panic!("litmus is not installed: apt-get install litmus (or set ARCA_TEST_ALLOW_MISSING_SERVICES=1 to skip)");
    }
    eprintln!("SKIPPED: litmus is not installed (apt-get install litmus); the WebDAV conformance test did not run");
    false
}

#[test]
fn litmus_passes_basic_copymove_props_and_locks() {
    if !have_litmus() {
        return;
    }
    let office = Office::new();
    let app = office.start("", "");
    // litmus writes child.log and debug.log into its working directory.
    let logs = tempfile::tempdir().unwrap();
    let out = Command::new("litmus")
        .arg(app.url("/"))
        .args([USER, USER_PASSWORD])
        .current_dir(logs.path())
        .env("TESTS", "basic copymove props locks")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    eprintln!("{}", text.lines().filter(|l| l.contains("summary for")).collect::<Vec<_>>().join("\n"));
    for group in ["basic", "copymove", "props", "locks"] {
        let line = text
            .lines()
            .find(|l| l.contains(&format!("summary for `{group}'")))
            .unwrap_or_else(|| panic!("litmus did not run group {group}:\n{text}"));
        assert!(line.contains(" 0 failed"), "litmus group {group} failed: {line}\n{text}");
    }
    assert!(out.status.success(), "litmus exited with {:?}:\n{text}", out.status);
}

#[test]
fn the_share_takes_files_and_refuses_strangers_tricks_and_huge_bodies() {
    let office = Office::new();
    let app = office.start("", "");
    // A real client writes a file into a new folder and reads it back.
    assert_eq!(app.dav("MKCOL", "/reports/").send().unwrap().status().as_u16(), 201);
    let body = noise(300_000, 1);
    assert_eq!(app.dav("PUT", "/reports/q3.bin").body(body.clone()).send().unwrap().status().as_u16(), 201);
    assert_eq!(app.dav("GET", "/reports/q3.bin").send().unwrap().bytes().unwrap().as_ref(), &body[..]);
    assert_eq!(fs::read(office.share().join("reports/q3.bin")).unwrap(), body, "the file lands in the folder");

    // Wrong password, unknown user, no credentials: 401 with a Basic challenge, nothing written.
    for (user, pass) in [(USER, "wrong password"), ("mallory", USER_PASSWORD)] {
        let r = client().put(app.url("/evil.txt")).basic_auth(user, Some(pass)).body("x").send().unwrap();
        assert_eq!(r.status().as_u16(), 401, "{user}");
    }
    let r = client().get(app.url("/reports/q3.bin")).send().unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert!(r.headers()["www-authenticate"].to_str().unwrap().starts_with("Basic"));
    assert!(!office.share().join("evil.txt").exists());

    // Path tricks: raw and encoded dot segments are refused before they reach the file system.
    let secret = office.dir.path().join("secret.txt");
    fs::write(&secret, "outside the share").unwrap();
    for path in ["/dav/docs/../secret.txt", "/dav/docs/%2e%2e/secret.txt", "/dav/docs/reports/..%2f..%2f../secret.txt"]
    {
        let out = Command::new("curl")
            .args(["-s", "--path-as-is", "-o", "/dev/null", "-w", "%{http_code}", "-u"])
            .arg(format!("{USER}:{USER_PASSWORD}"))
            .arg(format!("{}{path}", app.base))
            .output()
            .unwrap();
        let code = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(code.starts_with('4'), "{path} answered {code}");
    }
    // Unknown share.
    let r = client().get(format!("{}/dav/nope/", app.base)).basic_auth(USER, Some(USER_PASSWORD)).send().unwrap();
    assert_eq!(r.status().as_u16(), 404);

    // A body declared larger than max_upload (4 MiB) is refused before it is read; one without a
    // declared length (chunked) is cut off at the limit and reported as a failure.
    let big = office.dir.path().join("big.bin");
    fs::write(&big, vec![7u8; 5 << 20]).unwrap();
    let curl_put = |args: &[&str], name: &str| -> String {
        let out = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-u", &format!("{USER}:{USER_PASSWORD}")])
            .args(args)
            .arg(app.url(&format!("/{name}")))
            .stdin(fs::File::open(&big).unwrap())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    assert_eq!(curl_put(&["-T", big.to_str().unwrap()], "big.bin"), "413");
    assert!(!office.share().join("big.bin").exists(), "nothing of a refused upload is left");
    let code = curl_put(&["-T", "-"], "chunked.bin");
    assert!(!code.starts_with('2'), "an over-long chunked upload was accepted: {code}");
    assert!(!office.share().join("chunked.bin").exists(), "a broken-off upload left a partial file");
    // A broken-off upload over an existing file leaves the old bytes, and no temporary files.
    let code = curl_put(&["-T", "-"], "reports/q3.bin");
    assert!(!code.starts_with('2'), "an over-long chunked upload was accepted: {code}");
    assert_eq!(fs::read(office.share().join("reports/q3.bin")).unwrap(), body, "a failed upload damaged the file");
    for dir in [office.share(), office.share().join("reports")] {
        for e in fs::read_dir(&dir).unwrap() {
            let name = e.unwrap().file_name().to_string_lossy().to_string();
            assert!(!name.starts_with(".arca-upload-"), "temporary upload left behind: {name}");
        }
    }
}

#[test]
fn a_schedule_fires_and_previous_versions_serve_the_old_bytes() {
    let office = Office::new();
    let app = office.start("schedule = \"*/2 * * * * *\"\nretention = { keep_last = 3 }", "");
    let v1 = noise(200_000, 11);
    let v2 = noise(150_000, 22);
    assert!(app.dav("PUT", "/plan.bin").body(v1.clone()).send().unwrap().status().is_success());
    // A snapshot taken after the write.
    let written = chrono::Utc::now();
    app.wait_for(15, "a snapshot after the first write", |s| {
        s["shares"]["docs"]["last_snapshot"]["time"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .is_some_and(|t| t > written)
    });
    assert!(app.dav("PUT", "/plan.bin").body(v2.clone()).send().unwrap().status().is_success());

    // The snapshots directory lists the snapshots; the oldest one holding the file has v1.
    let listing = app.dav("PROPFIND", "/.snapshots/").header("Depth", "1").send().unwrap();
    assert_eq!(listing.status().as_u16(), 207);
    let xml = listing.text().unwrap();
    let dirs: Vec<String> = xml
        .split("/dav/docs/.snapshots/")
        .skip(1)
        .filter_map(|s| s.split('<').next())
        .map(|s| s.trim_end_matches('/').to_string())
        .filter(|s| !s.is_empty())
        .collect();
    assert!(!dirs.is_empty(), "no snapshot directories in {xml}");
    let mut found = None;
    for d in &dirs {
        let r = app.dav("GET", &format!("/.snapshots/{d}/plan.bin")).send().unwrap();
        if r.status().is_success() && r.bytes().unwrap().as_ref() == &v1[..] {
            found = Some(d.clone());
        }
    }
    let old = found.unwrap_or_else(|| panic!("no snapshot among {dirs:?} serves the old bytes"));
    assert_eq!(app.dav("GET", "/plan.bin").send().unwrap().bytes().unwrap().as_ref(), &v2[..]);
    // Ranges work (clients resume downloads).
    let r = app.dav("GET", &format!("/.snapshots/{old}/plan.bin")).header("Range", "bytes=1000-1999").send().unwrap();
    assert_eq!(r.status().as_u16(), 206);
    assert_eq!(r.bytes().unwrap().as_ref(), &v1[1000..2000]);

    // Previous versions are read-only.
    for (method, path) in [
        ("PUT", format!("/.snapshots/{old}/plan.bin")),
        ("DELETE", format!("/.snapshots/{old}/plan.bin")),
        ("MKCOL", format!("/.snapshots/{old}/new/")),
        ("DELETE", "/.snapshots/".to_string()),
        ("PROPPATCH", format!("/.snapshots/{old}/plan.bin")),
        ("MOVE", format!("/.snapshots/{old}/plan.bin")),
    ] {
        let mut req = app.dav(method, &path);
        if method == "PUT" {
            req = req.body("x");
        }
        let r = req.send().unwrap();
        assert_eq!(r.status().as_u16(), 403, "{method} {path}");
    }
    let r = app
        .dav("COPY", "/plan.bin")
        .header("Destination", app.url(&format!("/.snapshots/{old}/x.bin")))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 403, "COPY into previous versions");
    let r = app.dav("GET", &format!("/.snapshots/{old}/plan.bin")).send().unwrap();
    assert_eq!(r.bytes().unwrap().as_ref(), &v1[..], "the old version is still there");
    // A user restores the old version by copying it back into the share.
    let r = app
        .dav("COPY", &format!("/.snapshots/{old}/plan.bin"))
        .header("Destination", app.url("/plan-restored.bin"))
        .send()
        .unwrap();
    assert!(r.status().is_success(), "COPY from a snapshot: {}", r.status());
    assert_eq!(fs::read(office.share().join("plan-restored.bin")).unwrap(), v1);

    // Retention keeps the newest three of the share's snapshots.
    app.wait_for(20, "more snapshots than retention keeps", |s| {
        s["shares"]["docs"]["last_snapshot"]["time"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .is_some_and(|t| t > written + chrono::Duration::seconds(8))
    });
    assert!(app.snapshot_count() <= 3, "retention kept {}", app.snapshot_count());
    let out = Command::new(arca_bin())
        .args(["--json", "snapshots", "-r"])
        .arg(office.repo())
        .env("ARCA_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(list.as_array().unwrap().len() <= 3, "the local repository keeps {}", list);
}

/// Bytes of every file under `dir`.
fn tree_bytes(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                tree_bytes(&e.path())
            } else {
                e.metadata().unwrap().len()
            }
        })
        .sum()
}

fn provider_section(c: &Cluster, token: &str, limit: &str) -> String {
    format!("[provider]\nurl = \"{}\"\ntoken = \"{token}\"\nupload_limit = \"{limit}\"\n", c.repo_url("office"))
}

#[test]
fn replication_survives_kills_is_throttled_and_the_provider_copy_checks_and_restores() {
    let mut c = Cluster::start(Shape::Embedded);
    let token = c.new_repo("acme", "office", None);
    let office = Office::new();
    // 40 MiB of incompressible files: a 32 MiB data pack and a smaller one.
    fs::create_dir_all(office.share().join("projects")).unwrap();
    for i in 0..5u64 {
        fs::write(office.share().join(format!("projects/part{i}.bin")), noise(8 << 20, i)).unwrap();
    }
    fs::write(office.share().join("readme.txt"), "office files\n").unwrap();
    let total = tree_bytes(&office.share());
    let schedule = "schedule = \"*/3 * * * * *\"\nretention = { keep_last = 2 }";

    // First run, throttled to 8 MiB/s: killed together with the server once one data pack has
    // arrived and the other is still waiting (a power cut in the middle of a pass).
    let app = office.start(schedule, &provider_section(&c, &token, "8 MiB/s"));
    let s = app.wait_for(60, "the first pack on the provider", |s| {
        let r = &s["replication"];
        r["uploaded_bytes"].as_u64().unwrap_or(0) >= 4 << 20 && r["pending_bytes"].as_u64().unwrap_or(0) >= 4 << 20
    });
    c.kill_and_restart(0);
    drop(app);
    let before_kill = s["replication"]["uploaded_bytes"].as_u64().unwrap();
    assert!(before_kill < total, "the pass had finished before the kill: {s:#}");

    // Second run against the restarted server: it resumes from what the provider lists (the big
    // pack that was still waiting), at a limit of 8 MiB/s. The rate is measured from the start of
    // the pass to the arrival of its data packs (the metadata objects after them are tiny and
    // dominated by request latency), and must keep within 10% of the limit.
    let limit = 8u64 << 20;
    let app = office.start(schedule, &provider_section(&c, &token, "8 MiB/s"));
    let mut start: Option<(Instant, u64, u64)> = None;
    let mut data_done: Option<(Instant, u64)> = None;
    let deadline = Instant::now() + Duration::from_secs(90);
    let done_bytes = loop {
        let s = app.status();
        let r = &s["replication"];
        let uploaded = r["uploaded_bytes"].as_u64().unwrap_or(0);
        let pending = r["pending_bytes"].as_u64().unwrap_or(0);
        if start.is_none() && r["state"] == "uploading" && pending > 0 {
            start = Some((Instant::now(), uploaded, pending));
        }
        if let Some((_, b0, p0)) = start {
            if data_done.is_none() && (uploaded - b0) * 10 >= p0 * 9 {
                data_done = Some((Instant::now(), uploaded));
            }
            if r["last_success"].is_string() && r["pending_snapshots"] == 0 {
                break uploaded;
            }
        }
        assert!(Instant::now() < deadline, "replication did not finish: {s:#}");
        std::thread::sleep(Duration::from_millis(10));
    };
    let (t0, b0, _) = start.unwrap();
    let (t1, b1) = data_done.unwrap();
    let (sent, secs) = (b1 - b0, t1.duration_since(t0).as_secs_f64());
    let rate = sent as f64 / secs;
    eprintln!("resumed pass: {sent} bytes in {secs:.2} s = {:.2} MiB/s (limit 8 MiB/s)", rate / (1 << 20) as f64);
    assert!(done_bytes - b0 < total, "the resumed pass sent everything again ({} of {total} bytes)", done_bytes - b0);
    assert!(secs >= 2.0, "the transfer was too short to measure a rate ({secs:.2} s)");
    assert!((rate - limit as f64).abs() <= 0.1 * limit as f64, "rate {rate:.0} B/s is not within 10% of {limit}");

    // The provider repository checks, data included, and restores the same bytes.
    c.ok("office", &token, &["check", "--read-data"]);
    let target = c.path("restored");
    c.ok("office", &token, &["restore", "latest", "--target", target.to_str().unwrap()]);
    let restored = target.join(office.share().strip_prefix("/").unwrap());
    assert_same_tree(&office.share(), &restored);

    // Local retention (keep 2) never deletes at the provider: it accumulates every snapshot.
    let count = |json: String| serde_json::from_str::<Value>(&json).unwrap().as_array().unwrap().len();
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let remote = count(c.ok("office", &token, &["--json", "snapshots"]));
        let local = app.snapshot_count();
        if remote >= 3 && local <= 2 {
            break;
        }
        assert!(Instant::now() < deadline, "provider has {remote} snapshots, the appliance {local}");
        std::thread::sleep(Duration::from_millis(500));
    }
    // The status command reads the running appliance.
    let out = Command::new(arca_bin()).args(["--json", "appliance", "status", "--url", &app.base]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["live"], true);
    assert!(v["replication"]["uploaded_bytes"].as_u64().unwrap() > 0);
}

#[test]
fn disaster_recovery_onto_an_empty_appliance() {
    let c = Cluster::start(Shape::Embedded);
    let token = c.new_repo("acme", "office", None);
    let office = Office::new();
    // History: a file that is deleted later (4 MiB the latest snapshot does not need).
    fs::create_dir_all(office.share()).unwrap();
    fs::write(office.share().join("old.bin"), noise(4 << 20, 9)).unwrap();
    let provider = format!("[provider]\nurl = \"{}\"\ntoken = \"{token}\"\n", c.repo_url("office"));
    let app = office.start("schedule = \"*/2 * * * * *\"", &provider);
    app.wait_for(60, "a snapshot on the provider", |s| {
        s["shares"]["docs"]["snapshots"].as_u64().unwrap_or(0) >= 1
            && s["replication"]["last_success"].is_string()
            && s["replication"]["uploaded_objects"].as_u64().unwrap_or(0) > 0
            && s["replication"]["pending_snapshots"] == 0
    });
    // Today's files, and a snapshot of them (taken after the change) on the provider.
    let changed = chrono::Utc::now();
    fs::remove_file(office.share().join("old.bin")).unwrap();
    fs::create_dir_all(office.share().join("sub")).unwrap();
    fs::write(office.share().join("a.txt"), "the office's files\n").unwrap();
    fs::write(office.share().join("sub/b.bin"), noise(3 << 20, 5)).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let snaps: Value = serde_json::from_str(&c.ok("office", &token, &["--json", "snapshots"])).unwrap();
        let after = snaps.as_array().unwrap().iter().any(|s| {
            chrono::DateTime::parse_from_rfc3339(s["time"].as_str().unwrap()).unwrap()
                > changed + chrono::Duration::seconds(1)
        });
        if after {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no snapshot of the changed share reached the provider: {snaps}");
        std::thread::sleep(Duration::from_millis(300));
    }
    // The provider's console knows how the appliance's replication stands.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, h) = c.get_json(&c.admin, "/v1/admin/health?tenant=acme");
        let reported = h["devices"].as_array().unwrap().iter().any(|d| {
            d["device"] == "dev-office" && d["last_replication"].as_str().is_some_and(|s| s.starts_with("up to date"))
        });
        if reported {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the appliance never reported its replication: {h}");
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(app);

    // The appliance is lost: its repository and its share are gone.
    let expected = tempfile::tempdir().unwrap();
    fs::create_dir_all(expected.path().join("sub")).unwrap();
    fs::copy(office.share().join("a.txt"), expected.path().join("a.txt")).unwrap();
    fs::copy(office.share().join("sub/b.bin"), expected.path().join("sub/b.bin")).unwrap();
    fs::remove_dir_all(office.repo()).unwrap();
    fs::remove_dir_all(office.share()).unwrap();
    let config = office.dir.path().join("appliance.toml");

    // A share folder that is not empty is refused before anything is pulled.
    fs::create_dir_all(office.share()).unwrap();
    fs::write(office.share().join("new.txt"), "written after the disaster").unwrap();
    let out = office.command().arg("--config").arg(&config).arg("restore").output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not empty"), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!office.repo().exists(), "a refused recovery pulled data");
    fs::remove_file(office.share().join("new.txt")).unwrap();

    // The fast way back: only the newest snapshot and what it needs. The local repository it
    // leaves is complete in itself (it checks, data included) and holds that one snapshot.
    let out =
        office.command().arg("--config").arg(&config).args(["--json", "restore", "--latest-only"]).output().unwrap();
    assert!(out.status.success(), "restore --latest-only: {}", String::from_utf8_lossy(&out.stderr));
    let latest: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_same_tree(expected.path(), &office.share());
    assert_same_tree(&office.share(), expected.path());
    let local = |args: &[&str]| {
        let out = Command::new(arca_bin())
            .args(args)
            .arg("-r")
            .arg(office.repo())
            .env("ARCA_PASSWORD", PASSWORD)
            .output()
            .unwrap();
        assert!(out.status.success(), "arca {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    local(&["check", "--read-data"]);
    let kept: Value = serde_json::from_str(&local(&["--json", "snapshots"])).unwrap();
    assert_eq!(kept.as_array().unwrap().len(), 1, "{kept}");
    fs::remove_dir_all(office.repo()).unwrap();
    fs::remove_dir_all(office.share()).unwrap();

    // The whole repository: the history comes back too (the deleted file's 4 MiB with it).
    let out = office.command().arg("--config").arg(&config).args(["--json", "restore"]).output().unwrap();
    assert!(out.status.success(), "restore: {}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["objects_pulled"].as_u64().unwrap() > 0);
    let (all_bytes, latest_bytes) =
        (report["bytes_pulled"].as_u64().unwrap(), latest["bytes_pulled"].as_u64().unwrap());
    assert!(all_bytes >= latest_bytes + (4 << 20), "everything: {all_bytes} bytes, the latest only: {latest_bytes}");
    assert_eq!(report["shares"][0]["share"], "docs");
    assert_same_tree(expected.path(), &office.share());
    assert_same_tree(&office.share(), expected.path());

    // The recovered appliance runs, and its previous versions are back.
    let app = office.start("", &provider);
    let xml = app.dav("PROPFIND", "/.snapshots/").header("Depth", "1").send().unwrap().text().unwrap();
    let mut dirs: Vec<&str> = xml
        .split("/dav/docs/.snapshots/")
        .skip(1)
        .filter_map(|s| s.split('<').next())
        .map(|s| s.trim_end_matches('/'))
        .filter(|s| !s.is_empty())
        .collect();
    dirs.sort();
    dirs.dedup();
    assert!(dirs.len() >= 2, "the history is not back after recovery: {xml}");
    // The oldest version has the deleted file, the newest today's files.
    let get = |path: String| {
        let r = app.dav("GET", &path).send().unwrap();
        assert!(r.status().is_success(), "GET {path}: {}", r.status());
        r.bytes().unwrap()
    };
    let old = get(format!("/.snapshots/{}/old.bin", dirs[0]));
    assert!(old.as_ref() == &noise(4 << 20, 9)[..], "the deleted file's old version differs");
    let got = get(format!("/.snapshots/{}/sub/b.bin", dirs[dirs.len() - 1]));
    assert!(got.as_ref() == &fs::read(expected.path().join("sub/b.bin")).unwrap()[..], "b.bin differs");
}

#[test]
fn office_machines_back_up_to_the_appliance() {
    let office = Office::new();
    let target_dir = office.dir.path().join("target");
    let app = office.start(
        "",
        &format!(
            "[backup_target]\nlisten = \"127.0.0.1:0\"\ndata_dir = \"{}\"\nadmin_password = \"{}\"\n",
            target_dir.display(),
            cluster::ADMIN_PASSWORD
        ),
    );
    let server = app.target.clone().expect("the backup target's address");
    let arca = |envs: &[(&str, &str)], args: &[&str]| -> String {
        let mut c = Command::new(arca_bin());
        for var in ["ARCA_PASSWORD_FILE", "ARCA_LOG", "RUST_LOG", "ARCA_TOKEN", "ARCA_REPOSITORY"] {
            c.env_remove(var);
        }
        c.env("ARCA_SERVER", &server).env("ARCA_KDF_MEMORY_KIB", "64").env("ARCA_KDF_ITERATIONS", "1");
        for (k, v) in envs {
            c.env(k, v);
        }
        let out = c.args(args).output().unwrap();
        assert!(out.status.success(), "arca {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    // The office admin sets up a device for a laptop, as on a provider's server.
    let admin =
        arca(&[("ARCA_ADMIN_PASSWORD", cluster::ADMIN_PASSWORD)], &["admin", "login", "--quiet", "--user", "admin"]);
    let admin = admin.trim();
    arca(&[("ARCA_TOKEN", admin)], &["admin", "plan", "create", "office", "--hard-quota", "1GiB"]);
    arca(&[("ARCA_TOKEN", admin)], &["admin", "tenant", "create", "staff", "--plan", "office"]);
    arca(&[("ARCA_TOKEN", admin)], &["admin", "repo", "create", "--tenant", "staff", "laptop"]);
    let dev = arca(
        &[("ARCA_TOKEN", admin)],
        &["admin", "--json", "device", "add", "--tenant", "staff", "l1", "--repo", "laptop"],
    );
    let token = serde_json::from_str::<Value>(&dev).unwrap()["token"].as_str().unwrap().to_string();

    // The laptop backs up to the appliance and restores the same bytes.
    let src = office.dir.path().join("laptop");
    cluster::make_tree(&src);
    fs::write(src.join("big.bin"), noise(2 << 20, 9)).unwrap();
    let repo = format!("{server}/v1/repos/laptop");
    let env = [("ARCA_REPOSITORY", repo.as_str()), ("ARCA_TOKEN", token.as_str()), ("ARCA_PASSWORD", PASSWORD)];
    arca(&env, &["init"]);
    arca(&env, &["backup", src.to_str().unwrap()]);
    let out = office.dir.path().join("restored");
    arca(&env, &["restore", "latest", "--target", out.to_str().unwrap()]);
    assert_same_tree(&src, &out.join(src.strip_prefix("/").unwrap()));
    // The device token cannot delete what it backed up.
    let mut c = Command::new(arca_bin());
    c.env_remove("ARCA_LOG").env_remove("ARCA_PASSWORD_FILE");
    for (k, v) in env {
        c.env(k, v);
    }
    let forget = c.args(["forget", "latest"]).output().unwrap();
    assert!(!forget.status.success(), "a device token deleted a snapshot");
    assert!(
        String::from_utf8_lossy(&forget.stderr).contains("not allowed"),
        "{}",
        String::from_utf8_lossy(&forget.stderr)
    );
    let snaps = arca(&env, &["--json", "snapshots"]);
    assert_eq!(serde_json::from_str::<Value>(&snaps).unwrap().as_array().unwrap().len(), 1);
}

#[test]
fn a_seed_by_disk_is_imported_and_replication_then_sends_only_what_is_new() {
    let c = Cluster::start(Shape::Embedded);
    c.new_repo("acme", "office", None);
    let token = c.new_repo("acme", "office2", None);
    let office = Office::new();
    fs::write(office.share().join("archive.bin"), noise(4 << 20, 77)).unwrap();
    let app = office.start("schedule = \"*/2 * * * * *\"", "");
    app.wait_for(30, "a first snapshot", |s| s["shares"]["docs"]["snapshots"].as_u64().unwrap_or(0) >= 1);
    drop(app);

    // The appliance's repository goes to a disk, and the provider imports the disk.
    let disk = office.dir.path().join("usb-disk");
    let config = office.dir.path().join("appliance.toml");
    let out = office.command().arg("--config").arg(&config).args(["export", "--to"]).arg(&disk).output().unwrap();
    assert!(out.status.success(), "export: {}", String::from_utf8_lossy(&out.stderr));
    let out = c.admin_cmd(&c.acme_admin, &["import", "--repo", "office2", disk.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "import: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("imported"), "{}", String::from_utf8_lossy(&out.stdout));
    // Importing again sends nothing.
    let again = c.admin_ok(&c.acme_admin, &["import", "--repo", "office2", disk.to_str().unwrap()]);
    assert!(again.contains("imported 0 objects"), "{again}");

    // Replication afterwards sends only what the seed lacks: a new small file's snapshot.
    fs::write(office.share().join("new.txt"), "written after seeding\n").unwrap();
    let provider = format!("[provider]\nurl = \"{}\"\ntoken = \"{token}\"\n", c.repo_url("office2"));
    let app = office.start("schedule = \"*/2 * * * * *\"", &provider);
    let s = app.wait_for(40, "a new snapshot replicated", |s| {
        s["shares"]["docs"]["snapshots"].as_u64().unwrap_or(0) >= 2
            && s["replication"]["last_success"].is_string()
            && s["replication"]["uploaded_objects"].as_u64().unwrap_or(0) > 0
            && s["replication"]["pending_snapshots"] == 0
    });
    let sent = s["replication"]["uploaded_bytes"].as_u64().unwrap();
    assert!(sent < 1 << 20, "replication resent the seed: {sent} bytes");
    drop(app);
    c.ok("office2", &token, &["check", "--read-data"]);
    let restored = c.path("seed-restored");
    c.ok("office2", &token, &["restore", "latest", "--target", restored.to_str().unwrap()]);
    assert_same_tree(&office.share(), &restored.join(office.share().strip_prefix("/").unwrap()));
}

/// Every data pack file of a local repository.
fn data_packs(repo: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for fan in fs::read_dir(repo.join("data")).unwrap() {
        for f in fs::read_dir(fan.unwrap().path()).unwrap() {
            out.push(f.unwrap().path());
        }
    }
    out
}

#[test]
fn scheduled_drills_prove_the_newest_snapshot_and_tell_the_provider() {
    let c = Cluster::start(Shape::Embedded);
    let token = c.new_repo("acme", "office", None);
    let office = Office::new();
    fs::create_dir_all(office.share().join("sub")).unwrap();
    fs::write(office.share().join("a.txt"), "proved by a drill\n").unwrap();
    fs::write(office.share().join("sub/data.bin"), noise(2 << 20, 21)).unwrap();
    let provider = format!("[provider]\nurl = \"{}\"\ntoken = \"{token}\"\n", c.repo_url("office"));
    let drill = "[drill]\nschedule = \"*/2 * * * * *\"\nsample = 0\n";
    let app = office.start("schedule = \"*/2 * * * * *\"", &format!("{provider}{drill}"));

    // A drill restores the whole newest snapshot and checks every byte; it passes.
    let s = app.wait_for(60, "a passed drill", |s| s["shares"]["docs"]["last_drill"]["passed"] == true);
    let summary = s["shares"]["docs"]["last_drill"]["summary"].as_str().unwrap().to_string();
    assert!(summary.contains("2 of 2 files") && summary.contains("matched their stored hashes"), "{summary}");
    let page = client().get(format!("{}/status", app.base)).send().unwrap().text().unwrap();
    assert!(page.contains("last drill") && page.contains("matched their stored hashes"), "{page}");
    // The provider's console knows the office's last proven restore.
    let device = |c: &Cluster| {
        let (_, h) = c.get_json(&c.admin, "/v1/admin/health?tenant=acme");
        h["devices"].as_array().unwrap().iter().find(|d| d["device"] == "dev-office").cloned().unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while device(&c)["last_drill_at"].as_i64().unwrap_or(0) == 0 {
        assert!(Instant::now() < deadline, "no drill reached the provider: {}", device(&c));
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(device(&c)["last_drill"].as_str().unwrap().contains("share docs: snapshot"), "{}", device(&c));

    // Damage in the local repository: the next drill fails, names the damaged pack, and the
    // provider hears of it (an alert to its staff, in the audit log).
    for pack in data_packs(&office.repo()) {
        let mut bytes = fs::read(&pack).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        fs::write(&pack, bytes).unwrap();
    }
    let s = app.wait_for(60, "a failed drill", |s| s["shares"]["docs"]["last_drill"]["passed"] == false);
    let summary = s["shares"]["docs"]["last_drill"]["summary"].as_str().unwrap();
    assert!(summary.contains("files failed") && summary.contains("pack"), "{summary}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, audit) = c.get_json(&c.admin, "/v1/admin/audit?tenant=acme&limit=500");
        if audit.as_array().unwrap().iter().any(|e| e["action"] == "restore.drill" && e["outcome"] == "drill-failed") {
            break;
        }
        assert!(Instant::now() < deadline, "the failed drill never reached the provider: {audit}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `arca [--json] appliance ARGS…` against a running appliance, as one of the share's users.
fn appliance_cli(office: &Office, json: bool, args: &[&str]) -> std::process::Output {
    let mut c = Command::new(arca_bin());
    if json {
        c.arg("--json");
    }
    c.arg("appliance").args(args).env("ARCA_SHARE_PASSWORD", USER_PASSWORD).env_remove("ARCA_LOG");
    c.current_dir(office.dir.path()).output().unwrap()
}

/// The names under a collection, from a `Depth: 1` PROPFIND (the collection itself left out).
fn dav_names(app: &Appliance, path: &str) -> Vec<String> {
    let r = app.dav("PROPFIND", path).header("Depth", "1").send().unwrap();
    assert_eq!(r.status().as_u16(), 207, "PROPFIND {path}");
    let xml = r.text().unwrap();
    let prefix = format!("/dav/docs{path}");
    xml.split("<D:href>")
        .skip(1)
        .filter_map(|s| s.split('<').next())
        .filter_map(|href| href.strip_prefix(&prefix))
        .map(|s| s.trim_end_matches('/').to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

#[test]
fn cut_off_uploads_stay_out_of_snapshots_and_are_swept_and_snapshot_now_works() {
    let office = Office::new();
    // Temporary files of uploads cut off by a kill of an earlier run.
    fs::create_dir_all(office.share().join("sub")).unwrap();
    let stale = [
        office.share().join(".arca-upload-0123456789abcdef"),
        office.share().join("sub/.arca-upload-feedfacecafebeef"),
    ];
    for f in &stale {
        fs::write(f, b"half an upload").unwrap();
    }
    fs::write(office.share().join("sub/kept.txt"), b"a user's file\n").unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let app = office.start("", "");
    // No schedule: the status warns, `appliance status` says so and exits 3.
    let s = app.status();
    let warning = s["shares"]["docs"]["warning"].as_str().unwrap_or_else(|| panic!("no warning in {s:#}"));
    assert!(warning.contains("no schedule"), "{warning}");
    let out = appliance_cli(&office, false, &["status", "--url", &app.base]);
    assert_eq!(out.status.code(), Some(3), "status: {}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stdout).contains("no schedule"));

    let deadline = Instant::now() + Duration::from_secs(10);
    while stale.iter().any(|f| f.exists()) {
        assert!(Instant::now() < deadline, "the cut-off uploads' temporary files were not removed");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(office.share().join("sub/kept.txt").exists());
    // An upload in flight (its temporary file is newer than the start) is neither swept nor snapshotted.
    let live = office.share().join(".arca-upload-00000000aaaaaaaa");
    fs::write(&live, b"an upload in flight").unwrap();
    assert!(app.dav("PUT", "/report.txt").body("quarterly figures\n").send().unwrap().status().is_success());

    // Snapshot now, from the command line.
    let out = appliance_cli(&office, true, &["snapshot", "--share", "docs", "--user", USER, "--url", &app.base]);
    assert!(out.status.success(), "snapshot: {}", String::from_utf8_lossy(&out.stderr));
    let done: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(done["files"], 2, "{done:#}");
    assert_eq!(app.snapshot_count(), 1);
    assert!(live.exists(), "a live upload's temporary file was removed");
    // The snapshot holds the files, not the temporary ones.
    let versions = dav_names(&app, "/.snapshots/");
    assert_eq!(versions.len(), 1, "{versions:?}");
    let root = format!("/.snapshots/{}/", versions[0]);
    let mut names = dav_names(&app, &root);
    names.sort();
    assert_eq!(names, ["report.txt", "sub"]);
    assert_eq!(dav_names(&app, &format!("{root}sub/")), ["kept.txt"]);
    // Previous versions are reachable by path, but a plain recursive copy of the root does not see them.
    let mut top = dav_names(&app, "/");
    top.sort();
    assert!(!top.iter().any(|n| n.contains("snapshots")), "{top:?}");
    assert!(!top.iter().any(|n| n.starts_with(".arca-upload")), "{top:?}");

    // A wrong password and an unknown share are refused with a clear error.
    let mut c = Command::new(arca_bin());
    let out = c
        .args(["appliance", "snapshot", "--share", "docs", "--user", USER, "--url", &app.base])
        .env("ARCA_SHARE_PASSWORD", "wrong")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("wrong user name or password"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = appliance_cli(&office, false, &["snapshot", "--share", "nope", "--user", USER, "--url", &app.base]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("there is no share nope"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(app.snapshot_count(), 1);
}

#[test]
fn webdav_refuses_windows_names_foreign_destinations_and_infinite_depth() {
    use std::os::unix::fs::PermissionsExt;
    let office = Office::new();
    let app = office.start("schedule = \"0 0 3 * * *\"", "");
    assert!(app.dav("PUT", "/report.txt").body("figures\n").send().unwrap().status().is_success());
    for name in [
        "a%3Ab.txt",
        "what%3F",
        "star*",
        "q%22uote",
        "%3Cx%3E",
        "pipe%7C",
        "back%5Cslash",
        "dot.",
        "space%20",
        "CON",
        "con.txt",
        "LPT1.log",
    ] {
        let r = app.dav("PUT", &format!("/{name}")).body("x").send().unwrap();
        assert_eq!(r.status().as_u16(), 400, "PUT {name}");
        let r = app.dav("MKCOL", &format!("/{name}/")).send().unwrap();
        assert_eq!(r.status().as_u16(), 400, "MKCOL {name}");
        let r = app.dav("COPY", "/report.txt").header("Destination", app.url(&format!("/{name}"))).send().unwrap();
        assert_eq!(r.status().as_u16(), 400, "COPY to {name}");
        let r = app.dav("MOVE", "/report.txt").header("Destination", app.url(&format!("/{name}"))).send().unwrap();
        assert_eq!(r.status().as_u16(), 400, "MOVE to {name}");
    }
    let mut on_disk: Vec<String> =
        fs::read_dir(office.share()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    on_disk.sort();
    assert_eq!(on_disk, ["report.txt"]);
    // Names Windows holds are taken.
    for name in ["Quarterly%20report%20(v2).xlsx", "console.txt", "%C3%A9t%C3%A9.txt"] {
        let r = app.dav("PUT", &format!("/{name}")).body("x").send().unwrap();
        assert!(r.status().is_success(), "PUT {name}: {}", r.status());
    }

    // COPY and MOVE stay in the share: another host 502, dot segments 400, no Destination 400.
    let r =
        app.dav("COPY", "/report.txt").header("Destination", "http://elsewhere.example/dav/docs/x.txt").send().unwrap();
    assert_eq!(r.status().as_u16(), 502);
    let dest = format!("{}/dav/docs/../../etc/x.txt", app.base);
    let r = app.dav("COPY", "/report.txt").header("Destination", dest).send().unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let r = app.dav("MOVE", "/report.txt").send().unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let r =
        app.dav("COPY", "/report.txt").header("Destination", format!("{}/dav/other/x.txt", app.base)).send().unwrap();
    assert_eq!(r.status().as_u16(), 502);
    assert!(office.share().join("report.txt").exists());
    let r = app.dav("COPY", "/report.txt").header("Destination", app.url("/copy.txt")).send().unwrap();
    assert!(r.status().is_success(), "COPY inside the share: {}", r.status());

    // PROPFIND Depth: infinity is refused as RFC 4918 says.
    let r = app.dav("PROPFIND", "/").header("Depth", "infinity").send().unwrap();
    assert_eq!(r.status().as_u16(), 403);
    assert!(r.text().unwrap().contains("propfind-finite-depth"));

    // Folders and files are made for the office's other tools to read (0755 / 0644).
    assert!(app.dav("MKCOL", "/projects/").send().unwrap().status().is_success());
    assert!(app.dav("PUT", "/projects/plan.txt").body("plan\n").send().unwrap().status().is_success());
    let mode = |p: &str| fs::metadata(office.share().join(p)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode("projects"), 0o755);
    assert_eq!(mode("projects/plan.txt"), 0o644);

    // A second appliance on the same data directory is refused while the first runs.
    let mut second = office
        .command()
        .arg("--config")
        .arg(office.dir.path().join("appliance.toml"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = second.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = second.kill();
            panic!("a second appliance on the same data directory kept running");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut second.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!status.success());
    assert!(err.contains("another appliance") && err.contains(&app.child.id().to_string()), "{err}");
    // The first one still serves.
    assert!(app.dav("GET", "/report.txt").send().unwrap().status().is_success());
}

#[test]
fn an_unreachable_provider_shows_the_backlog_and_alerts() {
    let office = Office::new();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let provider = format!(
        "[provider]\nurl = \"http://127.0.0.1:{closed}/v1/repos/office\"\ntoken = \"arca_dev_unreachable\"\n\
         backlog_alert_bytes = \"1 KiB\"\n"
    );
    let app = office.start("", &provider);
    app.wait_for(20, "a failed replication pass", |s| s["replication"]["last_error"].is_string());
    let s = app.status();
    assert_eq!(s["replication"]["pending_snapshots"], 0, "{s:#}");
    assert!(s["replication"]["alert"].is_null(), "{s:#}");
    fs::write(office.share().join("ledger.xlsx"), noise(300_000, 7)).unwrap();
    let out = appliance_cli(&office, true, &["snapshot", "--share", "docs", "--user", USER, "--url", &app.base]);
    assert!(out.status.success(), "snapshot: {}", String::from_utf8_lossy(&out.stderr));
    let s = app.wait_for(20, "the backlog", |s| s["replication"]["pending_snapshots"].as_u64() == Some(1));
    let r = &s["replication"];
    assert!(r["pending_bytes"].as_u64().unwrap() > 300_000, "{s:#}");
    assert!(r["oldest_pending"].is_string(), "{s:#}");
    let alert = r["alert"].as_str().unwrap_or_else(|| panic!("no alert: {s:#}"));
    assert!(alert.contains("off-site backups are behind") && alert.contains("1 snapshots wait"), "{alert}");
    // The status page and the command line show it; the command exits 3.
    let page = client().get(format!("{}/status", app.base)).send().unwrap().text().unwrap();
    assert!(page.contains("backlog-alert"), "the status page shows no alert");
    let out = appliance_cli(&office, false, &["status", "--url", &app.base]);
    assert_eq!(out.status.code(), Some(3));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("1 snapshots") && text.contains("oldest snapshot not yet at the provider"), "{text}");
}

/// Whether Samba, smbclient, nss_wrapper and FUSE are here; panics if not, unless
/// `ARCA_TEST_ALLOW_MISSING_SERVICES=1`.
fn have_samba() -> bool {
    let missing: Vec<&str> = [
        ("/usr/sbin/smbd", "samba"),
        ("/usr/bin/smbclient", "smbclient"),
        ("/usr/lib/x86_64-linux-gnu/libnss_wrapper.so", "libnss-wrapper"),
        ("/usr/bin/fusermount3", "fuse3"),
        ("/dev/fuse", "the fuse kernel module"),
    ]
    .into_iter()
    .filter(|(path, _)| !Path::new(path).exists())
    .map(|(_, package)| package)
    .collect();
    if missing.is_empty() {
        return true;
    }
    if std::env::var("ARCA_TEST_ALLOW_MISSING_SERVICES").as_deref() != Ok("1") {
        panic!("missing for the SMB test: {missing:?} (apt-get install samba smbclient libnss-wrapper fuse3, or set ARCA_TEST_ALLOW_MISSING_SERVICES=1 to skip)");
    }
    eprintln!("SKIPPED: {missing:?} missing; the SMB test did not run");
    false
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Runs smbclient's `commands` on `//127.0.0.1/share` in `cwd`; returns its exit success and
/// everything it printed.
fn smbclient(port: u16, share: &str, user: &str, password: &str, commands: &str, cwd: &Path) -> (bool, String) {
    let out = Command::new("smbclient")
        .arg(format!("//127.0.0.1/{share}"))
        .args(["-p", &port.to_string(), "-U", &format!("{user}%{password}"), "-c", commands])
        .current_dir(cwd)
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// `@GMT-…` tokens in smbclient's `allinfo` output, newest first as Samba sorts them.
fn gmt_tokens(allinfo: &str) -> Vec<String> {
    let mut tokens: Vec<String> =
        allinfo.lines().map(str::trim).filter(|l| l.starts_with("@GMT-") && l.len() == 24).map(String::from).collect();
    tokens.dedup();
    tokens
}

#[test]
fn smb_serves_the_share_with_previous_versions_and_per_share_users() {
    if !have_samba() {
        return;
    }
    let office = Office::new();
    let port = free_port();
    let bob_lines = hash_lines("bob's own password");
    let app = office
        .start(r#"users = ["alice"]"#, &format!("[users.bob]\n{bob_lines}\n[smb]\nlisten = \"127.0.0.1:{port}\"\n"));
    assert!(app.status()["smb"].as_str().unwrap_or_default().contains("serving"), "{:#}", app.status());
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let smb = |commands: &str| smbclient(port, "docs", USER, USER_PASSWORD, commands, w);

    // Write, read back by hash (3 MiB of noise and a small file).
    let v1 = noise(3 << 20, 1);
    fs::write(w.join("big.bin"), &v1).unwrap();
    fs::write(w.join("note.txt"), b"version one\n").unwrap();
    let (ok, out) = smb("put big.bin; put note.txt; mkdir sub; put note.txt sub\\nested.txt");
    assert!(ok, "{out}");
    let (ok, out) = smb("get big.bin back.bin");
    assert!(ok, "{out}");
    assert_eq!(blake3::hash(&fs::read(w.join("back.bin")).unwrap()), blake3::hash(&v1));
    // The same files over WebDAV, owned by the same user, folders 0755.
    let r = app.dav("GET", "/note.txt").send().unwrap();
    assert_eq!(r.bytes().unwrap().as_ref(), b"version one\n");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(fs::metadata(office.share().join("sub")).unwrap().permissions().mode() & 0o777, 0o755);
    // A WebDAV upload's temporary file is not shown over SMB.
    fs::write(office.share().join(".arca-upload-00000000bbbbbbbb"), b"in flight").unwrap();
    let (_, listing) = smb("ls");
    assert!(listing.contains("big.bin") && !listing.contains(".arca-upload"), "{listing}");

    // Two snapshots of changing files: previous versions list them and serve the old bytes.
    let snapshot = || {
        let r =
            client().post(format!("{}/snapshot/docs", app.base)).basic_auth(USER, Some(USER_PASSWORD)).send().unwrap();
        assert!(r.status().is_success(), "snapshot now: {}", r.text().unwrap());
        // GMT tokens have one-second resolution.
        std::thread::sleep(Duration::from_millis(1100));
    };
    snapshot();
    fs::write(w.join("note.txt"), b"version two\n").unwrap();
    let v2 = noise(3 << 20, 2);
    fs::write(w.join("big.bin"), &v2).unwrap();
    let (ok, out) = smb("put note.txt; put big.bin");
    assert!(ok, "{out}");
    snapshot();
    fs::write(w.join("note.txt"), b"version three\n").unwrap();
    let (ok, out) = smb("put note.txt");
    assert!(ok, "{out}");

    let (ok, info) = smb("allinfo note.txt");
    assert!(ok, "{info}");
    let tokens = gmt_tokens(&info);
    assert_eq!(tokens.len(), 2, "two previous versions expected in:\n{info}");
    let (newer, older) = (&tokens[0], &tokens[1]);
    assert!(newer > older, "{tokens:?}");
    let (ok, out) = smb(&format!("get {older}\\note.txt old1.txt; get {newer}\\note.txt old2.txt; get {older}\\big.bin oldbig.bin; get {older}\\sub\\nested.txt oldnested.txt"));
    assert!(ok, "{out}");
    assert_eq!(fs::read(w.join("old1.txt")).unwrap(), b"version one\n");
    assert_eq!(fs::read(w.join("old2.txt")).unwrap(), b"version two\n");
    assert_eq!(blake3::hash(&fs::read(w.join("oldbig.bin")).unwrap()), blake3::hash(&v1));
    assert_eq!(fs::read(w.join("oldnested.txt")).unwrap(), b"version one\n");
    // Previous versions are read-only.
    let (_, out) = smb(&format!("put note.txt {older}\\note.txt"));
    assert!(out.contains("NT_STATUS_"), "writing into a previous version: {out}");
    assert_eq!(
        smb(&format!("get {older}\\note.txt again.txt")).0.then(|| fs::read(w.join("again.txt")).unwrap()),
        Some(b"version one\n".to_vec())
    );

    // macOS: the read-only docs-versions share shows the snapshots as folders.
    let (ok, out) = smbclient(port, "docs-versions", USER, USER_PASSWORD, "ls", w);
    assert!(ok, "{out}");
    let folders: Vec<&str> = out
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("20") && l.contains(" D "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(folders.len(), 2, "{out}");
    let (ok, out) =
        smbclient(port, "docs-versions", USER, USER_PASSWORD, &format!("get {}\\note.txt mac.txt", folders[0]), w);
    assert!(ok, "{out}");
    assert_eq!(fs::read(w.join("mac.txt")).unwrap(), b"version one\n");
    let (_, out) = smbclient(port, "docs-versions", USER, USER_PASSWORD, &format!("mkdir {}\\x", folders[0]), w);
    assert!(out.contains("NT_STATUS_"), "the versions share took a write: {out}");

    // Strangers, wrong passwords and users of other shares are refused.
    let (ok, out) = smbclient(port, "docs", USER, "not the password", "ls", w);
    assert!(!ok && out.contains("NT_STATUS_LOGON_FAILURE"), "{out}");
    let (ok, out) = smbclient(port, "docs", "mallory", USER_PASSWORD, "ls", w);
    assert!(!ok && out.contains("NT_STATUS_LOGON_FAILURE"), "{out}");
    let (ok, out) = smbclient(port, "docs", "bob", "bob's own password", "ls", w);
    assert!(!ok && out.contains("NT_STATUS_ACCESS_DENIED"), "bob is not a user of docs: {out}");

    // The appliance killed outright: smbd goes with it, and the next start serves again on the
    // same data directory (the dead previous-versions mount is cleared).
    let mut app = app;
    let _ = app.child.kill();
    let _ = app.child.wait();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
        assert!(Instant::now() < deadline, "smbd outlived the appliance");
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(app);
    let app = office
        .start(r#"users = ["alice"]"#, &format!("[users.bob]\n{bob_lines}\n[smb]\nlisten = \"127.0.0.1:{port}\"\n"));
    let (ok, info) = smb("allinfo note.txt; get note.txt now.txt");
    assert!(ok, "{info}");
    assert_eq!(gmt_tokens(&info).len(), 2, "{info}");
    assert_eq!(fs::read(w.join("now.txt")).unwrap(), b"version three\n");
    drop(app);
}

#[test]
fn https_serves_the_share_with_a_self_signed_certificate_kept_across_restarts() {
    let office = Office::new();
    let app = office.start("", "[tls]\nnames = [\"nas.office.lan\"]\n");
    assert!(app.base.starts_with("https://127.0.0.1:"), "{}", app.base);
    let cert_file = office.dir.path().join("state/tls/cert.pem");
    let key_file = office.dir.path().join("state/tls/key.pem");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(fs::metadata(&key_file).unwrap().permissions().mode() & 0o777, 0o600);
    let pem = fs::read(&cert_file).unwrap();
    let trusting = Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let url = format!("{}/dav/docs/over-tls.txt", app.base);
    let r = trusting.put(&url).basic_auth(USER, Some(USER_PASSWORD)).body("sealed in transit\n").send().unwrap();
    assert!(r.status().is_success(), "PUT over HTTPS: {}", r.status());
    let r = trusting.get(&url).basic_auth(USER, Some(USER_PASSWORD)).send().unwrap();
    assert_eq!(r.bytes().unwrap().as_ref(), b"sealed in transit\n");
    assert_eq!(fs::read(office.share().join("over-tls.txt")).unwrap(), b"sealed in transit\n");
    // A client that does not trust the certificate is stopped by it; plain HTTP gets no answer.
    let err = client().get(&url).basic_auth(USER, Some(USER_PASSWORD)).send().unwrap_err();
    assert!(format!("{err:?}").to_lowercase().contains("certificate"), "{err:?}");
    let plain = app.base.replacen("https://", "http://", 1);
    assert!(client().get(format!("{plain}/status.json")).send().is_err(), "plain HTTP was answered");
    // The command line reads the configuration, speaks HTTPS and trusts the appliance's certificate.
    let out = office
        .command()
        .args(["--config"])
        .arg(office.dir.path().join("appliance.toml"))
        .args(["status", "--url", &app.base])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "status (3: the share has no schedule): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("share docs"), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("did not answer"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A restart serves the same certificate: clients that trusted it keep working.
    drop(app);
    let app = office.start("", "[tls]\nnames = [\"nas.office.lan\"]\n");
    assert_eq!(fs::read(&cert_file).unwrap(), pem);
    let r = trusting
        .get(format!("{}/dav/docs/over-tls.txt", app.base))
        .basic_auth(USER, Some(USER_PASSWORD))
        .send()
        .unwrap();
    assert!(r.status().is_success());
}

#[test]
fn the_admin_page_signs_in_takes_snapshots_and_manages_users_without_a_restart() {
    if !browser::available() || !have_samba() {
        return;
    }
    const ADMIN_PASSWORD: &str = "the office admin's password";
    let out = Command::new(arca_bin())
        .args(["appliance", "hash-password"])
        .env("ARCA_NEW_PASSWORD", ADMIN_PASSWORD)
        .output()
        .unwrap();
    assert!(out.status.success());
    let admin_hash = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let office = Office::new();
    let port = free_port();
    let extra = format!("[tls]\n[admin]\npassword_hash = \"{admin_hash}\"\n[smb]\nlisten = \"127.0.0.1:{port}\"\n");
    let app = office.start("", &extra);
    let pem = fs::read(office.dir.path().join("state/tls/cert.pem")).unwrap();
    let https = Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let dav_status = |user: &str, password: &str| -> u16 {
        https
            .request(Method::from_bytes(b"PROPFIND").unwrap(), format!("{}/dav/docs/", app.base))
            .header("Depth", "0")
            .basic_auth(user, Some(password))
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    let work = tempfile::tempdir().unwrap();

    // Forms without the session's CSRF token are refused, signed in or not.
    let r = https
        .post(format!("{}/admin/users", app.base))
        .form(&[("name", "eve"), ("password", "eve's password"), ("again", "eve's password")])
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let r = https.post(format!("{}/admin/signin", app.base)).form(&[("password", ADMIN_PASSWORD)]).send().unwrap();
    assert_eq!(r.status().as_u16(), 303);
    let cookie = r.headers()[reqwest::header::SET_COOKIE].to_str().unwrap().to_string();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict") && cookie.contains("Secure"), "{cookie}");
    let session = cookie.split(';').next().unwrap().to_string();
    let r = https
        .post(format!("{}/admin/users", app.base))
        .header(reqwest::header::COOKIE, &session)
        .form(&[("name", "eve"), ("password", "eve's password"), ("again", "eve's password"), ("csrf", "guessed")])
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    assert_eq!(dav_status("eve", "eve's password"), 401);
    let page = https.get(format!("{}/admin", app.base)).header(reqwest::header::COOKIE, &session).send().unwrap();
    let csp = page.headers()[reqwest::header::CONTENT_SECURITY_POLICY].to_str().unwrap().to_string();
    assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"), "{csp}");

    let shots = office.dir.path().join("shots");
    let mut b = browser::Browser::start(&shots);
    b.go(&format!("{}/admin", app.base));
    b.wait_url("/admin/signin");
    b.fill("#password", "not the password");
    b.click_to_page("#signin");
    b.wait_source("Wrong password");
    b.fill("#password", ADMIN_PASSWORD);
    b.click_to_page("#signin");
    b.wait_source("Snapshot now");
    assert_eq!(b.text("#snapshots-docs"), "0");
    b.screenshot("admin-dashboard");

    // Snapshot now.
    fs::write(office.share().join("plan.txt"), b"the plan\n").unwrap();
    b.click_to_page("#snapshot-docs");
    b.wait_source("Share docs: snapshot");
    assert!(b.text("#message").contains("Share docs: snapshot"), "{}", b.text("#message"));
    assert_eq!(b.text("#snapshots-docs"), "1");

    // Browse the snapshot and restore an old version of a changed file, and download one.
    fs::write(office.share().join("plan.txt"), b"a worse plan\n").unwrap();
    b.click_to_page("#versions-docs");
    b.wait_source("all snapshots");
    b.click_to_page("table a"); // the (only) snapshot
    b.wait_source("plan.txt");
    b.click("tr[data-name='plan.txt'] a[download]");
    let downloaded = b.wait_download("plan.txt");
    assert_eq!(fs::read(&downloaded).unwrap(), b"the plan\n");
    b.click_to_page("tr[data-name='plan.txt'] button");
    b.wait_source("restored from the snapshot");
    assert_eq!(fs::read(office.share().join("plan.txt")).unwrap(), b"the plan\n");
    let leftovers: Vec<_> = fs::read_dir(office.share())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".arca-upload"))
        .collect();
    assert!(leftovers.is_empty(), "the restore left its temporary file");
    b.screenshot("admin-versions");
    // Paths that climb out are refused.
    let r = https
        .get(format!("{}/admin/versions/docs/file?path=..%2F..%2Fetc%2Fpasswd", app.base))
        .header(reqwest::header::COOKIE, &session)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);

    // Export to a disk: refused into a share, then done in the background into a folder.
    b.go(&format!("{}/admin", app.base));
    b.fill("#export-path", &office.share().display().to_string());
    b.click_to_page("#export-start");
    b.wait_source("outside the repository and the shares");
    let usb = office.dir.path().join("usb");
    fs::create_dir_all(&usb).unwrap();
    b.fill("#export-path", &usb.display().to_string());
    b.click_to_page("#export-start");
    b.wait_source("has started");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        b.go(&format!("{}/admin", app.base));
        let state = b.text("#export-state");
        if state.starts_with("exported") {
            break;
        }
        assert!(!state.contains("failed"), "{state}");
        assert!(Instant::now() < deadline, "the export did not finish: {state}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = Command::new(arca_bin())
        .args(["--json", "snapshots", "-r"])
        .arg(&usb)
        .env("ARCA_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    assert!(out.status.success(), "the exported repository: {}", String::from_utf8_lossy(&out.stderr));
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");

    // Adding a user: a mismatch is shown on the form, the typed name kept; then it works.
    b.fill("#new-name", "carol");
    b.fill("#new-password", "carol's password");
    b.fill("#new-again", "carol's passwore");
    b.click_to_page("#add");
    b.wait_source("differ");
    assert_eq!(b.attr("#new-name", "value"), "carol");
    b.fill("#new-password", "carol's password");
    b.fill("#new-again", "carol's password");
    b.click_to_page("#add");
    b.wait_source("User carol added");
    assert_eq!(dav_status("carol", "carol's password"), 207, "carol over WebDAV at once");
    let (ok, out) = smbclient(port, "docs", "carol", "carol's password", "ls", work.path());
    assert!(ok && out.contains("plan.txt"), "carol over SMB at once: {out}");

    // A new share, for carol only: served at once over WebDAV and SMB, snapshots included.
    let accounts = office.dir.path().join("accounts");
    fs::create_dir_all(&accounts).unwrap();
    fs::write(accounts.join("ledger.txt"), b"credits and debits\n").unwrap();
    b.fill("#share-name", "accounts");
    b.fill("#share-path", &office.share().join("sub").display().to_string());
    fs::create_dir_all(office.share().join("sub")).unwrap();
    b.click("#add-share input[name='user:carol']");
    b.click_to_page("#share-add");
    b.wait_source("overlaps share docs");
    assert_eq!(b.attr("#share-name", "value"), "accounts", "the typed name is kept");
    b.fill("#share-path", &accounts.display().to_string());
    b.click_to_page("#share-add");
    b.wait_source("Share accounts added");
    let share_status = |user: &str, password: &str| -> u16 {
        https
            .request(Method::from_bytes(b"PROPFIND").unwrap(), format!("{}/dav/accounts/", app.base))
            .header("Depth", "1")
            .basic_auth(user, Some(password))
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(share_status("carol", "carol's password"), 207);
    assert_eq!(share_status(USER, USER_PASSWORD), 403, "alice is not a user of accounts");
    let (ok, out) = smbclient(port, "accounts", "carol", "carol's password", "ls", work.path());
    assert!(ok && out.contains("ledger.txt"), "the new share over SMB: {out}");
    let (ok, out) = smbclient(port, "accounts", USER, USER_PASSWORD, "ls", work.path());
    assert!(!ok && out.contains("NT_STATUS_ACCESS_DENIED"), "{out}");
    b.click_to_page("#snapshot-accounts");
    b.wait_source("Share accounts: snapshot");
    fs::write(accounts.join("ledger.txt"), b"more debits\n").unwrap();
    let (ok, info) = smbclient(port, "accounts", "carol", "carol's password", "allinfo ledger.txt", work.path());
    assert!(ok && gmt_tokens(&info).len() == 1, "previous versions of the new share: {info}");
    // Now for alice too.
    b.click("#share-accounts form.access input[name='user:alice']");
    b.click_to_page("#share-accounts form.access button");
    b.wait_source("Share accounts is now for alice, carol");
    assert_eq!(share_status(USER, USER_PASSWORD), 207);
    assert!(smbclient(port, "accounts", USER, USER_PASSWORD, "ls", work.path()).0);
    // Removed: no longer served; the folder stays.
    b.click("#share-accounts form.remove input[name=confirm]");
    b.click_to_page("#share-accounts form.remove button");
    b.wait_source("Share accounts removed");
    assert_eq!(share_status("carol", "carol's password"), 404);
    let (ok, out) = smbclient(port, "accounts", "carol", "carol's password", "ls", work.path());
    assert!(!ok && out.contains("NT_STATUS_BAD_NETWORK_NAME"), "{out}");
    assert!(accounts.join("ledger.txt").exists());

    // Changing alice's password: the old one stops at once, over WebDAV and SMB.
    assert_eq!(dav_status(USER, USER_PASSWORD), 207);
    b.fill("#user-alice input[name=password]", "alice's new password");
    b.fill("#user-alice input[name=again]", "alice's new password");
    b.click_to_page("#user-alice form[action$=password] button");
    b.wait_source("password of alice is changed");
    assert_eq!(dav_status(USER, USER_PASSWORD), 401);
    assert_eq!(dav_status(USER, "alice's new password"), 207);
    assert!(!smbclient(port, "docs", USER, USER_PASSWORD, "ls", work.path()).0);
    assert!(smbclient(port, "docs", USER, "alice's new password", "ls", work.path()).0);

    // Removing carol needs the confirmation box.
    b.click("#user-carol input[name=confirm]");
    b.click_to_page("#user-carol form[action$=remove] button");
    b.wait_source("User carol removed");
    assert_eq!(dav_status("carol", "carol's password"), 401);
    assert!(!smbclient(port, "docs", "carol", "carol's password", "ls", work.path()).0);
    b.screenshot("admin-after-changes");

    // Signing out ends the session.
    b.click("#signout");
    b.wait_url("/admin/signin");
    b.go(&format!("{}/admin", app.base));
    b.wait_url("/admin/signin");

    // A restart keeps what the page changed.
    drop(app);
    let app = office.start("", &extra);
    let r = https
        .request(Method::from_bytes(b"PROPFIND").unwrap(), format!("{}/dav/docs/", app.base))
        .header("Depth", "0")
        .basic_auth(USER, Some("alice's new password"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 207);
    let kept = fs::read_to_string(office.dir.path().join("state/users.toml")).unwrap();
    assert!(kept.contains("[users.alice]") && !kept.contains("carol"), "{kept}");
    let shares = fs::read_to_string(office.dir.path().join("state/shares.toml")).unwrap();
    assert!(shares.contains("[shares.docs]") && !shares.contains("accounts"), "{shares}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(fs::metadata(office.dir.path().join("state/users.toml")).unwrap().permissions().mode() & 0o777, 0o600);
}
