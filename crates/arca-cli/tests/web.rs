//! The provider console and customer portal in real headless Chromium, against a real
//! `arca server`, with a real `arca backup` in the middle. Screenshots of each page are kept in
//! `target/tmp/web-screenshots/` as test artefacts.

#[macro_use]
mod cluster;
mod browser;

use std::path::PathBuf;

use browser::Browser;
use cluster::{make_tree, Cluster, Shape, ADMIN_PASSWORD, TENANT_ADMIN_PASSWORD};

fn shots_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("web-screenshots")
}

fn sign_in(b: &Browser, base: &str, user: &str, password: &str) {
    b.sign_in(base, user, password);
}

#[test]
fn provider_and_customer_in_the_browser() {
    if !browser::available() {
        return;
    }
    let c = Cluster::start(Shape::Embedded);
    let base = c.nodes[0].base.clone();
    let mut b = Browser::start(&shots_dir());

    // A wrong password: a clear message, no session.
    sign_in(&b, &base, "admin", "not the password");
    assert!(b.text("#error").contains("Wrong user name or password"), "{}", b.source());
    b.screenshot("login-refused");

    // The provider admin signs in and lands on the dashboard.
    sign_in(&b, &base, "admin", ADMIN_PASSWORD);
    assert!(b.wait_url("/console").ends_with("/console"), "{}\n{}", b.url(), b.source());
    assert!(b.wait_source("Traffic, last 30 days").contains("Traffic, last 30 days"));
    b.screenshot("dashboard");

    // A mistyped address: a page with a way back, keeping the navigation; programs get the API's
    // plain answer.
    b.go(&format!("{base}/consol/tenants"));
    assert!(b.wait_source("id=\"not-found\"").contains("/consol/tenants"), "{}", b.source());
    assert!(b.source().contains("class=\"signout\""), "the signed-in layout");
    b.click("#home");
    assert!(b.wait_url("/console").ends_with("/console"));
    let r = reqwest::blocking::get(format!("{base}/consol/tenants")).unwrap();
    assert_eq!(r.status().as_u16(), 404);
    assert!(!r.headers()["content-type"].to_str().unwrap().contains("html"));
    assert!(r.text().unwrap().contains("no such endpoint"));

    // A session that ended: the sign-in page says so, and signing in returns to the page asked for.
    b.set_cookie("arca_session", "a-session-that-ended-long-ago");
    b.go(&format!("{base}/console/audit?from=x"));
    b.wait_source("id=\"notice\"");
    assert!(b.text("#notice").contains("session has ended"), "{}", b.source());
    b.fill("#user", "admin");
    b.fill("#password", ADMIN_PASSWORD);
    b.click("#signin");
    assert!(b.wait_url("/console/audit?from=x").ends_with("/console/audit?from=x"), "{}", b.url());

    // The provider admin turns on two-factor sign-in: QR code, a code from the "app", recovery
    // codes shown once.
    b.go(&format!("{base}/account"));
    b.click("#totp-begin");
    let secret = b.text("#totp-secret");
    assert!(b.source().contains("<svg"), "no QR code");
    b.screenshot("totp-enrol");
    let key = arca_server::totp::unbase32(&secret).unwrap();
    let step = |t: u64| t / arca_server::totp::STEP;
    let now = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let enrolled_at = step(now());
    b.fill("#totp-code", &arca_server::totp::code_at(&key, enrolled_at));
    b.click("#totp-enable");
    let recovery = b.text("#recovery-codes");
    let recovery: Vec<&str> = recovery.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(recovery.len(), 10, "{recovery:?}");
    let recovery_code = recovery[0].to_string();
    b.click(".signout button");
    b.wait_url("/login?why=signed-out");
    assert!(b.text("#notice").contains("You are signed out"));
    // Password alone is no longer enough; a wrong code is refused; the right one signs in.
    sign_in(&b, &base, "admin", ADMIN_PASSWORD);
    b.fill("#code", "123456");
    b.click_to_page("#verify");
    assert!(b.wait_source("not right").contains("not right"));
    while step(now()) == enrolled_at {
        std::thread::sleep(std::time::Duration::from_millis(200)); // each code works once
    }
    b.fill("#code", &arca_server::totp::code_at(&key, step(now())));
    b.click("#verify");
    assert!(b.wait_url("/console").ends_with("/console"), "{}", b.source());
    // The API asks for the code too.
    let api_login = |totp: Option<&str>| {
        let mut cmd = std::process::Command::new(cluster::arca_bin());
        cmd.args(["admin", "login", "--user", "admin", "--quiet"]).env("ARCA_SERVER", &base);
        cmd.env("ARCA_ADMIN_PASSWORD", ADMIN_PASSWORD).env_remove("ARCA_TOTP");
        if let Some(t) = totp {
            cmd.env("ARCA_TOTP", t);
        }
        cmd.output().unwrap()
    };
    let out = api_login(None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("one-time code"));
    assert!(api_login(Some(&recovery_code)).status.success(), "a recovery code signs in once");
    assert!(!api_login(Some(&recovery_code)).status.success(), "and only once");

    // A plan, then a tenant whose display name carries markup (which must stay text).
    b.go(&format!("{base}/console/plans"));
    b.fill("#plan-name", "office");
    b.fill("#new-plan input[name=price]", "120");
    b.click_to_page("#create-plan");
    assert!(b.wait_source(">office<").contains(">office<"), "{}", b.source());
    b.screenshot("plans");
    b.go(&format!("{base}/console/tenants"));
    // The browser checks the short name itself (a `pattern` Chromium accepts): nothing is sent.
    b.fill("#tenant-name", "Not Valid!");
    b.fill("#tenant-display", "Should not exist");
    b.click("#create-tenant");
    std::thread::sleep(std::time::Duration::from_millis(500));
    // Sent, the server would have refused it on the form (`#form-error`); unsent, nothing shows.
    assert!(!b.source().contains("id=\"form-error\""), "an invalid short name was submitted: {}", b.source());
    let typed = b.script("return document.querySelector('#tenant-display').value;");
    assert_eq!(typed.as_str(), Some("Should not exist"), "the form was not reloaded");
    b.fill("#tenant-name", "globex");
    b.fill("#tenant-display", "Globex <b>Corp</b><script>alert(1)</script>");
    b.click("#create-tenant");
    assert!(b.wait_url("/tenants/globex").ends_with("/tenants/globex"), "{}", b.url());
    let html = b.source();
    assert!(!html.contains("<script>alert(1)</script>") && !html.contains("<b>Corp</b>"), "markup got through");
    assert!(b.text("h1").contains("Globex <b>Corp</b>"), "the name is shown as typed");
    c.admin_ok(&c.admin, &["tenant", "set", "globex", "--plan", "office"]);

    // A repository and a device; the token is shown once, with the commands to paste.
    b.fill("#repo-name", "globex-office");
    b.click_to_page("#create-repo");
    b.wait_source("id=\"repos\"");
    b.fill("#device-name", "front-desk");
    b.click("#add-device");
    let token = b.text("#device-token");
    assert!(token.starts_with("arca_") && token.len() == 69, "{token}");
    let commands = b.text("#device-commands");
    assert!(
        commands.contains("arca backup") && commands.contains(&format!("ARCA_REPOSITORY={base}/globex-office")),
        "{commands}"
    );
    b.screenshot("device-added");

    // A real backup with that token.
    let src = c.path("src");
    make_tree(&src);
    // A folder of 130 files: the browser shows it fifty at a time, searchable.
    std::fs::create_dir_all(src.join("many")).unwrap();
    for i in 0..130 {
        std::fs::write(src.join("many").join(format!("file-{i:03}.txt")), format!("file {i}\n").repeat(i + 1)).unwrap();
    }
    c.ok("globex-office", &token, &["init"]);
    c.ok("globex-office", &token, &["backup", src.to_str().unwrap()]);
    let snaps: Vec<serde_json::Value> =
        serde_json::from_str(&c.ok("globex-office", &token, &["--json", "snapshots"])).unwrap();
    let short = snaps[0]["short_id"].as_str().unwrap().to_string();
    let snap_id = snaps[0]["id"].as_str().unwrap().to_string();

    // The snapshot appears, with what it represents.
    b.go(&format!("{base}/repos/globex-office"));
    assert!(b.text("#snapshots").contains(&short), "{}", b.source());
    assert!(b.text("#snapshots").contains("new pack"), "the first snapshot brought new data: {}", b.source());
    b.screenshot("snapshots");
    // Retention is set on the same page, never below the retention lock (7 days for this part).
    c.admin_ok(&c.admin, &["repo", "lock", "globex-office", "--days", "7"]);
    let lock = 7;
    b.go(&format!("{base}/repos/globex-office"));
    assert!(b.text("#retention-state").contains("keeps every snapshot"), "{}", b.source());
    b.fill("#retention-days", &(lock - 1).to_string());
    b.click_to_page("#retention-save");
    assert!(b.wait_source("Retention not changed").contains("Retention not changed"), "{}", b.source());
    b.go(&format!("{base}/repos/globex-office"));
    b.fill("#retention-days", &(lock + 30).to_string());
    b.click("#retention-save");
    let want = format!("older than {} days", lock + 30);
    assert!(b.wait_source(&want).contains(&want), "{}", b.source());
    c.admin_ok(&c.admin, &["repo", "lock", "globex-office", "--days", "0"]);
    b.go(&format!("{base}/tenants/globex"));
    assert!(b.text("#devices").contains("front-desk"));
    // The provider sets a hard quota; the customer's admin is added from the same page.
    b.fill("#hard-gb", "5");
    b.click_to_page("#save-tenant");
    b.wait_source("5.0 GB");
    let (_, t) = c.get_json(&c.admin, "/v1/admin/tenants/globex");
    assert_eq!(t["hard_quota_bytes"], 5_000_000_000i64);
    b.fill("#user-name", "globex-boss");
    b.fill("#user-password", "globex boss password");
    b.click_to_page("#add-user");
    assert!(b.wait_source("globex-boss").contains("globex-boss"));
    b.screenshot("tenant");
    // The user's password is reset, and the user disabled and enabled again; while disabled,
    // sign-in is refused.
    b.fill("#user-globex-boss input[name=password]", "globex boss new password");
    b.click("#user-globex-boss form.schedule button");
    // Disabling asks for a confirmation first: without the box ticked nothing is sent.
    let before = b.url();
    b.click("#user-globex-boss button.toggle");
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(b.url(), before);
    assert!(b.source().contains("/users/globex-boss/disable"), "disabled without confirmation");
    b.click("#user-globex-boss input[name=confirm]");
    b.click_to_page("#user-globex-boss button.toggle");
    assert!(b.wait_source("/users/globex-boss/enable").contains("/users/globex-boss/enable"), "{}", b.source());
    let login = |user: &str, password: &str| {
        let mut cmd = std::process::Command::new(cluster::arca_bin());
        cmd.args(["admin", "login", "--user", user, "--quiet"]).env("ARCA_SERVER", &base);
        cmd.env("ARCA_ADMIN_PASSWORD", password).env_remove("ARCA_TOTP");
        cmd.output().unwrap().status.success()
    };
    assert!(!login("globex-boss", "globex boss new password"), "a disabled user signed in");
    b.click_to_page("#user-globex-boss button.toggle");
    assert!(b.wait_source("/users/globex-boss/disable").contains("/users/globex-boss/disable"), "{}", b.source());
    assert!(!login("globex-boss", "globex boss password"), "the old password still works");

    // Usage: the page and the CSV show the bytes that were sent and stored.
    let (_, tenant) = c.get_json(&c.admin, "/v1/admin/tenants/globex");
    let stored = tenant["stored_bytes"].as_i64().unwrap();
    assert!(stored > 1_000);
    b.go(&format!("{base}/usage?tenant=globex"));
    assert_eq!(b.attr("#usage tbody tr td[data-bytes]", "data-bytes"), stored.to_string(), "{}", b.source());
    b.screenshot("usage");

    // Billing: the month so far, priced from the plan; the page, its CSV and the API agree.
    let (_, bill) = c.get_json(&c.admin, "/v1/admin/billing?tenant=globex");
    let bill = &bill[0];
    assert_eq!(bill["plan"], "office");
    assert_eq!(bill["avg_stored_bytes"].as_i64().unwrap(), stored, "one day so far: the average is today's bytes");
    assert!(bill["base_cents"].as_i64().unwrap() > 0 && bill["snapshots"] == 1, "{bill}");
    b.go(&format!("{base}/console/billing"));
    assert!(b.text("#billing").contains("Globex"), "{}", b.source());
    let total = bill["total_cents"].as_i64().unwrap();
    assert_eq!(b.text("#billing-total"), format!("{}.{:02}", total / 100, total % 100));
    b.screenshot("billing");
    b.click_to_page("#billing a[href^='/console/billing/globex']");
    assert!(b.wait_source("invoice-lines").contains("Plan office"), "{}", b.source());
    b.screenshot("invoice");
    let admin_cookie = b.cookie("arca_session").unwrap();
    let csv = reqwest::blocking::Client::new()
        .get(format!("{base}/console/billing.csv"))
        .header("cookie", format!("arca_session={admin_cookie}"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let line = csv.lines().find(|l| l.contains(",globex,office,")).unwrap_or_else(|| panic!("{csv}"));
    assert!(line.ends_with(&format!(",{total}")), "{line}");

    // Backup health: the device's backup is on the health page and the tenant's page.
    b.go(&format!("{base}/console/health"));
    let health = b.text("#health");
    assert!(health.contains("front-desk") && health.contains("ok"), "{health}");
    b.screenshot("health");
    let cookie = b.cookie("arca_session").expect("a session cookie");
    let http = reqwest::blocking::Client::new();
    let csv = http
        .get(format!("{base}/usage.csv?tenant=globex"))
        .header("cookie", format!("arca_session={cookie}"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let line = csv.lines().rfind(|l| l.contains(",globex,globex-office,")).unwrap_or_else(|| panic!("{csv}"));
    let f: Vec<&str> = line.split(',').collect();
    assert_eq!(f[3], stored.to_string(), "stored bytes in the CSV: {line}");
    // Every byte stored was sent once; the rest of the ingress is the client's lock files (metered
    // since issue 12: a few hundred bytes each).
    let locks = f[7].parse::<i64>().unwrap() - stored;
    assert!((1..=16 << 10).contains(&locks), "ingress beyond the stored bytes: {line}");

    // The audit log shows what the admin did in the browser.
    b.go(&format!("{base}/console/audit?tenant=globex"));
    let audit = b.text("#audit");
    assert!(audit.contains("device.create") && audit.contains("repo.create"), "{audit}");
    b.screenshot("audit");
    // Provider staff cannot open the customer's files: they never handle its password.
    b.go(&format!("{base}/repos/globex-office/restore"));
    assert!(b.source().contains("Only the customer can open this"), "{}", b.source());

    // Sign out: the session is revoked on the server, not just forgotten.
    b.click(".signout button");
    assert!(b.wait_url("/login?why=signed-out").ends_with("/login?why=signed-out"));
    let r = http.get(format!("{base}/console")).header("cookie", format!("arca_session={cookie}")).send().unwrap();
    assert!(r.url().path().ends_with("/login"), "an old session still works: {}", r.url());

    // Restore in the browser, by the customer's user: the repository password opens the
    // snapshots for this session; a file and a folder download byte-identical to the source.
    sign_in(&b, &base, "globex-boss", "globex boss new password");
    b.go(&format!("{base}/repos/globex-office"));
    b.click("#restore-link");
    b.fill("#repo-password", "not the repository password");
    b.click("#unlock-button");
    assert!(b.text("#error").contains("does not open this repository"), "{}", b.source());
    b.fill("#repo-password", cluster::PASSWORD);
    b.click_to_page("#unlock-button");
    assert!(b.wait_source("restore-snapshots").contains(&short), "{}", b.source());
    b.screenshot("restore-snapshots");
    b.click(".snapshot-link");
    assert!(b.wait_url("/browse").ends_with("/browse"), "{}", b.url());
    b.screenshot("restore-root");
    let sub_url = format!("{base}/repos/globex-office/restore/{snap_id}/browse{}/sub", src.display());
    b.go(&sub_url);
    assert!(b.text("#entries").contains("b.bin"), "{}", b.source());
    b.screenshot("restore-browse");
    // A big folder: paged, sorted by size, searched.
    b.go(&format!("{base}/repos/globex-office/restore/{snap_id}/browse{}/many", src.display()));
    assert_eq!(b.script("return document.querySelectorAll('#entries tbody tr').length;").as_i64(), Some(50));
    assert!(b.text("nav.pager .count").contains("1–50 of 130 entries"), "{}", b.text("nav.pager"));
    b.click("nav.pager a.next");
    b.wait_url("page=2");
    assert!(b.text("#entries tbody tr:first-child").contains("file-050.txt"), "{}", b.text("#entries"));
    b.click("#entries th a.sort[href*='sort=size']");
    b.wait_url("sort=size");
    assert!(b.text("#entries tbody tr:first-child").contains("file-129.txt"), "largest first: {}", b.text("#entries"));
    b.fill("#entry-search-q", "file-07");
    b.click("#entry-search-go");
    b.wait_url("q=file-07");
    assert_eq!(b.script("return document.querySelectorAll('#entries tbody tr').length;").as_i64(), Some(10));
    b.screenshot("restore-big-folder");
    b.go(&sub_url);
    b.click("a.entry[href$='/b.bin']");
    let got = std::fs::read(b.wait_download("b.bin")).unwrap();
    assert!(got == std::fs::read(src.join("sub/b.bin")).unwrap(), "the downloaded file differs from the original");
    b.click("#download-zip");
    let zip_path = b.wait_download("sub.zip");
    let mut zip = zip::ZipArchive::new(std::fs::File::open(&zip_path).unwrap()).expect("a valid zip");
    for (inside, original) in [("sub/b.bin", "sub/b.bin"), ("sub/deeper/c.txt", "sub/deeper/c.txt")] {
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut zip.by_name(inside).unwrap(), &mut data).unwrap();
        assert!(data == std::fs::read(src.join(original)).unwrap(), "{inside} differs in the zip");
    }
    // A resumed download: the rest of the file from byte 100,000 on.
    let boss_cookie = b.cookie("arca_session").unwrap();
    let file_url = format!("{base}/repos/globex-office/restore/{snap_id}/download{}/sub/b.bin", src.display());
    let r = http
        .get(&file_url)
        .header("cookie", format!("arca_session={boss_cookie}"))
        .header("range", "bytes=100000-")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 206);
    assert!(r.bytes().unwrap()[..] == std::fs::read(src.join("sub/b.bin")).unwrap()[100_000..]);
    // Path tricks find nothing.
    let r = http
        .get(format!("{base}/repos/globex-office/restore/{snap_id}/download/..%2F..%2Fetc/passwd"))
        .header("cookie", format!("arca_session={boss_cookie}"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    // A backup that lands after the unlock opens without a new password: its blobs are in index
    // files newer than the ones loaded at the unlock, and the portal loads them when it meets it.
    std::fs::write(src.join("after-unlock.txt"), b"backed up while the portal was unlocked\n").unwrap();
    c.ok("globex-office", &token, &["backup", src.to_str().unwrap()]);
    let snaps: Vec<serde_json::Value> =
        serde_json::from_str(&c.ok("globex-office", &token, &["--json", "snapshots"])).unwrap();
    let newest = snaps.iter().map(|s| s["id"].as_str().unwrap()).find(|id| *id != snap_id).unwrap().to_string();
    let r = http
        .get(format!("{base}/repos/globex-office/restore/{newest}/download{}/after-unlock.txt", src.display()))
        .header("cookie", format!("arca_session={boss_cookie}"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().unwrap_or_default());
    assert_eq!(&r.bytes().unwrap()[..], b"backed up while the portal was unlocked\n");
    // What changed, decrypted: the new snapshot has one new file.
    b.go(&format!("{base}/repos/globex-office/restore"));
    assert!(b.text("#restore-snapshots").contains("1 new, 0 changed"), "{}", b.source());
    // The recovery service. The provider makes its recovery key; the customer's admin grants it
    // on this repository (the unlocked key is sealed to the provider's public key).
    let out = c
        .admin_cmd(&c.admin, &["recovery-key", "--create"])
        .env("ARCA_NEW_PASSWORD", "provider recovery passphrase")
        .output()
        .unwrap();
    assert!(out.status.success(), "recovery-key --create: {}", String::from_utf8_lossy(&out.stderr));
    b.go(&format!("{base}/repos/globex-office/restore"));
    assert!(b.text("#recovery-state").contains("Not granted"), "{}", b.source());
    b.click_to_page("#recovery-grant");
    assert!(b.wait_source("Granted on").contains("recovery-revoke"), "{}", b.source());
    b.screenshot("recovery-granted");
    // Provider staff (an operator) restore for the customer with the recovery passphrase.
    let out = c
        .admin_cmd(&c.admin, &["user", "create", "ops-anna", "--role", "operator"])
        .env("ARCA_NEW_PASSWORD", "operator anna's password")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut staff = Browser::start(&shots_dir());
    sign_in(&staff, &base, "ops-anna", "operator anna's password");
    staff.go(&format!("{base}/repos/globex-office/restore"));
    assert!(staff.source().contains("Recovery passphrase"), "{}", staff.source());
    // The hint names a command that works (the one run above).
    assert!(staff.source().contains("arca admin recovery-key --create"), "{}", staff.source());
    staff.fill("#repo-password", "not the passphrase at all");
    staff.click("#unlock-button");
    // (Argon2id at the server's full cost: the answer takes a moment.)
    let page = staff.wait_source("id=\"error\"");
    assert!(page.contains("id=\"error\""), "{page}");
    assert!(staff.text("#error").contains("not the provider's recovery passphrase"), "{}", staff.source());
    staff.fill("#repo-password", "provider recovery passphrase");
    staff.click("#unlock-button");
    assert!(staff.wait_source("restore-snapshots").contains(&short), "{}", staff.source());
    staff.screenshot("recovery-staff-snapshots");
    let staff_cookie = staff.cookie("arca_session").unwrap();
    let r = http.get(&file_url).header("cookie", format!("arca_session={staff_cookie}")).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.bytes().unwrap()[..] == std::fs::read(src.join("sub/b.bin")).unwrap()[..], "staff restore differs");
    // The customer sees every use, and revokes: staff are refused again.
    b.go(&format!("{base}/repos/globex-office/restore"));
    let trail = b.text("#recovery-trail");
    assert!(
        trail.contains("ops-anna") && trail.contains("repo.unlock") && trail.contains("restore.download"),
        "{trail}"
    );
    assert!(trail.contains("recovery.grant"), "{trail}");
    b.screenshot("recovery-trail");
    b.click_to_page("#recovery-revoke");
    assert!(b.wait_source("Not granted").contains("recovery-grant"), "{}", b.source());
    staff.go(&format!("{base}/repos/globex-office/restore"));
    assert!(staff.source().contains("Only the customer can open this"), "{}", staff.source());
    drop(staff);

    // Locking forgets the key: the same URL asks for the password again.
    b.go(&format!("{base}/repos/globex-office/restore"));
    b.click("#lock-button");
    // The lock's answer redirects to the repository page: wait for it before the next page.
    assert!(b.wait_url("/repos/globex-office").ends_with("/repos/globex-office"), "{}", b.url());
    b.go(&sub_url);
    assert!(b.wait_source("repo-password").contains("repo-password"), "{}", b.source());
    // Every unlock, failed unlock and download is in the audit log; downloads count as egress.
    let (_, audit) = c.get_json(&c.admin, "/v1/admin/audit?tenant=globex&limit=200");
    let entries = audit.as_array().unwrap();
    let has = |action: &str, outcome: &str| entries.iter().any(|e| e["action"] == action && e["outcome"] == outcome);
    assert!(has("repo.unlock", "denied") && has("repo.unlock", "ok") && has("repo.lock", "ok"), "{audit}");
    assert!(entries.iter().filter(|e| e["action"] == "restore.download").count() >= 3, "{audit}");
    let file_size = std::fs::metadata(src.join("sub/b.bin")).unwrap().len() as i64;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (_, usage) = c.get_json(&c.admin, "/v1/admin/usage?tenant=globex");
        let egress: i64 = usage.as_array().unwrap().iter().map(|d| d["egress_bytes"].as_i64().unwrap_or(0)).sum();
        if egress >= 2 * file_size {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "egress {egress} does not count the downloads: {usage}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // The customer's usage page: stored bytes against the quota.
    b.go(&format!("{base}/usage"));
    assert!(b.source().contains("id=\"quota-chart\"") && b.source().contains("class=\"hard\""), "{}", b.source());
    b.screenshot("portal-usage");
    b.click(".signout button");
    assert!(b.wait_url("/login?why=signed-out").ends_with("/login?why=signed-out"));

    // Another tenant's admin: their own pages work; globex's pages and files do not exist.
    sign_in(&b, &base, "other-admin", TENANT_ADMIN_PASSWORD);
    assert!(b.wait_url("/tenants/other").ends_with("/tenants/other"), "{}", b.url());
    b.screenshot("portal");
    let browse_url = format!("/repos/globex-office/restore/{snap_id}/browse");
    for path in [
        "/tenants/globex",
        "/repos/globex-office",
        "/usage?tenant=globex",
        "/console",
        "/console/billing",
        "/console/billing/globex",
        "/repos/globex-office/restore",
        &browse_url,
    ] {
        b.go(&format!("{base}{path}"));
        let page = b.source();
        assert!(
            page.contains("There is no") || page.contains("may not"),
            "{path} was shown to another tenant's admin:\n{page}"
        );
        assert!(!page.contains("front-desk") && !page.contains(&short));
    }
    b.screenshot("cross-tenant-refused");
    let other_cookie = b.cookie("arca_session").unwrap();
    let r = http
        .get(format!("{base}/usage.csv?tenant=globex"))
        .header("cookie", format!("arca_session={other_cookie}"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    // A forged form (no valid CSRF token) changes nothing.
    let r = http
        .post(format!("{base}/tenants/other/devices"))
        .header("cookie", format!("arca_session={other_cookie}"))
        .form(&[("csrf", "forged"), ("name", "sneaky"), ("repo", "other")])
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let (_, devices) = c.get_json(&c.admin, "/v1/admin/tenants/other/devices");
    assert!(devices.as_array().unwrap().iter().all(|d| d["name"] != "sneaky"));
    // The attempts are audited under the intruder's tenant.
    let (_, audit) = c.get_json(&c.admin, "/v1/admin/audit?tenant=other&limit=100");
    let denied: Vec<&serde_json::Value> =
        audit.as_array().unwrap().iter().filter(|e| e["outcome"] == "denied").collect();
    assert!(denied.iter().any(|e| e["target"] == "globex"), "{audit}");
}

/// The console's lists at more than a page: tenants, devices, users and the audit log searched,
/// sorted and paged in the browser; a refused form keeps what was typed; long names are cut and
/// the pages fit a 1400 px desktop and a 400 px phone; sizes read in one unit. On both shapes.
fn lists_that_scale(shape: Shape) {
    if !browser::available() || !cluster::available(shape) {
        return;
    }
    let c = Cluster::start(shape);
    let base = c.nodes[0].base.clone();
    let mut b = Browser::start(&shots_dir().join(format!("lists-{shape:?}")));
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;

    // 130 more tenants (one suspended, one with a 100-character name), 60 more devices for acme
    // and 300 audit entries an hour apart, written straight into the database.
    let long_name = format!("Long{}", "x".repeat(96));
    let rows: Vec<String> = (0..130)
        .map(|i| {
            let display = if i == 42 { long_name.clone() } else { format!("Bulk Customer {i:03}") };
            let suspended = i64::from(i == 7);
            format!("('bulk-{i:03}', '{display}', 0, 0, {}, {suspended}, {})", i * 1_000_000, now - i as i64)
        })
        .collect();
    c.sql(&format!(
        "INSERT INTO tenants (name, display_name, hard_quota_bytes, soft_quota_bytes, stored_bytes, suspended, created_at) VALUES {}",
        rows.join(", ")
    ));
    let rows: Vec<String> = (0..60)
        .map(|i| {
            format!(
                "((SELECT id FROM tenants WHERE name = 'acme'), (SELECT id FROM repositories WHERE name = 'acme'), 'dev-{i:02}', {})",
                now - i
            )
        })
        .collect();
    c.sql(&format!("INSERT INTO devices (tenant_id, repo_id, name, created_at) VALUES {}", rows.join(", ")));
    // Oldest first, as the log is written: ids grow with time.
    let rows: Vec<String> = (0..300)
        .rev()
        .map(|i| {
            let outcome = if i % 10 == 0 { "denied" } else { "ok" };
            format!(
                "({}, 'user:seed{}', (SELECT id FROM tenants WHERE name = 'bulk-001'), 'seed.action', 'target-{i}', '{outcome}', 'seeded, \"{i}\"', 'r')",
                now - i * 3600,
                i % 3
            )
        })
        .collect();
    c.sql(&format!(
        "INSERT INTO audit_log (at, actor, tenant_id, action, target, outcome, detail, request_id) VALUES {}",
        rows.join(", ")
    ));

    b.sign_in(&base, "admin", ADMIN_PASSWORD);
    b.wait_url("/console");
    assert!(b.text("#tenant-count").contains("132"), "{}", b.source());

    // Tenants: fifty a page, then the next fifty.
    b.go(&format!("{base}/console/tenants"));
    let count_rows =
        |b: &Browser, table: &str| b.script(&format!("return document.querySelectorAll('#{table} tbody tr').length;"));
    assert_eq!(count_rows(&b, "tenants"), 50);
    assert!(b.text("nav.pager .count").contains("1–50 of 132 tenants"), "{}", b.text("nav.pager"));
    b.set_width(1400);
    assert!(!b.overflows(), "the tenant list is wider than 1400 px");
    b.screenshot("tenants-1400");
    b.set_width(400);
    assert!(!b.overflows(), "the tenant list is wider than a 400 px phone");
    b.screenshot("tenants-400");
    b.set_width(1400);
    b.click("nav.pager a.next");
    b.wait_url("page=2");
    assert!(b.text("nav.pager .count").contains("51–100 of 132"), "{}", b.text("nav.pager"));
    // The long name is cut to its column (the whole name in its title), not the page.
    b.go(&format!("{base}/console/tenants?q=bulk-042"));
    let width = b.script("return document.querySelector('#tenants a.cut').getBoundingClientRect().width;");
    assert!(width.as_f64().unwrap() < 400.0, "a 100-character name is {width} px wide");
    assert_eq!(b.attr("#tenants a.cut", "title"), long_name);
    // Search, sort by size, filter by state.
    b.go(&format!("{base}/console/tenants"));
    b.fill("#tenant-search-q", "bulk customer 07");
    b.click("#tenant-search-go");
    b.wait_url("q=bulk%20customer%2007");
    assert_eq!(count_rows(&b, "tenants"), 10, "{}", b.text("#tenants"));
    b.click("#tenants th a.sort[href*='sort=stored']");
    b.wait_url("sort=stored");
    assert!(b.text("#tenants tbody tr:first-child").contains("bulk-079"), "largest first: {}", b.text("#tenants"));
    assert_eq!(count_rows(&b, "tenants"), 10, "the search stays while sorting");
    b.click("#status-suspended");
    b.wait_url("status=suspended");
    assert!(b.text("#no-match").contains("No tenant matches"), "{}", b.source());
    b.go(&format!("{base}/console/tenants?status=suspended"));
    assert_eq!(count_rows(&b, "tenants"), 1);
    assert!(b.text("#tenants").contains("bulk-007"));
    // Billing: the month's table is searched and paged like the tenant list; the totals stay
    // the whole month's.
    b.go(&format!("{base}/console/billing"));
    assert_eq!(count_rows(&b, "billing"), 50);
    assert!(b.text("nav.pager .count").contains("1–50 of 132 tenants"), "{}", b.text("nav.pager"));
    assert!(b.text("#billing tfoot").contains("all 132 tenants"), "{}", b.text("#billing tfoot"));
    b.fill("#billing-search-q", "bulk-04");
    b.click("#billing-search-go");
    b.wait_url("q=bulk-04");
    assert_eq!(count_rows(&b, "billing"), 10, "{}", b.text("#billing"));
    assert!(b.text("#billing tfoot").contains("all 132 tenants"));
    // A hostile query string still shows the list.
    b.go(&format!("{base}/console/tenants?page=-3&sort=name%3BDROP&dir=up&q={}", "z".repeat(3000)));
    assert!(b.source().contains("No tenant matches"), "{}", b.source());

    // A refused new tenant: the reason on the form, what was typed still in it.
    b.go(&format!("{base}/console/tenants"));
    b.fill("#tenant-name", "acme");
    b.fill("#tenant-display", "Typed Display Name");
    b.click_to_page("#create-tenant");
    assert!(b.wait_source("id=\"form-error\"").contains("form-error"), "{}", b.source());
    assert!(b.text("#form-error").contains("acme"), "{}", b.text("#form-error"));
    assert_eq!(b.attr("#tenant-display", "value"), "Typed Display Name");
    assert_eq!(b.attr("#tenant-name", "value"), "acme");
    b.screenshot("tenant-refused-inline");

    // One unit: a quota set as 50 GiB reads 53.7 GB, and its box holds 53.687 (GB), not 53.6870912.
    c.admin_ok(&c.admin, &["tenant", "set", "acme", "--hard-quota", "50GiB"]);
    b.go(&format!("{base}/tenants/acme"));
    assert!(b.source().contains("53.7 GB"), "{}", b.source());
    assert_eq!(b.attr("#hard-gb", "value"), "53.687");
    // Devices: 62 (two from the cluster), paged and searched on the tenant page.
    assert_eq!(count_rows(&b, "devices"), 50);
    b.fill("#device-search-q", "dev-4");
    b.click("#device-search-go");
    b.wait_url("devices_q=dev-4");
    assert_eq!(count_rows(&b, "devices"), 10, "{}", b.text("#devices"));
    b.set_width(400);
    assert!(!b.overflows(), "the tenant page is wider than a 400 px phone");
    b.screenshot("tenant-400");
    b.set_width(1400);
    b.screenshot("tenant-1400");
    b.fill("#user-search-q", "nobody-such");
    b.click("#user-search-go");
    b.wait_url("users_q=nobody-such");
    assert!(b.text("#no-user-match").contains("nobody-such"));
    assert_eq!(count_rows(&b, "devices"), 10, "the device search stays while searching users");

    // The audit log: a hundred entries a page, older and newer, filters, a range of days, CSV.
    b.go(&format!("{base}/console/audit?tenant=bulk-001"));
    assert_eq!(count_rows(&b, "audit"), 100);
    let first_page = b.text("#audit");
    b.click("nav.pager a.next");
    b.wait_url("before=");
    assert_eq!(count_rows(&b, "audit"), 100);
    assert_ne!(b.text("#audit"), first_page);
    b.click("nav.pager a.prev");
    b.wait_url("after=");
    assert_eq!(b.text("#audit"), first_page, "newer goes back to the same page");
    b.go(&format!("{base}/console/audit"));
    b.fill("#f-tenant", "bulk-001");
    b.script("document.querySelector('#f-outcome').value = 'denied';");
    b.fill("#f-actor", "SEED1");
    b.click("#filter");
    b.wait_url("outcome=denied");
    // Denied are i % 10 == 0; actor seed1 is i % 3 == 1: i = 10, 40, 70, … (10 of 300).
    assert_eq!(count_rows(&b, "audit"), 10, "{}", b.text("#audit"));
    b.go(&format!("{base}/console/audit?tenant=bulk-001&text=TARGET-12"));
    assert_eq!(count_rows(&b, "audit"), 11, "target-12 and target-120 to 129: {}", b.text("#audit"));
    let day = |ts: i64| chrono::DateTime::from_timestamp(ts, 0).unwrap().format("%Y-%m-%d").to_string();
    let d = day(now - 5 * 86_400);
    let expected = (0..300).filter(|i| day(now - i * 3600) == d).count();
    b.go(&format!("{base}/console/audit?tenant=bulk-001&from={d}&to={d}"));
    assert_eq!(count_rows(&b, "audit"), expected as i64, "entries of {d}");
    b.go(&format!("{base}/console/audit?from=2026-12-05&to=2026-12-01"));
    assert!(b.text("#form-error").contains("before it starts"), "{}", b.source());
    assert_eq!(b.attr("#f-from", "value"), "2026-12-05", "the dates stay as typed");
    b.go(&format!("{base}/console/audit?tenant=bulk-001"));
    b.set_width(400);
    assert!(!b.overflows(), "the audit log is wider than a 400 px phone");
    b.screenshot("audit-400");
    b.set_width(1400);
    b.screenshot("audit-1400");
    b.click("#audit-csv");
    let csv = std::fs::read_to_string(b.wait_download("arca-audit.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("id,time_utc,actor,tenant,action,target,outcome,detail,request_id"));
    assert_eq!(csv.lines().filter(|l| l.contains(",seed.action,")).count(), 300, "every matching entry, not a page");
    assert!(csv.contains(",\"seeded, \"\"7\"\"\",r"), "commas and quotes are quoted: {}", &csv[..500]);
    // The same search through the JSON API (one set of rules).
    let (status, api) = c.get_json(&c.admin, "/v1/admin/audit?tenant=bulk-001&outcome=denied&actor=seed1&limit=1000");
    assert_eq!(status, 200);
    assert_eq!(api.as_array().unwrap().len(), 10);
    // And through `arca admin audit`.
    let out = c.admin_ok(
        &c.admin,
        &["audit", "--tenant", "bulk-001", "--outcome", "denied", "--actor", "seed1", "--limit", "1000"],
    );
    assert_eq!(out.lines().filter(|l| l.contains("seed.action")).count(), 10, "{out}");
    // A tenant admin reads their own tenant's entries only, whatever they ask for.
    let (status, _) = c.get_json(&c.acme_admin, "/v1/admin/audit?tenant=bulk-001");
    assert_eq!(status, 404);
    let (_, own) = c.get_json(&c.acme_admin, "/v1/admin/audit?actor=seed");
    assert!(own.as_array().unwrap().is_empty(), "another tenant's entries leaked: {own}");

    // The dashboard at 1400 and 400 px, its charts with dated axes (every one of the 30 days has
    // its slot) and labelled values.
    b.go(&format!("{base}/console"));
    let today = chrono::Utc::now().format("%d %b").to_string();
    let axis = b.script("return Array.from(document.querySelectorAll('#stored-chart svg text.axis')).map(t => t.textContent).join('|');");
    assert!(axis.as_str().unwrap().contains(&today), "no date axis: {axis}");
    assert!(axis.as_str().unwrap().starts_with('0'), "no value axis: {axis}");
    assert_eq!(b.script("return document.querySelectorAll('#stored-chart svg rect').length;").as_i64(), Some(30));
    assert!(b.text("#attention").contains("bulk-007 is suspended"), "{}", b.source());
    b.screenshot("dashboard-1400");
    b.set_width(400);
    assert!(!b.overflows(), "the dashboard is wider than a 400 px phone");
    b.screenshot("dashboard-400");
}

#[test]
fn lists_that_scale_embedded() {
    lists_that_scale(Shape::Embedded);
}

#[test]
fn lists_that_scale_on_postgres() {
    lists_that_scale(Shape::ScaleOut);
}

/// A 2×2 PNG (red), for the logo upload.
const LOGO_PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00, 0x00,
    0x02, 0x00, 0x00, 0x00, 0x02, 0x08, 0x02, 0x00, 0x00, 0x00, 0xfd, 0xd4, 0x9a, 0x73, 0x00, 0x00, 0x00, 0x12, 0x49,
    0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0xf8, 0xcf, 0xc0, 0x00, 0x44, 0x0c, 0x30, 0x02, 0x00, 0x34, 0x34, 0x03, 0xfd,
    0x76, 0x7d, 0x8f, 0x1d, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

/// The provider's brand on every page; suspension with a reason the customer sees; forms that
/// keep what was typed when refused; confirmation before suspend, resume and delete. On both
/// shapes.
fn brand_suspension_and_forms(shape: Shape) {
    if !browser::available() || !cluster::available(shape) {
        return;
    }
    let c = Cluster::start(shape);
    let base = c.nodes[0].base.clone();
    let mut b = Browser::start(&shots_dir().join(format!("brand-{shape:?}")));
    b.sign_in(&base, "admin", ADMIN_PASSWORD);
    b.wait_url("/console");
    assert_eq!(b.text("#brand-name"), "arca", "arca's own name until a brand is set");

    // The brand: a refused field keeps the form as typed; then name, colour, logo and support.
    b.go(&format!("{base}/console/branding"));
    b.fill("#product-name", "SafeBox Cloud");
    b.fill("#support-url", "https://help.safebox.test/\"onmouseover=alert(1)");
    b.click_to_page("#save-brand");
    assert!(b.wait_source("id=\"form-error\"").contains("form-error"), "{}", b.source());
    assert!(b.text("#form-error").contains("support site"), "{}", b.text("#form-error"));
    assert_eq!(b.attr("#product-name", "value"), "SafeBox Cloud", "the name typed stays");
    assert_eq!(b.text("#brand-name"), "arca", "nothing was stored");
    let logo = c.path("logo.png");
    std::fs::write(&logo, LOGO_PNG).unwrap();
    b.fill("#support-url", "https://help.safebox.test/");
    b.fill("#support-email", "help@safebox.test");
    b.fill("#sign-in-text-input", "Welcome to SafeBox Cloud backups.\nCall us on 0800 000 000.");
    b.script("document.querySelector('#accent').value = '#b02a37';");
    b.find("#logo");
    b.fill("#logo", logo.to_str().unwrap());
    b.click_to_page("#save-brand");
    b.wait_source("SafeBox Cloud · SafeBox Cloud");
    assert_eq!(b.text("#brand-name"), "SafeBox Cloud");
    let loaded = b.script("return document.querySelector('#brand-logo').naturalWidth;");
    assert_eq!(loaded.as_i64(), Some(2), "the logo is served and shown");
    let colour = b.script("return getComputedStyle(document.querySelector('#save-brand')).backgroundColor;");
    assert_eq!(colour.as_str(), Some("rgb(176, 42, 55)"), "the accent colour");
    assert!(b.text("#support").contains("help@safebox.test"));
    assert_eq!(b.text("#footer .powered"), "powered by arca", "arca only in the footer");
    let header = b.text("header.top");
    assert!(!header.to_lowercase().contains("arca"), "arca in the header: {header}");
    b.screenshot("brand-1400");
    let (_, api) = c.get_json(&c.admin, "/v1/admin/branding");
    assert_eq!(api["product_name"], "SafeBox Cloud");
    // Every server process shows it (scale-out: the second within its refresh).
    let last = c.nodes.last().unwrap().base.clone();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let html = reqwest::blocking::get(format!("{last}/login")).unwrap().text().unwrap();
        if html.contains("Sign in to SafeBox Cloud") {
            assert!(html.contains("Welcome to SafeBox Cloud backups."));
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{last} never took the brand: {html}");
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    // Only provider admins may change it.
    let r = c
        .http()
        .put(format!("{}/v1/admin/branding", c.base()))
        .bearer_auth(&c.acme_admin)
        .header("content-type", "application/json")
        .body(r#"{"product_name":"Hijacked"}"#)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);

    // Refused forms on the tenant page keep what was typed, with the reason beside the form.
    b.go(&format!("{base}/tenants/acme"));
    b.fill("#repo-name", "acme");
    b.click_to_page("#create-repo");
    assert!(b.wait_source("id=\"new-repo-error\"").contains("new-repo-error"), "{}", b.source());
    assert!(b.text("#new-repo-error").contains("acme"), "{}", b.text("#new-repo-error"));
    assert_eq!(b.attr("#repo-name", "value"), "acme");
    b.fill("#user-name", "acme-clerk");
    b.fill("#user-password", "short");
    b.script("document.querySelector('#user-password').removeAttribute('minlength');");
    b.script("document.querySelector('#user-role').value = 'tenant-admin';");
    b.click_to_page("#add-user");
    assert!(b.wait_source("id=\"new-user-error\"").contains("new-user-error"), "{}", b.source());
    assert_eq!(b.attr("#user-name", "value"), "acme-clerk");
    assert_eq!(b.script("return document.querySelector('#user-role').value;").as_str(), Some("tenant-admin"));
    assert_eq!(b.attr("#user-password", "value"), "", "a password is never sent back");
    b.screenshot("tenant-form-refused");

    // Suspending asks for a reason and a ticked box (the browser checks both before sending).
    b.go(&format!("{base}/tenants/acme"));
    b.click("#suspend");
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(b.source().contains("id=\"suspend-form\""), "sent without a reason");
    b.fill("#suspend-reason", "Invoice 2026-11 is unpaid: please call billing.");
    b.click("#suspend");
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(b.source().contains("id=\"suspend-form\""), "sent without the confirmation box");
    b.click("#suspend-confirm");
    b.click_to_page("#suspend");
    assert!(b.wait_source("id=\"suspension-reason\"").contains("Invoice 2026-11 is unpaid"), "{}", b.source());
    assert!(b.text("#tenant-suspended").contains("Invoice 2026-11 is unpaid"));
    // The customer's users see why, on every page; their backups are refused.
    b.click(".signout button");
    b.wait_url("/login?why=signed-out");
    assert!(b.text("#sign-in-text").contains("Call us on 0800 000 000"), "{}", b.source());
    b.set_width(400);
    assert!(!b.overflows(), "the branded sign-in page is wider than a phone");
    b.screenshot("login-branded-400");
    b.set_width(1400);
    b.sign_in(&base, "acme-admin", TENANT_ADMIN_PASSWORD);
    b.wait_url("/tenants/acme");
    let banner = b.text("#suspended-banner");
    assert!(banner.contains("suspended: Invoice 2026-11 is unpaid"), "{banner}");
    b.screenshot("customer-suspended");
    b.go(&format!("{base}/usage"));
    assert!(b.text("#suspended-banner").contains("Invoice 2026-11"));
    let src = c.path("src");
    make_tree(&src);
    let out = c.arca("acme", &c.acme_device).args(["init"]).output().unwrap();
    assert!(!out.status.success(), "a suspended tenant initialised a repository");
    assert!(String::from_utf8_lossy(&out.stderr).contains("suspended"), "{}", String::from_utf8_lossy(&out.stderr));
    // Only provider admins suspend or resume (the customer's admin has no such form).
    assert!(!b.source().contains("id=\"resume-form\""));
    b.click(".signout button");
    b.wait_url("/login?why=signed-out");
    b.sign_in(&base, "admin", ADMIN_PASSWORD);
    b.wait_url("/console");
    b.go(&format!("{base}/tenants/acme"));
    b.click("#resume-confirm");
    b.click_to_page("#resume");
    b.wait_source("id=\"suspend-form\"");
    assert!(!b.source().contains("id=\"tenant-suspended\""));
    let (_, t) = c.get_json(&c.admin, "/v1/admin/tenants/acme");
    assert_eq!((t["suspended"].as_bool(), t["suspended_reason"].as_str()), (Some(false), Some("")));

    // Deleting asks for the short name and the box; a tenant with repositories is kept, saying why.
    b.fill("#delete-name", "acme");
    b.click("#delete-confirm");
    b.click_to_page("#delete-tenant");
    assert!(b.wait_source("id=\"delete-tenant-error\"").contains("delete-tenant-error"));
    assert!(b.text("#delete-tenant-error").contains("repositories"), "{}", b.text("#delete-tenant-error"));
    c.admin_ok(&c.admin, &["tenant", "create", "gone-soon"]);
    b.go(&format!("{base}/tenants/gone-soon"));
    b.fill("#delete-name", "gone-soo");
    b.click("#delete-confirm");
    b.click_to_page("#delete-tenant");
    assert!(b.wait_source("id=\"delete-tenant-error\"").contains("type the tenant's short name"), "{}", b.source());
    b.fill("#delete-name", "gone-soon");
    b.click("#delete-confirm");
    b.click("#delete-tenant");
    b.wait_url("/console/tenants");
    assert_eq!(c.get_json(&c.admin, "/v1/admin/tenants/gone-soon").0, 404);
    // Every change above is in the audit log.
    b.go(&format!("{base}/console/audit?action=branding"));
    assert!(b.text("#audit").contains("branding.update"));
    b.go(&format!("{base}/console/audit?action=tenant.&text=Invoice"));
    assert!(b.text("#audit").contains("tenant.update"), "{}", b.source());
}

#[test]
fn brand_suspension_and_forms_embedded() {
    brand_suspension_and_forms(Shape::Embedded);
}

#[test]
fn brand_suspension_and_forms_on_postgres() {
    brand_suspension_and_forms(Shape::ScaleOut);
}

/// Provider staff work in the browser: plans edited and deleted, staff accounts added, a locked
/// account unlocked, two-factor sign-in turned off for someone who lost their authenticator, and
/// new recovery codes. On both shapes.
fn staff_and_plans(shape: Shape) {
    if !browser::available() || !cluster::available(shape) {
        return;
    }
    let c = Cluster::start(shape);
    let base = c.nodes[0].base.clone();
    let mut b = Browser::start(&shots_dir().join(format!("staff-{shape:?}")));
    // A sign-in through the API: whether it works, and what it says.
    let api_login = |user: &str, password: &str, totp: Option<&str>| {
        let mut cmd = std::process::Command::new(cluster::arca_bin());
        cmd.args(["admin", "login", "--user", user, "--quiet"]).env("ARCA_SERVER", &base);
        cmd.env("ARCA_ADMIN_PASSWORD", password).env_remove("ARCA_TOTP").env_remove("ARCA_TOKEN");
        if let Some(t) = totp {
            cmd.env("ARCA_TOTP", t);
        }
        let out = cmd.output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    b.sign_in(&base, "admin", ADMIN_PASSWORD);
    b.wait_url("/console");

    // Plans: a mistyped figure comes back on the form; then created, edited into its tenants, and
    // deleted only once no tenant is on it.
    b.go(&format!("{base}/console/plans"));
    b.fill("#plan-name", "office");
    b.fill("#new-plan input[name=hard_gb]", "lots");
    b.click_to_page("#create-plan");
    assert!(b.wait_source("id=\"new-plan-error\"").contains("not a number"), "{}", b.source());
    assert_eq!(b.attr("#plan-name", "value"), "office");
    assert_eq!(b.attr("#new-plan input[name=hard_gb]", "value"), "lots");
    b.fill("#new-plan input[name=hard_gb]", "100");
    b.fill("#new-plan input[name=price]", "120");
    b.click_to_page("#create-plan");
    b.wait_source("id=\"plan-office\"");
    c.admin_ok(&c.admin, &["tenant", "create", "globex", "--plan", "office"]);
    b.go(&format!("{base}/console/plans"));
    b.click("#plan-office summary");
    b.fill("#edit-office input[name=hard_gb]", "250");
    b.fill("#edit-office input[name=price]", "150.50");
    b.click_to_page("#edit-office .save-plan");
    b.wait_source("250.0 GB");
    assert!(b.text("#plan-office").contains("150.50"), "{}", b.text("#plan-office"));
    let (_, t) = c.get_json(&c.admin, "/v1/admin/tenants/globex");
    assert_eq!(t["hard_quota_bytes"], 250_000_000_000i64, "the tenant on the plan's quota took the new one");
    b.click("#plan-office summary");
    b.click("#plan-office .delete-confirm");
    b.click_to_page("#plan-office .delete-plan");
    assert!(b.wait_source("id=\"delete-office-error\"").contains("still on plan office"), "{}", b.source());
    c.admin_ok(&c.admin, &["tenant", "delete", "globex"]);
    b.go(&format!("{base}/console/plans"));
    b.click("#plan-office summary");
    b.click("#plan-office .delete-confirm");
    b.click_to_page("#plan-office .delete-plan");
    assert!(!b.source().contains("id=\"plan-office\""), "the plan is still listed");
    b.screenshot("plans");

    // Staff accounts: a refused one keeps the name typed; then an operator.
    b.go(&format!("{base}/console/staff"));
    b.fill("#staff-name", "ops-one");
    b.fill("#staff-password", "short");
    b.script("document.querySelector('#staff-password').removeAttribute('minlength');");
    b.click_to_page("#add-staff");
    assert!(b.wait_source("id=\"form-error\"").contains("form-error"), "{}", b.source());
    assert_eq!(b.attr("#staff-name", "value"), "ops-one");
    let ops_password = "operator one password";
    b.fill("#staff-password", ops_password);
    b.click_to_page("#add-staff");
    assert!(b.wait_source("id=\"staff-ops-one\"").contains("operator"), "{}", b.source());
    // Locked after failed sign-ins (written as the lockout would): refused, then unlocked here.
    let until = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 900;
    c.sql(&format!("UPDATE users SET locked_until = {until} WHERE name = 'ops-one'"));
    // (Straight to the API: the CLI would wait out the lock and try again.)
    let r = c
        .http()
        .post(format!("{base}/v1/auth/login"))
        .header("content-type", "application/json")
        .body(serde_json::json!({"user": "ops-one", "password": ops_password}).to_string())
        .send()
        .unwrap();
    let status = r.status().as_u16();
    let why = r.text().unwrap();
    assert!(status == 429 || status == 423 || status == 403, "a locked account signed in: {status} {why}");
    assert!(why.contains("try again after"), "{why}");
    b.go(&format!("{base}/console/staff"));
    assert!(b.text("#staff-ops-one .status").contains("locked until"), "{}", b.text("#staff-ops-one"));
    b.click_to_page("#staff-ops-one .unlock");
    assert_eq!(b.text("#staff-ops-one .status"), "active");
    assert!(api_login("ops-one", ops_password, None).0, "still locked after the unlock");
    b.screenshot("staff");

    // The operator turns on two-factor sign-in, then renews the recovery codes with one of them.
    b.click(".signout button");
    b.wait_url("/login?why=signed-out");
    b.sign_in(&base, "ops-one", ops_password);
    b.wait_url("/console");
    b.go(&format!("{base}/console/staff"));
    assert!(b.source().contains("may not manage provider staff"), "an operator reached the staff page");
    b.go(&format!("{base}/account"));
    b.click("#totp-begin");
    let key = arca_server::totp::unbase32(&b.text("#totp-secret")).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    b.fill("#totp-code", &arca_server::totp::code_at(&key, now / arca_server::totp::STEP));
    b.click("#totp-enable");
    let first: Vec<String> = b.text("#recovery-codes").lines().map(str::to_string).filter(|l| !l.is_empty()).collect();
    assert_eq!(first.len(), 10);
    b.go(&format!("{base}/account"));
    b.fill("#recovery-code-input", "000000");
    b.click_to_page("#new-recovery");
    assert!(b.wait_source("not right").contains("your recovery codes stay"), "{}", b.source());
    b.fill("#recovery-code-input", &first[0]);
    b.click("#new-recovery");
    // The page before also says "New recovery codes" (its button): wait for the answer itself.
    assert!(b.wait_source("the old ones no longer work").contains("New recovery codes: the old ones no longer work"));
    let renewed: Vec<String> =
        b.text("#recovery-codes").lines().map(str::to_string).filter(|l| !l.is_empty()).collect();
    assert_eq!(renewed.len(), 10);
    assert!(renewed.iter().all(|c| !first.contains(c)), "the same codes again");
    assert!(!api_login("ops-one", ops_password, Some(&first[1])).0, "an old recovery code still works");
    assert!(!api_login("ops-one", ops_password, None).0, "the password alone is enough");
    // Lost the authenticator and the codes: the provider admin turns two-factor off.
    b.click(".signout button");
    b.wait_url("/login?why=signed-out");
    b.sign_in(&base, "admin", ADMIN_PASSWORD);
    b.wait_url("/console");
    b.go(&format!("{base}/console/staff"));
    assert!(b.text("#staff-ops-one").contains("on"), "{}", b.text("#staff-ops-one"));
    b.click("#staff-ops-one .reset-2fa");
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(api_login("ops-one", ops_password, None).1.contains("one-time code"), "reset without the confirmation box");
    b.click("#staff-ops-one form.confirm input[name=confirm]");
    b.click_to_page("#staff-ops-one .reset-2fa");
    assert!(api_login("ops-one", ops_password, None).0, "two-factor is still asked for");
    // Nobody resets their own second factor here, and a tenant admin cannot reach staff accounts.
    let (status, _) = c.get_json(&c.acme_admin, "/v1/admin/users");
    assert_eq!(status, 403);
    let r = c
        .http()
        .post(format!("{}/v1/admin/users/ops-one/disable", c.base()))
        .bearer_auth(&c.acme_admin)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 404, "a tenant admin learnt of a staff account");
    let r = c.http().post(format!("{}/v1/admin/users/admin/reset-2fa", c.base())).bearer_auth(&c.admin).send().unwrap();
    assert_eq!(r.status().as_u16(), 400, "reset its own second factor");
    b.go(&format!("{base}/console/audit?action=user."));
    let audit = b.text("#audit");
    for action in ["user.create", "user.unlock", "user.recovery-codes", "user.reset-2fa"] {
        assert!(audit.contains(action), "{action} missing from the audit log: {audit}");
    }
}

#[test]
fn staff_and_plans_embedded() {
    staff_and_plans(Shape::Embedded);
}

#[test]
fn staff_and_plans_on_postgres() {
    staff_and_plans(Shape::ScaleOut);
}
