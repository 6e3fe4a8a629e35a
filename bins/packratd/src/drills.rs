//! Scheduled verifications and restore drills (`verify = "…"`, `drill = "…"` in a plan): their
//! slots live in the scheduler under their own keys (`PLAN#verify`, `PLAN#drill`), so they
//! fire at most once per slot like backups; each holds the plan's lock while it runs. A backup
//! due while its plan drills waits for the drill and starts right after, and a drill due while
//! its plan backs up waits for the job: neither is ever skipped for the other. A failed run
//! raises the alert `drill:PLAN:KIND` through the alert channels; the next passed one resolves
//! it.

use std::sync::Arc;

use alerts::{Finding, Severity};
use backup_core::{BackupKind, Trigger};
use packrat_app::drill::{self, DrillKind, DrillStatus};
use tracing::{error, info, warn};

use crate::daemon::{AfterDrill, Daemon};

/// Separates a plan from its drill kind in a scheduler key (plan names never hold it).
const SEP: char = '#';

/// The scheduler key of `kind` for `plan`.
pub fn key(plan: &str, kind: DrillKind) -> String {
    format!("{plan}{SEP}{}", kind.as_str())
}

/// The plan and drill kind of a scheduler key, when it is one.
pub fn parse(key: &str) -> Option<(&str, DrillKind)> {
    let (plan, kind) = key.split_once(SEP)?;
    match kind {
        "verify" => Some((plan, DrillKind::Verify)),
        "drill" => Some((plan, DrillKind::Drill)),
        _ => None,
    }
}

/// The alert key of a failing `kind` of `plan`.
pub fn alert_key(plan: &str, kind: DrillKind) -> String {
    format!("drill:{plan}:{}", kind.as_str())
}

/// Starts a scheduled `kind` of `plan` in the background. When a job of the plan runs, it waits
/// for the job and starts when it ends; when a verification or drill of the plan runs, it waits
/// for that one.
pub fn start(d: &Arc<Daemon>, plan: &str, kind: DrillKind) {
    if d.defer_drill_if_busy(plan, kind) {
        info!(
            plan,
            kind = kind.as_str(),
            "scheduled {} waits for the plan's running job",
            kind.as_str()
        );
        return;
    }
    if !d.begin_drill(plan, kind) {
        info!(
            plan,
            kind = kind.as_str(),
            "scheduled {} waits for the plan's running one",
            kind.as_str()
        );
        return;
    }
    let (d, plan) = (d.clone(), plan.to_string());
    tokio::spawn(async move {
        let mut kind = kind;
        loop {
            run_one(&d, &plan, kind).await;
            match d.end_drill(&plan) {
                AfterDrill::Drill(next) => kind = next,
                AfterDrill::Backup(backup) => {
                    info!(plan = %plan, kind = %backup, "starting the backup that waited for the drill");
                    start_backup(&d, &plan, backup);
                    return;
                }
                AfterDrill::Nothing => return,
            }
        }
    });
}

async fn run_one(d: &Arc<Daemon>, plan: &str, kind: DrillKind) {
    info!(plan = %plan, kind = kind.as_str(), "scheduled {} started", kind.as_str());
    let cancel = d.drill_cancel(plan);
    match drill::run(
        &d.cfg,
        d.state.clone(),
        plan,
        kind,
        Trigger::Schedule,
        &d.actor,
        &cancel,
    )
    .await
    {
        Ok(run) if run.status == DrillStatus::Passed => {
            info!(plan = %plan, run = run.id, restore_seconds = ?run.restore_seconds, "{} passed", kind.as_str());
            if let Err(e) = d.alerts().resolve(&alert_key(plan, kind)).await {
                error!("cannot resolve the alert of plan {plan}'s {}: {e}", kind.as_str());
            }
        }
        Ok(run) if cancel.is_cancelled() => {
            warn!(plan = %plan, run = run.id, "{} cancelled: {}", kind.as_str(), run.failures.join("; "));
        }
        Ok(run) => {
            let message = format!(
                "the {} of plan {plan} failed (run {}, pack {}): {}",
                kind.as_str(),
                run.id,
                run.pack_id.as_deref().unwrap_or("-"),
                run.failures.join("; ")
            );
            error!(plan = %plan, run = run.id, "{message}");
            if let Err(e) = d
                .alerts()
                .raise(Finding::new(alert_key(plan, kind), Severity::Critical, message))
                .await
            {
                error!("cannot raise the alert of plan {plan}'s {}: {e}", kind.as_str());
            }
        }
        Err(e) => warn!(plan = %plan, "scheduled {} did not run: {}", kind.as_str(), e.chain()),
    }
}

fn start_backup(d: &Arc<Daemon>, plan: &str, kind: BackupKind) {
    if let Err(e) = d.start_job(plan, kind, Trigger::Schedule) {
        warn!(plan, "the backup that waited for the drill could not start: {e:?}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_plans_never_parse_as_drills() {
        for kind in [DrillKind::Verify, DrillKind::Drill] {
            assert_eq!(parse(&key("nightly", kind)), Some(("nightly", kind)));
        }
        assert_eq!(parse("nightly"), None);
        assert_eq!(parse("nightly#other"), None);
        assert!(backup_core::pack::check_plan_name("a#verify").is_err());
    }
}
