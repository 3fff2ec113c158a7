//! Resellers in the browser: the provider's staff list them and (admins) add one with its first
//! admin; each reseller's page shows its tenants' figures against its capacity, its admins, and
//! its wholesale statement for a month (what the provider charges it), with a CSV. A reseller's
//! admins reach their own page from the menu; every rule is [`crate::service::resellers`]'s.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use minijinja::context;
use serde::{Deserialize, Serialize};

use super::billing::{invoice_row, printable_invoice, IssueForm, MonthQuery};
use super::pages::db_error;
use super::{check_csrf, date, forbidden, human, inline_error, render, service_error, session, Session};
use crate::access::{is_provider_admin, is_staff, reseller_of};
use crate::db::resellers::{Reseller, ResellerChange};
use crate::errors::ApiError;
use crate::service::resellers as service;
use crate::state::AppState;
use crate::units::{gb_input, money};

type Page = Result<Response, Response>;

#[derive(Serialize)]
struct ResellerRow {
    name: String,
    display_name: String,
    tenants: i64,
    stored: String,
    quota: String,
    capacity: String,
    created: String,
    sign_in_host: String,
}

fn capacity_text(bytes: i64) -> String {
    if bytes == 0 {
        "no limit".into()
    } else {
        human(bytes)
    }
}

fn row(r: &Reseller) -> ResellerRow {
    ResellerRow {
        name: r.name.clone(),
        display_name: r.display_name.clone(),
        tenants: r.tenants,
        stored: human(r.stored_bytes),
        quota: human(r.quota_bytes),
        capacity: capacity_text(r.capacity_bytes),
        created: date(r.created_at),
        sign_in_host: r.sign_in_host.clone(),
    }
}

/// The new-reseller form.
#[derive(Deserialize, Serialize)]
pub(super) struct NewResellerForm {
    #[serde(skip_serializing)]
    csrf: String,
    name: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    capacity_gb: String,
    admin: String,
    #[serde(skip_serializing, default)]
    password: String,
}

/// A capacity typed in GB ("" or 0: no limit).
fn capacity_bytes(typed: &str) -> Result<i64, ApiError> {
    crate::units::parse_gb("capacity", typed).map_err(ApiError::bad_request)
}

async fn list_page(state: &AppState, s: &Session, refused: Option<(String, &NewResellerForm)>) -> Page {
    if !is_staff(&s.principal) {
        return Err(forbidden(s, "see the resellers"));
    }
    let resellers = service::list(state, &s.caller()).await.map_err(|e| service_error(s, e))?;
    let rows: Vec<ResellerRow> = resellers.iter().map(row).collect();
    let (status, form_error, typed) = match refused {
        Some((m, f)) => (StatusCode::BAD_REQUEST, Some(m), minijinja::Value::from_serialize(f)),
        None => (StatusCode::OK, None, context! {}),
    };
    Ok(render(
        status,
        "resellers.html",
        s.ctx(context! { resellers => rows, form_error, typed, min_len => crate::db::accounts::MIN_PASSWORD_LEN }),
    ))
}

/// `GET /console/resellers`.
pub(super) async fn resellers(State(state): State<AppState>, headers: HeaderMap) -> Page {
    let s = session(&state, &headers).await?;
    list_page(&state, &s, None).await
}

/// `POST /console/resellers`: a reseller and its first admin.
pub(super) async fn create(State(state): State<AppState>, headers: HeaderMap, Form(f): Form<NewResellerForm>) -> Page {
    let s = session(&state, &headers).await?;
    check_csrf(&s, &f.csrf)?;
    let result = match capacity_bytes(&f.capacity_gb) {
        Ok(capacity_bytes) => {
            let new = arca_api::NewReseller {
                name: f.name.trim().to_string(),
                display_name: f.display_name.clone(),
                capacity_bytes,
                admin: f.admin.trim().to_string(),
                password: f.password.clone(),
            };
            service::create(&state, &s.caller(), &new).await
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(r) => Ok(Redirect::to(&format!("/console/resellers/{}", r.name)).into_response()),
        Err(e) => {
            let why = inline_error(&s, e)?;
            list_page(&state, &s, Some((why, &f))).await
        }
    }
}

/// `GET /console/reseller`: a reseller's admin's own page.
pub(super) async fn own(State(state): State<AppState>, headers: HeaderMap) -> Page {
    let s = session(&state, &headers).await?;
    let Some(id) = reseller_of(&s.principal) else {
        return Err(forbidden(&s, "see a reseller's page"));
    };
    let r = state.db().reseller_by_id(id).await.map_err(|e| db_error(Some(&s), e))?;
    Ok(Redirect::to(&format!("/console/resellers/{}", r.name)).into_response())
}

#[derive(Serialize)]
struct StatementRow {
    tenant: String,
    display_name: String,
    plan: String,
    days: i64,
    days_in_month: i64,
    avg: String,
    base: String,
    overage: String,
    total: String,
}

async fn reseller_page(
    state: &AppState,
    s: &Session,
    name: &str,
    month: &str,
    refused: Option<(&str, String)>,
) -> Page {
    let caller = s.caller();
    let r = service::find(state, &caller, name).await.map_err(|e| service_error(s, e))?;
    let statement = service::wholesale(state, &caller, &r, month).await.map_err(|e| service_error(s, e))?;
    let rows: Vec<StatementRow> = statement
        .tenants
        .iter()
        .map(|m| StatementRow {
            tenant: m.tenant.clone(),
            display_name: m.display_name.clone(),
            plan: m.plan.clone().unwrap_or_else(|| "none".into()),
            days: m.days,
            days_in_month: m.days_in_month,
            avg: human(m.avg_stored_bytes),
            base: money(m.base_cents),
            overage: money(m.overage_cents),
            total: money(m.total_cents),
        })
        .collect();
    let admins = state.db().reseller_admins(r.id).await.map_err(|e| db_error(Some(s), e))?;
    let admins: Vec<_> = admins
        .iter()
        .map(|u| context! { name => u.name, status => super::staff::account_status(u), created => date(u.created_at) })
        .collect();
    let partial = statement.tenants.first().is_some_and(|m| m.partial);
    let invoices = service::invoices(state, &caller, &r, 120).await.map_err(|e| service_error(s, e))?;
    let issued = invoices.iter().find(|i| i.month == month).map(|i| i.number.clone());
    let can_issue = is_provider_admin(&s.principal) && !partial && issued.is_none() && !rows.is_empty();
    let invoices: Vec<_> = invoices.iter().map(invoice_row).collect();
    let (status, refused) = match refused {
        Some((form, error)) => (StatusCode::BAD_REQUEST, Some(context! { form, error })),
        None => (StatusCode::OK, None),
    };
    Ok(render(
        status,
        "reseller.html",
        s.ctx(context! {
            reseller => row(&r), capacity_gb => if r.capacity_bytes == 0 { String::new() } else { gb_input(r.capacity_bytes) },
            month, partial, rows, currency => statement.currency, net => money(statement.net_cents),
            tax => money(statement.tax_cents), gross => money(statement.gross_cents), admins, refused,
            invoices, issued, can_issue,
            can_change => is_provider_admin(&s.principal),
            can_add_admin => is_provider_admin(&s.principal) || reseller_of(&s.principal) == Some(r.id),
            min_len => crate::db::accounts::MIN_PASSWORD_LEN,
        }),
    ))
}

/// `GET /console/resellers/{reseller}?month=YYYY-MM`.
pub(super) async fn reseller(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<MonthQuery>,
    headers: HeaderMap,
) -> Page {
    let s = session(&state, &headers).await?;
    reseller_page(&state, &s, &name, &q.month(), None).await
}

/// `GET /console/resellers/{reseller}/statement.csv?month=YYYY-MM`.
pub(super) async fn statement_csv(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<MonthQuery>,
    headers: HeaderMap,
) -> Page {
    let s = session(&state, &headers).await?;
    let caller = s.caller();
    let month = q.month();
    let r = service::find(&state, &caller, &name).await.map_err(|e| service_error(&s, e))?;
    let statement = service::wholesale(&state, &caller, &r, &month).await.map_err(|e| service_error(&s, e))?;
    Ok(crate::routes::csv_download(
        &format!("arca-wholesale-{name}-{month}.csv"),
        crate::db::billing::to_csv(&statement.tenants),
    ))
}

/// `POST /console/resellers/{reseller}/invoices`: issues the month's invoice to the reseller (or
/// finds the one issued) and shows it; a refusal is shown on the statement.
pub(super) async fn issue(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Form(f): Form<IssueForm>,
) -> Page {
    let (s, r) = before_change(&state, &headers, &name, &f.csrf).await?;
    let month = f.month.trim();
    match service::issue_invoice(&state, &s.caller(), &r, month).await {
        Ok((inv, _)) => Ok(Redirect::to(&format!("/console/resellers/{name}/invoices/{}", inv.number)).into_response()),
        Err(e) => {
            let why = inline_error(&s, e)?;
            reseller_page(&state, &s, &name, month, Some(("invoice", why))).await
        }
    }
}

/// `GET /console/resellers/{reseller}/invoices/{number}`: the provider's invoice to the
/// reseller, printable (provider staff, its own admins).
pub(super) async fn invoice(
    State(state): State<AppState>,
    Path((name, number)): Path<(String, String)>,
    headers: HeaderMap,
) -> Page {
    let s = session(&state, &headers).await?;
    let caller = s.caller();
    let r = service::find(&state, &caller, &name).await.map_err(|e| service_error(&s, e))?;
    let inv = service::invoice(&state, &caller, &r, &number).await.map_err(|e| service_error(&s, e))?;
    let back = (format!("/console/resellers/{name}"), format!("All invoices of {}", r.display_name));
    Ok(printable_invoice(&s, &inv, back))
}

/// The reseller settings form.
#[derive(Deserialize)]
pub(super) struct ResellerForm {
    csrf: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    capacity_gb: String,
    #[serde(default)]
    sign_in_host: String,
}

/// `POST /console/resellers/{reseller}`: display name and capacity (provider admins).
pub(super) async fn update(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Form(f): Form<ResellerForm>,
) -> Page {
    let (s, r) = before_change(&state, &headers, &name, &f.csrf).await?;
    let result = match capacity_bytes(&f.capacity_gb) {
        Ok(c) => {
            let change = ResellerChange {
                display_name: Some(f.display_name.clone()),
                capacity_bytes: Some(c),
                sign_in_host: Some(f.sign_in_host.clone()),
            };
            service::update(&state, &s.caller(), &r, &change).await.map(|_| ())
        }
        Err(e) => Err(e),
    };
    after_change(&state, &s, &name, "settings", result).await
}

/// The steps before a change on a reseller's page: the session, its CSRF token, and the
/// reseller (one the caller may see, or "not found").
async fn before_change(
    state: &AppState,
    headers: &HeaderMap,
    name: &str,
    csrf: &str,
) -> Result<(Session, Reseller), Response> {
    let s = session(state, headers).await?;
    check_csrf(&s, csrf)?;
    let r = service::find(state, &s.caller(), name).await.map_err(|e| service_error(&s, e))?;
    Ok((s, r))
}

/// After a change on a reseller's page: back to the page, or the page again with the refusal
/// shown on form `form` (what was typed stays there).
async fn after_change(state: &AppState, s: &Session, name: &str, form: &str, result: Result<(), ApiError>) -> Page {
    match result {
        Ok(()) => Ok(Redirect::to(&format!("/console/resellers/{name}")).into_response()),
        Err(e) => {
            let why = inline_error(s, e)?;
            reseller_page(state, s, name, &crate::db::billing::this_month(), Some((form, why))).await
        }
    }
}

/// The new-admin form.
#[derive(Deserialize)]
pub(super) struct NewAdminForm {
    csrf: String,
    name: String,
    password: String,
}

/// `POST /console/resellers/{reseller}/admins`.
pub(super) async fn add_admin(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Form(f): Form<NewAdminForm>,
) -> Page {
    let (s, r) = before_change(&state, &headers, &name, &f.csrf).await?;
    let result = service::add_admin(&state, &s.caller(), &r, f.name.trim(), &f.password).await.map(|_| ());
    after_change(&state, &s, &name, "admin", result).await
}
