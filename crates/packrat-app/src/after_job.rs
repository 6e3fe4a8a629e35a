//! The steps after a successful job, in one place for both binaries: retention on every sink of
//! the plan, then the leftovers of jobs that are gone; with an alert manager (the daemon), packs
//! dated in the future raise their alert, or resolve it once they are gone.

use alerts::{AlertManager, Finding, Severity};
use backup_core::StateStore;
use backup_core::runner::Plan;
use backup_core::state::Actor;
use chrono::Utc;
use retention::{PruneReport, Retention};
use tracing::{error, info, warn};

/// Applies `policy` on every sink of `plan` and removes leftovers there; every deletion goes to
/// the audit trail of `state` as done by `actor`. Problems are logged and never fail the job (it
/// completed); the prune reports are returned.
pub async fn after_success(
    plan: &Plan,
    policy: &Retention,
    alerts: Option<&AlertManager>,
    (state, actor): (&StateStore, &Actor),
) -> Vec<PruneReport> {
    let mut reports = Vec::new();
    for sink in &plan.sinks {
        if !policy.is_empty() {
            match retention::prune(sink.as_ref(), &plan.name, policy, Utc::now(), false).await {
                Ok(r) => {
                    info!(plan = %plan.name, sink = sink.name(), kept = r.kept(), removed = r.removed(), "retention applied");
                    crate::audit::deletions(state, actor, &r);
                    for f in r.failures() {
                        warn!(plan = %plan.name, sink = sink.name(), "retention could not remove {f}");
                    }
                    if let Some(alerts) = alerts {
                        alert_future_packs(alerts, &r).await;
                    }
                    reports.push(r);
                }
                Err(e) => warn!(plan = %plan.name, sink = sink.name(), "retention failed: {e}"),
            }
        }
        if let Err(e) = retention::clean_leftovers(sink.as_ref()).await {
            warn!(sink = sink.name(), "{e}");
        }
    }
    reports
}

/// Raises the alert about packs dated in the future that retention found, or resolves it.
async fn alert_future_packs(alerts: &AlertManager, r: &PruneReport) {
    let done = match r.future_alert() {
        Some((key, message)) => alerts.raise(Finding::new(key, Severity::Warning, message)).await,
        None => alerts.resolve(&r.future_alert_key()).await,
    };
    if let Err(e) = done {
        error!(plan = %r.plan, sink = %r.sink, "cannot record the alert about packs dated in the future: {e}");
    }
}
