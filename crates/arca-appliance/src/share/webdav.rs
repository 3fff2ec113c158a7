//! The WebDAV endpoint: `/dav/<share>/…`, HTTP Basic authentication against the appliance's
//! users, then dav-server over the share's [`ShareFs`] with an in-memory lock system.
//!
//! Before dav-server sees a request it is checked here: a path with `..` or `.` segments (raw or
//! percent-encoded) is refused with 400, a body declared larger than `max_upload` with 413, and a
//! body without a declared length is cut off at `max_upload`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use base64::Engine;
use dav_server::{memls::MemLs, DavConfig, DavHandler};

use super::fs::ShareFs;
use crate::catalog::Catalog;
use crate::config::ShareConfig;
use crate::users::Users;

/// Bytes read from a file per step of a GET.
const READ_BUF: usize = 256 * 1024;

/// One share as the endpoint serves it.
struct Share {
    handler: DavHandler,
    /// Users allowed (empty: all).
    users: Vec<String>,
    path: std::path::PathBuf,
}

/// Everything the endpoint needs.
pub struct Dav {
    /// Replaced when the admin page adds or removes a share or changes who may use it.
    shares: std::sync::RwLock<BTreeMap<String, Arc<Share>>>,
    users: Arc<Users>,
    catalog: Arc<Catalog>,
    max_upload: u64,
}

fn share_handler(name: &str, cfg: &ShareConfig, catalog: &Arc<Catalog>) -> DavHandler {
    DavHandler::builder()
        .filesystem(Box::new(ShareFs::new(cfg.path.clone(), name, catalog.clone())))
        .locksystem(MemLs::new())
        .strip_prefix(format!("/dav/{name}"))
        .hide_symlinks(true)
        // Larger reads than dav-server's 16 KiB default: fewer blocking-thread hops per MiB of a
        // download (GET of a large file ran at 45% of rclone's speed).
        .read_buf_size(READ_BUF)
        .build_handler()
}

impl Dav {
    /// The endpoint for `shares`.
    pub fn new(
        shares: &BTreeMap<String, ShareConfig>,
        users: Arc<Users>,
        catalog: Arc<Catalog>,
        max_upload: u64,
    ) -> Dav {
        let dav = Dav { shares: Default::default(), users, catalog, max_upload };
        dav.set_shares(shares);
        dav
    }

    /// Serves `shares` from now on. A share whose folder is unchanged keeps its handler (and the
    /// WebDAV locks its clients hold); only who may use it is updated.
    pub fn set_shares(&self, shares: &BTreeMap<String, ShareConfig>) {
        let mut current = self.shares.write().unwrap_or_else(|p| p.into_inner());
        let next = shares
            .iter()
            .map(|(name, cfg)| {
                let handler = match current.get(name) {
                    Some(old) if old.path == cfg.path => old.handler.clone(),
                    _ => share_handler(name, cfg, &self.catalog),
                };
                (name.clone(), Arc::new(Share { handler, users: cfg.users.clone(), path: cfg.path.clone() }))
            })
            .collect();
        *current = next;
    }

    /// The routes under `/dav`.
    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/dav/{share}", any(handle))
            .route("/dav/{share}/", any(handle))
            .route("/dav/{share}/{*path}", any(handle))
            .with_state(self)
    }
}

fn refuse(status: StatusCode, message: &str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{message}\n")).into_response()
}

pub(crate) fn unauthorized() -> Response {
    let mut r = refuse(StatusCode::UNAUTHORIZED, "a share user name and password are needed");
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"arca appliance\", charset=\"UTF-8\""),
    );
    r
}

/// The user and password of a Basic `Authorization` header.
pub(crate) fn basic_credentials(headers: &header::HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// Whether a raw request path has a `.` or `..` segment, plain or percent-encoded.
fn has_dot_segments(path: &str) -> bool {
    path.split('/').any(|seg| {
        let lower = seg.to_ascii_lowercase();
        let decoded = lower.replace("%2e", ".");
        decoded == "." || decoded == ".."
    })
}

/// Whether `req` would change something under a share's `/.snapshots` (its path for methods that
/// write, or its `Destination` for COPY and MOVE). The file system refuses these too; answering
/// here gives one clear 403 instead of a multi-status listing every refused file.
fn writes_previous_versions(req: &Request) -> bool {
    let in_snapshots = |path: &str| {
        let mut segs = path.strip_prefix("/dav/").unwrap_or("").split('/');
        segs.next();
        segs.next() == Some(crate::snapshots_fs::SNAPSHOTS_DIR)
    };
    let method = req.method().as_str();
    let reads = matches!(method, "GET" | "HEAD" | "OPTIONS" | "PROPFIND" | "COPY");
    if !reads && in_snapshots(req.uri().path()) {
        return true;
    }
    if matches!(method, "COPY" | "MOVE") {
        if let Some(dest) = req.headers().get("destination").and_then(|d| d.to_str().ok()) {
            let path = dest.parse::<http::Uri>().map(|u| u.path().to_string()).unwrap_or_default();
            return in_snapshots(&path);
        }
    }
    false
}

/// RFC 4918's answer to `PROPFIND` with `Depth: infinity` (a whole tree in one answer would cost
/// the appliance unbounded time and memory): 403 with the `propfind-finite-depth` precondition.
fn finite_depth_required() -> Response {
    (
        StatusCode::FORBIDDEN,
        [(header::CONTENT_TYPE, "application/xml; charset=utf-8")],
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<D:error xmlns:D=\"DAV:\"><D:propfind-finite-depth/></D:error>\n",
    )
        .into_response()
}

/// The methods that create the entry their path names.
fn creates(method: &str) -> bool {
    matches!(method, "PUT" | "MKCOL" | "LOCK")
}

/// The last segment of a request path, percent-decoded ("" for a share's root).
fn last_segment(path: &str) -> String {
    let last = path.trim_end_matches('/').rsplit('/').next().unwrap_or("");
    percent_encoding::percent_decode_str(last).decode_utf8_lossy().into_owned()
}

/// Checks what dav-server would get wrong or let through: `PROPFIND` with infinite depth, names
/// Windows cannot hold, and `COPY`/`MOVE` destinations outside this share (on another host, in
/// another share, or with dot segments). `None`: the request may go on.
fn check_request(req: &Request, share: &str) -> Option<Response> {
    let method = req.method().as_str();
    let header_text = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    if method == "PROPFIND" && header_text("depth").is_some_and(|d| d.eq_ignore_ascii_case("infinity")) {
        return Some(finite_depth_required());
    }
    let path = req.uri().path();
    if creates(method) && path.strip_prefix("/dav/").and_then(|p| p.split_once('/')).is_some_and(|(_, r)| !r.is_empty())
    {
        if let Err(why) = windows_name(&last_segment(path)) {
            return Some(refuse(StatusCode::BAD_REQUEST, &why));
        }
    }
    if matches!(method, "COPY" | "MOVE") {
        let Some(dest) = header_text("destination") else {
            return Some(refuse(StatusCode::BAD_REQUEST, "COPY and MOVE need a Destination header"));
        };
        let Ok(uri) = dest.parse::<http::Uri>() else {
            return Some(refuse(StatusCode::BAD_REQUEST, "the Destination header is not a URL"));
        };
        if let Some(authority) = uri.authority() {
            let host = header_text("host").or(req.uri().authority().map(|a| a.as_str())).unwrap_or("");
            if !authority.as_str().eq_ignore_ascii_case(host) {
                return Some(refuse(
                    StatusCode::BAD_GATEWAY,
                    &format!("the Destination is on another server ({authority}); this appliance copies and moves only within a share"),
                ));
            }
        }
        let dest_path = uri.path();
        if has_dot_segments(dest_path) {
            return Some(refuse(StatusCode::BAD_REQUEST, "a Destination with '.' or '..' segments is refused"));
        }
        if share_name(dest_path) != Some(share) {
            return Some(refuse(
                StatusCode::BAD_GATEWAY,
                &format!("the Destination is not in share {share}; copy between shares through your client"),
            ));
        }
        if let Err(why) = windows_name(&last_segment(dest_path)) {
            return Some(refuse(StatusCode::BAD_REQUEST, &why));
        }
    }
    None
}

/// Refuses a name Windows cannot hold, as a Windows client would meet it on a Samba share: the
/// characters `\ / : * ? " < > |` and control characters, a trailing dot or space, and the
/// reserved device names (`CON`, `PRN`, `AUX`, `NUL`, `COM1`–`COM9`, `LPT1`–`LPT9`, also with an
/// extension). Refused rather than mapped: a mapped name would differ between WebDAV, SMB and
/// the folder on disk, and users would not find their file.
pub fn windows_name(name: &str) -> std::result::Result<(), String> {
    const RESERVED: [&str; 4] = ["CON", "PRN", "AUX", "NUL"];
    if let Some(c) =
        name.chars().find(|c| matches!(c, '\\' | '/' | ':' | '*' | '?' | '"' | '<' | '>' | '|') || c.is_control())
    {
        return Err(format!(
            "the name {name:?} has the character {c:?}, which Windows cannot hold in a file name; rename it"
        ));
    }
    if name.ends_with('.') || name.ends_with(' ') {
        return Err(format!("the name {name:?} ends in a dot or a space, which Windows drops; rename it"));
    }
    let stem = name.split('.').next().unwrap_or("").trim_end().to_ascii_uppercase();
    let device = RESERVED.contains(&stem.as_str())
        || (stem.len() == 4
            && (stem.starts_with("COM") || stem.starts_with("LPT"))
            && stem.as_bytes()[3].is_ascii_digit()
            && stem.as_bytes()[3] != b'0');
    if device {
        return Err(format!("the name {name:?} is a device name reserved by Windows ({stem}); rename it"));
    }
    Ok(())
}

/// The share name from `/dav/<share>/…`.
fn share_name(path: &str) -> Option<&str> {
    path.strip_prefix("/dav/")?.split('/').next().filter(|s| !s.is_empty())
}

async fn handle(State(dav): State<Arc<Dav>>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    if has_dot_segments(&path) {
        return refuse(StatusCode::BAD_REQUEST, "paths with '.' or '..' segments are refused");
    }
    let Some((user, password)) = basic_credentials(req.headers()) else { return unauthorized() };
    if !dav.users.verify(&user, &password).await {
        tracing::warn!(user = %user, "WebDAV: wrong user name or password");
        return unauthorized();
    }
    let found = share_name(&path).and_then(|n| dav.shares.read().unwrap_or_else(|p| p.into_inner()).get(n).cloned());
    let Some(share) = found else {
        return refuse(StatusCode::NOT_FOUND, "there is no such share");
    };
    if !share.users.is_empty() && !share.users.contains(&user) {
        return refuse(StatusCode::FORBIDDEN, "this user may not use this share");
    }
    if writes_previous_versions(&req) {
        return refuse(StatusCode::FORBIDDEN, "previous versions (.snapshots) are read-only; copy files out of them");
    }
    if let Some(refusal) = check_request(&req, share_name(&path).unwrap_or_default()) {
        return refusal;
    }
    let declared =
        req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > dav.max_upload) {
        return refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("the body is larger than this appliance's max_upload of {} bytes", dav.max_upload),
        );
    }
    let (parts, body) = req.into_parts();
    let limited = http_body_util::Limited::new(body, dav.max_upload as usize);
    let req = Request::from_parts(parts, Body::new(limited));
    let config = DavConfig::new().principal(user);
    share.handler.handle_with(config, req).await.map(Body::new).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_segments_are_found_in_every_spelling() {
        assert!(has_dot_segments("/dav/docs/../etc/passwd"));
        assert!(has_dot_segments("/dav/docs/%2e%2e/x"));
        assert!(has_dot_segments("/dav/docs/%2E./x"));
        assert!(has_dot_segments("/dav/docs/./x"));
        assert!(!has_dot_segments("/dav/docs/..hidden/x"));
        assert!(!has_dot_segments("/dav/docs/.snapshots/x"));
        assert_eq!(share_name("/dav/docs/a"), Some("docs"));
        assert_eq!(share_name("/dav/"), None);
    }

    #[test]
    fn names_windows_cannot_hold_are_refused() {
        for bad in [
            "a:b",
            "what?",
            "x*",
            "q\"r",
            "<x>",
            "a|b",
            "back\\slash",
            "dot.",
            "space ",
            "CON",
            "con.txt",
            "Lpt1",
            "COM9.log",
            "tab\t",
        ] {
            assert!(windows_name(bad).is_err(), "{bad:?} was accepted");
        }
        for good in [
            "report.docx",
            "CONTRACT.pdf",
            "COM0",
            "LPT",
            "console.txt",
            ".hidden",
            "Quarterly report (v2).xlsx",
            "été",
        ] {
            assert!(windows_name(good).is_ok(), "{good:?} was refused");
        }
        assert_eq!(last_segment("/dav/docs/a%3Fb"), "a?b");
        assert_eq!(last_segment("/dav/docs/dir/"), "dir");
    }
}
