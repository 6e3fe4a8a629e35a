//! The deletion step: apply verdicts to one sink, removing only valid packs of ours.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use backup_core::sink::PackInfo;
use backup_core::{Policy, Sink};
use chrono::{DateTime, Utc};
use serde::Serialize;
use tracing::{info, warn};

use crate::RetentionError;

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
/// oldest first. With `dry_run`, nothing is deleted.
///
/// Safety net, whatever the policy says: the newest pack is never removed, a pack without a
/// verdict is kept, and a pack whose directory is a symbolic link, or does not sit at
/// `<plan>/<id>`, is left alone. A failed deletion is recorded in the report and does not stop
/// the others.
pub async fn prune(
    sink: &dyn Sink,
    plan: &str,
    policy: &dyn Policy,
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
    packs.sort_by(|a, b| a.started_at.cmp(&b.started_at).then_with(|| a.id.cmp(&b.id)));
    let newest = packs.last().map(|p| p.id.clone());

    let verdicts: HashMap<String, (bool, String)> = policy
        .retain(&packs, now)
        .into_iter()
        .map(|v| (v.pack_id, (v.keep, v.reason)))
        .collect();

    let mut out = Vec::with_capacity(packs.len());
    for pack in packs {
        let (mut keep, mut reason) = verdicts
            .get(&pack.id)
            .cloned()
            .unwrap_or_else(|| (true, "no verdict from the retention policy: kept".to_string()));
        if !keep && newest.as_deref() == Some(pack.id.as_str()) {
            warn!(sink = sink.name(), plan, pack = %pack.id, "retention asked to remove the newest pack; kept");
            keep = true;
            reason = "newest pack (always kept)".into();
        }
        if !keep && let Some(why) = not_ours(&pack, plan) {
            warn!(sink = sink.name(), plan, pack = %pack.id, "not removing: {why}");
            keep = true;
            reason = format!("left alone: {why}");
        }
        let outcome = if keep {
            None
        } else if dry_run {
            Some("would remove".to_string())
        } else {
            match sink.delete(plan, &pack.id).await {
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
    })
}

/// Why a listed pack must not be deleted, if anything: a symlink, or not at `<plan>/<id>`.
fn not_ours(pack: &PackInfo, plan: &str) -> Option<String> {
    let path = &pack.path;
    let name_ok = path.file_name().is_some_and(|n| n == pack.id.as_str())
        && path.parent().and_then(Path::file_name).is_some_and(|n| n == plan);
    if !name_ok {
        return Some(format!("{} is not at <sink>/{plan}/{}", path.display(), pack.id));
    }
    for p in [Some(path.as_path()), path.parent()].into_iter().flatten() {
        if std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink()) {
            return Some(format!(
                "{} is a symbolic link, which packrat never follows",
                p.display()
            ));
        }
    }
    None
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
