//! # source-sqlite
//!
//! The packrat source for SQLite databases. [`SqliteSource`] takes a consistent online copy of a
//! live database with SQLite's backup API while other connections keep writing, checks the copy
//! with `PRAGMA integrity_check`, and adds it to the pack as `sqlite/<name>.db` (or, with
//! compression, `sqlite/<name>.db.zst`). [`SqliteCheck`] is the deep check of such artifacts for
//! [`backup_core::Verifier`], and [`restore`] streams one from a pack (any
//! [`backup_core::PackReader`], wherever its sink keeps it) back in place without ever leaving a
//! half-written file at the target.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use backup_core::{BackupContext, BackupKind, PackId, Source, StagingPack, Verifier, VerifyLevel};
//! use source_sqlite::{SqliteCheck, SqliteSource};
//!
//! let tmp = tempfile::tempdir()?;
//! let db = tmp.path().join("app.db");
//! rusqlite::Connection::open(&db)?.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")?;
//!
//! let source = SqliteSource::new("app_db", &db).compress(true);
//! let ctx = BackupContext::detached("nightly", BackupKind::Full);
//! let id = PackId::new("migration_pack_20261121_040000")?;
//! let pack = StagingPack::create(&tmp.path().join("job_1"), "nightly", id, BackupKind::Full, ctx.time_zone)?;
//! source.backup(&ctx, &pack).await?; // writes sqlite/app_db.db.zst
//! let sealed = pack.seal()?;
//!
//! let verifier = Verifier::new().with_check(Arc::new(SqliteCheck));
//! assert!(verifier.verify(&sealed.to_pack(), VerifyLevel::Deep).is_ok());
//!
//! let p = sealed.to_pack();
//! let entry = source_sqlite::find_artifact(&p, "app_db").map_err(backup_core::Error::source("app_db"))?;
//! let restored = tmp.path().join("restored.db");
//! source_sqlite::restore(&p, entry, &restored, false).map_err(backup_core::Error::source("app_db"))?;
//! # Ok(()) }
//! ```
//!
//! ## How the copy is taken
//!
//! The source is opened read-only: it is never created, written or checkpointed. A lock held by
//! another connection is waited for up to `busy_timeout`, then the backup fails with
//! [`Error::Locked`].
//!
//! - **WAL mode**: the whole database is copied inside one read transaction. That is a consistent
//!   snapshot, and writers are never blocked (in WAL mode readers and writers do not wait for each
//!   other); their new commits are simply not part of the copy.
//! - **Rollback-journal mode** (`delete`, `truncate`, `persist`): here a reader blocks every
//!   writer's commit for as long as it reads. The copy is therefore taken in steps of 1 MiB with a
//!   short pause between them, so a writer waits at most for one step (about a millisecond). But
//!   a writer's commit makes the copy start over, so under steady writes it may never finish.
//!   Once the *rollback budget* (default 10 s, see [`SqliteSource::rollback_budget`]) is spent,
//!   the rest is copied in one read transaction: the copy is then guaranteed to complete, but
//!   writers' commits wait until it does (roughly a second per GiB), and a writer whose own busy
//!   timeout is shorter gets `SQLITE_BUSY`. The backup then carries a warning. Switch busy
//!   databases to WAL mode (`PRAGMA journal_mode=WAL`) to avoid this trade-off.
//!
//! **One pass in WAL mode.** The pages of the snapshot are read in order through SQLite's
//! `sqlite_dbpage` table inside that read transaction and streamed straight into the pack's
//! artifact: hashed (the plain sha256 of `SHA256SUMS`), and compressed or encrypted when asked,
//! while they are copied. Meanwhile a second read-only connection runs `PRAGMA integrity_check`
//! on *the same snapshot* (proved with `PRAGMA data_version`; if writers keep committing in
//! between, the check runs after the copy in the copy's own read transaction), so the check
//! covers exactly the bytes that were copied and nothing is read back. `sqlite_dbpage` needs
//! SQLite built with `SQLITE_ENABLE_DBPAGE_VTAB`: this workspace sets it for the bundled SQLite
//! in `.cargo/config.toml` (`LIBSQLITE3_FLAGS`); a build without it (another workspace
//! embedding this crate) takes the rollback-journal path below, which is slower but the same
//! result.
//!
//! **Rollback-journal mode**, and any build without `sqlite_dbpage`: the backup API writes the
//! copy as our own new file, without journal or syncing; a helper thread flushes it to disk
//! while it grows. Then it is checked with `PRAGMA integrity_check` while, at the same time, it
//! is fsynced and checksummed into the pack (or compressed into it): the two passes over the
//! copy run on two threads. A copy that fails the check is deleted and the backup fails naming
//! it. Both SQLite connections use a 2 MiB page cache, so memory stays small whatever the
//! database size (about 10 MiB peak RSS for a 1 GiB database; the one-pass copy adds four
//! 1 MiB buffers).
//!
//! The copy keeps the source's header, so the copy of a WAL database is a WAL database again once
//! restored. Checks open copies as immutable files, which never creates `-wal`/`-shm` files next
//! to them.

mod check;
mod config;
mod copy;
mod error;
mod pages;
mod restore;
mod snapshot;

use std::fs::{self, File};
use std::io::{self, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use backup_core::{ArtifactEntry, BackupContext, Compression, Progress, Source, SourceReport, StagingPack};
pub use config::SqliteSourceConfig;

pub use check::{DbFacts, SqliteCheck, recorded_rows};
pub use copy::{CopyStrategy, JournalMode};
pub use error::Error;
pub use restore::{RestoreOptions, RestoreReport, find_artifact, restore, restore_with, sqlite_artifacts};
pub use snapshot::{Snapshot, snapshot_file};

/// The artifact type (`ArtifactEntry::kind`) and source kind of this crate.
pub const ARTIFACT_KIND: &str = "sqlite";

/// SQLite page cache per connection, in KiB.
pub(crate) const CACHE_KIB: i64 = 2048;
/// Buffer size for streaming files.
pub(crate) const IO_BUF: usize = 256 * 1024;

/// Default of [`SqliteSource::busy_timeout`].
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(30);
/// Default of [`SqliteSource::rollback_budget`].
pub const DEFAULT_ROLLBACK_BUDGET: Duration = Duration::from_secs(10);

/// A SQLite database to back up (`type = "sqlite"`).
#[derive(Debug, Clone)]
pub struct SqliteSource {
    name: String,
    path: PathBuf,
    artifact_name: String,
    compress: bool,
    busy_timeout: Duration,
    rollback_budget: Duration,
    path_hint: String,
}

/// What one backup did: the artifact, how the copy was taken, and how long each part took.
#[derive(Debug, Clone)]
pub struct BackupOutcome {
    /// The artifact added to the pack.
    pub entry: ArtifactEntry,
    /// The source's journal mode.
    pub journal_mode: JournalMode,
    /// How the copy was taken.
    pub strategy: CopyStrategy,
    /// Times writers' commits made the copy start over (rollback-journal mode only).
    pub restarts: u32,
    /// Facts about the copy.
    pub facts: DbFacts,
    /// Time spent copying.
    pub copy_time: Duration,
    /// Time spent in `PRAGMA integrity_check` (runs alongside `store_time`).
    pub check_time: Duration,
    /// Time spent fsyncing and checksumming (or compressing) the copy into the pack.
    pub store_time: Duration,
    /// Time of the whole backup.
    pub total_time: Duration,
    /// The copy was streamed into the pack in one pass through `sqlite_dbpage` while the same
    /// snapshot was checked (WAL mode); false: written by the backup API, then read back.
    pub single_pass: bool,
    /// Things the operator should know.
    pub warnings: Vec<String>,
}

impl SqliteSource {
    /// A source named `name` for the database file at `path`: uncompressed, artifact named after
    /// the source, [`DEFAULT_BUSY_TIMEOUT`], [`DEFAULT_ROLLBACK_BUDGET`].
    pub fn new(name: impl Into<String>, path: impl Into<PathBuf>) -> SqliteSource {
        let name = name.into();
        SqliteSource {
            artifact_name: name.clone(),
            path_hint: format!("sources.{name}.path"),
            name,
            path: path.into(),
            compress: false,
            busy_timeout: DEFAULT_BUSY_TIMEOUT,
            rollback_budget: DEFAULT_ROLLBACK_BUDGET,
        }
    }

    /// The source `sources.<name>` of the configuration.
    pub fn from_config(name: &str, config: &SqliteSourceConfig) -> SqliteSource {
        let mut s = SqliteSource::new(name, config.path.clone())
            .compress(config.compress)
            .busy_timeout(config.busy_timeout);
        if let Some(n) = &config.name {
            s = s.artifact_name(n.clone());
        }
        s
    }

    /// Store the copy zstd-compressed as `sqlite/<name>.db.zst` (at the pack's zstd level).
    pub fn compress(mut self, on: bool) -> SqliteSource {
        self.compress = on;
        self
    }

    /// How long to wait for a lock held by another connection before failing.
    pub fn busy_timeout(mut self, timeout: Duration) -> SqliteSource {
        self.busy_timeout = timeout;
        self
    }

    /// The `<name>` of `sqlite/<name>.db` (default: the source's name). Use A-Z a-z 0-9 _ - .
    pub fn artifact_name(mut self, name: impl Into<String>) -> SqliteSource {
        self.artifact_name = name.into();
        self
    }

    /// In rollback-journal mode: how long to keep copying in small steps that writers can
    /// interrupt before copying the rest in one pass that makes writers wait (see the crate
    /// documentation).
    pub fn rollback_budget(mut self, budget: Duration) -> SqliteSource {
        self.rollback_budget = budget;
        self
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The artifact's path in the pack: `sqlite/<name>.db` or `sqlite/<name>.db.zst`.
    pub fn artifact_path(&self) -> String {
        let ext = if self.compress { ".db.zst" } else { ".db" };
        format!("{ARTIFACT_KIND}/{}{ext}", self.artifact_name)
    }

    /// The database file's size plus its `-wal` file's size: an upper bound of the artifact.
    pub fn estimate_bytes(&self) -> Result<u64, Error> {
        let db = self.file_size()?;
        let wal = fs::metadata(companion(&self.path, "-wal"))
            .map(|m| m.len())
            .unwrap_or(0);
        Ok(db + wal)
    }

    /// Opens the database and reads its schema table: it exists, is a database, and is readable
    /// within `busy_timeout`.
    pub fn check_blocking(&self) -> Result<(), Error> {
        self.file_size()?;
        let conn = copy::open_source(&self.path, self.busy_timeout)?;
        copy::journal_mode(&conn, &self.path, self.busy_timeout)?;
        conn.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))
            .map_err(|e| error::classify("read", &self.path, self.busy_timeout, e))
    }

    /// Backs up into `pack`, blocking the calling thread (the [`Source`] implementation runs this
    /// on tokio's blocking pool).
    pub fn backup_blocking(&self, pack: &StagingPack, progress: &dyn Progress) -> Result<BackupOutcome, Error> {
        self.run(pack, progress, &AtomicBool::new(false))
    }

    fn file_size(&self) -> Result<u64, Error> {
        match fs::metadata(&self.path) {
            Ok(m) if m.is_file() => Ok(m.len()),
            Ok(_) => Err(Error::NotADatabase {
                path: self.path.clone(),
                detail: "it is a directory, not a file".into(),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Error::NotFound {
                path: self.path.clone(),
                hint: self.path_hint.clone(),
            }),
            Err(e) => Err(Error::io("inspect", &self.path)(e)),
        }
    }

    fn run(&self, pack: &StagingPack, progress: &dyn Progress, cancel: &AtomicBool) -> Result<BackupOutcome, Error> {
        let started = Instant::now();
        if !valid_name(&self.artifact_name) {
            return Err(Error::InvalidName(self.artifact_name.clone()));
        }
        progress.stage(&format!("copying SQLite database {}", self.path.display()));
        progress.set_total(self.estimate_bytes()?);

        // For the read-ahead of the single pass. Opened before, and closed after, every SQLite
        // connection to the file (see `pages::copy_and_check`).
        let ahead = File::open(&self.path).ok();
        let src = copy::open_source(&self.path, self.busy_timeout)?;
        let mode = copy::journal_mode(&src, &self.path, self.busy_timeout)?;
        let mut outcome = if mode == JournalMode::Wal && pages::available(&src) {
            self.single_pass(pack, &src, ahead.as_ref(), progress, cancel)?
        } else {
            drop(src);
            self.copy_then_check(pack, progress, cancel)?
        };
        outcome.total_time = started.elapsed();
        tracing::info!(
            source = %self.name,
            artifact = %outcome.entry.path,
            bytes = outcome.entry.size,
            journal_mode = outcome.journal_mode.as_str(),
            strategy = ?outcome.strategy,
            single_pass = outcome.single_pass,
            restarts = outcome.restarts,
            copy_ms = outcome.copy_time.as_millis() as u64,
            check_ms = outcome.check_time.as_millis() as u64,
            store_ms = outcome.store_time.as_millis() as u64,
            total_ms = outcome.total_time.as_millis() as u64,
            "SQLite backup done"
        );
        Ok(outcome)
    }

    /// WAL mode: the pages go straight into the pack's artifact (hashed, and compressed or
    /// encrypted when asked, on the way) while a second connection checks the same snapshot; see
    /// the `pages` module. Nothing is read back.
    fn single_pass(
        &self,
        pack: &StagingPack,
        src: &rusqlite::Connection,
        ahead: Option<&File>,
        progress: &dyn Progress,
        cancel: &AtomicBool,
    ) -> Result<BackupOutcome, Error> {
        let rel = self.artifact_path();
        let compression = if self.compress {
            Compression::Zstd
        } else {
            Compression::None
        };
        let mut w = pack.artifact(&rel, &self.name, ARTIFACT_KIND, compression)?;
        let dest = w.path().to_path_buf();
        let settings = self.copy_settings(cancel, progress);
        let what = format!("the snapshot of {} (copied to {rel})", self.path.display());
        let advice = self.check_advice();
        let passed = copy::with_background_sync(&dest, || {
            pages::copy_and_check(&settings, src, ahead, &mut w, &dest, &what, &advice)
        });
        let passed = match passed {
            Ok(p) => p,
            Err(e) => {
                drop(w);
                let _ = pack.unreserve(&rel);
                return Err(e);
            }
        };
        tracing::debug!(source = %self.name, check_alongside_copy = passed.concurrent, "single pass done");
        let facts = passed.facts;
        for (key, value) in manifest_meta(JournalMode::Wal, &facts) {
            w.set_meta(key, value);
        }
        let (finished, store_time) = timed(|| w.finish());
        let entry = match finished {
            Ok(entry) => entry,
            Err(e) => {
                let _ = pack.unreserve(&rel);
                return Err(e.into());
            }
        };
        progress.stage(&format!("copied and checked {}", self.path.display()));
        let mut warnings = Vec::new();
        if facts.page_count == 0 {
            warnings.push(format!("database {} is empty (no pages)", self.path.display()));
        }
        Ok(BackupOutcome {
            entry,
            journal_mode: JournalMode::Wal,
            strategy: CopyStrategy::Snapshot,
            restarts: 0,
            facts,
            copy_time: passed.copy_time,
            check_time: passed.check_time,
            store_time,
            total_time: Duration::ZERO,
            warnings,
            single_pass: true,
        })
    }

    fn copy_settings<'a>(&'a self, cancel: &'a AtomicBool, progress: &'a dyn Progress) -> copy::CopySettings<'a> {
        copy::CopySettings {
            source: &self.path,
            busy_timeout: self.busy_timeout,
            rollback_budget: self.rollback_budget,
            cancel,
            progress,
        }
    }

    /// What to do when the check of a copy fails.
    fn check_advice(&self) -> String {
        format!(
            "the copy was discarded; the source may be damaged — run `sqlite3 {} \"PRAGMA integrity_check\"`",
            self.path.display()
        )
    }

    /// Rollback-journal mode (or a SQLite built without `sqlite_dbpage`): the backup API writes
    /// the copy, which is then checked while it is stored.
    fn copy_then_check(
        &self,
        pack: &StagingPack,
        progress: &dyn Progress,
        cancel: &AtomicBool,
    ) -> Result<BackupOutcome, Error> {
        let final_rel = self.artifact_path();
        let copy_rel = if self.compress {
            format!("{ARTIFACT_KIND}/{}.db.tmp", self.artifact_name)
        } else {
            final_rel.clone()
        };
        let copy_path = pack.reserve(&copy_rel)?;
        let result = self.copy_check_store(pack, &copy_rel, &copy_path, progress, cancel);
        if self.compress || result.is_err() {
            // The temporary copy of a compressed backup, or the remains of a failed one.
            let cleanup = pack.unreserve(&copy_rel);
            if result.is_ok() {
                cleanup?;
            }
        }
        result
    }

    /// Copies into `copy_path`, then checks the copy while storing it in the pack.
    fn copy_check_store(
        &self,
        pack: &StagingPack,
        copy_rel: &str,
        copy_path: &Path,
        progress: &dyn Progress,
        cancel: &AtomicBool,
    ) -> Result<BackupOutcome, Error> {
        let t = Instant::now();
        let settings = self.copy_settings(cancel, progress);
        let copied = copy::copy_database(&settings, copy_path)?;
        let copy_time = t.elapsed();

        progress.stage(&format!("checking and storing the copy of {}", self.path.display()));
        let what = format!("the copy {copy_rel} of {}", self.path.display());
        let advice = self.check_advice();
        // Two passes over the copy on two threads: the integrity check, and fsync + sha256 (or
        // compression) into the pack.
        let (checked, (stored, store_time)) = thread::scope(|s| {
            let checker = s.spawn(|| timed(|| check::integrity_check(copy_path, &what, &advice)));
            let stored = timed(|| self.store(pack, copy_rel, copy_path));
            (checker.join(), stored)
        });
        let (facts, check_time) = match checked {
            Ok((Ok(facts), t)) => (facts, t),
            Ok((Err(e), _)) => {
                self.discard(pack, stored);
                return Err(e);
            }
            Err(_) => {
                self.discard(pack, stored);
                return Err(Error::Internal("the integrity check thread panicked".into()));
            }
        };
        let meta = manifest_meta(copied.journal_mode, &facts);
        let entry = match stored? {
            Stored::Adopted(mut entry) => {
                for (key, value) in meta {
                    entry = pack.set_artifact_meta(&entry.path, key, value)?;
                }
                entry
            }
            Stored::Compressing(mut w) => {
                for (key, value) in meta {
                    w.set_meta(key, value);
                }
                w.finish()?
            }
        };

        let mut warnings = Vec::new();
        if copied.strategy == CopyStrategy::SteppedThenLocked {
            warnings.push(format!(
                "writers kept restarting the copy of {} (rollback-journal mode) for {:?}, so the rest was copied \
                 in one pass that held their commits off for {:?}; switch the database to WAL mode \
                 (PRAGMA journal_mode=WAL) to avoid this",
                self.path.display(),
                self.rollback_budget,
                copied.locked_for
            ));
        }
        if facts.page_count == 0 {
            warnings.push(format!("database {} is empty (no pages)", self.path.display()));
        }
        Ok(BackupOutcome {
            entry,
            journal_mode: copied.journal_mode,
            strategy: copied.strategy,
            restarts: copied.restarts,
            facts,
            copy_time,
            check_time,
            store_time,
            total_time: Duration::ZERO,
            warnings,
            single_pass: false,
        })
    }

    /// Adds the copy to the pack: adopted as is, or streamed into a compressed artifact that is
    /// finished only once the integrity check has passed.
    fn store(&self, pack: &StagingPack, copy_rel: &str, copy_path: &Path) -> Result<Stored, Error> {
        if !self.compress {
            return Ok(Stored::Adopted(pack.adopt(
                copy_rel,
                &self.name,
                ARTIFACT_KIND,
                None,
            )?));
        }
        let final_rel = self.artifact_path();
        let mut w = pack.artifact(&final_rel, &self.name, ARTIFACT_KIND, Compression::Zstd)?;
        let copied = File::open(copy_path)
            .map_err(Error::io("open", copy_path))
            .and_then(|f| {
                io::copy(&mut BufReader::with_capacity(IO_BUF, f), &mut w).map_err(Error::io("compress", copy_path))
            });
        match copied {
            Ok(_) => Ok(Stored::Compressing(w)),
            Err(e) => {
                drop(w);
                let _ = pack.unreserve(&final_rel);
                Err(e)
            }
        }
    }

    /// Removes a stored artifact after the integrity check failed.
    fn discard(&self, pack: &StagingPack, stored: Result<Stored, Error>) {
        if let Ok(Stored::Compressing(w)) = stored {
            drop(w);
            let _ = pack.unreserve(&self.artifact_path());
        }
        // An adopted copy is removed with the copy itself by the caller.
    }
}

/// What the manifest records about a copy (`meta` of its artifact).
fn manifest_meta(mode: JournalMode, facts: &DbFacts) -> [(&'static str, serde_json::Value); 5] {
    [
        ("journal_mode", mode.as_str().into()),
        ("page_size", facts.page_size.into()),
        ("page_count", facts.page_count.into()),
        ("tables", facts.tables.into()),
        (
            "table_rows",
            serde_json::to_value(&facts.table_rows).unwrap_or_default(),
        ),
    ]
}

/// The copy as added to the pack, before the integrity check's verdict.
#[allow(clippy::large_enum_variant, reason = "one short-lived value per backup")]
enum Stored {
    Adopted(ArtifactEntry),
    Compressing(backup_core::ArtifactWriter),
}

#[async_trait]
impl Source for SqliteSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        ARTIFACT_KIND
    }

    async fn estimate(&self, _ctx: &BackupContext) -> backup_core::Result<u64> {
        self.estimate_bytes().map_err(backup_core::Error::source(&self.name))
    }

    async fn backup(&self, ctx: &BackupContext, pack: &StagingPack) -> backup_core::Result<SourceReport> {
        let this = self.clone();
        let pack = pack.clone();
        let progress = ctx.progress.clone();
        let cancel = CancelOnDrop(Arc::new(AtomicBool::new(false)));
        let flag = cancel.0.clone();
        let outcome = tokio::task::spawn_blocking(move || this.run(&pack, &*progress, &flag))
            .await
            .map_err(|e| Error::Internal(format!("the backup task failed: {e}")))
            .and_then(|r| r)
            .map_err(backup_core::Error::source(&self.name))?;
        Ok(SourceReport {
            watermarks: Vec::new(),
            warnings: outcome.warnings,
        })
    }

    async fn check(&self) -> backup_core::Result<()> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.check_blocking())
            .await
            .map_err(|e| Error::Internal(format!("the check task failed: {e}")))
            .and_then(|r| r)
            .map_err(backup_core::Error::source(&self.name))
    }
}

/// Asks the blocking backup to stop when the async caller goes away (e.g. the job is cancelled).
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// `path` with `suffix` appended to its file name (`app.db` → `app.db-wal`).
pub(crate) fn companion(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// 1-128 characters of `A-Z a-z 0-9 _ - .`, not starting with `.`.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let t = Instant::now();
    let r = f();
    (r, t.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_paths() {
        let s = SqliteSource::new("app_db", "/x/app.db");
        assert_eq!(s.artifact_path(), "sqlite/app_db.db");
        assert_eq!(s.clone().compress(true).artifact_path(), "sqlite/app_db.db.zst");
        assert_eq!(s.artifact_name("auth").artifact_path(), "sqlite/auth.db");
        assert!(valid_name("a.b-c_1"));
        for bad in ["", ".x", "a/b", "a b", "..", "a\\b"] {
            assert!(!valid_name(bad), "{bad}");
        }
        assert_eq!(
            companion(Path::new("/x/app.db"), "-wal"),
            PathBuf::from("/x/app.db-wal")
        );
    }

    /// A cancelled one-pass copy stops, skips the check, and leaves nothing in the pack.
    #[test]
    fn a_cancelled_single_pass_stops_and_leaves_nothing() {
        let t = tempfile::tempdir().unwrap();
        let db = t.path().join("big.db");
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t(x BLOB);")
            .unwrap();
        for _ in 0..64 {
            c.execute("INSERT INTO t VALUES (randomblob(65536))", []).unwrap();
        }
        let pack = StagingPack::create(
            &t.path().join("job_1"),
            "p",
            backup_core::PackId::new("p_20260101_000000").unwrap(),
            backup_core::BackupKind::Full,
            chrono_tz::UTC,
        )
        .unwrap();
        let err = SqliteSource::new("big", &db)
            .run(&pack, &backup_core::NoProgress, &AtomicBool::new(true))
            .unwrap_err();
        assert!(matches!(err, Error::Cancelled { .. }), "{err}");
        assert!(pack.artifacts().is_empty());
        assert!(!pack.dir().join("sqlite/big.db").exists());
    }

    #[test]
    fn from_config_takes_every_setting() {
        let cfg = SqliteSourceConfig {
            path: "/srv/auth.db".into(),
            compress: true,
            name: Some("auth".into()),
            busy_timeout: Duration::from_secs(5),
        };
        let s = SqliteSource::from_config("app_db", &cfg);
        assert_eq!(s.name, "app_db");
        assert_eq!(s.path(), Path::new("/srv/auth.db"));
        assert_eq!(s.artifact_path(), "sqlite/auth.db.zst");
        assert_eq!(s.busy_timeout, Duration::from_secs(5));
        assert_eq!(s.path_hint, "sources.app_db.path");
    }
}
