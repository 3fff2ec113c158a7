//! Setting the provider's brand (white label): provider admins only, every field checked
//! ([`crate::branding::BrandInput::validate`]), audited, in force at once in this process and
//! within seconds in the others.

use crate::access::is_provider_admin;
use crate::branding::{self, Brand, BrandInput, PROVIDER};
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
    let result = store(state, caller, input, logo).await;
    caller.audited(state, None, "branding.update", PROVIDER, &input.product_name, result).await
}

async fn store(state: &AppState, caller: &Caller, input: &BrandInput, logo: Option<&[u8]>) -> Result<Brand, ApiError> {
    if !is_provider_admin(&caller.principal) {
        return Err(forbidden("change the brand"));
    }
    let previous = state.db().brand(PROVIDER).await.map_err(ApiError::from_db)?;
    let stored = input.validate(logo, previous.as_ref()).map_err(ApiError::bad_request)?;
    state.db().set_brand(PROVIDER, &stored).await.map_err(ApiError::from_db)?;
    branding::refresh(state.db()).await;
    Ok(branding::current().as_ref().clone())
}
