//! Behavioural tests that every [`Source`] and [`Sink`] implementation must pass.
//!
//! Enable the `conformance` feature in your crate's dev-dependencies and call the kit from a
//! test:
//!
//! ```ignore
//! #[tokio::test]
//! async fn conforms() {
//!     let sink = std::sync::Arc::new(MySink::new(/* .. */));
//!     backup_core::conformance::check_sink(sink).await;
//! }
//! ```
//!
//! Each check panics with a message naming the broken rule.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use crate::pack::{PackId, StagingPack};
use crate::sink::Sink;
use crate::source::{BackupContext, Source};
use crate::verify::{Verifier, VerifyLevel};
use crate::{BackupKind, Compression, SealedPack};

const PLAN: &str = "conformance";

/// Checks a source: it backs up into a fresh staging pack, names its artifacts under
/// `<kind>/` and after itself, the pack seals and passes deep verification with `verifier`
/// (register the source's own deep checks), and a second backup works the same way.
pub async fn check_source(source: &dyn Source, verifier: &Verifier) {
    let tmp = tempfile::tempdir().expect("tempdir");
    for round in 1..=2u32 {
        let ctx = BackupContext::detached(PLAN, BackupKind::Full);
        source
            .estimate(&ctx)
            .await
            .expect("estimate() must not fail on a healthy source");
        let id = PackId::new(format!("conformance_2026010{round}_000000")).expect("id");
        let pack = StagingPack::create(
            &tmp.path().join(id.as_str()),
            PLAN,
            id,
            BackupKind::Full,
            chrono_tz::UTC,
        )
        .expect("staging");
        let report = source.backup(&ctx, &pack).await;
        report.unwrap_or_else(|e| panic!("backup round {round} failed: {}", e.chain()));
        let artifacts = pack.artifacts();
        assert!(!artifacts.is_empty(), "a backup must write at least one artifact");
        for a in &artifacts {
            assert_eq!(a.source, source.name(), "artifact {} must name its source", a.path);
            assert!(
                a.path.starts_with(&format!("{}/", source.kind())),
                "artifact {} must live under `{}/`",
                a.path,
                source.kind()
            );
            assert_eq!(a.sha256.len(), 64, "artifact {} needs a sha256", a.path);
        }
        let sealed = pack.seal().expect("the pack must seal after a successful backup");
        let report = verifier.verify(&sealed.to_pack(), VerifyLevel::Deep);
        assert!(report.is_ok(), "deep verification failed: {:?}", report.problems);
    }
    source.check().await.expect("check() must pass on a healthy source");
}

fn sealed_pack(dir: &Path, id: &str) -> SealedPack {
    let id = PackId::new(id).expect("id");
    let pack = StagingPack::create(dir, PLAN, id, BackupKind::Full, chrono_tz::UTC).expect("staging");
    let mut w = pack
        .artifact("conformance/data.bin.zst", "conformance", "file", Compression::Zstd)
        .expect("artifact");
    for i in 0..10_000u32 {
        w.write_all(&i.to_le_bytes()).expect("write");
    }
    w.finish().expect("finish");
    pack.seal().expect("seal")
}

/// Checks a sink: staging then store by rename, copy-in of a pack from elsewhere, listing only
/// valid packs, never overwriting, verification, deleting only packs of ours, discarding staging
/// and cleaning leftovers of dead jobs. Uses the plan name `conformance`.
pub async fn check_sink(sink: Arc<dyn Sink>) {
    let tmp = tempfile::tempdir().expect("tempdir");
    assert!(
        sink.list(Some(PLAN)).await.expect("list").is_empty(),
        "start with a sink that has no `conformance` packs"
    );

    // 1. Staged on the sink (if it hosts staging), sealed, stored.
    let id1 = "conformance_20260101_000000";
    let staged = sink
        .stage(1, PLAN, &PackId::new(id1).expect("id"), 1024)
        .await
        .expect("stage");
    let dir1 = staged
        .as_ref()
        .map_or_else(|| tmp.path().join(id1), |c| c.dir().to_path_buf());
    let sealed1 = sealed_pack(&dir1, id1);
    let info1 = sink.store(&sealed1, 1).await.expect("store of a staged pack");
    drop(staged);
    assert_eq!(info1.id, id1);
    assert_eq!(info1.plan, PLAN);
    assert_eq!(info1.bytes, sealed1.manifest().total_size());
    assert!(sink.exists(PLAN, id1).await.expect("exists"));

    // 2. A pack assembled elsewhere is copied in.
    let id2 = "conformance_20260102_000000";
    let sealed2 = sealed_pack(&tmp.path().join("elsewhere").join(id2), id2);
    let info2 = sink.store(&sealed2, 2).await.expect("store of a pack from elsewhere");
    assert!(
        sealed2.dir().exists(),
        "storing a foreign pack must not consume the original"
    );

    // 3. Never overwrite an existing pack.
    let again = sealed_pack(&tmp.path().join("again").join(id2), id2);
    assert!(
        sink.store(&again, 3).await.is_err(),
        "storing over an existing pack must fail"
    );

    // 4. Listing shows exactly the valid packs, oldest first; foreign directories are ignored.
    let foreign = info1.path.parent().map(|p| p.join("not_a_pack_of_ours"));
    if let Some(f) = &foreign {
        std::fs::create_dir_all(f).expect("foreign dir");
        std::fs::write(f.join("important.txt"), b"keep me").expect("foreign file");
    }
    let listed: Vec<String> = sink
        .list(Some(PLAN))
        .await
        .expect("list")
        .into_iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(
        listed,
        vec![id1.to_string(), id2.to_string()],
        "list must show exactly our packs, oldest first"
    );
    assert!(sink.list(None).await.expect("list all").iter().any(|p| p.id == id1));

    // 5. Stored packs verify and open with the same manifest.
    for info in [&info1, &info2] {
        let r = sink
            .verify(PLAN, &info.id, &Verifier::new(), VerifyLevel::Deep)
            .await
            .expect("verify");
        assert!(r.is_ok(), "stored pack {} must verify: {:?}", info.id, r.problems);
        let p = sink.open(PLAN, &info.id).await.expect("open");
        assert_eq!(p.manifest().pack_id, info.id);
    }

    // 6. Delete removes our pack and refuses anything else.
    sink.delete(PLAN, id1).await.expect("delete");
    assert!(
        !sink.exists(PLAN, id1).await.expect("exists"),
        "deleted pack must be gone"
    );
    assert!(
        sink.delete(PLAN, id1).await.is_err(),
        "deleting a missing pack must fail"
    );
    assert!(
        sink.delete(PLAN, "not_a_pack_of_ours").await.is_err(),
        "a foreign directory must never be deleted"
    );
    if let Some(f) = &foreign {
        assert!(f.join("important.txt").exists(), "foreign data must survive");
        std::fs::remove_dir_all(f).expect("cleanup");
    }

    // 7. Staging whose job is gone (its claim released) is cleaned; the staging of a live job
    //    (its claim held) is kept.
    let dead = sink
        .stage(41, PLAN, &PackId::new("conformance_20260103_000000").expect("id"), 1)
        .await
        .expect("stage");
    let live = sink
        .stage(42, PLAN, &PackId::new("conformance_20260104_000000").expect("id"), 1)
        .await
        .expect("stage");
    if let (Some(dead), Some(live)) = (dead, live) {
        std::fs::write(dead.join("partial"), b"x").expect("write");
        let dead_dir = dead.dir().to_path_buf();
        drop(dead);
        let removed = sink.clean_leftovers().await.expect("clean");
        assert!(!dead_dir.exists(), "staging of a job that is gone must be removed");
        assert!(
            removed.contains(&dead_dir),
            "clean_leftovers must report what it removed"
        );
        assert!(live.exists(), "staging of a live job must be kept");
        sink.discard_staging(&live).await.expect("discard");
        assert!(!live.exists(), "discard_staging must remove it");
    }

    sink.delete(PLAN, id2).await.expect("delete");
    assert!(sink.list(Some(PLAN)).await.expect("list").is_empty());
}
