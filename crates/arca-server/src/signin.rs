//! Sign-in, the one path the JSON API (`POST /v1/auth/login`) and the web pages (`POST /login`)
//! share: throttling by client, the password check on the bounded pool, and the lockout rules.
//!
//! Throttling happens before any hashing, so a flood from one address costs a map lookup:
//! - a client address with [`CLIENT_FAILURES`] failed sign-ins in [`WINDOW`] is refused (429)
//!   whatever name it tries, so spraying many user names does not help;
//! - a (user name, client) pair with [`PAIR_FAILURES`] failures is refused for that name: one
//!   guesser locks out itself, not the real user signing in from elsewhere;
//! - a user name with [`crate::db::accounts::LOCKOUT_AFTER`] failures from all clients is locked
//!   for everyone (a guess spread over many addresses), and this holds for names that do not
//!   exist too, with the same message, so lockouts reveal nothing about which accounts exist.
//!
//! Counters live in this process's memory (bounded: the oldest are dropped past
//! [`MAX_TRACKED`]); the account-wide lock is also kept in the database so every server of a
//! scale-out group honours it and the console shows it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::db::accounts::{LoginOutcome, LOCKOUT_AFTER, LOCKOUT_SECS};
use crate::db::{now, DbError};
use crate::state::AppState;

/// Failed sign-ins one client address may make in [`WINDOW`], over all user names.
pub const CLIENT_FAILURES: u32 = 20;
/// Failed sign-ins one client address may make for one user name in [`WINDOW`].
pub const PAIR_FAILURES: u32 = 5;
/// How long failures are remembered (and a throttled client waits at most).
pub const WINDOW: Duration = Duration::from_secs(LOCKOUT_SECS as u64);
/// Counters kept at most; past that the oldest go (an attacker cycling addresses gains nothing
/// from this that cycling alone would not give).
pub const MAX_TRACKED: usize = 100_000;

#[derive(Clone, Copy)]
struct Count {
    failures: u32,
    since: Instant,
    /// Attempts refused while throttled (only the first of a window is audited).
    refused: u32,
}

/// The failure counters of this process.
#[derive(Default)]
pub struct Throttle {
    counts: Mutex<HashMap<Key, Count>>,
}

#[derive(Clone, PartialEq, Eq, Hash)]
enum Key {
    Client(Option<IpAddr>),
    Pair(String, Option<IpAddr>),
    Name(String),
}

impl Throttle {
    /// When the throttle on `keys` ends, if one applies; with `count`, the refusal is counted and
    /// the answer says whether it is the first of its window (the only one worth an audit entry:
    /// a flood must not turn into a flood of database writes).
    fn refused(&self, keys: &[(Key, u32)], at: Instant, count: bool) -> Option<(Instant, bool)> {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let mut found: Option<(Instant, bool)> = None;
        for (k, limit) in keys {
            if let Some(c) = counts.get_mut(k).filter(|c| c.failures >= *limit && at - c.since < WINDOW) {
                if count {
                    c.refused = c.refused.saturating_add(1);
                }
                let until = c.since + WINDOW;
                let first = c.refused <= 1;
                found = Some(match found {
                    Some((u, f)) => (u.max(until), f || first),
                    None => (until, first),
                });
            }
        }
        found
    }

    fn fail(&self, keys: &[(Key, u32)], at: Instant) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if counts.len() >= MAX_TRACKED {
            counts.retain(|_, c| at - c.since < WINDOW);
            if counts.len() >= MAX_TRACKED {
                counts.clear();
            }
        }
        for (k, _) in keys {
            let c = counts.entry(k.clone()).or_insert(Count { failures: 0, since: at, refused: 0 });
            if at - c.since >= WINDOW {
                *c = Count { failures: 0, since: at, refused: 0 };
            }
            c.failures += 1;
        }
    }

    /// Whether `client` is throttled for failed agent enrolments (the same per-address budget as
    /// sign-ins: [`CLIENT_FAILURES`] in [`WINDOW`]); `Some` has the seconds left and whether this
    /// refusal is the first of its window (the only one to audit).
    pub fn enrolment_refused(&self, client: Option<IpAddr>) -> Option<(u64, bool)> {
        let at = Instant::now();
        self.refused(&[(Key::Client(client), CLIENT_FAILURES)], at, true)
            .map(|(until, first)| (until.saturating_duration_since(at).as_secs().max(1), first))
    }

    /// Counts a failed enrolment of `client`.
    pub fn enrolment_failed(&self, client: Option<IpAddr>) {
        self.fail(&[(Key::Client(client), CLIENT_FAILURES)], Instant::now());
    }

    /// Forgets every failure counted against user `name` (an admin unlocked the account); the
    /// counts of client addresses stay.
    pub fn forget_name(&self, name: &str) {
        let name = name.to_lowercase();
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.retain(|k, _| match k {
            Key::Name(n) | Key::Pair(n, _) => *n != name,
            Key::Client(_) => true,
        });
    }

    fn succeed(&self, name: &str, client: Option<IpAddr>) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.remove(&Key::Pair(name.to_string(), client));
    }
}

fn keys(name: &str, client: Option<IpAddr>) -> [(Key, u32); 3] {
    let name = name.to_lowercase();
    [
        (Key::Client(client), CLIENT_FAILURES),
        (Key::Pair(name.clone(), client), PAIR_FAILURES),
        (Key::Name(name), LOCKOUT_AFTER as u32),
    ]
}

/// The result of a sign-in attempt.
pub struct SignIn {
    /// What the attempt came to. A throttled attempt is [`LoginOutcome::Locked`], answered
    /// without looking at the password.
    pub outcome: LoginOutcome,
    /// Whether the attempt deserves an audit entry: every checked attempt does; of the attempts
    /// refused by the throttle, only the first of each window (the rest are counted in the
    /// throttle, not written to the database one by one).
    pub audit: bool,
}

/// Checks a sign-in by `client` (its address, when known) as user `name`.
pub async fn sign_in(state: &AppState, name: &str, password: &str, client: Option<IpAddr>) -> Result<SignIn, DbError> {
    let throttle = state.signin_throttle();
    let keys = keys(name, client);
    let started = Instant::now();
    let locked = |until: Instant, audit: bool| {
        let wait = until.saturating_duration_since(Instant::now()).as_secs() as i64;
        SignIn { outcome: LoginOutcome::Locked { until: now() + wait.max(1) }, audit }
    };
    if let Some((until, first)) = throttle.refused(&keys, started, true) {
        return Ok(locked(until, first));
    }
    let outcome = state.db().check_login(name, password).await?;
    match &outcome {
        LoginOutcome::Ok(_) => throttle.succeed(&name.to_lowercase(), client),
        LoginOutcome::BadCredentials => {
            throttle.fail(&keys, started);
            if let Some((until, _)) = throttle.refused(&keys, Instant::now(), false) {
                return Ok(locked(until, true));
            }
        }
        LoginOutcome::Locked { .. } | LoginOutcome::Disabled => throttle.fail(&keys, started),
    }
    Ok(SignIn { outcome, audit: true })
}

/// The message for a throttled or locked sign-in: the same whether the name exists or not.
pub fn locked_message(until: i64) -> String {
    let when = chrono::DateTime::from_timestamp(until, 0).map_or(until.to_string(), |d| d.to_rfc3339());
    format!("too many failed sign-ins for this user name or from your address: try again after {when}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn one_guesser_locks_only_itself() {
        let t = Throttle::default();
        let at = Instant::now();
        for _ in 0..PAIR_FAILURES {
            assert!(t.refused(&keys("admin", ip("10.0.0.1")), at, false).is_none());
            t.fail(&keys("admin", ip("10.0.0.1")), at);
        }
        assert!(t.refused(&keys("admin", ip("10.0.0.1")), at, false).is_some());
        assert!(t.refused(&keys("Admin", ip("10.0.0.1")), at, false).is_some(), "names are compared without case");
        assert!(t.refused(&keys("admin", ip("10.0.0.2")), at, false).is_none(), "the real admin elsewhere signs in");
        assert!(t.refused(&keys("admin", ip("10.0.0.1")), at + WINDOW, false).is_none(), "the lock passes");
    }

    #[test]
    fn spraying_names_from_one_address_is_stopped() {
        let t = Throttle::default();
        let at = Instant::now();
        for i in 0..CLIENT_FAILURES {
            t.fail(&keys(&format!("user{i}"), ip("10.0.0.9")), at);
        }
        assert!(t.refused(&keys("someone-new", ip("10.0.0.9")), at, false).is_some());
        assert!(t.refused(&keys("someone-new", ip("10.0.0.8")), at, false).is_none());
    }

    #[test]
    fn a_name_locks_alike_whether_it_exists_or_not() {
        let t = Throttle::default();
        let at = Instant::now();
        for i in 0..LOCKOUT_AFTER as u32 {
            t.fail(&keys("ghost", ip(&format!("10.1.{}.{}", i / 200, i % 200))), at);
        }
        assert!(t.refused(&keys("ghost", ip("10.9.9.9")), at, false).is_some());
    }

    #[test]
    fn only_the_first_refusal_of_a_window_is_audited() {
        let t = Throttle::default();
        let at = Instant::now();
        for _ in 0..PAIR_FAILURES {
            t.fail(&keys("admin", ip("10.0.0.1")), at);
        }
        assert_eq!(t.refused(&keys("admin", ip("10.0.0.1")), at, true).map(|r| r.1), Some(true));
        for _ in 0..100 {
            assert_eq!(t.refused(&keys("admin", ip("10.0.0.1")), at, true).map(|r| r.1), Some(false));
        }
    }
}
