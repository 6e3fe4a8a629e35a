//! The strict mount check: is a path really on a mounted share of an allowed type?
//!
//! The path is resolved first (made absolute, symlinks followed; for a path that does not exist
//! yet, its nearest existing ancestor is resolved and the rest appended). Then the mount table —
//! `/proc/self/mountinfo`, or an injected file or text — is searched for the longest mount point
//! that contains the resolved path (a later entry for the same mount point covers an earlier
//! one). Its filesystem type must be in the allowed list (default `cifs`, `smb3`). Where
//! available (Linux), the filesystem magic that `statfs` reports for the path is a second signal:
//! when the mount table says `cifs`/`smb3` (or `fuse.*`, `nfs`, …) the magic must be one that
//! filesystem really reports, so a stale or lying mount table cannot pass a local directory off
//! as the share.
//!
//! On Windows there is no mount table: the path is resolved the way Windows resolves it
//! (`GetFinalPathNameByHandle`, through [`std::fs::canonicalize`]), which turns a drive letter
//! mapped to a share into the share's UNC form. A path that resolves to a UNC path
//! (`\\server\share\dir`, `\\?\UNC\server\share\dir`) is on a network share: reported as type
//! `smb` and accepted whatever the allowed list says. One that resolves to a local drive (a
//! fixed disk, a `subst` drive) is refused; a letter not mapped in this logon session does not
//! resolve at all. A mapping
//! belongs to one logon session: a service only sees the drives mapped for its own account.
//!
//! ```
//! use sink_cifs_replica::mount::{MountCheck, MountTable};
//! let table = MountTable::parse(
//!     "27 1 254:0 / / rw - ext4 /dev/vda rw\n\
//!      50 27 0:52 / /mnt/my\\040share rw - cifs //nas/backup rw\n",
//! )
//! .unwrap();
//! let m = table.find("/mnt/my share/App".as_ref()).unwrap();
//! assert_eq!((m.fs_type.as_str(), m.source.as_str()), ("cifs", "//nas/backup"));
//! assert_eq!(MountCheck::default().allowed_fs_types(), ["cifs", "smb3"]);
//! ```

use std::fmt;
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use serde::Serialize;

use crate::error::ReplicaError;

/// `statfs` magic of the kernel's CIFS client (`CIFS_SUPER_MAGIC`).
pub const CIFS_MAGIC: u64 = 0xFF53_4D42;
/// `statfs` magic of the kernel's SMB2/3 client (`SMB2_SUPER_MAGIC`).
pub const SMB2_MAGIC: u64 = 0xFE53_4D42;
/// `statfs` magic of FUSE filesystems (`FUSE_SUPER_MAGIC`).
pub const FUSE_MAGIC: u64 = 0x6573_5546;

/// The default mount table on Linux.
pub const PROC_MOUNTINFO: &str = "/proc/self/mountinfo";

/// One line of a mount table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MountEntry {
    /// Mount id.
    pub id: u64,
    /// Parent mount id.
    pub parent: u64,
    /// `major:minor` of the filesystem.
    pub device: String,
    /// The directory of the filesystem that is mounted (`/` for a whole filesystem, a
    /// subdirectory for a bind mount).
    pub root: PathBuf,
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// Filesystem type (`cifs`, `smb3`, `ext4`, `fuse.smbnetfs`, …).
    pub fs_type: String,
    /// Mount source (`//server/share`, `/dev/sda1`, …).
    pub source: String,
}

/// A parsed mount table in `/proc/self/mountinfo` format.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MountTable {
    entries: Vec<MountEntry>,
}

impl MountTable {
    /// Parses mountinfo text (see `proc(5)`); octal escapes such as `\040` are decoded. `Err`
    /// names the malformed line.
    pub fn parse(text: &str) -> Result<MountTable, String> {
        let mut entries = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let bad = |what: &str| format!("line {}: {what}: `{line}`", i + 1);
            let fields: Vec<&str> = line.split_whitespace().collect();
            let sep = fields
                .iter()
                .position(|f| *f == "-")
                .ok_or_else(|| bad("no ` - ` separator"))?;
            if sep < 6 || fields.len() < sep + 3 {
                return Err(bad("too few fields"));
            }
            let num = |s: &str, what: &str| s.parse::<u64>().map_err(|_| bad(what));
            entries.push(MountEntry {
                id: num(fields[0], "mount id is not a number")?,
                parent: num(fields[1], "parent id is not a number")?,
                device: fields[2].to_string(),
                root: PathBuf::from(unescape(fields[3])),
                mount_point: PathBuf::from(unescape(fields[4])),
                fs_type: unescape(fields[sep + 1]),
                source: unescape(fields[sep + 2]),
            });
        }
        Ok(MountTable { entries })
    }

    /// Every entry, in table order.
    pub fn entries(&self) -> &[MountEntry] {
        &self.entries
    }

    /// The mount that holds the absolute, resolved `path`: the longest mount point that is
    /// `path` itself or one of its ancestors; among equal mount points the last entry (it was
    /// mounted over the others).
    pub fn find(&self, path: &Path) -> Option<&MountEntry> {
        let mut best: Option<&MountEntry> = None;
        for e in &self.entries {
            if path.starts_with(&e.mount_point)
                && best.is_none_or(|b| e.mount_point.components().count() >= b.mount_point.components().count())
            {
                best = Some(e);
            }
        }
        best
    }
}

/// Decodes mountinfo's octal escapes (`\040` space, `\011` tab, `\012` newline, `\134` `\`).
fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() && bytes[i + 1..i + 4].iter().all(|b| (b'0'..=b'7').contains(b)) {
            let v = (bytes[i + 1] - b'0') as u32 * 64 + (bytes[i + 2] - b'0') as u32 * 8 + (bytes[i + 3] - b'0') as u32;
            if let Ok(b) = u8::try_from(v) {
                out.push(b);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Where the mount table comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountInfoSource {
    /// The running system: `/proc/self/mountinfo` on Linux; the UNC rule on Windows.
    Live,
    /// A file in mountinfo format (for tests and diagnosis).
    File(PathBuf),
    /// Mountinfo text (for tests).
    Text(String),
}

impl fmt::Display for MountInfoSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MountInfoSource::Live if cfg!(windows) => f.write_str("the UNC path rule"),
            MountInfoSource::Live => f.write_str(PROC_MOUNTINFO),
            MountInfoSource::File(p) => write!(f, "{}", p.display()),
            MountInfoSource::Text(_) => f.write_str("the given mount table"),
        }
    }
}

/// The strict mount check. Cheap to clone; reads the mount table afresh on every call.
#[derive(Debug, Clone)]
pub struct MountCheck {
    allowed: Vec<String>,
    source: MountInfoSource,
    probe: bool,
    key: Option<String>,
}

impl Default for MountCheck {
    /// Allowed types `cifs` and `smb3`, the live mount table, the statfs probe on.
    fn default() -> Self {
        MountCheck::new(crate::config::default_allowed_fs_types())
    }
}

impl MountCheck {
    /// A check accepting the filesystem types `allowed`, against the live mount table, with the
    /// statfs probe on.
    pub fn new<S: Into<String>>(allowed: impl IntoIterator<Item = S>) -> MountCheck {
        MountCheck {
            allowed: allowed.into_iter().map(Into::into).collect(),
            source: MountInfoSource::Live,
            probe: true,
            key: None,
        }
    }

    /// Reads the mount table from `source` instead. A file or text describes some other
    /// machine, so this also turns the statfs probe off (turn it on again with
    /// [`MountCheck::with_statfs`]).
    pub fn with_mountinfo(mut self, source: MountInfoSource) -> MountCheck {
        self.probe = source == MountInfoSource::Live;
        self.source = source;
        self
    }

    /// Whether the filesystem magic from `statfs` must agree with the mount table (Linux only).
    pub fn with_statfs(mut self, probe: bool) -> MountCheck {
        self.probe = probe;
        self
    }

    /// The config key named in messages (`sinks.windows.path`).
    pub fn with_config_key(mut self, key: impl Into<String>) -> MountCheck {
        self.key = Some(key.into());
        self
    }

    /// The allowed filesystem types.
    pub fn allowed_fs_types(&self) -> &[String] {
        &self.allowed
    }

    /// Where the mount table comes from.
    pub fn source(&self) -> &MountInfoSource {
        &self.source
    }

    pub(crate) fn key(&self) -> String {
        self.key.clone().unwrap_or_else(|| "the path".into())
    }

    /// Reads the mount table (not available for [`MountInfoSource::Live`] on Windows).
    pub fn table(&self) -> Result<MountTable, ReplicaError> {
        let text = match &self.source {
            MountInfoSource::Text(t) => t.clone(),
            MountInfoSource::File(p) => read_table(p)?,
            MountInfoSource::Live if cfg!(target_os = "linux") => read_table(Path::new(PROC_MOUNTINFO))?,
            MountInfoSource::Live => {
                return Err(ReplicaError::Unsupported {
                    os: std::env::consts::OS,
                });
            }
        };
        MountTable::parse(&text).map_err(|reason| ReplicaError::MountInfo {
            source_name: self.source.to_string(),
            reason,
        })
    }

    /// What the check sees at `path`: where it resolves to, the mount holding it, its type and
    /// source, and whether that is acceptable ([`MountReport::verdict`]). `Err` only when the
    /// path cannot be resolved or the mount table cannot be read.
    pub fn inspect(&self, path: &Path) -> Result<MountReport, ReplicaError> {
        if path.as_os_str().is_empty() {
            return Err(ReplicaError::EmptyPath { key: self.key() });
        }
        let (resolved, exists) = resolve(path, &self.key())?;
        #[cfg(windows)]
        if self.source == MountInfoSource::Live {
            return Ok(self.inspect_unc(path, resolved, exists));
        }
        let table = self.table()?;
        let entry = table.find(&resolved).ok_or_else(|| ReplicaError::NoMount {
            path: resolved.clone(),
            table: self.source.to_string(),
        })?;
        let fs_magic = if self.probe { probe_magic(&resolved) } else { None };
        let mut report = MountReport {
            path: path.to_path_buf(),
            resolved,
            exists,
            mount_id: Some(entry.id),
            mount_point: entry.mount_point.clone(),
            fs_type: entry.fs_type.clone(),
            source: entry.source.clone(),
            fs_magic,
            allowed_fs_types: self.allowed.clone(),
            mount_table: self.source.to_string(),
            verdict: Verdict::Allowed,
        };
        report.verdict = if !self.allowed.contains(&entry.fs_type) {
            Verdict::TypeNotAllowed
        } else {
            match (fs_magic, expected_magic(&entry.fs_type)) {
                (Some(m), Some(expected)) if !expected.contains(&m) => Verdict::MagicMismatch,
                _ => Verdict::Allowed,
            }
        };
        Ok(report)
    }

    #[cfg(windows)]
    fn inspect_unc(&self, path: &Path, resolved: PathBuf, exists: bool) -> MountReport {
        use std::path::Prefix;
        let prefix = match resolved.components().next() {
            Some(Component::Prefix(p)) => Some(p.kind()),
            _ => None,
        };
        let (mount_point, fs_type, verdict) = match prefix {
            Some(Prefix::UNC(server, share) | Prefix::VerbatimUNC(server, share)) => (
                PathBuf::from(format!(r"\\{}\{}", server.to_string_lossy(), share.to_string_lossy())),
                "smb".to_string(),
                Verdict::Allowed,
            ),
            _ => (
                resolved.components().take(2).collect(),
                "local-drive".to_string(),
                Verdict::NotUnc,
            ),
        };
        MountReport {
            path: path.to_path_buf(),
            resolved,
            exists,
            mount_id: None,
            source: mount_point.display().to_string(),
            mount_point,
            fs_type,
            fs_magic: None,
            allowed_fs_types: self.allowed.clone(),
            mount_table: self.source.to_string(),
            verdict,
        }
    }

    /// [`MountCheck::inspect`], then fails unless the verdict is [`Verdict::Allowed`].
    pub fn check(&self, path: &Path) -> Result<MountReport, ReplicaError> {
        let report = self.inspect(path)?;
        match report.problem(&self.key()) {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }
}

fn read_table(path: &Path) -> Result<String, ReplicaError> {
    fs::read_to_string(path).map_err(|e| ReplicaError::MountInfo {
        source_name: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// Makes `path` absolute and follows symlinks. A path that does not exist (yet) resolves
/// through its nearest existing ancestor; returns (resolved, whether `path` exists).
pub(crate) fn resolve(path: &Path, key: &str) -> Result<(PathBuf, bool), ReplicaError> {
    let err = |source: io::Error| ReplicaError::Resolve {
        path: path.to_path_buf(),
        source,
    };
    let abs = std::path::absolute(path).map_err(err)?;
    match fs::canonicalize(&abs) {
        Ok(p) => return Ok((p, true)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    if fs::symlink_metadata(&abs).is_ok() {
        return Err(ReplicaError::DanglingSymlink {
            path: abs,
            key: key.to_string(),
        });
    }
    let mut rest: Vec<std::ffi::OsString> = Vec::new();
    let mut cur = abs.as_path();
    loop {
        match cur.components().next_back() {
            Some(Component::Normal(name)) => rest.push(name.to_os_string()),
            _ => {
                return Err(err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "the path has `..` or `.` below a directory that does not exist",
                )));
            }
        }
        cur = match cur.parent() {
            Some(p) => p,
            None => return Err(err(io::ErrorKind::NotFound.into())),
        };
        match fs::canonicalize(cur) {
            Ok(mut p) => {
                for name in rest.iter().rev() {
                    p.push(name);
                }
                return Ok((p, false));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if fs::symlink_metadata(cur).is_ok() {
                    return Err(ReplicaError::DanglingSymlink {
                        path: cur.to_path_buf(),
                        key: key.to_string(),
                    });
                }
            }
            Err(e) => return Err(err(e)),
        }
    }
}

/// The magic numbers a filesystem of type `fs_type` reports through `statfs`, where known.
pub fn expected_magic(fs_type: &str) -> Option<&'static [u64]> {
    Some(match fs_type {
        "cifs" | "smb3" | "smb2" => &[CIFS_MAGIC, SMB2_MAGIC],
        t if t == "fuse" || t == "fuseblk" || t.starts_with("fuse.") || t.starts_with("fuseblk.") => &[FUSE_MAGIC],
        "nfs" | "nfs4" => &[0x6969],
        "ext2" | "ext3" | "ext4" => &[0xEF53],
        "tmpfs" => &[0x0102_1994],
        "overlay" => &[0x794C_7630],
        "xfs" => &[0x5846_5342],
        "btrfs" => &[0x9123_683E],
        _ => return None,
    })
}

/// A name for a `statfs` magic number, where known.
pub fn magic_name(magic: u64) -> &'static str {
    match magic {
        CIFS_MAGIC => "cifs",
        SMB2_MAGIC => "smb2",
        FUSE_MAGIC => "fuse",
        0x6969 => "nfs",
        0xEF53 => "ext2/3/4",
        0x0102_1994 => "tmpfs",
        0x794C_7630 => "overlay",
        0x5846_5342 => "xfs",
        0x9123_683E => "btrfs",
        _ => "unknown",
    }
}

/// `path` as Windows users write it (`D:\dir`, `\\server\share\dir`, not `\\?\…`).
fn as_written(path: &Path) -> PathBuf {
    #[cfg(windows)]
    return dunce::simplified(path).to_path_buf();
    #[cfg(not(windows))]
    path.to_path_buf()
}

/// The `statfs` magic of the filesystem holding `path` (its nearest existing ancestor).
#[cfg(target_os = "linux")]
fn probe_magic(path: &Path) -> Option<u64> {
    let at = path.ancestors().find(|p| p.exists())?;
    nix::sys::statfs::statfs(at)
        .ok()
        .and_then(|s| u64::try_from(s.filesystem_type().0).ok())
}

#[cfg(not(target_os = "linux"))]
fn probe_magic(_path: &Path) -> Option<u64> {
    None
}

/// Whether a mount is acceptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// An allowed type, and the filesystem magic (where probed) agrees.
    Allowed,
    /// The filesystem type is not in the allowed list.
    TypeNotAllowed,
    /// The mount table names an allowed type, but `statfs` reports another filesystem.
    MagicMismatch,
    /// Windows: the path resolves to a local drive, not to a UNC share.
    NotUnc,
}

/// What the mount check sees at a path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MountReport {
    /// The path as given.
    pub path: PathBuf,
    /// Absolute, symlinks followed.
    pub resolved: PathBuf,
    /// Whether the path exists (else the nearest existing ancestor was checked).
    pub exists: bool,
    /// Mount id in the mount table.
    pub mount_id: Option<u64>,
    /// The mount point holding the path.
    pub mount_point: PathBuf,
    /// Its filesystem type.
    pub fs_type: String,
    /// Its source (`//server/share`).
    pub source: String,
    /// The `statfs` magic at the path, when probed.
    pub fs_magic: Option<u64>,
    /// The allowed types.
    pub allowed_fs_types: Vec<String>,
    /// Where the mount table came from.
    pub mount_table: String,
    /// The outcome.
    pub verdict: Verdict,
}

impl MountReport {
    /// True when the verdict is [`Verdict::Allowed`].
    pub fn is_allowed(&self) -> bool {
        self.verdict == Verdict::Allowed
    }

    /// The error for a verdict other than [`Verdict::Allowed`]; `key` is the config key to fix.
    pub fn problem(&self, key: &str) -> Option<ReplicaError> {
        let key = key.to_string();
        match self.verdict {
            Verdict::Allowed => None,
            Verdict::TypeNotAllowed => Some(ReplicaError::NotOnAllowedMount {
                path: self.path.clone(),
                wanted: wanted_phrase(&self.allowed_fs_types),
                fs_type: self.fs_type.clone(),
                mount_point: self.mount_point.clone(),
                key,
            }),
            Verdict::MagicMismatch => Some(ReplicaError::MagicMismatch {
                path: self.path.clone(),
                fs_type: self.fs_type.clone(),
                mount_point: self.mount_point.clone(),
                magic: self.fs_magic.unwrap_or(0),
                key,
            }),
            Verdict::NotUnc => Some(ReplicaError::NotUnc {
                path: self.path.clone(),
                resolved: as_written(&self.resolved),
                key,
            }),
        }
    }
}

/// `a CIFS mount` for the default list, else `a mount of type x or y`.
fn wanted_phrase(allowed: &[String]) -> String {
    if !allowed.is_empty() && allowed.iter().all(|t| matches!(t.as_str(), "cifs" | "smb3" | "smb2")) {
        "a CIFS mount".into()
    } else {
        format!("a mount of type {}", allowed.join(" or "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_are_decoded() {
        assert_eq!(unescape(r"/mnt/my\040share"), "/mnt/my share");
        assert_eq!(unescape(r"a\011b\012c\134d"), "a\tb\nc\\d");
        assert_eq!(unescape(r"no\04escape\"), r"no\04escape\");
    }

    #[test]
    fn optional_fields_and_bad_lines() {
        let t = MountTable::parse(
            "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 shared:7 - ext3 /dev/root rw,errors=continue\n",
        )
        .unwrap();
        let e = &t.entries()[0];
        assert_eq!(
            (e.id, e.parent, e.root.as_path(), e.mount_point.as_path()),
            (36, 35, Path::new("/mnt1"), Path::new("/mnt2"))
        );
        assert_eq!((e.fs_type.as_str(), e.source.as_str()), ("ext3", "/dev/root"));
        let err = MountTable::parse("1 2 3\n").unwrap_err();
        assert!(err.starts_with("line 1: no ` - ` separator"), "{err}");
    }

    #[test]
    fn longest_and_latest_mount_point_wins() {
        let t = MountTable::parse(
            "1 0 0:1 / / rw - ext4 /dev/vda rw\n\
             2 1 0:2 / /mnt/share rw - cifs //a/s rw\n\
             3 2 0:3 / /mnt/share/local rw - ext4 /dev/vdb rw\n\
             4 1 0:4 / /mnt/shareX rw - tmpfs tmpfs rw\n\
             5 2 0:5 / /mnt/share rw - smb3 //b/s rw\n",
        )
        .unwrap();
        let f = |p: &str| t.find(Path::new(p)).map(|e| e.id);
        assert_eq!(f("/mnt/share"), Some(5));
        assert_eq!(f("/mnt/share/App"), Some(5));
        assert_eq!(f("/mnt/share/local/x"), Some(3));
        assert_eq!(f("/mnt/shareX/App"), Some(4), "component-wise, not string prefix");
        assert_eq!(f("/etc"), Some(1));
    }

    #[test]
    fn magic_expectations() {
        assert_eq!(expected_magic("cifs"), Some(&[CIFS_MAGIC, SMB2_MAGIC][..]));
        assert_eq!(expected_magic("fuse.smbnetfs"), Some(&[FUSE_MAGIC][..]));
        assert_eq!(expected_magic("9p"), None);
        assert_eq!(magic_name(SMB2_MAGIC), "smb2");
        assert_eq!(wanted_phrase(&["cifs".into(), "smb3".into()]), "a CIFS mount");
        assert_eq!(
            wanted_phrase(&["fuse.smbnetfs".into()]),
            "a mount of type fuse.smbnetfs"
        );
    }
}
