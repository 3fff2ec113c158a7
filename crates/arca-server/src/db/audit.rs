//! The audit log: who did what to whom, when, and whether it was allowed.
//!
//! Administrative actions, sign-ins, refused deletes, quota refusals and cross-tenant attempts
//! are recorded. Entries are only ever appended.

use serde::Serialize;

use super::{col, now, Db, Result};

/// One audit entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    /// Increasing id.
    pub id: i64,
    /// Unix seconds.
    pub at: i64,
    /// Who: `user:NAME`, `device:NAME@TENANT`, `anonymous` or `server`.
    pub actor: String,
    /// The tenant concerned, if any.
    pub tenant: Option<String>,
    /// What, e.g. `tenant.create`, `object.delete`, `login`.
    pub action: String,
    /// On what, e.g. a tenant or `repo/kind/name`.
    pub target: String,
    /// `ok`, `denied` or `failed`.
    pub outcome: String,
    /// Anything else worth knowing.
    pub detail: String,
    /// The request's id (also in the server log).
    pub request_id: String,
}

/// A new entry (id, time and tenant name are filled in).
#[derive(Debug, Clone, Default)]
pub struct NewAudit<'a> {
    /// Who.
    pub actor: &'a str,
    /// The tenant concerned.
    pub tenant_id: Option<i64>,
    /// What.
    pub action: &'a str,
    /// On what.
    pub target: &'a str,
    /// `ok`, `denied` or `failed`.
    pub outcome: &'a str,
    /// Details.
    pub detail: &'a str,
    /// The request id.
    pub request_id: &'a str,
}

impl Db {
    /// Appends an entry.
    pub async fn audit(&self, e: NewAudit<'_>) -> Result<()> {
        sqlx::query(
            "INSERT INTO audit_log (at, actor, tenant_id, action, target, outcome, detail, request_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(now())
        .bind(e.actor)
        .bind(e.tenant_id)
        .bind(e.action)
        .bind(e.target)
        .bind(e.outcome)
        .bind(e.detail)
        .bind(e.request_id)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Appends an entry for an action that already happened: a failure to write it is logged, not
    /// returned, since the action's answer must not change because its record could not be kept.
    /// Every front end records through this.
    pub async fn record(&self, e: NewAudit<'_>) {
        let (action, target) = (e.action, e.target);
        if let Err(err) = self.audit(e).await {
            tracing::error!("could not write the audit entry for {action} {target}: {err}");
        }
    }

    /// The newest entries first, of one tenant or of all (`None`), older than `before` (an id)
    /// when given.
    pub async fn audit_log(&self, tenant_id: Option<i64>, before: Option<i64>, limit: i64) -> Result<Vec<AuditEntry>> {
        let filter = AuditFilter { tenant_id, ..AuditFilter::default() };
        self.audit_search(&filter, before.map_or(AuditCursor::Newest, AuditCursor::Before), limit).await
    }
}

/// Which audit entries to show: every field narrows the search (all `None`: everything).
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// One tenant's entries.
    pub tenant_id: Option<i64>,
    /// One reseller's entries: those of its tenants and those its admins wrote.
    pub reseller_id: Option<i64>,
    /// `ok`, `denied` or `failed`.
    pub outcome: Option<String>,
    /// Actions starting with this (`tenant.` finds every tenant action).
    pub action: Option<String>,
    /// Actors containing this, case-insensitively.
    pub actor: Option<String>,
    /// Targets or details containing this, case-insensitively.
    pub text: Option<String>,
    /// From this Unix second on.
    pub from: Option<i64>,
    /// Before this Unix second.
    pub until: Option<i64>,
}

/// Where a page of the audit log starts: the newest, older than an entry, or newer than one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditCursor {
    /// The newest entries.
    Newest,
    /// Entries older than this id.
    Before(i64),
    /// Entries newer than this id (the page before, going back up).
    After(i64),
}

/// `text` lower-cased with `LIKE`'s own characters escaped (for `ESCAPE '\\'`).
pub(crate) fn like_escape(text: &str) -> String {
    let mut p = String::with_capacity(text.len() + 2);
    for c in text.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p
}

/// A `LIKE` pattern that finds `text` anywhere.
pub(crate) fn like_pattern(text: &str) -> String {
    format!("%{}%", like_escape(text))
}

impl Db {
    /// One page of the audit log matching `filter`, newest first, at most `limit` entries.
    ///
    /// Pages are found by id (keyset), not by offset, so the millionth entry costs what the
    /// first does. Every condition is bound, never spliced into the SQL.
    pub async fn audit_search(&self, filter: &AuditFilter, cursor: AuditCursor, limit: i64) -> Result<Vec<AuditEntry>> {
        // Where the trigram index can narrow a text search, it drives the query: its matches
        // newest first, each joined to its entry and checked against the other conditions, until
        // the page is full. A rare string reads only its matches; a common one stops after a
        // page ([`super::text_index`]).
        let phrase = filter
            .text
            .as_deref()
            .and_then(super::text_index::sqlite_match)
            .filter(|_| self.dialect() == super::Dialect::Sqlite && self.has_audit_text_index());
        let (from, order) = match phrase {
            Some(_) => ("audit_text($1) f JOIN audit_log a ON a.id = f.rowid", "f.rowid"),
            None => ("audit_log a", "a.id"),
        };
        let mut sql = format!(
            "SELECT a.id, a.at, a.actor, t.name AS tenant, a.action, a.target, a.outcome, a.detail, a.request_id \
             FROM {from} LEFT JOIN tenants t ON t.id = a.tenant_id WHERE 1 = 1"
        );
        let mut n = 0;
        let mut next = || {
            n += 1;
            n
        };
        let mut binds: Vec<Bind> = Vec::new();
        if let Some(p) = phrase {
            next();
            binds.push(Bind::Text(p));
        }
        if let Some(t) = filter.tenant_id {
            sql += &format!(" AND a.tenant_id = ${}", next());
            binds.push(Bind::Int(t));
        }
        if let Some(r) = filter.reseller_id {
            let (x, y) = (next(), next());
            sql += &format!(
                " AND (t.reseller_id = ${x} OR a.actor IN (SELECT 'user:' || u.name FROM users u WHERE u.reseller_id = ${y}))"
            );
            binds.push(Bind::Int(r));
            binds.push(Bind::Int(r));
        }
        if let Some(o) = &filter.outcome {
            sql += &format!(" AND a.outcome = ${}", next());
            binds.push(Bind::Text(o.clone()));
        }
        if let Some(a) = &filter.action {
            // A prefix: `action >= a AND action < a + U+10FFFF` would use an index; the log's
            // actions are few and short, so a LIKE on the narrowed rows is enough.
            sql += &format!(" AND a.action LIKE ${} ESCAPE '\\'", next());
            binds.push(Bind::Text(format!("{}%", like_escape(a))));
        }
        if let Some(a) = &filter.actor {
            sql += &format!(" AND LOWER(a.actor) LIKE ${} ESCAPE '\\'", next());
            binds.push(Bind::Text(like_pattern(a)));
        }
        if let Some(t) = &filter.text {
            // `LIKE` decides, also after the index (its matches are a superset). PostgreSQL's
            // planner uses its trigram indexes for these `LIKE`s.
            let (x, y) = (next(), next());
            sql += &format!(" AND (LOWER(a.target) LIKE ${x} ESCAPE '\\' OR LOWER(a.detail) LIKE ${y} ESCAPE '\\')");
            binds.push(Bind::Text(like_pattern(t)));
            binds.push(Bind::Text(like_pattern(t)));
        }
        if let Some(f) = filter.from {
            sql += &format!(" AND a.at >= ${}", next());
            binds.push(Bind::Int(f));
        }
        if let Some(u) = filter.until {
            sql += &format!(" AND a.at < ${}", next());
            binds.push(Bind::Int(u));
        }
        let ascending = matches!(cursor, AuditCursor::After(_));
        match cursor {
            AuditCursor::Newest => {}
            AuditCursor::Before(id) => {
                sql += &format!(" AND {order} < ${}", next());
                binds.push(Bind::Int(id));
            }
            AuditCursor::After(id) => {
                sql += &format!(" AND {order} > ${}", next());
                binds.push(Bind::Int(id));
            }
        }
        sql += &format!(" ORDER BY {order} {} LIMIT ${}", if ascending { "ASC" } else { "DESC" }, next());
        binds.push(Bind::Int(limit.clamp(1, 10_000)));
        // A text search is planned with its own pattern each time (not a cached generic plan,
        // which cannot know that the pattern is rare and would scan by id).
        let mut q = super::dyn_query(sql).persistent(filter.text.is_none());
        for b in binds {
            q = match b {
                Bind::Int(i) => q.bind(i),
                Bind::Text(t) => q.bind(t),
            };
        }
        let rows = q.fetch_all(self.pool()).await?;
        let mut entries = rows.iter().map(entry_from).collect::<Result<Vec<_>>>()?;
        if ascending {
            entries.reverse();
        }
        Ok(entries)
    }
}

/// A value bound to a statement built from optional conditions.
enum Bind {
    Int(i64),
    Text(String),
}

/// An entry from a row with the columns of `audit_log a` and `t.name AS tenant`.
pub(super) fn entry_from(r: &sqlx::any::AnyRow) -> Result<AuditEntry> {
    Ok(AuditEntry {
        id: col(r, "id")?,
        at: col(r, "at")?,
        actor: col(r, "actor")?,
        tenant: col(r, "tenant")?,
        action: col(r, "action")?,
        target: col(r, "target")?,
        outcome: col(r, "outcome")?,
        detail: col(r, "detail")?,
        request_id: col(r, "request_id")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::testing::databases;

    #[tokio::test]
    async fn entries_are_kept_per_tenant_newest_first() {
        for (db, _guard) in databases().await {
            let a = db.create_tenant("a", "", None).await.unwrap();
            let b = db.create_tenant("b", "", None).await.unwrap();
            for (t, action) in [(a.id, "one"), (b.id, "two"), (a.id, "three")] {
                let e = NewAudit { actor: "user:x", tenant_id: Some(t), action, outcome: "ok", ..Default::default() };
                db.audit(e).await.unwrap();
            }
            let of_a: Vec<String> =
                db.audit_log(Some(a.id), None, 10).await.unwrap().into_iter().map(|e| e.action).collect();
            assert_eq!(of_a, ["three", "one"]);
            let all = db.audit_log(None, None, 10).await.unwrap();
            assert_eq!(all.len(), 3);
            assert_eq!(all[1].tenant.as_deref(), Some("b"));
            assert_eq!(db.audit_log(None, Some(all[1].id), 10).await.unwrap().len(), 1);
        }
    }

    #[tokio::test]
    async fn searches_filter_in_the_database_and_page_by_id() {
        for (db, _guard) in databases().await {
            let a = db.create_tenant("a", "", None).await.unwrap();
            let entries = [
                ("user:Ann", "tenant.create", "acme", "ok", "web"),
                ("user:bob", "login", "bob", "denied", "wrong password"),
                ("device:x@a", "object.put", "repo/data/1", "denied", "quota 100% used"),
                ("user:ann", "tenant.set", "acme", "ok", "plan_a"),
                ("user:ann", "tenantXset", "acme", "ok", "plan-b"),
            ];
            for (actor, action, target, outcome, detail) in entries {
                let e = NewAudit { actor, tenant_id: Some(a.id), action, target, outcome, detail, request_id: "r" };
                db.audit(e).await.unwrap();
            }
            let find = |f: AuditFilter| {
                let db = db.clone();
                async move {
                    db.audit_search(&f, AuditCursor::Newest, 10)
                        .await
                        .unwrap()
                        .into_iter()
                        .map(|e| e.action)
                        .collect::<Vec<_>>()
                }
            };
            // A prefix whose `.` and `_` are matched literally, not as LIKE wildcards.
            let f = AuditFilter { action: Some("tenant.".into()), ..Default::default() };
            assert_eq!(find(f).await, ["tenant.set", "tenant.create"]);
            let f = AuditFilter { actor: Some("ANN".into()), ..Default::default() };
            assert_eq!(find(f).await, ["tenantXset", "tenant.set", "tenant.create"], "actors case-insensitively");
            let f = AuditFilter { text: Some("100%".into()), ..Default::default() };
            assert_eq!(find(f).await, ["object.put"], "% is literal");
            let f = AuditFilter { text: Some("plan_".into()), ..Default::default() };
            assert_eq!(find(f).await, ["tenant.set"], "_ is literal");
            let f = AuditFilter { outcome: Some("denied".into()), tenant_id: Some(a.id), ..Default::default() };
            assert_eq!(find(f).await, ["object.put", "login"]);
            let f = AuditFilter { from: Some(now() + 3600), ..Default::default() };
            assert!(find(f).await.is_empty(), "nothing from an hour ahead");
            let f = AuditFilter { from: Some(now() - 3600), until: Some(now() + 3600), ..Default::default() };
            assert_eq!(find(f).await.len(), 5);
            // Pages down and back up again by id.
            let all = db.audit_search(&AuditFilter::default(), AuditCursor::Newest, 10).await.unwrap();
            let older = db.audit_search(&AuditFilter::default(), AuditCursor::Before(all[1].id), 2).await.unwrap();
            assert_eq!(older.iter().map(|e| e.id).collect::<Vec<_>>(), [all[2].id, all[3].id]);
            let newer = db.audit_search(&AuditFilter::default(), AuditCursor::After(all[3].id), 2).await.unwrap();
            assert_eq!(
                newer.iter().map(|e| e.id).collect::<Vec<_>>(),
                [all[1].id, all[2].id],
                "newest first, the nearest two"
            );
        }
    }
}
