//! Helpers shared by the integration tests: real SQLite databases in real files.

#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use backup_core::{BackupKind, PackId, StagingPack, Verifier};
use rusqlite::types::Value;
use rusqlite::{Connection, params};
use source_sqlite::SqliteCheck;

/// A verifier with the SQLite deep check.
pub fn verifier() -> Verifier {
    Verifier::new().with_check(Arc::new(SqliteCheck))
}

/// A fresh staging pack in `root`, directory named after the id (so that it opens once sealed).
pub fn staging(root: &Path, id: &str) -> StagingPack {
    let id = PackId::new(id).unwrap();
    StagingPack::create(&root.join(id.as_str()), "test", id, BackupKind::Full, chrono_tz::UTC).unwrap()
}

/// Creates a database at `path` in the given journal mode (`wal` or `delete`) with a few
/// tables of varied content and about `mib` MiB of filler rows.
pub fn create_db(path: &Path, journal_mode: &str, mib: usize) {
    let c = Connection::open(path).unwrap();
    c.pragma_update_and_check(None, "journal_mode", journal_mode, |_| Ok(()))
        .unwrap();
    c.execute_batch(
        "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT UNIQUE, score REAL, avatar BLOB);
         CREATE INDEX users_name ON users(name);
         CREATE TABLE log (id INTEGER PRIMARY KEY, tx INTEGER NOT NULL, half INTEGER NOT NULL, note TEXT);
         CREATE TABLE filler (id INTEGER PRIMARY KEY, data BLOB NOT NULL);
         CREATE VIEW user_names AS SELECT name FROM users;",
    )
    .unwrap();
    let tx = c.unchecked_transaction().unwrap();
    for i in 0..200i64 {
        let avatar: Option<Vec<u8>> = (i % 3 != 0).then(|| (0..(i * 7) as u8).collect());
        tx.execute(
            "INSERT INTO users (name, email, score, avatar) VALUES (?1, ?2, ?3, ?4)",
            params![
                format!("user {i} — ünïcødé"),
                format!("u{i}@example.com"),
                i as f64 / 3.0,
                avatar
            ],
        )
        .unwrap();
    }
    for i in 0..(mib * 256) as i64 {
        let data: Vec<u8> = (0..4000).map(|j| ((i * 31 + j) % 251) as u8).collect();
        tx.execute("INSERT INTO filler (data) VALUES (?1)", params![data])
            .unwrap();
    }
    tx.commit().unwrap();
}

/// Every row of every table, and the schema, as text: equal dumps mean equal content.
pub fn dump(path: &Path) -> Vec<String> {
    let c = Connection::open(path).unwrap();
    let mut out = Vec::new();
    let mut stmt = c
        .prepare("SELECT type, name, sql FROM sqlite_schema ORDER BY type, name")
        .unwrap();
    let schema: Vec<(String, String, Option<String>)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    for (kind, name, sql) in &schema {
        out.push(format!("{kind} {name}: {sql:?}"));
        if kind == "table" {
            let mut q = c.prepare(&format!("SELECT * FROM \"{name}\" ORDER BY rowid")).unwrap();
            let n = q.column_count();
            let rows = q
                .query_map([], |r| {
                    (0..n)
                        .map(|i| r.get::<_, Value>(i))
                        .collect::<rusqlite::Result<Vec<_>>>()
                })
                .unwrap();
            for row in rows {
                out.push(format!("{name} {:?}", row.unwrap()));
            }
        }
    }
    out
}

/// Ids of the `log` table, ascending.
pub fn log_ids(path: &Path) -> Vec<(i64, i64, i64)> {
    let c = Connection::open(path).unwrap();
    let mut q = c.prepare("SELECT id, tx, half FROM log ORDER BY id").unwrap();
    q.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
}

thread_local! {
    /// Time the writer thread spent in its busy handler, i.e. waiting for another connection's lock.
    static LOCK_WAIT: std::cell::Cell<Duration> = const { std::cell::Cell::new(Duration::ZERO) };
}

/// A busy handler that retries every millisecond, for up to about 10 s, and adds up the wait.
fn retry_every_millisecond(tries: i32) -> bool {
    let t = Instant::now();
    thread::sleep(Duration::from_millis(1));
    LOCK_WAIT.with(|w| w.set(w.get() + t.elapsed()));
    tries < 10_000
}

/// One transaction of the [`Writer`].
#[derive(Debug, Clone, Copy)]
pub struct Tx {
    /// When it began.
    pub at: Instant,
    /// How long it took, BEGIN to COMMIT.
    pub latency: Duration,
    /// How much of that it waited for a lock held by another connection.
    pub lock_wait: Duration,
}

/// A thread inserting into `log` without pause: each transaction inserts two rows (a pair that
/// must never be torn), ids 1, 2, 3, … in order.
pub struct Writer {
    stop: Arc<AtomicBool>,
    handle: Option<thread::JoinHandle<Vec<Tx>>>,
    committed: Arc<std::sync::atomic::AtomicI64>,
}

impl Writer {
    pub fn start(path: &Path) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let committed = Arc::new(std::sync::atomic::AtomicI64::new(0));
        let (s, c, p) = (stop.clone(), committed.clone(), path.to_path_buf());
        let handle = thread::spawn(move || {
            let mut conn = Connection::open(&p).unwrap();
            // Retry a busy lock every millisecond (SQLite's default handler backs off up to 100 ms
            // between tries, which would measure its back-off rather than how long we hold locks).
            conn.busy_handler(Some(retry_every_millisecond)).unwrap();
            // Measure lock waits, not the disk: no fsync per commit.
            conn.pragma_update(None, "synchronous", "OFF").unwrap();
            let mut latencies = Vec::new();
            let mut tx_no = 0i64;
            while !s.load(Ordering::Relaxed) {
                LOCK_WAIT.with(|w| w.set(Duration::ZERO));
                let t = Instant::now();
                conn.execute_batch("BEGIN IMMEDIATE").unwrap();
                for half in 0..2 {
                    conn.execute(
                        "INSERT INTO log (tx, half, note) VALUES (?1, ?2, ?3)",
                        params![tx_no, half, "x".repeat(100)],
                    )
                    .unwrap();
                }
                conn.execute_batch("COMMIT").unwrap();
                latencies.push(Tx {
                    at: t,
                    latency: t.elapsed(),
                    lock_wait: LOCK_WAIT.with(|w| w.get()),
                });
                tx_no += 1;
                c.store(tx_no, Ordering::Relaxed);
            }
            latencies
        });
        let w = Writer {
            stop,
            handle: Some(handle),
            committed,
        };
        let t = Instant::now();
        while w.committed() < 20 {
            assert!(t.elapsed() < Duration::from_secs(10), "writer does not get going");
            thread::sleep(Duration::from_millis(1));
        }
        w
    }

    /// Transactions committed so far.
    pub fn committed(&self) -> i64 {
        self.committed.load(Ordering::Relaxed)
    }

    /// Stops the writer; returns every transaction it made.
    pub fn stop(mut self) -> Vec<Tx> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.take().unwrap().join().unwrap()
    }
}
