//! Restore refuses archives with entries that would land outside the volume, before anything is
//! written; deep verification flags them too.

mod common;

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use backup_core::{BackupKind, Compression, Pack, PackReader, VerifyLevel};
use common::{env, staging, unique, verifier};
use source_docker::{RestoreOptions, tar_build as tb};

/// A pack holding one volume archive built from `tar` for volume `volume`.
fn pack_with(root: &Path, volume: &str, tar: &[u8]) -> Arc<dyn PackReader> {
    let pack = staging(root, "p_20260101_000000", BackupKind::Full);
    let mut w = pack
        .artifact(
            &format!("docker/volumes/{volume}.tar.zst"),
            "evil",
            "docker-volume",
            Compression::Zstd,
        )
        .unwrap();
    w.write_all(tar).unwrap();
    w.set_meta("volume", volume);
    w.finish().unwrap();
    let sealed = pack.seal().unwrap();
    Pack::open(sealed.dir()).unwrap().into_reader()
}

#[tokio::test(flavor = "multi_thread")]
async fn dot_dot_absolute_and_symlink_escapes_are_refused_and_nothing_is_written() {
    let env = env();
    let t = tempfile::tempdir().unwrap();
    let marker = unique("packrat-evil-");
    let outside = std::env::temp_dir().join(&marker);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("dotdot", {
            let mut a = Vec::new();
            tb::entry(&mut a, b"./", b'5', b"", 0o755, b"");
            tb::entry(&mut a, b"./ok.txt", b'0', b"fine", 0o644, b"");
            let evil = format!("./../../../../../../../../..{}", outside.display());
            tb::entry(&mut a, evil.as_bytes(), b'0', b"pwned", 0o644, b"");
            tb::end(&mut a);
            a
        }),
        ("absolute", {
            let mut a = Vec::new();
            tb::entry(&mut a, b"./", b'5', b"", 0o755, b"");
            tb::entry(
                &mut a,
                outside.display().to_string().as_bytes(),
                b'0',
                b"pwned",
                0o644,
                b"",
            );
            tb::end(&mut a);
            a
        }),
        ("pax", {
            let mut a = Vec::new();
            tb::entry(&mut a, b"./", b'5', b"", 0o755, b"");
            tb::pax(
                &mut a,
                &[(b"path", format!("../../..{}", outside.display()).as_bytes())],
            );
            tb::entry(&mut a, b"./innocent", b'0', b"pwned", 0o644, b"");
            tb::end(&mut a);
            a
        }),
        ("symlink", {
            let mut a = Vec::new();
            tb::entry(&mut a, b"./", b'5', b"", 0o755, b"");
            let dir = std::env::temp_dir().display().to_string();
            tb::entry(&mut a, b"./t", b'2', b"", 0o777, dir.as_bytes());
            tb::entry(&mut a, format!("./t/{marker}").as_bytes(), b'0', b"pwned", 0o644, b"");
            tb::end(&mut a);
            a
        }),
        ("hardlink", {
            let mut a = Vec::new();
            tb::entry(&mut a, b"./", b'5', b"", 0o755, b"");
            tb::entry(&mut a, b"./passwd", b'1', b"", 0o644, b"../../../../etc/passwd");
            tb::end(&mut a);
            a
        }),
    ];
    for (case, tar) in cases {
        let volume = unique(&format!("evil{case}"));
        let root = t.path().join(case);
        let pack = pack_with(&root, &volume, &tar);

        let report = verifier().verify(&pack, VerifyLevel::Deep);
        assert!(
            report.problems.iter().any(|p| p.reason.contains("refused")),
            "{case}: deep verify must flag it: {report:?}"
        );

        let opts = RestoreOptions {
            volumes: Some(Vec::new()),
            compose_dir: None,
            helper_image: Some(env.image.clone()),
            ..RestoreOptions::default()
        };
        let e = source_docker::restore(&pack, None, &opts)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("refused") && e.contains("nothing was restored"),
            "{case}: {e}"
        );
        assert!(
            !env.volume_exists(&volume),
            "{case}: the volume must not even be created"
        );
        assert!(!outside.exists(), "{case}: {} was written", outside.display());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_existing_volume_is_left_untouched_by_a_refused_archive() {
    // An existing (empty) volume is left exactly as it was.
    let env = env();
    let volume = unique("evilstream");
    env.docker(&["volume", "create", &volume]);
    let mut a = Vec::new();
    tb::entry(&mut a, b"./", b'5', b"", 0o755, b"");
    tb::entry(&mut a, b"./../escaped", b'0', b"pwned", 0o644, b"");
    tb::end(&mut a);
    let t = tempfile::tempdir().unwrap();
    let pack = pack_with(t.path(), &volume, &a);
    let e = source_docker::validate_volume_archive(&pack, &pack.manifest().artifacts[0])
        .unwrap_err()
        .to_string();
    assert!(e.contains("`./../escaped`") && e.contains("refused"), "{e}");
    let opts = RestoreOptions {
        volumes: Some(vec![volume.clone()]),
        helper_image: Some(env.image.clone()),
        ..RestoreOptions::default()
    };
    assert!(source_docker::restore(&pack, None, &opts).await.is_err());
    assert_eq!(env.sh_in_volume(&volume, "ls -A /v | wc -l").trim(), "0");
    env.docker(&["volume", "rm", &volume]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_pack_is_refused_before_anything_is_written_unless_allow_damaged() {
    let env = env();
    let t = tempfile::tempdir().unwrap();
    let good = unique("dmggood");
    let bad = unique("dmgbad");
    let pack = staging(t.path(), "p_20260101_000000", BackupKind::Full);
    for (volume, file) in [(&good, &b"intact"[..]), (&bad, &b"damaged"[..])] {
        let mut a = Vec::new();
        tb::entry(&mut a, b"./", b'5', b"", 0o755, b"");
        tb::entry(&mut a, b"./f.txt", b'0', file, 0o644, b"");
        tb::end(&mut a);
        let mut w = pack
            .artifact(
                &format!("docker/volumes/{volume}.tar.zst"),
                "app",
                "docker-volume",
                Compression::Zstd,
            )
            .unwrap();
        w.write_all(&a).unwrap();
        w.set_meta("volume", volume.as_str());
        w.finish().unwrap();
    }
    let mut w = pack
        .artifact(
            "docker/compose/app/docker-compose.yml",
            "app",
            "docker-compose",
            Compression::None,
        )
        .unwrap();
    w.write_all(b"services: {}\n").unwrap();
    w.finish().unwrap();
    let pack = Pack::open(pack.seal().unwrap().dir()).unwrap().into_reader();
    let bad_rel = format!("docker/volumes/{bad}.tar.zst");
    let path = pack.local_dir().unwrap().join(&bad_rel);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();

    let compose_dir = t.path().join("app");
    let opts = RestoreOptions {
        volumes: Some(Vec::new()),
        compose_dir: Some(compose_dir.clone()),
        helper_image: Some(env.image.clone()),
        ..RestoreOptions::default()
    };
    let e = source_docker::restore(&pack, None, &opts)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&format!("{bad_rel}: sha256 mismatch")) && e.contains("--allow-damaged"),
        "{e}"
    );
    assert!(
        !env.volume_exists(&good) && !env.volume_exists(&bad),
        "no volume may be created"
    );
    assert!(!compose_dir.exists(), "the compose directory may not be created");

    let r = source_docker::restore(
        &pack,
        None,
        &RestoreOptions {
            allow_damaged: true,
            ..opts
        },
    )
    .await
    .unwrap();
    assert_eq!(r.skipped.len(), 1, "{r:?}");
    assert_eq!(r.skipped[0].path, bad_rel);
    assert_eq!(r.volumes.len(), 1);
    assert_eq!(r.volumes[0].name, good);
    assert_eq!(r.compose_files, [compose_dir.join("docker-compose.yml")]);
    assert!(!env.volume_exists(&bad), "a damaged archive is never used");
    assert_eq!(env.sh_in_volume(&good, "cat /v/f.txt"), "intact");
    env.docker(&["volume", "rm", &good]);
}
