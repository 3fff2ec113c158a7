//! Backup health in the console: every device of every tenant with its last backup, schedule
//! and status, each repository's last server restore check, the alerts raised with their
//! delivery state, and the schedule form.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use minijinja::context;
use serde::{Deserialize, Serialize};

use super::pages::db_error;
use super::{check_csrf, date, forbidden, render, session};
use crate::access::is_staff;
use crate::state::AppState;

type Page = Result<Response, Response>;

#[derive(Serialize)]
struct DeviceView {
    tenant: String,
    device: String,
    repo: String,
    every: String,
    last_backup: String,
    status: String,
    failure: String,
    drill: String,
    drill_summary: String,
    replication: String,
}

#[derive(Serialize)]
struct CheckView {
    tenant: String,
    repo: String,
    when: String,
    verdict: &'static str,
    summary: String,
}

#[derive(Serialize)]
struct AlertView {
    raised: String,
    kind: String,
    subject: String,
    delivery: String,
}

/// `GET /console/health`: provider staff.
pub(super) async fn health(State(state): State<AppState>, headers: HeaderMap) -> Page {
    let s = session(&state, &headers).await?;
    if !is_staff(&s.principal) {
        return Err(forbidden(&s, "see every tenant's backup health"));
    }
    let err = |e| db_error(Some(&s), e);
    let devices: Vec<DeviceView> = state
        .db()
        .device_health(None)
        .await
        .map_err(err)?
        .into_iter()
        .filter(|d| d.status != "revoked")
        .map(|d| DeviceView {
            every: if d.backup_every_hours > 0 { format!("{} h", d.backup_every_hours) } else { "no schedule".into() },
            last_backup: date(d.last_backup_at),
            failure: if d.status == "failing" { super::failure_text(&d.last_failure) } else { String::new() },
            drill: date(d.last_drill_at),
            drill_summary: d.last_drill.clone(),
            replication: if d.last_replication_at > 0 {
                format!("{}: {}", date(d.last_replication_at), d.last_replication)
            } else {
                String::new()
            },
            tenant: d.tenant,
            device: d.device,
            repo: d.repo,
            status: d.status,
        })
        .collect();
    let troubled = devices.iter().filter(|d| d.status == "failing" || d.status == "overdue").count();
    let alerts: Vec<AlertView> = state
        .db()
        .alerts(None, 100)
        .await
        .map_err(err)?
        .into_iter()
        .map(|a| AlertView {
            raised: date(a.created_at),
            delivery: if a.delivered_at > 0 {
                format!("delivered {}", date(a.delivered_at))
            } else if a.attempts == 0 {
                "waiting".into()
            } else if a.attempts >= crate::db::health::MAX_ATTEMPTS {
                format!("given up after {} attempts: {}", a.attempts, a.last_error)
            } else {
                format!("retrying ({} attempts): {}", a.attempts, a.last_error)
            },
            kind: a.kind,
            subject: a.subject,
        })
        .collect();
    let checks: Vec<CheckView> = state
        .db()
        .restore_checks(None)
        .await
        .map_err(err)?
        .into_iter()
        .map(|c| CheckView {
            when: if c.at > 0 { date(c.at) } else { "never".into() },
            verdict: match (c.at > 0, c.ok) {
                (false, _) => "waiting",
                (true, true) => "ok",
                (true, false) => "failing",
            },
            tenant: c.tenant,
            repo: c.repo,
            summary: c.summary,
        })
        .collect();
    Ok(render(StatusCode::OK, "health.html", s.ctx(context! { devices, alerts, troubled, checks })))
}

/// The schedule form.
#[derive(Deserialize)]
pub(super) struct ScheduleForm {
    csrf: String,
    every_hours: i64,
}

/// `POST /tenants/{tenant}/devices/{device}/schedule`.
pub(super) async fn set_schedule(
    State(state): State<AppState>,
    Path((name, device)): Path<(String, String)>,
    headers: HeaderMap,
    Form(f): Form<ScheduleForm>,
) -> Page {
    let s = session(&state, &headers).await?;
    check_csrf(&s, &f.csrf)?;
    let t = super::pages::visible_tenant(&state, &s, &name).await?;
    crate::service::accounts::set_device_schedule(&state, &s.caller(), &t, &device, f.every_hours)
        .await
        .map_err(|e| super::service_error(&s, e))?;
    Ok(Redirect::to(&format!("/tenants/{}", t.name)).into_response())
}
