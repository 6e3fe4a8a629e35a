//! # policy-schedule
//!
//! When plans run: a 5-field cron expression per plan for full and/or incremental backups,
//! evaluated in the plan's IANA time zone and correct across daylight-saving changes (a daily job
//! runs exactly once per day: a 02:30 job runs at 03:00 on the spring-forward day and once on the
//! fall-back day). [`Schedule`] implements [`SchedulePolicy`]:
//!
//! - a slot fires at most once: the last fired slot is kept in the state store
//!   ([`StateStore::set_last_fired`](backup_core::StateStore::set_last_fired)), across restarts too;
//! - after downtime a plan runs **once** to catch up ([`CatchUp::Once`], the default), never once
//!   per missed slot, or waits for its next slot ([`CatchUp::Skip`]);
//! - when a full and an incremental slot fall on the same instant, the full backup wins; a
//!   catch-up run is full when a full slot was among the missed ones;
//! - a new plan (nothing fired yet) waits for its first slot.
//!
//! The [`Scheduler`] applies the schedules of many plans against the state store on a [`Clock`]
//! (the real one, or a [`ManualClock`] in tests) and skips, with a reason, slots of plans whose
//! previous job is still running.
//!
//! ```
//! use backup_core::{BackupKind, SchedulePolicy, state::ScheduleState};
//! use chrono::{TimeZone, Utc};
//! use policy_schedule::Schedule;
//!
//! let s = Schedule::new(Some("0 2 * * *"), Some("0 * * * *"), chrono_tz::Asia::Shanghai).unwrap();
//! // 02:00 in Shanghai is 18:00 UTC the day before: both are due, full wins.
//! let now = Utc.with_ymd_and_hms(2026, 11, 20, 18, 0, 0).unwrap();
//! let fired = ScheduleState { last_fired_slot: Some(now - chrono::Duration::hours(1)), ..Default::default() };
//! let due = s.due(&fired, now).unwrap();
//! assert_eq!((due.slot, due.kind, due.catch_up), (now, BackupKind::Full, false));
//! assert_eq!(s.next_due(now), Some(now + chrono::Duration::hours(1)));
//! ```

mod clock;
mod config;
mod error;
mod scheduler;

use std::fmt;

use backup_core::state::ScheduleState;
use backup_core::{BackupKind, DueRun, SchedulePolicy};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{CatchUp, CronExpr};
pub use error::ScheduleError;
pub use scheduler::{Decision, Scheduler};

/// How late a slot may be seen and still count as on time (not missed). The daemon wakes up at
/// slot instants, so normally it is milliseconds late.
pub const DEFAULT_TOLERANCE: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

/// Most slots [`Schedule::slots`] returns, so that a minutely schedule over years stays bounded.
const MAX_SLOTS: usize = 100_000;

/// A schedule slot: an instant and the kind of backup due then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// The slot's nominal instant.
    pub at: DateTime<Utc>,
    /// Full or incremental (full when both fall on this instant).
    pub kind: BackupKind,
}

/// The schedule of one plan: cron expressions for full and/or incremental backups in a time zone.
#[derive(Clone)]
pub struct Schedule {
    full: Option<(String, Cron)>,
    incremental: Option<(String, Cron)>,
    tz: Tz,
    catch_up: CatchUp,
    tolerance: chrono::TimeDelta,
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Schedule")
            .field("full", &self.full.as_ref().map(|(p, _)| p))
            .field("incremental", &self.incremental.as_ref().map(|(p, _)| p))
            .field("tz", &self.tz)
            .field("catch_up", &self.catch_up)
            .finish()
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some((p, _)) = &self.full {
            parts.push(format!("full `{p}`"));
        }
        if let Some((p, _)) = &self.incremental {
            parts.push(format!("incremental `{p}`"));
        }
        write!(
            f,
            "{} ({}, catch-up {})",
            parts.join(", "),
            self.tz,
            self.catch_up.as_str()
        )
    }
}

/// Parses a 5-field cron expression (minute hour day-of-month month day-of-week; `@daily` and
/// friends work too).
pub fn parse_cron(pattern: &str) -> Result<Cron, String> {
    let parser = CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build();
    parser.parse(pattern.trim()).map_err(|e| e.to_string())
}

impl Schedule {
    /// A schedule from cron expressions (at least one), in zone `tz`, catching up once.
    pub fn new(full: Option<&str>, incremental: Option<&str>, tz: Tz) -> Result<Schedule, ScheduleError> {
        Schedule::for_plan("", full, incremental, tz)
    }

    /// The schedule of plan `plan` (named in errors) from its `full` / `incremental` expressions
    /// (at least one), in zone `tz`, catching up once.
    pub fn for_plan(
        plan: &str,
        full: Option<&str>,
        incremental: Option<&str>,
        tz: Tz,
    ) -> Result<Schedule, ScheduleError> {
        let parse = |field: &'static str, p: Option<&str>| -> Result<Option<(String, Cron)>, ScheduleError> {
            p.map(|p| {
                parse_cron(p)
                    .map(|c| (p.trim().to_string(), c))
                    .map_err(|reason| ScheduleError::InvalidCron {
                        plan: plan.to_string(),
                        field,
                        pattern: p.to_string(),
                        reason,
                    })
            })
            .transpose()
        };
        let full = parse("full", full)?;
        let incremental = parse("incremental", incremental)?;
        if full.is_none() && incremental.is_none() {
            return Err(ScheduleError::Empty { plan: plan.to_string() });
        }
        Ok(Schedule {
            full,
            incremental,
            tz,
            catch_up: CatchUp::Once,
            tolerance: DEFAULT_TOLERANCE,
        })
    }

    /// Sets what happens after downtime.
    pub fn with_catch_up(mut self, catch_up: CatchUp) -> Schedule {
        self.catch_up = catch_up;
        self
    }

    /// Sets how late a slot may be seen and still count as on time (default 5 minutes).
    pub fn with_tolerance(mut self, tolerance: chrono::TimeDelta) -> Schedule {
        self.tolerance = tolerance;
        self
    }

    /// The time zone.
    pub fn time_zone(&self) -> Tz {
        self.tz
    }

    /// The catch-up behaviour.
    pub fn catch_up(&self) -> CatchUp {
        self.catch_up
    }

    /// The full-backup expression, if any.
    pub fn full_pattern(&self) -> Option<&str> {
        self.full.as_ref().map(|(p, _)| p.as_str())
    }

    /// The incremental-backup expression, if any.
    pub fn incremental_pattern(&self) -> Option<&str> {
        self.incremental.as_ref().map(|(p, _)| p.as_str())
    }

    fn prev(&self, cron: &Cron, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        cron.find_previous_occurrence(&at.with_timezone(&self.tz), true)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    fn next(&self, cron: &Cron, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        cron.find_next_occurrence(&after.with_timezone(&self.tz), false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    fn slot(full: Option<DateTime<Utc>>, inc: Option<DateTime<Utc>>, pick_later: bool) -> Option<Slot> {
        let at = match (full, inc) {
            (Some(f), Some(i)) => {
                if pick_later {
                    f.max(i)
                } else {
                    f.min(i)
                }
            }
            (Some(t), None) | (None, Some(t)) => t,
            (None, None) => return None,
        };
        let kind = if full == Some(at) {
            BackupKind::Full
        } else {
            BackupKind::Incremental
        };
        Some(Slot { at, kind })
    }

    /// The latest slot at or before `now`.
    pub fn last_slot(&self, now: DateTime<Utc>) -> Option<Slot> {
        let f = self.full.as_ref().and_then(|(_, c)| self.prev(c, now));
        let i = self.incremental.as_ref().and_then(|(_, c)| self.prev(c, now));
        Schedule::slot(f, i, true)
    }

    /// The first slot strictly after `after`.
    pub fn next_slot(&self, after: DateTime<Utc>) -> Option<Slot> {
        let f = self.full.as_ref().and_then(|(_, c)| self.next(c, after));
        let i = self.incremental.as_ref().and_then(|(_, c)| self.next(c, after));
        Schedule::slot(f, i, false)
    }

    /// The slots in `(from, to]`, oldest first (at most 100 000).
    pub fn slots(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Slot> {
        let mut out = Vec::new();
        let mut cur = from;
        while let Some(s) = self.next_slot(cur) {
            if s.at > to || out.len() >= MAX_SLOTS {
                break;
            }
            out.push(s);
            cur = s.at;
        }
        out
    }

    /// The longest gap between consecutive slots among the next few after `now`: "the schedule
    /// interval" (for a daily job one day, for a weekday job up to three).
    pub fn interval(&self, now: DateTime<Utc>) -> Option<chrono::TimeDelta> {
        let mut prev = self.next_slot(now)?.at;
        let mut longest = chrono::TimeDelta::zero();
        for _ in 0..8 {
            let Some(s) = self.next_slot(prev) else { break };
            longest = longest.max(s.at - prev);
            prev = s.at;
        }
        (longest > chrono::TimeDelta::zero()).then_some(longest)
    }

    /// True when a full slot lies in `(after, upto]`.
    fn full_slot_in(&self, after: DateTime<Utc>, upto: DateTime<Utc>) -> bool {
        self.full
            .as_ref()
            .and_then(|(_, c)| self.prev(c, upto))
            .is_some_and(|t| t > after)
    }
}

impl SchedulePolicy for Schedule {
    /// The run due at `now`:
    ///
    /// - nothing when the latest slot at or before `now` already fired (`last_fired_slot`);
    /// - the latest slot, not a catch-up, when it is the only unfired slot and is on time
    ///   (seen within the tolerance);
    /// - after missed slots: with `once`, one catch-up run for the latest slot (full when any
    ///   missed slot was full); with `skip`, nothing unless the latest slot itself is on time;
    /// - for a plan that never fired: the latest slot only if it is on time.
    fn due(&self, state: &ScheduleState, now: DateTime<Utc>) -> Option<DueRun> {
        let latest = self.last_slot(now)?;
        let on_time = now - latest.at <= self.tolerance;
        let normal = DueRun {
            slot: latest.at,
            kind: latest.kind,
            catch_up: false,
        };
        let Some(last) = state.last_fired_slot else {
            return on_time.then_some(normal);
        };
        if last >= latest.at {
            return None;
        }
        let first_unfired = self.next_slot(last).map_or(latest.at, |s| s.at);
        let missed = first_unfired < latest.at || !on_time;
        if !missed {
            return Some(normal);
        }
        match self.catch_up {
            CatchUp::Once => Some(DueRun {
                slot: latest.at,
                kind: if self.full_slot_in(last, now) {
                    BackupKind::Full
                } else {
                    latest.kind
                },
                catch_up: true,
            }),
            CatchUp::Skip => on_time.then_some(normal),
        }
    }

    fn next_due(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.next_slot(now).map(|s| s.at)
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn utc(y: i32, m: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, mi, 0).unwrap()
    }

    fn fired(at: DateTime<Utc>) -> ScheduleState {
        ScheduleState {
            last_fired_slot: Some(at),
            ..ScheduleState::default()
        }
    }

    #[test]
    fn rejects_six_fields_and_garbage_with_the_plan_named() {
        let e = Schedule::for_plan("hot", Some("0 0 * * * *"), None, chrono_tz::UTC).unwrap_err();
        assert!(
            e.to_string().contains("plans.hot") && e.to_string().contains("0 0 * * * *"),
            "{e}"
        );
        assert!(Schedule::new(None, Some("every hour"), chrono_tz::UTC).is_err());
        assert!(Schedule::new(None, None, chrono_tz::UTC).is_err());
        assert!(Schedule::new(Some("@daily"), None, chrono_tz::UTC).is_ok());
    }

    #[test]
    fn full_wins_on_the_same_slot_and_catch_up_prefers_full() {
        let s = Schedule::new(Some("0 4 * * *"), Some("0 * * * *"), chrono_tz::UTC).unwrap();
        let at4 = utc(2026, 5, 1, 4, 0);
        assert_eq!(s.last_slot(at4).unwrap().kind, BackupKind::Full);
        assert_eq!(s.next_slot(at4).unwrap().kind, BackupKind::Incremental);
        // Down from 02:00 to 07:10: one catch-up, full because 04:00 was missed.
        let d = s.due(&fired(utc(2026, 5, 1, 2, 0)), utc(2026, 5, 1, 7, 10)).unwrap();
        assert_eq!(
            (d.slot, d.kind, d.catch_up),
            (utc(2026, 5, 1, 7, 0), BackupKind::Full, true)
        );
        // Down from 05:00 to 07:10: incremental catch-up.
        let d = s.due(&fired(utc(2026, 5, 1, 5, 0)), utc(2026, 5, 1, 7, 10)).unwrap();
        assert_eq!((d.kind, d.catch_up), (BackupKind::Incremental, true));
    }

    #[test]
    fn skip_waits_for_the_next_on_time_slot() {
        let s = Schedule::new(Some("0 2 * * *"), None, chrono_tz::UTC)
            .unwrap()
            .with_catch_up(CatchUp::Skip);
        let st = fired(utc(2026, 5, 1, 2, 0));
        assert!(s.due(&st, utc(2026, 5, 3, 10, 0)).is_none());
        let d = s.due(&st, utc(2026, 5, 4, 2, 0)).unwrap();
        assert!(!d.catch_up);
        assert_eq!(d.slot, utc(2026, 5, 4, 2, 0));
    }

    #[test]
    fn new_plan_waits_for_its_first_slot_and_interval_is_the_longest_gap() {
        let s = Schedule::new(Some("0 2 * * 1-5"), None, chrono_tz::UTC).unwrap();
        let empty = ScheduleState::default();
        // Friday 2026-05-01 10:00: the 02:00 slot is long past.
        assert!(s.due(&empty, utc(2026, 5, 1, 10, 0)).is_none());
        assert!(s.due(&empty, utc(2026, 5, 4, 2, 1)).is_some());
        assert_eq!(s.interval(utc(2026, 5, 1, 10, 0)), Some(chrono::TimeDelta::days(3)));
        assert!(s.to_string().contains("full `0 2 * * 1-5`"));
    }
}
