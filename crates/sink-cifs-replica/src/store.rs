//! The copy protocol: `_tmp/job_<job>_<timestamp>/` → verified by reading back → record →
//! one rename into place.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

use crate::config::ReplicaLayout;
use backup_core::lock::ClaimedDir;
use backup_core::manifest::{MANIFEST_FILE, REPLICATION_FILE, SUMS_FILE, check_relative_path};
use backup_core::pack::{OwnFilesError, check_plan_name, sync_dir};
use backup_core::{JobId, Manifest, Pack, PackId, PackInfo, SealedPack};
use chrono::Utc;
use sha2::{Digest, Sha256};
use tracing::{debug, info, warn};

use crate::{CifsReplicaSink, ReplicaError, ReplicationRecord, Result, TMP_DIR, Target, io_err, is_transient};

/// Read/write buffer: large requests suit network filesystems.
const BUF: usize = 1 << 20;

/// An I/O failure with what was being done, where.
struct OpError {
    action: &'static str,
    path: PathBuf,
    source: io::Error,
}

impl From<OpError> for ReplicaError {
    fn from(e: OpError) -> ReplicaError {
        ReplicaError::Io {
            action: e.action,
            path: e.path,
            source: e.source,
        }
    }
}

fn op(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> OpError + use<> {
    let path = path.to_path_buf();
    move |source| OpError { action, path, source }
}

/// A UTC timestamp for work-area names: `20261121_040000_123`.
pub(crate) fn stamp() -> String {
    Utc::now().format("%Y%m%d_%H%M%S_%3f").to_string()
}

impl CifsReplicaSink {
    /// The final directory of a pack, relative to the target.
    pub(crate) fn final_rel(&self, m: &Manifest) -> PathBuf {
        let mut rel = PathBuf::from(&m.plan);
        if self.layout == ReplicaLayout::Date {
            let local = chrono::DateTime::parse_from_rfc3339(&m.started_local)
                .map(|t| t.format("%Y/%m/%d").to_string())
                .unwrap_or_else(|_| m.started_at.format("%Y/%m/%d").to_string());
            rel.push(local);
        }
        rel.push(&m.pack_id);
        rel
    }

    pub(crate) fn store_sync(&self, sealed: &SealedPack, job: JobId) -> Result<PackInfo> {
        let m = sealed.manifest();
        check_plan_name(&m.plan)?;
        PackId::new(m.pack_id.clone())?;
        // 1. The strict check, before anything is written.
        let t = self.target()?;
        let rel = self.final_rel(m);
        let final_dir = t.dir.join(&rel);

        // 2. What is under the final name now: nothing, or an earlier copy of this very pack
        //    (replaced safely below); anything else is refused before copying gigabytes.
        let replace = self.existing_copy(&final_dir, m)?;
        self.check_space(&t, m.total_size())?;

        // 3. Copy into a fresh work directory and verify every file by reading it back.
        let tmp = self.ensure_tmp(&t)?;
        let work = tmp.join(format!("job_{job}_{}", stamp()));
        // Claimed for as long as this copy runs: no cleanup, in any process, removes it meanwhile.
        let _claim = ClaimedDir::claim_only(&work)?;
        self.retry
            .run("create the work directory", || fs::create_dir(&work))
            .map_err(io_err("create", &work))?;
        let copied = self.fill(sealed, job, &work).and_then(|record| {
            // 4. Still the share? Then put the copy in place with one rename.
            self.target()?;
            self.publish(&t, &work, &final_dir, &rel, replace, job)?;
            Ok(record)
        });
        let record = match copied {
            Ok(r) => r,
            Err(e) => {
                if let Err(r) = fs::remove_dir_all(&work)
                    && r.kind() != io::ErrorKind::NotFound
                {
                    warn!(sink = %self.name, dir = %work.display(), "cannot remove the failed copy (the next run removes it): {r}");
                }
                return Err(e);
            }
        };
        info!(
            sink = %self.name, path = %final_dir.display(), files = record.files, bytes = record.bytes,
            "replica verified and in place"
        );
        let pack = Pack::open(&final_dir)?;
        Ok(PackInfo::from_pack(&self.name, &pack))
    }

    /// Fails up front when the share reports less free space than the pack needs (shares that
    /// report no sizes at all are not checked).
    fn check_space(&self, t: &Target, needed: u64) -> Result<()> {
        let (Ok(total), Ok(available)) = (fs4::total_space(&t.dir), fs4::available_space(&t.dir)) else {
            return Ok(());
        };
        if total > 0 && available < needed {
            return Err(ReplicaError::Io {
                action: "copy the pack to",
                path: t.dir.clone(),
                source: io::Error::new(
                    io::ErrorKind::StorageFull,
                    format!("the pack needs {needed} bytes, the share has {available} bytes free"),
                ),
            });
        }
        Ok(())
    }

    /// `Ok(true)` when `final_dir` holds a copy of the same pack (same manifest), `Ok(false)`
    /// when it does not exist; an error for anything else.
    fn existing_copy(&self, final_dir: &Path, m: &Manifest) -> Result<bool> {
        let meta = match fs::symlink_metadata(final_dir) {
            Ok(meta) => meta,
            Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory) => return Ok(false),
            Err(e) => return Err(io_err("inspect", final_dir)(e)),
        };
        let what = if !meta.is_dir() || meta.file_type().is_symlink() {
            "is not a packrat pack".to_string()
        } else {
            match Pack::open(final_dir) {
                Ok(p) if p.manifest() == m => return Ok(true),
                Ok(_) => "holds a different pack with the same id".to_string(),
                Err(e) => format!("is not a packrat pack ({e})"),
            }
        };
        Err(ReplicaError::Exists {
            path: final_dir.into(),
            what,
        })
    }

    /// `<target>/_tmp`, created if needed, checked to be a real directory on the share.
    pub(crate) fn ensure_tmp(&self, t: &Target) -> Result<PathBuf> {
        let tmp = t.dir.join(TMP_DIR);
        self.make_dir(&tmp)?;
        self.ensure_on_share(t, &tmp)?;
        Ok(tmp)
    }

    /// Creates one directory (its parent must exist); an existing real directory is fine.
    pub(crate) fn make_dir(&self, dir: &Path) -> Result<()> {
        let r = self.retry.run("create a directory", || match fs::create_dir(dir) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            other => other,
        });
        r.map_err(io_err("create", dir))?;
        self.real_dir(dir)
    }

    /// Copies the pack into `work` and verifies it; writes the replication record last.
    fn fill(&self, sealed: &SealedPack, job: JobId, work: &Path) -> Result<ReplicationRecord> {
        let src = sealed.dir();
        let m = sealed.manifest();
        // The pack's own small files first: they must agree with the manifest we were given.
        let own = sealed.own_files().map_err(|e| match e {
            OwnFilesError::Read { path, source } => io_err("read", &path)(source),
            OwnFilesError::Mismatch { path, reason } => ReplicaError::SourceDamaged { path, reason },
        })?;
        let (sums, manifest_bytes, manifest_sha) = (own.sums, own.manifest, own.manifest_sha256);

        let mut bytes = 0u64;
        for a in &m.artifacts {
            check_relative_path(&a.path)?;
            let from = src.join(&a.path);
            let to = work.join(&a.path);
            self.make_parents(work, &a.path)?;
            self.copy_verified(sealed, &from, &to, a.size, &a.sha256)?;
            bytes += a.size;
        }
        // SHA256SUMS, then manifest.json: a copy without a manifest is not a pack.
        self.write_verified(&work.join(SUMS_FILE), &sums)?;
        self.write_verified(&work.join(MANIFEST_FILE), &manifest_bytes)?;
        bytes += (sums.len() + manifest_bytes.len()) as u64;

        let record = ReplicationRecord {
            format: "packrat-replication".into(),
            format_version: 1,
            pack_id: m.pack_id.clone(),
            plan: m.plan.clone(),
            job_id: job,
            replicated_at: Utc::now(),
            source_host: gethostname::gethostname().to_string_lossy().into_owned(),
            source_path: src.display().to_string(),
            sink: self.name.clone(),
            layout: self.layout.as_str().into(),
            files: m.artifacts.len() + 2,
            bytes,
            manifest_sha256: manifest_sha,
        };
        let mut json = serde_json::to_vec_pretty(&record).map_err(|e| backup_core::Error::Other(e.to_string()))?;
        json.push(b'\n');
        self.write_verified(&work.join(REPLICATION_FILE), &json)?;
        sync_tree_best_effort(work);
        Ok(record)
    }

    /// Creates the directories of artifact path `rel` below `work`, one level at a time (never
    /// `create_dir_all`: if the share vanished, nothing may be created on the local disk).
    fn make_parents(&self, work: &Path, rel: &str) -> Result<()> {
        let mut dir = work.to_path_buf();
        let parents: Vec<Component<'_>> = Path::new(rel).components().collect();
        for c in parents.iter().take(parents.len().saturating_sub(1)) {
            dir.push(c.as_os_str());
            self.make_dir(&dir)?;
        }
        Ok(())
    }

    /// Copies `from` to `to` and reads `to` back from the share until it matches `size` and
    /// `sha256`: transient errors and mismatches are retried; a source that does not match its
    /// manifest is reported as damaged.
    fn copy_verified(&self, sealed: &SealedPack, from: &Path, to: &Path, size: u64, sha256: &str) -> Result<()> {
        let attempts = self.retry.retries + 1;
        let mut n = 0;
        loop {
            n += 1;
            let outcome = copy_file(sealed, from, to).and_then(|_| read_back(to));
            let reason = match outcome {
                Ok((got, sha)) if got == size && sha == sha256 => return Ok(()),
                Ok((got, sha)) => {
                    // The local file itself may be the problem.
                    let (local_size, local_sha) = hash_file(from)?;
                    if local_size != size || local_sha != sha256 {
                        return Err(ReplicaError::SourceDamaged {
                            path: from.into(),
                            reason: format!(
                                "{local_size} bytes with sha256 {local_sha}, the manifest says {size} bytes with sha256 {sha256}"
                            ),
                        });
                    }
                    let reason = if got != size {
                        format!("read back {got} bytes, the manifest says {size}")
                    } else {
                        format!("read back sha256 {sha}, the manifest says {sha256}")
                    };
                    if n >= attempts {
                        return Err(ReplicaError::Mismatch {
                            path: to.into(),
                            reason,
                            attempts: n,
                        });
                    }
                    reason
                }
                Err(e) if is_transient(&e.source) && n < attempts => {
                    format!("cannot {} {}: {}", e.action, e.path.display(), e.source)
                }
                Err(e) => return Err(e.into()),
            };
            let pause = self.retry.delay(n - 1);
            warn!(sink = %self.name, "copying {} failed ({reason}); retry {n} of {} in {pause:?}", from.display(), attempts - 1);
            std::thread::sleep(pause);
        }
    }

    /// Writes `bytes` to the new file `path`, fsyncs it and reads it back.
    fn write_verified(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        let attempts = self.retry.retries + 1;
        let mut n = 0;
        loop {
            n += 1;
            let outcome = (|| -> std::result::Result<Vec<u8>, OpError> {
                let mut f = File::create(path).map_err(op("create", path))?;
                f.write_all(bytes).map_err(op("write", path))?;
                f.sync_all().map_err(op("fsync", path))?;
                drop_cache(&f);
                drop(f);
                let f = File::open(path).map_err(op("open", path))?;
                drop_cache(&f);
                let mut back = Vec::with_capacity(bytes.len());
                io::BufReader::new(f)
                    .read_to_end(&mut back)
                    .map_err(op("read back", path))?;
                Ok(back)
            })();
            match outcome {
                Ok(back) if back == bytes => return Ok(()),
                Ok(_) if n < attempts => {}
                Ok(_) => {
                    return Err(ReplicaError::Mismatch {
                        path: path.into(),
                        reason: "the bytes read back differ from those written".into(),
                        attempts: n,
                    });
                }
                Err(e) if is_transient(&e.source) && n < attempts => {}
                Err(e) => return Err(e.into()),
            }
            let pause = self.retry.delay(n - 1);
            warn!(sink = %self.name, "writing {} failed; retry {n} of {} in {pause:?}", path.display(), attempts - 1);
            std::thread::sleep(pause);
        }
    }

    /// Puts the verified copy `work` at `final_dir`: creates the parent directories (on the
    /// share, no symlinks), moves an earlier copy of the same pack aside first when `replace`,
    /// renames, and only then removes the old copy.
    fn publish(&self, t: &Target, work: &Path, final_dir: &Path, rel: &Path, replace: bool, job: JobId) -> Result<()> {
        let mut dir = t.dir.clone();
        let parents: Vec<Component<'_>> = rel.components().collect();
        for c in parents.iter().take(parents.len().saturating_sub(1)) {
            dir.push(c.as_os_str());
            self.make_dir(&dir)?;
        }
        self.ensure_on_share(t, &dir)?;

        let aside = if replace {
            let name = format!("replaced_{job}_{}+{}", stamp(), encode_rel(rel));
            let aside = t.dir.join(TMP_DIR).join(name);
            let claim = ClaimedDir::claim_only(&aside)?;
            self.rename(final_dir, &aside)?;
            Some((aside, claim))
        } else if fs::symlink_metadata(final_dir).is_ok() {
            // Appeared while we copied.
            return Err(ReplicaError::Exists {
                path: final_dir.into(),
                what: "appeared while the copy was made".into(),
            });
        } else {
            None
        };
        if let Err(e) = self.rename(work, final_dir) {
            if let Some((aside, _)) = &aside
                && let Err(back) = fs::rename(aside, final_dir)
            {
                warn!(sink = %self.name, "cannot move the earlier copy back from {} (the next run does): {back}", aside.display());
            }
            return Err(e);
        }
        let _ = sync_dir(&dir);
        if let Some((aside, _claim)) = aside {
            if let Err(e) = fs::remove_dir_all(&aside) {
                warn!(sink = %self.name, "cannot remove the replaced copy {} (the next run does): {e}", aside.display());
            } else {
                debug!(sink = %self.name, "removed the replaced copy {}", aside.display());
            }
        }
        Ok(())
    }

    /// `rename`, retried on transient errors; a retry that finds the move already done (the
    /// reply to the first attempt was lost) counts as success.
    pub(crate) fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        let mut tried = false;
        self.retry
            .run("rename", || {
                let r = match fs::rename(from, to) {
                    Err(e) if tried && e.kind() == io::ErrorKind::NotFound && !from.exists() && to.exists() => Ok(()),
                    other => other,
                };
                tried = true;
                r
            })
            .map_err(|e| match e.kind() {
                io::ErrorKind::AlreadyExists | io::ErrorKind::DirectoryNotEmpty => ReplicaError::Exists {
                    path: to.into(),
                    what: "appeared while the copy was made".into(),
                },
                _ => io_err("move into place at", to)(e),
            })
    }
}

/// `nightly/2026/11/21/p1` → `nightly+2026+11+21+p1` (plan names and pack ids never hold `+`;
/// `@` would be shown as `%40` by some SMB clients).
pub(crate) fn encode_rel(rel: &Path) -> String {
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("+")
}

/// The inverse of [`encode_rel`]; `None` for anything that is not a safe relative path.
pub(crate) fn decode_rel(s: &str) -> Option<PathBuf> {
    let parts: Vec<&str> = s.split('+').collect();
    let ok = parts.len() >= 2
        && parts
            .iter()
            .all(|p| !p.is_empty() && *p != "." && *p != ".." && !p.contains(['/', '\\']));
    ok.then(|| parts.iter().collect())
}

/// Streams `from` to `to` (created or truncated), fsyncs it and drops it from the page cache.
fn copy_file(sealed: &SealedPack, from: &Path, to: &Path) -> std::result::Result<u64, OpError> {
    let meta = fs::symlink_metadata(from).map_err(op("read", from))?;
    if !meta.is_file() {
        return Err(OpError {
            action: "copy",
            path: from.into(),
            source: io::Error::new(io::ErrorKind::InvalidData, "not a regular file"),
        });
    }
    let mut input = File::open(from).map_err(op("open", from))?;
    let mut out = File::create(to).map_err(op("create", to))?;
    let mut buf = vec![0u8; BUF];
    let mut n = 0u64;
    loop {
        // A cancelled job stops its copy within one buffer.
        sealed.check_cancelled().map_err(op("copy", from))?;
        let k = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(op("read", from)(e)),
        };
        out.write_all(&buf[..k]).map_err(op("write", to))?;
        n += k as u64;
    }
    out.sync_all().map_err(op("fsync", to))?;
    drop_cache(&out);
    Ok(n)
}

/// Reads `path` back from the share (page cache dropped first); returns (bytes, sha256).
fn read_back(path: &Path) -> std::result::Result<(u64, String), OpError> {
    let f = File::open(path).map_err(op("open", path))?;
    drop_cache(&f);
    hash_stream(f).map_err(op("read back", path))
}

fn hash_file(path: &Path) -> Result<(u64, String)> {
    let f = File::open(path).map_err(io_err("open", path))?;
    hash_stream(f).map_err(io_err("read", path))
}

/// sha256 of a stream, hashing on a second thread while the next block is read.
fn hash_stream(mut r: impl Read) -> io::Result<(u64, String)> {
    let (to_hasher, blocks) = std::sync::mpsc::sync_channel::<Vec<u8>>(2);
    let (give_back, free) = std::sync::mpsc::channel::<Vec<u8>>();
    let hasher = std::thread::spawn(move || {
        let mut h = Sha256::new();
        for block in blocks {
            h.update(&block);
            let _ = give_back.send(block);
        }
        hex::encode(h.finalize())
    });
    let mut n = 0u64;
    let result = (|| {
        let mut spare = 2;
        loop {
            let mut buf = match free.try_recv() {
                Ok(b) => b,
                Err(_) if spare > 0 => {
                    spare -= 1;
                    vec![0u8; BUF]
                }
                Err(_) => free.recv().map_err(|_| io::Error::other("hashing thread stopped"))?,
            };
            buf.resize(BUF, 0);
            let k = read_full(&mut r, &mut buf)?;
            if k == 0 {
                return Ok(());
            }
            buf.truncate(k);
            n += k as u64;
            to_hasher
                .send(buf)
                .map_err(|_| io::Error::other("hashing thread stopped"))?;
        }
    })();
    drop(to_hasher);
    let sha = hasher.join().map_err(|_| io::Error::other("hashing thread panicked"))?;
    result.map(|()| (n, sha))
}

/// Fills `buf` as far as the stream allows; returns the bytes read (0 at the end).
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut k = 0;
    while k < buf.len() {
        match r.read(&mut buf[k..]) {
            Ok(0) => break,
            Ok(n) => k += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(k)
}

/// Asks the kernel to forget the cached pages of `f`, so the next read comes from the share
/// (Linux; elsewhere a no-op).
#[cfg(target_os = "linux")]
fn drop_cache(f: &File) {
    use nix::fcntl::{PosixFadviseAdvice, posix_fadvise};
    let _ = posix_fadvise(f, 0, 0, PosixFadviseAdvice::POSIX_FADV_DONTNEED);
}

#[cfg(not(target_os = "linux"))]
fn drop_cache(_f: &File) {}

/// Fsyncs `dir` and the directories below it where the filesystem supports it (SMB clients
/// often do not; the files themselves were fsynced).
fn sync_tree_best_effort(dir: &Path) {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if let Ok(rd) = fs::read_dir(&d) {
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(e.path());
                }
            }
        }
        if let Err(e) = sync_dir(&d) {
            debug!("directory fsync not supported here: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_round_trip_through_names() {
        let rel = Path::new("nightly/2026/11/21/migration_pack_20261121_040000");
        let s = encode_rel(rel);
        assert_eq!(s, "nightly+2026+11+21+migration_pack_20261121_040000");
        assert_eq!(decode_rel(&s).as_deref(), Some(rel));
        assert_eq!(decode_rel("x+..+y"), None);
        assert_eq!(decode_rel("single"), None);
    }

    #[test]
    fn hashing_matches_a_plain_digest() {
        let data: Vec<u8> = (0..(3 * BUF + 123)).map(|i| (i * 7 % 251) as u8).collect();
        let (n, sha) = hash_stream(&data[..]).unwrap();
        assert_eq!(n, data.len() as u64);
        assert_eq!(sha, hex::encode(Sha256::digest(&data)));
        let (n, sha) = hash_stream(&[][..]).unwrap();
        assert_eq!((n, sha.len()), (0, 64));
    }
}
