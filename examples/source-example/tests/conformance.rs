//! The example source passes the conformance kit on real files, and its errors say what to do.

use backup_core::{BackupContext, BackupKind, ErrorKind, PackId, Source, StagingPack, Verifier};
use source_example::FilesSource;

#[tokio::test]
async fn passes_the_conformance_kit() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("app.env");
    let b = dir.path().join("nginx.conf");
    std::fs::write(&a, "MODE=prod\n").unwrap();
    std::fs::write(&b, "server { listen 80; }\n".repeat(10_000)).unwrap();
    let source = FilesSource::new("settings", vec![a, b]);
    backup_core::conformance::check_source(&source, &Verifier::new()).await;
}

#[tokio::test]
async fn a_missing_file_names_the_path_and_its_kind() {
    let dir = tempfile::tempdir().unwrap();
    let source = FilesSource::new("settings", vec![dir.path().join("gone.env")]);
    let id = PackId::new("example_20261201_040000").unwrap();
    let pack = StagingPack::create(&dir.path().join("s"), "p", id, BackupKind::Full, chrono_tz::UTC).unwrap();
    let e = source
        .backup(&BackupContext::detached("p", BackupKind::Full), &pack)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    let msg = e.chain();
    assert!(
        msg.starts_with("source `settings`: cannot read") && msg.contains("gone.env"),
        "{msg}"
    );
}
