//! The error type of this crate.

use std::fmt;

/// Why talking to MongoDB failed, in the operator's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Cause {
    /// Wrong user name, password or `authSource`.
    AuthFailed,
    /// Authenticated, but the user lacks a role.
    Unauthorized,
    /// No server could be reached (down, wrong host or port, firewall, TLS mismatch).
    Unreachable,
    /// The connection broke in the middle of an operation.
    ConnectionLost,
    /// The server refused the operation for another reason.
    Server,
}

impl Cause {
    /// What to do about it.
    pub fn advice(self) -> &'static str {
        match self {
            Cause::AuthFailed => "check the user name, password and authSource in the connection URI",
            Cause::Unauthorized => {
                "grant the user the `read` role on the database (for backups) or `readWrite` (for restores)"
            }
            Cause::Unreachable => {
                "check that the server is running and that the host, port and TLS options in the connection URI are right"
            }
            Cause::ConnectionLost => "the server stopped or the network failed; run the job again once it is back",
            Cause::Server => "see the server's message",
        }
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Cause::AuthFailed => "authentication failed",
            Cause::Unauthorized => "not authorized",
            Cause::Unreachable => "server unreachable",
            Cause::ConnectionLost => "connection lost",
            Cause::Server => "server error",
        })
    }
}

/// Everything that can go wrong while backing up, checking, sampling or restoring MongoDB data.
///
/// Messages name the collection and the cause and say what to do. They never contain the
/// connection URI's password: driver messages are redacted before they are stored here. At the
/// [`backup_core::Source`] boundary this is wrapped with [`backup_core::Error::source`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The connection URI could not be read or parsed.
    #[error("connection URI: {0}")]
    Uri(String),
    /// A driver operation failed.
    #[error("{what}: {cause}: {detail}; {}", cause.advice())]
    Driver {
        /// What we were doing, naming the collection (`reading collection mes.api_logs`).
        what: String,
        /// The classified cause.
        cause: Cause,
        /// The driver's message, redacted.
        detail: String,
    },
    /// A collection named in the plan does not exist.
    #[error(
        "collection `{collection}` not found in database `{database}` (it has: {existing}); fix `collections` in the plan"
    )]
    CollectionMissing {
        /// The database.
        database: String,
        /// The missing collection.
        collection: String,
        /// The collections that exist, comma-separated.
        existing: String,
    },
    /// An artifact is not a valid stream of BSON documents, or its metadata is unreadable.
    #[error("{path}: {reason}")]
    Artifact {
        /// The artifact's path in the pack.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A restore cannot proceed as asked.
    #[error("restore: {0}")]
    Restore(String),
    /// A pack or filesystem operation of `backup-core` failed.
    #[error(transparent)]
    Core(#[from] backup_core::Error),
    /// Writing an artifact failed.
    #[error("write {path}: {source}")]
    Write {
        /// The artifact.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// The classified cause of a driver failure.
    pub fn cause(&self) -> Option<Cause> {
        match self {
            Error::Driver { cause, .. } => Some(*cause),
            _ => None,
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
