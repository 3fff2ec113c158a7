//! The plans page: every plan with its quotas, retention lock and prices; provider admins
//! create, edit and delete the provider's, a reseller's admins the reseller's own (each resells
//! one of the provider's plans, which they see as their wholesale price list)
//! ([`crate::service::accounts`]). Figures are typed as text and
//! read here, so a mistyped one comes back on the form with what was typed, not as an error page.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use minijinja::context;
use serde::{Deserialize, Serialize};

use super::pages::{db_error, unconfirmed, ConfirmForm};
use super::{check_csrf, forbidden, human, inline_error, render, session, Session};
use crate::access::{is_staff, reseller_of};
use crate::db::accounts::Plan;
use crate::errors::ApiError;
use crate::service::accounts as service;
use crate::state::AppState;
use crate::units::gb_input;

type Page = Result<Response, Response>;

#[derive(Serialize)]
struct PlanView {
    name: String,
    hard: String,
    soft: String,
    lock: i64,
    compliance: bool,
    price: String,
    overage: String,
    /// The figures as the edit form shows them.
    hard_gb: String,
    soft_gb: String,
    /// The provider's plan it resells (a reseller's plan).
    resells: Option<String>,
    /// Its seller: the reseller, or `None` for the provider.
    reseller: Option<String>,
    /// The session's own (it may edit and delete it).
    mine: bool,
}

/// Cents as a form value ("120.00").
fn money_input(cents: i64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// A plan form as sent: every figure as typed.
#[derive(Deserialize, Serialize)]
pub(super) struct PlanForm {
    #[serde(skip_serializing)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    hard_gb: String,
    #[serde(default)]
    soft_gb: String,
    #[serde(default)]
    lock_days: String,
    #[serde(default)]
    price: String,
    #[serde(default)]
    overage: String,
    #[serde(default)]
    compliance: Option<String>,
    /// A reseller's plan: the provider's plan it resells.
    #[serde(default)]
    resells: String,
}

impl PlanForm {
    /// The plan it describes, or what is wrong with it (range checks follow in the service).
    fn plan(&self, name: &str) -> Result<Plan, String> {
        let number = |what: &str, v: &str| -> Result<f64, String> {
            let v = v.trim();
            let n: f64 =
                if v.is_empty() { 0.0 } else { v.parse().map_err(|_| format!("{what}: {v:?} is not a number"))? };
            if !n.is_finite() || n < 0.0 {
                return Err(format!("{what} cannot be negative"));
            }
            if n > 1e12 {
                return Err(format!("{what}: {v} is too large"));
            }
            Ok(n)
        };
        let lock = self.lock_days.trim();
        let lock_days = if lock.is_empty() {
            0
        } else {
            lock.parse::<i64>().map_err(|_| format!("lock: {lock:?} is not a whole number of days"))?
        };
        Ok(Plan {
            name: name.trim().to_string(),
            hard_quota_bytes: crate::units::parse_gb("hard quota", &self.hard_gb)?,
            soft_quota_bytes: crate::units::parse_gb("soft quota", &self.soft_gb)?,
            lock_days,
            compliance: self.compliance.is_some(),
            yearly_price_cents: (number("price", &self.price)? * 100.0).round() as i64,
            overage_cents_per_gb: (number("overage price", &self.overage)? * 100.0).round() as i64,
            resells: Some(self.resells.trim().to_string()).filter(|r| !r.is_empty()),
            reseller: None,
        })
    }
}

/// The page, with a refused form (`new-plan` or `edit-NAME`), its reason and what was typed.
async fn plans_page(state: &AppState, s: &Session, refused: Option<(String, String, minijinja::Value)>) -> Page {
    let reseller = reseller_of(&s.principal);
    let plans = match reseller {
        Some(r) => state.db().plans_of_reseller(r).await,
        None if is_staff(&s.principal) => state.db().plans().await,
        None => return Err(forbidden(s, "see plans")),
    }
    .map_err(|e| db_error(Some(s), e))?;
    // What the session sells: the provider's plans for its admins, a reseller's own for its.
    // (a reseller sees the provider's plans and its own; the provider's admins every plan).
    let own = |p: &Plan| s.me.seller && p.reseller.is_some() == reseller.is_some();
    let wholesale: Vec<&str> = if reseller.is_some() {
        plans.iter().filter(|p| p.reseller.is_none()).map(|p| p.name.as_str()).collect()
    } else {
        Vec::new()
    };
    let view: Vec<PlanView> = plans
        .iter()
        .map(|p| PlanView {
            name: p.name.clone(),
            hard: if p.hard_quota_bytes == 0 { "unlimited".into() } else { human(p.hard_quota_bytes) },
            soft: if p.soft_quota_bytes == 0 { "—".into() } else { human(p.soft_quota_bytes) },
            lock: p.lock_days,
            compliance: p.compliance,
            price: money_input(p.yearly_price_cents),
            overage: money_input(p.overage_cents_per_gb),
            hard_gb: gb_input(p.hard_quota_bytes),
            soft_gb: gb_input(p.soft_quota_bytes),
            resells: p.resells.clone(),
            reseller: p.reseller.clone(),
            mine: own(p),
        })
        .collect();
    let (status, refused) = match refused {
        Some((form, error, typed)) => (StatusCode::BAD_REQUEST, Some(context! { form, error, typed })),
        None => (StatusCode::OK, None),
    };
    let resellers_exist = view.iter().any(|p| p.reseller.is_some());
    Ok(render(status, "plans.html", s.ctx(context! { plans => view, refused, wholesale, resellers_exist })))
}

/// `GET /console/plans`.
pub(super) async fn plans(State(state): State<AppState>, headers: HeaderMap) -> Page {
    let s = session(&state, &headers).await?;
    plans_page(&state, &s, None).await
}

/// `POST /console/plans`.
pub(super) async fn create_plan(State(state): State<AppState>, headers: HeaderMap, Form(f): Form<PlanForm>) -> Page {
    let s = session(&state, &headers).await?;
    check_csrf(&s, &f.csrf)?;
    let result = match f.plan(&f.name) {
        Ok(plan) => service::create_plan(&state, &s.caller(), &plan).await,
        Err(why) => Err(ApiError::bad_request(why)),
    };
    match result {
        Ok(()) => Ok(Redirect::to("/console/plans").into_response()),
        Err(e) => {
            let why = inline_error(&s, e)?;
            plans_page(&state, &s, Some(("new-plan".into(), why, minijinja::Value::from_serialize(&f)))).await
        }
    }
}

/// `POST /console/plans/{plan}`: new figures; tenants still on the plan's quotas take the new
/// ones.
pub(super) async fn edit_plan(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Form(f): Form<PlanForm>,
) -> Page {
    let s = session(&state, &headers).await?;
    check_csrf(&s, &f.csrf)?;
    let result = match f.plan(&name) {
        Ok(plan) => service::update_plan(&state, &s.caller(), &plan).await.map(|_| ()),
        Err(why) => Err(ApiError::bad_request(why)),
    };
    match result {
        Ok(()) => Ok(Redirect::to("/console/plans").into_response()),
        Err(e) => {
            let why = inline_error(&s, e)?;
            let typed = minijinja::Value::from_serialize(&f);
            plans_page(&state, &s, Some((format!("edit-{name}"), why, typed))).await
        }
    }
}

/// `POST /console/plans/{plan}/delete`: only a plan no tenant is on; asks for the ticked box.
pub(super) async fn delete_plan(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Form(f): Form<ConfirmForm>,
) -> Page {
    let s = session(&state, &headers).await?;
    check_csrf(&s, &f.csrf)?;
    if f.confirm != "yes" {
        return Err(unconfirmed(&s, &format!("delete plan {name}")));
    }
    match service::delete_plan(&state, &s.caller(), &name).await {
        Ok(()) => Ok(Redirect::to("/console/plans").into_response()),
        Err(e) => {
            let why = inline_error(&s, e)?;
            plans_page(&state, &s, Some((format!("delete-{name}"), why, context! {}))).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(hard: &str, price: &str, lock: &str) -> PlanForm {
        PlanForm {
            csrf: String::new(),
            name: "p".into(),
            hard_gb: hard.into(),
            soft_gb: String::new(),
            lock_days: lock.into(),
            price: price.into(),
            overage: "0.05".into(),
            compliance: None,
            resells: String::new(),
        }
    }

    #[test]
    fn figures_are_read_in_gb_and_money() {
        let p = form("50", "120", "30").plan("p").unwrap();
        assert_eq!(
            (p.hard_quota_bytes, p.yearly_price_cents, p.overage_cents_per_gb, p.lock_days),
            (50_000_000_000, 12_000, 5, 30)
        );
        assert!(form("-1", "1", "0").plan("p").unwrap_err().contains("negative"));
        assert!(form("lots", "1", "0").plan("p").unwrap_err().contains("not a number"));
        assert!(form("1e300", "1", "0").plan("p").unwrap_err().contains("too large"));
        assert!(form("1", "1", "7.5").plan("p").unwrap_err().contains("whole number"));
        assert_eq!(money_input(12_005), "120.05");
    }
}
