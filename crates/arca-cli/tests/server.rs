//! End-to-end tests of `arca server`: real server processes on loopback ports, set up with
//! `arca admin`, driven by the real `arca` client through `-r http://…` and by raw HTTP for what
//! the client never sends. Every test runs against the embedded default (SQLite + disk) and
//! against two servers over PostgreSQL + S3 (see `cluster`).

#[macro_use]
mod cluster;

use std::fs;
use std::process::Stdio;

use cluster::{assert_same_tree, make_tree, noise, sinks, Cluster, Shape};

/// Parses a JSON array answer.
fn json_list(r: reqwest::blocking::Response) -> Vec<serde_json::Value> {
    let status = r.status();
    let body = r.bytes().unwrap();
    assert!(status.is_success(), "{status}: {}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

fn snapshot_ids(c: &Cluster, repo: &str, token: &str) -> Vec<String> {
    let out = c.ok(repo, token, &["snapshots", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v.as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap().to_string()).collect()
}

fn tenant_stored(c: &Cluster, tenant: &str) -> i64 {
    let (status, v) = c.get_json(&c.admin, &format!("/v1/admin/tenants/{tenant}"));
    assert_eq!(status, 200, "{v}");
    v["stored_bytes"].as_i64().unwrap()
}

/// Sum of the sizes of every listed object of `repo` (locks excluded: not stored backup data).
fn listed_bytes(c: &Cluster, repo: &str, token: &str) -> i64 {
    let mut total = 0;
    for kind in ["config", "keys", "data", "meta", "index", "snapshots", "pending"] {
        let list = json_list(c.http().get(format!("{}/{kind}/", c.repo_url(repo))).bearer_auth(token).send().unwrap());
        total += list.iter().map(|e| e["size"].as_i64().unwrap()).sum::<i64>();
    }
    total
}

both_shapes!(backup_restore_check_and_only_tenant_admins_forget, |c: &mut Cluster| {
    let dev = c.acme_device.clone();
    let out = c.ok("acme", &dev, &["init"]);
    assert!(out.contains("created arca repository"), "{out}");
    let src = c.path("src");
    make_tree(&src);
    c.ok("acme", &dev, &["backup", src.to_str().unwrap()]);
    let ids = snapshot_ids(c, "acme", &dev);
    assert_eq!(ids.len(), 1);

    let target = c.path("restored");
    c.ok("acme", &dev, &["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_same_tree(&src, &target.join(src.strip_prefix("/").unwrap()));
    c.ok("acme", &dev, &["check", "--read-data"]);

    // A device token cannot forget snapshots.
    let out = c.arca("acme", &dev).args(["forget", &ids[0]]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("delete not allowed"), "{err}");
    assert_eq!(snapshot_ids(c, "acme", &dev), ids);
    // Its locks were removed nevertheless (a device may delete its own locks).
    let locks = json_list(c.http().get(format!("{}/locks/", c.repo_url("acme"))).bearer_auth(&dev).send().unwrap());
    assert!(locks.is_empty(), "{locks:?}");

    // The tenant's admin can (the plan has no retention lock), and prune frees the space.
    let before = tenant_stored(c, "acme");
    let admin = c.acme_admin.clone();
    c.ok("acme", &admin, &["forget", &ids[0], "--prune"]);
    assert!(snapshot_ids(c, "acme", &dev).is_empty());
    let after = tenant_stored(c, "acme");
    assert!(after < before, "prune freed nothing: {before} -> {after}");
    assert_eq!(after, listed_bytes(c, "acme", &admin), "stored bytes = what is listed");
    c.ok("acme", &dev, &["check"]);
});

both_shapes!(raw_requests_are_checked, |c: &mut Cluster| {
    let (dev, other) = (c.acme_device.clone(), c.other_device.clone());
    c.ok("acme", &dev, &["init"]);
    let http = c.http();
    let repo = c.repo_url("acme");

    // A pack whose bytes do not match its name is refused and not stored.
    let body = b"some pack bytes".to_vec();
    let wrong = blake3::hash(b"other bytes").to_hex().to_string();
    let r = http.put(format!("{repo}/data/{wrong}")).bearer_auth(&dev).body(body.clone()).send().unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert!(r.text().unwrap().contains("nothing was stored"));
    assert!(json_list(http.get(format!("{repo}/data/")).bearer_auth(&dev).send().unwrap()).is_empty());

    // The right name is accepted, read back, ranged and listed.
    let right = blake3::hash(&body).to_hex().to_string();
    let r = http.put(format!("{repo}/data/{right}")).bearer_auth(&dev).body(body.clone()).send().unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let r = http.put(format!("{repo}/data/{right}")).bearer_auth(&dev).body(body.clone()).send().unwrap();
    assert_eq!(r.status().as_u16(), 200, "a repeated upload is acknowledged without a second copy");
    let repo = c.repo_url("acme"); // the other node, in scale-out
    let r = http.get(format!("{repo}/data/{right}")).bearer_auth(&dev).header("range", "bytes=5-8").send().unwrap();
    assert_eq!(r.status().as_u16(), 206);
    assert_eq!(r.bytes().unwrap().as_ref(), b"pack");
    let r = http.get(format!("{repo}/data/{right}")).bearer_auth(&dev).header("range", "bytes=5-800").send().unwrap();
    assert_eq!(r.status().as_u16(), 416);
    let r = http.head(format!("{repo}/data/{right}")).bearer_auth(&dev).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["x-arca-size"], body.len().to_string().as_str());
    let listed = json_list(http.get(format!("{repo}/data/")).bearer_auth(&dev).send().unwrap());
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["name"], right.as_str());
    assert_eq!(listed[0]["size"], body.len() as u64);

    // A device cannot delete it; a missing object is 404.
    let r = http.delete(format!("{repo}/data/{right}")).bearer_auth(&dev).send().unwrap();
    assert_eq!(r.status().as_u16(), 403);
    assert!(r.text().unwrap().contains("delete not allowed"));
    let r = http.get(format!("{repo}/data/{}", "0".repeat(64))).bearer_auth(&dev).send().unwrap();
    assert_eq!(r.status().as_u16(), 404);

    // Truncated and oversized bodies: refused, nothing stored.
    let data = noise(100_000, 1);
    let name = blake3::hash(&data).to_hex().to_string();
    let addr = c.base();
    let addr = addr.trim_start_matches("http://");
    {
        use std::io::Write;
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        write!(
            stream,
            "PUT /v1/repos/acme/data/{name} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {dev}\r\n\
             Content-Length: 100000\r\n\r\n"
        )
        .unwrap();
        stream.write_all(&data[..40_000]).unwrap();
        drop(stream); // the connection dies mid-upload
    }
    let r = http.put(format!("{repo}/data/{name}")).bearer_auth(&dev).header("content-length", "99999999999").send();
    if let Ok(r) = r {
        assert_eq!(r.status().as_u16(), 413);
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    let r = http.head(format!("{repo}/data/{name}")).bearer_auth(&dev).send().unwrap();
    assert_eq!(r.status().as_u16(), 404, "a truncated upload must not become visible");

    // Path tricks and names of the wrong shape.
    let admin = c.admin.clone();
    for bad in ["..%2fconfig", "..%2F..%2Fetc", "A", &"a".repeat(65), &"A".repeat(64)] {
        let r = http.get(format!("{repo}/data/{bad}")).bearer_auth(&admin).send().unwrap();
        assert_eq!(r.status().as_u16(), 400, "{bad}");
        let r = http.put(format!("{repo}/index/{bad}")).bearer_auth(&admin).body("x").send().unwrap();
        assert_eq!(r.status().as_u16(), 400, "{bad}");
    }
    for bad_repo in ["ACME", "a_b", "..%2facme"] {
        let r = http.get(format!("{}/v1/repos/{bad_repo}/data/", c.base())).bearer_auth(&admin).send().unwrap();
        assert_eq!(r.status().as_u16(), 400, "{bad_repo}");
    }
    // Sent verbatim (an HTTP client library would normalise these before sending).
    for path in ["data/%2e%2e", "data/..%2f..%2f..%2fetc%2fpasswd", "config/%2e%2e%2fconfig", "locks/.%2e"] {
        assert_eq!(c.raw("GET", &format!("/v1/repos/acme/{path}"), &admin), 400, "{path}");
    }
    for path in
        ["/v1/repos/acme/data/../config", "/v1/repos/../repos/acme/config/config", "/v1/repos/%2e%2e/config/config"]
    {
        let status = c.raw("GET", path, &admin);
        assert!(status == 400 || status == 404, "{path}: {status}");
    }
    let r = http.get(format!("{repo}/nonsense/")).bearer_auth(&admin).send().unwrap();
    assert_eq!(r.status().as_u16(), 400);

    // Tokens: missing or wrong is 401; another tenant's token sees a 404.
    assert_eq!(http.get(format!("{repo}/data/")).send().unwrap().status().as_u16(), 401);
    assert_eq!(
        http.get(format!("{repo}/data/")).bearer_auth("arca_not-a-token").send().unwrap().status().as_u16(),
        401
    );
    assert_eq!(http.get(format!("{repo}/data/")).bearer_auth(&other).send().unwrap().status().as_u16(), 404);
    assert_eq!(http.get(format!("{repo}/data/{right}")).bearer_auth(&other).send().unwrap().status().as_u16(), 404);

    // Nobody overwrites the config with other bytes.
    for token in [&dev, &admin] {
        let r = http.put(format!("{repo}/config/config")).bearer_auth(token).body("{}").send().unwrap();
        assert_eq!(r.status().as_u16(), 409);
    }

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
    let r = http.put(format!("{repo}/snapshots/{name}")).bearer_auth(&dev).body(bytes).send().unwrap();
    assert_eq!(r.status().as_u16(), 409);
    assert!(r.text().unwrap().contains("not stored"));
    assert!(json_list(http.get(format!("{repo}/snapshots/")).bearer_auth(&dev).send().unwrap()).is_empty());
    let bytes = snapshot(&right);
    let name = blake3::hash(&bytes).to_hex().to_string();
    let r = http.put(format!("{repo}/snapshots/{name}")).bearer_auth(&dev).body(bytes).send().unwrap();
    assert_eq!(r.status().as_u16(), 201, "{}", r.text().unwrap());
});

both_shapes!(listing_is_paged, |c: &mut Cluster| {
    let dev = c.acme_device.clone();
    c.ok("acme", &dev, &["init"]);
    let http = c.http();
    let mut names = Vec::new();
    for i in 0..25u32 {
        let body = i.to_le_bytes();
        let name = blake3::hash(&body).to_hex().to_string();
        let r = http.put(format!("{}/data/{name}", c.repo_url("acme"))).bearer_auth(&dev).body(body.to_vec()).send();
        assert_eq!(r.unwrap().status().as_u16(), 201);
        names.push(name);
    }
    names.sort();
    let mut seen = Vec::new();
    let mut after = String::new();
    loop {
        let repo = c.repo_url("acme");
        let url = if after.is_empty() {
            format!("{repo}/data/?limit=10")
        } else {
            format!("{repo}/data/?limit=10&after={after}")
        };
        let page = json_list(http.get(url).bearer_auth(&dev).send().unwrap());
        seen.extend(page.iter().map(|e| e["name"].as_str().unwrap().to_string()));
        if page.len() < 10 {
            break;
        }
        after = seen.last().unwrap().clone();
    }
    assert_eq!(seen, names);
});

both_shapes!(client_errors_are_clear, |c: &mut Cluster| {
    // No token.
    let out = c.arca("acme", "").env_remove("ARCA_TOKEN").args(["snapshots"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ARCA_TOKEN"));
    // A wrong token.
    let out = c.arca("acme", "wrong").args(["snapshots"]).output().unwrap();
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("401") && err.contains("invalid, expired or revoked token"), "{err}");
    // Not initialised yet.
    let out = c.arca("acme", &c.acme_device).args(["snapshots"]).output().unwrap();
    assert_eq!(out.status.code(), Some(10), "{}", String::from_utf8_lossy(&out.stderr));
    // A revoked device stops working at once, on every node.
    c.ok("acme", &c.acme_device, &["init"]);
    c.admin_ok(&c.admin, &["device", "revoke", "--tenant", "acme", "laptop"]);
    for _ in 0..c.nodes.len() {
        let out = c.arca("acme", &c.acme_device).args(["snapshots"]).output().unwrap();
        assert_ne!(out.status.code(), Some(0));
        assert!(String::from_utf8_lossy(&out.stderr).contains("revoked"));
    }
});

both_shapes!(tenants_are_isolated, |c: &mut Cluster| {
    let (dev, other_dev, other_admin) = (c.acme_device.clone(), c.other_device.clone(), c.other_admin.clone());
    c.ok("acme", &dev, &["init"]);
    let src = c.path("src");
    make_tree(&src);
    c.ok("acme", &dev, &["backup", src.to_str().unwrap()]);
    let snap = json_list(c.http().get(format!("{}/snapshots/", c.repo_url("acme"))).bearer_auth(&dev).send().unwrap());
    let snap = snap[0]["name"].as_str().unwrap().to_string();

    // Another tenant's device and admin tokens: the repository does not exist for them.
    for token in [&other_dev, &other_admin] {
        let repo = c.repo_url("acme");
        let http = c.http();
        for (method, url) in [
            ("GET", format!("{repo}/snapshots/")),
            ("GET", format!("{repo}/snapshots/{snap}")),
            ("HEAD", format!("{repo}/snapshots/{snap}")),
            ("DELETE", format!("{repo}/snapshots/{snap}")),
            ("PUT", format!("{repo}/index/{}", blake3::hash(b"x").to_hex())),
        ] {
            let r = http.request(method.parse().unwrap(), &url).bearer_auth(token).body("x").send().unwrap();
            assert_eq!(r.status().as_u16(), 404, "{method} {url}");
        }
        let out = c.arca("acme", token).args(["snapshots"]).output().unwrap();
        assert_ne!(out.status.code(), Some(0), "another tenant listed acme's snapshots");
    }
    // Their admin sees only their own tenant in the account API.
    let (status, tenants) = c.get_json(&other_admin, "/v1/admin/tenants");
    assert_eq!(status, 200);
    assert_eq!(tenants.as_array().unwrap().len(), 1);
    assert_eq!(tenants[0]["name"], "other");
    for path in [
        "/v1/admin/tenants/acme",
        "/v1/admin/tenants/acme/devices",
        "/v1/admin/tenants/acme/repos",
        "/v1/admin/usage?tenant=acme",
    ] {
        assert_eq!(c.get_json(&other_admin, path).0, 404, "{path}");
    }
    let (_, repos) = c.get_json(&other_admin, "/v1/admin/repos");
    assert!(repos.as_array().unwrap().iter().all(|r| r["tenant"] == "other"), "{repos}");
    let (_, usage) = c.get_json(&other_admin, "/v1/admin/usage");
    assert!(usage.as_array().unwrap().iter().all(|r| r["tenant"] == "other"), "{usage}");
    let r = c
        .http()
        .post(format!("{}/v1/admin/tenants/acme/devices", c.base()))
        .bearer_auth(&other_admin)
        .header("content-type", "application/json")
        .body(serde_json::json!({"name": "sneaky", "repo": "acme"}).to_string())
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    // Devices and tenant admins cannot act as the provider.
    for token in [&dev, &other_admin] {
        let r = c
            .http()
            .post(format!("{}/v1/admin/tenants", c.base()))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(serde_json::json!({"name": "x"}).to_string())
            .send();
        assert_eq!(r.unwrap().status().as_u16(), 403);
    }
    // Acme's data is intact and its usage counts nothing of theirs.
    c.ok("acme", &dev, &["check", "--read-data"]);
    assert_eq!(tenant_stored(c, "other"), 0);
    // The attempts are in the audit log, under the intruder's tenant.
    let (_, audit) = c.get_json(&c.admin, "/v1/admin/audit?tenant=other&limit=200");
    let denied = audit.as_array().unwrap().iter().filter(|e| e["outcome"] == "denied").count();
    assert!(denied >= 5, "{audit}");
});

both_shapes!(retention_lock_refuses_deletes_for_every_role, |c: &mut Cluster| {
    let dev = c.new_repo("acme", "acme-locked", Some(30));
    c.ok("acme-locked", &dev, &["init"]);
    let src = c.path("src");
    make_tree(&src);
    c.ok("acme-locked", &dev, &["backup", src.to_str().unwrap()]);
    let snaps =
        json_list(c.http().get(format!("{}/snapshots/", c.repo_url("acme-locked"))).bearer_auth(&dev).send().unwrap());
    let snap = snaps[0]["name"].as_str().unwrap().to_string();
    let packs =
        json_list(c.http().get(format!("{}/data/", c.repo_url("acme-locked"))).bearer_auth(&dev).send().unwrap());
    let pack = packs[0]["name"].as_str().unwrap().to_string();
    let (admin, tenant_admin) = (c.admin.clone(), c.acme_admin.clone());
    for token in [&dev, &tenant_admin, &admin] {
        for (kind, name) in [("snapshots", &snap), ("data", &pack)] {
            let r = c.http().delete(format!("{}/{kind}/{name}", c.repo_url("acme-locked"))).bearer_auth(token).send();
            let r = r.unwrap();
            assert_eq!(r.status().as_u16(), 403, "{kind} deleted inside the lock");
        }
    }
    let out = c.arca("acme-locked", &tenant_admin).args(["forget", "latest"]).output().unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("retention lock"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(snapshot_ids(c, "acme-locked", &dev).len(), 1);
    // Nor can the repository or its tenant go.
    let out = c.admin_cmd(&admin, &["repo", "delete", "acme-locked"]).output().unwrap();
    assert!(!out.status.success());
    let out = c.admin_cmd(&admin, &["tenant", "delete", "acme"]).output().unwrap();
    assert!(!out.status.success());
    // A tenant admin cannot shorten the lock.
    let out = c.admin_cmd(&tenant_admin, &["repo", "lock", "acme-locked", "--days", "1"]).output().unwrap();
    assert!(!out.status.success());
    // Compliance mode: not even the provider can shorten it any more.
    c.admin_ok(&admin, &["repo", "lock", "acme-locked", "--days", "30", "--compliance"]);
    let out = c.admin_cmd(&admin, &["repo", "lock", "acme-locked", "--days", "0"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("compliance"));
    // Governance mode (the default) lets the provider shorten a lock, audited; then deletes work.
    let dev2 = c.new_repo("acme", "acme-gov", Some(30));
    c.ok("acme-gov", &dev2, &["init"]);
    c.ok("acme-gov", &dev2, &["backup", src.to_str().unwrap()]);
    let out = c.arca("acme-gov", &tenant_admin).args(["forget", "latest"]).output().unwrap();
    assert_ne!(out.status.code(), Some(0));
    c.admin_ok(&admin, &["repo", "lock", "acme-gov", "--days", "0"]);
    c.ok("acme-gov", &tenant_admin, &["forget", "latest", "--prune"]);
    assert!(snapshot_ids(c, "acme-gov", &dev2).is_empty());
    let (_, audit) = c.get_json(&admin, "/v1/admin/audit?tenant=acme&limit=500");
    let entries = audit.as_array().unwrap();
    assert!(entries.iter().any(|e| e["action"] == "object.delete" && e["outcome"] == "denied"));
    assert!(entries.iter().any(|e| e["action"] == "repo.lock" && e["target"] == "acme-gov" && e["outcome"] == "ok"));
});

both_shapes!(quota_refusal_leaves_usage_unchanged, |c: &mut Cluster| {
    let (dev, admin) = (c.acme_device.clone(), c.admin.clone());
    c.ok("acme", &dev, &["init"]);
    let src = c.path("src");
    make_tree(&src);
    c.ok("acme", &dev, &["backup", src.to_str().unwrap()]);
    let stored = tenant_stored(c, "acme");
    // A quota just above what is stored.
    c.admin_ok(&admin, &["tenant", "set", "acme", "--hard-quota", &(stored + 50_000).to_string()]);
    let big = c.path("big");
    fs::create_dir_all(&big).unwrap();
    fs::write(big.join("noise.bin"), noise(3 << 20, 7)).unwrap();
    let out = c.arca("acme", &dev).args(["backup", big.to_str().unwrap()]).output().unwrap();
    assert_ne!(out.status.code(), Some(0), "a backup past the hard quota succeeded");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("quota exceeded") && err.contains("hard quota"), "{err}");
    // What was refused is not stored, not counted and not listed.
    let after = tenant_stored(c, "acme");
    assert!(after <= stored + 50_000, "{after} passed the quota");
    assert_eq!(after, listed_bytes(c, "acme", &dev));
    // A raw upload past the quota is refused before its bytes are read, naming quota and usage.
    let data = noise(200_000, 9);
    let name = blake3::hash(&data).to_hex().to_string();
    let r = c.http().put(format!("{}/data/{name}", c.repo_url("acme"))).bearer_auth(&dev).body(data).send().unwrap();
    assert_eq!(r.status().as_u16(), 507);
    assert!(r.text().unwrap().contains("quota exceeded"));
    assert_eq!(tenant_stored(c, "acme"), after, "a refused upload changed the usage");
    // Raising the quota lets the backup finish; past the soft quota the client is warned.
    c.admin_ok(&admin, &["tenant", "set", "acme", "--hard-quota", "1GiB", "--soft-quota", "1MB"]);
    let out = c.arca("acme", &dev).args(["backup", big.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("past its soft quota of 1.0 MB"), "{err}");
    c.ok("acme", &dev, &["check", "--read-data"]);
    let (_, audit) = c.get_json(&admin, "/v1/admin/audit?tenant=acme&limit=500");
    assert!(audit.as_array().unwrap().iter().any(|e| e["action"] == "object.put" && e["outcome"] == "denied"));
});

both_shapes!(metering_equals_the_bytes_sent_and_stored, |c: &mut Cluster| {
    let (dev, admin) = (c.acme_device.clone(), c.admin.clone());
    c.ok("acme", &dev, &["init"]);
    let src = c.path("src");
    make_tree(&src);
    c.ok("acme", &dev, &["backup", src.to_str().unwrap()]);
    let usage = |c: &Cluster| {
        let (status, v) = c.get_json(&admin, "/v1/admin/usage?tenant=acme");
        assert_eq!(status, 200, "{v}");
        let rows = v.as_array().unwrap().clone();
        rows.into_iter().rfind(|r| r["repository"] == "acme").unwrap()
    };
    let snaps: Vec<serde_json::Value> = serde_json::from_str(&c.ok("acme", &dev, &["--json", "snapshots"])).unwrap();
    let represented: i64 = snaps.iter().map(|s| s["summary"]["total_bytes"].as_i64().unwrap()).sum();
    let stored = listed_bytes(c, "acme", &dev);
    let u0 = usage(c);
    assert_eq!(u0["stored_bytes"].as_i64().unwrap(), stored);
    assert_eq!(u0["snapshots"].as_i64().unwrap(), snaps.len() as i64, "snapshots taken today");
    // Every upload was new, so ingress is what is stored plus the lock files the client wrote
    // (metered too: a few hundred bytes each for init's and the backup's locks).
    let locks = u0["ingress_bytes"].as_i64().unwrap() - stored;
    assert!((1..=16 << 10).contains(&locks), "ingress beyond the stored bytes: {locks} ({u0})");
    // Logical bytes: what the snapshot represents, as the client counted it.
    assert!(represented > 300_000);
    assert_eq!(u0["logical_bytes"].as_i64().unwrap(), represented, "{u0}");
    // Known transfers move the counters by exactly their size.
    let data = noise(123_457, 3);
    let name = blake3::hash(&data).to_hex().to_string();
    let http = c.http();
    let r = http.put(format!("{}/data/{name}", c.repo_url("acme"))).bearer_auth(&dev).body(data.clone()).send();
    assert_eq!(r.unwrap().status().as_u16(), 201);
    let r = http.get(format!("{}/data/{name}", c.repo_url("acme"))).bearer_auth(&dev).send().unwrap();
    assert_eq!(r.bytes().unwrap().len(), data.len());
    let r = http.get(format!("{}/data/{name}", c.repo_url("acme"))).bearer_auth(&dev).header("range", "bytes=10-1009");
    assert_eq!(r.send().unwrap().bytes().unwrap().len(), 1000);
    // Egress is billed when a download's body has ended, just after the client has it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let u1 = loop {
        let u = usage(c);
        let egress = u["egress_bytes"].as_i64().unwrap() - u0["egress_bytes"].as_i64().unwrap();
        if egress >= 123_457 + 1000 || std::time::Instant::now() > deadline {
            break u;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let delta = |k: &str| u1[k].as_i64().unwrap() - u0[k].as_i64().unwrap();
    assert_eq!(delta("ingress_bytes"), 123_457);
    assert_eq!(delta("egress_bytes"), 123_457 + 1000);
    assert_eq!(delta("stored_bytes"), 123_457);
    assert_eq!(delta("object_count"), 1);
    assert_eq!(u1["stored_bytes"].as_i64().unwrap(), tenant_stored(c, "acme"));
    // The CSV export says the same.
    let out = c.admin_ok(&admin, &["usage", "--tenant", "acme", "--csv"]);
    let line = out.lines().rfind(|l| l.contains(",acme,acme,")).unwrap().to_string();
    assert!(line.contains(&format!(",{},", u1["stored_bytes"])), "{line}");
    assert!(line.ends_with(&format!(",{},{},{}", u1["ingress_bytes"], u1["egress_bytes"], u1["snapshots"])), "{line}");
    // Billing: the tenant began today, so its month's average is what it stores now.
    let out = c.admin_ok(&admin, &["billing", "--tenant", "acme", "--csv"]);
    let line = out.lines().find(|l| l.contains(",acme,")).unwrap_or_else(|| panic!("{out}"));
    let f: Vec<&str> = line.split(',').collect();
    assert_eq!((f[3], f[5]), ("1", tenant_stored(c, "acme").to_string().as_str()), "{line}");
    assert_eq!(f[10], snaps.len().to_string(), "snapshots this month: {line}");
    let (status, _) = c.get_json(&c.acme_admin, "/v1/admin/billing");
    assert_eq!(status, 403, "prices are the provider's business");
});

both_shapes!(sigterm_stops_the_server_cleanly, |c: &mut Cluster| {
    c.ok("acme", &c.acme_device, &["init"]);
    for n in &mut c.nodes {
        // SAFETY: signalling our own child process.
        assert_eq!(unsafe { libc::kill(n.child.id() as libc::pid_t, libc::SIGTERM) }, 0);
        assert_eq!(n.child.wait().unwrap().code(), Some(0));
    }
});

both_shapes!(server_killed_during_uploads_loses_no_acknowledged_object, |c: &mut Cluster| {
    let dev = c.acme_device.clone();
    c.ok("acme", &dev, &["init"]);
    let small = c.path("small");
    make_tree(&small);
    c.ok("acme", &dev, &["backup", small.to_str().unwrap()]);
    let acknowledged: Vec<serde_json::Value> =
        serde_json::from_str(&c.ok("acme", &dev, &["--json", "snapshots"])).unwrap();
    assert_eq!(acknowledged.len(), 1);

    // A larger backup (several packs of incompressible data), cut by SIGKILL of the server it
    // talks to. Fresh content each attempt; shorter delays until the kill lands mid-upload.
    let big = c.path("big");
    let mut cut_one = false;
    for (attempt, delay_ms) in [400u64, 200, 100, 40, 10].into_iter().enumerate() {
        let _ = fs::remove_dir_all(&big);
        fs::create_dir_all(&big).unwrap();
        for i in 0..6 {
            fs::write(big.join(format!("part{i}.bin")), noise(8 << 20, attempt as u64 * 10 + i)).unwrap();
        }
        // Pin the client to node 0, which is the one killed.
        let mut cmd = c.arca("acme", &dev);
        cmd.env("ARCA_REPOSITORY", format!("{}/v1/repos/acme", c.nodes[0].base));
        let mut client = cmd.args(["--no-progress", "backup", big.to_str().unwrap()]).spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        c.kill_and_restart(0);
        if !client.wait().unwrap().success() {
            cut_one = true;
            break;
        }
    }
    assert!(cut_one, "no kill landed during an upload");

    let after: Vec<serde_json::Value> = serde_json::from_str(&c.ok("acme", &dev, &["--json", "snapshots"])).unwrap();
    for snap in &acknowledged {
        assert!(after.iter().any(|s| s["id"] == snap["id"]), "acknowledged snapshot {} lost", snap["id"]);
    }
    let check = c.arca("acme", &dev).args(["check", "--read-data"]).output().unwrap();
    assert!(check.status.success(), "check after the crash:\n{}", String::from_utf8_lossy(&check.stderr));
    let target = c.path("restored");
    c.ok("acme", &dev, &["restore", acknowledged[0]["id"].as_str().unwrap(), "--target", target.to_str().unwrap()]);
    assert_same_tree(&small, &target.join(small.strip_prefix("/").unwrap()));
    // The next backup completes, and the books still balance.
    c.ok("acme", &dev, &["backup", big.to_str().unwrap()]);
    let check = c.arca("acme", &dev).args(["check", "--read-data"]).output().unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    assert_eq!(tenant_stored(c, "acme"), listed_bytes(c, "acme", &dev));
});

both_shapes!(fifty_clients_back_up_at_once, |c: &mut Cluster| {
    let dev = c.acme_device.clone();
    c.ok("acme", &dev, &["init"]);
    let clients = 50;
    let mut running = Vec::new();
    for i in 0..clients {
        let src = c.path(&format!("client-{i}"));
        fs::create_dir_all(src.join("docs")).unwrap();
        fs::write(src.join("docs/shared.txt"), "the same in every client\n".repeat(100)).unwrap();
        fs::write(src.join(format!("own-{i}.bin")), (0..50_000u32).map(|b| (b * (i + 3)) as u8).collect::<Vec<u8>>())
            .unwrap();
        let child = c
            .arca("acme", &dev)
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
    let snaps: Vec<serde_json::Value> = serde_json::from_str(&c.ok("acme", &dev, &["--json", "snapshots"])).unwrap();
    assert_eq!(snaps.len(), clients as usize);
    let check = c.arca("acme", &dev).args(["check", "--read-data"]).output().unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    let target = c.path("restored");
    let id = snaps.iter().find(|s| s["hostname"] == "host-7").unwrap()["id"].as_str().unwrap().to_string();
    c.ok("acme", &dev, &["restore", &id, "--target", target.to_str().unwrap()]);
    let src = c.path("client-7");
    assert_same_tree(&src, &target.join(src.strip_prefix("/").unwrap()));
    assert_eq!(tenant_stored(c, "acme"), listed_bytes(c, "acme", &dev));
});

both_shapes!(scrub_finds_injected_corruption, |c: &mut Cluster| {
    let dev = c.acme_device.clone();
    c.ok("acme", &dev, &["init"]);
    let src = c.path("src");
    make_tree(&src);
    c.ok("acme", &dev, &["backup", src.to_str().unwrap()]);
    let admin = c.admin.clone();
    // A clean repository scrubs clean.
    let out = c.admin_cmd(&admin, &["--json", "scrub", "--start", "--wait"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["runs"][0]["state"], "done");
    assert_eq!(v["runs"][0]["damaged"], 0);
    assert!(v["runs"][0]["objects_checked"].as_i64().unwrap() >= 5, "{v}");

    // One byte of one data pack flips in storage.
    let packs = json_list(c.http().get(format!("{}/data/", c.repo_url("acme"))).bearer_auth(&dev).send().unwrap());
    let pack = packs[0]["name"].as_str().unwrap().to_string();
    c.corrupt("acme", "data", &pack);
    let out = c.admin_cmd(&admin, &["--json", "scrub", "--start", "--wait"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "damage must show in the exit code");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["runs"][0]["damaged"], 1, "{v}");
    let f = &v["findings"][0];
    assert_eq!(
        (f["tenant"].as_str(), f["repository"].as_str(), f["kind"].as_str()),
        (Some("acme"), Some("acme"), Some("data"))
    );
    assert_eq!(f["name"], pack.as_str());
    assert!(f["problem"].as_str().unwrap().starts_with("corrupt"), "{f}");
    // The tenant's admin sees it; another tenant's admin sees nothing of it; devices see nothing.
    let (_, mine) = c.get_json(&c.acme_admin, "/v1/admin/scrub");
    assert_eq!(mine["findings"].as_array().unwrap().len(), 1);
    let (_, theirs) = c.get_json(&c.other_admin, "/v1/admin/scrub");
    assert!(theirs["findings"].as_array().unwrap().is_empty());
    assert_eq!(c.get_json(&dev, "/v1/admin/scrub").0, 403);
    // Only staff may start one; a second while one runs is refused (covered in the unit tests).
    let r = c.http().post(format!("{}/v1/admin/scrub", c.base())).bearer_auth(&c.acme_admin).send().unwrap();
    assert_eq!(r.status().as_u16(), 403);
    // The damage is in the audit log and in the metrics.
    let (_, audit) = c.get_json(&admin, "/v1/admin/audit?tenant=acme");
    assert!(audit.as_array().unwrap().iter().any(|e| e["action"] == "scrub.damage"));
    let metrics = c.http().get(format!("{}/metrics", c.base())).bearer_auth(&admin).send().unwrap().text().unwrap();
    assert!(metrics.contains("arca_server_scrub_last_damaged_objects 1"), "{metrics}");
    assert!(metrics.contains(r#"arca_server_tenant_stored_bytes{tenant="acme"}"#), "{metrics}");
    // The client's check names the same pack.
    let out = c.arca("acme", &dev).args(["check", "--read-data"]).output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&pack[..12])
            || String::from_utf8_lossy(&out.stdout).contains(&pack[..12])
    );
});

both_shapes!(server_gc_frees_what_no_snapshot_needs_but_spares_running_backups, |c: &mut Cluster| {
    let (dev, admin, tenant_admin) = (c.acme_device.clone(), c.admin.clone(), c.acme_admin.clone());
    c.ok("acme", &dev, &["init"]);
    let (one, two) = (c.path("one"), c.path("two"));
    fs::create_dir_all(&one).unwrap();
    fs::create_dir_all(&two).unwrap();
    fs::write(one.join("only-in-one.bin"), noise(2 << 20, 11)).unwrap();
    fs::write(two.join("only-in-two.bin"), noise(2 << 20, 12)).unwrap();
    c.ok("acme", &dev, &["backup", "--host", "one", one.to_str().unwrap()]);
    c.ok("acme", &dev, &["backup", "--host", "two", two.to_str().unwrap()]);
    let snaps: Vec<serde_json::Value> = serde_json::from_str(&c.ok("acme", &dev, &["--json", "snapshots"])).unwrap();
    let first = snaps.iter().find(|s| s["hostname"] == "one").unwrap()["id"].as_str().unwrap().to_string();
    // The customer forgets snapshot one but never prunes: its packs stay, billed.
    c.ok("acme", &tenant_admin, &["forget", &first]);
    let stored_before = tenant_stored(c, "acme");
    // A backup is "running": it holds a lock (its lease) taken before the collection.
    let lease = format!("{}/locks/lease-test", c.repo_url("acme"));
    let lock = r#"{"hostname":"elsewhere","pid":1,"operation":"backup","created":"2026-12-04T00:00:00Z","refreshed":"2026-12-04T00:00:00Z","exclusive":false}"#;
    assert_eq!(c.http().put(&lease).bearer_auth(&dev).body(lock).send().unwrap().status().as_u16(), 201);
    std::thread::sleep(std::time::Duration::from_millis(1100)); // objects must be older than the (0-day) lock
    let gc = |c: &Cluster| -> serde_json::Value {
        serde_json::from_str(&c.admin_ok(&admin, &["--json", "repo", "gc", "acme"])).unwrap()
    };
    let r = gc(c);
    assert!(r["condemned"].as_i64().unwrap() >= 1, "{r}");
    assert_eq!(r["freed_objects"], 0, "a running backup may still use the condemned packs: {r}");
    assert!(r["waiting_for_leases"].as_i64().unwrap() >= 1, "{r}");
    assert_eq!(tenant_stored(c, "acme"), stored_before);
    // The backup ends (its lock goes); the next collection frees the packs.
    assert_eq!(c.http().delete(&lease).bearer_auth(&dev).send().unwrap().status().as_u16(), 204);
    let r = gc(c);
    assert!(r["freed_objects"].as_i64().unwrap() >= 1 && r["freed_bytes"].as_i64().unwrap() >= 2 << 20, "{r}");
    let stored_after = tenant_stored(c, "acme");
    assert_eq!(stored_before - stored_after, r["freed_bytes"].as_i64().unwrap());
    assert_eq!(stored_after, listed_bytes(c, "acme", &dev));
    // What remains is whole: check passes (the index's freed packs are only a warning) and the
    // other snapshot restores.
    let out = c.arca("acme", &dev).args(["check", "--read-data"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let target = c.path("restored");
    c.ok("acme", &dev, &["restore", "latest", "--host", "two", "--target", target.to_str().unwrap()]);
    assert_same_tree(&two, &target.join(two.strip_prefix("/").unwrap()));
    // Backing up the freed data again stores it again instead of pointing at freed packs.
    c.ok("acme", &dev, &["backup", "--host", "one", one.to_str().unwrap()]);
    c.ok("acme", &dev, &["check", "--read-data"]);
    let target = c.path("restored-one");
    c.ok("acme", &dev, &["restore", "latest", "--host", "one", "--target", target.to_str().unwrap()]);
    assert_same_tree(&one, &target.join(one.strip_prefix("/").unwrap()));
    // Retention by the server's clock: a tenant admin sets it; the newest snapshot always stays.
    c.admin_ok(&tenant_admin, &["repo", "retention", "acme", "--days", "30"]);
    let r = gc(c);
    assert_eq!(r["expired_snapshots"], 0, "nothing is 30 days old: {r}");
    assert_eq!(c.admin_cmd(&dev, &["repo", "gc", "acme"]).output().unwrap().status.code(), Some(1));
    let (_, audit) = c.get_json(&admin, "/v1/admin/audit?tenant=acme&limit=500");
    assert!(audit.as_array().unwrap().iter().any(|e| e["action"] == "gc"), "{audit}");
});

#[test]
fn first_start_without_a_password_prints_a_one_time_setup_command() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(cluster::arca_bin())
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env_remove("ARCA_ADMIN_PASSWORD")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut setup = None;
    let mut link = None;
    let mut base = None;
    for line in lines.by_ref().take(6) {
        let line = line.unwrap();
        if let Some(rest) = line.trim().strip_prefix("or with: arca admin setup ") {
            setup = Some(rest.to_string());
        }
        if line.contains("/setup?token=") {
            link = Some(line.trim().to_string());
        }
        if let Some(b) = line.split("listening on ").nth(1) {
            base = Some(b.to_string());
            break;
        }
    }
    let (setup, base) = (setup.expect("no setup command printed"), base.unwrap());
    let token = setup.split("--setup-token ").nth(1).unwrap().split_whitespace().next().unwrap().to_string();
    // The printed link opens the setup page (a wrong token does not).
    let link = link.expect("no setup link printed");
    assert!(link.ends_with(&format!("/setup?token={token}")), "{link}");
    let page = reqwest::blocking::get(&link).unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert!(page.text().unwrap().contains("Create administrator"));
    let wrong = reqwest::blocking::get(format!("{base}/setup?token=nope")).unwrap();
    assert_eq!(wrong.status().as_u16(), 404);
    let run = |token: &str| {
        std::process::Command::new(cluster::arca_bin())
            .args(["admin", "--server", &base, "setup", "--setup-token", token, "--user", "boss"])
            .env("ARCA_ADMIN_PASSWORD", "a long enough password")
            .output()
            .unwrap()
    };
    assert!(!run("arca_wrong").status.success());
    let http = reqwest::blocking::Client::new();
    let form =
        |t: &str| [("token", t.to_string()), ("user", "boss".into()), ("password", "a long enough password".into())];
    assert_eq!(http.post(format!("{base}/setup")).form(&form("nope")).send().unwrap().status().as_u16(), 403);
    // The operator follows the link and submits the form.
    let done = http.post(format!("{base}/setup")).form(&form(&token)).send().unwrap();
    assert_eq!(done.status().as_u16(), 201, "{}", done.text().unwrap());
    assert!(!run(&token).status.success(), "setup worked twice");
    assert_eq!(http.post(format!("{base}/setup")).form(&form(&token)).send().unwrap().status().as_u16(), 409);
    assert_eq!(reqwest::blocking::get(&link).unwrap().status().as_u16(), 404, "the link works once");
    let out = std::process::Command::new(cluster::arca_bin())
        .args(["admin", "--server", &base, "login", "--user", "boss", "--quiet"])
        .env("ARCA_ADMIN_PASSWORD", "a long enough password")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).trim().starts_with("arca_"));
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn tls_with_a_provider_certificate() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    // A provider CA and a server certificate it signed (for 127.0.0.1), made with openssl.
    let p = |name: &str| dir.path().join(name);
    let (ca_key, ca, key, csr, cert) = (p("ca.key"), p("ca.pem"), p("key.pem"), p("req.csr"), p("cert.pem"));
    let ext = p("ext.cnf");
    fs::write(&ext, "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n").unwrap();
    let openssl = |args: Vec<&std::ffi::OsStr>| {
        let out = std::process::Command::new("openssl").args(args).output().expect("running openssl (Debian package)");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    let os = |s: &'static str| std::ffi::OsStr::new(s);
    openssl(vec![
        os("req"),
        os("-x509"),
        os("-newkey"),
        os("ec"),
        os("-pkeyopt"),
        os("ec_paramgen_curve:P-256"),
        os("-nodes"),
        os("-days"),
        os("2"),
        os("-subj"),
        os("/CN=arca test CA"),
        os("-keyout"),
        ca_key.as_os_str(),
        os("-out"),
        ca.as_os_str(),
    ]);
    openssl(vec![
        os("req"),
        os("-newkey"),
        os("ec"),
        os("-pkeyopt"),
        os("ec_paramgen_curve:P-256"),
        os("-nodes"),
        os("-subj"),
        os("/CN=127.0.0.1"),
        os("-keyout"),
        key.as_os_str(),
        os("-out"),
        csr.as_os_str(),
    ]);
    openssl(vec![
        os("x509"),
        os("-req"),
        os("-in"),
        csr.as_os_str(),
        os("-CA"),
        ca.as_os_str(),
        os("-CAkey"),
        ca_key.as_os_str(),
        os("-CAcreateserial"),
        os("-days"),
        os("2"),
        os("-extfile"),
        ext.as_os_str(),
        os("-out"),
        cert.as_os_str(),
    ]);
    let mut server = std::process::Command::new(cluster::arca_bin())
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .env("ARCA_ADMIN_PASSWORD", cluster::ADMIN_PASSWORD)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut base = None;
    for line in BufReader::new(server.stdout.take().unwrap()).lines().take(5) {
        if let Some(b) = line.unwrap().split("listening on ").nth(1) {
            base = Some(b.to_string());
            break;
        }
    }
    let base = base.expect("no listening line");
    assert!(base.starts_with("https://127.0.0.1:"), "{base}");
    let arca = |args: &[&str], token: &str, trust: bool| {
        let mut c = std::process::Command::new(cluster::arca_bin());
        c.args(args).env("ARCA_SERVER", &base).env("ARCA_TOKEN", token).env_remove("ARCA_LOG");
        c.env("ARCA_ADMIN_PASSWORD", cluster::ADMIN_PASSWORD).env("ARCA_PASSWORD", cluster::PASSWORD);
        c.env("ARCA_REPOSITORY", format!("{base}/acme"))
            .env("ARCA_KDF_MEMORY_KIB", "64")
            .env("ARCA_KDF_ITERATIONS", "1");
        if trust {
            c.env("ARCA_CA_CERT", &ca);
        } else {
            c.env_remove("ARCA_CA_CERT");
        }
        c.output().unwrap()
    };
    // Without trusting the certificate, the client refuses to talk.
    let out = arca(&["admin", "login", "--user", "admin", "--quiet"], "", false);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).to_lowercase().contains("certificate"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = arca(&["admin", "login", "--user", "admin", "--quiet"], "", true);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let admin = String::from_utf8(out.stdout).unwrap().trim().to_string();
    for args in [&["admin", "tenant", "create", "acme"][..], &["admin", "repo", "create", "--tenant", "acme", "acme"]] {
        let out = arca(args, &admin, true);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let out = arca(&["--json", "admin", "device", "add", "--tenant", "acme", "pc", "--repo", "acme"], &admin, true);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let device = v["token"].as_str().unwrap().to_string();
    let src = dir.path().join("src");
    make_tree(&src);
    for args in [&["init"][..], &["backup", src.to_str().unwrap()], &["check", "--read-data"]] {
        let out = arca(args, &device, true);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let out = arca(&["backup", src.to_str().unwrap()], &device, false);
    assert!(!out.status.success(), "a backup went to an untrusted server");
    // The console's cookies are marked Secure over HTTPS.
    let ca_pem = reqwest::Certificate::from_pem(&fs::read(&ca).unwrap()).unwrap();
    let client = reqwest::blocking::Client::builder().add_root_certificate(ca_pem).build().unwrap();
    let login = client.get(format!("{base}/login")).send().unwrap();
    let cookie = login.headers().get("set-cookie").unwrap().to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict") && cookie.ends_with("; Secure"),
        "{cookie}"
    );
    let _ = server.kill();
    let _ = server.wait();
}

#[test]
fn tokens_are_rate_limited_and_clients_wait_their_turn() {
    let c = Cluster::start_with(Shape::Embedded, &["--rate-limit", "20"]);
    let dev = c.acme_device.clone();
    let url = format!("{}/data/", c.repo_url("acme"));
    let http = c.http();
    let mut limited = None;
    for _ in 0..200 {
        let r = http.get(&url).bearer_auth(&dev).send().unwrap();
        if r.status().as_u16() == 429 {
            limited = Some(r);
            break;
        }
    }
    let r = limited.expect("200 quick requests were never limited at 20/s");
    assert!(r.headers().contains_key("retry-after"));
    assert!(r.text().unwrap().contains("too many requests"));
    // Another token is not affected.
    let r = http.get(format!("{}/data/", c.repo_url("other"))).bearer_auth(&c.other_device).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // The client waits as asked and completes (slowly) instead of failing.
    let src = c.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f"), b"small").unwrap();
    c.ok("acme", &dev, &["init"]);
    c.ok("acme", &dev, &["backup", src.to_str().unwrap()]);
    assert_eq!(snapshot_ids(&c, "acme", &dev).len(), 1);
}

#[test]
fn sigterm_lets_an_upload_in_flight_finish() {
    use std::io::{Read, Write};
    let mut c = Cluster::start(Shape::Embedded);
    let dev = c.acme_device.clone();
    c.ok("acme", &dev, &["init"]);
    let data = noise(3 << 20, 21);
    let name = blake3::hash(&data).to_hex().to_string();
    let base = c.nodes[0].base.clone();
    let addr = base.trim_start_matches("http://").to_string();
    let mut stream = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        stream,
        "PUT /v1/repos/acme/data/{name} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {dev}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        data.len()
    )
    .unwrap();
    stream.write_all(&data[..1 << 20]).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    // SAFETY: signalling our own child process.
    assert_eq!(unsafe { libc::kill(c.nodes[0].child.id() as libc::pid_t, libc::SIGTERM) }, 0);
    std::thread::sleep(std::time::Duration::from_millis(300));
    stream.write_all(&data[1 << 20..]).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 201"), "the upload in flight was not finished: {answer}");
    assert_eq!(c.nodes[0].child.wait().unwrap().code(), Some(0));
    // After a restart the acknowledged object is there, whole.
    c.kill_and_restart(0);
    let got = c.http().get(format!("{}/data/{name}", c.repo_url("acme"))).bearer_auth(&dev).send().unwrap();
    assert_eq!(got.bytes().unwrap().as_ref(), &data[..]);
}

#[test]
fn database_outage_answers_503_and_loses_nothing() {
    if !cluster::available(Shape::ScaleOut) {
        return;
    }
    let c = Cluster::start(Shape::ScaleOut);
    let dev = c.acme_device.clone();
    c.ok("acme", &dev, &["init"]);
    let src = c.path("src");
    make_tree(&src);
    c.ok("acme", &dev, &["backup", src.to_str().unwrap()]);
    let before = snapshot_ids(&c, "acme", &dev);
    // The metadata database goes away: new connections are refused, existing ones are cut.
    let db = c.database_name();
    c.psql(&format!("ALTER DATABASE {db} CONNECTION LIMIT 0"));
    c.psql(&format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}'"));
    let data = noise(10_000, 5);
    let name = blake3::hash(&data).to_hex().to_string();
    for _ in 0..2 {
        let r = c.http().put(format!("{}/data/{name}", c.repo_url("acme"))).bearer_auth(&dev).body(data.clone()).send();
        let r = r.unwrap();
        assert_eq!(r.status().as_u16(), 503);
        assert!(r.text().unwrap().contains("metadata database is unavailable"));
    }
    let health = c.http().get(format!("{}/healthz", c.base())).send().unwrap();
    assert_eq!(health.status().as_u16(), 503);
    // It comes back: everything acknowledged is there, and the refused upload is not.
    c.psql(&format!("ALTER DATABASE {db} CONNECTION LIMIT -1"));
    assert_eq!(snapshot_ids(&c, "acme", &dev), before);
    let r = c.http().head(format!("{}/data/{name}", c.repo_url("acme"))).bearer_auth(&dev).send().unwrap();
    assert_eq!(r.status().as_u16(), 404);
    c.ok("acme", &dev, &["check", "--read-data"]);
    c.ok("acme", &dev, &["backup", src.to_str().unwrap()]);
}

/// Backup health and alerts: a device's backup shows on the health page; a failed backup is
/// reported by `arca backup`, shows as failing and reaches the webhook and the mailbox exactly
/// once (on the scale-out shape, two servers race to deliver it); passing the soft quota does too.
fn health_and_alerts(shape: Shape) {
    if shape == Shape::ScaleOut && !cluster::available(Shape::ScaleOut) {
        return;
    }
    let (hook_url, hooks) = sinks::webhook();
    let (smtp_port, mails) = sinks::smtp();
    let smtp_url = format!("smtp://127.0.0.1:{smtp_port}");
    let args = [
        "--alert-webhook",
        &hook_url,
        "--smtp-url",
        &smtp_url,
        "--alert-from",
        "arca@provider.test",
        "--alert-to",
        "ops@provider.test",
    ];
    let c = Cluster::start_with(shape, &args);
    let (dev, admin) = (c.acme_device.clone(), c.admin.clone());
    let health = |c: &Cluster| {
        let (status, v) = c.get_json(&admin, "/v1/admin/health?tenant=acme");
        assert_eq!(status, 200, "{v}");
        v
    };
    assert_eq!(health(&c)["devices"][0]["status"], "waiting", "no backup yet");
    // The provider's brand names the alert e-mails (white label).
    let brand = serde_json::json!({"product_name": "SafeBox Cloud", "support_email": "help@safebox.test"});
    let r = c
        .http()
        .put(format!("{}/v1/admin/branding", c.base()))
        .bearer_auth(&admin)
        .header("content-type", "application/json")
        .body(brand.to_string())
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().unwrap());
    c.admin_ok(&admin, &["device", "schedule", "--tenant", "acme", "laptop", "--every-hours", "24"]);
    c.ok("acme", &dev, &["init"]);
    let src = c.path("src");
    make_tree(&src);
    c.ok("acme", &dev, &["backup", src.to_str().unwrap()]);
    let h = health(&c);
    let d = &h["devices"][0];
    assert_eq!((d["device"].as_str(), d["status"].as_str()), (Some("laptop"), Some("ok")), "{h}");
    assert!(d["last_backup_at"].as_i64().unwrap() > 0 && d["backup_every_hours"] == 24);
    assert_eq!(d["last_drill_at"], 0, "no restore proven yet");
    // A restore drill run by the device is its last proven restore.
    c.ok("acme", &dev, &["drill", "latest"]);
    // The customer's own admin adds its IT address for alerts (and may change nothing else).
    c.admin_ok(&c.acme_admin, &["tenant", "set", "acme", "--alert-email", "IT desk <it@acme.test>"]);
    let out = c.admin_cmd(&c.acme_admin, &["tenant", "set", "acme", "--soft-quota", "1"]).output().unwrap();
    assert!(!out.status.success(), "a tenant admin changed its own quota");
    let out =
        c.admin_cmd(&c.acme_admin, &["tenant", "set", "acme", "--alert-email", "not an address"]).output().unwrap();
    assert!(!out.status.success(), "an unusable address was accepted");
    let d = &health(&c)["devices"][0];
    assert!(d["last_drill_at"].as_i64().unwrap() > 0, "{d}");
    assert!(d["last_drill"].as_str().unwrap().contains("matched their stored hashes"), "{d}");
    // A failing backup is reported, shown, and alerted.
    let out = c.arca("acme", &dev).args(["backup", "/nonexistent/arca-test-path"]).output().unwrap();
    assert!(!out.status.success());
    let d = &health(&c)["devices"][0];
    assert_eq!(d["status"], "failing", "{d}");
    assert!(d["last_failure"].as_str().unwrap().contains("/nonexistent/arca-test-path"), "{d}");
    let out = c.admin_cmd(&admin, &["health", "--tenant", "acme"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "a failing device makes `arca admin health` exit 1");
    // Passing the soft quota: the next upload is stored, with an alert.
    c.admin_ok(&admin, &["tenant", "set", "acme", "--soft-quota", "1"]);
    fs::write(src.join("new.bin"), noise(50_000, 7)).unwrap();
    c.ok("acme", &dev, &["backup", src.to_str().unwrap()]);
    assert_eq!(health(&c)["devices"][0]["status"], "ok", "a backup after the failure");
    // Both alerts arrive on both channels, once each.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (h, m) = (hooks.lock().unwrap().clone(), mails.lock().unwrap().clone());
        let done = h.len() >= 2 && m.len() >= 2;
        if done || std::time::Instant::now() > deadline {
            let kinds: Vec<String> = h
                .iter()
                .map(|b| serde_json::from_str::<serde_json::Value>(b).unwrap()["kind"].as_str().unwrap().to_string())
                .collect();
            assert_eq!(kinds.len(), 2, "webhook bodies: {h:?}");
            assert!(kinds.contains(&"backup-failed".into()) && kinds.contains(&"soft-quota".into()), "{kinds:?}");
            assert_eq!(m.len(), 2, "mails: {m:?}");
            assert!(
                m.iter().any(|mail| mail.contains("Subject: [SafeBox Cloud] Backup failed: laptop of acme")),
                "{m:?}"
            );
            assert!(m.iter().all(|mail| mail.contains("Support: help@safebox.test")), "{m:?}");
            assert!(m.iter().all(|mail| mail.contains("RCPT TO:<ops@provider.test>")), "{m:?}");
            assert!(m.iter().all(|mail| mail.contains("RCPT TO:<it@acme.test>")), "the customer was not told: {m:?}");
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // And no second delivery follows.
    std::thread::sleep(std::time::Duration::from_secs(6));
    assert_eq!(hooks.lock().unwrap().len(), 2, "an alert was delivered twice");
    let alerts = health(&c)["alerts"].as_array().unwrap().clone();
    assert!(alerts.iter().all(|a| a["delivered_at"].as_i64().unwrap() > 0), "{alerts:?}");
    // A person's token cannot report runs; the tenant's admin sees its own health, not others'.
    let r = reqwest::blocking::Client::new()
        .post(format!("{}/report", c.repo_url("acme")))
        .bearer_auth(&c.acme_admin)
        .header("content-type", "application/json")
        .body(r#"{"outcome":"failed","message":"x"}"#)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let (status, _) = c.get_json(&c.acme_admin, "/v1/admin/health?tenant=other");
    assert_eq!(status, 404);

    // The server's own restore check of the newest snapshot, without the customer's key: it
    // passes, is shown per repository, and catches a pack damaged behind the server's back.
    let out = c.admin_ok(&admin, &["restore-check", "--repo", "acme"]);
    assert!(out.contains("ok") && out.contains("stored and indexed"), "{out}");
    let check = |c: &Cluster| {
        let (_, h) = c.get_json(&c.admin, "/v1/admin/health?tenant=acme");
        h["repositories"].as_array().unwrap().iter().find(|r| r["repo"] == "acme").cloned().unwrap()
    };
    let r = check(&c);
    assert!(r["ok"] == true && r["at"].as_i64().unwrap() > 0, "{r}");
    let out = c.admin_cmd(&c.acme_admin, &["restore-check", "--repo", "acme"]).output().unwrap();
    assert!(!out.status.success(), "a tenant's admin ran the provider's restore check");
    let (_, packs) = c.get_json(&dev, "/v1/repos/acme/data/");
    for p in packs.as_array().unwrap() {
        c.corrupt("acme", "data", p["name"].as_str().unwrap());
    }
    let out = c.admin_cmd(&admin, &["--json", "restore-check", "--repo", "acme"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "a failed restore check exits 1");
    let r = check(&c);
    assert!(r["ok"] == false && r["summary"].as_str().unwrap().contains("is damaged"), "{r}");
    let alerts = health(&c)["alerts"].as_array().unwrap().clone();
    assert!(alerts.iter().any(|a| a["kind"] == "restore-check-failed"), "{alerts:?}");
}

#[test]
fn health_and_alerts_embedded() {
    health_and_alerts(Shape::Embedded);
}

#[test]
fn health_and_alerts_scale_out() {
    health_and_alerts(Shape::ScaleOut);
}

both_shapes!(the_recovery_service_is_granted_from_the_client, |c: &mut Cluster| {
    let (dev, admin) = (c.acme_device.clone(), c.admin.clone());
    c.ok("acme", &dev, &["init"]);
    // No recovery key yet: the client is told the provider offers none.
    let out = c.arca("acme", &dev).args(["key", "add", "--provider"]).output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no recovery service"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Only a provider admin makes it, with a passphrase long enough; once.
    let make = |token: &str, pass: &str| {
        c.admin_cmd(token, &["recovery-key", "--create"]).env("ARCA_NEW_PASSWORD", pass).output().unwrap()
    };
    assert!(!make(&c.acme_admin, "a tenant admin's try").status.success());
    assert!(!make(&admin, "short").status.success());
    let out = make(&admin, "the provider's recovery passphrase");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!make(&admin, "the provider's recovery passphrase").status.success(), "a second key replaced the first");
    let (_, key) = c.get_json(&dev, "/v1/recovery-key");
    let fingerprint = key["fingerprint"].as_str().unwrap().to_string();
    // The customer grants it with their own client: a slot sealed to that key, beside the password.
    let out = c.ok("acme", &dev, &["key", "add", "--provider"]);
    assert!(out.contains(&fingerprint), "{out}");
    let keys: serde_json::Value = serde_json::from_str(&c.ok("acme", &dev, &["--json", "key", "list"])).unwrap();
    let slots = keys.as_array().unwrap();
    assert_eq!(slots.len(), 2, "{keys}");
    let provider = slots.iter().find(|k| k["kdf"] == "x25519").expect("a provider slot");
    assert_eq!(provider["recipient"], fingerprint.as_str());
    // The password still opens the repository (provider slots are skipped), backups go on.
    let src = c.path("src");
    make_tree(&src);
    c.ok("acme", &dev, &["backup", src.to_str().unwrap()]);
    c.ok("acme", &dev, &["check"]);
    let (_, audit) = c.get_json(&admin, "/v1/admin/audit?limit=200");
    assert!(audit.as_array().unwrap().iter().any(|e| e["action"] == "recovery.key.create" && e["outcome"] == "ok"));
});
