//! restic repositories hosted by `arca server` (issue 16): the real restic client from Debian,
//! unmodified, against a real server process on both shapes (embedded, and PostgreSQL + S3),
//! through restic's REST protocol under `/restic/REPO/`.
//!
//! restic retries a refused request with backoff for about 45 seconds before it gives up, so the
//! tests that expect a refusal from restic itself take that long; the protocol's finer points are
//! checked with plain HTTP requests.

#[macro_use]
mod cluster;
mod browser;

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use cluster::{assert_same_tree, make_tree, noise, Cluster, Shape};

const RESTIC_PASSWORD: &str = "restic repository password";
const V2: &str = "application/vnd.x.restic.rest.v2";

/// Whether Debian's restic is installed; without it the test fails, unless missing services may
/// be skipped (then it says so).
fn restic_available() -> bool {
    if Command::new("restic").arg("version").output().is_ok_and(|o| o.status.success()) {
        return true;
    }
    if std::env::var("ARCA_TEST_ALLOW_MISSING_SERVICES").as_deref() != Ok("1") {
        panic!("the restic tests need the restic client: apt-get install restic (or set ARCA_TEST_ALLOW_MISSING_SERVICES=1 to skip)");
    }
    eprintln!("skipped: restic is not installed (apt-get install restic)");
    false
}

/// A test on both shapes that needs restic.
macro_rules! with_restic {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[test]
            fn embedded() {
                if !restic_available() {
                    return;
                }
                let mut c = Cluster::start(Shape::Embedded);
                ($body)(&mut c);
            }
            #[test]
            fn scale_out() {
                if !restic_available() || !cluster::available(Shape::ScaleOut) {
                    return;
                }
                let mut c = Cluster::start(Shape::ScaleOut);
                ($body)(&mut c);
            }
        }
    };
}

/// The restic repository URL of `repo` with `token` as the basic-auth password.
fn url(c: &Cluster, repo: &str, token: &str) -> String {
    arca_api::restic_repository_url(&c.base(), repo, "device", token)
}

/// Runs restic on `repo` with `token`.
fn restic(c: &Cluster, repo: &str, token: &str, args: &[&str]) -> Output {
    Command::new("restic")
        .arg("-r")
        .arg(url(c, repo, token))
        .args(args)
        .env("RESTIC_PASSWORD", RESTIC_PASSWORD)
        .env("RESTIC_CACHE_DIR", c.path("restic-cache"))
        .env_remove("RESTIC_REPOSITORY")
        .output()
        .unwrap()
}

/// Runs restic and returns its standard output, panicking on failure.
fn restic_ok(c: &Cluster, repo: &str, token: &str, args: &[&str]) -> String {
    let out = restic(c, repo, token, args);
    assert!(
        out.status.success(),
        "restic {args:?} failed with {:?}:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A new restic repository of `tenant`, and a device token for it.
fn restic_repo(c: &Cluster, tenant: &str, repo: &str, lock_days: Option<i64>) -> String {
    let mut args = vec!["repo", "create", "--tenant", tenant, repo, "--format", "restic"];
    let days = lock_days.map(|d| d.to_string());
    if let Some(d) = &days {
        args.extend(["--lock-days", d]);
    }
    let out = c.admin_ok(&c.admin, &args);
    assert!(out.contains("restic -r rest:"), "the hint names restic's URL: {out}");
    let out =
        c.admin_ok(&c.admin, &["--json", "device", "add", "--tenant", tenant, &format!("dev-{repo}"), "--repo", repo]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["token"].as_str().unwrap().to_string()
}

fn snapshot_count(c: &Cluster, repo: &str, token: &str) -> usize {
    let out = restic_ok(c, repo, token, &["snapshots", "--json"]);
    serde_json::from_str::<Vec<serde_json::Value>>(&out).unwrap().len()
}

/// The objects of one type, by restic's v2 listing: (name, size).
fn listing(c: &Cluster, repo: &str, token: &str, kind: &str) -> Vec<(String, u64)> {
    let r = c
        .http()
        .get(format!("{}/restic/{repo}/{kind}/", c.base()))
        .basic_auth("device", Some(token))
        .header("accept", V2)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], V2);
    let v: Vec<serde_json::Value> = serde_json::from_slice(&r.bytes().unwrap()).unwrap();
    v.iter().map(|e| (e["name"].as_str().unwrap().to_string(), e["size"].as_u64().unwrap())).collect()
}

/// Every stored object of a restic repository: kind/name → size.
fn all_objects(c: &Cluster, repo: &str, token: &str) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for kind in ["data", "index", "keys", "snapshots"] {
        out.extend(listing(c, repo, token, kind).into_iter().map(|(n, s)| (format!("{kind}/{n}"), s)));
    }
    out.sort();
    out
}

fn repo_json(c: &Cluster, repo: &str) -> serde_json::Value {
    let (status, v) = c.get_json(&c.admin, "/v1/admin/repos");
    assert_eq!(status, 200, "{v}");
    v.as_array().unwrap().iter().find(|r| r["name"] == repo).cloned().unwrap()
}

fn sha256(bytes: &[u8]) -> String {
    arca_server::format::ContentHasher::of(arca_server::format::RepoFormat::Restic, bytes)
}

fn post(c: &Cluster, repo: &str, token: &str, path: &str, body: Vec<u8>) -> (u16, String) {
    let r = c
        .http()
        .post(format!("{}/restic/{repo}/{path}", c.base()))
        .basic_auth("x", Some(token))
        .body(body)
        .send()
        .unwrap();
    (r.status().as_u16(), r.text().unwrap())
}

fn delete(c: &Cluster, repo: &str, token: &str, path: &str) -> (u16, String) {
    let r = c.http().delete(format!("{}/restic/{repo}/{path}", c.base())).basic_auth("x", Some(token)).send().unwrap();
    (r.status().as_u16(), r.text().unwrap())
}

fn source_tree(c: &Cluster) -> std::path::PathBuf {
    let src = c.path("src");
    make_tree(&src);
    fs::write(src.join("noise.bin"), noise(3 << 20, 16)).unwrap();
    src
}

// init, backup, snapshots, check --read-data, restore compared byte for byte; a device token's
// forget and prune are refused and delete nothing; a tenant admin's succeed; metering, billing
// and the audit log see it like any repository.
with_restic!(restic_backs_up_restores_and_only_tenant_admins_prune, |c: &mut Cluster| {
    let dev = restic_repo(c, "acme", "rr", None);
    restic_ok(c, "rr", &dev, &["init"]);
    let src = source_tree(c);
    let src_arg = src.to_str().unwrap();
    restic_ok(c, "rr", &dev, &["backup", src_arg]);
    fs::write(src.join("a.txt"), b"changed after the first backup\n").unwrap();
    restic_ok(c, "rr", &dev, &["backup", src_arg]);
    assert_eq!(snapshot_count(c, "rr", &dev), 2);
    restic_ok(c, "rr", &dev, &["check", "--read-data"]);
    let target = c.path("restored");
    restic_ok(c, "rr", &dev, &["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_same_tree(&src, &target.join(src.strip_prefix("/").unwrap()));

    // Metering: the catalogue holds exactly what restic listed, and ingress was counted.
    let objects = all_objects(c, "rr", &dev);
    let config_len = config_len(c, "rr", &dev);
    let sum: u64 = objects.iter().map(|(_, s)| s).sum::<u64>() + config_len;
    let repo = repo_json(c, "rr");
    assert_eq!(repo["format"], "restic");
    assert_eq!(repo["stored_bytes"].as_u64().unwrap(), sum, "stored bytes are the objects' sizes");
    assert!(usage_of(c, "rr", "ingress_bytes") >= sum, "ingress metered");
    assert!(usage_of(c, "rr", "egress_bytes") >= 3 << 20, "egress (check, restore) metered");

    // A device token cannot forget or prune: refused, and nothing is deleted.
    let out = restic(c, "rr", &dev, &["forget", "--group-by", "host", "--keep-last", "1", "--prune"]);
    assert!(!out.status.success(), "a device token forgot snapshots");
    assert_eq!(all_objects(c, "rr", &dev), objects, "nothing was deleted");
    assert_eq!(snapshot_count(c, "rr", &dev), 2);
    let (_, audit) = c.get_json(&c.admin, "/v1/admin/audit?tenant=acme&limit=500");
    assert!(
        audit.to_string().contains("object.delete") && audit.to_string().contains("denied"),
        "the refused delete is in the tenant's audit log"
    );

    // The tenant's admin may.
    let boss = c.acme_admin.clone();
    restic_ok(c, "rr", &boss, &["forget", "--group-by", "host", "--keep-last", "1", "--prune"]);
    assert_eq!(snapshot_count(c, "rr", &boss), 1);
    restic_ok(c, "rr", &boss, &["check", "--read-data"]);
    let after = repo_json(c, "rr")["stored_bytes"].as_u64().unwrap();
    let listed: u64 = all_objects(c, "rr", &boss).iter().map(|(_, s)| s).sum::<u64>() + config_len;
    assert_eq!(after, listed, "stored bytes follow the prune");
    let restored2 = c.path("restored2");
    restic_ok(c, "rr", &boss, &["restore", "latest", "--target", restored2.to_str().unwrap()]);
    assert_same_tree(&src, &restored2.join(src.strip_prefix("/").unwrap()));
});

// A hard quota refuses uploads before their bytes are read: the backup fails, and what is billed
// is exactly what is stored. Another tenant's tokens see nothing.
with_restic!(restic_quota_refusal_and_tenant_isolation, |c: &mut Cluster| {
    let dev = restic_repo(c, "acme", "rq", None);
    restic_ok(c, "rq", &dev, &["init"]);
    let small = c.path("small");
    make_tree(&small);
    restic_ok(c, "rq", &dev, &["backup", small.to_str().unwrap()]);
    let stored = repo_json(c, "rq")["stored_bytes"].as_u64().unwrap();
    let (_, tenant) = c.get_json(&c.admin, "/v1/admin/tenants/acme");
    let tenant_stored = tenant["stored_bytes"].as_u64().unwrap();
    c.admin_ok(&c.admin, &["tenant", "set", "acme", "--hard-quota", &(tenant_stored + 100_000).to_string()]);
    let big = c.path("big");
    fs::create_dir_all(&big).unwrap();
    fs::write(big.join("noise.bin"), noise(12 << 20, 3)).unwrap();
    let out = restic(c, "rq", &dev, &["backup", big.to_str().unwrap()]);
    assert!(!out.status.success(), "a backup past the hard quota succeeded");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("507"), "restic saw the quota refusal: {err}");
    assert_eq!(snapshot_count(c, "rq", &dev), 1, "no snapshot of the refused backup");
    let objects: u64 = all_objects(c, "rq", &dev).iter().map(|(_, s)| s).sum();
    let after = repo_json(c, "rq")["stored_bytes"].as_u64().unwrap();
    assert!(after <= stored + 100_000, "{after} passed the quota (was {stored})");
    let (_, tenant) = c.get_json(&c.admin, "/v1/admin/tenants/acme");
    assert_eq!(
        tenant["stored_bytes"].as_u64().unwrap() - tenant_stored,
        after - stored,
        "the tenant is billed for what is stored, no more"
    );
    let listed_plus_config = objects + config_len(c, "rq", &dev);
    assert_eq!(
        after,
        listed_plus_config,
        "stored bytes are exactly the objects stored: {:?} (server: {})",
        all_objects(c, "rq", &dev),
        repo_json(c, "rq")
    );
    restic_ok(c, "rq", &dev, &["check"]);

    // Isolation: the other tenant's device and admin tokens find nothing.
    for token in [c.other_device.clone(), c.other_admin.clone()] {
        let out = restic(c, "rq", &token, &["snapshots"]);
        assert!(!out.status.success(), "another tenant's token read the snapshots");
        let r =
            c.http().get(format!("{}/restic/rq/snapshots/", c.base())).basic_auth("x", Some(&token)).send().unwrap();
        assert_eq!(r.status(), 404, "another tenant's token sees no such repository");
    }
    let r = c.http().get(format!("{}/restic/rq/snapshots/", c.base())).send().unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers()["www-authenticate"].to_str().unwrap().starts_with("Basic"), "restic is asked for basic auth");
});

// The protocol's rules, with plain requests: names are SHA-256 of the bytes; locks are bounded,
// billed and removable only by their holder; the retention lock holds for every object; each
// protocol reaches only its own format; scrub checks restic objects by SHA-256.
with_restic!(restic_protocol_rules_hold, |c: &mut Cluster| {
    let dev = restic_repo(c, "acme", "rp", Some(30));
    let dev2 = {
        let out = c.admin_ok(&c.admin, &["--json", "device", "add", "--tenant", "acme", "second", "--repo", "rp"]);
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["token"].as_str().unwrap().to_string()
    };
    restic_ok(c, "rp", &dev, &["init"]);
    let src = c.path("src");
    make_tree(&src);
    restic_ok(c, "rp", &dev, &["backup", src.to_str().unwrap()]);

    // A data object whose bytes are not its name: refused, nothing stored.
    let bytes = noise(10_000, 1);
    let (status, body) = post(c, "rp", &dev, &format!("data/{}", sha256(b"other bytes")), bytes.clone());
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("SHA-256") || body.contains("hash to"), "{body}");
    assert!(!listing(c, "rp", &dev, "data").iter().any(|(n, _)| n == &sha256(b"other bytes")));
    let (status, _) = post(c, "rp", &dev, "data/not-a-hash", bytes.clone());
    assert_eq!(status, 400);
    let (status, _) = post(c, "rp", &dev, &format!("meta/{}", sha256(&bytes)), bytes.clone());
    assert_eq!(status, 400, "restic has no meta type");
    // The right name is stored, a retry is fine, an overwrite with other bytes cannot happen
    // (other bytes have another name).
    assert_eq!(post(c, "rp", &dev, &format!("data/{}", sha256(&bytes)), bytes.clone()).0, 200);
    assert_eq!(post(c, "rp", &dev, &format!("data/{}", sha256(&bytes)), bytes.clone()).0, 200);
    let config_before = c
        .http()
        .get(format!("{}/restic/rp/config", c.base()))
        .basic_auth("d", Some(&dev))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    let (status, _) = post(c, "rp", &dev, "config", b"another config".to_vec());
    assert_eq!(status, 409, "config is written once");
    let config_after = c
        .http()
        .get(format!("{}/restic/rp/config", c.base()))
        .basic_auth("d", Some(&dev))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    assert_eq!(config_before, config_after);

    // Locks: bounded in size, named by their bytes, billed, and only their holder removes them.
    let (status, _) = post(c, "rp", &dev, &format!("locks/{}", sha256(&vec![1u8; 5000])), vec![1u8; 5000]);
    assert_eq!(status, 413, "a 5000-byte lock is refused");
    let lock = noise(300, 9);
    let lock_name = sha256(&lock);
    let ingress_before = usage_of(c, "rp", "ingress_bytes");
    assert_eq!(post(c, "rp", &dev, &format!("locks/{lock_name}"), lock.clone()).0, 200);
    assert!(usage_of(c, "rp", "ingress_bytes") >= ingress_before + 300, "lock bytes are metered");
    let (status, body) = delete(c, "rp", &dev2, &format!("locks/{lock_name}"));
    assert_eq!(status, 403, "another device removed a live lock: {body}");
    assert_eq!(delete(c, "rp", &dev, &format!("locks/{lock_name}")).0, 200, "its holder removes it");
    let mut refused = false;
    for i in 0..70u64 {
        let lock = noise(200, 100 + i);
        let (status, _) = post(c, "rp", &dev, &format!("locks/{}", sha256(&lock)), lock);
        if status == 429 {
            refused = true;
            break;
        }
        assert_eq!(status, 200);
    }
    assert!(refused, "a repository holds a bounded number of locks");

    // Devices never delete data; nobody deletes inside the retention lock.
    let snap = listing(c, "rp", &dev, "snapshots")[0].0.clone();
    let (status, body) = delete(c, "rp", &dev, &format!("snapshots/{snap}"));
    assert_eq!(status, 403, "{body}");
    let (status, body) = delete(c, "rp", &c.acme_admin, &format!("snapshots/{snap}"));
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("retention lock"), "{body}");
    assert_eq!(listing(c, "rp", &dev, "snapshots").len(), 1);

    // Each protocol reaches only its own format.
    let out = c.arca("rp", &dev).args(["snapshots"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("restic"), "{}", String::from_utf8_lossy(&out.stderr));
    c.ok("acme", &c.acme_device, &["init"]);
    let r = c
        .http()
        .get(format!("{}/restic/acme/snapshots/", c.base()))
        .basic_auth("d", Some(&c.acme_device))
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().unwrap().contains("arca"));

    // v1 listings (names only) for older clients.
    let r = c.http().get(format!("{}/restic/rp/keys/", c.base())).basic_auth("d", Some(&dev)).send().unwrap();
    assert_eq!(r.headers()["content-type"], "application/vnd.x.restic.rest.v1");
    let names: Vec<String> = serde_json::from_slice(&r.bytes().unwrap()).unwrap();
    assert_eq!(names.len(), 1);

    // Scrub re-hashes restic objects with SHA-256 and finds damage.
    let (pack, _) = listing(c, "rp", &dev, "data").into_iter().next().unwrap();
    let clean = c.admin_cmd(&c.admin, &["--json", "scrub", "--start", "--wait"]).output().unwrap();
    assert_eq!(clean.status.code(), Some(0), "{}", String::from_utf8_lossy(&clean.stdout));
    c.corrupt("rp", "data", &pack);
    let out = c.admin_cmd(&c.admin, &["--json", "scrub", "--start", "--wait"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "scrub found the damaged pack");
    let (_, scrub) = c.get_json(&c.acme_admin, "/v1/admin/scrub");
    assert!(scrub.to_string().contains(&pack), "{scrub}");
    assert!(scrub.to_string().contains("SHA-256"), "{scrub}");
    let out = restic(c, "rp", &dev, &["check", "--read-data"]);
    assert!(!out.status.success(), "restic finds the damage too");
});

/// A metering figure of `repo` over every day recorded.
fn usage_of(c: &Cluster, repo: &str, field: &str) -> u64 {
    let (status, v) = c.get_json(&c.admin, "/v1/admin/usage?tenant=acme");
    assert_eq!(status, 200, "{v}");
    v.as_array().unwrap().iter().filter(|r| r["repository"] == repo).map(|r| r[field].as_u64().unwrap_or(0)).sum()
}

// An existing restic repository moves in with `arca admin import`: from a directory and from
// another REST server, verified by name (a damaged object is left out and reported, and the
// repository stays closed), resumable; restic then uses it as before.
with_restic!(restic_repositories_import_from_a_directory_and_a_rest_server, |c: &mut Cluster| {
    // A repository made by restic on a local disk.
    let local = c.path("local-restic");
    let src = source_tree(c);
    for args in [vec!["init"], vec!["backup", src.to_str().unwrap()]] {
        let out = Command::new("restic")
            .arg("-r")
            .arg(&local)
            .args(&args)
            .env("RESTIC_PASSWORD", RESTIC_PASSWORD)
            .env("RESTIC_CACHE_DIR", c.path("restic-cache"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let dev = restic_repo(c, "acme", "moved", None);
    // Damage one index file: it is left out, the import exits 1, and config is held back.
    let index_dir = local.join("index");
    let index = fs::read_dir(&index_dir).unwrap().next().unwrap().unwrap().path();
    let good = fs::read(&index).unwrap();
    let mut bad = good.clone();
    bad[10] ^= 1;
    fs::write(&index, &bad).unwrap();
    let out =
        c.admin_cmd(&c.admin, &["--json", "import", "--repo", "moved", local.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["damaged"].as_array().unwrap().len(), 1, "{report}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("do not hash to their names"));
    let r = c.http().head(format!("{}/restic/moved/config", c.base())).basic_auth("d", Some(&dev)).send().unwrap();
    assert_eq!(r.status(), 404, "config is held back while objects are missing");
    // Repaired, the import resumes: only what is missing is sent.
    fs::write(&index, &good).unwrap();
    let out =
        c.admin_cmd(&c.admin, &["--json", "import", "--repo", "moved", local.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["uploaded"], 2, "the index file and config: {report}");
    assert!(report["skipped"].as_u64().unwrap() >= 3, "{report}");
    restic_ok(c, "moved", &dev, &["check", "--read-data"]);
    let target = c.path("restored");
    restic_ok(c, "moved", &dev, &["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_same_tree(&src, &target.join(src.strip_prefix("/").unwrap()));
    restic_ok(c, "moved", &dev, &["backup", src.to_str().unwrap()]);

    // From another REST server (here the same server's other repository, read over the protocol
    // with that repository's token).
    let dev2 = restic_repo(c, "acme", "copied", None);
    let from = format!("rest:{}", url(c, "moved", &dev).trim_start_matches("rest:"));
    let out = c.admin_cmd(&c.acme_admin, &["--json", "import", "--repo", "copied", &from]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(snapshot_count(c, "copied", &dev2), 2);
    restic_ok(c, "copied", &dev2, &["check", "--read-data"]);
    assert_eq!(all_objects(c, "copied", &dev2), all_objects(c, "moved", &dev));
    assert!(Path::new(&target).exists());
});

// The console: a tenant admin creates a restic repository and a device for it in a real browser;
// the commands the page shows work as pasted, with the real restic; the repository page says how
// restic reaches it, and the portal's browse-and-restore (arca's) explains it is restic's.
#[test]
fn restic_repository_from_the_console() {
    if !restic_available() || !browser::available() {
        return;
    }
    let c = Cluster::start(Shape::Embedded);
    let base = c.base();
    let mut b =
        browser::Browser::start(&std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("restic-screenshots"));
    b.sign_in(&base, "acme-admin", cluster::TENANT_ADMIN_PASSWORD);
    b.go(&format!("{base}/tenants/acme"));
    b.fill("#repo-name", "acme-restic");
    b.click("#repo-format option[value=restic]");
    b.click("#create-repo");
    b.wait_source("acme-restic");
    let row = b.text("#repos");
    assert!(row.contains("acme-restic") && row.contains("restic"), "{row}");
    assert_eq!(repo_json(&c, "acme-restic")["format"], "restic");
    b.fill("#device-name", "nas");
    b.click("#device-repo option[value=acme-restic]");
    b.click("#add-device");
    let commands = b.text("#device-commands");
    let token = b.text("#device-token");
    assert!(commands.contains("restic init") && commands.contains("/restic/acme-restic/"), "{commands}");
    b.screenshot("restic-device-added");
    let repository = commands
        .lines()
        .find_map(|l| l.strip_prefix("export RESTIC_REPOSITORY="))
        .unwrap_or_else(|| panic!("no RESTIC_REPOSITORY in {commands}"))
        .to_string();
    assert!(repository.starts_with("rest:http://nas:") && repository.contains(&token), "{repository}");
    let src = c.path("src");
    make_tree(&src);
    for args in [vec!["init"], vec!["backup", src.to_str().unwrap()]] {
        let out = Command::new("restic")
            .args(&args)
            .env("RESTIC_REPOSITORY", &repository)
            .env("RESTIC_PASSWORD", RESTIC_PASSWORD)
            .env("RESTIC_CACHE_DIR", c.path("restic-cache"))
            .output()
            .unwrap();
        assert!(out.status.success(), "restic {args:?} as pasted: {}", String::from_utf8_lossy(&out.stderr));
    }
    assert_eq!(snapshot_count(&c, "acme-restic", &token), 1);

    b.go(&format!("{base}/repos/acme-restic"));
    let access = b.text("#restic-access");
    assert!(
        access.contains("restic -r rest:http://USER:TOKEN@") && access.contains("/restic/acme-restic/"),
        "{access}"
    );
    assert!(!b.source().contains("id=\"restore-link\""), "the portal offers to browse a restic repository");
    b.screenshot("restic-repository");
    b.go(&format!("{base}/repos/acme-restic/restore"));
    assert!(b.source().contains("A restic repository") && b.source().contains("restic restore"), "{}", b.source());
}

/// The size of a repository's `config` file, from the Content-Length of a HEAD request (reqwest's
/// `content_length()` is the body's length, which a HEAD response does not have).
fn config_len(c: &Cluster, repo: &str, token: &str) -> u64 {
    let response =
        c.http().head(format!("{}/restic/{repo}/config", c.base())).basic_auth("d", Some(token)).send().unwrap();
    assert!(response.status().is_success(), "HEAD config: {}", response.status());
    response.headers()["content-length"].to_str().unwrap().parse().unwrap()
}
