//! Metering export: per tenant, repository and day, what was stored and what crossed the wire.
//!
//! A day with no activity still has stored bytes: the export carries the last known figures
//! forward, so every day in the range has a row for every repository that existed then, and a
//! billing system can average them.

use std::collections::HashMap;

use chrono::NaiveDate;
use serde::Serialize;

use super::{col, Db, DbError, Result};

/// One repository's figures for one day (UTC).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsageRow {
    /// `YYYY-MM-DD`.
    pub day: String,
    /// Tenant name.
    pub tenant: String,
    /// Repository name.
    pub repository: String,
    /// Bytes stored at the end of the day (or now, for today).
    pub stored_bytes: i64,
    /// The most bytes stored at any moment of the day.
    pub stored_peak_bytes: i64,
    /// Bytes the repository's snapshots represent at the end of the day (what the customer
    /// protects, before deduplication and compression).
    pub logical_bytes: i64,
    /// Objects stored at the end of the day.
    pub object_count: i64,
    /// Bytes received in uploads that day.
    pub ingress_bytes: i64,
    /// Bytes sent in downloads that day.
    pub egress_bytes: i64,
    /// Snapshots added that day.
    pub snapshots: i64,
}

/// Longest range one export covers.
pub const MAX_DAYS: i64 = 400;

/// The CSV header of [`to_csv`].
pub const CSV_HEADER: &str =
    "day,tenant,repository,stored_bytes,stored_peak_bytes,logical_bytes,object_count,ingress_bytes,egress_bytes,snapshots";

/// Rows as CSV (names are `[a-z0-9-]`, so nothing needs quoting).
pub fn to_csv(rows: &[UsageRow]) -> String {
    let mut out = String::with_capacity(64 * (rows.len() + 1));
    out.push_str(CSV_HEADER);
    out.push('\n');
    for r in rows {
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{}\n",
            r.day,
            r.tenant,
            r.repository,
            r.stored_bytes,
            r.stored_peak_bytes,
            r.logical_bytes,
            r.object_count,
            r.ingress_bytes,
            r.egress_bytes,
            r.snapshots
        ));
    }
    out
}

/// One day's figures of one repository.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DayFigures {
    /// Bytes stored at the end of the day.
    pub stored: i64,
    /// The most stored at any moment of the day.
    pub peak: i64,
    /// Objects at the end of the day.
    pub objects: i64,
    /// Bytes the snapshots represent at the end of the day.
    pub logical: i64,
    /// Bytes received.
    pub ingress: i64,
    /// Bytes sent.
    pub egress: i64,
    /// Snapshots added.
    pub snapshots: i64,
}

/// One repository's metering over a range, as stored: the figures it carried into the range
/// and the days it has a row for. [`RepoMetering::days`] fills in the quiet days.
#[derive(Debug, Clone)]
pub struct RepoMetering {
    /// The tenant's name.
    pub tenant: String,
    /// The repository's name.
    pub repository: String,
    /// The first day it counts: the range's first, or the day it was created.
    pub first: NaiveDate,
    /// The last day of the range (never after today).
    pub last: NaiveDate,
    /// Stored bytes, objects and logical bytes before the range (zeros when none).
    carried: DayFigures,
    /// Its rows in the range, by day.
    rows: Vec<(NaiveDate, DayFigures)>,
}

impl RepoMetering {
    /// Every day from `first` to `last` with its figures: a day without a row has no traffic and
    /// keeps the stored bytes, objects and logical bytes of the day before; a day with one counts
    /// the bytes it opened with toward its peak. The export's form of the metering rule; billing
    /// and the charts sum the same rule in SQL ([`super::usage_totals`], tested against this).
    pub fn days(&self) -> impl Iterator<Item = (NaiveDate, DayFigures)> + '_ {
        let mut carried = self.carried;
        let mut rows = self.rows.iter().peekable();
        self.first.iter_days().take_while(move |d| *d <= self.last).map(move |day| {
            while rows.next_if(|(d, _)| *d < day).is_some() {}
            let f = match rows.next_if(|(d, _)| *d == day) {
                Some((_, r)) => DayFigures { peak: r.peak.max(carried.stored), ..*r },
                None => DayFigures { peak: carried.stored, ingress: 0, egress: 0, snapshots: 0, ..carried },
            };
            carried = f;
            (day, f)
        })
    }
}

/// Whose repositories' metering is read or summed ([`Db::metering`], [`super::usage_totals`]):
/// only those rows are fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MeteringOf {
    /// Every repository.
    All,
    /// One tenant's.
    Tenant(i64),
    /// The provider's own customers' (not resellers' tenants').
    ProviderCustomers,
    /// One reseller's tenants'.
    Reseller(i64),
    /// Every reseller's tenants'.
    AllResellers,
}

impl MeteringOf {
    /// The SQL condition on a `tenant_id` column `column`, with the value to bind as `$N`.
    pub(super) fn condition(self, column: &str, n: usize) -> (String, Option<i64>) {
        let sold = |cond: String| format!("{column} IN (SELECT id FROM tenants WHERE {cond})");
        match self {
            MeteringOf::All => ("1 = 1".into(), None),
            MeteringOf::Tenant(id) => (format!("{column} = ${n}"), Some(id)),
            MeteringOf::ProviderCustomers => (sold("reseller_id IS NULL".into()), None),
            MeteringOf::Reseller(r) => (sold(format!("reseller_id = ${n}")), Some(r)),
            MeteringOf::AllResellers => (sold("reseller_id IS NOT NULL".into()), None),
        }
    }
}

/// A metering row's `day` (`YYYY-MM-DD`, as written by [`NaiveDate`]'s `to_string`).
pub(super) fn parse_day(text: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()
}

/// Checks an export's range and clamps its end to today.
fn checked_range(from: NaiveDate, to: NaiveDate) -> Result<NaiveDate> {
    if to < from {
        return Err(DbError::Invalid(format!("the range ends ({to}) before it starts ({from})")));
    }
    if (to - from).num_days() >= MAX_DAYS {
        return Err(DbError::Invalid(format!("export at most {MAX_DAYS} days at a time")));
    }
    Ok(to.min(chrono::Utc::now().date_naive()))
}

impl Db {
    /// Usage from `from` to `to` (inclusive, UTC days, at most [`MAX_DAYS`]) of one tenant or all,
    /// ordered by day, tenant, repository: a row for every day of every repository that existed
    /// then. Days after today are left out.
    pub async fn usage(&self, tenant_id: Option<i64>, from: NaiveDate, to: NaiveDate) -> Result<Vec<UsageRow>> {
        let mut out = Vec::new();
        let of = tenant_id.map_or(MeteringOf::All, MeteringOf::Tenant);
        for repo in self.metering(of, from, to).await? {
            for (day, f) in repo.days() {
                out.push(UsageRow {
                    day: day.to_string(),
                    tenant: repo.tenant.clone(),
                    repository: repo.repository.clone(),
                    stored_bytes: f.stored,
                    stored_peak_bytes: f.peak,
                    logical_bytes: f.logical,
                    object_count: f.objects,
                    ingress_bytes: f.ingress,
                    egress_bytes: f.egress,
                    snapshots: f.snapshots,
                });
            }
        }
        out.sort_by(|a, b| (&a.day, &a.tenant, &a.repository).cmp(&(&b.day, &b.tenant, &b.repository)));
        Ok(out)
    }

    /// The metering of the repositories of `of`, from `from` to `to` (checked as
    /// [`Db::usage`]'s range), as stored: what the export writes out a row per repository and day
    /// from.
    ///
    /// Two statements whatever the number of repositories (one per repository cost 20,000 round
    /// trips at 10,000 tenants): the figures each repository carries into the range, and the
    /// range's rows.
    pub async fn metering(&self, of: MeteringOf, from: NaiveDate, to: NaiveDate) -> Result<Vec<RepoMetering>> {
        let to = checked_range(from, to)?;
        let repos = self
            .repositories(match of {
                MeteringOf::Tenant(id) => Some(id),
                _ => None,
            })
            .await?;
        let (repo_cond, value) = of.condition("r.tenant_id", 2);
        let (row_cond, _) = of.condition("u.tenant_id", 3);
        let carried_sql = format!(
            "SELECT r.id AS repo_id, \
             (SELECT stored_bytes FROM usage_daily WHERE repo_id = r.id AND day < $1 ORDER BY day DESC LIMIT 1) AS stored, \
             (SELECT object_count FROM usage_daily WHERE repo_id = r.id AND day < $1 ORDER BY day DESC LIMIT 1) AS objects, \
             (SELECT logical_bytes FROM usage_daily WHERE repo_id = r.id AND day < $1 ORDER BY day DESC LIMIT 1) AS logical \
             FROM repositories r WHERE {repo_cond}"
        );
        let mut carried_q = super::dyn_query(carried_sql).bind(from.to_string());
        let rows_sql = format!(
            "SELECT u.repo_id, u.day, u.ingress_bytes, u.egress_bytes, u.stored_bytes, u.stored_peak_bytes, \
             u.object_count, u.logical_bytes, u.snapshots FROM usage_daily u \
             WHERE u.day >= $1 AND u.day <= $2 AND {row_cond} ORDER BY u.repo_id, u.day"
        );
        let mut rows_q = super::dyn_query(rows_sql).bind(from.to_string()).bind(to.to_string());
        if let Some(v) = value {
            carried_q = carried_q.bind(v);
            rows_q = rows_q.bind(v);
        }
        let mut carried: HashMap<i64, DayFigures> = HashMap::new();
        for r in carried_q.fetch_all(self.pool()).await? {
            let figures = DayFigures {
                stored: col::<Option<i64>>(&r, "stored")?.unwrap_or(0),
                objects: col::<Option<i64>>(&r, "objects")?.unwrap_or(0),
                logical: col::<Option<i64>>(&r, "logical")?.unwrap_or(0),
                ..DayFigures::default()
            };
            carried.insert(col(&r, "repo_id")?, figures);
        }
        let mut in_range: HashMap<i64, Vec<(NaiveDate, DayFigures)>> = HashMap::new();
        for r in rows_q.fetch_all(self.pool()).await? {
            let Some(day) = parse_day(&col::<String>(&r, "day")?) else { continue };
            let f = DayFigures {
                stored: col(&r, "stored_bytes")?,
                peak: col(&r, "stored_peak_bytes")?,
                objects: col(&r, "object_count")?,
                logical: col(&r, "logical_bytes")?,
                ingress: col(&r, "ingress_bytes")?,
                egress: col(&r, "egress_bytes")?,
                snapshots: col(&r, "snapshots")?,
            };
            in_range.entry(col(&r, "repo_id")?).or_default().push((day, f));
        }
        // Only the repositories in scope: those the carried-figures statement returned.
        Ok(repos
            .into_iter()
            .filter(|repo| carried.contains_key(&repo.id))
            .map(|repo| {
                let created = chrono::DateTime::from_timestamp(repo.created_at, 0).map_or(from, |t| t.date_naive());
                RepoMetering {
                    tenant: repo.tenant,
                    repository: repo.name,
                    first: from.max(created),
                    last: to,
                    carried: carried.get(&repo.id).copied().unwrap_or_default(),
                    rows: in_range.remove(&repo.id).unwrap_or_default(),
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::testing::databases;

    #[tokio::test]
    async fn days_without_activity_carry_stored_bytes_forward() {
        for (db, _guard) in databases().await {
            db.create_tenant("acme", "", None).await.unwrap();
            let repo = db.create_repository("acme", "r", None).await.unwrap();
            // Backdate the repository and write two days of history by hand.
            sqlx::query("UPDATE repositories SET created_at = 1704067200").execute(db.pool()).await.unwrap(); // 2024-01-01
            for (day, stored, peak, ingress) in [("2024-01-02", 100, 120, 120), ("2024-01-04", 50, 100, 0)] {
                sqlx::query(
                    "INSERT INTO usage_daily (repo_id, day, tenant_id, ingress_bytes, egress_bytes, stored_bytes, \
                 stored_peak_bytes, object_count) VALUES ($1, $2, $3, $4, 7, $5, $6, 3)",
                )
                .bind(repo.id)
                .bind(day)
                .bind(repo.tenant_id)
                .bind(ingress)
                .bind(stored)
                .bind(peak)
                .execute(db.pool())
                .await
                .unwrap();
            }
            let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
            let rows = db.usage(None, d("2024-01-01"), d("2024-01-05")).await.unwrap();
            let got: Vec<(&str, i64, i64, i64)> =
                rows.iter().map(|r| (r.day.as_str(), r.stored_bytes, r.stored_peak_bytes, r.ingress_bytes)).collect();
            assert_eq!(
                got,
                [
                    ("2024-01-01", 0, 0, 0),
                    ("2024-01-02", 100, 120, 120),
                    ("2024-01-03", 100, 100, 0),
                    ("2024-01-04", 50, 100, 0),
                    ("2024-01-05", 50, 50, 0)
                ]
            );
            let later = db.usage(None, d("2024-01-03"), d("2024-01-03")).await.unwrap();
            assert_eq!(later[0].stored_bytes, 100, "carried from before the range");
            let csv = to_csv(&rows);
            assert!(csv.starts_with(CSV_HEADER));
            assert!(csv.contains("\n2024-01-02,acme,r,100,120,0,3,120,7,0\n"), "{csv}");
            assert!(db.usage(None, d("2024-01-05"), d("2024-01-01")).await.is_err());
        }
    }
}
