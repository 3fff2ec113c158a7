//! Runs retention and garbage collection on repositories (the rules are in [`crate::db::gc`]):
//! catalogue first, then the bytes, each deletion audited in one summary entry per repository.

use arca_store::ObjectKind;

use crate::db::accounts::Repository;
use crate::db::audit::NewAudit;
use crate::db::gc::GcReport;
use crate::db::DbError;
use crate::state::AppState;

/// Deletes an object's bytes; the catalogue no longer lists it, so a failure leaves only an
/// invisible orphan (logged).
async fn delete_bytes(state: &AppState, repo: &Repository, kind: ObjectKind, name: &str) {
    let store = state.store(&repo.name);
    let n = name.to_string();
    match tokio::task::spawn_blocking(move || store.delete(kind, &n)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!("gc {}: {kind}/{name} uncatalogued but its bytes remain: {e}", repo.name),
        Err(e) => tracing::warn!("gc {}: {kind}/{name}: {e}", repo.name),
    }
}

/// Collects one repository.
pub async fn collect(state: &AppState, repo: &Repository, actor: &str, request_id: &str) -> Result<GcReport, DbError> {
    let db = state.db();
    let mut report = GcReport { repository: repo.name.clone(), ..Default::default() };
    for snap in db.expired_snapshots(repo).await? {
        if db.remove_object(repo, ObjectKind::Snapshot.dir(), &snap.name).await?.is_some() {
            delete_bytes(state, repo, ObjectKind::Snapshot, &snap.name).await;
            report.expired_snapshots += 1;
            report.freed_objects += 1;
            report.freed_bytes += snap.size;
        }
    }
    report.condemned = db.condemn_unreferenced(repo).await?;
    let (free, waiting) = db.freeable_packs(repo).await?;
    report.waiting_for_leases = waiting;
    for (kind, pack) in free {
        let Some(k) = ObjectKind::from_dir(&kind) else { continue };
        if db.remove_condemned(repo, &kind, &pack.name).await? {
            delete_bytes(state, repo, k, &pack.name).await;
            report.freed_objects += 1;
            report.freed_bytes += pack.size;
        }
    }
    for idx in db.dead_index_files(repo).await? {
        if db.remove_dead_index(repo, &idx.name).await?.is_some() {
            delete_bytes(state, repo, ObjectKind::Index, &idx.name).await;
            report.freed_objects += 1;
            report.freed_bytes += idx.size;
        }
    }
    if report.freed_objects > 0 || report.condemned > 0 {
        let detail = format!(
            "{} snapshots expired, {} packs condemned, {} objects freed ({} bytes), {} packs wait for running backups",
            report.expired_snapshots,
            report.condemned,
            report.freed_objects,
            report.freed_bytes,
            report.waiting_for_leases
        );
        tracing::info!("gc {}: {detail}", repo.name);
        let entry = NewAudit {
            actor,
            tenant_id: Some(repo.tenant_id),
            action: "gc",
            target: &repo.name,
            outcome: "ok",
            detail: &detail,
            request_id,
        };
        db.audit(entry).await?;
    }
    Ok(report)
}

/// Collects every repository (the scheduled run).
pub async fn collect_all(state: &AppState) -> Result<Vec<GcReport>, DbError> {
    let mut out = Vec::new();
    for repo in state.db().repositories(None).await? {
        out.push(collect(state, &repo, "server", "scheduled-gc").await?);
    }
    Ok(out)
}
