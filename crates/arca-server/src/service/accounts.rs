//! Plans, tenants, repositories, users and devices: what the provider console, the customer
//! portal and `arca admin` change.

use crate::access::{can_manage_tenant, can_sell_to, is_provider_admin, is_seller, reseller_of};
use crate::db::accounts::{Device, Plan, RepoFormat, Repository, Role, Tenant, TenantChange, User};
use crate::errors::ApiError;
use crate::limits;
use crate::state::AppState;

use super::{forbidden, from_db_for, Caller};

/// Creates a plan: a provider admin's for the provider, a reseller admin's for the reseller (it
/// resells one of the provider's plans, within its limits). Every figure is range-checked
/// ([`limits`]).
pub async fn create_plan(state: &AppState, caller: &Caller, plan: &Plan) -> Result<(), ApiError> {
    let p = &caller.principal;
    let result = if is_seller(p) {
        state.db().create_plan_for(reseller_of(p), plan).await.map_err(|e| from_db_for(caller, "plan", &plan.name, e))
    } else {
        Err(forbidden("create plans"))
    };
    caller.audited(state, None, "plan.create", &plan.name, "", result).await
}

/// Changes one of the seller's own plans ([`create_plan`]); returns how many tenants took its
/// new quotas.
pub async fn update_plan(state: &AppState, caller: &Caller, plan: &Plan) -> Result<u64, ApiError> {
    let p = &caller.principal;
    let result = if is_seller(p) {
        state.db().update_plan_for(reseller_of(p), &plan.name, plan).await.map_err(ApiError::from_db)
    } else {
        Err(forbidden("change plans"))
    };
    let detail = serde_json::to_string(plan).unwrap_or_default();
    caller.audited(state, None, "plan.update", &plan.name, &detail, result).await
}

/// Deletes one of the seller's own plans that no tenant is on.
pub async fn delete_plan(state: &AppState, caller: &Caller, name: &str) -> Result<(), ApiError> {
    let p = &caller.principal;
    let result = if is_seller(p) {
        state.db().delete_plan_for(reseller_of(p), name).await.map_err(ApiError::from_db)
    } else {
        Err(forbidden("delete plans"))
    };
    caller.audited(state, None, "plan.delete", name, "", result).await
}

/// Creates a tenant with the quotas of `plan` if given: a provider admin's customer, or a
/// reseller admin's (on one of the reseller's plans, within its capacity).
pub async fn create_tenant(
    state: &AppState,
    caller: &Caller,
    name: &str,
    display_name: &str,
    plan: Option<&str>,
) -> Result<Tenant, ApiError> {
    let p = &caller.principal;
    let result = if is_seller(p) {
        state
            .db()
            .create_tenant_for(reseller_of(p), name, display_name, plan)
            .await
            .map_err(|e| from_db_for(caller, "tenant", name, e))
    } else {
        Err(forbidden("create tenants"))
    };
    let tenant_id = result.as_ref().ok().map(|t| t.id);
    caller.audited(state, tenant_id, "tenant.create", name, "", result).await
}

/// Applies `change` to `tenant`: its plan, quotas, display name and suspension (provider admins,
/// and its reseller's admins); its own alert addresses (also the tenant's admins).
pub async fn update_tenant(
    state: &AppState,
    caller: &Caller,
    tenant: &Tenant,
    change: &TenantChange,
) -> Result<Tenant, ApiError> {
    let p = &caller.principal;
    let allowed = can_sell_to(p, tenant) || (change.is_customer_setting() && can_manage_tenant(p, tenant));
    let addresses = change.alert_email.as_deref().map(crate::alerts::parse_mailboxes).transpose();
    let result = if !allowed {
        Err(forbidden("change a tenant's plan, quotas or status"))
    } else if let Err(e) = addresses {
        Err(ApiError::bad_request(format!("alert_email: {e}")))
    } else {
        state.db().update_tenant(&tenant.name, change).await.map_err(ApiError::from_db)
    };
    let detail = serde_json::to_string(change).unwrap_or_default();
    caller.audited(state, Some(tenant.id), "tenant.update", &tenant.name, &detail, result).await
}

/// Creates a repository of `format` for `tenant` (its admins, provider admins), with the plan's
/// retention lock or a longer one.
pub async fn create_repository(
    state: &AppState,
    caller: &Caller,
    tenant: &Tenant,
    name: &str,
    lock_days: Option<i64>,
    format: RepoFormat,
) -> Result<Repository, ApiError> {
    let result = if !can_manage_tenant(&caller.principal, tenant) {
        Err(forbidden("create repositories"))
    } else {
        state
            .db()
            .create_repository_as(&tenant.name, name, lock_days, format)
            .await
            .map_err(|e| from_db_for(caller, "repository", name, e))
    };
    let detail = format!("format {format}");
    caller.audited(state, Some(tenant.id), "repo.create", name, &detail, result).await
}

/// Changes a repository's retention lock. Provider admins may set any length (compliance mode
/// still only grows); a tenant's admins may lengthen their own locks, never shorten them or leave
/// compliance mode. The length is range-checked before any arithmetic ([`limits::days`]).
pub async fn set_repository_lock(
    state: &AppState,
    caller: &Caller,
    repo: &Repository,
    lock_days: i64,
    compliance: Option<bool>,
) -> Result<Repository, ApiError> {
    let p = &caller.principal;
    let result = if let Err(e) = limits::days("lock_days", lock_days) {
        Err(ApiError::bad_request(e.to_string()))
    } else if is_provider_admin(p)
        || (can_manage_tenant(p, repo) && lock_days >= repo.lock_days && compliance != Some(false))
    {
        state.db().set_repository_lock(&repo.name, lock_days, compliance).await.map_err(ApiError::from_db)
    } else {
        Err(forbidden("shorten a retention lock or leave compliance mode"))
    };
    let detail = format!("lock_days {lock_days}, compliance {compliance:?}");
    caller.audited(state, Some(repo.tenant_id), "repo.lock", &repo.name, &detail, result).await
}

/// Sets how long the server keeps a repository's snapshots (the tenant's admins, provider
/// admins): 0 keeps everything; otherwise at least the retention lock.
pub async fn set_retention(
    state: &AppState,
    caller: &Caller,
    repo: &Repository,
    days: i64,
) -> Result<Repository, ApiError> {
    let result = if !can_manage_tenant(&caller.principal, repo) {
        Err(forbidden("change a repository's retention"))
    } else if let Err(why) = crate::db::Db::check_retention(repo, days) {
        Err(ApiError::bad_request(why))
    } else {
        state.db().set_retention(&repo.name, days).await.map_err(ApiError::from_db)
    };
    caller.audited(state, Some(repo.tenant_id), "repo.retention", &repo.name, &format!("{days} days"), result).await
}

/// Adds a tenant admin or tenant user to `tenant` (its admins, provider admins).
pub async fn create_tenant_user(
    state: &AppState,
    caller: &Caller,
    tenant: &Tenant,
    name: &str,
    password: &str,
    role: Role,
) -> Result<User, ApiError> {
    let result = if !can_manage_tenant(&caller.principal, tenant) {
        Err(forbidden("add users"))
    } else if !matches!(role, Role::TenantAdmin | Role::TenantUser) {
        Err(ApiError::bad_request("a tenant's users are tenant-admin or tenant-user"))
    } else {
        state
            .db()
            .create_user(name, password, role, Some(&tenant.name))
            .await
            .map_err(|e| from_db_for(caller, "user", name, e))
    };
    caller.audited(state, Some(tenant.id), "user.create", name, "", result).await
}

/// Adds a device to `tenant`, scoped to one of its repositories; returns its token (shown once).
pub async fn create_device(
    state: &AppState,
    caller: &Caller,
    tenant: &Tenant,
    name: &str,
    repo: &str,
) -> Result<(Device, String), ApiError> {
    let result = if !can_manage_tenant(&caller.principal, tenant) {
        Err(forbidden("add devices"))
    } else {
        state.db().create_device(&tenant.name, name, repo).await.map_err(ApiError::from_db)
    };
    let target = format!("{name}@{} -> {repo}", tenant.name);
    caller.audited(state, Some(tenant.id), "device.create", &target, "", result).await
}

/// Revokes a device's token at once.
pub async fn revoke_device(state: &AppState, caller: &Caller, tenant: &Tenant, name: &str) -> Result<Device, ApiError> {
    let result = if !can_manage_tenant(&caller.principal, tenant) {
        Err(forbidden("revoke devices"))
    } else {
        state.db().revoke_device(&tenant.name, name).await.map_err(ApiError::from_db)
    };
    caller.audited(state, Some(tenant.id), "device.revoke", &format!("{name}@{}", tenant.name), "", result).await
}

/// Sets how often a device should back up (hours; 0: no schedule, never overdue). Its admins and
/// provider admins; the range is checked by the database layer (0 to a year).
pub async fn set_device_schedule(
    state: &AppState,
    caller: &Caller,
    tenant: &Tenant,
    device: &str,
    every_hours: i64,
) -> Result<(), ApiError> {
    let result = if !can_manage_tenant(&caller.principal, tenant) {
        Err(forbidden("change device schedules"))
    } else {
        state.db().set_device_schedule(&tenant.name, device, every_hours).await.map_err(ApiError::from_db)
    };
    let target = format!("{device}@{}", tenant.name);
    caller.audited(state, Some(tenant.id), "device.schedule", &target, &format!("every {every_hours} h"), result).await
}

/// Deletes a tenant (provider admins, its reseller's admins), once it has no repositories left.
pub async fn delete_tenant(state: &AppState, caller: &Caller, tenant: &Tenant) -> Result<(), ApiError> {
    let result = if can_sell_to(&caller.principal, tenant) {
        state.db().delete_tenant(&tenant.name).await.map_err(ApiError::from_db)
    } else {
        Err(forbidden("delete tenants"))
    };
    caller.audited(state, Some(tenant.id), "tenant.delete", &tenant.name, "", result).await
}

/// Deletes an empty repository (its tenant's admins, provider admins): its objects go first,
/// each when its retention lock allows.
pub async fn delete_repository(state: &AppState, caller: &Caller, repo: &Repository) -> Result<(), ApiError> {
    let result = if can_manage_tenant(&caller.principal, repo) {
        state.db().delete_repository(&repo.name).await.map_err(ApiError::from_db)
    } else {
        Err(forbidden("delete repositories"))
    };
    caller.audited(state, Some(repo.tenant_id), "repo.delete", &repo.name, "", result).await
}

/// Adds a provider admin or operator (provider admins).
pub async fn create_staff(
    state: &AppState,
    caller: &Caller,
    name: &str,
    password: &str,
    role: Role,
) -> Result<User, ApiError> {
    let result = if !is_provider_admin(&caller.principal) {
        Err(forbidden("create provider staff"))
    } else if !role.is_provider() {
        Err(ApiError::bad_request("provider staff are provider-admin or operator; add tenant users to their tenant"))
    } else {
        state.db().create_user(name, password, role, None).await.map_err(ApiError::from_db)
    };
    caller.audited(state, None, "user.create", name, "", result).await
}
