//! The single pass over a WAL database: its pages read in order through `sqlite_dbpage` inside one
//! read transaction and streamed into the pack (sha256, and zstd or age when asked, while
//! copying), while a second connection runs `PRAGMA integrity_check` on the same snapshot.
//!
//! The copy is the snapshot's pages 1..N, byte for byte: the file SQLite itself would read. The
//! check reads the same snapshot, so it checks exactly the bytes that were copied, without
//! reading the copy back. Both connections are readers, and in WAL mode readers never block
//! writers.
//!
//! **Reading ahead.** `PRAGMA integrity_check` walks the b-trees, which on a cold page cache means
//! random reads: 18.7 s for a 1 GiB database here, against 1.4 s to read the file in order. So the
//! whole database file is first read through in order (see [`read_through`]), and the check
//! starts once that is done: the copy follows the read-ahead, and the check then reads from the
//! page cache. The read-ahead is only a hint; if it fails, the copy and the check read the file
//! themselves.
//!
//! **The same snapshot.** Two connections see the same snapshot when no commit lands between the
//! starts of their read transactions. `PRAGMA data_version` proves that: it changes, for the
//! connection that asks, whenever another connection has committed since it last looked. So: A
//! asks (v0), B starts its transaction, A starts its transaction and asks again (v1). If v0 == v1,
//! nothing was committed between A's two looks, and B's start lies between them. Otherwise both
//! end their transactions and try again; after [`ALIGN_TRIES`] tries the check runs on A itself,
//! after the copy, in A's transaction (the same snapshot, one pass after the other).

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use crate::check::{self, DbFacts};
use crate::copy::{self, CopySettings};
use crate::error::{Error, classify};

/// Bytes handed to the writer thread at a time.
const CHUNK: usize = 1 << 20;
/// Chunks in flight between the reader and the writer (bounds memory at about 4 MiB).
const IN_FLIGHT: usize = 3;
/// Attempts at starting both read transactions on the same snapshot.
const ALIGN_TRIES: u32 = 50;
/// Request size of the read-ahead.
const READ_AHEAD: usize = 4 << 20;

/// What the single pass did.
#[derive(Debug)]
pub(crate) struct Passed {
    /// Facts of the checked snapshot.
    pub facts: DbFacts,
    /// Time from the first page read to the last page written.
    pub copy_time: Duration,
    /// Time of the integrity check (concurrent with the copy unless `concurrent` is false).
    pub check_time: Duration,
    /// The check ran alongside the copy (false: writers kept committing, it ran after it).
    pub concurrent: bool,
}

/// True when this SQLite build has the `sqlite_dbpage` table (`SQLITE_ENABLE_DBPAGE_VTAB`).
pub(crate) fn available(conn: &Connection) -> bool {
    conn.prepare("SELECT data FROM sqlite_dbpage WHERE pgno = 1").is_ok()
}

/// Copies the WAL database `a` is open on (read-only, see [`copy::open_source`]) into `out` (the
/// file `dest`) in one pass and checks the same snapshot. `what`/`advice` phrase a failed check.
///
/// `ahead` is the database file, opened before `a`, for the read-ahead. The caller must keep it
/// open until every connection to the database is closed: on Unix, closing any descriptor of a
/// file drops all of the process's POSIX locks on it, SQLite's included.
pub(crate) fn copy_and_check(
    s: &CopySettings<'_>,
    a: &Connection,
    ahead: Option<&File>,
    out: &mut (dyn Write + Send),
    dest: &Path,
    what: &str,
    advice: &str,
) -> Result<Passed, Error> {
    let path = s.source;
    let err = |e| classify("read", path, s.busy_timeout, e);
    let b = copy::open_source(path, s.busy_timeout)?;
    let aligned = begin_same_snapshot(a, &b, path, s.busy_timeout)?;
    let b = aligned.then_some(b);

    let page_size: i64 = a.pragma_query_value(None, "page_size", |r| r.get(0)).map_err(err)?;
    let page_count: i64 = a.pragma_query_value(None, "page_count", |r| r.get(0)).map_err(err)?;
    s.progress.set_total((page_size * page_count).max(0) as u64);

    let started = Instant::now();
    // Set when the copy fails or is cancelled: the read-ahead stops, and the check is skipped or
    // interrupted rather than run to the end for nothing.
    let stop = AtomicBool::new(false);
    let stopped = || stop.load(Ordering::Relaxed) || s.cancel.load(Ordering::Relaxed);
    let interrupt = b.as_ref().map(Connection::get_interrupt_handle);
    let (copied, checked) = thread::scope(|scope| {
        let read_ahead = ahead.map(|f| scope.spawn(move || read_through(f, &stopped)));
        let checker = b.map(|b| {
            scope.spawn(move || {
                // Wait for the read-ahead: the check then reads from the page cache.
                if let Some(r) = read_ahead {
                    let _ = r.join();
                }
                let t = Instant::now();
                let facts = if stopped() {
                    Err(Error::Cancelled {
                        path: path.to_path_buf(),
                    })
                } else {
                    check::check_connection(&b, path, what, advice)
                };
                let _ = b.execute_batch("COMMIT");
                (facts, t.elapsed())
            })
        });
        let copied = stream_pages(s, a, page_size, page_count, out, dest);
        if copied.is_err() {
            stop.store(true, Ordering::Relaxed);
            if let Some(h) = &interrupt {
                h.interrupt();
            }
        }
        let checked = checker.map(|c| c.join());
        (copied, checked)
    });
    let copy_time = started.elapsed();
    copied?;
    let (facts, check_time, concurrent) = match checked {
        Some(Ok((facts, t))) => (facts?, t, true),
        Some(Err(_)) => return Err(Error::Internal("the integrity check thread panicked".into())),
        None => {
            let t = Instant::now();
            let facts = check::check_connection(a, path, what, advice)?;
            (facts, t.elapsed(), false)
        }
    };
    a.execute_batch("COMMIT").map_err(err)?;
    Ok(Passed {
        facts: DbFacts { wal: true, ..facts },
        copy_time,
        check_time,
        concurrent,
    })
}

/// Brings `file` into the page cache by reading it through in large requests and discarding the
/// bytes. (`posix_fadvise(WILLNEED)` returns before the reads are done, so the check would start
/// on a cold cache: measured, the check then took as long as without any read-ahead.) Best
/// effort: stops at the first error (e.g. a byte range Windows has locked) or once `stopped`.
fn read_through(mut file: &File, stopped: &dyn Fn() -> bool) {
    let mut buf = vec![0u8; READ_AHEAD];
    while !stopped() {
        match file.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// Starts read transactions on `a` and `b`; true when they provably see the same snapshot (see
/// the module documentation), false when only `a`'s is open.
fn begin_same_snapshot(a: &Connection, b: &Connection, path: &Path, busy: Duration) -> Result<bool, Error> {
    let err = |e| classify("read", path, busy, e);
    let version = |c: &Connection| -> Result<i64, Error> {
        c.pragma_query_value(None, "data_version", |r| r.get(0)).map_err(err)
    };
    let begin = |c: &Connection| -> Result<(), Error> {
        c.execute_batch("BEGIN").map_err(err)?;
        // The first read starts the read transaction; it lasts until COMMIT.
        c.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))
            .map_err(err)
    };
    for _ in 0..ALIGN_TRIES {
        let before = version(a)?;
        begin(b)?;
        begin(a)?;
        if version(a)? == before {
            return Ok(true);
        }
        a.execute_batch("COMMIT").map_err(err)?;
        b.execute_batch("COMMIT").map_err(err)?;
    }
    tracing::debug!(source = %path.display(), "writers kept committing; the check runs after the copy");
    begin(a)?;
    Ok(false)
}

/// Reads pages 1..=`page_count` on this thread and writes them to `out` on another.
fn stream_pages(
    s: &CopySettings<'_>,
    a: &Connection,
    page_size: i64,
    page_count: i64,
    out: &mut (dyn Write + Send),
    dest: &Path,
) -> Result<(), Error> {
    let path = s.source;
    let err = |e| classify("copy", path, s.busy_timeout, e);
    let (full_tx, full_rx) = mpsc::sync_channel::<Vec<u8>>(IN_FLIGHT);
    let (empty_tx, empty_rx) = mpsc::channel::<Vec<u8>>();
    thread::scope(|scope| {
        let writer = scope.spawn(move || -> std::io::Result<()> {
            for chunk in full_rx {
                out.write_all(&chunk)?;
                // The reader may be gone already (it failed); then the buffer is just dropped.
                let _ = empty_tx.send(chunk);
            }
            out.flush()
        });
        let read = (|| -> Result<(), Error> {
            let mut stmt = a.prepare("SELECT data FROM sqlite_dbpage").map_err(err)?;
            let mut rows = stmt.query([]).map_err(err)?;
            let mut chunk = Vec::with_capacity(CHUNK);
            let mut pages = 0i64;
            while let Some(row) = rows.next().map_err(err)? {
                let data = row.get_ref(0).map_err(err)?;
                let data = data.as_blob().map_err(|e| err(e.into()))?;
                if data.len() as i64 != page_size {
                    return Err(Error::Internal(format!(
                        "page {} of {} has {} bytes, not the page size {page_size}",
                        pages + 1,
                        path.display(),
                        data.len()
                    )));
                }
                chunk.extend_from_slice(data);
                pages += 1;
                if chunk.len() >= CHUNK {
                    if s.cancel.load(Ordering::Relaxed) {
                        return Err(Error::Cancelled {
                            path: path.to_path_buf(),
                        });
                    }
                    s.progress.advance(chunk.len() as u64);
                    let next = empty_rx.try_recv().unwrap_or_else(|_| Vec::with_capacity(CHUNK));
                    if full_tx.send(std::mem::replace(&mut chunk, next)).is_err() {
                        return Ok(()); // the writer failed: its error is reported below
                    }
                    chunk.clear();
                }
            }
            if pages != page_count {
                return Err(Error::Internal(format!(
                    "read {pages} pages of {}, its snapshot has {page_count}",
                    path.display()
                )));
            }
            s.progress.advance(chunk.len() as u64);
            let _ = full_tx.send(chunk);
            Ok(())
        })();
        drop(full_tx);
        let written = writer.join();
        read?;
        match written {
            Ok(r) => r.map_err(Error::io("write", dest)),
            Err(_) => Err(Error::Internal("the writer thread panicked".into())),
        }
    })
}
