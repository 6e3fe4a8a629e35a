//! The [`Source`] trait: something to back up.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::cancel::CancelToken;
use crate::state::StateStore;
use crate::{BackupKind, JobId, Result, StagingPack};

/// Receives progress from a running job. Every method has a no-op default.
pub trait Progress: Send + Sync + fmt::Debug {
    /// A new stage begins ("backing up app_db").
    fn stage(&self, _message: &str) {}
    /// The expected number of bytes of the current stage, when known.
    fn set_total(&self, _bytes: u64) {}
    /// `bytes` more were processed in the current stage.
    fn advance(&self, _bytes: u64) {}
}

/// A [`Progress`] that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;
impl Progress for NoProgress {}

/// What a source gets to know about the job it runs in.
#[derive(Debug, Clone)]
pub struct BackupContext {
    /// Plan name.
    pub plan: String,
    /// Job id.
    pub job: JobId,
    /// Full or incremental.
    pub kind: BackupKind,
    /// The plan's time zone.
    pub time_zone: Tz,
    /// When the job started.
    pub started_at: DateTime<Utc>,
    /// The state store, for reading watermarks (never write them: the runner advances them once
    /// the pack is safely in place).
    pub state: Option<Arc<StateStore>>,
    /// Where to report progress.
    pub progress: Arc<dyn Progress>,
    /// Fires when the job is cancelled; long-running sources may check it between steps (the
    /// runner drops the backup future in any case, and artifact writers refuse to write).
    pub cancel: CancelToken,
}

impl BackupContext {
    /// A context for tests and embedding: job 0, UTC, no state store, no progress.
    pub fn detached(plan: &str, kind: BackupKind) -> BackupContext {
        BackupContext {
            plan: plan.to_string(),
            job: 0,
            kind,
            time_zone: chrono_tz::UTC,
            started_at: Utc::now(),
            state: None,
            progress: Arc::new(NoProgress),
            cancel: CancelToken::new(),
        }
    }
}

/// A watermark a source proposes to advance once its pack is safely stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatermarkUpdate {
    /// Key within the source, e.g. `db.collection`.
    pub key: String,
    /// The new upper bound (exclusive) already backed up.
    pub value: DateTime<Utc>,
}

/// What a source reports after writing its artifacts.
#[derive(Debug, Clone, Default)]
pub struct SourceReport {
    /// Watermarks to advance after the pack is in place.
    pub watermarks: Vec<WatermarkUpdate>,
    /// Things the operator should know that did not fail the backup.
    pub warnings: Vec<String>,
}

/// Something to back up: writes its artifacts into a [`StagingPack`].
///
/// Implementations stream their data (never hold a whole database in memory), name their
/// artifacts under a directory of their type (`sqlite/…`, `mongo/…`, `docker/…`), and return
/// errors that say what failed and what to do. Run [`crate::conformance`] against a new source.
#[async_trait]
pub trait Source: Send + Sync + fmt::Debug {
    /// The configured name (`sources.<name>`).
    fn name(&self) -> &str;

    /// The source type (`sqlite`, `mongo`, `docker`).
    fn kind(&self) -> &'static str;

    /// Bytes this source expects to write, for the sink's free-space check. Default: 0 (unknown).
    async fn estimate(&self, _ctx: &BackupContext) -> Result<u64> {
        Ok(0)
    }

    /// Writes this source's artifacts into `pack`.
    async fn backup(&self, ctx: &BackupContext, pack: &StagingPack) -> Result<SourceReport>;

    /// Checks that the source can be reached and read, for `doctor`. Default: nothing to check.
    async fn check(&self) -> Result<()> {
        Ok(())
    }
}
