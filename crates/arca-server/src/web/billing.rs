//! Billing pages. For each seller (provider staff for the provider's own customers, a reseller's
//! admins for its tenants): a month per tenant (average and peak stored, traffic, snapshots, what
//! the plan charges), the same as CSV, an invoice preview per tenant with the button that issues
//! it in the seller's name (its admins, finished months), and the seller's billing settings. For
//! the tenant's own users (and staff): the tenant's billing page (this month so far and the issued
//! invoices) and each issued invoice as a printable page. Every rule is the service layer's
//! ([`crate::service::billing`]).

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use minijinja::context;
use serde::{Deserialize, Serialize};

use super::listing::Listing;
use super::pages::{db_error, visible_tenant};
use super::{check_csrf, forbidden, human, inline_error, not_found, render, service_error, session, Session};
use crate::access::{billing_issuer, can_invoice};
use crate::db::billing::{this_month, to_csv, TenantMonth};
use crate::db::invoices::{BillingSettings, Customer, Invoice};
use crate::service::billing as service;
use crate::state::AppState;
use crate::units::{amount, money};

type Page = Result<Response, Response>;

/// `?month=YYYY-MM`.
#[derive(Deserialize)]
pub(super) struct MonthQuery {
    month: Option<String>,
}

impl MonthQuery {
    pub(super) fn month(&self) -> String {
        month_or_this(self.month.as_deref())
    }
}

/// The month a page was asked for (`?month=`, trimmed), or this month when none was.
fn month_or_this(asked: Option<&str>) -> String {
    asked.map(str::trim).filter(|m| !m.is_empty()).map_or_else(this_month, str::to_string)
}

#[derive(Serialize)]
struct Row {
    tenant: String,
    display_name: String,
    plan: String,
    days: i64,
    days_in_month: i64,
    avg: String,
    avg_bytes: i64,
    peak: String,
    ingress: String,
    egress: String,
    snapshots: i64,
    base: String,
    overage: String,
    total: String,
    total_cents: i64,
    tax: String,
    gross: String,
    invoice: Option<String>,
}

fn row(m: &TenantMonth, invoice: Option<String>) -> Row {
    Row {
        tenant: m.tenant.clone(),
        display_name: m.display_name.clone(),
        plan: m.plan.clone().unwrap_or_else(|| "none".into()),
        days: m.days,
        days_in_month: m.days_in_month,
        avg: human(m.avg_stored_bytes),
        avg_bytes: m.avg_stored_bytes,
        peak: human(m.peak_stored_bytes),
        ingress: human(m.ingress_bytes),
        egress: human(m.egress_bytes),
        snapshots: m.snapshots,
        base: money(m.base_cents),
        overage: money(m.overage_cents),
        total: money(m.total_cents),
        total_cents: m.total_cents,
        tax: money(m.tax_cents),
        gross: money(m.gross_cents),
        invoice,
    }
}

#[derive(Serialize)]
struct Line {
    text: String,
    amount: String,
}

fn lines(m: &TenantMonth) -> Vec<Line> {
    m.lines.iter().map(|l| Line { text: l.text.clone(), amount: amount(l.cents, &m.currency) }).collect()
}

/// A session of the console's billing pages: provider staff, or a reseller's admins (who see
/// their own customers' months; [`service::month`] decides whose).
async fn seller_session(state: &AppState, headers: &HeaderMap) -> Result<Session, Response> {
    let s = session(state, headers).await?;
    if !s.me.console {
        return Err(forbidden(&s, "see billing"));
    }
    Ok(s)
}

/// How the billing table can be sorted: by tenant name, or by what the month charges.
const BILLING_SORTS: &[&str] = &["tenant", "total"];

/// `GET /console/billing`: every customer's month (the provider's own, or a reseller's), searched,
/// sorted and paged like the other lists (the totals are the whole month's), and for provider
/// staff each reseller's wholesale total.
pub(super) async fn billing(
    State(state): State<AppState>,
    Query(params): Query<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
) -> Page {
    let s = seller_session(&state, &headers).await?;
    let month = month_or_this(params.get("month").map(String::as_str));
    let list = Listing::new("/console/billing", "", &params, BILLING_SORTS, false);
    let caller = s.caller();
    let months = service::month(&state, &caller, None, &month).await.map_err(|e| service_error(&s, e))?;
    // The numbers this seller issued (the provider's to its customers, a reseller's to its own).
    let issuer = billing_issuer(&s.principal).ok_or_else(|| forbidden(&s, "see billing"))?;
    let mut numbers = state.db().invoice_numbers(issuer, &month).await.map_err(|e| db_error(Some(&s), e))?;
    let mut wholesale = Vec::new();
    if s.me.staff {
        let all = crate::service::resellers::wholesale_all(&state, &caller, &month)
            .await
            .map_err(|e| service_error(&s, e))?;
        for (r, st) in all {
            wholesale.push(context! {
                name => r.name, display_name => r.display_name, tenants => st.tenants.len(),
                net => money(st.net_cents), gross => money(st.gross_cents),
            });
        }
    }
    let (settings, saved) = service::settings(&state, &caller).await.map_err(|e| service_error(&s, e))?;
    let currency = settings.currency;
    let total: i64 = months.iter().map(|m| m.total_cents).sum();
    let gross: i64 = months.iter().map(|m| m.gross_cents).sum();
    let partial = months.first().is_some_and(|m| m.partial);
    let mut shown: Vec<&TenantMonth> = months.iter().filter(|m| list.matches(&[&m.tenant, &m.display_name])).collect();
    if list.sort == "total" {
        list.sort_by(&mut shown, |m| (m.total_cents, m.tenant.as_str()));
    } else {
        list.sort_by(&mut shown, |m| m.tenant.as_str());
    }
    let (page, list) = list.page_of(shown);
    let rows: Vec<Row> = page.into_iter().map(|m| row(m, numbers.remove(&m.tenant))).collect();
    Ok(render(
        StatusCode::OK,
        "billing.html",
        s.ctx(context! {
            month, rows, list, tenants => months.len(), total => money(total), gross => money(gross), partial, currency,
            saved, wholesale,
        }),
    ))
}

/// `GET /console/billing.csv`.
pub(super) async fn billing_csv(
    State(state): State<AppState>,
    Query(q): Query<MonthQuery>,
    headers: HeaderMap,
) -> Page {
    let s = seller_session(&state, &headers).await?;
    let month = q.month();
    let months = service::month(&state, &s.caller(), None, &month).await.map_err(|e| service_error(&s, e))?;
    Ok(crate::routes::csv_download(&format!("arca-billing-{month}.csv"), to_csv(&months)))
}

/// `GET /console/billing/{tenant}`: the invoice the month would produce, and (the tenant's
/// seller's admins, finished months) the button that issues it; once issued, a link to it.
pub(super) async fn invoice(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    Query(q): Query<MonthQuery>,
    headers: HeaderMap,
) -> Page {
    let s = seller_session(&state, &headers).await?;
    let month = q.month();
    let t = visible_tenant(&state, &s, &tenant).await?;
    let months = service::month(&state, &s.caller(), Some(&t), &month).await.map_err(|e| service_error(&s, e))?;
    let Some(m) = months.first() else {
        return Err(not_found(&s, &format!("billing for {tenant} in {month} (the tenant did not exist yet)")));
    };
    let issued = state.db().invoice_of(Customer::Tenant(t.id), &month).await.map_err(|e| db_error(Some(&s), e))?;
    let (first, last) = crate::db::billing::month_range(&month).map_err(|e| db_error(Some(&s), e))?;
    let can_issue = can_invoice(&s.principal, &t) && !m.partial && issued.is_none() && m.plan.is_some();
    Ok(render(
        StatusCode::OK,
        "invoice.html",
        s.ctx(context! {
            month, tenant => &t, m => row(m, None), lines => lines(m), partial => m.partial,
            total => amount(m.total_cents, &m.currency), tax => amount(m.tax_cents, &m.currency),
            gross => amount(m.gross_cents, &m.currency), tax_rate => arca_api::percent_text(m.tax_basis_points),
            period => format!("{first} to {last}"), has_plan => m.plan.is_some(),
            issued => issued.map(|i| i.number), can_issue,
        }),
    ))
}

/// The form of an issue button (a tenant's invoice here, a reseller's on its page).
#[derive(Deserialize)]
pub(super) struct IssueForm {
    pub(super) csrf: String,
    pub(super) month: String,
}

/// `POST /console/billing/{tenant}/issue`: issues the month's invoice (or finds the one issued)
/// and shows it.
pub(super) async fn issue(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    Form(f): Form<IssueForm>,
) -> Page {
    let s = session(&state, &headers).await?;
    check_csrf(&s, &f.csrf)?;
    let t = visible_tenant(&state, &s, &tenant).await?;
    let (inv, _) = service::issue(&state, &s.caller(), &t, f.month.trim()).await.map_err(|e| service_error(&s, e))?;
    Ok(Redirect::to(&format!("/tenants/{}/invoices/{}", t.name, inv.number)).into_response())
}

/// The settings form as shown (what was typed stays on a refusal).
#[derive(Serialize, Deserialize, Default)]
pub(super) struct SettingsForm {
    #[serde(default)]
    csrf: String,
    currency: String,
    tax_rate: String,
    issuer_name: String,
    issuer_address: String,
    issuer_tax_id: String,
    number_prefix: String,
    payment_days: String,
}

impl SettingsForm {
    fn from_settings(s: &BillingSettings) -> SettingsForm {
        SettingsForm {
            csrf: String::new(),
            currency: s.currency.clone(),
            tax_rate: arca_api::percent_text(s.tax_basis_points),
            issuer_name: s.issuer_name.clone(),
            issuer_address: s.issuer_address.join("\n"),
            issuer_tax_id: s.issuer_tax_id.clone(),
            number_prefix: s.number_prefix.clone(),
            payment_days: s.payment_days.to_string(),
        }
    }

    /// The form's text as settings; numbers that do not parse are refused here with the field's
    /// name, every other rule is the service's.
    fn to_settings(&self) -> Result<BillingSettings, String> {
        let tax = arca_api::parse_percent(&self.tax_rate).map_err(|e| format!("tax rate: {e}"))?;
        let days: i64 = self
            .payment_days
            .trim()
            .parse()
            .map_err(|_| format!("payment term: {:?} is not a number of days", self.payment_days))?;
        Ok(BillingSettings {
            currency: self.currency.clone(),
            tax_basis_points: tax,
            issuer_name: self.issuer_name.clone(),
            issuer_address: self.issuer_address.lines().map(str::to_string).collect(),
            issuer_tax_id: self.issuer_tax_id.clone(),
            number_prefix: self.number_prefix.clone(),
            payment_days: days,
        })
    }
}

/// The settings page: `saved` whether settings were ever saved, `just_saved` after a save.
fn settings_page(
    s: &Session,
    status: StatusCode,
    form: &SettingsForm,
    saved: bool,
    error: Option<String>,
    just_saved: bool,
) -> Response {
    let flash = just_saved.then_some("Billing settings saved.");
    render(status, "billing_settings.html", s.ctx(context! { f => form, saved, error, flash }))
}

/// `?saved=1` after a save.
#[derive(Deserialize)]
pub(super) struct SavedQuery {
    saved: Option<String>,
}

/// `GET /console/billing-settings`: staff read them, provider admins change them.
pub(super) async fn settings(State(state): State<AppState>, Query(q): Query<SavedQuery>, headers: HeaderMap) -> Page {
    let s = session(&state, &headers).await?;
    let (settings, saved) = service::settings(&state, &s.caller()).await.map_err(|e| service_error(&s, e))?;
    let form = SettingsForm::from_settings(&settings);
    Ok(settings_page(&s, StatusCode::OK, &form, saved, None, q.saved.is_some()))
}

/// `POST /console/billing-settings`.
pub(super) async fn save_settings(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<SettingsForm>,
) -> Page {
    let s = session(&state, &headers).await?;
    check_csrf(&s, &f.csrf)?;
    let (_, saved) = service::settings(&state, &s.caller()).await.map_err(|e| service_error(&s, e))?;
    let settings = match f.to_settings() {
        Ok(v) => v,
        Err(why) => return Ok(settings_page(&s, StatusCode::BAD_REQUEST, &f, saved, Some(why), false)),
    };
    match service::set_settings(&state, &s.caller(), &settings).await {
        Ok(_) => Ok(Redirect::to("/console/billing-settings?saved=1").into_response()),
        Err(e) => {
            let why = inline_error(&s, e)?;
            Ok(settings_page(&s, StatusCode::BAD_REQUEST, &f, saved, Some(why), false))
        }
    }
}

#[derive(Serialize)]
pub(super) struct InvoiceRow {
    number: String,
    month: String,
    issue_date: String,
    due_date: String,
    net: String,
    tax: String,
    gross: String,
}

pub(super) fn invoice_row(i: &Invoice) -> InvoiceRow {
    InvoiceRow {
        number: i.number.clone(),
        month: i.month.clone(),
        issue_date: i.issue_date.clone(),
        due_date: i.due_date.clone(),
        net: amount(i.net_cents, &i.currency),
        tax: amount(i.tax_cents, &i.currency),
        gross: amount(i.gross_cents, &i.currency),
    }
}

/// `GET /tenants/{tenant}/billing`: the tenant's month so far and its issued invoices (its own
/// admins and users, and provider staff).
pub(super) async fn tenant_billing(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
) -> Page {
    let s = session(&state, &headers).await?;
    let t = visible_tenant(&state, &s, &tenant).await?;
    let caller = s.caller();
    let month = this_month();
    let months = service::month(&state, &caller, Some(&t), &month).await.map_err(|e| service_error(&s, e))?;
    let invoices = service::invoices(&state, &caller, Some(&t), 120).await.map_err(|e| service_error(&s, e))?;
    let rows: Vec<InvoiceRow> = invoices.iter().map(invoice_row).collect();
    let estimate = months.first().map(|m| {
        context! {
            m => row(m, None), lines => lines(m), total => amount(m.total_cents, &m.currency),
            tax => amount(m.tax_cents, &m.currency), gross => amount(m.gross_cents, &m.currency),
            tax_rate => arca_api::percent_text(m.tax_basis_points), has_plan => m.plan.is_some(),
        }
    });
    Ok(render(
        StatusCode::OK,
        "tenant_billing.html",
        s.ctx(context! { tenant => &t, month, estimate, invoices => rows }),
    ))
}

/// `GET /tenants/{tenant}/invoices/{number}`: an issued invoice, printable. Another tenant's
/// invoice (or one under another tenant's address) is "not found", as a missing one.
pub(super) async fn invoice_page(
    State(state): State<AppState>,
    Path((tenant, number)): Path<(String, String)>,
    headers: HeaderMap,
) -> Page {
    let s = session(&state, &headers).await?;
    let t = visible_tenant(&state, &s, &tenant).await?;
    let inv = match service::invoice(&state, &s.caller(), Some(&t), &number).await {
        Ok(inv) => inv,
        Err(e) if e.status() == StatusCode::NOT_FOUND => {
            return Err(not_found(&s, &format!("invoice numbered {number}")))
        }
        Err(e) => return Err(service_error(&s, e)),
    };
    let back = (format!("/tenants/{}/billing", t.name), format!("All invoices of {}", t.display_name));
    Ok(printable_invoice(&s, &inv, back))
}

/// An issued invoice as its printable page, with a link back (`(address, text)`). An invoice to
/// a reseller lists its tenants behind the lines.
pub(super) fn printable_invoice(s: &Session, inv: &Invoice, (back_url, back_text): (String, String)) -> Response {
    let cur = inv.currency.as_str();
    let lines: Vec<Line> =
        inv.body.figures.lines.iter().map(|l| Line { text: l.text.clone(), amount: amount(l.cents, cur) }).collect();
    let wholesale: Vec<Row> = inv.body.tenants.iter().map(|m| row(m, None)).collect();
    let f = &inv.body.figures;
    render(
        StatusCode::OK,
        "invoice_print.html",
        s.ctx(context! {
            inv => inv, issuer => &inv.body.issuer, lines, wholesale, back_url, back_text,
            net => amount(inv.net_cents, cur), tax => amount(inv.tax_cents, cur), gross => amount(inv.gross_cents, cur),
            tax_rate => arca_api::percent_text(inv.tax_basis_points), days => f.days, days_in_month => f.days_in_month,
            avg => human(f.avg_stored_bytes), peak => human(f.peak_stored_bytes), ingress => human(f.ingress_bytes),
            egress => human(f.egress_bytes), snapshots => f.snapshots,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_settings_form_reads_exact_figures() {
        let f = SettingsForm {
            currency: "eur".into(),
            tax_rate: "20,5".into(),
            issuer_name: "Host Ltd".into(),
            issuer_address: "1 Road\r\nTown".into(),
            number_prefix: "INV".into(),
            payment_days: " 14 ".into(),
            ..Default::default()
        };
        let s = f.to_settings().unwrap();
        assert_eq!((s.tax_basis_points, s.payment_days), (2050, 14));
        assert_eq!(s.issuer_address, vec!["1 Road", "Town"]);
        let back = SettingsForm::from_settings(&s);
        assert_eq!((back.tax_rate.as_str(), back.issuer_address.as_str()), ("20.5", "1 Road\nTown"));
        assert!(SettingsForm { tax_rate: "lots".into(), payment_days: "1".into(), ..Default::default() }
            .to_settings()
            .unwrap_err()
            .contains("tax rate"));
        assert!(SettingsForm { tax_rate: "0".into(), payment_days: "x".into(), ..Default::default() }
            .to_settings()
            .unwrap_err()
            .contains("payment term"));
    }
}
