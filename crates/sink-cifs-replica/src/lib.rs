//! # sink-cifs-replica
//!
//! A packrat [`backup_core::Sink`] that replicates sealed packs to a directory on a mounted Windows
//! (SMB/CIFS) share — and only when that directory really is on such a mount, so a backup can
//! never "succeed" onto the local disk under an unmounted mount point.
//!
//! * **Strict mount check** ([`mount`]) before every operation: the target, resolved with
//!   symlinks followed, must lie on a mount of an allowed type (default `cifs`, `smb3`) in
//!   `/proc/self/mountinfo`, with the `statfs` magic as a second signal. When it fails, nothing
//!   is written, and the error says why: `/mnt/replica is not on a CIFS mount (it is on ext4 /);
//!   mount the share or fix sinks.windows.path`.
//! * **Copy protocol**: the pack is copied to `<target>/_tmp/job_<job id>_<timestamp>/`, every
//!   file is read back from the share and checked against the manifest's sha256,
//!   `replication_manifest.json` (pack, job, time, source host) is written, and one rename puts
//!   the directory at `<target>/<plan>/<pack id>` (layout `flat`) or
//!   `<target>/<plan>/YYYY/MM/DD/<pack id>` (layout `date`). A copy of the same pack already
//!   there is replaced safely (renamed aside, removed once the new one is in place); a different
//!   pack or foreign data under that name is never touched.
//! * Transient I/O errors of each step of a copy (a file copied and read back, a directory
//!   created, a rename) are retried with backoff ([`RetryPolicy`], shared with
//!   `backup_core::RetrySink`, which retries whole operations); an interrupted copy never leaves
//!   a final directory, and its `_tmp` leftovers are removed by the next run
//!   ([`backup_core::Sink::clean_leftovers`]).
//! * Listing, reading ([`backup_core::Sink::open`] returns the pack's [`PackReader`]),
//!   verification and deletion see only valid packs of ours; `delete` itself checks that.
//!
//! The sink is written as blocking code ([`SyncSink`]); the blocking adapter of `backup-core`
//! makes it a [`backup_core::Sink`].
//!
//! ```no_run
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use backup_core::{Pack, PackReader, Sink};
//! use sink_cifs_replica::CifsReplicaSink;
//!
//! let sink = CifsReplicaSink::new("windows", "/mnt/replica/App");
//! let report = sink.check_target()?; // the strict mount check alone
//! println!("{} on {} {}", report.path.display(), report.fs_type, report.source);
//!
//! let pack = Pack::open("/backups/nightly/migration_pack_20261121_040000".as_ref())?;
//! let info = sink.store(&pack.into_sealed(), 42).await?;
//! println!("replica at {}", info.location);
//!
//! // Read back through the sink, verified on the share.
//! let replica = sink.open(&info.plan, &info.id).await?;
//! println!("{} artifacts", replica.manifest().artifacts.len());
//! # Ok(()) }
//! ```

mod catalog;
mod config;
mod error;
pub mod mount;
mod store;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use std::sync::Arc;

use backup_core::{JobId, Pack, PackInfo, PackReader, SealedPack, SyncSink};
use serde::{Deserialize, Serialize};

pub use backup_core::retry::{RetryPolicy, is_transient};
pub use config::{CifsReplicaSinkConfig, ReplicaLayout, default_allowed_fs_types};
pub use error::ReplicaError;
pub use mount::{MountCheck, MountInfoSource, MountReport, MountTable, Verdict};

/// Result alias of this crate.
pub type Result<T, E = ReplicaError> = std::result::Result<T, E>;

/// The work area inside the target: copies in progress, packs being replaced or deleted.
pub const TMP_DIR: &str = "_tmp";

/// The record written into every replica as `replication_manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicationRecord {
    /// Always `packrat-replication`.
    pub format: String,
    /// Version of this record's format (1).
    pub format_version: u32,
    /// The pack id.
    pub pack_id: String,
    /// The plan.
    pub plan: String,
    /// The job that made this copy.
    pub job_id: JobId,
    /// When the copy was verified and put in place.
    pub replicated_at: chrono::DateTime<chrono::Utc>,
    /// The host that made the copy.
    pub source_host: String,
    /// Where the pack was copied from.
    pub source_path: String,
    /// The sink's name.
    pub sink: String,
    /// `flat` or `date`.
    pub layout: String,
    /// Files copied and verified (artifacts, `SHA256SUMS`, `manifest.json`).
    pub files: usize,
    /// Bytes copied.
    pub bytes: u64,
    /// sha256 of `manifest.json`.
    pub manifest_sha256: String,
}

/// The replica sink. Cheap to clone.
#[derive(Debug, Clone)]
pub struct CifsReplicaSink {
    name: String,
    path: PathBuf,
    check: MountCheck,
    layout: ReplicaLayout,
    retry: RetryPolicy,
}

/// The target after a successful mount check.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// The resolved target directory.
    pub dir: PathBuf,
    /// What the mount check saw.
    pub report: MountReport,
}

impl CifsReplicaSink {
    /// A sink named `name` replicating into `path`, with the default mount check (`cifs`,
    /// `smb3`), the flat layout and the default retries. Nothing is touched until it is used.
    pub fn new(name: impl Into<String>, path: impl Into<PathBuf>) -> CifsReplicaSink {
        let name = name.into();
        let check = MountCheck::default().with_config_key(format!("sinks.{name}.path"));
        CifsReplicaSink {
            name,
            path: path.into(),
            check,
            layout: ReplicaLayout::Flat,
            retry: RetryPolicy::default(),
        }
    }

    /// The sink configured as `sinks.<name>` with `type = "cifs-replica"`.
    pub fn from_config(name: &str, config: &CifsReplicaSinkConfig) -> CifsReplicaSink {
        CifsReplicaSink::new(name, &config.path)
            .with_mount_check(MountCheck::new(config.allowed_fs_types.iter().cloned()))
            .with_layout(config.layout)
            .with_retry(RetryPolicy::new(config.retries, config.retry_delay))
    }

    /// Uses `check` for the strict mount check (allowed types, injected mount table).
    pub fn with_mount_check(mut self, check: MountCheck) -> CifsReplicaSink {
        self.check = check.with_config_key(format!("sinks.{}.path", self.name));
        self
    }

    /// Sets the layout below the target.
    pub fn with_layout(mut self, layout: ReplicaLayout) -> CifsReplicaSink {
        self.layout = layout;
        self
    }

    /// Sets the retries for transient I/O errors.
    pub fn with_retry(mut self, retry: RetryPolicy) -> CifsReplicaSink {
        self.retry = retry;
        self
    }

    /// The configured target path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The layout.
    pub fn layout(&self) -> ReplicaLayout {
        self.layout
    }

    /// The mount check in use.
    pub fn mount_check(&self) -> &MountCheck {
        &self.check
    }

    /// The strict mount check on the target: it must be set, lie on an allowed mount, exist
    /// and be a directory. This is what runs before every operation.
    pub fn check_target(&self) -> Result<MountReport> {
        self.target().map(|t| t.report)
    }

    /// Leftovers in `<target>/_tmp` that [`backup_core::Sink::clean_leftovers`] would remove now (copies of
    /// jobs that are gone, packs half deleted or replaced; never a live job's work). Reads only.
    pub fn leftovers(&self) -> Result<Vec<PathBuf>> {
        let t = self.target()?;
        Ok(self.classify_tmp(&t)?.into_iter().map(|(p, _)| p).collect())
    }

    pub(crate) fn target(&self) -> Result<Target> {
        let key = self.check.key();
        if self.path.as_os_str().is_empty() {
            return Err(ReplicaError::EmptyPath { key });
        }
        let report = self.check.check(&self.path)?;
        if !report.exists {
            return Err(ReplicaError::TargetMissing {
                path: self.path.clone(),
                mount_point: report.mount_point.clone(),
                key,
            });
        }
        let meta = fs::metadata(&report.resolved).map_err(io_err("inspect", &report.resolved))?;
        if !meta.is_dir() {
            return Err(ReplicaError::NotADirectory {
                path: self.path.clone(),
                key,
            });
        }
        Ok(Target {
            dir: report.resolved.clone(),
            report,
        })
    }

    /// Checks that `dir` is a real directory (no symlink).
    pub(crate) fn real_dir(&self, dir: &Path) -> Result<()> {
        let meta = fs::symlink_metadata(dir).map_err(io_err("inspect", dir))?;
        if meta.file_type().is_symlink() {
            return Err(ReplicaError::Symlink { path: dir.into() });
        }
        if !meta.is_dir() {
            return Err(ReplicaError::NotADirectory {
                path: dir.into(),
                key: self.check.key(),
            });
        }
        Ok(())
    }

    /// Checks that the existing directory `dir` is a real directory (no symlink) on the same
    /// mount as the target.
    pub(crate) fn ensure_on_share(&self, t: &Target, dir: &Path) -> Result<()> {
        self.real_dir(dir)?;
        let here = self.check.inspect(dir)?;
        if here.mount_point != t.report.mount_point || here.mount_id != t.report.mount_id {
            return Err(ReplicaError::OffShare {
                path: dir.into(),
                fs_type: here.fs_type,
                mount_point: here.mount_point,
            });
        }
        Ok(())
    }

    fn free_space_sync(&self) -> Result<Option<u64>> {
        let t = self.target()?;
        let total = fs4::total_space(&t.dir).map_err(io_err("read the size of", &t.dir))?;
        if total == 0 {
            // Some SMB clients (smbnetfs) report no sizes at all.
            return Ok(None);
        }
        fs4::available_space(&t.dir)
            .map(Some)
            .map_err(io_err("read the free space of", &t.dir))
    }

    fn check_sync(&self) -> Result<()> {
        let t = self.target()?;
        let probe = t.dir.join(format!(".packrat-probe-{}", std::process::id()));
        self.retry
            .run("create a test file", || fs::File::create(&probe).map(drop))
            .map_err(io_err("create a test file in", &t.dir))?;
        self.retry
            .run("remove the test file", || fs::remove_file(&probe))
            .map_err(io_err("remove the test file", &probe))
    }
}

/// Builds a [`ReplicaError::Io`]; use as `.map_err(io_err("write", &path))`.
pub(crate) fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> ReplicaError + use<> {
    let path = path.to_path_buf();
    move |source| ReplicaError::Io { action, path, source }
}

impl SyncSink for CifsReplicaSink {
    type Error = ReplicaError;

    fn name(&self) -> &str {
        &self.name
    }

    fn location(&self) -> String {
        self.path.display().to_string()
    }

    fn store(&self, pack: &SealedPack, job: JobId) -> Result<PackInfo> {
        self.store_sync(pack, job)
    }

    fn list(&self, plan: Option<&str>) -> Result<Vec<PackInfo>> {
        self.list_sync(plan)
    }

    fn open(&self, plan: &str, id: &str) -> Result<Arc<dyn PackReader>> {
        self.open_sync(plan, id).map(Pack::into_reader)
    }

    /// True if anything (a pack, foreign data) is under the pack's name.
    fn exists(&self, plan: &str, id: &str) -> Result<bool> {
        self.exists_sync(plan, id)
    }

    /// Deletes the pack only if it opens as a valid pack of ours under that plan and id.
    fn delete(&self, plan: &str, id: &str) -> Result<()> {
        self.delete_sync(plan, id)
    }

    /// Removes `_tmp` leftovers of jobs that are gone, after the mount check (when the share is
    /// not mounted, nothing is touched and the check's error is returned).
    fn clean_leftovers(&self) -> Result<Vec<PathBuf>> {
        self.clean_leftovers_sync()
    }

    /// Free bytes on the share; `None` when the share reports no sizes.
    fn free_space(&self) -> Result<Option<u64>> {
        self.free_space_sync()
    }

    /// The mount check, the target present and a directory, and a test file written and removed.
    fn check(&self) -> Result<()> {
        self.check_sync()
    }
}
