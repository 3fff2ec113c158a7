//! Telling the provider's server how runs went: a failed backup (its health page shows the device
//! as failing and an alert reaches the provider's staff) and restore drills (the last proven
//! restore). Best effort: one attempt, and a server that cannot be reached (often the very reason
//! the backup failed) only adds a log line.

use arca_store::HttpStore;

use crate::cli::GlobalOpts;

/// Reports `err` for the repository of `g`, if it is on an arca server.
pub fn backup_failed(g: &GlobalOpts, err: &anyhow::Error) {
    send(g, "failed", &format!("{err:#}"));
}

/// Reports a restore drill's result (the console shows each device's last proven restore).
pub fn drill(g: &GlobalOpts, passed: bool, summary: &str) {
    send(g, if passed { "drill" } else { "drill-failed" }, summary);
}

fn send(g: &GlobalOpts, outcome: &str, message: &str) {
    // `arca agent` runs backups as child processes and reports their outcome itself, with the
    // job and the console's state: a second report would raise a second alert.
    if std::env::var_os("ARCA_NO_REPORT").is_some_and(|v| !v.is_empty() && v != "0") {
        return;
    }
    let Ok(location) = crate::repo::location(g) else { return };
    let lower = location.to_ascii_lowercase();
    if !lower.starts_with("http://") && !lower.starts_with("https://") {
        return;
    }
    let token = std::env::var("ARCA_TOKEN").unwrap_or_default();
    if token.trim().is_empty() {
        return;
    }
    match HttpStore::new(&location, &token).and_then(|store| store.report(outcome, message)) {
        Ok(()) => tracing::info!("reported {outcome} to the server"),
        Err(e) => tracing::warn!("could not report {outcome} to the server: {e}"),
    }
}
