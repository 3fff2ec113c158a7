//! Billing settings and issued invoices, of each issuer: the provider (to its own customers) and
//! every reseller (to its tenants). See [`Issuer`].
//!
//! An invoice is issued for one tenant and one finished month, once, by the tenant's seller: it
//! freezes the month's figures and lines ([`super::billing`]), the totals (net, tax, gross), the
//! currency, the tax rate and the issuer's details as they were, so reopening it shows the same
//! page after prices or settings change.
//!
//! **Numbers** are `PREFIX-YEAR-NNNNNN`: YEAR is the year of issue, NNNNNN counts the issuer's
//! invoices of that year from 1 without gaps, whatever the prefix. A number is unique per issuer
//! (two resellers may both choose INV-). Issuing, in steps:
//! 1. if the tenant's month already has an invoice, that invoice is the answer;
//! 2. in one transaction: increment the issuer's year counter (`invoice_sequences`, an upsert:
//!    under PostgreSQL it locks the counter's row until commit, under SQLite the write takes the
//!    database's write lock), so issuers of the same year queue here, one at a time, on one or
//!    many server processes;
//! 3. still in it, look again for an invoice of the tenant's month (one that committed while we
//!    queued): if there is one, roll back (the counter goes back too) and answer it;
//! 4. insert the invoice with the number; a unique violation (tenant and month, or number) rolls
//!    back the same way; commit.
//!
//! A number is taken only by a committed invoice, so the sequence has no gaps, and
//! `invoices(tenant_id, month)` is unique, so a month is never invoiced twice.

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;

pub use arca_api::BillingSettings;

use super::accounts::Tenant;
use super::billing::{month_range, BillingOf, InvoiceLine, Prices, TenantMonth};
use super::{col, is_unique_violation, now, Db, DbError, Result};
use crate::units::human_bytes;

/// Who bills a tenant, owns billing settings and numbers invoices: the provider for its own
/// customers, a reseller for its tenants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Issuer {
    /// The provider.
    Provider,
    /// The reseller with this id.
    Reseller(i64),
}

impl Issuer {
    /// The seller of `t`, who invoices it.
    pub fn of_tenant(t: &Tenant) -> Issuer {
        Issuer::of_reseller(t.reseller_id)
    }

    /// The reseller `reseller` (`None`: the provider).
    pub fn of_reseller(reseller: Option<i64>) -> Issuer {
        reseller.map_or(Issuer::Provider, Issuer::Reseller)
    }

    /// The reseller, `None` for the provider.
    pub fn reseller(self) -> Option<i64> {
        match self {
            Issuer::Provider => None,
            Issuer::Reseller(id) => Some(id),
        }
    }

    /// The `issuer` column: 0 for the provider (reseller ids start at 1).
    fn key(self) -> i64 {
        self.reseller().unwrap_or(0)
    }
}

/// Whom an invoice bills: a tenant (by its seller), or a reseller (by the provider, for its
/// tenants at wholesale prices).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Customer {
    /// The tenant with this id.
    Tenant(i64),
    /// The reseller with this id.
    Reseller(i64),
}

impl Customer {
    /// The `(tenant_id, customer_reseller_id)` columns: the other one is 0.
    fn keys(self) -> (i64, i64) {
        match self {
            Customer::Tenant(id) => (id, 0),
            Customer::Reseller(id) => (0, id),
        }
    }
}

/// An issued invoice, with everything it said when it was issued.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Invoice {
    /// Who issued it: `None` the provider, otherwise the reseller's id.
    pub issuer_reseller_id: Option<i64>,
    /// `PREFIX-YEAR-NNNNNN`, unique for its issuer.
    pub number: String,
    /// The year of issue.
    pub year: i64,
    /// Its place in the year's sequence (1, 2, …; no gaps).
    pub seq: i64,
    /// The tenant billed (0 for an invoice to a reseller); kept after the tenant is deleted:
    /// invoices are their issuer's records.
    pub tenant_id: i64,
    /// The reseller billed, for the provider's wholesale invoices.
    pub customer_reseller_id: Option<i64>,
    /// The customer's name when issued (the tenant's, or the reseller's).
    pub tenant: String,
    /// The month billed, `YYYY-MM`.
    pub month: String,
    /// When it was issued (Unix seconds).
    pub issued_at: i64,
    /// The day of issue, `YYYY-MM-DD` (UTC).
    pub issue_date: String,
    /// The day payment is due: the day of issue plus the payment term.
    pub due_date: String,
    /// ISO 4217 code of every amount.
    pub currency: String,
    /// Tax rate in basis points.
    pub tax_basis_points: i64,
    /// Sum of the lines, in cents.
    pub net_cents: i64,
    /// Tax on the net, rounded half up on cents.
    pub tax_cents: i64,
    /// Net plus tax.
    pub gross_cents: i64,
    /// Who issued it.
    pub issued_by: String,
    /// The frozen details.
    pub body: InvoiceBody,
}

/// What an invoice froze besides its totals (stored as JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InvoiceBody {
    /// The issuer's details (and terms) when issued.
    pub issuer: BillingSettings,
    /// The customer's name for people when issued.
    pub customer_display_name: String,
    /// First day billed (the 1st, or the day the tenant was created).
    pub period_from: String,
    /// Last day billed.
    pub period_to: String,
    /// The month's figures and lines as computed at issue. For an invoice to a reseller: one
    /// line per tenant, and the usage figures summed over them.
    pub figures: TenantMonth,
    /// For an invoice to a reseller: each of its tenants' month at wholesale prices, behind the
    /// lines.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tenants: Vec<TenantMonth>,
}

const SETTINGS_COLUMNS: &str =
    "currency, tax_basis_points, issuer_name, issuer_address, issuer_tax_id, number_prefix, payment_days";

const INVOICE_COLUMNS: &str = "issuer, number, year, seq, tenant_id, customer_reseller_id, tenant_name, month, \
                               issued_at, issue_date, due_date, currency, tax_basis_points, net_cents, tax_cents, \
                               gross_cents, issued_by, body";

fn settings_from(row: &AnyRow) -> Result<BillingSettings> {
    let address: String = col(row, "issuer_address")?;
    Ok(BillingSettings {
        currency: col(row, "currency")?,
        tax_basis_points: col(row, "tax_basis_points")?,
        issuer_name: col(row, "issuer_name")?,
        issuer_address: address.lines().map(str::to_string).filter(|l| !l.is_empty()).collect(),
        issuer_tax_id: col(row, "issuer_tax_id")?,
        number_prefix: col(row, "number_prefix")?,
        payment_days: col(row, "payment_days")?,
    })
}

fn invoice_from(row: &AnyRow) -> Result<Invoice> {
    let body: String = col(row, "body")?;
    let body: InvoiceBody =
        serde_json::from_str(&body).map_err(|e| DbError::Invalid(format!("invoice body is not readable JSON: {e}")))?;
    let issuer: i64 = col(row, "issuer")?;
    Ok(Invoice {
        issuer_reseller_id: (issuer != 0).then_some(issuer),
        number: col(row, "number")?,
        year: col(row, "year")?,
        seq: col(row, "seq")?,
        tenant_id: col(row, "tenant_id")?,
        customer_reseller_id: Some(col::<i64>(row, "customer_reseller_id")?).filter(|&r| r != 0),
        tenant: col(row, "tenant_name")?,
        month: col(row, "month")?,
        issued_at: col(row, "issued_at")?,
        issue_date: col(row, "issue_date")?,
        due_date: col(row, "due_date")?,
        currency: col(row, "currency")?,
        tax_basis_points: col(row, "tax_basis_points")?,
        net_cents: col(row, "net_cents")?,
        tax_cents: col(row, "tax_cents")?,
        gross_cents: col(row, "gross_cents")?,
        issued_by: col(row, "issued_by")?,
        body,
    })
}

impl Db {
    /// The billing settings `issuer` saved. Until then: the provider's defaults
    /// ([`BillingSettings::default`]); for a reseller, the provider's currency, tax rate and
    /// payment term (what its prices were likely typed in) with no issuer details, so its
    /// figures read as before it saved its own.
    pub async fn billing_settings(&self, issuer: Issuer) -> Result<BillingSettings> {
        if let Some(s) = self.saved_billing_settings(issuer).await? {
            return Ok(s);
        }
        match issuer {
            Issuer::Provider => Ok(BillingSettings::default()),
            Issuer::Reseller(_) => {
                let provider = self.saved_billing_settings(Issuer::Provider).await?.unwrap_or_default();
                Ok(BillingSettings {
                    currency: provider.currency,
                    tax_basis_points: provider.tax_basis_points,
                    payment_days: provider.payment_days,
                    ..BillingSettings::default()
                })
            }
        }
    }

    /// The billing settings `issuer` saved, if it did.
    async fn saved_billing_settings(&self, issuer: Issuer) -> Result<Option<BillingSettings>> {
        let row = super::dyn_query(format!("SELECT {SETTINGS_COLUMNS} FROM billing_settings WHERE issuer = $1"))
            .bind(issuer.key())
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(settings_from).transpose()
    }

    /// Whether `issuer` has saved its billing settings (invoices need an issuer's details).
    pub async fn billing_settings_saved(&self, issuer: Issuer) -> Result<bool> {
        Ok(self.saved_billing_settings(issuer).await?.is_some())
    }

    /// Stores `issuer`'s billing settings (checked by the caller: [`crate::service::billing`]).
    pub async fn set_billing_settings(&self, issuer: Issuer, s: &BillingSettings, by: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO billing_settings (issuer, currency, tax_basis_points, issuer_name, issuer_address, \
             issuer_tax_id, number_prefix, payment_days, updated_at, updated_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT (issuer) DO UPDATE SET currency = $2, tax_basis_points = $3, issuer_name = $4, \
             issuer_address = $5, issuer_tax_id = $6, number_prefix = $7, payment_days = $8, updated_at = $9, \
             updated_by = $10",
        )
        .bind(issuer.key())
        .bind(&s.currency)
        .bind(s.tax_basis_points)
        .bind(&s.issuer_name)
        .bind(s.issuer_address.join("\n"))
        .bind(&s.issuer_tax_id)
        .bind(&s.number_prefix)
        .bind(s.payment_days)
        .bind(now())
        .bind(by)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The invoice `issuer` numbered `number`, if any.
    pub async fn invoice(&self, issuer: Issuer, number: &str) -> Result<Option<Invoice>> {
        let row = super::dyn_query(format!("SELECT {INVOICE_COLUMNS} FROM invoices WHERE issuer = $1 AND number = $2"))
            .bind(issuer.key())
            .bind(number.to_string())
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(invoice_from).transpose()
    }

    /// The invoice of a customer's month, if issued.
    pub async fn invoice_of(&self, customer: Customer, month: &str) -> Result<Option<Invoice>> {
        let (tenant_id, reseller_id) = customer.keys();
        let row = super::dyn_query(format!(
            "SELECT {INVOICE_COLUMNS} FROM invoices WHERE tenant_id = $1 AND customer_reseller_id = $2 AND month = $3"
        ))
        .bind(tenant_id)
        .bind(reseller_id)
        .bind(month.to_string())
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(invoice_from).transpose()
    }

    /// The numbers of the invoices `issuer` issued to tenants for `month`, by tenant name (names
    /// are never reused while the tenant exists).
    pub async fn invoice_numbers(
        &self,
        issuer: Issuer,
        month: &str,
    ) -> Result<std::collections::BTreeMap<String, String>> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT tenant_name, number FROM invoices WHERE issuer = $1 AND month = $2 AND customer_reseller_id = 0",
        )
        .bind(issuer.key())
        .bind(month.to_string())
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().collect())
    }

    /// Issued invoices, newest first, at most `limit`: one tenant's (whoever issued them), or
    /// every invoice `issuer` issued.
    pub async fn invoices(&self, of: InvoicesOf, limit: i64) -> Result<Vec<Invoice>> {
        let limit = limit.clamp(1, 1000);
        let (filter, key) = match of {
            InvoicesOf::Tenant(id) => ("tenant_id", id),
            InvoicesOf::Reseller(id) => ("customer_reseller_id", id),
            InvoicesOf::Issuer(i) => ("issuer", i.key()),
        };
        let rows = super::dyn_query(format!(
            "SELECT {INVOICE_COLUMNS} FROM invoices WHERE {filter} = $1 ORDER BY year DESC, seq DESC \
             LIMIT $2"
        ))
        .bind(key)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(invoice_from).collect()
    }

    /// Issues the invoice of `tenant_id`'s finished `month` in its seller's name (or answers the
    /// one already issued): `(invoice, true)` when this call issued it. See the module's steps.
    pub async fn issue_invoice(&self, tenant_id: i64, month: &str, issued_by: &str) -> Result<(Invoice, bool)> {
        self.issue_invoice_on(tenant_id, month, issued_by, chrono::Utc::now().date_naive()).await
    }

    /// [`Db::issue_invoice`] as of `today` (tests move the clock).
    pub(crate) async fn issue_invoice_on(
        &self,
        tenant_id: i64,
        month: &str,
        issued_by: &str,
        today: NaiveDate,
    ) -> Result<(Invoice, bool)> {
        let (first, last) = finished_month(month, today)?;
        let customer = Customer::Tenant(tenant_id);
        if let Some(inv) = self.invoice_of(customer, month).await? {
            return Ok((inv, false));
        }
        let tenant = self.tenant_by_id(tenant_id).await?;
        let issuer = Issuer::of_tenant(&tenant);
        let settings = self.issuer_settings(issuer).await?;
        let figures = self
            .billing_on(BillingOf::Tenant(tenant_id), Prices::Retail, month, today)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| {
                DbError::Invalid(format!(
                    "tenant {} did not exist in {month}: there is nothing to invoice",
                    tenant.name
                ))
            })?;
        if figures.plan.is_none() {
            return Err(DbError::Invalid(format!(
                "tenant {} has no plan, so there is nothing to charge: assign a plan first",
                tenant.name
            )));
        }
        let created = chrono::DateTime::from_timestamp(tenant.created_at, 0).map_or(first, |d| d.date_naive());
        let body = InvoiceBody {
            issuer: settings,
            customer_display_name: tenant.display_name.clone(),
            period_from: first.max(created).to_string(),
            period_to: last.to_string(),
            figures,
            tenants: Vec::new(),
        };
        self.insert_invoice(issuer, customer, &tenant.name, month, issued_by, today, body).await
    }

    /// Issues the provider's invoice to reseller `reseller_id` for its finished `month`: each of
    /// its tenants at the wholesale price, the same figures as its statement, or answers the one
    /// already issued. `(invoice, true)` when this call issued it.
    pub async fn issue_reseller_invoice(
        &self,
        reseller_id: i64,
        month: &str,
        issued_by: &str,
    ) -> Result<(Invoice, bool)> {
        self.issue_reseller_invoice_on(reseller_id, month, issued_by, chrono::Utc::now().date_naive()).await
    }

    /// [`Db::issue_reseller_invoice`] as of `today` (tests move the clock).
    pub(crate) async fn issue_reseller_invoice_on(
        &self,
        reseller_id: i64,
        month: &str,
        issued_by: &str,
        today: NaiveDate,
    ) -> Result<(Invoice, bool)> {
        let (first, last) = finished_month(month, today)?;
        let customer = Customer::Reseller(reseller_id);
        if let Some(inv) = self.invoice_of(customer, month).await? {
            return Ok((inv, false));
        }
        let reseller = self.reseller_by_id(reseller_id).await?;
        let settings = self.issuer_settings(Issuer::Provider).await?;
        let tenants =
            self.billing_on(BillingOf::ResellerCustomers(reseller_id), Prices::Wholesale, month, today).await?;
        if tenants.is_empty() {
            return Err(DbError::Invalid(format!(
                "reseller {} had no tenants in {month}: there is nothing to invoice",
                reseller.name
            )));
        }
        let figures = wholesale_summary(&reseller.name, &reseller.display_name, month, &settings, &tenants);
        let body = InvoiceBody {
            issuer: settings,
            customer_display_name: reseller.display_name.clone(),
            period_from: first.to_string(),
            period_to: last.to_string(),
            figures,
            tenants,
        };
        self.insert_invoice(Issuer::Provider, customer, &reseller.name, month, issued_by, today, body).await
    }

    /// The saved settings `issuer` issues with, or why it cannot issue yet.
    async fn issuer_settings(&self, issuer: Issuer) -> Result<BillingSettings> {
        self.saved_billing_settings(issuer).await?.ok_or_else(|| {
            DbError::Invalid(
                "save the billing settings first (issuer, currency, tax rate, numbering): an invoice needs them".into(),
            )
        })
    }

    /// Steps 2 to 4 of the module's: numbers and stores `body` as `issuer`'s invoice to
    /// `customer` (named `customer_name`) for `month`, or answers the one another request
    /// stored meanwhile.
    #[allow(clippy::too_many_arguments)]
    async fn insert_invoice(
        &self,
        issuer: Issuer,
        customer: Customer,
        customer_name: &str,
        month: &str,
        issued_by: &str,
        today: NaiveDate,
        body: InvoiceBody,
    ) -> Result<(Invoice, bool)> {
        let year = i64::from(today.year());
        let payment_days = body.issuer.payment_days.clamp(0, crate::limits::MAX_PAYMENT_DAYS) as u64;
        let due = today.checked_add_days(chrono::Days::new(payment_days)).unwrap_or(today);
        let body_json = serde_json::to_string(&body).map_err(|e| DbError::Invalid(format!("invoice body: {e}")))?;
        let figures = &body.figures;
        let (tenant_id, reseller_id) = customer.keys();

        let mut tx = self.pool().begin().await?;
        // Step 2: the issuer's year counter; from here until commit, its other issuers wait.
        let seq: i64 = sqlx::query_scalar(
            "INSERT INTO invoice_sequences (issuer, year, last_seq) VALUES ($1, $2, 1) \
             ON CONFLICT (issuer, year) DO UPDATE SET last_seq = invoice_sequences.last_seq + 1 RETURNING last_seq",
        )
        .bind(issuer.key())
        .bind(year)
        .fetch_one(&mut *tx)
        .await?;
        // Step 3: issued by someone else while we queued?
        let taken: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM invoices WHERE tenant_id = $1 AND customer_reseller_id = $2 AND month = $3",
        )
        .bind(tenant_id)
        .bind(reseller_id)
        .bind(month.to_string())
        .fetch_one(&mut *tx)
        .await?;
        if taken > 0 {
            tx.rollback().await?;
            return self.existing(customer, month).await;
        }
        let number = format!("{}-{year}-{seq:06}", body.issuer.number_prefix);
        let inserted = super::dyn_query(format!(
            "INSERT INTO invoices ({INVOICE_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)"
        ))
        .bind(issuer.key())
        .bind(number.clone())
        .bind(year)
        .bind(seq)
        .bind(tenant_id)
        .bind(reseller_id)
        .bind(customer_name.to_string())
        .bind(month.to_string())
        .bind(now())
        .bind(today.to_string())
        .bind(due.to_string())
        .bind(figures.currency.clone())
        .bind(figures.tax_basis_points)
        .bind(figures.total_cents)
        .bind(figures.tax_cents)
        .bind(figures.gross_cents)
        .bind(issued_by.to_string())
        .bind(body_json)
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => {
                // Step 4: the same month, issued meanwhile (the counter rolls back with us).
                tx.rollback().await?;
                return self.existing(customer, month).await;
            }
            Err(e) => return Err(e.into()),
        }
        tx.commit().await?;
        let inv = self
            .invoice(issuer, &number)
            .await?
            .ok_or_else(|| DbError::NotFound(format!("invoice {number} vanished after it was issued")))?;
        Ok((inv, true))
    }

    async fn existing(&self, customer: Customer, month: &str) -> Result<(Invoice, bool)> {
        let inv = self.invoice_of(customer, month).await?.ok_or_else(|| {
            DbError::Conflict(format!("the invoice of {month} was being issued by another request: try again"))
        })?;
        Ok((inv, false))
    }
}

/// The first and last day of `month` if it is over by `today` (only finished months are
/// invoiced; the running one is a preview).
fn finished_month(month: &str, today: NaiveDate) -> Result<(NaiveDate, NaiveDate)> {
    let (first, last) = month_range(month)?;
    if last >= today {
        return Err(DbError::Invalid(format!(
            "{month} is not finished: it can be previewed, and invoiced from {}",
            last.succ_opt().unwrap_or(last)
        )));
    }
    Ok((first, last))
}

/// An invoice's figures for a reseller's month: one line per tenant (its wholesale net), usage
/// summed over the tenants, and the net taxed once ([`super::billing::totals`]), the same
/// totals as the reseller's statement.
fn wholesale_summary(
    name: &str,
    display_name: &str,
    month: &str,
    settings: &BillingSettings,
    tenants: &[TenantMonth],
) -> TenantMonth {
    let sum = |f: fn(&TenantMonth) -> i64| tenants.iter().fold(0i64, |s, t| s.saturating_add(f(t)));
    let (net, tax, gross) = super::billing::totals(tenants, settings.tax_basis_points);
    let lines = tenants
        .iter()
        .map(|t| {
            let mut text = format!(
                "{} ({}): plan {}, {} of {} days",
                t.display_name,
                t.tenant,
                t.plan.as_deref().unwrap_or("none"),
                t.days,
                t.days_in_month
            );
            if t.overage_cents > 0 {
                text += &format!(", {} above the soft quota", human_bytes(t.overage_bytes));
            }
            InvoiceLine { text, cents: t.total_cents }
        })
        .collect();
    let days_in_month = tenants.first().map_or(0, |t| t.days_in_month);
    TenantMonth {
        month: month.to_string(),
        tenant: name.to_string(),
        reseller_id: None,
        display_name: display_name.to_string(),
        plan: None,
        days: tenants.iter().map(|t| t.days).max().unwrap_or(0),
        days_in_month,
        partial: false,
        avg_stored_bytes: sum(|t| t.avg_stored_bytes),
        peak_stored_bytes: sum(|t| t.peak_stored_bytes),
        logical_bytes: sum(|t| t.logical_bytes),
        ingress_bytes: sum(|t| t.ingress_bytes),
        egress_bytes: sum(|t| t.egress_bytes),
        snapshots: sum(|t| t.snapshots),
        soft_quota_bytes: 0,
        base_cents: sum(|t| t.base_cents),
        overage_bytes: sum(|t| t.overage_bytes),
        overage_cents: sum(|t| t.overage_cents),
        total_cents: net,
        currency: settings.currency.clone(),
        tax_basis_points: settings.tax_basis_points,
        tax_cents: tax,
        gross_cents: gross,
        lines,
    }
}

/// Whose invoices [`Db::invoices`] lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvoicesOf {
    /// One tenant's, whoever issued them.
    Tenant(i64),
    /// The provider's to one reseller.
    Reseller(i64),
    /// Every invoice one issuer issued.
    Issuer(Issuer),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::accounts::Plan;
    use crate::db::billing::{billed_days, tax_cents, BillingOf, Prices};
    use crate::db::testing::databases;

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn settings(prefix: &str, tax_basis_points: i64) -> BillingSettings {
        BillingSettings {
            currency: "EUR".into(),
            tax_basis_points,
            issuer_name: "Host Ltd".into(),
            issuer_address: vec!["1 Road".into(), "Town".into()],
            issuer_tax_id: "GB123".into(),
            number_prefix: prefix.into(),
            payment_days: 14,
        }
    }

    /// A plan whose twelfth is `monthly` cents, and tenants on it created on 2024-01-01.
    async fn customers(db: &Db, monthly: i64, names: &[&str]) -> Vec<i64> {
        let plan = Plan {
            name: "office".into(),
            hard_quota_bytes: 0,
            soft_quota_bytes: 0,
            lock_days: 0,
            compliance: false,
            yearly_price_cents: monthly * 12,
            overage_cents_per_gb: 0,
            resells: None,
            reseller: None,
        };
        db.create_plan(&plan).await.unwrap();
        let mut ids = Vec::new();
        for n in names {
            ids.push(db.create_tenant(n, &n.to_uppercase(), Some("office")).await.unwrap().id);
        }
        sqlx::query("UPDATE tenants SET created_at = 1704067200").execute(db.pool()).await.unwrap();
        ids
    }

    #[test]
    fn days_and_tax_follow_one_rule() {
        // A finished month, a tenant that joined on the 4th of a 31-day month: 28 of 31.
        let (first, last) = month_range("2026-01").unwrap();
        assert_eq!(billed_days(first, last, day("2026-01-04"), day("2026-03-01")), (28, 31));
        assert_eq!(billed_days(first, last, day("2025-06-01"), day("2026-03-01")), (31, 31));
        // The current month counts up to today.
        assert_eq!(billed_days(first, last, day("2025-06-01"), day("2026-01-10")), (10, 31));
        assert_eq!(billed_days(first, last, day("2026-01-04"), day("2026-01-10")), (7, 31));
        assert_eq!(billed_days(first, last, day("2026-02-01"), day("2026-03-01")), (0, 31), "not yet a customer");
        // Tax: once on the net, half up on cents.
        assert_eq!(tax_cents(1001, 5000), 501, "500.5 rounds up");
        assert_eq!(tax_cents(1, 4999), 0, "0.4999 rounds down");
        assert_eq!(tax_cents(333, 1900), 63, "63.27");
        assert_eq!(tax_cents(1000, 2000), 200);
        assert_eq!(tax_cents(0, 2000), 0);
        assert_eq!(tax_cents(crate::limits::MAX_CENTS * 12, 10_000), crate::limits::MAX_CENTS * 12, "no overflow");
    }

    #[tokio::test]
    async fn invoices_are_numbered_without_gaps_once_per_month_and_frozen() {
        for (db, _guard) in databases().await {
            let ids = customers(&db, 1001, &["acme", "globex"]).await;
            let plainly = db.create_tenant("noplan", "", None).await.unwrap();
            sqlx::query("UPDATE tenants SET created_at = 1704067200").execute(db.pool()).await.unwrap();
            let today = day("2024-05-03");
            // No settings yet: refused, nothing numbered.
            let e = db.issue_invoice_on(ids[0], "2024-04", "user:admin", today).await.unwrap_err();
            assert!(e.to_string().contains("billing settings"), "{e}");
            db.set_billing_settings(Issuer::Provider, &settings("INV", 5000), "user:admin").await.unwrap();
            // The current month is only a preview; a tenant without a plan has nothing to charge.
            let e = db.issue_invoice_on(ids[0], "2024-05", "user:admin", today).await.unwrap_err();
            assert!(e.to_string().contains("not finished"), "{e}");
            assert!(db.issue_invoice_on(plainly.id, "2024-04", "user:admin", today).await.is_err());
            assert!(db.issue_invoice_on(ids[0], "2023-12", "user:admin", today).await.is_err(), "before it existed");

            let (a, new) = db.issue_invoice_on(ids[0], "2024-04", "user:admin", today).await.unwrap();
            assert!(new);
            assert_eq!((a.number.as_str(), a.year, a.seq), ("INV-2024-000001", 2024, 1));
            assert_eq!((a.issue_date.as_str(), a.due_date.as_str()), ("2024-05-03", "2024-05-17"));
            // 30 of 30 days at 1001 a month; 50 % tax on the net: 500.5 rounds up to 501.
            assert_eq!((a.net_cents, a.tax_cents, a.gross_cents), (1001, 501, 1502));
            assert_eq!((a.body.figures.days, a.body.figures.days_in_month), (30, 30));
            assert!(a.body.figures.lines[0].text.contains("30 of 30 days"), "{:?}", a.body.figures.lines);
            assert_eq!(a.body.period_from, "2024-04-01");
            assert_eq!(a.body.issuer.issuer_address, vec!["1 Road", "Town"]);

            // Twice: the same invoice.
            let (again, new) = db.issue_invoice_on(ids[0], "2024-04", "user:admin", today).await.unwrap();
            assert!(!new);
            assert_eq!(again, a);
            // The refusals above took no number: the next is 2.
            let (b, _) = db.issue_invoice_on(ids[1], "2024-04", "user:admin", today).await.unwrap();
            assert_eq!(b.number, "INV-2024-000002");
            // A new prefix continues the year's sequence; a new year starts at 1.
            db.set_billing_settings(Issuer::Provider, &settings("HOST", 2000), "user:admin").await.unwrap();
            let (c, _) = db.issue_invoice_on(ids[0], "2024-03", "user:admin", today).await.unwrap();
            assert_eq!(c.number, "HOST-2024-000003");
            let (d, _) = db.issue_invoice_on(ids[0], "2024-12", "user:admin", day("2025-01-02")).await.unwrap();
            assert_eq!(d.number, "HOST-2025-000001");

            // Prices and settings change; the issued invoice does not.
            sqlx::query("UPDATE plans SET yearly_price_cents = 999999").execute(db.pool()).await.unwrap();
            db.set_billing_settings(Issuer::Provider, &settings("ZZ", 0), "user:admin").await.unwrap();
            let reopened = db.invoice(Issuer::Provider, "INV-2024-000001").await.unwrap().unwrap();
            assert_eq!(reopened, a);
            assert_eq!(db.invoice_of(Customer::Tenant(ids[0]), "2024-04").await.unwrap().unwrap().number, a.number);
            let listed: Vec<String> =
                db.invoices(InvoicesOf::Tenant(ids[0]), 10).await.unwrap().into_iter().map(|i| i.number).collect();
            assert_eq!(listed, vec!["HOST-2025-000001", "HOST-2024-000003", "INV-2024-000001"]);
            assert_eq!(db.invoices(InvoicesOf::Issuer(Issuer::Provider), 10).await.unwrap().len(), 4);
            assert_eq!(db.invoice_numbers(Issuer::Provider, "2024-04").await.unwrap().len(), 2);
            assert!(db.invoice(Issuer::Provider, "INV-2024-000009").await.unwrap().is_none());
        }
    }

    /// Each seller numbers its own invoices, in its own currency and name: a reseller may use the
    /// provider's prefix, its numbers start at 1, and one issuer's number never finds another's
    /// invoice. A reseller that has not saved its settings bills in the provider's currency and
    /// cannot issue yet.
    #[tokio::test]
    async fn resellers_issue_their_own_invoices() {
        for (db, _guard) in databases().await {
            let direct = customers(&db, 1000, &["direct"]).await[0];
            let r = db.create_reseller("r", "", 0, "r-admin", "a long enough password").await.unwrap();
            let r2 = db.create_reseller("r2", "", 0, "r2-admin", "a long enough password").await.unwrap();
            let gold = Plan {
                name: "gold".into(),
                hard_quota_bytes: 0,
                soft_quota_bytes: 0,
                lock_days: 0,
                compliance: false,
                yearly_price_cents: 36_000,
                overage_cents_per_gb: 0,
                resells: Some("office".into()),
                reseller: None,
            };
            db.create_plan_for(Some(r.id), &gold).await.unwrap();
            db.create_plan_for(Some(r2.id), &Plan { name: "tin".into(), ..gold.clone() }).await.unwrap();
            let c1 = db.create_tenant_for(Some(r.id), "c1", "", Some("gold")).await.unwrap().id;
            let c2 = db.create_tenant_for(Some(r.id), "c2", "", Some("gold")).await.unwrap().id;
            let d1 = db.create_tenant_for(Some(r2.id), "d1", "", Some("tin")).await.unwrap().id;
            sqlx::query("UPDATE tenants SET created_at = 1704067200").execute(db.pool()).await.unwrap();
            let today = day("2024-05-03");
            db.set_billing_settings(Issuer::Provider, &settings("INV", 2000), "user:admin").await.unwrap();
            let mut own = settings("INV", 810);
            own.currency = "CHF".into();
            own.issuer_name = "Reseller AG".into();
            db.set_billing_settings(Issuer::Reseller(r.id), &own, "user:r-admin").await.unwrap();

            // Retail figures are in the seller's currency and tax; wholesale in the provider's.
            let bill = |of, prices| db.billing_on(of, prices, "2024-04", today);
            let retail = bill(BillingOf::ResellerCustomers(r.id), Prices::Retail).await.unwrap();
            assert!(retail.iter().all(|m| (m.currency.as_str(), m.tax_basis_points) == ("CHF", 810)), "{retail:?}");
            let wholesale = bill(BillingOf::AllResellerCustomers, Prices::Wholesale).await.unwrap();
            let of: Vec<(&str, Option<i64>)> = wholesale.iter().map(|m| (m.tenant.as_str(), m.reseller_id)).collect();
            assert_eq!(of, [("c1", Some(r.id)), ("c2", Some(r.id)), ("d1", Some(r2.id))]);
            assert!(wholesale.iter().all(|m| (m.currency.as_str(), m.tax_basis_points) == ("EUR", 2000)));
            // r2 has not saved its own: the provider's currency and rate, and no invoices.
            let unsaved = &bill(BillingOf::Tenant(d1), Prices::Retail).await.unwrap()[0];
            assert_eq!((unsaved.currency.as_str(), unsaved.tax_basis_points), ("EUR", 2000));
            let e = db.issue_invoice_on(d1, "2024-04", "user:r2-admin", today).await.unwrap_err();
            assert!(e.to_string().contains("billing settings"), "{e}");
            assert_eq!(db.billing_settings(Issuer::Reseller(r2.id)).await.unwrap().issuer_name, "");

            let (p1, _) = db.issue_invoice_on(direct, "2024-04", "user:admin", today).await.unwrap();
            let (a, _) = db.issue_invoice_on(c1, "2024-04", "user:r-admin", today).await.unwrap();
            let (b, _) = db.issue_invoice_on(c2, "2024-04", "user:r-admin", today).await.unwrap();
            assert_eq!((p1.number.as_str(), p1.issuer_reseller_id), ("INV-2024-000001", None));
            assert_eq!((a.number.as_str(), a.issuer_reseller_id), ("INV-2024-000001", Some(r.id)));
            assert_eq!(b.number, "INV-2024-000002");
            // 360.00 a year: 30.00 for April, 8.1 % tax in CHF, from the reseller's letterhead.
            assert_eq!((a.currency.as_str(), a.net_cents, a.tax_cents, a.gross_cents), ("CHF", 3000, 243, 3243));
            assert_eq!(a.body.issuer.issuer_name, "Reseller AG");
            assert!(a.body.figures.lines[0].text.contains("Plan gold"), "{:?}", a.body.figures.lines);

            assert_eq!(db.invoice(Issuer::Provider, "INV-2024-000001").await.unwrap().unwrap().tenant, "direct");
            assert_eq!(db.invoice(Issuer::Reseller(r.id), "INV-2024-000001").await.unwrap().unwrap().tenant, "c1");
            assert!(db.invoice(Issuer::Provider, "INV-2024-000002").await.unwrap().is_none(), "r's number");
            assert!(db.invoice(Issuer::Reseller(r2.id), "INV-2024-000001").await.unwrap().is_none());
            let listed = |of| db.invoices(of, 10);
            assert_eq!(listed(InvoicesOf::Issuer(Issuer::Provider)).await.unwrap().len(), 1);
            assert_eq!(listed(InvoicesOf::Issuer(Issuer::Reseller(r.id))).await.unwrap().len(), 2);
            assert_eq!(listed(InvoicesOf::Tenant(c2)).await.unwrap()[0].number, "INV-2024-000002");
            let numbers = db.invoice_numbers(Issuer::Reseller(r.id), "2024-04").await.unwrap();
            assert_eq!(numbers.keys().collect::<Vec<_>>(), ["c1", "c2"]);

            // The provider invoices each reseller its statement, in the provider's sequence.
            let e = db.issue_reseller_invoice_on(r.id, "2024-05", "user:admin", today).await.unwrap_err();
            assert!(e.to_string().contains("not finished"), "{e}");
            let (w, new) = db.issue_reseller_invoice_on(r.id, "2024-04", "user:admin", today).await.unwrap();
            assert!(new);
            let who = (w.number.as_str(), w.issuer_reseller_id, w.customer_reseller_id);
            assert_eq!(who, ("INV-2024-000002", None, Some(r.id)));
            assert_eq!((w.tenant_id, w.tenant.as_str(), w.currency.as_str()), (0, "r", "EUR"));
            let statement = bill(BillingOf::ResellerCustomers(r.id), Prices::Wholesale).await.unwrap();
            let (net, tax, gross) = crate::db::billing::totals(&statement, 2000);
            assert_eq!((w.net_cents, w.tax_cents, w.gross_cents), (net, tax, gross), "the statement's totals");
            assert_eq!((net, tax, gross), (2000, 400, 2400), "two tenants at a twelfth of office's 120.00");
            let unlabelled: Vec<TenantMonth> =
                statement.iter().map(|m| TenantMonth { reseller_id: None, ..m.clone() }).collect();
            assert_eq!(w.body.tenants, unlabelled, "the tenants behind the lines (the grouping id is not kept)");
            let texts: Vec<&str> = w.body.figures.lines.iter().map(|l| l.text.as_str()).collect();
            assert_eq!(texts, ["c1 (c1): plan office, 30 of 30 days", "c2 (c2): plan office, 30 of 30 days"]);
            let (again, new) = db.issue_reseller_invoice_on(r.id, "2024-04", "user:admin", today).await.unwrap();
            assert!(!new);
            assert_eq!(again, w, "once per month");
            let (w2, _) = db.issue_reseller_invoice_on(r2.id, "2024-04", "user:admin", today).await.unwrap();
            assert_eq!(w2.number, "INV-2024-000003");
            let empty = db.create_reseller("r3", "", 0, "r3-admin", "a long enough password").await.unwrap();
            let e = db.issue_reseller_invoice_on(empty.id, "2024-04", "user:admin", today).await.unwrap_err();
            assert!(e.to_string().contains("no tenants"), "{e}");
            assert_eq!(db.invoices(InvoicesOf::Reseller(r.id), 10).await.unwrap(), vec![w.clone()]);
            let provider_numbers = db.invoice_numbers(Issuer::Provider, "2024-04").await.unwrap();
            assert_eq!(provider_numbers.keys().collect::<Vec<_>>(), ["direct"], "tenants' invoices only");
            assert_eq!(db.invoice_of(Customer::Reseller(r.id), "2024-04").await.unwrap(), Some(w));
        }
    }

    /// Many requests at once, as from two server processes: the same tenant's month gets one
    /// invoice, and different tenants get consecutive numbers with no gap.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_issues_are_unique_and_gapless() {
        for (db, _guard) in databases().await {
            let names: Vec<String> = (0..6).map(|i| format!("t{i}")).collect();
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            let ids = customers(&db, 500, &refs).await;
            db.set_billing_settings(Issuer::Provider, &settings("INV", 2000), "user:admin").await.unwrap();
            let today = day("2024-05-03");

            let mut same = tokio::task::JoinSet::new();
            for _ in 0..8 {
                let db = db.clone();
                let id = ids[0];
                same.spawn(async move { db.issue_invoice_on(id, "2024-04", "user:admin", today).await.unwrap() });
            }
            let mut numbers = Vec::new();
            let mut created = 0;
            while let Some(r) = same.join_next().await {
                let (inv, new) = r.unwrap();
                numbers.push(inv.number);
                created += usize::from(new);
            }
            assert_eq!(created, 1, "issued once");
            assert!(numbers.iter().all(|n| n == "INV-2024-000001"), "{numbers:?}");

            let mut many = tokio::task::JoinSet::new();
            for &id in &ids[1..] {
                for _ in 0..2 {
                    let db = db.clone();
                    many.spawn(async move { db.issue_invoice_on(id, "2024-04", "user:admin", today).await.unwrap() });
                }
            }
            while let Some(r) = many.join_next().await {
                r.unwrap();
            }
            let mut seqs: Vec<i64> = db
                .invoices(InvoicesOf::Issuer(Issuer::Provider), 100)
                .await
                .unwrap()
                .into_iter()
                .map(|i| i.seq)
                .collect();
            seqs.sort();
            assert_eq!(seqs, (1..=6).collect::<Vec<i64>>(), "one invoice a tenant, numbered 1 to 6");
            let last: i64 =
                sqlx::query_scalar("SELECT last_seq FROM invoice_sequences WHERE issuer = 0 AND year = 2024")
                    .fetch_one(db.pool())
                    .await
                    .unwrap();
            assert_eq!(last, 6, "no number was taken and dropped");
        }
    }
}
