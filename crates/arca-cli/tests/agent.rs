//! Managed agents end to end, with real processes: a machine enrols with a one-time code (a reused
//! code is refused), receives its tenant's protection plan, backs up on schedule, picks up a plan
//! change, runs "back up now" and "restore to this machine" from the console's API, recovers
//! from being killed in the middle of a backup, and raises the missed-backup alert when it stays
//! offline past its plan's RPO. Then 200 agents hold their polls on one server and all receive
//! a plan change.

mod browser;
mod cluster;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use browser::Browser;
use cluster::{arca_bin, make_tree, noise, sinks, Cluster, Shape, PASSWORD, TENANT_ADMIN_PASSWORD};
use serde_json::Value;

/// One enrolled machine: its configuration file and state directory.
struct Machine {
    config: PathBuf,
    state: PathBuf,
    agent: Option<Child>,
    log: PathBuf,
}

impl Machine {
    fn new(dir: &Path) -> Machine {
        fs::create_dir_all(dir).unwrap();
        Machine { config: dir.join("agent.toml"), state: dir.join("state"), agent: None, log: dir.join("agent.log") }
    }

    fn arca(&self) -> Command {
        let mut c = Command::new(arca_bin());
        for var in ["ARCA_PASSWORD_FILE", "ARCA_HOST", "ARCA_LOG", "RUST_LOG", "ARCA_TOKEN", "ARCA_REPOSITORY"] {
            c.env_remove(var);
        }
        c.env("ARCA_KDF_MEMORY_KIB", "64").env("ARCA_KDF_ITERATIONS", "1").env("ARCA_AGENT_CONFIG", &self.config);
        c
    }

    fn enroll(&self, server: &str, code: &str) -> std::process::Output {
        self.arca()
            .args(["--json", "agent", "enroll", "--server", server, "--code", code, "--allow-plan-commands"])
            .arg("--state-dir")
            .arg(&self.state)
            .env("ARCA_PASSWORD", PASSWORD)
            .output()
            .unwrap()
    }

    fn start(&mut self) {
        let log = fs::File::create(&self.log).unwrap();
        let child = self
            .arca()
            .args(["agent", "run"])
            .env("ARCA_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.agent = Some(child);
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.agent.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    fn file(&self) -> toml::Table {
        toml::from_str(&fs::read_to_string(&self.config).unwrap()).unwrap()
    }

    /// `arca` on this machine's repository with its own token and the customer's password.
    fn repo_cmd(&self, args: &[&str]) -> Command {
        let f = self.file();
        let url = format!("{}/v1/repos/{}", f["server"].as_str().unwrap(), f["repository"].as_str().unwrap());
        let mut c = self.arca();
        c.env("ARCA_REPOSITORY", url).env("ARCA_TOKEN", f["token"].as_str().unwrap()).env("ARCA_PASSWORD", PASSWORD);
        c.args(args);
        c
    }

    fn snapshots(&self) -> Vec<Value> {
        let out = self.repo_cmd(&["--json", "snapshots"]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- agent log ---\n{}", fs::read_to_string(&self.log).unwrap_or_default());
        }
    }
}

/// The agent `name` of tenant acme as the console's API shows it.
fn agent_view(c: &Cluster, token: &str) -> Value {
    let out = c.admin_ok(token, &["--json", "agent", "list", "--tenant", "acme"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    v.as_array().unwrap().first().cloned().unwrap_or(Value::Null)
}

/// Waits until `cond` holds for the agent's view (at most `secs`), returning that view.
fn wait_for(c: &Cluster, token: &str, secs: u64, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let v = agent_view(c, token);
        if cond(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}; the agent shows {v:#}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Processes whose command line contains `needle` (the agent's children).
fn processes_with(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) {
                found.push(cmd);
            }
        }
    }
    found
}

/// Sets tenant acme's default plan `office`: `paths` on `schedule`, no start window (so the test
/// need not wait), an RPO of one hour, and `extra` flags.
fn office_plan(c: &Cluster, admin: &str, paths: &[&str], schedule: &str, extra: &[&str]) {
    let mut args = vec!["agent", "plan", "--tenant", "acme", "office", "--schedule", schedule];
    for p in paths {
        args.extend(["--path", p]);
    }
    args.extend(["--start-window", "0", "--rpo-hours", "1", "--default"]);
    args.extend(extra);
    c.admin_ok(admin, &args);
}

fn agent_lifecycle(shape: Shape) {
    if shape == Shape::ScaleOut && !cluster::available(Shape::ScaleOut) {
        return;
    }
    let (hook_url, hooks) = sinks::webhook();
    let c = Cluster::start_with(shape, &["--alert-webhook", &hook_url]);
    let admin = c.acme_admin.clone();
    let server = c.nodes[0].base.clone();

    // On the embedded shape the tenant's admin works in the console (headless Chromium); on the
    // scale-out shape through `arca admin`, which calls the same operations.
    let mut b = (shape == Shape::Embedded && browser::available()).then(|| {
        let b = Browser::start(&PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("agent-screenshots"));
        b.sign_in(&server, "acme-admin", TENANT_ADMIN_PASSWORD);
        b
    });
    let agents_page = format!("{server}/tenants/acme/agents");

    // Enrolment: a code from the tenant's admin enrols one machine, once.
    let code = match &b {
        Some(b) => {
            b.go(&format!("{server}/tenants/acme"));
            b.click_to_page("#agents-link");
            assert!(b.wait_source("No agents yet").contains("Create enrolment code"));
            b.click_to_page("#create-code");
            b.wait_source("enrol-code");
            assert!(b.text("#enrol-commands").contains("arca agent enroll --server"), "{}", b.source());
            b.text("#enrol-code")
        }
        None => {
            let v: Value =
                serde_json::from_str(&c.admin_ok(&admin, &["--json", "agent", "code", "--tenant", "acme"])).unwrap();
            v["code"].as_str().unwrap().to_string()
        }
    };
    let mut m = Machine::new(&c.path("machine"));
    let out = m.enroll(&server, &code);
    assert!(out.status.success(), "enrol: {}", String::from_utf8_lossy(&out.stderr));
    let enrolled: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(enrolled["repository_created"], true, "{enrolled}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(fs::metadata(&m.config).unwrap().permissions().mode() & 0o777, 0o600, "the config is root-only");
    let file = fs::read_to_string(&m.config).unwrap();
    assert!(file.contains(PASSWORD), "the password is kept on the machine");
    let again = Machine::new(&c.path("second"));
    let out = again.enroll(&server, &code);
    assert!(!out.status.success(), "a used code enrolled a second machine");
    assert!(String::from_utf8_lossy(&out.stderr).contains("used already"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = again.enroll(&server, "0000-not-a-code");
    assert!(!out.status.success());
    // The provider never saw the password: the audit log has the enrolment, not the password.
    let audit = c.admin_ok(&c.admin, &["audit", "--tenant", "acme"]);
    assert!(audit.contains("agent.enroll") && !audit.contains(PASSWORD), "{audit}");

    // A plan: back up `src` every minute (no start window, so the test need not wait long).
    let src = c.path("src");
    make_tree(&src);
    let src_s = src.to_str().unwrap().to_string();
    if let Some(b) = &b {
        b.go(&agents_page);
        b.fill("#plan-name", "office");
        b.fill("#plan-paths", &src_s);
        b.fill("#plan-schedule", "* * * * *");
        b.fill("input[name=start_window]", "0");
        b.fill("input[name=rpo_hours]", "1");
        b.click_to_page("#save-plan");
        assert!(b.wait_source("id=\"plans\"").contains("office"), "{}", b.source());
    } else {
        office_plan(&c, &admin, &[&src_s], "* * * * *", &[]);
    }
    m.start();
    let v = wait_for(&c, &admin, 150, "a scheduled backup", |v| {
        v["last_backup_at"].as_i64() > Some(0) && v["state"]["last_ok"] == true
    });
    assert_eq!((v["online"].as_bool(), v["plan"].as_str()), (Some(true), Some("office")), "{v:#}");
    assert!(v["info"]["os"].as_str().unwrap().starts_with("linux"), "{v:#}");
    assert!(!m.snapshots().is_empty());

    // A plan change reaches the agent: a second path, and a schedule that will not fire now.
    let extra = c.path("extra");
    fs::create_dir_all(&extra).unwrap();
    fs::write(extra.join("report.txt"), b"quarterly figures").unwrap();
    let changed = Instant::now();
    office_plan(&c, &admin, &[&src_s, extra.to_str().unwrap()], "0 3 1 1 *", &[]);
    wait_for(&c, &admin, 70, "the plan change", |v| v["state"]["plan_revision"] == 2);
    eprintln!("the agent held the changed plan {:?} after the change", changed.elapsed());

    // Back up now, from the console's API.
    let before = m.snapshots().len();
    // A run is done when the agent's last message changed and no request waits (the times have
    // one-second steps, and a restore may start and end within one).
    let last_message =
        |c: &Cluster| agent_view(c, &admin)["state"]["last_message"].as_str().unwrap_or_default().to_string();
    let done_after = |m0: String| {
        move |v: &Value| {
            v["state"]["last_message"].as_str() != Some(m0.as_str())
                && v["pending_jobs"] == 0
                && v["state"]["activity"] != "running"
        }
    };
    let m0 = last_message(&c);
    let device = v["device"].as_str().unwrap().to_string();
    let row = format!("#agent-{device}");
    match &mut b {
        Some(b) => {
            b.go(&agents_page);
            assert_eq!(b.text(&format!("{row} .agent-status")), "online");
            b.screenshot("agents");
            b.click_to_page(&format!("{row} .backup-now button"));
        }
        None => {
            c.admin_ok(&admin, &["agent", "backup-now", "--tenant", "acme", &device]);
        }
    }
    let v = wait_for(&c, &admin, 60, "back up now", done_after(m0));
    assert_eq!(v["state"]["last_ok"], true, "{v:#}");
    assert_eq!(m.snapshots().len(), before + 1);
    let out = m.repo_cmd(&["ls", "latest"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("report.txt"), "the changed plan's path was backed up");

    // Restore to this machine: into a chosen folder, then to the original place.
    let victim = extra.join("report.txt");
    let restored = c.path("restored");
    let m1 = last_message(&c);
    match &b {
        Some(b) => {
            b.go(&agents_page);
            b.click(&format!("{row} details.restore-to summary"));
            b.fill(&format!("{row} details.restore-to input[name=path]"), victim.to_str().unwrap());
            b.click(&format!("{row} details.restore-to input[value=folder]"));
            b.fill(&format!("{row} details.restore-to input[name=target]"), restored.to_str().unwrap());
            b.click_to_page(&format!("{row} details.restore-to button"));
        }
        None => {
            let (path, target) = (victim.to_str().unwrap(), restored.to_str().unwrap());
            c.admin_ok(&admin, &["agent", "restore", "--tenant", "acme", &device, "--path", path, "--target", target]);
        }
    }
    let v = wait_for(&c, &admin, 60, "a restore", done_after(m1));
    assert_eq!(v["state"]["last_ok"], true, "{v:#}");
    if let Some(b) = &b {
        b.go(&agents_page);
        assert!(b.text(&format!("{row} .last-message")).contains("restored"), "{}", b.source());
    }
    let copy = restored.join(victim.strip_prefix("/").unwrap());
    assert_eq!(fs::read(&copy).unwrap(), b"quarterly figures");
    fs::remove_file(&victim).unwrap();
    let m2 = last_message(&c);
    c.admin_ok(&admin, &["agent", "restore", "--tenant", "acme", &device, "--path", victim.to_str().unwrap()]);
    let v = wait_for(&c, &admin, 60, "a restore in place", done_after(m2));
    assert!(v["state"]["last_message"].as_str().unwrap().contains("original place"), "{v:#}");
    assert_eq!(fs::read(&victim).unwrap(), b"quarterly figures", "restored to its original place");

    // Killed in the middle of a backup: its child dies with it, the restart reports the run as
    // interrupted, the next backup works and the repository checks clean.
    fs::write(src.join("big.bin"), noise(24 << 20, 11)).unwrap();
    office_plan(&c, &admin, &[&src_s], "0 3 1 1 *", &["--upload-limit-kib", "2048"]);
    wait_for(&c, &admin, 70, "the throttled plan", |v| v["state"]["plan_revision"] == 3);
    c.admin_ok(&admin, &["agent", "backup-now", "--tenant", "acme", &device]);
    wait_for(&c, &admin, 60, "a running backup's progress", |v| {
        v["state"]["activity"] == "running" && v["state"]["bytes"].as_u64() > Some(0)
    });
    if let Some(b) = &mut b {
        b.go(&agents_page);
        let progress = b.text(&format!("{row} .progress"));
        assert!(progress.contains("backup running since") && progress.contains("files"), "{progress}");
        b.screenshot("agents-running");
    }
    // This agent's backups only: the other agent tests of this binary run beside it.
    let ours = || -> Vec<String> {
        processes_with("--progress-json").into_iter().filter(|p| !p.contains("/proc") && p.contains(&src_s)).collect()
    };
    assert!(!ours().is_empty(), "the backup runs as a child");
    if let Some(agent) = &m.agent {
        unsafe { libc::kill(agent.id() as i32, libc::SIGKILL) };
    }
    m.agent.take().unwrap().wait().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let left = ours();
    assert!(left.is_empty(), "a backup outlived its agent: {left:?}");
    m.start();
    let v = wait_for(&c, &admin, 60, "the interrupted report", |v| {
        v["state"]["last_message"].as_str().is_some_and(|s| s.contains("interrupted"))
    });
    assert_eq!(v["state"]["last_ok"], false);
    let m3 = v["state"]["last_message"].as_str().unwrap().to_string();
    office_plan(&c, &admin, &[&src_s], "0 3 1 1 *", &[]);
    c.admin_ok(&admin, &["agent", "backup-now", "--tenant", "acme", &device]);
    let v = wait_for(&c, &admin, 120, "the backup after the crash", done_after(m3));
    assert_eq!(v["state"]["last_ok"], true, "{v:#}");
    let out = m.repo_cmd(&["check"]).output().unwrap();
    assert!(out.status.success(), "check after the crash: {}", String::from_utf8_lossy(&out.stderr));
    let audit = c.admin_ok(&c.admin, &["audit", "--tenant", "acme"]);
    for action in
        ["agent.backup", "agent.restore", "agent.backup.request", "agent.restore.request", "plan.protection.update"]
    {
        assert!(audit.contains(action), "{action} is not in the audit log:\n{audit}");
    }

    // Offline past its RPO: the missed-backup alert goes out. The agent stops; its last backup
    // and contact are moved back three hours (the test cannot wait for the clock).
    m.kill();
    c.sql(&format!(
        "UPDATE devices SET last_backup_at = last_backup_at - 10800, last_seen_at = last_seen_at - 10800, \
         created_at = created_at - 10800 WHERE name = '{device}'"
    ));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = hooks.lock().unwrap().clone();
        if got.iter().any(|b| b.contains("backup-overdue") && b.contains(&device)) {
            break;
        }
        assert!(Instant::now() < deadline, "no missed-backup alert for the offline agent: {got:?}");
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(agent_view(&c, &admin)["online"], false);
}

#[test]
fn an_agent_enrols_backs_up_on_schedule_and_obeys_the_console() {
    agent_lifecycle(Shape::Embedded);
}

#[test]
fn an_agent_on_the_scale_out_shape() {
    agent_lifecycle(Shape::ScaleOut);
}

/// 200 agents (lightweight clients of the agent crate over real HTTP) enrol and hold their polls
/// on one server; a plan change reaches every one of them, and a job reaches only its agent.
#[test]
fn two_hundred_agents_poll_one_server() {
    use arca_agent::client::Client;
    let c = Cluster::start(Shape::Embedded);
    let server = c.nodes[0].base.clone();
    let admin = c.acme_admin.clone();
    c.admin_ok(&admin, &["agent", "plan", "--tenant", "acme", "fleet", "--path", "/srv", "--default"]);
    let http = c.http();
    let mut clients = Vec::new();
    for i in 0..200 {
        let r = http
            .post(format!("{server}/v1/admin/tenants/acme/enrolment-codes"))
            .bearer_auth(&admin)
            .header("content-type", "application/json")
            .body(r#"{"repo":"acme","valid_hours":1}"#)
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
        let code: Value = r.json_text();
        let req = arca_api::agent::EnrollRequest {
            code: code["code"].as_str().unwrap().into(),
            hostname: format!("pc{i:03}"),
            os: "linux".into(),
            version: "test".into(),
        };
        let a = Client::enroll(&server, None, &req).unwrap();
        clients.push((a.device.clone(), Client::new(&server, &a.token, None).unwrap()));
    }
    // Every agent learns its configuration, then holds a poll.
    let first: Vec<String> = clients.iter().map(|(_, cl)| cl.poll(None, 0).unwrap().unwrap().etag).collect();
    let (tx, rx) = std::sync::mpsc::channel();
    for ((device, client), etag) in clients.into_iter().zip(first) {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut known = etag;
            loop {
                match client.poll(Some(&known), 25) {
                    Ok(Some(cfg)) => {
                        known = cfg.etag.clone();
                        let _ = tx.send((device.clone(), cfg));
                    }
                    Ok(None) => {}
                    Err(e) => panic!("{device}: {e}"),
                }
            }
        });
    }
    std::thread::sleep(Duration::from_secs(2));
    let changed = Instant::now();
    c.admin_ok(
        &admin,
        &["agent", "plan", "--tenant", "acme", "fleet", "--path", "/srv", "--path", "/home", "--default"],
    );
    let mut holding = std::collections::HashSet::new();
    while holding.len() < 200 {
        let (device, cfg) = rx.recv_timeout(Duration::from_secs(40)).expect("a held poll did not bring the change");
        if cfg.plan.as_ref().is_some_and(|p| p.revision == 2) {
            holding.insert(device);
        }
    }
    eprintln!("200 agents held the changed plan {:?} after the change", changed.elapsed());
    // A job reaches its agent only.
    c.admin_ok(&admin, &["agent", "backup-now", "--tenant", "acme", "pc007"]);
    let (device, cfg) = rx.recv_timeout(Duration::from_secs(40)).unwrap();
    assert_eq!((device.as_str(), cfg.jobs.len()), ("pc007", 1));
    assert!(rx.recv_timeout(Duration::from_secs(2)).is_err(), "another agent received pc007's job");
    let out = c.admin_ok(&admin, &["--json", "agent", "list", "--tenant", "acme"]);
    let agents: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(agents.len(), 200);
    assert!(agents.iter().all(|a| a["online"] == true && a["plan"] == "fleet"));
    // Another tenant sees none of them and cannot start their work.
    let out = c.admin_ok(&c.other_admin, &["--json", "agent", "list", "--tenant", "other"]);
    assert_eq!(out.trim(), "[]");
    let out = c.admin_cmd(&c.other_admin, &["agent", "backup-now", "--tenant", "acme", "pc007"]).output().unwrap();
    assert!(!out.status.success(), "another tenant's admin queued a job");
}

trait JsonText {
    fn json_text(self) -> Value;
}

impl JsonText for reqwest::blocking::Response {
    fn json_text(self) -> Value {
        serde_json::from_str(&self.text().unwrap()).unwrap()
    }
}
