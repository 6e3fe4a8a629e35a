//! `packrat alert test CHANNEL`: send a test notice through one alert channel.

use std::path::Path;
use std::time::Duration;

use alerts::Notifier;
use clap::Subcommand;

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
            let (channels, errors) = alerts::all_from_config(&cfg);
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
            let state = wire::open_state(&cfg)?;
            let firing = state.alerts(false)?;
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
                        a.first_seen.format("%Y-%m-%d %H:%M:%S UTC"),
                        a.count,
                        a.message
                    );
                }
            }
            Ok(exit::OK)
        }
    }
}
