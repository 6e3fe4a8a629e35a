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

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;

use crate::manifest::{MANIFEST_FILE, Manifest, SUMS_FILE};
use crate::pack::{MAX_MANIFEST_BYTES, PackId, StagingPack};
use crate::reader::PackReader;
use crate::sink::{PackInfo, Sink};
use crate::source::{BackupContext, Source};
use crate::verify::{Verifier, VerifyLevel};
use crate::{BackupKind, Compression, ErrorKind, SealedPack};

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

/// The original bytes of the artifacts the kit writes: (path, compression, bytes).
fn artifacts() -> [(&'static str, Compression, Vec<u8>); 2] {
    let data: Vec<u8> = (0..10_000u32).flat_map(u32::to_le_bytes).collect();
    let notes = b"conformance notes\n".repeat(100);
    [
        ("conformance/data.bin.zst", Compression::Zstd, data),
        ("conformance/notes.txt", Compression::None, notes),
    ]
}

fn sealed_pack(dir: &Path, id: &str) -> SealedPack {
    let id = PackId::new(id).expect("id");
    let pack = StagingPack::create(dir, PLAN, id, BackupKind::Full, chrono_tz::UTC).expect("staging");
    for (path, compression, bytes) in artifacts() {
        let mut w = pack
            .artifact(path, "conformance", "file", compression)
            .expect("artifact");
        w.write_all(&bytes).expect("write");
        w.finish().expect("finish");
    }
    pack.seal().expect("seal")
}

/// Reads pack `info` back through the sink's reader: the same manifest as `sealed`, the stored
/// files listed with their sizes, every artifact's original bytes, and verification (quick and
/// deep, through the sink and on the reader, and the restore check) without a problem.
async fn check_reading(sink: &dyn Sink, info: &PackInfo, sealed: &SealedPack) -> Arc<dyn PackReader> {
    let id = &info.id;
    let pack = sink.open(PLAN, id).await.expect("open a stored pack");
    assert_eq!(pack.id(), id.as_str(), "open must return the pack asked for");
    assert_eq!(
        pack.manifest(),
        sealed.manifest(),
        "{id}: the reader's manifest must be the sealed one"
    );
    assert_eq!(
        pack.location(),
        info.location,
        "{id}: open and list must agree on the location"
    );
    let pack = tokio::task::spawn_blocking(move || {
        let m = pack.manifest();
        let files = pack.files().expect("list the pack's files");
        for a in &m.artifacts {
            assert!(files.contains(&a.path), "{}: files() must list {}", m.pack_id, a.path);
            assert_eq!(pack.size(&a.path).expect("size"), a.size, "size of {}", a.path);
        }
        for own in [MANIFEST_FILE, SUMS_FILE] {
            assert!(files.contains(&own.to_string()), "files() must list {own}");
        }
        let json = pack
            .read_file(MANIFEST_FILE, MAX_MANIFEST_BYTES)
            .expect("read manifest.json");
        assert_eq!(
            &Manifest::from_json(&json).expect("parse"),
            m,
            "manifest.json read back"
        );
        for (path, _, bytes) in artifacts() {
            let entry = m.artifact(path).expect("artifact in the manifest");
            let mut back = Vec::new();
            pack.open_artifact(entry)
                .expect("open_artifact")
                .read_to_end(&mut back)
                .expect("read the artifact");
            assert!(back == bytes, "{path}: open_artifact must return the original bytes");
        }
        assert!(
            pack.open_file("conformance/missing.bin").is_err(),
            "a missing file must not open"
        );
        for level in [VerifyLevel::Quick, VerifyLevel::Deep] {
            let r = Verifier::new().verify(&*pack, level);
            assert!(
                r.is_ok(),
                "{} must verify ({level:?}) on the reader: {:?}",
                m.pack_id,
                r.problems
            );
        }
        let wanted: Vec<_> = m.artifacts.iter().collect();
        let c = Verifier::check_for_restore(&*pack, &wanted);
        assert!(
            c.is_ok() && wanted.iter().all(|a| c.usable(&a.path)),
            "restore check: {c:?}"
        );
        pack
    })
    .await
    .expect("reading task");
    let r = sink
        .verify(PLAN, id, &Verifier::new(), VerifyLevel::Deep)
        .await
        .expect("verify");
    assert!(
        r.is_ok(),
        "stored pack {id} must verify through the sink: {:?}",
        r.problems
    );
    assert_eq!(r.location, info.location);
    pack
}

/// When the pack is in a local directory: one flipped byte of an artifact is found by
/// verification through the sink, and naming the artifact.
async fn check_damage_is_seen(sink: &dyn Sink, pack: &dyn PackReader) {
    let Some(dir) = pack.local_dir() else { return };
    let rel = "conformance/notes.txt";
    let path = dir.join(rel);
    let orig = std::fs::read(&path).expect("read artifact");
    let mut bad = orig.clone();
    bad[0] ^= 1;
    std::fs::write(&path, &bad).expect("damage artifact");
    let r = sink
        .verify(PLAN, pack.id(), &Verifier::new(), VerifyLevel::Quick)
        .await
        .expect("verify");
    std::fs::write(&path, &orig).expect("repair artifact");
    assert!(
        r.problems.iter().any(|p| p.path == rel && p.reason.contains("sha256")),
        "a flipped byte in {rel} must be reported: {:?}",
        r.problems
    );
}

/// Checks a sink: staging then store by rename, copy-in of a pack from elsewhere, listing only
/// valid packs, never overwriting, reading packs back through the sink ([`Sink::open`]: the
/// manifest, the stored files, every artifact's original bytes; verification through the sink
/// and on the reader, which sees a flipped byte where the pack is in a local directory), deleting
/// only packs of ours, discarding staging and cleaning leftovers of dead jobs. Uses the plan
/// name `conformance`.
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
    let first = sink.open(PLAN, id1).await.expect("open");
    let foreign = first
        .local_dir()
        .and_then(Path::parent)
        .map(|p| p.join("not_a_pack_of_ours"));
    if let Some(f) = &foreign {
        std::fs::create_dir_all(f).expect("foreign dir");
        std::fs::write(f.join("important.txt"), b"keep me").expect("foreign file");
    }
    let listed = sink.list(Some(PLAN)).await.expect("list");
    let ids: Vec<&str> = listed.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, [id1, id2], "list must show exactly our packs, oldest first");
    assert_eq!(listed[0], info1, "list must describe a pack as store did");
    assert!(sink.list(None).await.expect("list all").iter().any(|p| p.id == id1));

    // 5. Stored packs read back through the sink: manifest, files, artifacts, verification.
    for (info, sealed) in [(&info1, &sealed1), (&info2, &sealed2)] {
        let pack = check_reading(sink.as_ref(), info, sealed).await;
        check_damage_is_seen(sink.as_ref(), &*pack).await;
    }
    let missing = sink.open(PLAN, "conformance_20250101_000000").await;
    assert_eq!(
        missing.map(|_| ()).map_err(|e| e.kind()),
        Err(ErrorKind::NotFound),
        "opening a pack that is not there must fail as not found"
    );

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
