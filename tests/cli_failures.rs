//! Bad input gets a clear error and changes nothing; crashes leave nothing half-written; secrets
//! never show.

use std::process::Command;
use std::time::{Duration, Instant};

use packrat_e2e::{Env, seed_db, subdirs};

#[test]
fn missing_config_file_is_a_usage_error() {
    let env = Env::new();
    let r = env.run(&["status"]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(
        r.stderr.contains("packrat.toml not found") && r.stderr.contains("PACKRAT_CONFIG"),
        "{}",
        r.stderr
    );
    let r = Command::new(packrat_e2e::packrat_bin())
        .arg("status")
        .env_remove("PACKRAT_CONFIG")
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&r.stderr).contains("--config"));
}

#[test]
fn unknown_key_names_file_line_and_key_and_changes_nothing() {
    let env = Env::new();
    let db = env.path("app.db");
    seed_db(&db, 10, true);
    env.standard_config(&db, &env.path("packs"), "compresss = true");
    for args in [&["config", "check"][..], &["run", "nightly"][..]] {
        let r = env.run(args);
        assert_eq!(r.code, 2, "{}", r.all());
        assert!(
            r.stderr
                .contains("packrat.toml, line 7, key `sources.app_db.compresss`"),
            "{}",
            r.stderr
        );
        assert!(r.stderr.contains("expected one of"), "{}", r.stderr);
    }
    assert!(!env.path("state").exists(), "a bad config must not create state");
    assert!(!env.path("packs").exists());
    let r = env.run(&["run", "weekly"]);
    assert_eq!(r.code, 2);
}

#[test]
fn missing_source_file_fails_the_job_clearly_and_creates_nothing() {
    let env = Env::new();
    let db = env.path("nope/app.db");
    env.standard_config(&db, &env.path("packs"), "");
    let r = env.run(&["run", "nightly"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.all().contains("not found") && r.all().contains("nope/app.db"),
        "{}",
        r.all()
    );
    assert!(!db.exists(), "the missing database must not be created");
    assert!(subdirs(&env.path("packs/nightly")).is_empty());
    assert!(
        subdirs(&env.path("packs/.packrat-staging")).is_empty(),
        "staging must be removed"
    );
    let jobs = env.run(&["jobs", "--json"]).ok().json();
    assert_eq!(jobs[0]["status"], "failed");
    assert!(jobs[0]["detail"].as_str().unwrap().contains("not found"));
}

#[test]
fn unwritable_target_directory_fails_clearly() {
    let env = Env::new();
    let db = env.path("app.db");
    seed_db(&db, 10, true);
    // A path below a regular file can never be created, even by root.
    std::fs::write(env.path("blocker"), b"a file").unwrap();
    env.standard_config(&db, &env.path("blocker/packs"), "");
    let r = env.run(&["run", "nightly"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.all().contains("blocker/packs"), "{}", r.all());
    assert_eq!(std::fs::read(env.path("blocker")).unwrap(), b"a file");
}

#[cfg(target_os = "linux")]
struct Mount(std::path::PathBuf);

#[cfg(target_os = "linux")]
impl Mount {
    fn tmpfs(dir: &std::path::Path, opts: &str) -> Mount {
        std::fs::create_dir_all(dir).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", opts, "tmpfs"])
            .arg(dir)
            .status()
            .unwrap();
        assert!(st.success(), "mounting a tmpfs failed (the tests need root on Linux)");
        Mount(dir.to_path_buf())
    }
}

#[cfg(target_os = "linux")]
impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[cfg(target_os = "linux")]
#[test]
fn read_only_target_fails_clearly() {
    let env = Env::new();
    let db = env.path("app.db");
    seed_db(&db, 10, true);
    let _m = Mount::tmpfs(&env.path("ro"), "ro,size=64m");
    env.standard_config(&db, &env.path("ro/packs"), "");
    let r = env.run(&["run", "nightly"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.all().contains("ro/packs") && r.all().to_lowercase().contains("read-only"),
        "{}",
        r.all()
    );
}

#[cfg(target_os = "linux")]
#[test]
fn disk_full_fails_clearly_and_leaves_nothing() {
    let env = Env::new();
    let db = env.path("app.db");
    seed_db(&db, 40_000, true); // a few MB, more than the 2 MiB tmpfs
    let _m = Mount::tmpfs(&env.path("small"), "size=2m");
    env.standard_config(&db, &env.path("small/packs"), "");
    let r = env.run(&["run", "nightly"]);
    assert_eq!(r.code, 1, "{}", r.all());
    let all = r.all().to_lowercase();
    assert!(all.contains("space"), "{}", r.all());
    assert!(subdirs(&env.path("small/packs/nightly")).is_empty());
    assert!(
        subdirs(&env.path("small/packs/.packrat-staging")).is_empty(),
        "staging must be removed"
    );
}

/// Fills the filesystem of `dir` with `dir/filler` until a write fails.
#[cfg(target_os = "linux")]
fn fill(dir: &std::path::Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(dir.join("filler")).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    loop {
        if let Err(e) = f.write_all(&chunk).and_then(|_| f.sync_all()) {
            assert_eq!(e.raw_os_error(), Some(28), "{e}");
            break;
        }
    }
}

#[cfg(target_os = "linux")]
#[test]
fn a_full_state_store_filesystem_is_named_with_what_to_do() {
    let env = Env::new();
    let db = env.path("app.db");
    seed_db(&db, 10, true);
    let _m = Mount::tmpfs(&env.path("small"), "size=1m");
    std::fs::create_dir(env.path("small/state")).unwrap();
    env.write_config(&format!(
        "state_dir = \"small/state\"\n[sources.app_db]\ntype = \"sqlite\"\npath = \"{}\"\n\
         [sinks.local]\ntype = \"local\"\npath = \"packs\"\nmin_free_mb = 1\n\
         [plans.nightly]\nsources = [\"app_db\"]\nsinks = [\"local\"]\n",
        db.display()
    ));
    let store = env.path("small/state/state.db");
    let want = format!(
        "no space left for the state store at {}; free space on that filesystem or move state_dir",
        store.display()
    );
    // A new store on a full filesystem, then an existing one.
    fill(&env.path("small"));
    for round in ["new store", "existing store"] {
        let packs = subdirs(&env.path("packs/nightly"));
        let r = env.run(&["run", "nightly"]);
        assert_eq!(r.code, 1, "{round}: {}", r.all());
        assert!(r.stderr.contains(&want), "{round}: {}", r.stderr);
        assert!(!r.stderr.contains("Error code"), "{round}: {}", r.stderr);
        assert_eq!(
            subdirs(&env.path("packs/nightly")),
            packs,
            "{round}: no pack without a job record"
        );
        std::fs::remove_file(env.path("small/filler")).unwrap();
        env.run(&["run", "nightly"]).ok();
        fill(&env.path("small"));
    }
    let jobs = env.run(&["jobs", "--json"]);
    assert!(
        jobs.code == 0 || jobs.stderr.contains(&want),
        "reading the store of a full filesystem works or says why: {}",
        jobs.all()
    );
}

#[test]
fn killed_mid_backup_leaves_no_pack_and_next_run_recovers() {
    let env = Env::new();
    let db = env.path("app.db");
    seed_db(&db, 1_000, false); // rollback journal: an exclusive lock blocks readers
    env.standard_config(&db, &env.path("packs"), "busy_timeout = \"120s\"");
    let blocker = rusqlite::Connection::open(&db).unwrap();
    blocker
        .execute_batch("BEGIN EXCLUSIVE; INSERT INTO t(payload, n) VALUES ('held', 0);")
        .unwrap();

    let mut child = env.cmd().args(["run", "nightly"]).spawn().unwrap();
    // Wait until the job is running inside the source, then kill -9.
    let state = env.path("state/state.db");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < deadline, "job never reached the source stage");
        if state.exists()
            && let Ok(c) = rusqlite::Connection::open(&state)
        {
            let msg: Option<String> = c
                .query_row("SELECT message FROM jobs WHERE status = 'running'", [], |r| r.get(0))
                .ok();
            if msg.is_some_and(|m| m.starts_with("backing up")) {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        subdirs(&env.path("packs/nightly")).is_empty(),
        "no pack may appear under a final name"
    );

    blocker.execute_batch("ROLLBACK").unwrap();
    drop(blocker);
    let r = env.run(&["run", "nightly", "--json"]).ok().json();
    assert_eq!(r["job"]["status"], "completed");
    let jobs = env.run(&["jobs", "--json"]).ok().json();
    assert_eq!(jobs[1]["status"], "interrupted", "{jobs}");
    assert!(
        jobs[1]["detail"]
            .as_str()
            .unwrap()
            .contains("stopped before it finished")
    );
    assert_eq!(subdirs(&env.path("packs/nightly")).len(), 1);
    assert!(
        subdirs(&env.path("packs/.packrat-staging")).is_empty(),
        "leftovers must be cleaned"
    );
}

#[test]
fn a_second_run_of_a_busy_plan_is_refused() {
    let env = Env::new();
    let db = env.path("app.db");
    seed_db(&db, 100, false);
    env.standard_config(&db, &env.path("packs"), "busy_timeout = \"60s\"");
    let blocker = rusqlite::Connection::open(&db).unwrap();
    blocker.execute_batch("BEGIN EXCLUSIVE;").unwrap();
    let mut first = env.cmd().args(["run", "nightly"]).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let second = loop {
        std::thread::sleep(Duration::from_millis(200));
        let r = env.run(&["run", "nightly"]);
        if r.code == 3 || Instant::now() > deadline {
            break r;
        }
    };
    blocker.execute_batch("ROLLBACK").unwrap();
    let st = first.wait().unwrap();
    assert!(st.success());
    assert_eq!(second.code, 3, "{}", second.all());
    assert!(second.stderr.contains("plan `nightly` is locked"), "{}", second.stderr);
}

#[test]
fn the_secret_never_appears_in_any_output() {
    const SECRET: &str = "S3cr3t-Pa55w0rd";
    let env = Env::new();
    let db = env.path("app.db");
    seed_db(&db, 100, true);
    env.write_config(&format!(
        r#"state_dir = "state"
[sources.app_db]
type = "sqlite"
path = "{}"
[sources.mes]
type = "mongo"
uri_env = "PACKRAT_TEST_MES_URI"
database = "mes"
[sinks.local]
type = "local"
path = "packs"
[plans.nightly]
sources = ["app_db"]
sinks = ["local"]
[plans.hot]
source = "mes"
sinks = ["local"]
"#,
        db.display()
    ));
    let uri = format!("mongodb://backup:{SECRET}@127.0.0.1:1/?authSource=admin");
    let mut outputs = Vec::new();
    for args in [
        &["config", "show"][..],
        &["config", "check"],
        &["-vv", "run", "nightly"],
        &["-vv", "--log-json", "run", "nightly", "--json"],
        &["-vv", "run", "hot"],
        &["status"],
        &["status", "--json"],
        &["jobs"],
        &["jobs", "--json"],
        &["list", "--json"],
    ] {
        let out = env.cmd().args(args).env("PACKRAT_TEST_MES_URI", &uri).output().unwrap();
        outputs.push((
            args.join(" "),
            String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
        ));
    }
    for (args, out) in &outputs {
        assert!(!out.contains(SECRET), "`packrat {args}` printed the secret:\n{out}");
    }
    assert!(
        outputs[0].1.contains("uri_env = \"PACKRAT_TEST_MES_URI\""),
        "{}",
        outputs[0].1
    );
}
