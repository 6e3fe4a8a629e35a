//! # alerts
//!
//! Speaking up when something is wrong. [`HealthChecker`] looks at the state store and the
//! sinks — consecutive failures per plan, last success older than the plan's maximum age, free
//! space on each sink, a sink (e.g. the replica mount) unusable, a job stuck beyond a timeout —
//! and reports [`Finding`]s with stable keys (`plan:nightly:failures`). The [`AlertManager`]
//! turns findings into [`Alert`]s in the [`AlertStore`] (this crate's `alerts` table in the
//! installation's state store, [`AlertStore::raise`] / [`AlertStore::resolve`]): a condition that
//! starts firing sends one notice, a firing one is repeated at most once per cooldown, and one
//! "resolved" notice follows when it clears. The [`Notifier`] delivers notices to every
//! [`Channel`] — the alerts log always, plus a generic webhook, Slack, DingTalk (optionally
//! signed), WeChat Work and SMTP email — retrying failed deliveries and logging what still fails;
//! it never panics.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! # let tmp = tempfile::tempdir().unwrap();
//! # let state = std::sync::Arc::new(backup_core::StateStore::open(tmp.path()).unwrap());
//! use std::sync::Arc;
//! use alerts::{AlertManager, AlertStore, Finding, LogChannel, Notifier, Severity};
//!
//! let store = AlertStore::open(state).unwrap(); // creates the alerts table if needed
//! let notifier = Arc::new(Notifier::new(vec![Arc::new(LogChannel)]));
//! let manager = AlertManager::new(store, notifier, std::time::Duration::from_secs(3600));
//! let firing = vec![Finding::new("plan:nightly:failures", Severity::Critical, "failed 3 times in a row")];
//! manager.apply(firing).await.unwrap(); // one "firing" notice
//! assert_eq!(manager.store().list(false).unwrap()[0].key, "plan:nightly:failures");
//! manager.apply(vec![]).await.unwrap(); // one "resolved" notice
//! assert!(manager.store().list(false).unwrap().is_empty());
//! # }
//! ```

mod channel;
mod config;
mod health;
mod store;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use tracing::{error, warn};

pub use channel::{
    ALERT_TARGET, Channel, EmailChannel, HttpChannel, HttpFormat, LogChannel, all_from_config, dingtalk_sign,
    from_config,
};
pub use config::{
    AlertChannelConfig, DingTalkChannelConfig, EmailChannelConfig, HealthConfig, SmtpTls, WebhookChannelConfig,
};
pub use health::{HealthChecker, PlanCheck};
pub use store::{Alert, AlertStore, Severity};

/// What can go wrong with alerting.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AlertError {
    /// A channel could not be set up (a missing secret, a bad address).
    #[error("alert channel `{channel}`: {reason}")]
    Setup {
        /// Channel name.
        channel: String,
        /// Why.
        reason: String,
    },
    /// A notice could not be delivered (after retries).
    #[error("alert channel `{channel}`: delivery failed: {reason}")]
    Delivery {
        /// Channel name.
        channel: String,
        /// Why (secrets redacted).
        reason: String,
    },
    /// The state store failed.
    #[error("alerts: {0}")]
    State(#[source] backup_core::Error),
}

impl From<AlertError> for backup_core::Error {
    fn from(e: AlertError) -> Self {
        backup_core::Error::Other(backup_core::error::error_chain(&e))
    }
}

/// Whether a notice opens, repeats, closes an alert, or is a test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NoticeKind {
    /// The condition holds (new, or repeated after the cooldown).
    Firing,
    /// The condition cleared.
    Resolved,
    /// `packrat alert test`.
    Test,
}

impl NoticeKind {
    /// `firing`, `resolved` or `test`.
    pub fn as_str(self) -> &'static str {
        match self {
            NoticeKind::Firing => "firing",
            NoticeKind::Resolved => "resolved",
            NoticeKind::Test => "test",
        }
    }
}

/// One message to the channels about one alert.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Notice {
    /// Firing, resolved or test.
    pub kind: NoticeKind,
    /// Stable key (`plan:nightly:failures`).
    pub key: String,
    /// Severity.
    pub severity: Severity,
    /// What is wrong and what to do.
    pub message: String,
    /// How often it was raised since it started firing.
    pub count: u64,
    /// When it started firing.
    pub first_seen: DateTime<Utc>,
    /// This notice's time.
    pub at: DateTime<Utc>,
    /// The host packrat runs on.
    pub host: String,
}

impl Notice {
    /// A notice about `alert`.
    pub fn from_alert(kind: NoticeKind, alert: &Alert) -> Notice {
        Notice {
            kind,
            key: alert.key.clone(),
            severity: alert.severity,
            message: alert.message.clone(),
            count: alert.count,
            first_seen: alert.first_seen,
            at: Utc::now(),
            host: host(),
        }
    }

    /// The test notice of `packrat alert test`.
    pub fn test(channel: &str) -> Notice {
        let now = Utc::now();
        Notice {
            kind: NoticeKind::Test,
            key: format!("test:{channel}"),
            severity: Severity::Info,
            message: i18n::tr!("alert-test-message", channel = channel),
            count: 1,
            first_seen: now,
            at: now,
            host: host(),
        }
    }

    /// One-line subject (email).
    pub fn subject(&self) -> String {
        let what = match self.kind {
            NoticeKind::Firing => i18n::tr!(
                "alert-subject-firing",
                severity = severity_text(self.severity),
                key = self.key.as_str()
            ),
            NoticeKind::Resolved => i18n::tr!("alert-subject-resolved", key = self.key.as_str()),
            NoticeKind::Test => i18n::tr!("alert-subject-test"),
        };
        i18n::tr!("alert-subject", host = self.host.as_str(), what = what)
    }

    /// The text sent to chat channels and as email body.
    pub fn text(&self) -> String {
        match self.kind {
            NoticeKind::Firing if self.count > 1 => format!(
                "{}\n{}\n{}",
                self.subject(),
                self.message,
                i18n::tr!(
                    "alert-still-firing",
                    since = self.first_seen.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
                    count = self.count
                )
            ),
            NoticeKind::Resolved => format!(
                "{}\n{}",
                self.subject(),
                i18n::tr!("alert-resolved", message = self.message.as_str())
            ),
            _ => format!("{}\n{}", self.subject(), self.message),
        }
    }
}

/// The severity as shown in alert texts (`CRITICAL` / `严重`).
pub fn severity_text(s: Severity) -> String {
    let key = match s {
        Severity::Critical => "alert-severity-critical",
        Severity::Warning => "alert-severity-warning",
        Severity::Info => "alert-severity-info",
    };
    i18n::text(key, &[])
}

fn host() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

/// Delivers notices to channels, retrying failures.
#[derive(Debug)]
pub struct Notifier {
    channels: Vec<Arc<dyn Channel>>,
    attempts: u32,
    backoff: Duration,
}

/// The outcome of delivering one notice to one channel.
#[derive(Debug)]
pub struct Delivery {
    /// Channel name.
    pub channel: String,
    /// `Ok` or the last error.
    pub result: Result<(), AlertError>,
    /// Attempts made.
    pub attempts: u32,
}

impl Notifier {
    /// A notifier over `channels`, with 3 attempts per delivery and 2 s initial backoff.
    pub fn new(channels: Vec<Arc<dyn Channel>>) -> Notifier {
        Notifier {
            channels,
            attempts: 3,
            backoff: Duration::from_secs(2),
        }
    }

    /// Sets the attempts per delivery (at least 1) and the first backoff (doubled each time).
    pub fn with_retry(mut self, attempts: u32, backoff: Duration) -> Notifier {
        self.attempts = attempts.max(1);
        self.backoff = backoff;
        self
    }

    /// The channels.
    pub fn channels(&self) -> &[Arc<dyn Channel>] {
        &self.channels
    }

    /// Delivers `notice` to every channel whose minimum severity it meets (all channels at
    /// once), retrying failures; failures are logged and returned, never raised.
    pub async fn deliver(&self, notice: &Notice) -> Vec<Delivery> {
        let mut set = tokio::task::JoinSet::new();
        for ch in &self.channels {
            if notice.kind != NoticeKind::Test && notice.severity < ch.min_severity() {
                continue;
            }
            let ch = ch.clone();
            let n = notice.clone();
            let (attempts, backoff) = (self.attempts, self.backoff);
            set.spawn(async move { deliver_one(ch.as_ref(), &n, attempts, backoff).await });
        }
        let mut out = Vec::new();
        while let Some(r) = set.join_next().await {
            match r {
                Ok(d) => out.push(d),
                Err(e) => error!("alert delivery task failed: {e}"),
            }
        }
        out
    }

    /// Sends a test notice to the channel `name` only (one attempt per retry setting).
    pub async fn test(&self, name: &str) -> Result<Delivery, AlertError> {
        let ch = self
            .channels
            .iter()
            .find(|c| c.name() == name)
            .ok_or_else(|| AlertError::Setup {
                channel: name.to_string(),
                reason: format!(
                    "no such channel (configured: {})",
                    self.channels.iter().map(|c| c.name()).collect::<Vec<_>>().join(", ")
                ),
            })?;
        Ok(deliver_one(ch.as_ref(), &Notice::test(name), self.attempts, self.backoff).await)
    }
}

async fn deliver_one(ch: &dyn Channel, n: &Notice, attempts: u32, backoff: Duration) -> Delivery {
    let mut wait = backoff;
    let mut last = None;
    for attempt in 1..=attempts {
        match ch.send(n).await {
            Ok(()) => {
                return Delivery {
                    channel: ch.name().to_string(),
                    result: Ok(()),
                    attempts: attempt,
                };
            }
            Err(e) => {
                if attempt < attempts {
                    warn!(channel = ch.name(), key = %n.key, attempt, "alert delivery failed, retrying in {wait:?}: {e}");
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                } else {
                    error!(channel = ch.name(), key = %n.key, attempts, "alert delivery failed; giving up on this notice: {e}");
                }
                last = Some(e);
            }
        }
    }
    Delivery {
        channel: ch.name().to_string(),
        result: Err(last.unwrap_or_else(|| AlertError::Delivery {
            channel: ch.name().to_string(),
            reason: "no attempt made".into(),
        })),
        attempts,
    }
}

/// A condition a health check found: it holds now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Stable key: `plan:<name>:failures|overdue|stuck`, `sink:<name>:space|unavailable`,
    /// `collection:<plan>:<source>:<key>:failures`; raised
    /// by retention through [`AlertManager::raise`]: `retention:<plan>:<sink>:future-packs`.
    pub key: String,
    /// Severity.
    pub severity: Severity,
    /// What is wrong and what to do.
    pub message: String,
}

impl Finding {
    /// A finding.
    pub fn new(key: impl Into<String>, severity: Severity, message: impl Into<String>) -> Finding {
        Finding {
            key: key.into(),
            severity,
            message: message.into(),
        }
    }
}

/// What one [`AlertManager::apply`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ApplyReport {
    /// Keys that started firing (notice sent).
    pub opened: Vec<String>,
    /// Keys still firing whose cooldown expired (notice repeated).
    pub repeated: Vec<String>,
    /// Keys still firing within their cooldown (no notice).
    pub quiet: Vec<String>,
    /// Keys resolved (resolved notice sent).
    pub resolved: Vec<String>,
}

/// Turns findings into alerts: raise/refresh/resolve in the [`AlertStore`], notices
/// de-duplicated with a cooldown.
#[derive(Debug)]
pub struct AlertManager {
    store: AlertStore,
    notifier: Arc<Notifier>,
    cooldown: Duration,
    last_sent: Mutex<HashMap<String, Instant>>,
    prefixes: Vec<String>,
}

impl AlertManager {
    /// A manager that owns the alert keys starting with `plan:` and `sink:`.
    pub fn new(store: AlertStore, notifier: Arc<Notifier>, cooldown: Duration) -> AlertManager {
        AlertManager {
            store,
            notifier,
            cooldown,
            last_sent: Mutex::new(HashMap::new()),
            prefixes: vec!["plan:".into(), "sink:".into()],
        }
    }

    /// The alerts table.
    pub fn store(&self) -> &AlertStore {
        &self.store
    }

    /// The notifier.
    pub fn notifier(&self) -> &Arc<Notifier> {
        &self.notifier
    }

    /// Applies the complete set of current findings: each one raises (or refreshes) its alert;
    /// firing alerts of our keys that are not among them are resolved. Sends one notice per new
    /// alert, repeats a firing one at most once per cooldown, and one notice per resolution.
    pub async fn apply(&self, findings: Vec<Finding>) -> Result<ApplyReport, AlertError> {
        let mut report = ApplyReport::default();
        let mut notices = Vec::new();
        for f in &findings {
            notices.extend(self.record(f, &mut report)?);
        }
        let current: std::collections::HashSet<&str> = findings.iter().map(|f| f.key.as_str()).collect();
        for alert in self.store.list(false).map_err(AlertError::State)? {
            if current.contains(alert.key.as_str()) || !self.prefixes.iter().any(|p| alert.key.starts_with(p)) {
                continue;
            }
            if let Some(resolved) = self.store.resolve(&alert.key).map_err(AlertError::State)? {
                self.last_sent
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&alert.key);
                report.resolved.push(alert.key.clone());
                notices.push(Notice::from_alert(NoticeKind::Resolved, &resolved));
            }
        }
        for n in notices {
            self.notifier.deliver(&n).await;
        }
        Ok(report)
    }

    /// Raises (or refreshes) one alert found outside the health checks, e.g. by retention
    /// (`retention:<plan>:<sink>:future-packs`), and sends its notice like [`apply`] does: when
    /// it starts firing, then at most once per cooldown. Such keys must not start with `plan:`
    /// or `sink:` (the health checks own those and would resolve it); resolve it with
    /// [`AlertManager::resolve`] when the condition is gone. Returns true when it started firing.
    ///
    /// [`apply`]: AlertManager::apply
    pub async fn raise(&self, finding: Finding) -> Result<bool, AlertError> {
        let mut report = ApplyReport::default();
        let notice = self.record(&finding, &mut report)?;
        if let Some(n) = &notice {
            self.notifier.deliver(n).await;
        }
        Ok(!report.opened.is_empty())
    }

    /// Resolves the alert `key` if it is firing, with one resolved notice. Returns true when it
    /// was firing.
    pub async fn resolve(&self, key: &str) -> Result<bool, AlertError> {
        let Some(resolved) = self.store.resolve(key).map_err(AlertError::State)? else {
            return Ok(false);
        };
        self.last_sent.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
        self.notifier
            .deliver(&Notice::from_alert(NoticeKind::Resolved, &resolved))
            .await;
        Ok(true)
    }

    /// Raises or refreshes the alert of `f` in the alerts table; the notice to send, if any.
    fn record(&self, f: &Finding, report: &mut ApplyReport) -> Result<Option<Notice>, AlertError> {
        let now = Instant::now();
        let (alert, is_new) = self
            .store
            .raise(&f.key, f.severity, &f.message)
            .map_err(AlertError::State)?;
        let mut sent = self.last_sent.lock().unwrap_or_else(|e| e.into_inner());
        if is_new {
            sent.insert(f.key.clone(), now);
            report.opened.push(f.key.clone());
            return Ok(Some(Notice::from_alert(NoticeKind::Firing, &alert)));
        }
        match sent.get(&f.key) {
            Some(t) if now.duration_since(*t) >= self.cooldown => {
                sent.insert(f.key.clone(), now);
                report.repeated.push(f.key.clone());
                Ok(Some(Notice::from_alert(NoticeKind::Firing, &alert)))
            }
            Some(_) => {
                report.quiet.push(f.key.clone());
                Ok(None)
            }
            None => {
                // Firing since before this process started: it was notified then.
                sent.insert(f.key.clone(), now);
                report.quiet.push(f.key.clone());
                Ok(None)
            }
        }
    }
}
