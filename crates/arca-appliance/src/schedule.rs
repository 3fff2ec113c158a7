//! Cron schedules: when each share's next snapshot is due.

use std::str::FromStr;

use chrono::{DateTime, Local};

use crate::error::{Error, Result};

/// A parsed cron expression (five fields, or six with leading seconds), evaluated in local time
/// (croner handles daylight-saving changes).
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: croner::Cron,
    text: String,
}

impl Schedule {
    /// Parses `text` (`"0 */15 * * * *"`, `"30 2 * * *"`).
    pub fn parse(text: &str) -> Result<Schedule> {
        let cron = croner::Cron::from_str(text)
            .map_err(|e| Error::config(format!("schedule {text:?} is not a cron expression: {e}")))?;
        Ok(Schedule { cron, text: text.to_string() })
    }

    /// The first time strictly after `after` that the schedule fires.
    pub fn next_after(&self, after: DateTime<Local>) -> Option<DateTime<Local>> {
        self.cron.find_next_occurrence(&after, false).ok()
    }

    /// The expression as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn seconds_are_optional_and_next_is_strictly_later() {
        let s = Schedule::parse("*/5 * * * * *").unwrap();
        let t = Local.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap();
        assert_eq!(s.next_after(t).unwrap(), t + chrono::Duration::seconds(5));
        let hourly = Schedule::parse("0 * * * *").unwrap();
        assert_eq!(hourly.next_after(t).unwrap(), t + chrono::Duration::hours(1));
        assert!(Schedule::parse("every day").is_err());
        assert!(Schedule::parse("61 * * * *").is_err());
    }
}
