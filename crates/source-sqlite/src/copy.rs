//! The online copy of a live database with SQLite's backup API.

use std::fs::OpenOptions;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use backup_core::Progress;
use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

use crate::CACHE_KIB;
use crate::error::{Error, classify};

/// Bytes copied per step while holding a snapshot (only sets the progress granularity).
const SNAPSHOT_STEP_BYTES: i64 = 16 << 20;
/// Bytes copied per step in rollback-journal mode: a writer's commit waits for at most one step
/// (about a millisecond).
const ROLLBACK_STEP_BYTES: i64 = 1 << 20;
/// Pause between steps in rollback-journal mode. A writer that is already waiting to commit holds
/// SQLite's PENDING lock, which keeps our next step out until it has committed, so the pause only
/// needs to let the writer run.
const ROLLBACK_PAUSE: Duration = Duration::from_micros(200);
/// How often the copy is flushed to disk while it is written.
const SYNC_INTERVAL: Duration = Duration::from_millis(50);
/// Pause before retrying a step that found the database locked.
const BUSY_PAUSE: Duration = Duration::from_millis(5);

/// The journal mode of the source database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JournalMode {
    /// Write-ahead log: readers and writers do not block each other.
    Wal,
    /// A rollback journal (`delete`, `truncate`, `persist`, …): readers block writers' commits.
    Rollback,
}

impl JournalMode {
    /// `wal` or `rollback`.
    pub fn as_str(self) -> &'static str {
        match self {
            JournalMode::Wal => "wal",
            JournalMode::Rollback => "rollback",
        }
    }
}

/// How the copy was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyStrategy {
    /// In one read transaction (WAL mode): a consistent snapshot, writers never wait.
    Snapshot,
    /// In small steps, each holding the read lock only briefly (rollback-journal mode).
    Stepped,
    /// Small steps kept being restarted by writers' commits until the time budget ran out; the
    /// rest was copied in one read transaction that held writers' commits off until done.
    SteppedThenLocked,
}

/// The settings of one copy.
#[derive(Debug, Clone)]
pub(crate) struct CopySettings<'a> {
    pub source: &'a Path,
    pub busy_timeout: Duration,
    pub rollback_budget: Duration,
    pub cancel: &'a AtomicBool,
    pub progress: &'a dyn Progress,
}

/// What a copy did.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Copied {
    pub journal_mode: JournalMode,
    pub strategy: CopyStrategy,
    /// Times a writer's commit made the copy start over.
    pub restarts: u32,
    /// How long the final read transaction held writers off (rollback-journal fallback only).
    pub locked_for: Duration,
}

/// Opens the source database read-only: never creates it, never writes or checkpoints it.
pub(crate) fn open_source(path: &Path, busy_timeout: Duration) -> Result<Connection, Error> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| classify("open", path, busy_timeout, e))?;
    conn.busy_timeout(busy_timeout)
        .and_then(|()| conn.pragma_update(None, "cache_size", -CACHE_KIB))
        .map_err(|e| classify("configure", path, busy_timeout, e))?;
    Ok(conn)
}

/// The source's journal mode (reading it also proves the file is a database we can read).
pub(crate) fn journal_mode(conn: &Connection, path: &Path, busy_timeout: Duration) -> Result<JournalMode, Error> {
    let mode: String = conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .map_err(|e| classify("read", path, busy_timeout, e))?;
    Ok(if mode.eq_ignore_ascii_case("wal") {
        JournalMode::Wal
    } else {
        JournalMode::Rollback
    })
}

/// Copies the database at `s.source` into the new file `dest` with SQLite's backup API.
pub(crate) fn copy_database(s: &CopySettings<'_>, dest: &Path) -> Result<Copied, Error> {
    let src = open_source(s.source, s.busy_timeout)?;
    let journal_mode = journal_mode(&src, s.source, s.busy_timeout)?;

    // The copy is our own new file: no journal and no syncing by SQLite (a failed copy is
    // deleted; a background thread flushes it while it grows, and it is fsynced once complete).
    let dest_err = |e| classify("write the copy", dest, Duration::ZERO, e);
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut dst = Connection::open_with_flags(dest, flags).map_err(dest_err)?;
    dst.pragma_update(None, "cache_size", -CACHE_KIB).map_err(dest_err)?;
    dst.pragma_update_and_check(None, "journal_mode", "OFF", |_| Ok(()))
        .map_err(dest_err)?;
    dst.pragma_update(None, "synchronous", "OFF").map_err(dest_err)?;

    let copied = with_background_sync(dest, || -> Result<Copied, Error> {
        let backup = Backup::new(&src, &mut dst).map_err(dest_err)?;
        let page_size: i64 = src
            .pragma_query_value(None, "page_size", |r| r.get(0))
            .map_err(|e| classify("read", s.source, s.busy_timeout, e))?;
        let mut run = Run {
            s,
            backup: &backup,
            src: &src,
            page_size: page_size.max(512),
            last_pages: 0,
            max_pages: 0,
            restarts: 0,
        };
        let copied = match journal_mode {
            JournalMode::Wal => {
                run.snapshot()?;
                Copied {
                    journal_mode,
                    strategy: CopyStrategy::Snapshot,
                    restarts: 0,
                    locked_for: Duration::ZERO,
                }
            }
            JournalMode::Rollback => {
                let (strategy, locked_for) = if run.stepped()? {
                    (CopyStrategy::Stepped, Duration::ZERO)
                } else {
                    let t = Instant::now();
                    run.snapshot()?;
                    (CopyStrategy::SteppedThenLocked, t.elapsed())
                };
                Copied {
                    journal_mode,
                    strategy,
                    restarts: run.restarts,
                    locked_for,
                }
            }
        };
        Ok(copied)
    })?;
    dst.close().map_err(|(_, e)| dest_err(e))?;
    drop(src);
    Ok(copied)
}

/// Runs `copy` while another thread flushes the file at `dest` to disk every [`SYNC_INTERVAL`], so
/// that writing back the copy overlaps with making it and the final fsync finds little left to do.
/// Best effort: if the file cannot be opened for syncing, the final fsync does all the work.
pub(crate) fn with_background_sync<T>(dest: &Path, copy: impl FnOnce() -> T) -> T {
    let (stop, stopped) = mpsc::channel::<()>();
    thread::scope(|s| {
        s.spawn(move || {
            // Write access: Windows cannot flush a file opened read-only.
            let Ok(file) = OpenOptions::new().write(true).open(dest) else {
                return;
            };
            while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(SYNC_INTERVAL) {
                if file.sync_data().is_err() {
                    return;
                }
            }
        });
        let result = copy();
        drop(stop);
        result
    })
}

/// One backup in progress.
struct Run<'a, 'b> {
    s: &'a CopySettings<'a>,
    backup: &'a Backup<'b, 'b>,
    src: &'a Connection,
    page_size: i64,
    /// Pages copied by the current attempt after the last step.
    last_pages: i64,
    /// Most pages copied so far by any attempt (for monotone progress).
    max_pages: i64,
    restarts: u32,
}

impl Run<'_, '_> {
    /// Copies everything inside one read transaction on the source: a consistent snapshot. In WAL
    /// mode writers go on meanwhile; in rollback-journal mode their commits wait until it ends.
    fn snapshot(&mut self) -> Result<(), Error> {
        let path = self.s.source;
        let err = |e| classify("read", path, self.s.busy_timeout, e);
        self.src.execute_batch("BEGIN").map_err(err)?;
        // The first read starts the read transaction; it lasts until COMMIT.
        self.src
            .query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))
            .map_err(err)?;
        let pages = self.pages_per_step(SNAPSHOT_STEP_BYTES);
        while !self.step(pages)? {}
        self.src.execute_batch("COMMIT").map_err(err)
    }

    /// Copies in small steps with a pause between them, starting over whenever a writer commits,
    /// until done (true) or the rollback budget is spent (false).
    fn stepped(&mut self) -> Result<bool, Error> {
        let start = Instant::now();
        let pages = self.pages_per_step(ROLLBACK_STEP_BYTES);
        while start.elapsed() < self.s.rollback_budget {
            if self.step(pages)? {
                return Ok(true);
            }
            thread::sleep(ROLLBACK_PAUSE);
        }
        tracing::info!(
            source = %self.s.source.display(),
            restarts = self.restarts,
            "writers kept committing for {:?}; copying the rest in one read transaction",
            self.s.rollback_budget
        );
        Ok(false)
    }

    /// Pages per step for about `bytes` bytes.
    fn pages_per_step(&self, bytes: i64) -> i32 {
        (bytes / self.page_size).clamp(16, i64::from(i32::MAX)) as i32
    }

    /// One step of `pages` pages, retried while the database is busy (up to `busy_timeout`).
    /// Returns true when the copy is complete.
    fn step(&mut self, pages: i32) -> Result<bool, Error> {
        let path = self.s.source;
        let mut busy_since: Option<Instant> = None;
        loop {
            if self.s.cancel.load(Ordering::Relaxed) {
                return Err(Error::Cancelled {
                    path: path.to_path_buf(),
                });
            }
            let started = Instant::now();
            let result = self
                .backup
                .step(pages)
                .map_err(|e| classify("copy", path, self.s.busy_timeout, e))?;
            match result {
                StepResult::Done | StepResult::More => {
                    self.report_progress();
                    return Ok(result == StepResult::Done);
                }
                // Busy, Locked (and any result a future rusqlite may add): wait and retry.
                _ => {
                    // SQLite's busy handler has usually waited already; count from this step.
                    let since = *busy_since.get_or_insert(started);
                    if since.elapsed() >= self.s.busy_timeout {
                        return Err(Error::Locked {
                            path: path.to_path_buf(),
                            timeout: self.s.busy_timeout,
                        });
                    }
                    thread::sleep(BUSY_PAUSE);
                }
            }
        }
    }

    /// Reports newly copied bytes; notices restarts (fewer pages copied than before).
    fn report_progress(&mut self) {
        let p = self.backup.progress();
        let copied = i64::from(p.pagecount) - i64::from(p.remaining);
        if self.last_pages > 0 && copied <= self.last_pages {
            self.restarts += 1;
        }
        if copied > self.max_pages {
            self.s
                .progress
                .advance(((copied - self.max_pages) * self.page_size) as u64);
            self.max_pages = copied;
        }
        self.last_pages = copied;
    }
}
