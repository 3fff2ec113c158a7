//! `arca admin reseller …`: resellers through the admin API, the same calls as the console's
//! reseller pages: list, create (with the first admin), show, change the capacity, add admins,
//! and the wholesale statement of a month (what the provider charges the reseller).

use anyhow::Result;
use arca_api::{NewReseller, Reseller, ResellerChange};
use clap::Subcommand;
use reqwest::Method;
use serde_json::Value;

use super::admin::{parse_size, password_from, print_or, q, table, typed, Api};
use super::admin_billing::{print_invoice, print_invoice_list};
use crate::cli::GlobalOpts;
use arca_server::units::human_bytes as human;
use arca_server::units::money;

/// `arca admin reseller …`
#[derive(Debug, Subcommand)]
pub enum ResellerCommand {
    /// List resellers with their tenants, storage and capacity (a reseller's admins see theirs)
    List,
    /// Create a reseller and its first admin (provider admins); the admin's password comes from
    /// ARCA_NEW_PASSWORD or a prompt
    Create {
        /// Short name ([a-z0-9-])
        name: String,
        /// Name for people
        #[arg(long, default_value = "")]
        display_name: String,
        /// The most its tenants' hard quotas may add up to (e.g. 10TB; 0: no limit)
        #[arg(long, default_value = "0")]
        capacity: String,
        /// The first admin's login name
        #[arg(long)]
        admin: String,
    },
    /// Show one reseller
    Show {
        /// Reseller name
        name: String,
    },
    /// Change a reseller's display name, capacity or sign-in host (provider admins)
    Set {
        /// Reseller name
        name: String,
        /// New display name
        #[arg(long)]
        display_name: Option<String>,
        /// New capacity (0: no limit); refused below what its tenants' quotas add up to
        #[arg(long)]
        capacity: Option<String>,
        /// The host name whose sign-in page shows the reseller's brand (its DNS name pointed at
        /// this server, e.g. backup.reseller.example); "" removes it
        #[arg(long, value_name = "HOST")]
        sign_in_host: Option<String>,
    },
    /// Add an admin to a reseller (provider admins, or its own admins); the password comes from
    /// ARCA_NEW_PASSWORD or a prompt
    AddAdmin {
        /// Reseller name
        name: String,
        /// The new admin's login name
        #[arg(long)]
        user: String,
    },
    /// The wholesale statement of a month: each of the reseller's tenants at the price of the
    /// provider's plan its plan resells
    Statement {
        /// Reseller name
        name: String,
        /// The month (YYYY-MM; default this month, so far)
        #[arg(long)]
        month: Option<String>,
        /// CSV instead of a table
        #[arg(long)]
        csv: bool,
    },
    /// Issue the provider's invoice to a reseller for a finished month: its wholesale
    /// statement, numbered in the provider's sequence and kept for good (provider admins); or
    /// show the one already issued
    Invoice {
        /// Reseller name
        name: String,
        /// The month (YYYY-MM), finished
        #[arg(long)]
        month: String,
    },
    /// The provider's invoices to a reseller, newest first (provider staff, or its own admins);
    /// with --number, that one in full
    Invoices {
        /// Reseller name
        name: String,
        /// Show this invoice
        #[arg(long)]
        number: Option<String>,
    },
}

fn row(r: &Reseller) -> Vec<String> {
    vec![
        r.name.clone(),
        r.display_name.clone(),
        r.tenants.to_string(),
        human(r.stored_bytes),
        human(r.quota_bytes),
        if r.capacity_bytes == 0 { "no limit".into() } else { human(r.capacity_bytes) },
        if r.sign_in_host.is_empty() { "-".into() } else { r.sign_in_host.clone() },
    ]
}

const HEADER: &[&str] = &["RESELLER", "NAME", "TENANTS", "STORED", "QUOTAS SOLD", "CAPACITY", "SIGN-IN HOST"];

/// Runs one `arca admin reseller` command.
pub(super) fn run(g: &GlobalOpts, api: &Api, c: &ResellerCommand) -> Result<()> {
    match c {
        ResellerCommand::List => {
            let v = api.json(Method::GET, "/v1/admin/resellers", None)?;
            let list: Vec<Reseller> = typed(&v)?;
            print_or(g, &v, |_| table(HEADER, list.iter().map(row).collect()));
        }
        ResellerCommand::Create { name, display_name, capacity, admin } => {
            let password = password_from("ARCA_NEW_PASSWORD", &format!("Password for the reseller admin {admin}: "))?;
            let new = NewReseller {
                name: name.clone(),
                display_name: display_name.clone(),
                capacity_bytes: parse_size(capacity)?,
                admin: admin.clone(),
                password,
            };
            let v = api.send(Method::POST, "/v1/admin/resellers", &new)?;
            print_or(g, &v, |_| println!("created reseller {name} with admin {admin}"));
        }
        ResellerCommand::Show { name } => {
            let v = api.json(Method::GET, &format!("/v1/admin/resellers/{}", q(name)), None)?;
            let r: Reseller = typed(&v)?;
            print_or(g, &v, |_| table(HEADER, vec![row(&r)]));
        }
        ResellerCommand::Set { name, display_name, capacity, sign_in_host } => {
            let change = ResellerChange {
                display_name: display_name.clone(),
                capacity_bytes: capacity.as_deref().map(parse_size).transpose()?,
                sign_in_host: sign_in_host.clone(),
            };
            let v = api.send(Method::PUT, &format!("/v1/admin/resellers/{}", q(name)), &change)?;
            let r: Reseller = typed(&v)?;
            print_or(g, &v, |_| table(HEADER, vec![row(&r)]));
        }
        ResellerCommand::AddAdmin { name, user } => {
            let password = password_from("ARCA_NEW_PASSWORD", &format!("Password for the reseller admin {user}: "))?;
            let body = serde_json::json!({ "name": user, "password": password });
            let v = api.json(Method::POST, &format!("/v1/admin/resellers/{}/admins", q(name)), Some(body))?;
            print_or(g, &v, |_| println!("added {user} as an admin of reseller {name}"));
        }
        ResellerCommand::Statement { name, month, csv } => {
            let mut path = format!("/v1/admin/resellers/{}/statement", q(name));
            if let Some(m) = month {
                path += &format!("?month={}", q(m));
            }
            if *csv {
                let sep = if path.contains('?') { '&' } else { '?' };
                print!("{}", api.call(Method::GET, &format!("{path}{sep}format=csv"), None)?);
                return Ok(());
            }
            let v = api.json(Method::GET, &path, None)?;
            print_or(g, &v, print_statement);
        }
        ResellerCommand::Invoice { name, month } => {
            let body = serde_json::json!({ "month": month });
            let v = api.json(Method::POST, &format!("/v1/admin/resellers/{}/invoices", q(name)), Some(body))?;
            print_or(g, &v, print_invoice);
        }
        ResellerCommand::Invoices { name, number: Some(number) } => {
            let path = format!("/v1/admin/resellers/{}/invoices/{}", q(name), q(number));
            let v = api.json(Method::GET, &path, None)?;
            print_or(g, &v, print_invoice);
        }
        ResellerCommand::Invoices { name, number: None } => {
            let v = api.json(Method::GET, &format!("/v1/admin/resellers/{}/invoices", q(name)), None)?;
            print_or(g, &v, |v| print_invoice_list(v, false));
        }
    }
    Ok(())
}

fn print_statement(v: &Value) {
    let cur = v["currency"].as_str().unwrap_or("");
    let cents = |x: &Value| x.as_i64().unwrap_or(0);
    let rows = v["tenants"]
        .as_array()
        .map(|ts| {
            ts.iter()
                .map(|t| {
                    vec![
                        t["tenant"].as_str().unwrap_or("").to_string(),
                        t["plan"].as_str().unwrap_or("none").to_string(),
                        format!("{} of {}", cents(&t["days"]), cents(&t["days_in_month"])),
                        human(cents(&t["avg_stored_bytes"])),
                        money(cents(&t["total_cents"])),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    println!(
        "wholesale statement of {} for {}",
        v["reseller"].as_str().unwrap_or(""),
        v["month"].as_str().unwrap_or("")
    );
    table(&["TENANT", "WHOLESALE PLAN", "DAYS", "AVG STORED", &format!("NET {cur}")], rows);
    println!(
        "net {} {cur}, tax {} {cur}, gross {} {cur}",
        money(cents(&v["net_cents"])),
        money(cents(&v["tax_cents"])),
        money(cents(&v["gross_cents"]))
    );
}
