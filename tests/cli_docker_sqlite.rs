//! End to end: the `packrat` binary backs up a Docker volume holding a SQLite database that a
//! writer keeps committing to (rows 1, 2, 3, …, each its own transaction, written from the host
//! into the volume's mountpoint as the app in a container would). The pack verifies deep, its
//! manifest lists the snapshot, and the volume archive extracted with `zstd -d | tar -x` holds a
//! consistent database with a gap-free prefix of the rows. With `sqlite_in_volumes = "fail"` the
//! run fails naming the database.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use packrat_e2e::Env;

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: this test needs a real Docker engine; start it with `cargo xtask ci` or set it")
    })
}

/// A volume on the test engine, removed on drop.
struct Volume {
    cli: String,
    host: String,
    name: String,
    dir: PathBuf,
}

impl Volume {
    fn new(name: String) -> Volume {
        let cli = var("PACKRAT_TEST_DOCKER_CLI");
        let host = var("PACKRAT_TEST_DOCKER_HOST");
        let docker = |args: &[&str]| {
            let out = Command::new(&cli).args(["-H", &host]).args(args).output().unwrap();
            assert!(
                out.status.success(),
                "docker {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        docker(&["volume", "create", &name]);
        let dir = PathBuf::from(docker(&["volume", "inspect", "-f", "{{.Mountpoint}}", &name]));
        assert!(dir.is_dir(), "{} is not reachable", dir.display());
        Volume { cli, host, name, dir }
    }
}

impl Drop for Volume {
    fn drop(&mut self) {
        let _ = Command::new(&self.cli)
            .args(["-H", &self.host, "volume", "rm", "-f", &self.name])
            .output();
    }
}

fn config(env: &Env, volume: &str, mode: &str) {
    env.write_config(&format!(
        r#"state_dir = "state"

[sources.vols]
type = "docker"
volumes = ["{volume}"]
helper_image = "{image}"
sqlite_in_volumes = "{mode}"

[sinks.local]
type = "local"
path = "{packs}"
min_free_mb = 1

[plans.nightly]
sources = ["vols"]
sinks = ["local"]
"#,
        image = var("PACKRAT_TEST_DOCKER_IMAGE"),
        packs = env.path("packs").display(),
    ));
}

fn open_db(path: &Path) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(path).unwrap();
    c.busy_timeout(Duration::from_secs(30)).unwrap();
    c.pragma_update(None, "journal_mode", "wal").unwrap();
    c.execute_batch("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v BLOB NOT NULL)")
        .unwrap();
    c
}

fn insert(c: &rusqlite::Connection, id: u64) {
    c.execute("INSERT INTO t(id, v) VALUES (?1, zeroblob(1024))", [id as i64])
        .unwrap();
}

#[test]
fn packrat_run_archives_a_live_database_in_a_volume_consistently() {
    let vol = Volume::new(format!("e2esq{}", std::process::id()));
    let env = Env::new();
    config(&env, &vol.name, "snapshot");
    env.run(&["config", "check"]).ok();
    let c = open_db(&vol.dir.join("app.db"));
    for id in 1..=2000 {
        insert(&c, id);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let last = Arc::new(AtomicU64::new(2000));
    let writer = {
        let (stop, last) = (stop.clone(), last.clone());
        std::thread::spawn(move || {
            let mut id = 2001;
            while !stop.load(Ordering::SeqCst) {
                insert(&c, id);
                last.store(id, Ordering::SeqCst);
                id += 1;
            }
        })
    };
    let before = last.load(Ordering::SeqCst);
    let run = env.run(&["run", "nightly", "--json"]);
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    let run = run.ok().json();
    assert_eq!(run["job"]["status"], "completed", "{run}");
    assert!(
        last.load(Ordering::SeqCst) > before,
        "the writer committed during the run"
    );
    env.run(&["verify", "--latest", "nightly", "--deep"]).ok();

    let list = env.run(&["list", "nightly", "--json"]).ok().json();
    let pack = PathBuf::from(list[0]["location"].as_str().expect("pack path"));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(pack.join("manifest.json")).unwrap()).unwrap();
    let rel = format!("docker/volumes/{}.tar.zst", vol.name);
    let entry = manifest["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["path"] == rel.as_str())
        .unwrap_or_else(|| panic!("{rel} missing: {manifest}"));
    let snap = &entry["meta"]["sqlite_snapshots"][0];
    assert_eq!(snap["path"], "./app.db", "{entry}");
    assert_eq!(snap["snapshot"], true);
    assert_eq!(snap["journal_mode"], "wal");

    let x = env.path("x");
    std::fs::create_dir(&x).unwrap();
    let ok = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "zstd -dc '{}' | tar -xp -C '{}'",
            pack.join(&rel).display(),
            x.display()
        ))
        .status()
        .unwrap()
        .success();
    assert!(ok, "extract");
    assert!(!x.join("app.db-wal").exists() && !x.join("app.db-shm").exists());
    let db = rusqlite::Connection::open(x.join("app.db")).unwrap();
    let check: String = db.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(check, "ok");
    let (n, max): (i64, i64) = db
        .query_row("SELECT count(*), max(id) FROM t", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap();
    assert!(n >= 2000, "{n}");
    assert_eq!(n, max, "a gap-free prefix of the writer's rows");
    assert_eq!(snap["table_rows"]["t"], n);
}

#[test]
fn fail_mode_fails_the_run_naming_the_database() {
    let vol = Volume::new(format!("e2esqf{}", std::process::id()));
    std::fs::create_dir(vol.dir.join("state")).unwrap();
    drop(open_db(&vol.dir.join("state/app.sqlite3")));
    let env = Env::new();
    config(&env, &vol.name, "fail");
    let run = env.run(&["run", "nightly"]);
    assert_ne!(run.code, 0, "{}", run.all());
    let all = run.all();
    assert!(all.contains("./state/app.sqlite3"), "{all}");
    assert!(all.contains("sqlite_in_volumes"), "{all}");
}
