//! Scrub runs and their findings.
//!
//! At most one scrub runs at a time across every server process sharing the database: a unique
//! index over the `running` state makes a second start fail. A run whose process died stops
//! sending heartbeats and is marked `abandoned` by the next start.

use serde::Serialize;

use super::accounts::Repository;
use super::{col, is_unique_violation, now, Db, Result};

/// A run is abandoned when its heartbeat is older than this.
pub const STALE_SECS: i64 = 600;

/// One scrub run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScrubRun {
    /// Id.
    pub id: i64,
    /// `running`, `done`, `failed` or `abandoned`.
    pub state: String,
    /// `scheduled` or who asked.
    pub started_by: String,
    /// Unix seconds.
    pub started_at: i64,
    /// Unix seconds (0 while running).
    pub finished_at: i64,
    /// Objects read and verified so far.
    pub objects_checked: i64,
    /// Bytes read so far.
    pub bytes_checked: i64,
    /// Damaged objects found so far.
    pub damaged: i64,
}

/// A damaged object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The run that found it.
    pub run_id: i64,
    /// Tenant name.
    pub tenant: String,
    /// Repository name.
    pub repository: String,
    /// Kind directory.
    pub kind: String,
    /// Object name.
    pub name: String,
    /// What is wrong.
    pub problem: String,
    /// Unix seconds.
    pub found_at: i64,
}

impl Db {
    /// Starts a run, unless one is already running (then `None`).
    pub async fn start_scrub(&self, started_by: &str) -> Result<Option<i64>> {
        sqlx::query(
            "UPDATE scrub_runs SET state = 'abandoned', finished_at = $1 WHERE state = 'running' AND heartbeat_at < $2",
        )
        .bind(now())
        .bind(now() - STALE_SECS)
        .execute(self.pool())
        .await?;
        let inserted = sqlx::query_scalar(
            "INSERT INTO scrub_runs (state, started_by, started_at, heartbeat_at) VALUES ('running', $1, $2, $2) RETURNING id",
        )
        .bind(started_by)
        .bind(now())
        .fetch_one(self.pool())
        .await;
        match inserted {
            Ok(id) => Ok(Some(id)),
            Err(e) if is_unique_violation(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Records progress (and that the run is alive).
    pub async fn scrub_progress(&self, id: i64, objects: i64, bytes: i64, damaged: i64) -> Result<()> {
        sqlx::query(
            "UPDATE scrub_runs SET objects_checked = $1, bytes_checked = $2, damaged = $3, heartbeat_at = $4 WHERE id = $5",
        )
        .bind(objects)
        .bind(bytes)
        .bind(damaged)
        .bind(now())
        .bind(id)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Ends a run as `done` or `failed`.
    pub async fn finish_scrub(&self, id: i64, state: &str) -> Result<()> {
        sqlx::query("UPDATE scrub_runs SET state = $1, finished_at = $2, heartbeat_at = $2 WHERE id = $3")
            .bind(state)
            .bind(now())
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Records a damaged object.
    pub async fn add_finding(
        &self,
        run_id: i64,
        repo: &Repository,
        kind: &str,
        name: &str,
        problem: &str,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO scrub_findings (run_id, tenant_id, repo_id, kind, name, problem, found_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(run_id)
        .bind(repo.tenant_id)
        .bind(repo.id)
        .bind(kind)
        .bind(name)
        .bind(problem)
        .bind(now())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The newest runs first.
    pub async fn scrub_runs(&self, limit: i64) -> Result<Vec<ScrubRun>> {
        self.scrub_runs_seen_by(None, limit).await
    }

    /// The newest runs first, as one tenant may see them (`Some`): only its own damage is
    /// counted, and the server-wide totals (objects and bytes read) are left at 0, since they
    /// describe every other customer too. `None`: the provider's view, every figure.
    pub async fn scrub_runs_seen_by(&self, tenant_id: Option<i64>, limit: i64) -> Result<Vec<ScrubRun>> {
        let rows =
            match tenant_id {
                None => sqlx::query(
                    "SELECT id, state, started_by, started_at, finished_at, objects_checked, bytes_checked, damaged \
                     FROM scrub_runs ORDER BY id DESC LIMIT $1",
                )
                .bind(limit)
                .fetch_all(self.pool())
                .await?,
                Some(t) => {
                    sqlx::query(
                        "SELECT id, state, started_by, started_at, finished_at, CAST(0 AS BIGINT) AS objects_checked, \
                     CAST(0 AS BIGINT) AS bytes_checked, (SELECT COUNT(*) FROM scrub_findings f WHERE f.run_id = \
                     scrub_runs.id AND f.tenant_id = $1) AS damaged FROM scrub_runs ORDER BY id DESC LIMIT $2",
                    )
                    .bind(t)
                    .bind(limit)
                    .fetch_all(self.pool())
                    .await?
                }
            };
        rows.iter()
            .map(|r| {
                Ok(ScrubRun {
                    id: col(r, "id")?,
                    state: col(r, "state")?,
                    started_by: col(r, "started_by")?,
                    started_at: col(r, "started_at")?,
                    finished_at: col(r, "finished_at")?,
                    objects_checked: col(r, "objects_checked")?,
                    bytes_checked: col(r, "bytes_checked")?,
                    damaged: col(r, "damaged")?,
                })
            })
            .collect()
    }

    /// Findings of run `run_id`, of one tenant or all.
    pub async fn scrub_findings(&self, run_id: i64, tenant_id: Option<i64>) -> Result<Vec<Finding>> {
        let rows = sqlx::query(
            "SELECT f.run_id, t.name AS tenant, r.name AS repository, f.kind, f.name, f.problem, f.found_at \
             FROM scrub_findings f JOIN tenants t ON t.id = f.tenant_id JOIN repositories r ON r.id = f.repo_id \
             WHERE f.run_id = $1 AND ($2 = 0 OR f.tenant_id = $2) ORDER BY f.id",
        )
        .bind(run_id)
        .bind(tenant_id.unwrap_or(0))
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Finding {
                    run_id: col(r, "run_id")?,
                    tenant: col(r, "tenant")?,
                    repository: col(r, "repository")?,
                    kind: col(r, "kind")?,
                    name: col(r, "name")?,
                    problem: col(r, "problem")?,
                    found_at: col(r, "found_at")?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use crate::db::testing::databases;

    #[tokio::test]
    async fn one_run_at_a_time_and_stale_runs_are_abandoned() {
        for (db, _guard) in databases().await {
            let first = db.start_scrub("test").await.unwrap().unwrap();
            assert_eq!(db.start_scrub("test").await.unwrap(), None, "two scrubs at once");
            db.create_tenant("acme", "", None).await.unwrap();
            let repo = db.create_repository("acme", "r", None).await.unwrap();
            db.add_finding(first, &repo, "data", "ab", "corrupt").await.unwrap();
            db.scrub_progress(first, 10, 1000, 1).await.unwrap();
            db.finish_scrub(first, "done").await.unwrap();
            let second = db.start_scrub("test").await.unwrap().unwrap();
            // Its process "dies": no heartbeat for longer than the stale limit.
            sqlx::query("UPDATE scrub_runs SET heartbeat_at = 0 WHERE id = $1")
                .bind(second)
                .execute(db.pool())
                .await
                .unwrap();
            let third = db.start_scrub("test").await.unwrap().unwrap();
            let runs = db.scrub_runs(10).await.unwrap();
            let states: Vec<(i64, &str)> = runs.iter().map(|r| (r.id, r.state.as_str())).collect();
            assert_eq!(states, [(third, "running"), (second, "abandoned"), (first, "done")]);
            let findings = db.scrub_findings(first, Some(repo.tenant_id)).await.unwrap();
            assert_eq!(findings.len(), 1);
            assert_eq!((findings[0].repository.as_str(), findings[0].problem.as_str()), ("r", "corrupt"));
            assert!(db.scrub_findings(first, Some(repo.tenant_id + 100)).await.unwrap().is_empty());
        }
    }
}
