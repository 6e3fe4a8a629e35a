//! Exclusive lock files (`std::fs::File::try_lock`), released when dropped or when the process
//! dies, and the claims that tie a working directory (a staging pack, a replica's `_tmp/job_…`)
//! to the job that owns it.
//!
//! Cleanup never decides by membership in a snapshot of "active jobs": a working directory is
//! removed only when its claim lock is provably free ([`sweep`]).

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::{Error, Result};

/// How long a loser of a lock race waits for the winner to write its pid into the lock file.
const PID_WAIT: Duration = Duration::from_secs(2);

/// An exclusive lock on a file that holds the holder's pid. Works on Linux and Windows; the OS
/// releases it when the process dies, so a lock file left behind by a crash is not a held lock.
/// Locks are per open file, so two tasks of one process exclude each other too.
#[derive(Debug)]
pub struct FileLock {
    file: File,
    path: PathBuf,
}

/// What [`FileLock::probe`] found.
#[derive(Debug)]
pub enum Probe {
    /// No lock file: nobody holds it.
    Missing,
    /// The lock was free; the caller now holds it (until the value is dropped).
    Free(FileLock),
    /// Another open file (this process or another) holds it; the holder's pid when readable.
    Held(Option<u32>),
}

/// Takes the lock of plan `plan` in `state_dir` (`locks/plan-NAME.lock`) without waiting: held by
/// each of its jobs from queued to done, and by its verifications and restore drills, so none
/// of them overlaps another, across processes. A held lock is [`Error::Locked`] naming the pid.
pub fn plan_lock(state_dir: &Path, plan: &str) -> Result<FileLock> {
    FileLock::try_acquire(
        &state_dir.join("locks").join(format!("plan-{plan}.lock")),
        &format!("plan `{plan}`"),
    )
}

impl FileLock {
    /// Takes the lock at `path` without waiting; `what` names the locked thing for the error
    /// ("plan `nightly`", "the installation"). The error of a held lock names the holder's pid.
    pub fn try_acquire(path: &Path, what: &str) -> Result<FileLock> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(Error::io("create lock directory", dir))?;
        }
        // A sweep may remove a free lock file between our open and our lock ([`remove_orphan_lock`]);
        // then the file we lock is no longer at `path`, and we start over with a fresh one.
        let mut attempts = 0;
        loop {
            attempts += 1;
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)
                .map_err(Error::io("open lock file", path))?;
            let replaced = || attempts < RELOCK_ATTEMPTS && !still_at(&file, path);
            match file.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => match wait_for_pid(&file, &replaced) {
                    Holder::Replaced => continue,
                    // The holder let go while we looked: the lock on `file` is ours now.
                    Holder::Released => {}
                    Holder::Pid(holder) => {
                        return Err(Error::Locked {
                            what: what.to_string(),
                            holder,
                        });
                    }
                },
                Err(std::fs::TryLockError::Error(e)) => return Err(Error::io("lock", path)(e)),
            }
            if replaced() {
                continue;
            }
            let lock = FileLock {
                file,
                path: path.to_path_buf(),
            };
            lock.write_pid().map_err(Error::io("write lock file", path))?;
            return Ok(lock);
        }
    }

    /// Looks at the lock file at `path` without creating it: missing, free (then the caller holds
    /// it) or held by someone else.
    pub fn probe(path: &Path) -> Result<Probe> {
        let file = match OpenOptions::new().read(true).write(true).open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Probe::Missing),
            Err(e) => return Err(Error::io("open lock file", path)(e)),
        };
        match file.try_lock() {
            Ok(()) => Ok(Probe::Free(FileLock {
                file,
                path: path.to_path_buf(),
            })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(match wait_for_pid(&file, &|| false) {
                Holder::Pid(pid) => Probe::Held(pid),
                Holder::Replaced => Probe::Held(None),
                Holder::Released => Probe::Free(FileLock {
                    file,
                    path: path.to_path_buf(),
                }),
            }),
            Err(std::fs::TryLockError::Error(e)) => Err(Error::io("lock", path)(e)),
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The pid written in the lock file (after a crash: the pid of the dead holder).
    pub fn recorded_pid(&self) -> Option<u32> {
        read_pid(&self.file)
    }

    /// Removes the lock file while still holding the lock, then releases it, so that nobody can
    /// lock the old file in between. Where an open file cannot be removed (SMB shares, some
    /// Windows setups), it is released first and then removed: callers release a claim only when
    /// they are done with what it protected, so the short gap is harmless.
    pub fn release_and_remove(self) {
        if fs::remove_file(&self.path).is_ok() {
            return; // `self` drops here and unlocks.
        }
        let path = self.path.clone();
        drop(self);
        // A network filesystem may close the handle a moment after `close` returned.
        for _ in 0..20 {
            match fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => std::thread::sleep(Duration::from_millis(10)),
                _ => return,
            }
        }
    }

    /// Writes this process's pid at the start of the file, then cuts what follows, so a reader
    /// never sees an empty file that had a pid in it before.
    fn write_pid(&self) -> std::io::Result<()> {
        let text = format!("{}\n", std::process::id());
        let mut f = &self.file;
        f.seek(SeekFrom::Start(0))?;
        f.write_all(text.as_bytes())?;
        f.set_len(text.len() as u64)?;
        f.flush()
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        // Emptied while still held, so that a later loser never reads this pid as the holder's.
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

/// How often [`FileLock::try_acquire`] starts over when its lock file was removed under it.
const RELOCK_ATTEMPTS: u32 = 20;

/// What [`wait_for_pid`] found out about the holder of a lock.
enum Holder {
    /// The holder's pid, when it wrote one.
    Pid(Option<u32>),
    /// The locked file is no longer at its path (a sweep removed it): lock the new one.
    Replaced,
    /// The holder released the lock while we waited for its pid; the caller's `file` now holds it.
    Released,
}

/// Reads the holder's pid, waiting briefly for a winner that has the lock but has not written its
/// pid yet (a fresh lock file is empty for a moment; one left by a crashed holder names a dead
/// process until the new holder overwrites it). A holder that finishes in the meantime empties the
/// file and unlocks it: then the lock is taken on `file` ([`Holder::Released`]) rather than
/// reporting a holder that no longer exists. A sweep that holds a lock only to remove it never
/// writes a pid; `replaced` tells when it did remove it.
fn wait_for_pid(file: &File, replaced: &dyn Fn() -> bool) -> Holder {
    let until = std::time::Instant::now() + PID_WAIT;
    let mut last = None;
    loop {
        if let Some(pid) = read_pid(file) {
            if process_alive(pid) {
                return Holder::Pid(Some(pid));
            }
            last = Some(pid);
        }
        if replaced() {
            return Holder::Replaced;
        }
        if file.try_lock().is_ok() {
            return Holder::Released;
        }
        if std::time::Instant::now() >= until {
            return Holder::Pid(last);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether the open lock file `file` is still the one at `path` (not removed, not replaced),
/// compared by file identity: device and inode on Unix, volume serial number and file index on
/// Windows (a file removed while open is "delete pending" there and cannot be opened at all).
fn still_at(file: &File, path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (file.metadata(), fs::metadata(path)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }
    #[cfg(windows)]
    {
        // A duplicated handle: closing it leaves the lock, which belongs to the file object.
        let held = file.try_clone().and_then(same_file::Handle::from_file);
        match (held, same_file::Handle::from_path(path)) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        }
    }
    #[cfg(not(any(unix, windows)))]
    {
        let _ = file;
        fs::metadata(path).is_ok()
    }
}

/// Whether a process with this pid exists (Linux: `/proc/PID`; elsewhere assumed).
fn process_alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        Path::new("/proc").join(pid.to_string()).exists()
    } else {
        true
    }
}

/// The pid written into a lock file, if readable.
fn read_pid(mut file: &File) -> Option<u32> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.take(64).read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

/// The lock file of working directory `dir`: `<dir>.lock` beside it.
pub fn claim_lock_path(dir: &Path) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    dir.with_file_name(name)
}

/// A working directory owned by a live job: the directory plus the lock `<dir>.lock` held for as
/// long as this value lives. [`sweep`] never removes a claimed directory.
///
/// Dropping it releases the claim and removes the lock file; the directory itself is left as it
/// is (renamed into place, discarded, or a leftover for the next sweep).
#[derive(Debug)]
pub struct ClaimedDir {
    dir: PathBuf,
    lock: Option<FileLock>,
}

impl ClaimedDir {
    /// Claims `dir`: takes `<dir>.lock` first, then creates `dir` (its parent must exist). An
    /// existing empty directory is taken over (a leftover of this very job); anything else that
    /// exists is refused, as is a claim another job holds.
    pub fn create(dir: &Path) -> Result<ClaimedDir> {
        let lock = Self::lock(dir)?;
        match fs::create_dir(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let empty = fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir())
                    && fs::read_dir(dir).is_ok_and(|mut d| d.next().is_none());
                if !empty {
                    lock.release_and_remove();
                    return Err(Error::Other(format!(
                        "working directory {} already exists and is not empty; it is a leftover that the next \
                         cleanup removes, or remove it by hand",
                        dir.display()
                    )));
                }
            }
            Err(e) => {
                lock.release_and_remove();
                return Err(Error::io("create", dir)(e));
            }
        }
        Ok(ClaimedDir {
            dir: dir.to_path_buf(),
            lock: Some(lock),
        })
    }

    /// Claims `dir` without creating it (the caller creates it, e.g. with its own error type).
    pub fn claim_only(dir: &Path) -> Result<ClaimedDir> {
        Ok(ClaimedDir {
            dir: dir.to_path_buf(),
            lock: Some(Self::lock(dir)?),
        })
    }

    fn lock(dir: &Path) -> Result<FileLock> {
        FileLock::try_acquire(&claim_lock_path(dir), &format!("working directory {}", dir.display()))
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Deref for ClaimedDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.dir
    }
}

impl AsRef<Path> for ClaimedDir {
    fn as_ref(&self) -> &Path {
        &self.dir
    }
}

impl Drop for ClaimedDir {
    fn drop(&mut self) {
        if let Some(lock) = self.lock.take() {
            lock.release_and_remove();
        }
    }
}

/// Removes the working directories in `root` whose name starts with one of `prefixes` and whose
/// claim is not held (the owning job is gone: it crashed, was killed, or dropped its claim), and
/// their lock files. A claimed directory is never touched, whichever process or task holds it.
/// Only real directories are removed (never symlinks or files). Returns the removed directories.
///
/// `remove` does the removal (so a sink can retry on a flaky share); errors are collected and
/// the first one returned after every entry was tried.
pub fn sweep(root: &Path, prefixes: &[&str], remove: &dyn Fn(&Path) -> std::io::Result<()>) -> Result<Vec<PathBuf>> {
    let entries = match fs::read_dir(root) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("read", root)(e)),
    };
    let mut removed = Vec::new();
    let mut first_error = None;
    let mut lock_files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(Error::io("read", root))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !prefixes.iter().any(|p| name.starts_with(p)) {
            continue;
        }
        let path = entry.path();
        let Ok(kind) = entry.file_type() else { continue };
        if name.ends_with(".lock") && kind.is_file() {
            lock_files.push(path);
            continue;
        }
        if !kind.is_dir() {
            continue;
        }
        let lock_path = claim_lock_path(&path);
        let held = match FileLock::probe(&lock_path) {
            Ok(Probe::Held(pid)) => {
                tracing::debug!(dir = %path.display(), pid = ?pid, "working directory is claimed by a live job");
                continue;
            }
            Ok(Probe::Free(lock)) => Some(lock),
            Ok(Probe::Missing) => None,
            Err(e) => {
                tracing::warn!(dir = %path.display(), "cannot tell whether the job owning it is alive; left alone: {}", e.chain());
                continue;
            }
        };
        match remove(&path) {
            Ok(()) => removed.push(path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                first_error.get_or_insert_with(|| Error::io("remove leftover", &path)(e));
            }
        }
        if let Some(lock) = held {
            lock.release_and_remove();
        }
    }
    for lock_path in lock_files {
        remove_orphan_lock(&lock_path);
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(removed),
    }
}

/// Removes the claim lock file `lock_path` when its directory is gone and it is free (its job died
/// before creating its directory, or between placing it and removing its lock).
///
/// A claimer that opened the file but has not locked it yet may lose it here: it then finds that
/// the file it locked is no longer at its path (by file identity, on Linux and Windows) and starts
/// over with a new one ([`FileLock::try_acquire`]), so removing a free lock file never lets two
/// jobs hold one claim. A job killed between creating its lock file and writing its pid leaves an
/// empty one: it is removed like any other.
pub fn remove_orphan_lock(lock_path: &Path) {
    let dir = lock_path.with_extension("");
    if fs::symlink_metadata(&dir).is_ok() {
        return;
    }
    if let Ok(Probe::Free(lock)) = FileLock::probe(lock_path) {
        lock.release_and_remove();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_refused_with_holder_pid() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("locks/plan-x.lock");
        let l = FileLock::try_acquire(&p, "plan `x`").unwrap();
        let e = FileLock::try_acquire(&p, "plan `x`").unwrap_err().to_string();
        assert!(
            e.contains("plan `x`") && e.contains(&std::process::id().to_string()),
            "{e}"
        );
        drop(l);
        FileLock::try_acquire(&p, "plan `x`").unwrap();
    }

    #[test]
    fn the_pid_is_always_named_in_a_race() {
        // Many threads race for one lock at once; every loser must name the winner's pid.
        let t = tempfile::tempdir().unwrap();
        for round in 0..30 {
            let p = t.path().join(format!("race-{round}.lock"));
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let (p, barrier) = (p.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        FileLock::try_acquire(&p, "plan `x`")
                    })
                })
                .collect();
            let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
            let winners = results.iter().filter(|r| r.is_ok()).count();
            assert_eq!(winners, 1, "round {round}: exactly one thread holds the lock");
            for r in &results {
                if let Err(e) = r {
                    let text = e.to_string();
                    assert!(
                        matches!(e, Error::Locked { holder: Some(pid), .. } if *pid == std::process::id()),
                        "round {round}: {text}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_holder_that_lets_go_before_writing_its_pid_hands_the_lock_over() {
        // The window a loser used to report as "locked, pid unknown": it found the lock held, the
        // file empty (the holder had not written its pid yet, or had emptied it on release), and
        // the holder then let go. The loser must take the lock instead of naming nobody.
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("plan.lock");
        let holder = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&p)
            .unwrap();
        holder.try_lock().unwrap();
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            holder.unlock().unwrap();
        });
        let lock = FileLock::try_acquire(&p, "plan `x`").expect("the released lock is taken");
        release.join().unwrap();
        assert_eq!(lock.recorded_pid(), Some(std::process::id()));
        let e = FileLock::try_acquire(&p, "plan `x`").unwrap_err();
        assert!(
            matches!(e, Error::Locked { holder: Some(pid), .. } if pid == std::process::id()),
            "{e}"
        );
        // A probe in the same window finds the lock free and holds it.
        drop(lock);
        let holder = OpenOptions::new().read(true).write(true).open(&p).unwrap();
        holder.try_lock().unwrap();
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            drop(holder);
        });
        assert!(matches!(FileLock::probe(&p).unwrap(), Probe::Free(_)));
        release.join().unwrap();
    }

    #[test]
    fn sweep_removes_only_unclaimed_directories() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        let live = ClaimedDir::create(&root.join("job_1_a")).unwrap();
        std::fs::write(live.join("f"), b"x").unwrap();
        let dead = ClaimedDir::create(&root.join("job_2_b")).unwrap();
        std::fs::write(dead.join("f"), b"x").unwrap();
        drop(dead); // its owner is gone: the directory is a leftover
        // A crashed owner leaves a free lock file next to its directory.
        std::fs::create_dir(root.join("job_3_c")).unwrap();
        std::fs::write(root.join("job_3_c.lock"), b"999999\n").unwrap();
        std::fs::create_dir(root.join("unrelated")).unwrap();
        std::fs::write(root.join("job_4_file"), b"a file, not ours").unwrap();

        let mut removed = sweep(root, &["job_"], &|p| std::fs::remove_dir_all(p)).unwrap();
        removed.sort();
        assert_eq!(removed, vec![root.join("job_2_b"), root.join("job_3_c")]);
        assert!(live.join("f").exists(), "a claimed directory is never removed");
        assert!(claim_lock_path(&live).exists());
        assert!(!root.join("job_3_c.lock").exists());
        assert!(root.join("unrelated").exists() && root.join("job_4_file").exists());
        drop(live);
        assert!(
            !root.join("job_1_a.lock").exists(),
            "dropping a claim removes its lock file"
        );
        assert_eq!(
            sweep(root, &["job_"], &|p| std::fs::remove_dir_all(p)).unwrap().len(),
            1
        );
    }

    #[test]
    fn free_orphan_locks_go_at_once_held_ones_stay() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        // Left by a job killed after its directory was renamed into place: a pid, no directory.
        std::fs::write(root.join("job_1_a.lock"), b"4194305\n").unwrap();
        // Left by a job killed between creating its lock file and writing its pid: empty.
        std::fs::write(root.join("job_2_b.lock"), b"").unwrap();
        // A live claim whose directory is not created yet: held, with our pid.
        let live = ClaimedDir::claim_only(&root.join("job_3_c")).unwrap();
        sweep(root, &["job_"], &|p| std::fs::remove_dir_all(p)).unwrap();
        assert!(
            !root.join("job_1_a.lock").exists(),
            "the dead holder's lock file is removed"
        );
        assert!(
            !root.join("job_2_b.lock").exists(),
            "an empty free lock file is removed"
        );
        assert!(claim_lock_path(&live).exists(), "a held lock is never removed");
        drop(live);
    }

    #[test]
    fn a_claimer_whose_lock_file_a_sweep_removes_takes_a_fresh_one() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("job_1_a.lock");
        std::fs::write(&path, b"").unwrap();
        // The sweep holds the free lock (as `remove_orphan_lock` does) while the claimer tries.
        let Ok(Probe::Free(sweeper)) = FileLock::probe(&path) else {
            panic!("the lock is free")
        };
        let claimer = std::thread::spawn({
            let path = path.clone();
            move || FileLock::try_acquire(&path, "working directory")
        });
        std::thread::sleep(Duration::from_millis(200));
        sweeper.release_and_remove();
        let lock = claimer
            .join()
            .unwrap()
            .expect("the claimer starts over on a new lock file");
        assert!(still_at(&lock.file, &path), "the lock held is the file at the path");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap().trim(),
            std::process::id().to_string()
        );
        let again = FileLock::try_acquire(&path, "working directory").unwrap_err();
        assert!(matches!(again, Error::Locked { holder: Some(_), .. }), "{again}");
    }

    #[test]
    fn a_claim_is_exclusive_and_refuses_a_used_directory() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("job_1_a");
        let claim = ClaimedDir::create(&dir).unwrap();
        let e = ClaimedDir::create(&dir).unwrap_err();
        assert!(matches!(e, Error::Locked { holder: Some(_), .. }), "{e}");
        std::fs::write(dir.join("partial"), b"x").unwrap();
        drop(claim);
        let e = ClaimedDir::create(&dir).unwrap_err().to_string();
        assert!(e.contains("not empty"), "{e}");
        assert!(!claim_lock_path(&dir).exists(), "a refused claim leaves no lock file");
        std::fs::remove_file(dir.join("partial")).unwrap();
        ClaimedDir::create(&dir).unwrap();
    }
}
