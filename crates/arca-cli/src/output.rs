//! Printing: human sizes, times, tables, and the JSON forms of snapshots and nodes.

use std::io::{ErrorKind, Write};
use std::sync::atomic::{AtomicBool, Ordering};

use arca_core::id::SnapshotId;
use arca_core::snapshot::Snapshot;
use arca_core::tree::{Node, NodeKind, Timestamp};
use chrono::{DateTime, Local, SecondsFormat, Utc};
use serde_json::{json, Value};

pub use arca_core::units::{bytes, duration};

/// A time in the local zone, to the second.
pub fn local_time(t: DateTime<Utc>) -> String {
    t.with_timezone(&Local).format("%Y-%m-%d %H:%M:%S").to_string()
}

/// A time as RFC 3339 with nanoseconds, in UTC.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// A node timestamp as RFC 3339.
pub fn timestamp(t: Timestamp) -> String {
    rfc3339(t.to_chrono())
}

/// Set once a write to standard output failed because its reader went away.
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// The error a write through [`stdout()`] fails with once the reader of standard output has gone
/// away (inside an `io::Error` of kind `BrokenPipe`). It tells that case apart from a broken pipe
/// anywhere else, such as the connection to a server.
#[derive(Debug)]
pub struct StdoutClosed;

impl std::fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("standard output was closed")
    }
}

impl std::error::Error for StdoutClosed {}

/// Standard output for commands that stream (`ls`, `find`, `dump`, JSON lines): once the reader
/// has gone away, writes fail with [`StdoutClosed`], so the command stops through its normal error
/// path (dropping its lock) and `main` ends quietly with success.
pub struct Stdout(std::io::StdoutLock<'static>);

/// Locks standard output (see [`Stdout`]).
pub fn stdout() -> Stdout {
    Stdout(std::io::stdout().lock())
}

impl Stdout {
    fn check(r: std::io::Result<usize>) -> std::io::Result<usize> {
        r.map_err(|e| {
            if e.kind() == ErrorKind::BrokenPipe {
                STDOUT_CLOSED.store(true, Ordering::Relaxed);
                std::io::Error::new(ErrorKind::BrokenPipe, StdoutClosed)
            } else {
                e
            }
        })
    }
}

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if STDOUT_CLOSED.load(Ordering::Relaxed) {
            return Err(std::io::Error::new(ErrorKind::BrokenPipe, StdoutClosed));
        }
        Self::check(self.0.write(buf))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Self::check(self.0.flush().map(|()| 0)).map(|_| ())
    }
}

/// What the crate's `println!` and `print!` call: prints, and once the reader of standard output
/// has gone away, prints nothing more (instead of std's panic). Other write errors (a full disk
/// behind `> file`) still panic, as with std's macros.
pub fn print_fmt(args: std::fmt::Arguments<'_>) {
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        return;
    }
    if let Err(e) = stdout().write_fmt(args) {
        if e.kind() != ErrorKind::BrokenPipe {
            panic!("failed printing to stdout: {e}");
        }
    }
}

/// What the crate's `eprintln!` calls: prints to standard error, ignoring errors (when standard
/// error is closed there is nowhere left to report them).
pub fn eprint_fmt(args: std::fmt::Arguments<'_>) {
    let _ = std::io::stderr().lock().write_fmt(args);
}

/// Whether `err` comes from writing to a standard output whose reader has gone away.
pub fn stops_because_stdout_closed(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause.is::<StdoutClosed>()
            || cause
                .downcast_ref::<std::io::Error>()
                .and_then(|e| e.get_ref())
                .is_some_and(|inner| inner.is::<StdoutClosed>())
    })
}

/// Prints a value as one line of JSON.
pub fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    write_json_line(&mut stdout(), value)
}

/// Writes a value as one line of JSON. Serialised first, so that a write error reaches the caller
/// as the `io::Error` it is (serde_json's error would hide a [`StdoutClosed`]).
pub fn write_json_line(out: &mut impl Write, value: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut line = serde_json::to_vec(value)?;
    line.push(b'\n');
    out.write_all(&line)?;
    Ok(())
}

/// A snapshot as JSON, with restic's field names (and `host` as a short alias of `hostname`).
pub fn snapshot_json(id: &SnapshotId, s: &Snapshot) -> Value {
    json!({
        "id": id.to_hex(),
        "short_id": id.short(),
        "time": rfc3339(s.time),
        "tree": s.tree.to_hex(),
        "paths": s.paths,
        "hostname": s.hostname,
        "host": s.hostname,
        "username": s.username,
        "tags": s.tags,
        "parent": s.parent.map(|p| p.to_hex()),
        "program_version": s.program_version,
        "summary": s.summary,
    })
}

/// `ls -l`-style permission string: type letter then `rwx` triples with setuid/setgid/sticky.
pub fn mode_string(node: &Node) -> String {
    let m = node.mode;
    let mut s = String::with_capacity(10);
    s.push(node.type_char());
    let bit = |mask: u32, c: char| if m & mask != 0 { c } else { '-' };
    let special = |exec: bool, special: bool, lower: char, upper: char| match (exec, special) {
        (true, true) => lower,
        (false, true) => upper,
        (true, false) => 'x',
        (false, false) => '-',
    };
    s.push(bit(0o400, 'r'));
    s.push(bit(0o200, 'w'));
    s.push(special(m & 0o100 != 0, m & 0o4000 != 0, 's', 'S'));
    s.push(bit(0o040, 'r'));
    s.push(bit(0o020, 'w'));
    s.push(special(m & 0o010 != 0, m & 0o2000 != 0, 's', 'S'));
    s.push(bit(0o004, 'r'));
    s.push(bit(0o002, 'w'));
    s.push(special(m & 0o001 != 0, m & 0o1000 != 0, 't', 'T'));
    s
}

/// A node's type as a word (restic's names).
pub fn node_type(node: &Node) -> &'static str {
    match node.kind {
        NodeKind::File => "file",
        NodeKind::Dir => "dir",
        NodeKind::Symlink { .. } => "symlink",
        NodeKind::Fifo => "fifo",
        NodeKind::Socket => "socket",
        NodeKind::CharDevice { .. } => "chardev",
        NodeKind::BlockDevice { .. } => "dev",
    }
}

/// A node as JSON (for `ls --json` and `find --json`).
pub fn node_json(path: &str, node: &Node) -> Value {
    let mut v = json!({
        "name": node.name_lossy(),
        "type": node_type(node),
        "path": path,
        "uid": node.uid,
        "gid": node.gid,
        "user": node.user,
        "group": node.group,
        "size": node.size,
        "mode": node.mode,
        "permissions": mode_string(node),
        "mtime": timestamp(node.mtime),
        "atime": timestamp(node.atime),
        "ctime": timestamp(node.ctime),
        "inode": node.inode,
        "links": node.links,
        "struct_type": "node",
    });
    if let NodeKind::Symlink { target } = &node.kind {
        v["linktarget"] = json!(String::from_utf8_lossy(target));
    }
    v
}

/// One `ls -l` line for a node.
pub fn long_line(path: &str, node: &Node) -> String {
    let user = node.user.clone().unwrap_or_else(|| node.uid.to_string());
    let group = node.group.clone().unwrap_or_else(|| node.gid.to_string());
    let mut line = format!(
        "{} {:>8} {:>8} {:>10} {} {}",
        mode_string(node),
        user,
        group,
        node.size,
        local_time(node.mtime.to_chrono()),
        path
    );
    if let NodeKind::Symlink { target } = &node.kind {
        line.push_str(" -> ");
        line.push_str(&String::from_utf8_lossy(target));
    }
    line
}

/// A text table: a header, a rule, rows, a rule.
#[derive(Default)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub fn new(headers: &[&str]) -> Table {
        Table { headers: headers.iter().map(|s| s.to_string()).collect(), rows: Vec::new() }
    }

    /// Adds a row (missing cells are empty).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as text, lines ending in `\n`.
    pub fn render(&self) -> String {
        let cols = self.headers.len();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for r in &self.rows {
            for (i, c) in r.iter().enumerate().take(cols) {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
        let line = |cells: &[String]| -> String {
            let mut s = String::new();
            for (i, width) in widths.iter().enumerate() {
                let c = cells.get(i).map(String::as_str).unwrap_or("");
                s.push_str(c);
                if i + 1 < cols {
                    s.push_str(&" ".repeat(width - c.chars().count() + 2));
                }
            }
            s.trim_end().to_string() + "\n"
        };
        let total: usize = widths.iter().sum::<usize>() + 2 * cols.saturating_sub(1);
        let rule = "-".repeat(total.max(10)) + "\n";
        let mut out = line(&self.headers);
        out.push_str(&rule);
        for r in &self.rows {
            out.push_str(&line(r));
        }
        out.push_str(&rule);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.500 KiB");
        assert_eq!(bytes(5 * 1024 * 1024), "5.000 MiB");
    }

    #[test]
    fn durations() {
        assert_eq!(duration(5), "0:05");
        assert_eq!(duration(65), "1:05");
        assert_eq!(duration(3723), "1:02:03");
    }

    #[test]
    fn table_aligns() {
        let mut t = Table::new(&["ID", "Name"]);
        t.row(vec!["a".into(), "x".into()]);
        t.row(vec!["abcdef".into(), "y".into()]);
        let r = t.render();
        assert!(r.starts_with("ID      Name\n"));
        assert!(r.contains("abcdef  y\n"));
    }
}
