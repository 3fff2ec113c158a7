//! Retention policies: which snapshots `forget` keeps (docs/format.md does not store policies; this is pure logic).
//!
//! The rules follow restic's `forget` (its `ApplyPolicy`), rule for rule:
//!
//! - Snapshots are first split into groups ([`GroupBy`], default host + paths); the policy is
//!   applied to each group on its own.
//! - Within a group, snapshots are ordered newest first (a stable sort: snapshots with the same
//!   time stay in input order).
//! - An empty policy ([`ForgetPolicy::is_empty`]) keeps everything, with the reason
//!   `"policy is empty"`.
//! - `keep_tags`: a snapshot that has every tag of at least one entry is kept (`"has tags [a, b]"`).
//!   Each entry is a comma-separated list (`"a,b"` means a and b); the empty tag `""` matches
//!   snapshots without any tags. Tag rules are not counted.
//! - `keep_within`: a snapshot strictly newer than the cutoff ([`KeepWithin::cutoff`] of the
//!   newest snapshot of the group that is not in the future) is kept (`"within 1m"`).
//! - Bucket rules `keep_last`, `keep_hourly`, `keep_daily`, `keep_weekly`, `keep_monthly`,
//!   `keep_yearly`: walking newest to oldest, a rule with count left keeps a snapshot whose bucket
//!   (unique per snapshot / hour / day / ISO year+week / month / year) differs from the bucket of
//!   the previous snapshot that rule kept, and spends one count. Reasons: `"last snapshot"`,
//!   `"hourly snapshot"`, `"daily snapshot"`, `"weekly snapshot"`, `"monthly snapshot"`,
//!   `"yearly snapshot"`.
//! - Like restic, the oldest snapshot of a group is also kept by every bucket rule that still has
//!   count left, even if its bucket was already used: this keeps the history as long as possible
//!   while the policy is not exhausted.
//!
//! One deliberate difference: restic computes buckets in the local time zone of the machine
//! running `forget`; arca computes them in **UTC**, so that the result does not depend on where
//! the command runs. Restic's `--keep-within-hourly` and friends and the "unlimited" count (-1)
//! are not supported.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, NaiveDate, TimeDelta, Timelike, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::id::SnapshotId;
use crate::snapshot::Snapshot;

/// A calendar span for `--keep-within`, restic style: `"2y5m7d3h"` is 2 years, 5 months, 7 days
/// and 3 hours.
///
/// Years, months and days are calendar units, subtracted from the date like Go's
/// `time.AddDate` (so one month before March 31 is "February 31", which normalises to March 2 or
/// 3); hours are then subtracted as exact hours.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KeepWithin {
    /// Calendar years (`y`).
    pub years: u32,
    /// Calendar months (`m`).
    pub months: u32,
    /// Calendar days (`d`).
    pub days: u32,
    /// Hours (`h`).
    pub hours: u32,
}

impl KeepWithin {
    /// Parses the restic duration syntax: numbers each followed by a unit `y`, `m`, `d` or `h`,
    /// in any order (`"1y"`, `"3m2d"`, `"2y5m7d3h"`). Surrounding white space is ignored; the
    /// empty string is the zero span. As in restic, a unit given twice takes the last value.
    /// Negative numbers are refused (restic refuses them for `--keep-within` too).
    pub fn parse(s: &str) -> Result<KeepWithin> {
        let mut out = KeepWithin::default();
        let mut rest = s.trim();
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(|b| b.is_ascii_digit()).count();
            if digits == 0 {
                return Err(Error::invalid(format!(
                    "invalid duration {s:?}: expected a number at {rest:?} (format: e.g. 2y5m7d3h)"
                )));
            }
            let num: u32 = rest[..digits].parse().map_err(|_| {
                Error::invalid(format!("invalid duration {s:?}: number {} is too large", &rest[..digits]))
            })?;
            rest = &rest[digits..];
            let unit = rest.chars().next().ok_or_else(|| {
                Error::invalid(format!("invalid duration {s:?}: no unit after number {num} (use y, m, d or h)"))
            })?;
            match unit {
                'y' => out.years = num,
                'm' => out.months = num,
                'd' => out.days = num,
                'h' => out.hours = num,
                other => {
                    return Err(Error::invalid(format!(
                        "invalid duration {s:?}: unknown unit {other:?} after number {num} (use y, m, d or h)"
                    )))
                }
            }
            rest = &rest[unit.len_utf8()..];
        }
        Ok(out)
    }

    /// Whether every part is zero (such a span keeps nothing and does not count as a policy).
    pub fn is_zero(&self) -> bool {
        self.years == 0 && self.months == 0 && self.days == 0 && self.hours == 0
    }

    /// The point in time this span before `latest`: years, months and days are subtracted from
    /// the calendar date (normalising overflowing days like Go's `AddDate`), keeping the time of
    /// day, then the hours are subtracted. Saturates at the earliest representable time.
    pub fn cutoff(&self, latest: DateTime<Utc>) -> DateTime<Utc> {
        self.try_cutoff(latest).unwrap_or(DateTime::<Utc>::MIN_UTC)
    }

    fn try_cutoff(&self, latest: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let year = i64::from(latest.year()) - i64::from(self.years);
        let month0 = i64::from(latest.month0()) - i64::from(self.months);
        let year = year + month0.div_euclid(12);
        let month = u32::try_from(month0.rem_euclid(12)).ok()? + 1;
        let first = NaiveDate::from_ymd_opt(i32::try_from(year).ok()?, month, 1)?;
        let day_offset = i64::from(latest.day()) - 1 - i64::from(self.days);
        let date = first.checked_add_signed(TimeDelta::try_days(day_offset)?)?;
        let at = date.and_time(latest.time()).and_utc();
        at.checked_sub_signed(TimeDelta::try_hours(i64::from(self.hours))?)
    }
}

impl fmt::Display for KeepWithin {
    /// The restic form, zero parts left out (`"1y2d"`); the zero span displays as the empty string.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, unit) in [(self.years, 'y'), (self.months, 'm'), (self.days, 'd'), (self.hours, 'h')] {
            if n != 0 {
                write!(f, "{n}{unit}")?;
            }
        }
        Ok(())
    }
}

impl FromStr for KeepWithin {
    type Err = Error;

    fn from_str(s: &str) -> Result<KeepWithin> {
        KeepWithin::parse(s)
    }
}

/// Which snapshots to keep. A snapshot is kept if any rule keeps it; a `None` or zero count and
/// a zero `keep_within` mean "rule not set".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForgetPolicy {
    /// Keep the `n` newest snapshots.
    pub keep_last: Option<u32>,
    /// Keep the newest snapshot of each of the `n` newest hours that have snapshots.
    pub keep_hourly: Option<u32>,
    /// Keep the newest snapshot of each of the `n` newest days that have snapshots.
    pub keep_daily: Option<u32>,
    /// Keep the newest snapshot of each of the `n` newest ISO weeks that have snapshots.
    pub keep_weekly: Option<u32>,
    /// Keep the newest snapshot of each of the `n` newest months that have snapshots.
    pub keep_monthly: Option<u32>,
    /// Keep the newest snapshot of each of the `n` newest years that have snapshots.
    pub keep_yearly: Option<u32>,
    /// Keep every snapshot newer than the group's newest snapshot minus this span.
    pub keep_within: Option<KeepWithin>,
    /// Keep every snapshot that has all tags of at least one entry; an entry is a
    /// comma-separated tag list (`"a,b"`: both a and b).
    pub keep_tags: Vec<String>,
}

impl ForgetPolicy {
    /// Whether no rule is set (restic's `Empty`): all counts unset or zero, no or a zero
    /// `keep_within`, no tags. An empty policy keeps everything.
    pub fn is_empty(&self) -> bool {
        self.counts().iter().all(|c| *c == 0)
            && self.keep_within.is_none_or(|w| w.is_zero())
            && self.keep_tags.is_empty()
    }

    /// Counts in bucket order: last, hourly, daily, weekly, monthly, yearly.
    fn counts(&self) -> [u32; 6] {
        [
            self.keep_last.unwrap_or(0),
            self.keep_hourly.unwrap_or(0),
            self.keep_daily.unwrap_or(0),
            self.keep_weekly.unwrap_or(0),
            self.keep_monthly.unwrap_or(0),
            self.keep_yearly.unwrap_or(0),
        ]
    }

    /// The tag entries split into lists (restic's `TagList`: split at commas, spaces trimmed).
    fn tag_lists(&self) -> Vec<Vec<String>> {
        self.keep_tags.iter().map(|entry| entry.split(',').map(|t| t.trim().to_string()).collect()).collect()
    }
}

impl fmt::Display for ForgetPolicy {
    /// A one-line description in restic's words, e.g.
    /// `keep 3 latest snapshots, 7 daily snapshots and all snapshots within 1m of the newest`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("keep all snapshots (empty policy)");
        }
        let names = ["latest", "hourly", "daily", "weekly", "monthly", "yearly"];
        let counts: Vec<String> =
            self.counts().iter().zip(names).filter(|(c, _)| **c > 0).map(|(c, name)| format!("{c} {name}")).collect();
        let mut parts = Vec::new();
        if !counts.is_empty() {
            parts.push(format!("{} snapshots", counts.join(", ")));
        }
        if !self.keep_tags.is_empty() {
            let lists: Vec<String> = self.tag_lists().iter().map(|l| format!("[{}]", l.join(", "))).collect();
            parts.push(format!("all snapshots with tags [{}]", lists.join(" ")));
        }
        if let Some(w) = self.keep_within.filter(|w| !w.is_zero()) {
            parts.push(format!("all snapshots within {w} of the newest"));
        }
        write!(f, "keep {}", parts.join(" and "))
    }
}

/// How snapshots are grouped before the policy is applied (restic's `--group-by`). The default
/// is restic's: host and paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GroupBy {
    /// Separate snapshots of different hosts.
    pub host: bool,
    /// Separate snapshots of different path sets (order of the paths does not matter).
    pub paths: bool,
    /// Separate snapshots of different tag sets (order of the tags does not matter).
    pub tags: bool,
}

impl Default for GroupBy {
    fn default() -> Self {
        GroupBy { host: true, paths: true, tags: false }
    }
}

impl GroupBy {
    /// No grouping: all snapshots form one group.
    pub const NONE: GroupBy = GroupBy { host: false, paths: false, tags: false };

    /// Parses restic's `--group-by` value: a comma-separated list of `host`/`hosts`,
    /// `path`/`paths`, `tag`/`tags`; empty items are ignored, so `""` means no grouping.
    pub fn parse(s: &str) -> Result<GroupBy> {
        let mut out = GroupBy::NONE;
        for item in s.split(',') {
            match item.trim() {
                "host" | "hosts" => out.host = true,
                "path" | "paths" => out.paths = true,
                "tag" | "tags" => out.tags = true,
                "" => {}
                other => {
                    return Err(Error::invalid(format!(
                        "unknown grouping option {other:?} (use host, paths and/or tags, comma-separated)"
                    )))
                }
            }
        }
        Ok(out)
    }

    /// The group `snapshot` falls into.
    pub fn key(&self, snapshot: &Snapshot) -> GroupKey {
        let sorted = |v: &[String]| {
            let mut v = v.to_vec();
            v.sort();
            v
        };
        GroupKey {
            hostname: self.host.then(|| snapshot.hostname.clone()),
            paths: self.paths.then(|| sorted(&snapshot.paths)),
            tags: self.tags.then(|| sorted(&snapshot.tags)),
        }
    }
}

impl FromStr for GroupBy {
    type Err = Error;

    fn from_str(s: &str) -> Result<GroupBy> {
        GroupBy::parse(s)
    }
}

/// What identifies a group: the fields grouped by, `None` for the others. Paths and tags are
/// sorted.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct GroupKey {
    /// The host name, when grouping by host.
    pub hostname: Option<String>,
    /// The sorted paths, when grouping by paths.
    pub paths: Option<Vec<String>>,
    /// The sorted tags, when grouping by tags.
    pub tags: Option<Vec<String>>,
}

/// The verdict on one snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// The snapshot.
    pub id: SnapshotId,
    /// Whether the policy keeps it (otherwise `forget` removes it).
    pub keep: bool,
    /// Why it is kept, one entry per matching rule, in the order tags, within, last, hourly,
    /// daily, weekly, monthly, yearly (e.g. `"last snapshot"`, `"daily snapshot"`,
    /// `"within 7d"`, `"has tags [a, b]"`); empty for removed snapshots.
    pub reasons: Vec<String>,
}

/// Groups `snapshots` by `group_by` and applies `policy` within each group, as restic's `forget`
/// does (see the module documentation for the rules; buckets are computed in UTC).
///
/// Returns the groups in [`GroupKey`] order, each with a decision for every one of its snapshots,
/// newest first. An empty policy keeps everything (the caller refuses to run with an empty policy
/// unless snapshot ids are given). The newest snapshot that `keep_within` measures from is the
/// newest one not in the future, judged by the system clock; see [`apply_policy_at`].
pub fn apply_policy(
    snapshots: &[(SnapshotId, Snapshot)],
    policy: &ForgetPolicy,
    group_by: GroupBy,
) -> Vec<(GroupKey, Vec<Decision>)> {
    apply_policy_at(snapshots, policy, group_by, Utc::now())
}

/// [`apply_policy`] with an explicit "now": snapshots dated at or after `now` are in the future
/// and are not used as the reference point of `keep_within` (they are still subject to every
/// rule). If every snapshot of a group is in the future, `keep_within` keeps the whole group.
pub fn apply_policy_at(
    snapshots: &[(SnapshotId, Snapshot)],
    policy: &ForgetPolicy,
    group_by: GroupBy,
    now: DateTime<Utc>,
) -> Vec<(GroupKey, Vec<Decision>)> {
    let mut groups: BTreeMap<GroupKey, Vec<(SnapshotId, &Snapshot)>> = BTreeMap::new();
    for (id, snap) in snapshots {
        groups.entry(group_by.key(snap)).or_default().push((*id, snap));
    }
    groups
        .into_iter()
        .map(|(key, mut list)| {
            // Stable: snapshots with equal times keep their input order.
            list.sort_by_key(|s| std::cmp::Reverse(s.1.time));
            (key, apply_to_group(&list, policy, now))
        })
        .collect()
}

/// The bucket of a snapshot under rule `rule` (bucket order of [`ForgetPolicy::counts`]); `nr`
/// is the snapshot's position in the group, which makes every snapshot its own bucket for
/// `keep_last`.
fn bucket(rule: usize, time: DateTime<Utc>, nr: usize) -> i64 {
    let (y, m, d, h) = (i64::from(time.year()), i64::from(time.month()), i64::from(time.day()), i64::from(time.hour()));
    match rule {
        0 => nr as i64,
        1 => ((y * 100 + m) * 100 + d) * 100 + h,
        2 => (y * 100 + m) * 100 + d,
        3 => {
            let week = time.iso_week();
            i64::from(week.year()) * 100 + i64::from(week.week())
        }
        4 => y * 100 + m,
        _ => y,
    }
}

const BUCKET_REASONS: [&str; 6] =
    ["last snapshot", "hourly snapshot", "daily snapshot", "weekly snapshot", "monthly snapshot", "yearly snapshot"];

/// Applies the policy to one group, sorted newest first.
fn apply_to_group(list: &[(SnapshotId, &Snapshot)], policy: &ForgetPolicy, now: DateTime<Utc>) -> Vec<Decision> {
    if policy.is_empty() {
        return list
            .iter()
            .map(|(id, _)| Decision { id: *id, keep: true, reasons: vec!["policy is empty".to_string()] })
            .collect();
    }

    let tag_lists = policy.tag_lists();
    let within = policy.keep_within.filter(|w| !w.is_zero());
    // The reference point of keep_within: the newest snapshot that is not in the future.
    // `None` (all in the future) puts the cutoff before every snapshot.
    let cutoff =
        within.map(|w| list.iter().map(|(_, s)| s.time).filter(|t| *t < now).max().map(|latest| w.cutoff(latest)));

    let mut counts = policy.counts();
    let mut last: [Option<i64>; 6] = [None; 6];
    let oldest = list.len().saturating_sub(1);

    list.iter()
        .enumerate()
        .map(|(nr, (id, snap))| {
            let mut reasons = Vec::new();

            for tags in &tag_lists {
                if has_tags(snap, tags) {
                    reasons.push(format!("has tags [{}]", tags.join(", ")));
                }
            }

            if let (Some(w), Some(cutoff)) = (within, cutoff) {
                if cutoff.is_none_or(|c| snap.time > c) {
                    reasons.push(format!("within {w}"));
                }
            }

            for (rule, (count, last)) in counts.iter_mut().zip(last.iter_mut()).enumerate() {
                if *count == 0 {
                    continue;
                }
                let value = bucket(rule, snap.time, nr);
                // Like restic, the oldest snapshot is kept by every rule with count left.
                if *last != Some(value) || nr == oldest {
                    *last = Some(value);
                    *count -= 1;
                    reasons.push(BUCKET_REASONS[rule].to_string());
                }
            }

            Decision { id: *id, keep: !reasons.is_empty(), reasons }
        })
        .collect()
}

/// Restic's `HasTags`: the snapshot has every tag of `tags`; the empty tag matches a snapshot
/// without tags.
fn has_tags(snap: &Snapshot, tags: &[String]) -> bool {
    for tag in tags {
        if tag.is_empty() && snap.tags.is_empty() {
            return true;
        }
        if !snap.tags.contains(tag) {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::BlobId;
    use chrono::NaiveDateTime;

    /// "YYYY-MM-DD HH:MM" in UTC.
    fn t(s: &str) -> DateTime<Utc> {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap().and_utc()
    }

    fn fmt_time(time: DateTime<Utc>) -> String {
        time.format("%Y-%m-%d %H:%M").to_string()
    }

    /// A deterministic id from a snapshot's host, paths, tags and time (unique in every test).
    fn id_for(snap: &Snapshot) -> SnapshotId {
        let h = blake3::hash(
            format!("{}|{:?}|{:?}|{}", snap.hostname, snap.paths, snap.tags, snap.time.timestamp()).as_bytes(),
        );
        SnapshotId(*h.as_bytes())
    }

    fn snap(time: DateTime<Utc>, host: &str, paths: &[&str], tags: &[&str]) -> (SnapshotId, Snapshot) {
        let s = Snapshot {
            time,
            tree: BlobId::default(),
            paths: paths.iter().map(|p| p.to_string()).collect(),
            hostname: host.to_string(),
            username: "user".to_string(),
            tags: tags.iter().map(|p| p.to_string()).collect(),
            parent: None,
            summary: Default::default(),
            program_version: String::new(),
        };
        (id_for(&s), s)
    }

    /// Hourly snapshots from `from` to `to` inclusive, host "h", path "/data", no tags.
    fn hourly(from: &str, to: &str) -> Vec<(SnapshotId, Snapshot)> {
        let (mut at, end) = (t(from), t(to));
        let mut out = Vec::new();
        while at <= end {
            out.push(snap(at, "h", &["/data"], &[]));
            at += TimeDelta::hours(1);
        }
        out
    }

    /// The long series most tests use: every hour from 2019-11-15 00:00 to 2021-02-10 23:00.
    fn series() -> Vec<(SnapshotId, Snapshot)> {
        hourly("2019-11-15 00:00", "2021-02-10 23:00")
    }

    fn now() -> DateTime<Utc> {
        t("2030-01-01 00:00")
    }

    fn run(snaps: &[(SnapshotId, Snapshot)], policy: &ForgetPolicy) -> Vec<Decision> {
        let mut groups = apply_policy_at(snaps, policy, GroupBy::default(), now());
        assert_eq!(groups.len(), 1, "expected a single group");
        let (_, decisions) = groups.pop().unwrap();
        assert_eq!(decisions.len(), snaps.len(), "every snapshot gets a decision");
        decisions
    }

    fn kept(decisions: &[Decision]) -> Vec<SnapshotId> {
        decisions.iter().filter(|d| d.keep).map(|d| d.id).collect()
    }

    /// Asserts that exactly the snapshots at `times` are kept, in this (newest first) order,
    /// comparing ids; prints times on failure.
    fn assert_kept(snaps: &[(SnapshotId, Snapshot)], decisions: &[Decision], times: &[&str]) {
        let by_id: std::collections::HashMap<SnapshotId, DateTime<Utc>> =
            snaps.iter().map(|(id, s)| (*id, s.time)).collect();
        let expected: Vec<SnapshotId> = times
            .iter()
            .map(|tm| {
                let at = t(tm);
                let matches: Vec<_> = snaps.iter().filter(|(_, s)| s.time == at).collect();
                assert_eq!(matches.len(), 1, "test bug: {tm} must name exactly one snapshot");
                matches[0].0
            })
            .collect();
        let actual = kept(decisions);
        if actual != expected {
            let actual_times: Vec<String> = actual.iter().map(|id| fmt_time(by_id[id])).collect();
            panic!("kept snapshots differ\n  expected: {times:?}\n  actual:   {actual_times:?}");
        }
        // Removed snapshots carry no reasons; kept ones at least one.
        for d in decisions {
            assert_eq!(d.keep, !d.reasons.is_empty(), "{d:?}");
        }
    }

    fn reasons_of<'a>(snaps: &[(SnapshotId, Snapshot)], decisions: &'a [Decision], time: &str) -> &'a [String] {
        let id = snaps.iter().find(|(_, s)| s.time == t(time)).unwrap().0;
        &decisions.iter().find(|d| d.id == id).unwrap().reasons
    }

    // ---- KeepWithin ----

    #[test]
    fn keep_within_parses_restic_syntax() {
        let kw = |y, m, d, h| KeepWithin { years: y, months: m, days: d, hours: h };
        assert_eq!(KeepWithin::parse("2y5m7d3h").unwrap(), kw(2, 5, 7, 3));
        assert_eq!(KeepWithin::parse("1m").unwrap(), kw(0, 1, 0, 0));
        assert_eq!(KeepWithin::parse(" 3h1y ").unwrap(), kw(1, 0, 0, 3));
        assert_eq!(KeepWithin::parse("1d2d").unwrap(), kw(0, 0, 2, 0), "last value wins, as in restic");
        assert_eq!(KeepWithin::parse("").unwrap(), KeepWithin::default());
        assert_eq!("14d".parse::<KeepWithin>().unwrap(), kw(0, 0, 14, 0));
        for bad in ["5", "d", "5x", "-1d", "1d 2h", "99999999999d", "1.5d", "1M"] {
            let err = KeepWithin::parse(bad).unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::InvalidInput, "{bad}");
        }
    }

    #[test]
    fn keep_within_displays_without_zero_parts() {
        assert_eq!(KeepWithin::parse("2y5m7d3h").unwrap().to_string(), "2y5m7d3h");
        assert_eq!(KeepWithin::parse("3h1y").unwrap().to_string(), "1y3h");
        assert_eq!(KeepWithin::parse("0y7d").unwrap().to_string(), "7d");
        assert!(KeepWithin::parse("0d").unwrap().is_zero());
    }

    #[test]
    fn keep_within_cutoff_is_calendar_arithmetic() {
        let cut = |s: &str, latest: &str| fmt_time(KeepWithin::parse(s).unwrap().cutoff(t(latest)));
        // A calendar month, not 30 days.
        assert_eq!(cut("1m", "2021-02-10 23:00"), "2021-01-10 23:00");
        assert_eq!(cut("1m", "2021-03-10 12:00"), "2021-02-10 12:00");
        // "February 31" normalises like Go's AddDate.
        assert_eq!(cut("1m", "2021-03-31 12:00"), "2021-03-03 12:00");
        assert_eq!(cut("1m", "2020-03-31 12:00"), "2020-03-02 12:00");
        // Months cross years.
        assert_eq!(cut("3m", "2021-02-15 06:00"), "2020-11-15 06:00");
        assert_eq!(cut("14m", "2021-02-15 06:00"), "2019-12-15 06:00");
        // A leap day one year back.
        assert_eq!(cut("1y", "2020-02-29 08:00"), "2019-03-01 08:00");
        // Days cross month and year boundaries.
        assert_eq!(cut("7d", "2021-01-03 00:30"), "2020-12-27 00:30");
        // Hours are subtracted last, as exact hours.
        assert_eq!(cut("3h", "2021-01-01 01:00"), "2020-12-31 22:00");
        assert_eq!(cut("2y5m7d3h", "2021-02-10 02:00"), "2018-09-02 23:00");
        // Zero span: the reference time itself.
        assert_eq!(cut("", "2021-02-10 02:00"), "2021-02-10 02:00");
        // Absurd spans saturate instead of panicking.
        let huge = KeepWithin { years: u32::MAX, months: u32::MAX, days: u32::MAX, hours: u32::MAX };
        assert_eq!(huge.cutoff(t("2021-02-10 02:00")), DateTime::<Utc>::MIN_UTC);
    }

    // ---- policy basics ----

    #[test]
    fn is_empty_follows_restic() {
        assert!(ForgetPolicy::default().is_empty());
        assert!(ForgetPolicy { keep_last: Some(0), keep_daily: Some(0), ..Default::default() }.is_empty());
        assert!(ForgetPolicy { keep_within: Some(KeepWithin::default()), ..Default::default() }.is_empty());
        assert!(!ForgetPolicy { keep_yearly: Some(1), ..Default::default() }.is_empty());
        assert!(!ForgetPolicy { keep_within: Some(KeepWithin::parse("1h").unwrap()), ..Default::default() }.is_empty());
        assert!(!ForgetPolicy { keep_tags: vec!["a".into()], ..Default::default() }.is_empty());
    }

    #[test]
    fn empty_policy_keeps_everything() {
        let snaps = hourly("2021-02-10 20:00", "2021-02-10 23:00");
        let decisions = run(&snaps, &ForgetPolicy::default());
        assert_kept(
            &snaps,
            &decisions,
            &["2021-02-10 23:00", "2021-02-10 22:00", "2021-02-10 21:00", "2021-02-10 20:00"],
        );
        assert!(decisions.iter().all(|d| d.reasons == ["policy is empty"]));
    }

    #[test]
    fn policy_display() {
        let p = ForgetPolicy {
            keep_last: Some(3),
            keep_daily: Some(7),
            keep_within: Some(KeepWithin::parse("1m").unwrap()),
            keep_tags: vec!["a, b".into(), "c".into()],
            ..Default::default()
        };
        assert_eq!(
            p.to_string(),
            "keep 3 latest, 7 daily snapshots and all snapshots with tags [[a, b] [c]] and all snapshots within 1m of the newest"
        );
        assert_eq!(ForgetPolicy::default().to_string(), "keep all snapshots (empty policy)");
    }

    #[test]
    fn input_order_does_not_matter_and_output_is_newest_first() {
        let mut snaps = hourly("2021-02-10 18:00", "2021-02-10 23:00");
        snaps.reverse();
        snaps.swap(1, 4);
        let decisions = run(&snaps, &ForgetPolicy { keep_last: Some(2), ..Default::default() });
        assert_kept(&snaps, &decisions, &["2021-02-10 23:00", "2021-02-10 22:00"]);
        let by_id: std::collections::HashMap<_, _> = snaps.iter().map(|(id, s)| (*id, s.time)).collect();
        let times: Vec<_> = decisions.iter().map(|d| by_id[&d.id]).collect();
        let mut sorted = times.clone();
        sorted.sort_by(|a, b| b.cmp(a));
        assert_eq!(times, sorted);
    }

    // ---- bucket rules ----

    #[test]
    fn keep_last() {
        let snaps = series();
        let decisions = run(&snaps, &ForgetPolicy { keep_last: Some(3), ..Default::default() });
        assert_kept(&snaps, &decisions, &["2021-02-10 23:00", "2021-02-10 22:00", "2021-02-10 21:00"]);
        assert!(kept(&decisions).len() == 3);
        assert_eq!(reasons_of(&snaps, &decisions, "2021-02-10 22:00"), ["last snapshot"]);
    }

    #[test]
    fn keep_last_ties_keep_input_order() {
        let a = snap(t("2021-02-10 12:00"), "h", &["/data"], &["first"]);
        let b = snap(t("2021-02-10 12:00"), "h", &["/data"], &["second"]);
        let c = snap(t("2021-02-10 11:00"), "h", &["/data"], &[]);
        let snaps = vec![c.clone(), a.clone(), b.clone()];
        let decisions = run(&snaps, &ForgetPolicy { keep_last: Some(1), ..Default::default() });
        assert_eq!(kept(&decisions), vec![a.0]);
        let snaps = vec![b.clone(), c, a];
        let decisions = run(&snaps, &ForgetPolicy { keep_last: Some(1), ..Default::default() });
        assert_eq!(kept(&decisions), vec![b.0]);
    }

    #[test]
    fn keep_hourly_keeps_newest_of_each_hour() {
        // Every 20 minutes from 09:00 to 12:40.
        let mut snaps = Vec::new();
        let mut at = t("2021-02-10 09:00");
        while at <= t("2021-02-10 12:40") {
            snaps.push(snap(at, "h", &["/data"], &[]));
            at += TimeDelta::minutes(20);
        }
        let decisions = run(&snaps, &ForgetPolicy { keep_hourly: Some(3), ..Default::default() });
        assert_kept(&snaps, &decisions, &["2021-02-10 12:40", "2021-02-10 11:40", "2021-02-10 10:40"]);
        assert_eq!(reasons_of(&snaps, &decisions, "2021-02-10 11:40"), ["hourly snapshot"]);
    }

    #[test]
    fn keep_daily_keeps_last_of_each_of_the_last_days() {
        let snaps = series();
        let decisions = run(&snaps, &ForgetPolicy { keep_daily: Some(7), ..Default::default() });
        assert_kept(
            &snaps,
            &decisions,
            &[
                "2021-02-10 23:00",
                "2021-02-09 23:00",
                "2021-02-08 23:00",
                "2021-02-07 23:00",
                "2021-02-06 23:00",
                "2021-02-05 23:00",
                "2021-02-04 23:00",
            ],
        );
        assert_eq!(reasons_of(&snaps, &decisions, "2021-02-05 23:00"), ["daily snapshot"]);
    }

    #[test]
    fn keep_daily_skips_days_without_snapshots() {
        let mut snaps = hourly("2021-02-01 00:00", "2021-02-10 23:00");
        // No snapshots on Feb 8 and Feb 9.
        snaps.retain(|(_, s)| !(s.time >= t("2021-02-08 00:00") && s.time < t("2021-02-10 00:00")));
        let decisions = run(&snaps, &ForgetPolicy { keep_daily: Some(3), ..Default::default() });
        assert_kept(&snaps, &decisions, &["2021-02-10 23:00", "2021-02-07 23:00", "2021-02-06 23:00"]);
    }

    #[test]
    fn keep_weekly_uses_iso_weeks_across_the_year_boundary() {
        let snaps = series();
        let decisions = run(&snaps, &ForgetPolicy { keep_weekly: Some(8), ..Default::default() });
        // 2021-02-10 is a Wednesday (2021-W06). 2020-12-28 .. 2021-01-03 is ISO week 2020-W53,
        // so its newest snapshot is on January 3 and December 31 is not kept.
        assert_kept(
            &snaps,
            &decisions,
            &[
                "2021-02-10 23:00", // 2021-W06
                "2021-02-07 23:00", // 2021-W05
                "2021-01-31 23:00", // 2021-W04
                "2021-01-24 23:00", // 2021-W03
                "2021-01-17 23:00", // 2021-W02
                "2021-01-10 23:00", // 2021-W01
                "2021-01-03 23:00", // 2020-W53
                "2020-12-27 23:00", // 2020-W52
            ],
        );
    }

    #[test]
    fn keep_weekly_week_one_starting_in_december() {
        // 2019-12-30 (Monday) .. 2020-01-05 is ISO week 2020-W01; 2019-12-23 .. 29 is 2019-W52.
        let mut snaps = Vec::new();
        let mut at = t("2019-12-20 12:00");
        while at <= t("2020-01-07 12:00") {
            snaps.push(snap(at, "h", &["/data"], &[]));
            at += TimeDelta::days(1);
        }
        let decisions = run(&snaps, &ForgetPolicy { keep_weekly: Some(3), ..Default::default() });
        assert_kept(&snaps, &decisions, &["2020-01-07 12:00", "2020-01-05 12:00", "2019-12-29 12:00"]);
    }

    #[test]
    fn keep_monthly() {
        let snaps = series();
        let decisions = run(&snaps, &ForgetPolicy { keep_monthly: Some(4), ..Default::default() });
        assert_kept(
            &snaps,
            &decisions,
            &["2021-02-10 23:00", "2021-01-31 23:00", "2020-12-31 23:00", "2020-11-30 23:00"],
        );
        assert_eq!(reasons_of(&snaps, &decisions, "2020-12-31 23:00"), ["monthly snapshot"]);
    }

    #[test]
    fn keep_yearly() {
        let snaps = series();
        let decisions = run(&snaps, &ForgetPolicy { keep_yearly: Some(3), ..Default::default() });
        assert_kept(&snaps, &decisions, &["2021-02-10 23:00", "2020-12-31 23:00", "2019-12-31 23:00"]);
    }

    #[test]
    fn oldest_snapshot_is_kept_while_counts_are_left() {
        // Only three years exist; with counts left over, restic also keeps the oldest snapshot.
        let snaps = series();
        let decisions = run(&snaps, &ForgetPolicy { keep_yearly: Some(5), ..Default::default() });
        assert_kept(
            &snaps,
            &decisions,
            &["2021-02-10 23:00", "2020-12-31 23:00", "2019-12-31 23:00", "2019-11-15 00:00"],
        );
        assert_eq!(reasons_of(&snaps, &decisions, "2019-11-15 00:00"), ["yearly snapshot"]);

        // Counts used up exactly: the oldest is not kept.
        let snaps = hourly("2021-02-10 00:00", "2021-02-10 05:00");
        let decisions = run(&snaps, &ForgetPolicy { keep_daily: Some(1), ..Default::default() });
        assert_kept(&snaps, &decisions, &["2021-02-10 05:00"]);

        // One count left when the oldest comes up: it is kept although its day is already kept.
        let decisions = run(&snaps, &ForgetPolicy { keep_daily: Some(2), ..Default::default() });
        assert_kept(&snaps, &decisions, &["2021-02-10 05:00", "2021-02-10 00:00"]);

        // keep-last larger than the group keeps everything.
        let decisions = run(&snaps, &ForgetPolicy { keep_last: Some(10), ..Default::default() });
        assert_eq!(kept(&decisions).len(), snaps.len());
    }

    // ---- keep-within ----

    #[test]
    fn keep_within_one_calendar_month() {
        let snaps = series();
        let policy = ForgetPolicy { keep_within: Some(KeepWithin::parse("1m").unwrap()), ..Default::default() };
        let decisions = run(&snaps, &policy);
        // Newest: 2021-02-10 23:00; one calendar month back: 2021-01-10 23:00 (31 days, not 30),
        // and restic keeps snapshots strictly after the cutoff.
        let expected: Vec<SnapshotId> =
            snaps.iter().rev().filter(|(_, s)| s.time > t("2021-01-10 23:00")).map(|(id, _)| *id).collect();
        assert_eq!(expected.len(), 31 * 24);
        assert_eq!(kept(&decisions), expected);
        assert_eq!(reasons_of(&snaps, &decisions, "2021-01-11 00:00"), ["within 1m"]);
        assert!(reasons_of(&snaps, &decisions, "2021-01-10 23:00").is_empty());
        // A 30-day approximation would have dropped January 11.
        assert_eq!(reasons_of(&snaps, &decisions, "2021-01-11 12:00"), ["within 1m"]);
    }

    #[test]
    fn keep_within_measures_from_the_newest_snapshot_not_in_the_future() {
        let snaps = hourly("2021-02-08 00:00", "2021-02-10 23:00");
        let policy = ForgetPolicy { keep_within: Some(KeepWithin::parse("1d").unwrap()), ..Default::default() };
        // "Now" is 2021-02-10 12:00: the newest past snapshot is 11:00, the cutoff 2021-02-09 11:00.
        let mut groups = apply_policy_at(&snaps, &policy, GroupBy::default(), t("2021-02-10 12:00"));
        let decisions = groups.pop().unwrap().1;
        let expected: Vec<SnapshotId> =
            snaps.iter().rev().filter(|(_, s)| s.time > t("2021-02-09 11:00")).map(|(id, _)| *id).collect();
        assert_eq!(expected.len(), 36);
        assert_eq!(kept(&decisions), expected);

        // Everything in the future: keep-within keeps the whole group.
        let mut groups = apply_policy_at(&snaps, &policy, GroupBy::default(), t("2000-01-01 00:00"));
        assert_eq!(kept(&groups.pop().unwrap().1).len(), snaps.len());

        // The public entry point uses the system clock; this series is in the past.
        let mut groups = apply_policy(&snaps, &policy, GroupBy::default());
        let decisions = groups.pop().unwrap().1;
        let expected: Vec<SnapshotId> =
            snaps.iter().rev().filter(|(_, s)| s.time > t("2021-02-09 23:00")).map(|(id, _)| *id).collect();
        assert_eq!(kept(&decisions), expected);
    }

    // ---- keep-tag ----

    #[test]
    fn keep_tags() {
        let snaps = vec![
            snap(t("2021-02-10 06:00"), "h", &["/data"], &["a"]),
            snap(t("2021-02-10 05:00"), "h", &["/data"], &["b", "a"]),
            snap(t("2021-02-10 04:00"), "h", &["/data"], &["c"]),
            snap(t("2021-02-10 03:00"), "h", &["/data"], &["b"]),
            snap(t("2021-02-10 02:00"), "h", &["/data"], &["a", "b", "c"]),
            snap(t("2021-02-10 01:00"), "h", &["/data"], &[]),
        ];
        // "a,b" needs both a and b; "c" alone is enough.
        let policy = ForgetPolicy { keep_tags: vec!["a,b".into(), "c".into()], ..Default::default() };
        let decisions = run(&snaps, &policy);
        assert_kept(&snaps, &decisions, &["2021-02-10 05:00", "2021-02-10 04:00", "2021-02-10 02:00"]);
        assert_eq!(reasons_of(&snaps, &decisions, "2021-02-10 05:00"), ["has tags [a, b]"]);
        assert_eq!(reasons_of(&snaps, &decisions, "2021-02-10 02:00"), ["has tags [a, b]", "has tags [c]"]);

        // Spaces around tags are trimmed; the empty tag matches untagged snapshots (restic).
        let policy = ForgetPolicy { keep_tags: vec![" b , a ".into(), "".into()], ..Default::default() };
        let decisions = run(&snaps, &policy);
        assert_kept(&snaps, &decisions, &["2021-02-10 05:00", "2021-02-10 02:00", "2021-02-10 01:00"]);
        assert_eq!(reasons_of(&snaps, &decisions, "2021-02-10 01:00"), ["has tags []"]);
    }

    // ---- combined ----

    #[test]
    fn combined_rules_list_every_reason() {
        let mut snaps = series();
        // Tag one old snapshot.
        let idx = snaps.iter().position(|(_, s)| s.time == t("2020-06-15 12:00")).unwrap();
        let (_, mut s) = snaps[idx].clone();
        s.tags = vec!["important".into()];
        snaps[idx] = (id_for(&s), s);

        let policy = ForgetPolicy {
            keep_last: Some(2),
            keep_daily: Some(3),
            keep_weekly: Some(2),
            keep_monthly: Some(3),
            keep_yearly: Some(2),
            keep_within: Some(KeepWithin::parse("3h").unwrap()),
            keep_tags: vec!["important".into()],
            ..Default::default()
        };
        let decisions = run(&snaps, &policy);
        assert_kept(
            &snaps,
            &decisions,
            &[
                "2021-02-10 23:00", // within, last, daily, weekly, monthly, yearly
                "2021-02-10 22:00", // within, last
                "2021-02-10 21:00", // within
                "2021-02-09 23:00", // daily
                "2021-02-08 23:00", // daily
                "2021-02-07 23:00", // weekly (2021-W05)
                "2021-01-31 23:00", // monthly
                "2020-12-31 23:00", // monthly, yearly
                "2020-06-15 12:00", // tag
            ],
        );
        let r = |time| reasons_of(&snaps, &decisions, time).to_vec();
        assert_eq!(
            r("2021-02-10 23:00"),
            ["within 3h", "last snapshot", "daily snapshot", "weekly snapshot", "monthly snapshot", "yearly snapshot"]
        );
        assert_eq!(r("2021-02-10 22:00"), ["within 3h", "last snapshot"]);
        assert_eq!(r("2021-02-10 21:00"), ["within 3h"]);
        assert!(r("2021-02-10 20:00").is_empty());
        assert_eq!(r("2021-02-09 23:00"), ["daily snapshot"]);
        assert_eq!(r("2021-02-07 23:00"), ["weekly snapshot"]);
        assert_eq!(r("2021-01-31 23:00"), ["monthly snapshot"]);
        assert_eq!(r("2020-12-31 23:00"), ["monthly snapshot", "yearly snapshot"]);
        assert_eq!(r("2020-06-15 12:00"), ["has tags [important]"]);
    }

    // ---- grouping ----

    #[test]
    fn grouping_by_host_and_paths_keeps_groups_apart() {
        let mut snaps = Vec::new();
        for (host, paths) in
            [("alpha", vec!["/home", "/etc"]), ("alpha", vec!["/srv"]), ("beta", vec!["/home", "/etc"])]
        {
            let mut at = t("2021-02-08 00:00");
            while at <= t("2021-02-10 23:00") {
                snaps.push(snap(at, host, &paths, &[]));
                at += TimeDelta::hours(6);
            }
        }
        // The same paths in another order belong to the same group.
        let reordered = snap(t("2021-02-11 01:00"), "alpha", &["/etc", "/home"], &["x"]);
        snaps.push(reordered.clone());
        let at = |host: &str, paths: &[&str], time: &str| {
            let paths: Vec<String> = paths.iter().map(|s| s.to_string()).collect();
            let found = snaps.iter().find(|(_, s)| s.hostname == host && s.paths == paths && s.time == t(time));
            found.unwrap().0
        };

        let policy = ForgetPolicy { keep_last: Some(1), keep_daily: Some(2), ..Default::default() };
        let groups = apply_policy_at(&snaps, &policy, GroupBy::default(), now());
        let keys: Vec<GroupKey> = groups.iter().map(|(k, _)| k.clone()).collect();
        let key = |host: &str, paths: &[&str]| GroupKey {
            hostname: Some(host.to_string()),
            paths: Some(paths.iter().map(|s| s.to_string()).collect()),
            tags: None,
        };
        assert_eq!(
            keys,
            vec![key("alpha", &["/etc", "/home"]), key("alpha", &["/srv"]), key("beta", &["/etc", "/home"])]
        );
        assert_eq!(kept(&groups[0].1), vec![reordered.0, at("alpha", &["/home", "/etc"], "2021-02-10 18:00")]);
        assert_eq!(groups[0].1.len(), 13);
        assert_eq!(
            kept(&groups[1].1),
            vec![at("alpha", &["/srv"], "2021-02-10 18:00"), at("alpha", &["/srv"], "2021-02-09 18:00")]
        );
        assert_eq!(
            kept(&groups[2].1),
            vec![
                at("beta", &["/home", "/etc"], "2021-02-10 18:00"),
                at("beta", &["/home", "/etc"], "2021-02-09 18:00")
            ]
        );

        // Grouped by host only: alpha's two path sets are one group.
        let groups = apply_policy_at(&snaps, &policy, GroupBy { host: true, paths: false, tags: false }, now());
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].0, GroupKey { hostname: Some("alpha".into()), paths: None, tags: None });
        assert_eq!(groups[0].1.len(), 25);
        // Two snapshots at 2021-02-10 18:00 in the alpha group: the first in input order wins.
        assert_eq!(kept(&groups[0].1), vec![reordered.0, at("alpha", &["/home", "/etc"], "2021-02-10 18:00")]);

        // No grouping: one group, keys all None.
        let groups = apply_policy_at(&snaps, &policy, GroupBy::NONE, now());
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].0, GroupKey { hostname: None, paths: None, tags: None });
        assert_eq!(groups[0].1.len(), snaps.len());
    }

    #[test]
    fn grouping_by_tags_sorts_tags() {
        let snaps = vec![
            snap(t("2021-02-10 03:00"), "h", &["/data"], &["b", "a"]),
            snap(t("2021-02-10 02:00"), "h", &["/data"], &["a", "b"]),
            snap(t("2021-02-10 01:00"), "h", &["/data"], &[]),
        ];
        let policy = ForgetPolicy { keep_last: Some(1), ..Default::default() };
        let groups = apply_policy_at(&snaps, &policy, GroupBy::parse("tags").unwrap(), now());
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].0, GroupKey { hostname: None, paths: None, tags: Some(vec![]) });
        assert_eq!(kept(&groups[0].1), vec![snaps[2].0]);
        assert_eq!(groups[1].0, GroupKey { hostname: None, paths: None, tags: Some(vec!["a".into(), "b".into()]) });
        assert_eq!(kept(&groups[1].1), vec![snaps[0].0]);
        assert_eq!(groups[1].1.len(), 2);
    }

    #[test]
    fn group_by_parses_restic_options() {
        assert_eq!(GroupBy::parse("host,paths").unwrap(), GroupBy::default());
        assert_eq!(GroupBy::parse("hosts,path").unwrap(), GroupBy::default());
        assert_eq!(GroupBy::parse("").unwrap(), GroupBy::NONE);
        assert_eq!("tag,host".parse::<GroupBy>().unwrap(), GroupBy { host: true, paths: false, tags: true });
        assert_eq!(GroupBy::parse("bogus").unwrap_err().kind(), crate::ErrorKind::InvalidInput);
    }

    #[test]
    fn policy_round_trips_through_serde() {
        let p = ForgetPolicy {
            keep_daily: Some(7),
            keep_within: Some(KeepWithin::parse("1y2m").unwrap()),
            keep_tags: vec!["a,b".into()],
            ..Default::default()
        };
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<ForgetPolicy>(&json).unwrap(), p);
    }
}
