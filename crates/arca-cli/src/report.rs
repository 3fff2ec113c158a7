//! Telling the provider's server that a backup failed, so that its health page shows the device
//! as failing and an alert reaches the provider's staff. Best effort: one attempt, and a server
//! that cannot be reached (often the very reason the backup failed) only adds a log line.

use arca_store::HttpStore;

use crate::cli::GlobalOpts;

/// Reports `err` for the repository of `g`, if it is on an arca server.
pub fn backup_failed(g: &GlobalOpts, err: &anyhow::Error) {
    let Ok(location) = crate::repo::location(g) else { return };
    let lower = location.to_ascii_lowercase();
    if !lower.starts_with("http://") && !lower.starts_with("https://") {
        return;
    }
    let token = std::env::var("ARCA_TOKEN").unwrap_or_default();
    if token.trim().is_empty() {
        return;
    }
    let message = format!("{err:#}");
    match HttpStore::new(&location, &token).and_then(|store| store.report_failure(&message)) {
        Ok(()) => tracing::info!("the failure was reported to the server"),
        Err(e) => tracing::warn!("could not report the failure to the server: {e}"),
    }
}
