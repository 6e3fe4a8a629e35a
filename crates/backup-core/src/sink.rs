//! The [`Sink`] trait: somewhere sealed packs are kept; [`SyncSink`], the same for sinks
//! written as blocking code; and [`PackInfo`], a pack as a sink lists it.
//!
//! A sink stores sealed packs and reads them back: listing, opening a pack as a [`PackReader`]
//! (manifest, artifacts as streams), verifying, deleting. Nothing outside a sink looks at where
//! or how it keeps its packs; [`PackInfo::location`] and [`PackReader::location`] are strings for
//! messages (a path or a URL without credentials).
//!
//! Sinks built on blocking I/O (a local directory, a mounted share) implement [`SyncSink`] once;
//! the blocking adapter here makes every `SyncSink` a [`Sink`]: each call runs on tokio's
//! blocking pool, and errors are wrapped with [`Error::sink`] (the sink's name and error kind).
//! Behaviour on top of a sink is added by wrapping it: [`crate::DryRunSink`] (writes and
//! deletions are logged and skipped) and [`crate::RetrySink`] (transient failures retried with
//! backoff).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{BoxError, HasKind};
use crate::lock::ClaimedDir;
use crate::pack::SealedPack;
use crate::reader::PackReader;
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
    /// Where it is, for messages: a path, or a URL without credentials. Open the pack with
    /// [`Sink::open`]`(plan, id)`, never through this string.
    pub location: String,
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
    pub fn from_pack(sink: &str, pack: &dyn PackReader) -> PackInfo {
        PackInfo::from_manifest(sink, pack.manifest(), pack.location())
    }

    /// Describes the pack with manifest `m` found at `location` on sink `sink` (for listings that
    /// read manifests without opening the packs).
    pub fn from_manifest(sink: &str, m: &crate::Manifest, location: String) -> PackInfo {
        PackInfo {
            sink: sink.to_string(),
            plan: m.plan.clone(),
            id: m.pack_id.clone(),
            location,
            kind: m.kind,
            job_id: m.job_id,
            started_at: m.started_at,
            finished_at: m.finished_at,
            bytes: m.total_size(),
            artifacts: m.artifacts.len(),
        }
    }
}

/// Somewhere sealed packs are kept, as `<plan>/<pack id>`.
///
/// A sink never shows a half-written pack under a final name, lists, opens and deletes only
/// valid packs of ours (it alone decides what is provably ours: callers never look at where a
/// pack is), and leaves existing packs untouched when a store fails. Reading a pack goes through
/// the sink ([`Sink::open`] returns a [`PackReader`]). Behaviour such as dry-run or retries is
/// added by wrapping a sink ([`crate::DryRunSink`], [`crate::RetrySink`]), not by flags inside
/// it. Sinks written as blocking code implement [`SyncSink`] instead, which makes them a `Sink`.
/// Run [`crate::conformance`] against a new sink.
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

    /// Opens a pack of ours for reading: its manifest, and its files and artifacts as streams.
    async fn open(&self, plan: &str, id: &str) -> Result<Arc<dyn PackReader>>;

    /// True if a pack (or anything) already exists under `<plan>/<id>`.
    async fn exists(&self, plan: &str, id: &str) -> Result<bool> {
        Ok(self.list(Some(plan)).await?.iter().any(|p| p.id == id))
    }

    /// Verifies a stored pack, reading it through [`Sink::open`].
    async fn verify(&self, plan: &str, id: &str, verifier: &Verifier, level: VerifyLevel) -> Result<VerifyReport> {
        let pack = self.open(plan, id).await?;
        let verifier = verifier.clone();
        tokio::task::spawn_blocking(move || verifier.verify(&*pack, level))
            .await
            .map_err(|e| Error::Other(format!("verification task failed: {e}")))
    }

    /// Deletes a pack, only if it is a valid pack of ours with that plan and id (the sink checks
    /// it, whatever the caller listed before).
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

/// A [`Sink`] written as blocking code, with its own error type: the same operations, called
/// from a blocking thread. Implement this (not `Sink`) for a sink built on blocking I/O; the
/// blocking adapter makes it a `Sink` (each call on tokio's blocking pool, errors wrapped with
/// [`Error::sink`] under the sink's name, keeping their [`crate::ErrorKind`]).
///
/// Cheap to clone: the adapter clones it into the blocking task. The methods mean what the
/// [`Sink`] methods of the same name say (where both traits are in scope, call these as
/// `SyncSink::list(&sink, …)`).
///
/// ```
/// # use std::path::PathBuf;
/// # use std::sync::Arc;
/// use backup_core::{Error, JobId, PackInfo, PackReader, SealedPack, Sink, SyncSink};
///
/// /// A sink that keeps nothing, to show the shape.
/// #[derive(Debug, Clone)]
/// struct Nowhere;
///
/// impl SyncSink for Nowhere {
///     type Error = Error;
///     fn name(&self) -> &str { "nowhere" }
///     fn location(&self) -> String { "nowhere".into() }
///     fn store(&self, _: &SealedPack, _: JobId) -> Result<PackInfo, Error> {
///         Err(Error::Other("this sink keeps nothing".into()))
///     }
///     fn list(&self, _: Option<&str>) -> Result<Vec<PackInfo>, Error> { Ok(Vec::new()) }
///     fn open(&self, plan: &str, id: &str) -> Result<Arc<dyn PackReader>, Error> {
///         Err(Error::NotFound(format!("no pack {plan}/{id}")))
///     }
///     fn delete(&self, plan: &str, id: &str) -> Result<(), Error> {
///         // With `Sink` in scope too, name the trait: both have `open`.
///         SyncSink::open(self, plan, id).map(drop)
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let sink: Arc<dyn Sink> = Arc::new(Nowhere); // a Sink through the blocking adapter
/// assert!(sink.list(None).await.unwrap().is_empty());
/// let e = sink.open("nightly", "p1").await.unwrap_err();
/// assert_eq!(e.to_string(), "sink `nowhere`: no pack nightly/p1");
/// # }
/// ```
pub trait SyncSink: Send + Sync + Clone + fmt::Debug + 'static {
    /// The sink's error type.
    type Error: std::error::Error + HasKind + From<Error> + Send + Sync + 'static;

    /// See [`Sink::name`].
    fn name(&self) -> &str;

    /// See [`Sink::location`].
    fn location(&self) -> String;

    /// See [`Sink::stage`]. Default: no staging.
    fn stage(
        &self,
        _job: JobId,
        _plan: &str,
        _id: &PackId,
        _expected_bytes: u64,
    ) -> Result<Option<ClaimedDir>, Self::Error> {
        Ok(None)
    }

    /// See [`Sink::discard_staging`].
    fn discard_staging(&self, dir: &Path) -> Result<(), Self::Error> {
        Ok(crate::pack::remove_dir_all_if_exists(dir)?)
    }

    /// See [`Sink::store`].
    fn store(&self, pack: &SealedPack, job: JobId) -> Result<PackInfo, Self::Error>;

    /// See [`Sink::list`].
    fn list(&self, plan: Option<&str>) -> Result<Vec<PackInfo>, Self::Error>;

    /// See [`Sink::open`].
    fn open(&self, plan: &str, id: &str) -> Result<Arc<dyn PackReader>, Self::Error>;

    /// See [`Sink::exists`].
    fn exists(&self, plan: &str, id: &str) -> Result<bool, Self::Error> {
        Ok(SyncSink::list(self, Some(plan))?.iter().any(|p| p.id == id))
    }

    /// See [`Sink::delete`].
    fn delete(&self, plan: &str, id: &str) -> Result<(), Self::Error>;

    /// See [`Sink::clean_leftovers`].
    fn clean_leftovers(&self) -> Result<Vec<PathBuf>, Self::Error> {
        Ok(Vec::new())
    }

    /// See [`Sink::free_space`].
    fn free_space(&self) -> Result<Option<u64>, Self::Error> {
        Ok(None)
    }

    /// See [`Sink::check`].
    fn check(&self) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// Runs `f` on a clone of `sink` on tokio's blocking pool and wraps its error with the sink's
/// name and kind.
async fn blocking<S, T, F>(sink: &S, f: F) -> Result<T>
where
    S: SyncSink,
    T: Send + 'static,
    F: FnOnce(&S) -> Result<T, S::Error> + Send + 'static,
{
    let this = sink.clone();
    let name = SyncSink::name(sink).to_string();
    match tokio::task::spawn_blocking(move || f(&this)).await {
        Ok(result) => result.map_err(Error::sink(name)),
        Err(e) => Err(Error::Sink {
            name,
            kind: crate::ErrorKind::Other,
            source: BoxError::from(format!("task failed: {e}")),
        }),
    }
}

/// The blocking adapter: every [`SyncSink`] is a [`Sink`].
#[async_trait]
impl<S: SyncSink> Sink for S {
    fn name(&self) -> &str {
        SyncSink::name(self)
    }

    fn location(&self) -> String {
        SyncSink::location(self)
    }

    async fn stage(&self, job: JobId, plan: &str, id: &PackId, expected_bytes: u64) -> Result<Option<ClaimedDir>> {
        let (plan, id) = (plan.to_string(), id.clone());
        blocking(self, move |s| SyncSink::stage(s, job, &plan, &id, expected_bytes)).await
    }

    async fn discard_staging(&self, dir: &Path) -> Result<()> {
        let dir = dir.to_path_buf();
        blocking(self, move |s| SyncSink::discard_staging(s, &dir)).await
    }

    async fn store(&self, pack: &SealedPack, job: JobId) -> Result<PackInfo> {
        let pack = pack.clone();
        blocking(self, move |s| SyncSink::store(s, &pack, job)).await
    }

    async fn list(&self, plan: Option<&str>) -> Result<Vec<PackInfo>> {
        let plan = plan.map(str::to_string);
        blocking(self, move |s| SyncSink::list(s, plan.as_deref())).await
    }

    async fn open(&self, plan: &str, id: &str) -> Result<Arc<dyn PackReader>> {
        let (plan, id) = (plan.to_string(), id.to_string());
        blocking(self, move |s| SyncSink::open(s, &plan, &id)).await
    }

    async fn exists(&self, plan: &str, id: &str) -> Result<bool> {
        let (plan, id) = (plan.to_string(), id.to_string());
        blocking(self, move |s| SyncSink::exists(s, &plan, &id)).await
    }

    /// Opens and verifies the pack in one blocking task.
    async fn verify(&self, plan: &str, id: &str, verifier: &Verifier, level: VerifyLevel) -> Result<VerifyReport> {
        let (plan, id, verifier) = (plan.to_string(), id.to_string(), verifier.clone());
        blocking(self, move |s| {
            let pack = SyncSink::open(s, &plan, &id)?;
            Ok(verifier.verify(&*pack, level))
        })
        .await
    }

    async fn delete(&self, plan: &str, id: &str) -> Result<()> {
        let (plan, id) = (plan.to_string(), id.to_string());
        blocking(self, move |s| SyncSink::delete(s, &plan, &id)).await
    }

    async fn clean_leftovers(&self) -> Result<Vec<PathBuf>> {
        blocking(self, |s| SyncSink::clean_leftovers(s)).await
    }

    async fn free_space(&self) -> Result<Option<u64>> {
        blocking(self, |s| SyncSink::free_space(s)).await
    }

    async fn check(&self) -> Result<()> {
        blocking(self, |s| SyncSink::check(s)).await
    }
}
