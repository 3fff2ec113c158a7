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

use crate::access::{can_see_repo, check_lock_removal, check_repo_action, is_coordination, RepoAction};
use crate::db::accounts::{valid_name, Principal, Repository, Role};
use crate::db::audit::NewAudit;
use crate::db::catalog::NewObject;
use crate::db::now;
use crate::errors::ApiError;
use crate::format::{check_name, content_addressed, ContentHasher, RepoFormat};
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

fn parse_kind(kind: &str) -> Result<ObjectKind, ApiError> {
    ObjectKind::from_dir(kind).ok_or_else(|| {
        ApiError::bad_request(format!(
            "unknown object kind {kind:?} (use config, keys, data, meta, index, snapshots, locks or pending)"
        ))
    })
}

/// A request's caller and repository, after every check of who may do what.
pub(crate) struct Target {
    pub(crate) principal: Principal,
    pub(crate) repo: Repository,
    request_id: String,
}

impl Target {
    pub(crate) async fn audit(&self, state: &AppState, action: &str, target: &str, outcome: &str, detail: &str) {
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

/// Authenticates the caller and checks `action` on arca repository `name`.
async fn open_repo(
    state: &AppState,
    headers: &HeaderMap,
    name: &str,
    action: RepoAction,
    request_id: &RequestId,
) -> Result<Target, ApiError> {
    let principal = authenticate(state, headers).await?;
    open_repo_as(state, principal, name, action, request_id, RepoFormat::Arca).await
}

/// Checks `action` by `principal` on repository `name`, which the protocol in use expects in
/// `format`. A repository the caller cannot see does not exist for it (and the attempt is
/// audited); one of another format is refused with the way to reach it.
pub(crate) async fn open_repo_as(
    state: &AppState,
    principal: Principal,
    name: &str,
    action: RepoAction,
    request_id: &RequestId,
    format: RepoFormat,
) -> Result<Target, ApiError> {
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
    if target.repo.format != format {
        let how = match target.repo.format {
            RepoFormat::Arca => format!("use arca with the repository URL SERVER/{name}"),
            RepoFormat::Restic => format!("use restic with -r rest:https://USER:TOKEN@SERVER/restic/{name}/"),
        };
        return Err(ApiError::bad_request(format!(
            "repository {name} is a {} repository, not a {format} one: {how}",
            target.repo.format
        )));
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
    create_for_tenant_admin(&state, &principal, &name, &rid, RepoFormat::Arca).await?;
    let t = open_repo(&state, &headers, &name, RepoAction::Create, &rid).await?;
    if state.db().object(t.repo.id, ObjectKind::Config.dir(), "config").await.map_err(ApiError::from_db)?.is_some() {
        return Err(ApiError::new(StatusCode::CONFLICT, format!("repository {name} is already initialised")));
    }
    create_store(&state, &name).await?;
    Ok((StatusCode::CREATED, "created").into_response())
}

/// A tenant admin initialising a repository that does not exist yet creates it for its tenant
/// (in `format`), through the account service like any repository creation. Others, and names
/// taken, go on to the usual checks.
pub(crate) async fn create_for_tenant_admin(
    state: &AppState,
    principal: &Principal,
    name: &str,
    rid: &RequestId,
    format: RepoFormat,
) -> Result<(), ApiError> {
    if principal.role != Role::TenantAdmin || !valid_name(name) {
        return Ok(());
    }
    let Some(tenant_id) = principal.tenant_id else { return Ok(()) };
    if state.db().find_repository(name).await.map_err(ApiError::from_db)?.is_some() {
        return Ok(());
    }
    let tenant = state.db().tenant_by_id(tenant_id).await.map_err(ApiError::from_db)?;
    let caller = crate::service::Caller::api(principal.clone(), &rid.0);
    match crate::service::accounts::create_repository(state, &caller, &tenant, name, None, format).await {
        Ok(_) => Ok(()),
        // Created by someone else meanwhile: the usual checks decide.
        Err(e) if e.status() == StatusCode::CONFLICT => Ok(()),
        Err(e) => Err(e),
    }
}

/// Creates a repository's storage (idempotent: directories from an earlier attempt are fine).
pub(crate) async fn create_store(state: &AppState, name: &str) -> Result<(), ApiError> {
    let store = state.store(name);
    blocking(move || match store.create() {
        Ok(()) => Ok(()),
        // Directories (or an orphaned config nobody catalogued) from an earlier attempt.
        Err(e) if e.kind() == arca_store::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(ApiError::from_store(e, ObjectKind::Config, "config")),
    })
    .await
}

/// Listing page parameters.
#[derive(Debug, Deserialize)]
pub(crate) struct ListQuery {
    after: Option<String>,
    limit: Option<i64>,
}

/// One object of a listing.
#[derive(Serialize)]
pub(crate) struct ListEntry {
    pub(crate) name: String,
    pub(crate) size: u64,
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
    Ok(Json(list_page(&state, &t, kind, q.after.as_deref(), limit).await?).into_response())
}

/// One page of up to `limit` objects of `kind` named after `after`, sorted by name: the catalogue
/// for stored kinds, the store itself for locks (which are not catalogued).
pub(crate) async fn list_page(
    state: &AppState,
    t: &Target,
    kind: ObjectKind,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<ListEntry>, ApiError> {
    if kind == ObjectKind::Lock {
        let store = state.store(&t.repo.name);
        let mut all = blocking(move || store.list(kind).map_err(|e| ApiError::from_store(e, kind, ""))).await?;
        all.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        return Ok(all
            .into_iter()
            .filter(|o| after.is_none_or(|after| o.name.as_str() > after))
            .take(limit as usize)
            .map(|o| ListEntry { name: o.name, size: o.size })
            .collect());
    }
    let rows = state.db().list_objects(t.repo.id, kind.dir(), after, limit).await.map_err(ApiError::from_db)?;
    Ok(rows.into_iter().map(|o| ListEntry { name: o.name, size: o.size as u64 }).collect())
}

/// The size of a visible object, or 404.
pub(crate) async fn visible_size(state: &AppState, t: &Target, kind: ObjectKind, name: &str) -> Result<u64, ApiError> {
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
    stat_object(&state, &t, kind, &name).await
}

/// A HEAD answer: the object's size (`Content-Length`, and `x-arca-size`), or 404.
pub(crate) async fn stat_object(
    state: &AppState,
    t: &Target,
    kind: ObjectKind,
    name: &str,
) -> Result<Response, ApiError> {
    check_name(t.repo.format, kind, name)?;
    let size = visible_size(state, t, kind, name).await?;
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
    read_object(&state, &t, kind, &name, &headers).await
}

/// A GET answer: the object streamed, or the one byte range the `Range` header asks for (206);
/// metered as egress.
pub(crate) async fn read_object(
    state: &AppState,
    t: &Target,
    kind: ObjectKind,
    name: &str,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    check_name(t.repo.format, kind, name)?;
    let range = match headers.get(header::RANGE) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(parse_range)
                .ok_or_else(|| ApiError::bad_request("unsupported Range header: send a single `bytes=FIRST-LAST`"))?,
        ),
    };
    let size = visible_size(state, t, kind, name).await?;
    let store = state.store(&t.repo.name);
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
    // Egress is billed as sent, once the body has ended (a client that goes away mid-download is
    // not billed for what it did not get), and off the answer's path: a database commit per
    // ranged read held every read back by its latency (restic restores are many ranged reads).
    let billing = (kind != ObjectKind::Lock).then(|| {
        let (state, repo, handle) = (state.clone(), t.repo.clone(), tokio::runtime::Handle::current());
        Box::new(move |sent: u64| {
            if sent == 0 {
                return;
            }
            if let Err(e) = handle.block_on(state.db().record_traffic(&repo, 0, sent as i64)) {
                tracing::error!("metering {sent} bytes of egress of repository {} failed: {e}", repo.name);
            }
        }) as Billing
    });
    let body = stream_object(store, kind, name, first, length, billing).await?;
    let mut resp = (status, [(header::CONTENT_LENGTH, length.to_string())], body).into_response();
    if let Some(cr) = content_range.and_then(|v| HeaderValue::from_str(&v).ok()) {
        resp.headers_mut().insert(header::CONTENT_RANGE, cr);
    }
    Ok(resp)
}

/// Piece size of streamed downloads: memory per download in flight is about two pieces.
const DOWNLOAD_PIECE: u64 = 1 << 20;

/// Called on the download's blocking thread with the bytes handed to the connection, once the
/// body has ended.
type Billing = Box<dyn FnOnce(u64) + Send + 'static>;

/// A body that streams `length` bytes of an object from `first` on, a piece at a time, read on
/// a blocking thread. The first piece is read before answering, so a missing or unreadable
/// object is a proper error status rather than a cut-off 200.
async fn stream_object(
    store: std::sync::Arc<dyn Store>,
    kind: ObjectKind,
    name: &str,
    first: u64,
    length: u64,
    billing: Option<Billing>,
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
        let mut sent = 0u64;
        let mut piece = Some(head);
        while let Some(p) = piece.take() {
            let len = p.len() as u64;
            if tx.blocking_send(Ok(Bytes::from(p))).is_err() {
                break; // the client went away
            }
            sent += len;
            match reader.next_piece() {
                Ok(next) => piece = next,
                Err(e) => {
                    tracing::error!("reading {kind} object {name} mid-download: {e}");
                    let _ = tx.blocking_send(Err(std::io::Error::other(format!("reading {kind} object {name}"))));
                }
            }
        }
        drop(tx);
        if let Some(bill) = billing {
            bill(sent);
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
    let r = if live {
        db.renew_lease(t.repo.id, name, &t.principal.actor).await
    } else {
        db.end_lease(t.repo.id, name).await
    };
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

/// Checks that the caller may replace or remove lock `name` ([`check_lock_removal`]); a refusal
/// is audited.
async fn check_lock_holder(state: &AppState, t: &Target, name: &str, what: &str) -> Result<(), ApiError> {
    let (holder, lapsed) = state.db().lease_holder(t.repo.id, name).await.map_err(ApiError::from_db)?;
    if let Err(message) = check_lock_removal(&t.principal, holder.as_deref(), lapsed) {
        t.audit(state, what, &format!("{}/locks/{name}", t.repo.name), "denied", message).await;
        return Err(ApiError::new(StatusCode::FORBIDDEN, message));
    }
    Ok(())
}

/// `PUT …/locks/{name}`: a lock is the client's lease. It is validated (arca: the lock JSON every
/// arca client writes; restic: named by the SHA-256 of its encrypted bytes), at most
/// [`limits::MAX_LOCK_BYTES`], bounded ([`limits::MAX_LOCKS_PER_REPO`] a repository, lapsed ones
/// removed to make room), metered as ingress, and only its holder may rewrite it (arca clients
/// refresh theirs in place). It bypasses the catalogue and the retention lock, since it is
/// coordination, not backup data.
async fn put_lock(state: &AppState, t: &Target, name: &str, len: u64, body: Body) -> Result<Saved, ApiError> {
    let kind = ObjectKind::Lock;
    let bytes = crate::upload::read_small(body, len as usize, kind, name).await?;
    match t.repo.format {
        RepoFormat::Arca => {
            if serde_json::from_slice::<arca_core::lock::LockInfo>(&bytes).is_err() {
                return Err(ApiError::bad_request(format!(
                    "lock {name} is not an arca lock (JSON with hostname, pid, operation, created, refreshed, \
                     exclusive): nothing was stored"
                )));
            }
        }
        RepoFormat::Restic => {
            let hash = ContentHasher::of(t.repo.format, &bytes);
            if hash != name {
                return Err(ApiError::bad_request(format!(
                    "the uploaded bytes of lock {name} hash to {hash}: the upload is damaged, nothing was stored"
                )));
            }
        }
    }
    let db = state.db();
    if db.has_lease(t.repo.id, name).await.map_err(ApiError::from_db)? {
        check_lock_holder(state, t, name, "object.put").await?;
    } else {
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
    Ok(Saved::Created { warning: None })
}

/// What [`save`] did.
pub(crate) enum Saved {
    /// Stored now; `warning` for the user (past the soft quota).
    Created { warning: Option<String> },
    /// Already stored with these bytes (a retry): nothing was read or written.
    Existing,
}

/// `PUT /v1/repos/{repo}/{kind}/{name}`: stores an object after checking it ([`save`]); 201, or
/// 200 for an object already stored.
pub(crate) async fn put_object(
    State(state): State<AppState>,
    Path((repo, kind, name)): Path<(String, String, String)>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let kind = parse_kind(&kind)?;
    let t = open_repo(&state, &headers, &repo, RepoAction::Put(kind), &rid).await?;
    match save(&state, &t, kind, &name, &headers, body).await? {
        Saved::Existing => Ok(StatusCode::OK.into_response()),
        Saved::Created { warning } => {
            let mut resp = StatusCode::CREATED.into_response();
            if let Some(v) = warning.and_then(|w| HeaderValue::from_str(&w).ok()) {
                resp.headers_mut().insert(WARNING_HEADER, v);
            }
            Ok(resp)
        }
    }
}

/// Stores an object of a repository the caller may write, after checking it; the one upload path
/// of both protocols (arca's and restic's).
///
/// Content-addressed kinds must hash to their name (BLAKE3 or SHA-256, by the repository's
/// format, [`crate::format`]); a snapshot's plaintext manifest must
/// name only packs that are stored; `config` is written once. The tenant's hard quota and the
/// kind's size limit are checked against the declared length before the body is read. The body
/// is hashed as it arrives and spooled to disk ([`crate::upload`]), never held whole in memory. A
/// repeated upload of a catalogued content-addressed object succeeds without reading or writing
/// anything (idempotent retries).
pub(crate) async fn save(
    state: &AppState,
    t: &Target,
    kind: ObjectKind,
    name: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Saved, ApiError> {
    let (state, t, name, repo) = (state.clone(), t, name.to_string(), t.repo.name.clone());
    check_name(t.repo.format, kind, &name)?;
    let len = content_length(headers, kind)?;
    if kind == ObjectKind::Lock {
        return put_lock(&state, t, &name, len, body).await;
    }
    let store = state.store(&repo);
    let db = state.db();
    if db.object(t.repo.id, kind.dir(), &name).await.map_err(ApiError::from_db)?.is_some() {
        if content_addressed(t.repo.format, kind) {
            // Same name, so the same bytes (they were verified): already stored.
            return Ok(Saved::Existing);
        }
        // `config`: written once; the same bytes again are a harmless retry.
        let bytes = crate::upload::read_small(body, len as usize, kind, &name).await?;
        let n = name.clone();
        let current = blocking(move || store.get(kind, &n).map_err(|e| ApiError::from_store(e, kind, &n))).await?;
        if current == bytes {
            return Ok(Saved::Existing);
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
    let stored = store_checked(&state, t, kind, &name, body, len, store).await;
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
    // Past the soft quota: the upload is stored, and the client is told (it prints a warning).
    let mut warned = None;
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
        warned = Some(warning);
        // The provider hears of it once (until the tenant drops back under).
        if let Err(e) = db.raise_soft_quota_alert(tenant.id).await {
            tracing::warn!("raising the soft-quota alert of {}: {e}", tenant.name);
        }
    }
    Ok(Saved::Created { warning: warned })
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
    let hasher = ContentHasher::new(t.repo.format);
    let spooled = crate::upload::spool(body, len, &dir, kind, name, hasher).await?;
    if content_addressed(t.repo.format, kind) && spooled.hash != name {
        return Err(ApiError::bad_request(format!(
            "the uploaded bytes of {kind} object {name} hash to {}: the upload is damaged or truncated, nothing was \
             stored",
            spooled.hash
        )));
    }
    let mut packs = Vec::new();
    let mut logical = 0;
    // Only arca's format has plaintext manifests; restic's objects are wholly encrypted.
    if t.repo.format == RepoFormat::Arca
        && matches!(kind, ObjectKind::Index | ObjectKind::Snapshot | ObjectKind::Pending)
    {
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

/// `DELETE /v1/repos/{repo}/{kind}/{name}`: removes an object ([`remove`]).
pub(crate) async fn delete_object(
    State(state): State<AppState>,
    Path((repo, kind, name)): Path<(String, String, String)>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let kind = parse_kind(&kind)?;
    let t = open_repo(&state, &headers, &repo, RepoAction::Delete(kind), &rid).await?;
    remove(&state, &t, kind, &name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Removes an object (idempotent: one that is not there is no error) of a repository the caller
/// may delete from, unless the repository's retention lock still protects it, on the server's
/// clock. A lock file only its holder (or a tenant admin) may remove, or anyone once its lease
/// lapsed. The one delete path of both protocols.
pub(crate) async fn remove(state: &AppState, t: &Target, kind: ObjectKind, name: &str) -> Result<(), ApiError> {
    check_name(t.repo.format, kind, name)?;
    let repo = &t.repo.name;
    let store = state.store(repo);
    if kind == ObjectKind::Lock {
        check_lock_holder(state, t, name, "object.delete").await?;
        let n = name.to_string();
        blocking(move || store.delete(kind, &n).map_err(|e| ApiError::from_store(e, kind, &n))).await?;
        db_lease(state, t, name, false).await?;
        return Ok(());
    }
    let target = format!("{repo}/{kind}/{name}");
    let db = state.db();
    let Some(row) = db.object(t.repo.id, kind.dir(), name).await.map_err(ApiError::from_db)? else {
        return Ok(());
    };
    // Re-read the lock period now: it may have been extended since the repository was opened.
    let lock_days = db.repository(repo).await.map_err(ApiError::from_db)?.lock_days;
    let until = crate::limits::lock_end(row.created_at, lock_days);
    if !is_coordination(kind) && now() < until {
        let when = chrono::DateTime::from_timestamp(until, 0).map_or(until.to_string(), |d| d.to_rfc3339());
        let message = format!(
            "{kind} object {name} is under the repository's retention lock of {lock_days} days until {when}: \
             nobody can delete it before then"
        );
        t.audit(state, "object.delete", &target, "denied", &message).await;
        return Err(ApiError::new(StatusCode::FORBIDDEN, message));
    }
    db.remove_object(&t.repo, kind.dir(), name).await.map_err(ApiError::from_db)?;
    let n = name.to_string();
    if let Err(e) = blocking(move || store.delete(kind, &n).map_err(|e| ApiError::from_store(e, kind, &n))).await {
        // Uncatalogued already: invisible, and a later scrub removes the orphaned bytes.
        tracing::warn!("{target} was uncatalogued but its bytes could not be removed: {}", e.message());
    }
    if !is_coordination(kind) {
        t.audit(state, "object.delete", &target, "ok", &format!("{} bytes", row.size)).await;
    }
    Ok(())
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
}
