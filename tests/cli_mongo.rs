//! End-to-end: `packrat run`, `verify` and `restore` of MongoDB plans against a real
//! MongoDB-wire server (SecantusDB, started by `cargo xtask ci`).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use packrat_e2e::{Env, Run};

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: start the MongoDB test server with `cargo xtask ci` (it exports PACKRAT_TEST_MONGO_*)"
        )
    })
}

fn python() -> String {
    var("PACKRAT_TEST_MONGO_PYTHON")
}

/// Inserts `n` documents `_id` `start..start+n` with `createdAt` = now and a `size`-byte message,
/// then waits until their time is older than the plans' 1 s lag.
fn seed(uri: &str, db: &str, n: u64, start: u64, size: u64) {
    py(uri, SEED, &[db, &n.to_string(), &start.to_string(), &size.to_string()]);
    std::thread::sleep(Duration::from_millis(1500));
}

/// Runs a pymongo script with `uri` as argv[1] (and more args); returns stdout.
fn py(uri: &str, script: &str, args: &[&str]) -> String {
    let out = Command::new(python())
        .args(["-c", script, uri])
        .args(args)
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

const SEED: &str = r#"
import sys, datetime, pymongo
c = pymongo.MongoClient(sys.argv[1])
db = c[sys.argv[2]]
n, start, size = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
db.logs.create_index('createdAt')
for s in range(start, start + n, 5000):
    now = datetime.datetime.now(datetime.timezone.utc)
    db.logs.insert_many([{'_id': i, 'createdAt': now, 'host': 'line-%d' % (i % 7),
                          'msg': 'x' * size, 'v': {'a': [i, str(i)]}} for i in range(s, min(start + n, s + 5000))])
"#;

const COUNT: &str = "import sys, pymongo\n\
c = pymongo.MongoClient(sys.argv[1])\n\
print(c[sys.argv[2]][sys.argv[3]].count_documents({}))\n";

const DATABASES: &str = "import sys, pymongo\n\
print(sorted(pymongo.MongoClient(sys.argv[1]).list_database_names()))\n";

fn db_name(test: &str) -> String {
    format!("e2e_{test}_{}", std::process::id())
}

fn config(env: &Env, uri_var: &str, db: &str) {
    env.write_config(&format!(
        r#"state_dir = "state"
time_zone = "Asia/Shanghai"

[sources.mes]
type = "mongo"
uri_env = "{uri_var}"
database = "{db}"

[sinks.local]
type = "local"
path = "{}"
min_free_mb = 1

[plans.hot]
source = "mes"
sinks = ["local"]
[plans.hot.mongo]
collections = ["logs"]
time_field = "createdAt"
first_run = "all"
lag = "1s"
"#,
        env.path("packs").display()
    ));
}

fn run_with(env: &Env, uri_var: &str, uri: &str, args: &[&str]) -> Run {
    let o = env.cmd().env(uri_var, uri).args(args).output().expect("spawn packrat");
    Run {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

#[test]
fn full_incremental_verify_sample_and_chain_restore() {
    let uri = var("PACKRAT_TEST_MONGO_URI");
    let db = db_name("chain");
    seed(&uri, &db, 300, 0, 200);
    let env = Env::new();
    config(&env, "MES_URI", &db);
    run_with(&env, "MES_URI", &uri, &["run", "hot", "--full"]).ok();
    seed(&uri, &db, 200, 300, 200);
    let r = run_with(&env, "MES_URI", &uri, &["run", "hot", "--incremental", "--json"]).ok();
    let j = r.json();
    assert_eq!(j["job"]["status"], "completed", "{j}");
    assert_eq!(j["job"]["records"], 200, "only the new documents: {j}");

    let v = run_with(
        &env,
        "MES_URI",
        &uri,
        &[
            "verify",
            "--latest",
            "hot",
            "--deep",
            "--against-source",
            "--sample",
            "5",
        ],
    );
    assert_eq!(v.code, 0, "{}", v.all());
    assert!(v.stdout.contains("5 compared, 5 identical"), "{}", v.all());

    let target = format!("{db}_restored");
    let r = run_with(
        &env,
        "MES_URI",
        &uri,
        &[
            "restore",
            "--latest",
            "hot",
            "--chain",
            "--to-uri-env",
            "MES_URI",
            "--into-db",
            &target,
            "--mode",
            "replace",
            "--json",
        ],
    )
    .ok();
    let j = r.json();
    assert_eq!(j["packs"].as_array().unwrap().len(), 2, "{j}");
    assert_eq!(py(&uri, COUNT, &[&target, "logs"]), "500");
    // Again: idempotent.
    run_with(
        &env,
        "MES_URI",
        &uri,
        &[
            "restore",
            "--latest",
            "hot",
            "--chain",
            "--to-uri-env",
            "MES_URI",
            "--into-db",
            &target,
            "--mode",
            "replace",
        ],
    )
    .ok();
    assert_eq!(py(&uri, COUNT, &[&target, "logs"]), "500");
    // Insert mode into a non-empty target is refused.
    let r = run_with(
        &env,
        "MES_URI",
        &uri,
        &[
            "restore",
            "--latest",
            "hot",
            "--to-uri-env",
            "MES_URI",
            "--into-db",
            &target,
        ],
    );
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("not empty"), "{}", r.all());
    let drop = "import sys, pymongo\nc = pymongo.MongoClient(sys.argv[1])\nc.drop_database(sys.argv[2]); c.drop_database(sys.argv[3])\n";
    py(&uri, drop, &[&db, &target]);
}

const LIST: &str = "import sys, pymongo\n\
c = pymongo.MongoClient(sys.argv[1])\n\
print(sorted(c[sys.argv[2]].list_collection_names()))\n";

#[cfg(unix)]
#[test]
fn damaged_packs_are_refused_before_anything_is_written_and_allow_damaged_restores_the_rest() {
    let uri = var("PACKRAT_TEST_MONGO_URI");
    let db = db_name("damaged");
    seed(&uri, &db, 300, 0, 100);
    let env = Env::new();
    config(&env, "MES_URI", &db);
    run_with(&env, "MES_URI", &uri, &["run", "hot", "--full"]).ok();
    seed(&uri, &db, 200, 300, 100);
    run_with(&env, "MES_URI", &uri, &["run", "hot", "--incremental"]).ok();
    let list = env.run(&["list", "hot", "--json"]).ok().json();
    let dirs: Vec<PathBuf> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| PathBuf::from(p["location"].as_str().unwrap()))
        .collect();
    assert_eq!(dirs.len(), 2, "{list}");
    let data = format!("mongo/{db}/logs.bson.zst");
    let target = format!("{db}_restored");
    let restore = |extra: &[&str]| {
        let mut args = vec![
            "restore",
            "--latest",
            "hot",
            "--chain",
            "--to-uri-env",
            "MES_URI",
            "--into-db",
            &target,
        ];
        args.extend_from_slice(extra);
        packrat_e2e::run_guarded(env.cmd().env("MES_URI", &uri).args(&args), Duration::from_secs(120))
    };
    let nothing_written = || assert_eq!(py(&uri, LIST, &[&target]), "[]", "nothing may be written");

    // A damaged incremental in the middle of the chain: refused before anything is written.
    let incr = dirs.iter().find(|d| d != &&dirs[0]).unwrap();
    let path = incr.join(&data);
    let orig = std::fs::read(&path).unwrap();
    let mut bad = orig.clone();
    bad[orig.len() / 3] ^= 0x04;
    std::fs::write(&path, &bad).unwrap();
    let r = restore(&[]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stderr.contains(&format!("{data}: sha256 mismatch")) && r.stderr.contains("nothing was restored"),
        "{}",
        r.stderr
    );
    nothing_written();

    // A FIFO in place of the full pack's metadata: refused at once, no hang.
    let full = dirs.iter().find(|d| d != &incr).unwrap();
    let meta = full.join(format!("mongo/{db}/logs.metadata.json"));
    let meta_orig = std::fs::read(&meta).unwrap();
    packrat_e2e::make_fifo(&meta);
    let r = restore(&[]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stderr.contains("logs.metadata.json") && r.stderr.contains("FIFO"),
        "{}",
        r.stderr
    );
    nothing_written();
    std::fs::remove_file(&meta).unwrap();
    std::fs::write(&meta, meta_orig).unwrap();

    // --allow-damaged: the full pack is restored, the damaged increment skipped and named,
    // exit 1 because the result is incomplete.
    let r = restore(&["--allow-damaged"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stderr
            .contains(&format!("SKIPPED: {data} (collection {db}.logs): sha256 mismatch"))
            && r.stderr.contains("restore incomplete: 1 damaged artifact(s) skipped"),
        "{}",
        r.stderr
    );
    assert_eq!(py(&uri, COUNT, &[&target, "logs"]), "300");

    // Repaired, the chain restores completely.
    std::fs::write(&path, &orig).unwrap();
    restore(&["--mode", "replace"]).ok();
    assert_eq!(py(&uri, COUNT, &[&target, "logs"]), "500");
    let drop = "import sys, pymongo\nc = pymongo.MongoClient(sys.argv[1])\nc.drop_database(sys.argv[2]); c.drop_database(sys.argv[3])\n";
    py(&uri, drop, &[&db, &target]);
}

#[test]
fn wrong_password_fails_clearly_without_the_secret() {
    let uri = var("PACKRAT_TEST_MONGO_URI");
    let rest = uri.split_once("://").unwrap().1;
    let pw = rest.rsplit_once('@').unwrap().0.split_once(':').unwrap().1.to_string();
    let wrong_pw = "Wr0ngPassw0rdXyz";
    let wrong = uri.replacen(&format!(":{pw}@"), &format!(":{wrong_pw}@"), 1);
    let env = Env::new();
    config(&env, "MES_URI", "mes");
    let r = run_with(&env, "MES_URI", &wrong, &["run", "hot"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.all().contains("authentication failed"), "{}", r.all());
    let jobs = run_with(&env, "MES_URI", &wrong, &["jobs", "--json"]).ok();
    let detail = jobs.json()[0]["detail"].as_str().unwrap_or_default().to_string();
    assert!(
        detail.contains("authentication failed") && detail.contains("source `mes`"),
        "{detail}"
    );
    for text in [r.all(), jobs.stdout.clone()] {
        assert!(
            !text.contains(wrong_pw) && !text.contains(&pw),
            "secret in output: {text}"
        );
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A private server (no auth) this test may kill.
fn start_server(dir: &Path, port: u16) -> Child {
    let mut c = Command::new(var("PACKRAT_TEST_MONGO_BIN"))
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--log-level",
            "WARNING",
            "--storage-path",
        ])
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start secantusd-py");
    let t0 = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(t0.elapsed() < Duration::from_secs(60), "private server did not start");
        if let Ok(Some(s)) = c.try_wait() {
            panic!("private server exited: {s}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    c
}

fn find_growing_artifact(root: &Path) -> Option<PathBuf> {
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().ends_with(".bson.zst") && p.metadata().map(|m| m.len() > 0).unwrap_or(false) {
                return Some(p);
            }
        }
    }
    None
}

#[test]
fn server_killed_mid_backup_fails_the_job_and_the_next_run_loses_nothing() {
    let env = Env::new();
    let data = env.path("server-data");
    let port = free_port();
    let mut server = start_server(&data, port);
    let uri = format!("mongodb://127.0.0.1:{port}/");
    let n = 100_000;
    seed(&uri, "mes", n, 0, 600);
    config(&env, "KILL_URI", "mes");

    let mut child = env
        .cmd()
        .env("KILL_URI", &uri)
        .args(["run", "hot", "--incremental"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    loop {
        if find_growing_artifact(&env.path("packs")).is_some() || find_growing_artifact(&env.path("state")).is_some() {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the backup finished before the server could be killed"
        );
        assert!(t0.elapsed() < Duration::from_secs(120), "no artifact appeared");
        std::thread::sleep(Duration::from_millis(10));
    }
    server.kill().unwrap();
    server.wait().unwrap();
    let out = child.wait_with_output().unwrap();
    let all = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{all}");

    let jobs = env.run(&["jobs", "--json"]).ok().json();
    let job = &jobs[0];
    assert_eq!(job["status"], "failed", "{job}");
    let detail = job["detail"].as_str().unwrap();
    assert!(
        detail.contains("source `mes`") && detail.contains("collection mes.logs"),
        "{detail}"
    );
    assert!(
        detail.contains("connection lost") || detail.contains("server unreachable"),
        "the cause must be named: {detail}"
    );
    let state = rusqlite::Connection::open(env.path("state/state.db")).unwrap();
    let marks: i64 = state
        .query_row("SELECT count(*) FROM watermarks", [], |r| r.get(0))
        .unwrap();
    assert_eq!(marks, 0, "the watermark must not move after a failed job");
    assert!(
        packrat_e2e::subdirs(&env.path("packs/hot")).is_empty(),
        "no pack from a failed job"
    );

    let mut server = start_server(&data, port);
    let r = run_with(&env, "KILL_URI", &uri, &["run", "hot", "--incremental", "--json"]).ok();
    let j = r.json();
    assert_eq!(j["job"]["records"], n, "the next run loses nothing: {j}");
    server.kill().unwrap();
    server.wait().unwrap();
}

/// `packrat drill` of a Mongo plan: the whole chain (full + incremental) restored into a scratch
/// database on the same server, every collection counted against the packs' records, the
/// scratch database dropped; a record that disagrees fails the drill, naming the collection.
#[test]
fn a_drill_restores_the_chain_into_a_scratch_database_counts_and_drops_it() {
    let uri = var("PACKRAT_TEST_MONGO_URI");
    let db = db_name("drill");
    seed(&uri, &db, 300, 0, 100);
    let env = Env::new();
    config(&env, "MES_URI", &db);
    run_with(&env, "MES_URI", &uri, &["run", "hot", "--full"]).ok();
    seed(&uri, &db, 200, 300, 100);
    run_with(&env, "MES_URI", &uri, &["run", "hot", "--incremental"]).ok();

    // A drill killed after restoring (its record still `running`) left scratch databases: the
    // next drill drops them, and only them (a name no drill of this plan on record has stays).
    let first = run_with(&env, "MES_URI", &uri, &["drills", "--json"]);
    assert_eq!(first.code, 0, "{}", first.all());
    let state = rusqlite::Connection::open(env.path("state/state.db")).unwrap();
    state
        .execute(
            "INSERT INTO drill_runs (plan, kind, trigger, status, started_at) VALUES ('hot', 'drill', 'manual', 'running', '2026-01-01T00:00:00Z')",
            [],
        )
        .unwrap();
    let dead = state.last_insert_rowid();
    // This installation's token (random, made with the drill records), known to the test.
    state
        .execute("UPDATE drill_installation SET token = '0badc0de'", [])
        .unwrap();
    drop(state);
    let left = [
        format!("packrat_drill_0badc0de_{dead}_hot"),
        format!("packrat_drill_0badc0de_{dead}_hot_2"),
    ];
    let kept = [
        format!("packrat_drill_0badc0de_{dead}_hotter"),
        format!("packrat_drill_0badc0de_{}_hot", dead + 1000),
        // Another installation's drill of a plan of the same name, with the same run id.
        format!("packrat_drill_feedf00d_{dead}_hot"),
    ];
    for name in left.iter().chain(&kept) {
        py(
            &uri,
            "import sys, pymongo\npymongo.MongoClient(sys.argv[1])[sys.argv[2]].logs.insert_one({'x': 1})\n",
            &[name],
        );
    }

    let r = run_with(&env, "MES_URI", &uri, &["drill", "hot", "--json"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let run = r.json();
    assert_eq!(run["status"], "passed", "{run}");
    let names = py(&uri, DATABASES, &[]);
    for name in &left {
        assert!(!names.contains(&format!("'{name}'")), "{name} left: {names}");
    }
    for name in &kept {
        assert!(names.contains(&format!("'{name}'")), "{name} dropped: {names}");
        py(
            &uri,
            "import sys, pymongo\npymongo.MongoClient(sys.argv[1]).drop_database(sys.argv[2])\n",
            &[name],
        );
    }
    let drills = run_with(&env, "MES_URI", &uri, &["drills", "--json"]).json();
    let killed = drills
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == dead)
        .unwrap_or_else(|| panic!("{drills}"));
    assert_eq!(killed["status"], "failed", "{killed}");
    assert!(killed["failures"].to_string().contains("interrupted"), "{killed}");
    let checks: Vec<&str> = run["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(checks.len(), 1, "{checks:?}");
    let scratch = format!("packrat_drill_0badc0de_{}_hot", run["id"]);
    assert!(
        checks[0].starts_with(&format!("collection {db}.logs of source mes (chain migration_pack_"))
            && checks[0].ends_with(&format!(
                ": 500 documents restored into the scratch database {scratch}, as recorded, \
                 10 of 10 sampled documents identical to the pack's, then dropped"
            )),
        "{checks:?}"
    );
    let names = py(&uri, DATABASES, &[]);
    assert!(!names.contains("packrat_drill_0badc0de_"), "{names}");
    assert_eq!(py(&uri, COUNT, &[&db, "logs"]), "500");

    // The plan's verification samples the newest pack against the live collection: identical,
    // then, once the live documents were changed behind the backup's back (their time field
    // unchanged, so nothing explains it), a failure naming the collection.
    let r = run_with(&env, "MES_URI", &uri, &["drill", "hot", "--verify", "--json"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let checks = r.json()["checks"].to_string();
    assert!(
        checks.contains(&format!(
            "10 sampled document(s) compared with the live collection {db}.logs: 10 identical"
        )),
        "{checks}"
    );
    py(
        &uri,
        "import sys, pymongo\npymongo.MongoClient(sys.argv[1])[sys.argv[2]].logs.update_many({}, {'$set': {'host': 'tampered'}})\n",
        &[&db],
    );
    let r = run_with(&env, "MES_URI", &uri, &["drill", "hot", "--verify", "--json"]);
    assert_eq!(r.code, 1, "{}", r.all());
    let failures = r.json()["failures"].to_string();
    assert!(
        failures.contains(&format!(
            "10 of 10 sampled document(s) differ from the live collection {db}.logs"
        )),
        "{failures}"
    );

    // The incremental pack's record says 150 documents: the restored 500 are more than the
    // chain's records allow (300 + 150).
    let plan_dir = env.path("packs/hot");
    let newest = plan_dir.join(packrat_e2e::subdirs(&plan_dir).pop().unwrap());
    packrat_e2e::rewrite_manifest(&newest, |m| {
        for a in m["artifacts"].as_array_mut().unwrap() {
            if a["type"] == "mongo-bson" {
                a["records"] = serde_json::Value::from(150);
            }
        }
    });
    let r = run_with(&env, "MES_URI", &uri, &["drill", "hot", "--json"]);
    assert_eq!(r.code, 1, "{}", r.all());
    let failures = r.json()["failures"].to_string();
    assert!(
        failures.contains(&format!("collection {db}.logs")) && failures.contains("the packs record 300..=450"),
        "{failures}"
    );
    let names = py(&uri, DATABASES, &[]);
    assert!(!names.contains("packrat_drill_0badc0de_"), "{names}");
}

/// Ctrl-C while a drill restores a collection into its scratch database: the restore stops, the
/// scratch database is dropped, the run is recorded failed naming the signal, exit 130.
#[test]
fn ctrl_c_during_a_mongo_drill_drops_its_scratch_database() {
    let uri = var("PACKRAT_TEST_MONGO_URI");
    let db = db_name("drillcancel");
    seed(&uri, &db, 30_000, 0, 400);
    let env = Env::new();
    config(&env, "MES_URI", &db);
    run_with(&env, "MES_URI", &uri, &["run", "hot", "--full"]).ok();

    let scratch_dir = env.path("state/drills");
    let child = env
        .cmd()
        .env("MES_URI", &uri)
        .args(["drill", "hot", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    packrat_e2e::wait_for_subdir(&scratch_dir, "hot-run-", Duration::from_secs(60), String::new);
    // Into the MongoDB restore (the pack holds nothing else to restore first).
    std::thread::sleep(Duration::from_millis(300));
    let run = packrat_e2e::interrupt_json(child);
    assert_eq!(run["status"], "failed", "{run}");
    assert!(
        run["failures"][0]
            .as_str()
            .unwrap()
            .starts_with("cancelled by SIGINT: the run stopped before it finished"),
        "{run}"
    );
    assert!(
        !run["checks"].to_string().contains("as recorded"),
        "the restore finished before the signal: {run}"
    );
    let names = py(&uri, DATABASES, &[]);
    let state = rusqlite::Connection::open(env.path("state/state.db")).unwrap();
    let token: String = state
        .query_row("SELECT token FROM drill_installation", [], |r| r.get(0))
        .unwrap();
    assert!(
        token.len() == 8 && token.bytes().all(|b| b.is_ascii_hexdigit()),
        "{token}"
    );
    assert!(!names.contains(&format!("packrat_drill_{token}_")), "{names}");
    assert!(packrat_e2e::subdirs(&scratch_dir).is_empty());
}

/// `drill_uri_env`: a drill restores on the drill server it names, not on the source's own: an
/// unreachable drill server fails the drill naming the setting; pointed at a reachable server,
/// the drill passes there.
#[test]
fn a_drill_restores_on_the_configured_drill_server() {
    let uri = var("PACKRAT_TEST_MONGO_URI");
    let db = db_name("drilluri");
    seed(&uri, &db, 50, 0, 100);
    let env = Env::new();
    config(&env, "MES_URI", &db);
    let cfg = std::fs::read_to_string(env.config()).unwrap();
    env.write_config(&cfg.replace(
        &format!("database = \"{db}\"\n"),
        &format!("database = \"{db}\"\ndrill_uri_env = \"MES_DRILL_URI\"\n"),
    ));
    env.run(&["config", "check"]).ok();
    run_with(&env, "MES_URI", &uri, &["run", "hot", "--full"]).ok();

    let drill = |drill_uri: &str| {
        let o = env
            .cmd()
            .env("MES_URI", &uri)
            .env("MES_DRILL_URI", drill_uri)
            .args(["drill", "hot", "--json"])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
        let v: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
        (o.status.code(), v)
    };
    let unreachable = "mongodb://127.0.0.1:9/?serverSelectionTimeoutMS=500&connectTimeoutMS=500";
    let (code, run) = drill(unreachable);
    assert_eq!(code, Some(1), "{run}");
    let failures = run["failures"].to_string();
    assert!(
        failures.contains("the drill failed on the drill server (sources.mes.drill_uri)"),
        "{failures}"
    );
    let (code, run) = drill(&uri);
    assert_eq!((code, run["status"].as_str()), (Some(0), Some("passed")), "{run}");
}
