//! Temporary files of restores, and the leftovers of restores that were killed.
//!
//! A restore writes `.<target name>.packrat-restore-XXXXXX` (six random letters and digits) next
//! to its target and renames it into place when it is complete, so the target never holds a
//! half-written file. For as long as the restore runs, its temporary file is marked *in use*:
//! on Unix it holds an exclusive `flock` on the file itself; on Windows its open handle denies
//! any exclusive open. The OS drops the mark when the process dies, however it dies, so a file
//! left by a killed restore is unmarked: [`remove_stale`] (run by the next restore to the same
//! target) and [`find`] (used by `packrat doctor`) tell a leftover from a running restore's file
//! by trying to take the mark, and never touch a file that is in use or not named by exactly
//! this pattern.
//!
//! A restore takes the mark right after creating its file and then checks that the name still
//! refers to the file it locked; if a cleaner got in between, it starts over with a new name.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The part of a temporary file's name between the target's name and the random suffix.
pub const MARK: &str = ".packrat-restore-";
/// Length of the random suffix.
const RAND_LEN: usize = 6;
/// Attempts to create a marked temporary file before giving up.
const ATTEMPTS: usize = 8;

/// A restore's temporary file next to its target, marked in use while it lives; removed when
/// dropped unless persisted.
#[derive(Debug)]
pub struct RestoreTemp {
    file: tempfile::NamedTempFile,
}

impl RestoreTemp {
    /// Creates the temporary file for `target` in the target's directory (which must exist).
    pub fn create(target: &Path) -> Result<RestoreTemp> {
        let dir = dir_of(target);
        let name = target.file_name().ok_or_else(|| Error::Io {
            action: "create a temporary file for",
            path: target.to_path_buf(),
            source: io::Error::new(io::ErrorKind::InvalidInput, "the target has no file name"),
        })?;
        let prefix = prefix(name);
        for _ in 0..ATTEMPTS {
            let file = tempfile::Builder::new()
                .prefix(&prefix)
                .rand_bytes(RAND_LEN)
                .tempfile_in(dir)
                .map_err(Error::io("create temporary file in", dir))?;
            if mark(&file) {
                return Ok(RestoreTemp { file });
            }
            // A cleaner took it for a leftover in the instant before we marked it: drop it (which
            // removes it if it is still there) and take another name.
        }
        Err(Error::Other(format!(
            "cannot create a temporary file in {} that stays ours: another process keeps removing them",
            dir.display()
        )))
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// The open file.
    pub fn as_file(&self) -> &File {
        self.file.as_file()
    }

    /// The open file, for writing.
    pub fn as_file_mut(&mut self) -> &mut File {
        self.file.as_file_mut()
    }

    /// Renames it to `target`, replacing an existing file.
    pub fn persist(self, target: &Path) -> io::Result<()> {
        self.file.persist(target).map(drop).map_err(|e| e.error)
    }

    /// Renames it to `target` unless `target` exists (then fails with
    /// [`io::ErrorKind::AlreadyExists`] and removes the temporary file); atomic.
    pub fn persist_noclobber(self, target: &Path) -> io::Result<()> {
        self.file.persist_noclobber(target).map(drop).map_err(|e| e.error)
    }
}

/// A temporary file of a restore found in a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    /// The temporary file.
    pub path: PathBuf,
    /// The target it was written for.
    pub target: PathBuf,
    /// Its size.
    pub bytes: u64,
    /// What it is.
    pub state: LeftoverState,
}

/// Whether a restore is still writing a temporary file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeftoverState {
    /// Nothing holds it: a killed restore left it behind.
    Stale,
    /// A running restore is writing it.
    InUse,
    /// It could not be told (the filesystem does not support locks, or it cannot be opened).
    Unknown(String),
}

/// `.<name>.packrat-restore-`.
fn prefix(name: &OsStr) -> OsString {
    let mut p = OsString::from(".");
    p.push(name);
    p.push(MARK);
    p
}

fn dir_of(target: &Path) -> &Path {
    match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// The target name of a temporary file name `.<name>.packrat-restore-XXXXXX`, as bytes.
fn target_name(file_name: &OsStr) -> Option<&[u8]> {
    let b = file_name.as_encoded_bytes();
    let rest = b.strip_prefix(b".")?;
    if rest.len() < MARK.len() + RAND_LEN + 1 {
        return None;
    }
    let (head, suffix) = rest.split_at(rest.len() - RAND_LEN);
    if !suffix.iter().all(u8::is_ascii_alphanumeric) {
        return None;
    }
    let name = head.strip_suffix(MARK.as_bytes())?;
    (!name.is_empty()).then_some(name)
}

/// The temporary files of restores in `dir` (of any target), with their state. A missing `dir`
/// has none.
pub fn find(dir: &Path) -> io::Result<Vec<Leftover>> {
    scan(dir, None, false)
}

/// Removes the leftovers of killed restores to `target` (never a file a running restore is
/// writing); returns what was removed.
pub fn remove_stale(target: &Path) -> Result<Vec<Leftover>> {
    let dir = dir_of(target);
    let Some(name) = target.file_name() else {
        return Ok(Vec::new());
    };
    scan(dir, Some(name), true).map_err(Error::io("look for leftovers of earlier restores in", dir))
}

fn scan(dir: &Path, only: Option<&OsStr>, remove: bool) -> io::Result<Vec<Leftover>> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for e in rd {
        let e = e?;
        let file_name = e.file_name();
        let Some(name) = target_name(&file_name) else {
            continue;
        };
        if only.is_some_and(|o| o.as_encoded_bytes() != name) {
            continue;
        }
        // Only regular files are ours (a symlink or directory of that name is left alone).
        if !e.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let path = e.path();
        let bytes = e.metadata().map(|m| m.len()).unwrap_or(0);
        let target = dir.join(String::from_utf8_lossy(name).as_ref());
        let state = match probe(&path) {
            Probe::Stale(handle) => {
                if remove {
                    remove_leftover(&path, handle)?;
                }
                LeftoverState::Stale
            }
            Probe::InUse => LeftoverState::InUse,
            Probe::Unknown(why) => LeftoverState::Unknown(why),
        };
        if remove && state != LeftoverState::Stale {
            continue;
        }
        out.push(Leftover {
            path,
            target,
            bytes,
            state,
        });
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// Removes a stale leftover; on Unix while holding its lock, so no restore can take it meanwhile.
#[cfg(unix)]
fn remove_leftover(path: &Path, handle: File) -> io::Result<()> {
    let r = fs::remove_file(path);
    drop(handle);
    ignore_missing(r)
}

/// Removes a stale leftover (Windows cannot delete a file while our exclusive handle is open).
#[cfg(not(unix))]
fn remove_leftover(path: &Path, handle: File) -> io::Result<()> {
    drop(handle);
    ignore_missing(fs::remove_file(path))
}

fn ignore_missing(r: io::Result<()>) -> io::Result<()> {
    match r {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

enum Probe {
    /// Not in use; the handle keeps it so until dropped (Unix: holds the lock).
    Stale(File),
    InUse,
    Unknown(String),
}

#[cfg(unix)]
fn probe(path: &Path) -> Probe {
    let f = match crate::pack::open_regular(path) {
        Ok(f) => f,
        Err(e) => return Probe::Unknown(format!("cannot open it: {e}")),
    };
    match f.try_lock() {
        Ok(()) if same_file(&f, path) => Probe::Stale(f),
        Ok(()) => Probe::Unknown("it changed while being checked".into()),
        Err(fs::TryLockError::WouldBlock) => Probe::InUse,
        Err(fs::TryLockError::Error(e)) => Probe::Unknown(format!("cannot lock it: {e}")),
    }
}

#[cfg(windows)]
fn probe(path: &Path) -> Probe {
    use std::os::windows::fs::OpenOptionsExt;
    const ERROR_SHARING_VIOLATION: i32 = 32;
    match fs::OpenOptions::new().read(true).share_mode(0).open(path) {
        Ok(f) => Probe::Stale(f),
        Err(e) if e.raw_os_error() == Some(ERROR_SHARING_VIOLATION) => Probe::InUse,
        Err(e) => Probe::Unknown(format!("cannot open it: {e}")),
    }
}

#[cfg(not(any(unix, windows)))]
fn probe(_: &Path) -> Probe {
    Probe::Unknown("this platform cannot tell".into())
}

/// Marks a new temporary file in use; false when a cleaner took it meanwhile.
#[cfg(unix)]
fn mark(file: &tempfile::NamedTempFile) -> bool {
    match file.as_file().try_lock() {
        Ok(()) => same_file(file.as_file(), file.path()),
        Err(fs::TryLockError::WouldBlock) => false,
        Err(fs::TryLockError::Error(e)) => {
            // No locks on this filesystem: the file stays unmarked, and cleaners, which cannot
            // lock it either, leave it alone.
            tracing::debug!(path = %file.path().display(), "cannot lock the temporary file: {e}");
            true
        }
    }
}

/// On Windows the open handle is the mark.
#[cfg(not(unix))]
fn mark(_: &tempfile::NamedTempFile) -> bool {
    true
}

/// Whether `path` still names the open file `f`.
#[cfg(unix)]
fn same_file(f: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (f.metadata(), fs::symlink_metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn names_follow_the_pattern_exactly() {
        let t = tempfile::tempdir().unwrap();
        let target = t.path().join("app.db");
        let tmp = RestoreTemp::create(&target).unwrap();
        let name = tmp.path().file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with(".app.db.packrat-restore-"), "{name}");
        assert_eq!(name.len(), ".app.db.packrat-restore-".len() + RAND_LEN);
        assert_eq!(target_name(OsStr::new(&name)), Some(&b"app.db"[..]));
        for not_ours in [
            ".app.db.packrat-restore-abc",
            ".app.db.packrat-restore-abcde!",
            "app.db.packrat-restore-abcdef",
            "..packrat-restore-abcdef",
            ".app.db.packrat-tmp",
        ] {
            assert_eq!(target_name(OsStr::new(not_ours)), None, "{not_ours}");
        }
    }

    #[test]
    fn stale_leftovers_are_found_and_removed_but_files_in_use_are_not() {
        let t = tempfile::tempdir().unwrap();
        let target = t.path().join("app.db");
        // A leftover of a killed restore: a file of our pattern that nothing holds.
        let stale = t.path().join(".app.db.packrat-restore-Ab12Cd");
        fs::write(&stale, vec![1u8; 4096]).unwrap();
        // Another target's leftover, and files that only look similar.
        let other = t.path().join(".other.db.packrat-restore-Zz99zz");
        fs::write(&other, b"x").unwrap();
        fs::write(t.path().join(".app.db.packrat-restore-short"), b"x").unwrap();
        fs::write(t.path().join("app.db"), b"the target").unwrap();
        // A running restore's file.
        let mut live = RestoreTemp::create(&target).unwrap();
        live.as_file_mut().write_all(b"in progress").unwrap();

        let found = find(t.path()).unwrap();
        let states: Vec<(String, LeftoverState)> = found
            .iter()
            .map(|l| {
                (
                    l.path.file_name().unwrap().to_string_lossy().into_owned(),
                    l.state.clone(),
                )
            })
            .collect();
        assert_eq!(found.len(), 3, "{states:?}");
        let live_name = live.path().file_name().unwrap().to_string_lossy().into_owned();
        assert!(states.contains(&(live_name, LeftoverState::InUse)), "{states:?}");
        assert!(states.contains(&(".app.db.packrat-restore-Ab12Cd".into(), LeftoverState::Stale)));
        let l = found.iter().find(|l| l.path == stale).unwrap();
        assert_eq!(l.target, target);
        assert_eq!(l.bytes, 4096);

        let removed = remove_stale(&target).unwrap();
        assert_eq!(
            removed.iter().map(|l| l.path.clone()).collect::<Vec<_>>(),
            std::slice::from_ref(&stale)
        );
        assert!(!stale.exists());
        assert!(live.path().exists(), "a running restore's file is never removed");
        assert!(other.exists(), "another target's leftover is left to its own restore");
        assert_eq!(fs::read(&target).unwrap(), b"the target");

        // Once the restore is done (here: dropped, as when it fails), its file is gone.
        let live_path = live.path().to_path_buf();
        drop(live);
        assert!(!live_path.exists());
    }

    #[test]
    fn persist_moves_into_place_and_noclobber_refuses_an_existing_target() {
        let t = tempfile::tempdir().unwrap();
        let target = t.path().join("c.yml");
        let mut tmp = RestoreTemp::create(&target).unwrap();
        tmp.as_file_mut().write_all(b"one").unwrap();
        tmp.persist_noclobber(&target).unwrap();
        let mut tmp = RestoreTemp::create(&target).unwrap();
        tmp.as_file_mut().write_all(b"two").unwrap();
        let e = tmp.persist_noclobber(&target).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&target).unwrap(), b"one");
        let mut tmp = RestoreTemp::create(&target).unwrap();
        tmp.as_file_mut().write_all(b"three").unwrap();
        tmp.persist(&target).unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"three");
        assert!(find(t.path()).unwrap().is_empty());
    }
}
