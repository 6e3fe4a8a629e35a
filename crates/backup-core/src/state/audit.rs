//! The audit trail: one append-only row per operation — runs (with their trigger), restores,
//! pack deletions (which pack, which rule), verifications, cancels, the configuration a daemon
//! started with, API mutations — saying who did it (see [`Actor`]), when, to what.
//!
//! Append-only is enforced by the database itself: triggers refuse every `UPDATE` and `DELETE`
//! of the `audit` table, whoever issues them. Nothing secret is ever recorded: callers pass names,
//! paths, pack ids and counts, and the details are what `packrat` prints anyway.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::{StateStore, format_time, read_time};
use crate::error::Result;

/// What was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuditAction {
    /// A backup job was queued (`subject`: the job id; detail: kind and trigger).
    Run,
    /// A pack (or chain) was restored (`subject`: the pack; detail: what, where to).
    Restore,
    /// A pack was deleted by retention (`subject`: the pack; detail: the sink and the rule).
    Delete,
    /// Packs were verified (`subject`: the pack; detail: level and outcome).
    Verify,
    /// A scheduled or manual verification of every sink's newest pack, or a restore drill
    /// (`subject`: the pack; detail: the outcome).
    Drill,
    /// A job was cancelled, or its cancel requested (`subject`: the job id).
    Cancel,
    /// A daemon started (`subject`: the config file; detail: the hash of the effective config
    /// and whether it changed since the last start).
    DaemonStart,
    /// The HTTP API changed something (`subject`: method and path; actor: the client address).
    Api,
    /// A watermark was reset by hand.
    ResetWatermark,
}

impl AuditAction {
    /// The name stored and shown (`run`, `restore`, `delete`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::Run => "run",
            AuditAction::Restore => "restore",
            AuditAction::Delete => "delete",
            AuditAction::Verify => "verify",
            AuditAction::Drill => "drill",
            AuditAction::Cancel => "cancel",
            AuditAction::DaemonStart => "daemon-start",
            AuditAction::Api => "api",
            AuditAction::ResetWatermark => "reset-watermark",
        }
    }

    fn parse(s: &str) -> Option<AuditAction> {
        ALL.iter().copied().find(|a| a.as_str() == s)
    }
}

const ALL: [AuditAction; 9] = [
    AuditAction::Run,
    AuditAction::Restore,
    AuditAction::Delete,
    AuditAction::Verify,
    AuditAction::Drill,
    AuditAction::Cancel,
    AuditAction::DaemonStart,
    AuditAction::Api,
    AuditAction::ResetWatermark,
];

/// Who did it: the process (`packrat` command or `packratd`), the operating-system user and the
/// host, or an API client's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor(String);

impl Actor {
    /// This process run as `program` (`packrat restore`, `packratd`): `packrat restore
    /// (user root on host db1, pid 4242)`.
    pub fn process(program: &str) -> Actor {
        Actor(format!(
            "{program} (user {} on host {}, pid {})",
            process_user(),
            host(),
            std::process::id()
        ))
    }

    /// Who runs this process, as `user@host` (the same user and host as [`Actor::process`]), for
    /// messages such as `cancelled by packrat cancel by root@db1`.
    pub fn operator() -> String {
        format!("{}@{}", process_user(), host())
    }

    /// An actor described in the caller's words (`packrat cancel (user root on host db1)`).
    pub fn new(who: impl Into<String>) -> Actor {
        Actor(who.into())
    }

    /// An HTTP API client at `addr`, through the daemon.
    pub fn api_client(addr: impl std::fmt::Display) -> Actor {
        Actor(format!("api client {addr}"))
    }

    /// The actor as recorded.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// This machine's host name.
fn host() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

/// The operating-system user this process runs as. On Linux the kernel's word, not the
/// environment's (cron and service managers often set no `USER`, and anyone can set it): the
/// owner of `/proc/self`, named from `/etc/passwd`, else `uid N`. Elsewhere `USER`/`USERNAME`.
fn process_user() -> String {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::MetadataExt;
        if let Ok(uid) = std::fs::metadata("/proc/self").map(|m| m.uid()) {
            let named = std::fs::read_to_string("/etc/passwd").ok().and_then(|passwd| {
                passwd.lines().find_map(|line| {
                    let mut field = line.split(':');
                    let name = field.next()?;
                    let id = field.nth(1)?.parse::<u32>().ok()?;
                    (id == uid && !name.is_empty()).then(|| name.to_string())
                })
            });
            return named.unwrap_or_else(|| format!("uid {uid}"));
        }
    }
    std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .unwrap_or_else(|_| "?".into())
}

/// One row of the audit trail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Position in the trail (increasing).
    pub id: i64,
    /// When (UTC).
    pub at: DateTime<Utc>,
    /// Who (see [`Actor`]).
    pub actor: String,
    /// What.
    pub action: AuditAction,
    /// The plan concerned, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    /// What it was done to: a job id, a pack id, a file.
    pub subject: String,
    /// The rest, in words (never a secret).
    pub detail: String,
}

impl StateStore {
    /// Appends one entry to the audit trail.
    pub fn audit(
        &self,
        actor: &Actor,
        action: AuditAction,
        plan: Option<&str>,
        subject: &str,
        detail: &str,
    ) -> Result<()> {
        self.with_conn(|c| {
            c.execute(
                "INSERT INTO audit (at, actor, action, plan, subject, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    format_time(Utc::now()),
                    actor.as_str(),
                    action.as_str(),
                    plan,
                    subject,
                    detail
                ],
            )
        })?;
        Ok(())
    }

    /// Appends one entry, logging instead of failing: an operation that already happened must
    /// not be reported as failed because its record could not be written.
    pub fn audit_or_warn(&self, actor: &Actor, action: AuditAction, plan: Option<&str>, subject: &str, detail: &str) {
        if let Err(e) = self.audit(actor, action, plan, subject, detail) {
            tracing::warn!(
                "cannot record {} of {subject} in the audit trail: {}",
                action.as_str(),
                e.chain()
            );
        }
    }

    /// The audit trail from `since` on (everything when `None`), oldest first.
    pub fn audit_trail(&self, since: Option<DateTime<Utc>>) -> Result<Vec<AuditEntry>> {
        let since = since.map(format_time).unwrap_or_default();
        self.with_conn(|c| {
            let mut st = c.prepare(&format!("SELECT {COLUMNS} FROM audit WHERE at >= ?1 ORDER BY id"))?;
            let rows = st.query_map(params![since], entry)?;
            rows.collect()
        })
    }

    /// The newest entry of `action`, if any (a daemon compares its config hash with the last
    /// start's).
    pub fn last_audit(&self, action: AuditAction) -> Result<Option<AuditEntry>> {
        self.with_conn(|c| {
            c.query_row(
                &format!("SELECT {COLUMNS} FROM audit WHERE action = ?1 ORDER BY id DESC LIMIT 1"),
                params![action.as_str()],
                entry,
            )
            .optional()
        })
    }
}

const COLUMNS: &str = "id, at, actor, action, plan, subject, detail";

fn entry(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuditEntry> {
    let action: String = r.get(3)?;
    Ok(AuditEntry {
        id: r.get(0)?,
        at: read_time(r, 1)?,
        actor: r.get(2)?,
        action: AuditAction::parse(&action).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                3,
                rusqlite::types::Type::Text,
                format!("unknown audit action `{action}` (written by a newer packrat?)").into(),
            )
        })?,
        plan: r.get(4)?,
        subject: r.get(5)?,
        detail: r.get(6)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::tests::store;

    #[test]
    fn entries_come_back_in_order_and_filtered_by_time() {
        let (_d, s) = store();
        let me = Actor::process("packrat test");
        assert!(me.as_str().starts_with("packrat test (user "), "{me:?}");
        s.audit(&me, AuditAction::Run, Some("nightly"), "job 1", "full, manual")
            .unwrap();
        let mid = Utc::now();
        s.audit(
            &Actor::api_client("10.0.0.7:5123"),
            AuditAction::Cancel,
            None,
            "job 1",
            "",
        )
        .unwrap();
        let all = s.audit_trail(None).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(
            (all[0].action, all[0].plan.as_deref()),
            (AuditAction::Run, Some("nightly"))
        );
        assert_eq!(all[1].actor, "api client 10.0.0.7:5123");
        assert!(all[0].id < all[1].id);
        let later = s.audit_trail(Some(mid)).unwrap();
        assert_eq!(later.len(), 1);
        assert_eq!(later[0].action, AuditAction::Cancel);
        assert_eq!(s.last_audit(AuditAction::Run).unwrap().unwrap().subject, "job 1");
        assert!(s.last_audit(AuditAction::DaemonStart).unwrap().is_none());
        let json = serde_json::to_value(&all[1]).unwrap();
        assert_eq!(json["action"], "cancel");
    }

    #[test]
    fn the_database_refuses_to_change_or_delete_an_entry() {
        let (_d, s) = store();
        let me = Actor::process("packrat test");
        s.audit(&me, AuditAction::Delete, Some("p"), "pack_1", "keep_last")
            .unwrap();
        for sql in ["UPDATE audit SET detail = 'nothing happened'", "DELETE FROM audit"] {
            let e = s.with_conn(|c| c.execute(sql, [])).unwrap_err().to_string();
            assert!(e.contains("append-only"), "{sql}: {e}");
        }
        assert_eq!(s.audit_trail(None).unwrap()[0].detail, "keep_last");
        for a in ALL {
            assert_eq!(AuditAction::parse(a.as_str()), Some(a));
            assert_eq!(serde_json::to_value(a).unwrap(), a.as_str());
        }
    }
}
