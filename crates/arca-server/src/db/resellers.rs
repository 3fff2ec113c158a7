//! Resellers: the tier between the provider and tenants. A reseller has its own admins, plans
//! and tenants; the provider sets how much it may sell (its capacity: the most its tenants' hard
//! quotas may add up to) and which plans it resells (each reseller plan names a provider plan,
//! whose price is the wholesale price; [`super::accounts`] checks a plan's limits).
//!
//! The limit checks run inside the transaction that changes a reseller's tenants or plans, after
//! taking the reseller's row lock, so two admins adding tenants at once cannot both squeeze under
//! the capacity.

use sqlx::any::AnyRow;

use super::accounts::{
    check_name, check_password, conflict, hash_password, user_from, valid_user_name, Role, User, USER_SELECT,
};
use super::{col, dyn_query, now, Db, DbError, Result};
use crate::limits;
use crate::units::human_bytes;

pub use arca_api::{Reseller, ResellerChange};

const RESELLER_SELECT: &str =
    "SELECT rs.id, rs.name, rs.display_name, rs.capacity_bytes, rs.created_at, rs.sign_in_host, \
     (SELECT COUNT(*) FROM tenants t WHERE t.reseller_id = rs.id) AS tenants, \
     (SELECT CAST(COALESCE(SUM(t.stored_bytes), 0) AS BIGINT) FROM tenants t WHERE t.reseller_id = rs.id) AS stored, \
     (SELECT CAST(COALESCE(SUM(t.hard_quota_bytes), 0) AS BIGINT) FROM tenants t WHERE t.reseller_id = rs.id) AS quota \
     FROM resellers rs";

fn reseller_from(row: &AnyRow) -> Result<Reseller> {
    Ok(Reseller {
        id: col(row, "id")?,
        name: col(row, "name")?,
        display_name: col(row, "display_name")?,
        capacity_bytes: col(row, "capacity_bytes")?,
        created_at: col(row, "created_at")?,
        tenants: col(row, "tenants")?,
        stored_bytes: col(row, "stored")?,
        quota_bytes: col(row, "quota")?,
        sign_in_host: col::<Option<String>>(row, "sign_in_host")?.unwrap_or_default(),
    })
}

/// A sign-in host name as typed, tidied (trimmed, lower case, without a port or a final dot), or
/// why it is not one: dot-separated labels of 1 to 63 letters, digits and inner hyphens, at
/// most 253 characters. Empty means none.
pub fn check_host(typed: &str) -> Result<String> {
    let h = typed.trim().trim_end_matches('.').to_ascii_lowercase();
    if h.is_empty() {
        return Ok(h);
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    if h.len() > 253 || !h.split('.').all(label_ok) {
        return Err(DbError::Invalid(format!(
            "sign-in host: {typed:?} is not a host name (like backup.reseller.example: letters, digits, inner \
             hyphens and dots; no port, no scheme)"
        )));
    }
    Ok(h)
}

type Tx = sqlx::Transaction<'static, sqlx::Any>;

/// Checks that reseller `reseller`'s tenants fit its capacity: their hard quotas add up to no more
/// than it, and none is unlimited while it is limited. Takes the reseller's row lock first.
pub(crate) async fn check_capacity(tx: &mut Tx, reseller: i64) -> Result<()> {
    // An UPDATE that changes nothing still locks the row (PostgreSQL) or the database (SQLite):
    // concurrent changes to the same reseller's tenants queue here.
    sqlx::query("UPDATE resellers SET capacity_bytes = capacity_bytes WHERE id = $1")
        .bind(reseller)
        .execute(&mut **tx)
        .await?;
    let row = sqlx::query(
        "SELECT rs.name, rs.capacity_bytes, \
         (SELECT CAST(COALESCE(SUM(t.hard_quota_bytes), 0) AS BIGINT) FROM tenants t WHERE t.reseller_id = rs.id) AS quota, \
         (SELECT COUNT(*) FROM tenants t WHERE t.reseller_id = rs.id AND t.hard_quota_bytes = 0) AS unlimited \
         FROM resellers rs WHERE rs.id = $1",
    )
    .bind(reseller)
    .fetch_one(&mut **tx)
    .await?;
    let capacity: i64 = col(&row, "capacity_bytes")?;
    if capacity == 0 {
        return Ok(());
    }
    let (quota, unlimited): (i64, i64) = (col(&row, "quota")?, col(&row, "unlimited")?);
    if unlimited > 0 {
        return Err(DbError::Invalid(format!(
            "the reseller's capacity is {}: a tenant cannot have an unlimited hard quota (give it one)",
            human_bytes(capacity)
        )));
    }
    if quota > capacity {
        return Err(DbError::Invalid(format!(
            "the reseller's tenants' hard quotas would add up to {}, over its capacity of {}: lower a quota or ask \
             the provider for more capacity",
            human_bytes(quota),
            human_bytes(capacity)
        )));
    }
    Ok(())
}

/// Checks that a reseller's tenant's hard quota is within the provider's plan its plan resells.
pub(crate) async fn check_tenant_quota(tx: &mut Tx, tenant: i64) -> Result<()> {
    let row = sqlx::query(
        "SELECT t.hard_quota_bytes AS hard, b.name AS base, b.hard_quota_bytes AS base_hard FROM tenants t \
         JOIN plans p ON p.id = t.plan_id JOIN plans b ON b.id = p.resells_plan_id WHERE t.id = $1",
    )
    .bind(tenant)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or_else(|| DbError::Invalid("a reseller's tenant must be on one of the reseller's plans".into()))?;
    let (hard, base_hard): (i64, i64) = (col(&row, "hard")?, col(&row, "base_hard")?);
    if base_hard > 0 && (hard == 0 || hard > base_hard) {
        let base: String = col(&row, "base")?;
        return Err(DbError::Invalid(format!(
            "hard_quota_bytes: the provider's plan {base} allows at most {} a tenant",
            human_bytes(base_hard)
        )));
    }
    Ok(())
}

/// After the provider's plan `base` changed to `plan`: the reseller plans that resell it take its
/// retention lock and compliance mode (the provider stores the data); a hard quota above its new
/// one, of a reseller plan or of a tenant on one, is refused, naming them, so the change cannot
/// leave a reseller selling more than it buys.
pub(crate) async fn follow_base_plan(tx: &mut Tx, base: i64, plan: &super::accounts::Plan) -> Result<()> {
    sqlx::query("UPDATE plans SET lock_days = $1, compliance = $2 WHERE resells_plan_id = $3")
        .bind(plan.lock_days)
        .bind(plan.compliance as i64)
        .bind(base)
        .execute(&mut **tx)
        .await?;
    if plan.hard_quota_bytes == 0 {
        return Ok(());
    }
    let over = |what: &str| {
        format!(
            "SELECT {what} AS name, rs.name AS reseller FROM {} JOIN resellers rs ON rs.id = p.reseller_id \
             WHERE p.resells_plan_id = $1 AND ({what_quota} = 0 OR {what_quota} > $2) ORDER BY rs.name, {what} LIMIT 5",
            if what == "p.name" { "plans p" } else { "tenants t JOIN plans p ON p.id = t.plan_id" },
            what_quota = if what == "p.name" { "p.hard_quota_bytes" } else { "t.hard_quota_bytes" },
        )
    };
    for (what, kind) in [("p.name", "plan"), ("t.name", "tenant")] {
        let rows = super::dyn_query(over(what)).bind(base).bind(plan.hard_quota_bytes).fetch_all(&mut **tx).await?;
        if !rows.is_empty() {
            let names = rows
                .iter()
                .map(|r| {
                    Ok(format!("{kind} {} of reseller {}", col::<String>(r, "name")?, col::<String>(r, "reseller")?))
                })
                .collect::<Result<Vec<_>>>()?;
            return Err(DbError::Conflict(format!(
                "{} resold under plan {} allow{} more than its new hard quota of {}: the reseller must lower {} first",
                names.join(", "),
                plan.name,
                if rows.len() == 1 { "s" } else { "" },
                human_bytes(plan.hard_quota_bytes),
                if rows.len() == 1 { "it" } else { "them" },
            )));
        }
    }
    Ok(())
}

impl Db {
    /// Creates a reseller and its first admin, together (both or neither).
    pub async fn create_reseller(
        &self,
        name: &str,
        display_name: &str,
        capacity_bytes: i64,
        admin: &str,
        password: &str,
    ) -> Result<Reseller> {
        check_name("reseller", name)?;
        limits::quota("capacity_bytes", capacity_bytes)?;
        let display = limits::display_name(display_name).map_err(DbError::Invalid)?;
        let display = if display.is_empty() { name } else { display.as_str() };
        check_user(admin, password)?;
        let hash = hash_password(password)?;
        let mut tx = self.begin_write().await?;
        sqlx::query("INSERT INTO resellers (name, display_name, capacity_bytes, created_at) VALUES ($1, $2, $3, $4)")
            .bind(name)
            .bind(display)
            .bind(capacity_bytes)
            .bind(now())
            .execute(&mut *tx)
            .await
            .map_err(|e| conflict(e, format!("a reseller named {name} already exists")))?;
        let id: i64 =
            sqlx::query_scalar("SELECT id FROM resellers WHERE name = $1").bind(name).fetch_one(&mut *tx).await?;
        insert_admin(&mut tx, id, admin, &hash).await?;
        tx.commit().await?;
        self.reseller(name).await
    }

    /// Adds an admin to reseller `reseller`.
    pub async fn create_reseller_admin(&self, reseller: i64, name: &str, password: &str) -> Result<User> {
        check_user(name, password)?;
        let hash = hash_password(password)?;
        let mut tx = self.begin_write().await?;
        insert_admin(&mut tx, reseller, name, &hash).await?;
        tx.commit().await?;
        self.user(name).await
    }

    /// Every reseller, by name, with its tenants' figures.
    pub async fn resellers(&self) -> Result<Vec<Reseller>> {
        let rows = dyn_query(format!("{RESELLER_SELECT} ORDER BY rs.name")).fetch_all(self.pool()).await?;
        rows.iter().map(reseller_from).collect()
    }

    /// One reseller by name.
    pub async fn reseller(&self, name: &str) -> Result<Reseller> {
        let row = dyn_query(format!("{RESELLER_SELECT} WHERE rs.name = $1"))
            .bind(name)
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| DbError::NotFound(format!("no reseller named {name}")))?;
        reseller_from(&row)
    }

    /// One reseller by id.
    pub async fn reseller_by_id(&self, id: i64) -> Result<Reseller> {
        let row = dyn_query(format!("{RESELLER_SELECT} WHERE rs.id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| DbError::NotFound(format!("no reseller with id {id}")))?;
        reseller_from(&row)
    }

    /// A reseller's admins, by name.
    pub async fn reseller_admins(&self, reseller: i64) -> Result<Vec<User>> {
        let rows = dyn_query(format!("{USER_SELECT} WHERE u.reseller_id = $1 ORDER BY u.name"))
            .bind(reseller)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(user_from).collect()
    }

    /// The reseller whose sign-in host is `host` (tidied by [`check_host`]), if any.
    pub async fn reseller_by_host(&self, host: &str) -> Result<Option<Reseller>> {
        let row = dyn_query(format!("{RESELLER_SELECT} WHERE rs.sign_in_host = $1"))
            .bind(host.to_string())
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(reseller_from).transpose()
    }

    /// Changes a reseller's display name, capacity or sign-in host; a capacity below what its
    /// tenants already hold in hard quotas is refused, and so is another reseller's host.
    pub async fn update_reseller(&self, name: &str, change: &ResellerChange) -> Result<Reseller> {
        let reseller = self.reseller(name).await?;
        let mut tx = self.begin_write().await?;
        if let Some(d) = &change.display_name {
            let d = limits::display_name(d).map_err(DbError::Invalid)?;
            sqlx::query("UPDATE resellers SET display_name = $1 WHERE id = $2")
                .bind(if d.is_empty() { name } else { d.as_str() })
                .bind(reseller.id)
                .execute(&mut *tx)
                .await?;
        }
        if let Some(h) = &change.sign_in_host {
            let h = check_host(h)?;
            sqlx::query("UPDATE resellers SET sign_in_host = $1 WHERE id = $2")
                .bind((!h.is_empty()).then_some(h.clone()))
                .bind(reseller.id)
                .execute(&mut *tx)
                .await
                .map_err(|e| conflict(e, format!("the sign-in host {h} is already another reseller's")))?;
        }
        if let Some(c) = change.capacity_bytes {
            limits::quota("capacity_bytes", c)?;
            sqlx::query("UPDATE resellers SET capacity_bytes = $1 WHERE id = $2")
                .bind(c)
                .bind(reseller.id)
                .execute(&mut *tx)
                .await?;
            check_capacity(&mut tx, reseller.id).await?;
        }
        tx.commit().await?;
        self.reseller(name).await
    }
}

fn check_user(name: &str, password: &str) -> Result<()> {
    if !valid_user_name(name) {
        return Err(DbError::Invalid(format!(
            "invalid user name {name:?}: use 1 to 128 characters of letters, digits and ._@+-"
        )));
    }
    check_password(password)
}

async fn insert_admin(tx: &mut Tx, reseller: i64, name: &str, hash: &str) -> Result<()> {
    sqlx::query("INSERT INTO users (reseller_id, name, password_hash, role, created_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(reseller)
        .bind(name)
        .bind(hash)
        .bind(Role::ResellerAdmin.as_str())
        .bind(now())
        .execute(&mut **tx)
        .await
        .map_err(|e| conflict(e, format!("a user named {name} already exists")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;

    use super::*;
    use crate::db::accounts::{Plan, TenantChange, TenantList, TenantSort, TenantStatus};
    use crate::db::billing::{BillingOf, Prices};
    use crate::db::testing::databases;

    const PASSWORD: &str = "a long enough password";

    fn plan(name: &str, hard: i64, price: i64, resells: Option<&str>) -> Plan {
        Plan {
            name: name.into(),
            hard_quota_bytes: hard,
            soft_quota_bytes: hard / 2,
            lock_days: 0,
            compliance: false,
            yearly_price_cents: price,
            overage_cents_per_gb: 0,
            resells: resells.map(str::to_string),
            reseller: None,
        }
    }

    fn invalid<T: std::fmt::Debug>(r: Result<T>, what: &str) -> String {
        match r {
            Err(DbError::Invalid(m)) => m,
            other => panic!("{what}: expected Invalid, got {other:?}"),
        }
    }

    fn not_found<T: std::fmt::Debug>(r: Result<T>, what: &str) {
        assert!(matches!(r, Err(DbError::NotFound(_))), "{what}: expected NotFound, got {r:?}");
    }

    /// A reseller sells only plans that resell the provider's, within their limits; its tenants
    /// are on its own plans and fit its capacity; another reseller cannot reach any of it.
    #[test]
    fn sign_in_hosts_are_host_names() {
        assert_eq!(check_host(" Backup.North.Example. ").unwrap(), "backup.north.example");
        assert_eq!(check_host("").unwrap(), "");
        for bad in ["north_x.example", "-a.example", "a-.example", "a..example", "https://a.example", "a.example:443"] {
            assert!(check_host(bad).is_err(), "{bad}");
        }
        assert!(check_host(&format!("{}.example", "a".repeat(64))).is_err(), "a label over 63");
    }

    /// A reseller's sign-in host finds it; no two resellers share one; empty removes it.
    #[tokio::test]
    async fn a_sign_in_host_belongs_to_one_reseller() {
        for (db, _guard) in databases().await {
            db.create_reseller("r1", "", 0, "r1-admin", PASSWORD).await.unwrap();
            db.create_reseller("r2", "", 0, "r2-admin", PASSWORD).await.unwrap();
            let host = |h: &str| ResellerChange { sign_in_host: Some(h.into()), ..Default::default() };
            let r1 = db.update_reseller("r1", &host("Backup.R1.Example")).await.unwrap();
            assert_eq!(r1.sign_in_host, "backup.r1.example");
            assert_eq!(db.reseller_by_host("backup.r1.example").await.unwrap().unwrap().name, "r1");
            assert!(matches!(db.update_reseller("r2", &host("backup.r1.example")).await, Err(DbError::Conflict(_))));
            invalid(db.update_reseller("r2", &host("no_such host")).await, "not a host name");
            assert_eq!(db.reseller("r2").await.unwrap().sign_in_host, "", "a refused change changes nothing");
            db.update_reseller("r1", &host("")).await.unwrap();
            assert!(db.reseller_by_host("backup.r1.example").await.unwrap().is_none());
            db.update_reseller("r2", &host("backup.r1.example")).await.unwrap();
            // Both without one: no conflict between two empty hosts.
            db.update_reseller("r2", &host("")).await.unwrap();
            assert_eq!(db.resellers().await.unwrap().iter().filter(|r| r.sign_in_host.is_empty()).count(), 2);
        }
    }

    #[tokio::test]
    async fn resellers_sell_within_what_the_provider_sells_them() {
        for (db, _guard) in databases().await {
            let mut pro = plan("pro", 1000, 12_000, None);
            pro.lock_days = 7;
            pro.compliance = true;
            db.create_plan(&pro).await.unwrap();
            let r1 = db.create_reseller("r1", "Reseller One", 2700, "r1-admin", PASSWORD).await.unwrap();
            let r2 = db.create_reseller("r2", "", 0, "r2-admin", PASSWORD).await.unwrap();
            assert_eq!((r2.display_name.as_str(), r2.capacity_bytes), ("r2", 0));
            assert!(matches!(db.create_reseller("r1", "", 0, "someone", PASSWORD).await, Err(DbError::Conflict(_))));
            // The first admin comes with the reseller or neither exists.
            assert!(matches!(db.create_reseller("r3", "", 0, "r1-admin", PASSWORD).await, Err(DbError::Conflict(_))));
            not_found(db.reseller("r3").await, "a reseller whose admin failed");
            invalid(db.create_reseller("r4", "", 0, "r4-admin", "short").await, "a short password");
            invalid(db.create_reseller("r5", "", -1, "r5-admin", PASSWORD).await, "a negative capacity");

            // Plans: a reseller's resells a provider plan, never more than it allows.
            let m = invalid(db.create_plan_for(Some(r1.id), &plan("gold", 2000, 24_000, Some("pro"))).await, "over");
            assert!(m.contains("pro"), "{m}");
            invalid(db.create_plan_for(Some(r1.id), &plan("gold", 0, 24_000, Some("pro"))).await, "unlimited");
            invalid(db.create_plan_for(Some(r1.id), &plan("gold", 900, 24_000, None)).await, "no base");
            invalid(db.create_plan_for(None, &plan("gold", 900, 24_000, Some("pro"))).await, "provider reselling");
            db.create_plan_for(Some(r1.id), &plan("gold", 900, 24_000, Some("pro"))).await.unwrap();
            not_found(db.create_plan_for(Some(r2.id), &plan("silver", 900, 1, Some("gold"))).await, "resell a resale");
            let gold = db.plan("gold").await.unwrap();
            assert_eq!((gold.lock_days, gold.compliance), (7, true), "the provider's lock applies");
            assert_eq!((gold.resells.as_deref(), gold.reseller.as_deref()), (Some("pro"), Some("r1")));
            assert_eq!(db.plans_sold_by(Some(r1.id)).await.unwrap().len(), 1);
            assert_eq!(db.plans_sold_by(None).await.unwrap().len(), 1, "the provider's own plans");
            assert_eq!(db.plans_of_reseller(r2.id).await.unwrap().len(), 1, "r2 sees the wholesale list only");
            not_found(db.update_plan_for(Some(r2.id), "gold", &plan("gold", 1, 1, Some("pro"))).await, "r2 edits");
            not_found(db.delete_plan_for(Some(r2.id), "gold").await, "r2 deletes");
            not_found(db.delete_plan_for(None, "gold").await, "the provider deletes a reseller's plan as its own");
            assert!(matches!(db.delete_plan("pro").await, Err(DbError::Conflict(_))), "pro is resold");

            // Tenants: on the seller's own plans, within its capacity.
            invalid(db.create_tenant_for(Some(r1.id), "c1", "", None).await, "no plan");
            not_found(db.create_tenant_for(Some(r1.id), "c1", "", Some("pro")).await, "the provider's plan");
            not_found(db.create_tenant_for(Some(r2.id), "d1", "", Some("gold")).await, "another reseller's plan");
            not_found(db.create_tenant_for(None, "d1", "", Some("gold")).await, "a provider tenant on a resold plan");
            for name in ["c1", "c2", "c3"] {
                let t = db.create_tenant_for(Some(r1.id), name, "", Some("gold")).await.unwrap();
                assert_eq!((t.hard_quota_bytes, t.reseller.as_deref()), (900, Some("r1")));
            }
            let m = invalid(db.create_tenant_for(Some(r1.id), "c4", "", Some("gold")).await, "over capacity");
            assert!(m.contains("capacity"), "{m}");
            not_found(db.tenant("c4").await, "a tenant refused for capacity");
            invalid(
                db.update_tenant("c1", &TenantChange { hard_quota_bytes: Some(1001), ..Default::default() }).await,
                "a quota over the resold plan",
            );
            invalid(
                db.update_tenant("c1", &TenantChange { hard_quota_bytes: Some(0), ..Default::default() }).await,
                "unlimited under a limited plan",
            );
            assert_eq!(db.tenant("c1").await.unwrap().hard_quota_bytes, 900, "a refused change changes nothing");
            let to_1000 = TenantChange { hard_quota_bytes: Some(1000), ..Default::default() };
            invalid(db.update_tenant("c1", &to_1000).await, "1000 + 900 + 900 is over the capacity of 2700");
            db.update_tenant("c1", &TenantChange { hard_quota_bytes: Some(500), ..Default::default() }).await.unwrap();
            not_found(
                db.update_tenant("c1", &TenantChange { plan: Some("pro".into()), ..Default::default() }).await,
                "moving a reseller's tenant onto a provider plan",
            );

            // Capacity: never below what the tenants hold.
            let m = invalid(
                db.update_reseller("r1", &ResellerChange { capacity_bytes: Some(2000), ..Default::default() }).await,
                "capacity under the quotas",
            );
            assert!(m.contains("capacity"), "{m}");
            let r1 = db
                .update_reseller("r1", &ResellerChange { capacity_bytes: Some(2300), ..Default::default() })
                .await
                .unwrap();
            assert_eq!((r1.capacity_bytes, r1.tenants, r1.quota_bytes), (2300, 3, 2300));

            // Listing: each reseller its own.
            assert_eq!(db.tenants_of_reseller(r1.id).await.unwrap().len(), 3);
            assert!(db.tenants_of_reseller(r2.id).await.unwrap().is_empty());
            let list = TenantList {
                search: None,
                status: TenantStatus::Any,
                sort: TenantSort::Name,
                descending: false,
                offset: 0,
                limit: 50,
                reseller: Some(r2.id),
            };
            assert_eq!(db.tenant_list(&list).await.unwrap().1, 0);
            assert_eq!(db.tenant_list(&TenantList { reseller: Some(r1.id), ..list }).await.unwrap().1, 3);
            assert_eq!(db.storage_totals(Some(r2.id)).await.unwrap().2, 0);
            assert_eq!(db.storage_totals(Some(r1.id)).await.unwrap().2, 3);

            // Admins: the reseller's, apart from the provider's staff list.
            assert_eq!(db.reseller_admins(r1.id).await.unwrap()[0].name, "r1-admin");
            db.create_reseller_admin(r1.id, "r1-second", PASSWORD).await.unwrap();
            assert_eq!(db.reseller_admins(r1.id).await.unwrap().len(), 2);
            assert!(db.users(None).await.unwrap().iter().all(|u| u.role != Role::ResellerAdmin));
            assert!(db.create_user("sneaky", PASSWORD, Role::ResellerAdmin, None).await.is_err());

            // The provider's plan changes: its lock reaches the plans that resell it; a hard
            // quota below what they sell is refused, naming them, and changes nothing.
            let lower = Plan { hard_quota_bytes: 800, lock_days: 14, ..pro.clone() };
            match db.update_plan("pro", &lower).await {
                Err(DbError::Conflict(m)) => assert!(m.contains("plan gold of reseller r1"), "{m}"),
                other => panic!("lowering under a resold plan: {other:?}"),
            }
            assert_eq!(db.plan("pro").await.unwrap().hard_quota_bytes, 1000);
            assert_eq!(db.plan("gold").await.unwrap().lock_days, 7);
            db.update_plan("pro", &Plan { lock_days: 14, ..pro.clone() }).await.unwrap();
            assert_eq!(db.plan("gold").await.unwrap().lock_days, 14, "the resold plan takes the new lock");
            // Its tenants follow gold down to 600; c1 keeps a quota of its own, 750.
            db.update_plan_for(Some(r1.id), "gold", &plan("gold", 600, 24_000, Some("pro"))).await.unwrap();
            db.update_tenant("c1", &TenantChange { hard_quota_bytes: Some(750), ..Default::default() }).await.unwrap();
            match db.update_plan("pro", &Plan { hard_quota_bytes: 700, ..lower.clone() }).await {
                Err(DbError::Conflict(m)) => {
                    assert!(m.contains("tenant c1 of reseller r1"), "a tenant's own quota: {m}")
                }
                other => panic!("lowering under a tenant's quota: {other:?}"),
            }
        }
    }

    /// The provider bills a reseller its tenants at the wholesale price of the plans they
    /// resell; the reseller bills its tenants at its own prices; the provider's own month leaves
    /// the reseller's tenants out.
    #[tokio::test]
    async fn wholesale_and_retail_bills() {
        for (db, _guard) in databases().await {
            db.create_plan(&plan("pro", 1000, 12_000, None)).await.unwrap();
            let r = db.create_reseller("r", "", 0, "r-admin", PASSWORD).await.unwrap();
            db.create_plan_for(Some(r.id), &plan("gold", 900, 36_000, Some("pro"))).await.unwrap();
            db.create_tenant_for(Some(r.id), "c1", "", Some("gold")).await.unwrap();
            db.create_tenant_for(Some(r.id), "c2", "", Some("gold")).await.unwrap();
            db.create_tenant("direct", "", Some("pro")).await.unwrap();
            sqlx::query("UPDATE tenants SET created_at = 1704067200").execute(db.pool()).await.unwrap();
            let today = NaiveDate::from_ymd_opt(2024, 5, 2).unwrap();
            let bill = |of, prices| db.billing_on(of, prices, "2024-04", today);
            let wholesale = bill(BillingOf::ResellerCustomers(r.id), Prices::Wholesale).await.unwrap();
            assert_eq!(wholesale.iter().map(|m| m.tenant.as_str()).collect::<Vec<_>>(), ["c1", "c2"]);
            for m in &wholesale {
                assert_eq!((m.plan.as_deref(), m.base_cents), (Some("pro"), 1000), "a twelfth of 120.00");
            }
            let retail = bill(BillingOf::ResellerCustomers(r.id), Prices::Retail).await.unwrap();
            for m in &retail {
                assert_eq!((m.plan.as_deref(), m.base_cents), (Some("gold"), 3000), "a twelfth of 360.00");
            }
            let provider = bill(BillingOf::ProviderCustomers, Prices::Retail).await.unwrap();
            assert_eq!(provider.iter().map(|m| m.tenant.as_str()).collect::<Vec<_>>(), ["direct"]);
        }
    }

    /// Two admins adding tenants at once cannot both squeeze under the capacity.
    #[tokio::test]
    async fn concurrent_tenants_cannot_overrun_the_capacity() {
        for (db, _guard) in databases().await {
            db.create_plan(&plan("pro", 1000, 0, None)).await.unwrap();
            let r = db.create_reseller("r", "", 1500, "r-admin", PASSWORD).await.unwrap();
            db.create_plan_for(Some(r.id), &plan("gold", 1000, 0, Some("pro"))).await.unwrap();
            let (a, b) = tokio::join!(
                db.create_tenant_for(Some(r.id), "a", "", Some("gold")),
                db.create_tenant_for(Some(r.id), "b", "", Some("gold"))
            );
            assert_eq!(a.is_ok() as u8 + b.is_ok() as u8, 1, "{a:?} {b:?}");
            assert_eq!(db.reseller("r").await.unwrap().quota_bytes, 1000);
        }
    }
}
