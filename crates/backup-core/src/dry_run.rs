//! [`DryRunSink`]: a sink that reads and checks for real but changes nothing.

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use tracing::info;

use crate::lock::ClaimedDir;
use crate::pack::SealedPack;
use crate::reader::PackReader;
use crate::sink::{PackInfo, Sink};
use crate::verify::{Verifier, VerifyLevel, VerifyReport};
use crate::{JobId, PackId, Result};

/// A sink wrapper for dry runs (`packrat prune --dry-run`): everything that would change the
/// sink — storing, staging, deleting, cleaning leftovers — is logged and skipped; reading
/// (listing, opening, verifying, free space, the health check) passes through.
///
/// A skipped deletion is still checked the way the sink checks a real one (the pack must open
/// as a valid pack of ours), so a dry run fails where the real run would. A skipped store
/// returns the pack as it is now ([`PackInfo::location`] is where the sealed pack sits).
///
/// `S` is any pointer to a sink: `Arc<dyn Sink>`, `&dyn Sink`, `Arc<LocalSink>`, ….
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// # use std::sync::Arc;
/// # use backup_core::{DryRunSink, Error, JobId, PackInfo, PackReader, SealedPack, Sink, SyncSink};
/// # #[derive(Debug, Clone)]
/// # struct Nowhere;
/// # impl SyncSink for Nowhere {
/// #     type Error = Error;
/// #     fn name(&self) -> &str { "nowhere" }
/// #     fn location(&self) -> String { "nowhere".into() }
/// #     fn store(&self, _: &SealedPack, _: JobId) -> Result<PackInfo, Error> { unreachable!() }
/// #     fn list(&self, _: Option<&str>) -> Result<Vec<PackInfo>, Error> { Ok(Vec::new()) }
/// #     fn open(&self, p: &str, i: &str) -> Result<Arc<dyn PackReader>, Error> { Err(Error::NotFound(format!("no pack {p}/{i}"))) }
/// #     fn delete(&self, _: &str, _: &str) -> Result<(), Error> { unreachable!() }
/// # }
/// let sink: Arc<dyn Sink> = Arc::new(Nowhere);
/// let dry = DryRunSink::new(sink.clone());
/// assert!(dry.list(None).await.unwrap().is_empty()); // reads pass through
/// assert!(dry.delete("nightly", "p1").await.is_err()); // checked like a real deletion
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct DryRunSink<S> {
    inner: S,
}

impl<S> DryRunSink<S>
where
    S: Deref + Send + Sync + std::fmt::Debug,
    S::Target: Sink,
{
    /// Wraps `inner`.
    pub fn new(inner: S) -> DryRunSink<S> {
        DryRunSink { inner }
    }

    /// The wrapped sink.
    pub fn inner(&self) -> &S::Target {
        &self.inner
    }
}

#[async_trait]
impl<S> Sink for DryRunSink<S>
where
    S: Deref + Send + Sync + std::fmt::Debug,
    S::Target: Sink,
{
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn location(&self) -> String {
        self.inner.location()
    }

    /// Hosts no staging: the pack is assembled elsewhere.
    async fn stage(&self, _job: JobId, _plan: &str, _id: &PackId, _expected_bytes: u64) -> Result<Option<ClaimedDir>> {
        Ok(None)
    }

    async fn discard_staging(&self, dir: &Path) -> Result<()> {
        info!(sink = self.name(), dir = %dir.display(), "dry run: would discard staging");
        Ok(())
    }

    async fn store(&self, pack: &SealedPack, _job: JobId) -> Result<PackInfo> {
        let m = pack.manifest();
        info!(sink = self.name(), plan = %m.plan, pack = %m.pack_id, "dry run: would store");
        Ok(PackInfo::from_pack(self.name(), &pack.to_pack()))
    }

    async fn list(&self, plan: Option<&str>) -> Result<Vec<PackInfo>> {
        self.inner.list(plan).await
    }

    async fn open(&self, plan: &str, id: &str) -> Result<Arc<dyn PackReader>> {
        self.inner.open(plan, id).await
    }

    async fn exists(&self, plan: &str, id: &str) -> Result<bool> {
        self.inner.exists(plan, id).await
    }

    async fn verify(&self, plan: &str, id: &str, verifier: &Verifier, level: VerifyLevel) -> Result<VerifyReport> {
        self.inner.verify(plan, id, verifier, level).await
    }

    /// Opens the pack (as a real deletion would check it), then skips the deletion.
    async fn delete(&self, plan: &str, id: &str) -> Result<()> {
        let pack = self.inner.open(plan, id).await?;
        info!(sink = self.name(), location = %pack.location(), "dry run: would delete pack");
        Ok(())
    }

    /// Removes nothing.
    async fn clean_leftovers(&self) -> Result<Vec<PathBuf>> {
        info!(sink = self.name(), "dry run: would clean leftovers");
        Ok(Vec::new())
    }

    async fn free_space(&self) -> Result<Option<u64>> {
        self.inner.free_space().await
    }

    async fn check(&self) -> Result<()> {
        self.inner.check().await
    }
}
