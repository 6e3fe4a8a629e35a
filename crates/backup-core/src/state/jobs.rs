//! Jobs: one row per execution of a plan, from `queued` through `running` to `completed`,
//! `failed`, `cancelled` or `interrupted` (see [`Job`]), and the lock file each queued or running
//! job holds (see [`JobLock`]).
//!
//! Every job that is queued or running holds an exclusive lock on its lock file
//! `<state_dir>/locks/job-<id>.lock`. A queued or running job whose lock file is missing or not
//! locked belongs to a process that is gone: [`StateStore::recover_interrupted`] marks it
//! `interrupted`.

use std::path::{Path, PathBuf};

use chrono::Utc;
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};

use super::{LOCKS_DIR, StateStore, format_time, read_opt_time, read_parsed, read_time, read_u64, to_i64, to_u64};
use crate::error::{Error, Result};
use crate::job::{BackupKind, Job, JobId, JobOutcome, JobStats, JobStatus, ReplicationStatus, Trigger};
use crate::lock::{FileLock, Probe};

/// The columns of `jobs`, in the order [`job_from_row`] reads them.
const JOB_COLUMNS: &str = "id, plan, kind, trigger, status, progress, message, detail, output_dir, \
     pack_id, replication, bytes, artifacts, records, pid, created_at, started_at, finished_at";

/// The exclusive lock of a queued or running job, on `<state_dir>/locks/job-<id>.lock`.
///
/// While it is alive, [`StateStore::recover_interrupted`] (in any process) leaves the job alone.
/// Dropping it unlocks and removes the lock file (errors are ignored); drop it only after the job
/// has been completed or failed.
#[derive(Debug)]
pub struct JobLock {
    lock: Option<FileLock>,
    job: JobId,
}

impl JobLock {
    /// The lock file.
    pub fn path(&self) -> &Path {
        self.lock.as_ref().map_or(Path::new(""), FileLock::path)
    }

    /// The job this lock belongs to.
    pub fn job_id(&self) -> JobId {
        self.job
    }
}

impl Drop for JobLock {
    fn drop(&mut self) {
        // Removed while still held, so that nobody can lock the old file in between.
        if let Some(lock) = self.lock.take() {
            lock.release_and_remove();
        }
    }
}

/// Which jobs [`StateStore::jobs`] returns.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    /// Only jobs of this plan.
    pub plan: Option<String>,
    /// Only jobs in this status.
    pub status: Option<JobStatus>,
    /// At most this many (the newest).
    pub limit: Option<usize>,
}

impl StateStore {
    /// Creates a job of `plan` in status `queued` and takes its lock file
    /// `<state_dir>/locks/job-<id>.lock` (exclusive; the file holds this process's pid).
    ///
    /// The lock is taken before the job becomes visible to other connections, so crash recovery
    /// in another process can never mistake the new job for an orphan. It lives as long as the
    /// returned [`JobLock`].
    pub fn create_job(&self, plan: &str, kind: BackupKind, trigger: Trigger) -> Result<(Job, JobLock)> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.err(e))?;
        tx.execute(
            "INSERT INTO jobs (plan, kind, trigger, status, progress, message, detail, replication, created_at)
             VALUES (?1, ?2, ?3, ?4, 0, 'queued', '', ?5, ?6)",
            params![
                plan,
                kind.as_str(),
                trigger.as_str(),
                JobStatus::Queued.as_str(),
                ReplicationStatus::None.as_str(),
                format_time(Utc::now()),
            ],
        )
        .map_err(|e| self.err(e))?;
        let id = tx.last_insert_rowid();
        let lock = self.take_job_lock(id)?;
        let job = query_job(&tx, id)
            .map_err(|e| self.err(e))?
            .ok_or_else(|| Error::NotFound(format!("job {id} vanished while being created")))?;
        // On failure the transaction rolls back and `lock` removes its file when dropped.
        tx.commit().map_err(|e| self.err(e))?;
        tracing::debug!(job = id, plan, kind = %kind, "job queued");
        Ok((job, lock))
    }

    /// Marks a queued job `running`, with `started_at = now` and `pid` = this process.
    pub fn start_job(&self, id: JobId) -> Result<()> {
        let conn = self.conn();
        let n = conn
            .execute(
                "UPDATE jobs SET status = 'running', started_at = ?2, pid = ?3, message = 'running'
                 WHERE id = ?1 AND status = 'queued'",
                params![id, format_time(Utc::now()), i64::from(std::process::id())],
            )
            .map_err(|e| self.err(e))?;
        if n == 0 {
            return Err(self.transition_error(&conn, id, "start"));
        }
        Ok(())
    }

    /// Records the progress (clamped to 100 %) and current stage of a job.
    pub fn set_progress(&self, id: JobId, progress: u8, message: &str) -> Result<()> {
        let conn = self.conn();
        let n = conn
            .execute(
                "UPDATE jobs SET progress = ?2, message = ?3 WHERE id = ?1",
                params![id, progress.min(100), message],
            )
            .map_err(|e| self.err(e))?;
        if n == 0 {
            return Err(not_found(id));
        }
        Ok(())
    }

    /// Records the pack id chosen for a job.
    pub fn set_pack_id(&self, id: JobId, pack_id: &str) -> Result<()> {
        let conn = self.conn();
        let n = conn
            .execute("UPDATE jobs SET pack_id = ?2 WHERE id = ?1", params![id, pack_id])
            .map_err(|e| self.err(e))?;
        if n == 0 {
            return Err(not_found(id));
        }
        Ok(())
    }

    /// Marks a queued or running job `completed`: progress 100, `finished_at = now`, and the
    /// figures of `outcome` (an empty message becomes `backup completed`).
    ///
    /// A job that already finished is not changed; that is an error.
    pub fn complete_job(&self, id: JobId, outcome: &JobOutcome) -> Result<()> {
        let message = if outcome.message.is_empty() {
            "backup completed"
        } else {
            outcome.message.as_str()
        };
        let conn = self.conn();
        let n = conn
            .execute(
                "UPDATE jobs SET status = 'completed', progress = 100, message = ?2, detail = ?3,
                    output_dir = ?4, pack_id = ?5, replication = ?6, bytes = ?7, artifacts = ?8,
                    records = ?9, finished_at = ?10
                 WHERE id = ?1 AND status IN ('queued', 'running')",
                params![
                    id,
                    message,
                    outcome.detail,
                    outcome.output_dir,
                    outcome.pack_id,
                    outcome.replication.as_str(),
                    to_i64(outcome.bytes),
                    to_i64(outcome.artifacts),
                    to_i64(outcome.records),
                    format_time(Utc::now()),
                ],
            )
            .map_err(|e| self.err(e))?;
        if n == 0 {
            return Err(self.transition_error(&conn, id, "complete"));
        }
        tracing::debug!(job = id, "job completed");
        Ok(())
    }

    /// Marks a queued or running job `failed` with `message` (summary) and `detail` (the reason
    /// for operators), `finished_at = now`.
    ///
    /// A job that already finished is not changed; that is an error.
    pub fn fail_job(&self, id: JobId, message: &str, detail: &str) -> Result<()> {
        let conn = self.conn();
        let n = conn
            .execute(
                "UPDATE jobs SET status = 'failed', message = ?2, detail = ?3, finished_at = ?4
                 WHERE id = ?1 AND status IN ('queued', 'running')",
                params![id, message, detail, format_time(Utc::now())],
            )
            .map_err(|e| self.err(e))?;
        if n == 0 {
            return Err(self.transition_error(&conn, id, "fail"));
        }
        tracing::debug!(job = id, "job failed");
        Ok(())
    }

    /// Marks a queued or running job `cancelled` with `detail` (who or what cancelled it, and
    /// where it was), `finished_at = now`.
    ///
    /// A job that already finished is not changed; that is an error.
    pub fn cancel_job(&self, id: JobId, detail: &str) -> Result<()> {
        let conn = self.conn();
        let n = conn
            .execute(
                "UPDATE jobs SET status = 'cancelled', message = 'cancelled', detail = ?2, finished_at = ?3
                 WHERE id = ?1 AND status IN ('queued', 'running')",
                params![id, detail, format_time(Utc::now())],
            )
            .map_err(|e| self.err(e))?;
        if n == 0 {
            return Err(self.transition_error(&conn, id, "cancel"));
        }
        tracing::debug!(job = id, "job cancelled");
        Ok(())
    }

    /// Records an `interrupted` job as `completed` after recovery found its pack in place (the
    /// process died after storing it): the figures of `outcome`, `finished_at` unchanged.
    pub fn reconcile_completed(&self, id: JobId, outcome: &JobOutcome) -> Result<()> {
        let conn = self.conn();
        let n = conn
            .execute(
                "UPDATE jobs SET status = 'completed', progress = 100, message = ?2, detail = ?3,
                    output_dir = ?4, pack_id = ?5, replication = ?6, bytes = ?7, artifacts = ?8,
                    records = ?9
                 WHERE id = ?1 AND status = 'interrupted'",
                params![
                    id,
                    outcome.message,
                    outcome.detail,
                    outcome.output_dir,
                    outcome.pack_id,
                    outcome.replication.as_str(),
                    to_i64(outcome.bytes),
                    to_i64(outcome.artifacts),
                    to_i64(outcome.records),
                ],
            )
            .map_err(|e| self.err(e))?;
        if n == 0 {
            return Err(self.transition_error(&conn, id, "reconcile"));
        }
        tracing::debug!(job = id, "interrupted job reconciled as completed");
        Ok(())
    }

    /// Records the replication status of a job; `message` and `detail` replace the job's when
    /// given and are left as they are when `None`.
    pub fn set_replication(
        &self,
        id: JobId,
        status: ReplicationStatus,
        message: Option<&str>,
        detail: Option<&str>,
    ) -> Result<()> {
        let conn = self.conn();
        let n = conn
            .execute(
                "UPDATE jobs SET replication = ?2, message = COALESCE(?3, message),
                    detail = COALESCE(?4, detail)
                 WHERE id = ?1",
                params![id, status.as_str(), message, detail],
            )
            .map_err(|e| self.err(e))?;
        if n == 0 {
            return Err(not_found(id));
        }
        Ok(())
    }

    /// Crash recovery: marks `interrupted` every queued or running job whose lock file is not
    /// held by a live process (the file is missing, or it can be locked), with
    /// `finished_at = now` and a detail naming the lost process. Jobs whose lock is held are left
    /// alone. Returns the jobs it marked.
    ///
    /// Also removes leftover lock files of finished jobs that nobody holds.
    pub fn recover_interrupted(&self) -> Result<Vec<Job>> {
        let active = self.active_jobs()?;
        let mut marked = Vec::new();
        for job in active {
            let lock_path = self.lock_path(job.id);
            let (free_lock, file_pid) = match FileLock::probe(&lock_path) {
                Ok(Probe::Held(_)) => continue,
                Err(e) => {
                    tracing::warn!(job = job.id, lock = %lock_path.display(), error = %e,
                        "cannot tell whether the process running this job is alive; leaving it alone");
                    continue;
                }
                Ok(Probe::Missing) => (None, None),
                Ok(Probe::Free(lock)) => {
                    let pid = lock.recorded_pid();
                    (Some(lock), pid)
                }
            };
            let pid = job.pid.or(file_pid);
            let detail = match pid {
                Some(pid) => i18n::tr!("job-interrupted-detail-pid", pid = pid),
                None => i18n::tr!("job-interrupted-detail"),
            };
            let updated = {
                let conn = self.conn();
                // Conditional: the owner may have finished the job since we listed it.
                let n = conn
                    .execute(
                        "UPDATE jobs SET status = 'interrupted', message = ?4,
                            detail = ?2, finished_at = ?3
                         WHERE id = ?1 AND status IN ('queued', 'running')",
                        params![job.id, detail, format_time(Utc::now()), i18n::tr!("job-interrupted")],
                    )
                    .map_err(|e| self.err(e))?;
                if n == 1 {
                    query_job(&conn, job.id).map_err(|e| self.err(e))?
                } else {
                    None
                }
            };
            if let Some(lock) = free_lock {
                lock.release_and_remove();
            }
            if let Some(job) = updated {
                tracing::warn!(job = job.id, plan = %job.plan, pid = ?pid, "job marked interrupted");
                marked.push(job);
            }
        }
        self.remove_stale_locks()?;
        Ok(marked)
    }

    /// The job with this id, if any.
    pub fn job(&self, id: JobId) -> Result<Option<Job>> {
        let conn = self.conn();
        query_job(&conn, id).map_err(|e| self.err(e))
    }

    /// Jobs matching `filter`, newest first (by id, descending).
    pub fn jobs(&self, filter: &JobFilter) -> Result<Vec<Job>> {
        let mut sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE 1 = 1");
        let mut args: Vec<Box<dyn rusqlite::ToSql>> = Vec::new();
        if let Some(plan) = &filter.plan {
            args.push(Box::new(plan.clone()));
            sql.push_str(&format!(" AND plan = ?{}", args.len()));
        }
        if let Some(status) = filter.status {
            args.push(Box::new(status.as_str()));
            sql.push_str(&format!(" AND status = ?{}", args.len()));
        }
        sql.push_str(" ORDER BY id DESC");
        if let Some(limit) = filter.limit {
            args.push(Box::new(i64::try_from(limit).unwrap_or(i64::MAX)));
            sql.push_str(&format!(" LIMIT ?{}", args.len()));
        }
        self.query_jobs(&sql, rusqlite::params_from_iter(args.iter()))
    }

    /// Jobs that are queued or running, newest first.
    pub fn active_jobs(&self) -> Result<Vec<Job>> {
        self.query_jobs(
            &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE status IN ('queued', 'running') ORDER BY id DESC"),
            [],
        )
    }

    /// The newest job of each plan, ordered by plan name.
    pub fn last_job_per_plan(&self) -> Result<Vec<Job>> {
        self.query_jobs(
            &format!(
                "SELECT {JOB_COLUMNS} FROM jobs
                 WHERE id IN (SELECT MAX(id) FROM jobs GROUP BY plan)
                 ORDER BY plan"
            ),
            [],
        )
    }

    /// The newest completed job of `plan`, if any.
    pub fn last_success(&self, plan: &str) -> Result<Option<Job>> {
        let jobs = self.query_jobs(
            &format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE plan = ?1 AND status = 'completed'
                 ORDER BY id DESC LIMIT 1"
            ),
            [plan],
        )?;
        Ok(jobs.into_iter().next())
    }

    /// How many jobs of `plan` failed or were interrupted since its last completed job (all of
    /// them when none completed yet).
    pub fn consecutive_failures(&self, plan: &str) -> Result<u32> {
        let conn = self.conn();
        let n: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM jobs
                 WHERE plan = ?1 AND status IN ('failed', 'interrupted')
                   AND id > COALESCE(
                       (SELECT MAX(id) FROM jobs WHERE plan = ?1 AND status = 'completed'), 0)",
                [plan],
                |row| row.get(0),
            )
            .map_err(|e| self.err(e))?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    /// Statistics over all jobs (see [`JobStats`]).
    pub fn stats(&self) -> Result<JobStats> {
        let conn = self.conn();
        let (success, failure, total_bytes, active): (i64, i64, i64, i64) = conn
            .query_row(
                "SELECT
                    COALESCE(SUM(status = 'completed'), 0),
                    COALESCE(SUM(status IN ('failed', 'interrupted')), 0),
                    COALESCE(SUM(CASE WHEN status = 'completed' THEN bytes ELSE 0 END), 0),
                    COALESCE(SUM(status IN ('queued', 'running')), 0)
                 FROM jobs",
                [],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
            )
            .map_err(|e| self.err(e))?;
        let success = to_u64(success);
        let failure = to_u64(failure);
        let total = success + failure;
        let success_rate = if total == 0 {
            0.0
        } else {
            success as f64 * 100.0 / total as f64
        };
        Ok(JobStats {
            total,
            success,
            failure,
            success_rate,
            total_bytes: to_u64(total_bytes),
            active: to_u64(active),
        })
    }

    // ---- internals ----

    fn locks_dir(&self) -> PathBuf {
        self.dir.join(LOCKS_DIR)
    }

    fn lock_path(&self, id: JobId) -> PathBuf {
        self.locks_dir().join(format!("job-{id}.lock"))
    }

    /// Creates and exclusively locks the lock file of job `id`, writing our pid into it.
    fn take_job_lock(&self, id: JobId) -> Result<JobLock> {
        let lock = FileLock::try_acquire(&self.lock_path(id), &format!("job {id}"))?;
        Ok(JobLock {
            lock: Some(lock),
            job: id,
        })
    }

    /// Removes the lock files of finished jobs that nobody holds.
    fn remove_stale_locks(&self) -> Result<()> {
        let dir = self.locks_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io("read", &dir)(e)),
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_prefix("job-"))
                .and_then(|n| n.strip_suffix(".lock"))
                .and_then(|n| n.parse::<JobId>().ok())
            else {
                continue;
            };
            // Only jobs known to be finished: a lock file without a (committed) job may belong
            // to a job being created right now.
            let finished = self.job(id)?.is_some_and(|job| job.status.is_finished());
            if !finished {
                continue;
            }
            let path = entry.path();
            if let Ok(Probe::Free(lock)) = FileLock::probe(&path) {
                lock.release_and_remove();
                tracing::debug!(lock = %path.display(), "removed stale job lock file");
            }
        }
        Ok(())
    }

    /// Runs a job query.
    fn query_jobs<P: rusqlite::Params>(&self, sql: &str, params: P) -> Result<Vec<Job>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(sql).map_err(|e| self.err(e))?;
        let rows = stmt.query_map(params, job_from_row).map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(|e| self.err(e))
    }

    /// The error for a status transition that did not apply: the job is missing or in the
    /// wrong status.
    fn transition_error(&self, conn: &Connection, id: JobId, action: &str) -> Error {
        match query_job(conn, id) {
            Ok(Some(job)) => Error::Other(format!("cannot {action} job {id}: it is {}", job.status)),
            Ok(None) => not_found(id),
            Err(e) => self.err(e),
        }
    }
}

fn not_found(id: JobId) -> Error {
    Error::NotFound(format!("job {id} does not exist"))
}

fn query_job(conn: &Connection, id: JobId) -> rusqlite::Result<Option<Job>> {
    conn.query_row(
        &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"),
        [id],
        job_from_row,
    )
    .optional()
}
fn job_from_row(row: &Row<'_>) -> rusqlite::Result<Job> {
    Ok(Job {
        id: row.get(0)?,
        plan: row.get(1)?,
        kind: read_parsed(row, 2)?,
        trigger: read_parsed(row, 3)?,
        status: read_parsed(row, 4)?,
        progress: u8::try_from(row.get::<_, i64>(5)?.clamp(0, 100)).unwrap_or(100),
        message: row.get(6)?,
        detail: row.get(7)?,
        output_dir: row.get(8)?,
        pack_id: row.get(9)?,
        replication: read_parsed(row, 10)?,
        bytes: read_u64(row, 11)?,
        artifacts: read_u64(row, 12)?,
        records: read_u64(row, 13)?,
        pid: row.get::<_, Option<i64>>(14)?.and_then(|p| u32::try_from(p).ok()),
        created_at: read_time(row, 15)?,
        started_at: read_opt_time(row, 16)?,
        finished_at: read_opt_time(row, 17)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::tests::store;

    fn outcome(bytes: u64) -> JobOutcome {
        JobOutcome {
            output_dir: "/backups/nightly/pack_1".into(),
            pack_id: "pack_1".into(),
            bytes,
            artifacts: 3,
            records: 42,
            message: "backup completed".into(),
            replication: ReplicationStatus::Pending,
            detail: String::new(),
        }
    }

    /// Inserts a job row directly, as a crashed process would have left it (no lock file).
    fn insert_raw(store: &StateStore, plan: &str, status: JobStatus, pid: Option<u32>) -> JobId {
        let conn = store.conn();
        conn.execute(
            "INSERT INTO jobs (plan, kind, trigger, status, created_at, started_at, pid)
             VALUES (?1, 'full', 'manual', ?2, ?3, ?3, ?4)",
            params![plan, status.as_str(), format_time(Utc::now()), pid.map(i64::from)],
        )
        .unwrap();
        conn.last_insert_rowid()
    }

    fn finished(store: &StateStore, plan: &str, ok: bool) -> JobId {
        let (job, _lock) = store.create_job(plan, BackupKind::Full, Trigger::Schedule).unwrap();
        store.start_job(job.id).unwrap();
        if ok {
            store.complete_job(job.id, &outcome(100)).unwrap();
        } else {
            store.fail_job(job.id, "backup failed", "boom").unwrap();
        }
        job.id
    }

    #[test]
    fn job_lifecycle_round_trip() {
        let (_dir, store) = store();
        let (job, lock) = store
            .create_job("nightly", BackupKind::Incremental, Trigger::Api)
            .unwrap();
        assert_eq!(job.status, JobStatus::Queued);
        assert_eq!(job.kind, BackupKind::Incremental);
        assert_eq!(job.trigger, Trigger::Api);
        assert_eq!(job.progress, 0);
        assert!(job.started_at.is_none() && job.finished_at.is_none() && job.pid.is_none());
        assert_eq!(store.job(job.id).unwrap().unwrap(), job);
        assert_eq!(lock.job_id(), job.id);
        assert_eq!(
            lock.path(),
            store.dir().join("locks").join(format!("job-{}.lock", job.id))
        );
        let pid_text = std::fs::read_to_string(lock.path()).unwrap();
        assert_eq!(pid_text.trim(), std::process::id().to_string());
        assert_eq!(store.active_jobs().unwrap(), vec![job.clone()]);

        store.start_job(job.id).unwrap();
        let running = store.job(job.id).unwrap().unwrap();
        assert_eq!(running.status, JobStatus::Running);
        assert_eq!(running.pid, Some(std::process::id()));
        assert!(running.started_at.is_some());
        // Starting twice is refused.
        assert!(store.start_job(job.id).is_err());

        store.set_progress(job.id, 40, "dumping app_db").unwrap();
        store.set_progress(job.id, 250, "clamped").unwrap();
        store.set_pack_id(job.id, "pack_1").unwrap();
        let j = store.job(job.id).unwrap().unwrap();
        assert_eq!((j.progress, j.message.as_str()), (100, "clamped"));
        assert_eq!(j.pack_id.as_deref(), Some("pack_1"));

        store.complete_job(job.id, &outcome(1234)).unwrap();
        let done = store.job(job.id).unwrap().unwrap();
        assert_eq!(done.status, JobStatus::Completed);
        assert_eq!(done.progress, 100);
        assert_eq!(done.bytes, 1234);
        assert_eq!(done.artifacts, 3);
        assert_eq!(done.records, 42);
        assert_eq!(done.output_dir.as_deref(), Some("/backups/nightly/pack_1"));
        assert_eq!(done.replication, ReplicationStatus::Pending);
        assert_eq!(done.message, "backup completed");
        assert!(done.finished_at.unwrap() >= done.started_at.unwrap());
        assert!(done.duration().is_some());
        // A finished job cannot be failed afterwards.
        assert!(store.fail_job(job.id, "x", "y").is_err());

        store
            .set_replication(job.id, ReplicationStatus::Failed, None, Some("offsite: timeout"))
            .unwrap();
        let r = store.job(job.id).unwrap().unwrap();
        assert_eq!(r.replication, ReplicationStatus::Failed);
        assert_eq!(r.message, "backup completed");
        assert_eq!(r.detail, "offsite: timeout");

        let path = lock.path().to_path_buf();
        drop(lock);
        assert!(!path.exists());
        assert!(store.active_jobs().unwrap().is_empty());

        // Failure path.
        let (j2, _l2) = store.create_job("nightly", BackupKind::Full, Trigger::Manual).unwrap();
        store.fail_job(j2.id, "backup failed", "disk full").unwrap();
        let f = store.job(j2.id).unwrap().unwrap();
        assert_eq!(f.status, JobStatus::Failed);
        assert_eq!(f.detail, "disk full");
        assert!(f.finished_at.is_some());

        // Unknown jobs.
        assert!(store.job(999).unwrap().is_none());
        assert!(matches!(store.start_job(999), Err(Error::NotFound(_))));
        assert!(matches!(store.set_progress(999, 1, ""), Err(Error::NotFound(_))));
    }

    #[test]
    fn listing_and_filters() {
        let (_dir, store) = store();
        let a1 = finished(&store, "a", true);
        let b1 = finished(&store, "b", false);
        let a2 = finished(&store, "a", false);
        let (b2, _lock) = store.create_job("b", BackupKind::Full, Trigger::Manual).unwrap();

        let ids = |jobs: Vec<Job>| jobs.into_iter().map(|j| j.id).collect::<Vec<_>>();
        assert_eq!(ids(store.jobs(&JobFilter::default()).unwrap()), vec![b2.id, a2, b1, a1]);
        let f = JobFilter {
            plan: Some("a".into()),
            ..JobFilter::default()
        };
        assert_eq!(ids(store.jobs(&f).unwrap()), vec![a2, a1]);
        let f = JobFilter {
            status: Some(JobStatus::Failed),
            limit: Some(1),
            ..JobFilter::default()
        };
        assert_eq!(ids(store.jobs(&f).unwrap()), vec![a2]);
        assert_eq!(ids(store.active_jobs().unwrap()), vec![b2.id]);
        assert_eq!(ids(store.last_job_per_plan().unwrap()), vec![a2, b2.id]);
        assert_eq!(store.last_success("a").unwrap().unwrap().id, a1);
        assert!(store.last_success("b").unwrap().is_none());
    }

    #[test]
    fn stats_numbers() {
        let (_dir, store) = store();
        assert_eq!(store.stats().unwrap(), JobStats::default());
        finished(&store, "a", true);
        finished(&store, "a", true);
        finished(&store, "b", true);
        finished(&store, "b", false);
        insert_raw(&store, "c", JobStatus::Interrupted, None);
        let (_q, _lock) = store.create_job("c", BackupKind::Full, Trigger::Manual).unwrap();
        let (r, _lock2) = store.create_job("d", BackupKind::Full, Trigger::Manual).unwrap();
        store.start_job(r.id).unwrap();

        let s = store.stats().unwrap();
        assert_eq!(s.total, 5);
        assert_eq!(s.success, 3);
        assert_eq!(s.failure, 2);
        assert!((s.success_rate - 60.0).abs() < 1e-9);
        assert_eq!(s.total_bytes, 300);
        assert_eq!(s.active, 2);
    }

    #[test]
    fn consecutive_failures_since_last_success() {
        let (_dir, store) = store();
        assert_eq!(store.consecutive_failures("a").unwrap(), 0);
        finished(&store, "a", false);
        assert_eq!(store.consecutive_failures("a").unwrap(), 1);
        finished(&store, "a", true);
        assert_eq!(store.consecutive_failures("a").unwrap(), 0);
        finished(&store, "a", false);
        finished(&store, "b", false);
        insert_raw(&store, "a", JobStatus::Interrupted, None);
        finished(&store, "a", false);
        let (_q, _lock) = store.create_job("a", BackupKind::Full, Trigger::Manual).unwrap();
        assert_eq!(store.consecutive_failures("a").unwrap(), 3);
        assert_eq!(store.consecutive_failures("b").unwrap(), 1);
    }

    #[test]
    fn recover_interrupted_marks_dead_jobs_only() {
        let (_dir, store) = store();
        // A live job of this process: its lock is held, it must be left alone.
        let (live, live_lock) = store.create_job("live", BackupKind::Full, Trigger::Manual).unwrap();
        store.start_job(live.id).unwrap();
        // A crashed job: a running row without a lock file.
        let crashed = insert_raw(&store, "crashed", JobStatus::Running, Some(4242));
        // A job whose lock was released without finishing it (file removed on drop).
        let (dropped, lock) = store.create_job("dropped", BackupKind::Full, Trigger::Manual).unwrap();
        drop(lock);
        // A job whose lock file survived but nobody holds it.
        let orphan = insert_raw(&store, "orphan", JobStatus::Running, None);
        let orphan_lock = store.lock_path(orphan);
        std::fs::write(&orphan_lock, "777\n").unwrap();
        // A finished job with a leftover, unheld lock file.
        let done = finished(&store, "done", true);
        let done_lock = store.lock_path(done);
        std::fs::write(&done_lock, "1\n").unwrap();

        let marked = store.recover_interrupted().unwrap();
        let mut ids: Vec<_> = marked.iter().map(|j| j.id).collect();
        ids.sort_unstable();
        assert_eq!(ids, vec![crashed, dropped.id, orphan]);
        for j in &marked {
            assert_eq!(j.status, JobStatus::Interrupted);
            assert!(j.finished_at.is_some());
            assert!(j.detail.contains("stopped before it finished"), "{}", j.detail);
        }
        let c = store.job(crashed).unwrap().unwrap();
        assert!(c.detail.contains("(pid 4242)"), "{}", c.detail);
        let o = store.job(orphan).unwrap().unwrap();
        assert!(o.detail.contains("(pid 777)"), "{}", o.detail);
        assert!(!orphan_lock.exists());
        assert!(!done_lock.exists());

        let l = store.job(live.id).unwrap().unwrap();
        assert_eq!(l.status, JobStatus::Running);
        assert!(live_lock.path().exists());

        // Idempotent; the live job still is not touched.
        assert!(store.recover_interrupted().unwrap().is_empty());
        assert_eq!(store.consecutive_failures("crashed").unwrap(), 1);
        store.complete_job(live.id, &outcome(1)).unwrap();
        drop(live_lock);
        assert!(store.recover_interrupted().unwrap().is_empty());
    }

    #[test]
    fn lock_conflict_is_reported() {
        let (_dir, store) = store();
        let (job, _lock) = store.create_job("p", BackupKind::Full, Trigger::Manual).unwrap();
        let err = store.take_job_lock(job.id).unwrap_err();
        assert!(matches!(err, Error::Locked { .. }), "{err}");
    }
}
