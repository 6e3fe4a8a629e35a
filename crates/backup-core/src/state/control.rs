//! Operator controls kept in the state store (schema version 3):
//!
//! - cancel requests (`cancel_requests`): `packrat cancel JOB` or the API records who asks to
//!   cancel a queued or running job; the process running the job polls for it
//!   ([`StateStore::cancel_request`]) and cancels the job's token, so a cancel works across
//!   processes (a `packrat run` in another terminal, the daemon);
//! - watermark resets (`watermark_resets`): the audit of [`StateStore::reset_watermark`] (who,
//!   when, old → new);
//! - health per collection (`collection_health`): per (plan, source, key) the failures (total
//!   and in a row, the last error) and the last backed-up window `(from, to]`, updated when a
//!   job's watermarks are advanced and when a source reports a collection that failed.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, TransactionBehavior, params};
use serde::{Deserialize, Serialize};

use super::{StateStore, format_time, read_opt_time, read_time, read_u64};
use crate::error::{Error, Result};
use crate::job::{Job, JobId};

/// A recorded request to cancel a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CancelRequest {
    /// The job.
    pub job: JobId,
    /// Who asked (`packrat cancel by alice@host`, `API client 127.0.0.1:5123`).
    pub requested_by: String,
    /// When.
    pub requested_at: DateTime<Utc>,
}

/// One audited watermark reset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WatermarkReset {
    /// Plan name.
    pub plan: String,
    /// Source name.
    pub source: String,
    /// Collection key.
    pub key: String,
    /// The value before (none: there was no watermark).
    pub old_value: Option<DateTime<Utc>>,
    /// The value after (none: cleared, the next incremental run starts from the beginning).
    pub new_value: Option<DateTime<Utc>>,
    /// Who reset it.
    pub reset_by: String,
    /// When.
    pub reset_at: DateTime<Utc>,
}

/// Health of one collection (plan, source, key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CollectionHealth {
    /// Plan name.
    pub plan: String,
    /// Source name.
    pub source: String,
    /// Collection key (`db.collection`).
    pub key: String,
    /// Failures ever recorded.
    pub failures_total: u64,
    /// Failures since the last success.
    pub consecutive_failures: u64,
    /// The last failure's error (empty when none).
    pub last_error: String,
    /// When it failed last.
    pub last_failure_at: Option<DateTime<Utc>>,
    /// When a pack holding it was last in place.
    pub last_success_at: Option<DateTime<Utc>>,
    /// The last backed-up window: from (exclusive; none for the first run) …
    pub window_from: Option<DateTime<Utc>>,
    /// … to (inclusive upper bound; the watermark after that run).
    pub window_to: Option<DateTime<Utc>>,
}

/// What a cancel request found.
#[derive(Debug, Clone, PartialEq)]
pub enum CancelOutcome {
    /// The request was recorded; the job's process stops it (the job as it was).
    Requested(Job),
    /// The job already finished (the job).
    Finished(Job),
    /// No such job.
    Unknown,
}

impl StateStore {
    /// Records a request by `who` to cancel job `id` if it is queued or running (a second
    /// request keeps the first asker). A finished or unknown job is reported, not an error.
    pub fn request_cancel(&self, id: JobId, who: &str) -> Result<CancelOutcome> {
        let Some(job) = self.job(id)? else {
            return Ok(CancelOutcome::Unknown);
        };
        if job.status.is_finished() {
            return Ok(CancelOutcome::Finished(job));
        }
        let conn = self.conn();
        conn.execute(
            "INSERT INTO cancel_requests (job, requested_by, requested_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (job) DO NOTHING",
            params![id, who, format_time(Utc::now())],
        )
        .map_err(|e| self.err(e))?;
        drop(conn);
        tracing::info!(job = id, by = who, "cancel requested");
        self.audit_or_warn(
            &super::Actor::new(who),
            super::AuditAction::Cancel,
            Some(&job.plan),
            &format!("job {id}"),
            &format!("cancel requested while {}", job.status.as_str()),
        );
        Ok(CancelOutcome::Requested(job))
    }

    /// The cancel request recorded for job `id`, if any.
    pub fn cancel_request(&self, id: JobId) -> Result<Option<CancelRequest>> {
        let conn = self.conn();
        conn.query_row(
            "SELECT job, requested_by, requested_at FROM cancel_requests WHERE job = ?1",
            [id],
            |r| {
                Ok(CancelRequest {
                    job: r.get(0)?,
                    requested_by: r.get(1)?,
                    requested_at: read_time(r, 2)?,
                })
            },
        )
        .optional()
        .map_err(|e| self.err(e))
    }

    /// Sets (`to = Some`) or clears (`None`) the watermark of (`plan`, `source`, `key`) by hand,
    /// recording the reset (who, when, old → new) in one transaction. Returns the audit record.
    pub fn reset_watermark(
        &self,
        plan: &str,
        source: &str,
        key: &str,
        to: Option<DateTime<Utc>>,
        who: &str,
    ) -> Result<WatermarkReset> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.err(e))?;
        let old: Option<DateTime<Utc>> = tx
            .query_row(
                "SELECT value FROM watermarks WHERE plan = ?1 AND source = ?2 AND key = ?3",
                [plan, source, key],
                |r| read_time(r, 0),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        let now = Utc::now();
        match to {
            Some(v) => tx
                .execute(
                    "INSERT INTO watermarks (plan, source, key, value, job, updated_at)
                     VALUES (?1, ?2, ?3, ?4, NULL, ?5)
                     ON CONFLICT (plan, source, key) DO UPDATE SET
                        value = excluded.value, job = NULL, updated_at = excluded.updated_at",
                    params![plan, source, key, format_time(v), format_time(now)],
                )
                .map_err(|e| self.err(e))?,
            None => tx
                .execute(
                    "DELETE FROM watermarks WHERE plan = ?1 AND source = ?2 AND key = ?3",
                    [plan, source, key],
                )
                .map_err(|e| self.err(e))?,
        };
        tx.execute(
            "INSERT INTO watermark_resets (plan, source, key, old_value, new_value, reset_by, reset_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                plan,
                source,
                key,
                old.map(format_time),
                to.map(format_time),
                who,
                format_time(now)
            ],
        )
        .map_err(|e| self.err(e))?;
        let show = |t: Option<DateTime<Utc>>| t.map_or_else(|| "none".to_string(), format_time);
        tx.execute(
            "INSERT INTO audit (at, actor, action, plan, subject, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                format_time(now),
                who,
                super::AuditAction::ResetWatermark.as_str(),
                plan,
                format!("{source} {key}"),
                format!("{} -> {}", show(old), show(to))
            ],
        )
        .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        tracing::warn!(plan, source, key, old = ?old, new = ?to, by = who, "watermark reset by hand");
        Ok(WatermarkReset {
            plan: plan.into(),
            source: source.into(),
            key: key.into(),
            old_value: old,
            new_value: to,
            reset_by: who.into(),
            reset_at: now,
        })
    }

    /// The audited watermark resets of `plan` (every plan when `None`), oldest first.
    pub fn watermark_resets(&self, plan: Option<&str>) -> Result<Vec<WatermarkReset>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT plan, source, key, old_value, new_value, reset_by, reset_at FROM watermark_resets
                 WHERE ?1 IS NULL OR plan = ?1 ORDER BY id",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([plan], |r| {
                Ok(WatermarkReset {
                    plan: r.get(0)?,
                    source: r.get(1)?,
                    key: r.get(2)?,
                    old_value: read_opt_time(r, 3)?,
                    new_value: read_opt_time(r, 4)?,
                    reset_by: r.get(5)?,
                    reset_at: read_time(r, 6)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(|e| self.err(e))
    }

    /// Records that collection `key` of (`plan`, `source`) failed with `error`.
    pub fn record_collection_failure(&self, plan: &str, source: &str, key: &str, error: &str) -> Result<()> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO collection_health (plan, source, key, failures_total, consecutive_failures,
                 last_error, last_failure_at)
             VALUES (?1, ?2, ?3, 1, 1, ?4, ?5)
             ON CONFLICT (plan, source, key) DO UPDATE SET
                failures_total = failures_total + 1,
                consecutive_failures = consecutive_failures + 1,
                last_error = excluded.last_error, last_failure_at = excluded.last_failure_at",
            params![plan, source, key, error, format_time(Utc::now())],
        )
        .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Health of every collection of `plan` (every plan when `None`) that has a watermark or a
    /// health record, ordered by plan, source and key.
    pub fn collection_health(&self, plan: Option<&str>) -> Result<Vec<CollectionHealth>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT k.plan, k.source, k.key,
                        COALESCE(h.failures_total, 0), COALESCE(h.consecutive_failures, 0),
                        COALESCE(h.last_error, ''), h.last_failure_at,
                        COALESCE(h.last_success_at, w.updated_at), h.window_from,
                        COALESCE(w.value, h.window_to)
                 FROM (SELECT plan, source, key FROM watermarks
                       UNION SELECT plan, source, key FROM collection_health) k
                 LEFT JOIN collection_health h
                        ON h.plan = k.plan AND h.source = k.source AND h.key = k.key
                 LEFT JOIN watermarks w
                        ON w.plan = k.plan AND w.source = k.source AND w.key = k.key
                 WHERE ?1 IS NULL OR k.plan = ?1
                 ORDER BY k.plan, k.source, k.key",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([plan], |r| {
                Ok(CollectionHealth {
                    plan: r.get(0)?,
                    source: r.get(1)?,
                    key: r.get(2)?,
                    failures_total: read_u64(r, 3)?,
                    consecutive_failures: read_u64(r, 4)?,
                    last_error: r.get(5)?,
                    last_failure_at: read_opt_time(r, 6)?,
                    last_success_at: read_opt_time(r, 7)?,
                    window_from: read_opt_time(r, 8)?,
                    window_to: read_opt_time(r, 9)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(|e| self.err(e))
    }
}

/// Inside the watermark transaction: the collection's success with its window `(old, new]`.
pub(super) fn record_window(
    tx: &rusqlite::Transaction<'_>,
    plan: &str,
    source: &str,
    key: &str,
    new: DateTime<Utc>,
    now: &str,
) -> rusqlite::Result<()> {
    let old: Option<String> = tx
        .query_row(
            "SELECT value FROM watermarks WHERE plan = ?1 AND source = ?2 AND key = ?3",
            [plan, source, key],
            |r| r.get(0),
        )
        .optional()?;
    tx.execute(
        "INSERT INTO collection_health (plan, source, key, last_success_at, window_from, window_to)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (plan, source, key) DO UPDATE SET
            consecutive_failures = 0, last_success_at = excluded.last_success_at,
            window_from = excluded.window_from, window_to = excluded.window_to",
        params![plan, source, key, now, old, format_time(new)],
    )?;
    Ok(())
}

/// A watermark time given by an operator: RFC 3339 with offset, or a naive local
/// `YYYY-MM-DD[ HH:MM[:SS]]` in `zone`.
pub fn parse_operator_time(s: &str, zone: chrono_tz::Tz) -> Result<DateTime<Utc>> {
    use chrono::{NaiveDate, NaiveDateTime, TimeZone};
    if let Ok(t) = DateTime::parse_from_rfc3339(s.trim()) {
        return Ok(t.with_timezone(&Utc));
    }
    let s = s.trim();
    let naive = ["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
        .or_else(|| {
            NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
        })
        .ok_or_else(|| {
            Error::Config(format!(
                "`{s}` is not a time: give RFC 3339 (2026-11-21T04:00:00+08:00) or `YYYY-MM-DD HH:MM` in the time zone {zone}"
            ))
        })?;
    zone.from_local_datetime(&naive)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| Error::Config(format!("`{s}` does not exist in zone {zone} (a daylight-saving gap)")))
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::job::{BackupKind, JobOutcome, JobStatus, Trigger};
    use crate::state::Watermark;
    use crate::state::tests::store;

    #[test]
    fn cancel_requests_record_the_first_asker() {
        let (_dir, store) = store();
        let (job, _lock) = store.create_job("p", BackupKind::Full, Trigger::Manual).unwrap();
        assert_eq!(store.cancel_request(job.id).unwrap(), None);
        assert!(matches!(
            store.request_cancel(job.id, "packrat cancel by a@h").unwrap(),
            CancelOutcome::Requested(_)
        ));
        store.request_cancel(job.id, "later").unwrap();
        assert_eq!(
            store.cancel_request(job.id).unwrap().unwrap().requested_by,
            "packrat cancel by a@h"
        );
        assert_eq!(store.request_cancel(999, "x").unwrap(), CancelOutcome::Unknown);
        store.complete_job(job.id, &JobOutcome::default()).unwrap();
        match store.request_cancel(job.id, "x").unwrap() {
            CancelOutcome::Finished(j) => assert_eq!(j.status, JobStatus::Completed),
            other => panic!("{other:?}"),
        }
        // Both requests are in the audit trail (the unknown and the finished job's are not:
        // nothing was requested).
        let trail = store.audit_trail(None).unwrap();
        let cancels: Vec<_> = trail
            .iter()
            .filter(|e| e.action == crate::state::AuditAction::Cancel)
            .collect();
        assert_eq!(cancels.len(), 2, "{trail:?}");
        assert_eq!(cancels[0].actor, "packrat cancel by a@h");
        assert_eq!(cancels[0].subject, format!("job {}", job.id));
        assert_eq!(cancels[0].plan.as_deref(), Some("p"));
        assert_eq!(cancels[0].detail, "cancel requested while queued");
    }

    #[test]
    fn watermark_reset_is_audited_and_health_tracks_windows() {
        let (_dir, store) = store();
        let t1 = Utc.with_ymd_and_hms(2026, 11, 21, 4, 0, 0).unwrap();
        let t2 = Utc.with_ymd_and_hms(2026, 11, 22, 4, 0, 0).unwrap();
        let mark = |v| Watermark {
            plan: "p".into(),
            source: "mongo".into(),
            key: "db.a".into(),
            value: v,
            job: None,
            updated_at: v,
        };
        store.set_watermarks(1, &[mark(t1)]).unwrap();
        store.record_collection_failure("p", "mongo", "db.a", "boom").unwrap();
        store
            .record_collection_failure("p", "mongo", "db.a", "boom again")
            .unwrap();
        let h = &store.collection_health(Some("p")).unwrap()[0];
        assert_eq!((h.failures_total, h.consecutive_failures), (2, 2));
        assert_eq!(h.last_error, "boom again");
        assert_eq!((h.window_from, h.window_to), (None, Some(t1)));
        store.set_watermarks(2, &[mark(t2)]).unwrap();
        let h = &store.collection_health(None).unwrap()[0];
        assert_eq!((h.failures_total, h.consecutive_failures), (2, 0));
        assert_eq!((h.window_from, h.window_to), (Some(t1), Some(t2)));

        let r = store
            .reset_watermark("p", "mongo", "db.a", Some(t1), "alice@host")
            .unwrap();
        assert_eq!((r.old_value, r.new_value), (Some(t2), Some(t1)));
        assert_eq!(store.watermark("p", "mongo", "db.a").unwrap(), Some(t1));
        store.reset_watermark("p", "mongo", "db.a", None, "bob@host").unwrap();
        assert_eq!(store.watermark("p", "mongo", "db.a").unwrap(), None);
        let audit = store.watermark_resets(Some("p")).unwrap();
        assert_eq!(audit.len(), 2);
        assert_eq!(audit[1].reset_by, "bob@host");
        assert_eq!((audit[1].old_value, audit[1].new_value), (Some(t1), None));
        assert!(store.watermark_resets(Some("other")).unwrap().is_empty());
        let trail = store.audit_trail(None).unwrap();
        assert_eq!(trail.len(), 2);
        assert_eq!(trail[1].action, crate::state::AuditAction::ResetWatermark);
        assert_eq!(
            (trail[1].actor.as_str(), trail[1].subject.as_str()),
            ("bob@host", "mongo db.a")
        );
        assert!(trail[1].detail.ends_with(" -> none"), "{}", trail[1].detail);
    }

    #[test]
    fn operator_times_in_the_plan_zone() {
        let sh: chrono_tz::Tz = "Asia/Shanghai".parse().unwrap();
        let want = Utc.with_ymd_and_hms(2026, 11, 20, 16, 0, 0).unwrap();
        assert_eq!(parse_operator_time("2026-11-21", sh).unwrap(), want);
        assert_eq!(parse_operator_time("2026-11-21 00:00", sh).unwrap(), want);
        assert_eq!(parse_operator_time("2026-11-21T00:00:00+08:00", sh).unwrap(), want);
        assert!(parse_operator_time("yesterday", sh).is_err());
    }
}
