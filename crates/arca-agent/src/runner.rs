//! Runs a plan's backup or a console restore as child processes of the `arca` binary, relaying
//! their progress (`--progress-json` lines on standard error) and turning their exit into an
//! [`Outcome`] a person can read in the console.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use arca_api::agent::ProtectionPlan;

use crate::config::AgentFile;
use crate::platform;

/// Progress of a running child.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Files done.
    pub files: u64,
    /// Bytes done.
    pub bytes: u64,
    /// Bytes in all, when known.
    pub total_bytes: u64,
    /// Bytes per second.
    pub rate: u64,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Whether it succeeded.
    pub ok: bool,
    /// What happened, for the console.
    pub message: String,
    /// Its last progress.
    pub progress: Progress,
}

/// Runs children for one agent.
pub struct Runner {
    arca: PathBuf,
    file: AgentFile,
    host: String,
}

/// Exit code of `arca backup` when the snapshot was made but some files could not be read.
const PARTIAL: i32 = 3;

impl Runner {
    /// A runner of the `arca` binary at `arca` for the agent configured by `file`.
    pub fn new(arca: &Path, file: &AgentFile, host: &str) -> Runner {
        Runner { arca: arca.to_path_buf(), file: file.clone(), host: host.to_string() }
    }

    fn arca(&self, upload_limit: Option<u64>) -> Command {
        let mut c = Command::new(&self.arca);
        c.env("ARCA_REPOSITORY", self.file.repository_url())
            .env("ARCA_TOKEN", &self.file.token)
            .env("ARCA_PASSWORD", &self.file.password)
            .env("ARCA_NO_REPORT", "1")
            .env_remove("ARCA_PASSWORD_FILE")
            .env_remove("ARCA_LIMIT_UPLOAD")
            .arg("--json")
            .arg("--progress-json")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(ca) = &self.file.ca_cert {
            c.env("ARCA_CA_CERT", ca);
        }
        if let Some(limit) = upload_limit {
            c.env("ARCA_LIMIT_UPLOAD", limit.to_string());
        }
        platform::die_with_agent(&mut c);
        c
    }

    /// Runs the plan's backup: the pre-command, the paths, the dump command's output, the
    /// post-command. Commands run only where `allow_plan_commands` is set; a plan that has them
    /// on a machine that does not allow them backs up its paths and reports the refusal.
    pub fn backup(
        &self,
        plan_name: &str,
        plan: &ProtectionPlan,
        upload_limit: Option<u64>,
        on_progress: &mut dyn FnMut(Progress),
    ) -> Outcome {
        let has_commands = !plan.pre_command.trim().is_empty()
            || !plan.post_command.trim().is_empty()
            || !plan.stdin_command.trim().is_empty();
        let commands = has_commands && self.file.allow_plan_commands;
        let mut notes = Vec::new();
        if has_commands && !commands {
            notes.push(
                "the plan's commands did not run: this machine does not allow plan commands (set \
                 allow_plan_commands = true in its agent.toml, or enrol with --allow-plan-commands)"
                    .to_string(),
            );
        }
        if commands && !plan.pre_command.trim().is_empty() {
            if let Err(e) = run_command(&plan.pre_command) {
                let post = self.post(plan, commands);
                return Outcome {
                    ok: false,
                    message: join(&[format!("pre-backup command failed: {e}")], &post),
                    progress: Progress::default(),
                };
            }
        }
        let mut ok = !has_commands || commands;
        let mut progress = Progress::default();
        if !plan.paths.is_empty() {
            let mut c = self.arca(upload_limit);
            c.arg("backup").arg("--host").arg(&self.host).arg("--tag").arg(format!("plan:{plan_name}"));
            for e in &plan.excludes {
                c.arg("--exclude").arg(e);
            }
            c.arg("--").args(&plan.paths);
            let r = watch(c, None, on_progress);
            progress = r.progress;
            ok &= r.ok;
            notes.push(r.message);
        }
        if commands && !plan.stdin_command.trim().is_empty() {
            let mut c = self.arca(upload_limit);
            c.arg("backup")
                .arg("--host")
                .arg(&self.host)
                .arg("--tag")
                .arg(format!("plan:{plan_name}"))
                .arg("--stdin")
                .arg("--stdin-filename")
                .arg(&plan.stdin_filename);
            let r = watch(c, Some(&plan.stdin_command), on_progress);
            ok &= r.ok;
            notes.push(format!("{}: {}", plan.stdin_filename, r.message));
        }
        let post = self.post(plan, commands);
        ok &= post.is_empty();
        Outcome { ok, message: join(&notes, &post), progress }
    }

    fn post(&self, plan: &ProtectionPlan, commands: bool) -> Vec<String> {
        if commands && !plan.post_command.trim().is_empty() {
            if let Err(e) = run_command(&plan.post_command) {
                return vec![format!("post-backup command failed: {e}")];
            }
        }
        Vec::new()
    }

    /// Restores `path` of `snapshot` to its original place (`target` `None`) or under `target`
    /// (with its full path).
    pub fn restore(
        &self,
        snapshot: &str,
        path: &str,
        target: Option<&str>,
        on_progress: &mut dyn FnMut(Progress),
    ) -> Outcome {
        let into = target.unwrap_or("/");
        if let Err(e) = std::fs::create_dir_all(into) {
            return Outcome { ok: false, message: format!("creating {into}: {e}"), progress: Progress::default() };
        }
        let mut c = self.arca(None);
        c.arg("restore").arg(snapshot).arg("--target").arg(into).arg("--include").arg(path).arg("--verify");
        let mut r = watch(c, None, on_progress);
        if r.ok {
            let place = match target {
                None => format!("to its original place {path}"),
                Some(t) => format!("to {}{path}", t.trim_end_matches('/')),
            };
            r.message = format!("restored {path} of snapshot {snapshot} {place} (verified)");
        }
        r
    }
}

fn join(notes: &[String], more: &[String]) -> String {
    notes.iter().chain(more).filter(|s| !s.is_empty()).cloned().collect::<Vec<_>>().join("; ")
}

/// Runs a plan's shell command; `Err` has its exit and the end of its output.
fn run_command(command: &str) -> Result<(), String> {
    let mut c = platform::shell(command);
    platform::die_with_agent(&mut c);
    let out = c.stdin(Stdio::null()).output().map_err(|e| format!("could not start it: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&out.stderr);
    let tail: String = text.lines().rev().take(3).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join(" / ");
    Err(format!("{} ({tail})", out.status))
}

/// Runs `cmd` (an `arca` child), feeding it the output of `stdin_command` if given, relaying its
/// progress lines, and reads its outcome from its exit status and its JSON summary.
fn watch(mut cmd: Command, stdin_command: Option<&str>, on_progress: &mut dyn FnMut(Progress)) -> Outcome {
    let mut feeder = None;
    if let Some(sc) = stdin_command {
        let mut s = platform::shell(sc);
        platform::die_with_agent(&mut s);
        match s.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn() {
            Ok(mut child) => {
                if let Some(out) = child.stdout.take() {
                    cmd.stdin(out);
                }
                feeder = Some(child);
            }
            Err(e) => return fail(format!("could not start the dump command: {e}")),
        }
    } else {
        cmd.stdin(Stdio::null());
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return fail(format!("could not start arca: {e}")),
    };
    // Standard output holds the JSON summary; read it beside standard error so neither pipe fills.
    let stdout = child.stdout.take();
    let summary = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut o) = stdout {
            let _ = o.read_to_string(&mut s);
        }
        s
    });
    let mut last_errors: Vec<String> = Vec::new();
    let mut progress = Progress::default();
    if let Some(err) = child.stderr.take() {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            match serde_json::from_str::<serde_json::Value>(&line) {
                Ok(v) if v["message_type"] == "progress" => {
                    progress = Progress {
                        files: leading_number(v["message"].as_str().unwrap_or_default()),
                        bytes: v["bytes"].as_u64().unwrap_or(0),
                        total_bytes: v["total_bytes"].as_u64().unwrap_or(0),
                        rate: v["rate"].as_u64().unwrap_or(0),
                    };
                    on_progress(progress);
                }
                _ => {
                    last_errors.push(line.trim().to_string());
                    if last_errors.len() > 5 {
                        last_errors.remove(0);
                    }
                }
            }
        }
    }
    let status = child.wait();
    let summary = summary.join().unwrap_or_default();
    let mut dump_failed = None;
    if let Some(mut f) = feeder {
        let mut err = String::new();
        if let Some(mut e) = f.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        match f.wait() {
            Ok(s) if s.success() => {}
            Ok(s) => dump_failed = Some(format!("the dump command failed ({s}): {}", err.trim())),
            Err(e) => dump_failed = Some(format!("the dump command: {e}")),
        }
    }
    let code = match status {
        Ok(s) => s.code(),
        Err(e) => return fail(format!("waiting for arca: {e}")),
    };
    let last = last_errors.iter().rev().find(|l| !l.is_empty()).cloned().unwrap_or_default();
    let summary: Option<serde_json::Value> = summary.lines().rev().find_map(|l| serde_json::from_str(l).ok());
    let snapshot =
        summary.as_ref().and_then(|s| s["snapshot_id"].as_str()).map(|s| s.chars().take(8).collect::<String>());
    if let Some(s) = &summary {
        let files = ["files_new", "files_changed", "files_unmodified"]
            .iter()
            .filter_map(|k| s["summary"][k].as_u64().or_else(|| s[k].as_u64()))
            .sum::<u64>();
        if files > 0 {
            progress.files = files;
        }
    }
    match (code, dump_failed) {
        (_, Some(d)) => Outcome { ok: false, message: d, progress },
        (Some(0), None) => Outcome {
            ok: true,
            message: snapshot.map(|s| format!("snapshot {s} saved")).unwrap_or_else(|| "done".into()),
            progress,
        },
        (Some(PARTIAL), None) => Outcome {
            ok: true,
            message: format!(
                "snapshot {} saved, but some files could not be read: {last}",
                snapshot.unwrap_or_default()
            ),
            progress,
        },
        (code, None) => Outcome {
            ok: false,
            message: if last.is_empty() {
                format!("arca stopped with {}", code.map_or("a signal".to_string(), |c| format!("exit code {c}")))
            } else {
                last.trim_start_matches("arca: ").to_string()
            },
            progress,
        },
    }
}

fn fail(message: String) -> Outcome {
    Outcome { ok: false, message, progress: Progress::default() }
}

/// The number a progress message starts with ("12/40 files" → 12).
fn leading_number(s: &str) -> u64 {
    s.trim_start().chars().take_while(char::is_ascii_digit).collect::<String>().parse().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_counts_come_from_the_progress_message() {
        assert_eq!(leading_number("12/40 files"), 12);
        assert_eq!(leading_number("3 files (scanning: 9 so far)"), 3);
        assert_eq!(leading_number(""), 0);
    }

    #[test]
    fn a_failing_command_says_how() {
        assert!(run_command("true").is_ok());
        let e = run_command("echo nope >&2; exit 4").unwrap_err();
        assert!(e.contains("nope") && e.contains('4'), "{e}");
    }
}
