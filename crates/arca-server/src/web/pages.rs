//! The page handlers.

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use minijinja::context;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

use super::chart;
use super::listing::{Listing, PAGE_SIZE};
use super::{
    check_csrf, cookie, date, forbidden, human, inline_error, message, not_found, render, service_error, session,
    set_cookie, Session, BRAND_COOKIE, BRAND_COOKIE_DAYS, LOGIN_COOKIE, SESSION_COOKIE, SESSION_DAYS,
};
use crate::access::{can_manage_tenant, can_sell_to, can_view_tenant, is_staff, reseller_of};
use crate::db::accounts::{LoginOutcome, RepoFormat, Repository, Tenant, TenantList, TenantSort, TenantStatus};
use crate::db::audit::NewAudit;
use crate::db::DbError;
use crate::errors::ApiError;
use crate::service::accounts as service;
use crate::service::audit as audit_service;
use crate::service::users as users_service;
use crate::state::AppState;

type Page = Result<Response, Response>;

pub(super) fn db_error(s: Option<&Session>, e: DbError) -> Response {
    match e {
        DbError::Conflict(m) | DbError::Invalid(m) => message(StatusCode::BAD_REQUEST, "Not done", &m, s),
        DbError::NotFound(m) => message(StatusCode::NOT_FOUND, "Not found", &m, s),
        DbError::Busy(m) => message(StatusCode::SERVICE_UNAVAILABLE, "Busy", &m, s),
        DbError::Sql(e) => {
            tracing::error!("web: metadata database: {e}");
            message(
                StatusCode::SERVICE_UNAVAILABLE,
                "Unavailable",
                "The server's database is unavailable right now. Nothing was changed; try again in a moment.",
                s,
            )
        }
    }
}

/// `GET /`: the start page of the user's role.
pub(super) async fn home(State(state): State<AppState>, headers: HeaderMap) -> Page {
    let s = session(&state, &headers).await?;
    Ok(match &s.me.tenant {
        _ if s.me.console => Redirect::to("/console").into_response(),
        Some(t) => Redirect::to(&format!("/tenants/{t}")).into_response(),
        None => Redirect::to("/login").into_response(),
    })
}

/// What `GET /login` may be told: the page to return to, and why the user is here.
#[derive(Deserialize, Default)]
pub(super) struct LoginQuery {
    #[serde(default)]
    next: String,
    #[serde(default)]
    why: String,
    /// A reseller's name: its sign-in address shows its brand.
    #[serde(default)]
    reseller: String,
}

/// A reseller's brand on the sign-in pages: its name (kept in the forms) and the brand.
pub(super) struct LoginBrand {
    reseller: String,
    brand: crate::branding::Brand,
}

/// The host a request was sent to, from its `Host` header, as
/// [`crate::db::resellers::check_host`] tidies it (the port
/// dropped); `None` when there is none or it is not a host name.
fn request_host(header: Option<&str>) -> Option<String> {
    let raw = header?.trim();
    // `[::1]:8080` and other literal addresses are no reseller's name.
    let name =
        raw.rsplit_once(':').map_or(raw, |(h, port)| if port.bytes().all(|b| b.is_ascii_digit()) { h } else { raw });
    crate::db::resellers::check_host(name).ok().filter(|h| !h.is_empty())
}

/// The brand of reseller `name` for its sign-in pages, if it set one; with no name, that of the
/// reseller whose sign-in host the request was sent to (any other name or host, or none: the
/// provider's, without saying whether such a reseller exists).
async fn login_brand(state: &AppState, name: &str, headers: &HeaderMap) -> Option<LoginBrand> {
    let r = if name.is_empty() {
        let host = headers.get(axum::http::header::HOST).and_then(|h| h.to_str().ok());
        let host = request_host(host)?;
        state.db().reseller_by_host(&host).await.ok()??
    } else if crate::db::accounts::valid_name(name) {
        state.db().reseller(name).await.ok()?
    } else {
        return None;
    };
    let brand = crate::branding::of_reseller(state.db(), r.id).await?;
    Some(LoginBrand { reseller: r.name, brand })
}

/// `GET /login`.
pub(super) async fn login_form(
    State(state): State<AppState>,
    headers: HeaderMap,
    axum::extract::Query(q): axum::extract::Query<LoginQuery>,
) -> Response {
    if session(&state, &headers).await.is_ok() {
        return Redirect::to("/").into_response();
    }
    let notice = match q.why.as_str() {
        "expired" => Some("Your session has ended. Sign in again to go on where you were."),
        "signed-out" => Some("You are signed out."),
        _ => None,
    };
    let brand = login_brand(&state, &q.reseller, &headers).await;
    login_page(StatusCode::OK, None, notice, &q.next, brand.as_ref())
}

/// The sign-in context's brand part: a reseller's brand and name, or nothing (the provider's).
fn brand_ctx(brand: Option<&LoginBrand>) -> minijinja::Value {
    match brand {
        Some(b) => context! { brand => &b.brand, reseller => &b.reseller },
        None => context! {},
    }
}

fn login_page(
    status: StatusCode,
    error: Option<&str>,
    notice: Option<&str>,
    next: &str,
    brand: Option<&LoginBrand>,
) -> Response {
    let login_csrf = crate::db::accounts::new_token();
    let next = super::safe_next(next).unwrap_or("");
    let ctx = context! { login_csrf => &login_csrf, error, notice, next, ..brand_ctx(brand) };
    let mut resp = render(status, "login.html", ctx);
    super::set_cookie(&mut resp, LOGIN_COOKIE, &login_csrf, 3600);
    resp
}

/// The sign-in form.
#[derive(Deserialize)]
pub(super) struct LoginForm {
    user: String,
    password: String,
    csrf: String,
    /// The page to return to.
    #[serde(default)]
    next: String,
    /// The reseller whose sign-in page this was.
    #[serde(default)]
    reseller: String,
}

/// `POST /login`.
pub(super) async fn login(
    State(state): State<AppState>,
    axum::Extension(client): axum::Extension<crate::routes::ClientAddr>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    let brand = login_brand(&state, &f.reseller, &headers).await;
    let brand = brand.as_ref();
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or("");
    if expected.is_empty() || blake3::hash(expected.as_bytes()) != blake3::hash(f.csrf.as_bytes()) {
        return login_page(
            StatusCode::FORBIDDEN,
            Some("The sign-in form expired. Please try again."),
            None,
            &f.next,
            brand,
        );
    }
    let actor = format!("user:{}", f.user);
    let audit = |outcome: &'static str, detail: &'static str, tenant_id: Option<i64>| {
        let state = state.clone();
        let (actor, user) = (actor.clone(), f.user.clone());
        async move {
            let e = NewAudit {
                actor: &actor,
                tenant_id,
                action: "login.web",
                target: &user,
                outcome,
                detail,
                request_id: "web",
            };
            if let Err(err) = state.db().audit(e).await {
                tracing::error!("audit: {err}");
            }
        }
    };
    let (outcome, worth_auditing) = match crate::signin::sign_in(&state, &f.user, &f.password, client.0).await {
        Ok(attempt) => (attempt.outcome, attempt.audit),
        Err(e) => return db_error(None, e),
    };
    match outcome {
        LoginOutcome::Ok(user) => {
            match state.db().totp_enabled(user.id).await {
                Ok(false) => {}
                Ok(true) => {
                    // The password was right; the session waits for the second factor.
                    return match state.db().create_challenge(user.id).await {
                        Ok(challenge) => {
                            audit("ok", "password accepted, code asked", None).await;
                            let next = super::safe_next(&f.next).unwrap_or("");
                            let mut resp = render(
                                StatusCode::OK,
                                "login_code.html",
                                context! { challenge, next, ..brand_ctx(brand) },
                            );
                            set_cookie(&mut resp, LOGIN_COOKIE, "", 0);
                            resp
                        }
                        Err(e) => db_error(None, e),
                    };
                }
                Err(e) => return db_error(None, e),
            }
            start_session(&state, user.id, &user.tenant, &f.next).await
        }
        LoginOutcome::BadCredentials => {
            audit("denied", "wrong user or password", None).await;
            login_page(StatusCode::UNAUTHORIZED, Some("Wrong user name or password."), None, &f.next, brand)
        }
        LoginOutcome::Locked { until } => {
            if worth_auditing {
                audit("denied", "locked or throttled", None).await;
            }
            login_page(
                StatusCode::TOO_MANY_REQUESTS,
                Some(&format!(
                    "Too many failed sign-ins for this user name or from your address: try again after {} UTC.",
                    date(until)
                )),
                None,
                &f.next,
                brand,
            )
        }
        LoginOutcome::Disabled => {
            audit("denied", "account disabled", None).await;
            login_page(
                StatusCode::FORBIDDEN,
                Some("This account is disabled. Ask an administrator."),
                None,
                &f.next,
                brand,
            )
        }
    }
}

/// Signs a user in: a session token in the cookie, then the page asked for before (`next`, if
/// it is one of this site's) or the start page.
async fn start_session(state: &AppState, user_id: i64, tenant: &Option<String>, next: &str) -> Response {
    let (token, _) = match state.db().create_user_token(user_id, "web session", SESSION_DAYS).await {
        Ok(t) => t,
        Err(e) => return db_error(None, e),
    };
    let tenant_id = match tenant {
        Some(t) => state.db().tenant(t).await.ok().map(|t| t.id),
        None => None,
    };
    let name = state.db().user_name(user_id).await.unwrap_or_default();
    let e = NewAudit {
        actor: &format!("user:{name}"),
        tenant_id,
        action: "login.web",
        target: &name,
        outcome: "ok",
        detail: "session started",
        request_id: "web",
    };
    state.db().record(e).await;
    let mut resp = Redirect::to(super::safe_next(next).unwrap_or("/")).into_response();
    set_cookie(&mut resp, SESSION_COOKIE, &token, SESSION_DAYS * 86_400);
    set_cookie(&mut resp, LOGIN_COOKIE, "", 0);
    // Remember whose brand this user sees, for the sign-in page after the session ends.
    match brand_of_user(state, &token, tenant_id).await {
        Some(reseller) => set_cookie(&mut resp, BRAND_COOKIE, &reseller, BRAND_COOKIE_DAYS * 86_400),
        None => set_cookie(&mut resp, BRAND_COOKIE, "", 0),
    }
    resp
}

/// The reseller whose brand the holder of `token` sees (a reseller's admin: its own; a user of
/// tenant `tenant_id`: the tenant's reseller), by short name; `None`: the provider's.
async fn brand_of_user(state: &AppState, token: &str, tenant_id: Option<i64>) -> Option<String> {
    let p = state.db().authenticate(token).await.ok().flatten()?;
    match (reseller_of(&p), tenant_id) {
        (Some(r), _) => state.db().reseller_by_id(r).await.ok().map(|r| r.name),
        (None, Some(t)) => state.db().tenant_by_id(t).await.ok().and_then(|t| t.reseller),
        (None, None) => None,
    }
}

/// The second sign-in step.
#[derive(Deserialize)]
pub(super) struct CodeForm {
    challenge: String,
    code: String,
    /// The page to return to.
    #[serde(default)]
    next: String,
    /// The reseller whose sign-in page this was.
    #[serde(default)]
    reseller: String,
}

/// `POST /login/code`: the one-time code after the password. The challenge token (from the
/// password step, valid 5 minutes) stands in for a CSRF token.
pub(super) async fn login_code(State(state): State<AppState>, headers: HeaderMap, Form(f): Form<CodeForm>) -> Response {
    let brand = login_brand(&state, &f.reseller, &headers).await;
    let brand = brand.as_ref();
    let user_id = match state.db().challenge_user(&f.challenge).await {
        Ok(Some(u)) => u,
        Ok(None) => {
            return login_page(
                StatusCode::UNAUTHORIZED,
                Some("The sign-in took too long. Please start again."),
                None,
                &f.next,
                brand,
            )
        }
        Err(e) => return db_error(None, e),
    };
    let name = state.db().user_name(user_id).await.unwrap_or_default();
    match state.db().check_second_factor(user_id, &f.code).await {
        Ok(true) => {
            let _ = state.db().end_challenge(&f.challenge).await;
            let tenant = state.db().user(&name).await.ok().and_then(|u| u.tenant);
            start_session(&state, user_id, &tenant, &f.next).await
        }
        Ok(false) => {
            let e = NewAudit {
                actor: &format!("user:{name}"),
                tenant_id: None,
                action: "login.web",
                target: &name,
                outcome: "denied",
                detail: "wrong one-time code",
                request_id: "web",
            };
            state.db().record(e).await;
            let mut resp = render(
                StatusCode::UNAUTHORIZED,
                "login_code.html",
                context! {
                    challenge => f.challenge, error => "That code is not right (or was already used). Try the next one.",
                    next => super::safe_next(&f.next).unwrap_or(""), ..brand_ctx(brand)
                },
            );
            resp.headers_mut().insert(header::CACHE_CONTROL, "no-store".parse().expect("static header"));
            resp
        }
        Err(e) => db_error(None, e),
    }
}

/// `GET /account`.
pub(super) async fn account(State(state): State<AppState>, headers: HeaderMap) -> Page {
    let s = session(&state, &headers).await?;
    let uid = s.principal.user_id.unwrap_or(0);
    let enabled = state.db().totp_enabled(uid).await.map_err(|e| db_error(Some(&s), e))?;
    Ok(render(StatusCode::OK, "account.html", s.ctx(context! { enabled })))
}

/// `POST /account/totp/begin`: a new secret, shown as a QR code.
pub(super) async fn totp_begin(State(state): State<AppState>, headers: HeaderMap, Form(f): Form<CsrfForm>) -> Page {
    let s = session(&state, &headers).await?;
    check_csrf(&s, &f.csrf)?;
    let uid = s.principal.user_id.unwrap_or(0);
    let secret = state.db().begin_totp(uid).await.map_err(|e| db_error(Some(&s), e))?;
    let qr = crate::totp::qr_svg(&crate::totp::uri(&secret, &s.me.name, "arca"));
    Ok(render(StatusCode::OK, "account.html", s.ctx(context! { secret, qr })))
}

/// A form with a one-time code.
#[derive(Deserialize)]
pub(super) struct TotpForm {
    csrf: String,
    code: String,
}

/// `POST /account/totp/confirm`: turns two-factor sign-in on and shows the recovery codes once.
pub(super) async fn totp_confirm(State(state): State<AppState>, headers: HeaderMap, Form(f): Form<TotpForm>) -> Page {
    let s = session(&state, &headers).await?;
    check_csrf(&s, &f.csrf)?;
    let uid = s.principal.user_id.unwrap_or(0);
    let recovery = state.db().confirm_totp(uid, &f.code).await.map_err(|e| db_error(Some(&s), e))?;
    s.audit(&state, s.principal.tenant_id, "user.totp.enable", &s.me.name, "ok", "web").await;
    Ok(render(StatusCode::OK, "account.html", s.ctx(context! { recovery, enabled => true })))
}

/// `POST /account/totp/disable`: needs a current code.
pub(super) async fn totp_disable(State(state): State<AppState>, headers: HeaderMap, Form(f): Form<TotpForm>) -> Page {
    let s = session(&state, &headers).await?;
    check_csrf(&s, &f.csrf)?;
    let uid = s.principal.user_id.unwrap_or(0);
    if !state.db().check_second_factor(uid, &f.code).await.map_err(|e| db_error(Some(&s), e))? {
        s.audit(&state, s.principal.tenant_id, "user.totp.disable", &s.me.name, "denied", "wrong code").await;
        return Err(message(
            StatusCode::FORBIDDEN,
            "Not done",
            "That code is not right; two-factor sign-in stays on.",
            Some(&s),
        ));
    }
    state.db().disable_totp(uid).await.map_err(|e| db_error(Some(&s), e))?;
    s.audit(&state, s.principal.tenant_id, "user.totp.disable", &s.me.name, "ok", "web").await;
    Ok(Redirect::to("/account").into_response())
}

/// `POST /account/totp/recovery`: new recovery codes (the old ones stop working); needs a
/// current code, as turning two-factor sign-in off does.
pub(super) async fn new_recovery_codes(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<TotpForm>,
) -> Page {
    let s = session(&state, &headers).await?;
    check_csrf(&s, &f.csrf)?;
    let uid = s.principal.user_id.unwrap_or(0);
    if !state.db().check_second_factor(uid, &f.code).await.map_err(|e| db_error(Some(&s), e))? {
        s.audit(&state, s.principal.tenant_id, "user.recovery-codes", &s.me.name, "denied", "wrong code").await;
        let error = "That code is not right; your recovery codes stay as they were.";
        return Ok(render(StatusCode::FORBIDDEN, "account.html", s.ctx(context! { enabled => true, error })));
    }
    let recovery = state.db().new_recovery_codes(uid).await.map_err(|e| db_error(Some(&s), e))?;
    s.audit(&state, s.principal.tenant_id, "user.recovery-codes", &s.me.name, "ok", "web").await;
    Ok(render(StatusCode::OK, "account.html", s.ctx(context! { recovery, enabled => true, renewed => true })))
}

/// `POST /account/signout-everywhere`: revokes every token of the user (sessions and API tokens).
pub(super) async fn signout_everywhere(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Page {
    let s = session(&state, &headers).await?;
    check_csrf(&s, &f.csrf)?;
    let uid = s.principal.user_id.unwrap_or(0);
    let n = state.db().revoke_user_tokens(uid).await.map_err(|e| db_error(Some(&s), e))?;
    state.vault().forget_user(uid);
    s.audit(&state, s.principal.tenant_id, "user.signout-everywhere", &s.me.name, "ok", &format!("{n} tokens")).await;
    // Back to the sign-in page in the brand the user saw.
    let to = match &s.brand {
        Some((reseller, _)) => format!("/login?why=signed-out&reseller={reseller}"),
        None => "/login?why=signed-out".to_string(),
    };
    let mut resp = Redirect::to(&to).into_response();
    set_cookie(&mut resp, SESSION_COOKIE, "", 0);
    Ok(resp)
}

/// A form with only its CSRF token.
#[derive(Deserialize)]
pub(super) struct CsrfForm {
    pub(super) csrf: String,
}

/// `POST /logout`: ends the session (its token is revoked, not just forgotten by the browser).
pub(super) async fn logout(State(state): State<AppState>, headers: HeaderMap, Form(f): Form<CsrfForm>) -> Page {
    let s = session(&state, &headers).await?;
    check_csrf(&s, &f.csrf)?;
    state.db().revoke_token(s.principal.token_id).await.map_err(|e| db_error(Some(&s), e))?;
    state.vault().forget_session(&s.vault_key);
    // Back to the sign-in page in the brand the user saw.
    let to = match &s.brand {
        Some((reseller, _)) => format!("/login?why=signed-out&reseller={reseller}"),
        None => "/login?why=signed-out".to_string(),
    };
    let mut resp = Redirect::to(&to).into_response();
    set_cookie(&mut resp, SESSION_COOKIE, "", 0);
    Ok(resp)
}

#[derive(Serialize)]
struct TenantRow {
    name: String,
    display_name: String,
    plan: Option<String>,
    stored: String,
    quota: String,
    status: String,
    created: String,
}

fn quota_text(bytes: i64) -> String {
    if bytes == 0 {
        "unlimited".into()
    } else {
        human(bytes)
    }
}

fn status_text(t: &Tenant) -> String {
    if t.suspended {
        "suspended".into()
    } else if t.hard_quota_bytes > 0 && t.stored_bytes >= t.hard_quota_bytes - t.hard_quota_bytes / 10 {
        "near its hard quota".into()
    } else if t.soft_quota_bytes > 0 && t.stored_bytes > t.soft_quota_bytes {
        "over its soft quota".into()
    } else {
        "active".into()
    }
}

/// How many "needs attention" lines the dashboard shows (the rest are counted, with a link).
const ATTENTION_LINES: usize = 20;

/// `GET /console`: the provider's dashboard, or a reseller's over its own tenants.
pub(super) async fn console(State(state): State<AppState>, headers: HeaderMap) -> Page {
    let s = session(&state, &headers).await?;
    let reseller = reseller_of(&s.principal);
    if !is_staff(&s.principal) && reseller.is_none() {
        return Err(forbidden(&s, "see the provider console"));
    }
    let db = state.db();
    let err = |e| db_error(Some(&s), e);
    let (stored, logical, tenant_count) = db.storage_totals(reseller).await.map_err(err)?;
    let today = chrono::Utc::now().date_naive();
    // A reseller's dashboard counts its own tenants only.
    let mine: Option<std::collections::HashSet<String>> = match reseller {
        Some(r) => Some(db.tenants_of_reseller(r).await.map_err(err)?.into_iter().map(|t| t.name).collect()),
        None => None,
    };
    let in_scope = |tenant: &str| mine.as_ref().is_none_or(|m| m.contains(tenant));
    // Every day of the last 30 has its slot, with or without traffic.
    let days = chart::last_days(today, 30);
    let of = reseller.map_or(crate::db::usage::MeteringOf::All, crate::db::usage::MeteringOf::Reseller);
    let totals = db.daily_totals(of, days[0], today).await.map_err(err)?;
    let ingress: Vec<i64> = totals.iter().map(|t| t.ingress).collect();
    let egress: Vec<i64> = totals.iter().map(|t| t.egress).collect();
    let stored_days: Vec<i64> = totals.iter().map(|t| t.stored).collect();
    let peak = ingress.iter().chain(egress.iter()).copied().max().unwrap_or(0);
    let traffic = [
        chart::Series { class: "in", label: "uploaded", values: &ingress },
        chart::Series { class: "out", label: "downloaded", values: &egress },
    ];
    let stored_series = [chart::Series { class: "in", label: "stored", values: &stored_days }];
    let runs = if reseller.is_none() { db.scrub_runs(1).await.map_err(err)? } else { Vec::new() };
    let scrub = match runs.first() {
        None => "never".to_string(),
        Some(r) if r.state == "running" => "running".to_string(),
        Some(r) => format!("{}, {} damaged", date(r.finished_at.max(r.started_at)), r.damaged),
    };
    let needing = TenantList {
        search: None,
        status: TenantStatus::NeedsAttention,
        sort: TenantSort::Name,
        descending: false,
        offset: 0,
        limit: ATTENTION_LINES as i64,
        reseller,
    };
    let (needing, needing_total) = db.tenant_list(&needing).await.map_err(err)?;
    let mut attention: Vec<String> = needing
        .iter()
        .map(|t| {
            format!(
                "{} is {} ({} of {})",
                t.name,
                status_text(t),
                human(t.stored_bytes),
                quota_text(t.hard_quota_bytes)
            )
        })
        .collect();
    let mut more_devices = 0usize;
    for d in db.device_health(None).await.map_err(err)?.into_iter().filter(|d| in_scope(&d.tenant)) {
        let line = match d.status.as_str() {
            "failing" => format!(
                "device {} of {} failed its last backup: {}",
                d.device,
                d.tenant,
                super::failure_text(d.last_failure.lines().next().unwrap_or(""))
            ),
            "overdue" => format!(
                "device {} of {} is overdue (every {} h; last backup {})",
                d.device,
                d.tenant,
                d.backup_every_hours,
                date(d.last_backup_at)
            ),
            _ => continue,
        };
        if attention.len() < 2 * ATTENTION_LINES {
            attention.push(line);
        } else {
            more_devices += 1;
        }
    }
    if let Some(r) = runs.first().filter(|r| r.damaged > 0) {
        attention.push(format!("the last scrub found {} damaged objects (see `arca admin scrub`)", r.damaged));
    }
    let more_tenants = (needing_total as usize).saturating_sub(needing.len());
    Ok(render(
        StatusCode::OK,
        "console.html",
        s.ctx(context! {
            tenant_count, stored => human(stored), logical => human(logical), scrub,
            chart => chart::bar_chart(&days, &traffic, &[], "bytes uploaded and downloaded per day, last 30 days"),
            chart_table => chart::data_table(&days, &traffic),
            stored_chart => chart::bar_chart(&days, &stored_series, &[], "bytes stored at the end of each day, last 30 days"),
            stored_table => chart::data_table(&days, &stored_series),
            peak => human(peak), peak_bytes => peak, attention,
            more_tenants, more_devices,
        }),
    ))
}

/// The tenant list's sort keys (the first is the default order).
const TENANT_SORTS: &[&str] = &["name", "display", "plan", "stored", "quota", "created"];

/// `GET /console/tenants`: every tenant, searched, filtered by state, sorted and paged in the
/// database; the new-tenant form.
pub(super) async fn tenants(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Page {
    let s = session(&state, &headers).await?;
    tenants_page(&state, &s, &params, None).await
}

/// The tenant list, with a refused new-tenant form's message and what was typed in it.
async fn tenants_page(
    state: &AppState,
    s: &Session,
    params: &HashMap<String, String>,
    refused: Option<(String, &NewTenantForm)>,
) -> Page {
    let reseller = reseller_of(&s.principal);
    if !is_staff(&s.principal) && reseller.is_none() {
        return Err(forbidden(s, "see the provider's tenants"));
    }
    let list = Listing::new("/console/tenants", "", params, TENANT_SORTS, false);
    let status = params
        .get("status")
        .map(String::as_str)
        .filter(|k| matches!(*k, "active" | "suspended" | "attention"))
        .unwrap_or_default();
    let query = TenantList {
        search: list.search().map(str::to_string),
        status: match status {
            "active" => TenantStatus::Active,
            "suspended" => TenantStatus::Suspended,
            "attention" => TenantStatus::NeedsAttention,
            _ => TenantStatus::Any,
        },
        sort: match list.sort.as_str() {
            "display" => TenantSort::DisplayName,
            "plan" => TenantSort::Plan,
            "stored" => TenantSort::Stored,
            "quota" => TenantSort::Quota,
            "created" => TenantSort::Created,
            _ => TenantSort::Name,
        },
        descending: list.desc,
        offset: list.offset(),
        limit: PAGE_SIZE,
        reseller,
    };
    let db = state.db();
    let (mut rows, mut total) = db.tenant_list(&query).await.map_err(|e| db_error(Some(s), e))?;
    // Past the last page (a stale link): show the last one.
    if rows.is_empty() && total > 0 && query.offset > 0 {
        let last = TenantList { offset: (total - 1) / PAGE_SIZE * PAGE_SIZE, ..query.clone() };
        (rows, total) = db.tenant_list(&last).await.map_err(|e| db_error(Some(s), e))?;
    }
    let view = list.view(total, rows.len());
    let rows: Vec<TenantRow> = rows
        .iter()
        .map(|t| TenantRow {
            name: t.name.clone(),
            display_name: t.display_name.clone(),
            plan: t.plan.clone(),
            stored: human(t.stored_bytes),
            quota: quota_text(t.hard_quota_bytes),
            status: status_text(t),
            created: date(t.created_at),
        })
        .collect();
    let status_links: Vec<_> =
        [("", "all"), ("active", "active"), ("suspended", "suspended"), ("attention", "needing attention")]
            .into_iter()
            .map(|(key, label)| {
                let mut href = String::from("/console/tenants");
                let mut sep = '?';
                if !key.is_empty() {
                    href += &format!("?status={key}");
                    sep = '&';
                }
                if let Some(q) = list.search() {
                    href += &format!("{sep}q={}", super::listing::encode(q));
                }
                context! { key, label, href, current => key == status }
            })
            .collect();
    // A seller's new tenants go on its own plans.
    let plans =
        if s.me.seller { db.plans_sold_by(reseller).await.map_err(|e| db_error(Some(s), e))? } else { Vec::new() };
    let (status_code, form_error, typed) = match refused {
        Some((m, f)) => (
            StatusCode::BAD_REQUEST,
            Some(m),
            context! { name => f.name, display_name => f.display_name, plan => f.plan },
        ),
        None => (StatusCode::OK, None, context! {}),
    };
    Ok(render(
        status_code,
        "tenants.html",
        s.ctx(context! {
            tenants => rows, list => view, status, status_links, plans, max_display => crate::limits::MAX_DISPLAY_NAME,
            form_error, typed,
        }),
    ))
}

/// The new-tenant form.
#[derive(Deserialize)]
pub(super) struct NewTenantForm {
    csrf: String,
    name: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    plan: String,
}

/// `POST /console/tenants`.
pub(super) async fn create_tenant(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<NewTenantForm>,
) -> Page {
    let s = session(&state, &headers).await?;
    check_csrf(&s, &f.csrf)?;
    let plan = Some(f.plan.trim()).filter(|p| !p.is_empty());
    match service::create_tenant(&state, &s.caller(), f.name.trim(), &f.display_name, plan).await {
        Ok(t) => Ok(Redirect::to(&format!("/tenants/{}", t.name)).into_response()),
        Err(e) => {
            let why = inline_error(&s, e)?;
            tenants_page(&state, &s, &HashMap::new(), Some((why, &f))).await
        }
    }
}

/// A tenant the session may see, or the "not found" page (audited).
pub(super) async fn visible_tenant(state: &AppState, s: &Session, name: &str) -> Result<Tenant, Response> {
    match state.db().tenant(name).await {
        Ok(t) if can_view_tenant(&s.principal, &t) => Ok(t),
        Ok(_) => {
            s.audit(state, s.principal.tenant_id, "tenant.access", name, "denied", "web: tenant out of reach").await;
            Err(not_found(s, &format!("tenant named {name}")))
        }
        Err(DbError::NotFound(_)) => Err(not_found(s, &format!("tenant named {name}"))),
        Err(e) => Err(db_error(Some(s), e)),
    }
}

#[derive(Serialize)]
struct RepoRow {
    name: String,
    stored: String,
    logical: String,
    objects: i64,
    lock: String,
    /// `arca` or `restic`: which clients reach it, and how.
    format: &'static str,
}

fn lock_text(r: &Repository) -> String {
    format!("{} days{}", r.lock_days, if r.compliance { " (compliance)" } else { "" })
}

#[derive(Serialize)]
struct UserView {
    name: String,
    role: &'static str,
    created: String,
    status: String,
    disabled: bool,
    locked: bool,
    two_factor: bool,
}

#[derive(Serialize)]
struct DeviceRow {
    name: String,
    repo: String,
    created: String,
    seen: String,
    status: String,
    active: bool,
    last_backup: String,
    every_hours: i64,
    health: String,
    failure: String,
}

/// What the tenant page shows besides the tenant: a new device's token (once), or a refused
/// form's reason with what was typed in it (kept in the form).
pub(super) enum TenantExtra<'a> {
    /// Nothing more.
    Plain,
    /// A device just added.
    NewDevice { name: &'a str, repo: &'a str, token: &'a str },
    /// A form of the page (by its id) was refused.
    Refused { form: &'static str, error: String, typed: minijinja::Value },
}

/// The tenant page again with a refused form: the reason beside the form, what was typed in it.
/// Refusals a form cannot mend (not allowed, server failures) get their own page instead.
async fn refused_on_tenant_page(
    state: &AppState,
    headers: &HeaderMap,
    s: &Session,
    t: &Tenant,
    form: &'static str,
    e: ApiError,
    typed: minijinja::Value,
) -> Page {
    let error = inline_error(s, e)?;
    tenant_page(state, headers, s, t, &HashMap::new(), TenantExtra::Refused { form, error, typed }).await
}

/// The tenant page's device list's sort keys.
const DEVICE_SORTS: &[&str] = &["name", "repo", "last_backup", "health", "seen", "created"];
/// The tenant page's user list's sort keys.
const USER_SORTS: &[&str] = &["name", "role", "created", "status"];

/// The tenant page with an optional freshly added device.
async fn tenant_page(
    state: &AppState,
    headers: &HeaderMap,
    s: &Session,
    t: &Tenant,
    params: &HashMap<String, String>,
    extra: TenantExtra<'_>,
) -> Page {
    let err = |e| db_error(Some(s), e);
    let path = format!("/tenants/{}", t.name);
    let repos = state.db().repositories(Some(t.id)).await.map_err(err)?;
    let devices = state.db().devices(Some(t.id)).await.map_err(err)?;
    let health: std::collections::HashMap<String, crate::db::health::DeviceHealth> = state
        .db()
        .device_health(Some(t.id))
        .await
        .map_err(err)?
        .into_iter()
        .filter(|h| h.status != "revoked")
        .map(|h| (h.device.clone(), h))
        .collect();
    let repo_rows: Vec<RepoRow> = repos
        .iter()
        .map(|r| RepoRow {
            name: r.name.clone(),
            stored: human(r.stored_bytes),
            logical: human(r.logical_bytes),
            objects: r.object_count,
            lock: lock_text(r),
            format: r.format.as_str(),
        })
        .collect();
    // Devices and users are bounded per tenant (limits::MAX_DEVICES_PER_TENANT): read whole,
    // searched, sorted and paged here.
    let device_list = Listing::new(&path, "devices_", params, DEVICE_SORTS, false);
    let mut devices: Vec<_> = devices.into_iter().filter(|d| device_list.matches(&[&d.name, &d.repo])).collect();
    match device_list.sort.as_str() {
        "repo" => device_list.sort_by(&mut devices, |d| (d.repo.clone(), d.name.clone())),
        "seen" => device_list.sort_by(&mut devices, |d| d.last_seen_at),
        "created" => device_list.sort_by(&mut devices, |d| d.created_at),
        "last_backup" => device_list.sort_by(&mut devices, |d| health.get(&d.name).map_or(0, |h| h.last_backup_at)),
        "health" => device_list.sort_by(&mut devices, |d| {
            (d.revoked_at > 0, health.get(&d.name).map_or(String::new(), |h| h.status.clone()), d.name.clone())
        }),
        _ => device_list.sort_by(&mut devices, |d| (d.name.clone(), d.id)),
    }
    let (devices, device_view) = device_list.page_of(devices);
    let device_rows: Vec<DeviceRow> = devices
        .iter()
        .map(|d| DeviceRow {
            name: d.name.clone(),
            repo: d.repo.clone(),
            created: date(d.created_at),
            seen: date(d.last_seen_at),
            status: if d.revoked_at > 0 { format!("revoked {}", date(d.revoked_at)) } else { "active".into() },
            active: d.revoked_at == 0,
            last_backup: health
                .get(&d.name)
                .filter(|_| d.revoked_at == 0)
                .map_or("-".into(), |h| date(h.last_backup_at)),
            every_hours: health.get(&d.name).map_or(0, |h| h.backup_every_hours),
            health: match health.get(&d.name) {
                Some(h) if d.revoked_at == 0 => h.status.clone(),
                _ => "revoked".into(),
            },
            failure: health
                .get(&d.name)
                .filter(|h| h.status == "failing")
                .map_or(String::new(), |h| super::failure_text(&h.last_failure)),
        })
        .collect();
    let user_list = Listing::new(&path, "users_", params, USER_SORTS, false);
    let mut users: Vec<_> = state
        .db()
        .users(Some(t.id))
        .await
        .map_err(err)?
        .into_iter()
        .filter(|u| user_list.matches(&[&u.name]))
        .collect();
    match user_list.sort.as_str() {
        "role" => user_list.sort_by(&mut users, |u| (u.role.as_str(), u.name.clone())),
        "created" => user_list.sort_by(&mut users, |u| u.created_at),
        "status" => user_list.sort_by(&mut users, |u| (u.disabled, u.name.clone())),
        _ => user_list.sort_by(&mut users, |u| u.name.clone()),
    }
    let (users, user_view) = user_list.page_of(users);
    let users: Vec<UserView> = users
        .into_iter()
        .map(|u| UserView {
            status: super::staff::account_status(&u),
            disabled: u.disabled,
            locked: u.locked_until > crate::db::now(),
            two_factor: u.two_factor,
            role: u.role.as_str(),
            created: date(u.created_at),
            name: u.name,
        })
        .collect();
    // The plans the tenant's seller sells it, for whoever may change what it buys.
    let sell = can_sell_to(&s.principal, t);
    let plans = if sell { state.db().plans_sold_by(t.reseller_id).await.map_err(err)? } else { Vec::new() };
    let today = chrono::Utc::now().date_naive();
    let (stored_chart, stored_table) = stored_chart(state.db(), today, t).await.map_err(err)?;
    let (new_device, new_repo, new_token) = match &extra {
        TenantExtra::NewDevice { name, repo, token } => (Some(*name), Some(*repo), Some(*token)),
        _ => (None, None, None),
    };
    let (status, refused) = match extra {
        TenantExtra::Refused { form, error, typed } => (StatusCode::BAD_REQUEST, Some(context! { form, error, typed })),
        _ => (StatusCode::OK, None),
    };
    // A device of a restic repository is given restic's command line, not arca's.
    let base_url = public_base(state, headers);
    let (base_scheme, base_host) = base_url.split_once("://").unwrap_or(("http", base_url.as_str()));
    let new_repo_restic = new_repo.is_some_and(|n| repos.iter().any(|r| r.name == n && r.format == RepoFormat::Restic));
    Ok(render(
        status,
        "tenant.html",
        s.ctx(context! {
            stored_chart, stored_table, refused, max_reason => crate::limits::MAX_REASON, max_display => crate::limits::MAX_DISPLAY_NAME,
            tenant => t, stored => human(t.stored_bytes), quota => quota_text(t.hard_quota_bytes), status => status_text(t),
            repos => repo_rows, devices => device_rows, device_list => device_view, user_list => user_view, manage => can_manage_tenant(&s.principal, t), sell,
            new_device, new_repo, new_token, new_repo_restic, base_url, base_scheme, base_host, users, plans,
            hard_gb => crate::units::gb_input(t.hard_quota_bytes), soft_gb => crate::units::gb_input(t.soft_quota_bytes),
        }),
    ))
}

/// The server's address as clients should use it: `ARCA_PUBLIC_URL` when set (behind a proxy),
/// else the address this page was asked for.
pub(super) fn public_base(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(u) = std::env::var("ARCA_PUBLIC_URL").ok().filter(|u| !u.is_empty()) {
        return u.trim_end_matches('/').to_string();
    }
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("SERVER");
    format!("{}://{host}", if state.tls() { "https" } else { "http" })
}

/// `GET /tenants/{tenant}`.
pub(super) async fn tenant(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Page {
    let s = session(&state, &headers).await?;
    let t = visible_tenant(&state, &s, &name).await?;
    tenant_page(&state, &headers, &s, &t, &params, TenantExtra::Plain).await
}

/// The new-repository form.
#[derive(Deserialize)]
pub(super) struct NewRepoForm {
    csrf: String,
    name: String,
    /// `arca` (default) or `restic`.
    #[serde(default)]
    format: Option<String>,
}

/// `POST /tenants/{tenant}/repos`.
pub(super) async fn create_repo(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Form(f): Form<NewRepoForm>,
) -> Page {
    let s = session(&state, &headers).await?;
    check_csrf(&s, &f.csrf)?;
    let t = visible_tenant(&state, &s, &name).await?;
    let typed = context! { name => f.name, format => f.format };
    let format = match f.format.as_deref().map(str::trim).filter(|f| !f.is_empty()) {
        None => RepoFormat::Arca,
        Some(fmt) => match RepoFormat::parse(fmt) {
            Some(fmt) => fmt,
            None => {
                let e = ApiError::bad_request(format!("unknown repository format {fmt:?}: choose arca or restic"));
                return refused_on_tenant_page(&state, &headers, &s, &t, "new-repo", e, typed).await;
            }
        },
    };
    match service::create_repository(&state, &s.caller(), &t, f.name.trim(), None, format).await {
        Ok(_) => Ok(Redirect::to(&format!("/tenants/{}", t.name)).into_response()),
        Err(e) => refused_on_tenant_page(&state, &headers, &s, &t, "new-repo", e, typed).await,
    }
}

/// The new-user form.
#[derive(Deserialize)]
pub(super) struct NewUserForm {
    csrf: String,
    name: String,
    password: String,
    role: String,
}

/// `POST /tenants/{tenant}/users`: a tenant admin or user (by the provider admin or the tenant's
/// own admins).
pub(super) async fn create_user(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Form(f): Form<NewUserForm>,
) -> Page {
    let s = session(&state, &headers).await?;
    check_csrf(&s, &f.csrf)?;
    let t = visible_tenant(&state, &s, &name).await?;
    // The password is not sent back into the page.
    let typed = context! { name => f.name, role => f.role };
    let Some(role) = crate::db::accounts::Role::parse(&f.role) else {
        let e = ApiError::bad_request("A tenant's users are tenant admins or tenant users.");
        return refused_on_tenant_page(&state, &headers, &s, &t, "new-user", e, typed).await;
    };
    match service::create_tenant_user(&state, &s.caller(), &t, f.name.trim(), &f.password, role).await {
        Ok(_) => Ok(Redirect::to(&format!("/tenants/{}", t.name)).into_response()),
        Err(e) => refused_on_tenant_page(&state, &headers, &s, &t, "new-user", e, typed).await,
    }
}

/// The user-management forms: the action and, for a reset, the new password.
#[derive(Deserialize)]
pub(super) struct UserActionForm {
    pub(super) csrf: String,
    #[serde(default)]
    pub(super) password: String,
    /// "yes" when the confirmation box was ticked (disabling asks for it).
    #[serde(default)]
    pub(super) confirm: String,
}

/// A form that does something hard to undo: its CSRF token and the ticked confirmation box.
#[derive(Deserialize)]
pub(super) struct ConfirmForm {
    pub(super) csrf: String,
    #[serde(default)]
    pub(super) confirm: String,
}

/// The answer when a confirmation box was not ticked (the browser checks it first; this is for
/// forms sent some other way).
pub(super) fn unconfirmed(s: &Session, what: &str) -> Response {
    message(
        StatusCode::BAD_REQUEST,
        "Not confirmed",
        &format!("Nothing was done: tick the box beside the button to confirm that you want to {what}."),
        Some(s),
    )
}

/// `POST /tenants/{tenant}/users/{user}/{action}` with action `disable`, `enable`, `password`,
/// `unlock` or `reset-2fa`: a tenant's admins (and provider admins) manage its users
/// ([`crate::service::users`]). Disabling and turning off two-factor sign-in ask for the ticked
/// confirmation box.
pub(super) async fn user_action(
    State(state): State<AppState>,
    Path((name, user, action)): Path<(String, String, String)>,
    headers: HeaderMap,
    Form(f): Form<UserActionForm>,
) -> Page {
    let s = session(&state, &headers).await?;
    check_csrf(&s, &f.csrf)?;
    let t = visible_tenant(&state, &s, &name).await?;
    let back = format!("/tenants/{}", t.name);
    do_user_action(&state, &s, &user, &action, &f, &back).await
}

/// Runs a user action from a form and goes back to `back` (the tenant's or the staff page).
pub(super) async fn do_user_action(
    state: &AppState,
    s: &Session,
    user: &str,
    action: &str,
    f: &UserActionForm,
    back: &str,
) -> Page {
    let Some(act) = users_service::UserAction::parse(action, &f.password) else {
        return Err(not_found(s, "such action"));
    };
    let needs_confirm =
        matches!(act, users_service::UserAction::Disable | users_service::UserAction::ResetSecondFactor);
    if needs_confirm && f.confirm != "yes" {
        let what = match act {
            users_service::UserAction::Disable => format!("disable {user}"),
            _ => format!("turn off two-factor sign-in for {user}"),
        };
        return Err(unconfirmed(s, &what));
    }
    users_service::act_on_user(state, &s.caller(), user, &act).await.map_err(|e| service_error(s, e))?;
    Ok(Redirect::to(back).into_response())
}

/// The tenant settings form.
#[derive(Deserialize)]
pub(super) struct TenantSettingsForm {
    csrf: String,
    display_name: String,
    #[serde(default)]
    plan: String,
    #[serde(default)]
    hard_gb: String,
    #[serde(default)]
    soft_gb: String,
}

/// `POST /tenants/{tenant}/settings`: display name, plan and quotas (provider admins).
pub(super) async fn tenant_settings(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Form(f): Form<TenantSettingsForm>,
) -> Page {
    let s = session(&state, &headers).await?;
    check_csrf(&s, &f.csrf)?;
    let t = visible_tenant(&state, &s, &name).await?;
    let typed = context! {
        display_name => f.display_name, plan => f.plan, hard_gb => f.hard_gb.trim(), soft_gb => f.soft_gb.trim(),
    };
    let quotas = crate::units::parse_gb("hard quota", &f.hard_gb)
        .and_then(|hard| Ok((hard, crate::units::parse_gb("soft quota", &f.soft_gb)?)));
    let (hard, soft) = match quotas {
        Ok(q) => q,
        Err(why) => {
            let e = ApiError::bad_request(why);
            return refused_on_tenant_page(&state, &headers, &s, &t, "tenant-settings", e, typed).await;
        }
    };
    let plan = Some(f.plan.trim().to_string()).filter(|p| !p.is_empty());
    // A new plan brings its quotas; otherwise the quotas typed here apply.
    let change = crate::db::accounts::TenantChange {
        display_name: Some(f.display_name.clone()),
        hard_quota_bytes: plan.is_none().then_some(hard),
        soft_quota_bytes: plan.is_none().then_some(soft),
        plan,
        ..Default::default()
    };
    match service::update_tenant(&state, &s.caller(), &t, &change).await {
        Ok(_) => Ok(Redirect::to(&format!("/tenants/{}", t.name)).into_response()),
        Err(e) => refused_on_tenant_page(&state, &headers, &s, &t, "tenant-settings", e, typed).await,
    }
}

/// The suspend form: why (the customer reads it on every page) and the confirmation box.
#[derive(Deserialize)]
pub(super) struct SuspendForm {
    csrf: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    confirm: String,
}

/// `POST /tenants/{tenant}/suspend`: uploads are refused from now on (restores keep working);
/// the tenant's users see the reason in a banner on every page (provider admins).
pub(super) async fn suspend_tenant(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Form(f): Form<SuspendForm>,
) -> Page {
    let s = session(&state, &headers).await?;
    check_csrf(&s, &f.csrf)?;
    let t = visible_tenant(&state, &s, &name).await?;
    let typed = context! { reason => f.reason };
    let refusal = if f.reason.trim().is_empty() {
        Some("Say why: the customer reads the reason on every page of the portal.")
    } else if f.confirm != "yes" {
        Some("Nothing was done: tick the box to confirm that uploads are to be refused.")
    } else {
        None
    };
    if let Some(why) = refusal {
        return refused_on_tenant_page(&state, &headers, &s, &t, "suspend", ApiError::bad_request(why), typed).await;
    }
    let change = crate::db::accounts::TenantChange {
        suspended: Some(true),
        suspended_reason: Some(f.reason.clone()),
        ..Default::default()
    };
    match service::update_tenant(&state, &s.caller(), &t, &change).await {
        Ok(_) => Ok(Redirect::to(&format!("/tenants/{}", t.name)).into_response()),
        Err(e) => refused_on_tenant_page(&state, &headers, &s, &t, "suspend", e, typed).await,
    }
}

/// `POST /tenants/{tenant}/resume`: uploads are accepted again and the banner goes.
pub(super) async fn resume_tenant(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Form(f): Form<ConfirmForm>,
) -> Page {
    let s = session(&state, &headers).await?;
    check_csrf(&s, &f.csrf)?;
    let t = visible_tenant(&state, &s, &name).await?;
    if f.confirm != "yes" {
        return Err(unconfirmed(&s, &format!("resume {}", t.name)));
    }
    let change = crate::db::accounts::TenantChange { suspended: Some(false), ..Default::default() };
    match service::update_tenant(&state, &s.caller(), &t, &change).await {
        Ok(_) => Ok(Redirect::to(&format!("/tenants/{}", t.name)).into_response()),
        Err(e) => refused_on_tenant_page(&state, &headers, &s, &t, "resume", e, context! {}).await,
    }
}

/// The delete-tenant form: the tenant's short name typed again, and the confirmation box.
#[derive(Deserialize)]
pub(super) struct DeleteTenantForm {
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    confirm: String,
}

/// `POST /tenants/{tenant}/delete`: deletes a tenant without repositories (their data goes
/// first, each repository only once its retention lock allows), with its users and devices.
pub(super) async fn delete_tenant(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Form(f): Form<DeleteTenantForm>,
) -> Page {
    let s = session(&state, &headers).await?;
    check_csrf(&s, &f.csrf)?;
    let t = visible_tenant(&state, &s, &name).await?;
    if f.confirm != "yes" || f.name.trim() != t.name {
        let e = ApiError::bad_request(format!(
            "Nothing was deleted: type the tenant's short name ({}) and tick the box to confirm.",
            t.name
        ));
        return refused_on_tenant_page(&state, &headers, &s, &t, "delete-tenant", e, context! {}).await;
    }
    match service::delete_tenant(&state, &s.caller(), &t).await {
        Ok(()) => Ok(Redirect::to("/console/tenants").into_response()),
        Err(e) => refused_on_tenant_page(&state, &headers, &s, &t, "delete-tenant", e, context! {}).await,
    }
}

/// The alert addresses form.
#[derive(Deserialize)]
pub(super) struct AlertEmailForm {
    csrf: String,
    alert_email: String,
}

/// `POST /tenants/{tenant}/alert-email`: the tenant's admins (and provider admins) set the
/// customer's own addresses for its alerts.
pub(super) async fn set_alert_email(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Form(f): Form<AlertEmailForm>,
) -> Page {
    let s = session(&state, &headers).await?;
    check_csrf(&s, &f.csrf)?;
    let t = visible_tenant(&state, &s, &name).await?;
    let change = crate::db::accounts::TenantChange { alert_email: Some(f.alert_email.clone()), ..Default::default() };
    match service::update_tenant(&state, &s.caller(), &t, &change).await {
        Ok(_) => Ok(Redirect::to(&format!("/tenants/{}", t.name)).into_response()),
        Err(e) => {
            let typed = context! { alert_email => f.alert_email };
            refused_on_tenant_page(&state, &headers, &s, &t, "alert-email", e, typed).await
        }
    }
}

/// The new-device form.
#[derive(Deserialize)]
pub(super) struct NewDeviceForm {
    csrf: String,
    name: String,
    repo: String,
}

/// `POST /tenants/{tenant}/devices`: shows the new token once, on the answer page itself.
pub(super) async fn add_device(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Form(f): Form<NewDeviceForm>,
) -> Page {
    let s = session(&state, &headers).await?;
    check_csrf(&s, &f.csrf)?;
    let t = visible_tenant(&state, &s, &name).await?;
    let (d, token) = match service::create_device(&state, &s.caller(), &t, f.name.trim(), &f.repo).await {
        Ok(made) => made,
        Err(e) => {
            let typed = context! { name => f.name, repo => f.repo };
            return refused_on_tenant_page(&state, &headers, &s, &t, "new-device", e, typed).await;
        }
    };
    let extra = TenantExtra::NewDevice { name: &d.name, repo: &d.repo, token: &token };
    tenant_page(&state, &headers, &s, &t, &HashMap::new(), extra).await
}

/// `POST /tenants/{tenant}/devices/{device}/revoke`.
pub(super) async fn revoke_device(
    State(state): State<AppState>,
    Path((name, device)): Path<(String, String)>,
    headers: HeaderMap,
    Form(f): Form<ConfirmForm>,
) -> Page {
    let s = session(&state, &headers).await?;
    check_csrf(&s, &f.csrf)?;
    if f.confirm != "yes" {
        return Err(unconfirmed(&s, &format!("revoke device {device}")));
    }
    let t = visible_tenant(&state, &s, &name).await?;
    service::revoke_device(&state, &s.caller(), &t, &device).await.map_err(|e| service_error(&s, e))?;
    Ok(Redirect::to(&format!("/tenants/{}", t.name)).into_response())
}

#[derive(Serialize)]
struct SnapshotView {
    short: String,
    received: String,
    logical: String,
    packs: i64,
    new_data: String,
}

/// `GET /repos/{repo}`: a repository's snapshots as the server sees them.
pub(super) async fn repo(State(state): State<AppState>, Path(name): Path<String>, headers: HeaderMap) -> Page {
    let s = session(&state, &headers).await?;
    let r = visible_repository(&state, &s, &name).await?;
    let snaps = state.db().snapshot_rows(r.id, 500).await.map_err(|e| db_error(Some(&s), e))?;
    let rows: Vec<SnapshotView> = snaps
        .iter()
        .map(|x| SnapshotView {
            short: x.name[..8].to_string(),
            received: date(x.received_at),
            logical: human(x.logical_bytes),
            packs: x.packs,
            new_data: if x.new_packs == 0 {
                "nothing new".into()
            } else {
                format!("{} in {} new pack{}", human(x.new_bytes), x.new_packs, if x.new_packs == 1 { "" } else { "s" })
            },
        })
        .collect();
    let retention = state.db().retention_days(r.id).await.map_err(|e| db_error(Some(&s), e))?;
    Ok(render(
        StatusCode::OK,
        "repo.html",
        s.ctx(context! {
            repo => &r, stored => human(r.stored_bytes), logical => human(r.logical_bytes), lock => lock_text(&r),
            snapshots => rows, can_browse => crate::access::can_browse_repo(&s.principal, &r) && r.format == RepoFormat::Arca,
            restic => r.format == RepoFormat::Restic, base_url => public_base(&state, &headers),
            retention, can_set_retention => can_manage_tenant(&s.principal, &r),
        }),
    ))
}

/// The repository of the URL, if the session may see its tenant; "not found" (audited when it
/// exists) otherwise.
async fn visible_repository(state: &AppState, s: &Session, name: &str) -> Result<Repository, Response> {
    match state.db().find_repository(name).await {
        Ok(Some(r)) if can_view_tenant(&s.principal, &r) => Ok(r),
        Ok(Some(_)) => {
            s.audit(state, s.principal.tenant_id, "repo.access", name, "denied", "web: repository out of reach").await;
            Err(not_found(s, &format!("repository named {name}")))
        }
        Ok(None) => Err(not_found(s, &format!("repository named {name}"))),
        Err(e) => Err(db_error(Some(s), e)),
    }
}

/// The retention form.
#[derive(Deserialize)]
pub(super) struct RetentionForm {
    csrf: String,
    days: String,
}

/// `POST /repos/{repo}/retention`: the tenant's admins (and provider admins) set how long the
/// server keeps snapshots, within the plan's retention lock.
pub(super) async fn set_retention(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Form(f): Form<RetentionForm>,
) -> Page {
    let s = session(&state, &headers).await?;
    check_csrf(&s, &f.csrf)?;
    let r = visible_repository(&state, &s, &name).await?;
    let days = match f.days.trim().parse::<i64>() {
        Ok(d) => d,
        Err(_) => {
            return Err(message(
                StatusCode::BAD_REQUEST,
                "Not a number of days",
                "Give whole days; 0 keeps everything.",
                Some(&s),
            ))
        }
    };
    service::set_retention(&state, &s.caller(), &r, days).await.map_err(|e| match e.status() {
        StatusCode::BAD_REQUEST => message(StatusCode::BAD_REQUEST, "Retention not changed", e.message(), Some(&s)),
        _ => service_error(&s, e),
    })?;
    Ok(Redirect::to(&format!("/repos/{}", r.name)).into_response())
}

/// `?tenant=` of the usage pages.
#[derive(Deserialize)]
pub(super) struct UsageQuery {
    tenant: Option<String>,
}

/// The tenant whose usage the session may see (`None`: all, for staff).
async fn usage_scope(state: &AppState, s: &Session, q: &UsageQuery) -> Result<Option<Tenant>, Response> {
    match (q.tenant.as_deref().filter(|t| !t.is_empty()), &s.me.tenant) {
        (Some(t), _) => Ok(Some(visible_tenant(state, s, t).await?)),
        (None, _) if s.me.staff => Ok(None),
        (None, Some(own)) => Ok(Some(visible_tenant(state, s, &own.clone()).await?)),
        (None, None) => Err(forbidden(s, "see usage")),
    }
}

#[derive(Serialize)]
struct UsageView {
    day: String,
    tenant: String,
    repository: String,
    stored: String,
    stored_bytes: i64,
    logical: String,
    ingress: String,
    ingress_bytes: i64,
    egress: String,
}

/// `GET /usage`.
pub(super) async fn usage(State(state): State<AppState>, Query(q): Query<UsageQuery>, headers: HeaderMap) -> Page {
    let s = session(&state, &headers).await?;
    let scope = usage_scope(&state, &s, &q).await?;
    let today = chrono::Utc::now().date_naive();
    let rows = state
        .db()
        .usage(scope.as_ref().map(|t| t.id), today - chrono::Days::new(29), today)
        .await
        .map_err(|e| db_error(Some(&s), e))?;
    let view: Vec<UsageView> = rows
        .iter()
        .rev()
        .map(|r| UsageView {
            day: r.day.clone(),
            tenant: r.tenant.clone(),
            repository: r.repository.clone(),
            stored: human(r.stored_bytes),
            stored_bytes: r.stored_bytes,
            logical: human(r.logical_bytes),
            ingress: human(r.ingress_bytes),
            ingress_bytes: r.ingress_bytes,
            egress: human(r.egress_bytes),
        })
        .collect();
    // One tenant: its stored bytes per day against its quotas.
    let quota = match &scope {
        Some(t) => Some((t, stored_chart(state.db(), today, t).await.map_err(|e| db_error(Some(&s), e))?)),
        None => None,
    };
    let quota = quota.map(|(t, (chart, table))| {
        let used = if t.hard_quota_bytes > 0 {
            format!(
                "{:.0} % of {}",
                t.stored_bytes as f64 * 100.0 / t.hard_quota_bytes as f64,
                human(t.hard_quota_bytes)
            )
        } else {
            "no hard quota".to_string()
        };
        context! {
            chart, table,
            stored => human(t.stored_bytes), used,
            soft => if t.soft_quota_bytes > 0 { human(t.soft_quota_bytes) } else { "none".into() },
        }
    });
    Ok(render(StatusCode::OK, "usage.html", s.ctx(context! { rows => view, tenant => scope.map(|t| t.name), quota })))
}

/// A tenant's stored bytes per day over the 30 days ending `today`, against its quotas: the
/// chart and its figures (usage page and tenant page), summed by the database like the
/// dashboard's.
async fn stored_chart(
    db: &crate::db::Db,
    today: chrono::NaiveDate,
    t: &Tenant,
) -> Result<(String, String), crate::db::DbError> {
    let days = chart::last_days(today, 30);
    let totals = db.daily_totals(crate::db::usage::MeteringOf::Tenant(t.id), days[0], today).await?;
    let stored: Vec<i64> = totals.iter().map(|d| d.stored).collect();
    let series = [chart::Series { class: "in", label: "stored", values: &stored }];
    let limits = [
        chart::Limit { class: "soft", label: "soft quota", value: t.soft_quota_bytes },
        chart::Limit { class: "hard", label: "hard quota", value: t.hard_quota_bytes },
    ];
    let svg = chart::bar_chart(&days, &series, &limits, "bytes stored at the end of each day against the quota");
    Ok((svg, chart::data_table(&days, &series)))
}

/// `GET /usage.csv`: the same figures as CSV, for a billing system.
pub(super) async fn usage_csv(State(state): State<AppState>, Query(q): Query<UsageQuery>, headers: HeaderMap) -> Page {
    let s = session(&state, &headers).await?;
    let scope = usage_scope(&state, &s, &q).await?;
    let today = chrono::Utc::now().date_naive();
    let from = today - chrono::Days::new(29);
    let rows = state.db().usage(scope.as_ref().map(|t| t.id), from, today).await.map_err(|e| db_error(Some(&s), e))?;
    Ok(crate::routes::csv_download(&format!("arca-usage-{from}-{today}.csv"), crate::db::usage::to_csv(&rows)))
}

#[derive(Serialize)]
struct AuditView {
    id: i64,
    when: String,
    actor: String,
    tenant: Option<String>,
    action: String,
    target: String,
    outcome: String,
    detail: String,
}

/// Entries on one page of the audit log.
const AUDIT_PAGE: i64 = 100;

/// The audit search's parameters as a query string, with `extra` (a cursor) appended.
fn audit_href(path: &str, q: &audit_service::AuditSearch, extra: &str) -> String {
    let mut parts: Vec<String> = [
        ("tenant", &q.tenant),
        ("outcome", &q.outcome),
        ("action", &q.action),
        ("actor", &q.actor),
        ("text", &q.text),
        ("from", &q.from),
        ("to", &q.to),
    ]
    .iter()
    .filter(|(_, v)| !v.trim().is_empty())
    .map(|(k, v)| format!("{k}={}", super::listing::encode(v.trim())))
    .collect();
    if !extra.is_empty() {
        parts.push(extra.to_string());
    }
    if parts.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", parts.join("&"))
    }
}

/// `GET /console/audit`: the audit log, newest first, a hundred entries a page, searched by
/// tenant, outcome, action, actor, text and a range of days. Staff see every tenant's entries,
/// a tenant admin their own tenant's (the rules of [`audit_service`]).
pub(super) async fn audit(
    State(state): State<AppState>,
    Query(q): Query<audit_service::AuditSearch>,
    headers: HeaderMap,
) -> Page {
    let s = session(&state, &headers).await?;
    let (page, error) = match audit_service::search(&state, &s.caller(), &q, AUDIT_PAGE).await {
        Ok(p) => (p, None),
        Err(e) => {
            // A bad date keeps the form as typed and says what is wrong; other refusals are pages.
            let why = inline_error(&s, e)?;
            (audit_service::AuditPage { entries: Vec::new(), has_newer: false, has_older: false }, Some(why))
        }
    };
    let newer = page
        .entries
        .first()
        .filter(|_| page.has_newer)
        .map(|e| audit_href("/console/audit", &q, &format!("after={}", e.id)));
    let older = page
        .entries
        .last()
        .filter(|_| page.has_older)
        .map(|e| audit_href("/console/audit", &q, &format!("before={}", e.id)));
    let view: Vec<AuditView> = page
        .entries
        .into_iter()
        .map(|e| AuditView {
            id: e.id,
            when: date(e.at),
            actor: e.actor,
            tenant: e.tenant,
            action: e.action,
            target: e.target,
            outcome: e.outcome,
            detail: e.detail,
        })
        .collect();
    let status = if error.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    Ok(render(
        status,
        "audit.html",
        s.ctx(context! {
            entries => view, q => context! {
                tenant => q.tenant, outcome => q.outcome, action => q.action, actor => q.actor, text => q.text,
                from => q.from, to => q.to,
            },
            newer, older, csv => audit_href("/console/audit.csv", &q, ""), newest => audit_href("/console/audit", &q, ""),
            form_error => error, filtered => !audit_href("", &q, "").is_empty(),
        }),
    ))
}

/// `GET /console/audit.csv`: every entry the search matches, as CSV, streamed a thousand rows at
/// a time (a million entries never sit in memory).
pub(super) async fn audit_csv(
    State(state): State<AppState>,
    Query(q): Query<audit_service::AuditSearch>,
    headers: HeaderMap,
) -> Page {
    let s = session(&state, &headers).await?;
    let caller = s.caller();
    let filter = q.filter(&state, &caller).await.map_err(|e| service_error(&s, e))?;
    caller.audit(&state, filter.tenant_id, "audit.export", "audit log", "ok", &audit_href("", &q, "")).await;
    const CHUNK: i64 = 1000;
    let stream =
        futures_util::stream::unfold((Some(crate::db::audit::AuditCursor::Newest), true), move |(cursor, first)| {
            let (state, filter) = (state.clone(), filter.clone());
            async move {
                let cursor = cursor?;
                let rows = match state.db().audit_search(&filter, cursor, CHUNK).await {
                    Ok(r) => r,
                    Err(e) => {
                        // The download is cut short; the browser shows it failed.
                        tracing::error!("audit export: {e}");
                        return Some((Err(std::io::Error::other("the audit export failed")), (None, false)));
                    }
                };
                let next = (rows.len() as i64 == CHUNK)
                    .then(|| rows.last().map(|e| crate::db::audit::AuditCursor::Before(e.id)))
                    .flatten();
                let mut text = if first { audit_service::CSV_HEADER.to_string() } else { String::new() };
                text += &audit_service::csv_rows(&rows);
                if text.is_empty() {
                    return None;
                }
                Some((Ok::<_, std::io::Error>(axum::body::Bytes::from(text)), (next, false)))
            }
        });
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (header::CONTENT_DISPOSITION, "attachment; filename=\"arca-audit.csv\"".to_string()),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        axum::body::Body::from_stream(stream),
    )
        .into_response())
}

/// The one-time setup link's token.
#[derive(Deserialize)]
pub(super) struct SetupQuery {
    #[serde(default)]
    token: String,
}

fn setup_token_ok(state: &AppState, token: &str) -> bool {
    state.setup_token().is_some_and(|t| blake3::hash(t.as_bytes()) == blake3::hash(token.as_bytes()))
}

/// `GET /setup?token=…`: the first provider admin, from the link a new server prints.
pub(super) async fn setup_form(State(state): State<AppState>, Query(q): Query<SetupQuery>) -> Response {
    if !setup_token_ok(&state, &q.token) || state.db().has_provider_admin().await.unwrap_or(true) {
        return message(
            StatusCode::NOT_FOUND,
            "Nothing to set up",
            "This setup link is not valid (any more): the server is set up, or it was restarted and printed a new one.",
            None,
        );
    }
    render(
        StatusCode::OK,
        "setup.html",
        context! { token => q.token, min_len => crate::db::accounts::MIN_PASSWORD_LEN },
    )
}

/// The setup form.
#[derive(Deserialize)]
pub(super) struct SetupForm {
    token: String,
    user: String,
    password: String,
}

/// `POST /setup`. The link's token stands in for a CSRF token: only the operator who saw the
/// server's output knows it.
pub(super) async fn setup(State(state): State<AppState>, Form(f): Form<SetupForm>) -> Response {
    let audit = |outcome: &'static str, detail: String| {
        let state = state.clone();
        let user = f.user.clone();
        async move {
            let e = NewAudit {
                actor: "anonymous",
                tenant_id: None,
                action: "setup",
                target: &user,
                outcome,
                detail: &detail,
                request_id: "web",
            };
            state.db().record(e).await;
        }
    };
    if !setup_token_ok(&state, &f.token) {
        audit("denied", "web: wrong setup token".into()).await;
        return message(StatusCode::FORBIDDEN, "Not allowed", "This setup link is not valid.", None);
    }
    match state.db().has_provider_admin().await {
        Ok(false) => {}
        Ok(true) => {
            return message(StatusCode::CONFLICT, "Already set up", "This server already has an administrator.", None)
        }
        Err(e) => return db_error(None, e),
    }
    match state.db().create_user(f.user.trim(), &f.password, crate::db::accounts::Role::ProviderAdmin, None).await {
        Ok(u) => {
            audit("ok", "web: first provider admin".into()).await;
            message(
                StatusCode::CREATED,
                "Done",
                &format!("The administrator {} was created. Sign in now.", u.name),
                None,
            )
        }
        Err(e) => db_error(None, e),
    }
}

#[cfg(test)]
mod tests {
    use super::request_host;

    #[test]
    fn the_host_asked_for_is_a_tidy_host_name() {
        assert_eq!(request_host(Some("Backup.North.Example:8443")).as_deref(), Some("backup.north.example"));
        assert_eq!(request_host(Some("backup.north.example")).as_deref(), Some("backup.north.example"));
        assert_eq!(request_host(Some("[::1]:8080")), None);
        assert_eq!(request_host(Some("")), None);
        assert_eq!(request_host(None), None);
    }
}
