//! What the application adds to the audit trail ([`backup_core::state::AuditAction`]): the
//! packs retention deleted, the configuration a daemon starts with, and one-line helpers for
//! the binaries' restores, verifications and API mutations. Runs, cancels and watermark resets
//! are recorded by the state store and the runner themselves.

use backup_core::StateStore;
use backup_core::state::{Actor, AuditAction};
use retention::PruneReport;
use sha2::{Digest, Sha256};

use crate::config::Config;

/// Records every pack `r` removed (never those of a dry run): which pack, on which sink, by
/// which rule.
pub fn deletions(state: &StateStore, actor: &Actor, r: &PruneReport) {
    if r.dry_run {
        return;
    }
    for p in r.packs.iter().filter(|p| p.outcome.as_deref() == Some("removed")) {
        state.audit_or_warn(
            actor,
            AuditAction::Delete,
            Some(&r.plan),
            &p.pack.id,
            &format!("removed from sink {} by retention: {}", r.sink, p.reason),
        );
    }
}

/// The SHA-256 of the effective configuration (as `packrat config show` prints it: paths
/// resolved, no secret in it), so a change between two daemon starts shows.
pub fn config_hash(cfg: &Config) -> String {
    hex::encode(Sha256::digest(cfg.to_redacted_toml().as_bytes()))
}

/// Records a daemon start with the hash of its effective configuration, and whether it differs
/// from the one the previous start recorded. Returns the detail recorded.
pub fn daemon_start(state: &StateStore, actor: &Actor, cfg: &Config) -> String {
    let hash = config_hash(cfg);
    let previous = match state.last_audit(AuditAction::DaemonStart) {
        Ok(e) => e.and_then(|e| e.detail.split_whitespace().nth(1).map(str::to_string)),
        Err(e) => {
            tracing::warn!("cannot read the audit trail: {}", e.chain());
            None
        }
    };
    let change = match previous {
        None => "first start recorded".to_string(),
        Some(p) if p == hash => "unchanged since the last start".to_string(),
        Some(p) => format!("changed since the last start (was {p})"),
    };
    let detail = format!("config {hash} {change}");
    state.audit_or_warn(
        actor,
        AuditAction::DaemonStart,
        None,
        &cfg.file().display().to_string(),
        &detail,
    );
    detail
}
