//! The console's agents page (`/tenants/{tenant}/agents`): every managed agent of a tenant with
//! its machine, online state, plan, last and next run and a running job's progress; "Back up
//! now" and "Restore to this machine"; enrolment codes; the tenant's protection plans.
//! Every action goes through [`crate::service::agents`], as the API's do.

use arca_api::agent::{JobSpec, NamedPlan, PlanRequest, ProtectionPlan};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use minijinja::context;
use serde::{Deserialize, Serialize};

use super::pages::{public_base, unconfirmed, visible_tenant, ConfirmForm};
use super::{check_csrf, date, not_found, render, service_error, session, Session};
use crate::access::can_manage_tenant;
use crate::db::accounts::Tenant;
use crate::service::agents as service;
use crate::state::AppState;
use crate::units::human_bytes as human;

type Page = Result<Response, Response>;

#[derive(Serialize)]
struct AgentRow {
    device: String,
    host: String,
    os: String,
    version: String,
    online: bool,
    seen: String,
    plan: String,
    plan_is_own: bool,
    last_backup: String,
    next_run: String,
    running: bool,
    progress: String,
    last_run: String,
    last_ok: bool,
    last_message: String,
    pending: i64,
    plan_current: bool,
}

#[derive(Serialize)]
struct PlanRow {
    name: String,
    default: bool,
    revision: i64,
    schedule: String,
    paths: String,
    excludes: String,
    start_window: u32,
    rpo_hours: u32,
    retention_days: i64,
    upload_limit_kib: u64,
    limit_windows: String,
    pre_command: String,
    post_command: String,
    stdin_command: String,
    stdin_filename: String,
}

fn plan_row(p: &NamedPlan) -> PlanRow {
    let q = &p.plan;
    PlanRow {
        name: p.name.clone(),
        default: p.tenant_default,
        revision: p.revision,
        schedule: q.schedule.clone(),
        paths: q.paths.join("\n"),
        excludes: q.excludes.join("\n"),
        start_window: q.start_window_minutes,
        rpo_hours: q.rpo_hours,
        retention_days: q.retention_days,
        upload_limit_kib: q.upload_limit_kib,
        limit_windows: q.limit_windows.join(" "),
        pre_command: q.pre_command.clone(),
        post_command: q.post_command.clone(),
        stdin_command: q.stdin_command.clone(),
        stdin_filename: q.stdin_filename.clone(),
    }
}

/// Query of the agents page: a just-created enrolment code is passed in the page itself, never
/// in a URL; `edit` opens a plan in the form.
#[derive(Deserialize, Default)]
pub(super) struct AgentsQuery {
    #[serde(default)]
    edit: String,
}

/// `GET /tenants/{tenant}/agents`.
pub(super) async fn agents(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Query(q): Query<AgentsQuery>,
) -> Page {
    let s = session(&state, &headers).await?;
    let t = visible_tenant(&state, &s, &name).await?;
    agents_page(&state, &headers, &s, &t, None, &q.edit).await
}

async fn agents_page(
    state: &AppState,
    headers: &HeaderMap,
    s: &Session,
    t: &Tenant,
    new_code: Option<&arca_api::agent::EnrolmentCode>,
    edit: &str,
) -> Page {
    let caller = s.caller();
    let err = |e| service_error(s, e);
    let plans = service::plans(state, &caller, t).await.map_err(err)?;
    let manage = can_manage_tenant(&s.principal, t);
    let agents: Vec<AgentRow> = service::agents(state, &caller, t)
        .await
        .map_err(err)?
        .into_iter()
        .map(|a| {
            let revision = plans.iter().find(|p| Some(&p.name) == a.plan.as_ref()).map_or(0, |p| p.revision);
            let st = &a.state;
            let running = st.activity == "running";
            AgentRow {
                progress: if running {
                    let total = if st.total_bytes > 0 {
                        format!(" of {}", human(st.total_bytes as i64))
                    } else {
                        String::new()
                    };
                    format!(
                        "{} running since {}: {} files, {}{total}, {}/s",
                        st.kind,
                        date(st.started_at),
                        st.files,
                        human(st.bytes as i64),
                        human(st.rate as i64)
                    )
                } else {
                    String::new()
                },
                running,
                host: a.info.hostname,
                os: a.info.os,
                version: a.info.version,
                online: a.online,
                seen: date(a.seen_at),
                plan_current: revision == 0 || st.plan_revision == revision,
                plan: a.plan.unwrap_or_default(),
                plan_is_own: a.plan_is_own,
                last_backup: date(a.last_backup_at),
                next_run: if st.next_run_at > 0 { date(st.next_run_at) } else { "-".into() },
                last_run: if st.last_finished_at > 0 { date(st.last_finished_at) } else { "never".into() },
                last_ok: st.last_ok,
                last_message: st.last_message.clone(),
                pending: a.pending_jobs,
                device: a.device,
            }
        })
        .collect();
    let codes = if manage { service::enrolment_codes(state, &caller, t).await.map_err(err)? } else { Vec::new() };
    let now = crate::db::now();
    let code_rows: Vec<_> = codes
        .iter()
        .take(20)
        .map(|c| {
            let status = match (c.used_at, c.expires_at) {
                (u, _) if u > 0 => format!("used {} by {}", date(u), c.device.clone().unwrap_or_default()),
                (_, e) if e <= now => "expired".to_string(),
                (_, e) => format!("valid until {}", date(e)),
            };
            context! { created => date(c.created_at), by => &c.created_by, repo => c.repo.clone().unwrap_or_else(|| "a new one per machine".into()), status }
        })
        .collect();
    let repos: Vec<String> = state
        .db()
        .repositories(Some(t.id))
        .await
        .map_err(|e| super::pages::db_error(Some(s), e))?
        .into_iter()
        .filter(|r| r.format == crate::db::accounts::RepoFormat::Arca)
        .map(|r| r.name)
        .collect();
    let editing = plans.iter().find(|p| p.name == edit).map(plan_row).unwrap_or_else(|| {
        plan_row(&NamedPlan {
            id: 0,
            tenant: t.name.clone(),
            name: String::new(),
            revision: 0,
            tenant_default: plans.is_empty(),
            plan: ProtectionPlan::default(),
            updated_at: 0,
        })
    });
    let any_running = agents.iter().any(|a| a.running || a.pending > 0);
    Ok(render(
        StatusCode::OK,
        "agents.html",
        s.ctx(context! {
            tenant => t, agents, plans => plans.iter().map(plan_row).collect::<Vec<_>>(), manage, codes => code_rows,
            repos, editing, is_edit => !edit.is_empty() && plans.iter().any(|p| p.name == edit),
            new_code => new_code.map(|c| &c.code), new_code_expires => new_code.map(|c| date(c.expires_at)),
            server_url => public_base(state, headers), refresh => any_running,
        }),
    ))
}

#[derive(Deserialize)]
pub(super) struct CodeForm {
    csrf: String,
    #[serde(default)]
    repo: String,
    valid_hours: String,
}

/// `POST /tenants/{tenant}/agents/codes`: a one-time enrolment code, shown once on the page.
pub(super) async fn create_code(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Form(f): Form<CodeForm>,
) -> Page {
    let s = session(&state, &headers).await?;
    check_csrf(&s, &f.csrf)?;
    let t = visible_tenant(&state, &s, &name).await?;
    let hours: i64 = f.valid_hours.trim().parse().map_err(|_| {
        service_error(&s, crate::errors::ApiError::bad_request("Valid for: give a number of hours (1 to 720)."))
    })?;
    let repo = Some(f.repo.as_str()).filter(|r| !r.is_empty());
    let code =
        service::create_enrolment_code(&state, &s.caller(), &t, repo, hours).await.map_err(|e| service_error(&s, e))?;
    agents_page(&state, &headers, &s, &t, Some(&code), "").await
}

#[derive(Deserialize)]
pub(super) struct PlanForm {
    csrf: String,
    name: String,
    #[serde(default)]
    create: String,
    #[serde(default)]
    paths: String,
    #[serde(default)]
    excludes: String,
    schedule: String,
    start_window: String,
    rpo_hours: String,
    retention_days: String,
    upload_limit_kib: String,
    #[serde(default)]
    limit_windows: String,
    #[serde(default)]
    pre_command: String,
    #[serde(default)]
    post_command: String,
    #[serde(default)]
    stdin_command: String,
    #[serde(default)]
    stdin_filename: String,
    #[serde(default)]
    default: String,
}

fn number<T: std::str::FromStr>(s: &Session, what: &str, v: &str) -> Result<T, Response> {
    v.trim().parse().map_err(|_| {
        service_error(s, crate::errors::ApiError::bad_request(format!("{what}: give a whole number (0 or more).")))
    })
}

fn lines(text: &str) -> Vec<String> {
    text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect()
}

/// `POST /tenants/{tenant}/agents/plans`: creates or changes a protection plan.
pub(super) async fn save_plan(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Form(f): Form<PlanForm>,
) -> Page {
    let s = session(&state, &headers).await?;
    check_csrf(&s, &f.csrf)?;
    let t = visible_tenant(&state, &s, &name).await?;
    let plan = ProtectionPlan {
        paths: lines(&f.paths),
        excludes: lines(&f.excludes),
        schedule: f.schedule.trim().to_string(),
        start_window_minutes: number(&s, "Start window", &f.start_window)?,
        rpo_hours: number(&s, "RPO", &f.rpo_hours)?,
        retention_days: number(&s, "Retention", &f.retention_days)?,
        upload_limit_kib: number(&s, "Upload limit", &f.upload_limit_kib)?,
        limit_windows: f.limit_windows.split_whitespace().map(str::to_string).collect(),
        pre_command: f.pre_command.trim().to_string(),
        post_command: f.post_command.trim().to_string(),
        stdin_command: f.stdin_command.trim().to_string(),
        stdin_filename: if f.stdin_filename.trim().is_empty() {
            "stdin".into()
        } else {
            f.stdin_filename.trim().to_string()
        },
    };
    let req = PlanRequest { name: f.name.trim().to_string(), plan, tenant_default: f.default == "yes" };
    service::save_plan(&state, &s.caller(), &t, &req, f.create == "yes").await.map_err(|e| service_error(&s, e))?;
    Ok(Redirect::to(&format!("/tenants/{}/agents", t.name)).into_response())
}

/// `POST /tenants/{tenant}/agents/plans/{plan}/delete`.
pub(super) async fn delete_plan(
    State(state): State<AppState>,
    Path((name, plan)): Path<(String, String)>,
    headers: HeaderMap,
    Form(f): Form<ConfirmForm>,
) -> Page {
    let s = session(&state, &headers).await?;
    check_csrf(&s, &f.csrf)?;
    if f.confirm != "yes" {
        return Err(unconfirmed(&s, &format!("delete plan {plan}")));
    }
    let t = visible_tenant(&state, &s, &name).await?;
    service::delete_plan(&state, &s.caller(), &t, &plan).await.map_err(|e| service_error(&s, e))?;
    Ok(Redirect::to(&format!("/tenants/{}/agents", t.name)).into_response())
}

#[derive(Deserialize)]
pub(super) struct AssignForm {
    csrf: String,
    #[serde(default)]
    plan: String,
}

/// `POST /tenants/{tenant}/agents/{device}/plan`: the agent's own plan, or the default ("").
pub(super) async fn assign_plan(
    State(state): State<AppState>,
    Path((name, device)): Path<(String, String)>,
    headers: HeaderMap,
    Form(f): Form<AssignForm>,
) -> Page {
    let s = session(&state, &headers).await?;
    check_csrf(&s, &f.csrf)?;
    let t = visible_tenant(&state, &s, &name).await?;
    let plan = Some(f.plan.as_str()).filter(|p| !p.is_empty());
    service::assign_plan(&state, &s.caller(), &t, &device, plan).await.map_err(|e| service_error(&s, e))?;
    Ok(Redirect::to(&format!("/tenants/{}/agents", t.name)).into_response())
}

#[derive(Deserialize)]
pub(super) struct JobForm {
    csrf: String,
    #[serde(default)]
    snapshot: String,
    #[serde(default)]
    path: String,
    #[serde(default)]
    place: String,
    #[serde(default)]
    target: String,
}

/// `POST /tenants/{tenant}/agents/{device}/backup` and `…/restore`.
pub(super) async fn job(
    State(state): State<AppState>,
    Path((name, device, kind)): Path<(String, String, String)>,
    headers: HeaderMap,
    Form(f): Form<JobForm>,
) -> Page {
    let s = session(&state, &headers).await?;
    check_csrf(&s, &f.csrf)?;
    let t = visible_tenant(&state, &s, &name).await?;
    let spec = match kind.as_str() {
        "backup" => JobSpec::Backup,
        "restore" => JobSpec::Restore {
            snapshot: if f.snapshot.trim().is_empty() { "latest".into() } else { f.snapshot.trim().to_string() },
            path: f.path.trim().to_string(),
            target: (f.place == "folder").then(|| f.target.trim().to_string()),
        },
        _ => return Err(not_found(&s, "such action")),
    };
    service::queue_job(&state, &s.caller(), &t, &device, &spec).await.map_err(|e| service_error(&s, e))?;
    Ok(Redirect::to(&format!("/tenants/{}/agents", t.name)).into_response())
}
