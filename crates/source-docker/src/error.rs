//! The error type of `source-docker`.

use std::path::PathBuf;

/// Everything that can go wrong backing up, checking or restoring a Docker app.
///
/// Messages say what failed and what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The engine cannot be reached.
    #[error(
        "Docker is unavailable at {host}: {reason}; check that the engine is running (`systemctl status docker` \
         or `dockerd`), that this user may use its socket (root or the `docker` group), or point `docker_host` \
         (or DOCKER_HOST) at the right address"
    )]
    Unavailable {
        /// The address tried.
        host: String,
        /// Why it failed.
        reason: String,
    },
    /// A call to the engine failed.
    #[error("Docker engine: {action}: {message}")]
    Engine {
        /// What we asked for.
        action: String,
        /// The engine's answer.
        message: String,
    },
    /// The compose file does not exist or cannot be read.
    #[error("compose file {} {reason}; check `compose_file` in the config", path.display())]
    ComposeFile {
        /// The file.
        path: PathBuf,
        /// Why it cannot be used.
        reason: String,
    },
    /// No volume matched the selection.
    #[error("no volumes found for {selection}; {hint}")]
    NoVolumes {
        /// What was tried (labels, prefix, names).
        selection: String,
        /// What to do.
        hint: String,
    },
    /// A volume selected for the backup disappeared before or while it was archived.
    #[error(
        "volume `{0}` vanished during the backup (was it removed, e.g. by `docker-compose down -v`?); run the backup again"
    )]
    VolumeVanished(String),
    /// The helper image is not present on the engine's host.
    #[error(
        "helper image `{0}` is not available on the Docker host (no registry is used); provide it with \
         `docker load -i IMAGE.tar` or `docker import ROOTFS.tar {0}`, or set `helper_image` to any image \
         present there (it is never started)"
    )]
    HelperImageMissing(String),
    /// No helper image was configured and none could be derived.
    #[error("{0}")]
    NoHelperImage(String),
    /// A tar stream is malformed or contains an unsafe entry.
    #[error("{0}")]
    Archive(String),
    /// Restoring would overwrite data and `overwrite` was not given.
    #[error("{0}")]
    Refused(String),
    /// A volume selected for a backup is only partly restored: a restore filling it was killed.
    #[error(
        "volume `{volume}` is only partly restored: a `packrat restore` filling it was killed (its helper \
         container {container} is left as the mark); restore it again (`packrat restore PACK --volumes {volume}` \
         replaces it), or, to keep it as it is, remove the mark with `docker rm {container}`"
    )]
    HalfRestored {
        /// The volume.
        volume: String,
        /// The helper container that marks it.
        container: String,
    },
    /// A pack does not hold what was asked for.
    #[error("{0}")]
    NotInPack(String),
    /// Containers stopped for the backup could not all be started again.
    #[error(
        "could not start again the containers stopped for the backup: {failures}; start them by hand with \
         `docker start {names}`"
    )]
    Restart {
        /// Each failure.
        failures: String,
        /// The container names.
        names: String,
    },
    /// A local file operation failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What we were doing.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// `sqlite_in_volumes = "fail"` and a volume holds SQLite databases.
    #[error(
        "volume `{volume}` holds SQLite database(s) {files}, and `sqlite_in_volumes = \"fail\"` refuses to \
         archive them while the app runs; set `sqlite_in_volumes = \"snapshot\"` (a consistent copy taken with \
         SQLite's backup API), or `stop_during_backup = true` (the app is stopped while the volumes are archived), \
         or `sqlite_in_volumes = \"tar\"` (the live files as they are: unsafe, a database written meanwhile may be \
         archived torn)"
    )]
    SqliteInVolume {
        /// The volume.
        volume: String,
        /// The databases, as paths in the volume.
        files: String,
    },
    /// A volume holds SQLite databases and no snapshot can be taken from this host.
    #[error(
        "volume `{volume}` holds SQLite database(s) {files}, but no consistent snapshot of them can be taken: \
         {reason}; stop the app while the volumes are archived (`stop_during_backup = true`), or back the file up \
         with a `type = \"sqlite\"` source on the host that runs the app, or set `sqlite_in_volumes = \"tar\"` \
         knowing that a database written during the backup may be archived torn"
    )]
    SqliteUnreachable {
        /// The volume.
        volume: String,
        /// The databases, as paths in the volume.
        files: String,
        /// Why the volume's files cannot be read from here.
        reason: String,
    },
    /// Snapshotting a SQLite database of a volume failed.
    #[error("the snapshot of the SQLite database `{path}` in volume `{volume}` failed: {source}")]
    SqliteSnapshot {
        /// The volume.
        volume: String,
        /// The database, as a path in the volume.
        path: String,
        /// What went wrong.
        #[source]
        source: Box<source_sqlite::Error>,
    },
    /// A SQLite database of a volume does not fit into the free space for its snapshot.
    #[error(
        "the SQLite database `{path}` in volume `{volume}` needs {needed} bytes (database and WAL) for its \
         snapshot, but {} has only {available} bytes free; free space there or move the staging directory \
         to a larger filesystem, or set `stop_during_backup = true` (no snapshot is needed then)",
        dir.display()
    )]
    SqliteNoSpace {
        /// The volume.
        volume: String,
        /// The database, as a path in the volume.
        path: String,
        /// Bytes of the database and its WAL.
        needed: u64,
        /// Bytes free.
        available: u64,
        /// Where the snapshot would go.
        dir: PathBuf,
    },
    /// The SQLite databases of a volume changed between the scan and the archive.
    #[error("volume `{volume}`: {detail}; run the backup again")]
    SqliteChanged {
        /// The volume.
        volume: String,
        /// What changed.
        detail: String,
    },
    /// Writing into the pack failed.
    #[error(transparent)]
    Pack(#[from] backup_core::Error),
    /// The backup failed, and starting the stopped containers again failed too.
    #[error("{0}; moreover, {1}")]
    Both(Box<Error>, Box<Error>),
}

impl Error {
    /// An [`Error::Io`] builder: `.map_err(Error::io("read", &path))`.
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { action, path, source }
    }

    /// An [`Error::Engine`] builder: `.map_err(Error::engine("inspect volume x"))`.
    pub(crate) fn engine(action: impl Into<String>) -> impl FnOnce(bollard::errors::Error) -> Error {
        let action = action.into();
        move |e| Error::Engine {
            action,
            message: engine_message(&e),
        }
    }
}

/// The engine's message of an error, without bollard's wrapping.
pub(crate) fn engine_message(e: &bollard::errors::Error) -> String {
    match e {
        bollard::errors::Error::DockerResponseServerError { status_code, message } => {
            format!("{message} (HTTP {status_code})")
        }
        other => other.to_string(),
    }
}

/// The HTTP status of an engine error, if it is one.
pub(crate) fn status_of(e: &bollard::errors::Error) -> Option<u16> {
    match e {
        bollard::errors::Error::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

impl backup_core::HasKind for Error {
    fn kind(&self) -> backup_core::ErrorKind {
        use backup_core::ErrorKind as K;
        match self {
            Error::Unavailable { .. } => K::Unavailable,
            Error::ComposeFile { .. } | Error::NoVolumes { .. } | Error::NoHelperImage(_) => K::Config,
            Error::VolumeVanished(_) | Error::HelperImageMissing(_) | Error::NotInPack(_) => K::NotFound,
            Error::Archive(_) => K::Damaged,
            Error::SqliteInVolume { .. } | Error::SqliteUnreachable { .. } => K::Config,
            Error::SqliteSnapshot { source, .. } => backup_core::HasKind::kind(source.as_ref()),
            Error::SqliteNoSpace { .. } => K::DiskFull,
            Error::SqliteChanged { .. } => K::Busy,
            Error::Io { source, .. } => K::of_io(source),
            Error::Pack(e) => e.kind(),
            Error::Both(first, _) => first.kind(),
            _ => K::Other,
        }
    }
}
