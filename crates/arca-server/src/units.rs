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

/// A number of GB typed in a form, written back into it the same way.
pub fn gb_input_f64(gb: f64) -> String {
    if !gb.is_finite() || gb.abs() >= 1e15 {
        return gb.to_string();
    }
    gb_input((gb * 1e9).round() as i64)
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
}
