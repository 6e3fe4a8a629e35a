//! `packrat status` with the daemon's view: when packratd runs, it writes the address of its API
//! to `<state_dir>/packratd.addr`, and the CLI asks it for `/api/status`.

use std::path::Path;
use std::time::Duration;

use packrat_app::api::StatusResponse;
use packrat_app::config::Config;

use crate::{CliError, commands, exit, output, wire};

/// The daemon's status document, `Ok(None)` when no daemon announced itself, `Err` with a
/// reason when the announced daemon does not answer.
pub async fn daemon_status(cfg: &Config) -> Result<Option<StatusResponse>, String> {
    let file = cfg.state_dir.join(packrat_app::api::ADDR_FILE);
    let Ok(addr) = std::fs::read_to_string(&file) else {
        return Ok(None);
    };
    let addr = addr.trim();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .no_proxy()
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
    let url = format!("http://{addr}/api/status");
    let resp = client.get(&url).send().await.map_err(|e| {
        format!(
            "{} names {addr}, but packratd does not answer there ({e}); is it running?",
            file.display()
        )
    })?;
    if !resp.status().is_success() {
        return Err(format!("packratd at {addr} answered {}", resp.status()));
    }
    resp.json()
        .await
        .map(Some)
        .map_err(|e| format!("packratd at {addr} sent an unreadable status: {e}"))
}

/// `packrat status`: the state store's view, plus the daemon's when it runs (with `--json`, the
/// daemon's document, which contains everything, or the CLI's when no daemon runs).
pub async fn status(config: Option<&Path>, json: bool) -> Result<u8, CliError> {
    let cfg = wire::load_config(config)?;
    let daemon = daemon_status(&cfg).await;
    if json {
        if let Ok(Some(v)) = &daemon {
            output::json(v);
            return Ok(exit::OK);
        }
        return commands::status(config, true);
    }
    let code = commands::status(config, false)?;
    outln!();
    match daemon {
        Ok(Some(v)) => print_daemon(&v),
        Ok(None) => outln!("{}", i18n::tr!("daemon-not-running")),
        Err(e) => outln!("daemon: {e}"),
    }
    Ok(code)
}

fn print_daemon(v: &StatusResponse) {
    outln!(
        "daemon: running (pid {}, up {}s, version {})",
        v.pid,
        v.uptime_seconds,
        v.version
    );
    outln!(
        "{:<14} {:<9} {:<26} {:<26} SCHEDULE",
        "PLAN",
        "RUNNING",
        "NEXT RUN",
        "LAST SUCCESS"
    );
    for (name, p) in &v.plans {
        outln!(
            "{:<14} {:<9} {:<26} {:<26} {}",
            name,
            if p.running.is_none() { "no" } else { "yes" },
            output::plan_time(p.next_run, Some(name)),
            output::plan_time(p.last_success, Some(name)),
            p.schedule.as_deref().unwrap_or("-"),
        );
    }
    crate::output::print_sinks(&v.sinks);
    crate::output::print_collections(&v.collections);
    for a in &v.alerts {
        outln!("alert {} {}: {}", a.severity, a.key, a.message);
    }
}
