//! A local sink touches only what is its own: foreign directories, mismatched manifests and
//! symlinks are never listed, opened or deleted; failed stores leave nothing behind.

mod common;

use std::fs;
use std::path::Path;

use backup_core::{PackId, Sink};
use common::{entries, sealed_pack};
use sink_local::{LocalSink, STAGING_DIR};

const PLAN: &str = "nightly";

fn sink(root: &Path) -> LocalSink {
    LocalSink::new("local", root).with_min_free_bytes(0)
}

/// Stores a valid pack `id` of `plan` through the staging area (the rename path).
async fn store_staged(sink: &LocalSink, plan: &str, id: &str, job: i64) -> backup_core::PackInfo {
    let dir = sink
        .stage(job, plan, &PackId::new(id).unwrap(), 1000)
        .await
        .unwrap()
        .unwrap();
    let sealed = sealed_pack(&dir, plan, id, &[1000, 10]);
    sink.store(&sealed, job).await.unwrap()
}

#[tokio::test]
async fn foreign_and_mismatched_directories_are_neither_listed_nor_deleted() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("backups");
    let sink = sink(&root);
    let good = store_staged(&sink, PLAN, "good_20260101_000000", 1).await;
    let plan_dir = root.join(PLAN);

    // No manifest at all.
    let no_manifest = plan_dir.join("no_manifest_20260101_000000");
    fs::create_dir_all(&no_manifest).unwrap();
    fs::write(no_manifest.join("data"), b"keep").unwrap();
    // A manifest of some other tool.
    let foreign = plan_dir.join("foreign_20260101_000000");
    fs::create_dir_all(&foreign).unwrap();
    fs::write(foreign.join("manifest.json"), br#"{"format":"other-tool","id":"x"}"#).unwrap();
    // A valid pack whose manifest names another id than its directory.
    let other_id = sealed_pack(
        &tmp.path().join("x").join("a_20260101_000000"),
        PLAN,
        "a_20260101_000000",
        &[10],
    );
    let wrong_id = plan_dir.join("wrong_id_20260101_000000");
    fs::rename(other_id.dir(), &wrong_id).unwrap();
    // A valid pack of another plan, sitting under this plan.
    let other_plan = sealed_pack(
        &tmp.path().join("y").join("b_20260101_000000"),
        "other",
        "b_20260101_000000",
        &[10],
    );
    let wrong_plan = plan_dir.join("b_20260101_000000");
    fs::rename(other_plan.dir(), &wrong_plan).unwrap();
    // A file named like a pack, and a hidden directory.
    fs::write(plan_dir.join("file_20260101_000000"), b"keep").unwrap();
    fs::create_dir_all(plan_dir.join(".hidden")).unwrap();

    let ids = |v: Vec<backup_core::PackInfo>| v.into_iter().map(|p| p.id).collect::<Vec<_>>();
    assert_eq!(ids(sink.list(Some(PLAN)).await.unwrap()), vec![good.id.clone()]);
    assert_eq!(ids(sink.list(None).await.unwrap()), vec![good.id.clone()]);

    for dir in [
        &no_manifest,
        &foreign,
        &wrong_id,
        &wrong_plan,
        &plan_dir.join("file_20260101_000000"),
    ] {
        let id = dir.file_name().unwrap().to_str().unwrap();
        let before = entries(dir);
        assert!(
            sink.exists(PLAN, id).await.unwrap(),
            "exists() must see anything under {id}"
        );
        assert!(sink.open(PLAN, id).await.is_err(), "{id} must not open");
        let err = sink.delete(PLAN, id).await.unwrap_err().chain();
        assert!(err.contains("left untouched"), "{id}: {err}");
        assert!(dir.exists(), "{id} must survive");
        assert_eq!(entries(dir), before, "{id} must be unchanged");
    }
    assert!(no_manifest.join("data").exists());
    // Nothing was moved into the staging area either.
    assert!(entries(&root.join(STAGING_DIR)).is_empty());

    sink.delete(PLAN, &good.id).await.unwrap();
    assert!(!Path::new(&good.location).exists());
}

#[cfg(unix)]
#[tokio::test]
async fn symlinks_are_ignored_and_never_followed() {
    use std::os::unix::fs::symlink;

    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("backups");
    let sink = sink(&root);
    store_staged(&sink, PLAN, "good_20260101_000000", 1).await;

    // A valid pack outside the root, and a symlink named like it inside.
    let id = "outside_20260101_000000";
    let outside = sealed_pack(&tmp.path().join("outside").join(id), PLAN, id, &[100]);
    let link = root.join(PLAN).join(id);
    symlink(outside.dir(), &link).unwrap();
    // A whole plan directory that is a symlink to packs elsewhere.
    let other = sealed_pack(&tmp.path().join("other_plan").join(id), "other", id, &[100]);
    symlink(tmp.path().join("other_plan"), root.join("other")).unwrap();

    let listed: Vec<String> = sink.list(None).await.unwrap().into_iter().map(|p| p.id).collect();
    assert_eq!(listed, vec!["good_20260101_000000".to_string()]);
    assert!(sink.list(Some("other")).await.unwrap().is_empty());
    for plan in [PLAN, "other"] {
        let err = sink.open(plan, id).await.unwrap_err().chain();
        assert!(err.contains("symbolic link"), "{err}");
        let err = sink.delete(plan, id).await.unwrap_err().chain();
        assert!(err.contains("left untouched"), "{err}");
    }
    assert!(
        fs::symlink_metadata(&link).unwrap().file_type().is_symlink(),
        "the link itself stays"
    );
    for pack in [&outside, &other] {
        assert!(
            pack.dir().join("manifest.json").exists(),
            "the link target must be untouched"
        );
        assert!(
            pack.dir().join("test/part_0000.bin").exists(),
            "the link target must be untouched"
        );
    }

    // A symlinked staging area would put staging on another filesystem: refused.
    let staging = root.join(STAGING_DIR);
    fs::remove_dir_all(&staging).unwrap();
    symlink(tmp.path().join("outside"), &staging).unwrap();
    let err = sink
        .stage(9, PLAN, &PackId::new("x_20260101_000000").unwrap(), 1)
        .await
        .unwrap_err()
        .chain();
    assert!(err.contains("symbolic link"), "{err}");
    assert!(sink.check().await.is_err());
    assert_eq!(entries(&tmp.path().join("outside")), vec![id.to_string()]);
}

#[tokio::test]
async fn store_never_replaces_anything_not_even_an_empty_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("backups");
    let sink = sink(&root);
    let id = "p_20260101_000000";
    let final_dir = root.join(PLAN).join(id);
    fs::create_dir_all(&final_dir).unwrap();

    // Rename path: refused; the staged pack stays for the runner to discard.
    let staged = sink
        .stage(1, PLAN, &PackId::new(id).unwrap(), 10)
        .await
        .unwrap()
        .unwrap();
    let sealed = sealed_pack(&staged, PLAN, id, &[10]);
    let err = sink.store(&sealed, 1).await.unwrap_err().chain();
    assert!(
        err.contains("already exists") && err.contains("never overwritten"),
        "{err}"
    );
    assert!(
        entries(&final_dir).is_empty(),
        "the existing directory must stay as it was"
    );
    sink.discard_staging(&staged).await.unwrap();
    assert!(!staged.exists());
    drop(staged);

    // Copy path: refused before anything is written.
    let elsewhere = sealed_pack(&tmp.path().join("elsewhere").join(id), PLAN, id, &[10]);
    assert!(sink.store(&elsewhere, 2).await.is_err());
    assert!(entries(&final_dir).is_empty());
    assert!(entries(&root.join(STAGING_DIR)).is_empty(), "no staging leftovers");
}

#[tokio::test]
async fn a_damaged_pack_is_not_copied_in() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("backups");
    let sink = sink(&root);
    let id = "p_20260101_000000";

    // One flipped byte in an artifact (same size).
    let sealed = sealed_pack(&tmp.path().join("a").join(id), PLAN, id, &[5000, 20]);
    let victim = sealed.dir().join("test/part_0000.bin");
    let mut bytes = fs::read(&victim).unwrap();
    bytes[2500] ^= 1;
    fs::write(&victim, &bytes).unwrap();
    let err = sink.store(&sealed, 1).await.unwrap_err().chain();
    assert!(err.contains("failed verification") && err.contains("sha256"), "{err}");
    assert!(!root.join(PLAN).join(id).exists());
    assert!(
        entries(&root).is_empty(),
        "no staging leftovers, not even the directories: {:?}",
        entries(&root)
    );

    // A manifest.json that differs from the sealed pack's.
    let sealed = sealed_pack(&tmp.path().join("b").join(id), PLAN, id, &[10]);
    let mpath = sealed.dir().join("manifest.json");
    let text = fs::read_to_string(&mpath)
        .unwrap()
        .replace("\"host\": \"", "\"host\": \"x");
    fs::write(&mpath, text).unwrap();
    let err = sink.store(&sealed, 1).await.unwrap_err().chain();
    assert!(err.contains("manifest"), "{err}");
    assert!(entries(&root).is_empty(), "{:?}", entries(&root));

    // The original is never consumed or changed by a failed copy.
    assert!(sealed.dir().join("test/part_0000.bin").exists());
}

#[tokio::test]
async fn list_is_oldest_first_and_validates_names() {
    let tmp = tempfile::tempdir().unwrap();
    let sink = sink(tmp.path());
    // Started first, but sorts last by id.
    let b = store_staged(&sink, PLAN, "z_20260101_000000", 1).await;
    let a = store_staged(&sink, PLAN, "a_20260101_000000", 2).await;
    let c = store_staged(&sink, "hourly", "m_20260101_000000", 3).await;
    let ids: Vec<String> = sink.list(None).await.unwrap().into_iter().map(|p| p.id).collect();
    assert_eq!(ids, vec![b.id.clone(), a.id.clone(), c.id.clone()]);
    assert_eq!(
        c.location,
        tmp.path()
            .join("hourly")
            .join("m_20260101_000000")
            .display()
            .to_string()
    );
    assert_eq!(b.job_id, Some(7));

    for bad in ["..", "../etc", "a/b", ".packrat-staging", ""] {
        assert!(sink.list(Some(bad)).await.is_err(), "plan {bad:?}");
        assert!(sink.delete(bad, &a.id).await.is_err(), "plan {bad:?}");
        assert!(sink.delete(PLAN, bad).await.is_err(), "id {bad:?}");
        assert!(sink.open(PLAN, bad).await.is_err(), "id {bad:?}");
    }
    let err = sink.open(PLAN, "missing_20260101_000000").await.unwrap_err().chain();
    assert!(
        err.contains("no pack `missing_20260101_000000` of plan `nightly`"),
        "{err}"
    );
    assert_eq!(sink.list(None).await.unwrap().len(), 3);
}

#[tokio::test]
async fn leftovers_of_gone_jobs_and_deletes_are_cleaned_and_nothing_else() {
    let tmp = tempfile::tempdir().unwrap();
    let sink = sink(tmp.path());
    let staging = tmp.path().join(STAGING_DIR);
    // A job that is still running, in this process here (its claim is held); staged through
    // the sink as the runner does.
    let live = sink
        .stage(6, PLAN, &PackId::new("p_20260101_000000").unwrap(), 1)
        .await
        .unwrap()
        .unwrap();
    fs::create_dir_all(live.join("sub")).unwrap();
    fs::write(live.join("sub/f"), b"x").unwrap();
    // A crashed job (free lock file beside its directory), a crashed prune, an old-style
    // leftover without a lock file, and things that are not ours.
    for d in ["job_5_p_20260101_000000", "delete_p_1_2", "job_x_y", "unknown"] {
        fs::create_dir_all(staging.join(d).join("sub")).unwrap();
        fs::write(staging.join(d).join("sub/f"), b"x").unwrap();
    }
    fs::write(staging.join("job_5_p_20260101_000000.lock"), b"999999\n").unwrap();
    fs::write(staging.join("job_7_file"), b"a file, not ours").unwrap();
    let mut removed = sink.clean_leftovers().await.unwrap();
    removed.sort();
    assert_eq!(
        removed,
        vec![
            staging.join("delete_p_1_2"),
            staging.join("job_5_p_20260101_000000"),
            staging.join("job_x_y"),
        ]
    );
    assert_eq!(
        entries(&staging),
        vec![
            "job_6_p_20260101_000000",
            "job_6_p_20260101_000000.lock",
            "job_7_file",
            "unknown"
        ]
    );
    assert!(live.join("sub/f").exists(), "a live job's staging is never touched");
    // Once the job is gone, its staging is a leftover too.
    drop(live);
    assert_eq!(
        sink.clean_leftovers().await.unwrap(),
        vec![staging.join("job_6_p_20260101_000000")]
    );
    assert_eq!(entries(&staging), vec!["job_7_file", "unknown"]);
    // A root that was never used has no leftovers.
    assert!(
        LocalSink::new("l", tmp.path().join("nope"))
            .clean_leftovers()
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn discard_staging_only_removes_our_staging_directories() {
    let tmp = tempfile::tempdir().unwrap();
    let sink = sink(&tmp.path().join("backups"));
    let precious = tmp.path().join("precious");
    fs::create_dir_all(&precious).unwrap();
    fs::write(precious.join("f"), b"x").unwrap();
    let err = sink.discard_staging(&precious).await.unwrap_err().chain();
    assert!(err.contains("refusing to remove"), "{err}");
    assert!(precious.join("f").exists());
    // Something that does not exist (any more) is fine.
    sink.discard_staging(&tmp.path().join("gone")).await.unwrap();

    // A staging directory claimed by a live job is refused, naming the holder; once released,
    // staging the same job and id again reuses the empty directory but refuses a used one.
    let id = PackId::new("p_20260101_000000").unwrap();
    let dir = sink.stage(1, PLAN, &id, 1).await.unwrap().unwrap();
    let err = sink.stage(1, PLAN, &id, 1).await.unwrap_err().chain();
    assert!(
        err.contains("in use by a running job") && err.contains(&std::process::id().to_string()),
        "{err}"
    );
    let path = dir.to_path_buf();
    drop(dir);
    let dir = sink.stage(1, PLAN, &id, 1).await.unwrap().unwrap();
    assert_eq!(dir.dir(), path);
    fs::write(dir.join("partial"), b"x").unwrap();
    drop(dir);
    let err = sink.stage(1, PLAN, &id, 1).await.unwrap_err().chain();
    assert!(err.contains("already exists and is not empty"), "{err}");
    sink.discard_staging(&path).await.unwrap();
    assert!(!path.exists());
}

#[tokio::test]
async fn check_and_free_space_do_not_create_the_root() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("new").join("backups");
    let sink = sink(&root);
    sink.check().await.unwrap();
    assert!(sink.free_space().await.unwrap().unwrap() > 0);
    assert!(sink.list(None).await.unwrap().is_empty());
    assert!(!tmp.path().join("new").exists());
    assert!(
        entries(tmp.path()).is_empty(),
        "the probe file is removed: {:?}",
        entries(tmp.path())
    );
    // A reserve larger than any disk fails the check with the free-space message.
    let greedy = LocalSink::new("local", &root).with_min_free_bytes(u64::MAX / 2);
    let err = greedy.check().await.unwrap_err().chain();
    assert!(
        err.contains("not enough free space") && err.contains("sinks.local.path"),
        "{err}"
    );
}

#[cfg(unix)]
#[tokio::test]
async fn a_root_below_a_regular_file_is_a_clear_error_and_nothing_is_created() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("file");
    fs::write(&file, b"not a directory").unwrap();
    let sink = sink(&file.join("backups"));
    let err = sink
        .stage(1, PLAN, &PackId::new("p_20260101_000000").unwrap(), 1)
        .await
        .unwrap_err()
        .chain();
    assert!(
        err.contains("cannot create") && err.contains("point sinks.local.path at a directory"),
        "{err}"
    );
    assert!(sink.check().await.is_err());
    let elsewhere = sealed_pack(
        &tmp.path().join("e").join("p_20260101_000000"),
        PLAN,
        "p_20260101_000000",
        &[1],
    );
    assert!(sink.store(&elsewhere, 1).await.is_err());
    assert_eq!(fs::read(&file).unwrap(), b"not a directory");
    // The root itself being a file.
    let err = LocalSink::new("local", &file).check().await.unwrap_err().chain();
    assert!(err.contains("is not a directory"), "{err}");
}
