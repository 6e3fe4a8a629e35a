//! [`LocalSinkError`]: everything that can go wrong in a local sink.

use std::io;
use std::path::PathBuf;

/// An error of a [`crate::LocalSink`]. Each message says what failed and what to do about it.
///
/// At the [`backup_core::Sink`] boundary it is wrapped with [`backup_core::Error::sink`], so the
/// operator reads ``sink `local`: …``.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LocalSinkError {
    /// The filesystem has less free space than the pack needs plus the configured reserve.
    #[error(
        "not enough free space on {}: {}, {} available; free space or point sinks.{sink}.path elsewhere",
        dir.display(),
        need_phrase(*needed, *reserve),
        human_bytes(*available)
    )]
    NoSpace {
        /// The sink's name.
        sink: String,
        /// The sink root.
        dir: PathBuf,
        /// Bytes the pack is expected to take.
        needed: u64,
        /// Bytes to leave free on top (`min_free_mb`).
        reserve: u64,
        /// Bytes available to packrat.
        available: u64,
    },

    /// A filesystem operation failed.
    #[error("cannot {action} {}: {source}{}", path.display(), hint(source, sink))]
    Io {
        /// The sink's name.
        sink: String,
        /// What we were doing ("create", "write", "move into place", …).
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// The sink root (or a directory inside it) is something other than a directory.
    #[error("{} is not a directory; point sinks.{sink}.path at a directory", path.display())]
    NotADirectory {
        /// The sink's name.
        sink: String,
        /// The offending path.
        path: PathBuf,
    },

    /// A directory packrat needs inside the sink root is a symbolic link.
    #[error(
        "{} is a symbolic link; packrat never follows symlinks inside a sink root: replace it with a real directory",
        path.display()
    )]
    Symlink {
        /// The symlink.
        path: PathBuf,
    },

    /// Something already exists under the pack's final name.
    #[error(
        "{} already exists; packs are never overwritten (remove it by hand if it is a leftover you do not need)",
        path.display()
    )]
    Exists {
        /// The final pack path.
        path: PathBuf,
    },

    /// No pack with that plan and id is in the sink.
    #[error("no pack `{id}` of plan `{plan}` in {}; `packrat list` shows the packs there", root.display())]
    NotFound {
        /// The plan asked for.
        plan: String,
        /// The pack id asked for.
        id: String,
        /// The sink root.
        root: PathBuf,
    },

    /// The directory is not a valid pack of ours (no or invalid manifest, wrong plan or id, a
    /// symlink); it was left untouched.
    #[error("{} is not a packrat pack of this sink: {reason}; it was left untouched", path.display())]
    NotOurPack {
        /// The directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },

    /// A copied file does not match the manifest of the pack being copied.
    #[error(
        "copying {} failed verification: {reason}; the pack being copied is damaged (check it with `packrat verify`), nothing was stored",
        path.display()
    )]
    Mismatch {
        /// The source file.
        path: PathBuf,
        /// What differs.
        reason: String,
    },

    /// A staging directory that should be new already holds something.
    #[error(
        "staging directory {} already exists and is not empty: another run is using it or it is a leftover; remove it (packrat removes leftovers of dead jobs at start)",
        path.display()
    )]
    StagingInUse {
        /// The staging directory.
        path: PathBuf,
    },

    /// A staging directory is claimed by a job that is still running.
    #[error(
        "staging directory {} is in use by a running job{}; wait for it to finish",
        path.display(),
        holder.map(|p| format!(" (packrat process pid {p})")).unwrap_or_default()
    )]
    StagingClaimed {
        /// The staging directory.
        path: PathBuf,
        /// The pid of the process holding the claim.
        holder: Option<u32>,
    },

    /// A path handed to [`backup_core::Sink::discard_staging`] is not a staging directory of this
    /// sink.
    #[error("refusing to remove {}: it is not a staging directory of this sink (those live in {})", path.display(), staging.display())]
    NotOurStaging {
        /// The path given.
        path: PathBuf,
        /// The sink's staging area.
        staging: PathBuf,
    },

    /// A pack was moved out of its place for deletion, but removing its files failed.
    #[error(
        "the pack was taken out of the sink, but removing its files in {} failed: {source}; remove that directory by hand (packrat also removes it when it cleans leftovers)",
        path.display()
    )]
    DeleteIncomplete {
        /// Where the pack's files are now.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// A plan name or pack id is invalid, or another `backup-core` operation failed.
    #[error(transparent)]
    Core(#[from] backup_core::Error),
}

impl LocalSinkError {
    /// True when the underlying cause is a full filesystem (or exhausted quota), detected either
    /// before writing ([`LocalSinkError::NoSpace`]) or by the OS while writing.
    pub fn is_no_space(&self) -> bool {
        match self {
            LocalSinkError::NoSpace { .. } => true,
            LocalSinkError::Io { source, .. } => is_full(source),
            LocalSinkError::Core(e) => e.is_disk_full(),
            _ => false,
        }
    }
}

/// True for "no space left on device" and "disk quota exceeded".
pub(crate) fn is_full(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded)
}

fn need_phrase(needed: u64, reserve: u64) -> String {
    if needed == 0 {
        format!("packrat keeps {} free", human_bytes(reserve))
    } else {
        format!(
            "the pack needs about {} plus {} reserve",
            human_bytes(needed),
            human_bytes(reserve)
        )
    }
}

/// What to do about an OS error, as a `; …` suffix (empty when there is nothing useful to say).
fn hint(e: &io::Error, sink: &str) -> String {
    use io::ErrorKind as K;
    match e.kind() {
        K::PermissionDenied => "; make the directory writable for the packrat user".into(),
        K::ReadOnlyFilesystem => {
            format!("; the filesystem is mounted read-only: remount it read-write or point sinks.{sink}.path elsewhere")
        }
        K::StorageFull | K::QuotaExceeded => {
            format!("; the filesystem is full: free space or point sinks.{sink}.path elsewhere")
        }
        K::NotADirectory => {
            format!("; part of the path is a file, not a directory: point sinks.{sink}.path at a directory")
        }
        K::CrossesDevices => "; keep the whole sink root on one filesystem (no mount points inside it)".into(),
        _ => String::new(),
    }
}

/// `1.2 GiB`, `64 MiB`, `300 MiB`, `512 bytes`.
pub(crate) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} bytes");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if v < 10.0 {
        format!("{v:.1} {}", UNITS[unit])
    } else {
        format!("{v:.0} {}", UNITS[unit])
    }
}

impl backup_core::HasKind for LocalSinkError {
    fn kind(&self) -> backup_core::ErrorKind {
        use backup_core::ErrorKind as K;
        match self {
            LocalSinkError::NoSpace { .. } => K::DiskFull,
            LocalSinkError::Io { source, .. } | LocalSinkError::DeleteIncomplete { source, .. } => K::of_io(source),
            LocalSinkError::NotADirectory { .. } | LocalSinkError::Symlink { .. } => K::Config,
            LocalSinkError::Exists { .. }
            | LocalSinkError::NotOurPack { .. }
            | LocalSinkError::NotOurStaging { .. } => K::Other,
            LocalSinkError::NotFound { .. } => K::NotFound,
            LocalSinkError::Mismatch { .. } => K::Damaged,
            LocalSinkError::StagingInUse { .. } | LocalSinkError::StagingClaimed { .. } => K::Busy,
            LocalSinkError::Core(e) => e.kind(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_naturally() {
        assert_eq!(human_bytes(512), "512 bytes");
        assert_eq!(human_bytes(64 << 20), "64 MiB");
        assert_eq!(human_bytes(300 << 20), "300 MiB");
        assert_eq!(human_bytes(1_288_490_189), "1.2 GiB");
    }

    #[test]
    fn no_space_message_says_what_and_what_to_do() {
        let e = LocalSinkError::NoSpace {
            sink: "local".into(),
            dir: "/backups".into(),
            needed: 1_288_490_189,
            reserve: 64 << 20,
            available: 300 << 20,
        };
        assert_eq!(
            e.to_string(),
            "not enough free space on /backups: the pack needs about 1.2 GiB plus 64 MiB reserve, \
             300 MiB available; free space or point sinks.local.path elsewhere"
        );
        assert!(e.is_no_space());
    }

    #[test]
    fn permission_denied_says_what_to_do() {
        let e = LocalSinkError::Io {
            sink: "local".into(),
            action: "create",
            path: "/backups/nightly".into(),
            source: io::Error::from(io::ErrorKind::PermissionDenied),
        };
        let s = e.to_string();
        assert!(
            s.starts_with("cannot create /backups/nightly: permission denied"),
            "{s}"
        );
        assert!(s.ends_with("; make the directory writable for the packrat user"), "{s}");
        assert!(!e.is_no_space());
    }

    #[test]
    fn disk_full_is_recognised_through_backup_core() {
        let e = LocalSinkError::Io {
            sink: "local".into(),
            action: "write",
            path: "/backups/x".into(),
            source: io::Error::from(io::ErrorKind::StorageFull),
        };
        assert!(e.is_no_space());
        assert!(e.to_string().contains("free space or point sinks.local.path elsewhere"));
        let core = backup_core::Error::sink("local")(e);
        assert!(core.is_disk_full());
    }
}
