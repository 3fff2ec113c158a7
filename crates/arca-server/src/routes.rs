//! The per-request middleware (request id, logging, metrics), authentication, and the endpoints
//! outside the repository and admin APIs (`/healthz`, `/metrics`).

use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use crate::access::is_staff;
use crate::db::accounts::Principal;
use crate::errors::{ApiError, Internal};
use crate::state::AppState;

/// The address of the client that sent the request, when known: the peer of the connection, or
/// with a trusted reverse proxy ([`AppState::behind_proxy`]) the last address of its
/// `X-Forwarded-For`. Used to throttle sign-ins per client.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub Option<std::net::IpAddr>);

fn client_addr(state: &AppState, req: &Request) -> Option<std::net::IpAddr> {
    let peer = req.extensions().get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip());
    if !state.behind_proxy() {
        return peer;
    }
    req.headers()
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|a| a.trim().parse().ok())
        .next_back()
        .or(peer)
}

/// Whether the client reached the server over HTTPS: this process serves TLS, or a trusted
/// reverse proxy says so with `X-Forwarded-Proto: https`.
fn over_https(state: &AppState, req: &Request) -> bool {
    state.tls()
        || (state.behind_proxy()
            && req
                .headers()
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("https")))
}

/// The id of the request being served (also in the `x-request-id` response header and in every
/// log line of the request).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Gives each request an id (response header `x-request-id`, and every log line of the request),
/// logs its outcome, and replaces the body of internal errors with a message naming the id.
pub(crate) async fn request_context(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let id = hex::encode(rand::random::<[u8; 8]>());
    let method = req.method().to_string();
    let bytes_in = body_len(req.body());
    let span = tracing::info_span!("request", id = %id, method = %req.method(), path = %req.uri().path());
    let mut req = req;
    let https = over_https(&state, &req);
    let client = ClientAddr(client_addr(&state, &req));
    req.extensions_mut().insert(RequestId(id.clone()));
    req.extensions_mut().insert(client);
    let start = Instant::now();
    let mut resp = next.run(req).instrument(span.clone()).await;
    if resp.extensions().get::<Internal>().is_some() {
        *resp.body_mut() =
            Body::from(format!("internal server error (request id {id}; the details are in the server log)"));
        resp.headers_mut().remove(header::CONTENT_LENGTH);
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    security_headers(resp.headers_mut());
    // Over HTTPS (here or at a trusted proxy), cookies (the console's session) are never sent back
    // over plain HTTP, and browsers are told to keep to HTTPS.
    if https {
        resp.headers_mut()
            .entry(header::STRICT_TRANSPORT_SECURITY)
            .or_insert(HeaderValue::from_static("max-age=31536000"));
        let cookies: Vec<HeaderValue> = resp.headers().get_all(header::SET_COOKIE).iter().cloned().collect();
        if !cookies.is_empty() {
            resp.headers_mut().remove(header::SET_COOKIE);
            for c in cookies {
                let secured = format!("{}; Secure", c.to_str().unwrap_or_default());
                if let Ok(v) = HeaderValue::from_str(&secured) {
                    resp.headers_mut().append(header::SET_COOKIE, v);
                }
            }
        }
    }
    span.in_scope(|| {
        tracing::info!(status = resp.status().as_u16(), ms = start.elapsed().as_millis() as u64, "done");
    });
    // A streamed download has no exact size hint; its Content-Length says what it sends.
    let bytes_out = resp
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| body_len(resp.body()));
    state.metrics().observe(&method, resp.status().as_u16(), bytes_in, bytes_out);
    resp
}

/// The content security policy of every answer: the pages run no script at all, load styles and
/// images only from the server itself (inline styles and `data:` images for the charts and the
/// two-factor QR code), post forms only to the server, and may not be framed (clickjacking).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Headers every answer carries (pages, JSON, downloads): a strict CSP, no framing, no MIME
/// sniffing (an uploaded object is never rendered as HTML) and no referrer leaking page URLs.
fn security_headers(h: &mut HeaderMap) {
    h.entry(header::CONTENT_SECURITY_POLICY).or_insert(HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    h.entry(header::X_FRAME_OPTIONS).or_insert(HeaderValue::from_static("DENY"));
    h.entry(header::X_CONTENT_TYPE_OPTIONS).or_insert(HeaderValue::from_static("nosniff"));
    h.entry(header::REFERRER_POLICY).or_insert(HeaderValue::from_static("same-origin"));
}

/// A body's length when known up front (every body arca sends or serves has one).
fn body_len(body: &Body) -> u64 {
    use axum::body::HttpBody as _;
    body.size_hint().exact().unwrap_or(0)
}

/// `GET /metrics`: Prometheus text exposition; needs a provider staff token (scrapers send it as
/// a bearer token), since it shows per-tenant figures.
pub(crate) async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let p = authenticate(&state, &headers).await?;
    if !is_staff(&p) {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "metrics need a provider admin's or operator's token"));
    }
    state.metrics().refresh_tenants(state.db()).await;
    Ok((
        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        state.metrics().render(),
    )
        .into_response())
}

/// The token of the request, if there is a non-empty one: `Authorization: Bearer TOKEN` (arca),
/// or HTTP basic auth whose password is the token (restic, which takes credentials only in its
/// repository URL: `rest:https://USER:TOKEN@HOST/restic/REPO/`; the user name is informational).
pub(crate) fn request_token(headers: &HeaderMap) -> Option<String> {
    use base64::Engine as _;
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let token = if let Some(bearer) = value.strip_prefix("Bearer ") {
        bearer.trim().to_string()
    } else {
        let encoded = value.strip_prefix("Basic ")?.trim();
        // A token is short; a huge header is refused before decoding (hyper caps headers too).
        if encoded.len() > 1024 {
            return None;
        }
        let decoded = base64::engine::general_purpose::STANDARD.decode(encoded).ok()?;
        let text = String::from_utf8(decoded).ok()?;
        text.split_once(':')?.1.trim().to_string()
    };
    (!token.is_empty()).then_some(token)
}

/// The principal of the request's bearer token; 401 if there is none or it is not valid.
pub(crate) async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Principal, ApiError> {
    let Some(token) = request_token(headers) else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing token: send `Authorization: Bearer <token>` (the client reads ARCA_TOKEN), or for restic put \
             the token as the password of the repository URL",
        ));
    };
    let p = state
        .db()
        .authenticate(&token)
        .await
        .map_err(ApiError::from_db)?
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "invalid, expired or revoked token"))?;
    if let Err(wait) = state.limiter().check(p.token_id) {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("too many requests with this token: retry in {:.1} s", wait.max(0.1)),
        )
        .with_retry_after(wait.ceil().max(1.0) as u64));
    }
    Ok(p)
}

/// Runs blocking store work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| ApiError::internal(format!("worker failed: {e}")))?
}

/// `GET /healthz`, unauthenticated, for load balancers and monitoring: 200 when the metadata
/// database answers, the object store accepted a write at its last probe and the server's disk is
/// above its free-space reserve; 503 otherwise. It says nothing about any tenant or repository.
///
/// The store probe (an object written and removed) runs at most once per
/// [`crate::state::HEALTH_PROBE_EVERY`], whoever asks how often: an unauthenticated caller cannot
/// make the server write.
pub(crate) async fn healthz(State(state): State<AppState>) -> Response {
    let db_ok = state.db().ping().await;
    let store_ok = state.store_healthy().await;
    let disk_ok = state.disk_ok();
    let ok = db_ok && store_ok && disk_ok;
    let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let word = |ok: bool| if ok { "ok" } else { "failing" };
    let body = format!(
        "{{\"status\":\"{}\",\"database\":\"{}\",\"store\":\"{}\",\"disk\":\"{}\",\"version\":\"{}\"}}",
        word(ok),
        word(db_ok),
        word(store_ok),
        if disk_ok { "ok" } else { "below reserve" },
        env!("CARGO_PKG_VERSION")
    );
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Any path that is not an API endpoint.
/// A CSV file for download (usage and billing exports, in the API and the pages): never cached,
/// as it holds account data.
pub(crate) fn csv_download(file_name: &str, csv: String) -> Response {
    (
        [
            (axum::http::header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (axum::http::header::CONTENT_DISPOSITION, format!("attachment; filename=\"{file_name}\"")),
            (axum::http::header::CACHE_CONTROL, "no-store".to_string()),
        ],
        csv,
    )
        .into_response()
}

pub(crate) async fn no_route() -> ApiError {
    ApiError::not_found(
        "no such endpoint (the repository API lives under /v1/repos/REPO/, the admin API under /v1/admin/)",
    )
}
