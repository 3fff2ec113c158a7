//! Sizes for people, as the server's messages, pages and `arca admin` show them.
//!
//! One convention everywhere the provider and its customers read sizes: decimal units (1 GB =
//! 10^9 bytes), because plans, quotas and prices are typed and billed per GB. A quota typed as
//! 50 GB shows as "50.0 GB", not "46.6 GiB".

/// Bytes in decimal units with one decimal ("512 B", "3.1 MB", "1.2 TB").
pub fn human_bytes(n: i64) -> String {
    const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut v = n as f64;
    let mut u = 0;
    while v.abs() >= 999.95 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Cents as an amount: `1234.56`, `-2.50`, `0.05` (the currency is shown beside it: [`amount`]).
pub fn money(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let c = cents.unsigned_abs();
    format!("{sign}{}.{:02}", c / 100, c % 100)
}

/// Cents with their currency code: `1234.56 EUR`.
pub fn amount(cents: i64, currency: &str) -> String {
    format!("{} {currency}", money(cents))
}

/// Bytes as a number of GB for a form's input: at most three decimals, no trailing zeros
/// ("50", "53.687", "0.5").
pub fn gb_input(n: i64) -> String {
    let s = format!("{:.3}", n as f64 / 1e9);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-" {
        "0".into()
    } else {
        s.to_string()
    }
}

/// The most GB a form's size field accepts: 10^9 GB (an exabyte), far above any quota yet well
/// inside `i64` bytes (about 9.2 × 10^9 GB).
pub const MAX_FORM_GB: f64 = 1e9;

/// A size typed in a form as a number of GB (decimal; empty is 0, "no limit" where 0 means
/// that), as bytes; the error names the field `what` and says what was wrong. The one parser
/// behind every GB box (plans, tenant quotas, reseller capacity).
pub fn parse_gb(what: &str, typed: &str) -> Result<i64, String> {
    let t = typed.trim();
    if t.is_empty() {
        return Ok(0);
    }
    let gb: f64 = t.parse().map_err(|_| format!("{what}: {t:?} is not a number of GB"))?;
    if !gb.is_finite() || gb < 0.0 {
        return Err(format!("{what} cannot be negative"));
    }
    if gb > MAX_FORM_GB {
        return Err(format!("{what}: {t} GB is too large"));
    }
    Ok((gb * 1e9).round() as i64)
}

/// The same with the exact count in parentheses, for messages about quotas.
pub fn human_bytes_exact(n: i64) -> String {
    if n.abs() < 1000 {
        human_bytes(n)
    } else {
        format!("{} ({n} bytes)", human_bytes(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_bytes(10), "10 B");
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(3 * 1024 * 1024), "3.1 MB");
        assert_eq!(human_bytes(5_000_000_000), "5.0 GB");
        assert_eq!(human_bytes(999_960_000), "1.0 GB", "never \"1000.0 MB\"");
        assert_eq!(human_bytes_exact(10), "10 B");
        assert_eq!(human_bytes_exact(3_000_000), "3.0 MB (3000000 bytes)");
        assert_eq!(gb_input(50_000_000_000), "50");
        assert_eq!(gb_input(53_687_091_200), "53.687");
        assert_eq!(gb_input(500_000_000), "0.5");
        assert_eq!(gb_input(0), "0");
    }

    #[test]
    fn gb_boxes_read_one_way() {
        assert_eq!(parse_gb("quota", " 50 "), Ok(50_000_000_000));
        assert_eq!(parse_gb("quota", "0.5"), Ok(500_000_000));
        assert_eq!(parse_gb("quota", ""), Ok(0));
        assert_eq!(parse_gb("quota", "1e9"), Ok(1_000_000_000_000_000_000), "an exabyte");
        let refused = [
            ("-1", "negative"),
            ("abc", "not a number"),
            ("NaN", "negative"),
            ("inf", "negative"),
            ("1e10", "too large"),
        ];
        for (typed, word) in refused {
            let e = parse_gb("hard quota", typed).unwrap_err();
            assert!(e.starts_with("hard quota") && e.contains(word), "{typed}: {e}");
        }
    }
}
