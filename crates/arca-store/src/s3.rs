//! A repository in an S3-compatible object store (AWS S3, Garage, MinIO, ...), through opendal.
//!
//! Configuration comes from a URL, `s3://BUCKET[/PREFIX]?endpoint=http://127.0.0.1:3900&region=garage`,
//! and the credentials from `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` (and `AWS_SESSION_TOKEN`
//! if set). Nothing else is read from the environment, from `~/.aws` or from an instance metadata
//! service. Requests use path-style addressing (`ENDPOINT/BUCKET/KEY`), which every S3-compatible
//! server accepts and Garage needs.
//!
//! Layout under the prefix is the same as [`LocalStore`](crate::LocalStore)'s: `config`,
//! `keys/NAME`, `data/AB/NAME`, `meta/AB/NAME`, `index/NAME`, `snapshots/NAME`, `locks/NAME`,
//! `pending/NAME`. S3 has no directories, so the two-hex-digit fan-out of packs buys no speed here;
//! it is kept because it costs nothing (listing a kind is one recursive, paged listing either way)
//! and it keeps a repository byte-for-byte the same tree on disk and in a bucket, so one can be
//! copied to the other with any sync tool.
//!
//! Atomicity: every `put` is a single `PutObject` (opendal writes one buffer with one request, not
//! a multipart upload), which S3 makes visible all at once or not at all. No conditional writes are
//! used (Garage ignores `If-None-Match: *`); content-addressed names make overwrites harmless.
//!
//! Threads and runtimes: the [`Store`] methods block. Each [`S3Store::open`] starts a small tokio
//! runtime of its own ([`WORKER_THREADS`] threads, shared by every [`S3Store::with_prefix`] view)
//! that runs the requests; the calling thread only waits for the answer on a channel. That works
//! the same from plain threads, from `tokio::task::spawn_blocking` threads of another runtime, and
//! even (though it blocks a worker, so don't) from inside async code, where borrowing the caller's
//! runtime with `Handle::block_on` would panic. The runtime is shut down in the background when the
//! last view is dropped, which is allowed in any context.
//!
//! HTTP: opendal 0.59 leaves the HTTP client to the application. This module plugs in the same
//! reqwest 0.12 + rustls (ring) stack that `HttpStore` uses (rather than opendal's
//! reqwest 0.13 transport, which would bring a second HTTP stack and aws-lc). Response bodies are
//! read whole before opendal sees them: objects are read whole or by range into memory anyway.
//!
//! Retries: a request that failed in a way opendal calls temporary (connection errors, 5xx, 429)
//! is retried up to [`RETRIES`] times with growing pauses. Every operation is idempotent.

use std::fmt;
use std::future::Future;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use opendal::{Buffer, EntryMode, HttpBody, HttpTransport, HttpTransporter, OperationContext, Operator};

use crate::{validate_name, Error, ErrorKind, ObjectInfo, ObjectKind, Result, Store};

/// Retries after the first attempt of a request that failed temporarily.
const RETRIES: u32 = 3;
/// Piece size of streamed uploads ([`Store::put_file`]): S3 multipart parts must be at least
/// 5 MiB; 16 MiB keeps a pack of tens of MiB to a few parts.
const UPLOAD_PIECE: usize = 16 << 20;

/// Threads of the runtime each [`S3Store::open`] starts for its requests.
const WORKER_THREADS: usize = 2;
/// Region used when the URL names none.
const DEFAULT_REGION: &str = "us-east-1";

/// Where an [`S3Store`] lives and how to sign in: parsed from an `s3://` URL by
/// [`S3Config::from_url`], or filled in directly.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Config {
    /// The bucket.
    pub bucket: String,
    /// Key prefix inside the bucket, without leading or trailing `/` (empty: the bucket's root).
    pub prefix: String,
    /// `http(s)://host[:port]` of the S3 API; `None` means AWS S3 itself.
    pub endpoint: Option<String>,
    /// Signing region (`garage` for a default Garage node, `us-east-1` when not given).
    pub region: String,
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
    /// Session token of temporary credentials, if any.
    pub session_token: Option<String>,
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("session_token", &self.session_token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl S3Config {
    /// Parses `s3://BUCKET[/PREFIX]?endpoint=URL&region=REGION` and takes the credentials from
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and (optionally) `AWS_SESSION_TOKEN`.
    ///
    /// `endpoint` is required for anything but AWS; `region` defaults to `us-east-1`.
    pub fn from_url(url: &str) -> Result<S3Config> {
        let env = |name: &str| std::env::var(name).ok().map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let (Some(access_key_id), Some(secret_access_key)) = (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY"))
        else {
            return Err(Error::new(
                ErrorKind::PermissionDenied,
                format!(
                    "repository {}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY to the S3 key to use",
                    redact_url(url)
                ),
            ));
        };
        let mut config = S3Config::parse_url(url)?;
        config.access_key_id = access_key_id;
        config.secret_access_key = secret_access_key;
        config.session_token = env("AWS_SESSION_TOKEN");
        Ok(config)
    }

    /// Parses the URL alone; the credentials are left empty for the caller to fill in.
    pub fn parse_url(url: &str) -> Result<S3Config> {
        let bad = |why: &str| Error::new(ErrorKind::InvalidName, format!("repository URL {}: {why}", redact_url(url)));
        let parsed = url::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
        if parsed.scheme() != "s3" {
            return Err(bad("expected s3://BUCKET[/PREFIX]?endpoint=...&region=..."));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() || parsed.port().is_some() {
            return Err(bad("give no user, password or port after s3:// (credentials come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, the port belongs in endpoint=)"));
        }
        if parsed.fragment().is_some() {
            return Err(bad("a fragment (#...) is not allowed"));
        }
        let bucket = parsed.host_str().unwrap_or_default().to_string();
        if !valid_bucket(&bucket) {
            return Err(bad(
                "the bucket name must be 3 to 63 characters of [a-z0-9.-], starting and ending with a letter or digit",
            ));
        }
        let prefix = parse_prefix(parsed.path()).ok_or_else(|| {
            bad("the prefix must be /-separated segments of [A-Za-z0-9._-] (no empty, . or .. segments)")
        })?;
        let mut endpoint = None;
        let mut region = None;
        for (key, value) in parsed.query_pairs() {
            let slot = match &*key {
                "endpoint" => &mut endpoint,
                "region" => &mut region,
                other => return Err(bad(&format!("unknown parameter {other:?} (known: endpoint, region)"))),
            };
            if slot.is_some() {
                return Err(bad(&format!("{key} is given twice")));
            }
            *slot = Some(value.trim().to_string());
        }
        if let Some(ep) = &endpoint {
            let ep_url = url::Url::parse(ep).map_err(|e| bad(&format!("endpoint {ep:?}: {e}")))?;
            if !matches!(ep_url.scheme(), "http" | "https")
                || ep_url.host_str().is_none()
                || ep_url.query().is_some()
                || ep_url.fragment().is_some()
                || !ep_url.username().is_empty()
            {
                return Err(bad(&format!("endpoint {ep:?}: expected http(s)://HOST[:PORT]")));
            }
        }
        let region = match region {
            Some(r) if r.is_empty() => return Err(bad("region is empty")),
            Some(r) => r,
            None => DEFAULT_REGION.to_string(),
        };
        Ok(S3Config {
            bucket,
            prefix,
            endpoint: endpoint.map(|e| e.trim_end_matches('/').to_string()),
            region,
            access_key_id: String::new(),
            secret_access_key: String::new(),
            session_token: None,
        })
    }
}

/// The URL without its query, which is all a message needs (and never holds a secret anyway).
fn redact_url(url: &str) -> String {
    format!("{:?}", url.split('?').next().unwrap_or_default())
}

fn valid_bucket(b: &str) -> bool {
    (3..=63).contains(&b.len())
        && b.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-')
        && b.bytes().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && b.bytes().last().is_some_and(|c| c.is_ascii_alphanumeric())
}

/// `/a/b/` → `a/b`; `None` for empty, `.`/`..` or odd-character segments (between slashes).
fn parse_prefix(path: &str) -> Option<String> {
    let trimmed = path.trim_matches('/');
    if trimmed.is_empty() {
        return Some(String::new());
    }
    let ok = trimmed.split('/').all(|seg| {
        !seg.is_empty()
            && seg != "."
            && seg != ".."
            && seg.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
    });
    ok.then(|| trimmed.to_string())
}

/// A store in a bucket of an S3-compatible object store, under a key prefix.
///
/// Cheap to clone; clones and [`with_prefix`](S3Store::with_prefix) views share one HTTP client,
/// one connection pool and one runtime.
#[derive(Clone)]
pub struct S3Store {
    shared: Arc<Shared>,
    /// Key prefix with a trailing `/`, or empty for the bucket's root.
    prefix: String,
}

struct Shared {
    op: Operator,
    runtime: OwnedRuntime,
    bucket: String,
    /// Endpoint for messages (`https://s3.amazonaws.com` when none was configured).
    endpoint: String,
}

/// A runtime that never blocks when dropped (dropping a tokio runtime in async code panics).
struct OwnedRuntime(Option<tokio::runtime::Runtime>);

impl Drop for OwnedRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

impl fmt::Debug for S3Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Store").field("location", &self.location()).finish()
    }
}

impl S3Store {
    /// A store for `config`. Starts the store's runtime and HTTP client; sends no request (a wrong
    /// bucket or key shows at the first operation, or at [`Store::create`]).
    pub fn open(config: &S3Config) -> Result<S3Store> {
        let setup = |what: &str, e: &dyn fmt::Display| {
            Error::new(ErrorKind::Io, format!("setting up the S3 store for s3://{}: {what}: {e}", config.bucket))
        };
        if config.access_key_id.is_empty() || config.secret_access_key.is_empty() {
            return Err(Error::new(
                ErrorKind::PermissionDenied,
                format!("S3 store s3://{}: no access key id or secret access key was given", config.bucket),
            ));
        }
        // Wrapped at once so that an early return below drops it without blocking either.
        let runtime = OwnedRuntime(Some(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(WORKER_THREADS)
                .thread_name("arca-s3")
                .enable_all()
                .build()
                .map_err(|e| setup("starting its runtime", &e))?,
        ));
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(15))
            .timeout(Duration::from_secs(900))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("arca/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| setup("building the HTTP client", &e))?;
        let mut builder = opendal::services::S3::default()
            .bucket(&config.bucket)
            .region(&config.region)
            .access_key_id(&config.access_key_id)
            .secret_access_key(&config.secret_access_key)
            .disable_config_load()
            .disable_ec2_metadata();
        if let Some(endpoint) = &config.endpoint {
            builder = builder.endpoint(endpoint);
        }
        if let Some(token) = &config.session_token {
            builder = builder.session_token(token);
        }
        let op = Operator::new(builder).map_err(|e| setup("configuring opendal", &e))?;
        let op = op.with_context(
            OperationContext::new().with_http_transport(HttpTransporter::new(ReqwestTransport { client })),
        );
        let shared = Shared {
            op,
            runtime,
            bucket: config.bucket.clone(),
            endpoint: config.endpoint.clone().unwrap_or_else(|| "https://s3.amazonaws.com".to_string()),
        };
        Ok(S3Store { shared: Arc::new(shared), prefix: String::new() }.with_prefix(&config.prefix))
    }

    /// The same bucket under `<this store's prefix>/<sub>/`, sharing the client and runtime.
    ///
    /// `sub` is used as given apart from empty segments (doubled or outer slashes), which are
    /// dropped; callers pass names they have validated (the server: `repos/<repo>`).
    pub fn with_prefix(&self, sub: &str) -> S3Store {
        let mut prefix = self.prefix.clone();
        for seg in sub.split('/').filter(|s| !s.is_empty()) {
            prefix.push_str(seg);
            prefix.push('/');
        }
        S3Store { shared: Arc::clone(&self.shared), prefix }
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.shared.bucket
    }

    /// The key prefix of this store, without a trailing `/` (empty for the bucket's root).
    pub fn prefix(&self) -> &str {
        self.prefix.trim_end_matches('/')
    }

    fn key(&self, kind: ObjectKind, name: &str) -> Result<String> {
        validate_name(name)?;
        Ok(match kind {
            ObjectKind::Config => format!("{}config", self.prefix),
            k if k.is_fanned_out() => format!("{}{}/{}/{name}", self.prefix, k.dir(), name.get(..2).unwrap_or("00")),
            k => format!("{}{}/{name}", self.prefix, k.dir()),
        })
    }

    fn error(&self, what: &str, key: &str, err: opendal::Error) -> Error {
        let kind = match err.kind() {
            opendal::ErrorKind::NotFound => ErrorKind::NotFound,
            opendal::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
            opendal::ErrorKind::RangeNotSatisfied => ErrorKind::Truncated,
            _ => ErrorKind::Io,
        };
        let hint = match kind {
            ErrorKind::PermissionDenied => {
                " (check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY and the key's rights on the bucket)"
            }
            _ => "",
        };
        Error::new(kind, format!("{what} s3://{}/{key} at {}: {err}{hint}", self.shared.bucket, self.shared.endpoint))
    }

    /// Runs the request `f` builds on the store's runtime, retrying temporary failures, and
    /// waits for its answer on the calling thread.
    fn run<T, F, Fut>(&self, f: F) -> opendal::Result<T>
    where
        F: Fn(Operator) -> Fut + Send + 'static,
        Fut: Future<Output = opendal::Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        let Some(runtime) = &self.shared.runtime.0 else {
            return Err(opendal::Error::new(opendal::ErrorKind::Unexpected, "the store's runtime is gone"));
        };
        let op = self.shared.op.clone();
        let (tx, rx) = mpsc::sync_channel(1);
        runtime.spawn(async move {
            let mut pause = Duration::from_millis(200);
            let mut attempt = 0;
            let result = loop {
                match f(op.clone()).await {
                    Err(e) if e.is_temporary() && attempt < RETRIES => {
                        attempt += 1;
                        tokio::time::sleep(pause).await;
                        pause *= 4;
                    }
                    other => break other,
                }
            };
            let _ = tx.send(result);
        });
        rx.recv().unwrap_or_else(|_| {
            Err(opendal::Error::new(
                opendal::ErrorKind::Unexpected,
                "the store's runtime stopped before the request ended",
            ))
        })
    }
}

impl Store for S3Store {
    fn put(&self, kind: ObjectKind, name: &str, bytes: &[u8]) -> Result<()> {
        let key = self.key(kind, name)?;
        let body = Buffer::from(bytes.to_vec());
        let k = key.clone();
        self.run(move |op| {
            let (k, body) = (k.clone(), body.clone());
            async move { op.write(&k, body).await.map(|_| ()) }
        })
        .map_err(|e| self.error("writing", &key, e))
    }

    /// Streams the file in pieces of [`UPLOAD_PIECE`] (a multipart upload when larger), so an
    /// object of any size costs one piece of memory. Each retry starts again from the file.
    fn put_file(&self, kind: ObjectKind, name: &str, path: &std::path::Path) -> Result<()> {
        let key = self.key(kind, name)?;
        let (k, file_path) = (key.clone(), path.to_path_buf());
        let result = self
            .run(move |op| {
                let (k, file_path) = (k.clone(), file_path.clone());
                async move {
                    use std::io::Read;
                    let io = |e: std::io::Error| {
                        opendal::Error::new(opendal::ErrorKind::Unexpected, "reading the staged upload").set_source(e)
                    };
                    // Reads of a local file between network writes: the store's own runtime
                    // threads may block for that long.
                    let mut file = std::fs::File::open(&file_path).map_err(io)?;
                    let mut writer = op.writer_with(&k).chunk(UPLOAD_PIECE).await?;
                    let mut piece = vec![0u8; UPLOAD_PIECE];
                    loop {
                        let mut filled = 0;
                        while filled < piece.len() {
                            let n = file.read(&mut piece[filled..]).map_err(io)?;
                            if n == 0 {
                                break;
                            }
                            filled += n;
                        }
                        if filled == 0 {
                            break;
                        }
                        writer.write(Buffer::from(piece[..filled].to_vec())).await?;
                        if filled < piece.len() {
                            break;
                        }
                    }
                    writer.close().await.map(|_| ())
                }
            })
            .map_err(|e| self.error("writing", &key, e));
        let _ = std::fs::remove_file(path);
        result
    }

    fn get(&self, kind: ObjectKind, name: &str) -> Result<Vec<u8>> {
        let key = self.key(kind, name)?;
        let k = key.clone();
        let buf = self
            .run(move |op| {
                let k = k.clone();
                async move { op.read(&k).await }
            })
            .map_err(|e| self.error("reading", &key, e))?;
        Ok(buf.to_vec())
    }

    fn get_range(&self, kind: ObjectKind, name: &str, offset: u64, length: u64) -> Result<Vec<u8>> {
        let key = self.key(kind, name)?;
        let what = format!("reading {length} bytes at {offset} of");
        let truncated = |got: &str| {
            Error::new(
                ErrorKind::Truncated,
                format!("{what} s3://{}/{key} at {}: {got}", self.shared.bucket, self.shared.endpoint),
            )
        };
        let Some(end) = offset.checked_add(length) else {
            return Err(truncated("the range ends past 2^64"));
        };
        let len =
            usize::try_from(length).map_err(|_| Error::new(ErrorKind::Io, format!("{what} {key}: range too large")))?;
        if length == 0 {
            // S3 cannot express an empty range; the object's size answers the question.
            return match self.stat(kind, name)? {
                None => Err(Error::new(
                    ErrorKind::NotFound,
                    format!("{what} s3://{}/{key} at {}: no such object", self.shared.bucket, self.shared.endpoint),
                )),
                Some(size) if size < offset => Err(truncated(&format!("the object has only {size} bytes"))),
                Some(_) => Ok(Vec::new()),
            };
        }
        let k = key.clone();
        let buf = match self.run(move |op| {
            let k = k.clone();
            async move { op.read_with(&k).range(offset..end).await }
        }) {
            Ok(buf) => buf,
            Err(e) => {
                // A range that starts past the end is answered 416 (RangeNotSatisfied), but one that
                // only ends past it comes back short, which opendal reports as an unspecific
                // "reader got too little data". The object's size tells the two apart.
                if !matches!(e.kind(), opendal::ErrorKind::NotFound | opendal::ErrorKind::PermissionDenied) {
                    if let Ok(Some(size)) = self.stat(kind, name) {
                        if size < end {
                            return Err(truncated(&format!("the object has only {size} bytes")));
                        }
                    }
                }
                return Err(self.error(&what, &key, e));
            }
        };
        if buf.len() != len {
            return Err(truncated(&format!("the object ends after {} of the bytes", buf.len())));
        }
        Ok(buf.to_vec())
    }

    fn stat(&self, kind: ObjectKind, name: &str) -> Result<Option<u64>> {
        let key = self.key(kind, name)?;
        let k = key.clone();
        match self.run(move |op| {
            let k = k.clone();
            async move { op.stat(&k).await }
        }) {
            Ok(meta) => Ok(Some(meta.content_length())),
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.error("inspecting", &key, e)),
        }
    }

    fn list(&self, kind: ObjectKind) -> Result<Vec<ObjectInfo>> {
        if kind == ObjectKind::Config {
            return Ok(self
                .stat(kind, "config")?
                .map(|size| vec![ObjectInfo { name: "config".into(), size }])
                .unwrap_or_default());
        }
        let dir = format!("{}{}/", self.prefix, kind.dir());
        let d = dir.clone();
        // One recursive listing (no delimiter) covers the fan-out directories; opendal follows
        // the continuation tokens (S3 answers at most 1000 keys a page).
        let entries = self
            .run(move |op| {
                let d = d.clone();
                async move { op.list_with(&d).recursive(true).await }
            })
            .map_err(|e| self.error("listing", &dir, e))?;
        Ok(entries
            .into_iter()
            .filter(|e| e.metadata().mode() == EntryMode::FILE)
            .filter_map(|e| {
                let name = e.path().rsplit('/').next().unwrap_or_default();
                validate_name(name).ok()?;
                Some(ObjectInfo { name: name.to_string(), size: e.metadata().content_length() })
            })
            .collect())
    }

    fn delete(&self, kind: ObjectKind, name: &str) -> Result<()> {
        let key = self.key(kind, name)?;
        let k = key.clone();
        match self.run(move |op| {
            let k = k.clone();
            async move { op.delete(&k).await }
        }) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.error("deleting", &key, e)),
        }
    }

    fn create(&self) -> Result<()> {
        if self.exists()? {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!("a repository already exists at {}", self.location()),
            ));
        }
        // S3 has no directories to make. A listing of the prefix checks that the bucket is there
        // and that the key may read it, so a typo fails here rather than at the first upload.
        let prefix = self.prefix.clone();
        let p = prefix.clone();
        self.run(move |op| {
            let p = p.clone();
            async move { op.list_with(&p).limit(1).await.map(|_| ()) }
        })
        .map_err(|e| {
            // opendal reports S3's 404 NoSuchBucket on a listing as ConfigInvalid.
            let missing_bucket = e.kind() == opendal::ErrorKind::ConfigInvalid;
            let err = self.error("listing", &prefix, e);
            if missing_bucket {
                Error::new(ErrorKind::NotFound, format!("{err} (does bucket {} exist?)", self.shared.bucket))
            } else {
                err
            }
        })
    }

    fn location(&self) -> String {
        format!("s3://{}/{} at {}", self.shared.bucket, self.prefix(), self.shared.endpoint)
    }
}

/// opendal's HTTP transport over the reqwest 0.12 client the rest of arca uses.
struct ReqwestTransport {
    client: reqwest::Client,
}

impl HttpTransport for ReqwestTransport {
    async fn fetch(&self, req: http::Request<Buffer>) -> opendal::Result<http::Response<HttpBody>> {
        let (parts, body) = req.into_parts();
        let uri = parts.uri;
        let url = uri.to_string();
        let failed = |what: &str, err: reqwest::Error| {
            let temporary =
                err.is_request() || err.is_body() || err.is_decode() || err.is_timeout() || err.is_connect();
            opendal::Error::new(opendal::ErrorKind::Unexpected, format!("{what} {url}: {err}"))
                .with_temporary(temporary)
                .set_source(err.without_url())
        };
        let mut request = self.client.request(parts.method, &url).headers(parts.headers);
        if !body.is_empty() {
            request = request.body(body.to_bytes());
        }
        let response = request.send().await.map_err(|e| failed("sending the request to", e))?;
        let status = response.status();
        let version = response.version();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.map_err(|e| failed("reading the answer from", e))?;
        let size = bytes.len() as u64;
        let chunks: Vec<opendal::Result<Buffer>> =
            if bytes.is_empty() { Vec::new() } else { vec![Ok(Buffer::from(bytes))] };
        let mut out = http::Response::new(HttpBody::new(futures_util::stream::iter(chunks), Some(size)));
        *out.status_mut() = status;
        *out.version_mut() = version;
        *out.headers_mut() = headers;
        out.extensions_mut().insert(uri);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let c = S3Config::parse_url("s3://arca-test?endpoint=http://127.0.0.1:3900&region=garage").unwrap();
        assert_eq!(c.bucket, "arca-test");
        assert_eq!(c.prefix, "");
        assert_eq!(c.endpoint.as_deref(), Some("http://127.0.0.1:3900"));
        assert_eq!(c.region, "garage");

        let c = S3Config::parse_url("s3://bucket.example/repos/acme/?endpoint=https://s3.example.com/").unwrap();
        assert_eq!(c.prefix, "repos/acme");
        assert_eq!(c.endpoint.as_deref(), Some("https://s3.example.com"));
        assert_eq!(c.region, DEFAULT_REGION);

        let c = S3Config::parse_url("s3://bkt/p?endpoint=http%3A%2F%2F127.0.0.1%3A3900").unwrap();
        assert_eq!(c.endpoint.as_deref(), Some("http://127.0.0.1:3900"));
        assert_eq!(S3Config::parse_url("s3://bkt").unwrap().endpoint, None);
    }

    #[test]
    fn refuses_bad_urls() {
        for url in [
            "http://bucket/x",
            "s3://",
            "s3://Bucket",
            "s3://ab",
            "s3://-bucket",
            "s3://user:pw@bucket",
            "s3://bucket:9000",
            "s3://bucket/a//b",
            "s3://bucket/a b",
            "s3://bucket?endpoint=ftp://x",
            "s3://bucket?endpoint=127.0.0.1:3900",
            "s3://bucket?region=",
            "s3://bucket?regin=x",
            "s3://bucket?region=a&region=b",
            "s3://bucket#frag",
        ] {
            let err = S3Config::parse_url(url).expect_err(url);
            assert_eq!(err.kind(), ErrorKind::InvalidName, "{url}: {err}");
        }
    }

    #[test]
    fn debug_hides_secrets() {
        let mut c = S3Config::parse_url("s3://bucket").unwrap();
        c.secret_access_key = "very-secret".into();
        c.session_token = Some("token-secret".into());
        let shown = format!("{c:?}");
        assert!(!shown.contains("secret\"") && !shown.contains("very-secret") && !shown.contains("token-secret"));
    }

    #[test]
    fn keys_follow_the_local_layout_and_prefixes_nest() {
        let mut c = S3Config::parse_url("s3://bucket/base?endpoint=http://127.0.0.1:1").unwrap();
        c.access_key_id = "k".into();
        c.secret_access_key = "s".into();
        let store = S3Store::open(&c).unwrap();
        let name = "ab".repeat(32);
        assert_eq!(store.key(ObjectKind::Config, "config").unwrap(), "base/config");
        assert_eq!(store.key(ObjectKind::DataPack, &name).unwrap(), format!("base/data/ab/{name}"));
        assert_eq!(store.key(ObjectKind::MetaPack, "x").unwrap(), "base/meta/00/x");
        assert_eq!(store.key(ObjectKind::Snapshot, &name).unwrap(), format!("base/snapshots/{name}"));
        let sub = store.with_prefix("/repos//acme/");
        assert_eq!(sub.prefix(), "base/repos/acme");
        assert_eq!(sub.key(ObjectKind::Key, "k1").unwrap(), "base/repos/acme/keys/k1");
        assert_eq!(sub.location(), "s3://bucket/base/repos/acme at http://127.0.0.1:1");
        assert_eq!(store.key(ObjectKind::Key, "../x").unwrap_err().kind(), ErrorKind::InvalidName);
    }

    #[test]
    fn unreachable_endpoint_is_an_io_error_naming_it() {
        let mut c = S3Config::parse_url("s3://bucket?endpoint=http://127.0.0.1:9").unwrap();
        c.access_key_id = "k".into();
        c.secret_access_key = "s".into();
        let store = S3Store::open(&c).unwrap();
        let err = store.get(ObjectKind::Config, "config").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Io, "{err}");
        assert!(err.to_string().contains("127.0.0.1:9"), "{err}");
    }
}
