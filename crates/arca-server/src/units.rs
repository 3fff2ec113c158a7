//! Sizes for people, as the server's messages, pages and `arca admin` show them.

/// Bytes in binary units with one decimal ("512 B", "3.0 MiB", "1.2 TiB").
pub fn human_bytes(n: i64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v.abs() >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// The same with the exact count in parentheses, for messages about quotas.
pub fn human_bytes_exact(n: i64) -> String {
    if n.abs() < 1024 {
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
        assert_eq!(human_bytes(3 * 1024 * 1024), "3.0 MiB");
        assert_eq!(human_bytes(5_000_000_000), "4.7 GiB");
        assert_eq!(human_bytes_exact(10), "10 B");
        assert_eq!(human_bytes_exact(3 * 1024 * 1024), "3.0 MiB (3145728 bytes)");
    }
}
