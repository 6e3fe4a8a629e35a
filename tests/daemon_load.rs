//! End-to-end: a real `packratd` under load. Five plans on one sink, due every minute, with
//! `parallelism = 5`: every scheduled job completes (jobs never touch each other's staging). A
//! job waiting for a parallelism slot has a `queued` row at once, and is recorded `cancelled`
//! when the daemon stops before it started.

#![cfg(unix)]

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use packrat_e2e::daemon::{Daemon, addr, http, jobs, wait_for};
use packrat_e2e::{Env, seed_db, subdirs};
use serde_json::Value;

const TOKEN: &str = "e2e-load-token-41c2";

#[test]
fn five_plans_due_every_minute_for_five_minutes_all_complete() {
    let env = Env::new();
    let sink = env.path("packs");
    let mut cfg = String::from(
        "state_dir = \"state\"\ntime_zone = \"Europe/Berlin\"\nparallelism = 5\n\n[daemon]\ngrace_period = \"60s\"\n\n[sinks.local]\n",
    );
    cfg.push_str(&format!(
        "type = \"local\"\npath = \"{}\"\nmin_free_mb = 1\n",
        sink.display()
    ));
    for p in 1..=5 {
        let db = env.path(&format!("app{p}.db"));
        // Big enough that the five jobs of a minute overlap.
        seed_db(&db, 40_000, p % 2 == 0);
        cfg.push_str(&format!(
            "\n[sources.db{p}]\ntype = \"sqlite\"\npath = \"{}\"\ncompress = true\n\n[plans.p{p}]\nsources = [\"db{p}\"]\nsinks = [\"local\"]\nfull = \"* * * * *\"\nretention = {{ keep_last = 3 }}\n",
            db.display()
        ));
    }
    env.write_config(&cfg);

    let mut d = Daemon::start(&env, "load");
    // Five minutes of slots, plus the time the last ones need.
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(5 * 60 + 5) {
        std::thread::sleep(Duration::from_secs(5));
        assert!(
            d.child.try_wait().unwrap().is_none(),
            "packratd exited:\n{}",
            d.output()
        );
    }
    wait_for("the last jobs to finish", Duration::from_secs(120), || {
        jobs(&env)
            .iter()
            .all(|j| j["status"] != "running" && j["status"] != "queued")
            .then_some(())
    });
    d.signal(Signal::SIGTERM);
    assert!(d.wait(Duration::from_secs(60)).success(), "{}", d.output());

    let all = jobs(&env);
    let bad: Vec<&Value> = all.iter().filter(|j| j["status"] != "completed").collect();
    assert!(bad.is_empty(), "every job must complete: {bad:#?}");
    for p in 1..=5 {
        let plan = format!("p{p}");
        let n = all.iter().filter(|j| j["plan"] == plan.as_str()).count();
        assert!(n >= 5, "plan {plan} ran {n} times in five minutes: {all:#?}");
        // Retention kept three valid packs each; the staging area is empty.
        assert_eq!(subdirs(&sink.join(&plan)).len(), 3, "{plan}");
    }
    assert!(
        std::fs::read_dir(sink.join(".packrat-staging"))
            .unwrap()
            .next()
            .is_none(),
        "no staging leftovers"
    );
}

#[test]
fn a_job_waiting_for_a_slot_is_queued_at_once_and_cancelled_at_shutdown() {
    let env = Env::new();
    let sink = env.path("packs");
    let slow = env.path("slow.db");
    let quick = env.path("quick.db");
    seed_db(&slow, 100, false); // rollback journal: an exclusive lock holds its job
    seed_db(&quick, 100, true);
    std::fs::write(env.path("token"), format!("{TOKEN}\n")).unwrap();
    env.write_config(&format!(
        r#"state_dir = "state"
parallelism = 1

[sources.slow]
type = "sqlite"
path = "{}"
busy_timeout = "300s"

[sources.quick]
type = "sqlite"
path = "{}"

[sinks.local]
type = "local"
path = "{}"
min_free_mb = 1

[plans.a]
sources = ["slow"]
sinks = ["local"]

[plans.b]
sources = ["quick"]
sinks = ["local"]

[daemon]
grace_period = "2s"

[api]
bind = "127.0.0.1:0"
token_file = "token"
"#,
        slow.display(),
        quick.display(),
        sink.display()
    ));
    let locker = rusqlite::Connection::open(&slow).unwrap();
    locker.execute_batch("BEGIN EXCLUSIVE;").unwrap();

    let mut d = Daemon::start(&env, "queued");
    let api = wait_for("packratd.addr", Duration::from_secs(30), || addr(&env.path("state")));
    let (code, body) = http(&api, "POST", "/api/plans/a/run", Some(TOKEN));
    assert_eq!(code, 202, "{body}");
    let a: Value = serde_json::from_str(&body).unwrap();
    wait_for("job a running", Duration::from_secs(30), || {
        jobs(&env)
            .iter()
            .any(|j| j["plan"] == "a" && j["status"] == "running")
            .then_some(())
    });
    let (code, body) = http(&api, "POST", "/api/plans/b/run", Some(TOKEN));
    assert_eq!(code, 202, "{body}");
    let b: Value = serde_json::from_str(&body).unwrap();

    // b waits for the only slot, and shows as queued right away.
    let queued = env.run(&["jobs", "--status", "queued", "--json"]).ok().json();
    let queued = queued.as_array().unwrap();
    assert_eq!(queued.len(), 1, "{queued:?}");
    assert_eq!(queued[0]["plan"], "b");
    assert_eq!(queued[0]["id"], b["job"]);
    // A second request for b while it waits is refused, naming the waiting job.
    let (code, body) = http(&api, "POST", "/api/plans/b/run", Some(TOKEN));
    assert_eq!(code, 409, "{body}");
    assert!(body.contains(&format!("job {}", b["job"])), "{body}");

    // Shutdown: b never starts and is recorded cancelled; a gets the grace period, then is
    // cancelled too.
    d.signal(Signal::SIGTERM);
    assert!(d.wait(Duration::from_secs(60)).success(), "{}", d.output());
    locker.execute_batch("COMMIT;").unwrap();
    let job = |id: &Value| env.run(&["job", &id.to_string(), "--json"]).ok().json();
    let jb = job(&b["job"]);
    assert_eq!(jb["status"], "cancelled", "{jb}");
    assert!(
        jb["detail"]
            .as_str()
            .unwrap()
            .contains("packratd is shutting down, before it started"),
        "{jb}"
    );
    assert!(jb["started_at"].is_null(), "{jb}");
    let ja = job(&a["job"]);
    assert_eq!(ja["status"], "cancelled", "{ja}");
    assert!(ja["detail"].as_str().unwrap().contains("grace period of 2s"), "{ja}");
    assert!(
        std::fs::read_dir(sink.join(".packrat-staging"))
            .map(|mut d| d.next().is_none())
            .unwrap_or(true),
        "staging removed"
    );
}
