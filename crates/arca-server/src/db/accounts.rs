//! Plans, tenants, users, repositories, devices and the tokens that authenticate them.
//!
//! Who exists and what they may reach. Permission *rules* live in [`crate::access`]; this module
//! only stores and finds.

use sqlx::any::AnyRow;

use super::{col, dyn_query, is_unique_violation, now, Db, DbError, Result};
use crate::limits;

pub use arca_api::{Device, Plan, RepoFormat, Repository, Role, Tenant, TenantChange, User};

/// The authenticated caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token used.
    pub token_id: i64,
    /// Role.
    pub role: Role,
    /// Tenant (`None` for provider staff).
    pub tenant_id: Option<i64>,
    /// The user, for user tokens.
    pub user_id: Option<i64>,
    /// The device, for device tokens.
    pub device_id: Option<i64>,
    /// The one repository a device token reaches.
    pub repo_id: Option<i64>,
    /// Whether the principal's tenant is suspended.
    pub suspended: bool,
    /// Who, for the audit log: `user:NAME` or `device:NAME@TENANT`.
    pub actor: String,
    /// The reseller, for a reseller's admins.
    pub reseller_id: Option<i64>,
}

/// Short names of tenants, repositories and devices: 1 to 64 characters of `[a-z0-9-]`, not
/// starting with `-`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('-')
        && name.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_lowercase() || b == b'-')
}

/// User login names: 1 to 128 characters of `[A-Za-z0-9._@+-]`.
pub fn valid_user_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 128 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._@+-".contains(&b))
}

pub(crate) fn check_name(what: &str, name: &str) -> Result<()> {
    if valid_name(name) {
        Ok(())
    } else {
        Err(DbError::Invalid(format!(
            "invalid {what} name {name:?}: use 1 to 64 characters of a-z, 0-9 and '-', not starting with '-'"
        )))
    }
}

pub(crate) fn conflict(e: sqlx::Error, what: String) -> DbError {
    if is_unique_violation(&e) {
        DbError::Conflict(what)
    } else {
        DbError::Sql(e)
    }
}

/// A new random secret token: `arca_` + 64 hex digits (256 bits from the operating system).
/// The prefix lets secret scanners recognise leaked tokens.
pub fn new_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("arca_{}", hex::encode(bytes))
}

/// The stored form of a token: BLAKE3 of it, in hex.
///
/// A fast hash is right here (unlike for passwords): tokens carry 256 random bits, so there is
/// nothing to brute-force, and every request looks one up. The lookup compares hashes, so its
/// timing reveals nothing about the token itself.
pub fn hash_token(token: &str) -> String {
    blake3::hash(token.as_bytes()).to_hex().to_string()
}

/// Hashes a password with Argon2id (the crate's defaults: 19 MiB, 2 passes, one lane; the
/// OWASP-recommended minimum) into a PHC string with its own random salt.
pub fn hash_password(password: &str) -> Result<String> {
    use argon2::password_hash::PasswordHasher;
    argon2::Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| DbError::Invalid(format!("cannot hash the password: {e}")))
}

/// Whether `password` matches a PHC string from [`hash_password`].
pub fn verify_password(password: &str, phc: &str) -> bool {
    use argon2::password_hash::PasswordVerifier;
    argon2::Argon2::default().verify_password(password.as_bytes(), phc).is_ok()
}

/// Minimum password length for users.
pub const MIN_PASSWORD_LEN: usize = 10;

pub(crate) fn check_password(password: &str) -> Result<()> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(DbError::Invalid(format!("passwords need at least {MIN_PASSWORD_LEN} characters")));
    }
    Ok(())
}

/// Plan `name` of `owner` (a tenant is only ever on its seller's plans; another's is "no plan
/// named", as a missing one): its id and quotas.
async fn owned_plan(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    owner: Option<i64>,
    name: &str,
) -> Result<(Option<i64>, i64, i64)> {
    let row = dyn_query(format!(
        "SELECT id, hard_quota_bytes, soft_quota_bytes FROM plans WHERE name = $1 AND {}",
        same_reseller("reseller_id", "$2")
    ))
    .bind(name)
    .bind(owner)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or_else(|| DbError::NotFound(format!("no plan named {name}")))?;
    Ok((Some(col(&row, "id")?), col(&row, "hard_quota_bytes")?, col(&row, "soft_quota_bytes")?))
}

/// `plan` as `owner` may sell it, and the id of the provider's plan it resells. The provider's
/// plans resell nothing. A reseller's plan names a provider's plan (`resells`), whose price is
/// the reseller's wholesale price: its hard quota may not exceed that plan's (nor be unlimited
/// when that plan's is not), and it takes that plan's retention lock and compliance mode (the
/// provider stores the data, so the provider's lock applies).
async fn resold_plan(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    owner: Option<i64>,
    plan: &Plan,
) -> Result<(Plan, Option<i64>)> {
    let base = match (owner, plan.resells.as_deref()) {
        (None, None) => return Ok((Plan { reseller: None, ..plan.clone() }, None)),
        (None, Some(_)) => {
            return Err(DbError::Invalid("only a reseller's plan resells another plan: leave resells out".into()))
        }
        (Some(_), None) => {
            return Err(DbError::Invalid(
                "a reseller's plan resells one of the provider's plans: name it in resells".into(),
            ))
        }
        (Some(_), Some(base)) => base,
    };
    let row = sqlx::query(
        "SELECT id, hard_quota_bytes, lock_days, compliance FROM plans WHERE name = $1 AND reseller_id IS NULL",
    )
    .bind(base)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or_else(|| DbError::NotFound(format!("the provider sells no plan named {base}")))?;
    let base_hard: i64 = col(&row, "hard_quota_bytes")?;
    if base_hard > 0 && (plan.hard_quota_bytes == 0 || plan.hard_quota_bytes > base_hard) {
        return Err(DbError::Invalid(format!(
            "hard_quota_bytes: plan {base} allows at most {} bytes ({}) a tenant; {} is more",
            base_hard,
            crate::units::human_bytes(base_hard),
            if plan.hard_quota_bytes == 0 { "unlimited".to_string() } else { plan.hard_quota_bytes.to_string() }
        )));
    }
    let resold = Plan {
        lock_days: col(&row, "lock_days")?,
        compliance: col::<i64>(&row, "compliance")? != 0,
        reseller: None,
        ..plan.clone()
    };
    Ok((resold, Some(col(&row, "id")?)))
}

const PLAN_COLUMNS: &str =
    "name, hard_quota_bytes, soft_quota_bytes, lock_days, compliance, yearly_price_cents, overage_cents_per_gb";

/// A plan with the names of the plan it resells and of its reseller.
const PLAN_SELECT: &str = "SELECT p.name, p.hard_quota_bytes, p.soft_quota_bytes, p.lock_days, p.compliance, \
     p.yearly_price_cents, p.overage_cents_per_gb, b.name AS resells, rs.name AS reseller FROM plans p \
     LEFT JOIN plans b ON b.id = p.resells_plan_id LEFT JOIN resellers rs ON rs.id = p.reseller_id";

/// SQL that is true when a row's `reseller_id` column `column` is the reseller bound as `param`
/// (both NULL: the provider's own). The one way ownership is compared, in both dialects.
pub(crate) fn same_reseller(column: &str, param: &str) -> String {
    format!("COALESCE({column}, 0) = COALESCE(CAST({param} AS BIGINT), 0)")
}

fn plan_from(row: &AnyRow) -> Result<Plan> {
    Ok(Plan {
        name: col(row, "name")?,
        hard_quota_bytes: col(row, "hard_quota_bytes")?,
        soft_quota_bytes: col(row, "soft_quota_bytes")?,
        lock_days: col(row, "lock_days")?,
        compliance: col::<i64>(row, "compliance")? != 0,
        yearly_price_cents: col(row, "yearly_price_cents")?,
        overage_cents_per_gb: col(row, "overage_cents_per_gb")?,
        resells: col(row, "resells")?,
        reseller: col(row, "reseller")?,
    })
}

/// Which tenants a list shows, in which order, and which page of them.
#[derive(Debug, Clone)]
pub struct TenantList {
    /// Short or display names containing this, case-insensitively.
    pub search: Option<String>,
    /// Which states.
    pub status: TenantStatus,
    /// The order.
    pub sort: TenantSort,
    /// Largest first.
    pub descending: bool,
    /// Rows skipped.
    pub offset: i64,
    /// Rows shown (1 to 1,000).
    pub limit: i64,
    /// Only this reseller's tenants (`None`: every tenant).
    pub reseller: Option<i64>,
}

/// A tenant list's status filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TenantStatus {
    /// Every tenant.
    Any,
    /// Not suspended.
    Active,
    /// Suspended.
    Suspended,
    /// Suspended, past the soft quota or within a tenth of the hard one.
    NeedsAttention,
}

/// A tenant list's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TenantSort {
    /// Short name.
    Name,
    /// Display name, case-insensitively.
    DisplayName,
    /// Plan name.
    Plan,
    /// Bytes stored.
    Stored,
    /// Hard quota.
    Quota,
    /// Creation time.
    Created,
}

/// A plan's figures range-checked before they are stored (creating and editing alike).
fn check_plan_figures(plan: &Plan) -> Result<()> {
    limits::quota("hard_quota_bytes", plan.hard_quota_bytes)?;
    limits::quota("soft_quota_bytes", plan.soft_quota_bytes)?;
    limits::days("lock_days", plan.lock_days)?;
    limits::cents("yearly_price_cents", plan.yearly_price_cents)?;
    limits::cents("overage_cents_per_gb", plan.overage_cents_per_gb)?;
    Ok(())
}

const TENANT_SELECT: &str = "SELECT t.id, t.name, t.display_name, p.name AS plan, t.hard_quota_bytes, \
     t.soft_quota_bytes, t.stored_bytes, t.suspended, t.created_at, t.alert_email, t.suspended_reason, \
     t.reseller_id, rs.name AS reseller FROM tenants t LEFT JOIN plans p ON p.id = t.plan_id \
     LEFT JOIN resellers rs ON rs.id = t.reseller_id";

fn tenant_from(row: &AnyRow) -> Result<Tenant> {
    Ok(Tenant {
        id: col(row, "id")?,
        name: col(row, "name")?,
        display_name: col(row, "display_name")?,
        plan: col(row, "plan")?,
        hard_quota_bytes: col(row, "hard_quota_bytes")?,
        soft_quota_bytes: col(row, "soft_quota_bytes")?,
        stored_bytes: col(row, "stored_bytes")?,
        suspended: col::<i64>(row, "suspended")? != 0,
        created_at: col(row, "created_at")?,
        alert_email: col(row, "alert_email")?,
        suspended_reason: col(row, "suspended_reason")?,
        reseller: col(row, "reseller")?,
        reseller_id: col(row, "reseller_id")?,
    })
}

const REPO_SELECT: &str = "SELECT r.id, r.name, r.tenant_id, t.name AS tenant, r.lock_days, r.compliance, \
     r.stored_bytes, r.object_count, r.logical_bytes, r.created_at, r.format, t.reseller_id FROM repositories r \
     JOIN tenants t ON t.id = r.tenant_id";

fn repo_from(row: &AnyRow) -> Result<Repository> {
    Ok(Repository {
        id: col(row, "id")?,
        name: col(row, "name")?,
        tenant_id: col(row, "tenant_id")?,
        tenant: col(row, "tenant")?,
        lock_days: col(row, "lock_days")?,
        compliance: col::<i64>(row, "compliance")? != 0,
        stored_bytes: col(row, "stored_bytes")?,
        object_count: col(row, "object_count")?,
        logical_bytes: col(row, "logical_bytes")?,
        created_at: col(row, "created_at")?,
        format: {
            let f: String = col(row, "format")?;
            RepoFormat::parse(&f).ok_or_else(|| DbError::Invalid(format!("unknown repository format {f:?}")))?
        },
        reseller_id: col(row, "reseller_id")?,
    })
}

pub(crate) const USER_SELECT: &str = "SELECT u.id, u.name, t.name AS tenant, u.role, u.disabled, u.created_at, \
     u.locked_until, CAST(CASE WHEN u.totp_secret <> '' THEN 1 ELSE 0 END AS BIGINT) AS two_factor, \
     rs.name AS reseller FROM users u LEFT JOIN tenants t ON t.id = u.tenant_id \
     LEFT JOIN resellers rs ON rs.id = u.reseller_id";

pub(crate) fn user_from(row: &AnyRow) -> Result<User> {
    let role: String = col(row, "role")?;
    Ok(User {
        id: col(row, "id")?,
        name: col(row, "name")?,
        tenant: col(row, "tenant")?,
        role: Role::parse(&role).ok_or_else(|| DbError::Invalid(format!("unknown role {role:?} in the database")))?,
        disabled: col::<i64>(row, "disabled")? != 0,
        created_at: col(row, "created_at")?,
        locked_until: col(row, "locked_until")?,
        two_factor: col::<i64>(row, "two_factor")? != 0,
        reseller: col(row, "reseller")?,
    })
}

const DEVICE_SELECT: &str = "SELECT d.id, d.name, t.name AS tenant, r.name AS repo, d.created_at, d.last_seen_at, \
     d.revoked_at FROM devices d JOIN tenants t ON t.id = d.tenant_id JOIN repositories r ON r.id = d.repo_id";

fn device_from(row: &AnyRow) -> Result<Device> {
    Ok(Device {
        id: col(row, "id")?,
        name: col(row, "name")?,
        tenant: col(row, "tenant")?,
        repo: col(row, "repo")?,
        created_at: col(row, "created_at")?,
        last_seen_at: col(row, "last_seen_at")?,
        revoked_at: col(row, "revoked_at")?,
    })
}

impl Db {
    // ---- plans ----

    /// Creates one of the provider's plans.
    pub async fn create_plan(&self, plan: &Plan) -> Result<()> {
        self.create_plan_for(None, plan).await
    }

    /// Creates a plan sold by `owner` (`None`: the provider). A reseller's plan resells one of
    /// the provider's plans, within its limits ([`resold_plan`]).
    pub async fn create_plan_for(&self, owner: Option<i64>, plan: &Plan) -> Result<()> {
        check_name("plan", &plan.name)?;
        check_plan_figures(plan)?;
        let mut tx = self.begin_write().await?;
        let (plan, resells_id) = resold_plan(&mut tx, owner, plan).await?;
        dyn_query(format!(
            "INSERT INTO plans ({PLAN_COLUMNS}, created_at, reseller_id, resells_plan_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        ))
        .bind(&plan.name)
        .bind(plan.hard_quota_bytes)
        .bind(plan.soft_quota_bytes)
        .bind(plan.lock_days)
        .bind(plan.compliance as i64)
        .bind(plan.yearly_price_cents)
        .bind(plan.overage_cents_per_gb)
        .bind(now())
        .bind(owner)
        .bind(resells_id)
        .execute(&mut *tx)
        .await
        .map_err(|e| conflict(e, format!("a plan named {} already exists", plan.name)))?;
        tx.commit().await?;
        Ok(())
    }

    /// Changes one of the provider's plans; see [`Db::update_plan_for`].
    pub async fn update_plan(&self, name: &str, plan: &Plan) -> Result<u64> {
        self.update_plan_for(None, name, plan).await
    }

    /// Changes plan `name` of `owner` (its name stays; another owner's plan is "no plan named").
    /// Tenants on the plan whose quotas are still the plan's old ones take the new quotas; a
    /// tenant given its own quotas keeps them. Prices apply from the next bill; the retention
    /// lock to repositories created from now on. Returns how many tenants took the new quotas.
    pub async fn update_plan_for(&self, owner: Option<i64>, name: &str, plan: &Plan) -> Result<u64> {
        check_plan_figures(plan)?;
        let mut tx = self.begin_write().await?;
        // The old quotas are read in the transaction that replaces them.
        let old = dyn_query(format!(
            "SELECT id, hard_quota_bytes, soft_quota_bytes FROM plans WHERE name = $1 AND {}",
            same_reseller("reseller_id", "$2")
        ))
        .bind(name)
        .bind(owner)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| DbError::NotFound(format!("no plan named {name}")))?;
        let (id, old_hard, old_soft): (i64, i64, i64) =
            (col(&old, "id")?, col(&old, "hard_quota_bytes")?, col(&old, "soft_quota_bytes")?);
        let (plan, resells_id) = resold_plan(&mut tx, owner, plan).await?;
        sqlx::query(
            "UPDATE plans SET hard_quota_bytes = $1, soft_quota_bytes = $2, lock_days = $3, compliance = $4, \
             yearly_price_cents = $5, overage_cents_per_gb = $6, resells_plan_id = $7 WHERE id = $8",
        )
        .bind(plan.hard_quota_bytes)
        .bind(plan.soft_quota_bytes)
        .bind(plan.lock_days)
        .bind(plan.compliance as i64)
        .bind(plan.yearly_price_cents)
        .bind(plan.overage_cents_per_gb)
        .bind(resells_id)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let moved = sqlx::query(
            "UPDATE tenants SET hard_quota_bytes = $1, soft_quota_bytes = $2 \
             WHERE plan_id = $3 AND hard_quota_bytes = $4 AND soft_quota_bytes = $5",
        )
        .bind(plan.hard_quota_bytes)
        .bind(plan.soft_quota_bytes)
        .bind(id)
        .bind(old_hard)
        .bind(old_soft)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        match owner {
            Some(reseller) => super::resellers::check_capacity(&mut tx, reseller).await?,
            None => super::resellers::follow_base_plan(&mut tx, id, &plan).await?,
        }
        tx.commit().await?;
        Ok(moved)
    }

    /// Deletes one of the provider's plans; see [`Db::delete_plan_for`].
    pub async fn delete_plan(&self, name: &str) -> Result<()> {
        self.delete_plan_for(None, name).await
    }

    /// Deletes plan `name` of `owner`, which no tenant may be on and no reseller's plan resell.
    pub async fn delete_plan_for(&self, owner: Option<i64>, name: &str) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let id: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT id FROM plans WHERE name = $1 AND {}",
            same_reseller("reseller_id", "$2")
        )))
        .bind(name)
        .bind(owner)
        .fetch_optional(&mut *tx)
        .await?;
        let id = id.ok_or_else(|| DbError::NotFound(format!("no plan named {name}")))?;
        let users: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM tenants WHERE plan_id = $1").bind(id).fetch_one(&mut *tx).await?;
        if users > 0 {
            return Err(DbError::Conflict(format!(
                "{users} tenant{} still on plan {name}: move {} to another plan first",
                if users == 1 { " is" } else { "s are" },
                if users == 1 { "it" } else { "them" }
            )));
        }
        let resold: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM plans WHERE resells_plan_id = $1")
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        if resold > 0 {
            return Err(DbError::Conflict(format!(
                "{resold} reseller plan{} resell{} plan {name}: the resellers must retire {} first",
                if resold == 1 { "" } else { "s" },
                if resold == 1 { "s" } else { "" },
                if resold == 1 { "it" } else { "them" }
            )));
        }
        sqlx::query("DELETE FROM plans WHERE id = $1").bind(id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every plan, by name.
    pub async fn plans(&self) -> Result<Vec<Plan>> {
        let rows = dyn_query(format!("{PLAN_SELECT} ORDER BY p.name")).fetch_all(self.pool()).await?;
        rows.iter().map(plan_from).collect()
    }

    /// The plans a reseller sees: the provider's (its wholesale price list) and its own.
    pub async fn plans_of_reseller(&self, reseller: i64) -> Result<Vec<Plan>> {
        let rows =
            dyn_query(format!("{PLAN_SELECT} WHERE p.reseller_id IS NULL OR p.reseller_id = $1 ORDER BY p.name"))
                .bind(reseller)
                .fetch_all(self.pool())
                .await?;
        rows.iter().map(plan_from).collect()
    }

    /// The plans `owner` sells its tenants (`None`: the provider's own plans).
    pub async fn plans_sold_by(&self, owner: Option<i64>) -> Result<Vec<Plan>> {
        let rows = dyn_query(format!("{PLAN_SELECT} WHERE {} ORDER BY p.name", same_reseller("p.reseller_id", "$1")))
            .bind(owner)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(plan_from).collect()
    }

    /// One plan.
    pub async fn plan(&self, name: &str) -> Result<Plan> {
        let row = dyn_query(format!("{PLAN_SELECT} WHERE p.name = $1"))
            .bind(name)
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| DbError::NotFound(format!("no plan named {name}")))?;
        plan_from(&row)
    }

    // ---- tenants ----

    /// Creates a tenant, with the quotas of `plan` if given.
    pub async fn create_tenant(&self, name: &str, display_name: &str, plan: Option<&str>) -> Result<Tenant> {
        self.create_tenant_for(None, name, display_name, plan).await
    }

    /// Creates a customer of `owner` (`None`: the provider's own), on one of `owner`'s plans,
    /// with that plan's quotas. A reseller's tenant needs a plan (it is what the provider bills
    /// the reseller for) and must fit the reseller's capacity.
    pub async fn create_tenant_for(
        &self,
        owner: Option<i64>,
        name: &str,
        display_name: &str,
        plan: Option<&str>,
    ) -> Result<Tenant> {
        check_name("tenant", name)?;
        let display = limits::display_name(display_name).map_err(DbError::Invalid)?;
        let display = if display.is_empty() { name } else { display.as_str() };
        let mut tx = self.begin_write().await?;
        let (plan_id, hard, soft) = match plan {
            Some(p) => owned_plan(&mut tx, owner, p).await?,
            None if owner.is_some() => {
                return Err(DbError::Invalid("a reseller's tenant needs a plan: name one of your plans".into()))
            }
            None => (None, 0i64, 0i64),
        };
        sqlx::query(
            "INSERT INTO tenants (name, display_name, plan_id, hard_quota_bytes, soft_quota_bytes, created_at, \
             reseller_id) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(name)
        .bind(display)
        .bind(plan_id)
        .bind(hard)
        .bind(soft)
        .bind(now())
        .bind(owner)
        .execute(&mut *tx)
        .await
        .map_err(|e| conflict(e, format!("a tenant named {name} already exists")))?;
        if let Some(reseller) = owner {
            super::resellers::check_capacity(&mut tx, reseller).await?;
        }
        tx.commit().await?;
        self.tenant(name).await
    }

    /// Every tenant, by name.
    pub async fn tenants(&self) -> Result<Vec<Tenant>> {
        let rows = dyn_query(format!("{TENANT_SELECT} ORDER BY t.name")).fetch_all(self.pool()).await?;
        rows.iter().map(tenant_from).collect()
    }

    /// The tenants of `of` (the provider's own customers, one reseller's, …), by name: only
    /// those are read (billing reads one seller's customers among 10,000).
    pub async fn tenants_in(&self, of: super::usage::MeteringOf) -> Result<Vec<Tenant>> {
        let (cond, value) = of.condition("t.id", 1);
        let mut q = dyn_query(format!("{TENANT_SELECT} WHERE {cond} ORDER BY t.name"));
        if let Some(v) = value {
            q = q.bind(v);
        }
        q.fetch_all(self.pool()).await?.iter().map(tenant_from).collect()
    }

    /// A reseller's tenants, by name.
    pub async fn tenants_of_reseller(&self, reseller: i64) -> Result<Vec<Tenant>> {
        let rows = dyn_query(format!("{TENANT_SELECT} WHERE t.reseller_id = $1 ORDER BY t.name"))
            .bind(reseller)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(tenant_from).collect()
    }

    /// One page of tenants matching `list`, and how many match in all.
    ///
    /// Search, the status filter, sorting and paging happen in the database, so a provider with
    /// ten thousand tenants is served fifty rows, not ten thousand.
    pub async fn tenant_list(&self, list: &TenantList) -> Result<(Vec<Tenant>, i64)> {
        let mut cond = String::from(" WHERE 1 = 1");
        if let Some(r) = list.reseller {
            // An id, not text from the request: formatting it into the SQL is safe.
            cond += &format!(" AND t.reseller_id = {r}");
        }
        let pattern = list.search.as_deref().map(super::audit::like_pattern);
        if pattern.is_some() {
            cond += " AND (LOWER(t.name) LIKE $1 ESCAPE '\\' OR LOWER(t.display_name) LIKE $1 ESCAPE '\\')";
        }
        cond += match list.status {
            TenantStatus::Any => "",
            TenantStatus::Active => " AND t.suspended = 0",
            TenantStatus::Suspended => " AND t.suspended <> 0",
            TenantStatus::NeedsAttention => {
                " AND (t.suspended <> 0 \
                 OR (t.hard_quota_bytes > 0 AND t.stored_bytes >= t.hard_quota_bytes - t.hard_quota_bytes / 10) \
                 OR (t.soft_quota_bytes > 0 AND t.stored_bytes > t.soft_quota_bytes))"
            }
        };
        let count_sql = format!("SELECT COUNT(*) FROM tenants t{cond}");
        let mut count = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(count_sql));
        if let Some(p) = &pattern {
            count = count.bind(p.clone());
        }
        let total = count.fetch_one(self.pool()).await?;
        let column = match list.sort {
            TenantSort::Name => "t.name",
            TenantSort::DisplayName => "LOWER(t.display_name)",
            TenantSort::Plan => "p.name",
            TenantSort::Stored => "t.stored_bytes",
            TenantSort::Quota => "t.hard_quota_bytes",
            TenantSort::Created => "t.created_at",
        };
        let dir = if list.descending { "DESC" } else { "ASC" };
        let (l, o) = if pattern.is_some() { ("$2", "$3") } else { ("$1", "$2") };
        let sql = format!("{TENANT_SELECT}{cond} ORDER BY {column} {dir}, t.name {dir} LIMIT {l} OFFSET {o}");
        let mut q = dyn_query(sql);
        if let Some(p) = pattern {
            q = q.bind(p);
        }
        let rows = q.bind(list.limit.clamp(1, 1000)).bind(list.offset.max(0)).fetch_all(self.pool()).await?;
        Ok((rows.iter().map(tenant_from).collect::<Result<_>>()?, total))
    }

    /// Bytes stored and bytes protected (before deduplication and compression) over every
    /// repository, and the number of tenants: the dashboard's tiles, summed by the database.
    /// With `reseller`, over that reseller's tenants only.
    pub async fn storage_totals(&self, reseller: Option<i64>) -> Result<(i64, i64, i64)> {
        // An id, not text from the request: formatting it into the SQL is safe.
        let (repos, tenants) = match reseller {
            Some(r) => (
                format!(" JOIN tenants t ON t.id = r.tenant_id WHERE t.reseller_id = {r}"),
                format!(" WHERE reseller_id = {r}"),
            ),
            None => (String::new(), String::new()),
        };
        let row = dyn_query(format!(
            "SELECT CAST(SUM(r.stored_bytes) AS BIGINT) AS stored, CAST(SUM(r.logical_bytes) AS BIGINT) AS logical \
             FROM repositories r{repos}"
        ))
        .fetch_one(self.pool())
        .await?;
        let count: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM tenants{tenants}")))
            .fetch_one(self.pool())
            .await?;
        Ok((col::<Option<i64>>(&row, "stored")?.unwrap_or(0), col::<Option<i64>>(&row, "logical")?.unwrap_or(0), count))
    }

    /// One tenant by name.
    pub async fn tenant(&self, name: &str) -> Result<Tenant> {
        let row = dyn_query(format!("{TENANT_SELECT} WHERE t.name = $1"))
            .bind(name)
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| DbError::NotFound(format!("no tenant named {name}")))?;
        tenant_from(&row)
    }

    /// One tenant by id.
    pub async fn tenant_by_id(&self, id: i64) -> Result<Tenant> {
        let row = dyn_query(format!("{TENANT_SELECT} WHERE t.id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| DbError::NotFound(format!("no tenant with id {id}")))?;
        tenant_from(&row)
    }

    /// Applies `change` to tenant `name`.
    pub async fn update_tenant(&self, name: &str, change: &TenantChange) -> Result<Tenant> {
        let tenant = self.tenant(name).await?;
        let mut tx = self.begin_write().await?;
        if let Some(a) = &change.alert_email {
            sqlx::query("UPDATE tenants SET alert_email = $1 WHERE id = $2")
                .bind(a.trim())
                .bind(tenant.id)
                .execute(&mut *tx)
                .await?;
        }
        if let Some(d) = &change.display_name {
            let d = limits::display_name(d).map_err(DbError::Invalid)?;
            sqlx::query("UPDATE tenants SET display_name = $1 WHERE id = $2")
                .bind(if d.is_empty() { tenant.name.as_str() } else { d.as_str() })
                .bind(tenant.id)
                .execute(&mut *tx)
                .await?;
        }
        if let Some(p) = &change.plan {
            let (plan_id, hard, soft) = owned_plan(&mut tx, tenant.reseller_id, p).await?;
            sqlx::query("UPDATE tenants SET plan_id = $1, hard_quota_bytes = $2, soft_quota_bytes = $3 WHERE id = $4")
                .bind(plan_id)
                .bind(hard)
                .bind(soft)
                .bind(tenant.id)
                .execute(&mut *tx)
                .await?;
        }
        for (column, value) in
            [("hard_quota_bytes", change.hard_quota_bytes), ("soft_quota_bytes", change.soft_quota_bytes)]
        {
            if let Some(v) = value {
                limits::quota(column, v)?;
                dyn_query(format!("UPDATE tenants SET {column} = $1 WHERE id = $2"))
                    .bind(v)
                    .bind(tenant.id)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        let reason = change
            .suspended_reason
            .as_deref()
            .map(|r| limits::one_line("the suspension reason", r, limits::MAX_REASON))
            .transpose()
            .map_err(DbError::Invalid)?;
        match (change.suspended, reason) {
            (Some(true), reason) => {
                sqlx::query("UPDATE tenants SET suspended = 1, suspended_reason = $1 WHERE id = $2")
                    .bind(reason.unwrap_or_else(|| tenant.suspended_reason.clone()))
                    .bind(tenant.id)
                    .execute(&mut *tx)
                    .await?;
            }
            (Some(false), _) => {
                sqlx::query("UPDATE tenants SET suspended = 0, suspended_reason = '' WHERE id = $1")
                    .bind(tenant.id)
                    .execute(&mut *tx)
                    .await?;
            }
            (None, Some(reason)) if tenant.suspended => {
                sqlx::query("UPDATE tenants SET suspended_reason = $1 WHERE id = $2")
                    .bind(reason)
                    .bind(tenant.id)
                    .execute(&mut *tx)
                    .await?;
            }
            (None, Some(_)) => {
                return Err(DbError::Invalid(format!(
                    "tenant {name} is not suspended: a reason goes with suspending it"
                )))
            }
            (None, None) => {}
        }
        if let Some(reseller) = tenant.reseller_id {
            super::resellers::check_tenant_quota(&mut tx, tenant.id).await?;
            super::resellers::check_capacity(&mut tx, reseller).await?;
        }
        tx.commit().await?;
        self.tenant(name).await
    }

    /// Deletes a tenant that has no repositories left (their objects must go first, within their
    /// locks), with its users, devices and tokens.
    pub async fn delete_tenant(&self, name: &str) -> Result<()> {
        let tenant = self.tenant(name).await?;
        let mut tx = self.begin_write().await?;
        let repos: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM repositories WHERE tenant_id = $1")
            .bind(tenant.id)
            .fetch_one(&mut *tx)
            .await?;
        if repos > 0 {
            return Err(DbError::Conflict(format!(
                "tenant {name} still has {repos} repositories: delete them first (each only once its retention \
                 lock allows)"
            )));
        }
        for sql in [
            "DELETE FROM tokens WHERE user_id IN (SELECT id FROM users WHERE tenant_id = $1)",
            "DELETE FROM tokens WHERE device_id IN (SELECT id FROM devices WHERE tenant_id = $1)",
            "DELETE FROM agent_jobs WHERE device_id IN (SELECT id FROM devices WHERE tenant_id = $1)",
            "DELETE FROM enrolment_codes WHERE tenant_id = $1",
            "UPDATE tenants SET protection_plan_id = NULL WHERE id = $1",
            "DELETE FROM protection_plans WHERE tenant_id = $1",
            "DELETE FROM devices WHERE tenant_id = $1",
            "DELETE FROM users WHERE tenant_id = $1",
            "DELETE FROM reservations WHERE tenant_id = $1",
            "DELETE FROM tenants WHERE id = $1",
        ] {
            sqlx::query(sql).bind(tenant.id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    // ---- users ----

    /// Creates a user. `tenant` is `None` for provider staff (roles provider-admin, operator).
    pub async fn create_user(&self, name: &str, password: &str, role: Role, tenant: Option<&str>) -> Result<User> {
        if !valid_user_name(name) {
            return Err(DbError::Invalid(format!(
                "invalid user name {name:?}: use 1 to 128 characters of letters, digits and ._@+-"
            )));
        }
        check_password(password)?;
        let tenant_id = match (role, tenant) {
            (Role::Device, _) => return Err(DbError::Invalid("devices are not users: add a device instead".into())),
            (Role::ResellerAdmin, _) => {
                return Err(DbError::Invalid(
                    "reseller admins are added to their reseller (arca admin reseller)".into(),
                ))
            }
            (r, None) if r.is_provider() => None,
            (r, Some(_)) if r.is_provider() => {
                return Err(DbError::Invalid(format!("{} users belong to the provider, not a tenant", r.as_str())))
            }
            (_, None) => return Err(DbError::Invalid("tenant users need a tenant".into())),
            (_, Some(t)) => Some(self.tenant(t).await?.id),
        };
        let hash = hash_password(password)?;
        sqlx::query("INSERT INTO users (tenant_id, name, password_hash, role, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(tenant_id)
            .bind(name)
            .bind(hash)
            .bind(role.as_str())
            .bind(now())
            .execute(self.pool())
            .await
            .map_err(|e| conflict(e, format!("a user named {name} already exists")))?;
        self.user(name).await
    }

    /// One user by login name.
    pub async fn user(&self, name: &str) -> Result<User> {
        let row = dyn_query(format!("{USER_SELECT} WHERE u.name = $1"))
            .bind(name)
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| DbError::NotFound(format!("no user named {name}")))?;
        user_from(&row)
    }

    /// Users of one tenant, or provider staff (`None`), by name.
    pub async fn users(&self, tenant_id: Option<i64>) -> Result<Vec<User>> {
        let rows = match tenant_id {
            Some(t) => {
                dyn_query(format!("{USER_SELECT} WHERE u.tenant_id = $1 ORDER BY u.name"))
                    .bind(t)
                    .fetch_all(self.pool())
                    .await?
            }
            None => {
                dyn_query(format!("{USER_SELECT} WHERE u.tenant_id IS NULL AND u.reseller_id IS NULL ORDER BY u.name"))
                    .fetch_all(self.pool())
                    .await?
            }
        };
        rows.iter().map(user_from).collect()
    }

    /// Disables or re-enables a user's sign-in. Disabling also revokes every token of the user,
    /// so open sessions and `arca admin` logins end at once.
    pub async fn set_user_disabled(&self, user_id: i64, disabled: bool) -> Result<()> {
        let n = sqlx::query("UPDATE users SET disabled = $1 WHERE id = $2")
            .bind(i64::from(disabled))
            .bind(user_id)
            .execute(self.pool())
            .await?
            .rows_affected();
        if n == 0 {
            return Err(DbError::NotFound("no such user".into()));
        }
        if disabled {
            self.revoke_user_tokens(user_id).await?;
        }
        Ok(())
    }

    /// Lifts the lockout after failed sign-ins (the password stays).
    pub async fn unlock_user(&self, user_id: i64) -> Result<()> {
        let n = sqlx::query("UPDATE users SET failed_logins = 0, locked_until = 0 WHERE id = $1")
            .bind(user_id)
            .execute(self.pool())
            .await?
            .rows_affected();
        if n == 0 {
            return Err(DbError::NotFound("no such user".into()));
        }
        Ok(())
    }

    /// Sets a new password (Argon2id), clears a lockout and revokes the user's tokens: whoever
    /// knew the old password is signed out everywhere.
    pub async fn reset_password(&self, user_id: i64, password: &str) -> Result<()> {
        check_password(password)?;
        let hash = hash_password(password)?;
        let n = sqlx::query("UPDATE users SET password_hash = $1, failed_logins = 0, locked_until = 0 WHERE id = $2")
            .bind(hash)
            .bind(user_id)
            .execute(self.pool())
            .await?
            .rows_affected();
        if n == 0 {
            return Err(DbError::NotFound("no such user".into()));
        }
        self.revoke_user_tokens(user_id).await?;
        Ok(())
    }

    /// Whether any provider admin exists (first start creates one).
    pub async fn has_provider_admin(&self) -> Result<bool> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE role = $1")
            .bind(Role::ProviderAdmin.as_str())
            .fetch_one(self.pool())
            .await?;
        Ok(n > 0)
    }

    /// Checks a user's password. Repeated failures lock the account for a while
    /// ([`LOCKOUT_AFTER`] failures: [`LOCKOUT_SECS`]); a disabled or locked user fails even with
    /// the right password. The outcome tells the caller which, for the audit log.
    pub async fn check_login(&self, name: &str, password: &str) -> Result<LoginOutcome> {
        let row = sqlx::query("SELECT id, password_hash, disabled, locked_until FROM users WHERE name = $1")
            .bind(name)
            .fetch_optional(self.pool())
            .await?;
        let pool = crate::passwords::PasswordPool::global();
        let busy = |e: crate::passwords::Busy| DbError::Busy(e.to_string());
        let Some(row) = row else {
            // Spend the same time as a real check, so timing does not reveal which names exist.
            let _ = pool.verify(password, dummy_hash()).await.map_err(busy)?;
            return Ok(LoginOutcome::BadCredentials);
        };
        let id: i64 = col(&row, "id")?;
        let hash: String = col(&row, "password_hash")?;
        let ok = pool.verify(password, &hash).await.map_err(busy)?;
        if col::<i64>(&row, "disabled")? != 0 {
            return Ok(LoginOutcome::Disabled);
        }
        let locked_until: i64 = col(&row, "locked_until")?;
        if locked_until > now() {
            return Ok(LoginOutcome::Locked { until: locked_until });
        }
        if ok {
            // With a second factor, the count is cleared only once the code is right too;
            // otherwise knowing the password would allow unlimited code guesses.
            sqlx::query("UPDATE users SET failed_logins = 0 WHERE id = $1 AND totp_secret = ''")
                .bind(id)
                .execute(self.pool())
                .await?;
            return Ok(LoginOutcome::Ok(self.user(name).await?));
        }
        let failed: i64 = sqlx::query_scalar(
            "UPDATE users SET failed_logins = failed_logins + 1 WHERE id = $1 RETURNING failed_logins",
        )
        .bind(id)
        .fetch_one(self.pool())
        .await?;
        if failed >= LOCKOUT_AFTER {
            let until = now() + LOCKOUT_SECS;
            sqlx::query("UPDATE users SET failed_logins = 0, locked_until = $1 WHERE id = $2")
                .bind(until)
                .bind(id)
                .execute(self.pool())
                .await?;
            return Ok(LoginOutcome::Locked { until });
        }
        Ok(LoginOutcome::BadCredentials)
    }

    // ---- repositories ----

    /// Creates a repository in arca's format for `tenant`, with the lock of the tenant's plan (or
    /// `lock_days`).
    pub async fn create_repository(&self, tenant: &str, name: &str, lock_days: Option<i64>) -> Result<Repository> {
        self.create_repository_as(tenant, name, lock_days, RepoFormat::Arca).await
    }

    /// Creates a repository of `format` for `tenant`, with the lock of the tenant's plan (or
    /// `lock_days`).
    pub async fn create_repository_as(
        &self,
        tenant: &str,
        name: &str,
        lock_days: Option<i64>,
        format: RepoFormat,
    ) -> Result<Repository> {
        check_name("repository", name)?;
        let t = self.tenant(tenant).await?;
        let plan = match &t.plan {
            Some(p) => Some(self.plan(p).await?),
            None => None,
        };
        let plan_lock = plan.as_ref().map_or(0, |p| p.lock_days);
        let compliance = plan.as_ref().is_some_and(|p| p.compliance);
        let lock = limits::days("lock_days", lock_days.unwrap_or(plan_lock))?;
        if lock < plan_lock {
            return Err(DbError::Invalid(format!(
                "the plan {} requires a retention lock of at least {plan_lock} days",
                t.plan.as_deref().unwrap_or("")
            )));
        }
        sqlx::query(
            "INSERT INTO repositories (tenant_id, name, lock_days, compliance, created_at, format) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(t.id)
        .bind(name)
        .bind(lock)
        .bind(compliance as i64)
        .bind(now())
        .bind(format.as_str())
        .execute(self.pool())
        .await
        .map_err(|e| conflict(e, format!("a repository named {name} already exists on this server")))?;
        self.repository(name).await
    }

    /// One repository by name.
    pub async fn repository(&self, name: &str) -> Result<Repository> {
        self.find_repository(name).await?.ok_or_else(|| DbError::NotFound(format!("no repository named {name}")))
    }

    /// One repository by name, if it exists.
    pub async fn find_repository(&self, name: &str) -> Result<Option<Repository>> {
        let row = dyn_query(format!("{REPO_SELECT} WHERE r.name = $1")).bind(name).fetch_optional(self.pool()).await?;
        row.as_ref().map(repo_from).transpose()
    }

    /// Repositories of one tenant, or all (`None`), by name.
    pub async fn repositories(&self, tenant_id: Option<i64>) -> Result<Vec<Repository>> {
        let rows = match tenant_id {
            Some(t) => {
                dyn_query(format!("{REPO_SELECT} WHERE r.tenant_id = $1 ORDER BY r.name"))
                    .bind(t)
                    .fetch_all(self.pool())
                    .await?
            }
            None => dyn_query(format!("{REPO_SELECT} ORDER BY r.name")).fetch_all(self.pool()).await?,
        };
        rows.iter().map(repo_from).collect()
    }

    /// Changes a repository's retention lock. In compliance mode it can only grow; compliance
    /// mode, once on, stays on.
    pub async fn set_repository_lock(
        &self,
        name: &str,
        lock_days: i64,
        compliance: Option<bool>,
    ) -> Result<Repository> {
        let repo = self.repository(name).await?;
        limits::days("lock_days", lock_days)?;
        if repo.compliance && lock_days < repo.lock_days {
            return Err(DbError::Invalid(format!(
                "repository {name} is in compliance mode: its retention lock of {} days can be extended but never \
                 shortened",
                repo.lock_days
            )));
        }
        if repo.compliance && compliance == Some(false) {
            return Err(DbError::Invalid(format!(
                "repository {name} is in compliance mode, which cannot be turned off"
            )));
        }
        let compliance = compliance.unwrap_or(repo.compliance);
        sqlx::query("UPDATE repositories SET lock_days = $1, compliance = $2 WHERE id = $3")
            .bind(lock_days)
            .bind(compliance as i64)
            .bind(repo.id)
            .execute(self.pool())
            .await?;
        self.repository(name).await
    }

    /// Deletes an empty repository's record and revokes its devices.
    pub async fn delete_repository(&self, name: &str) -> Result<()> {
        let repo = self.repository(name).await?;
        let mut tx = self.begin_write().await?;
        let objects: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM objects WHERE repo_id = $1")
            .bind(repo.id)
            .fetch_one(&mut *tx)
            .await?;
        if objects > 0 {
            return Err(DbError::Conflict(format!(
                "repository {name} still holds {objects} objects: delete them first (forget and prune, or wait for \
                 their retention lock to pass)"
            )));
        }
        for sql in [
            "DELETE FROM tokens WHERE device_id IN (SELECT id FROM devices WHERE repo_id = $1)",
            "DELETE FROM agent_jobs WHERE device_id IN (SELECT id FROM devices WHERE repo_id = $1)",
            "DELETE FROM enrolment_codes WHERE repo_id = $1",
            "DELETE FROM devices WHERE repo_id = $1",
            "DELETE FROM usage_daily WHERE repo_id = $1",
            "DELETE FROM snapshot_packs WHERE repo_id = $1",
            "DELETE FROM index_packs WHERE repo_id = $1",
            "DELETE FROM leases WHERE repo_id = $1",
            "DELETE FROM repositories WHERE id = $1",
        ] {
            sqlx::query(sql).bind(repo.id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    // ---- devices and tokens ----

    /// Adds a device with a token scoped to `repo`; returns the device and its token (shown once,
    /// stored only hashed).
    pub async fn create_device(&self, tenant: &str, name: &str, repo: &str) -> Result<(Device, String)> {
        check_name("device", name)?;
        let t = self.tenant(tenant).await?;
        let r = self.repository(repo).await?;
        if r.tenant_id != t.id {
            return Err(DbError::NotFound(format!("tenant {tenant} has no repository named {repo}")));
        }
        let taken: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM devices WHERE tenant_id = $1 AND name = $2 AND revoked_at = 0")
                .bind(t.id)
                .bind(name)
                .fetch_one(self.pool())
                .await?;
        if taken > 0 {
            return Err(DbError::Conflict(format!("tenant {tenant} already has an active device named {name}")));
        }
        let mut tx = self.begin_write().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO devices (tenant_id, repo_id, name, created_at) VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(t.id)
        .bind(r.id)
        .bind(name)
        .bind(now())
        .fetch_one(&mut *tx)
        .await?;
        let token = new_token();
        sqlx::query("INSERT INTO tokens (token_hash, device_id, label, created_at) VALUES ($1, $2, $3, $4)")
            .bind(hash_token(&token))
            .bind(id)
            .bind(format!("device {name}"))
            .bind(now())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok((self.device(id).await?, token))
    }

    async fn device(&self, id: i64) -> Result<Device> {
        let row = dyn_query(format!("{DEVICE_SELECT} WHERE d.id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| DbError::NotFound(format!("no device with id {id}")))?;
        device_from(&row)
    }

    /// Devices of one tenant, or all (`None`).
    pub async fn devices(&self, tenant_id: Option<i64>) -> Result<Vec<Device>> {
        let rows = match tenant_id {
            Some(t) => {
                dyn_query(format!("{DEVICE_SELECT} WHERE d.tenant_id = $1 ORDER BY d.name, d.id"))
                    .bind(t)
                    .fetch_all(self.pool())
                    .await?
            }
            None => dyn_query(format!("{DEVICE_SELECT} ORDER BY t.name, d.name, d.id")).fetch_all(self.pool()).await?,
        };
        rows.iter().map(device_from).collect()
    }

    /// Revokes tenant `tenant`'s active device `name` and its tokens.
    pub async fn revoke_device(&self, tenant: &str, name: &str) -> Result<Device> {
        let t = self.tenant(tenant).await?;
        let id: Option<i64> =
            sqlx::query_scalar("SELECT id FROM devices WHERE tenant_id = $1 AND name = $2 AND revoked_at = 0")
                .bind(t.id)
                .bind(name)
                .fetch_optional(self.pool())
                .await?;
        let id = id.ok_or_else(|| DbError::NotFound(format!("tenant {tenant} has no active device named {name}")))?;
        let at = now();
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE devices SET revoked_at = $1 WHERE id = $2").bind(at).bind(id).execute(&mut *tx).await?;
        sqlx::query("UPDATE tokens SET revoked_at = $1 WHERE device_id = $2 AND revoked_at = 0")
            .bind(at)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.device(id).await
    }

    /// Issues an API token for a user (after [`Db::check_login`]); `ttl_days` 0 means no expiry.
    pub async fn create_user_token(&self, user_id: i64, label: &str, ttl_days: i64) -> Result<(String, i64)> {
        let token = new_token();
        let expires = if ttl_days > 0 { limits::lock_end(now(), ttl_days) } else { 0 };
        sqlx::query(
            "INSERT INTO tokens (token_hash, user_id, label, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(hash_token(&token))
        .bind(user_id)
        .bind(label)
        .bind(now())
        .bind(expires)
        .execute(self.pool())
        .await?;
        Ok((token, expires))
    }

    /// A user's login name by id.
    pub async fn user_name(&self, user_id: i64) -> Result<String> {
        Ok(sqlx::query_scalar("SELECT name FROM users WHERE id = $1").bind(user_id).fetch_one(self.pool()).await?)
    }

    /// Revokes every token of a user (sign-out everywhere); returns how many.
    pub async fn revoke_user_tokens(&self, user_id: i64) -> Result<u64> {
        Ok(sqlx::query("UPDATE tokens SET revoked_at = $1 WHERE user_id = $2 AND revoked_at = 0")
            .bind(now())
            .bind(user_id)
            .execute(self.pool())
            .await?
            .rows_affected())
    }

    /// Revokes one token (sign-out) by its id.
    pub async fn revoke_token(&self, token_id: i64) -> Result<()> {
        sqlx::query("UPDATE tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at = 0")
            .bind(now())
            .bind(token_id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// The principal a bearer token authenticates, or `None` if the token is unknown, revoked,
    /// expired, or belongs to a disabled user or revoked device.
    pub async fn authenticate(&self, token: &str) -> Result<Option<Principal>> {
        let row = sqlx::query(
            "SELECT k.id AS token_id, k.expires_at, \
                    u.id AS user_id, u.name AS user_name, u.role, u.tenant_id AS user_tenant, u.disabled, \
                    u.reseller_id, \
                    d.id AS device_id, d.name AS device_name, d.repo_id, d.tenant_id AS device_tenant, d.revoked_at, \
                    d.last_seen_at, \
                    t.name AS tenant_name, t.suspended \
             FROM tokens k \
             LEFT JOIN users u ON u.id = k.user_id \
             LEFT JOIN devices d ON d.id = k.device_id \
             LEFT JOIN tenants t ON t.id = COALESCE(u.tenant_id, d.tenant_id) \
             WHERE k.token_hash = $1 AND k.revoked_at = 0",
        )
        .bind(hash_token(token))
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else { return Ok(None) };
        let expires: i64 = col(&row, "expires_at")?;
        if expires != 0 && expires <= now() {
            return Ok(None);
        }
        let token_id: i64 = col(&row, "token_id")?;
        let suspended = col::<Option<i64>>(&row, "suspended")?.unwrap_or(0) != 0;
        let tenant_name: Option<String> = col(&row, "tenant_name")?;
        if let Some(device_id) = col::<Option<i64>>(&row, "device_id")? {
            if col::<Option<i64>>(&row, "revoked_at")?.unwrap_or(0) != 0 {
                return Ok(None);
            }
            let name: String = col(&row, "device_name")?;
            // Recorded at most once a minute per device, and the write is only issued when due:
            // even an UPDATE that changes nothing takes SQLite's write lock and would queue every
            // read behind the uploads.
            if col::<Option<i64>>(&row, "last_seen_at")?.unwrap_or(0) < now() - 60 {
                sqlx::query("UPDATE devices SET last_seen_at = $1 WHERE id = $2 AND last_seen_at < $3")
                    .bind(now())
                    .bind(device_id)
                    .bind(now() - 60)
                    .execute(self.pool())
                    .await?;
            }
            return Ok(Some(Principal {
                token_id,
                role: Role::Device,
                tenant_id: col(&row, "device_tenant")?,
                user_id: None,
                device_id: Some(device_id),
                repo_id: col(&row, "repo_id")?,
                suspended,
                actor: format!("device:{name}@{}", tenant_name.unwrap_or_default()),
                reseller_id: None,
            }));
        }
        if let Some(user_id) = col::<Option<i64>>(&row, "user_id")? {
            if col::<Option<i64>>(&row, "disabled")?.unwrap_or(0) != 0 {
                return Ok(None);
            }
            let role: String = col(&row, "role")?;
            let role = Role::parse(&role).ok_or_else(|| DbError::Invalid(format!("unknown role {role:?}")))?;
            let name: String = col(&row, "user_name")?;
            return Ok(Some(Principal {
                token_id,
                role,
                tenant_id: col(&row, "user_tenant")?,
                user_id: Some(user_id),
                device_id: None,
                repo_id: None,
                suspended,
                actor: format!("user:{name}"),
                reseller_id: col(&row, "reseller_id")?,
            }));
        }
        Ok(None)
    }
}

/// Failed passwords in a row, from every client together, that lock an account. The limit that
/// stops one guesser is per client and much lower ([`crate::signin`]); this one only stops a
/// guess spread over many addresses, so that nobody can lock a user out from one machine.
pub const LOCKOUT_AFTER: i64 = 50;
/// Wrong one-time codes in a row that lock an account (asked only once the password was right,
/// so only someone who knows it can cause this lock).
pub const CODE_LOCKOUT_AFTER: i64 = 5;
/// How long a locked account stays locked.
pub const LOCKOUT_SECS: i64 = 15 * 60;

/// A hash of a random password, checked against when the user does not exist (made once).
fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| hash_password(&new_token()).unwrap_or_default())
}

/// The result of a password check.
#[derive(Debug)]
pub enum LoginOutcome {
    /// Signed in.
    Ok(User),
    /// Unknown user or wrong password (the caller must not say which).
    BadCredentials,
    /// Too many failures: locked until this time.
    Locked {
        /// Unix seconds.
        until: i64,
    },
    /// The account is disabled.
    Disabled,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::testing::databases;

    fn plan(name: &str, lock_days: i64, compliance: bool) -> Plan {
        Plan {
            name: name.into(),
            hard_quota_bytes: 1000,
            soft_quota_bytes: 800,
            lock_days,
            compliance,
            yearly_price_cents: 12_000,
            overage_cents_per_gb: 5,
            resells: None,
            reseller: None,
        }
    }

    #[tokio::test]
    async fn tenants_repos_devices_and_tokens() {
        for (db, _guard) in databases().await {
            db.create_plan(&plan("basic", 7, false)).await.unwrap();
            assert!(matches!(db.create_plan(&plan("basic", 7, false)).await, Err(DbError::Conflict(_))));
            let t = db.create_tenant("acme", "ACME Ltd", Some("basic")).await.unwrap();
            assert_eq!((t.hard_quota_bytes, t.soft_quota_bytes, t.plan.as_deref()), (1000, 800, Some("basic")));
            assert!(matches!(db.create_tenant("acme", "", None).await, Err(DbError::Conflict(_))));
            assert!(matches!(db.create_tenant("../x", "", None).await, Err(DbError::Invalid(_))));
            let r = db.create_repository("acme", "acme-laptop", None).await.unwrap();
            assert_eq!((r.lock_days, r.compliance, r.tenant.as_str()), (7, false, "acme"));
            assert!(matches!(db.create_repository("acme", "acme-x", Some(3)).await, Err(DbError::Invalid(_))));
            let (dev, token) = db.create_device("acme", "laptop", "acme-laptop").await.unwrap();
            assert!(token.starts_with("arca_") && token.len() == 69);
            let p = db.authenticate(&token).await.unwrap().unwrap();
            assert_eq!((p.role, p.repo_id, p.tenant_id), (Role::Device, Some(r.id), Some(t.id)));
            assert_eq!(p.actor, "device:laptop@acme");
            assert!(db.authenticate("arca_nope").await.unwrap().is_none());
            assert!(matches!(db.create_device("acme", "laptop", "acme-laptop").await, Err(DbError::Conflict(_))));
            let revoked = db.revoke_device("acme", "laptop").await.unwrap();
            assert!(revoked.revoked_at > 0 && revoked.id == dev.id);
            assert!(db.authenticate(&token).await.unwrap().is_none(), "a revoked device's token must stop working");
            // The name is free again once revoked.
            db.create_device("acme", "laptop", "acme-laptop").await.unwrap();
            // Another tenant cannot attach a device to acme's repository.
            db.create_tenant("other", "", None).await.unwrap();
            assert!(matches!(db.create_device("other", "x", "acme-laptop").await, Err(DbError::NotFound(_))));
            assert!(matches!(db.delete_tenant("acme").await, Err(DbError::Conflict(_))));
            db.delete_repository("acme-laptop").await.unwrap();
            db.delete_tenant("acme").await.unwrap();
            assert_eq!(db.tenants().await.unwrap().len(), 1);
        }
    }

    #[tokio::test]
    async fn compliance_locks_only_grow() {
        for (db, _guard) in databases().await {
            db.create_plan(&plan("gold", 30, true)).await.unwrap();
            db.create_tenant("acme", "", Some("gold")).await.unwrap();
            db.create_repository("acme", "r1", Some(40)).await.unwrap();
            assert!(matches!(db.set_repository_lock("r1", 35, None).await, Err(DbError::Invalid(_))));
            assert!(matches!(db.set_repository_lock("r1", 50, Some(false)).await, Err(DbError::Invalid(_))));
            assert_eq!(db.set_repository_lock("r1", 50, None).await.unwrap().lock_days, 50);
            db.create_plan(&plan("soft", 10, false)).await.unwrap();
            db.create_tenant("b", "", Some("soft")).await.unwrap();
            db.create_repository("b", "r2", None).await.unwrap();
            assert_eq!(db.set_repository_lock("r2", 2, None).await.unwrap().lock_days, 2);
        }
    }

    #[tokio::test]
    async fn logins_lock_out_after_repeated_failures() {
        for (db, _guard) in databases().await {
            db.create_tenant("acme", "", None).await.unwrap();
            assert!(matches!(
                db.create_user("bob", "short", Role::TenantAdmin, Some("acme")).await,
                Err(DbError::Invalid(_))
            ));
            assert!(matches!(
                db.create_user("root", "long enough pw", Role::ProviderAdmin, Some("acme")).await,
                Err(DbError::Invalid(_))
            ));
            let u = db.create_user("bob", "correct horse", Role::TenantAdmin, Some("acme")).await.unwrap();
            assert_eq!(u.tenant.as_deref(), Some("acme"));
            assert!(matches!(db.check_login("bob", "correct horse").await.unwrap(), LoginOutcome::Ok(_)));
            assert!(matches!(db.check_login("nobody", "x").await.unwrap(), LoginOutcome::BadCredentials));
            for _ in 0..LOCKOUT_AFTER - 1 {
                assert!(matches!(db.check_login("bob", "wrong").await.unwrap(), LoginOutcome::BadCredentials));
            }
            assert!(matches!(db.check_login("bob", "wrong").await.unwrap(), LoginOutcome::Locked { .. }));
            // Locked: even the right password is refused until the lock passes.
            assert!(matches!(db.check_login("bob", "correct horse").await.unwrap(), LoginOutcome::Locked { .. }));
            let (token, _) = db.create_user_token(u.id, "cli", 1).await.unwrap();
            let p = db.authenticate(&token).await.unwrap().unwrap();
            assert_eq!((p.role, p.actor.as_str()), (Role::TenantAdmin, "user:bob"));
            db.revoke_token(p.token_id).await.unwrap();
            assert!(db.authenticate(&token).await.unwrap().is_none());
        }
    }

    #[test]
    fn stored_password_hashes_are_argon2id() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("correct horsf", &h));
        assert!(!verify_password("x", dummy_hash()) && dummy_hash().starts_with("$argon2id$"));
    }

    #[tokio::test]
    async fn tenant_lists_search_filter_sort_and_page_in_the_database() {
        for (db, _guard) in databases().await {
            for i in 0..120 {
                let display = if i % 10 == 0 { format!("Big_{i} Corp") } else { format!("Small {i}") };
                db.create_tenant(&format!("t{i:03}"), &display, None).await.unwrap();
            }
            db.update_tenant("t007", &TenantChange { suspended: Some(true), ..Default::default() }).await.unwrap();
            let list = |search: Option<&str>, status, sort, descending, offset| TenantList {
                search: search.map(str::to_string),
                status,
                sort,
                descending,
                offset,
                limit: 50,
                reseller: None,
            };
            let (page, total) =
                db.tenant_list(&list(None, TenantStatus::Any, TenantSort::Name, false, 100)).await.unwrap();
            assert_eq!(total, 120);
            assert_eq!(page.len(), 20);
            assert_eq!(page[0].name, "t100");
            let (page, total) =
                db.tenant_list(&list(Some("big_"), TenantStatus::Any, TenantSort::Name, true, 0)).await.unwrap();
            assert_eq!(total, 12, "case-insensitive, `_` literal");
            assert_eq!(page[0].name, "t110");
            let (page, total) =
                db.tenant_list(&list(Some("big%"), TenantStatus::Any, TenantSort::Name, false, 0)).await.unwrap();
            assert_eq!((page.len(), total), (0, 0), "`%` literal");
            let (page, total) =
                db.tenant_list(&list(None, TenantStatus::Suspended, TenantSort::Name, false, 0)).await.unwrap();
            assert_eq!((page[0].name.as_str(), total), ("t007", 1));
            let (_, total) =
                db.tenant_list(&list(None, TenantStatus::NeedsAttention, TenantSort::Name, false, 0)).await.unwrap();
            assert_eq!(total, 1);
            let (_, total) =
                db.tenant_list(&list(None, TenantStatus::Active, TenantSort::Stored, true, 0)).await.unwrap();
            assert_eq!(total, 119);
            assert_eq!(db.storage_totals(None).await.unwrap(), (0, 0, 120));
        }
    }

    #[tokio::test]
    async fn plans_are_edited_into_their_tenants_and_deleted_only_when_unused() {
        for (db, _guard) in databases().await {
            let plan = Plan {
                name: "office".into(),
                hard_quota_bytes: 100,
                soft_quota_bytes: 50,
                lock_days: 7,
                compliance: false,
                yearly_price_cents: 1000,
                overage_cents_per_gb: 5,
                resells: None,
                reseller: None,
            };
            db.create_plan(&plan).await.unwrap();
            db.create_tenant("a", "", Some("office")).await.unwrap();
            db.create_tenant("b", "", Some("office")).await.unwrap();
            db.update_tenant("b", &TenantChange { hard_quota_bytes: Some(500), ..Default::default() }).await.unwrap();
            let bigger =
                Plan { hard_quota_bytes: 200, soft_quota_bytes: 150, yearly_price_cents: 2000, ..plan.clone() };
            assert_eq!(db.update_plan("office", &bigger).await.unwrap(), 1, "b has its own quota");
            assert_eq!(db.tenant("a").await.unwrap().hard_quota_bytes, 200);
            assert_eq!(db.tenant("b").await.unwrap().hard_quota_bytes, 500);
            assert_eq!(db.plan("office").await.unwrap().yearly_price_cents, 2000);
            let negative = Plan { hard_quota_bytes: -1, ..plan.clone() };
            assert!(db.update_plan("office", &negative).await.is_err());
            assert!(matches!(db.delete_plan("office").await, Err(DbError::Conflict(m)) if m.contains("2 tenants")));
            db.delete_tenant("a").await.unwrap();
            db.delete_tenant("b").await.unwrap();
            db.delete_plan("office").await.unwrap();
            assert!(matches!(db.delete_plan("office").await, Err(DbError::NotFound(_))));
        }
    }
}
