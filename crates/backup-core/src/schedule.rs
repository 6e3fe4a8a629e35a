//! The [`SchedulePolicy`] trait: when a plan runs.
//!
//! A schedule policy looks at a plan's [`ScheduleState`] (the last fired slot, kept in the state
//! store) and the current time and says which run, if any, is due. The scheduler records the slot
//! as fired before it starts the job, so a slot fires at most once. policy-schedule's `Schedule`
//! (cron expressions in the plan's time zone) implements it.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::BackupKind;
use crate::state::ScheduleState;

/// A run a schedule policy says is due.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DueRun {
    /// The schedule slot this run belongs to (fires at most once).
    pub slot: DateTime<Utc>,
    /// Full or incremental.
    pub kind: BackupKind,
    /// True when this run catches up on slots missed while packrat was down.
    pub catch_up: bool,
}

/// When the runs of one plan are due.
pub trait SchedulePolicy: Send + Sync + fmt::Debug {
    /// The run due at `now` given the plan's schedule state, if any. A slot at or before
    /// `state.last_fired_slot` has fired and must not be returned again.
    fn due(&self, state: &ScheduleState, now: DateTime<Utc>) -> Option<DueRun>;

    /// The next instant after `now` at which a run will be due, if the policy can tell (for
    /// status output and for sleeping until then). Default: `None`, unknown.
    fn next_due(&self, _now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        None
    }
}
