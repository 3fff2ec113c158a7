//! Managed agents: enrolment codes, protection plans, console jobs, and the agent's own poll and
//! reports. The JSON API, the console pages and `arca admin` call these; agents reach
//! [`enroll`], [`agent_config`] and [`agent_report`] through [`crate::agent_api`].

use std::time::Duration;

use arca_api::agent::{
    AgentConfig, AgentInfo, AgentReport, AgentView, EnrollAnswer, EnrollRequest, EnrolmentCode, JobSpec, NamedPlan,
    PlanRequest, MAX_POLL_WAIT_SECONDS,
};
use axum::http::StatusCode;

use crate::access::{can_manage_tenant, can_view_tenant};
use crate::db::accounts::{Principal, Role, Tenant};
use crate::db::audit::NewAudit;
use crate::errors::ApiError;
use crate::state::AppState;

use super::{forbidden, Caller};

/// How long an agent waits between polls that were answered at once (it holds the next one).
pub const POLL_SECONDS: u64 = 25;

/// Creates a one-time enrolment code for `tenant` (its admins, provider admins).
pub async fn create_enrolment_code(
    state: &AppState,
    caller: &Caller,
    tenant: &Tenant,
    repo: Option<&str>,
    valid_hours: i64,
) -> Result<EnrolmentCode, ApiError> {
    let result = async {
        if !can_manage_tenant(&caller.principal, tenant) {
            return Err(forbidden("create enrolment codes"));
        }
        let repo = match repo.filter(|r| !r.is_empty()) {
            Some(name) => {
                let r = super::repository_for(state, caller, name).await?;
                if r.tenant_id != tenant.id || r.format != arca_api::RepoFormat::Arca {
                    return Err(ApiError::not_found(format!(
                        "tenant {} has no arca repository named {name}",
                        tenant.name
                    )));
                }
                Some(r)
            }
            None => None,
        };
        state
            .db()
            .create_enrolment_code(tenant, repo.as_ref(), valid_hours, &caller.principal.actor)
            .await
            .map_err(ApiError::from_db)
    }
    .await;
    let detail = format!("valid {valid_hours} h, repository {}", repo.unwrap_or("(new per machine)"));
    caller.audited(state, Some(tenant.id), "agent.code.create", &tenant.name, &detail, result).await
}

/// A tenant's enrolment codes (without the codes themselves).
pub async fn enrolment_codes(
    state: &AppState,
    caller: &Caller,
    tenant: &Tenant,
) -> Result<Vec<EnrolmentCode>, ApiError> {
    if !can_manage_tenant(&caller.principal, tenant) {
        return Err(forbidden("see enrolment codes"));
    }
    state.db().enrolment_codes(tenant.id).await.map_err(ApiError::from_db)
}

/// Enrols a machine: no token, the code is the credential. Audited in the tenant's log as the
/// new device (or, refused, without a tenant). A client address with too many failed attempts is
/// throttled like failed sign-ins, so nobody without a code can make the server write an audit
/// entry per request for long.
pub async fn enroll(
    state: &AppState,
    req: &EnrollRequest,
    request_id: &str,
    client: Option<std::net::IpAddr>,
) -> Result<EnrollAnswer, ApiError> {
    if let Some((wait, first)) = state.signin_throttle().enrolment_refused(client) {
        if first {
            let entry = NewAudit {
                actor: "enrolment",
                tenant_id: None,
                action: "agent.enroll",
                target: &req.hostname.chars().take(255).collect::<String>(),
                outcome: "denied",
                detail: "too many failed enrolments from this address: throttled",
                request_id,
            };
            state.db().record(entry).await;
        }
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("too many failed enrolments from this address: retry in {wait} s"),
        )
        .with_retry_after(wait));
    }
    for (what, v, max) in [
        ("code", &req.code, 100),
        ("hostname", &req.hostname, 255),
        ("os", &req.os, 200),
        ("version", &req.version, 64),
    ] {
        if v.len() > max || v.chars().any(char::is_control) {
            return Err(ApiError::bad_request(format!("{what}: at most {max} printable characters")));
        }
    }
    let info = AgentInfo { hostname: req.hostname.clone(), os: req.os.clone(), version: req.version.clone() };
    let result = state.db().enroll(&req.code, &info).await;
    let (actor, tenant_id, outcome, detail) = match &result {
        Ok(e) => (
            format!("device:{}@{}", e.device, e.tenant.name),
            Some(e.tenant.id),
            "ok",
            format!("host {}, {}, version {}, repository {}", info.hostname, info.os, info.version, e.repo.name),
        ),
        Err(err) => ("enrolment".to_string(), None, "denied", format!("host {}: {err}", info.hostname)),
    };
    let entry = NewAudit {
        actor: &actor,
        tenant_id,
        action: "agent.enroll",
        target: &info.hostname,
        outcome,
        detail: &detail,
        request_id,
    };
    state.db().record(entry).await;
    if result.is_err() {
        state.signin_throttle().enrolment_failed(client);
    }
    let e = result.map_err(|err| match err {
        crate::db::DbError::NotFound(m) => ApiError::new(StatusCode::FORBIDDEN, m),
        crate::db::DbError::Invalid(m) => ApiError::new(StatusCode::FORBIDDEN, m),
        other => ApiError::from_db(other),
    })?;
    state.agents_changed();
    Ok(EnrollAnswer {
        device: e.device,
        tenant: e.tenant.name,
        repo: e.repo.name,
        repo_is_new: e.repo_is_new,
        token: e.token,
    })
}

/// Creates (`create`) or changes a protection plan of `tenant` (its admins, provider admins).
/// A plan's server-side retention is applied to the repositories of the agents it reaches.
pub async fn save_plan(
    state: &AppState,
    caller: &Caller,
    tenant: &Tenant,
    req: &PlanRequest,
    create: bool,
) -> Result<NamedPlan, ApiError> {
    let result = async {
        if !can_manage_tenant(&caller.principal, tenant) {
            return Err(forbidden("change protection plans"));
        }
        req.plan.validate().map_err(ApiError::bad_request)?;
        let saved = state
            .db()
            .save_protection_plan(tenant, &req.name, &req.plan, req.tenant_default, create)
            .await
            .map_err(ApiError::from_db)?;
        apply_retention(state, tenant).await?;
        Ok(saved)
    }
    .await;
    let detail = serde_json::to_string(&req.plan).unwrap_or_default();
    let action = if create { "plan.protection.create" } else { "plan.protection.update" };
    let r = caller.audited(state, Some(tenant.id), action, &req.name, &detail, result).await;
    state.agents_changed();
    r
}

/// Deletes a protection plan; its agents fall back to the tenant's default.
pub async fn delete_plan(state: &AppState, caller: &Caller, tenant: &Tenant, name: &str) -> Result<(), ApiError> {
    let result = if !can_manage_tenant(&caller.principal, tenant) {
        Err(forbidden("delete protection plans"))
    } else {
        state.db().delete_protection_plan(tenant, name).await.map_err(ApiError::from_db)
    };
    let r = caller.audited(state, Some(tenant.id), "plan.protection.delete", name, "", result).await;
    state.agents_changed();
    r
}

/// Assigns a plan to one device (`None`: the tenant's default applies again).
pub async fn assign_plan(
    state: &AppState,
    caller: &Caller,
    tenant: &Tenant,
    device: &str,
    plan: Option<&str>,
) -> Result<(), ApiError> {
    let result = async {
        if !can_manage_tenant(&caller.principal, tenant) {
            return Err(forbidden("assign protection plans"));
        }
        state.db().assign_protection_plan(tenant, device, plan).await.map_err(ApiError::from_db)?;
        apply_retention(state, tenant).await
    }
    .await;
    let detail = format!("plan {}", plan.unwrap_or("(tenant default)"));
    let r = caller
        .audited(
            state,
            Some(tenant.id),
            "plan.protection.assign",
            &format!("{device}@{}", tenant.name),
            &detail,
            result,
        )
        .await;
    state.agents_changed();
    r
}

/// Sets each agent repository's server-side retention to its plan's (raised to the repository's
/// retention lock, which keeps snapshots that long anyway). Plans without retention leave the
/// repository's own setting.
async fn apply_retention(state: &AppState, tenant: &Tenant) -> Result<(), ApiError> {
    let db = state.db();
    for (device_id, agent) in db.agents(Some(tenant.id)).await.map_err(ApiError::from_db)? {
        let Some(plan) = db.effective_plan(device_id).await.map_err(ApiError::from_db)? else { continue };
        if plan.plan.retention_days == 0 {
            continue;
        }
        let repo = db.repository(&agent.repo).await.map_err(ApiError::from_db)?;
        let days = plan.plan.retention_days.max(repo.lock_days);
        if db.retention_days(repo.id).await.map_err(ApiError::from_db)? != days {
            db.set_retention(&repo.name, days).await.map_err(ApiError::from_db)?;
        }
    }
    Ok(())
}

/// The agents of `tenant` (anyone who may view the tenant).
pub async fn agents(state: &AppState, caller: &Caller, tenant: &Tenant) -> Result<Vec<AgentView>, ApiError> {
    if !can_view_tenant(&caller.principal, tenant) {
        return Err(forbidden("see agents"));
    }
    Ok(state.db().agents(Some(tenant.id)).await.map_err(ApiError::from_db)?.into_iter().map(|(_, a)| a).collect())
}

/// A tenant's protection plans.
pub async fn plans(state: &AppState, caller: &Caller, tenant: &Tenant) -> Result<Vec<NamedPlan>, ApiError> {
    if !can_view_tenant(&caller.principal, tenant) {
        return Err(forbidden("see protection plans"));
    }
    state.db().protection_plans(tenant.id).await.map_err(ApiError::from_db)
}

/// Queues a job for one of `tenant`'s agents ("Back up now", "Restore to this machine"): its
/// admins and provider admins. A restore writes files on the customer's machine, so operators
/// and tenant users may not.
pub async fn queue_job(
    state: &AppState,
    caller: &Caller,
    tenant: &Tenant,
    device: &str,
    spec: &JobSpec,
) -> Result<i64, ApiError> {
    let result = async {
        if !can_manage_tenant(&caller.principal, tenant) {
            return Err(forbidden("start work on an agent"));
        }
        spec.validate().map_err(ApiError::bad_request)?;
        let agents = state.db().agents(Some(tenant.id)).await.map_err(ApiError::from_db)?;
        let Some((device_id, _)) = agents.iter().find(|(_, a)| a.device == device) else {
            return Err(ApiError::not_found(format!("tenant {} has no agent named {device}", tenant.name)));
        };
        state.db().queue_job(*device_id, spec, &caller.principal.actor).await.map_err(ApiError::from_db)
    }
    .await;
    let detail = serde_json::to_string(spec).unwrap_or_default();
    let action = format!("agent.{}.request", spec.kind());
    let r =
        caller.audited(state, Some(tenant.id), &action, &format!("{device}@{}", tenant.name), &detail, result).await;
    state.agents_changed();
    r
}

fn device_of(p: &Principal) -> Result<i64, ApiError> {
    match (p.role, p.device_id) {
        (Role::Device, Some(d)) => Ok(d),
        _ => Err(ApiError::new(StatusCode::FORBIDDEN, "only an agent's device token may do this")),
    }
}

async fn current_config(state: &AppState, device_id: i64, device: &str) -> Result<AgentConfig, ApiError> {
    let db = state.db();
    let plan = db.effective_plan(device_id).await.map_err(ApiError::from_db)?;
    let jobs = db.pending_jobs(device_id).await.map_err(ApiError::from_db)?;
    let mut config =
        AgentConfig { etag: String::new(), device: device.to_string(), plan, jobs, poll_seconds: POLL_SECONDS };
    let body = serde_json::to_vec(&config).map_err(|e| ApiError::internal(e.to_string()))?;
    config.etag = blake3::hash(&body).to_hex()[..32].to_string();
    Ok(config)
}

/// The agent's configuration. With `known` equal to the current etag the answer is held up to
/// `wait` seconds (at most [`MAX_POLL_WAIT_SECONDS`]) until something changes; `None` then
/// means "unchanged". Changes made through this process wake held polls at once; a change made
/// by another server process (PostgreSQL deployments) is seen at the agent's next poll, within
/// one wait.
pub async fn agent_config(
    state: &AppState,
    principal: &Principal,
    known: Option<&str>,
    wait: u64,
) -> Result<Option<AgentConfig>, ApiError> {
    let device_id = device_of(principal)?;
    if wait > MAX_POLL_WAIT_SECONDS {
        return Err(ApiError::bad_request(format!("wait is 0 to {MAX_POLL_WAIT_SECONDS} seconds")));
    }
    let device = principal.actor.trim_start_matches("device:").split('@').next().unwrap_or_default().to_string();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
    loop {
        // Registered before reading, so a change between the read and the wait still wakes us.
        let changed = state.agents_notify().notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        let config = current_config(state, device_id, &device).await?;
        if known != Some(config.etag.as_str()) {
            return Ok(Some(config));
        }
        tokio::select! {
            _ = &mut changed => continue,
            _ = tokio::time::sleep_until(deadline) => {
                state.db().agent_seen(device_id).await.map_err(ApiError::from_db)?;
                return Ok(None);
            }
        }
    }
}

/// Takes an agent's report: its state for the console, its jobs' progress, the tenant's audit
/// log (starts and ends of runs, not progress), and a failed backup's alert.
pub async fn agent_report(
    state: &AppState,
    principal: &Principal,
    request_id: &str,
    report: &AgentReport,
) -> Result<(), ApiError> {
    let device_id = device_of(principal)?;
    report.validate().map_err(ApiError::bad_request)?;
    let db = state.db();
    let mut s = db.agent_state(device_id).await.map_err(ApiError::from_db)?;
    let now = crate::db::now();
    match report.event.as_str() {
        "started" => {
            s.activity = "running".into();
            s.kind = report.kind.clone();
            (s.files, s.bytes, s.total_bytes, s.rate, s.started_at) = (0, 0, report.total_bytes, 0, now);
        }
        "progress" => {
            s.activity = "running".into();
            s.kind = report.kind.clone();
            (s.files, s.bytes, s.total_bytes, s.rate) = (report.files, report.bytes, report.total_bytes, report.rate);
        }
        "finished" => {
            s.activity = "idle".into();
            (s.files, s.bytes) = (report.files, report.bytes);
            (s.last_ok, s.last_message, s.last_finished_at) = (report.ok, report.message.clone(), now);
        }
        _ => s.activity = if s.activity.is_empty() { "idle".into() } else { s.activity.clone() },
    }
    if report.next_run_at > 0 {
        s.next_run_at = report.next_run_at;
    }
    if report.plan_revision > 0 {
        s.plan_revision = report.plan_revision;
    }
    db.set_agent_state(device_id, &s, &report.version).await.map_err(ApiError::from_db)?;
    if let Some(job) = report.job {
        match report.event.as_str() {
            "started" => db.job_event(device_id, job, None).await.map_err(ApiError::from_db)?,
            "finished" => {
                db.job_event(device_id, job, Some((report.ok, &report.message))).await.map_err(ApiError::from_db)?
            }
            _ => {}
        }
        // The agent's held poll now has a stale job list: answer it.
        state.agents_changed();
    }
    if report.event == "finished" && report.kind == "backup" && !report.ok {
        db.device_failed(device_id, &report.message).await.map_err(ApiError::from_db)?;
    }
    if matches!(report.event.as_str(), "started" | "finished") {
        let caller = Caller::api(principal.clone(), request_id);
        let outcome = match (report.event.as_str(), report.ok) {
            ("started", _) => "started",
            (_, true) => "ok",
            _ => "failed",
        };
        let job = report.job.map(|j| format!("job {j}: ")).unwrap_or_default();
        let detail: String = format!("{job}{}", report.message).chars().take(500).collect();
        let action = format!("agent.{}", report.kind);
        caller.audit(state, principal.tenant_id, &action, &principal.actor, outcome, &detail).await;
    }
    Ok(())
}
