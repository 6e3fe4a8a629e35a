//! The behaviour every sink must have, from `backup_core::conformance`.

use std::sync::Arc;

use sink_local::LocalSink;

#[tokio::test]
async fn local_sink_conforms() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("backups");
    let sink = LocalSink::new("local", &root).with_min_free_bytes(0);
    backup_core::conformance::check_sink(Arc::new(sink)).await;
    // Nothing is left in the staging area after a full round.
    let staging = root.join(sink_local::STAGING_DIR);
    assert!(
        std::fs::read_dir(&staging).map(|d| d.count()).unwrap_or(0) == 0,
        "staging leftovers"
    );
}

#[tokio::test]
async fn local_sink_conforms_with_existing_root_and_default_reserve() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = sink_local::LocalSinkConfig {
        path: tmp.path().to_path_buf(),
        min_free_mb: 1,
    };
    let sink = LocalSink::from_config("local", &cfg);
    assert_eq!(sink.min_free_bytes(), 1 << 20);
    backup_core::conformance::check_sink(Arc::new(sink)).await;
}
