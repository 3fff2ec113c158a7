//! Billing a provider can send, in real headless Chromium against a real `arca server`, on both
//! shapes: the billing settings form (a refusal keeps what was typed), the "Days" column and the
//! invoice's "N of M days" agreeing (finished and current month), issuing an invoice (numbered,
//! taxed, frozen against later price changes, the same number when issued again, also from two
//! server processes at once), the printable page (print media hides navigation and forms; an A4
//! PDF of one page), the CSV's new columns, the customer's own billing page, and another
//! tenant's invoice being "not found" in the pages and the API.

#[macro_use]
mod cluster;
mod browser;

use std::path::PathBuf;

use browser::Browser;
use chrono::{Datelike, NaiveDate};
use cluster::{Cluster, Shape, ADMIN_PASSWORD, TENANT_ADMIN_PASSWORD};

fn shots_dir(shape: Shape) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("billing-screenshots-{shape:?}"))
}

/// `a * b / c` rounded half up (non-negative figures), as the server rounds every amount.
fn half_up(a: i64, b: i64, c: i64) -> i64 {
    (a * b + c / 2) / c
}

fn money(cents: i64) -> String {
    format!("{}.{:02} EUR", cents / 100, cents % 100)
}

fn not_there(b: &Browser, base: &str, path: &str) {
    b.go(&format!("{base}{path}"));
    let page = b.source();
    assert!(page.contains("There is no"), "{path} was shown:\n{page}");
}

fn billing_in_the_browser(shape: Shape) {
    if !browser::available() || !cluster::available(shape) {
        return;
    }
    let c = Cluster::start(shape);
    let base = c.nodes[0].base.clone();
    let mut b = Browser::start(&shots_dir(shape));
    let a = c.admin.clone();

    // acme on a priced plan; acme and other became customers on the 4th of last month.
    let today = chrono::Utc::now().date_naive();
    let this_first = today.with_day(1).unwrap();
    let last_first = (this_first - chrono::Days::new(1)).with_day(1).unwrap();
    let prev = last_first.format("%Y-%m").to_string();
    let cur = today.format("%Y-%m").to_string();
    let prev_days = (this_first - last_first).num_days();
    let cur_days = {
        let next = this_first.checked_add_months(chrono::Months::new(1)).unwrap();
        (next - this_first).num_days()
    };
    let joined = NaiveDate::from_ymd_opt(last_first.year(), last_first.month(), 4).unwrap();
    let joined_ts = joined.and_hms_opt(12, 0, 0).unwrap().and_utc().timestamp();
    c.admin_ok(&a, &["plan", "create", "office", "--yearly-price", "120"]);
    c.admin_ok(&a, &["tenant", "set", "acme", "--plan", "office"]);
    c.sql(&format!("UPDATE tenants SET created_at = {joined_ts} WHERE name IN ('acme', 'other')"));
    let days = prev_days - 3; // the 4th to the end of the month
    let net = half_up(12_000, days, 12 * prev_days);
    let tax = half_up(net, 2000, 10_000);
    let gross = net + tax;

    b.sign_in(&base, "admin", ADMIN_PASSWORD);
    b.wait_url("/console");

    // No settings yet: the billing page says so, and issuing is refused with the reason.
    b.go(&format!("{base}/console/billing?month={prev}"));
    assert!(b.text("#settings-missing").contains("not saved"), "{}", b.source());
    b.go(&format!("{base}/console/billing/acme?month={prev}"));
    b.click_to_page("#issue");
    assert!(b.wait_source("billing settings").contains("save the billing settings first"), "{}", b.source());

    // The settings form: a tax rate out of range is refused on the form, keeping what was typed.
    b.go(&format!("{base}/console/billing-settings"));
    b.fill("#currency", "eur");
    b.fill("#tax-rate", "150");
    b.fill("#issuer-name", "Northwind Hosting <Ltd>");
    b.fill("#issuer-address", "1 Harbour Road\nPort Town");
    b.fill("#issuer-tax-id", "GB123456789");
    b.fill("#number-prefix", "NW");
    b.fill("#payment-days", "14");
    b.click("#save-settings");
    assert!(b.text("#error").contains("tax rate"), "{}", b.source());
    assert_eq!(b.attr("#issuer-name", "value"), "Northwind Hosting <Ltd>", "what was typed stays");
    b.screenshot("settings-refused");
    b.fill("#tax-rate", "20");
    b.click_to_page("#save-settings");
    assert!(b.wait_source("id=\"flash\"").contains("Billing settings saved"), "{}", b.source());
    assert_eq!(b.attr("#currency", "value"), "EUR");
    b.screenshot("settings");
    let (_, s) = c.get_json(&a, "/v1/admin/billing/settings");
    assert_eq!((s["currency"].as_str(), s["tax_basis_points"].as_i64()), (Some("EUR"), Some(2000)), "{s}");
    assert_eq!(s["issuer_address"], serde_json::json!(["1 Harbour Road", "Port Town"]));
    let (_, audit) = c.get_json(&a, "/v1/admin/audit?action=billing.settings");
    assert!(audit.to_string().contains("tax 20 %"), "{audit}");

    // Last month: the "Days" column and the invoice's "N of M days" are one figure.
    b.go(&format!("{base}/console/billing?month={prev}"));
    assert_eq!(b.text("#billing-acme td.days"), days.to_string(), "{}", b.source());
    assert_eq!(b.attr("#billing-acme td.days", "title"), format!("{days} of {prev_days} days"));
    b.screenshot("billing-last-month");
    b.click("#billing-acme a[href^='/console/billing/acme']");
    assert_eq!(b.text("#invoice-days"), format!("{days} of {prev_days}"), "{}", b.source());
    assert!(b.text("#invoice-lines").contains(&format!("{days} of {prev_days} days")), "{}", b.source());
    assert_eq!(b.text("#invoice-gross"), money(gross));
    b.click("#issue");
    let url = b.wait_url(&format!("-{}-000001", today.year()));
    let number = format!("NW-{}-000001", today.year());
    assert!(url.ends_with(&format!("/tenants/acme/invoices/{number}")), "{url}");

    // The printable invoice: issuer, customer, number, dates, period, lines, net, tax, gross.
    let check_invoice = |b: &Browser| {
        assert_eq!(b.text("#invoice-number"), number);
        let issuer = b.text("#issuer");
        assert!(issuer.contains("Northwind Hosting <Ltd>") && issuer.contains("Port Town"), "{issuer}");
        assert!(issuer.contains("GB123456789"), "{issuer}");
        assert!(b.source().contains("Northwind Hosting &lt;Ltd&gt;"), "escaped");
        assert!(b.text("#customer").contains("acme"));
        assert_eq!(b.text("#issue-date"), today.to_string());
        assert_eq!(b.text("#due-date"), (today + chrono::Days::new(14)).to_string());
        assert_eq!(b.text("#period"), format!("{joined} to {}", this_first - chrono::Days::new(1)));
        assert_eq!(b.text("#currency"), "EUR");
        assert_eq!(b.text("#invoice-days"), format!("{days} of {prev_days}"));
        let lines = b.text("#invoice-lines");
        assert!(lines.contains(&format!("Plan office (120.00 EUR a year), {days} of {prev_days} days")), "{lines}");
        assert_eq!(b.text("#invoice-net"), money(net));
        assert_eq!(b.text("#invoice-tax"), money(tax));
        assert_eq!(b.text("#invoice-gross"), money(gross));
    };
    check_invoice(&b);
    b.screenshot("invoice");
    // Printed: no navigation, no hint, the invoice itself; one A4 page.
    b.emulate_media("print");
    let shown = |b: &Browser, css: &str| {
        b.script(&format!("return getComputedStyle(document.querySelector('{css}')).display != 'none';"))
            .as_bool()
            .unwrap()
    };
    assert!(!shown(&b, "header.top") && !shown(&b, "#print-hint"), "navigation printed");
    assert!(shown(&b, "#invoice-doc") && shown(&b, "#invoice-lines"));
    b.set_width(794); // A4 at 96 dpi
    b.screenshot("invoice-print");
    b.set_width(1280);
    b.emulate_media(""); // no override: printing uses print media again
    let pdf = b.print_pdf();
    std::fs::write(shots_dir(shape).join("invoice.pdf"), &pdf).unwrap();
    std::fs::write(shots_dir(shape).join("invoice.html"), b.source()).unwrap();
    assert!(pdf.starts_with(b"%PDF"), "not a PDF");
    let text = String::from_utf8_lossy(&pdf);
    let pages = text.matches("/Type /Page").count() - text.matches("/Type /Pages").count();
    assert_eq!(pages, 1, "the invoice fits one A4 page");

    // The API says the same; issuing again (CLI) gives the same invoice; the current month can
    // only be previewed.
    let (status, inv) = c.get_json(&a, &format!("/v1/admin/invoices/{number}"));
    assert_eq!(status, 200, "{inv}");
    assert_eq!((inv["net_cents"].as_i64(), inv["tax_cents"].as_i64()), (Some(net), Some(tax)), "{inv}");
    let again = c.admin_ok(&a, &["--json", "billing", "issue", "--tenant", "acme", "--month", &prev]);
    let again: serde_json::Value = serde_json::from_str(&again).unwrap();
    assert_eq!(again["number"], number.as_str());
    let out = c.admin_cmd(&a, &["billing", "issue", "--tenant", "acme", "--month", &cur]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not finished"), "{}", String::from_utf8_lossy(&out.stderr));

    // Two issues of other's month at once (on two processes when scaled out): one number, the next.
    let spawn = || {
        c.admin_cmd(&a, &["--json", "billing", "issue", "--tenant", "other", "--month", &prev])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (p1, p2) = (spawn(), spawn());
    let numbers: Vec<String> = [p1, p2]
        .into_iter()
        .map(|p| {
            let out = p.wait_with_output().unwrap();
            assert!(out.status.success());
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            v["number"].as_str().unwrap().to_string()
        })
        .collect();
    let other_number = format!("NW-{}-000002", today.year());
    assert_eq!(numbers, vec![other_number.clone(), other_number.clone()]);

    // Prices change; the issued invoice does not.
    c.sql("UPDATE plans SET yearly_price_cents = 999900 WHERE name = 'office'");
    b.go(&format!("{base}/tenants/acme/invoices/{number}"));
    check_invoice(&b);
    c.sql("UPDATE plans SET yearly_price_cents = 12000 WHERE name = 'office'");

    // The billing list links the invoice; the CSV carries currency and tax after the old columns.
    b.go(&format!("{base}/console/billing?month={prev}"));
    assert_eq!(b.text("#billing-acme a.number"), number);
    let cookie = b.cookie("arca_session").unwrap();
    let csv = c
        .http()
        .get(format!("{base}/console/billing.csv?month={prev}"))
        .header("cookie", format!("arca_session={cookie}"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    assert_eq!(&header[..4], &["month", "tenant", "plan", "days"]);
    assert_eq!(header[15], "total_cents", "old columns keep their places");
    assert_eq!(&header[16..], &["days_in_month", "currency", "tax_basis_points", "tax_cents", "gross_cents"]);
    let line: Vec<&str> = csv.lines().find(|l| l.contains(",acme,")).unwrap().split(',').collect();
    assert_eq!((line[3], line[15]), (days.to_string().as_str(), net.to_string().as_str()));
    assert_eq!(&line[16..], &[prev_days.to_string(), "EUR".into(), "2000".into(), tax.to_string(), gross.to_string()]);

    // This month: month to date, Days and "N of M days" agree again; a preview, no issue button.
    b.go(&format!("{base}/console/billing"));
    let d = today.day().to_string();
    assert_eq!(b.text("#billing-acme td.days"), d, "{}", b.source());
    b.click("#billing-acme a[href^='/console/billing/acme']");
    assert_eq!(b.text("#invoice-days"), format!("{d} of {cur_days}"));
    assert!(b.text("#invoice-lines").contains(&format!("{d} of {cur_days} days")));
    assert!(b.source().contains("id=\"preview-only\"") && !b.source().contains("id=\"issue\""));
    b.click(".signout button");
    b.wait_url("/login?why=signed-out");

    // The customer's admin: their billing page (this month so far, their invoice), the invoice.
    b.sign_in(&base, "acme-admin", TENANT_ADMIN_PASSWORD);
    b.wait_url("/tenants/acme");
    b.click("#nav-billing");
    b.wait_url("/tenants/acme/billing");
    assert!(b.text("#invoices").contains(&number), "{}", b.source());
    assert!(!b.text("#invoices").contains(&other_number));
    assert!(b.text("#estimate").contains(&format!("{d} of {cur_days} days")), "{}", b.source());
    b.screenshot("portal-billing");
    b.click(&format!("#invoices a[href$='{number}']"));
    b.wait_url(&number);
    check_invoice(&b);
    b.screenshot("portal-invoice");
    // Not theirs: other's invoice, under either address; the settings; issuing.
    not_there(&b, &base, &format!("/tenants/acme/invoices/{other_number}"));
    not_there(&b, &base, &format!("/tenants/other/invoices/{other_number}"));
    not_there(&b, &base, "/tenants/other/billing");
    b.go(&format!("{base}/console/billing-settings"));
    assert!(b.source().contains("may not"), "{}", b.source());
    let (status, _) = c.get_json(&c.acme_admin, &format!("/v1/admin/invoices/{other_number}"));
    assert_eq!(status, 404, "another tenant's invoice");
    let (status, list) = c.get_json(&c.acme_admin, "/v1/admin/invoices");
    assert_eq!(status, 200);
    let listed: Vec<&str> = list.as_array().unwrap().iter().map(|i| i["number"].as_str().unwrap()).collect();
    assert_eq!(listed, vec![number.as_str()]);
    let (status, _) = c.get_json(&c.acme_admin, "/v1/admin/invoices?tenant=other");
    assert_eq!(status, 404);
    let r = c
        .http()
        .post(format!("{}/v1/admin/invoices", c.base()))
        .bearer_auth(&c.acme_admin)
        .header("content-type", "application/json")
        .body(serde_json::json!({"tenant": "acme", "month": prev}).to_string())
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 403, "customers do not issue invoices");
    let (_, audit) = c.get_json(&a, "/v1/admin/audit?action=invoice.access");
    assert!(audit.to_string().contains(&other_number), "the refused look is audited: {audit}");
    b.click(".signout button");
    b.wait_url("/login?why=signed-out");

    // A tenant user reads the same, read-only.
    let out = c
        .admin_cmd(&a, &["user", "create", "acme-reader", "--role", "tenant-user", "--tenant", "acme"])
        .env("ARCA_NEW_PASSWORD", "acme reader password")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    b.sign_in(&base, "acme-reader", "acme reader password");
    b.wait_url("/tenants/acme");
    b.go(&format!("{base}/tenants/acme/invoices/{number}"));
    check_invoice(&b);
    assert!(!b.source().contains("id=\"issue\""));
}

#[test]
fn billing_in_the_browser_embedded() {
    billing_in_the_browser(Shape::Embedded);
}

#[test]
fn billing_in_the_browser_scaled_out() {
    billing_in_the_browser(Shape::ScaleOut);
}
