//! Monthly billing figures per tenant, and the invoice lines they make from the tenant's plan.
//!
//! Built on the daily metering rows ([`super::usage`]), which carry stored bytes forward over
//! quiet days: the average stored bytes of a month is the mean over its days of the tenant's
//! end-of-day total, so a customer who stored 1 TB for half the month pays for 0.5 TB. Prices
//! come from the tenant's plan as it is now (plans are not versioned; an issued invoice freezes
//! them, [`super::invoices`]): the yearly price is billed in twelfths, prorated by the days
//! counted; stored bytes above the soft quota are billed per GB (10^9 bytes) at the plan's
//! overage price.
//!
//! **Days** (one computation, [`billed_days`]): the days of the month from the day the tenant was
//! created (UTC) or the 1st, to the month's last day or, for the current month, today. The
//! "Days" column, the invoice's "N of M days", the average and the plan fee all use this one
//! figure, so the current month is month-to-date throughout (the fee accrued so far).
//!
//! **Rounding** (every amount is whole cents): each line is rounded half up on its own (the plan
//! fee `yearly × days / (12 × days in month)`, the overage `bytes × price / 10^9`); the net is
//! their sum; the tax is computed once per invoice on the net, `net × basis points / 10000`,
//! rounded half up on cents; the gross is net + tax.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::Serialize;

use super::invoices::{BillingSettings, Issuer};
use super::usage::MeteringOf;
use super::{Db, DbError, Result};
use crate::units::{amount, human_bytes, money};

/// One tenant's month.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct TenantMonth {
    /// `YYYY-MM`.
    pub month: String,
    /// Tenant name.
    pub tenant: String,
    /// The tenant's reseller (`None`: the provider's own customer); for grouping, not shown.
    #[serde(skip)]
    pub reseller_id: Option<i64>,
    /// Name for people.
    pub display_name: String,
    /// The plan priced (the tenant's current plan), if any.
    pub plan: Option<String>,
    /// Days counted ([`billed_days`]): the month's days since the tenant existed, up to today in
    /// the current month. The invoice's "N of M days" is `days` of `days_in_month`.
    pub days: i64,
    /// Days in the month.
    pub days_in_month: i64,
    /// Whether the month is still running (figures are month-to-date).
    pub partial: bool,
    /// Mean over the days of the stored bytes at the end of each day.
    pub avg_stored_bytes: i64,
    /// The most stored on any day.
    pub peak_stored_bytes: i64,
    /// Bytes the snapshots represented at the end of the month (or now).
    pub logical_bytes: i64,
    /// Bytes received.
    pub ingress_bytes: i64,
    /// Bytes sent (restores).
    pub egress_bytes: i64,
    /// Snapshots added.
    pub snapshots: i64,
    /// The soft quota the overage is measured from (0: none, so no overage).
    pub soft_quota_bytes: i64,
    /// The plan's twelfth, prorated by days, in cents.
    pub base_cents: i64,
    /// Average stored bytes above the soft quota.
    pub overage_bytes: i64,
    /// Their price, in cents.
    pub overage_cents: i64,
    /// What an invoice would say before tax (the net), in cents.
    pub total_cents: i64,
    /// The currency (ISO 4217) the amounts are in: the seller's for retail prices, the
    /// provider's for wholesale.
    pub currency: String,
    /// The tax rate applied, in basis points (2000 = 20 %).
    pub tax_basis_points: i64,
    /// The tax on the net ([`tax_cents`]).
    pub tax_cents: i64,
    /// Net plus tax.
    pub gross_cents: i64,
    /// The invoice's lines (their amounts sum to `total_cents`).
    pub lines: Vec<InvoiceLine>,
}

/// One line of an invoice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct InvoiceLine {
    /// What is charged, for people.
    pub text: String,
    /// Its amount, in cents.
    pub cents: i64,
}

/// The days of `month` (`first..=last`) a tenant created on `created` is billed for, up to
/// `today`: `(days, days_in_month)`; `days` is 0 when the tenant did not exist yet. The one
/// computation behind the "Days" column and the invoice's "N of M days".
pub fn billed_days(first: NaiveDate, last: NaiveDate, created: NaiveDate, today: NaiveDate) -> (i64, i64) {
    let from = first.max(created);
    let end = last.min(today);
    let days = if from > end { 0 } else { (end - from).num_days() + 1 };
    (days, (last - first).num_days() + 1)
}

/// The tax on `net_cents` at `basis_points`, rounded half up on cents (per invoice, on the net).
pub fn tax_cents(net_cents: i64, basis_points: i64) -> i64 {
    mul_div_round(net_cents, basis_points, 10_000)
}

/// The CSV header of [`to_csv`]. The first sixteen columns are those of earlier versions, in
/// the same order (`total_cents` is the net); currency and tax were appended after them.
pub const CSV_HEADER: &str = "month,tenant,plan,days,partial,avg_stored_bytes,peak_stored_bytes,logical_bytes,\
                              ingress_bytes,egress_bytes,snapshots,soft_quota_bytes,base_cents,overage_bytes,\
                              overage_cents,total_cents,days_in_month,currency,tax_basis_points,tax_cents,\
                              gross_cents";

/// Months as CSV for a billing system (names are `[a-z0-9-]` and currencies `[A-Z]{3}`: nothing
/// needs quoting).
pub fn to_csv(rows: &[TenantMonth]) -> String {
    let mut out = String::from(CSV_HEADER);
    out.push('\n');
    for r in rows {
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
            r.month,
            r.tenant,
            r.plan.as_deref().unwrap_or(""),
            r.days,
            r.partial,
            r.avg_stored_bytes,
            r.peak_stored_bytes,
            r.logical_bytes,
            r.ingress_bytes,
            r.egress_bytes,
            r.snapshots,
            r.soft_quota_bytes,
            r.base_cents,
            r.overage_bytes,
            r.overage_cents,
            r.total_cents,
            r.days_in_month,
            r.currency,
            r.tax_basis_points,
            r.tax_cents,
            r.gross_cents
        ));
    }
    out
}

/// The first and last day of month `YYYY-MM`.
pub fn month_range(month: &str) -> Result<(NaiveDate, NaiveDate)> {
    let first = NaiveDate::parse_from_str(&format!("{month}-01"), "%Y-%m-%d")
        .map_err(|_| DbError::Invalid(format!("{month:?} is not a month: use YYYY-MM, e.g. 2026-11")))?;
    let next = first
        .checked_add_months(chrono::Months::new(1))
        .ok_or_else(|| DbError::Invalid("month out of range".into()))?;
    Ok((first, next.pred_opt().expect("a month has a last day")))
}

/// The current month, `YYYY-MM` (UTC).
pub fn this_month() -> String {
    chrono::Utc::now().format("%Y-%m").to_string()
}

/// The totals of several months billed together (a reseller's statement and invoice): the nets
/// summed, the tax computed once on that sum, and the gross: `(net, tax, gross)` in cents.
pub fn totals(months: &[TenantMonth], tax_basis_points: i64) -> (i64, i64, i64) {
    let net = months.iter().fold(0i64, |s, m| s.saturating_add(m.total_cents));
    let tax = tax_cents(net, tax_basis_points);
    (net, tax, net.saturating_add(tax))
}

/// `a * b / c` rounded to the nearest integer, in 128 bits (no overflow for any stored amount).
pub(crate) fn mul_div_round(a: i64, b: i64, c: i64) -> i64 {
    if c == 0 {
        return 0;
    }
    let (a, b, c) = (a as i128, b as i128, c as i128);
    ((a * b + c / 2) / c) as i64
}

/// Whose months a bill covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BillingOf {
    /// The provider's own customers (not its resellers' tenants, whom their reseller bills).
    ProviderCustomers,
    /// One tenant.
    Tenant(i64),
    /// One reseller's tenants.
    ResellerCustomers(i64),
    /// Every reseller's tenants (the provider's wholesale month, grouped by the caller).
    AllResellerCustomers,
}

/// Which prices a bill uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prices {
    /// The tenant's own plan: what its seller charges it.
    Retail,
    /// The provider's plan that a reseller's tenant's plan resells, with that plan's soft quota:
    /// what the provider charges the reseller for the tenant.
    Wholesale,
}

impl Db {
    /// Billing figures of `month` (`YYYY-MM`) for `of` at `prices`, ordered by tenant name.
    /// Tenants created after the month are left out.
    pub async fn billing(&self, of: BillingOf, prices: Prices, month: &str) -> Result<Vec<TenantMonth>> {
        self.billing_on(of, prices, month, chrono::Utc::now().date_naive()).await
    }

    /// [`Db::billing`] as of `today` (tests move the clock).
    pub(crate) async fn billing_on(
        &self,
        of: BillingOf,
        prices: Prices,
        month: &str,
        today: NaiveDate,
    ) -> Result<Vec<TenantMonth>> {
        let (first, last) = month_range(month)?;
        if first > today {
            return Err(DbError::Invalid(format!("{month} has not begun")));
        }
        let end = last.min(today);
        let partial = last >= today;
        // Only the metering of the tenants billed is read.
        let scope = match of {
            BillingOf::Tenant(id) => MeteringOf::Tenant(id),
            BillingOf::ProviderCustomers => MeteringOf::ProviderCustomers,
            BillingOf::ResellerCustomers(r) => MeteringOf::Reseller(r),
            BillingOf::AllResellerCustomers => MeteringOf::AllResellers,
        };
        let tenants = match of {
            BillingOf::Tenant(id) => vec![self.tenant_by_id(id).await?],
            _ => self.tenants_in(scope).await?,
        };
        // Currency and tax are the seller's: the tenant's own for retail prices, the provider's
        // for wholesale. Read once per seller.
        let mut settings_of: BTreeMap<Issuer, BillingSettings> = BTreeMap::new();
        for t in &tenants {
            let issuer = match prices {
                Prices::Retail => Issuer::of_tenant(t),
                Prices::Wholesale => Issuer::Provider,
            };
            if let std::collections::btree_map::Entry::Vacant(e) = settings_of.entry(issuer) {
                e.insert(self.billing_settings(issuer).await?);
            }
        }
        let plans: BTreeMap<String, super::accounts::Plan> =
            self.plans().await?.into_iter().map(|p| (p.name.clone(), p)).collect();
        // Per tenant, its figures from its first day in the month (summed by the database;
        // the days that are over are kept between calls: `usage_totals`).
        let created_of = |t: &super::accounts::Tenant| {
            chrono::DateTime::from_timestamp(t.created_at, 0).map_or(first, |d| d.date_naive())
        };
        let billed: Vec<i64> =
            tenants.iter().filter(|t| billed_days(first, last, created_of(t), today).0 > 0).map(|t| t.id).collect();
        let spans = self.tenant_months(scope, month, first, &billed, end).await?;
        let mut out = Vec::new();
        for t in &tenants {
            let settings = match prices {
                Prices::Retail => &settings_of[&Issuer::of_tenant(t)],
                Prices::Wholesale => &settings_of[&Issuer::Provider],
            };
            let cur = settings.currency.as_str();
            let (days, days_in_month) = billed_days(first, last, created_of(t), today);
            if days == 0 {
                continue;
            }
            let span = spans.get(&t.id).copied().unwrap_or_default();
            let (peak, logical, ingress, egress, snapshots) =
                (span.peak, span.logical, span.ingress, span.egress, span.snapshots);
            // Days without a repository yet count as zero bytes stored.
            let avg = mul_div_round(span.stored_day_sum, 1, days);
            let own_plan = t.plan.as_ref().and_then(|p| plans.get(p));
            let plan = match prices {
                Prices::Retail => own_plan,
                Prices::Wholesale => own_plan.and_then(|p| p.resells.as_ref()).and_then(|b| plans.get(b)),
            };
            let base = plan.map_or(0, |p| mul_div_round(p.yearly_price_cents, days, 12 * days_in_month));
            let soft = match (prices, plan) {
                (Prices::Wholesale, Some(p)) => p.soft_quota_bytes,
                _ => t.soft_quota_bytes,
            };
            let overage = if soft > 0 { (avg - soft).max(0) } else { 0 };
            let overage_cents = plan.map_or(0, |p| mul_div_round(overage, p.overage_cents_per_gb, 1_000_000_000));
            let mut lines = Vec::new();
            if let Some(p) = plan {
                lines.push(InvoiceLine {
                    text: format!(
                        "Plan {} ({} a year), {days} of {days_in_month} days",
                        p.name,
                        amount(p.yearly_price_cents, cur)
                    ),
                    cents: base,
                });
                if overage > 0 {
                    lines.push(InvoiceLine {
                        text: format!(
                            "Storage above the {} soft quota: {} GB on average at {} per GB",
                            human_bytes(soft),
                            money(mul_div_round(overage, 100, 1_000_000_000)),
                            amount(p.overage_cents_per_gb, cur)
                        ),
                        cents: overage_cents,
                    });
                }
            }
            let net = base + overage_cents;
            let tax = tax_cents(net, settings.tax_basis_points);
            out.push(TenantMonth {
                month: month.to_string(),
                tenant: t.name.clone(),
                reseller_id: t.reseller_id,
                display_name: t.display_name.clone(),
                plan: plan.map(|p| p.name.clone()),
                days,
                days_in_month,
                partial,
                avg_stored_bytes: avg,
                peak_stored_bytes: peak,
                logical_bytes: logical,
                ingress_bytes: ingress,
                egress_bytes: egress,
                snapshots,
                soft_quota_bytes: soft,
                base_cents: base,
                overage_bytes: overage,
                overage_cents,
                total_cents: net,
                currency: settings.currency.clone(),
                tax_basis_points: settings.tax_basis_points,
                tax_cents: tax,
                gross_cents: net + tax,
                lines,
            });
        }
        out.sort_by(|a, b| a.tenant.cmp(&b.tenant));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::accounts::{Plan, TenantChange};
    use crate::db::testing::databases;

    #[test]
    fn months_parse_and_round() {
        assert_eq!(month_range("2024-02").unwrap().1.to_string(), "2024-02-29");
        assert_eq!(month_range("2026-12").unwrap().1.to_string(), "2026-12-31");
        assert!(month_range("2026-13").is_err() && month_range("nov").is_err());
        assert_eq!(mul_div_round(12_000, 15, 12 * 30), 500);
        assert_eq!(mul_div_round(1, 1, 2), 1, "half rounds up");
        assert_eq!(mul_div_round(i64::MAX / 2, 4, 4), i64::MAX / 2, "no overflow");
    }

    /// A month of history written by hand: the average, peak, traffic and the invoice's lines
    /// follow from it exactly.
    #[tokio::test]
    async fn a_month_is_averaged_and_priced_from_the_plan() {
        for (db, _guard) in databases().await {
            let plan = Plan {
                name: "office".into(),
                hard_quota_bytes: 0,
                soft_quota_bytes: 100_000_000_000,
                lock_days: 0,
                compliance: false,
                yearly_price_cents: 12_000,
                overage_cents_per_gb: 5,
                resells: None,
                reseller: None,
            };
            db.create_plan(&plan).await.unwrap();
            let t = db.create_tenant("acme", "Acme", Some("office")).await.unwrap();
            db.update_tenant("acme", &TenantChange { soft_quota_bytes: Some(100_000_000_000), ..Default::default() })
                .await
                .unwrap();
            let repo = db.create_repository("acme", "r", None).await.unwrap();
            // Created 2024-01-01; April has 30 days. Stored 100 GB for 10 days, then 400 GB.
            sqlx::query("UPDATE tenants SET created_at = 1704067200").execute(db.pool()).await.unwrap();
            sqlx::query("UPDATE repositories SET created_at = 1704067200").execute(db.pool()).await.unwrap();
            for (day, stored, ingress, egress, snaps) in [
                ("2024-03-31", 100_000_000_000i64, 0i64, 0i64, 0i64),
                ("2024-04-11", 400_000_000_000, 300_000_000_000, 7, 2),
                ("2024-04-20", 400_000_000_000, 0, 5, 1),
            ] {
                sqlx::query(
                    "INSERT INTO usage_daily (repo_id, day, tenant_id, ingress_bytes, egress_bytes, stored_bytes, \
                     stored_peak_bytes, object_count, snapshots) VALUES ($1, $2, $3, $4, $5, $6, $6, 1, $7)",
                )
                .bind(repo.id)
                .bind(day)
                .bind(t.id)
                .bind(ingress)
                .bind(egress)
                .bind(stored)
                .bind(snaps)
                .execute(db.pool())
                .await
                .unwrap();
            }
            let bill = db.billing(BillingOf::ProviderCustomers, Prices::Retail, "2024-04").await.unwrap();
            assert_eq!(bill.len(), 1);
            let b = &bill[0];
            assert_eq!((b.days, b.partial), (30, false));
            // 10 days at 100 GB + 20 days at 400 GB = 9000 GB-days / 30 = 300 GB.
            assert_eq!(b.avg_stored_bytes, 300_000_000_000);
            assert_eq!(b.peak_stored_bytes, 400_000_000_000);
            assert_eq!((b.ingress_bytes, b.egress_bytes, b.snapshots), (300_000_000_000, 12, 3));
            assert_eq!(b.base_cents, 1_000, "a twelfth of 120.00");
            assert_eq!(b.overage_bytes, 200_000_000_000, "above the 100 GB soft quota");
            assert_eq!(b.overage_cents, 1_000, "200 GB at 0.05");
            assert_eq!(b.total_cents, 2_000);
            let csv = to_csv(&bill);
            assert!(csv.starts_with(CSV_HEADER));
            assert!(csv.contains("\n2024-04,acme,office,30,false,300000000000,"), "{csv}");
            // A tenant that joined mid-month pays for its days only.
            sqlx::query("UPDATE tenants SET created_at = 1713139200").execute(db.pool()).await.unwrap(); // 2024-04-15
            let b = &db.billing(BillingOf::Tenant(t.id), Prices::Retail, "2024-04").await.unwrap()[0];
            assert_eq!((b.days, b.base_cents), (16, mul_div_round(12_000, 16, 360)));
            assert!(
                db.billing(BillingOf::ProviderCustomers, Prices::Retail, "2024-03").await.unwrap().is_empty(),
                "not a customer yet"
            );
            assert!(db.billing(BillingOf::ProviderCustomers, Prices::Retail, "2999-01").await.is_err(), "the future");
        }
    }
}
