//! The request handlers and the per-request middleware (request id, logging).

use std::time::Instant;

use arca_core::envelope::read_manifest;
use arca_core::snapshot::SNAPSHOT_MAGIC;
use arca_store::{validate_name, LocalStore, ObjectInfo, ObjectKind, Store};
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use crate::auth::{valid_repo_name, Grant, Role};
use crate::errors::{ApiError, Internal};
use crate::state::AppState;

/// Default and largest page of a listing.
const DEFAULT_LIMIT: usize = 1000;
const MAX_LIMIT: usize = 10_000;
/// Header with an object's size on HEAD responses.
const SIZE_HEADER: &str = "x-arca-size";
const DEVICE_NO_DELETE: &str =
    "a device token can add backups but not delete them: delete not allowed (forget and prune need an admin token)";

/// Gives each request an id (response header `x-request-id`, and every log line of the request),
/// logs its outcome, and replaces the body of internal errors with a message naming the id.
pub(crate) async fn request_context(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let id = hex::encode(rand::random::<[u8; 8]>());
    let method = req.method().to_string();
    let bytes_in = body_len(req.body());
    let span = tracing::info_span!("request", id = %id, method = %req.method(), path = %req.uri().path());
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
    span.in_scope(|| {
        tracing::info!(status = resp.status().as_u16(), ms = start.elapsed().as_millis() as u64, "done");
    });
    state.metrics().observe(&method, resp.status().as_u16(), bytes_in, body_len(resp.body()));
    resp
}

/// A body's length when known up front (every body arca sends or serves has one).
fn body_len(body: &Body) -> u64 {
    use axum::body::HttpBody as _;
    body.size_hint().exact().unwrap_or(0)
}

/// `GET /metrics`: Prometheus text exposition; needs an admin token (scrapers send it as a bearer
/// token), since later versions add per-tenant figures.
pub(crate) async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    match bearer_token(&headers).and_then(|t| state.tokens().lookup(t)) {
        Some(grant) if grant.role == Role::Admin => Ok((
            [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
            state.metrics().render(),
        )
            .into_response()),
        Some(_) => Err(ApiError::new(StatusCode::FORBIDDEN, "metrics need an admin token")),
        None => Err(ApiError::new(StatusCode::UNAUTHORIZED, "metrics need an admin token")),
    }
}

/// What a request wants to do, for the permission check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Read,
    Create,
    Put,
    Delete(ObjectKind),
}

/// The token of an `Authorization: Bearer …` header, if there is a non-empty one.
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Authenticates the bearer token and checks that it may do `action` in `repo`.
fn authorize(state: &AppState, headers: &HeaderMap, repo: &str, action: Action) -> Result<Grant, ApiError> {
    let token = bearer_token(headers);
    let unauthorized = |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, m);
    let Some(token) = token else {
        return Err(unauthorized("missing token: send `Authorization: Bearer <token>` (the client reads ARCA_TOKEN)"));
    };
    let Some(grant) = state.tokens().lookup(token) else {
        return Err(unauthorized("invalid or revoked token"));
    };
    if !valid_repo_name(repo) {
        return Err(ApiError::bad_request(format!("invalid repository name {repo:?} (use [a-z0-9-], 1 to 64)")));
    }
    if !grant.covers(repo) {
        // Do not reveal whether the repository exists.
        return Err(ApiError::not_found(format!("repository {repo} does not exist")));
    }
    if grant.role == Role::Device {
        if let Action::Delete(kind) = action {
            if kind != ObjectKind::Lock {
                return Err(ApiError::new(StatusCode::FORBIDDEN, DEVICE_NO_DELETE));
            }
        }
    }
    Ok(grant)
}

/// Whether objects of `kind` are named by the BLAKE3 hash of their bytes.
fn content_addressed(kind: ObjectKind) -> bool {
    matches!(
        kind,
        ObjectKind::DataPack
            | ObjectKind::MetaPack
            | ObjectKind::Index
            | ObjectKind::Snapshot
            | ObjectKind::Key
            | ObjectKind::Pending
    )
}

fn parse_kind(kind: &str) -> Result<ObjectKind, ApiError> {
    ObjectKind::from_dir(kind).ok_or_else(|| {
        ApiError::bad_request(format!(
            "unknown object kind {kind:?} (use config, keys, data, meta, index, snapshots, locks or pending)"
        ))
    })
}

fn check_name(kind: ObjectKind, name: &str) -> Result<(), ApiError> {
    let ok = match kind {
        ObjectKind::Config => name == "config",
        k if content_addressed(k) => {
            name.len() == 64 && name.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        }
        _ => validate_name(name).is_ok(),
    };
    if ok {
        Ok(())
    } else if content_addressed(kind) {
        Err(ApiError::bad_request(format!(
            "invalid {kind} object name {name:?}: expected 64 lowercase hex digits (the BLAKE3 hash of its bytes)"
        )))
    } else {
        Err(ApiError::bad_request(format!("invalid {kind} object name {name:?}")))
    }
}

/// Checks an object's kind and name (after authorisation) and opens its repository's store.
fn object_target(state: &AppState, repo: &str, kind: &str, name: &str) -> Result<(ObjectKind, LocalStore), ApiError> {
    let kind = parse_kind(kind)?;
    check_name(kind, name)?;
    Ok((kind, state.store(repo)))
}

/// Runs blocking store work off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, ApiError> + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| ApiError::internal(format!("worker failed: {e}")))?
}

/// `POST /v1/repos/{repo}`: create a repository's directories.
pub(crate) async fn create_repo(
    State(state): State<AppState>,
    Path(repo): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state, &headers, &repo, Action::Create)?;
    let store = state.store(&repo);
    blocking(move || store.create().map_err(|e| ApiError::from_store(e, ObjectKind::Config, "config"))).await?;
    tracing::info!("created repository {repo}");
    Ok((StatusCode::CREATED, "created").into_response())
}

/// Listing page parameters.
#[derive(Debug, Deserialize)]
pub(crate) struct ListQuery {
    after: Option<String>,
    limit: Option<usize>,
}

#[derive(Serialize)]
struct ListEntry {
    name: String,
    size: u64,
}

/// `GET /v1/repos/{repo}/{kind}/`: one page of a kind's objects, sorted by name.
pub(crate) async fn list(
    State(state): State<AppState>,
    Path((repo, kind)): Path<(String, String)>,
    Query(q): Query<ListQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state, &headers, &repo, Action::Read)?;
    let kind = parse_kind(&kind)?;
    if let Some(after) = &q.after {
        validate_name(after).map_err(|_| ApiError::bad_request(format!("invalid `after` name {after:?}")))?;
    }
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let store = state.store(&repo);
    let mut all: Vec<ObjectInfo> =
        blocking(move || store.list(kind).map_err(|e| ApiError::from_store(e, kind, ""))).await?;
    all.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    let page: Vec<ListEntry> = all
        .into_iter()
        .filter(|o| q.after.as_deref().is_none_or(|after| o.name.as_str() > after))
        .take(limit)
        .map(|o| ListEntry { name: o.name, size: o.size })
        .collect();
    Ok(Json(page).into_response())
}

/// `HEAD /v1/repos/{repo}/{kind}/{name}`: the object's size.
pub(crate) async fn head_object(
    State(state): State<AppState>,
    Path((repo, kind, name)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state, &headers, &repo, Action::Read)?;
    let (kind, store) = object_target(&state, &repo, &kind, &name)?;
    let n = name.clone();
    let size = blocking(move || store.stat(kind, &n).map_err(|e| ApiError::from_store(e, kind, &n))).await?;
    match size {
        Some(size) => Ok((
            StatusCode::OK,
            [
                (header::CONTENT_LENGTH, size.to_string()),
                (header::HeaderName::from_static(SIZE_HEADER), size.to_string()),
            ],
        )
            .into_response()),
        None => Err(ApiError::not_found(format!("{kind} object {name} does not exist"))),
    }
}

/// Parses `bytes=a-b` or `bytes=a-` (one range only).
fn parse_range(value: &str) -> Option<(u64, Option<u64>)> {
    let spec = value.trim().strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let a = a.trim().parse::<u64>().ok()?;
    let b = if b.trim().is_empty() { None } else { Some(b.trim().parse::<u64>().ok()?) };
    Some((a, b))
}

/// `GET /v1/repos/{repo}/{kind}/{name}`: the object, or one byte range of it (206).
pub(crate) async fn get_object(
    State(state): State<AppState>,
    Path((repo, kind, name)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state, &headers, &repo, Action::Read)?;
    let (kind, store) = object_target(&state, &repo, &kind, &name)?;
    let range = match headers.get(header::RANGE) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(parse_range)
                .ok_or_else(|| ApiError::bad_request("unsupported Range header: send a single `bytes=FIRST-LAST`"))?,
        ),
    };
    let n = name.clone();
    let Some((first, last)) = range else {
        let bytes = blocking(move || store.get(kind, &n).map_err(|e| ApiError::from_store(e, kind, &n))).await?;
        return Ok((StatusCode::OK, Bytes::from(bytes)).into_response());
    };
    blocking(move || {
        let size = store
            .stat(kind, &n)
            .map_err(|e| ApiError::from_store(e, kind, &n))?
            .ok_or_else(|| ApiError::not_found(format!("{kind} object {n} does not exist")))?;
        let last = last.unwrap_or(size.saturating_sub(1));
        if first > last || last >= size {
            let mut resp = ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                format!("range bytes={first}-{last} is outside {kind} object {n} of {size} bytes"),
            )
            .into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                resp.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return Ok(resp);
        }
        let bytes =
            store.get_range(kind, &n, first, last - first + 1).map_err(|e| ApiError::from_store(e, kind, &n))?;
        Ok((
            StatusCode::PARTIAL_CONTENT,
            [(header::CONTENT_RANGE, format!("bytes {first}-{last}/{size}"))],
            Bytes::from(bytes),
        )
            .into_response())
    })
    .await
}

/// `PUT /v1/repos/{repo}/{kind}/{name}`: stores an object after checking it.
///
/// Content-addressed kinds must hash (BLAKE3) to their name; a snapshot's plaintext manifest must
/// name only packs that are stored; a device cannot overwrite `config` or a key slot with other
/// bytes. A repeated upload of the same bytes succeeds without writing (idempotent retries).
pub(crate) async fn put_object(
    State(state): State<AppState>,
    Path((repo, kind, name)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let grant = authorize(&state, &headers, &repo, Action::Put)?;
    let (kind, store) = object_target(&state, &repo, &kind, &name)?;
    blocking(move || {
        if content_addressed(kind) {
            let actual = blake3::hash(&body).to_hex();
            if actual.as_str() != name {
                return Err(ApiError::bad_request(format!(
                    "the uploaded bytes of {kind} object {name} hash to {actual}: the upload is damaged or \
                     truncated, nothing was stored"
                )));
            }
        }
        if kind == ObjectKind::Snapshot {
            let (packs, _) = read_manifest(SNAPSHOT_MAGIC, &body)
                .map_err(|e| ApiError::bad_request(format!("snapshot {name} has an unreadable manifest: {e}")))?;
            let mut missing = Vec::new();
            for (pack_kind, id) in &packs {
                let (k, hex) = (pack_kind.object_kind(), id.to_hex());
                if store.stat(k, &hex).map_err(|e| ApiError::from_store(e, k, &hex))?.is_none() {
                    missing.push(format!("{k}/{hex}"));
                }
            }
            if !missing.is_empty() {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    format!(
                        "snapshot {name} names {} packs that are not stored (first: {}): upload the packs first",
                        missing.len(),
                        missing[0]
                    ),
                ));
            }
        }
        let existing = store.stat(kind, &name).map_err(|e| ApiError::from_store(e, kind, &name))?;
        if existing.is_some() {
            if content_addressed(kind) {
                // Same name, verified same bytes: already stored.
                return Ok(StatusCode::OK.into_response());
            }
            if grant.role == Role::Device && matches!(kind, ObjectKind::Config | ObjectKind::Key) {
                let current = store.get(kind, &name).map_err(|e| ApiError::from_store(e, kind, &name))?;
                if current == body.as_ref() {
                    return Ok(StatusCode::OK.into_response());
                }
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    format!("{kind} object {name} already exists and a device token cannot overwrite it"),
                ));
            }
        }
        store.put(kind, &name, &body).map_err(|e| ApiError::from_store(e, kind, &name))?;
        Ok(StatusCode::CREATED.into_response())
    })
    .await
}

/// `DELETE /v1/repos/{repo}/{kind}/{name}`: removes an object (idempotent).
pub(crate) async fn delete_object(
    State(state): State<AppState>,
    Path((repo, kind, name)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let kind_parsed = ObjectKind::from_dir(&kind);
    let action = Action::Delete(kind_parsed.unwrap_or(ObjectKind::Config));
    authorize(&state, &headers, &repo, action)?;
    let (kind, store) = object_target(&state, &repo, &kind, &name)?;
    blocking(move || store.delete(kind, &name).map_err(|e| ApiError::from_store(e, kind, &name))).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /healthz`, unauthenticated, for load balancers and monitoring: 200 when the data
/// directory can be written (a probe file is created and removed), 503 otherwise. It says nothing
/// about any tenant or repository.
pub(crate) async fn healthz(State(state): State<AppState>) -> Response {
    let dir = state.data_dir().join("repos");
    let probe = dir.join(format!(".healthz-{}", std::process::id()));
    let ok = tokio::task::spawn_blocking(move || {
        std::fs::write(&probe, b"ok").and_then(|()| std::fs::remove_file(&probe)).is_ok()
    })
    .await
    .unwrap_or(false);
    let (status, text) = if ok {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "the data directory is not writable")
    };
    let body = format!("{{\"status\":\"{text}\",\"version\":\"{}\"}}", env!("CARGO_PKG_VERSION"));
    (status, [(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Any path that is not an API endpoint.
pub(crate) async fn no_route() -> ApiError {
    ApiError::not_found("no such endpoint (the API lives under /v1/repos/REPO/)")
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;
    use crate::auth::{hash_token, FileTokenStore};

    fn state(dir: &std::path::Path) -> AppState {
        let tokens = format!("[[token]]\nhash = \"{}\"\nrepo = \"acme\"\nrole = \"device\"\n", hash_token("dev"));
        AppState::new(dir, Arc::new(FileTokenStore::parse(&tokens).unwrap()))
    }

    async fn send(state: &AppState, method: &str, uri: &str, body: &[u8]) -> (StatusCode, String) {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header("authorization", "Bearer dev")
            .body(Body::from(body.to_vec()))
            .unwrap();
        let resp = crate::app(state.clone()).oneshot(req).await.unwrap();
        let status = resp.status();
        assert!(resp.headers().contains_key("x-request-id"));
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    #[test]
    fn ranges_parse() {
        assert_eq!(parse_range("bytes=0-9"), Some((0, Some(9))));
        assert_eq!(parse_range("bytes=5-"), Some((5, None)));
        assert_eq!(parse_range("bytes=-5"), None);
        assert_eq!(parse_range("bytes=0-1,4-5"), None);
        assert_eq!(parse_range("items=0-1"), None);
    }

    #[test]
    fn names_are_checked_by_kind() {
        let h = "ab".repeat(32);
        assert!(check_name(ObjectKind::DataPack, &h).is_ok());
        assert!(check_name(ObjectKind::DataPack, &h[1..]).is_err());
        assert!(check_name(ObjectKind::DataPack, &"AB".repeat(32)).is_err());
        assert!(check_name(ObjectKind::Config, "config").is_ok());
        assert!(check_name(ObjectKind::Config, "other").is_err());
        assert!(check_name(ObjectKind::Lock, "..").is_err());
    }

    #[tokio::test]
    async fn put_get_and_refusals_through_the_router() {
        let dir = tempfile::tempdir().unwrap();
        let st = state(dir.path());
        assert_eq!(send(&st, "POST", "/v1/repos/acme", b"").await.0, StatusCode::CREATED);
        assert_eq!(send(&st, "POST", "/v1/repos/acme", b"").await.0, StatusCode::CREATED);
        let body = b"pack bytes";
        let name = blake3::hash(body).to_hex().to_string();
        let wrong = "0".repeat(64);
        let (status, msg) = send(&st, "PUT", &format!("/v1/repos/acme/data/{wrong}"), body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(msg.contains("nothing was stored"), "{msg}");
        assert_eq!(send(&st, "PUT", &format!("/v1/repos/acme/data/{name}"), body).await.0, StatusCode::CREATED);
        assert_eq!(send(&st, "PUT", &format!("/v1/repos/acme/data/{name}"), body).await.0, StatusCode::OK);
        let (status, got) = send(&st, "GET", &format!("/v1/repos/acme/data/{name}"), b"").await;
        assert_eq!((status, got.as_str()), (StatusCode::OK, "pack bytes"));
        let (status, list) = send(&st, "GET", "/v1/repos/acme/data/", b"").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(list, format!("[{{\"name\":\"{name}\",\"size\":10}}]"));
        let (status, msg) = send(&st, "DELETE", &format!("/v1/repos/acme/data/{name}"), b"").await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(msg.contains("cannot") || msg.contains("not delete"), "{msg}");
        assert_eq!(send(&st, "DELETE", "/v1/repos/acme/locks/abc", b"").await.0, StatusCode::NO_CONTENT);
        assert_eq!(send(&st, "GET", "/v1/repos/other/data/", b"").await.0, StatusCode::NOT_FOUND);
        assert_eq!(send(&st, "PUT", "/v1/repos/acme/config/config", b"{}").await.0, StatusCode::CREATED);
        assert_eq!(send(&st, "PUT", "/v1/repos/acme/config/config", b"{}").await.0, StatusCode::OK);
        assert_eq!(send(&st, "PUT", "/v1/repos/acme/config/config", b"{ }").await.0, StatusCode::CONFLICT);
        assert_eq!(send(&st, "POST", "/v1/repos/acme", b"").await.0, StatusCode::CONFLICT);
    }

    #[tokio::test]
    async fn metrics_count_requests_and_need_an_admin_token() {
        let dir = tempfile::tempdir().unwrap();
        let st = state(dir.path());
        assert_eq!(send(&st, "POST", "/v1/repos/acme", b"").await.0, StatusCode::CREATED);
        let body = b"0123456789";
        let name = blake3::hash(body).to_hex().to_string();
        assert_eq!(send(&st, "PUT", &format!("/v1/repos/acme/data/{name}"), body).await.0, StatusCode::CREATED);
        // The device token of `state` may not read metrics.
        assert_eq!(send(&st, "GET", "/metrics", b"").await.0, StatusCode::FORBIDDEN);
        let text = st.metrics().render();
        assert!(text.contains(r#"arca_server_http_requests_total{method="PUT",status="201"} 1"#), "{text}");
        assert!(text.contains("arca_server_received_bytes_total 10"), "{text}");
        assert!(text.contains(r#"method="GET",status="403""#), "{text}");
    }

    #[tokio::test]
    async fn healthz_reports_a_writable_data_directory() {
        let dir = tempfile::tempdir().unwrap();
        let st = state(dir.path());
        std::fs::create_dir_all(dir.path().join("repos")).unwrap();
        let (status, body) = send(&st, "GET", "/healthz", b"").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body.contains("\"status\":\"ok\""), "{body}");
        // A data directory that vanished makes the node unhealthy.
        std::fs::remove_dir_all(dir.path().join("repos")).unwrap();
        let (status, body) = send(&st, "GET", "/healthz", b"").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    }
}
