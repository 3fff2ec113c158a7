//! What admins do to a user's account, written once for the console and the JSON API: disable
//! or enable it, set a new password, lift a lockout, and turn off two-factor sign-in for a user
//! who lost their authenticator (and their recovery codes).
//!
//! Who may: provider admins, for every user; a tenant's admins, for that tenant's users. Provider
//! staff accounts are provider admins' alone. Nobody does this to their own account here: they
//! could lock themselves out (disabling) or skip their second factor (resetting it).

use crate::access::{can_manage_tenant, is_provider_admin, reseller_of};
use crate::db::accounts::User;
use crate::db::DbError;
use crate::errors::ApiError;
use crate::state::AppState;

use super::{forbidden, Caller};

/// An action on a user's account.
#[derive(Debug, Clone)]
pub enum UserAction {
    /// Refuse sign-in and end every session and token.
    Disable,
    /// Allow sign-in again.
    Enable,
    /// A new password (checked like every password); ends the user's sessions.
    Password(String),
    /// Lift the lockout after failed sign-ins.
    Unlock,
    /// Turn off two-factor sign-in (the user enrols again on their account page); ends the
    /// user's sessions.
    ResetSecondFactor,
}

impl UserAction {
    /// Its name in addresses and the audit log (`user.NAME`).
    pub fn name(&self) -> &'static str {
        match self {
            UserAction::Disable => "disable",
            UserAction::Enable => "enable",
            UserAction::Password(_) => "password",
            UserAction::Unlock => "unlock",
            UserAction::ResetSecondFactor => "reset-2fa",
        }
    }

    /// The action named `name` (with the password for `password`).
    pub fn parse(name: &str, password: &str) -> Option<UserAction> {
        Some(match name {
            "disable" => UserAction::Disable,
            "enable" => UserAction::Enable,
            "password" => UserAction::Password(password.to_string()),
            "unlock" => UserAction::Unlock,
            "reset-2fa" => UserAction::ResetSecondFactor,
            _ => return None,
        })
    }
}

/// Does `action` to user `name`, audited as `user.ACTION`; returns the user as it is now.
pub async fn act_on_user(state: &AppState, caller: &Caller, name: &str, action: &UserAction) -> Result<User, ApiError> {
    let audit_action = format!("user.{}", action.name());
    let (tenant_id, result) = match find(state, caller, name).await {
        Ok((user, tenant_id)) => (tenant_id, apply(state, caller, &user, action).await),
        Err(e) => (caller.principal.tenant_id, Err(e)),
    };
    caller.audited(state, tenant_id, &audit_action, name, "", result).await
}

/// The user, if the caller may act on them, and their tenant's id.
async fn find(state: &AppState, caller: &Caller, name: &str) -> Result<(User, Option<i64>), ApiError> {
    let p = &caller.principal;
    // Every refusal below reads "not found" for a user out of reach: names of other tenants'
    // users are not revealed.
    let not_found = || ApiError::not_found(format!("no user named {name} that you manage"));
    let user = match state.db().user(name).await {
        Ok(u) => u,
        Err(DbError::NotFound(_)) => return Err(not_found()),
        Err(e) => return Err(ApiError::from_db(e)),
    };
    let tenant = match &user.tenant {
        Some(t) => Some(state.db().tenant(t).await.map_err(ApiError::from_db)?),
        None => None,
    };
    let tenant_id = tenant.as_ref().map(|t| t.id);
    let allowed = match (&tenant, &user.reseller) {
        (Some(t), _) => can_manage_tenant(p, t),
        // A reseller's admins: the provider's admins and their fellow admins.
        (None, Some(r)) => {
            is_provider_admin(p)
                || (reseller_of(p).is_some()
                    && reseller_of(p) == Some(state.db().reseller(r).await.map_err(ApiError::from_db)?.id))
        }
        (None, None) => is_provider_admin(p),
    };
    if !allowed {
        return Err(if p.role.is_provider() { forbidden("manage provider staff") } else { not_found() });
    }
    Ok((user, tenant_id))
}

async fn apply(state: &AppState, caller: &Caller, user: &User, action: &UserAction) -> Result<User, ApiError> {
    if caller.principal.user_id == Some(user.id) && !matches!(action, UserAction::Enable | UserAction::Unlock) {
        return Err(ApiError::bad_request(match action {
            UserAction::Password(_) => "change your own password on your account page",
            UserAction::ResetSecondFactor => {
                "turn off your own two-factor sign-in on your account page (it asks for a code)"
            }
            _ => "you cannot disable your own account: ask another admin",
        }));
    }
    let db = state.db();
    let done = match action {
        UserAction::Disable => db.set_user_disabled(user.id, true).await,
        UserAction::Enable => db.set_user_disabled(user.id, false).await,
        UserAction::Password(p) => db.reset_password(user.id, p).await,
        UserAction::Unlock => {
            let r = db.unlock_user(user.id).await;
            // This process's counters too (others forget theirs within their window).
            state.signin_throttle().forget_name(&user.name);
            r
        }
        UserAction::ResetSecondFactor => match db.disable_totp(user.id).await {
            Ok(()) => db.revoke_user_tokens(user.id).await.map(|_| ()),
            Err(e) => Err(e),
        },
    };
    done.map_err(ApiError::from_db)?;
    if matches!(action, UserAction::Disable | UserAction::Password(_) | UserAction::ResetSecondFactor) {
        state.vault().forget_user(user.id);
    }
    db.user(&user.name).await.map_err(ApiError::from_db)
}
