//! This crate's config sections: `[health]` and the channels `[alerts.NAME]`.

use std::path::PathBuf;
use std::time::Duration;

use backup_core::Result;
use backup_core::config::{Issue, Secret, SecretRef, Section};
use serde::{Deserialize, Serialize};

use crate::Severity;

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
        self.url_ref().resolve(&format!("alerts.{name}.url"))
    }

    /// The URL's reference (`url_env` / `url_file`).
    pub fn url_ref(&self) -> SecretRef {
        SecretRef::new(self.url_env.as_deref(), self.url_file.as_deref())
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
        self.url_ref().resolve(&format!("alerts.{name}.url"))
    }

    /// The URL's reference (`url_env` / `url_file`).
    pub fn url_ref(&self) -> SecretRef {
        SecretRef::new(self.url_env.as_deref(), self.url_file.as_deref())
    }

    /// The signing secret's reference (`secret_env` / `secret_file`).
    pub fn secret_ref(&self) -> SecretRef {
        SecretRef::new(self.secret_env.as_deref(), self.secret_file.as_deref())
    }

    /// Resolves the signing secret, if one is configured.
    pub fn secret(&self, name: &str) -> Result<Option<Secret>> {
        self.secret_ref().resolve_optional(&format!("alerts.{name}.secret"))
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

    /// The password's reference (`password_env` / `password_file`).
    pub fn password_ref(&self) -> SecretRef {
        SecretRef::new(self.password_env.as_deref(), self.password_file.as_deref())
    }

    /// Resolves the password, if one is configured.
    pub fn password(&self, name: &str) -> Result<Option<Secret>> {
        self.password_ref().resolve_optional(&format!("alerts.{name}.password"))
    }
}

fn default_severity() -> Severity {
    Severity::Info
}

impl Section for AlertChannelConfig {
    fn paths_mut(&mut self) -> Vec<(&'static str, &mut PathBuf)> {
        match self {
            AlertChannelConfig::Webhook(w) | AlertChannelConfig::Slack(w) | AlertChannelConfig::WechatWork(w) => {
                w.url_file.iter_mut().map(|f| ("url_file", f)).collect()
            }
            AlertChannelConfig::Dingtalk(d) => {
                let mut out: Vec<(&'static str, &mut PathBuf)> =
                    d.url_file.iter_mut().map(|f| ("url_file", f)).collect();
                out.extend(d.secret_file.iter_mut().map(|f| ("secret_file", f)));
                out
            }
            AlertChannelConfig::Email(e) => e.password_file.iter_mut().map(|f| ("password_file", f)).collect(),
        }
    }

    fn validate(&self) -> std::result::Result<(), Issue> {
        match self {
            AlertChannelConfig::Webhook(w) | AlertChannelConfig::Slack(w) | AlertChannelConfig::WechatWork(w) => {
                w.url_ref().check("url", true)
            }
            AlertChannelConfig::Dingtalk(d) => {
                d.url_ref().check("url", true)?;
                d.secret_ref().check("secret", false)
            }
            AlertChannelConfig::Email(e) => {
                e.password_ref().check("password", false)?;
                if e.to.is_empty() {
                    return Err(Issue::new("to", "needs at least one recipient in `to = [..]`"));
                }
                Ok(())
            }
        }
    }
}

impl Section for HealthConfig {
    fn validate(&self) -> std::result::Result<(), Issue> {
        if self.interval.is_zero() {
            return Err(Issue::new("interval", "must be more than 0s"));
        }
        if self.max_consecutive_failures == 0 {
            return Err(Issue::new("max_consecutive_failures", "must be at least 1"));
        }
        Ok(())
    }
}
