//! The error type of this crate.

use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong while backing up, checking or restoring a SQLite database.
///
/// Messages say what failed and what to do. At the [`backup_core::Source`] boundary this is
/// wrapped with [`backup_core::Error::source`], which prefixes the source's name.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The database file does not exist.
    #[error("database file {} not found; check {hint}", path.display())]
    NotFound {
        /// The configured path.
        path: PathBuf,
        /// Where the path comes from (`sources.<name>.path`).
        hint: String,
    },
    /// The file exists but is not a SQLite database.
    #[error("{} is not a SQLite database ({detail})", path.display())]
    NotADatabase {
        /// The file.
        path: PathBuf,
        /// What SQLite (or the header check) said.
        detail: String,
    },
    /// Another connection kept the database locked for longer than `busy_timeout`.
    #[error(
        "database {} stayed locked for {timeout:?} (busy_timeout); another process holds a write lock \
         — retry later or raise busy_timeout",
        path.display()
    )]
    Locked {
        /// The database.
        path: PathBuf,
        /// How long we waited.
        timeout: Duration,
    },
    /// `PRAGMA integrity_check` reported problems.
    #[error("PRAGMA integrity_check of {what} failed: {problems}; {advice}")]
    Integrity {
        /// What was checked ("the copy sqlite/app.db of /srv/app.db").
        what: String,
        /// The first problems SQLite reported, `; `-separated.
        problems: String,
        /// What to do about it.
        advice: String,
    },
    /// Any other SQLite failure.
    #[error("{action} {}: {source}", path.display())]
    Sqlite {
        /// What we were doing ("open", "copy", …).
        action: &'static str,
        /// The database involved.
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// A filesystem operation failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What we were doing ("create", "fsync", …).
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A pack operation of `backup-core` failed.
    #[error(transparent)]
    Pack(#[from] backup_core::Error),
    /// The artifact name is not usable as a file name.
    #[error("invalid artifact name `{0}`: use 1-128 characters of A-Z a-z 0-9 _ - ., not starting with .")]
    InvalidName(String),
    /// The restore target already exists and overwriting was not requested.
    #[error("target {} exists; pass --overwrite to replace it", path.display())]
    TargetExists {
        /// The target.
        path: PathBuf,
    },
    /// The restore target is (or was) in use by an application.
    #[error(
        "target {} is in use: {} is not empty (an application has the database open or crashed while \
         writing); stop the application using it first",
        path.display(),
        companion.display()
    )]
    TargetInUse {
        /// The target.
        path: PathBuf,
        /// The non-empty `-wal` or `-journal` file next to it.
        companion: PathBuf,
    },
    /// The restore target cannot be used (a directory, no parent directory, …).
    #[error("cannot restore to {}: {reason}", path.display())]
    BadTarget {
        /// The target.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// An artifact is not a SQLite artifact, or no such artifact exists in the pack.
    #[error("{0}")]
    Artifact(String),
    /// A stored artifact does not match its manifest entry.
    #[error("artifact {path} is damaged: {reason}; run a deep verify of the pack and restore from another pack")]
    Damaged {
        /// The artifact's path in the pack.
        path: String,
        /// What does not match.
        reason: String,
    },
    /// The backup was cancelled.
    #[error("backup of {} cancelled", path.display())]
    Cancelled {
        /// The database.
        path: PathBuf,
    },
    /// A worker thread failed unexpectedly.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// Builds an [`Error::Io`]; use as `.map_err(Error::io("write", &path))`.
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { action, path, source }
    }
}

/// Turns a SQLite error about the database at `path` into the matching clear [`Error`]:
/// busy/locked → [`Error::Locked`], not a database → [`Error::NotADatabase`], otherwise
/// [`Error::Sqlite`] with `action`.
pub(crate) fn classify(
    action: &'static str,
    path: &std::path::Path,
    busy_timeout: Duration,
    e: rusqlite::Error,
) -> Error {
    use rusqlite::ErrorCode;
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => Error::Locked {
            path: path.to_path_buf(),
            timeout: busy_timeout,
        },
        Some(ErrorCode::NotADatabase) => Error::NotADatabase {
            path: path.to_path_buf(),
            detail: e.to_string(),
        },
        _ => Error::Sqlite {
            action,
            path: path.to_path_buf(),
            source: e,
        },
    }
}

impl backup_core::HasKind for Error {
    fn kind(&self) -> backup_core::ErrorKind {
        use backup_core::ErrorKind as K;
        match self {
            Error::NotFound { .. } => K::NotFound,
            Error::NotADatabase { .. } | Error::Integrity { .. } | Error::Damaged { .. } | Error::Artifact(_) => {
                K::Damaged
            }
            Error::Locked { .. } | Error::TargetInUse { .. } => K::Busy,
            Error::Sqlite { source, .. } => match source.sqlite_error_code() {
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => K::Busy,
                Some(rusqlite::ErrorCode::DiskFull) => K::DiskFull,
                Some(rusqlite::ErrorCode::PermissionDenied | rusqlite::ErrorCode::ReadOnly) => K::Denied,
                Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt) => K::Damaged,
                _ => K::Other,
            },
            Error::Io { source, .. } => K::of_io(source),
            Error::Pack(e) => e.kind(),
            Error::InvalidName(_) | Error::BadTarget { .. } | Error::TargetExists { .. } => K::Config,
            Error::Cancelled { .. } => K::Cancelled,
            _ => K::Other,
        }
    }
}
