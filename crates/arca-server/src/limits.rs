//! The ranges of every number a client, a device or an admin may send, and the arithmetic that
//! meets the clock.
//!
//! Every figure that reaches the database or the clock passes one of these checks first, whatever
//! path it came by (JSON API, web form, CLI through the API): an out-of-range figure is refused
//! with a message naming the field and its range, never wrapped, clamped silently or stored. The
//! ranges are generous for real use and small enough that sums of them cannot overflow an `i64`
//! column (see the tests).

use std::fmt;

/// A figure outside its range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutOfRange {
    /// The field, as the caller named it.
    pub field: &'static str,
    /// The value sent.
    pub value: i64,
    /// The smallest accepted value.
    pub min: i64,
    /// The largest accepted value.
    pub max: i64,
}

impl fmt::Display for OutOfRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} must be between {} and {}; {} is out of range", self.field, self.min, self.max, self.value)
    }
}

impl std::error::Error for OutOfRange {}

/// Seconds in a day.
pub const DAY_SECS: i64 = 86_400;

/// Longest retention lock or retention period: 100 years. Regulations ask for ten at most.
pub const MAX_DAYS: i64 = 36_500;

/// Largest quota: 1 EiB (a tenant that needs more is not on one arca server).
pub const MAX_QUOTA_BYTES: i64 = 1 << 60;

/// Largest price in cents (a yearly price or an overage rate): 10^12 cents.
pub const MAX_CENTS: i64 = 1_000_000_000_000;

/// Largest logical size a single snapshot may claim: 64 PiB. The figure is the client's own claim
/// (the server cannot read the data to check it); bounding it keeps sums of it meaningful and far
/// from overflowing, and a device that claims more is refused rather than shown as negative.
pub const MAX_SNAPSHOT_LOGICAL: i64 = 1 << 56;

/// Longest display name (tenants, users), in characters.
pub const MAX_DISPLAY_NAME: usize = 100;

/// Largest tax rate, in basis points (100 %).
pub const MAX_TAX_BASIS_POINTS: i64 = 10_000;

/// Longest payment term of an invoice, in days.
pub const MAX_PAYMENT_DAYS: i64 = 365;

/// Longest line of an invoice's issuer details (name, one address line), in characters.
pub const MAX_ISSUER_TEXT: usize = 100;

/// Most address lines of an invoice's issuer.
pub const MAX_ADDRESS_LINES: usize = 6;

/// Longest tax id (VAT numbers are at most 14 characters; some countries add a prefix).
pub const MAX_TAX_ID: usize = 40;

/// Longest invoice number prefix.
pub const MAX_INVOICE_PREFIX: usize = 16;

/// Largest lock object: a lock is a few hundred bytes of JSON (host, pid, operation, times).
pub const MAX_LOCK_BYTES: u64 = 4096;

/// Most lock objects one repository may hold at once. Real use is one a running command; past
/// this the server first removes locks whose lease lapsed, then refuses.
pub const MAX_LOCKS_PER_REPO: i64 = 64;

/// Largest object of `kind` the server accepts. Packs and index files are the client's to size
/// (up to 1 GiB, the pack size ceiling the format allows); the small kinds are bounded tightly,
/// since every byte a device may write must be bounded and billed.
pub fn max_object_bytes(kind: arca_store::ObjectKind) -> u64 {
    use arca_store::ObjectKind as K;
    match kind {
        K::Config | K::Key => 64 << 10,
        K::Lock => MAX_LOCK_BYTES,
        K::Pending => 64 << 20,
        K::Snapshot => 256 << 20,
        K::DataPack | K::MetaPack | K::Index => crate::MAX_BODY as u64,
    }
}

/// Checks that `value` lies in `min..=max`.
pub fn in_range(field: &'static str, value: i64, min: i64, max: i64) -> Result<i64, OutOfRange> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(OutOfRange { field, value, min, max })
    }
}

/// A number of days (lock, retention): `0..=MAX_DAYS`.
pub fn days(field: &'static str, value: i64) -> Result<i64, OutOfRange> {
    in_range(field, value, 0, MAX_DAYS)
}

/// A quota in bytes: `0..=MAX_QUOTA_BYTES` (0 means none).
pub fn quota(field: &'static str, value: i64) -> Result<i64, OutOfRange> {
    in_range(field, value, 0, MAX_QUOTA_BYTES)
}

/// A price or rate in cents: `0..=MAX_CENTS`.
pub fn cents(field: &'static str, value: i64) -> Result<i64, OutOfRange> {
    in_range(field, value, 0, MAX_CENTS)
}

/// The first second at which something created at `created_at` is no longer under a lock of
/// `lock_days`. Saturates instead of wrapping, so a huge figure (from before the range checks, or
/// a damaged row) locks for ever rather than not at all.
pub fn lock_end(created_at: i64, lock_days: i64) -> i64 {
    created_at.saturating_add(lock_days.max(0).saturating_mul(DAY_SECS))
}

/// The time `days` days before `now`, saturating (for "older than" cut-offs).
pub fn days_before(now: i64, days: i64) -> i64 {
    now.saturating_sub(days.max(0).saturating_mul(DAY_SECS))
}

/// The longest suspension reason.
pub const MAX_REASON: usize = 300;

/// A short text for people (a reason, a support contact): trimmed, one line, at most `max`
/// characters; `what` names it in the error.
pub fn one_line(what: &str, value: &str, max: usize) -> Result<String, String> {
    let trimmed = value.trim();
    if trimmed.chars().any(char::is_control) {
        return Err(format!("{what} must be one line of text"));
    }
    let n = trimmed.chars().count();
    if n > max {
        return Err(format!("{what} is at most {max} characters; this one has {n}"));
    }
    Ok(trimmed.to_string())
}

/// A display name: trimmed, without control characters, at most [`MAX_DISPLAY_NAME`] characters.
pub fn display_name(value: &str) -> Result<String, String> {
    let trimmed = value.trim();
    if trimmed.chars().any(char::is_control) {
        return Err("a display name cannot hold control characters".into());
    }
    let n = trimmed.chars().count();
    if n > MAX_DISPLAY_NAME {
        return Err(format!("a display name is at most {MAX_DISPLAY_NAME} characters; this one has {n}"));
    }
    Ok(trimmed.to_string())
}

/// One line of free text (an issuer's name, an address line, a tax id): trimmed, without control
/// characters, at most `max` characters.
pub fn text_line(field: &str, value: &str, max: usize) -> Result<String, String> {
    let trimmed = value.trim();
    if trimmed.chars().any(char::is_control) {
        return Err(format!("{field} cannot hold control characters"));
    }
    let n = trimmed.chars().count();
    if n > max {
        return Err(format!("{field} is at most {max} characters; this one has {n}"));
    }
    Ok(trimmed.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_12_lock_overflow_is_refused_and_saturates() {
        // The figure that wrapped the lock check (issue 12, item 1).
        let attack = 106_751_991_147_000;
        assert!(days("lock_days", attack).is_err());
        assert!(days("lock_days", -1).is_err());
        assert_eq!(days("lock_days", MAX_DAYS), Ok(MAX_DAYS));
        // Even an unchecked value locks for ever instead of wrapping into the past.
        assert_eq!(lock_end(1_800_000_000, attack), i64::MAX, "wrapped when created in 2027");
        assert_eq!(lock_end(1_700_000_000, i64::MAX), i64::MAX);
        assert!(lock_end(1_700_000_000, attack) > 1_700_000_000);
        assert_eq!(lock_end(100, 1), 100 + DAY_SECS);
        assert!(days_before(100, i64::MAX) < -(1 << 62), "a cut-off far in the past, not a wrap into the future");
    }

    #[test]
    fn maxima_cannot_overflow_their_sums() {
        // Sums of many claims are kept from wrapping by the saturating meter (db::catalog); what
        // these ranges guarantee is headroom for the arithmetic done on one figure.
        assert!(MAX_SNAPSHOT_LOGICAL.checked_mul(64).is_some());
        assert!(MAX_QUOTA_BYTES.checked_mul(4).is_some());
        assert!(lock_end(i64::MAX / 2, MAX_DAYS) > 0);
    }

    #[test]
    fn display_names_are_bounded() {
        assert_eq!(display_name("  Acme  ").unwrap(), "Acme");
        assert!(display_name(&"x".repeat(100_000)).is_err());
        assert!(display_name("a\u{0}b").is_err());
        assert!(display_name(&"é".repeat(MAX_DISPLAY_NAME)).is_ok());
    }
}
