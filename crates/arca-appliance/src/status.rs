//! What the appliance is doing, for people: `GET /status` (a small HTML page), `GET /status.json`,
//! and `status.json` in the data directory (rewritten on every change, so `arca appliance status`
//! can still report after the process stopped).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The status of one share.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ShareStatus {
    /// The folder.
    pub path: String,
    /// Its cron schedule, if any.
    pub schedule: Option<String>,
    /// When the next snapshot is due.
    pub next_snapshot: Option<DateTime<Utc>>,
    /// Snapshots of it in the local repository.
    pub snapshots: usize,
    /// The newest snapshot's id and time.
    pub last_snapshot: Option<SnapshotRef>,
    /// When the last job ran and whether it failed.
    pub last_run: Option<DateTime<Utc>>,
    /// The last job's error, if it failed.
    pub last_error: Option<String>,
    /// A standing problem of its configuration (e.g. no schedule: never snapshotted on its own).
    #[serde(default)]
    pub warning: Option<String>,
    /// The last restore drill of its newest snapshot.
    #[serde(default)]
    pub last_drill: Option<crate::drill::DrillOutcome>,
}

/// A snapshot as the status shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotRef {
    /// Its id.
    pub id: String,
    /// When it was taken.
    pub time: DateTime<Utc>,
}

/// The status of replication to the provider.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReplicationStatus {
    /// The provider repository's URL.
    pub provider: String,
    /// `idle`, `uploading`, `waiting for window`, `backing off`.
    pub state: String,
    /// When a pass last finished with everything on the provider.
    pub last_success: Option<DateTime<Utc>>,
    /// Local snapshots not yet on the provider.
    pub pending_snapshots: usize,
    /// Bytes still to upload in the current pass.
    pub pending_bytes: u64,
    /// Time of the oldest local snapshot not yet on the provider (the replication lag).
    pub oldest_pending: Option<DateTime<Utc>>,
    /// Bytes uploaded since start.
    pub uploaded_bytes: u64,
    /// Objects uploaded since start.
    pub uploaded_objects: u64,
    /// The last error, if the last pass failed.
    pub last_error: Option<String>,
    /// When the next attempt starts, when backing off.
    pub next_attempt: Option<DateTime<Utc>>,
    /// The upload limit in bytes per second, if any.
    pub upload_limit: Option<u64>,
    /// Set while the backlog is past the configured threshold (see `ProviderConfig`).
    #[serde(default)]
    pub alert: Option<String>,
}

/// Everything the status page shows.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Status {
    /// arca's version.
    pub version: String,
    /// When the appliance started.
    pub started: Option<DateTime<Utc>>,
    /// Shares by name.
    pub shares: BTreeMap<String, ShareStatus>,
    /// Replication, if a provider is configured.
    pub replication: Option<ReplicationStatus>,
    /// The SMB front (smbd), if `[smb]` is configured: what it is doing.
    #[serde(default)]
    pub smb: Option<String>,
    /// The last or running export to a disk (the admin page's), if any.
    #[serde(default)]
    pub export: Option<String>,
}

/// The shared, updatable status.
pub struct StatusBoard {
    status: Mutex<Status>,
    file: Option<PathBuf>,
}

impl StatusBoard {
    /// A board starting from `status`, persisted to `file` if given.
    pub fn new(status: Status, file: Option<PathBuf>) -> StatusBoard {
        let b = StatusBoard { status: Mutex::new(status), file };
        b.update(|_| {});
        b
    }

    /// A copy of the current status.
    pub fn get(&self) -> Status {
        self.status.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Changes the status and persists it.
    pub fn update(&self, f: impl FnOnce(&mut Status)) {
        let snapshot = {
            let mut s = self.status.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut s);
            s.clone()
        };
        if let Some(file) = &self.file {
            let tmp = file.with_extension("json.tmp");
            let bytes = serde_json::to_vec_pretty(&snapshot).unwrap_or_default();
            if let Err(e) = std::fs::write(&tmp, bytes).and_then(|_| std::fs::rename(&tmp, file)) {
                tracing::warn!("writing the status file {}: {e}", file.display());
            }
        }
    }

    /// Changes the replication part, if replication is configured.
    pub fn replication(&self, f: impl FnOnce(&mut ReplicationStatus)) {
        self.update(|s| {
            if let Some(r) = s.replication.as_mut() {
                f(r)
            }
        })
    }

    /// Changes share `name`'s part.
    pub fn share(&self, name: &str, f: impl FnOnce(&mut ShareStatus)) {
        self.update(|s| {
            if let Some(sh) = s.shares.get_mut(name) {
                f(sh)
            }
        })
    }

    /// The routes `/status` and `/status.json` (no authentication: they show no file names or
    /// contents; bind the appliance to the office network).
    pub fn router(self: Arc<Self>) -> Router {
        Router::new().route("/status", get(page)).route("/status.json", get(json)).with_state(self)
    }
}

async fn json(State(b): State<Arc<StatusBoard>>) -> Json<Status> {
    Json(b.get())
}

pub(crate) fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

pub(crate) fn when(t: &Option<DateTime<Utc>>) -> String {
    t.map(|t| t.with_timezone(&chrono::Local).format("%Y-%m-%d %H:%M:%S").to_string()).unwrap_or_else(|| "—".into())
}

/// Renders the HTML page.
pub fn render(s: &Status) -> String {
    let mut h = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"10\">\
         <title>arca appliance</title><style>body{font-family:sans-serif;margin:2em}td,th{padding:.2em .8em;\
         text-align:left}.err{color:#b00}</style></head><body><h1>arca appliance</h1>",
    );
    h += &format!(
        "<p>version {} · running since {}</p><h2>Shares</h2><table><tr><th>share</th><th>folder</th>\
        <th>schedule</th><th>next</th><th>snapshots</th><th>last snapshot</th><th>last drill</th><th>problem</th></tr>",
        esc(&s.version),
        when(&s.started)
    );
    for (name, sh) in &s.shares {
        h += &format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"err\">{}</td></tr>",
            esc(name),
            esc(&sh.path),
            esc(sh.schedule.as_deref().unwrap_or("none")),
            when(&sh.next_snapshot),
            sh.snapshots,
            sh.last_snapshot
                .as_ref()
                .map(|l| format!("{} ({})", when(&Some(l.time)), &l.id[..8]))
                .unwrap_or_else(|| "—".into()),
            sh.last_drill
                .as_ref()
                .map(|d| format!(
                    "{} {}: {}",
                    if d.passed { "passed" } else { "<span class=\"err\">FAILED</span>" },
                    when(&Some(d.time)),
                    esc(&d.summary)
                ))
                .unwrap_or_else(|| "—".into()),
            esc(&[sh.warning.as_deref(), sh.last_error.as_deref()].into_iter().flatten().collect::<Vec<_>>().join(" · ")),
        );
    }
    h += "</table>";
    if let Some(smb) = &s.smb {
        h += &format!("<h2>SMB</h2><p id=\"smb\">{}</p>", esc(smb));
    }
    h += "<h2>Replication</h2>";
    if let Some(alert) = s.replication.as_ref().and_then(|r| r.alert.as_deref()) {
        h += &format!("<p class=\"err\" id=\"backlog-alert\"><strong>{}</strong></p>", esc(alert));
    }
    match &s.replication {
        None => h += "<p>No provider is configured: snapshots stay on this appliance.</p>",
        Some(r) => {
            h += &format!(
                "<table><tr><th>provider</th><td>{}</td></tr><tr><th>state</th><td>{}</td></tr>\
                 <tr><th>last complete</th><td>{}</td></tr><tr><th>snapshots waiting</th><td>{}</td></tr>\
                 <tr><th>oldest waiting since</th><td>{}</td></tr><tr><th>bytes waiting</th><td>{}</td></tr>\
                 <tr><th>uploaded</th><td>{} bytes in {} objects</td></tr><tr><th>problem</th><td class=\"err\">{}</td></tr></table>",
                esc(&r.provider),
                esc(&r.state),
                when(&r.last_success),
                r.pending_snapshots,
                when(&r.oldest_pending),
                r.pending_bytes,
                r.uploaded_bytes,
                r.uploaded_objects,
                esc(r.last_error.as_deref().unwrap_or("")),
            )
        }
    }
    h += "</body></html>";
    h
}

async fn page(State(b): State<Arc<StatusBoard>>) -> Response {
    let mut r = Html(render(&b.get())).into_response();
    r.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_escapes_what_it_shows() {
        let mut s = Status::default();
        s.shares.insert(
            "docs".into(),
            ShareStatus { path: "/srv/<docs>".into(), last_error: Some("bad & worse".into()), ..Default::default() },
        );
        let html = render(&s);
        assert!(html.contains("/srv/&lt;docs&gt;") && html.contains("bad &amp; worse"), "{html}");
        assert!(html.contains("No provider is configured"));
    }
}
