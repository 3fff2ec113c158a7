//! The brand page (white label): provider admins set the provider's product name, logo, colour,
//! support contact and sign-in text, a reseller's admins their reseller's own;
//! [`crate::service::branding`] checks and stores them.

use axum::extract::{Multipart, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::context;

use super::{check_csrf, forbidden, inline_error, message, render, session, Session};
use crate::branding::{Brand, BrandInput, Scope, MAX_LOGO_BYTES, MAX_NAME, MAX_SIGN_IN_TEXT};
use crate::errors::ApiError;
use crate::state::AppState;

type Page = Result<Response, Response>;

/// The brand the caller edits, as it stands: the provider's; a reseller's own, or (before it
/// sets one) a start from its display name.
async fn editable(state: &AppState, s: &Session) -> Result<Brand, Response> {
    match crate::service::branding::scope_of(&s.caller()) {
        Some(Scope::Provider) => Ok(crate::branding::current().as_ref().clone()),
        Some(Scope::Reseller(id)) => match crate::branding::of_reseller(state.db(), id).await {
            Some(b) => Ok(b),
            None => Ok(Brand { product_name: s.me.reseller.clone().unwrap_or_default(), ..Brand::default() }),
        },
        None => Err(forbidden(s, "change the brand")),
    }
}

fn brand_page(
    s: &Session,
    current: &Brand,
    status: StatusCode,
    error: Option<String>,
    typed: Option<&BrandInput>,
) -> Response {
    let form = match typed {
        Some(t) => context! {
            product_name => t.product_name, accent => t.accent, support_email => t.support_email,
            support_url => t.support_url, sign_in_text => t.sign_in_text,
        },
        None => context! {
            product_name => current.product_name, accent => current.accent, support_email => current.support_email,
            support_url => current.support_url, sign_in_text => current.sign_in_text,
        },
    };
    render(
        status,
        "branding.html",
        s.ctx(context! {
            form, form_error => error, has_logo => current.logo_url.is_some(), own => s.me.reseller.is_some(),
            max_name => MAX_NAME, max_text => MAX_SIGN_IN_TEXT, max_logo_kb => MAX_LOGO_BYTES / 1024,
        }),
    )
}

/// `GET /console/branding`.
pub(super) async fn page(State(state): State<AppState>, headers: HeaderMap) -> Page {
    let s = session(&state, &headers).await?;
    let current = editable(&state, &s).await?;
    Ok(brand_page(&s, &current, StatusCode::OK, None, None))
}

/// `POST /console/branding` (a multipart form: the logo is a file). The body is capped at 1 MiB
/// by the route; the logo's own limit is checked on its bytes.
pub(super) async fn save(State(state): State<AppState>, headers: HeaderMap, mut form: Multipart) -> Page {
    let s = session(&state, &headers).await?;
    let mut input = BrandInput::default();
    let mut csrf = String::new();
    let mut logo: Option<Vec<u8>> = None;
    let bad_form = |s: &Session| {
        message(
            StatusCode::BAD_REQUEST,
            "Not saved",
            "The form arrived incomplete; reload the page and try again.",
            Some(s),
        )
    };
    while let Some(field) = form.next_field().await.map_err(|_| bad_form(&s))? {
        let name = field.name().unwrap_or_default().to_string();
        if name == "logo" {
            let bytes = field.bytes().await.map_err(|_| bad_form(&s))?;
            logo = Some(bytes.to_vec()).filter(|b| !b.is_empty());
            continue;
        }
        let value = field.text().await.map_err(|_| bad_form(&s))?;
        match name.as_str() {
            "csrf" => csrf = value,
            "product_name" => input.product_name = value,
            "accent" => input.accent = value,
            "support_email" => input.support_email = value,
            "support_url" => input.support_url = value,
            "sign_in_text" => input.sign_in_text = value,
            "remove_logo" => input.remove_logo = value == "yes",
            _ => {}
        }
    }
    check_csrf(&s, &csrf)?;
    match crate::service::branding::set_brand(&state, &s.caller(), &input, logo.as_deref()).await {
        Ok(_) => Ok(Redirect::to("/console/branding").into_response()),
        Err(e) => {
            let why = inline_error(&s, e)?;
            let current = editable(&state, &s).await?;
            Ok(brand_page(&s, &current, StatusCode::BAD_REQUEST, Some(why), Some(&input)))
        }
    }
}

/// `GET /brand/logo`: the provider's logo, for every page (the sign-in page too, so without a
/// session). Its address carries its version, so it may be cached.
pub(super) async fn logo(State(state): State<AppState>) -> Response {
    logo_response(crate::branding::logo(state.db(), Scope::Provider).await)
}

/// `GET /brand/logo/{reseller}`: a reseller's own logo (by its id), as public as the provider's.
pub(super) async fn reseller_logo(State(state): State<AppState>, Path(id): Path<i64>) -> Response {
    logo_response(crate::branding::logo(state.db(), Scope::Reseller(id)).await)
}

fn logo_response(logo: Option<(String, Vec<u8>)>) -> Response {
    match logo {
        Some((kind, bytes)) => (
            [
                (header::CONTENT_TYPE, kind),
                (header::CACHE_CONTROL, "public, max-age=86400".to_string()),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
            ],
            bytes,
        )
            .into_response(),
        None => ApiError::not_found("no logo is set").into_response(),
    }
}
