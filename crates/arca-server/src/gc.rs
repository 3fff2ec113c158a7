//! Runs retention and garbage collection on repositories (the rules are in [`crate::db::gc`]):
//! catalogue first, then the bytes, each deletion audited in one summary entry per repository.

use arca_store::ObjectKind;

use crate::db::accounts::{RepoFormat, Repository};
use crate::db::audit::NewAudit;
use crate::db::gc::GcReport;
use crate::db::DbError;
use crate::state::AppState;

/// Deletes an object's bytes; whether it worked. A failure is logged: for a catalogued kind the
/// catalogue no longer lists the object, so it leaves only an invisible orphan.
async fn delete_bytes(state: &AppState, repo: &Repository, kind: ObjectKind, name: &str) -> bool {
    let store = state.store(&repo.name);
    let n = name.to_string();
    match tokio::task::spawn_blocking(move || store.delete(kind, &n)).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::warn!("gc {}: the bytes of {kind}/{name} remain: {e}", repo.name);
            false
        }
        Err(e) => {
            tracing::warn!("gc {}: {kind}/{name}: {e}", repo.name);
            false
        }
    }
}

/// Removes the locks of `repo` whose lease lapsed (not refreshed for
/// [`crate::db::gc::LEASE_TTL`], while clients refresh every few minutes): their holders are gone,
/// a client killed or a replicator cut off mid-pass. Left alone, such a lock stays for ever, every
/// `arca check` warns about it, and a device token may not remove another's lock. Returns how many
/// it removed. The collector runs this on every pass, and a lock upload when the repository is at
/// its lock limit. A lock whose bytes cannot be removed keeps its lease (so it still counts
/// against the limit) and is tried again next time.
pub async fn remove_lapsed_locks(state: &AppState, repo: &Repository) -> Result<i64, DbError> {
    let db = state.db();
    let mut removed = 0;
    for name in db.lapsed_leases(repo.id).await? {
        if !delete_bytes(state, repo, ObjectKind::Lock, &name).await {
            continue;
        }
        db.end_lease(repo.id, &name).await?;
        tracing::info!("removed lock {name} of {}: its lease lapsed", repo.name);
        removed += 1;
    }
    Ok(removed)
}

/// Collects one repository.
pub async fn collect(state: &AppState, repo: &Repository, actor: &str, request_id: &str) -> Result<GcReport, DbError> {
    let db = state.db();
    let mut report = GcReport { repository: repo.name.clone(), ..Default::default() };
    if repo.format == RepoFormat::Restic {
        // Which packs a restic snapshot needs is encrypted: the server cannot tell garbage from
        // data, so only the customer's own `restic forget --prune` (a tenant admin's token,
        // outside the retention lock) frees space. Stale locks the server can still clear.
        report.stale_locks = remove_lapsed_locks(state, repo).await?;
        return Ok(report);
    }
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
    report.stale_locks = remove_lapsed_locks(state, repo).await?;
    if report.freed_objects > 0 || report.condemned > 0 || report.stale_locks > 0 {
        let detail = format!(
            "{} snapshots expired, {} packs condemned, {} objects freed ({} bytes), {} packs wait for running backups, \
             {} stale locks removed",
            report.expired_snapshots,
            report.condemned,
            report.freed_objects,
            report.freed_bytes,
            report.waiting_for_leases,
            report.stale_locks
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Backend;
    use arca_store::Store;

    /// A lock whose holder stopped refreshing it is removed by the collector; a live one stays.
    #[tokio::test]
    async fn lapsed_locks_are_removed_and_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::db::Db::connect(&format!("sqlite://{}/m.db", dir.path().display())).await.unwrap();
        let state = AppState::new(db.clone(), Backend::Local(dir.path().to_path_buf()));
        db.create_tenant("t", "", None).await.unwrap();
        let repo = db.create_repository("t", "r", None).await.unwrap();
        let store = state.store("r");
        for name in ["dead", "live"] {
            store.put(ObjectKind::Lock, name, b"{}").unwrap();
            db.renew_lease(repo.id, name, "device:d@t").await.unwrap();
        }
        sqlx::query("UPDATE leases SET renewed_at = 0 WHERE name = 'dead'").execute(db.pool()).await.unwrap();
        let report = collect(&state, &repo, "test", "test").await.unwrap();
        assert_eq!(report.stale_locks, 1);
        assert!(store.stat(ObjectKind::Lock, "dead").unwrap().is_none());
        assert!(store.stat(ObjectKind::Lock, "live").unwrap().is_some());
        assert!(!db.has_lease(repo.id, "dead").await.unwrap() && db.has_lease(repo.id, "live").await.unwrap());
    }
}
