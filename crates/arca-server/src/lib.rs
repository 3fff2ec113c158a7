//! The arca provider back end: repository hosting, accounts, quotas, metering and audit.
//!
//! Object bytes live on local disk or an S3-compatible store ([`state::Backend`]); everything
//! else (tenants, users, devices, tokens, which objects exist, usage, the audit log) lives in the
//! metadata database ([`db`]: SQLite by default, PostgreSQL for several server processes).
//!
//! The APIs (described in `docs/openapi.yaml`):
//! - `/v1/repos/{repo}/…`: the repository hosting API the `arca` client speaks ([`repo_api`]);
//! - `/v1/auth/…`, `/v1/setup`, `/v1/admin/…`: sign-in and account management, which `arca admin`
//!   and the web console use ([`admin_api`]);
//! - `/healthz` and `/metrics` for operations.
//!
//! Layers: handlers ([`repo_api`], `admin_api`, [`web`]) parse requests and render answers; the
//! account operations they share are written once in [`service`] (authorise, validate, store,
//! audit); every figure a client sends is range-checked in [`limits`]; uploads stream through
//! [`upload`]; sign-ins go through [`signin`] and [`passwords`]; the metadata lives in [`db`].
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod access;
mod admin_api;
mod agent_api;
pub mod alerts;
pub mod branding;
pub mod db;
pub mod errors;
pub mod format;
pub mod gc;
pub mod limits;
pub mod metrics;
pub mod passwords;
pub mod ratelimit;
pub mod recovery;
pub mod repo_api;
pub mod restic_api;
pub mod restore_check;
mod routes;
pub mod scrub;
pub mod secrets;
pub mod serve;
pub mod service;
pub mod signin;
pub mod state;
pub mod totp;
pub mod units;
pub mod upload;
pub mod web;

use std::future::Future;

use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post, put};
use axum::Router;

pub use errors::ApiError;
pub use state::AppState;

/// Largest object upload accepted (a pack is tens of MiB; this leaves ample room). Other
/// requests (JSON) are limited to 1 MiB.
pub const MAX_BODY: usize = 1 << 30;

/// The HTTP application of a provider's server, without a listener (tests can drive it
/// directly): repository hosting, the account API, billing and the web console.
pub fn app(state: AppState) -> Router {
    finish_with(
        hosting_routes().merge(account_routes()).merge(billing_routes()).merge(web::router()),
        state,
        web::no_page,
    )
}

/// Repository hosting and the account API only: no web console, no billing, no metrics. What the
/// office appliance's local backup target serves on a LAN, where nobody bills anybody.
pub fn hosting_app(state: AppState) -> Router {
    finish(hosting_routes().merge(account_routes()), state)
}

/// The shared tail of every application: the fallback, body limit and per-request context.
fn finish(routes: Router<AppState>, state: AppState) -> Router {
    finish_with(routes, state, |_: axum::http::HeaderMap, _: axum::http::Uri| routes::no_route())
}

/// [`finish`] with the answer for an unknown address (the console's is a page for browsers).
fn finish_with<H, T>(routes: Router<AppState>, state: AppState, fallback: H) -> Router
where
    H: axum::handler::Handler<T, AppState>,
    T: 'static,
{
    routes
        .fallback(fallback)
        .layer(DefaultBodyLimit::max(1 << 20))
        .layer(axum::middleware::from_fn_with_state(state.clone(), routes::request_context))
        .with_state(state)
}

/// Hosting: what `arca` clients speak (`/v1/repos/…`), and `/healthz`.
fn hosting_routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(routes::healthz))
        .route("/v1/repos/{repo}", post(repo_api::create_repo))
        .route("/v1/repos/{repo}/report", post(repo_api::report))
        .route("/v1/repos/{repo}/{kind}/", get(repo_api::list))
        .route(
            "/v1/repos/{repo}/{kind}/{name}",
            get(repo_api::get_object)
                .head(repo_api::head_object)
                .put(repo_api::put_object)
                .delete(repo_api::delete_object),
        )
        .merge(restic_routes())
}

/// restic's REST protocol (`/restic/REPO/…`, [`restic_api`]) for restic repositories.
fn restic_routes() -> Router<AppState> {
    use restic_api as r;
    Router::new()
        .route("/restic/{repo}", post(r::create))
        .route("/restic/{repo}/", post(r::create))
        .route(
            "/restic/{repo}/config",
            get(r::get_config).head(r::head_config).post(r::post_config).delete(r::delete_config),
        )
        .route("/restic/{repo}/{kind}", get(r::list))
        .route("/restic/{repo}/{kind}/", get(r::list))
        .route(
            "/restic/{repo}/{kind}/{name}",
            get(r::get_object).head(r::head_object).post(r::post_object).delete(r::delete_object),
        )
}

/// Accounts: sign-in, tenants, users, repositories, devices, health, audit, scrub, recovery keys.
fn account_routes() -> Router<AppState> {
    use admin_api as a;
    Router::new()
        .route("/v1/setup", post(a::setup))
        .route("/v1/auth/login", post(a::login))
        .route("/v1/auth/logout", post(a::logout))
        .route("/v1/auth/whoami", get(a::whoami))
        .route("/v1/admin/plans", get(a::list_plans).post(a::create_plan))
        .route("/v1/admin/plans/{plan}", put(a::update_plan).delete(a::delete_plan))
        .route("/v1/admin/users/{user}/{action}", post(a::user_action))
        .route("/v1/admin/branding", get(a::get_branding).put(a::put_branding))
        .route("/v1/admin/users", get(a::list_staff).post(a::create_staff))
        .route("/v1/admin/resellers", get(a::list_resellers).post(a::create_reseller))
        .route("/v1/admin/resellers/{reseller}", get(a::get_reseller).put(a::update_reseller))
        .route("/v1/admin/resellers/{reseller}/admins", post(a::create_reseller_admin))
        .route("/v1/admin/tenants", get(a::list_tenants).post(a::create_tenant))
        .route("/v1/admin/tenants/{tenant}", get(a::get_tenant).patch(a::update_tenant).delete(a::delete_tenant))
        .route("/v1/admin/tenants/{tenant}/users", get(a::list_tenant_users).post(a::create_tenant_user))
        .route("/v1/admin/tenants/{tenant}/repos", get(a::list_repos).post(a::create_repo))
        .route("/v1/admin/tenants/{tenant}/devices", get(a::list_devices).post(a::create_device))
        .route("/v1/admin/tenants/{tenant}/devices/{device}", delete(a::revoke_device))
        .route("/v1/admin/tenants/{tenant}/devices/{device}/schedule", axum::routing::put(a::set_device_schedule))
        .route("/v1/admin/health", get(a::health))
        .merge(agent_routes())
        .route("/v1/admin/repos", get(a::list_all_repos))
        .route("/v1/admin/repos/{repo}", axum::routing::patch(a::update_repo).delete(a::delete_repo))
        .route("/v1/admin/repos/{repo}/retention", axum::routing::put(a::set_retention))
        .route("/v1/admin/repos/{repo}/gc", post(a::run_gc))
        .route("/v1/admin/audit", get(a::audit_log))
        .route("/v1/admin/scrub", get(a::scrub_status).post(a::start_scrub))
        .route("/v1/admin/restore-check", post(a::restore_check))
        .route("/v1/admin/recovery-key", post(a::create_recovery_key))
        .route("/v1/recovery-key", get(a::recovery_key))
}

/// Managed agents: their own calls and their management ([`agent_api`]).
fn agent_routes() -> Router<AppState> {
    use agent_api as g;
    Router::new()
        .route("/v1/agent/enroll", post(g::enroll))
        .route("/v1/agent/config", get(g::config))
        .route("/v1/agent/report", post(g::report))
        .route("/v1/admin/tenants/{tenant}/enrolment-codes", get(g::list_codes).post(g::create_code))
        .route("/v1/admin/tenants/{tenant}/protection-plans", get(g::list_plans).post(g::create_plan))
        .route(
            "/v1/admin/tenants/{tenant}/protection-plans/{name}",
            axum::routing::put(g::update_plan).delete(g::delete_plan),
        )
        .route("/v1/admin/tenants/{tenant}/devices/{device}/protection-plan", axum::routing::put(g::assign_plan))
        .route("/v1/admin/tenants/{tenant}/agents", get(g::list_agents))
        .route("/v1/admin/tenants/{tenant}/agents/{device}/jobs", post(g::create_job))
}

/// What the provider sells and bills: usage and billing exports, and `/metrics`.
fn billing_routes() -> Router<AppState> {
    use admin_api as a;
    Router::new()
        .route("/metrics", get(routes::metrics))
        .route("/v1/admin/usage", get(a::usage))
        .route("/v1/admin/billing", get(a::billing))
        .route("/v1/admin/resellers/{reseller}/statement", get(a::reseller_statement))
        .route("/v1/admin/resellers/{reseller}/invoices", get(a::reseller_invoices).post(a::issue_reseller_invoice))
        .route("/v1/admin/resellers/{reseller}/invoices/{number}", get(a::reseller_invoice))
        .route("/v1/admin/billing/settings", get(a::billing_settings).put(a::set_billing_settings))
        .route("/v1/admin/invoices", get(a::invoices).post(a::issue_invoice))
        .route("/v1/admin/invoices/{number}", get(a::invoice))
}

/// Serves [`app`] on `listener` until `shutdown` completes; requests in flight are finished first.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_router(listener, app(state), shutdown).await
}

/// Serves [`hosting_app`] (no console, no billing) on `listener` until `shutdown` completes.
pub async fn serve_hosting(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_router(listener, hosting_app(state), shutdown).await
}

async fn serve_router(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve::serve(listener, router, shutdown).await
}

/// Serves [`app`] over TLS (rustls) on `listener` with the PEM certificate chain and private key
/// at `cert` and `key`, until `shutdown` completes; requests in flight get up to a minute to
/// finish.
pub async fn serve_tls(
    listener: std::net::TcpListener,
    state: AppState,
    cert: &std::path::Path,
    key: &std::path::Path,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_router_tls(listener, app(state), cert, key, shutdown).await
}

/// Serves any `router` over TLS as [`serve_tls`] serves the provider's (the appliance's share and
/// status page use it).
pub async fn serve_router_tls(
    listener: std::net::TcpListener,
    router: Router,
    cert: &std::path::Path,
    key: &std::path::Path,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let config = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("loading the TLS certificate {} and key {}: {e}", cert.display(), key.display()),
        )
    })?;
    let handle = axum_server::Handle::new();
    let on_signal = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        on_signal.graceful_shutdown(Some(std::time::Duration::from_secs(60)));
    });
    axum_server::from_tcp_rustls(listener, config)?
        .handle(handle)
        .serve(router.into_make_service_with_connect_info::<std::net::SocketAddr>())
        .await
}

/// Completes on SIGINT or SIGTERM (for [`serve`]'s graceful shutdown).
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot watch SIGTERM: {e}");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received: finishing requests in flight"),
        _ = term.recv() => tracing::info!("SIGTERM received: finishing requests in flight"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    /// The appliance's local target serves hosting and accounts, and nothing of the console or
    /// of billing.
    #[tokio::test]
    async fn the_hosting_app_serves_no_console_or_billing() {
        let dir = tempfile::tempdir().unwrap();
        let db = db::Db::connect(&format!("sqlite://{}/m.db", dir.path().display())).await.unwrap();
        let state = AppState::new(db, state::Backend::Local(dir.path().to_path_buf()));
        let get = |app: Router, path: &str| {
            let req = Request::get(path).body(Body::empty()).unwrap();
            async move { app.oneshot(req).await.unwrap().status() }
        };
        for path in ["/login", "/console", "/metrics", "/v1/admin/billing", "/v1/admin/usage"] {
            assert_eq!(get(hosting_app(state.clone()), path).await, StatusCode::NOT_FOUND, "{path}");
            assert_ne!(get(app(state.clone()), path).await, StatusCode::NOT_FOUND, "{path}");
        }
        for path in ["/healthz", "/v1/admin/tenants", "/v1/repos/r/data/"] {
            assert_ne!(get(hosting_app(state.clone()), path).await, StatusCode::NOT_FOUND, "{path}");
        }
    }
}
