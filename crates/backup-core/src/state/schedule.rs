//! Schedule state: the scheduler's bookkeeping per plan — the last fired slot, the last attempt
//! and the last success (see [`ScheduleState`]). A slot fires at most once, across restarts too,
//! because the scheduler records it here before it starts the job.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::{StateStore, format_time, read_opt_time};
use crate::error::Result;

/// Scheduler bookkeeping of one plan.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScheduleState {
    /// Plan name.
    pub plan: String,
    /// The last schedule slot that fired (the slot's nominal time, not when it ran).
    pub last_fired_slot: Option<DateTime<Utc>>,
    /// When a job was last started for this plan by the scheduler.
    pub last_attempt: Option<DateTime<Utc>>,
    /// When a job of this plan last completed.
    pub last_success: Option<DateTime<Utc>>,
}

impl StateStore {
    /// The scheduler bookkeeping of `plan`; all times `None` when nothing was recorded yet.
    pub fn schedule_state(&self, plan: &str) -> Result<ScheduleState> {
        let conn = self.conn();
        let state = conn
            .query_row(
                "SELECT plan, last_fired_slot, last_attempt, last_success
                 FROM schedule_state WHERE plan = ?1",
                [plan],
                |row| {
                    Ok(ScheduleState {
                        plan: row.get(0)?,
                        last_fired_slot: read_opt_time(row, 1)?,
                        last_attempt: read_opt_time(row, 2)?,
                        last_success: read_opt_time(row, 3)?,
                    })
                },
            )
            .optional()
            .map_err(|e| self.err(e))?;
        Ok(state.unwrap_or_else(|| ScheduleState {
            plan: plan.to_string(),
            ..ScheduleState::default()
        }))
    }

    /// Records that the schedule slot `slot` of `plan` fired; also sets `last_attempt = now`.
    pub fn set_last_fired(&self, plan: &str, slot: DateTime<Utc>) -> Result<()> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO schedule_state (plan, last_fired_slot, last_attempt) VALUES (?1, ?2, ?3)
             ON CONFLICT (plan) DO UPDATE SET
                last_fired_slot = excluded.last_fired_slot, last_attempt = excluded.last_attempt",
            params![plan, format_time(slot), format_time(Utc::now())],
        )
        .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Records the last success of `plan`.
    pub fn set_last_success(&self, plan: &str, at: DateTime<Utc>) -> Result<()> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO schedule_state (plan, last_success) VALUES (?1, ?2)
             ON CONFLICT (plan) DO UPDATE SET last_success = excluded.last_success",
            params![plan, format_time(at)],
        )
        .map_err(|e| self.err(e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::state::tests::store;

    #[test]
    fn schedule_state_round_trip() {
        let (_dir, store) = store();
        let empty = store.schedule_state("nightly").unwrap();
        assert_eq!(
            empty,
            ScheduleState {
                plan: "nightly".into(),
                ..ScheduleState::default()
            }
        );
        let slot = Utc.with_ymd_and_hms(2026, 11, 21, 4, 0, 0).unwrap();
        store.set_last_fired("nightly", slot).unwrap();
        let s = store.schedule_state("nightly").unwrap();
        assert_eq!(s.last_fired_slot, Some(slot));
        assert!(s.last_attempt.is_some());
        assert!(s.last_success.is_none());
        let ok = Utc.with_ymd_and_hms(2026, 11, 21, 4, 5, 0).unwrap();
        store.set_last_success("nightly", ok).unwrap();
        let s2 = store.schedule_state("nightly").unwrap();
        assert_eq!(s2.last_success, Some(ok));
        assert_eq!(s2.last_fired_slot, Some(slot));
        assert_eq!(s2.last_attempt, s.last_attempt);
        store.set_last_success("other", ok).unwrap();
        assert!(store.schedule_state("other").unwrap().last_fired_slot.is_none());
    }
}
