//! Backup → remove the volumes → restore, against a real engine and a real compose project;
//! and the archives extract with the standard tools.

mod common;

use std::fs;
use std::process::Command;

use backup_core::{BackupContext, BackupKind, Pack, Source, VerifyLevel};
use common::{Project, env, staging, verifier};
use source_docker::{DockerSource, RestoreOptions};

const COMPOSE: &str = r#"version: "2.4"
services:
  app:
    image: IMAGE
    init: true
    command: ["sleep", "1000000"]
    volumes:
      - data:/v
      - config:/config
  worker:
    image: IMAGE
    init: true
    command: ["sleep", "1000000"]
    volumes:
      - data:/data
volumes:
  data:
  config:
"#;

#[tokio::test(flavor = "multi_thread")]
async fn volumes_compose_files_and_images_round_trip() {
    let env = env();
    let p = Project::up(&env, COMPOSE);
    p.exec("app", common::POPULATE);
    p.exec(
        "app",
        "mkdir /config/conf.d && echo 'key=value' > /config/conf.d/app.conf && chmod 0640 /config/conf.d/app.conf",
    );
    let data = p.volume("data");
    let config = p.volume("config");
    let before_data = env.fingerprint(&data);
    let before_config = env.fingerprint(&config);
    assert!(before_data.contains("file with spaces ä ö ✓.txt|4755"), "{before_data}");
    assert!(before_data.contains("link-abs' -> '/etc/passwd'"), "{before_data}");
    assert!(before_data.contains("./docs/hello.txt|600|1000|1000"), "{before_data}");
    assert!(before_data.contains("./empty|1777"), "{before_data}");

    // Backup (full, with images), seal, deep-verify.
    let t = tempfile::tempdir().unwrap();
    let source = DockerSource::new("stack").compose_file(&p.file).include_images(true);
    let pack = staging(t.path(), "p_20260101_000000", BackupKind::Full);
    let ctx = BackupContext::detached("test", BackupKind::Full);
    source
        .backup(&ctx, &pack)
        .await
        .unwrap_or_else(|e| panic!("{}", e.chain()));
    let sealed = pack.seal().unwrap();
    let report = verifier().verify(&sealed.to_pack(), VerifyLevel::Deep);
    assert!(report.is_ok(), "{:?}", report.problems);
    let pack = Pack::open(sealed.dir()).unwrap().into_reader();
    let paths: Vec<&str> = pack.manifest().artifacts.iter().map(|a| a.path.as_str()).collect();
    let name = &p.name;
    for want in [
        format!("docker/compose/{name}/docker-compose.yml"),
        format!("docker/compose/{name}/.env"),
        format!("docker/volumes/{data}.tar.zst"),
        format!("docker/volumes/{config}.tar.zst"),
        "docker/images/packrat-test_busybox_latest.tar.zst".to_string(),
    ] {
        assert!(paths.contains(&want.as_str()), "{want} missing from {paths:?}");
    }
    let vol = pack
        .manifest()
        .artifact(&format!("docker/volumes/{data}.tar.zst"))
        .unwrap();
    assert_eq!(vol.kind, "docker-volume");
    // One archive entry per path: the stat lines (checksum lines are hex).
    let paths_in_volume = before_data.lines().filter(|l| l.starts_with('.')).count() as u64;
    assert_eq!(vol.files, Some(paths_in_volume));
    assert!(
        vol.meta["content_bytes"].as_u64().unwrap() > 3_000_000,
        "{:?}",
        vol.meta
    );
    assert_eq!(vol.meta["labels"]["com.docker.compose.project"], name.as_str());

    // The app is gone with its volumes...
    p.compose(&["down", "-v", "--timeout", "1"]);
    assert!(!env.volume_exists(&data) && !env.volume_exists(&config));

    // ...and comes back: images, volumes, compose files into a directory named after the project.
    let restored_dir = t.path().join("restored").join(name);
    let opts = RestoreOptions {
        volumes: Some(Vec::new()),
        compose_dir: Some(restored_dir.clone()),
        images: true,
        ..RestoreOptions::default()
    };
    let r = source_docker::restore(&pack, Some("stack"), &opts)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.volumes.len(), 2);
    assert!(r.volumes.iter().all(|v| v.created));
    assert_eq!(r.images, std::slice::from_ref(&env.image));
    assert_eq!(env.fingerprint(&data), before_data, "data volume differs after restore");
    assert_eq!(
        env.fingerprint(&config),
        before_config,
        "config volume differs after restore"
    );
    assert_eq!(
        fs::read_to_string(restored_dir.join("docker-compose.yml")).unwrap(),
        fs::read_to_string(&p.file).unwrap()
    );
    assert_eq!(
        fs::read_to_string(restored_dir.join(".env")).unwrap(),
        "APP_GREETING=hello from .env\n"
    );

    // Compose adopts the restored volumes (same names, same labels) from the restored files.
    let restored_file = restored_dir.join("docker-compose.yml");
    common::compose_in(&env, &restored_file, name, &["up", "-d"]);
    assert_eq!(p.exec("app", "cat /v/docs/hello.txt"), "hello\n");

    // A second restore refuses to touch non-empty volumes, and overwrite needs the app down.
    let again = RestoreOptions {
        volumes: Some(vec![data.clone()]),
        ..RestoreOptions::default()
    };
    let e = source_docker::restore(&pack, None, &again)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("not empty") && e.contains("--overwrite"), "{e}");
    let over = RestoreOptions {
        overwrite: true,
        ..again.clone()
    };
    let e = source_docker::restore(&pack, None, &over)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("in use"), "{e}");
    p.exec("app", "echo changed > /v/docs/hello.txt");
    common::compose_in(&env, &restored_file, name, &["down", "--timeout", "1"]);
    let r = source_docker::restore(&pack, None, &over).await.unwrap();
    assert!(r.volumes[0].created);
    assert_eq!(env.fingerprint(&data), before_data);
    // Existing compose files are not replaced without overwrite.
    let e = source_docker::restore(&pack, None, &opts)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("exists") && e.contains("--overwrite"), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn volume_archive_extracts_with_standard_tar_and_zstd() {
    let env = env();
    let p = Project::up(&env, COMPOSE);
    p.exec("app", common::POPULATE);
    let data = p.volume("data");
    let t = tempfile::tempdir().unwrap();
    let source = DockerSource::new("stack")
        .compose_file(&p.file)
        .volumes(vec![data.clone()]);
    let pack = staging(t.path(), "p_20260101_000000", BackupKind::Full);
    source
        .backup(&BackupContext::detached("test", BackupKind::Full), &pack)
        .await
        .unwrap_or_else(|e| panic!("{}", e.chain()));
    let sealed = pack.seal().unwrap();
    assert_eq!(
        sealed
            .manifest()
            .artifacts
            .iter()
            .filter(|a| a.kind == "docker-volume")
            .count(),
        1,
        "only the listed volume"
    );
    let archive = sealed.dir().join(format!("docker/volumes/{data}.tar.zst"));
    let host_md5 = |path: &std::path::Path| {
        let out = Command::new("md5sum").arg(path).output().unwrap();
        String::from_utf8_lossy(&out.stdout)[..32].to_string()
    };
    let blob_md5 = p.exec("app", "md5sum /v/blob.bin | cut -c1-32").trim().to_string();

    // GNU tar with zstd support.
    let a = t.path().join("tar-zstd");
    fs::create_dir(&a).unwrap();
    let st = Command::new("tar")
        .arg("--zstd")
        .arg("-xf")
        .arg(&archive)
        .arg("-C")
        .arg(&a)
        .status()
        .unwrap();
    assert!(st.success());
    // zstd -d | tar -x
    let b = t.path().join("zstd-pipe");
    fs::create_dir(&b).unwrap();
    let st = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "zstd -d -c '{}' | tar -x -C '{}'",
            archive.display(),
            b.display()
        ))
        .status()
        .unwrap();
    assert!(st.success());
    for dir in [&a, &b] {
        assert!(
            !dir.join("packrat_v").exists(),
            "entries must not carry the mount directory"
        );
        assert_eq!(fs::read_to_string(dir.join("docs/hello.txt")).unwrap(), "hello\n");
        assert_eq!(
            fs::read_link(dir.join("link-rel")).unwrap().to_str(),
            Some("docs/hello.txt")
        );
        assert_eq!(
            fs::read_to_string(dir.join("file with spaces ä ö ✓.txt")).unwrap(),
            "spaced\n"
        );
        assert!(dir.join("empty").is_dir());
        assert_eq!(host_md5(&dir.join("blob.bin")), blob_md5);
        assert_eq!(host_md5(&dir.join("hardlink.bin")), blob_md5);
        #[cfg(unix)]
        {
            use std::os::unix::fs::{MetadataExt, PermissionsExt};
            let m = fs::metadata(dir.join("blob.bin")).unwrap();
            assert_eq!(m.nlink(), 2, "hard link kept");
            let m = fs::metadata(dir.join("file with spaces ä ö ✓.txt")).unwrap();
            assert_eq!(m.permissions().mode() & 0o7777, 0o4755);
            let m = fs::metadata(dir.join("docs/hello.txt")).unwrap();
            assert_eq!((m.uid(), m.gid(), m.permissions().mode() & 0o777), (1000, 1000, 0o600));
        }
    }
}
