//! Operator controls: `packrat cancel`, `packrat daemon stop|status`, `packrat run --all`,
//! `packrat watermarks`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use backup_core::state::{Actor, CancelOutcome, StateStore};
use backup_core::{BackupKind, Error, JobStatus, Trigger};
use clap::{Args, Subcommand};
use packrat_app::config::Config;
use tokio::sync::Semaphore;

use crate::{CliError, exit, output, wire};

/// `packrat daemon …`.
#[derive(Debug, Subcommand)]
pub enum DaemonAction {
    /// Stop packratd gracefully (the same path as SIGTERM): POST /api/shutdown with the API
    /// token, then wait until it exited and print how its jobs ended.
    Stop {
        /// Give up waiting after this many seconds (exit 1); default: the grace period + 60 s.
        #[arg(long, value_name = "SECONDS")]
        timeout: Option<u64>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Is packratd running: pid, version, uptime, address. Exit 0 when it runs, 1 when not.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `packrat watermarks`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct WatermarksArgs {
    /// Only this plan.
    pub plan: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// reset.
    #[command(subcommand)]
    pub action: Option<WatermarksAction>,
}

/// `packrat watermarks reset`.
#[derive(Debug, Subcommand)]
pub enum WatermarksAction {
    /// Reset one watermark by hand (audited in the state store and logged): `--to TIME` sets it
    /// (the next incremental run copies what is newer), `--clear` removes it (the next run
    /// starts from the beginning, per `first_run`).
    Reset {
        /// Plan name.
        plan: String,
        /// Collection key (`db.collection`), or `SOURCE/db.collection`.
        key: String,
        /// The new value: RFC 3339, or `YYYY-MM-DD[ HH:MM[:SS]]` in the plan's zone.
        #[arg(
            long,
            value_name = "TIME",
            required_unless_present = "clear",
            conflicts_with = "clear"
        )]
        to: Option<String>,
        /// Remove the watermark.
        #[arg(long)]
        clear: bool,
        /// The source, when the key alone is ambiguous or has no watermark yet.
        #[arg(long)]
        source: Option<String>,
        /// Confirm.
        #[arg(long)]
        yes: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `packrat cancel JOB`: records a cancel request in the state store; the process running the
/// job (a `packrat run` or packratd) sees it within a second and cancels the job. Waits up to
/// `wait` for the job to end and prints how it ended.
pub async fn cancel(config: Option<&Path>, id: i64, wait: u64, json: bool) -> Result<u8, CliError> {
    let cfg = wire::load_config(config)?;
    let state = wire::open_state(&cfg)?;
    let who = format!("packrat cancel by {}", Actor::operator());
    match state.request_cancel(id, &who)? {
        CancelOutcome::Unknown => Err(CliError::usage(format!("no job {id}"))),
        CancelOutcome::Finished(j) => Err(CliError::usage(format!("job {id} already {}", j.status))),
        CancelOutcome::Requested(j) => {
            if !json {
                outln!(
                    "job {id} ({}, {}): cancel requested by {}",
                    j.plan,
                    j.status,
                    Actor::operator()
                );
            }
            let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
            let mut last = j;
            while tokio::time::Instant::now() < deadline {
                if let Some(now) = state.job(id)? {
                    last = now;
                    if last.status.is_finished() {
                        break;
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            if json {
                output::json(&serde_json::json!({"requested_by": who, "job": last}));
            } else if last.status.is_finished() {
                outln!("job {id}: {} ({})", last.status, last.detail);
            } else {
                outln!(
                    "job {id}: still {} after {wait}s; its process stops it when it next checks (see `packrat job {id}`)",
                    last.status
                );
            }
            Ok(match last.status {
                JobStatus::Cancelled => exit::OK,
                s if s.is_finished() => exit::FAILED,
                _ => exit::OK,
            })
        }
    }
}

fn http() -> Result<reqwest::Client, CliError> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .no_proxy()
        .build()
        .map_err(|e| CliError::failed(format!("cannot build an HTTP client: {e}")))
}

fn daemon_addr(cfg: &Config) -> Option<String> {
    std::fs::read_to_string(cfg.state_dir.join(packrat_app::api::ADDR_FILE))
        .ok()
        .map(|a| a.trim().to_string())
        .filter(|a| !a.is_empty())
}

/// `packrat daemon …`.
pub async fn daemon(config: Option<&Path>, action: DaemonAction) -> Result<u8, CliError> {
    let cfg = wire::load_config(config)?;
    match action {
        DaemonAction::Status { json } => daemon_status(&cfg, json).await,
        DaemonAction::Stop { timeout, json } => daemon_stop(&cfg, timeout, json).await,
    }
}

async fn daemon_status(cfg: &Config, json: bool) -> Result<u8, CliError> {
    let addr = daemon_addr(cfg);
    match crate::daemon_client::daemon_status(cfg).await {
        Ok(Some(v)) => {
            if json {
                output::json(&serde_json::json!({
                    "running": true, "pid": v.pid, "version": v.version, "started_at": v.started_at,
                    "uptime_seconds": v.uptime_seconds, "address": addr, "stopping": v.stopping,
                    "active_jobs": v.active_jobs.iter().map(|j| j.id).collect::<Vec<_>>(),
                }));
            } else {
                outln!(
                    "packratd: running{} (pid {}, version {}, up {}s since {}, address {})",
                    if v.stopping { ", stopping" } else { "" },
                    v.pid,
                    v.version,
                    v.uptime_seconds,
                    output::plan_time(Some(v.started_at), None),
                    addr.as_deref().unwrap_or("-")
                );
            }
            Ok(exit::OK)
        }
        other => {
            let why = match other {
                Err(e) => e,
                _ => "not running".to_string(),
            };
            if json {
                output::json(&serde_json::json!({"running": false, "reason": why}));
            } else {
                outln!("packratd: {why}");
            }
            Ok(exit::FAILED)
        }
    }
}

async fn daemon_stop(cfg: &Config, timeout: Option<u64>, json: bool) -> Result<u8, CliError> {
    let Some(addr) = daemon_addr(cfg) else {
        return Err(CliError::failed(
            "packratd is not running (no packratd.addr in the state directory)",
        ));
    };
    let token = cfg
        .api
        .token()?
        .ok_or_else(|| CliError::usage("stopping packratd needs the API token: set [api] token_env or token_file"))?;
    let client = http()?;
    let resp = client
        .post(format!("http://{addr}/api/shutdown"))
        .bearer_auth(token.expose())
        .send()
        .await
        .map_err(|e| CliError::failed(format!("packratd at {addr} does not answer ({e}); is it running?")))?;
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    if !status.is_success() {
        return Err(CliError::failed(format!(
            "packratd refused to stop: {status} {}",
            body.get("error").and_then(|e| e.as_str()).unwrap_or("")
        )));
    }
    let pid = body.get("pid").and_then(|p| p.as_u64());
    let jobs: Vec<i64> = body
        .get("jobs")
        .and_then(|j| j.as_array())
        .map(|a| a.iter().filter_map(|j| j.get("job").and_then(|i| i.as_i64())).collect())
        .unwrap_or_default();
    if !json {
        outln!(
            "packratd{}: stopping ({} job(s) running or waiting)",
            pid.map(|p| format!(" (pid {p})")).unwrap_or_default(),
            jobs.len()
        );
    }
    // Exited: the daemon's lock is free (the address file goes just before).
    let wait = Duration::from_secs(timeout.unwrap_or(cfg.daemon.grace_period.as_secs() + 60));
    let deadline = tokio::time::Instant::now() + wait;
    let lock = cfg.state_dir.join("packratd.lock");
    let mut exited = false;
    while tokio::time::Instant::now() < deadline {
        match backup_core::lock::FileLock::try_acquire(&lock, "packratd") {
            Ok(l) => {
                drop(l);
                exited = true;
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    let state = wire::open_state(cfg)?;
    let ended: Vec<backup_core::Job> = jobs.iter().filter_map(|id| state.job(*id).ok().flatten()).collect();
    if json {
        output::json(&serde_json::json!({"stopped": exited, "pid": pid, "jobs": ended}));
    } else {
        for j in &ended {
            outln!(
                "  job {} ({}): {}{}",
                j.id,
                j.plan,
                j.status,
                if j.detail.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", j.detail)
                }
            );
        }
        if exited {
            outln!("packratd stopped");
        } else {
            outln!("packratd has not exited after {}s", wait.as_secs());
        }
    }
    Ok(if exited { exit::OK } else { exit::FAILED })
}

/// `packrat run --all`: every enabled plan once, at most `parallelism` at a time; Ctrl-C
/// cancels them all. Exit 0 when every plan that ran completed (plans busy elsewhere are
/// reported and skipped), 1 when any failed, 3 when every plan was busy, 130/143 when cancelled
/// by a signal, 2 when no plan is enabled.
pub async fn run_all(config: Option<&Path>, kind: BackupKind, json: bool) -> Result<u8, CliError> {
    let cfg = Arc::new(wire::load_config(config)?);
    let names: Vec<String> = cfg
        .plans
        .iter()
        .filter(|(_, p)| p.enabled)
        .map(|(n, _)| n.clone())
        .collect();
    if names.is_empty() {
        return Err(CliError::usage("no plan is enabled"));
    }
    let state = wire::open_state(&cfg)?;
    let runner = backup_core::Runner::new(state.clone())
        .with_plan_sinks(wire::plan_sinks(&cfg))
        .with_actor(wire::actor("packrat run --all"));
    let cancel = backup_core::CancelToken::new();
    let signals = crate::signals::cancel_on_signal(cancel.clone());
    let limit = Arc::new(Semaphore::new(cfg.parallelism.max(1)));
    let mut set = tokio::task::JoinSet::new();
    for (i, name) in names.iter().enumerate() {
        let (cfg, runner, cancel, limit, name) =
            (cfg.clone(), runner.clone(), cancel.clone(), limit.clone(), name.clone());
        set.spawn(async move {
            let _permit = limit.acquire_owned().await;
            let outcome = match wire::plan(&cfg, &name) {
                Err(e) => RunAllOutcome::Error(e.message),
                Ok(_) if cancel.is_cancelled() => RunAllOutcome::Skipped("cancelled before it started".into()),
                Ok(plan) => match runner.run_cancellable(&plan, kind, Trigger::Manual, &cancel).await {
                    Ok(run) => {
                        if run.is_success() {
                            crate::prune::after_job(&cfg, &plan, runner.state()).await;
                        }
                        RunAllOutcome::Ran(Box::new(run))
                    }
                    Err(Error::Locked { holder, .. }) => RunAllOutcome::Busy(format!(
                        "already running in another packrat process{}",
                        holder.map(|p| format!(" (pid {p})")).unwrap_or_default()
                    )),
                    Err(e) => RunAllOutcome::Error(e.chain()),
                },
            };
            (i, name, outcome)
        });
    }
    let mut results = Vec::new();
    while let Some(r) = set.join_next().await {
        results.push(r.map_err(|e| CliError::failed(format!("a plan's task failed: {e}")))?);
    }
    results.sort_by_key(|(i, _, _)| *i);
    let (mut failed, mut busy, mut cancelled) = (0, 0, 0);
    let mut rows = Vec::new();
    for (_, name, o) in &results {
        let (status, job, what) = match o {
            RunAllOutcome::Ran(run) => {
                match run.job.status {
                    JobStatus::Completed => {}
                    JobStatus::Cancelled => cancelled += 1,
                    _ => failed += 1,
                }
                let what = match &run.pack {
                    Some(p) if run.is_success() => p.location.clone(),
                    _ => format!("{}: {}", run.job.message, run.job.detail),
                };
                (run.job.status.to_string(), Some(run.job.id), what)
            }
            RunAllOutcome::Busy(why) => {
                busy += 1;
                ("busy".to_string(), None, why.clone())
            }
            RunAllOutcome::Skipped(why) => {
                cancelled += 1;
                ("skipped".to_string(), None, why.clone())
            }
            RunAllOutcome::Error(why) => {
                failed += 1;
                ("error".to_string(), None, why.clone())
            }
        };
        rows.push(serde_json::json!({"plan": name, "status": status, "job": job, "detail": what}));
        if !json {
            outln!(
                "{name:<16} {status:<10} {:<8} {what}",
                job.map(|j| format!("job {j}")).unwrap_or_else(|| "-".into())
            );
        }
    }
    let total = results.len();
    if json {
        output::json(&serde_json::json!({"plans": rows}));
    } else {
        outln!(
            "{total} plan(s): {} completed, {failed} failed, {busy} busy, {cancelled} cancelled",
            total - failed - busy - cancelled
        );
    }
    Ok(if cancelled > 0 && cancel.is_cancelled() {
        signals.exit_code()
    } else if failed > 0 {
        exit::FAILED
    } else if busy == total {
        exit::BUSY
    } else {
        exit::OK
    })
}

enum RunAllOutcome {
    Ran(Box<backup_core::runner::JobRun>),
    Busy(String),
    Skipped(String),
    Error(String),
}

/// `packrat watermarks [PLAN]` and `packrat watermarks reset …`.
pub fn watermarks(config: Option<&Path>, a: WatermarksArgs) -> Result<u8, CliError> {
    let cfg = wire::load_config(config)?;
    let state = wire::open_state(&cfg)?;
    match a.action {
        None => list_watermarks(&cfg, &state, a.plan.as_deref(), a.json),
        Some(WatermarksAction::Reset {
            plan,
            key,
            to,
            clear,
            source,
            yes,
            json,
        }) => reset_watermark(&cfg, &state, &plan, &key, to.as_deref(), clear, source, yes, json),
    }
}

fn list_watermarks(cfg: &Config, state: &StateStore, plan: Option<&str>, json: bool) -> Result<u8, CliError> {
    if let Some(p) = plan {
        cfg.plan(p)?;
    }
    let health = state.collection_health(plan)?;
    if json {
        let rows: Vec<serde_json::Value> = health
            .iter()
            .map(|h| {
                let tz = output::zone_of(Some(&h.plan));
                serde_json::json!({
                    "plan": h.plan, "source": h.source, "key": h.key,
                    "value": h.window_to.map(|t| t.with_timezone(&tz).to_rfc3339()),
                    "window_from": h.window_from.map(|t| t.with_timezone(&tz).to_rfc3339()),
                    "last_success_at": h.last_success_at.map(|t| t.with_timezone(&tz).to_rfc3339()),
                    "failures_total": h.failures_total,
                    "consecutive_failures": h.consecutive_failures,
                    "last_error": h.last_error,
                })
            })
            .collect();
        output::json(&rows);
        return Ok(exit::OK);
    }
    if health.is_empty() {
        outln!("no watermarks yet (incremental runs of Mongo plans record them)");
        return Ok(exit::OK);
    }
    outln!(
        "{:<14} {:<12} {:<28} {:<26} {:>8}  LAST BACKUP",
        "PLAN",
        "SOURCE",
        "COLLECTION",
        "WATERMARK",
        "FAILURES"
    );
    for h in &health {
        outln!(
            "{:<14} {:<12} {:<28} {:<26} {:>8}  {}",
            h.plan,
            h.source,
            h.key,
            output::plan_time(h.window_to, Some(&h.plan)),
            format!("{}/{}", h.consecutive_failures, h.failures_total),
            output::plan_time(h.last_success_at, Some(&h.plan)),
        );
    }
    Ok(exit::OK)
}

#[allow(clippy::too_many_arguments)]
fn reset_watermark(
    cfg: &Config,
    state: &StateStore,
    plan: &str,
    key: &str,
    to: Option<&str>,
    clear: bool,
    source: Option<String>,
    yes: bool,
    json: bool,
) -> Result<u8, CliError> {
    let pc = cfg.plan(plan)?;
    let tz = cfg.plan_time_zone(pc);
    let (source, key) = match (source, key.split_once('/')) {
        (Some(s), _) => (s, key.to_string()),
        (None, Some((s, k))) => (s.to_string(), k.to_string()),
        (None, None) => {
            let marks: Vec<_> = state.watermarks(plan)?.into_iter().filter(|w| w.key == key).collect();
            match marks.as_slice() {
                [one] => (one.source.clone(), key.to_string()),
                [] => {
                    return Err(CliError::usage(format!(
                        "plan `{plan}` has no watermark `{key}`; give --source SOURCE to set a new one (`packrat watermarks {plan}` lists them)"
                    )));
                }
                _ => {
                    return Err(CliError::usage(format!(
                        "`{key}` is in several sources of plan `{plan}`; write SOURCE/{key}"
                    )));
                }
            }
        }
    };
    if !pc.sources.contains(&source) {
        return Err(CliError::usage(format!("plan `{plan}` has no source `{source}`")));
    }
    let value = match to {
        Some(t) if !clear => {
            Some(backup_core::state::parse_operator_time(t, tz).map_err(|e| CliError::usage(e.to_string()))?)
        }
        _ => None,
    };
    let old = state.watermark(plan, &source, &key)?;
    if !yes {
        return Err(CliError::usage(format!(
            "this moves watermark {plan}/{source}/{key} from {} to {}; the next incremental run copies from there. \
             Add --yes to do it",
            output::plan_time(old, Some(plan)),
            output::plan_time(value, Some(plan)),
        )));
    }
    let r = state.reset_watermark(plan, &source, &key, value, &Actor::operator())?;
    if json {
        output::json(&r);
    } else {
        outln!(
            "watermark {plan}/{source}/{key}: {} -> {} (by {}; recorded in the state store)",
            output::plan_time(r.old_value, Some(plan)),
            if r.new_value.is_some() {
                output::plan_time(r.new_value, Some(plan))
            } else {
                "cleared".into()
            },
            r.reset_by
        );
    }
    Ok(exit::OK)
}
