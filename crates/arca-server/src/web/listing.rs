//! Search, sort and paging for the console's lists, one way for every list: the query parameters
//! `q` (search), `sort`, `dir` (`asc`/`desc`) and `page`, each under a prefix when a page has
//! several lists (`devices_q`, `users_page`, …), and every link keeps the page's other parameters.
//!
//! A list page never fails on its query: a malformed or out-of-range value falls back to its
//! default, so a hand-edited address still shows the list. Search text is cut at
//! [`MAX_SEARCH_CHARS`] before it reaches the database.

use std::collections::{BTreeMap, HashMap};

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::Serialize;

/// Rows on one page of a list.
pub(super) const PAGE_SIZE: i64 = 50;
/// The longest search text used (longer is cut).
pub(super) const MAX_SEARCH_CHARS: usize = 100;
/// The highest page number accepted; beyond it the last page is shown anyway.
const MAX_PAGE: i64 = 1_000_000;

/// One list's search, order and page, read from a page's query parameters.
#[derive(Debug, Clone)]
pub(super) struct Listing {
    prefix: String,
    path: String,
    /// The search text (trimmed, at most [`MAX_SEARCH_CHARS`]).
    pub(super) q: String,
    /// The sort key: one of the list's keys.
    pub(super) sort: String,
    /// Largest (or latest) first.
    pub(super) desc: bool,
    /// 1-based page number.
    pub(super) page: i64,
    sorts: Vec<&'static str>,
    /// The page's other parameters, kept in every link.
    others: Vec<(String, String)>,
}

/// A list as templates see it: the search box's value, the column headers' links and the pager.
#[derive(Debug, Clone, Serialize)]
pub(super) struct ListView {
    /// The parameters' prefix (`""` or `devices_`).
    prefix: String,
    q: String,
    sort: String,
    dir: &'static str,
    /// Per sort key: the link that sorts by it, and ▲/▼ on the current one.
    sorts: BTreeMap<&'static str, SortLink>,
    /// The page's other parameters, as hidden fields of the search form.
    keep: Vec<(String, String)>,
    /// The address that clears the search.
    clear: String,
    page: i64,
    pages: i64,
    /// 1-based index of the first row shown (0 when none).
    first: i64,
    last: i64,
    total: i64,
    prev: Option<String>,
    next: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
struct SortLink {
    href: String,
    mark: &'static str,
}

/// What a query string's keys and values keep unencoded (RFC 3986's unreserved characters).
pub(super) const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

pub(super) fn encode(s: &str) -> String {
    utf8_percent_encode(s, QUERY_VALUE).to_string()
}

impl Listing {
    /// The list at `path` whose parameters start with `prefix`, sortable by `sorts` (the first is
    /// the default order, ascending unless `default_desc`).
    pub(super) fn new(
        path: &str,
        prefix: &str,
        params: &HashMap<String, String>,
        sorts: &[&'static str],
        default_desc: bool,
    ) -> Self {
        let get = |k: &str| params.get(&format!("{prefix}{k}")).map(|v| v.trim()).unwrap_or("");
        let q: String = get("q").chars().filter(|c| !c.is_control()).take(MAX_SEARCH_CHARS).collect();
        let sort = sorts.iter().find(|s| **s == get("sort")).or(sorts.first()).copied().unwrap_or("").to_string();
        let desc = match get("dir") {
            "desc" => true,
            "asc" => false,
            _ => default_desc,
        };
        let page = get("page").parse::<i64>().unwrap_or(1).clamp(1, MAX_PAGE);
        let own = ["q", "sort", "dir", "page"].map(|k| format!("{prefix}{k}"));
        let mut others: Vec<(String, String)> = params
            .iter()
            .filter(|(k, _)| !own.contains(k) && k.len() <= 64)
            .map(|(k, v)| (k.clone(), v.chars().take(MAX_SEARCH_CHARS).collect()))
            .collect();
        others.sort();
        Listing {
            prefix: prefix.to_string(),
            path: path.to_string(),
            q: q.trim().to_string(),
            sort,
            desc,
            page,
            sorts: sorts.to_vec(),
            others,
        }
    }

    /// The search text, if any.
    pub(super) fn search(&self) -> Option<&str> {
        Some(self.q.as_str()).filter(|q| !q.is_empty())
    }

    /// Rows before this page.
    pub(super) fn offset(&self) -> i64 {
        (self.page - 1) * PAGE_SIZE
    }

    /// The address of this list with `q`, `sort`, `desc` and `page` (the defaults left out).
    fn href(&self, q: &str, sort: &str, desc: bool, page: i64) -> String {
        let p = &self.prefix;
        let mut parts: Vec<String> = self.others.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect();
        if !q.is_empty() {
            parts.push(format!("{p}q={}", encode(q)));
        }
        parts.push(format!("{p}sort={}&{p}dir={}", encode(sort), if desc { "desc" } else { "asc" }));
        if page > 1 {
            parts.push(format!("{p}page={page}"));
        }
        format!("{}?{}", self.path, parts.join("&"))
    }

    /// The view of a page showing `shown` rows out of `total` matching ones.
    pub(super) fn view(&self, total: i64, shown: usize) -> ListView {
        let pages = ((total + PAGE_SIZE - 1) / PAGE_SIZE).max(1);
        let page = self.page.min(pages);
        let first = if shown == 0 { 0 } else { (page - 1) * PAGE_SIZE + 1 };
        let sorts = self
            .sorts
            .iter()
            .map(|k| {
                let current = *k == self.sort;
                // A click on the current column turns the order round; on another, it starts
                // ascending (names) or descending (sizes and dates, listed by `sort_starts_desc`).
                let desc = if current { !self.desc } else { sort_starts_desc(k) };
                let mark = match (current, self.desc) {
                    (false, _) => "",
                    (true, false) => " ▲",
                    (true, true) => " ▼",
                };
                (*k, SortLink { href: self.href(&self.q, k, desc, 1), mark })
            })
            .collect();
        let mut keep = self.others.clone();
        keep.push((format!("{}sort", self.prefix), self.sort.clone()));
        keep.push((format!("{}dir", self.prefix), if self.desc { "desc" } else { "asc" }.to_string()));
        ListView {
            prefix: self.prefix.clone(),
            q: self.q.clone(),
            sort: self.sort.clone(),
            dir: if self.desc { "desc" } else { "asc" },
            sorts,
            keep,
            clear: self.href("", &self.sort, self.desc, 1),
            page,
            pages,
            first,
            last: if shown == 0 { 0 } else { first + shown as i64 - 1 },
            total,
            prev: (page > 1).then(|| self.href(&self.q, &self.sort, self.desc, page - 1)),
            next: (page < pages).then(|| self.href(&self.q, &self.sort, self.desc, page + 1)),
        }
    }

    /// This page of `rows`, already searched and sorted in memory, and the list's view: for
    /// lists bounded per tenant (devices, users, a folder's entries), which are read whole.
    pub(super) fn page_of<T>(&self, rows: Vec<T>) -> (Vec<T>, ListView) {
        let total = rows.len() as i64;
        let pages = ((total + PAGE_SIZE - 1) / PAGE_SIZE).max(1);
        let start = ((self.page.min(pages) - 1) * PAGE_SIZE) as usize;
        let shown: Vec<T> = rows.into_iter().skip(start).take(PAGE_SIZE as usize).collect();
        let view = self.view(total, shown.len());
        (shown, view)
    }

    /// Whether `text` matches the search (case-insensitively; no search matches everything).
    pub(super) fn matches(&self, texts: &[&str]) -> bool {
        match self.search() {
            None => true,
            Some(q) => {
                let q = q.to_lowercase();
                texts.iter().any(|t| t.to_lowercase().contains(&q))
            }
        }
    }

    /// Sorts `rows` by `key` in the listing's direction (stable, so equal keys keep their order).
    pub(super) fn sort_by<T, K: Ord>(&self, rows: &mut [T], key: impl Fn(&T) -> K) {
        rows.sort_by(|a, b| {
            let o = key(a).cmp(&key(b));
            if self.desc {
                o.reverse()
            } else {
                o
            }
        });
    }
}

/// Sort keys whose first click shows the largest or latest first.
fn sort_starts_desc(key: &str) -> bool {
    matches!(key, "stored" | "quota" | "created" | "size" | "modified" | "seen" | "last_backup" | "total")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn hostile_queries_fall_back_to_defaults() {
        let long = "x".repeat(10_000);
        let p = params(&[("q", &long), ("sort", "name; DROP TABLE tenants"), ("page", "-5"), ("dir", "sideways")]);
        let l = Listing::new("/console/tenants", "", &p, &["name", "stored"], false);
        assert_eq!(l.q.chars().count(), MAX_SEARCH_CHARS);
        assert_eq!(l.sort, "name");
        assert_eq!(l.page, 1);
        assert!(!l.desc);
        let l = Listing::new("/x", "", &params(&[("page", "99999999999999999999")]), &["name"], false);
        assert_eq!(l.page, 1, "an unparsable page is the first");
        let l = Listing::new("/x", "", &params(&[("page", "9000000")]), &["name"], false);
        assert_eq!(l.page, MAX_PAGE);
        assert_eq!(l.view(120, 0).page, 3, "past the end shows the last page");
    }

    #[test]
    fn pages_links_and_sorting() {
        let p = params(&[("q", "a b"), ("page", "2"), ("sort", "stored"), ("dir", "desc"), ("users_page", "3")]);
        let l = Listing::new("/tenants/acme", "", &p, &["name", "stored"], false);
        let v = l.view(120, 50);
        assert_eq!((v.page, v.pages, v.first, v.last, v.total), (2, 3, 51, 100, 120));
        assert_eq!(v.prev.as_deref(), Some("/tenants/acme?users_page=3&q=a%20b&sort=stored&dir=desc"));
        assert_eq!(v.next.as_deref(), Some("/tenants/acme?users_page=3&q=a%20b&sort=stored&dir=desc&page=3"));
        assert_eq!(v.sorts["stored"].mark, " ▼");
        assert!(v.sorts["stored"].href.contains("dir=asc"), "clicking the current column turns it round");
        assert!(v.sorts["name"].href.contains("sort=name&dir=asc"));
        let (rows, v) = l.page_of((1..=120).collect::<Vec<i32>>());
        assert_eq!(rows.first(), Some(&51));
        assert_eq!(rows.len(), 50);
        assert!(v.next.is_some());
        let mut r = vec![3, 1, 2];
        l.sort_by(&mut r, |x| *x);
        assert_eq!(r, [3, 2, 1]);
        assert!(l.matches(&["xx", "A B c"]));
        assert!(!l.matches(&["ab"]));
    }

    #[test]
    fn a_prefixed_list_keeps_the_other_lists_parameters() {
        let p = params(&[("devices_q", "lap"), ("users_q", "bob"), ("devices_page", "2")]);
        let l = Listing::new("/tenants/acme", "devices_", &p, &["name"], false);
        assert_eq!(l.q, "lap");
        assert_eq!(l.page, 2);
        let v = l.view(60, 10);
        assert!(v.prev.unwrap().starts_with("/tenants/acme?users_q=bob&devices_q=lap"));
    }
}
