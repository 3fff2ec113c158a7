//! `arca admin billing …`: the month's figures per tenant (as before: `arca admin billing
//! [--tenant T] [--month M] [--csv]`), and invoicing through the admin API, the same calls as the
//! console's billing pages: the seller's billing settings (the provider's, or a reseller's own),
//! issuing a finished month's invoice, listing and showing issued invoices.

use anyhow::Result;
use arca_api::BillingSettings;
use clap::{Args, Subcommand};
use reqwest::Method;

use super::admin::{print_or, q, table, typed, Api};
use crate::cli::GlobalOpts;

/// `arca admin billing [--tenant T] [--month M] [--csv]`, or one of its subcommands.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BillingArgs {
    #[command(subcommand)]
    pub command: Option<BillingCommand>,
    /// Only this tenant
    #[arg(long)]
    pub tenant: Option<String>,
    /// The month (YYYY-MM; default this month, so far)
    #[arg(long)]
    pub month: Option<String>,
    /// CSV for a billing system instead of a table
    #[arg(long)]
    pub csv: bool,
}

/// `arca admin billing …` subcommands.
#[derive(Debug, Subcommand)]
pub enum BillingCommand {
    /// Show your billing settings, or change the fields given: the provider's (its admins) or a
    /// reseller's own (its admins): currency, tax rate, the issuer's name, address and tax id,
    /// invoice number prefix, payment term
    Settings {
        /// ISO 4217 currency code (EUR, USD, GBP, …)
        #[arg(long)]
        currency: Option<String>,
        /// Tax rate in percent, up to two decimals (20, 7.25)
        #[arg(long, value_name = "PERCENT")]
        tax_rate: Option<String>,
        /// The issuer's name on invoices
        #[arg(long)]
        issuer_name: Option<String>,
        /// An address line (repeat for each line; replaces the address)
        #[arg(long, value_name = "LINE")]
        issuer_address: Vec<String>,
        /// The issuer's tax id (VAT number)
        #[arg(long)]
        issuer_tax_id: Option<String>,
        /// Invoice numbers start with this: PREFIX-YEAR-000001
        #[arg(long)]
        prefix: Option<String>,
        /// Days from issue to due date
        #[arg(long)]
        payment_days: Option<i64>,
    },
    /// Issue the invoice of a tenant's finished month in its seller's name (the provider's admins
    /// for its own customers, a reseller's admins for theirs), or show the one already issued
    Issue {
        /// The tenant
        #[arg(long)]
        tenant: String,
        /// The month (YYYY-MM), finished
        #[arg(long)]
        month: String,
    },
    /// Issued invoices, newest first
    Invoices {
        /// Only this tenant (a tenant's own users see their own)
        #[arg(long)]
        tenant: Option<String>,
        /// How many
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// Show one issued invoice
    Invoice {
        /// Its number
        number: String,
        /// The tenant invoiced, to find a reseller's invoice as provider staff (numbers are
        /// unique per seller; default: your own seller's, or your tenant's)
        #[arg(long)]
        tenant: Option<String>,
    },
}

fn money(cents: i64, currency: &str) -> String {
    format!("{} {currency}", arca_server::units::money(cents))
}

fn print_settings(s: &BillingSettings, saved: bool) {
    println!("currency        {}", s.currency);
    println!("tax rate        {} %", arca_api::percent_text(s.tax_basis_points));
    println!("issuer          {}", s.issuer_name);
    for l in &s.issuer_address {
        println!("                {l}");
    }
    println!("tax id          {}", s.issuer_tax_id);
    println!("number prefix   {}", s.number_prefix);
    println!("payment term    {} days", s.payment_days);
    if !saved {
        println!("(defaults: not saved yet; invoices cannot be issued until they are)");
    }
}

/// A list of invoices as a table, with the tenant billed when `with_tenant` (a list of one
/// reseller's invoices leaves it out: it is the reseller every time).
pub(super) fn print_invoice_list(v: &serde_json::Value, with_tenant: bool) {
    let rows = v
        .as_array()
        .map(|list| {
            list.iter()
                .map(|i| {
                    let cur = i["currency"].as_str().unwrap_or("");
                    let s = |k: &str| i[k].as_str().unwrap_or("").to_string();
                    let mut row = vec![s("number")];
                    if with_tenant {
                        row.push(s("tenant"));
                    }
                    row.extend([
                        s("month"),
                        s("issue_date"),
                        s("due_date"),
                        money(i["net_cents"].as_i64().unwrap_or(0), cur),
                        money(i["gross_cents"].as_i64().unwrap_or(0), cur),
                    ]);
                    row
                })
                .collect()
        })
        .unwrap_or_default();
    let header: &[&str] = if with_tenant {
        &["NUMBER", "TENANT", "MONTH", "ISSUED", "DUE", "NET", "TOTAL"]
    } else {
        &["NUMBER", "MONTH", "ISSUED", "DUE", "NET", "TOTAL"]
    };
    table(header, rows);
}

/// An invoice as a table of its lines and totals.
pub(super) fn print_invoice(v: &serde_json::Value) {
    let cur = v["currency"].as_str().unwrap_or("");
    let cents = |k: &str| v[k].as_i64().unwrap_or(0);
    let text = |k: &str| v[k].as_str().unwrap_or("").to_string();
    let body = &v["body"];
    let customer = if v["customer_reseller_id"].is_i64() { "reseller" } else { "tenant" };
    println!("invoice {}  ({customer} {}, {})", text("number"), text("tenant"), text("month"));
    println!("issued {}, due {}", text("issue_date"), text("due_date"));
    println!("period {} to {}", body["period_from"].as_str().unwrap_or(""), body["period_to"].as_str().unwrap_or(""));
    let lines = body["figures"]["lines"].as_array().cloned().unwrap_or_default();
    let mut rows: Vec<Vec<String>> = lines
        .iter()
        .map(|l| vec![l["text"].as_str().unwrap_or("").to_string(), money(l["cents"].as_i64().unwrap_or(0), cur)])
        .collect();
    rows.push(vec!["net".into(), money(cents("net_cents"), cur)]);
    let rate = arca_api::percent_text(cents("tax_basis_points"));
    rows.push(vec![format!("tax {rate} %"), money(cents("tax_cents"), cur)]);
    rows.push(vec!["total due".into(), money(cents("gross_cents"), cur)]);
    table(&["ITEM", "AMOUNT"], rows);
}

/// Runs a billing subcommand.
pub(super) fn run(g: &GlobalOpts, api: &Api, c: &BillingCommand) -> Result<()> {
    match c {
        BillingCommand::Settings {
            currency,
            tax_rate,
            issuer_name,
            issuer_address,
            issuer_tax_id,
            prefix,
            payment_days,
        } => {
            let v = api.json(Method::GET, "/v1/admin/billing/settings", None)?;
            let saved = v["saved"] == true;
            let mut s: BillingSettings = typed(&v)?;
            let change = currency.is_some()
                || tax_rate.is_some()
                || issuer_name.is_some()
                || !issuer_address.is_empty()
                || issuer_tax_id.is_some()
                || prefix.is_some()
                || payment_days.is_some();
            if !change {
                print_or(g, &v, |_| print_settings(&s, saved));
                return Ok(());
            }
            if let Some(x) = currency {
                s.currency = x.clone();
            }
            if let Some(x) = tax_rate {
                s.tax_basis_points = arca_api::parse_percent(x).map_err(|e| anyhow::anyhow!("--tax-rate: {e}"))?;
            }
            if let Some(x) = issuer_name {
                s.issuer_name = x.clone();
            }
            if !issuer_address.is_empty() {
                s.issuer_address = issuer_address.clone();
            }
            if let Some(x) = issuer_tax_id {
                s.issuer_tax_id = x.clone();
            }
            if let Some(x) = prefix {
                s.number_prefix = x.clone();
            }
            if let Some(x) = payment_days {
                s.payment_days = *x;
            }
            let v = api.send(Method::PUT, "/v1/admin/billing/settings", &s)?;
            let s: BillingSettings = typed(&v)?;
            print_or(g, &v, |_| {
                println!("billing settings saved");
                print_settings(&s, true);
            });
        }
        BillingCommand::Issue { tenant, month } => {
            let body = arca_api::IssueInvoice { tenant: tenant.clone(), month: month.clone() };
            let v = api.send(Method::POST, "/v1/admin/invoices", &body)?;
            print_or(g, &v, print_invoice);
        }
        BillingCommand::Invoices { tenant, limit } => {
            let mut path = format!("/v1/admin/invoices?limit={limit}");
            if let Some(t) = tenant {
                path.push_str(&format!("&tenant={}", q(t)));
            }
            let v = api.json(Method::GET, &path, None)?;
            print_or(g, &v, |v| print_invoice_list(v, true));
        }
        BillingCommand::Invoice { number, tenant } => {
            let mut path = format!("/v1/admin/invoices/{}", q(number));
            if let Some(t) = tenant {
                path += &format!("?tenant={}", q(t));
            }
            let v = api.json(Method::GET, &path, None)?;
            print_or(g, &v, print_invoice);
        }
    }
    Ok(())
}
