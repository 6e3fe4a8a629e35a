//! `packrat alert test CHANNEL`: send a test notice through one alert channel.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alerts::{AlertStore, LogChannel, Notice, Notifier};
use clap::Subcommand;
use packrat_app::config::Config;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;

use crate::{CliError, exit, output, wire};

/// `packrat alert …`.
#[derive(Debug, Subcommand)]
pub enum AlertAction {
    /// Send a test message through channel CHANNEL (`log` is the alerts log).
    Test {
        /// The channel name (`[alerts.NAME]`, or `log`).
        channel: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the alert channels and the alerts firing now.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs `packrat alert …`.
pub async fn run(config: Option<&Path>, action: AlertAction) -> Result<u8, CliError> {
    let cfg = wire::load_config(config)?;
    match action {
        AlertAction::Test { channel, json } => {
            if channel != "log" && !cfg.alerts.contains_key(&channel) {
                let mut names: Vec<&str> = vec!["log"];
                names.extend(cfg.alerts.keys().map(String::as_str));
                return Err(CliError::usage(format!(
                    "no alert channel `{channel}` (configured: {})",
                    names.join(", ")
                )));
            }
            if channel == "log" {
                return test_alerts_log(&cfg, json);
            }
            let (channels, errors) = alerts::all_from_config(&cfg.alerts);
            if let Some(e) = errors
                .iter()
                .find(|e| matches!(e, alerts::AlertError::Setup { channel: c, .. } if *c == channel))
            {
                return Err(CliError::usage(e.to_string()));
            }
            let notifier = Notifier::new(channels.into_iter().filter(|c| c.name() == channel).collect::<Vec<_>>())
                .with_retry(2, Duration::from_secs(1));
            let d = notifier
                .test(&channel)
                .await
                .map_err(|e| CliError::usage(e.to_string()))?;
            let ok = d.result.is_ok();
            if json {
                output::json(&serde_json::json!({
                    "channel": d.channel,
                    "delivered": ok,
                    "attempts": d.attempts,
                    "error": d.result.as_ref().err().map(|e| e.to_string()),
                }));
            } else {
                match &d.result {
                    Ok(()) => outln!("test alert delivered to channel `{}`", d.channel),
                    Err(e) => eprintln!("error: {e}"),
                }
            }
            Ok(if ok { exit::OK } else { exit::FAILED })
        }
        AlertAction::List { json } => {
            let firing = AlertStore::open(wire::open_state(&cfg)?)?.list(false)?;
            if json {
                let channels: Vec<_> = cfg
                    .alerts
                    .iter()
                    .map(|(n, c)| serde_json::json!({ "name": n, "type": c.kind(), "min_severity": c.min_severity() }))
                    .collect();
                output::json(&serde_json::json!({ "channels": channels, "firing": firing }));
            } else {
                outln!("channels: log (alerts log){}", {
                    let v: Vec<String> = cfg
                        .alerts
                        .iter()
                        .map(|(n, c)| format!(", {n} ({})", c.kind()))
                        .collect();
                    v.concat()
                });
                if firing.is_empty() {
                    outln!("no alerts firing");
                }
                for a in &firing {
                    outln!(
                        "{:<9} {:<36} since {}  x{}  {}",
                        a.severity.as_str(),
                        a.key,
                        crate::output::plan_time(Some(a.first_seen), None),
                        a.count,
                        a.message
                    );
                }
            }
            Ok(exit::OK)
        }
    }
}

/// `packrat alert test log`: appends a test notice to the alerts log, where packratd writes every
/// notice (`<log_dir>/alerts.log.YYYY-MM-DD`, the UTC date), in the same line format.
fn test_alerts_log(cfg: &Config, json: bool) -> Result<u8, CliError> {
    let result = write_alerts_log(cfg, &Notice::test("log"));
    let path = match &result {
        Ok(p) | Err((p, _)) => p.clone(),
    };
    if json {
        output::json(&serde_json::json!({
            "channel": "log",
            "delivered": result.is_ok(),
            "attempts": 1,
            "error": result.as_ref().err().map(|(_, e)| e),
            "path": path,
        }));
    } else {
        match &result {
            Ok(p) => outln!("{}", i18n::tr!("alert-test-written", path = p.display().to_string())),
            Err((_, e)) => eprintln!("{}", i18n::tr!("error-line", error = e.as_str())),
        }
    }
    Ok(if result.is_ok() { exit::OK } else { exit::FAILED })
}

/// Renders `notice` exactly as packratd's alerts log layer does (text, or JSON with
/// `[daemon] log_json`) and appends it to today's alerts log file. `Err` holds the file and why.
fn write_alerts_log(cfg: &Config, notice: &Notice) -> Result<PathBuf, (PathBuf, String)> {
    let dir = cfg.log_dir();
    let path = dir.join(format!("alerts.log.{}", chrono::Utc::now().format("%Y-%m-%d")));
    let fail = |what: &str, e: std::io::Error| {
        (
            path.clone(),
            format!(
                "cannot {what} the alerts log {}: {e}; check [daemon] log_dir and its permissions",
                path.display()
            ),
        )
    };
    let buf: Arc<Mutex<Vec<u8>>> = Arc::default();
    let writer = {
        let buf = buf.clone();
        move || BufWriter(buf.clone())
    };
    let alerts_only = Targets::new().with_target(alerts::ALERT_TARGET, tracing::Level::TRACE);
    let layer: Box<dyn Layer<tracing_subscriber::Registry> + Send + Sync> = if cfg.daemon.log_json {
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(writer)
            .with_filter(alerts_only)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(writer)
            .with_filter(alerts_only)
            .boxed()
    };
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, || LogChannel.record(notice));
    let line = std::mem::take(&mut *buf.lock().unwrap_or_else(|e| e.into_inner()));
    std::fs::create_dir_all(&dir).map_err(|e| fail("create the directory of", e))?;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(&line).and_then(|()| f.sync_data()))
        .map_err(|e| fail("write", e))?;
    Ok(path)
}

/// Collects formatted log lines in memory.
struct BufWriter(Arc<Mutex<Vec<u8>>>);

impl Write for BufWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
