//! End-to-end: a real `packratd` process with a plan due every minute, against a real SQLite
//! database and a real local sink. Killed with SIGKILL mid-job and restarted, it marks the job
//! interrupted and the next run succeeds; a second daemon is refused naming the holder's pid; the
//! API needs the token for POST; SIGTERM shuts it down cleanly.

#![cfg(unix)]

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use packrat_e2e::daemon::{Daemon, addr, http, jobs, packratd_bin, wait_for};
use packrat_e2e::{Env, seed_db};
use serde_json::Value;

const TOKEN: &str = "e2e-token-7f3a9c";

#[test]
fn daemon_runs_schedules_survives_sigkill_refuses_a_second_instance_and_stops_on_sigterm() {
    let env = Env::new();
    let db = env.path("app.db");
    seed_db(&db, 500, false); // rollback journal: an exclusive lock blocks the copy
    let sink = env.path("packs");
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

[plans.minutely]
sources = ["app_db"]
sinks = ["local"]
full = "* * * * *"
retention = {{ keep_last = 2 }}

[daemon]
grace_period = "3s"

[api]
bind = "127.0.0.1:0"
token_file = "token"

[health]
interval = "2s"
"#,
        db.display(),
        sink.display()
    ));
    let state = env.path("state");

    // Hold an exclusive lock on the database: the daemon's job will wait in the middle.
    let locker = rusqlite::Connection::open(&db).unwrap();
    locker.execute_batch("BEGIN EXCLUSIVE;").unwrap();

    let mut first = Daemon::start(&env, "first");
    let api = wait_for("packratd.addr", Duration::from_secs(30), || addr(&state));
    assert_eq!(http(&api, "GET", "/healthz", None), (200, "ok\n".to_string()));

    // A second daemon is refused, naming the holder's pid.
    let second = Command::new(packratd_bin())
        .arg("--config")
        .arg(env.config())
        .env_remove("PACKRAT_CONFIG")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(3), "{err}");
    assert!(
        err.contains("already running") && err.contains(&format!("pid {}", first.child.id())),
        "{err}"
    );

    // POST needs the token.
    assert_eq!(http(&api, "POST", "/api/plans/minutely/run", None).0, 401);
    assert_eq!(http(&api, "POST", "/api/plans/minutely/run", Some("wrong")).0, 401);
    assert_eq!(http(&api, "POST", "/api/plans/nope/run", Some(TOKEN)).0, 404);
    // Accepted, unless the schedule (a new plan fires when its slot is at most 5 minutes old)
    // already started a job of the plan: a plan never overlaps itself.
    let (code, body) = http(&api, "POST", "/api/plans/minutely/run", Some(TOKEN));
    assert!(
        code == 202 || (code == 409 && body.contains("already running")),
        "{code} {body}"
    );

    // The job starts and hangs on the locked database.
    let running = wait_for("a running job", Duration::from_secs(30), || {
        jobs(&env).into_iter().find(|j| j["status"] == "running")
    });
    let running_id = running["id"].as_i64().unwrap();
    let (code, status) = http(&api, "GET", "/api/status", None);
    assert_eq!(code, 200);
    let status: Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["running"], true);
    assert_eq!(status["active_jobs"][0]["id"], running_id);
    assert!(!status["plans"]["minutely"]["running"].is_null(), "{status}");
    assert!(status["plans"]["minutely"]["next_run"].is_string(), "{status}");
    // A second run of the same plan while it runs is refused: no overlap.
    assert_eq!(http(&api, "POST", "/api/plans/minutely/run", Some(TOKEN)).0, 409);
    // `packrat status` shows the daemon's view.
    let st = env.run(&["status"]).ok();
    assert!(st.stdout.contains("daemon: running"), "{}", st.stdout);
    let st_json = env.run(&["status", "--json"]).ok().json();
    assert_eq!(st_json["source"], "daemon");

    // SIGKILL mid-job: the record stays `running` until the next start recovers it.
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    let j = env.run(&["job", &running_id.to_string(), "--json"]).ok().json();
    assert_eq!(j["status"], "running");
    // The staging directory of the killed job is still there.
    assert!(
        std::fs::read_dir(sink.join(".packrat-staging"))
            .map(|d| d.count())
            .unwrap_or(0)
            > 0,
        "expected a staging leftover of the killed job"
    );
    locker.execute_batch("COMMIT;").unwrap();
    drop(locker);
    std::fs::remove_file(state.join("packratd.addr")).ok();

    let mut again = Daemon::start(&env, "again");
    let api = wait_for("packratd.addr after restart", Duration::from_secs(30), || addr(&state));
    let j = wait_for("the killed job marked interrupted", Duration::from_secs(30), || {
        let j = env.run(&["job", &running_id.to_string(), "--json"]).ok().json();
        (j["status"] == "interrupted").then_some(j)
    });
    assert!(
        j["detail"].as_str().unwrap().contains("stopped before it finished"),
        "{j}"
    );
    assert_eq!(
        std::fs::read_dir(sink.join(".packrat-staging"))
            .map(|d| d.count())
            .unwrap_or(0),
        0,
        "staging leftovers were not removed at start"
    );

    // The next scheduled slot (at most a minute away) runs and succeeds.
    let done = wait_for("a completed scheduled job", Duration::from_secs(100), || {
        jobs(&env)
            .into_iter()
            .find(|j| j["status"] == "completed" && j["trigger"] == "schedule")
    });
    let pack_dir = PathBuf::from(done["output_dir"].as_str().unwrap());
    assert!(pack_dir.join("manifest.json").is_file(), "{}", pack_dir.display());
    assert!(pack_dir.starts_with(&sink));
    let verify = env.run(&["verify", "--latest", "minutely", "--deep"]);
    assert_eq!(verify.code, 0, "{}", verify.all());

    // Metrics and job records over the API.
    let (code, metrics) = http(&api, "GET", "/metrics", None);
    assert_eq!(code, 200);
    assert!(
        metrics.contains("packrat_jobs{plan=\"minutely\",status=\"completed\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("packrat_jobs{plan=\"minutely\",status=\"interrupted\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("packrat_last_success_timestamp_seconds{plan=\"minutely\"}"),
        "{metrics}"
    );
    let (code, one) = http(&api, "GET", &format!("/api/jobs/{}", done["id"]), None);
    assert_eq!(code, 200);
    assert_eq!(serde_json::from_str::<Value>(&one).unwrap()["status"], "completed");
    assert_eq!(http(&api, "GET", "/api/jobs/999999", None).0, 404);

    // SIGTERM while a job hangs: no new jobs, the job gets the grace period (3s), then it is
    // cancelled and recorded as such; the daemon exits cleanly, removes its address file and
    // leaves its logs on disk.
    let locker = rusqlite::Connection::open(&db).unwrap();
    locker.execute_batch("BEGIN EXCLUSIVE;").unwrap();
    let before: Vec<i64> = jobs(&env).iter().filter_map(|j| j["id"].as_i64()).collect();
    let (code, body) = http(&api, "POST", "/api/plans/minutely/run?kind=full", Some(TOKEN));
    assert!(code == 202 || code == 409, "{code} {body}");
    let hanging = wait_for("a new running job", Duration::from_secs(90), || {
        jobs(&env)
            .into_iter()
            .find(|j| j["status"] == "running" && !before.contains(&j["id"].as_i64().unwrap()))
    });
    again.signal(nix::sys::signal::Signal::SIGTERM);
    let status = again.wait(Duration::from_secs(30));
    assert!(status.success(), "exit {status:?}:\n{}", again.output());
    locker.execute_batch("COMMIT;").unwrap();
    let cancelled = env.run(&["job", &hanging["id"].to_string(), "--json"]).ok().json();
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    assert_eq!(cancelled["message"], "cancelled", "{cancelled}");
    assert!(
        cancelled["detail"].as_str().unwrap().contains("grace period of 3s"),
        "{cancelled}"
    );
    assert!(!state.join("packratd.addr").exists());
    let out = again.output();
    assert!(
        out.contains("received SIGTERM") && out.contains("packratd stopped"),
        "{out}"
    );
    let logs: Vec<String> = std::fs::read_dir(state.join("logs"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(logs.iter().any(|l| l.starts_with("packratd.log")), "{logs:?}");
    assert!(logs.iter().any(|l| l.starts_with("alerts.log")), "{logs:?}");
    // Nothing is left running.
    assert!(
        jobs(&env)
            .iter()
            .all(|j| j["status"] != "running" && j["status"] != "queued")
    );
}

#[test]
fn non_loopback_api_without_token_is_refused_at_start() {
    let env = Env::new();
    let db = env.path("app.db");
    seed_db(&db, 10, true);
    env.standard_config(&db, &env.path("packs"), "");
    let text = std::fs::read_to_string(env.config()).unwrap();
    env.write_config(&format!("{text}\n[api]\nbind = \"0.0.0.0:0\"\n"));
    let out = Command::new(packratd_bin())
        .arg("--config")
        .arg(env.config())
        .env_remove("PACKRAT_CONFIG")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("not a loopback address") && err.contains("token"), "{err}");
}
