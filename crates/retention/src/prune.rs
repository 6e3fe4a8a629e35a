//! The deletion step: apply verdicts to one sink, removing only valid packs of ours.

use std::collections::HashMap;
use std::path::PathBuf;

use backup_core::sink::PackInfo;
use backup_core::{DryRunSink, RetentionPolicy, Sink};
use chrono::{DateTime, Utc};
use serde::Serialize;
use tracing::{info, warn};

use crate::RetentionError;
use crate::select::{oldest_first, protect};

/// What happened to one pack.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PackDecision {
    /// The pack as listed by the sink.
    pub pack: PackInfo,
    /// Kept (or, in a dry run, would be kept).
    pub keep: bool,
    /// Why.
    pub reason: String,
    /// For removals: `removed`, `would remove` (dry run), or `failed: …`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
}

/// The result of pruning one plan on one sink.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PruneReport {
    /// Sink name.
    pub sink: String,
    /// Plan name.
    pub plan: String,
    /// True when nothing was deleted on purpose.
    pub dry_run: bool,
    /// One entry per pack, oldest first.
    pub packs: Vec<PackDecision>,
    /// Ids of the packs dated in the future (started after the prune's `now`): the clock of the
    /// host that wrote them was wrong. They are kept; raise an alert naming them
    /// ([`PruneReport::future_alert`]).
    pub future: Vec<String>,
}

impl PruneReport {
    /// Packs kept.
    pub fn kept(&self) -> usize {
        self.packs.iter().filter(|p| p.keep).count()
    }

    /// Packs removed (or that would be, in a dry run).
    pub fn removed(&self) -> usize {
        self.packs
            .iter()
            .filter(|p| {
                !p.keep
                    && p.outcome
                        .as_deref()
                        .is_some_and(|o| o == "removed" || o == "would remove")
            })
            .count()
    }

    /// The alert about packs dated in the future, if there are any: its key
    /// (`retention:<plan>:<sink>:future-packs`) and a message naming them and saying what to
    /// do. Resolve the key when a later prune reports none.
    pub fn future_alert(&self) -> Option<(String, String)> {
        if self.future.is_empty() {
            return None;
        }
        let named: Vec<String> = self
            .packs
            .iter()
            .filter(|p| self.future.contains(&p.pack.id))
            .map(|p| format!("{} ({})", p.pack.id, p.pack.started_at.format("%Y-%m-%d %H:%M:%S UTC")))
            .collect();
        Some((
            self.future_alert_key(),
            format!(
                "plan `{}` on sink `{}` has {} pack(s) dated in the future: {}. The clock of the host that wrote                  them was probably wrong. Retention keeps them and does not count them as the newest pack; check                  that host's clock (NTP), then verify those packs and remove them by hand if they are bad",
                self.plan,
                self.sink,
                named.len(),
                named.join(", ")
            ),
        ))
    }

    /// The key of the alert about packs dated in the future of this plan on this sink.
    pub fn future_alert_key(&self) -> String {
        format!("retention:{}:{}:future-packs", self.plan, self.sink)
    }

    /// Removals that failed, as messages.
    pub fn failures(&self) -> Vec<String> {
        self.packs
            .iter()
            .filter_map(|p| {
                p.outcome
                    .as_deref()
                    .and_then(|o| o.strip_prefix("failed: "))
                    .map(|e| format!("{}: {e}", p.pack.id))
            })
            .collect()
    }
}

/// Applies `policy` to the packs of `plan` on `sink`: lists them (a sink lists only valid packs
/// of ours), asks the policy for verdicts and deletes the removals through [`Sink::delete`],
/// oldest first. With `dry_run`, the sink is wrapped in a [`DryRunSink`]: the deletions go
/// through it, checked like real ones, and are skipped.
///
/// Safety net, whatever the policy says: a pack dated after `now` is kept (and listed in
/// [`PruneReport::future`], with a warning in the log), the newest pack that is not in the
/// future is kept, every kept incremental pack keeps the packs its `restore --chain` needs (the
/// newest full pack before it and every pack between), and a pack without a verdict is kept.
/// Whether a pack is ours to delete (a real directory at `<plan>/<id>`, no symbolic link, a
/// valid manifest naming that plan and id) is the sink's own check in [`Sink::delete`]; a pack
/// it refuses is recorded as a failed deletion. A failed deletion does not stop the others.
pub async fn prune(
    sink: &dyn Sink,
    plan: &str,
    policy: &dyn RetentionPolicy,
    now: DateTime<Utc>,
    dry_run: bool,
) -> Result<PruneReport, RetentionError> {
    if dry_run {
        prune_on(&DryRunSink::new(sink), plan, policy, now, true).await
    } else {
        prune_on(sink, plan, policy, now, false).await
    }
}

/// [`prune`] on `sink` as given; `dry_run` only names the outcomes (`would remove`).
async fn prune_on(
    sink: &dyn Sink,
    plan: &str,
    policy: &dyn RetentionPolicy,
    now: DateTime<Utc>,
    dry_run: bool,
) -> Result<PruneReport, RetentionError> {
    let mut packs: Vec<PackInfo> = sink
        .list(Some(plan))
        .await
        .map_err(|e| RetentionError::List {
            sink: sink.name().to_string(),
            plan: plan.to_string(),
            source: e,
        })?
        .into_iter()
        .filter(|p| p.plan == plan)
        .collect();
    packs.sort_by(oldest_first);

    let mut verdicts: HashMap<String, (bool, String)> = policy
        .retain(&packs, now)
        .into_iter()
        .map(|v| (v.pack_id, (v.keep, v.reason)))
        .collect();
    let mut decided: Vec<(bool, String)> = packs
        .iter()
        .map(|p| {
            verdicts
                .remove(&p.id)
                .unwrap_or_else(|| (true, "no verdict from the retention policy: kept".to_string()))
        })
        .collect();
    let refs: Vec<&PackInfo> = packs.iter().collect();
    for i in protect(&refs, &mut decided, now) {
        warn!(sink = sink.name(), plan, pack = %packs[i].id, reason = %decided[i].1, "retention asked to remove this pack; kept");
    }
    let future: Vec<String> = packs
        .iter()
        .filter(|p| p.started_at > now)
        .map(|p| p.id.clone())
        .collect();
    if !future.is_empty() {
        warn!(
            sink = sink.name(),
            plan,
            packs = %future.join(", "),
            "packs dated in the future (clock skew on the host that wrote them?): kept, never removed by age, and not counted as the newest pack"
        );
    }

    let mut out = Vec::with_capacity(packs.len());
    for (pack, (keep, reason)) in packs.into_iter().zip(decided) {
        let outcome = if keep {
            None
        } else {
            match sink.delete(plan, &pack.id).await {
                Ok(()) if dry_run => Some("would remove".to_string()),
                Ok(()) => {
                    info!(sink = sink.name(), plan, pack = %pack.id, %reason, "pack removed by retention");
                    Some("removed".to_string())
                }
                Err(e) => {
                    let msg = e.chain();
                    warn!(sink = sink.name(), plan, pack = %pack.id, "cannot remove pack: {msg}");
                    Some(format!("failed: {msg}"))
                }
            }
        };
        out.push(PackDecision {
            pack,
            keep,
            reason,
            outcome,
        });
    }
    Ok(PruneReport {
        sink: sink.name().to_string(),
        plan: plan.to_string(),
        dry_run,
        packs: out,
        future,
    })
}

/// Removes leftovers on `sink` of jobs (and prunes) that are gone: staging and `_tmp` work
/// directories whose claim is not held ([`Sink::clean_leftovers`]); a live job's work, in any
/// process, is never touched. Returns what was removed.
pub async fn clean_leftovers(sink: &dyn Sink) -> Result<Vec<PathBuf>, RetentionError> {
    sink.clean_leftovers().await.map_err(|e| RetentionError::Leftovers {
        sink: sink.name().to_string(),
        source: e,
    })
}
