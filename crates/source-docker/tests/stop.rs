//! Stop-during-backup: the running containers are stopped while the volumes are archived and
//! exactly those run again afterwards — after success, after an injected failure half-way, and
//! after the backup future is dropped (cancelled). Stopped containers stay stopped.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backup_core::{BackupKind, Source};
use common::{Env, Project, ctx_with_hook, env, staging};
use source_docker::DockerSource;

const COMPOSE: &str = r#"version: "2.4"
services:
  db:
    image: IMAGE
    init: true
    command: ["sleep", "1000000"]
    volumes:
      - data:/v
  web:
    image: IMAGE
    init: true
    command: ["sleep", "1000000"]
    volumes:
      - data:/data
    depends_on: [db]
  batch:
    image: IMAGE
    init: true
    command: ["sleep", "1000000"]
    volumes:
      - data:/data
volumes:
  data:
"#;

struct Setup {
    env: Env,
    p: Project,
    db: String,
    web: String,
    batch: String,
    /// A second project volume, not used by any container: removable mid-backup.
    extra: String,
}

fn setup() -> Setup {
    let env = env();
    let p = Project::up(&env, COMPOSE);
    p.exec("db", "echo hi > /v/file");
    p.compose(&["stop", "-t", "1", "batch"]);
    let extra = p.volume("zz_extra");
    env.docker(&[
        "volume",
        "create",
        "--label",
        &format!("com.docker.compose.project={}", p.name),
        &extra,
    ]);
    env.sh_in_volume(&extra, "echo x > /v/x");
    Setup {
        db: p.container("db"),
        web: p.container("web"),
        batch: p.container("batch"),
        env,
        p,
        extra,
    }
}

impl Setup {
    fn source(&self) -> DockerSource {
        DockerSource::new("stack")
            .compose_file(&self.p.file)
            .stop_during_backup(true)
            .stop_timeout(Duration::from_secs(5))
    }

    #[track_caller]
    fn assert_states(&self, when: &str) {
        assert_eq!(self.env.state(&self.db), "running", "db {when}");
        assert_eq!(self.env.state(&self.web), "running", "web {when}");
        assert_eq!(self.env.state(&self.batch), "exited", "batch (stopped before) {when}");
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = self.env.docker_ok(&["volume", "rm", "-f", &self.extra]);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn running_containers_are_stopped_during_the_archive_and_started_again() {
    let s = setup();
    s.assert_states("before");
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let (env, db, web, seen2) = (s.env.clone(), s.db.clone(), s.web.clone(), seen.clone());
    let ctx = ctx_with_hook(move |stage| {
        if stage.starts_with("archiving volume") {
            seen2
                .lock()
                .unwrap()
                .push(format!("{} {}", env.state(&db), env.state(&web)));
        }
    });
    let t = tempfile::tempdir().unwrap();
    let pack = staging(t.path(), "p_20260101_000000", BackupKind::Full);
    let started = Instant::now();
    s.source()
        .backup(&ctx, &pack)
        .await
        .unwrap_or_else(|e| panic!("{}", e.chain()));
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "init: true makes stopping quick"
    );
    assert_eq!(
        *seen.lock().unwrap(),
        ["exited exited", "exited exited"],
        "stopped while archiving both volumes"
    );
    s.assert_states("after the backup");
    pack.seal().unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn containers_run_again_after_a_volume_vanishes_mid_backup() {
    let s = setup();
    let (env, extra, data) = (s.env.clone(), s.extra.clone(), s.p.volume("data"));
    // Inject the failure: while the first volume is archived, the second one is removed.
    let ctx = ctx_with_hook(move |stage| {
        if stage == format!("archiving volume {data}") {
            env.docker(&["volume", "rm", &extra]);
        }
    });
    let t = tempfile::tempdir().unwrap();
    let pack = staging(t.path(), "p_20260101_000000", BackupKind::Full);
    let e = s.source().backup(&ctx, &pack).await.unwrap_err().chain();
    assert!(e.contains(&format!("volume `{}` vanished", s.extra)), "{e}");
    s.assert_states("after the failed backup");
    assert!(
        pack.artifacts().iter().all(|a| !a.path.contains(&s.extra)),
        "nothing was written for the vanished volume"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn containers_run_again_when_the_backup_is_cancelled() {
    let s = setup();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let tx = Mutex::new(Some(tx));
    let ctx = ctx_with_hook(move |stage| {
        if stage.starts_with("archiving volume")
            && let Some(tx) = tx.lock().unwrap().take()
        {
            let _ = tx.send(());
            // Hold the backup here so that it is surely dropped mid-way.
            std::thread::sleep(Duration::from_millis(500));
        }
    });
    let t = tempfile::tempdir().unwrap();
    let pack = staging(t.path(), "p_20260101_000000", BackupKind::Full);
    let source = s.source();
    let backup = source.backup(&ctx, &pack);
    tokio::select! {
        r = backup => panic!("the backup should have been cancelled, it ended with {r:?}"),
        _ = rx => {}
    }
    // The backup future is dropped here; the guard has started the containers before returning.
    s.assert_states("right after the cancelled backup");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_stop_during_backup_nothing_is_stopped() {
    let s = setup();
    let (env, db) = (s.env.clone(), s.db.clone());
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen2 = seen.clone();
    let ctx = ctx_with_hook(move |stage| {
        if stage.starts_with("archiving volume") {
            seen2.lock().unwrap().push(env.state(&db));
        }
    });
    let t = tempfile::tempdir().unwrap();
    let pack = staging(t.path(), "p_20260101_000000", BackupKind::Full);
    s.source()
        .stop_during_backup(false)
        .backup(&ctx, &pack)
        .await
        .unwrap_or_else(|e| panic!("{}", e.chain()));
    assert_eq!(*seen.lock().unwrap(), ["running", "running"]);
    s.assert_states("after");
}
