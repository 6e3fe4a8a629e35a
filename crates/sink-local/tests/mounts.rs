//! Real filesystems that refuse writes: a read-only tmpfs and a tiny, full tmpfs.
//!
//! These tests mount tmpfs filesystems and so need Linux and root (as in CI). A failed mount
//! fails the test: they never pass without having exercised the real thing.
#![cfg(target_os = "linux")]

mod common;

use std::fs;

use backup_core::{PackId, Sink};
use common::{Tmpfs, entries, sealed_pack};
use sink_local::LocalSink;

const PLAN: &str = "nightly";
const ID: &str = "p_20260101_000000";

fn id() -> PackId {
    PackId::new(ID).unwrap()
}

#[tokio::test]
async fn a_read_only_root_is_a_clear_error_and_nothing_is_created() {
    let ro = Tmpfs::mount("ro");
    let tmp = tempfile::tempdir().unwrap();
    let elsewhere = sealed_pack(&tmp.path().join(ID), PLAN, ID, &[100]);

    // The root exists but cannot be written to.
    let sink = LocalSink::new("local", ro.path()).with_min_free_bytes(0);
    let err = sink.stage(1, PLAN, &id(), 10).await.unwrap_err().chain();
    assert!(err.contains("sink `local`: cannot create"), "{err}");
    assert!(
        err.contains("Read-only file system") && err.contains("remount it read-write"),
        "{err}"
    );
    let err = sink.check().await.unwrap_err().chain();
    assert!(
        err.contains("cannot create a test file in") && err.contains("read-only"),
        "{err}"
    );
    let err = sink.store(&elsewhere, 1).await.unwrap_err().chain();
    assert!(err.contains("Read-only file system"), "{err}");

    // The root does not exist and cannot be created.
    let sink = LocalSink::new("local", ro.path().join("backups")).with_min_free_bytes(0);
    let err = sink.stage(1, PLAN, &id(), 10).await.unwrap_err().chain();
    assert!(
        err.contains(&format!("cannot create {}", ro.path().join("backups").display())),
        "{err}"
    );
    assert!(sink.check().await.is_err());

    assert!(
        entries(&ro.path()).is_empty(),
        "nothing may be created: {:?}",
        entries(&ro.path())
    );
    assert!(
        elsewhere.dir().join("manifest.json").exists(),
        "the original pack stays"
    );
}

#[tokio::test]
async fn stage_refuses_a_pack_that_will_not_fit_and_leaves_nothing() {
    let small = Tmpfs::mount("size=1m");
    let root = small.path().join("backups");
    let sink = LocalSink::new("local", &root).with_min_free_bytes(64 << 10);

    let err = sink.stage(1, PLAN, &id(), 10 << 20).await.unwrap_err().chain();
    assert!(
        err.starts_with(&format!(
            "sink `local`: not enough free space on {}: the pack needs about 10 MiB plus 64 KiB reserve, 1.0 MiB available",
            root.display()
        )),
        "{err}"
    );
    assert!(err.ends_with("free space or point sinks.local.path elsewhere"), "{err}");
    assert!(
        entries(&small.path()).is_empty(),
        "no root, no staging: {:?}",
        entries(&small.path())
    );

    // The same with an existing root: no staging area is left behind.
    fs::create_dir(&root).unwrap();
    assert!(sink.stage(1, PLAN, &id(), 10 << 20).await.is_err());
    assert!(entries(&root).is_empty(), "{:?}", entries(&root));

    // What does fit is staged and stored by rename on this very filesystem.
    let dir = sink.stage(1, PLAN, &id(), 100 << 10).await.unwrap().unwrap();
    let info = sink.store(&sealed_pack(&dir, PLAN, ID, &[100 << 10]), 1).await.unwrap();
    drop(dir); // the job releases its claim once the pack is in place
    assert_eq!(info.location, root.join(PLAN).join(ID).display().to_string());
    assert_eq!(entries(&root.join(".packrat-staging")), Vec::<String>::new());
    assert_eq!(sink.free_space().await.unwrap().map(|n| n < 1 << 20), Some(true));
}

#[tokio::test]
async fn store_refuses_to_copy_a_pack_bigger_than_the_disk() {
    let small = Tmpfs::mount("size=1m");
    let tmp = tempfile::tempdir().unwrap();
    let big = sealed_pack(&tmp.path().join(ID), PLAN, ID, &[2 << 20]);
    let sink = LocalSink::new("local", small.path()).with_min_free_bytes(0);

    let err = sink.store(&big, 1).await.unwrap_err().chain();
    assert!(
        err.contains("not enough free space") && err.contains("the pack needs about 2.0 MiB"),
        "{err}"
    );
    assert!(
        entries(&small.path()).is_empty(),
        "nothing written: {:?}",
        entries(&small.path())
    );
    assert!(big.dir().join("test/part_0000.bin").exists());
}

#[tokio::test]
async fn running_out_of_space_while_copying_is_a_clear_error_and_leaves_nothing() {
    let small = Tmpfs::mount("size=1m");
    let tmp = tempfile::tempdir().unwrap();
    // 400 KiB of data by the manifest, so the free-space check passes; but every small file
    // takes a whole 4 KiB page on tmpfs, so the disk fills up half-way through the copy.
    let pack = sealed_pack(&tmp.path().join(ID), PLAN, ID, &[1024; 400]);
    assert!(pack.manifest().total_size() < 1 << 19);
    let sink = LocalSink::new("local", small.path()).with_min_free_bytes(0);

    let err = sink.store(&pack, 1).await.unwrap_err();
    assert!(err.is_disk_full(), "{}", err.chain());
    let msg = err.chain();
    assert!(
        msg.contains("sink `local`: cannot write") || msg.contains("sink `local`: cannot create"),
        "{msg}"
    );
    assert!(msg.contains("No space left on device"), "{msg}");
    assert!(
        msg.ends_with("the filesystem is full: free space or point sinks.local.path elsewhere"),
        "{msg}"
    );

    // Nothing under the final name, no staging leftovers, and the space is free again.
    assert!(!small.path().join(PLAN).join(ID).exists());
    assert!(entries(&small.path()).is_empty(), "{:?}", entries(&small.path()));
    assert!(sink.free_space().await.unwrap().unwrap() >= 1 << 20);
    assert!(sink.list(None).await.unwrap().is_empty());
    // The original pack is intact and a pack that fits still goes in.
    assert!(pack.dir().join("test/part_0399.bin").exists());
    let fits = sealed_pack(&tmp.path().join("small").join(ID), PLAN, ID, &[1024; 10]);
    sink.store(&fits, 2).await.unwrap();
}
