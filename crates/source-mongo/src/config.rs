//! This source's config sections: `type = "mongo"` in `[sources.NAME]`, and the MongoDB part of
//! a plan, `[plans.NAME.mongo]`: which collections, by which time field, from when.
//!
//! ```toml
//! [plans.hot]
//! source = "mes"
//! incremental = "0 * * * *"
//! [plans.hot.mongo]
//! collections = ["api_logs", "scan*"]    # names or globs; empty: every collection
//! exclude_collections = ["*_tmp"]
//! time_field = "createdAt"               # incremental windows apply to this field
//! lag = "1m"                             # windows end this far behind now
//! first_run = "today"                    # or "all", or "2026-01-01" (plan zone)
//! parallelism = 3                        # collections at once (default: the top-level one)
//! [plans.hot.mongo.per_collection.equipmentinformations]
//! time_field = "updatedAt"
//! [plans.hot.mongo.per_collection.chat]
//! mode = "full"                          # always copied whole
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use backup_core::config::{Issue, Secret, SecretRef, Section};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

/// `type = "mongo"`: a MongoDB deployment. The connection URI carries credentials, so it is
/// read from an environment variable or a file, never written in the config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MongoSourceConfig {
    /// Environment variable holding the connection URI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri_env: Option<String>,
    /// File holding the connection URI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri_file: Option<PathBuf>,
    /// Database to back up.
    pub database: String,
    /// Environment variable holding the URI of the server that restore drills restore into
    /// (a scratch database there). Default: the source's own server (`uri_env`/`uri_file`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drill_uri_env: Option<String>,
    /// File holding the drill server's URI (see `drill_uri_env`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drill_uri_file: Option<PathBuf>,
}

impl MongoSourceConfig {
    /// The connection URI's reference (`uri_env` / `uri_file`).
    pub fn uri_ref(&self) -> SecretRef {
        SecretRef::new(self.uri_env.as_deref(), self.uri_file.as_deref())
    }

    /// Resolves the connection URI; `name` is the source name for messages.
    pub fn uri(&self, name: &str) -> backup_core::Result<Secret> {
        self.uri_ref().resolve(&format!("sources.{name}.uri"))
    }

    /// The drill server's URI reference (`drill_uri_env` / `drill_uri_file`).
    pub fn drill_uri_ref(&self) -> SecretRef {
        SecretRef::new(self.drill_uri_env.as_deref(), self.drill_uri_file.as_deref())
    }

    /// Resolves the URI of the server restore drills restore into: the drill URI when one is
    /// configured, else the source's own.
    pub fn drill_uri(&self, name: &str) -> backup_core::Result<Secret> {
        match self
            .drill_uri_ref()
            .resolve_optional(&format!("sources.{name}.drill_uri"))?
        {
            Some(uri) => Ok(uri),
            None => self.uri(name),
        }
    }
}

impl Section for MongoSourceConfig {
    fn paths_mut(&mut self) -> Vec<(&'static str, &mut PathBuf)> {
        let uri = self.uri_file.iter_mut().map(|f| ("uri_file", f));
        uri.chain(self.drill_uri_file.iter_mut().map(|f| ("drill_uri_file", f)))
            .collect()
    }

    fn validate(&self) -> Result<(), Issue> {
        self.uri_ref().check("uri", true).map_err(|mut i| {
            if i.key.is_empty() {
                i.message = "set exactly one of `uri_env` (environment variable) or `uri_file` (file) for the \
                             connection URI; URIs carry credentials and are never written in the config"
                    .into();
            }
            i
        })?;
        self.drill_uri_ref().check("drill_uri", false)
    }
}

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

/// `[plans.NAME.mongo]`: the MongoDB part of a plan; applies to every `type = "mongo"` source
/// of the plan.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MongoPlanConfig {
    /// Collections to back up, by name or glob (`*`, `?`, `[a-z]`). A plain name must exist.
    /// Empty: every collection of the database.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub collections: Vec<String>,
    /// Collections to leave out, by name or glob.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_collections: Vec<String>,
    /// The time field of incremental windows (`createdAt`, `updatedAt`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_field: Option<String>,
    /// Incremental windows end this far behind the job's start, so late writers with a slightly
    /// older time are not missed. Default 1m.
    #[serde(default, with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub lag: Option<Duration>,
    /// Where the first incremental run starts: `today` (default, plan zone), `all`, or a date
    /// `2026-01-01`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_run: Option<FirstRun>,
    /// Most collections backed up at once. Default: the top-level `parallelism`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallelism: Option<usize>,
    /// Per-collection `time_field` and `mode` (`incremental` or `full`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub per_collection: BTreeMap<String, CollectionConfig>,
}

impl MongoPlanConfig {
    /// The lag of incremental windows (`lag`, default [`DEFAULT_LAG`]).
    pub fn lag(&self) -> Duration {
        self.lag.unwrap_or(DEFAULT_LAG)
    }

    /// Most collections backed up at once: this plan's `parallelism`, else `default`.
    pub fn effective_parallelism(&self, default: usize) -> usize {
        self.parallelism.unwrap_or(default).max(1)
    }
}

impl Section for MongoPlanConfig {
    fn validate(&self) -> Result<(), Issue> {
        if self.parallelism == Some(0) {
            return Err(Issue::new("parallelism", "must be at least 1"));
        }
        let check_field = |f: &str, key: String| {
            if f.is_empty() || f.starts_with('$') || f.contains('\0') {
                Err(Issue::new(key, format!("`{f}` is not a valid field name")))
            } else {
                Ok(())
            }
        };
        if let Some(f) = &self.time_field {
            check_field(f, "time_field".into())?;
        }
        for (key, list) in [
            ("collections", &self.collections),
            ("exclude_collections", &self.exclude_collections),
        ] {
            for pattern in list {
                if pattern.is_empty() || pattern.contains('\0') || pattern.starts_with('$') {
                    return Err(Issue::new(
                        key,
                        format!("`{pattern}` is not a valid collection name or pattern"),
                    ));
                }
            }
        }
        for (coll, c) in &self.per_collection {
            if let Some(f) = &c.time_field {
                check_field(f, format!("per_collection.{coll}.time_field"))?;
            }
        }
        Ok(())
    }
}

impl backup_core::config::SourceSection for MongoSourceConfig {
    fn build(&self, name: &str, defaults: &backup_core::config::Defaults) -> std::sync::Arc<dyn backup_core::Source> {
        std::sync::Arc::new(crate::MongoSource::from_config(name, self).with_parallelism(defaults.parallelism))
    }
}
