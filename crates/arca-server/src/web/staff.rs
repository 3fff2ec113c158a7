//! Provider staff in the browser: the provider's admins and operators listed, new ones added,
//! and each account disabled, enabled, unlocked, given a new password or its two-factor sign-in
//! turned off ([`crate::service::users`], the rules the tenant pages use for customers' users).

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use minijinja::context;
use serde::{Deserialize, Serialize};

use super::pages::{db_error, do_user_action, UserActionForm};
use super::{check_csrf, date, forbidden, inline_error, render, session, Session};
use crate::access::is_provider_admin;
use crate::db::accounts::{Role, User};
use crate::state::AppState;

type Page = Result<Response, Response>;

/// A user's account state as the console shows it (staff and tenant pages alike).
pub(super) fn account_status(u: &User) -> String {
    let mut parts = Vec::new();
    if u.disabled {
        parts.push("disabled".to_string());
    }
    if u.locked_until > crate::db::now() {
        parts.push(format!("locked until {} (failed sign-ins)", date(u.locked_until)));
    }
    if parts.is_empty() {
        parts.push("active".into());
    }
    parts.join(", ")
}

#[derive(Serialize)]
struct StaffRow {
    name: String,
    role: &'static str,
    created: String,
    status: String,
    disabled: bool,
    locked: bool,
    two_factor: bool,
    me: bool,
}

async fn staff_page(state: &AppState, s: &Session, refused: Option<(String, &NewStaffForm)>) -> Page {
    if !is_provider_admin(&s.principal) {
        return Err(forbidden(s, "manage provider staff"));
    }
    let users = state.db().users(None).await.map_err(|e| db_error(Some(s), e))?;
    let rows: Vec<StaffRow> = users
        .iter()
        .map(|u| StaffRow {
            name: u.name.clone(),
            role: u.role.as_str(),
            created: date(u.created_at),
            status: account_status(u),
            disabled: u.disabled,
            locked: u.locked_until > crate::db::now(),
            two_factor: u.two_factor,
            me: s.principal.user_id == Some(u.id),
        })
        .collect();
    let (status, form_error, typed) = match refused {
        Some((m, f)) => (StatusCode::BAD_REQUEST, Some(m), context! { name => f.name, role => f.role }),
        None => (StatusCode::OK, None, context! {}),
    };
    Ok(render(
        status,
        "staff.html",
        s.ctx(context! { staff => rows, form_error, typed, min_len => crate::db::accounts::MIN_PASSWORD_LEN }),
    ))
}

/// `GET /console/staff`.
pub(super) async fn staff(State(state): State<AppState>, headers: HeaderMap) -> Page {
    let s = session(&state, &headers).await?;
    staff_page(&state, &s, None).await
}

/// The new-staff form.
#[derive(Deserialize)]
pub(super) struct NewStaffForm {
    csrf: String,
    name: String,
    password: String,
    role: String,
}

/// `POST /console/staff`: a new provider admin or operator.
pub(super) async fn create_staff(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<NewStaffForm>,
) -> Page {
    let s = session(&state, &headers).await?;
    check_csrf(&s, &f.csrf)?;
    let role = Role::parse(&f.role).unwrap_or(Role::Operator);
    match crate::service::accounts::create_staff(&state, &s.caller(), f.name.trim(), &f.password, role).await {
        Ok(_) => Ok(Redirect::to("/console/staff").into_response()),
        Err(e) => {
            let why = inline_error(&s, e)?;
            staff_page(&state, &s, Some((why, &f))).await
        }
    }
}

/// `POST /console/staff/{user}/{action}`.
pub(super) async fn staff_action(
    State(state): State<AppState>,
    Path((user, action)): Path<(String, String)>,
    headers: HeaderMap,
    Form(f): Form<UserActionForm>,
) -> Page {
    let s = session(&state, &headers).await?;
    check_csrf(&s, &f.csrf)?;
    do_user_action(&state, &s, &user, &action, &f, "/console/staff").await
}
