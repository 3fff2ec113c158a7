//! A real `arca server` deployment for end-to-end tests, in one of two shapes:
//!
//! - **embedded**: one server process on SQLite and local disk (the defaults);
//! - **scale-out**: two server processes on different ports over one PostgreSQL database and one
//!   S3 bucket (Garage), taking turns serving the test's requests.
//!
//! Scale-out needs `ARCA_TEST_POSTGRES` (a URL of a database where the user may create databases)
//! and `ARCA_TEST_S3` (+ `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`); `scripts/test-services.sh`
//! starts both and prints them. Without them a scale-out test is skipped with a message only when
//! asked with `ARCA_TEST_ALLOW_MISSING_SERVICES=1`; otherwise it fails.
//!
//! Every deployment is set up through `arca admin` as a provider would: a plan, tenants `acme` and
//! `other`, a repository and a device for each, and a tenant admin of `acme`.

#![allow(dead_code)]

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use tempfile::TempDir;

pub mod sinks;

pub const PASSWORD: &str = "correct horse battery staple";
pub const ADMIN_PASSWORD: &str = "provider admin password";
pub const TENANT_ADMIN_PASSWORD: &str = "acme admin password";

pub fn arca_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_arca"))
}

/// Which deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Embedded,
    ScaleOut,
}

/// The scale-out services from the environment, or why there are none.
fn scale_out_env() -> Result<(String, String), String> {
    let pg = std::env::var("ARCA_TEST_POSTGRES").map_err(|_| "ARCA_TEST_POSTGRES is not set".to_string())?;
    let s3 = std::env::var("ARCA_TEST_S3").map_err(|_| "ARCA_TEST_S3 is not set".to_string())?;
    Ok((pg, s3))
}

/// Whether a test of `shape` can run here; prints why not (or panics in CI).
pub fn available(shape: Shape) -> bool {
    if shape == Shape::Embedded {
        return true;
    }
    match scale_out_env() {
        Ok(_) => true,
        Err(why) => {
            if std::env::var("ARCA_TEST_ALLOW_MISSING_SERVICES").as_deref() != Ok("1") {
                panic!("scale-out tests need PostgreSQL and S3 but {why}: run `eval \"$(scripts/test-services.sh)\"`, or set ARCA_TEST_ALLOW_MISSING_SERVICES=1 to skip");
            }
            eprintln!("skipped: scale-out test needs PostgreSQL and S3 ({why}; see scripts/test-services.sh)");
            false
        }
    }
}

fn random_suffix() -> String {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{:x}{:x}", t as u64, std::process::id())
}

/// One running server process.
pub struct Node {
    pub child: Child,
    pub base: String,
    log: PathBuf,
}

/// A deployment of one or two server processes and its accounts.
pub struct Cluster {
    pub shape: Shape,
    pub dir: TempDir,
    pub nodes: Vec<Node>,
    database: String,
    store: String,
    extra_args: Vec<String>,
    next: AtomicUsize,
    /// Provider admin's API token.
    pub admin: String,
    /// Device token of repository `acme` (tenant acme).
    pub acme_device: String,
    /// Device token of repository `other` (tenant other).
    pub other_device: String,
    /// Tenant admin of acme.
    pub acme_admin: String,
    /// Tenant admin of other.
    pub other_admin: String,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            let _ = n.child.kill();
            let _ = n.child.wait();
        }
        if std::thread::panicking() {
            for (i, n) in self.nodes.iter().enumerate() {
                let log = fs::read_to_string(&n.log).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                eprintln!("--- server {i} log (last lines) ---");
                for l in tail.into_iter().rev() {
                    eprintln!("{l}");
                }
            }
        }
    }
}

impl Cluster {
    /// Starts a deployment of `shape` and sets up its accounts.
    pub fn start(shape: Shape) -> Cluster {
        Self::start_with(shape, &[])
    }

    /// The same, with extra `arca server` flags.
    pub fn start_with(shape: Shape, extra_args: &[&str]) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let (database, store) = match shape {
            Shape::Embedded => {
                let data = dir.path().join("data");
                (format!("sqlite://{}/arca.db", data.display()), format!("file://{}", data.display()))
            }
            Shape::ScaleOut => {
                let (pg, s3) = scale_out_env().unwrap();
                let name = format!("arca_test_{}", random_suffix());
                let out = Command::new("psql").arg(&pg).args(["-qc", &format!("CREATE DATABASE {name}")]).output();
                let out = out.expect("running psql (install postgresql-client)");
                assert!(out.status.success(), "creating the test database: {}", String::from_utf8_lossy(&out.stderr));
                let (head, _) = pg.rsplit_once('/').unwrap();
                let (bucket_part, query) = s3.split_once('?').unwrap();
                (format!("{head}/{name}"), format!("{bucket_part}/{name}?{query}"))
            }
        };
        let count = if shape == Shape::Embedded { 1 } else { 2 };
        let mut c = Cluster {
            shape,
            dir,
            nodes: Vec::new(),
            database,
            store,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            next: AtomicUsize::new(0),
            admin: String::new(),
            acme_device: String::new(),
            other_device: String::new(),
            acme_admin: String::new(),
            other_admin: String::new(),
        };
        for i in 0..count {
            let node = c.spawn(i);
            c.nodes.push(node);
        }
        c.setup_accounts();
        c
    }

    fn spawn(&self, i: usize) -> Node {
        let log = self.dir.path().join(format!("server-{i}.log"));
        let mut cmd = Command::new(arca_bin());
        cmd.args(["server", "--listen", "127.0.0.1:0", "--database", &self.database, "--store", &self.store])
            .args(&self.extra_args)
            .env("ARCA_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("ARCA_LOG", "info")
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(fs::OpenOptions::new().create(true).append(true).open(&log).unwrap());
        let mut child = cmd.spawn().unwrap();
        let mut reader = BufReader::new(child.stdout.take().unwrap());
        let mut base = None;
        for _ in 0..10 {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap() == 0 {
                break;
            }
            if let Some(addr) = line.trim().split("listening on ").nth(1) {
                base = Some(addr.to_string());
                break;
            }
        }
        let base = base
            .unwrap_or_else(|| panic!("server {i} did not start:\n{}", fs::read_to_string(&log).unwrap_or_default()));
        // Keep reading its stdout so it never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sink = String::new();
            while reader.read_line(&mut sink).unwrap_or(0) > 0 {
                sink.clear();
            }
        });
        Node { child, base, log }
    }

    /// SIGKILLs server `i` and starts it again on the same storage (a new port).
    pub fn kill_and_restart(&mut self, i: usize) {
        self.nodes[i].child.kill().unwrap();
        self.nodes[i].child.wait().unwrap();
        self.nodes[i] = self.spawn(i);
    }

    /// The base URL of the node that serves the next request (nodes take turns).
    pub fn base(&self) -> String {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.nodes.len();
        self.nodes[i].base.clone()
    }

    pub fn repo_url(&self, repo: &str) -> String {
        format!("{}/v1/repos/{repo}", self.base())
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `arca admin …` with `token`; returns stdout, panicking on failure.
    pub fn admin_ok(&self, token: &str, args: &[&str]) -> String {
        let out = self.admin_cmd(token, args).output().unwrap();
        assert!(out.status.success(), "arca admin {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn admin_cmd(&self, token: &str, args: &[&str]) -> Command {
        let mut c = Command::new(arca_bin());
        c.env_remove("ARCA_LOG").env_remove("RUST_LOG").env("ARCA_SERVER", self.base()).env("ARCA_TOKEN", token);
        c.arg("admin").args(args);
        c
    }

    pub fn login(&self, user: &str, password: &str) -> String {
        let out = Command::new(arca_bin())
            .args(["admin", "login", "--quiet", "--user", user])
            .env("ARCA_SERVER", self.base())
            .env("ARCA_ADMIN_PASSWORD", password)
            .env_remove("ARCA_TOKEN")
            .output()
            .unwrap();
        assert!(out.status.success(), "login {user}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    fn device(&self, tenant: &str, name: &str, repo: &str) -> String {
        let out = self.admin_ok(&self.admin, &["--json", "device", "add", "--tenant", tenant, name, "--repo", repo]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v["token"].as_str().unwrap().to_string()
    }

    fn setup_accounts(&mut self) {
        self.admin = self.login("admin", ADMIN_PASSWORD);
        let a = self.admin.clone();
        self.admin_ok(&a, &["plan", "create", "standard", "--hard-quota", "10GiB", "--soft-quota", "8GiB"]);
        for t in ["acme", "other"] {
            self.admin_ok(&a, &["tenant", "create", t, "--plan", "standard"]);
            self.admin_ok(&a, &["repo", "create", "--tenant", t, t]);
        }
        self.acme_device = self.device("acme", "laptop", "acme");
        self.other_device = self.device("other", "laptop", "other");
        let make_admin = |tenant: &str, user: &str| {
            let out = self
                .admin_cmd(&a, &["user", "create", user, "--role", "tenant-admin", "--tenant", tenant])
                .env("ARCA_NEW_PASSWORD", TENANT_ADMIN_PASSWORD)
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        };
        make_admin("acme", "acme-admin");
        make_admin("other", "other-admin");
        self.acme_admin = self.login("acme-admin", TENANT_ADMIN_PASSWORD);
        self.other_admin = self.login("other-admin", TENANT_ADMIN_PASSWORD);
    }

    /// A device token for a new repository `repo` of `tenant` (created with `lock_days`).
    pub fn new_repo(&self, tenant: &str, repo: &str, lock_days: Option<i64>) -> String {
        let mut args = vec!["repo", "create", "--tenant", tenant, repo];
        let days = lock_days.map(|d| d.to_string());
        if let Some(d) = &days {
            args.extend(["--lock-days", d]);
        }
        self.admin_ok(&self.admin, &args);
        self.device(tenant, &format!("dev-{repo}"), repo)
    }

    /// `arca` against repository `repo` with `token`.
    pub fn arca(&self, repo: &str, token: &str) -> Command {
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

    /// Runs `arca` on `repo` and returns stdout, panicking on failure.
    pub fn ok(&self, repo: &str, token: &str, args: &[&str]) -> String {
        let out = self.arca(repo, token).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "arca {args:?} failed with {:?}:\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// The scale-out deployment's database name.
    pub fn database_name(&self) -> String {
        self.database.rsplit('/').next().unwrap().to_string()
    }

    /// Runs SQL on the scale-out PostgreSQL server (as the test role, on its admin database).
    pub fn psql(&self, sql: &str) {
        let (pg, _) = scale_out_env().unwrap();
        let out = Command::new("psql").arg(&pg).args(["-qc", sql]).output().unwrap();
        assert!(out.status.success(), "psql {sql}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Runs SQL on this deployment's own metadata database (behind the server's back: tests use
    /// it to move recorded times into the past), with `sqlite3` or `psql`.
    pub fn sql(&self, sql: &str) {
        let out = match self.shape {
            Shape::Embedded => {
                let file = self.database.trim_start_matches("sqlite://");
                Command::new("sqlite3").arg(file).arg(sql).output().expect("sqlite3 (Debian package sqlite3)")
            }
            Shape::ScaleOut => Command::new("psql").arg(&self.database).args(["-qc", sql]).output().unwrap(),
        };
        assert!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Flips one byte of an object in storage, behind the server's back.
    pub fn corrupt(&self, repo: &str, kind: &str, name: &str) {
        match self.shape {
            Shape::Embedded => {
                let dir = self.dir.path().join("data/repos").join(repo).join(kind);
                let path = if kind == "data" { dir.join(&name[..2]).join(name) } else { dir.join(name) };
                let mut bytes = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                let mid = bytes.len() / 2;
                bytes[mid] ^= 0x40;
                fs::write(&path, bytes).unwrap();
            }
            Shape::ScaleOut => {
                use arca_store::Store;
                let config = arca_store::S3Config::from_url(&self.store).unwrap();
                let store = arca_store::S3Store::open(&config).unwrap().with_prefix(&format!("repos/{repo}"));
                let kind = arca_store::ObjectKind::from_dir(kind).unwrap();
                let mut bytes = store.get(kind, name).unwrap();
                let mid = bytes.len() / 2;
                bytes[mid] ^= 0x40;
                store.put(kind, name, &bytes).unwrap();
            }
        }
    }

    /// An HTTP client.
    pub fn http(&self) -> reqwest::blocking::Client {
        reqwest::blocking::Client::new()
    }

    /// GET of an admin API path as JSON.
    pub fn get_json(&self, token: &str, path: &str) -> (u16, serde_json::Value) {
        let r = self.http().get(format!("{}{path}", self.base())).bearer_auth(token).send().unwrap();
        let status = r.status().as_u16();
        let text = r.text().unwrap();
        (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)))
    }

    /// Sends a request with `path` exactly as given; returns the status code.
    pub fn raw(&self, method: &str, path: &str, token: &str) -> u16 {
        use std::io::{Read, Write};
        let base = self.base();
        let addr = base.trim_start_matches("http://");
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
}

/// A small tree of files.
pub fn make_tree(root: &Path) {
    fs::create_dir_all(root.join("sub/deeper")).unwrap();
    fs::write(root.join("a.txt"), b"hello, server\n").unwrap();
    fs::write(root.join("sub/b.bin"), (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect::<Vec<u8>>()).unwrap();
    fs::write(root.join("sub/deeper/c.txt"), "x".repeat(10_000)).unwrap();
    fs::write(root.join("empty"), b"").unwrap();
}

/// Incompressible bytes from a seed.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Asserts that every file under `a` has the same bytes under `b`.
pub fn assert_same_tree(a: &Path, b: &Path) {
    for entry in fs::read_dir(a).unwrap() {
        let entry = entry.unwrap();
        let other = b.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            assert_same_tree(&entry.path(), &other);
        } else {
            let x = fs::read(entry.path()).unwrap();
            let y = fs::read(&other).unwrap_or_else(|e| panic!("{}: {e}", other.display()));
            assert!(x == y, "{} differs after restore", other.display());
        }
    }
}

/// Declares a test body `fn(&mut Cluster)` as two tests, `<name>::embedded` and
/// `<name>::scale_out`.
#[macro_export]
macro_rules! both_shapes {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[test]
            fn embedded() {
                let mut c = Cluster::start(Shape::Embedded);
                ($body)(&mut c);
            }
            #[test]
            fn scale_out() {
                if !cluster::available(Shape::ScaleOut) {
                    return;
                }
                let mut c = Cluster::start(Shape::ScaleOut);
                ($body)(&mut c);
            }
        }
    };
}
