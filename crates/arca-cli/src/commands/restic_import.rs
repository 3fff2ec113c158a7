//! `arca admin import` into a restic repository: moves an existing restic repository, from a
//! directory (a disk, a mount of the old server) or from another restic REST server
//! (`rest:https://user:pass@host/path/`), into a repository hosted by arca, over the server's
//! restic protocol (so every object is checked, billed and audited as a restic client's would be).
//!
//! - **Verified by name**: every object but `config` is named by the SHA-256 of its bytes; each is
//!   hashed here before it is sent (and again by the server as it arrives). One that does not
//!   match is not sent and is reported: the import goes on with the rest and exits 1.
//! - **Resumable**: what the server already holds at the same size is skipped, so an interrupted
//!   import is simply run again.
//! - **Safe to interrupt**: data packs go first, then index files, keys and snapshots, and
//!   `config` last, so the hosted repository opens for restic only once everything it names is
//!   there.
//! - Several objects travel at once (`--jobs`), each streamed from a file, never held whole.

use std::collections::HashMap;
use std::io::{Read, Seek, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};
use arca_server::format::{ContentHasher, RepoFormat};
use reqwest::blocking::Client;
use serde::Deserialize;

/// restic's object types, in the order they are imported (`config` comes after them all).
const TYPES: [&str; 4] = ["data", "index", "keys", "snapshots"];
const V2: &str = "application/vnd.x.restic.rest.v2";

/// Where the restic repository comes from.
pub enum Source {
    /// A repository directory in restic's local layout.
    Dir(PathBuf),
    /// A restic REST server: the repository URL (ending in `/`) and its basic-auth credentials.
    Rest { url: String, user: String, password: String },
}

impl Source {
    /// Parses a directory path or a `rest:http(s)://[user:password@]host/path/` URL.
    pub fn parse(s: &str) -> Result<Source> {
        let Some(url) = s.strip_prefix("rest:") else {
            return Ok(Source::Dir(PathBuf::from(s)));
        };
        let (scheme, rest) =
            url.split_once("://").with_context(|| format!("{url:?} is not an http(s) URL of a restic REST server"))?;
        if scheme != "http" && scheme != "https" {
            bail!("restic REST servers are reached over http or https, not {scheme}");
        }
        let (auth, host_path) = match rest.split_once('@') {
            Some((auth, hp)) if !auth.contains('/') => (Some(auth), hp),
            _ => (None, rest),
        };
        let (user, password) = match auth {
            Some(a) => {
                let (u, p) = a.split_once(':').unwrap_or((a, ""));
                (u.to_string(), p.to_string())
            }
            None => (String::new(), String::new()),
        };
        let mut url = format!("{scheme}://{host_path}");
        if !url.ends_with('/') {
            url.push('/');
        }
        Ok(Source::Rest { url, user, password })
    }

    fn describe(&self) -> String {
        match self {
            Source::Dir(d) => d.display().to_string(),
            Source::Rest { url, .. } => url.clone(),
        }
    }

    /// Objects of one type: names and sizes.
    fn list(&self, client: &Client, kind: &str) -> Result<Vec<(String, u64)>> {
        match self {
            Source::Dir(root) => {
                let dir = root.join(kind);
                let mut out = Vec::new();
                if !dir.exists() {
                    return Ok(out);
                }
                let mut push = |entry: std::fs::DirEntry| -> Result<()> {
                    let meta = entry.metadata()?;
                    if meta.is_file() {
                        out.push((entry.file_name().to_string_lossy().into_owned(), meta.len()));
                    }
                    Ok(())
                };
                for entry in std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))? {
                    let entry = entry?;
                    // Data packs sit in 256 subdirectories named by their first two hex digits.
                    if kind == "data" && entry.file_type()?.is_dir() {
                        for inner in std::fs::read_dir(entry.path())? {
                            push(inner?)?;
                        }
                    } else {
                        push(entry)?;
                    }
                }
                Ok(out)
            }
            Source::Rest { url, user, password } => {
                let r = client
                    .get(format!("{url}{kind}/"))
                    .basic_auth(user, Some(password))
                    .header("accept", V2)
                    .send()
                    .with_context(|| format!("listing {kind} of {url}"))?;
                let r = ok(r, &format!("listing {kind} of {url}"))?;
                list_answer(r)
            }
        }
    }

    /// The bytes of one object, as a reader.
    fn open(&self, client: &Client, kind: &str, name: &str) -> Result<Box<dyn Read + Send>> {
        match self {
            Source::Dir(root) => {
                let path = match kind {
                    "config" => root.join("config"),
                    "data" => root.join("data").join(name.get(..2).unwrap_or(name)).join(name),
                    _ => root.join(kind).join(name),
                };
                Ok(Box::new(std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?))
            }
            Source::Rest { url, user, password } => {
                let path = if kind == "config" { format!("{url}config") } else { format!("{url}{kind}/{name}") };
                let r = client
                    .get(&path)
                    .basic_auth(user, Some(password))
                    .send()
                    .with_context(|| format!("downloading {path}"))?;
                Ok(Box::new(ok(r, &format!("downloading {kind}/{name}"))?))
            }
        }
    }
}

fn ok(r: reqwest::blocking::Response, what: &str) -> Result<reqwest::blocking::Response> {
    if r.status().is_success() {
        return Ok(r);
    }
    let status = r.status();
    let text = r.text().unwrap_or_default();
    bail!("{what}: the server answered {status}: {}", text.trim())
}

/// A v2 listing (names and sizes) or a v1 one (names only, sizes unknown: 0).
fn list_answer(r: reqwest::blocking::Response) -> Result<Vec<(String, u64)>> {
    #[derive(Deserialize)]
    struct Entry {
        name: String,
        size: u64,
    }
    let v2 = r.headers().get("content-type").and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with(V2));
    let body = r.bytes()?;
    if v2 {
        let entries: Vec<Entry> = serde_json::from_slice(&body).context("reading a v2 listing")?;
        Ok(entries.into_iter().map(|e| (e.name, e.size)).collect())
    } else {
        let names: Vec<String> = serde_json::from_slice(&body).context("reading a v1 listing")?;
        Ok(names.into_iter().map(|n| (n, 0)).collect())
    }
}

/// What an import did.
#[derive(Debug, Default, serde::Serialize)]
pub struct Report {
    /// Objects sent.
    pub uploaded: u64,
    /// Bytes sent.
    pub bytes: u64,
    /// Objects the server already held (an earlier, interrupted import).
    pub skipped: u64,
    /// Objects whose bytes do not hash to their name: not sent.
    pub damaged: Vec<String>,
}

/// Counters the progress bar reads.
#[derive(Default)]
pub struct Progress {
    pub bytes_done: AtomicU64,
    pub bytes_total: AtomicU64,
}

/// The hosted repository's restic endpoint.
struct Target<'a> {
    client: &'a Client,
    url: String,
    token: &'a str,
}

impl Target<'_> {
    fn held(&self, kind: &str) -> Result<HashMap<String, u64>> {
        let r = self
            .client
            .get(format!("{}{kind}/", self.url))
            .bearer_auth(self.token)
            .header("accept", V2)
            .send()
            .with_context(|| format!("listing {kind} of {}", self.url))?;
        Ok(list_answer(ok(r, &format!("listing {kind} of the hosted repository"))?)?.into_iter().collect())
    }

    fn has_config(&self) -> Result<bool> {
        let r = self.client.head(format!("{}config", self.url)).bearer_auth(self.token).send()?;
        Ok(r.status().is_success())
    }

    fn send(&self, kind: &str, name: &str, file: std::fs::File, len: u64) -> Result<()> {
        let path = if kind == "config" { format!("{}config", self.url) } else { format!("{}{kind}/{name}", self.url) };
        let r = self
            .client
            .post(&path)
            .bearer_auth(self.token)
            .header("content-type", "application/octet-stream")
            .body(reqwest::blocking::Body::sized(file, len))
            .send()
            .with_context(|| format!("uploading {kind}/{name}"))?;
        ok(r, &format!("uploading {kind}/{name}")).map(|_| ())
    }
}

/// Copies one object through a temporary file (hashing it on the way), checks it against its
/// name, and sends it. `Ok(false)`: damaged, not sent.
fn copy_one(
    source: &Source,
    target: &Target,
    spool: &std::path::Path,
    kind: &str,
    name: &str,
    progress: &Progress,
) -> Result<bool> {
    let mut reader = source.open(target.client, kind, name)?;
    let mut file = tempfile::tempfile_in(spool).context("creating a spool file")?;
    let mut hasher = ContentHasher::new(RepoFormat::Restic);
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = reader.read(&mut buf).with_context(|| format!("reading {kind}/{name} from the source"))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n]).context("writing a spool file")?;
        len += n as u64;
    }
    if kind != "config" && hasher.finish() != name {
        return Ok(false);
    }
    file.rewind()?;
    target.send(kind, name, file, len)?;
    progress.bytes_done.fetch_add(len, Ordering::Relaxed);
    Ok(true)
}

/// Imports `source` into restic repository `repo` on the server at `base`, `jobs` objects at a
/// time.
pub fn import(
    client: &Client,
    base: &str,
    token: &str,
    repo: &str,
    source: &Source,
    jobs: usize,
    progress: &Progress,
) -> Result<Report> {
    let target = Target { client, url: format!("{base}/restic/{repo}/"), token };
    // Prepare the hosted repository's storage (idempotent).
    let r = client.post(format!("{}?create=true", target.url)).bearer_auth(token).send()?;
    ok(r, &format!("preparing repository {repo}"))?;
    if let Source::Dir(d) = source {
        if !d.join("config").is_file() || !d.join("keys").is_dir() {
            bail!("{} is not a restic repository (it has no config file and keys directory)", d.display());
        }
    }
    let mut report = Report::default();
    let spool = tempfile::tempdir().context("creating a spool directory")?;
    for kind in TYPES {
        let held = target.held(kind)?;
        let mut todo = Vec::new();
        for (name, size) in source.list(client, kind)? {
            if held.get(&name).is_some_and(|&s| size == 0 || s == size) {
                report.skipped += 1;
            } else {
                progress.bytes_total.fetch_add(size, Ordering::Relaxed);
                todo.push(name);
            }
        }
        let queue = Mutex::new(todo.into_iter());
        let results = Mutex::new((Vec::<String>::new(), 0u64, 0u64, None::<anyhow::Error>));
        std::thread::scope(|scope| {
            for _ in 0..jobs.max(1) {
                scope.spawn(|| loop {
                    let next = queue.lock().unwrap().next();
                    let Some(name) = next else { return };
                    let before = progress.bytes_done.load(Ordering::Relaxed);
                    let outcome = copy_one(source, &target, spool.path(), kind, &name, progress);
                    let mut r = results.lock().unwrap();
                    match outcome {
                        Ok(true) => {
                            r.1 += 1;
                            r.2 += progress.bytes_done.load(Ordering::Relaxed).saturating_sub(before);
                        }
                        Ok(false) => r.0.push(format!("{kind}/{name}")),
                        Err(e) => {
                            if r.3.is_none() {
                                r.3 = Some(e);
                            }
                            // Stop the others: the import is resumable, run it again.
                            queue.lock().unwrap().by_ref().for_each(drop);
                            return;
                        }
                    }
                });
            }
        });
        let (damaged, uploaded, _, error) = results.into_inner().unwrap();
        if let Some(e) = error {
            return Err(e.context(format!(
                "importing {} into {repo} stopped ({} objects sent so far; run the same command again to resume)",
                source.describe(),
                report.uploaded + uploaded
            )));
        }
        report.damaged.extend(damaged);
        report.uploaded += uploaded;
    }
    report.bytes = progress.bytes_done.load(Ordering::Relaxed);
    if target.has_config()? {
        report.skipped += 1;
    } else {
        if !report.damaged.is_empty() {
            // Keep the repository closed to restic: it would find snapshots naming damaged data.
            return Ok(report);
        }
        if !copy_one(source, &target, spool.path(), "config", "config", progress)? {
            unreachable!("config is not content-addressed");
        }
        report.uploaded += 1;
        report.bytes = progress.bytes_done.load(Ordering::Relaxed);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_parse() {
        match Source::parse("rest:https://u:p%40ss@old.example:8000/repo").unwrap() {
            Source::Rest { url, user, password } => {
                assert_eq!(url, "https://old.example:8000/repo/");
                assert_eq!(user, "u");
                assert_eq!(password, "p%40ss");
            }
            Source::Dir(_) => panic!("a rest: URL is not a directory"),
        }
        assert!(matches!(Source::parse("/mnt/disk/restic").unwrap(), Source::Dir(_)));
        assert!(Source::parse("rest:ftp://x/").is_err());
    }

    #[test]
    fn directories_are_read_in_restics_layout() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("keys")).unwrap();
        let good = b"key bytes";
        let name = ContentHasher::of(RepoFormat::Restic, good);
        std::fs::write(dir.path().join("keys").join(&name), good).unwrap();
        std::fs::write(dir.path().join("keys").join("0".repeat(64)), b"not its name").unwrap();
        std::fs::create_dir_all(dir.path().join("data/ab")).unwrap();
        std::fs::write(dir.path().join("data/ab").join(format!("ab{}", "1".repeat(62))), b"pack").unwrap();
        let source = Source::Dir(dir.path().to_path_buf());
        let client = Client::new();
        let mut listed = source.list(&client, "keys").unwrap();
        listed.sort();
        assert_eq!(listed.len(), 2);
        let mut bytes = Vec::new();
        source.open(&client, "keys", &name).unwrap().read_to_end(&mut bytes).unwrap();
        assert_eq!(bytes, good);
        assert_eq!(ContentHasher::of(RepoFormat::Restic, &bytes), name);
        let data = source.list(&client, "data").unwrap();
        assert_eq!(data, vec![(format!("ab{}", "1".repeat(62)), 4)], "packs are found in their subdirectories");
        let mut pack = Vec::new();
        source.open(&client, "data", &data[0].0).unwrap().read_to_end(&mut pack).unwrap();
        assert_eq!(pack, b"pack");
    }
}
