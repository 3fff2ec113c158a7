//! Managed backup agents: the enrolment exchange, protection plans, the agent's configuration
//! poll, jobs the console asks an agent to run, and what an agent reports back.
//!
//! A protection plan is data the provider or the tenant's admins write and every agent of the
//! tenant (or one device) runs, so its rules live here, once, for the server that accepts a plan
//! and the agent that runs it: [`ProtectionPlan::validate`] bounds every field before anything
//! stores or executes it.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Longest lifetime of an enrolment code (30 days): a code is a credential, it should not linger.
pub const MAX_CODE_HOURS: i64 = 30 * 24;
/// Most paths one plan backs up.
pub const MAX_PATHS: usize = 64;
/// Most exclude patterns one plan has.
pub const MAX_EXCLUDES: usize = 256;
/// Longest path, pattern or command in a plan, in bytes.
pub const MAX_TEXT: usize = 4096;
/// Longest randomised start window: a day.
pub const MAX_START_WINDOW_MINUTES: u32 = 24 * 60;
/// Longest RPO: a year.
pub const MAX_RPO_HOURS: u32 = 366 * 24;
/// Highest upload limit a plan may set, in KiB/s (10 GiB/s; 0 means none).
pub const MAX_UPLOAD_KIB: u64 = 10 << 20;
/// Longest server-side retention a plan may ask for (ten years, as repositories allow).
pub const MAX_RETENTION_DAYS: i64 = 3650;
/// Longest a configuration poll may be held open by the server, in seconds.
pub const MAX_POLL_WAIT_SECONDS: u64 = 30;

/// What a protection plan makes each agent do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProtectionPlan {
    /// Absolute paths to back up.
    pub paths: Vec<String>,
    /// Exclude patterns (as `arca backup --exclude`).
    pub excludes: Vec<String>,
    /// When to back up: a cron expression (5 fields, or 6 with seconds) in the agent's local time.
    pub schedule: String,
    /// Each agent starts up to this many minutes after the scheduled time, at an offset of its
    /// own, so hundreds of machines do not start at the same second.
    pub start_window_minutes: u32,
    /// The recovery point objective in hours: a device without a backup for longer raises the
    /// missed-backup alert (0: no alert).
    pub rpo_hours: u32,
    /// Server-side retention of the device's repository in days (0: keep everything / leave the
    /// repository's own setting).
    pub retention_days: i64,
    /// Upload limit in KiB/s (0: none).
    pub upload_limit_kib: u64,
    /// Local-time windows (`"08:00-18:00"`) in which the upload limit applies; empty: always.
    pub limit_windows: Vec<String>,
    /// A shell command run before the backup (agents run it only where their owner allowed plan
    /// commands at enrolment); a failure fails the run.
    pub pre_command: String,
    /// A shell command run after the backup, whatever its outcome.
    pub post_command: String,
    /// A shell command whose standard output is backed up as one file (a database dump), besides
    /// the paths; empty: none.
    pub stdin_command: String,
    /// The file name the `stdin_command`'s output gets in the snapshot.
    pub stdin_filename: String,
}

impl Default for ProtectionPlan {
    fn default() -> Self {
        ProtectionPlan {
            paths: Vec::new(),
            excludes: Vec::new(),
            schedule: "0 1 * * *".into(),
            start_window_minutes: 30,
            rpo_hours: 26,
            retention_days: 0,
            upload_limit_kib: 0,
            limit_windows: Vec::new(),
            pre_command: String::new(),
            post_command: String::new(),
            stdin_command: String::new(),
            stdin_filename: "stdin".into(),
        }
    }
}

impl ProtectionPlan {
    /// Checks every field's range and form; `Err` says what to fix, for a person.
    pub fn validate(&self) -> Result<(), String> {
        if self.paths.is_empty() && self.stdin_command.trim().is_empty() {
            return Err("a plan needs at least one path to back up (or a command whose output is backed up)".into());
        }
        if self.paths.len() > MAX_PATHS {
            return Err(format!("at most {MAX_PATHS} paths per plan"));
        }
        if self.excludes.len() > MAX_EXCLUDES {
            return Err(format!("at most {MAX_EXCLUDES} exclude patterns per plan"));
        }
        for p in &self.paths {
            text("path", p)?;
            if !p.starts_with('/') {
                return Err(format!("path {p:?} is not absolute: write it from the root, like /home"));
            }
        }
        for e in &self.excludes {
            text("exclude pattern", e)?;
            if e.trim().is_empty() {
                return Err("an exclude pattern is empty".into());
            }
        }
        for (what, c) in [
            ("pre-backup command", &self.pre_command),
            ("post-backup command", &self.post_command),
            ("dump command", &self.stdin_command),
        ] {
            text(what, c)?;
        }
        text("dump file name", &self.stdin_filename)?;
        if !self.stdin_command.trim().is_empty()
            && (self.stdin_filename.is_empty() || self.stdin_filename.contains('/') || self.stdin_filename == "..")
        {
            return Err("the dump file name must be a plain file name, without '/'".into());
        }
        check_schedule(&self.schedule)?;
        if self.start_window_minutes > MAX_START_WINDOW_MINUTES {
            return Err(format!("the start window is at most {MAX_START_WINDOW_MINUTES} minutes"));
        }
        if self.rpo_hours > MAX_RPO_HOURS {
            return Err(format!("the RPO is at most {MAX_RPO_HOURS} hours"));
        }
        if !(0..=MAX_RETENTION_DAYS).contains(&self.retention_days) {
            return Err(format!("retention is 0 (keep everything) to {MAX_RETENTION_DAYS} days"));
        }
        if self.upload_limit_kib > MAX_UPLOAD_KIB {
            return Err(format!("the upload limit is at most {MAX_UPLOAD_KIB} KiB/s (0: none)"));
        }
        if self.limit_windows.len() > 16 {
            return Err("at most 16 limit windows".into());
        }
        for w in &self.limit_windows {
            w.parse::<TimeWindow>()?;
        }
        Ok(())
    }

    /// The upload limit in bytes per second at `minute_of_day` (local time), if one applies.
    pub fn upload_limit_at(&self, minute_of_day: u32) -> Option<u64> {
        if self.upload_limit_kib == 0 {
            return None;
        }
        let windows: Vec<TimeWindow> = self.limit_windows.iter().filter_map(|w| w.parse().ok()).collect();
        (windows.is_empty() || windows.iter().any(|w| w.contains(minute_of_day)))
            .then_some(self.upload_limit_kib * 1024)
    }
}

fn text(what: &str, s: &str) -> Result<(), String> {
    if s.len() > MAX_TEXT {
        return Err(format!("a {what} is at most {MAX_TEXT} bytes"));
    }
    if s.chars().any(|c| c == '\0' || c == '\n' || c == '\r') {
        return Err(format!("a {what} may not contain line breaks or NUL characters"));
    }
    Ok(())
}

/// Checks a cron expression as the agent will read it.
pub fn check_schedule(s: &str) -> Result<(), String> {
    if s.len() > 200 {
        return Err("a schedule is at most 200 characters".into());
    }
    croner::Cron::from_str(s.trim())
        .map(|_| ())
        .map_err(|e| format!("schedule {s:?} is not a cron expression (like \"0 1 * * *\", 01:00 daily): {e}"))
}

/// A daily local-time window `"HH:MM-HH:MM"`; it may wrap past midnight (`"19:00-07:00"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeWindow {
    /// Start, minutes after midnight (inclusive).
    pub start: u32,
    /// End, minutes after midnight (exclusive).
    pub end: u32,
}

impl TimeWindow {
    /// Whether `minute_of_day` (0..1440) is inside.
    pub fn contains(&self, minute_of_day: u32) -> bool {
        if self.start <= self.end {
            (self.start..self.end).contains(&minute_of_day)
        } else {
            minute_of_day >= self.start || minute_of_day < self.end
        }
    }
}

impl FromStr for TimeWindow {
    type Err = String;
    fn from_str(s: &str) -> Result<TimeWindow, String> {
        let bad = || format!("time window {s:?}: write it like \"19:00-07:00\"");
        let minutes = |t: &str| -> Result<u32, String> {
            let (h, m) = t.trim().split_once(':').ok_or_else(bad)?;
            let (h, m): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
            if h > 24 || m > 59 || (h == 24 && m > 0) {
                return Err(bad());
            }
            Ok(h * 60 + m)
        };
        let (a, b) = s.split_once('-').ok_or_else(bad)?;
        let w = TimeWindow { start: minutes(a)?, end: minutes(b)? };
        if w.start == w.end {
            return Err(format!("time window {s:?} is empty"));
        }
        Ok(w)
    }
}

impl<'de> Deserialize<'de> for TimeWindow {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<TimeWindow, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// A named protection plan as the API lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedPlan {
    /// Internal id.
    pub id: i64,
    /// Its tenant.
    pub tenant: String,
    /// Name, unique within the tenant.
    pub name: String,
    /// Bumped at every change: agents compare it to know they run the current plan.
    pub revision: i64,
    /// Whether it is the tenant's default (applies to agents without a plan of their own).
    pub tenant_default: bool,
    /// What it does.
    pub plan: ProtectionPlan,
    /// Last change.
    pub updated_at: i64,
}

/// `POST /v1/admin/tenants/{tenant}/protection-plans` and `PUT …/{name}` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanRequest {
    /// Name (`[a-z0-9-]`, 1 to 64).
    pub name: String,
    /// What it does.
    pub plan: ProtectionPlan,
    /// Make it the tenant's default.
    #[serde(default)]
    pub tenant_default: bool,
}

/// `PUT /v1/admin/tenants/{tenant}/devices/{device}/protection-plan` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssignPlan {
    /// The plan's name; `None` returns the device to its tenant's default.
    pub plan: Option<String>,
}

/// `POST /v1/admin/tenants/{tenant}/enrolment-codes` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewEnrolmentCode {
    /// The repository enrolled machines back up into; `None`: each gets a new one of its own.
    #[serde(default)]
    pub repo: Option<String>,
    /// Hours until the code expires (1 to [`MAX_CODE_HOURS`]).
    pub valid_hours: i64,
}

/// An enrolment code (the code itself only in the answer that created it).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnrolmentCode {
    /// Internal id.
    pub id: i64,
    /// The code to type on the machine; shown once.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub code: String,
    /// Its tenant.
    pub tenant: String,
    /// Fixed repository, if any.
    pub repo: Option<String>,
    /// Who made it.
    pub created_by: String,
    /// Creation time.
    pub created_at: i64,
    /// Expiry.
    pub expires_at: i64,
    /// When a machine used it (0: unused).
    pub used_at: i64,
    /// The device that used it.
    pub device: Option<String>,
}

/// `POST /v1/agent/enroll` body (no token: the code is the credential).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    /// The one-time code.
    pub code: String,
    /// The machine's host name.
    pub hostname: String,
    /// Its operating system (`linux x86_64 Debian 12`).
    pub os: String,
    /// The agent's version.
    pub version: String,
}

/// `POST /v1/agent/enroll` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnrollAnswer {
    /// The device made for the machine.
    pub device: String,
    /// Its tenant.
    pub tenant: String,
    /// The repository it backs up into.
    pub repo: String,
    /// Whether the repository is new (not yet initialised: the agent initialises it with the
    /// customer's password, which never leaves the machine).
    pub repo_is_new: bool,
    /// The device's token (append-only; shown once).
    pub token: String,
}

/// The machine an agent runs on, as it says at enrolment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentInfo {
    /// Host name.
    pub hostname: String,
    /// Operating system.
    pub os: String,
    /// Agent version.
    pub version: String,
}

/// Something the console asked one agent to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum JobSpec {
    /// Run the plan's backup now.
    Backup,
    /// Restore `path` of `snapshot` (`latest` or an id) to `target` (`None`: where it was).
    Restore {
        /// Snapshot id or `latest`.
        snapshot: String,
        /// The absolute path inside the snapshot.
        path: String,
        /// The folder to restore into; `None` puts it back at its original place.
        target: Option<String>,
    },
}

impl JobSpec {
    /// The stored kind name.
    pub fn kind(&self) -> &'static str {
        match self {
            JobSpec::Backup => "backup",
            JobSpec::Restore { .. } => "restore",
        }
    }

    /// Checks a job's fields; `Err` says what to fix.
    pub fn validate(&self) -> Result<(), String> {
        if let JobSpec::Restore { snapshot, path, target } = self {
            let id_ok = snapshot == "latest"
                || (!snapshot.is_empty() && snapshot.len() <= 64 && snapshot.bytes().all(|b| b.is_ascii_hexdigit()));
            if !id_ok {
                return Err(format!("snapshot {snapshot:?}: give `latest` or a snapshot id (hexadecimal)"));
            }
            text("path", path)?;
            if !path.starts_with('/') {
                return Err(format!("path {path:?} is not absolute: give the path as it is in the snapshot"));
            }
            if path.split('/').any(|c| c == "..") {
                return Err("a path may not contain '..'".into());
            }
            if let Some(t) = target {
                text("target folder", t)?;
                if !t.starts_with('/') || t.split('/').any(|c| c == "..") {
                    return Err(format!("target {t:?} must be an absolute folder without '..'"));
                }
            }
        }
        Ok(())
    }
}

/// A job as the agent receives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// Id (reports name it).
    pub id: i64,
    /// What to do.
    pub spec: JobSpec,
    /// Who asked.
    pub requested_by: String,
    /// When.
    pub created_at: i64,
}

/// `GET /v1/agent/config` answer: everything an agent needs to know.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentConfig {
    /// Changes whenever anything below changes; the agent sends it back as `known` and the
    /// server holds the poll until it differs (or the wait ends).
    pub etag: String,
    /// The device's name.
    pub device: String,
    /// The plan in force, if any.
    pub plan: Option<NamedPlan>,
    /// Jobs waiting to run, oldest first.
    pub jobs: Vec<Job>,
    /// How long the agent should wait before polling again when the poll was not held.
    pub poll_seconds: u64,
}

/// What an agent reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentReport {
    /// `started`, `progress`, `finished` (a run) or `idle` (between runs).
    pub event: String,
    /// `backup` or `restore` (for run events).
    #[serde(default)]
    pub kind: String,
    /// The job this run is for, if the console asked for it.
    #[serde(default)]
    pub job: Option<i64>,
    /// Files done so far.
    #[serde(default)]
    pub files: u64,
    /// Bytes done so far.
    #[serde(default)]
    pub bytes: u64,
    /// Bytes in all, when known.
    #[serde(default)]
    pub total_bytes: u64,
    /// Bytes per second now.
    #[serde(default)]
    pub rate: u64,
    /// For `finished`: whether it succeeded.
    #[serde(default)]
    pub ok: bool,
    /// What happened, for a person (an error, the snapshot made, what was restored).
    #[serde(default)]
    pub message: String,
    /// When the next scheduled run is due (Unix seconds; 0: none).
    #[serde(default)]
    pub next_run_at: i64,
    /// The agent's version (it may have been upgraded since enrolment).
    #[serde(default)]
    pub version: String,
    /// The revision of the plan the agent now runs (0: none).
    #[serde(default)]
    pub plan_revision: i64,
}

impl AgentReport {
    /// Checks the event and bounds the text; `Err` says what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if !matches!(self.event.as_str(), "started" | "progress" | "finished" | "idle") {
            return Err(format!("unknown event {:?}: report started, progress, finished or idle", self.event));
        }
        if self.event != "idle" && !matches!(self.kind.as_str(), "backup" | "restore") {
            return Err(format!("unknown kind {:?}: backup or restore", self.kind));
        }
        if self.message.len() > MAX_TEXT || self.version.len() > 64 {
            return Err("message or version too long".into());
        }
        // Figures go into JSON for the console only, but keep them in i64 range for the database.
        for v in [self.files, self.bytes, self.total_bytes, self.rate] {
            if v > i64::MAX as u64 {
                return Err("a figure is out of range".into());
            }
        }
        if !(0..=i64::from(u32::MAX) * 4).contains(&self.next_run_at) {
            return Err("next_run_at is out of range".into());
        }
        Ok(())
    }
}

/// The agent's state as the console shows it (the last report, kept by the server).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentState {
    /// `idle`, `running` (a backup or restore is under way).
    pub activity: String,
    /// For a running job: `backup` or `restore`.
    pub kind: String,
    /// Progress of the running job.
    pub files: u64,
    /// Bytes done.
    pub bytes: u64,
    /// Bytes in all, when known.
    pub total_bytes: u64,
    /// Rate now.
    pub rate: u64,
    /// When the run started.
    pub started_at: i64,
    /// The last finished run: whether it succeeded, what it said, when.
    pub last_ok: bool,
    /// Its message.
    pub last_message: String,
    /// Its end.
    pub last_finished_at: i64,
    /// The next scheduled run.
    pub next_run_at: i64,
    /// The revision of the plan the agent says it runs.
    pub plan_revision: i64,
}

/// An agent as the console and `arca admin agents` list it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentView {
    /// Device name.
    pub device: String,
    /// Tenant.
    pub tenant: String,
    /// Repository.
    pub repo: String,
    /// The machine.
    pub info: AgentInfo,
    /// Whether it polled within the last [`ONLINE_SECONDS`].
    pub online: bool,
    /// Its last poll.
    pub seen_at: i64,
    /// The plan in force, and whether it is the device's own (not the tenant default).
    pub plan: Option<String>,
    /// Whether the plan is assigned to the device itself.
    pub plan_is_own: bool,
    /// The last backup that reached the server.
    pub last_backup_at: i64,
    /// What it reports.
    pub state: AgentState,
    /// Jobs not yet finished.
    pub pending_jobs: i64,
}

/// An agent that has not polled for this long is offline.
pub const ONLINE_SECONDS: i64 = 120;

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> ProtectionPlan {
        ProtectionPlan { paths: vec!["/home".into()], ..Default::default() }
    }

    #[test]
    fn a_plan_is_bounded_and_checked() {
        assert!(plan().validate().is_ok());
        assert!(ProtectionPlan::default().validate().is_err(), "nothing to back up");
        let mut p = plan();
        p.paths.push("relative".into());
        assert!(p.validate().unwrap_err().contains("absolute"));
        let mut p = plan();
        p.schedule = "every day".into();
        assert!(p.validate().unwrap_err().contains("cron"));
        let mut p = plan();
        p.pre_command = "rm -rf /\nreboot".into();
        assert!(p.validate().is_err());
        let mut p = plan();
        p.upload_limit_kib = MAX_UPLOAD_KIB + 1;
        assert!(p.validate().is_err());
        let mut p = plan();
        p.limit_windows = vec!["25:00-07:00".into()];
        assert!(p.validate().is_err());
        let mut p = plan();
        p.paths = vec!["/x".into(); MAX_PATHS + 1];
        assert!(p.validate().is_err());
        let mut p = plan();
        p.stdin_command = "pg_dumpall".into();
        p.stdin_filename = "../etc/passwd".into();
        assert!(p.validate().is_err());
        let json = r#"{"paths":["/srv"],"rm":"x"}"#;
        assert!(serde_json::from_str::<ProtectionPlan>(json).is_err(), "unknown fields are refused");
    }

    #[test]
    fn the_upload_limit_follows_its_windows() {
        let mut p = plan();
        assert_eq!(p.upload_limit_at(600), None);
        p.upload_limit_kib = 100;
        assert_eq!(p.upload_limit_at(600), Some(102_400));
        p.limit_windows = vec!["08:00-18:00".into()];
        assert_eq!(p.upload_limit_at(600), Some(102_400));
        assert_eq!(p.upload_limit_at(19 * 60), None);
        let w: TimeWindow = "19:00-07:00".parse().unwrap();
        assert!(w.contains(23 * 60) && w.contains(60) && !w.contains(12 * 60));
        assert!("10:00-10:00".parse::<TimeWindow>().is_err());
    }

    #[test]
    fn restore_jobs_are_checked() {
        let ok = JobSpec::Restore { snapshot: "latest".into(), path: "/etc/hosts".into(), target: None };
        assert!(ok.validate().is_ok());
        let bad_id = JobSpec::Restore { snapshot: "x;rm".into(), path: "/a".into(), target: None };
        assert!(bad_id.validate().is_err());
        let escape = JobSpec::Restore { snapshot: "ab12".into(), path: "/a/../../b".into(), target: None };
        assert!(escape.validate().is_err());
        let rel = JobSpec::Restore { snapshot: "ab12".into(), path: "/a".into(), target: Some("tmp".into()) };
        assert!(rel.validate().is_err());
        assert_eq!(serde_json::to_string(&JobSpec::Backup).unwrap(), r#"{"kind":"backup"}"#);
    }

    #[test]
    fn reports_are_checked() {
        let mut r = AgentReport {
            event: "progress".into(),
            kind: "backup".into(),
            job: None,
            files: 1,
            bytes: 2,
            total_bytes: 3,
            rate: 4,
            ok: false,
            message: String::new(),
            next_run_at: 0,
            version: String::new(),
            plan_revision: 0,
        };
        assert!(r.validate().is_ok());
        r.bytes = u64::MAX;
        assert!(r.validate().is_err());
        r.bytes = 0;
        r.event = "rm".into();
        assert!(r.validate().is_err());
    }
}
