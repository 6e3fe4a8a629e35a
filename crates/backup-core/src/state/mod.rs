//! The durable state store of one installation: a single SQLite database, `state.db`, in the
//! state directory.
//!
//! The core records, one module each:
//!
//! - [`jobs`](StateStore::create_job) — one row per execution of a plan, from `queued` through
//!   `running` to `completed`, `failed`, `cancelled` or `interrupted` (see [`Job`]), each queued
//!   or running job holding its lock file `<state_dir>/locks/job-<id>.lock` (see [`JobLock`]);
//! - [schedule state](StateStore::schedule_state) per plan — the last fired slot, the last
//!   attempt and the last success (see [`ScheduleState`]);
//! - [watermarks](StateStore::watermarks) per (plan, source, key) — the upper time bound already
//!   backed up, advanced atomically after a pack is safely in place (see [`Watermark`]);
//! - the [audit trail](StateStore::audit), append-only (see [`AuditEntry`]);
//! - the schema versions (`migrate`): the core's in `PRAGMA user_version`, migrated forward on
//!   [`StateStore::open`].
//!
//! Other components keep their own tables in the same file: a component declares its schema
//! with [`StateStore::component_migrations`] (tracked per component in the `components` table)
//! and runs its queries with [`StateStore::with_conn`] or [`StateStore::with_transaction`]. The
//! alerts crate keeps the `alerts` table this way.
//!
//! The database runs in WAL mode with a 10 s busy timeout so that the CLI and the daemon can use
//! it at the same time. Within one process, a `StateStore` serialises every use of its single
//! connection.
//!
//! Times are stored as RFC 3339 text in UTC with microsecond precision
//! (`2026-11-21T04:00:00.000000Z`, see [`format_time`]), which sorts lexically in time order.

mod audit;
mod control;
mod jobs;
mod migrate;
mod schedule;
mod watermarks;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

pub use audit::{Actor, AuditAction, AuditEntry};
use chrono::{DateTime, SecondsFormat, Utc};
pub use control::{CancelOutcome, CancelRequest, CollectionHealth, WatermarkReset, parse_operator_time};
pub use jobs::{JobFilter, JobLock};
/// The SQLite binding the store is built on, for components that keep their own tables (the
/// same version, so its types fit [`StateStore::with_conn`]).
pub use rusqlite;
use rusqlite::types::Type;
use rusqlite::{Connection, Row, Transaction, TransactionBehavior};
pub use schedule::ScheduleState;
pub use watermarks::Watermark;

use crate::error::{Error, Result};
#[cfg(doc)]
use crate::job::Job;

/// File name of the database inside the state directory.
const DB_FILE: &str = "state.db";
/// Directory of the job lock files inside the state directory.
const LOCKS_DIR: &str = "locks";
/// How long a statement waits for another connection's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The durable state store of one installation (one SQLite database).
///
/// Cheap to share: it is `Send + Sync` and serialises access to its connection internally. Several
/// processes may open the same store at the same time.
pub struct StateStore {
    conn: Mutex<Connection>,
    path: PathBuf,
    dir: PathBuf,
}

impl fmt::Debug for StateStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl StateStore {
    /// Opens the state store in `state_dir`, creating the directory, its `locks` subdirectory and
    /// `state.db` as needed.
    ///
    /// The database uses the WAL journal, a 10 s busy timeout and `synchronous=NORMAL`; its
    /// schema is migrated forward (tracked with `PRAGMA user_version`). A database written by a
    /// newer packrat with an unknown schema version is refused.
    pub fn open(state_dir: &Path) -> Result<StateStore> {
        std::fs::create_dir_all(state_dir).map_err(Error::io("create", state_dir))?;
        let locks = state_dir.join(LOCKS_DIR);
        std::fs::create_dir_all(&locks).map_err(Error::io("create", &locks))?;
        let path = state_dir.join(DB_FILE);
        let state_err = |source| Error::state(&path, source);

        let mut conn = Connection::open(&path).map_err(state_err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(state_err)?;
        // Switching a fresh database to WAL while another process does the same can answer
        // SQLITE_BUSY without consulting the busy handler: retry it within the busy timeout.
        let started = std::time::Instant::now();
        let mode: String = loop {
            match conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0)) {
                Err(e)
                    if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
                        && started.elapsed() < BUSY_TIMEOUT =>
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
                r => break r.map_err(state_err)?,
            }
        };
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(path = %path.display(), journal_mode = %mode, "state store could not switch to WAL journal");
        }
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(state_err)?;
        migrate::migrate(&mut conn, &path)?;

        tracing::debug!(path = %path.display(), "state store opened");
        Ok(StateStore {
            conn: Mutex::new(conn),
            path,
            dir: state_dir.to_path_buf(),
        })
    }

    /// The database file (`<state_dir>/state.db`).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Brings the tables of `component` up to date in this database: `migrations[i]` (SQL, one
    /// or more statements) brings the component's schema from version `i` to `i + 1`. The
    /// version is recorded per component in the `components` table; each migration runs in its
    /// own transaction together with its version bump, so it is applied exactly once, also when
    /// several processes open the store at the same time. A component whose recorded version is
    /// higher than `migrations.len()` (written by a newer packrat) is refused.
    ///
    /// Call it once after [`StateStore::open`], before the first query on the component's
    /// tables. Rules for components: `component` is a stable identifier (lowercase letters,
    /// digits, `-`, `_`; by convention the crate name); a component creates and changes only its
    /// own tables, named after it (`alerts`, `myplugin_items`); released migrations are never
    /// edited, only new ones appended.
    pub fn component_migrations(&self, component: &str, migrations: &[&str]) -> Result<()> {
        let mut conn = self.conn();
        migrate::migrate_component(&mut conn, &self.path, component, migrations)
    }

    /// Runs `f` on the store's connection, serialised with every other use of this store (the
    /// same lock the store's own methods take). SQLite errors come back as
    /// [`Error::State`] (or [`Error::StateStoreFull`]) naming the database file.
    ///
    /// For components' own tables (see [`StateStore::component_migrations`]). `f` must not call
    /// back into this `StateStore` (the connection is held: that would deadlock). A statement
    /// that leaves a transaction open is rolled back and reported as an error; use
    /// [`StateStore::with_transaction`] for several statements that must apply together.
    pub fn with_conn<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T> {
        let conn = self.conn();
        let out = f(&conn);
        if !conn.is_autocommit() {
            // A transaction left open would hold the write lock and swallow later statements.
            let _ = conn.execute_batch("ROLLBACK");
            return Err(Error::Other(format!(
                "state store {}: a query left a transaction open; it was rolled back (use \
                 with_transaction)",
                self.path.display()
            )));
        }
        out.map_err(|e| self.err(e))
    }

    /// Runs `f` in one `IMMEDIATE` transaction on the store's connection (the write lock is
    /// taken up front, so it cannot fail half-way on a busy database): committed when `f`
    /// returns `Ok`, rolled back when it fails or panics. Serialised like
    /// [`StateStore::with_conn`], with the same rules.
    pub fn with_transaction<T>(&self, f: impl FnOnce(&Transaction<'_>) -> rusqlite::Result<T>) -> Result<T> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.err(e))?;
        let out = f(&tx).map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok(out)
    }

    /// The connection; a poisoned mutex is recovered (SQLite keeps its own consistency).
    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wraps a SQLite error.
    fn err(&self, source: rusqlite::Error) -> Error {
        Error::state(&self.path, source)
    }
}

// ---- column helpers, shared with the components' tables ----

/// Formats a time for storage: RFC 3339, UTC, microseconds, `Z`
/// (`2026-11-21T04:00:00.000000Z`); such texts sort in time order.
pub fn format_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn parse_time(idx: usize, s: &str) -> rusqlite::Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, Box::new(e)))
}

/// Reads a time column written with [`format_time`].
pub fn read_time(row: &Row<'_>, idx: usize) -> rusqlite::Result<DateTime<Utc>> {
    let s: String = row.get(idx)?;
    parse_time(idx, &s)
}

/// Reads a nullable time column written with [`format_time`].
pub fn read_opt_time(row: &Row<'_>, idx: usize) -> rusqlite::Result<Option<DateTime<Utc>>> {
    row.get::<_, Option<String>>(idx)?
        .map(|s| parse_time(idx, &s))
        .transpose()
}

/// Reads a text column through `FromStr` (the job enums, an alert's severity); a text that does
/// not parse is a conversion error naming the column.
pub fn read_parsed<T: FromStr<Err = String>>(row: &Row<'_>, idx: usize) -> rusqlite::Result<T> {
    let s: String = row.get(idx)?;
    s.parse()
        .map_err(|e: String| rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, e.into()))
}

/// Reads a non-negative integer column (a count, a size).
pub fn read_u64(row: &Row<'_>, idx: usize) -> rusqlite::Result<u64> {
    let v: i64 = row.get(idx)?;
    u64::try_from(v).map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, Type::Integer, Box::new(e)))
}

/// SQLite integers are signed; counts beyond `i64::MAX` saturate.
fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::job::{BackupKind, JobOutcome, JobStatus, Trigger};

    /// A fresh store in a temporary directory.
    pub(crate) fn store() -> (tempfile::TempDir, StateStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(&dir.path().join("state")).unwrap();
        (dir, store)
    }

    #[test]
    fn store_is_send_sync_and_reopens() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<StateStore>();
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let id = {
            let store = StateStore::open(&state).unwrap();
            assert_eq!(store.path(), state.join("state.db"));
            assert_eq!(store.dir(), state);
            let (job, _lock) = store.create_job("p", BackupKind::Full, Trigger::Manual).unwrap();
            store.complete_job(job.id, &JobOutcome::default()).unwrap();
            job.id
        };
        let store = StateStore::open(&state).unwrap();
        assert_eq!(store.job(id).unwrap().unwrap().status, JobStatus::Completed);
        let conn = store.conn();
        let v: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
        assert_eq!(v, migrate::MIGRATIONS.len() as i64);
        let mode: String = conn.pragma_query_value(None, "journal_mode", |r| r.get(0)).unwrap();
        assert_eq!(mode.to_lowercase(), "wal");
    }

    #[test]
    fn with_conn_and_with_transaction_reach_the_same_database() {
        let (_dir, store) = store();
        store
            .component_migrations("demo", &["CREATE TABLE demo (k TEXT PRIMARY KEY, n INTEGER NOT NULL);"])
            .unwrap();
        store
            .with_conn(|c| c.execute("INSERT INTO demo VALUES ('a', 1)", []))
            .unwrap();
        // A transaction is all or nothing: the second insert fails, the first is rolled back.
        let err = store
            .with_transaction(|tx| {
                tx.execute("INSERT INTO demo VALUES ('b', 2)", [])?;
                tx.execute("INSERT INTO demo VALUES ('a', 3)", [])
            })
            .unwrap_err();
        assert!(matches!(err, Error::State { .. }), "{err}");
        assert!(err.to_string().contains("state.db"), "{err}");
        let keys: Vec<String> = store
            .with_conn(|c| {
                let mut s = c.prepare("SELECT k FROM demo ORDER BY k")?;
                s.query_map([], |r| r.get(0))?.collect()
            })
            .unwrap();
        assert_eq!(keys, vec!["a"]);
        let n = store
            .with_transaction(|tx| {
                tx.execute("INSERT INTO demo VALUES ('b', 2)", [])?;
                tx.query_row("SELECT SUM(n) FROM demo", [], |r| r.get::<_, i64>(0))
            })
            .unwrap();
        assert_eq!(n, 3);

        // A second store on the same file (another process) sees the committed rows.
        let other = StateStore::open(store.dir()).unwrap();
        let n: i64 = other
            .with_conn(|c| c.query_row("SELECT COUNT(*) FROM demo", [], |r| r.get(0)))
            .unwrap();
        assert_eq!(n, 2);
    }

    #[test]
    fn with_conn_rolls_back_a_transaction_left_open() {
        let (_dir, store) = store();
        store
            .component_migrations("demo", &["CREATE TABLE demo (k TEXT PRIMARY KEY);"])
            .unwrap();
        let err = store
            .with_conn(|c| c.execute_batch("BEGIN; INSERT INTO demo VALUES ('x');"))
            .unwrap_err();
        assert!(err.to_string().contains("left a transaction open"), "{err}");
        // Rolled back, and the store works on.
        let n: i64 = store
            .with_conn(|c| c.query_row("SELECT COUNT(*) FROM demo", [], |r| r.get(0)))
            .unwrap();
        assert_eq!(n, 0);
        let (job, _lock) = store.create_job("p", BackupKind::Full, Trigger::Manual).unwrap();
        assert_eq!(store.job(job.id).unwrap().unwrap().status, JobStatus::Queued);
    }

    #[test]
    fn column_helpers_round_trip() {
        let (_dir, store) = store();
        let t = DateTime::parse_from_rfc3339("2026-11-21T04:00:00.123456Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(format_time(t), "2026-11-21T04:00:00.123456Z");
        let (back, none, status, n): (DateTime<Utc>, Option<DateTime<Utc>>, JobStatus, u64) = store
            .with_conn(|c| {
                c.query_row("SELECT ?1, NULL, 'failed', 42", [format_time(t)], |r| {
                    Ok((
                        read_time(r, 0)?,
                        read_opt_time(r, 1)?,
                        read_parsed(r, 2)?,
                        read_u64(r, 3)?,
                    ))
                })
            })
            .unwrap();
        assert_eq!((back, none, status, n), (t, None, JobStatus::Failed, 42));
        let bad = store
            .with_conn(|c| c.query_row("SELECT 'loud'", [], |r| read_parsed::<JobStatus>(r, 0)))
            .unwrap_err();
        assert!(matches!(bad, Error::State { .. }), "{bad}");
        let negative = store
            .with_conn(|c| c.query_row("SELECT -1", [], |r| read_u64(r, 0)))
            .unwrap_err();
        assert!(matches!(negative, Error::State { .. }), "{negative}");
    }
}
