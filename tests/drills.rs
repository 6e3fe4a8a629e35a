//! Backups that prove themselves, through the real binaries: `packrat drill` restores the newest
//! pack into a scratch place and checks it against the pack's record, `--verify` deep-verifies
//! it on every sink, both are recorded (`packrat drills`, the audit trail), hold the plan's
//! lock, and packratd runs them on their own cron schedules, raising an alert when one fails.

#![cfg(unix)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use packrat_e2e::daemon::{Daemon, addr, http, wait_for};
use packrat_e2e::{Env, rewrite_manifest, seed_db};
use serde_json::Value;

const TOKEN: &str = "drill-token-3b9d";

/// A SQLite plan `nightly` with two local sinks (`local`, `second`).
fn two_sink_config(env: &Env, db: &Path, plan_extra: &str, extra: &str) {
    env.write_config(&format!(
        r#"state_dir = "state"

[sources.app_db]
type = "sqlite"
path = "{}"
compress = true

[sinks.local]
type = "local"
path = "{}"
min_free_mb = 1

[sinks.second]
type = "local"
path = "{}"
min_free_mb = 1

[plans.nightly]
sources = ["app_db"]
sinks = ["local", "second"]
{plan_extra}
{extra}"#,
        db.display(),
        env.path("packs").display(),
        env.path("second").display()
    ));
}

/// `two_sink_config` on a database of 400,000 rows (its drill restores for a moment: long
/// enough to signal it), with one pack made.
fn backed_up_big_plan(plan_extra: &str, extra: &str) -> Env {
    let env = Env::new();
    let db = env.path("app.db");
    seed_db(&db, 400_000, true);
    two_sink_config(&env, &db, plan_extra, extra);
    env.run(&["run", "nightly"]).ok();
    env
}

fn drill(env: &Env, args: &[&str]) -> (i32, Value) {
    let mut a = vec!["drill", "nightly", "--json"];
    a.extend_from_slice(args);
    let r = env.run(&a);
    (
        r.code,
        serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.all())),
    )
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

fn newest_pack(root: &Path) -> PathBuf {
    let plan = root.join("nightly");
    plan.join(packrat_e2e::subdirs(&plan).pop().expect("a pack"))
}

#[test]
fn a_drill_restores_and_checks_the_newest_pack_and_a_verification_covers_every_sink() {
    let env = Env::new();
    let db = env.path("app.db");
    seed_db(&db, 2_000, true);
    two_sink_config(&env, &db, "", "");

    // Nothing to drill yet: a failed run, recorded, saying why.
    let (code, run) = drill(&env, &[]);
    assert_eq!(code, 1, "{run}");
    assert_eq!(run["status"], "failed");
    assert!(
        strings(&run["failures"])[0].contains("no sink holds a pack of plan nightly"),
        "{run}"
    );

    env.run(&["run", "nightly"]).ok();
    let (code, run) = drill(&env, &[]);
    assert_eq!(code, 0, "{run}");
    assert_eq!(
        (run["kind"].as_str(), run["status"].as_str(), run["trigger"].as_str()),
        (Some("drill"), Some("passed"), Some("manual"))
    );
    let checks = strings(&run["checks"]);
    assert_eq!(checks.len(), 1, "{checks:?}");
    assert!(
        checks[0].starts_with("sqlite/app_db.db.zst of source app_db from sink local: restored "),
        "{checks:?}"
    );
    assert!(
        checks[0].contains("integrity_check ok, 1 tables and 2000 rows as recorded"),
        "{checks:?}"
    );
    assert!(run["restore_seconds"].as_f64().unwrap() >= 0.0);
    // The scratch place is gone.
    let scratch = env.path("state/drills");
    assert!(!scratch.exists() || std::fs::read_dir(&scratch).unwrap().next().is_none());

    let (code, run) = drill(&env, &["--verify"]);
    assert_eq!(code, 0, "{run}");
    let checks = strings(&run["checks"]);
    assert_eq!(checks.len(), 2, "{checks:?}");
    assert!(
        checks[0].starts_with("sink local: pack ") && checks[1].starts_with("sink second: pack "),
        "{checks:?}"
    );
    assert!(run["restore_seconds"].is_null());

    // The record, newest first, and the audit trail.
    let runs = env.run(&["drills", "--json"]).ok().json();
    let kinds: Vec<(&str, &str)> = runs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["kind"].as_str().unwrap(), r["status"].as_str().unwrap()))
        .collect();
    assert_eq!(kinds, [("verify", "passed"), ("drill", "passed"), ("drill", "failed")]);
    let human = env.run(&["drills", "--plan", "nightly"]).ok().stdout;
    assert_eq!(
        human.lines().filter(|l| !l.trim_start().starts_with("FAILED")).count(),
        3,
        "{human}"
    );
    assert!(human.contains("FAILED: no sink holds a pack"), "{human}");
    // The same in Chinese: the frame is translated, what was checked is quoted as recorded.
    let zh = env
        .cmd()
        .env("LANG", "zh_CN.UTF-8")
        .args(["drills", "--plan", "nightly"])
        .output()
        .unwrap();
    let zh = String::from_utf8(zh.stdout).unwrap();
    assert!(
        zh.contains("校验")
            && zh.contains("恢复演练")
            && zh.contains("通过")
            && zh.contains("失败：no sink holds a pack"),
        "{zh}"
    );
    let audit = env.run(&["audit", "--json", "--action", "drill"]).ok().json();
    let details: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["detail"].as_str().unwrap())
        .collect();
    assert_eq!(details.len(), 3, "{details:?}");
    assert!(
        details[1] == "drill passed" && details[2] == "verify passed",
        "{details:?}"
    );
    assert!(env.run(&["drills", "--plan", "weekly"]).code == 2);
    // `status` shows the newest of each.
    let st = env.run(&["status", "--json"]).ok().json();
    assert_eq!(st["plans"]["nightly"]["last_verify"]["status"], "passed", "{st}");
    assert_eq!(st["plans"]["nightly"]["last_drill"]["status"], "passed", "{st}");
    let human = env.run(&["status"]).ok().stdout;
    assert!(
        human.contains("verify passed") && human.contains("drill passed"),
        "{human}"
    );

    // A damaged copy on the second sink: the verification names the sink and the file; the
    // drill (from the first sink) still passes.
    let second = newest_pack(&env.path("second"));
    let art = second.join("sqlite/app_db.db.zst");
    let mut bytes = std::fs::read(&art).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&art, &bytes).unwrap();
    let (code, run) = drill(&env, &["--verify"]);
    assert_eq!(code, 1, "{run}");
    let failures = strings(&run["failures"]);
    assert!(
        failures.iter().all(|f| f.starts_with("sink second: pack ")),
        "{failures:?}"
    );
    assert!(
        failures.iter().any(|f| f.contains("sqlite/app_db.db.zst")),
        "{failures:?}"
    );
    assert_eq!(drill(&env, &[]).0, 0);

    // Run in Chinese, the drill records what it checked in Chinese.
    let zh = env
        .cmd()
        .env("LANG", "zh_CN.UTF-8")
        .args(["drill", "nightly", "--json"])
        .output()
        .unwrap();
    let run: Value = serde_json::from_slice(&zh.stdout).unwrap();
    let checks = strings(&run["checks"]);
    assert!(
        checks[0].contains("integrity_check 通过，1 张表共 2000 行，与记录一致"),
        "{checks:?}"
    );
}

#[test]
fn a_restored_database_that_differs_from_the_packs_record_fails_the_drill_and_deep_verify() {
    let env = Env::new();
    let db = env.path("app.db");
    seed_db(&db, 300, true);
    two_sink_config(&env, &db, "", "");
    env.run(&["run", "nightly"]).ok();
    // The record says 301 rows (a pack whose data lost a row would look the same).
    let pack = newest_pack(&env.path("packs"));
    let mut table = String::new();
    rewrite_manifest(&pack, |m| {
        let a = m["artifacts"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .find(|a| a["type"] == "sqlite")
            .unwrap();
        let rows = a["meta"]["table_rows"].as_object_mut().unwrap();
        let (t, n) = rows.iter_mut().next().unwrap();
        table = t.clone();
        *n = Value::from(n.as_u64().unwrap() + 1);
    });
    let (code, run) = drill(&env, &[]);
    assert_eq!(code, 1, "{run}");
    assert_eq!(
        strings(&run["failures"]),
        [format!(
            "sqlite/app_db.db.zst: table {table} has 300 rows, the pack recorded 301"
        )]
    );
    let v = env.run(&["verify", pack.to_str().unwrap(), "--deep"]);
    assert_eq!(v.code, 1, "{}", v.all());
    assert!(
        v.all()
            .contains(&format!("table {table} has 300 rows, the pack recorded 301")),
        "{}",
        v.all()
    );
    // A quick verify only checks the bytes, which are intact.
    env.run(&["verify", pack.to_str().unwrap()]).ok();
}

#[test]
fn packratd_runs_drills_and_verifications_on_their_schedules_and_alerts_on_a_failure() {
    let env = Env::new();
    let db = env.path("app.db");
    seed_db(&db, 100, true);
    std::fs::write(env.path("token"), format!("{TOKEN}\n")).unwrap();
    two_sink_config(
        &env,
        &db,
        "verify = \"* * * * *\"\ndrill = \"* * * * *\"",
        r#"
[plans.empty]
sources = ["app_db"]
sinks = ["second"]
prefix = "empty"
drill = "* * * * *"

[api]
bind = "127.0.0.1:0"
token_file = "token"
"#,
    );
    // A pack of `nightly` to drill; `empty` has none, so its drill fails.
    env.run(&["run", "nightly"]).ok();
    let mut d = Daemon::start(&env, "packratd");
    let a = wait_for("the API address", Duration::from_secs(30), || addr(&env.path("state")));
    let runs = wait_for(
        "three scheduled runs (up to a minute)",
        Duration::from_secs(150),
        || {
            let v = env.run(&["drills", "--json"]).ok().json();
            let done: Vec<Value> = v
                .as_array()
                .unwrap()
                .iter()
                .filter(|r| r["status"] != "running")
                .cloned()
                .collect();
            (done.len() >= 3).then_some(done)
        },
    );
    let mut seen: Vec<(String, String, String, String)> = runs
        .iter()
        .map(|r| {
            (
                r["plan"].as_str().unwrap().to_string(),
                r["kind"].as_str().unwrap().to_string(),
                r["status"].as_str().unwrap().to_string(),
                r["trigger"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    seen.sort();
    seen.dedup();
    let want = |p: &str, k: &str, s: &str| (p.to_string(), k.to_string(), s.to_string(), "schedule".to_string());
    assert!(
        seen.contains(&want("nightly", "drill", "passed")),
        "{seen:?}\n{}",
        d.output()
    );
    assert!(seen.contains(&want("nightly", "verify", "passed")), "{seen:?}");
    assert!(seen.contains(&want("empty", "drill", "failed")), "{seen:?}");

    // The failure is an alert; the metrics say when each last passed and how long it restored.
    let alerts = wait_for("the drill alert", Duration::from_secs(30), || {
        let v = env.run(&["alert", "list", "--json"]).ok().json();
        let s = v.to_string();
        s.contains("drill:empty:drill").then_some(s)
    });
    assert!(alerts.contains("no sink holds a pack of plan empty"), "{alerts}");
    let (code, metrics) = http(&a, "GET", "/metrics", Some(TOKEN));
    assert_eq!(code, 200);
    for line in [
        "packrat_drill_last_success_timestamp_seconds{plan=\"nightly\",kind=\"drill\"}",
        "packrat_drill_last_success_timestamp_seconds{plan=\"nightly\",kind=\"verify\"}",
        "packrat_drill_last_failed{plan=\"empty\",kind=\"drill\"} 1",
        "packrat_drill_last_failed{plan=\"nightly\",kind=\"drill\"} 0",
        "packrat_drill_restore_seconds{plan=\"nightly\"}",
    ] {
        assert!(metrics.contains(line), "{line} missing:\n{metrics}");
    }
    let (code, status) = http(&a, "GET", "/api/status", Some(TOKEN));
    assert_eq!(code, 200, "{status}");
    let status: Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["plans"]["nightly"]["last_drill"]["status"], "passed", "{status}");
    assert_eq!(status["plans"]["empty"]["last_drill"]["status"], "failed", "{status}");
    d.signal(nix::sys::signal::Signal::SIGTERM);
    d.wait(Duration::from_secs(60));
}

/// A drill killed half-way (SIGKILL while it restores into its scratch directory) leaves its
/// record `running` and its scratch directory: the plan's next drill marks the record failed
/// (interrupted), removes the directory, and passes.
#[test]
fn a_killed_drill_is_settled_and_its_scratch_removed_by_the_next_one() {
    let env = backed_up_big_plan("", "");

    let scratch_root = env.path("state/drills");
    let mut child = env
        .cmd()
        .args(["drill", "nightly", "--json"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    packrat_e2e::wait_for_subdir(&scratch_root, "nightly-run-", Duration::from_secs(60), || {
        format!("the drill ended first: {:?}", child.try_wait())
    });
    child.kill().unwrap();
    child.wait().unwrap();
    let killed = env.run(&["drills", "--json"]).ok().json();
    assert_eq!(killed[0]["status"], "running", "{killed}");
    let killed_id = killed[0]["id"].clone();

    let (code, run) = drill(&env, &[]);
    assert_eq!((code, run["status"].as_str()), (0, Some("passed")), "{run}");
    let left = packrat_e2e::subdirs(&scratch_root);
    assert!(left.is_empty(), "scratch left behind: {left:?}");
    let runs = env.run(&["drills", "--json"]).ok().json();
    let settled = runs
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == killed_id)
        .unwrap_or_else(|| panic!("{runs}"));
    assert_eq!(settled["status"], "failed", "{settled}");
    assert!(
        strings(&settled["failures"])[0].starts_with("interrupted: its process ended"),
        "{settled}"
    );
}

/// SIGTERM while a scheduled drill restores: packratd lets it finish within the grace period
/// (as it does a backup job), so the run is recorded as passed and its scratch directory is gone,
/// and then exits 0.
#[test]
fn packratd_shutting_down_lets_a_running_drill_finish_and_record_itself() {
    let (runs, first) = sigterm_during_a_scheduled_drill("");
    assert_eq!(first["status"], "passed", "{runs}");
}

/// SIGTERM while a scheduled drill restores, with no grace period: the drill is cancelled,
/// removes what it restored and records itself failed, naming the shutdown; packratd exits 0.
#[test]
fn packratd_shutting_down_cancels_a_drill_past_the_grace_period() {
    let (runs, first) = sigterm_during_a_scheduled_drill("[daemon]\ngrace_period = \"0s\"\n");
    assert_eq!(first["status"], "failed", "{runs}");
    assert!(
        strings(&first["failures"])[0].starts_with("cancelled because packratd was shut down"),
        "{runs}"
    );
}

/// Starts packratd on a plan that drills every minute, sends SIGTERM while the drill restores,
/// checks that packratd exits 0 and the scratch directory is gone, and returns the recorded runs
/// and the scheduled one.
fn sigterm_during_a_scheduled_drill(extra: &str) -> (Value, Value) {
    // Its own API port: tests run side by side.
    let env = backed_up_big_plan(
        "drill = \"* * * * *\"",
        &format!("{extra}[api]\nbind = \"127.0.0.1:0\"\n"),
    );
    let scratch_root = env.path("state/drills");
    let mut d = Daemon::start(&env, "packratd");
    packrat_e2e::wait_for_subdir(&scratch_root, "nightly-run-", Duration::from_secs(150), || {
        format!("{}\n{}", env.run(&["drills", "--json"]).stdout, d.output())
    });
    d.signal(nix::sys::signal::Signal::SIGTERM);
    let status = d.wait(Duration::from_secs(120));
    assert!(status.success(), "{status:?}\n{}", d.output());
    let left = packrat_e2e::subdirs(&scratch_root);
    assert!(left.is_empty(), "scratch left behind: {left:?}\n{}", d.output());
    let runs = env.run(&["drills", "--json"]).ok().json();
    let first = runs.as_array().unwrap().last().unwrap().clone();
    assert_eq!(first["trigger"], "schedule", "{runs}\n{}", d.output());
    (runs, first)
}

/// Ctrl-C during `packrat drill`: the drill removes its scratch directory, records itself failed
/// with the signal first among its failures, and exits 130.
#[test]
fn ctrl_c_cancels_a_drill_which_cleans_up_and_records_itself() {
    let env = backed_up_big_plan("", "");
    let scratch_root = env.path("state/drills");
    let child = env
        .cmd()
        .args(["drill", "nightly", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    packrat_e2e::wait_for_subdir(&scratch_root, "nightly-run-", Duration::from_secs(60), String::new);
    let run = packrat_e2e::interrupt_json(child);
    assert_eq!(run["status"], "failed", "{run}");
    assert!(
        strings(&run["failures"])[0].starts_with("cancelled by SIGINT: the run stopped before it finished"),
        "{run}"
    );
    let left = packrat_e2e::subdirs(&scratch_root);
    assert!(left.is_empty(), "scratch left behind: {left:?}");
    let runs = env.run(&["drills", "--json"]).ok().json();
    assert_eq!(runs[0]["status"], "failed", "{runs}");
}

/// A backup and a drill due at the same minute (hourly backups, a drill at the top of an hour):
/// the backup starts, the drill waits for it and runs right after, instead of being skipped at
/// every slot they share.
#[test]
fn a_drill_due_with_a_backup_runs_after_it() {
    let env = Env::new();
    let db = env.path("app.db");
    seed_db(&db, 400_000, true);
    two_sink_config(
        &env,
        &db,
        "full = \"* * * * *\"\ndrill = \"* * * * *\"",
        "[api]\nbind = \"127.0.0.1:0\"\n",
    );
    let mut d = Daemon::start(&env, "packratd");
    let drill = wait_for("a scheduled drill", Duration::from_secs(150), || {
        let v = env.run(&["drills", "--json"]).ok().json();
        v.as_array().unwrap().iter().find(|r| r["status"] != "running").cloned()
    });
    assert_eq!(
        (drill["trigger"].as_str(), drill["status"].as_str()),
        (Some("schedule"), Some("passed")),
        "{drill}\n{}",
        d.output()
    );
    // It ran after a scheduled backup, never beside one.
    let jobs = packrat_e2e::daemon::jobs(&env);
    let first_job = jobs.last().unwrap_or_else(|| panic!("no job\n{}", d.output()));
    assert_eq!(first_job["trigger"], "schedule", "{first_job}");
    assert!(
        first_job["finished_at"].as_str().unwrap() <= drill["started_at"].as_str().unwrap(),
        "{first_job}\n{drill}"
    );
    d.signal(nix::sys::signal::Signal::SIGTERM);
    d.wait(Duration::from_secs(120));
}
