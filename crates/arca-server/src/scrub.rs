//! Scrub: re-reads every stored object and checks it against its content address, without any
//! customer key, and records damage per tenant and repository.
//!
//! It reads one object at a time on one blocking thread and sleeps to keep its average read rate
//! under a limit, so uploads and restores keep the disk and the network. A missing object, one of
//! the wrong size and one whose hash (BLAKE3, or SHA-256 in restic repositories) is not its name
//! are all reported (and audited under
//! the tenant), so the provider can restore it from another copy or tell the customer which
//! snapshots are affected (`arca check` on the client names them).

use std::time::{Duration, Instant};

use arca_store::{ErrorKind, ObjectKind};

use crate::db::accounts::Repository;
use crate::db::audit::NewAudit;
use crate::format::{content_addressed, hash_name, ContentHasher};
use crate::state::AppState;

/// Default read rate limit (bytes per second).
pub const DEFAULT_RATE: u64 = 50 << 20;

/// Kinds a scrub reads (locks are transient coordination files).
const KINDS: [ObjectKind; 7] = [
    ObjectKind::Config,
    ObjectKind::Key,
    ObjectKind::Snapshot,
    ObjectKind::Index,
    ObjectKind::MetaPack,
    ObjectKind::DataPack,
    ObjectKind::Pending,
];

/// Totals of one run.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Objects read.
    pub objects: i64,
    /// Bytes read.
    pub bytes: i64,
    /// Damaged objects.
    pub damaged: i64,
}

/// Starts a scrub in the background unless one is already running anywhere; returns its id.
pub async fn start(state: &AppState, started_by: &str) -> Result<Option<i64>, crate::db::DbError> {
    let Some(id) = state.db().start_scrub(started_by).await? else {
        return Ok(None);
    };
    let st = state.clone();
    tokio::spawn(async move {
        let outcome = run(&st, id).await;
        let final_state = match &outcome {
            Ok(s) => {
                tracing::info!("scrub {id} done: {} objects, {} bytes, {} damaged", s.objects, s.bytes, s.damaged);
                "done"
            }
            Err(e) => {
                tracing::error!("scrub {id} failed: {e}");
                "failed"
            }
        };
        if let Err(e) = st.db().finish_scrub(id, final_state).await {
            tracing::error!("scrub {id}: cannot record its end: {e}");
        }
    });
    Ok(Some(id))
}

/// Reads every catalogued object once.
async fn run(state: &AppState, id: i64) -> Result<Summary, crate::db::DbError> {
    let rate = state.scrub_rate().max(1);
    let started = Instant::now();
    let mut sum = Summary::default();
    let mut last_beat = Instant::now();
    for repo in state.db().repositories(None).await? {
        let damaged_before = sum.damaged;
        for kind in KINDS {
            let mut after: Option<String> = None;
            loop {
                let page = state.db().list_objects(repo.id, kind.dir(), after.as_deref(), 500).await?;
                let Some(last) = page.last() else { break };
                after = Some(last.name.clone());
                for object in page {
                    if let Some(problem) = verify(state, &repo, kind, &object.name, object.size).await? {
                        sum.damaged += 1;
                        record(state, id, &repo, kind, &object.name, &problem).await?;
                    }
                    sum.objects += 1;
                    sum.bytes += object.size;
                    // Keep the average rate under the limit.
                    let due = Duration::from_secs_f64(sum.bytes as f64 / rate as f64);
                    if let Some(wait) = due.checked_sub(started.elapsed()) {
                        tokio::time::sleep(wait).await;
                    }
                    if last_beat.elapsed() > Duration::from_secs(5) {
                        state.db().scrub_progress(id, sum.objects, sum.bytes, sum.damaged).await?;
                        last_beat = Instant::now();
                    }
                }
            }
        }
        if sum.damaged > damaged_before {
            // Findings are listed in the console; an alert makes sure someone looks.
            state.db().raise_scrub_alert(id, &repo, sum.damaged - damaged_before).await?;
        }
    }
    state.db().scrub_progress(id, sum.objects, sum.bytes, sum.damaged).await?;
    Ok(sum)
}

/// What is wrong with one object, if anything.
async fn verify(
    state: &AppState,
    repo: &Repository,
    kind: ObjectKind,
    name: &str,
    size: i64,
) -> Result<Option<String>, crate::db::DbError> {
    let store = state.store(&repo.name);
    let n = name.to_string();
    let mut hasher = ContentHasher::new(repo.format);
    // Hashed a piece at a time: a 1 GiB pack costs one piece of memory, not a gigabyte.
    let read = tokio::task::spawn_blocking(move || -> arca_store::Result<(u64, String)> {
        let Some(stored) = store.stat(kind, &n)? else {
            return Err(arca_store::Error::new(ErrorKind::NotFound, format!("{kind} object {n}")));
        };
        let mut reader = arca_store::RangeReader::new(store, kind, &n, 0, stored, 4 << 20);
        while let Some(piece) = reader.next_piece()? {
            hasher.update(&piece);
        }
        Ok((stored, hasher.finish()))
    })
    .await;
    let (stored, actual) = match read {
        Ok(Ok(found)) => found,
        Ok(Err(e)) if e.kind() == ErrorKind::NotFound => {
            // Deleted (by prune) since it was listed? Then it is not damage.
            if state.db().object(repo.id, kind.dir(), name).await?.is_none() {
                return Ok(None);
            }
            return Ok(Some("missing: catalogued but not in the object store".into()));
        }
        Ok(Err(e)) => return Ok(Some(format!("unreadable: {e}"))),
        Err(e) => return Ok(Some(format!("unreadable: {e}"))),
    };
    if stored as i64 != size {
        return Ok(Some(format!("wrong size: {stored} bytes stored, {size} catalogued")));
    }
    if content_addressed(repo.format, kind) && actual != name {
        return Ok(Some(format!("corrupt: the stored bytes hash ({}) to {actual}", hash_name(repo.format))));
    }
    Ok(None)
}

async fn record(
    state: &AppState,
    id: i64,
    repo: &Repository,
    kind: ObjectKind,
    name: &str,
    problem: &str,
) -> Result<(), crate::db::DbError> {
    tracing::error!("scrub {id}: {}/{kind}/{name}: {problem}", repo.name);
    state.db().add_finding(id, repo, kind.dir(), name, problem).await?;
    let target = format!("{}/{kind}/{name}", repo.name);
    let entry = NewAudit {
        actor: "server",
        tenant_id: Some(repo.tenant_id),
        action: "scrub.damage",
        target: &target,
        outcome: "failed",
        detail: problem,
        request_id: &format!("scrub-{id}"),
    };
    state.db().audit(entry).await
}
