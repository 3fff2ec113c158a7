//! The repository hosting API: what `arca` clients (`HttpStore`) speak.
//!
//! Object bytes live in the [`crate::state::Backend`]; which objects exist is the catalogue in the
//! metadata database. An upload is stored first and catalogued second, so a crash in between
//! leaves at worst an invisible orphan, never a listed object without bytes. A delete is
//! uncatalogued first for the same reason. Lock files (`locks/`) are coordination between clients,
//! rewritten in place as they are refreshed: they bypass the catalogue, quotas and retention.

use arca_core::envelope::{read_logical, read_manifest};
use arca_core::index::INDEX_MAGIC;
use arca_core::snapshot::SNAPSHOT_MAGIC;
use arca_store::{validate_name, ObjectKind, Store};
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};

use crate::access::{can_see_repo, check_repo_action, is_coordination, RepoAction};
use crate::db::accounts::{valid_name, Principal, Repository, Role};
use crate::db::audit::NewAudit;
use crate::db::catalog::NewObject;
use crate::db::now;
use crate::errors::ApiError;
use crate::limits;
use crate::routes::{authenticate, blocking, RequestId};
use crate::state::AppState;
use crate::units::human_bytes_exact;

/// Default and largest page of a listing.
const DEFAULT_LIMIT: i64 = 1000;
const MAX_LIMIT: i64 = 10_000;
/// Header with an object's size on HEAD responses.
const SIZE_HEADER: &str = "x-arca-size";
/// Header with a warning for the user on successful uploads (e.g. past the soft quota).
const WARNING_HEADER: &str = "x-arca-warning";

/// Whether objects of `kind` are named by the BLAKE3 hash of their bytes.
pub(crate) fn content_addressed(kind: ObjectKind) -> bool {
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

pub(crate) fn check_name(kind: ObjectKind, name: &str) -> Result<(), ApiError> {
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

/// A request's caller and repository, after every check of who may do what.
struct Target {
    principal: Principal,
    repo: Repository,
    request_id: String,
}

impl Target {
    async fn audit(&self, state: &AppState, action: &str, target: &str, outcome: &str, detail: &str) {
        let entry = NewAudit {
            actor: &self.principal.actor,
            tenant_id: Some(self.repo.tenant_id),
            action,
            target,
            outcome,
            detail,
            request_id: &self.request_id,
        };
        state.db().record(entry).await
    }
}

/// Authenticates the caller and checks `action` on repository `name`. A repository the caller
/// cannot see does not exist for it (and the attempt is audited).
async fn open_repo(
    state: &AppState,
    headers: &HeaderMap,
    name: &str,
    action: RepoAction,
    request_id: &RequestId,
) -> Result<Target, ApiError> {
    let principal = authenticate(state, headers).await?;
    if !valid_name(name) {
        return Err(ApiError::bad_request(format!("invalid repository name {name:?} (use [a-z0-9-], 1 to 64)")));
    }
    let missing = || ApiError::not_found(format!("repository {name} does not exist"));
    let repo = state.db().find_repository(name).await.map_err(ApiError::from_db)?.ok_or_else(missing)?;
    let target = Target { principal, repo, request_id: request_id.0.clone() };
    if !can_see_repo(&target.principal, &target.repo) {
        // Recorded under the caller's tenant, whose admins should know their token probes others.
        let entry = NewAudit {
            actor: &target.principal.actor,
            tenant_id: target.principal.tenant_id,
            action: "repo.access",
            target: name,
            outcome: "denied",
            detail: "repository of another tenant or outside the token's scope",
            request_id: &target.request_id,
        };
        state.db().record(entry).await;
        return Err(missing());
    }
    if let Err(message) = check_repo_action(&target.principal, action) {
        if let RepoAction::Delete(kind) = action {
            target.audit(state, "object.delete", &format!("{name}/{kind}"), "denied", message).await;
        }
        return Err(ApiError::new(StatusCode::FORBIDDEN, message));
    }
    Ok(target)
}

/// `POST /v1/repos/{repo}`: prepare a repository for `arca init`. The repository must have been
/// created by an admin (or is created here for a tenant admin); 409 if it is already initialised.
pub(crate) async fn create_repo(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let principal = authenticate(&state, &headers).await?;
    if principal.role == Role::TenantAdmin && valid_name(&name) {
        if let Some(tenant_id) = principal.tenant_id {
            if state.db().find_repository(&name).await.map_err(ApiError::from_db)?.is_none() {
                let tenant = state.db().tenant_by_id(tenant_id).await.map_err(ApiError::from_db)?;
                match state.db().create_repository(&tenant.name, &name, None).await {
                    Ok(_) => {
                        let e = NewAudit {
                            actor: &principal.actor,
                            tenant_id: Some(tenant_id),
                            action: "repo.create",
                            target: &name,
                            outcome: "ok",
                            detail: "",
                            request_id: &rid.0,
                        };
                        state.db().record(e).await;
                    }
                    Err(crate::db::DbError::Conflict(_)) => {}
                    Err(e) => return Err(ApiError::from_db(e)),
                }
            }
        }
    }
    let t = open_repo(&state, &headers, &name, RepoAction::Create, &rid).await?;
    if state.db().object(t.repo.id, ObjectKind::Config.dir(), "config").await.map_err(ApiError::from_db)?.is_some() {
        return Err(ApiError::new(StatusCode::CONFLICT, format!("repository {name} is already initialised")));
    }
    let store = state.store(&name);
    blocking(move || match store.create() {
        Ok(()) => Ok(()),
        // Directories (or an orphaned config nobody catalogued) from an earlier attempt.
        Err(e) if e.kind() == arca_store::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(ApiError::from_store(e, ObjectKind::Config, "config")),
    })
    .await?;
    Ok((StatusCode::CREATED, "created").into_response())
}

/// Listing page parameters.
#[derive(Debug, Deserialize)]
pub(crate) struct ListQuery {
    after: Option<String>,
    limit: Option<i64>,
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
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let t = open_repo(&state, &headers, &repo, RepoAction::Read, &rid).await?;
    let kind = parse_kind(&kind)?;
    if let Some(after) = &q.after {
        validate_name(after).map_err(|_| ApiError::bad_request(format!("invalid `after` name {after:?}")))?;
    }
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let page: Vec<ListEntry> = if kind == ObjectKind::Lock {
        let store = state.store(&repo);
        let mut all = blocking(move || store.list(kind).map_err(|e| ApiError::from_store(e, kind, ""))).await?;
        all.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        all.into_iter()
            .filter(|o| q.after.as_deref().is_none_or(|after| o.name.as_str() > after))
            .take(limit as usize)
            .map(|o| ListEntry { name: o.name, size: o.size })
            .collect()
    } else {
        let rows = state
            .db()
            .list_objects(t.repo.id, kind.dir(), q.after.as_deref(), limit)
            .await
            .map_err(ApiError::from_db)?;
        rows.into_iter().map(|o| ListEntry { name: o.name, size: o.size as u64 }).collect()
    };
    Ok(Json(page).into_response())
}

/// The size of a visible object, or 404.
async fn visible_size(state: &AppState, t: &Target, kind: ObjectKind, name: &str) -> Result<u64, ApiError> {
    let not_found = || ApiError::not_found(format!("{kind} object {name} does not exist"));
    if kind == ObjectKind::Lock {
        let store = state.store(&t.repo.name);
        let n = name.to_string();
        return blocking(move || store.stat(kind, &n).map_err(|e| ApiError::from_store(e, kind, &n)))
            .await?
            .ok_or_else(not_found);
    }
    let row = state.db().object(t.repo.id, kind.dir(), name).await.map_err(ApiError::from_db)?;
    row.map(|r| r.size as u64).ok_or_else(not_found)
}

/// `HEAD /v1/repos/{repo}/{kind}/{name}`: the object's size.
pub(crate) async fn head_object(
    State(state): State<AppState>,
    Path((repo, kind, name)): Path<(String, String, String)>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let t = open_repo(&state, &headers, &repo, RepoAction::Read, &rid).await?;
    let kind = parse_kind(&kind)?;
    check_name(kind, &name)?;
    let size = visible_size(&state, &t, kind, &name).await?;
    Ok((
        StatusCode::OK,
        [(header::CONTENT_LENGTH, size.to_string()), (header::HeaderName::from_static(SIZE_HEADER), size.to_string())],
    )
        .into_response())
}

/// Parses `bytes=a-b` or `bytes=a-` (one range only).
pub(crate) fn parse_range(value: &str) -> Option<(u64, Option<u64>)> {
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
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let t = open_repo(&state, &headers, &repo, RepoAction::Read, &rid).await?;
    let kind = parse_kind(&kind)?;
    check_name(kind, &name)?;
    let range = match headers.get(header::RANGE) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(parse_range)
                .ok_or_else(|| ApiError::bad_request("unsupported Range header: send a single `bytes=FIRST-LAST`"))?,
        ),
    };
    let size = visible_size(&state, &t, kind, &name).await?;
    let store = state.store(&repo);
    let (status, content_range, first, length) = match range {
        None => (StatusCode::OK, None, 0, size),
        Some((first, last)) => {
            let last = last.unwrap_or(size.saturating_sub(1));
            if first > last || last >= size {
                let mut resp = ApiError::new(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    format!("range bytes={first}-{last} is outside {kind} object {name} of {size} bytes"),
                )
                .into_response();
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    resp.headers_mut().insert(header::CONTENT_RANGE, v);
                }
                return Ok(resp);
            }
            (StatusCode::PARTIAL_CONTENT, Some(format!("bytes {first}-{last}/{size}")), first, last - first + 1)
        }
    };
    let body = stream_object(store, kind, &name, first, length).await?;
    if kind != ObjectKind::Lock {
        state.db().record_traffic(&t.repo, 0, length as i64).await.map_err(ApiError::from_db)?;
    }
    let mut resp = (status, [(header::CONTENT_LENGTH, length.to_string())], body).into_response();
    if let Some(cr) = content_range.and_then(|v| HeaderValue::from_str(&v).ok()) {
        resp.headers_mut().insert(header::CONTENT_RANGE, cr);
    }
    Ok(resp)
}

/// Piece size of streamed downloads: memory per download in flight is about two pieces.
const DOWNLOAD_PIECE: u64 = 1 << 20;

/// A body that streams `length` bytes of an object from `first` on, a piece at a time, read on
/// a blocking thread. The first piece is read before answering, so a missing or unreadable
/// object is a proper error status rather than a cut-off 200.
async fn stream_object(
    store: std::sync::Arc<dyn Store>,
    kind: ObjectKind,
    name: &str,
    first: u64,
    length: u64,
) -> Result<Body, ApiError> {
    let mut reader = arca_store::RangeReader::new(store, kind, name, first, length, DOWNLOAD_PIECE);
    let n = name.to_string();
    let (head, reader) = blocking(move || {
        let head = reader.next_piece().map_err(|e| ApiError::from_store(e, kind, &n))?;
        Ok((head, reader))
    })
    .await?;
    let Some(head) = head else { return Ok(Body::empty()) };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(2);
    let name = name.to_string();
    tokio::task::spawn_blocking(move || {
        let mut reader = reader;
        if tx.blocking_send(Ok(Bytes::from(head))).is_err() {
            return;
        }
        loop {
            match reader.next_piece() {
                Ok(Some(piece)) => {
                    if tx.blocking_send(Ok(Bytes::from(piece))).is_err() {
                        return; // the client went away
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    tracing::error!("reading {kind} object {name} mid-download: {e}");
                    let _ = tx.blocking_send(Err(std::io::Error::other(format!("reading {kind} object {name}"))));
                    return;
                }
            }
        }
    });
    Ok(Body::from_stream(tokio_stream_from(rx)))
}

/// A stream over a channel's receiver (what `tokio-stream`'s `ReceiverStream` does, in four lines).
fn tokio_stream_from<T: Send + 'static>(
    rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send + 'static {
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) })
}

/// Starts or renews (`live`) or ends a lock's lease.
async fn db_lease(state: &AppState, t: &Target, name: &str, live: bool) -> Result<(), ApiError> {
    let db = state.db();
    let r = if live { db.renew_lease(t.repo.id, name).await } else { db.end_lease(t.repo.id, name).await };
    r.map_err(ApiError::from_db)
}

/// The declared body length, required so quotas and size limits can be checked before any byte
/// is accepted.
fn content_length(headers: &HeaderMap, kind: ObjectKind) -> Result<u64, ApiError> {
    let len = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .ok_or_else(|| ApiError::new(StatusCode::LENGTH_REQUIRED, "uploads need a Content-Length header"))?;
    let max = limits::max_object_bytes(kind);
    if len > max {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("{kind} objects are limited to {max} bytes; this one declares {len}"),
        ));
    }
    Ok(len)
}

/// `PUT …/locks/{name}`: a lock is the client's lease, rewritten as it is refreshed. It is
/// validated (the lock JSON every arca client writes, at most [`limits::MAX_LOCK_BYTES`]),
/// bounded ([`limits::MAX_LOCKS_PER_REPO`] a repository, lapsed ones removed to make room) and
/// metered as ingress; it bypasses the catalogue and the retention lock, since it is coordination,
/// not backup data.
async fn put_lock(state: &AppState, t: &Target, name: &str, len: u64, body: Body) -> Result<Response, ApiError> {
    let kind = ObjectKind::Lock;
    let bytes = crate::upload::read_small(body, len as usize, kind, name).await?;
    if serde_json::from_slice::<arca_core::lock::LockInfo>(&bytes).is_err() {
        return Err(ApiError::bad_request(format!(
            "lock {name} is not an arca lock (JSON with hostname, pid, operation, created, refreshed, exclusive): \
             nothing was stored"
        )));
    }
    let db = state.db();
    if !db.has_lease(t.repo.id, name).await.map_err(ApiError::from_db)? {
        crate::gc::remove_lapsed_locks(state, &t.repo).await.map_err(ApiError::from_db)?;
        let held = db.lease_count(t.repo.id).await.map_err(ApiError::from_db)?;
        if held >= limits::MAX_LOCKS_PER_REPO {
            let message = format!(
                "repository {} already holds {held} locks, the most it may: finish or remove running operations \
                 (arca unlock) before starting another",
                t.repo.name
            );
            t.audit(state, "object.put", &format!("{}/{kind}/{name}", t.repo.name), "denied", &message).await;
            return Err(ApiError::new(StatusCode::TOO_MANY_REQUESTS, message));
        }
    }
    let store = state.store(&t.repo.name);
    let n = name.to_string();
    blocking(move || store.put(kind, &n, &bytes).map_err(|e| ApiError::from_store(e, kind, &n))).await?;
    // A lock is the client's lease: the garbage collector spares what a running backup may use.
    db_lease(state, t, name, true).await?;
    db.record_traffic(&t.repo, len as i64, 0).await.map_err(ApiError::from_db)?;
    Ok(StatusCode::CREATED.into_response())
}

/// `PUT /v1/repos/{repo}/{kind}/{name}`: stores an object after checking it.
///
/// Content-addressed kinds must hash (BLAKE3) to their name; a snapshot's plaintext manifest must
/// name only packs that are stored; `config` is written once. The tenant's hard quota and the
/// kind's size limit are checked against the declared length before the body is read. The body
/// is hashed as it arrives and spooled to disk ([`crate::upload`]), never held whole in memory. A
/// repeated upload of a catalogued content-addressed object succeeds without reading or writing
/// anything (idempotent retries).
pub(crate) async fn put_object(
    State(state): State<AppState>,
    Path((repo, kind, name)): Path<(String, String, String)>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let kind = parse_kind(&kind)?;
    let t = open_repo(&state, &headers, &repo, RepoAction::Put(kind), &rid).await?;
    check_name(kind, &name)?;
    let len = content_length(&headers, kind)?;
    if kind == ObjectKind::Lock {
        return put_lock(&state, &t, &name, len, body).await;
    }
    let store = state.store(&repo);
    let db = state.db();
    if db.object(t.repo.id, kind.dir(), &name).await.map_err(ApiError::from_db)?.is_some() {
        if content_addressed(kind) {
            // Same name, so the same bytes (they were verified): already stored.
            return Ok(StatusCode::OK.into_response());
        }
        // `config`: written once; the same bytes again are a harmless retry.
        let bytes = crate::upload::read_small(body, len as usize, kind, &name).await?;
        let n = name.clone();
        let current = blocking(move || store.get(kind, &n).map_err(|e| ApiError::from_store(e, kind, &n))).await?;
        if current == bytes {
            return Ok(StatusCode::OK.into_response());
        }
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("{kind} object {name} already exists with other bytes and cannot be overwritten"),
        ));
    }
    state.check_disk_space(len).map_err(|message| {
        tracing::error!("refusing an upload of {len} bytes to {repo}: {message}");
        ApiError::new(StatusCode::INSUFFICIENT_STORAGE, "the server's disk is nearly full; nothing was stored")
    })?;
    let reservation = match db.reserve(t.repo.tenant_id, len as i64).await.map_err(ApiError::from_db)? {
        Ok(r) => r,
        Err(refusal) => {
            let message = format!(
                "quota exceeded: tenant {} stores {} of its hard quota of {}{}; this upload of {} would pass it. \
                 Nothing was stored. Forget and prune old snapshots, or ask your provider for a larger plan.",
                t.repo.tenant,
                human_bytes_exact(refusal.stored_bytes),
                human_bytes_exact(refusal.hard_quota_bytes),
                if refusal.reserved_bytes > 0 {
                    format!(" (plus {} being uploaded)", human_bytes_exact(refusal.reserved_bytes))
                } else {
                    String::new()
                },
                human_bytes_exact(refusal.requested_bytes),
            );
            t.audit(&state, "object.put", &format!("{repo}/{kind}/{name}"), "denied", &message).await;
            return Err(ApiError::new(StatusCode::INSUFFICIENT_STORAGE, message));
        }
    };
    let stored = store_checked(&state, &t, kind, &name, body, len, store).await;
    let (packs, logical) = match stored {
        Ok(found) => found,
        Err(e) => {
            if let Err(release) = db.release(reservation).await {
                tracing::error!("could not release a quota reservation (it expires on its own): {release}");
            }
            return Err(e);
        }
    };
    let object =
        NewObject { kind: kind.dir(), name: &name, size: len as i64, packs: &packs, ingress: len as i64, logical };
    if let Err(e) = db.commit_object(&t.repo, Some(reservation), &object).await {
        if matches!(e, crate::db::DbError::Conflict(_)) {
            // A snapshot naming a pack the collector just freed: its bytes must not stay behind.
            let store = state.store(&repo);
            let n = name.clone();
            let _ = blocking(move || store.delete(kind, &n).map_err(|e| ApiError::from_store(e, kind, &n))).await;
        }
        return Err(ApiError::from_db(e));
    }
    if matches!(kind, ObjectKind::Snapshot | ObjectKind::Key | ObjectKind::Config) {
        t.audit(&state, "object.put", &format!("{repo}/{kind}/{name}"), "ok", "").await;
    }
    if let (ObjectKind::Snapshot, Some(device)) = (kind, t.principal.device_id) {
        // The device's backup arrived: the health page and the overdue check go by this.
        if let Err(e) = db.device_backed_up(device).await {
            tracing::warn!("recording the backup of device {device}: {e}");
        }
    }
    let mut resp = StatusCode::CREATED.into_response();
    // Past the soft quota: the upload is stored, and the client is told (it prints a warning).
    let tenant = db.tenant_by_id(t.repo.tenant_id).await.map_err(ApiError::from_db)?;
    if tenant.soft_quota_bytes > 0 && tenant.stored_bytes > tenant.soft_quota_bytes {
        let warning = format!(
            "tenant {} stores {}, past its soft quota of {}{}",
            tenant.name,
            human_bytes_exact(tenant.stored_bytes),
            human_bytes_exact(tenant.soft_quota_bytes),
            if tenant.hard_quota_bytes > 0 {
                format!("; uploads stop at the hard quota of {}", human_bytes_exact(tenant.hard_quota_bytes))
            } else {
                String::new()
            }
        );
        if let Ok(v) = HeaderValue::from_str(&warning) {
            resp.headers_mut().insert(WARNING_HEADER, v);
        }
        // The provider hears of it once (until the tenant drops back under).
        if let Err(e) = db.raise_soft_quota_alert(tenant.id).await {
            tracing::warn!("raising the soft-quota alert of {}: {e}", tenant.name);
        }
    }
    Ok(resp)
}

/// `POST /v1/repos/{repo}/report` body.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct RunReport {
    /// `failed` (a backup run failed; successes are seen as snapshots arrive), `drill` or
    /// `drill-failed` (a restore drill's result), `replication` (an appliance's state).
    outcome: String,
    /// What went wrong, as the client printed it.
    #[serde(default)]
    message: String,
}

/// `POST /v1/repos/{repo}/report`: a device reports a backup run that failed, so the provider's
/// health page shows it and an alert goes out. Device tokens only (a person's token is not a
/// backup job).
pub(crate) async fn report(
    State(state): State<AppState>,
    Path(repo): Path<String>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
    axum::Json(r): axum::Json<RunReport>,
) -> Result<Response, ApiError> {
    let t = open_repo(&state, &headers, &repo, RepoAction::Read, &rid).await?;
    let Some(device) = t.principal.device_id else {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "only a device token reports backup runs"));
    };
    let db = state.db();
    let action = match r.outcome.as_str() {
        "failed" => {
            db.device_failed(device, &r.message).await.map_err(ApiError::from_db)?;
            "backup.failed"
        }
        "drill" | "drill-failed" => {
            db.device_drilled(device, r.outcome == "drill", &r.message).await.map_err(ApiError::from_db)?;
            "restore.drill"
        }
        "replication" => {
            // Frequent and routine: recorded, not audited.
            db.device_replication(device, &r.message).await.map_err(ApiError::from_db)?;
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
        other => {
            return Err(ApiError::bad_request(format!(
                "unknown outcome {other:?}: report failed, drill, drill-failed or replication"
            )))
        }
    };
    let detail: String = r.message.chars().take(300).collect();
    t.audit(&state, action, &repo, &r.outcome, &detail).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// How much of a spooled snapshot or index the manifest parse needs (the envelope's plaintext
/// header, [`arca_core::envelope::plaintext_prefix_len`]), at most the whole upload.
fn manifest_prefix_len(spooled: &crate::upload::Spooled) -> Result<u64, ApiError> {
    let probe = arca_core::envelope::PREFIX_PROBE as u64;
    let head = spooled.read_prefix(probe).map_err(|e| ApiError::from_io("reading a spooled upload".into(), e))?;
    let wanted = arca_core::envelope::plaintext_prefix_len(&head).map_or(probe, |n| n as u64);
    Ok(wanted.min(spooled.len))
}

/// Reads, verifies and stores an upload; returns the packs its manifest names and, for a snapshot,
/// the bytes it represents.
async fn store_checked(
    state: &AppState,
    t: &Target,
    kind: ObjectKind,
    name: &str,
    body: Body,
    len: u64,
    store: std::sync::Arc<dyn Store>,
) -> Result<(Vec<(String, String)>, i64), ApiError> {
    let dir = store.staging_dir().unwrap_or_else(|| state.spool_dir());
    let spooled = crate::upload::spool(body, len, &dir, kind, name).await?;
    if content_addressed(kind) && spooled.hash != name {
        return Err(ApiError::bad_request(format!(
            "the uploaded bytes of {kind} object {name} hash to {}: the upload is damaged or truncated, nothing was \
             stored",
            spooled.hash
        )));
    }
    let mut packs = Vec::new();
    let mut logical = 0;
    if matches!(kind, ObjectKind::Index | ObjectKind::Snapshot | ObjectKind::Pending) {
        let wanted = if kind == ObjectKind::Pending { spooled.len } else { manifest_prefix_len(&spooled)? };
        let header =
            spooled.read_prefix(wanted).map_err(|e| ApiError::from_io("reading a spooled upload".into(), e))?;
        if kind == ObjectKind::Pending {
            // A prune mark is a plain list of packs; one that does not parse would stop every
            // backup that reads the marks, so it is refused here.
            arca_core::pending::decode(&header)
                .map_err(|e| ApiError::bad_request(format!("pending mark {name} is not readable: {e}")))?;
        } else {
            let magic = if kind == ObjectKind::Index { INDEX_MAGIC } else { SNAPSHOT_MAGIC };
            // The manifest tells the collector which packs the object needs. An unreadable one is
            // refused: every index and snapshot the client writes has one.
            let (manifest, _) = read_manifest(magic, &header)
                .map_err(|e| ApiError::bad_request(format!("{kind} {name} has an unreadable manifest: {e}")))?;
            packs = manifest.iter().map(|(k, id)| (k.object_kind().dir().to_string(), id.to_hex())).collect();
        }
        if kind == ObjectKind::Snapshot {
            let claimed = read_logical(SNAPSHOT_MAGIC, &header).ok().flatten().unwrap_or(0);
            logical = i64::try_from(claimed).ok().filter(|l| *l <= limits::MAX_SNAPSHOT_LOGICAL).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "snapshot {name} claims to represent {claimed} bytes, more than the {} a snapshot may: \
                     nothing was stored",
                    limits::MAX_SNAPSHOT_LOGICAL
                ))
            })?;
            let missing = state.db().missing_objects(t.repo.id, &packs).await.map_err(ApiError::from_db)?;
            if let Some((k, id)) = missing.first() {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    format!(
                        "snapshot {name} names {} packs that are not stored (first: {k}/{id}): upload the packs first",
                        missing.len()
                    ),
                ));
            }
        }
    }
    let n = name.to_string();
    let path = spooled.into_path();
    blocking(move || store.put_file(kind, &n, &path).map_err(|e| ApiError::from_store(e, kind, &n))).await?;
    Ok((packs, logical))
}

/// `DELETE /v1/repos/{repo}/{kind}/{name}`: removes an object (idempotent), unless the
/// repository's retention lock still protects it.
pub(crate) async fn delete_object(
    State(state): State<AppState>,
    Path((repo, kind, name)): Path<(String, String, String)>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let kind = parse_kind(&kind)?;
    let t = open_repo(&state, &headers, &repo, RepoAction::Delete(kind), &rid).await?;
    check_name(kind, &name)?;
    let store = state.store(&repo);
    if kind == ObjectKind::Lock {
        let n = name.clone();
        blocking(move || store.delete(kind, &n).map_err(|e| ApiError::from_store(e, kind, &n))).await?;
        db_lease(&state, &t, &name, false).await?;
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let target = format!("{repo}/{kind}/{name}");
    let db = state.db();
    let Some(row) = db.object(t.repo.id, kind.dir(), &name).await.map_err(ApiError::from_db)? else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    // Re-read the lock period now: it may have been extended since the repository was opened.
    let lock_days = db.repository(&repo).await.map_err(ApiError::from_db)?.lock_days;
    let until = crate::limits::lock_end(row.created_at, lock_days);
    if !is_coordination(kind) && now() < until {
        let when = chrono::DateTime::from_timestamp(until, 0).map_or(until.to_string(), |d| d.to_rfc3339());
        let message = format!(
            "{kind} object {name} is under the repository's retention lock of {lock_days} days until {when}: \
             nobody can delete it before then"
        );
        t.audit(&state, "object.delete", &target, "denied", &message).await;
        return Err(ApiError::new(StatusCode::FORBIDDEN, message));
    }
    db.remove_object(&t.repo, kind.dir(), &name).await.map_err(ApiError::from_db)?;
    let n = name.clone();
    if let Err(e) = blocking(move || store.delete(kind, &n).map_err(|e| ApiError::from_store(e, kind, &n))).await {
        // Uncatalogued already: invisible, and a later scrub removes the orphaned bytes.
        tracing::warn!("{target} was uncatalogued but its bytes could not be removed: {}", e.message());
    }
    if !is_coordination(kind) {
        t.audit(&state, "object.delete", &target, "ok", &format!("{} bytes", row.size)).await;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
