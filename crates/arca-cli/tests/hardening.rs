//! Regression tests for the holes found by trying `arca server` as an attacker with one device
//! token (or none) would (issue 12). Each test reproduces the attack against a real server
//! process, on both shapes (embedded, and PostgreSQL + S3), and checks that it is refused, that
//! nothing was stored or billed wrongly, and that the server keeps serving everyone else.

#[macro_use]
mod cluster;

use std::fs;

use cluster::{make_tree, Cluster, Shape};

/// A test on both shapes of a deployment started with extra `arca server` flags.
macro_rules! both_shapes_with {
    ($name:ident, $args:expr, $body:expr) => {
        mod $name {
            use super::*;
            #[test]
            fn embedded() {
                let mut c = Cluster::start_with(Shape::Embedded, $args);
                ($body)(&mut c);
            }
            #[test]
            fn scale_out() {
                if !cluster::available(Shape::ScaleOut) {
                    return;
                }
                let mut c = Cluster::start_with(Shape::ScaleOut, $args);
                ($body)(&mut c);
            }
        }
    };
}

/// `PATCH`es JSON to an API path; returns the status and body.
fn send_json(c: &Cluster, method: &str, token: &str, path: &str, body: serde_json::Value) -> (u16, String) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let r = c
        .http()
        .request(method, format!("{}{path}", c.base()))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&body).unwrap())
        .send()
        .unwrap();
    (r.status().as_u16(), r.text().unwrap())
}

/// PUTs raw bytes as object `kind/name` of `repo`; returns the status and body.
fn put(c: &Cluster, repo: &str, token: &str, kind: &str, name: &str, body: Vec<u8>) -> (u16, String) {
    let r = c.http().put(format!("{}/{kind}/{name}", c.repo_url(repo))).bearer_auth(token).body(body).send().unwrap();
    (r.status().as_u16(), r.text().unwrap())
}

fn hash(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

/// A snapshot envelope with an empty manifest that claims to represent `logical` bytes (the
/// plaintext header `docs/format.md` describes: magic, version 2, pack count, logical size, then
/// salt and sealed body, which the server cannot read).
fn snapshot_claiming(logical: u64) -> Vec<u8> {
    let mut b = b"ARCASNAP".to_vec();
    b.push(2);
    b.extend_from_slice(&0u32.to_le_bytes());
    b.extend_from_slice(&logical.to_le_bytes());
    b.extend_from_slice(&[7u8; 32 + 48]);
    b
}

fn tenant_json(c: &Cluster, tenant: &str) -> serde_json::Value {
    let (status, v) = c.get_json(&c.admin, &format!("/v1/admin/tenants/{tenant}"));
    assert_eq!(status, 200, "{v}");
    v
}

fn repo_json(c: &Cluster, token: &str, repo: &str) -> serde_json::Value {
    let (status, v) = c.get_json(token, "/v1/admin/repos");
    assert_eq!(status, 200, "{v}");
    v.as_array().unwrap().iter().find(|r| r["name"] == repo).cloned().unwrap()
}

// Issue 12, item 1: a lock length that overflowed the lock check let a compliance repository's
// objects be deleted seconds after upload.
both_shapes!(lock_days_are_range_checked_and_the_lock_holds, |c: &mut Cluster| {
    let admin = c.admin.clone();
    let plan = serde_json::json!({
        "name": "vault", "hard_quota_bytes": 0, "soft_quota_bytes": 0, "lock_days": 30, "compliance": true,
        "yearly_price_cents": 0, "overage_cents_per_gb": 0
    });
    assert_eq!(send_json(c, "POST", &admin, "/v1/admin/plans", plan).0, 201);
    for days in [106_751_991_147_000i64, i64::MAX, -1, 36_501] {
        let plan = serde_json::json!({
            "name": format!("p{}", days.unsigned_abs() % 1000), "hard_quota_bytes": 0, "soft_quota_bytes": 0,
            "lock_days": days, "compliance": false, "yearly_price_cents": 0, "overage_cents_per_gb": 0
        });
        let (status, body) = send_json(c, "POST", &admin, "/v1/admin/plans", plan);
        assert_eq!(status, 400, "plan lock_days {days}: {body}");
        assert!(body.contains("lock_days must be between 0 and 36500"), "{body}");
    }
    c.admin_ok(&admin, &["tenant", "set", "acme", "--plan", "vault"]);
    let dev = c.new_repo("acme", "locked", None);
    c.ok("locked", &dev, &["init"]);
    let src = c.path("src");
    make_tree(&src);
    c.ok("locked", &dev, &["backup", src.to_str().unwrap()]);

    // The tenant's admin may lengthen the lock, but not into overflow.
    let tenant_admin = c.acme_admin.clone();
    let (status, body) = send_json(
        c,
        "PATCH",
        &tenant_admin,
        "/v1/admin/repos/locked",
        serde_json::json!({"lock_days": 106_751_991_147_000i64}),
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(repo_json(c, &tenant_admin, "locked")["lock_days"], 30, "the lock is unchanged");
    let (status, body) =
        send_json(c, "PATCH", &admin, "/v1/admin/repos/locked", serde_json::json!({"lock_days": i64::MAX}));
    assert_eq!(status, 400, "not even the provider admin: {body}");
    let (status, _) =
        send_json(c, "PATCH", &tenant_admin, "/v1/admin/repos/locked", serde_json::json!({"lock_days": 60}));
    assert_eq!(status, 200);

    // Every object stays undeletable, by everyone.
    let snaps: Vec<serde_json::Value> = c
        .http()
        .get(format!("{}/snapshots/", c.repo_url("locked")))
        .bearer_auth(&dev)
        .send()
        .unwrap()
        .bytes()
        .map(|b| serde_json::from_slice(&b).unwrap())
        .unwrap();
    for token in [&tenant_admin, &admin] {
        let name = snaps[0]["name"].as_str().unwrap();
        let r =
            c.http().delete(format!("{}/snapshots/{name}", c.repo_url("locked"))).bearer_auth(token).send().unwrap();
        assert_eq!(r.status().as_u16(), 403);
        assert!(r.text().unwrap().contains("retention lock of 60 days"));
    }
    c.ok("locked", &dev, &["check", "--read-data"]);
});

// Issue 12, item 2: a snapshot claiming ~2^63 logical bytes poisoned the repository's metering.
both_shapes!(a_snapshot_claiming_absurd_logical_bytes_is_refused, |c: &mut Cluster| {
    let dev = c.acme_device.clone();
    c.ok("acme", &dev, &["init"]);
    for logical in [(1u64 << 63) - 8192, u64::MAX, i64::MAX as u64, (1u64 << 56) + 1] {
        let snap = snapshot_claiming(logical);
        let (status, body) = put(c, "acme", &dev, "snapshots", &hash(&snap), snap);
        assert_eq!(status, 400, "logical {logical}: {body}");
        assert!(body.contains("nothing was stored"), "{body}");
    }
    // Later uploads of the repository work (the database is not poisoned), and nothing was left.
    let src = c.path("src");
    make_tree(&src);
    c.ok("acme", &dev, &["backup", src.to_str().unwrap()]);
    let real = repo_json(c, &c.acme_admin, "acme")["logical_bytes"].as_i64().unwrap();
    assert!(real > 0 && real < 1 << 40, "{real}");
    // The largest claim allowed is accepted, twice, and the total stays exact.
    for salt in [1u8, 2] {
        let mut snap = snapshot_claiming(1 << 56);
        snap.push(salt);
        let (status, body) = put(c, "acme", &dev, "snapshots", &hash(&snap), snap);
        assert_eq!(status, 201, "{body}");
    }
    assert_eq!(repo_json(c, &c.acme_admin, "acme")["logical_bytes"], serde_json::json!(real + (2i64 << 56)));
    let listed: Vec<serde_json::Value> = c
        .http()
        .get(format!("{}/snapshots/", c.repo_url("acme")))
        .bearer_auth(&dev)
        .send()
        .unwrap()
        .bytes()
        .map(|b| serde_json::from_slice(&b).unwrap())
        .unwrap();
    assert_eq!(listed.len(), 3, "the refused snapshots left nothing");
    let r = c
        .http()
        .get(format!("{}/v1/admin/usage?tenant=acme&format=csv", c.base()))
        .bearer_auth(&c.admin)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let csv = r.text().unwrap();
    assert!(csv.lines().skip(1).all(|l| l.split(',').all(|f| !f.starts_with('-'))), "negative figures: {csv}");
});

// Issue 12, item 3: lock objects bypassed quota, catalogue and metering (1.2 GiB of locks on a
// 2 MiB quota).
both_shapes!(locks_are_validated_bounded_and_metered, |c: &mut Cluster| {
    let dev = c.acme_device.clone();
    c.ok("acme", &dev, &["init"]);
    // Too large: refused before a byte is read.
    let (status, body) = put(c, "acme", &dev, "locks", "big", vec![b' '; 1 << 20]);
    assert_eq!(status, 413, "{body}");
    // Not a lock.
    let (status, body) = put(c, "acme", &dev, "locks", "junk", b"{\"hello\": 1}".to_vec());
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("not an arca lock"), "{body}");
    let lock = |i: usize| {
        serde_json::to_vec(&serde_json::json!({
            "hostname": format!("h{i}"), "pid": i, "operation": "backup",
            "created": "2026-12-04T00:00:00Z", "refreshed": "2026-12-04T00:00:00Z", "exclusive": false
        }))
        .unwrap()
    };
    let ingress_before = usage_ingress(c, "acme");
    let mut sent = 0;
    for i in 0..64 {
        let body = lock(i);
        sent += body.len() as i64;
        let (status, text) = put(c, "acme", &dev, "locks", &format!("l{i}"), body);
        assert_eq!(status, 201, "lock {i}: {text}");
    }
    let (status, body) = put(c, "acme", &dev, "locks", "l64", lock(64));
    assert_eq!(status, 429, "the 65th lock: {body}");
    assert!(body.contains("64 locks"), "{body}");
    // Rewriting a held lock (a refresh) still works.
    assert_eq!(put(c, "acme", &dev, "locks", "l3", lock(3)).0, 201);
    assert!(usage_ingress(c, "acme") >= ingress_before + sent, "lock bytes are metered as ingress");
    // Removing locks makes room again; a real backup takes and drops its own lock.
    for i in 0..64 {
        let r = c.http().delete(format!("{}/locks/l{i}", c.repo_url("acme"))).bearer_auth(&dev).send().unwrap();
        assert_eq!(r.status().as_u16(), 204);
    }
    let src = c.path("src");
    make_tree(&src);
    c.ok("acme", &dev, &["backup", src.to_str().unwrap()]);
});

fn usage_ingress(c: &Cluster, tenant: &str) -> i64 {
    let (status, v) = c.get_json(&c.admin, &format!("/v1/admin/usage?tenant={tenant}&format=json"));
    assert_eq!(status, 200, "{v}");
    v.as_array().unwrap().iter().map(|r| r["ingress_bytes"].as_i64().unwrap()).sum()
}

// Issue 12, item 6: a garbage object under pending/ (or index/) from a device stopped every
// backup. Devices may not write prune marks at all; marks and index manifests are validated.
both_shapes!(devices_cannot_plant_prune_marks_or_garbage_indexes, |c: &mut Cluster| {
    let dev = c.acme_device.clone();
    c.ok("acme", &dev, &["init"]);
    let garbage = vec![0x5au8; 100];
    let (status, body) = put(c, "acme", &dev, "pending", &hash(&garbage), garbage.clone());
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("prune"), "{body}");
    let (status, body) = put(c, "acme", &c.acme_admin.clone(), "pending", &hash(&garbage), garbage.clone());
    assert_eq!(status, 400, "an unreadable mark, even from an admin: {body}");
    let (status, body) = put(c, "acme", &dev, "index", &hash(&garbage), garbage);
    assert_eq!(status, 400, "{body}");
    let src = c.path("src");
    make_tree(&src);
    c.ok("acme", &dev, &["backup", src.to_str().unwrap()]);
});

// Issue 12, item 3 (second half): filling the disk made other tenants' requests fail and left
// the database stalled. Uploads now stop at a free-space reserve, and everything else goes on.
both_shapes_with!(
    uploads_stop_at_the_disk_reserve_and_everything_else_goes_on,
    &["--disk-reserve", "1000000000"],
    |c: &mut Cluster| {
        let dev = c.acme_device.clone();
        let out = c.arca("acme", &dev).arg("init").output().unwrap();
        assert!(!out.status.success(), "init uploads a config and a key");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("disk is nearly full") || err.contains("507"), "{err}");
        // Sign-in, account reads and the health check keep working; health says why it is unhappy.
        let token = c.login("acme-admin", cluster::TENANT_ADMIN_PASSWORD);
        assert_eq!(c.get_json(&token, "/v1/admin/repos").0, 200);
        let r = c.http().get(format!("{}/healthz", c.base())).send().unwrap();
        assert_eq!(r.status().as_u16(), 503);
        assert!(r.text().unwrap().contains("\"disk\":\"below reserve\""));
        let (_, v) = c.get_json(&c.admin, "/v1/admin/audit?tenant=acme");
        assert!(v.as_array().is_some());
    }
);

// Issue 12, item 7: /healthz wrote and deleted an object on every unauthenticated probe.
#[test]
fn healthz_does_not_write_on_every_probe() {
    let c = Cluster::start(Shape::Embedded);
    let repos = c.dir.path().join("data/repos");
    let get = || c.http().get(format!("{}/healthz", c.base())).send().unwrap().status().as_u16();
    assert_eq!(get(), 200);
    let before = fs::metadata(&repos).unwrap().modified().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    for _ in 0..50 {
        assert_eq!(get(), 200);
    }
    assert_eq!(fs::metadata(&repos).unwrap().modified().unwrap(), before, "a probe wrote to the store");
}

// Issue 12, items 5 and 7: five wrong sign-ins locked the provider admin out for everyone, and
// the lockout told which user names exist.
// The per-client throttle lives in each server process (docs/api.md): a guesser is counted by the
// node it reaches, so the test sends everything to one node of a scale-out pair.
both_shapes_with!(wrong_sign_ins_lock_out_the_guesser_not_the_user, &["--behind-proxy"], |c: &mut Cluster| {
    let node = c.nodes[0].base.clone();
    let login = |user: &str, password: &str, from: &str| {
        let r = c
            .http()
            .post(format!("{node}/v1/auth/login"))
            .header("x-forwarded-for", from)
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&serde_json::json!({"user": user, "password": password})).unwrap())
            .send()
            .unwrap();
        (r.status().as_u16(), r.text().unwrap())
    };
    let mut answers = Vec::new();
    for user in ["admin", "nobody-by-this-name"] {
        for _ in 0..4 {
            assert_eq!(login(user, "wrong password", "192.0.2.7").0, 401);
        }
        // The fifth failure locks, and says so.
        let (status, body) = login(user, "wrong password", "192.0.2.7");
        assert_eq!(status, 429, "{body}");
        answers.push(body.replace("nobody-by-this-name", "admin"));
    }
    // The same words whether the name exists or not (the time in them may differ by a second).
    let strip = |s: &str| s.split(" after ").next().unwrap().to_string();
    assert_eq!(strip(&answers[0]), strip(&answers[1]));
    // Locked: even the right password from the guesser's address is refused ...
    assert_eq!(login("admin", cluster::ADMIN_PASSWORD, "192.0.2.7").0, 429);
    // ... while the real admin, elsewhere, signs in.
    let (status, body) = login("admin", cluster::ADMIN_PASSWORD, "198.51.100.1");
    assert_eq!(status, 200, "{body}");
    // Spraying many names from one address is stopped too.
    let mut last = 0;
    for i in 0..25 {
        last = login(&format!("user{i}"), "wrong password", "203.0.113.9").0;
    }
    assert_eq!(last, 429);
});

// Issue 12, item 7: security headers, and the session cookie's Secure flag behind a proxy.
both_shapes_with!(
    pages_send_security_headers_and_secure_cookies_behind_a_tls_proxy,
    &["--behind-proxy"],
    |c: &mut Cluster| {
        let r = c.http().get(format!("{}/login", c.base())).header("x-forwarded-proto", "https").send().unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let h = r.headers();
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("frame-ancestors 'none'") && csp.contains("default-src 'none'"), "{csp}");
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["x-frame-options"], "DENY");
        assert!(h.contains_key("referrer-policy"));
        assert!(h["strict-transport-security"].to_str().unwrap().contains("max-age="));
        let cookies: Vec<&str> = h.get_all("set-cookie").iter().map(|v| v.to_str().unwrap()).collect();
        assert!(!cookies.is_empty() && cookies.iter().all(|c| c.contains("; Secure")), "{cookies:?}");
        // Plain HTTP straight to the server: no HSTS, no Secure (the browser would drop the cookie).
        let r = c.http().get(format!("{}/login", c.base())).send().unwrap();
        assert!(!r.headers().contains_key("strict-transport-security"));
        assert!(r.headers().get_all("set-cookie").iter().all(|v| !v.to_str().unwrap().contains("Secure")));
        assert!(r.headers().contains_key("content-security-policy"));
    }
);

// Issue 12, item 7: a 100,000-character display name hid every figure of the dashboard.
both_shapes!(display_names_and_name_probes_are_bounded, |c: &mut Cluster| {
    let admin = c.admin.clone();
    let long = "x".repeat(100_000);
    let (status, body) = send_json(
        c,
        "POST",
        &admin,
        "/v1/admin/tenants",
        serde_json::json!({"name": "longname", "display_name": long}),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("at most 100 characters"), "{body}");
    let (status, body) =
        send_json(c, "PATCH", &admin, "/v1/admin/tenants/acme", serde_json::json!({"display_name": long}));
    assert_eq!(status, 400, "{body}");
    assert_eq!(tenant_json(c, "acme")["display_name"], "acme");
    // Another tenant's repository and user names do not show as "already exists".
    let other_admin = c.other_admin.clone();
    let (status, body) =
        send_json(c, "POST", &other_admin, "/v1/admin/tenants/other/repos", serde_json::json!({"name": "acme"}));
    assert_eq!(status, 409, "{body}");
    assert!(!body.contains("exists") && body.contains("not available"), "{body}");
    let (status, body) = send_json(
        c,
        "POST",
        &other_admin,
        "/v1/admin/tenants/other/users",
        serde_json::json!({"name": "acme-admin", "password": "long enough password", "role": "tenant-user"}),
    );
    assert_eq!(status, 409, "{body}");
    assert!(!body.contains("exists") && body.contains("not available"), "{body}");
});

// Issue 12, item 7: tenant admins saw server-wide scrub totals; no alert was raised on damage.
both_shapes!(scrub_damage_raises_an_alert_and_tenants_see_only_their_own, |c: &mut Cluster| {
    let dev = c.acme_device.clone();
    c.ok("acme", &dev, &["init"]);
    let src = c.path("src");
    make_tree(&src);
    c.ok("acme", &dev, &["backup", src.to_str().unwrap()]);
    let packs: Vec<serde_json::Value> = c
        .http()
        .get(format!("{}/data/", c.repo_url("acme")))
        .bearer_auth(&dev)
        .send()
        .unwrap()
        .bytes()
        .map(|b| serde_json::from_slice(&b).unwrap())
        .unwrap();
    c.corrupt("acme", "data", packs[0]["name"].as_str().unwrap());
    let admin = c.admin.clone();
    let out = c.admin_cmd(&admin, &["--json", "scrub", "--start", "--wait"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let (_, staff) = c.get_json(&admin, "/v1/admin/scrub");
    assert!(staff["runs"][0]["objects_checked"].as_i64().unwrap() > 0);
    let (_, theirs) = c.get_json(&c.other_admin, "/v1/admin/scrub");
    assert_eq!(theirs["runs"][0]["objects_checked"], 0, "no server-wide totals for a tenant: {theirs}");
    assert_eq!(theirs["runs"][0]["bytes_checked"], 0);
    assert_eq!(theirs["runs"][0]["damaged"], 0, "another tenant's damage is not theirs");
    let (_, mine) = c.get_json(&c.acme_admin, "/v1/admin/scrub");
    assert_eq!(mine["runs"][0]["damaged"], 1);
    let (_, health) = c.get_json(&admin, "/v1/admin/health");
    let alerts = health["alerts"].as_array().unwrap();
    assert!(alerts.iter().any(|a| a["kind"] == "scrub-damage" && a["tenant"] == "acme"), "{health}");
    let (_, theirs) = c.get_json(&c.other_admin, "/v1/admin/health");
    assert!(!theirs["alerts"].as_array().unwrap().iter().any(|a| a["kind"] == "scrub-damage"));
});

// Issue 12, item 7: the metadata database was created world-readable.
#[test]
fn the_metadata_database_is_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let c = Cluster::start(Shape::Embedded);
    for name in ["arca.db", "arca.db-wal"] {
        let path = c.dir.path().join("data").join(name);
        if let Ok(m) = fs::metadata(&path) {
            assert_eq!(m.permissions().mode() & 0o077, 0, "{} is mode {:o}", path.display(), m.permissions().mode());
        }
    }
    assert!(c.dir.path().join("data/arca.db").exists());
}

// Issue 12, item 4: uploads were held whole in memory. A large upload streams through the server
// (its memory is measured in bench/server-hardening.sh); here: a truncated or stalled body stores
// nothing and leaves no spool file behind.
both_shapes!(large_uploads_stream_and_truncated_ones_leave_nothing, |c: &mut Cluster| {
    use std::io::{Read, Write};
    let dev = c.acme_device.clone();
    c.ok("acme", &dev, &["init"]);
    let body = cluster::noise(48 << 20, 7);
    let name = hash(&body);
    let (status, text) = put(c, "acme", &dev, "data", &name, body.clone());
    assert_eq!(status, 201, "{text}");
    let back = c.http().get(format!("{}/data/{name}", c.repo_url("acme"))).bearer_auth(&dev).send().unwrap();
    assert_eq!(back.headers()["content-length"], body.len().to_string().as_str());
    assert!(back.bytes().unwrap().as_ref() == body.as_slice(), "a streamed download returns the bytes");

    // A body cut off after half its declared length.
    let base = c.base();
    let addr = base.trim_start_matches("http://");
    let other = hash(b"never completed");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "PUT /v1/repos/acme/data/{other} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {dev}\r\nContent-Length: 1000000\r\n\r\n"
    )
    .unwrap();
    s.write_all(&[1u8; 500_000]).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    let r = c.http().head(format!("{}/data/{other}", c.repo_url("acme"))).bearer_auth(&dev).send().unwrap();
    assert_eq!(r.status().as_u16(), 404, "a truncated upload is not stored");
    if c.shape == Shape::Embedded {
        let tmp = c.dir.path().join("data/repos/acme/tmp");
        let left: Vec<_> = fs::read_dir(&tmp).map(|d| d.flatten().map(|e| e.file_name()).collect()).unwrap_or_default();
        assert!(left.is_empty(), "spool files left behind: {left:?}");
    }
});
