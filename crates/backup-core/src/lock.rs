//! Exclusive lock files (`std::fs::File::try_lock`), released when dropped or when the process dies.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// An exclusive lock on a file that holds the holder's pid. Works on Linux and Windows; the OS
/// releases it when the process dies, so a lock file left behind by a crash is not a held lock.
#[derive(Debug)]
pub struct FileLock {
    file: File,
    path: PathBuf,
}

impl FileLock {
    /// Takes the lock at `path` without waiting; `what` names the locked thing for the error
    /// ("plan `nightly`", "the installation").
    pub fn try_acquire(path: &Path, what: &str) -> Result<FileLock> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(Error::io("create lock directory", dir))?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(Error::io("open lock file", path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut s = String::new();
                let _ = file.read_to_string(&mut s);
                return Err(Error::Locked {
                    what: what.to_string(),
                    holder: s.trim().parse().ok(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(Error::io("lock", path)(e)),
        }
        file.set_len(0).map_err(Error::io("write lock file", path))?;
        file.seek(SeekFrom::Start(0))
            .map_err(Error::io("write lock file", path))?;
        write!(file, "{}", std::process::id()).map_err(Error::io("write lock file", path))?;
        file.flush().map_err(Error::io("write lock file", path))?;
        Ok(FileLock {
            file,
            path: path.to_path_buf(),
        })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        let _ = self.file.unlock();
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
}
