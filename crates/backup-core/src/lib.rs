//! # backup-core
//!
//! The shared heart of packrat: the [`Source`], [`Sink`], [`SchedulePolicy`] and
//! [`RetentionPolicy`] traits, the pack format (a directory of artifacts sealed by a
//! `manifest.json` written last), streaming artifact writers that compress and checksum while
//! writing, quick and deep verification, the job model and its durable [`StateStore`] (which
//! other components may extend with their own tables), the configuration schema, and the
//! [`Runner`] that drives one job from `queued` to `completed`.
//!
//! Sources and sinks live in their own crates and depend on this one only.
//!
//! ```no_run
//! # fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use backup_core::{Compression, PackId, StagingPack, BackupKind};
//! let pack = StagingPack::create(
//!     "/tmp/staging/job_1".as_ref(),
//!     "nightly",
//!     PackId::new("migration_pack_20261121_040000")?,
//!     BackupKind::Full,
//!     chrono_tz::Asia::Shanghai,
//! )?;
//! let mut w = pack.artifact("notes/hello.txt.zst", "demo", "file", Compression::Zstd)?;
//! std::io::Write::write_all(&mut w, b"hello")?;
//! w.finish()?;
//! let sealed = pack.seal()?; // manifest.json written last, fsynced
//! println!("{}", sealed.dir().display());
//! # Ok(()) }
//! ```

pub mod cancel;
pub mod config;
pub mod error;
pub mod job;
pub mod lock;
pub mod manifest;
pub mod pack;
pub mod restore_temp;
pub mod retain;
pub mod runner;
pub mod schedule;
pub mod sink;
pub mod source;
pub mod state;
pub mod sums;
pub mod verify;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use cancel::CancelToken;
pub use error::{BoxError, Error, ErrorKind, HasKind, Result};
pub use job::{BackupKind, Job, JobId, JobOutcome, JobStats, JobStatus, ReplicationStatus, Trigger};
pub use manifest::{ArtifactEntry, Compression, FORMAT_VERSION, Manifest, ManifestWatermark, TimeWindow};
pub use pack::{ArtifactWriter, Pack, PackId, SealedPack, StagingPack};
pub use retain::{RetentionPolicy, Verdict};
pub use runner::{JobRun, Plan, QueuedJob, Recovery, Runner};
pub use schedule::{DueRun, SchedulePolicy};
pub use sink::{PackInfo, Sink};
pub use source::{BackupContext, NoProgress, Progress, Source, SourceReport, WatermarkUpdate};
pub use state::StateStore;
pub use sums::Sums;
pub use verify::{DeepCheck, RestoreCheck, Verifier, VerifyLevel, VerifyReport};
