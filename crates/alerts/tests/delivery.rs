//! Alerts reach real local receivers: an HTTP server on loopback checks the Slack, DingTalk
//! (signature verified), WeChat Work and webhook payloads; a real SMTP server (aiosmtpd, started
//! by `cargo xtask ci`) receives the email. A failure raises one alert, not one per check; the
//! recovery sends one resolved notice; failed deliveries are retried and never panic.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alerts::HealthConfig;
use alerts::{AlertManager, AlertStore, Finding, HealthChecker, Notice, NoticeKind, Notifier, PlanCheck, Severity};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, RawQuery, State};
use axum::http::StatusCode;
use axum::routing::post;
use backup_core::{BackupKind, JobOutcome, Sink, StateStore, Trigger};
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;

#[derive(Debug, Clone)]
struct Received {
    path: String,
    query: String,
    body: Value,
}

#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Received>>>,
    flaky_failures: Arc<Mutex<u32>>,
}

impl Receiver {
    fn take(&self, path: &str) -> Vec<Received> {
        let mut g = self.got.lock().unwrap();
        let (mine, rest): (Vec<_>, Vec<_>) = g.drain(..).partition(|r| r.path == path);
        *g = rest;
        mine
    }
}

async fn handle(
    State(r): State<Receiver>,
    UrlPath(path): UrlPath<String>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> (StatusCode, String) {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    r.got.lock().unwrap().push(Received {
        path: path.clone(),
        query: q.unwrap_or_default(),
        body,
    });
    match path.as_str() {
        "ding" | "wechat" => (StatusCode::OK, r#"{"errcode":0,"errmsg":"ok"}"#.into()),
        "ding-refuses" => (StatusCode::OK, r#"{"errcode":310000,"errmsg":"sign not match"}"#.into()),
        "down" => (StatusCode::INTERNAL_SERVER_ERROR, "down".into()),
        "flaky" => {
            let mut n = r.flaky_failures.lock().unwrap();
            if *n > 0 {
                *n -= 1;
                (StatusCode::SERVICE_UNAVAILABLE, "try later".into())
            } else {
                (StatusCode::OK, "ok".into())
            }
        }
        _ => (StatusCode::OK, "ok".into()),
    }
}

/// An HTTP receiver on 127.0.0.1; returns its base URL.
async fn receiver() -> (Receiver, String) {
    let r = Receiver::default();
    let app = Router::new().route("/{path}", post(handle)).with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (r, format!("http://{addr}"))
}

/// The `[alerts.NAME]` tables of `text`, parsed and checked as the application does.
fn config(text: &str) -> Channels {
    let doc: Channels = backup_core::config::parse_document(text, Path::new("/tmp/packrat.toml")).unwrap();
    for c in doc.alerts.values() {
        backup_core::config::Section::validate(c).unwrap();
    }
    doc
}

#[derive(serde::Deserialize)]
struct Channels {
    #[serde(default)]
    alerts: std::collections::BTreeMap<String, alerts::AlertChannelConfig>,
}

/// Writes a secret (a webhook URL) to a file and returns its path, for `url_file`.
fn secret_file(dir: &Path, name: &str, value: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, format!("{value}\n")).unwrap();
    p.display().to_string()
}

fn notice(key: &str) -> Notice {
    Notice {
        kind: NoticeKind::Firing,
        key: key.into(),
        severity: Severity::Critical,
        message: "plan `nightly` failed 3 times in a row".into(),
        count: 1,
        first_seen: chrono::Utc::now(),
        at: chrono::Utc::now(),
        host: "testhost".into(),
    }
}

fn url_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() + 1 {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn http_channels_deliver_their_payloads() {
    let (r, base) = receiver().await;
    let t = tempfile::tempdir().unwrap();
    let f = |name: &str, v: &str| secret_file(t.path(), name, v);
    let (slack, ding, secret, wechat, hook) = (
        f("slack", &format!("{base}/slack")),
        f("ding", &format!("{base}/ding?access_token=abc")),
        f("secret", "SECtest-secret"),
        f("wechat", &format!("{base}/wechat?key=k")),
        f("hook", &format!("{base}/hook")),
    );
    let cfg = config(&format!(
        r#"
[alerts.slack]
type = "slack"
url_file = "{slack}"
[alerts.ding]
type = "dingtalk"
url_file = "{ding}"
secret_file = "{secret}"
[alerts.wechat]
type = "wechat-work"
url_file = "{wechat}"
[alerts.hook]
type = "webhook"
url_file = "{hook}"
"#
    ));
    let (channels, errors) = alerts::all_from_config(&cfg.alerts);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(channels.len(), 5, "log + 4");
    let n = Notifier::new(channels).with_retry(2, Duration::from_millis(50));
    let deliveries = n.deliver(&notice("plan:nightly:failures")).await;
    assert_eq!(deliveries.len(), 5);
    for d in &deliveries {
        assert!(d.result.is_ok(), "{}: {:?}", d.channel, d.result);
    }

    let slack = r.take("slack");
    assert_eq!(slack.len(), 1);
    let text = slack[0].body["text"].as_str().unwrap();
    assert!(
        text.contains("[CRITICAL] plan:nightly:failures") && text.contains("failed 3 times"),
        "{text}"
    );

    let wechat = r.take("wechat");
    assert_eq!(wechat.len(), 1);
    assert_eq!(wechat[0].query, "key=k");
    assert_eq!(wechat[0].body["msgtype"], "text");
    assert!(
        wechat[0].body["text"]["content"]
            .as_str()
            .unwrap()
            .contains("plan:nightly:failures")
    );

    let ding = r.take("ding");
    assert_eq!(ding.len(), 1);
    assert_eq!(ding[0].body["msgtype"], "text");
    assert!(
        ding[0].body["text"]["content"]
            .as_str()
            .unwrap()
            .contains("failed 3 times")
    );
    // Verify the signature the way DingTalk does.
    let q: std::collections::HashMap<&str, &str> =
        ding[0].query.split('&').filter_map(|kv| kv.split_once('=')).collect();
    assert_eq!(q["access_token"], "abc");
    let ts: i64 = q["timestamp"].parse().unwrap();
    assert!(
        (chrono::Utc::now().timestamp_millis() - ts).abs() < 60_000,
        "timestamp {ts}"
    );
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(b"SECtest-secret").unwrap();
    mac.update(format!("{ts}\nSECtest-secret").as_bytes());
    let want = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    assert_eq!(url_decode(q["sign"]), want);

    let hook = r.take("hook");
    assert_eq!(hook.len(), 1);
    let b = &hook[0].body;
    assert_eq!(b["kind"], "firing");
    assert_eq!(b["key"], "plan:nightly:failures");
    assert_eq!(b["severity"], "critical");
    assert_eq!(b["host"], "testhost");
    assert_eq!(b["count"], 1);
}

#[tokio::test]
async fn failed_deliveries_are_retried_reported_and_never_panic() {
    let (r, base) = receiver().await;
    *r.flaky_failures.lock().unwrap() = 2;
    let t = tempfile::tempdir().unwrap();
    let f = |name: &str, v: &str| secret_file(t.path(), name, v);
    // A port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (flaky, down, refuses, closed) = (
        f("flaky", &format!("{base}/flaky")),
        f("down", &format!("{base}/down?token=hunter2")),
        f("refuses", &format!("{base}/ding-refuses")),
        f("closed", &format!("http://{closed}/x")),
    );
    let cfg = config(&format!(
        r#"
[alerts.flaky]
type = "webhook"
url_file = "{flaky}"
[alerts.down]
type = "slack"
url_file = "{down}"
[alerts.refuses]
type = "dingtalk"
url_file = "{refuses}"
[alerts.closed]
type = "webhook"
url_file = "{closed}"
"#
    ));
    let (channels, _) = alerts::all_from_config(&cfg.alerts);
    let n = Notifier::new(channels).with_retry(3, Duration::from_millis(20));
    let ds = n.deliver(&notice("sink:local:space")).await;
    let by = |name: &str| ds.iter().find(|d| d.channel == name).unwrap();
    assert!(by("flaky").result.is_ok());
    assert_eq!(by("flaky").attempts, 3);
    assert_eq!(r.take("flaky").len(), 3);
    let down = by("down").result.as_ref().unwrap_err().to_string();
    assert!(down.contains("500") && !down.contains("hunter2"), "{down}");
    assert_eq!(r.take("down").len(), 3);
    let refuses = by("refuses").result.as_ref().unwrap_err().to_string();
    assert!(refuses.contains("sign not match"), "{refuses}");
    assert!(by("closed").result.is_err());
    assert!(by("log").result.is_ok());

    // A channel with a missing secret is reported and left out; the rest still work.
    let cfg = config("[alerts.nourl]\ntype = \"slack\"\nurl_env = \"PKT_B_SURELY_UNSET\"\n");
    let (channels, errors) = alerts::all_from_config(&cfg.alerts);
    assert_eq!(channels.len(), 1);
    assert!(errors[0].to_string().contains("PKT_B_SURELY_UNSET"), "{}", errors[0]);
}

#[tokio::test]
async fn email_reaches_a_real_smtp_server() {
    let addr = std::env::var("PACKRAT_TEST_SMTP_ADDR").unwrap_or_else(|_| {
        panic!(
            "PACKRAT_TEST_SMTP_ADDR is not set: start the SMTP test server with `cargo xtask ci`, or run aiosmtpd \
             (`aiosmtpd -n -l 127.0.0.1:PORT -c aiosmtpd.handlers.Mailbox DIR`) and set PACKRAT_TEST_SMTP_ADDR and \
             PACKRAT_TEST_SMTP_MAILDIR"
        )
    });
    let maildir = std::env::var("PACKRAT_TEST_SMTP_MAILDIR")
        .expect("PACKRAT_TEST_SMTP_MAILDIR is not set: start the SMTP test server with `cargo xtask ci`");
    let (host, port) = addr.rsplit_once(':').unwrap();
    let cfg = config(&format!(
        r#"
[alerts.mail]
type = "email"
host = "{host}"
port = {port}
tls = "none"
from = "packrat@example.com"
to = ["ops@example.com", "oncall@example.com"]
"#
    ));
    let (channels, errors) = alerts::all_from_config(&cfg.alerts);
    assert!(errors.is_empty(), "{errors:?}");
    let key = format!("plan:mail{}:overdue", std::process::id());
    let n = Notifier::new(channels).with_retry(2, Duration::from_millis(100));
    let ds = n.deliver(&notice(&key)).await;
    for d in &ds {
        assert!(d.result.is_ok(), "{}: {:?}", d.channel, d.result);
    }
    // The message lands in the Maildir (new/), with our subject and body.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let found = std::fs::read_dir(Path::new(&maildir).join("new"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .find(|m| m.contains(&key));
        if let Some(m) = found {
            assert!(m.contains("Subject: packrat@testhost: [CRITICAL]"), "{m}");
            assert!(m.contains("ops@example.com") && m.contains("oncall@example.com"), "{m}");
            assert!(m.contains("failed 3 times in a row"), "{m}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no email with {key} in {maildir}/new"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_failure_raises_one_alert_and_recovery_one_resolved_notice() {
    let (r, base) = receiver().await;
    let t = tempfile::tempdir().unwrap();
    let hook = secret_file(t.path(), "hook", &format!("{base}/hook"));
    let cfg = config(&format!("[alerts.hook]\ntype = \"webhook\"\nurl_file = \"{hook}\"\n"));
    let (channels, _) = alerts::all_from_config(&cfg.alerts);
    let state = Arc::new(StateStore::open(t.path()).unwrap());
    let store = AlertStore::open(state.clone()).unwrap();
    let notifier = Arc::new(Notifier::new(channels).with_retry(2, Duration::from_millis(20)));
    let manager = AlertManager::new(store.clone(), notifier, Duration::from_secs(3600));
    let health = HealthConfig {
        max_consecutive_failures: 2,
        ..HealthConfig::default()
    };
    let plans = vec![PlanCheck {
        name: "nightly".into(),
        enabled: true,
        max_age: None,
    }];
    let checker = HealthChecker::new(state.clone(), health, plans, Vec::new(), chrono::Utc::now());

    // Three failed jobs, a health check after each.
    for i in 0..3 {
        let (job, _lock) = state
            .create_job("nightly", BackupKind::Full, Trigger::Schedule)
            .unwrap();
        state
            .fail_job(job.id, "backup failed", &format!("disk full #{i}"))
            .unwrap();
        let findings = checker.check(chrono::Utc::now()).await.unwrap();
        manager.apply(findings).await.unwrap();
    }
    let firing = r.take("hook");
    assert_eq!(firing.len(), 1, "one alert, not one per check: {firing:?}");
    assert_eq!(firing[0].body["kind"], "firing");
    assert_eq!(firing[0].body["key"], "plan:nightly:failures");
    let msg = firing[0].body["message"].as_str().unwrap();
    assert!(
        msg.contains("failed 2 times in a row") && msg.contains("disk full #1"),
        "{msg}"
    );
    let a = &store.list(false).unwrap()[0];
    assert_eq!((a.key.as_str(), a.count), ("plan:nightly:failures", 2));

    // Recovery: one resolved notice, then silence.
    let (job, _lock) = state
        .create_job("nightly", BackupKind::Full, Trigger::Schedule)
        .unwrap();
    state.complete_job(job.id, &JobOutcome::default()).unwrap();
    for _ in 0..3 {
        let findings = checker.check(chrono::Utc::now()).await.unwrap();
        assert!(findings.is_empty(), "{findings:?}");
        manager.apply(findings).await.unwrap();
    }
    let resolved = r.take("hook");
    assert_eq!(resolved.len(), 1, "{resolved:?}");
    assert_eq!(resolved[0].body["kind"], "resolved");
    assert!(store.list(false).unwrap().is_empty());

    // With a zero cooldown a firing alert is repeated on every check.
    let repeat = AlertManager::new(store.clone(), manager.notifier().clone(), Duration::ZERO);
    let f = || vec![Finding::new("sink:nas:space", Severity::Warning, "low")];
    let r1 = repeat.apply(f()).await.unwrap();
    let r2 = repeat.apply(f()).await.unwrap();
    assert_eq!((r1.opened.len(), r2.repeated.len()), (1, 1));
    assert_eq!(r.take("hook").len(), 2);
    // Keys outside plan:/sink: are not ours to resolve.
    store.raise("other:thing", Severity::Info, "x").unwrap();
    repeat.apply(vec![]).await.unwrap();
    assert_eq!(store.list(false).unwrap().len(), 1);
}

#[tokio::test]
async fn an_alert_raised_outside_the_health_checks_fires_once_and_resolves_on_request() {
    let (r, base) = receiver().await;
    let t = tempfile::tempdir().unwrap();
    let hook = secret_file(t.path(), "hook", &format!("{base}/hook"));
    let cfg = config(&format!("[alerts.hook]\ntype = \"webhook\"\nurl_file = \"{hook}\"\n"));
    let (channels, _) = alerts::all_from_config(&cfg.alerts);
    let state = Arc::new(StateStore::open(t.path()).unwrap());
    let store = AlertStore::open(state.clone()).unwrap();
    let notifier = Arc::new(Notifier::new(channels).with_retry(2, Duration::from_millis(20)));
    let manager = AlertManager::new(store.clone(), notifier, Duration::from_secs(3600));
    let key = "retention:nightly:local:future-packs";
    let f = || {
        Finding::new(
            key,
            Severity::Warning,
            "pack migration_pack_20271205_040000 is dated in the future",
        )
    };

    assert!(manager.raise(f()).await.unwrap());
    assert!(!manager.raise(f()).await.unwrap(), "already firing");
    let firing = r.take("hook");
    assert_eq!(firing.len(), 1, "one notice within the cooldown: {firing:?}");
    assert_eq!(
        (firing[0].body["kind"].as_str(), firing[0].body["key"].as_str()),
        (Some("firing"), Some(key))
    );
    assert!(
        firing[0].body["message"]
            .as_str()
            .unwrap()
            .contains("migration_pack_20271205_040000")
    );
    assert_eq!(store.list(false).unwrap()[0].count, 2);

    // The health checks' findings do not resolve it.
    manager.apply(vec![]).await.unwrap();
    assert_eq!(store.list(false).unwrap().len(), 1);
    assert!(r.take("hook").is_empty());

    assert!(manager.resolve(key).await.unwrap());
    assert!(!manager.resolve(key).await.unwrap());
    let resolved = r.take("hook");
    assert_eq!(resolved.len(), 1, "{resolved:?}");
    assert_eq!(resolved[0].body["kind"], "resolved");
    assert!(store.list(false).unwrap().is_empty());
}

#[tokio::test]
async fn sink_checks_find_low_space_and_unusable_sinks() {
    let t = tempfile::tempdir().unwrap();
    let state = Arc::new(StateStore::open(&t.path().join("state")).unwrap());
    std::fs::write(t.path().join("a-file"), "not a directory").unwrap();
    let ok: Arc<dyn Sink> = Arc::new(sink_local::LocalSink::new("ok", t.path().join("ok")).with_min_free_bytes(0));
    let broken: Arc<dyn Sink> =
        Arc::new(sink_local::LocalSink::new("broken", t.path().join("a-file")).with_min_free_bytes(0));
    let health = HealthConfig {
        min_free_mb: u64::MAX / (1024 * 1024),
        ..HealthConfig::default()
    };
    let plans = vec![PlanCheck {
        name: "hourly".into(),
        enabled: true,
        max_age: Some(Duration::from_secs(3600)),
    }];
    let since = chrono::Utc::now() - chrono::TimeDelta::hours(2);
    let checker = HealthChecker::new(state.clone(), health, plans, vec![ok, broken], since);
    let keys: Vec<String> = checker
        .check(chrono::Utc::now())
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.key)
        .collect();
    assert_eq!(
        keys,
        ["plan:hourly:overdue", "sink:ok:space", "sink:broken:unavailable"],
        "{keys:?}"
    );
}
