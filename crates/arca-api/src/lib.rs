//! The request and answer bodies of the arca server's account API, shared by the server and its
//! clients (`arca admin`), so both sides read and write the same typed shapes instead of untyped
//! JSON. Only data and the small rules that belong to it live here: no I/O, no database.
//!
//! Field names are the API's (see `docs/api.md` and `docs/openapi.yaml`).
#![forbid(unsafe_code)]

pub mod agent;

use serde::{Deserialize, Serialize};

/// What a principal is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Provider staff with every right (plans, tenants, quotas, any repository).
    ProviderAdmin,
    /// Provider staff who can see everything and run scrubs, but change nothing of a tenant's.
    Operator,
    /// Manages one tenant: its users, repositories and devices; may forget and prune.
    TenantAdmin,
    /// A tenant's user: reads and backs up the tenant's repositories, never deletes.
    TenantUser,
    /// A backup client scoped to one repository: reads it and adds objects, never deletes.
    Device,
    /// Manages one reseller's tenants (creates them, sets their plans, suspends them) and the
    /// reseller's own plans, within what the provider sells the reseller; never another
    /// reseller's or the provider's own tenants, and never a repository's contents.
    ResellerAdmin,
}

impl Role {
    /// The stored and displayed name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::ProviderAdmin => "provider-admin",
            Role::Operator => "operator",
            Role::TenantAdmin => "tenant-admin",
            Role::TenantUser => "tenant-user",
            Role::Device => "device",
            Role::ResellerAdmin => "reseller-admin",
        }
    }

    /// Parses [`Role::as_str`].
    pub fn parse(s: &str) -> Option<Role> {
        [Role::ProviderAdmin, Role::Operator, Role::TenantAdmin, Role::TenantUser, Role::Device, Role::ResellerAdmin]
            .into_iter()
            .find(|r| r.as_str() == s)
    }

    /// Whether this is provider staff (not bound to a tenant).
    pub fn is_provider(self) -> bool {
        matches!(self, Role::ProviderAdmin | Role::Operator)
    }
}

/// The on-disk format of a hosted repository, which decides the protocol that reaches it and how
/// its objects are named and checked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RepoFormat {
    /// arca's own format, reached by `arca` under `/v1/repos/REPO/`: objects are named by the
    /// BLAKE3 hash of their bytes, and snapshots and index files carry plaintext manifests.
    #[default]
    Arca,
    /// A restic repository, reached by unmodified restic clients over restic's REST protocol
    /// under `/restic/REPO/`: objects (locks included) are named by the SHA-256 of their bytes.
    Restic,
}

impl RepoFormat {
    /// The stored and displayed name.
    pub fn as_str(self) -> &'static str {
        match self {
            RepoFormat::Arca => "arca",
            RepoFormat::Restic => "restic",
        }
    }

    /// Parses [`RepoFormat::as_str`].
    pub fn parse(s: &str) -> Option<RepoFormat> {
        [RepoFormat::Arca, RepoFormat::Restic].into_iter().find(|f| f.as_str() == s)
    }
}

impl std::fmt::Display for RepoFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The repository URL a restic client is given for restic repository `repo` on the server at
/// `base` (`http(s)://HOST:PORT`), with `token` as its basic-auth password: all a restic user
/// changes to move to the provider. The user name is informational.
pub fn restic_repository_url(base: &str, repo: &str, user: &str, token: &str) -> String {
    let base = base.trim_end_matches('/');
    let (scheme, rest) = base.split_once("://").unwrap_or(("https", base));
    format!("rest:{scheme}://{user}:{token}@{rest}/restic/{repo}/")
}

/// A plan: what a tenant buys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// Unique name.
    pub name: String,
    /// Stored bytes past which uploads are refused (0: unlimited).
    pub hard_quota_bytes: i64,
    /// Stored bytes past which the tenant is warned (0: none).
    pub soft_quota_bytes: i64,
    /// Days during which no stored object can be deleted.
    pub lock_days: i64,
    /// Compliance mode: the lock period of a repository can never be shortened.
    pub compliance: bool,
    /// Price per year, in cents.
    pub yearly_price_cents: i64,
    /// Price per GB (10^9 bytes) of average stored bytes above the soft quota, per month, in cents.
    pub overage_cents_per_gb: i64,
    /// A reseller's plan: the provider's plan it resells (its wholesale price and its limits:
    /// the quotas may not exceed it, the retention lock is its). `None`: a provider's plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resells: Option<String>,
    /// The reseller that sells this plan (set by the server from who creates it; `None`: the
    /// provider's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reseller: Option<String>,
}

/// A tenant: one customer of the provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    /// Internal id.
    pub id: i64,
    /// Unique short name (`[a-z0-9-]`).
    pub name: String,
    /// Name for people.
    pub display_name: String,
    /// The plan, if any.
    pub plan: Option<String>,
    /// Hard quota on stored bytes (0: unlimited).
    pub hard_quota_bytes: i64,
    /// Soft quota on stored bytes (0: none).
    pub soft_quota_bytes: i64,
    /// Bytes stored in all its repositories, exact.
    pub stored_bytes: i64,
    /// Whether uploads are refused (reads still work so the customer can restore).
    pub suspended: bool,
    /// Creation time (Unix seconds).
    pub created_at: i64,
    /// The customer's own addresses for its alerts (comma-separated; empty: the provider's only).
    #[serde(default)]
    pub alert_email: String,
    /// Why it is suspended, as the provider told the customer (empty when not suspended).
    #[serde(default)]
    pub suspended_reason: String,
    /// The reseller that sells to this tenant (`None`: the provider's own customer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reseller: Option<String>,
    /// Its id (for permission checks; not sent).
    #[serde(skip)]
    pub reseller_id: Option<i64>,
}

/// A user who signs in with a password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Internal id.
    pub id: i64,
    /// Login name (unique on the server).
    pub name: String,
    /// The tenant (`None`: provider staff).
    pub tenant: Option<String>,
    /// Role.
    pub role: Role,
    /// Whether sign-in is refused.
    pub disabled: bool,
    /// Creation time.
    pub created_at: i64,
    /// Locked after too many failed sign-ins until this time (Unix seconds; 0 or past: not locked).
    #[serde(default)]
    pub locked_until: i64,
    /// Whether two-factor sign-in is on.
    #[serde(default)]
    pub two_factor: bool,
    /// The reseller, for a reseller's admins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reseller: Option<String>,
}

/// A hosted repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Repository {
    /// Internal id.
    pub id: i64,
    /// Unique name on the server (the `REPO` of `/v1/repos/REPO`).
    pub name: String,
    /// Owning tenant's id.
    pub tenant_id: i64,
    /// Owning tenant's name.
    pub tenant: String,
    /// Retention lock in days: objects younger than this cannot be deleted.
    pub lock_days: i64,
    /// Compliance mode: `lock_days` can never decrease.
    pub compliance: bool,
    /// Bytes stored, exact.
    pub stored_bytes: i64,
    /// Objects stored.
    pub object_count: i64,
    /// Bytes its snapshots represent (sum of their total file sizes).
    pub logical_bytes: i64,
    /// Creation time.
    pub created_at: i64,
    /// Its format (and so the protocol that reaches it).
    #[serde(default)]
    pub format: RepoFormat,
    /// Its tenant's reseller's id (for permission checks; not sent).
    #[serde(skip)]
    pub reseller_id: Option<i64>,
}

/// A backup client with a token scoped to one repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    /// Internal id.
    pub id: i64,
    /// Name (unique within its tenant among active devices).
    pub name: String,
    /// Tenant name.
    pub tenant: String,
    /// Repository name.
    pub repo: String,
    /// Creation time.
    pub created_at: i64,
    /// Last authenticated request (0: never).
    pub last_seen_at: i64,
    /// Revocation time (0: active).
    pub revoked_at: i64,
}

/// Changes to a tenant (absent fields stay).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantChange {
    /// New display name.
    pub display_name: Option<String>,
    /// New plan (its quotas replace the tenant's).
    pub plan: Option<String>,
    /// New hard quota (overrides the plan's).
    pub hard_quota_bytes: Option<i64>,
    /// New soft quota (overrides the plan's).
    pub soft_quota_bytes: Option<i64>,
    /// Suspend or resume.
    pub suspended: Option<bool>,
    /// Why it is suspended, shown to the customer on every page (with `suspended: true`;
    /// resuming clears it).
    #[serde(default)]
    pub suspended_reason: Option<String>,
    /// The customer's addresses for its alerts (comma-separated; empty clears them). Checked by
    /// the caller (`alerts::parse_mailboxes`).
    pub alert_email: Option<String>,
}

impl TenantChange {
    /// Whether it changes only what the customer's own admins may change (their alert addresses).
    pub fn is_customer_setting(&self) -> bool {
        self.display_name.is_none()
            && self.plan.is_none()
            && self.hard_quota_bytes.is_none()
            && self.soft_quota_bytes.is_none()
            && self.suspended.is_none()
            && self.suspended_reason.is_none()
            && self.alert_email.is_some()
    }
}

/// `POST /v1/auth/login` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub user: String,
    pub password: String,
    /// What the token is for (shown in listings).
    #[serde(default)]
    pub label: String,
    /// Days until the token expires (default 30; 0: never).
    pub ttl_days: Option<i64>,
    /// The one-time code (or a recovery code), for users with two-factor sign-in.
    pub totp: Option<String>,
}

/// `POST /v1/auth/login` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoginResponse {
    pub token: String,
    pub expires_at: i64,
    pub user: String,
    pub role: Role,
    pub tenant: Option<String>,
}

/// `POST /v1/setup` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetupRequest {
    pub setup_token: String,
    pub user: String,
    pub password: String,
}

/// `POST /v1/admin/tenants` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTenant {
    pub name: String,
    #[serde(default)]
    pub display_name: String,
    pub plan: Option<String>,
}

/// A reseller: sells the provider's service to its own tenants under its own plans and prices,
/// and is billed by the provider at the prices of the provider's plans its plans resell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reseller {
    /// Internal id.
    pub id: i64,
    /// Unique short name (`[a-z0-9-]`).
    pub name: String,
    /// Name for people.
    pub display_name: String,
    /// The most its tenants' hard quotas may add up to (0: no limit).
    pub capacity_bytes: i64,
    /// Creation time (Unix seconds).
    pub created_at: i64,
    /// Its tenants.
    pub tenants: i64,
    /// Bytes its tenants store.
    pub stored_bytes: i64,
    /// Its tenants' hard quotas added up (what counts against the capacity).
    pub quota_bytes: i64,
    /// The host name whose sign-in page shows its brand (e.g. `backup.reseller.example`, pointed
    /// at the server by the reseller's DNS); empty: none, only `/login?reseller=NAME`.
    #[serde(default)]
    pub sign_in_host: String,
}

/// `POST /v1/admin/resellers` body: the reseller and its first admin.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewReseller {
    pub name: String,
    #[serde(default)]
    pub display_name: String,
    /// See [`Reseller::capacity_bytes`].
    #[serde(default)]
    pub capacity_bytes: i64,
    /// The login name of its first admin.
    pub admin: String,
    /// That admin's password.
    pub password: String,
}

/// `PUT /v1/admin/resellers/{reseller}` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResellerChange {
    pub display_name: Option<String>,
    pub capacity_bytes: Option<i64>,
    /// Its sign-in host name; empty removes it.
    #[serde(default)]
    pub sign_in_host: Option<String>,
}

/// `POST …/users` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub name: String,
    pub password: String,
    pub role: Role,
}

/// `POST /v1/admin/tenants/{tenant}/repos` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRepo {
    pub name: String,
    /// Retention lock in days (default: the plan's; never less).
    pub lock_days: Option<i64>,
    /// Format (default: arca's own).
    #[serde(default)]
    pub format: RepoFormat,
}

/// `PATCH /v1/admin/repos/{repo}` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepoChange {
    pub lock_days: i64,
    pub compliance: Option<bool>,
}

/// `POST /v1/admin/tenants/{tenant}/devices` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewDevice {
    pub name: String,
    pub repo: String,
}

/// `POST /v1/admin/tenants/{tenant}/devices` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewDeviceResponse {
    pub device: Device,
    /// Shown once: the server keeps only its hash.
    pub token: String,
}

/// `PUT /v1/admin/tenants/{tenant}/devices/{device}/schedule` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// Hours between expected backups (0: none, never overdue).
    pub every_hours: i64,
}

/// `PUT /v1/admin/repos/{repo}/retention` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionChange {
    /// Days the server keeps snapshots by its own clock (0: until the customer forgets them).
    pub days: i64,
}

/// `GET /v1/auth/whoami` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WhoAmI {
    pub actor: String,
    pub role: Role,
    pub tenant: Option<String>,
}

/// The provider's billing settings (`GET`/`PUT /v1/admin/billing/settings`): what every invoice
/// says about who issues it, in which currency, at which tax rate, how it is numbered and when it
/// is due. The server checks every field (`arca_server::service::billing`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillingSettings {
    /// ISO 4217 code, three upper-case letters ("EUR", "USD", "GBP"), shown beside every amount.
    pub currency: String,
    /// Tax rate in basis points (hundredths of a percent): 2000 is 20 %; 0 to 10000.
    pub tax_basis_points: i64,
    /// The issuer's name on invoices.
    pub issuer_name: String,
    /// The issuer's postal address, one line each.
    pub issuer_address: Vec<String>,
    /// The issuer's tax id (VAT number), if any.
    pub issuer_tax_id: String,
    /// What invoice numbers start with: `PREFIX-YEAR-000123`.
    pub number_prefix: String,
    /// Days from an invoice's issue to its due date.
    pub payment_days: i64,
}

impl Default for BillingSettings {
    fn default() -> Self {
        BillingSettings {
            currency: "EUR".into(),
            tax_basis_points: 0,
            issuer_name: String::new(),
            issuer_address: Vec::new(),
            issuer_tax_id: String::new(),
            number_prefix: "INV".into(),
            payment_days: 30,
        }
    }
}

/// `POST /v1/admin/invoices` body: issue the invoice of a tenant's finished month.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IssueInvoice {
    /// The tenant's name.
    pub tenant: String,
    /// The month, `YYYY-MM`.
    pub month: String,
}

/// Parses a percentage as people type it ("20", "20.5", "7.25", "19,6") into basis points,
/// exactly (no floating point): at most two decimals, 0 to 100.
pub fn parse_percent(s: &str) -> Result<i64, String> {
    let t = s.trim().trim_end_matches('%').trim().replace(',', ".");
    let bad = || format!("{s:?} is not a percentage from 0 to 100 with at most two decimals (e.g. 20 or 7.25)");
    let (whole, frac) = t.split_once('.').unwrap_or((&t, ""));
    let digits = |x: &str| x.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || whole.len() > 3 || frac.len() > 2 || !digits(whole) || !digits(frac) {
        return Err(bad());
    }
    let whole: i64 = whole.parse().map_err(|_| bad())?;
    let frac: i64 = if frac.is_empty() { 0 } else { format!("{frac:0<2}").parse().map_err(|_| bad())? };
    let bp = whole * 100 + frac;
    if bp > 10_000 {
        return Err(bad());
    }
    Ok(bp)
}

/// Basis points as a percentage for people: 2000 → "20", 2050 → "20.5", 725 → "7.25".
pub fn percent_text(bp: i64) -> String {
    let s = format!("{}.{:02}", bp / 100, (bp % 100).abs());
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restic_urls_carry_the_token_as_password() {
        assert_eq!(
            restic_repository_url("https://backup.example:8420/", "acme-r", "device", "tok"),
            "rest:https://device:tok@backup.example:8420/restic/acme-r/"
        );
        assert_eq!(restic_repository_url("http://127.0.0.1:1", "r", "u", "t"), "rest:http://u:t@127.0.0.1:1/restic/r/");
    }

    #[test]
    fn formats_round_trip_and_default_to_arca() {
        for f in [RepoFormat::Arca, RepoFormat::Restic] {
            assert_eq!(RepoFormat::parse(f.as_str()), Some(f));
        }
        let r: NewRepo = serde_json::from_str(r#"{"name":"x","lock_days":null}"#).unwrap();
        assert_eq!(r.format, RepoFormat::Arca);
    }

    #[test]
    fn percentages_parse_exactly() {
        assert_eq!(parse_percent("20"), Ok(2000));
        assert_eq!(parse_percent("20.5 %"), Ok(2050));
        assert_eq!(parse_percent("7,25"), Ok(725));
        assert_eq!(parse_percent("0.07"), Ok(7));
        assert_eq!(parse_percent("100"), Ok(10_000));
        for bad in ["", "-1", "100.01", "1.234", "abc", "1e2", ".5", "1000"] {
            assert!(parse_percent(bad).is_err(), "{bad}");
        }
        assert_eq!(percent_text(2000), "20");
        assert_eq!(percent_text(2050), "20.5");
        assert_eq!(percent_text(725), "7.25");
        assert_eq!(percent_text(0), "0");
    }
}
