//! The account operations, each written once: authorise → validate → store → audit (→ alert).
//!
//! The JSON API ([`crate::admin_api`]) and the web pages ([`crate::web`]) only parse a request
//! into a call here and render what comes back; neither checks a permission, validates a figure
//! or writes an audit entry of its own for these operations. So an operation answers and audits
//! alike whichever way it was asked (the audit entry names the channel in its detail).
//!
//! Errors are [`ApiError`]s: a status and a message for a person, which the API sends as JSON
//! and the pages show on a message page.

pub mod accounts;
pub mod agents;
pub mod audit;
pub mod billing;
pub mod branding;
pub mod resellers;
pub mod users;

use axum::http::StatusCode;

use crate::access::{can_manage_tenant, can_view_tenant};
use crate::db::accounts::{Principal, Repository, Tenant};
use crate::db::audit::NewAudit;
use crate::db::DbError;
use crate::errors::ApiError;
use crate::state::AppState;

/// Which front end asked (recorded in the audit entry's detail).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// The JSON API (`arca admin`, scripts).
    Api,
    /// The web console and portal.
    Web,
}

impl Channel {
    fn as_str(self) -> &'static str {
        match self {
            Channel::Api => "api",
            Channel::Web => "web",
        }
    }
}

/// Who asks: the authenticated principal, the request's id and the channel.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The principal of the token or session.
    pub principal: Principal,
    /// The request id (in the audit log and the server log).
    pub request_id: String,
    /// Which front end.
    pub channel: Channel,
}

impl Caller {
    /// A caller of the JSON API.
    pub fn api(principal: Principal, request_id: &str) -> Caller {
        Caller { principal, request_id: request_id.to_string(), channel: Channel::Api }
    }

    /// A caller of the web pages.
    pub fn web(principal: Principal) -> Caller {
        Caller { principal, request_id: "web".to_string(), channel: Channel::Web }
    }

    /// Writes one audit entry, `detail` as given; a failure to write is logged (the action itself
    /// already happened). The one place every front end's audit entries are written.
    pub async fn audit(
        &self,
        state: &AppState,
        tenant_id: Option<i64>,
        action: &str,
        target: &str,
        outcome: &str,
        detail: &str,
    ) {
        let entry = NewAudit {
            actor: &self.principal.actor,
            tenant_id,
            action,
            target,
            outcome,
            detail,
            request_id: &self.request_id,
        };
        state.db().record(entry).await
    }

    /// `detail` prefixed with the channel ("api", "web: …").
    fn with_channel(&self, detail: &str) -> String {
        if detail.is_empty() {
            self.channel.as_str().to_string()
        } else {
            format!("{}: {detail}", self.channel.as_str())
        }
    }

    /// Audits `result` as `action` on `target` (ok, denied for a refusal, failed for a fault)
    /// and hands it back.
    async fn audited<T>(
        &self,
        state: &AppState,
        tenant_id: Option<i64>,
        action: &str,
        target: &str,
        ok_detail: &str,
        result: Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        match &result {
            Ok(_) => self.audit(state, tenant_id, action, target, "ok", &self.with_channel(ok_detail)).await,
            Err(e) => {
                let outcome = if e.status().is_client_error() { "denied" } else { "failed" };
                self.audit(state, tenant_id, action, target, outcome, &self.with_channel(e.message())).await
            }
        }
        result
    }
}

/// 403 with "your role may not …".
pub fn forbidden(what: &str) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, format!("your role may not {what}"))
}

/// Maps a metadata error for a caller. A name that is taken is reported to customers without
/// saying by whom: names of repositories and users are unique server-wide, so "already exists"
/// would tell one tenant that another has a repository or user of that name. Provider staff,
/// who see everything anyway, get the database's own message.
fn from_db_for(caller: &Caller, kind: &str, name: &str, e: DbError) -> ApiError {
    match e {
        DbError::Conflict(_) if !crate::access::is_staff(&caller.principal) => ApiError::new(
            StatusCode::CONFLICT,
            format!("the {kind} name {name:?} is not available: choose another (names are unique on this server)"),
        ),
        e => ApiError::from_db(e),
    }
}

/// The tenant `name` if the caller may view it (or manage it, with `manage`). One out of reach
/// is "no tenant named …", exactly as a missing one, and the attempt is audited.
pub async fn tenant_for(state: &AppState, caller: &Caller, name: &str, manage: bool) -> Result<Tenant, ApiError> {
    let missing = || ApiError::not_found(format!("no tenant named {name}"));
    let tenant = match state.db().tenant(name).await {
        Ok(t) => t,
        Err(DbError::NotFound(_)) => return Err(missing()),
        Err(e) => return Err(ApiError::from_db(e)),
    };
    if !can_view_tenant(&caller.principal, &tenant) {
        let detail = caller.with_channel("tenant out of reach");
        caller.audit(state, caller.principal.tenant_id, "tenant.access", name, "denied", &detail).await;
        return Err(missing());
    }
    if manage && !can_manage_tenant(&caller.principal, &tenant) {
        return Err(forbidden(&format!("manage tenant {name}")));
    }
    Ok(tenant)
}

/// The repository `name` if the caller may see its tenant's account data; else "no repository
/// named …" (audited).
pub async fn repository_for(state: &AppState, caller: &Caller, name: &str) -> Result<Repository, ApiError> {
    let missing = || ApiError::not_found(format!("no repository named {name}"));
    let repo = state.db().find_repository(name).await.map_err(ApiError::from_db)?.ok_or_else(missing)?;
    if !can_view_tenant(&caller.principal, &repo) {
        let detail = caller.with_channel("repository out of reach");
        caller.audit(state, caller.principal.tenant_id, "repo.access", name, "denied", &detail).await;
        return Err(missing());
    }
    Ok(repo)
}
