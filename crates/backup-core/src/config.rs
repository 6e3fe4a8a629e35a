//! The configuration schema (TOML), shared by both binaries and by embedders.
//!
//! Every table denies unknown keys; parse errors name the file, line and key. Secrets are never
//! written inline: they are referenced by environment variable (`*_env`) or file (`*_file`) and
//! resolved into a [`Secret`] whose `Debug`/`Display` print `***`.
//!
//! ```
//! let cfg = backup_core::config::Config::parse(r#"
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
//! "#, "packrat.toml".as_ref()).unwrap();
//! assert_eq!(cfg.plans["nightly"].prefix(), "migration_pack");
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::pack::check_plan_name;
use crate::{Error, PackId, Result};

mod daemon;
pub use daemon::{
    AlertChannelConfig, ApiConfig, CatchUp, DaemonConfig, DingTalkChannelConfig, EmailChannelConfig, HealthConfig,
    SmtpTls, WebhookChannelConfig,
};

mod mongo;
pub use mongo::{CollectionConfig, CollectionMode, DEFAULT_LAG, FirstRun};

mod replica;
pub use replica::{CifsReplicaSinkConfig, ReplicaLayout, default_allowed_fs_types};

mod locate;
pub use locate::{display_key, key_error, line_of_key};
mod retention;
pub use retention::CalendarDuration;

/// Environment variable naming the config file when `--config` is not given.
pub const CONFIG_ENV: &str = "PACKRAT_CONFIG";

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
    origin: Origin,
}

/// Where a config came from.
#[derive(Debug, Clone, Default, PartialEq)]
struct Origin {
    path: PathBuf,
    text: String,
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

/// A source, selected by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum SourceConfig {
    /// A SQLite database file.
    Sqlite(SqliteSourceConfig),
    /// A MongoDB deployment.
    Mongo(MongoSourceConfig),
    /// A Docker compose app (volumes, compose files, images).
    Docker(DockerSourceConfig),
}

impl SourceConfig {
    /// The `type` name.
    pub fn kind(&self) -> &'static str {
        match self {
            SourceConfig::Sqlite(_) => "sqlite",
            SourceConfig::Mongo(_) => "mongo",
            SourceConfig::Docker(_) => "docker",
        }
    }
}

/// `type = "sqlite"`: a consistent online copy of a live SQLite database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqliteSourceConfig {
    /// The database file.
    pub path: PathBuf,
    /// Store the copy zstd-compressed (`sqlite/<name>.db.zst`). Default false.
    #[serde(default)]
    pub compress: bool,
    /// Artifact name (`sqlite/<name>.db`). Default: the source's name.
    #[serde(default)]
    pub name: Option<String>,
    /// How long to wait for a lock held by another connection before failing. Default 30s.
    #[serde(default = "default_busy_timeout", with = "humantime_serde")]
    pub busy_timeout: Duration,
}

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
}

impl MongoSourceConfig {
    /// Resolves the connection URI; `name` is the source name for messages.
    pub fn uri(&self, name: &str) -> Result<Secret> {
        Secret::resolve(
            &format!("sources.{name}.uri_env/uri_file"),
            self.uri_env.as_deref(),
            self.uri_file.as_deref(),
        )
    }
}

fn default_busy_timeout() -> Duration {
    Duration::from_secs(30)
}

/// `type = "docker"`: a Docker compose app: its named volumes (one tar archive each), its compose
/// files and `.env`, and on full backups optionally its images.
///
/// Select the project with `compose_file` (the project name is derived as compose does) and/or
/// `project`; its volumes are those labelled `com.docker.compose.project=<project>`, unless
/// `volumes` (an explicit list) or `volume_prefix` is given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DockerSourceConfig {
    /// The project's compose file; it and the `.env` next to it go to `docker/compose/<project>/`.
    /// Project name: `project`, else `COMPOSE_PROJECT_NAME` from that `.env`, else the file's
    /// top-level `name:`, else its directory's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compose_file: Option<PathBuf>,
    /// The compose project name (overrides the derived one; alone, selects the project by name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// Back up exactly these volumes instead of the project's labelled ones.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<String>,
    /// Back up every volume whose name starts with this prefix instead of the labelled ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_prefix: Option<String>,
    /// Volumes to leave out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_volumes: Vec<String>,
    /// More files to copy into `docker/compose/<project>/` (override files, configs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_files: Vec<PathBuf>,
    /// Image of the helper containers that read the volumes (they are created, never started, so
    /// any local image works). Default: the image of one of the project's containers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub helper_image: Option<String>,
    /// Stop the project's running containers while the volumes are archived, then start exactly
    /// those again (also when the backup fails). Default false.
    #[serde(default)]
    pub stop_during_backup: bool,
    /// How long a container may take to stop before it is killed. Default 30s.
    #[serde(default = "default_stop_timeout", with = "humantime_serde")]
    pub stop_timeout: Duration,
    /// Include the images of the project's containers in full backups. Default false.
    #[serde(default)]
    pub include_images: bool,
    /// Engine address (`unix:///var/run/docker.sock`, `tcp://127.0.0.1:2375`,
    /// `npipe:////./pipe/docker_engine`). Default: `DOCKER_HOST`, else the platform's socket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_host: Option<String>,
}

fn default_stop_timeout() -> Duration {
    Duration::from_secs(30)
}

impl DockerSourceConfig {
    /// Checks the combination of keys; `Err` holds the key the message is about (`""`: the
    /// table) and the message.
    fn validate(&self) -> std::result::Result<(), (&'static str, String)> {
        let has_project = self.compose_file.is_some() || self.project.is_some();
        if !self.volumes.is_empty() && self.volume_prefix.is_some() {
            return Err((
                "volume_prefix",
                "set either `volumes` (an explicit list) or `volume_prefix`, not both".into(),
            ));
        }
        if !has_project && self.volumes.is_empty() && self.volume_prefix.is_none() {
            return Err((
                "",
                "needs `compose_file` or `project` (or an explicit `volumes` list or `volume_prefix`)".into(),
            ));
        }
        if !has_project && (self.stop_during_backup || self.include_images) {
            return Err((
                if self.stop_during_backup {
                    "stop_during_backup"
                } else {
                    "include_images"
                },
                "`stop_during_backup` and `include_images` need the project: set `compose_file` or `project`".into(),
            ));
        }
        if let Some(p) = &self.project {
            let ok = !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
                && p.starts_with(|c: char| c.is_ascii_alphanumeric());
            if !ok {
                return Err((
                    "project",
                    format!(
                        "invalid project `{p}`: compose project names use a-z 0-9 _ - and start with a letter or digit"
                    ),
                ));
            }
        }
        for (key, list) in [("volumes", &self.volumes), ("exclude_volumes", &self.exclude_volumes)] {
            for v in list {
                let ok = v.len() > 1
                    && v.chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
                    && v.starts_with(|c: char| c.is_ascii_alphanumeric());
                if !ok {
                    return Err((
                        key,
                        format!(
                            "invalid volume name `{v}`: Docker volume names use A-Z a-z 0-9 _ . - and start with a letter or digit"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// A sink, selected by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum SinkConfig {
    /// A local directory.
    Local(LocalSinkConfig),
    /// A verified replica on a mounted SMB/CIFS share.
    CifsReplica(CifsReplicaSinkConfig),
}

impl SinkConfig {
    /// The `type` name.
    pub fn kind(&self) -> &'static str {
        match self {
            SinkConfig::Local(_) => "local",
            SinkConfig::CifsReplica(_) => "cifs-replica",
        }
    }
}

/// `type = "local"`: packs in a directory on a local filesystem.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalSinkConfig {
    /// Root directory; packs live in `<path>/<plan>/<pack id>`.
    pub path: PathBuf,
    /// Space to leave free on the filesystem, in MiB, on top of the expected pack size. Default 64.
    #[serde(default = "default_min_free")]
    pub min_free_mb: u64,
}

fn default_min_free() -> u64 {
    64
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
    pub full: Option<String>,
    /// Cron expression (5 fields) for incremental backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incremental: Option<String>,
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
    /// Most collections of a Mongo source backed up at once. Default: the top-level `parallelism`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallelism: Option<usize>,
    /// Mongo sources: collections to back up, by name or glob (`*`, `?`, `[a-z]`). A plain name
    /// must exist. Empty: every collection of the database. See `config::mongo`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub collections: Vec<String>,
    /// Mongo sources: collections to leave out, by name or glob.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_collections: Vec<String>,
    /// Mongo sources: the time field of incremental windows (`createdAt`, `updatedAt`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_field: Option<String>,
    /// Mongo sources: incremental windows end this far behind the job's start, so late writers
    /// with a slightly older time are not missed. Default 1m.
    #[serde(default, with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub lag: Option<Duration>,
    /// Mongo sources: where the first incremental run starts: `today` (default, plan zone),
    /// `all`, or a date `2026-01-01`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_run: Option<FirstRun>,
    /// Mongo sources: per-collection `time_field` and `mode` (`incremental` or `full`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub per_collection: BTreeMap<String, CollectionConfig>,
}

fn default_zstd_level() -> i32 {
    3
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
}

/// Retention rules (restic's semantics). Empty means "keep everything". A count or span of 0 is
/// refused when the config is read (see `config::retention`); [`Default`] sets no rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// Keep every pack younger than this, in restic's grammar (`72h`, `7d`, `1m` = a month,
    /// `1y6m`), measured from the newest pack.
    #[serde(
        default,
        deserialize_with = "retention::keep_within",
        skip_serializing_if = "Option::is_none"
    )]
    pub keep_within: Option<CalendarDuration>,
    /// Keep the newest N packs (`keep_last = 1`: only the newest).
    #[serde(
        default,
        deserialize_with = "retention::keep_count",
        skip_serializing_if = "Option::is_none"
    )]
    pub keep_last: Option<u32>,
    /// Keep the newest pack of each of the last N hours.
    #[serde(
        default,
        deserialize_with = "retention::keep_count",
        skip_serializing_if = "Option::is_none"
    )]
    pub keep_hourly: Option<u32>,
    /// Keep the newest pack of each of the last N days.
    #[serde(
        default,
        deserialize_with = "retention::keep_count",
        skip_serializing_if = "Option::is_none"
    )]
    pub keep_daily: Option<u32>,
    /// Keep the newest pack of each of the last N weeks.
    #[serde(
        default,
        deserialize_with = "retention::keep_count",
        skip_serializing_if = "Option::is_none"
    )]
    pub keep_weekly: Option<u32>,
    /// Keep the newest pack of each of the last N months.
    #[serde(
        default,
        deserialize_with = "retention::keep_count",
        skip_serializing_if = "Option::is_none"
    )]
    pub keep_monthly: Option<u32>,
    /// Keep the newest pack of each of the last N years.
    #[serde(
        default,
        deserialize_with = "retention::keep_count",
        skip_serializing_if = "Option::is_none"
    )]
    pub keep_yearly: Option<u32>,
    /// Never keep more than N packs (chain bases of kept incremental packs excepted).
    #[serde(
        default,
        deserialize_with = "retention::max_packs",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_packs: Option<u32>,
}

impl Config {
    /// Reads and validates the config file at `path`; relative paths inside are resolved against
    /// its directory.
    pub fn load(path: &Path) -> Result<Config> {
        let bytes = std::fs::read(path).map_err(|e| {
            Error::Config(if e.kind() == std::io::ErrorKind::NotFound {
                format!(
                    "config file {} not found; pass --config FILE or set {CONFIG_ENV}",
                    path.display()
                )
            } else {
                format!("cannot read config file {}: {e}", path.display())
            })
        })?;
        let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let text = std::str::from_utf8(&bytes).map_err(|e| {
            let at = e.valid_up_to();
            let line = bytes[..at].iter().filter(|&&b| b == b'\n').count() + 1;
            Error::Config(format!(
                "config file {} is not UTF-8: invalid byte 0x{:02X} at offset {at} (line {line}); save it as UTF-8",
                abs.display(),
                bytes[at]
            ))
        })?;
        Config::parse(text, &abs)
    }

    /// Parses and validates config text; `path` is used for messages and to resolve relative paths.
    ///
    /// Errors name the file, the line and the key. Besides the schema (unknown keys, types), it
    /// refuses empty values (`state_dir = ""`, `url_env = ""`, an empty name, an empty list
    /// element), Windows-style paths on other systems (`D:/backups`, `\\\\server\\share`) and
    /// inconsistent settings (unknown sources or sinks, `source` together with `sources`, …).
    pub fn parse(text: &str, path: &Path) -> Result<Config> {
        let doc = toml::de::DeTable::parse(text).map_err(|e| toml_error(text, path, &e))?;
        if let Some((key, at)) = locate::find_blank(doc.get_ref()) {
            let shown = display_key(&key.iter().map(String::as_str).collect::<Vec<_>>());
            return Err(locate::at_line(
                path,
                text,
                Some(locate::line_at(text, at)),
                &shown,
                &locate::blank_advice(&key),
            ));
        }
        let mut cfg = Config::deserialize(toml::de::Deserializer::from(doc)).map_err(|e| toml_error(text, path, &e))?;
        cfg.origin = Origin {
            path: path.to_path_buf(),
            text: text.to_string(),
        };
        cfg.resolve_paths()?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Every path-valued setting with its key.
    fn paths_mut(&mut self) -> Vec<(Vec<String>, &mut PathBuf)> {
        let key = |parts: &[&str]| parts.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let mut out = vec![(key(&["state_dir"]), &mut self.state_dir)];
        for (name, s) in self.sources.iter_mut() {
            match s {
                SourceConfig::Sqlite(c) => out.push((key(&["sources", name, "path"]), &mut c.path)),
                SourceConfig::Mongo(c) => {
                    out.extend(c.uri_file.iter_mut().map(|f| (key(&["sources", name, "uri_file"]), f)))
                }
                SourceConfig::Docker(c) => {
                    out.extend(
                        c.compose_file
                            .iter_mut()
                            .map(|f| (key(&["sources", name, "compose_file"]), f)),
                    );
                    out.extend(
                        c.extra_files
                            .iter_mut()
                            .map(|f| (key(&["sources", name, "extra_files"]), f)),
                    );
                }
            }
        }
        for (name, s) in self.sinks.iter_mut() {
            match s {
                SinkConfig::Local(c) => out.push((key(&["sinks", name, "path"]), &mut c.path)),
                // An unset path stays empty: the sink then reports "replica path is empty".
                SinkConfig::CifsReplica(c) if c.path.as_os_str().is_empty() => {}
                SinkConfig::CifsReplica(c) => out.push((key(&["sinks", name, "path"]), &mut c.path)),
            }
        }
        daemon::paths_mut(&mut self.daemon, &mut self.api, &mut self.alerts, &mut out);
        out
    }

    /// Refuses Windows-style paths (on other systems) and resolves relative paths against the
    /// config file's directory.
    fn resolve_paths(&mut self) -> Result<()> {
        let origin = std::mem::take(&mut self.origin);
        let base = origin.path.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut problem = None;
        for (key, p) in self.paths_mut() {
            if let Some(msg) = locate::windows_path_problem(p) {
                problem = Some((key, msg));
                break;
            }
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        self.origin = origin;
        match problem {
            Some((key, msg)) => Err(self.key_error(&key.iter().map(String::as_str).collect::<Vec<_>>(), msg)),
            None => Ok(()),
        }
    }

    fn validate(&self) -> Result<()> {
        let err = |key: &[&str], msg: String| self.key_error(key, msg);
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
            for s in sources {
                if !self.sources.contains_key(s) {
                    let k = if plan.source.is_some() { "source" } else { "sources" };
                    return Err(err(
                        &key(k),
                        format!("unknown source `{s}` (defined: {})", keys(&self.sources)),
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
                        format!("unknown sink `{s}` (defined: {})", keys(&self.sinks)),
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
        }
        for (name, s) in &self.sources {
            match s {
                SourceConfig::Sqlite(c) => {
                    if let Some(n) = &c.name {
                        PackId::new(n.clone()).map_err(|_| {
                            err(
                                &["sources", name, "name"],
                                format!("invalid name `{n}`: use A-Z a-z 0-9 _ - ."),
                            )
                        })?;
                    }
                }
                SourceConfig::Mongo(c) => {
                    if c.uri_env.is_some() && c.uri_file.is_some() {
                        return Err(err(
                            &["sources", name, "uri_file"],
                            "set either `uri_env` or `uri_file`, not both".into(),
                        ));
                    }
                    if c.uri_env.is_none() && c.uri_file.is_none() {
                        return Err(err(
                            &["sources", name],
                            "set exactly one of `uri_env` (environment variable) or `uri_file` (file) for the connection URI; URIs carry credentials and are never written in the config".into(),
                        ));
                    }
                }
                SourceConfig::Docker(c) => c.validate().map_err(|(k, m)| {
                    if k.is_empty() {
                        err(&["sources", name], m)
                    } else {
                        err(&["sources", name, k], m)
                    }
                })?,
            }
        }
        self.validate_daemon()?;
        self.validate_mongo()?;
        self.validate_replicas()?;
        Ok(())
    }

    /// The plan named `name`, or an error listing the defined plans.
    pub fn plan(&self, name: &str) -> Result<&PlanConfig> {
        self.plans.get(name).ok_or_else(|| {
            Error::NotFound(format!(
                "no plan `{name}` in the config (defined: {})",
                keys(&self.plans)
            ))
        })
    }

    /// The time zone of plan `name` (its own, or the default).
    pub fn plan_time_zone(&self, plan: &PlanConfig) -> Tz {
        plan.time_zone.unwrap_or(self.time_zone)
    }

    /// The configuration as TOML with secrets redacted (`config show`).
    pub fn to_redacted_toml(&self) -> String {
        // Secrets are only ever referenced (env var names, file paths), never stored in the
        // config, so the serialised form is already free of secret values.
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }
}

/// Phrases a TOML error with file, line and key. For tagged tables (`type = ".."`) the parser
/// only knows the table's span, so the line of an unknown key is looked up inside that table.
fn toml_error(text: &str, path: &Path, e: &toml::de::Error) -> Error {
    let msg = e.message().trim_end();
    let start = e.span().map(|s| s.start).unwrap_or(0).min(text.len());
    let mut line = locate::line_at(text, start);
    let mut key = None;
    let named = |prefix: &str| {
        msg.strip_prefix(prefix)
            .and_then(|rest| rest.split('`').next())
            .map(str::to_string)
    };
    if let Some(field) = named("unknown field `") {
        for (i, l) in text.lines().enumerate().skip(line) {
            let t = l.trim_start();
            if t.starts_with('[') {
                break;
            }
            if t.split(['=', ' ', '.']).next() == Some(field.as_str()) {
                line = i + 1;
                break;
            }
        }
        key = toml::de::DeTable::parse(text)
            .ok()
            .and_then(|doc| locate::key_on_line(doc.get_ref(), text, line, &field))
            .map(|k| display_key(&k.iter().map(String::as_str).collect::<Vec<_>>()))
            .or(Some(field));
    } else if let Ok(doc) = toml::de::DeTable::parse(text) {
        let doc = doc.get_ref();
        let at = locate::key_at(doc, start);
        let table = at.as_deref().and_then(|k| locate::table_at(doc, k));
        let show = |k: &[String]| display_key(&k.iter().map(String::as_str).collect::<Vec<_>>());
        if let Some(field) = named("missing field `") {
            let mut k = at.clone().filter(|_| table.is_some()).unwrap_or_default();
            k.push(field);
            key = Some(show(&k));
        } else if let Some((inner, offset)) = table.and_then(|t| locate::key_quoted_in(t, msg)) {
            // A tagged table: the parser only knows the table; find the key whose value it quotes.
            let mut k = at.clone().unwrap_or_default();
            k.extend(inner);
            key = Some(show(&k));
            line = locate::line_at(text, offset);
        } else {
            key = at.as_deref().map(show);
        }
    } else if let Some(field) = named("missing field `") {
        key = Some(field);
    }
    locate::at_line(path, text, Some(line), key.as_deref().unwrap_or(""), msg)
}

fn keys<V>(m: &BTreeMap<String, V>) -> String {
    if m.is_empty() {
        "none".into()
    } else {
        m.keys().cloned().collect::<Vec<_>>().join(", ")
    }
}

/// A secret value (password, token, URI with credentials). `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value itself: pass it to the client library, never to a log or message.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Reads a secret from environment variable `var` or file `file` (exactly one must be set);
    /// `what` names the config key for messages.
    pub fn resolve(what: &str, var: Option<&str>, file: Option<&Path>) -> Result<Secret> {
        let non_empty = |s: Secret, from: String| {
            if s.0.trim().is_empty() {
                Err(Error::Config(format!("{what}: {from} is empty; put the value there")))
            } else {
                Ok(s)
            }
        };
        match (var, file) {
            (Some(v), None) => std::env::var(v)
                .map_err(|_| {
                    Error::Config(format!(
                        "{what}: environment variable {v} is not set; export it or use a file"
                    ))
                })
                .and_then(|s| non_empty(Secret(s), format!("environment variable {v}"))),
            (None, Some(f)) => std::fs::read_to_string(f)
                .map_err(|e| Error::Config(format!("{what}: cannot read secret file {}: {e}", f.display())))
                .and_then(|s| {
                    non_empty(
                        Secret(s.trim_end_matches(['\r', '\n']).to_string()),
                        format!("secret file {}", f.display()),
                    )
                }),
            (Some(_), Some(_)) => Err(Error::Config(format!(
                "{what}: set either the _env or the _file form, not both"
            ))),
            (None, None) => Err(Error::Config(format!(
                "{what}: missing; set it via an environment variable or a file"
            ))),
        }
    }

    /// Replaces every occurrence of this secret in `text` by `***`.
    pub fn redact(&self, text: &str) -> String {
        if self.0.is_empty() {
            text.to_string()
        } else {
            text.replace(&self.0, "***")
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
time_zone = "Asia/Shanghai"
state_dir = "state"

[sources.app_db]
type = "sqlite"
path = "data/app.db"
compress = true
busy_timeout = "5s"

[sinks.local]
type = "local"
path = "/backups"

[plans.nightly]
sources = ["app_db"]
sinks = ["local"]
full = "0 4 * * *"
retention = { keep_daily = 7, keep_within = "72h" }
"#;

    #[test]
    fn parses_and_resolves_relative_paths() {
        let c = Config::parse(GOOD, Path::new("/etc/packrat/packrat.toml")).unwrap();
        assert_eq!(c.state_dir, PathBuf::from("/etc/packrat/state"));
        let SourceConfig::Sqlite(s) = &c.sources["app_db"] else {
            panic!("sqlite")
        };
        assert_eq!(s.path, PathBuf::from("/etc/packrat/data/app.db"));
        assert_eq!(s.busy_timeout, Duration::from_secs(5));
        assert_eq!(
            c.plans["nightly"].retention.keep_within,
            Some(CalendarDuration::hours(72))
        );
        assert_eq!(c.plan_time_zone(&c.plans["nightly"]), chrono_tz::Asia::Shanghai);
        let shown = c.to_redacted_toml();
        assert!(Config::parse(&shown, Path::new("/x/y.toml")).is_ok(), "{shown}");
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let bad = GOOD.replace("compress = true", "compres = true");
        let e = Config::parse(&bad, Path::new("p.toml")).unwrap_err().to_string();
        assert!(e.contains("p.toml"), "{e}");
        assert!(e.contains("line 8"), "{e}");
        assert!(e.contains("compres"), "{e}");
    }

    #[test]
    fn unknown_type_and_references_are_explained() {
        let bad = GOOD.replace("type = \"sqlite\"", "type = \"oracle\"");
        let e = Config::parse(&bad, Path::new("p.toml")).unwrap_err().to_string();
        assert!(e.contains("oracle"), "{e}");
        let bad = GOOD.replace("sinks = [\"local\"]", "sinks = [\"nas\"]");
        let e = Config::parse(&bad, Path::new("p.toml")).unwrap_err().to_string();
        assert!(
            e.contains("line 17, key `plans.nightly.sinks`: unknown sink `nas`") && e.contains("local"),
            "{e}"
        );
    }

    fn parse_err(text: &str) -> String {
        Config::parse(text, Path::new("/etc/packrat/packrat.toml"))
            .unwrap_err()
            .to_string()
    }

    /// `GOOD` plus a mongo source, a docker source, a replica sink and every daemon table, so that
    /// every string-valued key is present once.
    const ALL_KEYS: &str = r#"
time_zone = "UTC"
state_dir = "/var/lib/packrat"
[sources.app_db]
type = "sqlite"
path = "/srv/app.db"
name = "app"
[sources.mes]
type = "mongo"
uri_env = "MES_URI"
database = "mes"
[sources.stack]
type = "docker"
compose_file = "/srv/app/docker-compose.yml"
project = "app"
exclude_volumes = ["app_cache"]
extra_files = ["/srv/app/nginx.conf"]
helper_image = "busybox:latest"
docker_host = "unix:///var/run/docker.sock"
[sinks.local]
type = "local"
path = "/backups"
[sinks.windows]
type = "cifs-replica"
path = "/mnt/replica/App"
allowed_fs_types = ["cifs"]
[plans.nightly]
sources = ["app_db", "stack"]
sinks = ["local", "windows"]
prefix = "nightly"
full = "0 4 * * *"
retention = { keep_within = "72h" }
[plans.hot]
source = "mes"
sinks = ["local"]
collections = ["api_logs"]
time_field = "createdAt"
incremental = "0 * * * *"
[plans.hot.per_collection.chat]
time_field = "updatedAt"
[daemon]
log_dir = "/var/log/packrat"
log_level = "info"
[api]
token_env = "PACKRAT_TOKEN"
[alerts.hook]
type = "webhook"
url_env = "HOOK_URL"
[alerts.ding]
type = "dingtalk"
url_file = "/etc/packrat/ding.url"
secret_env = "DING_SECRET"
[alerts.mail]
type = "email"
host = "smtp.example.com"
username = "backup"
password_file = "/etc/packrat/smtp.pw"
from = "backup@example.com"
to = ["ops@example.com"]
"#;

    #[test]
    fn every_string_key_refuses_an_empty_value_naming_file_line_and_key() {
        Config::parse(ALL_KEYS, Path::new("/etc/packrat/packrat.toml")).unwrap();
        let lines: Vec<&str> = ALL_KEYS.lines().collect();
        let mut tested = 0;
        let mut table = String::new();
        for (i, l) in lines.iter().enumerate() {
            if let Some(t) = l.strip_prefix('[') {
                table = t.trim_end_matches(']').to_string();
                continue;
            }
            let Some((key, value)) = l.split_once(" = ") else {
                continue;
            };
            if key == "type" || !value.contains('"') {
                continue;
            }
            // `key = ""`, and for lists `key = [""]`.
            let empty = if value.starts_with('[') { "[\"\"]" } else { "\"\"" };
            let mut bad = lines.clone();
            let replaced = format!("{key} = {empty}");
            bad[i] = &replaced;
            let text = bad.join("\n");
            let e = parse_err(&text);
            let full_key = if table.is_empty() {
                key.to_string()
            } else {
                format!("{table}.{key}")
            };
            let want = format!(
                "config file /etc/packrat/packrat.toml, line {}, key `{full_key}`: must not be empty",
                i + 1
            );
            assert!(e.starts_with(&want), "{replaced}: {e}\nwanted: {want}");
            tested += 1;
        }
        assert!(tested >= 35, "{tested} keys tested");
        // Blank counts as empty; so does an empty name.
        let e = parse_err(&ALL_KEYS.replace("state_dir = \"/var/lib/packrat\"", "state_dir = \"   \""));
        assert!(
            e.contains("line 3, key `state_dir`: must not be empty; give a path"),
            "{e}"
        );
        let e = parse_err(&ALL_KEYS.replace("[sources.app_db]", "[sources.\"\"]"));
        assert!(
            e.contains("line 4, key `sources.\"\"`: a name must not be empty"),
            "{e}"
        );
        let e = parse_err(&ALL_KEYS.replace("uri_env = \"MES_URI\"", "uri_env = \"\""));
        assert!(e.contains("name the environment variable"), "{e}");
    }

    #[test]
    fn the_issue_examples_are_refused_with_file_line_and_key() {
        let cases = [
            ("state_dir = \"state\"", "state_dir = \"\"", 3, "state_dir"),
            ("path = \"data/app.db\"", "path = \"\"", 7, "sources.app_db.path"),
            (
                "[plans.nightly]",
                "[daemon]\nlog_level = \"\"\n[plans.nightly]",
                16,
                "daemon.log_level",
            ),
            (
                "[plans.nightly]",
                "[api]\ntoken_file = \"\"\n[plans.nightly]",
                16,
                "api.token_file",
            ),
            (
                "[plans.nightly]",
                "[alerts.ops]\ntype = \"slack\"\nurl_env = \"\"\n[plans.nightly]",
                17,
                "alerts.ops.url_env",
            ),
            ("time_zone", "parallelism = 0\ntime_zone", 2, "parallelism"),
            (
                "sinks = [\"local\"]",
                "sinks = [\"local\"]\nparallelism = 0",
                18,
                "plans.nightly.parallelism",
            ),
            (
                "sources = [\"app_db\"]",
                "sources = [\"app_db\"]\nsource = \"app_db\"",
                17,
                "plans.nightly.source",
            ),
        ];
        for (from, to, line, key) in cases {
            let text = GOOD.replace(from, to);
            assert_ne!(text, GOOD);
            let e = parse_err(&text);
            let want = format!("config file /etc/packrat/packrat.toml, line {line}, key `{key}`: ");
            assert!(e.starts_with(&want), "{to}: {e}\nwanted: {want}");
            assert!(!e.contains("[]"), "{e}");
        }
        let e = parse_err(&GOOD.replace("time_zone", "parallelism = 0\ntime_zone"));
        assert!(e.contains("must be at least 1\n  2 | parallelism = 0"), "{e}");
        let e = parse_err(&GOOD.replace("sources = [\"app_db\"]", "sources = [\"app_db\"]\nsource = \"app_db\""));
        assert!(e.contains("not both"), "{e}");
    }

    #[cfg(not(windows))]
    #[test]
    fn windows_paths_are_refused_on_linux() {
        for (key_line, p) in [
            ("path = \"/backups\"", "D:/incrementalBackups"),
            ("path = \"/backups\"", "D:\\\\incrementalBackups"),
            ("state_dir = \"state\"", "C:"),
            ("path = \"data/app.db\"", "\\\\\\\\server\\\\share\\\\app.db"),
        ] {
            let key = key_line.split(" = ").next().unwrap();
            let text = GOOD.replace(key_line, &format!("{key} = \"{p}\""));
            assert_ne!(text, GOOD);
            let e = parse_err(&text);
            assert!(e.contains("looks like a Windows"), "{p}: {e}");
            assert!(e.contains(", key `") && e.contains(", line "), "{p}: {e}");
        }
        let e = parse_err(&GOOD.replace("path = \"/backups\"", "path = \"D:/incrementalBackups\""));
        assert!(
            e.starts_with(
                "config file /etc/packrat/packrat.toml, line 13, key `sinks.local.path`: `D:/incrementalBackups` looks \
                 like a Windows path (drive D:); on Linux use an absolute path such as /srv/backups"
            ),
            "{e}"
        );
        let e = parse_err(&GOOD.replace("[plans.nightly]", "[daemon]\nlog_dir = 'E:\\logs'\n[plans.nightly]"));
        assert!(e.contains("key `daemon.log_dir`"), "{e}");
    }

    #[test]
    fn non_utf8_files_are_refused_with_offset_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("packrat.toml");
        let mut bytes = GOOD.as_bytes().to_vec();
        let at = GOOD.find("data/app.db").unwrap();
        bytes[at] = 0xFF;
        std::fs::write(&f, &bytes).unwrap();
        let e = Config::load(&f).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "config file {} is not UTF-8: invalid byte 0xFF at offset {at} (line 7); save it as UTF-8",
                f.display()
            )
        );
    }

    #[test]
    fn type_errors_and_missing_keys_name_the_key() {
        // Inside a tagged table (`type = ".."`) the parser only knows the table: the key whose
        // value the message quotes is looked up.
        let e = parse_err(&GOOD.replace("busy_timeout = \"5s\"", "busy_timeout = 5"));
        assert!(
            e.contains("line 9, key `sources.app_db.busy_timeout`: invalid type: integer `5`"),
            "{e}"
        );
        let e = parse_err(&GOOD.replace("compress = true", "compress = \"yes\""));
        assert!(e.contains("line 8, key `sources.app_db.compress`"), "{e}");
        let e = parse_err(&GOOD.replace("type = \"sqlite\"", "type = \"oracle\""));
        assert!(
            e.contains("line 6, key `sources.app_db.type`: unknown variant `oracle`"),
            "{e}"
        );
        let e = parse_err(&GOOD.replace("path = \"data/app.db\"\n", ""));
        assert!(
            e.contains("line 5, key `sources.app_db.path`: missing field `path`"),
            "{e}"
        );
        let e = parse_err(&GOOD.replace("state_dir = \"state\"\n", ""));
        assert!(e.contains("key `state_dir`") && e.contains("missing field"), "{e}");
        let e = parse_err(
            &GOOD
                .replace("zstd", "x")
                .replace("full = ", "zstd_level = \"high\"\nfull = "),
        );
        assert!(e.contains("line 18, key `plans.nightly.zstd_level`"), "{e}");
    }

    #[test]
    fn checks_from_other_crates_use_the_same_format() {
        let c = Config::parse(GOOD, Path::new("/etc/packrat/packrat.toml")).unwrap();
        assert_eq!(c.file(), Path::new("/etc/packrat/packrat.toml"));
        assert_eq!(c.line_of(&["plans", "nightly", "full"]), Some(18));
        let e = c.key_error(&["plans", "nightly", "full"], "bad cron").to_string();
        assert_eq!(
            e,
            "config file /etc/packrat/packrat.toml, line 18, key `plans.nightly.full`: bad cron\n  18 | full = \"0 4 * * *\""
        );
        assert_eq!(
            c.line_of(&["plans", "nightly", "retention", "keep_daily"]),
            Some(19),
            "inline table"
        );
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "*** Secret(***)");
        assert_eq!(s.redact("uri mongodb://u:hunter2@h"), "uri mongodb://u:***@h");
        assert!(Secret::resolve("x", Some("PACKRAT_TEST_SURELY_UNSET_VAR"), None).is_err());
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("uri");
        std::fs::write(&f, "\n").unwrap();
        let e = Secret::resolve("sources.mes.uri_env/uri_file", None, Some(&f))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            format!(
                "sources.mes.uri_env/uri_file: secret file {} is empty; put the value there",
                f.display()
            )
        );
    }
}
