//! # backup-core
//!
//! The engine of packrat: the [`Source`], [`Sink`], [`SchedulePolicy`] and [`RetentionPolicy`]
//! traits, the pack format (a directory of artifacts sealed by a `manifest.json` written last,
//! with one [`Sums`] type for its `SHA256SUMS`), streaming artifact writers that compress and
//! checksum while writing, reading stored packs through their sink ([`PackReader`]), quick and
//! deep verification, the job model and its durable [`StateStore`] (which other components extend
//! with their own tables), the config support every crate's section builds on ([`config`]), one
//! [`Error`] with an [`ErrorKind`], and the [`Runner`] that drives one job from `queued` to
//! `completed`. It knows no concrete source, sink or daemon setting: those live in their own
//! crates, which depend on this one only.
//!
//! Sinks built on blocking I/O implement [`SyncSink`] and are a [`Sink`] through the blocking
//! adapter; dry runs and retries are wrappers around any sink ([`DryRunSink`], [`RetrySink`]).
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use backup_core::{BackupKind, Compression, PackId, StagingPack, Verifier, VerifyLevel};
//! let tmp = tempfile::tempdir()?;
//! let pack = StagingPack::create(
//!     &tmp.path().join("job_1"),
//!     "nightly",
//!     PackId::new("migration_pack_20261121_040000")?,
//!     BackupKind::Full,
//!     chrono_tz::Asia::Shanghai,
//! )?;
//! let mut w = pack.artifact("notes/hello.txt.zst", "demo", "file", Compression::Zstd)?;
//! std::io::Write::write_all(&mut w, b"hello")?;
//! w.finish()?; // size, sha256 and counts recorded while streaming
//! let sealed = pack.seal()?; // SHA256SUMS, then manifest.json last, fsynced
//! assert_eq!(sealed.manifest().artifacts[0].path, "notes/hello.txt.zst");
//! let report = Verifier::new().verify(&sealed.to_pack(), VerifyLevel::Deep);
//! assert!(report.is_ok(), "{:?}", report.problems);
//! # Ok(()) }
//! ```

pub mod cancel;
pub mod config;
pub mod crypt;
pub mod dry_run;
pub mod error;
pub mod job;
pub mod lock;
pub mod manifest;
pub mod pack;
pub mod reader;
pub mod restore_temp;
pub mod retain;
pub mod retry;
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
pub use dry_run::DryRunSink;
pub use error::{BoxError, Error, ErrorKind, HasKind, Result};
pub use job::{BackupKind, Job, JobId, JobOutcome, JobStats, JobStatus, ReplicationStatus, Trigger};
pub use manifest::{ArtifactEntry, Compression, FORMAT_VERSION, Manifest, ManifestWatermark, TimeWindow};
pub use pack::{ArtifactWriter, Pack, PackId, SealedPack, StagingPack};
pub use reader::PackReader;
pub use retain::{RetentionPolicy, Verdict};
pub use retry::{RetryPolicy, RetrySink};
pub use runner::{JobRun, Plan, QueuedJob, Recovery, Runner};
pub use schedule::{DueRun, SchedulePolicy};
pub use sink::{PackInfo, Sink, SyncSink};
pub use source::{BackupContext, NoProgress, Progress, Source, SourceReport, WatermarkUpdate};
pub use state::StateStore;
pub use sums::Sums;
pub use verify::{DeepCheck, RestoreCheck, Verifier, VerifyLevel, VerifyReport};
