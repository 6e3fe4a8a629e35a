//! The [`Policy`] trait: decisions over time, the seam for scheduling and retention.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::BackupKind;
use crate::sink::PackInfo;
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

/// Keep or remove, with the reason, as decided by a retention policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// Pack id.
    pub pack_id: String,
    /// True to keep.
    pub keep: bool,
    /// Why ("keep_daily 3/7", "newest successful pack", "expired: older than 72h").
    pub reason: String,
}

/// A decision over time about one plan. Scheduling implements [`Policy::due`]; retention
/// implements [`Policy::retain`]. Both have neutral defaults, so a policy implements only its part
/// and several can be combined by wrapping.
pub trait Policy: Send + Sync + fmt::Debug {
    /// The run due at `now` given the plan's schedule state, if any. Default: never.
    fn due(&self, _state: &ScheduleState, _now: DateTime<Utc>) -> Option<DueRun> {
        None
    }

    /// The next instant after `now` at which a run will be due, if any. Default: none.
    fn next_due(&self, _now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        None
    }

    /// Keep/remove verdicts for the plan's packs on one sink (any order in, one verdict per pack
    /// out). Default: keep everything.
    fn retain(&self, packs: &[PackInfo], _now: DateTime<Utc>) -> Vec<Verdict> {
        packs
            .iter()
            .map(|p| Verdict {
                pack_id: p.id.clone(),
                keep: true,
                reason: "no retention policy".into(),
            })
            .collect()
    }
}
