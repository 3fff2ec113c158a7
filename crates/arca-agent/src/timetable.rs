//! When the plan's next backup is due: the cron schedule's next slot after the last one run,
//! plus this agent's own offset inside the plan's start window, so the agents of one plan spread
//! their starts instead of all hitting the server at the same second.

use std::str::FromStr;

use chrono::{Local, TimeZone};

/// A plan's schedule for one agent.
#[derive(Debug, Clone)]
pub struct Timetable {
    cron: croner::Cron,
    offset: i64,
}

impl Timetable {
    /// The timetable of `schedule` for the agent `device`, whose offset is a fixed fraction of
    /// `start_window_minutes` derived from its name (stable across restarts).
    pub fn new(schedule: &str, start_window_minutes: u32, device: &str) -> Result<Timetable, String> {
        let cron = croner::Cron::from_str(schedule.trim()).map_err(|e| format!("schedule {schedule:?}: {e}"))?;
        let window = i64::from(start_window_minutes) * 60;
        let hash = blake3::hash(device.as_bytes());
        let n = u64::from_le_bytes(hash.as_bytes()[..8].try_into().unwrap_or([0; 8]));
        let offset = if window > 0 { (n % window as u64) as i64 } else { 0 };
        Ok(Timetable { cron, offset })
    }

    /// This agent's offset in seconds.
    pub fn offset(&self) -> i64 {
        self.offset
    }

    /// When the first run after `last_slot` (Unix seconds) is due: the next slot plus the offset.
    /// A due time in the past means a run was missed (sleep, downtime): run now, once.
    pub fn due_after(&self, last_slot: i64) -> Option<i64> {
        // The slot is found from (last run start − offset), so a run that started at
        // slot + offset does not count its own slot again.
        let from = Local.timestamp_opt(last_slot - self.offset, 0).single()?;
        let next = self.cron.find_next_occurrence(&from, false).ok()?;
        Some(next.timestamp() + self.offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_spread_agents_inside_the_window() {
        let offsets: Vec<i64> =
            (0..200).map(|i| Timetable::new("0 1 * * *", 30, &format!("pc{i}")).unwrap().offset()).collect();
        assert!(offsets.iter().all(|&o| (0..1800).contains(&o)));
        let first_minute = offsets.iter().filter(|&&o| o < 60).count();
        assert!(first_minute < 30, "{first_minute} of 200 agents would start in the same minute");
        assert_eq!(Timetable::new("0 1 * * *", 0, "x").unwrap().offset(), 0);
        assert_eq!(
            Timetable::new("0 1 * * *", 30, "pc1").unwrap().offset(),
            Timetable::new("0 1 * * *", 30, "pc1").unwrap().offset(),
            "stable across restarts"
        );
    }

    #[test]
    fn the_next_run_follows_the_last_and_a_missed_one_is_due_at_once() {
        let t = Timetable::new("0 * * * *", 10, "pc").unwrap();
        let hour = 3600;
        let base = Local.with_ymd_and_hms(2026, 3, 2, 10, 0, 0).unwrap().timestamp();
        let ran = base + t.offset();
        assert_eq!(t.due_after(ran), Some(base + hour + t.offset()), "the next hour's slot");
        // Asleep from 10:00 to 15:30: the 11:00 run is due (in the past), so it runs on waking.
        let due = t.due_after(ran).unwrap();
        assert!(due < base + 5 * hour + 1800);
        assert!(Timetable::new("not cron", 0, "x").is_err());
    }
}
