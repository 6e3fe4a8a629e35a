//! End-to-end operator controls: `packrat cancel` of a `packrat run` in another process and of a
//! daemon job, `packrat daemon status|stop`, `packrat run --all`, `packrat watermarks` list and
//! audited reset, and times shown in the plan's zone with its offset.

#![cfg(unix)]

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use packrat_e2e::daemon::{Daemon, addr, http, wait_for};
use packrat_e2e::{Env, seed_db, subdirs};
use serde_json::Value;

const TOKEN: &str = "ctl-token-5b1e";

fn wait_code(child: &mut Child, within: Duration) -> i32 {
    let t0 = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s.code().unwrap_or(-1);
        }
        if t0.elapsed() > within {
            let _ = child.kill();
            panic!("packrat did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn staging(sink: &Path) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(sink.join(".packrat-staging")) else {
        return Vec::new();
    };
    let mut v: Vec<String> = rd
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn job(env: &Env, id: &str) -> Value {
    env.run(&["job", id, "--json"]).ok().json()
}

#[test]
fn cancel_stops_a_run_of_another_process_and_refuses_finished_or_unknown_jobs() {
    let env = Env::new();
    let db = env.path("app.db");
    seed_db(&db, 200, false);
    let sink = env.path("packs");
    env.standard_config(&db, &sink, "busy_timeout = \"300s\"");
    // An exclusive lock: the job waits in the middle of reading the source.
    let locker = rusqlite::Connection::open(&db).unwrap();
    locker.execute_batch("BEGIN EXCLUSIVE;").unwrap();
    let mut child = env
        .cmd()
        .args(["run", "nightly", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the staging directory", Duration::from_secs(60), || {
        staging(&sink)
            .iter()
            .any(|n| n.starts_with("job_1_") && !n.ends_with(".lock"))
            .then_some(())
    });
    let c = env.run(&["cancel", "1", "--json"]);
    assert_eq!(c.code, 0, "{}", c.all());
    let cancelled = c.json();
    assert_eq!(cancelled["job"]["status"], "cancelled", "{cancelled}");
    let code = wait_code(&mut child, Duration::from_secs(30));
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        code,
        130,
        "documented exit code; {}",
        String::from_utf8_lossy(&out.stderr)
    );
    locker.execute_batch("COMMIT;").unwrap();

    let j = job(&env, "1");
    assert_eq!(j["status"], "cancelled");
    let detail = j["detail"].as_str().unwrap();
    assert!(
        detail.contains("cancelled by packrat cancel by ")
            && detail.contains('@')
            && detail.contains("while backing up source app_db")
            && detail.contains("its staging was removed"),
        "{detail}"
    );
    assert_eq!(staging(&sink), Vec::<String>::new());
    assert_eq!(subdirs(&sink.join("nightly")), Vec::<String>::new());

    // Finished and unknown jobs: exit 2 with a clear message.
    let again = env.run(&["cancel", "1"]);
    assert_eq!(again.code, 2, "{}", again.all());
    assert!(again.stderr.contains("job 1 already cancelled"), "{}", again.stderr);
    let done = env.run(&["run", "nightly", "--json"]).ok().json();
    let id = done["job"]["id"].to_string();
    let finished = env.run(&["cancel", &id]);
    assert_eq!(finished.code, 2);
    assert!(
        finished.stderr.contains(&format!("job {id} already completed")),
        "{}",
        finished.stderr
    );
    let unknown = env.run(&["cancel", "999"]);
    assert_eq!(unknown.code, 2);
    assert!(unknown.stderr.contains("no job 999"), "{}", unknown.stderr);

    // Times for people carry the plan's offset (Asia/Shanghai), JSON stays RFC 3339.
    let table = env.run(&["jobs"]).ok().stdout;
    assert!(table.contains("+08:00"), "{table}");
    let detail = env.run(&["job", &id]).ok().stdout;
    assert!(detail.contains("+08:00"), "{detail}");
    let status = env.run(&["status"]).ok().stdout;
    assert!(status.contains("+08:00"), "{status}");
    let j = job(&env, &id);
    assert!(j["finished_at"].as_str().unwrap().ends_with('Z'), "{j}");
}

fn daemon_config(env: &Env, db: &Path, sink: &Path) {
    std::fs::write(env.path("token"), format!("{TOKEN}\n")).unwrap();
    env.write_config(&format!(
        r#"state_dir = "state"
time_zone = "Asia/Shanghai"

[sources.app_db]
type = "sqlite"
path = "{}"
busy_timeout = "120s"

[sinks.local]
type = "local"
path = "{}"
min_free_mb = 1

[plans.ondemand]
sources = ["app_db"]
sinks = ["local"]

[daemon]
grace_period = "3s"

[api]
bind = "127.0.0.1:0"
token_file = "token"
"#,
        db.display(),
        sink.display()
    ));
}

#[test]
fn cancel_of_a_daemon_job_and_daemon_status_and_stop() {
    let env = Env::new();
    let db = env.path("app.db");
    seed_db(&db, 200, false);
    let sink = env.path("packs");
    daemon_config(&env, &db, &sink);
    let state = env.path("state");

    let down = env.run(&["daemon", "status"]);
    assert_eq!(down.code, 1, "{}", down.all());
    assert!(down.stdout.contains("not running"), "{}", down.stdout);

    let locker = rusqlite::Connection::open(&db).unwrap();
    locker.execute_batch("BEGIN EXCLUSIVE;").unwrap();
    let mut d = Daemon::start(&env, "ctl");
    let api = wait_for("packratd.addr", Duration::from_secs(30), || addr(&state));
    let (code, body) = http(&api, "POST", "/api/plans/ondemand/run", Some(TOKEN));
    assert_eq!(code, 202, "{body}");
    let id = serde_json::from_str::<Value>(&body).unwrap()["job"].to_string();
    wait_for("the daemon job running", Duration::from_secs(60), || {
        (job(&env, &id)["status"] == "running").then_some(())
    });

    let c = env.run(&["cancel", &id]);
    assert_eq!(c.code, 0, "{}", c.all());
    let j = job(&env, &id);
    assert_eq!(j["status"], "cancelled", "{j}");
    assert!(
        j["detail"]
            .as_str()
            .unwrap()
            .contains("cancelled by packrat cancel by "),
        "{j}"
    );
    locker.execute_batch("COMMIT;").unwrap();

    let st = env.run(&["daemon", "status", "--json"]);
    assert_eq!(st.code, 0, "{}", st.all());
    let st = st.json();
    assert_eq!(st["running"], true);
    assert_eq!(st["pid"], d.child.id());
    assert_eq!(st["address"], api.as_str());
    let human = env.run(&["daemon", "status"]).ok().stdout;
    assert!(human.contains("running") && human.contains("+08:00"), "{human}");

    // Without the token the shutdown is refused; `daemon stop` sends it and waits.
    assert_eq!(http(&api, "POST", "/api/shutdown", None).0, 401);
    assert_eq!(http(&api, "POST", "/api/shutdown", Some("wrong")).0, 401);
    let stop = env.run(&["daemon", "stop"]);
    assert_eq!(stop.code, 0, "{}", stop.all());
    assert!(stop.stdout.contains("packratd stopped"), "{}", stop.stdout);
    let exit = d.wait(Duration::from_secs(30));
    assert!(exit.success(), "{exit:?}\n{}", d.output());
    assert!(d.output().contains("shutdown requested"), "{}", d.output());
    assert_eq!(env.run(&["daemon", "status"]).code, 1);
}

#[test]
fn run_all_runs_every_enabled_plan_within_parallelism() {
    let env = Env::new();
    let mut text = String::from("state_dir = \"state\"\ntime_zone = \"Asia/Shanghai\"\nparallelism = 2\n");
    for i in 1..=4 {
        let db = env.path(&format!("db{i}.db"));
        seed_db(&db, 50, false);
        text.push_str(&format!(
            "\n[sources.db{i}]\ntype = \"sqlite\"\npath = \"{}\"\n",
            db.display()
        ));
    }
    text.push_str(&format!(
        "\n[sinks.local]\ntype = \"local\"\npath = \"{}\"\nmin_free_mb = 1\n",
        env.path("packs").display()
    ));
    for i in 1..=3 {
        text.push_str(&format!("\n[plans.p{i}]\nsources = [\"db{i}\"]\nsinks = [\"local\"]\n"));
    }
    text.push_str("\n[plans.off]\nsources = [\"db4\"]\nsinks = [\"local\"]\nenabled = false\n");
    env.write_config(&text);

    let r = env.run(&["run", "--all", "--json"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let v = r.json();
    let plans = v["plans"].as_array().unwrap();
    let names: Vec<&str> = plans.iter().map(|p| p["plan"].as_str().unwrap()).collect();
    assert_eq!(names, ["p1", "p2", "p3"], "the disabled plan is left out");
    assert!(plans.iter().all(|p| p["status"] == "completed"), "{v}");
    let human = env.run(&["run", "--all", "--incremental"]).ok().stdout;
    assert!(human.contains("3 plan(s): 3 completed, 0 failed"), "{human}");

    // A plan that fails makes the exit code 1; the others still run.
    std::fs::remove_file(env.path("db2.db")).unwrap();
    let r = env.run(&["run", "--all", "--json"]);
    assert_eq!(r.code, 1, "{}", r.all());
    let v = r.json();
    let st: Vec<&str> = v["plans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["status"].as_str().unwrap())
        .collect();
    assert_eq!(st, ["completed", "failed", "completed"], "{v}");
}

#[test]
fn watermarks_list_and_audited_reset() {
    let env = Env::new();
    let db = env.path("app.db");
    seed_db(&db, 10, false);
    let sink = env.path("packs");
    env.standard_config(&db, &sink, "");
    env.run(&["run", "nightly"]).ok(); // creates and migrates the state store
    // A watermark as an incremental Mongo run records it (seeded: no Mongo needed here).
    let conn = rusqlite::Connection::open(env.path("state/state.db")).unwrap();
    conn.execute_batch(
        "INSERT INTO watermarks (plan, source, key, value, job, updated_at)
         VALUES ('nightly', 'app_db', 'app.orders', '2026-11-21T04:00:00.000000Z', 1, '2026-11-21T04:05:00.000000Z');",
    )
    .unwrap();

    let list = env.run(&["watermarks", "nightly", "--json"]).ok().json();
    assert_eq!(list[0]["key"], "app.orders", "{list}");
    assert_eq!(list[0]["value"], "2026-11-21T12:00:00+08:00", "{list}");
    let human = env.run(&["watermarks"]).ok().stdout;
    assert!(
        human.contains("app.orders") && human.contains("2026-11-21 12:00:00 +08:00"),
        "{human}"
    );

    // Without --yes nothing changes.
    let no = env.run(&[
        "watermarks",
        "reset",
        "nightly",
        "app.orders",
        "--to",
        "2026-11-20 08:00",
    ]);
    assert_eq!(no.code, 2, "{}", no.all());
    assert!(no.stderr.contains("--yes"), "{}", no.stderr);
    let r = env
        .run(&[
            "watermarks",
            "reset",
            "nightly",
            "app.orders",
            "--to",
            "2026-11-20 08:00",
            "--yes",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(r["old_value"], "2026-11-21T04:00:00Z", "{r}");
    assert_eq!(r["new_value"], "2026-11-20T00:00:00Z", "{r}");
    assert!(r["reset_by"].as_str().unwrap().contains('@'), "{r}");
    let list = env.run(&["watermarks", "nightly", "--json"]).ok().json();
    assert_eq!(list[0]["value"], "2026-11-20T08:00:00+08:00", "{list}");

    let cleared = env.run(&[
        "watermarks",
        "reset",
        "nightly",
        "app_db/app.orders",
        "--clear",
        "--yes",
    ]);
    assert_eq!(cleared.code, 0, "{}", cleared.all());
    assert!(cleared.stdout.contains("cleared"), "{}", cleared.stdout);
    let audit: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM watermark_resets WHERE plan = 'nightly'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(audit, 2);
    let unknown = env.run(&["watermarks", "reset", "nightly", "app.nothing", "--clear", "--yes"]);
    assert_eq!(unknown.code, 2, "{}", unknown.all());
}
