//! The scheduling part of `packrat doctor`: is the daemon running, for each plan is it enabled,
//! when was it last due, did that slot fire, how old is its last success; free space on each
//! sink and whether each source can be reached. One line per check, with the fix.

use backup_core::{SchedulePolicy, StateStore};
use chrono::{DateTime, Utc};
use packrat_app::config::Config;
use policy_schedule::DEFAULT_TOLERANCE;

use crate::doctor::Check;
use crate::wire;

fn when(t: DateTime<Utc>, tz: chrono_tz::Tz) -> String {
    t.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z (%:z)").to_string()
}

/// The daemon, schedule, last-success, disk-space and source checks.
pub async fn checks(cfg: &Config, state: &StateStore) -> Vec<Check> {
    let mut out = Vec::new();
    let now = Utc::now();
    let daemon = crate::daemon_client::daemon_status(cfg).await;
    let daemon_up = matches!(daemon, Ok(Some(_)));
    let any_scheduled = cfg
        .plans
        .values()
        .any(|p| p.enabled && (p.full.is_some() || p.incremental.is_some()));
    out.push(match &daemon {
        Ok(Some(v)) => Check::ok(
            "daemon",
            format!("packratd is running (pid {}, up {}s)", v.pid, v.uptime_seconds),
        ),
        Ok(None) if any_scheduled => Check::fail(
            "daemon",
            "packratd is not running, so no schedule fires",
            "start it: `systemctl start packratd` (see docs/daemon.md), or run `packratd --config FILE`",
        ),
        Ok(None) => Check::ok("daemon", "packratd is not running (no plan has a schedule)"),
        Err(e) => Check::fail(
            "daemon",
            e.clone(),
            "restart packratd (`systemctl restart packratd`) and check its log in <state_dir>/logs",
        ),
    });

    for (name, pc) in &cfg.plans {
        let tz = cfg.plan_time_zone(pc);
        let sched = match packrat_app::registry::schedule(cfg, name) {
            Ok(Some(s)) => s,
            Ok(None) => {
                out.push(Check::ok(
                    format!("schedule ({name})"),
                    "no schedule: runs only by hand or over the API",
                ));
                continue;
            }
            Err(e) => {
                out.push(Check::fail(
                    format!("schedule ({name})"),
                    e.to_string(),
                    "fix the cron expression",
                ));
                continue;
            }
        };
        if !pc.enabled {
            out.push(Check::warn(
                format!("schedule ({name})"),
                format!("{sched}, but the plan is disabled"),
                format!("set `enabled = true` in [plans.{name}] and restart packratd"),
            ));
            continue;
        }
        out.push(Check::ok(
            format!("schedule ({name})"),
            format!(
                "{sched}; next run {}",
                sched
                    .next_due(now)
                    .map(|t| when(t, tz))
                    .unwrap_or_else(|| "never".into())
            ),
        ));
        let st = match state.schedule_state(name) {
            Ok(s) => s,
            Err(e) => {
                out.push(Check::fail(
                    format!("fired ({name})"),
                    e.chain(),
                    "check the state store",
                ));
                continue;
            }
        };
        let fired = format!("last due slot fired ({name})");
        match sched.last_slot(now) {
            None => out.push(Check::ok(fired, "not due yet")),
            Some(slot) if st.last_fired_slot.is_some_and(|f| f >= slot.at) => out.push(Check::ok(
                fired,
                format!("the {} slot of {} fired", slot.kind, when(slot.at, tz)),
            )),
            Some(slot) if now - slot.at <= DEFAULT_TOLERANCE && daemon_up => out.push(Check::ok(
                fired,
                format!("the {} slot of {} is due just now", slot.kind, when(slot.at, tz)),
            )),
            Some(slot) => {
                let last = st
                    .last_fired_slot
                    .map(|t| format!("last fired slot {}", when(t, tz)))
                    .unwrap_or_else(|| "never fired".into());
                let (why, fix) = if !daemon_up {
                    (
                        "packratd is not running".to_string(),
                        format!(
                            "start packratd; it catches up once (catch_up = {})",
                            sched.catch_up().as_str()
                        ),
                    )
                } else if st.last_fired_slot.is_none() {
                    (
                        "a new plan waits for its first slot after packratd started".to_string(),
                        format!("wait for the next slot, or run it now: `packrat run {name}`"),
                    )
                } else {
                    (
                        format!("catch_up = {} skipped it", sched.catch_up().as_str()),
                        format!("run it now: `packrat run {name}`"),
                    )
                };
                out.push(Check::fail(
                    fired,
                    format!(
                        "the {} slot of {} did not fire ({last}): {why}",
                        slot.kind,
                        when(slot.at, tz)
                    ),
                    fix,
                ));
            }
        }
        // The last success against the plan's maximum age (default: twice the interval).
        let max_age = pc
            .max_age
            .and_then(|d| chrono::TimeDelta::from_std(d).ok())
            .or_else(|| sched.interval(now).map(|i| i * 2));
        let age_name = format!("last success ({name})");
        match (state.last_success(name), max_age) {
            (Ok(Some(j)), Some(max)) => {
                let at = j.finished_at.unwrap_or(j.created_at);
                if now - at > max {
                    out.push(Check::fail(
                        age_name,
                        format!("job {} at {}, older than {}h", j.id, when(at, tz), max.num_hours()),
                        format!("see `packrat jobs --plan {name}` for why later runs failed"),
                    ));
                } else {
                    out.push(Check::ok(age_name, format!("job {} at {}", j.id, when(at, tz))));
                }
            }
            (Ok(None), _) => out.push(Check::warn(
                age_name,
                "no successful backup yet",
                format!("run `packrat run {name}`"),
            )),
            (Ok(Some(j)), None) => out.push(Check::ok(age_name, format!("job {}", j.id))),
            (Err(e), _) => out.push(Check::fail(age_name, e.chain(), "check the state store")),
        }
    }

    // Disk space on every sink against the health threshold.
    for name in cfg.sinks.keys() {
        let Ok(sink) = wire::sink(cfg, name) else { continue };
        let check = format!("disk space ({name})");
        match sink.free_space().await {
            Ok(Some(free)) => {
                let mb = free / (1024 * 1024);
                if mb < cfg.health.min_free_mb {
                    out.push(Check::warn(
                        check,
                        format!(
                            "{mb} MiB free at {}, below {} MiB",
                            sink.location(),
                            cfg.health.min_free_mb
                        ),
                        "free space, or keep fewer packs ([plans.X] retention, then `packrat prune`)",
                    ));
                } else {
                    out.push(Check::ok(check, format!("{mb} MiB free at {}", sink.location())));
                }
            }
            Ok(None) => out.push(Check::ok(check, "not known for this sink")),
            Err(e) => out.push(Check::warn(check, e.chain(), "check that the sink is reachable")),
        }
    }

    // Every source used by a plan can be reached.
    for name in cfg.sources.keys() {
        let check = format!("source reachable ({name})");
        match wire::source(cfg, name) {
            Ok(src) => out.push(match src.check().await {
                Ok(()) => Check::ok(check, format!("{} source can be read", src.kind())),
                Err(e) => Check::fail(
                    check,
                    e.chain(),
                    format!("check that the server or file of sources.{name} is up and readable"),
                ),
            }),
            Err(e) => out.push(Check::fail(check, e.message, "fix the config")),
        }
    }
    out
}
