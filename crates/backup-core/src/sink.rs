//! The [`Sink`] trait: somewhere sealed packs are kept.

use std::fmt;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::lock::ClaimedDir;
use crate::pack::{Pack, SealedPack};
use crate::verify::{Verifier, VerifyLevel, VerifyReport};
use crate::{BackupKind, Error, JobId, PackId, Result};

/// A pack as listed by a sink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PackInfo {
    /// The sink's name.
    pub sink: String,
    /// Plan name.
    pub plan: String,
    /// Pack id.
    pub id: String,
    /// Where it is.
    pub path: PathBuf,
    /// Full or incremental.
    pub kind: BackupKind,
    /// Job that produced it.
    pub job_id: Option<JobId>,
    /// Start of the job that produced it.
    pub started_at: DateTime<Utc>,
    /// When it was sealed.
    pub finished_at: DateTime<Utc>,
    /// Stored bytes.
    pub bytes: u64,
    /// Number of artifacts.
    pub artifacts: usize,
}

impl PackInfo {
    /// Describes `pack` as found on sink `sink`.
    pub fn from_pack(sink: &str, pack: &Pack) -> PackInfo {
        let m = pack.manifest();
        PackInfo {
            sink: sink.to_string(),
            plan: m.plan.clone(),
            id: m.pack_id.clone(),
            path: pack.dir().to_path_buf(),
            kind: m.kind,
            job_id: m.job_id,
            started_at: m.started_at,
            finished_at: m.finished_at,
            bytes: m.total_size(),
            artifacts: m.artifacts.len(),
        }
    }
}

/// Somewhere sealed packs are kept: `<root>/<plan>/<pack id>/`.
///
/// A sink never shows a half-written pack under a final name, lists and deletes only valid packs
/// of ours, and leaves existing packs untouched when a store fails. Behaviour such as dry-run or
/// retries is added by wrapping a sink, not by flags inside it. Run [`crate::conformance`]
/// against a new sink.
#[async_trait]
pub trait Sink: Send + Sync + fmt::Debug {
    /// The configured name (`sinks.<name>`).
    fn name(&self) -> &str;

    /// Where it is, for messages (a path or URL without credentials).
    fn location(&self) -> String;

    /// Prepares a staging directory for a new pack on the same filesystem, so that
    /// [`Sink::store`] can put it in place with one rename; checks free space against
    /// `expected_bytes`. The directory is claimed by the job (see [`ClaimedDir`]) for as long as
    /// the returned value lives, so no cleanup in any process removes it meanwhile; keep it until
    /// the pack was stored or discarded. `Ok(None)` (the default) means this sink does not host
    /// staging, and the runner assembles the pack elsewhere.
    async fn stage(&self, _job: JobId, _plan: &str, _id: &PackId, _expected_bytes: u64) -> Result<Option<ClaimedDir>> {
        Ok(None)
    }

    /// Removes a staging directory this sink handed out (after a failure).
    async fn discard_staging(&self, dir: &Path) -> Result<()> {
        crate::pack::remove_dir_all_if_exists(dir)
    }

    /// Puts a sealed pack in place under `<plan>/<pack id>`: by rename when it sits in this
    /// sink's staging area, otherwise by a verified copy. Never overwrites an existing pack.
    async fn store(&self, pack: &SealedPack, job: JobId) -> Result<PackInfo>;

    /// Valid packs of ours, of one plan or all, oldest first.
    async fn list(&self, plan: Option<&str>) -> Result<Vec<PackInfo>>;

    /// Opens a pack for reading.
    async fn open(&self, plan: &str, id: &str) -> Result<Pack>;

    /// True if a pack (or anything) already exists under `<plan>/<id>`.
    async fn exists(&self, plan: &str, id: &str) -> Result<bool> {
        Ok(self.list(Some(plan)).await?.iter().any(|p| p.id == id))
    }

    /// Verifies a stored pack. Default: [`Sink::open`] then `verifier`.
    async fn verify(&self, plan: &str, id: &str, verifier: &Verifier, level: VerifyLevel) -> Result<VerifyReport> {
        let pack = self.open(plan, id).await?;
        let verifier = verifier.clone();
        tokio::task::spawn_blocking(move || verifier.verify(&pack, level))
            .await
            .map_err(|e| Error::Other(format!("verification task failed: {e}")))
    }

    /// Deletes a pack, only if it is a valid pack of ours with that plan and id.
    async fn delete(&self, plan: &str, id: &str) -> Result<()>;

    /// Removes leftovers of jobs that are gone (crashed, killed or cancelled runs): working
    /// directories whose claim is not held (see [`crate::lock::sweep`]), never one a live job in
    /// any process owns. Returns what was removed.
    async fn clean_leftovers(&self) -> Result<Vec<PathBuf>> {
        Ok(Vec::new())
    }

    /// Free bytes where packs are written, when known.
    async fn free_space(&self) -> Result<Option<u64>> {
        Ok(None)
    }

    /// Checks that the sink is usable (present, writable), for `doctor`. Default: nothing to check.
    async fn check(&self) -> Result<()> {
        Ok(())
    }
}
