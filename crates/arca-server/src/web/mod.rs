//! The provider console and the customer portal: server-rendered pages, served by `arca server`
//! itself, with the templates and the stylesheet built into the binary. No JavaScript.
//!
//! Sign-in makes a session: a user token (the same kind `arca admin login` issues, labelled
//! `web session`, valid for a day) in an `HttpOnly`, `SameSite=Strict` cookie. Every form carries
//! a CSRF token derived from the session token (BLAKE3 key derivation), which a page of another
//! site cannot know; the login form uses a double-submit cookie. Every page checks the role on
//! the server with the same rules as the API ([`crate::access`]); a tenant out of reach is "not
//! found", and the attempt is audited. Templates escape everything a user typed (minijinja's
//! HTML auto-escaping).

// Handlers return `Result<Response, Response>`: the error *is* the page to show, and it is
// produced once per request, so its size does not matter.
#![allow(clippy::result_large_err)]

mod agents;
mod billing;
mod branding;
mod chart;
mod health;
mod listing;
mod pages;
mod plans;
mod resellers;
mod restore;
mod staff;

pub use restore::Vault;

use std::sync::OnceLock;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use minijinja::{context, Environment, Value};
use serde::Serialize;

use crate::db::accounts::{Principal, Role};
use crate::state::AppState;
use crate::units::human_bytes as human;

/// The session cookie.
const SESSION_COOKIE: &str = "arca_session";
/// The login form's double-submit cookie.
const LOGIN_COOKIE: &str = "arca_login";
/// The reseller whose brand the browser's last user saw (its short name, which its sign-in
/// address shows anyway), so a session that ended returns to that reseller's sign-in page.
const BRAND_COOKIE: &str = "arca_brand";
/// How long the brand cookie lasts: longer than any session.
const BRAND_COOKIE_DAYS: i64 = 400;
/// Days a web session lasts.
const SESSION_DAYS: i64 = 1;

/// The pages' routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(pages::home))
        .route("/static/arca.css", get(stylesheet))
        .route("/brand/logo", get(branding::logo))
        .route("/brand/logo/{reseller}", get(branding::reseller_logo))
        .route(
            "/console/branding",
            get(branding::page).post(branding::save).layer(axum::extract::DefaultBodyLimit::max(1 << 20)),
        )
        .route("/login", get(pages::login_form).post(pages::login))
        .route("/setup", get(pages::setup_form).post(pages::setup))
        .route("/login/code", post(pages::login_code))
        .route("/account", get(pages::account))
        .route("/account/totp/begin", post(pages::totp_begin))
        .route("/account/totp/confirm", post(pages::totp_confirm))
        .route("/account/totp/disable", post(pages::totp_disable))
        .route("/account/totp/recovery", post(pages::new_recovery_codes))
        .route("/console/staff", get(staff::staff).post(staff::create_staff))
        .route("/console/staff/{user}/{action}", post(staff::staff_action))
        .route("/account/signout-everywhere", post(pages::signout_everywhere))
        .route("/logout", post(pages::logout))
        .route("/console", get(pages::console))
        .route("/console/tenants", get(pages::tenants).post(pages::create_tenant))
        .route("/console/plans", get(plans::plans).post(plans::create_plan))
        .route("/console/plans/{plan}", post(plans::edit_plan))
        .route("/console/plans/{plan}/delete", post(plans::delete_plan))
        .route("/console/resellers", get(resellers::resellers).post(resellers::create))
        .route("/console/reseller", get(resellers::own))
        .route("/console/resellers/{reseller}", get(resellers::reseller).post(resellers::update))
        .route("/console/resellers/{reseller}/admins", post(resellers::add_admin))
        .route("/console/resellers/{reseller}/statement.csv", get(resellers::statement_csv))
        .route("/console/resellers/{reseller}/invoices", post(resellers::issue))
        .route("/console/resellers/{reseller}/invoices/{number}", get(resellers::invoice))
        .route("/console/audit", get(pages::audit))
        .route("/console/audit.csv", get(pages::audit_csv))
        .route("/console/billing", get(billing::billing))
        .route("/console/health", get(health::health))
        .route("/tenants/{tenant}/devices/{device}/schedule", post(health::set_schedule))
        .route("/console/billing.csv", get(billing::billing_csv))
        .route("/console/billing/{tenant}", get(billing::invoice))
        .route("/console/billing/{tenant}/issue", post(billing::issue))
        .route("/console/billing-settings", get(billing::settings).post(billing::save_settings))
        .route("/tenants/{tenant}/billing", get(billing::tenant_billing))
        .route("/tenants/{tenant}/invoices/{number}", get(billing::invoice_page))
        .route("/tenants/{tenant}", get(pages::tenant))
        .route("/tenants/{tenant}/repos", post(pages::create_repo))
        .route("/tenants/{tenant}/users", post(pages::create_user))
        .route("/tenants/{tenant}/users/{user}/{action}", post(pages::user_action))
        .route("/tenants/{tenant}/settings", post(pages::tenant_settings))
        .route("/tenants/{tenant}/suspend", post(pages::suspend_tenant))
        .route("/tenants/{tenant}/resume", post(pages::resume_tenant))
        .route("/tenants/{tenant}/delete", post(pages::delete_tenant))
        .route("/tenants/{tenant}/devices", post(pages::add_device))
        .route("/tenants/{tenant}/devices/{device}/revoke", post(pages::revoke_device))
        .route("/tenants/{tenant}/agents", get(agents::agents))
        .route("/tenants/{tenant}/agents/codes", post(agents::create_code))
        .route("/tenants/{tenant}/agents/plans", post(agents::save_plan))
        .route("/tenants/{tenant}/agents/plans/{plan}/delete", post(agents::delete_plan))
        .route("/tenants/{tenant}/agents/{device}/plan", post(agents::assign_plan))
        .route("/tenants/{tenant}/agents/{device}/{kind}", post(agents::job))
        .route("/repos/{repo}", get(pages::repo))
        .route("/repos/{repo}/retention", post(pages::set_retention))
        .route("/tenants/{tenant}/alert-email", post(pages::set_alert_email))
        .route("/repos/{repo}/restore", get(restore::restore))
        .route("/repos/{repo}/restore/unlock", post(restore::unlock))
        .route("/repos/{repo}/restore/lock", post(restore::lock))
        .route("/repos/{repo}/restore/recovery", post(restore::set_recovery))
        .route("/repos/{repo}/restore/{snap}/browse", get(restore::browse))
        .route("/repos/{repo}/restore/{snap}/browse/{*path}", get(restore::browse))
        .route("/repos/{repo}/restore/{snap}/download", get(restore::download))
        .route("/repos/{repo}/restore/{snap}/download/{*path}", get(restore::download))
        .route("/usage", get(pages::usage))
        .route("/usage.csv", get(pages::usage_csv))
        .layer(axum::middleware::from_fn(remember_requested))
}

tokio::task_local! {
    /// The page a GET request asked for (path and query), while it is handled: a request that
    /// must sign in first comes back to it.
    static REQUESTED: Option<String>;
}

async fn remember_requested(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let requested = (req.method() == axum::http::Method::GET)
        .then(|| req.uri().path_and_query().map(|p| p.as_str().to_string()))
        .flatten();
    REQUESTED.scope(requested, next.run(req)).await
}

/// `next` if it is a page of this site to go back to after signing in: a local path, not the
/// sign-in pages themselves (an absolute or `//` address would send the user elsewhere).
pub(crate) fn safe_next(next: &str) -> Option<&str> {
    let ok = next.starts_with('/')
        && !next.starts_with("//")
        && next.len() <= 2000
        && !next.chars().any(|c| c == '\\' || c.is_control())
        && !next.starts_with("/login")
        && !next.starts_with("/logout")
        && next != "/";
    ok.then_some(next)
}

/// An unknown address: a page for browsers (with a way back), the API's plain error for programs.
pub(crate) async fn no_page(
    axum::extract::State(state): axum::extract::State<AppState>,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Response {
    let browser = headers.get(header::ACCEPT).and_then(|a| a.to_str().ok()).is_some_and(|a| a.contains("text/html"));
    if !browser || uri.path().starts_with("/v1/") {
        return crate::routes::no_route().await.into_response();
    }
    // Signed in: the page keeps the navigation (no redirect to sign in for a mistyped address).
    let ctx = context! { path => uri.path() };
    let ctx = match session(&state, &headers).await {
        Ok(s) => s.ctx(ctx),
        Err(_) => ctx,
    };
    render(StatusCode::NOT_FOUND, "not_found.html", ctx)
}

/// Where a request without a (valid) session goes: the sign-in page (the reseller's, if the
/// browser's last user saw its brand), told the page asked for and, if a session cookie came
/// with it, that the session ended.
fn to_login(headers: &HeaderMap, expired: bool) -> Response {
    let next = REQUESTED.try_with(|r| r.clone()).ok().flatten();
    let mut query = Vec::new();
    if let Some(n) = next.as_deref().and_then(safe_next) {
        query.push(format!("next={}", percent_encoding::utf8_percent_encode(n, percent_encoding::NON_ALPHANUMERIC)));
    }
    if expired {
        query.push("why=expired".into());
    }
    if let Some(r) = cookie(headers, BRAND_COOKIE).filter(|r| crate::db::accounts::valid_name(r)) {
        query.push(format!("reseller={r}"));
    }
    let to = if query.is_empty() { "/login".to_string() } else { format!("/login?{}", query.join("&")) };
    Redirect::to(&to).into_response()
}

async fn stylesheet() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=3600")],
        include_str!("../../templates/arca.css"),
    )
        .into_response()
}

fn templates() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        for (name, source) in [
            ("base.html", include_str!("../../templates/base.html")),
            ("list.html", include_str!("../../templates/list.html")),
            ("tenants.html", include_str!("../../templates/tenants.html")),
            ("login.html", include_str!("../../templates/login.html")),
            ("message.html", include_str!("../../templates/message.html")),
            ("console.html", include_str!("../../templates/console.html")),
            ("tenant.html", include_str!("../../templates/tenant.html")),
            ("repo.html", include_str!("../../templates/repo.html")),
            ("usage.html", include_str!("../../templates/usage.html")),
            ("plans.html", include_str!("../../templates/plans.html")),
            ("audit.html", include_str!("../../templates/audit.html")),
            ("setup.html", include_str!("../../templates/setup.html")),
            ("login_code.html", include_str!("../../templates/login_code.html")),
            ("account.html", include_str!("../../templates/account.html")),
            ("restore.html", include_str!("../../templates/restore.html")),
            ("browse.html", include_str!("../../templates/browse.html")),
            ("billing.html", include_str!("../../templates/billing.html")),
            ("invoice.html", include_str!("../../templates/invoice.html")),
            ("invoice_print.html", include_str!("../../templates/invoice_print.html")),
            ("billing_settings.html", include_str!("../../templates/billing_settings.html")),
            ("tenant_billing.html", include_str!("../../templates/tenant_billing.html")),
            ("health.html", include_str!("../../templates/health.html")),
            ("not_found.html", include_str!("../../templates/not_found.html")),
            ("agents.html", include_str!("../../templates/agents.html")),
            ("branding.html", include_str!("../../templates/branding.html")),
            ("staff.html", include_str!("../../templates/staff.html")),
            ("resellers.html", include_str!("../../templates/resellers.html")),
            ("reseller.html", include_str!("../../templates/reseller.html")),
        ] {
            env.add_template(name, source).expect("the built-in templates parse");
        }
        env
    })
}

/// Renders a template with `status`, in the brand `ctx` names (a reseller's, see
/// [`Session::ctx`]) or else the provider's ([`crate::branding`]). Pages are never cached: they
/// show account data.
fn render(status: StatusCode, name: &str, ctx: Value) -> Response {
    // Merged contexts take precedence from left to right: `ctx`'s brand, if any, wins.
    let ctx = context! { ..ctx, ..context! { brand => &*crate::branding::current() } };
    match templates().get_template(name).and_then(|t| t.render(ctx)) {
        Ok(html) => (status, [(header::CACHE_CONTROL, "no-store")], Html(html)).into_response(),
        Err(e) => {
            tracing::error!("rendering {name}: {e}");
            (StatusCode::INTERNAL_SERVER_ERROR, "the page could not be rendered; the details are in the server log")
                .into_response()
        }
    }
}

/// The signed-in user, as templates see them.
#[derive(Debug, Clone, Serialize)]
struct Me {
    name: String,
    role: &'static str,
    tenant: Option<String>,
    /// Their tenant is suspended, for this reason (may be empty).
    suspension: Option<String>,
    /// Provider staff (admin or operator).
    staff: bool,
    /// Provider admin.
    admin: bool,
    /// The reseller whose admin they are (its display name).
    reseller: Option<String>,
    /// The same reseller's short name.
    reseller_name: Option<String>,
    /// Sells to tenants: a provider admin or a reseller's admin (creates tenants and plans).
    seller: bool,
    /// Uses the console (provider staff, a reseller's admins).
    console: bool,
}

/// A signed-in request.
pub(crate) struct Session {
    principal: Principal,
    me: Me,
    csrf: String,
    /// Which repositories this session unlocked for restores ([`restore::Vault`]).
    vault_key: restore::SessionKey,
    /// A reseller's own brand (its name and the brand) for its admins and its tenants' users;
    /// `None`: the provider's.
    brand: Option<(String, std::sync::Arc<crate::branding::Brand>)>,
}

impl Session {
    fn ctx(&self, extra: Value) -> Value {
        match &self.brand {
            Some((_, brand)) => context! { me => &self.me, csrf => &self.csrf, brand => &**brand, ..extra },
            None => context! { me => &self.me, csrf => &self.csrf, ..extra },
        }
    }

    /// The session as a caller of the service layer.
    fn caller(&self) -> crate::service::Caller {
        crate::service::Caller::web(self.principal.clone())
    }

    async fn audit(
        &self,
        state: &AppState,
        tenant_id: Option<i64>,
        action: &str,
        target: &str,
        outcome: &str,
        detail: &str,
    ) {
        self.caller().audit(state, tenant_id, action, target, outcome, detail).await
    }
}

/// The CSRF token of a session: derived from its secret token, so only pages served to the
/// session know it.
fn csrf_for(token: &str) -> String {
    hex::encode(&blake3::derive_key("arca web console 2026-11 CSRF token", token.as_bytes())[..16])
}

/// A cookie's value from the request.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn set_cookie(resp: &mut Response, name: &str, value: &str, max_age: i64) {
    let c = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}");
    if let Ok(v) = HeaderValue::from_str(&c) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// The session of the request, or a redirect to the sign-in page.
async fn session(state: &AppState, headers: &HeaderMap) -> Result<Session, Response> {
    let Some(token) = cookie(headers, SESSION_COOKIE).filter(|t| !t.is_empty()) else {
        return Err(to_login(headers, false));
    };
    let principal = match state.db().authenticate(token).await {
        Ok(Some(p)) if p.role != Role::Device => p,
        Ok(_) => return Err(to_login(headers, true)),
        Err(e) => return Err(message(StatusCode::SERVICE_UNAVAILABLE, "Unavailable", &e.to_string(), None)),
    };
    let tenant = match principal.tenant_id {
        Some(id) => state.db().tenant_by_id(id).await.ok(),
        None => None,
    };
    // A suspended tenant's users see why on every page.
    let suspension = tenant.as_ref().filter(|t| t.suspended).map(|t| t.suspended_reason.clone());
    let (reseller, brand_owner) = match crate::access::reseller_of(&principal) {
        Some(id) => match state.db().reseller_by_id(id).await {
            Ok(r) => (Some(r.display_name), Some((id, r.name))),
            Err(_) => (None, None),
        },
        // A reseller's tenant's users see the reseller's brand.
        None => (None, tenant.as_ref().and_then(|t| t.reseller_id.zip(t.reseller.clone()))),
    };
    let tenant = tenant.map(|t| t.name);
    let brand = match &brand_owner {
        Some((id, name)) => {
            crate::branding::of_reseller(state.db(), *id).await.map(|b| (name.clone(), std::sync::Arc::new(b)))
        }
        None => None,
    };
    let me = Me {
        name: principal.actor.trim_start_matches("user:").to_string(),
        role: principal.role.as_str(),
        tenant,
        suspension,
        staff: principal.role.is_provider(),
        admin: principal.role == Role::ProviderAdmin,
        seller: crate::access::is_seller(&principal),
        console: principal.role.is_provider() || reseller.is_some(),
        reseller_name: reseller.as_ref().and(brand_owner.as_ref()).map(|(_, n)| n.clone()),
        reseller,
    };
    Ok(Session { csrf: csrf_for(token), vault_key: restore::session_key(token), principal, me, brand })
}

/// Checks a form's CSRF token against the session's.
fn check_csrf(s: &Session, submitted: &str) -> Result<(), Response> {
    let expected = blake3::hash(s.csrf.as_bytes());
    if blake3::hash(submitted.as_bytes()) == expected {
        Ok(())
    } else {
        Err(message(
            StatusCode::FORBIDDEN,
            "Form expired",
            "This form was not sent by a page of this session (it may be old, or come from another site). Nothing \
             was changed: reload the page and try again.",
            Some(s),
        ))
    }
}

/// A page with one message (errors, refusals).
fn message(status: StatusCode, heading: &str, text: &str, s: Option<&Session>) -> Response {
    let extra = context! { heading, message => text };
    let ctx = match s {
        Some(s) => s.ctx(extra),
        None => extra,
    };
    render(status, "message.html", ctx)
}

/// The page for a refused or failed service operation ([`crate::service`]): its status and
/// message, on the session's layout. Internal errors show only that something failed (the
/// details are in the server log).
fn service_error(s: &Session, e: crate::errors::ApiError) -> Response {
    let status = e.status();
    let heading = match status {
        StatusCode::FORBIDDEN => "Not allowed",
        StatusCode::NOT_FOUND => "Not found",
        s if s.is_client_error() => "Not done",
        StatusCode::SERVICE_UNAVAILABLE => "Unavailable",
        _ => "Failed",
    };
    if status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE {
        tracing::error!("web: {}", e.message());
        return message(
            status,
            heading,
            "Something failed on the server; nothing was changed. Try again later.",
            Some(s),
        );
    }
    message(status, heading, e.message(), Some(s))
}

/// A refused form's reason, to show on the form itself so that what was typed stays: for
/// refusals the user can mend by changing the form (a bad value, a name taken). Others (not
/// allowed, not found, server failures) get their page from [`service_error`].
fn inline_error(s: &Session, e: crate::errors::ApiError) -> Result<String, Response> {
    match e.status() {
        StatusCode::BAD_REQUEST
        | StatusCode::CONFLICT
        | StatusCode::UNPROCESSABLE_ENTITY
        | StatusCode::PAYLOAD_TOO_LARGE => Ok(e.message().to_string()),
        _ => Err(service_error(s, e)),
    }
}

/// A failure report as customers read it: the error chain without repeated links ("reading x:
/// reading x: …"), object and snapshot ids shortened to their first 8 digits, one line.
/// Clients report whatever their error chain says; this is the one place it is tidied for
/// people (the full text stays in the database and the audit log).
pub(crate) fn failure_text(raw: &str) -> String {
    let one_line = raw.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut parts: Vec<&str> = Vec::new();
    for part in one_line.split(": ").map(str::trim).filter(|p| !p.is_empty()) {
        let lower = part.trim_start_matches("error").trim_start_matches(':').trim();
        if lower.is_empty() || parts.iter().any(|p| p.eq_ignore_ascii_case(part)) {
            continue;
        }
        parts.push(part);
    }
    let text = parts.join(": ");
    // Long hexadecimal runs are ids: keep 8 digits, as `arca snapshots` shows them.
    let mut out = String::with_capacity(text.len());
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.len() >= 16 {
            out.push_str(&run[..8]);
            out.push('…');
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in text.chars() {
        if c.is_ascii_hexdigit() {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}

fn not_found(s: &Session, what: &str) -> Response {
    message(StatusCode::NOT_FOUND, "Not found", &format!("There is no {what} here."), Some(s))
}

fn forbidden(s: &Session, what: &str) -> Response {
    message(StatusCode::FORBIDDEN, "Not allowed", &format!("Your role ({}) may not {what}.", s.me.role), Some(s))
}

fn date(ts: i64) -> String {
    if ts == 0 {
        return "never".into();
    }
    chrono::DateTime::from_timestamp(ts, 0).map_or(ts.to_string(), |d| d.format("%Y-%m-%d %H:%M").to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_suspension_banner_reads_as_one_sentence() {
        let me = context! { name => "ann", role => "tenant-admin", suspension => "Invoice unpaid." };
        let html = templates()
            .get_template("message.html")
            .unwrap()
            .render(context! { heading => "x", message => "y", me, brand => crate::branding::Brand::default() })
            .unwrap();
        assert!(html.contains("suspended: Invoice unpaid. New backups"), "{html}");
    }

    #[test]
    fn failures_read_without_repeats_or_raw_ids() {
        let raw = "error: backup failed: reading /srv/x: reading /srv/x: No such file or directory (os error 2)";
        assert_eq!(failure_text(raw), "backup failed: reading /srv/x: No such file or directory (os error 2)");
        let id = "3f2a9c1d".repeat(8);
        assert_eq!(failure_text(&format!("pack {id} is damaged\n  retry")), "pack 3f2a9c1d… is damaged retry");
        assert_eq!(failure_text("cafe 12 deadbeef"), "cafe 12 deadbeef", "short hex words stay");
    }

    #[test]
    fn csrf_tokens_are_per_session_and_cookies_parse() {
        assert_ne!(csrf_for("a"), csrf_for("b"));
        assert_eq!(csrf_for("a").len(), 32);
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("x=1; arca_session=tok; y=2"));
        assert_eq!(cookie(&h, "arca_session"), Some("tok"));
        assert_eq!(cookie(&h, "arca"), None);
    }

    /// Chromium compiles `pattern` with the `v` flag, in which a `-` at the edge of a class is a
    /// syntax error: the check is then silently off (issue 15).
    #[test]
    fn form_patterns_are_valid_unicode_sets_expressions() {
        for (name, source) in [
            ("console.html", include_str!("../../templates/console.html")),
            ("plans.html", include_str!("../../templates/plans.html")),
            ("tenant.html", include_str!("../../templates/tenant.html")),
        ] {
            for pattern in source.split("pattern=\"").skip(1).filter_map(|p| p.split('"').next()) {
                for (i, _) in pattern.match_indices('-') {
                    let before = &pattern[..i];
                    let escaped = before.ends_with('\\');
                    let at_edge = before.ends_with('[') || pattern[i + 1..].starts_with(']');
                    assert!(escaped || !at_edge, "{name}: pattern {pattern} has a bare '-' at the edge of a class");
                }
            }
        }
    }

    #[test]
    fn only_local_pages_are_returned_to_after_signing_in() {
        assert_eq!(safe_next("/console/audit?from=2026-01-01"), Some("/console/audit?from=2026-01-01"));
        for bad in
            ["", "/", "//evil.example/x", "https://evil.example/", "/\\evil.example", "/login?next=/x", "/logout", "x"]
        {
            assert_eq!(safe_next(bad), None, "{bad}");
        }
        assert_eq!(safe_next(&format!("/{}", "a".repeat(3000))), None);
    }

    #[test]
    fn health_counts_devices_in_the_singular_and_the_plural() {
        let t = templates().get_template("health.html").unwrap();
        let brand = crate::branding::Brand::default();
        let one = t.render(context! { troubled => 1, brand }).unwrap();
        assert!(one.contains("1 device needs attention"), "{one}");
        let two = t.render(context! { troubled => 2, brand }).unwrap();
        assert!(two.contains("2 devices need attention"));
        assert!(t.render(context! { troubled => 0, brand }).unwrap().contains("all devices on time"));
    }

    #[test]
    fn templates_escape_what_users_type() {
        let html = templates()
            .get_template("message.html")
            .unwrap()
            .render(context! { heading => "<script>alert(1)</script>", message => "x", brand => crate::branding::Brand::default() })
            .unwrap();
        assert!(!html.contains("<script>alert(1)"), "{html}");
        assert!(html.contains("&lt;script&gt;"));
    }
}
