//! [`ReplicaError`]: everything that can go wrong in the replica sink and its mount check.

use std::io;
use std::path::PathBuf;

/// An error of a [`crate::CifsReplicaSink`] or of the [`crate::mount::MountCheck`]. Each message
/// says what failed and what to do about it.
///
/// At the [`backup_core::Sink`] boundary it is wrapped with [`backup_core::Error::sink`], so the
/// operator reads ``sink `windows`: …``.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplicaError {
    /// The configured target path is empty.
    #[error("replica path is empty; set {key} to the directory on the mounted share")]
    EmptyPath {
        /// The config key to set.
        key: String,
    },

    /// The path is not on a mount of an allowed filesystem type.
    #[error("{} is not on {wanted} (it is on {fs_type} {}); mount the share or fix {key}", path.display(), mount_point.display())]
    NotOnAllowedMount {
        /// The path as configured.
        path: PathBuf,
        /// What was wanted (`a CIFS mount`).
        wanted: String,
        /// The filesystem type found.
        fs_type: String,
        /// Its mount point.
        mount_point: PathBuf,
        /// The config key to fix.
        key: String,
    },

    /// The mount table says one filesystem, `statfs` another.
    #[error(
        "{} is listed as a {fs_type} mount at {}, but the filesystem there reports type {magic:#x} ({}); the mount table and the filesystem disagree: remount the share or fix {key}",
        path.display(), mount_point.display(), crate::mount::magic_name(*magic)
    )]
    MagicMismatch {
        /// The path as configured.
        path: PathBuf,
        /// The type in the mount table.
        fs_type: String,
        /// The mount point.
        mount_point: PathBuf,
        /// The `statfs` magic.
        magic: u64,
        /// The config key to fix.
        key: String,
    },

    /// Windows: the path resolves to a local drive, not to a network share.
    #[error(
        "{} is not on a network share (it resolves to {}, a local drive); on Windows give the share as \\\\server\\share\\dir, or a drive letter mapped to it for the account packrat runs as (a service does not see the drives a user mapped): fix {key}",
        path.display(),
        resolved.display()
    )]
    NotUnc {
        /// The path as configured.
        path: PathBuf,
        /// Where Windows resolves it to.
        resolved: PathBuf,
        /// The config key to fix.
        key: String,
    },

    /// No mount in the table covers the path (only possible with an incomplete table).
    #[error("no mount in {table} covers {}; the mount table is incomplete", path.display())]
    NoMount {
        /// The resolved path.
        path: PathBuf,
        /// Where the table came from.
        table: String,
    },

    /// The mount table cannot be read or parsed.
    #[error("cannot read the mount table {source_name}: {reason}")]
    MountInfo {
        /// Where it came from.
        source_name: String,
        /// Why.
        reason: String,
    },

    /// The mount check has no way to work on this system.
    #[error("the strict mount check is not available on {os}; packrat cannot tell whether a path is on a share there")]
    Unsupported {
        /// The OS name.
        os: &'static str,
    },

    /// The path cannot be resolved.
    #[error("cannot resolve {}: {source}; check that it exists and is reachable", path.display())]
    Resolve {
        /// The path as given.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// A symlink on the way points nowhere.
    #[error("{} is a symbolic link to a missing target; point it at a directory on the share or fix {key}", path.display())]
    DanglingSymlink {
        /// The symlink.
        path: PathBuf,
        /// The config key to fix.
        key: String,
    },

    /// The target directory does not exist on the mounted share.
    #[error(
        "{} does not exist on the share mounted at {}; create it there (mkdir -p {}) or fix {key}",
        path.display(), mount_point.display(), path.display()
    )]
    TargetMissing {
        /// The target directory.
        path: PathBuf,
        /// The share's mount point.
        mount_point: PathBuf,
        /// The config key to fix.
        key: String,
    },

    /// A directory the sink writes to lies on another mount than the target (a mount or symlink
    /// inside the target).
    #[error(
        "{} is on a different mount ({fs_type} {}) than the replica target; packrat writes only to the share: remove that mount or symlink",
        path.display(), mount_point.display()
    )]
    OffShare {
        /// The directory.
        path: PathBuf,
        /// Its filesystem type.
        fs_type: String,
        /// Its mount point.
        mount_point: PathBuf,
    },

    /// A directory packrat needs inside the target is a symbolic link.
    #[error(
        "{} is a symbolic link; packrat never follows symlinks inside the replica target: replace it with a real directory",
        path.display()
    )]
    Symlink {
        /// The symlink.
        path: PathBuf,
    },

    /// Something other than a directory is where a directory is needed.
    #[error("{} is not a directory; remove it or fix {key}", path.display())]
    NotADirectory {
        /// The path.
        path: PathBuf,
        /// The config key to fix.
        key: String,
    },

    /// A filesystem operation failed (after the retries, for transient errors).
    #[error("cannot {action} {}: {source}{}", path.display(), hint(source))]
    Io {
        /// What we were doing.
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// The copy on the share read back different bytes than the manifest records.
    #[error(
        "the copy {} on the share does not match the manifest after {attempts} attempt(s): {reason}; the share returned other bytes than were written: check the share, its disk and the network",
        path.display()
    )]
    Mismatch {
        /// The file on the share.
        path: PathBuf,
        /// What differs.
        reason: String,
        /// How many copies were tried.
        attempts: u32,
    },

    /// The local pack does not match its own manifest.
    #[error(
        "the local pack file {} does not match its manifest ({reason}); the local pack is damaged, check it with `packrat verify`; nothing was replicated",
        path.display()
    )]
    SourceDamaged {
        /// The local file.
        path: PathBuf,
        /// What differs.
        reason: String,
    },

    /// A different pack (or something else) already sits under the final name.
    #[error(
        "{} already exists and {what}; packs are never overwritten: remove or rename it by hand if it is not needed",
        path.display()
    )]
    Exists {
        /// The final directory.
        path: PathBuf,
        /// What it is (`holds a different pack`, `is not a packrat pack`).
        what: String,
    },

    /// No pack with that plan and id is on the replica.
    #[error("no pack `{id}` of plan `{plan}` in {}; `packrat list` shows the packs there", target.display())]
    NotFound {
        /// The plan asked for.
        plan: String,
        /// The pack id asked for.
        id: String,
        /// The target directory.
        target: PathBuf,
    },

    /// The directory is not a valid pack of ours; it was left untouched.
    #[error("{} is not a packrat pack of this replica: {reason}; it was left untouched", path.display())]
    NotOurPack {
        /// The directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },

    /// A pack was moved out of its place for deletion, but removing its files failed.
    #[error(
        "the pack was taken out of the replica, but removing its files in {} failed: {source}; remove that directory by hand (packrat also removes it when it cleans leftovers)",
        path.display()
    )]
    DeleteIncomplete {
        /// Where the files are now.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// A plan name or pack id is invalid, or another `backup-core` operation failed.
    #[error(transparent)]
    Core(#[from] backup_core::Error),
}

impl ReplicaError {
    /// True when the error says the share is not (properly) there: an empty path, the wrong
    /// mount, a missing target. Nothing was written in these cases.
    pub fn is_mount_problem(&self) -> bool {
        matches!(
            self,
            ReplicaError::EmptyPath { .. }
                | ReplicaError::NotOnAllowedMount { .. }
                | ReplicaError::MagicMismatch { .. }
                | ReplicaError::NotUnc { .. }
                | ReplicaError::NoMount { .. }
                | ReplicaError::DanglingSymlink { .. }
                | ReplicaError::TargetMissing { .. }
        )
    }
}

/// What to do about an OS error, as a `; …` suffix.
fn hint(e: &io::Error) -> &'static str {
    use io::ErrorKind as K;
    match e.kind() {
        K::PermissionDenied => "; give the packrat user write access to the share (mount options uid=/file_mode=)",
        K::ReadOnlyFilesystem => "; the share is mounted read-only: remount it read-write",
        K::StorageFull | K::QuotaExceeded => "; the share is full: free space on it",
        _ if crate::is_transient(e) => "; the share did not answer reliably: check the network and the server",
        _ => "",
    }
}

impl backup_core::HasKind for ReplicaError {
    fn kind(&self) -> backup_core::ErrorKind {
        use backup_core::ErrorKind as K;
        match self {
            ReplicaError::EmptyPath { .. } | ReplicaError::NotUnc { .. } | ReplicaError::Unsupported { .. } => {
                K::Config
            }
            ReplicaError::NotOnAllowedMount { .. }
            | ReplicaError::MagicMismatch { .. }
            | ReplicaError::NoMount { .. }
            | ReplicaError::TargetMissing { .. }
            | ReplicaError::OffShare { .. } => K::Unavailable,
            ReplicaError::Io { source, .. } | ReplicaError::DeleteIncomplete { source, .. } => K::of_io(source),
            ReplicaError::Mismatch { .. } | ReplicaError::SourceDamaged { .. } => K::Damaged,
            ReplicaError::NotFound { .. } => K::NotFound,
            ReplicaError::Core(e) => e.kind(),
            _ => K::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unmounted_share_message_reads_like_the_issue() {
        let e = ReplicaError::NotOnAllowedMount {
            path: "/mnt/replica".into(),
            wanted: "a CIFS mount".into(),
            fs_type: "ext4".into(),
            mount_point: "/".into(),
            key: "sinks.windows.path".into(),
        };
        assert_eq!(
            e.to_string(),
            "/mnt/replica is not on a CIFS mount (it is on ext4 /); mount the share or fix sinks.windows.path"
        );
        assert!(e.is_mount_problem());
        let e = ReplicaError::EmptyPath {
            key: "sinks.windows.path".into(),
        };
        assert!(e.to_string().starts_with("replica path is empty"), "{e}");
    }

    #[test]
    fn io_errors_say_what_to_do() {
        let e = ReplicaError::Io {
            action: "create",
            path: "/mnt/replica/_tmp".into(),
            source: io::Error::from(io::ErrorKind::PermissionDenied),
        };
        assert!(e.to_string().ends_with("(mount options uid=/file_mode=)"), "{e}");
        let e = ReplicaError::Io {
            action: "write",
            path: "/mnt/replica/x".into(),
            source: io::Error::from(io::ErrorKind::TimedOut),
        };
        assert!(e.to_string().contains("check the network"), "{e}");
        assert!(!e.is_mount_problem());
    }
}
