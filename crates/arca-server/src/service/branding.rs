//! Setting a brand (white label): the provider's by provider admins, a reseller's own by its
//! admins; every field checked ([`crate::branding::BrandInput::validate`]), audited. The
//! provider's is in force at once in this process and within seconds in the others; a
//! reseller's is read with each of its pages.

use crate::access::{is_provider_admin, reseller_of};
use crate::branding::{self, Brand, BrandInput, Scope};
use crate::errors::ApiError;
use crate::state::AppState;

use super::{forbidden, Caller};

/// Stores the brand `input` says (with `logo`'s bytes when uploaded as a file) and returns it.
pub async fn set_brand(
    state: &AppState,
    caller: &Caller,
    input: &BrandInput,
    logo: Option<&[u8]>,
) -> Result<Brand, ApiError> {
    let scope = scope_of(caller);
    let target = scope.map_or_else(|| "brand".to_string(), Scope::key);
    let result = match scope {
        Some(scope) => store(state, scope, input, logo).await,
        None => Err(forbidden("change the brand")),
    };
    caller.audited(state, None, "branding.update", &target, &input.product_name, result).await
}

/// The brand the caller sets: the provider's (its admins) or its reseller's (a reseller's
/// admins); `None` for everyone else.
pub fn scope_of(caller: &Caller) -> Option<Scope> {
    let p = &caller.principal;
    if is_provider_admin(p) {
        Some(Scope::Provider)
    } else {
        reseller_of(p).map(Scope::Reseller)
    }
}

/// The brand the caller sees (a reseller's admins: their own if set, else the provider's).
pub async fn seen_by(state: &AppState, caller: &Caller) -> Brand {
    let scope = reseller_of(&caller.principal).map_or(Scope::Provider, Scope::Reseller);
    if scope == Scope::Provider {
        branding::refresh(state.db()).await;
    }
    branding::in_force(state.db(), scope).await.as_ref().clone()
}

async fn store(state: &AppState, scope: Scope, input: &BrandInput, logo: Option<&[u8]>) -> Result<Brand, ApiError> {
    let key = scope.key();
    let previous = state.db().brand(&key).await.map_err(ApiError::from_db)?;
    let stored = input.validate(logo, previous.as_ref()).map_err(ApiError::bad_request)?;
    state.db().set_brand(&key, &stored).await.map_err(ApiError::from_db)?;
    if scope == Scope::Provider {
        branding::refresh(state.db()).await;
    }
    Ok(branding::in_force(state.db(), scope).await.as_ref().clone())
}
