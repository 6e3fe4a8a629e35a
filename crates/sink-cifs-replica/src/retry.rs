//! Retries with exponential backoff for transient I/O errors (a share that hiccups).

use std::io;
use std::time::Duration;

use tracing::warn;

/// How often, and with which pauses, an operation that failed with a transient I/O error is
/// tried again.
///
/// ```
/// use std::time::Duration;
/// use sink_cifs_replica::RetryPolicy;
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

    /// Runs `op` until it succeeds, fails with an error that is not transient, or the retries
    /// are used up. `what` names the operation in log lines.
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
}

/// True for errors a network filesystem reports when the server or the network hiccups
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
