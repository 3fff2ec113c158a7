//! The permission rules, in one place: who may do what to which repository or tenant.
//!
//! Handlers authenticate first ([`crate::db::Db::authenticate`]), then ask these functions. A
//! principal that may not even see a repository or tenant gets "does not exist", so tokens cannot
//! probe which names exist elsewhere.

use arca_store::ObjectKind;

use crate::db::accounts::{Principal, Repository, Role};

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
        Role::Device | Role::TenantUser => match holder {
            Some(h) if h != p.actor && !lapsed => {
                Err("this lock belongs to another client's running operation: only its holder or a tenant admin may \
                 remove it (it lapses on its own 30 minutes after its holder stops refreshing it)")
            }
            _ => Ok(()),
        },
    }
}

/// Whether `p` may manage tenant `tenant_id`'s users, repositories and devices.
pub fn can_manage_tenant(p: &Principal, tenant_id: i64) -> bool {
    match p.role {
        Role::ProviderAdmin => true,
        Role::TenantAdmin => p.tenant_id == Some(tenant_id),
        _ => false,
    }
}

/// Whether `p` may read tenant `tenant_id`'s account data (repositories, devices, usage, audit).
pub fn can_view_tenant(p: &Principal, tenant_id: i64) -> bool {
    match p.role {
        Role::ProviderAdmin | Role::Operator => true,
        Role::TenantAdmin | Role::TenantUser => p.tenant_id == Some(tenant_id),
        Role::Device => false,
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
        }
    }

    fn repo(id: i64, tenant: i64) -> Repository {
        Repository {
            id,
            name: format!("r{id}"),
            tenant_id: tenant,
            tenant: format!("t{tenant}"),
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
        assert!(can_manage_tenant(&admin_of_1, 1) && !can_manage_tenant(&admin_of_1, 2));
        assert!(!can_view_tenant(&admin_of_1, 2));
        assert!(!can_manage_tenant(&principal(Role::Operator, None, None), 1));
        assert!(can_view_tenant(&principal(Role::Operator, None, None), 1));
        assert!(!can_manage_tenant(&principal(Role::TenantUser, Some(1), None), 1));
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
