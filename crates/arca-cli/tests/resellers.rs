//! Resellers end to end, on both shapes (embedded; PostgreSQL + Garage behind two server
//! processes): the provider creates two resellers with `arca admin reseller`; each sells its own
//! plans (which resell the provider's, within their limits) to its own tenants (within its
//! capacity); neither reaches the other's tenants, plans, bills, statement or audit entries, nor
//! the provider's own customers, nor any backup's contents, through the API, the CLI or the
//! console in headless Chromium. The provider's bill leaves the resellers' tenants out; the
//! reseller's wholesale statement prices them at the provider's plans.

#[macro_use]
mod cluster;
mod browser;

use std::path::PathBuf;

use browser::Browser;
use cluster::{Cluster, Shape, ADMIN_PASSWORD};

const RESELLER_PASSWORD: &str = "reseller admin password";

fn shots_dir(shape: Shape) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("reseller-screenshots-{shape:?}"))
}

/// Runs `arca admin` as `token` and returns (success, stdout, stderr).
fn admin(c: &Cluster, token: &str, args: &[&str]) -> (bool, String, String) {
    let out = c.admin_cmd(token, args).env("ARCA_NEW_PASSWORD", RESELLER_PASSWORD).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn refused(c: &Cluster, token: &str, args: &[&str], why: &str) {
    let (ok, out, err) = admin(c, token, args);
    assert!(!ok, "arca admin {args:?} was allowed:\n{out}");
    assert!(err.contains(why), "arca admin {args:?}: expected {why:?} in:\n{err}");
}

/// Names of a JSON list's items' `field`.
fn names(v: &serde_json::Value, field: &str) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|x| x[field].as_str().unwrap().to_string())
        .collect()
}

fn send(c: &Cluster, method: reqwest::Method, token: &str, path: &str, body: serde_json::Value) -> u16 {
    c.http()
        .request(method, format!("{}{path}", c.base()))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .unwrap()
        .status()
        .as_u16()
}

fn resellers(shape: Shape) {
    if !cluster::available(shape) {
        return;
    }
    let c = Cluster::start(shape);
    let a = c.admin.clone();
    c.admin_ok(
        &a,
        &["plan", "create", "pro", "--hard-quota", "100GB", "--soft-quota", "80GB", "--yearly-price", "120"],
    );
    for r in ["north", "south"] {
        let admin_name = format!("{r}-admin");
        let args = ["reseller", "create", r, "--capacity", "250GB", "--admin", admin_name.as_str()];
        let (ok, _, err) = admin(&c, &a, &args);
        assert!(ok, "{err}");
    }
    refused(&c, &a, &["reseller", "create", "north", "--admin", "x-admin"], "already exists");
    let north = c.login("north-admin", RESELLER_PASSWORD);
    let south = c.login("south-admin", RESELLER_PASSWORD);

    // Plans: a reseller's plan resells one of the provider's, never beyond its hard quota.
    refused(&c, &north, &["plan", "create", "platinum", "--resells", "pro", "--hard-quota", "200GB"], "pro");
    refused(&c, &north, &["plan", "create", "platinum", "--hard-quota", "10GB"], "resells");
    refused(&c, &a, &["plan", "create", "platinum", "--resells", "pro"], "resells");
    let gold = ["plan", "create", "gold", "--resells", "pro", "--hard-quota", "100GB", "--soft-quota", "50GB"];
    c.admin_ok(&north, &[&gold[..], &["--yearly-price", "300"]].concat());
    c.admin_ok(
        &south,
        &["plan", "create", "silver", "--resells", "pro", "--hard-quota", "50GB", "--yearly-price", "200"],
    );
    let (_, plans) = c.get_json(&north, "/v1/admin/plans");
    let seen = names(&plans, "name");
    assert!(seen.contains(&"pro".into()) && seen.contains(&"gold".into()), "{plans}");
    assert!(!seen.contains(&"silver".into()), "north sees south's plan: {plans}");
    let gold_json = plans.as_array().unwrap().iter().find(|p| p["name"] == "gold").unwrap().clone();
    assert_eq!((gold_json["resells"].as_str(), gold_json["reseller"].as_str()), (Some("pro"), Some("north")));
    let mut as_silver = gold_json.clone();
    as_silver["name"] = "silver".into();
    let put = send(&c, reqwest::Method::PUT, &north, "/v1/admin/plans/silver", as_silver);
    assert_eq!(put, 404, "north edits south's plan");
    assert_eq!(send(&c, reqwest::Method::DELETE, &north, "/v1/admin/plans/silver", serde_json::json!({})), 404);
    assert_eq!(send(&c, reqwest::Method::DELETE, &north, "/v1/admin/plans/pro", serde_json::json!({})), 404);
    refused(&c, &a, &["plan", "delete", "pro"], "resell");
    refused(&c, &north, &["plan", "set", "gold", "--hard-quota", "101GB"], "pro");
    c.admin_ok(&north, &["plan", "set", "gold", "--yearly-price", "320"]);
    c.admin_ok(&north, &["plan", "create", "trial", "--resells", "pro", "--hard-quota", "1GB"]);
    c.admin_ok(&north, &["plan", "delete", "trial"]);
    let plans = c.admin_ok(&north, &["plan", "list"]);
    assert!(plans.contains("gold") && plans.contains("320.00") && !plans.contains("trial"), "{plans}");

    // Tenants: on the reseller's own plans, within its capacity.
    c.admin_ok(&north, &["tenant", "create", "n1", "--display-name", "North One", "--plan", "gold"]);
    c.admin_ok(&north, &["tenant", "create", "n2", "--plan", "gold"]);
    refused(&c, &north, &["tenant", "create", "n3", "--plan", "gold"], "capacity");
    refused(&c, &north, &["tenant", "create", "n3", "--plan", "pro"], "no plan named pro");
    refused(&c, &north, &["tenant", "create", "n3"], "needs a plan");
    refused(&c, &south, &["tenant", "create", "s2", "--plan", "gold"], "no plan named gold");
    c.admin_ok(&south, &["tenant", "create", "s1", "--plan", "silver"]);
    refused(&c, &north, &["tenant", "set", "n1", "--hard-quota", "150GB"], "pro");

    // Isolation: each reseller sees its own tenants; another's, and the provider's own, are
    // "not found" exactly as missing ones.
    let (_, list) = c.get_json(&north, "/v1/admin/tenants");
    assert_eq!(names(&list, "name"), ["n1", "n2"]);
    for t in ["s1", "acme", "nosuch"] {
        let (status, body) = c.get_json(&north, &format!("/v1/admin/tenants/{t}"));
        assert_eq!(status, 404, "north reads {t}: {body}");
        assert_eq!(
            send(
                &c,
                reqwest::Method::PATCH,
                &north,
                &format!("/v1/admin/tenants/{t}"),
                serde_json::json!({"suspended": true})
            ),
            404
        );
        assert_eq!(
            send(&c, reqwest::Method::DELETE, &north, &format!("/v1/admin/tenants/{t}"), serde_json::json!({})),
            404
        );
        let (status, _) = c.get_json(&north, &format!("/v1/admin/usage?tenant={t}"));
        assert_eq!(status, 404, "north reads {t}'s usage");
    }
    assert_eq!(c.get_json(&a, "/v1/admin/tenants/s1").1["reseller"], "south");
    refused(&c, &north, &["tenant", "set", "s1", "--suspend"], "no tenant named s1");
    c.admin_ok(&north, &["tenant", "set", "n2", "--suspend"]);
    c.admin_ok(&north, &["tenant", "set", "n2", "--resume"]);

    // The reseller manages its tenants' accounts (a repository, a device, an admin) but never
    // reads a backup: the device backs up, the reseller's token gets "no repository".
    c.admin_ok(&north, &["repo", "create", "--tenant", "n1", "n1-files"]);
    let out = c.admin_ok(&north, &["--json", "device", "add", "--tenant", "n1", "pc", "--repo", "n1-files"]);
    let device: serde_json::Value = serde_json::from_str(&out).unwrap();
    let device = device["token"].as_str().unwrap().to_string();
    let src = c.path("src");
    cluster::make_tree(&src);
    c.ok("n1-files", &device, &["init"]);
    c.ok("n1-files", &device, &["backup", src.to_str().unwrap()]);
    let (status, _) = c.get_json(&north, "/v1/repos/n1-files/snapshots/");
    assert!(status == 404 || status == 403, "a reseller read a backup's objects: {status}");
    assert!(!c.arca("n1-files", &north).arg("snapshots").output().unwrap().status.success());
    refused(&c, &north, &["repo", "create", "--tenant", "s1", "s1-files"], "no tenant named s1");
    let (status, _) = c.get_json(&north, "/v1/admin/repos");
    assert_eq!(status, 403, "every repository is the provider staff's list");
    let (status, _) = c.get_json(&south, "/v1/admin/tenants/n1/repos");
    assert_eq!(status, 404);

    // Resellers: the provider sees both; a reseller only itself; no reseller changes its own
    // capacity or creates another.
    let (_, all) = c.get_json(&a, "/v1/admin/resellers");
    assert_eq!(names(&all, "name"), ["north", "south"]);
    let (_, own) = c.get_json(&north, "/v1/admin/resellers");
    assert_eq!(names(&own, "name"), ["north"]);
    assert_eq!((own[0]["tenants"].as_i64(), own[0]["quota_bytes"].as_i64()), (Some(2), Some(200_000_000_000)));
    assert_eq!(c.get_json(&north, "/v1/admin/resellers/south").0, 404);
    assert_eq!(c.get_json(&north, "/v1/admin/resellers/south/statement").0, 404);
    refused(&c, &north, &["reseller", "set", "north", "--capacity", "10TB"], "may not");
    refused(&c, &north, &["reseller", "create", "west", "--admin", "west-admin"], "may not");
    refused(&c, &a, &["reseller", "set", "north", "--capacity", "150GB"], "capacity");
    let (ok, _, err) = admin(&c, &north, &["reseller", "add-admin", "north", "--user", "north-second"]);
    assert!(ok, "{err}");
    refused(&c, &north, &["reseller", "add-admin", "south", "--user", "sneaky"], "no reseller named south");
    c.login("north-second", RESELLER_PASSWORD);

    // Bills: the provider's month leaves the resellers' tenants out; a reseller's month is its
    // tenants at its prices; its wholesale statement is them at the provider's.
    let (_, provider_month) = c.get_json(&a, "/v1/admin/billing");
    let billed = names(&provider_month, "tenant");
    assert!(billed.contains(&"acme".into()) && !billed.iter().any(|t| t.starts_with('n') || t == "s1"), "{billed:?}");
    let (_, retail) = c.get_json(&north, "/v1/admin/billing");
    assert_eq!(names(&retail, "tenant"), ["n1", "n2"]);
    assert!(retail.as_array().unwrap().iter().all(|m| m["plan"] == "gold"), "{retail}");
    let (_, statement) = c.get_json(&a, "/v1/admin/resellers/north/statement");
    assert_eq!(names(&statement["tenants"], "tenant"), ["n1", "n2"]);
    assert!(statement["tenants"].as_array().unwrap().iter().all(|m| m["plan"] == "pro"), "{statement}");
    let (_, own_statement) = c.get_json(&north, "/v1/admin/resellers/north/statement");
    assert_eq!(own_statement, statement, "the reseller reads the statement the provider bills it");
    let csv = c.admin_ok(&north, &["reseller", "statement", "north", "--csv"]);
    assert!(csv.lines().count() == 3 && csv.contains(",n1,") && !csv.contains("s1"), "{csv}");
    let table = c.admin_ok(&north, &["reseller", "statement", "north"]);
    assert!(table.contains("wholesale statement of north") && table.contains("pro"), "{table}");

    // Audit: the reseller reads its tenants' entries and its admins' actions, nobody else's.
    let (_, entries) = c.get_json(&north, "/v1/admin/audit?limit=1000");
    let entries = entries.as_array().unwrap();
    assert!(entries.iter().any(|e| e["action"] == "object.put" && e["tenant"] == "n1"), "{entries:?}");
    assert!(entries.iter().any(|e| e["action"] == "plan.create" && e["actor"] == "user:north-admin"));
    for e in entries {
        match e["tenant"].as_str() {
            Some(t) => assert!(t == "n1" || t == "n2", "north reads another tenant's entry: {e}"),
            None => assert!(e["actor"].as_str().unwrap().starts_with("user:north-"), "north reads: {e}"),
        }
    }
    assert_eq!(c.get_json(&north, "/v1/admin/audit?tenant=s1").0, 404);
    let (_, provider_audit) = c.get_json(&a, "/v1/admin/audit?action=reseller.create");
    assert!(provider_audit.to_string().contains("north"), "{provider_audit}");

    let months = Months::now();
    invoices(&c, &north, &south, &months);
    if browser::available() {
        console(&c, &north, &months);
    }
}

/// Last month and its year of issue: the month the invoices are for.
struct Months {
    /// Last month, `YYYY-MM`.
    prev: String,
    /// This year (invoice numbers carry the year of issue).
    year: i32,
}

impl Months {
    fn now() -> Months {
        use chrono::Datelike;
        let today = chrono::Utc::now().date_naive();
        let last_month = today.with_day(1).unwrap() - chrono::Days::new(1);
        Months { prev: last_month.format("%Y-%m").to_string(), year: today.year() }
    }

    fn number(&self, prefix: &str, seq: u32) -> String {
        format!("{prefix}-{}-{seq:06}", self.year)
    }
}

/// Each seller invoices its own customers, in its own name, currency and numbering: north and
/// south both number from INV-YEAR-000001 and neither reaches the other's invoices; the provider
/// does not invoice a reseller's tenant; a tenant's user reads its own invoice from its reseller.
fn invoices(c: &Cluster, north: &str, south: &str, m: &Months) {
    let a = &c.admin;
    // n1, n2 and s1 were customers all of last month.
    let first_of_prev = chrono::NaiveDate::parse_from_str(&format!("{}-01", m.prev), "%Y-%m-%d").unwrap();
    let ts = first_of_prev.and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp();
    c.sql(&format!("UPDATE tenants SET created_at = {ts} WHERE name IN ('n1', 'n2', 's1')"));
    let issue = |token: &str, tenant: &str| {
        admin(c, token, &["--json", "billing", "issue", "--tenant", tenant, "--month", &m.prev])
    };
    let (ok, _, err) = issue(north, "n1");
    assert!(!ok && err.contains("billing settings"), "no settings, no invoice: {err}");
    let north_settings = [
        "billing",
        "settings",
        "--currency",
        "chf",
        "--tax-rate",
        "8.1",
        "--issuer-name",
        "North Partners <AG>",
        "--issuer-address",
        "Bahnhofstrasse 1",
        "--issuer-address",
        "8001 Zurich",
        "--prefix",
        "INV",
        "--payment-days",
        "10",
    ];
    c.admin_ok(north, &north_settings);
    c.admin_ok(south, &["billing", "settings", "--currency", "EUR", "--issuer-name", "South", "--prefix", "INV"]);
    c.admin_ok(a, &["billing", "settings", "--currency", "EUR", "--tax-rate", "20", "--issuer-name", "Host"]);
    let (_, provider_settings) = c.get_json(a, "/v1/admin/billing/settings");
    assert_eq!(provider_settings["issuer_name"], "Host", "each seller has its own settings: {provider_settings}");
    let (_, own) = c.get_json(north, "/v1/admin/billing/settings");
    assert_eq!((own["currency"].as_str(), own["tax_basis_points"].as_i64()), (Some("CHF"), Some(810)), "{own}");

    // The provider bills north, not north's tenants; south cannot even find them.
    let (ok, _, err) = issue(a, "n1");
    assert!(!ok && err.contains("billed by its reseller north"), "{err}");
    let (ok, _, err) = issue(south, "n1");
    assert!(!ok && err.contains("no tenant named n1"), "{err}");

    // North's invoice: its numbering, its currency and tax, its letterhead, its plan's price.
    let (ok, out, err) = issue(north, "n1");
    assert!(ok, "{err}");
    let inv: serde_json::Value = serde_json::from_str(&out).unwrap();
    let net = (32_000 + 6) / 12; // a twelfth of 320.00, half up
    let tax = (net * 810 + 5_000) / 10_000;
    assert_eq!(inv["number"], m.number("INV", 1), "{inv}");
    assert_eq!((inv["currency"].as_str(), inv["net_cents"].as_i64()), (Some("CHF"), Some(net)), "{inv}");
    assert_eq!((inv["tax_cents"].as_i64(), inv["gross_cents"].as_i64()), (Some(tax), Some(net + tax)), "{inv}");
    assert_eq!(inv["body"]["issuer"]["issuer_name"], "North Partners <AG>");
    let (ok, out, err) = issue(south, "s1");
    assert!(ok, "{err}");
    let s1_inv: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(s1_inv["number"], m.number("INV", 1), "south numbers its own from 1: {s1_inv}");

    // One number, two issuers: each finds its own; nobody finds the other's.
    let n = m.number("INV", 1);
    assert_eq!(c.get_json(north, &format!("/v1/admin/invoices/{n}")).1["tenant"], "n1");
    assert_eq!(c.get_json(south, &format!("/v1/admin/invoices/{n}")).1["tenant"], "s1");
    assert_eq!(c.get_json(a, &format!("/v1/admin/invoices/{n}")).0, 404, "the provider issued none");
    assert_eq!(c.get_json(a, &format!("/v1/admin/invoices/{n}?tenant=n1")).1["tenant"], "n1", "staff support");
    assert_eq!(c.get_json(north, &format!("/v1/admin/invoices/{n}?tenant=s1")).0, 404);
    assert_eq!(c.get_json(south, "/v1/admin/invoices?tenant=n1").0, 404);
    assert_eq!(names(&c.get_json(north, "/v1/admin/invoices").1, "tenant"), ["n1"]);
    assert_eq!(names(&c.get_json(south, "/v1/admin/invoices").1, "tenant"), ["s1"]);
    assert!(c.get_json(a, "/v1/admin/invoices").1.as_array().unwrap().is_empty(), "the provider's list is its own");
    let listed = c.admin_ok(north, &["billing", "invoices"]);
    assert!(listed.contains(&n) && listed.contains("n1") && !listed.contains("s1"), "{listed}");
    let shown = c.admin_ok(north, &["billing", "invoice", &n]);
    assert!(shown.contains("CHF") && shown.contains("Plan gold"), "{shown}");

    // n1's own admin reads its invoice from north, not s1's of the same number elsewhere.
    let out = c
        .admin_cmd(north, &["user", "create", "n1-admin", "--role", "tenant-admin", "--tenant", "n1"])
        .env("ARCA_NEW_PASSWORD", RESELLER_PASSWORD)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let n1_admin = c.login("n1-admin", RESELLER_PASSWORD);
    let (status, own_inv) = c.get_json(&n1_admin, &format!("/v1/admin/invoices/{n}"));
    assert_eq!((status, own_inv["tenant"].as_str()), (200, Some("n1")), "{own_inv}");
    assert_eq!(c.get_json(&n1_admin, &format!("/v1/admin/invoices/{n}?tenant=s1")).0, 404);
    let (_, entries) = c.get_json(north, "/v1/admin/audit?action=invoice.issue");
    assert!(entries.to_string().contains(&format!("issued {n}")), "{entries}");

    // The provider invoices north its wholesale statement: numbered in the provider's own
    // sequence, the statement's totals, north's tenants behind the lines.
    let (ok, _, err) = admin(c, north, &["reseller", "invoice", "north", "--month", &m.prev]);
    assert!(!ok && err.contains("may not"), "a reseller does not invoice itself: {err}");
    let out = c.admin_ok(a, &["--json", "reseller", "invoice", "north", "--month", &m.prev]);
    let w: serde_json::Value = serde_json::from_str(&out).unwrap();
    let (_, statement) = c.get_json(a, &format!("/v1/admin/resellers/north/statement?month={}", m.prev));
    assert_eq!(w["number"], m.number("INV", 1), "the provider's first invoice: {w}");
    assert_eq!((w["tenant"].as_str(), w["currency"].as_str()), (Some("north"), Some("EUR")), "{w}");
    for k in ["net_cents", "tax_cents", "gross_cents"] {
        assert_eq!(w[k], statement[k], "{k}: invoice {w} statement {statement}");
    }
    assert_eq!(names(&w["body"]["tenants"], "tenant"), ["n1", "n2"]);
    let again = c.admin_ok(a, &["--json", "reseller", "invoice", "north", "--month", &m.prev]);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&again).unwrap()["number"], w["number"], "once a month");
    let wn = m.number("INV", 1);
    let listed = c.admin_ok(north, &["reseller", "invoices", "north"]);
    assert!(listed.contains(&wn) && listed.contains(&m.prev), "north reads its invoices: {listed}");
    let shown = c.admin_ok(north, &["reseller", "invoices", "north", "--number", &wn]);
    assert!(shown.contains("reseller north") && shown.contains("North One (n1): plan pro"), "{shown}");
    assert_eq!(c.get_json(south, &format!("/v1/admin/resellers/north/invoices/{wn}")).0, 404);
    assert_eq!(c.get_json(south, &format!("/v1/admin/resellers/south/invoices/{wn}")).0, 404, "not south's");
    assert_eq!(c.get_json(a, &format!("/v1/admin/invoices/{wn}")).1["tenant"], "north", "the provider's own");
    assert!(c.get_json(south, "/v1/admin/resellers/south/invoices").1.as_array().unwrap().is_empty());
}

/// The console in Chromium: a reseller's admin signs in to its own console; the provider adds a
/// reseller with a form that keeps what was typed on a refusal.
fn console(c: &Cluster, north: &str, m: &Months) {
    let base = c.nodes[0].base.clone();
    let mut b = Browser::start(&shots_dir(c.shape));
    b.sign_in(&base, "north-admin", RESELLER_PASSWORD);
    b.wait_url("/console");
    assert!(b.text("#nav-reseller").contains("north"), "{}", b.source());
    assert!(!b.source().contains("id=\"nav-resellers\""), "a reseller sees the provider's reseller list link");
    // Usage across tenants is the provider's page; a reseller reads each tenant's on its page.
    assert!(!b.source().contains("href=\"/usage\""), "{}", b.source());
    b.screenshot("reseller-dashboard");

    // Its own brand, for itself and its tenants' users; everyone else keeps the provider's.
    b.click("#nav-brand");
    assert!(b.text("#reseller-login-url").contains("/login?reseller=north"), "{}", b.source());
    assert_eq!(b.attr("#product-name", "value"), "north", "a start from its display name");
    b.fill("#product-name", "NorthSafe <Backup>");
    b.script("document.querySelector('#accent').value = '#aa3300'");
    b.fill("#support-email", "help@north.example");
    b.fill("#sign-in-text-input", "North's customers sign in here.");
    b.click_to_page("#save-brand");
    b.wait_source("NorthSafe");
    assert_eq!(b.text("#brand-name"), "NorthSafe <Backup>");
    assert!(b.source().contains("--accent: #aa3300"), "{}", b.source());
    assert!(b.text("#footer").contains("help@north.example") && b.text("#footer").contains("powered by arca"));
    let (_, brand) = c.get_json(north, "/v1/admin/branding");
    assert_eq!(brand["product_name"], "NorthSafe <Backup>", "{brand}");
    let (_, provider_brand) = c.get_json(&c.admin, "/v1/admin/branding");
    assert_ne!(provider_brand["product_name"], "NorthSafe <Backup>", "{provider_brand}");
    // Its own sign-in host: north's DNS name shows north's brand; any other host the provider's.
    let a = c.admin.clone();
    c.admin_ok(&a, &["reseller", "set", "north", "--sign-in-host", "Backup.North.Example."]);
    let (_, shown) = c.get_json(&a, "/v1/admin/resellers/north");
    assert_eq!(shown["sign_in_host"], "backup.north.example", "{shown}");
    refused(c, &a, &["reseller", "set", "south", "--sign-in-host", "backup.north.example"], "another reseller's");
    refused(c, &a, &["reseller", "set", "south", "--sign-in-host", "south_x.example"], "not a host name");
    refused(c, north, &["reseller", "set", "north", "--sign-in-host", "x.example"], "may not");
    let sign_in_page = |host: &str| {
        let r = c.http().get(format!("{base}/login")).header("host", host).send().unwrap();
        assert_eq!(r.status().as_u16(), 200);
        r.text().unwrap()
    };
    let page = sign_in_page("backup.north.example:8443");
    assert!(page.contains("NorthSafe &lt;Backup&gt;") && page.contains("name=\"reseller\" value=\"north\""), "{page}");
    assert!(!sign_in_page("backup.south.example").contains("NorthSafe"), "another host: the provider's brand");
    b.click(".signout button");
    b.wait_url("/login?why=signed-out&reseller=north");
    assert_eq!(b.text("#sign-in-text"), "North's customers sign in here.");
    assert!(b.text("h1").contains("NorthSafe <Backup>"), "{}", b.source());
    b.screenshot("reseller-sign-in");
    b.fill("#user", "n1-admin");
    b.fill("#password", RESELLER_PASSWORD);
    b.click("#signin");
    b.wait_url("/tenants/n1");
    assert_eq!(b.text("#brand-name"), "NorthSafe <Backup>", "its tenant's users see the reseller's brand");
    b.screenshot("reseller-tenant-portal");
    // Its invoice from north, on north's letterhead, in north's brand.
    let first = m.number("INV", 1);
    b.click("#nav-billing");
    b.wait_url("/tenants/n1/billing");
    b.click(&format!("a[href='/tenants/n1/invoices/{first}']"));
    b.wait_url(&format!("/tenants/n1/invoices/{first}"));
    assert_eq!(b.text("#invoice-number"), first);
    let issuer = b.text("#issuer");
    assert!(issuer.contains("North Partners <AG>") && issuer.contains("8001 Zurich"), "{issuer}");
    assert_eq!(b.text("#currency"), "CHF");
    assert_eq!(b.text("#brand-name"), "NorthSafe <Backup>");
    b.screenshot("reseller-invoice-to-tenant");
    // The session ends (expired): back to north's sign-in page, then to the page asked for.
    c.sql(
        "UPDATE tokens SET expires_at = 1 WHERE label = 'web session' AND \
         user_id = (SELECT id FROM users WHERE name = 'n1-admin')",
    );
    b.go(&format!("{base}/tenants/n1/billing"));
    let url = b.wait_url("why=expired");
    assert!(url.contains("reseller=north"), "{url}");
    assert!(b.text("h1").contains("NorthSafe <Backup>"), "{}", b.source());
    b.fill("#user", "n1-admin");
    b.fill("#password", RESELLER_PASSWORD);
    b.click("#signin");
    b.wait_url("/tenants/n1/billing");
    b.click(".signout button");
    b.wait_url("/login?why=signed-out&reseller=north");
    b.sign_in(&base, "acme-admin", cluster::TENANT_ADMIN_PASSWORD);
    b.wait_url("/tenants/acme");
    assert_ne!(b.text("#brand-name"), "NorthSafe <Backup>", "the provider's own customer keeps the provider's brand");
    b.click(".signout button");
    b.wait_url("/login?why=signed-out");
    b.go(&format!("{base}/login?reseller=south"));
    assert!(!b.source().contains("NorthSafe"));
    b.sign_in(&base, "north-admin", RESELLER_PASSWORD);
    b.wait_url("/console");

    // Its tenants only.
    b.go(&format!("{base}/console/tenants"));
    let page = b.source();
    assert!(page.contains("id=\"tenant-n1\"") || page.contains("/tenants/n1\""), "{page}");
    assert!(!page.contains("/tenants/s1\"") && !page.contains("/tenants/acme\""), "{page}");
    for t in ["s1", "acme"] {
        b.go(&format!("{base}/tenants/{t}"));
        assert!(b.source().contains("<h1>Not found</h1>"), "{t} was shown to north:\n{}", b.source());
    }
    b.go(&format!("{base}/console/resellers/south"));
    assert!(b.source().contains("<h1>Not found</h1>"), "{}", b.source());
    b.go(&format!("{base}/console/resellers"));
    assert!(!b.source().contains("id=\"reseller-south\""), "{}", b.source());

    // A plan beyond the wholesale plan is refused on the form, keeping what was typed.
    b.go(&format!("{base}/console/plans"));
    assert!(b.text("#wholesale-hint").contains("wholesale"));
    assert!(!b.source().contains("id=\"plan-silver\""), "{}", b.source());
    b.fill("#plan-name", "bronze");
    b.fill("#plan-hard", "500");
    b.fill("#plan-price", "60");
    b.click("#create-plan");
    assert!(b.text("#new-plan-error").contains("pro"), "{}", b.source());
    assert_eq!(b.attr("#plan-name", "value"), "bronze");
    b.fill("#plan-hard", "10");
    b.click_to_page("#create-plan");
    b.wait_source("id=\"plan-bronze\"");

    // A tenant on it, from the tenants page; over the capacity is refused inline.
    b.go(&format!("{base}/console/tenants"));
    b.fill("#tenant-name", "n3");
    b.fill("#tenant-display", "North Three");
    b.script("document.querySelector('#tenant-plan').value = 'gold'");
    b.click("#create-tenant");
    assert!(b.text("#form-error").contains("capacity"), "{}", b.source());
    assert_eq!(b.attr("#tenant-name", "value"), "n3");
    b.script("document.querySelector('#tenant-plan').value = 'bronze'");
    b.click("#create-tenant");
    b.wait_url("/tenants/n3");
    let (_, n3) = c.get_json(north, "/v1/admin/tenants/n3");
    assert_eq!((n3["plan"].as_str(), n3["reseller"].as_str()), (Some("bronze"), Some("north")), "{n3}");

    // Its own page: figures against the capacity and the wholesale statement.
    b.go(&format!("{base}/console/reseller"));
    b.wait_url("/console/resellers/north");
    assert_eq!(b.text("#reseller-tenants"), "3");
    for t in ["n1", "n2", "n3"] {
        assert!(b.text(&format!("#statement-{t}")).contains("pro"), "{}", b.source());
    }
    assert!(!b.source().contains("id=\"reseller-settings\""), "a reseller cannot change its own capacity");
    assert!(!b.source().contains("id=\"issue-statement\""), "a reseller does not invoice itself");
    let wn = m.number("INV", 1);
    assert!(b.text("#reseller-invoices").contains(&wn), "{}", b.source());
    b.set_width(1400);
    b.screenshot("reseller-page-1400");
    b.set_width(400);
    assert!(!b.overflows(), "the reseller page scrolls sideways at 400 px");
    b.screenshot("reseller-page-400");
    b.set_width(1400);
    b.click(&format!("#reseller-invoices a[href$='/invoices/{wn}']"));
    b.wait_url(&format!("/console/resellers/north/invoices/{wn}"));
    assert!(b.text("#customer").contains("Reseller account: north"), "{}", b.source());
    assert!(b.text("#invoice-tenants").contains("n1") && b.text("#invoice-tenants").contains("pro"));
    assert_eq!(b.text("#issuer"), "Host", "the provider's letterhead");
    b.screenshot("provider-invoice-to-reseller");

    // Billing: its tenants at its prices, in its currency, with its own invoices; it issues n2's.
    b.go(&format!("{base}/console/billing?month={}", m.prev));
    let page = b.source();
    assert!(page.contains("n1") && page.contains("gold") && !page.contains("acme"), "{page}");
    assert!(b.text("#billing thead").contains("CHF"), "{}", b.source());
    assert!(b.text("#billing-n1").contains(&m.number("INV", 1)), "{}", b.source());
    assert!(!page.contains("id=\"settings-missing\""), "north saved its settings");
    b.click(&format!("a[href='/console/billing/n2?month={}']", m.prev));
    b.wait_url("/console/billing/n2");
    b.click("#issue");
    b.wait_url(&format!("/tenants/n2/invoices/{}", m.number("INV", 2)));
    assert!(b.text("#issuer").contains("North Partners <AG>"), "{}", b.source());
    assert_eq!(b.text("#currency"), "CHF");
    // Its billing settings: its own, refused inline keeping what was typed, then saved.
    b.go(&format!("{base}/console/billing-settings"));
    assert_eq!(b.attr("#issuer-name", "value"), "North Partners <AG>");
    b.fill("#number-prefix", "north inv");
    b.click_to_page("#save-settings");
    assert!(b.wait_source("id=\"error\"").contains("prefix must be"), "{}", b.source());
    assert_eq!(b.attr("#number-prefix", "value"), "north inv");
    b.fill("#number-prefix", "NP");
    b.click_to_page("#save-settings");
    b.wait_source("Billing settings saved.");
    let (_, own) = c.get_json(north, "/v1/admin/billing/settings");
    assert_eq!(own["number_prefix"], "NP", "{own}");
    let (_, provider) = c.get_json(&c.admin, "/v1/admin/billing/settings");
    assert_eq!(provider["number_prefix"], "INV", "north's save left the provider's alone: {provider}");
    b.click(".signout button");
    b.wait_url("/login?why=signed-out");

    // The provider: the reseller list, a refused form that keeps what was typed, a new reseller.
    b.sign_in(&base, "admin", ADMIN_PASSWORD);
    b.wait_url("/console");
    b.go(&format!("{base}/console/resellers"));
    assert!(b.text("#reseller-north").contains("North") || b.text("#reseller-north").contains("north"));
    b.fill("#reseller-name", "east");
    b.fill("#reseller-display", "East <IT> Partners");
    b.fill("#reseller-capacity", "500");
    b.fill("#reseller-admin", "east-admin");
    b.script("document.querySelector('#reseller-password').removeAttribute('minlength')");
    b.fill("#reseller-password", "short");
    b.click("#create-reseller");
    assert!(b.text("#form-error").contains("at least"), "{}", b.source());
    assert_eq!(b.attr("#reseller-display", "value"), "East <IT> Partners");
    b.fill("#reseller-password", RESELLER_PASSWORD);
    b.click("#create-reseller");
    b.wait_url("/console/resellers/east");
    assert!(b.text("#reseller-heading").contains("East <IT> Partners"), "escaped and shown: {}", b.source());
    assert_eq!(b.text("#reseller-capacity-text"), "500.0 GB");
    b.screenshot("provider-new-reseller");
    b.go(&format!("{base}/console/billing"));
    assert!(b.source().contains("/console/resellers/north"), "the wholesale section lists north: {}", b.source());
    // South's month, invoiced from its page; this month is a preview without the button.
    b.go(&format!("{base}/console/resellers/south"));
    assert!(b.source().contains("id=\"statement-preview\"") && !b.source().contains("id=\"issue-statement\""));
    b.go(&format!("{base}/console/resellers/south?month={}", m.prev));
    b.click("#issue-statement");
    let south_number = m.number("INV", 2);
    b.wait_url(&format!("/console/resellers/south/invoices/{south_number}"));
    assert!(b.text("#invoice-tenants").contains("s1"), "{}", b.source());
    b.go(&format!("{base}/console/resellers/north?month={}", m.prev));
    assert!(b.text("#statement-issued").contains(&m.number("INV", 1)), "{}", b.source());

    // North's capacity: below what its tenants hold is refused on the form; then raised.
    b.go(&format!("{base}/console/resellers/north"));
    b.fill("#capacity-gb", "100");
    b.click("#save-reseller");
    assert!(b.text("#settings-error").contains("capacity"), "{}", b.source());
    b.fill("#capacity-gb", "300");
    b.click_to_page("#save-reseller");
    b.wait_source("300.0 GB");
    assert_eq!(b.text("#reseller-capacity-text"), "300.0 GB");
    b.screenshot("provider-reseller-page");
}

/// Alert e-mails about a reseller's tenant: the provider's copy in the provider's brand, the
/// customer's own in the reseller's.
fn reseller_alerts(shape: Shape) {
    if !cluster::available(shape) {
        return;
    }
    let (smtp_port, mails) = cluster::sinks::smtp();
    let smtp_url = format!("smtp://127.0.0.1:{smtp_port}");
    let args = ["--smtp-url", &smtp_url, "--alert-from", "arca@provider.test", "--alert-to", "ops@provider.test"];
    let c = Cluster::start_with(shape, &args);
    let a = c.admin.clone();
    c.admin_ok(&a, &["plan", "create", "pro", "--hard-quota", "100GB"]);
    let (ok, _, err) = admin(&c, &a, &["reseller", "create", "north", "--admin", "north-admin"]);
    assert!(ok, "{err}");
    let north = c.login("north-admin", RESELLER_PASSWORD);
    let brand = serde_json::json!({"product_name": "NorthSafe", "support_email": "help@north.example"});
    assert_eq!(send(&c, reqwest::Method::PUT, &north, "/v1/admin/branding", brand), 200);
    c.admin_ok(&north, &["plan", "create", "gold", "--resells", "pro", "--hard-quota", "50GB"]);
    c.admin_ok(&north, &["tenant", "create", "n1", "--plan", "gold"]);
    c.admin_ok(&north, &["tenant", "set", "n1", "--alert-email", "IT <it@n1.test>"]);
    c.admin_ok(&north, &["repo", "create", "--tenant", "n1", "n1-files"]);
    let out = c.admin_ok(&north, &["--json", "device", "add", "--tenant", "n1", "pc", "--repo", "n1-files"]);
    let device: serde_json::Value = serde_json::from_str(&out).unwrap();
    let device = device["token"].as_str().unwrap().to_string();
    c.ok("n1-files", &device, &["init"]);
    let out = c.arca("n1-files", &device).args(["backup", "/nonexistent/arca-test-path"]).output().unwrap();
    assert!(!out.status.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while mails.lock().unwrap().len() < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    std::thread::sleep(std::time::Duration::from_secs(2));
    let m = mails.lock().unwrap().clone();
    assert_eq!(m.len(), 2, "one copy each: {m:?}");
    let provider = m.iter().find(|x| x.contains("RCPT TO:<ops@provider.test>")).expect("the provider's copy");
    let customer = m.iter().find(|x| x.contains("RCPT TO:<it@n1.test>")).expect("the customer's copy");
    assert!(!provider.contains("it@n1.test") && !customer.contains("ops@provider.test"), "{m:?}");
    assert!(customer.contains("Subject: [NorthSafe] Backup failed: pc of n1"), "{customer}");
    assert!(customer.contains("Support: help@north.example"), "{customer}");
    assert!(!provider.contains("NorthSafe") && provider.contains("Backup failed: pc of n1"), "{provider}");
}

#[test]
fn reseller_alerts_embedded() {
    reseller_alerts(Shape::Embedded);
}

#[test]
fn reseller_alerts_scaled_out() {
    reseller_alerts(Shape::ScaleOut);
}

#[test]
fn resellers_embedded() {
    resellers(Shape::Embedded);
}

#[test]
fn resellers_scaled_out() {
    resellers(Shape::ScaleOut);
}
