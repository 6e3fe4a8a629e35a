//! Backup → deep verify → restore, plain and compressed; restore's refusals and cleanup.

mod common;

use std::fs;
use std::path::Path;

use backup_core::{BackupContext, BackupKind, Compression, Pack, Source, VerifyLevel};
use source_sqlite::{
    Error, RestoreOptions, SqliteCheck, SqliteSource, find_artifact, restore, restore_with, sqlite_artifacts,
};

/// Backs `db` up with `source` into a sealed pack under `root`; returns the pack.
async fn backup(root: &Path, source: &SqliteSource, id: &str) -> Pack {
    let pack = common::staging(root, id);
    let ctx = BackupContext::detached("test", BackupKind::Full);
    let report = source.backup(&ctx, &pack).await.unwrap();
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    assert!(report.watermarks.is_empty());
    pack.seal().unwrap().to_pack()
}

async fn round_trip(journal_mode: &str, compress: bool) {
    let t = tempfile::tempdir().unwrap();
    let db = t.path().join("app.db");
    common::create_db(&db, journal_mode, 2);
    let before = common::dump(&db);
    let source = SqliteSource::new("app_db", &db).compress(compress);
    let p = backup(t.path(), &source, "rt_20260101_000000").await;

    // The pack holds exactly the one artifact, named and typed as designed.
    let entries = sqlite_artifacts(&p, None);
    assert_eq!(entries.len(), 1);
    let entry = find_artifact(&p, "app_db").unwrap();
    let expect_path = if compress {
        "sqlite/app_db.db.zst"
    } else {
        "sqlite/app_db.db"
    };
    assert_eq!(entry.path, expect_path);
    assert_eq!(entry.kind, "sqlite");
    assert_eq!(entry.source, "app_db");
    assert_eq!(
        entry.compression,
        if compress { Compression::Zstd } else { Compression::None }
    );
    if compress {
        assert!(entry.size < entry.raw_size, "compression should shrink the filler");
        assert_eq!(
            entry.meta["journal_mode"],
            journal_mode.replace("delete", "rollback").as_str()
        );
        assert!(entry.meta["page_count"].as_u64().unwrap() > 0);
        assert_eq!(entry.meta["tables"], 3);
    }
    // No temporary copy and no -wal/-shm files left in the pack.
    let files: Vec<String> = fs::read_dir(p.dir().join("sqlite"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files, vec![expect_path.trim_start_matches("sqlite/").to_string()]);

    let report = common::verifier().verify(&p, VerifyLevel::Deep);
    assert!(report.is_ok(), "{:?}", report.problems);
    let facts = SqliteCheck::check_artifact(&p, entry).unwrap();
    assert_eq!(facts.wal, journal_mode == "wal");
    assert_eq!(facts.tables, 3);

    // The database changes after the backup; the restore brings back the state at backup time.
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute("DELETE FROM users WHERE id % 2 = 0", []).unwrap();
    drop(c);
    assert_ne!(common::dump(&db), before);

    let target = t.path().join("restored").join("app.db");
    fs::create_dir(target.parent().unwrap()).unwrap();
    let r = restore(&p, entry, &target, false).unwrap();
    assert!(!r.replaced);
    assert_eq!(r.bytes, entry.raw_size);
    assert_eq!(common::dump(&target), before);
    // Only the restored file: no temporary file left next to it.
    assert_eq!(fs::read_dir(target.parent().unwrap()).unwrap().count(), 1);
}

#[tokio::test]
async fn round_trip_wal_plain() {
    round_trip("wal", false).await;
}

#[tokio::test]
async fn round_trip_wal_compressed() {
    round_trip("wal", true).await;
}

#[tokio::test]
async fn round_trip_rollback_plain() {
    round_trip("delete", false).await;
}

#[tokio::test]
async fn round_trip_rollback_compressed() {
    round_trip("delete", true).await;
}

#[tokio::test]
async fn restore_refuses_an_existing_target_unless_told_to_overwrite() {
    let t = tempfile::tempdir().unwrap();
    let db = t.path().join("app.db");
    common::create_db(&db, "wal", 1);
    let before = common::dump(&db);
    let p = backup(
        t.path(),
        &SqliteSource::new("app_db", &db).compress(true),
        "ow_20260101_000000",
    )
    .await;
    let entry = find_artifact(&p, "app_db").unwrap();

    let err = restore(&p, entry, t.path(), true).unwrap_err();
    assert!(
        matches!(err, Error::BadTarget { .. }),
        "a directory is no target: {err}"
    );

    let target = t.path().join("target.db");
    fs::write(&target, b"precious data of the operator").unwrap();
    let err = restore(&p, entry, &target, false).unwrap_err();
    assert!(matches!(err, Error::TargetExists { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        format!("target {} exists; pass --overwrite to replace it", target.display())
    );
    assert_eq!(fs::read(&target).unwrap(), b"precious data of the operator");

    // A non-empty -wal next to the target: an application has it open. Refused even with overwrite.
    let wal = t.path().join("target.db-wal");
    fs::write(&wal, b"frames").unwrap();
    let err = restore(&p, entry, &target, true).unwrap_err();
    assert!(matches!(err, Error::TargetInUse { .. }), "{err}");
    assert!(err.to_string().contains("stop the application using it first"), "{err}");
    assert_eq!(fs::read(&target).unwrap(), b"precious data of the operator");
    fs::write(&wal, b"").unwrap(); // an empty -wal is harmless

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&target, fs::Permissions::from_mode(0o640)).unwrap();
    }
    let r = restore(&p, entry, &target, true).unwrap();
    assert!(r.replaced);
    assert_eq!(common::dump(&target), before);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&target).unwrap().permissions().mode() & 0o777,
            0o640,
            "permissions kept"
        );
    }
    let leftovers: Vec<_> = fs::read_dir(t.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("packrat-restore"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test]
async fn failed_restore_leaves_nothing_at_the_target() {
    let t = tempfile::tempdir().unwrap();
    let db = t.path().join("app.db");
    common::create_db(&db, "delete", 1);
    for compress in [false, true] {
        let id = format!("bad_2026010{}_000000", u8::from(compress) + 1);
        let p = backup(t.path(), &SqliteSource::new("app_db", &db).compress(compress), &id).await;
        let entry = find_artifact(&p, "app_db").unwrap().clone();
        // Damage the stored artifact after sealing.
        let path = p.path_of(&entry);
        let mut bytes = fs::read(&path).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        fs::write(&path, &bytes).unwrap();

        let out = t.path().join("out");
        fs::create_dir_all(&out).unwrap();
        let target = out.join("restored.db");
        // Refused by the check before anything is written, naming the file.
        let err = restore(&p, &entry, &target, false).unwrap_err();
        assert!(
            matches!(err, Error::Pack(backup_core::Error::DamagedPack { .. })),
            "{err}"
        );
        assert!(
            err.to_string().contains(&format!("{}: sha256 mismatch", entry.path)),
            "{err}"
        );
        // --allow-damaged never uses a damaged artifact.
        let opts = RestoreOptions {
            overwrite: false,
            allow_damaged: true,
        };
        let err = restore_with(&p, &entry, &target, &opts).unwrap_err();
        assert!(matches!(err, Error::Damaged { .. }), "{err}");
        assert!(err.to_string().contains(&entry.path), "{err}");
        assert!(!target.exists(), "no file may appear at the target");
        assert_eq!(fs::read_dir(&out).unwrap().count(), 0, "nothing may be created");

        // Deep verification flags it too.
        let report = common::verifier().verify(&p, VerifyLevel::Deep);
        assert!(report.problems.iter().any(|pr| pr.path == entry.path), "{report:?}");
    }
}

#[tokio::test]
async fn deep_check_catches_a_broken_database_and_restore_refuses_it() {
    let t = tempfile::tempdir().unwrap();
    let db = t.path().join("app.db");
    common::create_db(&db, "delete", 1);
    let p = backup(t.path(), &SqliteSource::new("app_db", &db), "trunc_20260101_000000").await;
    let entry = find_artifact(&p, "app_db").unwrap().clone();
    // Truncate the copy and make the manifest agree with it, so only the SQLite check can tell.
    let path = p.path_of(&entry);
    let bytes = fs::read(&path).unwrap();
    let half = &bytes[..bytes.len() / 2];
    fs::write(&path, half).unwrap();
    let mut forged = entry.clone();
    forged.size = half.len() as u64;
    forged.raw_size = forged.size;
    let (_, sha) = backup_core::pack::hash_reader(half).unwrap();
    forged.sha256 = sha;

    // Make the pack agree with the damaged file, so only the SQLite check can tell.
    let mut m = p.manifest().clone();
    m.artifacts = vec![forged.clone()];
    let json = m.to_json();
    fs::write(p.dir().join("manifest.json"), &json).unwrap();
    fs::write(
        p.dir().join("SHA256SUMS"),
        backup_core::Sums::for_manifest(&m, &json).to_text(),
    )
    .unwrap();
    let p = Pack::open(p.dir()).unwrap();

    let err = SqliteCheck::check_artifact(&p, &forged).unwrap_err();
    assert!(matches!(err, Error::Integrity { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("PRAGMA integrity_check of artifact sqlite/app_db.db"),
        "{err}"
    );

    let target = t.path().join("restored.db");
    let err = restore(&p, &forged, &target, false).unwrap_err();
    assert!(matches!(err, Error::Integrity { .. }), "{err}");
    assert!(!target.exists());
}

#[tokio::test]
async fn find_artifact_names_what_the_pack_has() {
    let t = tempfile::tempdir().unwrap();
    let db = t.path().join("app.db");
    common::create_db(&db, "wal", 0);
    let p = backup(t.path(), &SqliteSource::new("app_db", &db), "find_20260101_000000").await;
    let err = find_artifact(&p, "other").unwrap_err().to_string();
    assert!(err.contains("no SQLite artifact of source `other`"), "{err}");
    assert!(err.contains("sqlite/app_db.db (source `app_db`)"), "{err}");
    assert!(sqlite_artifacts(&p, Some("other")).is_empty());
}

#[tokio::test]
async fn restore_removes_leftovers_of_killed_restores_but_not_a_running_ones_file() {
    let t = tempfile::tempdir().unwrap();
    let db = t.path().join("app.db");
    common::create_db(&db, "wal", 0);
    let p = backup(t.path(), &SqliteSource::new("app_db", &db), "left_20260101_000000").await;
    let entry = find_artifact(&p, "app_db").unwrap();
    let out = t.path().join("out");
    fs::create_dir(&out).unwrap();
    let target = out.join("restored.db");
    // What a killed restore leaves: a half-written temporary file that nothing holds.
    let stale = out.join(".restored.db.packrat-restore-k1ll3d");
    fs::write(&stale, vec![0u8; 100_000]).unwrap();
    // A restore to the same target that is still running.
    let running = backup_core::restore_temp::RestoreTemp::create(&target).unwrap();
    // Another target's file, and one that only looks like ours.
    let other = out.join(".other.db.packrat-restore-k1ll3d");
    fs::write(&other, b"x").unwrap();
    let lookalike = out.join(".restored.db.packrat-restore-notours");
    fs::write(&lookalike, b"x").unwrap();

    let r = restore(&p, entry, &target, false).unwrap();
    assert_eq!(r.removed_leftovers, std::slice::from_ref(&stale));
    assert!(!stale.exists());
    assert!(running.path().exists(), "a running restore's file is left alone");
    assert!(other.exists() && lookalike.exists());
    assert_eq!(common::dump(&target), common::dump(&db));
    drop(running);
    let mut left: Vec<String> = fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(
        left,
        [
            ".other.db.packrat-restore-k1ll3d",
            ".restored.db.packrat-restore-notours",
            "restored.db"
        ]
    );
}
