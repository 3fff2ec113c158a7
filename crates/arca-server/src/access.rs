//! The permission rules, in one place: who may do what to which repository or tenant.
//!
//! Handlers authenticate first ([`crate::db::Db::authenticate`]), then ask these functions. A
//! principal that may not even see a repository or tenant gets "does not exist", so tokens cannot
//! probe which names exist elsewhere.

use arca_store::ObjectKind;

use crate::db::accounts::{Principal, Repository, Role, Tenant};
use crate::db::invoices::Issuer;

/// The tenant a permission is asked about: its id and its reseller (`None`: the provider's own
/// customer). Taken from a tenant or from one of its repositories.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TenantScope {
    /// The tenant's id.
    pub id: i64,
    /// Its reseller's id.
    pub reseller_id: Option<i64>,
}

impl From<&Tenant> for TenantScope {
    fn from(t: &Tenant) -> TenantScope {
        TenantScope { id: t.id, reseller_id: t.reseller_id }
    }
}

impl From<&Repository> for TenantScope {
    fn from(r: &Repository) -> TenantScope {
        TenantScope { id: r.tenant_id, reseller_id: r.reseller_id }
    }
}

/// Whether `p` is an admin of the reseller that sells to `t`.
fn sells_to(p: &Principal, t: TenantScope) -> bool {
    p.role == Role::ResellerAdmin && p.reseller_id.is_some() && p.reseller_id == t.reseller_id
}

/// What a request wants to do with a repository's objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepoAction {
    /// List, stat, read.
    Read,
    /// Add an object of this kind.
    Put(ObjectKind),
    /// Remove an object of this kind.
    Delete(ObjectKind),
    /// Initialise the repository (`arca init`).
    Create,
}

/// Whether `p` can see repository `repo` at all.
pub fn can_see_repo(p: &Principal, repo: &Repository) -> bool {
    match p.role {
        Role::ProviderAdmin | Role::Operator => true,
        Role::TenantAdmin | Role::TenantUser => p.tenant_id == Some(repo.tenant_id),
        Role::Device => p.repo_id == Some(repo.id),
        // A reseller manages its customers' accounts, never their backups' contents.
        Role::ResellerAdmin => false,
    }
}

/// Whether kind `kind` holds coordination files (locks, prune marks) rather than backup data:
/// those are removed by the clients that made them and are not under the retention lock.
pub fn is_coordination(kind: ObjectKind) -> bool {
    matches!(kind, ObjectKind::Lock | ObjectKind::Pending)
}

/// Checks `action` on a repository `p` can see; `Err` has the message for the client.
pub fn check_repo_action(p: &Principal, action: RepoAction) -> Result<(), &'static str> {
    match (p.role, action) {
        (_, RepoAction::Read) => Ok(()),
        (Role::Operator, _) => Err("operators have read-only access to repositories"),
        (Role::ResellerAdmin, _) => Err("reseller admins manage accounts, not backups"),
        (_, RepoAction::Put(_) | RepoAction::Create) if p.suspended => {
            Err("the tenant is suspended: uploads are refused until the provider resumes it (restores still work)")
        }
        // A pending mark is prune's first phase: it tells backups to stop deduplicating against
        // packs that prune will delete. Only those who may prune may write one.
        (Role::Device | Role::TenantUser, RepoAction::Put(ObjectKind::Pending)) => {
            Err("pending-deletion marks are written by prune, which needs a tenant admin's token")
        }
        (_, RepoAction::Put(_) | RepoAction::Create) => Ok(()),
        (_, RepoAction::Delete(kind)) if is_coordination(kind) => Ok(()),
        (Role::Device, RepoAction::Delete(_)) => {
            Err("a device token can add backups but not delete them: delete not allowed (forget and prune need a \
             tenant admin's token)")
        }
        (Role::TenantUser, RepoAction::Delete(_)) => {
            Err("tenant users cannot delete backups: forget and prune need a tenant admin's token")
        }
        (Role::TenantAdmin | Role::ProviderAdmin, RepoAction::Delete(_)) => Ok(()),
    }
}

/// Checks that `p` may remove a lock file held by `holder` (the actor who wrote it, when known)
/// whose lease `lapsed` or not. A lock is a running operation's: a device token or a tenant's
/// user may remove its own, or one whose holder is gone (lapsed lease), never a live one of
/// someone else (that would let one stolen token break every other client's operation, or run
/// prune beside a backup). Tenant admins and provider admins may remove any (`unlock`).
pub fn check_lock_removal(p: &Principal, holder: Option<&str>, lapsed: bool) -> Result<(), &'static str> {
    match p.role {
        Role::TenantAdmin | Role::ProviderAdmin => Ok(()),
        Role::Operator => Err("operators have read-only access to repositories"),
        Role::ResellerAdmin => Err("reseller admins manage accounts, not backups"),
        Role::Device | Role::TenantUser => match holder {
            Some(h) if h != p.actor && !lapsed => {
                Err("this lock belongs to another client's running operation: only its holder or a tenant admin may \
                 remove it (it lapses on its own 30 minutes after its holder stops refreshing it)")
            }
            _ => Ok(()),
        },
    }
}

/// Whether `p` may manage tenant `t`'s users, repositories and devices.
pub fn can_manage_tenant(p: &Principal, t: impl Into<TenantScope>) -> bool {
    let t = t.into();
    match p.role {
        Role::ProviderAdmin => true,
        Role::ResellerAdmin => sells_to(p, t),
        Role::TenantAdmin => p.tenant_id == Some(t.id),
        _ => false,
    }
}

/// Whether `p` may read tenant `t`'s account data (repositories, devices, usage, audit).
pub fn can_view_tenant(p: &Principal, t: impl Into<TenantScope>) -> bool {
    let t = t.into();
    match p.role {
        Role::ProviderAdmin | Role::Operator => true,
        Role::ResellerAdmin => sells_to(p, t),
        Role::TenantAdmin | Role::TenantUser => p.tenant_id == Some(t.id),
        Role::Device => false,
    }
}

/// Whether `p` may change what tenant `t` buys: its plan, quotas, name and suspension, and
/// delete it. The provider's admins for every tenant, a reseller's admins for its own.
pub fn can_sell_to(p: &Principal, t: impl Into<TenantScope>) -> bool {
    match p.role {
        Role::ProviderAdmin => true,
        Role::ResellerAdmin => sells_to(p, t.into()),
        _ => false,
    }
}

/// The reseller whose admin `p` is (`None` for everyone else).
pub fn reseller_of(p: &Principal) -> Option<i64> {
    match p.role {
        Role::ResellerAdmin => p.reseller_id,
        _ => None,
    }
}

/// Whether `p` sells to tenants: a provider admin (for the provider) or a reseller's admin (for
/// the reseller): may create tenants and plans.
pub fn is_seller(p: &Principal) -> bool {
    p.role == Role::ProviderAdmin || reseller_of(p).is_some()
}

/// The seller whose billing `p` runs (settings, invoices): the provider for its staff, a
/// reseller for its admins; `None` for customers and devices.
pub fn billing_issuer(p: &Principal) -> Option<Issuer> {
    match p.role {
        Role::ProviderAdmin | Role::Operator => Some(Issuer::Provider),
        Role::ResellerAdmin => p.reseller_id.map(Issuer::Reseller),
        _ => None,
    }
}

/// Whether `p` may issue invoices to tenant `t` and change its seller's billing settings: an
/// admin of the seller that bills `t` (the provider's admins for the provider's own customers,
/// a reseller's admins for its tenants).
pub fn can_invoice(p: &Principal, t: impl Into<TenantScope>) -> bool {
    let t = t.into();
    match p.role {
        Role::ProviderAdmin => t.reseller_id.is_none(),
        Role::ResellerAdmin => sells_to(p, t),
        _ => false,
    }
}

/// Whether `p` may change the billing settings of `issuer`.
pub fn can_set_billing(p: &Principal, issuer: Issuer) -> bool {
    match issuer {
        Issuer::Provider => p.role == Role::ProviderAdmin,
        Issuer::Reseller(r) => p.role == Role::ResellerAdmin && p.reseller_id == Some(r),
    }
}

/// Whether `p` may open repository `repo`'s contents in the web portal (browse and download
/// restores with the repository password). Only the customer's own users: provider staff never
/// handle a customer's password, and a device token is for `arca` itself, not for the portal.
pub fn can_browse_repo(p: &Principal, repo: &Repository) -> bool {
    matches!(p.role, Role::TenantAdmin | Role::TenantUser) && p.tenant_id == Some(repo.tenant_id)
}

/// Whether `p` is provider staff who may see everything.
pub fn is_staff(p: &Principal) -> bool {
    p.role.is_provider()
}

/// Whether `p` may change what the provider sells (plans, tenants, quotas, retention locks).
pub fn is_provider_admin(p: &Principal) -> bool {
    p.role == Role::ProviderAdmin
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(role: Role, tenant: Option<i64>, repo: Option<i64>) -> Principal {
        Principal {
            token_id: 1,
            role,
            tenant_id: tenant,
            user_id: None,
            device_id: None,
            repo_id: repo,
            suspended: false,
            actor: "test".into(),
            reseller_id: None,
        }
    }

    fn repo(id: i64, tenant: i64) -> Repository {
        Repository {
            id,
            name: format!("r{id}"),
            tenant_id: tenant,
            tenant: format!("t{tenant}"),
            reseller_id: None,
            lock_days: 0,
            compliance: false,
            stored_bytes: 0,
            object_count: 0,
            logical_bytes: 0,
            created_at: 0,
            format: Default::default(),
        }
    }

    /// Every role against every action, as a table: the rules as the product promises them.
    #[test]
    fn the_permission_table() {
        use RepoAction::*;
        let data = Delete(ObjectKind::DataPack);
        let snap = Delete(ObjectKind::Snapshot);
        let lock = Delete(ObjectKind::Lock);
        let put = Put(ObjectKind::DataPack);
        let mark = Put(ObjectKind::Pending);
        let table: [(Role, [bool; 7]); 5] = [
            //                      Read  Put   Create data  snap  lock  mark
            (Role::ProviderAdmin, [true, true, true, true, true, true, true]),
            (Role::Operator, [true, false, false, false, false, false, false]),
            (Role::TenantAdmin, [true, true, true, true, true, true, true]),
            (Role::TenantUser, [true, true, true, false, false, true, false]),
            (Role::Device, [true, true, true, false, false, true, false]),
        ];
        for (role, expected) in table {
            let p = principal(role, Some(1), Some(1));
            for (action, want) in [Read, put, Create, data, snap, lock, mark].into_iter().zip(expected) {
                assert_eq!(check_repo_action(&p, action).is_ok(), want, "{role:?} {action:?}");
            }
        }
    }

    #[test]
    fn suspended_tenants_read_but_do_not_write() {
        let mut p = principal(Role::Device, Some(1), Some(1));
        p.suspended = true;
        assert!(check_repo_action(&p, RepoAction::Read).is_ok());
        assert!(check_repo_action(&p, RepoAction::Put(ObjectKind::DataPack)).is_err());
    }

    #[test]
    fn visibility_follows_tenant_and_device_scope() {
        let mine = repo(1, 1);
        let sibling = repo(2, 1);
        let theirs = repo(3, 2);
        let device = principal(Role::Device, Some(1), Some(1));
        assert!(can_see_repo(&device, &mine));
        assert!(!can_see_repo(&device, &sibling), "a device reaches only its own repository");
        assert!(!can_see_repo(&device, &theirs));
        for role in [Role::TenantAdmin, Role::TenantUser] {
            let p = principal(role, Some(1), None);
            assert!(can_see_repo(&p, &mine) && can_see_repo(&p, &sibling));
            assert!(!can_see_repo(&p, &theirs), "{role:?} must not see another tenant's repository");
        }
        for role in [Role::ProviderAdmin, Role::Operator] {
            assert!(can_see_repo(&principal(role, None, None), &theirs));
        }
        let admin_of_1 = principal(Role::TenantAdmin, Some(1), None);
        assert!(can_manage_tenant(&admin_of_1, direct(1)) && !can_manage_tenant(&admin_of_1, direct(2)));
        assert!(!can_view_tenant(&admin_of_1, direct(2)));
        assert!(!can_manage_tenant(&principal(Role::Operator, None, None), direct(1)));
        assert!(can_view_tenant(&principal(Role::Operator, None, None), direct(1)));
        assert!(!can_manage_tenant(&principal(Role::TenantUser, Some(1), None), direct(1)));
    }

    /// A provider's own customer (no reseller).
    fn direct(id: i64) -> TenantScope {
        TenantScope { id, reseller_id: None }
    }

    fn reseller_admin(reseller: i64) -> Principal {
        Principal { reseller_id: Some(reseller), ..principal(Role::ResellerAdmin, None, None) }
    }

    /// A reseller's admins manage and sell to their own tenants only, never the provider's own
    /// customers or another reseller's, and never touch any repository's contents.
    #[test]
    fn resellers_reach_their_own_tenants_and_no_backups() {
        let r1 = reseller_admin(1);
        let of_r1 = TenantScope { id: 10, reseller_id: Some(1) };
        let of_r2 = TenantScope { id: 20, reseller_id: Some(2) };
        assert!(can_manage_tenant(&r1, of_r1) && can_view_tenant(&r1, of_r1) && can_sell_to(&r1, of_r1));
        for other in [of_r2, direct(30)] {
            assert!(!can_manage_tenant(&r1, other), "{other:?}");
            assert!(!can_view_tenant(&r1, other), "{other:?}");
            assert!(!can_sell_to(&r1, other), "{other:?}");
        }
        // A reseller admin whose reseller id is missing reaches nothing, not every direct tenant.
        let broken = principal(Role::ResellerAdmin, None, None);
        assert!(!can_view_tenant(&broken, direct(30)) && !can_sell_to(&broken, direct(30)));
        assert_eq!(reseller_of(&r1), Some(1));
        assert!(is_seller(&r1) && !is_seller(&broken) && !is_staff(&r1) && !is_provider_admin(&r1));
        // The provider sells to everyone; a tenant admin manages its own tenant but sells nothing.
        let provider = principal(Role::ProviderAdmin, None, None);
        assert!(can_sell_to(&provider, of_r2) && can_sell_to(&provider, direct(30)));
        assert!(!can_sell_to(&principal(Role::TenantAdmin, Some(10), None), of_r1));
        assert!(!can_sell_to(&principal(Role::Operator, None, None), of_r1));
        // Backups: a reseller's customers' repositories stay closed to it.
        let repo_of_r1 = Repository { reseller_id: Some(1), ..repo(1, 10) };
        assert!(!can_see_repo(&r1, &repo_of_r1) && !can_browse_repo(&r1, &repo_of_r1));
        for action in
            [RepoAction::Put(ObjectKind::DataPack), RepoAction::Delete(ObjectKind::Snapshot), RepoAction::Create]
        {
            assert!(check_repo_action(&r1, action).is_err(), "{action:?}");
        }
        assert!(check_lock_removal(&r1, None, true).is_err());
    }

    /// Each seller bills its own customers: the provider's admins invoice the provider's, a
    /// reseller's admins theirs; nobody else issues, and each changes only its own settings.
    #[test]
    fn each_seller_invoices_its_own_customers() {
        let r1 = reseller_admin(1);
        let provider = principal(Role::ProviderAdmin, None, None);
        let operator = principal(Role::Operator, None, None);
        let of_r1 = TenantScope { id: 10, reseller_id: Some(1) };
        let of_r2 = TenantScope { id: 20, reseller_id: Some(2) };
        assert!(can_invoice(&r1, of_r1) && !can_invoice(&r1, of_r2) && !can_invoice(&r1, direct(30)));
        assert!(can_invoice(&provider, direct(30)) && !can_invoice(&provider, of_r1), "r1 bills its own");
        assert!(!can_invoice(&operator, direct(30)));
        assert!(!can_invoice(&principal(Role::TenantAdmin, Some(30), None), direct(30)));
        assert_eq!(billing_issuer(&r1), Some(Issuer::Reseller(1)));
        assert_eq!(
            (billing_issuer(&provider), billing_issuer(&operator)),
            (Some(Issuer::Provider), Some(Issuer::Provider))
        );
        assert_eq!(billing_issuer(&principal(Role::TenantAdmin, Some(30), None)), None);
        assert_eq!(billing_issuer(&principal(Role::ResellerAdmin, None, None)), None, "no reseller, no issuer");
        assert!(can_set_billing(&r1, Issuer::Reseller(1)) && !can_set_billing(&r1, Issuer::Reseller(2)));
        assert!(!can_set_billing(&r1, Issuer::Provider) && can_set_billing(&provider, Issuer::Provider));
        assert!(!can_set_billing(&provider, Issuer::Reseller(1)) && !can_set_billing(&operator, Issuer::Provider));
    }

    /// Opening a repository's contents in the portal: the customer's users only.
    #[test]
    fn only_the_customers_users_browse_contents() {
        let mine = repo(1, 1);
        let theirs = repo(3, 2);
        let table = [
            (Role::ProviderAdmin, false),
            (Role::Operator, false),
            (Role::TenantAdmin, true),
            (Role::TenantUser, true),
            (Role::Device, false),
        ];
        for (role, want) in table {
            let tenant = (!role.is_provider()).then_some(1);
            let p = principal(role, tenant, Some(1));
            assert_eq!(can_browse_repo(&p, &mine), want, "{role:?}");
            assert!(!can_browse_repo(&p, &theirs), "{role:?} browsed another tenant's repository");
        }
    }
}
