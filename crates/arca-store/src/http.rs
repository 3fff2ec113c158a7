//! A repository on an arca server, over its HTTP API (`/v1/repos/REPO/KIND/NAME`).
//!
//! Every request carries the caller's bearer token. Idempotent requests (GET, HEAD, PUT, DELETE)
//! are retried up to [`RETRIES`] times with growing pauses when the connection fails or the server
//! answers 5xx (except 507, a full disk or quota, which a retry does not cure) or 429 (after the
//! `Retry-After` it asks for). Listing follows pages.

use std::time::Duration;

use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::{Method, StatusCode};

use crate::{validate_name, Error, ErrorKind, ObjectInfo, ObjectKind, Result, Store};

/// Retries after the first attempt of an idempotent request.
pub const RETRIES: u32 = 3;
/// Page size asked for when listing (the server's maximum).
const PAGE: usize = 10_000;

/// A store served by `arca server`.
#[derive(Debug, Clone)]
pub struct HttpStore {
    /// `http(s)://host:port/v1/repos/REPO/`, always with the trailing slash.
    base: String,
    token: String,
    client: Client,
    pacer: Option<Pacer>,
}

/// Paces uploads (an upload limit): called with the size of each piece of a request body just
/// before that piece is sent; it sleeps as long as the limit requires. Pacing inside the body,
/// rather than before each request, keeps the rate even within one large pack.
#[derive(Clone)]
pub struct Pacer(pub std::sync::Arc<dyn Fn(usize) + Send + Sync>);

impl std::fmt::Debug for Pacer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pacer")
    }
}

/// Bytes sent per call of the pacer.
const PACE_PIECE: usize = 64 * 1024;

/// An upload body that asks the pacer before each piece.
struct PacedBody {
    bytes: std::sync::Arc<Vec<u8>>,
    at: usize,
    pacer: Pacer,
}

impl std::io::Read for PacedBody {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(PACE_PIECE).min(self.bytes.len() - self.at);
        if n == 0 {
            return Ok(0);
        }
        (self.pacer.0)(n);
        buf[..n].copy_from_slice(&self.bytes[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[derive(serde::Deserialize)]
struct Entry {
    name: String,
    size: u64,
}

impl HttpStore {
    /// A store at `url`: `http(s)://host:port/v1/repos/REPO` (or the short `http(s)://host:port/REPO`),
    /// authenticated with `token`.
    pub fn new(url: &str, token: &str) -> Result<HttpStore> {
        let bad = |why: &str| Error::new(ErrorKind::InvalidName, format!("repository URL {url:?}: {why}"));
        let parsed = reqwest::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(bad("only http:// and https:// are supported"));
        }
        if parsed.query().is_some() || parsed.fragment().is_some() || !parsed.username().is_empty() {
            return Err(bad("give no user, query or fragment (the token comes from ARCA_TOKEN)"));
        }
        let segments: Vec<&str> = parsed.path().split('/').filter(|s| !s.is_empty()).collect();
        let repo = match segments.as_slice() {
            ["v1", "repos", repo] | [repo] => *repo,
            _ => return Err(bad("expected http(s)://HOST:PORT/v1/repos/REPO")),
        };
        if repo.is_empty()
            || repo.len() > 64
            || !repo.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_lowercase() || b == b'-')
        {
            return Err(bad("the repository name must be 1 to 64 characters of [a-z0-9-]"));
        }
        let mut base = parsed.clone();
        base.set_path(&format!("/v1/repos/{repo}/"));
        if token.trim().is_empty() {
            return Err(Error::new(ErrorKind::PermissionDenied, "an empty token was given"));
        }
        let mut builder = Client::builder();
        if let Some(cert) = extra_root_certificate()? {
            builder = builder.add_root_certificate(cert);
        }
        let client = builder
            .connect_timeout(Duration::from_secs(15))
            .timeout(Duration::from_secs(900))
            .user_agent(concat!("arca/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::new(ErrorKind::Io, format!("setting up the HTTP client: {e}")))?;
        Ok(HttpStore { base: base.to_string(), token: token.trim().to_string(), client, pacer: None })
    }

    /// The same store, with upload bodies sent at the pace `pacer` sets.
    pub fn with_pacer(mut self, pacer: Pacer) -> HttpStore {
        self.pacer = Some(pacer);
        self
    }

    /// Tells the server that a backup run of this device failed, with the message the user saw,
    /// so the provider's health page and alerts know (successes need no report: the server sees
    /// their snapshots arrive). Only device tokens may report.
    pub fn report_failure(&self, message: &str) -> Result<()> {
        self.report("failed", message)
    }

    /// Reports a run's outcome to the server (`failed`, `drill`, `drill-failed` or
    /// `replication`, see the server's API): one attempt, no retries.
    pub fn report(&self, outcome: &str, message: &str) -> Result<()> {
        let url = format!("{}report", self.base);
        let body = serde_json::json!({ "outcome": outcome, "message": message }).to_string();
        self.send(&format!("reporting {outcome} to the server"), false, || {
            self.client.post(&url).header(reqwest::header::CONTENT_TYPE, "application/json").body(body.clone())
        })?;
        Ok(())
    }

    /// The server's public recovery key (hex), for customers who opt in to its recovery service
    /// (`GET /v1/recovery-key`); not found when the provider offers none.
    pub fn provider_recovery_key(&self) -> Result<String> {
        let mut url = reqwest::Url::parse(&self.base).map_err(|e| Error::new(ErrorKind::Io, e.to_string()))?;
        url.set_path("/v1/recovery-key");
        let r = self.send("fetching the provider's recovery key", true, || self.client.get(url.clone()))?;
        let body = r.bytes().map_err(|e| Error::new(ErrorKind::Io, format!("reading the server's answer: {e}")))?;
        let v: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| Error::new(ErrorKind::Io, format!("the server's recovery key answer is unreadable: {e}")))?;
        v["public_key"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| Error::new(ErrorKind::Io, "the server's recovery key answer has no public_key"))
    }

    fn object_url(&self, kind: ObjectKind, name: &str) -> Result<String> {
        validate_name(name)?;
        Ok(format!("{}{kind}/{name}", self.base))
    }

    /// Sends a read built by `build` and reads its whole answer, retrying when the body breaks off
    /// midway (the server streams objects, so a failure can come after the status), as
    /// [`HttpStore::send`] retries failures before it.
    fn fetch(&self, what: &str, build: impl Fn() -> RequestBuilder) -> Result<(StatusCode, Vec<u8>)> {
        let mut pause = Duration::from_millis(200);
        let mut attempt = 1;
        loop {
            let resp = self.send(what, true, &build)?;
            let status = resp.status();
            match resp.bytes() {
                Ok(bytes) => return Ok((status, bytes.to_vec())),
                Err(e) if attempt <= RETRIES => {
                    tracing::warn!("{what}: the answer broke off ({}); retrying in {pause:?}", error_chain(&e));
                    std::thread::sleep(pause);
                    pause *= 4;
                    attempt += 1;
                }
                Err(e) => return Err(Error::new(ErrorKind::Io, format!("{what}: {}", error_chain(&e)))),
            }
        }
    }

    /// Sends a request built by `build`, retrying idempotent ones; returns a successful response or
    /// the error the server's answer maps to.
    fn send(&self, what: &str, idempotent: bool, build: impl Fn() -> RequestBuilder) -> Result<Response> {
        let attempts = if idempotent { RETRIES + 1 } else { 1 };
        let mut pause = Duration::from_millis(200);
        let mut attempt = 1;
        loop {
            let result = build().bearer_auth(&self.token).send();
            let retry = match &result {
                Ok(r) => {
                    (r.status().is_server_error() && r.status() != StatusCode::INSUFFICIENT_STORAGE)
                        || r.status() == StatusCode::TOO_MANY_REQUESTS
                }
                Err(e) => e.is_connect() || e.is_timeout() || e.is_request() || e.is_body(),
            };
            // A rate-limited request waits as long as the server asks (at most half a minute).
            let asked = result.as_ref().ok().and_then(retry_after);
            if retry && attempt < attempts {
                let why = match &result {
                    Ok(r) => r.status().to_string(),
                    Err(e) => e.to_string(),
                };
                let wait = asked.unwrap_or(pause);
                tracing::warn!("{what}: {why}; retrying in {wait:?} ({attempt}/{RETRIES})");
                std::thread::sleep(wait);
                pause *= 4;
                attempt += 1;
                continue;
            }
            return match result {
                Ok(r) if r.status().is_success() => Ok(r),
                Ok(r) => Err(status_error(what, r)),
                Err(e) => Err(Error::new(ErrorKind::Io, format!("{what}: {}", error_chain(&e)))),
            };
        }
    }
}

/// How long a rate-limited (429) answer asks the client to wait (its `Retry-After` in seconds),
/// at most half a minute; `None` for other answers or without the header.
pub fn retry_after(resp: &Response) -> Option<Duration> {
    if resp.status() != StatusCode::TOO_MANY_REQUESTS {
        return None;
    }
    resp.headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|s| Duration::from_secs(s.min(30)))
}

/// The certificate authority in the PEM file named by `ARCA_CA_CERT`, if set: for servers whose
/// certificate is not signed by a public authority (a provider's own CA, a self-signed test
/// certificate). The system's usual authorities stay trusted.
pub fn extra_root_certificate() -> Result<Option<reqwest::Certificate>> {
    let Some(path) = std::env::var_os("ARCA_CA_CERT").filter(|p| !p.is_empty()) else {
        return Ok(None);
    };
    let shown = std::path::Path::new(&path).display().to_string();
    let pem =
        std::fs::read(&path).map_err(|e| Error::new(ErrorKind::Io, format!("reading ARCA_CA_CERT {shown}: {e}")))?;
    reqwest::Certificate::from_pem(&pem)
        .map(Some)
        .map_err(|e| Error::new(ErrorKind::Io, format!("ARCA_CA_CERT {shown} is not a PEM certificate: {e}")))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

/// The store error for a refused request, with the server's message.
fn status_error(what: &str, resp: Response) -> Error {
    let status = resp.status();
    let mut message = resp.text().unwrap_or_default().trim().replace('\n', " ");
    if message.len() > 500 {
        let mut cut = 500;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
    }
    let kind = match status {
        StatusCode::NOT_FOUND => ErrorKind::NotFound,
        StatusCode::RANGE_NOT_SATISFIABLE => ErrorKind::Truncated,
        StatusCode::INSUFFICIENT_STORAGE => ErrorKind::NoSpace,
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => ErrorKind::PermissionDenied,
        StatusCode::CONFLICT => ErrorKind::AlreadyExists,
        StatusCode::BAD_REQUEST => ErrorKind::InvalidName,
        _ => ErrorKind::Io,
    };
    let hint = if status == StatusCode::UNAUTHORIZED { " (check ARCA_TOKEN)" } else { "" };
    Error::new(kind, format!("{what}: the server answered {status}: {message}{hint}"))
}

impl Store for HttpStore {
    fn put(&self, kind: ObjectKind, name: &str, bytes: &[u8]) -> Result<()> {
        let url = self.object_url(kind, name)?;
        let shared = self.pacer.as_ref().map(|_| std::sync::Arc::new(bytes.to_vec()));
        let resp = self.send(&format!("uploading {kind} object {name}"), true, || {
            let request = self.client.request(Method::PUT, &url);
            match (&self.pacer, &shared) {
                (Some(pacer), Some(b)) => {
                    let body = PacedBody { bytes: b.clone(), at: 0, pacer: pacer.clone() };
                    request.body(reqwest::blocking::Body::sized(body, b.len() as u64))
                }
                _ => request.body(bytes.to_vec()),
            }
        })?;
        // The server's warnings (a soft quota passed) are shown once per process.
        if let Some(w) = resp.headers().get("x-arca-warning").and_then(|v| v.to_str().ok()) {
            static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
            if !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
                tracing::warn!("the server warns: {w}");
            }
        }
        Ok(())
    }

    fn get(&self, kind: ObjectKind, name: &str) -> Result<Vec<u8>> {
        let url = self.object_url(kind, name)?;
        let what = format!("reading {kind} object {name}");
        let (_, bytes) = self.fetch(&what, || self.client.get(&url))?;
        Ok(bytes)
    }

    fn get_range(&self, kind: ObjectKind, name: &str, offset: u64, length: u64) -> Result<Vec<u8>> {
        let url = self.object_url(kind, name)?;
        let what = format!("reading {length} bytes at {offset} of {kind} object {name}");
        if length == 0 {
            return match self.stat(kind, name)? {
                Some(size) if size >= offset => Ok(Vec::new()),
                Some(_) => Err(Error::new(ErrorKind::Truncated, format!("{what}: the object is shorter"))),
                None => Err(Error::new(ErrorKind::NotFound, format!("{what}: it does not exist"))),
            };
        }
        let last = offset
            .checked_add(length - 1)
            .ok_or_else(|| Error::new(ErrorKind::Truncated, format!("{what}: range too large")))?;
        let (status, bytes) =
            self.fetch(&what, || self.client.get(&url).header("range", format!("bytes={offset}-{last}")))?;
        let partial = status == StatusCode::PARTIAL_CONTENT;
        // A server that ignores Range sends the whole object with 200.
        let bytes = if partial {
            bytes
        } else {
            let start = usize::try_from(offset).unwrap_or(usize::MAX);
            bytes.get(start..).map(|b| b[..b.len().min(length as usize)].to_vec()).unwrap_or_default()
        };
        if bytes.len() as u64 != length {
            return Err(Error::new(ErrorKind::Truncated, format!("{what}: got {} bytes", bytes.len())));
        }
        Ok(bytes)
    }

    fn stat(&self, kind: ObjectKind, name: &str) -> Result<Option<u64>> {
        let url = self.object_url(kind, name)?;
        let what = format!("inspecting {kind} object {name}");
        let resp = match self.send(&what, true, || self.client.head(&url)) {
            Ok(r) => r,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e),
        };
        let headers = resp.headers();
        let size = headers
            .get("x-arca-size")
            .or_else(|| headers.get("content-length"))
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| Error::new(ErrorKind::Io, format!("{what}: the server sent no size")))?;
        Ok(Some(size))
    }

    fn list(&self, kind: ObjectKind) -> Result<Vec<ObjectInfo>> {
        let what = format!("listing {kind} objects");
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut url = format!("{}{kind}/?limit={PAGE}", self.base);
            if let Some(a) = &after {
                url.push_str("&after=");
                url.push_str(a);
            }
            let resp = self.send(&what, true, || self.client.get(&url))?;
            let body = resp.bytes().map_err(|e| Error::new(ErrorKind::Io, format!("{what}: {}", error_chain(&e))))?;
            let page: Vec<Entry> = serde_json::from_slice(&body)
                .map_err(|e| Error::new(ErrorKind::Io, format!("{what}: unreadable answer: {}", error_chain(&e))))?;
            let full = page.len() >= PAGE;
            for e in page {
                if validate_name(&e.name).is_err() {
                    return Err(Error::new(
                        ErrorKind::Io,
                        format!("{what}: the server listed a bad name {:?}", e.name),
                    ));
                }
                after = Some(e.name.clone());
                out.push(ObjectInfo { name: e.name, size: e.size });
            }
            if !full {
                return Ok(out);
            }
        }
    }

    fn delete(&self, kind: ObjectKind, name: &str) -> Result<()> {
        let url = self.object_url(kind, name)?;
        match self.send(&format!("deleting {kind} object {name}"), true, || self.client.delete(&url)) {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() && kind != ObjectKind::Config => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn create(&self) -> Result<()> {
        let url = self.base.trim_end_matches('/').to_string();
        self.send("creating the repository", false, || self.client.post(&url))?;
        Ok(())
    }

    fn location(&self) -> String {
        self.base.trim_end_matches('/').to_string()
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;

    use super::*;

    #[test]
    fn urls_are_checked_and_normalised() {
        let s = HttpStore::new("http://127.0.0.1:8420/v1/repos/acme", "t").unwrap();
        assert_eq!(s.location(), "http://127.0.0.1:8420/v1/repos/acme");
        let s = HttpStore::new("https://host:1/acme/", "t").unwrap();
        assert_eq!(s.location(), "https://host:1/v1/repos/acme");
        for bad in ["ftp://h/acme", "http://h/", "http://h/v1/repos/ACME", "http://h/a/b", "http://u:p@h/acme", "x"] {
            assert!(HttpStore::new(bad, "t").is_err(), "{bad}");
        }
        assert!(HttpStore::new("http://h/acme", " ").is_err());
        assert_eq!(
            s.put(ObjectKind::Index, "../x", b"").unwrap_err().kind(),
            ErrorKind::InvalidName,
            "names are checked before any request"
        );
    }

    /// Answers each connection with the next canned response; returns the requests' first lines.
    fn canned(responses: Vec<&'static str>) -> (String, std::thread::JoinHandle<Vec<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let handle = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for resp in responses {
                let (mut conn, _) = listener.accept().unwrap();
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut first = String::new();
                reader.read_line(&mut first).unwrap();
                let mut len = 0usize;
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap();
                    }
                    if line == "\r\n" || line.is_empty() {
                        break;
                    }
                }
                let mut body = vec![0; len];
                reader.read_exact(&mut body).unwrap();
                seen.push(first.trim().to_string());
                conn.write_all(resp.as_bytes()).unwrap();
            }
            seen
        });
        (format!("http://{addr}/v1/repos/acme"), handle)
    }

    #[test]
    fn server_errors_are_retried_and_statuses_mapped() {
        let (url, server) = canned(vec![
            "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello",
            "HTTP/1.1 403 Forbidden\r\ncontent-length: 18\r\nconnection: close\r\n\r\ndelete not allowed",
            "HTTP/1.1 507 Insufficient Storage\r\ncontent-length: 4\r\nconnection: close\r\n\r\nfull",
            "HTTP/1.1 416 Range Not Satisfiable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        ]);
        let store = HttpStore::new(&url, "secret").unwrap();
        assert_eq!(store.get(ObjectKind::Index, "abc").unwrap(), b"hello");
        let err = store.delete(ObjectKind::Snapshot, "abc").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PermissionDenied);
        assert!(err.to_string().contains("delete not allowed"), "{err}");
        assert_eq!(store.put(ObjectKind::Index, "abc", b"x").unwrap_err().kind(), ErrorKind::NoSpace);
        assert_eq!(store.get_range(ObjectKind::DataPack, "abc", 10, 5).unwrap_err().kind(), ErrorKind::Truncated);
        let seen = server.join().unwrap();
        assert_eq!(
            seen,
            [
                "GET /v1/repos/acme/index/abc HTTP/1.1",
                "GET /v1/repos/acme/index/abc HTTP/1.1",
                "DELETE /v1/repos/acme/snapshots/abc HTTP/1.1",
                "PUT /v1/repos/acme/index/abc HTTP/1.1",
                "GET /v1/repos/acme/data/abc HTTP/1.1",
            ]
        );
    }
}
