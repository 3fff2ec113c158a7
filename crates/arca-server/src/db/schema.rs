//! The schema and its migrations, in the SQL both SQLite and PostgreSQL accept.
//!
//! Each migration is a list of statements applied in one transaction, after which
//! `schema_version` records its number. `{ID}` becomes each dialect's auto-increment key. Under
//! PostgreSQL a transaction-scoped advisory lock serialises servers that start at the same time;
//! under SQLite the first write of the transaction takes the database's write lock.

use super::{dyn_query, Db, Dialect, Result};

/// The newest schema version this build knows.
pub const LATEST: i64 = MIGRATIONS.len() as i64;

const MIGRATIONS: &[&str] = &[
    // 1: accounts, the object catalogue, metering and audit.
    r#"
CREATE TABLE plans (
    id {ID},
    name TEXT NOT NULL UNIQUE,
    hard_quota_bytes BIGINT NOT NULL,
    soft_quota_bytes BIGINT NOT NULL,
    lock_days BIGINT NOT NULL,
    compliance BIGINT NOT NULL,
    yearly_price_cents BIGINT NOT NULL,
    overage_cents_per_gb BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE tenants (
    id {ID},
    name TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    plan_id BIGINT REFERENCES plans(id),
    hard_quota_bytes BIGINT NOT NULL,
    soft_quota_bytes BIGINT NOT NULL,
    stored_bytes BIGINT NOT NULL DEFAULT 0,
    reserved_bytes BIGINT NOT NULL DEFAULT 0,
    suspended BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);
CREATE TABLE users (
    id {ID},
    tenant_id BIGINT REFERENCES tenants(id),
    name TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    disabled BIGINT NOT NULL DEFAULT 0,
    failed_logins BIGINT NOT NULL DEFAULT 0,
    locked_until BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);
CREATE TABLE repositories (
    id {ID},
    tenant_id BIGINT NOT NULL REFERENCES tenants(id),
    name TEXT NOT NULL UNIQUE,
    lock_days BIGINT NOT NULL,
    compliance BIGINT NOT NULL,
    stored_bytes BIGINT NOT NULL DEFAULT 0,
    object_count BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);
CREATE INDEX repositories_by_tenant ON repositories(tenant_id);
CREATE TABLE devices (
    id {ID},
    tenant_id BIGINT NOT NULL REFERENCES tenants(id),
    repo_id BIGINT NOT NULL REFERENCES repositories(id),
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL DEFAULT 0,
    revoked_at BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX devices_by_tenant ON devices(tenant_id);
CREATE TABLE tokens (
    id {ID},
    token_hash TEXT NOT NULL UNIQUE,
    user_id BIGINT REFERENCES users(id),
    device_id BIGINT REFERENCES devices(id),
    label TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL DEFAULT 0,
    revoked_at BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE objects (
    repo_id BIGINT NOT NULL REFERENCES repositories(id),
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    size BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (repo_id, kind, name)
);
CREATE TABLE snapshot_packs (
    repo_id BIGINT NOT NULL,
    snapshot TEXT NOT NULL,
    pack_kind TEXT NOT NULL,
    pack TEXT NOT NULL,
    PRIMARY KEY (repo_id, snapshot, pack_kind, pack)
);
CREATE INDEX snapshot_packs_by_pack ON snapshot_packs(repo_id, pack_kind, pack);
CREATE TABLE reservations (
    id {ID},
    tenant_id BIGINT NOT NULL REFERENCES tenants(id),
    bytes BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE TABLE usage_daily (
    repo_id BIGINT NOT NULL REFERENCES repositories(id),
    day TEXT NOT NULL,
    tenant_id BIGINT NOT NULL,
    ingress_bytes BIGINT NOT NULL DEFAULT 0,
    egress_bytes BIGINT NOT NULL DEFAULT 0,
    stored_bytes BIGINT NOT NULL DEFAULT 0,
    stored_peak_bytes BIGINT NOT NULL DEFAULT 0,
    object_count BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (repo_id, day)
);
CREATE INDEX usage_by_tenant_day ON usage_daily(tenant_id, day);
CREATE TABLE audit_log (
    id {ID},
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    tenant_id BIGINT,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    outcome TEXT NOT NULL,
    detail TEXT NOT NULL,
    request_id TEXT NOT NULL
);
CREATE INDEX audit_by_tenant ON audit_log(tenant_id, id)
"#,
    // 2: scrub runs and what they found.
    r#"
CREATE TABLE scrub_runs (
    id {ID},
    state TEXT NOT NULL,
    started_by TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL,
    finished_at BIGINT NOT NULL DEFAULT 0,
    objects_checked BIGINT NOT NULL DEFAULT 0,
    bytes_checked BIGINT NOT NULL DEFAULT 0,
    damaged BIGINT NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX one_running_scrub ON scrub_runs(state) WHERE state = 'running';
CREATE TABLE scrub_findings (
    id {ID},
    run_id BIGINT NOT NULL REFERENCES scrub_runs(id),
    tenant_id BIGINT NOT NULL,
    repo_id BIGINT NOT NULL,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    problem TEXT NOT NULL,
    found_at BIGINT NOT NULL
);
CREATE INDEX scrub_findings_by_run ON scrub_findings(run_id)
"#,
    // 3: server-side retention and garbage collection: condemned packs, leases, index manifests.
    r#"
ALTER TABLE objects ADD COLUMN condemned_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE repositories ADD COLUMN retention_days BIGINT NOT NULL DEFAULT 0;
CREATE TABLE leases (
    repo_id BIGINT NOT NULL REFERENCES repositories(id),
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    renewed_at BIGINT NOT NULL,
    PRIMARY KEY (repo_id, name)
);
CREATE TABLE index_packs (
    repo_id BIGINT NOT NULL,
    idx TEXT NOT NULL,
    pack_kind TEXT NOT NULL,
    pack TEXT NOT NULL,
    PRIMARY KEY (repo_id, idx, pack_kind, pack)
);
CREATE INDEX index_packs_by_pack ON index_packs(repo_id, pack_kind, pack)
"#,
    // 4: logical bytes (what the snapshots represent, from their authenticated plaintext header).
    r#"
ALTER TABLE objects ADD COLUMN logical_bytes BIGINT NOT NULL DEFAULT 0;
ALTER TABLE repositories ADD COLUMN logical_bytes BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage_daily ADD COLUMN logical_bytes BIGINT NOT NULL DEFAULT 0
"#,
    // 5: two-factor sign-in (TOTP), recovery codes, pending second-factor challenges.
    r#"
ALTER TABLE users ADD COLUMN totp_secret TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN totp_pending TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN totp_last_step BIGINT NOT NULL DEFAULT 0;
CREATE TABLE recovery_codes (
    user_id BIGINT NOT NULL REFERENCES users(id),
    code_hash TEXT NOT NULL,
    used_at BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, code_hash)
);
CREATE TABLE login_challenges (
    token_hash TEXT PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users(id),
    expires_at BIGINT NOT NULL
)
"#,
    // 6: billing (snapshots taken per day) and backup health (each device's schedule, last
    // backup and last reported failure; alerts waiting for delivery).
    r#"
ALTER TABLE usage_daily ADD COLUMN snapshots BIGINT NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN backup_every_hours BIGINT NOT NULL DEFAULT 24;
ALTER TABLE devices ADD COLUMN last_backup_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN last_failure_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN last_failure TEXT NOT NULL DEFAULT '';
ALTER TABLE devices ADD COLUMN overdue_alerted_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE tenants ADD COLUMN soft_quota_alerted_at BIGINT NOT NULL DEFAULT 0;
CREATE TABLE alerts (
    id {ID},
    tenant_id BIGINT,
    device_id BIGINT,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    message TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    delivered_at BIGINT NOT NULL DEFAULT 0,
    attempts BIGINT NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT ''
);
CREATE INDEX alerts_by_delivery ON alerts(delivered_at, created_at)
"#,
    // 7: restore drills and replication state reported by devices (`arca drill`, the appliance).
    r#"
ALTER TABLE devices ADD COLUMN last_drill_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN last_drill TEXT NOT NULL DEFAULT '';
ALTER TABLE devices ADD COLUMN last_replication_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN last_replication TEXT NOT NULL DEFAULT ''
"#,
    // 8: the server's own restore check of each repository's newest snapshot.
    r#"
ALTER TABLE repositories ADD COLUMN restore_check_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE repositories ADD COLUMN restore_check_ok BIGINT NOT NULL DEFAULT 0;
ALTER TABLE repositories ADD COLUMN restore_check TEXT NOT NULL DEFAULT ''
"#,
    // 9: the provider's recovery key pair (the private half sealed under a passphrase).
    r#"
CREATE TABLE recovery_keys (
    id {ID},
    public_key TEXT NOT NULL,
    sealed_private TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL
)
"#,
    // 10: the customer's own addresses for its alerts.
    r#"
ALTER TABLE tenants ADD COLUMN alert_email TEXT NOT NULL DEFAULT ''
"#,
    // 11: repositories in restic's format (hosted for restic clients), and who holds each lock,
    // so a device token may remove its own locks and no other's.
    r#"
ALTER TABLE repositories ADD COLUMN format TEXT NOT NULL DEFAULT 'arca';
ALTER TABLE leases ADD COLUMN owner TEXT NOT NULL DEFAULT ''
"#,
    // 12: managed agents: enrolment codes, protection plans (a tenant's default or a device's
    // own), jobs the console queues for one agent, and what each agent says of itself.
    r#"
CREATE TABLE enrolment_codes (
    id {ID},
    code_hash TEXT NOT NULL UNIQUE,
    tenant_id BIGINT NOT NULL REFERENCES tenants(id),
    repo_id BIGINT REFERENCES repositories(id),
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT NOT NULL DEFAULT 0,
    device_id BIGINT
);
CREATE INDEX enrolment_codes_by_tenant ON enrolment_codes(tenant_id, id);
CREATE TABLE protection_plans (
    id {ID},
    tenant_id BIGINT NOT NULL REFERENCES tenants(id),
    name TEXT NOT NULL,
    spec TEXT NOT NULL,
    rpo_hours BIGINT NOT NULL,
    revision BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX protection_plans_by_name ON protection_plans(tenant_id, name);
ALTER TABLE tenants ADD COLUMN protection_plan_id BIGINT;
ALTER TABLE devices ADD COLUMN protection_plan_id BIGINT;
ALTER TABLE devices ADD COLUMN agent TEXT NOT NULL DEFAULT '';
ALTER TABLE devices ADD COLUMN agent_state TEXT NOT NULL DEFAULT '';
CREATE TABLE agent_jobs (
    id {ID},
    device_id BIGINT NOT NULL REFERENCES devices(id),
    kind TEXT NOT NULL,
    spec TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    started_at BIGINT NOT NULL DEFAULT 0,
    finished_at BIGINT NOT NULL DEFAULT 0,
    outcome TEXT NOT NULL DEFAULT '',
    message TEXT NOT NULL DEFAULT ''
);
CREATE INDEX agent_jobs_by_device ON agent_jobs(device_id, finished_at)
"#,
    // 13: the console's lists at scale: the audit log by time (date ranges), tenants by size.
    r#"
CREATE INDEX audit_by_time ON audit_log(at);
CREATE INDEX tenants_by_stored ON tenants(stored_bytes)
"#,
    // 14: a suspension's reason for the customer; the provider's brand (white label).
    r#"
ALTER TABLE tenants ADD COLUMN suspended_reason TEXT NOT NULL DEFAULT '';
CREATE TABLE branding (
    scope TEXT NOT NULL UNIQUE,
    product_name TEXT NOT NULL,
    accent TEXT NOT NULL,
    logo_type TEXT NOT NULL DEFAULT '',
    logo TEXT NOT NULL DEFAULT '',
    support_email TEXT NOT NULL DEFAULT '',
    support_url TEXT NOT NULL DEFAULT '',
    sign_in_text TEXT NOT NULL DEFAULT '',
    updated_at BIGINT NOT NULL
)
"#,
    // 15: the provider's billing settings (one row, id 1), the per-year invoice counters
    // (gapless numbering) and the issued invoices with their frozen figures. Invoices keep the tenant's id and name without
    // a foreign key: they outlive a deleted tenant (accounting records).
    r#"
CREATE TABLE billing_settings (
    id BIGINT PRIMARY KEY,
    currency TEXT NOT NULL,
    tax_basis_points BIGINT NOT NULL,
    issuer_name TEXT NOT NULL,
    issuer_address TEXT NOT NULL,
    issuer_tax_id TEXT NOT NULL,
    number_prefix TEXT NOT NULL,
    payment_days BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    updated_by TEXT NOT NULL
);
CREATE TABLE invoice_counters (
    year BIGINT PRIMARY KEY,
    last_seq BIGINT NOT NULL
);
CREATE TABLE invoices (
    id {ID},
    number TEXT NOT NULL UNIQUE,
    year BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    tenant_id BIGINT NOT NULL,
    tenant_name TEXT NOT NULL,
    month TEXT NOT NULL,
    issued_at BIGINT NOT NULL,
    issue_date TEXT NOT NULL,
    due_date TEXT NOT NULL,
    currency TEXT NOT NULL,
    tax_basis_points BIGINT NOT NULL,
    net_cents BIGINT NOT NULL,
    tax_cents BIGINT NOT NULL,
    gross_cents BIGINT NOT NULL,
    issued_by TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE UNIQUE INDEX invoices_by_tenant_month ON invoices(tenant_id, month);
CREATE UNIQUE INDEX invoices_by_year_seq ON invoices(year, seq)
"#,
    // 16: resellers between the provider and tenants. A reseller's tenants, admins and plans
    // carry its id (NULL: the provider's own); a reseller's plan resells a provider's plan.
    r#"
CREATE TABLE resellers (
    id {ID},
    name TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    capacity_bytes BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);
ALTER TABLE tenants ADD COLUMN reseller_id BIGINT REFERENCES resellers(id);
ALTER TABLE users ADD COLUMN reseller_id BIGINT REFERENCES resellers(id);
ALTER TABLE plans ADD COLUMN reseller_id BIGINT REFERENCES resellers(id);
ALTER TABLE plans ADD COLUMN resells_plan_id BIGINT REFERENCES plans(id);
CREATE INDEX tenants_by_reseller ON tenants(reseller_id, name)
"#,
    // 17: every seller issues its own invoices. Billing settings, number sequences and invoices
    // are keyed by `issuer` (0: the provider; otherwise the reseller's id), so a reseller has its
    // own letterhead, currency, tax rate and gapless numbering. An invoice number is unique per
    // issuer (two resellers may both use INV-). An invoice's customer is a tenant (`tenant_id`)
    // or, for the provider's wholesale invoices, a reseller (`customer_reseller_id`; the other
    // is 0). A reseller may have a sign-in host name that shows its brand (NULL: none). The tables are rebuilt because SQLite cannot drop
    // the old column-level UNIQUE on `number`; ids are reassigned in their old order (nothing
    // refers to them).
    r#"
CREATE TABLE billing_settings_v17 (
    issuer BIGINT PRIMARY KEY,
    currency TEXT NOT NULL,
    tax_basis_points BIGINT NOT NULL,
    issuer_name TEXT NOT NULL,
    issuer_address TEXT NOT NULL,
    issuer_tax_id TEXT NOT NULL,
    number_prefix TEXT NOT NULL,
    payment_days BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    updated_by TEXT NOT NULL
);
INSERT INTO billing_settings_v17 (issuer, currency, tax_basis_points, issuer_name, issuer_address, issuer_tax_id,
    number_prefix, payment_days, updated_at, updated_by)
    SELECT 0, currency, tax_basis_points, issuer_name, issuer_address, issuer_tax_id, number_prefix, payment_days,
    updated_at, updated_by FROM billing_settings WHERE id = 1;
DROP TABLE billing_settings;
ALTER TABLE billing_settings_v17 RENAME TO billing_settings;
CREATE TABLE invoice_sequences (
    issuer BIGINT NOT NULL,
    year BIGINT NOT NULL,
    last_seq BIGINT NOT NULL,
    PRIMARY KEY (issuer, year)
);
INSERT INTO invoice_sequences (issuer, year, last_seq) SELECT 0, year, last_seq FROM invoice_counters;
DROP TABLE invoice_counters;
CREATE TABLE invoices_v17 (
    id {ID},
    issuer BIGINT NOT NULL,
    number TEXT NOT NULL,
    year BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    tenant_id BIGINT NOT NULL,
    customer_reseller_id BIGINT NOT NULL DEFAULT 0,
    tenant_name TEXT NOT NULL,
    month TEXT NOT NULL,
    issued_at BIGINT NOT NULL,
    issue_date TEXT NOT NULL,
    due_date TEXT NOT NULL,
    currency TEXT NOT NULL,
    tax_basis_points BIGINT NOT NULL,
    net_cents BIGINT NOT NULL,
    tax_cents BIGINT NOT NULL,
    gross_cents BIGINT NOT NULL,
    issued_by TEXT NOT NULL,
    body TEXT NOT NULL
);
INSERT INTO invoices_v17 (issuer, number, year, seq, tenant_id, tenant_name, month, issued_at, issue_date, due_date,
    currency, tax_basis_points, net_cents, tax_cents, gross_cents, issued_by, body)
    SELECT 0, number, year, seq, tenant_id, tenant_name, month, issued_at, issue_date, due_date, currency,
    tax_basis_points, net_cents, tax_cents, gross_cents, issued_by, body FROM invoices ORDER BY id;
DROP TABLE invoices;
ALTER TABLE invoices_v17 RENAME TO invoices;
CREATE UNIQUE INDEX invoices_by_number ON invoices(issuer, number);
CREATE UNIQUE INDEX invoices_by_customer_month ON invoices(tenant_id, customer_reseller_id, month);
CREATE INDEX invoices_by_reseller ON invoices(customer_reseller_id);
CREATE UNIQUE INDEX invoices_by_year_seq ON invoices(issuer, year, seq);
ALTER TABLE resellers ADD COLUMN sign_in_host TEXT;
CREATE UNIQUE INDEX resellers_by_host ON resellers(sign_in_host)
"#,
    // 18: metering summed per settled day and per tenant's month, and the triggers that forget
    // those sums when a row they came from changes (`usage_totals`; the triggers are written
    // per dialect, see `dialect_steps`), and metering rows found by day (today's, for the sums).
    super::usage_totals::SCHEMA,
];

/// Statements in each dialect's own syntax that a migration adds after its shared ones, run
/// whole (a trigger's body has semicolons of its own): the migration's number and its steps.
fn dialect_steps(version: usize, dialect: Dialect) -> Vec<String> {
    match version {
        18 => super::usage_totals::triggers(dialect),
        _ => Vec::new(),
    }
}

/// The schema version the database is at (0: empty).
pub async fn version(db: &Db) -> Result<i64> {
    sqlx::query("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)").execute(db.pool()).await?;
    let v: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM schema_version").fetch_one(db.pool()).await?;
    Ok(v.unwrap_or(0))
}

/// Applies every migration the database lacks.
pub async fn migrate(db: &Db) -> Result<()> {
    version(db).await?;
    // SQLite's write lock is taken at once, so two processes cannot both see the old version.
    let mut tx = db.begin_write().await?;
    if db.dialect() == Dialect::Postgres {
        // Any constant key: one schema per database.
        sqlx::query("SELECT pg_advisory_xact_lock(4242001)").execute(&mut *tx).await?;
    }
    let current: Option<i64> =
        sqlx::query_scalar("SELECT MAX(version) FROM schema_version").fetch_one(&mut *tx).await?;
    let current = current.unwrap_or(0);
    if current > LATEST {
        return Err(super::DbError::Invalid(format!(
            "the metadata database has schema version {current}, newer than this build knows ({LATEST}): \
             upgrade arca"
        )));
    }
    let id = match db.dialect() {
        Dialect::Sqlite => "INTEGER PRIMARY KEY AUTOINCREMENT",
        Dialect::Postgres => "BIGSERIAL PRIMARY KEY",
    };
    for (i, migration) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        for statement in migration.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            dyn_query(statement.replace("{ID}", id)).execute(&mut *tx).await?;
        }
        for statement in dialect_steps(i + 1, db.dialect()) {
            dyn_query(statement).execute(&mut *tx).await?;
        }
        sqlx::query("INSERT INTO schema_version (version) VALUES ($1)").bind(i as i64 + 1).execute(&mut *tx).await?;
        tracing::info!("metadata schema migrated to version {}", i + 1);
    }
    let indexed = super::text_index::ensure(&mut tx, db.dialect()).await?;
    db.audit_text.store(indexed, std::sync::atomic::Ordering::Relaxed);
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::invoices::{InvoicesOf, Issuer};
    use crate::db::testing::databases;

    /// Schema 17 rebuilds the billing tables keyed by issuer: a database of schema 16 with
    /// saved settings, a year's counter and an issued invoice keeps all three as the
    /// provider's, and the provider's numbering goes on from where it was.
    #[tokio::test]
    async fn invoices_of_schema_16_become_the_providers() {
        for (db, _guard) in databases().await {
            let id = match db.dialect() {
                Dialect::Sqlite => "INTEGER PRIMARY KEY AUTOINCREMENT",
                Dialect::Postgres => "BIGSERIAL PRIMARY KEY",
            };
            // Back before schema 18's metering sums, their triggers and the index by day.
            sqlx::query("DROP INDEX usage_by_day").execute(db.pool()).await.unwrap();
            for t in ["usage_day_totals", "usage_month_totals"] {
                dyn_query(format!("DROP TABLE {t}")).execute(db.pool()).await.unwrap();
            }
            match db.dialect() {
                Dialect::Sqlite => {
                    let names: Vec<String> = sqlx::query_scalar(
                        "SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'usage_totals_%'",
                    )
                    .fetch_all(db.pool())
                    .await
                    .unwrap();
                    for n in names {
                        dyn_query(format!("DROP TRIGGER {n}")).execute(db.pool()).await.unwrap();
                    }
                }
                Dialect::Postgres => {
                    sqlx::query("DROP FUNCTION usage_totals_forget() CASCADE").execute(db.pool()).await.unwrap();
                }
            }
            // Back to schema 16's billing tables, with rows in them, and its resellers.
            for t in ["billing_settings", "invoice_sequences", "invoices"] {
                dyn_query(format!("DROP TABLE {t}")).execute(db.pool()).await.unwrap();
            }
            sqlx::query("DROP INDEX resellers_by_host").execute(db.pool()).await.unwrap();
            sqlx::query("ALTER TABLE resellers DROP COLUMN sign_in_host").execute(db.pool()).await.unwrap();
            for statement in MIGRATIONS[14].split(';').map(str::trim).filter(|s| !s.is_empty()) {
                dyn_query(statement.replace("{ID}", id)).execute(db.pool()).await.unwrap();
            }
            sqlx::query(
                "INSERT INTO billing_settings VALUES (1, 'GBP', 2000, 'Host Ltd', '1 Road\nTown', 'GB1', 'HOST', 14, \
                 1, 'user:admin')",
            )
            .execute(db.pool())
            .await
            .unwrap();
            sqlx::query("INSERT INTO invoice_counters VALUES (2024, 7)").execute(db.pool()).await.unwrap();
            let body = r#"{"issuer":{"currency":"GBP","tax_basis_points":2000,"issuer_name":"Host Ltd","issuer_address":["1 Road","Town"],"issuer_tax_id":"GB1","number_prefix":"HOST","payment_days":14},"customer_display_name":"Acme","period_from":"2024-04-01","period_to":"2024-04-30","figures":{"month":"2024-04","tenant":"acme","display_name":"Acme","plan":"office","days":30,"days_in_month":30,"partial":false,"avg_stored_bytes":0,"peak_stored_bytes":0,"logical_bytes":0,"ingress_bytes":0,"egress_bytes":0,"snapshots":0,"soft_quota_bytes":0,"base_cents":1000,"overage_bytes":0,"overage_cents":0,"total_cents":1000,"currency":"GBP","tax_basis_points":2000,"tax_cents":200,"gross_cents":1200,"lines":[]}}"#;
            sqlx::query(
                "INSERT INTO invoices (number, year, seq, tenant_id, tenant_name, month, issued_at, issue_date, \
                 due_date, currency, tax_basis_points, net_cents, tax_cents, gross_cents, issued_by, body) \
                 VALUES ('HOST-2024-000007', 2024, 7, 99, 'acme', '2024-04', 1, '2024-05-02', '2024-05-16', 'GBP', \
                 2000, 1000, 200, 1200, 'user:admin', $1)",
            )
            .bind(body)
            .execute(db.pool())
            .await
            .unwrap();
            sqlx::query("DELETE FROM schema_version WHERE version >= 17").execute(db.pool()).await.unwrap();

            migrate(&db).await.unwrap();
            assert_eq!(version(&db).await.unwrap(), LATEST);
            let s = db.billing_settings(Issuer::Provider).await.unwrap();
            assert_eq!((s.currency.as_str(), s.number_prefix.as_str()), ("GBP", "HOST"));
            assert_eq!(s.issuer_address, vec!["1 Road", "Town"]);
            let inv = db.invoice(Issuer::Provider, "HOST-2024-000007").await.unwrap().expect("kept");
            assert_eq!((inv.issuer_reseller_id, inv.tenant_id, inv.gross_cents), (None, 99, 1200));
            assert_eq!(db.invoices(InvoicesOf::Issuer(Issuer::Provider), 10).await.unwrap().len(), 1);
            let last: i64 =
                sqlx::query_scalar("SELECT last_seq FROM invoice_sequences WHERE issuer = 0 AND year = 2024")
                    .fetch_one(db.pool())
                    .await
                    .unwrap();
            assert_eq!(last, 7, "the year's count goes on");
            assert!(!db.billing_settings_saved(Issuer::Reseller(1)).await.unwrap());
        }
    }
}
