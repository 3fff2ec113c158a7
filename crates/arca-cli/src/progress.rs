//! Progress bars. The engine exposes atomic counters; a thread here polls them every 100 ms and
//! draws a bar on standard error. Bars are drawn only when standard error is a terminal and
//! neither `--quiet`, `--json` nor `--no-progress` was given. With `--progress-json` the same
//! counters are printed once a second as JSON lines on standard error instead (for scripts and
//! for `arca agent`, which relays them to the console).

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::cli::GlobalOpts;

/// Whether to show progress (a bar, or JSON lines with `--progress-json`).
pub fn enabled(global: &GlobalOpts) -> bool {
    if global.progress_json {
        JSON_LINES.store(true, Ordering::Relaxed);
        return true;
    }
    !global.quiet && !global.json && !global.no_progress && std::io::stderr().is_terminal()
}

/// Set by [`enabled`] under `--progress-json`: [`run`] prints JSON lines instead of a bar.
static JSON_LINES: AtomicBool = AtomicBool::new(false);

/// One progress line: the bar's position, length, rate and message.
fn json_line(bar: &ProgressBar) -> String {
    serde_json::json!({
        "message_type": "progress",
        "bytes": bar.position(),
        "total_bytes": bar.length().unwrap_or(0),
        "rate": bar.per_sec() as u64,
        "message": bar.message(),
    })
    .to_string()
}

/// The look of a bar.
#[derive(Clone, Copy)]
pub enum Style {
    /// Position and length are bytes: shows rate and ETA.
    Bytes,
    /// Position and length are counts (packs, files).
    Count,
}

fn make_bar(style: Style) -> ProgressBar {
    let template = match style {
        Style::Bytes => {
            "[{elapsed_precise}] [{wide_bar:.cyan/blue}] {binary_bytes}/{binary_total_bytes} \
             {binary_bytes_per_sec} ETA {eta} {msg}"
        }
        Style::Count => "[{elapsed_precise}] [{wide_bar:.cyan/blue}] {pos}/{len} ETA {eta} {msg}",
    };
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr_with_hz(10));
    if let Ok(s) = ProgressStyle::with_template(template) {
        bar.set_style(s.progress_chars("=> "));
    }
    bar
}

/// Runs `work` on this thread while another thread calls `poll` on a bar every 100 ms. Without
/// progress (`enabled` false) it just runs `work`.
pub fn run<T>(enabled: bool, style: Style, poll: impl Fn(&ProgressBar) + Sync, work: impl FnOnce() -> T) -> T {
    if !enabled {
        return work();
    }
    let json = JSON_LINES.load(Ordering::Relaxed);
    let bar = if json { ProgressBar::hidden() } else { make_bar(style) };
    let stop = AtomicBool::new(false);
    let result = std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut ticks = 0u32;
            while !stop.load(Ordering::Relaxed) {
                poll(&bar);
                if json && ticks.is_multiple_of(10) {
                    eprintln!("{}", json_line(&bar));
                }
                ticks = ticks.wrapping_add(1);
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let r = work();
        stop.store(true, Ordering::Relaxed);
        r
    });
    if json {
        poll(&bar);
        eprintln!("{}", json_line(&bar));
    }
    bar.finish_and_clear();
    result
}
