//! The object catalogue: which objects each repository holds, how big and since when, plus the
//! quota reservations that let the server refuse an upload before accepting its bytes.
//!
//! Every change to the catalogue updates, in the same transaction, the repository's and tenant's
//! stored-bytes counters and the day's metering row, so quotas and usage are exact to the byte
//! and agree with each other whatever crashes.

use sqlx::any::AnyRow;
use sqlx::{Any, Transaction};

use super::accounts::Repository;
use super::{col, now, Db, DbError, Result};

/// One catalogued object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRow {
    /// Name within its kind.
    pub name: String,
    /// Size in bytes.
    pub size: i64,
    /// When the server stored it (Unix seconds, server clock): the start of its retention lock.
    pub created_at: i64,
}

fn object_from(row: &AnyRow) -> Result<ObjectRow> {
    Ok(ObjectRow { name: col(row, "name")?, size: col(row, "size")?, created_at: col(row, "created_at")? })
}

/// A snapshot as the server sees it, without the customer's key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SnapshotRow {
    /// Its name (the BLAKE3 of its bytes; the client's snapshot id).
    pub name: String,
    /// When the server received it (Unix seconds).
    pub received_at: i64,
    /// The bytes it represents.
    pub logical_bytes: i64,
    /// Its own size.
    pub size: i64,
    /// How many packs its manifest names.
    pub packs: i64,
    /// What it changed, as far as the server can tell without the key: the bytes of the packs it
    /// names that no snapshot received before it names (new data stored for it; after a forget,
    /// data an older, removed snapshot had brought counts again).
    pub new_bytes: i64,
    /// How many such packs.
    pub new_packs: i64,
}

/// An object just stored, for [`Db::commit_object`].
#[derive(Debug, Clone, Copy)]
pub struct NewObject<'a> {
    /// Kind directory (`data`, `snapshots`, …).
    pub kind: &'a str,
    /// Name within the kind.
    pub name: &'a str,
    /// Size in bytes.
    pub size: i64,
    /// The packs a snapshot's or index file's manifest names (empty for other kinds).
    pub packs: &'a [(String, String)],
    /// Bytes received for it (metered as ingress).
    pub ingress: i64,
    /// Bytes it represents (a snapshot's total file size; 0 for other kinds).
    pub logical: i64,
}

/// A change to a repository's counters and its day's metering.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Delta {
    pub bytes: i64,
    pub objects: i64,
    pub logical: i64,
    pub ingress: i64,
    pub egress: i64,
    /// Snapshots added (metered per day for billing).
    pub snapshots: i64,
}

/// Bytes set aside for an upload in progress, so concurrent uploads cannot together pass the hard
/// quota. Expires on its own if the server dies mid-upload ([`Db::sweep_reservations`]).
#[derive(Debug)]
#[must_use = "a reservation must be committed or released"]
pub struct Reservation {
    id: i64,
    tenant_id: i64,
    bytes: i64,
}

/// Why an upload was refused before its bytes were accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaRefusal {
    /// Bytes the tenant stores.
    pub stored_bytes: i64,
    /// Bytes of uploads in progress.
    pub reserved_bytes: i64,
    /// The hard quota.
    pub hard_quota_bytes: i64,
    /// The size of the refused upload.
    pub requested_bytes: i64,
}

/// How long a reservation outlives its upload at most (the largest object at a slow line).
pub const RESERVATION_SECS: i64 = 3600;

/// Today's date in UTC, the metering day.
pub fn today() -> String {
    chrono::Utc::now().format("%Y-%m-%d").to_string()
}

/// When [`Db::uncatalogue`] keeps a row after all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unless {
    /// Always removes it.
    Nothing,
    /// Keeps a pack a snapshot revived since it was condemned.
    NotCondemned,
    /// Keeps an index file that lists a pack the catalogue holds.
    IndexListsALivePack,
}

impl Db {
    /// One object's catalogue row.
    pub async fn object(&self, repo_id: i64, kind: &str, name: &str) -> Result<Option<ObjectRow>> {
        let row =
            sqlx::query("SELECT name, size, created_at FROM objects WHERE repo_id = $1 AND kind = $2 AND name = $3")
                .bind(repo_id)
                .bind(kind)
                .bind(name)
                .fetch_optional(self.pool())
                .await?;
        row.as_ref().map(object_from).transpose()
    }

    /// A page of one kind's objects, by name, after `after`. Packs condemned by the garbage
    /// collector are left out, so backups that start now do not build on them.
    pub async fn list_objects(
        &self,
        repo_id: i64,
        kind: &str,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<ObjectRow>> {
        let rows = sqlx::query(
            "SELECT name, size, created_at FROM objects WHERE repo_id = $1 AND kind = $2 AND name > $3 \
             AND condemned_at = 0 ORDER BY name LIMIT $4",
        )
        .bind(repo_id)
        .bind(kind)
        .bind(after.unwrap_or(""))
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(object_from).collect()
    }

    /// The newest snapshots of a repository (at most `limit`), as the server sees them: name,
    /// when it arrived, the bytes it represents and how many packs it needs.
    pub async fn snapshot_rows(&self, repo_id: i64, limit: i64) -> Result<Vec<SnapshotRow>> {
        let rows = sqlx::query(
            "SELECT o.name, o.created_at, o.logical_bytes, o.size, (SELECT COUNT(*) FROM snapshot_packs s \
             WHERE s.repo_id = o.repo_id AND s.snapshot = o.name) AS packs, \
             (SELECT COUNT(*) FROM snapshot_packs s WHERE s.repo_id = o.repo_id AND s.snapshot = o.name \
              AND NOT EXISTS (SELECT 1 FROM snapshot_packs e JOIN objects eo ON eo.repo_id = e.repo_id \
              AND eo.kind = 'snapshots' AND eo.name = e.snapshot WHERE e.repo_id = s.repo_id \
              AND e.pack_kind = s.pack_kind AND e.pack = s.pack AND e.snapshot <> o.name \
              AND (eo.created_at < o.created_at OR (eo.created_at = o.created_at AND eo.name < o.name)))) \
             AS new_packs, \
             (SELECT CAST(COALESCE(SUM(p.size), 0) AS BIGINT) FROM snapshot_packs s JOIN objects p ON p.repo_id = s.repo_id \
              AND p.kind = s.pack_kind AND p.name = s.pack WHERE s.repo_id = o.repo_id AND s.snapshot = o.name \
              AND NOT EXISTS (SELECT 1 FROM snapshot_packs e JOIN objects eo ON eo.repo_id = e.repo_id \
              AND eo.kind = 'snapshots' AND eo.name = e.snapshot WHERE e.repo_id = s.repo_id \
              AND e.pack_kind = s.pack_kind AND e.pack = s.pack AND e.snapshot <> o.name \
              AND (eo.created_at < o.created_at OR (eo.created_at = o.created_at AND eo.name < o.name)))) \
             AS new_bytes FROM objects o \
             WHERE o.repo_id = $1 AND o.kind = 'snapshots' ORDER BY o.created_at DESC, o.name LIMIT $2",
        )
        .bind(repo_id)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(SnapshotRow {
                    name: col(r, "name")?,
                    received_at: col(r, "created_at")?,
                    logical_bytes: col(r, "logical_bytes")?,
                    size: col(r, "size")?,
                    packs: col(r, "packs")?,
                    new_packs: col(r, "new_packs")?,
                    new_bytes: col(r, "new_bytes")?,
                })
            })
            .collect()
    }

    /// Which of `packs` (kind, name) the repository does not hold.
    pub async fn missing_objects(&self, repo_id: i64, packs: &[(String, String)]) -> Result<Vec<(String, String)>> {
        let mut missing = Vec::new();
        let mut conn = self.pool().acquire().await?;
        for (kind, name) in packs {
            let n: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM objects WHERE repo_id = $1 AND kind = $2 AND name = $3")
                    .bind(repo_id)
                    .bind(kind)
                    .bind(name)
                    .fetch_one(&mut *conn)
                    .await?;
            if n == 0 {
                missing.push((kind.clone(), name.clone()));
            }
        }
        Ok(missing)
    }

    /// Sets `bytes` aside for an upload by `tenant_id`, or refuses if the tenant's stored bytes plus
    /// uploads in progress plus this one would pass its hard quota (0: unlimited).
    pub async fn reserve(&self, tenant_id: i64, bytes: i64) -> Result<std::result::Result<Reservation, QuotaRefusal>> {
        let mut tx = self.pool().begin().await?;
        // One statement checks and reserves, holding the tenant row's lock, so two servers cannot
        // both squeeze under the quota.
        let updated = sqlx::query(
            "UPDATE tenants SET reserved_bytes = reserved_bytes + $1 \
             WHERE id = $2 AND (hard_quota_bytes = 0 OR stored_bytes + reserved_bytes + $1 <= hard_quota_bytes)",
        )
        .bind(bytes)
        .bind(tenant_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 0 {
            let row = sqlx::query("SELECT stored_bytes, reserved_bytes, hard_quota_bytes FROM tenants WHERE id = $1")
                .bind(tenant_id)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| DbError::NotFound(format!("no tenant with id {tenant_id}")))?;
            return Ok(Err(QuotaRefusal {
                stored_bytes: col(&row, "stored_bytes")?,
                reserved_bytes: col(&row, "reserved_bytes")?,
                hard_quota_bytes: col(&row, "hard_quota_bytes")?,
                requested_bytes: bytes,
            }));
        }
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO reservations (tenant_id, bytes, expires_at) VALUES ($1, $2, $3) RETURNING id",
        )
        .bind(tenant_id)
        .bind(bytes)
        .bind(now() + RESERVATION_SECS)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Ok(Reservation { id, tenant_id, bytes }))
    }

    /// Gives a reservation back (the upload failed).
    pub async fn release(&self, reservation: Reservation) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        drop_reservation(&mut tx, &reservation).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Releases reservations whose uploads can no longer be running (a server died mid-upload).
    pub async fn sweep_reservations(&self) -> Result<u64> {
        let rows = sqlx::query("SELECT id, tenant_id, bytes FROM reservations WHERE expires_at < $1")
            .bind(now())
            .fetch_all(self.pool())
            .await?;
        let mut n = 0;
        for row in rows {
            let r =
                Reservation { id: col(&row, "id")?, tenant_id: col(&row, "tenant_id")?, bytes: col(&row, "bytes")? };
            self.release(r).await?;
            n += 1;
        }
        Ok(n)
    }

    /// Records a stored object, consuming its reservation, and meters the bytes received.
    /// Returns `false` when the object was already catalogued (a concurrent or repeated upload of
    /// the same bytes): nothing is counted twice.
    pub async fn commit_object(
        &self,
        repo: &Repository,
        reservation: Option<Reservation>,
        object: &NewObject<'_>,
    ) -> Result<bool> {
        let NewObject { kind, name, size, packs, ingress, logical } = *object;
        let mut tx = self.pool().begin().await?;
        if let Some(r) = &reservation {
            drop_reservation(&mut tx, r).await?;
        }
        let inserted = sqlx::query(
            "INSERT INTO objects (repo_id, kind, name, size, created_at, logical_bytes) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (repo_id, kind, name) DO NOTHING",
        )
        .bind(repo.id)
        .bind(kind)
        .bind(name)
        .bind(size)
        .bind(now())
        .bind(logical)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        let mut delta = Delta { ingress, ..Default::default() };
        if inserted {
            let snapshots = i64::from(kind == "snapshots");
            delta = Delta { bytes: size, objects: 1, logical, ingress, egress: 0, snapshots };
        }
        if inserted && kind == "snapshots" {
            for (pack_kind, pack) in packs {
                // A snapshot revives a pack the garbage collector condemned (a backup that began
                // before the condemnation may use it); one already deleted fails the upload.
                let present =
                    sqlx::query("UPDATE objects SET condemned_at = 0 WHERE repo_id = $1 AND kind = $2 AND name = $3")
                        .bind(repo.id)
                        .bind(pack_kind)
                        .bind(pack)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                if present == 0 {
                    return Err(DbError::Conflict(format!(
                        "snapshot {name} names {pack_kind}/{pack}, which is no longer stored: run the backup again"
                    )));
                }
                sqlx::query(
                    "INSERT INTO snapshot_packs (repo_id, snapshot, pack_kind, pack) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT DO NOTHING",
                )
                .bind(repo.id)
                .bind(name)
                .bind(pack_kind)
                .bind(pack)
                .execute(&mut *tx)
                .await?;
            }
        }
        if inserted && kind == "index" {
            for (pack_kind, pack) in packs {
                sqlx::query(
                    "INSERT INTO index_packs (repo_id, idx, pack_kind, pack) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT DO NOTHING",
                )
                .bind(repo.id)
                .bind(name)
                .bind(pack_kind)
                .bind(pack)
                .execute(&mut *tx)
                .await?;
            }
        }
        meter(&mut tx, repo, delta).await?;
        tx.commit().await?;
        Ok(inserted)
    }

    /// Removes an object from the catalogue (after the store deleted it, or to hide it first).
    /// Returns its row if it was there.
    pub async fn remove_object(&self, repo: &Repository, kind: &str, name: &str) -> Result<Option<ObjectRow>> {
        self.uncatalogue(repo, kind, name, Unless::Nothing).await
    }

    /// Removes a catalogue row (unless `unless` holds, checked in the same statement) with its
    /// manifest and its share of the counters, in one transaction. Returns the row if it was
    /// removed.
    pub(crate) async fn uncatalogue(
        &self,
        repo: &Repository,
        kind: &str,
        name: &str,
        unless: Unless,
    ) -> Result<Option<ObjectRow>> {
        let mut tx = self.pool().begin().await?;
        let guard = match unless {
            Unless::Nothing => "",
            Unless::NotCondemned => " AND condemned_at > 0",
            // Checked again here, not only when the collector chose it: a pack it lists may have
            // been uploaded again since (a client resending what it lost), and the index then
            // covers a live pack again.
            Unless::IndexListsALivePack => {
                " AND NOT EXISTS (SELECT 1 FROM index_packs i JOIN objects p ON p.repo_id = i.repo_id \
                 AND p.kind = i.pack_kind AND p.name = i.pack WHERE i.repo_id = objects.repo_id AND i.idx = objects.name)"
            }
        };
        // `guard` is one of the constant clauses above, never input.
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM objects WHERE repo_id = $1 AND kind = $2 AND name = $3{guard} \
             RETURNING name, size, created_at, logical_bytes"
        )))
        .bind(repo.id)
        .bind(kind)
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            tx.commit().await?;
            return Ok(None);
        };
        let object = object_from(&row)?;
        let logical: i64 = col(&row, "logical_bytes")?;
        let manifests = match kind {
            "snapshots" => Some("DELETE FROM snapshot_packs WHERE repo_id = $1 AND snapshot = $2"),
            "index" => Some("DELETE FROM index_packs WHERE repo_id = $1 AND idx = $2"),
            _ => None,
        };
        if let Some(sql) = manifests {
            sqlx::query(sql).bind(repo.id).bind(name).execute(&mut *tx).await?;
        }
        meter(&mut tx, repo, Delta { bytes: -object.size, objects: -1, logical: -logical, ..Default::default() })
            .await?;
        tx.commit().await?;
        Ok(Some(object))
    }

    /// Meters bytes sent to (`egress`) or received from (`ingress`) a client without a catalogue
    /// change (downloads, refused or repeated uploads).
    pub async fn record_traffic(&self, repo: &Repository, ingress: i64, egress: i64) -> Result<()> {
        if ingress == 0 && egress == 0 {
            return Ok(());
        }
        let mut tx = self.pool().begin().await?;
        meter(&mut tx, repo, Delta { ingress, egress, ..Default::default() }).await?;
        tx.commit().await?;
        Ok(())
    }
}

async fn drop_reservation(tx: &mut Transaction<'static, Any>, r: &Reservation) -> Result<()> {
    let gone = sqlx::query("DELETE FROM reservations WHERE id = $1").bind(r.id).execute(&mut **tx).await?;
    // Only the one who deletes the row gives the bytes back (a sweep may have got there first).
    if gone.rows_affected() == 1 {
        sqlx::query("UPDATE tenants SET reserved_bytes = reserved_bytes - $1 WHERE id = $2")
            .bind(r.bytes)
            .bind(r.tenant_id)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Where a repository's logical total saturates: the sum of snapshots' claims (each at most
/// [`crate::limits::MAX_SNAPSHOT_LOGICAL`], so `total + claim` cannot overflow below this).
pub(crate) const LOGICAL_CAP: i64 = 1 << 62;

/// Applies a change to the repository's and tenant's counters and adds it to today's metering
/// row, which records the counters as they stand after the change.
pub(crate) async fn meter(tx: &mut Transaction<'static, Any>, repo: &Repository, d: Delta) -> Result<()> {
    if d.bytes != 0 {
        sqlx::query("UPDATE tenants SET stored_bytes = stored_bytes + $1 WHERE id = $2")
            .bind(d.bytes)
            .bind(repo.tenant_id)
            .execute(&mut **tx)
            .await?;
    }
    // The UPDATE also locks the repository row, so metering rows see counters in commit order.
    let row = sqlx::query(
        "UPDATE repositories SET stored_bytes = stored_bytes + $1, object_count = object_count + $2, \
         logical_bytes = CASE WHEN logical_bytes + $3 > $5 THEN $5 ELSE logical_bytes + $3 END \
         WHERE id = $4 RETURNING stored_bytes, object_count, logical_bytes",
    )
    .bind(d.bytes)
    .bind(d.objects)
    .bind(d.logical)
    .bind(repo.id)
    .bind(LOGICAL_CAP)
    .fetch_one(&mut **tx)
    .await?;
    let stored: i64 = col(&row, "stored_bytes")?;
    let objects: i64 = col(&row, "object_count")?;
    let logical: i64 = col(&row, "logical_bytes")?;
    sqlx::query(
        "INSERT INTO usage_daily (repo_id, day, tenant_id, ingress_bytes, egress_bytes, stored_bytes, \
             stored_peak_bytes, object_count, logical_bytes, snapshots) VALUES ($1, $2, $3, $4, $5, $6, $6, $7, $8, $9) \
         ON CONFLICT (repo_id, day) DO UPDATE SET \
             ingress_bytes = usage_daily.ingress_bytes + excluded.ingress_bytes, \
             egress_bytes = usage_daily.egress_bytes + excluded.egress_bytes, \
             snapshots = usage_daily.snapshots + excluded.snapshots, \
             stored_bytes = excluded.stored_bytes, \
             stored_peak_bytes = CASE WHEN excluded.stored_bytes > usage_daily.stored_peak_bytes \
                 THEN excluded.stored_bytes ELSE usage_daily.stored_peak_bytes END, \
             object_count = excluded.object_count, \
             logical_bytes = excluded.logical_bytes",
    )
    .bind(repo.id)
    .bind(today())
    .bind(repo.tenant_id)
    .bind(d.ingress)
    .bind(d.egress)
    .bind(stored)
    .bind(objects)
    .bind(logical)
    .bind(d.snapshots)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::accounts::TenantChange;

    fn obj<'a>(kind: &'a str, name: &'a str, size: i64) -> NewObject<'a> {
        NewObject { kind, name, size, packs: &[], ingress: size, logical: 0 }
    }
    use crate::db::testing::databases;

    #[tokio::test]
    async fn each_snapshot_shows_the_new_data_stored_for_it() {
        for (db, _guard) in databases().await {
            db.create_tenant("acme", "", None).await.unwrap();
            let repo = db.create_repository("acme", "r", None).await.unwrap();
            for (name, size) in [("p1", 100), ("p2", 20), ("p3", 7)] {
                db.commit_object(&repo, None, &obj("data", name, size)).await.unwrap();
            }
            let pack = |n: &str| ("data".to_string(), n.to_string());
            let snap = |name: &'static str, packs: Vec<(String, String)>, at: i64| {
                let (db, repo) = (db.clone(), repo.clone());
                async move {
                    let o = NewObject { kind: "snapshots", name, size: 1, packs: &packs, ingress: 1, logical: 0 };
                    db.commit_object(&repo, None, &o).await.unwrap();
                    sqlx::query("UPDATE objects SET created_at = $1 WHERE name = $2")
                        .bind(at)
                        .bind(name)
                        .execute(db.pool())
                        .await
                        .unwrap();
                }
            };
            snap("s1", vec![pack("p1"), pack("p2")], 1000).await;
            snap("s2", vec![pack("p1"), pack("p2"), pack("p3")], 2000).await;
            snap("s3", vec![pack("p1"), pack("p3")], 3000).await;
            let rows = db.snapshot_rows(repo.id, 10).await.unwrap();
            let got: Vec<(&str, i64, i64)> = rows.iter().map(|r| (r.name.as_str(), r.new_packs, r.new_bytes)).collect();
            assert_eq!(got, [("s3", 0, 0), ("s2", 1, 7), ("s1", 2, 120)]);
        }
    }

    #[tokio::test]
    async fn quota_reservations_and_counters_stay_exact() {
        for (db, _guard) in databases().await {
            let t = db.create_tenant("acme", "", None).await.unwrap();
            db.update_tenant("acme", &TenantChange { hard_quota_bytes: Some(100), ..Default::default() })
                .await
                .unwrap();
            let repo = db.create_repository("acme", "r", None).await.unwrap();
            let a = db.reserve(t.id, 60).await.unwrap().unwrap();
            // A concurrent 50-byte upload would pass the quota with the 60 in flight.
            let refusal = db.reserve(t.id, 50).await.unwrap().unwrap_err();
            assert_eq!((refusal.stored_bytes, refusal.reserved_bytes, refusal.hard_quota_bytes), (0, 60, 100));
            assert!(db.commit_object(&repo, Some(a), &obj("data", "aa", 60)).await.unwrap());
            // The same object again: counted once.
            let again = db.reserve(t.id, 30).await.unwrap().unwrap();
            assert!(!db.commit_object(&repo, Some(again), &obj("data", "aa", 60)).await.unwrap());
            let b = db.reserve(t.id, 40).await.unwrap().unwrap();
            db.release(b).await.unwrap();
            assert!(db.reserve(t.id, 41).await.unwrap().is_err());
            let tenant = db.tenant("acme").await.unwrap();
            assert_eq!(tenant.stored_bytes, 60);
            let repo = db.repository("r").await.unwrap();
            assert_eq!((repo.stored_bytes, repo.object_count), (60, 1));
            let removed = db.remove_object(&repo, "data", "aa").await.unwrap().unwrap();
            assert_eq!(removed.size, 60);
            assert!(db.remove_object(&repo, "data", "aa").await.unwrap().is_none());
            assert_eq!(db.tenant("acme").await.unwrap().stored_bytes, 0);
            let r: i64 = sqlx::query_scalar("SELECT reserved_bytes FROM tenants").fetch_one(db.pool()).await.unwrap();
            assert_eq!(r, 0, "every reservation was given back");
        }
    }

    #[tokio::test]
    async fn expired_reservations_are_swept() {
        for (db, _guard) in databases().await {
            let t = db.create_tenant("acme", "", None).await.unwrap();
            let r = db.reserve(t.id, 10).await.unwrap().unwrap();
            drop(r); // the server "died" mid-upload: the row stays behind
            sqlx::query("UPDATE reservations SET expires_at = 0").execute(db.pool()).await.unwrap();
            assert_eq!(db.sweep_reservations().await.unwrap(), 1);
            let n: i64 = sqlx::query_scalar("SELECT reserved_bytes FROM tenants").fetch_one(db.pool()).await.unwrap();
            assert_eq!(n, 0);
        }
    }

    #[tokio::test]
    async fn listing_is_paged_by_name() {
        for (db, _guard) in databases().await {
            db.create_tenant("acme", "", None).await.unwrap();
            let repo = db.create_repository("acme", "r", None).await.unwrap();
            for n in ["c", "a", "b", "d"] {
                assert!(db.commit_object(&repo, None, &obj("index", n, 1)).await.unwrap());
            }
            db.commit_object(&repo, None, &obj("data", "x", 1)).await.unwrap();
            let page: Vec<String> =
                db.list_objects(repo.id, "index", Some("a"), 2).await.unwrap().into_iter().map(|o| o.name).collect();
            assert_eq!(page, ["b", "c"]);
            let missing =
                db.missing_objects(repo.id, &[("data".into(), "x".into()), ("data".into(), "y".into())]).await.unwrap();
            assert_eq!(missing, [("data".to_string(), "y".to_string())]);
        }
    }
}
