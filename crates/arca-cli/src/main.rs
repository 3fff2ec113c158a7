//! `arca`: the command line of the arca backup tool.
//!
//! The binary only parses arguments, opens the repository, draws progress and prints results;
//! every repository operation is done by `arca-core`. Its conventions follow restic's: the same
//! command names, flags, environment variables (with `ARCA_` instead of `RESTIC_`) and exit codes.

// `println!`, `print!` and `eprintln!` are replaced for the whole crate (these definitions come
// before every module, so they shadow std's). SIGPIPE stays ignored, as Rust sets it up: a write
// to a socket whose peer went away must come back as an error the command reports, with its lock
// removed on the way out, not kill the process. So a write to standard output whose reader went
// away (`arca ls | head`) fails too, and std's macros would panic on it. These stop printing
// quietly instead, and `main` exits with success once a command stops because of it (as ripgrep
// does); streaming commands write through `output::stdout()`, which fails with a marker error.

/// `println!` that stops printing quietly once the reader of standard output has gone away.
macro_rules! println {
    () => {
        $crate::output::print_fmt(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::output::print_fmt(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` that stops printing quietly once the reader of standard output has gone away.
macro_rules! print {
    ($($arg:tt)*) => {
        $crate::output::print_fmt(format_args!($($arg)*))
    };
}

/// `eprintln!` that ignores a closed standard error (there is nowhere left to report to).
macro_rules! eprintln {
    ($($arg:tt)*) => {
        $crate::output::eprint_fmt(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// Prints a line on standard output unless `--quiet` or `--json` was given.
macro_rules! say {
    ($g:expr, $($arg:tt)*) => {
        if !$g.quiet && !$g.json {
            println!($($arg)*);
        }
    };
}

mod cli;
mod commands;
mod nbd;
mod output;
mod progress;
mod repo;
mod report;
mod walk;

use std::io::Write;

use arca_core::ErrorKind;
use clap::Parser;

use crate::cli::Cli;

/// Exit codes, as restic uses them.
pub mod exit {
    /// Success.
    pub const OK: i32 = 0;
    /// A fatal error: the command did not do what was asked.
    pub const FATAL: i32 = 1;
    /// The backup finished, but some files could not be read.
    pub const PARTIAL: i32 = 3;
    /// There is no repository at the given location.
    pub const NO_REPOSITORY: i32 = 10;
    /// No key slot opens with the given password.
    pub const WRONG_PASSWORD: i32 = 12;
    /// Interrupted (SIGINT).
    pub const INTERRUPTED: i32 = 130;
}

fn main() {
    install_signal_handlers();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            // Help and version go to stdout with status 0; usage errors exit 1 (restic's code for
            // "the command failed"), not clap's 2.
            let _ = e.print();
            std::process::exit(if e.use_stderr() { exit::FATAL } else { exit::OK });
        }
    };
    init_tracing(&cli.global, matches!(cli.command, cli::Command::Server(_)));
    let code = match commands::run(&cli) {
        Ok(code) => code,
        // The reader of our output went away (`arca ls | head`): it has what it wanted.
        Err(e) if output::stops_because_stdout_closed(&e) => exit::OK,
        Err(e) => {
            let _ = std::io::stdout().flush();
            eprintln!("arca: {}", error_message(&e));
            exit_code(&e)
        }
    };
    let _ = std::io::stdout().flush();
    std::process::exit(code);
}

/// The exit code for a failed command: the first engine error in the chain decides.
fn exit_code(err: &anyhow::Error) -> i32 {
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<arca_core::Error>() {
            return match e.kind() {
                ErrorKind::NoRepository => exit::NO_REPOSITORY,
                ErrorKind::WrongPassword => exit::WRONG_PASSWORD,
                _ => exit::FATAL,
            };
        }
    }
    exit::FATAL
}

/// One line: the context chain joined by `": "`. Engine and store errors already carry their
/// causes in their message, so the chain stops there; a cause whose text the previous message
/// already contains is left out too.
fn error_message(err: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if !parts.last().is_some_and(|prev| prev.contains(&text)) && !text.is_empty() {
            parts.push(text);
        }
        if cause.is::<arca_core::Error>() || cause.is::<arca_store::Error>() {
            break;
        }
    }
    parts.join(": ").replace('\n', " ")
}

fn init_tracing(global: &cli::GlobalOpts, server: bool) {
    use tracing_subscriber::EnvFilter;
    let from_env = ["ARCA_LOG", "RUST_LOG"].iter().find_map(|v| std::env::var(v).ok().filter(|s| !s.trim().is_empty()));
    let filter = match from_env {
        Some(spec) => EnvFilter::try_new(&spec).unwrap_or_else(|e| {
            eprintln!("arca: ignoring invalid log filter {spec:?}: {e}");
            EnvFilter::new("warn")
        }),
        None if server => EnvFilter::new(match (global.quiet, global.verbose) {
            (true, 0) => "warn",
            (_, 0) => "info",
            (_, 1) => "debug",
            _ => "trace",
        }),
        None => EnvFilter::new(match (global.quiet, global.verbose) {
            (true, 0) => "error",
            // Unreadable files are collected by the backup and reported once at its end.
            (_, 0) => "warn,arca_core::backup=error",
            (_, 1) => "info",
            (_, 2) => "debug",
            _ => "trace",
        }),
    };
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(global.verbose >= 2);
    // ARCA_LOG_FORMAT=json: one JSON object per line (with the request span's id, method and
    // path), for log collectors.
    if std::env::var("ARCA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json")) {
        let _ = builder.json().with_current_span(true).with_span_list(false).try_init();
        return;
    }
    // A server's log lines need their time; a command's messages do not.
    let _ = if server { builder.try_init() } else { builder.without_time().try_init() };
}

extern "C" fn on_interrupt(_signal: libc::c_int) {
    const MSG: &[u8] = b"\narca: interrupted\n";
    // SAFETY: write(2) and _exit(2) are async-signal-safe. Locks left behind belong to a process
    // that no longer exists, so the next command on this host treats them as stale.
    unsafe {
        libc::write(2, MSG.as_ptr().cast(), MSG.len());
        libc::_exit(exit::INTERRUPTED);
    }
}

fn install_signal_handlers() {
    // SIGPIPE is left ignored (Rust's start-up sets that): see the printing macros at the top.
    // SAFETY: installing a handler at start-up, before any other thread exists.
    unsafe {
        libc::signal(libc::SIGINT, on_interrupt as extern "C" fn(libc::c_int) as libc::sighandler_t);
    }
}
