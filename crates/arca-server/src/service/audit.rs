//! Reading the audit log, written once for the JSON API, the console's page and its CSV export:
//! who may read which entries, and what a search may ask for.
//!
//! Provider staff read every tenant's entries; a tenant admin only their own tenant's. Every
//! parameter arrives as text from a query string and is checked here: dates must be real days,
//! texts are cut to [`MAX_TEXT`] characters, a page holds at most [`MAX_PAGE`] entries.

use chrono::NaiveDate;
use serde::Deserialize;

use super::{forbidden, tenant_for, Caller};
use crate::access::is_staff;
use crate::db::accounts::Role;
use crate::db::audit::{AuditCursor, AuditEntry, AuditFilter};
use crate::errors::ApiError;
use crate::state::AppState;

/// The longest search text used.
pub const MAX_TEXT: usize = 100;
/// The most entries one page (or one API answer) holds.
pub const MAX_PAGE: i64 = 1000;

/// A search of the audit log as a query string carries it. Empty values mean "any".
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AuditSearch {
    /// A tenant's short name.
    #[serde(default)]
    pub tenant: String,
    /// `ok`, `denied` or `failed`.
    #[serde(default)]
    pub outcome: String,
    /// Actions starting with this (`tenant.`, `login`).
    #[serde(default)]
    pub action: String,
    /// Actors containing this (`user:ann`, `device:`).
    #[serde(default)]
    pub actor: String,
    /// Targets or details containing this.
    #[serde(default)]
    pub text: String,
    /// The first day (`YYYY-MM-DD`, UTC).
    #[serde(default)]
    pub from: String,
    /// The last day, included.
    #[serde(default)]
    pub to: String,
    /// Entries older than this id (the next page down).
    #[serde(default)]
    pub before: Option<i64>,
    /// Entries newer than this id (the page above).
    #[serde(default)]
    pub after: Option<i64>,
}

/// One page of a search.
#[derive(Debug, Clone)]
pub struct AuditPage {
    /// Newest first.
    pub entries: Vec<AuditEntry>,
    /// Whether there are newer matching entries than the first shown.
    pub has_newer: bool,
    /// Whether there are older matching entries than the last shown.
    pub has_older: bool,
}

fn day(text: &str, field: &str) -> Result<Option<NaiveDate>, ApiError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map(Some)
        .map_err(|_| ApiError::bad_request(format!("{field} must be a day as YYYY-MM-DD, not {text:?}")))
}

fn text(value: &str) -> Option<String> {
    let v: String = value.trim().chars().filter(|c| !c.is_control()).take(MAX_TEXT).collect();
    Some(v).filter(|v| !v.is_empty())
}

impl AuditSearch {
    /// The database filter this search means for `caller`: a tenant admin's search is kept to
    /// their own tenant, whatever it asked for.
    pub async fn filter(&self, state: &AppState, caller: &Caller) -> Result<AuditFilter, ApiError> {
        let p = &caller.principal;
        let reseller_id = crate::access::reseller_of(p);
        if !is_staff(p) && p.role != Role::TenantAdmin && reseller_id.is_none() {
            return Err(forbidden("read the audit log"));
        }
        let tenant_id = match (self.tenant.trim(), is_staff(p) || reseller_id.is_some()) {
            ("", true) => None,
            ("", false) => p.tenant_id,
            (t, _) => Some(tenant_for(state, caller, t, false).await?.id),
        };
        let outcome = match self.outcome.trim() {
            "" => None,
            o @ ("ok" | "denied" | "failed") => Some(o.to_string()),
            o => return Err(ApiError::bad_request(format!("outcome is ok, denied or failed, not {o:?}"))),
        };
        let (from, to) = (day(&self.from, "from")?, day(&self.to, "to")?);
        if let (Some(f), Some(t)) = (from, to) {
            if t < f {
                return Err(ApiError::bad_request(format!("the range ends ({t}) before it starts ({f})")));
            }
        }
        let start = |d: NaiveDate| d.and_hms_opt(0, 0, 0).map(|t| t.and_utc().timestamp());
        Ok(AuditFilter {
            tenant_id,
            reseller_id,
            outcome,
            action: text(&self.action),
            actor: text(&self.actor),
            text: text(&self.text),
            from: from.and_then(start),
            until: to.and_then(|d| d.succ_opt()).and_then(start),
        })
    }

    /// Where the page starts.
    pub fn cursor(&self) -> AuditCursor {
        match (self.before, self.after) {
            (Some(b), _) if b > 0 => AuditCursor::Before(b),
            (_, Some(a)) if a >= 0 => AuditCursor::After(a),
            _ => AuditCursor::Newest,
        }
    }
}

/// One page of at most `limit` entries of the search, with whether more lie either side.
pub async fn search(state: &AppState, caller: &Caller, q: &AuditSearch, limit: i64) -> Result<AuditPage, ApiError> {
    let filter = q.filter(state, caller).await?;
    let limit = limit.clamp(1, MAX_PAGE);
    let cursor = q.cursor();
    // One more than shown tells whether another page follows in the direction read.
    let mut entries = state.db().audit_search(&filter, cursor, limit + 1).await.map_err(ApiError::from_db)?;
    let more = entries.len() as i64 > limit;
    if more {
        match cursor {
            // Read upwards and reversed to newest-first: the extra one is the newest.
            AuditCursor::After(_) => {
                entries.remove(0);
            }
            _ => {
                entries.pop();
            }
        }
    }
    let (has_newer, has_older) = match cursor {
        AuditCursor::Newest => (false, more),
        AuditCursor::Before(_) => (true, more),
        AuditCursor::After(_) => (more, true),
    };
    Ok(AuditPage { entries, has_newer, has_older })
}

/// The CSV header of [`csv_rows`].
pub const CSV_HEADER: &str = "id,time_utc,actor,tenant,action,target,outcome,detail,request_id\n";

/// A CSV field: quoted when it holds a comma, quote or line break, and with a leading `'` when
/// a spreadsheet would take it for a formula (`=`, `+`, `-`, `@`): the log holds what users typed.
fn field(out: &mut String, value: &str) {
    let formula = value.starts_with(['=', '+', '-', '@', '\t', '\r']);
    if formula || value.contains([',', '"', '\n', '\r']) {
        out.push('"');
        if formula {
            out.push('\'');
        }
        out.push_str(&value.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(value);
    }
}

/// Entries as CSV lines (without the header).
pub fn csv_rows(entries: &[AuditEntry]) -> String {
    let mut out = String::with_capacity(entries.len() * 160);
    for e in entries {
        let when = chrono::DateTime::from_timestamp(e.at, 0).map_or(e.at.to_string(), |d| d.to_rfc3339());
        out.push_str(&format!("{},{when},", e.id));
        for (i, v) in
            [&e.actor, e.tenant.as_deref().unwrap_or(""), &e.action, &e.target, &e.outcome, &e.detail, &e.request_id]
                .into_iter()
                .enumerate()
        {
            if i > 0 {
                out.push(',');
            }
            field(&mut out, v);
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        let e = AuditEntry {
            id: 7,
            at: 0,
            actor: "user:ann".into(),
            tenant: Some("acme".into()),
            action: "tenant.create".into(),
            target: "=HYPERLINK(\"x\")".into(),
            outcome: "ok".into(),
            detail: "a, \"b\"\nc".into(),
            request_id: "r1".into(),
        };
        assert_eq!(
            csv_rows(&[e]),
            "7,1970-01-01T00:00:00+00:00,user:ann,acme,tenant.create,\"'=HYPERLINK(\"\"x\"\")\",ok,\"a, \"\"b\"\"\nc\",r1\n"
        );
    }

    #[test]
    fn days_must_be_days() {
        assert!(day("2026-02-30", "from").is_err());
        assert!(day("yesterday", "from").is_err());
        assert_eq!(day(" ", "from").unwrap(), None);
        assert_eq!(day("2026-12-01", "to").unwrap(), NaiveDate::from_ymd_opt(2026, 12, 1));
        assert_eq!(text(&"x".repeat(5000)).unwrap().len(), MAX_TEXT);
    }
}
