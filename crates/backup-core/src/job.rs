//! The job model: one execution of a plan, with a durable record in the [`StateStore`](crate::StateStore).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Identifier of a job: a positive integer assigned by the state store.
pub type JobId = i64;

/// Lifecycle of a job.
///
/// `queued → running → completed | failed | cancelled`; a job found `queued` or `running` whose
/// process is gone becomes `interrupted` (or `completed`, when its pack was already in place).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    /// Created, waiting for a slot.
    Queued,
    /// Executing now.
    Running,
    /// Finished successfully; the pack is in place.
    Completed,
    /// Finished with an error; `detail` says why.
    Failed,
    /// The process running it died (crash, kill, power loss) before it finished.
    Interrupted,
    /// Stopped on request (a signal, `packrat cancel`, daemon shutdown); `detail` says by whom.
    Cancelled,
}

impl JobStatus {
    /// The lowercase name stored in the database and shown to operators.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
            JobStatus::Interrupted => "interrupted",
            JobStatus::Cancelled => "cancelled",
        }
    }

    /// True for `completed`, `failed`, `interrupted` and `cancelled`.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            JobStatus::Completed | JobStatus::Failed | JobStatus::Interrupted | JobStatus::Cancelled
        )
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for JobStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "queued" => JobStatus::Queued,
            "running" => JobStatus::Running,
            "completed" => JobStatus::Completed,
            "failed" => JobStatus::Failed,
            "interrupted" => JobStatus::Interrupted,
            "cancelled" => JobStatus::Cancelled,
            other => return Err(format!("unknown job status `{other}`")),
        })
    }
}

/// Full or incremental backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BackupKind {
    /// Everything the plan selects.
    #[default]
    Full,
    /// Only what changed since the stored watermark (sources without a notion of change do a full copy).
    Incremental,
}

impl BackupKind {
    /// `full` or `incremental`.
    pub fn as_str(self) -> &'static str {
        match self {
            BackupKind::Full => "full",
            BackupKind::Incremental => "incremental",
        }
    }
}

impl fmt::Display for BackupKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for BackupKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "full" => Ok(BackupKind::Full),
            "incremental" => Ok(BackupKind::Incremental),
            other => Err(format!("unknown backup kind `{other}` (expected full or incremental)")),
        }
    }
}

/// What started a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    /// An operator ran it (`packrat run`).
    #[default]
    Manual,
    /// The daemon's scheduler fired it.
    Schedule,
    /// The HTTP API asked for it.
    Api,
}

impl Trigger {
    /// `manual`, `schedule` or `api`.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Manual => "manual",
            Trigger::Schedule => "schedule",
            Trigger::Api => "api",
        }
    }
}

impl FromStr for Trigger {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "manual" => Ok(Trigger::Manual),
            "schedule" => Ok(Trigger::Schedule),
            "api" => Ok(Trigger::Api),
            other => Err(format!("unknown trigger `{other}`")),
        }
    }
}

/// Replication state of a job's pack to its further sinks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ReplicationStatus {
    /// The plan has no further sink, or the job did not get that far.
    #[default]
    None,
    /// Waiting to be copied.
    Pending,
    /// Copied and verified on every further sink.
    Succeeded,
    /// At least one further sink failed.
    Failed,
    /// Deliberately not replicated.
    Skipped,
}

impl ReplicationStatus {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            ReplicationStatus::None => "none",
            ReplicationStatus::Pending => "pending",
            ReplicationStatus::Succeeded => "succeeded",
            ReplicationStatus::Failed => "failed",
            ReplicationStatus::Skipped => "skipped",
        }
    }
}

impl FromStr for ReplicationStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "none" => ReplicationStatus::None,
            "pending" => ReplicationStatus::Pending,
            "succeeded" => ReplicationStatus::Succeeded,
            "failed" => ReplicationStatus::Failed,
            "skipped" => ReplicationStatus::Skipped,
            other => return Err(format!("unknown replication status `{other}`")),
        })
    }
}

/// The durable record of one job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// Unique id.
    pub id: JobId,
    /// Plan name.
    pub plan: String,
    /// Full or incremental.
    pub kind: BackupKind,
    /// What started it.
    pub trigger: Trigger,
    /// Lifecycle state.
    pub status: JobStatus,
    /// Progress in percent (0–100).
    pub progress: u8,
    /// Current stage, or the final summary ("backup completed").
    pub message: String,
    /// Failure reason for operators; empty when none.
    pub detail: String,
    /// Final pack directory in the first sink, once in place.
    pub output_dir: Option<String>,
    /// Pack id, once chosen.
    pub pack_id: Option<String>,
    /// Replication to further sinks.
    pub replication: ReplicationStatus,
    /// Bytes of all artifacts as stored.
    pub bytes: u64,
    /// Number of artifacts in the pack.
    pub artifacts: u64,
    /// Records (rows, documents, files) backed up, where sources count them.
    pub records: u64,
    /// Process id of the runner, to tell a crashed job from a live one.
    pub pid: Option<u32>,
    /// When the job was created.
    pub created_at: DateTime<Utc>,
    /// When it started running.
    pub started_at: Option<DateTime<Utc>>,
    /// When it finished.
    pub finished_at: Option<DateTime<Utc>>,
}

impl Job {
    /// Wall-clock duration, when finished.
    pub fn duration(&self) -> Option<chrono::Duration> {
        Some(self.finished_at? - self.started_at?)
    }
}

/// Outcome figures recorded when a job completes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobOutcome {
    /// Final pack directory in the first sink.
    pub output_dir: String,
    /// Pack id.
    pub pack_id: String,
    /// Stored bytes.
    pub bytes: u64,
    /// Artifact count.
    pub artifacts: u64,
    /// Record count.
    pub records: u64,
    /// Summary message (`backup completed`, `backup completed (synced)`).
    pub message: String,
    /// Replication status.
    pub replication: ReplicationStatus,
    /// Details of a replication problem that did not fail the job; empty otherwise.
    pub detail: String,
}

/// Statistics over all jobs, as shown by `packrat status`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobStats {
    /// Jobs that finished (completed, failed or interrupted).
    pub total: u64,
    /// Completed jobs.
    pub success: u64,
    /// Failed or interrupted jobs.
    pub failure: u64,
    /// `success / total` in percent, 0 when there is none.
    pub success_rate: f64,
    /// Bytes of all completed packs.
    pub total_bytes: u64,
    /// Queued or running jobs.
    pub active: u64,
}
