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
    /// The server's MongoDB version is one the driver cannot talk to (older than 4.4).
    IncompatibleServer,
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
            Cause::IncompatibleServer => "use a MongoDB version packrat supports (see docs/mongo.md)",
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
            Cause::IncompatibleServer => "unsupported server version",
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
    /// The server is older than the driver supports (the driver refuses to talk to it).
    #[error(
        "{what}: MongoDB server at {address} reports wire version {wire} ({version}); packrat's MongoDB \
         driver supports MongoDB {min} and newer (wire version {min_wire}+): upgrade the server to MongoDB {min} or \
         newer, or keep backing it up with the mongodump of its own version until then (see docs/mongo.md)"
    )]
    ServerTooOld {
        /// What we were doing.
        what: String,
        /// The server's `host:port`.
        address: String,
        /// The newest wire version the server speaks.
        wire: i32,
        /// The MongoDB release of that wire version (`MongoDB 4.0`).
        version: String,
        /// The oldest MongoDB release the driver supports (`4.4`).
        min: String,
        /// Its wire version.
        min_wire: i32,
    },
    /// The server is newer than the driver supports.
    #[error(
        "{what}: MongoDB server at {address} requires wire version {wire} or newer, but packrat's MongoDB driver \
         speaks up to wire version {max}: use a newer packrat, or a MongoDB release it supports (see docs/mongo.md)"
    )]
    ServerTooNew {
        /// What we were doing.
        what: String,
        /// The server's `host:port`.
        address: String,
        /// The oldest wire version the server accepts.
        wire: i32,
        /// The newest wire version the driver speaks.
        max: i32,
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
            Error::ServerTooOld { .. } | Error::ServerTooNew { .. } => Some(Cause::IncompatibleServer),
            _ => None,
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
