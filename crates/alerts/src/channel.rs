//! Alert channels: the alerts log, a generic webhook, Slack, DingTalk, WeChat Work and SMTP.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use backup_core::config::Secret;

use crate::config::{AlertChannelConfig, EmailChannelConfig, SmtpTls};
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde_json::json;
use sha2::Sha256;

use crate::{AlertError, Notice, Severity};

/// Timeout of one delivery attempt.
const SEND_TIMEOUT: Duration = Duration::from_secs(15);

/// Somewhere alerts are delivered.
#[async_trait]
pub trait Channel: Send + Sync + fmt::Debug {
    /// The configured name (`alerts.<name>`), or `log` for the alerts log.
    fn name(&self) -> &str;

    /// The least severity this channel receives (resolved notices follow their alert).
    fn min_severity(&self) -> Severity {
        Severity::Info
    }

    /// Delivers one notice (one attempt).
    async fn send(&self, notice: &Notice) -> Result<(), AlertError>;
}

/// The alerts log: every notice as a `tracing` event with target `packrat::alerts`, which the
/// daemon routes to `alerts.log`. Always present.
#[derive(Debug, Default, Clone, Copy)]
pub struct LogChannel;

/// The `tracing` target of alert events.
pub const ALERT_TARGET: &str = "packrat::alerts";

#[async_trait]
impl Channel for LogChannel {
    fn name(&self) -> &str {
        "log"
    }

    async fn send(&self, n: &Notice) -> Result<(), AlertError> {
        self.record(n);
        Ok(())
    }
}

impl LogChannel {
    /// Emits the notice as a `tracing` event with target [`ALERT_TARGET`] (error for critical
    /// firing alerts, warn for warnings, info for the rest), to whatever subscriber is current.
    pub fn record(&self, n: &Notice) {
        match n.severity {
            Severity::Critical if n.kind == crate::NoticeKind::Firing => {
                tracing::error!(target: ALERT_TARGET, key = %n.key, severity = %n.severity, kind = n.kind.as_str(), count = n.count, "{}", n.text())
            }
            Severity::Warning | Severity::Critical if n.kind == crate::NoticeKind::Firing => {
                tracing::warn!(target: ALERT_TARGET, key = %n.key, severity = %n.severity, kind = n.kind.as_str(), count = n.count, "{}", n.text())
            }
            _ => {
                tracing::info!(target: ALERT_TARGET, key = %n.key, severity = %n.severity, kind = n.kind.as_str(), count = n.count, "{}", n.text())
            }
        }
    }
}

/// The payload format of an HTTP channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpFormat {
    /// The notice as JSON (generic webhook).
    Json,
    /// Slack incoming webhook: `{"text": …}`.
    Slack,
    /// DingTalk robot: `{"msgtype":"text","text":{"content":…}}`, answer `errcode` 0.
    DingTalk,
    /// WeChat Work robot: `{"msgtype":"text","text":{"content":…}}`, answer `errcode` 0.
    WeChatWork,
}

/// A channel that POSTs JSON to a URL (webhook, Slack, DingTalk, WeChat Work).
pub struct HttpChannel {
    name: String,
    url: Secret,
    format: HttpFormat,
    /// DingTalk signing secret.
    secret: Option<Secret>,
    min_severity: Severity,
    client: reqwest::Client,
}

impl fmt::Debug for HttpChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpChannel")
            .field("name", &self.name)
            .field("format", &self.format)
            .field("signed", &self.secret.is_some())
            .finish_non_exhaustive()
    }
}

impl HttpChannel {
    /// A channel posting `format` to `url` (the URL is a secret: it carries the token).
    pub fn new(name: &str, url: Secret, format: HttpFormat) -> Result<HttpChannel, AlertError> {
        let client = reqwest::Client::builder()
            .timeout(SEND_TIMEOUT)
            .user_agent(concat!("packrat/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| AlertError::Setup {
                channel: name.to_string(),
                reason: format!("cannot build the HTTP client: {e}"),
            })?;
        Ok(HttpChannel {
            name: name.to_string(),
            url,
            format,
            secret: None,
            min_severity: Severity::Info,
            client,
        })
    }

    /// Signs DingTalk requests with this secret (HMAC-SHA256).
    pub fn with_signing_secret(mut self, secret: Option<Secret>) -> HttpChannel {
        self.secret = secret;
        self
    }

    /// Sets the least severity delivered.
    pub fn with_min_severity(mut self, s: Severity) -> HttpChannel {
        self.min_severity = s;
        self
    }

    fn payload(&self, n: &Notice) -> serde_json::Value {
        match self.format {
            HttpFormat::Json => serde_json::to_value(n).unwrap_or_else(|_| json!({ "text": n.text() })),
            HttpFormat::Slack => json!({ "text": n.text() }),
            HttpFormat::DingTalk | HttpFormat::WeChatWork => json!({
                "msgtype": "text",
                "text": { "content": n.text() },
            }),
        }
    }

    fn url(&self) -> String {
        let url = self.url.expose().to_string();
        match (&self.format, &self.secret) {
            (HttpFormat::DingTalk, Some(secret)) => {
                let ts = chrono::Utc::now().timestamp_millis();
                let sign = dingtalk_sign(secret.expose(), ts);
                let sep = if url.contains('?') { '&' } else { '?' };
                format!("{url}{sep}timestamp={ts}&sign={sign}")
            }
            _ => url,
        }
    }
}

/// DingTalk's signature: base64 of HMAC-SHA256(key = secret, message = "{timestamp}\n{secret}"),
/// URL-encoded.
pub fn dingtalk_sign(secret: &str, timestamp_ms: i64) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(format!("{timestamp_ms}\n{secret}").as_bytes());
    let b64 = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    percent_encode(&b64)
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[async_trait]
impl Channel for HttpChannel {
    fn name(&self) -> &str {
        &self.name
    }

    fn min_severity(&self) -> Severity {
        self.min_severity
    }

    async fn send(&self, n: &Notice) -> Result<(), AlertError> {
        let fail = |reason: String| AlertError::Delivery {
            channel: self.name.clone(),
            reason: self.url.redact(&reason),
        };
        let resp = self
            .client
            .post(self.url())
            .json(&self.payload(n))
            .send()
            .await
            .map_err(|e| fail(format!("request failed: {}", backup_core::error::error_chain(&e))))?;
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(fail(format!("the server answered {status}: {}", truncate(&body))));
        }
        if matches!(self.format, HttpFormat::DingTalk | HttpFormat::WeChatWork) {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            let code = v.get("errcode").and_then(serde_json::Value::as_i64);
            if code != Some(0) {
                return Err(fail(format!("the robot refused the message: {}", truncate(&body))));
            }
        }
        Ok(())
    }
}

fn truncate(s: &str) -> String {
    let s = s.trim();
    if s.len() > 300 {
        let mut end = 300;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &s[..end])
    } else {
        s.to_string()
    }
}

/// Email over SMTP (lettre).
pub struct EmailChannel {
    name: String,
    config: EmailChannelConfig,
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
}

impl fmt::Debug for EmailChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmailChannel")
            .field("name", &self.name)
            .field("host", &self.config.host)
            .field("port", &self.config.port())
            .field("tls", &self.config.tls)
            .finish_non_exhaustive()
    }
}

impl EmailChannel {
    /// A channel from its config; `password` is the resolved SMTP password, if any.
    pub fn new(name: &str, config: &EmailChannelConfig, password: Option<Secret>) -> Result<EmailChannel, AlertError> {
        let setup = |reason: String| AlertError::Setup {
            channel: name.to_string(),
            reason,
        };
        let mut builder = match config.tls {
            SmtpTls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&config.host)
                .map_err(|e| setup(format!("cannot set up STARTTLS to {}: {e}", config.host)))?,
            SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&config.host)
                .map_err(|e| setup(format!("cannot set up TLS to {}: {e}", config.host)))?,
            SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&config.host),
        }
        .port(config.port())
        .timeout(Some(SEND_TIMEOUT));
        if let Some(user) = &config.username {
            let pass = password.map(|p| p.expose().to_string()).unwrap_or_default();
            builder = builder.credentials(Credentials::new(user.clone(), pass));
        }
        let from: Mailbox = config
            .from
            .parse()
            .map_err(|e| setup(format!("`from = \"{}\"` is not an email address: {e}", config.from)))?;
        let to = config
            .to
            .iter()
            .map(|t| {
                t.parse::<Mailbox>()
                    .map_err(|e| setup(format!("`to` entry \"{t}\" is not an email address: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(EmailChannel {
            name: name.to_string(),
            config: config.clone(),
            transport: builder.build(),
            from,
            to,
        })
    }
}

#[async_trait]
impl Channel for EmailChannel {
    fn name(&self) -> &str {
        &self.name
    }

    fn min_severity(&self) -> Severity {
        self.config.min_severity
    }

    async fn send(&self, n: &Notice) -> Result<(), AlertError> {
        let fail = |reason: String| AlertError::Delivery {
            channel: self.name.clone(),
            reason,
        };
        let mut msg = Message::builder().from(self.from.clone()).subject(n.subject());
        for to in &self.to {
            msg = msg.to(to.clone());
        }
        let msg = msg
            .body(n.text())
            .map_err(|e| fail(format!("cannot build the email: {e}")))?;
        self.transport.send(msg).await.map_err(|e| {
            fail(format!(
                "SMTP to {}:{} failed: {}",
                self.config.host,
                self.config.port(),
                backup_core::error::error_chain(&e)
            ))
        })?;
        Ok(())
    }
}

/// Builds the channel `name` of the config (resolving its secrets).
pub fn from_config(name: &str, c: &AlertChannelConfig) -> Result<Box<dyn Channel>, AlertError> {
    let cfg_err = |e: backup_core::Error| AlertError::Setup {
        channel: name.to_string(),
        reason: e.to_string(),
    };
    Ok(match c {
        AlertChannelConfig::Webhook(w) => Box::new(
            HttpChannel::new(name, w.url(name).map_err(cfg_err)?, HttpFormat::Json)?.with_min_severity(w.min_severity),
        ),
        AlertChannelConfig::Slack(w) => Box::new(
            HttpChannel::new(name, w.url(name).map_err(cfg_err)?, HttpFormat::Slack)?.with_min_severity(w.min_severity),
        ),
        AlertChannelConfig::WechatWork(w) => Box::new(
            HttpChannel::new(name, w.url(name).map_err(cfg_err)?, HttpFormat::WeChatWork)?
                .with_min_severity(w.min_severity),
        ),
        AlertChannelConfig::Dingtalk(d) => Box::new(
            HttpChannel::new(name, d.url(name).map_err(cfg_err)?, HttpFormat::DingTalk)?
                .with_signing_secret(d.secret(name).map_err(cfg_err)?)
                .with_min_severity(d.min_severity),
        ),
        AlertChannelConfig::Email(e) => Box::new(EmailChannel::new(name, e, e.password(name).map_err(cfg_err)?)?),
    })
}

/// Every channel of `[alerts.NAME]` plus the alerts log. A channel that cannot be set up (a
/// missing secret) is reported in the second list and left out, so the others still work.
pub fn all_from_config(
    channels: &std::collections::BTreeMap<String, AlertChannelConfig>,
) -> (Vec<std::sync::Arc<dyn Channel>>, Vec<AlertError>) {
    let mut out: Vec<std::sync::Arc<dyn Channel>> = vec![std::sync::Arc::new(LogChannel)];
    let mut errors = Vec::new();
    for (name, c) in channels {
        match from_config(name, c) {
            Ok(ch) => out.push(std::sync::Arc::from(ch)),
            Err(e) => errors.push(e),
        }
    }
    (out, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dingtalk_signature_matches_the_documented_algorithm() {
        // Reference computed with Python: base64(hmac_sha256(secret, f"{ts}\n{secret}")), quoted.
        let s = dingtalk_sign("SEC000", 1_700_000_000_000);
        assert_eq!(s, "ltBBey5eZrWKh1cPzFIdz3v3xpkc4Tjx4lLsPSHqdtA%3D");
        assert_eq!(percent_encode("a+b/c="), "a%2Bb%2Fc%3D");
    }
}
