//! `arca snapshots`: list snapshots.

use std::collections::HashMap;

use anyhow::Result;
use clap::Args;

use crate::cli::{FilterArgs, GlobalOpts};
use crate::output::{self, print_json, snapshot_json, Table};
use crate::repo;

const LONG_ABOUT: &str = "\
List the snapshots in the repository, oldest first.

Snapshot arguments of other commands take the ID shown here (any unique prefix of it) or `latest`.
--host, --tag and --path narrow the list; --latest N shows only the newest N snapshots of each
host and path set. --json prints an array of snapshot objects with full ids and the backup's
summary figures.

Examples:
  arca snapshots
  arca snapshots --host laptop --tag daily --latest 3
  arca snapshots --json | jq -r '.[].id'";

/// `arca snapshots` flags.
#[derive(Debug, Args)]
#[command(about = "List snapshots", long_about = LONG_ABOUT)]
pub struct SnapshotsArgs {
    /// Snapshots to show (ids or `latest`; default: all)
    #[arg(value_name = "SNAPSHOT")]
    pub snapshots: Vec<String>,

    #[command(flatten)]
    pub filter: FilterArgs,

    /// Only show the newest N snapshots of each host and path set
    #[arg(long, value_name = "N")]
    pub latest: Option<usize>,
}

/// Runs `arca snapshots`.
pub fn run(g: &GlobalOpts, a: &SnapshotsArgs) -> Result<i32> {
    let opened = repo::open(g)?;
    let mut list = super::snapshots_or_all(&opened.repo, &a.snapshots, &a.filter)?;
    if let Some(n) = a.latest {
        // Newest N per (host, sorted paths), keeping the overall oldest-first order.
        let mut seen: HashMap<(String, Vec<String>), usize> = HashMap::new();
        let mut keep = vec![false; list.len()];
        for (i, (_, s)) in list.iter().enumerate().rev() {
            let mut paths = s.paths.clone();
            paths.sort();
            let count = seen.entry((s.hostname.clone(), paths)).or_default();
            if *count < n {
                *count += 1;
                keep[i] = true;
            }
        }
        let mut i = 0;
        list.retain(|_| {
            i += 1;
            keep[i - 1]
        });
    }
    if g.json {
        let v: Vec<serde_json::Value> = list.iter().map(|(id, s)| snapshot_json(id, s)).collect();
        print_json(&v)?;
        return Ok(crate::exit::OK);
    }
    let mut t = Table::new(&["ID", "Time", "Host", "Tags", "Paths", "Size"]);
    for (id, s) in &list {
        let size = output::bytes(s.summary.total_bytes);
        let mut paths = s.paths.iter();
        t.row(vec![
            id.short(),
            output::local_time(s.time),
            s.hostname.clone(),
            s.tags.join(","),
            paths.next().cloned().unwrap_or_default(),
            size,
        ]);
        for p in paths {
            t.row(vec![String::new(), String::new(), String::new(), String::new(), p.clone()]);
        }
    }
    print!("{}", t.render());
    println!("{} snapshots", list.len());
    Ok(crate::exit::OK)
}
