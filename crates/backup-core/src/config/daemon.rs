//! The daemon's part of the configuration: catch-up, `[daemon]`, `[api]`, `[health]` and
//! `[alerts.NAME]` channels.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Config;
use super::Secret;
use crate::state::Severity;
use crate::{Error, Result};

/// What the scheduler does about slots missed while packrat was down.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CatchUp {
    /// Run once to catch up (never once per missed slot). The default.
    #[default]
    Once,
    /// Do not catch up; wait for the next slot.
    Skip,
}

impl CatchUp {
    /// `once` or `skip`.
    pub fn as_str(self) -> &'static str {
        match self {
            CatchUp::Once => "once",
            CatchUp::Skip => "skip",
        }
    }
}

/// `[daemon]`: how `packratd` runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonConfig {
    /// How long running jobs may take to finish after SIGTERM/SIGINT before they are cancelled
    /// (and recorded as failed). Default 60s.
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
    /// Staging and `_tmp` leftovers of jobs older than this are removed after each job and at
    /// start. Default 24h.
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
    /// The bearer token, if one is configured (`Ok(None)` when neither `token_env` nor
    /// `token_file` is set).
    pub fn token(&self) -> Result<Option<Secret>> {
        if self.token_env.is_none() && self.token_file.is_none() {
            return Ok(None);
        }
        let s = Secret::resolve(
            "api.token_env/token_file",
            self.token_env.as_deref(),
            self.token_file.as_deref(),
        )?;
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

/// `[health]`: the daemon's periodic health checks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// How often the checks run. Default 5m.
    #[serde(default = "default_health_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// Alert when a plan failed this many times in a row (since its last success). Default 3.
    #[serde(default = "default_failures")]
    pub max_consecutive_failures: u32,
    /// Alert when a sink has less free space than this, in MiB. Default 1024.
    #[serde(default = "default_min_free")]
    pub min_free_mb: u64,
    /// Alert when a job runs longer than this. Default 6h.
    #[serde(default = "default_stuck", with = "humantime_serde")]
    pub stuck_after: Duration,
    /// A firing alert is sent again at most this often; a new or resolved one at once.
    /// Default 1h.
    #[serde(default = "default_cooldown", with = "humantime_serde")]
    pub cooldown: Duration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            interval: default_health_interval(),
            max_consecutive_failures: default_failures(),
            min_free_mb: default_min_free(),
            stuck_after: default_stuck(),
            cooldown: default_cooldown(),
        }
    }
}

fn default_health_interval() -> Duration {
    Duration::from_secs(300)
}
fn default_failures() -> u32 {
    3
}
fn default_min_free() -> u64 {
    1024
}
fn default_stuck() -> Duration {
    Duration::from_secs(6 * 3600)
}
fn default_cooldown() -> Duration {
    Duration::from_secs(3600)
}

/// An alert channel, `[alerts.NAME]`, selected by `type`. The alerts log always receives every
/// alert; these channels come on top.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum AlertChannelConfig {
    /// A generic webhook: `POST` of the alert as JSON.
    Webhook(WebhookChannelConfig),
    /// A Slack incoming webhook.
    Slack(WebhookChannelConfig),
    /// A DingTalk group robot, optionally with the HMAC-SHA256 signing secret.
    Dingtalk(DingTalkChannelConfig),
    /// A WeChat Work (WeCom) group robot.
    WechatWork(WebhookChannelConfig),
    /// Email over SMTP.
    Email(EmailChannelConfig),
}

impl AlertChannelConfig {
    /// The `type` name.
    pub fn kind(&self) -> &'static str {
        match self {
            AlertChannelConfig::Webhook(_) => "webhook",
            AlertChannelConfig::Slack(_) => "slack",
            AlertChannelConfig::Dingtalk(_) => "dingtalk",
            AlertChannelConfig::WechatWork(_) => "wechat-work",
            AlertChannelConfig::Email(_) => "email",
        }
    }

    /// The least severity this channel receives.
    pub fn min_severity(&self) -> Severity {
        match self {
            AlertChannelConfig::Webhook(c) | AlertChannelConfig::Slack(c) | AlertChannelConfig::WechatWork(c) => {
                c.min_severity
            }
            AlertChannelConfig::Dingtalk(c) => c.min_severity,
            AlertChannelConfig::Email(c) => c.min_severity,
        }
    }
}

/// A channel that posts to a URL. Webhook URLs carry tokens, so the URL comes from an
/// environment variable or a file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookChannelConfig {
    /// Environment variable holding the URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_env: Option<String>,
    /// File holding the URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_file: Option<PathBuf>,
    /// The least severity sent here. Default `info` (everything).
    #[serde(default = "default_severity")]
    pub min_severity: Severity,
}

impl WebhookChannelConfig {
    /// Resolves the URL; `name` is the channel name for messages.
    pub fn url(&self, name: &str) -> Result<Secret> {
        Secret::resolve(
            &format!("alerts.{name}.url_env/url_file"),
            self.url_env.as_deref(),
            self.url_file.as_deref(),
        )
    }
}

/// `type = "dingtalk"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DingTalkChannelConfig {
    /// Environment variable holding the robot URL (with its access token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_env: Option<String>,
    /// File holding the robot URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_file: Option<PathBuf>,
    /// Environment variable holding the signing secret (`SEC…`), when the robot uses signing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_env: Option<String>,
    /// File holding the signing secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<PathBuf>,
    /// The least severity sent here. Default `info`.
    #[serde(default = "default_severity")]
    pub min_severity: Severity,
}

impl DingTalkChannelConfig {
    /// Resolves the URL.
    pub fn url(&self, name: &str) -> Result<Secret> {
        Secret::resolve(
            &format!("alerts.{name}.url_env/url_file"),
            self.url_env.as_deref(),
            self.url_file.as_deref(),
        )
    }

    /// Resolves the signing secret, if one is configured.
    pub fn secret(&self, name: &str) -> Result<Option<Secret>> {
        if self.secret_env.is_none() && self.secret_file.is_none() {
            return Ok(None);
        }
        Secret::resolve(
            &format!("alerts.{name}.secret_env/secret_file"),
            self.secret_env.as_deref(),
            self.secret_file.as_deref(),
        )
        .map(Some)
    }
}

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS (required). Default; port 587.
    #[default]
    Starttls,
    /// TLS from the first byte (SMTPS); port 465.
    Tls,
    /// No encryption (only for a relay on localhost); port 25.
    None,
}

/// `type = "email"`: SMTP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailChannelConfig {
    /// SMTP server host name.
    pub host: String,
    /// Port. Default by `tls`: 587, 465 or 25.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// `starttls` (default), `tls` or `none`.
    #[serde(default)]
    pub tls: SmtpTls,
    /// SMTP user name, when the server needs authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Environment variable holding the SMTP password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_env: Option<String>,
    /// File holding the SMTP password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// Sender address.
    pub from: String,
    /// Recipients.
    pub to: Vec<String>,
    /// The least severity sent here. Default `info`.
    #[serde(default = "default_severity")]
    pub min_severity: Severity,
}

impl EmailChannelConfig {
    /// The port, explicit or the default of the TLS mode.
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(match self.tls {
            SmtpTls::Starttls => 587,
            SmtpTls::Tls => 465,
            SmtpTls::None => 25,
        })
    }

    /// Resolves the password, if one is configured.
    pub fn password(&self, name: &str) -> Result<Option<Secret>> {
        if self.password_env.is_none() && self.password_file.is_none() {
            return Ok(None);
        }
        Secret::resolve(
            &format!("alerts.{name}.password_env/password_file"),
            self.password_env.as_deref(),
            self.password_file.as_deref(),
        )
        .map(Some)
    }
}

fn default_severity() -> Severity {
    Severity::Info
}

impl Config {
    /// The catch-up behaviour of `plan` (its own, or the top-level default).
    pub fn plan_catch_up(&self, plan: &super::PlanConfig) -> CatchUp {
        plan.catch_up.unwrap_or(self.catch_up)
    }

    /// The daemon's log directory (`[daemon] log_dir`, default `<state_dir>/logs`).
    pub fn log_dir(&self) -> PathBuf {
        self.daemon
            .log_dir
            .clone()
            .unwrap_or_else(|| self.state_dir.join("logs"))
    }

    pub(super) fn validate_daemon(&self) -> Result<()> {
        let err = |key: &[&str], msg: String| self.key_error(key, msg);
        let api_has_token = self.api.token_env.is_some() || self.api.token_file.is_some();
        if self.api.token_env.is_some() && self.api.token_file.is_some() {
            return Err(err(
                &["api", "token_file"],
                "set either `token_env` or `token_file`, not both".into(),
            ));
        }
        if self.api.enabled && !self.api.bind.ip().is_loopback() && !api_has_token {
            return Err(err(
                &["api", "bind"],
                format!(
                    "\"{}\" is not a loopback address and no token is configured; set `token_env` or \
                     `token_file`, or bind to 127.0.0.1",
                    self.api.bind
                ),
            ));
        }
        if self.health.interval.is_zero() {
            return Err(err(&["health", "interval"], "must be more than 0s".into()));
        }
        if self.health.max_consecutive_failures == 0 {
            return Err(err(
                &["health", "max_consecutive_failures"],
                "must be at least 1".into(),
            ));
        }
        if let Err(e) = tracing_filter_check(&self.daemon.log_level) {
            return Err(err(&["daemon", "log_level"], e));
        }
        for (name, c) in &self.alerts {
            let both = |a: bool, b: bool, what: &str, required: bool| -> Result<()> {
                if a && b {
                    let key = format!("{what}_file");
                    return Err(err(
                        &["alerts", name, &key],
                        format!("set either `{what}_env` or `{what}_file`, not both"),
                    ));
                }
                if required && !a && !b {
                    return Err(err(
                        &["alerts", name],
                        format!(
                            "set `{what}_env` (environment variable) or `{what}_file` (file); it carries a token and \
                             is never written in the config"
                        ),
                    ));
                }
                Ok(())
            };
            match c {
                AlertChannelConfig::Webhook(w) | AlertChannelConfig::Slack(w) | AlertChannelConfig::WechatWork(w) => {
                    both(w.url_env.is_some(), w.url_file.is_some(), "url", true)?;
                }
                AlertChannelConfig::Dingtalk(d) => {
                    both(d.url_env.is_some(), d.url_file.is_some(), "url", true)?;
                    both(d.secret_env.is_some(), d.secret_file.is_some(), "secret", false)?;
                }
                AlertChannelConfig::Email(e) => {
                    both(e.password_env.is_some(), e.password_file.is_some(), "password", false)?;
                    if e.to.is_empty() {
                        return Err(err(
                            &["alerts", name, "to"],
                            "needs at least one recipient in `to = [..]`".into(),
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

/// Every path-valued setting of `[daemon]`, `[api]` and `[alerts.NAME]` with its key.
pub(super) fn paths_mut<'a>(
    daemon: &'a mut DaemonConfig,
    api: &'a mut ApiConfig,
    alerts: &'a mut BTreeMap<String, AlertChannelConfig>,
    out: &mut Vec<(Vec<String>, &'a mut PathBuf)>,
) {
    let key = |parts: &[&str]| parts.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    if let Some(p) = &mut daemon.log_dir {
        out.push((key(&["daemon", "log_dir"]), p));
    }
    if let Some(p) = &mut api.token_file {
        out.push((key(&["api", "token_file"]), p));
    }
    for (name, c) in alerts.iter_mut() {
        match c {
            AlertChannelConfig::Webhook(w) | AlertChannelConfig::Slack(w) | AlertChannelConfig::WechatWork(w) => {
                out.extend(w.url_file.iter_mut().map(|f| (key(&["alerts", name, "url_file"]), f)));
            }
            AlertChannelConfig::Dingtalk(d) => {
                out.extend(d.url_file.iter_mut().map(|f| (key(&["alerts", name, "url_file"]), f)));
                out.extend(
                    d.secret_file
                        .iter_mut()
                        .map(|f| (key(&["alerts", name, "secret_file"]), f)),
                );
            }
            AlertChannelConfig::Email(e) => {
                out.extend(
                    e.password_file
                        .iter_mut()
                        .map(|f| (key(&["alerts", name, "password_file"]), f)),
                );
            }
        }
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const BASE: &str = r#"
state_dir = "state"
catch_up = "skip"

[sources.app_db]
type = "sqlite"
path = "app.db"

[sinks.local]
type = "local"
path = "/backups"

[plans.nightly]
sources = ["app_db"]
sinks = ["local"]
full = "0 2 * * *"
catch_up = "once"
max_age = "36h"

[daemon]
grace_period = "30s"
log_dir = "logs"

[api]
bind = "127.0.0.1:0"
token_file = "token"

[health]
interval = "1m"
cooldown = "10m"

[alerts.ops]
type = "slack"
url_env = "SLACK_URL"
min_severity = "warning"

[alerts.ding]
type = "dingtalk"
url_file = "ding.url"
secret_env = "DING_SECRET"

[alerts.mail]
type = "email"
host = "smtp.example.com"
tls = "tls"
username = "backup"
password_env = "SMTP_PASSWORD"
from = "backup@example.com"
to = ["ops@example.com"]
"#;

    #[test]
    fn daemon_sections_parse_resolve_and_round_trip() {
        let c = Config::parse(BASE, Path::new("/etc/packrat/packrat.toml")).unwrap();
        assert_eq!(c.catch_up, CatchUp::Skip);
        assert_eq!(c.plan_catch_up(&c.plans["nightly"]), CatchUp::Once);
        assert_eq!(c.plans["nightly"].max_age, Some(Duration::from_secs(36 * 3600)));
        assert_eq!(c.daemon.grace_period, Duration::from_secs(30));
        assert_eq!(c.log_dir(), PathBuf::from("/etc/packrat/logs"));
        assert_eq!(c.api.token_file, Some(PathBuf::from("/etc/packrat/token")));
        assert_eq!(c.health.max_consecutive_failures, 3);
        assert_eq!(c.alerts["ops"].kind(), "slack");
        assert_eq!(c.alerts["ops"].min_severity(), Severity::Warning);
        let AlertChannelConfig::Dingtalk(d) = &c.alerts["ding"] else {
            panic!("dingtalk")
        };
        assert_eq!(d.url_file, Some(PathBuf::from("/etc/packrat/ding.url")));
        let AlertChannelConfig::Email(e) = &c.alerts["mail"] else {
            panic!("email")
        };
        assert_eq!(e.port(), 465);
        let shown = c.to_redacted_toml();
        let again = Config::parse(&shown, Path::new("/x/y.toml")).unwrap();
        assert_eq!(again.alerts, c.alerts);
        assert_eq!(again.health, c.health);
    }

    #[test]
    fn unsafe_api_and_inline_secrets_are_refused() {
        let open = BASE.replace(
            "bind = \"127.0.0.1:0\"\ntoken_file = \"token\"",
            "bind = \"0.0.0.0:8787\"",
        );
        let e = Config::parse(&open, Path::new("p.toml")).unwrap_err().to_string();
        assert!(e.contains("not a loopback address") && e.contains("token"), "{e}");
        let inline = BASE.replace("url_env = \"SLACK_URL\"", "url = \"https://hooks.slack.com/x\"");
        let e = Config::parse(&inline, Path::new("p.toml")).unwrap_err().to_string();
        assert!(e.contains("unknown field `url`"), "{e}");
        let none = BASE.replace("url_env = \"SLACK_URL\"\n", "");
        let e = Config::parse(&none, Path::new("p.toml")).unwrap_err().to_string();
        assert!(e.contains("alerts.ops") && e.contains("url_env"), "{e}");
        let bad = BASE.replace("grace_period", "grace");
        assert!(Config::parse(&bad, Path::new("p.toml")).is_err());
    }

    #[test]
    fn api_token_from_file() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("token"), "s3cret\n").unwrap();
        let c = Config::parse(BASE, &t.path().join("packrat.toml")).unwrap();
        assert_eq!(c.api.token().unwrap().unwrap().expose(), "s3cret");
        assert!(ApiConfig::default().token().unwrap().is_none());
    }
}
