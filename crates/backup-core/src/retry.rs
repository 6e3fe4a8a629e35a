//! Retries with exponential backoff: [`RetryPolicy`] (the pauses, and a blocking retry loop for
//! one I/O step), [`is_transient`] (which OS errors are worth another try) and [`RetrySink`],
//! the wrapper that retries whole sink operations that failed with a transient error.

use std::future::Future;
use std::io;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tracing::warn;

use crate::lock::ClaimedDir;
use crate::pack::SealedPack;
use crate::reader::PackReader;
use crate::sink::{PackInfo, Sink};
use crate::verify::{Verifier, VerifyLevel, VerifyReport};
use crate::{ErrorKind, JobId, PackId, Result};

/// How often, and with which pauses, an operation that failed with a transient error is tried
/// again.
///
/// ```
/// use std::time::Duration;
/// use backup_core::RetryPolicy;
/// let p = RetryPolicy::new(3, Duration::from_secs(1));
/// assert_eq!(p.delay(0), Duration::from_secs(1));
/// assert_eq!(p.delay(2), Duration::from_secs(4));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub retries: u32,
    /// The pause before the first retry; doubled on every further one.
    pub first_delay: Duration,
    /// The longest pause.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// 3 retries, 1 s first pause, at most 60 s.
    fn default() -> Self {
        RetryPolicy::new(3, Duration::from_secs(1))
    }
}

impl RetryPolicy {
    /// `retries` retries, starting with a pause of `first_delay` (at most 60 s per pause).
    pub fn new(retries: u32, first_delay: Duration) -> RetryPolicy {
        RetryPolicy {
            retries,
            first_delay,
            max_delay: Duration::from_secs(60),
        }
    }

    /// No retries.
    pub fn none() -> RetryPolicy {
        RetryPolicy::new(0, Duration::ZERO)
    }

    /// The pause before retry number `n + 1`.
    pub fn delay(&self, n: u32) -> Duration {
        self.first_delay
            .saturating_mul(2u32.saturating_pow(n.min(16)))
            .min(self.max_delay)
    }

    /// Runs the blocking I/O step `op` until it succeeds, fails with an error that is not
    /// [transient](is_transient), or the retries are used up. `what` names the step in log lines.
    pub fn run<T>(&self, what: &str, mut op: impl FnMut() -> io::Result<T>) -> io::Result<T> {
        let mut n = 0;
        loop {
            match op() {
                Err(e) if n < self.retries && is_transient(&e) => {
                    let pause = self.delay(n);
                    warn!("{what} failed ({e}); retry {} of {} in {pause:?}", n + 1, self.retries);
                    std::thread::sleep(pause);
                    n += 1;
                }
                other => return other,
            }
        }
    }

    /// Runs the async operation `op` until it succeeds, fails with an error whose kind is not
    /// [transient](is_transient_kind), or the retries are used up. Before each retry,
    /// `already_done` is asked whether the failed attempt took effect after all (its reply was
    /// lost); `Some` ends the loop with that value. `what` names the operation in log lines.
    pub async fn run_async<T, Op, OpFut, Done, DoneFut>(
        &self,
        what: &str,
        mut op: Op,
        mut already_done: Done,
    ) -> Result<T>
    where
        Op: FnMut() -> OpFut,
        OpFut: Future<Output = Result<T>>,
        Done: FnMut() -> DoneFut,
        DoneFut: Future<Output = Option<T>>,
    {
        let mut n = 0;
        loop {
            match op().await {
                Err(e) if n < self.retries && is_transient_kind(e.kind()) => {
                    let pause = self.delay(n);
                    warn!(
                        "{what} failed ({}); retry {} of {} in {pause:?}",
                        e.chain(),
                        n + 1,
                        self.retries
                    );
                    tokio::time::sleep(pause).await;
                    n += 1;
                    if let Some(done) = already_done().await {
                        return Ok(done);
                    }
                }
                other => return other,
            }
        }
    }
}

/// True for OS errors a network filesystem reports when the server or the network hiccups
/// (timeouts, resets, `EIO`, `EAGAIN`, a stale handle), as opposed to errors that will not go
/// away by trying again (permission denied, no space, not found).
pub fn is_transient(e: &io::Error) -> bool {
    use io::ErrorKind as K;
    if matches!(
        e.kind(),
        K::TimedOut
            | K::Interrupted
            | K::WouldBlock
            | K::ConnectionReset
            | K::ConnectionAborted
            | K::ConnectionRefused
            | K::NotConnected
            | K::BrokenPipe
            | K::HostUnreachable
            | K::NetworkUnreachable
            | K::NetworkDown
            | K::StaleNetworkFileHandle
            | K::ResourceBusy
    ) {
        return true;
    }
    #[cfg(unix)]
    {
        // EIO (5) and EHOSTDOWN (112 on Linux): what CIFS and FUSE return for a lost server.
        const EIO: i32 = 5;
        #[cfg(target_os = "linux")]
        const EHOSTDOWN: i32 = 112;
        #[cfg(not(target_os = "linux"))]
        const EHOSTDOWN: i32 = 64;
        matches!(e.raw_os_error(), Some(EIO | EHOSTDOWN))
    }
    #[cfg(windows)]
    {
        // ERROR_NETNAME_DELETED, ERROR_UNEXP_NET_ERR, ERROR_SEM_TIMEOUT, ERROR_NETWORK_BUSY,
        // ERROR_BAD_NETPATH (transiently, while a server restarts), ERROR_VC_DISCONNECTED.
        matches!(e.raw_os_error(), Some(64 | 59 | 121 | 54 | 53 | 240))
    }
    #[cfg(not(any(unix, windows)))]
    false
}

/// True for the error kinds [`RetrySink`] retries: [`ErrorKind::Unavailable`] (a server or share
/// that did not answer, a share not mounted) and [`ErrorKind::Io`] (other I/O failures).
pub fn is_transient_kind(kind: ErrorKind) -> bool {
    matches!(kind, ErrorKind::Unavailable | ErrorKind::Io)
}

/// A sink whose operations are retried with backoff ([`RetryPolicy`]) when they fail with a
/// transient error ([`is_transient_kind`]: unavailable, I/O); other failures (not found, damaged,
/// disk full, denied, busy, …) are returned at once.
///
/// A retry never makes things worse: before a `store` is tried again, the pack is looked up, and
/// when the failed attempt put it in place after all (with the same manifest) that counts as
/// success; a `delete` whose pack is gone counts as done. Steps that a sink retries inside one
/// operation (the replica retries each file it copies, so a hiccup does not restart a whole copy)
/// stay in the sink; this wrapper retries the operation as a whole.
///
/// `S` is any pointer to a sink: `Arc<dyn Sink>`, `&dyn Sink`, `Arc<LocalSink>`, ….
#[derive(Debug, Clone)]
pub struct RetrySink<S> {
    inner: S,
    policy: RetryPolicy,
}

impl<S> RetrySink<S>
where
    S: Deref + Send + Sync + std::fmt::Debug,
    S::Target: Sink,
{
    /// Wraps `inner`, retrying by `policy`.
    pub fn new(inner: S, policy: RetryPolicy) -> RetrySink<S> {
        RetrySink { inner, policy }
    }

    /// The retries.
    pub fn policy(&self) -> RetryPolicy {
        self.policy
    }

    /// The wrapped sink.
    pub fn inner(&self) -> &S::Target {
        &self.inner
    }

    /// `op` retried by the policy, with no "already done" check.
    async fn retry<T, Op, OpFut>(&self, what: &str, op: Op) -> Result<T>
    where
        Op: FnMut() -> OpFut,
        OpFut: Future<Output = Result<T>>,
    {
        let what = format!("sink `{}`: {what}", self.inner.name());
        self.policy.run_async(&what, op, || async { None }).await
    }
}

#[async_trait]
impl<S> Sink for RetrySink<S>
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

    async fn stage(&self, job: JobId, plan: &str, id: &PackId, expected_bytes: u64) -> Result<Option<ClaimedDir>> {
        self.retry("stage", || self.inner.stage(job, plan, id, expected_bytes))
            .await
    }

    async fn discard_staging(&self, dir: &Path) -> Result<()> {
        self.retry("discard staging", || self.inner.discard_staging(dir)).await
    }

    /// Retried; a retry that finds this very pack in place (same manifest) returns it.
    async fn store(&self, pack: &SealedPack, job: JobId) -> Result<PackInfo> {
        let m = pack.manifest();
        let what = format!("sink `{}`: store pack {}", self.inner.name(), m.pack_id);
        let stored = || async {
            let found = self.inner.open(&m.plan, &m.pack_id).await.ok()?;
            (found.manifest() == m).then(|| PackInfo::from_pack(self.inner.name(), &*found))
        };
        self.policy
            .run_async(&what, || self.inner.store(pack, job), stored)
            .await
    }

    async fn list(&self, plan: Option<&str>) -> Result<Vec<PackInfo>> {
        self.retry("list", || self.inner.list(plan)).await
    }

    async fn open(&self, plan: &str, id: &str) -> Result<Arc<dyn PackReader>> {
        self.retry("open", || self.inner.open(plan, id)).await
    }

    async fn exists(&self, plan: &str, id: &str) -> Result<bool> {
        self.retry("look up", || self.inner.exists(plan, id)).await
    }

    async fn verify(&self, plan: &str, id: &str, verifier: &Verifier, level: VerifyLevel) -> Result<VerifyReport> {
        self.retry("verify", || self.inner.verify(plan, id, verifier, level))
            .await
    }

    /// Retried; a retry that finds the pack gone counts as done.
    async fn delete(&self, plan: &str, id: &str) -> Result<()> {
        let what = format!("sink `{}`: delete pack {plan}/{id}", self.inner.name());
        let gone = || async { (self.inner.exists(plan, id).await.ok() == Some(false)).then_some(()) };
        self.policy.run_async(&what, || self.inner.delete(plan, id), gone).await
    }

    async fn clean_leftovers(&self) -> Result<Vec<PathBuf>> {
        self.retry("clean leftovers", || self.inner.clean_leftovers()).await
    }

    async fn free_space(&self) -> Result<Option<u64>> {
        self.retry("read free space", || self.inner.free_space()).await
    }

    async fn check(&self) -> Result<()> {
        self.retry("check", || self.inner.check()).await
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    #[test]
    fn transient_errors_are_retried_with_growing_pauses_then_given_up() {
        let p = RetryPolicy::new(2, Duration::from_millis(1));
        let calls = Cell::new(0);
        let r: io::Result<()> = p.run("write", || {
            calls.set(calls.get() + 1);
            Err(io::Error::from(io::ErrorKind::TimedOut))
        });
        assert_eq!(r.unwrap_err().kind(), io::ErrorKind::TimedOut);
        assert_eq!(calls.get(), 3, "one attempt plus two retries");

        let calls = Cell::new(0);
        let r = p.run("write", || {
            calls.set(calls.get() + 1);
            if calls.get() < 3 {
                Err(io::Error::from_raw_os_error(5))
            } else {
                Ok(42)
            }
        });
        assert_eq!(r.unwrap(), 42);
        assert_eq!(p.delay(0), Duration::from_millis(1));
        assert_eq!(p.delay(1), Duration::from_millis(2));
        assert_eq!(
            RetryPolicy::new(9, Duration::from_secs(10)).delay(8),
            Duration::from_secs(60)
        );
    }

    #[test]
    fn permanent_errors_fail_at_once() {
        let p = RetryPolicy::new(5, Duration::from_millis(1));
        let calls = Cell::new(0);
        let r: io::Result<()> = p.run("create", || {
            calls.set(calls.get() + 1);
            Err(io::Error::from(io::ErrorKind::PermissionDenied))
        });
        assert!(r.is_err());
        assert_eq!(calls.get(), 1);
        assert!(!is_transient(&io::Error::from(io::ErrorKind::NotFound)));
        assert!(!is_transient(&io::Error::from(io::ErrorKind::StorageFull)));
    }
}
