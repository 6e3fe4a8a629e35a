//! Exit codes, and the error that ends a program with one: the mapping of error kinds to exit
//! codes, shared by `packrat` and `packratd`.
//!
//! ```
//! use packrat_app::exit::{self, ExitError};
//! let e = ExitError::from(backup_core::Error::NotFound("no plan `x`".into()));
//! assert_eq!(e.code, exit::USAGE);
//! ```

// Exit codes, documented in `packrat --help`, docs/cli.md and the README.

/// Success.
pub const OK: u8 = 0;
/// The operation ran and failed: a job failed, verification found problems, a restore failed.
pub const FAILED: u8 = 1;
/// Bad usage or configuration: unknown flag, invalid config, unknown plan or pack, no (or the
/// wrong) identity for an encrypted pack.
pub const USAGE: u8 = 2;
/// Busy: the plan (or installation) is locked by another packrat process.
pub const BUSY: u8 = 3;
/// The job was cancelled by SIGINT (Ctrl-C; on Windows also Ctrl-Break), 128 + 2 as shells do.
pub const CANCELLED_SIGINT: u8 = 130;
/// The job was cancelled by SIGTERM, 128 + 15 as shells do.
pub const CANCELLED_SIGTERM: u8 = 143;

/// The exit code of an error of this kind outside a job (a job's own failure is [`FAILED`]).
pub fn code_of(kind: backup_core::ErrorKind) -> u8 {
    use backup_core::ErrorKind as K;
    match kind {
        K::Config | K::NotFound | K::Key => USAGE,
        K::Busy => BUSY,
        _ => FAILED,
    }
}

/// An error that ends the program with a message and an exit code.
#[derive(Debug)]
pub struct ExitError {
    /// Exit code.
    pub code: u8,
    /// Message for stderr.
    pub message: String,
}

impl ExitError {
    /// A usage/config error (exit 2).
    pub fn usage(message: impl Into<String>) -> ExitError {
        ExitError {
            code: USAGE,
            message: message.into(),
        }
    }

    /// A failure (exit 1).
    pub fn failed(message: impl Into<String>) -> ExitError {
        ExitError {
            code: FAILED,
            message: message.into(),
        }
    }
}

impl From<backup_core::Error> for ExitError {
    fn from(e: backup_core::Error) -> ExitError {
        ExitError {
            code: code_of(e.kind()),
            message: e.chain(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_the_kind_not_the_shape() {
        // A SQLite lock inside a source's error is "busy", however deep it sits.
        let locked = source_sqlite::Error::Locked {
            path: "/srv/app.db".into(),
            timeout: std::time::Duration::from_secs(30),
        };
        let e = backup_core::Error::source("app_db")(locked);
        assert_eq!(ExitError::from(e).code, BUSY);
        let missing = backup_core::Error::NotFound("no plan `x` in the config".into());
        assert_eq!(ExitError::from(missing).code, USAGE);
        let io = std::io::Error::new(std::io::ErrorKind::StorageFull, "full");
        assert_eq!(ExitError::from(backup_core::Error::sink("local")(io)).code, FAILED);
        assert_eq!(code_of(backup_core::ErrorKind::Config), USAGE);
    }
}
