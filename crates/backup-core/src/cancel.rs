//! [`CancelToken`]: asks a running job to stop, with the reason recorded in the job.
//!
//! The runner races the job against the token and, when it fires, drops the job's work (guards
//! such as the Docker source's stopped-container guard run on drop), removes its staging and
//! records the job `cancelled`. Blocking writers notice it too: an [`ArtifactWriter`] of a
//! cancelled pack refuses further writes, and sinks check [`SealedPack::is_cancelled`] while
//! copying, so threads doing blocking I/O stop within one buffer.
//!
//! ```
//! let token = backup_core::CancelToken::new();
//! assert!(!token.is_cancelled());
//! token.cancel("received SIGINT");
//! token.cancel("a later reason is ignored");
//! assert_eq!(token.reason().as_deref(), Some("received SIGINT"));
//! ```
//!
//! [`ArtifactWriter`]: crate::ArtifactWriter
//! [`SealedPack::is_cancelled`]: crate::SealedPack::is_cancelled

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// A cheap, cloneable cancellation flag with a reason; clones share the same state.
#[derive(Clone, Default)]
pub struct CancelToken {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    cancelled: AtomicBool,
    reason: Mutex<Option<String>>,
    notify: Notify,
}

impl CancelToken {
    /// A token that is not cancelled.
    pub fn new() -> CancelToken {
        CancelToken::default()
    }

    /// Cancels, recording `reason` ("received SIGTERM", "cancelled by admin via the API") unless
    /// it was already cancelled (the first reason wins).
    pub fn cancel(&self, reason: impl Into<String>) {
        {
            let mut r = self.inner.reason.lock().unwrap_or_else(|e| e.into_inner());
            if r.is_none() {
                *r = Some(reason.into());
            }
        }
        self.inner.cancelled.store(true, Ordering::SeqCst);
        self.inner.notify.notify_waiters();
    }

    /// True once [`CancelToken::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancelled.load(Ordering::SeqCst)
    }

    /// Why it was cancelled.
    pub fn reason(&self) -> Option<String> {
        self.inner.reason.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Resolves once the token is cancelled (immediately if it already is).
    pub async fn cancelled(&self) {
        loop {
            let notified = self.inner.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }

    /// An I/O error for blocking code that noticed the cancellation. Its kind is `Other`, never
    /// `Interrupted`, which I/O loops retry.
    pub fn io_error(&self) -> std::io::Error {
        std::io::Error::other(format!(
            "cancelled: {}",
            self.reason().unwrap_or_else(|| "cancelled".to_string())
        ))
    }
}

impl fmt::Debug for CancelToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CancelToken")
            .field("cancelled", &self.is_cancelled())
            .field("reason", &self.reason())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wakes_waiters_and_is_sticky() {
        let t = CancelToken::new();
        let waiter = {
            let t = t.clone();
            tokio::spawn(async move { t.cancelled().await })
        };
        tokio::task::yield_now().await;
        t.cancel("stop");
        waiter.await.unwrap();
        // Already cancelled: returns at once.
        t.cancelled().await;
        assert_eq!(t.reason().as_deref(), Some("stop"));
        assert_ne!(
            t.io_error().kind(),
            std::io::ErrorKind::Interrupted,
            "I/O loops retry Interrupted"
        );
    }
}
