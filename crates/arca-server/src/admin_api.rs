//! The account API (`/v1/auth/…`, `/v1/setup`, `/v1/admin/…`): sign-in, plans, tenants, users,
//! repositories, devices, usage export and the audit log. `arca admin` and the web console are
//! both clients of it, so everything the console does can be scripted.
//!
//! Every change is audited with its outcome; a tenant a caller may not see answers "does not
//! exist", exactly as a missing one does.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::access::{can_manage_tenant, is_provider_admin, is_staff};
use crate::db::accounts::{LoginOutcome, Plan, Principal, Role, Tenant, TenantChange};
use crate::db::audit::NewAudit;
use crate::db::usage::to_csv;
use crate::errors::ApiError;
use crate::routes::{authenticate, RequestId};
use crate::service::accounts as service;
use crate::service::{forbidden, Caller};
use crate::state::AppState;
use arca_api::{
    LoginRequest, LoginResponse, NewDevice, NewDeviceResponse, NewRepo, NewTenant, NewUser, RepoChange,
    RetentionChange, Schedule, SetupRequest, WhoAmI,
};

type ApiResult = Result<Response, ApiError>;

/// The authenticated caller of an API request, for the service layer.
pub(crate) async fn caller(state: &AppState, headers: &HeaderMap, rid: &RequestId) -> Result<Caller, ApiError> {
    Ok(Caller::api(authenticate(state, headers).await?, &rid.0))
}

/// Records an audit entry; a failure to record is logged (the action itself already happened).
/// Positional on purpose: every call site names each field in the same order.
#[allow(clippy::too_many_arguments)]
async fn audit(
    state: &AppState,
    rid: &RequestId,
    actor: &str,
    tenant_id: Option<i64>,
    action: &str,
    target: &str,
    outcome: &str,
    detail: &str,
) {
    let entry = NewAudit { actor, tenant_id, action, target, outcome, detail, request_id: &rid.0 };
    state.db().record(entry).await
}

/// Runs `result`, auditing its outcome as `action` on `target`.
async fn audited<T>(
    state: &AppState,
    rid: &RequestId,
    p: &Principal,
    tenant_id: Option<i64>,
    action: &str,
    target: &str,
    result: Result<T, ApiError>,
) -> Result<T, ApiError> {
    match &result {
        Ok(_) => audit(state, rid, &p.actor, tenant_id, action, target, "ok", "").await,
        Err(e) => {
            let outcome = if e.status().is_client_error() { "denied" } else { "failed" };
            audit(state, rid, &p.actor, tenant_id, action, target, outcome, e.message()).await
        }
    }
    result
}

/// The tenant `name`, if `p` may view it (or manage it, when `manage`): [`crate::service::tenant_for`].
async fn tenant_for(
    state: &AppState,
    rid: &RequestId,
    p: &Principal,
    name: &str,
    manage: bool,
) -> Result<Tenant, ApiError> {
    crate::service::tenant_for(state, &Caller::api(p.clone(), &rid.0), name, manage).await
}

/// Whose figures a read of tenant data covers: the named tenant (if visible), else every tenant
/// for provider staff, else the caller's own tenant; device tokens read none. `None` is "all".
async fn read_scope(
    state: &AppState,
    rid: &RequestId,
    p: &Principal,
    tenant: Option<&str>,
    what: &str,
) -> Result<Option<i64>, ApiError> {
    match (tenant, is_staff(p)) {
        (Some(t), _) => Ok(Some(tenant_for(state, rid, p, t, false).await?.id)),
        (None, true) => Ok(None),
        (None, false) => match (p.tenant_id, p.role) {
            (Some(t), r) if r != Role::Device => Ok(Some(t)),
            _ => Err(forbidden(what)),
        },
    }
}

// ---- sign-in ----

/// `POST /v1/auth/login`: exchanges a user's password for an API token.
pub(crate) async fn login(
    State(state): State<AppState>,
    Extension(rid): Extension<RequestId>,
    Extension(client): Extension<crate::routes::ClientAddr>,
    Json(req): Json<LoginRequest>,
) -> ApiResult {
    let attempt =
        crate::signin::sign_in(&state, &req.user, &req.password, client.0).await.map_err(ApiError::from_db)?;
    let outcome = attempt.outcome;
    let actor = format!("user:{}", req.user);
    match outcome {
        LoginOutcome::Ok(user) => {
            if state.db().totp_enabled(user.id).await.map_err(ApiError::from_db)? {
                let code = req.totp.as_deref().unwrap_or("");
                if code.is_empty() {
                    audit(&state, &rid, &actor, None, "login", &req.user, "denied", "one-time code missing").await;
                    return Err(ApiError::new(
                        StatusCode::UNAUTHORIZED,
                        "this account signs in with a one-time code: send it as `totp` (arca admin login --totp CODE)",
                    ));
                }
                if !state.db().check_second_factor(user.id, code).await.map_err(ApiError::from_db)? {
                    audit(&state, &rid, &actor, None, "login", &req.user, "denied", "wrong one-time code").await;
                    return Err(ApiError::new(StatusCode::UNAUTHORIZED, "wrong or already used one-time code"));
                }
            }
            let ttl = req.ttl_days.unwrap_or(30).clamp(0, 3650);
            let label = if req.label.is_empty() { "api".to_string() } else { req.label.chars().take(100).collect() };
            let (token, expires_at) =
                state.db().create_user_token(user.id, &label, ttl).await.map_err(ApiError::from_db)?;
            let tenant_id = match &user.tenant {
                Some(t) => Some(state.db().tenant(t).await.map_err(ApiError::from_db)?.id),
                None => None,
            };
            audit(&state, &rid, &actor, tenant_id, "login", &req.user, "ok", &label).await;
            Ok(Json(LoginResponse { token, expires_at, user: user.name, role: user.role, tenant: user.tenant })
                .into_response())
        }
        LoginOutcome::BadCredentials => {
            audit(&state, &rid, &actor, None, "login", &req.user, "denied", "wrong user or password").await;
            Err(ApiError::new(StatusCode::UNAUTHORIZED, "wrong user name or password"))
        }
        LoginOutcome::Locked { until } => {
            if attempt.audit {
                audit(&state, &rid, &actor, None, "login", &req.user, "denied", "locked or throttled").await;
            }
            let wait = (until - crate::db::now()).max(1) as u64;
            Err(ApiError::new(StatusCode::TOO_MANY_REQUESTS, crate::signin::locked_message(until))
                .with_retry_after(wait))
        }
        LoginOutcome::Disabled => {
            audit(&state, &rid, &actor, None, "login", &req.user, "denied", "account disabled").await;
            Err(ApiError::new(StatusCode::FORBIDDEN, "this account is disabled; ask an administrator"))
        }
    }
}

/// `POST /v1/auth/logout`: revokes the token the request carries.
pub(crate) async fn logout(State(state): State<AppState>, headers: HeaderMap) -> ApiResult {
    let p = authenticate(&state, &headers).await?;
    state.db().revoke_token(p.token_id).await.map_err(ApiError::from_db)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /v1/auth/whoami`: who the token belongs to.
pub(crate) async fn whoami(State(state): State<AppState>, headers: HeaderMap) -> ApiResult {
    let p = authenticate(&state, &headers).await?;
    let tenant = match p.tenant_id {
        Some(id) => Some(state.db().tenant_by_id(id).await.map_err(ApiError::from_db)?.name),
        None => None,
    };
    Ok(Json(WhoAmI { actor: p.actor, role: p.role, tenant }).into_response())
}

/// `POST /v1/setup`: creates the first provider admin with the one-time token the server printed
/// at its first start. Refused once any provider admin exists.
pub(crate) async fn setup(
    State(state): State<AppState>,
    Extension(rid): Extension<RequestId>,
    Json(req): Json<SetupRequest>,
) -> ApiResult {
    let valid =
        state.setup_token().is_some_and(|t| blake3::hash(t.as_bytes()) == blake3::hash(req.setup_token.as_bytes()));
    if !valid {
        audit(&state, &rid, "anonymous", None, "setup", &req.user, "denied", "wrong setup token").await;
        return Err(ApiError::new(StatusCode::FORBIDDEN, "wrong or expired setup token"));
    }
    if state.db().has_provider_admin().await.map_err(ApiError::from_db)? {
        return Err(ApiError::new(StatusCode::CONFLICT, "the server is already set up"));
    }
    let user =
        state.db().create_user(&req.user, &req.password, Role::ProviderAdmin, None).await.map_err(ApiError::from_db)?;
    audit(&state, &rid, &format!("user:{}", user.name), None, "setup", &user.name, "ok", "first provider admin").await;
    Ok((StatusCode::CREATED, Json(user)).into_response())
}

// ---- brand ----

/// `GET /v1/admin/branding`: the brand in force (staff: the provider's; a reseller's admins:
/// theirs, or the provider's while they have none).
pub(crate) async fn get_branding(
    State(state): State<AppState>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
) -> ApiResult {
    let caller = Caller::api(authenticate(&state, &headers).await?, &rid.0);
    if !is_staff(&caller.principal) && crate::access::reseller_of(&caller.principal).is_none() {
        return Err(forbidden("read the brand"));
    }
    Ok(Json(crate::service::branding::seen_by(&state, &caller).await).into_response())
}

/// `PUT /v1/admin/branding`: sets the brand (provider admins the provider's, a reseller's admins
/// their own; the logo as base64).
pub(crate) async fn put_branding(
    State(state): State<AppState>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
    Json(input): Json<crate::branding::BrandInput>,
) -> ApiResult {
    let caller = Caller::api(authenticate(&state, &headers).await?, &rid.0);
    let brand = crate::service::branding::set_brand(&state, &caller, &input, None).await?;
    Ok(Json(brand).into_response())
}

// ---- plans ----

/// `GET /v1/admin/plans`.
pub(crate) async fn list_plans(State(state): State<AppState>, headers: HeaderMap) -> ApiResult {
    let p = authenticate(&state, &headers).await?;
    let plans = match crate::access::reseller_of(&p) {
        Some(r) => state.db().plans_of_reseller(r).await,
        None if is_staff(&p) => state.db().plans().await,
        None => return Err(forbidden("list plans")),
    };
    Ok(Json(plans.map_err(ApiError::from_db)?).into_response())
}

/// `POST /v1/admin/plans`.
pub(crate) async fn create_plan(
    State(state): State<AppState>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
    Json(plan): Json<Plan>,
) -> ApiResult {
    let caller = caller(&state, &headers, &rid).await?;
    service::create_plan(&state, &caller, &plan).await?;
    Ok((StatusCode::CREATED, Json(plan)).into_response())
}

/// `PUT /v1/admin/plans/{plan}`: new figures for a plan (its name stays).
pub(crate) async fn update_plan(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
    Json(plan): Json<Plan>,
) -> ApiResult {
    let caller = caller(&state, &headers, &rid).await?;
    if plan.name != name {
        return Err(ApiError::bad_request(format!(
            "the body names plan {:?} but the address {name:?}: a plan's name does not change",
            plan.name
        )));
    }
    let moved = service::update_plan(&state, &caller, &plan).await?;
    Ok(Json(serde_json::json!({ "plan": plan, "tenants_updated": moved })).into_response())
}

/// `DELETE /v1/admin/plans/{plan}`: only when no tenant is on it.
pub(crate) async fn delete_plan(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
) -> ApiResult {
    let caller = caller(&state, &headers, &rid).await?;
    service::delete_plan(&state, &caller, &name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /v1/admin/users/{user}/{action}` (`disable`, `enable`, `unlock`, `reset-2fa`, or
/// `password` with `{"password": …}`): [`crate::service::users`].
pub(crate) async fn user_action(
    State(state): State<AppState>,
    Path((user, action)): Path<(String, String)>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
    body: Option<Json<UserActionBody>>,
) -> ApiResult {
    let caller = caller(&state, &headers, &rid).await?;
    let password = body.map(|Json(b)| b.password).unwrap_or_default();
    let act = crate::service::users::UserAction::parse(&action, &password).ok_or_else(|| {
        ApiError::not_found(format!("no user action {action:?}: disable, enable, unlock, reset-2fa or password"))
    })?;
    let user = crate::service::users::act_on_user(&state, &caller, &user, &act).await?;
    Ok(Json(user).into_response())
}

/// The body of a `password` user action.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UserActionBody {
    #[serde(default)]
    password: String,
}

// ---- tenants ----

/// `GET /v1/admin/tenants`: every tenant for staff; a reseller's admins see its tenants; a
/// tenant's own users see only it.
pub(crate) async fn list_tenants(State(state): State<AppState>, headers: HeaderMap) -> ApiResult {
    let p = authenticate(&state, &headers).await?;
    let tenants = if is_staff(&p) {
        state.db().tenants().await.map_err(ApiError::from_db)?
    } else if let Some(r) = crate::access::reseller_of(&p) {
        state.db().tenants_of_reseller(r).await.map_err(ApiError::from_db)?
    } else if let (Some(id), true) = (p.tenant_id, p.role != Role::Device) {
        vec![state.db().tenant_by_id(id).await.map_err(ApiError::from_db)?]
    } else {
        return Err(forbidden("list tenants"));
    };
    Ok(Json(tenants).into_response())
}

/// `POST /v1/admin/tenants`.
pub(crate) async fn create_tenant(
    State(state): State<AppState>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
    Json(req): Json<NewTenant>,
) -> ApiResult {
    let caller = caller(&state, &headers, &rid).await?;
    let tenant = service::create_tenant(&state, &caller, &req.name, &req.display_name, req.plan.as_deref()).await?;
    Ok((StatusCode::CREATED, Json(tenant)).into_response())
}

/// `GET /v1/admin/tenants/{tenant}`.
pub(crate) async fn get_tenant(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
) -> ApiResult {
    let p = authenticate(&state, &headers).await?;
    Ok(Json(tenant_for(&state, &rid, &p, &name, false).await?).into_response())
}

/// `PATCH /v1/admin/tenants/{tenant}`: plan, quotas, suspension (provider admins only).
pub(crate) async fn update_tenant(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
    Json(change): Json<TenantChange>,
) -> ApiResult {
    let caller = caller(&state, &headers, &rid).await?;
    let tenant = crate::service::tenant_for(&state, &caller, &name, false).await?;
    Ok(Json(service::update_tenant(&state, &caller, &tenant, &change).await?).into_response())
}

/// `DELETE /v1/admin/tenants/{tenant}`: only once it has no repositories left.
pub(crate) async fn delete_tenant(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
) -> ApiResult {
    let caller = caller(&state, &headers, &rid).await?;
    let tenant = crate::service::tenant_for(&state, &caller, &name, false).await?;
    service::delete_tenant(&state, &caller, &tenant).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---- users ----

/// `GET /v1/admin/tenants/{tenant}/users`.
pub(crate) async fn list_tenant_users(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
) -> ApiResult {
    let p = authenticate(&state, &headers).await?;
    let tenant = tenant_for(&state, &rid, &p, &name, false).await?;
    Ok(Json(state.db().users(Some(tenant.id)).await.map_err(ApiError::from_db)?).into_response())
}

/// `POST /v1/admin/tenants/{tenant}/users`: tenant admins and users (by the provider admin or the
/// tenant's own admins).
pub(crate) async fn create_tenant_user(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
    Json(req): Json<NewUser>,
) -> ApiResult {
    let caller = caller(&state, &headers, &rid).await?;
    let tenant = crate::service::tenant_for(&state, &caller, &name, true).await?;
    let user = service::create_tenant_user(&state, &caller, &tenant, &req.name, &req.password, req.role).await?;
    Ok((StatusCode::CREATED, Json(user)).into_response())
}

/// `GET /v1/admin/users`: provider staff.
pub(crate) async fn list_staff(State(state): State<AppState>, headers: HeaderMap) -> ApiResult {
    let p = authenticate(&state, &headers).await?;
    if !is_staff(&p) {
        return Err(forbidden("list provider staff"));
    }
    Ok(Json(state.db().users(None).await.map_err(ApiError::from_db)?).into_response())
}

/// `POST /v1/admin/users`: provider admins and operators.
pub(crate) async fn create_staff(
    State(state): State<AppState>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
    Json(req): Json<NewUser>,
) -> ApiResult {
    let caller = caller(&state, &headers, &rid).await?;
    let user = service::create_staff(&state, &caller, &req.name, &req.password, req.role).await?;
    Ok((StatusCode::CREATED, Json(user)).into_response())
}

// ---- repositories ----

/// `GET /v1/admin/repos`: every repository the caller can see.
pub(crate) async fn list_all_repos(State(state): State<AppState>, headers: HeaderMap) -> ApiResult {
    let p = authenticate(&state, &headers).await?;
    let repos = if is_staff(&p) {
        state.db().repositories(None).await
    } else if let (Some(t), true) = (p.tenant_id, p.role != Role::Device) {
        state.db().repositories(Some(t)).await
    } else {
        return Err(forbidden("list repositories"));
    };
    Ok(Json(repos.map_err(ApiError::from_db)?).into_response())
}

/// `GET /v1/admin/tenants/{tenant}/repos`.
pub(crate) async fn list_repos(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
) -> ApiResult {
    let p = authenticate(&state, &headers).await?;
    let tenant = tenant_for(&state, &rid, &p, &name, false).await?;
    Ok(Json(state.db().repositories(Some(tenant.id)).await.map_err(ApiError::from_db)?).into_response())
}

/// `POST /v1/admin/tenants/{tenant}/repos`.
pub(crate) async fn create_repo(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
    Json(req): Json<NewRepo>,
) -> ApiResult {
    let caller = caller(&state, &headers, &rid).await?;
    let tenant = crate::service::tenant_for(&state, &caller, &name, true).await?;
    let repo = service::create_repository(&state, &caller, &tenant, &req.name, req.lock_days, req.format).await?;
    Ok((StatusCode::CREATED, Json(repo)).into_response())
}

/// The repository `name` if `p` can see it: [`crate::service::repository_for`].
async fn repo_for(
    state: &AppState,
    rid: &RequestId,
    p: &Principal,
    name: &str,
) -> Result<crate::db::accounts::Repository, ApiError> {
    crate::service::repository_for(state, &Caller::api(p.clone(), &rid.0), name).await
}

/// `PATCH /v1/admin/repos/{repo}`: the retention lock (provider admins; a tenant's admins may
/// lengthen it; compliance mode only ever extends it).
pub(crate) async fn update_repo(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
    Json(change): Json<RepoChange>,
) -> ApiResult {
    let caller = caller(&state, &headers, &rid).await?;
    let repo = crate::service::repository_for(&state, &caller, &name).await?;
    let repo = service::set_repository_lock(&state, &caller, &repo, change.lock_days, change.compliance).await?;
    Ok(Json(repo).into_response())
}

/// `DELETE /v1/admin/repos/{repo}`: only an empty repository (its objects go first, each when
/// its retention lock allows).
pub(crate) async fn delete_repo(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
) -> ApiResult {
    let caller = caller(&state, &headers, &rid).await?;
    let repo = crate::service::repository_for(&state, &caller, &name).await?;
    service::delete_repository(&state, &caller, &repo).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---- devices ----

/// `GET /v1/admin/tenants/{tenant}/devices`.
pub(crate) async fn list_devices(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
) -> ApiResult {
    let p = authenticate(&state, &headers).await?;
    let tenant = tenant_for(&state, &rid, &p, &name, false).await?;
    Ok(Json(state.db().devices(Some(tenant.id)).await.map_err(ApiError::from_db)?).into_response())
}

/// `POST /v1/admin/tenants/{tenant}/devices`: a device and its token (shown once).
pub(crate) async fn create_device(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
    Json(req): Json<NewDevice>,
) -> ApiResult {
    let caller = caller(&state, &headers, &rid).await?;
    let tenant = crate::service::tenant_for(&state, &caller, &name, true).await?;
    let (device, token) = service::create_device(&state, &caller, &tenant, &req.name, &req.repo).await?;
    Ok((StatusCode::CREATED, Json(NewDeviceResponse { device, token })).into_response())
}

/// `DELETE /v1/admin/tenants/{tenant}/devices/{device}`: revokes the device's token at once.
pub(crate) async fn revoke_device(
    State(state): State<AppState>,
    Path((name, device)): Path<(String, String)>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
) -> ApiResult {
    let caller = caller(&state, &headers, &rid).await?;
    let tenant = crate::service::tenant_for(&state, &caller, &name, true).await?;
    Ok(Json(service::revoke_device(&state, &caller, &tenant, &device).await?).into_response())
}

/// `PUT /v1/admin/tenants/{tenant}/devices/{device}/schedule`: how often the device should back
/// up; a device later than that (plus an hour) is overdue and raises an alert.
pub(crate) async fn set_device_schedule(
    State(state): State<AppState>,
    Path((name, device)): Path<(String, String)>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
    Json(s): Json<Schedule>,
) -> ApiResult {
    let caller = caller(&state, &headers, &rid).await?;
    let tenant = crate::service::tenant_for(&state, &caller, &name, true).await?;
    service::set_device_schedule(&state, &caller, &tenant, &device, s.every_hours).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /v1/admin/health` parameters.
#[derive(Debug, Deserialize)]
pub(crate) struct HealthQuery {
    tenant: Option<String>,
}

/// `GET /v1/admin/health`: every device with its schedule, last backup and status, and the newest
/// alerts. Provider staff see every tenant; a tenant's admins and users their own.
pub(crate) async fn health(
    State(state): State<AppState>,
    Query(q): Query<HealthQuery>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
) -> ApiResult {
    let p = authenticate(&state, &headers).await?;
    let tenant_id = read_scope(&state, &rid, &p, q.tenant.as_deref(), "read backup health").await?;
    let devices = state.db().device_health(tenant_id).await.map_err(ApiError::from_db)?;
    let alerts = state.db().alerts(tenant_id, 50).await.map_err(ApiError::from_db)?;
    let repositories = state.db().restore_checks(tenant_id).await.map_err(ApiError::from_db)?;
    Ok(Json(serde_json::json!({ "devices": devices, "alerts": alerts, "repositories": repositories })).into_response())
}

/// `GET /v1/recovery-key`: the provider's public recovery key, for `arca key add --provider`
/// (any signed-in principal, devices included: a public key is no secret).
pub(crate) async fn recovery_key(State(state): State<AppState>, headers: HeaderMap) -> ApiResult {
    authenticate(&state, &headers).await?;
    match crate::recovery::public_key(&state).await {
        Ok(Some((public, fingerprint))) => {
            Ok(Json(serde_json::json!({ "public_key": hex::encode(public), "fingerprint": fingerprint }))
                .into_response())
        }
        Ok(None) => Err(ApiError::not_found("this provider offers no recovery service (it has no recovery key)")),
        Err(e) => Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())),
    }
}

/// `POST /v1/admin/recovery-key` body.
#[derive(Deserialize)]
pub(crate) struct NewRecoveryKey {
    passphrase: String,
}

/// `POST /v1/admin/recovery-key`: makes the provider's recovery key pair, the private half
/// sealed under the passphrase (provider admins; once: grants are sealed to it). Audited.
pub(crate) async fn create_recovery_key(
    State(state): State<AppState>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
    Json(b): Json<NewRecoveryKey>,
) -> ApiResult {
    use crate::recovery::RecoveryError;
    let p = authenticate(&state, &headers).await?;
    let result = if !is_provider_admin(&p) {
        Err(forbidden("create the provider's recovery key"))
    } else if b.passphrase.chars().count() < 12 {
        Err(ApiError::bad_request("the recovery passphrase needs at least 12 characters"))
    } else {
        let kdf = arca_core::keys::KdfParams::default();
        crate::recovery::create_key(&state, &b.passphrase, kdf, &p.actor).await.map_err(|e| match e {
            RecoveryError::Db(crate::db::DbError::Conflict(m)) => ApiError::new(StatusCode::CONFLICT, m),
            e => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        })
    };
    let fingerprint = audited(&state, &rid, &p, None, "recovery.key.create", "provider", result).await?;
    Ok((StatusCode::CREATED, Json(serde_json::json!({ "fingerprint": fingerprint }))).into_response())
}

/// `POST /v1/admin/restore-check` parameters.
#[derive(Debug, Deserialize)]
pub(crate) struct RestoreCheckQuery {
    repo: Option<String>,
}

/// `POST /v1/admin/restore-check`: runs the server's restore check of one repository's (or every
/// repository's) newest snapshot now and returns the outcomes. Provider staff; audited.
pub(crate) async fn restore_check(
    State(state): State<AppState>,
    Query(q): Query<RestoreCheckQuery>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
) -> ApiResult {
    let p = authenticate(&state, &headers).await?;
    let target = q.repo.clone().unwrap_or_else(|| "all repositories".into());
    let result = if !is_staff(&p) {
        Err(forbidden("run restore checks"))
    } else {
        match &q.repo {
            Some(name) => match state.db().repository(name).await {
                Ok(repo) => {
                    crate::restore_check::check(&state, &repo).await.map(|o| vec![o]).map_err(ApiError::from_db)
                }
                Err(e) => Err(ApiError::from_db(e)),
            },
            None => crate::restore_check::check_all(&state, None).await.map_err(ApiError::from_db),
        }
    };
    let outcomes = audited(&state, &rid, &p, None, "restore.check", &target, result).await?;
    Ok(Json(outcomes).into_response())
}

// ---- usage and audit ----

/// `GET /v1/admin/usage` parameters.
#[derive(Debug, Deserialize)]
pub(crate) struct UsageQuery {
    tenant: Option<String>,
    /// First day, `YYYY-MM-DD` (default: 30 days ago).
    from: Option<String>,
    /// Last day (default: today).
    to: Option<String>,
    /// `json` (default) or `csv`.
    format: Option<String>,
}

fn parse_day(s: &str) -> Result<NaiveDate, ApiError> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|_| ApiError::bad_request(format!("invalid day {s:?}: use YYYY-MM-DD")))
}

/// `GET /v1/admin/usage`: metering per tenant, repository and day, as JSON or CSV.
pub(crate) async fn usage(
    State(state): State<AppState>,
    Query(q): Query<UsageQuery>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
) -> ApiResult {
    let p = authenticate(&state, &headers).await?;
    let tenant_id = read_scope(&state, &rid, &p, q.tenant.as_deref(), "read usage").await?;
    let today = chrono::Utc::now().date_naive();
    let to = q.to.as_deref().map(parse_day).transpose()?.unwrap_or(today);
    let from = q.from.as_deref().map(parse_day).transpose()?.unwrap_or(to - chrono::Days::new(29));
    let rows = state.db().usage(tenant_id, from, to).await.map_err(ApiError::from_db)?;
    match q.format.as_deref().unwrap_or("json") {
        "json" => Ok(Json(rows).into_response()),
        "csv" => Ok(crate::routes::csv_download(&format!("arca-usage-{from}-{to}.csv"), to_csv(&rows))),
        other => Err(ApiError::bad_request(format!("unknown format {other:?}: use json or csv"))),
    }
}

/// `GET /v1/admin/billing` parameters.
#[derive(Debug, Deserialize)]
pub(crate) struct BillingQuery {
    tenant: Option<String>,
    /// `YYYY-MM` (default: this month, so far).
    month: Option<String>,
    /// `json` (default) or `csv`.
    format: Option<String>,
}

/// `GET /v1/admin/billing`: per tenant and month, average and peak stored bytes, traffic,
/// snapshots and the invoice lines from the tenant's plan. Provider staff only: prices are the
/// provider's business.
pub(crate) async fn billing(
    State(state): State<AppState>,
    Query(q): Query<BillingQuery>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
) -> ApiResult {
    let caller = caller(&state, &headers, &rid).await?;
    if !(is_staff(&caller.principal) || crate::access::reseller_of(&caller.principal).is_some()) {
        return Err(forbidden("read billing"));
    }
    let tenant = match &q.tenant {
        Some(t) => Some(crate::service::tenant_for(&state, &caller, t, false).await?),
        None => None,
    };
    let month = q.month.clone().unwrap_or_else(crate::db::billing::this_month);
    let rows = crate::service::billing::month(&state, &caller, tenant.as_ref(), &month).await?;
    match q.format.as_deref().unwrap_or("json") {
        "json" => Ok(Json(rows).into_response()),
        "csv" => {
            Ok(crate::routes::csv_download(&format!("arca-billing-{month}.csv"), crate::db::billing::to_csv(&rows)))
        }
        other => Err(ApiError::bad_request(format!("unknown format {other:?}: use json or csv"))),
    }
}

/// `GET /v1/admin/billing/settings`: the caller's seller's billing settings (provider staff the
/// provider's, a reseller's admins their reseller's), with `saved` false while they are the
/// defaults.
pub(crate) async fn billing_settings(
    State(state): State<AppState>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
) -> ApiResult {
    let caller = caller(&state, &headers, &rid).await?;
    let (settings, saved) = crate::service::billing::settings(&state, &caller).await?;
    let mut v = serde_json::to_value(&settings).map_err(|e| ApiError::internal(e.to_string()))?;
    v["saved"] = serde_json::Value::Bool(saved);
    Ok(Json(v).into_response())
}

/// `PUT /v1/admin/billing/settings`: saves them (the seller's admins; checked and audited by
/// [`crate::service::billing::set_settings`]).
pub(crate) async fn set_billing_settings(
    State(state): State<AppState>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
    Json(body): Json<arca_api::BillingSettings>,
) -> ApiResult {
    let caller = caller(&state, &headers, &rid).await?;
    let saved = crate::service::billing::set_settings(&state, &caller, &body).await?;
    Ok(Json(saved).into_response())
}

/// `POST /v1/admin/invoices`: issues the invoice of a tenant's finished month in its seller's
/// name (the provider's admins, or its reseller's): 201 with the new invoice, or 200 with the
/// one issued before.
pub(crate) async fn issue_invoice(
    State(state): State<AppState>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
    Json(body): Json<arca_api::IssueInvoice>,
) -> ApiResult {
    let caller = caller(&state, &headers, &rid).await?;
    let tenant = crate::service::tenant_for(&state, &caller, &body.tenant, false).await?;
    let (invoice, created) = crate::service::billing::issue(&state, &caller, &tenant, &body.month).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(invoice)).into_response())
}

/// `GET /v1/admin/invoices` parameters.
#[derive(Debug, Deserialize)]
pub(crate) struct InvoicesQuery {
    tenant: Option<String>,
    /// At most this many, newest first (default 100, at most 1000).
    limit: Option<i64>,
}

/// `GET /v1/admin/invoices`: issued invoices, newest first: staff every invoice the provider
/// issued, a reseller's admins every invoice it issued (or either the named tenant's), a
/// tenant's admins and users their own.
pub(crate) async fn invoices(
    State(state): State<AppState>,
    Query(q): Query<InvoicesQuery>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
) -> ApiResult {
    let caller = caller(&state, &headers, &rid).await?;
    let limit = crate::limits::in_range("limit", q.limit.unwrap_or(100), 1, 1000)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let name = match (&q.tenant, caller.principal.tenant_id) {
        (Some(t), _) => Some(t.clone()),
        (None, Some(id)) if !is_staff(&caller.principal) => {
            Some(state.db().tenant_by_id(id).await.map_err(ApiError::from_db)?.name)
        }
        (None, _) => None,
    };
    let tenant = match &name {
        Some(n) => Some(crate::service::tenant_for(&state, &caller, n, false).await?),
        None => None,
    };
    let list = crate::service::billing::invoices(&state, &caller, tenant.as_ref(), limit).await?;
    Ok(Json(list).into_response())
}

/// `GET /v1/admin/invoices/{number}` parameters.
#[derive(Debug, Deserialize)]
pub(crate) struct InvoiceQuery {
    /// The tenant invoiced: its seller's numbering is searched (default: the caller's seller's,
    /// or for a tenant's users their tenant's).
    tenant: Option<String>,
}

/// `GET /v1/admin/invoices/{number}`: one issued invoice (its issuer's staff or admins, provider
/// staff, or its tenant's own users; any other is "not found"). Numbers are unique per seller.
pub(crate) async fn invoice(
    State(state): State<AppState>,
    Path(number): Path<String>,
    Query(q): Query<InvoiceQuery>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
) -> ApiResult {
    let caller = caller(&state, &headers, &rid).await?;
    let tenant = match &q.tenant {
        Some(n) => Some(crate::service::tenant_for(&state, &caller, n, false).await?),
        None => None,
    };
    let inv = crate::service::billing::invoice(&state, &caller, tenant.as_ref(), &number).await?;
    Ok(Json(inv).into_response())
}

/// `GET /v1/admin/audit`'s page size.
#[derive(Debug, Deserialize)]
pub(crate) struct AuditLimit {
    limit: Option<i64>,
}

/// `GET /v1/admin/audit`: newest first; staff see everything, tenant admins their tenant. The
/// search parameters are the console's ([`crate::service::audit::AuditSearch`]).
pub(crate) async fn audit_log(
    State(state): State<AppState>,
    Query(q): Query<crate::service::audit::AuditSearch>,
    Query(l): Query<AuditLimit>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
) -> ApiResult {
    let p = authenticate(&state, &headers).await?;
    let caller = crate::service::Caller::api(p, &rid.0);
    let page = crate::service::audit::search(&state, &caller, &q, l.limit.unwrap_or(100)).await?;
    Ok(Json(page.entries).into_response())
}

// ---- scrub ----

#[derive(Serialize)]
struct ScrubStatus {
    runs: Vec<crate::db::scrub::ScrubRun>,
    /// Damage found by the newest run (only the caller's tenant's, for tenant admins).
    findings: Vec<crate::db::scrub::Finding>,
}

/// `POST /v1/admin/scrub`: starts a scrub now (provider staff); 409 if one is running.
pub(crate) async fn start_scrub(
    State(state): State<AppState>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
) -> ApiResult {
    let p = authenticate(&state, &headers).await?;
    let result = if is_staff(&p) {
        match crate::scrub::start(&state, &p.actor).await.map_err(ApiError::from_db)? {
            Some(id) => Ok(id),
            None => Err(ApiError::new(StatusCode::CONFLICT, "a scrub is already running")),
        }
    } else {
        Err(forbidden("start a scrub"))
    };
    let id = audited(&state, &rid, &p, None, "scrub.start", "all repositories", result).await?;
    Ok((StatusCode::ACCEPTED, Json(serde_json::json!({ "id": id }))).into_response())
}

/// `GET /v1/admin/scrub`: recent runs and the newest run's findings.
pub(crate) async fn scrub_status(State(state): State<AppState>, headers: HeaderMap) -> ApiResult {
    let p = authenticate(&state, &headers).await?;
    let tenant = if is_staff(&p) {
        None
    } else if p.role == Role::TenantAdmin {
        p.tenant_id
    } else {
        return Err(forbidden("read scrub reports"));
    };
    let runs = state.db().scrub_runs_seen_by(tenant, 20).await.map_err(ApiError::from_db)?;
    let findings = match runs.first() {
        Some(r) => state.db().scrub_findings(r.id, tenant).await.map_err(ApiError::from_db)?,
        None => Vec::new(),
    };
    Ok(Json(ScrubStatus { runs, findings }).into_response())
}

// ---- retention and garbage collection ----

/// `PUT /v1/admin/repos/{repo}/retention`: the server-side retention policy (provider admins and
/// the tenant's admins).
pub(crate) async fn set_retention(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
    Json(change): Json<RetentionChange>,
) -> ApiResult {
    let caller = caller(&state, &headers, &rid).await?;
    let repo = crate::service::repository_for(&state, &caller, &name).await?;
    let repo = service::set_retention(&state, &caller, &repo, change.days).await?;
    let days = state.db().retention_days(repo.id).await.map_err(ApiError::from_db)?;
    Ok(Json(serde_json::json!({ "repository": repo.name, "retention_days": days, "lock_days": repo.lock_days }))
        .into_response())
}

/// `POST /v1/admin/repos/{repo}/gc`: applies retention and frees what no snapshot needs, now
/// (provider staff and the tenant's admins). The server also runs it on a schedule.
pub(crate) async fn run_gc(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
) -> ApiResult {
    let p = authenticate(&state, &headers).await?;
    let repo = repo_for(&state, &rid, &p, &name).await?;
    if !(can_manage_tenant(&p, &repo) || is_staff(&p)) {
        return Err(forbidden("collect a repository"));
    }
    let report = crate::gc::collect(&state, &repo, &p.actor, &rid.0).await.map_err(ApiError::from_db)?;
    Ok(Json(report).into_response())
}

// ---- resellers ----

/// `GET /v1/admin/resellers`: every reseller (staff), or the caller's own (its admins).
pub(crate) async fn list_resellers(
    State(state): State<AppState>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
) -> ApiResult {
    let caller = caller(&state, &headers, &rid).await?;
    Ok(Json(crate::service::resellers::list(&state, &caller).await?).into_response())
}

/// `POST /v1/admin/resellers`: a reseller and its first admin (provider admins).
pub(crate) async fn create_reseller(
    State(state): State<AppState>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
    Json(req): Json<arca_api::NewReseller>,
) -> ApiResult {
    let caller = caller(&state, &headers, &rid).await?;
    let reseller = crate::service::resellers::create(&state, &caller, &req).await?;
    Ok((StatusCode::CREATED, Json(reseller)).into_response())
}

/// `GET /v1/admin/resellers/{reseller}`.
pub(crate) async fn get_reseller(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
) -> ApiResult {
    let caller = caller(&state, &headers, &rid).await?;
    Ok(Json(crate::service::resellers::find(&state, &caller, &name).await?).into_response())
}

/// `PUT /v1/admin/resellers/{reseller}`: display name, capacity (provider admins).
pub(crate) async fn update_reseller(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
    Json(change): Json<arca_api::ResellerChange>,
) -> ApiResult {
    let caller = caller(&state, &headers, &rid).await?;
    let reseller = crate::service::resellers::find(&state, &caller, &name).await?;
    Ok(Json(crate::service::resellers::update(&state, &caller, &reseller, &change).await?).into_response())
}

/// `POST /v1/admin/resellers/{reseller}/admins`: another admin of the reseller.
pub(crate) async fn create_reseller_admin(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
    Json(req): Json<ResellerAdminBody>,
) -> ApiResult {
    let caller = caller(&state, &headers, &rid).await?;
    let reseller = crate::service::resellers::find(&state, &caller, &name).await?;
    let user = crate::service::resellers::add_admin(&state, &caller, &reseller, &req.name, &req.password).await?;
    Ok((StatusCode::CREATED, Json(user)).into_response())
}

/// The body of `POST /v1/admin/resellers/{reseller}/admins`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResellerAdminBody {
    name: String,
    password: String,
}

/// `GET /v1/admin/resellers/{reseller}/statement?month=YYYY-MM[&format=csv]`: what the provider
/// charges the reseller (staff, or its own admins).
pub(crate) async fn reseller_statement(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<StatementQuery>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
) -> ApiResult {
    let caller = caller(&state, &headers, &rid).await?;
    let reseller = crate::service::resellers::find(&state, &caller, &name).await?;
    let month = q.month.clone().unwrap_or_else(crate::db::billing::this_month);
    let statement = crate::service::resellers::wholesale(&state, &caller, &reseller, &month).await?;
    match q.format.as_deref().unwrap_or("json") {
        "json" => Ok(Json(statement).into_response()),
        "csv" => Ok(crate::routes::csv_download(
            &format!("arca-wholesale-{name}-{month}.csv"),
            crate::db::billing::to_csv(&statement.tenants),
        )),
        other => Err(ApiError::bad_request(format!("unknown format {other:?}: use json or csv"))),
    }
}

/// `GET /v1/admin/resellers/{reseller}/statement` parameters.
#[derive(Debug, Deserialize)]
pub(crate) struct StatementQuery {
    /// `YYYY-MM` (default: this month, so far).
    month: Option<String>,
    /// `json` (default) or `csv`.
    format: Option<String>,
}

/// The body of `POST /v1/admin/resellers/{reseller}/invoices`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResellerInvoiceBody {
    /// The finished month, `YYYY-MM`.
    month: String,
}

/// `POST /v1/admin/resellers/{reseller}/invoices`: issues the provider's invoice to the reseller
/// for a finished month (its wholesale statement, numbered and frozen; provider admins): 201
/// with the new invoice, or 200 with the one issued before.
pub(crate) async fn issue_reseller_invoice(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
    Json(body): Json<ResellerInvoiceBody>,
) -> ApiResult {
    let caller = caller(&state, &headers, &rid).await?;
    let reseller = crate::service::resellers::find(&state, &caller, &name).await?;
    let (invoice, created) =
        crate::service::resellers::issue_invoice(&state, &caller, &reseller, body.month.trim()).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(invoice)).into_response())
}

/// `GET /v1/admin/resellers/{reseller}/invoices[?limit=N]`: the provider's invoices to the
/// reseller, newest first (staff, or its own admins).
pub(crate) async fn reseller_invoices(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<AuditLimit>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
) -> ApiResult {
    let caller = caller(&state, &headers, &rid).await?;
    let limit = crate::limits::in_range("limit", q.limit.unwrap_or(100), 1, 1000)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let reseller = crate::service::resellers::find(&state, &caller, &name).await?;
    let list = crate::service::resellers::invoices(&state, &caller, &reseller, limit).await?;
    Ok(Json(list).into_response())
}

/// `GET /v1/admin/resellers/{reseller}/invoices/{number}`: one of them.
pub(crate) async fn reseller_invoice(
    State(state): State<AppState>,
    Path((name, number)): Path<(String, String)>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
) -> ApiResult {
    let caller = caller(&state, &headers, &rid).await?;
    let reseller = crate::service::resellers::find(&state, &caller, &name).await?;
    let inv = crate::service::resellers::invoice(&state, &caller, &reseller, &number).await?;
    Ok(Json(inv).into_response())
}
