//! The typed HTTP API of `packratd`: the request and response documents the daemon serves and
//! the CLI (and anyone else) reads. JSON keys are stable and English.
//!
//! - `GET /api/status` → [`StatusResponse`]
//! - `GET /api/jobs?plan=&status=&limit=` ([`JobsQuery`]) → `[Job]`; `GET /api/jobs/{id}` → `Job`
//! - `POST /api/plans/{name}/run?kind=full|incremental` ([`RunQuery`], bearer token) →
//!   [`RunAccepted`] (202)
//! - `POST /api/jobs/{id}/cancel` (bearer token) → [`CancelAccepted`] (202); 404 for an unknown
//!   job, 409 for a finished one
//! - errors → [`ErrorResponse`] with the HTTP status
//!
//! ```
//! let doc = r#"{"plan":"nightly","kind":"full","accepted":true,"job":7}"#;
//! let run: packrat_app::api::RunAccepted = serde_json::from_str(doc).unwrap();
//! assert_eq!(run.job, 7);
//! ```

use std::collections::BTreeMap;

use alerts::Alert;
use backup_core::{BackupKind, Job, JobId, Trigger};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Name of the file in the state directory holding the API's address (`127.0.0.1:8787`).
pub const ADDR_FILE: &str = "packratd.addr";

/// `GET /api/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusResponse {
    /// Always `daemon`: the document comes from a running packratd.
    pub source: String,
    /// Always true.
    pub running: bool,
    /// The daemon's pid.
    pub pid: u32,
    /// The daemon's version.
    pub version: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// Seconds since it started.
    pub uptime_seconds: i64,
    /// True once shutdown began.
    pub stopping: bool,
    /// Job statistics over the whole state store.
    pub statistics: Statistics,
    /// Queued and running jobs, newest first.
    pub active_jobs: Vec<Job>,
    /// Every plan of the config.
    pub plans: BTreeMap<String, PlanStatus>,
    /// Alerts firing now.
    pub alerts: Vec<Alert>,
    /// What every sink received (bytes, packs, the last upload), from the job records.
    #[serde(default)]
    pub sinks: BTreeMap<String, SinkActivity>,
    /// Health per collection (Mongo plans): failures and the last backed-up window.
    #[serde(default)]
    pub collections: Vec<backup_core::state::CollectionHealth>,
}

/// What one sink received, from the job records: a completed job's pack counts for the plan's
/// first sink, and for its further sinks (replicas, buckets) when the job's replication
/// succeeded.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SinkActivity {
    /// The sink's `type` (`local`, `cifs-replica`, `s3`).
    #[serde(rename = "type")]
    pub kind: String,
    /// Packs stored (uploaded) there.
    pub packs: u64,
    /// Their bytes.
    pub bytes: u64,
    /// When the last one was stored (its job's end).
    pub last_at: Option<DateTime<Utc>>,
    /// The job of the last one.
    pub last_job: Option<JobId>,
}

/// [`SinkActivity`] of every sink of `cfg`, from `jobs` (any order).
pub fn sink_activity(cfg: &crate::config::Config, jobs: &[Job]) -> BTreeMap<String, SinkActivity> {
    let mut out: BTreeMap<String, SinkActivity> = cfg
        .sinks
        .iter()
        .map(|(name, s)| {
            let a = SinkActivity {
                kind: s.kind().to_string(),
                ..SinkActivity::default()
            };
            (name.clone(), a)
        })
        .collect();
    for j in jobs.iter().filter(|j| j.status == backup_core::JobStatus::Completed) {
        let Some(plan) = cfg.plans.get(&j.plan) else { continue };
        for (i, sink) in plan.sinks.iter().enumerate() {
            let reached = i == 0 || j.replication == backup_core::ReplicationStatus::Succeeded;
            let Some(a) = out.get_mut(sink).filter(|_| reached) else {
                continue;
            };
            a.packs += 1;
            a.bytes += j.bytes;
            if j.finished_at > a.last_at {
                a.last_at = j.finished_at;
                a.last_job = Some(j.id);
            }
        }
    }
    out
}

/// Job statistics (the MES status file's numbers).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Statistics {
    /// Finished jobs that count: completed, failed, interrupted.
    pub total_backups: u64,
    /// Completed jobs.
    pub success_count: u64,
    /// Failed and interrupted jobs.
    pub failure_count: u64,
    /// `success_count` in percent of `total_backups` (0 when there are none).
    pub success_rate: f64,
    /// Bytes of all completed packs.
    pub total_bytes: u64,
    /// The same in MB (10⁶ bytes).
    pub total_size_mb: f64,
    /// Queued and running jobs.
    pub active_jobs: u64,
}

/// One plan in [`StatusResponse::plans`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanStatus {
    /// Whether the scheduler runs it.
    pub enabled: bool,
    /// Its schedule, as shown (`full 0 4 * * * (Asia/Shanghai, catch-up once)`).
    pub schedule: Option<String>,
    /// False when the plan cannot be wired (see `problem`).
    pub runnable: bool,
    /// Why the plan cannot run.
    pub problem: Option<String>,
    /// Its job running or waiting now.
    pub running: Option<RunningJob>,
    /// Its newest job.
    pub last_run: Option<Job>,
    /// When it is due next.
    pub next_run: Option<DateTime<Utc>>,
    /// The last schedule slot that fired.
    pub last_fired_slot: Option<DateTime<Utc>>,
    /// When a job of it last completed.
    pub last_success: Option<DateTime<Utc>>,
    /// That job.
    pub last_success_job: Option<JobId>,
    /// Failed or interrupted jobs since the last success.
    pub consecutive_failures: u32,
    /// Its newest finished verification (`packrat drill --verify`, the `verify` schedule).
    #[serde(default)]
    pub last_verify: Option<crate::drill::DrillRun>,
    /// Its newest finished restore drill.
    #[serde(default)]
    pub last_drill: Option<crate::drill::DrillRun>,
}

/// A plan's job that is running or waiting for a slot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunningJob {
    /// The job.
    pub job: JobId,
    /// Full or incremental.
    pub kind: BackupKind,
    /// What started it (`schedule`, `api`).
    pub trigger: String,
    /// When the daemon accepted it.
    pub since: DateTime<Utc>,
}

impl RunningJob {
    /// A running job's entry.
    pub fn new(job: JobId, kind: BackupKind, trigger: Trigger, since: DateTime<Utc>) -> RunningJob {
        RunningJob {
            job,
            kind,
            trigger: trigger.as_str().to_string(),
            since,
        }
    }
}

/// The query of `GET /api/jobs`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobsQuery {
    /// Only this plan's jobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    /// Only jobs in this status (`queued`, `running`, `completed`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// At most this many (default 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

/// The query of `POST /api/plans/{name}/run`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunQuery {
    /// `full` (default) or `incremental`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// The answer to `POST /api/plans/{name}/run` (202 Accepted).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunAccepted {
    /// The plan.
    pub plan: String,
    /// Full or incremental.
    pub kind: BackupKind,
    /// Always true.
    pub accepted: bool,
    /// The job, `queued` until a parallelism slot is free.
    pub job: JobId,
}

/// The answer to `POST /api/jobs/{id}/cancel` (202 Accepted): the job stops and records itself
/// `cancelled` in the background.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelAccepted {
    /// The job.
    pub job: JobId,
    /// Always true.
    pub cancelling: bool,
}

/// Every error answer: the HTTP status says what kind, `error` what happened and what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorResponse {
    /// The message.
    pub error: String,
}
