//! Backups of a database that another connection keeps writing to.

mod common;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use backup_core::VerifyLevel;
use source_sqlite::{CopyStrategy, JournalMode, SqliteSource, find_artifact, restore};

/// One test at a time: the latency bound is about our locks, not about tests sharing two cores.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Backs up while a writer inserts pairs of rows without pause; checks the copy holds a gap-free
/// prefix of whole transactions and the writer was never held up for long.
///
/// In rollback-journal mode the writer waits for the final one-pass copy, so that database is
/// kept small enough to copy in well under 100 ms even in an unoptimised build.
/// Returns the outcome and the longest time a writer's transaction waited for a lock.
fn backup_under_writes(journal_mode: &str, mib: usize) -> (source_sqlite::BackupOutcome, Duration) {
    let _serial = serial();
    let t = tempfile::tempdir().unwrap();
    let db = t.path().join("live.db");
    common::create_db(&db, journal_mode, mib);

    let writer = common::Writer::start(&db);
    let before = writer.committed();
    let source = SqliteSource::new("live", &db)
        .busy_timeout(Duration::from_secs(10))
        .rollback_budget(Duration::from_millis(500));
    let pack = common::staging(t.path(), "online_20260101_000000");
    let started = Instant::now();
    let outcome = source.backup_blocking(&pack, &backup_core::NoProgress).unwrap();
    let finished = Instant::now();
    let during = writer.committed() - before;
    // Let the writer go on a little after the backup, then stop it.
    std::thread::sleep(Duration::from_millis(50));
    let latencies = writer.stop();
    let total_tx = latencies.len() as i64;

    let sealed = pack.seal().unwrap();
    let p = sealed.to_pack();
    let report = common::verifier().verify(&p, VerifyLevel::Deep);
    assert!(report.is_ok(), "{:?}", report.problems);

    let restored = t.path().join("restored.db");
    restore(&p, find_artifact(&p, "live").unwrap(), &restored, false).unwrap();
    let rows = common::log_ids(&restored);
    // A prefix 1..=n with no gap, made of whole transactions (pairs).
    for (i, (id, tx, half)) in rows.iter().enumerate() {
        assert_eq!(*id, i as i64 + 1, "gap in the copied rows");
        assert_eq!(
            (*tx, *half),
            (i as i64 / 2, i as i64 % 2),
            "row {id} belongs to another transaction"
        );
    }
    assert_eq!(rows.len() % 2, 0, "a transaction was torn: {} rows", rows.len());
    let copied_tx = rows.len() as i64 / 2;
    assert!(
        copied_tx >= before,
        "rows committed before the backup started are missing"
    );
    assert!(
        copied_tx < total_tx,
        "the copy cannot hold rows committed after it was taken"
    );

    // The writer went on during the backup and was never held up for long by our locks. It waits
    // for a lock only while the source is open, i.e. during the copy; its wall-clock latency also
    // includes waiting for a CPU, which on a loaded machine has nothing to do with us, so that
    // gets a loose sanity bound while the time spent waiting for locks gets the strict one.
    let copy_end = started + outcome.copy_time;
    let in_backup = |tx: &&common::Tx| tx.at + tx.latency >= started && tx.at <= finished;
    let worst = latencies.iter().filter(in_backup).map(|tx| tx.latency).max().unwrap();
    let worst_wait = latencies
        .iter()
        .filter(in_backup)
        .max_by_key(|tx| tx.lock_wait)
        .unwrap();
    let during_copy = latencies
        .iter()
        .filter(|tx| tx.at >= started && tx.at + tx.latency <= copy_end)
        .count();
    eprintln!(
        "{journal_mode}: backup {:?} (copy {:?}, {:?}, {} restarts); the writer committed {during_copy} \
         transactions during the copy ({during} during the backup); longest lock wait {:?} at +{:?}, \
         longest transaction {worst:?}; the copy holds {copied_tx} of {total_tx}",
        finished - started,
        outcome.copy_time,
        outcome.strategy,
        outcome.restarts,
        worst_wait.lock_wait,
        worst_wait.at.saturating_duration_since(started),
    );
    assert!(during_copy > 0, "the writer made no progress during the copy");
    // Relative, not a wall-clock bound: on a loaded machine every step (and a final locked pass)
    // takes longer, the copy as a whole just as much.
    assert!(
        worst_wait.lock_wait * 2 < outcome.copy_time,
        "a writer's transaction waited {:?} for our lock, half the copy's {:?} or more",
        worst_wait.lock_wait,
        outcome.copy_time
    );
    assert!(
        worst < Duration::from_secs(1),
        "a writer's transaction took {worst:?} during the backup"
    );
    (outcome, worst_wait.lock_wait)
}

#[test]
fn wal_mode_copy_is_a_consistent_snapshot_and_never_blocks_the_writer() {
    let (outcome, lock_wait) = backup_under_writes("wal", 16);
    assert_eq!(
        lock_wait,
        Duration::ZERO,
        "in WAL mode the writer never waits for our lock"
    );
    assert_eq!(outcome.journal_mode, JournalMode::Wal);
    assert_eq!(outcome.strategy, CopyStrategy::Snapshot);
    assert_eq!(outcome.restarts, 0);
    assert!(outcome.single_pass, "a WAL database is copied in one pass");
    assert!(outcome.facts.wal, "the copy of a WAL database is a WAL database");
    assert!(outcome.warnings.is_empty(), "{:?}", outcome.warnings);
}

#[test]
fn rollback_mode_copy_is_consistent_and_holds_the_writer_only_briefly() {
    let (outcome, _) = backup_under_writes("delete", 8);
    assert_eq!(outcome.journal_mode, JournalMode::Rollback);
    assert!(
        !outcome.single_pass,
        "rollback-journal mode copies in steps with the backup API"
    );
    assert!(!outcome.facts.wal);
    if outcome.strategy == CopyStrategy::SteppedThenLocked {
        assert!(
            outcome.warnings.iter().any(|w| w.contains("WAL mode")),
            "{:?}",
            outcome.warnings
        );
    }
}

#[test]
fn rollback_mode_without_writers_copies_in_steps() {
    let _serial = serial();
    let t = tempfile::tempdir().unwrap();
    let db = t.path().join("quiet.db");
    common::create_db(&db, "delete", 12);
    let pack = common::staging(t.path(), "quiet_20260101_000000");
    let outcome = SqliteSource::new("quiet", &db)
        .backup_blocking(&pack, &backup_core::NoProgress)
        .unwrap();
    assert_eq!(outcome.strategy, CopyStrategy::Stepped);
    assert_eq!(outcome.restarts, 0);
    assert!(outcome.warnings.is_empty());
    let p = pack.seal().unwrap().to_pack();
    let restored = t.path().join("restored.db");
    restore(&p, find_artifact(&p, "quiet").unwrap(), &restored, false).unwrap();
    assert_eq!(common::dump(&db), common::dump(&restored));
}

/// The single pass writes the snapshot's pages as they are: once the WAL is checkpointed into the
/// main file, the artifact is that file byte for byte (compressed or not), and its sha256 in the
/// manifest is the sha256 of those bytes.
#[test]
fn wal_single_pass_copy_is_the_database_file_byte_for_byte() {
    use sha2::{Digest, Sha256};
    let _serial = serial();
    let t = tempfile::tempdir().unwrap();
    let db = t.path().join("exact.db");
    common::create_db(&db, "wal", 6);
    // Changes that stay in the -wal file until the checkpoint below.
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch("PRAGMA wal_autocheckpoint=0; DELETE FROM filler WHERE id % 3 = 0; UPDATE users SET score = -1;")
        .unwrap();
    let before_checkpoint = t.path().join("before");
    std::fs::create_dir(&before_checkpoint).unwrap();
    for compress in [false, true] {
        let pack = common::staging(&before_checkpoint, &format!("exact{compress}_20260101_000000"));
        let outcome = SqliteSource::new("exact", &db)
            .compress(compress)
            .backup_blocking(&pack, &backup_core::NoProgress)
            .unwrap();
        assert!(outcome.single_pass);
        let p = pack.seal().unwrap().to_pack();
        let restored = t.path().join(format!("restored-{compress}.db"));
        restore(&p, find_artifact(&p, "exact").unwrap(), &restored, false).unwrap();
        c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)").unwrap();
        let source_bytes = std::fs::read(&db).unwrap();
        let copy_bytes = std::fs::read(&restored).unwrap();
        assert_eq!(copy_bytes.len(), source_bytes.len());
        assert!(
            copy_bytes == source_bytes,
            "the copy differs from the checkpointed database"
        );
        if !compress {
            let entry = find_artifact(&p, "exact").unwrap();
            assert_eq!(entry.sha256, hex::encode(Sha256::digest(&source_bytes)));
        }
        assert_eq!(common::dump(&db), common::dump(&restored));
    }
}
