//! The [`RetentionPolicy`] trait: which packs of a plan to keep.
//!
//! A retention policy sees the packs of one plan on one sink and returns a keep/remove
//! [`Verdict`], with the reason, for each. It only decides; the pruning code (retention's
//! `prune`) applies the verdicts and enforces the safety net whatever a policy says (the newest
//! pack, the chains of kept incrementals and packs dated in the future are always kept).
//! retention's `Retention` (`keep_last`, `keep_daily`, … in the style of restic's `forget`)
//! implements it.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::sink::PackInfo;

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

/// Which packs of one plan to keep.
pub trait RetentionPolicy: Send + Sync + fmt::Debug {
    /// Keep/remove verdicts for the plan's packs on one sink, as of `now` (any order in, one
    /// verdict per pack out; a pack without a verdict is kept).
    fn retain(&self, packs: &[PackInfo], now: DateTime<Utc>) -> Vec<Verdict>;
}
