//! The error type of `backup-core`.

use std::path::{Path, PathBuf};

/// A boxed error from another crate (a source, a sink, a policy).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Result alias using [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What kind of failure an error is, so that callers (exit codes, HTTP status, alerts, retries)
/// classify it without matching its shape. Every crate's error type says its kind through
/// [`HasKind`], and [`Error::kind`] passes it through the `Source`/`Sink` wrappers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// The configuration (or the command line) is invalid: fix it.
    Config,
    /// What was asked for does not exist (a plan, a pack, a job, a source file).
    NotFound,
    /// Something is in use: a plan already running, a database locked beyond its busy timeout.
    Busy,
    /// The operation was cancelled on request.
    Cancelled,
    /// A filesystem is full.
    DiskFull,
    /// Data does not match what it should be (a damaged pack, a checksum mismatch).
    Damaged,
    /// A server, share or engine could not be reached, or a share is not mounted.
    Unavailable,
    /// Credentials were refused or permissions are missing.
    Denied,
    /// Some other I/O failure.
    Io,
    /// An encrypted artifact was read without an identity, or with none that matches.
    Key,
    /// Anything else.
    Other,
}

impl ErrorKind {
    /// The kebab-case name (`disk-full`), as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Config => "config",
            ErrorKind::NotFound => "not-found",
            ErrorKind::Busy => "busy",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::DiskFull => "disk-full",
            ErrorKind::Damaged => "damaged",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Denied => "denied",
            ErrorKind::Io => "io",
            ErrorKind::Key => "key",
            ErrorKind::Other => "other",
        }
    }

    /// The kind of an OS error.
    pub fn of_io(e: &std::io::Error) -> ErrorKind {
        use std::io::ErrorKind as K;
        match e.kind() {
            K::NotFound => ErrorKind::NotFound,
            K::PermissionDenied | K::ReadOnlyFilesystem => ErrorKind::Denied,
            K::StorageFull | K::QuotaExceeded => ErrorKind::DiskFull,
            K::ResourceBusy | K::WouldBlock => ErrorKind::Busy,
            K::InvalidData | K::UnexpectedEof => ErrorKind::Damaged,
            K::TimedOut
            | K::ConnectionRefused
            | K::ConnectionReset
            | K::ConnectionAborted
            | K::NotConnected
            | K::HostUnreachable
            | K::NetworkUnreachable
            | K::NetworkDown
            | K::StaleNetworkFileHandle => ErrorKind::Unavailable,
            _ => ErrorKind::Io,
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error that knows its [`ErrorKind`]; every crate's error type implements it, which is what
/// [`Error::source`] and [`Error::sink`] require.
pub trait HasKind {
    /// What kind of failure this is.
    fn kind(&self) -> ErrorKind;
}

impl HasKind for std::io::Error {
    fn kind(&self) -> ErrorKind {
        ErrorKind::of_io(self)
    }
}

/// Everything that can go wrong in `backup-core`, and the wrapper for errors of sources and sinks.
///
/// Messages say what failed and what to do; they never contain secrets.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A filesystem operation failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What we were doing ("create", "write", "rename", …).
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The configuration is invalid.
    #[error("{0}")]
    Config(String),
    /// A `manifest.json` is missing or unreadable: the directory is not a (complete) pack.
    #[error("{} is not a packrat pack: {reason}", path.display())]
    NotAPack {
        /// The directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// An artifact path is unsafe (absolute, `..`) or used twice.
    #[error("invalid artifact path `{path}`: {reason}")]
    ArtifactPath {
        /// The offending relative path.
        path: String,
        /// Why.
        reason: String,
    },
    /// A restore was refused because the quick check of the pack found problems.
    #[error("{}", damaged_message(pack, location, problems))]
    DamagedPack {
        /// The pack id.
        pack: String,
        /// Where the pack is.
        location: String,
        /// What is wrong, per file.
        problems: Vec<crate::verify::Problem>,
    },
    /// The state store failed.
    #[error("state store {}: {source}", path.display())]
    State {
        /// The database file.
        path: PathBuf,
        /// The SQLite error.
        #[source]
        source: rusqlite::Error,
    },
    /// The filesystem of the state store is full: SQLite could not write `state.db` or its
    /// WAL/shared-memory files.
    #[error(
        "no space left for the state store at {}; free space on that filesystem or move state_dir",
        path.display()
    )]
    StateStoreFull {
        /// The database file.
        path: PathBuf,
    },
    /// Another process holds a lock (a plan already running, a daemon already up).
    #[error("{}", match holder {
        Some(pid) => i18n::tr!("error-locked-pid", what = what.as_str(), pid = *pid),
        None => i18n::tr!("error-locked", what = what.as_str()),
    })]
    Locked {
        /// What is locked.
        what: String,
        /// The pid of the holder, when known.
        holder: Option<u32>,
    },
    /// Something was asked for that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A source failed.
    #[error("source `{name}`: {source}")]
    Source {
        /// The source's configured name.
        name: String,
        /// What kind of failure the source reported.
        kind: ErrorKind,
        /// The source's own error.
        #[source]
        source: BoxError,
    },
    /// A sink failed.
    #[error("sink `{name}`: {source}")]
    Sink {
        /// The sink's configured name.
        name: String,
        /// What kind of failure the sink reported.
        kind: ErrorKind,
        /// The sink's own error.
        #[source]
        source: BoxError,
    },
    /// The operation was cancelled.
    #[error("cancelled: {0}")]
    Cancelled(String),
    /// Any other failure, already phrased for the operator.
    /// An encrypted artifact cannot be read: no identity was given, or none matches its
    /// recipients (the message names them).
    #[error("{0}")]
    Key(String),
    /// Data is damaged (an unreadable age header, a stream that does not decrypt).
    #[error("{0}")]
    Damaged(String),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// Builds an [`Error::Io`]; use as `.map_err(Error::io("write", &path))`.
    pub fn io(action: &'static str, path: impl AsRef<Path>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.as_ref().to_path_buf();
        move |source| Error::Io { action, path, source }
    }

    /// Wraps a source's error, keeping its kind; use as `.map_err(Error::source("app_db"))`.
    pub fn source<E: Into<BoxError> + HasKind>(name: impl Into<String>) -> impl FnOnce(E) -> Error {
        let name = name.into();
        move |e| Error::Source {
            name,
            kind: e.kind(),
            source: e.into(),
        }
    }

    /// Wraps a sink's error, keeping its kind; use as `.map_err(Error::sink("local"))`.
    pub fn sink<E: Into<BoxError> + HasKind>(name: impl Into<String>) -> impl FnOnce(E) -> Error {
        let name = name.into();
        move |e| Error::Sink {
            name,
            kind: e.kind(),
            source: e.into(),
        }
    }

    /// What kind of failure this is (see [`ErrorKind`]).
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Io { source, .. } => ErrorKind::of_io(source),
            Error::Config(_) => ErrorKind::Config,
            Error::NotFound(_) => ErrorKind::NotFound,
            Error::NotAPack { .. } | Error::ArtifactPath { .. } | Error::DamagedPack { .. } => ErrorKind::Damaged,
            Error::State { source, .. } => match source.sqlite_error_code() {
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => ErrorKind::Busy,
                Some(rusqlite::ErrorCode::ReadOnly | rusqlite::ErrorCode::PermissionDenied) => ErrorKind::Denied,
                Some(rusqlite::ErrorCode::CannotOpen) => ErrorKind::Io,
                _ => ErrorKind::Other,
            },
            Error::StateStoreFull { .. } => ErrorKind::DiskFull,
            Error::Locked { .. } => ErrorKind::Busy,
            Error::Source { kind, .. } | Error::Sink { kind, .. } => *kind,
            Error::Cancelled(_) => ErrorKind::Cancelled,
            Error::Key(_) => ErrorKind::Key,
            Error::Damaged(_) => ErrorKind::Damaged,
            Error::Other(_) => ErrorKind::Other,
        }
    }

    /// Wraps an error of the state store's database `path`: [`Error::StateStoreFull`] when the
    /// filesystem is full (`SQLITE_FULL`, or an I/O error while the filesystem has no space
    /// left: SQLite reports a full disk while growing its shared-memory file as "disk I/O
    /// error"), else [`Error::State`].
    pub fn state(path: impl Into<PathBuf>, source: rusqlite::Error) -> Error {
        let path = path.into();
        let full = match source.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DiskFull) => true,
            Some(rusqlite::ErrorCode::SystemIoFailure) => no_space_left(&path),
            _ => false,
        };
        if full {
            Error::StateStoreFull { path }
        } else {
            Error::State { path, source }
        }
    }

    /// The full chain of causes in one line, `a: b: c`, without repeating a cause already shown.
    pub fn chain(&self) -> String {
        error_chain(self)
    }

    /// True when the underlying cause is "no space left on device".
    pub fn is_disk_full(&self) -> bool {
        if self.kind() == ErrorKind::DiskFull {
            return true;
        }
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(self);
        while let Some(e) = cur {
            if let Some(io) = e.downcast_ref::<std::io::Error>()
                && io.kind() == std::io::ErrorKind::StorageFull
            {
                return true;
            }
            cur = e.source();
        }
        false
    }
}

impl HasKind for Error {
    fn kind(&self) -> ErrorKind {
        Error::kind(self)
    }
}

/// True when the filesystem holding `file` has (almost) no space left: less than 1 MiB, too
/// little for SQLite to grow its files.
fn no_space_left(file: &Path) -> bool {
    let dir = file
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs4::available_space(dir).is_ok_and(|free| free < 1024 * 1024)
}

/// At most this many problems are spelled out in an error message.
const MAX_SHOWN: usize = 10;

fn damaged_message(pack: &str, location: &str, problems: &[crate::verify::Problem]) -> String {
    let mut shown: Vec<String> = problems
        .iter()
        .take(MAX_SHOWN)
        .map(|p| format!("{}: {}", p.path, p.reason))
        .collect();
    if problems.len() > MAX_SHOWN {
        shown.push(format!("and {} more", problems.len() - MAX_SHOWN));
    }
    format!(
        "pack {pack} ({location}) is damaged, nothing was restored: {}; run `packrat verify {location}` to see every \
         problem, restore from another pack, or pass --allow-damaged to restore only the artifacts that check out",
        shown.join("; "),
    )
}

/// Renders an error and its causes in one line, skipping causes whose text the previous level
/// already contains.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let s = e.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = e.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sqlite(code: i32) -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None)
    }

    #[test]
    fn a_full_disk_under_the_state_store_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state.db");
        // SQLITE_FULL is always a full filesystem.
        let e = Error::state(&db, sqlite(13));
        assert_eq!(
            e.to_string(),
            format!(
                "no space left for the state store at {}; free space on that filesystem or move state_dir",
                db.display()
            )
        );
        assert!(e.is_disk_full());
        // SQLITE_IOERR_SHMSIZE (4874) with space left is some other I/O error.
        let e = Error::state(&db, sqlite(4874));
        assert!(matches!(e, Error::State { .. }), "{e}");
        assert!(!e.is_disk_full());
        assert!(matches!(Error::state(&db, sqlite(5)), Error::State { .. }));
    }
}
