//! The copy protocol against a real SMB share (Samba on loopback, mounted through FUSE by
//! `cargo xtask ci`; see `PACKRAT_TEST_SMB_MOUNT`). The allowed type list is set to the share's
//! FUSE type, since this kernel has no CIFS client.
#![cfg(target_os = "linux")]

mod common;

use std::fs;
use std::sync::Arc;

use backup_core::manifest::REPLICATION_FILE;
use backup_core::{ErrorKind, RetryPolicy, RetrySink, Sink, Verifier, VerifyLevel};
use common::{Logs, Share, sealed_pack, tree};
use sink_cifs_replica::mount::FUSE_MAGIC;
use sink_cifs_replica::{CifsReplicaSink, MountCheck, ReplicationRecord, TMP_DIR, Verdict};

const PLAN: &str = "nightly";
const ID: &str = "migration_pack_20261121_040000";

#[tokio::test]
async fn passes_the_sink_conformance_kit_on_the_share() {
    let share = Share::new();
    backup_core::conformance::check_sink(Arc::new(share.sink("replica"))).await;
    assert!(
        tree(&share.dir.join(TMP_DIR)).is_empty(),
        "no work files may stay behind: {:?}",
        tree(&share.dir)
    );
}

#[tokio::test]
async fn a_replica_is_byte_identical_verifies_and_records_where_it_came_from() {
    let share = Share::new();
    let local = tempfile::tempdir().unwrap();
    let pack = sealed_pack(&local.path().join(ID), PLAN, ID, &[0, 1, 3 << 20, 100_000]);
    let sink = share.sink("windows");

    let info = sink.store(&pack, 42).await.unwrap();
    let dir = share.dir.join(PLAN).join(ID);
    assert_eq!(info.location, fs::canonicalize(&dir).unwrap().display().to_string());
    assert_eq!(info.bytes, pack.manifest().total_size());

    // Every file of the pack, byte for byte, on the share and on the server's disk.
    let files = tree(pack.dir());
    assert!(files.iter().any(|f| f.ends_with("part_0002.bin")), "{files:?}");
    for rel in files.iter().filter(|f| pack.dir().join(f).is_file()) {
        let want = fs::read(pack.dir().join(rel)).unwrap();
        assert_eq!(fs::read(dir.join(rel)).unwrap(), want, "{rel} differs on the share");
        if let Some(backing) = &share.backing {
            assert_eq!(
                fs::read(backing.join(PLAN).join(ID).join(rel)).unwrap(),
                want,
                "{rel} on the server"
            );
        }
    }
    let mut on_share = tree(&dir);
    on_share.retain(|f| f != REPLICATION_FILE);
    assert_eq!(on_share, files, "nothing more, nothing less");

    let record: ReplicationRecord = serde_json::from_slice(&fs::read(dir.join(REPLICATION_FILE)).unwrap()).unwrap();
    assert_eq!(
        (record.pack_id.as_str(), record.plan.as_str(), record.job_id),
        (ID, PLAN, 42)
    );
    assert_eq!(record.source_path, pack.dir().display().to_string());
    assert_eq!(record.source_host, gethostname_string());
    assert_eq!(record.files, 6);

    // Deep verification of the replica, through the sink and by a plain verifier.
    let report = sink
        .verify(PLAN, ID, &Verifier::new(), VerifyLevel::Deep)
        .await
        .unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(sink.list(Some(PLAN)).await.unwrap().len(), 1);
    assert!(tree(&share.dir.join(TMP_DIR)).is_empty(), "{:?}", tree(&share.dir));
}

fn gethostname_string() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string()
}

#[tokio::test]
async fn date_layout_lists_opens_and_deletes() {
    let share = Share::new();
    let local = tempfile::tempdir().unwrap();
    let pack = sealed_pack(&local.path().join(ID), PLAN, ID, &[5000]);
    let sink = share
        .sink("windows")
        .with_layout(sink_cifs_replica::ReplicaLayout::Date);
    let info = sink.store(&pack, 1).await.unwrap();
    let day = &pack.manifest().started_local[..10].replace('-', "/");
    let dir = share.dir.join(PLAN).join(day).join(ID);
    assert!(dir.join("manifest.json").is_file(), "{:?}", tree(&share.dir));
    assert_eq!(info.location, fs::canonicalize(&dir).unwrap().display().to_string());
    assert!(sink.exists(PLAN, ID).await.unwrap());
    assert_eq!(sink.open(PLAN, ID).await.unwrap().id(), ID);
    // A flat sink on the same directory still sees it.
    assert_eq!(share.sink("windows").list(None).await.unwrap().len(), 1);
    sink.delete(PLAN, ID).await.unwrap();
    assert!(!dir.exists());
    assert!(!sink.exists(PLAN, ID).await.unwrap());
}

#[tokio::test]
async fn an_earlier_copy_of_the_same_pack_is_replaced_safely() {
    let share = Share::new();
    let local = tempfile::tempdir().unwrap();
    let pack = sealed_pack(&local.path().join(ID), PLAN, ID, &[200_000]);
    let sink = share.sink("windows");
    sink.store(&pack, 1).await.unwrap();
    // Damage the replica.
    let file = share.dir.join(PLAN).join(ID).join("test/sub/part_0000.bin");
    let mut bytes = fs::read(&file).unwrap();
    bytes[1000] ^= 0xff;
    fs::write(&file, &bytes).unwrap();
    let bad = sink
        .verify(PLAN, ID, &Verifier::new(), VerifyLevel::Quick)
        .await
        .unwrap();
    assert!(!bad.is_ok());

    // Replicating the same pack again puts a good copy in its place.
    sink.store(&pack, 2).await.unwrap();
    let good = sink
        .verify(PLAN, ID, &Verifier::new(), VerifyLevel::Deep)
        .await
        .unwrap();
    assert!(good.is_ok(), "{:?}", good.problems);
    let record: ReplicationRecord =
        serde_json::from_slice(&fs::read(share.dir.join(PLAN).join(ID).join(REPLICATION_FILE)).unwrap()).unwrap();
    assert_eq!(record.job_id, 2);
    assert!(
        tree(&share.dir.join(TMP_DIR)).is_empty(),
        "the old copy is gone: {:?}",
        tree(&share.dir)
    );

    // A different pack under the same name is never replaced.
    let other = sealed_pack(&local.path().join("other").join(ID), PLAN, ID, &[10]);
    let e = sink.store(&other, 3).await.unwrap_err().chain();
    assert!(e.contains("already exists and holds a different pack"), "{e}");
    assert!(
        sink.verify(PLAN, ID, &Verifier::new(), VerifyLevel::Quick)
            .await
            .unwrap()
            .is_ok()
    );
}

#[tokio::test]
async fn leftovers_of_dead_jobs_are_cleaned_and_a_half_replacement_is_undone() {
    let share = Share::new();
    let local = tempfile::tempdir().unwrap();
    let pack = sealed_pack(&local.path().join(ID), PLAN, ID, &[1000]);
    let sink = share.sink("windows");
    sink.store(&pack, 1).await.unwrap();
    let tmp = share.dir.join(TMP_DIR);
    fs::create_dir_all(tmp.join("job_5_20260101_000000_000/test")).unwrap();
    fs::write(tmp.join("job_5_20260101_000000_000/test/partial.bin"), b"half").unwrap();
    // Job 6 is alive (in this process here; in any process in general): its claim is held.
    let live = backup_core::lock::ClaimedDir::create(&tmp.join("job_6_20260101_000000_000")).unwrap();
    fs::create_dir_all(tmp.join("unrelated")).unwrap();
    // A crash between "old copy aside" and "new copy in place".
    fs::rename(
        share.dir.join(PLAN).join(ID),
        tmp.join(format!("replaced_7_20260101_000000_000+{PLAN}+{ID}")),
    )
    .unwrap();
    assert!(sink.list(None).await.unwrap().is_empty());

    assert_eq!(sink.leftovers().unwrap().len(), 2);
    let removed = sink.clean_leftovers().await.unwrap();
    assert_eq!(removed.len(), 1, "{removed:?}");
    let mut left = common::tree(&tmp);
    left.sort();
    assert_eq!(
        left,
        vec![
            "job_6_20260101_000000_000",
            "job_6_20260101_000000_000.lock",
            "unrelated"
        ]
    );
    drop(live);
    assert_eq!(sink.clean_leftovers().await.unwrap().len(), 1, "once job 6 is gone");
    assert_eq!(common::tree(&tmp), vec!["unrelated"]);
    assert_eq!(
        sink.list(None).await.unwrap().len(),
        1,
        "the earlier copy is back in place"
    );
    assert!(
        sink.verify(PLAN, ID, &Verifier::new(), VerifyLevel::Quick)
            .await
            .unwrap()
            .is_ok()
    );
}

#[tokio::test]
async fn the_share_with_the_wrong_type_or_a_local_directory_gets_nothing() {
    let share = Share::new();
    let local = tempfile::tempdir().unwrap();
    let pack = sealed_pack(&local.path().join(ID), PLAN, ID, &[1000]);

    // The default allowed types (cifs, smb3) refuse the FUSE share.
    let strict = CifsReplicaSink::new("windows", &share.dir);
    let e = strict.store(&pack, 1).await.unwrap_err().chain();
    assert!(
        e.contains(&format!(
            "{} is not on a CIFS mount (it is on {} ",
            share.dir.display(),
            share.fs_type
        )),
        "{e}"
    );
    assert!(tree(&share.dir).is_empty(), "nothing written: {:?}", tree(&share.dir));

    // A local directory is refused even with the share's type allowed.
    let target = tempfile::tempdir().unwrap();
    let off = CifsReplicaSink::new("windows", target.path()).with_mount_check(MountCheck::new([share.fs_type.clone()]));
    let e = off.store(&pack, 1).await.unwrap_err().chain();
    assert!(e.contains("is not on a mount of type"), "{e}");
    assert!(tree(target.path()).is_empty());
    assert!(pack.dir().join("manifest.json").exists());
}

#[tokio::test]
async fn the_statfs_magic_of_the_share_agrees_with_its_type() {
    let share = Share::new();
    let r = MountCheck::new([share.fs_type.clone()]).inspect(&share.dir).unwrap();
    assert_eq!(r.verdict, Verdict::Allowed, "{r:?}");
    if share.fs_type.starts_with("fuse") {
        assert_eq!(r.fs_magic, Some(FUSE_MAGIC));
    }
    assert!(share.sink("windows").check().await.is_ok());
}

#[tokio::test]
async fn a_damaged_local_pack_is_reported_and_nothing_is_placed() {
    let share = Share::new();
    let local = tempfile::tempdir().unwrap();
    let pack = sealed_pack(&local.path().join(ID), PLAN, ID, &[50_000]);
    let file = pack.dir().join("test/sub/part_0000.bin");
    let mut bytes = fs::read(&file).unwrap();
    bytes[10] ^= 1;
    fs::write(&file, &bytes).unwrap();
    let e = share.sink("windows").store(&pack, 1).await.unwrap_err().chain();
    assert!(e.contains("the local pack is damaged"), "{e}");
    assert!(!share.dir.join(PLAN).join(ID).exists());
    assert!(tree(&share.dir.join(TMP_DIR)).is_empty(), "{:?}", tree(&share.dir));
}

#[tokio::test]
async fn behind_retries_a_target_that_appears_late_gets_the_replica() {
    let logs = Logs::capture();
    let share = Share::new();
    let local = tempfile::tempdir().unwrap();
    let pack = sealed_pack(&local.path().join(ID), PLAN, ID, &[20_000]);
    let target = share.dir.join("late");
    let sink =
        Arc::new(CifsReplicaSink::new("windows", &target).with_mount_check(MountCheck::new([share.fs_type.clone()])));
    // Without retries: the target is missing, the share is unavailable for now.
    let e = sink.store(&pack, 1).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{}", e.chain());

    let retrying = RetrySink::new(sink.clone(), RetryPolicy::new(5, std::time::Duration::from_millis(20)));
    // The target appears while the retry waits.
    let appear = async {
        logs.retried.notified().await;
        fs::create_dir(&target).unwrap();
    };
    let (stored, ()) = tokio::join!(retrying.store(&pack, 1), appear);
    let info = stored.unwrap();
    let dir = fs::canonicalize(target.join(PLAN).join(ID)).unwrap();
    assert_eq!(info.location, dir.display().to_string());
    let report = retrying
        .verify(PLAN, ID, &Verifier::new(), VerifyLevel::Deep)
        .await
        .unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    let retries = logs.retries();
    assert_eq!(retries.len(), 1, "{retries:?}");
    assert!(
        retries[0].contains("sink `windows`: store pack") && retries[0].contains("does not exist on the share"),
        "{retries:?}"
    );
}
