//! Clear errors: missing file, not a database, locked beyond the timeout.

mod common;

use std::fs;
use std::time::{Duration, Instant};

use backup_core::{BackupContext, BackupKind, Source};
use source_sqlite::{Error, SqliteSource};

/// Runs a backup that must fail; returns (crate error, message at the trait boundary) and checks
/// the staging pack is left clean and still seals.
async fn failing_backup(root: &std::path::Path, source: &SqliteSource) -> (Error, String) {
    let pack = common::staging(root, "fail_20260101_000000");
    let err = source.backup_blocking(&pack, &backup_core::NoProgress).unwrap_err();
    let ctx = BackupContext::detached("test", BackupKind::Full);
    let boundary = source.backup(&ctx, &pack).await.unwrap_err();
    assert!(matches!(boundary, backup_core::Error::Source { .. }));
    assert!(pack.artifacts().is_empty());
    let leftovers: Vec<_> = walk(pack.dir());
    assert!(leftovers.is_empty(), "files left in the staging pack: {leftovers:?}");
    pack.seal().unwrap();
    (err, boundary.chain())
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test]
async fn missing_file_names_the_path_and_the_config_key_and_creates_nothing() {
    let t = tempfile::tempdir().unwrap();
    let db = t.path().join("missing.db");
    let source = SqliteSource::new("app_db", &db);
    let (err, msg) = failing_backup(t.path(), &source).await;
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        format!("database file {} not found; check sources.app_db.path", db.display())
    );
    assert!(msg.starts_with("source `app_db`: database file"), "{msg}");
    let ctx = BackupContext::detached("test", BackupKind::Full);
    assert!(source.estimate(&ctx).await.is_err());
    let check = source.check().await.unwrap_err().to_string();
    assert!(check.contains("not found"), "{check}");
    assert!(!db.exists(), "no database may be created at the configured path");
    assert!(!t.path().join("missing.db-wal").exists());
}

#[tokio::test]
async fn random_bytes_are_not_a_database() {
    let t = tempfile::tempdir().unwrap();
    let db = t.path().join("random.db");
    let bytes: Vec<u8> = (0..64 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    fs::write(&db, &bytes).unwrap();
    let source = SqliteSource::new("app_db", &db);
    let (err, _) = failing_backup(t.path(), &source).await;
    assert!(matches!(err, Error::NotADatabase { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        format!("{} is not a SQLite database (file is not a database)", db.display())
    );
    assert!(source.check().await.is_err());
    assert_eq!(fs::read(&db).unwrap(), bytes, "the file must be left as it was");
}

#[tokio::test]
async fn directory_is_not_a_database() {
    let t = tempfile::tempdir().unwrap();
    let (err, _) = failing_backup(t.path(), &SqliteSource::new("app_db", t.path())).await;
    assert!(matches!(err, Error::NotADatabase { .. }), "{err}");
}

#[tokio::test]
async fn exclusive_lock_beyond_busy_timeout_fails_clearly() {
    let t = tempfile::tempdir().unwrap();
    let db = t.path().join("locked.db");
    common::create_db(&db, "delete", 1);
    let holder = rusqlite::Connection::open(&db).unwrap();
    holder.execute_batch("BEGIN EXCLUSIVE").unwrap();

    let source = SqliteSource::new("app_db", &db).busy_timeout(Duration::from_millis(300));
    let started = Instant::now();
    let (err, msg) = failing_backup(t.path(), &source).await;
    assert!(matches!(err, Error::Locked { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        format!(
            "database {} stayed locked for 300ms (busy_timeout); another process holds a write lock \
             — retry later or raise busy_timeout",
            db.display()
        )
    );
    assert!(msg.contains("stayed locked"), "{msg}");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(2 * 300),
        "gave up too early: {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(10),
        "waited far beyond busy_timeout: {waited:?}"
    );
    assert!(source.check().await.unwrap_err().to_string().contains("stayed locked"));

    // Once the lock is released the backup works.
    holder.execute_batch("COMMIT").unwrap();
    let pack = common::staging(t.path(), "ok_20260101_000000");
    source.backup_blocking(&pack, &backup_core::NoProgress).unwrap();
}

#[tokio::test]
async fn invalid_artifact_name_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let db = t.path().join("app.db");
    common::create_db(&db, "wal", 0);
    let (err, _) = failing_backup(t.path(), &SqliteSource::new("app_db", &db).artifact_name("../evil")).await;
    assert!(matches!(err, Error::InvalidName(_)), "{err}");
}

/// Overwrites the start of a page in the middle of `db`: a b-tree page header or an overflow
/// pointer.
fn damage_middle_page(db: &std::path::Path) {
    let mut bytes = fs::read(db).unwrap();
    let page = 4096;
    let mid = (bytes.len() / page / 2) * page;
    bytes[mid..mid + 8].fill(0xff);
    fs::write(db, &bytes).unwrap();
}

/// A backup of the damaged `db`, plain and compressed, fails its integrity check with a message
/// containing `expected(compress)`, says the copy was discarded and leaves the pack clean.
async fn damaged_backups_fail(root: &std::path::Path, db: &std::path::Path, expected: impl Fn(bool) -> String) {
    for compress in [false, true] {
        let source = SqliteSource::new("app_db", db).compress(compress);
        let (err, msg) = failing_backup(&root.join(format!("compress_{compress}")), &source).await;
        assert!(matches!(err, Error::Integrity { .. }), "{err}");
        assert!(msg.contains(&expected(compress)), "{msg}");
        assert!(msg.contains("the copy was discarded"), "{msg}");
    }
}

#[tokio::test]
async fn damaged_source_fails_the_integrity_check_of_the_copy_and_leaves_nothing() {
    let t = tempfile::tempdir().unwrap();
    let db = t.path().join("damaged.db");
    common::create_db(&db, "delete", 1);
    damage_middle_page(&db);
    damaged_backups_fail(t.path(), &db, |compress| {
        let artifact = if compress {
            "sqlite/app_db.db.tmp"
        } else {
            "sqlite/app_db.db"
        };
        format!("PRAGMA integrity_check of the copy {artifact} of {}", db.display())
    })
    .await;
}

/// In WAL mode the check runs on the source's snapshot while its pages are copied: a damaged
/// database fails the backup just the same, naming the source and the artifact, and nothing of
/// the artifact is left in the pack.
#[tokio::test]
async fn damaged_wal_source_fails_the_check_of_its_snapshot_and_leaves_nothing() {
    let t = tempfile::tempdir().unwrap();
    let db = t.path().join("damaged-wal.db");
    common::create_db(&db, "wal", 1);
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
        .unwrap();
    damage_middle_page(&db);
    damaged_backups_fail(t.path(), &db, |compress| {
        let artifact = if compress {
            "sqlite/app_db.db.zst"
        } else {
            "sqlite/app_db.db"
        };
        format!(
            "PRAGMA integrity_check of the snapshot of {} (copied to {artifact})",
            db.display()
        )
    })
    .await;
}
