//! # sink-local
//!
//! A packrat [`backup_core::Sink`] that keeps packs in a directory on a local filesystem:
//! `<root>/<plan>/<pack id>/`. Packs are assembled in `<root>/.packrat-staging/` — on the same
//! filesystem — and appear under their final name by one atomic rename, so a pack is either
//! complete or absent, never half-written. Files and directories are fsynced, free space is
//! checked before writing, and only directories that are valid packs of ours are ever listed,
//! opened or deleted (symlinks are never followed): `delete` itself checks that, whoever asks.
//! Packs are read back through the sink ([`backup_core::Sink::open`] returns the pack's
//! [`PackReader`]).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use backup_core::{BackupKind, Compression, PackId, PackReader, Sink, StagingPack};
//! use sink_local::LocalSink;
//!
//! # let tmp = tempfile::tempdir()?;
//! # let root = tmp.path().join("backups");
//! let sink = LocalSink::new("local", &root).with_min_free_bytes(1 << 20);
//! let id = PackId::new("migration_pack_20261121_040000")?;
//!
//! // Staging on the sink's own filesystem, checked for free space.
//! let dir = sink.stage(1, "nightly", &id, 4096).await?.expect("a local sink hosts staging");
//! let pack = StagingPack::create(&dir, "nightly", id, BackupKind::Full, chrono_tz::UTC)?;
//! let mut w = pack.artifact("notes/hello.txt.zst", "demo", "file", Compression::Zstd)?;
//! std::io::Write::write_all(&mut w, b"hello")?;
//! w.finish()?;
//!
//! // One rename puts it in place.
//! let info = sink.store(&pack.seal()?, 1).await?;
//! let dir = root.join("nightly").join("migration_pack_20261121_040000");
//! assert_eq!(info.location, dir.display().to_string());
//! assert_eq!(sink.list(Some("nightly")).await?.len(), 1);
//!
//! // Read back through the sink.
//! let pack = sink.open("nightly", &info.id).await?;
//! let mut hello = String::new();
//! std::io::Read::read_to_string(&mut pack.open_artifact(&pack.manifest().artifacts[0])?, &mut hello)?;
//! assert_eq!(hello, "hello");
//! # Ok(()) }
//! ```
//!
//! `LocalSink` is written as blocking code ([`SyncSink`]); the blocking adapter of `backup-core`
//! makes it a [`backup_core::Sink`], and wrappers add behaviour (`backup_core::DryRunSink`,
//! `backup_core::RetrySink`):
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use backup_core::{DryRunSink, Sink};
//! # let tmp = tempfile::tempdir()?;
//! let sink: Arc<dyn Sink> = Arc::new(sink_local::LocalSink::new("local", tmp.path()));
//! let dry = DryRunSink::new(sink.clone()); // deletions logged and skipped
//! assert!(dry.list(None).await?.is_empty());
//! # Ok(()) }
//! ```

mod config;
mod error;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use backup_core::lock::{ClaimedDir, FileLock, Probe, claim_lock_path};
use backup_core::manifest::{MANIFEST_FILE, SUMS_FILE, check_relative_path};
use backup_core::pack::{HashingWriter, OwnFiles, OwnFilesError, check_plan_name, open_regular, sync_dir};
use backup_core::{JobId, Pack, PackId, PackInfo, PackReader, SealedPack, SyncSink};
use tracing::{debug, info, warn};

pub use config::LocalSinkConfig;
pub use error::LocalSinkError;

/// Result alias of this crate.
pub type Result<T, E = LocalSinkError> = std::result::Result<T, E>;

/// Name of the staging area inside the sink root.
pub const STAGING_DIR: &str = ".packrat-staging";

/// Default space left free on top of a pack's expected size: 64 MiB.
pub const DEFAULT_MIN_FREE_BYTES: u64 = 64 << 20;

const COPY_BUF: usize = 256 * 1024;

/// A sink that keeps packs in `<root>/<plan>/<pack id>/` on a local filesystem.
///
/// Layout inside `root`:
/// - `<plan>/<pack id>/` — finished packs, each with a valid `manifest.json`;
/// - `.packrat-staging/job_<job>_<pack id>/` — packs being assembled (by sources, or by a copy
///   from elsewhere);
/// - `.packrat-staging/delete_<pack id>_…/` — packs being deleted.
///
/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct LocalSink {
    name: String,
    root: PathBuf,
    min_free_bytes: u64,
}

impl LocalSink {
    /// A sink named `name` (as in `sinks.<name>`) rooted at `root`, keeping
    /// [`DEFAULT_MIN_FREE_BYTES`] free. Nothing is touched on disk until it is used.
    pub fn new(name: impl Into<String>, root: impl Into<PathBuf>) -> LocalSink {
        LocalSink {
            name: name.into(),
            root: root.into(),
            min_free_bytes: DEFAULT_MIN_FREE_BYTES,
        }
    }

    /// The sink configured as `sinks.<name>` with `type = "local"`.
    pub fn from_config(name: &str, config: &LocalSinkConfig) -> LocalSink {
        LocalSink::new(name, &config.path).with_min_free_bytes(config.min_free_mb.saturating_mul(1 << 20))
    }

    /// Sets the space to leave free on the filesystem on top of a pack's expected size.
    pub fn with_min_free_bytes(mut self, bytes: u64) -> LocalSink {
        self.min_free_bytes = bytes;
        self
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The staging area, `<root>/.packrat-staging`.
    pub fn staging_root(&self) -> PathBuf {
        self.root.join(STAGING_DIR)
    }

    /// Space left free on top of a pack's expected size, in bytes.
    pub fn min_free_bytes(&self) -> u64 {
        self.min_free_bytes
    }

    fn io(&self, action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> LocalSinkError {
        let (sink, path) = (self.name.clone(), path.to_path_buf());
        move |source| LocalSinkError::Io {
            sink,
            action,
            path,
            source,
        }
    }

    // ----- staging -------------------------------------------------------------------------

    /// Claims the working directory `<staging>/<name>` (the staging area is created as needed):
    /// no cleanup removes it while the claim lives. Returns the claim and the directories created
    /// on the way, which [`remove_created`] removes again when a later step fails.
    fn claim_in_staging(&self, name: &str) -> Result<(ClaimedDir, Vec<PathBuf>)> {
        let created = self.ensure_staging_root()?;
        match self.claim(&self.staging_root().join(name)) {
            Ok(claim) => Ok((claim, created)),
            Err(e) => {
                remove_created(&created);
                Err(e)
            }
        }
    }

    /// Claims a working directory in the staging area for this job: no cleanup removes it while
    /// the claim lives (see [`backup_core::lock`]).
    fn claim(&self, dir: &Path) -> Result<ClaimedDir> {
        ClaimedDir::claim_only(dir).map_err(|e| match e {
            backup_core::Error::Locked { holder, .. } => LocalSinkError::StagingClaimed {
                path: dir.into(),
                holder,
            },
            other => LocalSinkError::Core(other),
        })
    }

    /// Creates `dir`, which must not exist or be an empty directory.
    fn create_fresh_dir(&self, dir: &Path) -> Result<()> {
        match fs::create_dir(dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let empty = fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir())
                    && fs::read_dir(dir).is_ok_and(|mut d| d.next().is_none());
                if empty {
                    Ok(())
                } else {
                    Err(LocalSinkError::StagingInUse { path: dir.into() })
                }
            }
            Err(e) => Err(self.io("create", dir)(e)),
        }
    }

    /// Creates the root and the staging area as needed; returns the directories it created,
    /// outermost first, so that a later failure can remove them again.
    fn ensure_staging_root(&self) -> Result<Vec<PathBuf>> {
        let staging = self.staging_root();
        let created = self.create_dirs(&staging)?;
        let check = || {
            self.root_is_dir()?;
            self.real_dir(&staging)
        };
        if let Err(e) = check() {
            remove_created(&created);
            return Err(e);
        }
        Ok(created)
    }

    /// Checks that the root (followed if it is a symlink) is a directory.
    fn root_is_dir(&self) -> Result<()> {
        let meta = fs::metadata(&self.root).map_err(self.io("inspect", &self.root))?;
        if meta.is_dir() {
            Ok(())
        } else {
            Err(LocalSinkError::NotADirectory {
                sink: self.name.clone(),
                path: self.root.clone(),
            })
        }
    }

    /// Checks that `dir` is a directory and not a symlink.
    fn real_dir(&self, dir: &Path) -> Result<()> {
        let meta = fs::symlink_metadata(dir).map_err(self.io("inspect", dir))?;
        if meta.file_type().is_symlink() {
            Err(LocalSinkError::Symlink { path: dir.into() })
        } else if !meta.is_dir() {
            Err(LocalSinkError::NotADirectory {
                sink: self.name.clone(),
                path: dir.into(),
            })
        } else {
            Ok(())
        }
    }

    /// `create_dir_all` that reports which directories it created, outermost first, and removes
    /// them again when it fails half-way.
    fn create_dirs(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        let mut missing = Vec::new();
        let mut cur = dir;
        loop {
            match fs::symlink_metadata(cur) {
                Ok(_) => break,
                // Missing, or below a file: keep going up; creating it will say what is wrong.
                Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory) => {
                    missing.push(cur.to_path_buf());
                    match cur.parent() {
                        Some(p) if !p.as_os_str().is_empty() => cur = p,
                        _ => break,
                    }
                }
                Err(e) => return Err(self.io("inspect", cur)(e)),
            }
        }
        let mut created = Vec::new();
        for d in missing.into_iter().rev() {
            match fs::create_dir(&d) {
                Ok(()) => created.push(d),
                // Created concurrently by someone else: fine, but not ours to remove.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && d.is_dir() => {}
                Err(e) => {
                    remove_created(&created);
                    return Err(self.io("create", &d)(e));
                }
            }
        }
        Ok(created)
    }

    /// True if `dir` is a `job_*` directory directly inside this sink's staging area.
    fn is_our_staging(&self, dir: &Path) -> bool {
        let named_like_job = dir
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("job_"));
        let (Some(parent), Ok(staging)) = (dir.parent(), fs::canonicalize(self.staging_root())) else {
            return false;
        };
        named_like_job && fs::canonicalize(parent).is_ok_and(|p| p == staging)
    }

    /// The work directories in the staging area that [`backup_core::Sink::clean_leftovers`] would remove now:
    /// `job_*` and `delete_*` directories whose claim is free (the job or prune that owned them is
    /// gone), for `packrat doctor`. Nothing is removed.
    pub fn leftovers(&self) -> Result<Vec<PathBuf>> {
        let staging = self.staging_root();
        let entries = match fs::symlink_metadata(&staging) {
            Ok(m) if m.is_dir() => fs::read_dir(&staging).map_err(self.io("read", &staging))?,
            Ok(_) => return Ok(Vec::new()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.io("inspect", &staging)(e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(self.io("read", &staging))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !(name.starts_with("job_") || name.starts_with("delete_"))
                || !entry.file_type().is_ok_and(|t| t.is_dir())
            {
                continue;
            }
            let path = entry.path();
            match FileLock::probe(&claim_lock_path(&path)) {
                Ok(Probe::Missing | Probe::Free(_)) => out.push(path),
                // Claimed by a live job, or cannot tell: not a leftover.
                Ok(Probe::Held(_)) | Err(_) => {}
            }
        }
        out.sort();
        Ok(out)
    }

    // ----- free space and health -------------------------------------------------------------

    /// The root, or its nearest existing ancestor when it does not exist yet.
    fn existing_ancestor(&self) -> PathBuf {
        self.root
            .ancestors()
            .find(|p| !p.as_os_str().is_empty() && p.exists())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."))
    }

    fn available(&self) -> Result<u64> {
        let at = self.existing_ancestor();
        fs4::available_space(&at).map_err(self.io("read the free space of", &at))
    }

    /// Fails with [`LocalSinkError::NoSpace`] unless `needed` plus the reserve is available.
    fn check_space(&self, needed: u64) -> Result<()> {
        let available = self.available()?;
        if available < needed.saturating_add(self.min_free_bytes) {
            return Err(LocalSinkError::NoSpace {
                sink: self.name.clone(),
                dir: self.root.clone(),
                needed,
                reserve: self.min_free_bytes,
                available,
            });
        }
        Ok(())
    }

    // ----- store -----------------------------------------------------------------------------

    fn refuse_existing(&self, final_dir: &Path) -> Result<()> {
        match fs::symlink_metadata(final_dir) {
            Ok(_) => Err(LocalSinkError::Exists { path: final_dir.into() }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.io("inspect", final_dir)(e)),
        }
    }

    /// Moves a complete pack from the staging area to `final_dir` by one rename and makes the
    /// rename durable.
    fn publish(&self, staged: &Path, plan: &str, final_dir: &Path) -> Result<()> {
        let plan_dir = self.root.join(plan);
        match fs::create_dir(&plan_dir) {
            Ok(()) => sync_dir(&self.root)?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(self.io("create", &plan_dir)(e)),
        }
        self.real_dir(&plan_dir)?;
        // rename() never replaces a non-empty directory (it fails, reported below), but on Unix
        // it silently replaces an *empty* one. So check first. The check and the rename are not
        // one atomic step: an empty directory created in between would be replaced. No data can
        // be lost that way (it was empty), and one plan's packs are written by one job at a time
        // (the plan lock), so this window only matters for outside interference.
        self.refuse_existing(final_dir)?;
        if let Err(e) = fs::rename(staged, final_dir) {
            return Err(match e.kind() {
                io::ErrorKind::AlreadyExists | io::ErrorKind::DirectoryNotEmpty => {
                    LocalSinkError::Exists { path: final_dir.into() }
                }
                _ => self.io("move the pack into place at", final_dir)(e),
            });
        }
        sync_dir(&plan_dir)?;
        if let Some(parent) = staged.parent() {
            sync_dir(parent)?;
        }
        Ok(())
    }

    /// Copies a sealed pack from elsewhere into a new staging directory, verifying every file
    /// against the manifest; returns the staging directory. On failure nothing is left behind.
    fn copy_in(&self, sealed: &SealedPack, job: JobId, id: &PackId) -> Result<ClaimedDir> {
        // The pack's own files are small: read them first, and check that they agree with the
        // manifest we were handed before copying gigabytes.
        let own = sealed.own_files().map_err(|e| match e {
            OwnFilesError::Read { path, source } => self.io("read", &path)(source),
            OwnFilesError::Mismatch { path, reason } => LocalSinkError::Mismatch { path, reason },
        })?;
        let own_bytes = (own.manifest.len() + own.sums.len()) as u64;
        self.check_space(sealed.manifest().total_size().saturating_add(own_bytes))?;
        let (claim, created) = self.claim_in_staging(&format!("job_{job}_{id}"))?;
        let copied = self
            .create_fresh_dir(&claim)
            .and_then(|()| self.copy_files(sealed, &own, &claim));
        if let Err(e) = copied {
            if let Err(r) = fs::remove_dir_all(&*claim)
                && r.kind() != io::ErrorKind::NotFound
            {
                warn!(sink = %self.name, dir = %claim.display(), "cannot remove the failed copy: {r}");
            }
            drop(claim);
            remove_created(&created);
            return Err(e);
        }
        Ok(claim)
    }

    fn copy_files(&self, sealed: &SealedPack, own: &OwnFiles, dest: &Path) -> Result<()> {
        let src = sealed.dir();
        for a in &sealed.manifest().artifacts {
            check_relative_path(&a.path)?;
            let from = src.join(&a.path);
            let to = dest.join(&a.path);
            if let Some(parent) = to.parent() {
                fs::create_dir_all(parent).map_err(self.io("create", parent))?;
            }
            let (size, sha) = self.copy_file(sealed, &from, &to)?;
            let mismatch = |reason: String| LocalSinkError::Mismatch {
                path: from.clone(),
                reason,
            };
            if size != a.size {
                return Err(mismatch(format!("{size} bytes, the manifest says {}", a.size)));
            }
            if sha != a.sha256 {
                return Err(mismatch(format!("sha256 {sha}, the manifest says {}", a.sha256)));
            }
        }
        // SHA256SUMS, then manifest.json last: a copy without a manifest is not a pack.
        self.write_file(&dest.join(SUMS_FILE), &own.sums)?;
        self.write_file(&dest.join(MANIFEST_FILE), &own.manifest)?;
        sync_tree(dest)
    }

    /// Streams `from` to the new file `to`, fsyncs it; returns (bytes, sha256) of what was
    /// written.
    fn copy_file(&self, cancelled: &SealedPack, from: &Path, to: &Path) -> Result<(u64, String)> {
        let mut input = open_regular(from).map_err(|e| match e.kind() {
            io::ErrorKind::InvalidInput => LocalSinkError::Mismatch {
                path: from.into(),
                reason: e.to_string(),
            },
            _ => self.io("open", from)(e),
        })?;
        let out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(to)
            .map_err(self.io("create", to))?;
        let mut out = HashingWriter::new(out);
        let mut buf = vec![0u8; COPY_BUF];
        loop {
            cancelled.check_cancelled().map_err(self.io("copy", from))?;
            let n = match input.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.io("read", from)(e)),
            };
            out.write_all(&buf[..n]).map_err(self.io("write", to))?;
        }
        let (file, bytes, sha) = out.finish();
        file.sync_all().map_err(self.io("fsync", to))?;
        Ok((bytes, sha))
    }

    /// Writes `bytes` to the new file `path` and fsyncs it.
    fn write_file(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        let mut f = File::create_new(path).map_err(self.io("create", path))?;
        f.write_all(bytes).map_err(self.io("write", path))?;
        f.sync_all().map_err(self.io("fsync", path))
    }

    // ----- list, open, delete ----------------------------------------------------------------

    /// Names of the real (non-symlink) subdirectories of `dir` that do not start with `.`;
    /// empty when `dir` does not exist.
    fn subdirs(&self, dir: &Path) -> Result<Vec<String>> {
        let entries = match fs::read_dir(dir) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.io("read", dir)(e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(self.io("read", dir))?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if !name.starts_with('.') && entry.file_type().is_ok_and(|t| t.is_dir()) {
                out.push(name);
            }
        }
        Ok(out)
    }

    /// Opens `<root>/<plan>/<id>` if, and only if, it is a valid pack of ours: a real directory
    /// (no symlink on the way below the root) with a valid manifest naming this plan and id.
    fn open_pack(&self, plan: &str, id: &str) -> Result<Pack> {
        check_plan_name(plan)?;
        PackId::new(id)?;
        let not_found = || LocalSinkError::NotFound {
            plan: plan.into(),
            id: id.into(),
            root: self.root.clone(),
        };
        let plan_dir = self.root.join(plan);
        let dir = plan_dir.join(id);
        for (path, what) in [(&plan_dir, "the plan directory"), (&dir, "the pack directory")] {
            match fs::symlink_metadata(path) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(not_found()),
                Err(e) => return Err(self.io("inspect", path)(e)),
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(LocalSinkError::NotOurPack {
                        path: dir.clone(),
                        reason: format!("{what} is a symbolic link, which packrat never follows"),
                    });
                }
                Ok(m) if !m.is_dir() => {
                    return Err(LocalSinkError::NotOurPack {
                        path: dir.clone(),
                        reason: format!("{what} is not a directory"),
                    });
                }
                Ok(_) => {}
            }
        }
        let pack = Pack::open(&dir).map_err(|e| LocalSinkError::NotOurPack {
            path: dir.clone(),
            reason: match e {
                backup_core::Error::NotAPack { reason, .. } => reason,
                other => other.to_string(),
            },
        })?;
        if pack.manifest().plan != plan {
            return Err(LocalSinkError::NotOurPack {
                path: dir,
                reason: format!(
                    "manifest.json names plan `{}`, but the pack sits under `{plan}`",
                    pack.manifest().plan
                ),
            });
        }
        Ok(pack)
    }
}

/// Removes directories created by [`LocalSink::create_dirs`], innermost first; only empty ones
/// go (someone else may have started using them).
fn remove_created(created: &[PathBuf]) {
    for d in created.iter().rev() {
        let _ = fs::remove_dir(d);
    }
}

/// Fsyncs `dir` and every directory below it (not following symlinks), so that every entry of
/// a pack is durable before it is renamed into place.
fn sync_tree(dir: &Path) -> Result<()> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = fs::read_dir(&d).map_err(backup_core::Error::io("read", &d))?;
        for entry in entries {
            let entry = entry.map_err(backup_core::Error::io("read", &d))?;
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(entry.path());
            }
        }
        sync_dir(&d)?;
    }
    Ok(())
}

impl SyncSink for LocalSink {
    type Error = LocalSinkError;

    fn name(&self) -> &str {
        &self.name
    }

    fn location(&self) -> String {
        self.root.display().to_string()
    }

    /// Claims and creates `.packrat-staging/job_<job>_<id>` after checking the free space (a
    /// refusal leaves no trace).
    fn stage(&self, job: JobId, plan: &str, id: &PackId, expected_bytes: u64) -> Result<Option<ClaimedDir>> {
        check_plan_name(plan)?;
        // Check before creating anything, so a refusal leaves no trace.
        self.check_space(expected_bytes)?;
        let (claim, created) = self.claim_in_staging(&format!("job_{job}_{id}"))?;
        if let Err(e) = self.create_fresh_dir(&claim) {
            drop(claim);
            remove_created(&created);
            return Err(e);
        }
        debug!(sink = %self.name, dir = %claim.display(), "staging directory ready");
        Ok(Some(claim))
    }

    /// Removes a `job_*` directory of this sink's staging area, and nothing else.
    fn discard_staging(&self, dir: &Path) -> Result<()> {
        if !self.is_our_staging(dir) {
            if fs::symlink_metadata(dir).is_err() {
                return Ok(()); // Nothing there to remove.
            }
            return Err(LocalSinkError::NotOurStaging {
                path: dir.into(),
                staging: self.staging_root(),
            });
        }
        match fs::remove_dir_all(dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.io("remove staging directory", dir)(e)),
        }
    }

    fn store(&self, sealed: &SealedPack, job: JobId) -> Result<PackInfo> {
        let m = sealed.manifest();
        check_plan_name(&m.plan)?;
        let id = PackId::new(m.pack_id.as_str())?;
        let final_dir = self.root.join(&m.plan).join(id.as_str());
        self.refuse_existing(&final_dir)?;

        if self.is_our_staging(sealed.dir()) {
            // Assembled in our staging area: make every directory entry durable, then rename.
            sync_tree(sealed.dir())?;
            self.publish(sealed.dir(), &m.plan, &final_dir)?;
        } else {
            let staged = self.copy_in(sealed, job, &id)?;
            if let Err(e) = self.publish(&staged, &m.plan, &final_dir) {
                let _ = fs::remove_dir_all(&*staged);
                return Err(e);
            }
        }
        info!(sink = %self.name, path = %final_dir.display(), "pack in place");
        let pack = Pack::open(&final_dir)?;
        Ok(PackInfo::from_pack(&self.name, &pack))
    }

    fn list(&self, plan: Option<&str>) -> Result<Vec<PackInfo>> {
        let plans = match plan {
            Some(p) => {
                check_plan_name(p)?;
                vec![p.to_string()]
            }
            None => self.subdirs(&self.root)?,
        };
        let mut out = Vec::new();
        for plan in plans {
            if check_plan_name(&plan).is_err() {
                continue;
            }
            let plan_dir = self.root.join(&plan);
            if fs::symlink_metadata(&plan_dir).is_ok_and(|m| m.file_type().is_symlink()) {
                debug!(sink = %self.name, path = %plan_dir.display(), "skipping symlinked plan directory");
                continue;
            }
            for id in self.subdirs(&plan_dir)? {
                match self.open_pack(&plan, &id) {
                    Ok(pack) => out.push(PackInfo::from_pack(&self.name, &pack)),
                    Err(e) => debug!(sink = %self.name, "skipping {}/{id}: {e}", plan_dir.display()),
                }
            }
        }
        out.sort_by(|a, b| a.started_at.cmp(&b.started_at).then_with(|| a.id.cmp(&b.id)));
        Ok(out)
    }

    fn open(&self, plan: &str, id: &str) -> Result<Arc<dyn PackReader>> {
        self.open_pack(plan, id).map(Pack::into_reader)
    }

    /// True if anything (a pack, a foreign directory, a file) is under `<plan>/<id>`.
    fn exists(&self, plan: &str, id: &str) -> Result<bool> {
        check_plan_name(plan)?;
        PackId::new(id)?;
        let path = self.root.join(plan).join(id);
        match fs::symlink_metadata(&path) {
            Ok(_) => Ok(true),
            Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory) => Ok(false),
            Err(e) => Err(self.io("inspect", &path)(e)),
        }
    }

    /// Deletes `<plan>/<id>` only if it opens as a valid pack of ours (a real directory, no
    /// symlink on the way, a valid manifest naming this plan and id); anything else is left
    /// untouched and refused.
    fn delete(&self, plan: &str, id: &str) -> Result<()> {
        let pack = self.open_pack(plan, id)?;
        let dir = pack.dir();
        let plan_dir = self.root.join(plan);
        // Take it out of its place with one rename first, so that a crash part-way through the
        // removal leaves a leftover in the staging area, never a half pack under a final name.
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        // Claimed while it is being removed; a prune killed half-way leaves it unclaimed, and
        // the next cleanup removes it.
        let (claim, created) = self.claim_in_staging(&format!("delete_{id}_{}_{nanos}", std::process::id()))?;
        let aside = claim.dir().to_path_buf();
        if let Err(e) = fs::rename(dir, &aside) {
            drop(claim);
            remove_created(&created);
            return Err(self.io("move the pack out of its place, from", dir)(e));
        }
        sync_dir(&plan_dir)?;
        sync_dir(&self.staging_root())?;
        match fs::remove_dir_all(&aside) {
            Ok(()) => {}
            // Removed concurrently by a leftover cleaner: still gone.
            Err(_) if fs::symlink_metadata(&aside).is_err() => {}
            Err(source) => return Err(LocalSinkError::DeleteIncomplete { path: aside, source }),
        }
        drop(claim);
        info!(sink = %self.name, path = %dir.display(), "pack deleted");
        Ok(())
    }

    /// Removes working directories in the staging area (`job_*` staging, `delete_*` packs being
    /// deleted) whose claim is free: their job or prune is gone.
    fn clean_leftovers(&self) -> Result<Vec<PathBuf>> {
        let staging = self.staging_root();
        // Only a real directory of ours: never follow a symlinked staging area.
        if fs::symlink_metadata(&staging).is_ok_and(|m| !m.is_dir()) {
            return Ok(Vec::new());
        }
        let removed = backup_core::lock::sweep(&staging, &["job_", "delete_"], &|p| fs::remove_dir_all(p))
            .map_err(LocalSinkError::Core)?;
        for path in &removed {
            info!(sink = %self.name, path = %path.display(), "removed staging leftover");
        }
        Ok(removed)
    }

    fn free_space(&self) -> Result<Option<u64>> {
        self.available().map(Some)
    }

    /// The root is a directory (or can be created), a file can be written in it, the staging area
    /// is a real directory, and the reserve is free.
    fn check(&self) -> Result<()> {
        // A missing root must be creatable: create it, and remove it again afterwards.
        let created = self.create_dirs(&self.root)?;
        let probe = self.root.join(format!(".packrat-probe-{}", std::process::id()));
        let result = (|| {
            self.root_is_dir()?;
            File::create_new(&probe).map_err(self.io("create a test file in", &self.root))?;
            fs::remove_file(&probe).map_err(self.io("remove test file", &probe))?;
            let staging = self.staging_root();
            if fs::symlink_metadata(&staging).is_ok() {
                self.real_dir(&staging)?;
            }
            self.check_space(0)
        })();
        remove_created(&created);
        result
    }
}
