//! The audit log: who did what to whom, when, and whether it was allowed.
//!
//! Administrative actions, sign-ins, refused deletes, quota refusals and cross-tenant attempts
//! are recorded. Entries are only ever appended.

use serde::Serialize;

use super::{col, now, Db, Result};

/// One audit entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    /// Increasing id.
    pub id: i64,
    /// Unix seconds.
    pub at: i64,
    /// Who: `user:NAME`, `device:NAME@TENANT`, `anonymous` or `server`.
    pub actor: String,
    /// The tenant concerned, if any.
    pub tenant: Option<String>,
    /// What, e.g. `tenant.create`, `object.delete`, `login`.
    pub action: String,
    /// On what, e.g. a tenant or `repo/kind/name`.
    pub target: String,
    /// `ok`, `denied` or `failed`.
    pub outcome: String,
    /// Anything else worth knowing.
    pub detail: String,
    /// The request's id (also in the server log).
    pub request_id: String,
}

/// A new entry (id, time and tenant name are filled in).
#[derive(Debug, Clone, Default)]
pub struct NewAudit<'a> {
    /// Who.
    pub actor: &'a str,
    /// The tenant concerned.
    pub tenant_id: Option<i64>,
    /// What.
    pub action: &'a str,
    /// On what.
    pub target: &'a str,
    /// `ok`, `denied` or `failed`.
    pub outcome: &'a str,
    /// Details.
    pub detail: &'a str,
    /// The request id.
    pub request_id: &'a str,
}

impl Db {
    /// Appends an entry.
    pub async fn audit(&self, e: NewAudit<'_>) -> Result<()> {
        sqlx::query(
            "INSERT INTO audit_log (at, actor, tenant_id, action, target, outcome, detail, request_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(now())
        .bind(e.actor)
        .bind(e.tenant_id)
        .bind(e.action)
        .bind(e.target)
        .bind(e.outcome)
        .bind(e.detail)
        .bind(e.request_id)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Appends an entry for an action that already happened: a failure to write it is logged, not
    /// returned, since the action's answer must not change because its record could not be kept.
    /// Every front end records through this.
    pub async fn record(&self, e: NewAudit<'_>) {
        let (action, target) = (e.action, e.target);
        if let Err(err) = self.audit(e).await {
            tracing::error!("could not write the audit entry for {action} {target}: {err}");
        }
    }

    /// The newest entries first, of one tenant or of all (`None`), older than `before` (an id)
    /// when given.
    pub async fn audit_log(&self, tenant_id: Option<i64>, before: Option<i64>, limit: i64) -> Result<Vec<AuditEntry>> {
        let rows = sqlx::query(
            "SELECT a.id, a.at, a.actor, t.name AS tenant, a.action, a.target, a.outcome, a.detail, a.request_id \
             FROM audit_log a LEFT JOIN tenants t ON t.id = a.tenant_id \
             WHERE ($1 = 0 OR a.tenant_id = $1) AND a.id < $2 ORDER BY a.id DESC LIMIT $3",
        )
        .bind(tenant_id.unwrap_or(0))
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(entry_from).collect()
    }
}

/// An entry from a row with the columns of `audit_log a` and `t.name AS tenant`.
pub(super) fn entry_from(r: &sqlx::any::AnyRow) -> Result<AuditEntry> {
    Ok(AuditEntry {
        id: col(r, "id")?,
        at: col(r, "at")?,
        actor: col(r, "actor")?,
        tenant: col(r, "tenant")?,
        action: col(r, "action")?,
        target: col(r, "target")?,
        outcome: col(r, "outcome")?,
        detail: col(r, "detail")?,
        request_id: col(r, "request_id")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::testing::databases;

    #[tokio::test]
    async fn entries_are_kept_per_tenant_newest_first() {
        for (db, _guard) in databases().await {
            let a = db.create_tenant("a", "", None).await.unwrap();
            let b = db.create_tenant("b", "", None).await.unwrap();
            for (t, action) in [(a.id, "one"), (b.id, "two"), (a.id, "three")] {
                let e = NewAudit { actor: "user:x", tenant_id: Some(t), action, outcome: "ok", ..Default::default() };
                db.audit(e).await.unwrap();
            }
            let of_a: Vec<String> =
                db.audit_log(Some(a.id), None, 10).await.unwrap().into_iter().map(|e| e.action).collect();
            assert_eq!(of_a, ["three", "one"]);
            let all = db.audit_log(None, None, 10).await.unwrap();
            assert_eq!(all.len(), 3);
            assert_eq!(all[1].tenant.as_deref(), Some("b"));
            assert_eq!(db.audit_log(None, Some(all[1].id), 10).await.unwrap().len(), 1);
        }
    }
}
