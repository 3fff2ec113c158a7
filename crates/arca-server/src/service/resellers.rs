//! Resellers, each rule once for the API, the console and `arca admin`: the provider's admins
//! create resellers (with their first admin), set their capacity and add admins; staff read them
//! all; a reseller's admins read their own reseller and add fellow admins. Anyone else's
//! reseller is "no reseller named …", as a missing one. The wholesale statement is what the
//! provider charges a reseller for a month: each of its tenants at the price of the provider's
//! plan that the tenant's plan resells.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::access::{is_provider_admin, is_staff, reseller_of};
use crate::db::accounts::User;
use crate::db::billing::{BillingOf, Prices, TenantMonth};
use crate::db::invoices::{BillingSettings, Invoice, InvoicesOf, Issuer};
use crate::db::resellers::{Reseller, ResellerChange};
use crate::db::DbError;
use crate::errors::ApiError;
use crate::state::AppState;

use super::{forbidden, Caller};

/// Creates a reseller and its first admin (provider admins).
pub async fn create(state: &AppState, caller: &Caller, new: &arca_api::NewReseller) -> Result<Reseller, ApiError> {
    let result = if !is_provider_admin(&caller.principal) {
        Err(forbidden("create resellers"))
    } else {
        state
            .db()
            .create_reseller(&new.name, &new.display_name, new.capacity_bytes, &new.admin, &new.password)
            .await
            .map_err(ApiError::from_db)
    };
    let detail = format!("capacity {} bytes, admin {}", new.capacity_bytes, new.admin);
    caller.audited(state, None, "reseller.create", &new.name, &detail, result).await
}

/// Every reseller (provider staff), or the caller's own (a reseller's admins).
pub async fn list(state: &AppState, caller: &Caller) -> Result<Vec<Reseller>, ApiError> {
    let p = &caller.principal;
    if is_staff(p) {
        state.db().resellers().await.map_err(ApiError::from_db)
    } else if let Some(r) = reseller_of(p) {
        Ok(vec![state.db().reseller_by_id(r).await.map_err(ApiError::from_db)?])
    } else {
        Err(forbidden("list resellers"))
    }
}

/// Reseller `name`, if the caller is provider staff or one of its admins; otherwise "no reseller
/// named …" (audited).
pub async fn find(state: &AppState, caller: &Caller, name: &str) -> Result<Reseller, ApiError> {
    let missing = || ApiError::not_found(format!("no reseller named {name}"));
    let reseller = match state.db().reseller(name).await {
        Ok(r) => r,
        Err(DbError::NotFound(_)) => return Err(missing()),
        Err(e) => return Err(ApiError::from_db(e)),
    };
    let p = &caller.principal;
    if is_staff(p) || reseller_of(p) == Some(reseller.id) {
        return Ok(reseller);
    }
    let detail = caller.with_channel("reseller out of reach");
    caller.audit(state, p.tenant_id, "reseller.access", name, "denied", &detail).await;
    Err(missing())
}

/// Changes a reseller's display name or capacity (provider admins).
pub async fn update(
    state: &AppState,
    caller: &Caller,
    reseller: &Reseller,
    change: &ResellerChange,
) -> Result<Reseller, ApiError> {
    let result = if !is_provider_admin(&caller.principal) {
        Err(forbidden("change resellers"))
    } else {
        state.db().update_reseller(&reseller.name, change).await.map_err(ApiError::from_db)
    };
    let detail = serde_json::to_string(change).unwrap_or_default();
    caller.audited(state, None, "reseller.update", &reseller.name, &detail, result).await
}

/// Adds an admin to `reseller` (provider admins, or its own admins).
pub async fn add_admin(
    state: &AppState,
    caller: &Caller,
    reseller: &Reseller,
    name: &str,
    password: &str,
) -> Result<User, ApiError> {
    let p = &caller.principal;
    let result = if !(is_provider_admin(p) || reseller_of(p) == Some(reseller.id)) {
        Err(forbidden("add reseller admins"))
    } else {
        state
            .db()
            .create_reseller_admin(reseller.id, name, password)
            .await
            .map_err(|e| super::from_db_for(caller, "user", name, e))
    };
    caller.audited(state, None, "user.create", name, &format!("admin of reseller {}", reseller.name), result).await
}

/// What the provider charges a reseller for a month.
#[derive(Debug, Clone, Serialize)]
pub struct WholesaleStatement {
    /// The reseller.
    pub reseller: String,
    /// `YYYY-MM`.
    pub month: String,
    /// The provider's currency.
    pub currency: String,
    /// Each tenant at the provider's plan its plan resells.
    pub tenants: Vec<TenantMonth>,
    /// Sum of the tenants' nets, in cents.
    pub net_cents: i64,
    /// Tax on the net, in cents (computed once on the sum, as on an invoice).
    pub tax_cents: i64,
    /// Net plus tax.
    pub gross_cents: i64,
}

/// Issues the provider's invoice to `reseller` (from [`find`]) for its finished `month`: its
/// wholesale statement, numbered in the provider's sequence and frozen (provider admins).
/// `(invoice, true)` when this call issued it. Audited as `invoice.issue`.
pub async fn issue_invoice(
    state: &AppState,
    caller: &Caller,
    reseller: &Reseller,
    month: &str,
) -> Result<(Invoice, bool), ApiError> {
    let p = &caller.principal;
    let result = if is_provider_admin(p) {
        state.db().issue_reseller_invoice(reseller.id, month, &p.actor).await.map_err(ApiError::from_db)
    } else {
        Err(forbidden("issue invoices to resellers"))
    };
    let detail = crate::service::billing::issue_detail(month, &result);
    let target = format!("invoice of reseller {} for {month}", reseller.name);
    caller.audited(state, None, "invoice.issue", &target, &detail, result).await
}

/// The provider's invoices to `reseller` (from [`find`]: provider staff, or its own admins),
/// newest first, at most `limit`.
pub async fn invoices(
    state: &AppState,
    caller: &Caller,
    reseller: &Reseller,
    limit: i64,
) -> Result<Vec<Invoice>, ApiError> {
    let p = &caller.principal;
    if !(is_staff(p) || reseller_of(p) == Some(reseller.id)) {
        return Err(forbidden("read a reseller's invoices"));
    }
    state.db().invoices(InvoicesOf::Reseller(reseller.id), limit).await.map_err(ApiError::from_db)
}

/// The provider's invoice to `reseller` numbered `number`; any other is "no invoice numbered
/// …", as a missing one.
pub async fn invoice(
    state: &AppState,
    caller: &Caller,
    reseller: &Reseller,
    number: &str,
) -> Result<Invoice, ApiError> {
    let missing = || ApiError::not_found(format!("no invoice numbered {number}"));
    let p = &caller.principal;
    if !(is_staff(p) || reseller_of(p) == Some(reseller.id)) {
        return Err(missing());
    }
    match state.db().invoice(Issuer::Provider, number).await.map_err(ApiError::from_db)? {
        Some(inv) if inv.customer_reseller_id == Some(reseller.id) => Ok(inv),
        _ => Err(missing()),
    }
}

/// The wholesale statement of `reseller` for `month` (provider staff, or its own admins).
pub async fn wholesale(
    state: &AppState,
    caller: &Caller,
    reseller: &Reseller,
    month: &str,
) -> Result<WholesaleStatement, ApiError> {
    let p = &caller.principal;
    if !(is_staff(p) || reseller_of(p) == Some(reseller.id)) {
        return Err(forbidden("read a reseller's statement"));
    }
    let db = state.db();
    let tenants = db
        .billing(BillingOf::ResellerCustomers(reseller.id), Prices::Wholesale, month)
        .await
        .map_err(ApiError::from_db)?;
    let settings = db.billing_settings(Issuer::Provider).await.map_err(ApiError::from_db)?;
    Ok(statement(reseller, month, &settings, tenants))
}

/// Every reseller's wholesale statement for `month` (provider staff), in reseller order: one
/// pass over the month's figures, grouped by reseller.
pub async fn wholesale_all(
    state: &AppState,
    caller: &Caller,
    month: &str,
) -> Result<Vec<(Reseller, WholesaleStatement)>, ApiError> {
    if !is_staff(&caller.principal) {
        return Err(forbidden("read the resellers' statements"));
    }
    let db = state.db();
    let resellers = db.resellers().await.map_err(ApiError::from_db)?;
    let months =
        db.billing(BillingOf::AllResellerCustomers, Prices::Wholesale, month).await.map_err(ApiError::from_db)?;
    let settings = db.billing_settings(Issuer::Provider).await.map_err(ApiError::from_db)?;
    let mut by_reseller: BTreeMap<i64, Vec<TenantMonth>> = BTreeMap::new();
    for m in months {
        if let Some(r) = m.reseller_id {
            by_reseller.entry(r).or_default().push(m);
        }
    }
    Ok(resellers
        .into_iter()
        .map(|r| {
            let tenants = by_reseller.remove(&r.id).unwrap_or_default();
            let st = statement(&r, month, &settings, tenants);
            (r, st)
        })
        .collect())
}

/// A statement: the tenants and their totals ([`crate::db::billing::totals`], the same as its
/// invoice's), at the provider's currency and rate.
fn statement(
    reseller: &Reseller,
    month: &str,
    settings: &BillingSettings,
    tenants: Vec<TenantMonth>,
) -> WholesaleStatement {
    let (net, tax, gross) = crate::db::billing::totals(&tenants, settings.tax_basis_points);
    WholesaleStatement {
        reseller: reseller.name.clone(),
        month: month.to_string(),
        currency: settings.currency.clone(),
        tenants,
        net_cents: net,
        tax_cents: tax,
        gross_cents: gross,
    }
}
