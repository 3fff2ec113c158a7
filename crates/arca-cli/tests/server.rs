//! End-to-end tests of `arca server`: the real server binary on a loopback port, driven by the real
//! `arca` client through `-r http://…` and by raw HTTP requests for what the client never sends.

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use tempfile::TempDir;

const PASSWORD: &str = "correct horse battery staple";
const ADMIN: &str = "admin-token-0123456789";
const DEVICE: &str = "device-token-acme-0123456789";
const OTHER: &str = "device-token-other-0123456789";

/// Parses a listing answer.
trait JsonList {
    fn json_list(self) -> Vec<serde_json::Value>;
}

impl JsonList for reqwest::blocking::Response {
    fn json_list(self) -> Vec<serde_json::Value> {
        let status = self.status();
        let body = self.bytes().unwrap();
        assert!(status.is_success(), "{status}: {}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).unwrap()
    }
}

fn arca_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_arca"))
}

/// A running `arca server`, killed when dropped.
struct Server {
    child: Child,
    base: String,
    dir: TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let (child, base) = Self::spawn(&dir);
        Server { child, base, dir }
    }

    /// SIGKILLs the server and starts a new one on the same data directory (a new port).
    fn kill_and_restart(&mut self) {
        self.child.kill().unwrap(); // SIGKILL: no graceful shutdown, writes cut wherever they are
        self.child.wait().unwrap();
        let (child, base) = Self::spawn(&self.dir);
        self.child = child;
        self.base = base;
    }

    fn spawn(dir: &TempDir) -> (Child, String) {
        let tokens = format!(
            "[[token]]\nhash = \"{}\"\nrole = \"admin\"\n\n\
             [[token]]\nhash = \"{}\"\nrepo = \"acme\"\nrole = \"device\"\n\n\
             [[token]]\nhash = \"{}\"\nrepo = \"other\"\nrole = \"device\"\n",
            blake3::hash(ADMIN.as_bytes()).to_hex(),
            blake3::hash(DEVICE.as_bytes()).to_hex(),
            blake3::hash(OTHER.as_bytes()).to_hex(),
        );
        fs::write(dir.path().join("tokens.toml"), tokens).unwrap();
        let mut child = Command::new(arca_bin())
            .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("data"))
            .arg("--tokens")
            .arg(dir.path().join("tokens.toml"))
            .env_remove("ARCA_LOG")
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let addr = line.trim().rsplit("http://").next().unwrap().to_string();
        assert!(line.contains("listening on http://127.0.0.1:"), "unexpected first line {line:?}");
        (child, format!("http://{addr}"))
    }

    fn repo_url(&self, repo: &str) -> String {
        format!("{}/v1/repos/{repo}", self.base)
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `arca` against repository `repo` of this server with `token`.
    fn arca(&self, repo: &str, token: &str) -> Command {
        let mut c = Command::new(arca_bin());
        for var in ["ARCA_PASSWORD_FILE", "ARCA_HOST", "ARCA_LOG", "RUST_LOG", "ARCA_TOKEN"] {
            c.env_remove(var);
        }
        c.env("ARCA_REPOSITORY", self.repo_url(repo))
            .env("ARCA_PASSWORD", PASSWORD)
            .env("ARCA_TOKEN", token)
            .env("ARCA_KDF_MEMORY_KIB", "64")
            .env("ARCA_KDF_ITERATIONS", "1");
        c
    }

    fn ok(&self, token: &str, args: &[&str]) -> String {
        let out = self.arca("acme", token).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "arca {args:?} failed with {:?}:\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Sends a request with `path` exactly as given; returns the status code.
    fn raw(&self, method: &str, path: &str, token: &str) -> u16 {
        use std::io::Write;
        let addr = self.base.trim_start_matches("http://");
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
    }

    fn http(&self) -> reqwest::blocking::Client {
        reqwest::blocking::Client::new()
    }
}

fn make_tree(root: &Path) {
    fs::create_dir_all(root.join("sub/deeper")).unwrap();
    fs::write(root.join("a.txt"), b"hello, server\n").unwrap();
    fs::write(root.join("sub/b.bin"), (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect::<Vec<u8>>()).unwrap();
    fs::write(root.join("sub/deeper/c.txt"), "x".repeat(10_000)).unwrap();
    fs::write(root.join("empty"), b"").unwrap();
}

fn assert_same_tree(a: &Path, b: &Path) {
    for entry in fs::read_dir(a).unwrap() {
        let entry = entry.unwrap();
        let other = b.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            assert_same_tree(&entry.path(), &other);
        } else {
            let mut x = Vec::new();
            let mut y = Vec::new();
            fs::File::open(entry.path()).unwrap().read_to_end(&mut x).unwrap();
            fs::File::open(&other).unwrap().read_to_end(&mut y).unwrap();
            assert!(x == y, "{} differs after restore", other.display());
        }
    }
}

fn snapshot_ids(s: &Server, token: &str) -> Vec<String> {
    let out = s.ok(token, &["snapshots", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v.as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap().to_string()).collect()
}

#[test]
fn backup_restore_check_through_the_server_and_devices_cannot_delete() {
    let s = Server::start();
    let out = s.ok(DEVICE, &["init"]);
    assert!(out.contains("created arca repository"), "{out}");
    let src = s.path("src");
    make_tree(&src);
    s.ok(DEVICE, &["backup", src.to_str().unwrap()]);
    let ids = snapshot_ids(&s, DEVICE);
    assert_eq!(ids.len(), 1);

    let target = s.path("restored");
    s.ok(DEVICE, &["restore", "latest", "--target", target.to_str().unwrap()]);
    let restored = target.join(src.strip_prefix("/").unwrap());
    assert_same_tree(&src, &restored);
    s.ok(DEVICE, &["check", "--read-data"]);

    // A device token cannot forget snapshots.
    let out = s.arca("acme", DEVICE).args(["forget", &ids[0]]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("delete not allowed"), "{err}");
    assert_eq!(snapshot_ids(&s, DEVICE), ids);
    // Its locks were removed nevertheless (a device may delete its own locks).
    let locks: Vec<serde_json::Value> =
        s.http().get(format!("{}/locks/", s.repo_url("acme"))).bearer_auth(DEVICE).send().unwrap().json_list();
    assert!(locks.is_empty(), "{locks:?}");

    // An admin token can.
    s.ok(ADMIN, &["forget", &ids[0]]);
    assert!(snapshot_ids(&s, ADMIN).is_empty());
}

#[test]
fn raw_requests_are_checked() {
    let s = Server::start();
    s.ok(ADMIN, &["init"]);
    let http = s.http();
    let repo = s.repo_url("acme");

    // A pack whose bytes do not match its name is refused and not stored.
    let body = b"some pack bytes".to_vec();
    let wrong = blake3::hash(b"other bytes").to_hex().to_string();
    let r = http.put(format!("{repo}/data/{wrong}")).bearer_auth(DEVICE).body(body.clone()).send().unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert!(r.text().unwrap().contains("nothing was stored"));
    let listed: Vec<serde_json::Value> =
        http.get(format!("{repo}/data/")).bearer_auth(DEVICE).send().unwrap().json_list();
    assert!(listed.is_empty(), "{listed:?}");

    // The right name is accepted, read back, ranged and listed.
    let right = blake3::hash(&body).to_hex().to_string();
    let r = http.put(format!("{repo}/data/{right}")).bearer_auth(DEVICE).body(body.clone()).send().unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let r = http.get(format!("{repo}/data/{right}")).bearer_auth(DEVICE).header("range", "bytes=5-8").send().unwrap();
    assert_eq!(r.status().as_u16(), 206);
    assert_eq!(r.bytes().unwrap().as_ref(), b"pack");
    let r = http.get(format!("{repo}/data/{right}")).bearer_auth(DEVICE).header("range", "bytes=5-800").send().unwrap();
    assert_eq!(r.status().as_u16(), 416);
    let r = http.head(format!("{repo}/data/{right}")).bearer_auth(DEVICE).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["x-arca-size"], body.len().to_string().as_str());
    let listed: Vec<serde_json::Value> =
        http.get(format!("{repo}/data/")).bearer_auth(DEVICE).send().unwrap().json_list();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["name"], right.as_str());
    assert_eq!(listed[0]["size"], body.len() as u64);

    // A device cannot delete it; a missing object is 404.
    let r = http.delete(format!("{repo}/data/{right}")).bearer_auth(DEVICE).send().unwrap();
    assert_eq!(r.status().as_u16(), 403);
    assert!(r.text().unwrap().contains("delete not allowed"));
    let r = http.get(format!("{repo}/data/{}", "0".repeat(64))).bearer_auth(DEVICE).send().unwrap();
    assert_eq!(r.status().as_u16(), 404);

    // Path tricks and names of the wrong shape.
    for bad in ["..%2fconfig", "..%2F..%2Fetc", "A", &"a".repeat(65), &"A".repeat(64)] {
        let r = http.get(format!("{repo}/data/{bad}")).bearer_auth(ADMIN).send().unwrap();
        assert_eq!(r.status().as_u16(), 400, "{bad}");
        let r = http.put(format!("{repo}/index/{bad}")).bearer_auth(ADMIN).body("x").send().unwrap();
        assert_eq!(r.status().as_u16(), 400, "{bad}");
    }
    for bad_repo in ["ACME", "a_b", "..%2facme"] {
        let r = http.get(format!("{}/v1/repos/{bad_repo}/data/", s.base)).bearer_auth(ADMIN).send().unwrap();
        assert_eq!(r.status().as_u16(), 400, "{bad_repo}");
    }
    // Sent verbatim (an HTTP client library would normalise these before sending).
    for path in ["data/%2e%2e", "data/..%2f..%2f..%2fetc%2fpasswd", "config/%2e%2e%2fconfig", "locks/.%2e"] {
        assert_eq!(s.raw("GET", &format!("/v1/repos/acme/{path}"), ADMIN), 400, "{path}");
    }
    for path in
        ["/v1/repos/acme/data/../config", "/v1/repos/../repos/acme/config/config", "/v1/repos/%2e%2e/config/config"]
    {
        let status = s.raw("GET", path, ADMIN);
        assert!(status == 400 || status == 404, "{path}: {status}");
    }
    let r = http.get(format!("{repo}/nonsense/")).bearer_auth(ADMIN).send().unwrap();
    assert_eq!(r.status().as_u16(), 400);

    // Tokens: missing or wrong is 401; another repository's token sees a 404.
    let r = http.get(format!("{repo}/data/")).send().unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = http.get(format!("{repo}/data/")).bearer_auth("not-a-token").send().unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = http.get(format!("{repo}/data/")).bearer_auth(OTHER).send().unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let r = http.get(format!("{repo}/data/{right}")).bearer_auth(OTHER).send().unwrap();
    assert_eq!(r.status().as_u16(), 404);

    // A device cannot overwrite the config.
    let r = http.put(format!("{repo}/config/config")).bearer_auth(DEVICE).body("{}").send().unwrap();
    assert_eq!(r.status().as_u16(), 409);

    // A snapshot naming a missing pack is refused; naming the stored one, it is accepted.
    let snapshot = |pack: &str| {
        let mut b = b"ARCASNAP".to_vec();
        b.push(1);
        b.extend_from_slice(&1u32.to_le_bytes());
        b.push(0);
        b.extend_from_slice(&hex::decode(pack).unwrap());
        b.extend_from_slice(&[7u8; 32 + 16 + 4]);
        b
    };
    let bytes = snapshot(&"ab".repeat(32));
    let name = blake3::hash(&bytes).to_hex().to_string();
    let r = http.put(format!("{repo}/snapshots/{name}")).bearer_auth(DEVICE).body(bytes).send().unwrap();
    assert_eq!(r.status().as_u16(), 409);
    assert!(r.text().unwrap().contains("not stored"));
    let listed: Vec<serde_json::Value> =
        http.get(format!("{repo}/snapshots/")).bearer_auth(DEVICE).send().unwrap().json_list();
    assert!(listed.is_empty());
    let bytes = snapshot(&right);
    let name = blake3::hash(&bytes).to_hex().to_string();
    let r = http.put(format!("{repo}/snapshots/{name}")).bearer_auth(DEVICE).body(bytes).send().unwrap();
    assert_eq!(r.status().as_u16(), 201, "{}", r.text().unwrap());
}

#[test]
fn listing_is_paged() {
    let s = Server::start();
    s.ok(ADMIN, &["init"]);
    let http = s.http();
    let repo = s.repo_url("acme");
    let mut names = Vec::new();
    for i in 0..25u32 {
        let body = i.to_le_bytes();
        let name = blake3::hash(&body).to_hex().to_string();
        let r = http.put(format!("{repo}/index/{name}")).bearer_auth(DEVICE).body(body.to_vec()).send().unwrap();
        assert_eq!(r.status().as_u16(), 201);
        names.push(name);
    }
    names.sort();
    let mut seen = Vec::new();
    let mut after = String::new();
    loop {
        let url = if after.is_empty() {
            format!("{repo}/index/?limit=10")
        } else {
            format!("{repo}/index/?limit=10&after={after}")
        };
        let page: Vec<serde_json::Value> = http.get(url).bearer_auth(DEVICE).send().unwrap().json_list();
        seen.extend(page.iter().map(|e| e["name"].as_str().unwrap().to_string()));
        if page.len() < 10 {
            break;
        }
        after = seen.last().unwrap().clone();
    }
    assert_eq!(seen, names);
}

#[test]
fn client_errors_are_clear() {
    let s = Server::start();
    // No token.
    let out = s.arca("acme", "").env_remove("ARCA_TOKEN").args(["snapshots"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ARCA_TOKEN"));
    // A wrong token.
    let out = s.arca("acme", "wrong").args(["snapshots"]).output().unwrap();
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("401") && err.contains("invalid or revoked token"), "{err}");
    // No repository there yet.
    let out = s.arca("acme", DEVICE).args(["snapshots"]).output().unwrap();
    assert_eq!(out.status.code(), Some(10), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn sigterm_stops_the_server_cleanly_and_tokens_hash_as_documented() {
    let mut s = Server::start();
    s.ok(ADMIN, &["init"]);
    // SAFETY: signalling our own child process.
    assert_eq!(unsafe { libc::kill(s.child.id() as libc::pid_t, libc::SIGTERM) }, 0);
    let status = s.child.wait().unwrap();
    assert_eq!(status.code(), Some(0));

    let mut child = Command::new(arca_bin())
        .args(["server", "--hash-token"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(b"abc\n").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), blake3::hash(b"abc").to_hex().as_str());
    let out = Command::new(arca_bin()).args(["server", "--new-token"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let token = text.lines().next().unwrap().trim_start_matches("token:").trim();
    let hash = text.lines().nth(1).unwrap().trim_start_matches("hash:").trim();
    assert_eq!(token.len(), 64);
    assert_eq!(blake3::hash(token.as_bytes()).to_hex().as_str(), hash);
}

#[test]
fn server_killed_during_uploads_loses_no_acknowledged_object() {
    let mut server = Server::start();
    server.ok(DEVICE, &["init"]);
    let small = server.path("small");
    make_tree(&small);
    server.ok(DEVICE, &["backup", small.to_str().unwrap()]);
    let acknowledged: Vec<serde_json::Value> =
        serde_json::from_str(&server.ok(DEVICE, &["--json", "snapshots"])).unwrap();
    assert_eq!(acknowledged.len(), 1);

    // A larger backup (several packs of incompressible data), cut by SIGKILL of the server.
    // Fresh content each attempt, so there is always something to upload; shorter delays until
    // the kill lands while the client is still sending.
    let big = server.path("big");
    let mut cut_one = false;
    for (attempt, delay_ms) in [400u64, 200, 100, 40, 10].into_iter().enumerate() {
        let _ = fs::remove_dir_all(&big);
        fs::create_dir_all(&big).unwrap();
        let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ (attempt as u64 + 1);
        for i in 0..6 {
            let data: Vec<u8> = (0..8 << 20)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            fs::write(big.join(format!("part{i}.bin")), data).unwrap();
        }
        let mut client =
            server.arca("acme", DEVICE).args(["--no-progress", "backup", big.to_str().unwrap()]).spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        server.kill_and_restart();
        if !client.wait().unwrap().success() {
            cut_one = true;
            break;
        }
    }
    assert!(cut_one, "no kill landed during an upload");

    let after: Vec<serde_json::Value> = serde_json::from_str(&server.ok(DEVICE, &["--json", "snapshots"])).unwrap();
    for snap in &acknowledged {
        assert!(after.iter().any(|s| s["id"] == snap["id"]), "acknowledged snapshot {} lost", snap["id"]);
    }
    let check = server.arca("acme", DEVICE).args(["check", "--read-data"]).output().unwrap();
    assert!(check.status.success(), "check after the crash:\n{}", String::from_utf8_lossy(&check.stderr));
    let target = server.path("restored");
    server.ok(DEVICE, &["restore", acknowledged[0]["id"].as_str().unwrap(), "--target", target.to_str().unwrap()]);
    assert_same_tree(&small, &target.join(small.strip_prefix("/").unwrap()));
    // And the next backup completes.
    server.ok(DEVICE, &["backup", big.to_str().unwrap()]);
    let check = server.arca("acme", DEVICE).args(["check", "--read-data"]).output().unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
}

#[test]
fn fifty_clients_back_up_at_once() {
    let server = Server::start();
    server.ok(DEVICE, &["init"]);
    let clients = 50;
    let mut running = Vec::new();
    for i in 0..clients {
        let src = server.path(&format!("client-{i}"));
        fs::create_dir_all(src.join("docs")).unwrap();
        fs::write(src.join("docs/shared.txt"), "the same in every client\n".repeat(100)).unwrap();
        fs::write(src.join(format!("own-{i}.bin")), (0..50_000u32).map(|b| (b * (i + 3)) as u8).collect::<Vec<u8>>())
            .unwrap();
        let child = server
            .arca("acme", DEVICE)
            .args(["--no-progress", "-q", "backup", "--host", &format!("host-{i}"), src.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        running.push(child);
    }
    for (i, child) in running.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "client {i} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let snaps: Vec<serde_json::Value> = serde_json::from_str(&server.ok(DEVICE, &["--json", "snapshots"])).unwrap();
    assert_eq!(snaps.len(), clients as usize);
    let check = server.arca("acme", DEVICE).args(["check", "--read-data"]).output().unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    // One client's files come back intact.
    let target = server.path("restored");
    let id = snaps.iter().find(|s| s["hostname"] == "host-7").unwrap()["id"].as_str().unwrap().to_string();
    server.ok(DEVICE, &["restore", &id, "--target", target.to_str().unwrap()]);
    let src = server.path("client-7");
    assert_same_tree(&src, &target.join(src.strip_prefix("/").unwrap()));
}
