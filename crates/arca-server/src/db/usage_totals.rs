//! Metering summed for the pages that read it most: the dashboard's figures per day and each
//! tenant's month for billing, summed by the database and kept once a day is over.
//!
//! Why: a provider with 10,000 repositories has 300,000 metering rows a month. Reading them
//! through the SQL driver to sum them took the dashboard and the billing page about 2 s each.
//! Here the database sums the days ([`Db::day_sums`], [`Db::span_sums`]: an index lookup or
//! two per repository and day, one row back per tenant or per day), and the sums of the days
//! that are over are kept in two tables, so a page reads the kept figures and sums only today.
//!
//! - **The rule** is [`super::usage::RepoMetering::days`]'s, written here in SQL for one day: a
//!   repository counts from the day it was created; on a day with a row it has that row's
//!   figures, with the bytes it opened the day with counted toward its peak; on a day without, no
//!   traffic and the stored and logical bytes of its last row before. A unit test checks that
//!   the two agree day by day on gaps, late repositories and peaks below the carried bytes.
//! - **Settled days.** A day is kept once it has been over for 15 minutes (UTC), longer than any
//!   write transaction lasts (the busy timeout is 30 s), so no metering write can still be on
//!   its way to it when it is summed.
//! - **Forgetting.** Triggers on `usage_daily`, `repositories` and `tenants` delete the kept
//!   figures that a change could alter: a metering row written for a settled day (an operator's
//!   correction, a test that moves dates) forgets that day and every later one, and so does a
//!   tenant moved to another reseller, a changed creation date or a deleted repository. Today's
//!   metering writes match no kept row, so they cost an index probe each.
//! - **No change lost to a race.** Settled days are summed and kept in one transaction that
//!   holds off the triggers' deletes until it commits (`Db::begin_keeping`), so a change
//!   committed while sums are read cannot leave figures kept without it.

use std::collections::HashMap;

use chrono::NaiveDate;

use super::usage::{parse_day, MeteringOf};
use super::{col, dyn_query, Db, Dialect, Result};

/// How long after a day ends (UTC) its figures are taken as final.
const SETTLE_MINUTES: i64 = 15;

/// Kept rows written per statement (10 values each; far below both databases' limits).
const ROWS_PER_INSERT: usize = 200;

/// The last day whose figures are final.
pub fn last_settled_day() -> NaiveDate {
    (chrono::Utc::now() - chrono::Duration::minutes(SETTLE_MINUTES)).date_naive() - chrono::Days::new(1)
}

/// One day's figures summed over repositories (one tenant's, or every one in scope).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DaySum {
    /// Repositories that existed that day.
    pub repositories: i64,
    /// Bytes stored at the end of the day.
    pub stored: i64,
    /// The repositories' peaks added up.
    pub peak: i64,
    /// Bytes the snapshots represent at the end of the day.
    pub logical: i64,
    /// Bytes received.
    pub ingress: i64,
    /// Bytes sent.
    pub egress: i64,
    /// Snapshots added.
    pub snapshots: i64,
}

/// A tenant's figures over consecutive days: what a bill needs, and what is kept per month.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TenantSpan {
    /// Stored bytes summed over the days (the average's numerator).
    pub stored_day_sum: i64,
    /// The highest day's summed peak.
    pub peak: i64,
    /// Logical bytes on the last day with a repository.
    pub logical: i64,
    /// Whether any day had a repository.
    pub seen: bool,
    /// Bytes received.
    pub ingress: i64,
    /// Bytes sent.
    pub egress: i64,
    /// Snapshots added.
    pub snapshots: i64,
}

impl TenantSpan {
    /// These figures followed by `later`'s (the days right after).
    pub fn then(&mut self, later: &TenantSpan) {
        self.stored_day_sum = self.stored_day_sum.saturating_add(later.stored_day_sum);
        self.peak = self.peak.max(later.peak);
        if later.seen {
            self.seen = true;
            self.logical = later.logical;
        }
        self.ingress = self.ingress.saturating_add(later.ingress);
        self.egress = self.egress.saturating_add(later.egress);
        self.snapshots = self.snapshots.saturating_add(later.snapshots);
    }
}

/// One day of the dashboard's charts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayTotal {
    /// The day (UTC).
    pub day: NaiveDate,
    /// Bytes stored at its end.
    pub stored: i64,
    /// Bytes received.
    pub ingress: i64,
    /// Bytes sent.
    pub egress: i64,
}

impl MeteringOf {
    /// The key its per-day totals are kept under: every repository is -1, a reseller's tenants
    /// the reseller's id; other scopes are summed each time (one tenant's is quick).
    fn kept_as(self) -> Option<i64> {
        match self {
            MeteringOf::All => Some(-1),
            MeteringOf::Reseller(r) => Some(r),
            _ => None,
        }
    }
}

/// `rows` parenthesised lists of `columns` numbered parameters, `($1, $2), ($3, $4)`: the
/// `VALUES` of a statement that binds many rows at once.
fn placeholders(rows: usize, columns: usize) -> String {
    let row = |i: usize| (1..=columns).map(|c| format!("${}", columns * i + c)).collect::<Vec<_>>().join(", ");
    (0..rows).map(|i| format!("({})", row(i))).collect::<Vec<_>>().join(", ")
}

/// The SQL of the rule: a row per day of `days` (and per tenant when `by_tenant`) summing the
/// repositories of the condition `cond` that existed that day (and whose tenant did): the
/// repository's row of the day (`t_…`), and the stored and logical bytes of its last row before
/// (`c_…`, what it carries in). The days are bound as `$1`, `$2` (the day, and the next
/// midnight as a Unix time), `$3`, `$4` and so on.
///
/// The carried figures are scalar subqueries (a backward index step each) rather than a join:
/// PostgreSQL hashed the whole metering table for such a join, 260 ms at 320,000 rows and more
/// with every month of history; this form costs the same in any year.
fn per_day_sql(days: usize, cond: &str, by_tenant: bool) -> String {
    let tenant = if by_tenant { "tenant_id" } else { "CAST(0 AS BIGINT)" };
    let group = if by_tenant { "tenant_id, day" } else { "day" };
    let carried = |column: &str| {
        format!(
            "(SELECT q.{column} FROM usage_daily q WHERE q.repo_id = r.id AND q.day < d.day \
             ORDER BY q.day DESC LIMIT 1)"
        )
    };
    let c_stored = "COALESCE(c_stored, 0)";
    format!(
        "WITH days (day, ends) AS (VALUES {values}), \
         per AS (SELECT {tenant} AS tenant_id, day, COUNT(*) AS repositories, \
           CAST(SUM(COALESCE(t_stored, c_stored, 0)) AS BIGINT) AS stored, \
           CAST(SUM(CASE WHEN t_repo IS NULL THEN {c_stored} \
             WHEN t_peak > {c_stored} THEN t_peak ELSE {c_stored} END) AS BIGINT) AS peak, \
           CAST(SUM(COALESCE(t_logical, c_logical, 0)) AS BIGINT) AS logical, \
           CAST(COALESCE(SUM(t_ingress), 0) AS BIGINT) AS ingress, \
           CAST(COALESCE(SUM(t_egress), 0) AS BIGINT) AS egress, \
           CAST(COALESCE(SUM(t_snapshots), 0) AS BIGINT) AS snapshots \
         FROM (SELECT r.tenant_id AS tenant_id, d.day AS day, t.repo_id AS t_repo, t.stored_bytes AS t_stored, \
             t.stored_peak_bytes AS t_peak, t.logical_bytes AS t_logical, t.ingress_bytes AS t_ingress, \
             t.egress_bytes AS t_egress, t.snapshots AS t_snapshots, \
             {stored} AS c_stored, {logical} AS c_logical \
           FROM days d \
           JOIN repositories r ON r.created_at < d.ends \
           JOIN tenants tn ON tn.id = r.tenant_id AND tn.created_at < d.ends \
           LEFT JOIN usage_daily t ON t.repo_id = r.id AND t.day = d.day \
           WHERE {cond}) x \
         GROUP BY {group})",
        values = placeholders(days, 2),
        stored = carried("stored_bytes"),
        logical = carried("logical_bytes"),
    )
}

/// The statement of [`per_day_sql`] over `of` from `first` to `last`, followed by `select` (given
/// the number of days) that reads from its `per`, with the days and the scope's value bound.
/// `None` when the range is empty or longer than [`super::usage::MAX_DAYS`].
fn per_day_query(
    of: MeteringOf,
    first: NaiveDate,
    last: NaiveDate,
    by_tenant: bool,
    select: impl FnOnce(usize) -> String,
) -> Option<sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments>> {
    let days = day_count(first, last);
    if days == 0 || days as i64 > super::usage::MAX_DAYS {
        return None;
    }
    let (cond, value) = of.condition("r.tenant_id", 2 * days + 1);
    let mut q = dyn_query(format!("{} {}", per_day_sql(days, &cond, by_tenant), select(days)));
    for day in first.iter_days().take_while(|d| *d <= last) {
        let ends = day.succ_opt().and_then(|d| d.and_hms_opt(0, 0, 0)).map_or(i64::MAX, |t| t.and_utc().timestamp());
        q = q.bind(day.to_string()).bind(ends);
    }
    if let Some(v) = value {
        q = q.bind(v);
    }
    Some(q)
}

/// Days from `first` to `last`, inclusive (0 when `last` is before `first`).
fn day_count(first: NaiveDate, last: NaiveDate) -> usize {
    ((last - first).num_days() + 1).max(0) as usize
}

/// [`Db::day_sums`] on `ex` (the pool, or a transaction that keeps them).
async fn day_sums_on<'c, E: sqlx::Executor<'c, Database = sqlx::Any>>(
    ex: E,
    of: MeteringOf,
    first: NaiveDate,
    last: NaiveDate,
    per_tenant: bool,
) -> Result<Vec<(i64, NaiveDate, DaySum)>> {
    let select = |_| "SELECT * FROM per ORDER BY day, tenant_id".to_string();
    let Some(q) = per_day_query(of, first, last, per_tenant, select) else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    for r in q.fetch_all(ex).await? {
        let Some(day) = parse_day(&col::<String>(&r, "day")?) else { continue };
        out.push((
            col(&r, "tenant_id")?,
            day,
            DaySum {
                repositories: col(&r, "repositories")?,
                stored: col(&r, "stored")?,
                peak: col(&r, "peak")?,
                logical: col(&r, "logical")?,
                ingress: col(&r, "ingress")?,
                egress: col(&r, "egress")?,
                snapshots: col(&r, "snapshots")?,
            },
        ));
    }
    Ok(out)
}

/// [`Db::span_sums`] on `ex` (the pool, or a transaction that keeps them).
async fn span_sums_on<'c, E: sqlx::Executor<'c, Database = sqlx::Any>>(
    ex: E,
    of: MeteringOf,
    first: NaiveDate,
    last: NaiveDate,
) -> Result<HashMap<i64, TenantSpan>> {
    // Repositories are not taken away within a range (a deleted one leaves no history), so a
    // tenant's last day with one is the range's last day (the parameter numbered 2 × days − 1).
    let select = |days: usize| {
        format!(
            "SELECT tenant_id, CAST(SUM(stored) AS BIGINT) AS stored_day_sum, CAST(MAX(peak) AS BIGINT) AS peak, \
             CAST(SUM(CASE WHEN day = ${} THEN logical ELSE 0 END) AS BIGINT) AS logical, \
             CAST(SUM(ingress) AS BIGINT) AS ingress, CAST(SUM(egress) AS BIGINT) AS egress, \
             CAST(SUM(snapshots) AS BIGINT) AS snapshots FROM per GROUP BY tenant_id",
            2 * days - 1
        )
    };
    let Some(q) = per_day_query(of, first, last, true, select) else { return Ok(HashMap::new()) };
    let mut out = HashMap::new();
    for r in q.fetch_all(ex).await? {
        out.insert(
            col(&r, "tenant_id")?,
            TenantSpan {
                stored_day_sum: col(&r, "stored_day_sum")?,
                peak: col(&r, "peak")?,
                logical: col(&r, "logical")?,
                seen: true,
                ingress: col(&r, "ingress")?,
                egress: col(&r, "egress")?,
                snapshots: col(&r, "snapshots")?,
            },
        );
    }
    Ok(out)
}

/// The kept figures of `month` for the tenants of `of`: through which day, and what.
async fn kept_months<'c, E: sqlx::Executor<'c, Database = sqlx::Any>>(
    ex: E,
    of: MeteringOf,
    month: &str,
) -> Result<HashMap<i64, (NaiveDate, TenantSpan)>> {
    let (cond, value) = of.condition("tenant_id", 2);
    let mut q = dyn_query(format!(
        "SELECT tenant_id, through_day, stored_day_sum, peak_bytes, logical_bytes, seen, ingress_bytes, \
         egress_bytes, snapshots FROM usage_month_totals WHERE month = $1 AND {cond}"
    ))
    .bind(month.to_string());
    if let Some(v) = value {
        q = q.bind(v);
    }
    let mut kept = HashMap::new();
    for r in q.fetch_all(ex).await? {
        let Some(through) = parse_day(&col::<String>(&r, "through_day")?) else { continue };
        let span = TenantSpan {
            stored_day_sum: col(&r, "stored_day_sum")?,
            peak: col(&r, "peak_bytes")?,
            logical: col(&r, "logical_bytes")?,
            seen: col::<i64>(&r, "seen")? != 0,
            ingress: col(&r, "ingress_bytes")?,
            egress: col(&r, "egress_bytes")?,
            snapshots: col(&r, "snapshots")?,
        };
        kept.insert(col(&r, "tenant_id")?, (through, span));
    }
    Ok(kept)
}

/// Per tenant of `tenants`: the first day of the month still to sum (the SQL skips the days
/// before it was created) and its figures before that day, from what is `kept` through a day
/// of this month that is settled.
fn starting_points(
    kept: &HashMap<i64, (NaiveDate, TenantSpan)>,
    tenants: &[i64],
    first: NaiveDate,
    settled: NaiveDate,
) -> HashMap<i64, (NaiveDate, TenantSpan)> {
    tenants
        .iter()
        .map(|&id| match kept.get(&id) {
            Some(&(through, span)) if through >= first && through <= settled => {
                (id, (through + chrono::Days::new(1), span))
            }
            _ => (id, (first, TenantSpan::default())),
        })
        .collect()
}

impl Db {
    /// A transaction in which settled days are summed and kept in `table`, so that no change
    /// that would forget them (the triggers) can commit between the sums being read and kept:
    /// it would either be seen by the sums or forget what this keeps. SQLite: the write lock is
    /// taken at the start. PostgreSQL: a lock on `table` that every trigger's delete on it
    /// waits for, taken after the writes already under way have committed (a statement reads
    /// what was committed when it starts). Writers wait while the sums are read: once a day,
    /// or after a change forgot them.
    async fn begin_keeping(&self, table: &'static str) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        let mut tx = self.begin_write().await?;
        if self.dialect() == Dialect::Postgres {
            dyn_query(format!("LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE")).execute(&mut *tx).await?;
        }
        Ok(tx)
    }

    /// The figures of each day from `first` to `last` (at most [`super::usage::MAX_DAYS`])
    /// summed over the repositories of `of` that existed then: per tenant and day (tenants
    /// without a repository that day are absent), or per day in all (tenant 0). The SQL form of
    /// [`super::usage::RepoMetering::days`]'s rule; see the module's notes.
    pub async fn day_sums(
        &self,
        of: MeteringOf,
        first: NaiveDate,
        last: NaiveDate,
        per_tenant: bool,
    ) -> Result<Vec<(i64, NaiveDate, DaySum)>> {
        day_sums_on(self.pool(), of, first, last, per_tenant).await
    }

    /// Each tenant's figures from `first` to `last` (from the day it was created, if later),
    /// summed by the database from [`per_day_sql`]'s days: one row per tenant comes back.
    pub async fn span_sums(
        &self,
        of: MeteringOf,
        first: NaiveDate,
        last: NaiveDate,
    ) -> Result<HashMap<i64, TenantSpan>> {
        span_sums_on(self.pool(), of, first, last).await
    }

    /// Stored bytes and traffic of each day from `first` to `last` over the repositories of
    /// `of`: the dashboard's charts and a tenant's stored-bytes chart. Settled days of every
    /// repository or of one reseller's are kept and read back; the others are summed.
    pub async fn daily_totals(&self, of: MeteringOf, first: NaiveDate, last: NaiveDate) -> Result<Vec<DayTotal>> {
        let settled = last_settled_day();
        let key = of.kept_as();
        let mut kept: HashMap<NaiveDate, DayTotal> = HashMap::new();
        if let Some(k) = key {
            let rows = sqlx::query(
                "SELECT day, stored_bytes, ingress_bytes, egress_bytes FROM usage_day_totals \
                 WHERE scope = $1 AND day >= $2 AND day <= $3",
            )
            .bind(k)
            .bind(first.to_string())
            .bind(last.to_string())
            .fetch_all(self.pool())
            .await?;
            for r in rows {
                let Some(day) = parse_day(&col::<String>(&r, "day")?) else { continue };
                kept.insert(
                    day,
                    DayTotal {
                        day,
                        stored: col(&r, "stored_bytes")?,
                        ingress: col(&r, "ingress_bytes")?,
                        egress: col(&r, "egress_bytes")?,
                    },
                );
            }
        }
        // The days not kept (after a change, only the last ones): the settled ones are summed
        // and kept under the lock of `begin_keeping`, the others (today) summed each time.
        let all_days: Vec<NaiveDate> = first.iter_days().take_while(|d| *d <= last).collect();
        let missing = all_days.iter().copied().filter(|d| !kept.contains_key(d));
        let (to_keep, live): (Vec<NaiveDate>, Vec<NaiveDate>) = match key {
            Some(_) => missing.partition(|d| *d <= settled),
            None => (Vec::new(), missing.collect()),
        };
        let total = |day: NaiveDate, sum: Option<&DaySum>| {
            let sum = sum.copied().unwrap_or_default();
            DayTotal { day, stored: sum.stored, ingress: sum.ingress, egress: sum.egress }
        };
        if let (Some(k), Some(lo), Some(hi)) = (key, to_keep.first(), to_keep.last()) {
            let mut tx = self.begin_keeping("usage_day_totals").await?;
            let summed: HashMap<NaiveDate, DaySum> =
                day_sums_on(&mut *tx, of, *lo, *hi, false).await?.into_iter().map(|(_, day, sum)| (day, sum)).collect();
            let totals: Vec<DayTotal> = to_keep.iter().map(|&day| total(day, summed.get(&day))).collect();
            for chunk in totals.chunks(ROWS_PER_INSERT) {
                let mut q = dyn_query(format!(
                    "INSERT INTO usage_day_totals (day, scope, stored_bytes, ingress_bytes, egress_bytes) VALUES {} \
                     ON CONFLICT (day, scope) DO UPDATE SET stored_bytes = excluded.stored_bytes, \
                     ingress_bytes = excluded.ingress_bytes, egress_bytes = excluded.egress_bytes",
                    placeholders(chunk.len(), 5)
                ));
                for t in chunk {
                    q = q.bind(t.day.to_string()).bind(k).bind(t.stored).bind(t.ingress).bind(t.egress);
                }
                q.execute(&mut *tx).await?;
            }
            tx.commit().await?;
            kept.extend(totals.into_iter().map(|t| (t.day, t)));
        }
        if let (Some(lo), Some(hi)) = (live.first(), live.last()) {
            let summed: HashMap<NaiveDate, DaySum> =
                self.day_sums(of, *lo, *hi, false).await?.into_iter().map(|(_, day, sum)| (day, sum)).collect();
            kept.extend(live.iter().map(|&day| (day, total(day, summed.get(&day)))));
        }
        Ok(all_days.iter().map(|d| kept[d]).collect())
    }

    /// The figures of each of `tenants` in `month` (which begins on `first`) from the day it was
    /// created, or the 1st, to `end`. What is kept for the month is read back and extended by
    /// the days after it; the settled part is kept again for the next time.
    pub(crate) async fn tenant_months(
        &self,
        of: MeteringOf,
        month: &str,
        first: NaiveDate,
        tenants: &[i64],
        end: NaiveDate,
    ) -> Result<HashMap<i64, TenantSpan>> {
        let settled = last_settled_day().min(end);
        let mut spans = starting_points(&kept_months(self.pool(), of, month).await?, tenants, first, settled);
        if spans.values().any(|(start, _)| *start <= settled) {
            let mut tx = self.begin_keeping("usage_month_totals").await?;
            // Read again under the lock: a change since may have forgotten some, and a kept
            // month is extended here, so it must be the one still kept.
            spans = starting_points(&kept_months(&mut *tx, of, month).await?, tenants, first, settled);
            // The settled days, once per distinct start (usually one: the day after what was kept).
            let starts: std::collections::BTreeSet<NaiveDate> =
                spans.values().map(|(start, _)| *start).filter(|s| *s <= settled).collect();
            let mut to_keep: Vec<(i64, TenantSpan)> = Vec::new();
            for start in starts {
                let sums = span_sums_on(&mut *tx, of, start, settled).await?;
                for (id, (s, span)) in spans.iter_mut().filter(|(_, (s, _))| *s == start) {
                    span.then(&sums.get(id).copied().unwrap_or_default());
                    to_keep.push((*id, *span));
                    *s = settled + chrono::Days::new(1);
                }
            }
            for chunk in to_keep.chunks(ROWS_PER_INSERT) {
                let mut q = dyn_query(format!(
                    "INSERT INTO usage_month_totals (tenant_id, month, through_day, stored_day_sum, peak_bytes, \
                     logical_bytes, seen, ingress_bytes, egress_bytes, snapshots) VALUES {} \
                     ON CONFLICT (tenant_id, month) DO UPDATE SET through_day = excluded.through_day, \
                     stored_day_sum = excluded.stored_day_sum, peak_bytes = excluded.peak_bytes, \
                     logical_bytes = excluded.logical_bytes, seen = excluded.seen, \
                     ingress_bytes = excluded.ingress_bytes, egress_bytes = excluded.egress_bytes, \
                     snapshots = excluded.snapshots",
                    placeholders(chunk.len(), 10)
                ));
                for (id, s) in chunk {
                    q = q
                        .bind(*id)
                        .bind(month.to_string())
                        .bind(settled.to_string())
                        .bind(s.stored_day_sum)
                        .bind(s.peak)
                        .bind(s.logical)
                        .bind(i64::from(s.seen))
                        .bind(s.ingress)
                        .bind(s.egress)
                        .bind(s.snapshots);
                }
                q.execute(&mut *tx).await?;
            }
            tx.commit().await?;
        }
        // The days not settled yet (today, and yesterday in its first minutes), never kept.
        let live_from = first.max(settled + chrono::Days::new(1));
        if live_from <= end {
            let sums = self.span_sums(of, live_from, end).await?;
            for (id, (_, span)) in spans.iter_mut() {
                span.then(&sums.get(id).copied().unwrap_or_default());
            }
        }
        Ok(spans.into_iter().map(|(id, (_, span))| (id, span)).collect())
    }
}

/// The tables that keep the figures, and an index that finds a day's metering rows (schema 18).
pub(super) const SCHEMA: &str = r#"
CREATE TABLE usage_day_totals (
    day TEXT NOT NULL,
    scope BIGINT NOT NULL,
    stored_bytes BIGINT NOT NULL,
    ingress_bytes BIGINT NOT NULL,
    egress_bytes BIGINT NOT NULL,
    PRIMARY KEY (day, scope)
);
CREATE TABLE usage_month_totals (
    tenant_id BIGINT NOT NULL,
    month TEXT NOT NULL,
    through_day TEXT NOT NULL,
    stored_day_sum BIGINT NOT NULL,
    peak_bytes BIGINT NOT NULL,
    logical_bytes BIGINT NOT NULL,
    seen BIGINT NOT NULL,
    ingress_bytes BIGINT NOT NULL,
    egress_bytes BIGINT NOT NULL,
    snapshots BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, month)
);
CREATE INDEX usage_by_day ON usage_daily(day)
"#;

/// What a changed metering row of `{R}` (NEW or OLD) makes stale: its day and every later one.
const FORGET_ROW: &str = "DELETE FROM usage_day_totals WHERE day >= {R}.day; \
     DELETE FROM usage_month_totals WHERE tenant_id = {R}.tenant_id AND through_day >= {R}.day;";

/// The triggers that forget kept figures (schema 18), one statement each: created with the
/// tables, in each dialect's syntax (not split at semicolons).
pub(super) fn triggers(dialect: Dialect) -> Vec<String> {
    let row = |r: &str| FORGET_ROW.replace("{R}", r);
    match dialect {
        Dialect::Sqlite => {
            let all = |r: &str, id: &str| {
                format!("DELETE FROM usage_day_totals; DELETE FROM usage_month_totals WHERE tenant_id = {r}.{id};")
            };
            vec![
                format!("CREATE TRIGGER usage_totals_row_insert AFTER INSERT ON usage_daily BEGIN {} END", row("NEW")),
                format!(
                    "CREATE TRIGGER usage_totals_row_update AFTER UPDATE ON usage_daily BEGIN {} {} END",
                    row("OLD"),
                    row("NEW")
                ),
                format!("CREATE TRIGGER usage_totals_row_delete AFTER DELETE ON usage_daily BEGIN {} END", row("OLD")),
                format!(
                    "CREATE TRIGGER usage_totals_repository_insert AFTER INSERT ON repositories BEGIN {} END",
                    all("NEW", "tenant_id")
                ),
                format!(
                    "CREATE TRIGGER usage_totals_repository_update AFTER UPDATE OF created_at, tenant_id ON repositories \
                     BEGIN {} {} END",
                    all("OLD", "tenant_id"),
                    all("NEW", "tenant_id")
                ),
                format!(
                    "CREATE TRIGGER usage_totals_repository_delete AFTER DELETE ON repositories BEGIN {} END",
                    all("OLD", "tenant_id")
                ),
                format!(
                    "CREATE TRIGGER usage_totals_tenant_update AFTER UPDATE OF created_at, reseller_id ON tenants \
                     BEGIN {} END",
                    all("NEW", "id")
                ),
                format!("CREATE TRIGGER usage_totals_tenant_delete AFTER DELETE ON tenants BEGIN {} END", all("OLD", "id")),
            ]
        }
        Dialect::Postgres => vec![
            format!(
                "CREATE FUNCTION usage_totals_forget() RETURNS trigger LANGUAGE plpgsql AS $body$ \
                 BEGIN \
                   IF TG_TABLE_NAME = 'usage_daily' THEN \
                     IF TG_OP <> 'INSERT' THEN {old} END IF; \
                     IF TG_OP <> 'DELETE' THEN {new} END IF; \
                   ELSE \
                     DELETE FROM usage_day_totals; \
                     IF TG_TABLE_NAME = 'repositories' THEN \
                       IF TG_OP <> 'INSERT' THEN DELETE FROM usage_month_totals WHERE tenant_id = OLD.tenant_id; END IF; \
                       IF TG_OP <> 'DELETE' THEN DELETE FROM usage_month_totals WHERE tenant_id = NEW.tenant_id; END IF; \
                     ELSE \
                       DELETE FROM usage_month_totals WHERE tenant_id = OLD.id; \
                     END IF; \
                   END IF; \
                   RETURN NULL; \
                 END $body$",
                old = row("OLD"),
                new = row("NEW")
            ),
            "CREATE TRIGGER usage_totals_row AFTER INSERT OR UPDATE OR DELETE ON usage_daily \
             FOR EACH ROW EXECUTE FUNCTION usage_totals_forget()"
                .into(),
            "CREATE TRIGGER usage_totals_repository AFTER INSERT OR DELETE OR UPDATE OF created_at, tenant_id \
             ON repositories FOR EACH ROW EXECUTE FUNCTION usage_totals_forget()"
                .into(),
            "CREATE TRIGGER usage_totals_tenant AFTER DELETE OR UPDATE OF created_at, reseller_id ON tenants \
             FOR EACH ROW EXECUTE FUNCTION usage_totals_forget()"
                .into(),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::testing::databases;

    #[test]
    fn placeholders_number_every_value() {
        assert_eq!(placeholders(2, 2), "($1, $2), ($3, $4)");
        assert_eq!(placeholders(1, 3), "($1, $2, $3)");
        assert_eq!(placeholders(0, 5), "");
    }

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    /// A metering row: stored, peak, logical and ingress bytes (3 bytes sent, a snapshot).
    async fn row(db: &Db, (repo, tenant): (i64, i64), day: &str, [stored, peak, logical, ingress]: [i64; 4]) {
        sqlx::query(
            "INSERT INTO usage_daily (repo_id, day, tenant_id, ingress_bytes, egress_bytes, stored_bytes, \
             stored_peak_bytes, object_count, logical_bytes, snapshots) VALUES ($1, $2, $3, $4, 3, $5, $6, 1, $7, 1)",
        )
        .bind(repo)
        .bind(day)
        .bind(tenant)
        .bind(ingress)
        .bind(stored)
        .bind(peak)
        .bind(logical)
        .execute(db.pool())
        .await
        .unwrap();
    }

    /// Two tenants (one a reseller's), three repositories: gaps, a repository created in the
    /// middle of the range, figures carried in from before it, a peak below the bytes a day
    /// opened with.
    async fn history(db: &Db) -> (i64, i64) {
        let a = db.create_tenant("a", "", None).await.unwrap();
        let b = db.create_tenant("b", "", None).await.unwrap();
        let r = db.create_reseller("north", "", 0, "north-admin", "a long enough password").await.unwrap();
        sqlx::query("UPDATE tenants SET reseller_id = $1 WHERE id = $2")
            .bind(r.id)
            .bind(b.id)
            .execute(db.pool())
            .await
            .unwrap();
        sqlx::query("UPDATE tenants SET created_at = 1700000000").execute(db.pool()).await.unwrap();
        let r1 = db.create_repository("a", "a1", None).await.unwrap();
        let r2 = db.create_repository("a", "a2", None).await.unwrap();
        let r3 = db.create_repository("b", "b1", None).await.unwrap();
        for (repo, created) in [(r1.id, 1704067200), (r2.id, 1704326400), (r3.id, 1701388800)] {
            // 2024-01-01, 2024-01-04, 2023-12-01
            sqlx::query("UPDATE repositories SET created_at = $1 WHERE id = $2")
                .bind(created)
                .bind(repo)
                .execute(db.pool())
                .await
                .unwrap();
        }
        row(db, (r1.id, a.id), "2024-01-02", [100, 120, 300, 5]).await;
        row(db, (r1.id, a.id), "2024-01-05", [50, 40, 310, 0]).await;
        row(db, (r1.id, a.id), "2024-01-09", [70, 80, 320, 9]).await;
        row(db, (r2.id, a.id), "2024-01-04", [10, 15, 20, 10]).await;
        row(db, (r2.id, a.id), "2024-01-07", [0, 10, 0, 0]).await;
        row(db, (r3.id, b.id), "2023-12-20", [500, 500, 900, 500]).await;
        row(db, (r3.id, b.id), "2024-01-08", [600, 650, 950, 100]).await;
        (a.id, b.id)
    }

    /// The SQL rule and `RepoMetering::days` (behind the export) agree on every day, per tenant
    /// and in all, and over spans of days.
    #[tokio::test]
    async fn the_sums_in_sql_follow_the_exports_rule() {
        for (db, _guard) in databases().await {
            let (a, b) = history(&db).await;
            let (first, last) = (d("2024-01-01"), d("2024-01-10"));
            let export = db.usage(None, first, last).await.unwrap();
            let per_tenant: HashMap<(i64, NaiveDate), DaySum> = db
                .day_sums(MeteringOf::All, first, last, true)
                .await
                .unwrap()
                .into_iter()
                .map(|(id, day, sum)| ((id, day), sum))
                .collect();
            let in_all: HashMap<NaiveDate, DaySum> = db
                .day_sums(MeteringOf::All, first, last, false)
                .await
                .unwrap()
                .into_iter()
                .map(|(id, day, sum)| {
                    assert_eq!(id, 0);
                    (day, sum)
                })
                .collect();
            // What the export says, per tenant and day.
            let want = |name: &str, day: NaiveDate| {
                let mut w = DaySum::default();
                for r in export.iter().filter(|r| r.day == day.to_string() && (name.is_empty() || r.tenant == name)) {
                    w.repositories += 1;
                    w.stored += r.stored_bytes;
                    w.peak += r.stored_peak_bytes;
                    w.logical += r.logical_bytes;
                    w.ingress += r.ingress_bytes;
                    w.egress += r.egress_bytes;
                    w.snapshots += r.snapshots;
                }
                w
            };
            for day in first.iter_days().take_while(|x| *x <= last) {
                for (id, name) in [(a, "a"), (b, "b")] {
                    assert_eq!(
                        per_tenant.get(&(id, day)).copied().unwrap_or_default(),
                        want(name, day),
                        "{name} on {day}"
                    );
                }
                assert_eq!(in_all.get(&day).copied().unwrap_or_default(), want("", day), "all on {day}");
            }
            // Spans: the days' figures added up, from any first day.
            for from in [first, d("2024-01-04"), d("2024-01-10")] {
                let spans = db.span_sums(MeteringOf::All, from, last).await.unwrap();
                for (id, name) in [(a, "a"), (b, "b")] {
                    let mut w = TenantSpan::default();
                    for day in from.iter_days().take_while(|x| *x <= last) {
                        let s = want(name, day);
                        w.then(&TenantSpan {
                            stored_day_sum: s.stored,
                            peak: s.peak,
                            logical: s.logical,
                            seen: s.repositories > 0,
                            ingress: s.ingress,
                            egress: s.egress,
                            snapshots: s.snapshots,
                        });
                    }
                    assert_eq!(spans.get(&id).copied().unwrap_or_default(), w, "{name} from {from}");
                }
            }
            // Spot checks against the rule in words: the 5th opened with 100 + 10 bytes, so its
            // peak is that, not the row's 40 + the carried 10.
            let fifth = |id| per_tenant[&(id, d("2024-01-05"))];
            assert_eq!((fifth(a).stored, fifth(a).peak, fifth(a).repositories), (60, 110, 2));
            assert_eq!((fifth(b).stored, fifth(b).logical), (500, 900), "carried from December");
            let north = db.reseller("north").await.unwrap().id;
            let reseller: Vec<i64> = db
                .day_sums(MeteringOf::Reseller(north), d("2024-01-05"), d("2024-01-05"), true)
                .await
                .unwrap()
                .into_iter()
                .map(|(id, _, _)| id)
                .collect();
            assert_eq!(reseller, vec![b], "a reseller's scope");
        }
    }

    async fn kept_rows(db: &Db, table: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
            .fetch_one(db.pool())
            .await
            .unwrap()
    }

    /// Settled days are kept and read back; a metering row written later for one of them, a
    /// tenant moved to another reseller or a changed creation date forgets what it alters.
    #[tokio::test]
    async fn kept_sums_are_forgotten_when_their_rows_change() {
        for (db, _guard) in databases().await {
            let (a, b) = history(&db).await;
            let (first, last) = (d("2024-01-01"), d("2024-01-10"));
            let fresh = db.daily_totals(MeteringOf::All, first, last).await.unwrap();
            assert_eq!(kept_rows(&db, "usage_day_totals").await, 10);
            assert_eq!(db.daily_totals(MeteringOf::All, first, last).await.unwrap(), fresh, "read back");
            let stored: Vec<i64> = fresh.iter().map(|t| t.stored).collect();
            assert_eq!(stored, [500, 600, 600, 610, 560, 560, 550, 650, 670, 670]);

            let (month_first, tenants) = (d("2024-01-01"), [a, b]);
            let month =
                db.tenant_months(MeteringOf::All, "2024-01", month_first, &tenants, d("2024-01-31")).await.unwrap();
            assert_eq!(kept_rows(&db, "usage_month_totals").await, 2);
            assert_eq!(
                db.tenant_months(MeteringOf::All, "2024-01", month_first, &tenants, d("2024-01-31")).await.unwrap(),
                month
            );
            assert_eq!((month[&a].peak, month[&a].logical, month[&a].ingress), (120, 320, 24));
            // 0 + 100 + 100 + 110 + 60 + 60 + 50 + 50, then 23 days of 70.
            assert_eq!(month[&a].stored_day_sum, 530 + 23 * 70);
            // Part of the month, then the rest from what was kept.
            let part =
                db.tenant_months(MeteringOf::All, "2024-01", month_first, &tenants, d("2024-01-06")).await.unwrap();
            assert_eq!(part[&a].stored_day_sum, 430);
            assert_eq!(
                db.tenant_months(MeteringOf::All, "2024-01", month_first, &tenants, d("2024-01-31")).await.unwrap(),
                month
            );

            // A correction for the 6th: tenant a's month and the days from the 6th are forgotten.
            let r1: i64 =
                sqlx::query_scalar("SELECT id FROM repositories WHERE name = 'a1'").fetch_one(db.pool()).await.unwrap();
            row(&db, (r1, a), "2024-01-06", [1000, 1000, 310, 0]).await;
            let kept: Vec<String> =
                sqlx::query_scalar("SELECT day FROM usage_day_totals ORDER BY day").fetch_all(db.pool()).await.unwrap();
            assert_eq!(kept.last().map(String::as_str), Some("2024-01-05"));
            assert_eq!(kept_rows(&db, "usage_month_totals").await, 1, "b's month stays");
            let after = db.daily_totals(MeteringOf::All, first, last).await.unwrap();
            assert_eq!(after[5].stored, 1510);
            assert_eq!(after[6].stored, 1500, "carried into the 7th");
            let month =
                db.tenant_months(MeteringOf::All, "2024-01", month_first, &tenants, d("2024-01-31")).await.unwrap();
            assert_eq!(month[&a].peak, 1010);

            // Moving b to the provider forgets every day's totals (they are kept per reseller).
            sqlx::query("UPDATE tenants SET reseller_id = NULL WHERE id = $1")
                .bind(b)
                .execute(db.pool())
                .await
                .unwrap();
            assert_eq!(kept_rows(&db, "usage_day_totals").await, 0);
            // Today is never kept.
            let today = chrono::Utc::now().date_naive();
            db.daily_totals(MeteringOf::All, today, today).await.unwrap();
            assert_eq!(kept_rows(&db, "usage_day_totals").await, 0);

            // This month: the kept days and today's, the first time and the next; a tenant
            // without a repository sums nothing.
            use chrono::Datelike;
            let first_of_month = today.with_day(1).unwrap();
            let this_month = today.format("%Y-%m").to_string();
            row(&db, (r1, a), &today.to_string(), [5, 7, 9, 11]).await;
            let c = db.create_tenant("c", "", None).await.unwrap().id;
            let want = db.span_sums(MeteringOf::All, first_of_month, today).await.unwrap();
            for _ in 0..2 {
                let got =
                    db.tenant_months(MeteringOf::All, &this_month, first_of_month, &[a, b, c], today).await.unwrap();
                assert_eq!((got[&a], got[&b], got[&c]), (want[&a], want[&b], TenantSpan::default()));
                assert_eq!((got[&a].ingress, got[&a].logical), (11, 9), "today's row");
            }
        }
    }

    /// A correction committed while settled days are being summed is not left out of what is
    /// kept: the sums wait for it. Without the lock they would be read before it commits and
    /// kept after it, and every later page and bill would go on without it.
    #[tokio::test]
    async fn a_change_committed_during_the_sums_is_kept_with_them() {
        for (db, _guard) in databases().await {
            let (a, b) = history(&db).await;
            let r1: i64 =
                sqlx::query_scalar("SELECT id FROM repositories WHERE name = 'a1'").fetch_one(db.pool()).await.unwrap();
            // The correction for the 6th is written (its trigger has run) but not committed.
            let mut tx = db.begin_write().await.unwrap();
            sqlx::query(
                "INSERT INTO usage_daily (repo_id, day, tenant_id, ingress_bytes, egress_bytes, stored_bytes, \
                 stored_peak_bytes, object_count, logical_bytes, snapshots) VALUES ($1, '2024-01-06', $2, 0, 0, 1000, 1000, 1, 310, 0)",
            )
            .bind(r1)
            .bind(a)
            .execute(&mut *tx)
            .await
            .unwrap();
            let (first, last) = (d("2024-01-01"), d("2024-01-10"));
            let months = {
                let db = db.clone();
                tokio::spawn(async move {
                    db.tenant_months(MeteringOf::All, "2024-01", first, &[a, b], d("2024-01-31")).await.unwrap()
                })
            };
            let days = {
                let db = db.clone();
                tokio::spawn(async move { db.daily_totals(MeteringOf::All, first, last).await.unwrap() })
            };
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            assert!(!months.is_finished() && !days.is_finished(), "kept sums were not held off by the open change");
            tx.commit().await.unwrap();
            let (month, totals) = (months.await.unwrap(), days.await.unwrap());
            assert_eq!(month[&a].peak, 1010, "the month summed without the correction");
            assert_eq!(totals[5].stored, 1510, "the 6th summed without the correction");
            // What was kept is what summing afresh gives.
            assert_eq!(kept_rows(&db, "usage_month_totals").await, 2);
            assert_eq!(kept_rows(&db, "usage_day_totals").await, 10);
            let want = db.span_sums(MeteringOf::All, first, d("2024-01-31")).await.unwrap();
            let again = db.tenant_months(MeteringOf::All, "2024-01", first, &[a, b], d("2024-01-31")).await.unwrap();
            assert_eq!((again[&a], again[&b]), (want[&a], want[&b]));
            assert_eq!(db.daily_totals(MeteringOf::All, first, last).await.unwrap(), totals);
        }
    }
}
