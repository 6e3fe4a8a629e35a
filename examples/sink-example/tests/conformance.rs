//! The example sink passes the conformance kit on a real directory, and keeps what is not its own.

use std::sync::Arc;

use backup_core::{ErrorKind, Sink};
use sink_example::CopySink;

#[tokio::test]
async fn passes_the_conformance_kit() {
    let dir = tempfile::tempdir().unwrap();
    backup_core::conformance::check_sink(Arc::new(CopySink::new("usb", &dir.path().join("disk")))).await;
}

#[tokio::test]
async fn a_directory_that_is_not_a_pack_of_ours_is_neither_listed_nor_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let sink: Arc<dyn Sink> = Arc::new(CopySink::new("usb", dir.path()));
    let foreign = dir.path().join("nightly/holiday_photos");
    std::fs::create_dir_all(&foreign).unwrap();
    std::fs::write(foreign.join("manifest.json"), b"{ not a manifest").unwrap();
    assert!(sink.list(None).await.unwrap().is_empty());
    let e = sink.delete("nightly", "holiday_photos").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert_eq!(
        e.to_string(),
        format!("sink `usb`: no pack nightly/holiday_photos in {}", dir.path().display())
    );
    assert!(foreign.join("manifest.json").exists());
}
