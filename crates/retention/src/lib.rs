//! # retention
//!
//! How long packs are kept. [`Retention`] is a pure selection over pack metadata with restic's
//! (≥ 0.16) semantics — `keep_within` (restic's duration grammar, calendar-aware), `keep_last`,
//! `keep_hourly/daily/weekly/monthly/yearly` (the newest pack of each period, periods counted in
//! the plan's time zone, the oldest pack too while a count is left) — plus `max_packs`; it
//! implements [`RetentionPolicy`](backup_core::RetentionPolicy). It never removes the newest pack,
//! a pack dated in the future, or a pack that the `restore --chain` of a kept incremental pack
//! needs; [`prune`] enforces the same whatever the policy says.
//! [`prune`] applies the verdicts to one sink through [`Sink::delete`](backup_core::Sink::delete),
//! which only removes valid packs of ours, and never follows symbolic links.
//! [`clean_leftovers`] removes stale staging and `_tmp` leftovers.
//!
//! ```
//! use retention::RetentionConfig;
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
//!         location: format!("/backups/nightly/migration_pack_{d:02}"),
//!         kind: BackupKind::Full,
//!         job_id: None,
//!         started_at: t0 + TimeDelta::days(d),
//!         finished_at: t0 + TimeDelta::days(d),
//!         bytes: 1,
//!         artifacts: 1,
//!     })
//!     .collect();
//! let rules = RetentionConfig { keep_daily: Some(3), ..Default::default() };
//! let now = t0 + TimeDelta::days(10);
//! let verdicts = Retention::new(rules, chrono_tz::Asia::Shanghai).select(&packs, now);
//! let kept: Vec<_> = verdicts.iter().filter(|v| v.keep).map(|v| v.pack_id.as_str()).collect();
//! assert_eq!(kept, ["migration_pack_07", "migration_pack_08", "migration_pack_09"]);
//! assert!(verdicts[9].reason.starts_with("newest pack (always kept)"));
//! assert_eq!(verdicts[0].reason, "matches no keep rule");
//! ```

mod config;
mod prune;
mod select;

pub use config::{CalendarDuration, RetentionConfig};
pub use prune::{PackDecision, PruneReport, clean_leftovers, prune};
pub use select::Retention;

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

/// For a plan that only ever runs incremental backups (an `incremental` schedule and no `full`
/// one): what is wrong (how far back a restore can go) and what to do. `None` for other plans.
///
/// Without a full pack, `restore --chain` replays the packs from the oldest one on; once
/// retention removes old packs, what they held is in no pack any more.
pub fn incremental_only_warning(
    name: &str,
    has_full: bool,
    has_incremental: bool,
    r: &RetentionConfig,
) -> Option<(String, String)> {
    if !has_incremental || has_full {
        return None;
    }
    let rules = describe(r);
    let horizon = match r.keep_within {
        _ if rules.is_empty() => "its first pack: with no retention rule every pack is kept, so the sink grows \
                                  without bound and a restore replays every pack since the first run"
            .to_string(),
        Some(w) if rules == format!("keep_within = \"{w}\"") => format!(
            "the retention window, {w} (`{rules}`): what was written before that is in no pack once the older \
             packs are removed"
        ),
        _ => format!(
            "the oldest pack the rules keep (`{rules}`): what was written before that is in no pack once the \
             older packs are removed"
        ),
    };
    Some((
        format!(
            "plan `{name}` only runs incremental backups (an `incremental` schedule and no `full` one), so \
             `restore --chain` can only go back as far as {horizon}"
        ),
        format!(
            "add a periodic full backup to [plans.{name}] (e.g. `full = \"0 1 * * 0\"`, weekly) so that a complete \
             restore is always possible; retention keeps each full pack while incremental packs after it are kept"
        ),
    ))
}

/// The rules as written in the config (`keep_within = "72h", keep_daily = 7`); empty when none.
pub fn describe(r: &RetentionConfig) -> String {
    let mut out = Vec::new();
    if let Some(w) = r.keep_within {
        out.push(format!("keep_within = \"{w}\""));
    }
    for (key, v) in [
        ("keep_last", r.keep_last),
        ("keep_hourly", r.keep_hourly),
        ("keep_daily", r.keep_daily),
        ("keep_weekly", r.keep_weekly),
        ("keep_monthly", r.keep_monthly),
        ("keep_yearly", r.keep_yearly),
        ("max_packs", r.max_packs),
    ] {
        if let Some(n) = v {
            out.push(format!("{key} = {n}"));
        }
    }
    out.join(", ")
}
