//! The console's lists at a large provider's scale: 10,000 tenants and 1,000,000 audit entries,
//! written straight into the metadata database (SQL, as a provider's years of use would leave
//! them), then the pages asked for over loopback with a provider admin's session. For the billing
//! pages every tenant has a repository with 32 days of metering (31 days of this and last month,
//! and one older day carried into them), and every other tenant belongs to one of RESELLERS
//! resellers.
//!
//!   cargo bench -p arca-cli --bench console           # TENANTS=10000 AUDIT=1000000 RESELLERS=50 RUNS=15
//!
//! Runs on the embedded shape (SQLite), and on PostgreSQL too when `ARCA_TEST_POSTGRES` and
//! `ARCA_TEST_S3` are set (scripts/test-services.sh). Reports each page's first request time (before
//! anything is cached or kept), its median and slowest of the others (loopback, so server time plus a fraction of a millisecond) and its weight
//! (HTML bytes; the stylesheet is one cached file for all pages).

#[path = "../tests/cluster/mod.rs"]
mod cluster;

use std::time::{Duration, Instant};

use cluster::{Cluster, Shape};

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Seeds `tenants` tenants and `audit` audit entries (30 s apart, ending now) in one statement each.
fn seed(c: &Cluster, tenants: u64, audit: u64, resellers: u64) {
    let postgres = c.shape == Shape::ScaleOut;
    let (numbers_t, numbers_a, name, now) = if postgres {
        (
            format!("generate_series(1, {tenants}) AS n(i)"),
            format!("generate_series(1, {audit}) AS n(i)"),
            "'t' || lpad(i::text, 5, '0')",
            "extract(epoch from now())::bigint",
        )
    } else {
        (
            format!("(WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {tenants}) SELECT i FROM s) AS n"),
            format!("(WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {audit}) SELECT i FROM s) AS n"),
            "printf('t%05d', i)",
            "CAST(strftime('%s', 'now') AS INTEGER)",
        )
    };
    let started = Instant::now();
    c.sql(&format!(
        "INSERT INTO tenants (name, display_name, hard_quota_bytes, soft_quota_bytes, stored_bytes, suspended, created_at) \
         SELECT {name}, 'Customer ' || i || ' Ltd', 100000000000, 0, (i * 7919) % 100000000000, \
         CASE WHEN i % 500 = 0 THEN 1 ELSE 0 END, 1700000000 + i FROM {numbers_t}"
    ));
    c.sql(&format!(
        "INSERT INTO audit_log (at, actor, tenant_id, action, target, outcome, detail, request_id) \
         SELECT {now} - ({audit} - i) * 30, 'user:u' || (i % 97), \
         (SELECT MIN(id) FROM tenants WHERE name LIKE 't0%') + (i % {tenants}), \
         CASE i % 5 WHEN 0 THEN 'login' WHEN 1 THEN 'object.put' WHEN 2 THEN 'tenant.set' WHEN 3 THEN 'device.add' ELSE 'restore.download' END, \
         'target-' || i, CASE WHEN i % 50 = 0 THEN 'denied' ELSE 'ok' END, 'detail of entry ' || i, 'req-' || i FROM {numbers_a}"
    ));
    seed_billing(c, resellers);
    c.sql("ANALYZE");
    eprintln!(
        "seeded {tenants} tenants, {audit} audit entries, {resellers} resellers and their metering in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// Resellers (every other tenant is one's), a repository per tenant and 32 days of metering each.
fn seed_billing(c: &Cluster, resellers: u64) {
    let postgres = c.shape == Shape::ScaleOut;
    let (numbers_r, rname, days, day) = if postgres {
        (
            format!("generate_series(1, {resellers}) AS n(i)"),
            "'r' || lpad(i::text, 3, '0')",
            "(SELECT d FROM generate_series(0, 30) AS g(d) UNION ALL SELECT 60) AS days",
            "to_char(current_date - d, 'YYYY-MM-DD')",
        )
    } else {
        (
            format!("(WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {resellers}) SELECT i FROM s) AS n"),
            "printf('r%03d', i)",
            "(WITH RECURSIVE s(d) AS (SELECT 0 UNION ALL SELECT d + 1 FROM s WHERE d < 30) SELECT d FROM s UNION ALL SELECT 60) AS days",
            "date('now', '-' || d || ' days')",
        )
    };
    if resellers > 0 {
        c.sql(&format!(
            "INSERT INTO resellers (name, display_name, capacity_bytes, created_at) \
             SELECT {rname}, 'Partner ' || i, 0, 1700000000 FROM {numbers_r}"
        ));
        c.sql(&format!(
            "UPDATE tenants SET reseller_id = (SELECT MIN(id) FROM resellers) + (id % {resellers}) \
             WHERE id % 2 = 0 AND name LIKE 't%'"
        ));
    }
    c.sql(
        "INSERT INTO repositories (tenant_id, name, lock_days, compliance, stored_bytes, created_at) \
         SELECT id, name || '-files', 0, 0, stored_bytes, 1700000000 FROM tenants WHERE name LIKE 't%'",
    );
    c.sql(&format!(
        "INSERT INTO usage_daily (repo_id, day, tenant_id, ingress_bytes, egress_bytes, stored_bytes, stored_peak_bytes, \
         object_count, logical_bytes, snapshots) \
         SELECT r.id, {day}, r.tenant_id, 1000000 * d, 0, r.stored_bytes + 1000 * d, r.stored_bytes + 2000 * d, 100, \
         2 * r.stored_bytes, 1 FROM repositories r CROSS JOIN {days} WHERE r.name LIKE 't%-files'"
    ));
}

struct Figure {
    page: String,
    /// The first request: before anything is cached or kept (the dashboard's and billing's
    /// settled days are summed then, and read back by the others).
    first_ms: f64,
    median_ms: f64,
    max_ms: f64,
    bytes: usize,
}

fn measure(http: &reqwest::blocking::Client, base: &str, session: &str, path: &str, runs: usize) -> Figure {
    let mut times = Vec::with_capacity(runs);
    let mut bytes = 0;
    let mut first = Duration::ZERO;
    for i in 0..=runs {
        let t = Instant::now();
        let r = http.get(format!("{base}{path}")).header("cookie", format!("arca_session={session}")).send().unwrap();
        let status = r.status();
        let body = r.text().unwrap();
        let took = t.elapsed();
        assert!(status.is_success(), "{path}: {status}: {}", &body[..body.len().min(500)]);
        // The first request warms the caches; it is reported on its own.
        if i > 0 {
            times.push(took);
        } else {
            first = took;
        }
        bytes = body.len();
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    Figure {
        page: path.to_string(),
        first_ms: ms(first),
        median_ms: ms(times[times.len() / 2]),
        max_ms: ms(*times.last().unwrap()),
        bytes,
    }
}

fn run(shape: Shape, tenants: u64, audit: u64, resellers: u64, runs: usize) {
    let c = Cluster::start(shape);
    seed(&c, tenants, audit, resellers);
    let base = c.nodes[0].base.clone();
    let http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(600)).build().unwrap();
    let day = |days_ago: i64| (chrono::Utc::now() - chrono::Duration::days(days_ago)).format("%Y-%m-%d").to_string();
    let (from, to) = (day(200), day(199));
    let last_month = {
        use chrono::Datelike;
        let today = chrono::Utc::now().date_naive();
        (today.with_day(1).unwrap() - chrono::Days::new(1)).format("%Y-%m").to_string()
    };
    let pages = [
        "/console".to_string(),
        "/console/tenants".to_string(),
        "/console/tenants?q=customer%20777".to_string(),
        "/console/tenants?sort=stored&dir=desc&page=150".to_string(),
        "/console/tenants?status=attention".to_string(),
        "/console/audit".to_string(),
        "/console/audit?before=500000".to_string(),
        format!("/console/audit?tenant=t{:05}", tenants / 2),
        "/console/audit?outcome=denied&action=login".to_string(),
        format!("/console/audit?from={from}&to={to}"),
        "/console/audit?actor=u42".to_string(),
        "/console/audit?text=entry%20123456".to_string(),
        "/console/audit?text=entry%2012345".to_string(),
        "/console/audit?text=detail%20of".to_string(),
        format!("/console/billing?month={last_month}"),
        "/console/billing".to_string(),
        format!("/console/billing.csv?month={last_month}"),
        format!("/console/resellers/r001?month={last_month}"),
        "/console/resellers/r001".to_string(),
        "/tenants/t00001/billing".to_string(),
    ];
    let name = match shape {
        Shape::Embedded => "embedded (SQLite)",
        Shape::ScaleOut => "PostgreSQL",
    };
    println!("\n{name}: {tenants} tenants, {audit} audit entries, {resellers} resellers; {runs} requests per page\n");
    println!("| page | first request | median | slowest | HTML |");
    println!("|---|---:|---:|---:|---:|");
    for p in &pages {
        let f = measure(&http, &base, &c.admin, p, runs);
        println!(
            "| `{}` | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} kB |",
            f.page,
            f.first_ms,
            f.median_ms,
            f.max_ms,
            f.bytes as f64 / 1000.0
        );
    }
    let css = http.get(format!("{base}/static/arca.css")).send().unwrap().bytes().unwrap().len();
    println!(
        "\nstylesheet (cached an hour, shared by every page): {:.1} kB; no scripts, no images",
        css as f64 / 1000.0
    );
    // The whole log as CSV, streamed.
    let t = Instant::now();
    let r = http
        .get(format!("{base}/console/audit.csv"))
        .header("cookie", format!("arca_session={}", c.admin))
        .send()
        .unwrap();
    let body = r.bytes().unwrap();
    let (n, lines) = (body.len(), body.iter().filter(|b| **b == b'\n').count());
    println!("audit CSV export: {} lines, {:.1} MB in {:.1} s", lines, n as f64 / 1e6, t.elapsed().as_secs_f64());
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let tenants = env_num("TENANTS", 10_000);
    let audit = env_num("AUDIT", 1_000_000);
    let runs = env_num("RUNS", 15) as usize;
    let resellers = env_num("RESELLERS", 50);
    run(Shape::Embedded, tenants, audit, resellers, runs);
    if std::env::var("ARCA_TEST_POSTGRES").is_ok() && std::env::var("ARCA_TEST_S3").is_ok() {
        run(Shape::ScaleOut, tenants, audit, resellers, runs);
    } else {
        println!("\nPostgreSQL: skipped (ARCA_TEST_POSTGRES and ARCA_TEST_S3 are not set)");
    }
}
