//! Managed agents over HTTP: what agents call (`/v1/agent/…`: enrolment with a one-time code,
//! the held configuration poll, reports) and what the provider's and the tenant's admins call
//! (`/v1/admin/tenants/{tenant}/…`: enrolment codes, protection plans, agents and their jobs).
//! Every rule is in [`crate::service::agents`]; these handlers only parse and answer.

use arca_api::agent::{AgentReport, AssignPlan, EnrollRequest, JobSpec, NewEnrolmentCode, PlanRequest};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;

use crate::admin_api::caller;
use crate::errors::ApiError;
use crate::routes::{authenticate, RequestId};
use crate::service::agents as service;
use crate::service::tenant_for;
use crate::state::AppState;

type ApiResult = Result<Response, ApiError>;

/// `POST /v1/agent/enroll`: a machine enrols with a one-time code and receives its device token.
pub(crate) async fn enroll(
    State(state): State<AppState>,
    Extension(rid): Extension<RequestId>,
    Extension(client): Extension<crate::routes::ClientAddr>,
    Json(req): Json<EnrollRequest>,
) -> ApiResult {
    Ok((StatusCode::CREATED, Json(service::enroll(&state, &req, &rid.0, client.0).await?)).into_response())
}

/// `GET /v1/agent/config` query.
#[derive(Debug, Deserialize)]
pub(crate) struct PollQuery {
    /// The etag the agent holds.
    known: Option<String>,
    /// Seconds to hold the answer while nothing changes.
    #[serde(default)]
    wait: u64,
}

/// `GET /v1/agent/config?known=ETAG&wait=SECONDS`: the plan and jobs (200), or 204 when nothing
/// changed during the wait.
pub(crate) async fn config(State(state): State<AppState>, headers: HeaderMap, Query(q): Query<PollQuery>) -> ApiResult {
    let p = authenticate(&state, &headers).await?;
    Ok(match service::agent_config(&state, &p, q.known.as_deref(), q.wait).await? {
        Some(c) => Json(c).into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    })
}

/// `POST /v1/agent/report`: a run's start, progress and end, or the agent's next run.
pub(crate) async fn report(
    State(state): State<AppState>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
    Json(r): Json<AgentReport>,
) -> ApiResult {
    let p = authenticate(&state, &headers).await?;
    service::agent_report(&state, &p, &rid.0, &r).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /v1/admin/tenants/{tenant}/enrolment-codes`.
pub(crate) async fn list_codes(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
) -> ApiResult {
    let caller = caller(&state, &headers, &rid).await?;
    let tenant = tenant_for(&state, &caller, &tenant, true).await?;
    Ok(Json(service::enrolment_codes(&state, &caller, &tenant).await?).into_response())
}

/// `POST /v1/admin/tenants/{tenant}/enrolment-codes`: a one-time code (shown once).
pub(crate) async fn create_code(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
    Json(req): Json<NewEnrolmentCode>,
) -> ApiResult {
    let caller = caller(&state, &headers, &rid).await?;
    let tenant = tenant_for(&state, &caller, &tenant, true).await?;
    let code = service::create_enrolment_code(&state, &caller, &tenant, req.repo.as_deref(), req.valid_hours).await?;
    Ok((StatusCode::CREATED, Json(code)).into_response())
}

/// `GET /v1/admin/tenants/{tenant}/protection-plans`.
pub(crate) async fn list_plans(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
) -> ApiResult {
    let caller = caller(&state, &headers, &rid).await?;
    let tenant = tenant_for(&state, &caller, &tenant, false).await?;
    Ok(Json(service::plans(&state, &caller, &tenant).await?).into_response())
}

/// `POST /v1/admin/tenants/{tenant}/protection-plans`: a new plan.
pub(crate) async fn create_plan(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
    Json(req): Json<PlanRequest>,
) -> ApiResult {
    let caller = caller(&state, &headers, &rid).await?;
    let tenant = tenant_for(&state, &caller, &tenant, true).await?;
    Ok((StatusCode::CREATED, Json(service::save_plan(&state, &caller, &tenant, &req, true).await?)).into_response())
}

/// `PUT /v1/admin/tenants/{tenant}/protection-plans/{name}`: replaces a plan (the body's name
/// must match).
pub(crate) async fn update_plan(
    State(state): State<AppState>,
    Path((tenant, name)): Path<(String, String)>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
    Json(req): Json<PlanRequest>,
) -> ApiResult {
    if req.name != name {
        return Err(ApiError::bad_request("the plan's name in the body differs from the one in the path"));
    }
    let caller = caller(&state, &headers, &rid).await?;
    let tenant = tenant_for(&state, &caller, &tenant, true).await?;
    Ok(Json(service::save_plan(&state, &caller, &tenant, &req, false).await?).into_response())
}

/// `DELETE /v1/admin/tenants/{tenant}/protection-plans/{name}`.
pub(crate) async fn delete_plan(
    State(state): State<AppState>,
    Path((tenant, name)): Path<(String, String)>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
) -> ApiResult {
    let caller = caller(&state, &headers, &rid).await?;
    let tenant = tenant_for(&state, &caller, &tenant, true).await?;
    service::delete_plan(&state, &caller, &tenant, &name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `PUT /v1/admin/tenants/{tenant}/devices/{device}/protection-plan`.
pub(crate) async fn assign_plan(
    State(state): State<AppState>,
    Path((tenant, device)): Path<(String, String)>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
    Json(req): Json<AssignPlan>,
) -> ApiResult {
    let caller = caller(&state, &headers, &rid).await?;
    let tenant = tenant_for(&state, &caller, &tenant, true).await?;
    service::assign_plan(&state, &caller, &tenant, &device, req.plan.as_deref()).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /v1/admin/tenants/{tenant}/agents`.
pub(crate) async fn list_agents(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
) -> ApiResult {
    let caller = caller(&state, &headers, &rid).await?;
    let tenant = tenant_for(&state, &caller, &tenant, false).await?;
    Ok(Json(service::agents(&state, &caller, &tenant).await?).into_response())
}

/// `POST /v1/admin/tenants/{tenant}/agents/{device}/jobs`: "back up now" or "restore to this
/// machine".
pub(crate) async fn create_job(
    State(state): State<AppState>,
    Path((tenant, device)): Path<(String, String)>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
    Json(spec): Json<JobSpec>,
) -> ApiResult {
    let caller = caller(&state, &headers, &rid).await?;
    let tenant = tenant_for(&state, &caller, &tenant, true).await?;
    let id = service::queue_job(&state, &caller, &tenant, &device, &spec).await?;
    Ok((StatusCode::ACCEPTED, Json(serde_json::json!({ "job": id }))).into_response())
}
