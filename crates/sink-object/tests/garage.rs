//! The S3 sink against the real Garage cluster of the test services (three nodes, replication
//! factor 3): the conformance kit, multipart uploads read back and verified deep from the
//! bucket, what is not a pack, leftovers of dead jobs, and the errors of a wrong secret and an
//! unreachable endpoint. A missing cluster fails these tests; it never skips them.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use backup_core::{BackupKind, Compression, ErrorKind, PackId, Sink, StagingPack, Verifier, VerifyLevel};
use sink_object::{ByteSize, ObjectSink, ObjectSinkConfig};

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: start the test services with `cargo xtask services up` (the garage cluster)")
    })
}

/// A config for the test cluster under a prefix no other test uses.
fn config(test: &str) -> ObjectSinkConfig {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    ObjectSinkConfig {
        endpoint: env("PACKRAT_TEST_S3_ENDPOINT"),
        region: env("PACKRAT_TEST_S3_REGION"),
        bucket: env("PACKRAT_TEST_S3_BUCKET"),
        prefix: format!("sink-object/{test}/{nanos}"),
        access_key_id_env: Some("PACKRAT_TEST_S3_ACCESS_KEY_ID".into()),
        access_key_id_file: None,
        secret_access_key_env: Some("PACKRAT_TEST_S3_SECRET_ACCESS_KEY".into()),
        secret_access_key_file: None,
        path_style: true,
        storage_class: None,
        part_size: ByteSize(5 << 20),
        concurrency: 4,
        timeout: std::time::Duration::from_secs(30),
        retries: 2,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_the_conformance_kit_on_the_cluster() {
    let sink = ObjectSink::new("garage", config("conformance"));
    backup_core::conformance::check_sink(Arc::new(sink)).await;
}

/// A pack with one 23 MiB artifact (five parts) and a small one, sealed in `dir`.
fn big_pack(dir: &std::path::Path, id: &str) -> backup_core::SealedPack {
    let pack = StagingPack::create(
        dir,
        "nightly",
        PackId::new(id).unwrap(),
        BackupKind::Full,
        chrono_tz::UTC,
    )
    .unwrap();
    let mut w = pack
        .artifact("data/big.bin", "test", "file", Compression::None)
        .unwrap();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..(23 << 20) / 8 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        std::io::Write::write_all(&mut w, &x.to_le_bytes()).unwrap();
    }
    w.finish().unwrap();
    let mut w = pack
        .artifact("data/notes.txt.zst", "test", "file", Compression::Zstd)
        .unwrap();
    std::io::Write::write_all(&mut w, &b"notes\n".repeat(1000)).unwrap();
    w.finish().unwrap();
    pack.seal().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multipart_pack_reads_back_from_the_bucket_and_verifies_deep() {
    let tmp = tempfile::tempdir().unwrap();
    let sealed = big_pack(tmp.path(), "nightly_20261201_040000");
    let sink = Arc::new(ObjectSink::new("garage", config("multipart")));
    let info = sink.store(&sealed, 7).await.unwrap();
    assert_eq!(info.bytes, sealed.manifest().total_size());
    assert!(sink.uploaded_bytes() >= 23 << 20, "{}", sink.uploaded_bytes());
    // Deep verification reads every artifact from the bucket.
    let report = sink
        .verify("nightly", &info.id, &Verifier::new(), VerifyLevel::Deep)
        .await
        .unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    // Storing it again is refused and leaves it as it was.
    let e = sink.store(&sealed, 8).await.unwrap_err();
    assert!(e.to_string().contains("already exists"), "{e}");
    assert_eq!(sink.list(Some("nightly")).await.unwrap(), vec![info.clone()]);
    sink.delete("nightly", &info.id).await.unwrap();
    assert!(sink.list(None).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefix_without_a_manifest_is_no_pack_and_only_dead_jobs_uploads_are_swept() {
    let cfg = config("leftovers");
    let sink = ObjectSink::new("garage", cfg.clone());
    // The raw store, to put objects where a killed job or someone else would leave them.
    opendal::install_default();
    let raw = opendal::Operator::new(
        opendal::services::S3::default()
            .endpoint(&cfg.endpoint)
            .region(&cfg.region)
            .bucket(&cfg.bucket)
            .access_key_id(&env("PACKRAT_TEST_S3_ACCESS_KEY_ID"))
            .secret_access_key(&env("PACKRAT_TEST_S3_SECRET_ACCESS_KEY"))
            .disable_config_load(),
    )
    .unwrap();
    let p = &cfg.prefix;
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    let marker = |pid: u32| format!(r#"{{"host":"{host}","pid":{pid},"job":1,"started_at":"2026-12-01T04:00:00Z"}}"#);
    // A dead job's partial upload, a live job's upload in progress, and foreign objects.
    raw.write(&format!("{p}/nightly/dead_1/data/big.bin"), vec![1u8; 1000])
        .await
        .unwrap();
    raw.write(&format!("{p}/nightly/dead_1/.packrat-upload"), marker(4_194_305))
        .await
        .unwrap();
    raw.write(&format!("{p}/nightly/live_1/data/big.bin"), vec![1u8; 10])
        .await
        .unwrap();
    raw.write(
        &format!("{p}/nightly/live_1/.packrat-upload"),
        marker(std::process::id()),
    )
    .await
    .unwrap();
    raw.write(&format!("{p}/nightly/photos/holiday.jpg"), vec![2u8; 10])
        .await
        .unwrap();
    raw.write(&format!("{p}/nightly/broken/manifest.json"), b"{ not json".to_vec())
        .await
        .unwrap();

    assert!(sink.list(None).await.unwrap().is_empty(), "none of these is a pack");
    let e = sink.delete("nightly", "photos").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    let removed = sink.clean_leftovers().await.unwrap();
    assert_eq!(removed.len(), 1, "{removed:?}");
    assert!(removed[0].to_string_lossy().ends_with("/nightly/dead_1"), "{removed:?}");
    assert!(!raw.exists(&format!("{p}/nightly/dead_1/data/big.bin")).await.unwrap());
    for kept in ["live_1/data/big.bin", "photos/holiday.jpg", "broken/manifest.json"] {
        assert!(
            raw.exists(&format!("{p}/nightly/{kept}")).await.unwrap(),
            "{kept} must be kept"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_is_denied_without_showing_the_secret() {
    let tmp = tempfile::tempdir().unwrap();
    let secret = "wrong-secret-3f9a1c7d5e";
    std::fs::write(tmp.path().join("secret"), secret).unwrap();
    let mut cfg = config("denied");
    cfg.secret_access_key_env = None;
    cfg.secret_access_key_file = Some(tmp.path().join("secret"));
    let sink = ObjectSink::new("garage", cfg);
    let e = sink.check().await.unwrap_err();
    let text = e.chain();
    assert_eq!(e.kind(), ErrorKind::Denied, "{text}");
    assert!(!text.contains(secret), "{text}");
    assert!(text.contains("check access_key_id/secret_access_key"), "{text}");
    let sealed = big_pack(&tmp.path().join("p"), "nightly_20261201_050000");
    assert_eq!(sink.store(&sealed, 1).await.unwrap_err().kind(), ErrorKind::Denied);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_endpoint_is_named_and_unavailable() {
    let mut cfg = config("unreachable");
    cfg.endpoint = "http://127.0.0.1:9".into();
    cfg.retries = 1;
    cfg.timeout = std::time::Duration::from_secs(2);
    let sink = ObjectSink::new("garage", cfg);
    let e = sink.list(None).await.unwrap_err();
    let text = e.chain();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{text}");
    assert!(
        text.contains("http://127.0.0.1:9") && text.contains("reachable"),
        "{text}"
    );
}

#[test]
fn config_errors_name_the_key() {
    use backup_core::config::Section;
    let mut c = config("config");
    c.endpoint = "garage.lan:3900".into();
    assert_eq!(c.validate().unwrap_err().key, "endpoint");
    let mut c = config("config");
    c.secret_access_key_env = None;
    assert!(c.validate().unwrap_err().message.contains("secret_access_key_env"));
    let mut c = config("config");
    c.part_size = ByteSize(1 << 20);
    assert_eq!(c.validate().unwrap_err().key, "part_size");
    let mut c = config("config");
    c.prefix = "/abs/".into();
    assert_eq!(c.validate().unwrap_err().key, "prefix");
}
