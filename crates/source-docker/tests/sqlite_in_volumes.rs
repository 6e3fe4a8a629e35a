//! SQLite databases inside volumes (`sqlite_in_volumes`), against a real engine: a writer
//! commits rows 1, 2, 3, … into a database in the volume (from the host, through the volume's
//! mountpoint, as an app in a container would) while the volume is backed up; the archive,
//! extracted with the standard tools, holds a consistent database with a gap-free prefix of the
//! rows. `tar` mode archives the live files as they are, `fail` refuses, and a snapshot that
//! does not fit into the staging filesystem fails clearly.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use backup_core::{BackupContext, BackupKind, ErrorKind, HasKind, Pack, VerifyLevel};
use common::{Env, env, staging, unique, verifier};
use rusqlite::Connection;
use source_docker::{DockerSource, Error, SqliteInVolumes};

/// A plain volume (no project) removed on drop, with its directory on this host.
struct TestVolume {
    env: Env,
    name: String,
    dir: PathBuf,
}

impl TestVolume {
    fn new(env: &Env) -> TestVolume {
        let name = unique("sq");
        env.docker(&["volume", "create", &name]);
        let dir = PathBuf::from(
            env.docker(&["volume", "inspect", "-f", "{{.Mountpoint}}", &name])
                .trim(),
        );
        assert!(
            dir.is_dir(),
            "the volume's mountpoint {} is not reachable here",
            dir.display()
        );
        TestVolume {
            env: env.clone(),
            name,
            dir,
        }
    }

    fn source(&self, mode: SqliteInVolumes) -> DockerSource {
        DockerSource::new("vols")
            .volumes(vec![self.name.clone()])
            .helper_image(self.env.image.clone())
            .sqlite_in_volumes(mode)
    }

    fn artifact(&self) -> String {
        format!("docker/volumes/{}.tar.zst", self.name)
    }
}

impl Drop for TestVolume {
    fn drop(&mut self) {
        let _ = self.env.docker_ok(&["volume", "rm", "-f", &self.name]);
    }
}

/// Creates `path` with table `t(id, v)` in `journal_mode`, owned by 1000:1000, mode 0640.
fn create_db(path: &Path, journal_mode: &str, rows: u64) -> Connection {
    let c = Connection::open(path).unwrap();
    c.busy_timeout(Duration::from_secs(30)).unwrap();
    let mode: String = c
        .query_row(&format!("PRAGMA journal_mode={journal_mode}"), [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, journal_mode.to_lowercase());
    c.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB NOT NULL)")
        .unwrap();
    for id in 1..=rows {
        insert(&c, id);
    }
    std::os::unix::fs::chown(path, Some(1000), Some(1000)).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o640)).unwrap();
    c
}

/// Row `id`, in a transaction of its own, with 2 KiB of data (so pages change and grow).
fn insert(c: &Connection, id: u64) {
    c.execute(
        "INSERT INTO t(id, v) VALUES (?1, zeroblob(2048))",
        [i64::try_from(id).unwrap()],
    )
    .unwrap();
}

/// A thread committing rows `from`, `from + 1`, … until stopped; `last` is the last committed.
struct Writer {
    stop: Arc<AtomicBool>,
    last: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    fn start(c: Connection, from: u64) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let last = Arc::new(AtomicU64::new(from - 1));
        let (s, l) = (stop.clone(), last.clone());
        let thread = std::thread::spawn(move || {
            let mut id = from;
            while !s.load(Ordering::SeqCst) {
                insert(&c, id);
                l.store(id, Ordering::SeqCst);
                id += 1;
            }
        });
        Writer {
            stop,
            last,
            thread: Some(thread),
        }
    }

    fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().unwrap().join().unwrap();
        self.last.load(Ordering::SeqCst)
    }
}

/// Extracts a volume archive (`tar -xp` through `zstd -d`, the documented way) into `to`.
fn extract(archive: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "zstd -dc '{}' | tar -xp --numeric-owner -C '{}'",
            archive.display(),
            to.display()
        ))
        .status()
        .unwrap();
    assert!(status.success(), "extracting {} failed", archive.display());
}

/// `(integrity_check, count(*), max(id))` of the table `t` of `db`.
fn inspect(db: &Path) -> (String, u64, u64) {
    let c = Connection::open(db).unwrap();
    let ok: String = c.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    let (n, max): (i64, i64) = c
        .query_row("SELECT count(*), coalesce(max(id), 0) FROM t", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    (ok, n as u64, max as u64)
}

/// A writer commits rows during the backup; the extracted archive holds a consistent database
/// with a gap-free prefix of them, with the live file's owner and mode, and no companions.
async fn live_database_is_snapshotted(journal_mode: &str, want_mode: &str) {
    let env = env();
    let vol = TestVolume::new(&env);
    std::fs::create_dir(vol.dir.join("data")).unwrap();
    std::fs::write(vol.dir.join("data/notes.txt"), "not a database\n").unwrap();
    let db = vol.dir.join("data/app.db");
    let conn = create_db(&db, journal_mode, 3000);
    let writer = Writer::start(conn, 3001);
    std::thread::sleep(Duration::from_millis(300));
    let before = writer.last.load(Ordering::SeqCst);

    let t = tempfile::tempdir().unwrap();
    let pack = staging(t.path(), "p_20260101_000000", BackupKind::Full);
    let ctx = BackupContext::detached("test", BackupKind::Full);
    let out = vol.source(SqliteInVolumes::Snapshot).run(&ctx, &pack).await;
    std::thread::sleep(Duration::from_millis(300));
    let last = writer.stop();
    let out = out.unwrap_or_else(|e| panic!("{e}"));
    assert!(
        last > before + 10,
        "the writer kept committing during the backup ({before} → {last})"
    );
    assert!(out.warnings.is_empty(), "{:?}", out.warnings);

    let sealed = pack.seal().unwrap();
    let report = verifier().verify(&sealed.to_pack(), VerifyLevel::Deep);
    assert!(report.is_ok(), "{:?}", report.problems);
    let reader = Pack::open(sealed.dir()).unwrap().into_reader();
    let entry = reader.manifest().artifact(&vol.artifact()).unwrap().clone();
    let snaps = entry.meta["sqlite_snapshots"]
        .as_array()
        .expect("meta.sqlite_snapshots")
        .clone();
    assert_eq!(snaps.len(), 1, "{snaps:?}");
    let s = &snaps[0];
    assert_eq!(s["path"], "./data/app.db");
    assert_eq!(s["snapshot"], true);
    assert_eq!(s["journal_mode"], want_mode);
    assert_eq!(s["integrity_check"], "ok");

    // `tar -x` of the volume gives a database that opens as it is.
    let x = t.path().join("x");
    extract(&sealed.dir().join(vol.artifact()), &x);
    let restored = x.join("data/app.db");
    let (ok, count, max) = inspect(&restored);
    assert_eq!(ok, "ok");
    assert!(count >= 3000, "{count} rows");
    assert_eq!(max, count, "a gap-free prefix 1..=n of the writer's rows");
    assert!(count <= last);
    assert_eq!(s["table_rows"]["t"], count, "{s}");
    assert_eq!(s["bytes"], std::fs::metadata(&restored).unwrap().len());
    for c in ["-wal", "-shm", "-journal"] {
        assert!(!x.join(format!("data/app.db{c}")).exists(), "companion {c} left out");
    }
    assert_eq!(
        std::fs::read_to_string(x.join("data/notes.txt")).unwrap(),
        "not a database\n"
    );
    let m = std::fs::metadata(&restored).unwrap();
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (1000, 1000, 0o640));
    let live_mtime = std::fs::metadata(&db).unwrap().mtime();
    assert!(
        m.mtime() <= live_mtime && m.mtime() > live_mtime - 600,
        "the live file's mtime"
    );
    // The snapshots were removed from next to the staging pack.
    let left: Vec<_> = std::fs::read_dir(t.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with(".packrat-sqlite"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn wal_database_written_during_the_backup_is_archived_consistently() {
    live_database_is_snapshotted("WAL", "wal").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rollback_journal_database_written_during_the_backup_is_archived_consistently() {
    live_database_is_snapshotted("DELETE", "rollback").await;
}

/// `tar` archives the live file and its companions unchanged (unsafe for a database written
/// meanwhile) and records what it found, with `snapshot: false`.
#[tokio::test(flavor = "multi_thread")]
async fn tar_mode_archives_the_live_files_as_they_are() {
    let env = env();
    let vol = TestVolume::new(&env);
    let db = vol.dir.join("app.db");
    let conn = create_db(&db, "WAL", 0);
    // Keep the WAL: no checkpoint, the connection stays open during the backup.
    conn.execute_batch("PRAGMA wal_autocheckpoint=0").unwrap();
    for id in 1..=200 {
        insert(&conn, id);
    }
    let files = ["app.db", "app.db-wal", "app.db-shm"];
    let live: BTreeMap<&str, Vec<u8>> = files
        .iter()
        .map(|f| (*f, std::fs::read(vol.dir.join(f)).unwrap()))
        .collect();
    assert!(live["app.db-wal"].len() > 200 * 2048, "the rows are in the WAL");

    let t = tempfile::tempdir().unwrap();
    let pack = staging(t.path(), "p_20260101_000000", BackupKind::Full);
    let ctx = BackupContext::detached("test", BackupKind::Full);
    vol.source(SqliteInVolumes::Tar)
        .run(&ctx, &pack)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let sealed = pack.seal().unwrap();
    let reader = Pack::open(sealed.dir()).unwrap().into_reader();
    let entry = reader.manifest().artifact(&vol.artifact()).unwrap();
    assert_eq!(
        entry.meta["sqlite_snapshots"],
        serde_json::json!([{"path": "./app.db", "bytes": live["app.db"].len(), "snapshot": false}])
    );
    let x = t.path().join("x");
    extract(&sealed.dir().join(vol.artifact()), &x);
    for f in files {
        assert_eq!(std::fs::read(x.join(f)).unwrap(), live[f], "{f} archived unchanged");
    }
    drop(conn);
}

/// `fail` refuses, naming the database and the options.
#[tokio::test(flavor = "multi_thread")]
async fn fail_mode_names_the_database() {
    let env = env();
    let vol = TestVolume::new(&env);
    std::fs::create_dir(vol.dir.join("db")).unwrap();
    drop(create_db(&vol.dir.join("db/shop.sqlite"), "WAL", 10));
    let t = tempfile::tempdir().unwrap();
    let pack = staging(t.path(), "p_20260101_000000", BackupKind::Full);
    let ctx = BackupContext::detached("test", BackupKind::Full);
    let e = vol.source(SqliteInVolumes::Fail).run(&ctx, &pack).await.unwrap_err();
    assert!(matches!(e, Error::SqliteInVolume { .. }), "{e:?}");
    assert_eq!(e.kind(), ErrorKind::Config);
    let m = e.to_string();
    for want in [
        "`./db/shop.sqlite`",
        vol.name.as_str(),
        "sqlite_in_volumes = \"snapshot\"",
        "stop_during_backup = true",
    ] {
        assert!(m.contains(want), "{want} missing from: {m}");
    }
}

/// A tmpfs mounted for the test, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: PathBuf, size: &str) -> Tmpfs {
        std::fs::create_dir_all(&at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&at)
            .status()
            .unwrap()
            .success();
        assert!(
            ok,
            "mounting a tmpfs at {} failed (the test runs as root)",
            at.display()
        );
        Tmpfs(at)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// A database larger than the free space of the staging filesystem fails before the copy,
/// naming the file, the sizes and the fix.
#[tokio::test(flavor = "multi_thread")]
async fn database_larger_than_the_free_staging_space_fails_clearly() {
    let env = env();
    let vol = TestVolume::new(&env);
    drop(create_db(&vol.dir.join("big.db"), "WAL", 1500)); // ~3.5 MB
    let t = tempfile::tempdir().unwrap();
    let small = Tmpfs::mount(t.path().join("small"), "1m");
    let pack = staging(&small.0, "p_20260101_000000", BackupKind::Full);
    let ctx = BackupContext::detached("test", BackupKind::Full);
    let e = vol
        .source(SqliteInVolumes::Snapshot)
        .run(&ctx, &pack)
        .await
        .unwrap_err();
    let Error::SqliteNoSpace { needed, available, .. } = &e else {
        panic!("{e:?}");
    };
    assert!(*needed > 3_000_000 && *available < 1_100_000, "{e}");
    assert_eq!(e.kind(), ErrorKind::DiskFull);
    let m = e.to_string();
    for want in [
        "`./big.db`",
        &needed.to_string(),
        &available.to_string(),
        small.0.to_str().unwrap(),
        "staging directory",
    ] {
        assert!(m.contains(want), "{want} missing from: {m}");
    }
    drop(pack);
}

/// With `stop_during_backup` the files are quiet: archived as they are (no snapshot), and the
/// manifest records the database with `snapshot: false`.
#[tokio::test(flavor = "multi_thread")]
async fn with_the_app_stopped_databases_are_archived_as_they_are_and_recorded() {
    let env = env();
    let p = common::Project::up(
        &env,
        "version: \"2.4\"\nservices:\n  app:\n    image: IMAGE\n    init: true\n    command: [\"sleep\", \"1000000\"]\n    \
         volumes:\n      - data:/data\nvolumes:\n  data:\n",
    );
    let volume = p.volume("data");
    let dir = PathBuf::from(
        env.docker(&["volume", "inspect", "-f", "{{.Mountpoint}}", &volume])
            .trim(),
    );
    drop(create_db(&dir.join("app.db"), "DELETE", 50));
    let live = std::fs::read(dir.join("app.db")).unwrap();

    let t = tempfile::tempdir().unwrap();
    let pack = staging(t.path(), "p_20260101_000000", BackupKind::Full);
    let ctx = BackupContext::detached("test", BackupKind::Full);
    let out = DockerSource::new("stack")
        .compose_file(&p.file)
        .stop_during_backup(true)
        .run(&ctx, &pack)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.stopped.len(), 1);
    assert_eq!(env.state(&p.container("app")), "running");
    let sealed = pack.seal().unwrap();
    let reader = Pack::open(sealed.dir()).unwrap().into_reader();
    let rel = format!("docker/volumes/{volume}.tar.zst");
    let entry = reader.manifest().artifact(&rel).unwrap();
    assert_eq!(
        entry.meta["sqlite_snapshots"],
        serde_json::json!([{"path": "./app.db", "bytes": live.len(), "snapshot": false}])
    );
    let x = t.path().join("x");
    extract(&sealed.dir().join(&rel), &x);
    assert_eq!(std::fs::read(x.join("app.db")).unwrap(), live);
}

/// A database with two names (a hard link) is snapshotted once; the archive holds the copy
/// under the first name and the link to it, as the engine wrote them.
#[tokio::test(flavor = "multi_thread")]
async fn a_hard_linked_database_is_snapshotted_once() {
    let env = env();
    let vol = TestVolume::new(&env);
    drop(create_db(&vol.dir.join("a.db"), "DELETE", 20));
    std::fs::hard_link(vol.dir.join("a.db"), vol.dir.join("b.db")).unwrap();
    let t = tempfile::tempdir().unwrap();
    let pack = staging(t.path(), "p_20260101_000000", BackupKind::Full);
    let ctx = BackupContext::detached("test", BackupKind::Full);
    vol.source(SqliteInVolumes::Snapshot)
        .run(&ctx, &pack)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let sealed = pack.seal().unwrap();
    let reader = Pack::open(sealed.dir()).unwrap().into_reader();
    let entry = reader.manifest().artifact(&vol.artifact()).unwrap();
    let snaps = entry.meta["sqlite_snapshots"].as_array().unwrap();
    assert_eq!(snaps.len(), 1, "{snaps:?}");
    assert_eq!(snaps[0]["path"], "./a.db");
    assert_eq!(snaps[0]["hard_links"], serde_json::json!(["./b.db"]));
    let x = t.path().join("x");
    extract(&sealed.dir().join(vol.artifact()), &x);
    assert_eq!(inspect(&x.join("b.db")), ("ok".to_string(), 20, 20));
    let (a, b) = (
        std::fs::metadata(x.join("a.db")).unwrap(),
        std::fs::metadata(x.join("b.db")).unwrap(),
    );
    assert_eq!(a.ino(), b.ino(), "still one file with two names");
}
