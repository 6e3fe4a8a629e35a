//! The backup-core conformance kit, run against real SQLite databases.

mod common;

use source_sqlite::SqliteSource;

#[tokio::test]
async fn plain_wal_source_conforms() {
    let t = tempfile::tempdir().unwrap();
    let db = t.path().join("app.db");
    common::create_db(&db, "wal", 1);
    backup_core::conformance::check_source(&SqliteSource::new("app_db", &db), &common::verifier()).await;
}

#[tokio::test]
async fn compressed_rollback_source_conforms() {
    let t = tempfile::tempdir().unwrap();
    let db = t.path().join("app.db");
    common::create_db(&db, "delete", 1);
    let source = SqliteSource::new("app_db", &db).compress(true).artifact_name("auth");
    backup_core::conformance::check_source(&source, &common::verifier()).await;
}
