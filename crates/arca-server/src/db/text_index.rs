//! The audit log's free-text index: finding a string anywhere in an entry's target or detail
//! without reading every entry (a million entries took half a second by `LIKE '%…%'` alone).
//!
//! Trigram indexes, because the search is for any substring (a token, half a repository name, a
//! request id), not for words:
//!
//! - SQLite: an FTS5 table with the `trigram` tokenizer over `audit_log` (external content: the
//!   text is not stored twice), filled by a trigger on insert (the log is append-only) and built
//!   once from the existing entries. A search of three characters or more narrows the entries to
//!   the index's matches first; `LIKE` still decides, so the results are exactly those of the
//!   scan.
//! - PostgreSQL: `pg_trgm` GIN indexes on the lower-cased columns, which the planner uses for the
//!   same `LIKE` conditions. Creating the extension needs the database's owner (it is a trusted
//!   extension); where that is refused the server logs how to add it and searches by scanning.
//!
//! Checked at every start under the schema lock ([`super::schema::migrate`]), inside a savepoint:
//! a database that cannot have the index still starts.

use super::{Dialect, Result};

type Tx = sqlx::Transaction<'static, sqlx::Any>;

const SQLITE_TABLE: &str = "CREATE VIRTUAL TABLE audit_text USING fts5(target, detail, content = 'audit_log', \
     content_rowid = 'id', tokenize = 'trigram')";
const SQLITE_TRIGGER: &str = "CREATE TRIGGER audit_text_insert AFTER INSERT ON audit_log BEGIN \
     INSERT INTO audit_text (rowid, target, detail) VALUES (new.id, new.target, new.detail); END";
const SQLITE_BUILD: &str = "INSERT INTO audit_text (audit_text) VALUES ('rebuild')";

const POSTGRES: [&str; 3] = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "CREATE INDEX IF NOT EXISTS audit_target_trgm ON audit_log USING gin (LOWER(target) gin_trgm_ops)",
    "CREATE INDEX IF NOT EXISTS audit_detail_trgm ON audit_log USING gin (LOWER(detail) gin_trgm_ops)",
];

/// Makes sure the index exists; returns whether it does. Runs in the migration's transaction.
pub(super) async fn ensure(tx: &mut Tx, dialect: Dialect) -> Result<bool> {
    if exists(tx, dialect).await? {
        return Ok(true);
    }
    sqlx::query("SAVEPOINT audit_text_index").execute(&mut **tx).await?;
    let statements: Vec<&str> = match dialect {
        Dialect::Sqlite => vec![SQLITE_TABLE, SQLITE_TRIGGER, SQLITE_BUILD],
        Dialect::Postgres => POSTGRES.to_vec(),
    };
    for s in statements {
        if let Err(e) = sqlx::query(s).execute(&mut **tx).await {
            sqlx::query("ROLLBACK TO SAVEPOINT audit_text_index").execute(&mut **tx).await?;
            sqlx::query("RELEASE SAVEPOINT audit_text_index").execute(&mut **tx).await?;
            let how = match dialect {
                Dialect::Sqlite => "this SQLite lacks FTS5's trigram tokenizer (3.34 or newer)",
                Dialect::Postgres => {
                    "have the database's owner run `CREATE EXTENSION pg_trgm` in it, then restart the server"
                }
            };
            tracing::warn!("the audit log's free-text search will read every entry: {e}; {how}");
            return Ok(false);
        }
    }
    sqlx::query("RELEASE SAVEPOINT audit_text_index").execute(&mut **tx).await?;
    tracing::info!("built the audit log's free-text index");
    Ok(true)
}

async fn exists(tx: &mut Tx, dialect: Dialect) -> Result<bool> {
    let n: i64 = match dialect {
        Dialect::Sqlite => {
            sqlx::query_scalar("SELECT COUNT(*) FROM sqlite_master WHERE name IN ('audit_text', 'audit_text_insert')")
                .fetch_one(&mut **tx)
                .await?
        }
        Dialect::Postgres => {
            sqlx::query_scalar(
                "SELECT COUNT(*) FROM pg_indexes WHERE schemaname = current_schema() \
                 AND indexname IN ('audit_target_trgm', 'audit_detail_trgm')",
            )
            .fetch_one(&mut **tx)
            .await?
        }
    };
    Ok(n == 2)
}

/// The FTS5 query that finds `text` as a substring (a quoted phrase: with the trigram tokenizer
/// a phrase matches wherever its characters appear in a row), or `None` when the index cannot
/// help: fewer than three characters give no trigram.
pub(crate) fn sqlite_match(text: &str) -> Option<String> {
    (text.chars().count() >= 3).then(|| format!("\"{}\"", text.replace('"', "\"\"")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::audit::{AuditCursor, AuditFilter, NewAudit};
    use crate::db::testing::databases;

    #[test]
    fn phrases_are_quoted_and_short_text_is_left_to_the_scan() {
        assert_eq!(sqlite_match("ab"), None);
        assert_eq!(sqlite_match("abc").as_deref(), Some("\"abc\""));
        assert_eq!(sqlite_match("say \"hi\" OR x").as_deref(), Some("\"say \"\"hi\"\" OR x\""));
    }

    /// The index is there on both dialects, follows new entries, and a search through it finds
    /// exactly what the scan finds: any case, any substring, FTS5's own syntax taken literally,
    /// short strings too.
    #[tokio::test]
    async fn searches_through_the_index_find_what_a_scan_finds() {
        for (db, _guard) in databases().await {
            let mut tx = db.pool().begin().await.unwrap();
            assert!(exists(&mut tx, db.dialect()).await.unwrap(), "{:?}", db.dialect());
            drop(tx);
            let details = [
                "quota raised to 5 GB",
                "Token Revoked by admin",
                "say \"hi\" OR NEAR(x y)",
                "repository acme-files-2024 created",
                "100% of the quota",
            ];
            for (i, d) in details.iter().enumerate() {
                let target = format!("target-{i}");
                let e = NewAudit {
                    actor: "user:x",
                    action: "test",
                    target: &target,
                    outcome: "ok",
                    detail: d,
                    ..Default::default()
                };
                db.audit(e).await.unwrap();
            }
            let found = |text: &str| {
                let db = db.clone();
                let f = AuditFilter { text: Some(text.to_string()), ..Default::default() };
                async move {
                    let mut t: Vec<String> = db
                        .audit_search(&f, AuditCursor::Newest, 100)
                        .await
                        .unwrap()
                        .into_iter()
                        .map(|e| e.target)
                        .collect();
                    t.sort();
                    t
                }
            };
            assert_eq!(found("token revoked").await, ["target-1"]);
            assert_eq!(found("FILES-20").await, ["target-3"]);
            assert_eq!(found("\"hi\" or near(").await, ["target-2"]);
            assert_eq!(found("100%").await, ["target-4"]);
            assert_eq!(found("GB").await, ["target-0"], "two characters: the scan");
            assert_eq!(found("target-3").await, ["target-3"], "the target column too");
            assert!(found("nowhere to be found").await.is_empty());

            // Pages through the index, both ways, keep the log's order.
            for i in 0..25 {
                let (target, detail) = (format!("n{i:02}"), format!("needle {i}"));
                let e = NewAudit {
                    actor: "user:x",
                    action: "test",
                    target: &target,
                    outcome: "ok",
                    detail: &detail,
                    ..Default::default()
                };
                db.audit(e).await.unwrap();
            }
            let f = AuditFilter { text: Some("NEEDLE".into()), ..Default::default() };
            let names = |v: &[crate::db::audit::AuditEntry]| v.iter().map(|e| e.target.clone()).collect::<Vec<_>>();
            let first = db.audit_search(&f, AuditCursor::Newest, 10).await.unwrap();
            assert_eq!(names(&first), (15..25).rev().map(|i| format!("n{i:02}")).collect::<Vec<_>>());
            let second = db.audit_search(&f, AuditCursor::Before(first[9].id), 10).await.unwrap();
            assert_eq!(names(&second), (5..15).rev().map(|i| format!("n{i:02}")).collect::<Vec<_>>());
            let back = db.audit_search(&f, AuditCursor::After(second[0].id), 10).await.unwrap();
            assert_eq!(names(&back), names(&first));
        }
    }
}
