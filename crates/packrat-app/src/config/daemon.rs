//! The daemon's own settings: `[daemon]` and `[api]`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use backup_core::config::{Issue, Secret, SecretRef, Section};
use backup_core::{Error, Result};
use serde::{Deserialize, Serialize};

/// `[daemon]`: how `packratd` runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonConfig {
    /// How long running jobs may take to finish after SIGTERM/SIGINT before they are cancelled
    /// (and recorded as cancelled). Default 60s.
    #[serde(default = "default_grace", with = "humantime_serde")]
    pub grace_period: Duration,
    /// Directory of the daily-rotated log files (`packratd.log.*`, `alerts.log.*`).
    /// Default `<state_dir>/logs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_dir: Option<PathBuf>,
    /// Log as JSON lines (stdout and files). Default false.
    #[serde(default)]
    pub log_json: bool,
    /// Log filter (`info`, `debug`, `packratd=debug,info`); `RUST_LOG` wins. Default `info`.
    #[serde(default = "default_log_level")]
    pub log_level: String,
    /// No longer used (leftovers are removed as soon as their job is gone); accepted so that
    /// older configs still load.
    #[serde(default = "default_leftover_age", with = "humantime_serde")]
    pub leftover_age: Duration,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            grace_period: default_grace(),
            log_dir: None,
            log_json: false,
            log_level: default_log_level(),
            leftover_age: default_leftover_age(),
        }
    }
}

fn default_grace() -> Duration {
    Duration::from_secs(60)
}
fn default_log_level() -> String {
    "info".into()
}
fn default_leftover_age() -> Duration {
    Duration::from_secs(24 * 3600)
}

/// `[api]`: the daemon's HTTP API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Whether to serve the API. Default true.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Address to listen on. Default `127.0.0.1:8787`; port 0 picks a free port (the daemon
    /// writes the address it got to `<state_dir>/packratd.addr`). A non-loopback address needs a
    /// token.
    #[serde(default = "default_bind")]
    pub bind: SocketAddr,
    /// Environment variable holding the bearer token for `POST` requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_env: Option<String>,
    /// File holding the bearer token for `POST` requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            enabled: true,
            bind: default_bind(),
            token_env: None,
            token_file: None,
        }
    }
}

impl ApiConfig {
    /// The token's reference (`token_env` / `token_file`).
    pub fn token_ref(&self) -> SecretRef {
        SecretRef::new(self.token_env.as_deref(), self.token_file.as_deref())
    }

    /// The bearer token, if one is configured (`Ok(None)` when neither `token_env` nor
    /// `token_file` is set).
    pub fn token(&self) -> Result<Option<Secret>> {
        let Some(s) = self.token_ref().resolve_optional("api.token")? else {
            return Ok(None);
        };
        if s.expose().trim().is_empty() {
            return Err(Error::Config(
                "api.token_env/token_file: the token is empty; put a long random string there".into(),
            ));
        }
        Ok(Some(s))
    }
}

fn default_true() -> bool {
    true
}
fn default_bind() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8787))
}

impl Section for DaemonConfig {
    fn paths_mut(&mut self) -> Vec<(&'static str, &mut PathBuf)> {
        self.log_dir.iter_mut().map(|p| ("log_dir", p)).collect()
    }

    fn validate(&self) -> std::result::Result<(), Issue> {
        tracing_filter_check(&self.log_level).map_err(|e| Issue::new("log_level", e))
    }
}

impl Section for ApiConfig {
    fn paths_mut(&mut self) -> Vec<(&'static str, &mut PathBuf)> {
        self.token_file.iter_mut().map(|p| ("token_file", p)).collect()
    }

    fn validate(&self) -> std::result::Result<(), Issue> {
        self.token_ref().check("token", false)?;
        if self.enabled && !self.bind.ip().is_loopback() && !self.token_ref().is_set() {
            return Err(Issue::new(
                "bind",
                format!(
                    "\"{}\" is not a loopback address and no token is configured; set `token_env` or \
                     `token_file`, or bind to 127.0.0.1",
                    self.bind
                ),
            ));
        }
        Ok(())
    }
}

/// A light syntax check of a log filter (`info`, `packratd=debug,info`, `warn,hyper=off`): no
/// empty directive, and every `target=level` names a level. `Err` says what is wrong.
fn tracing_filter_check(filter: &str) -> std::result::Result<(), String> {
    const LEVELS: [&str; 12] = [
        "off", "error", "warn", "info", "debug", "trace", "0", "1", "2", "3", "4", "5",
    ];
    for directive in filter.split(',').map(str::trim) {
        if directive.is_empty() {
            return Err(format!(
                "`{filter}` has an empty directive; write e.g. \"info\" or \"packratd=debug,info\""
            ));
        }
        if let Some((target, level)) = directive.rsplit_once('=') {
            if target.trim().is_empty() {
                return Err(format!("`{directive}` names no target before `=`"));
            }
            if !LEVELS.contains(&level.trim().to_ascii_lowercase().as_str()) {
                return Err(format!(
                    "`{level}` in `{directive}` is not a log level; use off, error, warn, info, debug or trace"
                ));
            }
        }
    }
    Ok(())
}
