//! `arca agent run`: the poller keeps the plan and the console's jobs current; the worker runs
//! them, one at a time, and reports.
//!
//! Two threads: the poller holds a configuration poll open on the server and hands every new
//! configuration to the worker; the worker sleeps until a job waits or the plan's next run is
//! due (waking at least once a minute, so a machine that slept notices a missed run at once),
//! runs it as a child process, and reports start, progress (every few seconds) and end.
//! A finished run's report that cannot be delivered is kept and retried, so the console learns
//! every outcome; a run cut short by the agent's death is reported as interrupted at the next
//! start, and the missed slot is run again.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use arca_api::agent::{AgentConfig, AgentReport, JobSpec, NamedPlan};
use chrono::Timelike;

use crate::client::{Client, POLL_WAIT_SECONDS};
use crate::config::AgentFile;
use crate::error::{Error, Result};
use crate::local_state::{Running, StateFile};
use crate::runner::{Outcome, Progress, Runner};
use crate::timetable::Timetable;

/// How often a running child's progress is sent.
const PROGRESS_EVERY: Duration = Duration::from_secs(3);
/// The longest the worker sleeps without looking at the clock.
const TICK: Duration = Duration::from_secs(60);

/// A configured agent.
pub struct Agent {
    file: AgentFile,
    client: Client,
    runner: Runner,
    stop: Arc<AtomicBool>,
}

/// What the poller hands the worker.
#[derive(Default)]
struct Mailbox {
    config: Option<AgentConfig>,
    fresh: bool,
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn report(event: &str, kind: &str, job: Option<i64>) -> AgentReport {
    AgentReport {
        event: event.into(),
        kind: kind.into(),
        job,
        files: 0,
        bytes: 0,
        total_bytes: 0,
        rate: 0,
        ok: false,
        message: String::new(),
        next_run_at: 0,
        version: env!("CARGO_PKG_VERSION").into(),
        plan_revision: 0,
    }
}

/// Holds the state directory for this process (`flock`): a second agent on the same machine
/// would run backups beside the first.
fn lock_state_dir(dir: &Path) -> Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let path = dir.join("agent.lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    // SAFETY: flock on a file descriptor we own.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(Error::Busy(format!(
            "another arca agent is running with the state directory {} (only one may run per machine)",
            dir.display()
        )));
    }
    Ok(f)
}

impl Agent {
    /// An agent of `file` that runs `arca` (this binary) for its backups; it stops when `stop`
    /// is set.
    pub fn new(file: AgentFile, arca: &Path, stop: Arc<AtomicBool>) -> Result<Agent> {
        let client = Client::new(&file.server, &file.token, file.ca_cert.as_deref())?;
        let runner = Runner::new(arca, &file, &crate::platform::hostname());
        Ok(Agent { file, client, runner, stop })
    }

    /// Runs until stopped.
    pub fn run(self) -> Result<()> {
        let _lock = lock_state_dir(&self.file.state_dir)?;
        let mut st = StateFile::load(&self.file.state_dir)?;
        if let Some(r) = st.state.running.take() {
            tracing::warn!(
                "the agent stopped during a {} started at {}: reporting it as interrupted",
                r.kind,
                r.started_at
            );
            let mut rep = report("finished", &r.kind, r.job);
            rep.message = format!(
                "interrupted: the agent stopped during this {} (the machine was shut down or the agent was killed); \
                 nothing that was acknowledged is lost, and a missed backup runs again now",
                r.kind
            );
            st.state.unsent.push(rep);
            if let Some(j) = r.job {
                st.job_done(j);
            }
            if r.kind == "backup" && r.job.is_none() {
                // Its slot was not completed: run it again.
                st.state.last_slot = st.state.last_slot.min(r.started_at - 1);
            }
        }
        if st.state.last_slot == 0 {
            st.state.last_slot = now();
        }
        st.save()?;
        let mailbox = Arc::new((Mutex::new(Mailbox { config: st.state.config.clone(), fresh: true }), Condvar::new()));
        let poller = {
            let (client, mailbox, stop) = (self.client.clone(), mailbox.clone(), self.stop.clone());
            let known = st.state.config.as_ref().map(|c| c.etag.clone());
            std::thread::Builder::new()
                .name("agent-poll".into())
                .spawn(move || poll_loop(&client, &mailbox, &stop, known))
                .map_err(|e| Error::io("starting the poller", e))?
        };
        let result = self.work(&mut st, &mailbox);
        self.stop.store(true, Ordering::Relaxed);
        mailbox.1.notify_all();
        drop(poller);
        result
    }

    fn work(&self, st: &mut StateFile, mailbox: &Arc<(Mutex<Mailbox>, Condvar)>) -> Result<()> {
        let mut config: Option<AgentConfig> = None;
        let mut announced: Option<(i64, i64)> = None;
        while !self.stop.load(Ordering::Relaxed) {
            {
                let mut m = mailbox.0.lock().unwrap_or_else(|p| p.into_inner());
                if m.fresh {
                    m.fresh = false;
                    config = m.config.clone();
                    if st.state.config != config && config.is_some() {
                        st.state.config = config.clone();
                        st.save()?;
                    }
                }
            }
            self.flush(st)?;
            let Some(cfg) = config.clone() else {
                self.sleep(mailbox, TICK);
                continue;
            };
            let timetable = cfg.plan.as_ref().and_then(|p| {
                Timetable::new(&p.plan.schedule, p.plan.start_window_minutes, &cfg.device)
                    .map_err(|e| tracing::warn!("plan {}: {e}", p.name))
                    .ok()
            });
            let due = timetable.as_ref().and_then(|t| t.due_after(st.state.last_slot));
            // Tell the console which plan this agent now runs and when its next backup is.
            let rev = cfg.plan.as_ref().map_or(0, |p| p.revision);
            if announced != Some((rev, due.unwrap_or(0))) {
                let mut rep = report("idle", "", None);
                rep.next_run_at = due.unwrap_or(0);
                rep.plan_revision = rev;
                match self.client.report(&rep) {
                    Ok(()) => announced = Some((rev, due.unwrap_or(0))),
                    Err(e) => tracing::warn!("reporting the plan in force: {e}"),
                }
            }
            if let Some(job) = cfg.jobs.iter().find(|j| !st.state.done_jobs.contains(&j.id)) {
                self.run_job(st, cfg.plan.as_ref(), job.id, &job.spec)?;
                announced = None;
                continue;
            }
            match (cfg.plan.as_ref(), due) {
                (Some(plan), Some(due)) if due <= now() => {
                    let started = now();
                    self.run_backup(st, plan, None)?;
                    st.state.last_slot = started;
                    st.save()?;
                    announced = None;
                }
                (_, Some(due)) => {
                    self.sleep(mailbox, Duration::from_secs((due - now()).clamp(1, TICK.as_secs() as i64) as u64))
                }
                _ => self.sleep(mailbox, TICK),
            }
        }
        Ok(())
    }

    /// Waits up to `d` or until the poller brings news or the agent stops.
    fn sleep(&self, mailbox: &Arc<(Mutex<Mailbox>, Condvar)>, d: Duration) {
        let (lock, cv) = &**mailbox;
        let guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        let _ = cv.wait_timeout_while(guard, d, |m| !m.fresh && !self.stop.load(Ordering::Relaxed));
    }

    /// Sends the finished-run reports the server has not had yet; keeps them on failure.
    fn flush(&self, st: &mut StateFile) -> Result<()> {
        if st.state.unsent.is_empty() {
            return Ok(());
        }
        while let Some(rep) = st.state.unsent.first().cloned() {
            match self.client.report(&rep) {
                Ok(()) => {
                    st.state.unsent.remove(0);
                }
                // The job may have been finished meanwhile (a report that did arrive, an answer
                // that did not): nothing more to tell.
                Err(Error::Refused { status: 404, .. }) => {
                    st.state.unsent.remove(0);
                }
                Err(e) => {
                    tracing::warn!("reporting a finished run (kept, retried later): {e}");
                    break;
                }
            }
        }
        st.save()
    }

    fn run_job(&self, st: &mut StateFile, plan: Option<&NamedPlan>, id: i64, spec: &JobSpec) -> Result<()> {
        match spec {
            JobSpec::Backup => match plan {
                Some(p) => self.run_backup(st, p, Some(id)),
                None => {
                    let mut rep = report("finished", "backup", Some(id));
                    rep.message = "this agent has no protection plan: assign one first".into();
                    st.state.unsent.push(rep);
                    st.job_done(id);
                    self.flush(st)
                }
            },
            JobSpec::Restore { snapshot, path, target } => {
                let outcome = self.supervised(st, "restore", Some(id), |on| {
                    self.runner.restore(snapshot, path, target.as_deref(), on)
                })?;
                tracing::info!("restore job {id}: {}", outcome.message);
                Ok(())
            }
        }
    }

    fn run_backup(&self, st: &mut StateFile, plan: &NamedPlan, job: Option<i64>) -> Result<()> {
        let minute = chrono::Local::now();
        let limit = plan.plan.upload_limit_at(minute.hour() * 60 + minute.minute());
        let outcome = self.supervised(st, "backup", job, |on| self.runner.backup(&plan.name, &plan.plan, limit, on))?;
        if outcome.ok {
            st.state.last_success = now();
            st.save()?;
        }
        tracing::info!("backup ({}): {}", if outcome.ok { "ok" } else { "failed" }, outcome.message);
        Ok(())
    }

    /// Runs `work` as a recorded run: remembered as under way (so a crash is reported at the next
    /// start), reported as started, its progress relayed, its end reported (or kept until it can be).
    fn supervised(
        &self,
        st: &mut StateFile,
        kind: &str,
        job: Option<i64>,
        work: impl FnOnce(&mut dyn FnMut(Progress)) -> Outcome,
    ) -> Result<Outcome> {
        st.state.running = Some(Running { kind: kind.into(), job, started_at: now() });
        st.save()?;
        if let Err(e) = self.client.report(&report("started", kind, job)) {
            tracing::warn!("reporting the start of a {kind}: {e}");
        }
        let mut last_sent = Instant::now();
        let client = &self.client;
        let mut on_progress = |p: Progress| {
            if last_sent.elapsed() >= PROGRESS_EVERY {
                last_sent = Instant::now();
                let mut rep = report("progress", kind, job);
                (rep.files, rep.bytes, rep.total_bytes, rep.rate) = (p.files, p.bytes, p.total_bytes, p.rate);
                if let Err(e) = client.report(&rep) {
                    tracing::debug!("reporting progress: {e}");
                }
            }
        };
        let outcome = work(&mut on_progress);
        let mut rep = report("finished", kind, job);
        (rep.ok, rep.message, rep.files, rep.bytes) =
            (outcome.ok, outcome.message.clone(), outcome.progress.files, outcome.progress.bytes);
        st.state.running = None;
        st.state.unsent.push(rep);
        if let Some(j) = job {
            st.job_done(j);
        }
        st.save()?;
        self.flush(st)?;
        Ok(outcome)
    }
}

/// Keeps the configuration current: a held poll after another; on errors, waits longer each
/// time (5 s doubling to 5 min) so an unreachable server is not hammered.
fn poll_loop(client: &Client, mailbox: &Arc<(Mutex<Mailbox>, Condvar)>, stop: &AtomicBool, mut known: Option<String>) {
    let mut backoff = Duration::from_secs(5);
    while !stop.load(Ordering::Relaxed) {
        match client.poll(known.as_deref(), POLL_WAIT_SECONDS) {
            Ok(Some(config)) => {
                backoff = Duration::from_secs(5);
                known = Some(config.etag.clone());
                let (lock, cv) = &**mailbox;
                let mut m = lock.lock().unwrap_or_else(|p| p.into_inner());
                m.config = Some(config);
                m.fresh = true;
                cv.notify_all();
            }
            Ok(None) => backoff = Duration::from_secs(5),
            Err(e) => {
                if let Error::Refused { status: 401 | 403, .. } = e {
                    tracing::error!("the server refused this agent's token ({e}): was the device revoked?");
                } else {
                    tracing::warn!("polling the server: {e}; retrying in {backoff:?}");
                }
                let until = Instant::now() + backoff;
                while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(200));
                }
                backoff = (backoff * 2).min(Duration::from_secs(300));
            }
        }
    }
}

/// Enrols this machine: registers it with the code, initialises a new repository with the
/// customer's password (which stays here), and writes the configuration file.
pub fn enroll(
    server: &str,
    code: &str,
    password: &str,
    config_path: &Path,
    state_dir: PathBuf,
    allow_plan_commands: bool,
    ca_cert: Option<PathBuf>,
) -> Result<(AgentFile, arca_api::agent::EnrollAnswer)> {
    let req = arca_api::agent::EnrollRequest {
        code: code.trim().to_string(),
        hostname: crate::platform::hostname(),
        os: crate::platform::os_description(),
        version: env!("CARGO_PKG_VERSION").into(),
    };
    let answer = Client::enroll(server, ca_cert.as_deref(), &req)?;
    let file = AgentFile {
        server: server.trim_end_matches('/').to_string(),
        token: answer.token.clone(),
        repository: answer.repo.clone(),
        password: password.to_string(),
        allow_plan_commands,
        state_dir,
        ca_cert,
    };
    file.save(config_path)?;
    Ok((file, answer))
}
