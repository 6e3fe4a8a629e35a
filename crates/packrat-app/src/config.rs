//! The whole configuration file, composed of the sections the crates own.
//!
//! The top level (`time_zone`, `state_dir`, `parallelism`, `catch_up`), `[plans.NAME]` and the
//! daemon's `[daemon]`/`[api]` are defined here; every other table is a crate's own type:
//! `[sources.NAME]` by `type` (the registry: [`SourceConfig`]), `[sinks.NAME]` likewise
//! ([`SinkConfig`]), a plan's `retention` (retention), `mongo` (source-mongo) and `encrypt`
//! (backup-core's pack encryption) tables, its
//! `full`/`incremental` cron expressions (policy-schedule), `[health]` and `[alerts.NAME]`
//! (alerts). Every table denies unknown keys; every error names the file, the line and the key.
//!
//! ```
//! let cfg = packrat_app::config::Config::parse(r#"
//!     state_dir = "/var/lib/packrat"
//!     [sources.app_db]
//!     type = "sqlite"
//!     path = "/srv/app/data/app.db"
//!     [sinks.local]
//!     type = "local"
//!     path = "/backups"
//!     [plans.nightly]
//!     sources = ["app_db"]
//!     sinks = ["local"]
//!     full = "0 4 * * *"
//! "#, "packrat.toml".as_ref()).unwrap();
//! assert_eq!(cfg.plans["nightly"].prefix(), "migration_pack");
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use alerts::{AlertChannelConfig, HealthConfig};
use backup_core::config::{ConfigText, Section, SinkSection, SourceSection, names};
use backup_core::crypt::EncryptConfig;
use backup_core::pack::check_plan_name;
use backup_core::{Error, PackId, Result};
use chrono_tz::Tz;
use policy_schedule::{CatchUp, CronExpr};
use retention::RetentionConfig;
use serde::{Deserialize, Serialize};
use sink_cifs_replica::CifsReplicaSinkConfig;
use sink_local::LocalSinkConfig;
use sink_object::ObjectSinkConfig;
use source_docker::DockerSourceConfig;
use source_mongo::{MongoPlanConfig, MongoSourceConfig};
use source_sqlite::SqliteSourceConfig;

mod daemon;
pub use backup_core::config::CONFIG_ENV;
pub use daemon::{ApiConfig, DaemonConfig};

/// The whole configuration of one installation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Default IANA time zone of plans (pack ids, schedules, retention periods). Default `UTC`.
    #[serde(default = "default_tz")]
    pub time_zone: Tz,
    /// Directory of the state store (`state.db`) and locks. Relative paths are resolved against
    /// the config file's directory.
    pub state_dir: PathBuf,
    /// Language of every operator-facing text (`zh-CN` or `en`). Default: from the locale
    /// (`LANG`), else English. Logs and JSON keys stay English.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<i18n::Lang>,
    /// Most jobs (and, within a job, collections) running at once. Default 3.
    #[serde(default = "default_parallelism")]
    pub parallelism: usize,
    /// Named sources.
    #[serde(default)]
    pub sources: BTreeMap<String, SourceConfig>,
    /// Named sinks.
    #[serde(default)]
    pub sinks: BTreeMap<String, SinkConfig>,
    /// Named plans.
    #[serde(default)]
    pub plans: BTreeMap<String, PlanConfig>,
    /// What the scheduler does about slots missed while packrat was down (`once` or `skip`),
    /// for plans without their own `catch_up`. Default `once`.
    #[serde(default)]
    pub catch_up: CatchUp,
    /// How the daemon runs (`[daemon]`).
    #[serde(default)]
    pub daemon: DaemonConfig,
    /// The daemon's HTTP API (`[api]`).
    #[serde(default)]
    pub api: ApiConfig,
    /// The daemon's health checks (`[health]`).
    #[serde(default)]
    pub health: HealthConfig,
    /// Alert channels (`[alerts.NAME]`); the alerts log always receives every alert.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub alerts: BTreeMap<String, AlertChannelConfig>,
    /// The file and text this config was parsed from, for messages that name a line.
    #[serde(skip)]
    origin: ConfigText,
}

fn default_tz() -> Tz {
    chrono_tz::UTC
}
fn default_parallelism() -> usize {
    3
}
fn default_true() -> bool {
    true
}
fn default_zstd_level() -> i32 {
    3
}

/// Declares a `type`-tagged enum of crate-owned config sections, one line per type: the
/// registry. Each section type implements [`SourceSection`] (or [`SinkSection`]), so nothing
/// else here needs to know it.
macro_rules! registry {
    ($(#[$meta:meta])* $name:ident: $section:ident { $($(#[$vmeta:meta])* $tag:literal => $variant:ident($ty:ty),)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "type")]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $tag)] $variant($ty),)+
        }

        impl $name {
            /// The `type` name.
            pub fn kind(&self) -> &'static str {
                match self {
                    $($name::$variant(_) => $tag,)+
                }
            }

            /// The section: what builds the instance.
            pub fn section(&self) -> &dyn $section {
                match self {
                    $($name::$variant(c) => c,)+
                }
            }

            /// The section, for path resolution.
            pub fn section_mut(&mut self) -> &mut dyn Section {
                match self {
                    $($name::$variant(c) => c,)+
                }
            }
        }
    };
}

registry! {
    /// A source, selected by `type`: the registry of source types. Adding a source type is one
    /// line here; its crate owns the config struct and implements [`SourceSection`].
    SourceConfig: SourceSection {
        /// A SQLite database file.
        "sqlite" => Sqlite(SqliteSourceConfig),
        /// A MongoDB deployment.
        "mongo" => Mongo(MongoSourceConfig),
        /// A Docker compose app (volumes, compose files, images).
        "docker" => Docker(DockerSourceConfig),
    }
}

registry! {
    /// A sink, selected by `type`: the registry of sink types. Adding a sink type is one line
    /// here; its crate owns the config struct and implements [`SinkSection`].
    SinkConfig: SinkSection {
        /// A local directory.
        "local" => Local(LocalSinkConfig),
        /// A verified replica on a mounted SMB/CIFS share.
        "cifs-replica" => CifsReplica(CifsReplicaSinkConfig),
        /// A bucket of an S3-compatible object store.
        "s3" => S3(ObjectSinkConfig),
    }
}

/// A plan: which sources go to which sinks, when, and how long packs are kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanConfig {
    /// Source names (use this or `source`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<String>,
    /// A single source name (shorthand for `sources = [..]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Sink names; the first one receives the pack by rename, the others get verified copies.
    pub sinks: Vec<String>,
    /// Pack id prefix. Default `migration_pack`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Time zone of this plan. Default: the top-level `time_zone`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<Tz>,
    /// Cron expression (5 fields) for full backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full: Option<CronExpr>,
    /// Cron expression (5 fields) for incremental backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incremental: Option<CronExpr>,
    /// Cron expression (5 fields) for the daemon's deep verification of the newest pack on every
    /// sink of the plan (`packrat drill PLAN --verify` by hand).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<CronExpr>,
    /// Cron expression (5 fields) for the daemon's restore drill: the newest pack restored into
    /// a scratch place, checked, removed (`packrat drill PLAN` by hand).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drill: Option<CronExpr>,
    /// How long packs are kept.
    #[serde(default)]
    pub retention: RetentionConfig,
    /// Whether the scheduler runs this plan. Default true.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Whether a failed copy to a further sink fails the job. Default true.
    #[serde(default = "default_true")]
    pub replication_required: bool,
    /// zstd level for compressed artifacts (1-19). Default 3.
    #[serde(default = "default_zstd_level")]
    pub zstd_level: i32,
    /// Catch-up after downtime for this plan (`once` or `skip`). Default: the top-level `catch_up`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catch_up: Option<CatchUp>,
    /// Alert when the last success is older than this. Default: twice the schedule interval.
    #[serde(default, with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub max_age: Option<Duration>,
    /// The MongoDB part (`[plans.NAME.mongo]`): collections, time field, windows; for plans with
    /// a mongo source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mongo: Option<MongoPlanConfig>,
    /// Encryption of the plan's packs (`[plans.NAME.encrypt]`): age recipients or a passphrase,
    /// and the identity to read them with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encrypt: Option<EncryptConfig>,
}

impl PlanConfig {
    /// The pack id prefix.
    pub fn prefix(&self) -> &str {
        self.prefix.as_deref().unwrap_or("migration_pack")
    }

    /// All source names (`source` and `sources`).
    pub fn source_names(&self) -> Vec<&str> {
        self.source
            .iter()
            .map(String::as_str)
            .chain(self.sources.iter().map(String::as_str))
            .collect()
    }

    /// The MongoDB part, or the defaults (every collection, no time field).
    pub fn mongo(&self) -> MongoPlanConfig {
        self.mongo.clone().unwrap_or_default()
    }

    /// For a plan that only ever runs incremental backups: what is wrong (how far back a restore
    /// can go) and what to do (see [`retention::incremental_only_warning`]).
    pub fn incremental_only_warning(&self, name: &str) -> Option<(String, String)> {
        retention::incremental_only_warning(name, self.full.is_some(), self.incremental.is_some(), &self.retention)
    }

    /// True when the plan has a `full` or an `incremental` schedule.
    pub fn is_scheduled(&self) -> bool {
        self.full.is_some() || self.incremental.is_some()
    }
}

/// The MongoDB plan keys that lived in `[plans.NAME]` before they moved to `[plans.NAME.mongo]`.
const MOVED_MONGO_KEYS: &[&str] = &[
    "collections",
    "exclude_collections",
    "time_field",
    "lag",
    "first_run",
    "parallelism",
    "per_collection",
];

/// Adds where it went to the error about a MongoDB plan key at its old place (`[plans.NAME]`).
fn moved_mongo_key(e: Error) -> Error {
    let Error::Config(msg) = &e else { return e };
    let first = msg.lines().next().unwrap_or_default();
    let moved = MOVED_MONGO_KEYS
        .iter()
        .any(|k| first.contains(&format!("unknown field `{k}`")));
    let Some(plan) = first
        .split("key `plans.")
        .nth(1)
        .and_then(|rest| rest.split('.').next())
        .filter(|_| moved)
    else {
        return e;
    };
    let (head, tail) = msg.split_once('\n').map_or((msg.as_str(), ""), |(h, t)| (h, t));
    Error::Config(format!(
        "{head}; the MongoDB plan keys moved to their own table [plans.{plan}.mongo] (see docs/configuration.md)\n{tail}"
    ).trim_end().to_string())
}

impl Config {
    /// Reads and validates the config file at `path`; relative paths inside are resolved against
    /// its directory.
    pub fn load(path: &Path) -> Result<Config> {
        let text = backup_core::config::read_text(path)?;
        Config::parse(&text.text, &text.path)
    }

    /// Loads the config named by `--config` / `PACKRAT_CONFIG` (`path`); `None` is a usage error
    /// that says how to give one.
    ///
    /// Loading also sets the process's language ([`i18n::set_language`]) from the config.
    pub fn load_given(path: Option<&Path>) -> Result<Config> {
        match path {
            Some(p) => {
                let cfg = Config::load(p)?;
                i18n::set_language(cfg.language());
                Ok(cfg)
            }
            None => Err(Error::Config(i18n::tr!("error-no-config", env = CONFIG_ENV))),
        }
    }

    /// Parses and validates config text; `path` is used for messages and to resolve relative paths.
    ///
    /// Errors name the file, the line and the key. Besides the schema (unknown keys, types, cron
    /// expressions), it refuses empty values (`state_dir = ""`, an empty name, an empty list
    /// element), Windows-style paths on other systems (`D:/backups`, `\\\\server\\share`) and
    /// inconsistent settings (unknown sources or sinks, `source` together with `sources`, …).
    pub fn parse(text: &str, path: &Path) -> Result<Config> {
        let mut cfg: Config = backup_core::config::parse_document(text, path).map_err(moved_mongo_key)?;
        cfg.origin = ConfigText {
            path: path.to_path_buf(),
            text: text.to_string(),
        };
        cfg.resolve_paths()?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Every path-valued setting with its key.
    fn paths_mut(&mut self) -> Vec<(Vec<String>, &mut PathBuf)> {
        fn under<'a>(
            prefix: &[&str],
            section: &'a mut dyn Section,
        ) -> impl Iterator<Item = (Vec<String>, &'a mut PathBuf)> + use<'a> {
            let prefix: Vec<String> = prefix.iter().map(|s| s.to_string()).collect();
            section.paths_mut().into_iter().map(move |(k, p)| {
                let mut key = prefix.clone();
                key.push(k.to_string());
                (key, p)
            })
        }
        let mut out = vec![(vec!["state_dir".to_string()], &mut self.state_dir)];
        for (name, s) in self.sources.iter_mut() {
            out.extend(under(&["sources", name], s.section_mut()));
        }
        for (name, s) in self.sinks.iter_mut() {
            out.extend(under(&["sinks", name], s.section_mut()));
        }
        for (name, p) in self.plans.iter_mut() {
            if let Some(e) = p.encrypt.as_mut() {
                out.extend(under(&["plans", name, "encrypt"], e));
            }
        }
        out.extend(under(&["daemon"], &mut self.daemon));
        out.extend(under(&["api"], &mut self.api));
        for (name, c) in self.alerts.iter_mut() {
            out.extend(under(&["alerts", name], c));
        }
        out
    }

    /// Refuses Windows-style paths (on other systems) and resolves relative paths against the
    /// config file's directory.
    fn resolve_paths(&mut self) -> Result<()> {
        let base = self.origin.path.parent().map(Path::to_path_buf).unwrap_or_default();
        let origin = self.origin.clone();
        backup_core::config::resolve_paths(&base, self.paths_mut())
            .map_err(|(key, msg)| origin.key_error(&key.iter().map(String::as_str).collect::<Vec<_>>(), msg))
    }

    fn validate(&self) -> Result<()> {
        let err = |key: &[&str], msg: String| self.key_error(key, msg);
        let section = |prefix: &[&str], s: &dyn Section| s.validate().map_err(|i| self.origin.issue_error(prefix, &i));
        if self.parallelism == 0 {
            return Err(err(&["parallelism"], "must be at least 1".into()));
        }
        for (name, plan) in &self.plans {
            let key = |k: &'static str| ["plans", name.as_str(), k];
            check_plan_name(name).map_err(|e| err(&["plans", name], e.to_string()))?;
            if plan.source.is_some() && !plan.sources.is_empty() {
                return Err(err(
                    &key("source"),
                    "set either `source = \"..\"` or `sources = [..]`, not both".into(),
                ));
            }
            let sources = plan.source_names();
            if sources.is_empty() {
                return Err(err(
                    &["plans", name],
                    "needs `sources = [..]` (or `source = \"..\"`)".into(),
                ));
            }
            for s in &sources {
                if !self.sources.contains_key(*s) {
                    let k = if plan.source.is_some() { "source" } else { "sources" };
                    return Err(err(
                        &key(k),
                        format!("unknown source `{s}` (defined: {})", names(&self.sources)),
                    ));
                }
            }
            if plan.sinks.is_empty() {
                return Err(err(&key("sinks"), "needs at least one sink in `sinks = [..]`".into()));
            }
            for s in &plan.sinks {
                if !self.sinks.contains_key(s) {
                    return Err(err(
                        &key("sinks"),
                        format!("unknown sink `{s}` (defined: {})", names(&self.sinks)),
                    ));
                }
            }
            PackId::new(format!("{}_20000101_000000", plan.prefix())).map_err(|_| {
                err(
                    &key("prefix"),
                    format!("invalid prefix `{}`: use A-Z a-z 0-9 _ - .", plan.prefix()),
                )
            })?;
            if !(1..=19).contains(&plan.zstd_level) {
                return Err(err(
                    &key("zstd_level"),
                    format!("{} is out of range 1..=19", plan.zstd_level),
                ));
            }
            section(&["plans", name, "retention"], &plan.retention)?;
            if let Some(e) = &plan.encrypt {
                section(&["plans", name, "encrypt"], e)?;
            }
            if let Some(m) = &plan.mongo {
                let has_mongo = sources
                    .iter()
                    .any(|s| matches!(self.sources.get(*s), Some(SourceConfig::Mongo(_))));
                if !has_mongo {
                    return Err(err(
                        &key("mongo"),
                        "[plans.NAME.mongo] applies to mongo sources, but this plan has none".into(),
                    ));
                }
                section(&["plans", name, "mongo"], m)?;
            }
        }
        for (name, s) in &self.sources {
            section(&["sources", name], s.section())?;
        }
        for (name, s) in &self.sinks {
            section(&["sinks", name], s.section())?;
        }
        section(&["daemon"], &self.daemon)?;
        section(&["api"], &self.api)?;
        section(&["health"], &self.health)?;
        for (name, c) in &self.alerts {
            section(&["alerts", name], c)?;
        }
        Ok(())
    }

    /// The language of operator-facing texts: `language`, else the locale's.
    pub fn language(&self) -> i18n::Lang {
        self.language.unwrap_or_else(i18n::Lang::from_env)
    }

    /// The plan named `name`, or an error listing the defined plans.
    pub fn plan(&self, name: &str) -> Result<&PlanConfig> {
        self.plans.get(name).ok_or_else(|| {
            Error::NotFound(i18n::tr!(
                "error-unknown-plan",
                plan = name,
                defined = names(&self.plans)
            ))
        })
    }

    /// The effective configuration of plan `name` as a config file of its own: the top-level
    /// settings, the plan, and its sources and sinks (paths resolved; secrets only as the
    /// `*_env` / `*_file` names that hold them, as the config never holds one). Every pack
    /// carries it ([`backup_core::runner::PLAN_CONFIG_PATH`]); `packrat config check` reads it.
    pub fn plan_document(&self, name: &str) -> Result<String> {
        #[derive(Serialize)]
        struct PlanDocument<'a> {
            time_zone: &'a Tz,
            state_dir: &'a Path,
            #[serde(skip_serializing_if = "Option::is_none")]
            language: Option<&'a i18n::Lang>,
            parallelism: usize,
            catch_up: &'a CatchUp,
            sources: BTreeMap<&'a str, &'a SourceConfig>,
            sinks: BTreeMap<&'a str, &'a SinkConfig>,
            plans: BTreeMap<&'a str, &'a PlanConfig>,
        }
        let pc = self.plan(name)?;
        let doc = PlanDocument {
            time_zone: &self.time_zone,
            state_dir: &self.state_dir,
            language: self.language.as_ref(),
            parallelism: self.parallelism,
            catch_up: &self.catch_up,
            sources: pc
                .source_names()
                .into_iter()
                .filter_map(|s| self.sources.get_key_value(s).map(|(k, v)| (k.as_str(), v)))
                .collect(),
            sinks: pc
                .sinks
                .iter()
                .filter_map(|s| self.sinks.get_key_value(s).map(|(k, v)| (k.as_str(), v)))
                .collect(),
            plans: BTreeMap::from([(name, pc)]),
        };
        let body = toml::to_string_pretty(&doc)
            .map_err(|e| Error::Other(format!("cannot render the configuration of plan `{name}`: {e}")))?;
        Ok(format!(
            "# The effective configuration of plan `{name}`, written by packrat {} into each of its\n\
             # packs. Secrets are not in it, only the variables and files that hold them.\n\
             # `packrat config check --config plan.toml` reads it.\n\n{body}",
            env!("CARGO_PKG_VERSION")
        ))
    }

    /// The time zone of `plan` (its own, or the default).
    pub fn plan_time_zone(&self, plan: &PlanConfig) -> Tz {
        plan.time_zone.unwrap_or(self.time_zone)
    }

    /// The catch-up behaviour of `plan` (its own, or the top-level default).
    pub fn plan_catch_up(&self, plan: &PlanConfig) -> CatchUp {
        plan.catch_up.unwrap_or(self.catch_up)
    }

    /// The daemon's log directory (`[daemon] log_dir`, default `<state_dir>/logs`).
    pub fn log_dir(&self) -> PathBuf {
        self.daemon
            .log_dir
            .clone()
            .unwrap_or_else(|| self.state_dir.join("logs"))
    }

    /// The configuration as TOML with secrets redacted (`config show`).
    pub fn to_redacted_toml(&self) -> String {
        // Secrets are only ever referenced (env var names, file paths), never stored in the
        // config, so the serialised form is already free of secret values.
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }

    /// The config file this config was read from (as given to [`Config::parse`]).
    pub fn file(&self) -> &Path {
        &self.origin.path
    }

    /// The error "config file FILE, line L, key `KEY`: MSG" about this config's `key`
    /// (segments: `["plans", "hot", "incremental"]`).
    pub fn key_error(&self, key: &[&str], msg: impl std::fmt::Display) -> Error {
        self.origin.key_error(key, msg)
    }

    /// The 1-based line of `key` in the config text.
    pub fn line_of(&self, key: &[&str]) -> Option<usize> {
        self.origin.line_of(key)
    }
}
