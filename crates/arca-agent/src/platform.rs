//! What differs between operating systems, behind one small seam: the machine's name and
//! description, how a plan's shell command runs, and how a child run is tied to the agent's
//! life. Only Linux (and other Unix) is built and tested here; `docs/agent.md` says what a
//! Windows (VSS snapshots, a Windows service, `cmd /C`) and a macOS (launchd) agent would put
//! behind these functions.

use std::process::Command;

/// The machine's host name.
pub fn hostname() -> String {
    arca_core::sys::hostname()
}

/// The operating system, as the console shows it (`linux x86_64 Debian GNU/Linux 12 (bookworm)`).
pub fn os_description() -> String {
    let pretty = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| t.lines().find_map(|l| l.strip_prefix("PRETTY_NAME=").map(|v| v.trim_matches('"').to_string())))
        .unwrap_or_default();
    format!("{} {} {pretty}", std::env::consts::OS, std::env::consts::ARCH).trim().to_string()
}

/// A plan's shell command (`pre_command`, a dump) as a process.
pub fn shell(command: &str) -> Command {
    let mut c = Command::new("/bin/sh");
    c.arg("-c").arg(command);
    c
}

/// Ties a child run to the agent: if the agent dies (killed, crashed), the kernel kills the
/// child too, so no orphaned backup runs beside the next agent's.
pub fn die_with_agent(cmd: &mut Command) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: prctl is async-signal-safe and touches only the child's own state.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
}
