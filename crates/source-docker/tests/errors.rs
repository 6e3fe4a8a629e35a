//! Failures say what failed and what to do; and the conformance kit passes.

mod common;

use std::time::Duration;

use backup_core::{BackupContext, BackupKind, Source};
use common::{Project, env, staging, unique, verifier};
use source_docker::DockerSource;

const COMPOSE: &str = r#"version: "2.4"
services:
  app:
    image: IMAGE
    init: true
    command: ["sleep", "1000000"]
    volumes:
      - data:/v
volumes:
  data:
"#;

async fn backup_err(source: &DockerSource) -> String {
    let t = tempfile::tempdir().unwrap();
    let pack = staging(t.path(), "p_20260101_000000", BackupKind::Full);
    source
        .backup(&BackupContext::detached("test", BackupKind::Full), &pack)
        .await
        .unwrap_err()
        .chain()
}

#[tokio::test(flavor = "multi_thread")]
async fn docker_unavailable_names_the_socket_and_what_to_check() {
    let _ = env();
    let source = DockerSource::new("stack")
        .project("x")
        .docker_host(Some("unix:///nonexistent/packrat/docker.sock"));
    let e = backup_err(&source).await;
    assert!(e.contains("source `stack`"), "{e}");
    assert!(
        e.contains("/nonexistent/packrat/docker.sock") && e.contains("does not exist"),
        "{e}"
    );
    assert!(e.contains("dockerd") && e.contains("docker_host"), "{e}");
    // A socket that exists but is not Docker's.
    let t = tempfile::tempdir().unwrap();
    let path = t.path().join("not-docker.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    drop(_listener);
    let source = source.docker_host(Some(&format!("unix://{}", path.display())));
    let e = backup_err(&source).await;
    assert!(
        e.contains("Docker is unavailable at unix://") && e.contains("not-docker.sock"),
        "{e}"
    );
    assert!(source.check().await.is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_compose_file_and_no_volumes_are_explained() {
    let env = env();
    let t = tempfile::tempdir().unwrap();
    let missing = t.path().join("nowhere").join("docker-compose.yml");
    let e = backup_err(&DockerSource::new("stack").compose_file(&missing)).await;
    assert!(
        e.contains("compose file") && e.contains("nowhere/docker-compose.yml") && e.contains("not found"),
        "{e}"
    );

    // A compose file whose project is not deployed: no labelled volumes.
    let dir = t.path().join("notdeployed");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("docker-compose.yml"), COMPOSE.replace("IMAGE", &env.image)).unwrap();
    let source = DockerSource::new("stack").compose_file(dir.join("docker-compose.yml"));
    let e = backup_err(&source).await;
    assert!(
        e.contains("no volumes found for the label `com.docker.compose.project=notdeployed`"),
        "{e}"
    );
    assert!(e.contains("docker-compose up") && e.contains("volume_prefix"), "{e}");

    let e = backup_err(&DockerSource::new("stack").volume_prefix(unique("nosuchprefix"))).await;
    assert!(e.contains("no volumes found for the name prefix `nosuchprefix"), "{e}");

    let e = backup_err(&DockerSource::new("stack").volumes(vec![unique("nosuchvolume")])).await;
    assert!(e.contains("nosuchvolume") && e.contains("does not exist"), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_helper_image_names_it_and_how_to_provide_one() {
    let env = env();
    let p = Project::up(&env, COMPOSE);
    let source = DockerSource::new("stack")
        .compose_file(&p.file)
        .stop_during_backup(true)
        .helper_image("packrat-test/no-such-image:1");
    let e = backup_err(&source).await;
    assert!(e.contains("helper image `packrat-test/no-such-image:1`"), "{e}");
    assert!(e.contains("docker load") && e.contains("helper_image"), "{e}");
    assert_eq!(env.state(&p.container("app")), "running", "nothing was stopped");

    // Volumes by explicit list without a project: no container to borrow an image from.
    let e = backup_err(&DockerSource::new("vols").volumes(vec![p.volume("data")])).await;
    assert!(e.contains("set `helper_image`"), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn conformance() {
    let env = env();
    let p = Project::up(&env, COMPOSE);
    p.exec("app", "echo hello > /v/a && mkdir /v/d && ln -s a /v/l");
    let source = DockerSource::new("stack")
        .compose_file(&p.file)
        .stop_during_backup(true)
        .stop_timeout(Duration::from_secs(5));
    backup_core::conformance::check_source(&source, &verifier()).await;
    assert_eq!(env.state(&p.container("app")), "running");
    let volumes = source.check_ready().await.unwrap();
    assert_eq!(volumes, [p.volume("data")]);
}
