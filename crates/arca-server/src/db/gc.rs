//! Server-side retention and garbage collection, without any customer key.
//!
//! The server knows, from the plaintext manifests, which packs each snapshot needs and which
//! packs each index file lists, and from the lock files which backups are running (a lock file is
//! the client's *lease*: created when a backup starts, rewritten every few minutes, deleted at the
//! end). Collection of one repository:
//!
//! 1. **Retention**: snapshots the server received more than `retention_days` ago (its own clock;
//!    the time a client claims never counts) are expired, except the newest one, and never
//!    before the retention lock allows.
//! 2. **Condemn**: data and metadata packs that no snapshot needs and that are past the lock are
//!    marked. From then on listings leave them out, so a backup that starts later does not build
//!    on them; a snapshot that names one revives it.
//! 3. **Free**: a condemned pack is deleted only once every lease that was live when it was
//!    condemned has ended (or lapsed without renewal for [`LEASE_TTL`]): no running backup can
//!    still name it. No clock grace period on the objects decides anything.
//! 4. Index files whose every pack is gone are deleted.

use serde::Serialize;

use super::accounts::Repository;
use super::catalog::{ObjectRow, Unless};
use super::{col, now, Db, Result};
use crate::limits;

/// A lease not renewed for this long has lapsed (the client refreshes its lock every 5 minutes
/// and gives up its own backup after 25 minutes without a refresh).
pub const LEASE_TTL: i64 = 30 * 60;

/// What one collection did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GcReport {
    /// Repository.
    pub repository: String,
    /// Snapshots expired by the retention policy.
    pub expired_snapshots: i64,
    /// Packs newly condemned.
    pub condemned: i64,
    /// Objects deleted (snapshots, packs, index files).
    pub freed_objects: i64,
    /// Bytes deleted.
    pub freed_bytes: i64,
    /// Condemned packs kept because a backup that may use them is still running.
    pub waiting_for_leases: i64,
    /// Lock files removed because their lease lapsed (their holder is gone).
    pub stale_locks: i64,
}

impl Db {
    /// Records that lock `name` of a repository was written by `owner` (an audit actor): a lease
    /// starts, or is renewed (its holder stays the one who first wrote it).
    pub async fn renew_lease(&self, repo_id: i64, name: &str, owner: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO leases (repo_id, name, created_at, renewed_at, owner) VALUES ($1, $2, $3, $3, $4) \
             ON CONFLICT (repo_id, name) DO UPDATE SET renewed_at = excluded.renewed_at",
        )
        .bind(repo_id)
        .bind(name)
        .bind(now())
        .bind(owner)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Records that lock `name` was removed: its lease ended.
    pub async fn end_lease(&self, repo_id: i64, name: &str) -> Result<()> {
        sqlx::query("DELETE FROM leases WHERE repo_id = $1 AND name = $2")
            .bind(repo_id)
            .bind(name)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Whether lock `name` of a repository holds a lease (live or lapsed).
    pub async fn has_lease(&self, repo_id: i64, name: &str) -> Result<bool> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM leases WHERE repo_id = $1 AND name = $2")
            .bind(repo_id)
            .bind(name)
            .fetch_one(self.pool())
            .await?;
        Ok(n > 0)
    }

    /// Who holds lock `name` (the actor who wrote it; `None` if unknown: no lease, or one from
    /// before holders were recorded) and whether its lease lapsed.
    pub async fn lease_holder(&self, repo_id: i64, name: &str) -> Result<(Option<String>, bool)> {
        let row: Option<(String, i64)> =
            sqlx::query_as("SELECT owner, renewed_at FROM leases WHERE repo_id = $1 AND name = $2")
                .bind(repo_id)
                .bind(name)
                .fetch_optional(self.pool())
                .await?;
        Ok(match row {
            Some((owner, renewed_at)) => ((!owner.is_empty()).then_some(owner), renewed_at < now() - LEASE_TTL),
            None => (None, false),
        })
    }

    /// How many locks of a repository hold a lease (live or lapsed).
    pub async fn lease_count(&self, repo_id: i64) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM leases WHERE repo_id = $1")
            .bind(repo_id)
            .fetch_one(self.pool())
            .await?)
    }

    /// The locks of a repository whose lease lapsed (not renewed for [`LEASE_TTL`]): their
    /// holders are gone, so the server may remove them.
    pub async fn lapsed_leases(&self, repo_id: i64) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar("SELECT name FROM leases WHERE repo_id = $1 AND renewed_at < $2 ORDER BY name")
            .bind(repo_id)
            .bind(now() - LEASE_TTL)
            .fetch_all(self.pool())
            .await?)
    }

    /// When the oldest live lease of a repository started, if any is live.
    pub async fn oldest_live_lease(&self, repo_id: i64) -> Result<Option<i64>> {
        let v: Option<i64> =
            sqlx::query_scalar("SELECT MIN(created_at) FROM leases WHERE repo_id = $1 AND renewed_at >= $2")
                .bind(repo_id)
                .bind(now() - LEASE_TTL)
                .fetch_one(self.pool())
                .await?;
        Ok(v)
    }

    /// Sets how many days the server keeps snapshots (0: until the customer forgets them).
    pub async fn set_retention(&self, repo: &str, days: i64) -> Result<Repository> {
        limits::days("retention_days", days)?;
        let r = self.repository(repo).await?;
        sqlx::query("UPDATE repositories SET retention_days = $1 WHERE id = $2")
            .bind(days)
            .bind(r.id)
            .execute(self.pool())
            .await?;
        self.repository(repo).await
    }

    /// Whether a customer may set `days` of retention on `repo`: 0 keeps everything; otherwise
    /// at least the repository's retention lock (the plan's), since nothing younger can go
    /// anyway, and at most ten years. `Err` says why not, for a person.
    pub fn check_retention(repo: &Repository, days: i64) -> std::result::Result<(), String> {
        match days {
            0 => Ok(()),
            d if d < 0 => Err("Retention cannot be negative.".into()),
            d if d < repo.lock_days => Err(format!(
                "At least {} days: the repository's retention lock keeps every snapshot that long anyway (0 keeps \
                 everything).",
                repo.lock_days
            )),
            d if d > 3650 => Err("At most 3650 days (ten years); 0 keeps everything.".into()),
            _ => Ok(()),
        }
    }

    /// The repository's retention in days.
    pub async fn retention_days(&self, repo_id: i64) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT retention_days FROM repositories WHERE id = $1")
            .bind(repo_id)
            .fetch_one(self.pool())
            .await?)
    }

    /// Snapshots the retention policy expires now (never the newest, never inside the lock).
    pub async fn expired_snapshots(&self, repo: &Repository) -> Result<Vec<ObjectRow>> {
        let days = self.retention_days(repo.id).await?;
        if days == 0 {
            return Ok(Vec::new());
        }
        let cutoff = limits::days_before(now(), days).min(limits::days_before(now(), repo.lock_days));
        let rows = sqlx::query(
            "SELECT name, size, created_at FROM objects WHERE repo_id = $1 AND kind = 'snapshots' \
             AND created_at < $2 ORDER BY created_at DESC, name DESC",
        )
        .bind(repo.id)
        .bind(cutoff)
        .fetch_all(self.pool())
        .await?;
        let newest: Option<String> = sqlx::query_scalar(
            "SELECT name FROM objects WHERE repo_id = $1 AND kind = 'snapshots' \
             ORDER BY created_at DESC, name DESC LIMIT 1",
        )
        .bind(repo.id)
        .fetch_optional(self.pool())
        .await?;
        let mut out = Vec::new();
        for r in &rows {
            let row = ObjectRow { name: col(r, "name")?, size: col(r, "size")?, created_at: col(r, "created_at")? };
            if Some(&row.name) != newest.as_ref() {
                out.push(row);
            }
        }
        Ok(out)
    }

    /// Condemns the packs no snapshot needs that are past the lock; returns how many.
    pub async fn condemn_unreferenced(&self, repo: &Repository) -> Result<i64> {
        let n = sqlx::query(
            "UPDATE objects SET condemned_at = $1 WHERE repo_id = $2 AND kind IN ('data', 'meta') \
             AND condemned_at = 0 AND created_at < $3 AND NOT EXISTS (SELECT 1 FROM snapshot_packs s \
             WHERE s.repo_id = objects.repo_id AND s.pack_kind = objects.kind AND s.pack = objects.name)",
        )
        .bind(now())
        .bind(repo.id)
        .bind(limits::days_before(now(), repo.lock_days))
        .execute(self.pool())
        .await?
        .rows_affected();
        Ok(n as i64)
    }

    /// Condemned packs that can go now, and how many must wait for a running backup.
    pub async fn freeable_packs(&self, repo: &Repository) -> Result<(Vec<(String, ObjectRow)>, i64)> {
        // A pack condemned at time C may be used by a backup whose lease started at or before C.
        let horizon = self.oldest_live_lease(repo.id).await?.unwrap_or(i64::MAX);
        let rows = sqlx::query(
            "SELECT kind, name, size, created_at, condemned_at FROM objects WHERE repo_id = $1 \
             AND kind IN ('data', 'meta') AND condemned_at > 0 ORDER BY kind, name",
        )
        .bind(repo.id)
        .fetch_all(self.pool())
        .await?;
        let mut free = Vec::new();
        let mut waiting = 0;
        for r in &rows {
            let condemned: i64 = col(r, "condemned_at")?;
            if condemned < horizon {
                let row = ObjectRow { name: col(r, "name")?, size: col(r, "size")?, created_at: col(r, "created_at")? };
                free.push((col(r, "kind")?, row));
            } else {
                waiting += 1;
            }
        }
        Ok((free, waiting))
    }

    /// Uncatalogues a condemned pack, unless a snapshot revived it meanwhile. Returns whether it
    /// was removed (the caller then deletes its bytes).
    pub async fn remove_condemned(&self, repo: &Repository, kind: &str, name: &str) -> Result<bool> {
        Ok(self.uncatalogue(repo, kind, name, Unless::NotCondemned).await?.is_some())
    }

    /// Uncatalogues a dead index file, unless one of its packs was stored again meanwhile.
    /// Returns the row if it was removed (the caller then deletes its bytes).
    pub async fn remove_dead_index(&self, repo: &Repository, name: &str) -> Result<Option<ObjectRow>> {
        self.uncatalogue(repo, "index", name, Unless::IndexListsALivePack).await
    }

    /// Index files past the lock whose every listed pack is gone.
    pub async fn dead_index_files(&self, repo: &Repository) -> Result<Vec<ObjectRow>> {
        let rows = sqlx::query(
            "SELECT name, size, created_at FROM objects o WHERE o.repo_id = $1 AND o.kind = 'index' \
             AND o.created_at < $2 AND EXISTS (SELECT 1 FROM index_packs i WHERE i.repo_id = o.repo_id \
             AND i.idx = o.name) AND NOT EXISTS (SELECT 1 FROM index_packs i JOIN objects p \
             ON p.repo_id = i.repo_id AND p.kind = i.pack_kind AND p.name = i.pack \
             WHERE i.repo_id = o.repo_id AND i.idx = o.name)",
        )
        .bind(repo.id)
        .bind(limits::days_before(now(), repo.lock_days))
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| Ok(ObjectRow { name: col(r, "name")?, size: col(r, "size")?, created_at: col(r, "created_at")? }))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use crate::db::catalog::NewObject;
    use crate::db::testing::databases;

    fn pack(kind: &str, name: &str) -> (String, String) {
        (kind.to_string(), name.to_string())
    }

    #[tokio::test]
    async fn condemned_packs_wait_for_older_leases_and_snapshots_revive_them() {
        for (db, _guard) in databases().await {
            db.create_tenant("acme", "", None).await.unwrap();
            let repo = db.create_repository("acme", "r", None).await.unwrap();
            let put = |kind: &'static str, name: &'static str, packs: Vec<(String, String)>| {
                let db = db.clone();
                let repo = repo.clone();
                async move {
                    let o = NewObject { kind, name, size: 10, packs: &packs, ingress: 10, logical: 0 };
                    db.commit_object(&repo, None, &o).await
                }
            };
            for p in ["p1", "p2", "p3"] {
                put("data", p, vec![]).await.unwrap();
            }
            put("index", "i1", vec![pack("data", "p1"), pack("data", "p2")]).await.unwrap();
            put("index", "i2", vec![pack("data", "p3")]).await.unwrap();
            put("snapshots", "s1", vec![pack("data", "p1")]).await.unwrap();
            // Objects are "older than the lock" (0 days) only once a second has passed.
            sqlx::query("UPDATE objects SET created_at = created_at - 10").execute(db.pool()).await.unwrap();
            // A backup is running: its lease started before the collection.
            db.renew_lease(repo.id, "lock-a", "device:a@acme").await.unwrap();
            sqlx::query("UPDATE leases SET created_at = created_at - 5").execute(db.pool()).await.unwrap();
            assert_eq!(db.condemn_unreferenced(&repo).await.unwrap(), 2, "p2 and p3 are unreferenced");
            let listed: Vec<String> =
                db.list_objects(repo.id, "data", None, 10).await.unwrap().into_iter().map(|o| o.name).collect();
            assert_eq!(listed, ["p1"], "condemned packs are not listed");
            let (free, waiting) = db.freeable_packs(&repo).await.unwrap();
            assert!(free.is_empty() && waiting == 2, "the running backup may still use them");
            // The running backup finishes with a snapshot that uses p2: p2 is revived.
            put("snapshots", "s2", vec![pack("data", "p2")]).await.unwrap();
            db.end_lease(repo.id, "lock-a").await.unwrap();
            let (free, waiting) = db.freeable_packs(&repo).await.unwrap();
            let names: Vec<&str> = free.iter().map(|(_, o)| o.name.as_str()).collect();
            assert_eq!((names, waiting), (vec!["p3"], 0));
            assert!(db.remove_condemned(&repo, "data", "p3").await.unwrap());
            assert!(!db.remove_condemned(&repo, "data", "p1").await.unwrap(), "p1 was never condemned");
            // i2 listed only p3: it is dead now; i1 still lists live packs.
            let dead: Vec<String> = db.dead_index_files(&repo).await.unwrap().into_iter().map(|o| o.name).collect();
            assert_eq!(dead, ["i2"]);
            // A snapshot naming a pack that is gone is refused.
            let err = put("snapshots", "s3", vec![pack("data", "p3")]).await.unwrap_err();
            assert!(err.to_string().contains("no longer stored"), "{err}");
            assert_eq!(db.repository("r").await.unwrap().stored_bytes, 10 * 6);
            assert_eq!(db.tenant("acme").await.unwrap().stored_bytes, 10 * 6);
            // A client uploads p3 again (say, an appliance resending what it lost) after the
            // collector chose i2: i2 covers a live pack again and stays.
            put("data", "p3", vec![]).await.unwrap();
            assert!(db.remove_dead_index(&repo, "i2").await.unwrap().is_none(), "i2 lists p3 again");
            // Gone again: now it goes.
            sqlx::query("UPDATE objects SET condemned_at = 1 WHERE name = 'p3'").execute(db.pool()).await.unwrap();
            assert!(db.remove_condemned(&repo, "data", "p3").await.unwrap());
            assert!(db.remove_dead_index(&repo, "i2").await.unwrap().is_some());
        }
    }

    #[tokio::test]
    async fn a_lapsed_lease_does_not_hold_collection_forever() {
        for (db, _guard) in databases().await {
            db.create_tenant("acme", "", None).await.unwrap();
            let repo = db.create_repository("acme", "r", None).await.unwrap();
            let o = NewObject { kind: "data", name: "p", size: 1, packs: &[], ingress: 1, logical: 0 };
            db.commit_object(&repo, None, &o).await.unwrap();
            sqlx::query("UPDATE objects SET created_at = created_at - 10").execute(db.pool()).await.unwrap();
            db.renew_lease(repo.id, "crashed", "device:a@acme").await.unwrap();
            sqlx::query("UPDATE leases SET created_at = 0, renewed_at = 0").execute(db.pool()).await.unwrap();
            db.condemn_unreferenced(&repo).await.unwrap();
            let (free, waiting) = db.freeable_packs(&repo).await.unwrap();
            assert_eq!((free.len(), waiting), (1, 0));
        }
    }

    #[tokio::test]
    async fn retention_expires_old_snapshots_by_server_time_but_keeps_the_newest_and_the_lock() {
        for (db, _guard) in databases().await {
            db.create_tenant("acme", "", None).await.unwrap();
            let repo = db.create_repository("acme", "r", Some(10)).await.unwrap();
            for (name, age_days) in [("old", 40), ("mid", 20), ("young", 5), ("newest", 30)] {
                let o = NewObject { kind: "snapshots", name, size: 1, packs: &[], ingress: 1, logical: 0 };
                db.commit_object(&repo, None, &o).await.unwrap();
                sqlx::query("UPDATE objects SET created_at = $1 WHERE name = $2")
                    .bind(crate::db::now() - age_days * 86_400 + if name == "newest" { 30 * 86_400 } else { 0 })
                    .bind(name)
                    .execute(db.pool())
                    .await
                    .unwrap();
            }
            assert!(db.expired_snapshots(&repo).await.unwrap().is_empty(), "no retention policy set");
            db.set_retention("r", 15).await.unwrap();
            let mut expired: Vec<String> =
                db.expired_snapshots(&repo).await.unwrap().into_iter().map(|o| o.name).collect();
            expired.sort();
            assert_eq!(expired, ["mid", "old"], "older than 15 days and past the 10-day lock");
            db.set_retention("r", 1).await.unwrap();
            let expired = db.expired_snapshots(&repo).await.unwrap();
            assert!(expired.iter().all(|o| o.name != "young"), "the 10-day lock protects it");
            assert!(expired.iter().all(|o| o.name != "newest"), "the newest snapshot always stays");
            assert!(
                crate::db::Db::check_retention(&repo, 0).is_ok() && crate::db::Db::check_retention(&repo, 10).is_ok()
            );
            assert!(crate::db::Db::check_retention(&repo, 9).unwrap_err().contains("At least 10 days"));
            assert!(
                crate::db::Db::check_retention(&repo, -1).is_err()
                    && crate::db::Db::check_retention(&repo, 4000).is_err()
            );
        }
    }
}
