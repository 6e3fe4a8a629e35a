//! Ctrl-C / SIGTERM during `packrat run`: the first signal cancels the job (it ends `cancelled`,
//! with its staging removed and stopped containers started again), a second one exits at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use backup_core::CancelToken;

use crate::exit;

/// Which signal cancelled the job, for the exit code.
#[derive(Debug, Clone, Default)]
pub struct Signals {
    code: Arc<AtomicU8>,
}

impl Signals {
    /// The exit code of a run cancelled by a signal: 130 (SIGINT, Ctrl-C) or 143 (SIGTERM).
    pub fn exit_code(&self) -> u8 {
        match self.code.load(Ordering::SeqCst) {
            0 => exit::CANCELLED_SIGINT,
            c => c,
        }
    }
}

/// Cancels `token` on the first SIGINT/SIGTERM (Ctrl-C/Ctrl-Break on Windows); exits the process
/// on the second. The handlers are installed before this returns.
pub fn cancel_on_signal(token: CancelToken) -> Signals {
    let signals = Signals::default();
    let code = signals.code.clone();
    let Some(mut listener) = Listener::install() else {
        tracing::warn!("cannot install signal handlers; Ctrl-C ends packrat without cleaning up");
        return signals;
    };
    tokio::spawn(async move {
        let (name, c) = listener.next().await;
        code.store(c, Ordering::SeqCst);
        eprintln!("\npackrat: {name} received: cancelling the job (send it again to exit at once)");
        token.cancel(format!("cancelled by {name}"));
        let _ = listener.next().await;
        eprintln!("packrat: second signal: exiting now; the next run cleans up after this job");
        std::process::exit(i32::from(c));
    });
    signals
}

#[cfg(unix)]
struct Listener {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Listener {
    fn install() -> Option<Listener> {
        use tokio::signal::unix::{SignalKind, signal};
        Some(Listener {
            int: signal(SignalKind::interrupt()).ok()?,
            term: signal(SignalKind::terminate()).ok()?,
        })
    }

    async fn next(&mut self) -> (&'static str, u8) {
        tokio::select! {
            _ = self.int.recv() => ("SIGINT", exit::CANCELLED_SIGINT),
            _ = self.term.recv() => ("SIGTERM", exit::CANCELLED_SIGTERM),
        }
    }
}

#[cfg(windows)]
struct Listener {
    c: tokio::signal::windows::CtrlC,
    brk: tokio::signal::windows::CtrlBreak,
}

#[cfg(windows)]
impl Listener {
    fn install() -> Option<Listener> {
        Some(Listener {
            c: tokio::signal::windows::ctrl_c().ok()?,
            brk: tokio::signal::windows::ctrl_break().ok()?,
        })
    }

    async fn next(&mut self) -> (&'static str, u8) {
        tokio::select! {
            _ = self.c.recv() => ("Ctrl-C", exit::CANCELLED_SIGINT),
            _ = self.brk.recv() => ("Ctrl-Break", exit::CANCELLED_SIGINT),
        }
    }
}
