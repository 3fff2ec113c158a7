//! Restore in the browser: a customer's user enters the repository password, browses snapshots
//! and downloads a file, or a folder as zip or tar, streamed while it is read from the packs.
//!
//! The password opens the repository once (Argon2id, as `arca` does) and the opened repository,
//! key included, is kept in this process's memory for that browser session only ([`Vault`]): it is
//! never written to the database, a file or a log, it is dropped (and the key wiped) when the
//! user locks it again, signs out, or leaves it idle for [`IDLE`], and every unlock, failed
//! unlock and download is in the audit log. Only the tenant's own users may do this
//! ([`crate::access::can_browse_repo`]); provider staff see what the server knows without keys.
//! Servers behind a load balancer need sticky sessions for it (the key lives in one process).

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arca_core::archive::{write_archive, Format};
use arca_core::browse::{resolve, ContentReader, Target};
use arca_core::id::SnapshotId;
use arca_core::repository::Repository as OpenRepository;
use arca_core::snapshot::Snapshot;
use arca_core::tree::{Node, NodeKind};
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use minijinja::context;
use serde::{Deserialize, Serialize};

use super::listing::Listing;
use super::{check_csrf, date, human, message, not_found, render, session, Session};
use crate::access::{can_browse_repo, can_see_repo, is_staff};
use crate::db::accounts::{RepoFormat, Repository};
use crate::state::AppState;

type Page = Result<Response, Response>;

/// How long an unlocked repository stays open without being used.
pub const IDLE: Duration = Duration::from_secs(30 * 60);
/// Unlocked repositories one server keeps at most (the oldest is locked first).
const MAX_OPEN: usize = 128;
/// Wrong passwords per user and repository before unlocking pauses for [`FAILURE_WINDOW`].
const MAX_FAILURES: u32 = 5;
const FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);

/// Identifies a browser session without keeping its secret token: derived from it.
pub(crate) type SessionKey = [u8; 32];

/// The session key of a session token.
pub(super) fn session_key(token: &str) -> SessionKey {
    blake3::derive_key("arca web console 2026-11 restore vault session", token.as_bytes())
}

struct Unlocked {
    repo: Arc<OpenRepository>,
    user_id: Option<i64>,
    last_used: Instant,
}

/// Repositories unlocked by browser sessions, in memory only.
pub struct Vault {
    open: Mutex<HashMap<(SessionKey, i64), Unlocked>>,
    failures: Mutex<HashMap<(i64, i64), (u32, Instant)>>,
    /// Argon2id runs one at a time: unlocking costs ~a second of a core and a few dozen MiB, and
    /// a stream of attempts must not starve the hosting API.
    kdf: tokio::sync::Semaphore,
}

impl Default for Vault {
    fn default() -> Self {
        Vault::new()
    }
}

impl Vault {
    /// An empty vault.
    pub fn new() -> Vault {
        Vault { open: Default::default(), failures: Default::default(), kdf: tokio::sync::Semaphore::new(1) }
    }

    fn open_map(&self) -> std::sync::MutexGuard<'_, HashMap<(SessionKey, i64), Unlocked>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The repository `repo_id` as unlocked by `session`, if it still is.
    fn get(&self, session: &SessionKey, repo_id: i64) -> Option<Arc<OpenRepository>> {
        let mut open = self.open_map();
        let now = Instant::now();
        open.retain(|_, u| now.duration_since(u.last_used) < IDLE);
        let u = open.get_mut(&(*session, repo_id))?;
        u.last_used = now;
        Some(u.repo.clone())
    }

    fn put(&self, session: SessionKey, repo_id: i64, user_id: Option<i64>, repo: OpenRepository) {
        let mut open = self.open_map();
        if open.len() >= MAX_OPEN {
            if let Some(oldest) = open.iter().min_by_key(|(_, u)| u.last_used).map(|(k, _)| *k) {
                open.remove(&oldest);
            }
        }
        open.insert((session, repo_id), Unlocked { repo: Arc::new(repo), user_id, last_used: Instant::now() });
    }

    /// Swaps the handle `session` unlocked for a fresher one (a newer index); returns it. A
    /// repository locked meanwhile stays locked (the handle serves only the request in flight).
    fn replace(&self, session: &SessionKey, repo_id: i64, repo: OpenRepository) -> Arc<OpenRepository> {
        let repo = Arc::new(repo);
        if let Some(u) = self.open_map().get_mut(&(*session, repo_id)) {
            u.repo = repo.clone();
        }
        repo
    }

    /// Locks one repository of one session again.
    fn lock(&self, session: &SessionKey, repo_id: i64) -> bool {
        self.open_map().remove(&(*session, repo_id)).is_some()
    }

    /// Locks repository `repo_id` in every session but `keep` (the recovery service was revoked:
    /// staff sessions that opened it with the provider's key lose it at once).
    fn forget_repo(&self, repo_id: i64, keep: &SessionKey) {
        self.open_map().retain(|(s, r), _| *r != repo_id || s == keep);
    }

    /// Locks everything a session unlocked (sign-out).
    pub(super) fn forget_session(&self, session: &SessionKey) {
        self.open_map().retain(|(s, _), _| s != session);
    }

    /// Locks everything a user unlocked in any session (sign-out everywhere).
    pub(crate) fn forget_user(&self, user_id: i64) {
        self.open_map().retain(|_, u| u.user_id != Some(user_id));
    }

    /// Whether `user` may try another password on `repo` now; `Err` has the minutes to wait.
    fn may_try(&self, user: i64, repo: i64) -> Result<(), u64> {
        let failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        match failures.get(&(user, repo)) {
            Some((n, first)) if *n >= MAX_FAILURES && first.elapsed() < FAILURE_WINDOW => {
                Err((FAILURE_WINDOW - first.elapsed()).as_secs().div_ceil(60))
            }
            _ => Ok(()),
        }
    }

    fn record_attempt(&self, user: i64, repo: i64, ok: bool) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if ok {
            failures.remove(&(user, repo));
            return;
        }
        let entry = failures.entry((user, repo)).or_insert((0, Instant::now()));
        if entry.1.elapsed() >= FAILURE_WINDOW {
            *entry = (0, Instant::now());
        }
        entry.0 += 1;
    }
}

/// The repository of the URL, if the session may see it; "not found" (audited) otherwise.
async fn visible_repo(state: &AppState, s: &Session, name: &str) -> Result<Repository, Response> {
    match state.db().find_repository(name).await {
        // A restic repository's snapshots and keys are restic's: the portal cannot open them.
        Ok(Some(r)) if can_see_repo(&s.principal, &r) && r.format == RepoFormat::Restic => Err(message(
            StatusCode::CONFLICT,
            "A restic repository",
            "This repository is written by restic clients over restic's REST protocol; the portal browses and \
             restores arca repositories only. Restore with restic itself, e.g. `restic restore latest --target DIR`.",
            Some(s),
        )),
        Ok(Some(r)) if can_see_repo(&s.principal, &r) => Ok(r),
        Ok(Some(_)) => {
            s.audit(
                state,
                s.principal.tenant_id,
                "repo.access",
                name,
                "denied",
                "web restore: repository out of reach",
            )
            .await;
            Err(not_found(s, &format!("repository named {name}")))
        }
        Ok(None) => Err(not_found(s, &format!("repository named {name}"))),
        Err(e) => Err(super::pages::db_error(Some(s), e)),
    }
}

/// The repository, if the session's user may open its contents; a page explaining why not
/// otherwise.
async fn browsable_repo(state: &AppState, s: &Session, name: &str) -> Result<Repository, Response> {
    let r = visible_repo(state, s, name).await?;
    if can_browse_repo(&s.principal, &r) {
        return Ok(r);
    }
    // Provider staff, for a customer who granted the recovery service on this repository.
    if is_staff(&s.principal) {
        match crate::recovery::repo_grants(state, &r).await {
            Ok(g) if !g.is_empty() => return Ok(r),
            Ok(_) => {}
            Err(e) => tracing::warn!("reading the recovery grants of {}: {e}", r.name),
        }
    }
    s.audit(state, Some(r.tenant_id), "repo.browse", name, "denied", "web restore: role may not open contents").await;
    Err(message(
        StatusCode::FORBIDDEN,
        "Only the customer can open this",
        "Backups are encrypted with a password that only the customer knows. Browsing and downloading files is \
         done by the customer's own users, signed in to the portal; provider staff see what the server knows \
         without the password (sizes, dates, usage).",
        Some(s),
    ))
}

/// An audit detail, marked as the provider's when staff act with the recovery key (the
/// customer's page lists those).
fn trail(s: &Session, detail: String) -> String {
    if is_staff(&s.principal) {
        format!("{}: {detail}", crate::recovery::TRAIL_MARK)
    } else {
        detail
    }
}

/// The session's unlocked copy of the repository, or a redirect to the password form.
async fn unlocked(state: &AppState, headers: &HeaderMap, name: &str) -> Result<Opened, Response> {
    let s = session(state, headers).await?;
    let r = browsable_repo(state, &s, name).await?;
    match state.vault().get(&s.vault_key, r.id) {
        Some(repo) => Ok(Opened { s, r, repo }),
        None => Err(Redirect::to(&format!("/repos/{}/restore", r.name)).into_response()),
    }
}

/// The session's unlocked repository with the snapshot the URL names loaded (plus the path
/// inside it). A snapshot backed up after the unlock needs index files newer than the ones loaded
/// then: the repository is reopened with a fresh index (same key, still only in memory) and the
/// vault keeps the fresh handle for the rest of the session.
async fn unlocked_snapshot(
    state: &AppState,
    headers: &HeaderMap,
    params: &HashMap<String, String>,
) -> Result<(Opened, SnapshotId, String, Snapshot), Response> {
    let name = params.get("repo").map(String::as_str).unwrap_or_default();
    let mut o = unlocked(state, headers, name).await?;
    let (snap_id, path) = snapshot_and_path(&o.s, params)?;
    let repo = o.repo.clone();
    let (snap, fresh) = blocking(&o.s, move || {
        let (snap, _) = repo.load_snapshot(&snap_id)?;
        if repo.index_covers(&snap) {
            return Ok((snap, None));
        }
        let (fresh, problems) = repo.reopened_for_reading()?;
        for problem in problems {
            tracing::warn!("web restore: {problem}");
        }
        Ok((snap, Some(fresh)))
    })
    .await?;
    if let Some(fresh) = fresh {
        o.repo = state.vault().replace(&o.s.vault_key, o.r.id, fresh);
    }
    Ok((o, snap_id, path, snap))
}

struct Opened {
    s: Session,
    r: Repository,
    repo: Arc<OpenRepository>,
}

/// Runs engine work (store reads, decryption) off the async threads.
async fn blocking<T: Send + 'static>(
    s: &Session,
    work: impl FnOnce() -> arca_core::Result<T> + Send + 'static,
) -> Result<T, Response> {
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(engine_error(s, &e)),
        Err(e) => {
            tracing::error!("web restore: worker failed: {e}");
            Err(message(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Failed",
                "The restore worker failed; see the server log.",
                Some(s),
            ))
        }
    }
}

fn engine_error(s: &Session, e: &arca_core::Error) -> Response {
    use arca_core::ErrorKind as K;
    let (status, heading) = match e.kind() {
        K::NotFound | K::InvalidInput => (StatusCode::NOT_FOUND, "Not found"),
        K::Corrupt | K::Missing => (StatusCode::BAD_GATEWAY, "Damaged backup data"),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "Unavailable"),
    };
    if matches!(e.kind(), K::Corrupt | K::Missing) {
        tracing::error!("web restore: {e}");
    }
    message(status, heading, &e.to_string(), Some(s))
}

#[derive(Serialize)]
struct SnapshotRow {
    id: String,
    short: String,
    time: String,
    host: String,
    paths: String,
    tags: String,
    size: String,
    files: u64,
    changes: String,
}

fn snapshot_row(id: &SnapshotId, snap: &Snapshot) -> SnapshotRow {
    let sum = &snap.summary;
    SnapshotRow {
        id: id.to_hex(),
        short: id.short(),
        time: snap.time.format("%Y-%m-%d %H:%M").to_string(),
        host: snap.hostname.clone(),
        paths: snap.paths.join(", "),
        tags: snap.tags.join(", "),
        size: human(sum.total_bytes as i64),
        files: sum.files_new + sum.files_changed + sum.files_unmodified,
        changes: format!(
            "{} new, {} changed, {} unchanged files; {} added",
            sum.files_new,
            sum.files_changed,
            sum.files_unmodified,
            human(sum.data_added as i64)
        ),
    }
}

/// `GET /repos/{repo}/restore`: the password form, or the snapshots once unlocked.
pub(super) async fn restore(State(state): State<AppState>, Path(name): Path<String>, headers: HeaderMap) -> Page {
    let s = session(&state, &headers).await?;
    let r = browsable_repo(&state, &s, &name).await?;
    let provider = is_staff(&s.principal);
    // The recovery card is the customer's (staff see the notice that they act for the customer).
    let recovery = if provider { RecoveryView::default() } else { recovery_view(&state, &s, &r).await };
    let Some(repo) = state.vault().get(&s.vault_key, r.id) else {
        return Ok(render(
            StatusCode::OK,
            "restore.html",
            s.ctx(context! { repo => &r, locked => true, provider, recovery }),
        ));
    };
    let (mut snaps, damage) = blocking(&s, move || repo.snapshots()).await?;
    snaps.sort_by_key(|s| std::cmp::Reverse(s.1.time));
    let rows: Vec<SnapshotRow> = snaps.iter().map(|(id, snap)| snapshot_row(id, snap)).collect();
    let damage: Vec<String> = damage.iter().map(|e| e.to_string()).collect();
    Ok(render(
        StatusCode::OK,
        "restore.html",
        s.ctx(context! { repo => &r, locked => false, snapshots => rows, damage, provider, recovery }),
    ))
}

/// The recovery service as the restore page shows it to the customer.
#[derive(Serialize, Default)]
struct RecoveryView {
    /// The provider offers it (has a recovery key).
    offered: bool,
    /// When this repository's grant was made, if it has one.
    granted: Option<String>,
    /// The session may grant or revoke (the customer's own users).
    may_change: bool,
    /// The service's audit trail on this repository, newest first.
    trail: Vec<TrailRow>,
}

#[derive(Serialize)]
struct TrailRow {
    when: String,
    actor: String,
    action: String,
    outcome: String,
    detail: String,
}

async fn recovery_view(state: &AppState, s: &Session, r: &Repository) -> RecoveryView {
    let grants = match crate::recovery::public_key(state).await {
        Ok(Some((_, fp))) => Some(crate::recovery::grants_for(state, r, fp).await),
        Ok(None) => None,
        Err(e) => {
            tracing::warn!("reading the provider's recovery key: {e}");
            None
        }
    };
    let offered = grants.is_some();
    let granted = match grants {
        Some(Ok(g)) => g.first().map(|(_, slot)| slot.created.format("%Y-%m-%d %H:%M").to_string()),
        Some(Err(e)) => {
            tracing::warn!("reading the recovery grants of {}: {e}", r.name);
            None
        }
        None => None,
    };
    let trail = state
        .db()
        .recovery_trail(r.tenant_id, &r.name, 50)
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|e| TrailRow { when: date(e.at), actor: e.actor, action: e.action, outcome: e.outcome, detail: e.detail })
        .collect();
    let may_change = can_browse_repo(&s.principal, r);
    RecoveryView { offered, granted, may_change, trail }
}

#[derive(Deserialize)]
pub(super) struct RecoveryForm {
    csrf: String,
    /// `grant` or `revoke`.
    action: String,
}

/// `POST /repos/{repo}/restore/recovery`: the customer grants the provider's recovery service
/// on this repository (the repository must be unlocked in this session: its key is sealed to the
/// provider's public key) or revokes it.
pub(super) async fn set_recovery(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Form(f): Form<RecoveryForm>,
) -> Page {
    let s = session(&state, &headers).await?;
    check_csrf(&s, &f.csrf)?;
    let r = visible_repo(&state, &s, &name).await?;
    // The customer's own users (who can add key slots with `arca key add` anyway); granting also
    // needs the repository unlocked with its password in this session.
    let customer = can_browse_repo(&s.principal, &r);
    let action = match f.action.as_str() {
        "grant" => "recovery.grant",
        "revoke" => "recovery.revoke",
        _ => return Err(message(StatusCode::BAD_REQUEST, "Unknown action", "Grant or revoke.", Some(&s))),
    };
    if !customer {
        s.audit(&state, Some(r.tenant_id), action, &r.name, "denied", "web: only the customer decides").await;
        return Err(message(
            StatusCode::FORBIDDEN,
            "Only the customer can change this",
            "Granting or revoking the provider's recovery service is decided by the customer's own users.",
            Some(&s),
        ));
    }
    let failed = |e: crate::recovery::RecoveryError| {
        message(StatusCode::SERVICE_UNAVAILABLE, "The recovery service could not be changed", &e.to_string(), Some(&s))
    };
    if action == "recovery.grant" {
        let Some(repo) = state.vault().get(&s.vault_key, r.id) else {
            return Ok(Redirect::to(&format!("/repos/{}/restore", r.name)).into_response());
        };
        crate::recovery::grant(&state, &r, repo.key()).await.map_err(failed)?;
        let detail = "web: a key slot sealed to the provider's recovery key was added";
        s.audit(&state, Some(r.tenant_id), action, &r.name, "ok", detail).await;
    } else {
        let n = crate::recovery::revoke(&state, &r).await.map_err(failed)?;
        state.vault().forget_repo(r.id, &s.vault_key);
        let detail = format!("web: {n} provider key slot(s) removed");
        s.audit(&state, Some(r.tenant_id), action, &r.name, "ok", &detail).await;
    }
    Ok(Redirect::to(&format!("/repos/{}/restore", r.name)).into_response())
}

#[derive(Deserialize)]
pub(super) struct UnlockForm {
    csrf: String,
    password: String,
}

/// `POST /repos/{repo}/restore/unlock`: opens the repository with its password for this session.
pub(super) async fn unlock(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Form(f): Form<UnlockForm>,
) -> Page {
    let s = session(&state, &headers).await?;
    check_csrf(&s, &f.csrf)?;
    let r = browsable_repo(&state, &s, &name).await?;
    let user = s.principal.user_id.unwrap_or(0);
    let form_again = |status: StatusCode, error: String| {
        render(status, "restore.html", s.ctx(context! { repo => &r, locked => true, error }))
    };
    if let Err(minutes) = state.vault().may_try(user, r.id) {
        s.audit(&state, Some(r.tenant_id), "repo.unlock", &r.name, "denied", "web restore: too many wrong passwords")
            .await;
        return Err(form_again(
            StatusCode::TOO_MANY_REQUESTS,
            format!("Too many wrong passwords for this repository. Try again in {minutes} minutes."),
        ));
    }
    let store = state.store(&r.name);
    let _permit = state
        .vault()
        .kdf
        .acquire()
        .await
        .map_err(|_| form_again(StatusCode::SERVICE_UNAVAILABLE, "The server is shutting down.".into()))?;
    if is_staff(&s.principal) {
        return unlock_as_provider(&state, &s, &r, &f.password).await.map_err(|(status, error)| {
            render(status, "restore.html", s.ctx(context! { repo => &r, locked => true, provider => true, error }))
        });
    }
    let password = f.password.into_bytes();
    let opened = tokio::task::spawn_blocking(move || ready_for_reading(OpenRepository::open(store, &password)?)).await;
    match opened {
        Ok(Ok(repo)) => {
            Ok(keep_unlocked(&state, &s, &r, repo, "web restore: key held in server memory for this session").await)
        }
        Ok(Err(e)) if e.kind() == arca_core::ErrorKind::WrongPassword => {
            state.vault().record_attempt(user, r.id, false);
            s.audit(&state, Some(r.tenant_id), "repo.unlock", &r.name, "denied", "web restore: wrong password").await;
            Err(form_again(
                StatusCode::FORBIDDEN,
                "That password does not open this repository. It is the repository password used with `arca init`, \
                 not your sign-in password."
                    .into(),
            ))
        }
        Ok(Err(e)) if e.kind() == arca_core::ErrorKind::NoRepository => Err(form_again(
            StatusCode::NOT_FOUND,
            "This repository has no backups yet: run `arca init` and `arca backup` on a device first.".into(),
        )),
        Ok(Err(e)) => Err(engine_error(&s, &e)),
        Err(e) => {
            tracing::error!("web restore: unlocking failed: {e}");
            Err(form_again(StatusCode::INTERNAL_SERVER_ERROR, "Unlocking failed; see the server log.".into()))
        }
    }
}

/// Loads the index of a repository just opened for the portal (blocking).
fn ready_for_reading(mut repo: OpenRepository) -> arca_core::Result<OpenRepository> {
    for problem in repo.load_index_for_reading()? {
        tracing::warn!("web restore: {problem}");
    }
    Ok(repo)
}

/// Keeps `repo`, just opened, for this session; audits the unlock and shows the snapshots.
async fn keep_unlocked(state: &AppState, s: &Session, r: &Repository, repo: OpenRepository, detail: &str) -> Response {
    state.vault().record_attempt(s.principal.user_id.unwrap_or(0), r.id, true);
    state.vault().put(s.vault_key, r.id, s.principal.user_id, repo);
    s.audit(state, Some(r.tenant_id), "repo.unlock", &r.name, "ok", detail).await;
    Redirect::to(&format!("/repos/{}/restore", r.name)).into_response()
}

/// Staff unlock a repository whose customer granted the recovery service, with the provider's
/// recovery passphrase; audited under the customer's tenant, which sees it.
async fn unlock_as_provider(
    state: &AppState,
    s: &Session,
    r: &Repository,
    passphrase: &str,
) -> Result<Response, (StatusCode, String)> {
    use crate::recovery::RecoveryError as E;
    let user = s.principal.user_id.unwrap_or(0);
    let mark = crate::recovery::TRAIL_MARK;
    match crate::recovery::open_as_provider(state, r, passphrase).await {
        Ok(key) => {
            let store = state.store(&r.name);
            let opened =
                tokio::task::spawn_blocking(move || ready_for_reading(OpenRepository::open_with_key(store, key)?))
                    .await;
            match opened {
                Ok(Ok(repo)) => {
                    let detail = format!("{mark}: opened with the provider's recovery key for this staff session");
                    Ok(keep_unlocked(state, s, r, repo, &detail).await)
                }
                Ok(Err(e)) => Err((StatusCode::BAD_GATEWAY, e.to_string())),
                Err(e) => Err((StatusCode::INTERNAL_SERVER_ERROR, format!("unlocking failed: {e}"))),
            }
        }
        Err(E::WrongPassphrase) => {
            state.vault().record_attempt(user, r.id, false);
            let detail = format!("{mark}: wrong recovery passphrase");
            s.audit(state, Some(r.tenant_id), "repo.unlock", &r.name, "denied", &detail).await;
            Err((StatusCode::FORBIDDEN, "That is not the provider's recovery passphrase.".into()))
        }
        Err(e @ (E::NoKey | E::NotGranted)) => Err((StatusCode::FORBIDDEN, format!("{e}."))),
        Err(e) => Err((StatusCode::SERVICE_UNAVAILABLE, e.to_string())),
    }
}

/// `POST /repos/{repo}/restore/lock`: forgets the key now.
pub(super) async fn lock(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Form(f): Form<super::pages::CsrfForm>,
) -> Page {
    let s = session(&state, &headers).await?;
    check_csrf(&s, &f.csrf)?;
    let r = browsable_repo(&state, &s, &name).await?;
    if state.vault().lock(&s.vault_key, r.id) {
        s.audit(&state, Some(r.tenant_id), "repo.lock", &r.name, "ok", "web restore: key forgotten").await;
    }
    Ok(Redirect::to(&format!("/repos/{}", r.name)).into_response())
}

/// Percent-encodes one path component for a URL (everything but unreserved characters).
fn encode_component(c: &str) -> String {
    let mut out = String::with_capacity(c.len());
    for b in c.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `a/b c` → `/a/b%20c` (each component encoded; empty for the root).
fn encode_path(path: &str) -> String {
    arca_core::browse::components(path).iter().map(|c| format!("/{}", encode_component(c))).collect()
}

#[derive(Serialize)]
struct EntryRow {
    name: String,
    kind: &'static str,
    size: String,
    modified: String,
    href: String,
    download: String,
    dir: bool,
}

fn kind_label(node: &Node) -> &'static str {
    match node.kind {
        NodeKind::Dir => "folder",
        NodeKind::File => "file",
        NodeKind::Symlink { .. } => "link",
        _ => "special",
    }
}

#[derive(Serialize)]
struct Crumb {
    name: String,
    href: String,
}

/// A folder listing's sort keys.
const ENTRY_SORTS: &[&str] = &["name", "size", "modified"];

/// `GET /repos/{repo}/restore/{snap}/browse[/{*path}]`: one folder of a snapshot.
pub(super) async fn browse(
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Page {
    let (o, snap_id, path, snap) = unlocked_snapshot(&state, &headers, &params).await?;
    let repo = o.repo.clone();
    let (p, tree) = (path.clone(), snap.tree);
    let target = blocking(&o.s, move || resolve(&repo, &tree, &p)).await?;
    let base = format!("/repos/{}/restore/{}", o.r.name, snap_id.to_hex());
    let tree = match target {
        Target::Root(tree) => tree,
        Target::Node(_, node) if node.is_dir() => {
            let repo = o.repo.clone();
            let sub = node.subtree.expect("directories have subtrees");
            blocking(&o.s, move || repo.load_tree(&sub)).await?
        }
        Target::Node(..) => return Ok(Redirect::to(&format!("{base}/download{}", encode_path(&path))).into_response()),
    };
    let here = encode_path(&path);
    // A folder's entries are searched, sorted (folders first) and paged like every list.
    let list = Listing::new(&format!("{base}/browse{here}"), "", &query, ENTRY_SORTS, false);
    let mut nodes: Vec<&Node> = tree.nodes.iter().filter(|n| list.matches(&[&n.name_lossy()])).collect();
    match list.sort.as_str() {
        "size" => list.sort_by(&mut nodes, |n| (n.is_dir() == list.desc, n.size)),
        "modified" => list.sort_by(&mut nodes, |n| (n.is_dir() == list.desc, n.mtime.secs)),
        _ => list.sort_by(&mut nodes, |n| (n.is_dir() == list.desc, n.name_lossy().into_owned())),
    }
    let (nodes, list) = list.page_of(nodes);
    let entries: Vec<EntryRow> = nodes
        .into_iter()
        .map(|n| {
            let name = n.name_lossy().into_owned();
            let rel = format!("{here}/{}", encode_component(&name));
            EntryRow {
                kind: kind_label(n),
                size: if n.is_file() { human(n.size as i64) } else { String::new() },
                modified: date(n.mtime.secs),
                href: if n.is_dir() { format!("{base}/browse{rel}") } else { format!("{base}/download{rel}") },
                download: format!("{base}/download{rel}"),
                dir: n.is_dir(),
                name,
            }
        })
        .collect();
    let mut crumbs = vec![Crumb { name: "/".into(), href: format!("{base}/browse") }];
    let mut acc = String::new();
    for c in arca_core::browse::components(&path) {
        acc.push('/');
        acc.push_str(&encode_component(c));
        crumbs.push(Crumb { name: c.to_string(), href: format!("{base}/browse{acc}") });
    }
    Ok(render(
        StatusCode::OK,
        "browse.html",
        o.s.ctx(context! {
            repo => &o.r, snapshot => snapshot_row(&snap_id, &snap), crumbs, entries, list,
            zip => format!("{base}/download{here}?format=zip"), tar => format!("{base}/download{here}?format=tar"),
        }),
    ))
}

fn snapshot_and_path(s: &Session, params: &HashMap<String, String>) -> Result<(SnapshotId, String), Response> {
    let snap = params.get("snap").map(String::as_str).unwrap_or_default();
    let id = SnapshotId::from_hex(snap).ok_or_else(|| not_found(s, &format!("snapshot {snap:?}")))?;
    Ok((id, format!("/{}", params.get("path").map(String::as_str).unwrap_or_default())))
}

#[derive(Deserialize)]
pub(super) struct DownloadQuery {
    format: Option<String>,
}

/// `GET /repos/{repo}/restore/{snap}/download[/{*path}]`: a file as itself (ranges supported,
/// so interrupted downloads resume), a folder or the whole snapshot as `?format=zip` (default)
/// or `tar`, streamed.
pub(super) async fn download(
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
    Query(q): Query<DownloadQuery>,
    headers: HeaderMap,
) -> Page {
    let (o, snap_id, path, snap) = unlocked_snapshot(&state, &headers, &params).await?;
    let repo = o.repo.clone();
    let (p, tree) = (path.clone(), snap.tree);
    let target = blocking(&o.s, move || resolve(&repo, &tree, &p)).await?;
    let audit_target = format!("{}:{}", o.r.name, snap_id.short());
    match target {
        Target::Node(p, node) if node.is_file() => {
            let range = match parse_range(&headers, node.size) {
                Ok(r) => r,
                Err(()) => {
                    let mut resp = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
                    if let Ok(v) = HeaderValue::from_str(&format!("bytes */{}", node.size)) {
                        resp.headers_mut().insert(header::CONTENT_RANGE, v);
                    }
                    return Ok(resp);
                }
            };
            let (start, end) = range.unwrap_or((0, node.size.saturating_sub(1)));
            let length = if node.size == 0 { 0 } else { end - start + 1 };
            let detail = trail(&o.s, format!("web restore: file {p} ({} bytes from {start})", length));
            o.s.audit(&state, Some(o.r.tenant_id), "restore.download", &audit_target, "ok", &detail).await;
            let repo = o.repo.clone();
            let size = node.size;
            let body = stream_blocking(&state, &o.r, detail, move |out| {
                let reader = ContentReader::starting_at(&repo, &node, start);
                let copied = std::io::copy(&mut std::io::Read::take(reader, length), out)?;
                if copied != length {
                    return Err(std::io::Error::other(format!("{p}: read {copied} of {length} bytes")));
                }
                Ok(())
            });
            let mut resp = Response::new(body);
            *resp.status_mut() = if range.is_some() { StatusCode::PARTIAL_CONTENT } else { StatusCode::OK };
            let h = resp.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
            h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
            if range.is_some() {
                if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{size}")) {
                    h.insert(header::CONTENT_RANGE, v);
                }
            }
            attachment(h, &file_name_of(&path, &snap_id));
            Ok(resp)
        }
        Target::Node(p, node) if !node.is_dir() => Err(message(
            StatusCode::BAD_REQUEST,
            "Nothing to download",
            &format!("{p} is a {}, which has no content to download.", kind_label(&node)),
            Some(&o.s),
        )),
        target => {
            let format = match q.format.as_deref() {
                None | Some("zip") => Format::Zip,
                Some("tar") => Format::Tar,
                Some(other) => {
                    return Err(message(
                        StatusCode::BAD_REQUEST,
                        "Unknown format",
                        &format!("{other:?} is not an archive format here: use zip or tar."),
                        Some(&o.s),
                    ))
                }
            };
            let detail = trail(&o.s, format!("web restore: folder {path} as {}", format.extension()));
            o.s.audit(&state, Some(o.r.tenant_id), "restore.download", &audit_target, "ok", &detail).await;
            let repo = o.repo.clone();
            let body = stream_blocking(&state, &o.r, detail, move |out| {
                write_archive(&repo, &target, format, out).map_err(std::io::Error::other)?;
                Ok(())
            });
            let mut resp = Response::new(body);
            let h = resp.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(format.media_type()));
            attachment(h, &format!("{}.{}", file_name_of(&path, &snap_id), format.extension()));
            Ok(resp)
        }
    }
}

/// The download's file name: the entry's own name, or `snapshot-SHORT` for the root.
fn file_name_of(path: &str, snap: &SnapshotId) -> String {
    match arca_core::browse::components(path).last() {
        Some(name) => name.to_string(),
        None => format!("snapshot-{}", snap.short()),
    }
}

/// `Content-Disposition: attachment` with an ASCII fallback and the exact UTF-8 name (RFC 6266).
fn attachment(h: &mut HeaderMap, name: &str) {
    let ascii: String =
        name.chars().map(|c| if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' { c } else { '_' }).collect();
    let value = format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{}", encode_component(name));
    if let Ok(v) = HeaderValue::from_str(&value) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// A single `Range: bytes=A-B` / `A-` / `-N` of a body of `size` bytes: `Ok(None)` without one
/// (or with a form not supported, which gets the whole body), `Err` when it is unsatisfiable.
fn parse_range(headers: &HeaderMap, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else { return Ok(None) };
    let Some(spec) = spec.trim().strip_prefix("bytes=") else { return Ok(None) };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((a, b)) = spec.split_once('-') else { return Ok(None) };
    let (a, b) = (a.trim(), b.trim());
    let (start, end) = if a.is_empty() {
        let n: u64 = b.parse().map_err(|_| ())?;
        if n == 0 {
            return Err(());
        }
        (size.saturating_sub(n), size.saturating_sub(1))
    } else {
        let start: u64 = a.parse().map_err(|_| ())?;
        let end = if b.is_empty() { size.saturating_sub(1) } else { b.parse::<u64>().map_err(|_| ())?.min(size - 1) };
        (start, end)
    };
    if size == 0 || start >= size || start > end {
        return Err(());
    }
    Ok(Some((start, end)))
}

/// Streams what `work` writes (on a blocking thread) as the response body: memory stays at a few
/// chunks whatever the download's size, and a client that goes away stops the work. A failure
/// half way aborts the response, so the browser reports a failed download instead of keeping a
/// truncated file. The bytes sent are metered as the repository's egress.
fn stream_blocking(
    state: &AppState,
    repo: &Repository,
    what: String,
    work: impl FnOnce(&mut ChannelWriter) -> std::io::Result<()> + Send + 'static,
) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
    let handle = tokio::runtime::Handle::current();
    let (state, repo) = (state.clone(), repo.clone());
    tokio::task::spawn_blocking(move || {
        let mut out = ChannelWriter { tx, buf: Vec::with_capacity(CHUNK), sent: 0 };
        let result = work(&mut out).and_then(|()| out.flush());
        if let Err(e) = &result {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                tracing::info!("web restore: {what}: the browser went away after {} bytes", out.sent);
            } else {
                tracing::error!("web restore: {what}: failed after {} bytes: {e}", out.sent);
                let _ = out.tx.blocking_send(Err(std::io::Error::other(e.to_string())));
            }
        }
        let sent = out.sent as i64;
        if let Err(e) = handle.block_on(state.db().record_traffic(&repo, 0, sent)) {
            tracing::error!("web restore: metering {sent} bytes of egress failed: {e}");
        }
    });
    Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) }))
}

const CHUNK: usize = 256 * 1024;

/// The writing end of a streamed response body.
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
    buf: Vec<u8>,
    sent: u64,
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        let n = chunk.len() as u64;
        self.tx.blocking_send(Ok(chunk)).map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))?;
        self.sent += n;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(v: &str, size: u64) -> Result<Option<(u64, u64)>, ()> {
        let mut h = HeaderMap::new();
        h.insert(header::RANGE, HeaderValue::from_str(v).unwrap());
        parse_range(&h, size)
    }

    #[test]
    fn ranges_parse_like_rfc_9110() {
        assert_eq!(range("bytes=0-99", 1000), Ok(Some((0, 99))));
        assert_eq!(range("bytes=900-", 1000), Ok(Some((900, 999))));
        assert_eq!(range("bytes=-100", 1000), Ok(Some((900, 999))));
        assert_eq!(range("bytes=990-5000", 1000), Ok(Some((990, 999))), "the end is clamped");
        assert_eq!(range("bytes=1000-", 1000), Err(()), "past the end");
        assert_eq!(range("bytes=5-4", 1000), Err(()));
        assert_eq!(range("bytes=0-1,5-6", 1000), Ok(None), "several ranges: the whole body");
        assert_eq!(range("items=0-1", 1000), Ok(None));
        assert_eq!(parse_range(&HeaderMap::new(), 1000), Ok(None));
    }

    #[test]
    fn urls_encode_every_component() {
        assert_eq!(encode_path("/a b/ü/x?y#z"), "/a%20b/%C3%BC/x%3Fy%23z");
        assert_eq!(encode_path("/"), "");
        assert_eq!(encode_component("../.."), "..%2F..");
    }

    #[test]
    fn the_vault_forgets_by_session_user_and_idle_time() {
        let v = Vault::new();
        let tmp = tempfile::tempdir().unwrap();
        let open = || {
            let store: arca_core::repository::DynStore = Arc::new(arca_store::LocalStore::new(tmp.path().join("r")));
            let kdf = arca_core::keys::KdfParams { memory_kib: 8, iterations: 1, parallelism: 1 };
            OpenRepository::init(store.clone(), b"pw", kdf, arca_core::config::Config::default()).ok();
            OpenRepository::open(store, b"pw").unwrap()
        };
        let (a, b) = (session_key("token-a"), session_key("token-b"));
        v.put(a, 1, Some(10), open());
        v.put(b, 1, Some(11), open());
        assert!(v.get(&a, 1).is_some() && v.get(&a, 2).is_none(), "per repository");
        v.forget_session(&a);
        assert!(v.get(&a, 1).is_none() && v.get(&b, 1).is_some(), "per session");
        v.forget_user(11);
        assert!(v.get(&b, 1).is_none(), "per user");
        v.put(a, 1, Some(10), open());
        v.open_map().get_mut(&(a, 1)).unwrap().last_used = Instant::now() - IDLE;
        assert!(v.get(&a, 1).is_none(), "idle sessions lock themselves");
        for _ in 0..MAX_FAILURES {
            assert!(v.may_try(10, 1).is_ok());
            v.record_attempt(10, 1, false);
        }
        assert!(v.may_try(10, 1).is_err(), "wrong passwords pause unlocking");
        assert!(v.may_try(10, 2).is_ok() && v.may_try(11, 1).is_ok(), "only for that user and repository");
    }
}
