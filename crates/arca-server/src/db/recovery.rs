//! The provider's recovery key pair: customers who buy the recovery service add a key slot sealed
//! to its public half (docs/console.md, "Recovery service"); the private half is stored here only
//! sealed under a passphrase that provider staff type when they restore for a customer, so a copy
//! of the database alone opens nothing. And the audit trail of its use, which the customer sees.

use super::audit::AuditEntry;
use super::{col, now, Db, DbError, Result};

/// The stored key pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryKey {
    /// The X25519 public key, hex.
    pub public_key: String,
    /// The private key sealed under the recovery passphrase (a key slot's JSON).
    pub sealed_private: String,
    /// When it was made.
    pub created_at: i64,
    /// By whom.
    pub created_by: String,
}

impl Db {
    /// Stores the provider's recovery key pair; refused when one exists (grants are sealed to it:
    /// replacing it would silently cancel them).
    pub async fn create_recovery_key(&self, public_key: &str, sealed_private: &str, actor: &str) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        let existing: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM recovery_keys").fetch_one(&mut *tx).await?;
        if existing > 0 {
            return Err(DbError::Conflict(
                "the provider already has a recovery key; customers' grants are sealed to it".into(),
            ));
        }
        sqlx::query(
            "INSERT INTO recovery_keys (public_key, sealed_private, created_at, created_by) VALUES ($1, $2, $3, $4)",
        )
        .bind(public_key)
        .bind(sealed_private)
        .bind(now())
        .bind(actor)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The provider's recovery key pair, if one was made.
    pub async fn recovery_key(&self) -> Result<Option<RecoveryKey>> {
        let row = sqlx::query(
            "SELECT public_key, sealed_private, created_at, created_by FROM recovery_keys ORDER BY id DESC LIMIT 1",
        )
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| {
            Ok(RecoveryKey {
                public_key: col(&r, "public_key")?,
                sealed_private: col(&r, "sealed_private")?,
                created_at: col(&r, "created_at")?,
                created_by: col(&r, "created_by")?,
            })
        })
        .transpose()
    }

    /// The audit entries of the recovery service on repository `repo` of a tenant: grants,
    /// revocations, and every unlock and download provider staff made with the recovery key,
    /// newest first. The customer's portal shows them.
    pub async fn recovery_trail(&self, tenant_id: i64, repo: &str, limit: i64) -> Result<Vec<AuditEntry>> {
        // Targets are the repository or `REPO:SNAPSHOT`; repository names hold no LIKE wildcards.
        let rows = sqlx::query(
            "SELECT a.id, a.at, a.actor, t.name AS tenant, a.action, a.target, a.outcome, a.detail, a.request_id \
             FROM audit_log a LEFT JOIN tenants t ON t.id = a.tenant_id WHERE a.tenant_id = $1 \
             AND (a.target = $2 OR a.target LIKE $3) AND (a.action LIKE 'recovery.%' OR a.detail LIKE $4) \
             ORDER BY a.id DESC LIMIT $5",
        )
        .bind(tenant_id)
        .bind(repo)
        .bind(format!("{repo}:%"))
        .bind(format!("{}%", super::super::recovery::TRAIL_MARK))
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(super::audit::entry_from).collect()
    }
}
