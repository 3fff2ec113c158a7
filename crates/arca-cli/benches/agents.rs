//! Managed agents at fleet scale: 1,000 idle agents (lightweight clients speaking the agent's
//! protocol over real HTTP: each holds its configuration poll open, as `arca agent run` does)
//! against one embedded server. Measures the server's CPU and memory while they idle, and the
//! time from a plan change until every agent holds the new plan.
//!
//!   cargo bench -p arca-cli --bench agents            # AGENTS=1000 IDLE_SECS=60 by default
//!
//! The clients run in this process on the same cores as the server (2 here), so the server's
//! figures are read from /proc for its own process only.

#[path = "../tests/cluster/mod.rs"]
mod cluster;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cluster::{Cluster, Shape};
use serde_json::Value;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// (CPU seconds used, resident KiB, peak resident KiB) of a process.
fn usage(pid: u32) -> (f64, u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib = |key: &str| -> u64 {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (ticks as f64 / hz, kib("VmRSS:"), kib("VmHWM:"))
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let agents = env_num("AGENTS", 1000) as usize;
    let idle_secs = env_num("IDLE_SECS", 60);
    // One connection per agent on both sides.
    unsafe {
        let mut l = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut l);
        l.rlim_cur = l.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &l);
    }
    let c = Cluster::start(Shape::Embedded);
    let server = c.nodes[0].base.clone();
    let pid = c.nodes[0].child.id();
    let admin = c.acme_admin.clone();
    let plan = |paths: &[&str]| {
        let mut args = vec!["agent", "plan", "--tenant", "acme", "fleet", "--default"];
        for p in paths {
            args.extend(["--path", p]);
        }
        c.admin_ok(&admin, &args);
    };
    plan(&["/srv"]);
    let (_, rss_before, _) = usage(pid);

    let started = Instant::now();
    let http = reqwest::blocking::Client::new();
    let mut tokens = Vec::with_capacity(agents);
    for i in 0..agents {
        let code: Value = serde_json::from_str(
            &http
                .post(format!("{server}/v1/admin/tenants/acme/enrolment-codes"))
                .bearer_auth(&admin)
                .header("content-type", "application/json")
                .body(r#"{"repo":"acme","valid_hours":1}"#)
                .send()
                .unwrap()
                .text()
                .unwrap(),
        )
        .unwrap();
        let body = serde_json::json!({"code": code["code"], "hostname": format!("pc{i:04}"), "os": "linux", "version": "bench"});
        let r: Value = serde_json::from_str(
            &http
                .post(format!("{server}/v1/agent/enroll"))
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .unwrap()
                .text()
                .unwrap(),
        )
        .unwrap();
        tokens.push(r["token"].as_str().expect("an enrolment answer").to_string());
    }
    let enrol_secs = started.elapsed().as_secs_f64();

    // Each agent: poll once, then hold polls; record (revision, when) on every change.
    let seen: Arc<Mutex<Vec<(i64, Instant)>>> = Arc::new(Mutex::new(vec![(0, Instant::now()); agents]));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let client = reqwest::Client::builder().pool_max_idle_per_host(agents + 10).build().unwrap();
    for (i, token) in tokens.into_iter().enumerate() {
        let (client, seen, server) = (client.clone(), seen.clone(), server.clone());
        rt.spawn(async move {
            let mut known = String::new();
            loop {
                let url = format!("{server}/v1/agent/config?wait=25&known={known}");
                let Ok(resp) = client.get(url).bearer_auth(&token).send().await else {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                };
                if resp.status().as_u16() == 200 {
                    let v: Value = serde_json::from_str(&resp.text().await.unwrap_or_default()).unwrap_or_default();
                    known = v["etag"].as_str().unwrap_or_default().to_string();
                    let rev = v["plan"]["revision"].as_i64().unwrap_or(0);
                    seen.lock().unwrap()[i] = (rev, Instant::now());
                } else {
                    let _ = resp.bytes().await;
                }
            }
        });
    }
    let all_at = |rev: i64| seen.lock().unwrap().iter().all(|(r, _)| *r >= rev);
    let deadline = Instant::now() + Duration::from_secs(120);
    while !all_at(1) {
        assert!(Instant::now() < deadline, "not every agent got its first configuration");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(5));

    // Idle: every agent holds a poll; the server answers each after 25 s and it is renewed.
    let (cpu0, _, _) = usage(pid);
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(idle_secs));
    let (cpu1, rss, peak) = usage(pid);
    let cpu_pct = 100.0 * (cpu1 - cpu0) / t0.elapsed().as_secs_f64();

    // Plan changes: time until every agent holds the new revision.
    let mut spreads = Vec::new();
    for round in 0..3 {
        let rev = 2 + round as i64;
        let changed = Instant::now();
        if round % 2 == 0 {
            plan(&["/srv", "/home"]);
        } else {
            plan(&["/srv"]);
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        while !all_at(rev) {
            assert!(Instant::now() < deadline, "not every agent got revision {rev}");
            std::thread::sleep(Duration::from_millis(10));
        }
        let times: Vec<f64> =
            seen.lock().unwrap().iter().map(|(_, t)| t.saturating_duration_since(changed).as_secs_f64()).collect();
        let last = times.iter().cloned().fold(0.0, f64::max);
        let mut sorted = times.clone();
        sorted.sort_by(|a, b| a.partial_cmp(b).unwrap());
        spreads.push((sorted[sorted.len() / 2], last));
        std::thread::sleep(Duration::from_secs(2));
    }
    println!("agents: {agents} (enrolled in {enrol_secs:.1} s, {:.1} ms each)", 1000.0 * enrol_secs / agents as f64);
    println!(
        "server while {agents} agents idle-poll for {idle_secs} s: CPU {cpu_pct:.2}% of one core, RSS {:.1} MiB (before the agents: {:.1} MiB, peak {:.1} MiB)",
        rss as f64 / 1024.0,
        rss_before as f64 / 1024.0,
        peak as f64 / 1024.0
    );
    for (i, (median, last)) in spreads.iter().enumerate() {
        println!(
            "plan change {}: median agent holds it after {:.0} ms, the last after {:.0} ms",
            i + 1,
            median * 1000.0,
            last * 1000.0
        );
    }
    rt.shutdown_background();
}
