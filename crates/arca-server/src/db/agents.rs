//! Managed agents: enrolment codes, protection plans and their assignment, jobs the console
//! queues for one agent, and the state agents report.
//!
//! An agent is a device (its token, repository and health are the device's) with a machine
//! description. Its plan is its own assignment or else its tenant's default; the plan's RPO is
//! copied into the device's backup interval ([`Db::sync_plan_rpo`]) so the existing overdue
//! alerts watch agents without a second rule.

use sqlx::any::AnyRow;

use super::accounts::{hash_token, valid_name, Repository, Tenant};
use super::{col, dyn_query, is_unique_violation, now, Db, DbError, Result};
use arca_api::agent::{
    AgentInfo, AgentState, AgentView, EnrolmentCode, Job, JobSpec, NamedPlan, ProtectionPlan, ONLINE_SECONDS,
};

/// Most unfinished jobs one agent may have queued: the console cannot pile up work.
pub const MAX_PENDING_JOBS: i64 = 20;

/// What an enrolment produced.
#[derive(Debug)]
pub struct Enrolled {
    /// The device's id.
    pub device_id: i64,
    /// Its name.
    pub device: String,
    /// Its tenant.
    pub tenant: Tenant,
    /// Its repository.
    pub repo: Repository,
    /// Whether the repository was made for it.
    pub repo_is_new: bool,
    /// The device token.
    pub token: String,
}

/// A device name made from a host name: lower case, `[a-z0-9-]`, at most 48 characters.
pub fn name_from_host(host: &str) -> String {
    let mut s: String = host
        .split('.')
        .next()
        .unwrap_or_default()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' })
        .take(48)
        .collect();
    while s.starts_with('-') {
        s.remove(0);
    }
    if s.is_empty() {
        "agent".into()
    } else {
        s
    }
}

const PLAN_SELECT: &str = "SELECT p.id, p.name, p.spec, p.revision, p.updated_at, t.name AS tenant, \
     CASE WHEN t.protection_plan_id = p.id THEN 1 ELSE 0 END AS is_default \
     FROM protection_plans p JOIN tenants t ON t.id = p.tenant_id";

fn plan_from(row: &AnyRow) -> Result<NamedPlan> {
    let spec: String = col(row, "spec")?;
    Ok(NamedPlan {
        id: col(row, "id")?,
        tenant: col(row, "tenant")?,
        name: col(row, "name")?,
        revision: col(row, "revision")?,
        tenant_default: col::<i64>(row, "is_default")? != 0,
        plan: serde_json::from_str(&spec).map_err(|e| DbError::Invalid(format!("stored plan: {e}")))?,
        updated_at: col(row, "updated_at")?,
    })
}

fn spec_json(plan: &ProtectionPlan) -> Result<String> {
    plan.validate().map_err(DbError::Invalid)?;
    serde_json::to_string(plan).map_err(|e| DbError::Invalid(e.to_string()))
}

impl Db {
    // ---- enrolment codes ----

    /// Stores a new enrolment code for `tenant` (optionally fixed to `repo`) valid for
    /// `valid_hours`; returns it with the code (shown once, stored hashed).
    pub async fn create_enrolment_code(
        &self,
        tenant: &Tenant,
        repo: Option<&Repository>,
        valid_hours: i64,
        created_by: &str,
    ) -> Result<EnrolmentCode> {
        if !(1..=arca_api::agent::MAX_CODE_HOURS).contains(&valid_hours) {
            return Err(DbError::Invalid(format!(
                "a code is valid for 1 to {} hours",
                arca_api::agent::MAX_CODE_HOURS
            )));
        }
        if repo.is_some_and(|r| r.tenant_id != tenant.id) {
            return Err(DbError::NotFound(format!("tenant {} has no such repository", tenant.name)));
        }
        // 20 random bytes in groups a person can type: the code is the only credential of the
        // enrolment, so it must be unguessable (160 bits) rather than short.
        let code = {
            use rand::RngCore;
            let mut b = [0u8; 20];
            rand::rngs::OsRng.fill_bytes(&mut b);
            let hex = hex::encode(b);
            hex.as_bytes().chunks(8).map(|c| std::str::from_utf8(c).unwrap_or_default()).collect::<Vec<_>>().join("-")
        };
        let at = now();
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO enrolment_codes (code_hash, tenant_id, repo_id, created_by, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(hash_token(&normalise_code(&code)))
        .bind(tenant.id)
        .bind(repo.map(|r| r.id))
        .bind(created_by)
        .bind(at)
        .bind(at + valid_hours * 3600)
        .fetch_one(self.pool())
        .await?;
        let mut c = self
            .enrolment_codes(tenant.id)
            .await?
            .into_iter()
            .find(|c| c.id == id)
            .ok_or_else(|| DbError::NotFound("the new enrolment code vanished".into()))?;
        c.code = code;
        Ok(c)
    }

    /// A tenant's enrolment codes, newest first (at most 200).
    pub async fn enrolment_codes(&self, tenant_id: i64) -> Result<Vec<EnrolmentCode>> {
        let rows = sqlx::query(
            "SELECT c.id, t.name AS tenant, r.name AS repo, c.created_by, c.created_at, c.expires_at, c.used_at, \
             d.name AS device FROM enrolment_codes c JOIN tenants t ON t.id = c.tenant_id \
             LEFT JOIN repositories r ON r.id = c.repo_id LEFT JOIN devices d ON d.id = c.device_id \
             WHERE c.tenant_id = $1 ORDER BY c.id DESC LIMIT 200",
        )
        .bind(tenant_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(EnrolmentCode {
                    id: col(r, "id")?,
                    code: String::new(),
                    tenant: col(r, "tenant")?,
                    repo: col(r, "repo")?,
                    created_by: col(r, "created_by")?,
                    created_at: col(r, "created_at")?,
                    expires_at: col(r, "expires_at")?,
                    used_at: col(r, "used_at")?,
                    device: col(r, "device")?,
                })
            })
            .collect()
    }

    /// Enrols a machine with `code`: claims the code (once, atomically), makes the repository
    /// (unless the code names one) and the device with its token, and records the machine.
    /// A claim whose later steps fail is released, so the code can be tried again.
    pub async fn enroll(&self, code: &str, info: &AgentInfo) -> Result<Enrolled> {
        let row = sqlx::query(
            "SELECT c.id, c.tenant_id, c.repo_id, c.expires_at, c.used_at, t.name AS tenant \
             FROM enrolment_codes c JOIN tenants t ON t.id = c.tenant_id WHERE c.code_hash = $1",
        )
        .bind(hash_token(&normalise_code(code)))
        .fetch_optional(self.pool())
        .await?
        .ok_or_else(|| {
            DbError::NotFound("this enrolment code is not known: check it for typos, or ask for a new one".into())
        })?;
        let id: i64 = col(&row, "id")?;
        if col::<i64>(&row, "used_at")? != 0 {
            return Err(DbError::Conflict(
                "this enrolment code was used already (each code enrols one machine): ask for a new one".into(),
            ));
        }
        if col::<i64>(&row, "expires_at")? <= now() {
            return Err(DbError::Invalid("this enrolment code has expired: ask for a new one".into()));
        }
        let claimed = sqlx::query("UPDATE enrolment_codes SET used_at = $1 WHERE id = $2 AND used_at = 0")
            .bind(now())
            .bind(id)
            .execute(self.pool())
            .await?
            .rows_affected();
        if claimed != 1 {
            return Err(DbError::Conflict("this enrolment code was just used by another machine".into()));
        }
        let tenant_name: String = col(&row, "tenant")?;
        let repo_id: Option<i64> = col(&row, "repo_id")?;
        match self.enroll_claimed(&tenant_name, repo_id, info).await {
            Ok(e) => {
                sqlx::query("UPDATE enrolment_codes SET device_id = $1 WHERE id = $2")
                    .bind(e.device_id)
                    .bind(id)
                    .execute(self.pool())
                    .await?;
                Ok(e)
            }
            Err(err) => {
                let _ = sqlx::query("UPDATE enrolment_codes SET used_at = 0 WHERE id = $1")
                    .bind(id)
                    .execute(self.pool())
                    .await;
                Err(err)
            }
        }
    }

    async fn enroll_claimed(&self, tenant_name: &str, repo_id: Option<i64>, info: &AgentInfo) -> Result<Enrolled> {
        let tenant = self.tenant(tenant_name).await?;
        if tenant.suspended {
            return Err(DbError::Invalid("the tenant is suspended: machines cannot enrol until it is resumed".into()));
        }
        let base = name_from_host(&info.hostname);
        let (repo, repo_is_new) = match repo_id {
            Some(id) => {
                let name: String = sqlx::query_scalar("SELECT name FROM repositories WHERE id = $1")
                    .bind(id)
                    .fetch_one(self.pool())
                    .await?;
                (self.repository(&name).await?, false)
            }
            None => (self.fresh_repository(&tenant, &base).await?, true),
        };
        let mut last = None;
        for n in 1..=50 {
            let name = if n == 1 { base.clone() } else { format!("{base}-{n}") };
            match self.create_device(&tenant.name, &name, &repo.name).await {
                Ok((device, token)) => {
                    let agent = serde_json::to_string(info).map_err(|e| DbError::Invalid(e.to_string()))?;
                    sqlx::query("UPDATE devices SET agent = $1 WHERE id = $2")
                        .bind(agent)
                        .bind(device.id)
                        .execute(self.pool())
                        .await?;
                    self.sync_plan_rpo(tenant.id).await?;
                    return Ok(Enrolled {
                        device_id: device.id,
                        device: device.name,
                        tenant,
                        repo,
                        repo_is_new,
                        token,
                    });
                }
                Err(DbError::Conflict(m)) => last = Some(m),
                Err(e) => return Err(e),
            }
        }
        Err(DbError::Conflict(last.unwrap_or_else(|| "no free device name".into())))
    }

    /// A new repository `TENANT-HOST` (or with a number) for an enrolled machine.
    async fn fresh_repository(&self, tenant: &Tenant, host: &str) -> Result<Repository> {
        let stem: String = format!("{}-{host}", tenant.name).chars().take(60).collect();
        for n in 1..=50 {
            let name = if n == 1 { stem.clone() } else { format!("{stem}-{n}") };
            match self.create_repository_as(&tenant.name, &name, None, Default::default()).await {
                Ok(r) => return Ok(r),
                Err(DbError::Conflict(_)) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(DbError::Conflict(format!("no free repository name for {stem}")))
    }

    // ---- protection plans ----

    /// A tenant's plans by name.
    pub async fn protection_plans(&self, tenant_id: i64) -> Result<Vec<NamedPlan>> {
        let rows = dyn_query(format!("{PLAN_SELECT} WHERE p.tenant_id = $1 ORDER BY p.name"))
            .bind(tenant_id)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(plan_from).collect()
    }

    /// One of a tenant's plans.
    pub async fn protection_plan(&self, tenant_id: i64, name: &str) -> Result<NamedPlan> {
        dyn_query(format!("{PLAN_SELECT} WHERE p.tenant_id = $1 AND p.name = $2"))
            .bind(tenant_id)
            .bind(name)
            .fetch_optional(self.pool())
            .await?
            .map(|r| plan_from(&r))
            .transpose()?
            .ok_or_else(|| DbError::NotFound(format!("no protection plan named {name}")))
    }

    /// Creates (`create`) or replaces a plan of `tenant`; `tenant_default` makes it the default.
    pub async fn save_protection_plan(
        &self,
        tenant: &Tenant,
        name: &str,
        plan: &ProtectionPlan,
        tenant_default: bool,
        create: bool,
    ) -> Result<NamedPlan> {
        if !valid_name(name) {
            return Err(DbError::Invalid(format!(
                "plan name {name:?}: 1 to 64 characters of a-z, 0-9 and '-', not starting with '-'"
            )));
        }
        let spec = spec_json(plan)?;
        let at = now();
        let mut tx = self.pool().begin().await?;
        let id: i64 = if create {
            sqlx::query_scalar(
                "INSERT INTO protection_plans (tenant_id, name, spec, rpo_hours, revision, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, 1, $5, $5) RETURNING id",
            )
            .bind(tenant.id)
            .bind(name)
            .bind(&spec)
            .bind(i64::from(plan.rpo_hours))
            .bind(at)
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| {
                if is_unique_violation(&e) {
                    DbError::Conflict(format!("tenant {} already has a plan named {name}", tenant.name))
                } else {
                    e.into()
                }
            })?
        } else {
            sqlx::query_scalar(
                "UPDATE protection_plans SET spec = $1, rpo_hours = $2, revision = revision + 1, updated_at = $3 \
                 WHERE tenant_id = $4 AND name = $5 RETURNING id",
            )
            .bind(&spec)
            .bind(i64::from(plan.rpo_hours))
            .bind(at)
            .bind(tenant.id)
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| DbError::NotFound(format!("no protection plan named {name}")))?
        };
        if tenant_default {
            sqlx::query("UPDATE tenants SET protection_plan_id = $1 WHERE id = $2")
                .bind(id)
                .bind(tenant.id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        self.sync_plan_rpo(tenant.id).await?;
        self.protection_plan(tenant.id, name).await
    }

    /// Deletes a plan; devices that had it fall back to the tenant's default (or none).
    pub async fn delete_protection_plan(&self, tenant: &Tenant, name: &str) -> Result<()> {
        let plan = self.protection_plan(tenant.id, name).await?;
        let mut tx = self.pool().begin().await?;
        sqlx::query("UPDATE devices SET protection_plan_id = NULL WHERE protection_plan_id = $1")
            .bind(plan.id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE tenants SET protection_plan_id = NULL WHERE protection_plan_id = $1")
            .bind(plan.id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM protection_plans WHERE id = $1").bind(plan.id).execute(&mut *tx).await?;
        tx.commit().await?;
        self.sync_plan_rpo(tenant.id).await
    }

    /// Assigns plan `name` to the tenant's active device `device` (`None`: back to the default).
    pub async fn assign_protection_plan(&self, tenant: &Tenant, device: &str, name: Option<&str>) -> Result<()> {
        let plan_id = match name {
            Some(n) => Some(self.protection_plan(tenant.id, n).await?.id),
            None => None,
        };
        let n = sqlx::query(
            "UPDATE devices SET protection_plan_id = $1 WHERE tenant_id = $2 AND name = $3 AND revoked_at = 0",
        )
        .bind(plan_id)
        .bind(tenant.id)
        .bind(device)
        .execute(self.pool())
        .await?
        .rows_affected();
        if n == 0 {
            return Err(DbError::NotFound(format!("tenant {} has no active device named {device}", tenant.name)));
        }
        self.sync_plan_rpo(tenant.id).await
    }

    /// Copies each agent's plan RPO into its backup interval, which the overdue alerts watch.
    pub async fn sync_plan_rpo(&self, tenant_id: i64) -> Result<()> {
        const EFFECTIVE: &str = "COALESCE(devices.protection_plan_id, \
             (SELECT t.protection_plan_id FROM tenants t WHERE t.id = devices.tenant_id))";
        dyn_query(format!(
            "UPDATE devices SET backup_every_hours = \
             (SELECT p.rpo_hours FROM protection_plans p WHERE p.id = {EFFECTIVE}) \
             WHERE tenant_id = $1 AND agent <> '' AND revoked_at = 0 AND {EFFECTIVE} IS NOT NULL"
        ))
        .bind(tenant_id)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The plan in force for device `device_id`: its own, else its tenant's default.
    pub async fn effective_plan(&self, device_id: i64) -> Result<Option<NamedPlan>> {
        dyn_query(format!(
            "{PLAN_SELECT} WHERE p.id = (SELECT COALESCE(d.protection_plan_id, tt.protection_plan_id) \
             FROM devices d JOIN tenants tt ON tt.id = d.tenant_id WHERE d.id = $1)"
        ))
        .bind(device_id)
        .fetch_optional(self.pool())
        .await?
        .map(|r| plan_from(&r))
        .transpose()
    }

    // ---- jobs ----

    /// Queues `spec` for device `device_id`; refused past [`MAX_PENDING_JOBS`] unfinished ones.
    pub async fn queue_job(&self, device_id: i64, spec: &JobSpec, requested_by: &str) -> Result<i64> {
        spec.validate().map_err(DbError::Invalid)?;
        let pending: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM agent_jobs WHERE device_id = $1 AND finished_at = 0")
                .bind(device_id)
                .fetch_one(self.pool())
                .await?;
        if pending >= MAX_PENDING_JOBS {
            return Err(DbError::Busy(format!(
                "this agent already has {pending} jobs waiting: let it work through them first"
            )));
        }
        let json = serde_json::to_string(spec).map_err(|e| DbError::Invalid(e.to_string()))?;
        Ok(sqlx::query_scalar(
            "INSERT INTO agent_jobs (device_id, kind, spec, requested_by, created_at) VALUES ($1, $2, $3, $4, $5) \
             RETURNING id",
        )
        .bind(device_id)
        .bind(spec.kind())
        .bind(json)
        .bind(requested_by)
        .bind(now())
        .fetch_one(self.pool())
        .await?)
    }

    /// A device's unfinished jobs, oldest first.
    pub async fn pending_jobs(&self, device_id: i64) -> Result<Vec<Job>> {
        let rows = sqlx::query(
            "SELECT id, spec, requested_by, created_at FROM agent_jobs WHERE device_id = $1 AND finished_at = 0 \
             ORDER BY id LIMIT 100",
        )
        .bind(device_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let spec: String = col(r, "spec")?;
                Ok(Job {
                    id: col(r, "id")?,
                    spec: serde_json::from_str(&spec).map_err(|e| DbError::Invalid(format!("stored job: {e}")))?,
                    requested_by: col(r, "requested_by")?,
                    created_at: col(r, "created_at")?,
                })
            })
            .collect()
    }

    /// Marks device `device_id`'s job `job` started or (with `outcome`) finished; a job of
    /// another device is "not found".
    pub async fn job_event(&self, device_id: i64, job: i64, outcome: Option<(bool, &str)>) -> Result<()> {
        let n = match outcome {
            None => {
                sqlx::query(
                    "UPDATE agent_jobs SET started_at = $1 WHERE id = $2 AND device_id = $3 AND finished_at = 0",
                )
                .bind(now())
                .bind(job)
                .bind(device_id)
                .execute(self.pool())
                .await?
            }
            Some((ok, message)) => {
                sqlx::query(
                    "UPDATE agent_jobs SET finished_at = $1, outcome = $2, message = $3 \
                     WHERE id = $4 AND device_id = $5 AND finished_at = 0",
                )
                .bind(now())
                .bind(if ok { "ok" } else { "failed" })
                .bind(message)
                .bind(job)
                .bind(device_id)
                .execute(self.pool())
                .await?
            }
        };
        if n.rows_affected() == 0 {
            return Err(DbError::NotFound(format!("no unfinished job {job} for this agent")));
        }
        Ok(())
    }

    // ---- state ----

    /// Stores what the agent reported (and its version, if it says).
    pub async fn set_agent_state(&self, device_id: i64, state: &AgentState, version: &str) -> Result<()> {
        let json = serde_json::to_string(state).map_err(|e| DbError::Invalid(e.to_string()))?;
        sqlx::query("UPDATE devices SET agent_state = $1 WHERE id = $2")
            .bind(json)
            .bind(device_id)
            .execute(self.pool())
            .await?;
        if !version.is_empty() {
            let info = self.agent_info(device_id).await?;
            if info.version != version {
                let info = AgentInfo { version: version.to_string(), ..info };
                let json = serde_json::to_string(&info).map_err(|e| DbError::Invalid(e.to_string()))?;
                sqlx::query("UPDATE devices SET agent = $1 WHERE id = $2")
                    .bind(json)
                    .bind(device_id)
                    .execute(self.pool())
                    .await?;
            }
        }
        Ok(())
    }

    /// The last state an agent reported.
    pub async fn agent_state(&self, device_id: i64) -> Result<AgentState> {
        let s: Option<String> = sqlx::query_scalar("SELECT agent_state FROM devices WHERE id = $1")
            .bind(device_id)
            .fetch_optional(self.pool())
            .await?;
        Ok(s.and_then(|s| serde_json::from_str(&s).ok()).unwrap_or_default())
    }

    async fn agent_info(&self, device_id: i64) -> Result<AgentInfo> {
        let s: Option<String> = sqlx::query_scalar("SELECT agent FROM devices WHERE id = $1")
            .bind(device_id)
            .fetch_optional(self.pool())
            .await?;
        Ok(s.and_then(|s| serde_json::from_str(&s).ok()).unwrap_or_default())
    }

    /// The active agents of a tenant (or all), by name.
    pub async fn agents(&self, tenant_id: Option<i64>) -> Result<Vec<(i64, AgentView)>> {
        let sql = "SELECT d.id, d.name, t.name AS tenant, r.name AS repo, d.agent, d.agent_state, d.last_seen_at, \
             d.last_backup_at, own.name AS own_plan, dflt.name AS default_plan, \
             (SELECT COUNT(*) FROM agent_jobs j WHERE j.device_id = d.id AND j.finished_at = 0) AS pending \
             FROM devices d JOIN tenants t ON t.id = d.tenant_id JOIN repositories r ON r.id = d.repo_id \
             LEFT JOIN protection_plans own ON own.id = d.protection_plan_id \
             LEFT JOIN protection_plans dflt ON dflt.id = t.protection_plan_id \
             WHERE d.agent <> '' AND d.revoked_at = 0";
        let rows = match tenant_id {
            Some(t) => {
                dyn_query(format!("{sql} AND d.tenant_id = $1 ORDER BY d.name")).bind(t).fetch_all(self.pool()).await?
            }
            None => dyn_query(format!("{sql} ORDER BY t.name, d.name")).fetch_all(self.pool()).await?,
        };
        let at = now();
        rows.iter()
            .map(|r| {
                let info: String = col(r, "agent")?;
                let state: String = col(r, "agent_state")?;
                let own: Option<String> = col(r, "own_plan")?;
                let dflt: Option<String> = col(r, "default_plan")?;
                let seen: i64 = col(r, "last_seen_at")?;
                Ok((
                    col(r, "id")?,
                    AgentView {
                        device: col(r, "name")?,
                        tenant: col(r, "tenant")?,
                        repo: col(r, "repo")?,
                        info: serde_json::from_str(&info).unwrap_or_default(),
                        online: seen > 0 && at - seen <= ONLINE_SECONDS,
                        seen_at: seen,
                        plan_is_own: own.is_some(),
                        plan: own.or(dflt),
                        last_backup_at: col(r, "last_backup_at")?,
                        state: serde_json::from_str(&state).unwrap_or_default(),
                        pending_jobs: col(r, "pending")?,
                    },
                ))
            })
            .collect()
    }

    /// Records that device `device_id` was heard from now (a held poll counts as contact).
    pub async fn agent_seen(&self, device_id: i64) -> Result<()> {
        sqlx::query("UPDATE devices SET last_seen_at = $1 WHERE id = $2")
            .bind(now())
            .bind(device_id)
            .execute(self.pool())
            .await?;
        Ok(())
    }
}

/// A code as typed: case and separators do not matter.
fn normalise_code(code: &str) -> String {
    code.chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_lowercase()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names_come_from_host_names() {
        assert_eq!(name_from_host("Web-01.example.com"), "web-01");
        assert_eq!(name_from_host("--x_y"), "x-y");
        assert_eq!(name_from_host(""), "agent");
        assert_eq!(name_from_host(&"a".repeat(100)).len(), 48);
        assert!(valid_name(&name_from_host("ÄÖÜ host")));
    }

    #[test]
    fn codes_are_typed_forgivingly() {
        assert_eq!(normalise_code(" ABCD-1234 "), "abcd1234");
    }

    #[tokio::test]
    async fn a_code_enrols_one_machine_once_and_plans_reach_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&format!("sqlite://{}", dir.path().join("m.db").display())).await.unwrap();
        let t = db.create_tenant("acme", "Acme", None).await.unwrap();
        let code = db.create_enrolment_code(&t, None, 24, "user:admin").await.unwrap();
        assert_eq!(code.code.len(), 44, "five groups of eight hex digits");
        let info = AgentInfo { hostname: "web01.acme.example".into(), os: "linux".into(), version: "0.1.0".into() };
        let e = db.enroll(&code.code.to_uppercase(), &info).await.unwrap();
        assert_eq!((e.device.as_str(), e.repo.name.as_str(), e.repo_is_new), ("web01", "acme-web01", true));
        let again = db.enroll(&code.code, &info).await.unwrap_err();
        assert!(again.to_string().contains("used already"), "{again}");
        assert!(db.enroll("nonsense", &info).await.is_err());
        // A second machine of the same name gets a name of its own.
        let code2 = db.create_enrolment_code(&t, Some(&e.repo), 1, "user:admin").await.unwrap();
        let e2 = db.enroll(&code2.code, &info).await.unwrap();
        assert_eq!((e2.device.as_str(), e2.repo.name.as_str(), e2.repo_is_new), ("web01-2", "acme-web01", false));

        let plan = ProtectionPlan { paths: vec!["/srv".into()], rpo_hours: 7, ..Default::default() };
        assert!(db.effective_plan(e.device_id).await.unwrap().is_none());
        db.save_protection_plan(&t, "daily", &plan, true, true).await.unwrap();
        let p = db.effective_plan(e.device_id).await.unwrap().unwrap();
        assert_eq!((p.name.as_str(), p.revision, p.tenant_default), ("daily", 1, true));
        let hourly = ProtectionPlan { schedule: "0 * * * *".into(), rpo_hours: 2, ..plan.clone() };
        db.save_protection_plan(&t, "hourly", &hourly, false, true).await.unwrap();
        db.assign_protection_plan(&t, "web01-2", Some("hourly")).await.unwrap();
        assert_eq!(db.effective_plan(e2.device_id).await.unwrap().unwrap().name, "hourly");
        let every: Vec<i64> = sqlx::query_scalar("SELECT backup_every_hours FROM devices ORDER BY id")
            .fetch_all(db.pool())
            .await
            .unwrap();
        assert_eq!(every, vec![7, 2], "the plans' RPOs feed the overdue alerts");
        db.save_protection_plan(&t, "daily", &plan, true, false).await.unwrap();
        assert_eq!(db.effective_plan(e.device_id).await.unwrap().unwrap().revision, 2);
        db.delete_protection_plan(&t, "hourly").await.unwrap();
        assert_eq!(db.effective_plan(e2.device_id).await.unwrap().unwrap().name, "daily", "back to the default");
        let bad = ProtectionPlan { paths: vec!["relative".into()], ..plan };
        assert!(db.save_protection_plan(&t, "bad", &bad, false, true).await.is_err());

        let job = db.queue_job(e.device_id, &JobSpec::Backup, "user:admin").await.unwrap();
        assert_eq!(db.pending_jobs(e.device_id).await.unwrap().len(), 1);
        assert!(db.job_event(e2.device_id, job, None).await.is_err(), "another agent's job");
        db.job_event(e.device_id, job, None).await.unwrap();
        db.job_event(e.device_id, job, Some((true, "done"))).await.unwrap();
        assert!(db.pending_jobs(e.device_id).await.unwrap().is_empty());
        let agents = db.agents(Some(t.id)).await.unwrap();
        assert_eq!(agents.len(), 2);
        assert_eq!(agents[0].1.info.hostname, "web01.acme.example");
    }
}
