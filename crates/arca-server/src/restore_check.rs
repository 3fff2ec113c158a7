//! The server's restore check: can each repository's newest snapshot be restored from what this
//! server stores? Proved without the customer's key, so it is a check of the provider's half of
//! a restore (the customer's devices and appliances prove the other half, decryption, with
//! `arca drill` and report it):
//!
//! 1. The newest snapshot's manifest names its packs (the server recorded them on upload; snapshots
//!    that arrived in the same second are all checked).
//! 2. Every one of them must be in the catalogue with its size, present in the store at that size,
//!    and listed by an index file (a client finds blobs through the index).
//! 3. A sample of them, up to [`SAMPLE_BYTES`] chosen at random, is read whole and hashed: each
//!    must hash to its name. The read rate gives an estimate of how long the store takes to hand
//!    out the whole snapshot's packs (the provider's side of a full restore).
//!
//! The outcome is recorded per repository and shown on the health page; a failure raises an
//! alert. The scrub reads everything, slowly; this reads little, and daily.

use std::time::Instant;

use arca_store::ObjectKind;
use rand::seq::SliceRandom;
use serde::Serialize;

use crate::db::accounts::{RepoFormat, Repository};
use crate::db::restore_check::NeededPack;
use crate::db::DbError;
use crate::format::ContentHasher;
use crate::state::AppState;
use crate::units::human_bytes;

/// Most bytes read and hashed per repository and check.
pub const SAMPLE_BYTES: i64 = 256 << 20;

/// What one check found.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// Repository.
    pub repo: String,
    /// The snapshot checked (none: the repository has no snapshot, nothing was recorded).
    pub snapshot: Option<String>,
    /// Whether everything held.
    pub ok: bool,
    /// One line: what was proved, or the first problems.
    pub summary: String,
}

/// Checks one repository and records the outcome (unless it has no snapshot yet).
pub async fn check(state: &AppState, repo: &Repository) -> Result<Outcome, DbError> {
    let db = state.db();
    let newest = db.newest_snapshots(repo.id).await?;
    let Some(snapshot) = newest.last().cloned() else {
        return Ok(Outcome { repo: repo.name.clone(), snapshot: None, ok: true, summary: "no snapshot yet".into() });
    };
    let needed = match repo.format {
        RepoFormat::Arca => {
            let mut needed = Vec::new();
            for name in &newest {
                needed.extend(db.needed_packs(repo.id, name).await?);
            }
            needed
        }
        // A restic snapshot's tree is encrypted: which packs it needs the server cannot know, so
        // it proves every data pack the repository holds.
        RepoFormat::Restic => every_data_pack(state, repo).await?,
    };
    let mut needed = needed;
    needed.sort_by(|a, b| (&a.kind, &a.name).cmp(&(&b.kind, &b.name)));
    needed.dedup_by(|a, b| a.kind == b.kind && a.name == b.name);
    let store = state.store(&repo.name);
    let short = newest.iter().map(|n| &n[..n.len().min(8)]).collect::<Vec<_>>().join(", ");
    let (total_bytes, names) = (needed.iter().filter_map(|p| p.size).sum::<i64>(), needed.len());
    let work = needed.clone();
    let format = repo.format;
    let started = Instant::now();
    let (problems, sampled, sampled_bytes) = tokio::task::spawn_blocking(move || {
        let mut problems: Vec<String> = Vec::new();
        let mut present = Vec::new();
        for p in &work {
            let kind = if p.kind == "meta" { ObjectKind::MetaPack } else { ObjectKind::DataPack };
            let Some(size) = p.size else {
                problems.push(format!("{} pack {} is not stored", p.kind, p.name));
                continue;
            };
            match store.stat(kind, &p.name) {
                Ok(Some(s)) if s as i64 == size => present.push((kind, p.name.clone(), size)),
                Ok(Some(s)) => problems.push(format!("{} pack {} has {s} bytes, catalogued {size}", p.kind, p.name)),
                Ok(None) => {
                    problems.push(format!("{} pack {} is catalogued but missing from the store", p.kind, p.name))
                }
                Err(e) => problems.push(format!("{} pack {}: {e}", p.kind, p.name)),
            }
            if !p.indexed {
                problems.push(format!("{} pack {} is listed by no index file", p.kind, p.name));
            }
        }
        present.shuffle(&mut rand::thread_rng());
        let (mut sampled, mut sampled_bytes) = (0usize, 0i64);
        for (kind, name, size) in present {
            if sampled > 0 && sampled_bytes + size > SAMPLE_BYTES {
                continue;
            }
            match store.get(kind, &name) {
                Ok(bytes) if ContentHasher::of(format, &bytes) == name => {}
                Ok(_) => problems.push(format!("pack {name} is damaged (its bytes do not hash to its name)")),
                Err(e) => problems.push(format!("pack {name} cannot be read: {e}")),
            }
            sampled += 1;
            sampled_bytes += size;
        }
        (problems, sampled, sampled_bytes)
    })
    .await
    .map_err(|e| DbError::Invalid(format!("the restore check of {} crashed: {e}", repo.name)))?;
    let secs = started.elapsed().as_secs_f64().max(1e-3);
    let ok = problems.is_empty();
    let summary = if ok {
        let rate = sampled_bytes as f64 / secs;
        let estimate = if rate > 0.0 { (total_bytes as f64 / rate).ceil() as u64 } else { 0 };
        format!(
            "snapshot {short}: all {names} packs ({}) stored and indexed; {sampled} ({}) read back intact at {}/s; \
             the store hands out the whole snapshot in about {}",
            human_bytes(total_bytes),
            human_bytes(sampled_bytes),
            human_bytes(rate as i64),
            arca_core::units::duration(estimate)
        )
    } else {
        let first: Vec<&str> = problems.iter().take(5).map(String::as_str).collect();
        format!("snapshot {short}: {} problems: {}", problems.len(), first.join("; "))
    };
    db.record_restore_check(repo, ok, &summary).await?;
    if ok {
        tracing::info!("restore check of {}: {summary}", repo.name);
    } else {
        tracing::error!("restore check of {} FAILED: {summary}", repo.name);
    }
    Ok(Outcome { repo: repo.name.clone(), snapshot: Some(snapshot), ok, summary })
}

/// Every data pack a repository's catalogue holds, as packs a restore needs (restic repositories,
/// whose snapshots name their packs only inside their encryption).
async fn every_data_pack(state: &AppState, repo: &Repository) -> Result<Vec<NeededPack>, DbError> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = state.db().list_objects(repo.id, ObjectKind::DataPack.dir(), after.as_deref(), 5000).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.name.clone());
        out.extend(page.into_iter().map(|o| NeededPack {
            kind: ObjectKind::DataPack.dir().to_string(),
            name: o.name,
            size: Some(o.size),
            indexed: true,
        }));
    }
    Ok(out)
}

/// Checks every repository (of one tenant, or all), one after the other.
pub async fn check_all(state: &AppState, tenant_id: Option<i64>) -> Result<Vec<Outcome>, DbError> {
    let mut out = Vec::new();
    for repo in state.db().repositories(tenant_id).await? {
        out.push(check(state, &repo).await?);
    }
    Ok(out)
}
