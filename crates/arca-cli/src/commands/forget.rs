//! `arca forget`: remove snapshots by id or by a retention policy.

use std::collections::HashMap;

use anyhow::{bail, Result};
use arca_core::forget::{apply_policy, ForgetPolicy, GroupBy, GroupKey, KeepWithin};
use arca_core::id::SnapshotId;
use arca_core::lock::LockGuard;
use arca_core::snapshot::Snapshot;
use clap::Args;
use serde_json::{json, Value};

use crate::cli::{FilterArgs, GlobalOpts};
use crate::output::{self, print_json, snapshot_json, Table};
use crate::repo;

const LONG_ABOUT: &str = "\
Remove snapshots, either the ones named or those a retention policy does not keep.

Only the snapshot objects are removed; the data they alone used stays until `arca prune` (or
--prune here) deletes it.

A policy is applied to each group of snapshots separately (by default one group per host and path
set; see --group-by). Within a group, a snapshot is kept if any rule keeps it:
  --keep-last N        the N newest snapshots
  --keep-hourly N      the newest snapshot of each of the N newest hours (likewise daily, weekly,
                       monthly, yearly; days and weeks are computed in UTC)
  --keep-within SPAN   every snapshot within SPAN (e.g. 1y6m, 14d, 12h) of the group's newest
  --keep-tag TAG       every snapshot with this tag (`a,b`: both)
Without snapshot ids and without any rule, forget refuses to run. --dry-run shows what would be
removed.

Examples:
  arca forget 1a2b3c4d
  arca forget --keep-daily 7 --keep-weekly 5 --keep-monthly 12 --prune
  arca forget --host laptop --keep-last 10 --dry-run";

/// `arca forget` flags.
#[derive(Debug, Args)]
#[command(about = "Remove snapshots by id or by a retention policy", long_about = LONG_ABOUT)]
pub struct ForgetArgs {
    /// Snapshots to remove (ids or id prefixes); give none to apply the policy
    #[arg(value_name = "SNAPSHOT")]
    pub snapshots: Vec<String>,

    /// Keep the N newest snapshots
    #[arg(short = 'l', long, value_name = "N")]
    pub keep_last: Option<u32>,
    /// Keep the newest snapshot of each of the N newest hours
    #[arg(long, value_name = "N")]
    pub keep_hourly: Option<u32>,
    /// Keep the newest snapshot of each of the N newest days
    #[arg(short = 'd', long, value_name = "N")]
    pub keep_daily: Option<u32>,
    /// Keep the newest snapshot of each of the N newest weeks
    #[arg(short = 'w', long, value_name = "N")]
    pub keep_weekly: Option<u32>,
    /// Keep the newest snapshot of each of the N newest months
    #[arg(short = 'm', long, value_name = "N")]
    pub keep_monthly: Option<u32>,
    /// Keep the newest snapshot of each of the N newest years
    #[arg(short = 'y', long, value_name = "N")]
    pub keep_yearly: Option<u32>,
    /// Keep snapshots newer than the group's newest minus this span (e.g. 1y5m7d2h)
    #[arg(long, value_name = "SPAN", value_parser = KeepWithin::parse)]
    pub keep_within: Option<KeepWithin>,
    /// Keep snapshots with this tag; `a,b` means both (repeatable)
    #[arg(long = "keep-tag", value_name = "TAG")]
    pub keep_tags: Vec<String>,

    #[command(flatten)]
    pub filter: FilterArgs,

    /// Group snapshots by these fields before applying the policy: host, paths, tags
    /// (comma-separated; empty for one group)
    #[arg(short = 'g', long, value_name = "FIELDS", default_value = "host,paths", value_parser = GroupBy::parse)]
    pub group_by: GroupBy,

    /// Run `prune` afterwards to delete the data no snapshot needs any more
    #[arg(long)]
    pub prune: bool,

    /// Only show what would be removed
    #[arg(short = 'n', long)]
    pub dry_run: bool,
}

impl ForgetArgs {
    fn policy(&self) -> ForgetPolicy {
        ForgetPolicy {
            keep_last: self.keep_last,
            keep_hourly: self.keep_hourly,
            keep_daily: self.keep_daily,
            keep_weekly: self.keep_weekly,
            keep_monthly: self.keep_monthly,
            keep_yearly: self.keep_yearly,
            keep_within: self.keep_within,
            keep_tags: self.keep_tags.clone(),
        }
    }
}

fn group_title(key: &GroupKey) -> String {
    let mut parts = Vec::new();
    if let Some(h) = &key.hostname {
        parts.push(format!("host [{h}]"));
    }
    if let Some(p) = &key.paths {
        parts.push(format!("paths [{}]", p.join(", ")));
    }
    if let Some(t) = &key.tags {
        parts.push(format!("tags [{}]", t.join(", ")));
    }
    if parts.is_empty() {
        "snapshots:".to_string()
    } else {
        format!("snapshots for ({}):", parts.join(", "))
    }
}

fn table(list: &[(&SnapshotId, &Snapshot, &[String])], with_reasons: bool) -> String {
    let mut t = if with_reasons {
        Table::new(&["ID", "Time", "Host", "Tags", "Reasons", "Paths"])
    } else {
        Table::new(&["ID", "Time", "Host", "Tags", "Paths"])
    };
    for (id, s, reasons) in list {
        let lines = s.paths.len().max(if with_reasons { reasons.len() } else { 0 }).max(1);
        for i in 0..lines {
            let first = i == 0;
            let mut row = vec![
                if first { id.short() } else { String::new() },
                if first { output::local_time(s.time) } else { String::new() },
                if first { s.hostname.clone() } else { String::new() },
                if first { s.tags.join(",") } else { String::new() },
            ];
            if with_reasons {
                row.push(reasons.get(i).cloned().unwrap_or_default());
            }
            row.push(s.paths.get(i).cloned().unwrap_or_default());
            t.row(row);
        }
    }
    t.render()
}

/// Runs `arca forget`.
pub fn run(g: &GlobalOpts, a: &ForgetArgs) -> Result<i32> {
    let policy = a.policy();
    if a.snapshots.is_empty() && policy.is_empty() {
        bail!(
            "no policy was given and no snapshot ids: refusing to do anything (give snapshot ids or \
             --keep-* options, see `arca forget --help`)"
        );
    }
    if !a.snapshots.is_empty() && !policy.is_empty() {
        bail!("give either snapshot ids or --keep-* options, not both");
    }
    let mut opened = repo::open(g)?;
    {
        let repo = &opened.repo;
        let _lock = LockGuard::acquire(repo.store().clone(), "forget")?;
        let verb = if a.dry_run { "would remove" } else { "removed" };
        if !a.snapshots.is_empty() {
            let targets = super::snapshots_or_all(repo, &a.snapshots, &a.filter)?;
            let mut removed = Vec::new();
            for (id, s) in &targets {
                if !a.dry_run {
                    repo.delete_snapshot(id)?;
                }
                say!(g, "{verb} snapshot {}", id.short());
                removed.push(snapshot_json(id, s));
            }
            if g.json {
                print_json(&json!([{ "keep": [], "remove": removed, "reasons": [], "dry_run": a.dry_run }]))?;
            }
        } else {
            let snapshots = super::filtered_snapshots(repo, &a.filter)?;
            let by_id: HashMap<SnapshotId, &Snapshot> = snapshots.iter().map(|(id, s)| (*id, s)).collect();
            let groups = apply_policy(&snapshots, &policy, a.group_by);
            say!(g, "Applying Policy: {policy}");
            let mut json_groups: Vec<Value> = Vec::new();
            let mut removed_total = 0usize;
            for (key, decisions) in &groups {
                let keep: Vec<_> =
                    decisions.iter().filter(|d| d.keep).map(|d| (&d.id, by_id[&d.id], d.reasons.as_slice())).collect();
                let remove: Vec<_> =
                    decisions.iter().filter(|d| !d.keep).map(|d| (&d.id, by_id[&d.id], d.reasons.as_slice())).collect();
                if !g.json && !g.quiet {
                    println!("{}", group_title(key));
                    println!("keep {} snapshots:", keep.len());
                    print!("{}", table(&keep, true));
                    println!();
                    if !remove.is_empty() {
                        println!("remove {} snapshots:", remove.len());
                        print!("{}", table(&remove, false));
                        println!();
                    }
                }
                for (id, _, _) in &remove {
                    if !a.dry_run {
                        repo.delete_snapshot(id)?;
                    }
                    removed_total += 1;
                }
                json_groups.push(json!({
                    "host": key.hostname,
                    "paths": key.paths,
                    "tags": key.tags,
                    "keep": keep.iter().map(|(id, s, _)| snapshot_json(id, s)).collect::<Vec<_>>(),
                    "remove": remove.iter().map(|(id, s, _)| snapshot_json(id, s)).collect::<Vec<_>>(),
                    "reasons": keep.iter().map(|(id, s, r)| json!({
                        "snapshot": snapshot_json(id, s),
                        "matches": r,
                    })).collect::<Vec<_>>(),
                }));
            }
            if g.json {
                print_json(&json_groups)?;
            } else {
                say!(g, "{verb} {removed_total} snapshots");
            }
        }
    }
    if a.prune {
        super::prune::prune_and_report(g, &mut opened.repo, a.dry_run)?;
    }
    Ok(crate::exit::OK)
}
