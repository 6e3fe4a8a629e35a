//! Watermarks: per (plan, source, key) the upper time bound already backed up (see
//! [`Watermark`]). They are advanced atomically, in one transaction, after a pack is safely in
//! place; the next incremental run of the source starts from them.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, TransactionBehavior, params};
use serde::{Deserialize, Serialize};

use super::{StateStore, format_time, read_time};
use crate::error::Result;
use crate::job::JobId;

/// The upper time bound already backed up for one (plan, source, key); `key` names the
/// collection within the source, e.g. `db.collection`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Watermark {
    /// Plan name.
    pub plan: String,
    /// Source name within the plan.
    pub source: String,
    /// Collection within the source (`db.collection`, a table, …).
    pub key: String,
    /// Everything up to this instant is in a pack.
    pub value: DateTime<Utc>,
    /// The job that advanced it last.
    pub job: Option<JobId>,
    /// When it was advanced last.
    pub updated_at: DateTime<Utc>,
}

impl StateStore {
    /// The watermark of (`plan`, `source`, `key`), if one was recorded.
    pub fn watermark(&self, plan: &str, source: &str, key: &str) -> Result<Option<DateTime<Utc>>> {
        let conn = self.conn();
        conn.query_row(
            "SELECT value FROM watermarks WHERE plan = ?1 AND source = ?2 AND key = ?3",
            [plan, source, key],
            |row| read_time(row, 0),
        )
        .optional()
        .map_err(|e| self.err(e))
    }

    /// Sets several watermarks atomically (one transaction) to their `value`, recording `job` as
    /// the job that advanced them and now as `updated_at` (the `job` and `updated_at` fields of
    /// `marks` are ignored). Either all of them are stored or none is.
    pub fn set_watermarks(&self, job: JobId, marks: &[Watermark]) -> Result<()> {
        self.write_watermarks(job, marks, false)
    }

    /// Like [`StateStore::set_watermarks`], but only moves a watermark forward: a mark older than
    /// the stored one is ignored (recovery replaying a pack's manifest after a later job ran).
    pub fn advance_watermarks(&self, job: JobId, marks: &[Watermark]) -> Result<()> {
        self.write_watermarks(job, marks, true)
    }

    fn write_watermarks(&self, job: JobId, marks: &[Watermark], forward_only: bool) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.err(e))?;
        let now = format_time(Utc::now());
        let sql = format!(
            "INSERT INTO watermarks (plan, source, key, value, job, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (plan, source, key) DO UPDATE SET
                value = excluded.value, job = excluded.job,
                updated_at = excluded.updated_at{}",
            if forward_only {
                " WHERE excluded.value > watermarks.value"
            } else {
                ""
            }
        );
        {
            let mut stmt = tx.prepare(&sql).map_err(|e| self.err(e))?;
            for m in marks {
                let forward = !forward_only
                    || tx
                        .query_row(
                            "SELECT value FROM watermarks WHERE plan = ?1 AND source = ?2 AND key = ?3",
                            params![m.plan, m.source, m.key],
                            |r| read_time(r, 0),
                        )
                        .optional()
                        .map_err(|e| self.err(e))?
                        .is_none_or(|old| m.value > old);
                if forward {
                    super::control::record_window(&tx, &m.plan, &m.source, &m.key, m.value, &now)
                        .map_err(|e| self.err(e))?;
                }
                stmt.execute(params![m.plan, m.source, m.key, format_time(m.value), job, now])
                    .map_err(|e| self.err(e))?;
            }
        }
        tx.commit().map_err(|e| self.err(e))?;
        Ok(())
    }

    /// All watermarks of `plan`, ordered by source and key.
    pub fn watermarks(&self, plan: &str) -> Result<Vec<Watermark>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT plan, source, key, value, job, updated_at FROM watermarks
                 WHERE plan = ?1 ORDER BY source, key",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([plan], |row| {
                Ok(Watermark {
                    plan: row.get(0)?,
                    source: row.get(1)?,
                    key: row.get(2)?,
                    value: read_time(row, 3)?,
                    job: row.get(4)?,
                    updated_at: read_time(row, 5)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::error::Error;
    use crate::state::tests::store;

    #[test]
    fn watermarks_atomic_update() {
        let (_dir, store) = store();
        let t1 = Utc.with_ymd_and_hms(2026, 11, 21, 4, 0, 0).unwrap();
        let t2 = Utc.with_ymd_and_hms(2026, 11, 22, 4, 0, 0).unwrap();
        let mark = |source: &str, key: &str, value| Watermark {
            plan: "nightly".into(),
            source: source.into(),
            key: key.into(),
            value,
            job: None,
            updated_at: value,
        };
        assert!(store.watermark("nightly", "mongo", "db.a").unwrap().is_none());
        store
            .set_watermarks(7, &[mark("mongo", "db.b", t1), mark("mongo", "db.a", t1)])
            .unwrap();
        assert_eq!(store.watermark("nightly", "mongo", "db.a").unwrap(), Some(t1));
        let all = store.watermarks("nightly").unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].key, "db.a");
        assert_eq!(all[0].job, Some(7));
        assert!(store.watermarks("other").unwrap().is_empty());

        // A batch that fails half-way stores nothing: hide the table behind a trigger that
        // rejects one key.
        store
            .conn()
            .execute_batch(
                "CREATE TRIGGER reject BEFORE UPDATE ON watermarks WHEN NEW.key = 'db.b'
                 BEGIN SELECT RAISE(ABORT, 'rejected'); END;",
            )
            .unwrap();
        let err = store
            .set_watermarks(8, &[mark("mongo", "db.a", t2), mark("mongo", "db.b", t2)])
            .unwrap_err();
        assert!(matches!(err, Error::State { .. }), "{err}");
        assert_eq!(store.watermark("nightly", "mongo", "db.a").unwrap(), Some(t1));
        assert_eq!(store.watermark("nightly", "mongo", "db.b").unwrap(), Some(t1));
        store.conn().execute_batch("DROP TRIGGER reject;").unwrap();

        store
            .set_watermarks(8, &[mark("mongo", "db.a", t2), mark("mongo", "db.b", t2)])
            .unwrap();
        let all = store.watermarks("nightly").unwrap();
        assert!(all.iter().all(|w| w.value == t2 && w.job == Some(8)));
    }
}
