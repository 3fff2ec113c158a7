//! The provider's billing pages: a month per tenant (average and peak stored, traffic,
//! snapshots, what the plan charges), the same as CSV, and a printable invoice preview.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use minijinja::context;
use serde::{Deserialize, Serialize};

use super::pages::db_error;
use super::{forbidden, human, not_found, render, session, Session};
use crate::access::is_staff;
use crate::db::billing::{this_month, to_csv, TenantMonth};
use crate::state::AppState;

type Page = Result<Response, Response>;

/// `?month=YYYY-MM`.
#[derive(Deserialize)]
pub(super) struct MonthQuery {
    month: Option<String>,
}

impl MonthQuery {
    fn month(&self) -> String {
        self.month.clone().filter(|m| !m.is_empty()).unwrap_or_else(this_month)
    }
}

/// Cents as `1234.56`.
fn money(cents: i64) -> String {
    format!("{}{}.{:02}", if cents < 0 { "-" } else { "" }, cents.abs() / 100, cents.abs() % 100)
}

#[derive(Serialize)]
struct Row {
    tenant: String,
    display_name: String,
    plan: String,
    days: i64,
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
}

fn row(m: &TenantMonth) -> Row {
    Row {
        tenant: m.tenant.clone(),
        display_name: m.display_name.clone(),
        plan: m.plan.clone().unwrap_or_else(|| "none".into()),
        days: m.days,
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
    }
}

async fn staff_session(state: &AppState, headers: &HeaderMap) -> Result<Session, Response> {
    let s = session(state, headers).await?;
    if !is_staff(&s.principal) {
        return Err(forbidden(&s, "see billing"));
    }
    Ok(s)
}

/// `GET /console/billing`: every tenant's month.
pub(super) async fn billing(State(state): State<AppState>, Query(q): Query<MonthQuery>, headers: HeaderMap) -> Page {
    let s = staff_session(&state, &headers).await?;
    let month = q.month();
    let months = state.db().billing(None, &month).await.map_err(|e| db_error(Some(&s), e))?;
    let total: i64 = months.iter().map(|m| m.total_cents).sum();
    let partial = months.first().is_some_and(|m| m.partial);
    let rows: Vec<Row> = months.iter().map(row).collect();
    Ok(render(StatusCode::OK, "billing.html", s.ctx(context! { month, rows, total => money(total), partial })))
}

/// `GET /console/billing.csv`.
pub(super) async fn billing_csv(
    State(state): State<AppState>,
    Query(q): Query<MonthQuery>,
    headers: HeaderMap,
) -> Page {
    let s = staff_session(&state, &headers).await?;
    let month = q.month();
    let months = state.db().billing(None, &month).await.map_err(|e| db_error(Some(&s), e))?;
    Ok(crate::routes::csv_download(&format!("arca-billing-{month}.csv"), to_csv(&months)))
}

#[derive(Serialize)]
struct Line {
    text: String,
    amount: String,
}

/// `GET /console/billing/{tenant}`: the invoice the month would produce.
pub(super) async fn invoice(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    Query(q): Query<MonthQuery>,
    headers: HeaderMap,
) -> Page {
    let s = staff_session(&state, &headers).await?;
    let month = q.month();
    let t = match state.db().tenant(&tenant).await {
        Ok(t) => t,
        Err(crate::db::DbError::NotFound(_)) => return Err(not_found(&s, &format!("tenant named {tenant}"))),
        Err(e) => return Err(db_error(Some(&s), e)),
    };
    let months = state.db().billing(Some(t.id), &month).await.map_err(|e| db_error(Some(&s), e))?;
    let Some(m) = months.first() else {
        return Err(not_found(&s, &format!("billing for {tenant} in {month} (the tenant did not exist yet)")));
    };
    let plan = match &m.plan {
        Some(name) => Some(state.db().plan(name).await.map_err(|e| db_error(Some(&s), e))?),
        None => None,
    };
    let (first, last) = crate::db::billing::month_range(&month).map_err(|e| db_error(Some(&s), e))?;
    let created = chrono::DateTime::from_timestamp(t.created_at, 0).map_or(first, |d| d.date_naive());
    let billed_days = (last - first.max(created)).num_days() + 1;
    let mut lines = Vec::new();
    if let Some(p) = &plan {
        lines.push(Line {
            text: format!(
                "Plan {} ({} a year), {} of {} days",
                p.name,
                money(p.yearly_price_cents),
                billed_days,
                (last - first).num_days() + 1
            ),
            amount: money(m.base_cents),
        });
        if m.overage_bytes > 0 {
            lines.push(Line {
                text: format!(
                    "Storage above the {} soft quota: {:.2} GB on average at {} per GB",
                    human(m.soft_quota_bytes),
                    m.overage_bytes as f64 / 1e9,
                    money(p.overage_cents_per_gb)
                ),
                amount: money(m.overage_cents),
            });
        }
    }
    Ok(render(
        StatusCode::OK,
        "invoice.html",
        s.ctx(context! {
            month, tenant => &t, m => row(m), lines, total => money(m.total_cents), partial => m.partial,
            period => format!("{first} to {last}"), has_plan => plan.is_some(),
        }),
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn money_prints_cents() {
        assert_eq!(super::money(0), "0.00");
        assert_eq!(super::money(1234), "12.34");
        assert_eq!(super::money(5), "0.05");
        assert_eq!(super::money(-250), "-2.50");
    }
}
