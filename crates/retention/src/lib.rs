//! # retention
//!
//! How long packs are kept. [`Retention`] is a pure selection over pack metadata with restic's
//! semantics — `keep_within`, `keep_last`, `keep_hourly/daily/weekly/monthly/yearly` (the newest
//! pack of each period, periods counted in the plan's time zone) — plus `max_packs`; it
//! implements [`Policy::retain`](backup_core::Policy::retain) and never removes the newest pack.
//! [`prune`] applies the verdicts to one sink through [`Sink::delete`](backup_core::Sink::delete),
//! which only removes valid packs of ours, and never follows symbolic links.
//! [`clean_leftovers`] removes stale staging and `_tmp` leftovers.
//!
//! ```
//! use backup_core::config::RetentionConfig;
//! use backup_core::sink::PackInfo;
//! use backup_core::BackupKind;
//! use chrono::{TimeDelta, TimeZone, Utc};
//! use retention::Retention;
//!
//! let t0 = Utc.with_ymd_and_hms(2026, 11, 1, 4, 0, 0).unwrap();
//! let packs: Vec<PackInfo> = (0..10)
//!     .map(|d| PackInfo {
//!         sink: "local".into(),
//!         plan: "nightly".into(),
//!         id: format!("migration_pack_{d:02}"),
//!         path: format!("/backups/nightly/migration_pack_{d:02}").into(),
//!         kind: BackupKind::Full,
//!         job_id: None,
//!         started_at: t0 + TimeDelta::days(d),
//!         finished_at: t0 + TimeDelta::days(d),
//!         bytes: 1,
//!         artifacts: 1,
//!     })
//!     .collect();
//! let rules = RetentionConfig { keep_daily: Some(3), ..Default::default() };
//! let verdicts = Retention::new(rules, chrono_tz::Asia::Shanghai).select(&packs);
//! let kept: Vec<_> = verdicts.iter().filter(|v| v.keep).map(|v| v.pack_id.as_str()).collect();
//! assert_eq!(kept, ["migration_pack_07", "migration_pack_08", "migration_pack_09"]);
//! assert!(verdicts[9].reason.starts_with("newest pack (always kept)"));
//! assert_eq!(verdicts[0].reason, "matches no keep rule");
//! ```

mod prune;
mod select;

pub use prune::{PackDecision, PruneReport, clean_leftovers, prune};
pub use select::Retention;

use backup_core::config::Config;

/// What can go wrong while pruning.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RetentionError {
    /// The sink could not list the plan's packs.
    #[error("cannot list the packs of plan `{plan}` on sink `{sink}`; nothing was removed: {source}")]
    List {
        /// Sink name.
        sink: String,
        /// Plan name.
        plan: String,
        /// The sink's error.
        #[source]
        source: backup_core::Error,
    },
    /// The state store could not be read.
    #[error("cannot read the job list from the state store: {0}")]
    State(#[source] backup_core::Error),
    /// Removing leftovers failed.
    #[error("cannot remove staging leftovers on sink `{sink}`: {source}")]
    Leftovers {
        /// Sink name.
        sink: String,
        /// The sink's error.
        #[source]
        source: backup_core::Error,
    },
}

impl From<RetentionError> for backup_core::Error {
    fn from(e: RetentionError) -> Self {
        backup_core::Error::Other(backup_core::error::error_chain(&e))
    }
}

/// The retention of plan `name` from the config (its rules, periods in its time zone).
pub fn from_config(cfg: &Config, name: &str) -> backup_core::Result<Retention> {
    let pc = cfg.plan(name)?;
    Ok(Retention::new(pc.retention.clone(), cfg.plan_time_zone(pc)))
}
