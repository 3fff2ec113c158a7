//! What the server's restore check reads and records: each repository's newest snapshot, the
//! packs its manifest names (with whether the catalogue holds them and an index file lists them),
//! and the outcome, which the health page shows and a failure of which raises an alert.

use serde::Serialize;

use super::accounts::Repository;
use super::{col, now, Db, Result};

/// One pack a snapshot needs, as the catalogue knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeededPack {
    /// `data` or `meta`.
    pub kind: String,
    /// Its name (content address).
    pub name: String,
    /// Its catalogued size; `None` when the catalogue no longer holds it.
    pub size: Option<i64>,
    /// Whether an index file in the catalogue lists it (clients find blobs through indexes).
    pub indexed: bool,
}

/// A repository's last restore check, for the health page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RestoreCheck {
    /// Tenant name.
    pub tenant: String,
    /// Repository name.
    pub repo: String,
    /// When it ran (0: never).
    pub at: i64,
    /// Whether it passed.
    pub ok: bool,
    /// What it proved, or what it found missing or damaged.
    pub summary: String,
}

impl Db {
    /// The newest snapshots of a repository: every one that arrived in the newest second (arrival
    /// times are whole seconds, so two backups finishing together are both "the newest"). Empty
    /// without snapshots.
    pub async fn newest_snapshots(&self, repo_id: i64) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT name FROM objects WHERE repo_id = $1 AND kind = 'snapshots' AND created_at = \
             (SELECT MAX(created_at) FROM objects WHERE repo_id = $1 AND kind = 'snapshots') ORDER BY name",
        )
        .bind(repo_id)
        .fetch_all(self.pool())
        .await?)
    }

    /// The packs snapshot `snapshot`'s manifest names, each with its catalogued size and whether
    /// an index file lists it.
    pub async fn needed_packs(&self, repo_id: i64, snapshot: &str) -> Result<Vec<NeededPack>> {
        let rows = sqlx::query(
            "SELECT s.pack_kind AS kind, s.pack AS name, p.size AS size, \
             CASE WHEN EXISTS (SELECT 1 FROM index_packs i WHERE i.repo_id = s.repo_id AND i.pack_kind = s.pack_kind \
             AND i.pack = s.pack) THEN 1 ELSE 0 END AS indexed \
             FROM snapshot_packs s LEFT JOIN objects p ON p.repo_id = s.repo_id AND p.kind = s.pack_kind \
             AND p.name = s.pack WHERE s.repo_id = $1 AND s.snapshot = $2 ORDER BY s.pack_kind, s.pack",
        )
        .bind(repo_id)
        .bind(snapshot)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let indexed: i64 = col(r, "indexed")?;
                Ok(NeededPack {
                    kind: col(r, "kind")?,
                    name: col(r, "name")?,
                    size: col(r, "size")?,
                    indexed: indexed != 0,
                })
            })
            .collect()
    }

    /// Records a restore check of `repo`; a failed one raises an alert to the provider.
    pub async fn record_restore_check(&self, repo: &Repository, ok: bool, summary: &str) -> Result<()> {
        let summary: String = summary.chars().take(2000).collect();
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "UPDATE repositories SET restore_check_at = $1, restore_check_ok = $2, restore_check = $3 WHERE id = $4",
        )
        .bind(now())
        .bind(i64::from(ok))
        .bind(&summary)
        .bind(repo.id)
        .execute(&mut *tx)
        .await?;
        if !ok {
            let subject = format!("Restore check failed: repository {} of {}", repo.name, repo.tenant);
            let body = format!(
                "The server's check of the newest snapshot of repository {} (tenant {}) failed:\n\n{summary}\n\n\
                 Run a scrub and restore the damaged objects from another copy; `arca check` on a client names the \
                 affected files.\n",
                repo.name, repo.tenant
            );
            super::health::insert_alert(&mut tx, Some(repo.tenant_id), None, "restore-check-failed", &subject, &body)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Every repository's last restore check (of one tenant, or all).
    pub async fn restore_checks(&self, tenant_id: Option<i64>) -> Result<Vec<RestoreCheck>> {
        let rows = sqlx::query(
            "SELECT t.name AS tenant, r.name AS repo, r.restore_check_at AS at, r.restore_check_ok AS ok, \
             r.restore_check AS summary FROM repositories r JOIN tenants t ON t.id = r.tenant_id \
             WHERE ($1 = 0 OR r.tenant_id = $1) ORDER BY t.name, r.name",
        )
        .bind(tenant_id.unwrap_or(0))
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let ok: i64 = col(r, "ok")?;
                Ok(RestoreCheck {
                    tenant: col(r, "tenant")?,
                    repo: col(r, "repo")?,
                    at: col(r, "at")?,
                    ok: ok != 0,
                    summary: col(r, "summary")?,
                })
            })
            .collect()
    }
}
