//! The local admin page, `/admin` (`[admin]` in the configuration): the office's IT person signs
//! in with the admin password and sees the shares, snapshots and replication, takes a snapshot
//! now, and adds, re-passwords and removes share users. User changes take effect at once, for
//! WebDAV and for SMB (smbd reloads), without a restart, and are kept in `<data_dir>/users.toml`
//! ([`crate::users::save_managed`]).
//!
//! Security: the password is checked with Argon2id, one check at a time; after
//! [`MAX_FAILURES`] wrong passwords in a row sign-in is refused for [`LOCKOUT`]. A session is a
//! random 256-bit cookie (`HttpOnly`, `SameSite=Strict`, `Secure` under `[tls]`, path `/admin`),
//! kept as its BLAKE3 hash, ended after [`IDLE`] without use; every form carries the session's
//! CSRF token, checked before anything is done. Pages send a CSP without scripts and refuse to be
//! framed. Serve it over HTTPS (`[tls]`): the password crosses the network.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};

use crate::catalog::Catalog;
use crate::config::{valid_share_name, valid_smb_user_name, Retention, ShareConfig, UserConfig};
use crate::error::Result;
use crate::smb::Samba;
use crate::snapshot::SnapshotDone;
use crate::snapshots_fs::SnapshotTree;
use crate::status::{esc, when, StatusBoard};
use crate::users::Users;

/// Sessions end after this long without a request.
pub const IDLE: Duration = Duration::from_secs(30 * 60);
/// Wrong passwords in a row before sign-in is refused for a while.
pub const MAX_FAILURES: u32 = 5;
/// How long sign-in is refused after [`MAX_FAILURES`].
pub const LOCKOUT: Duration = Duration::from_secs(60);
/// Sessions kept at most (the oldest go first).
const MAX_SESSIONS: usize = 64;
const COOKIE: &str = "arca_appliance_admin";

/// Takes a snapshot of the named share now (the appliance's job runner).
pub type SnapshotFn = Arc<dyn Fn(String) -> Pin<Box<dyn Future<Output = Result<SnapshotDone>> + Send>> + Send + Sync>;

/// Makes a new set of shares the appliance's (stored, then served by WebDAV, SMB and the schedules).
pub type SharesFn =
    Arc<dyn Fn(BTreeMap<String, ShareConfig>) -> Pin<Box<dyn Future<Output = Result<()>> + Send>> + Send + Sync>;

/// Copies the local repository to a folder (a USB disk) while no snapshot job runs; answers the
/// objects and bytes copied.
pub type ExportFn =
    Arc<dyn Fn(std::path::PathBuf) -> Pin<Box<dyn Future<Output = Result<(u64, u64)>> + Send>> + Send + Sync>;

/// What the admin page works with.
pub struct Admin {
    password_hash: String,
    users: Arc<Users>,
    user_configs: Mutex<BTreeMap<String, UserConfig>>,
    /// The shares as they are now.
    shares: Mutex<BTreeMap<String, ShareConfig>>,
    set_shares: SharesFn,
    smb: bool,
    samba: Option<Arc<Samba>>,
    status: Arc<StatusBoard>,
    data_dir: std::path::PathBuf,
    secure: bool,
    snapshot: SnapshotFn,
    export: ExportFn,
    exporting: std::sync::atomic::AtomicBool,
    catalog: Arc<Catalog>,
    repository_dir: std::path::PathBuf,
    sessions: Mutex<HashMap<[u8; 32], Session>>,
    sign_in: Mutex<SignInState>,
    checks: tokio::sync::Semaphore,
}

struct Session {
    csrf: String,
    last_used: Instant,
    /// A message for the next page (what the last form did).
    flash: Option<Flash>,
}

#[derive(Clone)]
struct Flash {
    ok: bool,
    text: String,
    /// What was typed into the add-user form, kept when it was refused.
    typed_name: Option<String>,
    /// What was typed into the add-share form, kept when it was refused.
    typed_share: Option<HashMap<String, String>>,
}

#[derive(Default)]
struct SignInState {
    failures: u32,
    locked_until: Option<Instant>,
}

/// What [`Admin::new`] takes.
pub struct AdminParts {
    /// The admin password's Argon2id hash.
    pub password_hash: String,
    /// The share users (shared with WebDAV and snapshot-now).
    pub users: Arc<Users>,
    /// The same users as configured (hashes and NT hashes).
    pub user_configs: BTreeMap<String, UserConfig>,
    /// The shares.
    pub shares: BTreeMap<String, ShareConfig>,
    /// Makes a new set of shares the appliance's.
    pub set_shares: SharesFn,
    /// Whether SMB is on (share names must then leave room for `<name>-versions`).
    pub smb: bool,
    /// The local repository (a share or an export may not be inside it).
    pub repository_dir: std::path::PathBuf,
    /// The SMB front, told of user changes.
    pub samba: Option<Arc<Samba>>,
    /// The status board.
    pub status: Arc<StatusBoard>,
    /// Where `users.toml` is kept.
    pub data_dir: std::path::PathBuf,
    /// Served over HTTPS (cookies are then `Secure`).
    pub secure: bool,
    /// Takes a snapshot now.
    pub snapshot: SnapshotFn,
    /// Exports the repository to a disk.
    pub export: ExportFn,
    /// The snapshots, for browsing and restoring previous versions.
    pub catalog: Arc<Catalog>,
}

impl Admin {
    /// The admin page's state.
    pub fn new(p: AdminParts) -> Arc<Admin> {
        Arc::new(Admin {
            password_hash: p.password_hash,
            users: p.users,
            user_configs: Mutex::new(p.user_configs),
            shares: Mutex::new(p.shares),
            set_shares: p.set_shares,
            smb: p.smb,
            samba: p.samba,
            status: p.status,
            data_dir: p.data_dir,
            secure: p.secure,
            snapshot: p.snapshot,
            export: p.export,
            exporting: std::sync::atomic::AtomicBool::new(false),
            catalog: p.catalog,
            repository_dir: p.repository_dir,
            sessions: Mutex::new(HashMap::new()),
            sign_in: Mutex::new(SignInState::default()),
            checks: tokio::sync::Semaphore::new(1),
        })
    }

    /// `/admin` and below.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/admin", get(dashboard))
            .route("/admin/signin", get(sign_in_page).post(sign_in))
            .route("/admin/signout", post(sign_out))
            .route("/admin/users", post(add_user))
            .route("/admin/users/{name}/password", post(change_password))
            .route("/admin/users/{name}/remove", post(remove_user))
            .route("/admin/snapshot/{share}", post(snapshot_now))
            .route("/admin/versions/{share}", get(versions))
            .route("/admin/versions/{share}/file", get(download))
            .route("/admin/versions/{share}/restore", post(restore))
            .route("/admin/export", post(export))
            .route("/admin/shares", post(add_share))
            .route("/admin/shares/{name}/remove", post(remove_share))
            .route("/admin/shares/{name}/users", post(share_access))
            .with_state(self.clone())
    }

    fn session_key(headers: &HeaderMap) -> Option<[u8; 32]> {
        let cookies = headers.get_all(header::COOKIE);
        for value in cookies {
            for pair in value.to_str().ok()?.split(';') {
                if let Some(token) = pair.trim().strip_prefix(&format!("{COOKIE}=")) {
                    return Some(*blake3::hash(token.as_bytes()).as_bytes());
                }
            }
        }
        None
    }

    /// The signed-in session's CSRF token (the session's idle clock restarts); None: not signed in.
    fn session(&self, headers: &HeaderMap) -> Option<String> {
        let key = Self::session_key(headers)?;
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions.retain(|_, s| s.last_used.elapsed() < IDLE);
        let s = sessions.get_mut(&key)?;
        s.last_used = Instant::now();
        Some(s.csrf.clone())
    }

    /// The message the last change left for the next page shown, taken.
    fn take_flash(&self, headers: &HeaderMap) -> Option<Flash> {
        let key = Self::session_key(headers)?;
        self.sessions.lock().unwrap_or_else(|p| p.into_inner()).get_mut(&key)?.flash.take()
    }

    /// Whether the request is signed in and carries the session's CSRF token.
    fn authorised(&self, headers: &HeaderMap, form: &HashMap<String, String>) -> bool {
        let Some(csrf) = self.session(headers) else { return false };
        let given = form.get("csrf").map(String::as_bytes).unwrap_or_default();
        constant_time_eq(given, csrf.as_bytes())
    }

    /// The users as they are now.
    fn users(&self) -> BTreeMap<String, UserConfig> {
        self.user_configs.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn shares(&self) -> BTreeMap<String, ShareConfig> {
        self.shares.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Share `name`'s folder.
    fn folder(&self, name: &str) -> Option<std::path::PathBuf> {
        self.shares.lock().unwrap_or_else(|p| p.into_inner()).get(name).map(|s| s.path.clone())
    }

    fn flash(&self, headers: &HeaderMap, flash: Flash) {
        if let Some(key) = Self::session_key(headers) {
            if let Some(s) = self.sessions.lock().unwrap_or_else(|p| p.into_inner()).get_mut(&key) {
                s.flash = Some(flash);
            }
        }
    }

    /// Makes `next` the shares (see [`SharesFn`]) and remembers them for the page.
    async fn commit_shares(&self, next: BTreeMap<String, ShareConfig>) -> Result<()> {
        (self.set_shares)(next.clone()).await?;
        *self.shares.lock().unwrap_or_else(|p| p.into_inner()) = next;
        Ok(())
    }

    /// Stores `users`, then makes WebDAV and SMB use them. Nothing changes if storing fails.
    fn apply_users(&self, users: BTreeMap<String, UserConfig>) -> Result<()> {
        crate::managed::save(
            &crate::managed::users_file(&self.data_dir),
            &crate::managed::Users { users: users.clone() },
        )?;
        self.users.replace(users.iter().map(|(n, u)| (n.clone(), u.password_hash.clone())).collect());
        if let Some(samba) = &self.samba {
            samba.reload_users(&users)?;
        }
        *self.user_configs.lock().unwrap_or_else(|p| p.into_inner()) = users;
        Ok(())
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn random_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// Security headers for every admin answer.
fn harden(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;max-width:70em;color:#222}\
    td,th{padding:.3em .8em;text-align:left;border-bottom:1px solid #ddd}table{border-collapse:collapse;margin:.5em 0}\
    .err{color:#b00}.ok{color:#060}.notice{padding:.6em 1em;border-radius:4px;background:#f4f4f4;margin:1em 0}\
    form.inline{display:inline}input{margin:.2em}button{margin:.2em;padding:.3em .8em}header{display:flex;\
    justify-content:space-between;align-items:center}";

fn page(title: &str, body: &str) -> Response {
    harden(
        Html(format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" \
             content=\"width=device-width\"><title>{t} · arca appliance</title><style>{STYLE}</style></head><body>{body}\
             </body></html>",
            t = esc(title)
        ))
        .into_response(),
    )
}

fn sign_in_form(message: Option<&str>) -> Response {
    let msg = message.map(|m| format!("<p class=\"err\" id=\"message\">{}</p>", esc(m))).unwrap_or_default();
    page(
        "Sign in",
        &format!(
            "<h1>arca appliance</h1><h2>Sign in</h2>{msg}<form method=\"post\" action=\"/admin/signin\">\
             <label>Admin password <input type=\"password\" name=\"password\" id=\"password\" autocomplete=\"current-password\" \
             required autofocus></label> <button type=\"submit\" id=\"signin\">Sign in</button></form>"
        ),
    )
}

async fn sign_in_page(State(a): State<Arc<Admin>>, headers: HeaderMap) -> Response {
    if a.session(&headers).is_some() {
        return harden(Redirect::to("/admin").into_response());
    }
    sign_in_form(None)
}

async fn sign_in(State(a): State<Arc<Admin>>, Form(form): Form<HashMap<String, String>>) -> Response {
    {
        let mut s = a.sign_in.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(until) = s.locked_until {
            if Instant::now() < until {
                let mut r = sign_in_form(Some("Too many wrong passwords: sign-in is paused for a minute."));
                *r.status_mut() = StatusCode::TOO_MANY_REQUESTS;
                return r;
            }
            s.locked_until = None;
            s.failures = 0;
        }
    }
    let password = form.get("password").cloned().unwrap_or_default();
    let ok = {
        let Ok(_permit) = a.checks.acquire().await else { return StatusCode::SERVICE_UNAVAILABLE.into_response() };
        let phc = a.password_hash.clone();
        tokio::task::spawn_blocking(move || {
            use argon2::password_hash::PasswordVerifier;
            argon2::PasswordHash::new(&phc)
                .map(|h| argon2::Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
                .unwrap_or(false)
        })
        .await
        .unwrap_or(false)
    };
    if !ok {
        let mut s = a.sign_in.lock().unwrap_or_else(|p| p.into_inner());
        s.failures += 1;
        if s.failures >= MAX_FAILURES {
            s.locked_until = Some(Instant::now() + LOCKOUT);
            tracing::warn!("admin page: {MAX_FAILURES} wrong passwords in a row; sign-in paused for a minute");
        }
        let mut r = sign_in_form(Some("Wrong password."));
        *r.status_mut() = StatusCode::UNAUTHORIZED;
        return r;
    }
    a.sign_in.lock().unwrap_or_else(|p| p.into_inner()).failures = 0;
    let token = random_token();
    {
        let mut sessions = a.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions.retain(|_, s| s.last_used.elapsed() < IDLE);
        while sessions.len() >= MAX_SESSIONS {
            let Some(oldest) = sessions.iter().min_by_key(|(_, s)| s.last_used).map(|(k, _)| *k) else { break };
            sessions.remove(&oldest);
        }
        sessions.insert(
            *blake3::hash(token.as_bytes()).as_bytes(),
            Session { csrf: random_token(), last_used: Instant::now(), flash: None },
        );
    }
    tracing::info!("admin page: signed in");
    let secure = if a.secure { "; Secure" } else { "" };
    let mut r = Redirect::to("/admin").into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("{COOKIE}={token}; Path=/admin; HttpOnly; SameSite=Strict{secure}")) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    harden(r)
}

async fn sign_out(
    State(a): State<Arc<Admin>>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if a.authorised(&headers, &form) {
        if let Some(key) = Admin::session_key(&headers) {
            a.sessions.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
        }
    }
    let mut r = Redirect::to("/admin/signin").into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("arca_appliance_admin=; Path=/admin; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    harden(r)
}

fn forbidden() -> Response {
    let mut r = page(
        "Not allowed",
        "<h1>Not allowed</h1><p>Your session ended or the form was not this page's. <a href=\"/admin\">Back to the \
         admin page</a></p>",
    );
    *r.status_mut() = StatusCode::FORBIDDEN;
    r
}

async fn dashboard(State(a): State<Arc<Admin>>, headers: HeaderMap) -> Response {
    let Some(csrf) = a.session(&headers) else { return harden(Redirect::to("/admin/signin").into_response()) };
    let flash = a.take_flash(&headers);
    let s = a.status.get();
    let csrf_field = format!("<input type=\"hidden\" name=\"csrf\" value=\"{}\">", esc(&csrf));
    let mut h = format!(
        "<header><h1>arca appliance</h1><form method=\"post\" action=\"/admin/signout\" class=\"inline\">{csrf_field}\
         <button type=\"submit\" id=\"signout\">Sign out</button></form></header><p>version {} · running since {}</p>",
        esc(&s.version),
        when(&s.started)
    );
    h += &flash_html(&flash);
    h += "<h2>Shares</h2><table><tr><th>share</th><th>folder</th><th>users</th><th>schedule</th><th>snapshots</th>\
          <th>last snapshot</th><th>problem</th><th></th></tr>";
    for (name, sh) in &s.shares {
        let users = a
            .shares()
            .get(name)
            .map(|s| s.users.clone())
            .filter(|u| !u.is_empty())
            .map(|u| u.join(", "))
            .unwrap_or("everyone".into());
        h += &format!(
            "<tr><td>{n}</td><td>{}</td><td>{}</td><td>{}</td><td id=\"snapshots-{n}\">{}</td><td>{}</td><td class=\"err\">{}</td>\
             <td><form method=\"post\" action=\"/admin/snapshot/{n}\" class=\"inline\">{csrf_field}<button type=\"submit\" \
             id=\"snapshot-{n}\">Snapshot now</button></form> <a href=\"/admin/versions/{n}\" id=\"versions-{n}\">Previous \
             versions</a></td></tr>",
            esc(&sh.path),
            esc(&users),
            esc(sh.schedule.as_deref().unwrap_or("none")),
            sh.snapshots,
            sh.last_snapshot.as_ref().map(|l| when(&Some(l.time))).unwrap_or_else(|| "—".into()),
            esc(&[sh.warning.as_deref(), sh.last_error.as_deref()].into_iter().flatten().collect::<Vec<_>>().join(" · ")),
            n = esc(name),
        );
    }
    h += "</table>";
    h += &manage_shares_html(&a, &csrf_field, flash.as_ref().and_then(|f| f.typed_share.as_ref()));
    if let Some(smb) = &s.smb {
        h += &format!("<h2>SMB</h2><p id=\"smb\">{}</p>", esc(smb));
    }
    h += "<h2>Replication</h2>";
    match &s.replication {
        None => h += "<p id=\"replication\">No provider is configured: snapshots stay on this appliance.</p>",
        Some(r) => {
            h += &format!(
                "<table id=\"replication\"><tr><th>provider</th><td>{}</td></tr><tr><th>state</th><td>{}</td></tr>\
                 <tr><th>last complete</th><td>{}</td></tr><tr><th>snapshots waiting</th><td>{}</td></tr>\
                 <tr><th>bytes waiting</th><td>{}</td></tr><tr><th>problem</th><td class=\"err\">{}</td></tr></table>",
                esc(&r.provider),
                esc(&r.state),
                when(&r.last_success),
                r.pending_snapshots,
                r.pending_bytes,
                esc(r.alert.as_deref().or(r.last_error.as_deref()).unwrap_or("")),
            );
        }
    }
    h += &format!(
        "<h2>Export to a disk</h2><p>Copies the whole local repository (encrypted, as it is) to a folder, e.g. a USB \
         disk mounted at /media/usb, to seed the provider or to keep off-site; an export to a folder that already \
         holds one copies only what is new. Snapshots wait while it runs.</p><p id=\"export-state\">{}</p>\
         <form method=\"post\" action=\"/admin/export\" id=\"export\">{csrf_field}<label>Folder <input name=\"path\" \
         id=\"export-path\" list=\"disks\" required placeholder=\"/media/usb\"></label><datalist id=\"disks\">{}</datalist> \
         <button type=\"submit\" id=\"export-start\">Export</button></form>",
        esc(s.export.as_deref().unwrap_or("No export yet.")),
        mounted_disks().iter().map(|d| format!("<option value=\"{}\">", esc(d))).collect::<String>()
    );
    h += "<h2>Users</h2><table><tr><th>user</th><th>SMB</th><th>new password</th><th>remove</th></tr>";
    let users = a.users();
    for (name, u) in &users {
        h += &format!(
            "<tr id=\"user-{n}\"><td>{n}</td><td>{}</td><td><form method=\"post\" action=\"/admin/users/{n}/password\" \
             class=\"inline\">{csrf_field}<input type=\"password\" name=\"password\" minlength=\"8\" required \
             autocomplete=\"new-password\" aria-label=\"new password of {n}\"><input type=\"password\" name=\"again\" \
             minlength=\"8\" required autocomplete=\"new-password\" aria-label=\"the same again\"><button type=\"submit\">\
             Change</button></form></td><td><form method=\"post\" action=\"/admin/users/{n}/remove\" class=\"inline\">\
             {csrf_field}<label><input type=\"checkbox\" name=\"confirm\" value=\"yes\" required> yes, remove {n}</label>\
             <button type=\"submit\">Remove</button></form></td></tr>",
            if u.nt_hash.is_some() { "yes" } else { "no (set a password here to enable)" },
            n = esc(name),
        );
    }
    let typed = flash.as_ref().and_then(|f| f.typed_name.clone()).unwrap_or_default();
    h += &format!(
        "</table><h3>Add a user</h3><form method=\"post\" action=\"/admin/users\" id=\"add-user\">{csrf_field}\
         <label>Name <input name=\"name\" id=\"new-name\" value=\"{}\" maxlength=\"32\" required></label> \
         <label>Password <input type=\"password\" name=\"password\" id=\"new-password\" minlength=\"8\" required \
         autocomplete=\"new-password\"></label> <label>Again <input type=\"password\" name=\"again\" id=\"new-again\" \
         minlength=\"8\" required autocomplete=\"new-password\"></label> <button type=\"submit\" id=\"add\">Add</button>\
         </form><p>Names: letters, digits, '.', '-' and '_', up to 32. Passwords: at least 8 characters. The user \
         can use WebDAV and SMB at once, on the shares that list them (or on every share that lists nobody).</p>",
        esc(&typed)
    );
    page("Admin", &h)
}

fn flash_html(flash: &Option<Flash>) -> String {
    match flash {
        Some(f) => {
            format!("<p class=\"notice {}\" id=\"message\">{}</p>", if f.ok { "ok" } else { "err" }, esc(&f.text))
        }
        None => String::new(),
    }
}

/// Folders under /media and /mnt that something is mounted on (USB disks), for the export form.
fn mounted_disks() -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    for base in ["/media", "/mnt"] {
        let Ok(base_meta) = std::fs::metadata(base) else { continue };
        let mut dirs: Vec<std::path::PathBuf> = std::fs::read_dir(base)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .flat_map(|p| {
                // /media/<user>/<label> as desktops mount them, and /media/<label>.
                let mut v = vec![p.clone()];
                v.extend(std::fs::read_dir(&p).into_iter().flatten().flatten().map(|e| e.path()));
                v
            })
            .collect();
        dirs.sort();
        for d in dirs {
            if std::fs::metadata(&d).is_ok_and(|m| m.is_dir() && m.dev() != base_meta.dev()) {
                out.push(d.display().to_string());
            }
        }
    }
    out
}

/// A path inside a share's previous versions: `TIME/dir/file`, segments checked.
fn version_path(raw: &str) -> std::result::Result<Vec<String>, String> {
    let segs: Vec<String> = raw.split('/').filter(|s| !s.is_empty()).map(str::to_string).collect();
    if segs.iter().any(|s| s == "." || s == ".." || s.contains('\0')) {
        return Err("that path is not allowed".into());
    }
    Ok(segs)
}

fn url_encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn size_text(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} bytes"),
    }
}

/// `/admin/versions/{share}?path=TIME/dir`: the snapshots of a share, or a folder of one, with a
/// download link and a restore button for each file.
async fn versions(
    State(a): State<Arc<Admin>>,
    Path(share): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    use futures_util::StreamExt;
    let Some(csrf) = a.session(&headers) else { return harden(Redirect::to("/admin/signin").into_response()) };
    let flash = a.take_flash(&headers);
    if a.folder(&share).is_none() {
        return not_found(&format!("There is no share {share}."));
    }
    let raw = q.get("path").cloned().unwrap_or_default();
    let segs = match version_path(&raw) {
        Ok(s) => s,
        Err(why) => return not_found(&why),
    };
    let rel = format!("/{}", segs.join("/"));
    let tree = SnapshotTree::new(a.catalog.clone(), &share);
    let mut entries: Vec<(String, bool, u64, Option<chrono::DateTime<chrono::Utc>>)> = Vec::new();
    match tree.read_dir(rel.clone().into_bytes()).await {
        Ok(mut stream) => {
            while let Some(Ok(e)) = stream.next().await {
                let name = String::from_utf8_lossy(&e.name()).into_owned();
                if let Ok(m) = e.metadata().await {
                    let modified = m.modified().ok().map(chrono::DateTime::<chrono::Utc>::from);
                    entries.push((name, m.is_dir(), m.len(), modified));
                }
            }
        }
        Err(_) => return not_found(&format!("{share}: {raw} is not a folder of a snapshot.")),
    }
    if segs.is_empty() {
        entries.reverse(); // newest snapshot first
    } else {
        entries.sort_by(|x, y| y.1.cmp(&x.1).then(x.0.cmp(&y.0)));
    }
    let csrf_field = format!("<input type=\"hidden\" name=\"csrf\" value=\"{}\">", esc(&csrf));
    let mut h = format!(
        "<header><h1>Previous versions of {s}</h1><a href=\"/admin\">Back to the admin page</a></header>{}",
        flash_html(&flash),
        s = esc(&share)
    );
    // Where we are, each part a link.
    let mut crumbs = format!("<p id=\"where\"><a href=\"/admin/versions/{}\">all snapshots</a>", url_encode(&share));
    for i in 0..segs.len() {
        crumbs += &format!(
            " / <a href=\"/admin/versions/{}?path={}\">{}</a>",
            url_encode(&share),
            url_encode(&segs[..=i].join("/")),
            esc(&segs[i])
        );
    }
    h += &crumbs;
    h += "</p><table><tr><th>name</th><th>size</th><th>changed</th><th></th></tr>";
    for (name, dir, len, modified) in &entries {
        let path = if raw.is_empty() { name.clone() } else { format!("{}/{name}", segs.join("/")) };
        let (p, s) = (url_encode(&path), url_encode(&share));
        if *dir {
            h += &format!(
                "<tr><td><a href=\"/admin/versions/{s}?path={p}\">{}/</a></td><td></td><td>{}</td><td></td></tr>",
                esc(name),
                when(modified)
            );
        } else {
            h += &format!(
                "<tr class=\"file\" data-name=\"{n}\"><td>{n}</td><td>{}</td><td>{}</td><td><a href=\"/admin/versions/{s}/file?path={p}\" \
                 download>Download</a> <form method=\"post\" action=\"/admin/versions/{s}/restore\" class=\"inline\">{csrf_field}\
                 <input type=\"hidden\" name=\"path\" value=\"{}\"><button type=\"submit\">Restore into the share</button></form></td></tr>",
                size_text(*len),
                when(modified),
                esc(&path),
                n = esc(name),
            );
        }
    }
    if entries.is_empty() {
        h += "<tr><td colspan=\"4\">Nothing here.</td></tr>";
    }
    h += "</table><p>Restoring puts the old version in the file's place in the share (the current one is replaced; it \
          stays in earlier snapshots if it was in one).</p>";
    page(&format!("Previous versions of {share}"), &h)
}

fn not_found(why: &str) -> Response {
    let mut r = page("Not found", &format!("<h1>Not found</h1><p>{}</p><p><a href=\"/admin\">Back</a></p>", esc(why)));
    *r.status_mut() = StatusCode::NOT_FOUND;
    r
}

/// `/admin/versions/{share}/file?path=…`: an old file, streamed from the local repository.
async fn download(
    State(a): State<Arc<Admin>>,
    Path(share): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if a.session(&headers).is_none() {
        return harden(Redirect::to("/admin/signin").into_response());
    }
    let Ok(segs) = version_path(q.get("path").map(String::as_str).unwrap_or_default()) else {
        return not_found("that path is not allowed");
    };
    if a.folder(&share).is_none() || segs.len() < 2 {
        return not_found("no such file");
    }
    let tree = SnapshotTree::new(a.catalog.clone(), &share);
    let mut file = match tree.open(format!("/{}", segs.join("/")).into_bytes()).await {
        Ok(f) => f,
        Err(_) => return not_found("no such file in that snapshot"),
    };
    let len = match file.metadata().await {
        Ok(m) => m.len(),
        Err(_) => return not_found("no such file in that snapshot"),
    };
    let name = segs.last().cloned().unwrap_or_default();
    // Pieces of 1 MiB, read as the client takes them.
    let body = futures_util::stream::unfold(Some(file), |state| async move {
        let mut f = state?;
        match f.read_bytes(1 << 20).await {
            Ok(b) if b.is_empty() => None,
            Ok(b) => Some((Ok::<_, std::io::Error>(b), Some(f))),
            Err(e) => Some((Err(std::io::Error::other(format!("reading the old version: {e:?}"))), None)),
        }
    });
    let mut r = axum::body::Body::from_stream(body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    let ascii: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || ".-_ ".contains(c) { c } else { '_' }).collect();
    if let Ok(v) =
        HeaderValue::from_str(&format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{}", url_encode(&name)))
    {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    harden(r)
}

/// `POST /admin/versions/{share}/restore`: writes an old version over the file in the share,
/// atomically (a hidden temporary file renamed into place: a failure leaves the current file).
async fn restore(
    State(a): State<Arc<Admin>>,
    Path(share): Path<String>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    use dav_server::fs::DavFile;
    if !a.authorised(&headers, &form) {
        return forbidden();
    }
    let raw = form.get("path").cloned().unwrap_or_default();
    let (Some(folder), Ok(segs)) = (a.folder(&share), version_path(&raw)) else {
        return not_found("no such file");
    };
    let back = |ok: bool, text: String| {
        a.flash(&headers, Flash { ok, text, typed_name: None, typed_share: None });
        let parent = segs[..segs.len().saturating_sub(1)].join("/");
        harden(
            Redirect::to(&format!("/admin/versions/{}?path={}", url_encode(&share), url_encode(&parent)))
                .into_response(),
        )
    };
    if segs.len() < 2 {
        return back(false, "Choose a file inside a snapshot.".into());
    }
    let inside = segs[1..].join("/");
    let tree = SnapshotTree::new(a.catalog.clone(), &share);
    let mut old = match tree.open(format!("/{}", segs.join("/")).into_bytes()).await {
        Ok(f) => f,
        Err(_) => return back(false, format!("{inside} is not a file of that snapshot.")),
    };
    let modified = old.metadata().await.ok().and_then(|m| m.modified().ok());
    let dest = folder.join(&inside);
    if let Some(parent) = dest.parent() {
        if let Err(e) = std::fs::create_dir_all(parent) {
            return back(false, format!("{inside} was not restored: creating its folder: {e}"));
        }
    }
    let result = async {
        let mut up = crate::share::upload::AtomicUpload::start(dest.clone(), true, false).await?;
        loop {
            let piece = old.read_bytes(1 << 20).await?;
            if piece.is_empty() {
                break;
            }
            up.write_bytes(piece).await?;
        }
        up.flush().await
    }
    .await;
    match result {
        Ok(()) => {
            if let Some(t) = modified {
                // The old version's time, as Previous Versions restores it; not worth failing for.
                let _ = std::fs::File::options().write(true).open(&dest).and_then(|f| f.set_modified(t));
            }
            tracing::info!("admin page: restored {inside} of share {share} from {}", segs[0]);
            back(true, format!("{inside} restored from the snapshot of {}.", segs[0]))
        }
        Err(e) => back(false, format!("{inside} was not restored ({e:?}); the current file is unchanged.")),
    }
}

/// `POST /admin/export`: copies the local repository to a folder, in the background; the page
/// shows how it went.
async fn export(
    State(a): State<Arc<Admin>>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if !a.authorised(&headers, &form) {
        return forbidden();
    }
    let to = std::path::PathBuf::from(form.get("path").map(|p| p.trim()).unwrap_or_default());
    let refuse = |why: String| done(&a, &headers, false, why, None);
    if !to.is_absolute() || !to.is_dir() {
        return refuse(format!(
            "{} is not a folder here: mount the disk and give its folder, e.g. /media/usb.",
            to.display()
        ));
    }
    let canonical = to.canonicalize().unwrap_or(to.clone());
    let repo = a.repository_dir.canonicalize().unwrap_or(a.repository_dir.clone());
    let in_share = a.shares().values().any(|s| canonical.starts_with(s.path.canonicalize().unwrap_or(s.path.clone())));
    if canonical.starts_with(&repo) || repo.starts_with(&canonical) || in_share {
        return refuse("Export to a folder outside the repository and the shares (a separate disk).".into());
    }
    if a.exporting.swap(true, std::sync::atomic::Ordering::SeqCst) {
        return refuse("An export is already running.".into());
    }
    let started = chrono::Utc::now();
    a.status.update(|s| s.export = Some(format!("exporting to {} since {}", to.display(), when(&Some(started)))));
    tracing::info!("admin page: export to {} started", to.display());
    let admin = a.clone();
    tokio::spawn(async move {
        let outcome = (admin.export)(to.clone()).await;
        let text = match outcome {
            Ok((objects, bytes)) => {
                format!(
                    "exported {objects} objects ({}) to {} at {}",
                    size_text(bytes),
                    to.display(),
                    when(&Some(chrono::Utc::now()))
                )
            }
            Err(e) => format!("the export to {} failed: {e}", to.display()),
        };
        tracing::info!("admin page: {text}");
        admin.status.update(|s| s.export = Some(text));
        admin.exporting.store(false, std::sync::atomic::Ordering::SeqCst);
    });
    done(
        &a,
        &headers,
        true,
        format!("The export to {} has started; this page shows when it is done.", canonical.display()),
        None,
    )
}

/// Checkboxes of every user, ticked for `ticked` (`user:<name>` fields).
fn user_boxes(users: &[String], ticked: &dyn Fn(&str) -> bool) -> String {
    users
        .iter()
        .map(|u| {
            format!(
                "<label><input type=\"checkbox\" name=\"user:{n}\" value=\"yes\"{}> {n}</label> ",
                if ticked(u) { " checked" } else { "" },
                n = esc(u)
            )
        })
        .collect()
}

/// The users a form ticked (`user:<name>` fields), among the known ones.
fn ticked_users(form: &HashMap<String, String>, known: &BTreeMap<String, UserConfig>) -> Vec<String> {
    known.keys().filter(|u| form.get(&format!("user:{u}")).is_some_and(|v| v == "yes")).cloned().collect()
}

/// Who may use each share, removing shares, and adding one.
fn manage_shares_html(a: &Admin, csrf_field: &str, typed: Option<&HashMap<String, String>>) -> String {
    let users: Vec<String> = a.users().into_keys().collect();
    let mut h = String::from("<h3>Who may use each share</h3><p>No box ticked: every user.</p><table>");
    for (name, share) in a.shares() {
        h += &format!(
            "<tr id=\"share-{n}\"><td>{n}</td><td><form method=\"post\" action=\"/admin/shares/{n}/users\" class=\"inline access\">\
             {csrf_field}{}<button type=\"submit\">Set</button></form></td><td><form method=\"post\" \
             action=\"/admin/shares/{n}/remove\" class=\"inline remove\">{csrf_field}<label><input type=\"checkbox\" \
             name=\"confirm\" value=\"yes\" required> yes, stop sharing {n}</label> <button type=\"submit\">Remove</button>\
             </form></td></tr>",
            user_boxes(&users, &|u| share.users.iter().any(|x| x == u)),
            n = esc(&name),
        );
    }
    let field = |k: &str, default: &str| esc(typed.and_then(|t| t.get(k)).map(String::as_str).unwrap_or(default));
    h += &format!(
        "</table><p>Removing a share stops its snapshots and its WebDAV and SMB access; its folder and its snapshots \
         stay.</p><h3>Add a share</h3><form method=\"post\" action=\"/admin/shares\" id=\"add-share\">{csrf_field}\
         <label>Name <input name=\"name\" id=\"share-name\" value=\"{}\" maxlength=\"64\" required></label> \
         <label>Folder <input name=\"path\" id=\"share-path\" value=\"{}\" required placeholder=\"/srv/accounts\"></label> \
         <label>Schedule <input name=\"schedule\" id=\"share-schedule\" value=\"{}\"></label> \
         <label>Keep the last <input name=\"keep_last\" id=\"share-keep\" type=\"number\" min=\"1\" max=\"100000\" value=\"{}\"> \
         snapshots</label><br>Users: {}<button type=\"submit\" id=\"share-add\">Add the share</button></form><p>Names: a-z, \
         0-9, '-' and '_'. The folder must exist, outside the repository, the appliance's data and the other shares. \
         Schedule: cron with seconds (\"0 0 * * * *\" is hourly); empty: only when asked.</p>",
        field("name", ""),
        field("path", ""),
        field("schedule", "0 0 * * * *"),
        field("keep_last", "48"),
        user_boxes(&users, &|u| typed.is_some_and(|t| t.get(&format!("user:{u}")).is_some_and(|v| v == "yes"))),
    );
    h
}

/// Whether `inner` is `outer` or inside it (both made absolute and canonical where they exist).
fn inside(inner: &std::path::Path, outer: &std::path::Path) -> bool {
    let canon = |p: &std::path::Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
    canon(inner).starts_with(canon(outer))
}

/// Checks a share the page is asked to add: the configuration's own rules, then where its folder
/// may be. Answers the reason for a refusal.
fn check_new_share(a: &Admin, name: &str, share: &ShareConfig) -> std::result::Result<(), String> {
    let shares = a.shares();
    if !valid_share_name(name) {
        return Err("A share name is 1 to 64 characters of a-z, 0-9, '-' and '_'.".into());
    }
    if shares.contains_key(name) {
        return Err(format!("There is already a share {name}."));
    }
    if a.smb
        && (shares.contains_key(&crate::config::versions_share_name(name))
            || shares.keys().any(|n| crate::config::versions_share_name(n) == name))
    {
        return Err(format!("{name} clashes with the SMB share of previous versions; choose another name."));
    }
    if !share.path.is_absolute() || !share.path.is_dir() {
        return Err(format!("{} is not a folder here (give its full path; create it first).", share.path.display()));
    }
    if share.path.as_os_str().as_encoded_bytes().iter().any(|b| b.is_ascii_control()) {
        return Err("A folder name with control characters cannot be shared.".into());
    }
    for (other, o) in &shares {
        if inside(&share.path, &o.path) || inside(&o.path, &share.path) {
            return Err(format!("{} overlaps share {other} ({}).", share.path.display(), o.path.display()));
        }
    }
    for (what, dir) in [("the repository", &a.repository_dir), ("the appliance's data", &a.data_dir)] {
        if inside(&share.path, dir) || inside(dir, &share.path) {
            return Err(format!("{} overlaps {what} ({}).", share.path.display(), dir.display()));
        }
    }
    if let Some(text) = &share.schedule {
        crate::schedule::Schedule::parse(text).map_err(|e| format!("Schedule: {e}."))?;
    }
    share.retention.policy().map_err(|e| format!("{e}."))?;
    Ok(())
}

async fn add_share(
    State(a): State<Arc<Admin>>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if !a.authorised(&headers, &form) {
        return forbidden();
    }
    let name = form.get("name").map(|n| n.trim().to_string()).unwrap_or_default();
    let keep_last = match form.get("keep_last").map(|k| k.trim()).filter(|k| !k.is_empty()) {
        None => None,
        Some(k) => match k.parse::<u32>() {
            Ok(n) if (1..=100_000).contains(&n) => Some(n),
            _ => return refuse_share(&a, &headers, "Keep the last: a number from 1 to 100000.".into(), form),
        },
    };
    let users = ticked_users(&form, &a.users());
    let share = ShareConfig {
        path: std::path::PathBuf::from(form.get("path").map(|p| p.trim()).unwrap_or_default()),
        schedule: form.get("schedule").map(|s| s.trim().to_string()).filter(|s| !s.is_empty()),
        retention: Retention { keep_last, ..Retention::default() },
        users,
    };
    if let Err(why) = check_new_share(&a, &name, &share) {
        return refuse_share(&a, &headers, why, form);
    }
    let mut next = a.shares();
    next.insert(name.clone(), share);
    match a.commit_shares(next).await {
        Ok(()) => answer(&a, &headers, Ok(()), format!("Share {name} added: it is served now."), String::new()),
        Err(e) => refuse_share(&a, &headers, format!("Share {name} was not added: {e}"), form),
    }
}

fn refuse_share(a: &Admin, headers: &HeaderMap, why: String, mut form: HashMap<String, String>) -> Response {
    form.remove("csrf");
    a.flash(headers, Flash { ok: false, text: why, typed_name: None, typed_share: Some(form) });
    harden(Redirect::to("/admin").into_response())
}

async fn remove_share(
    State(a): State<Arc<Admin>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if !a.authorised(&headers, &form) {
        return forbidden();
    }
    if form.get("confirm").map(String::as_str) != Some("yes") {
        return done(&a, &headers, false, format!("Tick the box to confirm removing share {name}."), None);
    }
    let mut next = a.shares();
    if next.remove(&name).is_none() {
        return done(&a, &headers, false, format!("There is no share {name}."), None);
    }
    answer(
        &a,
        &headers,
        a.commit_shares(next).await,
        format!("Share {name} removed; its folder and snapshots stay."),
        format!("Share {name} was not removed"),
    )
}

async fn share_access(
    State(a): State<Arc<Admin>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if !a.authorised(&headers, &form) {
        return forbidden();
    }
    let users = ticked_users(&form, &a.users());
    let mut next = a.shares();
    let Some(share) = next.get_mut(&name) else {
        return done(&a, &headers, false, format!("There is no share {name}."), None);
    };
    share.users = users.clone();
    let who = if users.is_empty() { "every user".to_string() } else { users.join(", ") };
    answer(
        &a,
        &headers,
        a.commit_shares(next).await,
        format!("Share {name} is now for {who}."),
        format!("Share {name} was not changed"),
    )
}

/// Checks a new password typed twice; returns the user's hashes.
fn new_hashes(form: &HashMap<String, String>) -> std::result::Result<UserConfig, String> {
    let password = form.get("password").map(String::as_str).unwrap_or_default();
    if form.get("again").map(String::as_str) != Some(password) {
        return Err("The two passwords differ.".into());
    }
    let password_hash = crate::users::hash_password(password).map_err(|e| format!("{e}."))?;
    let nt_hash = crate::users::nt_hash(password).map_err(|e| format!("{e}."))?;
    Ok(UserConfig { password_hash, nt_hash: Some(nt_hash) })
}

/// Back to the admin page with what a change did: `ok` (also logged) or `failed` and why.
fn answer(a: &Admin, headers: &HeaderMap, outcome: Result<()>, ok: String, failed: String) -> Response {
    match outcome {
        Ok(()) => {
            tracing::info!("admin page: {ok}");
            done(a, headers, true, ok, None)
        }
        Err(e) => done(a, headers, false, format!("{failed}: {e}"), None),
    }
}

fn done(a: &Admin, headers: &HeaderMap, ok: bool, text: String, typed_name: Option<String>) -> Response {
    a.flash(headers, Flash { ok, text, typed_name, typed_share: None });
    harden(Redirect::to("/admin").into_response())
}

async fn add_user(
    State(a): State<Arc<Admin>>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if !a.authorised(&headers, &form) {
        return forbidden();
    }
    let name = form.get("name").map(|n| n.trim().to_string()).unwrap_or_default();
    if !valid_smb_user_name(&name) {
        let text = "A user name is 1 to 32 letters, digits, '.', '-' or '_', not starting with '-'.".to_string();
        return done(&a, &headers, false, text, Some(name.chars().take(32).collect()));
    }
    let mut users = a.users();
    if users.contains_key(&name) {
        return done(&a, &headers, false, format!("There is already a user {name}."), Some(name));
    }
    let hashes = match tokio::task::spawn_blocking(move || new_hashes(&form)).await {
        Ok(Ok(h)) => h,
        Ok(Err(why)) => return done(&a, &headers, false, why, Some(name)),
        Err(e) => return done(&a, &headers, false, format!("hashing failed: {e}"), Some(name)),
    };
    users.insert(name.clone(), hashes);
    match a.apply_users(users) {
        Ok(()) => {
            tracing::info!("admin page: added user {name}");
            done(&a, &headers, true, format!("User {name} added; they can sign in now."), None)
        }
        Err(e) => done(&a, &headers, false, format!("User {name} was not added: {e}"), Some(name)),
    }
}

async fn change_password(
    State(a): State<Arc<Admin>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if !a.authorised(&headers, &form) {
        return forbidden();
    }
    let mut users = a.users();
    if !users.contains_key(&name) {
        return done(&a, &headers, false, format!("There is no user {name}."), None);
    }
    let hashes = match tokio::task::spawn_blocking(move || new_hashes(&form)).await {
        Ok(Ok(h)) => h,
        Ok(Err(why)) => return done(&a, &headers, false, format!("{name}: {why}"), None),
        Err(e) => return done(&a, &headers, false, format!("hashing failed: {e}"), None),
    };
    users.insert(name.clone(), hashes);
    answer(
        &a,
        &headers,
        a.apply_users(users),
        format!("The password of {name} is changed; the old one no longer works."),
        format!("The password of {name} was not changed"),
    )
}

async fn remove_user(
    State(a): State<Arc<Admin>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if !a.authorised(&headers, &form) {
        return forbidden();
    }
    if form.get("confirm").map(String::as_str) != Some("yes") {
        return done(&a, &headers, false, format!("Tick the box to confirm removing {name}."), None);
    }
    let mut users = a.users();
    if users.remove(&name).is_none() {
        return done(&a, &headers, false, format!("There is no user {name}."), None);
    }
    answer(
        &a,
        &headers,
        a.apply_users(users),
        format!("User {name} removed; their files stay in the shares."),
        format!("User {name} was not removed"),
    )
}

async fn snapshot_now(
    State(a): State<Arc<Admin>>,
    Path(share): Path<String>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if !a.authorised(&headers, &form) {
        return forbidden();
    }
    if !a.status.get().shares.contains_key(&share) {
        return done(&a, &headers, false, format!("There is no share {share}."), None);
    }
    tracing::info!("admin page: snapshot of share {share} asked for");
    match (a.snapshot)(share.clone()).await {
        Ok(d) => done(
            &a,
            &headers,
            true,
            format!(
                "Share {share}: snapshot {} taken ({} files, {} bytes new).",
                &d.id[..8.min(d.id.len())],
                d.files,
                d.added
            ),
            None,
        ),
        Err(e) => done(&a, &headers, false, format!("Share {share}: no snapshot: {e}"), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_in_constant_time_and_passwords_must_match() {
        assert!(
            constant_time_eq(b"abc", b"abc") && !constant_time_eq(b"abc", b"abd") && !constant_time_eq(b"ab", b"abc")
        );
        let form = |p: &str, again: &str| -> HashMap<String, String> {
            [("password".to_string(), p.to_string()), ("again".to_string(), again.to_string())].into()
        };
        assert!(new_hashes(&form("long enough", "long enougH")).is_err());
        assert!(new_hashes(&form("short", "short")).is_err());
        let h = new_hashes(&form("long enough", "long enough")).unwrap();
        assert!(h.password_hash.starts_with("$argon2id$") && h.nt_hash.is_some());
    }
}
