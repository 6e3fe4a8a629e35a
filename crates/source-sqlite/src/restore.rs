//! Restoring a SQLite artifact of a pack to a path.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use backup_core::restore_temp::{self, RestoreTemp};
use backup_core::verify::Problem;
use backup_core::{ArtifactEntry, PackReader, Verifier};
use sha2::{Digest, Sha256};

use crate::check::{DbFacts, integrity_check};
use crate::error::Error;
use crate::{ARTIFACT_KIND, IO_BUF, companion};

/// What [`restore`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreReport {
    /// The restored database file.
    pub target: PathBuf,
    /// Bytes written (the uncompressed database).
    pub bytes: u64,
    /// True when an existing file was replaced.
    pub replaced: bool,
    /// Facts about the restored database.
    pub facts: DbFacts,
    /// Problems of the pack that [`RestoreOptions::allow_damaged`] let pass (the restored
    /// artifact itself checked out); empty for an intact pack.
    pub pack_problems: Vec<Problem>,
    /// Temporary files of earlier, killed restores to the same target that were removed.
    pub removed_leftovers: Vec<PathBuf>,
}

/// How to restore.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RestoreOptions {
    /// Replace an existing target.
    pub overwrite: bool,
    /// Restore even though the pack has problems elsewhere (other artifacts damaged, unlisted
    /// files), as long as the artifact restored checks out itself. Off: such a pack is refused.
    pub allow_damaged: bool,
}

/// The SQLite artifacts of `pack`, only those of source `source` when given.
pub fn sqlite_artifacts<'a>(pack: &'a dyn PackReader, source: Option<&str>) -> Vec<&'a ArtifactEntry> {
    pack.manifest()
        .artifacts
        .iter()
        .filter(|a| a.kind == ARTIFACT_KIND && source.is_none_or(|s| a.source == s))
        .collect()
}

/// The one SQLite artifact of source `source` in `pack`, or an error naming what the pack holds.
pub fn find_artifact<'a>(pack: &'a dyn PackReader, source: &str) -> Result<&'a ArtifactEntry, Error> {
    let found = sqlite_artifacts(pack, Some(source));
    match found.as_slice() {
        [one] => Ok(one),
        [] => {
            let all: Vec<String> = sqlite_artifacts(pack, None)
                .iter()
                .map(|a| format!("{} (source `{}`)", a.path, a.source))
                .collect();
            Err(Error::Artifact(format!(
                "pack {} has no SQLite artifact of source `{source}`; it has: {}",
                pack.id(),
                if all.is_empty() {
                    "none".to_string()
                } else {
                    all.join(", ")
                }
            )))
        }
        many => Err(Error::Artifact(format!(
            "pack {} has {} SQLite artifacts of source `{source}` ({}); pick one by path",
            pack.id(),
            many.len(),
            many.iter().map(|a| a.path.as_str()).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// Restores the SQLite artifact `entry` of `pack` to the database file `target`; see
/// [`restore_with`]. A damaged pack is refused.
pub fn restore(
    pack: &dyn PackReader,
    entry: &ArtifactEntry,
    target: &Path,
    overwrite: bool,
) -> Result<RestoreReport, Error> {
    restore_with(
        pack,
        entry,
        target,
        &RestoreOptions {
            overwrite,
            allow_damaged: false,
        },
    )
}

/// Restores the SQLite artifact `entry` of `pack` to the database file `target`.
///
/// First, before anything is written, the pack gets the quick check every restore runs
/// ([`Verifier::check_for_restore`]): a pack with any problem is refused with
/// [`backup_core::Error::DamagedPack`] naming each file (unless `allow_damaged`), and a damaged
/// artifact is never restored. The artifact is read once for this check.
///
/// Then temporary files that earlier, killed restores to this target left behind are removed
/// (only stale ones: see [`backup_core::restore_temp`]), and the database is streamed from the
/// pack's reader into a new temporary file next to the target (`.<name>.packrat-restore-XXXXXX`)
/// while its stored bytes are checked against the manifest again (size, sha256, uncompressed size); it is then fsynced
/// and must pass `PRAGMA integrity_check` before it is moved into place with one rename. On any
/// failure the temporary file is removed and the target is untouched, so there is never a
/// half-written file at the target.
///
/// Without `overwrite`, an existing target is refused (before any work, and atomically again at
/// the final no-clobber move). With `overwrite`, the target is replaced, keeping its permissions
/// (and, on Unix, its owner where allowed). Either way the restore is refused while a non-empty
/// `-wal` or `-journal` file lies next to the target: SQLite would apply it to the restored
/// database, so the application using it must be stopped first.
pub fn restore_with(
    pack: &dyn PackReader,
    entry: &ArtifactEntry,
    target: &Path,
    opts: &RestoreOptions,
) -> Result<RestoreReport, Error> {
    if entry.kind != ARTIFACT_KIND {
        return Err(Error::Artifact(format!(
            "artifact {} is of type `{}`, not `{ARTIFACT_KIND}`",
            entry.path, entry.kind
        )));
    }
    let bad = |reason: &str| Error::BadTarget {
        path: target.to_path_buf(),
        reason: reason.to_string(),
    };
    if target.file_name().is_none() {
        return Err(bad("it has no file name"));
    }
    let dir = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(bad(&format!(
            "directory {} does not exist; create it first",
            dir.display()
        )));
    }
    let existing = preflight(target, opts.overwrite)?;

    let check = Verifier::check_for_restore(pack, &[entry]);
    check.require(opts.allow_damaged)?;
    if let Some(reason) = check.unusable.get(&entry.path) {
        return Err(Error::Damaged {
            path: entry.path.clone(),
            reason: reason.clone(),
        });
    }

    let removed_leftovers = restore_temp::remove_stale(target)?
        .into_iter()
        .map(|l| l.path)
        .collect();
    // The file stays open (and so marked in use) until it is moved into place or dropped, which
    // removes it.
    let mut tmp = RestoreTemp::create(target)?;
    let tmp_path = tmp.path().to_path_buf();
    let bytes = copy_verified(pack, entry, tmp.as_file_mut(), &tmp_path)?;
    tmp.as_file().sync_all().map_err(Error::io("fsync", &tmp_path))?;
    let facts = integrity_check(
        &tmp_path,
        &format!("the restored copy of artifact {}", entry.path),
        "the backup is damaged; restore from another pack",
    )?;

    if let Some(meta) = &existing {
        keep_permissions(meta, &tmp_path)?;
        // Check again right before the move: the application may have started meanwhile.
        check_not_in_use(target)?;
        tmp.persist(target).map_err(Error::io("rename into place at", target))?;
    } else {
        check_not_in_use(target)?;
        // No-clobber move: fails atomically if the target appeared meanwhile.
        tmp.persist_noclobber(target).map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                Error::TargetExists {
                    path: target.to_path_buf(),
                }
            } else {
                Error::io("move into place at", target)(e)
            }
        })?;
    }
    backup_core::pack::sync_dir(dir)?;
    Ok(RestoreReport {
        target: target.to_path_buf(),
        bytes,
        replaced: existing.is_some(),
        facts,
        pack_problems: check.problems,
        removed_leftovers,
    })
}

/// Refuses an existing target without `overwrite`, and targets that cannot be replaced.
/// Returns the metadata of the existing target.
fn preflight(target: &Path, overwrite: bool) -> Result<Option<fs::Metadata>, Error> {
    let bad = |reason: &str| Error::BadTarget {
        path: target.to_path_buf(),
        reason: reason.to_string(),
    };
    let existing = match fs::symlink_metadata(target) {
        Ok(m) => {
            if m.is_dir() {
                return Err(bad("it is a directory; name the database file to create"));
            }
            if !overwrite {
                return Err(Error::TargetExists {
                    path: target.to_path_buf(),
                });
            }
            if m.file_type().is_symlink() {
                return Err(bad("it is a symbolic link; restore to the file it points to"));
            }
            if !m.is_file() {
                return Err(bad("it exists and is not a regular file"));
            }
            Some(m)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::io("inspect", target)(e)),
    };
    check_not_in_use(target)?;
    Ok(existing)
}

/// Fails when a non-empty `-wal` or `-journal` file lies next to `target`.
fn check_not_in_use(target: &Path) -> Result<(), Error> {
    for suffix in ["-wal", "-journal"] {
        let companion = companion(target, suffix);
        if fs::metadata(&companion).is_ok_and(|m| m.len() > 0) {
            return Err(Error::TargetInUse {
                path: target.to_path_buf(),
                companion,
            });
        }
    }
    Ok(())
}

/// Gives the restored file the permissions (and on Unix, best effort, the owner) of the file it
/// replaces.
fn keep_permissions(meta: &fs::Metadata, path: &Path) -> Result<(), Error> {
    fs::set_permissions(path, meta.permissions()).map_err(Error::io("set permissions of", path))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        // Only root may give a file away; others keep their own ownership.
        let _ = std::os::unix::fs::chown(path, Some(meta.uid()), Some(meta.gid()));
    }
    Ok(())
}

/// Streams the artifact into `out`, checking its stored size and sha256 and its uncompressed
/// size against the manifest. Returns the bytes written.
fn copy_verified(pack: &dyn PackReader, entry: &ArtifactEntry, out: &mut File, out_path: &Path) -> Result<u64, Error> {
    let damaged = |reason: String| Error::Damaged {
        path: entry.path.clone(),
        reason,
    };
    let src = PathBuf::from(pack.location_of(&entry.path));
    let file = pack.open_file(&entry.path).map_err(Error::io("open artifact", &src))?;
    let mut hashed = HashingReader {
        inner: file,
        hasher: Sha256::new(),
        bytes: 0,
    };
    let mut out = io::BufWriter::with_capacity(IO_BUF, out);
    let written = {
        // Decrypts and decompresses as the pack says (a plain artifact passes as it is).
        let mut dec = pack.decode(entry, Box::new(&mut hashed))?;
        pump(&mut dec, &mut out, out_path, &damaged)?
    };
    // Hash whatever the decoder left unread, so the checksum covers the whole file.
    io::copy(&mut hashed, &mut io::sink()).map_err(Error::io("read", &src))?;
    out.flush().map_err(Error::io("write", out_path))?;
    let sha = hex::encode(std::mem::take(&mut hashed.hasher).finalize());
    if hashed.bytes != entry.size {
        return Err(damaged(format!(
            "{} bytes stored, manifest says {}",
            hashed.bytes, entry.size
        )));
    }
    if sha != entry.sha256 {
        return Err(damaged(format!("sha256 is {sha}, manifest says {}", entry.sha256)));
    }
    if written != entry.raw_size {
        return Err(damaged(format!(
            "{written} bytes uncompressed, manifest says {}",
            entry.raw_size
        )));
    }
    Ok(written)
}

/// Copies `r` to `w`: read errors mean a damaged artifact, write errors are reported as such.
fn pump(r: &mut impl Read, w: &mut impl Write, w_path: &Path, damaged: &dyn Fn(String) -> Error) -> Result<u64, Error> {
    let mut buf = vec![0u8; IO_BUF];
    let mut n = 0u64;
    loop {
        let k = match r.read(&mut buf) {
            Ok(0) => return Ok(n),
            Ok(k) => k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(damaged(format!("cannot read or decompress it: {e}"))),
        };
        w.write_all(&buf[..k]).map_err(Error::io("write", w_path))?;
        n += k as u64;
    }
}

/// A reader that hashes and counts everything read through it.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}
