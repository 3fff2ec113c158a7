//! Billing, each rule once for the API, the pages and `arca admin`. Each seller (the provider,
//! and every reseller: an [`Issuer`]) has its own billing settings (read by its staff or admins,
//! set by its admins, checked and audited here) and issues its own numbered invoices to the
//! tenants it sells to. A month's figures: a seller's for its customers, a tenant's own users for
//! their own. An invoice is read by its issuer's staff or admins, by provider staff, and by the
//! tenant's own users; anyone else's is "not found", as a missing one, and the attempt is
//! audited.

use crate::access::{
    billing_issuer, can_invoice, can_set_billing, can_view_tenant, is_provider_admin, is_staff, reseller_of,
    TenantScope,
};
use crate::db::accounts::Tenant;
use crate::db::billing::{BillingOf, Prices, TenantMonth};
use crate::db::invoices::{BillingSettings, Invoice, InvoicesOf, Issuer};
use crate::errors::ApiError;
use crate::limits;
use crate::state::AppState;

use super::{forbidden, Caller};

/// Checks every field of `s` and returns it tidied (trimmed, currency upper-cased, empty address
/// lines dropped); the message names the field and its rule.
pub fn check_settings(s: &BillingSettings) -> Result<BillingSettings, ApiError> {
    let bad = |m: String| ApiError::bad_request(m);
    let currency = s.currency.trim().to_ascii_uppercase();
    if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(bad(format!(
            "currency must be an ISO 4217 code of three letters (EUR, USD, GBP, CHF); {:?} is not",
            s.currency
        )));
    }
    let tax = limits::in_range("tax_basis_points", s.tax_basis_points, 0, limits::MAX_TAX_BASIS_POINTS)
        .map_err(|e| bad(format!("{e} (basis points: 2000 is 20 %)")))?;
    let payment_days = limits::in_range("payment_days", s.payment_days, 0, limits::MAX_PAYMENT_DAYS)
        .map_err(|e| bad(e.to_string()))?;
    let issuer_name = limits::text_line("issuer name", &s.issuer_name, limits::MAX_ISSUER_TEXT).map_err(bad)?;
    if issuer_name.is_empty() {
        return Err(bad("issuer name is required: invoices must say who issues them".into()));
    }
    let mut address = Vec::new();
    for line in &s.issuer_address {
        let line = limits::text_line("an address line", line, limits::MAX_ISSUER_TEXT).map_err(bad)?;
        if !line.is_empty() {
            address.push(line);
        }
    }
    if address.len() > limits::MAX_ADDRESS_LINES {
        return Err(bad(format!(
            "the address has at most {} lines; this one has {}",
            limits::MAX_ADDRESS_LINES,
            address.len()
        )));
    }
    let tax_id = limits::text_line("tax id", &s.issuer_tax_id, limits::MAX_TAX_ID).map_err(bad)?;
    let prefix = s.number_prefix.trim().to_string();
    let prefix_ok = !prefix.is_empty()
        && prefix.len() <= limits::MAX_INVOICE_PREFIX
        && prefix.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-')
        && !prefix.starts_with('-')
        && !prefix.ends_with('-');
    if !prefix_ok {
        return Err(bad(format!(
            "invoice number prefix must be 1 to {} upper-case letters, digits and inner dashes (e.g. INV or ACME-B); \
             {:?} is not",
            limits::MAX_INVOICE_PREFIX,
            s.number_prefix
        )));
    }
    Ok(BillingSettings {
        currency,
        tax_basis_points: tax,
        issuer_name,
        issuer_address: address,
        issuer_tax_id: tax_id,
        number_prefix: prefix,
        payment_days,
    })
}

/// The seller whose billing `caller` runs, or 403 naming `what`.
fn issuer_of(caller: &Caller, what: &str) -> Result<Issuer, ApiError> {
    billing_issuer(&caller.principal).ok_or_else(|| forbidden(what))
}

/// The caller's seller's billing settings (the provider's for its staff, a reseller's for its
/// admins) and whether they were ever saved.
pub async fn settings(state: &AppState, caller: &Caller) -> Result<(BillingSettings, bool), ApiError> {
    let issuer = issuer_of(caller, "read the billing settings")?;
    let db = state.db();
    let saved = db.billing_settings_saved(issuer).await.map_err(ApiError::from_db)?;
    Ok((db.billing_settings(issuer).await.map_err(ApiError::from_db)?, saved))
}

/// Saves the caller's seller's billing settings (provider admins for the provider, a
/// reseller's admins for the reseller), checked first ([`check_settings`]); audited as
/// `billing.settings` with what was saved.
pub async fn set_settings(
    state: &AppState,
    caller: &Caller,
    settings: &BillingSettings,
) -> Result<BillingSettings, ApiError> {
    let issuer = billing_issuer(&caller.principal);
    let result = match issuer {
        Some(issuer) if can_set_billing(&caller.principal, issuer) => match check_settings(settings) {
            Ok(s) => state
                .db()
                .set_billing_settings(issuer, &s, &caller.principal.actor)
                .await
                .map_err(ApiError::from_db)
                .map(|_| s),
            Err(e) => Err(e),
        },
        _ => Err(forbidden("change the billing settings")),
    };
    let detail = match &result {
        Ok(s) => format!(
            "currency {}, tax {} %, prefix {}, payment {} days",
            s.currency,
            arca_api::percent_text(s.tax_basis_points),
            s.number_prefix,
            s.payment_days
        ),
        Err(_) => String::new(),
    };
    let target = match issuer.and_then(Issuer::reseller) {
        Some(r) => format!("billing settings of reseller #{r}"),
        None => "billing settings".to_string(),
    };
    caller.audited(state, None, "billing.settings", &target, &detail, result).await
}

/// A month's figures at the seller's prices: with `tenant` None, every customer of the caller's
/// (the provider's own customers for provider staff, a reseller's for its admins); or one
/// tenant's (staff, its reseller's admins, or the tenant's own admins and users; the tenant comes
/// from [`super::tenant_for`]).
pub async fn month(
    state: &AppState,
    caller: &Caller,
    tenant: Option<&Tenant>,
    month: &str,
) -> Result<Vec<TenantMonth>, ApiError> {
    let p = &caller.principal;
    let of = match tenant {
        Some(t) if can_view_tenant(p, t) => BillingOf::Tenant(t.id),
        None if is_staff(p) => BillingOf::ProviderCustomers,
        None => match reseller_of(p) {
            Some(r) => BillingOf::ResellerCustomers(r),
            None => return Err(forbidden("read billing")),
        },
        Some(_) => return Err(forbidden("read billing")),
    };
    state.db().billing(of, Prices::Retail, month).await.map_err(ApiError::from_db)
}

/// Issues the invoice of `tenant`'s finished `month` in its seller's name (the provider's admins
/// for its own customers, a reseller's admins for its tenants); `(invoice, true)` when this call
/// issued it, `(invoice, false)` when it had been issued before. Audited as `invoice.issue` with
/// the number.
pub async fn issue(
    state: &AppState,
    caller: &Caller,
    tenant: &Tenant,
    month: &str,
) -> Result<(Invoice, bool), ApiError> {
    let p = &caller.principal;
    let result = if can_invoice(p, tenant) {
        state.db().issue_invoice(tenant.id, month, &p.actor).await.map_err(ApiError::from_db)
    } else if is_provider_admin(p) {
        Err(ApiError::new(
            axum::http::StatusCode::CONFLICT,
            format!(
            "tenant {} is billed by its reseller {}, not by the provider: the reseller issues its invoices, and the \
             provider bills the reseller (its wholesale statement)",
            tenant.name,
            tenant.reseller.as_deref().unwrap_or("?")
        ),
        ))
    } else {
        Err(forbidden("issue invoices"))
    };
    let detail = issue_detail(month, &result);
    let target = format!("invoice of {} for {month}", tenant.name);
    caller.audited(state, Some(tenant.id), "invoice.issue", &target, &detail, result).await
}

/// The audit detail of an `invoice.issue`: the number issued (or found), and its total.
pub(crate) fn issue_detail(month: &str, result: &Result<(Invoice, bool), ApiError>) -> String {
    match result {
        Ok((inv, true)) => {
            format!("{month}: issued {} ({} {} gross)", inv.number, crate::units::money(inv.gross_cents), inv.currency)
        }
        Ok((inv, false)) => format!("{month}: already issued as {}", inv.number),
        Err(_) => month.to_string(),
    }
}

/// Issued invoices, newest first: one tenant's (whoever may view the tenant), or with `tenant`
/// None every invoice the caller's seller issued (provider staff, a reseller's admins).
pub async fn invoices(
    state: &AppState,
    caller: &Caller,
    tenant: Option<&Tenant>,
    limit: i64,
) -> Result<Vec<Invoice>, ApiError> {
    let of = match tenant {
        None => InvoicesOf::Issuer(issuer_of(caller, "list every tenant's invoices")?),
        Some(t) if can_view_tenant(&caller.principal, t) => InvoicesOf::Tenant(t.id),
        Some(_) => return Err(forbidden("list this tenant's invoices")),
    };
    state.db().invoices(of, limit).await.map_err(ApiError::from_db)
}

/// The invoice numbered `number` by `tenant`'s seller (with `tenant` None: by the caller's own
/// seller, or its tenant's), if the caller may see its tenant's; otherwise "no invoice numbered
/// …", exactly as a missing one (and the attempt is audited).
pub async fn invoice(
    state: &AppState,
    caller: &Caller,
    tenant: Option<&Tenant>,
    number: &str,
) -> Result<Invoice, ApiError> {
    let missing = || ApiError::not_found(format!("no invoice numbered {number}"));
    let p = &caller.principal;
    let issuer = match (tenant, billing_issuer(p), p.tenant_id) {
        (Some(t), _, _) => Issuer::of_tenant(t),
        (None, Some(issuer), _) => issuer,
        (None, None, Some(own)) => Issuer::of_tenant(&state.db().tenant_by_id(own).await.map_err(ApiError::from_db)?),
        (None, None, None) => return Err(missing()),
    };
    let found = state.db().invoice(issuer, number).await.map_err(ApiError::from_db)?;
    let visible = |inv: &Invoice| match inv.customer_reseller_id {
        // The provider's invoice to a reseller: its staff, and that reseller's admins.
        Some(r) => tenant.is_none() && (is_staff(p) || reseller_of(p) == Some(r)),
        None => {
            tenant.is_none_or(|t| t.id == inv.tenant_id)
                && can_view_tenant(p, TenantScope { id: inv.tenant_id, reseller_id: inv.issuer_reseller_id })
        }
    };
    match found {
        Some(inv) if visible(&inv) => Ok(inv),
        Some(_) => {
            let detail = caller.with_channel("invoice out of reach");
            caller.audit(state, p.tenant_id, "invoice.access", number, "denied", &detail).await;
            Err(missing())
        }
        None => Err(missing()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> BillingSettings {
        BillingSettings {
            currency: " eur ".into(),
            tax_basis_points: 2000,
            issuer_name: "  Host Ltd ".into(),
            issuer_address: vec!["1 Road".into(), "".into(), "Town".into()],
            issuer_tax_id: "GB123456789".into(),
            number_prefix: "INV".into(),
            payment_days: 30,
        }
    }

    #[test]
    fn settings_are_checked_and_tidied() {
        let s = check_settings(&good()).unwrap();
        assert_eq!((s.currency.as_str(), s.issuer_name.as_str()), ("EUR", "Host Ltd"));
        assert_eq!(s.issuer_address, vec!["1 Road", "Town"], "empty lines dropped");
        let refused = |f: &dyn Fn(&mut BillingSettings), word: &str| {
            let mut s = good();
            f(&mut s);
            let e = check_settings(&s).unwrap_err();
            assert!(e.message().contains(word), "{word}: {}", e.message());
        };
        refused(&|s| s.currency = "EURO".into(), "currency");
        refused(&|s| s.currency = "E1R".into(), "currency");
        refused(&|s| s.tax_basis_points = 10_001, "tax_basis_points");
        refused(&|s| s.tax_basis_points = -1, "tax_basis_points");
        refused(&|s| s.payment_days = 366, "payment_days");
        refused(&|s| s.payment_days = i64::MIN, "payment_days");
        refused(&|s| s.issuer_name = " ".into(), "issuer name");
        refused(&|s| s.issuer_name = "x".repeat(101), "issuer name");
        refused(&|s| s.issuer_name = "a\u{7}b".into(), "control");
        refused(&|s| s.issuer_address = vec!["l".into(); 7], "at most 6 lines");
        refused(&|s| s.issuer_address = vec!["y".repeat(101)], "address line");
        refused(&|s| s.issuer_tax_id = "9".repeat(41), "tax id");
        for prefix in ["", "inv", "-A", "A-", "A B", "ABCDEFGHIJKLMNOPQ", "A/B"] {
            refused(&|s| s.number_prefix = prefix.into(), "prefix");
        }
        let mut ok = good();
        ok.number_prefix = "HOST-B2".into();
        ok.tax_basis_points = 10_000;
        ok.payment_days = 0;
        assert!(check_settings(&ok).is_ok());
    }
}
