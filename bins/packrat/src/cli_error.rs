//! Exit codes and the error that ends a program with one; shared by `packrat` and `packratd`
//! (the daemon includes this file and `wire.rs` by path).

/// Exit codes, documented in `packrat --help` and the README.
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// The operation ran and failed: a job failed, verification found problems, a restore failed.
    pub const FAILED: u8 = 1;
    /// Bad usage or configuration: unknown flag, invalid config, unknown plan or pack.
    pub const USAGE: u8 = 2;
    /// Busy: the plan (or installation) is locked by another packrat process.
    pub const BUSY: u8 = 3;
    /// The job was cancelled by SIGINT (Ctrl-C; on Windows also Ctrl-Break), 128 + 2 as shells do.
    pub const CANCELLED_SIGINT: u8 = 130;
    /// The job was cancelled by SIGTERM, 128 + 15 as shells do.
    pub const CANCELLED_SIGTERM: u8 = 143;
}

/// An error that ends the program with a message and an exit code.
#[derive(Debug)]
pub struct CliError {
    /// Exit code.
    pub code: u8,
    /// Message for stderr.
    pub message: String,
}

impl CliError {
    /// A usage/config error (exit 2).
    pub fn usage(message: impl Into<String>) -> CliError {
        CliError {
            code: exit::USAGE,
            message: message.into(),
        }
    }

    /// A failure (exit 1).
    pub fn failed(message: impl Into<String>) -> CliError {
        CliError {
            code: exit::FAILED,
            message: message.into(),
        }
    }
}

impl From<backup_core::Error> for CliError {
    fn from(e: backup_core::Error) -> CliError {
        use backup_core::ErrorKind as K;
        let code = match e.kind() {
            K::Config | K::NotFound => exit::USAGE,
            K::Busy => exit::BUSY,
            _ => exit::FAILED,
        };
        CliError {
            code,
            message: e.chain(),
        }
    }
}
