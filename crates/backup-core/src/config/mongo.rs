//! The MongoDB part of a plan: which collections, by which time field, from when.
//!
//! These keys live directly in `[plans.NAME]` and apply to every `type = "mongo"` source of the
//! plan:
//!
//! ```toml
//! [plans.hot]
//! source = "mes"
//! collections = ["api_logs", "scan*"]    # names or globs; empty: every collection
//! exclude_collections = ["*_tmp"]
//! time_field = "createdAt"               # incremental windows apply to this field
//! lag = "1m"                             # windows end this far behind now
//! first_run = "today"                    # or "all", or "2026-01-01" (plan zone)
//! [plans.hot.per_collection.equipmentinformations]
//! time_field = "updatedAt"
//! [plans.hot.per_collection.chat]
//! mode = "full"                          # always copied whole
//! ```

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::{Config, PlanConfig, SourceConfig};
use crate::Result;

/// Default of `lag`: how far behind the job's start an incremental window ends.
pub const DEFAULT_LAG: Duration = Duration::from_secs(60);

/// Where the first incremental run of a collection (no watermark yet) starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FirstRun {
    /// Start of today in the plan's time zone (the original MES system's behaviour). Default.
    #[default]
    Today,
    /// Everything: the first run is a full copy of the window up to now.
    All,
    /// Midnight of this date in the plan's time zone (`"2026-01-01"`).
    Date(NaiveDate),
    /// This instant (`"2026-01-01T08:00:00+08:00"`).
    At(DateTime<Utc>),
}

impl fmt::Display for FirstRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FirstRun::Today => f.write_str("today"),
            FirstRun::All => f.write_str("all"),
            FirstRun::Date(d) => write!(f, "{}", d.format("%Y-%m-%d")),
            FirstRun::At(t) => f.write_str(&t.to_rfc3339()),
        }
    }
}

impl std::str::FromStr for FirstRun {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<FirstRun, String> {
        match s {
            "today" => Ok(FirstRun::Today),
            "all" => Ok(FirstRun::All),
            _ => {
                if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
                    return Ok(FirstRun::Date(d));
                }
                DateTime::parse_from_rfc3339(s)
                    .map(|t| FirstRun::At(t.with_timezone(&Utc)))
                    .map_err(|_| {
                        format!(
                            "invalid first_run `{s}`: use \"today\", \"all\", a date like \"2026-01-01\" or an RFC 3339 time"
                        )
                    })
            }
        }
    }
}

impl Serialize for FirstRun {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for FirstRun {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<FirstRun, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// How a collection is copied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CollectionMode {
    /// By time window in incremental runs, whole in full runs. The default.
    #[default]
    Incremental,
    /// Always whole, also in incremental runs (small reference collections, no time field).
    Full,
}

/// `[plans.NAME.per_collection.COLLECTION]`: settings of one collection that differ from the
/// plan's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectionConfig {
    /// Time field of this collection. Default: the plan's `time_field`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_field: Option<String>,
    /// `incremental` (default) or `full` (always copied whole).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<CollectionMode>,
}

impl PlanConfig {
    /// True when the plan sets any of the MongoDB keys.
    pub fn has_mongo_keys(&self) -> bool {
        !self.collections.is_empty()
            || !self.exclude_collections.is_empty()
            || self.time_field.is_some()
            || self.lag.is_some()
            || self.first_run.is_some()
            || !self.per_collection.is_empty()
    }

    /// The lag of incremental windows (`lag`, default [`DEFAULT_LAG`]).
    pub fn mongo_lag(&self) -> Duration {
        self.lag.unwrap_or(DEFAULT_LAG)
    }

    /// Most collections backed up at once: the plan's `parallelism`, else the config's.
    pub fn effective_parallelism(&self, cfg: &Config) -> usize {
        self.parallelism.unwrap_or(cfg.parallelism).max(1)
    }
}

impl Config {
    pub(super) fn validate_mongo(&self) -> Result<()> {
        for (name, plan) in &self.plans {
            let err = |key: &[&str], msg: String| {
                let mut full = vec!["plans", name.as_str()];
                full.extend_from_slice(key);
                self.key_error(&full, msg)
            };
            if plan.parallelism == Some(0) {
                return Err(err(&["parallelism"], "must be at least 1".into()));
            }
            if !plan.has_mongo_keys() {
                continue;
            }
            let has_mongo = plan
                .source_names()
                .iter()
                .any(|s| matches!(self.sources.get(*s), Some(SourceConfig::Mongo(_))));
            if !has_mongo {
                let first = [
                    ("collections", !plan.collections.is_empty()),
                    ("exclude_collections", !plan.exclude_collections.is_empty()),
                    ("time_field", plan.time_field.is_some()),
                    ("lag", plan.lag.is_some()),
                    ("first_run", plan.first_run.is_some()),
                    ("per_collection", !plan.per_collection.is_empty()),
                ]
                .into_iter()
                .find(|(_, set)| *set)
                .map(|(k, _)| k)
                .unwrap_or("collections");
                return Err(err(
                    &[first],
                    "collections, exclude_collections, time_field, lag, first_run and per_collection apply to \
                     mongo sources, but this plan has none"
                        .into(),
                ));
            }
            let check_field = |f: &str, key: &[&str]| {
                if f.is_empty() || f.starts_with('$') || f.contains('\0') {
                    Err(err(key, format!("`{f}` is not a valid field name")))
                } else {
                    Ok(())
                }
            };
            if let Some(f) = &plan.time_field {
                check_field(f, &["time_field"])?;
            }
            for (key, list) in [
                ("collections", &plan.collections),
                ("exclude_collections", &plan.exclude_collections),
            ] {
                for pattern in list {
                    if pattern.is_empty() || pattern.contains('\0') || pattern.starts_with('$') {
                        return Err(err(
                            &[key],
                            format!("`{pattern}` is not a valid collection name or pattern"),
                        ));
                    }
                }
            }
            for (coll, c) in &plan.per_collection {
                if let Some(f) = &c.time_field {
                    check_field(f, &["per_collection", coll, "time_field"])?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const MES: &str = r#"
time_zone = "Asia/Shanghai"
state_dir = "state"
parallelism = 2
[sources.mes]
type = "mongo"
uri_env = "MES_MONGO_URI"
database = "mes"
[sinks.local]
type = "local"
path = "/backups"
[plans.hot]
source = "mes"
sinks = ["local"]
collections = ["api_logs", "scan*"]
exclude_collections = ["*_tmp"]
time_field = "createdAt"
lag = "2m"
first_run = "2026-01-01"
incremental = "0 * * * *"
[plans.hot.per_collection.chat]
mode = "full"
[plans.hot.per_collection.scanrecords]
time_field = "updatedAt"
"#;

    #[test]
    fn mongo_plan_keys_parse_and_round_trip() {
        let c = Config::parse(MES, Path::new("/etc/packrat.toml")).unwrap();
        let p = &c.plans["hot"];
        assert_eq!(p.collections, ["api_logs", "scan*"]);
        assert_eq!(p.mongo_lag(), Duration::from_secs(120));
        assert_eq!(
            p.first_run,
            Some(FirstRun::Date(NaiveDate::from_ymd_opt(2026, 1, 1).unwrap()))
        );
        assert_eq!(p.per_collection["chat"].mode, Some(CollectionMode::Full));
        assert_eq!(p.effective_parallelism(&c), 2);
        let again = Config::parse(&c.to_redacted_toml(), Path::new("/x.toml")).unwrap();
        assert_eq!(again.plans["hot"], *p);
    }

    #[test]
    fn bad_mongo_keys_are_explained() {
        let bad = MES.replace("first_run = \"2026-01-01\"", "first_run = \"yesterday\"");
        let e = Config::parse(&bad, Path::new("p.toml")).unwrap_err().to_string();
        assert!(e.contains("first_run") && e.contains("yesterday"), "{e}");
        let bad = MES.replace("time_field = \"createdAt\"", "time_field = \"$bad\"");
        let e = Config::parse(&bad, Path::new("p.toml")).unwrap_err().to_string();
        assert!(e.contains("line 17, key `plans.hot.time_field`: `$bad`"), "{e}");
        let bad = MES.replace("mode = \"full\"", "mode = \"fast\"");
        assert!(Config::parse(&bad, Path::new("p.toml")).is_err());
        let bad = MES.replace(
            "type = \"mongo\"\nuri_env = \"MES_MONGO_URI\"\ndatabase = \"mes\"",
            "type = \"sqlite\"\npath = \"x.db\"",
        );
        let e = Config::parse(&bad, Path::new("p.toml")).unwrap_err().to_string();
        assert!(e.contains("apply to mongo sources"), "{e}");
    }

    #[test]
    fn first_run_forms() {
        assert_eq!("today".parse::<FirstRun>().unwrap(), FirstRun::Today);
        assert_eq!("all".parse::<FirstRun>().unwrap(), FirstRun::All);
        assert!(matches!(
            "2026-01-01T08:00:00+08:00".parse::<FirstRun>().unwrap(),
            FirstRun::At(_)
        ));
        assert!("2026-13-01".parse::<FirstRun>().is_err());
    }
}
