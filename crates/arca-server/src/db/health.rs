//! Backup health: each device's schedule, its last backup (the server sees every snapshot a
//! device uploads) and its last reported failure; and the alerts raised from them, kept in the
//! database until delivered so that no server process loses one and two processes never raise
//! the same one twice.
//!
//! Raising is claim-based: an UPDATE that flips a flag from "not alerted" is done by exactly one
//! process, which then writes the alert in the same transaction. Delivery claims an attempt by
//! bumping the attempt counter it read, and retries with growing pauses.

use serde::Serialize;

use super::accounts::Repository;
use super::{col, now, Db, DbError, Result};

/// How late a backup may be, past its schedule, before it counts as overdue.
pub const GRACE_SECS: i64 = 3600;
/// Delivery attempts before an alert is given up (logged, kept in the list).
pub const MAX_ATTEMPTS: i64 = 12;

/// A device as the health page shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceHealth {
    /// Tenant name.
    pub tenant: String,
    /// Device name.
    pub device: String,
    /// Repository name.
    pub repo: String,
    /// Expected interval between backups, in hours (0: no schedule, never overdue).
    pub backup_every_hours: i64,
    /// When the device was added.
    pub created_at: i64,
    /// When it last uploaded a snapshot (0: never).
    pub last_backup_at: i64,
    /// When it last reported a failed backup (0: never).
    pub last_failure_at: i64,
    /// What the failure said.
    pub last_failure: String,
    /// `ok`, `overdue`, `failing`, `waiting` (no backup yet, not overdue) or `revoked`.
    pub status: String,
    /// When `arca drill` last proved a restore from this device's repository (0: never).
    pub last_drill_at: i64,
    /// What that drill proved (or, after a failed drill, what failed).
    pub last_drill: String,
    /// When the device (an appliance) last reported its replication state (0: never).
    pub last_replication_at: i64,
    /// That state, one line.
    pub last_replication: String,
}

/// The status word of a device at `now`.
pub fn status_of(
    every_hours: i64,
    created_at: i64,
    last_backup: i64,
    last_failure: i64,
    revoked: bool,
    now: i64,
) -> &'static str {
    if revoked {
        "revoked"
    } else if last_failure > 0 && last_failure >= last_backup {
        "failing"
    } else if every_hours > 0 && now - last_backup.max(created_at) > every_hours * 3600 + GRACE_SECS {
        "overdue"
    } else if last_backup == 0 {
        "waiting"
    } else {
        "ok"
    }
}

/// An alert waiting for delivery or delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Alert {
    /// Id.
    pub id: i64,
    /// `backup-failed`, `backup-overdue` or `soft-quota`.
    pub kind: String,
    /// Tenant name, if any.
    pub tenant: Option<String>,
    /// One line.
    pub subject: String,
    /// The body.
    pub message: String,
    /// When it was raised.
    pub created_at: i64,
    /// When it was delivered (0: not yet).
    pub delivered_at: i64,
    /// Delivery attempts so far.
    pub attempts: i64,
    /// The last delivery error.
    pub last_error: String,
    /// The tenant's own alert addresses (comma-separated; filled for delivery only).
    #[serde(skip)]
    pub contacts: String,
}

impl Alert {
    /// Whether another delivery attempt is due at `now`: at once, then after 30 s, 90 s, 210 s…
    /// (doubling), until [`MAX_ATTEMPTS`].
    pub fn due(&self, now: i64) -> bool {
        self.delivered_at == 0
            && self.attempts < MAX_ATTEMPTS
            && now >= self.created_at + 30 * ((1i64 << self.attempts.min(20)) - 1)
    }
}

fn when(ts: i64) -> String {
    chrono::DateTime::from_timestamp(ts, 0).map_or(ts.to_string(), |d| d.format("%Y-%m-%d %H:%M UTC").to_string())
}

impl Db {
    /// Records that `device` uploaded a snapshot now: clears its overdue alert, and a failure
    /// reported before (the events' order decides, not their timestamps, which share a second).
    pub async fn device_backed_up(&self, device_id: i64) -> Result<()> {
        sqlx::query(
            "UPDATE devices SET last_backup_at = $1, overdue_alerted_at = 0, last_failure_at = 0 WHERE id = $2",
        )
        .bind(now())
        .bind(device_id)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Records a device's report of a failed backup and raises an alert for it.
    pub async fn device_failed(&self, device_id: i64, message: &str) -> Result<()> {
        let message: String = message.chars().take(2000).collect();
        let mut tx = self.pool().begin().await?;
        let row = sqlx::query(
            "UPDATE devices SET last_failure_at = $1, last_failure = $2 WHERE id = $3 \
             RETURNING tenant_id, name, (SELECT name FROM tenants WHERE tenants.id = devices.tenant_id) AS tenant",
        )
        .bind(now())
        .bind(&message)
        .bind(device_id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| DbError::NotFound("no such device".into()))?;
        let (tenant_id, device, tenant): (i64, String, String) =
            (col(&row, "tenant_id")?, col(&row, "name")?, col(&row, "tenant")?);
        let subject = format!("Backup failed: {device} of {tenant}");
        let body = format!("The backup of device {device} (tenant {tenant}) failed at {}:\n\n{message}\n", when(now()));
        insert_alert(&mut tx, Some(tenant_id), Some(device_id), "backup-failed", &subject, &body).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records a restore drill the device ran: a passed one becomes its last proven restore; a
    /// failed one leaves that as it was and raises an alert.
    pub async fn device_drilled(&self, device_id: i64, passed: bool, summary: &str) -> Result<()> {
        let summary: String = summary.chars().take(2000).collect();
        let mut tx = self.pool().begin().await?;
        let row = sqlx::query(
            "UPDATE devices SET last_drill_at = CASE WHEN $1 = 1 THEN $2 ELSE last_drill_at END, \
             last_drill = CASE WHEN $1 = 1 THEN $3 ELSE last_drill END WHERE id = $4 \
             RETURNING tenant_id, name, (SELECT name FROM tenants WHERE tenants.id = devices.tenant_id) AS tenant",
        )
        .bind(i64::from(passed))
        .bind(now())
        .bind(&summary)
        .bind(device_id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| DbError::NotFound("no such device".into()))?;
        if !passed {
            let (tenant_id, device, tenant): (i64, String, String) =
                (col(&row, "tenant_id")?, col(&row, "name")?, col(&row, "tenant")?);
            let subject = format!("Restore drill failed: {device} of {tenant}");
            let body = format!(
                "A restore drill of device {device} (tenant {tenant}) failed at {}:\n\n{summary}\n",
                when(now())
            );
            insert_alert(&mut tx, Some(tenant_id), Some(device_id), "drill-failed", &subject, &body).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records a device's (an appliance's) replication state.
    pub async fn device_replication(&self, device_id: i64, state: &str) -> Result<()> {
        let state: String = state.chars().take(500).collect();
        sqlx::query("UPDATE devices SET last_replication_at = $1, last_replication = $2 WHERE id = $3")
            .bind(now())
            .bind(state)
            .bind(device_id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Sets how often a device is expected to back up (0: no schedule).
    pub async fn set_device_schedule(&self, tenant: &str, device: &str, every_hours: i64) -> Result<()> {
        if !(0..=24 * 366).contains(&every_hours) {
            return Err(DbError::Invalid("the schedule must be 0 to 8784 hours (0: none)".into()));
        }
        let done = sqlx::query(
            "UPDATE devices SET backup_every_hours = $1, overdue_alerted_at = 0 WHERE name = $2 AND revoked_at = 0 \
             AND tenant_id = (SELECT id FROM tenants WHERE name = $3)",
        )
        .bind(every_hours)
        .bind(device)
        .bind(tenant)
        .execute(self.pool())
        .await?
        .rows_affected();
        if done == 0 {
            return Err(DbError::NotFound(format!("tenant {tenant} has no active device named {device}")));
        }
        Ok(())
    }

    /// Every device (of one tenant, or all), most troubled first, then by tenant and name.
    pub async fn device_health(&self, tenant_id: Option<i64>) -> Result<Vec<DeviceHealth>> {
        let rows = sqlx::query(
            "SELECT t.name AS tenant, d.name AS device, r.name AS repo, d.backup_every_hours, d.created_at, \
             d.last_backup_at, d.last_failure_at, d.last_failure, d.revoked_at, d.last_drill_at, d.last_drill, \
             d.last_replication_at, d.last_replication FROM devices d \
             JOIN tenants t ON t.id = d.tenant_id JOIN repositories r ON r.id = d.repo_id \
             WHERE $1 = 0 OR d.tenant_id = $1 ORDER BY t.name, d.name, d.id",
        )
        .bind(tenant_id.unwrap_or(0))
        .fetch_all(self.pool())
        .await?;
        let at = now();
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let (every, created, last, failed): (i64, i64, i64, i64) = (
                col(&r, "backup_every_hours")?,
                col(&r, "created_at")?,
                col(&r, "last_backup_at")?,
                col(&r, "last_failure_at")?,
            );
            let revoked = col::<i64>(&r, "revoked_at")? != 0;
            out.push(DeviceHealth {
                tenant: col(&r, "tenant")?,
                device: col(&r, "device")?,
                repo: col(&r, "repo")?,
                backup_every_hours: every,
                created_at: created,
                last_backup_at: last,
                last_failure_at: failed,
                last_failure: col(&r, "last_failure")?,
                status: status_of(every, created, last, failed, revoked, at).to_string(),
                last_drill_at: col(&r, "last_drill_at")?,
                last_drill: col(&r, "last_drill")?,
                last_replication_at: col(&r, "last_replication_at")?,
                last_replication: col(&r, "last_replication")?,
            });
        }
        let rank = |s: &str| match s {
            "failing" => 0,
            "overdue" => 1,
            "waiting" => 2,
            "ok" => 3,
            _ => 4,
        };
        out.sort_by_key(|d| rank(&d.status));
        Ok(out)
    }

    /// Raises a `backup-overdue` alert for every active, scheduled device that is late at `now`
    /// and not yet alerted; resets the soft-quota flag of tenants back under their soft quota.
    /// Returns the number of alerts raised.
    pub async fn raise_overdue_alerts(&self, at: i64) -> Result<usize> {
        let late = sqlx::query(
            "SELECT d.id, d.name, d.tenant_id, d.backup_every_hours, d.last_backup_at, d.created_at, t.name AS tenant \
             FROM devices d JOIN tenants t ON t.id = d.tenant_id WHERE d.revoked_at = 0 AND d.backup_every_hours > 0 \
             AND d.overdue_alerted_at = 0 AND \
             (CASE WHEN d.last_backup_at > d.created_at THEN d.last_backup_at ELSE d.created_at END) \
             + d.backup_every_hours * 3600 + $1 < $2",
        )
        .bind(GRACE_SECS)
        .bind(at)
        .fetch_all(self.pool())
        .await?;
        let mut raised = 0;
        for r in late {
            let (id, tenant_id, every, last): (i64, i64, i64, i64) =
                (col(&r, "id")?, col(&r, "tenant_id")?, col(&r, "backup_every_hours")?, col(&r, "last_backup_at")?);
            let (device, tenant): (String, String) = (col(&r, "name")?, col(&r, "tenant")?);
            let mut tx = self.pool().begin().await?;
            let claimed =
                sqlx::query("UPDATE devices SET overdue_alerted_at = $1 WHERE id = $2 AND overdue_alerted_at = 0")
                    .bind(at)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                    == 1;
            if !claimed {
                continue; // another server raised it
            }
            let subject = format!("Backup overdue: {device} of {tenant}");
            let last = if last == 0 {
                "it has never backed up".to_string()
            } else {
                format!("its last backup was at {}", when(last))
            };
            let body = format!(
                "Device {device} (tenant {tenant}) should back up every {every} hours; {last}. Check that the machine \
                 is on and that its backup job runs.\n"
            );
            insert_alert(&mut tx, Some(tenant_id), Some(id), "backup-overdue", &subject, &body).await?;
            tx.commit().await?;
            raised += 1;
        }
        sqlx::query(
            "UPDATE tenants SET soft_quota_alerted_at = 0 WHERE soft_quota_alerted_at <> 0 AND \
             (soft_quota_bytes = 0 OR stored_bytes <= soft_quota_bytes)",
        )
        .execute(self.pool())
        .await?;
        Ok(raised)
    }

    /// Raises a `soft-quota` alert for a tenant past its soft quota, once until it drops back
    /// under. Returns whether this call raised it.
    pub async fn raise_soft_quota_alert(&self, tenant_id: i64) -> Result<bool> {
        let mut tx = self.pool().begin().await?;
        let row = sqlx::query(
            "UPDATE tenants SET soft_quota_alerted_at = $1 WHERE id = $2 AND soft_quota_alerted_at = 0 AND \
             soft_quota_bytes > 0 AND stored_bytes > soft_quota_bytes RETURNING name, stored_bytes, soft_quota_bytes, \
             hard_quota_bytes",
        )
        .bind(now())
        .bind(tenant_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(r) = row else { return Ok(false) };
        let (name, stored, soft, hard): (String, i64, i64, i64) =
            (col(&r, "name")?, col(&r, "stored_bytes")?, col(&r, "soft_quota_bytes")?, col(&r, "hard_quota_bytes")?);
        let h = crate::units::human_bytes_exact;
        let subject = format!("Soft quota passed: {name}");
        let body = format!(
            "Tenant {name} stores {}, past its soft quota of {}.{}\n",
            h(stored),
            h(soft),
            if hard > 0 { format!(" Uploads stop at the hard quota of {}.", h(hard)) } else { String::new() }
        );
        insert_alert(&mut tx, Some(tenant_id), None, "soft-quota", &subject, &body).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Raises a `scrub-damage` alert: a scrub found `damaged` objects of `repo` damaged. The
    /// provider and the tenant's own alert addresses hear of it.
    pub async fn raise_scrub_alert(&self, run_id: i64, repo: &Repository, damaged: i64) -> Result<()> {
        let subject = format!("Scrub found damage: {} damaged objects in {}", damaged, repo.name);
        let body = format!(
            "Scrub run {run_id} found {damaged} stored objects of repository {} (tenant {}) missing or not matching \
             their content address. Restore them from another copy of the storage if there is one; otherwise the \
             customer's `arca check` names the snapshots affected, and the next backup uploads the data again.\n",
            repo.name, repo.tenant
        );
        let mut tx = self.pool().begin().await?;
        insert_alert(&mut tx, Some(repo.tenant_id), None, "scrub-damage", &subject, &body).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The newest alerts (of one tenant, or all).
    pub async fn alerts(&self, tenant_id: Option<i64>, limit: i64) -> Result<Vec<Alert>> {
        let rows = sqlx::query(
            "SELECT a.id, a.kind, t.name AS tenant, a.subject, a.message, a.created_at, a.delivered_at, a.attempts, \
             a.last_error FROM alerts a LEFT JOIN tenants t ON t.id = a.tenant_id WHERE $1 = 0 OR a.tenant_id = $1 \
             ORDER BY a.id DESC LIMIT $2",
        )
        .bind(tenant_id.unwrap_or(0))
        .bind(limit.clamp(1, 1000))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(alert_of).collect()
    }

    /// Undelivered alerts whose next attempt is due at `at`, oldest first.
    pub async fn due_alerts(&self, at: i64) -> Result<Vec<Alert>> {
        let rows = sqlx::query(
            "SELECT a.id, a.kind, t.name AS tenant, a.subject, a.message, a.created_at, a.delivered_at, a.attempts, \
             a.last_error, t.alert_email AS contacts FROM alerts a LEFT JOIN tenants t ON t.id = a.tenant_id \
             WHERE a.delivered_at = 0 \
             AND a.attempts < $1 ORDER BY a.id LIMIT 100",
        )
        .bind(MAX_ATTEMPTS)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.iter().map(alert_of).collect::<Result<Vec<_>>>()?.into_iter().filter(|a| a.due(at)).collect())
    }

    /// Claims the next delivery attempt of `alert` (as read); `false` if another server did.
    pub async fn claim_alert(&self, alert: &Alert) -> Result<bool> {
        let n = sqlx::query(
            "UPDATE alerts SET attempts = attempts + 1 WHERE id = $1 AND attempts = $2 AND delivered_at = 0",
        )
        .bind(alert.id)
        .bind(alert.attempts)
        .execute(self.pool())
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Records the outcome of a claimed delivery attempt.
    pub async fn alert_attempted(&self, id: i64, error: Option<&str>) -> Result<()> {
        match error {
            None => {
                sqlx::query("UPDATE alerts SET delivered_at = $1, last_error = '' WHERE id = $2").bind(now()).bind(id)
            }
            Some(e) => sqlx::query("UPDATE alerts SET last_error = $1 WHERE id = $2").bind(e.to_string()).bind(id),
        }
        .execute(self.pool())
        .await?;
        Ok(())
    }
}

pub(super) async fn insert_alert(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    tenant_id: Option<i64>,
    device_id: Option<i64>,
    kind: &str,
    subject: &str,
    message: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO alerts (tenant_id, device_id, kind, subject, message, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(tenant_id)
    .bind(device_id)
    .bind(kind)
    .bind(subject)
    .bind(message)
    .bind(now())
    .execute(&mut **tx)
    .await?;
    tracing::warn!("alert: {subject}");
    Ok(())
}

fn alert_of(r: &sqlx::any::AnyRow) -> Result<Alert> {
    Ok(Alert {
        id: col(r, "id")?,
        kind: col(r, "kind")?,
        tenant: col(r, "tenant")?,
        subject: col(r, "subject")?,
        message: col(r, "message")?,
        created_at: col(r, "created_at")?,
        delivered_at: col(r, "delivered_at")?,
        attempts: col(r, "attempts")?,
        last_error: col(r, "last_error")?,
        contacts: col::<Option<String>>(r, "contacts").ok().flatten().unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::accounts::TenantChange;
    use crate::db::testing::databases;

    #[test]
    fn statuses_follow_schedule_backups_and_failures() {
        let h = 3600;
        assert_eq!(status_of(24, 0, 0, 0, true, 100 * h), "revoked");
        assert_eq!(status_of(24, 0, 10 * h, 11 * h, false, 12 * h), "failing", "a failure after the last backup");
        assert_eq!(status_of(24, 0, 12 * h, 11 * h, false, 13 * h), "ok", "a backup after the failure");
        assert_eq!(status_of(24, 0, 10 * h, 0, false, 10 * h + 25 * h), "ok", "within the grace hour");
        assert_eq!(status_of(24, 0, 10 * h, 0, false, 10 * h + 25 * h + 1), "overdue");
        assert_eq!(status_of(24, 5 * h, 0, 0, false, 6 * h), "waiting", "new device, no backup yet");
        assert_eq!(status_of(0, 0, 1, 0, false, 1000 * h), "ok", "no schedule: never overdue");
    }

    #[test]
    fn delivery_backs_off() {
        let mut a = Alert {
            id: 1,
            kind: "x".into(),
            tenant: None,
            subject: String::new(),
            message: String::new(),
            created_at: 1000,
            delivered_at: 0,
            attempts: 0,
            last_error: String::new(),
            contacts: String::new(),
        };
        assert!(a.due(1000));
        a.attempts = 1;
        assert!(!a.due(1029) && a.due(1030));
        a.attempts = 3;
        assert!(!a.due(1209) && a.due(1210));
        a.attempts = MAX_ATTEMPTS;
        assert!(!a.due(i64::MAX / 2), "given up");
    }

    #[tokio::test]
    async fn alerts_are_raised_once_and_delivered_once() {
        for (db, _guard) in databases().await {
            let t = db.create_tenant("acme", "", None).await.unwrap();
            db.create_repository("acme", "r", None).await.unwrap();
            let dev = db.create_device("acme", "laptop", "r").await.unwrap();
            let id = dev.0.id;
            // Overdue: a day-and-two-hours after the last backup, once.
            db.device_backed_up(id).await.unwrap();
            let base = now();
            assert_eq!(db.raise_overdue_alerts(base + 24 * 3600).await.unwrap(), 0, "within the grace hour");
            assert_eq!(db.raise_overdue_alerts(base + 26 * 3600).await.unwrap(), 1);
            assert_eq!(db.raise_overdue_alerts(base + 27 * 3600).await.unwrap(), 0, "already alerted");
            db.device_backed_up(id).await.unwrap();
            assert_eq!(db.raise_overdue_alerts(base + 24 * 3600).await.unwrap(), 0, "a new backup: on time again");
            // A reported failure.
            db.device_failed(id, "disk <full>").await.unwrap();
            let health = db.device_health(Some(t.id)).await.unwrap();
            assert_eq!((health[0].status.as_str(), health[0].last_failure.as_str()), ("failing", "disk <full>"));
            db.device_backed_up(id).await.unwrap();
            assert_eq!(db.device_health(Some(t.id)).await.unwrap()[0].status, "ok", "a backup in the same second");
            // Drills: a passed one is the last proven restore; a failed one keeps it and alerts.
            db.device_drilled(id, true, "12 files proved").await.unwrap();
            db.device_drilled(id, false, "pack abc damaged").await.unwrap();
            db.device_replication(id, "up to date").await.unwrap();
            let h = &db.device_health(Some(t.id)).await.unwrap()[0];
            assert!(h.last_drill_at > 0 && h.last_drill == "12 files proved", "{h:?}");
            assert_eq!((h.last_replication.as_str(), h.last_replication_at > 0), ("up to date", true));
            // Soft quota: raised once while over, again only after dropping under.
            db.update_tenant("acme", &TenantChange { soft_quota_bytes: Some(10), ..Default::default() }).await.unwrap();
            sqlx::query("UPDATE tenants SET stored_bytes = 50").execute(db.pool()).await.unwrap();
            assert!(db.raise_soft_quota_alert(t.id).await.unwrap());
            assert!(!db.raise_soft_quota_alert(t.id).await.unwrap());
            sqlx::query("UPDATE tenants SET stored_bytes = 5").execute(db.pool()).await.unwrap();
            db.raise_overdue_alerts(now()).await.unwrap();
            sqlx::query("UPDATE tenants SET stored_bytes = 50").execute(db.pool()).await.unwrap();
            assert!(db.raise_soft_quota_alert(t.id).await.unwrap());
            let all = db.alerts(None, 10).await.unwrap();
            let kinds: Vec<&str> = all.iter().map(|a| a.kind.as_str()).collect();
            assert_eq!(kinds, ["soft-quota", "soft-quota", "drill-failed", "backup-failed", "backup-overdue"]);
            // Delivery: one claim per attempt; a failure keeps it due later; success ends it.
            let due = db.due_alerts(now()).await.unwrap();
            assert_eq!(due.len(), 5);
            assert!(db.claim_alert(&due[0]).await.unwrap());
            assert!(!db.claim_alert(&due[0]).await.unwrap(), "the same attempt cannot be claimed twice");
            db.alert_attempted(due[0].id, Some("connection refused")).await.unwrap();
            assert!(!db.due_alerts(now()).await.unwrap().iter().any(|a| a.id == due[0].id), "backing off");
            assert!(db.due_alerts(now() + 31).await.unwrap().iter().any(|a| a.id == due[0].id));
            db.alert_attempted(due[1].id, None).await.unwrap();
            assert!(!db.due_alerts(now() + 10_000).await.unwrap().iter().any(|a| a.id == due[1].id), "delivered");
            assert!(db.alerts(Some(t.id + 1), 10).await.unwrap().is_empty(), "per tenant");
        }
    }
}
