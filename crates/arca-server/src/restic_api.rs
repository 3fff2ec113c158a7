//! restic's REST backend protocol (v1 and v2, as restic 0.14 and later speak it), so unmodified
//! restic clients back up to the server under `/restic/REPO/`:
//!
//! ```text
//! restic -r rest:https://USER:TOKEN@HOST/restic/REPO/ backup ~/
//! ```
//!
//! The password of the URL's basic auth is an arca token (a device token, or a tenant admin's for
//! forget and prune); the user name is informational. This module only translates: every request
//! goes through the hosting API's one path for each operation ([`crate::repo_api`]:
//! authorise, validate, quota, store, catalogue, meter, audit), with the repository's format
//! ([`crate::format`]) deciding that objects are named by the SHA-256 of their bytes. So a restic
//! repository has the tenants, quotas, metering, retention lock, scrub and audit of any other.
//!
//! What restic sees differ from its own rest-server: uploads that would pass the tenant's hard
//! quota are refused (507) before a byte is read; a device token may add objects and remove its
//! own lock files, nothing else (rest-server's `--append-only`, with lock files bounded in size
//! and number and billed); deletes inside the retention lock are refused for everyone.
//!
//! The protocol: `POST /?create=true` creates; `GET /{type}/` lists (v2: names and sizes, when the
//! client asks for `application/vnd.x.restic.rest.v2`; v1: names); `HEAD`, `GET` (with `Range`),
//! `POST` and `DELETE` on `/{type}/{name}` and `/config`. Every success is 200, as restic expects.

use arca_store::ObjectKind;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use futures_util::StreamExt;
use serde::Deserialize;

use crate::access::RepoAction;
use crate::db::accounts::RepoFormat;
use crate::errors::ApiError;
use crate::repo_api::{self, open_repo_as, Saved, Target};
use crate::routes::{authenticate, RequestId};
use crate::state::AppState;

/// restic's v2 listing media type (names and sizes).
const V2: &str = "application/vnd.x.restic.rest.v2";
/// restic's v1 listing media type (names only).
const V1: &str = "application/vnd.x.restic.rest.v1";
/// Objects per catalogue page while a listing streams.
const LIST_PAGE: i64 = 2000;

/// An error as restic's client takes it, with the basic-auth challenge on 401 (so a browser or
/// curl pointed at the URL asks for the token).
pub(crate) struct ResticError(ApiError);

impl From<ApiError> for ResticError {
    fn from(e: ApiError) -> Self {
        ResticError(e)
    }
}

impl IntoResponse for ResticError {
    fn into_response(self) -> Response {
        let unauthorized = self.0.status() == StatusCode::UNAUTHORIZED;
        let mut resp = self.0.into_response();
        if unauthorized {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"arca restic repository\""));
        }
        resp
    }
}

pub(crate) type Answer = Result<Response, ResticError>;

/// restic's object types, which are arca's store kinds of the same directory names (restic has
/// no meta packs or prune marks).
fn kind_of(dir: &str) -> Result<ObjectKind, ApiError> {
    match dir {
        "data" => Ok(ObjectKind::DataPack),
        "keys" => Ok(ObjectKind::Key),
        "locks" => Ok(ObjectKind::Lock),
        "snapshots" => Ok(ObjectKind::Snapshot),
        "index" => Ok(ObjectKind::Index),
        other => Err(ApiError::bad_request(format!(
            "unknown restic object type {other:?} (restic uses data, keys, locks, snapshots, index and config)"
        ))),
    }
}

/// Authenticates the request (basic auth's password is the token) and opens the restic
/// repository for `action`.
async fn open(
    state: &AppState,
    headers: &HeaderMap,
    repo: &str,
    action: RepoAction,
    rid: &RequestId,
) -> Result<Target, ApiError> {
    let principal = authenticate(state, headers).await?;
    open_repo_as(state, principal, repo, action, rid, RepoFormat::Restic).await
}

/// `?create=true` of `POST /restic/REPO/`.
#[derive(Debug, Deserialize)]
pub(crate) struct CreateQuery {
    #[serde(default)]
    create: Option<String>,
}

/// `POST /restic/REPO/?create=true` (`restic init`): prepares the repository's storage. The
/// repository must have been created in the console or with `arca admin repo create --format
/// restic`; a tenant admin's token may also create it here.
pub(crate) async fn create(
    State(state): State<AppState>,
    Path(repo): Path<String>,
    Query(q): Query<CreateQuery>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
) -> Answer {
    if q.create.as_deref() != Some("true") {
        return Err(ApiError::bad_request("POST on a repository's root needs ?create=true (restic init)").into());
    }
    let principal = authenticate(&state, &headers).await?;
    repo_api::create_for_tenant_admin(&state, &principal, &repo, &rid, RepoFormat::Restic).await?;
    let t = open_repo_as(&state, principal, &repo, RepoAction::Create, &rid, RepoFormat::Restic).await?;
    repo_api::create_store(&state, &t.repo.name).await?;
    Ok(StatusCode::OK.into_response())
}

/// `GET /restic/REPO/config`.
pub(crate) async fn get_config(
    State(state): State<AppState>,
    Path(repo): Path<String>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
) -> Answer {
    let t = open(&state, &headers, &repo, RepoAction::Read, &rid).await?;
    Ok(repo_api::read_object(&state, &t, ObjectKind::Config, "config", &headers).await?)
}

/// `HEAD /restic/REPO/config`.
pub(crate) async fn head_config(
    State(state): State<AppState>,
    Path(repo): Path<String>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
) -> Answer {
    let t = open(&state, &headers, &repo, RepoAction::Read, &rid).await?;
    Ok(repo_api::stat_object(&state, &t, ObjectKind::Config, "config").await?)
}

/// `POST /restic/REPO/config`: written once.
pub(crate) async fn post_config(
    State(state): State<AppState>,
    Path(repo): Path<String>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    let t = open(&state, &headers, &repo, RepoAction::Put(ObjectKind::Config), &rid).await?;
    saved(repo_api::save(&state, &t, ObjectKind::Config, "config", &headers, body).await?)
}

/// `DELETE /restic/REPO/config`.
pub(crate) async fn delete_config(
    State(state): State<AppState>,
    Path(repo): Path<String>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
) -> Answer {
    let t = open(&state, &headers, &repo, RepoAction::Delete(ObjectKind::Config), &rid).await?;
    repo_api::remove(&state, &t, ObjectKind::Config, "config").await?;
    Ok(StatusCode::OK.into_response())
}

/// `GET /restic/REPO/{type}/`: every object of the type, streamed a catalogue page at a time
/// (a repository of a million packs costs one page of memory, not a million entries).
pub(crate) async fn list(
    State(state): State<AppState>,
    Path((repo, kind)): Path<(String, String)>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
) -> Answer {
    let kind = kind_of(&kind)?;
    let t = open(&state, &headers, &repo, RepoAction::Read, &rid).await?;
    let v2 = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|m| m.trim().starts_with(V2)));
    // The first page is read before answering, so a failing catalogue is an error status.
    let first = repo_api::list_page(&state, &t, kind, None, LIST_PAGE).await?;
    let pages =
        futures_util::stream::unfold((Some(first), state, t, true), move |(page, state, t, first_entry)| async move {
            let page = match page {
                Some(p) => p,
                None => return None,
            };
            let mut first_entry = first_entry;
            let mut out = String::new();
            if first_entry {
                out.push('[');
            }
            for entry in &page {
                if !first_entry {
                    out.push(',');
                }
                first_entry = false;
                // Names are 64 hex digits, checked on upload: nothing to escape.
                if v2 {
                    out.push_str(&format!("{{\"name\":\"{}\",\"size\":{}}}", entry.name, entry.size));
                } else {
                    out.push_str(&format!("\"{}\"", entry.name));
                }
            }
            let next = if page.len() < LIST_PAGE as usize {
                out.push(']');
                None
            } else {
                let after = page.last().map(|e| e.name.clone());
                match repo_api::list_page(&state, &t, kind, after.as_deref(), LIST_PAGE).await {
                    Ok(p) if p.is_empty() => {
                        out.push(']');
                        None
                    }
                    Ok(p) => Some(p),
                    Err(e) => {
                        tracing::error!("listing {} of {} mid-answer: {}", kind, t.repo.name, e.message());
                        return Some((Err(std::io::Error::other("listing failed")), (None, state, t, first_entry)));
                    }
                }
            };
            if out == "[" {
                // An empty first page still closes the array.
                out.push(']');
            }
            Some((Ok::<Bytes, std::io::Error>(Bytes::from(out)), (next, state, t, first_entry)))
        });
    let content_type = if v2 { V2 } else { V1 };
    Ok(([(header::CONTENT_TYPE, content_type)], Body::from_stream(pages.boxed())).into_response())
}

/// `HEAD /restic/REPO/{type}/{name}`: the object's size in `Content-Length`, or 404.
pub(crate) async fn head_object(
    State(state): State<AppState>,
    Path((repo, kind, name)): Path<(String, String, String)>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
) -> Answer {
    let kind = kind_of(&kind)?;
    let t = open(&state, &headers, &repo, RepoAction::Read, &rid).await?;
    Ok(repo_api::stat_object(&state, &t, kind, &name).await?)
}

/// `GET /restic/REPO/{type}/{name}`: the object, or the byte range restic asks for.
pub(crate) async fn get_object(
    State(state): State<AppState>,
    Path((repo, kind, name)): Path<(String, String, String)>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
) -> Answer {
    let kind = kind_of(&kind)?;
    let t = open(&state, &headers, &repo, RepoAction::Read, &rid).await?;
    Ok(repo_api::read_object(&state, &t, kind, &name, &headers).await?)
}

/// `POST /restic/REPO/{type}/{name}`: stores an object; its bytes must hash (SHA-256) to its
/// name, and its declared length must fit the tenant's quota before any byte is read.
pub(crate) async fn post_object(
    State(state): State<AppState>,
    Path((repo, kind, name)): Path<(String, String, String)>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    let kind = kind_of(&kind)?;
    let t = open(&state, &headers, &repo, RepoAction::Put(kind), &rid).await?;
    saved(repo_api::save(&state, &t, kind, &name, &headers, body).await?)
}

/// `DELETE /restic/REPO/{type}/{name}`: a tenant admin's forget and prune, outside the retention
/// lock; a device its own lock files.
pub(crate) async fn delete_object(
    State(state): State<AppState>,
    Path((repo, kind, name)): Path<(String, String, String)>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
) -> Answer {
    let kind = kind_of(&kind)?;
    let t = open(&state, &headers, &repo, RepoAction::Delete(kind), &rid).await?;
    repo_api::remove(&state, &t, kind, &name).await?;
    Ok(StatusCode::OK.into_response())
}

/// 200 for a stored upload (restic takes nothing else as success), with the soft-quota warning
/// in a header.
fn saved(s: Saved) -> Answer {
    let mut resp = StatusCode::OK.into_response();
    if let Saved::Created { warning: Some(w) } = s {
        if let Ok(v) = HeaderValue::from_str(&w) {
            resp.headers_mut().insert("x-arca-warning", v);
        }
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restic_types_are_the_store_kinds() {
        for (dir, kind) in [
            ("data", ObjectKind::DataPack),
            ("keys", ObjectKind::Key),
            ("locks", ObjectKind::Lock),
            ("snapshots", ObjectKind::Snapshot),
            ("index", ObjectKind::Index),
        ] {
            assert_eq!(kind_of(dir).unwrap(), kind);
            assert_eq!(kind.dir(), dir);
        }
        assert!(kind_of("meta").is_err());
        assert!(kind_of("pending").is_err());
        assert!(kind_of("../x").is_err());
    }
}
