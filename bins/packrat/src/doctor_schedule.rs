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
            i18n::tr!("doctor-daemon"),
            i18n::tr!("doctor-daemon-up", pid = v.pid, up = v.uptime_seconds),
        ),
        Ok(None) if any_scheduled => Check::fail(
            i18n::tr!("doctor-daemon"),
            i18n::tr!("doctor-daemon-down"),
            i18n::tr!("doctor-fix-daemon-start"),
        ),
        Ok(None) => Check::ok(i18n::tr!("doctor-daemon"), i18n::tr!("doctor-daemon-down-ok")),
        Err(e) => Check::fail(
            i18n::tr!("doctor-daemon"),
            e.clone(),
            i18n::tr!("doctor-fix-daemon-restart"),
        ),
    });

    for (name, pc) in &cfg.plans {
        let tz = cfg.plan_time_zone(pc);
        let sched = match packrat_app::registry::schedule(cfg, name) {
            Ok(Some(s)) => s,
            Ok(None) => {
                out.push(Check::ok(
                    i18n::tr!("doctor-schedule", plan = name.as_str()),
                    i18n::tr!("doctor-no-schedule"),
                ));
                continue;
            }
            Err(e) => {
                out.push(Check::fail(
                    i18n::tr!("doctor-schedule", plan = name.as_str()),
                    e.to_string(),
                    i18n::tr!("doctor-fix-cron"),
                ));
                continue;
            }
        };
        if !pc.enabled {
            out.push(Check::warn(
                i18n::tr!("doctor-schedule", plan = name.as_str()),
                i18n::tr!("doctor-schedule-disabled", schedule = sched.to_string()),
                i18n::tr!("doctor-fix-enable", plan = name.as_str()),
            ));
            continue;
        }
        out.push(Check::ok(
            i18n::tr!("doctor-schedule", plan = name.as_str()),
            i18n::tr!(
                "doctor-schedule-next",
                schedule = sched.to_string(),
                next = sched
                    .next_due(now)
                    .map(|t| when(t, tz))
                    .unwrap_or_else(|| i18n::tr!("doctor-never"))
            ),
        ));
        let st = match state.schedule_state(name) {
            Ok(s) => s,
            Err(e) => {
                out.push(Check::fail(
                    i18n::tr!("doctor-fired", plan = name.as_str()),
                    e.chain(),
                    i18n::tr!("doctor-fix-check-state"),
                ));
                continue;
            }
        };
        let fired = i18n::tr!("doctor-slot-fired", plan = name.as_str());
        match sched.last_slot(now) {
            None => out.push(Check::ok(fired, i18n::tr!("doctor-not-due"))),
            Some(slot) if st.last_fired_slot.is_some_and(|f| f >= slot.at) => out.push(Check::ok(
                fired,
                i18n::tr!("doctor-slot-ok", kind = slot.kind.to_string(), at = when(slot.at, tz)),
            )),
            Some(slot) if now - slot.at <= DEFAULT_TOLERANCE && daemon_up => out.push(Check::ok(
                fired,
                i18n::tr!("doctor-slot-due", kind = slot.kind.to_string(), at = when(slot.at, tz)),
            )),
            Some(slot) => {
                let last = st
                    .last_fired_slot
                    .map(|t| i18n::tr!("doctor-last-fired", at = when(t, tz)))
                    .unwrap_or_else(|| i18n::tr!("doctor-never-fired"));
                let (why, fix) = if !daemon_up {
                    (
                        i18n::tr!("doctor-why-daemon-down"),
                        i18n::tr!("doctor-fix-catch-up", catch_up = sched.catch_up().as_str()),
                    )
                } else if st.last_fired_slot.is_none() {
                    (
                        i18n::tr!("doctor-why-new-plan"),
                        i18n::tr!("doctor-fix-wait-or-run", plan = name.as_str()),
                    )
                } else {
                    (
                        i18n::tr!("doctor-why-skipped", catch_up = sched.catch_up().as_str()),
                        i18n::tr!("doctor-fix-run-now", plan = name.as_str()),
                    )
                };
                out.push(Check::fail(
                    fired,
                    i18n::tr!(
                        "doctor-slot-missed",
                        kind = slot.kind.to_string(),
                        at = when(slot.at, tz),
                        last = last,
                        why = why
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
        let age_name = i18n::tr!("doctor-last-success", plan = name.as_str());
        match (state.last_success(name), max_age) {
            (Ok(Some(j)), Some(max)) => {
                let at = j.finished_at.unwrap_or(j.created_at);
                if now - at > max {
                    out.push(Check::fail(
                        age_name,
                        i18n::tr!(
                            "doctor-success-old",
                            job = j.id,
                            at = when(at, tz),
                            hours = max.num_hours()
                        ),
                        i18n::tr!("doctor-fix-see-plan-jobs", plan = name.as_str()),
                    ));
                } else {
                    out.push(Check::ok(
                        age_name,
                        i18n::tr!("doctor-success-at", job = j.id, at = when(at, tz)),
                    ));
                }
            }
            (Ok(None), _) => out.push(Check::warn(
                age_name,
                i18n::tr!("doctor-no-success"),
                i18n::tr!("doctor-fix-run", plan = name.as_str()),
            )),
            (Ok(Some(j)), None) => out.push(Check::ok(age_name, i18n::tr!("doctor-job", job = j.id))),
            (Err(e), _) => out.push(Check::fail(age_name, e.chain(), i18n::tr!("doctor-fix-check-state"))),
        }
    }

    // Disk space on every sink against the health threshold.
    for name in cfg.sinks.keys() {
        let Ok(sink) = wire::sink(cfg, name) else { continue };
        let check = i18n::tr!("doctor-disk-space", sink = name.as_str());
        match sink.free_space().await {
            Ok(Some(free)) => {
                let mb = free / (1024 * 1024);
                if mb < cfg.health.min_free_mb {
                    out.push(Check::warn(
                        check,
                        i18n::tr!(
                            "doctor-space-low",
                            free = mb,
                            location = sink.location(),
                            min = cfg.health.min_free_mb
                        ),
                        i18n::tr!("doctor-fix-space"),
                    ));
                } else {
                    out.push(Check::ok(
                        check,
                        i18n::tr!("doctor-space-ok", free = mb, location = sink.location()),
                    ));
                }
            }
            Ok(None) => out.push(Check::ok(check, i18n::tr!("doctor-space-unknown"))),
            Err(e) => out.push(Check::warn(check, e.chain(), i18n::tr!("doctor-fix-sink-reachable"))),
        }
    }

    // Every source used by a plan can be reached.
    for name in cfg.sources.keys() {
        let check = i18n::tr!("doctor-source", source = name.as_str());
        match wire::source(cfg, name) {
            Ok(src) => out.push(match src.check().await {
                Ok(()) => Check::ok(check, i18n::tr!("doctor-source-ok", kind = src.kind().to_string())),
                Err(e) => Check::fail(check, e.chain(), i18n::tr!("doctor-fix-source", source = name.as_str())),
            }),
            Err(e) => out.push(Check::fail(check, e.message, i18n::tr!("doctor-fix-config"))),
        }
    }
    out
}
