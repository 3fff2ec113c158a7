//! The arca provider back end: the repository hosting API.
//!
//! This first slice serves repositories stored on local disk (`<data-dir>/repos/<repo>/`) over
//! HTTP, to the `arca` client's `HttpStore`. Every request carries a bearer token; tokens are
//! scoped to one repository (devices) or to all (admins), see [`auth`]. The API:
//!
//! | method | path | what |
//! |---|---|---|
//! | `POST` | `/v1/repos/{repo}` | create the repository's directories |
//! | `GET` | `/v1/repos/{repo}/{kind}/?after=NAME&limit=N` | list one kind, sorted by name, paged |
//! | `HEAD` | `/v1/repos/{repo}/{kind}/{name}` | size of an object (`Content-Length`, `X-Arca-Size`) |
//! | `GET` | `/v1/repos/{repo}/{kind}/{name}` | read an object; one `Range: bytes=a-b` gives 206 |
//! | `PUT` | `/v1/repos/{repo}/{kind}/{name}` | store an object (verified against its content address) |
//! | `DELETE` | `/v1/repos/{repo}/{kind}/{name}` | remove an object (admins; devices only locks) |
//!
//! `{kind}` is one of `config`, `keys`, `data`, `meta`, `index`, `snapshots`, `locks`, `pending`.
#![warn(missing_docs)]

pub mod auth;
pub mod db;
pub mod errors;
pub mod metrics;
mod routes;
pub mod state;

use std::future::Future;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;

pub use auth::{FileTokenStore, Grant, Role, TokenStore};
pub use errors::ApiError;
pub use state::AppState;

/// Largest request body accepted (a pack is tens of MiB; this leaves ample room).
pub const MAX_BODY: usize = 1 << 30;

/// The HTTP application, without a listener (tests can drive it directly).
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(routes::healthz))
        .route("/metrics", get(routes::metrics))
        .route("/v1/repos/{repo}", post(routes::create_repo))
        .route("/v1/repos/{repo}/{kind}/", get(routes::list))
        .route(
            "/v1/repos/{repo}/{kind}/{name}",
            get(routes::get_object).head(routes::head_object).put(routes::put_object).delete(routes::delete_object),
        )
        .fallback(routes::no_route)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(state.clone(), routes::request_context))
        .with_state(state)
}

/// Serves [`app`] on `listener` until `shutdown` completes; requests in flight are finished first.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app(state)).with_graceful_shutdown(shutdown).await
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
