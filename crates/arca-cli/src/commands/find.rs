//! `arca find`: search snapshots for files by name.

use std::io::Write;

use anyhow::{Context, Result};
use clap::Args;
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use serde_json::json;

use crate::cli::{FilterArgs, GlobalOpts};
use crate::output::{self, long_line, node_json};
use crate::repo;
use crate::walk;

const LONG_ABOUT: &str = "\
Find files and directories in snapshots by name.

Each PATTERN is a glob (`*`, `?`, `[abc]`, `{a,b}`). A pattern without `/` is matched against the
entry's name; one with `/` against its absolute path, where `*` stays within one component and
`**` crosses them. Every snapshot passing --host/--tag/--path is searched, or only those given with
--snapshot.

Examples:
  arca find '*.pdf'
  arca find -i 'report*' --snapshot latest
  arca find '/home/*/.ssh/**' --json";

/// `arca find` flags.
#[derive(Debug, Args)]
#[command(about = "Find files in snapshots by name", long_about = LONG_ABOUT)]
pub struct FindArgs {
    /// Glob patterns to look for
    #[arg(value_name = "PATTERN", required = true)]
    pub patterns: Vec<String>,

    /// Only search this snapshot (repeatable; an id prefix or `latest`)
    #[arg(short = 's', long = "snapshot", value_name = "SNAPSHOT")]
    pub snapshots: Vec<String>,

    /// Match without regard to case
    #[arg(short = 'i', long)]
    pub ignore_case: bool,

    /// Long listing: permissions, owner, group, size, time
    #[arg(short, long)]
    pub long: bool,

    #[command(flatten)]
    pub filter: FilterArgs,
}

struct Matcher {
    by_name: GlobSet,
    by_path: GlobSet,
}

impl Matcher {
    fn new(patterns: &[String], ignore_case: bool) -> Result<Matcher> {
        let mut by_name = GlobSetBuilder::new();
        let mut by_path = GlobSetBuilder::new();
        for p in patterns {
            let glob = GlobBuilder::new(p)
                .literal_separator(true)
                .case_insensitive(ignore_case)
                .build()
                .with_context(|| format!("pattern {p:?} is not a valid glob"))?;
            if p.contains('/') {
                by_path.add(glob);
            } else {
                by_name.add(glob);
            }
        }
        Ok(Matcher { by_name: by_name.build()?, by_path: by_path.build()? })
    }

    fn matches(&self, path: &str, name: &str) -> bool {
        self.by_name.is_match(name) || self.by_path.is_match(path)
    }
}

/// Runs `arca find`.
pub fn run(g: &GlobalOpts, a: &FindArgs) -> Result<i32> {
    let matcher = Matcher::new(&a.patterns, a.ignore_case)?;
    let mut opened = repo::open(g)?;
    let repo = &mut opened.repo;
    let snapshots = super::snapshots_or_all(repo, &a.snapshots, &a.filter)?;
    super::load_index_for(repo)?;
    let mut out = std::io::BufWriter::new(output::stdout());
    let mut results = Vec::new();
    let mut total = 0usize;
    for (id, snap) in &snapshots {
        let root = repo.load_tree(&snap.tree)?;
        let mut hits: Vec<(String, arca_core::tree::Node)> = Vec::new();
        walk::walk(repo, &root, "/", true, &mut |path, node| {
            if matcher.matches(path, &node.name_lossy()) {
                hits.push((path.to_string(), node.clone()));
            }
            Ok(true)
        })?;
        if hits.is_empty() {
            continue;
        }
        total += hits.len();
        if g.json {
            results.push(json!({
                "snapshot": id.to_hex(),
                "short_id": id.short(),
                "time": output::rfc3339(snap.time),
                "hits": hits.len(),
                "matches": hits.iter().map(|(p, n)| node_json(p, n)).collect::<Vec<_>>(),
            }));
        } else {
            if !g.quiet {
                writeln!(
                    out,
                    "Found matching entries in snapshot {} from {}",
                    id.short(),
                    output::local_time(snap.time)
                )?;
            }
            for (p, n) in &hits {
                if a.long {
                    writeln!(out, "{}", long_line(p, n))?;
                } else {
                    writeln!(out, "{p}")?;
                }
            }
            if !g.quiet {
                writeln!(out)?;
            }
        }
    }
    if g.json {
        output::write_json_line(&mut out, &results)?;
    } else if total == 0 && !g.quiet {
        writeln!(out, "no matching entries found in {} snapshots", snapshots.len())?;
    }
    out.flush()?;
    Ok(crate::exit::OK)
}
